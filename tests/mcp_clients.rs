//! osprey's MCP server driven by a real MCP client, the official Python `mcp` SDK, on data a
//! real Sentry SDK (Python `sentry-sdk`) sent to a real `osprey serve`:
//! - streamable HTTP at `/mcp` with the admin token, while the server runs;
//! - `osprey mcp --data DIR` over stdio while the server writes, and after it stopped;
//! - `osprey mcp --url … --token …` (the stdio bridge), started exactly as README's client
//!   configuration says, like the README's stdio and HTTP configurations.
//!
//! Every tool is called and its values checked; the write tools' changes show in the read
//! tools and in the HTTP API; mistakes come back as `isError` results that say what to do.
//!
//! The Python interpreter comes from `scripts/test` (`OSPREY_TEST_PYTHON`, a venv with
//! `sentry-sdk` and `mcp`).

mod common;

use std::io::{Read, Write};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{python, run_python, run_tool, sdk_script, OspreyServer, ServerOptions, TOOL_TIMEOUT};
use serde_json::{json, Value};

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

/// One MCP session over stdio with the command and args of a client configuration.
fn over_stdio_cmd(command: &str, args: &[String], calls: Value) -> Value {
    let mut cmd = Command::new(python());
    cmd.arg(sdk_script("mcp_client.py"))
        .arg("stdio-cmd")
        .arg(command)
        .arg(json!(args).to_string())
        .arg(calls.to_string());
    run_tool("python mcp (stdio-cmd)", cmd, TOOL_TIMEOUT)
        .assert_success()
        .json()
}

/// The `mcpServers.osprey` entries of README's MCP section, in order (stdio on a data
/// directory, stdio bridged to a server, streamable HTTP), parsed as the JSON they claim
/// to be.
fn readme_mcp_configs() -> Vec<Value> {
    let readme = std::fs::read_to_string(common::repo_root().join("README.md")).unwrap();
    let section = readme
        .split("### MCP (agents)")
        .nth(1)
        .expect("README has an MCP section")
        .split("\n### ")
        .next()
        .unwrap();
    section
        .split("```json")
        .skip(1)
        .map(|block| {
            let text = block.split("```").next().unwrap();
            let v: Value = serde_json::from_str(text)
                .unwrap_or_else(|e| panic!("README MCP config is not JSON ({e}): {text}"));
            v["mcpServers"]["osprey"].clone()
        })
        .collect()
}

/// Replaces README placeholders with the test server's values.
fn fill_placeholders(text: &str, server: &OspreyServer) -> String {
    text.replace("./osprey-data", server.data_dir().to_str().unwrap())
        .replace("http://127.0.0.1:9000", &server.url(""))
        .replace("YOUR_API_TOKEN", server.admin_token())
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
    let hook = "http://127.0.0.1:9/hook"; // nothing listens: deliveries fail, history stays

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
    for name in mcp::TOOL_NAMES {
        assert!(names.contains(name), "{name} not listed: {names:?}");
    }
    for t in report["tools"].as_array().unwrap() {
        let write = mcp::WRITE_TOOL_NAMES.contains(&t["name"].as_str().unwrap());
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

    // Alerts over HTTP: a regression rule and a p95 metric rule; bad rules explain the fix.
    let report = over_http(
        &server,
        json!([
            ["configure_alert", {"project": "default", "name": "Came back",
              "conditions": [{"id": "sentry.rules.conditions.regression_event.RegressionEventCondition"}],
              "actions": [{"id": "osprey.actions.webhook", "url": hook}]}],
            ["configure_alert", {"project": "default", "name": "Slow checkout",
              "conditions": [{"aggregate": "p95(transaction.duration)", "threshold": 1500, "timeWindow": 30}],
              "actions": [{"id": "osprey.actions.webhook", "url": hook}]}],
            ["configure_alert", {"project": "default", "name": "Bad",
              "conditions": [{"id": "sentry.rules.conditions.event_frequency.EventFrequencyCondition", "value": 10, "interval": "2h"}],
              "actions": [{"id": "osprey.actions.webhook", "url": hook}]}],
            ["list_alerts", {"project": "default"}]
        ]),
    );
    assert_eq!(ok(&report, 0)["kind"], "issue");
    assert_eq!(ok(&report, 1)["kind"], "metric");
    let e = tool_error(&report, 2);
    assert!(e.contains("1h") && e.contains("Examples"), "{e}");
    let alerts = ok(&report, 3);
    assert_eq!(alerts["issueRules"][0]["name"], "Came back");
    assert_eq!(
        alerts["metricRules"][0]["aggregate"],
        "p95(transaction.duration)"
    );
    assert_eq!(alerts["fired"], json!([]), "nothing fired yet");

    // Resolve, assign, label and annotate the issue over HTTP; the read tools and the HTTP
    // API show every change.
    let report = over_http(
        &server,
        json!([["search_issues", {"project": "default", "query": "is:unresolved"}]]),
    );
    let short_id = ok(&report, 0)["issues"][0]["shortId"]
        .as_str()
        .unwrap()
        .to_owned();
    let issue_id = ok(&report, 0)["issues"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let report = over_http(
        &server,
        json!([["manage_issues", {"project": "default", "action": "bulk_update", "issues": [short_id],
                                   "changes": {"status": "resolved", "assignedTo": "team:payments",
                                               "tags": {"owner": "checkout"}},
                                   "note": "fixed in 2.0"}],
               ["search_issues", {"query": "is:resolved owner:checkout assigned:#payments"}],
               ["manage_issues", {"project": "default", "action": "bulk_update", "issues": [short_id],
                                   "changes": {"status": "solved"}}],
               ["search_issues", {"query": "is:resolved title:\"unclosed"}]]),
    );
    let updated = &ok(&report, 0)["updated"][0];
    assert_eq!(updated["status"], "resolved");
    assert_eq!(updated["assignedTo"], "team:payments");
    assert_eq!(
        ok(&report, 1)["total"],
        1,
        "the write shows in the read tools"
    );
    assert!(tool_error(&report, 2).contains("\"resolvedInNextRelease\""));
    let e = tool_error(&report, 3);
    assert!(
        e.contains("unterminated quoted string") && e.contains("Fix"),
        "{e}"
    );
    let (status, api_issue) =
        server.api_get(&format!("/api/0/organizations/default/issues/{issue_id}/"));
    assert_eq!(status, 200, "{api_issue}");
    assert_eq!(api_issue["status"], "resolved");
    assert_eq!(api_issue["assignedTo"]["type"], "team");
    assert_eq!(api_issue["assignedTo"]["id"], "payments");
    assert_eq!(api_issue["labels"]["owner"], "checkout");
    let (_, notes) = server.api_get(&format!("/api/0/issues/{issue_id}/notes/"));
    assert_eq!(notes[0]["data"]["text"], "fixed in 2.0", "{notes}");

    // track_release over HTTP: the releases API shows it, with its deploy and commit.
    let report = over_http(
        &server,
        json!([["track_release", {"project": "default", "version": "2.0", "environment": "production",
                                   "commits": [{"id": "9f3c2a1", "message": "faster checkout", "author": "Ann <ann@example.com>"}]}],
               ["track_release", {"project": "default", "version": "latest"}]]),
    );
    assert_eq!(ok(&report, 0)["created"], true);
    assert!(tool_error(&report, 1).contains("reserved name"));
    let (status, release) = server.api_get("/api/0/organizations/default/releases/2.0/");
    assert_eq!(status, 200, "{release}");
    assert_eq!(release["version"], "2.0");
    let (_, deploys) = server.api_get("/api/0/organizations/default/releases/2.0/deploys/");
    assert_eq!(deploys[0]["environment"], "production", "{deploys}");
    let (_, commits) = server.api_get("/api/0/organizations/default/releases/2.0/commits/");
    assert_eq!(commits[0]["id"], "9f3c2a1", "{commits}");

    // Release 2.0 brings the issue back (a regression), slower: both alerts fire.
    send(&server, "2.0", 3, 20, 2000);
    let report = wait_for(
        &server,
        json!([["get_error_analysis", {"project": "default", "timeRange": "1h"}],
               ["list_alerts", {"project": "default"}]]),
        |r| {
            error_count(r) == 8
                && r["results"][1]["structured"]["fired"]
                    .as_array()
                    .map_or(0, Vec::len)
                    == 2
        },
    );
    let fired = &ok(&report, 1)["fired"];
    let mut fired_names: Vec<&str> = fired
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["ruleName"].as_str().unwrap())
        .collect();
    fired_names.sort_unstable();
    assert_eq!(fired_names, ["Came back", "Slow checkout"]);
    let regression = fired
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["kind"] == "issue")
        .unwrap();
    assert_eq!(regression["shortId"], short_id.as_str());

    // The README's bridge configuration (stdio → /mcp) writes while the server runs.
    let configs = readme_mcp_configs();
    assert_eq!(configs.len(), 3, "stdio, bridge and HTTP configurations");
    let bridge_args: Vec<String> = configs[1]["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| fill_placeholders(a.as_str().unwrap(), &server))
        .collect();
    assert_eq!(configs[1]["command"], "osprey");
    let report = over_stdio_cmd(
        env!("CARGO_BIN_EXE_osprey"),
        &bridge_args,
        json!([["manage_issues", {"project": "default", "action": "bulk_update", "issues": [short_id],
                                   "changes": {"tags": {"severity": "high"}}}]]),
    );
    assert_eq!(ok(&report, 0)["updated"][0]["tags"]["severity"], "high");
    // The README's HTTP configuration: its URL and header work as written.
    assert_eq!(configs[2]["type"], "http");
    let url = fill_placeholders(configs[2]["url"].as_str().unwrap(), &server);
    let header = fill_placeholders(
        configs[2]["headers"]["Authorization"].as_str().unwrap(),
        &server,
    );
    assert_eq!(url, server.url("/mcp"));
    assert_eq!(header, format!("Bearer {}", server.admin_token()));

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
        ["manage_issues", {"project": "default", "action": "bulk_update", "issues": [short_id], "changes": {"status": "ignored"}}],
        ["search_events", {"dataset": "errors", "query": "release:[1.0", "timeRange": "1h"}],
        ["track_release", {"project": "default", "version": "3.0"}],
        ["get_error_analysis", {"project": "default", "timeRange": "1h"}]
    ]);
    let report = over_stdio(server.data_dir(), calls);
    let cmp = ok(&report, 0);
    assert_eq!(
        titles(&cmp["regressions"]),
        vec!["ZeroDivisionError: division by zero"]
    );
    assert_eq!(cmp["base"]["errorEvents"], 5);
    assert_eq!(cmp["head"]["errorEvents"], 3);
    assert_eq!(
        cmp["head"]["tracked"]["deploys"][0]["environment"],
        "production"
    );
    assert_eq!(cmp["head"]["tracked"]["commits"], 1);
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
    assert_eq!(
        details["issue"]["tags"]["severity"], "high",
        "the bridge's write"
    );
    let frames = details["latestEvent"]["exceptions"][0]["frames"]
        .as_array()
        .unwrap();
    let crash = frames.last().unwrap();
    assert_eq!(crash["function"], "divide");
    assert_eq!(crash["inApp"], true);
    assert_eq!(details["users"]["count"], 2);
    assert!(details["activity"]
        .as_array()
        .unwrap()
        .iter()
        .any(|a| a["type"] == "note" && a["data"]["text"] == "fixed in 2.0"));
    let trace = ok(&report, 2);
    assert_eq!(trace["transactions"], 1);
    assert_eq!(ok(&report, 3)["event"]["groupID"], details["issue"]["id"]);
    assert_eq!(ok(&report, 4)["count"], 20);
    assert!(tool_error(&report, 5).contains("Known projects: default"));
    assert!(tool_error(&report, 6).contains("24h"));
    assert!(tool_error(&report, 7).contains("unterminated quoted string"));
    assert!(tool_error(&report, 8).contains("did you mean \"GET /checkout\""));
    assert!(
        tool_error(&report, 9).contains("--url"),
        "a follower cannot write"
    );
    assert!(tool_error(&report, 10).contains("list"));
    assert!(tool_error(&report, 11).contains("--url"));
    let regressed = &ok(&report, 12)["regressedIssues"];
    assert_eq!(
        titles(regressed),
        vec!["ZeroDivisionError: division by zero"]
    );

    // The same read tools over HTTP give the same answers as the follower on stdio.
    let same = json!([
        ["compare_releases", {"project": "default", "base": "1.0", "head": "2.0"}],
        ["get_issue_details", {"issue": short_id}],
        ["get_trace_details", {"trace_id": first["trace"]}],
        ["get_event", {"event_id": first["errors"][0]}],
        ["search_events", {"dataset": "transactions", "query": "release:2.0", "timeRange": "1h"}],
        ["find_projects", {}]
    ]);
    let http = over_http(&server, same);
    for i in 0..5 {
        assert_eq!(ok(&http, i), ok(&report, i), "call {i} differs over HTTP");
    }
    assert_eq!(ok(&http, 5)["projects"][0]["unresolvedIssues"], 1);

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

    // With no server running, every read tool answers from the data directory, started as
    // README's stdio configuration says.
    server.stop();
    assert_eq!(configs[0]["command"], "osprey");
    let stdio_args: Vec<String> = configs[0]["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| fill_placeholders(a.as_str().unwrap(), &server))
        .collect();
    let report = over_stdio_cmd(
        env!("CARGO_BIN_EXE_osprey"),
        &stdio_args,
        json!([
            ["search_issues", {"query": "", "sort": "freq"}],
            ["find_projects", {}],
            ["get_error_analysis", {"project": "default", "timeRange": "24h", "filters": {"level": ["error"]}}],
            ["get_performance_metrics", {"project": "default", "timeRange": "24h",
                                         "breakdown": {"field": "release"}}],
            ["compare_releases", {"project": "default", "base": "1.0", "head": "2.0"}],
            ["get_issue_details", {"issue": short_id}],
            ["get_event", {"event_id": event_id}],
            ["get_trace_details", {"trace_id": first["trace"]}],
            ["search_events", {"dataset": "errors", "query": "level:warning", "fields": ["title", "region"], "timeRange": "24h"}],
            ["list_alerts", {"project": "default"}],
            ["get_performance_metrics", {"project": "default", "timeRange": "1y"}]
        ]),
    );
    let issues = ok(&report, 0);
    assert_eq!(issues["total"], 2);
    assert_eq!(
        issues["issues"][0]["count"], 8,
        "freq: the 8-event issue first"
    );
    assert_eq!(ok(&report, 1)["projects"][0]["slug"], "default");
    assert_eq!(ok(&report, 1)["projects"][0]["unresolvedIssues"], 2);
    let errors = ok(&report, 2);
    assert_eq!(
        errors["totals"]["events"], 8,
        "level filter drops the warning"
    );
    assert_eq!(errors["totals"]["byLevel"]["error"], 8);
    let perf = ok(&report, 3);
    assert_eq!(perf["metrics"]["count"], 60.0);
    let by_release: Vec<(&str, f64)> = perf["breakdown"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| {
            (
                g["key"].as_str().unwrap(),
                g["metrics"]["count"].as_f64().unwrap(),
            )
        })
        .collect();
    assert_eq!(by_release, [("1.0", 40.0), ("2.0", 20.0)]);
    let p95_head = ok(&report, 4)["head"]["p95Ms"].as_f64().unwrap();
    assert!((p95_head - 1900.0).abs() <= 1900.0 * 0.01, "p95 {p95_head}");
    assert_eq!(
        ok(&report, 5)["issue"]["status"],
        "unresolved",
        "2.0 reopened it"
    );
    assert_eq!(ok(&report, 6)["event"]["title"], "cache cluster degraded");
    assert_eq!(ok(&report, 7)["traceId"], first["trace"]);
    let events = ok(&report, 8);
    assert_eq!(events["count"], 1);
    assert_eq!(events["rows"][0]["region"], "eu");
    assert_eq!(ok(&report, 9)["fired"].as_array().unwrap().len(), 2);
    assert!(tool_error(&report, 10).contains("24h"));
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
