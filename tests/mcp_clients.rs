//! osprey's MCP server driven by a real MCP client, the official Python `mcp` SDK, on data a
//! real Sentry SDK (Python `sentry-sdk`) sent to a real `osprey serve`:
//! - streamable HTTP at `/mcp` with the admin token, while the server runs;
//! - `osprey mcp --data DIR` over stdio while the server writes, and after it stopped.
//!
//! The Python interpreter comes from `scripts/test` (`OSPREY_TEST_PYTHON`, a venv with
//! `sentry-sdk` and `mcp`).

mod common;

use std::io::{Read, Write};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{python, run_python, run_tool, sdk_script, OspreyServer, ServerOptions, TOOL_TIMEOUT};
use serde_json::{json, Value};

/// Every tool the server must list.
const TOOLS: &[&str] = &[
    "find_projects",
    "get_error_analysis",
    "get_performance_metrics",
    "compare_releases",
    "search_issues",
    "get_issue_details",
    "get_event",
    "get_trace_details",
    "search_events",
    "manage_issues",
    "capture_event",
];

/// One MCP session over HTTP: lists tools, makes `calls`, returns the script's report.
fn over_http(server: &OspreyServer, calls: Value) -> Value {
    let mut cmd = Command::new(python());
    cmd.arg(sdk_script("mcp_client.py"))
        .arg("http")
        .arg(server.url("/mcp"))
        .arg(server.admin_token())
        .arg(calls.to_string());
    run_tool("python mcp (http)", cmd, TOOL_TIMEOUT)
        .assert_success()
        .json()
}

/// One MCP session with `osprey mcp --data DIR` over stdio.
fn over_stdio(data: &std::path::Path, calls: Value) -> Value {
    let mut cmd = Command::new(python());
    cmd.arg(sdk_script("mcp_client.py"))
        .arg("stdio")
        .arg(env!("CARGO_BIN_EXE_osprey"))
        .arg(data)
        .arg(calls.to_string());
    run_tool("python mcp (stdio)", cmd, TOOL_TIMEOUT)
        .assert_success()
        .json()
}

/// The structured answer of call `i`, which must have succeeded.
fn ok(report: &Value, i: usize) -> &Value {
    let r = &report["results"][i];
    assert_eq!(r["isError"], false, "call {i} failed: {r}");
    &r["structured"]
}

/// The error text of call `i`, which must have failed as a tool result.
fn tool_error(report: &Value, i: usize) -> String {
    let r = &report["results"][i];
    assert_eq!(r["isError"], true, "call {i} should fail: {r}");
    r["text"].as_str().unwrap_or_default().to_owned()
}

fn titles(issues: &Value) -> Vec<String> {
    issues
        .as_array()
        .unwrap_or_else(|| panic!("not a list: {issues}"))
        .iter()
        .map(|i| i["title"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// Sends one release's data with the Python Sentry SDK.
fn send(server: &OspreyServer, release: &str, errors: u32, tx: u32, duration_ms: u32) -> Value {
    let args = [
        server.dsn().to_owned(),
        release.to_owned(),
        errors.to_string(),
        tx.to_string(),
        duration_ms.to_string(),
    ];
    run_python("mcp_data.py", &args, &[])
        .assert_success()
        .json()
}

/// Polls (bounded) until `done` holds for an HTTP session's answer to `calls`.
fn wait_for(server: &OspreyServer, calls: Value, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let report = over_http(server, calls.clone());
        if done(&report) {
            return report;
        }
        assert!(
            Instant::now() < deadline,
            "the server did not process the data in time: {report}\n{}",
            server.log_tail(40)
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn error_count(report: &Value) -> u64 {
    report["results"][0]["structured"]["totals"]["events"]
        .as_u64()
        .unwrap_or(0)
}

#[test]
fn python_mcp_sdk_over_http_and_stdio() {
    let mut server = OspreyServer::start(ServerOptions::default());

    // Release 1.0: 5 ZeroDivisionErrors from 2 users, 40 transactions of 25..1000 ms.
    let first = send(&server, "1.0", 5, 40, 1000);
    let analysis = json!([["get_error_analysis", {"project": "default", "timeRange": "1h"}],
                          ["get_performance_metrics", {"project": "default", "timeRange": "1h"}]]);
    let report = wait_for(&server, analysis, |r| {
        error_count(r) == 5 && r["results"][1]["structured"]["metrics"]["count"] == 40.0
    });
    let names: Vec<&str> = report["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    for name in TOOLS {
        assert!(names.contains(name), "{name} not listed: {names:?}");
    }
    for t in report["tools"].as_array().unwrap() {
        let write = ["manage_issues", "capture_event"].contains(&t["name"].as_str().unwrap());
        assert_eq!(t["readOnly"], !write, "{t}");
        assert_eq!(t["hasOutputSchema"], true, "{t}");
    }
    let errors = ok(&report, 0);
    assert_eq!(errors["totals"]["users"], 2);
    assert_eq!(
        titles(&errors["newIssues"]),
        vec!["ZeroDivisionError: division by zero"]
    );
    let perf = ok(&report, 1);
    // 40 durations 25·i ms: nearest-rank p95 is the 38th, 950 ms; every 10th failed.
    let p95 = perf["metrics"]["p95"].as_f64().unwrap();
    assert!((p95 - 950.0).abs() <= 950.0 * 0.01, "p95 {p95}");
    assert_eq!(perf["metrics"]["failure_rate"], 0.1);

    // Resolve the issue over HTTP; then release 2.0 brings it back (a regression), slower.
    let report = over_http(
        &server,
        json!([["search_issues", {"project": "default", "query": "is:unresolved"}]]),
    );
    let short_id = ok(&report, 0)["issues"][0]["shortId"]
        .as_str()
        .unwrap()
        .to_owned();
    let report = over_http(
        &server,
        json!([["manage_issues", {"project": "default", "action": "bulk_update",
                                   "issues": [short_id], "changes": {"status": "resolved"}}],
               ["search_issues", {"query": "is:resolved"}]]),
    );
    assert_eq!(ok(&report, 0)["updated"][0]["status"], "resolved");
    assert_eq!(
        ok(&report, 1)["total"],
        1,
        "the write shows in the read tools"
    );
    send(&server, "2.0", 3, 20, 2000);
    wait_for(
        &server,
        json!([["get_error_analysis", {"project": "default", "timeRange": "1h"}]]),
        |r| error_count(r) == 8,
    );

    // stdio on the data directory while the server runs (and writes).
    let calls = json!([
        ["compare_releases", {"project": "default", "base": "1.0", "head": "2.0"}],
        ["get_issue_details", {"issue": short_id}],
        ["get_trace_details", {"trace_id": first["trace"]}],
        ["get_event", {"event_id": first["errors"][0]}],
        ["search_events", {"dataset": "transactions", "query": "release:2.0", "timeRange": "1h"}],
        ["get_error_analysis", {"project": "nope", "timeRange": "1h"}],
        ["get_error_analysis", {"project": "default", "timeRange": "last week"}],
        ["search_issues", {"query": "title:\"unclosed"}],
        ["get_performance_metrics", {"project": "default", "timeRange": "1h", "transaction": "GET /chekout"}],
        ["manage_issues", {"project": "default", "action": "bulk_update", "issues": [short_id], "changes": {"status": "ignored"}}]
    ]);
    let report = over_stdio(server.data_dir(), calls);
    let cmp = ok(&report, 0);
    assert_eq!(
        titles(&cmp["regressions"]),
        vec!["ZeroDivisionError: division by zero"]
    );
    assert_eq!(cmp["base"]["errorEvents"], 5);
    assert_eq!(cmp["head"]["errorEvents"], 3);
    // head: 20 durations 100·i ms → p95 1900 ms; base 950 ms.
    let change = cmp["p95ChangeMs"].as_f64().unwrap();
    assert!((change - 950.0).abs() <= 30.0, "p95 change {change}");
    let details = ok(&report, 1);
    assert_eq!(
        details["issue"]["firstRelease"], "1.0",
        "the release that introduced it"
    );
    assert_eq!(details["issue"]["lastRelease"], "2.0");
    assert_eq!(details["issue"]["substatus"], "regressed");
    let frames = details["latestEvent"]["exceptions"][0]["frames"]
        .as_array()
        .unwrap();
    let crash = frames.last().unwrap();
    assert_eq!(crash["function"], "divide");
    assert_eq!(crash["inApp"], true);
    assert_eq!(details["users"]["count"], 2);
    let trace = ok(&report, 2);
    assert_eq!(trace["transactions"], 1);
    assert_eq!(ok(&report, 3)["event"]["groupID"], details["issue"]["id"]);
    assert_eq!(ok(&report, 4)["count"], 20);
    assert!(tool_error(&report, 5).contains("Known projects: default"));
    assert!(tool_error(&report, 6).contains("24h"));
    assert!(tool_error(&report, 7).contains("unclosed quote"));
    assert!(tool_error(&report, 8).contains("did you mean \"GET /checkout\""));
    assert!(
        tool_error(&report, 9).contains("--url"),
        "a follower cannot write"
    );

    // capture_event over HTTP is processed like an SDK event.
    let report = over_http(
        &server,
        json!([["capture_event", {"project": "default", "level": "warning",
                                   "message": "cache cluster degraded", "tags": {"region": "eu"}}]]),
    );
    let event_id = ok(&report, 0)["eventId"].as_str().unwrap().to_owned();
    let report = wait_for(
        &server,
        json!([["get_event", {"event_id": event_id}]]),
        |r| r["results"][0]["isError"] == false,
    );
    assert_eq!(ok(&report, 0)["event"]["title"], "cache cluster degraded");

    // No token, no MCP.
    assert_eq!(post_status(&server.addr(), "/mcp", None), 401);
    assert_eq!(post_status(&server.addr(), "/mcp", Some("wrong")), 401);

    // With no server running, stdio still answers from the data directory.
    server.stop();
    let report = over_stdio(
        server.data_dir(),
        json!([["search_issues", {"query": ""}], ["find_projects", {}]]),
    );
    assert_eq!(ok(&report, 0)["total"], 2);
    assert_eq!(ok(&report, 1)["projects"][0]["slug"], "default");
}

/// The status of a JSON-RPC `tools/list` POST to `path` (a plain socket: no client library).
fn post_status(addr: &str, path: &str, token: Option<&str>) -> u16 {
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#;
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Accept: application/json, text/event-stream\r\n{auth}Content-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    );
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    stream.write_all(request.as_bytes()).expect("write");
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP status in {answer:?}"))
}
