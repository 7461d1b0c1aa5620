//! Outcome counters (what was accepted, filtered, rejected, discarded) by hour, as the
//! processor records them: `keys::outcome(project, hour, outcome, category, reason)`.

use serde::Serialize;
use storage::{cf, decode_i64, keys, Result};

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
        12 => "span",
        14 => "feedback",
        _ => "unknown",
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

impl QueryService {
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
