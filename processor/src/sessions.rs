//! Release health: `session` items (one update of one session) and `sessions` items (an
//! SDK's pre-aggregated counts, e.g. request-mode sessions of a web server) folded into
//! per-hour counters and user sketches by project, release and environment
//! (`storage::sessions` has the layout).
//!
//! The semantics are Sentry's, as Relay extracts its session metrics:
//! - a session is counted once, by the update that says `init: true` (an aggregate counts
//!   every session it holds: exited + errored + abnormal + crashed);
//! - a session is *errored* when an update has `errors > 0` or status `errored`, `crashed` or
//!   `abnormal` — crashed and abnormal sessions are errored too — and counts as errored once
//!   however many updates say so (a marker per session id, as Relay's set of session ids);
//! - crashed and abnormal are counted by their final status, once per session;
//! - users are distinct `did`s (a nil UUID or empty `did` is no user), as sketches that merge
//!   over any range, kept for all users and for the users of errored, crashed and abnormal
//!   sessions;
//! - every count is bucketed by the hour the session *started*, so all updates of a session
//!   meet in one bucket.
//!
//! Validation follows Relay: an item without a release, with an invalid release or
//! environment, with `timestamp` before `started`, started more than
//! [`MAX_SECS_IN_PAST`] before it was received or more than [`MAX_SECS_IN_FUTURE`] after, is
//! dropped with outcome `invalid` and a reason; an aggregate keeps its valid buckets.
//! Accepted items are outcome `accepted`, category `session`, one per item.

use storage::{cf, hist, sessions as sk, Store, WriteBatch};
use uuid::Uuid;

use crate::fast_hash::{FastMap, FastSet};
use crate::normalize::parse_timestamp_str;

/// Sessions that started longer ago than this (relative to receipt) are dropped (Relay's
/// `max_session_secs_in_past`: 5 days).
pub const MAX_SECS_IN_PAST: u64 = 5 * 24 * 3600;
/// Sessions and updates stamped further than this in the future are dropped (Relay's
/// `max_secs_in_future`).
pub const MAX_SECS_IN_FUTURE: u64 = 60;
/// Most buckets of one `sessions` item that are folded (the rest are dropped).
pub const MAX_AGGREGATES: usize = 1000;
/// Longest release (Sentry's limit).
pub const MAX_RELEASE_LEN: usize = 200;
/// Longest environment (Sentry's limit).
pub const MAX_ENVIRONMENT_LEN: usize = 64;
/// Longest `did` hashed as is; longer ones are hashed by their first bytes.
const MAX_DID_LEN: usize = 1024;

/// Why an item (or an aggregate bucket) was dropped: the outcome reason.
pub type Rejection = &'static str;

/// What one item did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Folded {
    /// Folded in (for an aggregate: at least one bucket).
    Accepted,
    /// Dropped, with the outcome reason.
    Rejected(Rejection),
}

/// Session counts of one batch, written by [`SessionFolder::flush_into`].
#[derive(Default)]
pub struct SessionFolder {
    counters: FastMap<Vec<u8>, i64>,
    users: FastMap<Vec<u8>, Vec<u32>>,
    /// Markers first set in this batch (so a second update in the same batch sees them).
    members: FastSet<Vec<u8>>,
}

impl std::fmt::Debug for SessionFolder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionFolder")
            .field("counters", &self.counters.len())
            .field("sketches", &self.users.len())
            .finish()
    }
}

#[derive(serde::Deserialize, Default)]
#[serde(default)]
struct Attributes {
    release: Option<String>,
    environment: Option<String>,
}

#[derive(serde::Deserialize)]
struct Update {
    sid: Option<String>,
    did: Option<serde_json::Value>,
    #[serde(default)]
    init: bool,
    started: Option<serde_json::Value>,
    timestamp: Option<serde_json::Value>,
    status: Option<String>,
    #[serde(default)]
    errors: u64,
    #[serde(default)]
    attrs: Attributes,
}

#[derive(serde::Deserialize)]
struct Aggregates {
    #[serde(default)]
    aggregates: Vec<AggregateBucket>,
    #[serde(default)]
    attrs: Attributes,
}

#[derive(serde::Deserialize)]
struct AggregateBucket {
    started: Option<serde_json::Value>,
    did: Option<serde_json::Value>,
    #[serde(default)]
    exited: u32,
    #[serde(default)]
    errored: u32,
    #[serde(default)]
    abnormal: u32,
    #[serde(default)]
    crashed: u32,
}

/// Unix ms of a timestamp as Relay takes it: RFC 3339 text or seconds since the epoch.
fn timestamp_ms(v: &serde_json::Value) -> Option<u64> {
    match v {
        serde_json::Value::Number(n) => {
            let secs = n.as_f64()?;
            (secs.is_finite() && (0.0..1e11).contains(&secs)).then_some((secs * 1000.0) as u64)
        }
        serde_json::Value::String(s) => u64::try_from(parse_timestamp_str(s)?).ok(),
        _ => None,
    }
}

/// A distinct id as text: strings as they are, numbers as written; a nil UUID or an empty
/// string is no user (Relay's `nil_to_none`).
fn distinct_id(v: Option<&serde_json::Value>) -> Option<String> {
    let text = match v? {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Number(n) => n.to_string(),
        _ => return None,
    };
    if text.is_empty() || Uuid::try_parse(&text).is_ok_and(|u| u.is_nil()) {
        return None;
    }
    Some(text)
}

/// Sentry's release name rules: not empty, at most 200 chars, no line breaks, tabs or
/// slashes, and not `.`, `..`, ` ` or `latest`.
fn valid_release(r: &str) -> bool {
    !r.trim().is_empty()
        && r.chars().count() <= MAX_RELEASE_LEN
        && !r.contains(['\n', '\r', '\t', '/', '\\', '\x0c'])
        && !matches!(r, "." | ".." | "latest")
}

/// Sentry's environment name rules: at most 64 chars, no line breaks or slashes.
fn valid_environment(e: &str) -> bool {
    e.chars().count() <= MAX_ENVIRONMENT_LEN && !e.contains(['\n', '\r', '/', '\x0c'])
}

/// Release and environment of an item, validated.
fn attributes(attrs: &Attributes) -> Result<(&str, &str), Rejection> {
    let release = attrs.release.as_deref().unwrap_or("");
    if release.is_empty() {
        return Err("missing_release");
    }
    if !valid_release(release) {
        return Err("invalid_release");
    }
    let environment = attrs.environment.as_deref().unwrap_or("");
    if !valid_environment(environment) {
        return Err("invalid_environment");
    }
    Ok((release, environment))
}

/// Checks `started` against the receive time: the hour bucket it belongs to.
fn started_hour(started_ms: u64, received_ms: u64) -> Result<u64, Rejection> {
    if started_ms.saturating_add(MAX_SECS_IN_PAST * 1000) < received_ms {
        return Err("timestamp_too_old");
    }
    if started_ms > received_ms.saturating_add(MAX_SECS_IN_FUTURE * 1000) {
        return Err("timestamp_in_future");
    }
    Ok(storage::keys::hour_start(started_ms))
}

/// One series (project, hour, release, environment) of this batch.
struct Series<'a> {
    project_id: u64,
    hour_ms: u64,
    release: &'a str,
    environment: &'a str,
}

impl SessionFolder {
    /// An empty folder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Folds one `session` (`item_type` `"session"`) or `sessions` item received at
    /// `received_ms`. Reads the store only to see whether a session was already counted as
    /// errored, crashed or abnormal by an earlier batch.
    pub fn add_item(
        &mut self,
        store: &Store,
        project_id: u64,
        item_type: &str,
        payload: &[u8],
        received_ms: u64,
    ) -> crate::error::Result<Folded> {
        let result = if item_type == "sessions" {
            self.add_aggregates(project_id, payload, received_ms)
        } else {
            self.add_update(store, project_id, payload, received_ms)?
        };
        Ok(match result {
            Ok(()) => Folded::Accepted,
            Err(reason) => Folded::Rejected(reason),
        })
    }

    fn add_update(
        &mut self,
        store: &Store,
        project_id: u64,
        payload: &[u8],
        received_ms: u64,
    ) -> crate::error::Result<Result<(), Rejection>> {
        let Ok(update) = serde_json::from_slice::<Update>(payload) else {
            return Ok(Err("invalid_json"));
        };
        let Some(sid) = update.sid.as_deref().and_then(session_id) else {
            return Ok(Err("invalid_sid"));
        };
        let (release, environment) = match attributes(&update.attrs) {
            Ok(a) => a,
            Err(r) => return Ok(Err(r)),
        };
        let Some(started) = update.started.as_ref().and_then(timestamp_ms) else {
            return Ok(Err("invalid_timestamp"));
        };
        let timestamp = match update.timestamp.as_ref() {
            None => received_ms,
            Some(v) => match timestamp_ms(v) {
                Some(t) => t,
                None => return Ok(Err("invalid_timestamp")),
            },
        };
        if timestamp < started {
            return Ok(Err("invalid_timestamp"));
        }
        if timestamp > received_ms.saturating_add(MAX_SECS_IN_FUTURE * 1000) {
            return Ok(Err("timestamp_in_future"));
        }
        let hour_ms = match started_hour(started, received_ms) {
            Ok(h) => h,
            Err(r) => return Ok(Err(r)),
        };
        let series = Series {
            project_id,
            hour_ms,
            release,
            environment,
        };
        let status = update.status.as_deref().unwrap_or("ok");
        let crashed = status == "crashed";
        let abnormal = status == "abnormal";
        let errored = update.errors > 0 || status == "errored" || crashed || abnormal;
        if update.init {
            self.count(&series, sk::metric::STARTED, 1);
        }
        let did = distinct_id(update.did.as_ref());
        let slot = did.as_deref().map(user_slot);
        if let Some(slot) = slot {
            self.user(&series, sk::users::ALL, slot);
        }
        for (applies, metric, users) in [
            (errored, sk::metric::ERRORED, sk::users::ERRORED),
            (crashed, sk::metric::CRASHED, sk::users::CRASHED),
            (abnormal, sk::metric::ABNORMAL, sk::users::ABNORMAL),
        ] {
            if !applies {
                continue;
            }
            if self.first_time(store, &series, metric, &sid)? {
                self.count(&series, metric, 1);
            }
            if let Some(slot) = slot {
                self.user(&series, users, slot);
            }
        }
        Ok(Ok(()))
    }

    fn add_aggregates(
        &mut self,
        project_id: u64,
        payload: &[u8],
        received_ms: u64,
    ) -> Result<(), Rejection> {
        let aggregates: Aggregates = serde_json::from_slice(payload).map_err(|_| "invalid_json")?;
        let (release, environment) = attributes(&aggregates.attrs)?;
        let mut folded = 0usize;
        let mut last_rejection = "empty_aggregates";
        for bucket in aggregates.aggregates.iter().take(MAX_AGGREGATES) {
            let hour = bucket
                .started
                .as_ref()
                .and_then(timestamp_ms)
                .ok_or("invalid_timestamp")
                .and_then(|started| started_hour(started, received_ms));
            let hour_ms = match hour {
                Ok(h) => h,
                Err(r) => {
                    last_rejection = r;
                    continue;
                }
            };
            let series = Series {
                project_id,
                hour_ms,
                release,
                environment,
            };
            let (exited, errored, abnormal, crashed) = (
                i64::from(bucket.exited),
                i64::from(bucket.errored),
                i64::from(bucket.abnormal),
                i64::from(bucket.crashed),
            );
            let total = exited + errored + abnormal + crashed;
            // Crashed and abnormal sessions are errored sessions too (Sentry's errored_all).
            let all_errored = errored + abnormal + crashed;
            for (metric, n) in [
                (sk::metric::STARTED, total),
                (sk::metric::ERRORED, all_errored),
                (sk::metric::CRASHED, crashed),
                (sk::metric::ABNORMAL, abnormal),
            ] {
                if n > 0 {
                    self.count(&series, metric, n);
                }
            }
            if let Some(slot) = distinct_id(bucket.did.as_ref()).as_deref().map(user_slot) {
                self.user(&series, sk::users::ALL, slot);
                for (n, which) in [
                    (all_errored, sk::users::ERRORED),
                    (crashed, sk::users::CRASHED),
                    (abnormal, sk::users::ABNORMAL),
                ] {
                    if n > 0 {
                        self.user(&series, which, slot);
                    }
                }
            }
            folded += 1;
        }
        if folded == 0 {
            return Err(last_rejection);
        }
        Ok(())
    }

    fn count(&mut self, s: &Series<'_>, metric: u8, n: i64) {
        let key = sk::counter_key(s.project_id, s.hour_ms, s.release, s.environment, metric);
        *self.counters.entry(key).or_insert(0) += n;
    }

    fn user(&mut self, s: &Series<'_>, which: u8, slot: u32) {
        let key = sk::users_key(s.project_id, s.hour_ms, s.release, s.environment, which);
        self.users.entry(key).or_default().push(slot);
    }

    /// Whether session `sid` is counted under `metric` for the first time (then marks it).
    fn first_time(
        &mut self,
        store: &Store,
        s: &Series<'_>,
        metric: u8,
        sid: &[u8; 16],
    ) -> crate::error::Result<bool> {
        let key = sk::member_key(
            s.project_id,
            s.hour_ms,
            s.release,
            s.environment,
            metric,
            sid,
        );
        if self.members.contains(&key) {
            return Ok(false);
        }
        if store
            .db()
            .get_pinned_cf(&store.cf(cf::COUNTERS), &key)?
            .is_some()
        {
            return Ok(false);
        }
        self.members.insert(key);
        Ok(true)
    }

    /// Writes the batch's counters, markers and user sketches as merge operands, and clears
    /// the folder.
    pub fn flush_into(&mut self, store: &Store, batch: &mut WriteBatch) {
        if self.counters.is_empty() && self.users.is_empty() && self.members.is_empty() {
            return;
        }
        let counters_cf = store.cf(cf::COUNTERS);
        let mut counters: Vec<_> = self.counters.drain().collect();
        counters.sort_unstable();
        for (key, n) in counters {
            batch.merge_cf(&counters_cf, key, storage::encode_i64(n));
        }
        let mut members: Vec<_> = self.members.drain().collect();
        members.sort_unstable();
        for key in members {
            batch.merge_cf(&counters_cf, key, storage::encode_i64(1));
        }
        let hist_cf = store.cf(cf::HISTOGRAMS);
        let mut sketches: Vec<_> = self.users.drain().collect();
        sketches.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let mut value = Vec::new();
        for (key, mut slots) in sketches {
            slots.sort_unstable();
            slots.dedup();
            let pairs: Vec<(u32, u64)> = slots.iter().map(|&s| (s, 1)).collect();
            hist::encode_sparse(&pairs, &mut value);
            batch.merge_cf(&hist_cf, key, &value);
        }
    }
}

/// A session id: a UUID, or (as some SDKs send) any other text, hashed to 16 bytes.
fn session_id(sid: &str) -> Option<[u8; 16]> {
    if sid.is_empty() || sid.len() > 256 {
        return None;
    }
    Some(match Uuid::try_parse(sid) {
        Ok(u) => *u.as_bytes(),
        Err(_) => xxhash_rust::xxh3::xxh3_128(sid.as_bytes()).to_be_bytes(),
    })
}

/// The sketch slot of a distinct id.
fn user_slot(did: &str) -> u32 {
    let mut end = did.len().min(MAX_DID_LEN);
    while !did.is_char_boundary(end) {
        end -= 1;
    }
    crate::perf_users::user_slot(&did[..end])
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use storage::keys::hour_start;
    use storage::{decode_i64, StoreOptions};

    const HOUR: u64 = 3_600_000;

    struct Fixture {
        _dir: tempfile::TempDir,
        store: Store,
        now: u64,
    }

    impl Fixture {
        fn new() -> Fixture {
            let dir = tempfile::tempdir().unwrap();
            let store = Store::open(dir.path(), &StoreOptions::default()).unwrap();
            // Half past an hour, so "a minute ago" is in the same bucket.
            let now = hour_start(storage::now_ms()) + HOUR / 2;
            Fixture {
                _dir: dir,
                store,
                now,
            }
        }

        /// Folds the items as one batch and commits it.
        fn batch(&self, items: &[(&str, serde_json::Value)]) -> Vec<Folded> {
            let mut folder = SessionFolder::new();
            let out = items
                .iter()
                .map(|(ty, v)| {
                    folder
                        .add_item(&self.store, 1, ty, v.to_string().as_bytes(), self.now)
                        .unwrap()
                })
                .collect();
            let mut batch = WriteBatch::default();
            folder.flush_into(&self.store, &mut batch);
            self.store.write(batch, false).unwrap();
            out
        }

        fn counter(&self, release: &str, env: &str, metric: u8) -> i64 {
            let key = sk::counter_key(1, hour_start(self.now), release, env, metric);
            self.store
                .db()
                .get_cf(&self.store.cf(cf::COUNTERS), key)
                .unwrap()
                .map(|v| decode_i64(&v))
                .unwrap_or(0)
        }

        fn counts(&self, release: &str) -> [i64; 4] {
            [
                sk::metric::STARTED,
                sk::metric::ERRORED,
                sk::metric::CRASHED,
                sk::metric::ABNORMAL,
            ]
            .map(|m| self.counter(release, "prod", m))
        }

        fn users(&self, release: &str, which: u8) -> usize {
            let key = sk::users_key(1, hour_start(self.now), release, "prod", which);
            let Some(bytes) = self
                .store
                .db()
                .get_cf(&self.store.cf(cf::HISTOGRAMS), key)
                .unwrap()
            else {
                return 0;
            };
            let mut n = 0;
            hist::for_each_bucket(&bytes, |_, c| n += usize::from(c > 0)).unwrap();
            n
        }

        fn iso(&self, ms_ago: u64) -> String {
            chrono::DateTime::from_timestamp_millis((self.now - ms_ago) as i64)
                .unwrap()
                .to_rfc3339()
        }

        fn update(
            &self,
            sid: u128,
            seq: u64,
            init: bool,
            status: &str,
            errors: u64,
        ) -> serde_json::Value {
            json!({
                "sid": Uuid::from_u128(sid).to_string(),
                "did": format!("user-{sid}"),
                "seq": seq,
                "init": init,
                "started": self.iso(60_000),
                "timestamp": self.iso(1_000),
                "duration": 59.0,
                "status": status,
                "errors": errors,
                "attrs": {"release": "app@1.0", "environment": "prod"},
            })
        }
    }

    #[test]
    fn a_session_counts_once_at_init_and_errored_once() {
        let f = Fixture::new();
        // Session 1: healthy (init, then exited). Session 2: two errors reported in two
        // updates, then exited; one of them comes again in a later batch.
        let out = f.batch(&[
            ("session", f.update(1, 0, true, "ok", 0)),
            ("session", f.update(1, 1, false, "exited", 0)),
            ("session", f.update(2, 0, true, "ok", 1)),
            ("session", f.update(2, 1, false, "ok", 2)),
        ]);
        assert!(out.iter().all(|o| *o == Folded::Accepted), "{out:?}");
        f.batch(&[("session", f.update(2, 2, false, "exited", 2))]);
        assert_eq!(f.counts("app@1.0"), [2, 1, 0, 0]);
        assert_eq!(f.users("app@1.0", sk::users::ALL), 2);
        assert_eq!(f.users("app@1.0", sk::users::ERRORED), 1);
    }

    #[test]
    fn crashed_and_abnormal_are_errored_and_counted_once_at_their_final_status() {
        let f = Fixture::new();
        f.batch(&[
            ("session", f.update(3, 0, true, "ok", 0)),
            ("session", f.update(3, 1, false, "crashed", 1)),
            ("session", f.update(4, 0, true, "abnormal", 0)),
        ]);
        // The crashed update resent (an SDK retry) in a later batch counts nothing new.
        f.batch(&[("session", f.update(3, 1, false, "crashed", 1))]);
        assert_eq!(f.counts("app@1.0"), [2, 2, 1, 1]);
        assert_eq!(f.users("app@1.0", sk::users::CRASHED), 1);
        assert_eq!(f.users("app@1.0", sk::users::ABNORMAL), 1);
        assert_eq!(f.users("app@1.0", sk::users::ERRORED), 2);
    }

    #[test]
    fn aggregates_count_every_session_and_crashes_as_errored() {
        let f = Fixture::new();
        let out = f.batch(&[(
            "sessions",
            json!({
                "aggregates": [
                    {"started": f.iso(60_000), "exited": 5, "errored": 2, "crashed": 1},
                    {"started": f.iso(120_000), "did": "u-9", "exited": 1, "abnormal": 1},
                    // Too old: dropped, the other buckets stay.
                    {"started": f.iso(6 * 24 * HOUR), "exited": 100},
                ],
                "attrs": {"release": "app@2.0", "environment": "prod"},
            }),
        )]);
        assert_eq!(out, [Folded::Accepted]);
        assert_eq!(f.counts("app@2.0"), [10, 4, 1, 1]);
        assert_eq!(f.users("app@2.0", sk::users::ALL), 1);
        assert_eq!(f.users("app@2.0", sk::users::ABNORMAL), 1);
        assert_eq!(f.users("app@2.0", sk::users::CRASHED), 0);
    }

    #[test]
    fn invalid_items_are_rejected_with_a_reason() {
        let f = Fixture::new();
        let mut no_release = f.update(5, 0, true, "ok", 0);
        no_release["attrs"] = json!({"environment": "prod"});
        let mut bad_release = f.update(5, 0, true, "ok", 0);
        bad_release["attrs"]["release"] = json!("latest");
        let mut old = f.update(5, 0, true, "ok", 0);
        old["started"] = json!(f.iso(6 * 24 * HOUR));
        let mut future = f.update(5, 0, true, "ok", 0);
        future["started"] = json!((f.now + 3_600_000) as f64 / 1000.0);
        future["timestamp"] = json!((f.now + 3_600_000) as f64 / 1000.0);
        let mut backwards = f.update(5, 0, true, "ok", 0);
        backwards["timestamp"] = json!(f.iso(120_000));
        let mut no_sid = f.update(5, 0, true, "ok", 0);
        no_sid.as_object_mut().unwrap().remove("sid");
        let out = f.batch(&[
            ("session", no_release),
            ("session", bad_release),
            ("session", old),
            ("session", future),
            ("session", backwards),
            ("session", no_sid),
            ("session", json!("not an object")),
            (
                "sessions",
                json!({"aggregates": [], "attrs": {"release": "a"}}),
            ),
        ]);
        assert_eq!(
            out,
            [
                "missing_release",
                "invalid_release",
                "timestamp_too_old",
                "timestamp_in_future",
                "invalid_timestamp",
                "invalid_sid",
                "invalid_json",
                "empty_aggregates",
            ]
            .map(Folded::Rejected)
        );
        assert_eq!(f.counts("app@1.0"), [0, 0, 0, 0]);
    }

    #[test]
    fn nil_and_empty_distinct_ids_are_no_user() {
        assert_eq!(distinct_id(Some(&json!(Uuid::nil().to_string()))), None);
        assert_eq!(distinct_id(Some(&json!(""))), None);
        assert_eq!(distinct_id(Some(&json!(42))).as_deref(), Some("42"));
    }
}
