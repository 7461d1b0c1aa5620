//! `osprey serve --kafka BROKERS --role …`: the parts of a scale-out node (design.md §7).
//!
//! An `ingest` node produces to Kafka ([`storage::KafkaLog`]) instead of the embedded log; a
//! `processor` node runs the processor as a member of the processors' consumer group
//! ([`processor::Processor::run_kafka`]) over its own data directory; a `query` node answers
//! by fanning out to `peers` ([`query::peers::Peers`]) when it has them, else from its own
//! data directory. `serve.rs` starts
//! [`KafkaMode`] in place of the embedded log and processor thread when
//! `config.kafka.enabled()`, hands [`KafkaMode::ingest_log`] to the ingest service, and calls
//! [`KafkaMode::shutdown`] where it closes the embedded log today.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use storage::{KafkaLog, Log, Store};

use crate::config::{Config, Role};

/// The running Kafka-mode parts of this node.
pub struct KafkaMode {
    log: Option<Arc<KafkaLog>>,
    processor: std::sync::Mutex<Option<std::thread::JoinHandle<()>>>,
    stop: Arc<AtomicBool>,
    peers: Option<query::peers::Peers>,
}

impl KafkaMode {
    /// Creates the topics if missing, then starts the producer (`ingest` role) and the
    /// consumer-group processor thread with its alert delivery (`processor` role; alert
    /// links point at `public_url`).
    pub async fn start(
        config: &Config,
        store: &Store,
        public_url: String,
    ) -> anyhow::Result<KafkaMode> {
        let kafka = &config.kafka;
        kafka.validate()?;
        let ingest = config.has_role(Role::Ingest);
        let process = config.has_role(Role::Processor);
        storage::ensure_topics(kafka)
            .await
            .with_context(|| format!("preparing Kafka topics on {}", kafka.brokers))?;
        // Every node gets a producer, not only ingest nodes: MCP's `capture_event` on a
        // processor or query node must reach the processors through the topics too (the
        // embedded log is not read in Kafka mode).
        let log = Some(Arc::new(KafkaLog::new(kafka)?));
        // A query node without the processor role has no results of its own: with peers it
        // answers /api/0/ from them.
        let peers = if config.has_role(Role::Query) && !config.peers.is_empty() {
            Some(
                query::peers::Peers::new(&config.peers, Duration::from_secs(10))
                    .context("configuring the query peers")?,
            )
        } else {
            None
        };
        let stop = Arc::new(AtomicBool::new(false));
        let processor = if process {
            // Issue ids of this node start in a block no other node uses.
            let floor = store
                .claim_issue_id_floor()
                .context("claiming this node's issue-id block")?;
            tracing::debug!(floor, "issue ids start above this node's floor");
            let processor = Arc::new(processor::Processor::new(
                store.clone(),
                config.processor_config(),
            )?);
            // Each processor node alerts on the projects whose partitions it owns.
            crate::serve::start_alerting(config, store, &processor, public_url, &stop)?;
            Some(processor.spawn_kafka(kafka.clone(), Arc::clone(&stop))?)
        } else {
            None
        };
        tracing::info!(
            brokers = %kafka.brokers,
            events = %kafka.topics.events,
            transactions = %kafka.topics.transactions,
            group = %kafka.group_id,
            ingest,
            processor = process,
            "kafka mode"
        );
        Ok(KafkaMode {
            log,
            processor: std::sync::Mutex::new(processor),
            stop,
            peers,
        })
    }

    /// The log the ingest service appends to (`None` without the `ingest` role).
    pub fn ingest_log(&self) -> Option<Arc<dyn Log>> {
        self.log.as_ref().map(|l| Arc::clone(l) as Arc<dyn Log>)
    }

    /// The processor nodes this query node fans out to (`None`: answer locally).
    pub fn peers(&self) -> Option<&query::peers::Peers> {
        self.peers.as_ref()
    }

    /// Appends the Kafka producer's counters in Prometheus text format.
    pub fn render_metrics(&self, out: &mut String) {
        let Some(log) = &self.log else { return };
        let stats = log.stats();
        for (name, help, kind, value) in [
            (
                "osprey_kafka_delivered_total",
                "Records the Kafka brokers acknowledged.",
                "counter",
                stats.delivered,
            ),
            (
                "osprey_kafka_delivery_failed_total",
                "Records whose delivery failed (answered 503).",
                "counter",
                stats.failed,
            ),
            (
                "osprey_kafka_refused_total",
                "Appends refused at once because the producer queue was full.",
                "counter",
                stats.refused,
            ),
            (
                "osprey_kafka_inflight_bytes",
                "Bytes produced and not yet acknowledged.",
                "gauge",
                stats.inflight_bytes,
            ),
        ] {
            out.push_str(&format!(
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"
            ));
        }
    }

    /// Stops producing (waiting up to `grace` for acknowledgements) and lets the processor
    /// finish its batch; what it has not committed is re-read from the stored offsets.
    pub async fn shutdown(&self, grace: Duration) {
        if let Some(log) = self.log.clone() {
            let _ = tokio::task::spawn_blocking(move || log.close(grace)).await;
        }
        self.stop.store(true, Ordering::Release);
        let thread = self.processor.lock().ok().and_then(|mut t| t.take());
        if let Some(thread) = thread {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
    }
}
