//! Sentry's org stats endpoint (`GET /api/0/organizations/{org}/stats_v2/`) on a running
//! `osprey serve`: real envelopes go in over HTTP (stored errors, events the processor refuses
//! as invalid JSON, and a profile, a product osprey does not keep), and the endpoint counts
//! them by outcome, category and reason as Sentry's would; the per-project stats endpoint
//! counts the received errors.

mod common;

use std::time::{Duration, Instant};

use common::{OspreyServer, ServerOptions};
use serde_json::{json, Value};
use uuid::Uuid;

fn post_envelope(server: &OspreyServer, body: Vec<u8>) {
    let (status, text) = server.post_envelope(body);
    assert_eq!(status, 200, "{text}");
}

/// An envelope with one item of `item_type` whose payload is `payload`.
fn envelope(item_type: &str, payload: &str) -> Vec<u8> {
    let id = Uuid::new_v4().simple().to_string();
    format!(
        "{{\"event_id\":\"{id}\"}}\n{{\"type\":\"{item_type}\",\"length\":{}}}\n{payload}\n",
        payload.len()
    )
    .into_bytes()
}

fn error_event(message: &str) -> String {
    json!({
        "timestamp": storage::now_ms() as f64 / 1000.0,
        "platform": "python",
        "level": "error",
        "exception": {"values": [{"type": "StatsError", "value": message}]},
    })
    .to_string()
}

/// The group of `body` whose `by` is `by`, if any.
fn group<'a>(body: &'a Value, by: &Value) -> Option<&'a Value> {
    body["groups"].as_array()?.iter().find(|g| &g["by"] == by)
}

fn total(body: &Value, by: Value) -> i64 {
    group(body, &by)
        .and_then(|g| g["totals"]["sum(quantity)"].as_i64())
        .unwrap_or(0)
}

#[test]
fn stats_v2_counts_accepted_and_invalid_traffic_by_outcome_and_category() {
    let server = OspreyServer::start(ServerOptions::default());
    for i in 0..3 {
        post_envelope(
            &server,
            envelope("event", &error_event(&format!("stats {i}"))),
        );
    }
    for _ in 0..2 {
        post_envelope(&server, envelope("event", "{\"message\": not json"));
    }
    post_envelope(&server, envelope("profile", "{\"version\":\"1\"}"));
    // What the SDK itself dropped, as its client report says.
    post_envelope(
        &server,
        envelope(
            "client_report",
            r#"{"timestamp":1700000000,"discarded_events":[{"reason":"queue_overflow","category":"error","quantity":4}]}"#,
        ),
    );

    // Two hours, so that an hour boundary passing during the test loses nothing.
    let path = "/api/0/organizations/default/stats_v2/?field=sum(quantity)&groupBy=outcome&groupBy=category&statsPeriod=2h&interval=1h&project=-1";
    let deadline = Instant::now() + Duration::from_secs(30);
    let body = loop {
        let (status, body) = server.api_get(path);
        assert_eq!(status, 200, "{body}");
        let done = total(&body, json!({"outcome": "accepted", "category": "error"})) >= 3
            && total(&body, json!({"outcome": "invalid", "category": "error"})) >= 2
            && total(&body, json!({"outcome": "invalid", "category": "profile"})) >= 1
            && total(
                &body,
                json!({"outcome": "client_discard", "category": "error"}),
            ) >= 4;
        if done || Instant::now() > deadline {
            break body;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(
        total(&body, json!({"outcome": "accepted", "category": "error"})),
        3,
        "{body}"
    );
    assert_eq!(
        total(&body, json!({"outcome": "invalid", "category": "error"})),
        2,
        "{body}"
    );
    assert_eq!(
        total(&body, json!({"outcome": "invalid", "category": "profile"})),
        1,
        "{body}"
    );
    assert_eq!(
        total(
            &body,
            json!({"outcome": "client_discard", "category": "error"})
        ),
        4,
        "{body}"
    );
    assert_eq!(body["groups"].as_array().map(Vec::len), Some(4), "{body}");
    assert_eq!(
        body["intervals"].as_array().map(Vec::len),
        Some(2),
        "{body}"
    );
    for g in body["groups"].as_array().into_iter().flatten() {
        let series: i64 = g["series"]["sum(quantity)"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_i64)
            .sum();
        assert_eq!(Some(series), g["totals"]["sum(quantity)"].as_i64(), "{g}");
    }

    // Why were they invalid: the reasons, filtered to errors.
    let (status, reasons) = server.api_get(
        "/api/0/organizations/default/stats_v2/?field=sum(quantity)&groupBy=reason&category=error&outcome=invalid&statsPeriod=2h",
    );
    assert_eq!(status, 200, "{reasons}");
    assert_eq!(
        reasons["groups"],
        json!([{
            "by": {"reason": "invalid_json"},
            "totals": {"sum(quantity)": 2},
            "series": {"sum(quantity)": reasons["groups"][0]["series"]["sum(quantity)"].clone()},
        }]),
        "{reasons}"
    );

    // The older per-project counts: errors received (stored, filtered or rate limited; the
    // invalid ones are not "received" in Sentry's sense) over the last day.
    let (status, points) = server.api_get("/api/0/projects/default/default/stats/?stat=received");
    assert_eq!(status, 200, "{points}");
    let received: i64 = points
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p[1].as_i64())
        .sum();
    assert_eq!(received, 3, "{points}");

    // Sentry's validation, over HTTP.
    let (status, bad) =
        server.api_get("/api/0/organizations/default/stats_v2/?field=sum(quantity)");
    assert_eq!(status, 400);
    assert_eq!(
        bad["detail"], "Query must have category as groupby or filter",
        "{bad}"
    );
}

/// Ingest's own 429s are outcomes too: Relay records items it refuses over a quota as
/// `rate_limited` with the quota's reason, per category and quantity. osprey sums them at the
/// edge and the stats endpoint shows them next to the accepted ones.
#[test]
fn stats_v2_counts_ingest_rate_limits_with_their_reason() {
    let server = OspreyServer::start(ServerOptions {
        config: Some(
            "[ingest.rate_limits]\nwindow_secs = 3600\n\n[ingest.rate_limits.project]\nerror = 2\n"
                .into(),
        ),
        ..ServerOptions::default()
    });
    let mut statuses = Vec::new();
    for i in 0..5 {
        let resp = common::http()
            .post(server.url("/api/1/envelope/"))
            .header(
                "X-Sentry-Auth",
                format!(
                    "Sentry sentry_version=7, sentry_key={}",
                    server.default_key()
                ),
            )
            .body(envelope("event", &error_event(&format!("limited {i}"))))
            .send()
            .expect("ingest request");
        statuses.push(resp.status().as_u16());
    }
    assert_eq!(statuses, [200, 200, 429, 429, 429]);

    let path = "/api/0/organizations/default/stats_v2/?field=sum(quantity)&groupBy=outcome&groupBy=reason&category=error&statsPeriod=2h&interval=1h";
    let limited = json!({"outcome": "rate_limited", "reason": "project_quota"});
    let accepted = |body: &Value| -> i64 {
        body["groups"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|g| g["by"]["outcome"] == "accepted")
            .filter_map(|g| g["totals"]["sum(quantity)"].as_i64())
            .sum()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let body = loop {
        let (status, body) = server.api_get(path);
        assert_eq!(status, 200, "{body}");
        if (total(&body, limited.clone()) >= 3 && accepted(&body) >= 2) || Instant::now() > deadline
        {
            break body;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(total(&body, limited), 3, "{body}");
    assert_eq!(accepted(&body), 2, "{body}");
}
