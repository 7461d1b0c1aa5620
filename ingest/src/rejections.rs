//! Ingest's own rate-limit refusals as outcomes.
//!
//! When ingest drops items over a quota (a 429, or items dropped from a partly accepted
//! envelope), Relay records outcome `rate_limited` with the quota's reason code, per category
//! and quantity, so that the stats API shows them. osprey sums the refusals in memory per
//! (project, key, category, reason) — one counter per combination, never one record per
//! request — and about once a second appends the sums to the log as a `client_report` item of
//! the project whose `rate_limited_events` carry them: the processor records a client report's
//! rate-limited entries as `rate_limited` outcomes with their reason, category and quantity,
//! which is exactly what these are. The time of an outcome is the flush (at most about a
//! second after the refusal).
//!
//! Bounded: at most [`MAX_PENDING`] distinct combinations wait for a flush; refusals beyond
//! that are only counted on `/metrics` (`dropped`). A flush the log refuses (backpressure) is
//! lost, as an outcome Relay could not produce would be.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;
use serde_json::json;
use storage::{now_ms, Log, LogRecord};

use crate::rate_limit::{DataCategory, RateLimits, Scope};

/// Most distinct (project, key, category, reason) sums waiting for a flush.
pub const MAX_PENDING: usize = 10_000;
/// How often the sums are appended to the log.
pub const FLUSH_INTERVAL: Duration = Duration::from_secs(1);
/// Entries per appended client report (the processor reads at most 1000 per report).
const ENTRIES_PER_RECORD: usize = 1000;

/// Relay's reason codes of osprey's two quota scopes.
pub fn reason_of(scope: Scope) -> &'static str {
    match scope {
        Scope::Project => "project_quota",
        Scope::Key => "key_quota",
    }
}

/// The reason an item of `category` was refused with, given the limits its request hit: a
/// key limit (of the category or of every category) wins, as it is the narrower scope.
pub fn refusal_reason(limits: &RateLimits, category: DataCategory) -> &'static str {
    let hit = |scope: Scope| {
        limits
            .limits
            .iter()
            .any(|l| l.scope == scope && l.category.is_none_or(|c| c == category))
    };
    if hit(Scope::Key) {
        reason_of(Scope::Key)
    } else {
        reason_of(Scope::Project)
    }
}

type Key = (u64, u64, DataCategory, &'static str);

/// The pending sums and where they go.
pub struct Rejections {
    log: Arc<dyn Log>,
    pending: Mutex<HashMap<Key, u64>>,
    /// Set while `pending` is not empty (checked without the lock on every request).
    dirty: AtomicBool,
    last_flush_ms: AtomicU64,
    dropped: AtomicU64,
}

impl std::fmt::Debug for Rejections {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rejections")
            .field("pending", &self.pending.lock().len())
            .finish()
    }
}

impl Rejections {
    /// Sums appended to `log`. Inside a tokio runtime a task flushes every
    /// [`FLUSH_INTERVAL`] (it ends when the returned value is dropped); requests also flush
    /// when a flush is due ([`Rejections::flush_if_due`]).
    pub fn new(log: Arc<dyn Log>) -> Arc<Rejections> {
        let this = Arc::new(Rejections {
            log,
            pending: Mutex::new(HashMap::new()),
            dirty: AtomicBool::new(false),
            last_flush_ms: AtomicU64::new(now_ms()),
            dropped: AtomicU64::new(0),
        });
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let weak: Weak<Rejections> = Arc::downgrade(&this);
            runtime.spawn(async move {
                let mut tick = tokio::time::interval(FLUSH_INTERVAL);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tick.tick().await;
                    let Some(this) = weak.upgrade() else {
                        return;
                    };
                    this.flush_if_due();
                }
            });
        }
        this
    }

    /// Counts `quantity` items of `category` refused for (project, key) with `reason`.
    pub fn add(
        &self,
        project_id: u64,
        key_id: u64,
        category: DataCategory,
        reason: &'static str,
        quantity: u64,
    ) {
        let mut pending = self.pending.lock();
        let key = (project_id, key_id, category, reason);
        if pending.len() >= MAX_PENDING && !pending.contains_key(&key) {
            self.dropped.fetch_add(quantity, Ordering::Relaxed);
            return;
        }
        let n = pending.entry(key).or_insert(0);
        *n = n.saturating_add(quantity);
        self.dirty.store(true, Ordering::Release);
    }

    /// Refused quantities not recorded because too many combinations were pending.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Flushes when something is pending and the last flush is [`FLUSH_INTERVAL`] old.
    pub fn flush_if_due(&self) {
        if !self.dirty.load(Ordering::Acquire) {
            return;
        }
        let now = now_ms();
        let last = self.last_flush_ms.load(Ordering::Acquire);
        if now.saturating_sub(last) < FLUSH_INTERVAL.as_millis() as u64 {
            return;
        }
        // One flusher at a time: whoever moves the time wins.
        if self
            .last_flush_ms
            .compare_exchange(last, now, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            self.flush();
        }
    }

    /// Appends every pending sum to the log now (one client report per project and key).
    pub fn flush(&self) {
        let taken = {
            let mut pending = self.pending.lock();
            self.dirty.store(false, Ordering::Release);
            std::mem::take(&mut *pending)
        };
        if taken.is_empty() {
            return;
        }
        let received_ms = now_ms();
        let mut by_key: HashMap<(u64, u64), Vec<serde_json::Value>> = HashMap::new();
        for ((project_id, key_id, category, reason), quantity) in taken {
            by_key.entry((project_id, key_id)).or_default().push(json!({
                "reason": reason,
                "category": category.name(),
                "quantity": quantity,
            }));
        }
        let mut records = Vec::new();
        for ((project_id, key_id), entries) in by_key {
            for chunk in entries.chunks(ENTRIES_PER_RECORD) {
                let payload = json!({
                    "timestamp": received_ms / 1000,
                    "rate_limited_events": chunk,
                });
                records.push(LogRecord {
                    project_id,
                    key_id,
                    received_ms,
                    event_id: None,
                    item_type: "client_report".into(),
                    envelope_header: Bytes::new(),
                    item_header: Bytes::from_static(b"{\"type\":\"client_report\"}"),
                    client_addr: None,
                    payload: Bytes::from(payload.to_string()),
                });
            }
        }
        // The ticket resolves once the records are durable; nothing waits for it here.
        if let Err(e) = self.log.append(records) {
            tracing::warn!(error = %e, "rate-limit outcomes not recorded: the log refused them");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rate_limit::RateLimit;
    use storage::{AppendTicket, Result as StorageResult};

    #[derive(Default)]
    struct Collect(Mutex<Vec<LogRecord>>);

    impl Log for Collect {
        fn append(&self, records: Vec<LogRecord>) -> StorageResult<AppendTicket> {
            self.0.lock().extend(records);
            Ok(AppendTicket::ready(Ok(0)))
        }
        fn backlog_bytes(&self) -> u64 {
            0
        }
    }

    #[test]
    fn sums_are_flushed_as_client_reports_per_project_and_key() {
        let log = Arc::new(Collect::default());
        let r = Rejections::new(Arc::clone(&log) as Arc<dyn Log>);
        for _ in 0..5 {
            r.add(1, 10, DataCategory::Error, "project_quota", 1);
        }
        r.add(1, 10, DataCategory::Attachment, "project_quota", 300);
        r.add(2, 20, DataCategory::Transaction, "key_quota", 2);
        // Not due yet: nothing appended.
        r.flush_if_due();
        assert!(log.0.lock().is_empty());
        r.flush();
        let records = std::mem::take(&mut *log.0.lock());
        assert_eq!(records.len(), 2, "one report per project and key");
        let p1 = records.iter().find(|r| r.project_id == 1).unwrap();
        assert_eq!((p1.key_id, p1.item_type.as_str()), (10, "client_report"));
        let v: serde_json::Value = serde_json::from_slice(&p1.payload).unwrap();
        let mut entries = v["rate_limited_events"].as_array().unwrap().clone();
        entries.sort_by_key(|e| e["category"].as_str().unwrap().to_owned());
        assert_eq!(
            entries,
            vec![
                json!({"reason": "project_quota", "category": "attachment", "quantity": 300}),
                json!({"reason": "project_quota", "category": "error", "quantity": 5}),
            ]
        );
        // Flushed sums are gone.
        r.flush();
        assert!(log.0.lock().is_empty());
    }

    #[test]
    fn pending_combinations_are_bounded() {
        let log = Arc::new(Collect::default());
        let r = Rejections::new(Arc::clone(&log) as Arc<dyn Log>);
        for p in 0..(MAX_PENDING as u64 + 5) {
            r.add(p, 1, DataCategory::Error, "project_quota", 2);
        }
        assert_eq!(r.dropped(), 10);
        // A combination already pending still counts.
        r.add(0, 1, DataCategory::Error, "project_quota", 1);
        assert_eq!(r.dropped(), 10);
        r.flush();
        assert_eq!(log.0.lock().len(), MAX_PENDING);
    }

    #[test]
    fn the_narrower_scope_names_the_reason() {
        let limit = |category, scope| RateLimit {
            category,
            scope,
            retry_after_secs: 1,
        };
        let mut limits = RateLimits::default();
        limits.add(limit(Some(DataCategory::Error), Scope::Project));
        assert_eq!(
            refusal_reason(&limits, DataCategory::Error),
            "project_quota"
        );
        limits.add(limit(Some(DataCategory::Transaction), Scope::Key));
        assert_eq!(
            refusal_reason(&limits, DataCategory::Error),
            "project_quota"
        );
        assert_eq!(
            refusal_reason(&limits, DataCategory::Transaction),
            "key_quota"
        );
        limits.add(limit(None, Scope::Key));
        assert_eq!(refusal_reason(&limits, DataCategory::Error), "key_quota");
    }
}
