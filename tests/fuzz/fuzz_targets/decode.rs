//! The body decoders with their size cap: whatever the compressed input, the output never
//! exceeds the cap (a decompression bomb is cut off) and nothing panics.
#![no_main]

use ingest::decode::{decode_body, decode_one, Encoding};
use libfuzzer_sys::fuzz_target;

/// Small, so bombs hit the cap quickly.
const CAP: usize = 64 * 1024;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let encodings = [
        Encoding::Gzip,
        Encoding::Deflate,
        Encoding::Brotli,
        Encoding::Zstd,
    ];
    let encoding = encodings[(selector & 3) as usize];
    if let Ok(out) = decode_one(encoding, rest, CAP) {
        assert!(out.len() <= CAP, "{encoding:?} decoded past the cap");
    }
    // Two layers (as `Content-Encoding: gzip, br` would say).
    let second = encodings[((selector >> 2) & 3) as usize];
    if let Ok(out) = decode_body(
        &[encoding, second],
        bytes::Bytes::copy_from_slice(rest),
        CAP,
    ) {
        assert!(out.len() <= CAP, "layered decode past the cap");
    }
});
