//! Issue 3's acceptance, end to end with the real Python sentry-sdk against `osprey serve`:
//!
//! - the same exception raised 5 times from one code path (by 2 users), the same exception
//!   type from another function, `capture_message` with varying numbers, and an event with a
//!   custom fingerprint become exactly the issues Sentry would create, with Sentry's counts,
//!   unique users, titles and culprits (`module in function` for Python);
//! - a password field, a credit-card number and an Authorization header sent by the SDK are
//!   not in the stored event.
//!
//! The server processes everything (`/metrics` backlog 0), stops, and the test reads the data
//! directory through `query::QueryService` the way the API would.

mod common;

use std::thread;
use std::time::{Duration, Instant};

use common::{http, run_python, OspreyServer, ServerOptions};
use query::issues::{Issue, IssueQuery};
use query::QueryService;
use serde_json::Value;
use uuid::Uuid;

/// The default project's id (the one `OSPREY_DEFAULT_KEY` belongs to).
const DEFAULT_PROJECT: u64 = 1;
/// How long processing of the few events may take.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(60);

fn uuid(report: &Value, v: &Value) -> Uuid {
    let text = v
        .as_str()
        .unwrap_or_else(|| panic!("id {v} is not a string: {report}"));
    Uuid::parse_str(text).unwrap_or_else(|e| panic!("id {text:?} is not a UUID: {e}"))
}

fn ids(report: &Value, field: &str) -> Vec<Uuid> {
    report
        .get(field)
        .and_then(Value::as_array)
        .unwrap_or_else(|| panic!("no {field:?} list: {report}"))
        .iter()
        .map(|v| uuid(report, v))
        .collect()
}

fn id(report: &Value, field: &str) -> Uuid {
    uuid(
        report,
        report
            .get(field)
            .unwrap_or_else(|| panic!("no {field:?}: {report}")),
    )
}

/// Polls `/metrics` (bounded) until the log backlog is 0: every accepted item is processed.
fn wait_processed(server: &OspreyServer) {
    let deadline = Instant::now() + DRAIN_TIMEOUT;
    let mut last = String::new();
    while Instant::now() < deadline {
        if let Ok(resp) = http().get(server.url("/metrics")).send() {
            last = resp.text().unwrap_or_default();
            let backlog = last
                .lines()
                .find_map(|l| l.strip_prefix("osprey_log_backlog_bytes "))
                .and_then(|v| v.trim().parse::<f64>().ok());
            if backlog == Some(0.0) {
                return;
            }
        }
        thread::sleep(Duration::from_millis(100));
    }
    panic!("backlog not drained within {DRAIN_TIMEOUT:?}; last /metrics:\n{last}");
}

/// The issue an event was grouped into.
fn issue_of(svc: &QueryService, issues: &[Issue], event: &Uuid) -> Issue {
    let ev = svc
        .event(DEFAULT_PROJECT, event)
        .expect("read event")
        .unwrap_or_else(|| panic!("event {event} not stored"));
    let group = ev
        .group_id
        .unwrap_or_else(|| panic!("event {event} has no issue"));
    issues
        .iter()
        .find(|i| i.id == group)
        .unwrap_or_else(|| panic!("issue {group} of event {event} not listed: {issues:#?}"))
        .clone()
}

#[test]
fn python_sdk_events_group_like_sentry_and_pii_is_scrubbed() {
    let mut server = OspreyServer::start(ServerOptions::default());
    let out = run_python("python_grouping.py", &[server.dsn()], &[]);
    out.assert_success();
    let report = out.json();

    let divide = ids(&report, "divide");
    let messages = ids(&report, "messages");
    let counts: Vec<u64> = report["message_counts"]
        .as_array()
        .expect("message_counts")
        .iter()
        .map(|v| v.as_u64().expect("count"))
        .collect();
    let other = id(&report, "other_divide");
    let custom = id(&report, "custom");
    let pii = id(&report, "pii");
    assert_eq!(divide.len(), 5, "{report}");
    assert_eq!(messages.len(), 3, "{report}");

    wait_processed(&server);
    server.stop();

    let store = storage::Store::open_secondary(server.data_dir()).expect("open data dir");
    let svc = QueryService::new(store);
    let page = svc
        .issues(&IssueQuery {
            project_ids: vec![DEFAULT_PROJECT],
            limit: 100,
            ..IssueQuery::default()
        })
        .expect("list issues");
    let issues = page.issues.clone();
    // divide, other_divide, the messages, the custom fingerprint, and the PII event's own.
    assert_eq!(issues.len(), 5, "issues: {issues:#?}");

    // 1. Five raises from one code path: one issue, 5 events, 2 users.
    let first = issue_of(&svc, &issues, &divide[0]);
    for e in &divide[1..] {
        assert_eq!(issue_of(&svc, &issues, e).id, first.id, "divide event {e}");
    }
    assert_eq!(first.count, "5");
    assert_eq!(first.user_count, 2);
    assert_eq!(first.title, "ZeroDivisionError: division by zero");
    assert_eq!(first.culprit, "__main__ in divide");
    assert_eq!(first.issue_event_type, "error");
    assert_eq!(first.metadata["type"], "ZeroDivisionError");
    assert_eq!(first.metadata["value"], "division by zero");
    assert_eq!(first.metadata["function"], "divide");

    // 2. The same type from another function: its own issue.
    let second = issue_of(&svc, &issues, &other);
    assert_ne!(second.id, first.id, "other_divide grouped with divide");
    assert_eq!(second.count, "1");
    assert_eq!(second.user_count, 1);
    assert_eq!(second.title, "ZeroDivisionError: division by zero");
    assert_eq!(second.culprit, "__main__ in other_divide");

    // 3. Messages differing only in a number: one issue of 3. Sentry refreshes an issue's
    //    title from each new event (§8.8), so it reads like the latest message.
    let msg = issue_of(&svc, &issues, &messages[0]);
    for e in &messages[1..] {
        assert_eq!(issue_of(&svc, &issues, e).id, msg.id, "message event {e}");
    }
    assert_eq!(msg.count, "3");
    assert_eq!(msg.issue_event_type, "default");
    let last_n = counts.last().expect("a count");
    assert_eq!(msg.title, format!("Processed {last_n} items"));
    assert_eq!(msg.user_count, 1);

    // 4. The custom fingerprint: its own issue, titled by its exception.
    let fp = issue_of(&svc, &issues, &custom);
    assert_eq!(fp.count, "1");
    assert_eq!(fp.title, "ValueError: custom grouped failure");
    assert_eq!(fp.culprit, "__main__ in main");
    let stored = svc
        .stored_event(DEFAULT_PROJECT, &custom)
        .expect("read custom event")
        .expect("custom event stored");
    assert_eq!(
        stored.event["fingerprint"],
        serde_json::json!(["my-custom-group"])
    );

    let ids_seen: std::collections::HashSet<&str> = [&first, &second, &msg, &fp]
        .iter()
        .map(|i| i.id.as_str())
        .collect();
    assert_eq!(ids_seen.len(), 4, "distinct issues expected");

    // 5. PII: none of the secrets is anywhere in the stored event.
    let pii_issue = issue_of(&svc, &issues, &pii);
    assert!(!ids_seen.contains(pii_issue.id.as_str()));
    let stored = svc
        .stored_event(DEFAULT_PROJECT, &pii)
        .expect("read pii event")
        .expect("pii event stored");
    let json = serde_json::to_string(&stored.event).expect("serialize");
    // The fields themselves arrived (so the check is about scrubbing, not loss).
    assert!(stored.event["extra"].get("password").is_some(), "{json}");
    assert!(
        stored.event["extra"].get("payment_note").is_some(),
        "{json}"
    );
    assert!(json.contains("shop.example/checkout"), "{json}");
    for secret in [
        "hunter2",
        "4111 1111 1111 1111",
        "4111111111111111",
        "secret-token",
    ] {
        assert!(
            !json.contains(secret),
            "{secret:?} is in the stored event: {json}"
        );
    }
}
