//! A throwaway ingest server for trying real SDKs against: serves `/api/…` on 127.0.0.1:PORT
//! into an embedded log in a temporary directory for SECONDS, then prints one line per log
//! record (item type, event id, payload size) and the ingest metrics.
//!
//! `cargo run -p ingest --example ingest_serve -- [PORT] [SECONDS] [RATE_LIMIT_ERRORS_PER_MIN]`
//! The DSN is `http://0123456789abcdef0123456789abcdef@127.0.0.1:PORT/1`.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use ingest::{IngestConfig, IngestService};
use storage::{EmbeddedLog, Log, Store, StoreOptions};

const KEY: &str = "0123456789abcdef0123456789abcdef";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let port: u16 = args.first().map(|s| s.parse()).transpose()?.unwrap_or(9000);
    let seconds: u64 = args.get(1).map(|s| s.parse()).transpose()?.unwrap_or(30);
    let error_quota: Option<u64> = args.get(2).map(|s| s.parse()).transpose()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let dir = tempfile::tempdir()?;
        let store = Store::open(dir.path(), &StoreOptions::default())?;
        store.bootstrap(Some(KEY), None)?;
        let log = EmbeddedLog::open(&store, Default::default())?;
        let mut config = IngestConfig::default();
        if let Some(quota) = error_quota {
            config.rate_limits.project.insert("error".into(), quota);
        }
        let service = Arc::new(IngestService::new(
            store.clone(),
            log.clone() as Arc<dyn Log>,
            config,
        ));
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
        println!("DSN: http://{KEY}@127.0.0.1:{port}/1");
        let server = Arc::clone(&service);
        let accept = tokio::spawn(async move {
            while let Ok((stream, peer)) = listener.accept().await {
                let service = Arc::clone(&server);
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(
                        move |mut req: http::Request<hyper::body::Incoming>| {
                            req.extensions_mut().insert(peer);
                            let service = Arc::clone(&service);
                            async move {
                                let method = req.method().clone();
                                let uri = req.uri().clone();
                                let resp = service.handle(req).await;
                                eprintln!("{method} {uri} -> {}", resp.status());
                                Ok::<_, Infallible>(resp)
                            }
                        },
                    );
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        tokio::time::sleep(Duration::from_secs(seconds)).await;
        accept.abort();
        for (offset, record) in log.reader().read(0, 10_000, 64 << 20)? {
            println!(
                "record {offset}: type={} event_id={} payload={}B item_header={} header={}",
                record.item_type,
                record
                    .event_id
                    .map(|id| id.simple().to_string())
                    .unwrap_or_default(),
                record.payload.len(),
                String::from_utf8_lossy(&record.item_header),
                String::from_utf8_lossy(&record.envelope_header)
            );
        }
        let mut metrics = String::new();
        service.render_metrics(&mut metrics);
        for line in metrics
            .lines()
            .filter(|l| !l.starts_with('#') && !l.ends_with(" 0"))
        {
            println!("{line}");
        }
        log.close();
        Ok::<_, Box<dyn std::error::Error>>(())
    })
}
