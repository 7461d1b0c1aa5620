//! Transactions: validation as Relay does it, extraction of the facts the performance
//! queries need, and folding into per-minute HDR histograms and counters (design.md §5).
//!
//! The pipeline calls [`TransactionFolder::add`] for every normalized `transaction` item of a
//! batch and [`TransactionFolder::flush_into`] once per batch, just before it commits the
//! batch with its log offset. The folder pre-aggregates in memory, so a batch turns into one
//! merge operand per (series, bucket) rather than one per transaction, and nothing is ever
//! read back: histograms and counters are RocksDB merge operands (`storage::hist`'s HDR add and
//! the i64 add). At flush time each (environment, release, transaction) minute is also rolled
//! up into hour and day buckets, and into the dimension rollups of
//! `storage::keys::perf::ROLLUP_MASKS` (per transaction, per environment, per release, and
//! the project total), so a long range or a coarse question reads few keys; the per-transaction
//! work stays two hash lookups and a push. Key layouts: `storage::keys::perf`.
//!
//! Durations are kept in microseconds (an HDR histogram holds integers, and sub-millisecond
//! spans are common); the query layer reports milliseconds.

use crate::fast_hash::FastMap;
use crate::value::Value;
use storage::keys::perf::{self as pk, Resolution};
use storage::{cf, encode_i64, hist, keys, Project, Store, WriteBatch};

/// Name Sentry shows for a transaction that has none.
pub const UNLABELED_TRANSACTION: &str = "<unlabeled transaction>";

/// Most measurements kept per transaction (Sentry's documented custom-measurement cap is 10;
/// built-ins come on top, so this bounds the whole set).
pub const MAX_MEASUREMENTS: usize = 32;

/// Why a transaction is dropped (outcome `invalid`, reason `invalid_transaction`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransactionError {
    /// The payload is not a JSON object.
    #[error("transaction is not a JSON object")]
    NotAnObject,
    /// `timestamp` is missing or not a valid timestamp.
    #[error("transaction has no valid timestamp")]
    InvalidTimestamp,
    /// `start_timestamp` is missing or not a valid timestamp.
    #[error("transaction has no valid start_timestamp")]
    InvalidStartTimestamp,
    /// `timestamp` is before `start_timestamp`.
    #[error("transaction ends before it starts")]
    EndBeforeStart,
    /// `contexts.trace` is missing.
    #[error("transaction has no trace context")]
    MissingTraceContext,
    /// `contexts.trace.trace_id` is missing or not 32 hex digits.
    #[error("trace context has no valid trace_id")]
    InvalidTraceId,
    /// `contexts.trace.span_id` is missing or not 16 hex digits.
    #[error("trace context has no valid span_id")]
    InvalidSpanId,
    /// A span fails the same rules.
    #[error("span {index}: {reason}")]
    InvalidSpan {
        /// Position in `spans`.
        index: usize,
        /// Which rule it broke.
        reason: &'static str,
    },
}

impl TransactionError {
    /// The outcome reason Relay records for every one of these.
    pub fn outcome_reason(&self) -> &'static str {
        "invalid_transaction"
    }
}

/// What a transaction says about performance, extracted once by [`TransactionFolder::add`].
#[derive(Debug, Clone, PartialEq)]
pub struct TransactionFacts {
    /// End time (`timestamp`), unix ms.
    pub timestamp_ms: u64,
    /// Start time (`start_timestamp`), unix ms.
    pub start_timestamp_ms: u64,
    /// `timestamp − start_timestamp` in microseconds.
    pub duration_us: u64,
    /// Status code, an index into `storage::keys::perf::STATUS_NAMES` (default `unknown`).
    pub status: u8,
    /// `contexts.trace.op`.
    pub op: Option<String>,
    /// Transaction name (`<unlabeled transaction>` when missing).
    pub name: String,
    /// `transaction_info.source`.
    pub source: Option<String>,
    /// Environment; `None` when the event has none (shown as "no environment", as Sentry does).
    pub environment: Option<String>,
    /// Release.
    pub release: Option<String>,
    /// User key: `id:…`, `email:…`, `username:…` or `ip:…`, first present wins (Sentry's `user` tag).
    pub user: Option<String>,
    /// Trace id, 32 lowercase hex digits.
    pub trace_id: String,
    /// The transaction's root span id, 16 lowercase hex digits.
    pub span_id: String,
    /// Parent span id when this transaction continues a trace from another service.
    pub parent_span_id: Option<String>,
    /// Measurements (`name` lowercased → value), non-negative and finite only.
    pub measurements: Vec<(String, f64)>,
}

impl TransactionFacts {
    /// Duration in milliseconds.
    pub fn duration_ms(&self) -> f64 {
        self.duration_us as f64 / 1000.0
    }

    /// Status name (`ok`, `internal_error`, …).
    pub fn status_name(&self) -> &'static str {
        pk::STATUS_NAMES[usize::from(self.status)]
    }

    /// Whether it counts toward the failure rate.
    pub fn is_failure(&self) -> bool {
        pk::status_is_failure(self.status)
    }

    /// Extracts and validates (Relay's `validate_transaction` rules) without folding.
    pub fn extract(event: &Value) -> Result<TransactionFacts, TransactionError> {
        let obj = event.as_object().ok_or(TransactionError::NotAnObject)?;
        let end_us = obj
            .get("timestamp")
            .and_then(timestamp_us)
            .ok_or(TransactionError::InvalidTimestamp)?;
        let start_us = obj
            .get("start_timestamp")
            .and_then(timestamp_us)
            .ok_or(TransactionError::InvalidStartTimestamp)?;
        if end_us < start_us {
            return Err(TransactionError::EndBeforeStart);
        }
        let trace = obj
            .get("contexts")
            .and_then(|c| c.get("trace"))
            .and_then(Value::as_object)
            .ok_or(TransactionError::MissingTraceContext)?;
        let trace_id = trace
            .get("trace_id")
            .and_then(|v| hex_id(v, 32))
            .ok_or(TransactionError::InvalidTraceId)?;
        let span_id = trace
            .get("span_id")
            .and_then(|v| hex_id(v, 16))
            .ok_or(TransactionError::InvalidSpanId)?;
        if let Some(spans) = obj.get("spans").and_then(Value::as_array) {
            for (index, span) in spans.iter().enumerate() {
                validate_span(span)
                    .map_err(|reason| TransactionError::InvalidSpan { index, reason })?;
            }
        }
        let text = |v: Option<&Value>| -> Option<String> {
            match v? {
                Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_string()),
                Value::Number(n) => Some(n.to_string()),
                _ => None,
            }
        };
        let status = trace.get("status").map(parse_status).unwrap_or(2);
        let user = obj.get("user").and_then(user_key);
        let measurements = obj
            .get("measurements")
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .filter_map(|(name, v)| {
                        let value = v.get("value").and_then(Value::as_f64)?;
                        (value.is_finite() && value >= 0.0)
                            .then(|| (name.to_ascii_lowercase(), value))
                    })
                    .take(MAX_MEASUREMENTS)
                    .collect()
            })
            .unwrap_or_default();
        Ok(TransactionFacts {
            timestamp_ms: (end_us / 1000) as u64,
            start_timestamp_ms: (start_us / 1000) as u64,
            duration_us: (end_us - start_us) as u64,
            status,
            op: text(trace.get("op")),
            name: text(obj.get("transaction")).unwrap_or_else(|| UNLABELED_TRANSACTION.to_string()),
            source: text(obj.get("transaction_info").and_then(|t| t.get("source"))),
            environment: text(obj.get("environment")),
            release: text(obj.get("release")),
            user,
            trace_id,
            span_id,
            parent_span_id: trace.get("parent_span_id").and_then(|v| hex_id(v, 16)),
            measurements,
        })
    }
}

fn validate_span(span: &Value) -> Result<(), &'static str> {
    let span = span.as_object().ok_or("not an object")?;
    // One pass over the span's fields instead of four map lookups: a transaction has dozens
    // of spans, and the lookups' key comparisons were most of validating them.
    let (mut end, mut start, mut trace_id, mut span_id) = (None, None, None, None);
    for (key, value) in span {
        match key.as_str() {
            "timestamp" => end = Some(value),
            "start_timestamp" => start = Some(value),
            "trace_id" => trace_id = Some(value),
            "span_id" => span_id = Some(value),
            _ => {}
        }
    }
    let end = end.and_then(timestamp_us).ok_or("no valid timestamp")?;
    let start = start
        .and_then(timestamp_us)
        .ok_or("no valid start_timestamp")?;
    if end < start {
        return Err("ends before it starts");
    }
    if !trace_id.is_some_and(|v| is_hex_id(v, 32)) {
        return Err("no valid trace_id");
    }
    if !span_id.is_some_and(|v| is_hex_id(v, 16)) {
        return Err("no valid span_id");
    }
    Ok(())
}

/// A Sentry timestamp as unix microseconds (any form [`crate::normalize::parse_timestamp_us`]
/// reads, rounded the same way so that a span's two ends compare truly). Times before 1970 are
/// rejected.
pub fn timestamp_us(value: &Value) -> Option<i64> {
    crate::normalize::parse_timestamp_us(value).filter(|&us| us >= 0)
}

/// A hex id of `len` digits (a dashed UUID is accepted for 32), lowercased; all-zero is invalid.
fn hex_id(value: &Value, len: usize) -> Option<String> {
    if !is_hex_id(value, len) {
        return None;
    }
    let s = value.as_str()?;
    let mut id: String = if s.len() == len {
        s.to_owned()
    } else {
        s.chars().filter(|&c| c != '-').collect()
    };
    id.make_ascii_lowercase();
    Some(id)
}

/// Whether [`hex_id`] accepts `value`, without building the id (spans are only validated,
/// and a transaction has dozens of them).
fn is_hex_id(value: &Value, len: usize) -> bool {
    let Some(s) = value.as_str() else {
        return false;
    };
    let digits = |b: &u8| *b != b'-';
    if len == 32 && s.len() == 36 {
        // A dashed UUID: the id is what remains without the dashes.
        s.bytes().filter(digits).count() == len
            && s.bytes().filter(digits).all(|b| b.is_ascii_hexdigit())
            && s.bytes().filter(digits).any(|b| b != b'0')
    } else if len.is_multiple_of(8) {
        s.len() == len && plain_hex_id(s.as_bytes())
    } else {
        s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit()) && s.bytes().any(|b| b != b'0')
    }
}

const LOW_BITS: u64 = 0x0101_0101_0101_0101;
const HIGH_BITS: u64 = 0x8080_8080_8080_8080;

/// The high bit of each byte of `w` that lies strictly between `above` and `below`, for
/// words of ASCII bytes (bit-twiddling "has between": per byte, `(b & 127) + 127 − above`
/// and `127 + below − (b & 127)` neither carry nor borrow into the next byte, so every
/// byte's answer is exact).
#[inline(always)]
fn bytes_between(w: u64, above: u8, below: u8) -> u64 {
    let low7 = w & (LOW_BITS * 127);
    (LOW_BITS * (127 + u64::from(below)) - low7)
        & !w
        & (low7 + LOW_BITS * (127 - u64::from(above)))
        & HIGH_BITS
}

/// Whether `bytes` (a multiple of 8 long) are all hex digits, not all `0`: the plain branch
/// of [`is_hex_id`], 8 bytes per step (trace and span ids of every span are checked).
fn plain_hex_id(bytes: &[u8]) -> bool {
    let mut nonzero = 0u64;
    for chunk in bytes.chunks_exact(8) {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let w = u64::from_le_bytes(word);
        // ASCII only (the range test below is exact for ASCII bytes).
        if w & HIGH_BITS != 0 {
            return false;
        }
        let digits = bytes_between(w, b'0' - 1, b'9' + 1);
        // Letters case-folded: `| 0x20` maps `A`–`F` to `a`–`f` and nothing else into them.
        let letters = bytes_between(w | (LOW_BITS * 0x20), b'a' - 1, b'f' + 1);
        if digits | letters != HIGH_BITS {
            return false;
        }
        nonzero |= w ^ (LOW_BITS * u64::from(b'0'));
    }
    bytes.len().is_multiple_of(8) && nonzero != 0
}

/// Status code from a status string (with Relay's aliases) or number; anything else is `unknown`.
pub fn parse_status(value: &Value) -> u8 {
    match value {
        Value::Number(n) => n.as_u64().filter(|&c| c < 17).map(|c| c as u8).unwrap_or(2),
        Value::String(s) => {
            let s = s.trim().to_ascii_lowercase();
            let name = match s.as_str() {
                "success" => "ok",
                "unknown_error" => "unknown",
                "failure" => "internal_error",
                other => other,
            };
            pk::STATUS_NAMES
                .iter()
                .position(|&n| n == name)
                .map(|p| p as u8)
                .unwrap_or(2)
        }
        _ => 2,
    }
}

fn user_key(user: &Value) -> Option<String> {
    for (field, prefix) in [
        ("id", "id"),
        ("email", "email"),
        ("username", "username"),
        ("ip_address", "ip"),
    ] {
        let value = match user.get(field) {
            Some(Value::String(s)) if !s.is_empty() && s != "{{auto}}" => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            _ => continue,
        };
        return Some(format!("{prefix}:{value}"));
    }
    None
}

/// One (project, environment, release, transaction) series of the current batch.
struct Series {
    project_id: u64,
    environment: String,
    release: String,
    transaction: String,
    /// Apdex threshold T (ms) in force for this transaction when it was folded.
    threshold_ms: u64,
    /// `keys::perf::apdex_config_key` of the project settings it was folded under.
    config_key: u64,
}

impl Series {
    /// Encoded dimensions of this series in the rollup `mask`.
    fn dims(&self, mask: u8) -> Vec<u8> {
        let mut out = Vec::with_capacity(
            8 + self.environment.len() + self.release.len() + self.transaction.len(),
        );
        pk::push_dims(
            &mut out,
            mask,
            &self.environment,
            &self.release,
            &self.transaction,
        );
        out
    }

    /// What the satisfied/tolerated counters of the rollup `mask` are keyed by: T when the
    /// series keeps the transaction (one T applies), else the project's apdex configuration.
    fn apdex_key(&self, mask: u8) -> u64 {
        if mask & pk::DIM_TRANSACTION != 0 {
            self.threshold_ms
        } else {
            self.config_key
        }
    }
}

/// Exact counters of one bucket of one series.
#[derive(Default, Clone)]
struct Counters {
    status: [u64; 17],
    sum_us: u64,
    satisfied: u64,
    tolerated: u64,
}

impl Counters {
    fn add(&mut self, other: &Counters) {
        for (a, b) in self.status.iter_mut().zip(other.status.iter()) {
            *a += b;
        }
        self.sum_us += other.sum_us;
        self.satisfied += other.satisfied;
        self.tolerated += other.tolerated;
    }

    fn count(&self) -> u64 {
        self.status.iter().sum()
    }
}

/// One minute of one series: raw bucket indexes (sorted and counted at flush) and counters.
struct MinuteAgg {
    series: u32,
    start_ms: u64,
    indexes: Vec<u32>,
    counters: Counters,
    /// (measurement name id, bucket index of value × 1000).
    measurements: Vec<(u32, u32)>,
}

/// An aggregate being built at flush time (a rollup, or one minute of a full series).
#[derive(Default)]
struct Rollup {
    /// Sparse (index, count) pairs, unsorted until [`Rollup::normalize`].
    buckets: Vec<(u32, u64)>,
    /// Dense counts by index, used instead of `buckets` once a wide rollup (a project total,
    /// an environment) has absorbed many series: adding is then O(1) and nothing is sorted.
    dense: Vec<u64>,
    counters: Counters,
    measurements: Vec<(u32, u32, u64)>,
}

/// Sparse pairs beyond which a rollup switches to dense counts.
const DENSE_AFTER: usize = 1024;

/// Per-batch pre-aggregation of transactions: one histogram and one set of counters per
/// (series, bucket). Memory grows with the batch (4 bytes per transaction plus one small
/// record per new series-minute) and is released by [`TransactionFolder::flush_into`].
#[derive(Default)]
pub struct TransactionFolder {
    series_ids: FastMap<Vec<u8>, u32>,
    series: Vec<Series>,
    minute_ids: FastMap<(u32, u64), u32>,
    minutes: Vec<MinuteAgg>,
    measurement_ids: FastMap<String, u32>,
    measurement_names: Vec<String>,
    scratch: Vec<u8>,
}

impl std::fmt::Debug for TransactionFolder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TransactionFolder")
            .field("series", &self.series.len())
            .field("minutes", &self.minutes.len())
            .finish()
    }
}

impl TransactionFolder {
    /// An empty folder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether nothing is waiting for [`TransactionFolder::flush_into`].
    pub fn is_empty(&self) -> bool {
        self.minutes.is_empty()
    }

    /// Validates (Relay rules: timestamp, start_timestamp, start ≤ end,
    /// contexts.trace.trace_id/span_id, spans) and folds one normalized transaction.
    pub fn add(
        &mut self,
        project: &Project,
        event: &Value,
    ) -> Result<TransactionFacts, TransactionError> {
        let facts = TransactionFacts::extract(event)?;
        self.fold(project, &facts);
        Ok(facts)
    }

    /// Folds already-extracted facts (the hot path: two map lookups and a push).
    pub fn fold(&mut self, project: &Project, facts: &TransactionFacts) {
        let series = self.series_id(
            project,
            facts.environment.as_deref().unwrap_or(""),
            facts.release.as_deref().unwrap_or(""),
            &facts.name,
        );
        let threshold_us = self.series[series as usize]
            .threshold_ms
            .saturating_mul(1000);
        let minute = Resolution::Minute.bucket_start(facts.timestamp_ms);
        let next = self.minutes.len() as u32;
        let slot = *self.minute_ids.entry((series, minute)).or_insert(next);
        if slot == next {
            self.minutes.push(MinuteAgg {
                series,
                start_ms: minute,
                indexes: Vec::new(),
                counters: Counters::default(),
                measurements: Vec::new(),
            });
        }
        let agg = &mut self.minutes[slot as usize];
        let d = facts.duration_us;
        agg.indexes.push(hist::index_of(d));
        agg.counters.status[usize::from(facts.status.min(16))] += 1;
        agg.counters.sum_us += d;
        if d <= threshold_us {
            agg.counters.satisfied += 1;
        } else if d <= threshold_us.saturating_mul(4) {
            agg.counters.tolerated += 1;
        }
        for (name, value) in &facts.measurements {
            let id = match self.measurement_ids.get(name.as_str()) {
                Some(&id) => id,
                None => {
                    let id = self.measurement_names.len() as u32;
                    self.measurement_names.push(name.clone());
                    self.measurement_ids.insert(name.clone(), id);
                    id
                }
            };
            let scaled = (value * 1000.0).round().min(u64::MAX as f64 / 2.0) as u64;
            self.minutes[slot as usize]
                .measurements
                .push((id, hist::index_of(scaled)));
        }
    }

    fn series_id(
        &mut self,
        project: &Project,
        environment: &str,
        release: &str,
        transaction: &str,
    ) -> u32 {
        self.scratch.clear();
        self.scratch.extend_from_slice(&project.id.to_be_bytes());
        pk::push_dims(
            &mut self.scratch,
            pk::ALL_DIMS,
            environment,
            release,
            transaction,
        );
        if let Some(&id) = self.series_ids.get(self.scratch.as_slice()) {
            return id;
        }
        let id = self.series.len() as u32;
        let settings = &project.settings;
        let transaction = pk::clamp_dim(transaction);
        let threshold_ms = settings
            .transaction_thresholds
            .get(transaction)
            .copied()
            .unwrap_or(settings.apdex_threshold_ms);
        self.series.push(Series {
            project_id: project.id,
            environment: pk::clamp_dim(environment).to_string(),
            release: pk::clamp_dim(release).to_string(),
            transaction: transaction.to_string(),
            threshold_ms,
            config_key: pk::apdex_config_key(settings),
        });
        self.series_ids.insert(self.scratch.clone(), id);
        id
    }

    /// Writes the pre-aggregated histograms and counters of every resolution as merge
    /// operands into `batch`, and clears the folder.
    pub fn flush_into(&mut self, store: &Store, batch: &mut WriteBatch) {
        let hist_cf = store.cf(cf::HISTOGRAMS);
        let counter_cf = store.cf(cf::COUNTERS);
        let cfs = (&hist_cf, &counter_cf);
        let mut writer = Writer {
            names: &self.measurement_names,
            key: Vec::new(),
            value: Vec::new(),
            pairs: Vec::new(),
        };
        // Every (project, mask, dims) series this batch touches, interned once per full
        // series so the per-minute work below allocates nothing.
        let mut targets: Vec<(u64, Vec<u8>)> = Vec::new();
        let mut target_ids: FastMap<(u64, Vec<u8>), u32> = FastMap::default();
        let mut series_targets: Vec<[(u32, u64); 5]> = Vec::with_capacity(self.series.len());
        for series in &self.series {
            let ids = pk::ROLLUP_MASKS.map(|mask| {
                let key = (series.project_id, series.dims(mask));
                // Full series are distinct by construction; only the rollups repeat.
                if let Some(&id) = target_ids.get(&key) {
                    return (id, series.apdex_key(mask));
                }
                let id = targets.len() as u32;
                target_ids.insert(key.clone(), id);
                targets.push(key);
                (id, series.apdex_key(mask))
            });
            series_targets.push(ids);
        }
        let write =
            |writer: &mut Writer<'_>, batch: &mut WriteBatch, key: RollupKey, agg: &Rollup| {
                let (project_id, dims) = &targets[key.0 as usize];
                writer.write(
                    batch,
                    cfs,
                    Target {
                        project_id: *project_id,
                        dims,
                        apdex_key: key.1,
                        res: key.2,
                        start_ms: key.3,
                    },
                    &agg.buckets,
                    &agg.counters,
                    &agg.measurements,
                );
            };

        // Level 1: full series minutes, added to the minute rollups of the other masks and
        // to the full series' hours and days.
        let mut minute_rollups: FastMap<RollupKey, Rollup> = FastMap::default();
        let mut coarse: FastMap<RollupKey, Rollup> = FastMap::default();
        let mut all: Vec<(RollupKey, Rollup)> = Vec::with_capacity(self.minutes.len() * 3);
        for agg in &mut self.minutes {
            let mut one = Rollup::default();
            agg.indexes.sort_unstable();
            run_lengths(&agg.indexes, &mut one.buckets);
            agg.measurements.sort_unstable();
            for w in agg.measurements.chunk_by(|a, b| a == b) {
                one.measurements.push((w[0].0, w[0].1, w.len() as u64));
            }
            one.counters = agg.counters.clone();
            let ids = &series_targets[agg.series as usize];
            for &(id, apdex_key) in &ids[1..] {
                minute_rollups
                    .entry((id, apdex_key, Resolution::Minute, agg.start_ms))
                    .or_default()
                    .absorb(&one);
            }
            for res in [Resolution::Hour, Resolution::Day] {
                coarse
                    .entry((ids[0].0, ids[0].1, res, res.bucket_start(agg.start_ms)))
                    .or_default()
                    .absorb(&one);
            }
            all.push(((ids[0].0, ids[0].1, Resolution::Minute, agg.start_ms), one));
        }
        // Level 2: rollup minutes, added to their hours and days.
        for (key, mut agg) in minute_rollups {
            agg.normalize();
            for res in [Resolution::Hour, Resolution::Day] {
                coarse
                    .entry((key.0, key.1, res, res.bucket_start(key.3)))
                    .or_default()
                    .absorb(&agg);
            }
            all.push((key, agg));
        }
        for (key, mut agg) in coarse {
            agg.normalize();
            all.push((key, agg));
        }
        // Written in key order (kind, project, bucket start, dims): RocksDB keeps a memtable
        // insert hint per key kind (storage's prefix extractor), so a merge just after the
        // previous one of its kind skips most of the skiplist search. In series order every
        // merge searched the memtable from the top (~1,100 instructions each).
        let order = |key: &RollupKey| {
            let (project_id, dims) = &targets[key.0 as usize];
            (key.2.duration_kind(), *project_id, key.3, dims.as_slice())
        };
        all.sort_unstable_by(|(a, _), (b, _)| order(a).cmp(&order(b)));
        for (key, agg) in &all {
            write(&mut writer, batch, *key, agg);
        }
        self.series_ids.clear();
        self.series.clear();
        self.minute_ids.clear();
        self.minutes.clear();
        self.measurement_ids.clear();
        self.measurement_names.clear();
    }
}

fn add_dense(dense: &mut Vec<u64>, index: u32, count: u64) {
    let i = index as usize;
    if dense.len() <= i {
        dense.resize(i + 1, 0);
    }
    dense[i] += count;
}

/// (target series id, apdex key, resolution, bucket start).
type RollupKey = (u32, u64, Resolution, u64);

impl Rollup {
    fn absorb(&mut self, other: &Rollup) {
        if self.dense.is_empty() && self.buckets.len() + other.buckets.len() > DENSE_AFTER {
            for (i, c) in std::mem::take(&mut self.buckets) {
                add_dense(&mut self.dense, i, c);
            }
        }
        if self.dense.is_empty() {
            self.buckets.extend_from_slice(&other.buckets);
        } else {
            for &(i, c) in &other.buckets {
                add_dense(&mut self.dense, i, c);
            }
        }
        self.counters.add(&other.counters);
        self.measurements.extend_from_slice(&other.measurements);
    }

    /// Sorts and merges the absorbed bucket lists.
    fn normalize(&mut self) {
        if self.dense.is_empty() {
            self.buckets.sort_unstable_by_key(|&(i, _)| i);
            combine(&mut self.buckets, |a, b| a.0 == b.0, |a, b| a.1 += b.1);
        } else {
            self.buckets.clear();
            self.buckets.extend(
                self.dense
                    .iter()
                    .enumerate()
                    .filter(|(_, &c)| c > 0)
                    .map(|(i, &c)| (i as u32, c)),
            );
            self.dense = Vec::new();
        }
        self.measurements.sort_unstable_by_key(|&(n, i, _)| (n, i));
        combine(
            &mut self.measurements,
            |a, b| (a.0, a.1) == (b.0, b.1),
            |a, b| a.2 += b.2,
        );
    }
}

/// Sorted indexes → (index, count) pairs.
fn run_lengths(sorted: &[u32], out: &mut Vec<(u32, u64)>) {
    out.clear();
    for run in sorted.chunk_by(|a, b| a == b) {
        out.push((run[0], run.len() as u64));
    }
}

/// Merges adjacent equal elements of a sorted vector in place.
fn combine<T: Copy>(v: &mut Vec<T>, same: impl Fn(&T, &T) -> bool, fold: impl Fn(&mut T, &T)) {
    let mut out = 0;
    for i in 0..v.len() {
        if out > 0 && same(&v[out - 1], &v[i]) {
            let item = v[i];
            fold(&mut v[out - 1], &item);
        } else {
            v[out] = v[i];
            out += 1;
        }
    }
    v.truncate(out);
}

struct Writer<'a> {
    names: &'a [String],
    key: Vec<u8>,
    value: Vec<u8>,
    pairs: Vec<(u32, u64)>,
}

/// Where one aggregate goes.
struct Target<'a> {
    project_id: u64,
    dims: &'a [u8],
    apdex_key: u64,
    res: Resolution,
    start_ms: u64,
}

type Cfs<'c, 'd> = (
    &'c std::sync::Arc<storage::BoundColumnFamily<'d>>,
    &'c std::sync::Arc<storage::BoundColumnFamily<'d>>,
);

impl Writer<'_> {
    fn write(
        &mut self,
        batch: &mut WriteBatch,
        (hist_cf, counter_cf): Cfs<'_, '_>,
        t: Target<'_>,
        buckets: &[(u32, u64)],
        counters: &Counters,
        measurements: &[(u32, u32, u64)],
    ) {
        // Same layout as `keys::bucketed`, built in a reused buffer (one write per aggregate).
        let bucketed = |key: &mut Vec<u8>, kind: u8, dims: &[u8]| {
            key.clear();
            key.push(kind);
            key.extend_from_slice(&t.project_id.to_be_bytes());
            key.extend_from_slice(&t.start_ms.to_be_bytes());
            key.extend_from_slice(dims);
        };
        bucketed(&mut self.key, t.res.duration_kind(), t.dims);
        debug_assert_eq!(
            self.key,
            keys::bucketed(t.res.duration_kind(), t.project_id, t.start_ms, t.dims)
        );
        hist::encode_sparse(buckets, &mut self.value);
        batch.merge_cf(hist_cf, &self.key, &self.value);

        // Counters share the histogram key's layout after the kind byte, plus a suffix.
        self.key[0] = t.res.counter_kind();
        let base = self.key.len();
        let mut put = |key: &mut Vec<u8>, suffix: &[u8], value: u64| {
            key.truncate(base);
            key.extend_from_slice(suffix);
            batch.merge_cf(
                counter_cf,
                &*key,
                encode_i64(value.min(i64::MAX as u64) as i64),
            );
        };
        for (code, &n) in counters.status.iter().enumerate() {
            if n > 0 {
                put(&mut self.key, &[pk::COUNTER_STATUS, code as u8], n);
            }
        }
        put(&mut self.key, &[pk::COUNTER_SUM_US], counters.sum_us);
        let mut suffix = [0u8; 9];
        suffix[1..].copy_from_slice(&t.apdex_key.to_be_bytes());
        suffix[0] = pk::COUNTER_SATISFIED;
        put(&mut self.key, &suffix, counters.satisfied);
        suffix[0] = pk::COUNTER_TOLERATED;
        put(&mut self.key, &suffix, counters.tolerated);
        suffix[0] = pk::COUNTER_JUDGED;
        put(&mut self.key, &suffix, counters.count());

        for group in measurements.chunk_by(|a, b| a.0 == b.0) {
            self.pairs.clear();
            self.pairs.extend(group.iter().map(|&(_, i, c)| (i, c)));
            let name = &self.names[group[0].0 as usize];
            bucketed(&mut self.key, t.res.measurement_kind(), t.dims);
            pk::push_dim(&mut self.key, name);
            hist::encode_sparse(&self.pairs, &mut self.value);
            batch.merge_cf(hist_cf, &self.key, &self.value);
        }
    }
}

/// Counts one error event toward "error events per minute" (every resolution), for the
/// pipeline to call per stored error event: `environment` "" when the event has none.
pub fn count_error_event(
    store: &Store,
    batch: &mut WriteBatch,
    project_id: u64,
    timestamp_ms: u64,
    environment: &str,
) {
    let counter_cf = store.cf(cf::COUNTERS);
    for key in pk::error_event_keys(project_id, timestamp_ms, environment) {
        batch.merge_cf(&counter_cf, key, encode_i64(1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::json;

    #[test]
    fn hex_ids() {
        let id = |v: Value, len| hex_id(&v, len);
        assert_eq!(
            id(json!("0123456789ABCDEF0123456789abcdef"), 32).as_deref(),
            Some("0123456789abcdef0123456789abcdef")
        );
        assert_eq!(
            id(json!("01234567-89ab-cdef-0123-456789ABCDEF"), 32).as_deref(),
            Some("0123456789abcdef0123456789abcdef")
        );
        assert_eq!(
            id(json!("89ABcdef01234567"), 16).as_deref(),
            Some("89abcdef01234567")
        );
        assert_eq!(id(json!("0000000000000000"), 16), None);
        assert_eq!(id(json!("89abcdef0123456"), 16), None);
        assert_eq!(id(json!("89abcdef-1234567"), 16), None);
        assert_eq!(id(json!("89abcdef0123456g"), 16), None);
        assert_eq!(id(json!("é9abcdef0123456"), 16), None);
        assert_eq!(id(json!(12), 16), None);
    }

    /// [`is_hex_id`]'s plain branch as first written, byte by byte.
    fn is_hex_id_reference(s: &str, len: usize) -> bool {
        s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit()) && s.bytes().any(|b| b != b'0')
    }

    #[test]
    fn word_wise_hex_ids_match_the_byte_wise_check() {
        let check = |s: &str| {
            for len in [16, 32] {
                assert_eq!(
                    is_hex_id(&Value::String(s.to_owned()), len),
                    is_hex_id_reference(s, len),
                    "{s:?} ({len})"
                );
            }
        };
        // Every byte value (as a char where it is one) at every position of both lengths.
        let base = "0123456789abcdefABCDEF0123456789";
        for len in [16, 32] {
            for pos in 0..len {
                for b in 0..=255u8 {
                    let mut bytes = base.as_bytes()[..len].to_vec();
                    bytes[pos] = b;
                    if let Ok(s) = String::from_utf8(bytes) {
                        check(&s);
                    }
                    let mut s: String = base[..len].to_owned();
                    s.replace_range(pos..pos + 1, char::from(b).encode_utf8(&mut [0; 4]));
                    check(&s);
                    if let Some(cut) = s.get(..len) {
                        check(cut);
                    }
                }
                // All zeros but one byte, and all zeros.
                let mut zeros = vec![b'0'; len];
                check(std::str::from_utf8(&zeros).unwrap());
                zeros[pos] = b'1';
                check(std::str::from_utf8(&zeros).unwrap());
            }
        }
        for s in [
            "",
            "0",
            "abc",
            "0123456789abcdef0",
            "g123456789abcdef",
            "é123456789abcde",
        ] {
            check(s);
        }
    }

    fn txn() -> Value {
        json!({
            "type": "transaction",
            "transaction": "/checkout",
            "transaction_info": {"source": "route"},
            "start_timestamp": 1_700_000_000.0,
            "timestamp": "2023-11-14T22:13:20.250Z",
            "environment": "prod",
            "release": "1.2.3",
            "user": {"email": "a@b.c", "ip_address": "1.2.3.4"},
            "contexts": {"trace": {
                "trace_id": "4C79F60C11214EB38604F4AE0781BFB2",
                "span_id": "fa90fdead5f74052",
                "op": "http.server",
                "status": "failure"
            }},
            "measurements": {"LCP": {"value": 1234.5, "unit": "millisecond"}, "cls": {"value": -1}},
            "spans": [{
                "trace_id": "4c79f60c11214eb38604f4ae0781bfb2", "span_id": "aa90fdead5f74052",
                "start_timestamp": 1_700_000_000.1, "timestamp": 1_700_000_000.2
            }]
        })
    }

    #[test]
    fn extracts_what_the_queries_need() {
        let f = TransactionFacts::extract(&txn()).unwrap();
        assert_eq!(f.duration_us, 250_000);
        assert_eq!(f.timestamp_ms, 1_700_000_000_250);
        assert_eq!(f.status_name(), "internal_error");
        assert!(f.is_failure());
        assert_eq!(f.name, "/checkout");
        assert_eq!(f.source.as_deref(), Some("route"));
        assert_eq!(f.op.as_deref(), Some("http.server"));
        assert_eq!(f.user.as_deref(), Some("email:a@b.c"));
        assert_eq!(f.trace_id, "4c79f60c11214eb38604f4ae0781bfb2");
        assert_eq!(f.measurements, vec![("lcp".to_string(), 1234.5)]);
    }

    type Mutation = fn(&mut Value);

    #[test]
    fn relay_validation_rules() {
        let cases: Vec<(Mutation, TransactionError)> = vec![
            (
                |v| v["timestamp"] = json!(null),
                TransactionError::InvalidTimestamp,
            ),
            (
                |v| v["start_timestamp"] = json!("yesterday"),
                TransactionError::InvalidStartTimestamp,
            ),
            (
                |v| v["start_timestamp"] = json!(1_800_000_000),
                TransactionError::EndBeforeStart,
            ),
            (
                |v| v["contexts"] = json!({}),
                TransactionError::MissingTraceContext,
            ),
            (
                |v| v["contexts"]["trace"]["trace_id"] = json!("xyz"),
                TransactionError::InvalidTraceId,
            ),
            (
                |v| v["contexts"]["trace"]["span_id"] = json!(null),
                TransactionError::InvalidSpanId,
            ),
            (
                |v| v["spans"][0]["timestamp"] = json!(1_600_000_000),
                TransactionError::InvalidSpan {
                    index: 0,
                    reason: "ends before it starts",
                },
            ),
        ];
        for (mutate, expected) in cases {
            let mut v = txn();
            mutate(&mut v);
            assert_eq!(TransactionFacts::extract(&v).unwrap_err(), expected);
        }
        assert_eq!(
            TransactionFacts::extract(&json!([])).unwrap_err(),
            TransactionError::NotAnObject
        );
    }

    #[test]
    fn statuses_and_defaults() {
        assert_eq!(parse_status(&json!("success")), 0);
        assert_eq!(parse_status(&json!("unknown_error")), 2);
        assert_eq!(parse_status(&json!("Not_Found")), 5);
        assert_eq!(parse_status(&json!("bogus")), 2);
        assert_eq!(parse_status(&json!(14)), 14);
        let mut v = txn();
        v["contexts"]["trace"]["status"] = json!(null);
        v.as_object_mut().unwrap().remove("transaction");
        v.as_object_mut().unwrap().remove("environment");
        let f = TransactionFacts::extract(&v).unwrap();
        assert_eq!(f.status_name(), "unknown");
        assert_eq!(f.name, UNLABELED_TRANSACTION);
        assert_eq!(f.environment, None);
        assert_eq!(
            timestamp_us(&json!("2023-11-14T22:13:20")),
            Some(1_700_000_000_000_000)
        );
        assert_eq!(timestamp_us(&json!(-5)), None);
    }

    #[test]
    fn combine_merges_runs() {
        let mut v = vec![(1u32, 2u64), (1, 3), (4, 1), (7, 1), (7, 1)];
        combine(&mut v, |a, b| a.0 == b.0, |a, b| a.1 += b.1);
        assert_eq!(v, vec![(1, 5), (4, 1), (7, 2)]);
    }
}
