//! Crash cycles (issues 2, 3, 4): while a client streams errors, transactions and span items
//! (span v2 containers, as `@sentry/node` sends by default), the server
//! is killed with SIGKILL and started again on the same data directory, several times. At
//! the end every event answered 200 is stored, and issue counts and transaction histograms
//! count each stored event exactly once (no loss from the kills, no double count from the
//! replays of the log).

mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{OspreyServer, ServerOptions};
use query::perf::{PerfQuery, TimeRange};
use query::QueryService;
use uuid::Uuid;

/// Kill/restart cycles (issue 2 asks for 5).
const CYCLES: usize = 5;
/// Upper bound on envelopes the client sends, whatever happens.
const MAX_SENDS: usize = 200_000;

/// What the client sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Error,
    Transaction,
    /// A span v2 container with a segment span and a child, as `@sentry/node` streams by
    /// default: stored as a transaction under an id derived from its trace and span ids.
    Spans,
}

/// A span v2 item: its envelope has no event id; the stored transaction's id is derived.
fn span_envelope(key: &str, trace: Uuid) -> (Uuid, Vec<u8>) {
    let now = storage::now_ms() as f64 / 1000.0;
    let trace = trace.simple().to_string();
    let segment = "0123456789abcdef";
    let payload = serde_json::json!({"version": 2, "items": [
        {"trace_id": trace, "span_id": "fedcba9876543210", "parent_span_id": segment,
         "name": "SELECT 1", "start_timestamp": now - 0.1, "end_timestamp": now - 0.05,
         "is_segment": false, "status": "ok",
         "attributes": {"sentry.op": {"type": "string", "value": "db"}}},
        {"trace_id": trace, "span_id": segment, "name": "GET /crash-spans",
         "start_timestamp": now - 0.120, "end_timestamp": now, "is_segment": true, "status": "ok",
         "attributes": {"sentry.op": {"type": "string", "value": "http.server"}}}
    ]})
    .to_string();
    let id = processor::spans::segment_event_id(&trace, segment);
    let body = format!(
        "{{\"dsn\":\"http://{key}@127.0.0.1/1\"}}\n{{\"type\":\"span\",\"item_count\":2,\"content_type\":\"application/vnd.sentry.items.span.v2+json\",\"length\":{}}}\n{payload}\n",
        payload.len()
    );
    (id, body.into_bytes())
}

fn envelope(key: &str, id: Uuid, transaction: bool) -> Vec<u8> {
    let now = storage::now_ms() as f64 / 1000.0;
    let (item_type, payload) = if transaction {
        let trace = Uuid::new_v4().simple().to_string();
        (
            "transaction",
            serde_json::json!({
                "event_id": id.simple().to_string(),
                "type": "transaction",
                "transaction": "GET /crash",
                "start_timestamp": now - 0.120,
                "timestamp": now,
                "contexts": {"trace": {"trace_id": trace, "span_id": "0123456789abcdef", "op": "http.server", "status": "ok"}},
                "spans": [],
            }),
        )
    } else {
        (
            "event",
            serde_json::json!({
                "event_id": id.simple().to_string(),
                "timestamp": now,
                "platform": "python",
                "level": "error",
                "exception": {"values": [{"type": "CrashTestError", "value": format!("cycle item {id}"),
                    "stacktrace": {"frames": [{"module": "crash", "function": "stream", "filename": "crash.py", "lineno": 7, "in_app": true}]}}]},
            }),
        )
    };
    let payload = payload.to_string();
    format!(
        "{{\"event_id\":\"{}\",\"dsn\":\"http://{key}@127.0.0.1/1\"}}\n{{\"type\":\"{item_type}\",\"length\":{}}}\n{payload}\n",
        id.simple(),
        payload.len()
    )
    .into_bytes()
}

#[test]
fn sigkill_cycles_lose_no_acknowledged_event_and_count_each_once() {
    let mut server = OspreyServer::start(ServerOptions::default());
    let key = server.default_key().to_owned();
    let url = Arc::new(Mutex::new(server.url("/api/1/envelope/")));
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(Mutex::new(Vec::<(Uuid, Kind)>::new()));
    // Envelopes without a 200 (the server died under them): resent once it is up for good.
    let unacked = Arc::new(Mutex::new(Vec::<(Uuid, Kind, Vec<u8>)>::new()));

    let client = {
        let (url, stop, acked, unacked) = (
            Arc::clone(&url),
            Arc::clone(&stop),
            Arc::clone(&acked),
            Arc::clone(&unacked),
        );
        let key = key.clone();
        std::thread::spawn(move || {
            let http = common::http_with_timeout(Duration::from_secs(5));
            for n in 0..MAX_SENDS {
                if stop.load(Ordering::Acquire) {
                    break;
                }
                let kind = match n % 4 {
                    0 => Kind::Transaction,
                    1 => Kind::Spans,
                    _ => Kind::Error,
                };
                let (id, body) = match kind {
                    Kind::Spans => span_envelope(&key, Uuid::new_v4()),
                    _ => {
                        let id = Uuid::new_v4();
                        (id, envelope(&key, id, kind == Kind::Transaction))
                    }
                };
                let target = url.lock().unwrap().clone();
                let sent = http
                    .post(&target)
                    .header(
                        "X-Sentry-Auth",
                        format!("Sentry sentry_version=7, sentry_key={key}"),
                    )
                    .body(body.clone())
                    .send();
                match sent {
                    Ok(resp) if resp.status().as_u16() == 200 => {
                        acked.lock().unwrap().push((id, kind));
                    }
                    // Refused, or the server died mid-request: not acknowledged, so nothing is
                    // promised about it yet; pause briefly while the server comes back.
                    _ => {
                        unacked.lock().unwrap().push((id, kind, body));
                        std::thread::sleep(Duration::from_millis(20));
                    }
                }
            }
        })
    };

    for cycle in 0..CYCLES {
        std::thread::sleep(Duration::from_millis(400 + 150 * cycle as u64));
        server.kill_9();
        server.start_again();
        *url.lock().unwrap() = server.url("/api/1/envelope/");
    }
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Release);
    client.join().expect("client thread");
    // Resend what was not acknowledged, as a retrying client would: whatever of it the server
    // had already logged before a kill must now be deduplicated, so that in the end every
    // sent event is acknowledged and stored and counted exactly once.
    let http = common::http_with_timeout(Duration::from_secs(10));
    let resend = std::mem::take(&mut *unacked.lock().unwrap());
    for (id, kind, body) in resend {
        let mut ok = false;
        for _ in 0..20 {
            let sent = http
                .post(server.url("/api/1/envelope/"))
                .header(
                    "X-Sentry-Auth",
                    format!("Sentry sentry_version=7, sentry_key={key}"),
                )
                .body(body.clone())
                .send();
            if matches!(sent, Ok(ref r) if r.status().as_u16() == 200) {
                ok = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        assert!(ok, "resending {id} ({kind:?}) never got a 200");
        acked.lock().unwrap().push((id, kind));
    }
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() > 100,
        "too few events acknowledged to prove anything: {}",
        acked.len()
    );

    // Let the processor drain the log (bounded), then stop cleanly.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let metrics = common::http()
            .get(server.url("/metrics"))
            .send()
            .and_then(|r| r.text())
            .unwrap_or_default();
        let drained = metrics
            .lines()
            .any(|l| l.trim() == "osprey_log_backlog_bytes 0");
        if drained {
            break;
        }
        assert!(Instant::now() < deadline, "log never drained:\n{metrics}");
        std::thread::sleep(Duration::from_millis(200));
    }
    server.stop();

    let store = storage::Store::open_secondary(server.data_dir()).expect("open data dir");
    let mut stored_errors = HashSet::new();
    let mut stored_transactions = HashSet::new();
    for item in store
        .db()
        .iterator_cf(&store.cf(storage::cf::EVENTS), rocksdb::IteratorMode::Start)
    {
        let (_, value) = item.expect("read events");
        let event = storage::records::decode_event(&value).expect("decode stored event");
        let id = Uuid::parse_str(&event.event_id).expect("stored event id");
        if event.issue_id.is_some() {
            stored_errors.insert(id);
        } else {
            stored_transactions.insert(id);
        }
    }
    for (id, kind) in &acked {
        let stored = if *kind == Kind::Error {
            stored_errors.contains(id)
        } else {
            stored_transactions.contains(id)
        };
        assert!(stored, "acknowledged event {id} ({kind:?}) was lost");
    }
    let acked_transactions = acked.iter().filter(|(_, k)| *k != Kind::Error).count();
    // Everything sent was acknowledged in the end, so nothing else may be stored.
    assert_eq!(
        stored_transactions.len(),
        acked_transactions,
        "stored transactions must be exactly the acknowledged ones"
    );
    assert_eq!(
        stored_errors.len(),
        acked.len() - acked_transactions,
        "stored errors must be exactly the acknowledged ones"
    );
    assert!(
        acked.iter().any(|(_, k)| *k == Kind::Spans),
        "no span item was acknowledged"
    );

    let qs = QueryService::new(store);
    let page = qs
        .issues(&query::issues::IssueQuery {
            limit: 100,
            query: String::new(),
            ..Default::default()
        })
        .expect("list issues");
    let times_seen: u64 = page
        .issues
        .iter()
        .map(|i| i.count.parse::<u64>().expect("numeric count"))
        .sum();
    assert_eq!(
        times_seen,
        stored_errors.len() as u64,
        "issue counts must equal the distinct stored error events"
    );
    let perf = qs
        .perf(&PerfQuery {
            project_id: 1,
            range: TimeRange::Last { ms: 86_400_000 },
            environment: None,
            release: None,
            transaction: None,
            group_by: None,
            sort: Default::default(),
            ascending: false,
            limit: 0,
            interval_ms: None,
        })
        .expect("perf query");
    assert_eq!(
        perf.total.count,
        stored_transactions.len() as u64,
        "histograms must count each stored transaction once"
    );
    assert_eq!(
        perf.total.count, acked_transactions as u64,
        "perf count must equal the acknowledged transactions and span segments"
    );
    let spans_count = qs
        .perf(&PerfQuery {
            project_id: 1,
            range: TimeRange::Last { ms: 86_400_000 },
            transaction: Some("GET /crash-spans".into()),
            ..PerfQuery::default()
        })
        .expect("perf query")
        .total
        .count;
    let acked_spans = acked.iter().filter(|(_, k)| *k == Kind::Spans).count() as u64;
    assert_eq!(spans_count, acked_spans, "span segments counted once each");
}
