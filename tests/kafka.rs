//! `osprey serve --kafka` end to end on a real broker: an ingest node answers envelopes
//! after Kafka acknowledged them, a processor node in another process turns them into
//! issues. The broker address comes from `OSPREY_TEST_KAFKA` (scripts/kafka.sh); without
//! it the test fails and says so.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

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

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Node(Child);

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn node(role: &str, port: u16, data: &std::path::Path, run: &str) -> Node {
    let config = data.with_extension("toml");
    std::fs::write(
        &config,
        format!(
            "[kafka]\nbrokers = \"{}\"\npartitions = 2\ngroup_id = \"e2e-{run}\"\n[kafka.topics]\nevents = \"e2e-ev-{run}\"\ntransactions = \"e2e-tx-{run}\"\n",
            broker()
        ),
    )
    .unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_osprey"))
        .args(["serve", "--role", role, "--config"])
        .arg(&config)
        .args(["--listen", &format!("127.0.0.1:{port}"), "--data"])
        .arg(data)
        .env("OSPREY_DEFAULT_KEY", KEY)
        .env("OSPREY_DURABILITY", "os")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    Node(child)
}

/// POSTs one envelope; returns the HTTP status (0 when the node does not answer yet).
fn post_envelope(port: u16, event_id: &str, message: &str) -> u16 {
    let body = format!(
        "{{\"event_id\":\"{event_id}\"}}\n{{\"type\":\"event\"}}\n{{\"event_id\":\"{event_id}\",\"platform\":\"python\",\"message\":\"{message}\",\"level\":\"error\"}}\n"
    );
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return 0;
    };
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let req = format!(
        "POST /api/1/envelope/?sentry_key={KEY} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-sentry-envelope\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out.split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

/// `osprey issues --json` on a data directory (read-only, beside the running node).
fn issues(data: &std::path::Path) -> Vec<serde_json::Value> {
    let out = Command::new(env!("CARGO_BIN_EXE_osprey"))
        .args(["issues", "--json", "--data"])
        .arg(data)
        .output()
        .unwrap();
    serde_json::from_slice(&out.stdout).unwrap_or_default()
}

#[test]
fn ingest_node_to_kafka_to_processor_node() {
    let run = uuid::Uuid::new_v4().simple().to_string();
    let dir = tempfile::tempdir().unwrap();
    let (ingest_port, proc_port) = (free_port(), free_port());
    let _ingest = node("ingest", ingest_port, &dir.path().join("ingest"), &run);
    let _processor = node("processor", proc_port, &dir.path().join("processor"), &run);

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
    loop {
        let found = issues(&dir.path().join("processor"));
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
            "processor node has {counts:?}, expected {expected:?}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}
