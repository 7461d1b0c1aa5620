//! Browser security reports end to end: the exact bodies browsers post to a policy's
//! `report-uri` (Chrome's `application/csp-report`, the Reporting API's
//! `application/reports+json` batch) reach `/api/{id}/security/?sentry_key=…`, become issues
//! titled the way Sentry titles them, and reports of one violation from different pages group
//! into one issue. Bad bodies get a 400 with a JSON detail and a wrong key a 403.

mod common;

use std::thread;
use std::time::{Duration, Instant};

use common::{http, OspreyServer, ServerOptions};
use serde_json::{json, Value};

/// How long processing of the few reports may take.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(60);

fn post(server: &OspreyServer, path: &str, content_type: &str, body: &Value) -> (u16, Value) {
    let resp = http()
        .post(server.url(path))
        .header("Content-Type", content_type)
        .header("User-Agent", "Mozilla/5.0 (X11; Linux x86_64) Chrome/131.0")
        .body(serde_json::to_vec(body).expect("serialize"))
        .send()
        .expect("POST security report");
    let status = resp.status().as_u16();
    let body = resp.json().unwrap_or(Value::Null);
    (status, body)
}

/// Issues of the default project through the web API, polled until `done` holds (bounded).
fn issues_until(server: &OspreyServer, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let deadline = Instant::now() + DRAIN_TIMEOUT;
    let mut last = Vec::new();
    while Instant::now() < deadline {
        let resp =
            http()
                .get(server.url(
                    "/api/0/projects/default/default/issues/?query=&statsPeriod=24h&limit=100",
                ))
                .bearer_auth(server.admin_token())
                .send()
                .expect("GET issues");
        if resp.status().is_success() {
            last = resp.json::<Vec<Value>>().expect("issues JSON");
            if done(&last) {
                return last;
            }
        }
        thread::sleep(Duration::from_millis(100));
    }
    panic!("issues never reached the expected state: {last:#?}");
}

fn count(issue: &Value) -> u64 {
    match &issue["count"] {
        Value::String(s) => s.parse().unwrap_or(0),
        v => v.as_u64().unwrap_or(0),
    }
}

#[test]
fn csp_reports_become_grouped_issues() {
    let server = OspreyServer::start(ServerOptions::default());
    let key = server.default_key().to_owned();
    let path = format!("/api/1/security/?sentry_key={key}&sentry_environment=production");

    // Chrome's CSP level 2 report for a blocked third-party script.
    let chrome = json!({"csp-report": {
        "document-uri": "https://shop.example/checkout",
        "referrer": "",
        "violated-directive": "script-src-elem",
        "effective-directive": "script-src-elem",
        "original-policy": "default-src 'self'; report-uri /api/1/security/",
        "disposition": "enforce",
        "blocked-uri": "https://evil.example/steal.js?session=abc",
        "line-number": 14,
        "column-number": 7,
        "source-file": "https://shop.example/checkout",
        "status-code": 200,
        "script-sample": ""
    }});
    let (status, body) = post(&server, &path, "application/csp-report", &chrome);
    assert_eq!(status, 200, "{body}");

    // The Reporting API batch: the same violation from two other pages, an inline style, and
    // an entry of another type that is skipped. Sent to the csp-report alias.
    let batch = json!([
        {"type": "csp-violation", "age": 10, "url": "https://shop.example/cart",
         "user_agent": "Chrome", "body": {"documentURL": "https://shop.example/cart",
         "blockedURL": "https://evil.example/other.js", "effectiveDirective": "script-src-elem",
         "originalPolicy": "default-src 'self'", "disposition": "enforce", "statusCode": 200}},
        {"type": "csp-violation", "age": 3, "url": "https://shop.example/",
         "body": {"documentURL": "https://shop.example/", "blockedURL": "https://evil.example/steal.js",
         "effectiveDirective": "script-src-elem", "disposition": "report"}},
        {"type": "csp-violation", "age": 1, "url": "https://shop.example/",
         "body": {"documentURL": "https://shop.example/", "blockedURL": "inline",
         "effectiveDirective": "style-src-attr", "disposition": "enforce"}},
        {"type": "deprecation", "age": 1, "url": "https://shop.example/",
         "body": {"id": "UnloadHandler", "message": "unload is deprecated"}}
    ]);
    let alias = format!("/api/1/csp-report/?sentry_key={key}");
    let (status, body) = post(&server, &alias, "application/reports+json", &batch);
    assert_eq!(status, 200, "{body}");

    // Bad input: a body of no known shape → 400 with a detail; a wrong key → 403.
    let (status, body) = post(
        &server,
        &path,
        "application/csp-report",
        &json!({"hello": "world"}),
    );
    assert_eq!(status, 400, "{body}");
    assert!(
        body["detail"]
            .as_str()
            .is_some_and(|d| d.starts_with("invalid security report")),
        "{body}"
    );
    let (status, body) = post(
        &server,
        "/api/1/security/?sentry_key=0123456789abcdef0123456789abcdef",
        "application/csp-report",
        &chrome,
    );
    assert_eq!(status, 403, "{body}");

    let issues = issues_until(&server, |issues| {
        issues.iter().map(count).sum::<u64>() == 4 && issues.len() == 2
    });
    let script = issues
        .iter()
        .find(|i| i["title"] == "Blocked 'script' from 'evil.example'")
        .unwrap_or_else(|| panic!("no script issue: {issues:#?}"));
    assert_eq!(
        count(script),
        3,
        "three reports of one violation: {script:#}"
    );
    assert_eq!(script["culprit"], "script-src-elem", "{script:#}");
    let style = issues
        .iter()
        // Relay only reads `inline`/`eval` as markers for script-src; elsewhere `inline` is
        // a scheme-less URI, normalized to `inline:` — the title Sentry shows too.
        .find(|i| i["title"] == "Blocked style attribute from 'inline:'")
        .unwrap_or_else(|| panic!("no inline-style issue: {issues:#?}"));
    assert_eq!(count(style), 1, "{style:#}");

    // The server kept serving through the bad requests.
    let health = http()
        .get(server.url("/health"))
        .send()
        .expect("GET /health");
    assert!(health.status().is_success());
}
