//! Native crash uploads (`/api/{project_id}/minidump/`): what Crashpad, Breakpad and
//! sentry-native post when a program dies.
//!
//! The body is `multipart/form-data` with the dump in the `upload_file_minidump` part (other
//! file parts are further attachments; a `sentry` field holds event JSON and `sentry[a][b]`
//! fields set single event keys), or the raw dump itself. Dumps may arrive gzip- or
//! zstd-compressed inside the form. Ingest reads only the dump's header, stream directory,
//! exception stream and system-info stream (a few hundred bytes, bounds-checked) to name the
//! crash — `EXCEPTION_ACCESS_VIOLATION_READ`, `SIGSEGV`, `EXC_BAD_ACCESS` — and stores an
//! event plus the dump as an `event.minidump` attachment. Without symbols there is no stack
//! walk: the event says what crashed where, and the dump is kept for offline analysis.

use bytes::Bytes;
use serde_json::{json, Map, Value};
use uuid::Uuid;

use crate::decode::{self, Encoding};
use crate::error::{DetailError, IngestError};

/// Parts one upload may have (Crashpad sends a handful).
const MAX_PARTS: usize = 64;
/// `MDMP`, little-endian.
const MINIDUMP_SIGNATURE: u32 = 0x504d_444d;
/// Streams read from the directory at most (real dumps have a few dozen).
const MAX_STREAMS: u32 = 4096;
const EXCEPTION_STREAM: u32 = 6;
const SYSTEM_INFO_STREAM: u32 = 7;

/// One uploaded file besides the dump.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadFile {
    /// Its file name (or the form field's name).
    pub filename: String,
    /// Its `Content-Type`, if sent.
    pub content_type: Option<String>,
    /// Its bytes.
    pub bytes: Bytes,
}

/// A parsed crash upload.
#[derive(Debug, Clone, PartialEq)]
pub struct Upload {
    /// The minidump, decompressed.
    pub minidump: Bytes,
    /// The dump's file name.
    pub minidump_name: String,
    /// Event keys from the `sentry` / `sentry[…]` fields.
    pub event: Map<String, Value>,
    /// Other text fields, kept as the event's `extra`.
    pub extra: Map<String, Value>,
    /// Other file parts.
    pub files: Vec<UploadFile>,
}

/// What the dump says about the crash.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CrashInfo {
    /// The crash reason's name (`SIGSEGV`, `EXCEPTION_ACCESS_VIOLATION_WRITE`, …).
    pub reason: String,
    /// The faulting address.
    pub address: Option<u64>,
    /// The crashing thread.
    pub thread_id: Option<u32>,
    /// Operating system name, from the system-info stream.
    pub os: Option<&'static str>,
    /// CPU architecture, from the system-info stream.
    pub arch: Option<&'static str>,
    /// When the dump was written (unix seconds).
    pub timestamp: Option<u32>,
}

fn invalid(why: impl Into<String>) -> IngestError {
    IngestError::InvalidMinidump(why.into())
}

/// Reads an upload: multipart (by `Content-Type`) or a raw dump.
pub fn parse_upload(
    content_type: Option<&str>,
    body: Bytes,
    cap: usize,
) -> Result<Upload, IngestError> {
    let boundary = content_type.and_then(multipart_boundary);
    let mut upload = Upload {
        minidump: Bytes::new(),
        minidump_name: "minidump.dmp".into(),
        event: Map::new(),
        extra: Map::new(),
        files: Vec::new(),
    };
    let Some(boundary) = boundary else {
        upload.minidump = decompress(body, cap)?;
        check_signature(&upload.minidump)?;
        return Ok(upload);
    };
    let mut found = false;
    for part in multipart_parts(&body, &boundary)? {
        let Part {
            name,
            filename,
            content_type,
            data,
        } = part;
        if name == "upload_file_minidump" {
            upload.minidump = decompress(body.slice_ref(data), cap)?;
            if let Some(f) = filename {
                upload.minidump_name = f;
            }
            found = true;
        } else if let Some(filename) = filename {
            upload.files.push(UploadFile {
                filename,
                content_type,
                bytes: body.slice_ref(data),
            });
        } else {
            let text = String::from_utf8_lossy(data).into_owned();
            set_field(&mut upload, &name, text)?;
        }
    }
    if !found {
        return Err(invalid("no upload_file_minidump part in the form"));
    }
    check_signature(&upload.minidump)?;
    Ok(upload)
}

/// The file parts of a form posted to the legacy attachments route
/// (`/api/{project_id}/events/{event_id}/attachments/`, older SDKs and sentry-native), each
/// an attachment of that event, as Relay reads them: a part with a file name is a file (its
/// `Content-Type`, else `application/octet-stream`), text fields carry nothing kept. A file
/// over `cap_each` bytes is an overflow; a body that is no form, a broken form.
pub fn attachment_files(
    content_type: Option<&str>,
    body: &Bytes,
    cap_each: usize,
) -> Result<Vec<UploadFile>, IngestError> {
    let broken = |e: IngestError| match e {
        IngestError::InvalidMinidump(why) => IngestError::InvalidMultipart(DetailError(why)),
        other => other,
    };
    let boundary = content_type.and_then(multipart_boundary).ok_or_else(|| {
        IngestError::InvalidMultipart(DetailError(
            "expected a multipart/form-data body with a boundary".into(),
        ))
    })?;
    let mut files = Vec::new();
    for part in multipart_parts(body, &boundary).map_err(broken)? {
        let Some(filename) = part.filename else {
            continue;
        };
        if part.data.len() > cap_each {
            return Err(IngestError::Overflow("attachment".into()));
        }
        files.push(UploadFile {
            filename,
            content_type: Some(
                part.content_type
                    .unwrap_or_else(|| "application/octet-stream".into()),
            ),
            bytes: body.slice_ref(part.data),
        });
    }
    Ok(files)
}

/// `sentry` (JSON), `sentry[key][sub]` (one value) or anything else (extra).
fn set_field(upload: &mut Upload, name: &str, text: String) -> Result<(), IngestError> {
    if name == "sentry" {
        match serde_json::from_str::<Value>(&text) {
            Ok(Value::Object(map)) => upload.event.extend(map),
            _ => return Err(invalid("the sentry field is not a JSON object")),
        }
        return Ok(());
    }
    let Some(path) = name.strip_prefix("sentry[") else {
        upload.extra.insert(name.to_owned(), text.into());
        return Ok(());
    };
    // `release]`, `tags][os]` → ["release"], ["tags", "os"]
    let keys: Vec<&str> = path
        .trim_end_matches(']')
        .split("][")
        .filter(|k| !k.is_empty())
        .collect();
    let Some((last, parents)) = keys.split_last() else {
        return Ok(());
    };
    let mut node = &mut upload.event;
    for key in parents.iter().take(4) {
        let entry = node
            .entry((*key).to_owned())
            .or_insert_with(|| Value::Object(Map::new()));
        if !entry.is_object() {
            *entry = Value::Object(Map::new());
        }
        node = entry.as_object_mut().ok_or_else(|| invalid("bad field"))?;
    }
    node.insert((*last).to_owned(), text.into());
    Ok(())
}

/// gzip or zstd by magic bytes; anything else is taken as is.
fn decompress(data: Bytes, cap: usize) -> Result<Bytes, IngestError> {
    if data.starts_with(&[0x1f, 0x8b]) {
        decode::decode_one(Encoding::Gzip, &data, cap)
    } else if data.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        decode::decode_one(Encoding::Zstd, &data, cap)
    } else {
        Ok(data)
    }
}

fn check_signature(dump: &[u8]) -> Result<(), IngestError> {
    if read_u32(dump, 0) == Some(MINIDUMP_SIGNATURE) {
        Ok(())
    } else {
        Err(invalid("the upload is not a minidump (no MDMP signature)"))
    }
}

fn multipart_boundary(content_type: &str) -> Option<String> {
    let (mime, params) = content_type.split_once(';')?;
    if !mime.trim().eq_ignore_ascii_case("multipart/form-data") {
        return None;
    }
    params.split(';').find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("boundary")
            .then(|| v.trim().trim_matches('"').to_owned())
            .filter(|b| !b.is_empty() && b.len() <= 200)
    })
}

struct Part<'a> {
    name: String,
    filename: Option<String>,
    content_type: Option<String>,
    data: &'a [u8],
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    memchr::memmem::find(haystack, needle)
}

fn multipart_parts<'a>(body: &'a [u8], boundary: &str) -> Result<Vec<Part<'a>>, IngestError> {
    let delimiter = format!("--{boundary}");
    let separator = format!("\r\n--{boundary}");
    let start =
        find(body, delimiter.as_bytes()).ok_or_else(|| invalid("multipart boundary not found"))?;
    let mut rest = &body[start + delimiter.len()..];
    let mut parts = Vec::new();
    loop {
        if rest.starts_with(b"--") {
            return Ok(parts); // closing delimiter
        }
        rest = rest
            .strip_prefix(b"\r\n")
            .ok_or_else(|| invalid("malformed multipart delimiter"))?;
        let head_end =
            find(rest, b"\r\n\r\n").ok_or_else(|| invalid("multipart part without headers"))?;
        let head = String::from_utf8_lossy(&rest[..head_end]);
        let after_head = &rest[head_end + 4..];
        let end = find(after_head, separator.as_bytes())
            .ok_or_else(|| invalid("multipart part not terminated"))?;
        let data = &after_head[..end];
        rest = &after_head[end + separator.len()..];

        let mut name = None;
        let mut filename = None;
        let mut content_type = None;
        for line in head.split("\r\n") {
            let Some((key, value)) = line.split_once(':') else {
                continue;
            };
            if key.trim().eq_ignore_ascii_case("content-disposition") {
                for param in value.split(';').skip(1) {
                    if let Some((k, v)) = param.split_once('=') {
                        let v = v.trim().trim_matches('"').to_owned();
                        match k.trim() {
                            "name" => name = Some(v),
                            "filename" => filename = Some(v),
                            _ => {}
                        }
                    }
                }
            } else if key.trim().eq_ignore_ascii_case("content-type") {
                content_type = Some(value.trim().to_owned());
            }
        }
        let name = name.ok_or_else(|| invalid("multipart part without a name"))?;
        if parts.len() >= MAX_PARTS {
            return Err(invalid(format!("more than {MAX_PARTS} form parts")));
        }
        parts.push(Part {
            name,
            filename,
            content_type,
            data,
        });
    }
}

fn read_u16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn read_u32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn read_u64(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// Names the crash from the dump's exception and system-info streams.
pub fn crash_info(dump: &[u8]) -> Result<CrashInfo, IngestError> {
    check_signature(dump)?;
    let streams = read_u32(dump, 8).ok_or_else(|| invalid("truncated minidump header"))?;
    let directory =
        read_u32(dump, 12).ok_or_else(|| invalid("truncated minidump header"))? as usize;
    let mut info = CrashInfo {
        timestamp: read_u32(dump, 20),
        ..CrashInfo::default()
    };
    let mut exception = None;
    let mut platform = None;
    for i in 0..streams.min(MAX_STREAMS) as usize {
        let entry = directory + i * 12;
        let (Some(kind), Some(rva)) = (read_u32(dump, entry), read_u32(dump, entry + 8)) else {
            return Err(invalid("stream directory past the end of the dump"));
        };
        let rva = rva as usize;
        match kind {
            EXCEPTION_STREAM => {
                let code = read_u32(dump, rva + 8)
                    .ok_or_else(|| invalid("exception stream past the end of the dump"))?;
                info.thread_id = read_u32(dump, rva);
                info.address = read_u64(dump, rva + 24);
                let parameters = read_u32(dump, rva + 32).unwrap_or(0);
                let first_parameter = (parameters > 0).then(|| read_u64(dump, rva + 40)).flatten();
                exception = Some((code, first_parameter));
            }
            SYSTEM_INFO_STREAM => {
                info.arch = read_u16(dump, rva).and_then(arch_name);
                platform = read_u32(dump, rva + 24);
                info.os = platform.and_then(os_name);
            }
            _ => {}
        }
    }
    info.reason = match exception {
        Some((code, parameter)) => reason_name(platform, code, parameter),
        None => "Minidump".to_owned(),
    };
    Ok(info)
}

fn arch_name(architecture: u16) -> Option<&'static str> {
    Some(match architecture {
        0 => "x86",
        5 => "arm",
        9 => "x86_64",
        12 | 0x8003 => "arm64",
        6 => "ia64",
        1 => "mips",
        3 => "ppc",
        _ => return None,
    })
}

fn os_name(platform: u32) -> Option<&'static str> {
    Some(match platform {
        0..=2 => "Windows",
        0x8101 => "macOS",
        0x8102 => "iOS",
        0x8201 => "Linux",
        0x8202 => "Solaris",
        0x8203 => "Android",
        0x8206 => "Fuchsia",
        _ => return None,
    })
}

/// The conventional name of an exception code, which depends on the OS that wrote the dump:
/// Windows status codes, POSIX signal numbers, Mach exception types.
fn reason_name(platform: Option<u32>, code: u32, first_parameter: Option<u64>) -> String {
    let named = match platform {
        Some(0..=2) => match code {
            0xC000_0005 => {
                return match first_parameter {
                    Some(0) => "EXCEPTION_ACCESS_VIOLATION_READ",
                    Some(1) => "EXCEPTION_ACCESS_VIOLATION_WRITE",
                    Some(8) => "EXCEPTION_ACCESS_VIOLATION_EXEC",
                    _ => "EXCEPTION_ACCESS_VIOLATION",
                }
                .to_owned()
            }
            0xC000_0094 => Some("EXCEPTION_INT_DIVIDE_BY_ZERO"),
            0xC000_00FD => Some("EXCEPTION_STACK_OVERFLOW"),
            0x8000_0003 => Some("EXCEPTION_BREAKPOINT"),
            0xC000_001D => Some("EXCEPTION_ILLEGAL_INSTRUCTION"),
            0xC000_0409 => Some("EXCEPTION_STACK_BUFFER_OVERRUN"),
            0xC000_0374 => Some("EXCEPTION_HEAP_CORRUPTION"),
            0xE06D_7363 => Some("Unhandled C++ Exception"),
            _ => None,
        },
        Some(0x8101 | 0x8102) => match code {
            1 => Some("EXC_BAD_ACCESS"),
            2 => Some("EXC_BAD_INSTRUCTION"),
            3 => Some("EXC_ARITHMETIC"),
            5 => Some("EXC_SOFTWARE"),
            6 => Some("EXC_BREAKPOINT"),
            10 => Some("EXC_CRASH"),
            11 => Some("EXC_RESOURCE"),
            12 => Some("EXC_GUARD"),
            _ => None,
        },
        _ => match code {
            4 => Some("SIGILL"),
            5 => Some("SIGTRAP"),
            6 => Some("SIGABRT"),
            7 => Some("SIGBUS"),
            8 => Some("SIGFPE"),
            9 => Some("SIGKILL"),
            11 => Some("SIGSEGV"),
            13 => Some("SIGPIPE"),
            15 => Some("SIGTERM"),
            _ => None,
        },
    };
    named.map_or_else(|| format!("0x{code:08x}"), str::to_owned)
}

/// The event stored for a crash: the form's event keys, the crash as an unhandled exception
/// (Sentry's `Fatal Error: …` for dumps it cannot walk), OS and CPU contexts.
pub fn event_json(event_id: Uuid, upload: &Upload, crash: &CrashInfo) -> Value {
    let mut event = upload.event.clone();
    event.insert("event_id".into(), event_id.simple().to_string().into());
    event.entry("level").or_insert_with(|| "fatal".into());
    event.entry("platform").or_insert_with(|| "native".into());
    if let Some(ts) = crash.timestamp.filter(|t| *t > 0) {
        event.entry("timestamp").or_insert_with(|| ts.into());
    }
    let mut exception = json!({
        "type": crash.reason,
        "value": format!("Fatal Error: {}", crash.reason),
        "mechanism": {"type": "minidump", "handled": false, "synthetic": true},
    });
    if let Some(thread) = crash.thread_id {
        exception["thread_id"] = thread.into();
    }
    if let Some(address) = crash.address {
        exception["mechanism"]["data"] = json!({ "address": format!("0x{address:x}") });
    }
    event.insert("exception".into(), json!({ "values": [exception] }));
    let contexts = event
        .entry("contexts")
        .or_insert_with(|| json!({}))
        .as_object_mut()
        .map(std::mem::take)
        .unwrap_or_default();
    let mut contexts = contexts;
    if let Some(os) = crash.os {
        contexts
            .entry("os")
            .or_insert_with(|| json!({"type": "os", "name": os}));
    }
    if let Some(arch) = crash.arch {
        contexts
            .entry("device")
            .or_insert_with(|| json!({"type": "device", "arch": arch}));
    }
    event.insert("contexts".into(), Value::Object(contexts));
    if !upload.extra.is_empty() {
        let extra = event.entry("extra").or_insert_with(|| json!({}));
        if let Some(extra) = extra.as_object_mut() {
            for (k, v) in &upload.extra {
                extra.entry(k.clone()).or_insert_with(|| v.clone());
            }
        }
    }
    Value::Object(event)
}

/// Builders of minimal, valid minidumps, for tests here and in the integration suite.
pub mod testing {
    /// A minidump with a system-info stream (`platform_id`, `architecture`) and an exception
    /// stream (`code`, `first_parameter`, `address`, `thread_id`), written at `timestamp`.
    pub fn minidump(
        platform_id: u32,
        architecture: u16,
        code: u32,
        first_parameter: u64,
        address: u64,
        thread_id: u32,
        timestamp: u32,
    ) -> Vec<u8> {
        let mut d = Vec::new();
        // Header: signature, version, 2 streams, directory at 32, checksum, time, flags.
        for v in [super::MINIDUMP_SIGNATURE, 0xa793, 2, 32, 0, timestamp] {
            d.extend_from_slice(&v.to_le_bytes());
        }
        d.extend_from_slice(&0u64.to_le_bytes());
        // Directory: exception stream at 56 (168 bytes), system info at 224 (56 bytes).
        for v in [
            super::EXCEPTION_STREAM,
            168,
            56,
            super::SYSTEM_INFO_STREAM,
            56,
            224,
        ] {
            d.extend_from_slice(&v.to_le_bytes());
        }
        // Exception stream.
        d.extend_from_slice(&thread_id.to_le_bytes());
        d.extend_from_slice(&0u32.to_le_bytes());
        d.extend_from_slice(&code.to_le_bytes());
        d.extend_from_slice(&0u32.to_le_bytes()); // flags
        d.extend_from_slice(&0u64.to_le_bytes()); // nested record
        d.extend_from_slice(&address.to_le_bytes());
        d.extend_from_slice(&2u32.to_le_bytes()); // parameters
        d.extend_from_slice(&0u32.to_le_bytes());
        d.extend_from_slice(&first_parameter.to_le_bytes());
        d.extend_from_slice(&address.to_le_bytes());
        d.extend_from_slice(&[0u8; 13 * 8]);
        d.extend_from_slice(&[0u8; 8]); // thread context location
                                        // System info stream.
        d.extend_from_slice(&architecture.to_le_bytes());
        d.extend_from_slice(&[0u8; 22]);
        d.extend_from_slice(&platform_id.to_le_bytes());
        d.extend_from_slice(&[0u8; 28]);
        d
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_crashes_per_os() {
        let win = testing::minidump(2, 9, 0xC000_0005, 1, 0x10, 7, 1_700_000_000);
        let info = crash_info(&win).unwrap();
        assert_eq!(info.reason, "EXCEPTION_ACCESS_VIOLATION_WRITE");
        assert_eq!(info.os, Some("Windows"));
        assert_eq!(info.arch, Some("x86_64"));
        assert_eq!(info.thread_id, Some(7));
        assert_eq!(info.address, Some(0x10));
        assert_eq!(info.timestamp, Some(1_700_000_000));
        let linux = testing::minidump(0x8201, 12, 11, 0, 0, 1, 0);
        assert_eq!(crash_info(&linux).unwrap().reason, "SIGSEGV");
        assert_eq!(crash_info(&linux).unwrap().arch, Some("arm64"));
        let mac = testing::minidump(0x8101, 12, 1, 0, 0, 1, 0);
        assert_eq!(crash_info(&mac).unwrap().reason, "EXC_BAD_ACCESS");
        let odd = testing::minidump(0x8201, 9, 77, 0, 0, 1, 0);
        assert_eq!(crash_info(&odd).unwrap().reason, "0x0000004d");
    }

    #[test]
    fn truncated_and_foreign_dumps_are_errors_not_panics() {
        let dump = testing::minidump(2, 9, 0xC000_0005, 0, 0, 1, 0);
        for len in 0..dump.len() {
            // Any prefix either parses (streams before the cut) or is a clean error.
            let _ = crash_info(&dump[..len]);
        }
        assert!(crash_info(b"PK\x03\x04 not a dump").is_err());
        let mut huge = dump.clone();
        huge[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(crash_info(&huge).is_err());
    }

    #[test]
    fn multipart_upload_with_fields_and_files() {
        let dump = testing::minidump(0x8201, 9, 6, 0, 0, 3, 0);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &dump).unwrap();
        let gz = gz.finish().unwrap();
        let b = "XyZ";
        let mut body = Vec::new();
        let mut part = |head: &str, data: &[u8]| {
            body.extend_from_slice(format!("--{b}\r\n{head}\r\n\r\n").as_bytes());
            body.extend_from_slice(data);
            body.extend_from_slice(b"\r\n");
        };
        part(
            "Content-Disposition: form-data; name=\"upload_file_minidump\"; filename=\"crash.dmp\"",
            &gz,
        );
        part(
            "Content-Disposition: form-data; name=\"sentry[release]\"",
            b"app@1.2",
        );
        part(
            "Content-Disposition: form-data; name=\"sentry[tags][shard]\"",
            b"eu",
        );
        part("Content-Disposition: form-data; name=\"prod\"", b"Chrome");
        part(
            "Content-Disposition: form-data; name=\"log\"; filename=\"app.log\"\r\nContent-Type: text/plain",
            b"last words",
        );
        body.extend_from_slice(format!("--{b}--\r\n").as_bytes());
        let upload = parse_upload(
            Some("multipart/form-data; boundary=\"XyZ\""),
            Bytes::from(body),
            1 << 20,
        )
        .unwrap();
        assert_eq!(&upload.minidump[..], &dump[..]);
        assert_eq!(upload.minidump_name, "crash.dmp");
        assert_eq!(upload.event["release"], "app@1.2");
        assert_eq!(upload.event["tags"]["shard"], "eu");
        assert_eq!(upload.extra["prod"], "Chrome");
        assert_eq!(upload.files.len(), 1);
        assert_eq!(upload.files[0].filename, "app.log");
        assert_eq!(&upload.files[0].bytes[..], b"last words");

        let event = event_json(Uuid::nil(), &upload, &crash_info(&upload.minidump).unwrap());
        assert_eq!(event["exception"]["values"][0]["type"], "SIGABRT");
        assert_eq!(
            event["exception"]["values"][0]["value"],
            "Fatal Error: SIGABRT"
        );
        assert_eq!(event["contexts"]["os"]["name"], "Linux");
        assert_eq!(event["level"], "fatal");
        assert_eq!(event["extra"]["prod"], "Chrome");
    }

    #[test]
    fn bad_uploads_say_why() {
        for (ct, body) in [
            (
                Some("multipart/form-data; boundary=q"),
                &b"no delimiter"[..],
            ),
            (
                Some("multipart/form-data; boundary=q"),
                b"--q\r\nContent-Disposition: form-data; name=\"x\"\r\n\r\nv\r\n--q--",
            ),
            (None, b"not a dump"),
        ] {
            let err = parse_upload(ct, Bytes::from_static(body), 1 << 20).unwrap_err();
            assert!(matches!(err, IngestError::InvalidMinidump(_)), "{err:?}");
            assert_eq!(err.status(), http::StatusCode::BAD_REQUEST);
        }
    }
}
