//! Shared metadata in Kafka mode (design.md §7): organizations, projects, DSN keys, API
//! tokens and alert rules travel through one compacted topic (`osprey-meta`, one partition)
//! so that a key or token created on any node works on every node.
//!
//! **Writes.** A store with a [`MetaPublisher`] attached sends every metadata write to the
//! topic first (keyed by the record's META key, value = the record's JSON, a tombstone for
//! a delete) and applies it to its own column family only after the brokers acknowledged it
//! (`acks=all`, idempotent producer). A write the brokers do not take is not made at all,
//! and the caller answers 503: nothing exists on one node only.
//!
//! **Reads.** Every node runs a [`MetaFollower`]: it reads the topic from the beginning
//! before the node serves ([`MetaFollower::start`] returns once it has applied everything
//! up to the high watermark it saw at start), then keeps applying what other nodes write.
//! The topic is the source of truth: the replicated kinds in the local column family are
//! replaced by the topic's contents at start, so deletes made while a node was down (whose
//! tombstones compaction may have removed since) are not resurrected. The one exception is
//! the first node on an empty topic: it publishes its own records (an existing embedded data
//! directory keeps its projects and keys when it becomes the first Kafka node).
//!
//! **Order.** Every node applies the records in topic order, so concurrent writes of the
//! same record converge on the last one in the topic. The writing node has already applied
//! its own write; so that an older echo does not briefly undo a newer local write, the
//! follower skips a record when this node has published the same key at a later offset.
//!
//! **Ids.** Per-node sequences would hand the same id to two nodes. With a publisher
//! attached, a new id is the topic offset of a small claim record plus
//! [`FIRST_REPLICATED_ID`]: offsets are unique and never reused (compaction keeps them),
//! so ids are unique across nodes without a coordinator. Id 1 stays for the objects every
//! node bootstraps identically (the `default` organization and project), which all nodes
//! may write at once without creating two of them.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use rdkafka::admin::{NewTopic, TopicReplication};
use rdkafka::consumer::{BaseConsumer, Consumer, DefaultConsumerContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use crate::db::Store;
use crate::error::{Result, StorageError};
use crate::kafka::KafkaConfig;
use crate::{cf, keys, WriteBatch};

/// The record kinds (first META key byte) shared through the topic.
pub const REPLICATED_KINDS: [u8; 6] = [
    keys::meta::ORG,
    keys::meta::PROJECT,
    keys::meta::KEY,
    keys::meta::TOKEN,
    keys::meta::ALERT_RULE,
    keys::meta::METRIC_ALERT_RULE,
];

/// Kind byte of an id-claim record (never applied to a store).
const CLAIM: u8 = keys::meta::SEQUENCE;

/// The smallest id handed out through the topic; ids below it are for bootstrap objects.
pub const FIRST_REPLICATED_ID: u64 = 2;

/// The one partition of the metadata topic.
const PARTITION: i32 = 0;

/// How long a metadata write waits for the brokers before it fails.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(15);

/// How long a node waits, at start, to read the topic up to its high watermark.
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(60);

/// Whether a META key is shared through the topic.
pub fn is_replicated(key: &[u8]) -> bool {
    key.first().is_some_and(|k| REPLICATED_KINDS.contains(k))
}

fn kafka_err(context: &str, e: KafkaError) -> StorageError {
    StorageError::Kafka(format!("{context}: {e}"))
}

/// Creates the metadata topic (one partition, `cleanup.policy=compact`) if it is missing.
pub async fn ensure_meta_topic(config: &KafkaConfig) -> Result<()> {
    config.validate()?;
    let topic = NewTopic::new(
        &config.topics.meta,
        1,
        TopicReplication::Fixed(config.replication_factor),
    )
    .set("cleanup.policy", "compact");
    crate::kafka::create_topics(config, &[topic], "the metadata topic").await
}

type DeliveryReply = mpsc::SyncSender<std::result::Result<i64, String>>;

struct PublishContext;

impl ClientContext for PublishContext {
    fn error(&self, error: KafkaError, reason: &str) {
        tracing::warn!(error = %error, reason, "kafka metadata producer");
    }
}

impl ProducerContext for PublishContext {
    type DeliveryOpaque = Box<DeliveryReply>;

    fn delivery(&self, result: &DeliveryResult<'_>, reply: Box<DeliveryReply>) {
        let outcome = match result {
            Ok(message) => Ok(message.offset()),
            Err((e, _)) => Err(e.to_string()),
        };
        // The writer may have given up waiting; then nobody needs the answer.
        let _ = reply.try_send(outcome);
    }
}

/// The write side: sends metadata records to the topic and waits for the brokers.
pub struct MetaPublisher {
    producer: ThreadedProducer<PublishContext>,
    topic: String,
    retry_after_secs: u64,
    /// The latest offset at which this node published each key (see "Order" above).
    own_latest: Arc<Mutex<HashMap<Vec<u8>, i64>>>,
    /// The offset of the last record whose effect this node's store and caches show (the
    /// follower's, -1 before the first).
    applied: Arc<AtomicI64>,
}

impl std::fmt::Debug for MetaPublisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetaPublisher")
            .field("topic", &self.topic)
            .finish()
    }
}

impl MetaPublisher {
    fn new(
        config: &KafkaConfig,
        own_latest: Arc<Mutex<HashMap<Vec<u8>, i64>>>,
        applied: Arc<AtomicI64>,
    ) -> Result<Self> {
        let mut client = config.client_config();
        client
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "0")
            .set(
                "message.timeout.ms",
                PUBLISH_TIMEOUT.as_millis().to_string(),
            );
        let producer = client
            .create_with_context(PublishContext)
            .map_err(|e| kafka_err("creating the metadata producer", e))?;
        Ok(MetaPublisher {
            producer,
            topic: config.topics.meta.clone(),
            retry_after_secs: config.retry_after_secs,
            own_latest,
            applied,
        })
    }

    /// Sends one record (`None` = delete) and returns its offset once the brokers have it.
    /// A broker outage is [`StorageError::Backpressure`] (the API answers 503 + Retry-After).
    pub fn publish(&self, key: &[u8], value: Option<&[u8]>) -> Result<i64> {
        let (reply, answer) = mpsc::sync_channel(1);
        let mut record = BaseRecord::with_opaque_to(&self.topic, Box::new(reply))
            .key(key)
            .partition(PARTITION);
        if let Some(value) = value {
            record = record.payload(value);
        }
        if let Err((e, _)) = self.producer.send(record) {
            return Err(match e {
                KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull) => self.unavailable(),
                other => kafka_err("publishing metadata", other),
            });
        }
        // The delivery report comes within message.timeout.ms; the margin covers its thread.
        match answer.recv_timeout(PUBLISH_TIMEOUT + Duration::from_secs(5)) {
            Ok(Ok(offset)) => {
                let mut own = self.own_latest.lock();
                let latest = own.entry(key.to_vec()).or_insert(offset);
                *latest = (*latest).max(offset);
                Ok(offset)
            }
            Ok(Err(detail)) => {
                tracing::warn!(%detail, "metadata write not acknowledged by Kafka");
                Err(self.unavailable())
            }
            Err(_) => Err(self.unavailable()),
        }
    }

    /// A new id for `sequence`, unique across every node sharing the topic.
    pub fn allocate_id(&self, sequence: &str) -> Result<u64> {
        let offset = self.publish(&keys::prefixed_str(CLAIM, sequence), Some(b"claim"))?;
        Ok(offset.max(0) as u64 + FIRST_REPLICATED_ID)
    }

    /// Waits until this node has applied every record the topic had when called (its high
    /// watermark then), at most `timeout`. A record acknowledged before some event was
    /// accepted is below that mark once the event is read, so a processor that calls this
    /// per batch knows every project, key and alert rule made before the batch's events.
    pub fn catch_up(&self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        let (_low, high) = self
            .producer
            .client()
            .fetch_watermarks(&self.topic, PARTITION, timeout)
            .map_err(|e| kafka_err("reading the metadata topic's end", e))?;
        loop {
            let applied = self.applied.load(Ordering::Acquire);
            if applied >= high - 1 {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(StorageError::Kafka(format!(
                    "metadata topic applied up to offset {applied}, its end is {high}: not within {} ms",
                    timeout.as_millis()
                )));
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    fn unavailable(&self) -> StorageError {
        StorageError::Backpressure {
            retry_after_secs: self.retry_after_secs,
        }
    }
}

/// The read side: applies the topic to the local store, in the background after start.
pub struct MetaFollower {
    stop: Arc<AtomicBool>,
    applied: Arc<AtomicI64>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl MetaFollower {
    /// Creates the topic if needed, reads it up to its current end into `store` (or seeds
    /// it from `store` when it is empty), attaches a publisher to `store` so its metadata
    /// writes go through the topic, and keeps following in a background thread.
    pub async fn start(config: &KafkaConfig, store: &Store) -> Result<MetaFollower> {
        store.ensure_writable()?;
        ensure_meta_topic(config).await?;
        let config = config.clone();
        let store = store.clone();
        tokio::task::spawn_blocking(move || MetaFollower::start_blocking(&config, &store))
            .await
            .map_err(|e| StorageError::Kafka(format!("metadata catch-up task: {e}")))?
    }

    fn start_blocking(config: &KafkaConfig, store: &Store) -> Result<MetaFollower> {
        let own_latest = Arc::new(Mutex::new(HashMap::new()));
        let applied = Arc::new(AtomicI64::new(-1));
        let publisher = MetaPublisher::new(config, Arc::clone(&own_latest), Arc::clone(&applied))?;
        let mut client = config.client_config();
        client
            // Partitions are assigned by hand; the group id is never joined.
            .set("group.id", format!("{}-meta-reader", config.group_id))
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", "false")
            .set(
                "fetch.message.max.bytes",
                (config.max_message_bytes + 64 * 1024).to_string(),
            );
        let consumer: BaseConsumer<DefaultConsumerContext> = client
            .create()
            .map_err(|e| kafka_err("creating the metadata consumer", e))?;
        let topic = config.topics.meta.clone();
        let mut assignment = TopicPartitionList::new();
        assignment
            .add_partition_offset(&topic, PARTITION, Offset::Beginning)
            .map_err(|e| kafka_err("assigning the metadata partition", e))?;
        consumer
            .assign(&assignment)
            .map_err(|e| kafka_err("assigning the metadata partition", e))?;
        let (_low, high) = consumer
            .fetch_watermarks(&topic, PARTITION, Duration::from_secs(30))
            .map_err(|e| kafka_err("reading the metadata topic's end", e))?;
        if high <= 0 {
            seed(store, &publisher)?;
        } else {
            let records = read_until(&consumer, high, &applied)?;
            replace_replicated(store, &records)?;
        }
        store.attach_meta_publisher(publisher)?;
        tracing::info!(
            topic,
            records_before_start = high,
            "metadata topic followed"
        );
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (stop, applied, store) = (Arc::clone(&stop), Arc::clone(&applied), store.clone());
            std::thread::Builder::new()
                .name("osprey-meta".into())
                .spawn(move || follow(consumer, store, own_latest, applied, stop))?
        };
        Ok(MetaFollower {
            stop,
            applied,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// The offset of the last record applied to the store and its caches (-1 before the
    /// first).
    pub fn applied_offset(&self) -> i64 {
        self.applied.load(Ordering::Acquire)
    }

    /// Stops following (the store keeps everything applied so far).
    pub fn shutdown(&self) {
        self.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.lock().take() {
            let _ = thread.join();
        }
    }
}

impl Drop for MetaFollower {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Reads every record below `high`: the latest value (or tombstone) per replicated key.
fn read_until(
    consumer: &BaseConsumer<DefaultConsumerContext>,
    high: i64,
    applied: &AtomicI64,
) -> Result<BTreeMap<Vec<u8>, Option<Vec<u8>>>> {
    let deadline = Instant::now() + CATCH_UP_TIMEOUT;
    let mut latest = BTreeMap::new();
    while applied.load(Ordering::Acquire) < high - 1 {
        if Instant::now() > deadline {
            return Err(StorageError::Kafka(format!(
                "the metadata topic was not read to offset {high} within {} s",
                CATCH_UP_TIMEOUT.as_secs()
            )));
        }
        let Some(polled) = consumer.poll(Duration::from_millis(500)) else {
            // Offsets may have gaps (compaction keeps offsets, not every record), so the
            // position, not the last offset seen, says when the end is reached.
            if position(consumer).is_some_and(|next| next >= high) {
                break;
            }
            continue;
        };
        let message = polled.map_err(|e| kafka_err("reading the metadata topic", e))?;
        applied.store(message.offset(), Ordering::Release);
        if let Some(key) = message.key().filter(|k| is_replicated(k)) {
            latest.insert(key.to_vec(), message.payload().map(<[u8]>::to_vec));
        }
    }
    Ok(latest)
}

/// The next offset the consumer will read from the metadata partition.
fn position(consumer: &BaseConsumer<DefaultConsumerContext>) -> Option<i64> {
    let positions = consumer.position().ok()?;
    positions
        .elements()
        .iter()
        .find(|e| e.partition() == PARTITION)
        .and_then(|e| match e.offset() {
            Offset::Offset(next) => Some(next),
            _ => None,
        })
}

/// First node on an empty topic: publish this store's own shared records.
fn seed(store: &Store, publisher: &MetaPublisher) -> Result<()> {
    let handle = store.cf(cf::META);
    let mut published = 0usize;
    for item in store
        .db()
        .iterator_cf(&handle, rocksdb::IteratorMode::Start)
    {
        let (key, value) = item?;
        if is_replicated(&key) {
            publisher.publish(&key, Some(&value))?;
            published += 1;
        }
    }
    tracing::info!(
        published,
        "metadata topic was empty: seeded it from this node"
    );
    Ok(())
}

/// Makes the local shared records exactly the topic's.
fn replace_replicated(store: &Store, topic: &BTreeMap<Vec<u8>, Option<Vec<u8>>>) -> Result<()> {
    let handle = store.cf(cf::META);
    let mut batch = WriteBatch::default();
    for item in store
        .db()
        .iterator_cf(&handle, rocksdb::IteratorMode::Start)
    {
        let (key, _) = item?;
        if is_replicated(&key) && !matches!(topic.get(&*key), Some(Some(_))) {
            batch.delete_cf(&handle, &key);
        }
    }
    for (key, value) in topic {
        if let Some(value) = value {
            batch.put_cf(&handle, key, value);
        }
    }
    drop(handle);
    store.write(batch, true)?;
    store.reload_meta()
}

/// The background loop: apply what other nodes write, a poll's worth at a time.
fn follow(
    consumer: BaseConsumer<DefaultConsumerContext>,
    store: Store,
    own_latest: Arc<Mutex<HashMap<Vec<u8>, i64>>>,
    applied: Arc<AtomicI64>,
    stop: Arc<AtomicBool>,
) {
    while !stop.load(Ordering::Acquire) {
        let mut batch = WriteBatch::default();
        let mut changes = 0usize;
        let mut last = None;
        let mut timeout = Duration::from_millis(200);
        // At most 1,000 records per write, so a long backlog still reloads the caches
        // now and then instead of holding every change back until the end.
        while changes < 1_000 {
            let Some(polled) = consumer.poll(timeout) else {
                break;
            };
            timeout = Duration::ZERO;
            let message = match polled {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!(error = %e, "metadata topic");
                    break;
                }
            };
            last = Some(message.offset());
            let Some(key) = message.key().filter(|k| is_replicated(k)) else {
                continue;
            };
            let newer_own_write = own_latest
                .lock()
                .get(key)
                .is_some_and(|&own| own > message.offset());
            if newer_own_write {
                continue;
            }
            let handle = store.cf(cf::META);
            match message.payload() {
                Some(value) => batch.put_cf(&handle, key, value),
                None => batch.delete_cf(&handle, key),
            }
            changes += 1;
        }
        if changes > 0 {
            tracing::debug!(changes, "applying metadata records from the topic");
            if let Err(e) = store.write(batch, true).and_then(|()| store.reload_meta()) {
                // The records are re-read from the topic at the next start; until then this
                // node keeps its previous view.
                tracing::error!(error = %e, "applying metadata from the topic failed");
            }
        }
        // Only now are the records' effects visible ([`MetaPublisher::catch_up`] waits for
        // this). With nothing new, the position covers offsets compaction left empty.
        let reached = match last {
            Some(offset) => Some(offset),
            None => position(&consumer).map(|next| next - 1),
        };
        if let Some(reached) = reached {
            applied.fetch_max(reached, Ordering::AcqRel);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_shared_kinds_are_replicated() {
        assert!(is_replicated(&keys::prefixed_id(keys::meta::PROJECT, 7)));
        assert!(is_replicated(&keys::prefixed_str(keys::meta::KEY, "abc")));
        assert!(is_replicated(&keys::prefixed_id(
            keys::meta::METRIC_ALERT_RULE,
            3
        )));
        // Releases and Kafka offsets are each node's own; sequences are claims only.
        assert!(!is_replicated(&[keys::meta::RELEASE, 1]));
        assert!(!is_replicated(&[keys::meta::CONSUMER, 1]));
        assert!(!is_replicated(&keys::prefixed_str(CLAIM, "org")));
        assert!(!is_replicated(&[]));
    }
}
