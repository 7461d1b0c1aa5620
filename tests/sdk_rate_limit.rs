//! The real Python sentry-sdk against an `osprey serve` whose project has an error quota: it
//! gets 429 with Relay's `X-Sentry-Rate-Limits` naming the `error` category, stops sending
//! errors for the window on its own, and its transactions still go through.
//!
//! The tools come from `scripts/test`; run through it (or export what it exports).

mod common;

use common::{http, run_python, OspreyServer, ServerOptions};
use serde_json::Value;

/// Errors the project may send per window.
const ERROR_QUOTA: u64 = 3;
/// Errors the script captures, one HTTP request each unless the SDK holds them back.
const ERRORS_CAPTURED: u64 = 8;

/// The categories named by an `X-Sentry-Rate-Limits` value
/// (`retry_after:cat;cat:scope, …`; an empty category list means all of them).
fn limited_categories(header: &str) -> Vec<String> {
    header
        .split(',')
        .filter_map(|entry| entry.trim().split(':').nth(1))
        .flat_map(|categories| categories.split(';'))
        .map(str::to_owned)
        .collect()
}

/// The value of one Prometheus sample line `NAME{LABELS} VALUE`, or 0 when absent.
fn metric(text: &str, name_and_labels: &str) -> u64 {
    text.lines()
        .find_map(|line| line.strip_prefix(name_and_labels)?.trim().parse().ok())
        .unwrap_or(0)
}

#[test]
fn python_sdk_backs_off_errors_after_429_and_keeps_sending_transactions() {
    let server = OspreyServer::start(ServerOptions {
        config: Some(format!(
            "[ingest.rate_limits]\nwindow_secs = 3600\n\n\
             [ingest.rate_limits.project]\nerror = {ERROR_QUOTA}\n"
        )),
        ..ServerOptions::default()
    });

    let out = run_python(
        "python_rate_limited.py",
        &[server.dsn(), &ERRORS_CAPTURED.to_string()],
        &[],
    );
    out.assert_success();
    let report = out.json();
    let responses = report["responses"]
        .as_array()
        .unwrap_or_else(|| panic!("no responses in {report}"));
    let carries = |response: &Value, item: &str| {
        response["items"]
            .as_array()
            .is_some_and(|items| items.iter().any(|i| i == item))
    };

    // The first ERROR_QUOTA error envelopes are accepted, the next one is refused with 429 and
    // the headers the SDK reads; after that the SDK itself holds errors back.
    let error_answers: Vec<&Value> = responses.iter().filter(|r| carries(r, "event")).collect();
    assert_eq!(
        error_answers.len() as u64,
        ERROR_QUOTA + 1,
        "the SDK should make exactly {} error requests (quota + the refused one): {report}",
        ERROR_QUOTA + 1
    );
    for answer in &error_answers[..ERROR_QUOTA as usize] {
        assert_eq!(answer["status"], 200, "within quota: {report}");
        assert!(answer["rate_limits"].is_null(), "no limit yet: {report}");
    }
    let refused = error_answers[ERROR_QUOTA as usize];
    assert_eq!(refused["status"], 429, "over quota: {report}");
    let header = refused["rate_limits"]
        .as_str()
        .unwrap_or_else(|| panic!("429 without X-Sentry-Rate-Limits: {report}"));
    assert!(
        limited_categories(header).iter().any(|c| c == "error"),
        "X-Sentry-Rate-Limits {header:?} should name the error category"
    );
    let retry_after: u64 = refused["retry_after"]
        .as_str()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("429 without a numeric Retry-After: {report}"));
    assert!(
        (1..=3600).contains(&retry_after),
        "Retry-After {retry_after}"
    );

    assert_eq!(
        report["disabled_after"]["error"], true,
        "the SDK should consider errors disabled: {report}"
    );
    assert_eq!(
        report["disabled_after"]["transaction"], false,
        "transactions are not limited: {report}"
    );

    // A transaction after the error limit still goes through.
    let transaction_answers: Vec<&Value> = responses
        .iter()
        .filter(|r| carries(r, "transaction"))
        .collect();
    assert_eq!(transaction_answers.len(), 1, "{report}");
    assert_eq!(transaction_answers[0]["status"], 200, "{report}");

    // The server saw the same: exactly one refused error request and ERROR_QUOTA errors taken.
    let metrics = http()
        .get(server.url("/metrics"))
        .send()
        .and_then(|r| r.text())
        .expect("GET /metrics");
    assert_eq!(
        metric(
            &metrics,
            "osprey_ingest_rejected_total{reason=\"rate_limited\",category=\"error\"}"
        ),
        1,
        "server-side rate-limited errors\n{metrics}"
    );
    assert_eq!(
        metric(
            &metrics,
            "osprey_ingest_items_accepted_total{category=\"error\"}"
        ),
        ERROR_QUOTA,
        "server-side accepted errors\n{metrics}"
    );
    assert_eq!(
        metric(
            &metrics,
            "osprey_ingest_items_accepted_total{category=\"transaction\"}"
        ),
        1,
        "server-side accepted transactions\n{metrics}"
    );
}
