//! Crash cycles (issues 2, 3, 4): while a client streams errors and transactions, the server
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
    let acked = Arc::new(Mutex::new(Vec::<(Uuid, bool)>::new()));

    let client = {
        let (url, stop, acked) = (Arc::clone(&url), Arc::clone(&stop), Arc::clone(&acked));
        std::thread::spawn(move || {
            let http = common::http_with_timeout(Duration::from_secs(5));
            for n in 0..MAX_SENDS {
                if stop.load(Ordering::Acquire) {
                    break;
                }
                let id = Uuid::new_v4();
                let transaction = n % 3 == 0;
                let target = url.lock().unwrap().clone();
                let sent = http
                    .post(&target)
                    .header(
                        "X-Sentry-Auth",
                        format!("Sentry sentry_version=7, sentry_key={key}"),
                    )
                    .body(envelope(&key, id, transaction))
                    .send();
                match sent {
                    Ok(resp) if resp.status().as_u16() == 200 => {
                        acked.lock().unwrap().push((id, transaction));
                    }
                    // Refused, or the server died mid-request: not acknowledged, so nothing is
                    // promised about it; pause briefly while the server comes back.
                    _ => std::thread::sleep(Duration::from_millis(20)),
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
    for (id, transaction) in &acked {
        let stored = if *transaction {
            stored_transactions.contains(id)
        } else {
            stored_errors.contains(id)
        };
        assert!(
            stored,
            "acknowledged event {id} (transaction: {transaction}) was lost"
        );
    }

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
}
