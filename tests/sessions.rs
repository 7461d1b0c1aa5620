//! Release health end to end: the real Python sentry-sdk tracks sessions against a running
//! `osprey serve` (application-mode `session` items with users, request-mode `sessions`
//! aggregates), and Sentry's `GET /api/0/organizations/{org}/sessions/` answers the sums,
//! users, status split and crash-free rates a Sentry server would; the per-release stats and
//! the outcomes show them too, and a session without a release is refused as Relay refuses it.

mod common;

use std::time::{Duration, Instant};

use common::{run_python, OspreyServer, ServerOptions};
use serde_json::{json, Value};

const RELEASE: &str = "app@1.0";
const OTHER: &str = "app@2.0";
const ORG_SESSIONS: &str = "/api/0/organizations/default/sessions/";

/// The answer's only group's total of `field`.
fn total(body: &Value, field: &str) -> Value {
    body["groups"][0]["totals"][field].clone()
}

/// Polls the sessions endpoint with `query` until `done` holds (at most 30 s).
fn wait_for(server: &OspreyServer, query: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) = server.api_get(&format!("{ORG_SESSIONS}?{query}"));
        assert_eq!(status, 200, "{query}: {body}");
        if done(&body) || Instant::now() > deadline {
            return body;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Each group of an answer as (its value of column `by`, its totals of `fields`).
fn group_totals(body: &Value, by: &str, fields: &[&str]) -> Vec<(String, Vec<i64>)> {
    body["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| {
            let name = g["by"][by].as_str().unwrap().to_owned();
            let totals = fields.iter().map(|f| g["totals"][*f].as_i64().unwrap());
            (name, totals.collect())
        })
        .collect()
}

fn rate(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a rate: {v}"))
}

#[test]
fn python_sdk_sessions_answer_crash_free_rates_like_sentry() {
    let server = OspreyServer::start(ServerOptions::default());
    let out = run_python("python_sessions.py", &[server.dsn(), RELEASE, OTHER], &[]);
    out.assert_success();
    let sent = out.json();
    let items: Vec<&str> = sent["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    // The SDK sent what the script planned: 4 session updates and one aggregate.
    let count = |t: &str| items.iter().filter(|i| **i == t).count();
    assert_eq!((count("session"), count("sessions")), (4, 1), "{sent}");

    // Two hours, so that an hour boundary passing during the test loses nothing.
    let fields = "field=sum(session)&field=count_unique(user)&field=crash_free_rate(session)&field=crash_free_rate(user)&field=crash_rate(session)";
    let query = format!("{fields}&query=release:{RELEASE}&statsPeriod=2h&interval=1h&project=-1");
    let body = wait_for(&server, &query, |b| total(b, "sum(session)") == 5);
    // 3 application sessions (healthy, errored, crashed) + 2 request sessions (ok, errored).
    assert_eq!(total(&body, "sum(session)"), 5, "{body}");
    // Users come from the application sessions only (request aggregates carry none).
    assert_eq!(total(&body, "count_unique(user)"), 3, "{body}");
    assert!(
        (rate(&total(&body, "crash_free_rate(session)")) - 0.8).abs() < 1e-9,
        "{body}"
    );
    assert!(
        (rate(&total(&body, "crash_rate(session)")) - 0.2).abs() < 1e-9,
        "{body}"
    );
    assert!(
        (rate(&total(&body, "crash_free_rate(user)")) - 2.0 / 3.0).abs() < 1e-9,
        "{body}"
    );
    assert_eq!(body["query"], format!("release:{RELEASE}"));
    assert_eq!(
        body["intervals"].as_array().map(Vec::len),
        Some(2),
        "{body}"
    );
    let series: i64 = body["groups"][0]["series"]["sum(session)"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_i64)
        .sum();
    assert_eq!(series, 5, "{body}");

    // The status split: healthy = the clean application session and the fine request;
    // errored = the handled error of each mode; crashed = the unhandled one.
    let (status, by_status) = server.api_get(&format!(
        "{ORG_SESSIONS}?field=sum(session)&field=count_unique(user)&groupBy=session.status&query=release:{RELEASE}&statsPeriod=2h"
    ));
    assert_eq!(status, 200, "{by_status}");
    let split = group_totals(
        &by_status,
        "session.status",
        &["sum(session)", "count_unique(user)"],
    );
    let expected = [
        ("healthy", 2, 1),
        ("errored", 2, 1),
        ("crashed", 1, 1),
        ("abnormal", 0, 0),
    ]
    .map(|(s, n, u)| (s.to_owned(), vec![n, u]));
    assert_eq!(split, expected, "{by_status}");

    // By release: the second release's one healthy session.
    let by_release = wait_for(
        &server,
        "field=sum(session)&field=crash_free_rate(session)&groupBy=release&statsPeriod=2h&orderBy=-sum(session)",
        |b| b["groups"].as_array().is_some_and(|g| g.len() == 2),
    );
    let releases = group_totals(&by_release, "release", &["sum(session)"]);
    assert_eq!(
        releases,
        [(RELEASE.to_owned(), vec![5]), (OTHER.to_owned(), vec![1])],
        "{by_release}"
    );
    assert_eq!(
        by_release["groups"][1]["totals"]["crash_free_rate(session)"],
        json!(1.0)
    );
    // The environment filter: everything was sent to "production".
    let (_, staging) = server.api_get(&format!(
        "{ORG_SESSIONS}?field=sum(session)&environment=staging&statsPeriod=2h"
    ));
    assert_eq!(total(&staging, "sum(session)"), 0, "{staging}");

    // The per-release stats carry the crash-free rates (percent, as Sentry's healthData).
    let (status, stats) = server.api_get(&format!(
        "/api/0/projects/default/default/releases/{RELEASE}/stats/?statsPeriod=2h"
    ));
    assert_eq!(status, 200, "{stats}");
    assert_eq!(stats["release"]["sessions"], 5, "{stats}");
    assert_eq!(stats["release"]["sessionsCrashed"], 1, "{stats}");
    assert!(
        (rate(&stats["release"]["crashFreeSessions"]) - 80.0).abs() < 1e-9,
        "{stats}"
    );

    // Bad parameters are 400 with a detail, as Sentry answers them.
    for bad in [
        "field=sum(session)&groupBy=browser",
        "field=bogus",
        "field=crash_free_rate(session)&groupBy=session.status",
        "field=sum(session)&interval=5m",
    ] {
        let (status, body) = server.api_get(&format!("{ORG_SESSIONS}?{bad}"));
        assert_eq!(status, 400, "{bad}: {body}");
        assert!(body["detail"].is_string(), "{bad}: {body}");
    }

    // A session without a release is dropped (Relay drops it) with an outcome; the SDK's
    // items are accepted ones, in category "session".
    let started = storage::now_ms() as f64 / 1000.0;
    let payload = json!({"sid": "7c7b6585-5e6c-4fd6-9a34-3c1e0d9b8b6a", "init": true,
                         "started": started, "status": "exited"})
    .to_string();
    let envelope = format!(
        "{{}}\n{{\"type\":\"session\",\"length\":{}}}\n{payload}\n",
        payload.len()
    );
    let (status, text) = server.post_envelope(envelope);
    assert_eq!(status, 200, "{text}");
    let deadline = Instant::now() + Duration::from_secs(30);
    let outcomes = loop {
        let (status, body) = server.api_get(
            "/api/0/organizations/default/stats_v2/?field=sum(quantity)&groupBy=outcome&groupBy=reason&category=session&statsPeriod=2h",
        );
        assert_eq!(status, 200, "{body}");
        let invalid = body["groups"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|g| g["by"]["outcome"] == "invalid");
        if invalid || Instant::now() > deadline {
            break body;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let quantity = |outcome: &str, reason: &str| {
        outcomes["groups"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|g| g["by"]["outcome"] == outcome && g["by"]["reason"] == reason)
            .and_then(|g| g["totals"]["sum(quantity)"].as_i64())
    };
    assert_eq!(quantity("accepted", ""), Some(5), "{outcomes}");
    assert_eq!(
        quantity("invalid", "missing_release"),
        Some(1),
        "{outcomes}"
    );
}

#[test]
fn node_sdk_request_sessions_are_aggregated_like_sentry() {
    let server = OspreyServer::start(ServerOptions::default());
    let release = "node-app@1.0";
    let out = common::run_node("node_sessions.js", &[server.dsn(), release], &[]);
    out.assert_success();
    let sent = out.json();
    assert!(
        sent["items"]
            .as_array()
            .is_some_and(|i| i.contains(&json!("sessions"))),
        "{sent}"
    );
    let query = format!(
        "field=sum(session)&field=crash_free_rate(session)&field=crash_free_rate(user)&query=release:{release}&statsPeriod=2h"
    );
    let body = wait_for(&server, &query, |b| total(b, "sum(session)") == 4);
    // Four requests: two fine, one errored, one crashed.
    assert_eq!(total(&body, "sum(session)"), 4, "{body}");
    assert!(
        (rate(&total(&body, "crash_free_rate(session)")) - 0.75).abs() < 1e-9,
        "{body}"
    );
    // Request-mode aggregates carry no users: no user rate.
    assert_eq!(total(&body, "crash_free_rate(user)"), Value::Null, "{body}");
    let (status, by_status) = server.api_get(&format!(
        "{ORG_SESSIONS}?field=sum(session)&groupBy=session.status&query=release:{release}&statsPeriod=2h"
    ));
    assert_eq!(status, 200, "{by_status}");
    let split = group_totals(&by_status, "session.status", &["sum(session)"]);
    let expected = [
        ("healthy", 2),
        ("errored", 1),
        ("crashed", 1),
        ("abnormal", 0),
    ]
    .map(|(s, n)| (s.to_owned(), vec![n]));
    assert_eq!(split, expected, "{by_status}");
}
