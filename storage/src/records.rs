//! Record types shared by the processor (which writes them) and the query layer (which reads
//! them): the issue record and the stored event.
//!
//! The issue record is small JSON in the `issues` column family; its fast-moving numbers
//! (times seen, unique users, tag facets) are merge-operator counters in `counters`, so the
//! record itself changes only when something a human sees changes (last seen, status, …).
//! A stored event is the 8-byte timestamp followed by its JSON ([`encode_event_plain`];
//! the events column family compresses it block-wise), so retention reads the time without
//! parsing. Values of the earlier format (timestamp + zstd-compressed JSON, [`encode_event`])
//! still decode.

use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::{Mutex, MutexGuard};
use serde::{Deserialize, Serialize};

use crate::error::{Result, StorageError};
use crate::keys::{self, EVENT_VALUE_TS_LEN};
use crate::{cf, Store};

/// Sentry's group status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum IssueStatus {
    /// Open.
    #[default]
    Unresolved,
    /// Resolved by a user (or by auto-resolve).
    Resolved,
    /// Archived ("ignored" in the API).
    Ignored,
}

impl IssueStatus {
    /// The API spelling (`unresolved`, `resolved`, `ignored`).
    pub fn as_str(self) -> &'static str {
        match self {
            IssueStatus::Unresolved => "unresolved",
            IssueStatus::Resolved => "resolved",
            IssueStatus::Ignored => "ignored",
        }
    }
}

/// Sentry's group substatus.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IssueSubstatus {
    /// First seen less than 7 days ago.
    New,
    /// Unresolved and neither new nor regressed.
    Ongoing,
    /// Came back after being resolved.
    Regressed,
    /// Unresolved because it grew past its archive condition.
    Escalating,
    /// Archived until it escalates.
    ArchivedUntilEscalating,
    /// Archived for good.
    ArchivedForever,
    /// Archived until a count/duration condition is met.
    ArchivedUntilConditionMet,
}

impl IssueSubstatus {
    /// The API spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            IssueSubstatus::New => "new",
            IssueSubstatus::Ongoing => "ongoing",
            IssueSubstatus::Regressed => "regressed",
            IssueSubstatus::Escalating => "escalating",
            IssueSubstatus::ArchivedUntilEscalating => "archived_until_escalating",
            IssueSubstatus::ArchivedForever => "archived_forever",
            IssueSubstatus::ArchivedUntilConditionMet => "archived_until_condition_met",
        }
    }
}

/// How an issue was resolved (Sentry's `GroupResolution`), kept so that a later event can
/// decide whether it is a regression.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resolution {
    /// When it was resolved, unix ms.
    pub resolved_ms: u64,
    /// `Some(release)`: resolved in that release ("in next release" stores the release current
    /// when the user resolved). Events from that release or an older one do not regress it.
    #[serde(default)]
    pub release: Option<String>,
    /// Resolved "in the next release" (events of `release` itself still belong to the bug).
    #[serde(default)]
    pub in_next_release: bool,
}

/// Issue metadata as Sentry derives it (`type`, `value`, `filename`, `function` for errors;
/// `title` for message events).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IssueMetadata {
    /// Exception type.
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "type")]
    pub exception_type: Option<String>,
    /// Exception value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// File of the crashing frame.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filename: Option<String>,
    /// Function of the crashing frame.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function: Option<String>,
    /// Title of a message ("default") event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// Whether the main exception was unhandled (`mechanism.handled == false`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unhandled: bool,
}

/// One issue (Sentry "group"). Counters live beside it (see the module doc).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IssueRecord {
    /// Numeric id, unique across projects.
    pub id: u64,
    /// Owning project.
    pub project_id: u64,
    /// Per-project sequence number behind the short id (`SLUG-{base32(short_id)}`).
    pub short_id: u64,
    /// `error` or `default`.
    #[serde(rename = "type")]
    pub event_type: String,
    /// Title as Sentry computes it (`Type: value` or the message).
    pub title: String,
    /// Culprit (transaction, or `module in function` of the crashing frame).
    pub culprit: String,
    /// Metadata for the UI/API.
    pub metadata: IssueMetadata,
    /// Level of the latest event.
    pub level: String,
    /// Platform of the first event.
    pub platform: String,
    /// Logger of the latest event.
    #[serde(default)]
    pub logger: String,
    /// Status.
    pub status: IssueStatus,
    /// Substatus (`None` only for old resolved records).
    pub substatus: Option<IssueSubstatus>,
    /// First event time, unix ms.
    pub first_seen_ms: u64,
    /// Latest event time, unix ms.
    pub last_seen_ms: u64,
    /// When the issue last became active (created or regressed), unix ms.
    #[serde(default)]
    pub active_at_ms: u64,
    /// Release of the first event that had one.
    #[serde(default)]
    pub first_release: Option<String>,
    /// Release of the latest event that had one.
    #[serde(default)]
    pub last_release: Option<String>,
    /// Set while resolved.
    #[serde(default)]
    pub resolution: Option<Resolution>,
    /// The primary grouping hash the issue was created with.
    #[serde(default)]
    pub primary_hash: String,
}

/// Sentry's short-id alphabet (Crockford-style base 32: no I, L, O, U).
const SHORT_ID_ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// Encodes a short id number the way Sentry does (`base32_encode` in sentry.utils.numbers).
pub fn base32_encode(mut number: u64) -> String {
    if number == 0 {
        return "0".into();
    }
    let mut out = Vec::with_capacity(13);
    while number > 0 {
        out.push(SHORT_ID_ALPHABET[(number % 32) as usize]);
        number /= 32;
    }
    out.reverse();
    String::from_utf8(out).unwrap_or_default()
}

/// Decodes a short id number; like Sentry, `O` reads as `0` and `I`/`L` as `1`.
pub fn base32_decode(text: &str) -> Option<u64> {
    if text.is_empty() || text.len() > 13 {
        return None;
    }
    let mut n: u64 = 0;
    for c in text.chars() {
        let c = match c.to_ascii_uppercase() {
            'O' => '0',
            'I' | 'L' => '1',
            c => c,
        };
        let digit = SHORT_ID_ALPHABET.iter().position(|&a| a as char == c)? as u64;
        n = n.checked_mul(32)?.checked_add(digit)?;
    }
    Some(n)
}

/// `DEFAULT-1A`: the project slug uppercased, a dash, the base-32 number.
pub fn qualified_short_id(project_slug: &str, number: u64) -> String {
    format!("{}-{}", project_slug.to_uppercase(), base32_encode(number))
}

/// Splits `SLUG-NUM` into (slug lowercased, number).
pub fn parse_short_id(text: &str) -> Option<(String, u64)> {
    let (slug, num) = text.rsplit_once('-')?;
    if slug.is_empty() {
        return None;
    }
    Some((slug.to_lowercase(), base32_decode(num)?))
}

impl IssueRecord {
    /// Encodes the record for the `issues` column family.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Decodes a stored record.
    pub fn from_bytes(bytes: &[u8]) -> Result<IssueRecord> {
        serde_json::from_slice(bytes).map_err(|e| StorageError::Corrupt {
            what: "issue record",
            detail: e.to_string(),
        })
    }
}

/// Loads one issue record.
pub fn load_issue(store: &Store, issue_id: u64) -> Result<Option<IssueRecord>> {
    match store
        .db()
        .get_cf(&store.cf(cf::ISSUES), keys::issue(issue_id))?
    {
        Some(bytes) => Ok(Some(IssueRecord::from_bytes(&bytes)?)),
        None => Ok(None),
    }
}

static ISSUE_WRITE_LOCK: Mutex<()> = Mutex::new(());

/// Writes of issue records made in this process so far (see [`issue_record_writes`]).
static ISSUE_RECORD_WRITES: AtomicU64 = AtomicU64::new(0);

/// How many writes of issue records this process has made (API status changes, processor
/// batches; in any store). A copy of issue records kept across batches (the processor's) is
/// current only while this number is what it was right after its own last write: read it
/// under [`issue_write_lock`], which every writer of issue records holds.
pub fn issue_record_writes() -> u64 {
    ISSUE_RECORD_WRITES.load(Ordering::Acquire)
}

/// Counts a write of issue records (made or about to be made under [`issue_write_lock`])
/// and returns the new [`issue_record_writes`].
pub fn count_issue_record_write() -> u64 {
    ISSUE_RECORD_WRITES.fetch_add(1, Ordering::AcqRel) + 1
}

/// Serializes read-modify-write of issue records inside one process: the processor holds it
/// from reading the issues a batch touches until the batch is written, and the API holds it
/// while it changes a status, so neither overwrites the other's change.
pub fn issue_write_lock() -> MutexGuard<'static, ()> {
    ISSUE_WRITE_LOCK.lock()
}

/// Changes an issue record under [`issue_write_lock`] (for status changes from the API).
/// Returns the updated record, or `None` if the issue does not exist.
pub fn update_issue(
    store: &Store,
    issue_id: u64,
    change: impl FnOnce(&mut IssueRecord),
) -> Result<Option<IssueRecord>> {
    store.ensure_writable()?;
    let _guard = issue_write_lock();
    let Some(mut record) = load_issue(store, issue_id)? else {
        return Ok(None);
    };
    change(&mut record);
    // Counted before the write: a copy kept elsewhere is stale even if the write fails
    // after reaching the memtable.
    count_issue_record_write();
    let mut opts = rocksdb::WriteOptions::default();
    opts.set_sync(true);
    store.db().put_cf_opt(
        &store.cf(cf::ISSUES),
        keys::issue(issue_id),
        record.to_bytes(),
        &opts,
    )?;
    Ok(Some(record))
}

/// A stored event: the normalized event JSON plus what processing derived.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredEvent {
    /// The event id (32 lowercase hex).
    pub event_id: String,
    /// Project.
    pub project_id: u64,
    /// The issue it belongs to (`None` for transactions and other non-grouped events).
    #[serde(default)]
    pub issue_id: Option<u64>,
    /// Event time, unix ms.
    pub timestamp_ms: u64,
    /// Receive time, unix ms.
    pub received_ms: u64,
    /// Contributing grouping hashes, primary first.
    #[serde(default)]
    pub hashes: Vec<String>,
    /// The normalized, scrubbed event.
    pub event: serde_json::Value,
}

/// Encodes a stored event value: timestamp (ms, BE) + the event's JSON, uncompressed.
///
/// This is what the processor writes. The events column family compresses its blocks with
/// zstd and a dictionary trained per SST file (see `db.rs`), which shrinks loadgen error
/// events far more than compressing each value alone: the events of a block share most of
/// their keys, SDK context and stack frames, and a per-value compressor sees none of that.
/// It also takes the processor's per-event zstd call off the hot path.
pub fn encode_event_plain(event: &StoredEvent) -> Result<Vec<u8>> {
    // Events are a few KB: start the buffer there instead of growing it from 128 bytes.
    let mut out = Vec::with_capacity(4096);
    out.extend_from_slice(&event.timestamp_ms.to_be_bytes());
    serde_json::to_writer(&mut out, event)?;
    Ok(out)
}

/// Encodes a stored event value in the earlier format: timestamp (ms, BE) + zstd(JSON).
/// [`decode_event`] reads it (data directories written before [`encode_event_plain`]).
pub fn encode_event(event: &StoredEvent, zstd_level: i32) -> Result<Vec<u8>> {
    let mut compressor = zstd::bulk::Compressor::new(zstd_level)?;
    encode_event_with(event, &mut compressor)
}

/// [`encode_event`] with a reusable compressor (a zstd context costs more to set up than
/// compressing one small event).
pub fn encode_event_with(
    event: &StoredEvent,
    compressor: &mut zstd::bulk::Compressor<'_>,
) -> Result<Vec<u8>> {
    let mut json = Vec::with_capacity(4096);
    serde_json::to_writer(&mut json, event)?;
    // Compress straight behind the timestamp: no intermediate buffer, no second copy.
    let mut out = vec![0u8; EVENT_VALUE_TS_LEN + zstd::compress_bound(json.len())];
    out[..EVENT_VALUE_TS_LEN].copy_from_slice(&event.timestamp_ms.to_be_bytes());
    let written = compressor.compress_to_buffer(&json, &mut out[EVENT_VALUE_TS_LEN..])?;
    out.truncate(EVENT_VALUE_TS_LEN + written);
    Ok(out)
}

/// Upper bound on a decompressed event (events are capped far below this at ingest).
const MAX_EVENT_JSON: usize = 64 << 20;

/// The first bytes of a zstd frame (little-endian 0xFD2FB528).
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

/// Decodes a value written by [`encode_event_plain`] or [`encode_event`]. The two formats
/// are told apart by the first byte after the timestamp: a JSON object starts with `{`, a
/// zstd frame with its magic number, which can never start JSON.
pub fn decode_event(value: &[u8]) -> Result<StoredEvent> {
    let corrupt = |detail: String| StorageError::Corrupt {
        what: "stored event",
        detail,
    };
    let body = value
        .get(EVENT_VALUE_TS_LEN..)
        .ok_or_else(|| corrupt("shorter than its timestamp".into()))?;
    if body.first() == Some(&b'{') {
        return serde_json::from_slice(body).map_err(|e| corrupt(e.to_string()));
    }
    if !body.starts_with(&ZSTD_MAGIC) {
        return Err(corrupt("neither JSON nor a zstd frame".into()));
    }
    // Stream-decode with a cap: `bulk::decompress` would allocate the whole cap up front.
    let mut json = Vec::with_capacity(body.len() * 4);
    let decoder = zstd::stream::read::Decoder::new(body).map_err(|e| corrupt(e.to_string()))?;
    std::io::Read::read_to_end(
        &mut std::io::Read::take(decoder, MAX_EVENT_JSON as u64 + 1),
        &mut json,
    )
    .map_err(|e| corrupt(e.to_string()))?;
    if json.len() > MAX_EVENT_JSON {
        return Err(corrupt("larger than the event size cap".into()));
    }
    serde_json::from_slice(&json).map_err(|e| corrupt(e.to_string()))
}

/// Loads one stored event.
pub fn load_event(
    store: &Store,
    project_id: u64,
    event_id: &uuid::Uuid,
) -> Result<Option<StoredEvent>> {
    match store
        .db()
        .get_cf(&store.cf(cf::EVENTS), keys::event(project_id, event_id))?
    {
        Some(bytes) => Ok(Some(decode_event(&bytes)?)),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_ids_match_sentry() {
        assert_eq!(base32_encode(1), "1");
        assert_eq!(base32_encode(42), "1A");
        assert_eq!(base32_encode(32 * 32), "100");
        assert_eq!(qualified_short_id("default", 42), "DEFAULT-1A");
        assert_eq!(parse_short_id("DEFAULT-1A"), Some(("default".into(), 42)));
        assert_eq!(parse_short_id("my-app-1O"), Some(("my-app".into(), 32)));
        assert_eq!(parse_short_id("DEFAULT-U"), None);
        assert_eq!(parse_short_id("nodash"), None);
        for n in [0u64, 1, 31, 32, 1000, u32::MAX as u64] {
            assert_eq!(base32_decode(&base32_encode(n)), Some(n));
        }
    }

    #[test]
    fn an_api_status_change_counts_as_an_issue_record_write() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), &crate::StoreOptions::default()).unwrap();
        let record = IssueRecord {
            id: 5,
            project_id: 1,
            short_id: 1,
            event_type: "error".into(),
            title: "E".into(),
            culprit: String::new(),
            metadata: IssueMetadata::default(),
            level: "error".into(),
            platform: "python".into(),
            logger: String::new(),
            status: IssueStatus::Unresolved,
            substatus: None,
            first_seen_ms: 1,
            last_seen_ms: 1,
            active_at_ms: 1,
            first_release: None,
            last_release: None,
            resolution: None,
            primary_hash: "h".into(),
        };
        store
            .db()
            .put_cf(&store.cf(cf::ISSUES), keys::issue(5), record.to_bytes())
            .unwrap();
        let before = issue_record_writes();
        let updated = update_issue(&store, 5, |r| r.status = IssueStatus::Resolved).unwrap();
        assert_eq!(updated.unwrap().status, IssueStatus::Resolved);
        // Other tests of this process may count writes too: only growth is certain.
        assert!(issue_record_writes() > before);
        let counted = count_issue_record_write();
        assert!(counted > before + 1 && counted <= issue_record_writes());
    }

    #[test]
    fn stored_event_roundtrip_and_corruption() {
        let e = StoredEvent {
            event_id: "a".repeat(32),
            project_id: 1,
            issue_id: Some(2),
            timestamp_ms: 1_700_000_000_000,
            received_ms: 1_700_000_000_001,
            hashes: vec!["h".into()],
            event: serde_json::json!({"message": "hi"}),
        };
        // Both formats: the plain one the processor writes and the zstd one of older data
        // directories.
        let plain = encode_event_plain(&e).unwrap();
        let zstd = encode_event(&e, 1).unwrap();
        assert_eq!(plain[EVENT_VALUE_TS_LEN], b'{');
        assert_eq!(zstd[EVENT_VALUE_TS_LEN..][..4], ZSTD_MAGIC);
        for v in [&plain, &zstd] {
            assert_eq!(keys::timestamp_of(cf::EVENTS, &[], v), Some(e.timestamp_ms));
            assert_eq!(decode_event(v).unwrap(), e);
            assert!(decode_event(&v[..4]).is_err());
            assert!(decode_event(&v[..12]).is_err());
            assert!(decode_event(&v[..v.len() - 1]).is_err());
        }
        // Neither format: refused, not guessed.
        let mut other = plain.clone();
        other[EVENT_VALUE_TS_LEN] = b'x';
        assert!(decode_event(&other).is_err());
        assert!(decode_event(&plain[..EVENT_VALUE_TS_LEN]).is_err());
    }
}
