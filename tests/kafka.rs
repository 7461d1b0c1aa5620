//! `osprey serve --kafka` end to end on a real broker: an ingest node answers envelopes
//! after Kafka acknowledged them, a processor node in another process turns them into
//! issues. The broker address comes from `OSPREY_TEST_KAFKA` (scripts/kafka.sh); without
//! it the test fails and says so.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::free_port;

const KEY: &str = "0123456789abcdef0123456789abcdef";

fn broker() -> String {
    match std::env::var("OSPREY_TEST_KAFKA") {
        Ok(b) if !b.trim().is_empty() => b,
        _ => panic!(
            "OSPREY_TEST_KAFKA is not set: start a broker with `scripts/kafka.sh start` and \
             export the address it prints (the test command does both)"
        ),
    }
}

/// A running `osprey serve` node and the port it listens on.
struct Node {
    child: Child,
    port: u16,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts a node with no extra arguments; see [`node_with`].
fn node(role: &str, port: u16, data: &std::path::Path, run: &str) -> Node {
    node_with(role, port, data, run, &[])
}

const TOKEN: &str = "osprey-e2e-admin-token-0123456789abcdef";

/// How long a node may take to answer `/health` (it creates its topics first).
const NODE_START: Duration = Duration::from_secs(90);

/// Starts a node on `port`, or on a fresh port when `port` was taken in the meantime (a port
/// `free_port` released can go to any connection of the tests running beside this one), and
/// waits until it answers `/health`. Callers read the port from [`Node::port`].
fn node_with(role: &str, port: u16, data: &std::path::Path, run: &str, args: &[&str]) -> Node {
    node_with_env(role, port, data, run, args, &[])
}

/// [`node_with`] with extra environment variables (fault injection).
fn node_with_env(
    role: &str,
    port: u16,
    data: &std::path::Path,
    run: &str,
    args: &[&str],
    env: &[(&str, &str)],
) -> Node {
    let mut port = port;
    for _attempt in 0..3 {
        match launch(role, port, data, run, args, env) {
            Ok(node) => return node,
            Err(log) if log.contains("binding 127.0.0.1:") => port = free_port(),
            Err(log) => panic!("{role} node exited while starting\n{log}"),
        }
    }
    panic!(
        "{role} node found no free port in 3 tries\n{}",
        node_log_tail(data, 40)
    )
}

/// Starts a node on exactly `port` (a restart that its peers know by port) and waits until it
/// answers `/health`.
fn node_on(role: &str, port: u16, data: &std::path::Path, run: &str) -> Node {
    launch(role, port, data, run, &[], &[])
        .unwrap_or_else(|log| panic!("{role} node exited while starting\n{log}"))
}

/// One start: the node once it answers `/health`, or its output when it exits first.
fn launch(
    role: &str,
    port: u16,
    data: &std::path::Path,
    run: &str,
    args: &[&str],
    env: &[(&str, &str)],
) -> Result<Node, String> {
    let config = data.with_extension("toml");
    std::fs::write(
        &config,
        format!(
            "[kafka]\nbrokers = \"{}\"\npartitions = 2\ngroup_id = \"e2e-{run}\"\nsession_timeout_ms = 6000\n[kafka.topics]\nevents = \"e2e-ev-{run}\"\ntransactions = \"e2e-tx-{run}\"\nmeta = \"e2e-meta-{run}\"\n",
            broker()
        ),
    )
    .unwrap();
    let log = std::fs::File::create(node_log_path(data)).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_osprey"))
        .args(["serve", "--role", role, "--config"])
        .arg(&config)
        .args(args)
        .env("OSPREY_ADMIN_TOKEN", TOKEN)
        .args(["--listen", &format!("127.0.0.1:{port}"), "--data"])
        .arg(data)
        .env("OSPREY_DEFAULT_KEY", KEY)
        .env("OSPREY_DURABILITY", "os")
        .envs(env.iter().copied())
        .stdout(Stdio::from(log.try_clone().unwrap()))
        .stderr(Stdio::from(log))
        .spawn()
        .unwrap();
    let mut node = Node { child, port };
    let deadline = Instant::now() + NODE_START;
    loop {
        if let Some(status) = node.child.try_wait().unwrap() {
            return Err(format!("exit {status}\n{}", node_log_tail(data, 40)));
        }
        // The port may have gone to another test's node meanwhile, which answers /health
        // too: the node is ours once its own output says it bound the port.
        let bound = format!("Listening on http://127.0.0.1:{port}\n");
        if http_status(port, "/health") == 200
            && std::fs::read_to_string(node_log_path(data)).is_ok_and(|log| log.contains(&bound))
        {
            return Ok(node);
        }
        assert!(
            Instant::now() < deadline,
            "{role} node did not answer /health within {NODE_START:?}\n{}",
            node_log_tail(data, 40)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The status of `GET path` on a local port (0 when nothing answers).
fn http_status(port: u16, path: &str) -> u16 {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return 0;
    };
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    if s.write_all(req.as_bytes()).is_err() {
        return 0;
    }
    read_status(s)
}

/// Where [`node_with`] writes a node's output: beside its data directory.
fn node_log_path(data: &std::path::Path) -> std::path::PathBuf {
    data.with_extension("log")
}

/// The last `lines` lines of a node's output, for failure messages.
fn node_log_tail(data: &std::path::Path, lines: usize) -> String {
    let text = std::fs::read_to_string(node_log_path(data)).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// POSTs one envelope; returns the HTTP status (0 when the node does not answer yet).
fn post_envelope(port: u16, event_id: &str, message: &str) -> u16 {
    post_envelope_to(port, "1", KEY, event_id, message)
}

/// [`post_envelope`] to another project, with one of its DSN keys.
fn post_envelope_to(port: u16, project: &str, key: &str, event_id: &str, message: &str) -> u16 {
    let body = format!(
        "{{\"event_id\":\"{event_id}\"}}\n{{\"type\":\"event\"}}\n{{\"event_id\":\"{event_id}\",\"platform\":\"python\",\"message\":\"{message}\",\"level\":\"error\"}}\n"
    );
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return 0;
    };
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let req = format!(
        "POST /api/{project}/envelope/?sentry_key={key} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-sentry-envelope\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).unwrap();
    read_status(s)
}

/// Reads a whole HTTP/1.1 answer and returns its status (0 when there is none).
fn read_status(mut s: TcpStream) -> u16 {
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out.split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

/// `osprey issues --json` on a data directory (read-only, beside the running node); the
/// command's error output when it fails.
fn issues(data: &std::path::Path) -> Result<Vec<serde_json::Value>, String> {
    let out = Command::new(env!("CARGO_BIN_EXE_osprey"))
        .args(["issues", "--json", "--data"])
        .arg(data)
        .output()
        .unwrap();
    if !out.status.success() {
        return Err(format!(
            "osprey issues exited with {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    serde_json::from_slice(&out.stdout).map_err(|e| format!("osprey issues printed no JSON: {e}"))
}

#[test]
fn ingest_node_to_kafka_to_processor_node() {
    let run = uuid::Uuid::new_v4().simple().to_string();
    let dir = tempfile::tempdir().unwrap();
    let (ingest_port, proc_port) = (free_port(), free_port());
    let ingest = node("ingest", ingest_port, &dir.path().join("ingest"), &run);
    let _processor = node("processor", proc_port, &dir.path().join("processor"), &run);
    let ingest_port = ingest.port;

    let deadline = Instant::now() + Duration::from_secs(60);
    let mut sent = 0u32;
    while sent < 30 {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let message = if sent.is_multiple_of(3) {
            "disk full"
        } else {
            "timeout talking to db"
        };
        match post_envelope(ingest_port, &id, message) {
            200 => sent += 1,
            status => {
                assert!(Instant::now() < deadline, "ingest node answered {status}");
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut last_error = String::new();
    loop {
        let found = issues(&dir.path().join("processor")).unwrap_or_else(|e| {
            last_error = e;
            Vec::new()
        });
        let mut counts: Vec<(String, String)> = found
            .iter()
            .map(|i| {
                (
                    i["title"].as_str().unwrap_or("").to_owned(),
                    i["count"].to_string(),
                )
            })
            .collect();
        counts.sort();
        let expected = vec![
            ("disk full".to_owned(), "\"10\"".to_owned()),
            ("timeout talking to db".to_owned(), "\"20\"".to_owned()),
        ];
        if counts == expected {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "processor node has {counts:?}, expected {expected:?} (last read error: \
             {last_error:?})\n--- processor node ---\n{}\n--- ingest node ---\n{}",
            node_log_tail(&dir.path().join("processor"), 60),
            node_log_tail(&dir.path().join("ingest"), 30)
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// The issues of the default organization as the node at `port` answers them: `(title →
/// count)` and the `X-Osprey-Partial` header. `None` while the node does not answer.
fn api_issue_counts(
    port: u16,
) -> Option<(std::collections::BTreeMap<String, u64>, Option<String>)> {
    let resp = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
        .get(format!(
            "http://127.0.0.1:{port}/api/0/organizations/default/issues/?query=&limit=100"
        ))
        .bearer_auth(TOKEN)
        .send()
        .ok()?;
    if !resp.status().is_success() {
        return None;
    }
    let partial = resp
        .headers()
        .get("x-osprey-partial")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let issues: Vec<serde_json::Value> = resp.json().ok()?;
    let mut counts = std::collections::BTreeMap::new();
    for issue in issues {
        let title = issue["title"].as_str().unwrap_or("").to_owned();
        let n: u64 = issue["count"]
            .as_str()
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        *counts.entry(title).or_insert(0) += n;
    }
    Some((counts, partial))
}

/// Ingest → Kafka → two processor nodes → a query node fanning out to both. One processor is
/// SIGKILLed while events flow; its partition moves to the other; it comes back on its data
/// directory. Through the query node every accepted event is counted exactly once, and with
/// a processor down the answer says it is partial.
#[test]
fn processor_killed_under_load_every_accepted_event_counted_once_through_the_query_node() {
    let run = uuid::Uuid::new_v4().simple().to_string();
    let dir = tempfile::tempdir().unwrap();
    let (ingest_port, p1_port, p2_port, query_port) =
        (free_port(), free_port(), free_port(), free_port());
    let (p1_data, p2_data) = (dir.path().join("p1"), dir.path().join("p2"));
    let ingest = node("ingest", ingest_port, &dir.path().join("ingest"), &run);
    let mut p1 = node("processor", p1_port, &p1_data, &run);
    let mut p2 = node("processor", p2_port, &p2_data, &run);
    let (ingest_port, p1_port, p2_port) = (ingest.port, p1.port, p2.port);
    let peers = format!("http://127.0.0.1:{p1_port},http://127.0.0.1:{p2_port}");
    let query = node_with(
        "query",
        query_port,
        &dir.path().join("query"),
        &run,
        &["--peers", &peers],
    );
    let query_port = query.port;

    // Load: one thread keeps sending until told to stop, counting what was accepted.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let loader = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut accepted = std::collections::BTreeMap::<String, u64>::new();
            let deadline = Instant::now() + Duration::from_secs(120);
            let mut i = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Acquire) && Instant::now() < deadline {
                let message = if i.is_multiple_of(3) {
                    "disk full"
                } else {
                    "timeout talking to db"
                };
                let id = uuid::Uuid::new_v4().simple().to_string();
                if post_envelope(ingest_port, &id, message) == 200 {
                    *accepted.entry(message.to_owned()).or_insert(0) += 1;
                    i += 1;
                } else {
                    std::thread::sleep(Duration::from_millis(100));
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            accepted
        })
    };

    // Once events are being processed, SIGKILL the processor that owns the events.
    let deadline = Instant::now() + Duration::from_secs(90);
    let owner = loop {
        let c1 = api_issue_counts(p1_port)
            .map(|(c, _)| c.values().sum::<u64>())
            .unwrap_or(0);
        let c2 = api_issue_counts(p2_port)
            .map(|(c, _)| c.values().sum::<u64>())
            .unwrap_or(0);
        if c1 + c2 >= 30 {
            break if c1 >= c2 { 1 } else { 2 };
        }
        assert!(
            Instant::now() < deadline,
            "no processing within 90 s ({c1}, {c2})"
        );
        std::thread::sleep(Duration::from_millis(300));
    };
    let (killed, killed_port, killed_data) = if owner == 1 {
        (&mut p1, p1_port, &p1_data)
    } else {
        (&mut p2, p2_port, &p2_data)
    };
    killed.child.kill().unwrap(); // SIGKILL
    killed.child.wait().unwrap();
    let before_takeover = api_issue_counts(if owner == 1 { p2_port } else { p1_port })
        .map(|(c, _)| c.values().sum::<u64>())
        .unwrap_or(0);

    // With the owner dead the query node still answers, and says it is partial.
    let (_, partial) = api_issue_counts(query_port).expect("query node answers");
    let partial = partial.expect("X-Osprey-Partial with a processor down");
    assert!(partial.contains(&killed_port.to_string()), "{partial}");

    // The survivor takes the partition over (session timeout 6 s) and processes new events.
    let survivor_port = if owner == 1 { p2_port } else { p1_port };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let now = api_issue_counts(survivor_port)
            .map(|(c, _)| c.values().sum::<u64>())
            .unwrap_or(0);
        if now > before_takeover + 10 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the survivor took nothing over ({now})"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    stop.store(true, std::sync::atomic::Ordering::Release);
    let accepted = loader.join().unwrap();

    // The killed node comes back on its data directory: its results are served again.
    *killed = node_on("processor", killed_port, killed_data, &run);
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        if let Some((counts, partial)) = api_issue_counts(query_port) {
            if partial.is_none() && counts == accepted {
                break;
            }
            let (got, want): (u64, u64) = (counts.values().sum(), accepted.values().sum());
            assert!(
                got <= want,
                "counted {counts:?}, accepted {accepted:?}: counted twice"
            );
            assert!(
                Instant::now() < deadline,
                "query node has {counts:?} (partial {partial:?}), accepted {accepted:?}"
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    // And it stays exact (no late re-reading by the returning node).
    std::thread::sleep(Duration::from_secs(3));
    let (counts, partial) = api_issue_counts(query_port).unwrap();
    assert_eq!((counts, partial), (accepted, None));
}

/// The sum of the issue counts a node's API answers (0 while it does not answer).
fn api_total(port: u16) -> u64 {
    api_issue_counts(port)
        .map(|(c, _)| c.values().sum())
        .unwrap_or(0)
}

/// The window between a batch's two commits, hit exactly: processor p1 exits (fault
/// injection, `OSPREY_TEST_EXIT_AFTER_GROUP_COMMIT`) right after taking its second batch
/// from the group and before writing it; p2 takes every partition over and goes on; p1
/// comes back on its data directory. p2 must not count p1's batch, and p1 must count it
/// once: through the query API the counts equal the accepted events. (With the former order
/// — local write, then group commit — p2 counted that batch a second time.)
#[test]
fn processor_exiting_between_its_two_commits_counts_every_event_once() {
    let run = uuid::Uuid::new_v4().simple().to_string();
    let dir = tempfile::tempdir().unwrap();
    let (p1_data, p2_data) = (dir.path().join("p1"), dir.path().join("p2"));
    let ingest = node("ingest", free_port(), &dir.path().join("ingest"), &run);
    let ingest_port = ingest.port;
    let mut p1 = node_with_env(
        "processor",
        free_port(),
        &p1_data,
        &run,
        &[],
        &[("OSPREY_TEST_EXIT_AFTER_GROUP_COMMIT", "2")],
    );
    let logs = |what: &str| {
        format!(
            "{what}\n--- p1 ---\n{}\n--- p2 ---\n{}",
            node_log_tail(&p1_data, 40),
            node_log_tail(&p2_data, 40)
        )
    };
    let mut accepted = 0u64;
    let mut send = |n: u64| {
        let mut sent = 0;
        let deadline = Instant::now() + Duration::from_secs(60);
        while sent < n {
            let id = uuid::Uuid::new_v4().simple().to_string();
            if post_envelope(ingest_port, &id, "crash window") == 200 {
                sent += 1;
            } else {
                assert!(Instant::now() < deadline, "the ingest node accepts nothing");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        accepted += n;
    };

    // Events one at a time until p1 has exited inside its second batch.
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = p1.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "{}",
            logs("p1 did not exit at its second group commit")
        );
        send(1);
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(status.code(), Some(137), "{}", logs("p1's exit"));
    let p1_port = p1.port;
    let p2 = node("processor", free_port(), &p2_data, &run);
    let p2_port = p2.port;

    // p2 takes the partitions over (after p1's session times out) and counts new events.
    send(10);
    let deadline = Instant::now() + Duration::from_secs(60);
    while api_total(p2_port) < 10 {
        assert!(
            Instant::now() < deadline,
            "{}",
            logs(&format!(
                "p2 counted {} of the new events",
                api_total(p2_port)
            ))
        );
        std::thread::sleep(Duration::from_millis(300));
    }

    // p1 comes back: it counts the batch it took, and nobody counts anything twice.
    p1 = node("processor", p1_port, &p1_data, &run);
    let p1_port = p1.port;
    send(5);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (c1, c2) = (api_total(p1_port), api_total(p2_port));
        assert!(
            c1 + c2 <= accepted,
            "{}",
            logs(&format!(
                "counted {c1} + {c2} of {accepted} accepted: counted twice"
            ))
        );
        if c1 + c2 == accepted {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{}",
            logs(&format!("counted {c1} + {c2} of {accepted} accepted"))
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    assert!(
        std::fs::read_to_string(node_log_path(&p1_data))
            .unwrap()
            .contains("re-read owed offsets"),
        "{}",
        logs("p1 re-read its batch")
    );
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        api_total(p1_port) + api_total(p2_port),
        accepted,
        "{}",
        logs("stays exact")
    );
    drop(p1);
}

/// Sends `envelope`-wrapped probes to `port` until one is accepted (bounded): a node that
/// answers 200 has its Kafka producer ready, so an SDK's first envelope is not refused.
fn wait_accepting(port: u16, probe_id: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match post_envelope(port, probe_id, "ready probe") {
            200 => return,
            status => assert!(
                Instant::now() < deadline,
                "node on {port} does not accept envelopes ({status})"
            ),
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// GET `path` with the admin token from the node at `port`; `None` unless 200.
fn api_json(port: u16, path: &str) -> Option<serde_json::Value> {
    let resp = common::http()
        .get(format!("http://127.0.0.1:{port}{path}"))
        .bearer_auth(TOKEN)
        .send()
        .ok()?;
    resp.status().is_success().then(|| resp.json().ok())?
}

/// What two deployments must agree on for the issues: per title, the count, users, culprit,
/// level and first/last release.
fn issue_facts(
    issues: &serde_json::Value,
) -> std::collections::BTreeMap<String, serde_json::Value> {
    issues
        .as_array()
        .into_iter()
        .flatten()
        .map(|i| {
            (
                i["title"].as_str().unwrap_or_default().to_owned(),
                serde_json::json!([
                    i["count"],
                    i["userCount"],
                    i["culprit"],
                    i["level"],
                    i["firstRelease"]["version"],
                    i["lastRelease"]["version"]
                ]),
            )
        })
        .collect()
}

/// Issue 7's first acceptance line: the real Python sentry-sdk sends the same errors and
/// transactions (two releases, repeated groups, several users, planned durations and
/// statuses) once to an embedded `osprey serve` and once to a Kafka deployment — a `--role
/// ingest` node, two `--role processor` nodes and a `--role query` node fanning out to them.
/// Through the same HTTP API both give the same issues (counts, users, culprits, releases),
/// the same per-transaction performance (count, p95, apdex, failure rate, all of it) and the
/// same release numbers.
#[test]
fn python_sdk_events_through_kafka_nodes_answer_the_same_as_embedded() {
    let run = uuid::Uuid::new_v4().simple().to_string();
    let dir = tempfile::tempdir().unwrap();
    let embedded = common::OspreyServer::start(common::ServerOptions {
        admin_token: TOKEN.into(),
        default_key: KEY.into(),
        ..Default::default()
    });
    let (ingest_port, p1_port, p2_port, query_port) =
        (free_port(), free_port(), free_port(), free_port());
    let ingest = node("ingest", ingest_port, &dir.path().join("ingest"), &run);
    let p1 = node("processor", p1_port, &dir.path().join("p1"), &run);
    let p2 = node("processor", p2_port, &dir.path().join("p2"), &run);
    let (ingest_port, p1_port, p2_port) = (ingest.port, p1.port, p2.port);
    let peers = format!("http://127.0.0.1:{p1_port},http://127.0.0.1:{p2_port}");
    let query = node_with(
        "query",
        query_port,
        &dir.path().join("query"),
        &run,
        &["--peers", &peers],
    );
    let query_port = query.port;

    // One plan for both: errors of four types over two releases, transactions of three names.
    let start_us = (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64)
        - 900_000_000;
    let statuses = [
        "ok",
        "ok",
        "internal_error",
        "ok",
        "cancelled",
        "not_found",
        "ok",
    ];
    let release = |version: &str, kinds: &[&str], offset: u64| {
        let errors: Vec<_> = (0..12)
            .map(|i| serde_json::json!({"type": kinds[i % kinds.len()], "user": format!("u{}", i % 5)}))
            .collect();
        let transactions: Vec<_> = (0..45u64)
            .map(|i| {
                serde_json::json!({
                    "name": format!("GET /api/{}", i % 3),
                    "start_us": start_us + offset + i * 2_000_000,
                    "duration_us": 3_000 + (i * 7_919 % 97) * 11_003,
                    "status": statuses[i as usize % statuses.len()],
                    "user": format!("u{}", i % 7),
                })
            })
            .collect();
        serde_json::json!({"version": version, "errors": errors, "transactions": transactions})
    };
    let plan = serde_json::json!({"releases": [
        release("shop@2.0.0", &["ValueError", "KeyError", "ValueError"], 0),
        release("shop@2.1.0", &["KeyError", "TypeError", "ZeroDivisionError"], 200_000_000),
    ]});
    let plan_path = dir.path().join("plan.json");
    std::fs::write(&plan_path, plan.to_string()).unwrap();

    wait_accepting(ingest_port, "0000000000000000000000000000000a");
    let embedded_port: u16 = embedded.addr().rsplit(':').next().unwrap().parse().unwrap();
    wait_accepting(embedded_port, "0000000000000000000000000000000a");
    for port in [embedded_port, ingest_port] {
        let dsn = format!("http://{KEY}@127.0.0.1:{port}/1");
        common::run_python(
            "python_releases.py",
            &[dsn.as_str(), plan_path.to_str().unwrap()],
            &[],
        )
        .assert_success();
    }

    // Both sides processed everything: 24 errors + the probe, 90 transactions.
    let issues_path = "/api/0/organizations/default/issues/?query=&limit=100";
    let perf_path =
        "/api/0/projects/default/default/performance/?statsPeriod=2h&by=transaction&limit=100";
    let complete = |port: u16| -> Option<(serde_json::Value, serde_json::Value)> {
        let issues = api_json(port, issues_path)?;
        let perf = api_json(port, perf_path)?;
        let errors: u64 = issues
            .as_array()?
            .iter()
            .filter_map(|i| i["count"].as_str()?.parse::<u64>().ok())
            .sum();
        // Error events per environment come from the transaction rollups, which are flushed
        // apart from the issue counters: wait for them too.
        (errors == 25 && perf["total"]["count"] == 90 && perf["total"]["error_events"] == 25)
            .then_some((issues, perf))
    };
    let deadline = Instant::now() + Duration::from_secs(90);
    let wait = |port: u16, what: &str| loop {
        if let Some(done) = complete(port) {
            break done;
        }
        assert!(Instant::now() < deadline, "{what} did not process the plan");
        std::thread::sleep(Duration::from_millis(300));
    };
    let (want_issues, want_perf) = wait(embedded_port, "the embedded server");
    let (got_issues, got_perf) = wait(query_port, "the Kafka deployment");

    assert_eq!(issue_facts(&got_issues), issue_facts(&want_issues));
    assert_eq!(issue_facts(&want_issues).len(), 5, "{want_issues}");
    assert_eq!(got_perf["total"], want_perf["total"], "total performance");
    assert_eq!(
        got_perf["groups"], want_perf["groups"],
        "per-transaction performance"
    );
    assert!(got_perf.get("ospreyApproximate").is_none(), "{got_perf}");
    assert_eq!(want_perf["groups"].as_array().unwrap().len(), 3);
    for version in ["shop@2.0.0", "shop@2.1.0"] {
        let path =
            format!("/api/0/projects/default/default/releases/{version}/stats/?statsPeriod=2h");
        let got = api_json(query_port, &path).expect("release stats through the query node");
        let want = api_json(embedded_port, &path).expect("release stats embedded");
        for side in ["release", "previous"] {
            for field in [
                "version",
                "newIssues",
                "events",
                "users",
                "transactions",
                "failureRate",
                "p95",
            ] {
                assert_eq!(
                    got[side][field], want[side][field],
                    "{version} {side}.{field}"
                );
            }
        }
    }

    // Legacy feedback posted to the query node goes through Kafka to the processor node that
    // holds the project and its event, once: a token's report, then a DSN's replacing it.
    // The report is about the project's newest error event (through the query node): the
    // node that processed it owns the project's partition now, so the report lands beside
    // it. (The readiness probe, sent first, may sit on the other node if the partition moved
    // when the second processor joined; a report there could not be linked.)
    let newest = api_json(
        query_port,
        "/api/0/projects/default/default/events/?per_page=1",
    )
    .expect("the project's events through the query node");
    let probe = newest[0]["eventID"]
        .as_str()
        .expect("an error event id")
        .to_owned();
    let probe = probe.as_str();
    let feedback_path = "/api/0/projects/default/default/user-feedback/";
    let (status, answer) = api_call(
        query_port,
        reqwest::Method::POST,
        feedback_path,
        TOKEN,
        Some(
            serde_json::json!({"event_id": probe, "name": "Ann", "email": "ann@example.com",
                                "comments": "first try"}),
        ),
    );
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["comments"], "first try", "{answer}");
    let by_dsn = common::http()
        .post(format!("http://127.0.0.1:{query_port}{feedback_path}"))
        .header(
            "Authorization",
            format!("DSN http://{KEY}@127.0.0.1:{ingest_port}/1"),
        )
        .json(&serde_json::json!({"event_id": probe, "name": "Ann",
                                  "email": "ann@example.com", "comments": "card 4111 1111 1111 1111"}))
        .send()
        .unwrap();
    assert_eq!(by_dsn.status().as_u16(), 200);
    assert!(by_dsn.text().unwrap().is_empty());
    let stored = |port: u16| -> Vec<serde_json::Value> {
        api_json(port, feedback_path)
            .and_then(|v| v.as_array().cloned())
            .unwrap_or_default()
    };
    eventually(
        60,
        "the DSN's report is listed through the query node",
        || {
            let listed = stored(query_port);
            listed.len() == 1 && listed[0]["comments"] == "card [Filtered]"
        },
    );
    let listed = stored(query_port);
    assert_eq!(listed[0]["eventID"], probe, "{listed:?}");
    assert!(listed[0]["issue"]["id"].is_string(), "linked: {listed:?}");
    // Stored by exactly one processor node, not by each.
    assert_eq!(
        stored(p1_port).len() + stored(p2_port).len(),
        1,
        "p1 {:?}, p2 {:?}",
        stored(p1_port),
        stored(p2_port)
    );

    // osprey's MCP tools, asked of the query node (which fans out to both processor nodes)
    // and of the embedded server, with the official Python MCP client, agree.
    let calls = serde_json::json!([
        ["find_projects", {}],
        ["get_error_analysis", {"project": "default", "timeRange": "2h"}],
        ["get_performance_metrics", {"project": "default", "timeRange": "2h",
            "breakdown": {"field": "transaction"}}],
        ["search_issues", {"project": "default", "query": "", "sort": "freq", "limit": 100}],
        ["compare_releases", {"project": "default", "base": "shop@2.0.0", "head": "shop@2.1.0",
            "timeRange": "2h"}],
        ["search_events", {"project": "default", "dataset": "errors",
            "fields": ["title", "release", "level"], "timeRange": "2h", "limit": 100}],
        ["search_events", {"project": "default", "dataset": "transactions",
            "fields": ["transaction", "duration", "status"], "timeRange": "2h", "limit": 5}],
    ]);
    // The project's records sit on one processor node. A second query node lists the other
    // (empty) node first, so that taking the first peer's answer would fail these checks.
    let holds_data = |port: u16| {
        api_json(port, perf_path).is_some_and(|p| p["total"]["count"].as_u64() > Some(0))
    };
    let (full, empty) = if holds_data(p1_port) {
        (p1_port, p2_port)
    } else {
        (p2_port, p1_port)
    };
    assert!(
        holds_data(full) && !holds_data(empty),
        "one node holds the project"
    );
    let mcp_query = node_with(
        "query",
        free_port(),
        &dir.path().join("mcp-query"),
        &run,
        &[
            "--peers",
            &format!("http://127.0.0.1:{empty},http://127.0.0.1:{full}"),
        ],
    );
    let mcp_query_port = mcp_query.port;
    eventually(60, "the second query node answers", || {
        api_json(mcp_query_port, perf_path).is_some_and(|p| p["total"]["count"] == 90)
    });
    let want = mcp_over_http(embedded_port, TOKEN, calls.clone());
    let got = mcp_over_http(mcp_query_port, TOKEN, calls);
    let answer = |report: &serde_json::Value, i: usize| -> serde_json::Value {
        let r = &report["results"][i];
        assert_eq!(r["isError"], false, "call {i}: {r}");
        assert!(r["structured"].get("ospreyPartial").is_none(), "{r}");
        r["structured"].clone()
    };
    let projects = |v: serde_json::Value| -> Vec<(String, u64)> {
        v["projects"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                (
                    p["slug"].as_str().unwrap().to_owned(),
                    p["unresolvedIssues"].as_u64().unwrap(),
                )
            })
            .collect()
    };
    assert_eq!(projects(answer(&got, 0)), projects(answer(&want, 0)));
    // Issues without their node-specific ids: title, culprit, level, status, counts, releases.
    let issue_view = |list: &serde_json::Value| -> Vec<serde_json::Value> {
        let mut out: Vec<serde_json::Value> = list
            .as_array()
            .unwrap()
            .iter()
            .map(|i| {
                let mut i = i.clone();
                let obj = i.as_object_mut().unwrap();
                for volatile in ["id", "shortId", "firstSeen", "lastSeen"] {
                    obj.remove(volatile);
                }
                i
            })
            .collect();
        out.sort_by_key(|i| i.to_string());
        out
    };
    let (g, w) = (answer(&got, 1), answer(&want, 1));
    for field in ["totals", "trend", "errorEventsPerMinute", "truncated"] {
        assert_eq!(g[field], w[field], "get_error_analysis {field}");
    }
    for field in ["topIssues", "newIssues", "regressedIssues"] {
        assert_eq!(
            issue_view(&g[field]),
            issue_view(&w[field]),
            "get_error_analysis {field}"
        );
    }
    assert_eq!(w["totals"]["events"], 25, "{w}");
    let (g, w) = (answer(&got, 2), answer(&want, 2));
    for field in [
        "metrics",
        "previous",
        "change",
        "breakdown",
        "apdexThresholdMs",
    ] {
        assert_eq!(g[field], w[field], "get_performance_metrics {field}");
    }
    assert_eq!(w["metrics"]["count"], 90.0, "{w}");
    let (g, w) = (answer(&got, 3), answer(&want, 3));
    assert_eq!(g["total"], w["total"]);
    assert_eq!(issue_view(&g["issues"]), issue_view(&w["issues"]));
    let (g, w) = (answer(&got, 4), answer(&want, 4));
    for side in ["base", "head"] {
        for field in [
            "version",
            "errorEvents",
            "issues",
            "transactions",
            "p95Ms",
            "failureRate",
        ] {
            assert_eq!(
                g[side][field], w[side][field],
                "compare_releases {side}.{field}"
            );
        }
    }
    for field in ["p95ChangeMs", "failureRateChange"] {
        assert_eq!(g[field], w[field], "compare_releases {field}");
    }
    for field in ["newIssues", "regressions"] {
        assert_eq!(
            issue_view(&g[field]),
            issue_view(&w[field]),
            "compare_releases {field}"
        );
    }
    let (g, w) = (answer(&got, 5), answer(&want, 5));
    assert_eq!(g["count"], w["count"]);
    assert_eq!(g["count"], 25);
    assert_eq!(issue_view(&g["rows"]), issue_view(&w["rows"]), "error rows");
    let (g, w) = (answer(&got, 6), answer(&want, 6));
    assert_eq!(g["count"], w["count"]);
    assert_eq!(g["count"], 90);
    assert_eq!(
        g["rows"].as_array().unwrap().len(),
        5,
        "the limit holds after merging"
    );
}

/// One session of the official Python MCP client against `port`'s `/mcp` with `token`:
/// lists the tools, makes `calls` ([name, arguments] pairs), returns the report
/// (`tests/sdk/mcp_client.py`).
fn mcp_over_http(port: u16, token: &str, calls: serde_json::Value) -> serde_json::Value {
    let mut cmd = Command::new(common::python());
    cmd.arg(common::sdk_script("mcp_client.py"))
        .arg("http")
        .arg(format!("http://127.0.0.1:{port}/mcp"))
        .arg(token)
        .arg(calls.to_string());
    common::run_tool("python mcp (http)", cmd, common::TOOL_TIMEOUT)
        .assert_success()
        .json()
}

/// One API call with `token`; the status and the JSON body (`null` when there is none).
fn api_call(
    port: u16,
    method: reqwest::Method,
    path: &str,
    token: &str,
    body: Option<serde_json::Value>,
) -> (u16, serde_json::Value) {
    let mut req = common::http()
        .request(method.clone(), format!("http://127.0.0.1:{port}{path}"))
        .bearer_auth(token);
    if let Some(b) = body {
        req = req.json(&b);
    }
    match req.send() {
        Ok(resp) => {
            let status = resp.status().as_u16();
            (status, resp.json().unwrap_or(serde_json::Value::Null))
        }
        Err(_) => (0, serde_json::Value::Null),
    }
}

/// [`eventually`], with the last lines of the logs of the nodes on `nodes` (data
/// directories) in the failure message.
fn eventually_logged(
    nodes: &[std::path::PathBuf],
    secs: u64,
    what: &str,
    mut probe: impl FnMut() -> bool,
) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !probe() {
        if Instant::now() >= deadline {
            let logs: String = nodes
                .iter()
                .filter(|d| node_log_path(d).exists())
                .map(|d| format!("\n--- {} ---\n{}", d.display(), node_log_tail(d, 40)))
                .collect();
            panic!("{what}: not within {secs} s{logs}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Polls `probe` every 200 ms until it holds, for at most `secs`.
fn eventually(secs: u64, what: &str, mut probe: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !probe() {
        assert!(Instant::now() < deadline, "{what}: not within {secs} s");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Issue 7: projects, DSN keys, tokens and alert rules made on one node work on all of them
/// (the compacted metadata topic), and a node that joins later has them before it answers.
#[test]
fn metadata_made_on_one_node_works_on_every_node() {
    use reqwest::Method;
    use serde_json::json;
    let run = format!("meta-{}", std::process::id());
    let dir = tempfile::tempdir().unwrap();
    // The nodes' data directories: their logs go into every failure message.
    let nodes = ["ingest", "processor", "query", "late"].map(|n| dir.path().join(n));
    let hooks =
        processor::testing::WebhookReceiver::start(processor::testing::ReceiverMode::Ok).unwrap();
    let (ingest_port, processor_port, query_port) = (free_port(), free_port(), free_port());
    let ingest = node("ingest", ingest_port, &dir.path().join("ingest"), &run);
    let processor = node(
        "processor",
        processor_port,
        &dir.path().join("processor"),
        &run,
    );
    let (ingest_port, processor_port) = (ingest.port, processor.port);
    let peer = format!("http://127.0.0.1:{processor_port}");
    let query = node_with(
        "query",
        query_port,
        &dir.path().join("query"),
        &run,
        &["--peers", &peer],
    );
    let query_port = query.port;
    for port in [ingest_port, processor_port, query_port] {
        eventually_logged(&nodes, 90, &format!("node on {port} answers"), || {
            common::http()
                .get(format!("http://127.0.0.1:{port}/health/ready"))
                .send()
                .is_ok_and(|r| r.status().is_success())
        });
    }
    wait_accepting(ingest_port, "00000000000000000000000000000001");

    // Everything is made on the query node, with the bootstrap admin token.
    let (status, project) = api_call(
        query_port,
        Method::POST,
        "/api/0/teams/default/default/projects/",
        TOKEN,
        Some(json!({"name": "Shop", "slug": "shop"})),
    );
    assert_eq!(status, 201, "{project}");
    let project_id = project["id"].as_str().unwrap().to_owned();
    assert_ne!(
        project_id, "1",
        "a new project must not reuse the default's id"
    );
    let (status, key) = api_call(
        query_port,
        Method::POST,
        "/api/0/projects/default/shop/keys/",
        TOKEN,
        Some(json!({"name": "shop key"})),
    );
    assert_eq!(status, 201, "{key}");
    let public_key = key["public"].as_str().unwrap().to_owned();
    let (status, token) = api_call(
        query_port,
        Method::POST,
        "/api/0/api-tokens/",
        TOKEN,
        Some(
            json!({"name": "reader", "scopes": ["org:read", "project:read", "event:read", "alerts:read"]}),
        ),
    );
    assert_eq!(status, 201, "{token}");
    let reader = token["token"].as_str().unwrap().to_owned();
    let (status, rule) = api_call(
        query_port,
        Method::POST,
        "/api/0/projects/default/shop/rules/",
        TOKEN,
        Some(json!({
            "name": "new issue in shop",
            "actionMatch": "all",
            "frequency": 5,
            "conditions": [{"id": "sentry.rules.conditions.first_seen_event.FirstSeenEventCondition"}],
            "actions": [{"id": "osprey.actions.webhook", "url": hooks.url("/shop")}],
        })),
    );
    assert_eq!(status, 201, "{rule}");

    // The ingest node takes the new key; the processor node files the event under the new
    // project and fires the rule made on the query node.
    let event_id = "5e1ec7ed5e1ec7ed5e1ec7ed5e1ec7ed";
    eventually_logged(&nodes, 30, "the ingest node accepts the new key", || {
        post_envelope_to(
            ingest_port,
            &project_id,
            &public_key,
            event_id,
            "checkout failed",
        ) == 200
    });
    eventually_logged(
        &nodes,
        60,
        "the alert rule fires on the processor node",
        || !hooks.on("/shop").is_empty(),
    );
    // The token made on the query node reads the new project's issue on the processor node.
    let issues_path = "/api/0/projects/default/shop/issues/";
    eventually_logged(
        &nodes,
        30,
        "the reader token sees the issue on the processor node",
        || {
            let (status, body) = api_call(processor_port, Method::GET, issues_path, &reader, None);
            status == 200 && body.as_array().is_some_and(|a| a.len() == 1)
        },
    );
    let (status, issues) = api_call(query_port, Method::GET, issues_path, &reader, None);
    assert_eq!(status, 200, "{issues}");
    assert_eq!(
        issues[0]["project"]["id"].as_str(),
        Some(project_id.as_str())
    );
    // One project named shop exists, on every node (the query node did not fan the
    // creation out to its peers).
    for port in [processor_port, query_port] {
        let (_, projects) = api_call(
            port,
            Method::GET,
            "/api/0/organizations/default/projects/",
            &reader,
            None,
        );
        let shops = projects
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["slug"] == "shop")
            .count();
        assert_eq!(shops, 1, "node {port}: {projects}");
    }

    // MCP on the query node, with the official Python MCP client: the data tools ask the
    // processor node; capture_event goes through Kafka to it.
    let report = mcp_over_http(
        query_port,
        &reader,
        json!([
            ["search_issues", {"project": "shop", "query": ""}],
            ["capture_event", {"project": "shop", "level": "error", "message": "denied"}],
        ]),
    );
    let found = &report["results"][0];
    assert_eq!(found["isError"], false, "{report}");
    assert_eq!(found["structured"]["total"], 1, "{report}");
    let issue = &found["structured"]["issues"][0];
    assert_eq!(issue["title"], "checkout failed");
    assert_eq!(issue["id"], issues[0]["id"], "the same id as the API");
    assert!(
        issue.get("ospreyHash").is_none(),
        "fan-out fields stay internal"
    );
    // Issue ids come from the processor node's own block, never 1, 2, … (another
    // processor node would make those too).
    let issue_id: u64 = issue["id"].as_str().unwrap().parse().unwrap();
    assert!(
        issue_id > 1 << 24,
        "issue id {issue_id} is not in a node block"
    );
    let denied = &report["results"][1];
    assert_eq!(
        denied["isError"], true,
        "a read token cannot capture: {report}"
    );
    assert!(
        denied["text"].as_str().unwrap().contains("scope"),
        "{report}"
    );

    let report = mcp_over_http(
        query_port,
        TOKEN,
        json!([
            ["get_issue_details", {"issue": issue["shortId"]}],
            ["capture_event", {"project": "shop", "level": "warning", "message": "captured through the query node"}],
        ]),
    );
    let details = &report["results"][0];
    assert_eq!(details["isError"], false, "{report}");
    assert_eq!(details["structured"]["issue"]["id"], issue["id"]);
    assert_eq!(
        details["structured"]["latestEvent"]["eventId"], event_id,
        "{report}"
    );
    assert_eq!(report["results"][1]["isError"], false, "{report}");
    eventually_logged(&nodes, 60, "the captured event becomes an issue", || {
        let report = mcp_over_http(
            query_port,
            &reader,
            json!([["search_issues", {"project": "shop", "query": "", "sort": "new"}]]),
        );
        let r = &report["results"][0]["structured"];
        r["total"] == 2 && r["issues"][0]["title"] == "captured through the query node"
    });
    let (_, on_processor) = api_call(processor_port, Method::GET, issues_path, &reader, None);
    assert_eq!(
        on_processor.as_array().map(Vec::len),
        Some(2),
        "the processor node holds it: {on_processor}"
    );

    // A node that joins now has all of it by the time it answers its first request.
    let late = node("processor", free_port(), &dir.path().join("late"), &run);
    let late_port = late.port;
    let mut first = None;
    eventually_logged(&nodes, 90, "the late node answers", || {
        let answer = api_call(
            late_port,
            Method::GET,
            "/api/0/projects/default/shop/keys/",
            &reader,
            None,
        );
        let answered = answer.0 != 0;
        first = Some(answer);
        answered
    });
    let (status, keys) = first.unwrap();
    assert_eq!(status, 200, "{keys}");
    assert!(
        keys.as_array()
            .unwrap()
            .iter()
            .any(|k| k["public"] == public_key.as_str()),
        "{keys}"
    );

    // A delete made on the query node reaches the ingest node.
    let (status, body) = api_call(
        query_port,
        Method::DELETE,
        &format!("/api/0/projects/default/shop/keys/{public_key}/"),
        TOKEN,
        None,
    );
    assert!(status == 204 || status == 200, "{status} {body}");
    eventually_logged(
        &nodes,
        30,
        "the ingest node refuses the deleted key",
        || {
            let status = post_envelope_to(
                ingest_port,
                &project_id,
                &public_key,
                "5e1ec7ed5e1ec7ed5e1ec7ed5e1ec7ee",
                "after the delete",
            );
            status == 401 || status == 403
        },
    );
}
