//! Kafka mode of the log (design.md §1–§3, §7): [`KafkaLog`] is the ingest side of
//! [`Log`] on an rdkafka producer, [`KafkaConsumer`] the processor side in one consumer group.
//!
//! **Producer.** Idempotent, `acks=all`. [`Log::append`] only enqueues: it never blocks, and an
//! append's [`AppendTicket`] resolves once every record of the envelope has its delivery
//! report, so ingest answers 200 only for what the brokers acknowledged. Memory is bounded
//! by our own in-flight byte budget (checked before anything is enqueued, so an envelope is
//! refused whole) and by librdkafka's queue limits; either being full is
//! [`StorageError::Backpressure`] (503 + Retry-After), never an unbounded buffer. A record
//! whose delivery fails (broker down past the delivery timeout) resolves its ticket with
//! backpressure too: the SDK retries later, and event-id dedup makes a resend harmless.
//! Records go to the transactions topic when their item type is `transaction`, to the
//! events topic otherwise, keyed by project id (decimal), so one project's records stay on
//! one partition and therefore on one processor. The value is [`LogRecord::encode`]: project,
//! key id, received time, client address, envelope header (with `sdk`), item header, payload.
//!
//! **Consumer.** Offsets live in the processor's own RocksDB, written in the same write batch
//! as the results ([`KafkaBatch::add_to_write_batch`]), and are then committed to the group
//! synchronously, before the next poll ([`KafkaConsumer::commit_offsets`]). On every
//! (re)assignment the consumer seeks each partition to the later of the two (the beginning
//! when neither exists). Each node's store therefore holds the results of the offset ranges
//! it processed, and the ranges of all nodes tile the partition without overlap: a partition
//! that moves to another live node continues there at the exact offset where this node's
//! results end, and this node keeps (and serves, through query fan-out) what it processed.
//! The one gap in that tiling: a node killed between its local commit and the group commit
//! leaves its last batch counted locally and re-read by the next owner (at most one batch,
//! a window of one commit round trip); dedup by event id absorbs it only when the same node
//! re-reads it. A message that does not decode is not a crash loop: it is counted
//! as an `invalid` outcome with reason `kafka_decode` in the same write batch and skipped.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use crate::db::{encode_i64, now_ms, Store};
use crate::error::{Result, StorageError};
use crate::log::{AppendTicket, Log, LogRecord};
use crate::{cf, keys, WriteBatch};

/// Relay's outcome id for `invalid` (also `processor::pipeline::outcome::INVALID`).
const OUTCOME_INVALID: u8 = 3;
/// Relay's data category `default`: an undecodable message has no known category.
const CATEGORY_DEFAULT: u8 = 0;
/// The outcome reason of a message on an ingest topic that is not a log record.
pub const KAFKA_DECODE_REASON: &str = "kafka_decode";

/// Topic names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KafkaTopics {
    /// Errors, messages and every item type that is not a transaction.
    pub events: String,
    /// Transactions.
    pub transactions: String,
    /// Shared metadata (projects, keys, tokens, alert rules): compacted, one partition.
    pub meta: String,
}

impl Default for KafkaTopics {
    fn default() -> Self {
        KafkaTopics {
            events: "ingest-events".into(),
            transactions: "ingest-transactions".into(),
            meta: "osprey-meta".into(),
        }
    }
}

/// The `[kafka]` configuration section. Kafka mode is on when `brokers` is not empty.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KafkaConfig {
    /// Bootstrap servers, `host:port,host:port`.
    pub brokers: String,
    /// Topic names.
    pub topics: KafkaTopics,
    /// Partitions of each topic when osprey creates it (the most processors that can share
    /// the work; existing topics are left as they are).
    pub partitions: i32,
    /// Replication factor of created topics; `-1` = the brokers' `default.replication.factor`.
    pub replication_factor: i32,
    /// Consumer group of the processors.
    pub group_id: String,
    /// How long the producer keeps retrying a record before its ticket fails (ms).
    pub delivery_timeout_ms: u64,
    /// Bytes (MiB) of records enqueued and not yet acknowledged before appends get 503.
    pub max_inflight_mib: u64,
    /// Records enqueued and not yet acknowledged before appends get 503.
    pub max_inflight_messages: u64,
    /// Retry-After given with a 503.
    pub retry_after_secs: u64,
    /// Consumer session timeout (ms): how soon a dead processor's partitions move.
    pub session_timeout_ms: u64,
    /// Largest record (bytes); also the created topics' `max.message.bytes`.
    pub max_message_bytes: u64,
    /// Extra librdkafka properties for every client (security, SASL, …).
    pub properties: BTreeMap<String, String>,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            brokers: String::new(),
            topics: KafkaTopics::default(),
            partitions: 8,
            replication_factor: -1,
            group_id: "osprey-processors".into(),
            delivery_timeout_ms: 30_000,
            max_inflight_mib: 64,
            max_inflight_messages: 100_000,
            retry_after_secs: 5,
            session_timeout_ms: 10_000,
            max_message_bytes: 16 << 20,
            properties: BTreeMap::new(),
        }
    }
}

impl KafkaConfig {
    /// Whether Kafka mode is configured.
    pub fn enabled(&self) -> bool {
        !self.brokers.trim().is_empty()
    }

    /// Checks the values a broker would otherwise reject late and obscurely.
    pub fn validate(&self) -> Result<()> {
        let bad = |detail: String| Err(StorageError::Kafka(detail));
        if !self.enabled() {
            return bad("kafka.brokers is empty".into());
        }
        for topic in [
            &self.topics.events,
            &self.topics.transactions,
            &self.topics.meta,
        ] {
            let legal = !topic.is_empty()
                && topic.len() <= 249
                && topic
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
            if !legal {
                return bad(format!(
                    "kafka topic name {topic:?} is not legal (1-249 of [a-zA-Z0-9._-])"
                ));
            }
        }
        if self.topics.events == self.topics.transactions
            || self.topics.meta == self.topics.events
            || self.topics.meta == self.topics.transactions
        {
            return bad("kafka.topics.events, transactions and meta must all differ".into());
        }
        if self.partitions < 1 {
            return bad("kafka.partitions must be at least 1".into());
        }
        if self.group_id.is_empty() {
            return bad("kafka.group_id is empty".into());
        }
        if self.max_inflight_mib == 0 || self.max_inflight_messages == 0 {
            return bad("kafka.max_inflight_mib and max_inflight_messages must be positive".into());
        }
        Ok(())
    }

    pub(crate) fn client_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.brokers);
        for (key, value) in &self.properties {
            config.set(key, value);
        }
        config
    }

    /// The topic a record of `item_type` goes to.
    pub fn topic_for(&self, item_type: &str) -> &str {
        if item_type == "transaction" {
            &self.topics.transactions
        } else {
            &self.topics.events
        }
    }
}

fn kafka_err(context: &str, e: KafkaError) -> StorageError {
    StorageError::Kafka(format!("{context}: {e}"))
}

/// Creates the ingest topics if they are missing (an existing topic is left as it is).
pub async fn ensure_topics(config: &KafkaConfig) -> Result<()> {
    config.validate()?;
    let max_message = config.max_message_bytes.to_string();
    let topics: Vec<NewTopic<'_>> = [&config.topics.events, &config.topics.transactions]
        .into_iter()
        .map(|name| {
            NewTopic::new(
                name,
                config.partitions,
                TopicReplication::Fixed(config.replication_factor),
            )
            .set("max.message.bytes", &max_message)
        })
        .collect();
    create_topics(config, &topics, "topics").await
}

/// Creates `topics` unless they exist (`what` names them in errors). Bounded: the brokers get
/// 30 s for the operation and the call gives up after 60 s.
pub(crate) async fn create_topics(
    config: &KafkaConfig,
    topics: &[NewTopic<'_>],
    what: &str,
) -> Result<()> {
    let admin: AdminClient<DefaultClientContext> = config
        .client_config()
        .create()
        .map_err(|e| kafka_err("creating the admin client", e))?;
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let results = tokio::time::timeout(
        Duration::from_secs(60),
        admin.create_topics(topics, &options),
    )
    .await
    .map_err(|_| StorageError::Kafka(format!("creating {what}: no answer within 60 s")))?
    .map_err(|e| kafka_err(&format!("creating {what}"), e))?;
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => {
                return Err(StorageError::Kafka(format!(
                    "creating topic {name}: {code}"
                )))
            }
        }
    }
    Ok(())
}

/// One envelope's records waiting for their delivery reports.
struct EnvelopeWaiter {
    remaining: AtomicUsize,
    last_offset: AtomicU64,
    failure: Mutex<Option<String>>,
    reply: Mutex<Option<oneshot::Sender<Result<u64>>>>,
    retry_after_secs: u64,
}

impl EnvelopeWaiter {
    /// Marks `n` records as done; the last one answers the ticket.
    fn done(&self, n: usize) {
        if self.remaining.fetch_sub(n, Ordering::AcqRel) != n {
            return;
        }
        let Some(reply) = self.reply.lock().take() else {
            return;
        };
        let result = match self.failure.lock().take() {
            // Not delivered within the budget (broker down, partition leaderless): the SDK is
            // told to come back later; what was delivered is deduplicated on the resend.
            Some(detail) => {
                tracing::warn!(%detail, "kafka delivery failed; answering 503");
                Err(StorageError::Backpressure {
                    retry_after_secs: self.retry_after_secs,
                })
            }
            None => Ok(self.last_offset.load(Ordering::Acquire)),
        };
        let _ = reply.send(result);
    }

    fn fail(&self, detail: String) {
        let mut failure = self.failure.lock();
        if failure.is_none() {
            *failure = Some(detail);
        }
    }
}

/// The per-message delivery opaque.
struct InFlight {
    envelope: Arc<EnvelopeWaiter>,
    bytes: u64,
}

#[derive(Default)]
struct ProducerStats {
    inflight_bytes: AtomicU64,
    delivered: AtomicU64,
    failed: AtomicU64,
    refused: AtomicU64,
}

struct ProduceContext {
    stats: Arc<ProducerStats>,
}

impl ClientContext for ProduceContext {
    fn error(&self, error: KafkaError, reason: &str) {
        // Broker-down transport errors repeat every few seconds; warn is enough, the
        // delivery reports carry the consequences.
        tracing::warn!(error = %error, reason, "kafka producer");
    }
}

impl ProducerContext for ProduceContext {
    type DeliveryOpaque = Box<InFlight>;

    fn delivery(&self, result: &DeliveryResult<'_>, opaque: Box<InFlight>) {
        self.stats
            .inflight_bytes
            .fetch_sub(opaque.bytes, Ordering::AcqRel);
        match result {
            Ok(message) => {
                self.stats.delivered.fetch_add(1, Ordering::Relaxed);
                let offset = message.offset().max(0) as u64;
                opaque
                    .envelope
                    .last_offset
                    .fetch_max(offset, Ordering::AcqRel);
            }
            Err((e, _)) => {
                self.stats.failed.fetch_add(1, Ordering::Relaxed);
                opaque.envelope.fail(e.to_string());
            }
        }
        opaque.envelope.done(1);
    }
}

/// Counters of a [`KafkaLog`] (for `/metrics`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KafkaLogStats {
    /// Records the brokers acknowledged.
    pub delivered: u64,
    /// Records whose delivery failed (their envelopes were answered 503).
    pub failed: u64,
    /// Appends refused at once (budget or librdkafka queue full).
    pub refused: u64,
    /// Bytes enqueued and not yet acknowledged.
    pub inflight_bytes: u64,
}

/// The ingest side of Kafka mode: an idempotent producer behind the [`Log`] trait.
pub struct KafkaLog {
    producer: ThreadedProducer<ProduceContext>,
    stats: Arc<ProducerStats>,
    config: KafkaConfig,
    max_inflight_bytes: u64,
    closed: AtomicBool,
}

impl KafkaLog {
    /// Creates the producer (connecting happens in the background; topics must exist or the
    /// brokers must create them: see [`ensure_topics`]).
    pub fn new(config: &KafkaConfig) -> Result<KafkaLog> {
        config.validate()?;
        let stats = Arc::new(ProducerStats::default());
        let max_inflight_bytes = config.max_inflight_mib << 20;
        let mut client = config.client_config();
        client
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("compression.type", "lz4")
            .set("linger.ms", "5")
            .set("message.timeout.ms", config.delivery_timeout_ms.to_string())
            // librdkafka's own queue is a backstop above our byte budget, so a refusal
            // normally comes from the budget, before any record of the envelope is queued.
            .set(
                "queue.buffering.max.kbytes",
                ((max_inflight_bytes >> 10) + (max_inflight_bytes >> 12) + 1024).to_string(),
            )
            .set(
                "queue.buffering.max.messages",
                config.max_inflight_messages.to_string(),
            )
            .set(
                "message.max.bytes",
                (config.max_message_bytes + 64 * 1024).to_string(),
            );
        let producer: ThreadedProducer<ProduceContext> = client
            .create_with_context(ProduceContext {
                stats: Arc::clone(&stats),
            })
            .map_err(|e| kafka_err("creating the producer", e))?;
        Ok(KafkaLog {
            producer,
            stats,
            config: config.clone(),
            max_inflight_bytes,
            closed: AtomicBool::new(false),
        })
    }

    /// Counters since start.
    pub fn stats(&self) -> KafkaLogStats {
        KafkaLogStats {
            delivered: self.stats.delivered.load(Ordering::Relaxed),
            failed: self.stats.failed.load(Ordering::Relaxed),
            refused: self.stats.refused.load(Ordering::Relaxed),
            inflight_bytes: self.stats.inflight_bytes.load(Ordering::Relaxed),
        }
    }

    /// Stops accepting appends and waits up to `timeout` for enqueued records to be
    /// acknowledged (their tickets resolve either way: delivered, or failed at shutdown).
    pub fn close(&self, timeout: Duration) {
        self.closed.store(true, Ordering::Release);
        if let Err(e) = self.producer.flush(timeout) {
            tracing::warn!(error = %e, "kafka producer: records still unacknowledged at close");
        }
    }

    fn backpressure(&self) -> StorageError {
        self.stats.refused.fetch_add(1, Ordering::Relaxed);
        StorageError::Backpressure {
            retry_after_secs: self.config.retry_after_secs,
        }
    }
}

impl Log for KafkaLog {
    fn append(&self, records: Vec<LogRecord>) -> Result<AppendTicket> {
        if self.closed.load(Ordering::Acquire) {
            return Err(StorageError::Closed);
        }
        if records.is_empty() {
            return Ok(AppendTicket::ready(Ok(0)));
        }
        let sizes: Vec<u64> = records.iter().map(|r| r.encoded_len() as u64).collect();
        if let Some(big) = sizes.iter().find(|&&s| s > self.config.max_message_bytes) {
            return Err(StorageError::Kafka(format!(
                "record of {big} bytes is over kafka.max_message_bytes ({})",
                self.config.max_message_bytes
            )));
        }
        let total: u64 = sizes.iter().sum();
        let reserved =
            self.stats
                .inflight_bytes
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |cur| {
                    (cur + total <= self.max_inflight_bytes).then_some(cur + total)
                });
        if reserved.is_err() {
            return Err(self.backpressure());
        }
        let (reply, ticket) = AppendTicket::channel();
        let envelope = Arc::new(EnvelopeWaiter {
            remaining: AtomicUsize::new(records.len()),
            last_offset: AtomicU64::new(0),
            failure: Mutex::new(None),
            reply: Mutex::new(Some(reply)),
            retry_after_secs: self.config.retry_after_secs,
        });
        let count = records.len();
        let mut value = Vec::new();
        for (i, (record, bytes)) in records.iter().zip(&sizes).enumerate() {
            value.clear();
            record.encode(&mut value);
            let key = record.project_id.to_string();
            let opaque = Box::new(InFlight {
                envelope: Arc::clone(&envelope),
                bytes: *bytes,
            });
            let message =
                BaseRecord::with_opaque_to(self.config.topic_for(&record.item_type), opaque)
                    .key(key.as_bytes())
                    .payload(value.as_slice())
                    .timestamp(record.received_ms.min(i64::MAX as u64) as i64);
            if let Err((e, _returned)) = self.producer.send(message) {
                // This record and the ones after it are not queued: free their budget. Records
                // already queued are delivered and deduplicated when the SDK resends.
                let unsent: u64 = sizes[i..].iter().sum();
                self.stats
                    .inflight_bytes
                    .fetch_sub(unsent, Ordering::AcqRel);
                envelope.fail(e.to_string());
                envelope.reply.lock().take();
                envelope.done(count - i);
                return Err(match e {
                    KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull) => {
                        self.backpressure()
                    }
                    other => kafka_err("producing", other),
                });
            }
        }
        Ok(ticket)
    }

    fn backlog_bytes(&self) -> u64 {
        self.stats.inflight_bytes.load(Ordering::Acquire)
    }
}

impl Drop for KafkaLog {
    fn drop(&mut self) {
        if !self.closed.load(Ordering::Acquire) {
            self.close(Duration::from_secs(5));
        }
    }
}

/// The META key holding a Kafka partition's next unprocessed offset.
fn offset_key(topic: &str, partition: i32) -> Vec<u8> {
    keys::kafka_consumer(topic, partition)
}

/// The next offset of `topic`/`partition` this store has not processed (`None`: never).
pub fn kafka_offset(store: &Store, topic: &str, partition: i32) -> Result<Option<i64>> {
    Ok(store
        .db()
        .get_cf(&store.cf(cf::META), offset_key(topic, partition))?
        .and_then(|v| v.as_slice().try_into().ok().map(i64::from_be_bytes)))
}

/// Adds "everything of `topic`/`partition` below `next_offset` is processed" to `batch`.
pub fn commit_kafka_offset(
    store: &Store,
    batch: &mut WriteBatch,
    topic: &str,
    partition: i32,
    next_offset: i64,
) {
    batch.put_cf(
        &store.cf(cf::META),
        offset_key(topic, partition),
        next_offset.to_be_bytes(),
    );
}

/// One decoded message.
#[derive(Debug, Clone)]
pub struct KafkaRecord {
    /// Topic it came from.
    pub topic: Arc<str>,
    /// Partition.
    pub partition: i32,
    /// Offset in the partition.
    pub offset: i64,
    /// The record.
    pub record: LogRecord,
}

/// A message that is not a log record (skipped, counted as an outcome).
#[derive(Debug, Clone)]
pub struct InvalidMessage {
    /// Topic it came from.
    pub topic: Arc<str>,
    /// Partition.
    pub partition: i32,
    /// Offset in the partition.
    pub offset: i64,
    /// The project from the message key, 0 when the key is not a project id.
    pub project_id: u64,
    /// The message's timestamp (unix ms), else the time it was read.
    pub timestamp_ms: u64,
    /// Why it was rejected.
    pub detail: String,
}

/// What [`KafkaConsumer::next_batch`] read: records in partition order, the rejects, and
/// each partition's next offset.
#[derive(Debug, Default)]
pub struct KafkaBatch {
    /// Decoded records.
    pub records: Vec<KafkaRecord>,
    /// Messages that did not decode.
    pub invalid: Vec<InvalidMessage>,
    next_offsets: BTreeMap<(Arc<str>, i32), i64>,
}

impl KafkaBatch {
    /// Nothing read.
    pub fn is_empty(&self) -> bool {
        self.next_offsets.is_empty()
    }

    /// The records alone, for the processor (the byte fields are shared, not copied).
    pub fn log_records(&self) -> Vec<LogRecord> {
        self.records.iter().map(|r| r.record.clone()).collect()
    }

    /// Each partition's offset after this batch: `(topic, partition, next offset)`.
    pub fn next_offsets(&self) -> impl Iterator<Item = (&str, i32, i64)> + '_ {
        self.next_offsets
            .iter()
            .map(|((topic, partition), next)| (&**topic, *partition, *next))
    }

    /// Adds the batch's offsets and its `invalid`/`kafka_decode` outcomes to `batch` (the
    /// write batch that also carries the processor's results).
    pub fn add_to_write_batch(&self, store: &Store, batch: &mut WriteBatch) {
        for (topic, partition, next) in self.next_offsets() {
            commit_kafka_offset(store, batch, topic, partition, next);
        }
        let mut outcomes: BTreeMap<Vec<u8>, i64> = BTreeMap::new();
        for bad in &self.invalid {
            let key = keys::outcome(
                bad.project_id,
                keys::hour_start(bad.timestamp_ms),
                OUTCOME_INVALID,
                CATEGORY_DEFAULT,
                KAFKA_DECODE_REASON,
            );
            *outcomes.entry(key).or_insert(0) += 1;
        }
        let outcomes_cf = store.cf(cf::OUTCOMES);
        for (key, n) in outcomes {
            batch.merge_cf(&outcomes_cf, key, encode_i64(n));
        }
    }

    fn note_offset(&mut self, topic: &Arc<str>, partition: i32, offset: i64) {
        let next = self
            .next_offsets
            .entry((Arc::clone(topic), partition))
            .or_insert(offset + 1);
        *next = (*next).max(offset + 1);
    }
}

#[derive(Default)]
struct Assignment {
    partitions: HashSet<(String, i32)>,
    generation: u64,
}

struct ConsumeContext {
    store: Store,
    assignment: Mutex<Assignment>,
}

impl ClientContext for ConsumeContext {
    fn error(&self, error: KafkaError, reason: &str) {
        tracing::warn!(error = %error, reason, "kafka consumer");
    }
}

impl ConsumeContext {
    /// The offset to start `topic`/`partition` at: the later of ours and the group's committed
    /// offset (`committed`, `None` when Kafka has none), else the beginning of what Kafka keeps.
    ///
    /// Ours alone is not enough once partitions move between live nodes: a partition that
    /// comes back to this node after another node processed more of it must not be re-read
    /// from our older offset (the other node already counted those events, and keeps them),
    /// and a partition this node never owned must start where its previous owner stopped,
    /// not at the beginning. Kafka's committed offset alone is not enough either: it is
    /// written just after the local batch, so after a crash ours can be ahead of it.
    fn start_offset(&self, topic: &str, partition: i32, committed: Option<i64>) -> Offset {
        let local = match kafka_offset(&self.store, topic, partition) {
            Ok(local) => local,
            Err(e) => {
                tracing::error!(error = %e, topic, partition, "cannot read the stored offset; using the group's");
                None
            }
        };
        match local.max(committed) {
            Some(next) => Offset::Offset(next),
            None => Offset::Beginning,
        }
    }

    /// The group's committed offsets of the partitions in `tpl` (empty when Kafka cannot say
    /// in time: the local offsets then decide, as before the group had any).
    fn committed(
        consumer: &BaseConsumer<Self>,
        tpl: &TopicPartitionList,
    ) -> HashMap<(String, i32), i64> {
        let mut out = HashMap::new();
        match consumer.committed_offsets(tpl.clone(), Duration::from_secs(10)) {
            Ok(list) => {
                for elem in list.elements() {
                    if let Offset::Offset(o) = elem.offset() {
                        out.insert((elem.topic().to_owned(), elem.partition()), o);
                    }
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot read the group's committed offsets; using the local ones")
            }
        }
        out
    }
}

impl ConsumerContext for ConsumeContext {
    // The default handler assigns what the group coordinator handed out at Kafka's committed
    // offsets; ours assigns the same partitions at the offsets in the local store.
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        let mut assignment = self.assignment.lock();
        assignment.generation += 1;
        assignment.partitions.clear();
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                let committed = Self::committed(consumer, tpl);
                let mut positioned = TopicPartitionList::new();
                for elem in tpl.elements() {
                    let (topic, partition) = (elem.topic(), elem.partition());
                    let group = committed.get(&(topic.to_owned(), partition)).copied();
                    let offset = self.start_offset(topic, partition, group);
                    if let Err(e) = positioned.add_partition_offset(topic, partition, offset) {
                        tracing::error!(error = %e, topic, partition, "cannot position partition");
                    }
                    tracing::info!(topic, partition, ?offset, "kafka partition assigned");
                    assignment.partitions.insert((topic.to_owned(), partition));
                }
                if let Err(e) = consumer.assign(&positioned) {
                    tracing::error!(error = %e, "kafka assign failed");
                    assignment.partitions.clear();
                }
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                tracing::info!(count = tpl.count(), "kafka partitions revoked");
                // A group commit after the last batch can fail while the group is already
                // rebalancing; here, still a member of the old generation, this node hands
                // its revoked partitions over at the offsets its results end at.
                let mut handover = TopicPartitionList::new();
                for elem in tpl.elements() {
                    if let Ok(Some(next)) =
                        kafka_offset(&self.store, elem.topic(), elem.partition())
                    {
                        let _ = handover.add_partition_offset(
                            elem.topic(),
                            elem.partition(),
                            Offset::Offset(next),
                        );
                    }
                }
                if handover.count() > 0 {
                    if let Err(e) = consumer.commit(&handover, CommitMode::Sync) {
                        tracing::warn!(error = %e, "handing over the revoked partitions' offsets failed");
                    }
                }
                if let Err(e) = consumer.unassign() {
                    tracing::error!(error = %e, "kafka unassign failed");
                }
            }
            other => {
                tracing::error!(error = ?other, "kafka rebalance error; unassigning");
                let _ = consumer.unassign();
            }
        }
    }
}

/// The processor side of Kafka mode: one member of the processors' consumer group.
pub struct KafkaConsumer {
    consumer: BaseConsumer<ConsumeContext>,
    topics: [Arc<str>; 2],
}

impl KafkaConsumer {
    /// Joins the group and subscribes to both ingest topics; offsets come from `store`.
    pub fn new(config: &KafkaConfig, store: &Store) -> Result<KafkaConsumer> {
        config.validate()?;
        store.ensure_writable()?;
        let mut client = config.client_config();
        client
            .set("group.id", &config.group_id)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            // Eager protocol: every rebalance revokes and reassigns the whole assignment,
            // which is what the rebalance handler above expects.
            .set("partition.assignment.strategy", "range,roundrobin")
            .set("auto.offset.reset", "earliest")
            .set("session.timeout.ms", config.session_timeout_ms.to_string())
            .set(
                "heartbeat.interval.ms",
                (config.session_timeout_ms / 4).max(100).to_string(),
            )
            .set(
                "fetch.message.max.bytes",
                (config.max_message_bytes + 64 * 1024).to_string(),
            );
        let consumer: BaseConsumer<ConsumeContext> = client
            .create_with_context(ConsumeContext {
                store: store.clone(),
                assignment: Mutex::new(Assignment::default()),
            })
            .map_err(|e| kafka_err("creating the consumer", e))?;
        let topics: [Arc<str>; 2] = [
            Arc::from(config.topics.events.as_str()),
            Arc::from(config.topics.transactions.as_str()),
        ];
        consumer
            .subscribe(&[&topics[0], &topics[1]])
            .map_err(|e| kafka_err("subscribing", e))?;
        Ok(KafkaConsumer { consumer, topics })
    }

    /// The partitions this member owns now, sorted.
    pub fn assignment(&self) -> Vec<(String, i32)> {
        let mut parts: Vec<_> = self
            .consumer
            .context()
            .assignment
            .lock()
            .partitions
            .iter()
            .cloned()
            .collect();
        parts.sort();
        parts
    }

    /// How many rebalances this member went through.
    pub fn generation(&self) -> u64 {
        self.consumer.context().assignment.lock().generation
    }

    fn topic_arc(&self, name: &str) -> Arc<str> {
        self.topics
            .iter()
            .find(|t| &***t == name)
            .cloned()
            .unwrap_or_else(|| Arc::from(name))
    }

    /// Reads up to `max_records` messages (and about `max_bytes`), waiting up to `wait` for
    /// the first one. Also serves rebalances. Records of partitions revoked while the batch
    /// was gathered are dropped (their new owner reads them from its own offsets).
    pub fn next_batch(
        &self,
        max_records: usize,
        max_bytes: usize,
        wait: Duration,
    ) -> Result<KafkaBatch> {
        let mut batch = KafkaBatch::default();
        let mut bytes = 0usize;
        let generation = self.generation();
        let mut timeout = wait;
        while batch.records.len() + batch.invalid.len() < max_records.max(1) && bytes < max_bytes {
            let Some(polled) = self.consumer.poll(timeout) else {
                break;
            };
            timeout = Duration::ZERO;
            let message = match polled {
                Ok(m) => m,
                Err(e) => {
                    if let KafkaError::MessageConsumptionFatal(_) = e {
                        return Err(kafka_err("consuming", e));
                    }
                    tracing::warn!(error = %e, "kafka consumer error");
                    break;
                }
            };
            let topic = self.topic_arc(message.topic());
            let (partition, offset) = (message.partition(), message.offset());
            batch.note_offset(&topic, partition, offset);
            let payload = message.payload().unwrap_or_default();
            bytes += payload.len();
            match LogRecord::decode(Bytes::copy_from_slice(payload)) {
                Ok(record) => batch.records.push(KafkaRecord {
                    topic,
                    partition,
                    offset,
                    record,
                }),
                Err(e) => {
                    let project_id = message
                        .key()
                        .and_then(|k| std::str::from_utf8(k).ok())
                        .and_then(|k| k.parse().ok())
                        .unwrap_or(0);
                    let timestamp_ms = message
                        .timestamp()
                        .to_millis()
                        .filter(|&t| t > 0)
                        .map(|t| t as u64)
                        .unwrap_or_else(now_ms);
                    tracing::warn!(topic = &*topic, partition, offset, error = %e, "skipping a message that is not a log record");
                    batch.invalid.push(InvalidMessage {
                        topic,
                        partition,
                        offset,
                        project_id,
                        timestamp_ms,
                        detail: e.to_string(),
                    });
                }
            }
        }
        if self.generation() != generation {
            let owned = self.consumer.context().assignment.lock().partitions.clone();
            let keep = |t: &Arc<str>, p: i32| owned.contains(&(t.to_string(), p));
            batch.records.retain(|r| keep(&r.topic, r.partition));
            batch.invalid.retain(|r| keep(&r.topic, r.partition));
            batch.next_offsets.retain(|(t, p), _| keep(t, *p));
        }
        Ok(batch)
    }

    /// Tells the group the offsets after `batch`; call right after the local commit of the
    /// batch and before the next [`KafkaConsumer::next_batch`]. It is synchronous so that
    /// when this member serves a rebalance (inside the next poll) and gives a partition
    /// away, the new owner starts exactly where this node's results end. A failure is
    /// returned but is not fatal: the next batch's commit covers it, and a node that gets
    /// the partition back prefers its own (later) stored offset.
    pub fn commit_offsets(&self, batch: &KafkaBatch) -> Result<()> {
        let mut tpl = TopicPartitionList::new();
        for (topic, partition, next) in batch.next_offsets() {
            tpl.add_partition_offset(topic, partition, Offset::Offset(next))
                .map_err(|e| kafka_err("listing offsets to commit", e))?;
        }
        if tpl.count() == 0 {
            return Ok(());
        }
        self.consumer
            .commit(&tpl, CommitMode::Sync)
            .map_err(|e| kafka_err("committing offsets to the group", e))
    }

    /// [`KafkaConsumer::commit_offsets`] without waiting (tools and benchmarks that do not
    /// share partitions with other members); failures are logged.
    pub fn commit_async(&self, batch: &KafkaBatch) {
        let mut tpl = TopicPartitionList::new();
        for (topic, partition, next) in batch.next_offsets() {
            if let Err(e) = tpl.add_partition_offset(topic, partition, Offset::Offset(next)) {
                tracing::debug!(error = %e, "kafka offset not committed");
            }
        }
        if tpl.count() == 0 {
            return;
        }
        if let Err(e) = self.consumer.commit(&tpl, CommitMode::Async) {
            tracing::debug!(error = %e, "kafka offset commit failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_validation_names_the_problem() {
        let mut config = KafkaConfig {
            brokers: "127.0.0.1:9092".into(),
            ..Default::default()
        };
        assert!(config.validate().is_ok());
        config.topics.events = "bad topic".into();
        assert!(config
            .validate()
            .unwrap_err()
            .to_string()
            .contains("bad topic"));
        config.topics.events = "ingest-transactions".into();
        assert!(config
            .validate()
            .unwrap_err()
            .to_string()
            .contains("differ"));
        config = KafkaConfig::default();
        assert!(config
            .validate()
            .unwrap_err()
            .to_string()
            .contains("brokers"));
    }

    #[test]
    fn transactions_and_the_rest_go_to_their_topics() {
        let config = KafkaConfig::default();
        assert_eq!(config.topic_for("transaction"), "ingest-transactions");
        for other in ["event", "attachment", "client_report", "session", "x"] {
            assert_eq!(config.topic_for(other), "ingest-events");
        }
    }

    #[test]
    fn offsets_and_decode_outcomes_go_into_the_write_batch() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), &crate::StoreOptions::default()).unwrap();
        let topic: Arc<str> = Arc::from("ingest-events");
        let mut batch = KafkaBatch::default();
        batch.note_offset(&topic, 2, 10);
        batch.note_offset(&topic, 2, 11);
        batch.note_offset(&topic, 0, 4);
        batch.invalid.push(InvalidMessage {
            topic: Arc::clone(&topic),
            partition: 2,
            offset: 11,
            project_id: 7,
            timestamp_ms: 3_600_000 * 5 + 12,
            detail: "truncated".into(),
        });
        assert_eq!(kafka_offset(&store, "ingest-events", 2).unwrap(), None);
        let mut wb = WriteBatch::default();
        batch.add_to_write_batch(&store, &mut wb);
        store.write(wb, true).unwrap();
        assert_eq!(kafka_offset(&store, "ingest-events", 2).unwrap(), Some(12));
        assert_eq!(kafka_offset(&store, "ingest-events", 0).unwrap(), Some(5));
        assert_eq!(
            kafka_offset(&store, "ingest-transactions", 2).unwrap(),
            None
        );
        let key = keys::outcome(
            7,
            3_600_000 * 5,
            OUTCOME_INVALID,
            CATEGORY_DEFAULT,
            KAFKA_DECODE_REASON,
        );
        let value = store
            .db()
            .get_cf(&store.cf(cf::OUTCOMES), key)
            .unwrap()
            .unwrap();
        assert_eq!(crate::decode_i64(&value), 1);
    }
}
