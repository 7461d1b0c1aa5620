//! The ingest endpoint end to end, without a socket: every bad request of
//! sentry-protocol.md §2 and §4 with Relay's status and detail, the accepted forms, rate
//! limits, client reports, backpressure, and one run over the real embedded log.

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use base64::Engine;
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use http_body_util::{BodyExt, Full};
use ingest::{
    DataCategory, IngestConfig, IngestRequest, IngestResponse, IngestService, StaticProjects,
};
use parking_lot::Mutex;
use storage::{AppendTicket, Log, LogRecord, StorageError};

const KEY: &str = "0123456789abcdef0123456789abcdef";
const OTHER_KEY: &str = "fedcba9876543210fedcba9876543210";
const DISABLED_KEY: &str = "dddddddddddddddddddddddddddddddd";
const EVENT_ID: &str = "9ec79c33ec9942ab8353589fcb2e04dc";

/// An in-memory log: keeps records, can be told to refuse with backpressure.
#[derive(Default)]
struct MemLog {
    records: Mutex<Vec<LogRecord>>,
    offset: AtomicU64,
    refuse: AtomicBool,
}

impl Log for MemLog {
    fn append(&self, records: Vec<LogRecord>) -> Result<AppendTicket, StorageError> {
        if self.refuse.load(Ordering::Relaxed) {
            return Err(StorageError::Backpressure {
                retry_after_secs: 3,
            });
        }
        let n = records.len() as u64;
        self.records.lock().extend(records);
        let last = self.offset.fetch_add(n, Ordering::Relaxed) + n;
        Ok(AppendTicket::ready(Ok(last)))
    }
    fn backlog_bytes(&self) -> u64 {
        0
    }
}

fn projects() -> StaticProjects {
    let mut p = StaticProjects::default()
        .with(1, 10, KEY)
        .with(2, 20, OTHER_KEY)
        .with(1, 11, DISABLED_KEY);
    let disabled = p.keys.get(DISABLED_KEY).unwrap().as_ref().clone();
    p.keys.insert(
        DISABLED_KEY.into(),
        Arc::new(storage::ProjectKey {
            enabled: false,
            ..disabled
        }),
    );
    p
}

fn service(config: IngestConfig) -> (IngestService, Arc<MemLog>) {
    let log = Arc::new(MemLog::default());
    (
        IngestService::new(projects(), log.clone() as Arc<dyn Log>, config),
        log,
    )
}

fn auth(key: &str) -> String {
    format!("Sentry sentry_key={key}, sentry_version=7, sentry_client=test/1.0")
}

fn event_envelope() -> Vec<u8> {
    let payload = br#"{"message":"hello","level":"error"}"#;
    let mut body =
        format!("{{\"event_id\":\"{EVENT_ID}\",\"sent_at\":\"2024-01-01T00:00:00Z\"}}\n")
            .into_bytes();
    body.extend_from_slice(
        format!("{{\"type\":\"event\",\"length\":{}}}\n", payload.len()).as_bytes(),
    );
    body.extend_from_slice(payload);
    body.push(b'\n');
    body
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

struct Req {
    method: Method,
    path: String,
    query: Option<String>,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

fn post(path: &str) -> Req {
    Req {
        method: Method::POST,
        path: path.into(),
        query: None,
        headers: Vec::new(),
        body: Vec::new(),
    }
}

impl Req {
    fn header(mut self, k: &str, v: &str) -> Self {
        self.headers.push((k.into(), v.into()));
        self
    }
    fn auth(self, key: &str) -> Self {
        self.header("x-sentry-auth", &auth(key))
    }
    fn query(mut self, q: &str) -> Self {
        self.query = Some(q.into());
        self
    }
    fn body(mut self, b: impl Into<Vec<u8>>) -> Self {
        self.body = b.into();
        self
    }
    fn build(self) -> IngestRequest {
        let mut headers = HeaderMap::new();
        for (k, v) in self.headers {
            headers.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(&v).unwrap(),
            );
        }
        IngestRequest {
            method: self.method,
            path: self.path,
            query: self.query,
            headers,
            body: Bytes::from(self.body),
            client_addr: Some(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        }
    }
}

fn json(resp: &IngestResponse) -> serde_json::Value {
    serde_json::from_slice(&resp.body).unwrap_or_else(|_| panic!("not JSON: {:?}", resp.body))
}

fn gzip_bomb() -> Vec<u8> {
    // 300 MiB of zeros: over the 200 MiB envelope cap, about 300 KiB compressed.
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..300 {
        enc.write_all(&zeros).unwrap();
    }
    enc.finish().unwrap()
}

#[tokio::test]
async fn every_bad_request_gets_relays_answer() {
    let (svc, log) = service(IngestConfig::default());
    let env = "/api/1/envelope/";
    let big_event = {
        let payload = vec![b'x'; (1 << 20) + 1];
        let mut body = b"{}\n".to_vec();
        body.extend_from_slice(
            format!("{{\"type\":\"event\",\"length\":{}}}\n", payload.len()).as_bytes(),
        );
        body.extend_from_slice(&payload);
        body
    };
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{KEY}:"));
    let mismatched_dsn = format!(
        "{{\"dsn\":\"http://{KEY}@localhost/2\"}}\n{{\"type\":\"event\",\"length\":2}}\n{{}}\n"
    );
    let mismatched_key =
        format!("{{\"dsn\":\"http://{OTHER_KEY}@localhost/1\"}}\n{{\"type\":\"event\",\"length\":2}}\n{{}}\n");

    // (name, request, status, detail, first cause if any)
    let cases: Vec<(&str, Req, StatusCode, &str, Option<&str>)> = vec![
        (
            "no auth (store)",
            post("/api/1/store/").body(r#"{"message":"x"}"#),
            StatusCode::UNAUTHORIZED,
            "missing authorization information",
            None,
        ),
        (
            "no auth (envelope without dsn)",
            post(env).body(event_envelope()),
            StatusCode::UNAUTHORIZED,
            "missing authorization information",
            None,
        ),
        (
            "two auth forms (header + query)",
            post(env).auth(KEY).query(&format!("sentry_key={KEY}")).body(event_envelope()),
            StatusCode::UNAUTHORIZED,
            "multiple authorization payloads detected",
            None,
        ),
        (
            "two auth forms (x-sentry-auth + basic)",
            post(env).auth(KEY).header("authorization", &format!("Basic {basic}")).body(event_envelope()),
            StatusCode::UNAUTHORIZED,
            "multiple authorization payloads detected",
            None,
        ),
        (
            "malformed header",
            post(env).header("x-sentry-auth", "Sentry sentry_version=7").body(event_envelope()),
            StatusCode::UNAUTHORIZED,
            "bad x-sentry-auth header",
            Some("missing public key in auth header"),
        ),
        (
            "malformed envelope-header dsn",
            post(env).body("{\"dsn\":\"not a dsn\"}\n"),
            StatusCode::UNAUTHORIZED,
            "bad envelope authentication header",
            None,
        ),
        (
            "bad key",
            post(env).auth("tooshort").body(event_envelope()),
            StatusCode::BAD_REQUEST,
            "bad sentry DSN public key",
            None,
        ),
        (
            "unknown key",
            post(env).auth("ffffffffffffffffffffffffffffffff").body(event_envelope()),
            StatusCode::FORBIDDEN,
            "event submission rejected with_reason: ProjectId",
            None,
        ),
        (
            "disabled key",
            post(env).auth(DISABLED_KEY).body(event_envelope()),
            StatusCode::FORBIDDEN,
            "event submission rejected with_reason: ProjectId",
            None,
        ),
        (
            "wrong project",
            post("/api/2/envelope/").auth(KEY).body(event_envelope()),
            StatusCode::FORBIDDEN,
            "event submission rejected with_reason: ProjectId",
            None,
        ),
        (
            "bad project path",
            post("/api/abc/envelope/").auth(KEY).body(event_envelope()),
            StatusCode::BAD_REQUEST,
            "bad project path parameter",
            None,
        ),
        (
            "protocol version 8",
            post(env)
                .header("x-sentry-auth", &format!("Sentry sentry_key={KEY}, sentry_version=8"))
                .body(event_envelope()),
            StatusCode::BAD_REQUEST,
            "unsupported protocol version (8)",
            None,
        ),
        (
            "header/DSN project mismatch",
            post(env).auth(KEY).body(mismatched_dsn),
            StatusCode::BAD_REQUEST,
            "invalid event envelope",
            Some("project id header mismatch between envelope and request"),
        ),
        (
            "header/DSN key mismatch",
            post(env).auth(KEY).body(mismatched_key),
            StatusCode::BAD_REQUEST,
            "invalid event envelope",
            Some("public key header mismatch between envelope and request"),
        ),
        (
            "broken framing",
            post(env).auth(KEY).body("{}\n{\"type\":\"event\",\"length\":2}\n{}xx\n"),
            StatusCode::BAD_REQUEST,
            "invalid event envelope",
            Some("missing newline after header or payload"),
        ),
        (
            "invalid item header",
            post(env).auth(KEY).body("{}\n{\"length\":2}\n{}\n"),
            StatusCode::BAD_REQUEST,
            "invalid event envelope",
            Some("invalid item header"),
        ),
        (
            "item length past the body",
            post(env).auth(KEY).body("{}\n{\"type\":\"event\",\"length\":5000}\n{}\n"),
            StatusCode::BAD_REQUEST,
            "invalid event envelope",
            Some("unexpected end of file"),
        ),
        (
            "oversized event",
            post(env).auth(KEY).body(big_event),
            StatusCode::PAYLOAD_TOO_LARGE,
            "envelope exceeded size limits for type 'event' (https://develop.sentry.dev/sdk/envelopes/#size-limits)",
            None,
        ),
        (
            "gzip bomb",
            post(env).auth(KEY).header("content-encoding", "gzip").body(gzip_bomb()),
            StatusCode::PAYLOAD_TOO_LARGE,
            "Failed to buffer the request body",
            Some("length limit exceeded (209715200 bytes)"),
        ),
        (
            "broken gzip",
            post(env).auth(KEY).header("content-encoding", "gzip").body("not gzip at all"),
            StatusCode::BAD_REQUEST,
            "invalid request body",
            None,
        ),
        (
            "unknown encoding",
            post(env).auth(KEY).header("content-encoding", "lzma").body(event_envelope()),
            StatusCode::BAD_REQUEST,
            "unsupported content encoding 'lzma'",
            None,
        ),
        (
            "empty body",
            post(env).auth(KEY),
            StatusCode::BAD_REQUEST,
            "empty request body",
            None,
        ),
        (
            "store: invalid JSON",
            post("/api/1/store/").auth(KEY).body("{not json"),
            StatusCode::BAD_REQUEST,
            "invalid JSON data: Error(\"key must be a string\", line: 1, column: 2)",
            None,
        ),
        (
            "store: oversized event",
            post("/api/1/store/").auth(KEY).body(format!("{{\"m\":\"{}\"}}", "x".repeat(1 << 20))),
            StatusCode::PAYLOAD_TOO_LARGE,
            "Failed to buffer the request body",
            None,
        ),
        (
            "envelope: GET not allowed",
            Req {
                method: Method::GET,
                ..post(env).auth(KEY)
            },
            StatusCode::METHOD_NOT_ALLOWED,
            "method not allowed",
            None,
        ),
    ];

    for (name, req, status, detail, cause) in cases {
        let resp = svc.ingest(req.build()).await;
        assert_eq!(
            resp.status,
            status,
            "{name}: {:?}",
            String::from_utf8_lossy(&resp.body)
        );
        let body = json(&resp);
        assert_eq!(body["detail"], detail, "{name}");
        if let Some(cause) = cause {
            assert_eq!(body["causes"][0], cause, "{name}: {body}");
        }
        assert_eq!(resp.headers["access-control-allow-origin"], "*", "{name}");
        assert!(
            log.records.lock().is_empty(),
            "{name}: nothing may reach the log"
        );
    }

    // Still serving after all of that.
    let resp = svc
        .ingest(post(env).auth(KEY).body(event_envelope()).build())
        .await;
    assert_eq!(resp.status, StatusCode::OK);
    assert_eq!(json(&resp), serde_json::json!({ "id": EVENT_ID }));
    assert!(svc.metrics().rejected("missing_auth", "none") >= 1);
    assert_eq!(svc.metrics().rejected("too_large_item", "error"), 1);
}

#[tokio::test]
async fn accepts_every_auth_form_and_logs_items() {
    let (svc, log) = service(IngestConfig::default());
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{KEY}:x"));
    let header_dsn = format!(
        "{{\"event_id\":\"{EVENT_ID}\",\"dsn\":\"http://{KEY}@127.0.0.1:9000/1\"}}\n{{\"type\":\"event\"}}\n{{}}\n"
    );
    let forms = vec![
        post("/api/1/envelope/").auth(KEY).body(event_envelope()),
        post("/api/1/envelope/")
            .header("authorization", &auth(KEY))
            .body(event_envelope()),
        post("/api/1/envelope/")
            .header("authorization", &format!("Basic {basic}"))
            .body(event_envelope()),
        post("/api/1/envelope/")
            .query(&format!("sentry_key={KEY}&sentry_version=7"))
            .body(event_envelope()),
        post("/api/1/envelope/").body(header_dsn.clone()),
        // Header auth and a matching header DSN.
        post("/api/1/envelope/").auth(KEY).body(header_dsn),
        post("/api/1/envelope/")
            .auth(KEY)
            .header("content-encoding", "gzip")
            .body(gzip(&event_envelope())),
        post("/api/1/envelope/")
            .auth(KEY)
            .header("content-encoding", "UTF-8")
            .body(event_envelope()),
        post("/api/1/envelope/")
            .auth(KEY)
            .header("content-encoding", "zstd")
            .body(zstd::encode_all(&event_envelope()[..], 3).unwrap()),
    ];
    let n = forms.len();
    for (i, req) in forms.into_iter().enumerate() {
        let resp = svc.ingest(req.build()).await;
        assert_eq!(
            resp.status,
            StatusCode::OK,
            "form {i}: {:?}",
            String::from_utf8_lossy(&resp.body)
        );
        assert_eq!(json(&resp)["id"], EVENT_ID, "form {i}");
    }
    let records = log.records.lock();
    assert_eq!(records.len(), n);
    let r = &records[0];
    assert_eq!(r.project_id, 1);
    assert_eq!(r.key_id, 10);
    assert_eq!(r.item_type, "event");
    assert_eq!(r.event_id.unwrap().simple().to_string(), EVENT_ID);
    assert_eq!(&r.payload[..], br#"{"message":"hello","level":"error"}"#);
    assert!(r.envelope_header.starts_with(b"{\"event_id\""));
    assert!(r.item_header.starts_with(b"{\"type\":\"event\""));
    assert_eq!(r.client_addr, Some(IpAddr::V4(Ipv4Addr::LOCALHOST)));
    assert_eq!(svc.metrics().accepted_items(DataCategory::Error), n as u64);
}

#[tokio::test]
async fn store_endpoint_forms() {
    let (svc, log) = service(IngestConfig::default());
    // Plain JSON; id from the payload.
    let resp = svc
        .ingest(
            post("/api/1/store/")
                .auth(KEY)
                .body(format!(r#"{{"event_id":"{EVENT_ID}","message":"m"}}"#))
                .build(),
        )
        .await;
    assert_eq!(resp.status, StatusCode::OK);
    assert_eq!(json(&resp)["id"], EVENT_ID);
    // Base64 + zlib (old raven clients), legacy path without project id.
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
    z.write_all(br#"{"message":"zipped","type":"transaction"}"#)
        .unwrap();
    let b64 = base64::engine::general_purpose::STANDARD.encode(z.finish().unwrap());
    let resp = svc
        .ingest(post("/api/store/").auth(KEY).body(b64).build())
        .await;
    assert_eq!(resp.status, StatusCode::OK);
    assert_eq!(json(&resp)["id"].as_str().unwrap().len(), 32);
    // Python's NaN/Infinity (not JSON): patched to 0, accepted, stored as valid JSON.
    let resp = svc
        .ingest(
            post("/api/1/store/")
                .auth(KEY)
                .body(r#"{"message":"NaN in extra","extra":{"ratio":NaN,"max":-Infinity}}"#)
                .build(),
        )
        .await;
    assert_eq!(resp.status, StatusCode::OK);
    {
        let records = log.records.lock();
        let stored: serde_json::Value =
            serde_json::from_slice(&records.last().unwrap().payload).unwrap();
        assert_eq!(stored["extra"]["ratio"], 0);
        assert_eq!(stored["message"], "NaN in extra");
    }
    // An envelope posted to store by content type.
    let resp = svc
        .ingest(
            post("/api/1/store/")
                .auth(KEY)
                .header("content-type", "application/x-sentry-envelope")
                .body(event_envelope())
                .build(),
        )
        .await;
    assert_eq!(resp.status, StatusCode::OK);
    // GET with sentry_data → GIF.
    let q =
        format!("sentry_key={KEY}&sentry_version=7&sentry_data=%7B%22message%22%3A%22pixel%22%7D");
    let resp = svc
        .ingest(
            Req {
                method: Method::GET,
                ..post("/api/1/store/").query(&q)
            }
            .build(),
        )
        .await;
    assert_eq!(resp.status, StatusCode::OK);
    assert_eq!(resp.headers["content-type"], "image/gif");
    assert_eq!(&resp.body[..], ingest::PIXEL_GIF);

    let records = log.records.lock();
    assert_eq!(records.len(), 5);
    assert_eq!(records[1].item_type, "transaction");
    assert_eq!(
        &records[1].payload[..],
        br#"{"message":"zipped","type":"transaction"}"#
    );
    assert_eq!(&records[4].payload[..], br#"{"message":"pixel"}"#);
    // The synthesized headers parse as an envelope again.
    let again = [
        &records[0].envelope_header[..],
        b"\n",
        &records[0].item_header[..],
        b"\n",
        &records[0].payload[..],
    ]
    .concat();
    let env = ingest::Envelope::parse(Bytes::from(again)).unwrap();
    assert_eq!(env.event_id.unwrap().simple().to_string(), EVENT_ID);
}

#[tokio::test]
async fn preflight_and_unknown_items() {
    let (svc, log) = service(IngestConfig::default());
    let resp = svc
        .ingest(
            Req {
                method: Method::OPTIONS,
                ..post("/api/1/envelope/")
            }
            .header("origin", "https://app.example.com")
            .header("access-control-request-method", "POST")
            .build(),
        )
        .await;
    assert_eq!(resp.status, StatusCode::OK);
    assert_eq!(resp.headers["access-control-allow-origin"], "*");
    assert!(resp.headers["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .contains("x-sentry-auth"));
    assert!(resp.headers["access-control-allow-methods"]
        .to_str()
        .unwrap()
        .contains("POST"));

    let body = "{}\n{\"type\":\"future_thing\",\"length\":3}\nabc\n{\"type\":\"session\"}\n{\"sid\":\"x\"}\n";
    let resp = svc
        .ingest(post("/api/1/envelope/").auth(KEY).body(body).build())
        .await;
    assert_eq!(resp.status, StatusCode::OK);
    assert_eq!(json(&resp), serde_json::json!({}));
    let records = log.records.lock();
    assert_eq!(records.len(), 2);
    assert_eq!(records[0].item_type, "future_thing");
    assert_eq!(&records[0].payload[..], b"abc");
    assert!(records[0].event_id.is_none());
}

#[tokio::test]
async fn client_reports_are_counted_and_logged_for_the_processor() {
    let (svc, log) = service(IngestConfig::default());
    let report = r#"{"timestamp":1700000000,"discarded_events":[{"reason":"queue_overflow","category":"error","quantity":5},{"reason":"sample_rate","category":"transaction","quantity":2}]}"#;
    let body = format!("{{}}\n{{\"type\":\"client_report\"}}\n{report}\n");
    let resp = svc
        .ingest(
            post("/api/1/envelope/")
                .auth(KEY)
                .body(body.clone())
                .build(),
        )
        .await;
    assert_eq!(resp.status, StatusCode::OK);
    assert_eq!(json(&resp), serde_json::json!({}));
    svc.ingest(post("/api/1/envelope/").auth(KEY).body(body).build())
        .await;
    // Both reports are logged as they came, for the processor's outcomes.
    {
        let records = log.records.lock();
        assert_eq!(records.len(), 2);
        for record in records.iter() {
            assert_eq!(record.item_type, "client_report");
            assert_eq!(&record.payload[..], report.as_bytes());
        }
    }
    // A report that does not parse is dropped, not logged.
    let resp = svc
        .ingest(
            post("/api/1/envelope/")
                .auth(KEY)
                .body("{}\n{\"type\":\"client_report\"}\n{not json\n")
                .build(),
        )
        .await;
    assert_eq!(resp.status, StatusCode::OK);
    assert_eq!(log.records.lock().len(), 2);
    assert_eq!(
        svc.metrics()
            .client_outcome("client_discard", "queue_overflow", "error"),
        10
    );
    assert_eq!(
        svc.metrics()
            .client_outcome("client_discard", "sample_rate", "transaction"),
        4
    );
    let mut text = String::new();
    svc.render_metrics(&mut text);
    assert!(text.contains(
        "osprey_ingest_client_outcomes_total{outcome=\"client_discard\",reason=\"queue_overflow\",category=\"error\"} 10"
    ));
}

#[tokio::test]
async fn rate_limits_429_and_partial_200() {
    let config = IngestConfig {
        rate_limits: serde_json::from_str(
            r#"{"window_secs":3600,"project":{"error":2,"transaction":100}}"#,
        )
        .unwrap(),
        ..Default::default()
    };
    let (svc, log) = service(config);
    for _ in 0..2 {
        let resp = svc
            .ingest(
                post("/api/1/envelope/")
                    .auth(KEY)
                    .body(event_envelope())
                    .build(),
            )
            .await;
        assert_eq!(resp.status, StatusCode::OK);
        assert!(resp.headers.get("x-sentry-rate-limits").is_none());
    }
    let resp = svc
        .ingest(
            post("/api/1/envelope/")
                .auth(KEY)
                .body(event_envelope())
                .build(),
        )
        .await;
    assert_eq!(resp.status, StatusCode::TOO_MANY_REQUESTS);
    let limits = resp.headers["x-sentry-rate-limits"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(limits.ends_with(":error:project"), "{limits}");
    let retry: u64 = resp.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=3600).contains(&retry));
    assert!(json(&resp)["detail"]
        .as_str()
        .unwrap()
        .starts_with("Sentry dropped data due to a quota"));

    // Other project: unaffected.
    let resp = svc
        .ingest(
            post("/api/2/envelope/")
                .auth(OTHER_KEY)
                .body(event_envelope())
                .build(),
        )
        .await;
    assert_eq!(resp.status, StatusCode::OK);

    // Event (limited) + session (not limited): 200, header announces the limit.
    let mut mixed = event_envelope();
    mixed.extend_from_slice(b"{\"type\":\"session\"}\n{\"sid\":\"1\"}\n");
    let resp = svc
        .ingest(post("/api/1/envelope/").auth(KEY).body(mixed).build())
        .await;
    assert_eq!(resp.status, StatusCode::OK);
    assert!(resp.headers["x-sentry-rate-limits"]
        .to_str()
        .unwrap()
        .contains(":error:project"));
    // The refused items are summed into one rate-limited client report (flushed about once a
    // second; the test flushes now), which the processor records as `rate_limited` outcomes.
    svc.flush_rejections();
    let records = log.records.lock();
    let (reports, items): (Vec<&LogRecord>, Vec<&LogRecord>) =
        records.iter().partition(|r| r.item_type == "client_report");
    assert_eq!(items.len(), 4);
    assert_eq!(items[3].item_type, "session");
    assert_eq!(svc.metrics().rejected("rate_limited", "error"), 2);
    assert_eq!(reports.len(), 1, "{reports:?}");
    assert_eq!((reports[0].project_id, reports[0].key_id), (1, 10));
    let report: serde_json::Value = serde_json::from_slice(&reports[0].payload).unwrap();
    assert_eq!(
        report["rate_limited_events"],
        serde_json::json!([{"reason": "project_quota", "category": "error", "quantity": 2}])
    );
}

#[tokio::test]
async fn key_rate_limit_from_key_settings() {
    let mut p = projects();
    let k = p.keys.get(KEY).unwrap().as_ref().clone();
    p.keys.insert(
        KEY.into(),
        Arc::new(storage::ProjectKey {
            rate_limit: Some(storage::KeyRateLimit {
                limit: 1,
                window_secs: 3600,
            }),
            ..k
        }),
    );
    let svc = IngestService::new(
        p,
        Arc::new(MemLog::default()) as Arc<dyn Log>,
        IngestConfig::default(),
    );
    let first = svc
        .ingest(
            post("/api/1/envelope/")
                .auth(KEY)
                .body(event_envelope())
                .build(),
        )
        .await;
    assert_eq!(first.status, StatusCode::OK);
    let second = svc
        .ingest(
            post("/api/1/envelope/")
                .auth(KEY)
                .body(event_envelope())
                .build(),
        )
        .await;
    assert_eq!(second.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(second.headers["x-sentry-rate-limits"]
        .to_str()
        .unwrap()
        .ends_with("::key"));
}

#[tokio::test]
async fn backpressure_is_503_with_retry_after() {
    let (svc, log) = service(IngestConfig::default());
    log.refuse.store(true, Ordering::Relaxed);
    let resp = svc
        .ingest(
            post("/api/1/envelope/")
                .auth(KEY)
                .body(event_envelope())
                .build(),
        )
        .await;
    assert_eq!(resp.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(resp.headers["retry-after"], "3");
    assert_eq!(json(&resp)["detail"], "failed to queue envelope");
}

#[tokio::test]
async fn origin_not_in_allowed_domains_is_403_cors() {
    let mut p = projects();
    let project = p.projects.get(&1).unwrap().as_ref().clone();
    let mut settings = project.settings.clone();
    settings.allowed_domains = vec!["*.example.com".into()];
    p.projects.insert(
        1,
        Arc::new(storage::Project {
            settings,
            ..project
        }),
    );
    let svc = IngestService::new(
        p,
        Arc::new(MemLog::default()) as Arc<dyn Log>,
        IngestConfig::default(),
    );
    let bad = svc
        .ingest(
            post("/api/1/envelope/")
                .auth(KEY)
                .header("origin", "https://evil.com")
                .body(event_envelope())
                .build(),
        )
        .await;
    assert_eq!(bad.status, StatusCode::FORBIDDEN);
    assert_eq!(
        json(&bad)["detail"],
        "event submission rejected with_reason: Cors"
    );
    let good = svc
        .ingest(
            post("/api/1/envelope/")
                .auth(KEY)
                .header("origin", "https://a.example.com")
                .body(event_envelope())
                .build(),
        )
        .await;
    assert_eq!(good.status, StatusCode::OK);
}

#[tokio::test]
async fn http_adapter_streams_with_a_cap() {
    let config = IngestConfig {
        limits: ingest::Limits {
            max_envelope_size: 1000,
            ..Default::default()
        },
        ..Default::default()
    };
    let (svc, log) = service(config);
    let request = |body: Vec<u8>| {
        let mut req = http::Request::post("/api/1/envelope/")
            .header("x-sentry-auth", auth(KEY))
            .body(Full::new(Bytes::from(body)))
            .unwrap();
        req.extensions_mut()
            .insert(SocketAddr::from(([10, 1, 2, 3], 5555)));
        req
    };
    let resp = svc.handle(request(event_envelope())).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], format!("{{\"id\":\"{EVENT_ID}\"}}").as_bytes());
    assert_eq!(
        log.records.lock()[0].client_addr,
        Some("10.1.2.3".parse().unwrap())
    );

    let resp = svc.handle(request(vec![b'{'; 5000])).await;
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);

    let req = http::Request::get("/api/1/nothing/")
        .body(Full::new(Bytes::new()))
        .unwrap();
    assert_eq!(svc.handle(req).await.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        svc.metrics().inflight_body_bytes(),
        0,
        "every reservation is returned"
    );
}

#[tokio::test]
async fn inflight_body_budget_is_503() {
    let config = IngestConfig {
        max_inflight_body_bytes: 100,
        ..Default::default()
    };
    let (svc, log) = service(config);
    let req = http::Request::post("/api/1/envelope/")
        .header("x-sentry-auth", auth(KEY))
        .body(Full::new(Bytes::from(event_envelope())))
        .unwrap();
    let resp = svc.handle(req).await;
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(resp.headers()["retry-after"], "1");
    assert!(log.records.lock().is_empty());
    assert_eq!(svc.metrics().inflight_body_bytes(), 0);
}

#[tokio::test]
async fn real_embedded_log_has_the_records_after_200() {
    let dir = tempfile::tempdir().unwrap();
    let store = storage::Store::open(dir.path(), &storage::StoreOptions::default()).unwrap();
    let boot = store.bootstrap(Some(KEY), None).unwrap();
    assert_eq!(boot.dsn_public_key, KEY);
    let log = storage::EmbeddedLog::open(&store, Default::default()).unwrap();
    let svc = IngestService::new(
        store.clone(),
        log.clone() as Arc<dyn Log>,
        IngestConfig::default(),
    );
    for _ in 0..3 {
        let resp = svc
            .ingest(
                post("/api/1/envelope/")
                    .auth(KEY)
                    .body(event_envelope())
                    .build(),
            )
            .await;
        assert_eq!(
            resp.status,
            StatusCode::OK,
            "{:?}",
            String::from_utf8_lossy(&resp.body)
        );
    }
    let records = log.reader().read(0, 100, 1 << 20).unwrap();
    assert_eq!(records.len(), 3);
    for (_, r) in &records {
        assert_eq!(r.project_id, 1);
        assert_eq!(r.event_id.unwrap().simple().to_string(), EVENT_ID);
        assert_eq!(&r.payload[..], br#"{"message":"hello","level":"error"}"#);
    }
    log.close();
}

#[tokio::test]
async fn forwarded_for_only_when_trusted() {
    for (trust, expected) in [(false, "127.0.0.1"), (true, "203.0.113.7")] {
        let (svc, log) = service(IngestConfig {
            trust_forwarded_for: trust,
            ..Default::default()
        });
        let resp = svc
            .ingest(
                post("/api/1/envelope/")
                    .auth(KEY)
                    .header("x-forwarded-for", "203.0.113.7, 10.0.0.1")
                    .body(event_envelope())
                    .build(),
            )
            .await;
        assert_eq!(resp.status, StatusCode::OK);
        assert_eq!(
            log.records.lock()[0].client_addr,
            Some(expected.parse().unwrap())
        );
    }
}

/// Relay's `/api/{id}/cron/{slug}[/{sentry_key}]/` (HTTP check-ins, `curl` from a crontab):
/// GET or POST, the key in the path or in the usual auth, the check-in in the query or as a
/// JSON body. Every accepted check-in is a 202 with one `check_in` record in the log, and a
/// rate limit is never answered (crons would retry); osprey used to answer 404.
#[tokio::test]
async fn cron_check_ins_over_http_are_202_and_logged() {
    let config = IngestConfig {
        rate_limits: serde_json::from_str(r#"{"window_secs":3600,"project":{"monitor":3}}"#)
            .unwrap(),
        ..Default::default()
    };
    let (svc, log) = service(config);
    let get = |path: &str| Req {
        method: Method::GET,
        ..post(path)
    };
    // Key in the path, check-in in the query.
    let resp = svc
        .ingest(
            get(&format!("/api/1/cron/nightly-backup/{KEY}/"))
                .query("status=in_progress&check_in_id=83a7c03ed0a04e1b97e2e3b18d38f244&environment=prod&duration=1.5")
                .build(),
        )
        .await;
    assert_eq!(resp.status, StatusCode::ACCEPTED, "{resp:?}");
    assert!(resp.body.is_empty());
    // The usual auth (`sentry_key` query), no trailing slash, a JSON body.
    let resp = svc
        .ingest(
            post("/api/1/cron/nightly-backup")
                .query(&format!("sentry_key={KEY}"))
                .header("content-type", "application/json")
                .body(r#"{"status":"ok","duration":2.0,"monitor_slug":"ignored"}"#)
                .build(),
        )
        .await;
    assert_eq!(resp.status, StatusCode::ACCEPTED, "{resp:?}");
    {
        let records = log.records.lock();
        assert_eq!(records.len(), 2);
        assert!(records
            .iter()
            .all(|r| r.item_type == "check_in" && r.project_id == 1));
        let first: serde_json::Value = serde_json::from_slice(&records[0].payload).unwrap();
        assert_eq!(
            first,
            serde_json::json!({"status": "in_progress", "check_in_id": "83a7c03ed0a04e1b97e2e3b18d38f244",
                "environment": "prod", "duration": 1.5, "monitor_slug": "nightly-backup"})
        );
        let second: serde_json::Value = serde_json::from_slice(&records[1].payload).unwrap();
        assert_eq!(second["status"], "ok");
        assert_eq!(second["monitor_slug"], "nightly-backup");
    }
    // Bad requests stay bad: no status, no key, a key of another project, a malformed path.
    let no_status = svc
        .ingest(
            get(&format!("/api/1/cron/job/{KEY}/"))
                .query("environment=prod")
                .build(),
        )
        .await;
    assert_eq!(no_status.status, StatusCode::BAD_REQUEST);
    let no_key = svc
        .ingest(get("/api/1/cron/job/").query("status=ok").build())
        .await;
    assert_eq!(no_key.status, StatusCode::UNAUTHORIZED);
    let wrong_project = svc
        .ingest(
            get(&format!("/api/2/cron/job/{KEY}/"))
                .query("status=ok")
                .build(),
        )
        .await;
    assert_eq!(wrong_project.status, StatusCode::FORBIDDEN);
    let too_deep = svc
        .ingest(
            get(&format!("/api/1/cron/job/{KEY}/x/"))
                .query("status=ok")
                .build(),
        )
        .await;
    assert_eq!(too_deep.status, StatusCode::NOT_FOUND);
    // The third check-in uses up the limit of 3; the fourth is dropped, still answered 202.
    for _ in 0..2 {
        let resp = svc
            .ingest(
                get(&format!("/api/1/cron/job/{KEY}"))
                    .query("status=error")
                    .build(),
            )
            .await;
        assert_eq!(resp.status, StatusCode::ACCEPTED, "{resp:?}");
        assert!(resp.headers.get("x-sentry-rate-limits").is_none());
    }
    assert_eq!(log.records.lock().len(), 3);
}

/// Relay's `/api/{id}/nel/` (browsers' Network Error Logging, the URL the keys API hands
/// out): JSON or `application/reports+json` bodies, 200 with no body and one `nel` record
/// counting the reports; another content type is 415; osprey used to answer 404.
#[tokio::test]
async fn nel_reports_are_200_and_logged() {
    let (svc, log) = service(IngestConfig::default());
    let reports = r#"[{"age":12,"type":"network-error","url":"https://shop.example.com/",
        "user_agent":"Mozilla/5.0","body":{"phase":"connection","type":"tcp.refused",
        "status_code":0,"server_ip":"198.51.100.7","protocol":"http/1.1","method":"GET",
        "elapsed_time":48,"referrer":"","sampling_fraction":1.0}},
        {"age":3,"type":"network-error","url":"https://shop.example.com/cart",
        "body":{"phase":"application","type":"http.error","status_code":503}}]"#;
    for content_type in [
        "application/reports+json",
        "application/json; charset=utf-8",
    ] {
        let resp = svc
            .ingest(
                post("/api/1/nel/")
                    .query(&format!("sentry_key={KEY}"))
                    .header("content-type", content_type)
                    .body(reports)
                    .build(),
            )
            .await;
        assert_eq!(resp.status, StatusCode::OK, "{content_type}: {resp:?}");
        assert!(resp.body.is_empty());
    }
    {
        let records = log.records.lock();
        assert_eq!(records.len(), 2);
        let header: serde_json::Value = serde_json::from_slice(&records[0].item_header).unwrap();
        assert_eq!(
            (records[0].item_type.as_str(), header["item_count"].as_u64()),
            ("nel", Some(2))
        );
        assert_eq!(records[0].payload.as_ref(), reports.as_bytes());
    }
    let plain = svc
        .ingest(
            post("/api/1/nel/")
                .query(&format!("sentry_key={KEY}"))
                .header("content-type", "text/plain")
                .body(reports)
                .build(),
        )
        .await;
    assert_eq!(plain.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let not_json = svc
        .ingest(
            post("/api/1/nel")
                .query(&format!("sentry_key={KEY}"))
                .header("content-type", "application/json")
                .body("[1,")
                .build(),
        )
        .await;
    assert_eq!(not_json.status, StatusCode::BAD_REQUEST);
    let no_key = svc
        .ingest(
            post("/api/1/nel/")
                .header("content-type", "application/json")
                .body(reports)
                .build(),
        )
        .await;
    assert_eq!(no_key.status, StatusCode::UNAUTHORIZED);
    assert_eq!(log.records.lock().len(), 2);
}

/// One form part: field name, file name, content type, bytes.
type FormPart<'a> = (&'a str, Option<&'a str>, Option<&'a str>, &'a [u8]);

/// A `multipart/form-data` body.
fn form(boundary: &str, parts: &[FormPart<'_>]) -> Vec<u8> {
    let mut body = Vec::new();
    for (name, filename, content_type, data) in parts {
        let mut head = format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"");
        if let Some(f) = filename {
            head.push_str(&format!("; filename=\"{f}\""));
        }
        if let Some(ct) = content_type {
            head.push_str(&format!("\r\nContent-Type: {ct}"));
        }
        head.push_str("\r\n\r\n");
        body.extend_from_slice(head.as_bytes());
        body.extend_from_slice(data);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    body
}

/// The legacy attachment upload of older SDKs and sentry-native: Relay answers 201 with no
/// body and turns every file part into an `event.attachment` of the event in the path.
#[tokio::test]
async fn legacy_attachment_upload_is_201_and_logged() {
    let config = IngestConfig {
        limits: ingest::Limits {
            max_attachment_size: 1000,
            max_attachments_size: 4000,
            ..Default::default()
        },
        ..Default::default()
    };
    let (svc, log) = service(config);
    let boundary = "sentry-native-7f3a";
    let content_type = format!("multipart/form-data; boundary={boundary}");
    let binary: Vec<u8> = (0u8..=255).chain(b"\r\n--x\r\n".iter().copied()).collect();
    let body = form(
        boundary,
        &[
            ("note", None, None, b"ignored text field"),
            (
                "log",
                Some("app.log"),
                Some("text/plain"),
                b"line 1\nline 2\n",
            ),
            ("blob", Some("state.bin"), None, &binary),
        ],
    );
    let path = format!("/api/1/events/{EVENT_ID}/attachments/");
    let upload = |path: &str, body: Vec<u8>| {
        post(path)
            .auth(KEY)
            .header("content-type", &content_type)
            .body(body)
            .build()
    };
    let resp = svc.ingest(upload(&path, body.clone())).await;
    assert_eq!(resp.status, StatusCode::CREATED, "{:?}", resp.detail());
    assert!(resp.body.is_empty());
    {
        let records = log.records.lock();
        assert_eq!(records.len(), 2);
        for r in records.iter() {
            assert_eq!(r.item_type, "attachment");
            assert_eq!(r.project_id, 1);
            assert_eq!(r.event_id.unwrap().simple().to_string(), EVENT_ID);
        }
        let header = |i: usize| -> serde_json::Value {
            serde_json::from_slice(&records[i].item_header).unwrap()
        };
        assert_eq!(header(0)["filename"], "app.log");
        assert_eq!(header(0)["content_type"], "text/plain");
        assert_eq!(header(0)["attachment_type"], "event.attachment");
        assert_eq!(&records[0].payload[..], b"line 1\nline 2\n");
        assert_eq!(header(1)["filename"], "state.bin");
        assert_eq!(header(1)["content_type"], "application/octet-stream");
        assert_eq!(&records[1].payload[..], &binary[..]);
    }
    assert_eq!(svc.metrics().accepted_items(DataCategory::Attachment), 2);

    // A hyphenated event id and no trailing slash are the same route.
    let hyphenated = uuid::Uuid::parse_str(EVENT_ID).unwrap().hyphenated();
    let resp = svc
        .ingest(upload(
            &format!("/api/1/events/{hyphenated}/attachments"),
            body.clone(),
        ))
        .await;
    assert_eq!(resp.status, StatusCode::CREATED, "{:?}", resp.detail());

    // Bad uploads: Relay's statuses, nothing logged.
    let before = log.records.lock().len();
    let no_auth = post(&path)
        .header("content-type", &content_type)
        .body(body.clone())
        .build();
    assert_eq!(svc.ingest(no_auth).await.status, StatusCode::UNAUTHORIZED);
    let resp = svc
        .ingest(upload("/api/1/events/not-an-id/attachments/", body.clone()))
        .await;
    assert_eq!(resp.status, StatusCode::BAD_REQUEST);
    let not_a_form = post(&path)
        .auth(KEY)
        .header("content-type", "application/octet-stream")
        .body(binary.clone())
        .build();
    let resp = svc.ingest(not_a_form).await;
    assert_eq!(resp.status, StatusCode::BAD_REQUEST);
    assert_eq!(resp.detail().as_deref(), Some("invalid multipart data"));
    let no_file = form(boundary, &[("note", None, None, b"text only")]);
    let resp = svc.ingest(upload(&path, no_file)).await;
    assert_eq!(resp.status, StatusCode::BAD_REQUEST);
    assert_eq!(resp.detail().as_deref(), Some("empty envelope"));
    let big_file = form(boundary, &[("f", Some("big.bin"), None, &[7u8; 1001])]);
    let resp = svc.ingest(upload(&path, big_file)).await;
    assert_eq!(resp.status, StatusCode::PAYLOAD_TOO_LARGE);
    let big_body = form(boundary, &[("f", Some("a.bin"), None, &[7u8; 4100])]);
    let resp = svc.ingest(upload(&path, big_body)).await;
    assert_eq!(resp.status, StatusCode::PAYLOAD_TOO_LARGE);
    let get = Req {
        method: Method::GET,
        ..post(&path).auth(KEY)
    };
    assert_eq!(
        svc.ingest(get.build()).await.status,
        StatusCode::METHOD_NOT_ALLOWED
    );
    assert_eq!(log.records.lock().len(), before);
}
