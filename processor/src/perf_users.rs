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
        // (target, minute) → the slots of every series minute rolled into it.
        let mut by_minute: FastMap<(u32, u64), Vec<u32>> = FastMap::default();
        for ((series, minute), slots) in self.minutes.drain() {
            for by_suffix in &series_targets[series as usize] {
                for (target, list) in by_suffix.iter().zip([&slots.all, &slots.miserable]) {
                    if !list.is_empty() {
                        by_minute
                            .entry((*target, minute))
                            .or_default()
                            .extend_from_slice(list);
                    }
                }
            }
        }
        // Each minute's slots are sorted, deduplicated and encoded once. An hour or day bucket
        // holding one minute of its target (a batch usually spans seconds) is that minute's
        // sketch, so it reuses the encoded value; only buckets of several minutes are unions.
        let mut minutes: Vec<((u32, u64), Vec<u32>)> = by_minute.into_iter().collect();
        minutes.sort_unstable_by_key(|(key, _)| *key);
        let mut values: Vec<Vec<u8>> = Vec::with_capacity(minutes.len());
        // (users kind, target, bucket start, index into `values`).
        let mut sketches: Vec<(u8, u32, u64, usize)> = Vec::with_capacity(minutes.len() * 3);
        let mut pairs: Vec<(u32, u64)> = Vec::new();
        let mut encode = |slots: &[u32], values: &mut Vec<Vec<u8>>| {
            pairs.clear();
            pairs.extend(slots.iter().map(|&s| (s, 1)));
            let mut value = Vec::new();
            hist::encode_sparse(&pairs, &mut value);
            values.push(value);
            values.len() - 1
        };
        for ((target, minute), slots) in &mut minutes {
            slots.sort_unstable();
            slots.dedup();
            let value = encode(slots, &mut values);
            sketches.push((Resolution::Minute.users_kind(), *target, *minute, value));
        }
        for res in [Resolution::Hour, Resolution::Day] {
            // Minutes are in (target, minute) order: one bucket's minutes are adjacent.
            // `sketches` starts with the minutes, in the same order.
            let mut first = 0;
            for group in minutes.chunk_by(|((ta, ma), _), ((tb, mb), _)| {
                ta == tb && res.bucket_start(*ma) == res.bucket_start(*mb)
            }) {
                let ((target, minute), _) = group[0];
                let minute_value = sketches[first].3;
                first += group.len();
                let value = if group.len() == 1 {
                    minute_value
                } else {
                    let mut union: Vec<u32> = group
                        .iter()
                        .flat_map(|(_, slots)| slots.iter().copied())
                        .collect();
                    union.sort_unstable();
                    union.dedup();
                    encode(&union, &mut values)
                };
                sketches.push((res.users_kind(), target, res.bucket_start(minute), value));
            }
        }
        // In key order (kind, project, bucket start, dims): RocksDB's memtable insert hint
        // per key kind then starts each merge next to the previous one.
        let order = |&(kind, target, start, _): &(u8, u32, u64, usize)| {
            let (project_id, rest) = &targets[target as usize];
            (kind, *project_id, start, rest.as_slice())
        };
        sketches.sort_unstable_by(|a, b| order(a).cmp(&order(b)));
        let hist_cf = store.cf(cf::HISTOGRAMS);
        for (kind, target, start, value) in sketches {
            let (project_id, rest) = &targets[target as usize];
            batch.merge_cf(
                &hist_cf,
                keys::bucketed(kind, *project_id, start, rest),
                &values[value],
            );
        }
        self.series.clear();
        self.keys.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every merge of a write batch: (key, value), in batch order.
    #[derive(Default)]
    struct Merges(Vec<(Vec<u8>, Vec<u8>)>);

    impl rocksdb::WriteBatchIteratorCf for Merges {
        fn put_cf(&mut self, _: u32, key: &[u8], _: &[u8]) {
            panic!("unexpected put of {key:?}");
        }
        fn delete_cf(&mut self, _: u32, key: &[u8]) {
            panic!("unexpected delete of {key:?}");
        }
        fn merge_cf(&mut self, _: u32, key: &[u8], value: &[u8]) {
            self.0.push((key.to_vec(), value.to_vec()));
        }
    }

    fn facts(
        ts_ms: u64,
        name: &str,
        env: &str,
        user: Option<&str>,
        duration_us: u64,
    ) -> TransactionFacts {
        TransactionFacts {
            timestamp_ms: ts_ms,
            start_timestamp_ms: ts_ms - duration_us / 1000,
            duration_us,
            status: 0,
            op: None,
            name: name.to_owned(),
            source: None,
            environment: Some(env.to_owned()),
            release: Some("1.0".to_owned()),
            user: user.map(str::to_owned),
            trace_id: "0".repeat(32),
            span_id: "0".repeat(16),
            parent_span_id: None,
            measurements: Vec::new(),
        }
    }

    /// The flush writes, per (resolution, rollup, users kind, bucket), the sketch of exactly
    /// the users folded into it, once, in key order: compared with a direct computation,
    /// over transactions that share minutes, span two minutes of one hour and two days.
    #[test]
    fn flush_writes_the_union_of_each_bucket_once_in_key_order() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), &storage::StoreOptions::default()).unwrap();
        let project = Project {
            id: 3,
            org_id: 1,
            slug: "p".into(),
            name: "p".into(),
            platform: String::new(),
            created_ms: 0,
            settings: Default::default(),
        };
        let t_ms = project.settings.apdex_threshold_ms;
        let day = 86_400_000;
        let base = 1_700_000_000_000 / day * day + 3_600_000 * 5;
        let mut all = Vec::new();
        for i in 0..200u64 {
            let ts = match i % 4 {
                0 => base + 1_000,
                1 => base + 61_000,      // the next minute of the same hour
                2 => base + 3_600_000,   // the next hour of the same day
                _ => base + day + 5_000, // the next day
            };
            let user = format!("id:u{}", i % 37);
            let miserable = i % 5 == 0;
            let duration = if miserable { t_ms * 4_000 + 1 } else { 1_000 };
            all.push(facts(
                ts,
                ["/a", "/b", "/c"][(i % 3) as usize],
                ["prod", "dev"][(i % 2) as usize],
                (i % 11 != 0).then_some(user.as_str()),
                duration,
            ));
        }
        let mut folder = UserFolder::new();
        let mut expected: std::collections::BTreeMap<Vec<u8>, std::collections::BTreeSet<u32>> =
            Default::default();
        for f in &all {
            folder.add(&project, f);
            let Some(user) = &f.user else { continue };
            let miserable = f.duration_us > t_ms * 4_000;
            for mask in pk::ROLLUP_MASKS {
                for (suffix, included) in [(pk::USERS_ALL, true), (pk::USERS_MISERABLE, miserable)]
                {
                    if !included {
                        continue;
                    }
                    let mut rest = Vec::new();
                    pk::push_dims(
                        &mut rest,
                        mask,
                        f.environment.as_deref().unwrap(),
                        "1.0",
                        &f.name,
                    );
                    rest.push(suffix);
                    for res in Resolution::ALL {
                        let key = keys::bucketed(
                            res.users_kind(),
                            project.id,
                            res.bucket_start(f.timestamp_ms),
                            &rest,
                        );
                        expected.entry(key).or_default().insert(user_slot(user));
                    }
                }
            }
        }
        let mut batch = WriteBatch::default();
        folder.flush_into(&store, &mut batch);
        let mut merges = Merges::default();
        batch.iterate_cf(&mut merges);
        let expected: Vec<(Vec<u8>, Vec<u8>)> = expected
            .into_iter()
            .map(|(key, slots)| {
                let pairs: Vec<(u32, u64)> = slots.into_iter().map(|s| (s, 1)).collect();
                let mut value = Vec::new();
                hist::encode_sparse(&pairs, &mut value);
                (key, value)
            })
            .collect();
        assert!(expected.len() > 100, "{}", expected.len());
        assert_eq!(merges.0, expected);
        // The folder is empty afterwards.
        let mut again = WriteBatch::default();
        folder.flush_into(&store, &mut again);
        assert_eq!(again.len(), 0);
    }

    #[test]
    fn slots_are_stable_and_in_range() {
        assert_eq!(user_slot("id:u-1"), user_slot("id:u-1"));
        assert!(user_slot("email:a@b.c") < pk::USER_SLOTS);
        let distinct: std::collections::HashSet<u32> =
            (0..100).map(|i| user_slot(&format!("id:{i}"))).collect();
        assert!(distinct.len() >= 98, "{}", distinct.len());
    }
}
