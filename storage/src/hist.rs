//! HDR histograms as stored values: the histogram's serialized V2 form, merged exactly by a
//! RocksDB merge operator so the processor only ever writes operands (no read-modify-write).

use hdrhistogram::serialization::{Deserializer, Serializer, V2Serializer};
use hdrhistogram::Histogram;

use crate::error::{Result, StorageError};

/// Significant digits every stored histogram keeps (design.md §5).
pub const SIGFIGS: u8 = 3;

/// A fresh auto-resizing histogram with osprey's precision.
pub fn new_histogram() -> Histogram<u64> {
    let mut h = Histogram::new(SIGFIGS).expect("3 significant digits is a valid precision");
    h.auto(true);
    h
}

/// Serializes a histogram in the V2 form.
pub fn encode(histogram: &Histogram<u64>, out: &mut Vec<u8>) {
    out.clear();
    // V2 serialization into a Vec cannot fail for a valid histogram.
    V2Serializer::new()
        .serialize(histogram, out)
        .expect("serializing a histogram into memory");
}

/// Decodes a V2 histogram.
pub fn decode(bytes: &[u8]) -> Result<Histogram<u64>> {
    let mut h: Histogram<u64> = Deserializer::new()
        .deserialize(&mut std::io::Cursor::new(bytes))
        .map_err(|e| StorageError::Corrupt {
            what: "histogram",
            detail: format!("{e:?}"),
        })?;
    h.auto(true);
    Ok(h)
}

/// Adds `other` into `into`; both are auto-resizing so no value is ever out of range.
pub fn add(into: &mut Histogram<u64>, other: &Histogram<u64>) {
    // With auto-resize on, `add` only fails on incompatible precision, which osprey never mixes.
    into.add(other).expect("histograms of one precision add");
}

/// The merge operator: adds the existing value and every operand bucket by bucket, exactly.
///
/// It works on (bucket index, count) pairs read straight from the V2 bytes
/// ([`for_each_bucket`]) and writes the sum back with [`encode_sparse`], so a merge never
/// allocates a full counts array per operand (a 3-digit histogram of microsecond durations
/// spans tens of thousands of buckets, while an operand of one series-minute holds a handful).
/// The stored format is unchanged — V2, which the library's own serializer also wrote —
/// so histograms written before this operator existed merge with new operands as they are.
/// A corrupt operand is skipped rather than poisoning the whole key.
pub(crate) fn merge_operator(
    _key: &[u8],
    existing: Option<&[u8]>,
    operands: &rocksdb::MergeOperands,
) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    merge_values(existing.into_iter().chain(operands), &mut out);
    Some(out)
}

/// Sums V2 histograms (osprey's layout or any other V2 histogram of 3 digits) into one V2
/// histogram in `out`; values that fail to parse are skipped whole.
pub fn merge_values<'a>(values: impl IntoIterator<Item = &'a [u8]>, out: &mut Vec<u8>) {
    let mut pairs: Vec<(u32, u64)> = Vec::new();
    for bytes in values {
        let before = pairs.len();
        if for_each_bucket(bytes, |i, c| pairs.push((i, c))).is_err() {
            pairs.truncate(before);
        }
    }
    pairs.sort_unstable_by_key(|&(i, _)| i);
    let mut n = 0;
    for k in 0..pairs.len() {
        if n > 0 && pairs[n - 1].0 == pairs[k].0 {
            pairs[n - 1].1 = pairs[n - 1].1.saturating_add(pairs[k].1);
        } else {
            pairs[n] = pairs[k];
            n += 1;
        }
    }
    pairs.truncate(n);
    encode_sparse(&pairs, out);
}

// --- Sparse form -------------------------------------------------------------------------
//
// The hot paths do not build `Histogram`s: a fresh 3-digit histogram allocates a counts array
// of thousands of u64s, which is too costly per (series, minute) in the processor and per
// stored key in the query. They work on bucket indexes instead, with the same index ↔ value
// mapping as `Histogram::new(3)` (lowest discernible value 1, 2048 sub-buckets), and read and
// write the V2 form directly. `decode`/`add` above stay the reference the tests compare with.

/// log2 of the sub-bucket half count for 3 significant digits (1024).
const SUB_HALF_MAGNITUDE: u32 = 10;
const SUB_HALF: u64 = 1 << SUB_HALF_MAGNITUDE;
const SUB_MASK: u64 = (SUB_HALF << 1) - 1;
const V2_COOKIE: u32 = 0x1c84_9303 | 0x10;
const V2_HEADER_LEN: usize = 40;

/// Bucket index of `value` in a 3-significant-digit histogram.
#[inline]
pub fn index_of(value: u64) -> u32 {
    // 64 - unit magnitude (0) - sub-bucket half magnitude - 1.
    let bucket = 53 - (value | SUB_MASK).leading_zeros();
    let sub = (value >> bucket) as u32;
    ((bucket + 1) << SUB_HALF_MAGNITUDE) + sub - SUB_HALF as u32
}

/// Lowest value that falls into bucket index `index`, and the width of that bucket.
#[inline]
pub fn bucket_of(index: u32) -> (u64, u64) {
    let bucket = (index >> SUB_HALF_MAGNITUDE) as i64 - 1;
    let mut sub = u64::from(index) & (SUB_HALF - 1);
    let shift = if bucket < 0 {
        0
    } else {
        sub += SUB_HALF;
        bucket as u32
    };
    (sub << shift, 1u64 << shift)
}

/// Highest value equivalent to the values of bucket `index` (what `value_at_quantile` reports).
#[inline]
pub fn highest_equivalent(index: u32) -> u64 {
    let (low, width) = bucket_of(index);
    low + width - 1
}

/// Encodes `(index, count)` pairs, sorted by index with distinct indexes and non-zero counts,
/// as a V2 histogram that [`decode`] and the merge operator accept.
pub fn encode_sparse(counts: &[(u32, u64)], out: &mut Vec<u8>) {
    out.clear();
    let highest = counts
        .last()
        .map(|&(i, _)| highest_equivalent(i))
        .unwrap_or(2)
        .max(2);
    out.extend_from_slice(&V2_COOKIE.to_be_bytes());
    out.extend_from_slice(&0u32.to_be_bytes()); // payload length, patched below
    out.extend_from_slice(&0u32.to_be_bytes()); // normalizing index offset
    out.extend_from_slice(&u32::from(SIGFIGS).to_be_bytes());
    out.extend_from_slice(&1u64.to_be_bytes()); // lowest discernible value
    out.extend_from_slice(&highest.to_be_bytes());
    out.extend_from_slice(&1.0f64.to_be_bytes());
    let mut next = 0u32;
    for &(index, count) in counts {
        let zeros = index - next;
        if zeros == 1 {
            put_varint(out, 0);
        } else if zeros > 1 {
            put_varint(out, zigzag(-i64::from(zeros)));
        }
        put_varint(out, zigzag(count.min(i64::MAX as u64) as i64));
        next = index + 1;
    }
    let payload = (out.len() - V2_HEADER_LEN) as u32;
    out[4..8].copy_from_slice(&payload.to_be_bytes());
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    // HdrHistogram's LEB128 variant: at most 9 bytes, the 9th carries 8 full bits.
    for _ in 0..8 {
        if v < 0x80 {
            out.push(v as u8);
            return;
        }
        out.push((v as u8 & 0x7f) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn get_varint(bytes: &[u8], pos: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for i in 0..9 {
        let b = *bytes.get(*pos)?;
        *pos += 1;
        if i == 8 {
            return Some(v | (u64::from(b) << 56));
        }
        v |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Some(v);
        }
    }
    Some(v)
}

/// Calls `f(index, count)` for every non-zero bucket of a stored V2 histogram, without
/// building a `Histogram` when it has osprey's layout (3 digits, lowest value 1); any other
/// valid V2 histogram goes through [`decode`] and is re-indexed.
pub fn for_each_bucket(bytes: &[u8], mut f: impl FnMut(u32, u64)) -> Result<()> {
    let header = |at: usize| -> Option<u32> {
        Some(u32::from_be_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
    };
    let fast = header(0) == Some(V2_COOKIE)
        && header(8) == Some(0)
        && header(12) == Some(u32::from(SIGFIGS))
        && bytes.get(16..24) == Some(&1u64.to_be_bytes()[..])
        && bytes.get(32..40) == Some(&1.0f64.to_be_bytes()[..]);
    if !fast {
        let h = decode(bytes)?;
        for v in h.iter_recorded() {
            f(index_of(v.value_iterated_to()), v.count_at_value());
        }
        return Ok(());
    }
    let corrupt = |detail: &str| StorageError::Corrupt {
        what: "histogram",
        detail: detail.to_string(),
    };
    let payload_len = header(4).unwrap_or(0) as usize;
    let payload = bytes
        .get(V2_HEADER_LEN..V2_HEADER_LEN + payload_len)
        .ok_or_else(|| corrupt("payload shorter than its length"))?;
    let mut pos = 0;
    let mut index: u64 = 0;
    while pos < payload.len() {
        let v = get_varint(payload, &mut pos).ok_or_else(|| corrupt("truncated varint"))?;
        let n = ((v >> 1) as i64) ^ -((v & 1) as i64);
        if n < 0 {
            index += n.unsigned_abs();
        } else {
            if n > 0 {
                let i = u32::try_from(index).map_err(|_| corrupt("index out of range"))?;
                f(i, n as u64);
            }
            index += 1;
        }
        if index > u64::from(u32::MAX) {
            return Err(corrupt("index out of range"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_add() {
        let mut a = new_histogram();
        a.record(100).unwrap();
        a.record(2_000_000).unwrap();
        let mut buf = Vec::new();
        encode(&a, &mut buf);
        let mut b = decode(&buf).unwrap();
        assert_eq!(b.len(), 2);
        add(&mut b, &a);
        assert_eq!(b.len(), 4);
        assert_eq!(b.max(), a.max());
    }

    #[test]
    fn sparse_form_matches_the_library() {
        let values: Vec<u64> = (0..5000u64)
            .map(|i| (i * i * 7919) % 50_000_000 + i % 3)
            .chain([0, 1, 2047, 2048, 4095, 4096, u64::from(u32::MAX) * 4])
            .collect();
        let mut reference = new_histogram();
        let mut sparse = std::collections::BTreeMap::new();
        for &v in &values {
            reference.record(v).unwrap();
            *sparse.entry(index_of(v)).or_insert(0u64) += 1;
            let (low, width) = bucket_of(index_of(v));
            assert!(low <= v && v < low + width, "{v} in [{low}, +{width})");
            assert_eq!(reference.lowest_equivalent(v), low);
            assert_eq!(
                reference.highest_equivalent(v),
                highest_equivalent(index_of(v))
            );
        }
        let pairs: Vec<(u32, u64)> = sparse.into_iter().collect();
        let mut buf = Vec::new();
        encode_sparse(&pairs, &mut buf);
        let decoded = decode(&buf).unwrap();
        assert_eq!(decoded.len(), reference.len());
        for q in [0.0, 0.5, 0.75, 0.95, 0.99, 1.0] {
            assert_eq!(decoded.value_at_quantile(q), reference.value_at_quantile(q));
        }
        // Both the sparse bytes and the library's own encoding read back to the same buckets.
        let mut lib = Vec::new();
        encode(&reference, &mut lib);
        for bytes in [&buf, &lib] {
            let mut back = Vec::new();
            for_each_bucket(bytes, |i, c| back.push((i, c))).unwrap();
            assert_eq!(back, pairs);
        }
        // Through the merge operator's add: counts double.
        let mut sum = decode(&buf).unwrap();
        add(&mut sum, &decoded);
        assert_eq!(sum.len(), 2 * reference.len());
        assert!(for_each_bucket(&buf[..buf.len() - 3], |_, _| ()).is_err());
    }

    #[test]
    fn merge_adds_library_and_sparse_operands_exactly() {
        // An operand as the library's serializer wrote it (the format of data dirs from
        // before the sparse writer), a sparse one, a corrupt one, and an empty sparse one.
        let mut old = new_histogram();
        let mut fresh = Vec::new();
        let mut reference = new_histogram();
        for i in 0..3000u64 {
            let v = (i * 7919 * i) % 9_000_000 + 1;
            if i % 2 == 0 {
                old.record(v).unwrap();
            } else {
                fresh.push(v);
            }
            reference.record(v).unwrap();
        }
        let mut old_bytes = Vec::new();
        encode(&old, &mut old_bytes);
        let mut sparse = std::collections::BTreeMap::new();
        for &v in &fresh {
            *sparse.entry(index_of(v)).or_insert(0u64) += 1;
        }
        let pairs: Vec<(u32, u64)> = sparse.into_iter().collect();
        let mut new_bytes = Vec::new();
        encode_sparse(&pairs, &mut new_bytes);
        let mut empty = Vec::new();
        encode_sparse(&[], &mut empty);
        let garbage = b"not a histogram".to_vec();
        let truncated = new_bytes[..new_bytes.len() - 2].to_vec();

        let mut merged = Vec::new();
        merge_values(
            [&old_bytes, &garbage, &new_bytes, &empty, &truncated].map(|b| b.as_slice()),
            &mut merged,
        );
        let h = decode(&merged).unwrap();
        assert_eq!(h.len(), reference.len());
        for q in [0.0, 0.25, 0.5, 0.9, 0.95, 0.99, 1.0] {
            assert_eq!(
                h.value_at_quantile(q),
                reference.value_at_quantile(q),
                "q={q}"
            );
        }
        // Merging the result again with the old operand equals the library's add.
        let mut twice = Vec::new();
        merge_values([merged.as_slice(), old_bytes.as_slice()], &mut twice);
        let mut expected = reference.clone();
        add(&mut expected, &old);
        let twice = decode(&twice).unwrap();
        assert_eq!(twice.len(), expected.len());
        for q in [0.1, 0.5, 0.99] {
            assert_eq!(twice.value_at_quantile(q), expected.value_at_quantile(q));
        }
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(decode(b"not a histogram").is_err());
    }
}
