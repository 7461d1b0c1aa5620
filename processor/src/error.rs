//! The processor crate's one error type.

/// What can stop the processor. A bad event is never an error here: it becomes an outcome
/// with a reason (see [`crate::normalize::Invalid`]); errors are about the store.
#[derive(Debug, thiserror::Error)]
pub enum ProcessorError {
    /// The store failed (I/O, corruption, read-only instance).
    #[error(transparent)]
    Storage(#[from] storage::StorageError),
    /// RocksDB failed below the storage API (point reads of the processor's tables).
    #[error("rocksdb: {0}")]
    Rocks(#[from] rocksdb::Error),
    /// A webhook URL the built-in client cannot use (not `http://` or `https://`).
    #[error("unsupported webhook URL (use http:// or https://): {0}")]
    WebhookUrl(String),
    /// Network error or timeout while delivering a webhook.
    #[error("webhook io: {0}")]
    WebhookIo(#[from] std::io::Error),
    /// The webhook receiver answered with a non-2xx status.
    #[error("webhook answered HTTP {0}")]
    WebhookStatus(u16),
    /// The webhook receiver's answer was not HTTP/1.x.
    #[error("malformed HTTP answer from webhook")]
    WebhookMalformed,
    /// A worker's part of a write batch named a column family the store does not have.
    #[error("a worker wrote to unknown column family id {0}")]
    UnknownColumnFamily(u32),
    /// A worker thread of the processor could not be started.
    #[error("starting a processor worker thread: {0}")]
    Thread(std::io::Error),
    /// The TLS client for `https://` webhooks could not be set up or the handshake failed.
    #[error("webhook TLS: {0}")]
    WebhookTls(String),
}

/// Shorthand used throughout the crate.
pub type Result<T, E = ProcessorError> = std::result::Result<T, E>;
