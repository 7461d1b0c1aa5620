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
}

/// Shorthand used throughout the crate.
pub type Result<T, E = ProcessorError> = std::result::Result<T, E>;
