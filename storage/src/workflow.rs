//! What people do to issues, next to what the processor records about them: the assignee, an
//! ignore condition ("until 100 more events", "for 30 minutes"), and the activity log (status
//! changes, assignments, notes, regressions). Both live in the `issues` column family beside
//! the issue record, under their own prefixes ([`keys::issues::WORKFLOW`],
//! [`keys::issues::ACTIVITY`]), so the processor's record stays the processor's.

use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::db::{now_ms, Store};
use crate::error::Result;
use crate::{cf, keys, WriteBatch};

/// Whom an issue is assigned to.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Assignee {
    /// `user` or `team`.
    pub kind: String,
    /// User or team id as given (`7`, `backend`).
    pub id: String,
    /// Display name.
    pub name: String,
    /// E-mail, for users, if known.
    #[serde(default)]
    pub email: Option<String>,
}

/// When an ignored issue comes back (Sentry's ignore modes); every bound is optional.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(default)]
pub struct IgnoreCondition {
    /// `forever`, `forDuration`, `untilOccurrenceCount`, `untilUserCount`, `untilEscalating`.
    pub mode: String,
    /// Unignore after this time (unix ms).
    pub until_ms: Option<u64>,
    /// Unignore after this many more events …
    pub count: Option<u64>,
    /// … within this many minutes (informational: osprey counts since ignoring).
    pub window_minutes: Option<u64>,
    /// Unignore after this many more distinct users …
    pub user_count: Option<u64>,
    /// … within this many minutes.
    pub user_window_minutes: Option<u64>,
    /// Events of the issue when it was ignored.
    pub baseline_count: u64,
    /// Distinct users of the issue when it was ignored.
    pub baseline_users: u64,
    /// When it was ignored (unix ms).
    pub since_ms: u64,
}

impl IgnoreCondition {
    /// Whether the condition has run out, given the issue's current totals.
    pub fn expired(&self, count: u64, users: u64, now_ms: u64) -> bool {
        self.until_ms.is_some_and(|t| now_ms >= t)
            || self
                .count
                .is_some_and(|n| count >= self.baseline_count.saturating_add(n))
            || self
                .user_count
                .is_some_and(|n| users >= self.baseline_users.saturating_add(n))
    }
}

/// The workflow state of one issue.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(default)]
pub struct IssueWorkflow {
    /// Current assignee.
    pub assigned_to: Option<Assignee>,
    /// Present while the issue is ignored with a condition.
    pub ignore: Option<IgnoreCondition>,
    /// Labels people put on the issue (`{"team": "payments"}`), apart from the event tags;
    /// the issue search matches them like tags.
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub tags: std::collections::BTreeMap<String, String>,
}

/// Most labels on one issue.
pub const MAX_ISSUE_TAGS: usize = 50;

/// One entry of an issue's activity.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Activity {
    /// Time-ordered id.
    pub id: u64,
    /// The issue.
    pub issue_id: u64,
    /// Sentry's activity type: `note`, `set_resolved`, `set_resolved_in_release`,
    /// `set_unresolved`, `set_ignored`, `set_regression`, `assigned`, `unassigned`, …
    pub kind: String,
    /// Type-specific data (`{"text": …}` for notes, `{"version": …}` for releases, …).
    pub data: Value,
    /// Who did it (token name), `None` for the system (processor).
    pub user: Option<String>,
    /// When, unix ms.
    pub date_ms: u64,
}

/// Most activity entries returned for one issue.
pub const MAX_ACTIVITY: usize = 1_000;
/// Longest note accepted, in bytes.
pub const MAX_NOTE_BYTES: usize = 16 * 1024;

/// Time-ordered unique ids within this process: unix ms × 1000 plus a counter, never going
/// backwards even if the clock does.
fn next_activity_id() -> u64 {
    static LAST: AtomicU64 = AtomicU64::new(0);
    let candidate = now_ms().saturating_mul(1_000);
    let mut last = LAST.load(Ordering::Relaxed);
    loop {
        let next = candidate.max(last + 1);
        match LAST.compare_exchange_weak(last, next, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return next,
            Err(actual) => last = actual,
        }
    }
}

fn workflow_key(issue_id: u64) -> [u8; 9] {
    keys::prefixed_id(keys::issues::WORKFLOW, issue_id)
}

fn activity_key(issue_id: u64, activity_id: u64) -> [u8; 17] {
    let mut key = [0u8; 17];
    key[0] = keys::issues::ACTIVITY;
    key[1..9].copy_from_slice(&issue_id.to_be_bytes());
    key[9..].copy_from_slice(&activity_id.to_be_bytes());
    key
}

/// The workflow state of an issue (default when none was stored).
pub fn workflow(store: &Store, issue_id: u64) -> Result<IssueWorkflow> {
    let raw = store
        .db()
        .get_pinned_cf(&store.cf(cf::ISSUES), workflow_key(issue_id))?;
    Ok(match raw {
        Some(v) => serde_json::from_slice(&v)?,
        None => IssueWorkflow::default(),
    })
}

/// Stores the workflow state of an issue.
pub fn put_workflow(store: &Store, issue_id: u64, state: &IssueWorkflow) -> Result<()> {
    store.ensure_writable()?;
    let mut batch = WriteBatch::default();
    batch.put_cf(
        &store.cf(cf::ISSUES),
        workflow_key(issue_id),
        serde_json::to_vec(state)?,
    );
    store.write(batch, true)
}

/// Appends an activity entry inside `batch` (the processor's regression entries) and returns it.
pub fn add_activity_in_batch(
    store: &Store,
    batch: &mut WriteBatch,
    issue_id: u64,
    kind: &str,
    data: Value,
    user: Option<&str>,
) -> Result<Activity> {
    let activity = Activity {
        id: next_activity_id(),
        issue_id,
        kind: kind.to_owned(),
        data,
        user: user.map(str::to_owned),
        date_ms: now_ms(),
    };
    batch.put_cf(
        &store.cf(cf::ISSUES),
        activity_key(issue_id, activity.id),
        serde_json::to_vec(&activity)?,
    );
    Ok(activity)
}

/// Appends an activity entry now.
pub fn add_activity(
    store: &Store,
    issue_id: u64,
    kind: &str,
    data: Value,
    user: Option<&str>,
) -> Result<Activity> {
    store.ensure_writable()?;
    let mut batch = WriteBatch::default();
    let activity = add_activity_in_batch(store, &mut batch, issue_id, kind, data, user)?;
    store.write(batch, true)?;
    Ok(activity)
}

/// The activity of an issue, newest first (at most [`MAX_ACTIVITY`]).
pub fn activities(store: &Store, issue_id: u64) -> Result<Vec<Activity>> {
    let handle = store.cf(cf::ISSUES);
    let start = activity_key(issue_id, u64::MAX);
    let prefix = &start[..9];
    let mut out = Vec::new();
    let iter = store.db().iterator_cf(
        &handle,
        rocksdb::IteratorMode::From(&start, rocksdb::Direction::Reverse),
    );
    for item in iter {
        let (key, value) = item?;
        if !key.starts_with(prefix) || out.len() >= MAX_ACTIVITY {
            break;
        }
        out.push(serde_json::from_slice(&value)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::StoreOptions;
    use serde_json::json;

    #[test]
    fn workflow_and_activity_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), &StoreOptions::default()).unwrap();
        assert_eq!(workflow(&store, 5).unwrap(), IssueWorkflow::default());
        let state = IssueWorkflow {
            assigned_to: Some(Assignee {
                kind: "team".into(),
                id: "backend".into(),
                name: "backend".into(),
                email: None,
            }),
            ignore: Some(IgnoreCondition {
                mode: "untilOccurrenceCount".into(),
                count: Some(10),
                baseline_count: 4,
                ..Default::default()
            }),
            tags: [("team".to_owned(), "payments".to_owned())].into(),
        };
        put_workflow(&store, 5, &state).unwrap();
        assert_eq!(workflow(&store, 5).unwrap(), state);
        let a = add_activity(&store, 5, "note", json!({"text": "first"}), Some("admin")).unwrap();
        let b = add_activity(&store, 5, "set_resolved", json!({}), None).unwrap();
        add_activity(&store, 6, "note", json!({"text": "other issue"}), None).unwrap();
        assert!(b.id > a.id);
        let listed = activities(&store, 5).unwrap();
        assert_eq!(
            listed.iter().map(|x| x.kind.as_str()).collect::<Vec<_>>(),
            ["set_resolved", "note"]
        );
        assert!(activities(&store, 7).unwrap().is_empty());
    }

    #[test]
    fn ignore_conditions_expire() {
        let c = IgnoreCondition {
            count: Some(10),
            baseline_count: 5,
            ..Default::default()
        };
        assert!(!c.expired(14, 0, 0) && c.expired(15, 0, 0));
        let c = IgnoreCondition {
            user_count: Some(2),
            baseline_users: 1,
            ..Default::default()
        };
        assert!(!c.expired(100, 2, 0) && c.expired(0, 3, 0));
        let c = IgnoreCondition {
            until_ms: Some(1_000),
            ..Default::default()
        };
        assert!(!c.expired(0, 0, 999) && c.expired(0, 0, 1_000));
        assert!(!IgnoreCondition::default().expired(u64::MAX, u64::MAX, u64::MAX));
    }
}
