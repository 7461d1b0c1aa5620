//! Issue 8 acceptance, end to end through the `osprey serve` binary: alert rules created
//! through the HTTP API (Sentry's shapes), events sent to the ingest endpoint, and a webhook
//! receiver on 127.0.0.1 written here that records every POST.
//!
//! - a burst crossing an event-frequency rule → exactly one alert, none more while throttled;
//! - resolve in next release: events of the resolving (or an older, semver) release keep the
//!   issue resolved, one from a newer release regresses it → exactly one regression alert;
//! - slow transactions → exactly one p95 metric alert naming the transaction;
//! - a webhook that hangs: processing still completes promptly; the fired alerts are in the
//!   history API.

mod common;

use std::time::{Duration, Instant};

use common::{http, OspreyServer, ServerOptions};
use processor::testing::{ReceiverMode as Mode, WebhookReceiver as Receiver};
use serde_json::{json, Value};
use uuid::Uuid;

fn api(
    server: &OspreyServer,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = http()
        .request(method.clone(), server.url(path))
        .bearer_auth(server.admin_token());
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req
        .send()
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
    let status = resp.status().as_u16();
    let text = resp.text().unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// Sends one error event to the default project through `/api/1/store/`.
fn send_error(
    server: &OspreyServer,
    fingerprint: &str,
    release: Option<&str>,
    user: &str,
) -> String {
    let id = Uuid::new_v4().simple().to_string();
    let mut event = json!({
        "event_id": id,
        "platform": "python",
        "level": "error",
        "message": format!("failure {fingerprint}"),
        "fingerprint": [fingerprint],
        "user": {"id": user},
        "timestamp": chrono::Utc::now().timestamp_millis() as f64 / 1000.0,
    });
    if let Some(r) = release {
        event["release"] = r.into();
    }
    let url = server.url(&format!(
        "/api/1/store/?sentry_key={}&sentry_version=7",
        server.default_key()
    ));
    let resp = http().post(url).json(&event).send().expect("POST store");
    assert_eq!(
        resp.status().as_u16(),
        200,
        "store answered {:?}",
        resp.text()
    );
    id
}

/// Sends one transaction of `duration_ms` named `name` through `/api/1/envelope/`.
fn send_transaction(server: &OspreyServer, name: &str, duration_ms: u64) {
    let id = Uuid::new_v4().simple().to_string();
    let end = chrono::Utc::now().timestamp_millis() as f64 / 1000.0;
    let tx = json!({
        "event_id": id,
        "type": "transaction",
        "platform": "python",
        "transaction": name,
        "start_timestamp": end - duration_ms as f64 / 1000.0,
        "timestamp": end,
        "contexts": {"trace": {
            "trace_id": Uuid::new_v4().simple().to_string(),
            "span_id": &Uuid::new_v4().simple().to_string()[..16],
            "op": "http.server",
            "status": "ok"
        }},
        "spans": [],
    });
    let body = format!(
        "{}\n{}\n{}\n",
        json!({"event_id": id}),
        json!({"type": "transaction"}),
        tx
    );
    let url = server.url(&format!(
        "/api/1/envelope/?sentry_key={}&sentry_version=7",
        server.default_key()
    ));
    let resp = http()
        .post(url)
        .header("content-type", "application/x-sentry-envelope")
        .body(body)
        .send()
        .expect("POST envelope");
    assert_eq!(
        resp.status().as_u16(),
        200,
        "envelope answered {:?}",
        resp.text()
    );
}

fn issue(server: &OspreyServer, id: &str) -> Value {
    let (status, body) = api(
        server,
        reqwest::Method::GET,
        &format!("/api/0/organizations/default/issues/{id}/"),
        None,
    );
    assert_eq!(status, 200, "{body}");
    body
}

/// Waits (bounded) until the issue's `count` reaches `n`; returns the issue.
fn wait_issue_count(server: &OspreyServer, id: &str, n: u64) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let body = issue(server, id);
        let count: u64 = body["count"]
            .as_str()
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        if count >= n || Instant::now() > deadline {
            return body;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn webhook(url: &str) -> Value {
    json!({"id": "osprey.actions.webhook", "url": url})
}

#[test]
fn frequency_regression_and_p95_alerts_reach_the_webhook_once_each() {
    let server = OspreyServer::start(ServerOptions::default());
    let hooks = Receiver::start(Mode::Ok).unwrap();
    let rules = "/api/0/projects/default/default/rules/";

    // A frequency rule: more than 4 events of an issue in a minute, throttled for an hour.
    let (status, freq_rule) = api(
        &server,
        reqwest::Method::POST,
        rules,
        Some(json!({
            "name": "Burst",
            "actionMatch": "all",
            "conditions": [{"id": "sentry.rules.conditions.event_frequency.EventFrequencyCondition",
                            "value": 4, "interval": "1m"}],
            "filters": [{"id": "sentry.rules.filters.level.LevelFilter", "match": "gte", "level": "40"}],
            "actions": [webhook(&hooks.url("/freq")),
                        {"id": "sentry.integrations.slack.notify_action.SlackNotifyServiceAction",
                         "webhook": hooks.url("/slack"), "channel": "#alerts"}],
            "frequency": 60
        })),
    );
    assert_eq!(status, 201, "{freq_rule}");
    let (status, reg_rule) = api(
        &server,
        reqwest::Method::POST,
        rules,
        Some(json!({
            "name": "Came back",
            "conditions": [{"id": "sentry.rules.conditions.regression_event.RegressionEventCondition"}],
            "actions": [webhook(&hooks.url("/regress"))],
            "frequency": 0
        })),
    );
    assert_eq!(status, 201, "{reg_rule}");
    let (status, p95_rule) = api(
        &server,
        reqwest::Method::POST,
        "/api/0/organizations/default/alert-rules/",
        Some(json!({
            "name": "Checkout slow",
            "aggregate": "p95(transaction.duration)",
            "query": "event.type:transaction transaction:/checkout",
            "timeWindow": 5,
            "projects": ["default"],
            "triggers": [{"label": "critical", "alertThreshold": 500,
                          "actions": [webhook(&hooks.url("/p95"))]}]
        })),
    );
    assert_eq!(status, 201, "{p95_rule}");

    // Burst: 8 events; the 5th crosses "more than 4" and fires; the rest are throttled.
    for i in 0..8 {
        send_error(&server, "burst", None, &format!("u{i}"));
    }
    let fired = hooks.wait_for_on("/freq", 1, Duration::from_secs(20));
    assert_eq!(fired.len(), 1, "{fired:?}");
    let payload = &fired[0];
    let issue_id = payload["issue"]["id"]
        .as_str()
        .expect("issue id")
        .to_owned();
    let burst = wait_issue_count(&server, &issue_id, 8);
    assert_eq!(burst["count"], "8", "{burst}");
    assert_eq!(payload["issue"]["title"], burst["title"]);
    assert_eq!(payload["issue"]["count"], 5, "{payload}");
    assert_eq!(payload["rule"]["id"], freq_rule["id"]);
    assert_eq!(payload["project"]["slug"], "default");
    assert!(payload["issue"]["permalink"]
        .as_str()
        .unwrap()
        .contains(&format!("/issues/{issue_id}/")));
    assert!(
        payload["text"].as_str().unwrap().contains("Burst"),
        "{payload}"
    );
    // Slack's action got a Slack-readable body with only `text`.
    let slack = hooks.wait_for_on("/slack", 1, Duration::from_secs(10));
    assert_eq!(slack.len(), 1);
    assert_eq!(slack[0]["text"], payload["text"]);
    // More of the same burst while throttled: nothing more.
    for i in 0..6 {
        send_error(&server, "burst", None, &format!("v{i}"));
    }
    wait_issue_count(&server, &issue_id, 14);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(hooks.on("/freq").len(), 1, "throttled rule fired again");

    // Resolve in next release, semver-aware.
    send_error(&server, "reg", Some("app@1.0.0"), "r1");
    let first = hooks.wait_for_on("/freq", 1, Duration::from_secs(1));
    assert_eq!(first.len(), 1);
    let deadline = Instant::now() + Duration::from_secs(20);
    let reg_issue = loop {
        let (_, list) = api(
            &server,
            reqwest::Method::GET,
            "/api/0/projects/default/default/issues/?query=failure%20reg",
            None,
        );
        if let Some(found) = list.as_array().and_then(|l| {
            l.iter().find(|i| {
                i["title"]
                    .as_str()
                    .is_some_and(|t| t.contains("failure reg"))
            })
        }) {
            break found["id"].as_str().unwrap().to_owned();
        }
        assert!(
            Instant::now() < deadline,
            "regression issue never appeared: {list}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let (status, resolved) = api(
        &server,
        reqwest::Method::PUT,
        &format!("/api/0/organizations/default/issues/{reg_issue}/"),
        Some(json!({"status": "resolvedInNextRelease"})),
    );
    assert_eq!(status, 200, "{resolved}");
    assert_eq!(resolved["status"], "resolved");
    // The resolving release and an older one keep it resolved.
    send_error(&server, "reg", Some("app@1.0.0"), "r2");
    send_error(&server, "reg", Some("app@0.9.3"), "r3");
    let after_old = wait_issue_count(&server, &reg_issue, 3);
    assert_eq!(after_old["count"], "3");
    assert_eq!(after_old["status"], "resolved", "{after_old}");
    // A newer release (semver: 1.10.0 > 1.9.0 > 1.0.0) regresses it.
    send_error(&server, "reg", Some("app@1.10.0"), "r4");
    let regressed = wait_issue_count(&server, &reg_issue, 4);
    assert_eq!(regressed["status"], "unresolved", "{regressed}");
    assert_eq!(regressed["substatus"], "regressed", "{regressed}");
    let reg = hooks.wait_for_on("/regress", 1, Duration::from_secs(10));
    assert_eq!(reg.len(), 1, "{reg:?}");
    assert_eq!(reg[0]["issue"]["id"], reg_issue.as_str());
    assert_eq!(reg[0]["rule"]["name"], "Came back");
    let (_, activity) = api(
        &server,
        reqwest::Method::GET,
        &format!("/api/0/organizations/default/issues/{reg_issue}/activities/"),
        None,
    );
    assert!(
        activity.to_string().contains("set_regression"),
        "{activity}"
    );

    // p95: fast transactions of another name do not count, slow /checkout ones fire once.
    for _ in 0..10 {
        send_transaction(&server, "/fast", 20);
    }
    for _ in 0..20 {
        send_transaction(&server, "/checkout", 1_200);
    }
    let p95 = hooks.wait_for_on("/p95", 1, Duration::from_secs(25));
    assert_eq!(p95.len(), 1, "{p95:?}");
    let metric = &p95[0]["metric"];
    assert_eq!(metric["aggregate"], "p95(transaction.duration)");
    assert!(metric["value"].as_f64().unwrap() >= 1_000.0, "{metric}");
    assert_eq!(metric["threshold"], 500.0);
    assert!(metric["query"].as_str().unwrap().contains("/checkout"));
    assert!(p95[0]["url"].as_str().unwrap().contains(&format!(
        "/alerts/rules/details/{}/",
        p95_rule["id"].as_str().unwrap()
    )));
    // The metric evaluator runs every 5 s: one more round must not fire again in the window.
    std::thread::sleep(Duration::from_secs(6));
    assert_eq!(hooks.on("/p95").len(), 1);

    // History through the API: one burst, one regression, one metric alert.
    let (status, history) = api(
        &server,
        reqwest::Method::GET,
        "/api/0/organizations/default/alert-history/",
        None,
    );
    assert_eq!(status, 200);
    let kinds: Vec<(String, String)> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            (
                h["ruleName"].as_str().unwrap().to_owned(),
                h["type"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(kinds.len(), 3, "{history}");
    for want in [
        ("Burst", "issue"),
        ("Came back", "issue"),
        ("Checkout slow", "metric"),
    ] {
        assert!(
            kinds.contains(&(want.0.to_owned(), want.1.to_owned())),
            "{kinds:?}"
        );
    }
    let (_, by_rule) = api(
        &server,
        reqwest::Method::GET,
        &format!(
            "/api/0/projects/default/default/alert-history/?rule={}",
            freq_rule["id"].as_str().unwrap()
        ),
        None,
    );
    assert_eq!(by_rule.as_array().map(Vec::len), Some(1), "{by_rule}");
    assert_eq!(by_rule[0]["issueId"], issue_id.as_str());
}

#[test]
fn a_hanging_webhook_does_not_hold_up_processing() {
    let server = OspreyServer::start(ServerOptions::default());
    let hang = Receiver::start(Mode::Hang).unwrap();
    // Fires for every new issue, no throttle: 60 deliveries into a receiver that never answers.
    let (status, body) = api(
        &server,
        reqwest::Method::POST,
        "/api/0/projects/default/default/rules/",
        Some(json!({
            "name": "Every new issue",
            "conditions": [{"id": "sentry.rules.conditions.first_seen_event.FirstSeenEventCondition"}],
            "actions": [webhook(&hang.url("/dead"))],
            "frequency": 0
        })),
    );
    assert_eq!(status, 201, "{body}");
    let started = Instant::now();
    for i in 0..60 {
        send_error(&server, &format!("hang-{i}"), None, "u");
    }
    // Every event becomes an issue promptly although each delivery hangs until its timeout.
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut seen = 0;
    while Instant::now() < deadline {
        let (_, list) = api(
            &server,
            reqwest::Method::GET,
            "/api/0/projects/default/default/issues/?query=failure%20hang&limit=100",
            None,
        );
        seen = list.as_array().map_or(0, Vec::len);
        if seen >= 60 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(seen, 60, "processing stalled behind a hanging webhook");
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_secs(15), "took {elapsed:?}");
    // The firings are recorded although none was delivered.
    let (_, history) = api(
        &server,
        reqwest::Method::GET,
        "/api/0/projects/default/default/alert-history/?limit=100",
        None,
    );
    assert_eq!(history.as_array().unwrap().len(), 60);
}

/// Runs `osprey alerts ARGS` against `server` with its admin token.
fn alerts_cli(server: &OspreyServer, args: &[&str]) -> common::ToolOutput {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_osprey"));
    cmd.arg("alerts")
        .args(args)
        .env("OSPREY_URL", server.url(""))
        .env("OSPREY_TOKEN", server.admin_token());
    common::run_tool("osprey alerts", cmd, Duration::from_secs(60))
}

/// `osprey alerts create|list|delete` manage the same rules as the API: a rule created on the
/// command line is listed by the API and fires like any other; bad rules are refused with the
/// server's reason; deleted rules are gone.
#[test]
fn the_alerts_cli_manages_the_rules_the_api_and_the_processor_use() {
    let server = OspreyServer::start(ServerOptions::default());
    let hooks = Receiver::start(Mode::Ok).unwrap();
    let hook = hooks.url("/cli");
    let out = alerts_cli(
        &server,
        &[
            "create",
            "--name",
            "CLI burst",
            "--when",
            "events:2/1m",
            "--level",
            "error",
            "--frequency",
            "60",
            "--webhook",
            &hook,
            "--json",
        ],
    );
    out.assert_success();
    let issue_rule = out.json();
    let out = alerts_cli(
        &server,
        &[
            "create",
            "--name",
            "CLI apdex",
            "--aggregate",
            "apdex()",
            "--threshold",
            "0.8",
            "--below",
            "--window",
            "10",
            "--webhook",
            &hook,
            "--json",
        ],
    );
    out.assert_success();
    let metric_rule = out.json();
    assert_eq!(metric_rule["thresholdType"], 1, "{metric_rule}");
    assert_eq!(metric_rule["timeWindow"], 10, "{metric_rule}");

    // The API lists exactly what the CLI made, in Sentry's shape.
    let (_, rules) = server.api_get("/api/0/projects/default/default/rules/");
    assert_eq!(rules.as_array().unwrap().len(), 1, "{rules}");
    assert_eq!(rules[0]["id"], issue_rule["id"]);
    assert_eq!(
        rules[0]["conditions"][0]["id"],
        "sentry.rules.conditions.event_frequency.EventFrequencyCondition"
    );
    assert_eq!(rules[0]["filters"][0]["level"], "40", "{rules}");
    let out = alerts_cli(&server, &["list", "--json"]);
    out.assert_success();
    let listed = out.json();
    assert_eq!(listed["issueAlerts"][0]["name"], "CLI burst");
    assert_eq!(listed["metricAlerts"][0]["name"], "CLI apdex");
    let out = alerts_cli(&server, &["list"]);
    out.assert_success();
    assert!(
        out.stdout.contains("EventFrequencyCondition > 2 in 1m"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("apdex() < 0.8 over 10m"),
        "{}",
        out.stdout
    );

    // The CLI's rule fires like an API-made one: the 3rd event crosses "more than 2".
    for i in 0..4 {
        send_error(&server, "cli-burst", None, &format!("u{i}"));
    }
    let fired = hooks.wait_for_on("/cli", 1, Duration::from_secs(20));
    assert_eq!(fired.len(), 1, "{fired:?}");
    assert_eq!(fired[0]["rule"]["name"], "CLI burst");

    // Refused: a condition the CLI cannot parse, and an aggregate the server does not know
    // (its reason is shown); nothing is created by either.
    let out = alerts_cli(
        &server,
        &["create", "--name", "x", "--when", "events:many/1m"],
    );
    assert!(!out.status.success());
    assert!(out.stderr.contains("events:N/INTERVAL"), "{}", out.stderr);
    let out = alerts_cli(
        &server,
        &[
            "create",
            "--name",
            "x",
            "--aggregate",
            "p42(transaction.duration)",
            "--threshold",
            "1",
        ],
    );
    assert!(!out.status.success());
    assert!(out.stderr.contains("400"), "{}", out.stderr);
    assert!(out.stderr.contains("p42"), "{}", out.stderr);

    // Delete both; the API has none left.
    let id = issue_rule["id"].as_str().unwrap();
    alerts_cli(&server, &["delete", id]).assert_success();
    let metric_id = metric_rule["id"].as_str().unwrap();
    alerts_cli(&server, &["delete", metric_id, "--metric"]).assert_success();
    let (_, rules) = server.api_get("/api/0/projects/default/default/rules/");
    assert_eq!(rules, json!([]));
    let (_, metric) = server.api_get("/api/0/organizations/default/alert-rules/");
    assert_eq!(metric, json!([]));
    let out = alerts_cli(&server, &["delete", id]);
    assert!(!out.status.success());
    assert!(out.stderr.contains("404"), "{}", out.stderr);
}
