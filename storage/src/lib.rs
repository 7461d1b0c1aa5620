//! osprey's storage: the one crate that knows RocksDB.
//!
//! It owns the data directory ([`Store`]), every column family ([`cf`]) and key layout
//! ([`keys`]), the merge operators that add counters and HDR histograms without
//! read-modify-write ([`hist`], [`encode_i64`]), retention by compaction filter, the metadata
//! of organizations, projects, DSN keys and tokens ([`Meta`]), and the durable ingest log
//! ([`Log`]: [`EmbeddedLog`], or Kafka with [`KafkaLog`] and [`KafkaConsumer`]) that sits
//! between ingest and the processor.
//!
//! Durability contract (design.md §3): an append is acknowledged only once its records are
//! in the WAL (fsynced under [`Durability::Fsync`]); the processor writes its results and its
//! consumer offset in one write batch ([`commit_consumed`]), so a crash replays from the last
//! committed offset and nothing is applied twice.

pub mod alerts;
pub mod attachments;
pub mod cf;
mod db;
mod error;
pub mod feedback;
pub mod hist;
pub mod kafka;
pub mod keys;
mod log;
mod meta;
pub mod meta_topic;
pub mod records;
pub mod releases;
pub mod sessions;
pub mod workflow;

pub use db::{
    decode_i64, encode_i64, limit_malloc_retention, now_ms, Durability, MemoryUsage, OpenMode,
    Rocks, Store, StoreOptions,
};
pub use error::{Result, StorageError};
pub use kafka::{
    commit_kafka_offset, ensure_topics, kafka_node_id, kafka_offset, InvalidMessage, KafkaBatch,
    KafkaConfig, KafkaConsumer, KafkaLog, KafkaLogStats, KafkaRecord, KafkaTopics, Owners,
    KAFKA_DECODE_REASON,
};
pub use log::{
    commit_consumed, consumer_offset, AppendTicket, EmbeddedLog, EmbeddedLogOptions, Log,
    LogReader, LogRecord, LogSignal, EMBEDDED_CONSUMER,
};
pub use meta::{
    random_hex32, ApiToken, Bootstrap, KeyRateLimit, Meta, Organization, Project, ProjectKey,
    ProjectSettings, ALL_SCOPES,
};
pub use releases::ensure_release;
/// The write batch every crate fills and [`Store::write`] commits (non-transactional).
pub type WriteBatch = rocksdb::WriteBatchWithTransaction<false>;
/// Column family handles and the trait `merge_cf`/`put_cf` take, for crates that write batches.
pub use rocksdb::{AsColumnFamilyRef, BoundColumnFamily};
