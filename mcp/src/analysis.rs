//! Synchronous answers behind the tools: scans of a project's events in a time range, error
//! analysis, transaction statistics and release comparison.
//!
//! These read what the processor stored (the project time index, stored events, issue
//! records and their counters) through `storage`/`query`. Every scan is bounded
//! ([`MAX_SCAN`]); an answer built from a capped scan says so (`truncated`).

use std::collections::{BTreeMap, HashMap, HashSet};

use serde_json::Value;
use storage::records::{self, StoredEvent};
use storage::{cf, keys, Store};
use uuid::Uuid;

/// Most events one answer reads.
pub const MAX_SCAN: usize = 200_000;

/// The accepted `timeRange` forms, for error messages.
pub const RANGE_HELP: &str =
    "use a number and a unit: 30m, 1h, 24h, 7d or 2w (s, m, h, d, w; at most 90d)";

/// Parses `timeRange` (`30m`, `1h`, `24h`, `7d`, `2w`) into milliseconds, with the perf
/// module's duration syntax, capped at the retention horizon.
pub fn parse_range(text: &str) -> Result<u64, String> {
    let ms = query::perf::parse_duration_ms(text)
        .map_err(|_| format!("timeRange {text:?} is not understood: {RANGE_HELP}"))?;
    if ms > 90 * 86_400_000 {
        return Err(format!(
            "timeRange {text:?} is longer than the 90 days osprey keeps: {RANGE_HELP}"
        ));
    }
    Ok(ms)
}

/// Events of `project_id` with `start_ms <= timestamp < end_ms`, oldest first, at most `max`
/// (the flag says whether the cap cut the scan short). Transactions are included.
pub fn scan_events(
    store: &Store,
    project_id: u64,
    start_ms: u64,
    end_ms: u64,
    max: usize,
    mut keep: impl FnMut(&StoredEvent) -> bool,
) -> storage::Result<(Vec<StoredEvent>, bool)> {
    let from = keys::index_by_time(
        keys::index::PROJECT_TIME,
        project_id,
        start_ms,
        &Uuid::nil(),
    );
    let prefix = keys::prefixed_id(keys::index::PROJECT_TIME, project_id);
    let iter = store.db().iterator_cf(
        &store.cf(cf::INDEX),
        rocksdb::IteratorMode::From(&from, rocksdb::Direction::Forward),
    );
    let mut out = Vec::new();
    for (read, item) in iter.enumerate() {
        let (key, _) = item?;
        if !key.starts_with(&prefix) {
            break;
        }
        let ts = key
            .get(9..17)
            .and_then(|b| b.try_into().ok())
            .map(u64::from_be_bytes)
            .unwrap_or(0);
        if ts >= end_ms {
            break;
        }
        if read >= max {
            return Ok((out, true));
        }
        let Some(id) = key.get(17..33).and_then(|b| Uuid::from_slice(b).ok()) else {
            continue;
        };
        if let Some(ev) = records::load_event(store, project_id, &id)? {
            if keep(&ev) {
                out.push(ev);
            }
        }
    }
    Ok((out, false))
}

/// Whether a stored event is a transaction.
pub fn is_transaction(ev: &StoredEvent) -> bool {
    ev.event.get("type").and_then(Value::as_str) == Some("transaction")
}

/// A tag value of a stored event (`tags` is a list of pairs after normalization).
pub fn tag<'a>(ev: &'a StoredEvent, key: &str) -> Option<&'a str> {
    ev.event
        .get("tags")
        .and_then(Value::as_array)?
        .iter()
        .find(|p| p.get(0).and_then(Value::as_str) == Some(key))?
        .get(1)?
        .as_str()
}

/// A top-level string field, else the tag of the same name.
pub fn field<'a>(ev: &'a StoredEvent, key: &str) -> Option<&'a str> {
    ev.event
        .get(key)
        .and_then(Value::as_str)
        .or_else(|| tag(ev, key))
}

/// Event filters shared by the tools.
#[derive(Debug, Default, Clone)]
pub struct EventFilter {
    /// Only this environment.
    pub environment: Option<String>,
    /// Only these levels (any of).
    pub levels: Vec<String>,
    /// Every tag must have this value.
    pub tags: BTreeMap<String, String>,
}

impl EventFilter {
    /// Whether `ev` passes.
    pub fn keeps(&self, ev: &StoredEvent) -> bool {
        if let Some(env) = &self.environment {
            if field(ev, "environment") != Some(env.as_str()) {
                return false;
            }
        }
        if !self.levels.is_empty() {
            let level = field(ev, "level").unwrap_or("error");
            if !self.levels.iter().any(|l| l.eq_ignore_ascii_case(level)) {
                return false;
            }
        }
        self.tags
            .iter()
            .all(|(k, v)| field(ev, k) == Some(v.as_str()))
    }
}

/// Per-issue tallies of one range.
#[derive(Debug, Default, Clone)]
pub struct IssueTally {
    /// Events.
    pub events: u64,
    /// Distinct users (by the `user` tag).
    pub users: HashSet<String>,
}

/// Errors of one range.
#[derive(Debug, Default)]
pub struct ErrorTally {
    /// Error events.
    pub total: u64,
    /// Distinct users.
    pub users: HashSet<String>,
    /// By issue.
    pub by_issue: HashMap<u64, IssueTally>,
    /// By level.
    pub by_level: BTreeMap<String, u64>,
    /// The scan hit [`MAX_SCAN`].
    pub truncated: bool,
}

/// Counts the error events (not transactions) of a range that pass `filter`.
pub fn tally_errors(
    store: &Store,
    project_id: u64,
    start_ms: u64,
    end_ms: u64,
    filter: &EventFilter,
) -> storage::Result<ErrorTally> {
    let mut tally = ErrorTally::default();
    let (events, truncated) = scan_events(store, project_id, start_ms, end_ms, MAX_SCAN, |ev| {
        !is_transaction(ev) && filter.keeps(ev)
    })?;
    tally.truncated = truncated;
    for ev in &events {
        tally.total += 1;
        let user = tag(ev, "user").map(str::to_owned);
        if let Some(u) = &user {
            tally.users.insert(u.clone());
        }
        *tally
            .by_level
            .entry(field(ev, "level").unwrap_or("error").to_owned())
            .or_default() += 1;
        if let Some(issue) = ev.issue_id {
            let t = tally.by_issue.entry(issue).or_default();
            t.events += 1;
            if let Some(u) = user {
                t.users.insert(u);
            }
        }
    }
    Ok(tally)
}

/// One transaction's duration and status, as read from its stored event.
#[derive(Debug, Clone)]
pub struct TxSample {
    /// Duration, ms.
    pub duration_ms: f64,
    /// Status (`ok`, `internal_error`, …; `unknown` when not sent).
    pub status: String,
}

/// Reads a transaction's duration and status.
pub fn tx_sample(ev: &StoredEvent) -> Option<TxSample> {
    let end = ev.event.get("timestamp").and_then(Value::as_f64)?;
    let start = ev.event.get("start_timestamp").and_then(Value::as_f64)?;
    Some(TxSample {
        duration_ms: ((end - start) * 1000.0).max(0.0),
        status: ev
            .event
            .pointer("/contexts/trace/status")
            .and_then(Value::as_str)
            .unwrap_or("unknown")
            .to_owned(),
    })
}

/// A counter in the counters column family (missing = 0).
pub fn counter(store: &Store, key: &[u8]) -> storage::Result<u64> {
    Ok(store
        .db()
        .get_pinned_cf(&store.cf(cf::COUNTERS), key)?
        .map(|v| storage::decode_i64(&v).max(0) as u64)
        .unwrap_or(0))
}

/// Names from `candidates` that look like `wanted` (substring either way, or a small edit
/// distance), best first, at most 5.
pub fn did_you_mean<'a>(
    wanted: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Vec<String> {
    let w = wanted.to_lowercase();
    let mut scored: Vec<(usize, &str)> = candidates
        .into_iter()
        .filter_map(|c| {
            let l = c.to_lowercase();
            let d = edit_distance(&w, &l);
            let close = l.contains(&w) || w.contains(&l) || d <= (w.len() / 3).max(2);
            close.then_some((d, c))
        })
        .collect();
    scored.sort();
    scored.dedup_by(|a, b| a.1 == b.1);
    scored
        .into_iter()
        .take(5)
        .map(|(_, c)| c.to_owned())
        .collect()
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().take(256).collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().take(256).enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != *cb))
                .min(prev[j + 1] + 1)
                .min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_parse_and_explain_mistakes() {
        assert_eq!(parse_range("1h"), Ok(3_600_000));
        assert_eq!(parse_range("7d"), Ok(7 * 86_400_000));
        assert_eq!(parse_range(" 30m "), Ok(30 * 60_000));
        for bad in ["", "h", "24", "1y", "0h", "-1h", "100d"] {
            let e = parse_range(bad).unwrap_err();
            assert!(e.contains("24h"), "{bad}: {e}");
        }
    }

    #[test]
    fn suggestions() {
        let names = ["GET /checkout", "POST /checkout", "GET /health"];
        assert_eq!(
            did_you_mean("GET /chekout", names)[0],
            "GET /checkout".to_string()
        );
        assert!(did_you_mean("zzzzzzzzzzzz", names).is_empty());
    }
}
