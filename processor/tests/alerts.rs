//! Issue alerts end to end: rules stored in a real RocksDB, evaluated by the processor, and
//! delivered over HTTP to webhook receivers listening on 127.0.0.1.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use processor::pipeline::event_record;
use processor::testing::{ReceiverMode as Mode, WebhookReceiver as Receiver};
use processor::webhook::{WebhookConfig, WebhookQueue};
use processor::{Processor, ProcessorConfig};
use serde_json::{json, Value};
use storage::alerts::AlertRule;
use storage::records::{self, IssueStatus, Resolution};
use storage::{LogRecord, Store, StoreOptions};
use uuid::Uuid;

fn open(dir: &std::path::Path) -> Store {
    let store = Store::open(dir, &StoreOptions::default()).unwrap();
    store.bootstrap(None, None).unwrap();
    store
}

fn event(id: u128, ty: &str) -> LogRecord {
    let ev = json!({
        "event_id": Uuid::from_u128(id).simple().to_string(),
        "platform": "python",
        "level": "error",
        "user": {"id": format!("u{}", id % 3)},
        "exception": {"values": [{
            "type": ty,
            "value": "boom",
            "stacktrace": {"frames": [
                {"module": "app", "function": "handler", "filename": "app.py", "lineno": 10, "in_app": true}
            ]},
        }]},
    });
    event_record(
        1,
        storage::now_ms(),
        &serde_json::to_vec(&ev).unwrap(),
        None,
    )
}

fn rule(value: Value) -> AlertRule {
    serde_json::from_value(value).unwrap()
}

struct Delivery {
    queue: Arc<WebhookQueue>,
    shutdown: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Delivery {
    fn start(processor: &Processor, config: WebhookConfig) -> Delivery {
        let queue = WebhookQueue::new(config);
        let shutdown = Arc::new(AtomicBool::new(false));
        let thread = queue.spawn(shutdown.clone()).unwrap();
        processor.alerts().set_delivery(queue.clone());
        Delivery {
            queue,
            shutdown,
            thread: Some(thread),
        }
    }
}

impl Drop for Delivery {
    fn drop(&mut self) {
        self.shutdown.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[test]
fn frequency_burst_fires_once_then_throttles_across_restart() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let hook = Receiver::start(Mode::Ok).unwrap();
    store
        .create_alert_rule(
            1,
            rule(json!({
                "name": "Burst",
                "actionMatch": "all",
                "conditions": [{
                    "id": "sentry.rules.conditions.event_frequency.EventFrequencyCondition",
                    "value": 5, "interval": "1m"
                }],
                "filters": [{"id": "sentry.rules.filters.level.LevelFilter", "match": "gte", "level": "40"}],
                "actions": [{"id": "osprey.actions.webhook", "url": hook.url("/hook")}],
                "frequency": 30
            })),
        )
        .unwrap();
    let processor = Processor::new(store.clone(), ProcessorConfig::default()).unwrap();
    let delivery = Delivery::start(&processor, WebhookConfig::default());
    processor.alerts().set_base_url("http://osprey.test/");
    // 12 events of one issue over three batches: the 6th crosses "more than 5 in 1m".
    for chunk in 0..3u128 {
        let batch: Vec<_> = (0..4)
            .map(|i| event(1 + chunk * 4 + i, "KeyError"))
            .collect();
        processor.process_and_commit(&batch).unwrap();
    }
    let got = hook.wait_for(1, Duration::from_secs(5));
    assert_eq!(got.len(), 1);
    let (path, body) = &got[0];
    assert_eq!(path, "/hook");
    assert_eq!(body["rule"]["name"], "Burst");
    assert_eq!(body["issue"]["shortId"], "DEFAULT-1");
    assert_eq!(body["issue"]["title"], "KeyError: boom");
    assert_eq!(body["issue"]["count"], 6);
    let issue_id = body["issue"]["id"].as_str().unwrap().to_owned();
    assert!(body["issue"]["permalink"]
        .as_str()
        .unwrap()
        .starts_with(&format!(
            "http://osprey.test/organizations/default/issues/{issue_id}/"
        )));
    assert!(body["text"]
        .as_str()
        .unwrap()
        .contains("Burst: DEFAULT-1 KeyError: boom"));
    assert!(body["url"]
        .as_str()
        .unwrap()
        .contains(&Uuid::from_u128(6).simple().to_string()));
    // More of the burst while throttled: nothing.
    let more: Vec<_> = (100..110).map(|i| event(i, "KeyError")).collect();
    processor.process_and_commit(&more).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(hook.bodies().len(), 1);
    assert_eq!(store.fired_alerts(1, 10).unwrap().len(), 1);
    drop(delivery);
    drop(processor);

    // A restarted processor reads the persisted throttle and stays quiet.
    let processor = Processor::new(store.clone(), ProcessorConfig::default()).unwrap();
    let _delivery = Delivery::start(&processor, WebhookConfig::default());
    let again: Vec<_> = (200..212).map(|i| event(i, "KeyError")).collect();
    processor.process_and_commit(&again).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(hook.bodies().len(), 1);
    assert_eq!(store.fired_alerts(1, 10).unwrap().len(), 1);
}

#[test]
fn first_seen_and_regression_fire_once_each() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let hook = Receiver::start(Mode::Ok).unwrap();
    store
        .create_alert_rule(
            1,
            rule(json!({
                "name": "New or back",
                "actionMatch": "any",
                "conditions": [
                    {"id": "sentry.rules.conditions.first_seen_event.FirstSeenEventCondition"},
                    {"id": "sentry.rules.conditions.regression_event.RegressionEventCondition"}
                ],
                "actions": [
                    {"id": "osprey.actions.webhook", "url": hook.url("/hook")},
                    {"id": "sentry.integrations.slack.notify_action.SlackNotifyServiceAction",
                     "webhook": hook.url("/slack"), "channel": "#alerts"}
                ],
                "frequency": 0
            })),
        )
        .unwrap();
    let processor = Processor::new(store.clone(), ProcessorConfig::default()).unwrap();
    let _delivery = Delivery::start(&processor, WebhookConfig::default());
    processor
        .process_and_commit(&[event(1, "ValueError")])
        .unwrap();
    let got = hook.wait_for(2, Duration::from_secs(5));
    assert_eq!(got.len(), 2);
    let slack = got.iter().find(|(p, _)| p == "/slack").unwrap();
    assert_eq!(
        slack.1.as_object().unwrap().len(),
        1,
        "Slack gets only text"
    );
    assert!(slack.1["text"].as_str().unwrap().contains("DEFAULT-1"));
    // A second event of the same open issue is neither new nor a regression.
    processor
        .process_and_commit(&[event(2, "ValueError")])
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(hook.bodies().len(), 2);

    let issue_id = store.fired_alerts(1, 10).unwrap()[0].issue_id;
    records::update_issue(&store, issue_id, |i| {
        i.status = IssueStatus::Resolved;
        i.resolution = Some(Resolution {
            resolved_ms: storage::now_ms(),
            release: None,
            in_next_release: false,
        });
    })
    .unwrap();
    processor
        .process_and_commit(&[event(3, "ValueError")])
        .unwrap();
    let got = hook.wait_for(4, Duration::from_secs(5));
    assert_eq!(got.len(), 4);
    let regression = got.iter().rev().find(|(p, _)| p == "/hook").unwrap();
    assert_eq!(regression.1["issue"]["count"], 3);
    assert_eq!(
        regression.1["event"]["id"],
        Uuid::from_u128(3).simple().to_string()
    );
    assert_eq!(store.fired_alerts(1, 10).unwrap().len(), 2);
}

#[test]
fn dead_webhooks_are_retried_within_bounds_and_never_slow_processing() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let hang = Receiver::start(Mode::Hang).unwrap();
    let fail = Receiver::start(Mode::Fail500).unwrap();
    store
        .create_alert_rule(
            1,
            rule(json!({
                "name": "Every new issue",
                "conditions": [{"id": "sentry.rules.conditions.first_seen_event.FirstSeenEventCondition"}],
                "actions": [
                    {"id": "osprey.actions.webhook", "url": hang.url("/")},
                    {"id": "osprey.actions.webhook", "url": fail.url("/")}
                ]
            })),
        )
        .unwrap();
    let processor = Processor::new(store.clone(), ProcessorConfig::default()).unwrap();
    let config = WebhookConfig {
        capacity: 8,
        connect_timeout: Duration::from_millis(200),
        total_timeout: Duration::from_millis(300),
        attempts: 3,
        backoff: Duration::from_millis(20),
        ..WebhookConfig::default()
    };
    let delivery = Delivery::start(&processor, config);
    // One new issue: both deliveries are tried three times each, then given up.
    let started = Instant::now();
    processor.process_and_commit(&[event(1, "E0")]).unwrap();
    assert!(started.elapsed() < Duration::from_secs(2));
    let deadline = Instant::now() + Duration::from_secs(10);
    let stats = delivery.queue.stats();
    while stats.failed.load(Ordering::SeqCst) < 2 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(stats.failed.load(Ordering::SeqCst), 2);
    assert_eq!(stats.attempts.load(Ordering::SeqCst), 6);
    assert_eq!(stats.delivered.load(Ordering::SeqCst), 0);
    assert_eq!(fail.connections(), 3);
    assert_eq!(hang.connections(), 3);

    // 300 new issues = 600 deliveries that would take minutes to fail: processing does not
    // wait for them, and the bounded queue drops the oldest.
    let started = Instant::now();
    for chunk in 0..3u32 {
        let batch: Vec<_> = (0..100u32)
            .map(|i| {
                event(
                    1000 + (chunk * 100 + i) as u128,
                    &format!("E{}", 1 + chunk * 100 + i),
                )
            })
            .collect();
        let stats = processor.process_and_commit(&batch).unwrap();
        assert_eq!(stats.issues_created, 100);
    }
    let elapsed = started.elapsed();
    assert!(
        elapsed < Duration::from_secs(20),
        "processing took {elapsed:?}"
    );
    assert!(delivery.queue.len() <= 8);
    assert!(delivery.queue.stats().dropped.load(Ordering::SeqCst) >= 580);
    assert_eq!(store.fired_alerts(1, 1000).unwrap().len(), 301);
}

fn transaction(id: u128, duration_ms: u64) -> LogRecord {
    transaction_with_status(id, duration_ms, "ok")
}

fn transaction_with_status(id: u128, duration_ms: u64, status: &str) -> LogRecord {
    let now = storage::now_ms() as f64 / 1000.0;
    let tx = json!({
        "type": "transaction",
        "event_id": Uuid::from_u128(id).simple().to_string(),
        "transaction": "/checkout",
        "start_timestamp": now - duration_ms as f64 / 1000.0,
        "timestamp": now,
        "contexts": {"trace": {"trace_id": "4c79f60c11214eb38604f4ae0781bfb2", "span_id": "fa90fdead5f74052", "op": "http.server", "status": status}},
    });
    let mut rec = event_record(
        1,
        storage::now_ms(),
        &serde_json::to_vec(&tx).unwrap(),
        None,
    );
    rec.item_type = "transaction".into();
    rec
}

#[test]
fn p95_metric_alert_fires_once_after_slow_transactions() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let hook = Receiver::start(Mode::Ok).unwrap();
    let rule: storage::alerts::MetricAlertRule = serde_json::from_value(json!({
        "name": "Slow checkout",
        "aggregate": "p95(transaction.duration)",
        "query": "",
        "timeWindow": 5,
        "projects": ["default"],
        "triggers": [{"label": "critical", "alertThreshold": 500,
                      "actions": [{"id": "osprey.actions.webhook", "url": hook.url("/metric")}]}]
    }))
    .unwrap();
    let mut bad = rule.clone();
    bad.aggregate = "p42(transaction.duration)".into();
    assert!(store.create_metric_alert_rule(1, bad).is_err());
    store.create_metric_alert_rule(1, rule).unwrap();
    let processor = Processor::new(store.clone(), ProcessorConfig::default()).unwrap();
    let queue = WebhookQueue::new(WebhookConfig::default());
    let shutdown = Arc::new(AtomicBool::new(false));
    let thread = queue.spawn(shutdown.clone()).unwrap();
    let base = "http://osprey.test";
    let eval =
        |now| processor::metric_alerts::evaluate_once(&store, Some(&queue), base, now).unwrap();

    // Fast transactions: p95 well under 500 ms, nothing fires.
    let fast: Vec<_> = (0..20).map(|i| transaction(i, 100)).collect();
    processor.process_and_commit(&fast).unwrap();
    assert!(eval(storage::now_ms()).is_empty());
    // Slow ones push p95 over the threshold: exactly one alert, then quiet within the window.
    let slow: Vec<_> = (100..120).map(|i| transaction(i, 900)).collect();
    processor.process_and_commit(&slow).unwrap();
    let fired = eval(storage::now_ms());
    assert_eq!(fired.len(), 1);
    assert!(eval(storage::now_ms()).is_empty());
    let got = hook.wait_for(1, Duration::from_secs(5));
    assert_eq!(got.len(), 1);
    let body = &got[0].1;
    assert_eq!(body["rule"]["name"], "Slow checkout");
    assert_eq!(body["metric"]["aggregate"], "p95(transaction.duration)");
    let value = body["metric"]["value"].as_f64().unwrap();
    assert!((850.0..=950.0).contains(&value), "p95 {value}");
    assert!(body["url"]
        .as_str()
        .unwrap()
        .starts_with("http://osprey.test/"));
    assert_eq!(store.fired_alerts(1, 10).unwrap().len(), 1);
    shutdown.store(true, Ordering::Release);
    thread.join().unwrap();
}

#[test]
fn failure_rate_and_apdex_metric_alerts_fire_above_and_below() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let rule = |name: &str, aggregate: &str, threshold: f64, threshold_type: u8| {
        storage::alerts::MetricAlertRule::from_api_json(&json!({
            "name": name, "aggregate": aggregate, "timeWindow": 5, "projects": ["default"],
            "thresholdType": threshold_type,
            "triggers": [{"label": "critical", "alertThreshold": threshold,
                          "actions": [{"id": "osprey.actions.webhook", "url": "http://127.0.0.1:9/x"}]}]
        }))
        .unwrap()
    };
    // Failure rate above 0.4, apdex below 0.8, and an apdex rule that must stay quiet.
    let failing = store
        .create_metric_alert_rule(1, rule("Failing", "failure_rate()", 0.4, 0))
        .unwrap();
    let unhappy = store
        .create_metric_alert_rule(1, rule("Unhappy", "apdex()", 0.8, 1))
        .unwrap();
    store
        .create_metric_alert_rule(1, rule("Very unhappy", "apdex()", 0.5, 1))
        .unwrap();
    let err = storage::alerts::MetricAlertRule::from_api_json(&json!({
        "name": "x", "aggregate": "failure_rate()", "timeWindow": 5, "projects": ["default"],
        "triggers": [{"alertThreshold": 5, "actions": []}]
    }))
    .unwrap_err()
    .to_string();
    assert!(err.contains("ratio from 0 to 1"), "{err}");

    let processor = Processor::new(store.clone(), ProcessorConfig::default()).unwrap();
    // T = 300 ms: 10 satisfied (100 ms, ok) and 10 tolerated (900 ms, internal_error).
    let mut batch: Vec<_> = (0..10).map(|i| transaction(i, 100)).collect();
    batch.extend((10..20).map(|i| transaction_with_status(i, 900, "internal_error")));
    processor.process_and_commit(&batch).unwrap();
    let now = storage::now_ms();
    let value = |r: &storage::alerts::MetricAlertRule| {
        processor::metric_alerts::aggregate(&store, r, 1, now)
            .unwrap()
            .unwrap()
    };
    assert_eq!(value(&failing), 0.5);
    assert_eq!(value(&unhappy), 0.75);
    let fired = processor::metric_alerts::evaluate_once(&store, None, "http://o", now).unwrap();
    let mut names: Vec<_> = fired.iter().map(|f| f.rule_name.as_str()).collect();
    names.sort_unstable();
    assert_eq!(names, ["Failing", "Unhappy"]);
}
