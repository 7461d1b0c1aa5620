//! User feedback items: `user_report` (legacy: `{event_id, name, email, comments}`) and
//! `feedback` (an event of type `feedback` whose `contexts.feedback` holds the message).
//!
//! Both become a [`storage::feedback::FeedbackRecord`] of their project, linked to the issue of
//! the event they are about when that event is already stored; a feedback that comes before
//! its event is linked when read (storage's `resolve_issue`), as Sentry links late reports.
//!
//! Validation follows Relay and Sentry: a payload that is not the expected JSON is dropped
//! with outcome `invalid`, reason `invalid_json` (Relay); a user report's fields are checked
//! by Sentry's `validate_user_report` rules (empty or oversized message, oversized name or
//! email, bad email) and refused when its event is over 30 minutes old or when it would
//! replace a report older than 5 minutes. A feedback event needs a non-empty
//! `contexts.feedback.message` of at most 4096 characters; its name, email and URL are cut to
//! their bounds rather than refused (Sentry does not refuse them either).
//!
//! What is stored is scrubbed with the project's data-scrubbing settings, as its events are
//! (`Scrubber::scrub_feedback`).
//!
//! osprey does not make each feedback event an issue of its own, as Sentry's issue platform
//! does: osprey's issues are groups of errors, and a per-feedback issue would crowd the issue
//! list and its alerts. Feedback is listed per project and per issue instead.

use serde_json::Value;
use storage::feedback::{self, FeedbackKind, FeedbackRecord, Refusal};
use storage::{LogRecord, Store, WriteBatch};
use uuid::Uuid;

/// Largest `user` object kept with a feedback event, as JSON bytes (a bigger one is dropped).
const MAX_USER_JSON: usize = 4096;

/// Stores one `user_report` or `feedback` item into `batch`. `Ok(Err(refusal))` is a drop
/// with outcome `invalid` and the refusal's reason; `Err` is a storage failure.
pub fn store_item(
    store: &Store,
    batch: &mut WriteBatch,
    record: &LogRecord,
) -> storage::Result<Result<(), Refusal>> {
    let Some(project) = store.meta().project(record.project_id) else {
        return Ok(Err(Refusal::Invalid("project_id")));
    };
    let prepared = match record.item_type.as_str() {
        "user_report" => user_report(store, record)?,
        _ => feedback_event(store, record)?,
    };
    let mut feedback = match prepared {
        Ok(f) => f,
        Err(refusal) => return Ok(Err(refusal)),
    };
    crate::scrub::Scrubber::from_settings(&project.settings).scrub_feedback(&mut feedback);
    feedback::put(store, batch, &feedback)?;
    Ok(Ok(()))
}

fn user_report(
    store: &Store,
    record: &LogRecord,
) -> storage::Result<Result<FeedbackRecord, Refusal>> {
    let mut report = match feedback::parse_user_report(&record.payload) {
        Ok(r) => r,
        Err(reason) => return Ok(Err(Refusal::Invalid(reason))),
    };
    if let Err(reason) = feedback::validate_user_report(&mut report) {
        return Ok(Err(Refusal::Invalid(reason)));
    }
    feedback::user_report_record(store, record.project_id, &report, record.received_ms)
}

/// A string field, cut to `max` characters; `None` when absent, empty or not a string.
fn bounded(v: Option<&Value>, max: usize) -> Option<String> {
    let s = v?.as_str()?.trim();
    (!s.is_empty()).then(|| s.chars().take(max).collect())
}

fn feedback_event(
    store: &Store,
    record: &LogRecord,
) -> storage::Result<Result<FeedbackRecord, Refusal>> {
    let Ok(event) = serde_json::from_slice::<Value>(&record.payload) else {
        return Ok(Err(Refusal::Invalid("invalid_json")));
    };
    if !event.is_object() {
        return Ok(Err(Refusal::Invalid("invalid_json")));
    }
    let Some(context) = event
        .pointer("/contexts/feedback")
        .filter(|c| c.is_object())
    else {
        return Ok(Err(Refusal::Invalid("Missing Feedback Context")));
    };
    let message = context
        .get("message")
        .and_then(Value::as_str)
        .map(str::trim)
        .unwrap_or("");
    if message.is_empty() {
        return Ok(Err(Refusal::Invalid("Empty Feedback Message")));
    }
    if message.chars().count() > feedback::MAX_COMMENTS {
        return Ok(Err(Refusal::Invalid("Message Too Large")));
    }
    // Its own id: the payload's, else the envelope's; else one derived from the record, so
    // a replay of the same log record stores the same feedback again, not a second one.
    let id = event
        .get("event_id")
        .and_then(Value::as_str)
        .and_then(|s| Uuid::try_parse(s).ok())
        .or(record.event_id)
        .unwrap_or_else(|| {
            let mut key = record.payload.to_vec();
            key.extend_from_slice(&record.received_ms.to_be_bytes());
            Uuid::from_u128(xxhash_rust::xxh3::xxh3_128(&key))
        });
    let associated = context
        .get("associated_event_id")
        .and_then(Value::as_str)
        .and_then(|s| Uuid::try_parse(s).ok());
    let user = event.get("user").filter(|u| u.is_object());
    let name = bounded(context.get("name"), feedback::MAX_NAME)
        .or_else(|| bounded(user.and_then(|u| u.get("name")), feedback::MAX_NAME))
        .or_else(|| bounded(user.and_then(|u| u.get("username")), feedback::MAX_NAME))
        .unwrap_or_default();
    let email = bounded(context.get("contact_email"), feedback::MAX_EMAIL)
        .or_else(|| bounded(user.and_then(|u| u.get("email")), feedback::MAX_EMAIL))
        .unwrap_or_default();
    let linked = match associated {
        Some(event_id) => storage::records::load_event(store, record.project_id, &event_id)?,
        None => None,
    };
    let environment = bounded(event.get("environment"), feedback::MAX_SHORT_FIELD).or_else(|| {
        linked
            .as_ref()
            .and_then(|e| bounded(e.event.get("environment"), feedback::MAX_SHORT_FIELD))
    });
    let user = user
        .filter(|u| serde_json::to_vec(u).is_ok_and(|b| b.len() <= MAX_USER_JSON))
        .cloned();
    Ok(Ok(FeedbackRecord {
        id: id.simple().to_string(),
        kind: FeedbackKind::Feedback,
        project_id: record.project_id,
        event_id: associated.map(|e| e.simple().to_string()),
        issue_id: linked.and_then(|e| e.issue_id),
        name,
        email,
        comments: message.to_owned(),
        url: bounded(context.get("url"), feedback::MAX_SHORT_FIELD)
            .or_else(|| bounded(event.pointer("/request/url"), feedback::MAX_SHORT_FIELD)),
        source: bounded(context.get("source"), feedback::MAX_SHORT_FIELD),
        environment,
        release: bounded(event.get("release"), feedback::MAX_SHORT_FIELD),
        user,
        received_ms: record.received_ms,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn item(ty: &str, payload: Value) -> LogRecord {
        crate::pipeline::item_record(1, 1_700_000_000_000, ty, payload.to_string().as_bytes())
    }

    #[test]
    fn feedback_events_are_validated_and_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), &storage::StoreOptions::default()).unwrap();
        store.bootstrap(None, None).unwrap();
        let assoc = "0123456789abcdef0123456789abcdef";
        let good = item(
            "feedback",
            json!({
                "event_id": "fedcba9876543210fedcba9876543210",
                "type": "feedback",
                "environment": "staging",
                "user": {"email": "from-user@example.com"},
                "contexts": {"feedback": {
                    "message": " Checkout is broken ",
                    "name": "x".repeat(500),
                    "url": "https://shop.example.com/cart",
                    "associated_event_id": assoc,
                }},
            }),
        );
        let rec = feedback_event(&store, &good).unwrap().unwrap();
        assert_eq!(rec.comments, "Checkout is broken");
        assert_eq!(rec.name.len(), feedback::MAX_NAME);
        assert_eq!(rec.email, "from-user@example.com");
        assert_eq!(rec.event_id.as_deref(), Some(assoc));
        assert_eq!(rec.id, "fedcba9876543210fedcba9876543210");
        assert_eq!(rec.environment.as_deref(), Some("staging"));
        assert_eq!(rec.issue_id, None);

        let refused = |payload: Value| feedback_event(&store, &item("feedback", payload)).unwrap();
        assert_eq!(
            refused(json!({"contexts": {}})),
            Err(Refusal::Invalid("Missing Feedback Context"))
        );
        assert_eq!(
            refused(json!({"contexts": {"feedback": {"message": "  "}}})),
            Err(Refusal::Invalid("Empty Feedback Message"))
        );
        assert_eq!(
            refused(json!({"contexts": {"feedback": {"message": "m".repeat(4097)}}})),
            Err(Refusal::Invalid("Message Too Large"))
        );
        assert_eq!(refused(json!([1])), Err(Refusal::Invalid("invalid_json")));

        // Without any id, the id is stable across a replay of the same record.
        let anon = item(
            "feedback",
            json!({"contexts": {"feedback": {"message": "hi"}}}),
        );
        let a = feedback_event(&store, &anon).unwrap().unwrap();
        let b = feedback_event(&store, &anon).unwrap().unwrap();
        assert_eq!(a.id, b.id);

        // Unknown projects are refused before anything is parsed.
        let mut batch = WriteBatch::default();
        let mut stray = good.clone();
        stray.project_id = 999;
        assert_eq!(
            store_item(&store, &mut batch, &stray).unwrap(),
            Err(Refusal::Invalid("project_id"))
        );
        assert_eq!(store_item(&store, &mut batch, &good).unwrap(), Ok(()));

        // What is stored is scrubbed with the project's rules (defaults: card numbers).
        let carded = item(
            "feedback",
            json!({
                "event_id": "abababababababababababababababab",
                "contexts": {"feedback": {"message": "charged twice on 4111 1111 1111 1111"}},
            }),
        );
        let mut batch = WriteBatch::default();
        assert_eq!(store_item(&store, &mut batch, &carded).unwrap(), Ok(()));
        store.write(batch, false).unwrap();
        let id = Uuid::try_parse("abababababababababababababababab").unwrap();
        let stored = feedback::get(&store, 1, &id).unwrap().unwrap();
        assert_eq!(stored.comments, "charged twice on [Filtered]");
    }
}
