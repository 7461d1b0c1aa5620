//! User feedback: Sentry's legacy user reports (`user_report` items, the
//! `POST /projects/{org}/{project}/user-feedback/` API) and the new feedback events
//! (`feedback` items), kept per project in [`cf::INDEX`].
//!
//! Two tables:
//! - [`keys::index::FEEDBACK`]: `f` + project id + feedback id (16 bytes) → the received time
//!   (BE u64, read by the retention filter) + the JSON [`FeedbackRecord`]. The id of a user
//!   report is the id of the event it is about (Sentry keeps one report per event and project:
//!   a second one replaces the first); the id of a feedback event is its own event id.
//! - [`keys::index::FEEDBACK_TIME`]: `q` + project id + received ms + feedback id → empty,
//!   so the newest feedback of a project is one reverse scan. When a report is replaced, the
//!   time entry of the old one is deleted; an entry whose record has another time is stale
//!   and skipped by [`list_project`] (two reports for one event in one processor batch).
//!
//! Both expire with retention. A feedback about an event carries the event's issue when the
//! event was stored before it ([`FeedbackRecord::issue_id`]); otherwise the reader resolves
//! the issue from the event when it reads the feedback ([`resolve_issue`]), so a feedback that
//! arrived before its event is linked as soon as the event is processed.

use rocksdb::{Direction, IteratorMode, WriteBatch};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{cf, keys, records, Result, StorageError, Store};

/// Longest name Sentry keeps (its `UserReport.name` column).
pub const MAX_NAME: usize = 128;
/// Longest email Sentry keeps (its `UserReport.email` column).
pub const MAX_EMAIL: usize = 75;
/// Longest comment / feedback message Sentry keeps (`feedback.message.max-size`).
pub const MAX_COMMENTS: usize = 4096;
/// Longest URL, source, environment or release kept with a feedback (longer ones are cut).
pub const MAX_SHORT_FIELD: usize = 512;

/// Which product a feedback came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FeedbackKind {
    /// A legacy user report (`user_report` item or the user-feedback API): about one event.
    UserReport,
    /// A new-style feedback event (`feedback` item, `type: feedback`), optionally about one
    /// event (`contexts.feedback.associated_event_id`).
    Feedback,
}

/// One stored feedback.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeedbackRecord {
    /// Its id (32 lowercase hex): see the module docs.
    pub id: String,
    /// Where it came from.
    pub kind: FeedbackKind,
    /// Project.
    pub project_id: u64,
    /// The event it is about (32 lowercase hex), if any.
    #[serde(default)]
    pub event_id: Option<String>,
    /// The issue of that event, when the event was stored before the feedback.
    #[serde(default)]
    pub issue_id: Option<u64>,
    /// The user's name ("" if not given).
    #[serde(default)]
    pub name: String,
    /// The user's email ("" if not given).
    #[serde(default)]
    pub email: String,
    /// What the user wrote.
    pub comments: String,
    /// The page the feedback was given on (feedback events).
    #[serde(default)]
    pub url: Option<String>,
    /// The SDK's name for the form that sent it (`widget`, `api`, …).
    #[serde(default)]
    pub source: Option<String>,
    /// Environment of the feedback event (or of the event it is about).
    #[serde(default)]
    pub environment: Option<String>,
    /// Release of the feedback event.
    #[serde(default)]
    pub release: Option<String>,
    /// The feedback event's `user` interface (scrubbed of nothing: it is what the user sent).
    #[serde(default)]
    pub user: Option<serde_json::Value>,
    /// When osprey received it (unix ms): Sentry's `dateCreated`.
    pub received_ms: u64,
}

/// Key of a feedback record.
pub fn record_key(project_id: u64, id: &Uuid) -> [u8; 25] {
    let mut key = [0u8; 25];
    key[0] = keys::index::FEEDBACK;
    key[1..9].copy_from_slice(&project_id.to_be_bytes());
    key[9..].copy_from_slice(id.as_bytes());
    key
}

/// Key of a feedback's entry in the project's time index.
pub fn time_key(project_id: u64, received_ms: u64, id: &Uuid) -> [u8; 33] {
    keys::index_by_time(keys::index::FEEDBACK_TIME, project_id, received_ms, id)
}

fn parse_id(record: &FeedbackRecord) -> Result<Uuid> {
    Uuid::try_parse(&record.id).map_err(|_| StorageError::Invalid("feedback id".into()))
}

fn decode(value: &[u8]) -> Result<FeedbackRecord> {
    let json = value.get(8..).ok_or_else(|| StorageError::Corrupt {
        what: "feedback",
        detail: "value shorter than its time".into(),
    })?;
    Ok(serde_json::from_slice(json)?)
}

/// One feedback by id.
pub fn get(store: &Store, project_id: u64, id: &Uuid) -> Result<Option<FeedbackRecord>> {
    let value = store
        .db()
        .get_pinned_cf(&store.cf(cf::INDEX), record_key(project_id, id))?;
    value.map(|v| decode(&v)).transpose()
}

/// Adds `record` to `batch`, replacing a stored feedback with the same id (its time entry is
/// deleted). Writing the same record twice (a replayed log record) writes the same keys.
pub fn put(store: &Store, batch: &mut WriteBatch, record: &FeedbackRecord) -> Result<()> {
    let id = parse_id(record)?;
    let index = store.cf(cf::INDEX);
    if let Some(old) = get(store, record.project_id, &id)? {
        if old.received_ms != record.received_ms {
            batch.delete_cf(&index, time_key(record.project_id, old.received_ms, &id));
        }
    }
    let mut value = Vec::with_capacity(256 + record.comments.len());
    value.extend_from_slice(&record.received_ms.to_be_bytes());
    serde_json::to_writer(&mut value, record)?;
    batch.put_cf(&index, record_key(record.project_id, &id), value);
    batch.put_cf(
        &index,
        time_key(record.project_id, record.received_ms, &id),
        [],
    );
    Ok(())
}

/// The issue a feedback belongs to: the one it was stored with, else the issue of the event
/// it is about if that event has been stored since (Sentry links late user reports too).
pub fn resolve_issue(store: &Store, record: &FeedbackRecord) -> Result<Option<u64>> {
    if record.issue_id.is_some() {
        return Ok(record.issue_id);
    }
    let Some(event_id) = record
        .event_id
        .as_deref()
        .and_then(|e| Uuid::try_parse(e).ok())
    else {
        return Ok(None);
    };
    Ok(records::load_event(store, record.project_id, &event_id)?.and_then(|e| e.issue_id))
}

/// Feedback of a project, newest first: those `keep` accepts, after skipping `offset` of
/// them, at most `limit`; looks at no more than `max_scan` time entries. Returns the page and
/// whether more matched after it.
pub fn list_project(
    store: &Store,
    project_id: u64,
    offset: usize,
    limit: usize,
    max_scan: usize,
    mut keep: impl FnMut(&FeedbackRecord) -> Result<bool>,
) -> Result<(Vec<FeedbackRecord>, bool)> {
    let index = store.cf(cf::INDEX);
    let upper = time_key(project_id, u64::MAX, &Uuid::max());
    let owner = keys::prefixed_id(keys::index::FEEDBACK_TIME, project_id);
    let iter = store
        .db()
        .iterator_cf(&index, IteratorMode::From(&upper, Direction::Reverse));
    let mut out = Vec::new();
    let mut matched = 0usize;
    for item in iter.take(max_scan) {
        let (key, _) = item?;
        if !key.starts_with(&owner) {
            break;
        }
        let (Some(ts), Some(id)) = (
            key.get(9..17)
                .and_then(|b| b.try_into().ok())
                .map(u64::from_be_bytes),
            key.get(17..33).and_then(|b| Uuid::from_slice(b).ok()),
        ) else {
            continue;
        };
        let Some(record) = get(store, project_id, &id)? else {
            continue;
        };
        if record.received_ms != ts || !keep(&record)? {
            continue;
        }
        matched += 1;
        if matched <= offset {
            continue;
        }
        if out.len() == limit {
            return Ok((out, true));
        }
        out.push(record);
    }
    Ok((out, false))
}

/// How long after its event a user report is still taken (Sentry: 30 minutes, "as it might be
/// abusive" otherwise).
pub const MAX_EVENT_AGE_MS: u64 = 30 * 60 * 1000;
/// How long a user report may be replaced by another one for the same event (Sentry: 5
/// minutes, against replays).
pub const REPLACE_WINDOW_MS: u64 = 5 * 60 * 1000;

/// A user report as sent: `{event_id, name, email, comments}` (Relay's `UserReport`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserReport {
    /// The event it is about.
    pub event_id: Uuid,
    /// The user's name.
    pub name: String,
    /// The user's email.
    pub email: String,
    /// What the user wrote.
    pub comments: String,
}

/// Why a feedback is not stored: Sentry's outcome reason, and whether Sentry's API answers it
/// with 409 (a report that may no longer change) rather than dropping it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Dropped with outcome `invalid` and this reason.
    Invalid(&'static str),
    /// Dropped with outcome `invalid` and this reason; the API answers 409.
    Conflict(&'static str),
}

impl Refusal {
    /// The outcome reason.
    pub fn reason(self) -> &'static str {
        match self {
            Refusal::Invalid(r) | Refusal::Conflict(r) => r,
        }
    }
}

/// Parses a `user_report` item as Relay does: surrounding whitespace is ignored (an SDK sends
/// a trailing newline), `event_id` is required, `name`/`email`/`comments` are strings or
/// null. Anything else is `invalid_json`, Relay's reason.
pub fn parse_user_report(payload: &[u8]) -> std::result::Result<UserReport, &'static str> {
    #[derive(Deserialize)]
    struct Wire {
        event_id: String,
        #[serde(default)]
        name: Option<String>,
        #[serde(default)]
        email: Option<String>,
        #[serde(default)]
        comments: Option<String>,
    }
    let start = payload
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(payload.len());
    let end = payload
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |e| e + 1);
    let wire: Wire =
        serde_json::from_slice(&payload[start..end.max(start)]).map_err(|_| "invalid_json")?;
    let event_id = Uuid::try_parse(wire.event_id.trim()).map_err(|_| "invalid_json")?;
    Ok(UserReport {
        event_id,
        name: wire.name.unwrap_or_default(),
        email: wire.email.unwrap_or_default(),
        comments: wire.comments.unwrap_or_default(),
    })
}

/// A plausible email address (`local@domain.tld`, no spaces): what Sentry's email validator
/// refuses outright, without its full grammar.
pub fn plausible_email(email: &str) -> bool {
    let Some((local, domain)) = email.rsplit_once('@') else {
        return false;
    };
    !local.is_empty()
        && !email.chars().any(|c| c.is_whitespace() || c.is_control())
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !domain.contains('@')
}

/// Sentry's checks of a user report's fields (`validate_user_report`): the comments are
/// trimmed and must not be empty; name, email and comments have Sentry's column sizes; an
/// email must look like one. Lengths count characters, as Sentry's do.
pub fn validate_user_report(report: &mut UserReport) -> std::result::Result<(), &'static str> {
    report.comments = report.comments.trim().to_owned();
    if report.comments.is_empty() {
        return Err("Empty Feedback Message");
    }
    if report.comments.chars().count() > MAX_COMMENTS {
        return Err("Message Too Large");
    }
    if report.name.chars().count() > MAX_NAME {
        return Err("Name Too Large");
    }
    if report.email.chars().count() > MAX_EMAIL {
        return Err("Email Too Large");
    }
    if !report.email.is_empty() && !plausible_email(&report.email) {
        return Err("Invalid Email");
    }
    Ok(())
}

/// The record to store for a validated user report received at `received_ms`, as Sentry's
/// `save_userreport` decides it: linked to its event's issue when the event is stored (and
/// refused if that event is more than 30 minutes older than the report); replacing an earlier
/// report for the same event only within 5 minutes of it.
pub fn user_report_record(
    store: &Store,
    project_id: u64,
    report: &UserReport,
    received_ms: u64,
) -> Result<std::result::Result<FeedbackRecord, Refusal>> {
    let event = records::load_event(store, project_id, &report.event_id)?;
    if let Some(event) = &event {
        if event.timestamp_ms.saturating_add(MAX_EVENT_AGE_MS) < received_ms {
            return Ok(Err(Refusal::Conflict("Associated event is too old")));
        }
    }
    if let Some(old) = get(store, project_id, &report.event_id)? {
        // A replayed log record carries the same receive time: that is the same report.
        if old.received_ms != received_ms
            && old.received_ms.saturating_add(REPLACE_WINDOW_MS) < received_ms
        {
            return Ok(Err(Refusal::Conflict("Duplicate report")));
        }
    }
    let id = report.event_id.simple().to_string();
    Ok(Ok(FeedbackRecord {
        id: id.clone(),
        kind: FeedbackKind::UserReport,
        project_id,
        event_id: Some(id),
        issue_id: event.as_ref().and_then(|e| e.issue_id),
        name: report.name.clone(),
        email: report.email.clone(),
        comments: report.comments.clone(),
        url: None,
        source: None,
        environment: event
            .as_ref()
            .and_then(|e| e.event.get("environment"))
            .and_then(|v| v.as_str())
            .map(|s| s.to_owned()),
        release: None,
        // Sentry shows the user of the event a report is about.
        user: event
            .as_ref()
            .and_then(|e| e.event.get("user"))
            .filter(|u| u.is_object())
            .cloned(),
        received_ms,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(n: u128, received_ms: u64, comments: &str) -> FeedbackRecord {
        FeedbackRecord {
            id: Uuid::from_u128(n).simple().to_string(),
            kind: FeedbackKind::UserReport,
            project_id: 1,
            event_id: Some(Uuid::from_u128(n).simple().to_string()),
            issue_id: None,
            name: "Jane".into(),
            email: "jane@example.com".into(),
            comments: comments.into(),
            url: None,
            source: None,
            environment: None,
            release: None,
            user: None,
            received_ms,
        }
    }

    #[test]
    fn newest_first_pages_and_replacement() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), &crate::StoreOptions::default()).unwrap();
        let t = 1_700_000_000_000;
        let mut batch = WriteBatch::default();
        for n in 1..=3u128 {
            put(&store, &mut batch, &report(n, t + n as u64, "x")).unwrap();
        }
        // Another project's feedback never shows in project 1's list.
        let mut other = report(9, t + 100, "other");
        other.project_id = 2;
        put(&store, &mut batch, &other).unwrap();
        store.write(batch, false).unwrap();

        let all = |store: &Store| {
            list_project(store, 1, 0, 10, 100, |_| Ok(true))
                .unwrap()
                .0
                .iter()
                .map(|r| (r.id.clone(), r.comments.clone()))
                .collect::<Vec<_>>()
        };
        let id = |n: u128| Uuid::from_u128(n).simple().to_string();
        assert_eq!(
            all(&store),
            vec![
                (id(3), "x".into()),
                (id(2), "x".into()),
                (id(1), "x".into())
            ]
        );
        let (page, more) = list_project(&store, 1, 1, 1, 100, |_| Ok(true)).unwrap();
        assert_eq!((page[0].id.clone(), more), (id(2), true));
        let (page, more) = list_project(&store, 1, 2, 1, 100, |_| Ok(true)).unwrap();
        assert_eq!((page.len(), more), (1, false));

        // A second report for event 1 replaces the first and moves to the top.
        let mut batch = WriteBatch::default();
        put(&store, &mut batch, &report(1, t + 50, "edited")).unwrap();
        store.write(batch, false).unwrap();
        assert_eq!(
            all(&store),
            vec![
                (id(1), "edited".into()),
                (id(3), "x".into()),
                (id(2), "x".into())
            ]
        );
        // The filter runs before paging.
        let (page, _) =
            list_project(&store, 1, 0, 10, 100, |r| Ok(r.comments == "edited")).unwrap();
        assert_eq!(page.len(), 1);
        // Retention reads the time of both tables.
        let rec_key = record_key(1, &Uuid::from_u128(1));
        let value = store
            .db()
            .get_cf(&store.cf(cf::INDEX), rec_key)
            .unwrap()
            .unwrap();
        assert_eq!(
            keys::timestamp_of(cf::INDEX, &rec_key, &value),
            Some(t + 50)
        );
        let tkey = time_key(1, t + 50, &Uuid::from_u128(1));
        assert_eq!(keys::timestamp_of(cf::INDEX, &tkey, &[]), Some(t + 50));
    }

    #[test]
    fn user_reports_are_parsed_and_validated_like_relay_and_sentry() {
        let id = "9ec79c33ec9942ab8353589fcb2e04dc";
        let ok = parse_user_report(
            format!(" {{\"event_id\":\"{id}\",\"name\":null,\"email\":\"a@b.io\",\"comments\":\" hi \"}}\n")
                .as_bytes(),
        )
        .unwrap();
        assert_eq!(ok.event_id.simple().to_string(), id);
        assert_eq!(ok.name, "");
        for bad in [
            &b"not json"[..],
            br#"{"name":"x","comments":"y"}"#,
            br#"{"event_id":"nope","comments":"y"}"#,
            br#"{"event_id":"9ec79c33ec9942ab8353589fcb2e04dc","comments":7}"#,
            b"",
        ] {
            assert_eq!(parse_user_report(bad), Err("invalid_json"), "{bad:?}");
        }
        let mut r = ok.clone();
        assert_eq!(validate_user_report(&mut r), Ok(()));
        assert_eq!(r.comments, "hi");
        let check = |f: &dyn Fn(&mut UserReport)| {
            let mut r = ok.clone();
            f(&mut r);
            validate_user_report(&mut r)
        };
        assert_eq!(
            check(&|r| r.comments = "  ".into()),
            Err("Empty Feedback Message")
        );
        assert_eq!(check(&|r| r.comments = "é".repeat(4096)), Ok(()));
        assert_eq!(
            check(&|r| r.comments = "x".repeat(4097)),
            Err("Message Too Large")
        );
        assert_eq!(check(&|r| r.name = "n".repeat(129)), Err("Name Too Large"));
        assert_eq!(
            check(&|r| r.email = format!("{}@b.io", "a".repeat(80))),
            Err("Email Too Large")
        );
        for bad in ["nobody", "a@b", "a b@c.io", "@c.io", "a@.io"] {
            assert_eq!(
                check(&|r| r.email = bad.into()),
                Err("Invalid Email"),
                "{bad}"
            );
        }
    }

    #[test]
    fn user_reports_link_to_stored_events_and_refuse_late_changes() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), &crate::StoreOptions::default()).unwrap();
        let t = 1_700_000_000_000;
        let event_id = Uuid::from_u128(77);
        let stored = records::StoredEvent {
            event_id: event_id.simple().to_string(),
            project_id: 1,
            issue_id: Some(12),
            timestamp_ms: t,
            received_ms: t,
            hashes: vec![],
            event: serde_json::json!({"environment": "prod", "user": {"id": "u1"}}),
        };
        let mut batch = WriteBatch::default();
        batch.put_cf(
            &store.cf(cf::EVENTS),
            keys::event(1, &event_id),
            records::encode_event_plain(&stored).unwrap(),
        );
        store.write(batch, false).unwrap();
        let report = UserReport {
            event_id,
            name: "Jane".into(),
            email: "jane@example.com".into(),
            comments: "it broke".into(),
        };
        let rec = user_report_record(&store, 1, &report, t + 1000)
            .unwrap()
            .unwrap();
        assert_eq!(
            (rec.issue_id, rec.environment.as_deref()),
            (Some(12), Some("prod"))
        );
        assert_eq!(rec.user, Some(serde_json::json!({"id": "u1"})));
        // Not stored yet: no issue, resolved later from the event.
        let other = UserReport {
            event_id: Uuid::from_u128(78),
            ..report.clone()
        };
        let early = user_report_record(&store, 1, &other, t).unwrap().unwrap();
        assert_eq!(early.issue_id, None);
        assert_eq!(resolve_issue(&store, &early).unwrap(), None);
        assert_eq!(resolve_issue(&store, &rec).unwrap(), Some(12));
        // More than 30 minutes after the event: refused.
        assert_eq!(
            user_report_record(&store, 1, &report, t + MAX_EVENT_AGE_MS + 1).unwrap(),
            Err(Refusal::Conflict("Associated event is too old"))
        );
        // A stored report may be replaced for 5 minutes, not after.
        let mut batch = WriteBatch::default();
        put(&store, &mut batch, &rec).unwrap();
        store.write(batch, false).unwrap();
        assert!(user_report_record(&store, 1, &report, t + 2000)
            .unwrap()
            .is_ok());
        assert!(user_report_record(&store, 1, &report, t + 1000)
            .unwrap()
            .is_ok());
        assert_eq!(
            user_report_record(&store, 1, &report, t + 1000 + REPLACE_WINDOW_MS + 1).unwrap(),
            Err(Refusal::Conflict("Duplicate report"))
        );
    }
}
