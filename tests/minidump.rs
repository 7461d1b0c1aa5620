//! Native crash uploads end to end: a Crashpad-style multipart upload (gzip-compressed dump,
//! `sentry[…]` fields, an extra log file) and a raw dump posted to `/api/1/minidump/` are
//! answered with the event id as plain text, become one issue named after the crash, and the
//! dump and the log file are kept as the event's attachments, byte for byte.

mod common;

use std::io::Write;
use std::thread;
use std::time::{Duration, Instant};

use common::{http, OspreyServer, ServerOptions};
use ingest::minidump::testing::minidump;
use serde_json::Value;

/// How long processing of the uploads may take.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(60);
const BOUNDARY: &str = "----crashpad-boundary-4f2a";

fn multipart(parts: &[(&str, Option<&str>, &[u8])]) -> Vec<u8> {
    let mut body = Vec::new();
    for (name, filename, data) in parts {
        let disposition = match filename {
            Some(f) => format!("form-data; name=\"{name}\"; filename=\"{f}\""),
            None => format!("form-data; name=\"{name}\""),
        };
        body.extend_from_slice(
            format!("--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\n\r\n").as_bytes(),
        );
        body.extend_from_slice(data);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    body
}

fn api_get(server: &OspreyServer, path: &str) -> reqwest::blocking::Response {
    http()
        .get(server.url(path))
        .bearer_auth(server.admin_token())
        .send()
        .expect("API GET")
}

#[test]
fn crash_uploads_become_issues_with_their_dumps_attached() {
    let server = OspreyServer::start(ServerOptions::default());
    let endpoint = format!("/api/1/minidump/?sentry_key={}", server.default_key());
    // A 64-bit Windows process writing to a bad address on thread 4242.
    let dump = minidump(2, 9, 0xC000_0005, 1, 0xdead_0000, 4242, 1_764_300_000);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&dump).expect("gzip");
    let gz = gz.finish().expect("gzip");
    let log = b"renderer: loading scene\nrenderer: out of memory?\n";

    let body = multipart(&[
        ("upload_file_minidump", Some("crash.dmp"), &gz),
        ("sentry[release]", None, b"game@3.1.0"),
        ("sentry[environment]", None, b"production"),
        ("sentry[tags][gpu]", None, b"rtx"),
        ("ver", None, b"3.1.0.77"),
        ("renderer_log", Some("renderer.log"), log),
    ]);
    let resp = http()
        .post(server.url(&endpoint))
        .header(
            "Content-Type",
            format!("multipart/form-data; boundary={BOUNDARY}"),
        )
        .body(body)
        .send()
        .expect("POST multipart minidump");
    assert_eq!(resp.status().as_u16(), 200);
    let first_id = resp.text().expect("id text");
    assert!(
        uuid::Uuid::parse_str(&first_id).is_ok() && first_id.contains('-'),
        "plain-text hyphenated id, got {first_id:?}"
    );

    // The same crash as a raw dump body.
    let resp = http()
        .post(server.url(&endpoint))
        .header("Content-Type", "application/octet-stream")
        .body(dump.clone())
        .send()
        .expect("POST raw minidump");
    assert_eq!(resp.status().as_u16(), 200);
    let second_id = resp.text().expect("id text");

    // Not a dump: 400 with a detail, and the server keeps going.
    let resp = http()
        .post(server.url(&endpoint))
        .header("Content-Type", "application/octet-stream")
        .body(&b"this is not a minidump"[..])
        .send()
        .expect("POST garbage");
    assert_eq!(resp.status().as_u16(), 400);
    let detail: Value = resp.json().expect("error JSON");
    assert!(
        detail["detail"]
            .as_str()
            .is_some_and(|d| d.contains("minidump")),
        "{detail}"
    );

    // The event: the crash as an unhandled exception with the form's fields.
    let event_path = format!(
        "/api/0/projects/default/default/events/{}/",
        first_id.replace('-', "")
    );
    let deadline = Instant::now() + DRAIN_TIMEOUT;
    let event: Value = loop {
        let resp = api_get(&server, &event_path);
        if resp.status().is_success() {
            break resp.json().expect("event JSON");
        }
        assert!(Instant::now() < deadline, "event {first_id} never stored");
        thread::sleep(Duration::from_millis(100));
    };
    let text = event.to_string();
    assert!(
        text.contains("EXCEPTION_ACCESS_VIOLATION_WRITE"),
        "{event:#}"
    );
    assert!(
        text.contains("Fatal Error: EXCEPTION_ACCESS_VIOLATION_WRITE"),
        "{event:#}"
    );
    assert!(
        text.contains("game@3.1.0"),
        "release from the form: {event:#}"
    );
    assert!(text.contains("\"Windows\""), "os context: {event:#}");
    assert!(text.contains("rtx"), "tag from the form: {event:#}");

    // Both uploads are one issue.
    let deadline = Instant::now() + DRAIN_TIMEOUT;
    loop {
        let issues: Vec<Value> = api_get(&server, "/api/0/projects/default/default/issues/?query=")
            .json()
            .expect("issues JSON");
        let crash = issues.iter().find(|i| {
            i["title"]
                .as_str()
                .is_some_and(|t| t.contains("EXCEPTION_ACCESS_VIOLATION_WRITE"))
        });
        if crash.is_some_and(|i| i["count"] == "2") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the two crashes ({first_id}, {second_id}) are not one issue of 2: {issues:#?}"
        );
        thread::sleep(Duration::from_millis(100));
    }

    // The dump (decompressed) and the log are the event's attachments.
    let base = format!(
        "/api/0/projects/default/default/events/{}/attachments/",
        first_id.replace('-', "")
    );
    let listed: Vec<Value> = api_get(&server, &base).json().expect("attachments JSON");
    assert_eq!(listed.len(), 2, "{listed:#?}");
    for (name, kind, bytes) in [
        ("crash.dmp", "event.minidump", &dump[..]),
        ("renderer.log", "event.attachment", &log[..]),
    ] {
        let item = listed
            .iter()
            .find(|a| a["name"] == name)
            .unwrap_or_else(|| panic!("{name} not attached: {listed:#?}"));
        assert_eq!(item["type"], kind, "{item}");
        let id = item["id"].as_str().expect("id");
        let got = api_get(&server, &format!("{base}{id}/?download=1"))
            .bytes()
            .expect("download");
        assert_eq!(&got[..], bytes, "{name}");
    }
}
