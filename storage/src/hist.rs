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

/// The merge operator: decodes every operand and the existing value, adds them up.
/// A corrupt operand is skipped rather than poisoning the whole key.
pub(crate) fn merge_operator(
    _key: &[u8],
    existing: Option<&[u8]>,
    operands: &rocksdb::MergeOperands,
) -> Option<Vec<u8>> {
    let mut total = existing
        .and_then(|bytes| decode(bytes).ok())
        .unwrap_or_else(new_histogram);
    for op in operands {
        if let Ok(h) = decode(op) {
            add(&mut total, &h);
        }
    }
    let mut out = Vec::new();
    encode(&total, &mut out);
    Some(out)
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
    fn garbage_is_an_error() {
        assert!(decode(b"not a histogram").is_err());
    }
}
