//! Request body decoding: `Content-Encoding` and the store endpoint's sniffing
//! (sentry-protocol.md §4.1).
//!
//! Every decoder reads through a cap: the output may grow to `cap` bytes and one byte more
//! means the request is refused with 413, so a gzip bomb costs at most `cap + 1` bytes of
//! memory and the CPU to inflate them, never more.

use std::io::Read;

use base64::Engine;
use bytes::Bytes;
use http::HeaderMap;

use crate::error::{DetailError, IngestError};

/// A content coding ingest can remove.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// `gzip` / `x-gzip` (multi-member streams are read to the end).
    Gzip,
    /// `deflate`: the zlib wrapper, as in HTTP (raw deflate is accepted as a fallback).
    Deflate,
    /// `br`.
    Brotli,
    /// `zstd`.
    Zstd,
}

impl Encoding {
    /// Parses one coding token; `Ok(None)` for tokens that mean "no encoding"
    /// (`identity`, empty, and the bogus `UTF-8` some SDKs send).
    pub fn parse(token: &str) -> Result<Option<Encoding>, IngestError> {
        let token = token.trim();
        if token.is_empty()
            || token.eq_ignore_ascii_case("utf-8")
            || token.eq_ignore_ascii_case("identity")
        {
            return Ok(None);
        }
        Ok(Some(match token.to_ascii_lowercase().as_str() {
            "gzip" | "x-gzip" => Encoding::Gzip,
            "deflate" => Encoding::Deflate,
            "br" => Encoding::Brotli,
            "zstd" => Encoding::Zstd,
            _ => return Err(IngestError::UnsupportedEncoding(token.to_owned())),
        }))
    }
}

/// The codings of a request in the order they were applied (decode in reverse).
pub fn encodings(headers: &HeaderMap) -> Result<Vec<Encoding>, IngestError> {
    let mut out = Vec::new();
    for value in headers.get_all(http::header::CONTENT_ENCODING) {
        let value = value.to_str().map_err(|_| {
            IngestError::UnsupportedEncoding(String::from_utf8_lossy(value.as_bytes()).into_owned())
        })?;
        for token in value.split(',') {
            if let Some(enc) = Encoding::parse(token)? {
                // More than a couple of stacked codings is not something any SDK does; refusing
                // keeps the worst case at a few decoder passes.
                if out.len() >= 4 {
                    return Err(IngestError::UnsupportedEncoding(value.to_owned()));
                }
                out.push(enc);
            }
        }
    }
    Ok(out)
}

fn too_large(cap: usize) -> IngestError {
    IngestError::BodyTooLarge(DetailError(format!("length limit exceeded ({cap} bytes)")))
}

/// Reads `reader` to the end into memory, failing with 413 past `cap` bytes.
fn read_capped<R: Read>(
    reader: R,
    cap: usize,
    size_hint: usize,
) -> Result<Bytes, std::io::Result<()>> {
    let mut out = Vec::with_capacity(size_hint.min(cap).min(1 << 20));
    let limit = (cap as u64).saturating_add(1);
    match reader.take(limit).read_to_end(&mut out) {
        Ok(_) if out.len() > cap => Err(Ok(())),
        Ok(_) => Ok(Bytes::from(out)),
        Err(e) => Err(Err(e)),
    }
}

/// Removes one coding.
pub fn decode_one(encoding: Encoding, data: &[u8], cap: usize) -> Result<Bytes, IngestError> {
    let hint = data.len().saturating_mul(4);
    let result = match encoding {
        Encoding::Gzip => read_capped(flate2::read::MultiGzDecoder::new(data), cap, hint),
        Encoding::Deflate => {
            // Clients disagree on what "deflate" means; zlib is the standard, raw deflate the
            // common mistake. A zlib stream starts with CMF 0x?8 and a header checksum.
            let is_zlib = data.len() >= 2
                && data[0] & 0x0f == 8
                && (u16::from(data[0]) << 8 | u16::from(data[1])) % 31 == 0;
            if is_zlib {
                read_capped(flate2::read::ZlibDecoder::new(data), cap, hint)
            } else {
                read_capped(flate2::read::DeflateDecoder::new(data), cap, hint)
            }
        }
        Encoding::Brotli => read_capped(brotli::Decompressor::new(data, 4096), cap, hint),
        Encoding::Zstd => match zstd::stream::read::Decoder::with_buffer(data) {
            Ok(decoder) => read_capped(decoder, cap, hint),
            Err(e) => Err(Err(e)),
        },
    };
    match result {
        Ok(bytes) => Ok(bytes),
        Err(Ok(())) => Err(too_large(cap)),
        Err(Err(e)) => Err(IngestError::InvalidBody(DetailError::new(e))),
    }
}

/// Removes every coding of the request (last applied first), capping each output at `cap`.
pub fn decode_body(encodings: &[Encoding], body: Bytes, cap: usize) -> Result<Bytes, IngestError> {
    let mut body = body;
    for &enc in encodings.iter().rev() {
        body = decode_one(enc, &body, cap)?;
    }
    if body.len() > cap {
        return Err(too_large(cap));
    }
    Ok(body)
}

/// Rewrites the non-JSON number tokens Python's `json.dumps` emits for non-finite floats
/// (`NaN`, `Infinity`, `-Infinity`) into `0`, in place and keeping the length (the rest is
/// padded with spaces), outside of strings only. Relay does the same for the store endpoint's
/// Python clients. Returns whether anything changed.
pub fn patch_non_finite_numbers(json: &mut [u8]) -> bool {
    let mut changed = false;
    let mut in_string = false;
    let mut escaped = false;
    let mut i = 0;
    while i < json.len() {
        let b = json[i];
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            i += 1;
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'N' if json[i..].starts_with(b"NaN") => {
                json[i..i + 3].copy_from_slice(b"0  ");
                changed = true;
                i += 3;
                continue;
            }
            b'I' if json[i..].starts_with(b"Infinity") => {
                json[i..i + 8].copy_from_slice(b"0       ");
                changed = true;
                i += 8;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    changed
}

/// The store endpoint's legacy payload forms: JSON as is; otherwise base64, whose result is
/// JSON or zlib-compressed JSON (raven-js / old raven clients).
pub fn decode_store_payload(body: Bytes, cap: usize) -> Result<Bytes, IngestError> {
    let first = body.iter().position(|b| !b.is_ascii_whitespace());
    match first {
        None => return Err(IngestError::EmptyBody),
        Some(i) if body[i] == b'{' => return Ok(body),
        Some(_) => {}
    }
    let text: Vec<u8> = body
        .iter()
        .copied()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(&text)
        .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(&text))
        .or_else(|_| base64::engine::general_purpose::URL_SAFE.decode(&text))
        .map_err(|e| IngestError::InvalidBody(DetailError::new(e)))?;
    if decoded.first() == Some(&b'{') {
        if decoded.len() > cap {
            return Err(too_large(cap));
        }
        return Ok(Bytes::from(decoded));
    }
    match read_capped(
        flate2::read::ZlibDecoder::new(&decoded[..]),
        cap,
        decoded.len() * 4,
    ) {
        Ok(bytes) => Ok(bytes),
        Err(Ok(())) => Err(too_large(cap)),
        Err(Err(e)) => Err(IngestError::InvalidCompressionContainer(DetailError::new(
            e,
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_finite_numbers_are_patched_outside_strings() {
        let mut json =
            br#"{"a":NaN,"b":[Infinity,-Infinity],"s":"NaN and \"Infinity\"","c":1.5}"#.to_vec();
        assert!(patch_non_finite_numbers(&mut json));
        let value: serde_json::Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(value["a"], 0);
        assert_eq!(value["b"][0], 0);
        // `-Infinity` keeps its sign: `-0`, which is 0.
        assert_eq!(value["b"][1].as_f64(), Some(0.0));
        assert_eq!(value["s"], "NaN and \"Infinity\"");
        assert_eq!(value["c"], 1.5);
        let mut clean = br#"{"s":"NaN"}"#.to_vec();
        assert!(!patch_non_finite_numbers(&mut clean));
    }
    use std::io::Write;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(data).unwrap();
        enc.finish().unwrap()
    }

    fn headers(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(http::header::CONTENT_ENCODING, value.parse().unwrap());
        h
    }

    #[test]
    fn parses_codings() {
        assert_eq!(encodings(&headers("gzip")).unwrap(), vec![Encoding::Gzip]);
        assert_eq!(encodings(&headers("x-gzip")).unwrap(), vec![Encoding::Gzip]);
        assert_eq!(encodings(&headers("UTF-8")).unwrap(), vec![]);
        assert_eq!(encodings(&headers("")).unwrap(), vec![]);
        assert_eq!(
            encodings(&headers("deflate, br")).unwrap(),
            vec![Encoding::Deflate, Encoding::Brotli]
        );
        assert!(matches!(
            encodings(&headers("lzma")),
            Err(IngestError::UnsupportedEncoding(_))
        ));
    }

    #[test]
    fn roundtrips_every_coding() {
        let data = b"{\"message\":\"hello\"}".repeat(100);
        let gz = gzip(&data);
        assert_eq!(
            &decode_body(&[Encoding::Gzip], gz.into(), 1 << 20).unwrap()[..],
            &data[..]
        );

        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
        z.write_all(&data).unwrap();
        let z = z.finish().unwrap();
        assert_eq!(
            &decode_body(&[Encoding::Deflate], z.into(), 1 << 20).unwrap()[..],
            &data[..]
        );

        let mut raw = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::fast());
        raw.write_all(&data).unwrap();
        let raw = raw.finish().unwrap();
        assert_eq!(
            &decode_body(&[Encoding::Deflate], raw.into(), 1 << 20).unwrap()[..],
            &data[..]
        );

        let mut br = Vec::new();
        {
            let mut w = brotli::CompressorWriter::new(&mut br, 4096, 5, 22);
            w.write_all(&data).unwrap();
        }
        assert_eq!(
            &decode_body(&[Encoding::Brotli], br.into(), 1 << 20).unwrap()[..],
            &data[..]
        );

        let zs = zstd::encode_all(&data[..], 3).unwrap();
        assert_eq!(
            &decode_body(&[Encoding::Zstd], zs.into(), 1 << 20).unwrap()[..],
            &data[..]
        );
    }

    #[test]
    fn bomb_stops_at_cap() {
        // 64 MiB of zeros compress to ~64 KiB; the cap is 1 MiB.
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        let zeros = vec![0u8; 1 << 20];
        for _ in 0..64 {
            enc.write_all(&zeros).unwrap();
        }
        let bomb = enc.finish().unwrap();
        assert!(bomb.len() < 200_000);
        let err = decode_body(&[Encoding::Gzip], bomb.into(), 1 << 20).unwrap_err();
        assert_eq!(err.status(), http::StatusCode::PAYLOAD_TOO_LARGE);
    }

    #[test]
    fn garbage_is_400() {
        let err =
            decode_body(&[Encoding::Gzip], Bytes::from_static(b"not gzip"), 1000).unwrap_err();
        assert_eq!(err.status(), http::StatusCode::BAD_REQUEST);
        let err =
            decode_body(&[Encoding::Zstd], Bytes::from_static(b"not zstd"), 1000).unwrap_err();
        assert_eq!(err.status(), http::StatusCode::BAD_REQUEST);
    }

    #[test]
    fn store_sniffing() {
        let json = b"{\"a\":1}";
        assert_eq!(
            &decode_store_payload(Bytes::from_static(json), 100).unwrap()[..],
            json
        );
        let b64 = base64::engine::general_purpose::STANDARD.encode(json);
        assert_eq!(&decode_store_payload(b64.into(), 100).unwrap()[..], json);
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
        z.write_all(json).unwrap();
        let b64z = base64::engine::general_purpose::STANDARD.encode(z.finish().unwrap());
        assert_eq!(&decode_store_payload(b64z.into(), 100).unwrap()[..], json);
        assert!(matches!(
            decode_store_payload(Bytes::from_static(b"  "), 100),
            Err(IngestError::EmptyBody)
        ));
        assert!(decode_store_payload(Bytes::from_static(b"!!!"), 100).is_err());
    }
}
