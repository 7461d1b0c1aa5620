//! Measures ingest alone, on this machine: the pipeline without HTTP, then the loadgen over
//! real HTTP on 127.0.0.1, both into the embedded log (RocksDB in a temporary directory).
//!
//! `cargo run -p ingest --example ingest_bench -- [EVENTS] [CONCURRENCY] [fsync|os] [errors|transactions|mixed]`

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper_util::rt::TokioIo;
use ingest::loadgen::{self, Compress, LoadgenOptions, Mix};
use ingest::{IngestConfig, IngestRequest, IngestService};
use storage::{Durability, EmbeddedLog, Log, Store, StoreOptions};

const KEY: &str = "0123456789abcdef0123456789abcdef";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let events: u64 = args
        .first()
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(50_000);
    let concurrency: usize = args.get(1).map(|s| s.parse()).transpose()?.unwrap_or(64);
    let durability = match args.get(2).map(String::as_str) {
        Some("os") => Durability::Os,
        _ => Durability::Fsync,
    };
    let mix: Mix = args
        .get(3)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(Mix::Errors);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let dir = tempfile::tempdir()?;
        let store = Store::open(
            dir.path(),
            &StoreOptions {
                durability,
                ..Default::default()
            },
        )?;
        store.bootstrap(Some(KEY), None)?;
        let log = EmbeddedLog::open(&store, Default::default())?;
        let service = Arc::new(IngestService::new(
            store.clone(),
            log.clone() as Arc<dyn Log>,
            IngestConfig::default(),
        ));
        let dsn = format!("http://{KEY}@127.0.0.1:9/1");

        // 1. The pipeline alone, `concurrency` tasks calling `ingest` directly.
        let pool = Arc::new(loadgen::envelope_pool(1, mix, &dsn, 2048));
        let start = Instant::now();
        let next = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let mut tasks = Vec::new();
        for _ in 0..concurrency {
            let (service, pool, next) = (Arc::clone(&service), Arc::clone(&pool), Arc::clone(&next));
            tasks.push(tokio::spawn(async move {
                let mut ok = 0u64;
                loop {
                    let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if n >= events {
                        break ok;
                    }
                    let mut body = pool[n as usize % pool.len()].clone();
                    loadgen::set_event_id(&mut body, uuid::Uuid::new_v4());
                    let mut headers = http::HeaderMap::new();
                    headers.insert(
                        "x-sentry-auth",
                        format!("Sentry sentry_key={KEY}, sentry_version=7").parse().expect("valid header"),
                    );
                    let resp = service
                        .ingest(IngestRequest {
                            method: http::Method::POST,
                            path: "/api/1/envelope/".into(),
                            query: None,
                            headers,
                            body: Bytes::from(body),
                            client_addr: None,
                        })
                        .await;
                    if resp.status == http::StatusCode::OK {
                        ok += 1;
                    }
                }
            }));
        }
        let mut ok = 0;
        for t in tasks {
            ok += t.await?;
        }
        let secs = start.elapsed().as_secs_f64();
        println!(
            "in-process ({durability:?}, {mix}, {concurrency} tasks): {ok}/{events} accepted in {secs:.2} s = {:.0} events/s",
            ok as f64 / secs
        );

        // 2. Over HTTP with the load generator.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let server = Arc::clone(&service);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let _ = stream.set_nodelay(true);
                let service = Arc::clone(&server);
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
        let summary = loadgen::run(LoadgenOptions {
            dsn: format!("http://{KEY}@{addr}/1"),
            events,
            concurrency,
            mix,
            duration: Some(Duration::from_secs(120)),
            compress: Compress::None,
            progress: true,
            seed: 2,
        })
        .await?;
        println!("over HTTP (same process, {durability:?}):\n{summary}");
        log.close();
        Ok::<_, Box<dyn std::error::Error>>(())
    })
}
