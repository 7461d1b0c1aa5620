//! Outcome counters (what was accepted, filtered, rejected, discarded) by hour, as the
//! processor records them: `keys::outcome(project, hour, outcome, category, reason)`.
//!
//! Two readers: [`QueryService::outcomes`] lists one project's raw counters, and
//! [`QueryService::outcome_stats`] sums them the way Sentry's org stats endpoint
//! (`GET /api/0/organizations/{org}/stats_v2/`, `api/stats.rs`) answers: per group of
//! outcome / category / reason / project, a total and a series over fixed intervals.
//! Categories `default` and `security` count as `error`, as Sentry reports them, and the
//! reason `smart_rate_limit` is shown as `spike_protection`.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use serde_json::{json, Map, Value};
use storage::{cf, decode_i64, keys, Result, StorageError};

use crate::issues::iso;
use crate::QueryService;

/// Relay's outcome names by id.
pub fn outcome_name(id: u8) -> &'static str {
    match id {
        0 => "accepted",
        1 => "filtered",
        2 => "rate_limited",
        3 => "invalid",
        4 => "abuse",
        5 => "client_discard",
        6 => "cardinality_limited",
        _ => "unknown",
    }
}

/// Relay's outcome id of an outcome name (`None` for names Relay does not have).
pub fn outcome_id(name: &str) -> Option<u8> {
    (0..=6).find(|&id| name != "unknown" && outcome_name(id) == name)
}

/// Relay's data category names by id (the ones osprey records).
pub fn category_name(id: u8) -> &'static str {
    match id {
        0 => "default",
        1 => "error",
        2 => "transaction",
        3 => "security",
        4 => "attachment",
        5 => "session",
        6 => "profile",
        7 => "replay",
        8 => "transaction_processed",
        9 => "transaction_indexed",
        10 => "monitor",
        11 => "profile_indexed",
        12 => "span",
        13 => "monitor_seat",
        14 => "feedback",
        15 => "metric_bucket",
        16 => "span_indexed",
        17 => "profile_duration",
        18 => "profile_chunk",
        20 => "replay_video",
        22 => "attachment_item",
        23 => "log_item",
        24 => "log_byte",
        33 => "trace_metric",
        _ => "unknown",
    }
}

/// The category id of a category name (`None` for names osprey does not know).
pub fn category_id(name: &str) -> Option<u8> {
    (0..64u8).find(|&id| name != "unknown" && category_name(id) == name)
}

/// The category Sentry's stats report a counter under: `default` and `security` events are
/// errors there.
pub fn stats_category(id: u8) -> &'static str {
    match id {
        0 | 3 => "error",
        other => category_name(other),
    }
}

/// One outcome counter for one hour.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct OutcomeCount {
    /// Project.
    pub project_id: u64,
    /// Start of the hour, ISO 8601.
    pub hour: String,
    /// Start of the hour, unix ms.
    pub hour_ms: u64,
    /// `accepted`, `filtered`, `invalid`, …
    pub outcome: &'static str,
    /// `error`, `transaction`, …
    pub category: &'static str,
    /// Filter name, invalid reason or client discard reason ("" for accepted).
    pub reason: String,
    /// Items.
    pub quantity: i64,
}

/// Most counters one call returns.
const MAX_ROWS: usize = 100_000;

/// A value Sentry's stats endpoint sums.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatsField {
    /// `sum(quantity)`: items (bytes for attachments).
    Quantity,
    /// `sum(times_seen)`: outcomes. osprey keeps one counter per outcome, its quantity; every
    /// category it records counts one per item (so this equals `sum(quantity)`) except
    /// attachments, counted in bytes, whose number of files is not kept (reported as the
    /// same byte sum, which the endpoint docs call out).
    TimesSeen,
}

impl StatsField {
    /// The name in Sentry's API.
    pub fn name(self) -> &'static str {
        match self {
            StatsField::Quantity => "sum(quantity)",
            StatsField::TimesSeen => "sum(times_seen)",
        }
    }

    /// Parses a `field` parameter.
    pub fn parse(text: &str) -> Option<StatsField> {
        match text {
            "sum(quantity)" => Some(StatsField::Quantity),
            "sum(times_seen)" => Some(StatsField::TimesSeen),
            _ => None,
        }
    }
}

/// A column Sentry's stats endpoint groups by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatsGroupBy {
    /// `outcome`.
    Outcome,
    /// `category`.
    Category,
    /// `reason`.
    Reason,
    /// `project` (numeric id).
    Project,
}

impl StatsGroupBy {
    /// The name in Sentry's API.
    pub fn name(self) -> &'static str {
        match self {
            StatsGroupBy::Outcome => "outcome",
            StatsGroupBy::Category => "category",
            StatsGroupBy::Reason => "reason",
            StatsGroupBy::Project => "project",
        }
    }

    /// Parses a `groupBy` parameter.
    pub fn parse(text: &str) -> Option<StatsGroupBy> {
        [
            StatsGroupBy::Outcome,
            StatsGroupBy::Category,
            StatsGroupBy::Reason,
            StatsGroupBy::Project,
        ]
        .into_iter()
        .find(|g| g.name() == text)
    }
}

/// Most intervals one stats answer has (Sentry's limit for outcome series).
pub const MAX_STATS_INTERVALS: u64 = 1_000;
/// Most groups one stats answer has; more is refused rather than cut, so that totals stay true.
pub const MAX_STATS_GROUPS: usize = 1_000;
/// Most counters one stats query reads; more is refused (narrow the range or projects).
const MAX_STATS_ROWS: usize = 1_000_000;

/// A stats query, already validated: what [`QueryService::outcome_stats`] sums.
#[derive(Debug, Clone)]
pub struct StatsQuery {
    /// Summed values, in answer order (at least one).
    pub fields: Vec<StatsField>,
    /// Group-by columns, in order (none = one group over everything).
    pub group_by: Vec<StatsGroupBy>,
    /// Projects read.
    pub projects: Vec<u64>,
    /// Category ids kept (`None` = all).
    pub categories: Option<BTreeSet<u8>>,
    /// Outcome ids kept (`None` = all).
    pub outcomes: Option<BTreeSet<u8>>,
    /// Stored reasons kept (`None` = all).
    pub reasons: Option<BTreeSet<String>>,
    /// Start of the first interval, unix ms, a multiple of `interval_ms`.
    pub start_ms: u64,
    /// End of the last interval (exclusive), unix ms.
    pub end_ms: u64,
    /// Interval length in ms, a whole number of hours (counters are hourly).
    pub interval_ms: u64,
}

/// One group of a stats answer.
#[derive(Debug, Clone, PartialEq)]
pub struct StatsGroup {
    /// The group's values, in `group_by` order.
    pub by: Vec<StatsKey>,
    /// Sum over the whole range.
    pub total: i64,
    /// Sum per interval.
    pub series: Vec<i64>,
}

/// A group-by value.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum StatsKey {
    /// A name (outcome, category, reason).
    Name(String),
    /// A project id.
    Project(u64),
}

/// The answer of [`QueryService::outcome_stats`].
#[derive(Debug, Clone)]
pub struct OutcomeStats {
    /// The query answered.
    pub query: StatsQuery,
    /// Groups sorted by their values.
    pub groups: Vec<StatsGroup>,
}

/// Sentry's `isoformat_z`: seconds precision with a `Z`.
pub(crate) fn iso_seconds(ms: u64) -> String {
    chrono::DateTime::from_timestamp_millis(i64::try_from(ms).unwrap_or(i64::MAX))
        .map(|d| d.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_default()
}

impl OutcomeStats {
    /// Whether the answer has a time series: Sentry answers totals only when grouping by
    /// project.
    pub fn has_series(&self) -> bool {
        !self.query.group_by.contains(&StatsGroupBy::Project)
    }

    /// Sentry's JSON: `{start, end, intervals, groups: [{by, totals, series}]}`.
    pub fn to_json(&self) -> Value {
        let q = &self.query;
        let series = self.has_series();
        let groups: Vec<Value> = self
            .groups
            .iter()
            .map(|g| {
                let mut by = Map::new();
                for (col, key) in q.group_by.iter().zip(&g.by) {
                    let v = match key {
                        StatsKey::Name(n) => json!(n),
                        StatsKey::Project(id) => json!(id),
                    };
                    by.insert(col.name().to_owned(), v);
                }
                let mut totals = Map::new();
                let mut ser = Map::new();
                for f in &q.fields {
                    totals.insert(f.name().to_owned(), json!(g.total));
                    ser.insert(f.name().to_owned(), json!(g.series));
                }
                let mut group = json!({"by": by, "totals": totals});
                if series {
                    group["series"] = Value::Object(ser);
                }
                group
            })
            .collect();
        let mut out = json!({
            "start": iso_seconds(q.start_ms),
            "end": iso_seconds(q.end_ms),
            "groups": groups,
        });
        if series {
            let intervals: Vec<String> = (q.start_ms..q.end_ms)
                .step_by(usize::try_from(q.interval_ms.max(1)).unwrap_or(usize::MAX))
                .map(iso_seconds)
                .collect();
            out["intervals"] = json!(intervals);
        }
        out
    }
}

impl QueryService {
    /// Sums outcome counters for Sentry's stats endpoint: every counter of `query.projects`
    /// in `[start_ms, end_ms)` that passes the filters, grouped by `query.group_by` and
    /// bucketed by `query.interval_ms`. Fails with [`StorageError::Invalid`] when the answer
    /// would have more than [`MAX_STATS_GROUPS`] groups or the range holds too many counters.
    pub fn outcome_stats(&self, query: &StatsQuery) -> Result<OutcomeStats> {
        let interval = query.interval_ms.max(1);
        let buckets = usize::try_from(query.end_ms.saturating_sub(query.start_ms) / interval)
            .unwrap_or(usize::MAX)
            .min(MAX_STATS_INTERVALS as usize);
        let mut groups: BTreeMap<Vec<StatsKey>, (i64, Vec<i64>)> = BTreeMap::new();
        let mut rows = 0usize;
        if query.group_by.is_empty() {
            groups.insert(Vec::new(), (0, vec![0; buckets]));
        }
        let store = self.store();
        for &project in &query.projects {
            let start = keys::bucketed(keys::OUTCOME, project, query.start_ms, &[]);
            let end = keys::bucketed(keys::OUTCOME, project, query.end_ms, &[]);
            let iter = store.db().iterator_cf(
                &store.cf(cf::OUTCOMES),
                rocksdb::IteratorMode::From(&start, rocksdb::Direction::Forward),
            );
            for item in iter {
                let (key, value) = item?;
                if key.as_ref() >= end.as_slice() || key.len() < 19 {
                    break;
                }
                rows += 1;
                if rows > MAX_STATS_ROWS {
                    return Err(StorageError::Invalid(format!(
                        "the range holds more than {MAX_STATS_ROWS} outcome counters; query a shorter range or fewer projects"
                    )));
                }
                let hour_ms = u64::from_be_bytes(key[9..17].try_into().unwrap_or_default());
                let (outcome, category) = (key[17], key[18]);
                let reason = String::from_utf8_lossy(&key[19..]);
                if query
                    .outcomes
                    .as_ref()
                    .is_some_and(|o| !o.contains(&outcome))
                    || query
                        .categories
                        .as_ref()
                        .is_some_and(|c| !c.contains(&category))
                    || query
                        .reasons
                        .as_ref()
                        .is_some_and(|r| !r.contains(reason.as_ref()))
                {
                    continue;
                }
                let Some(bucket) = hour_ms
                    .checked_sub(query.start_ms)
                    .map(|d| (d / interval) as usize)
                    .filter(|&b| b < buckets)
                else {
                    continue;
                };
                let group: Vec<StatsKey> = query
                    .group_by
                    .iter()
                    .map(|col| match col {
                        StatsGroupBy::Outcome => StatsKey::Name(outcome_name(outcome).into()),
                        StatsGroupBy::Category => StatsKey::Name(stats_category(category).into()),
                        StatsGroupBy::Reason => StatsKey::Name(shown_reason(&reason).into()),
                        StatsGroupBy::Project => StatsKey::Project(project),
                    })
                    .collect();
                if !groups.contains_key(&group) && groups.len() >= MAX_STATS_GROUPS {
                    return Err(StorageError::Invalid(format!(
                        "the query would return more than {MAX_STATS_GROUPS} groups; filter or group by fewer columns"
                    )));
                }
                let entry = groups.entry(group).or_insert_with(|| (0, vec![0; buckets]));
                let n = decode_i64(&value);
                entry.0 = entry.0.saturating_add(n);
                entry.1[bucket] = entry.1[bucket].saturating_add(n);
            }
        }
        Ok(OutcomeStats {
            query: query.clone(),
            groups: groups
                .into_iter()
                .map(|(by, (total, series))| StatsGroup { by, total, series })
                .collect(),
        })
    }

    /// Outcome counters of a project for the hours overlapping `[from_ms, to_ms)`.
    pub fn outcomes(&self, project_id: u64, from_ms: u64, to_ms: u64) -> Result<Vec<OutcomeCount>> {
        let store = self.store();
        let start = keys::bucketed(keys::OUTCOME, project_id, keys::hour_start(from_ms), &[]);
        let end = keys::bucketed(keys::OUTCOME, project_id, to_ms, &[]);
        let iter = store.db().iterator_cf(
            &store.cf(cf::OUTCOMES),
            rocksdb::IteratorMode::From(&start, rocksdb::Direction::Forward),
        );
        let mut out = Vec::new();
        for item in iter.take(MAX_ROWS) {
            let (key, value) = item?;
            if key.as_ref() >= end.as_slice() || key.len() < 19 {
                break;
            }
            let hour_ms = u64::from_be_bytes(key[9..17].try_into().unwrap_or_default());
            out.push(OutcomeCount {
                project_id,
                hour: iso(hour_ms),
                hour_ms,
                outcome: outcome_name(key[17]),
                category: category_name(key[18]),
                reason: String::from_utf8_lossy(&key[19..]).into_owned(),
                quantity: decode_i64(&value),
            });
        }
        Ok(out)
    }
}

/// The reason as Sentry shows it (`smart_rate_limit` is `spike_protection` there).
pub fn shown_reason(stored: &str) -> &str {
    if stored == "smart_rate_limit" {
        "spike_protection"
    } else {
        stored
    }
}

/// The stored reason a `reason` filter names (the inverse of [`shown_reason`]).
pub fn stored_reason(shown: &str) -> &str {
    if shown == "spike_protection" {
        "smart_rate_limit"
    } else {
        shown
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use storage::{encode_i64, Store, StoreOptions, WriteBatch};

    #[test]
    fn reads_back_outcome_counters_in_range() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), &StoreOptions::default()).unwrap();
        let h = 3_600_000u64;
        let mut batch = WriteBatch::default();
        let cf = store.cf(cf::OUTCOMES);
        for (project, hour, outcome, reason, n) in [
            (1u64, 10 * h, 0u8, "", 5i64),
            (1, 10 * h, 1, "localhost", 2),
            (1, 11 * h, 3, "invalid_json", 1),
            (1, 12 * h, 0, "", 9),
            (2, 10 * h, 0, "", 7),
        ] {
            batch.merge_cf(
                &cf,
                keys::outcome(project, hour, outcome, 1, reason),
                encode_i64(n),
            );
        }
        batch.merge_cf(&cf, keys::outcome(1, 10 * h, 0, 1, ""), encode_i64(1));
        drop(cf);
        store.write(batch, false).unwrap();
        let qs = QueryService::new(store);
        let rows = qs.outcomes(1, 10 * h + 5, 12 * h).unwrap();
        let got: Vec<(&str, &str, i64)> = rows
            .iter()
            .map(|r| (r.outcome, r.reason.as_str(), r.quantity))
            .collect();
        assert_eq!(
            got,
            vec![
                ("accepted", "", 6),
                ("filtered", "localhost", 2),
                ("invalid", "invalid_json", 1)
            ]
        );
        assert_eq!(rows[0].category, "error");
        assert_eq!(rows[0].hour, "1970-01-01T10:00:00.000Z");
    }
}

#[cfg(test)]
mod stats_tests {
    use super::*;
    use storage::{encode_i64, Store, StoreOptions, WriteBatch};

    const H: u64 = 3_600_000;
    const DAY: u64 = 24 * H;

    /// A store holding hand-written counters: (project, hour, outcome, category, reason, n).
    fn store_with(rows: &[(u64, u64, u8, u8, &str, i64)]) -> (tempfile::TempDir, QueryService) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), &StoreOptions::default()).unwrap();
        let mut batch = WriteBatch::default();
        let cf = store.cf(cf::OUTCOMES);
        for &(project, hour, outcome, category, reason, n) in rows {
            batch.merge_cf(
                &cf,
                keys::outcome(project, hour, outcome, category, reason),
                encode_i64(n),
            );
        }
        drop(cf);
        store.write(batch, false).unwrap();
        (dir, QueryService::new(store))
    }

    fn fixture() -> (tempfile::TempDir, QueryService) {
        let d = 100 * DAY;
        store_with(&[
            // project 1, day 100: errors accepted in two hours, one filtered, one invalid.
            (1, d, 0, 1, "", 5),
            (1, d + 3 * H, 0, 1, "", 2),
            (1, d + 3 * H, 0, 0, "", 1), // default counts as error
            (1, d + 3 * H, 1, 1, "localhost", 4),
            (1, d + 5 * H, 3, 1, "invalid_json", 1),
            (1, d + 5 * H, 0, 2, "", 7), // transactions
            (1, d + 6 * H, 2, 1, "smart_rate_limit", 3),
            // day 101.
            (1, d + DAY + H, 0, 1, "", 10),
            // project 2.
            (2, d + H, 0, 1, "", 100),
            // outside the range.
            (1, d - H, 0, 1, "", 1000),
            (1, d + 2 * DAY, 0, 1, "", 1000),
        ])
    }

    fn query(group_by: Vec<StatsGroupBy>, interval_ms: u64) -> StatsQuery {
        StatsQuery {
            fields: vec![StatsField::Quantity],
            group_by,
            projects: vec![1, 2],
            categories: None,
            outcomes: None,
            reasons: None,
            start_ms: 100 * DAY,
            end_ms: 102 * DAY,
            interval_ms,
        }
    }

    fn totals(stats: &OutcomeStats) -> Vec<(Vec<StatsKey>, i64)> {
        stats
            .groups
            .iter()
            .map(|g| (g.by.clone(), g.total))
            .collect()
    }

    fn name(s: &str) -> StatsKey {
        StatsKey::Name(s.into())
    }

    #[test]
    fn groups_by_outcome_and_category_with_errors_merged() {
        let (_dir, qs) = fixture();
        let stats = qs
            .outcome_stats(&query(
                vec![StatsGroupBy::Outcome, StatsGroupBy::Category],
                DAY,
            ))
            .unwrap();
        assert_eq!(
            totals(&stats),
            vec![
                (vec![name("accepted"), name("error")], 5 + 2 + 1 + 10 + 100),
                (vec![name("accepted"), name("transaction")], 7),
                (vec![name("filtered"), name("error")], 4),
                (vec![name("invalid"), name("error")], 1),
                (vec![name("rate_limited"), name("error")], 3),
            ]
        );
        // Daily series: day 100 and day 101.
        assert_eq!(stats.groups[0].series, vec![108, 10]);
        let body = stats.to_json();
        assert_eq!(
            body["intervals"],
            json!(["1970-04-11T00:00:00Z", "1970-04-12T00:00:00Z"])
        );
        assert_eq!(body["start"], "1970-04-11T00:00:00Z");
        assert_eq!(body["end"], "1970-04-13T00:00:00Z");
        assert_eq!(
            body["groups"][0]["by"],
            json!({"outcome": "accepted", "category": "error"})
        );
        assert_eq!(body["groups"][0]["totals"]["sum(quantity)"], 118);
        assert_eq!(
            body["groups"][0]["series"]["sum(quantity)"],
            json!([108, 10])
        );
    }

    #[test]
    fn hourly_buckets_and_reasons() {
        let (_dir, qs) = fixture();
        let mut q = query(vec![StatsGroupBy::Reason], H);
        q.projects = vec![1];
        q.end_ms = 100 * DAY + 8 * H;
        let stats = qs.outcome_stats(&q).unwrap();
        assert_eq!(
            totals(&stats),
            vec![
                (vec![name("")], 5 + 2 + 1 + 7),
                (vec![name("invalid_json")], 1),
                (vec![name("localhost")], 4),
                (vec![name("spike_protection")], 3),
            ]
        );
        assert_eq!(stats.groups[0].series, vec![5, 0, 0, 3, 0, 7, 0, 0]);
        assert_eq!(stats.groups[3].series, vec![0, 0, 0, 0, 0, 0, 3, 0]);
        assert_eq!(stats.to_json()["intervals"].as_array().unwrap().len(), 8);
    }

    #[test]
    fn filters_narrow_the_counters() {
        let (_dir, qs) = fixture();
        let mut q = query(vec![StatsGroupBy::Outcome], DAY);
        q.categories = Some([0, 1, 3].into());
        q.outcomes = Some([0, 3].into());
        let stats = qs.outcome_stats(&q).unwrap();
        assert_eq!(
            totals(&stats),
            vec![(vec![name("accepted")], 118), (vec![name("invalid")], 1)]
        );
        q.reasons = Some(["invalid_json".to_owned()].into());
        assert_eq!(
            totals(&qs.outcome_stats(&q).unwrap()),
            vec![(vec![name("invalid")], 1)]
        );
        // No group-by: one group over everything kept, even when nothing matches.
        let mut q = query(vec![], DAY);
        q.projects = vec![2];
        assert_eq!(totals(&qs.outcome_stats(&q).unwrap()), vec![(vec![], 100)]);
        q.projects = vec![3];
        let empty = qs.outcome_stats(&q).unwrap();
        assert_eq!(totals(&empty), vec![(vec![], 0)]);
        assert_eq!(empty.groups[0].series, vec![0, 0]);
    }

    #[test]
    fn project_groups_have_totals_only() {
        let (_dir, qs) = fixture();
        let mut q = query(vec![StatsGroupBy::Project], DAY);
        q.fields = vec![StatsField::Quantity, StatsField::TimesSeen];
        let stats = qs.outcome_stats(&q).unwrap();
        assert_eq!(
            totals(&stats),
            vec![
                (vec![StatsKey::Project(1)], 5 + 2 + 1 + 4 + 1 + 7 + 3 + 10),
                (vec![StatsKey::Project(2)], 100),
            ]
        );
        let body = stats.to_json();
        assert!(body.get("intervals").is_none());
        assert!(body["groups"][0].get("series").is_none());
        assert_eq!(body["groups"][1]["by"], json!({"project": 2}));
        assert_eq!(body["groups"][1]["totals"]["sum(times_seen)"], 100);
    }

    #[test]
    fn too_many_groups_is_refused() {
        let rows: Vec<(u64, u64, u8, u8, String, i64)> = (0..=MAX_STATS_GROUPS)
            .map(|i| (1, 100 * DAY, 5u8, 1u8, format!("reason{i}"), 1))
            .collect();
        let borrowed: Vec<(u64, u64, u8, u8, &str, i64)> = rows
            .iter()
            .map(|(p, h, o, c, r, n)| (*p, *h, *o, *c, r.as_str(), *n))
            .collect();
        let (_dir, qs) = store_with(&borrowed);
        let err = qs
            .outcome_stats(&query(vec![StatsGroupBy::Reason], DAY))
            .unwrap_err();
        assert!(matches!(err, StorageError::Invalid(_)), "{err}");
        // Grouped more coarsely it answers.
        let stats = qs
            .outcome_stats(&query(vec![StatsGroupBy::Outcome], DAY))
            .unwrap();
        assert_eq!(
            totals(&stats),
            vec![(vec![name("client_discard")], MAX_STATS_GROUPS as i64 + 1)]
        );
    }

    #[test]
    fn names_round_trip() {
        assert_eq!(outcome_id("rate_limited"), Some(2));
        assert_eq!(outcome_id("unknown"), None);
        assert_eq!(category_id("span"), Some(12));
        assert_eq!(category_id("log_byte"), Some(24));
        assert_eq!(category_id("unknown"), None);
        assert_eq!(category_id("errors"), None);
        assert_eq!(stored_reason("spike_protection"), "smart_rate_limit");
    }
}
