//! The processor pipeline: log records in, one RocksDB write batch out.
//!
//! Per record: normalize → inbound filters → scrub → (errors) derived tags, grouping hashes,
//! issue lookup/creation/regression, counters → stored event + indexes → outcome. Everything
//! a batch produces — events, indexes, issue records, counters, outcomes, id sequences — is
//! in one write batch, and the caller adds its consumer offset to the same batch
//! ([`BatchOutcome::batch_mut`]) before [`Processor::commit`]. A crash therefore either loses
//! the whole batch (it is replayed from the old offset) or keeps all of it; dedup by
//! (project, event id), against the store and within the batch, makes resent events harmless.
//!
//! Counters are merge operands (no read-modify-write). The only reads on the hot path are
//! point lookups with bloom filters: event id dedup (in the parallel stage), hash → issue
//! (cached), the issue record (once per issue, kept across batches until the API writes an
//! issue record) and unique-user membership (cached).
//!
//! Unique users are counted exactly: a user (Sentry's `id:`/`username:`/`email:`/`ip:` tag
//! value, hashed with xxh3) is a key under its issue, and the issue's user counter grows
//! only when that key is new. Exact beats HyperLogLog here because the membership read is
//! cheap (bloom filters, a cache) and the API shows small numbers where HLL error shows.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::value::Value;
use parking_lot::{Mutex, MutexGuard};
use storage::records::{self, IssueRecord};
use storage::{cf, encode_i64, keys, EmbeddedLog, LogRecord, Project, Store, WriteBatch};
use uuid::Uuid;

use crate::error::Result;
use crate::fast_hash::{FastMap, FastSet};
use crate::filters;
use crate::grouping::GroupingConfig;
use crate::issues::{self, IssueFacts};
use crate::normalize::{self, EventType, NormalizeContext};
use crate::scrub::Scrubber;
use crate::security;
use crate::transactions::{TransactionError, TransactionFacts, TransactionFolder};

/// Outcome ids (Relay's `OutcomeId`).
pub mod outcome {
    /// Stored.
    pub const ACCEPTED: u8 = 0;
    /// Dropped by an inbound filter.
    pub const FILTERED: u8 = 1;
    /// Dropped by a rate limit.
    pub const RATE_LIMITED: u8 = 2;
    /// Rejected as invalid.
    pub const INVALID: u8 = 3;
    /// Dropped by the SDK (client reports).
    pub const CLIENT_DISCARD: u8 = 5;
}

/// Data categories (Relay's `DataCategory` numbering) used in outcome keys.
pub mod category {
    /// `default`.
    pub const DEFAULT: u8 = 0;
    /// `error` (errors and message events).
    pub const ERROR: u8 = 1;
    /// `transaction`.
    pub const TRANSACTION: u8 = 2;
    /// `security`.
    pub const SECURITY: u8 = 3;
    /// `attachment`.
    pub const ATTACHMENT: u8 = 4;
    /// `session`.
    pub const SESSION: u8 = 5;

    /// The numeric category of a wire name (`255` for unknown names).
    pub fn from_name(name: &str) -> u8 {
        match name {
            "default" => DEFAULT,
            "error" => ERROR,
            "transaction" => TRANSACTION,
            "security" => SECURITY,
            "attachment" => ATTACHMENT,
            "session" => SESSION,
            "profile" => 6,
            "replay" => 7,
            "transaction_processed" => 8,
            "transaction_indexed" => 9,
            "monitor" => 10,
            "profile_indexed" => 11,
            "span" => 12,
            "monitor_seat" => 13,
            "feedback" | "user_report_v2" => 14,
            "metric_bucket" => 15,
            "span_indexed" => 16,
            "profile_duration" => 17,
            "profile_chunk" => 18,
            "replay_video" => 20,
            "attachment_item" => 22,
            "log_item" => 23,
            "log_byte" => 24,
            "trace_metric" => 33,
            _ => 255,
        }
    }
}

/// Tuning of the processor.
#[derive(Debug, Clone)]
pub struct ProcessorConfig {
    /// Most records per batch.
    pub batch_records: usize,
    /// About this many bytes per batch.
    pub batch_bytes: usize,
    /// Unused: stored events are written uncompressed and the events column family
    /// compresses them block-wise (storage's `db.rs`). Kept so existing configs build.
    pub zstd_level: i32,
    /// fsync each commit (the log is already durable; a lost commit is replayed).
    pub sync_commits: bool,
    /// How long an idle processor waits for the log's signal before polling again.
    pub idle_wait: Duration,
    /// Entries kept in the hash → issue and unique-user caches (each).
    pub cache_entries: usize,
    /// Threads for the per-event work that needs no batch state (parsing, normalizing,
    /// scrubbing, grouping, encoding — most of an event's cost); issue assignment and the
    /// write batch stay on the processor's thread. Default: [`default_prepare_threads`].
    pub prepare_threads: usize,
}

/// One core fewer than the machine has (at least 1, at most 4): the ingest endpoint, the
/// log's fsyncs and RocksDB's flushes and compactions need a core too. On a 2-core machine
/// that is 1 (no worker pool): measured end to end there, a second preparing thread did not
/// raise the processed rate and took CPU from ingest (BENCHMARKS.md, 2026-11-29 late).
pub fn default_prepare_threads() -> usize {
    std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .saturating_sub(1)
        .clamp(1, 4)
}

impl Default for ProcessorConfig {
    fn default() -> Self {
        ProcessorConfig {
            batch_records: 1024,
            batch_bytes: 16 << 20,
            zstd_level: 1,
            sync_commits: false,
            idle_wait: Duration::from_millis(200),
            cache_entries: 200_000,
            prepare_threads: default_prepare_threads(),
        }
    }
}

/// What one batch did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BatchStats {
    /// Records looked at.
    pub records: u64,
    /// Events stored (errors, messages, transactions).
    pub accepted: u64,
    /// Of which transactions.
    pub transactions: u64,
    /// Dropped by inbound filters.
    pub filtered: u64,
    /// Rejected as invalid.
    pub invalid: u64,
    /// Already stored (same project and event id).
    pub duplicates: u64,
    /// Item types the processor does not store (check-ins, profiles, …) and client reports.
    pub skipped: u64,
    /// Issues created.
    pub issues_created: u64,
    /// Issues regressed.
    pub regressions: u64,
}

impl BatchStats {
    /// Adds another batch's numbers.
    pub fn add(&mut self, o: &BatchStats) {
        self.records += o.records;
        self.accepted += o.accepted;
        self.transactions += o.transactions;
        self.filtered += o.filtered;
        self.invalid += o.invalid;
        self.duplicates += o.duplicates;
        self.skipped += o.skipped;
        self.issues_created += o.issues_created;
        self.regressions += o.regressions;
    }
}

/// A processed batch not yet written. Holds the issue write lock until committed or
/// dropped, so an API status change cannot interleave with the batch's issue updates.
pub struct BatchOutcome {
    batch: WriteBatch,
    /// What the batch did.
    pub stats: BatchStats,
    delta: StateDelta,
    _guard: MutexGuard<'static, ()>,
}

impl BatchOutcome {
    /// The write batch, to add a consumer offset to (embedded: [`storage::commit_consumed`];
    /// Kafka: the partition offsets).
    pub fn batch_mut(&mut self) -> &mut WriteBatch {
        &mut self.batch
    }

    /// Bytes of the write batch.
    pub fn batch_size_bytes(&self) -> usize {
        self.batch.size_in_bytes()
    }
}

impl std::fmt::Debug for BatchOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchOutcome")
            .field("stats", &self.stats)
            .finish()
    }
}

/// In-memory state that must only change once a batch is durably written.
#[derive(Default)]
struct StateDelta {
    next_issue_id: Option<u64>,
    short_ids: HashMap<u64, u64>,
    hashes: Vec<((u64, String), u64)>,
    users: Vec<(u64, u64)>,
    alerts: crate::alerts::PendingAlerts,
    /// The issue records the batch writes, as written.
    written_issues: FastMap<u64, IssueRecord>,
    /// The rest of the issue cache the batch started with (not touched by it).
    untouched_issues: FastMap<u64, IssueRecord>,
}

struct State {
    /// Next issue id to hand out; 0 = not loaded yet.
    next_issue_id: u64,
    /// Next short id number per project.
    short_ids: HashMap<u64, u64>,
    hash_cache: FastMap<(u64, String), u64>,
    user_cache: FastSet<(u64, u64)>,
    /// What the last batch grew to, for sizing the next one up front.
    sizes: SizeHints,
    /// Issue records as this processor last wrote them, for later batches: loading and
    /// decoding the ~280 records an errors batch of 1,024 events touches cost 6 M
    /// instructions of the sequential stage. At most [`ISSUE_CACHE_ENTRIES`].
    issue_cache: FastMap<u64, IssueRecord>,
    /// [`records::issue_record_writes`] right after this processor last wrote issue
    /// records (or when the cache was empty). Another value means someone else (an API
    /// status change) wrote issue records since: the cache is dropped before the next batch.
    issue_cache_writes: u64,
}

/// Most issue records [`State::issue_cache`] keeps (a few hundred bytes each).
const ISSUE_CACHE_ENTRIES: usize = 20_000;

/// How large a batch's write batch and counter map grew, per record and per payload byte,
/// to size the next batch's up front. Grown by doubling, RocksDB's write batch buffer copied
/// everything written so far at each step (3.4 M instructions per 1,024 error events, 4.5 M
/// per 1,024 transactions) and the counter map rehashed every key, all on the sequential
/// stage. A hint only: a batch that outgrows it grows as before.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct SizeHints {
    /// Write batch bytes per payload byte of the batch's records, in 1/1024ths.
    batch_bytes_per_payload_byte: u64,
    /// Distinct counter keys per record, in 1/1024ths.
    counters_per_record: u64,
}

impl Default for SizeHints {
    fn default() -> Self {
        SizeHints {
            batch_bytes_per_payload_byte: 2 << 10,
            counters_per_record: 8 << 10,
        }
    }
}

impl SizeHints {
    /// Most bytes reserved for one write batch up front (a hint never holds more).
    const MAX_BATCH_BYTES: u64 = 64 << 20;
    /// Most counter keys reserved up front.
    const MAX_COUNTERS: u64 = 1 << 20;

    /// Bytes to reserve for the write batch of records carrying `payload_bytes`: the last
    /// ratio with an eighth to spare, so a batch like the last one never grows.
    fn batch_capacity(&self, payload_bytes: usize) -> usize {
        let bytes = (payload_bytes as u64).saturating_mul(self.batch_bytes_per_payload_byte) >> 10;
        (bytes + bytes / 8 + (16 << 10)).min(Self::MAX_BATCH_BYTES) as usize
    }

    /// Counter keys to reserve for a batch of `records` records.
    fn counter_capacity(&self, records: usize) -> usize {
        let keys = (records as u64).saturating_mul(self.counters_per_record) >> 10;
        (keys + keys / 8).min(Self::MAX_COUNTERS) as usize
    }

    /// The hints after a batch of `records` records carrying `payload_bytes` wrote
    /// `batch_bytes` and had `counters` distinct counter keys. Empty batches teach nothing.
    fn learned(
        self,
        records: usize,
        payload_bytes: usize,
        batch_bytes: usize,
        counters: usize,
    ) -> SizeHints {
        if records == 0 || payload_bytes == 0 {
            return self;
        }
        SizeHints {
            // At most 64 write batch bytes per payload byte (a batch of tiny session
            // updates); at most 256 counters per record.
            batch_bytes_per_payload_byte: (batch_bytes as u64)
                .saturating_mul(1 << 10)
                .div_ceil(payload_bytes as u64)
                .min(64 << 10),
            counters_per_record: (counters as u64)
                .saturating_mul(1 << 10)
                .div_ceil(records as u64)
                .min(256 << 10),
        }
    }
}

/// The processor. Share it with `Arc`; [`Processor::spawn_embedded`] runs it on its own
/// thread over the embedded log.
pub struct Processor {
    store: Store,
    config: ProcessorConfig,
    state: Mutex<State>,
    alerts: crate::alerts::AlertEngine,
    /// Grouping configs per project, kept across batches so their stack-rule memo
    /// ([`crate::grouping::RuleCache`]) stays warm; rebuilt when the project's rules change.
    grouping: Mutex<HashMap<u64, ProjectGrouping>>,
    /// Issue ids and short-id numbers start above this (storage's `issue_id_floor`).
    id_floor: u64,
    /// Workers of the parallel stage (`None` with one preparing thread: it all runs here).
    pool: Option<PreparePool>,
    /// [`dedup_read_options`] of this thread's own dedup reads (the workers have theirs).
    dedup_read: rocksdb::ReadOptions,
    /// [`column_family_ids`] of the store, to append the workers' parts of a batch.
    cf_ids: Vec<(u32, &'static str)>,
}

/// A project's grouping config and the rule texts it was built from.
struct ProjectGrouping {
    fingerprinting_rules: String,
    enhancements: String,
    config: GroupingConfig,
}

impl std::fmt::Debug for Processor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Processor")
            .field("config", &self.config)
            .finish()
    }
}

const ISSUE_SEQUENCE: &str = "issue";

fn short_id_sequence(project_id: u64) -> String {
    format!("short_id:{project_id}")
}

fn read_sequence(store: &Store, name: &str) -> Result<u64> {
    Ok(store.sequence_value(name)?)
}

/// Per-batch working set.
struct Work<'a> {
    store: &'a Store,
    batch: WriteBatch,
    stats: BatchStats,
    delta: StateDelta,
    seen_events: FastSet<(u64, Uuid)>,
    hashes: FastMap<(u64, String), u64>,
    /// The issue records this batch changes (all written at its end).
    issues: FastMap<u64, IssueRecord>,
    /// Issue records of earlier batches ([`State::issue_cache`]): an issue the batch touches
    /// moves from here to `issues` instead of being read from the store.
    cached_issues: FastMap<u64, IssueRecord>,
    /// (issue id, user hash) pairs seen in this batch.
    users: FastSet<(u64, u64)>,
    /// The pairs of `users` in the order first seen, for [`Processor::count_new_users`].
    user_candidates: Vec<(u64, u64)>,
    counters: FastMap<Vec<u8>, i64>,
    outcomes: FastMap<Vec<u8>, i64>,
    scrubbers: HashMap<u64, Scrubber>,
    grouping: HashMap<u64, GroupingConfig>,
    next_issue_id: u64,
    short_ids: HashMap<u64, u64>,
    folder: TransactionFolder,
    user_folder: crate::perf_users::UserFolder,
    /// Release health counts of this batch (`sessions.rs`).
    sessions: crate::sessions::SessionFolder,
    alerts: crate::alerts::BatchAlerts,
    /// Releases seen in this batch: (project, version) → (first, last) event time.
    releases: HashMap<(u64, String), (u64, u64)>,
    /// Streamed children of this batch still waiting for their segment span, by (project,
    /// trace, segment span id): their index keys and v1 spans.
    pending_spans: HashMap<(u64, Uuid, u64), Vec<PendingChild>>,
    /// Stored events and their index keys, written at the end of the batch in key order.
    ordered_puts: KeyOrderedPuts,
    /// Set while a streamed segment's transaction goes through [`Processor::process_event`].
    storing_segment: bool,
    /// Stored values of the segments' transactions written in this batch, by event key: late
    /// children of this batch are appended to them ([`Processor::attach_late_spans`]).
    segment_values: HashMap<[u8; 24], Vec<u8>>,
}

/// A streamed child waiting for its segment in this batch: its pending-index key and v1 span.
type PendingChild = ([u8; 49], Value);

/// The longest index key a stored event has (the trace index key).
const MAX_EVENT_INDEX_KEY: usize = 41;

/// A batch's stored events and their index keys, put into the write batch in key order per
/// column family at the end of the batch. RocksDB inserts a write batch's entries into the
/// memtable skiplists in batch order, and an insert that lands just after the previous one of
/// its column family (events) or key kind (index: storage's insert hint per first byte) starts
/// its search from there instead of from the top. Event keys are random (project, event id),
/// and issue and trace index keys come in the issues' and traces' random order, so in log
/// order most inserts searched from the top. Measured (BENCHMARKS.md, session 10): the
/// errors commit 43.2 M → 39.7 M instructions per 1,024 events, about half of it spent again
/// on the sort and the later copy into the write batch.
#[derive(Default)]
struct KeyOrderedPuts {
    events: Vec<([u8; 24], Vec<u8>)>,
    /// Index keys (33 or 41 bytes, empty values), zero-padded, with their length.
    index: Vec<([u8; MAX_EVENT_INDEX_KEY], u8)>,
}

impl KeyOrderedPuts {
    /// A stored event (its key is not put twice in a batch: events are deduplicated).
    fn event(&mut self, key: [u8; 24], value: Vec<u8>) {
        self.events.push((key, value));
    }

    /// An index key of a stored event.
    fn index(&mut self, key: &[u8]) {
        let mut padded = [0u8; MAX_EVENT_INDEX_KEY];
        padded[..key.len()].copy_from_slice(key);
        self.index.push((padded, key.len() as u8));
    }

    /// Puts everything into `batch`, sorted, and empties itself.
    fn write_into(&mut self, store: &Store, batch: &mut WriteBatch) {
        // Compared on the first 16 bytes as one integer, then the whole key (see `key_prefix`):
        // the prefixes (project and half the event id; kind, owner and most of the time)
        // nearly always differ, so most comparisons need no `memcmp` call (the same trick as
        // the counters' sort in `finish`).
        if !self.events.is_empty() {
            self.events.sort_unstable_by(|a, b| {
                key_prefix(&a.0)
                    .cmp(&key_prefix(&b.0))
                    .then_with(|| a.0.cmp(&b.0))
            });
            let events_cf = store.cf(cf::EVENTS);
            for (key, value) in self.events.drain(..) {
                batch.put_cf(&events_cf, key, value);
            }
        }
        if !self.index.is_empty() {
            self.index.sort_unstable_by(|a, b| {
                key_prefix(&a.0)
                    .cmp(&key_prefix(&b.0))
                    .then_with(|| a.0[..usize::from(a.1)].cmp(&b.0[..usize::from(b.1)]))
            });
            let index_cf = store.cf(cf::INDEX);
            for (key, len) in self.index.drain(..) {
                batch.put_cf(&index_cf, &key[..usize::from(len)], []);
            }
        }
    }
}

impl Work<'_> {
    fn count(&mut self, key: Vec<u8>, n: i64) {
        *self.counters.entry(key).or_insert(0) += n;
    }

    /// [`Work::count`] for a borrowed key: most counters of a batch repeat (the same issue's
    /// tag values), so the key is only copied the first time.
    fn count_slice(&mut self, key: &[u8], n: i64) {
        match self.counters.get_mut(key) {
            Some(total) => *total += n,
            None => {
                self.counters.insert(key.to_vec(), n);
            }
        }
    }

    fn outcome(
        &mut self,
        project_id: u64,
        ts_ms: u64,
        outcome: u8,
        category: u8,
        reason: &str,
        n: i64,
    ) {
        let key = keys::outcome(
            project_id,
            keys::hour_start(ts_ms),
            outcome,
            category,
            reason,
        );
        *self.outcomes.entry(key).or_insert(0) += n;
    }
}

/// The parts of the envelope header the processor uses.
struct EnvelopeInfo {
    sent_at_ms: Option<i64>,
    sdk: Option<Value>,
}

fn envelope_info(header: &[u8]) -> EnvelopeInfo {
    let parsed: Option<Value> = if header.is_empty() {
        None
    } else {
        serde_json::from_slice(header).ok()
    };
    let sent_at_ms = parsed
        .as_ref()
        .and_then(|h| h.get("sent_at"))
        .and_then(Value::as_str)
        .and_then(normalize::parse_timestamp_str);
    let sdk = parsed.and_then(|mut h| h.get_mut("sdk").map(Value::take));
    EnvelopeInfo { sent_at_ms, sdk }
}

/// Builds a project's grouping configuration from its settings; broken rules are logged
/// and ignored (Sentry's defaults still apply) rather than failing every event.
fn grouping_config(project: &Project) -> GroupingConfig {
    let rules = project.settings.fingerprinting_rules.trim();
    let fingerprinting = (!rules.is_empty()).then(|| Value::String(rules.to_owned()));
    let enhancements = project.settings.grouping_enhancements.trim();
    GroupingConfig::from_rules(
        fingerprinting.as_ref(),
        (!enhancements.is_empty()).then_some(enhancements),
    )
    .unwrap_or_else(|e| {
        tracing::warn!(project = project.id, error = %e, "ignoring invalid grouping rules");
        GroupingConfig::default()
    })
}

/// Contributing grouping hashes of a normalized, scrubbed event, primary first.
fn grouping_hashes(event: &Value, config: &GroupingConfig) -> Vec<String> {
    crate::grouping::compute_hashes(event, config)
}

/// Records prepared in parallel per step of a batch: bounds the prepared events (each holds
/// its JSON tree and encoded bytes) held in memory at once.
const PREPARE_CHUNK: usize = 32;

/// A chunk is split over the workers in parts of at least this many records: below that,
/// handing a part over costs more than it saves.
const MIN_RECORDS_PER_THREAD: usize = 8;

/// What the parallel stage hands the sequential one for each record.
enum Prepared {
    /// Not an event (attachments, spans, client reports, …): processed in order as is.
    Other,
    /// Rejected before any batch state is involved (unknown project, invalid JSON or event,
    /// unreadable security report).
    Invalid {
        project_id: u64,
        at_ms: u64,
        category: u8,
        reason: &'static str,
    },
    /// A normalized event already in the store (same project and event id): a duplicate,
    /// not prepared any further.
    Stored,
    /// The store failed the dedup read of a normalized event; the batch fails with it.
    ReadFailed(rocksdb::Error),
    /// A normalized event.
    Event(Box<PreparedEvent>),
}

/// An event after everything that needs no batch state.
struct PreparedEvent {
    project: Arc<Project>,
    event_id: Uuid,
    /// The event's (corrected) time, unix ms.
    timestamp_ms: u64,
    event_type: EventType,
    /// The event tree, kept only when the project has issue alert rules (their conditions
    /// and filters may read any field). Otherwise it is dropped in the parallel stage: freeing
    /// a tree is ~15 K instructions per event, which the sequential stage would pay in series.
    event: Option<Value>,
    /// `release`, when the event has one.
    release: Option<String>,
    kind: PreparedKind,
    trace_id: Option<Uuid>,
    /// The event's compact JSON (empty for filtered events and invalid transactions).
    body: Vec<u8>,
}

enum PreparedKind {
    /// Dropped by this inbound filter (not scrubbed, grouped or encoded).
    Filtered(&'static str),
    /// A transaction's facts for the fold, or why it is invalid.
    Transaction(std::result::Result<TransactionFacts, TransactionError>),
    /// An error event's grouping hashes (primary first), issue facts and what its counters
    /// need.
    Error {
        hashes: Vec<String>,
        facts: IssueFacts,
        counted: CountedFacts,
    },
}

/// Per-project state the parallel stage reads (built before it by
/// `Processor::ensure_project_caches`).
struct PrepareCaches<'a> {
    scrubbers: &'a HashMap<u64, Scrubber>,
    grouping: &'a HashMap<u64, GroupingConfig>,
    /// Read options of the event-id dedup read ([`dedup_read_options`]; not shareable
    /// between threads, so each thread brings its own).
    dedup_read: &'a rocksdb::ReadOptions,
}

/// [`PrepareCaches`] owned, to be shared with the worker pool for one batch.
struct OwnedCaches {
    scrubbers: HashMap<u64, Scrubber>,
    grouping: HashMap<u64, GroupingConfig>,
}

impl OwnedCaches {
    fn borrowed<'a>(&'a self, dedup_read: &'a rocksdb::ReadOptions) -> PrepareCaches<'a> {
        PrepareCaches {
            scrubbers: &self.scrubbers,
            grouping: &self.grouping,
            dedup_read,
        }
    }
}

/// Read options of the event-id dedup read: nearly all of them miss, and a bloom false
/// positive would otherwise pull a 32 KB block of stored events into the block cache for
/// nothing.
fn dedup_read_options() -> rocksdb::ReadOptions {
    let mut read = rocksdb::ReadOptions::default();
    read.fill_cache(false);
    read
}

/// Work for the pool's threads.
enum PoolJob {
    /// Records of a chunk to prepare.
    Prepare(PrepareJob),
    /// A part of the end of a batch, written into a write batch of its own.
    Finish(FinishJob),
}

/// A [`FinishPart`] for a worker.
struct FinishJob {
    store: Store,
    part: FinishPart,
    index: usize,
    reply: std::sync::mpsc::Sender<(usize, WriteBatch)>,
}

/// Parts of the end of a batch handed to the pool: they arrive on `results`.
struct PendingParts {
    results: std::sync::mpsc::Receiver<(usize, WriteBatch)>,
    parts: usize,
}

impl PendingParts {
    /// The parts' write batches, in the order the parts were given.
    fn wait(self) -> Vec<WriteBatch> {
        let mut parts: Vec<(usize, WriteBatch)> = Vec::with_capacity(self.parts);
        for _ in 0..self.parts {
            match self.results.recv() {
                Ok(part) => parts.push(part),
                // As for a chunk (`PendingChunk::wait`): only a panic drops a reply unsent.
                Err(_) => panic!("a processor worker thread panicked"),
            }
        }
        parts.sort_by_key(|(index, _)| *index);
        parts.into_iter().map(|(_, batch)| batch).collect()
    }
}

/// One part of a chunk for a worker.
struct PrepareJob {
    store: Store,
    records: Arc<[LogRecord]>,
    range: std::ops::Range<usize>,
    caches: Arc<OwnedCaches>,
    part: usize,
    reply: std::sync::mpsc::Sender<(usize, Vec<Prepared>)>,
}

/// Long-lived threads for the parallel stage. Threads spawned per chunk cost more than the
/// work they saved on a busy 2-core machine, and each new thread's allocator heap raised the
/// peak RSS by ~20 MiB; these live as long as the processor (they end when it is dropped,
/// with the job channel).
struct PreparePool {
    jobs: Mutex<std::sync::mpsc::Sender<PoolJob>>,
    threads: usize,
    /// Handed to each job, never kept by a worker between jobs.
    store: Store,
}

/// A chunk handed to the pool: its parts arrive on `results`.
struct PendingChunk {
    results: std::sync::mpsc::Receiver<(usize, Vec<Prepared>)>,
    parts: usize,
}

impl PendingChunk {
    /// The chunk's prepared records, in order.
    fn wait(self) -> Vec<Prepared> {
        let mut parts: Vec<(usize, Vec<Prepared>)> = Vec::with_capacity(self.parts);
        for _ in 0..self.parts {
            match self.results.recv() {
                Ok(part) => parts.push(part),
                // A worker only drops its reply unsent when the event work panicked: a bug,
                // surfaced here as it would have been without the pool.
                Err(_) => panic!("a processor worker thread panicked"),
            }
        }
        parts.sort_by_key(|(part, _)| *part);
        parts
            .into_iter()
            .flat_map(|(_, prepared)| prepared)
            .collect()
    }
}

impl PreparePool {
    fn start(store: &Store, threads: usize) -> std::io::Result<PreparePool> {
        let store = store.clone();
        let (jobs, queue) = std::sync::mpsc::channel::<PoolJob>();
        let queue = Arc::new(Mutex::new(queue));
        for n in 0..threads {
            let queue = Arc::clone(&queue);
            std::thread::Builder::new()
                .name(format!("osprey-prepare-{n}"))
                .spawn(move || {
                    let dedup_read = dedup_read_options();
                    loop {
                        // The lock is held only while waiting for the next job.
                        let job = queue.lock().recv();
                        let job = match job {
                            Ok(PoolJob::Prepare(job)) => job,
                            Ok(PoolJob::Finish(FinishJob {
                                store,
                                part,
                                index,
                                reply,
                            })) => {
                                let mut batch = WriteBatch::default();
                                part(&store, &mut batch);
                                drop(store);
                                let _ = reply.send((index, batch));
                                continue;
                            }
                            Err(_) => return, // the processor is gone
                        };
                        let PrepareJob {
                            store,
                            records,
                            range,
                            caches,
                            part,
                            reply,
                        } = job;
                        let prepared = records[range]
                            .iter()
                            .map(|r| prepare_record(&store, r, &caches.borrowed(&dedup_read)))
                            .collect();
                        // Let go of the store before answering: once the batch has its parts,
                        // the processor may be dropped and the data directory reopened.
                        drop((store, records, caches));
                        // The batch may have failed and gone; nothing waits for this part then.
                        let _ = reply.send((part, prepared));
                    }
                })?;
        }
        Ok(PreparePool {
            jobs: Mutex::new(jobs),
            threads,
            store,
        })
    }

    /// Splits `range` of `records` over the workers.
    fn submit(
        &self,
        records: &Arc<[LogRecord]>,
        range: std::ops::Range<usize>,
        caches: &Arc<OwnedCaches>,
    ) -> PendingChunk {
        let parts = self
            .threads
            .min(range.len() / MIN_RECORDS_PER_THREAD)
            .max(1);
        let per_part = range.len().div_ceil(parts);
        let (reply, results) = std::sync::mpsc::channel();
        let jobs = self.jobs.lock();
        let mut sent = 0;
        for (part, start) in range.clone().step_by(per_part).enumerate() {
            let job = PrepareJob {
                store: self.store.clone(),
                records: Arc::clone(records),
                range: start..(start + per_part).min(range.end),
                caches: Arc::clone(caches),
                part,
                reply: reply.clone(),
            };
            // Workers only stop when this pool is dropped, so a send cannot fail here.
            if jobs.send(PoolJob::Prepare(job)).is_ok() {
                sent += 1;
            }
        }
        PendingChunk {
            results,
            parts: sent,
        }
    }

    /// Hands the parts of the end of a batch to the workers.
    fn finish(&self, parts: Vec<FinishPart>) -> PendingParts {
        let (reply, results) = std::sync::mpsc::channel();
        let jobs = self.jobs.lock();
        let mut sent = 0;
        for (index, part) in parts.into_iter().enumerate() {
            let job = FinishJob {
                store: self.store.clone(),
                part,
                index,
                reply: reply.clone(),
            };
            if jobs.send(PoolJob::Finish(job)).is_ok() {
                sent += 1;
            }
        }
        PendingParts {
            results,
            parts: sent,
        }
    }
}

/// The parallel stage of one record: events and transactions (and security reports, which
/// become events) are parsed, normalized, filtered, scrubbed, tagged, grouped and encoded;
/// anything else is left to the sequential stage.
fn prepare_record(store: &Store, record: &LogRecord, caches: &PrepareCaches<'_>) -> Prepared {
    match record.item_type.as_str() {
        "event" | "transaction" => prepare_event(store, record, caches),
        "security" => {
            match security::report_to_event(&record.payload, &record.item_header, record.event_id) {
                // From here on it is an event like any other.
                Ok(event) => prepare_event(
                    store,
                    &LogRecord {
                        item_type: "event".into(),
                        payload: event.into(),
                        ..record.clone()
                    },
                    caches,
                ),
                Err(reason) => Prepared::Invalid {
                    project_id: record.project_id,
                    at_ms: record.received_ms,
                    category: category::SECURITY,
                    reason,
                },
            }
        }
        _ => Prepared::Other,
    }
}

fn prepare_event(store: &Store, record: &LogRecord, caches: &PrepareCaches<'_>) -> Prepared {
    let is_tx = record.item_type == "transaction";
    let item_category = if is_tx {
        category::TRANSACTION
    } else {
        category::ERROR
    };
    let Some(project) = store.meta().project(record.project_id) else {
        return Prepared::Invalid {
            project_id: record.project_id,
            at_ms: record.received_ms,
            category: item_category,
            reason: "project_id",
        };
    };
    let env = envelope_info(&record.envelope_header);
    let ctx = NormalizeContext {
        project_id: project.id,
        key_id: record.key_id,
        received_ms: record.received_ms,
        sent_at_ms: env.sent_at_ms,
        header_event_id: record.event_id,
        client_addr: record.client_addr,
        envelope_sdk: env.sdk.as_ref(),
        max_past_ms: store.retention_ms(),
        is_transaction_item: is_tx,
    };
    let mut normalized = match normalize::normalize(&record.payload, &ctx) {
        Ok(n) => n,
        Err(invalid) => {
            tracing::debug!(reason = invalid.reason, detail = %invalid.detail, "invalid event");
            return Prepared::Invalid {
                project_id: project.id,
                at_ms: record.received_ms,
                category: item_category,
                reason: invalid.reason,
            };
        }
    };
    // Dedup against the store here, where the reads run in parallel: a batch's results are
    // written only when it is committed, after all of its records were prepared, so the
    // store answers as it would in the sequential stage. Dedup within the batch stays there
    // (`Work::seen_events`). A duplicate is neither filtered, scrubbed, grouped nor encoded.
    match store.db().get_pinned_cf_opt(
        &store.cf(cf::EVENTS),
        keys::event(project.id, &normalized.event_id),
        caches.dedup_read,
    ) {
        Ok(Some(_)) => return Prepared::Stored,
        Ok(None) => {}
        Err(e) => return Prepared::ReadFailed(e),
    }
    let (kind, body) =
        if let Some(filter) = filters::should_filter(&normalized.event, &project.settings) {
            (PreparedKind::Filtered(filter), Vec::new())
        } else {
            match caches.scrubbers.get(&project.id) {
                Some(scrubber) => scrubber.scrub(&mut normalized.event),
                None => Scrubber::from_settings(&project.settings).scrub(&mut normalized.event),
            }
            issues::add_derived_tags(&mut normalized.event);
            let kind = if normalized.event_type == EventType::Transaction {
                let facts = TransactionFacts::extract(&normalized.event);
                if facts.is_ok() {
                    issues::annotate_transaction(&mut normalized.event);
                }
                PreparedKind::Transaction(facts)
            } else {
                let mut hashes = match caches.grouping.get(&project.id) {
                    Some(config) => grouping_hashes(&normalized.event, config),
                    None => grouping_hashes(&normalized.event, &grouping_config(&project)),
                };
                if hashes.is_empty() {
                    // Sentry always has a hash (its fallback variant); guard against none.
                    hashes.push(crate::grouping::hash_values(["<no grouping>"]));
                }
                let facts = issues::derive_facts(&normalized.event);
                issues::annotate_event(&mut normalized.event, &facts);
                let counted =
                    CountedFacts::of_event(&normalized.event, project.id, normalized.timestamp_ms);
                PreparedKind::Error {
                    hashes,
                    facts,
                    counted,
                }
            };
            let body = match &kind {
                PreparedKind::Transaction(Err(_)) => Vec::new(),
                // Normalization adds a few hundred bytes of fields to what was received
                // and rewrites little else; the payload is bounded by ingest's item limit.
                _ => crate::encode::encode_event_body_sized(
                    &normalized.event,
                    record.payload.len() + record.payload.len() / 8 + 1024,
                ),
            };
            (kind, body)
        };
    let trace_id = crate::issues::path(&normalized.event, &["contexts", "trace", "trace_id"])
        .and_then(Value::as_str)
        .and_then(|t| Uuid::try_parse(t).ok());
    let release = normalized
        .event
        .get("release")
        .and_then(Value::as_str)
        .map(str::to_owned);
    // Issue alert rules are evaluated in the sequential stage on the whole event; without
    // rules nothing there reads the tree, and it is freed here, on a worker.
    let event = match &kind {
        PreparedKind::Error { .. } if !store.alert_rules(project.id).is_empty() => {
            Some(normalized.event)
        }
        _ => None,
    };
    Prepared::Event(Box::new(PreparedEvent {
        project,
        event_id: normalized.event_id,
        timestamp_ms: normalized.timestamp_ms,
        event_type: normalized.event_type,
        event,
        release,
        kind,
        trace_id,
        body,
    }))
}

/// What an error event's counters read, taken from the event in the parallel stage.
struct CountedFacts {
    /// The issue tag counter keys of its tags.
    tag_keys: issues::IssueTagKeys,
    /// Sentry's `user` tag value ([`issues::user_tag`]), for the issue's unique users.
    user: Option<String>,
    /// The performance views' "error events per minute" counter keys
    /// ([`keys::perf::error_event_keys`]): they depend only on the project, the event's time
    /// and environment, so they are built here rather than in the sequential stage.
    error_event_keys: [Vec<u8>; 3],
}

impl CountedFacts {
    fn of_event(event: &Value, project_id: u64, timestamp_ms: u64) -> CountedFacts {
        let environment = event
            .get("environment")
            .and_then(Value::as_str)
            .unwrap_or("");
        CountedFacts {
            tag_keys: issues::IssueTagKeys::of_event(event),
            user: issues::user_tag(event),
            error_event_keys: keys::perf::error_event_keys(project_id, timestamp_ms, environment),
        }
    }
}

impl Processor {
    /// A processor over `store` (must be the primary).
    pub fn new(store: Store, config: ProcessorConfig) -> Result<Processor> {
        store.ensure_writable()?;
        // Ids start above this node's floor (nonzero in Kafka mode): ids and short ids made
        // by different processor nodes never collide.
        let id_floor = store.issue_id_floor()?;
        let next_issue_id = read_sequence(&store, ISSUE_SEQUENCE)?.max(id_floor) + 1;
        let pool = if config.prepare_threads > 1 {
            Some(
                PreparePool::start(&store, config.prepare_threads)
                    .map_err(crate::error::ProcessorError::Thread)?,
            )
        } else {
            None
        };
        let cf_ids = column_family_ids(&store);
        Ok(Processor {
            store,
            config,
            state: Mutex::new(State {
                next_issue_id,
                short_ids: HashMap::new(),
                hash_cache: FastMap::default(),
                user_cache: FastSet::default(),
                sizes: SizeHints::default(),
                issue_cache: FastMap::default(),
                issue_cache_writes: records::issue_record_writes(),
            }),
            alerts: crate::alerts::AlertEngine::new(crate::alerts::AlertConfig::default()),
            grouping: Mutex::new(HashMap::new()),
            id_floor,
            pool,
            dedup_read: dedup_read_options(),
            cf_ids,
        })
    }

    /// The project's grouping config (shared with earlier batches while its rules are
    /// unchanged).
    fn project_grouping(&self, project: &Project) -> GroupingConfig {
        let settings = &project.settings;
        let mut all = self.grouping.lock();
        if let Some(g) = all.get(&project.id) {
            if g.fingerprinting_rules == settings.fingerprinting_rules
                && g.enhancements == settings.grouping_enhancements
            {
                return g.config.clone();
            }
        }
        let config = grouping_config(project);
        all.insert(
            project.id,
            ProjectGrouping {
                fingerprinting_rules: settings.fingerprinting_rules.clone(),
                enhancements: settings.grouping_enhancements.clone(),
                config: config.clone(),
            },
        );
        config
    }

    /// The issue alert engine (set its delivery queue with
    /// [`crate::alerts::AlertEngine::set_delivery`]).
    pub fn alerts(&self) -> &crate::alerts::AlertEngine {
        &self.alerts
    }

    /// The store it writes to.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Its tuning (batch sizes, idle wait).
    pub fn config(&self) -> &ProcessorConfig {
        &self.config
    }

    /// Processes records into a write batch without writing it.
    pub fn process_batch(&self, records: &[LogRecord]) -> Result<BatchOutcome> {
        let guard = records::issue_write_lock();
        let (next_issue_id, short_ids, sizes, cached_issues) = {
            let mut st = self.state.lock();
            // Under the issue write lock (held since above): nobody writes issue records
            // between this check and the batch's commit.
            if st.issue_cache_writes != records::issue_record_writes() {
                st.issue_cache.clear();
            }
            // Taken, not shared: if the batch is never committed, the records it changed
            // must not be reused, and an empty cache is always current.
            let cached = std::mem::take(&mut st.issue_cache);
            (st.next_issue_id, st.short_ids.clone(), st.sizes, cached)
        };
        let payload_bytes: usize = records.iter().map(|r| r.payload.len()).sum();
        let mut work = Work {
            store: &self.store,
            batch: WriteBatch::with_capacity_bytes(sizes.batch_capacity(payload_bytes)),
            stats: BatchStats::default(),
            delta: StateDelta::default(),
            seen_events: FastSet::with_capacity_and_hasher(records.len(), Default::default()),
            hashes: FastMap::default(),
            issues: FastMap::default(),
            cached_issues,
            users: FastSet::default(),
            user_candidates: Vec::new(),
            counters: FastMap::with_capacity_and_hasher(
                sizes.counter_capacity(records.len()),
                Default::default(),
            ),
            outcomes: FastMap::default(),
            scrubbers: HashMap::new(),
            grouping: HashMap::new(),
            next_issue_id,
            short_ids,
            folder: TransactionFolder::new(),
            user_folder: crate::perf_users::UserFolder::new(),
            sessions: crate::sessions::SessionFolder::new(),
            alerts: crate::alerts::BatchAlerts::default(),
            releases: HashMap::new(),
            pending_spans: HashMap::new(),
            ordered_puts: KeyOrderedPuts::default(),
            storing_segment: false,
            segment_values: HashMap::new(),
        };
        // Two stages per chunk of records: the per-event work that needs no batch state
        // (`prepare_record`), then issue assignment, counters and the write batch in log
        // order on this thread (`apply_prepared`). With the worker pool, the next chunk is
        // prepared while this thread applies the current one.
        self.ensure_project_caches(&mut work, records.iter());
        // Moved out of `work` so the workers can read them while this thread changes `work`
        // (a record applied here that needs them again rebuilds them).
        let caches = Arc::new(OwnedCaches {
            scrubbers: std::mem::take(&mut work.scrubbers),
            grouping: std::mem::take(&mut work.grouping),
        });
        match &self.pool {
            Some(pool) if records.len() > PREPARE_CHUNK => {
                let shared: Arc<[LogRecord]> = records.into();
                let chunks: Vec<std::ops::Range<usize>> = (0..records.len())
                    .step_by(PREPARE_CHUNK)
                    .map(|start| start..(start + PREPARE_CHUNK).min(records.len()))
                    .collect();
                let mut next = Some(pool.submit(&shared, chunks[0].clone(), &caches));
                for (i, range) in chunks.iter().enumerate() {
                    let prepared = next.take().map(PendingChunk::wait).unwrap_or_default();
                    next = chunks
                        .get(i + 1)
                        .map(|r| pool.submit(&shared, r.clone(), &caches));
                    self.apply_chunk(&mut work, &records[range.clone()], prepared)?;
                }
            }
            _ => {
                let borrowed = caches.borrowed(&self.dedup_read);
                for chunk in records.chunks(PREPARE_CHUNK) {
                    let prepared: Vec<Prepared> = chunk
                        .iter()
                        .map(|r| prepare_record(&self.store, r, &borrowed))
                        .collect();
                    self.apply_chunk(&mut work, chunk, prepared)?;
                }
            }
        }
        let counters = work.counters.len();
        let outcome = self.finish(work, guard)?;
        let learned = sizes.learned(
            records.len(),
            payload_bytes,
            outcome.batch.size_in_bytes(),
            counters,
        );
        self.state.lock().sizes = learned;
        Ok(outcome)
    }

    /// The sequential stage of one chunk: `prepared` holds one entry per record, in order.
    fn apply_chunk(
        &self,
        work: &mut Work<'_>,
        chunk: &[LogRecord],
        prepared: Vec<Prepared>,
    ) -> Result<()> {
        for (record, prepared) in chunk.iter().zip(prepared) {
            work.stats.records += 1;
            self.apply_prepared(work, record, prepared)?;
        }
        Ok(())
    }

    /// Writes a processed batch (with whatever offset the caller added) and only then
    /// updates the in-memory caches and sequences.
    pub fn commit(&self, outcome: BatchOutcome) -> Result<BatchStats> {
        let BatchOutcome {
            batch,
            stats,
            delta,
            _guard,
        } = outcome;
        self.store.write(batch, self.config.sync_commits)?;
        let mut st = self.state.lock();
        if let Some(next) = delta.next_issue_id {
            st.next_issue_id = next;
        }
        // Still under the batch's issue write lock (`_guard`). The cache now holds what the
        // store holds: the records just written and the untouched rest.
        if !delta.written_issues.is_empty() {
            st.issue_cache_writes = records::count_issue_record_write();
        }
        let mut issue_cache = delta.untouched_issues;
        if issue_cache.len() + delta.written_issues.len() > ISSUE_CACHE_ENTRIES {
            // Full: keep this batch's issues, the likeliest to come again.
            issue_cache.clear();
        }
        issue_cache.extend(delta.written_issues);
        st.issue_cache = issue_cache;
        st.short_ids.extend(delta.short_ids);
        if st.hash_cache.len() + delta.hashes.len() > self.config.cache_entries {
            st.hash_cache.clear();
        }
        st.hash_cache.extend(delta.hashes);
        if st.user_cache.len() + delta.users.len() > self.config.cache_entries {
            st.user_cache.clear();
        }
        st.user_cache.extend(delta.users);
        drop(st);
        // Issue alerts fired by this batch are delivered only now that it is durable.
        self.alerts.committed(delta.alerts);
        Ok(stats)
    }

    /// Processes and commits records without a log offset (tests, tools).
    pub fn process_and_commit(&self, records: &[LogRecord]) -> Result<BatchStats> {
        let outcome = self.process_batch(records)?;
        self.commit(outcome)
    }

    /// Runs over the embedded log until `shutdown` is set: read a batch from the committed
    /// offset, process, write results + offset in one batch, release the log budget.
    /// Store errors are logged and retried after a pause (the batch is simply re-read).
    pub fn run_embedded(&self, log: Arc<EmbeddedLog>, shutdown: Arc<AtomicBool>) {
        let reader = log.reader();
        let mut next = match storage::consumer_offset(&self.store, storage::EMBEDDED_CONSUMER) {
            Ok(n) => n,
            Err(e) => {
                tracing::error!(error = %e, "processor cannot read its offset");
                return;
            }
        };
        while !shutdown.load(Ordering::Acquire) {
            let generation = log.signal().generation();
            match self.embedded_step(&reader, &log, next) {
                Ok(Some(n)) => next = n,
                Ok(None) => log.signal().wait_past(generation, self.config.idle_wait),
                Err(e) => {
                    tracing::error!(error = %e, offset = next, "processor batch failed; retrying");
                    std::thread::sleep(Duration::from_secs(1));
                }
            }
        }
    }

    /// One batch of the embedded loop; `Ok(None)` when the log is drained.
    pub fn embedded_step(
        &self,
        reader: &storage::LogReader,
        log: &EmbeddedLog,
        from: u64,
    ) -> Result<Option<u64>> {
        let read = reader.read(from, self.config.batch_records, self.config.batch_bytes)?;
        let Some(&(last, _)) = read.last() else {
            return Ok(None);
        };
        let bytes: u64 = read.iter().map(|(_, r)| r.encoded_len() as u64).sum();
        let records: Vec<LogRecord> = read.into_iter().map(|(_, r)| r).collect();
        let mut outcome = self.process_batch(&records)?;
        storage::commit_consumed(
            &self.store,
            outcome.batch_mut(),
            storage::EMBEDDED_CONSUMER,
            last + 1,
        );
        self.commit(outcome)?;
        log.release(bytes);
        Ok(Some(last + 1))
    }

    /// Starts [`Processor::run_embedded`] on a dedicated thread.
    pub fn spawn_embedded(
        self: Arc<Self>,
        log: Arc<EmbeddedLog>,
        shutdown: Arc<AtomicBool>,
    ) -> std::io::Result<std::thread::JoinHandle<()>> {
        std::thread::Builder::new()
            .name("osprey-processor".into())
            .spawn(move || self.run_embedded(log, shutdown))
    }

    fn process_record(&self, work: &mut Work<'_>, record: &LogRecord) -> Result<()> {
        match record.item_type.as_str() {
            // Events, transactions and security reports (which become events).
            "event" | "transaction" | "security" => self.process_event(work, record),
            "attachment" => store_attachment(work, record),
            "span" => self.process_spans(work, record),
            "session" | "sessions" => process_session(work, record),
            "client_report" => {
                work.stats.skipped += 1;
                client_report(work, record);
                Ok(())
            }
            "user_report" | "feedback" => {
                let (outcome_id, reason) =
                    match crate::feedback::store_item(work.store, &mut work.batch, record)? {
                        Ok(()) => (outcome::ACCEPTED, ""),
                        Err(refusal) => {
                            work.stats.invalid += 1;
                            (outcome::INVALID, refusal.reason())
                        }
                    };
                let feedback = category::from_name("feedback");
                work.outcome(
                    record.project_id,
                    record.received_ms,
                    outcome_id,
                    feedback,
                    reason,
                    1,
                );
                Ok(())
            }
            other => {
                work.stats.skipped += 1;
                unsupported_item(work, record, other);
                Ok(())
            }
        }
    }

    /// A `span` item (streamed spans): each segment span becomes a transaction event
    /// (`spans.rs`) processed exactly like a `transaction` item, under an event id derived
    /// from its trace and span ids so a replay of the item dedups.
    fn process_spans(&self, work: &mut Work<'_>, record: &LogRecord) -> Result<()> {
        let converted = match crate::spans::segment_transactions(&record.payload) {
            Ok(c) => c,
            Err(reason) => {
                work.stats.invalid += 1;
                work.outcome(
                    record.project_id,
                    record.received_ms,
                    outcome::INVALID,
                    category::from_name("span"),
                    reason,
                    1,
                );
                return Ok(());
            }
        };
        if converted.transactions.is_empty() {
            work.stats.skipped += 1;
        }
        self.keep_pending_spans(work, record.project_id, converted.pending);
        let mut transactions = converted.transactions;
        for event in &mut transactions {
            self.take_pending_spans(work, record.project_id, event)?;
        }
        for event in &transactions {
            // Encoding a `Value` cannot fail (string keys only); never stall the batch on it.
            let Ok(payload) = serde_json::to_vec(event) else {
                work.stats.invalid += 1;
                continue;
            };
            let event_id = event
                .get("event_id")
                .and_then(Value::as_str)
                .and_then(|s| Uuid::try_parse(s).ok());
            let synthetic = LogRecord {
                event_id,
                item_type: "transaction".into(),
                item_header: bytes::Bytes::from_static(b"{\"type\":\"transaction\"}"),
                payload: bytes::Bytes::from(payload),
                ..record.clone()
            };
            work.storing_segment = true;
            let result = self.process_event(work, &synthetic);
            work.storing_segment = false;
            result?;
        }
        Ok(())
    }

    /// Children whose segment span has not arrived yet: kept (in this batch's map, and in the
    /// index for later batches) until [`Processor::take_pending_spans`] finds their segment.
    fn keep_pending_spans(
        &self,
        work: &mut Work<'_>,
        project_id: u64,
        pending: Vec<crate::spans::PendingSpan>,
    ) {
        let index = self.store.cf(cf::INDEX);
        for p in pending {
            let key =
                keys::pending_span(project_id, &p.trace_id, p.segment_id, p.end_ms, p.span_id);
            // Encoding a `Value` cannot fail (string keys only).
            let Ok(bytes) = serde_json::to_vec(&p.span) else {
                continue;
            };
            work.batch.put_cf(&index, key, bytes);
            let list = work
                .pending_spans
                .entry((project_id, p.trace_id, p.segment_id))
                .or_default();
            // Bounded like a transaction's children: more could never be attached.
            if list.len() < crate::spans::MAX_CHILD_SPANS {
                list.push((key, p.span));
            }
        }
    }

    /// Adds to a streamed segment's transaction the children that came before it (earlier in
    /// this batch or in earlier batches) and deletes them from the pending index.
    fn take_pending_spans(
        &self,
        work: &mut Work<'_>,
        project_id: u64,
        event: &mut Value,
    ) -> Result<()> {
        let Some((trace_id, segment_id)) = crate::spans::segment_of_transaction(event) else {
            return Ok(());
        };
        let index = self.store.cf(cf::INDEX);
        let prefix = keys::pending_span_prefix(project_id, &trace_id, segment_id);
        let mut found: Vec<PendingChild> = work
            .pending_spans
            .remove(&(project_id, trace_id, segment_id))
            .unwrap_or_default();
        let mode = rocksdb::IteratorMode::From(&prefix, rocksdb::Direction::Forward);
        for item in self.store.db().iterator_cf(&index, mode) {
            let (key, value) = item?;
            if !key.starts_with(&prefix) || found.len() >= crate::spans::MAX_CHILD_SPANS {
                break;
            }
            let (Ok(key), Ok(span)) = (
                <[u8; 49]>::try_from(&key[..]),
                crate::value::from_slice(&value),
            ) else {
                continue;
            };
            if !found.iter().any(|(k, _)| *k == key) {
                found.push((key, span));
            }
        }
        if found.is_empty() {
            return Ok(());
        }
        let mut spans = Vec::with_capacity(found.len());
        for (key, span) in found {
            work.batch.delete_cf(&index, key);
            spans.push(span);
        }
        let overflow = crate::spans::attach_pending(event, spans);
        if overflow > 0 {
            tracing::debug!(
                overflow,
                "segment has more children than a transaction keeps"
            );
        }
        Ok(())
    }

    /// Streamed children of this batch whose segment's transaction is already stored (in an
    /// earlier batch, or earlier in this one): the SDK sends its buffered spans concurrently,
    /// so the item with the segment can be logged before an item with its first children.
    /// The stored transaction gets them appended (up to [`crate::spans::MAX_CHILD_SPANS`]);
    /// children of a segment not seen yet stay pending for [`Processor::take_pending_spans`].
    fn attach_late_spans(&self, work: &mut Work<'_>) -> Result<()> {
        let groups = std::mem::take(&mut work.pending_spans);
        let store = work.store;
        let events = store.cf(cf::EVENTS);
        let index = store.cf(cf::INDEX);
        for ((project_id, trace_id, segment_id), children) in groups {
            let event_id = crate::spans::segment_event_id(
                &trace_id.simple().to_string(),
                &format!("{segment_id:016x}"),
            );
            let key = keys::event(project_id, &event_id);
            let value = match work.segment_values.get(&key) {
                Some(v) => Some(v.clone()),
                None => store.db().get_cf(&events, key)?,
            };
            let Some(value) = value else {
                continue;
            };
            let Ok(mut stored) = records::decode_event(&value) else {
                continue;
            };
            let Some(spans) = stored
                .event
                .get_mut("spans")
                .and_then(serde_json::Value::as_array_mut)
            else {
                continue;
            };
            let room = crate::spans::MAX_CHILD_SPANS.saturating_sub(spans.len());
            for (_, span) in children.iter().take(room) {
                if let Ok(span) = serde_json::to_value(span) {
                    spans.push(span);
                }
            }
            let value = records::encode_event_plain(&stored)?;
            work.batch.put_cf(&events, key, &value);
            work.segment_values.insert(key, value);
            for (pending_key, _) in &children {
                work.batch.delete_cf(&index, pending_key);
            }
        }
        Ok(())
    }

    /// One event record through both stages (used for records that arrive one at a time
    /// inside another record, such as the transactions of a `span` item).
    fn process_event(&self, work: &mut Work<'_>, record: &LogRecord) -> Result<()> {
        self.ensure_project_caches(work, std::iter::once(record));
        let prepared = prepare_record(
            &self.store,
            record,
            &PrepareCaches {
                scrubbers: &work.scrubbers,
                grouping: &work.grouping,
                dedup_read: &self.dedup_read,
            },
        );
        self.apply_prepared(work, record, prepared)
    }

    /// Builds the batch's scrubber and grouping configuration of every project `records`
    /// name, so the parallel stage only reads them.
    fn ensure_project_caches<'r>(
        &self,
        work: &mut Work<'_>,
        records: impl Iterator<Item = &'r LogRecord>,
    ) {
        for record in records {
            if work.scrubbers.contains_key(&record.project_id) {
                continue;
            }
            let Some(project) = self.store.meta().project(record.project_id) else {
                continue;
            };
            work.scrubbers
                .insert(project.id, Scrubber::from_settings(&project.settings));
            work.grouping
                .insert(project.id, self.project_grouping(&project));
        }
    }

    /// The batch-state half of an event: dedup, inbound filter outcome, transaction fold or
    /// issue assignment and counters, alerts, then the stored event and its indexes.
    fn apply_prepared(
        &self,
        work: &mut Work<'_>,
        record: &LogRecord,
        prepared: Prepared,
    ) -> Result<()> {
        let prepared = match prepared {
            Prepared::Other => return self.process_record(work, record),
            Prepared::Invalid {
                project_id,
                at_ms,
                category,
                reason,
            } => {
                work.stats.invalid += 1;
                work.outcome(project_id, at_ms, outcome::INVALID, category, reason, 1);
                return Ok(());
            }
            Prepared::Stored => {
                work.stats.duplicates += 1;
                return Ok(());
            }
            Prepared::ReadFailed(e) => return Err(e.into()),
            Prepared::Event(prepared) => *prepared,
        };
        let PreparedEvent {
            project,
            event_id,
            timestamp_ms: ts,
            event_type,
            event,
            release,
            kind,
            trace_id,
            body,
        } = prepared;
        let ev_category = match event_type {
            EventType::Transaction => category::TRANSACTION,
            _ => category::ERROR,
        };
        // Dedup within the batch (against the store: `prepare_event`).
        let dedup_key = (project.id, event_id);
        let event_key = keys::event(project.id, &event_id);
        if !work.seen_events.insert(dedup_key) {
            work.stats.duplicates += 1;
            return Ok(());
        }

        let (issue_id, hashes) = match kind {
            PreparedKind::Filtered(filter) => {
                work.stats.filtered += 1;
                // Outcomes count when they happen (receive time), like Relay's, not event time.
                work.outcome(
                    project.id,
                    record.received_ms,
                    outcome::FILTERED,
                    ev_category,
                    filter,
                    1,
                );
                return Ok(());
            }
            PreparedKind::Transaction(Err(e)) => {
                tracing::debug!(error = %e, "invalid transaction");
                work.stats.invalid += 1;
                work.outcome(
                    project.id,
                    ts,
                    outcome::INVALID,
                    ev_category,
                    e.outcome_reason(),
                    1,
                );
                return Ok(());
            }
            PreparedKind::Transaction(Ok(facts)) => {
                work.folder.fold(&project, &facts);
                work.user_folder.add(&project, &facts);
                work.stats.transactions += 1;
                (None, Vec::new())
            }
            PreparedKind::Error {
                hashes,
                facts,
                mut counted,
            } => {
                let (created, regressed) = (work.stats.issues_created, work.stats.regressions);
                let issue_id = self.assign_issue(work, &project, &hashes, &facts, ts)?;
                self.count_issue(work, &project, issue_id, &mut counted, ts)?;
                // Issue alerts (alerts.rs): evaluate the project's rules on this event (kept
                // by the parallel stage only when the project has rules).
                if let (Some(event), Some(issue)) = (&event, work.issues.get(&issue_id)) {
                    let event_facts = crate::alerts::EventFacts {
                        event,
                        event_id,
                        was_new: work.stats.issues_created > created,
                        was_regression: work.stats.regressions > regressed,
                        now_ms: record.received_ms,
                    };
                    self.alerts.observe(
                        &mut work.alerts,
                        work.store,
                        &project,
                        issue,
                        &event_facts,
                    )?;
                }
                // "Error events per minute" for the performance views, summed per batch.
                for key in counted.error_event_keys {
                    work.count(key, 1);
                }
                (Some(issue_id), hashes)
            }
        };

        if let Some(release) = release {
            let span = work
                .releases
                .entry((project.id, release))
                .or_insert((ts, ts));
            span.0 = span.0.min(ts);
            span.1 = span.1.max(ts);
        }
        // The same bytes as `records::encode_event_plain` of a `StoredEvent`: the head known
        // only now (issue id, hashes) and the event's JSON written in the parallel stage.
        let mut id_buf = Uuid::encode_buffer();
        let value = crate::encode::encode_stored_event_with_body(
            &crate::encode::StoredEventHead {
                event_id: event_id.simple().encode_lower(&mut id_buf),
                project_id: project.id,
                issue_id,
                timestamp_ms: ts,
                received_ms: record.received_ms,
                hashes: &hashes,
            },
            &body,
        );
        if work.storing_segment {
            // Children of this segment may still come later in this batch.
            work.segment_values.insert(event_key, value.clone());
        }
        let puts = &mut work.ordered_puts;
        puts.event(event_key, value);
        if let Some(issue_id) = issue_id {
            puts.index(&keys::index_by_time(
                keys::index::ISSUE_TIME,
                issue_id,
                ts,
                &event_id,
            ));
        }
        puts.index(&keys::index_by_time(
            keys::index::PROJECT_TIME,
            project.id,
            ts,
            &event_id,
        ));
        if let Some(trace) = trace_id {
            puts.index(&keys::index_trace(&trace, ts, &event_id));
        }
        work.stats.accepted += 1;
        work.outcome(
            project.id,
            record.received_ms,
            outcome::ACCEPTED,
            ev_category,
            "",
            1,
        );
        Ok(())
    }

    /// Finds the issue any of `hashes` belongs to, or creates one; maps every new hash to it.
    fn assign_issue(
        &self,
        work: &mut Work<'_>,
        project: &Project,
        hashes: &[String],
        facts: &IssueFacts,
        ts: u64,
    ) -> Result<u64> {
        let mut found = None;
        let mut unmapped = Vec::new();
        for hash in hashes {
            let key = (project.id, hash.clone());
            let hit = match work.hashes.get(&key) {
                Some(id) => Some(*id),
                None => {
                    let cached = self.state.lock().hash_cache.get(&key).copied();
                    match cached {
                        Some(id) => Some(id),
                        None => self
                            .store
                            .db()
                            .get_pinned_cf(
                                &self.store.cf(cf::ISSUES),
                                keys::issue_hash(project.id, hash),
                            )?
                            .and_then(|v| v.as_ref().try_into().ok().map(u64::from_be_bytes)),
                    }
                }
            };
            match hit {
                Some(id) => {
                    work.hashes.insert(key, id);
                    if found.is_none() {
                        found = Some(id);
                    }
                }
                None => unmapped.push(hash.clone()),
            }
        }
        let issue_id = match found {
            Some(id) => {
                if let std::collections::hash_map::Entry::Vacant(slot) = work.issues.entry(id) {
                    let record = match work.cached_issues.remove(&id) {
                        Some(cached) => Some(cached),
                        None => records::load_issue(&self.store, id)?,
                    };
                    match record {
                        Some(rec) => {
                            slot.insert(rec);
                        }
                        None => {
                            // A hash pointing at a missing record (damaged or deleted): start
                            // a fresh issue rather than fail the batch.
                            tracing::warn!(
                                issue = id,
                                "hash points at a missing issue; recreating"
                            );
                            return self.create_issue(work, project, hashes, facts, ts);
                        }
                    }
                }
                let resolve_age_ms = project.settings.resolve_age_hours.saturating_mul(3_600_000);
                if let Some(issue) = work.issues.get_mut(&id) {
                    if issues::apply_event(issue, facts, ts, resolve_age_ms) {
                        work.stats.regressions += 1;
                        // Sentry's SET_REGRESSION activity, so the issue's history says why
                        // it reopened and in which release.
                        storage::workflow::add_activity_in_batch(
                            work.store,
                            &mut work.batch,
                            id,
                            "set_regression",
                            serde_json::json!({"version": facts.release}),
                            None,
                        )?;
                    }
                }
                id
            }
            None => return self.create_issue(work, project, hashes, facts, ts),
        };
        let issues_cf = self.store.cf(cf::ISSUES);
        for hash in unmapped {
            work.batch.put_cf(
                &issues_cf,
                keys::issue_hash(project.id, &hash),
                issue_id.to_be_bytes(),
            );
            work.hashes.insert((project.id, hash.clone()), issue_id);
            work.delta.hashes.push(((project.id, hash), issue_id));
        }
        Ok(issue_id)
    }

    fn create_issue(
        &self,
        work: &mut Work<'_>,
        project: &Project,
        hashes: &[String],
        facts: &IssueFacts,
        ts: u64,
    ) -> Result<u64> {
        let id = work.next_issue_id;
        work.next_issue_id += 1;
        let short = match work.short_ids.get(&project.id) {
            Some(n) => *n,
            None => {
                read_sequence(&self.store, &short_id_sequence(project.id))?.max(self.id_floor) + 1
            }
        };
        work.short_ids.insert(project.id, short + 1);
        let primary = hashes.first().map(String::as_str).unwrap_or("");
        let issue = issues::new_issue(id, project.id, short, facts, ts, primary);
        let issues_cf = self.store.cf(cf::ISSUES);
        work.batch.put_cf(
            &issues_cf,
            keys::issue_short_id(project.id, short),
            id.to_be_bytes(),
        );
        for hash in hashes {
            work.batch.put_cf(
                &issues_cf,
                keys::issue_hash(project.id, hash),
                id.to_be_bytes(),
            );
            work.hashes.insert((project.id, hash.clone()), id);
            work.delta.hashes.push(((project.id, hash.clone()), id));
        }
        work.issues.insert(id, issue);
        work.stats.issues_created += 1;
        Ok(id)
    }

    fn count_issue(
        &self,
        work: &mut Work<'_>,
        project: &Project,
        issue_id: u64,
        counted: &mut CountedFacts,
        ts: u64,
    ) -> Result<()> {
        work.count_slice(
            &keys::issue_counter(keys::counters::ISSUE_EVENTS, issue_id),
            1,
        );
        work.count_slice(
            &keys::issue_hourly(project.id, keys::hour_start(ts), issue_id),
            1,
        );
        for key in counted.tag_keys.for_issue(issue_id) {
            work.count_slice(key, 1);
        }
        if let Some(user) = &counted.user {
            // Whether the user is new to the issue is settled for the whole batch at once
            // (`Processor::count_new_users`): here only the batch's first sight of each pair.
            let member = (issue_id, xxhash_rust::xxh3::xxh3_64(user.as_bytes()));
            if work.users.insert(member) {
                work.user_candidates.push(member);
            }
        }
        Ok(())
    }

    /// The (issue, user) pairs of this batch that neither the user cache nor the store knows:
    /// each gets its membership key and adds one to its issue's user counter. One batched
    /// read of the store (keys in order) instead of a point lookup per error event: almost
    /// all of them miss, and a batched miss costs a fraction of a lone `get`'s setup. The
    /// counter is a sum written at the end of the batch, so deciding here gives the same
    /// counts as deciding event by event.
    fn count_new_users(&self, work: &mut Work<'_>) -> Result<()> {
        let mut candidates = std::mem::take(&mut work.user_candidates);
        {
            let st = self.state.lock();
            candidates.retain(|member| !st.user_cache.contains(member));
        }
        if candidates.is_empty() {
            return Ok(());
        }
        // (issue id, user hash) order is the keys' byte order (both big-endian).
        candidates.sort_unstable();
        let member_keys: Vec<[u8; 17]> = candidates
            .iter()
            .map(|&(issue_id, user_hash)| keys::issue_user(issue_id, user_hash))
            .collect();
        let issues_cf = work.store.cf(cf::ISSUES);
        let found = work
            .store
            .db()
            .batched_multi_get_cf(&issues_cf, &member_keys, true);
        for ((member, key), found) in candidates.iter().zip(&member_keys).zip(found) {
            if found?.is_some() {
                continue;
            }
            work.batch.put_cf(&issues_cf, key, []);
            work.count_slice(
                &keys::issue_counter(keys::counters::ISSUE_USERS, member.0),
                1,
            );
            work.delta.users.push(*member);
        }
        Ok(())
    }

    fn finish(&self, mut work: Work<'_>, guard: MutexGuard<'static, ()>) -> Result<BatchOutcome> {
        // Before `attach_late_spans`, which may put a stored segment again (the later put wins).
        work.ordered_puts.write_into(work.store, &mut work.batch);
        self.attach_late_spans(&mut work)?;
        // Before the counters are handed over: it adds the issues' user counts.
        self.count_new_users(&mut work)?;
        let store = work.store;
        // The parts of the end of the batch that need nothing else of it (their keys are
        // written by no other part, or only merged into by commutative sums): with the worker
        // pool they run on the workers, idle at this point, while this thread writes the rest.
        let (totals_back, totals_returned) = std::sync::mpsc::channel();
        let issues = std::mem::take(&mut work.issues);
        let counters = std::mem::take(&mut work.counters);
        let mut folder = std::mem::replace(&mut work.folder, TransactionFolder::new());
        let mut user_folder =
            std::mem::replace(&mut work.user_folder, crate::perf_users::UserFolder::new());
        let parts: Vec<FinishPart> = vec![
            // Encoded and sorted there but written here: appending ~8,000 counter merges
            // from a part costs three times what merging them directly does.
            Box::new(move |_: &Store, _: &mut WriteBatch| {
                let totals = EncodedTotals::of(&issues, counters);
                // The receiver lives until `finish` returns, which waits for this part.
                let _ = totals_back.send((issues, totals));
            }),
            Box::new(move |store: &Store, batch: &mut WriteBatch| {
                folder.flush_into(store, batch);
            }),
            Box::new(move |store: &Store, batch: &mut WriteBatch| {
                user_folder.flush_into(store, batch);
            }),
        ];
        let pending = match &self.pool {
            Some(pool) => Some(pool.finish(parts)),
            None => {
                for part in parts {
                    part(store, &mut work.batch);
                }
                None
            }
        };
        work.sessions.flush_into(store, &mut work.batch);
        // Fired issue alerts: history + throttle marks go into this batch.
        work.delta.alerts =
            self.alerts
                .finish(std::mem::take(&mut work.alerts), store, &mut work.batch);
        for ((project_id, version), (first, last)) in &work.releases {
            storage::ensure_release(store, &mut work.batch, *project_id, version, *first, *last)?;
        }
        let outcomes_cf = store.cf(cf::OUTCOMES);
        for (key, n) in &work.outcomes {
            work.batch.merge_cf(&outcomes_cf, key, encode_i64(*n));
        }
        let meta_cf = store.cf(cf::META);
        let start_next = self.state.lock().next_issue_id;
        if work.next_issue_id != start_next {
            // The sequence stores the last id handed out, like storage's other sequences.
            work.batch.put_cf(
                &meta_cf,
                keys::prefixed_str(keys::meta::SEQUENCE, ISSUE_SEQUENCE),
                (work.next_issue_id - 1).to_be_bytes(),
            );
            work.delta.next_issue_id = Some(work.next_issue_id);
        }
        for (project_id, next) in &work.short_ids {
            work.batch.put_cf(
                &meta_cf,
                keys::prefixed_str(keys::meta::SEQUENCE, &short_id_sequence(*project_id)),
                (next - 1).to_be_bytes(),
            );
        }
        work.delta.short_ids = std::mem::take(&mut work.short_ids);
        if let Some(pending) = pending {
            let parts = pending.wait();
            append_parts(store, &self.cf_ids, &mut work.batch, &parts)?;
        }
        // Sent by the first part, which has run (inline or on a worker) by now; a worker
        // that panicked has made `wait` panic above.
        let Ok((issues, totals)) = totals_returned.recv() else {
            // Unreachable: the part has sent before it returned. Losing the batch's counters
            // silently would be worse than stopping here.
            panic!("the end of the batch lost its issue records and counters");
        };
        totals.write_into(store, &mut work.batch);
        work.delta.written_issues = issues;
        work.delta.untouched_issues = std::mem::take(&mut work.cached_issues);
        Ok(BatchOutcome {
            batch: work.batch,
            stats: work.stats,
            delta: work.delta,
            _guard: guard,
        })
    }
}

/// The first 16 bytes of `key` (zero-padded) as a big-endian integer: for two keys whose
/// prefixes differ, the integers order as the keys do; equal prefixes leave the order to the
/// whole keys.
fn key_prefix(key: &[u8]) -> u128 {
    let mut head = [0u8; 16];
    let n = key.len().min(16);
    head[..n].copy_from_slice(&key[..n]);
    u128::from_be_bytes(head)
}

/// The batch's issue records encoded and its counters, each in key order, ready to be
/// written ([`EncodedTotals::write_into`]).
struct EncodedTotals {
    /// (issue id, encoded record), by id.
    issues: Vec<(u64, Vec<u8>)>,
    /// The counter keys one after the other, in key order.
    counter_keys: Vec<u8>,
    /// Where each key ends in `counter_keys`, and its sum.
    counters: Vec<(u32, i64)>,
}

impl EncodedTotals {
    /// Encodes the issue records and sorts the counters. Sorted on the keys' first 16 bytes
    /// as one integer first: most pairs differ there (kind, issue id, start of the tag key),
    /// so most comparisons need no `memcmp` call. The keys are copied into one buffer, so
    /// the map's keys are freed here (on a worker, with the pool) rather than where the
    /// totals are written.
    fn of(issues: &FastMap<u64, IssueRecord>, counters: FastMap<Vec<u8>, i64>) -> EncodedTotals {
        let mut encoded: Vec<(u64, Vec<u8>)> = issues
            .iter()
            .map(|(id, issue)| (*id, issue.to_bytes()))
            .collect();
        encoded.sort_unstable_by_key(|(id, _)| *id);
        let mut sorted: Vec<(u128, Vec<u8>, i64)> = counters
            .into_iter()
            .map(|(key, n)| (key_prefix(&key), key, n))
            .collect();
        sorted.sort_unstable_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.cmp(&b.1)));
        let mut counter_keys = Vec::with_capacity(sorted.iter().map(|(_, k, _)| k.len()).sum());
        let mut ends = Vec::with_capacity(sorted.len());
        for (_, key, n) in sorted {
            counter_keys.extend_from_slice(&key);
            ends.push((counter_keys.len() as u32, n));
        }
        EncodedTotals {
            issues: encoded,
            counter_keys,
            counters: ends,
        }
    }

    /// Puts the issue records and merges the counters into `batch`, each in key order:
    /// RocksDB's memtable skiplist keeps the position of its last insert, so an insert just
    /// after the previous one skips most of the search from the top. In hash-map order each
    /// of the ~12 counter merges per error event (mostly tag facets) searched the whole
    /// memtable.
    fn write_into(&self, store: &Store, batch: &mut WriteBatch) {
        let issues_cf = store.cf(cf::ISSUES);
        for (id, bytes) in &self.issues {
            batch.put_cf(&issues_cf, keys::issue(*id), bytes);
        }
        let counters_cf = store.cf(cf::COUNTERS);
        let mut start = 0;
        for &(end, n) in &self.counters {
            let key = &self.counter_keys[start..end as usize];
            batch.merge_cf(&counters_cf, key, encode_i64(n));
            start = end as usize;
        }
    }
}

/// A part of the end of a batch that writes only its own keys ([`Processor::finish`]).
type FinishPart = Box<dyn FnOnce(&Store, &mut WriteBatch) + Send>;

/// The column family id RocksDB gives each of the store's column families in a write
/// batch (what [`rocksdb::WriteBatchIteratorCf`] reports), learned by writing one entry.
fn column_family_ids(store: &Store) -> Vec<(u32, &'static str)> {
    /// Records the column family id of the one entry of a batch.
    struct FirstId(Option<u32>);
    impl rocksdb::WriteBatchIteratorCf for FirstId {
        fn put_cf(&mut self, cf_id: u32, _: &[u8], _: &[u8]) {
            self.0 = Some(cf_id);
        }
        fn delete_cf(&mut self, cf_id: u32, _: &[u8]) {
            self.0 = Some(cf_id);
        }
        fn merge_cf(&mut self, cf_id: u32, _: &[u8], _: &[u8]) {
            self.0 = Some(cf_id);
        }
    }
    let mut ids = Vec::with_capacity(cf::ALL.len());
    for &name in cf::ALL {
        let Some(handle) = store.cf_if_present(name) else {
            continue;
        };
        let mut probe = WriteBatch::default();
        probe.put_cf(&handle, [], []);
        let mut first = FirstId(None);
        probe.iterate_cf(&mut first);
        if let Some(id) = first.0 {
            ids.push((id, name));
        }
    }
    ids
}

/// Appends the entries of `parts` (write batches the workers filled) to `batch`, in order.
/// A batch of RocksDB's C API cannot take another's entries whole; each is put or merged
/// again, which costs a fraction of what building them cost.
fn append_parts(
    store: &Store,
    cf_ids: &[(u32, &'static str)],
    batch: &mut WriteBatch,
    parts: &[WriteBatch],
) -> Result<()> {
    struct Append<'a, 'b> {
        batch: &'a mut WriteBatch,
        handles: Vec<(u32, Arc<rocksdb::BoundColumnFamily<'b>>)>,
        unknown: Option<u32>,
    }
    impl rocksdb::WriteBatchIteratorCf for Append<'_, '_> {
        fn put_cf(&mut self, cf_id: u32, key: &[u8], value: &[u8]) {
            match self.handles.iter().find(|(id, _)| *id == cf_id) {
                Some((_, handle)) => self.batch.put_cf(handle, key, value),
                None => self.unknown = Some(cf_id),
            }
        }
        fn delete_cf(&mut self, cf_id: u32, key: &[u8]) {
            match self.handles.iter().find(|(id, _)| *id == cf_id) {
                Some((_, handle)) => self.batch.delete_cf(handle, key),
                None => self.unknown = Some(cf_id),
            }
        }
        fn merge_cf(&mut self, cf_id: u32, key: &[u8], value: &[u8]) {
            match self.handles.iter().find(|(id, _)| *id == cf_id) {
                Some((_, handle)) => self.batch.merge_cf(handle, key, value),
                None => self.unknown = Some(cf_id),
            }
        }
    }
    let mut append = Append {
        batch,
        handles: cf_ids
            .iter()
            .map(|&(id, name)| (id, store.cf(name)))
            .collect(),
        unknown: None,
    };
    for part in parts {
        part.iterate_cf(&mut append);
    }
    match append.unknown {
        None => Ok(()),
        Some(id) => Err(crate::error::ProcessorError::UnknownColumnFamily(id)),
    }
}

/// Keeps an attachment item under its event (the envelope's event id). Replays write the same
/// key (the id hashes header and content), so a crash never stores it twice.
fn store_attachment(work: &mut Work<'_>, record: &LogRecord) -> Result<()> {
    #[derive(serde::Deserialize, Default)]
    #[serde(default)]
    struct Header {
        filename: Option<String>,
        content_type: Option<String>,
        attachment_type: Option<String>,
    }
    let Some(event_id) = record.event_id else {
        // Ingest gives every envelope with an attachment an event id; a record without one
        // came from elsewhere (Kafka) and has nothing to attach to.
        work.stats.invalid += 1;
        work.outcome(
            record.project_id,
            record.received_ms,
            outcome::INVALID,
            category::ATTACHMENT,
            "no_event_id",
            record.payload.len() as i64,
        );
        return Ok(());
    };
    let header: Header = serde_json::from_slice(&record.item_header).unwrap_or_default();
    let meta = storage::attachments::AttachmentMeta {
        id: storage::attachments::attachment_id(&record.item_header, &record.payload),
        name: header.filename.unwrap_or_else(|| "attachment".to_owned()),
        content_type: header.content_type,
        attachment_type: header
            .attachment_type
            .unwrap_or_else(|| "event.attachment".to_owned()),
        size: record.payload.len() as u64,
        received_ms: record.received_ms,
    };
    storage::attachments::put(
        work.store,
        &mut work.batch,
        record.project_id,
        &event_id,
        &meta,
        &record.payload,
    )?;
    Ok(())
}

/// A `session` or `sessions` item: folded into the release health counters
/// (`sessions.rs`), outcome `accepted` or `invalid` with the reason, category `session`.
fn process_session(work: &mut Work<'_>, record: &LogRecord) -> Result<()> {
    let folded = work.sessions.add_item(
        work.store,
        record.project_id,
        &record.item_type,
        &record.payload,
        record.received_ms,
    )?;
    let (id, reason) = match folded {
        crate::sessions::Folded::Accepted => (outcome::ACCEPTED, ""),
        crate::sessions::Folded::Rejected(reason) => {
            work.stats.invalid += 1;
            (outcome::INVALID, reason)
        }
    };
    work.outcome(
        record.project_id,
        record.received_ms,
        id,
        category::SESSION,
        reason,
        1,
    );
    Ok(())
}

/// An item of a product osprey keeps no data for: cron check-ins, logs, trace metrics,
/// profiles, replays, metric buckets. The SDK was answered 200, as Relay answers; Relay drops
/// an item whose product is disabled for the project with outcome `invalid`, reason
/// `feature_disabled`, in the item's category, and so does osprey: the drop is counted in the
/// outcomes instead of vanishing. Types with no data category (unknown to osprey, as to
/// Relay) are dropped without an outcome, as Relay does.
fn unsupported_item(work: &mut Work<'_>, record: &LogRecord, item_type: &str) {
    let cat = match item_type {
        "check_in" => category::from_name("monitor"),
        "log" => category::from_name("log_item"),
        "trace_metric" => category::from_name("trace_metric"),
        "profile" => category::from_name("profile"),
        "profile_chunk" => category::from_name("profile_chunk"),
        "replay_event" | "replay_recording" => category::from_name("replay"),
        "replay_video" => category::from_name("replay_video"),
        "statsd" | "metric_buckets" => category::from_name("metric_bucket"),
        "form_data" | "unreal_report" => category::ERROR,
        // Relay makes log items of NEL reports (one per report).
        "nel" => category::from_name("log_item"),
        _ => return,
    };
    // Container items (logs, trace metrics) count their items, as Relay's outcomes do.
    #[derive(serde::Deserialize, Default)]
    #[serde(default)]
    struct Header {
        item_count: Option<u32>,
    }
    let header: Header = serde_json::from_slice(&record.item_header).unwrap_or_default();
    let quantity = header.item_count.unwrap_or(1).max(1);
    tracing::debug!(
        item_type,
        quantity,
        "dropping an item of a product osprey does not keep (outcome feature_disabled)"
    );
    work.outcome(
        record.project_id,
        record.received_ms,
        outcome::INVALID,
        cat,
        "feature_disabled",
        i64::from(quantity),
    );
}

/// Client reports become outcomes: discarded → `client_discard`, rate limited →
/// `rate_limited`, filtered → `filtered`, with the SDK's reason and category.
fn client_report(work: &mut Work<'_>, record: &LogRecord) {
    let Ok(report) = crate::value::from_slice(&record.payload) else {
        work.outcome(
            record.project_id,
            record.received_ms,
            outcome::INVALID,
            category::DEFAULT,
            "invalid_json",
            1,
        );
        return;
    };
    for (field, outcome_id) in [
        ("discarded_events", outcome::CLIENT_DISCARD),
        ("rate_limited_events", outcome::RATE_LIMITED),
        ("filtered_events", outcome::FILTERED),
    ] {
        let Some(list) = report.get(field).and_then(Value::as_array) else {
            continue;
        };
        for entry in list.iter().take(1000) {
            let reason = entry.get("reason").and_then(Value::as_str).unwrap_or("");
            let cat = entry.get("category").and_then(Value::as_str).unwrap_or("");
            let quantity = entry.get("quantity").and_then(Value::as_u64).unwrap_or(0);
            if reason.len() > 200 || quantity == 0 {
                continue;
            }
            let cat = category::from_name(cat);
            let quantity = quantity.min(u32::MAX as u64) as i64;
            work.outcome(
                record.project_id,
                record.received_ms,
                outcome_id,
                cat,
                reason,
                quantity,
            );
        }
    }
}

/// A log record for tests and benches: one `event` item with `payload`.
pub fn event_record(
    project_id: u64,
    received_ms: u64,
    payload: &[u8],
    client_addr: Option<IpAddr>,
) -> LogRecord {
    LogRecord {
        project_id,
        key_id: 1,
        received_ms,
        event_id: None,
        item_type: "event".into(),
        envelope_header: bytes::Bytes::new(),
        item_header: bytes::Bytes::from_static(b"{\"type\":\"event\"}"),
        client_addr,
        payload: bytes::Bytes::copy_from_slice(payload),
    }
}

/// A log record for tests: one item of `item_type` with `payload`, as an SDK's envelope of
/// project `project_id` would carry it.
pub fn item_record(
    project_id: u64,
    received_ms: u64,
    item_type: &str,
    payload: &[u8],
) -> LogRecord {
    LogRecord {
        item_type: item_type.into(),
        item_header: bytes::Bytes::from(format!("{{\"type\":\"{item_type}\"}}")),
        ..event_record(project_id, received_ms, payload, None)
    }
}

#[cfg(test)]
mod tests {
    use super::{
        append_parts, column_family_ids, key_prefix, EncodedTotals, KeyOrderedPuts, SizeHints,
    };
    use crate::fast_hash::FastMap;
    use storage::records::IssueRecord;
    use storage::{keys, Store, StoreOptions, WriteBatch};
    use uuid::Uuid;

    /// Every put of a write batch: (column family id, key, value), in batch order.
    #[derive(Default)]
    struct Puts(Vec<(u32, Vec<u8>, Vec<u8>)>);

    impl rocksdb::WriteBatchIteratorCf for Puts {
        fn put_cf(&mut self, cf_id: u32, key: &[u8], value: &[u8]) {
            self.0.push((cf_id, key.to_vec(), value.to_vec()));
        }
        fn delete_cf(&mut self, _: u32, key: &[u8]) {
            panic!("unexpected delete of {key:?}");
        }
        fn merge_cf(&mut self, _: u32, key: &[u8], _: &[u8]) {
            panic!("unexpected merge of {key:?}");
        }
    }

    #[test]
    fn ordered_puts_write_each_column_family_sorted() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), &StoreOptions::default()).unwrap();
        let mut puts = KeyOrderedPuts::default();
        let (mut events, mut index) = (Vec::new(), Vec::new());
        for i in 0..60u64 {
            // Ids, issues, projects and traces in an order unrelated to the keys'.
            let mixed = i.wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(17);
            let event_id = Uuid::from_u64_pair(mixed, i);
            let trace_id = Uuid::from_u64_pair(mixed.rotate_left(9), 7);
            let ts = 1_700_000_000_000 + (mixed % 5_000);
            let key = keys::event(1 + mixed % 3, &event_id);
            let value = format!("event {i}").into_bytes();
            puts.event(key, value.clone());
            events.push((key.to_vec(), value));
            for key in [
                keys::index_by_time(keys::index::ISSUE_TIME, mixed % 11, ts, &event_id).to_vec(),
                keys::index_by_time(keys::index::PROJECT_TIME, 1 + mixed % 3, ts, &event_id)
                    .to_vec(),
                keys::index_trace(&trace_id, ts, &event_id).to_vec(),
            ] {
                puts.index(&key);
                index.push((key, Vec::new()));
            }
        }
        let mut batch = WriteBatch::default();
        puts.write_into(&store, &mut batch);
        let mut written = Puts::default();
        batch.iterate_cf(&mut written);
        // Events first (one column family), then the index (another), each in key order.
        events.sort();
        index.sort();
        let (first, rest) = written.0.split_at(events.len());
        assert!(first.iter().all(|(cf, _, _)| *cf == first[0].0));
        assert!(rest
            .iter()
            .all(|(cf, _, _)| *cf == rest[0].0 && *cf != first[0].0));
        let strip = |puts: &[(u32, Vec<u8>, Vec<u8>)]| -> Vec<(Vec<u8>, Vec<u8>)> {
            puts.iter()
                .map(|(_, k, v)| (k.clone(), v.clone()))
                .collect()
        };
        assert_eq!(strip(first), events);
        assert_eq!(strip(rest), index);
        // Emptied: a second write adds nothing.
        let mut again = WriteBatch::default();
        puts.write_into(&store, &mut again);
        assert_eq!(again.len(), 0);
    }

    /// Every entry of a write batch: (operation, column family id, key, value), in order.
    #[derive(Default, Debug, PartialEq)]
    struct Entries(Vec<(char, u32, Vec<u8>, Vec<u8>)>);

    impl rocksdb::WriteBatchIteratorCf for Entries {
        fn put_cf(&mut self, cf_id: u32, key: &[u8], value: &[u8]) {
            self.0.push(('p', cf_id, key.to_vec(), value.to_vec()));
        }
        fn delete_cf(&mut self, cf_id: u32, key: &[u8]) {
            self.0.push(('d', cf_id, key.to_vec(), Vec::new()));
        }
        fn merge_cf(&mut self, cf_id: u32, key: &[u8], value: &[u8]) {
            self.0.push(('m', cf_id, key.to_vec(), value.to_vec()));
        }
    }

    #[test]
    fn appended_parts_are_the_entries_written_directly() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), &StoreOptions::default()).unwrap();
        let cf_ids = column_family_ids(&store);
        assert_eq!(cf_ids.len(), storage::cf::ALL.len());
        // Distinct ids, one per column family.
        let mut ids: Vec<u32> = cf_ids.iter().map(|(id, _)| *id).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), cf_ids.len());
        // The same writes, once straight into one batch and once as a main batch and two
        // parts appended to it.
        let write = |batch: &mut WriteBatch, part: usize| {
            for (n, &name) in storage::cf::ALL.iter().enumerate() {
                let cf = store.cf(name);
                let key = format!("{part}-{n}-{name}").into_bytes();
                batch.put_cf(&cf, &key, [n as u8; 3]);
                batch.merge_cf(&cf, &key, [part as u8]);
                batch.delete_cf(&cf, b"gone");
            }
        };
        let mut direct = WriteBatch::default();
        for part in 0..3 {
            write(&mut direct, part);
        }
        let mut main = WriteBatch::default();
        write(&mut main, 0);
        let parts: Vec<WriteBatch> = (1..3)
            .map(|part| {
                let mut batch = WriteBatch::default();
                write(&mut batch, part);
                batch
            })
            .collect();
        append_parts(&store, &cf_ids, &mut main, &parts).unwrap();
        let (mut want, mut got) = (Entries::default(), Entries::default());
        direct.iterate_cf(&mut want);
        main.iterate_cf(&mut got);
        assert_eq!(got.0.len(), 3 * 3 * storage::cf::ALL.len());
        assert_eq!(got, want);
        assert_eq!(main.data(), direct.data());
        // A part naming a column family the store does not know is an error, not a loss.
        let unknown = &cf_ids[..cf_ids.len() - 1];
        let err = append_parts(&store, unknown, &mut WriteBatch::default(), &parts);
        assert!(err.is_err());
    }

    #[test]
    fn encoded_totals_write_issues_by_id_and_counters_in_byte_order() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), &StoreOptions::default()).unwrap();
        // Keys around the 16-byte prefix boundary, prefixes of each other, equal prefixes.
        let keys: Vec<Vec<u8>> = vec![
            b"t\0\0\0\0\0\0\0\x01browser\0Chrome".to_vec(),
            b"t\0\0\0\0\0\0\0\x01browser\0".to_vec(),
            b"t\0\0\0\0\0\0\0\x01browser.name\0Chrome".to_vec(),
            b"t\0\0\0\0\0\0\0\x02a".to_vec(),
            b"a".to_vec(),
            vec![0xff; 33],
            vec![0xff; 16],
        ];
        let counters: FastMap<Vec<u8>, i64> = keys
            .iter()
            .enumerate()
            .map(|(n, k)| (k.clone(), n as i64 - 3))
            .collect();
        let mut issues: FastMap<u64, IssueRecord> = FastMap::default();
        for id in [9u64, 2, 5] {
            let facts = crate::issues::derive_facts(&crate::value::Value::from(
                serde_json::json!({"message": format!("issue {id}")}),
            ));
            issues.insert(id, crate::issues::new_issue(id, 1, id, &facts, 1_000, "h"));
        }
        let totals = EncodedTotals::of(&issues, counters.clone());
        let mut batch = WriteBatch::default();
        totals.write_into(&store, &mut batch);
        let mut written = Entries::default();
        batch.iterate_cf(&mut written);
        let (puts, merges): (Vec<_>, Vec<_>) = written.0.iter().partition(|e| e.0 == 'p');
        let want_issues: Vec<(Vec<u8>, Vec<u8>)> = [2u64, 5, 9]
            .iter()
            .map(|id| (keys::issue(*id).to_vec(), issues[id].to_bytes()))
            .collect();
        let got_issues: Vec<(Vec<u8>, Vec<u8>)> =
            puts.iter().map(|e| (e.2.clone(), e.3.clone())).collect();
        assert_eq!(got_issues, want_issues);
        let mut want_counters: Vec<(Vec<u8>, Vec<u8>)> = counters
            .iter()
            .map(|(k, n)| (k.clone(), storage::encode_i64(*n).to_vec()))
            .collect();
        want_counters.sort();
        let got_counters: Vec<(Vec<u8>, Vec<u8>)> =
            merges.iter().map(|e| (e.2.clone(), e.3.clone())).collect();
        assert_eq!(got_counters, want_counters);
    }

    #[test]
    fn size_hints_reserve_what_the_last_batch_used_and_stay_bounded() {
        let start = SizeHints::default();
        // A batch like the last one fits in what is reserved for it.
        let learned = start.learned(1024, 3_000_000, 3_700_000, 7_900);
        assert!(learned.batch_capacity(3_000_000) >= 3_700_000);
        assert!(learned.batch_capacity(3_000_000) <= 3_700_000 * 5 / 4 + (16 << 10));
        assert!(learned.counter_capacity(1024) >= 7_900);
        assert!(learned.counter_capacity(1024) <= 7_900 * 5 / 4);
        // Scaled by the size of the batch, not copied from the last one.
        assert!(learned.batch_capacity(30_000) <= 37_000 * 5 / 4 + (16 << 10));
        assert!(learned.counter_capacity(10) < 100);
        // Empty batches teach nothing; extreme ones are capped.
        assert_eq!(learned.learned(0, 0, 12, 0), learned);
        let extreme = start.learned(1, 1, usize::MAX / 2, usize::MAX / 2);
        assert!(extreme.batch_capacity(usize::MAX) as u64 <= SizeHints::MAX_BATCH_BYTES);
        assert!(extreme.counter_capacity(usize::MAX) as u64 <= SizeHints::MAX_COUNTERS);
    }

    #[test]
    fn counter_order_by_prefix_then_key_is_byte_order() {
        // Keys around the 16-byte boundary, prefixes of each other, zero bytes at the end.
        let mut keys: Vec<Vec<u8>> = vec![
            b"t\0\0\0\0\0\0\0\x01browser\0Chrome".to_vec(),
            b"t\0\0\0\0\0\0\0\x01browser\0".to_vec(),
            b"t\0\0\0\0\0\0\0\x01browser".to_vec(),
            b"t\0\0\0\0\0\0\0\x01browser.name\0Chrome".to_vec(),
            b"t\0\0\0\0\0\0\0\x01browse".to_vec(),
            b"t\0\0\0\0\0\0\0\x02a".to_vec(),
            b"a".to_vec(),
            b"a\0".to_vec(),
            b"a\0\0".to_vec(),
            Vec::new(),
            vec![0xff; 20],
            vec![0xff; 16],
            vec![0xff; 15],
            vec![0xff; 33],
            vec![0xff; 32],
            [vec![0xff; 32], vec![0]].concat(),
            [vec![0xff; 31], vec![0]].concat(),
        ];
        let mut expected = keys.clone();
        expected.sort();
        keys.reverse();
        keys.sort_unstable_by(|a, b| {
            key_prefix(a)
                .cmp(&key_prefix(b))
                .then_with(|| a.as_slice().cmp(b.as_slice()))
        });
        assert_eq!(keys, expected);
    }
}
