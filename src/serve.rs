//! `osprey serve`: the whole engine in one process — wiring, the HTTP listener and shutdown.
//!
//! Shutdown order (SIGTERM or SIGINT): stop accepting connections and report not-ready, let
//! in-flight requests finish (bounded by `shutdown_grace_secs`), close the log (which commits
//! what is queued), let the processor commit its last batch, flush storage.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{combinators::BoxBody, BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use storage::{EmbeddedLog, EmbeddedLogOptions, Log, Store, StoreOptions};
use tokio_util::sync::CancellationToken;

use crate::config::{Config, Role};

/// Every response body the server sends.
pub type Body = BoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>;

/// A complete body from bytes.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never: Infallible| match never {})
        .boxed()
}

fn json_response(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(full(value.to_string()))
        .expect("static response parts are valid")
}

/// The running engine's parts that requests reach.
pub struct App {
    config: Config,
    store: Store,
    log: Arc<EmbeddedLog>,
    ingest: Option<ingest::IngestService>,
    api: Option<query::api::ApiService>,
    kafka: Option<Arc<crate::kafka_mode::KafkaMode>>,
    mcp: mcp::McpHttp,
    ready: AtomicBool,
}

impl App {
    async fn route(self: Arc<Self>, req: Request<Incoming>) -> Response<Body> {
        let path = req.uri().path();
        if path == "/mcp" || path == "/mcp/" {
            // On a query node the data tools ask the peers (mcp::fanout).
            return self.mcp.handle(req).await;
        }
        if path == "/api/0" || path.starts_with("/api/0/") {
            // Metadata is on every node when it is shared through Kafka: answer it here. So
            // is a feedback submission, which this node appends to Kafka once (fanned out,
            // every processor node would store it).
            let local = (self.store.shares_metadata()
                && query::api::is_shared_metadata_request(req.method(), path))
                || query::api::is_feedback_submission(req.method(), path);
            let peers = self.kafka.as_ref().and_then(|k| k.peers());
            if let Some(peers) = peers.filter(|_| !local) {
                return peers
                    .handle(req)
                    .await
                    .map(|b| b.map_err(|e| match e {}).boxed());
            }
            return match &self.api {
                Some(api) => api
                    .handle(req)
                    .await
                    .map(|b| b.map_err(|e| match e {}).boxed()),
                None => json_response(
                    StatusCode::NOT_FOUND,
                    &serde_json::json!({"detail": "this node does not run the query role"}),
                ),
            };
        }
        if path.starts_with("/api/") && !path.starts_with("/api/0/") {
            return match &self.ingest {
                Some(ingest) => ingest
                    .handle(req)
                    .await
                    .map(|b| b.map_err(|e| match e {}).boxed()),
                None => json_response(
                    StatusCode::NOT_FOUND,
                    &serde_json::json!({"detail": "this node does not run the ingest role"}),
                ),
            };
        }
        match (req.method(), path) {
            (&Method::GET, "/health") | (&Method::GET, "/api/relay/healthcheck/live/") => {
                json_response(StatusCode::OK, &serde_json::json!({"status": "ok"}))
            }
            (&Method::GET, "/health/ready") | (&Method::GET, "/api/relay/healthcheck/ready/") => {
                if self.is_ready() {
                    json_response(StatusCode::OK, &serde_json::json!({"status": "ready"}))
                } else {
                    json_response(
                        StatusCode::SERVICE_UNAVAILABLE,
                        &serde_json::json!({"status": "not ready"}),
                    )
                }
            }
            (&Method::GET, "/metrics") => Response::builder()
                .header(http::header::CONTENT_TYPE, "text/plain; version=0.0.4")
                .body(full(self.render_metrics()))
                .expect("static response parts are valid"),
            _ => json_response(
                StatusCode::NOT_FOUND,
                &serde_json::json!({"detail": "The requested resource does not exist"}),
            ),
        }
    }

    fn is_ready(&self) -> bool {
        let budget = self.config.log.max_backlog_mib << 20;
        self.ready.load(Ordering::Acquire) && self.log.backlog_bytes() < budget
    }

    fn render_metrics(&self) -> String {
        let mut out = String::new();
        let (records, commits) = self.log.stats();
        out.push_str(
            "# HELP osprey_log_backlog_bytes Bytes accepted into the log and not yet processed.\n",
        );
        out.push_str("# TYPE osprey_log_backlog_bytes gauge\n");
        out.push_str(&format!(
            "osprey_log_backlog_bytes {}\n",
            self.log.backlog_bytes()
        ));
        out.push_str("# HELP osprey_log_records_total Records appended to the log since start.\n");
        out.push_str("# TYPE osprey_log_records_total counter\n");
        out.push_str(&format!("osprey_log_records_total {records}\n"));
        out.push_str(
            "# HELP osprey_log_commits_total Group commits (one WAL write each) since start.\n",
        );
        out.push_str("# TYPE osprey_log_commits_total counter\n");
        out.push_str(&format!("osprey_log_commits_total {commits}\n"));
        if let Ok(memory) = self.store.memory_usage() {
            for (name, help, bytes) in [
                (
                    "osprey_rocksdb_memtable_bytes",
                    "RocksDB memtables of every column family (active, immutable, pinned).",
                    memory.memtables,
                ),
                (
                    "osprey_rocksdb_block_cache_bytes",
                    "RocksDB's shared block cache in use.",
                    memory.block_cache,
                ),
                (
                    "osprey_rocksdb_table_readers_bytes",
                    "Index and filter blocks of open SST files, outside the block cache.",
                    memory.table_readers,
                ),
            ] {
                out.push_str(&format!(
                    "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {bytes}\n"
                ));
            }
        }
        if let Some(ingest) = &self.ingest {
            ingest.render_metrics(&mut out);
        }
        if let Some(kafka) = &self.kafka {
            kafka.render_metrics(&mut out);
        }
        out
    }
}

/// Runs the server until SIGTERM/SIGINT.
pub fn run(config: Config) -> anyhow::Result<()> {
    // Before any thread starts: RocksDB's freed memtables go back to the system.
    storage::limit_malloc_retention();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(config.http_worker_threads())
        .enable_all()
        .thread_name("osprey-rt")
        .build()?;
    runtime.block_on(serve(config))
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let store = Store::open(
        &config.data,
        &StoreOptions {
            retention_days: config.retention_days,
            durability: config.durability,
            ..Default::default()
        },
    )
    .with_context(|| format!("opening data directory {}", config.data.display()))?;
    // Kafka mode: read the shared metadata (projects, keys, tokens, rules) before anything
    // is served or bootstrapped, so a node never answers with a stale view of it.
    let meta_follower = if config.kafka.enabled() {
        Some(
            storage::meta_topic::MetaFollower::start(&config.kafka, &store)
                .await
                .with_context(|| {
                    format!(
                        "following the metadata topic {} on {}",
                        config.kafka.topics.meta, config.kafka.brokers
                    )
                })?,
        )
    } else {
        None
    };
    let boot = store.bootstrap(config.default_key.as_deref(), config.admin_token.as_deref())?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    let local: SocketAddr = listener.local_addr()?;
    let base = config.public_url(local);
    let (scheme, host) = base.split_once("://").unwrap_or(("http", base.as_str()));
    // Printed on stdout so scripts and tests can read the DSN.
    println!("DSN: {scheme}://{}@{host}/1", boot.dsn_public_key);
    if let Some(token) = &boot.generated_admin_token {
        println!("Admin token (shown once): {token}");
    }
    println!("Listening on http://{local}");

    let log = EmbeddedLog::open(
        &store,
        EmbeddedLogOptions {
            max_inflight_bytes: config.log.max_inflight_mib << 20,
            max_backlog_bytes: config.log.max_backlog_mib << 20,
            ..Default::default()
        },
    )?;
    let kafka = if config.kafka.enabled() {
        Some(Arc::new(
            crate::kafka_mode::KafkaMode::start(&config, &store, config.public_url(local)).await?,
        ))
    } else {
        None
    };
    let ingest_log = kafka
        .as_ref()
        .and_then(|k| k.ingest_log())
        .unwrap_or_else(|| Arc::clone(&log) as Arc<dyn Log>);
    let ingest = config.has_role(Role::Ingest).then(|| {
        ingest::IngestService::new(
            store.clone(),
            Arc::clone(&ingest_log),
            config.ingest.clone(),
        )
    });
    // A processor node serves the query API over its own results: query nodes fan out to it.
    let api = (config.has_role(Role::Query) || config.has_role(Role::Processor)).then(|| {
        query::api::ApiService::with_feedback_log(
            query::QueryService::new(store.clone()),
            query::api::ApiConfig {
                public_url: config.public_url.clone(),
                body_read_timeout: (config.ingest.body_read_timeout_secs > 0)
                    .then(|| Duration::from_secs(config.ingest.body_read_timeout_secs)),
                ..Default::default()
            },
            // In Kafka mode feedback posted to the API goes through the topics to the node
            // that owns the project; embedded, the one store is the right place.
            kafka.as_ref().map(|_| Arc::clone(&ingest_log)),
        )
    });
    let shutdown = CancellationToken::new();
    let mcp = mcp::McpHttp::new(
        query::QueryService::new(store.clone()),
        // capture_event goes through the same log as SDK events (Kafka's in Kafka mode).
        Some(Arc::clone(&ingest_log)),
        mcp::HttpConfig {
            allowed_hosts: mcp::HttpConfig::default_allowed_hosts(
                local,
                config.public_url.as_deref(),
            ),
            shutdown: shutdown.clone(),
            // A query node's store holds metadata but no events: its data tools ask the
            // processor nodes, like its /api/0/.
            peers: kafka
                .as_ref()
                .and_then(|k| k.peers())
                .map(|p| mcp::McpPeers::new(p.clone())),
            ..Default::default()
        },
    );
    let app = Arc::new(App {
        mcp,
        config: config.clone(),
        store: store.clone(),
        log: Arc::clone(&log),
        ingest,
        api,
        kafka: kafka.clone(),
        ready: AtomicBool::new(true),
    });

    let stop_processor = Arc::new(AtomicBool::new(false));
    let processor_thread = if config.has_role(Role::Processor) && kafka.is_none() {
        let processor = Arc::new(processor::Processor::new(
            store.clone(),
            config.processor_config(),
        )?);
        start_alerting(
            &config,
            &store,
            &processor,
            config.public_url(local),
            &stop_processor,
        )?;
        Some(processor.spawn_embedded(Arc::clone(&log), Arc::clone(&stop_processor))?)
    } else {
        None
    };

    tokio::spawn(wait_for_signal(shutdown.clone()));
    accept_loop(
        listener,
        Arc::clone(&app),
        shutdown.clone(),
        config.shutdown_grace_secs,
        config.header_read_timeout_secs,
    )
    .await;

    app.ready.store(false, Ordering::Release);
    if let Some(kafka) = kafka {
        kafka
            .shutdown(Duration::from_secs(config.shutdown_grace_secs))
            .await;
    }
    log.close();
    if let Some(follower) = meta_follower {
        let _ = tokio::task::spawn_blocking(move || follower.shutdown()).await;
    }
    stop_processor.store(true, Ordering::Release);
    if let Some(thread) = processor_thread {
        // The processor commits whole batches; what it has not read yet stays in the log.
        let _ = tokio::task::spawn_blocking(move || thread.join()).await;
    }
    app.store.flush()?;
    tracing::info!("shutdown complete");
    Ok(())
}

/// Alerts of a processor: one bounded, retrying webhook queue for issue and metric alerts,
/// so a slow or dead receiver never holds up processing, and the metric-alert evaluator.
pub(crate) fn start_alerting(
    config: &Config,
    store: &Store,
    processor: &processor::Processor,
    public_url: String,
    stop: &Arc<AtomicBool>,
) -> anyhow::Result<()> {
    let webhooks = processor::webhook::WebhookQueue::new(config.alerts.webhook_config()?);
    webhooks.spawn(Arc::clone(stop))?;
    processor.alerts().set_delivery(Arc::clone(&webhooks));
    processor.alerts().set_base_url(&public_url);
    processor::metric_alerts::spawn(
        store.clone(),
        Some(webhooks),
        public_url,
        Duration::from_secs(5),
        Arc::clone(stop),
    )?;
    Ok(())
}

async fn wait_for_signal(shutdown: CancellationToken) {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot listen for SIGTERM");
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: shutting down"),
    }
    shutdown.cancel();
}

async fn accept_loop(
    listener: tokio::net::TcpListener,
    app: Arc<App>,
    shutdown: CancellationToken,
    grace_secs: u64,
    header_timeout_secs: u64,
) {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // A client that never finishes its request head must not hold a connection forever
    // (slowloris); bodies have their own read timeouts in ingest and the API.
    if header_timeout_secs > 0 {
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(Duration::from_secs(header_timeout_secs));
    }
    loop {
        let (stream, _peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.cancelled() => break,
        };
        let _ = stream.set_nodelay(true);
        let peer = stream.peer_addr().ok();
        let app = Arc::clone(&app);
        let service = hyper::service::service_fn(move |mut req: Request<Incoming>| {
            if let Some(peer) = peer {
                req.extensions_mut().insert(peer);
            }
            let app = Arc::clone(&app);
            async move { Ok::<_, Infallible>(app.route(req).await) }
        });
        let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
        let conn = graceful.watch(conn.into_owned());
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => tracing::info!("all connections drained"),
        _ = tokio::time::sleep(Duration::from_secs(grace_secs)) => {
            tracing::warn!("grace period over, closing remaining connections");
        }
    }
}
