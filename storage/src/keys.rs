//! Every key layout osprey writes, in one place.
//!
//! Keys are a one-byte table prefix followed by fixed-width big-endian integers, so that byte
//! order equals numeric order and time order: range scans over "project 7, last hour" are a
//! single seek. Variable-length parts (slugs, hashes as text) only ever come last.
//!
//! Retention relies on [`timestamp_of`]: the compaction filter asks it for the time of a
//! record and drops records older than the retention window, so expiry costs no scan.

use uuid::Uuid;

use crate::cf;

/// Prefix bytes of the tables inside the `meta` column family.
pub mod meta {
    /// Organization by id: `o` + id.
    pub const ORG: u8 = b'o';
    /// Project by id: `p` + id.
    pub const PROJECT: u8 = b'p';
    /// DSN key by public key: `k` + 32 ASCII chars.
    pub const KEY: u8 = b'k';
    /// API token by the hex sha256 of its secret: `t` + hash.
    pub const TOKEN: u8 = b't';
    /// Id sequences: `s` + name.
    pub const SEQUENCE: u8 = b's';
    /// Consumer positions: `c` + consumer name (+ partition); value = next offset (u64 BE).
    pub const CONSUMER: u8 = b'c';
}

/// Prefix bytes of the tables inside the `index` column family.
pub mod index {
    /// Events of an issue by time: `i` + issue id + ts ms + event id.
    pub const ISSUE_TIME: u8 = b'i';
    /// Events of a project by time: `p` + project id + ts ms + event id.
    pub const PROJECT_TIME: u8 = b'p';
    /// Events and transactions of a trace: `t` + trace id (16 bytes) + ts ms + event id.
    pub const TRACE: u8 = b't';
}

/// Prefix bytes of the tables inside the `issues` column family. None of them expires: an
/// issue outlives its events (Sentry keeps the group after the events age out).
pub mod issues {
    /// Grouping hash → issue id: `h` + project id + the 32 hex chars of the hash.
    pub const HASH: u8 = b'h';
    /// The issue record (JSON [`crate::records::IssueRecord`]): `g` + issue id.
    pub const ISSUE: u8 = b'g';
    /// Short id → issue id: `s` + project id + the per-project short id number.
    pub const SHORT_ID: u8 = b's';
    /// Unique users of an issue (value empty): `u` + issue id + xxh3 of the user identity.
    pub const USER: u8 = b'u';
}

/// Prefix bytes of the tables inside the `counters` column family. Lowercase kinds never
/// expire; uppercase kinds are time-bucketed ([`bucketed`]) and follow retention.
pub mod counters {
    /// Times seen of an issue: `n` + issue id.
    pub const ISSUE_EVENTS: u8 = b'n';
    /// Unique users of an issue: `u` + issue id.
    pub const ISSUE_USERS: u8 = b'u';
    /// Tag facet of an issue: `t` + issue id + tag key + `0x00` + tag value.
    pub const ISSUE_TAG: u8 = b't';
    /// Events of an issue per hour: bucketed `E` + project id + hour start ms + issue id.
    pub const ISSUE_HOURLY: u8 = b'E';
}

/// Prefix of outcome counters in the `outcomes` column family (bucketed by hour).
pub const OUTCOME: u8 = b'O';

/// Key of a log record: its offset.
pub fn log_offset(offset: u64) -> [u8; 8] {
    offset.to_be_bytes()
}

/// Reads back the offset from a log key.
pub fn parse_log_offset(key: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(key.try_into().ok()?))
}

/// `prefix` + big-endian `id`.
pub fn prefixed_id(prefix: u8, id: u64) -> [u8; 9] {
    let mut key = [0u8; 9];
    key[0] = prefix;
    key[1..].copy_from_slice(&id.to_be_bytes());
    key
}

/// `prefix` + text.
pub fn prefixed_str(prefix: u8, text: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(1 + text.len());
    key.push(prefix);
    key.extend_from_slice(text.as_bytes());
    key
}

/// Key of a stored event: project id + event id.
pub fn event(project_id: u64, event_id: &Uuid) -> [u8; 24] {
    let mut key = [0u8; 24];
    key[..8].copy_from_slice(&project_id.to_be_bytes());
    key[8..].copy_from_slice(event_id.as_bytes());
    key
}

/// Index key: `prefix` + 8-byte owner (issue or project id) + ts ms + event id.
pub fn index_by_time(prefix: u8, owner: u64, ts_ms: u64, event_id: &Uuid) -> [u8; 33] {
    let mut key = [0u8; 33];
    key[0] = prefix;
    key[1..9].copy_from_slice(&owner.to_be_bytes());
    key[9..17].copy_from_slice(&ts_ms.to_be_bytes());
    key[17..].copy_from_slice(event_id.as_bytes());
    key
}

/// Trace index key: `t` + trace id + ts ms + event id.
pub fn index_trace(trace_id: &Uuid, ts_ms: u64, event_id: &Uuid) -> [u8; 41] {
    let mut key = [0u8; 41];
    key[0] = index::TRACE;
    key[1..17].copy_from_slice(trace_id.as_bytes());
    key[17..25].copy_from_slice(&ts_ms.to_be_bytes());
    key[25..].copy_from_slice(event_id.as_bytes());
    key
}

/// Stored event values start with the event's timestamp (ms, BE) so retention can read it
/// without decompressing; the rest is the zstd-compressed JSON.
pub const EVENT_VALUE_TS_LEN: usize = 8;

fn be_u64_at(bytes: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_be_bytes(bytes.get(at..at + 8)?.try_into().ok()?))
}

/// The time (unix ms) a record belongs to, for retention; `None` means "keep forever".
///
/// Every time-keyed layout must be listed here, or its records never expire.
pub fn timestamp_of(cf_name: &str, key: &[u8], value: &[u8]) -> Option<u64> {
    match cf_name {
        cf::EVENTS => be_u64_at(value, 0),
        cf::INDEX => match key.first()? {
            &index::ISSUE_TIME | &index::PROJECT_TIME => be_u64_at(key, 9),
            &index::TRACE => be_u64_at(key, 17),
            _ => None,
        },
        // Time-bucketed aggregates put the bucket start right after a 1-byte kind and an
        // 8-byte project id: kind + project + bucket start ms + …
        cf::HISTOGRAMS | cf::COUNTERS | cf::OUTCOMES => match key.first()? {
            kind if kind.is_ascii_uppercase() => be_u64_at(key, 9),
            _ => None,
        },
        _ => None,
    }
}

/// Time-bucketed aggregate key: `kind` (an ASCII uppercase letter, which is what marks the
/// key as expiring) + project id + bucket start ms, followed by `rest` (dimensions).
pub fn bucketed(kind: u8, project_id: u64, bucket_start_ms: u64, rest: &[u8]) -> Vec<u8> {
    debug_assert!(kind.is_ascii_uppercase(), "bucketed kinds are uppercase");
    let mut key = Vec::with_capacity(17 + rest.len());
    key.push(kind);
    key.extend_from_slice(&project_id.to_be_bytes());
    key.extend_from_slice(&bucket_start_ms.to_be_bytes());
    key.extend_from_slice(rest);
    key
}

/// Grouping hash → issue: `h` + project id + hash text.
pub fn issue_hash(project_id: u64, hash: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(9 + hash.len());
    key.push(issues::HASH);
    key.extend_from_slice(&project_id.to_be_bytes());
    key.extend_from_slice(hash.as_bytes());
    key
}

/// Issue record key: `g` + issue id.
pub fn issue(issue_id: u64) -> [u8; 9] {
    prefixed_id(issues::ISSUE, issue_id)
}

/// Short id lookup key: `s` + project id + short id number.
pub fn issue_short_id(project_id: u64, number: u64) -> [u8; 17] {
    let mut key = [0u8; 17];
    key[0] = issues::SHORT_ID;
    key[1..9].copy_from_slice(&project_id.to_be_bytes());
    key[9..].copy_from_slice(&number.to_be_bytes());
    key
}

/// Unique-user membership key: `u` + issue id + user identity hash.
pub fn issue_user(issue_id: u64, user_hash: u64) -> [u8; 17] {
    let mut key = [0u8; 17];
    key[0] = issues::USER;
    key[1..9].copy_from_slice(&issue_id.to_be_bytes());
    key[9..].copy_from_slice(&user_hash.to_be_bytes());
    key
}

/// Per-issue counter (`n` times seen, `u` users): kind + issue id.
pub fn issue_counter(kind: u8, issue_id: u64) -> [u8; 9] {
    prefixed_id(kind, issue_id)
}

/// Tag facet counter: `t` + issue id + key + `0x00` + value. Tag keys never contain `0x00`
/// (normalization restricts them to `a-zA-Z0-9_.:-`).
pub fn issue_tag(issue_id: u64, tag_key: &str, tag_value: &str) -> Vec<u8> {
    let mut key = issue_tag_prefix(issue_id, tag_key);
    key.extend_from_slice(tag_value.as_bytes());
    key
}

/// Prefix of every value counter of one tag key of an issue (ends with the `0x00`).
pub fn issue_tag_prefix(issue_id: u64, tag_key: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(10 + tag_key.len() + 16);
    key.push(counters::ISSUE_TAG);
    key.extend_from_slice(&issue_id.to_be_bytes());
    key.extend_from_slice(tag_key.as_bytes());
    key.push(0);
    key
}

/// Events of an issue in one hour: bucketed `E` + project + hour start + issue id.
pub fn issue_hourly(project_id: u64, hour_start_ms: u64, issue_id: u64) -> Vec<u8> {
    bucketed(
        counters::ISSUE_HOURLY,
        project_id,
        hour_start_ms,
        &issue_id.to_be_bytes(),
    )
}

/// META key of a Kafka partition's next unprocessed offset (under [`meta::CONSUMER`], beside
/// the embedded log's `embedded`): `c` + `kafka:{topic}:{partition}`. Topic names cannot
/// contain `:`, so the key is unambiguous.
pub fn kafka_consumer(topic: &str, partition: i32) -> Vec<u8> {
    prefixed_str(meta::CONSUMER, &format!("kafka:{topic}:{partition}"))
}

/// Outcome counter: bucketed `O` + project + hour start + outcome id + category id + reason.
pub fn outcome(
    project_id: u64,
    hour_start_ms: u64,
    outcome: u8,
    category: u8,
    reason: &str,
) -> Vec<u8> {
    let mut rest = Vec::with_capacity(2 + reason.len());
    rest.push(outcome);
    rest.push(category);
    rest.extend_from_slice(reason.as_bytes());
    bucketed(OUTCOME, project_id, hour_start_ms, &rest)
}

/// Start of the hour `ts_ms` falls in.
pub fn hour_start(ts_ms: u64) -> u64 {
    ts_ms - ts_ms % 3_600_000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_keys_sort_by_time() {
        let id = Uuid::from_u128(7);
        let a = index_by_time(index::ISSUE_TIME, 5, 1_000, &id);
        let b = index_by_time(index::ISSUE_TIME, 5, 2_000, &id);
        let c = index_by_time(index::ISSUE_TIME, 6, 0, &id);
        assert!(a < b && b < c);
        assert_eq!(timestamp_of(cf::INDEX, &a, &[]), Some(1_000));
        let t = index_trace(&Uuid::from_u128(9), 3_000, &id);
        assert_eq!(timestamp_of(cf::INDEX, &t, &[]), Some(3_000));
    }

    #[test]
    fn bucketed_keys_expire_and_others_do_not() {
        let key = bucketed(b'H', 1, 60_000, b"checkout");
        assert_eq!(timestamp_of(cf::HISTOGRAMS, &key, &[]), Some(60_000));
        assert_eq!(timestamp_of(cf::COUNTERS, b"issue-total", &[]), None);
        assert_eq!(timestamp_of(cf::META, &key, &[]), None);
        let mut value = 42u64.to_be_bytes().to_vec();
        value.extend_from_slice(b"zstd...");
        assert_eq!(timestamp_of(cf::EVENTS, &[0; 24], &value), Some(42));
    }

    #[test]
    fn issue_layouts_keep_and_bucketed_issue_layouts_expire() {
        assert_eq!(
            timestamp_of(cf::COUNTERS, &issue_counter(counters::ISSUE_EVENTS, 3), &[]),
            None
        );
        assert_eq!(
            timestamp_of(cf::COUNTERS, &issue_tag(3, "level", "error"), &[]),
            None
        );
        assert_eq!(timestamp_of(cf::ISSUES, &issue(3), &[]), None);
        let hourly = issue_hourly(1, 7_200_000, 3);
        assert_eq!(timestamp_of(cf::COUNTERS, &hourly, &[]), Some(7_200_000));
        let o = outcome(1, 3_600_000, 1, 1, "localhost");
        assert_eq!(timestamp_of(cf::OUTCOMES, &o, &[]), Some(3_600_000));
        assert!(issue_tag(3, "a", "x").starts_with(&issue_tag_prefix(3, "a")));
        assert!(!issue_tag(3, "ab", "x").starts_with(&issue_tag_prefix(3, "a")));
        assert_eq!(hour_start(7_199_999), 3_600_000);
    }
}
