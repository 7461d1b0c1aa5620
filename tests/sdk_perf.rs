//! Issue 4's real-SDK acceptance, end to end against a running `osprey serve`:
//!
//! - the Python `sentry-sdk` and `@sentry/node` (in its default span-streaming mode and with
//!   `traceLifecycle: 'static'`) send transactions whose durations, statuses and users the
//!   test planned (explicit start and end timestamps, no sleeping); `osprey perf --json`
//!   then reports, per transaction name, the exact count, apdex and failure rate and
//!   p50/p95/p99 within the histogram's 3 significant digits of the exact nearest-rank
//!   percentile the test computes from the planned durations, and the unique users,
//!   miserable users (a transaction slower than 4T) and Sentry's user misery;
//! - a trace spanning both SDKs (Python starts it, its `sentry-trace`/`baggage` headers go to
//!   the Node script, which continues it with default options) is assembled by `osprey trace`
//!   and by the trace API into one tree: both services' transactions and spans, the parent
//!   links across the service boundary, the timings, and the Node error on its span.
//!
//! Run through `scripts/test` (it installs the SDKs and sets the variables `common` reads).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use common::{run_node, run_python, run_tool, OspreyServer, ServerOptions};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

/// How long the server may take to process what the SDKs sent.
const PROCESS_TIMEOUT: Duration = Duration::from_secs(60);
/// The default project's apdex threshold (ms).
const APDEX_T_MS: u64 = 300;
/// Transactions per name.
const PER_NAME: usize = 24;

/// One planned transaction (the scripts read these fields).
#[derive(Debug, Clone)]
struct Planned {
    name: String,
    op: &'static str,
    start_us: u64,
    duration_us: u64,
    status: &'static str,
    user: String,
}

impl Planned {
    fn to_json(&self) -> Value {
        json!({
            "name": self.name, "op": self.op, "start_us": self.start_us,
            "duration_us": self.duration_us, "status": self.status, "user": self.user,
        })
    }
}

fn now_us() -> u64 {
    storage::now_ms() * 1000
}

/// A duration in µs from one of several shapes: fast uniform, around the apdex threshold,
/// and a heavy (Pareto-like) tail reaching seconds.
fn duration_us(rng: &mut StdRng, shape: usize) -> u64 {
    let ms: f64 = match shape % 3 {
        0 => rng.random_range(2.0..280.0),
        1 => rng.random_range(150.0..1_500.0),
        _ => {
            let u: f64 = rng.random_range(0.001..1.0);
            (40.0 / u.powf(1.0 / 1.2)).min(20_000.0)
        }
    };
    // Whole microseconds, never exactly on an apdex boundary (T, 4T) so that no rounding
    // question arises there.
    let us = (ms * 1000.0).round() as u64;
    if us == APDEX_T_MS * 1000 || us == 4 * APDEX_T_MS * 1000 {
        us + 1
    } else {
        us
    }
}

/// `names` × [`PER_NAME`] transactions with start times spread over the last ~25 minutes.
fn plan(seed: u64, names: &[&str]) -> Vec<Planned> {
    let mut rng = StdRng::seed_from_u64(seed);
    let base = now_us() - 30 * 60 * 1_000_000;
    let mut out = Vec::new();
    for (n, name) in names.iter().enumerate() {
        for i in 0..PER_NAME {
            let status = match rng.random_range(0..10) {
                0..=2 => "internal_error",
                3 => "cancelled",
                4 => "not_found",
                _ => "ok",
            };
            out.push(Planned {
                name: name.to_string(),
                op: "http.server",
                // 61 s apart: the transactions of one name cross many minute buckets.
                start_us: base + (i as u64 * 61 + n as u64) * 1_000_000,
                duration_us: duration_us(&mut rng, n + i),
                status,
                user: format!("user-{}", rng.random_range(0..6)),
            });
        }
    }
    out
}

fn write_plan(dir: &Path, file: &str, plan: &[Planned]) -> String {
    let path = dir.join(file);
    let body = json!({"transactions": plan.iter().map(Planned::to_json).collect::<Vec<_>>()});
    std::fs::write(&path, body.to_string()).expect("write plan");
    path.to_string_lossy().into_owned()
}

/// What the query must answer for one transaction name, computed from the plan.
#[derive(Debug)]
struct Expected {
    count: u64,
    avg_ms: f64,
    p50_ms: f64,
    p95_ms: f64,
    p99_ms: f64,
    apdex: f64,
    failure_rate: f64,
    unique_users: u64,
    miserable_users: u64,
}

/// Nearest-rank percentile (rank ⌈q·n⌉), the definition the query documents.
fn nearest_rank(sorted: &[u64], q: f64) -> f64 {
    let n = sorted.len();
    let rank = ((q * n as f64).ceil() as usize).clamp(1, n);
    sorted[rank - 1] as f64 / 1000.0
}

fn expected(plan: &[Planned]) -> BTreeMap<String, Expected> {
    let mut by_name: BTreeMap<String, Vec<&Planned>> = BTreeMap::new();
    for p in plan {
        by_name.entry(p.name.clone()).or_default().push(p);
    }
    by_name
        .into_iter()
        .map(|(name, list)| {
            let mut d: Vec<u64> = list.iter().map(|p| p.duration_us).collect();
            d.sort_unstable();
            let t = APDEX_T_MS * 1000;
            let satisfied = d.iter().filter(|&&x| x <= t).count() as f64;
            let tolerated = d.iter().filter(|&&x| x > t && x <= 4 * t).count() as f64;
            // Sentry's failure rate: status not ok, cancelled or unknown.
            let failures = list
                .iter()
                .filter(|p| !matches!(p.status, "ok" | "cancelled" | "unknown"))
                .count() as f64;
            let n = d.len() as f64;
            let users: BTreeSet<&str> = list.iter().map(|p| p.user.as_str()).collect();
            let miserable: BTreeSet<&str> = list
                .iter()
                .filter(|p| p.duration_us > 4 * t)
                .map(|p| p.user.as_str())
                .collect();
            (
                name,
                Expected {
                    count: d.len() as u64,
                    avg_ms: d.iter().sum::<u64>() as f64 / n / 1000.0,
                    p50_ms: nearest_rank(&d, 0.5),
                    p95_ms: nearest_rank(&d, 0.95),
                    p99_ms: nearest_rank(&d, 0.99),
                    apdex: (satisfied + tolerated / 2.0) / n,
                    failure_rate: failures / n,
                    unique_users: users.len() as u64,
                    miserable_users: miserable.len() as u64,
                },
            )
        })
        .collect()
}

/// `osprey perf --data DIR --by transaction --json` (the data directory of the running
/// server, opened read-only as the CLI does).
fn perf_by_transaction(server: &OspreyServer) -> Value {
    let data = server.data_dir().to_string_lossy().into_owned();
    perf_json(&["--data", &data])
}

/// `osprey perf SOURCE… --since 2h --by transaction --limit 100 --json`.
fn perf_json(source: &[&str]) -> Value {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_osprey"));
    cmd.arg("perf").args(source).args([
        "--since",
        "2h",
        "--by",
        "transaction",
        "--limit",
        "100",
        "--json",
    ]);
    let out = run_tool("osprey perf", cmd, Duration::from_secs(60));
    out.assert_success();
    serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("osprey perf printed no JSON ({e}):\n{}", out.stdout))
}

/// Polls `osprey perf` (bounded) until every planned name has its full count.
fn wait_for_counts(server: &OspreyServer, want: &BTreeMap<String, Expected>) -> Value {
    let deadline = Instant::now() + PROCESS_TIMEOUT;
    loop {
        let report = perf_by_transaction(server);
        let counts: BTreeMap<String, u64> = report["groups"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|g| {
                Some((
                    g["key"].as_str()?.to_string(),
                    g["stats"]["count"].as_u64()?,
                ))
            })
            .collect();
        if want
            .iter()
            .all(|(name, e)| counts.get(name).copied().unwrap_or(0) >= e.count)
        {
            return report;
        }
        assert!(
            Instant::now() < deadline,
            "not every transaction was counted within {PROCESS_TIMEOUT:?}: have {counts:?}\n{}",
            server.log_tail(40)
        );
        thread::sleep(Duration::from_millis(300));
    }
}

/// Within the histogram's precision: 3 significant digits (0.1 %), plus 1 µs for the
/// SDK's float seconds.
fn assert_close(what: &str, got: Option<f64>, exact: f64) {
    let got = got.unwrap_or_else(|| panic!("{what}: no value, expected {exact}"));
    assert!(
        (got - exact).abs() <= exact * 1e-3 + 1e-3,
        "{what}: {got} ms is not within 3 significant digits of the exact {exact} ms"
    );
}

fn check_report(report: &Value, want: &BTreeMap<String, Expected>) {
    let groups: BTreeMap<String, &Value> = report["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .map(|g| {
            (
                g["key"].as_str().unwrap_or_default().to_string(),
                &g["stats"],
            )
        })
        .collect();
    for (name, e) in want {
        let s = groups
            .get(name)
            .unwrap_or_else(|| panic!("no row for {name:?} in {report}"));
        eprintln!("{name}: expected {e:?}\n  got {s}");
        assert_eq!(s["count"].as_u64(), Some(e.count), "{name}: count");
        // The mean comes from an exact µs sum: the SDKs' timestamps keep their microseconds.
        let avg = s["avg_ms"].as_f64().expect("avg_ms");
        assert!(
            (avg - e.avg_ms).abs() < 1e-6,
            "{name}: avg {avg} ms != exact {} ms",
            e.avg_ms
        );
        assert_close(&format!("{name} p50"), s["p50_ms"].as_f64(), e.p50_ms);
        assert_close(&format!("{name} p95"), s["p95_ms"].as_f64(), e.p95_ms);
        assert_close(&format!("{name} p99"), s["p99_ms"].as_f64(), e.p99_ms);
        let apdex = s["apdex"].as_f64().expect("apdex");
        assert!(
            (apdex - e.apdex).abs() < 1e-9,
            "{name}: apdex {apdex} != exact {}",
            e.apdex
        );
        assert_eq!(s["apdex_exact"], true, "{name}: apdex must be exact");
        assert_eq!(s["apdex_threshold_ms"].as_u64(), Some(APDEX_T_MS));
        // Unique users and user misery (Sentry's prior: α = 5.8875, β = 111.8625); the
        // sketch counts a handful of users exactly.
        assert_eq!(
            s["unique_users"].as_u64(),
            Some(e.unique_users),
            "{name}: unique users"
        );
        assert_eq!(
            s["miserable_users"].as_u64(),
            Some(e.miserable_users),
            "{name}: miserable users"
        );
        let misery = (e.miserable_users as f64 + 5.8875) / (e.unique_users as f64 + 117.75);
        let got = s["user_misery"].as_f64().expect("user_misery");
        assert!(
            (got - misery).abs() < 1e-9,
            "{name}: user misery {got} != {misery}"
        );
        let failure_rate = s["failure_rate"].as_f64().expect("failure_rate");
        assert!(
            (failure_rate - e.failure_rate).abs() < 1e-9,
            "{name}: failure rate {failure_rate} != exact {}",
            e.failure_rate
        );
    }
}

#[test]
fn sdk_transactions_give_exact_counts_percentiles_apdex_and_failure_rates() {
    let server = OspreyServer::start(ServerOptions::default());
    let dir = server.temp_dir().to_path_buf();
    let python_plan = plan(41, &["GET /py/checkout", "GET /py/search"]);
    let node_plan = plan(42, &["GET /node/checkout", "POST /node/login"]);
    let static_plan = plan(43, &["GET /node-static/cart"]);

    let out = run_python(
        "python_perf.py",
        &[server.dsn(), &write_plan(&dir, "python.json", &python_plan)],
        &[],
    );
    out.assert_success();
    let sent = out.json()["event_ids"].as_array().map_or(0, Vec::len);
    assert_eq!(sent, python_plan.len(), "python sent every transaction");

    // @sentry/node with its defaults: spans streamed as span v2 items.
    let out = run_node(
        "node_perf.js",
        &[server.dsn(), &write_plan(&dir, "node.json", &node_plan)],
        &[],
    );
    out.assert_success();
    let report = out.json();
    let streamed = report["responses"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|r| {
            r["items"]
                .as_array()
                .is_some_and(|i| i.iter().any(|t| t == "span"))
        });
    assert!(
        streamed,
        "@sentry/node's default no longer streams spans; this test then no longer covers span items: {report}"
    );

    // The same SDK asked for classic transaction events.
    let out = run_node(
        "node_perf.js",
        &[
            server.dsn(),
            &write_plan(&dir, "static.json", &static_plan),
            "--static",
        ],
        &[],
    );
    out.assert_success();
    let report = out.json();
    let classic = report["responses"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|r| {
            r["items"]
                .as_array()
                .is_some_and(|i| i.iter().any(|t| t == "transaction"))
        });
    assert!(classic, "--static sent no transaction event: {report}");

    let all: Vec<Planned> = python_plan
        .into_iter()
        .chain(node_plan)
        .chain(static_plan)
        .collect();
    let want = expected(&all);
    let report = wait_for_counts(&server, &want);
    check_report(&report, &want);
    // Nothing beyond the plan (the SDKs' own HTTP requests must not become transactions).
    assert_eq!(
        report["total"]["count"].as_u64(),
        Some(all.len() as u64),
        "total count: {}",
        report["total"]
    );

    // `osprey perf --url` asks the running server's performance API and prints the same
    // report as reading the data directory.
    let url = server.url("");
    let remote = perf_json(&["--url", &url, "--token", server.admin_token()]);
    assert_eq!(remote["total"], report["total"], "total over HTTP");
    assert_eq!(remote["groups"], report["groups"], "groups over HTTP");
    check_report(&remote, &want);
    let (status, body) = server.api_get("/api/0/projects/default/default/performance/?by=colour");
    assert_eq!(status, 400, "{body}");
    assert!(
        body["detail"].as_str().unwrap().contains("colour"),
        "{body}"
    );
}

/// One node of the trace API's nested tree, found by span id.
fn find_node<'a>(nodes: &'a [Value], span_id: &str) -> Option<&'a Value> {
    for n in nodes {
        if n["span_id"] == span_id {
            return Some(n);
        }
        if let Some(found) = n["children"].as_array().and_then(|c| find_node(c, span_id)) {
            return Some(found);
        }
    }
    None
}

fn child_ids(node: &Value) -> Vec<String> {
    node["children"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["span_id"].as_str().map(str::to_string))
        .collect()
}

#[test]
fn trace_across_python_and_node_assembles_into_one_tree() {
    let server = OspreyServer::start(ServerOptions::default());
    let start = now_us() - 5 * 60 * 1_000_000;
    let start_arg = start.to_string();

    let py = run_python("python_trace.py", &[server.dsn(), &start_arg], &[]);
    py.assert_success();
    let py = py.json();
    let s = |v: &Value, k: &str| -> String {
        v[k].as_str()
            .unwrap_or_else(|| panic!("no {k:?} in {v}"))
            .to_string()
    };
    let trace_id = s(&py, "trace_id");
    let (py_root, py_db, py_client) = (
        s(&py, "transaction_span_id"),
        s(&py, "db_span_id"),
        s(&py, "client_span_id"),
    );
    assert!(
        s(&py, "sentry_trace").starts_with(&format!("{trace_id}-{py_client}")),
        "the outgoing sentry-trace header names the http.client span: {py}"
    );

    // The Node service, default options, continuing from the headers.
    let node = run_node(
        "node_trace.js",
        &[
            server.dsn(),
            &s(&py, "sentry_trace"),
            &s(&py, "baggage"),
            &start_arg,
        ],
        &[],
    );
    node.assert_success();
    let node = node.json();
    assert_eq!(s(&node, "trace_id"), trace_id, "node continued the trace");
    let (node_root, node_child, node_error) = (
        s(&node, "root_span_id"),
        s(&node, "child_span_id"),
        s(&node, "error"),
    );

    // `osprey trace TRACE --json`, polled until both transactions and the error are in.
    let deadline = Instant::now() + PROCESS_TIMEOUT;
    let trace = loop {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_osprey"));
        cmd.arg("trace")
            .arg(&trace_id)
            .arg("--data")
            .arg(server.data_dir())
            .arg("--json");
        let out = run_tool("osprey trace", cmd, Duration::from_secs(60));
        if out.status.success() {
            let trace: Value = serde_json::from_str(&out.stdout)
                .unwrap_or_else(|e| panic!("osprey trace printed no JSON ({e}): {}", out.stdout));
            if trace["transactions"] == 2 && trace["errors"] == 1 {
                break trace;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the trace was not assembled within {PROCESS_TIMEOUT:?}:\n{}\n{}\n{}",
            out.stdout,
            out.stderr,
            server.log_tail(40)
        );
        thread::sleep(Duration::from_millis(300));
    };
    eprintln!("{trace:#}");

    // Depth-first, children by start time: both services in one tree.
    let shape: Vec<(String, Option<String>, u64, String)> = trace["spans"]
        .as_array()
        .expect("spans")
        .iter()
        .map(|sp| {
            (
                s(sp, "span_id"),
                sp["parent_span_id"].as_str().map(str::to_string),
                sp["depth"].as_u64().unwrap_or(99),
                s(sp, "kind"),
            )
        })
        .collect();
    let want = vec![
        (py_root.clone(), None, 0, "transaction".to_string()),
        (py_db.clone(), Some(py_root.clone()), 1, "span".into()),
        (py_client.clone(), Some(py_root.clone()), 1, "span".into()),
        (
            node_root.clone(),
            Some(py_client.clone()),
            2,
            "transaction".into(),
        ),
        (
            node_child.clone(),
            Some(node_root.clone()),
            3,
            "span".into(),
        ),
    ];
    assert_eq!(shape, want, "trace tree");
    let spans = trace["spans"].as_array().expect("spans");
    let timing = |i: usize| {
        (
            spans[i]["offset_ms"].as_f64().unwrap_or(-1.0),
            spans[i]["duration_ms"].as_f64().unwrap_or(-1.0),
        )
    };
    for (i, (offset, duration)) in [
        (0.0, 100.0),
        (1.0, 8.0),
        (10.0, 80.0),
        (20.0, 60.0),
        (30.0, 40.0),
    ]
    .into_iter()
    .enumerate()
    {
        let (o, d) = timing(i);
        assert!(
            (o - offset).abs() < 0.002 && (d - duration).abs() < 0.002,
            "span {i}: offset {o} ms, duration {d} ms; planned {offset} ms, {duration} ms"
        );
    }
    assert_eq!(spans[0]["description"], "GET /shop");
    assert_eq!(spans[3]["description"], "POST /api/pay");
    assert_eq!(spans[3]["op"], "http.server");
    assert_eq!(spans[3]["status"], "internal_error");
    assert_eq!(spans[4]["description"], "INSERT INTO payments");
    assert_eq!(
        spans[4]["errors"][0][0], node_error,
        "the Node error hangs on the span it was captured in"
    );
    assert_ne!(
        spans[0]["event_id"], spans[3]["event_id"],
        "two transactions, one per service"
    );

    // The trace API (what Sentry's UI and MCP server read) nests the same tree.
    let (status, body) = server.api_get(&format!("/api/0/organizations/default/trace/{trace_id}/"));
    assert_eq!(status, 200, "trace API: {body}");
    let roots = body.as_array().expect("trace API answers a list of roots");
    assert_eq!(roots.len(), 1, "one root: {body}");
    assert_eq!(roots[0]["span_id"], py_root.as_str());
    assert_eq!(child_ids(&roots[0]), vec![py_db.clone(), py_client.clone()]);
    let client = find_node(roots, &py_client).expect("python http.client span");
    assert_eq!(child_ids(client), vec![node_root.clone()]);
    let node_tx = find_node(roots, &node_root).expect("node transaction");
    assert_eq!(node_tx["is_transaction"], true);
    assert_eq!(node_tx["sdk_name"], "sentry.javascript.node");
    assert_eq!(child_ids(node_tx), vec![node_child.clone()]);
    let child = find_node(roots, &node_child).expect("node db span");
    assert_eq!(child["errors"][0]["event_id"], node_error.as_str());
}
