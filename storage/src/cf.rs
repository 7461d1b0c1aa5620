//! Column family names. Every table osprey keeps in RocksDB is one of these; the key layout of
//! each lives in [`crate::keys`].

/// The durable ingest log (embedded mode): offset → encoded [`crate::LogRecord`].
pub const LOG: &str = "log";
/// Metadata: organizations, projects, DSN keys, API tokens, sequences, consumer offsets.
pub const META: &str = "meta";
/// Stored events (errors and transactions), zstd-compressed JSON keyed by (project, event id).
pub const EVENTS: &str = "events";
/// Issues (Sentry "groups") and the grouping hashes that point at them.
pub const ISSUES: &str = "issues";
/// Secondary indexes: events by issue and time, by project and time, by trace id.
pub const INDEX: &str = "index";
/// Counters, summed by an associative merge operator (no read-modify-write on the hot path).
pub const COUNTERS: &str = "counters";
/// HDR histograms of transaction durations per time bucket, merged by a merge operator.
pub const HISTOGRAMS: &str = "histograms";
/// Outcomes (accepted, filtered, rate limited, invalid, client discards) by hour.
pub const OUTCOMES: &str = "outcomes";

/// Event attachments (log files, screenshots, minidumps): see [`crate::attachments`].
pub const ATTACHMENTS: &str = "attachments";

/// Every column family, in creation order.
pub const ALL: &[&str] = &[
    LOG,
    META,
    EVENTS,
    ISSUES,
    INDEX,
    COUNTERS,
    HISTOGRAMS,
    OUTCOMES,
    ATTACHMENTS,
];
