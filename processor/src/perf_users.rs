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
        // Every (project, dims + suffix) the batch touches, interned once per series, mask
        // and suffix, so the per-minute work below hashes small tuples and copies no keys.
        let mut targets: Vec<(u64, Vec<u8>)> = Vec::new();
        let mut target_ids: FastMap<(u64, Vec<u8>), u32> = FastMap::default();
        let series_targets: Vec<[[u32; 2]; pk::ROLLUP_MASKS.len()]> = self
            .keys
            .iter()
            .map(|key| {
                pk::ROLLUP_MASKS.map(|mask| {
                    [pk::USERS_ALL, pk::USERS_MISERABLE].map(|suffix| {
                        let mut rest = Vec::new();
                        pk::push_dims(
                            &mut rest,
                            mask,
                            &key.environment,
                            &key.release,
                            &key.transaction,
                        );
                        rest.push(suffix);
                        let target = (key.project_id, rest);
                        if let Some(&id) = target_ids.get(&target) {
                            return id;
                        }
                        let id = targets.len() as u32;
                        target_ids.insert(target.clone(), id);
                        targets.push(target);
                        id
                    })
                })
            })
            .collect();
        // (target, users kind, bucket start) → slots.
        let mut sketches: FastMap<(u32, u8, u64), Vec<u32>> = FastMap::default();
        for ((series, minute), slots) in self.minutes.drain() {
            for by_suffix in &series_targets[series as usize] {
                for (target, list) in by_suffix.iter().zip([&slots.all, &slots.miserable]) {
                    if list.is_empty() {
                        continue;
                    }
                    for res in Resolution::ALL {
                        sketches
                            .entry((*target, res.users_kind(), res.bucket_start(minute)))
                            .or_default()
                            .extend_from_slice(list);
                    }
                }
            }
        }
        // In key order (kind, project, bucket start, dims): RocksDB's memtable insert hint
        // per key kind then starts each merge next to the previous one.
        let mut sketches: Vec<_> = sketches.into_iter().collect();
        let order = |&(target, kind, start): &(u32, u8, u64)| {
            let (project_id, rest) = &targets[target as usize];
            (kind, *project_id, start, rest.as_slice())
        };
        sketches.sort_unstable_by(|(a, _), (b, _)| order(a).cmp(&order(b)));
        let hist_cf = store.cf(cf::HISTOGRAMS);
        let mut pairs: Vec<(u32, u64)> = Vec::new();
        let mut value = Vec::new();
        for ((target, kind, start), mut slots) in sketches {
            let (project_id, rest) = &targets[target as usize];
            slots.sort_unstable();
            slots.dedup();
            pairs.clear();
            pairs.extend(slots.iter().map(|&s| (s, 1)));
            hist::encode_sparse(&pairs, &mut value);
            batch.merge_cf(
                &hist_cf,
                keys::bucketed(kind, *project_id, start, rest),
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
