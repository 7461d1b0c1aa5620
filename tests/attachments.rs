//! Event attachments end to end: the real Python sentry-sdk sends an exception with a text log
//! and a binary file on its scope; the web API lists both under the event (Sentry's
//! `EventAttachment` shape) and `?download=1` returns each byte for byte.

mod common;

use std::thread;
use std::time::{Duration, Instant};

use common::{http, run_python, OspreyServer, ServerOptions};
use serde_json::Value;

/// How long processing of the one event may take.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(60);

/// The entry of `listed` named `name`, checked to be an event attachment of `mimetype` and
/// `size` bytes.
fn listed_file<'a>(listed: &'a [Value], name: &str, mimetype: &str, size: usize) -> &'a Value {
    let item = listed
        .iter()
        .find(|a| a["name"] == name)
        .unwrap_or_else(|| panic!("{name} not listed: {listed:#?}"));
    assert_eq!(item["type"], "event.attachment", "{item}");
    assert_eq!(item["mimetype"], mimetype, "{item}");
    assert_eq!(item["size"], size, "{item}");
    item
}

/// The attachment list at `base` once it holds at least `count` entries (bounded by
/// [`DRAIN_TIMEOUT`]).
fn wait_for_attachments(server: &OspreyServer, base: &str, count: usize) -> Vec<Value> {
    let deadline = Instant::now() + DRAIN_TIMEOUT;
    loop {
        let resp = http()
            .get(server.url(base))
            .bearer_auth(server.admin_token())
            .send()
            .expect("GET attachments");
        assert!(resp.status().is_success(), "{}", resp.status());
        let list: Vec<Value> = resp.json().expect("attachment list JSON");
        if list.len() >= count {
            return list;
        }
        assert!(
            Instant::now() < deadline,
            "attachments not listed in time: {list:?}"
        );
        thread::sleep(Duration::from_millis(100));
    }
}
#[test]
fn python_sdk_attachments_are_listed_and_downloadable() {
    let server = OspreyServer::start(ServerOptions::default());
    let out = run_python("python_attachment.py", &[server.dsn()], &[]);
    out.assert_success();
    let report = out.json();
    let event_id = report["event"]
        .as_str()
        .unwrap_or_else(|| panic!("no event id: {report}"))
        .to_owned();
    let base = format!("/api/0/projects/default/default/events/{event_id}/attachments/");

    let listed = wait_for_attachments(&server, &base, 2);
    assert_eq!(listed.len(), 2, "{listed:#?}");

    let expected_log = b"12:00:01 starting\n12:00:02 loading cart\n12:00:03 boom\n".to_vec();
    let expected_bin: Vec<u8> = (0..4).flat_map(|_| 0u8..=255).collect();
    for (name, mimetype, bytes) in [
        ("app.log", "text/plain", &expected_log),
        ("state.bin", "application/octet-stream", &expected_bin),
    ] {
        let item = listed_file(&listed, name, mimetype, bytes.len());
        assert_eq!(item["event_id"], event_id.replace('-', ""), "{item}");
        let id = item["id"].as_str().expect("attachment id");

        let resp = http()
            .get(server.url(&format!("{base}{id}/?download=1")))
            .bearer_auth(server.admin_token())
            .send()
            .expect("download");
        assert_eq!(resp.status().as_u16(), 200);
        let disposition = resp
            .headers()
            .get("content-disposition")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        assert!(disposition.contains(name), "{disposition}");
        assert_eq!(&resp.bytes().expect("body").to_vec(), bytes, "{name}");
    }

    // An id that does not exist, and no token at all.
    let resp = http()
        .get(server.url(&format!("{base}12345/?download=1")))
        .bearer_auth(server.admin_token())
        .send()
        .expect("GET unknown attachment");
    assert_eq!(resp.status().as_u16(), 404);
    let resp = http().get(server.url(&base)).send().expect("GET no token");
    assert_eq!(resp.status().as_u16(), 401);
}

/// The legacy upload of older SDKs and sentry-native: the event goes to the store endpoint,
/// its files to `POST /api/{project}/events/{event_id}/attachments/` as a multipart form.
/// Relay answers 201; the files are then listed under the event and download byte for byte.
#[test]
fn legacy_multipart_attachment_upload_is_listed_and_downloadable() {
    const BOUNDARY: &str = "----legacy-attachments-9c1e";
    let server = OspreyServer::start(ServerOptions::default());
    let event_id = uuid::Uuid::new_v4().simple().to_string();
    let auth = format!("sentry_key={}&sentry_version=7", server.default_key());
    let resp = http()
        .post(server.url(&format!("/api/1/store/?{auth}")))
        .header("Content-Type", "application/json")
        .body(format!(
            r#"{{"event_id":"{event_id}","message":"native crash","level":"fatal"}}"#
        ))
        .send()
        .expect("POST store");
    assert_eq!(resp.status().as_u16(), 200);

    let log = b"native: frame 0\nnative: frame 1\n".to_vec();
    let config: Vec<u8> = (0..3).flat_map(|_| 0u8..=255).collect();
    let mut body = Vec::new();
    for (name, filename, content_type, data) in [
        ("log", "native.log", Some("text/plain"), &log),
        ("cfg", "config.bin", None, &config),
    ] {
        let mut head = format!(
            "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"{filename}\""
        );
        if let Some(ct) = content_type {
            head.push_str(&format!("\r\nContent-Type: {ct}"));
        }
        head.push_str("\r\n\r\n");
        body.extend_from_slice(head.as_bytes());
        body.extend_from_slice(data);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    let resp = http()
        .post(server.url(&format!("/api/1/events/{event_id}/attachments/?{auth}")))
        .header(
            "Content-Type",
            format!("multipart/form-data; boundary={BOUNDARY}"),
        )
        .body(body)
        .send()
        .expect("POST attachments");
    assert_eq!(resp.status().as_u16(), 201);
    assert!(resp.bytes().expect("body").is_empty());

    let base = format!("/api/0/projects/default/default/events/{event_id}/attachments/");
    let listed = wait_for_attachments(&server, &base, 2);
    assert_eq!(listed.len(), 2, "{listed:#?}");
    for (name, mimetype, bytes) in [
        ("native.log", "text/plain", &log),
        ("config.bin", "application/octet-stream", &config),
    ] {
        let item = listed_file(&listed, name, mimetype, bytes.len());
        let id = item["id"].as_str().expect("attachment id");
        let resp = http()
            .get(server.url(&format!("{base}{id}/?download=1")))
            .bearer_auth(server.admin_token())
            .send()
            .expect("download");
        assert_eq!(resp.status().as_u16(), 200);
        assert_eq!(&resp.bytes().expect("body").to_vec(), bytes, "{name}");
    }
}
