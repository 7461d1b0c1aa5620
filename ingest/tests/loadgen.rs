//! The load generator against a real hyper server (127.0.0.1, ephemeral port) running the
//! ingest service over an in-memory log: every envelope arrives, parses, and is counted.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use ingest::loadgen::{self, Compress, LoadgenOptions, Mix};
use ingest::{IngestConfig, IngestService, StaticProjects};
use parking_lot::Mutex;
use storage::{AppendTicket, Log, LogRecord, StorageError};

const KEY: &str = "0123456789abcdef0123456789abcdef";

#[derive(Default)]
struct MemLog {
    records: Mutex<Vec<LogRecord>>,
}

impl Log for MemLog {
    fn append(&self, records: Vec<LogRecord>) -> Result<AppendTicket, StorageError> {
        let mut all = self.records.lock();
        all.extend(records);
        Ok(AppendTicket::ready(Ok(all.len() as u64)))
    }
    fn backlog_bytes(&self) -> u64 {
        0
    }
}

async fn serve(service: Arc<IngestService>) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                break;
            };
            let service = Arc::clone(&service);
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req| {
                    let service = Arc::clone(&service);
                    async move { Ok::<_, Infallible>(service.handle(req).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

async fn run_mix(mix: Mix, compress: Compress, events: u64) {
    let log = Arc::new(MemLog::default());
    let service = Arc::new(IngestService::new(
        StaticProjects::default().with(1, 1, KEY),
        log.clone() as Arc<dyn Log>,
        IngestConfig::default(),
    ));
    let addr = serve(Arc::clone(&service)).await;
    let summary = tokio::time::timeout(
        Duration::from_secs(60),
        loadgen::run(LoadgenOptions {
            dsn: format!("http://{KEY}@{addr}/1"),
            events,
            concurrency: 4,
            mix,
            duration: Some(Duration::from_secs(50)),
            compress,
            progress: false,
            seed: 7,
        }),
    )
    .await
    .expect("loadgen finished in time")
    .expect("loadgen ran");
    assert_eq!(summary.sent, events, "{summary}");
    assert_eq!(summary.accepted, events, "{summary}");
    assert_eq!(summary.status_counts.get(&200), Some(&events));
    assert_eq!(summary.transport_errors, 0);
    assert!(summary.p99 >= summary.p50);
    assert!(summary.to_string().contains("events/s"));

    let records = log.records.lock();
    assert_eq!(records.len() as u64, events);
    let ids: std::collections::HashSet<_> = records.iter().map(|r| r.event_id.unwrap()).collect();
    assert_eq!(
        ids.len() as u64,
        events,
        "every request carries a fresh event id"
    );
    for r in records.iter() {
        let v: serde_json::Value = serde_json::from_slice(&r.payload).expect("payload is JSON");
        match r.item_type.as_str() {
            "event" => assert!(v["exception"]["values"][0]["stacktrace"]["frames"].is_array()),
            "transaction" => assert!(v["spans"].is_array()),
            other => panic!("unexpected item type {other}"),
        }
    }
    if mix == Mix::Mixed {
        assert!(records.iter().any(|r| r.item_type == "event"));
        assert!(records.iter().any(|r| r.item_type == "transaction"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loadgen_delivers_every_envelope() {
    run_mix(Mix::Errors, Compress::None, 300).await;
    run_mix(Mix::Mixed, Compress::Gzip, 200).await;
    run_mix(Mix::Transactions, Compress::Zstd, 100).await;
}

#[tokio::test]
async fn loadgen_reports_a_refused_connection() {
    // Bind and drop to get a port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let err = loadgen::run(LoadgenOptions {
        dsn: format!("http://{KEY}@127.0.0.1:{port}/1"),
        events: 10,
        progress: false,
        ..Default::default()
    })
    .await
    .unwrap_err();
    assert!(err.to_string().contains("cannot connect"), "{err}");
}
