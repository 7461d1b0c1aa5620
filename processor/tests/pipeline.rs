//! The processor on a real RocksDB: exactly-once across crashes, dedup, PII scrubbing,
//! retention, issue creation/joining, regression, users, tag facets and outcomes.

use std::sync::Arc;

use bytes::Bytes;
use processor::pipeline::{category, event_record, outcome};
use processor::{Processor, ProcessorConfig};
use serde_json::{json, Value};
use storage::records::{self, IssueStatus, IssueSubstatus, Resolution};
use storage::{
    cf, decode_i64, keys, EmbeddedLog, EmbeddedLogOptions, Log, LogRecord, Store, StoreOptions,
};
use uuid::Uuid;

fn now_ms() -> u64 {
    storage::now_ms()
}

fn open(dir: &std::path::Path) -> Store {
    let store = Store::open(dir, &StoreOptions::default()).unwrap();
    store.bootstrap(None, None).unwrap();
    store
}

/// A processor over `store` preparing events on `threads` threads.
fn with_threads(store: &Store, threads: usize) -> Processor {
    let config = ProcessorConfig {
        prepare_threads: threads,
        ..Default::default()
    };
    Processor::new(store.clone(), config).unwrap()
}

fn error_event(id: u128, ty: &str, value: &str, extra: Value) -> Vec<u8> {
    let mut ev = json!({
        "event_id": Uuid::from_u128(id).simple().to_string(),
        "platform": "python",
        "timestamp": now_ms() as f64 / 1000.0,
        "exception": {"values": [{
            "type": ty,
            "value": value,
            "stacktrace": {"frames": [
                {"module": "app", "function": "handler", "filename": "app.py", "lineno": 10, "in_app": true}
            ]},
        }]},
    });
    if let (Some(obj), Value::Object(more)) = (ev.as_object_mut(), extra) {
        obj.extend(more);
    }
    serde_json::to_vec(&ev).unwrap()
}

fn record(payload: Vec<u8>) -> LogRecord {
    event_record(1, now_ms(), &payload, Some("203.0.113.7".parse().unwrap()))
}

fn counter(store: &Store, key: &[u8]) -> i64 {
    store
        .db()
        .get_cf(&store.cf(cf::COUNTERS), key)
        .unwrap()
        .map(|v| decode_i64(&v))
        .unwrap_or(0)
}

fn times_seen(store: &Store, issue_id: u64) -> i64 {
    counter(
        store,
        &keys::issue_counter(keys::counters::ISSUE_EVENTS, issue_id),
    )
}

fn all_issues(store: &Store) -> Vec<records::IssueRecord> {
    let mut out = Vec::new();
    let iter = store
        .db()
        .prefix_iterator_cf(&store.cf(cf::ISSUES), [keys::issues::ISSUE]);
    for item in iter {
        let (k, v) = item.unwrap();
        if k.first() != Some(&keys::issues::ISSUE) {
            break;
        }
        out.push(records::IssueRecord::from_bytes(&v).unwrap());
    }
    out.sort_by_key(|i| i.id);
    out
}

fn count_cf(store: &Store, name: &str) -> usize {
    store
        .db()
        .iterator_cf(&store.cf(name), rocksdb::IteratorMode::Start)
        .count()
}

fn append_all(log: &EmbeddedLog, records: Vec<LogRecord>) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    for r in records {
        let ticket = log.append(vec![r]).unwrap();
        rt.block_on(ticket).unwrap();
    }
}

/// Drains the log through the embedded loop's step function (bounded).
fn drain(processor: &Processor, log: &EmbeddedLog) {
    let reader = log.reader();
    let mut next = storage::consumer_offset(processor.store(), storage::EMBEDDED_CONSUMER).unwrap();
    for _ in 0..1000 {
        match processor.embedded_step(&reader, log, next).unwrap() {
            Some(n) => next = n,
            None => return,
        }
    }
    panic!("log did not drain");
}

#[test]
fn exactly_once_across_crashes_and_resends() {
    let dir = tempfile::tempdir().unwrap();
    let small = ProcessorConfig {
        batch_records: 7,
        ..Default::default()
    };
    // 40 records: 30 distinct events of two kinds, 10 resends of earlier ids.
    let mut recs = Vec::new();
    for i in 0..30u128 {
        let ty = if i % 3 == 0 { "KeyError" } else { "ValueError" };
        recs.push(record(error_event(i + 1, ty, "boom", json!({}))));
    }
    for i in 0..10u128 {
        recs.push(record(error_event(i + 1, "ValueError", "boom", json!({}))));
    }
    {
        let store = open(dir.path());
        let log = EmbeddedLog::open(&store, EmbeddedLogOptions::default()).unwrap();
        append_all(&log, recs);
        let processor = Processor::new(store.clone(), small.clone()).unwrap();
        // Crash 1: a batch processed but never committed.
        let read = log.reader().read(0, 7, usize::MAX).unwrap();
        let batch: Vec<LogRecord> = read.into_iter().map(|(_, r)| r).collect();
        let lost = processor.process_batch(&batch).unwrap();
        assert_eq!(lost.stats.accepted, 7);
        drop(lost);
        // Crash 2: one batch committed with its offset, then the process dies.
        let reader = log.reader();
        assert_eq!(processor.embedded_step(&reader, &log, 0).unwrap(), Some(7));
        log.close();
    }
    {
        let store = open(dir.path());
        assert_eq!(
            storage::consumer_offset(&store, storage::EMBEDDED_CONSUMER).unwrap(),
            7
        );
        let log = EmbeddedLog::open(&store, EmbeddedLogOptions::default()).unwrap();
        let processor = Processor::new(store.clone(), small.clone()).unwrap();
        drain(&processor, &log);
        // The SDK resends two events after the restart: still counted once.
        append_all(
            &log,
            vec![
                record(error_event(3, "KeyError", "boom", json!({}))),
                record(error_event(4, "KeyError", "boom", json!({}))),
            ],
        );
        drain(&processor, &log);
        log.close();
    }
    let store = open(dir.path());
    let issues = all_issues(&store);
    assert_eq!(issues.len(), 2, "{issues:#?}");
    let total: i64 = issues.iter().map(|i| times_seen(&store, i.id)).sum();
    assert_eq!(total, 30);
    let key_errors = issues
        .iter()
        .find(|i| i.title.starts_with("KeyError"))
        .unwrap();
    assert_eq!(times_seen(&store, key_errors.id), 10);
    assert_eq!(count_cf(&store, cf::EVENTS), 30);
    assert_eq!(
        count_cf(&store, cf::LOG),
        0,
        "processed records leave the log"
    );
    let hour = keys::hour_start(now_ms());
    let accepted = store
        .db()
        .get_cf(
            &store.cf(cf::OUTCOMES),
            keys::outcome(1, hour, outcome::ACCEPTED, category::ERROR, ""),
        )
        .unwrap()
        .map(|v| decode_i64(&v))
        .unwrap_or(0);
    // The hour may roll over mid-test; then the sum lands in two buckets.
    assert!(accepted <= 30 && (accepted == 30 || hour != keys::hour_start(now_ms())));
    // Short ids are per project and dense.
    let mut shorts: Vec<u64> = issues.iter().map(|i| i.short_id).collect();
    shorts.sort();
    assert_eq!(shorts, vec![1, 2]);
}

#[test]
fn duplicates_within_one_batch_count_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let processor = Processor::new(store.clone(), ProcessorConfig::default()).unwrap();
    let a = record(error_event(9, "E", "x", json!({})));
    let stats = processor
        .process_and_commit(&[a.clone(), a.clone(), a])
        .unwrap();
    assert_eq!((stats.accepted, stats.duplicates), (1, 2));
    let issues = all_issues(&store);
    assert_eq!(times_seen(&store, issues[0].id), 1);
}

#[test]
fn password_card_and_authorization_are_not_stored() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let processor = Processor::new(store.clone(), ProcessorConfig::default()).unwrap();
    let payload = error_event(
        77,
        "PaymentError",
        "card 4111 1111 1111 1111 declined",
        json!({
            "request": {
                "url": "https://shop.example/pay",
                "method": "POST",
                "headers": {"Authorization": "Bearer sk_live_abcdef", "Cookie": "sessionid=s3cr3t", "Accept": "text/html"},
                "data": {"password": "hunter2", "amount": 10},
            },
            "extra": {"note": "paid with 5555555555554444"},
        }),
    );
    processor.process_and_commit(&[record(payload)]).unwrap();
    let stored = records::load_event(&store, 1, &Uuid::from_u128(77))
        .unwrap()
        .unwrap();
    let text = serde_json::to_string(&stored).unwrap();
    for secret in [
        "hunter2",
        "4111 1111 1111 1111",
        "5555555555554444",
        "sk_live_abcdef",
        "s3cr3t",
    ] {
        assert!(!text.contains(secret), "{secret} leaked: {text}");
    }
    assert!(text.contains("[Filtered]"));
    assert!(text.contains("text/html"), "harmless headers stay");
    assert_eq!(stored.event["request"]["data"]["amount"], 10);
}

#[test]
fn retention_drops_old_events_and_their_index_entries() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let processor = Processor::new(store.clone(), ProcessorConfig::default()).unwrap();
    let ten_days_ago = (now_ms() - 10 * 86_400_000) as f64 / 1000.0;
    let old = error_event(
        1,
        "Old",
        "x",
        json!({"timestamp": ten_days_ago, "contexts": {"trace": {"trace_id": "4c79f60c11214eb38604f4ae0781bfb2", "span_id": "fa90fdead5f74052"}}}),
    );
    let fresh = error_event(2, "Fresh", "y", json!({}));
    processor
        .process_and_commit(&[record(old), record(fresh)])
        .unwrap();
    assert_eq!(count_cf(&store, cf::EVENTS), 2);
    let index_before = count_cf(&store, cf::INDEX);
    assert_eq!(index_before, 5, "2 issue, 2 project, 1 trace");
    store.set_retention_ms(86_400_000);
    store.compact_all().unwrap();
    assert_eq!(count_cf(&store, cf::EVENTS), 1);
    assert!(records::load_event(&store, 1, &Uuid::from_u128(1))
        .unwrap()
        .is_none());
    assert!(records::load_event(&store, 1, &Uuid::from_u128(2))
        .unwrap()
        .is_some());
    assert_eq!(
        count_cf(&store, cf::INDEX),
        2,
        "old issue/project/trace entries gone"
    );
    // Issues themselves are kept (Sentry keeps the group).
    assert_eq!(all_issues(&store).len(), 2);
}

/// Unique users are counted once per issue whether the user was seen earlier in the batch,
/// in an earlier batch of this processor (its cache) or only in the store (a new processor).
#[test]
fn unique_users_count_each_user_once_across_batches_and_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let event = |id: u128, user: &str| {
        record(error_event(
            id,
            "ZeroDivisionError",
            "division by zero",
            json!({"user": {"id": user}}),
        ))
    };
    let users = |store: &Store| {
        let issue = &all_issues(store)[0];
        counter(
            store,
            &keys::issue_counter(keys::counters::ISSUE_USERS, issue.id),
        )
    };
    let first = Processor::new(store.clone(), ProcessorConfig::default()).unwrap();
    first
        .process_and_commit(&[event(1, "a"), event(2, "b"), event(3, "a")])
        .unwrap();
    assert_eq!(users(&store), 2);
    // The same processor: "a" is in its cache, "c" is new.
    first
        .process_and_commit(&[event(4, "a"), event(5, "c"), event(6, "c")])
        .unwrap();
    assert_eq!(users(&store), 3);
    drop(first);
    // A new processor has an empty cache: "b" and "c" are known only to the store.
    let second = Processor::new(store.clone(), ProcessorConfig::default()).unwrap();
    second
        .process_and_commit(&[event(7, "b"), event(8, "d"), event(9, "c"), event(10, "d")])
        .unwrap();
    assert_eq!(users(&store), 4);
    assert_eq!(times_seen(&store, all_issues(&store)[0].id), 10);
}

#[test]
fn issues_join_by_hash_and_regress() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let processor = Processor::new(store.clone(), ProcessorConfig::default()).unwrap();
    let with_release = |id, release: &str| {
        record(error_event(
            id,
            "ZeroDivisionError",
            "division by zero",
            json!({"release": release, "user": {"id": format!("u{}", id % 2)}}),
        ))
    };
    let stats = processor
        .process_and_commit(&[
            with_release(1, "1.0"),
            with_release(2, "1.0"),
            with_release(3, "1.0"),
        ])
        .unwrap();
    assert_eq!(stats.issues_created, 1);
    let issue = &all_issues(&store)[0];
    assert_eq!(issue.title, "ZeroDivisionError: division by zero");
    assert_eq!(issue.culprit, "app in handler");
    assert_eq!(issue.substatus, Some(IssueSubstatus::New));
    assert_eq!(
        records::qualified_short_id("default", issue.short_id),
        "DEFAULT-1"
    );
    assert_eq!(times_seen(&store, issue.id), 3);
    assert_eq!(
        counter(
            &store,
            &keys::issue_counter(keys::counters::ISSUE_USERS, issue.id)
        ),
        2
    );
    assert_eq!(
        counter(&store, &keys::issue_tag(issue.id, "release", "1.0")),
        3
    );
    assert_eq!(
        counter(&store, &keys::issue_tag(issue.id, "level", "error")),
        3
    );

    // Another hash that already points at the issue: the event joins it.
    let other = error_event(10, "TypeError", "nope", json!({}));
    let other_hash = {
        let probe = tempfile::tempdir().unwrap();
        let probe_store = open(probe.path());
        let p = Processor::new(probe_store.clone(), ProcessorConfig::default()).unwrap();
        p.process_and_commit(&[record(other.clone())]).unwrap();
        records::load_event(&probe_store, 1, &Uuid::from_u128(10))
            .unwrap()
            .unwrap()
            .hashes[0]
            .clone()
    };
    store
        .db()
        .put_cf(
            &store.cf(cf::ISSUES),
            keys::issue_hash(1, &other_hash),
            issue.id.to_be_bytes(),
        )
        .unwrap();
    let stats = processor.process_and_commit(&[record(other)]).unwrap();
    assert_eq!(stats.issues_created, 0);
    assert_eq!(times_seen(&store, issue.id), 4);
    let stored = records::load_event(&store, 1, &Uuid::from_u128(10))
        .unwrap()
        .unwrap();
    assert_eq!(stored.issue_id, Some(issue.id));

    // Resolved in 1.0: another 1.0 event does not regress it, a 2.0 event does.
    records::update_issue(&store, issue.id, |i| {
        i.status = IssueStatus::Resolved;
        i.substatus = None;
        i.resolution = Some(Resolution {
            resolved_ms: now_ms(),
            release: Some("1.0".into()),
            in_next_release: false,
        });
    })
    .unwrap();
    let stats = processor
        .process_and_commit(&[with_release(20, "1.0")])
        .unwrap();
    assert_eq!(stats.regressions, 0);
    assert_eq!(all_issues(&store)[0].status, IssueStatus::Resolved);
    let stats = processor
        .process_and_commit(&[with_release(21, "2.0")])
        .unwrap();
    assert_eq!(stats.regressions, 1);
    let issue = &all_issues(&store)[0];
    assert_eq!(issue.status, IssueStatus::Unresolved);
    assert_eq!(issue.substatus, Some(IssueSubstatus::Regressed));
    assert_eq!(issue.last_release.as_deref(), Some("2.0"));
    assert_eq!(issue.first_release.as_deref(), Some("1.0"));
}

#[test]
fn filters_invalid_items_and_client_reports_become_outcomes() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let mut project = (*store.meta().project(1).unwrap()).clone();
    project.settings.filter_localhost = true;
    project.settings.filter_error_messages = vec!["*ignored*".into()];
    store.put_project(project).unwrap();
    let processor = Processor::new(store.clone(), ProcessorConfig::default()).unwrap();
    let local = error_event(1, "E", "x", json!({"user": {"ip_address": "{{auto}}"}}));
    let mut local_rec = record(local);
    local_rec.client_addr = Some("127.0.0.1".parse().unwrap());
    let ignored = record(error_event(2, "E", "this is ignored", json!({})));
    let broken = record(b"{not json".to_vec());
    let mut report = record(
        serde_json::to_vec(&json!({"discarded_events": [{"reason": "queue_overflow", "category": "error", "quantity": 3}]}))
            .unwrap(),
    );
    report.item_type = "client_report".into();
    let mut attachment = record(b"binary".to_vec());
    attachment.item_type = "attachment".into();
    attachment.payload = Bytes::from_static(b"\x00\x01");
    let attachment_event = uuid::Uuid::new_v4();
    attachment.event_id = Some(attachment_event);
    let stats = processor
        .process_and_commit(&[local_rec, ignored, broken, report, attachment])
        .unwrap();
    // The client report is skipped; the attachment is kept under its event.
    assert_eq!(
        (stats.filtered, stats.invalid, stats.accepted, stats.skipped),
        (2, 1, 0, 1)
    );
    let stored = storage::attachments::list(&store, 1, &attachment_event).unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].size, 2);
    let hour = keys::hour_start(now_ms());
    let get = |o, c, r: &str| {
        store
            .db()
            .get_cf(&store.cf(cf::OUTCOMES), keys::outcome(1, hour, o, c, r))
            .unwrap()
            .map(|v| decode_i64(&v))
    };
    assert_eq!(
        get(outcome::FILTERED, category::ERROR, "localhost"),
        Some(1)
    );
    assert_eq!(
        get(outcome::FILTERED, category::ERROR, "error-message"),
        Some(1)
    );
    assert_eq!(
        get(outcome::INVALID, category::ERROR, "invalid_json"),
        Some(1)
    );
    assert_eq!(
        get(outcome::CLIENT_DISCARD, category::ERROR, "queue_overflow"),
        Some(3)
    );
    assert_eq!(count_cf(&store, cf::EVENTS), 0);
}

/// Items of products osprey keeps no data for (check-ins, logs, profiles, …) are
/// answered 200 by ingest like Relay; the processor must count each drop as Relay does
/// (outcome `invalid`, reason `feature_disabled`, the item's category and item count), not
/// lose it without a trace. An unknown item type has no category and no outcome.
#[test]
fn items_of_unsupported_products_become_feature_disabled_outcomes() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let processor = Processor::new(store.clone(), ProcessorConfig::default()).unwrap();
    let received_ms = now_ms();
    let item = |ty: &str, header: &str, payload: &[u8]| {
        let mut r = record(payload.to_vec());
        r.received_ms = received_ms;
        r.item_type = ty.into();
        r.item_header = Bytes::from(header.to_owned());
        r
    };
    let records = vec![
        item(
            "check_in",
            r#"{"type":"check_in"}"#,
            br#"{"check_in_id":"83a7c03ed0a04e1b97e2e3b18d38f244","monitor_slug":"job","status":"ok"}"#,
        ),
        item(
            "log",
            r#"{"type":"log","item_count":3,"content_type":"application/vnd.sentry.items.log+json"}"#,
            br#"{"items":[{},{},{}]}"#,
        ),
        item(
            "profile",
            r#"{"type":"profile"}"#,
            br#"{"version":"1","profile":{"samples":[]}}"#,
        ),
        // Browsers' NEL reports (ingest's `/api/{id}/nel/`), which Relay turns into logs.
        item("nel", r#"{"type":"nel","item_count":2}"#, b"[{},{}]"),
        item("some_future_item", r#"{"type":"some_future_item"}"#, b"{}"),
    ];
    let stats = processor.process_and_commit(&records).unwrap();
    assert_eq!(
        (stats.accepted, stats.invalid, stats.skipped),
        (0, 0, 5),
        "{stats:?}"
    );
    let hour = keys::hour_start(received_ms);
    let get = |c: u8| {
        store
            .db()
            .get_cf(
                &store.cf(cf::OUTCOMES),
                keys::outcome(1, hour, outcome::INVALID, c, "feature_disabled"),
            )
            .unwrap()
            .map(|v| decode_i64(&v))
    };
    assert_eq!(get(category::from_name("monitor")), Some(1));
    assert_eq!(get(category::from_name("log_item")), Some(3 + 2));
    assert_eq!(get(category::from_name("profile")), Some(1));
    // Three categories, nothing for the unknown type.
    assert_eq!(count_cf(&store, cf::OUTCOMES), 3);
    assert_eq!(count_cf(&store, cf::EVENTS), 0);
}

/// Release health items are kept (`processor::sessions`): accepted ones are outcome
/// `accepted`, category `session`; a session without a release is `invalid`
/// (`missing_release`), as Relay drops it.
#[test]
fn session_items_are_folded_with_outcomes() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let processor = Processor::new(store.clone(), ProcessorConfig::default()).unwrap();
    let received_ms = now_ms();
    let started = chrono::DateTime::from_timestamp_millis(received_ms as i64 - 1000)
        .unwrap()
        .to_rfc3339();
    let item = |ty: &str, payload: Value| {
        let mut r = record(serde_json::to_vec(&payload).unwrap());
        r.received_ms = received_ms;
        r.item_type = ty.into();
        r.item_header = Bytes::from(format!("{{\"type\":\"{ty}\"}}"));
        r
    };
    let records = vec![
        item(
            "session",
            json!({"sid": "7c7b6585-5e6c-4fd6-9a34-3c1e0d9b8b6a", "init": true, "started": started,
                   "status": "crashed", "attrs": {"release": "app@1"}}),
        ),
        item(
            "sessions",
            json!({"aggregates": [{"started": started, "exited": 2}], "attrs": {"release": "app@1"}}),
        ),
        item(
            "session",
            json!({"sid": "8c7b6585-5e6c-4fd6-9a34-3c1e0d9b8b6a", "started": started, "status": "exited"}),
        ),
    ];
    let stats = processor.process_and_commit(&records).unwrap();
    assert_eq!(stats.invalid, 1, "{stats:?}");
    let hour = keys::hour_start(received_ms);
    let get = |o: u8, reason: &str| {
        store
            .db()
            .get_cf(
                &store.cf(cf::OUTCOMES),
                keys::outcome(1, hour, o, category::SESSION, reason),
            )
            .unwrap()
            .map(|v| decode_i64(&v))
    };
    assert_eq!(get(outcome::ACCEPTED, ""), Some(2));
    assert_eq!(get(outcome::INVALID, "missing_release"), Some(1));
    let started_hour = keys::hour_start(received_ms - 1000);
    let sessions = |metric: u8| {
        counter(
            &store,
            &storage::sessions::counter_key(1, started_hour, "app@1", "", metric),
        )
    };
    assert_eq!(sessions(storage::sessions::metric::STARTED), 3);
    assert_eq!(sessions(storage::sessions::metric::CRASHED), 1);
    assert_eq!(sessions(storage::sessions::metric::ERRORED), 1);
}

#[test]
fn transactions_are_stored_and_indexed_by_trace() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let processor = Processor::new(store.clone(), ProcessorConfig::default()).unwrap();
    let now = now_ms() as f64 / 1000.0;
    let trace = "4c79f60c11214eb38604f4ae0781bfb2";
    let tx = json!({
        "type": "transaction",
        "event_id": Uuid::from_u128(5).simple().to_string(),
        "transaction": "/checkout",
        "start_timestamp": now - 0.25,
        "timestamp": now,
        "contexts": {"trace": {"trace_id": trace, "span_id": "fa90fdead5f74052", "op": "http.server"}},
        "spans": [{"span_id": "aa90fdead5f74052", "trace_id": trace, "start_timestamp": now - 0.2, "timestamp": now - 0.1, "op": "db"}],
    });
    let mut rec = record(serde_json::to_vec(&tx).unwrap());
    rec.item_type = "transaction".into();
    let err = record(error_event(
        6,
        "E",
        "in trace",
        json!({"contexts": {"trace": {"trace_id": trace, "span_id": "ba90fdead5f74052"}}}),
    ));
    let stats = processor.process_and_commit(&[rec, err]).unwrap();
    assert_eq!(
        (stats.accepted, stats.transactions, stats.issues_created),
        (2, 1, 1)
    );
    let stored = records::load_event(&store, 1, &Uuid::from_u128(5))
        .unwrap()
        .unwrap();
    assert_eq!(stored.issue_id, None);
    assert_eq!(stored.event["spans"].as_array().unwrap().len(), 1);
    let trace_id = Uuid::try_parse(trace).unwrap();
    let prefix: Vec<u8> = [&[keys::index::TRACE][..], trace_id.as_bytes()].concat();
    let in_trace = store
        .db()
        .prefix_iterator_cf(&store.cf(cf::INDEX), &prefix)
        .filter(|i| i.as_ref().unwrap().0.starts_with(&prefix))
        .count();
    assert_eq!(in_trace, 2);
}

#[test]
fn embedded_thread_processes_and_stops() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let log = EmbeddedLog::open(&store, EmbeddedLogOptions::default()).unwrap();
    let processor = Arc::new(Processor::new(store.clone(), ProcessorConfig::default()).unwrap());
    let shutdown = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let handle = Arc::clone(&processor)
        .spawn_embedded(Arc::clone(&log), Arc::clone(&shutdown))
        .unwrap();
    append_all(
        &log,
        (0..20u128)
            .map(|i| record(error_event(i + 1, "E", "x", json!({}))))
            .collect(),
    );
    let mut done = false;
    for _ in 0..200 {
        if storage::consumer_offset(&store, storage::EMBEDDED_CONSUMER).unwrap() == 20 {
            done = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(25));
    }
    shutdown.store(true, std::sync::atomic::Ordering::Release);
    handle.join().unwrap();
    assert!(done, "processor thread did not consume the log");
    assert_eq!(log.backlog_bytes(), 0);
    assert_eq!(times_seen(&store, all_issues(&store)[0].id), 20);
}

/// A Python SDK error event as sentry-python 2.x sends it (trimmed to what matters).
fn python_sdk_error(
    id: u128,
    function: &str,
    line: u64,
    value: &str,
    fingerprint: Option<Value>,
) -> Vec<u8> {
    let mut ev = json!({
        "event_id": Uuid::from_u128(id).simple().to_string(),
        "level": "error",
        "platform": "python",
        "timestamp": "2026-01-01T00:00:00.000000Z",
        "server_name": "host-1",
        "environment": "production",
        "sdk": {"name": "sentry.python", "version": "2.19.0"},
        "contexts": {"runtime": {"name": "CPython", "version": "3.12.1"}, "trace": {"trace_id": "4c79f60c11214eb38604f4ae0781bfb2", "span_id": "fa90fdead5f74052", "parent_span_id": null}},
        "exception": {"values": [{
            "type": "ZeroDivisionError",
            "value": value,
            "module": null,
            "mechanism": {"type": "generic", "handled": true},
            "stacktrace": {"frames": [
                {"filename": "app.py", "abs_path": "/srv/app.py", "function": "<module>", "module": "__main__", "lineno": 30, "context_line": "    main()", "in_app": true},
                {"filename": "app.py", "abs_path": "/srv/app.py", "function": function, "module": "__main__", "lineno": line, "context_line": "    return 1 / 0", "in_app": true, "vars": {"password": "hunter2"}},
            ]},
        }]},
    });
    if let Some(fp) = fingerprint {
        ev["fingerprint"] = fp;
    }
    // The SDK's clock is right; the event is "now" for the processor.
    ev["timestamp"] = json!(now_ms() as f64 / 1000.0);
    serde_json::to_vec(&ev).unwrap()
}

#[test]
fn python_sdk_scenarios_group_like_sentry() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let processor = Processor::new(store.clone(), ProcessorConfig::default()).unwrap();
    let mut recs = Vec::new();
    // The same exception raised 5 times from one code path.
    for i in 0..5 {
        recs.push(record(python_sdk_error(
            100 + i,
            "divide",
            12,
            "division by zero",
            None,
        )));
    }
    // The same exception type from another function.
    recs.push(record(python_sdk_error(
        200,
        "other_divide",
        20,
        "division by zero",
        None,
    )));
    // capture_message with varying numbers: one issue.
    for n in [3, 17, 42] {
        let msg = json!({"event_id": Uuid::from_u128(300 + n).simple().to_string(), "level": "info", "platform": "python",
            "message": format!("Processed {n} items"), "timestamp": now_ms() as f64 / 1000.0});
        recs.push(record(serde_json::to_vec(&msg).unwrap()));
    }
    // A custom fingerprint: its own issue, even from the first code path.
    recs.push(record(python_sdk_error(
        400,
        "divide",
        12,
        "division by zero",
        Some(json!(["my-group"])),
    )));
    recs.push(record(python_sdk_error(
        401,
        "other_divide",
        20,
        "division by zero",
        Some(json!(["my-group"])),
    )));
    let stats = processor.process_and_commit(&recs).unwrap();
    assert_eq!(stats.accepted, 11);
    let issues = all_issues(&store);
    let summary: Vec<(String, String, i64)> = issues
        .iter()
        .map(|i| (i.title.clone(), i.culprit.clone(), times_seen(&store, i.id)))
        .collect();
    assert_eq!(
        summary,
        vec![
            (
                "ZeroDivisionError: division by zero".into(),
                "__main__ in divide".into(),
                5
            ),
            (
                "ZeroDivisionError: division by zero".into(),
                "__main__ in other_divide".into(),
                1
            ),
            ("Processed 42 items".into(), "".into(), 3),
            (
                "ZeroDivisionError: division by zero".into(),
                "__main__ in other_divide".into(),
                2
            ),
        ],
        "{summary:#?}"
    );
    let stored = records::load_event(&store, 1, &Uuid::from_u128(100))
        .unwrap()
        .unwrap();
    let frame = &stored.event["exception"]["values"][0]["stacktrace"]["frames"][1];
    assert_eq!(frame["vars"]["password"], "[Filtered]");
    assert_eq!(issues[0].metadata.function.as_deref(), Some("divide"));
    assert_eq!(issues[0].metadata.filename.as_deref(), Some("app.py"));
}

/// Every key and value of the column families a batch writes (not the log or the metadata,
/// whose bootstrap keys are random per store).
fn dump_written(store: &Store) -> Vec<(&'static str, Vec<u8>, Vec<u8>)> {
    let mut out = Vec::new();
    for name in cf::ALL.iter().copied() {
        if name == cf::LOG || name == cf::META {
            continue;
        }
        for item in store
            .db()
            .iterator_cf(&store.cf(name), rocksdb::IteratorMode::Start)
        {
            let (k, v) = item.unwrap();
            out.push((name, k.to_vec(), v.to_vec()));
        }
    }
    out
}

/// The per-event work runs on several threads, issue assignment on one: a batch must write
/// exactly the same bytes whatever the thread count — same issue ids in the same order,
/// same counters, duplicates and invalid records counted the same.
#[test]
fn parallel_preparation_writes_what_one_thread_writes() {
    let received = now_ms();
    let now = received as f64 / 1000.0;
    let mut recs = Vec::new();
    for i in 0..400u128 {
        let payload = match i % 8 {
            0 => error_event(
                i + 1,
                "KeyError",
                &format!("missing {i}"),
                json!({"user": {"id": format!("u{}", i % 7)}, "tags": {"shard": format!("s{}", i % 3)}, "release": "app@1"}),
            ),
            1 => error_event(i + 1, "ValueError", "bad", json!({"environment": "prod"})),
            2 => serde_json::to_vec(&json!({
                "type": "transaction",
                "event_id": Uuid::from_u128(i + 1).simple().to_string(),
                "transaction": format!("/route/{}", i % 5),
                "start_timestamp": now - 0.25,
                "timestamp": now,
                "contexts": {"trace": {"trace_id": "4c79f60c11214eb38604f4ae0781bfb2", "span_id": "fa90fdead5f74052", "op": "http.server"}},
            }))
            .unwrap(),
            3 => b"{not json".to_vec(),
            // Resends of earlier ids: duplicates, within the batch or of an earlier one.
            4 => error_event(i - 3, "KeyError", "resent", json!({})),
            5 => error_event(
                i + 1,
                &format!("Error{}", i % 11),
                "secret",
                json!({"request": {"headers": {"Authorization": "Bearer abc"}}, "user": {"email": format!("{}@example.com", i % 4)}}),
            ),
            6 => error_event(i + 1, "TypeError", "x", json!({"release": "app@2"})),
            _ => serde_json::to_vec(&json!({"event_id": Uuid::from_u128(i + 1).simple().to_string(), "message": format!("order {i} failed")})).unwrap(),
        };
        let mut rec = event_record(1, received, &payload, Some("203.0.113.7".parse().unwrap()));
        if i % 8 == 2 {
            rec.item_type = "transaction".into();
        }
        recs.push(rec);
    }
    recs.push(event_record(
        999,
        received,
        &error_event(9999, "E", "x", json!({})),
        None,
    ));
    let mut dumps = Vec::new();
    let mut stats = Vec::new();
    for threads in [1, 3] {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let processor = with_threads(&store, threads);
        // Two batches; the resends (every 8th record) repeat ids of the same or an earlier
        // batch. The first batch is two chunks of the parallel stage.
        let first = processor.process_and_commit(&recs[..300]).unwrap();
        let second = processor.process_and_commit(&recs[300..]).unwrap();
        stats.push([first, second]);
        dumps.push(dump_written(&store));
    }
    assert_eq!(stats[0], stats[1]);
    let duplicates = stats[0][0].duplicates + stats[0][1].duplicates;
    let invalid = stats[0][0].invalid + stats[0][1].invalid;
    assert!(
        duplicates >= 40,
        "resends must be counted as duplicates: {stats:?}"
    );
    assert!(
        invalid >= 50,
        "broken JSON must be counted as invalid: {stats:?}"
    );
    assert!(dumps[0].len() > 1000, "{} entries written", dumps[0].len());
    assert_eq!(dumps[0].len(), dumps[1].len());
    for (one, three) in dumps[0].iter().zip(&dumps[1]) {
        assert!(
            one == three,
            "column family {} differs at key {:?}",
            one.0,
            one.1
        );
    }
}

/// @sentry/node streams spans through a per-trace buffer that flushes every 5 s and every
/// 1000 spans: the children of a long or large segment come in other `span` items than the
/// one holding their segment span, sent concurrently, so logged before or after it. They must
/// end up in the segment's transaction in every order, in one batch or across batches.
#[test]
fn streamed_children_sent_apart_from_their_segment_join_its_transaction() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let processor = Processor::new(store.clone(), ProcessorConfig::default()).unwrap();
    let now = now_ms() as f64 / 1000.0;
    let span_item = |trace: &str, segment: &str, children: &[&str], with_segment: bool| {
        let mut items: Vec<serde_json::Value> = children
            .iter()
            .map(|id| {
                json!({"name": format!("child {id}"), "span_id": id, "trace_id": trace,
                       "parent_span_id": segment, "start_timestamp": now - 0.5,
                       "end_timestamp": now - 0.4, "is_segment": false, "status": "ok",
                       "attributes": {"sentry.op": {"value": "db", "type": "string"},
                                      "sentry.segment.id": {"value": segment, "type": "string"}}})
            })
            .collect();
        if with_segment {
            items.push(
                json!({"name": "GET /long", "span_id": segment, "trace_id": trace,
                "start_timestamp": now - 1.0, "end_timestamp": now, "is_segment": true,
                "status": "ok",
                "attributes": {"sentry.op": {"value": "http.server", "type": "string"},
                               "sentry.segment.id": {"value": segment, "type": "string"}}}),
            );
        }
        let mut r = record(serde_json::to_vec(&json!({"version": 2, "items": items})).unwrap());
        r.item_type = "span".into();
        r.item_header = Bytes::from_static(
            b"{\"type\":\"span\",\"content_type\":\"application/vnd.sentry.items.span.v2+json\"}",
        );
        r
    };
    let children_of = |trace: &str, segment: &str| -> Vec<String> {
        let id = processor::spans::segment_event_id(trace, segment);
        let stored = records::load_event(&store, 1, &id)
            .unwrap()
            .unwrap_or_else(|| panic!("no transaction for segment {segment}"));
        let mut ids: Vec<String> = stored.event["spans"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["span_id"].as_str().unwrap().to_owned())
            .collect();
        ids.sort();
        ids
    };

    // Children in one batch, their segment (with one more child) in a later batch.
    let trace_a = "4c79f60c11214eb38604f4ae0781bfb2";
    let seg_a = "aaaaaaaaaaaaaaa1";
    processor
        .process_and_commit(&[span_item(
            trace_a,
            seg_a,
            &["1000000000000001", "1000000000000002"],
            false,
        )])
        .unwrap();
    processor
        .process_and_commit(&[span_item(trace_a, seg_a, &["1000000000000003"], true)])
        .unwrap();
    assert_eq!(
        children_of(trace_a, seg_a),
        ["1000000000000001", "1000000000000002", "1000000000000003"]
    );

    // Both items in one batch.
    let trace_b = "5d79f60c11214eb38604f4ae0781bfb2";
    let seg_b = "bbbbbbbbbbbbbbb1";
    processor
        .process_and_commit(&[
            span_item(trace_b, seg_b, &["2000000000000001"], false),
            span_item(trace_b, seg_b, &[], true),
        ])
        .unwrap();
    assert_eq!(children_of(trace_b, seg_b), ["2000000000000001"]);

    // The SDK sends its buffered items concurrently: the segment's item can be logged first.
    // Children after their stored segment, in a later batch and in the same batch.
    let trace_c = "6e79f60c11214eb38604f4ae0781bfb2";
    let seg_c = "ccccccccccccccc1";
    processor
        .process_and_commit(&[span_item(trace_c, seg_c, &["3000000000000001"], true)])
        .unwrap();
    processor
        .process_and_commit(&[span_item(
            trace_c,
            seg_c,
            &["3000000000000002", "3000000000000003"],
            false,
        )])
        .unwrap();
    assert_eq!(
        children_of(trace_c, seg_c),
        ["3000000000000001", "3000000000000002", "3000000000000003"]
    );
    let trace_d = "7f79f60c11214eb38604f4ae0781bfb2";
    let seg_d = "ddddddddddddddd1";
    processor
        .process_and_commit(&[
            span_item(trace_d, seg_d, &[], true),
            span_item(trace_d, seg_d, &["4000000000000001"], false),
        ])
        .unwrap();
    assert_eq!(children_of(trace_d, seg_d), ["4000000000000001"]);

    // Nothing stays pending once the segments arrived.
    let pending = store
        .db()
        .iterator_cf(&store.cf(cf::INDEX), rocksdb::IteratorMode::Start)
        .filter(|kv| kv.as_ref().unwrap().0[0] == keys::index::PENDING_SPAN)
        .count();
    assert_eq!(pending, 0);
}

/// The store half of dedup runs in the parallel stage: events stored by an earlier batch are
/// duplicates whatever the thread count, and they are duplicates before any inbound filter
/// (a filter added after they were stored does not make their resends "filtered").
#[test]
fn resends_of_stored_events_are_duplicates_before_filters_with_any_thread_count() {
    for threads in [1, 3] {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let processor = with_threads(&store, threads);
        // More records than one chunk of the parallel stage.
        let recs: Vec<LogRecord> = (0..70u128)
            .map(|i| {
                record(error_event(
                    i + 1,
                    "KeyError",
                    &format!("k{}", i % 4),
                    json!({}),
                ))
            })
            .collect();
        let first = processor.process_and_commit(&recs).unwrap();
        assert_eq!(
            (first.accepted, first.duplicates),
            (70, 0),
            "{threads} threads"
        );
        let events_before = count_cf(&store, cf::EVENTS);

        let mut project = (*store.meta().project(1).unwrap()).clone();
        project.settings.filter_error_messages = vec!["*k*".into()];
        store.put_project(project).unwrap();
        let mut again = recs.clone();
        again.push(record(error_event(500, "KeyError", "k new", json!({}))));
        let second = processor.process_and_commit(&again).unwrap();
        assert_eq!(
            (second.accepted, second.duplicates, second.filtered),
            (0, 70, 1),
            "{threads} threads"
        );
        assert_eq!(count_cf(&store, cf::EVENTS), events_before);
        let issues = all_issues(&store);
        let seen: i64 = issues.iter().map(|i| times_seen(&store, i.id)).sum();
        assert_eq!(seen, 70, "{threads} threads");
    }
}

/// The processor keeps the issue records it wrote for later batches: the copy must follow an
/// API status change made in between, and must not keep what a batch that was never
/// committed did to it.
#[test]
fn issue_records_kept_across_batches_follow_api_changes_and_skip_uncommitted_batches() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let processor = Processor::new(store.clone(), ProcessorConfig::default()).unwrap();
    let event = |id: u128, extra: Value| record(error_event(id, "KeyError", "gone", extra));
    processor
        .process_and_commit(&[event(1, json!({}))])
        .unwrap();
    let stats = processor
        .process_and_commit(&[event(2, json!({}))])
        .unwrap();
    assert_eq!(stats.issues_created, 0);
    let issue = all_issues(&store)[0].clone();
    assert_eq!(times_seen(&store, issue.id), 2);

    // Archived through the API between two batches: the next event keeps it archived (an
    // out-of-date copy would write back the unresolved record).
    records::update_issue(&store, issue.id, |i| {
        i.status = IssueStatus::Ignored;
        i.substatus = None;
    })
    .unwrap();
    processor
        .process_and_commit(&[event(3, json!({}))])
        .unwrap();
    let stored = all_issues(&store)[0].clone();
    assert_eq!(stored.status, IssueStatus::Ignored);
    assert_eq!(stored.substatus, None);

    // A batch processed but never committed (a failed write, a Kafka group commit that did
    // not go through) changed the record in memory only.
    let dropped = processor
        .process_batch(&[event(4, json!({"release": "9.9"}))])
        .unwrap();
    drop(dropped);
    processor
        .process_and_commit(&[event(5, json!({}))])
        .unwrap();
    let stored = all_issues(&store)[0].clone();
    assert_eq!(stored.last_release, None);
    assert_eq!(stored.status, IssueStatus::Ignored);
    assert_eq!(times_seen(&store, issue.id), 4);
    assert!(records::load_event(&store, 1, &Uuid::from_u128(4))
        .unwrap()
        .is_none());

    // Equal to what a processor without kept records writes from the same events.
    let fresh_dir = tempfile::tempdir().unwrap();
    let fresh_store = open(fresh_dir.path());
    for (n, id) in [1u128, 2, 3, 5].into_iter().enumerate() {
        let fresh = Processor::new(fresh_store.clone(), ProcessorConfig::default()).unwrap();
        fresh.process_and_commit(&[event(id, json!({}))]).unwrap();
        if n == 1 {
            let id = all_issues(&fresh_store)[0].id;
            records::update_issue(&fresh_store, id, |i| {
                i.status = IssueStatus::Ignored;
                i.substatus = None;
            })
            .unwrap();
        }
    }
    let mut kept = all_issues(&store)[0].clone();
    let mut fresh = all_issues(&fresh_store)[0].clone();
    for r in [&mut kept, &mut fresh] {
        // Event times come from the clock of each event's payload.
        (r.first_seen_ms, r.last_seen_ms, r.active_at_ms) = (0, 0, 0);
    }
    assert_eq!(kept.to_bytes(), fresh.to_bytes());
}
