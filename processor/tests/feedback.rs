//! User feedback through the processor: `user_report` and `feedback` items are stored per
//! project, linked to their event's issue whether they come before or after the event, and
//! counted in the outcomes (accepted, or invalid with Relay's / Sentry's reason).

use processor::pipeline::{category, event_record, item_record, outcome};
use processor::{Processor, ProcessorConfig};
use serde_json::{json, Value};
use storage::feedback::{self, FeedbackKind};
use storage::{cf, decode_i64, keys, LogRecord, Store, StoreOptions};
use uuid::Uuid;

fn open(dir: &std::path::Path) -> Store {
    let store = Store::open(dir, &StoreOptions::default()).unwrap();
    store.bootstrap(None, None).unwrap();
    store
}

fn error_event(id: &Uuid, value: &str) -> LogRecord {
    let ev = json!({
        "event_id": id.simple().to_string(),
        "platform": "python",
        "timestamp": storage::now_ms() as f64 / 1000.0,
        "environment": "production",
        "exception": {"values": [{"type": "KeyError", "value": value, "stacktrace": {"frames": [
            {"module": "shop", "function": "checkout", "filename": "shop.py", "lineno": 3, "in_app": true}
        ]}}]},
    });
    event_record(1, storage::now_ms(), ev.to_string().as_bytes(), None)
}

fn item(ty: &str, payload: Value, received_ms: u64) -> LogRecord {
    item_record(1, received_ms, ty, payload.to_string().as_bytes())
}

fn outcome_count(store: &Store, at_ms: u64, outcome_id: u8, reason: &str) -> i64 {
    store
        .db()
        .get_cf(
            &store.cf(cf::OUTCOMES),
            keys::outcome(
                1,
                keys::hour_start(at_ms),
                outcome_id,
                category::from_name("feedback"),
                reason,
            ),
        )
        .unwrap()
        .map(|v| decode_i64(&v))
        .unwrap_or(0)
}

fn all_feedback(store: &Store) -> Vec<feedback::FeedbackRecord> {
    feedback::list_project(store, 1, 0, 100, 1000, |_| Ok(true))
        .unwrap()
        .0
}

#[test]
fn feedback_links_to_its_issue_before_or_after_the_event() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let processor = Processor::new(store.clone(), ProcessorConfig::default()).unwrap();
    let now = storage::now_ms();
    let early_event = Uuid::from_u128(0xe1);
    let late_event = Uuid::from_u128(0xe2);

    // 1. A user report whose event is not there yet.
    processor
        .process_and_commit(&[item(
            "user_report",
            json!({"event_id": early_event.simple().to_string(), "name": "Ann",
                   "email": "ann@example.com", "comments": "Lost my cart"}),
            now,
        )])
        .unwrap();
    let stored = all_feedback(&store);
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].issue_id, None);
    assert_eq!(feedback::resolve_issue(&store, &stored[0]).unwrap(), None);

    // 2. The event arrives: the report now resolves to the event's issue.
    processor
        .process_and_commit(&[error_event(&early_event, "cart")])
        .unwrap();
    let issue = storage::records::load_event(&store, 1, &early_event)
        .unwrap()
        .unwrap()
        .issue_id
        .unwrap();
    assert_eq!(
        feedback::resolve_issue(&store, &all_feedback(&store)[0]).unwrap(),
        Some(issue)
    );

    // 3. An event first, then a new-style feedback about it: linked when stored. The same
    //    batch also carries a report for an event processed earlier in that batch.
    let same_batch_event = Uuid::from_u128(0xe3);
    processor
        .process_and_commit(&[error_event(&late_event, "cart")])
        .unwrap();
    processor
        .process_and_commit(&[
            item(
                "feedback",
                json!({"event_id": Uuid::from_u128(0xf1).simple().to_string(), "type": "feedback",
                       "contexts": {"feedback": {"message": "Pay button does nothing",
                           "contact_email": "bo@example.com",
                           "associated_event_id": late_event.simple().to_string()}}}),
                now + 1,
            ),
            error_event(&same_batch_event, "cart"),
            item(
                "user_report",
                json!({"event_id": same_batch_event.simple().to_string(), "comments": "again"}),
                now + 2,
            ),
        ])
        .unwrap();
    let stored = all_feedback(&store);
    assert_eq!(stored.len(), 3, "{stored:?}");
    let by_comment = |c: &str| stored.iter().find(|r| r.comments == c).unwrap().clone();
    let fb = by_comment("Pay button does nothing");
    assert_eq!(fb.kind, FeedbackKind::Feedback);
    assert_eq!(fb.issue_id, Some(issue), "same fingerprint, same issue");
    assert_eq!(fb.email, "bo@example.com");
    assert_eq!(
        feedback::resolve_issue(&store, &by_comment("again")).unwrap(),
        Some(issue)
    );
    // Newest first.
    assert_eq!(stored[0].comments, "again");

    // Outcomes: three accepted in category feedback.
    assert_eq!(outcome_count(&store, now, outcome::ACCEPTED, ""), 3);
}

#[test]
fn invalid_feedback_is_dropped_with_an_outcome() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let processor = Processor::new(store.clone(), ProcessorConfig::default()).unwrap();
    let now = storage::now_ms();
    let id = Uuid::from_u128(9).simple().to_string();
    let records = vec![
        item("user_report", json!({"comments": "no event id"}), now),
        item(
            "user_report",
            json!({"event_id": id, "comments": "   "}),
            now,
        ),
        item(
            "user_report",
            json!({"event_id": id, "comments": "x", "email": "not-an-email"}),
            now,
        ),
        item("feedback", json!({"contexts": {"feedback": {}}}), now),
        item("feedback", json!({"message": "no context"}), now),
    ];
    let stats = processor.process_and_commit(&records).unwrap();
    assert_eq!(stats.invalid, 5, "{stats:?}");
    assert!(all_feedback(&store).is_empty());
    for (reason, n) in [
        ("invalid_json", 1),
        ("Empty Feedback Message", 2),
        ("Invalid Email", 1),
        ("Missing Feedback Context", 1),
    ] {
        assert_eq!(
            outcome_count(&store, now, outcome::INVALID, reason),
            n,
            "{reason}"
        );
    }
    assert_eq!(outcome_count(&store, now, outcome::ACCEPTED, ""), 0);
}
