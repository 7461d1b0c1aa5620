//! Unique users and user misery for the performance queries: per (project, environment,
//! release, transaction, bucket) two user sketches — every user with a transaction, and the
//! users with a frustrated one (duration > 4T) — written as merge operands next to the
//! duration histograms (`storage::keys::perf::USER_SLOTS` describes the sketch).
//!
//! Kept apart from [`crate::transactions::TransactionFolder`] on purpose: the folder's hot path
//! stays as it is, and a transaction without a user costs nothing here. The pipeline calls
//! [`UserFolder::add`] with the facts the folder extracted and [`UserFolder::flush_into`] once
//! per batch; like the folder, it pre-aggregates the batch so each (series, bucket) gets one
//! operand per resolution and rollup.

use storage::keys::perf::{self as pk, Resolution};
use storage::{cf, hist, keys, Project, Store, WriteBatch};

use crate::fast_hash::FastMap;
use crate::transactions::TransactionFacts;

/// The sketch slot of a user key (`id:…`, `email:…`, …).
pub fn user_slot(user: &str) -> u32 {
    (xxhash_rust::xxh3::xxh3_64(user.as_bytes()) % u64::from(pk::USER_SLOTS)) as u32
}

/// One (environment, release, transaction) series of a project.
#[derive(Clone, PartialEq, Eq, Hash)]
struct SeriesKey {
    project_id: u64,
    environment: String,
    release: String,
    transaction: String,
}

/// Slots seen in one minute of one series.
#[derive(Default)]
struct MinuteSlots {
    all: Vec<u32>,
    miserable: Vec<u32>,
}

/// Per-batch user sketches (see the module docs).
#[derive(Default)]
pub struct UserFolder {
    series: FastMap<SeriesKey, u32>,
    keys: Vec<SeriesKey>,
    minutes: FastMap<(u32, u64), MinuteSlots>,
}

impl std::fmt::Debug for UserFolder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserFolder")
            .field("series", &self.keys.len())
            .field("minutes", &self.minutes.len())
            .finish()
    }
}

impl UserFolder {
    /// An empty folder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Notes the user of one folded transaction (nothing when it has none). A transaction is
    /// frustrated when it took longer than 4T, T being the transaction's apdex threshold.
    pub fn add(&mut self, project: &Project, facts: &TransactionFacts) {
        let Some(user) = facts.user.as_deref() else {
            return;
        };
        let transaction = pk::clamp_dim(&facts.name);
        let key = SeriesKey {
            project_id: project.id,
            environment: pk::clamp_dim(facts.environment.as_deref().unwrap_or("")).to_string(),
            release: pk::clamp_dim(facts.release.as_deref().unwrap_or("")).to_string(),
            transaction: transaction.to_string(),
        };
        let id = match self.series.get(&key) {
            Some(id) => *id,
            None => {
                let id = self.keys.len() as u32;
                self.series.insert(key.clone(), id);
                self.keys.push(key);
                id
            }
        };
        let settings = &project.settings;
        let t_ms = settings
            .transaction_thresholds
            .get(transaction)
            .copied()
            .unwrap_or(settings.apdex_threshold_ms);
        let slot = user_slot(user);
        let minute = Resolution::Minute.bucket_start(facts.timestamp_ms);
        let slots = self.minutes.entry((id, minute)).or_default();
        slots.all.push(slot);
        if facts.duration_us > t_ms.saturating_mul(4_000) {
            slots.miserable.push(slot);
        }
    }

    /// Writes every sketch of the batch (each resolution, each rollup of
    /// `storage::keys::perf::ROLLUP_MASKS`) as histogram merge operands, and clears the folder.
    pub fn flush_into(&mut self, store: &Store, batch: &mut WriteBatch) {
        if self.minutes.is_empty() {
            return;
        }
        // (project, users kind, bucket start, dims + suffix) → slots.
        let mut targets: FastMap<(u64, u8, u64, Vec<u8>), Vec<u32>> = FastMap::default();
        for ((series, minute), slots) in self.minutes.drain() {
            let key = &self.keys[series as usize];
            for mask in pk::ROLLUP_MASKS {
                let mut dims = Vec::new();
                pk::push_dims(
                    &mut dims,
                    mask,
                    &key.environment,
                    &key.release,
                    &key.transaction,
                );
                for (suffix, list) in [
                    (pk::USERS_ALL, &slots.all),
                    (pk::USERS_MISERABLE, &slots.miserable),
                ] {
                    if list.is_empty() {
                        continue;
                    }
                    let mut rest = dims.clone();
                    rest.push(suffix);
                    for res in Resolution::ALL {
                        targets
                            .entry((
                                key.project_id,
                                res.users_kind(),
                                res.bucket_start(minute),
                                rest.clone(),
                            ))
                            .or_default()
                            .extend_from_slice(list);
                    }
                }
            }
        }
        let hist_cf = store.cf(cf::HISTOGRAMS);
        let mut pairs: Vec<(u32, u64)> = Vec::new();
        let mut value = Vec::new();
        for ((project_id, kind, start, rest), mut slots) in targets {
            slots.sort_unstable();
            slots.dedup();
            pairs.clear();
            pairs.extend(slots.iter().map(|&s| (s, 1)));
            hist::encode_sparse(&pairs, &mut value);
            batch.merge_cf(
                &hist_cf,
                keys::bucketed(kind, project_id, start, &rest),
                &value,
            );
        }
        self.series.clear();
        self.keys.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_stable_and_in_range() {
        assert_eq!(user_slot("id:u-1"), user_slot("id:u-1"));
        assert!(user_slot("email:a@b.c") < pk::USER_SLOTS);
        let distinct: std::collections::HashSet<u32> =
            (0..100).map(|i| user_slot(&format!("id:{i}"))).collect();
        assert!(distinct.len() >= 98, "{}", distinct.len());
    }
}
