//! Performance queries: count, throughput, percentiles, apdex and failure rate of
//! transactions over any time range, with filters, a breakdown and a time series
//! (design.md §5; sentry-protocol.md §7 for the definitions).
//!
//! A range is cut into whole buckets: day buckets in the middle, hour buckets around them,
//! minute buckets at the edges, so a 90-day range reads ~90 day keys plus at most ~46 hour
//! and ~118 minute keys per series. The series read are those of the smallest rollup that
//! keeps every filtered or grouped dimension (`keys::perf::ROLLUP_MASKS`): the project total
//! reads one series, a by-transaction breakdown one series per transaction. Histograms and
//! counters merge exactly, so the answer is the same as if every transaction had been kept:
//! - count, tpm, tps, avg, failure rate and per-status counts come from exact counters;
//! - apdex comes from satisfied/tolerated counters written at fold time for the T in force
//!   then (project T, or the transaction's override). When T has changed since, the buckets
//!   folded under another T fall back to the histogram (within its 3-digit precision) and the
//!   answer says `apdex_exact: false` (a rollup without the transaction dimension cannot be
//!   re-judged, so such a query is answered from the full series);
//! - p50…p99 and max come from the merged HDR histogram: the reported value is the highest
//!   value equivalent to the exact one, within 0.1 % of it (3 significant digits).
//!
//! Ranges are aligned to whole minutes: the start is rounded down, the end up.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};
use storage::keys::perf::{self as pk, Resolution};
use storage::{cf, decode_i64, hist, keys, Project, Store};

use crate::QueryService;

/// Longest time series answered, in points.
pub const MAX_SERIES_POINTS: u64 = 2_000;
/// Most groups a breakdown returns.
pub const MAX_GROUPS: usize = 1_000;
const MINUTE: u64 = 60_000;

/// Why a performance query failed.
#[derive(Debug, thiserror::Error)]
pub enum PerfError {
    /// The time range could not be parsed or is empty.
    #[error("invalid time range: {0}")]
    InvalidRange(String),
    /// The series interval is not a positive whole number of minutes, or yields too many points.
    #[error("invalid interval: {0}")]
    InvalidInterval(String),
    /// A group-by or sort name was not recognized.
    #[error("invalid {what}: {value}")]
    InvalidName {
        /// What was being parsed.
        what: &'static str,
        /// The bad value.
        value: String,
    },
    /// No such project.
    #[error("project {0} not found")]
    UnknownProject(u64),
    /// Reading the store failed.
    #[error(transparent)]
    Storage(#[from] storage::StorageError),
}

impl From<rocksdb::Error> for PerfError {
    fn from(e: rocksdb::Error) -> Self {
        PerfError::Storage(e.into())
    }
}

/// A time range: relative to now (`24h`) or absolute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimeRange {
    /// The last `ms` milliseconds up to now.
    Last {
        /// Length in ms.
        ms: u64,
    },
    /// `[start_ms, end_ms)`, unix ms.
    Between {
        /// Start, inclusive.
        start_ms: u64,
        /// End, exclusive.
        end_ms: u64,
    },
}

impl Default for TimeRange {
    fn default() -> Self {
        TimeRange::Last { ms: 86_400_000 }
    }
}

/// Parses a duration like `90m`, `1h`, `24h`, `7d`, `2w`, `30s` into ms.
pub fn parse_duration_ms(text: &str) -> Result<u64, PerfError> {
    let text = text.trim();
    let bad = || PerfError::InvalidRange(format!("{text:?} (expected e.g. 90m, 24h, 7d)"));
    let split = text.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (digits, unit) = text.split_at(split);
    let n: u64 = digits.parse().map_err(|_| bad())?;
    let unit_ms = match unit {
        "s" => 1_000,
        "m" | "min" => MINUTE,
        "h" => 3_600_000,
        "d" => 86_400_000,
        "w" => 7 * 86_400_000,
        _ => return Err(bad()),
    };
    n.checked_mul(unit_ms).filter(|&ms| ms > 0).ok_or_else(bad)
}

/// Parses an ISO 8601 / RFC 3339 time (a naive one is UTC) or unix seconds into unix ms.
pub fn parse_time_ms(text: &str) -> Result<u64, PerfError> {
    let text = text.trim();
    let parsed = chrono::DateTime::parse_from_rfc3339(text)
        .map(|d| d.timestamp_millis())
        .or_else(|_| {
            chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f")
                .map(|d| d.and_utc().timestamp_millis())
        })
        .or_else(|_| {
            chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d").map(|d| {
                d.and_time(chrono::NaiveTime::MIN)
                    .and_utc()
                    .timestamp_millis()
            })
        })
        .or_else(|_| text.parse::<f64>().map(|s| (s * 1000.0) as i64))
        .map_err(|_| PerfError::InvalidRange(format!("{text:?} is not a time")))?;
    u64::try_from(parsed).map_err(|_| PerfError::InvalidRange(format!("{text:?} is before 1970")))
}

impl TimeRange {
    /// `since` is a duration (`24h`); `start`/`end` are absolute times and win when given
    /// (`end` defaults to now).
    pub fn parse(
        since: Option<&str>,
        start: Option<&str>,
        end: Option<&str>,
    ) -> Result<TimeRange, PerfError> {
        match (start, end) {
            (Some(start), end) => Ok(TimeRange::Between {
                start_ms: parse_time_ms(start)?,
                end_ms: end
                    .map(parse_time_ms)
                    .transpose()?
                    .unwrap_or_else(storage::now_ms),
            }),
            (None, Some(_)) => Err(PerfError::InvalidRange("an end needs a start".into())),
            (None, None) => Ok(TimeRange::Last {
                ms: parse_duration_ms(since.unwrap_or("24h"))?,
            }),
        }
    }

    /// The minute-aligned `[start, end)` this range covers at `now_ms`.
    pub fn resolve(&self, now_ms: u64) -> Result<(u64, u64), PerfError> {
        let (start, end) = match *self {
            TimeRange::Last { ms } => {
                let end = ceil_to(now_ms.max(1), MINUTE);
                (end.saturating_sub(ceil_to(ms, MINUTE)), end)
            }
            TimeRange::Between { start_ms, end_ms } => {
                (start_ms - start_ms % MINUTE, ceil_to(end_ms, MINUTE))
            }
        };
        if start >= end {
            return Err(PerfError::InvalidRange("the range is empty".into()));
        }
        Ok((start, end))
    }
}

fn ceil_to(v: u64, step: u64) -> u64 {
    v.div_ceil(step).saturating_mul(step)
}

/// What a breakdown groups by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupBy {
    /// Transaction name.
    Transaction,
    /// Release.
    Release,
    /// Environment.
    Environment,
}

impl std::str::FromStr for GroupBy {
    type Err = PerfError;
    fn from_str(s: &str) -> Result<Self, PerfError> {
        match s {
            "transaction" => Ok(GroupBy::Transaction),
            "release" => Ok(GroupBy::Release),
            "environment" | "env" => Ok(GroupBy::Environment),
            _ => Err(PerfError::InvalidName {
                what: "group-by (transaction, release, environment)",
                value: s.into(),
            }),
        }
    }
}

/// Sort key of a breakdown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SortBy {
    /// Transaction count.
    #[default]
    Count,
    /// Average duration.
    Avg,
    /// Median.
    P50,
    /// 75th percentile.
    P75,
    /// 95th percentile.
    P95,
    /// 99th percentile.
    P99,
    /// Maximum.
    Max,
    /// Apdex.
    Apdex,
    /// Failure rate.
    FailureRate,
    /// Group name.
    Name,
}

impl std::str::FromStr for SortBy {
    type Err = PerfError;
    fn from_str(s: &str) -> Result<Self, PerfError> {
        Ok(match s {
            "count" | "tpm" | "tps" => SortBy::Count,
            "avg" => SortBy::Avg,
            "p50" => SortBy::P50,
            "p75" => SortBy::P75,
            "p95" => SortBy::P95,
            "p99" => SortBy::P99,
            "max" => SortBy::Max,
            "apdex" => SortBy::Apdex,
            "failure_rate" => SortBy::FailureRate,
            "name" => SortBy::Name,
            _ => {
                return Err(PerfError::InvalidName {
                    what: "sort",
                    value: s.into(),
                })
            }
        })
    }
}

/// A performance question.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct PerfQuery {
    /// Project id.
    pub project_id: u64,
    /// Time range.
    pub range: TimeRange,
    /// Only this environment (`""` = transactions without one).
    pub environment: Option<String>,
    /// Only this release.
    pub release: Option<String>,
    /// Only this transaction name.
    pub transaction: Option<String>,
    /// Breakdown dimension.
    pub group_by: Option<GroupBy>,
    /// Breakdown order.
    pub sort: SortBy,
    /// Ascending instead of descending.
    pub ascending: bool,
    /// Most groups returned (0 = 20; capped at [`MAX_GROUPS`]).
    pub limit: usize,
    /// Time-series interval in ms (a whole number of minutes), if a series is wanted.
    pub interval_ms: Option<u64>,
    /// Include each row's duration histogram (for a query node that merges several nodes'
    /// reports exactly, see `peers.rs`).
    pub histograms: bool,
}

/// The numbers for one set of transactions.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PerfStats {
    /// Transactions.
    pub count: u64,
    /// Transactions per minute over the range.
    pub tpm: f64,
    /// Transactions per second over the range.
    pub tps: f64,
    /// Mean duration, ms (exact).
    pub avg_ms: Option<f64>,
    /// Median duration, ms.
    pub p50_ms: Option<f64>,
    /// 75th percentile, ms.
    pub p75_ms: Option<f64>,
    /// 95th percentile, ms.
    pub p95_ms: Option<f64>,
    /// 99th percentile, ms.
    pub p99_ms: Option<f64>,
    /// Longest duration, ms (within histogram precision).
    pub max_ms: Option<f64>,
    /// Apdex: (satisfied + tolerated / 2) / count.
    pub apdex: Option<f64>,
    /// Whether apdex is exact (false when some buckets were folded under another T).
    pub apdex_exact: bool,
    /// The T used, in ms, when one T applies to all of these transactions.
    pub apdex_threshold_ms: Option<u64>,
    /// Satisfied transactions (≤ T).
    pub satisfied: u64,
    /// Tolerated transactions (T < d ≤ 4T).
    pub tolerated: u64,
    /// Transactions whose status is not ok, cancelled or unknown.
    pub failures: u64,
    /// failures / count.
    pub failure_rate: Option<f64>,
    /// Error events in the range (only when no release or transaction filter applies, and
    /// the group is not a transaction or release: errors are counted per environment).
    pub error_events: Option<u64>,
    /// Error events per minute.
    pub epm: Option<f64>,
    /// Count per status name.
    pub statuses: BTreeMap<String, u64>,
    /// Distinct users with a transaction (from the user sketches: exact for small numbers,
    /// within ~1 % up to tens of thousands; see `storage::keys::perf::USER_SLOTS`). `None` in
    /// time-series points.
    #[serde(default)]
    pub unique_users: Option<u64>,
    /// Distinct users with a frustrated transaction (duration > 4T).
    #[serde(default)]
    pub miserable_users: Option<u64>,
    /// Sentry's user misery: (miserable + α) / (unique + α + β), α = 5.8875, β = 111.8625.
    #[serde(default)]
    pub user_misery: Option<f64>,
    /// The duration histogram as sparse `(bucket index, count)` pairs (`storage::hist`
    /// buckets), only when the query asked for it: a query node adds the histograms of
    /// several nodes and takes exact percentiles from the sum.
    #[serde(
        default,
        rename = "ospreyHistogram",
        skip_serializing_if = "Option::is_none"
    )]
    pub histogram: Option<Vec<(u32, u64)>>,
}

impl PerfStats {
    /// Replaces the percentiles and max with the exact ones of `histogram` (sparse pairs in
    /// bucket order), which becomes this row's histogram.
    pub fn set_histogram(&mut self, histogram: Vec<(u32, u64)>) {
        let quantiles = nearest_rank(histogram.iter().copied(), &[0.5, 0.75, 0.95, 0.99]);
        self.p50_ms = quantiles[0];
        self.p75_ms = quantiles[1];
        self.p95_ms = quantiles[2];
        self.p99_ms = quantiles[3];
        self.max_ms = histogram
            .last()
            .map(|&(i, _)| hist::highest_equivalent(i) as f64 / 1000.0);
        self.histogram = Some(histogram);
    }
}

/// Adds two sparse histograms (each in bucket order); the sum is in bucket order.
pub fn add_sparse(a: &[(u32, u64)], b: &[(u32, u64)]) -> Vec<(u32, u64)> {
    let mut out = Vec::with_capacity(a.len() + b.len());
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        match (a.get(i), b.get(j)) {
            (Some(&(x, cx)), Some(&(y, cy))) if x == y => {
                out.push((x, cx + cy));
                i += 1;
                j += 1;
            }
            (Some(&(x, cx)), Some(&(y, _))) if x < y => {
                out.push((x, cx));
                i += 1;
            }
            (Some(_), Some(&(y, cy))) => {
                out.push((y, cy));
                j += 1;
            }
            (Some(&pair), None) => {
                out.push(pair);
                i += 1;
            }
            (None, Some(&pair)) => {
                out.push(pair);
                j += 1;
            }
            (None, None) => break,
        }
    }
    out
}

/// Nearest-rank percentiles over `(bucket index, count)` pairs in bucket order: the value at
/// rank ⌈q·n⌉, reported as the highest value of its histogram bucket.
pub fn nearest_rank(
    buckets: impl Iterator<Item = (u32, u64)> + Clone,
    qs: &[f64],
) -> Vec<Option<f64>> {
    let n: u64 = buckets.clone().map(|(_, c)| c).sum();
    let mut out = vec![None; qs.len()];
    if n == 0 {
        return out;
    }
    let ranks: Vec<u64> = qs
        .iter()
        .map(|q| ((q * n as f64).ceil() as u64).clamp(1, n))
        .collect();
    let mut seen = 0u64;
    let mut next = 0;
    for (i, c) in buckets {
        if c == 0 {
            continue;
        }
        seen += c;
        while next < ranks.len() && ranks[next] <= seen {
            out[next] = Some(hist::highest_equivalent(i) as f64 / 1000.0);
            next += 1;
        }
        if next == ranks.len() {
            break;
        }
    }
    out
}

/// One group of a breakdown.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PerfGroup {
    /// The group's value (transaction name, release or environment; "" = none).
    pub key: String,
    /// Its numbers.
    pub stats: PerfStats,
}

/// One point of a time series.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PerfPoint {
    /// Interval start, unix ms.
    pub start_ms: u64,
    /// The interval's numbers.
    pub stats: PerfStats,
}

/// The answer to a [`PerfQuery`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PerfReport {
    /// Project id.
    pub project_id: u64,
    /// Effective (minute-aligned) start, unix ms.
    pub start_ms: u64,
    /// Effective end, unix ms, exclusive.
    pub end_ms: u64,
    /// All matching transactions.
    pub total: PerfStats,
    /// Breakdown, sorted and limited (empty without `group_by`).
    pub groups: Vec<PerfGroup>,
    /// Groups beyond the limit.
    pub groups_omitted: usize,
    /// Time series (empty without `interval_ms`).
    pub series: Vec<PerfPoint>,
}

/// Cuts `[start, end)` (minute-aligned) into whole buckets, coarsest possible.
pub fn decompose(start: u64, end: u64) -> Vec<(Resolution, u64, u64)> {
    fn split(res: Resolution, start: u64, end: u64, out: &mut Vec<(Resolution, u64, u64)>) {
        let step = res.millis();
        let (a, b) = (ceil_to(start, step), end - end % step);
        let finer = match res {
            Resolution::Day => Some(Resolution::Hour),
            Resolution::Hour => Some(Resolution::Minute),
            Resolution::Minute => None,
        };
        if a < b {
            if let Some(finer) = finer {
                split(finer, start, a, out);
            }
            out.push((res, a, b));
            if let Some(finer) = finer {
                split(finer, b, end, out);
            }
        } else if let Some(finer) = finer {
            split(finer, start, end, out);
        }
    }
    let mut out = Vec::new();
    if start < end {
        split(Resolution::Day, start, end, &mut out);
    }
    out
}

/// Accumulated numbers of one set of transactions.
#[derive(Default)]
struct Acc {
    hist: Vec<u64>,
    hist_count: u64,
    count: u64,
    sum_us: u64,
    status: [u64; 17],
    satisfied: u64,
    tolerated: u64,
    apdex_exact: bool,
    threshold: Option<Option<u64>>,
    errors: u64,
}

impl Acc {
    fn new() -> Acc {
        Acc {
            apdex_exact: true,
            ..Acc::default()
        }
    }

    fn add_buckets(&mut self, buckets: &[(u32, u64)]) {
        if let Some(&(last, _)) = buckets.last() {
            if self.hist.len() <= last as usize {
                self.hist.resize(last as usize + 1, 0);
            }
        }
        for &(i, c) in buckets {
            self.hist[i as usize] += c;
            self.hist_count += c;
        }
    }

    fn add_series(&mut self, s: &SeriesBucket, buckets: &[(u32, u64)]) {
        self.add_buckets(buckets);
        self.count += s.count;
        self.sum_us += s.sum_us;
        for (a, b) in self.status.iter_mut().zip(s.status.iter()) {
            *a += b;
        }
        self.satisfied += s.satisfied;
        self.tolerated += s.tolerated;
        self.apdex_exact &= s.exact;
        self.threshold = match (self.threshold, s.threshold_ms) {
            (None, t) => Some(t),
            (Some(Some(a)), Some(b)) if a == b => Some(Some(a)),
            _ => Some(None),
        };
    }

    fn stats(&self, minutes: f64, errors_known: bool) -> PerfStats {
        let n = self.count;
        let ratio = |x: u64| (n > 0).then(|| x as f64 / n as f64);
        let quantiles = self.quantiles(&[0.5, 0.75, 0.95, 0.99]);
        let max = self
            .hist
            .iter()
            .rposition(|&c| c > 0)
            .map(|i| hist::highest_equivalent(i as u32) as f64 / 1000.0);
        let failures: u64 = (0..17u8)
            .filter(|&c| pk::status_is_failure(c))
            .map(|c| self.status[c as usize])
            .sum();
        PerfStats {
            count: n,
            tpm: n as f64 / minutes,
            tps: n as f64 / (minutes * 60.0),
            avg_ms: (n > 0).then(|| self.sum_us as f64 / n as f64 / 1000.0),
            p50_ms: quantiles[0],
            p75_ms: quantiles[1],
            p95_ms: quantiles[2],
            p99_ms: quantiles[3],
            max_ms: max,
            apdex: (n > 0)
                .then(|| (self.satisfied as f64 + self.tolerated as f64 / 2.0) / n as f64),
            apdex_exact: self.apdex_exact,
            apdex_threshold_ms: self.threshold.flatten(),
            satisfied: self.satisfied,
            tolerated: self.tolerated,
            failures,
            failure_rate: ratio(failures),
            error_events: errors_known.then_some(self.errors),
            epm: errors_known.then(|| self.errors as f64 / minutes),
            statuses: self
                .status
                .iter()
                .enumerate()
                .filter(|(_, &c)| c > 0)
                .map(|(i, &c)| (pk::STATUS_NAMES[i].to_string(), c))
                .collect(),
            unique_users: None,
            miserable_users: None,
            user_misery: None,
            histogram: None,
        }
    }

    /// Nearest-rank percentiles of the histogram.
    fn quantiles(&self, qs: &[f64]) -> Vec<Option<f64>> {
        nearest_rank(self.sparse(), qs)
    }

    /// The histogram's non-empty buckets, in order.
    fn sparse(&self) -> impl Iterator<Item = (u32, u64)> + Clone + '_ {
        self.hist
            .iter()
            .enumerate()
            .filter(|(_, &c)| c > 0)
            .map(|(i, &c)| (i as u32, c))
    }

    /// [`Acc::stats`] with the histogram attached when `with_histogram`.
    fn stats_with(&self, minutes: f64, errors_known: bool, with_histogram: bool) -> PerfStats {
        let mut stats = self.stats(minutes, errors_known);
        if with_histogram {
            stats.histogram = Some(self.sparse().collect());
        }
        stats
    }
}

/// Counters of one series in one bucket, joined from the counters column family.
#[derive(Default)]
struct SeriesBucket {
    count: u64,
    sum_us: u64,
    status: [u64; 17],
    satisfied: u64,
    tolerated: u64,
    judged: u64,
    threshold_ms: Option<u64>,
    exact: bool,
}

struct Filters<'a> {
    environment: Option<&'a [u8]>,
    release: Option<&'a [u8]>,
    transaction: Option<&'a [u8]>,
}

impl Filters<'_> {
    fn accept(&self, d: &pk::Dims<'_>) -> bool {
        self.environment.is_none_or(|e| e == d.environment)
            && self.release.is_none_or(|r| r == d.release)
            && self.transaction.is_none_or(|t| t == d.transaction)
    }
}

/// Where one scan's results go.
struct Collector {
    total: Acc,
    groups: HashMap<Vec<u8>, Acc>,
    group_by: Option<GroupBy>,
    /// A rollup's apdex counters were written under another apdex configuration.
    needs_full: bool,
    /// Error events per environment (for a by-environment breakdown; only environments that
    /// had transactions get a row).
    errors_by_env: HashMap<Vec<u8>, u64>,
}

impl Collector {
    fn new(group_by: Option<GroupBy>) -> Collector {
        Collector {
            total: Acc::new(),
            groups: HashMap::new(),
            group_by,
            needs_full: false,
            errors_by_env: HashMap::new(),
        }
    }

    fn group(&mut self, d: &pk::Dims<'_>) -> Option<&mut Acc> {
        let key = match self.group_by? {
            GroupBy::Transaction => d.transaction,
            GroupBy::Release => d.release,
            GroupBy::Environment => d.environment,
        };
        if !self.groups.contains_key(key) {
            if self.groups.len() >= 100_000 {
                // Bound memory on pathological cardinality; the total stays exact.
                return None;
            }
            self.groups.insert(key.to_vec(), Acc::new());
        }
        self.groups.get_mut(key)
    }
}

impl QueryService {
    /// Answers a performance question (see the module docs for what is exact).
    pub fn perf(&self, query: &PerfQuery) -> Result<PerfReport, PerfError> {
        self.perf_at(query, storage::now_ms())
    }

    /// [`QueryService::perf`] with an explicit "now" for relative ranges.
    pub fn perf_at(&self, query: &PerfQuery, now_ms: u64) -> Result<PerfReport, PerfError> {
        let store = self.store();
        let project = store
            .meta()
            .project(query.project_id)
            .ok_or(PerfError::UnknownProject(query.project_id))?;
        let (start, end) = query.range.resolve(now_ms)?;
        let filters = Filters {
            environment: query.environment.as_deref().map(str::as_bytes),
            release: query.release.as_deref().map(str::as_bytes),
            transaction: query.transaction.as_deref().map(str::as_bytes),
        };
        // Errors are counted per environment only.
        let errors_filterable = query.release.is_none() && query.transaction.is_none();
        let group_errors =
            errors_filterable && matches!(query.group_by, Some(GroupBy::Environment));

        let mut collector = collect(
            store,
            &project,
            (start, end),
            &filters,
            query.group_by,
            errors_filterable,
        )?;
        for (env, acc) in collector.groups.iter_mut() {
            acc.errors = collector.errors_by_env.get(env).copied().unwrap_or(0);
        }
        let minutes = ((end - start) / MINUTE) as f64;
        // A breakdown's collector only fills its groups; the total comes from the coarsest
        // rollup that answers the filters (one series per bucket), not from adding every group
        // a second time.
        let mut total = if query.group_by.is_some() {
            collect(
                store,
                &project,
                (start, end),
                &filters,
                None,
                errors_filterable,
            )?
            .total
            .stats_with(minutes, errors_filterable, query.histograms)
        } else {
            collector
                .total
                .stats_with(minutes, errors_filterable, query.histograms)
        };
        let mut groups: Vec<PerfGroup> = collector
            .groups
            .iter()
            .map(|(key, acc)| PerfGroup {
                key: String::from_utf8_lossy(key).into_owned(),
                stats: acc.stats_with(minutes, group_errors, query.histograms),
            })
            .filter(|g| g.stats.count > 0)
            .collect();
        sort_groups(&mut groups, query.sort, query.ascending);
        let limit = match query.limit {
            0 => 20,
            n => n.min(MAX_GROUPS),
        };
        let groups_omitted = groups.len().saturating_sub(limit);
        groups.truncate(limit);
        users::fill(
            store,
            &project,
            (start, end),
            &filters,
            query.group_by,
            &mut total,
            &mut groups,
        )?;

        let mut series = Vec::new();
        if let Some(interval) = query.interval_ms {
            if interval == 0 || interval % MINUTE != 0 {
                return Err(PerfError::InvalidInterval(format!(
                    "{interval} ms is not a whole number of minutes"
                )));
            }
            let points = (end - start).div_ceil(interval);
            if points > MAX_SERIES_POINTS {
                return Err(PerfError::InvalidInterval(format!(
                    "{points} points (at most {MAX_SERIES_POINTS})"
                )));
            }
            let mut at = start;
            while at < end {
                let until = (at + interval).min(end);
                let c = collect(
                    store,
                    &project,
                    (at, until),
                    &filters,
                    None,
                    errors_filterable,
                )?;
                series.push(PerfPoint {
                    start_ms: at,
                    stats: c.total.stats_with(
                        ((until - at) / MINUTE) as f64,
                        errors_filterable,
                        query.histograms,
                    ),
                });
                at = until;
            }
        }
        Ok(PerfReport {
            project_id: project.id,
            start_ms: start,
            end_ms: end,
            total,
            groups,
            groups_omitted,
            series,
        })
    }
}

/// Unique users and user misery from the user sketches (`storage::keys::perf::USER_SLOTS`).
pub(crate) mod users {
    use std::collections::HashMap;

    use storage::keys::perf::{self as pk};
    use storage::{cf, hist, keys, Project, Store};

    use super::{
        decompose, raw_iter, rollup_mask, Filters, GroupBy, PerfError, PerfGroup, PerfStats,
    };

    /// Sentry's user-misery prior (`MISERY_ALPHA`, `MISERY_BETA`).
    pub const MISERY_ALPHA: f64 = 5.8875;
    /// See [`MISERY_ALPHA`].
    pub const MISERY_BETA: f64 = 111.8625;
    const WORDS: usize = (pk::USER_SLOTS as usize).div_ceil(64);

    /// Occupied slots of the users and miserable-users sketches of one set of transactions.
    struct Bitmaps {
        all: Vec<u64>,
        miserable: Vec<u64>,
    }

    impl Bitmaps {
        fn new() -> Bitmaps {
            Bitmaps {
                all: vec![0; WORDS],
                miserable: vec![0; WORDS],
            }
        }

        fn set(&mut self, suffix: u8, slot: u32) {
            let bits = match suffix {
                pk::USERS_ALL => &mut self.all,
                pk::USERS_MISERABLE => &mut self.miserable,
                _ => return,
            };
            if let Some(word) = bits.get_mut(slot as usize / 64) {
                *word |= 1 << (slot % 64);
            }
        }

        fn apply(&self, stats: &mut PerfStats) {
            let unique = estimate(&self.all);
            let miserable = estimate(&self.miserable).min(unique);
            stats.unique_users = Some(unique);
            stats.miserable_users = Some(miserable);
            stats.user_misery = Some(user_misery(miserable, unique));
        }
    }

    /// Linear counting: n ≈ −m·ln(empty / m). With every slot taken the sketch is saturated
    /// and m·ln(m) is the best lower bound it can give.
    pub fn estimate(bits: &[u64]) -> u64 {
        let m = f64::from(pk::USER_SLOTS);
        let occupied: u32 = bits.iter().map(|w| w.count_ones()).sum();
        let empty = f64::from(pk::USER_SLOTS.saturating_sub(occupied));
        let n = if empty == 0.0 {
            m * m.ln()
        } else {
            -m * (empty / m).ln()
        };
        n.round() as u64
    }

    /// Sentry's `user_misery()`: (miserable + α) / (unique + α + β).
    pub fn user_misery(miserable: u64, unique: u64) -> f64 {
        (miserable as f64 + MISERY_ALPHA) / (unique as f64 + MISERY_ALPHA + MISERY_BETA)
    }

    /// Sets unique users, miserable users and user misery on the total and on each group
    /// (only the groups kept in the answer get a sketch: memory stays bounded).
    pub(super) fn fill(
        store: &Store,
        project: &Project,
        (start, end): (u64, u64),
        filters: &Filters<'_>,
        group_by: Option<GroupBy>,
        total: &mut PerfStats,
        groups: &mut [PerfGroup],
    ) -> Result<(), PerfError> {
        let mask = rollup_mask(filters, group_by);
        let mut all = Bitmaps::new();
        let mut by_group: HashMap<Vec<u8>, Bitmaps> = groups
            .iter()
            .map(|g| (g.key.as_bytes().to_vec(), Bitmaps::new()))
            .collect();
        for (res, from, to) in decompose(start, end) {
            let kind = res.users_kind();
            let mut it = raw_iter(
                store,
                cf::HISTOGRAMS,
                keys::bucketed(kind, project.id, to, &[]),
            );
            let mut bucket = from;
            while bucket < to {
                let prefix = keys::bucketed(kind, project.id, bucket, &[mask]);
                bucket += res.millis();
                it.seek(&prefix);
                while it.valid() {
                    let (Some(key), Some(value)) = (it.key(), it.value()) else {
                        break;
                    };
                    if !key.starts_with(&prefix) {
                        break;
                    }
                    let parsed = pk::split_bucketed(key).and_then(|(_, _, _, rest)| {
                        let dims = pk::parse_dims(rest)?;
                        Some((*rest.get(dims.encoded_len)?, dims))
                    });
                    if let Some((suffix, dims)) = parsed.filter(|(_, d)| filters.accept(d)) {
                        let group = group_by.map(|g| match g {
                            GroupBy::Transaction => dims.transaction,
                            GroupBy::Release => dims.release,
                            GroupBy::Environment => dims.environment,
                        });
                        let mut target = group.and_then(|g| by_group.get_mut(g));
                        hist::for_each_bucket(value, |slot, count| {
                            if count > 0 {
                                all.set(suffix, slot);
                                if let Some(t) = target.as_mut() {
                                    t.set(suffix, slot);
                                }
                            }
                        })?;
                    }
                    it.next();
                }
            }
            it.status()?;
        }
        all.apply(total);
        for g in groups.iter_mut() {
            if let Some(b) = by_group.get(g.key.as_bytes()) {
                b.apply(&mut g.stats);
            }
        }
        Ok(())
    }
}

pub(crate) fn sort_groups(groups: &mut [PerfGroup], sort: SortBy, ascending: bool) {
    let value = |s: &PerfStats| -> f64 {
        match sort {
            SortBy::Count | SortBy::Name => s.count as f64,
            SortBy::Avg => s.avg_ms.unwrap_or(0.0),
            SortBy::P50 => s.p50_ms.unwrap_or(0.0),
            SortBy::P75 => s.p75_ms.unwrap_or(0.0),
            SortBy::P95 => s.p95_ms.unwrap_or(0.0),
            SortBy::P99 => s.p99_ms.unwrap_or(0.0),
            SortBy::Max => s.max_ms.unwrap_or(0.0),
            SortBy::Apdex => s.apdex.unwrap_or(0.0),
            SortBy::FailureRate => s.failure_rate.unwrap_or(0.0),
        }
    };
    groups.sort_by(|a, b| {
        let order = if sort == SortBy::Name {
            a.key.cmp(&b.key)
        } else {
            value(&a.stats).total_cmp(&value(&b.stats))
        };
        // Ties break by name so the order is stable across runs.
        let order = if ascending { order } else { order.reverse() };
        order.then_with(|| a.key.cmp(&b.key))
    });
}

/// The smallest rollup that can answer: it keeps every dimension filtered or grouped on.
fn rollup_mask(filters: &Filters<'_>, group_by: Option<GroupBy>) -> u8 {
    let mut needed = 0;
    if filters.environment.is_some() || group_by == Some(GroupBy::Environment) {
        needed |= pk::DIM_ENVIRONMENT;
    }
    if filters.release.is_some() || group_by == Some(GroupBy::Release) {
        needed |= pk::DIM_RELEASE;
    }
    if filters.transaction.is_some() || group_by == Some(GroupBy::Transaction) {
        needed |= pk::DIM_TRANSACTION;
    }
    // Coarsest first: fewer keys per bucket.
    [0, pk::DIM_ENVIRONMENT, pk::DIM_RELEASE, pk::DIM_TRANSACTION]
        .into_iter()
        .find(|m| m & needed == needed)
        .unwrap_or(pk::ALL_DIMS)
}

/// Reads `[start, end)` into a collector from the best rollup, falling back to the full
/// series when the rollup's apdex counters belong to another apdex configuration.
fn collect(
    store: &Store,
    project: &Project,
    (start, end): (u64, u64),
    filters: &Filters<'_>,
    group_by: Option<GroupBy>,
    count_errors: bool,
) -> Result<Collector, PerfError> {
    let mask = rollup_mask(filters, group_by);
    let mut out = Collector::new(group_by);
    scan_range(
        store,
        project,
        mask,
        start,
        end,
        filters,
        &mut out,
        count_errors,
    )?;
    if out.needs_full && mask != pk::ALL_DIMS {
        out = Collector::new(group_by);
        scan_range(
            store,
            project,
            pk::ALL_DIMS,
            start,
            end,
            filters,
            &mut out,
            count_errors,
        )?;
    }
    Ok(out)
}

#[allow(clippy::too_many_arguments)]
fn scan_range(
    store: &Store,
    project: &Project,
    mask: u8,
    start: u64,
    end: u64,
    filters: &Filters<'_>,
    out: &mut Collector,
    count_errors: bool,
) -> Result<(), PerfError> {
    for (res, from, to) in decompose(start, end) {
        scan_segment(store, project, mask, res, from, to, filters, out)?;
        if count_errors {
            scan_errors(store, project.id, res, from, to, filters, out)?;
        }
    }
    Ok(())
}

fn raw_iter<'a>(
    store: &'a Store,
    cf_name: &str,
    upper: Vec<u8>,
) -> rocksdb::DBRawIteratorWithThreadMode<'a, storage::Rocks> {
    let mut opts = rocksdb::ReadOptions::default();
    opts.set_iterate_upper_bound(upper);
    store.db().raw_iterator_cf_opt(&store.cf(cf_name), opts)
}

/// One resolution, buckets `[from, to)`: joins the histogram keys with their counters (a
/// counter key is its histogram key, another kind byte, and a suffix; both sort alike).
#[allow(clippy::too_many_arguments)]
fn scan_segment(
    store: &Store,
    project: &Project,
    mask: u8,
    res: Resolution,
    from: u64,
    to: u64,
    filters: &Filters<'_>,
    out: &mut Collector,
) -> Result<(), PerfError> {
    let mut hists = raw_iter(
        store,
        cf::HISTOGRAMS,
        keys::bucketed(res.duration_kind(), project.id, to, &[]),
    );
    let mut counters = raw_iter(
        store,
        cf::COUNTERS,
        keys::bucketed(res.counter_kind(), project.id, to, &[]),
    );
    let settings = &project.settings;
    let has_transaction = mask & pk::DIM_TRANSACTION != 0;
    let config_key = pk::apdex_config_key(settings);
    let uniform_t = settings
        .transaction_thresholds
        .is_empty()
        .then_some(settings.apdex_threshold_ms);
    let mut buckets: Vec<(u32, u64)> = Vec::with_capacity(256);
    let mut bucket = from;
    while bucket < to {
        // One seek per bucket to this rollup's keys: the other rollups are never read.
        let prefix = keys::bucketed(res.duration_kind(), project.id, bucket, &[mask]);
        hists.seek(&prefix);
        counters.seek(keys::bucketed(
            res.counter_kind(),
            project.id,
            bucket,
            &[mask],
        ));
        bucket += res.millis();
        while hists.valid() {
            let (Some(hkey), Some(hval)) = (hists.key(), hists.value()) else {
                break;
            };
            if !hkey.starts_with(&prefix) {
                break;
            }
            let body = &hkey[1..];
            let dims = pk::split_bucketed(hkey).and_then(|(_, _, _, rest)| pk::parse_dims(rest));
            let accepted = dims.as_ref().is_some_and(|d| filters.accept(d));
            // Move the counter cursor to this key's counters, skipping any without a histogram.
            while counters.valid()
                && counters
                    .key()
                    .is_some_and(|k| &k[1..] < body && !k[1..].starts_with(body))
            {
                counters.next();
            }
            let mut sb = SeriesBucket::default();
            let mut apdex_key = config_key;
            sb.threshold_ms = uniform_t;
            if let (true, true, Some(d)) = (accepted, has_transaction, dims.as_ref()) {
                let name = std::str::from_utf8(d.transaction).unwrap_or("");
                let t = settings
                    .transaction_thresholds
                    .get(name)
                    .copied()
                    .unwrap_or(settings.apdex_threshold_ms);
                sb.threshold_ms = Some(t);
                apdex_key = t;
            }
            let key_bytes = apdex_key.to_be_bytes();
            while counters.valid() {
                let Some(ckey) = counters.key() else { break };
                if !ckey[1..].starts_with(body) {
                    break;
                }
                if accepted {
                    let suffix = &ckey[hkey.len()..];
                    let v = decode_i64(counters.value().unwrap_or(&[])).max(0) as u64;
                    match suffix {
                        [pk::COUNTER_STATUS, code] if *code < 17 => sb.status[*code as usize] += v,
                        [pk::COUNTER_SUM_US] => sb.sum_us += v,
                        [kind, k @ ..] if k == key_bytes => match *kind {
                            pk::COUNTER_SATISFIED => sb.satisfied += v,
                            pk::COUNTER_TOLERATED => sb.tolerated += v,
                            pk::COUNTER_JUDGED => sb.judged += v,
                            _ => {}
                        },
                        _ => {}
                    }
                }
                counters.next();
            }
            if let (true, Some(d)) = (accepted, dims) {
                sb.count = sb.status.iter().sum();
                sb.exact = sb.judged == sb.count;
                buckets.clear();
                hist::for_each_bucket(hval, |i, c| buckets.push((i, c)))?;
                if !sb.exact {
                    match sb.threshold_ms.filter(|_| has_transaction) {
                        // Folded under another T: judge this bucket's transactions from the
                        // histogram.
                        Some(t) => {
                            let t_us = t.saturating_mul(1000);
                            sb.satisfied = 0;
                            sb.tolerated = 0;
                            for &(i, c) in &buckets {
                                let v = hist::bucket_of(i).0;
                                if v <= t_us {
                                    sb.satisfied += c;
                                } else if v <= t_us.saturating_mul(4) {
                                    sb.tolerated += c;
                                }
                            }
                        }
                        // A rollup without transactions cannot be re-judged per transaction:
                        // the caller asks the full series instead.
                        None => out.needs_full = true,
                    }
                }
                if out.group_by.is_none() {
                    out.total.add_series(&sb, &buckets);
                } else if let Some(g) = out.group(&d) {
                    g.add_series(&sb, &buckets);
                }
            }
            hists.next();
        }
    }
    hists.status()?;
    counters.status()?;
    Ok(())
}

fn scan_errors(
    store: &Store,
    project_id: u64,
    res: Resolution,
    from: u64,
    to: u64,
    filters: &Filters<'_>,
    out: &mut Collector,
) -> Result<(), PerfError> {
    let kind = res.error_kind();
    let mut it = raw_iter(
        store,
        cf::COUNTERS,
        keys::bucketed(kind, project_id, to, &[]),
    );
    it.seek(keys::bucketed(kind, project_id, from, &[]));
    while it.valid() {
        let (Some(k), Some(v)) = (it.key(), it.value()) else {
            break;
        };
        if let Some((environment, _)) =
            pk::split_bucketed(k).and_then(|(_, _, _, rest)| pk::read_dim(rest))
        {
            if filters.environment.is_none_or(|e| e == environment) {
                let n = decode_i64(v).max(0) as u64;
                out.total.errors += n;
                if out.group_by == Some(GroupBy::Environment) && out.errors_by_env.len() < 100_000 {
                    *out.errors_by_env.entry(environment.to_vec()).or_default() += n;
                }
            }
        }
        it.next();
    }
    it.status()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_decompose_into_whole_buckets() {
        let day = 86_400_000;
        let hour = 3_600_000;
        let start = 2 * day - 2 * hour - 3 * MINUTE;
        let end = 5 * day + hour + 2 * MINUTE;
        let parts = decompose(start, end);
        // Contiguous, covering, coarsest.
        let mut at = start;
        for &(res, a, b) in &parts {
            assert_eq!(a, at);
            assert_eq!(a % res.millis(), 0);
            assert_eq!(b % res.millis(), 0);
            at = b;
        }
        assert_eq!(at, end);
        assert!(parts.contains(&(Resolution::Day, 2 * day, 5 * day)));
        assert_eq!(parts.len(), 5);
        assert!(decompose(10, 10).is_empty());
    }

    #[test]
    fn parses_ranges() {
        assert_eq!(parse_duration_ms("90m").unwrap(), 90 * MINUTE);
        assert_eq!(parse_duration_ms("7d").unwrap(), 7 * 86_400_000);
        assert!(parse_duration_ms("7").is_err());
        assert!(parse_duration_ms("h").is_err());
        assert!(parse_duration_ms("0h").is_err());
        let r = TimeRange::parse(
            None,
            Some("2024-01-01T00:00:30Z"),
            Some("2024-01-01T01:00:01"),
        )
        .unwrap();
        let (s, e) = r.resolve(0).unwrap();
        assert_eq!(s, 1_704_067_200_000);
        assert_eq!(e, 1_704_067_200_000 + 61 * MINUTE);
        let (s, e) = TimeRange::parse(Some("1h"), None, None)
            .unwrap()
            .resolve(10 * 3_600_000 + 1)
            .unwrap();
        assert_eq!((s, e), (9 * 3_600_000 + MINUTE, 10 * 3_600_000 + MINUTE));
        assert!(
            TimeRange::parse(None, Some("2024-01-02"), Some("2024-01-01"))
                .unwrap()
                .resolve(0)
                .is_err()
        );
        assert!("bogus".parse::<GroupBy>().is_err());
    }

    #[test]
    fn user_sketch_estimates() {
        let words = (pk::USER_SLOTS as usize).div_ceil(64);
        let mut bits = vec![0u64; words];
        assert_eq!(users::estimate(&bits), 0);
        // Slots from a splitmix64 sequence (uniform, like hashed user keys): a few users
        // are counted exactly, many closely.
        let mut state = 7u64;
        let mut next = || {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            (z ^ (z >> 31)) % u64::from(pk::USER_SLOTS)
        };
        for i in 1..=20_000u64 {
            let slot = next() as usize;
            bits[slot / 64] |= 1 << (slot % 64);
            let distinct: u32 = bits.iter().map(|w| w.count_ones()).sum();
            if i == 10 && distinct == 10 {
                assert_eq!(users::estimate(&bits), 10);
            }
        }
        let n = users::estimate(&bits) as f64;
        assert!((n - 20_000.0).abs() / 20_000.0 < 0.03, "{n}");
        let full = vec![u64::MAX; words];
        assert!(users::estimate(&full) > 150_000);
        assert!((users::user_misery(0, 0) - 5.8875 / 117.75).abs() < 1e-12);
        assert!((users::user_misery(3, 10) - 8.8875 / 127.75).abs() < 1e-12);
    }

    #[test]
    fn nearest_rank_quantiles() {
        let mut acc = Acc::new();
        let buckets: Vec<(u32, u64)> = (1..=100u64)
            .map(|v| (hist::index_of(v * 1000), 1))
            .collect();
        let mut sorted = buckets.clone();
        sorted.sort();
        acc.add_buckets(&sorted);
        let q = acc.quantiles(&[0.5, 0.95, 1.0]);
        for (got, want) in q.iter().zip([50.0, 95.0, 100.0]) {
            let got = got.unwrap();
            assert!(got >= want && got <= want * 1.001, "{got} vs {want}");
        }
    }
}
