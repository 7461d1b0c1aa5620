//! osprey's processor: from log records to issues, stored events and transaction histograms.
//!
//! Per error event it normalizes (as Relay does), scrubs PII, applies inbound filters,
//! computes Sentry's grouping hashes, finds or creates the issue and stores the event with its
//! indexes; per transaction it folds the duration into the HDR histograms of its time buckets.
//! Results and the log offset go into one RocksDB write batch (design.md §3).
//!
//! Modules: [`normalize`] (Relay's normalization), [`scrub`] (PII), [`filters`] (inbound
//! filters), [`grouping`] (Sentry's grouping hashes), [`issues`] (title/culprit/metadata/tags/regression), [`spans`] (streamed span items as transactions), [`perf_users`] (unique-user sketches for
//! user misery), [`encode`] (the stored event's bytes), [`pipeline`] (the batch
//! loop, outcomes and the exactly-once commit), [`alerts`] (issue alert rules evaluated in
//! the batch) and [`webhook`] (their bounded, retrying delivery); [`testing`] holds the loopback
//! webhook receiver the alert tests deliver to. Events are parsed into and handled as
//! [`value::Value`], a serde_json-compatible JSON value whose objects are key-sorted vectors.

pub mod alerts;
pub mod allocator;
pub mod encode;
pub mod error;
pub mod fast_hash;
pub mod feedback;
pub mod filters;
pub mod grouping;
pub mod issues;
pub mod kafka_loop;
pub mod metric_alerts;
pub mod normalize;
pub mod perf_users;
pub mod pipeline;
pub mod scrub;
pub mod security;
pub mod sessions;
pub mod spans;
pub mod testing;
pub mod transactions;
pub mod value;
pub mod webhook;

pub use error::{ProcessorError, Result};
pub use pipeline::{BatchOutcome, BatchStats, Processor, ProcessorConfig};

/// A xorshift64 generator: reproducible varied inputs for the tests that compare a fast path
/// with the path it replaces over many generated cases.
#[cfg(test)]
pub(crate) fn xorshift64(mut state: u64) -> impl FnMut() -> u64 {
    move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    }
}
