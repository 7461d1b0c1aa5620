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
//! **Consumer.** Every processor node keeps its results in its own RocksDB and, in the same
//! write batch, each partition's next offset ([`KafkaBatch::add_to_write_batch`]); the
//! consumer group keeps committed offsets as well. The two cannot change atomically, so
//! each batch goes through them in this order:
//!
//! 1. **group first**: [`KafkaConsumer::commit_group`] commits the offsets after the batch,
//!    synchronously, with [`Owners`] as commit metadata: the turns of the nodes that owned
//!    the partition, each a node id ([`kafka_node_id`], random, kept in the data directory)
//!    and the offset its turn started at;
//! 2. **then locally**: results and offsets in one write batch.
//!
//! The group commit is where offsets become a node's: a member that lost the partition in a
//! rebalance is refused (the commit carries the group generation), and every later owner
//! starts at or after it. A node that stops between 1 and 2 therefore *owes* the offsets
//! from its store's offset to the end of its last turn ([`Owners::owed`]), and nobody else
//! will read them. It finds that out itself, from the group's metadata and its own offset,
//! when its consumer starts (for every partition, whoever owns it now) and at every
//! assignment, and re-reads exactly those offsets ([`KafkaConsumer::next_owed_batch`],
//! written locally, not committed again) before it processes anything else. The cases:
//!
//! - *Killed after 1, before 2, restarted on its data directory*: the group's last turn of
//!   this node is `[s, e)` and its store's offset `L < e`: it re-reads `[max(L, s), e)`, once.
//!   That holds whether it gets the partition back or not, and whether another node has
//!   continued the partition meanwhile (that node started at `e`; what follows is its turn).
//! - *Killed after 2*: its store's offset is the group's: nothing owed, nothing re-read.
//! - *Killed before 1*: the batch is nobody's yet; the partition's next owner (this node
//!   again, or another) starts at the group's offset and reads it.
//! - *The group commit fails while alive* (rebalance under way, fenced member, coordinator
//!   moving): nothing is written; [`KafkaConsumer::recover_failed_commit`] asks the group
//!   (the commit may have been applied with its answer lost): applied, the batch is owed;
//!   not applied, the partition is rewound to the group's offset (or left to its new owner).
//! - *The local write fails after 1*: the processor re-creates the consumer, which finds the
//!   debt at start, as after a crash.
//! - *A partition moves between live nodes*: the old owner's last group commit is where its
//!   results end; the new owner starts there. Nothing needs to be handed over at revocation.
//!
//! On every (re)assignment the consumer seeks each partition to the later of the store's
//! and the group's offsets (the beginning when neither exists): normally the group's, since
//! it is committed first; the store's where the group has none. What is not covered: a node
//! whose data directory is lost never re-reads its debt (its results are lost with it
//! anyway), and a node that comes back after its partition changed owners [`MAX_TURNS`] more
//! times has lost its last turn from the list, so its debt (one batch at most) is not re-read.
//! A message that does not decode is not a crash loop: it is counted as an `invalid` outcome
//! with reason `kafka_decode` in the same write batch and skipped.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

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

    /// Records and rejects in the batch.
    pub fn len(&self) -> usize {
        self.records.len() + self.invalid.len()
    }

    /// Adds one polled message: a record, or a reject when it does not decode. Returns the
    /// payload's size.
    fn push_message<M: Message>(&mut self, topic: Arc<str>, message: &M) -> usize {
        let (partition, offset) = (message.partition(), message.offset());
        self.note_offset(&topic, partition, offset);
        let payload = message.payload().unwrap_or_default();
        match LogRecord::decode(Bytes::copy_from_slice(payload)) {
            Ok(record) => self.records.push(KafkaRecord {
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
                self.invalid.push(InvalidMessage {
                    topic,
                    partition,
                    offset,
                    project_id,
                    timestamp_ms,
                    detail: e.to_string(),
                });
            }
        }
        payload.len()
    }

    fn note_offset(&mut self, topic: &Arc<str>, partition: i32, offset: i64) {
        let next = self
            .next_offsets
            .entry((Arc::clone(topic), partition))
            .or_insert(offset + 1);
        *next = (*next).max(offset + 1);
    }
}

/// The first word of osprey's group commit metadata ([`Owners`]); other metadata is ignored.
const OWNERS_PREFIX: &str = "osprey-owners/1";

/// Turns kept in a partition's [`Owners`]: about 55 bytes each, well inside the 4 KiB of
/// commit metadata brokers accept by default (`offset.metadata.max.bytes`).
const MAX_TURNS: usize = 16;

/// How long re-reading one owed range may take before the batch fails (and is retried).
const OWED_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a question to the group coordinator or a partition leader may take.
const GROUP_QUERY_TIMEOUT: Duration = Duration::from_secs(10);

/// Who took which offsets of one partition from the group: the turns of the nodes that
/// owned it, oldest first, each `(node id, first offset of the turn)`. A turn ends where the
/// next one starts, the last one at the group's committed offset. The list travels in the
/// metadata of every group commit (`osprey-owners/1 NODE@OFFSET NODE@OFFSET …`), so each
/// new owner continues it; the last [`MAX_TURNS`] turns are kept.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Owners {
    turns: Vec<(String, i64)>,
}

impl Owners {
    /// Reads commit metadata. Anything that is not osprey's list (an admin tool's offset
    /// reset, a commit from before this format) has no turns.
    pub fn parse(metadata: &str) -> Owners {
        let mut words = metadata.split(' ');
        if words.next() != Some(OWNERS_PREFIX) {
            return Owners::default();
        }
        let mut turns: Vec<(String, i64)> = Vec::new();
        for word in words.take(MAX_TURNS * 4) {
            let parsed = word
                .rsplit_once('@')
                .and_then(|(node, start)| Some((node, start.parse::<i64>().ok()?)));
            match parsed {
                Some((node, start))
                    if !node.is_empty()
                        && start >= 0
                        && turns.last().is_none_or(|(_, prev)| *prev <= start) =>
                {
                    turns.push((node.to_owned(), start))
                }
                _ => return Owners::default(),
            }
        }
        let extra = turns.len().saturating_sub(MAX_TURNS);
        turns.drain(..extra);
        Owners { turns }
    }

    /// The metadata text of a commit.
    pub fn encode(&self) -> String {
        let mut out = String::from(OWNERS_PREFIX);
        for (node, start) in &self.turns {
            out.push_str(&format!(" {node}@{start}"));
        }
        out
    }

    /// The offsets `node` took from the group in its last turn (up to the next turn's start,
    /// or up to `committed` when its turn is the last) that its store, whose next offset is
    /// `local`, does not have: `[from, to)`, or `None` when nothing is owed.
    pub fn owed(&self, node: &str, local: Option<i64>, committed: i64) -> Option<(i64, i64)> {
        let i = self.turns.iter().rposition(|(n, _)| n == node)?;
        let start = self.turns[i].1;
        let end = self.turns.get(i + 1).map_or(committed, |(_, next)| *next);
        let from = local.map_or(start, |l| l.max(start));
        (from < end).then_some((from, end))
    }

    /// `node` owns the partition from offset `start` on: a new turn, unless the last turn
    /// is already its own (it continues that turn).
    pub fn continue_with(&mut self, node: &str, start: i64) {
        if self.turns.last().is_some_and(|(n, _)| n == node) {
            return;
        }
        // A turn at or after `start` held no offsets (a later turn starts at the committed
        // offset, and `start` is never below it).
        self.turns.retain(|(_, s)| *s < start);
        self.turns.push((node.to_owned(), start));
        let extra = self.turns.len().saturating_sub(MAX_TURNS);
        self.turns.drain(..extra);
    }
}

/// This data directory's node id in the consumer group's commit metadata: 32 hex
/// characters, made at the first call and kept in the store (a copied data directory would
/// share it, so never start two nodes from copies of one).
pub fn kafka_node_id(store: &Store) -> Result<String> {
    let key = keys::kafka_node_id();
    let meta = store.cf(cf::META);
    if let Some(v) = store.db().get_cf(&meta, &key)? {
        if let Ok(id) = String::from_utf8(v) {
            if id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Ok(id);
            }
        }
    }
    let id = uuid::Uuid::new_v4().simple().to_string();
    let mut batch = WriteBatch::default();
    batch.put_cf(&meta, &key, id.as_bytes());
    drop(meta);
    store.write(batch, true)?;
    Ok(id)
}

#[derive(Default)]
struct Assignment {
    /// The partitions this member owns, each with the [`Owners`] its group commits carry.
    partitions: HashMap<(String, i32), Owners>,
    generation: u64,
}

struct ConsumeContext {
    store: Store,
    /// [`kafka_node_id`].
    node: String,
    assignment: Mutex<Assignment>,
    /// Ranges `[from, to)` this node took from the group and has not written to its store,
    /// by partition (see the module docs).
    owed: Mutex<BTreeMap<(String, i32), (i64, i64)>>,
}

impl ClientContext for ConsumeContext {
    fn error(&self, error: KafkaError, reason: &str) {
        tracing::warn!(error = %error, reason, "kafka consumer");
    }
}

/// A partition's committed offset in the group and the [`Owners`] of its metadata.
type Committed = HashMap<(String, i32), (i64, Owners)>;

impl ConsumeContext {
    /// This store's next offset of `topic`/`partition` (`None`: never processed, or unreadable).
    fn local_offset(&self, topic: &str, partition: i32) -> Option<i64> {
        kafka_offset(&self.store, topic, partition).unwrap_or_else(|e| {
            tracing::error!(error = %e, topic, partition, "cannot read the stored offset");
            None
        })
    }

    /// Records (or clears) what this node owes of `topic`/`partition`, given the group's
    /// answer for it (`None`: the group has no committed offset).
    fn note_debt(&self, topic: &str, partition: i32, group: Option<&(i64, Owners)>) {
        let local = self.local_offset(topic, partition);
        let debt = group.and_then(|(committed, owners)| owners.owed(&self.node, local, *committed));
        let key = (topic.to_owned(), partition);
        let mut owed = self.owed.lock();
        match debt {
            Some((from, to)) => {
                tracing::warn!(
                    topic,
                    partition,
                    from,
                    to,
                    "offsets this node committed to the group were not processed; re-reading them"
                );
                owed.insert(key, (from, to));
            }
            None => {
                owed.remove(&key);
            }
        }
    }

    /// The group's committed offsets (and owners) of the partitions in `tpl`. Errors are
    /// retried for up to [`GROUP_QUERY_TIMEOUT`]: a coordinator that is moving or loading
    /// (after a broker restart) answers `NotCoordinator` for a moment.
    fn committed(consumer: &BaseConsumer<Self>, tpl: &TopicPartitionList) -> Result<Committed> {
        let deadline = Instant::now() + GROUP_QUERY_TIMEOUT;
        let list = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match consumer.committed_offsets(tpl.clone(), left.max(Duration::from_millis(100))) {
                Ok(list) => break list,
                Err(e) if Instant::now() + Duration::from_millis(200) < deadline => {
                    tracing::debug!(error = %e, "reading the group's committed offsets; retrying");
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err(e) => return Err(kafka_err("reading the group's committed offsets", e)),
            }
        };
        let mut out = HashMap::new();
        for elem in list.elements() {
            if let Offset::Offset(o) = elem.offset() {
                // Metadata in this group is only ever written by osprey (UTF-8 text).
                let owners = Owners::parse(elem.metadata());
                out.insert((elem.topic().to_owned(), elem.partition()), (o, owners));
            }
        }
        Ok(out)
    }

    /// Positions the newly assigned partitions. Each starts at the later of this store's
    /// offset and the group's committed offset (the beginning when neither exists): the
    /// group's, normally (it is committed first, so it is never behind ours, and a partition
    /// that comes back after another node processed more of it must not be re-read from our
    /// older offset); ours only where the group has none (the group forgot it, or a
    /// different group), so a restarted node never re-reads what it has.
    fn assign(&self, consumer: &BaseConsumer<Self>, tpl: &TopicPartitionList) {
        let committed = match Self::committed(consumer, tpl) {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::error!(error = %e, "using the local offsets alone");
                None
            }
        };
        let mut assignment = self.assignment.lock();
        let mut positioned = TopicPartitionList::new();
        for elem in tpl.elements() {
            let (topic, partition) = (elem.topic(), elem.partition());
            let group = committed
                .as_ref()
                .and_then(|c| c.get(&(topic.to_owned(), partition)));
            if committed.is_some() {
                self.note_debt(topic, partition, group);
            }
            let start = self
                .local_offset(topic, partition)
                .max(group.map(|(o, _)| *o));
            let offset = start.map_or(Offset::Beginning, Offset::Offset);
            let mut owners = group.map(|(_, o)| o.clone()).unwrap_or_default();
            owners.continue_with(&self.node, start.unwrap_or(0));
            if let Err(e) = positioned.add_partition_offset(topic, partition, offset) {
                tracing::error!(error = %e, topic, partition, "cannot position partition");
            }
            tracing::info!(topic, partition, ?offset, "kafka partition assigned");
            assignment
                .partitions
                .insert((topic.to_owned(), partition), owners);
        }
        if let Err(e) = consumer.assign(&positioned) {
            tracing::error!(error = %e, "kafka assign failed");
            assignment.partitions.clear();
        }
    }
}

impl ConsumerContext for ConsumeContext {
    // The default handler assigns what the group coordinator handed out at Kafka's committed
    // offsets; ours positions them as [`ConsumeContext::assign`] says and notes debts.
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        {
            let mut assignment = self.assignment.lock();
            assignment.generation += 1;
            assignment.partitions.clear();
        }
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => self.assign(consumer, tpl),
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                // Nothing to hand over: every batch's offsets reached the group before its
                // results were written, so the group is already where this node stops.
                tracing::info!(count = tpl.count(), "kafka partitions revoked");
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
    config: KafkaConfig,
    /// Re-reads owed ranges: partitions assigned by hand, never in the group, made on
    /// first use.
    reader: Mutex<Option<BaseConsumer>>,
}

impl KafkaConsumer {
    /// Joins the group and subscribes to both ingest topics; offsets come from `store`.
    /// Before joining it asks the group what this node owes of every partition (whoever
    /// owns them now): [`KafkaConsumer::next_owed_batch`] hands those ranges out first.
    pub fn new(config: &KafkaConfig, store: &Store) -> Result<KafkaConsumer> {
        config.validate()?;
        store.ensure_writable()?;
        let node = kafka_node_id(store)?;
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
                node,
                assignment: Mutex::new(Assignment::default()),
                owed: Mutex::new(BTreeMap::new()),
            })
            .map_err(|e| kafka_err("creating the consumer", e))?;
        let topics: [Arc<str>; 2] = [
            Arc::from(config.topics.events.as_str()),
            Arc::from(config.topics.transactions.as_str()),
        ];
        let this = KafkaConsumer {
            consumer,
            topics,
            config: config.clone(),
            reader: Mutex::new(None),
        };
        this.find_debts()?;
        this.consumer
            .subscribe(&[&this.topics[0], &this.topics[1]])
            .map_err(|e| kafka_err("subscribing", e))?;
        Ok(this)
    }

    /// This member's node id ([`kafka_node_id`]).
    pub fn node_id(&self) -> &str {
        &self.consumer.context().node
    }

    /// Notes what this node owes of every partition of both topics.
    fn find_debts(&self) -> Result<()> {
        let mut tpl = TopicPartitionList::new();
        for topic in &self.topics {
            let metadata = self
                .consumer
                .fetch_metadata(Some(topic), GROUP_QUERY_TIMEOUT)
                .map_err(|e| kafka_err("reading the topics' partitions", e))?;
            for t in metadata.topics() {
                for p in t.partitions() {
                    tpl.add_partition(t.name(), p.id());
                }
            }
        }
        if tpl.count() == 0 {
            return Ok(());
        }
        let context = self.consumer.context();
        let committed = ConsumeContext::committed(&self.consumer, &tpl)?;
        for elem in tpl.elements() {
            let (topic, partition) = (elem.topic(), elem.partition());
            context.note_debt(
                topic,
                partition,
                committed.get(&(topic.to_owned(), partition)),
            );
        }
        Ok(())
    }

    /// The partitions this member owns now, sorted.
    pub fn assignment(&self) -> Vec<(String, i32)> {
        let mut parts: Vec<_> = self
            .consumer
            .context()
            .assignment
            .lock()
            .partitions
            .keys()
            .cloned()
            .collect();
        parts.sort();
        parts
    }

    /// How many rebalances this member went through.
    pub fn generation(&self) -> u64 {
        self.consumer.context().assignment.lock().generation
    }

    /// The ranges `(topic, partition, from, to)` this node owes (see the module docs).
    pub fn owed(&self) -> Vec<(String, i32, i64, i64)> {
        self.consumer
            .context()
            .owed
            .lock()
            .iter()
            .map(|((t, p), (from, to))| (t.clone(), *p, *from, *to))
            .collect()
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
        while batch.len() < max_records.max(1) && bytes < max_bytes {
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
            bytes += batch.push_message(self.topic_arc(message.topic()), &message);
        }
        if self.generation() != generation {
            let assignment = self.consumer.context().assignment.lock();
            let keep =
                |t: &Arc<str>, p: i32| assignment.partitions.contains_key(&(t.to_string(), p));
            batch.records.retain(|r| keep(&r.topic, r.partition));
            batch.invalid.retain(|r| keep(&r.topic, r.partition));
            batch.next_offsets.retain(|(t, p), _| keep(t, *p));
        }
        Ok(batch)
    }

    /// Takes `batch` from the group: commits the offsets after it, synchronously, with this
    /// node's [`Owners`] as metadata. Call it right after [`KafkaConsumer::next_batch`] and
    /// before the batch's results are written: from here on the offsets are this node's
    /// (module docs). On an error nothing may be written; call
    /// [`KafkaConsumer::recover_failed_commit`].
    pub fn commit_group(&self, batch: &KafkaBatch) -> Result<()> {
        let mut tpl = TopicPartitionList::new();
        {
            let assignment = self.consumer.context().assignment.lock();
            for (topic, partition, next) in batch.next_offsets() {
                let Some(owners) = assignment.partitions.get(&(topic.to_owned(), partition)) else {
                    return Err(StorageError::Kafka(format!(
                        "{topic}/{partition} is no longer assigned to this node"
                    )));
                };
                tpl.add_partition_offset(topic, partition, Offset::Offset(next))
                    .map_err(|e| kafka_err("listing offsets to commit", e))?;
                if let Some(mut elem) = tpl.find_partition(topic, partition) {
                    elem.set_metadata(owners.encode());
                }
            }
        }
        if tpl.count() == 0 {
            return Ok(());
        }
        self.consumer
            .commit(&tpl, CommitMode::Sync)
            .map_err(|e| kafka_err("committing offsets to the group", e))
    }

    /// After [`KafkaConsumer::commit_group`] failed (and nothing was written): asks the
    /// group what it has, since a commit can be applied without its answer arriving. Applied:
    /// the batch is owed ([`KafkaConsumer::next_owed_batch`]). Not applied: each partition
    /// this node still owns goes back to where the group is, so the batch is read again (or
    /// by the partition's next owner). An error here means the caller cannot know; it must
    /// re-create the consumer (which asks again at start).
    pub fn recover_failed_commit(&self, batch: &KafkaBatch) -> Result<()> {
        let mut tpl = TopicPartitionList::new();
        for (topic, partition, _) in batch.next_offsets() {
            tpl.add_partition(topic, partition);
        }
        if tpl.count() == 0 {
            return Ok(());
        }
        let context = self.consumer.context();
        let committed = ConsumeContext::committed(&self.consumer, &tpl)?;
        for (topic, partition, _) in batch.next_offsets() {
            let group = committed.get(&(topic.to_owned(), partition));
            context.note_debt(topic, partition, group);
            let owned = context
                .assignment
                .lock()
                .partitions
                .contains_key(&(topic.to_owned(), partition));
            if !owned {
                continue;
            }
            let back = context
                .local_offset(topic, partition)
                .max(group.map(|(o, _)| *o))
                .map_or(Offset::Beginning, Offset::Offset);
            self.consumer
                .seek(topic, partition, back, GROUP_QUERY_TIMEOUT)
                .map_err(|e| kafka_err("rewinding after a failed group commit", e))?;
        }
        Ok(())
    }

    /// The next piece (up to `max_records` records, about `max_bytes`) of a range this node
    /// took from the group and has not written (`None`: nothing owed). Write it to the store
    /// with its offsets ([`KafkaBatch::add_to_write_batch`]) and do not commit it to the
    /// group (the group has it). Process every owed piece before the batch
    /// [`KafkaConsumer::next_batch`] returned: the owed offsets come before it.
    pub fn next_owed_batch(
        &self,
        max_records: usize,
        max_bytes: usize,
    ) -> Result<Option<KafkaBatch>> {
        let context = self.consumer.context();
        let Some(((topic, partition), (from, to))) = context
            .owed
            .lock()
            .iter()
            .next()
            .map(|(k, v)| (k.clone(), *v))
        else {
            return Ok(None);
        };
        let mut reader = self.reader.lock();
        let reader = match &mut *reader {
            Some(r) => r,
            empty => empty.insert(self.make_reader()?),
        };
        let (low, high) = reader
            .fetch_watermarks(&topic, partition, GROUP_QUERY_TIMEOUT)
            .map_err(|e| kafka_err("reading a partition's bounds", e))?;
        if low < 0 || high < low {
            return Err(StorageError::Kafka(format!(
                "{topic}/{partition} has no valid bounds yet ({low}..{high})"
            )));
        }
        // Below `low` retention removed the records; above `high` there is nothing (the log
        // was truncated): the range is settled once what exists of it is read.
        let (start, end) = (from.max(low), to.min(high));
        let topic_arc = self.topic_arc(&topic);
        let mut batch = KafkaBatch::default();
        let mut next = start;
        if start < end {
            let mut tpl = TopicPartitionList::new();
            tpl.add_partition_offset(&topic, partition, Offset::Offset(start))
                .map_err(|e| kafka_err("positioning the re-read", e))?;
            reader
                .assign(&tpl)
                .map_err(|e| kafka_err("positioning the re-read", e))?;
            let deadline = Instant::now() + OWED_READ_TIMEOUT;
            let mut bytes = 0usize;
            while next < end && batch.len() < max_records.max(1) && bytes < max_bytes {
                if Instant::now() > deadline {
                    return Err(StorageError::Kafka(format!(
                        "re-reading {topic}/{partition} offsets {next}..{end}: not within {} s",
                        OWED_READ_TIMEOUT.as_secs()
                    )));
                }
                let message = match reader.poll(Duration::from_millis(200)) {
                    None => continue,
                    Some(Ok(m)) => m,
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, "kafka re-read");
                        continue;
                    }
                };
                if message.topic() != topic || message.partition() != partition {
                    continue;
                }
                let offset = message.offset();
                if offset >= end {
                    next = end;
                    break;
                }
                if offset < next {
                    continue;
                }
                next = offset + 1;
                bytes += batch.push_message(Arc::clone(&topic_arc), &message);
            }
        }
        let mut owed = context.owed.lock();
        if next >= end {
            owed.remove(&(topic.clone(), partition));
            batch.next_offsets.insert((topic_arc, partition), to);
        } else if let Some(range) = owed.get_mut(&(topic.clone(), partition)) {
            range.0 = next;
        }
        tracing::info!(
            topic,
            partition,
            from,
            next,
            to,
            records = batch.len(),
            "re-read owed offsets"
        );
        Ok(Some(batch))
    }

    fn make_reader(&self) -> Result<BaseConsumer> {
        let mut client = self.config.client_config();
        client
            // Assigned by hand; this group id is never joined and nothing is committed.
            .set("group.id", format!("{}-reread", self.config.group_id))
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set(
                "fetch.message.max.bytes",
                (self.config.max_message_bytes + 64 * 1024).to_string(),
            );
        client
            .create()
            .map_err(|e| kafka_err("creating the re-read consumer", e))
    }

    /// Commits the offsets after `batch` to the group without waiting and without owners,
    /// for tools and benchmarks that are the only member of their group and write their
    /// offsets locally first; failures are logged. The processor uses
    /// [`KafkaConsumer::commit_group`].
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
    fn owners_round_trip_and_ignore_foreign_metadata() {
        let mut owners = Owners::default();
        owners.continue_with("aaaa", 0);
        owners.continue_with("aaaa", 40); // the same node continues its turn
        owners.continue_with("bbbb", 120);
        let text = owners.encode();
        assert_eq!(text, "osprey-owners/1 aaaa@0 bbbb@120");
        assert_eq!(Owners::parse(&text), owners);
        for foreign in [
            "",
            "x",
            "osprey-owners/1 aaaa",
            "osprey-owners/1 a@9 b@3",
            "osprey-owners/1 @4",
        ] {
            assert_eq!(Owners::parse(foreign), Owners::default(), "{foreign:?}");
        }
        // The list keeps the last turns only.
        for i in 0..40 {
            owners.continue_with(&format!("n{i}"), 200 + i);
        }
        let parsed = Owners::parse(&owners.encode());
        assert_eq!(parsed.turns.len(), MAX_TURNS);
        assert_eq!(parsed.turns.last().unwrap(), &("n39".to_owned(), 239));
    }

    #[test]
    fn a_node_owes_what_it_took_and_did_not_write_of_its_last_turn() {
        // A owned [0, 120), B [120, 300), A again [300, committed).
        let owners = Owners::parse("osprey-owners/1 aaaa@0 bbbb@120 aaaa@300");
        // A killed after its group commit to 340, before writing 310..340.
        assert_eq!(owners.owed("aaaa", Some(310), 340), Some((310, 340)));
        // A never wrote anything in its second turn: from the turn's start, not from its
        // old offset (B's offsets are B's).
        assert_eq!(owners.owed("aaaa", Some(120), 340), Some((300, 340)));
        assert_eq!(owners.owed("aaaa", None, 340), Some((300, 340)));
        // Written: nothing owed.
        assert_eq!(owners.owed("aaaa", Some(340), 340), None);
        // B's last turn ended where A's began: B owes what it did not write of it.
        assert_eq!(owners.owed("bbbb", Some(280), 340), Some((280, 300)));
        assert_eq!(owners.owed("bbbb", Some(300), 340), None);
        // A node that never owned the partition owes nothing.
        assert_eq!(owners.owed("cccc", None, 340), None);
        // A new owner's turn starts where it starts reading.
        let mut next = owners.clone();
        next.continue_with("cccc", 340);
        assert_eq!(next.owed("aaaa", Some(310), 400), Some((310, 340)));
        assert_eq!(next.owed("cccc", Some(400), 400), None);
    }

    #[test]
    fn the_node_id_is_made_once_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), &crate::StoreOptions::default()).unwrap();
        let id = kafka_node_id(&store).unwrap();
        assert_eq!(id.len(), 32);
        assert_eq!(kafka_node_id(&store).unwrap(), id);
        drop(store);
        let store = Store::open(dir.path(), &crate::StoreOptions::default()).unwrap();
        assert_eq!(kafka_node_id(&store).unwrap(), id);
        let other = tempfile::tempdir().unwrap();
        let other = Store::open(other.path(), &crate::StoreOptions::default()).unwrap();
        assert_ne!(kafka_node_id(&other).unwrap(), id);
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
