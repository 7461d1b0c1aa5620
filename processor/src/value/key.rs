//! [`Key`], the key type of the processor's JSON objects.
//!
//! Events repeat a small vocabulary of keys (`filename`, `lineno`, `in_app`, … once per stack
//! frame; `type`, `value`, `name`, `version` in every other object). As a `String`, each
//! parsed key was one allocation and one copy when the event was parsed and one free when it
//! was dropped: about half of all the allocations of processing an error event. A [`Key`]
//! whose text is in [`KNOWN`] points at that static text instead; any other key owns a
//! `Box<str>`. Both forms are a pointer and a length, so reading a key costs what reading a
//! `String` did, and equality, order and hashing are those of the text alone.

use std::borrow::{Borrow, Cow};
use std::fmt;
use std::hash::{Hash, Hasher};
use std::ops::Deref;

use serde::ser::{Serialize, Serializer};

/// An object key: its text, either static (a known key) or owned.
#[derive(Clone)]
pub struct Key(Repr);

#[derive(Clone)]
enum Repr {
    /// One of [`KNOWN`], with its index there: nothing to allocate or free.
    Known(&'static str, u8),
    /// Anything else.
    Owned(Box<str>),
}

impl Key {
    /// The key for `text`, without allocating when it is a known key.
    #[inline]
    pub fn new(text: &str) -> Key {
        match known_entry(text) {
            Some((k, i)) => Key(Repr::Known(k, i)),
            None => Key(Repr::Owned(Box::from(text))),
        }
    }

    /// The key's text.
    #[inline]
    pub fn as_str(&self) -> &str {
        match &self.0 {
            Repr::Known(s, _) => s,
            Repr::Owned(s) => s,
        }
    }

    /// The key's text if it is a known key (no byte of which needs escaping in JSON).
    #[cfg(test)]
    pub(crate) fn known(&self) -> Option<&'static str> {
        match self.0 {
            Repr::Known(s, _) => Some(s),
            Repr::Owned(_) => None,
        }
    }

    /// A known key as the encoder writes it, quotes and colon included (`"key":`).
    #[cfg(test)]
    pub(crate) fn known_quoted(&self) -> Option<&'static [u8]> {
        self.known_quoted_row()
            .and_then(|(row, len)| row.get(..len))
    }

    /// A known key's whole fixed-size row of `"key":` (zeros after it) and the length of
    /// `"key":` in it: the encoder copies the whole row, a constant size that compiles to a
    /// few vector moves instead of a `memcpy` call, and keeps only `len` bytes of it.
    #[inline]
    pub(crate) fn known_quoted_row(&self) -> Option<(&'static [u8; QUOTED_ROW], usize)> {
        match self.0 {
            Repr::Known(s, i) => KNOWN_QUOTED
                .get(usize::from(i))
                .map(|row| (row, s.len() + 3)),
            Repr::Owned(_) => None,
        }
    }

    /// The key's index in the known-key list if it is a known key: passes that decide
    /// something per key (scrubbing, frame normalization) look it up in a table or `match`
    /// it against [`known_index_of`] constants instead of comparing the text.
    #[inline]
    pub(crate) fn known_index(&self) -> Option<u8> {
        match self.0 {
            Repr::Known(_, i) => Some(i),
            Repr::Owned(_) => None,
        }
    }

    /// The key's text as a `String`.
    pub fn into_string(self) -> String {
        match self.0 {
            Repr::Known(s, _) => s.to_owned(),
            Repr::Owned(s) => s.into_string(),
        }
    }
}

impl From<&str> for Key {
    #[inline]
    fn from(text: &str) -> Key {
        Key::new(text)
    }
}

impl From<&String> for Key {
    fn from(text: &String) -> Key {
        Key::new(text)
    }
}

impl From<String> for Key {
    /// A known key drops the `String`; any other keeps its buffer (shrunk to fit).
    fn from(text: String) -> Key {
        match known_entry(&text) {
            Some((k, i)) => Key(Repr::Known(k, i)),
            None => Key(Repr::Owned(text.into_boxed_str())),
        }
    }
}

impl From<Cow<'_, str>> for Key {
    fn from(text: Cow<'_, str>) -> Key {
        match text {
            Cow::Borrowed(s) => Key::new(s),
            Cow::Owned(s) => Key::from(s),
        }
    }
}

impl From<Key> for String {
    fn from(key: Key) -> String {
        key.into_string()
    }
}

impl Deref for Key {
    type Target = str;
    #[inline]
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for Key {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl Borrow<str> for Key {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

impl PartialEq for Key {
    #[inline]
    fn eq(&self, other: &Key) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for Key {}

impl PartialOrd for Key {
    fn partial_cmp(&self, other: &Key) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Key {
    fn cmp(&self, other: &Key) -> std::cmp::Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl Hash for Key {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl PartialEq<str> for Key {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Key {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl PartialEq<String> for Key {
    fn eq(&self, other: &String) -> bool {
        self.as_str() == other.as_str()
    }
}

impl PartialEq<Key> for str {
    fn eq(&self, other: &Key) -> bool {
        self == other.as_str()
    }
}

impl PartialEq<Key> for &str {
    fn eq(&self, other: &Key) -> bool {
        *self == other.as_str()
    }
}

impl PartialEq<Key> for String {
    fn eq(&self, other: &Key) -> bool {
        self.as_str() == other.as_str()
    }
}

/// Like `str`'s (quoted, escaped), so `{:?}` of a map reads as it did with `String` keys.
impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Key {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// Keys stored without allocating: the event protocol's field names (top level, exceptions,
/// stack frames, contexts, request, user, breadcrumbs, spans, SDK info, CSP reports) and the
/// keys the processor itself adds. Other keys work the same, they just own their text. At
/// most 255 entries (the slot table stores index + 1 in a byte), each 1..=[`KNOWN_MAX_LEN`]
/// bytes long (a unit test checks both and that there are no duplicates).
const KNOWN: &[&str] = &[
    // Top level.
    "event_id",
    "timestamp",
    "start_timestamp",
    "received",
    "platform",
    "level",
    "logger",
    "transaction",
    "transaction_info",
    "server_name",
    "release",
    "dist",
    "environment",
    "message",
    "logentry",
    "formatted",
    "params",
    "exception",
    "threads",
    "stacktrace",
    "contexts",
    "tags",
    "extra",
    "user",
    "request",
    "sdk",
    "breadcrumbs",
    "fingerprint",
    "modules",
    "errors",
    "debug_meta",
    "spans",
    "measurements",
    "type",
    "version",
    "culprit",
    "title",
    "location",
    "metadata",
    "key_id",
    "project",
    "grouping_config",
    "id",
    "site",
    "_meta",
    "ingest_path",
    "main_thread",
    // Exceptions, threads, mechanisms.
    "values",
    "value",
    "module",
    "mechanism",
    "handled",
    "synthetic",
    "description",
    "help_link",
    "data",
    "meta",
    "exception_id",
    "parent_id",
    "is_exception_group",
    "source",
    "crashed",
    "current",
    "name",
    "state",
    "raw_stacktrace",
    "signal",
    "errno",
    "mach_exception",
    "ns_error",
    "code",
    "frames_omitted",
    "registers",
    "snapshot",
    // Stack frames.
    "frames",
    "filename",
    "abs_path",
    "function",
    "raw_function",
    "symbol",
    "package",
    "lineno",
    "colno",
    "in_app",
    "context_line",
    "pre_context",
    "post_context",
    "vars",
    "instruction_addr",
    "symbol_addr",
    "image_addr",
    "addr_mode",
    "lang",
    "trust",
    "stack_start",
    "function_id",
    // Contexts.
    "runtime",
    "os",
    "browser",
    "device",
    "app",
    "gpu",
    "culture",
    "cloud_resource",
    "trace",
    "response",
    "otel",
    "profile",
    "replay",
    "flags",
    "build",
    "kernel_version",
    "rooted",
    "raw_description",
    "family",
    "model",
    "model_id",
    "arch",
    "brand",
    "manufacturer",
    "simulator",
    "memory_size",
    "free_memory",
    "battery_level",
    "orientation",
    "screen_resolution",
    "timezone",
    "locale",
    "app_start_time",
    "app_identifier",
    "app_name",
    "app_version",
    "app_build",
    "device_app_hash",
    "build_type",
    "trace_id",
    "span_id",
    "parent_span_id",
    "op",
    "status",
    "origin",
    "exclusive_time",
    "sampled",
    "hash",
    "segment_id",
    "is_segment",
    "same_process_as_parent",
    "client_sample_rate",
    "status_code",
    "body_size",
    // Request and user.
    "url",
    "method",
    "query_string",
    "cookies",
    "headers",
    "env",
    "fragment",
    "inferred_content_type",
    "api_target",
    "REMOTE_ADDR",
    "SERVER_NAME",
    "SERVER_PORT",
    "Host",
    "User-Agent",
    "Accept",
    "Content-Type",
    "Referer",
    "email",
    "username",
    "ip_address",
    "segment",
    "geo",
    "city",
    "country_code",
    "region",
    "subdivision",
    // Breadcrumbs.
    "category",
    "unit",
    // SDK.
    "integrations",
    "packages",
    "features",
    // CSP and other security reports.
    "csp",
    "hpkp",
    "expectct",
    "expectstaple",
    "effective_directive",
    "blocked_uri",
    "document_uri",
    "original_policy",
    "referrer",
    "violated_directive",
    "source_file",
    "line_number",
    "column_number",
    "script_sample",
    "disposition",
    "hostname",
    "port",
    "date_time",
];

/// Every known key, by index ([`Key::known_index`]).
pub(crate) fn known_keys() -> &'static [&'static str] {
    KNOWN
}

/// Index of the known key `text`, for `const` items (`const FILENAME: u8 =
/// known_index_of("filename")`): a text that is not a known key fails the build.
pub(crate) const fn known_index_of(text: &str) -> u8 {
    let text = text.as_bytes();
    let mut k = 0;
    while k < KNOWN.len() {
        let candidate = KNOWN[k].as_bytes();
        if candidate.len() == text.len() {
            let mut i = 0;
            while i < text.len() && candidate[i] == text[i] {
                i += 1;
            }
            if i == text.len() {
                return k as u8;
            }
        }
        k += 1;
    }
    panic!("not a known key")
}

/// Longest known key; longer keys are not looked up.
const KNOWN_MAX_LEN: usize = 32;

/// Slots of the open-addressing table over [`KNOWN`] (a power of two, at least twice the
/// number of keys, so probes stay short and there is always an empty slot).
const SLOTS: usize = 512;

/// The first eight bytes of a key (little endian, zero past its end) and, for keys longer
/// than eight bytes, its last eight: comparing these two words and the length compares a
/// key of up to 16 bytes (nearly all) without a byte loop.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Words {
    head: u64,
    tail: u64,
}

/// [`Words`] of `b` (`const`, for the tables; at run time too when no window is at hand).
#[inline]
const fn words_of(b: &[u8]) -> Words {
    let mut head = 0u64;
    let mut i = 0;
    while i < b.len() && i < 8 {
        head |= (b[i] as u64) << (8 * i);
        i += 1;
    }
    Words {
        head,
        tail: tail_of(b),
    }
}

/// The last eight bytes of `b` if it is longer than eight, else 0.
#[inline]
const fn tail_of(b: &[u8]) -> u64 {
    let len = b.len();
    if len <= 8 {
        return 0;
    }
    let mut tail = 0u64;
    let mut i = 0;
    while i < 8 {
        tail |= (b[len - 8 + i] as u64) << (8 * i);
        i += 1;
    }
    tail
}

/// A key's slot: a multiplicative hash of its words and length (a collision only costs
/// another probe; the test bounds the longest probe sequence).
#[inline]
const fn slot_of(words: Words, len: usize) -> usize {
    let h =
        (words.head ^ words.tail.rotate_left(29) ^ len as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (h >> 55) as usize & (SLOTS - 1)
}

/// [`Words`] of each known key, by index.
static KNOWN_WORDS: [Words; KNOWN.len()] = {
    let mut words = [Words { head: 0, tail: 0 }; KNOWN.len()];
    let mut k = 0;
    while k < KNOWN.len() {
        words[k] = words_of(KNOWN[k].as_bytes());
        k += 1;
    }
    words
};

/// Index + 1 into [`KNOWN`] of the key in each slot, 0 = empty; built at compile time.
static TABLE: [u8; SLOTS] = {
    let mut table = [0u8; SLOTS];
    let mut k = 0;
    while k < KNOWN.len() {
        let mut slot = slot_of(KNOWN_WORDS[k], KNOWN[k].len());
        while table[slot] != 0 {
            slot = (slot + 1) & (SLOTS - 1);
        }
        table[slot] = (k + 1) as u8;
        k += 1;
    }
    table
};

/// Length of a row of [`KNOWN_QUOTED`]: the longest known key, two quotes and a colon.
pub(crate) const QUOTED_ROW: usize = KNOWN_MAX_LEN + 3;

/// Each known key as JSON writes it, `"key":`, at the start of a fixed-size row (the rest is
/// zeros): the encoder copies a known key in one go instead of quote, text, quote, colon.
static KNOWN_QUOTED: [[u8; QUOTED_ROW]; KNOWN.len()] = {
    let mut rows = [[0u8; QUOTED_ROW]; KNOWN.len()];
    let mut k = 0;
    while k < KNOWN.len() {
        let text = KNOWN[k].as_bytes();
        rows[k][0] = b'"';
        let mut i = 0;
        while i < text.len() {
            rows[k][1 + i] = text[i];
            i += 1;
        }
        rows[k][1 + text.len()] = b'"';
        rows[k][2 + text.len()] = b':';
        k += 1;
    }
    rows
};

/// The static copy of `text` if it is a known key.
#[cfg(test)]
fn known(text: &str) -> Option<&'static str> {
    known_entry(text).map(|(k, _)| k)
}

/// The static copy of `text` and its index in [`KNOWN`] if it is a known key.
#[inline]
fn known_entry(text: &str) -> Option<(&'static str, u8)> {
    if text.is_empty() || text.len() > KNOWN_MAX_LEN {
        return None;
    }
    known_by_words(text, words_of(text.as_bytes()))
}

/// [`known_entry`] given the key's [`Words`].
#[inline]
fn known_by_words(text: &str, words: Words) -> Option<(&'static str, u8)> {
    let len = text.len();
    let mut slot = slot_of(words, len);
    // Bounded: the table has empty slots (see SLOTS), so a probe sequence ends well before.
    for _ in 0..SLOTS {
        // Index + 1 of a known key, 0 for an empty slot.
        let index = TABLE.get(slot)?.checked_sub(1)?;
        let candidate = *KNOWN.get(usize::from(index))?;
        if *KNOWN_WORDS.get(usize::from(index))? == words
            && candidate.len() == len
            // Head and tail cover keys up to 16 bytes; longer ones compare their middle too.
            && (len <= 16 || candidate.as_bytes().get(8..len - 8) == text.as_bytes().get(8..len - 8))
        {
            return Some((candidate, index));
        }
        slot = (slot + 1) & (SLOTS - 1);
    }
    None
}

impl Key {
    /// [`Key::new`] for a key read out of a larger text: `window` holds the eight bytes of
    /// that text starting at the key (little endian; bytes past the key are masked off
    /// here), which saves assembling the key's first word byte by byte.
    #[inline]
    pub(super) fn new_with_window(text: &str, window: u64) -> Key {
        let len = text.len();
        if len == 0 || len > KNOWN_MAX_LEN {
            return Key(Repr::Owned(Box::from(text)));
        }
        let head = if len >= 8 {
            window
        } else {
            window & ((1u64 << (8 * len)) - 1)
        };
        let words = Words {
            head,
            tail: tail_of(text.as_bytes()),
        };
        match known_by_words(text, words) {
            Some((k, i)) => Key(Repr::Known(k, i)),
            None => Key(Repr::Owned(Box::from(text))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_keys_are_found_and_the_table_is_sound() {
        assert!(KNOWN.len() <= 255 && KNOWN.len() * 2 <= SLOTS);
        let mut longest_probe = 0;
        for &k in KNOWN {
            assert!(!k.is_empty() && k.len() <= KNOWN_MAX_LEN, "{k:?}");
            // The encoder writes known keys without looking for bytes to escape.
            assert_eq!(crate::encode::first_escape(k.as_bytes()), k.len(), "{k:?}");
            let found = known(k).expect("known key found");
            assert_eq!(found, k);
            let first = KNOWN.iter().position(|&x| x == k).expect("listed");
            assert_eq!(
                KNOWN.iter().rposition(|&x| x == k),
                Some(first),
                "duplicate {k:?}"
            );
            let mut slot = slot_of(words_of(k.as_bytes()), k.len());
            let mut probes = 1;
            while usize::from(TABLE[slot]) != first + 1 {
                slot = (slot + 1) & (SLOTS - 1);
                probes += 1;
            }
            longest_probe = longest_probe.max(probes);
        }
        // The encoder's quoted form of each known key is JSON's.
        for &k in KNOWN {
            let key = Key::new(k);
            let expected = format!("{}:", serde_json::to_string(k).expect("serializes"));
            assert_eq!(key.known_quoted(), Some(expected.as_bytes()), "{k:?}");
        }
        assert_eq!(Key::new("my_custom_key").known_quoted(), None);
        // A degenerate hash would show up here as long probe chains.
        assert!(longest_probe <= 8, "longest probe {longest_probe}");
        for unknown in [
            "",
            "x",
            "filenamex",
            "Filename",
            "file",
            "tag",
            "a".repeat(40).as_str(),
        ] {
            assert_eq!(known(unknown), None, "{unknown:?}");
        }
    }

    #[test]
    fn known_indices_name_their_keys() {
        for (i, &k) in KNOWN.iter().enumerate() {
            assert_eq!(usize::from(known_index_of(k)), i, "{k:?}");
            assert_eq!(Key::new(k).known_index(), Some(i as u8), "{k:?}");
            assert_eq!(known_keys()[i], k);
        }
        assert_eq!(Key::new("my_custom_key").known_index(), None);
        assert_eq!(Key::from(String::from("Filename")).known_index(), None);
    }

    #[test]
    fn window_lookup_matches_plain_lookup() {
        let text = "{\"filename\":1,\"in_app\":2,\"abs_path\":3,\"stack_start\":4,\"my_key\":5,\"os\":6,\"transaction_info\":7,\"transaction_infx\":8}";
        let b = text.as_bytes();
        for (i, _) in text
            .match_indices('"')
            .filter(|(i, _)| b[i - 1] == b'{' || b[i - 1] == b',')
        {
            let start = i + 1;
            let end = start + text[start..].find('"').expect("closing quote");
            let key = &text[start..end];
            let mut w = [0u8; 8];
            w.copy_from_slice(&b[start..start + 8]);
            let windowed = Key::new_with_window(key, u64::from_le_bytes(w));
            let plain = Key::new(key);
            assert_eq!(windowed, plain);
            assert_eq!(windowed.known(), plain.known(), "{key}");
            assert_eq!(windowed.known().is_some(), KNOWN.contains(&key), "{key}");
        }
    }

    #[test]
    fn keys_behave_like_their_text() {
        let known = Key::new("filename");
        let owned = Key::new("my_custom_key");
        assert!(matches!(known.0, Repr::Known(..)));
        assert!(matches!(owned.0, Repr::Owned(_)));
        assert!(matches!(
            Key::from(String::from("lineno")).0,
            Repr::Known(..)
        ));
        assert_eq!(known, "filename");
        assert_eq!(owned, *"my_custom_key");
        assert_eq!(String::from("my_custom_key"), owned);
        assert!(known < owned);
        assert_eq!(format!("{known:?} {owned}"), "\"filename\" my_custom_key");
        assert_eq!(owned.clone().into_string(), "my_custom_key");
        assert_eq!(
            Key::from(Cow::Borrowed("in_app")),
            Key::from("in_app".to_owned())
        );
        assert_eq!(
            serde_json::to_string(&owned).expect("serializes"),
            "\"my_custom_key\""
        );
    }
}
