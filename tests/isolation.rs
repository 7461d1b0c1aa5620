//! Isolation (issue 10) on a running `osprey serve`:
//! - DSN keys rotate through Sentry's project keys API (`/api/0/projects/{org}/{project}/keys/`):
//!   a new key works at once, the old one keeps working until it is disabled (`isActive:
//!   false` → 403, as Relay answers a disabled key) or removed; a key of one project cannot post
//!   into another project;
//! - a token of organization B gets nothing of organization A from the HTTP API or from any
//!   MCP tool (errors or empty answers, never A's data), and the reverse;
//! - no token and no DSN key (valid, revoked or wrong) ever appears in the server's output,
//!   with debug logging on.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{python, run_tool, sdk_script, OspreyServer, ServerOptions, TOOL_TIMEOUT};
use serde_json::{json, Value};
use uuid::Uuid;

/// Marker in the message of organization A's (default) event.
const MARK_A: &str = "IsolationMarkerAlpha";
/// Marker in the message of organization B's (acme) event.
const MARK_B: &str = "IsolationMarkerBravo";

fn envelope(id: Uuid, message: &str) -> Vec<u8> {
    let payload = json!({
        "event_id": id.simple().to_string(),
        "timestamp": storage::now_ms() as f64 / 1000.0,
        "platform": "python",
        "level": "error",
        "exception": {"values": [{"type": format!("{message}Error"), "value": message}]},
        "message": message,
    })
    .to_string();
    format!(
        "{{\"event_id\":\"{}\"}}\n{{\"type\":\"event\",\"length\":{}}}\n{payload}\n",
        id.simple(),
        payload.len()
    )
    .into_bytes()
}

/// Posts one event with `key` to project `project_id`; the status.
fn ingest(server: &OspreyServer, project_id: u64, key: &str, message: &str) -> (u16, Uuid) {
    let id = Uuid::new_v4();
    let resp = common::http()
        .post(server.url(&format!("/api/{project_id}/envelope/")))
        .header(
            "X-Sentry-Auth",
            format!("Sentry sentry_version=7, sentry_key={key}"),
        )
        .body(envelope(id, message))
        .send()
        .expect("ingest request");
    (resp.status().as_u16(), id)
}

fn call(
    server: &OspreyServer,
    method: &str,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> (u16, String) {
    let client = common::http();
    let url = server.url(path);
    let mut req = match method {
        "GET" => client.get(&url),
        "POST" => client.post(&url),
        "PUT" => client.put(&url),
        "DELETE" => client.delete(&url),
        other => panic!("method {other}"),
    }
    .bearer_auth(token);
    if let Some(body) = body {
        req = req.json(&body);
    }
    let resp = req
        .send()
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
    let status = resp.status().as_u16();
    (status, resp.text().unwrap_or_default())
}

/// One MCP session over HTTP with `token` (the official Python SDK as the client).
fn mcp(server: &OspreyServer, token: &str, calls: Value) -> Value {
    let mut cmd = Command::new(python());
    cmd.arg(sdk_script("mcp_client.py"))
        .arg("http")
        .arg(server.url("/mcp"))
        .arg(token)
        .arg(calls.to_string());
    run_tool("python mcp (http)", cmd, TOOL_TIMEOUT)
        .assert_success()
        .json()
}

/// Waits (bounded) until `token` sees an issue whose title holds `marker` in `org`; its id.
fn wait_for_issue(server: &OspreyServer, org: &str, token: &str, marker: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, body) = call(
            server,
            "GET",
            &format!("/api/0/organizations/{org}/issues/?query=is:unresolved"),
            token,
            None,
        );
        if status == 200 {
            let issues: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
            if let Some(issue) = issues
                .as_array()
                .into_iter()
                .flatten()
                .find(|i| i["title"].as_str().unwrap_or("").contains(marker))
            {
                return issue["id"].as_str().expect("issue id").to_owned();
            }
        }
        assert!(
            Instant::now() < deadline,
            "issue {marker} never appeared in {org}: {status} {body}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn keys_rotate_and_disable_and_organizations_never_see_each_other() {
    // Organization B (acme) with its project, key and token, written before the server starts
    // (organizations have no create endpoint; the CLI and deployments do this on the store).
    let opts = ServerOptions {
        env: vec![("OSPREY_LOG".into(), "debug,rmcp=debug".into())],
        ..Default::default()
    };
    let data = tempfile::Builder::new()
        .prefix("osprey-iso-")
        .tempdir()
        .expect("temp dir");
    let data_dir = data.path().join("data");
    let (acme_key, acme_token, acme_project) = {
        let store =
            storage::Store::open(&data_dir, &storage::StoreOptions::default()).expect("open store");
        store
            .bootstrap(Some(&opts.default_key), Some(&opts.admin_token))
            .expect("bootstrap");
        let acme = store.create_organization("acme", "Acme").expect("org");
        let project = store
            .create_project(acme.id, "shop", "Shop", "python")
            .expect("project");
        let key = store.create_key(project.id, "acme", None).expect("key");
        let scopes: Vec<String> = storage::ALL_SCOPES.iter().map(|s| s.to_string()).collect();
        let (secret, _) = store
            .create_token(acme.id, "acme-all", &scopes, None)
            .expect("token");
        store.flush().expect("flush");
        (key.public_key.clone(), secret, project.id)
    };
    let server = OspreyServer::start(ServerOptions {
        data_dir: Some(data_dir),
        ..opts
    });
    let admin = server.admin_token().to_owned();
    let old_key = server.default_key().to_owned();
    let wrong_token = common::random_hex32();
    let wrong_key = common::random_hex32();

    // --- Key rotation and disabling. ---------------------------------------------------------
    let keys = "/api/0/projects/default/default/keys/";
    let (status, body) = call(
        &server,
        "POST",
        keys,
        &admin,
        Some(json!({"name": "rotated"})),
    );
    assert_eq!(status, 201, "create key: {body}");
    let new_key = serde_json::from_str::<Value>(&body).unwrap()["public"]
        .as_str()
        .expect("public key")
        .to_owned();
    assert_ne!(new_key, old_key);
    assert_eq!(
        ingest(&server, 1, &new_key, "Rotation").0,
        200,
        "new key works at once"
    );
    assert_eq!(
        ingest(&server, 1, &old_key, "Rotation").0,
        200,
        "old key keeps working"
    );
    let old_path = format!("{keys}{old_key}/");
    let (status, body) = call(
        &server,
        "PUT",
        &old_path,
        &admin,
        Some(json!({"isActive": false})),
    );
    assert_eq!(status, 200, "disable: {body}");
    assert_eq!(
        ingest(&server, 1, &old_key, "Rotation").0,
        403,
        "disabled key → 403"
    );
    assert_eq!(ingest(&server, 1, &new_key, "Rotation").0, 200);
    let (status, _) = call(
        &server,
        "PUT",
        &old_path,
        &admin,
        Some(json!({"isActive": true})),
    );
    assert_eq!(status, 200);
    assert_eq!(
        ingest(&server, 1, &old_key, "Rotation").0,
        200,
        "re-enabled key works"
    );
    let (status, body) = call(&server, "DELETE", &old_path, &admin, None);
    assert!(status == 204 || status == 200, "delete: {status} {body}");
    let removed = ingest(&server, 1, &old_key, "Rotation").0;
    assert!(removed == 401 || removed == 403, "removed key: {removed}");
    assert_eq!(
        ingest(&server, 1, &new_key, "Rotation").0,
        200,
        "the new key survives"
    );
    // Keys are bound to their project, both ways; an unknown key is refused.
    assert_eq!(
        ingest(&server, 1, &acme_key, MARK_B).0,
        403,
        "acme's key into project 1"
    );
    assert_eq!(
        ingest(&server, acme_project, &new_key, MARK_A).0,
        403,
        "project 1's key into acme"
    );
    let unknown = ingest(&server, 1, &wrong_key, "Nope").0;
    assert!(unknown == 401 || unknown == 403, "unknown key: {unknown}");

    // --- One event per organization. --------------------------------------------------------
    let (status, id_a) = ingest(&server, 1, &new_key, MARK_A);
    assert_eq!(status, 200);
    let (status, id_b) = ingest(&server, acme_project, &acme_key, MARK_B);
    assert_eq!(status, 200);
    let issue_a = wait_for_issue(&server, "default", &admin, MARK_A);
    let issue_b = wait_for_issue(&server, "acme", &acme_token, MARK_B);

    // --- The HTTP API: each token sees only its organization. --------------------------------
    let covered_api = |token: &str,
                       other_org: &str,
                       other_project: &str,
                       other_issue: &str,
                       other_event: Uuid,
                       other_mark: &str| {
        let ev = other_event.simple();
        let paths = [
            "/api/0/organizations/".to_string(),
            "/api/0/projects/".to_string(),
            format!("/api/0/organizations/{other_org}/"),
            format!("/api/0/organizations/{other_org}/projects/"),
            format!("/api/0/organizations/{other_org}/issues/"),
            format!("/api/0/organizations/{other_org}/issues/{other_issue}/"),
            format!("/api/0/organizations/{other_org}/issues/{other_issue}/events/latest/"),
            format!("/api/0/issues/{other_issue}/"),
            format!("/api/0/issues/{other_issue}/events/"),
            format!("/api/0/issues/{other_issue}/tags/"),
            format!("/api/0/projects/{other_org}/{other_project}/"),
            format!("/api/0/projects/{other_org}/{other_project}/keys/"),
            format!("/api/0/projects/{other_org}/{other_project}/issues/"),
            format!("/api/0/projects/{other_org}/{other_project}/events/{ev}/"),
            format!("/api/0/organizations/{other_org}/events/?field=title&field=id"),
            format!("/api/0/organizations/{other_org}/releases/"),
            format!("/api/0/organizations/{other_org}/eventids/{ev}/"),
            format!("/api/0/organizations/{other_org}/shortids/{other_issue}/"),
        ];
        for path in &paths {
            let (status, body) = call(&server, "GET", path, token, None);
            assert!(
                !body.contains(other_mark) && !body.contains(&ev.to_string()),
                "GET {path} leaked the other organization's data ({status}): {body}"
            );
            assert!(
                status == 200 || status == 403 || status == 404,
                "GET {path}: unexpected {status} {body}"
            );
        }
        // Writes into the other organization are refused.
        let (status, _) = call(
            &server,
            "PUT",
            &format!("/api/0/issues/{other_issue}/"),
            token,
            Some(json!({"status": "resolved"})),
        );
        assert!(
            status == 403 || status == 404,
            "PUT other org's issue: {status}"
        );
        let (status, _) = call(
            &server,
            "POST",
            &format!("/api/0/projects/{other_org}/{other_project}/keys/"),
            token,
            Some(json!({"name": "intruder"})),
        );
        assert!(
            status == 403 || status == 404,
            "create key in other org: {status}"
        );
        paths.len() + 2
    };
    let api_checks = covered_api(&acme_token, "default", "default", &issue_a, id_a, MARK_A)
        + covered_api(&admin, "acme", "shop", &issue_b, id_b, MARK_B);
    // Each token still sees its own data (the checks above are not vacuous).
    let (status, body) = call(
        &server,
        "GET",
        "/api/0/organizations/acme/issues/",
        &acme_token,
        None,
    );
    assert!(
        status == 200 && body.contains(MARK_B),
        "acme sees its issue: {body}"
    );

    // --- MCP: every tool, with the acme token, aimed at the default organization. -----------
    let ev_a = id_a.simple().to_string();
    let calls = json!([
        ["find_projects", {}],
        ["search_issues", {}],
        ["search_issues", {"project": "default"}],
        ["search_issues", {"project": "1"}],
        ["get_issue_details", {"issue": issue_a}],
        ["get_issue_details", {"issue": "DEFAULT-1"}],
        ["get_event", {"event_id": ev_a}],
        ["get_error_analysis", {"project": "default", "timeRange": "24h"}],
        ["get_error_analysis", {"project": "1", "timeRange": "24h"}],
        ["get_performance_metrics", {"project": "default", "timeRange": "24h"}],
        ["compare_releases", {"project": "default", "base": "1.0", "head": "2.0"}],
        ["search_events", {"project": "default", "dataset": "errors"}],
        ["search_events", {"dataset": "errors", "query": MARK_A}],
        ["get_trace_details", {"trace_id": "0123456789abcdef0123456789abcdef"}],
        ["manage_issues", {"project": "default", "action": "bulk_update", "issues": [issue_a], "changes": {"status": "resolved"}}],
        ["capture_event", {"project": "default", "level": "error", "message": "intrusion"}],
    ]);
    let report = mcp(&server, &acme_token, calls.clone());
    let text = report.to_string();
    assert!(
        !text.contains(MARK_A),
        "an MCP tool leaked organization A's data to B's token: {text}"
    );
    let results = report["results"].as_array().expect("results");
    assert_eq!(results.len(), calls.as_array().unwrap().len());
    // The acme token's own view works (find_projects lists only acme's project).
    let projects = results[0]["structured"].to_string();
    assert!(
        projects.contains("shop") && !projects.contains("\"default\""),
        "find_projects: {projects}"
    );
    // Lookups by A's ids fail (their error text may echo the id the caller gave, nothing more).
    for i in [4, 6] {
        assert_eq!(results[i]["isError"], true, "call {i}: {}", results[i]);
    }
    // Writes aimed at A failed as tool errors and changed nothing.
    assert_eq!(
        results[14]["isError"], true,
        "manage_issues on A: {}",
        results[14]
    );
    assert_eq!(
        results[15]["isError"], true,
        "capture_event into A: {}",
        results[15]
    );
    let (_, body) = call(
        &server,
        "GET",
        &format!("/api/0/issues/{issue_a}/"),
        &admin,
        None,
    );
    assert!(body.contains("unresolved"), "A's issue untouched: {body}");
    // And the reverse: the admin token (organization A) sees nothing of B through MCP.
    let report = mcp(
        &server,
        &admin,
        json!([
            ["find_projects", {}],
            ["search_issues", {"project": "shop"}],
            ["get_issue_details", {"issue": issue_b}],
            ["get_event", {"event_id": id_b.simple().to_string()}],
            ["search_events", {"dataset": "errors", "query": MARK_B}],
        ]),
    );
    let text = report.to_string();
    assert!(
        !text.contains(MARK_B),
        "an MCP tool leaked organization B's data to A's token: {text}"
    );

    // --- Auth failures, then the log: no secret ever printed. --------------------------------
    for token in [&wrong_token, &acme_token, &admin] {
        let _ = call(
            &server,
            "GET",
            "/api/0/organizations/nope/issues/",
            token,
            None,
        );
        let _ = call(
            &server,
            "GET",
            "/api/0/projects/default/default/keys/",
            token,
            None,
        );
    }
    let _ = mcp_unauthorized(&server, &wrong_token);
    let log = server.log();
    assert!(log.len() > 1000, "debug logging produced output to check");
    let secrets = [
        ("admin token", admin.as_str()),
        ("acme token", acme_token.as_str()),
        ("wrong token", wrong_token.as_str()),
        ("old DSN key", old_key.as_str()),
        ("new DSN key", new_key.as_str()),
        ("acme DSN key", acme_key.as_str()),
        ("unknown DSN key", wrong_key.as_str()),
    ];
    for (what, secret) in secrets {
        // The default project's DSN line is the one place a key is printed on purpose.
        let leaked: Vec<&str> = log
            .lines()
            .filter(|l| l.contains(secret) && !l.starts_with("DSN: "))
            .take(3)
            .collect();
        assert!(
            leaked.is_empty(),
            "the {what} appears in the server log: {leaked:?}"
        );
    }
    eprintln!(
        "isolation: {api_checks} API requests across organizations, {} MCP tool calls, {} log bytes checked",
        calls.as_array().unwrap().len() + 5,
        log.len()
    );
}

/// An MCP request with a bad token: 401, and the token must not be logged.
fn mcp_unauthorized(server: &OspreyServer, token: &str) -> u16 {
    let resp = common::http()
        .post(server.url("/mcp"))
        .bearer_auth(token)
        .header("Accept", "application/json, text/event-stream")
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {}}))
        .send()
        .expect("mcp request");
    let status = resp.status().as_u16();
    assert_eq!(status, 401, "MCP with a wrong token");
    status
}
