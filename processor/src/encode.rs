//! The stored event's bytes, written straight from the normalized event.
//!
//! [`encode_stored_event`] produces exactly the bytes of [`storage::records::encode_event_plain`]
//! (8-byte big-endian timestamp, then the compact JSON of a
//! [`storage::records::StoredEvent`]), without moving the event into a `StoredEvent` and
//! without serde's per-byte string escaping: serializing the event was an eighth of the
//! processor's instructions, most of it in the escape loop. Strings here are scanned eight
//! bytes at a time and copied whole when nothing in them needs escaping (nearly always).
//!
//! The output must stay byte-identical to serde_json's compact form (the tests compare both),
//! so readers of stored events cannot tell which encoder wrote them.

use crate::value::{Map, Value};

/// The parts of a stored event besides the event itself (see
/// [`storage::records::StoredEvent`], whose field order this follows).
pub struct StoredEventHead<'a> {
    /// 32 lowercase hex digits.
    pub event_id: &'a str,
    /// Project.
    pub project_id: u64,
    /// Issue of an error event, `None` for transactions.
    pub issue_id: Option<u64>,
    /// Event time, unix ms.
    pub timestamp_ms: u64,
    /// Receive time, unix ms.
    pub received_ms: u64,
    /// Contributing grouping hashes, primary first.
    pub hashes: &'a [String],
}

/// Encodes a stored event value: timestamp (ms, BE) + the stored event's compact JSON.
pub fn encode_stored_event(head: &StoredEventHead<'_>, event: &Value) -> Vec<u8> {
    // Events are a few KB: start the buffer there instead of growing it from nothing.
    let mut out = Vec::with_capacity(4096);
    write_head(&mut out, head);
    write_value(&mut out, event);
    out.push(b'}');
    out
}

/// The event's compact JSON alone, for [`encode_stored_event_with_body`]: the processor
/// writes it in its parallel stage, before the issue id (part of the head) is known.
pub fn encode_event_body(event: &Value) -> Vec<u8> {
    encode_event_body_sized(event, 4096)
}

/// [`encode_event_body`] into a buffer of `capacity` bytes to start with: the processor
/// passes a bound from the received payload's size, so a large event (a transaction with
/// dozens of spans) is not copied through a chain of doubling reallocations.
pub fn encode_event_body_sized(event: &Value, capacity: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(capacity);
    write_value(&mut out, event);
    out
}

/// The same bytes as [`encode_stored_event`], from a body made by [`encode_event_body`].
pub fn encode_stored_event_with_body(head: &StoredEventHead<'_>, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 256);
    write_head(&mut out, head);
    out.extend_from_slice(body);
    out.push(b'}');
    out
}

/// Everything before the event: timestamp, then the stored event's JSON up to `"event":`.
fn write_head(out: &mut Vec<u8>, head: &StoredEventHead<'_>) {
    out.extend_from_slice(&head.timestamp_ms.to_be_bytes());
    out.extend_from_slice(b"{\"event_id\":");
    write_str(out, head.event_id);
    out.extend_from_slice(b",\"project_id\":");
    write_u64(out, head.project_id);
    out.extend_from_slice(b",\"issue_id\":");
    match head.issue_id {
        Some(id) => write_u64(out, id),
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"timestamp_ms\":");
    write_u64(out, head.timestamp_ms);
    out.extend_from_slice(b",\"received_ms\":");
    write_u64(out, head.received_ms);
    out.extend_from_slice(b",\"hashes\":[");
    for (i, hash) in head.hashes.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_str(out, hash);
    }
    out.extend_from_slice(b"],\"event\":");
}

/// Appends `value` as compact JSON, like `serde_json::to_writer`.
///
/// Inlined into the array and object loops: scalars are written right there, and only a
/// nested array or object calls down, so most values of an event cost no call of their own
/// (a call per value was ~7 % of the encoder's instructions).
#[inline(always)]
pub fn write_value(out: &mut Vec<u8>, value: &Value) {
    match value {
        // Recursion depth is bounded by the parser's nesting limit (serde_json: 128).
        Value::Array(items) => write_array(out, items),
        Value::Object(map) => write_object(out, map),
        scalar => write_scalar(out, scalar),
    }
}

#[inline(always)]
fn write_scalar(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::Null => put(out, b"null"),
        Value::Bool(true) => put(out, b"true"),
        Value::Bool(false) => put(out, b"false"),
        Value::Number(n) => {
            if let Some(u) = n.as_u64() {
                write_u64(out, u);
            } else {
                // Negative integers and floats are rare in events: let serde_json format
                // them so their text (ryu's shortest form, `null` for non-finite) is its own.
                // Writing a number into a Vec cannot fail.
                let _ = serde_json::to_writer(&mut *out, n);
            }
        }
        Value::String(s) => write_str_inline(out, s),
        // Not scalars ([`write_value`] sends these straight to their writers).
        Value::Array(items) => write_array(out, items),
        Value::Object(map) => write_object(out, map),
    }
}

#[inline(never)]
fn write_array(out: &mut Vec<u8>, items: &[Value]) {
    out.push(b'[');
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_value(out, item);
    }
    out.push(b']');
}

#[inline(never)]
fn write_object(out: &mut Vec<u8>, map: &Map<String, Value>) {
    out.push(b'{');
    for (i, (key, child)) in map.iter().enumerate() {
        match key.known_quoted_row() {
            // A known key has nothing to escape (the key table's test checks): no scan, and
            // quotes and colon come with it, the comma before it too.
            Some((row, len)) => put_row(out, i > 0, row, len),
            None => {
                if i > 0 {
                    out.push(b',');
                }
                write_str(out, key);
                out.push(b':');
            }
        }
        write_value(out, child);
    }
    out.push(b'}');
}

#[inline]
fn write_u64(out: &mut Vec<u8>, mut n: u64) {
    // Two digits per division, from a table of "00" … "99" (line and column numbers, the
    // most common integers of an event, have two to four digits).
    let mut buf = [0u8; 20];
    let mut at = buf.len();
    while n >= 100 {
        let pair = (n % 100) as usize * 2;
        n /= 100;
        at -= 2;
        buf[at..at + 2].copy_from_slice(&DIGIT_PAIRS[pair..pair + 2]);
    }
    if n >= 10 {
        let pair = n as usize * 2;
        at -= 2;
        buf[at..at + 2].copy_from_slice(&DIGIT_PAIRS[pair..pair + 2]);
    } else {
        at -= 1;
        buf[at] = b'0' + n as u8;
    }
    put(out, buf.get(at..).unwrap_or_default());
}

/// "00", "01", … "99", for [`write_u64`].
static DIGIT_PAIRS: [u8; 200] = {
    let mut pairs = [0u8; 200];
    let mut i = 0;
    while i < 100 {
        pairs[2 * i] = b'0' + (i / 10) as u8;
        pairs[2 * i + 1] = b'0' + (i % 10) as u8;
        i += 1;
    }
    pairs
};

/// `out.extend_from_slice(bytes)` for the short pieces the encoder writes: the standard
/// version was an out-of-line call plus a `memcpy` call per key, string and number (over a
/// million calls per 1,024 error events); here the capacity check is inline and pieces of up
/// to 32 bytes are copied with a few overlapping loads and stores ([`copy_short`]).
#[inline(always)]
#[allow(unsafe_code)]
fn put(out: &mut Vec<u8>, bytes: &[u8]) {
    out.reserve(bytes.len());
    let at = out.len();
    // SAFETY: `reserve` made room for `bytes.len()` bytes after `at`, all of which
    // `copy_short` writes before the length grows over them.
    unsafe {
        copy_short(bytes.as_ptr(), out.as_mut_ptr().add(at), bytes.len());
        out.set_len(at + bytes.len());
    }
}

/// Appends an optional comma and then the first `len` bytes of `row`, by copying the whole
/// row: a known key's `"key":` row has a constant size, so the copy is a few vector moves
/// instead of a `memcpy` call of the key's length, and the bytes after `len` are left in
/// the spare capacity (overwritten by whatever comes next).
#[inline(always)]
#[allow(unsafe_code)]
fn put_row<const N: usize>(out: &mut Vec<u8>, comma: bool, row: &[u8; N], len: usize) {
    let comma = usize::from(comma);
    out.reserve(N + 1);
    let at = out.len();
    let window = &mut out.spare_capacity_mut()[..N + 1];
    window[0].write(b',');
    for (slot, &b) in window[comma..].iter_mut().zip(row) {
        slot.write(b);
    }
    // SAFETY: the writes above initialized the `comma + N` slots after `at` (indexing the
    // spare capacity panics, before this, if `reserve` had left fewer), and
    // `comma + len.min(N)` of them become part of the vector.
    unsafe { out.set_len(at + comma + len.min(N)) };
}

/// Copies `n` bytes from `src` to `dst`: up to 32 bytes with two (possibly overlapping)
/// unaligned loads and stores of the largest width that fits, more with `memcpy`.
///
/// # Safety
///
/// `src .. src + n` must be readable, `dst .. dst + n` writable, and the two must not
/// overlap.
#[inline(always)]
#[allow(unsafe_code)]
pub(crate) unsafe fn copy_short(src: *const u8, dst: *mut u8, n: usize) {
    use std::ptr::{read_unaligned, write_unaligned};
    // SAFETY (every arm): each load reads `src + k .. src + k + width` and each store writes
    // `dst + k .. dst + k + width` with `k + width <= n` (the arm's bounds on `n` ensure
    // it), inside the ranges the caller guarantees; unaligned accesses need no alignment.
    unsafe {
        if n > 32 {
            std::ptr::copy_nonoverlapping(src, dst, n);
        } else if n >= 16 {
            let a = read_unaligned(src.cast::<u128>());
            let b = read_unaligned(src.add(n - 16).cast::<u128>());
            write_unaligned(dst.cast::<u128>(), a);
            write_unaligned(dst.add(n - 16).cast::<u128>(), b);
        } else if n >= 8 {
            let a = read_unaligned(src.cast::<u64>());
            let b = read_unaligned(src.add(n - 8).cast::<u64>());
            write_unaligned(dst.cast::<u64>(), a);
            write_unaligned(dst.add(n - 8).cast::<u64>(), b);
        } else if n >= 4 {
            let a = read_unaligned(src.cast::<u32>());
            let b = read_unaligned(src.add(n - 4).cast::<u32>());
            write_unaligned(dst.cast::<u32>(), a);
            write_unaligned(dst.add(n - 4).cast::<u32>(), b);
        } else if n > 0 {
            // 1 to 3 bytes: first, middle and last cover them all.
            *dst = *src;
            *dst.add(n / 2) = *src.add(n / 2);
            *dst.add(n - 1) = *src.add(n - 1);
        }
    }
}

const LOW_BITS: u64 = 0x0101_0101_0101_0101;
const HIGH_BITS: u64 = 0x8080_8080_8080_8080;

/// The high bit of each byte of `w` that needs escaping (`"`, `\\` or below 0x20), little
/// endian. Borrows of the subtractions can only flag bytes *above* a byte that truly needs
/// escaping, so the lowest set bit is always exact (and 0 means none does).
#[inline]
fn escape_mask(w: u64) -> u64 {
    let quote = w ^ (LOW_BITS * u64::from(b'"'));
    let backslash = w ^ (LOW_BITS * u64::from(b'\\'));
    // A byte is zero in `x` ⇒ its high bit is set in `x - LOW_BITS & !x`; bytes below 0x20
    // likewise in `w - 0x20…20 & !w`.
    let zero_quote = quote.wrapping_sub(LOW_BITS) & !quote;
    let zero_backslash = backslash.wrapping_sub(LOW_BITS) & !backslash;
    let control = w.wrapping_sub(LOW_BITS * 0x20) & !w;
    (zero_quote | zero_backslash | control) & HIGH_BITS
}

/// Appends `s` as a JSON string with serde_json's escapes: `\"`, `\\`, `\b`, `\f`, `\n`,
/// `\r`, `\t`, and `\u00xx` (lowercase hex) for the other control characters.
pub fn write_str(out: &mut Vec<u8>, s: &str) {
    write_str_inline(out, s);
}

/// [`write_str`], inlined into the encoder's array and object loops (string values are a
/// third of an event's values; the call's prologue and epilogue were an eighth of its cost).
#[inline(always)]
#[allow(unsafe_code)]
fn write_str_inline(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    // Nearly every string needs no escape: find the first byte that does (if any) and copy
    // everything before it in one go; only a string with escapes goes on byte by byte.
    let clean = first_escape(bytes).min(bytes.len());
    out.reserve(bytes.len() + 2);
    let at = out.len();
    // SAFETY: `reserve` made room for `bytes.len() + 2` bytes after `at`; this writes the
    // opening quote and `clean <= bytes.len()` bytes (plus the closing quote when the string
    // is clean, `clean + 2` in all), and the length covers exactly the bytes written.
    unsafe {
        let dst = out.as_mut_ptr().add(at);
        dst.write(b'"');
        copy_short(bytes.as_ptr(), dst.add(1), clean);
        if clean == bytes.len() {
            dst.add(1 + clean).write(b'"');
            out.set_len(at + clean + 2);
            return;
        }
        out.set_len(at + clean + 1);
    }
    write_escaped(out, bytes, clean);
    out.push(b'"');
}

/// The rest of [`write_str`] from `bytes[start]`, the first byte that needs escaping: one
/// table load per byte, clean runs between escapes still copied whole.
#[cold]
fn write_escaped(out: &mut Vec<u8>, bytes: &[u8], mut start: usize) {
    for (i, &b) in bytes.iter().enumerate().skip(start) {
        let escape = ESCAPE[usize::from(b)];
        if escape != 0 {
            out.extend_from_slice(bytes.get(start..i).unwrap_or_default());
            write_escape(out, escape, b);
            start = i + 1;
        }
    }
    out.extend_from_slice(bytes.get(start..).unwrap_or_default());
}

/// Index of the first byte that needs escaping (`"`, `\\` or below 0x20; `bytes.len()` when
/// none does), sixteen bytes at a time. The JSON parser uses it to find a string's end.
#[inline]
#[allow(unsafe_code)]
pub(crate) fn first_escape(bytes: &[u8]) -> usize {
    if bytes.len() < 16 {
        return short_first_escape(bytes);
    }
    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    {
        // The parser passes the whole rest of the payload, so this is its every call: 16
        // bytes loaded straight from the slice, not assembled from two copied words.
        let len = bytes.len();
        let mut at = 0;
        while at + 16 <= len {
            // SAFETY: `at + 16 <= len`, so the 16 bytes read are inside `bytes`; SSE2 is
            // assumed by the build target (see `flagged_16`).
            let lanes = unsafe { sse2_escape_lanes(bytes.as_ptr().add(at)) };
            if lanes != 0 {
                return at + lanes.trailing_zeros() as usize;
            }
            at += 16;
        }
        if at == len {
            return len;
        }
        // The last 16 bytes, overlapping clean ones already checked (which cannot flag).
        // SAFETY: `len >= 16`: bytes `len - 16 .. len` are inside `bytes`.
        let lanes = unsafe { sse2_escape_lanes(bytes.as_ptr().add(len - 16)) };
        if lanes != 0 {
            len - 16 + lanes.trailing_zeros() as usize
        } else {
            len
        }
    }
    #[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
    {
        words_first_escape(bytes)
    }
}

/// Index of the first byte of `block` that needs escaping, if any: [`first_escape`] for
/// exactly 16 bytes, without its length dispatch and loop. The parser tries it first at each
/// string, since most keys and short values end inside their first 16 bytes.
#[inline(always)]
#[allow(unsafe_code)]
pub(crate) fn first_escape_16(block: &[u8; 16]) -> Option<usize> {
    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    {
        // SAFETY: `block` is 16 readable bytes; SSE2 is assumed by the build target (see
        // `flagged_16`).
        let lanes = unsafe { sse2_escape_lanes(block.as_ptr()) };
        (lanes != 0).then(|| lanes.trailing_zeros() as usize)
    }
    #[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
    {
        swar_flagged_16(word(block), word(&block[8..]))
    }
}

/// [`first_escape`] of at least 16 bytes with word arithmetic (any architecture; tested
/// against a byte loop like the SSE2 path).
#[cfg_attr(all(target_arch = "x86_64", target_feature = "sse2"), allow(dead_code))]
fn words_first_escape(bytes: &[u8]) -> usize {
    // Two words per step (one branch per 16 bytes); `chunks_exact` lets the loads go
    // without bounds checks.
    let mut pairs = bytes.chunks_exact(16);
    let mut at = 0;
    for pair in pairs.by_ref() {
        let (a, b) = pair.split_at(8);
        if let Some(i) = flagged_16(word(a), word(b)) {
            return at + i;
        }
        at += 16;
    }
    if at == bytes.len() {
        return at;
    }
    // The last 16 bytes, overlapping clean ones already checked (which cannot flag).
    let from = bytes.len() - 16;
    let tail = &bytes[from..];
    flagged_16(word(tail), word(&tail[8..])).map_or(bytes.len(), |i| from + i)
}

/// [`first_escape`] of fewer than 16 bytes (most strings the encoder writes): the string in
/// two overlapping loads checked at once, the lowest flagged lane mapped back to its byte.
#[inline]
fn short_first_escape(bytes: &[u8]) -> usize {
    let len = bytes.len();
    if len >= 8 {
        // Lanes 0..8 are bytes 0..8, lanes 8..16 bytes len-8..len.
        return match flagged_16(word(bytes), word(&bytes[len - 8..])) {
            Some(lane) if lane < 8 => lane,
            Some(lane) => lane + len - 16,
            None => len,
        };
    }
    if len >= 4 {
        // Bytes 0..4 in the low half of a word, bytes len-4..len in the high half; the
        // lowest flagged lane is exact (see `escape_mask`).
        let half = |b: &[u8]| {
            let mut h = [0u8; 4];
            h.copy_from_slice(&b[..4]);
            u64::from(u32::from_le_bytes(h))
        };
        let mask = escape_mask(half(bytes) | half(&bytes[len - 4..]) << 32);
        if mask == 0 {
            return len;
        }
        let lane = (mask.trailing_zeros() / 8) as usize;
        return if lane < 4 { lane } else { lane + len - 8 };
    }
    bytes
        .iter()
        .position(|&b| ESCAPE[usize::from(b)] != 0)
        .unwrap_or(len)
}

/// The first eight bytes of `b` (which has at least eight) as a little-endian word.
#[inline]
fn word(b: &[u8]) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[..8]);
    u64::from_le_bytes(w)
}

/// Offset of the first byte needing an escape among the 16 bytes `low` (first eight, little
/// endian) and `high`, if any.
#[inline]
#[allow(unsafe_code)]
fn flagged_16(low: u64, high: u64) -> Option<usize> {
    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    {
        // SAFETY: the only precondition of calling a `#[target_feature(enable = "sse2")]`
        // function is that the CPU has SSE2; this branch is compiled only when the build
        // target already assumes SSE2 everywhere (`target_feature = "sse2"`, true of every
        // x86-64 target), so every CPU this binary runs on has it.
        unsafe { sse2_flagged_16(low, high) }
    }
    #[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
    {
        swar_flagged_16(low, high)
    }
}

/// [`flagged_16`] with SSE2: the 16 bytes compared at once, about a third of the
/// instructions of [`swar_flagged_16`]. The intrinsics themselves are safe inside a function
/// with the feature enabled.
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
#[target_feature(enable = "sse2")]
#[inline]
fn sse2_flagged_16(low: u64, high: u64) -> Option<usize> {
    use std::arch::x86_64::{
        _mm_cmpeq_epi8, _mm_min_epu8, _mm_movemask_epi8, _mm_or_si128, _mm_set1_epi8,
        _mm_set_epi64x,
    };
    // Bit casts of the words (the intrinsics take i64).
    let v = _mm_set_epi64x(high as i64, low as i64);
    // Unsigned `b <= 0x1f` is `min(b, 0x1f) == b`.
    let control = _mm_cmpeq_epi8(_mm_min_epu8(v, _mm_set1_epi8(0x1f)), v);
    let quote = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'"' as i8));
    let backslash = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'\\' as i8));
    let mask = _mm_movemask_epi8(_mm_or_si128(_mm_or_si128(control, quote), backslash));
    (mask != 0).then(|| mask.trailing_zeros() as usize)
}

/// One bit per byte of the 16 bytes at `p` that needs escaping (lowest bit = first byte).
///
/// # Safety
///
/// `p .. p + 16` must be readable (no alignment needed) and the CPU must have SSE2.
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
#[target_feature(enable = "sse2")]
#[inline]
#[allow(unsafe_code)]
unsafe fn sse2_escape_lanes(p: *const u8) -> u32 {
    use std::arch::x86_64::{
        _mm_cmpeq_epi8, _mm_loadu_si128, _mm_min_epu8, _mm_movemask_epi8, _mm_or_si128,
        _mm_set1_epi8,
    };
    // SAFETY: the caller guarantees 16 readable bytes at `p`; `loadu` takes any alignment.
    let v = unsafe { _mm_loadu_si128(p.cast()) };
    let control = _mm_cmpeq_epi8(_mm_min_epu8(v, _mm_set1_epi8(0x1f)), v);
    let quote = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'"' as i8));
    let backslash = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'\\' as i8));
    _mm_movemask_epi8(_mm_or_si128(_mm_or_si128(control, quote), backslash)) as u32
}

/// [`flagged_16`] with word arithmetic (any architecture; tested against the SSE2 version).
#[cfg_attr(all(target_arch = "x86_64", target_feature = "sse2"), allow(dead_code))]
#[inline]
fn swar_flagged_16(low: u64, high: u64) -> Option<usize> {
    let (low, high) = (escape_mask(low), escape_mask(high));
    if low != 0 {
        Some((low.trailing_zeros() / 8) as usize)
    } else if high != 0 {
        Some(8 + (high.trailing_zeros() / 8) as usize)
    } else {
        None
    }
}

/// serde_json's escape of each byte: 0 = none, `u` = `\u00xx`, otherwise the character
/// after the backslash.
static ESCAPE: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut b = 0;
    while b < 0x20 {
        table[b] = b'u';
        b += 1;
    }
    table[0x08] = b'b';
    table[0x09] = b't';
    table[0x0a] = b'n';
    table[0x0c] = b'f';
    table[0x0d] = b'r';
    table[b'"' as usize] = b'"';
    table[b'\\' as usize] = b'\\';
    table
};

#[cold]
fn write_escape(out: &mut Vec<u8>, escape: u8, byte: u8) {
    if escape == b'u' {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        out.extend_from_slice(&[
            b'\\',
            b'u',
            b'0',
            b'0',
            HEX[usize::from(byte >> 4)],
            HEX[usize::from(byte & 15)],
        ]);
    } else {
        out.extend_from_slice(&[b'\\', escape]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::json;
    use storage::records::{encode_event_plain, StoredEvent};

    fn both(event: Value, issue_id: Option<u64>, hashes: Vec<String>) {
        let stored = StoredEvent {
            event_id: "0123456789abcdef0123456789abcdef".into(),
            project_id: 42,
            issue_id,
            timestamp_ms: 1_700_000_000_123,
            received_ms: 1_700_000_000_456,
            hashes,
            event: serde_json::Value::from(event.clone()),
        };
        let head = StoredEventHead {
            event_id: &stored.event_id,
            project_id: stored.project_id,
            issue_id: stored.issue_id,
            timestamp_ms: stored.timestamp_ms,
            received_ms: stored.received_ms,
            hashes: &stored.hashes,
        };
        let fast = encode_stored_event(&head, &event);
        let serde = encode_event_plain(&stored).expect("serde encodes");
        assert_eq!(
            String::from_utf8_lossy(&fast[8..]),
            String::from_utf8_lossy(&serde[8..])
        );
        assert_eq!(fast, serde);
    }

    #[test]
    fn matches_serde_json_byte_for_byte() {
        both(json!({}), None, vec![]);
        both(
            json!({
                "message": "plain text long enough for the eight-byte chunks",
                "quotes": "say \"hi\" \\ back\\slash",
                "controls": "a\u{0}b\u{1}c\u{8}d\u{c}e\nf\rg\th\u{1f}i\u{7f}",
                "unicode": "ünïcødé ✓ 😀 \u{2028}",
                "numbers": [0, 1, 18446744073709551615u64, -1, -9223372036854775808i64, 1.5, -0.0, 1e300, 0.1, 123456789.125],
                "nested": {"a": [[], {}, [null, true, false]], "b": {"c": {"d": "e"}}},
                "key \"with\" quotes\n": "v",
                "": "",
            }),
            Some(7),
            vec!["aa".into(), "b\"b".into()],
        );
    }

    #[test]
    fn put_row_matches_extend_from_slice() {
        // Rows of every kept length, with and without the comma, into buffers that are
        // empty, partly filled and exactly full, twice in a row: the kept bytes and nothing
        // of the rest of the row.
        let row: [u8; 35] = std::array::from_fn(|i| b'a' + i as u8);
        for len in 0..=35usize {
            for prefix in [0usize, 1, 7, 40] {
                let start: Vec<u8> = (0..prefix).map(|i| i as u8).collect();
                let mut fast = start.clone();
                fast.shrink_to_fit();
                let mut slow = start;
                for comma in [false, true] {
                    put_row(&mut fast, comma, &row, len);
                    if comma {
                        slow.push(b',');
                    }
                    slow.extend_from_slice(&row[..len]);
                }
                assert_eq!(fast, slow, "len {len} prefix {prefix}");
            }
        }
    }

    #[test]
    fn first_escape_matches_a_byte_loop() {
        // Each byte value (high bytes and 0x20 must not flag) at every position of strings
        // on both sides of the 16-byte step and its overlapping tail, with a clean prefix of
        // high bytes too.
        let naive = |b: &[u8]| b.iter().position(|&x| ESCAPE[usize::from(x)] != 0);
        for len in 0..50 {
            for pos in 0..len {
                for byte in [
                    b'"', b'\\', 0u8, 0x1f, 0x20, b'!', b'#', b'[', b']', 0x7f, 0x80, 0xff,
                ] {
                    for fill in [b'x', 0xe9u8] {
                        let mut bytes = vec![fill; len];
                        bytes[pos] = byte;
                        let expected = naive(&bytes).unwrap_or(len);
                        assert_eq!(first_escape(&bytes), expected, "{bytes:?}");
                        if len >= 16 {
                            assert_eq!(words_first_escape(&bytes), expected, "{bytes:?}");
                        }
                    }
                }
            }
            assert_eq!(first_escape(&vec![b'a'; len]), len);
        }
    }

    #[test]
    fn first_escape_16_matches_a_byte_loop() {
        // Every byte value at every position of a clean 16-byte block (clean fills of ASCII
        // and of high bytes), and a second flagged byte after it: the first one counts.
        for fill in [b'a', 0xe9u8] {
            for pos in 0..16 {
                for b in 0..=255u8 {
                    let mut block = [fill; 16];
                    block[pos] = b;
                    let expected = block.iter().position(|&x| ESCAPE[usize::from(x)] != 0);
                    assert_eq!(first_escape_16(&block), expected, "{block:?}");
                    block[15] = b'\\';
                    let expected = block.iter().position(|&x| ESCAPE[usize::from(x)] != 0);
                    assert_eq!(first_escape_16(&block), expected, "{block:?}");
                }
            }
            assert_eq!(first_escape_16(&[fill; 16]), None);
        }
    }

    #[test]
    fn every_escape_position_in_a_chunk() {
        // Each special byte at every offset of strings of several lengths: the chunked scan
        // must never skip one.
        for special in [b'"', b'\\', b'\n', 0x01u8, 0x1f, b'\t'] {
            for len in 1..40 {
                for pos in 0..len {
                    let mut s = vec![b'x'; len];
                    s[pos] = special;
                    let s = String::from_utf8(s).expect("ascii");
                    both(json!({ "k": s.clone(), s: 1 }), Some(1), vec![]);
                }
            }
        }
    }

    #[test]
    fn both_16_byte_scans_agree() {
        // Every byte value at every position of a clean 16-byte block, and two flagged bytes
        // (the first one wins): the SSE2 scan against the word arithmetic.
        for pos in 0..16 {
            for b in 0..=255u8 {
                let mut block = [b'a'; 16];
                block[pos] = b;
                let (low, high) = (word(&block[..8]), word(&block[8..]));
                let expected = block.iter().position(|&x| ESCAPE[usize::from(x)] != 0);
                assert_eq!(swar_flagged_16(low, high), expected, "{block:?}");
                assert_eq!(flagged_16(low, high), expected, "{block:?}");
                block[15] = b'"';
                let (low, high) = (word(&block[..8]), word(&block[8..]));
                let expected = block.iter().position(|&x| ESCAPE[usize::from(x)] != 0);
                assert_eq!(flagged_16(low, high), expected, "{block:?}");
            }
        }
    }

    #[test]
    fn write_str_matches_serde_json_on_mixed_strings() {
        // Pieces of every kind (clean ASCII runs of several lengths, each escape, control
        // characters, multi-byte UTF-8 incl. U+2028/U+2029, which JSON leaves unescaped)
        // combined three at a time: every run/escape boundary inside and across 8-byte chunks.
        let pieces = [
            "",
            "a",
            "abcdefg",
            "abcdefghijklm",
            "\"",
            "\\",
            "\n",
            "\r",
            "\t",
            "\u{8}",
            "\u{c}",
            "\u{0}",
            "\u{1b}",
            "\u{1f}",
            " ",
            "\u{7f}",
            "é",
            "✓",
            "😀",
            "\u{2028}",
            "\u{2029}",
            "\u{80}",
        ];
        for a in pieces {
            for b in pieces {
                for c in pieces {
                    let s = format!("{a}{b}{c}{b}");
                    let mut out = Vec::new();
                    write_str(&mut out, &s);
                    assert_eq!(
                        String::from_utf8(out).expect("utf-8"),
                        serde_json::to_string(&s).expect("serializes"),
                        "{s:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn write_u64_matches_display() {
        // Every number of up to four digits, each power of ten and its neighbours, and
        // random ones of every length.
        let mut next = crate::xorshift64(0x1f83_d9ab_fb41_bd6b);
        let mut numbers: Vec<u64> = (0..10_000).collect();
        for p in 0..20 {
            let t = 10u64.pow(p);
            numbers.extend([t - 1, t, t + 1]);
        }
        numbers.push(u64::MAX);
        numbers.extend((0..10_000).map(|_| next() >> (next() % 64)));
        for n in numbers {
            let mut out = b"x".to_vec();
            write_u64(&mut out, n);
            assert_eq!(out, format!("x{n}").into_bytes());
        }
    }

    #[test]
    fn put_matches_extend_from_slice() {
        // Every length 0..=80 (each arm of `copy_short` and its edges) of varied bytes,
        // appended to buffers that are empty, partly filled and exactly full (so `reserve`
        // must grow them), twice in a row.
        let mut next = crate::xorshift64(0x51_7cc1_b727_220a);
        for n in 0..=80usize {
            let piece: Vec<u8> = (0..n).map(|_| next() as u8).collect();
            for prefix in [0usize, 1, 7, 15, 33] {
                let start: Vec<u8> = (0..prefix).map(|i| i as u8 ^ 0xa5).collect();
                let mut fast = start.clone();
                fast.shrink_to_fit();
                let mut slow = start.clone();
                for _ in 0..2 {
                    put(&mut fast, &piece);
                    slow.extend_from_slice(&piece);
                }
                assert_eq!(fast, slow, "n {n} prefix {prefix}");
                let mut copied = vec![0u8; n];
                // SAFETY: `piece` and `copied` are distinct buffers of `n` bytes.
                #[allow(unsafe_code)]
                unsafe {
                    copy_short(piece.as_ptr(), copied.as_mut_ptr(), n)
                };
                assert_eq!(copied, piece, "n {n}");
            }
        }
    }

    /// A random JSON tree (bounded: depth ≤ 4, ≤ 6 children per container) with known and
    /// unknown keys and strings of every length class, with and without escapes.
    fn random_value(next: &mut impl FnMut() -> u64, depth: u32) -> Value {
        const PIECES: [&str; 12] = [
            "a",
            "filename",
            "abcdefghijklmnopq",
            "\"",
            "\\",
            "\n",
            "\u{1}",
            "é",
            "😀",
            "0123456789abcdef0123456789abcdef!",
            "type",
            " ",
        ];
        let text = |next: &mut dyn FnMut() -> u64| -> String {
            let parts = next() % 5;
            (0..parts)
                .map(|_| PIECES[(next() % PIECES.len() as u64) as usize])
                .collect()
        };
        let kind = if depth >= 4 { next() % 4 } else { next() % 6 };
        match kind {
            0 => Value::Null,
            1 => Value::Bool(next().is_multiple_of(2)),
            2 => match next() % 3 {
                0 => Value::from(next() >> (next() % 64)),
                1 => Value::from(-((next() >> 2) as i64) >> (next() % 62)),
                _ => Value::from((next() % 1_000_000) as f64 / 1000.0),
            },
            3 => Value::String(text(next)),
            4 => Value::Array(
                (0..next() % 6)
                    .map(|_| random_value(next, depth + 1))
                    .collect(),
            ),
            _ => {
                let mut map = Map::new();
                for _ in 0..next() % 7 {
                    let key = match next() % 3 {
                        0 => ["type", "value", "filename", "lineno", "in_app", "data"]
                            [(next() % 6) as usize]
                            .to_owned(),
                        _ => text(next),
                    };
                    map.insert(key, random_value(next, depth + 1));
                }
                Value::Object(map)
            }
        }
    }

    #[test]
    fn random_trees_encode_like_serde_json_and_parse_back() {
        // The encoder (known-key rows, short copies, numbers) against serde_json's compact
        // form, and the parser (its short string copy) against serde_json's parse of those
        // bytes, on 3,000 generated trees.
        let mut next = crate::xorshift64(0x2d35_8dcc_aa6c_78a5);
        for _ in 0..3_000 {
            let value = random_value(&mut next, 0);
            let ours = encode_event_body(&value);
            let theirs = serde_json::to_vec(&serde_json::Value::from(value.clone())).unwrap();
            assert_eq!(
                String::from_utf8_lossy(&ours),
                String::from_utf8_lossy(&theirs)
            );
            let text = std::str::from_utf8(&ours).unwrap();
            let parsed = crate::value::from_str(text).unwrap();
            assert_eq!(parsed, value);
            assert_eq!(
                serde_json::Value::from(parsed),
                serde_json::from_str::<serde_json::Value>(text).unwrap()
            );
        }
    }

    #[test]
    fn bytes_near_the_special_ones_are_not_escaped() {
        let all: String = (0u8..=0x7f).map(char::from).collect();
        both(
            json!({ "all": all, "hi": "\u{80}\u{ff}\u{100}" }),
            None,
            vec![],
        );
    }
}
