//! Hostile input (issue 10): a corpus of malformed and abusive requests, each answered with a
//! 4xx or accepted and normalized (checked on the stored event), each within a client timeout
//! (the bound), while a well-behaved client keeps being served; slow senders (slowloris) are
//! cut off by the server's read timeouts; and the server's memory stays bounded afterwards.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{OspreyServer, ServerOptions};
use serde_json::{json, Value};
use uuid::Uuid;

/// Every hostile request must be answered within this (the client's timeout is the bound).
const REQUEST_BOUND: Duration = Duration::from_secs(20);
/// Read timeouts configured for the server under test (seconds).
const READ_TIMEOUT_SECS: u64 = 2;
/// Resident memory the server may hold after the corpus.
const RSS_BOUND_KIB: u64 = 512 * 1024;

fn config() -> String {
    format!(
        "header_read_timeout_secs = {READ_TIMEOUT_SECS}\n\
         [ingest]\n\
         body_read_timeout_secs = {READ_TIMEOUT_SECS}\n\
         max_inflight_body_bytes = 134217728\n\
         [ingest.limits]\n\
         max_envelope_size = 16777216\n"
    )
}

/// An envelope around one item whose payload is taken as given (not re-encoded).
fn envelope(id: Uuid, item_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "{{\"event_id\":\"{}\"}}\n{{\"type\":\"{item_type}\",\"length\":{}}}\n",
        id.simple(),
        payload.len()
    )
    .into_bytes();
    out.extend_from_slice(payload);
    out.push(b'\n');
    out
}

fn auth(key: &str) -> String {
    format!("Sentry sentry_version=7, sentry_key={key}, sentry_client=hostile/1.0")
}

/// POSTs `body` to the envelope endpoint; the status, or a panic naming the case when no
/// answer came within [`REQUEST_BOUND`].
fn post(server: &OspreyServer, case: &str, body: Vec<u8>, encoding: Option<&str>) -> u16 {
    let client = common::http_with_timeout(REQUEST_BOUND);
    let mut req = client
        .post(server.url("/api/1/envelope/"))
        .header("X-Sentry-Auth", auth(server.default_key()))
        .header("Content-Type", "application/x-sentry-envelope")
        .body(body);
    if let Some(enc) = encoding {
        req = req.header("Content-Encoding", enc);
    }
    let started = Instant::now();
    match req.send() {
        Ok(resp) => {
            let status = resp.status().as_u16();
            eprintln!("{case}: {status} in {:?}", started.elapsed());
            status
        }
        Err(e) => panic!(
            "{case}: no answer within {REQUEST_BOUND:?}: {e}\n{}",
            server.log_tail(40)
        ),
    }
}

/// The stored event through the API, waiting (bounded) for the processor.
fn stored_event(server: &OspreyServer, id: Uuid) -> Option<Value> {
    stored_event_within(server, id, Duration::from_secs(30))
}

fn stored_event_within(server: &OspreyServer, id: Uuid, wait: Duration) -> Option<Value> {
    let path = format!("/api/0/projects/default/default/events/{}/", id.simple());
    let deadline = Instant::now() + wait;
    loop {
        let (status, body) = server.api_get(&path);
        if status == 200 {
            return Some(body);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn base_event(id: Uuid) -> serde_json::Map<String, Value> {
    let Value::Object(map) = json!({
        "event_id": id.simple().to_string(),
        "timestamp": storage::now_ms() as f64 / 1000.0,
        "platform": "python",
        "level": "error",
        "message": "hostile corpus",
    }) else {
        unreachable!("a JSON object literal")
    };
    map
}

fn with(id: Uuid, key: &str, value: Value) -> Vec<u8> {
    let mut map = base_event(id);
    map.insert(key.into(), value);
    serde_json::to_vec(&Value::Object(map)).expect("serialize")
}

fn is_4xx(status: u16) -> bool {
    (400..500).contains(&status)
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// A well-behaved client running beside the hostile requests: counts its 200s and any
/// failure (any other status or no answer within its timeout).
struct Bystander {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicUsize>,
    failures: Arc<Mutex<Vec<String>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Bystander {
    fn start(server: &OspreyServer) -> Bystander {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicUsize::new(0));
        let failures = Arc::new(Mutex::new(Vec::new()));
        let url = server.url("/api/1/envelope/");
        let key = server.default_key().to_owned();
        let thread = {
            let (stop, ok, failures) = (stop.clone(), ok.clone(), failures.clone());
            std::thread::spawn(move || {
                let client = common::http_with_timeout(Duration::from_secs(10));
                for _ in 0..100_000 {
                    if stop.load(Ordering::Acquire) {
                        break;
                    }
                    let id = Uuid::new_v4();
                    let body = envelope(id, "event", &with(id, "logger", json!("bystander")));
                    match client
                        .post(&url)
                        .header("X-Sentry-Auth", auth(&key))
                        .body(body)
                        .send()
                    {
                        Ok(r) if r.status().as_u16() == 200 => {
                            ok.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(r) => failures
                            .lock()
                            .unwrap()
                            .push(format!("status {}", r.status())),
                        Err(e) => failures.lock().unwrap().push(e.to_string()),
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
            })
        };
        Bystander {
            stop,
            ok,
            failures,
            thread: Some(thread),
        }
    }

    fn finish(mut self) -> (usize, Vec<String>) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            t.join().expect("bystander thread");
        }
        let failures = self.failures.lock().unwrap().clone();
        (self.ok.load(Ordering::Relaxed), failures)
    }
}

/// Opens a raw connection, sends `head`, then trickles `trickle` one byte per 300 ms; returns
/// what the server answered (possibly empty: connection closed) and when the server gave up on
/// the connection. Bounded: the read side times out after [`REQUEST_BOUND`].
fn slow_sender(addr: &str, head: &[u8], trickle: &[u8]) -> (String, Duration) {
    let started = Instant::now();
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_millis(200)))
        .expect("set timeout");
    stream.write_all(head).expect("write head");
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    let mut next = 0;
    while started.elapsed() < REQUEST_BOUND {
        if next < trickle.len() {
            // A write error means the server closed the connection: that is an answer too.
            if stream.write_all(&trickle[next..next + 1]).is_err() {
                break;
            }
            next += 1;
        }
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => break,
        }
        if !answer.is_empty() && answer.windows(4).any(|w| w == b"\r\n\r\n") {
            break;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    let elapsed = started.elapsed();
    assert!(
        elapsed < REQUEST_BOUND,
        "a slow sender held its connection for {elapsed:?}: no read timeout"
    );
    (String::from_utf8_lossy(&answer).into_owned(), elapsed)
}

#[test]
fn hostile_corpus_is_refused_or_normalized_while_others_are_served() {
    let server = OspreyServer::start(ServerOptions {
        config: Some(config()),
        ..Default::default()
    });
    let pid = server.pid().expect("server pid");
    let bystander = Bystander::start(&server);

    // --- Refused or accepted; either way the server must stay up and answer in time. -------
    let id = Uuid::new_v4();
    let mut deep = String::new();
    for _ in 0..100_000 {
        deep.push('[');
    }
    for _ in 0..100_000 {
        deep.push(']');
    }
    let deep_payload = format!(
        "{{\"event_id\":\"{}\",\"message\":\"deep\",\"extra\":{{\"deep\":{deep}}}}}",
        id.simple()
    );
    let status = post(
        &server,
        "100k-deep nesting",
        envelope(id, "event", deep_payload.as_bytes()),
        None,
    );
    assert!(status == 200 || is_4xx(status), "deep nesting: {status}");
    // Deep objects too (`{"a":{"a":…}}`), nested in the envelope header itself.
    let mut deep_header = String::new();
    for _ in 0..50_000 {
        deep_header.push_str("{\"a\":");
    }
    deep_header.push('1');
    for _ in 0..50_000 {
        deep_header.push('}');
    }
    let body = format!("{deep_header}\n{{\"type\":\"event\"}}\n{{}}\n").into_bytes();
    let status = post(&server, "deep envelope header", body, None);
    assert!(
        status == 200 || is_4xx(status),
        "deep envelope header: {status}"
    );

    let mut maybe_stored = vec![("100k-deep nesting", id)];

    // 10^6 elements: over the 1 MiB event limit → 413.
    let id = Uuid::new_v4();
    let million = vec![0u8; 1_000_000];
    let status = post(
        &server,
        "10^6-element array",
        envelope(id, "event", &with(id, "extra", json!({ "big": million }))),
        None,
    );
    assert_eq!(status, 413, "a 10^6-element event is over max_event_size");
    // 10^6 elements in a container that allows it (attachment, 2 MB): stored as bytes, fine.
    let id = Uuid::new_v4();
    let status = post(
        &server,
        "10^6-element attachment",
        envelope(
            id,
            "attachment",
            &serde_json::to_vec(&vec![0u8; 1_000_000]).unwrap(),
        ),
        None,
    );
    assert!(status == 200 || is_4xx(status), "attachment: {status}");

    // Invalid UTF-8 and raw NUL bytes in the payload and in the headers.
    let id = Uuid::new_v4();
    let mut bad = with(id, "message", json!("XXXX"));
    let at = bad.windows(4).position(|w| w == b"XXXX").expect("marker");
    bad[at..at + 4].copy_from_slice(&[0xff, 0xfe, 0x00, 0xc0]);
    let status = post(
        &server,
        "invalid UTF-8 + NUL",
        envelope(id, "event", &bad),
        None,
    );
    assert!(status == 200 || is_4xx(status), "invalid UTF-8: {status}");
    maybe_stored.push(("invalid UTF-8 + NUL", id));
    let status = post(
        &server,
        "NUL in envelope header",
        b"{\"event_id\":\"\0\0\0\"}\n{\"type\":\"event\"}\n{}\n".to_vec(),
        None,
    );
    assert!(is_4xx(status), "NUL in the envelope header: {status}");
    let status = post(
        &server,
        "invalid UTF-8 header",
        b"{\"event_id\":\"\xff\xfe\"}\n{\"type\":\"event\",\"length\":2}\n{}\n".to_vec(),
        None,
    );
    assert!(is_4xx(status), "invalid UTF-8 envelope header: {status}");

    // Numbers out of range: refused or accepted; never a crash.
    let id = Uuid::new_v4();
    let payload = format!(
        "{{\"event_id\":\"{}\",\"timestamp\":1e400,\"level\":\"error\",\"message\":\"big numbers\",\
         \"extra\":{{\"n\":-1e999,\"i\":184467440737095516150}},\
         \"exception\":{{\"values\":[{{\"type\":\"E\",\"value\":\"v\",\"stacktrace\":{{\"frames\":[{{\"function\":\"f\",\"lineno\":99999999999999999999,\"colno\":-5}}]}}}}]}}}}",
        id.simple()
    );
    let status = post(
        &server,
        "numbers out of range",
        envelope(id, "event", payload.as_bytes()),
        None,
    );
    assert!(status == 200 || is_4xx(status), "numbers: {status}");
    maybe_stored.push(("numbers out of range", id));
    let status = post(
        &server,
        "item length past u64",
        b"{}\n{\"type\":\"event\",\"length\":99999999999999999999999}\n{}\n".to_vec(),
        None,
    );
    assert!(is_4xx(status), "length past u64: {status}");
    let status = post(
        &server,
        "item length past the body",
        b"{}\n{\"type\":\"event\",\"length\":18446744073709551615}\n{}\n".to_vec(),
        None,
    );
    assert!(is_4xx(status), "length past the body: {status}");

    // A decompression bomb: 256 MiB of zeros gzipped to ~250 KiB, over the 16 MiB cap.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..256 {
        gz.write_all(&zeros).expect("gzip");
    }
    let bomb = gz.finish().expect("gzip");
    let status = post(&server, "gzip bomb", bomb, Some("gzip"));
    assert_eq!(
        status, 413,
        "a gzip bomb is refused at the decoded-size cap"
    );
    // A huge envelope header line without a newline, under the cap but over any header.
    let status = post(&server, "10 MiB header line", vec![b'{'; 10 << 20], None);
    assert!(is_4xx(status), "10 MiB header line: {status}");

    // --- Accepted and normalized: the stored event is checked. -------------------------------
    // Huge strings: the message is trimmed (Relay: 8192 chars).
    let huge_id = Uuid::new_v4();
    let status = post(
        &server,
        "900 KB message",
        envelope(
            huge_id,
            "event",
            &with(huge_id, "message", json!("x".repeat(900_000))),
        ),
        None,
    );
    assert_eq!(status, 200, "a large but allowed message is accepted");
    // Timestamps in year 10000 (string and number): clamped to the receive time.
    let future_ids = [Uuid::new_v4(), Uuid::new_v4()];
    for (id, ts) in future_ids
        .iter()
        .zip([json!("10000-01-01T00:00:00Z"), json!(253_402_300_800.0)])
    {
        let status = post(
            &server,
            "year 10000",
            envelope(*id, "event", &with(*id, "timestamp", ts)),
            None,
        );
        assert!(status == 200 || is_4xx(status), "year 10000: {status}");
    }
    // Duplicate keys: one value wins, the event is stored.
    let dup_id = Uuid::new_v4();
    let dup = format!(
        "{{\"event_id\":\"{}\",\"level\":\"error\",\"message\":\"first\",\"message\":\"second\",\"platform\":\"python\",\"platform\":\"node\"}}",
        dup_id.simple()
    );
    let status = post(
        &server,
        "duplicate keys",
        envelope(dup_id, "event", dup.as_bytes()),
        None,
    );
    assert!(status == 200 || is_4xx(status), "duplicate keys: {status}");
    // Thousands of tags (and over-long tag keys and values).
    let tags_id = Uuid::new_v4();
    let mut tags = serde_json::Map::new();
    for i in 0..5000 {
        tags.insert(format!("tag{i}"), json!(format!("value{i}")));
    }
    tags.insert("k".repeat(500), json!("long key"));
    tags.insert("long_value".into(), json!("v".repeat(5000)));
    let status = post(
        &server,
        "5000 tags",
        envelope(
            tags_id,
            "event",
            &with(tags_id, "tags", Value::Object(tags)),
        ),
        None,
    );
    assert_eq!(status, 200, "many tags are accepted");

    // --- Slow senders: cut off by the read timeouts, others served meanwhile. ----------------
    let key = server.default_key().to_owned();
    let body_head = format!(
        "POST /api/1/envelope/ HTTP/1.1\r\nHost: {}\r\nX-Sentry-Auth: {}\r\nContent-Length: 100000\r\n\r\n",
        server.addr(),
        auth(&key)
    );
    let slow_threads: Vec<_> = (0..8)
        .map(|n| {
            let head = if n % 2 == 0 {
                // Slow body after a complete head.
                body_head.clone().into_bytes()
            } else {
                // Slow head: the request line, then headers byte by byte.
                format!(
                    "POST /api/1/envelope/ HTTP/1.1\r\nHost: {}\r\n",
                    server.addr()
                )
                .into_bytes()
            };
            let trickle = vec![b'a'; 200];
            let addr = server.addr();
            std::thread::spawn(move || slow_sender(&addr, &head, &trickle))
        })
        .collect();
    // API bodies are bounded the same way (they are read before the token is checked).
    let api_head = format!(
        "POST /api/0/projects/default/default/keys/ HTTP/1.1\r\nHost: {}\r\nContent-Length: 10000\r\n\r\n",
        server.addr()
    );
    let (api_answer, api_elapsed) = slow_sender(&server.addr(), api_head.as_bytes(), &[b'{'; 200]);
    eprintln!(
        "slow API body: {:?} after {api_elapsed:?}",
        api_answer.lines().next()
    );
    assert!(
        api_answer.is_empty() || api_answer.starts_with("HTTP/1.1 408"),
        "slow API body: {api_answer}"
    );
    for t in slow_threads {
        let (answer, elapsed) = t.join().expect("slow sender thread");
        eprintln!("slow sender: {:?} after {elapsed:?}", answer.lines().next());
        assert!(
            answer.is_empty() || answer.starts_with("HTTP/1.1 408"),
            "a slow sender is answered 408 or disconnected: {answer}"
        );
    }

    // --- The bystander was served throughout. -----------------------------------------------
    let (served, failures) = bystander.finish();
    assert!(
        failures.is_empty(),
        "the well-behaved client was refused or timed out: {failures:?}"
    );
    assert!(
        served >= 10,
        "the well-behaved client got only {served} answers"
    );

    // --- Stored events are normalized. ------------------------------------------------------
    let huge = stored_event(&server, huge_id).expect("the large message event is stored");
    let message = huge["message"].as_str().unwrap_or("");
    assert!(
        !message.is_empty() && message.chars().count() <= 8192,
        "the stored message is trimmed to 8192 chars: {}",
        message.len()
    );
    for id in future_ids {
        {
            let ev = stored_event(&server, id).expect("a year-10000 event is stored (clamped)");
            let created = ev["dateCreated"].as_str().unwrap_or("");
            assert!(
                created.starts_with("20") && created.len() < 40,
                "a year-10000 timestamp is clamped: {created}"
            );
            let errors = ev["errors"].to_string();
            assert!(
                errors.contains("future_timestamp") || errors.contains("invalid"),
                "the clamp is recorded in errors: {errors}"
            );
        }
    }
    {
        let ev = stored_event(&server, dup_id).expect("the duplicate-keys event is stored");
        let platform = ev["platform"].as_str().unwrap_or("");
        assert!(
            platform == "python" || platform == "node",
            "one of the duplicate values is kept: {platform}"
        );
    }
    let tagged = stored_event(&server, tags_id).expect("the many-tags event is stored");
    let tags = tagged["tags"].as_array().cloned().unwrap_or_default();
    assert!(
        !tags.is_empty(),
        "tags are kept (normalized), not dropped wholesale"
    );
    for tag in &tags {
        let key = tag["key"].as_str().unwrap_or("");
        let value = tag["value"].as_str().unwrap_or("");
        assert!(
            key.chars().count() <= 200 && value.chars().count() <= 200,
            "tag keys and values are bounded to 200 chars: {} / {}",
            key.len(),
            value.len()
        );
    }

    // Accepted payloads the processor may refuse (invalid JSON): processing is in log order and
    // later events are stored, so one look says what became of them.
    for (case, id) in maybe_stored {
        let ev = stored_event_within(&server, id, Duration::ZERO);
        eprintln!(
            "{case}: {}",
            match &ev {
                Some(ev) => format!("stored, errors {}", ev["errors"]),
                None => "dropped by the processor".into(),
            }
        );
    }

    // The server is still healthy and its memory bounded.
    let health = common::http().get(server.url("/health")).send();
    assert!(
        matches!(&health, Ok(r) if r.status().as_u16() == 200),
        "/health after the corpus: {health:?}"
    );
    let rss = rss_kib(pid);
    eprintln!("server RSS after the corpus: {} MiB", rss / 1024);
    assert!(
        rss > 0 && rss < RSS_BOUND_KIB,
        "server RSS {rss} KiB over the {RSS_BOUND_KIB} KiB bound"
    );
}
