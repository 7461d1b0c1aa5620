//! The hash maps of the batch path: a small multiplicative hasher with a per-process seed.
//!
//! The sequential stage looks up a handful of short keys per event (counter keys, issue
//! hashes, user members, transaction series); with std's SipHash those lookups cost more
//! than the work they index. This hasher mixes 8 bytes per multiply. Its keys can carry
//! client data (tag values end up in counter keys), so the seed is drawn once per process
//! from std's random state: a client cannot precompute colliding keys, and a collision would
//! only cost time inside one bounded batch anyway.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, Hasher};
use std::sync::LazyLock;

/// A `HashMap` with [`FastState`].
pub type FastMap<K, V> = HashMap<K, V, FastState>;
/// A `HashSet` with [`FastState`].
pub type FastSet<K> = HashSet<K, FastState>;

static PROCESS_SEED: LazyLock<u64> = LazyLock::new(|| {
    // RandomState's keys are random per process; hashing a constant through one exposes
    // 64 bits of them without reaching for another source of randomness.
    std::collections::hash_map::RandomState::new().hash_one(0x6f73_7072_6579_u64)
});

/// Builds [`FastHasher`]s seeded with the process seed.
#[derive(Clone, Copy, Debug)]
pub struct FastState(u64);

impl Default for FastState {
    fn default() -> Self {
        FastState(*PROCESS_SEED)
    }
}

impl BuildHasher for FastState {
    type Hasher = FastHasher;
    #[inline]
    fn build_hasher(&self) -> FastHasher {
        FastHasher(self.0)
    }
}

/// See the module docs.
#[derive(Clone, Copy, Debug)]
pub struct FastHasher(u64);

impl FastHasher {
    #[inline]
    fn mix(&mut self, v: u64) {
        self.0 = (self.0.rotate_left(5) ^ v).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

impl Hasher for FastHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(c);
            self.mix(u64::from_le_bytes(word));
        }
        let mut tail = [0u8; 8];
        let rest = chunks.remainder();
        tail[..rest.len()].copy_from_slice(rest);
        self.mix(u64::from_le_bytes(tail) ^ ((rest.len() as u64) << 56));
    }
    #[inline]
    fn write_u8(&mut self, v: u8) {
        self.mix(u64::from(v));
    }
    #[inline]
    fn write_u32(&mut self, v: u32) {
        self.mix(u64::from(v));
    }
    #[inline]
    fn write_u64(&mut self, v: u64) {
        self.mix(v);
    }
    #[inline]
    fn write_usize(&mut self, v: usize) {
        self.mix(v as u64);
    }
    #[inline]
    fn finish(&self) -> u64 {
        // A multiply only carries a bit upwards, so a key's last bytes reach only the high
        // bits of the state; hashbrown takes its bucket index from the low bits. Fold the
        // high half down and spread it again (the murmur3 finalizer's first steps).
        let mut h = self.0;
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^ (h >> 33)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_keys_hash_equal_and_near_keys_spread() {
        let state = FastState::default();
        assert_eq!(state.hash_one(b"issue:42"), state.hash_one(b"issue:42"));
        // Keys that differ in one byte, at any position, in any length class, land in
        // distinct low-bit buckets far more often than not.
        let mut buckets = HashSet::new();
        for len in [1usize, 7, 8, 9, 16, 23] {
            for pos in 0..len {
                for b in 0..8u8 {
                    let mut key = vec![b'a'; len];
                    key[pos] ^= 1 << b;
                    buckets.insert(state.hash_one(&key) & 0xfff);
                }
            }
        }
        // 512 keys into 4,096 buckets: a random function leaves ~481 distinct (94 %); the
        // multiply alone, whose last bytes stay in the high bits, left 412–423.
        let total = [1usize, 7, 8, 9, 16, 23].iter().sum::<usize>() * 8;
        assert!(
            buckets.len() * 100 >= total * 90,
            "{} of {total}",
            buckets.len()
        );
    }

    #[test]
    fn maps_behave_like_std_maps() {
        let mut fast: FastMap<Vec<u8>, i64> = FastMap::default();
        let mut std_map: HashMap<Vec<u8>, i64> = HashMap::new();
        for i in 0..5_000u64 {
            let key = format!("k{}", i % 977).into_bytes();
            *fast.entry(key.clone()).or_default() += 1;
            *std_map.entry(key).or_default() += 1;
        }
        assert_eq!(fast.len(), std_map.len());
        for (k, v) in &std_map {
            assert_eq!(fast.get(k.as_slice()), Some(v));
        }
    }
}
