//! The storage crate's one error type.

/// Everything that can go wrong below the storage API.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// RocksDB reported an error (I/O, corruption, lock held by another process, …).
    #[error("rocksdb: {0}")]
    Rocks(#[from] rocksdb::Error),
    /// A stored value could not be decoded; the data directory is damaged or from a newer version.
    #[error("corrupt {what}: {detail}")]
    Corrupt {
        /// Which kind of record.
        what: &'static str,
        /// What was wrong with it.
        detail: String,
    },
    /// A JSON-encoded metadata record failed to (de)serialize.
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),
    /// The log's in-flight byte budget is exhausted; the caller should answer 503 + Retry-After.
    #[error("log backlog over budget, retry after {retry_after_secs}s")]
    Backpressure {
        /// Seconds the client should wait before retrying.
        retry_after_secs: u64,
    },
    /// The log writer has shut down (the process is stopping).
    #[error("log writer stopped")]
    Closed,
    /// The requested object does not exist.
    #[error("{0} not found")]
    NotFound(String),
    /// The request conflicts with existing state (duplicate slug, …).
    #[error("conflict: {0}")]
    Conflict(String),
    /// A value given by a client is not acceptable (bad release version, empty name, …).
    #[error("invalid: {0}")]
    Invalid(String),
    /// The store was opened read-only and a write was attempted.
    #[error("store is open read-only")]
    ReadOnly,
    /// Filesystem error outside RocksDB (creating the data directory, …).
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
}

/// Shorthand used throughout the crate.
pub type Result<T, E = StorageError> = std::result::Result<T, E>;
