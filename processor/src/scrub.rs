//! Server-side data scrubbing, on by default like Relay's default PII rules.
//!
//! Three rules, applied to the whole event except its structural fields (ids, times, sdk…):
//! - a value under a sensitive key (`password`, `secret`, `token`, `auth`, `cookie`, …, plus
//!   the project's `sensitive_fields`, minus its `safe_fields`) becomes `[Filtered]`, whether
//!   the key is an object key or the first half of a `[key, value]` pair (headers, tags,
//!   query pairs) or of `key=value` in a query string;
//! - a credit-card number (13–19 digits, optionally grouped by spaces or dashes, passing
//!   the Luhn check) inside any string becomes `[Filtered]`;
//! - with `scrub_ip_addresses`, `user.ip_address` is removed and IP addresses in strings
//!   become `[ip]`.
//!
//! Cookies are credentials by nature: every value of `request.cookies` is filtered (stricter
//! than Relay, which filters only cookies with sensitive names such as `sessionid` or
//! `csrftoken`); the cookie names stay, as in Relay.

use std::sync::LazyLock;

use crate::value::{known_keys, Key, Map, Value};
use regex::Regex;
use storage::ProjectSettings;

/// What replaces a scrubbed value (Sentry's marker).
pub const FILTERED: &str = "[Filtered]";

/// Key fragments that mark a value as sensitive (case-insensitive substring match), the
/// union of Sentry's legacy defaults and Relay's `@password`/`@secret` rules.
const SENSITIVE_KEYS: &[&str] = &[
    "password",
    "passwd",
    "secret",
    "api_key",
    "apikey",
    "api-key",
    "auth",
    "credentials",
    "mysql_pwd",
    "privatekey",
    "private_key",
    "private-key",
    "token",
    "session",
    "cookie",
    "csrf",
    "xsrf",
];

/// Top-level fields that hold no user data; scrubbing them could only break the event.
const STRUCTURAL: &[&str] = &[
    "event_id",
    "timestamp",
    "start_timestamp",
    "received",
    "level",
    "platform",
    "type",
    "version",
    "project",
    "key_id",
    "grouping_config",
    "sdk",
    "errors",
    "debug_meta",
    "release",
    "dist",
    "environment",
    "fingerprint",
    "transaction_info",
];

static IPV4: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"\b(?:25[0-5]|2[0-4]\d|1?\d?\d)(?:\.(?:25[0-5]|2[0-4]\d|1?\d?\d)){3}\b")
        .expect("static regex")
});

/// Bit of [`Scrubber::known_class`]: the known key's string value is a protocol id
/// ([`is_id_key`]).
const CLASS_ID: u8 = 1;
/// Bit of [`Scrubber::known_class`]: the known key's value is filtered (scrubbing is on and
/// [`Scrubber::is_sensitive_key`] says so).
const CLASS_SENSITIVE: u8 = 2;

/// A project's scrubbing configuration, prepared once per project.
#[derive(Debug, Clone)]
pub struct Scrubber {
    enabled: bool,
    scrub_ip: bool,
    extra_keys: Vec<String>,
    safe_keys: Vec<String>,
    /// For each known key ([`Key::known_index`]), its `CLASS_*` bits under this
    /// configuration. Nearly every object key of an event is a known key; one load here
    /// replaces the id-key match and the sensitive-key test (protocol-key match, safe and
    /// extra lists, fragment scan) that each object key went through.
    known_class: [u8; 256],
}

impl Scrubber {
    /// From the project's settings.
    pub fn from_settings(settings: &ProjectSettings) -> Scrubber {
        let lower = |v: &[String]| {
            v.iter()
                .map(|s| s.trim().to_ascii_lowercase())
                .filter(|s| !s.is_empty())
                .collect()
        };
        let mut scrubber = Scrubber {
            enabled: settings.scrub_data,
            scrub_ip: settings.scrub_ip_addresses,
            extra_keys: lower(&settings.sensitive_fields),
            safe_keys: lower(&settings.safe_fields),
            known_class: [0; 256],
        };
        for (index, key) in known_keys().iter().enumerate() {
            scrubber.known_class[index] = scrubber.classify(key);
        }
        scrubber
    }

    /// The `CLASS_*` bits of an object key, as [`Scrubber::walk_object`] decides them.
    fn classify(&self, key: &str) -> u8 {
        let mut class = 0;
        if is_id_key(key) {
            class |= CLASS_ID;
        }
        if self.enabled && self.is_sensitive_key(key) {
            class |= CLASS_SENSITIVE;
        }
        class
    }

    /// [`Scrubber::classify`] of a stored key: a table load for a known key.
    #[inline]
    fn key_class(&self, key: &Key) -> u8 {
        match key.known_index() {
            Some(index) => self.known_class[usize::from(index)],
            None => self.classify(key),
        }
    }

    /// Whether a key's value must be filtered.
    pub fn is_sensitive_key(&self, key: &str) -> bool {
        // The protocol's own field names carry no secrets; most keys of an event are these,
        // so answering them with one match keeps scrubbing cheap.
        if is_protocol_key(key) && self.extra_keys.is_empty() {
            return false;
        }
        if self.safe_keys.iter().any(|s| s.eq_ignore_ascii_case(key)) {
            return false;
        }
        has_sensitive_fragment(key) || self.extra_keys.iter().any(|n| contains_ci(key, n))
    }

    /// Scrubs an event in place.
    pub fn scrub(&self, event: &mut Value) {
        if !self.enabled && !self.scrub_ip {
            return;
        }
        let Some(ev) = event.as_object_mut() else {
            return;
        };
        if self.scrub_ip {
            if let Some(Value::Object(user)) = ev.get_mut("user") {
                user.remove("ip_address");
            }
            if let Some(Value::Object(env)) = ev.get_mut("request").and_then(|r| r.get_mut("env")) {
                env.remove("REMOTE_ADDR");
            }
        }
        if self.enabled {
            if let Some(Value::Object(req)) = ev.get_mut("request") {
                scrub_request_specials(self, req);
            }
        }
        for (key, value) in ev.iter_mut() {
            if STRUCTURAL.contains(&key.as_str()) {
                continue;
            }
            self.walk(value, 0);
        }
    }

    /// Scrubs a user feedback with the rules of its project's events: card numbers (and,
    /// with `scrub_ip_addresses`, IP addresses) in what the user wrote, their name and the
    /// page URL; sensitive query parameters of that URL; the `user` object as an event's
    /// `user`. The contact email stays: it is what the user gave to be answered on, and
    /// Relay's default rules keep emails too.
    pub fn scrub_feedback(&self, feedback: &mut storage::feedback::FeedbackRecord) {
        if !self.enabled && !self.scrub_ip {
            return;
        }
        self.scrub_string(&mut feedback.comments);
        self.scrub_string(&mut feedback.name);
        if let Some(url) = feedback.url.as_mut() {
            if self.enabled {
                if let Some((base, query)) = url.split_once('?') {
                    if let Some(new) = scrub_query(self, query) {
                        *url = format!("{base}?{new}");
                    }
                }
            }
            self.scrub_string(url);
        }
        if let Some(user) = feedback.user.take() {
            let mut holder = Map::with_capacity(1);
            holder.insert("user".to_owned(), Value::from(user));
            let mut holder = Value::Object(holder);
            self.scrub(&mut holder);
            feedback.user = holder
                .as_object_mut()
                .and_then(|h| h.remove("user"))
                .map(serde_json::Value::from);
        }
    }

    fn walk(&self, value: &mut Value, depth: usize) {
        // Normalization bounds nesting of what matters; this bound only protects the stack.
        if depth > 64 {
            return;
        }
        match value {
            Value::Object(map) => self.walk_object(map, depth),
            Value::Array(items) => {
                if self.enabled && is_pair(items) {
                    let sensitive = items[0].as_str().is_some_and(|k| self.is_sensitive_key(k));
                    if sensitive {
                        filter_all(&mut items[1]);
                        return;
                    }
                }
                for item in items.iter_mut() {
                    self.walk_child(item, depth);
                }
            }
            Value::String(s) => self.scrub_string(s),
            _ => {}
        }
    }

    /// `self.walk(child, depth + 1)`, with the leaves handled here: most children are
    /// strings and numbers, which then cost no call.
    #[inline]
    fn walk_child(&self, child: &mut Value, depth: usize) {
        match child {
            Value::String(s) => {
                // `walk` stops past depth 64 before looking at the value.
                if depth < 64 {
                    self.scrub_string(s);
                }
            }
            Value::Object(_) | Value::Array(_) => self.walk(child, depth + 1),
            Value::Null | Value::Bool(_) | Value::Number(_) => {}
        }
    }

    fn walk_object(&self, map: &mut Map<String, Value>, depth: usize) {
        for (key, child) in map.iter_mut() {
            let class = self.key_class(key);
            if class & CLASS_ID != 0 && child.is_string() {
                // Trace, span and event ids: hex the protocol defines, never PII (Relay's
                // schema marks them `pii = "false"`), and a span id of 16 digits that
                // happened to pass Luhn must not be filtered out of the trace tree.
                continue;
            }
            if class & CLASS_SENSITIVE != 0 {
                if key.eq_ignore_ascii_case("cookies") {
                    filter_cookies(child);
                } else {
                    filter_all(child);
                }
            } else {
                self.walk_child(child, depth);
            }
        }
    }

    /// The string rules. Inlined into the walk with only the tests that settle most strings
    /// (every string of an event comes through here); the work itself is out of line.
    #[inline(always)]
    fn scrub_string(&self, s: &mut String) {
        // Shorter strings cannot hold a card number (13 digits at least): no call for them.
        if self.enabled && s.len() >= 13 {
            filter_card_numbers(s);
        }
        if self.scrub_ip {
            filter_ip_addresses(s);
        }
    }
}

/// Replaces the card numbers in `s` (see [`replace_card_numbers`]).
fn filter_card_numbers(s: &mut String) {
    if let Some(replaced) = replace_card_numbers(s) {
        *s = replaced;
    }
}

/// Replaces `s` when it is an IP address, and the IPv4 addresses in it.
fn filter_ip_addresses(s: &mut String) {
    if s.parse::<std::net::IpAddr>().is_ok() {
        *s = "[ip]".into();
    } else if IPV4.is_match(s) {
        *s = IPV4.replace_all(s, "[ip]").into_owned();
    }
}

/// `request.cookies` whole, and `key=value` pairs of `query_string` (and of the URL).
fn scrub_request_specials(scrubber: &Scrubber, req: &mut Map<String, Value>) {
    if let Some(cookies) = req.get_mut("cookies") {
        filter_cookies(cookies);
    }
    if let Some(Value::String(q)) = req.get_mut("query_string") {
        if let Some(new) = scrub_query(scrubber, q) {
            *q = new;
        }
    }
    if let Some(Value::String(url)) = req.get_mut("url") {
        if let Some((base, query)) = url.split_once('?') {
            if let Some(new) = scrub_query(scrubber, query) {
                *url = format!("{base}?{new}");
            }
        }
    }
}

fn scrub_query(scrubber: &Scrubber, query: &str) -> Option<String> {
    let mut changed = false;
    let parts: Vec<String> = query
        .split('&')
        .map(|part| match part.split_once('=') {
            Some((k, _)) if scrubber.is_sensitive_key(k) => {
                changed = true;
                format!("{k}={FILTERED}")
            }
            _ => part.to_owned(),
        })
        .collect();
    changed.then(|| parts.join("&"))
}

fn is_pair(items: &[Value]) -> bool {
    items.len() == 2 && items[0].is_string() && !items[1].is_object() && !items[1].is_array()
}

/// Replaces every scalar under `value` with `[Filtered]` (keeps the shape of objects so the
/// UI still shows which keys were there).
fn filter_all(value: &mut Value) {
    match value {
        Value::Object(m) => m.values_mut().for_each(filter_all),
        Value::Array(a) => a.iter_mut().for_each(filter_all),
        Value::Null => {}
        other => *other = Value::String(FILTERED.into()),
    }
}

/// Filters every value of a cookie jar (`request.cookies`, a response context's `cookies`)
/// and keeps the cookie names, as Relay's scrubbing leaves them: normalization turns the jar
/// (and a `Cookie` header) into `[name, value]` pairs, and a name-blind [`filter_all`] would
/// erase the names as well.
fn filter_cookies(value: &mut Value) {
    match value {
        Value::Array(items) => {
            for item in items.iter_mut() {
                match item {
                    Value::Array(pair) if is_pair(pair) => filter_all(&mut pair[1]),
                    other => filter_all(other),
                }
            }
        }
        other => filter_all(other),
    }
}

/// Keys whose string values are protocol ids (hex), left as they are.
fn is_id_key(key: &str) -> bool {
    matches!(
        key,
        "trace_id" | "span_id" | "parent_span_id" | "segment_id" | "event_id" | "profile_id"
    )
}

/// Field names of the event protocol's interfaces (frames, exceptions, breadcrumbs, …).
fn is_protocol_key(key: &str) -> bool {
    matches!(
        key,
        "filename"
            | "abs_path"
            | "function"
            | "raw_function"
            | "module"
            | "package"
            | "lineno"
            | "colno"
            | "in_app"
            | "context_line"
            | "pre_context"
            | "post_context"
            | "platform"
            | "instruction_addr"
            | "symbol"
            | "frames"
            | "stacktrace"
            | "values"
            | "type"
            | "value"
            | "mechanism"
            | "handled"
            | "synthetic"
            | "category"
            | "level"
            | "message"
            | "timestamp"
            | "data"
            | "url"
            | "method"
            | "name"
            | "version"
            | "trace_id"
            | "span_id"
            | "start_timestamp"
            | "description"
            | "exclusive_time"
            | "same_process_as_parent"
            | "origin"
            | "parent_span_id"
            | "op"
            | "status"
            | "vars"
            | "formatted"
            | "params"
            | "id"
            | "username"
            | "email"
            | "ip_address"
            | "headers"
            | "env"
            | "query_string"
            | "fragment"
            | "tags"
            | "extra"
            | "contexts"
            | "runtime"
            | "os"
            | "device"
            | "browser"
            | "trace"
    )
}

/// A key's 4 bytes at one position as a little-endian word with bit 5 of every byte set,
/// which lower-cases ASCII letters (other bytes map somewhere too, so a match of words is
/// only a candidate that the exact comparison confirms).
#[inline]
fn folded_word(four: &[u8]) -> u32 {
    u32::from_le_bytes([four[0], four[1], four[2], four[3]]) | 0x2020_2020
}

/// Slot of a folded word in [`FRAGMENT_SLOTS`] (multiplicative hash, 64 slots).
#[inline]
fn fragment_slot(word: u32) -> usize {
    (word.wrapping_mul(0x9E37_79B1) >> 26) as usize
}

/// For each of 64 slots, the bit set of [`SENSITIVE_KEYS`] whose first 4 bytes hash there
/// (every fragment has at least 4). A key position whose slot is empty cannot start a
/// fragment, which settles almost every position with one multiply and one load.
static FRAGMENT_SLOTS: LazyLock<[u32; 64]> = LazyLock::new(|| {
    let mut slots = [0u32; 64];
    for (i, fragment) in SENSITIVE_KEYS.iter().enumerate() {
        let bytes = fragment.as_bytes();
        debug_assert!(bytes.len() >= 4 && i < 32);
        if bytes.len() >= 4 {
            slots[fragment_slot(folded_word(bytes))] |= 1 << i;
        }
    }
    slots
});

/// Whether `key` contains one of [`SENSITIVE_KEYS`] (ASCII case-insensitive). Every key of
/// every event goes through this, so each 4-byte window is first looked up in
/// [`FRAGMENT_SLOTS`]; only the fragments found there are compared byte by byte.
fn has_sensitive_fragment(key: &str) -> bool {
    let bytes = key.as_bytes();
    let slots = &*FRAGMENT_SLOTS;
    bytes.windows(4).enumerate().any(|(i, four)| {
        let mut candidates = slots[fragment_slot(folded_word(four))];
        while candidates != 0 {
            let n = SENSITIVE_KEYS[candidates.trailing_zeros() as usize].as_bytes();
            candidates &= candidates - 1;
            let rest = &bytes[i..];
            if rest.len() >= n.len() && rest[..n.len()].eq_ignore_ascii_case(n) {
                return true;
            }
        }
        false
    })
}

fn contains_ci(hay: &str, needle: &str) -> bool {
    let (h, n) = (hay.as_bytes(), needle.as_bytes());
    n.len() <= h.len() && h.windows(n.len()).any(|w| w.eq_ignore_ascii_case(n))
}

/// Luhn checksum over ASCII digits.
pub fn luhn_valid(digits: &[u8]) -> bool {
    let mut sum = 0u32;
    for (i, d) in digits.iter().rev().enumerate() {
        let mut v = (d - b'0') as u32;
        if i % 2 == 1 {
            v *= 2;
            if v > 9 {
                v -= 9;
            }
        }
        sum += v;
    }
    sum.is_multiple_of(10)
}

/// Number of ASCII digits in `bytes`: every string of an event of 13 bytes or more is
/// counted (a byte at a time, that was a sixth of the scrubber's work). 16 bytes per step
/// with SSE2, the tail as one overlapping 16-byte window; eight per step elsewhere.
#[inline]
#[allow(unsafe_code)]
fn count_digits(bytes: &[u8]) -> usize {
    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    if bytes.len() >= 8 {
        // SAFETY: calling a `#[target_feature(enable = "sse2")]` function only requires a
        // CPU with SSE2; this branch is compiled only for targets that assume SSE2
        // everywhere (`target_feature = "sse2"`, every x86-64 target).
        return unsafe { sse2_count_digits(bytes) };
    }
    swar_count_digits(bytes)
}

/// 16 zero bytes then 16 bytes of 0xff: the eight bytes at offset `o` mask (0xff) the byte
/// lanes `i` with `o + i >= 16`, which selects the new lanes of an overlapping window.
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
static LANE_MASKS: [u8; 32] = {
    let mut masks = [0u8; 32];
    let mut i = 16;
    while i < 32 {
        masks[i] = 0xff;
        i += 1;
    }
    masks
};

/// The 16 bytes `low` (first eight, little endian) and `high` with each digit as 0xff and
/// anything else as 0.
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
#[target_feature(enable = "sse2")]
#[inline]
fn sse2_digit_bytes(low: u64, high: u64) -> std::arch::x86_64::__m128i {
    use std::arch::x86_64::{
        _mm_cmpeq_epi8, _mm_min_epu8, _mm_set1_epi8, _mm_set_epi64x, _mm_sub_epi8,
    };
    // Bit casts of the words (the intrinsics take i64).
    let v = _mm_set_epi64x(high as i64, low as i64);
    // A digit is a byte whose distance above `0` is at most 9, unsigned:
    // `min(d, 9) == d`.
    let d = _mm_sub_epi8(v, _mm_set1_epi8(b'0' as i8));
    _mm_cmpeq_epi8(_mm_min_epu8(d, _mm_set1_epi8(9)), d)
}

/// [`count_digits`] of at least eight bytes with SSE2. The digit masks (-1 per digit) are
/// subtracted into per-byte counters and summed once at the end (`psadbw`), instead of a
/// population count per 16 bytes: baseline x86-64 has no `popcnt` instruction, and its
/// software form was a third of the cost of counting.
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
#[target_feature(enable = "sse2")]
fn sse2_count_digits(bytes: &[u8]) -> usize {
    use std::arch::x86_64::{
        __m128i, _mm_and_si128, _mm_cvtsi128_si64, _mm_sad_epu8, _mm_set_epi64x, _mm_setzero_si128,
        _mm_srli_si128, _mm_sub_epi8,
    };
    let len = bytes.len();
    // An array conversion, not `copy_from_slice`: that one's overlap check (with debug
    // assertions, as in the dev profile) cost more than the digit test itself.
    let word = |b: &[u8], at: usize| u64::from_le_bytes(b[at..at + 8].try_into().unwrap_or([0; 8]));
    // Sum of the 16 byte counters of `counts`.
    let total = |counts: __m128i| {
        let sums = _mm_sad_epu8(counts, _mm_setzero_si128());
        (_mm_cvtsi128_si64(sums) + _mm_cvtsi128_si64(_mm_srli_si128::<8>(sums))) as usize
    };
    if len < 16 {
        // Bytes 0..8 in lanes 0..8, bytes len-8..len in lanes 8..16: the lanes of bytes
        // seen twice (the first 16 - len of the high half) are masked off.
        let digits = sse2_digit_bytes(word(bytes, 0), word(bytes, len - 8));
        let mask = _mm_set_epi64x(word(&LANE_MASKS, len) as i64, -1);
        return total(_mm_sub_epi8(
            _mm_setzero_si128(),
            _mm_and_si128(digits, mask),
        ));
    }
    let mut count = 0;
    let mut counts = _mm_setzero_si128();
    let mut steps = 0;
    let mut at = 0;
    while at + 16 <= len {
        counts = _mm_sub_epi8(
            counts,
            sse2_digit_bytes(word(bytes, at), word(bytes, at + 8)),
        );
        at += 16;
        steps += 1;
        // A byte counter grows by at most one per step: fold before it can wrap.
        if steps == 255 {
            count += total(counts);
            counts = _mm_setzero_si128();
            steps = 0;
        }
    }
    let rest = len - at;
    if rest > 0 {
        // The last 16 bytes; only their top `rest` lanes are new.
        let digits = sse2_digit_bytes(word(bytes, len - 16), word(bytes, len - 8));
        let mask = _mm_set_epi64x(
            word(&LANE_MASKS, rest + 8) as i64,
            word(&LANE_MASKS, rest) as i64,
        );
        counts = _mm_sub_epi8(counts, _mm_and_si128(digits, mask));
    }
    count + total(counts)
}

/// [`count_digits`] eight bytes per step with word arithmetic (any architecture; tested
/// against a byte loop, as the SSE2 version is).
#[cfg_attr(all(target_arch = "x86_64", target_feature = "sse2"), allow(dead_code))]
fn swar_count_digits(bytes: &[u8]) -> usize {
    const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let mut count = 0;
    let mut chunks = bytes.chunks_exact(8);
    // Per-byte counters (one lane per byte of the word), folded before any can reach 256.
    let mut lanes = 0u64;
    let mut in_lanes = 0;
    for chunk in chunks.by_ref() {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        // A digit becomes 0..=9 here, and only a digit does (xor is a bijection).
        let t = u64::from_le_bytes(word) ^ 0x3030_3030_3030_3030;
        // 0x89 - x keeps its high bit iff x <= 9 (x <= 0x7f after the mask: no byte
        // borrows from its neighbour); `& !t` drops bytes whose own high bit was set.
        let digits = (0x8989_8989_8989_8989 - (t & LOW7)) & !t & HIGH;
        lanes += digits >> 7;
        in_lanes += 1;
        if in_lanes == 255 {
            count += fold_lanes(lanes);
            lanes = 0;
            in_lanes = 0;
        }
    }
    count += fold_lanes(lanes);
    count
        + chunks
            .remainder()
            .iter()
            .filter(|b| b.is_ascii_digit())
            .count()
}

/// Sum of the eight byte lanes of `lanes` (each at most 255).
fn fold_lanes(lanes: u64) -> usize {
    lanes.to_le_bytes().iter().map(|&b| usize::from(b)).sum()
}

/// Finds card numbers: runs of 13–19 digits, single spaces or dashes allowed between
/// digits, not glued to other digits or letters, passing Luhn. Returns the string with
/// each replaced by `[Filtered]`, or `None` when there is none.
pub fn replace_card_numbers(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    // Most strings are short names: too short to hold 13 digits at all.
    if bytes.len() < 13 || count_digits(bytes) < 13 {
        return None;
    }
    let mut out: Option<String> = None;
    let mut copied = 0usize;
    let mut i = 0usize;
    while i < bytes.len() {
        if !bytes[i].is_ascii_digit() || (i > 0 && bytes[i - 1].is_ascii_alphanumeric()) {
            i += 1;
            continue;
        }
        let start = i;
        let mut digits: Vec<u8> = Vec::with_capacity(19);
        let mut end = i;
        let mut j = i;
        while j < bytes.len() && digits.len() <= 19 {
            let b = bytes[j];
            if b.is_ascii_digit() {
                digits.push(b);
                end = j + 1;
                j += 1;
            } else if (b == b' ' || b == b'-')
                && j + 1 < bytes.len()
                && bytes[j + 1].is_ascii_digit()
            {
                j += 1;
            } else {
                break;
            }
        }
        let glued = end < bytes.len() && bytes[end].is_ascii_alphanumeric();
        if (13..=19).contains(&digits.len()) && !glued && luhn_valid(&digits) {
            let o = out.get_or_insert_with(|| String::with_capacity(s.len()));
            o.push_str(&s[copied..start]);
            o.push_str(FILTERED);
            copied = end;
        }
        i = end.max(i + 1);
    }
    out.map(|mut o| {
        o.push_str(&s[copied..]);
        o
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::json;

    fn default_scrubber() -> Scrubber {
        Scrubber::from_settings(&ProjectSettings::default())
    }

    #[test]
    fn digit_count_matches_a_byte_loop() {
        // Every byte value at every position of strings around the 8-byte step, and a string
        // long enough for the lane counters to be folded several times.
        for len in 0..20 {
            for pos in 0..len {
                for b in 0..=255u8 {
                    let mut bytes = vec![b'7'; len];
                    bytes[pos] = b;
                    let naive = bytes.iter().filter(|b| b.is_ascii_digit()).count();
                    assert_eq!(count_digits(&bytes), naive, "{bytes:?}");
                }
            }
        }
        // Mostly non-digits, one digit anywhere: the overlapping tail windows count it once.
        for len in 0..40 {
            for pos in 0..len {
                for base in [b'.', b'/', b':', 0xff, 0x80] {
                    let mut bytes = vec![base; len];
                    bytes[pos] = b'0' + (pos % 10) as u8;
                    assert_eq!(count_digits(&bytes), 1, "{bytes:?}");
                    assert_eq!(swar_count_digits(&bytes), 1, "{bytes:?}");
                }
            }
        }
        let long: Vec<u8> = (0..20_000u32).map(|i| (i * 7 % 256) as u8).collect();
        let naive = long.iter().filter(|b| b.is_ascii_digit()).count();
        assert_eq!(count_digits(&long), naive);
        assert_eq!(swar_count_digits(&long), naive);
        assert_eq!(count_digits(&[b'5'; 4099]), 4099);
        for len in 0..64 {
            let bytes: Vec<u8> = (0..len).map(|i| (i * 37 % 256) as u8).collect();
            assert_eq!(count_digits(&bytes), swar_count_digits(&bytes), "{bytes:?}");
        }
    }

    /// The scrubbing walk as it was before the known-key table and the inlined leaves: every
    /// key through `is_id_key` and `is_sensitive_key`, every value through `walk`.
    fn reference_scrub(scrubber: &Scrubber, event: &mut Value) {
        fn walk(sc: &Scrubber, value: &mut Value, depth: usize) {
            if depth > 64 {
                return;
            }
            match value {
                Value::Object(map) => {
                    for (key, child) in map.iter_mut() {
                        if child.is_string() && is_id_key(key) {
                            continue;
                        }
                        if sc.enabled && sc.is_sensitive_key(key) {
                            if key.eq_ignore_ascii_case("cookies") {
                                filter_cookies(child);
                            } else {
                                filter_all(child);
                            }
                        } else {
                            walk(sc, child, depth + 1);
                        }
                    }
                }
                Value::Array(items) => {
                    if sc.enabled && is_pair(items) {
                        let sensitive = items[0].as_str().is_some_and(|k| sc.is_sensitive_key(k));
                        if sensitive {
                            filter_all(&mut items[1]);
                            return;
                        }
                    }
                    for item in items.iter_mut() {
                        walk(sc, item, depth + 1);
                    }
                }
                Value::String(s) => {
                    if sc.enabled {
                        if let Some(replaced) = replace_card_numbers(s) {
                            *s = replaced;
                        }
                    }
                    if sc.scrub_ip {
                        if s.parse::<std::net::IpAddr>().is_ok() {
                            *s = "[ip]".into();
                        } else if IPV4.is_match(s) {
                            *s = IPV4.replace_all(s, "[ip]").into_owned();
                        }
                    }
                }
                _ => {}
            }
        }
        let Some(ev) = event.as_object_mut() else {
            return;
        };
        if scrubber.scrub_ip {
            if let Some(Value::Object(user)) = ev.get_mut("user") {
                user.remove("ip_address");
            }
            if let Some(Value::Object(env)) = ev.get_mut("request").and_then(|r| r.get_mut("env")) {
                env.remove("REMOTE_ADDR");
            }
        }
        if scrubber.enabled {
            if let Some(Value::Object(req)) = ev.get_mut("request") {
                scrub_request_specials(scrubber, req);
            }
        }
        for (key, value) in ev.iter_mut() {
            if !STRUCTURAL.contains(&key.as_str()) {
                walk(scrubber, value, 0);
            }
        }
    }

    /// A random JSON value for the scrubbing comparison: keys from the known-key list, from
    /// sensitive and id names and made up; strings with card numbers, IPs, digits, text.
    fn random_value(next: &mut impl FnMut() -> u64, depth: usize) -> Value {
        const KEYS: &[&str] = &[
            "password",
            "X-Api-Key",
            "cookies",
            "Cookies",
            "my_token",
            "ssn",
            "SSN",
            "span_id",
            "trace_id",
            "profile_id",
            "event_id",
            "custom",
            "Filename",
            "sessionid",
            "auth",
            "safe_thing",
            "card",
        ];
        const STRINGS: &[&str] = &[
            "4111111111111111",
            "4111 1111 1111 1111",
            "card 4111-1111-1111-1111 ok",
            "4111111111111112",
            "10.1.2.3",
            "from 192.168.0.1 and ::1",
            "::1",
            "x4111111111111111",
            "1234567890123",
            "short",
            "",
            "/srv/app/shop/views.py",
            "a=1&password=2",
        ];
        let pick = next() % 16;
        if depth == 0 || pick < 6 {
            return match next() % 6 {
                0 => Value::Null,
                1 => Value::Bool(next().is_multiple_of(2)),
                2 => Value::from(next() % 100_000),
                3 => {
                    // Random digits, spaces and dashes: card-number candidates of every length.
                    let len = (next() % 30) as usize;
                    let text: String = (0..len)
                        .map(|_| match next() % 8 {
                            0 => ' ',
                            1 => '-',
                            2 => 'a',
                            _ => char::from(b'0' + (next() % 10) as u8),
                        })
                        .collect();
                    Value::String(text)
                }
                _ => Value::String(STRINGS[(next() % STRINGS.len() as u64) as usize].to_owned()),
            };
        }
        if pick < 9 {
            // A `[key, value]` pair.
            let key = KEYS[(next() % KEYS.len() as u64) as usize];
            return Value::Array(vec![
                Value::String(key.to_owned()),
                random_value(next, depth - 1),
            ]);
        }
        if pick < 11 {
            let n = (next() % 4) as usize;
            return Value::Array((0..n).map(|_| random_value(next, depth - 1)).collect());
        }
        let known = known_keys();
        let n = (next() % 6) as usize;
        let pairs = (0..n)
            .map(|_| {
                let key = if next().is_multiple_of(3) {
                    KEYS[(next() % KEYS.len() as u64) as usize]
                } else {
                    known[(next() % known.len() as u64) as usize]
                };
                (Key::new(key), random_value(next, depth - 1))
            })
            .collect();
        Value::Object(Map::from_pairs(pairs))
    }

    #[test]
    fn scrub_matches_the_reference_walk_on_random_events() {
        let configs = [
            ProjectSettings::default(),
            ProjectSettings {
                scrub_ip_addresses: true,
                ..Default::default()
            },
            ProjectSettings {
                sensitive_fields: vec!["ssn".into(), "Filename".into(), "value".into()],
                safe_fields: vec!["password".into(), "cookies".into(), "auth".into()],
                ..Default::default()
            },
            ProjectSettings {
                scrub_data: false,
                scrub_ip_addresses: true,
                ..Default::default()
            },
            ProjectSettings {
                scrub_data: false,
                ..Default::default()
            },
        ];
        let scrubbers: Vec<Scrubber> = configs.iter().map(Scrubber::from_settings).collect();
        // The table agrees with the per-key tests for every known key.
        for scrubber in &scrubbers {
            for (index, key) in known_keys().iter().enumerate() {
                let sensitive = scrubber.enabled && scrubber.is_sensitive_key(key);
                assert_eq!(
                    scrubber.known_class[index] & CLASS_SENSITIVE != 0,
                    sensitive,
                    "{key}"
                );
                assert_eq!(
                    scrubber.known_class[index] & CLASS_ID != 0,
                    is_id_key(key),
                    "{key}"
                );
            }
        }
        let mut next = crate::xorshift64(0x9e37_79b9_7f4a_7c15);
        let mut filtered = 0;
        for round in 0..3000 {
            let mut event = random_value(&mut next, 6);
            if round % 2 == 0 {
                // Event-shaped: the top-level rules (structural keys, request, user) too.
                let pairs = vec![
                    (Key::new("request"), random_value(&mut next, 4)),
                    (Key::new("user"), random_value(&mut next, 3)),
                    (Key::new("extra"), event),
                    (Key::new("release"), random_value(&mut next, 1)),
                ];
                event = Value::Object(Map::from_pairs(pairs));
            }
            for scrubber in &scrubbers {
                let mut fast = event.clone();
                let mut reference = event.clone();
                scrubber.scrub(&mut fast);
                reference_scrub(scrubber, &mut reference);
                assert!(fast == reference, "{event:?}");
                filtered += usize::from(fast != event);
            }
        }
        // The cases exercise the rules, not only the pass-through.
        assert!(filtered > 1000, "{filtered}");
        // Strings at and around the depth bound.
        for depth in 60..70 {
            let mut event = Value::String("4111111111111111".into());
            for _ in 0..depth {
                event = Value::Object(Map::from_pairs(vec![
                    (Key::new("data"), event),
                    (Key::new("custom"), Value::String("4111111111111111".into())),
                ]));
                event = Value::Array(vec![event, Value::String("4111111111111111".into())]);
            }
            let mut event = Value::Object(Map::from_pairs(vec![(Key::new("extra"), event)]));
            let mut reference = event.clone();
            scrubbers[0].scrub(&mut event);
            reference_scrub(&scrubbers[0], &mut reference);
            assert!(event == reference, "depth {depth}");
        }
    }

    #[test]
    fn sensitive_fragment_scan_matches_substring_search() {
        let keys = [
            "",
            "x",
            "password",
            "PassWord",
            "db_passwd",
            "my-Secret",
            "X-Api-Key",
            "apikey",
            "Authorization",
            "aws_credentials",
            "MYSQL_PWD",
            "privateKey",
            "private-key",
            "access_token",
            "sessionid",
            "Set-Cookie",
            "x-csrftoken",
            "XSRF",
            "filename",
            "lineno",
            "autho",
            "pas",
            "passw",
            "tok",
            "mysql_pw",
            "crsf",
            "stacktrace",
            "same_process_as_parent",
            "start_timestamp",
            "description",
            "xSRF-token",
            "ps",
            "t",
            "API_KEY",
            "api\x7fkey",
            "APÏ_KEY",
            "my_api-key_here",
            "sessio",
            "xx_credential",
            "CREDENTIALS",
            "abcprivate_key",
            "tokentoken",
        ];
        for key in keys {
            let slow = SENSITIVE_KEYS.iter().any(|n| contains_ci(key, n));
            assert_eq!(has_sensitive_fragment(key), slow, "{key}");
        }
    }

    #[test]
    fn span_protocol_keys_hold_no_sensitive_fragment() {
        // Protocol keys skip the fragment scan; that is only sound while none contains one.
        for key in [
            "start_timestamp",
            "description",
            "exclusive_time",
            "same_process_as_parent",
            "origin",
            "trace_id",
            "span_id",
        ] {
            assert!(is_protocol_key(key), "{key}");
            assert!(!SENSITIVE_KEYS.iter().any(|n| contains_ci(key, n)), "{key}");
        }
    }

    #[test]
    fn ids_are_not_scrubbed_but_their_neighbours_are() {
        // 16 digits passing Luhn: a card number anywhere else, a span id here.
        let mut ev = json!({
            "spans": [{"span_id": "4111111111111111", "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
                       "description": "charge 4111111111111111", "data": {"password": "x"}}],
            "contexts": {"trace": {"span_id": "4111111111111111", "parent_span_id": "4111111111111111"}},
        });
        default_scrubber().scrub(&mut ev);
        let span = &ev["spans"][0];
        assert_eq!(span["span_id"], "4111111111111111");
        assert_eq!(span["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(span["description"], "charge [Filtered]");
        assert_eq!(span["data"]["password"], FILTERED);
        assert_eq!(ev["contexts"]["trace"]["span_id"], "4111111111111111");
        assert_eq!(
            ev["contexts"]["trace"]["parent_span_id"],
            "4111111111111111"
        );
    }

    #[test]
    fn luhn_and_card_detection() {
        assert!(luhn_valid(b"4111111111111111"));
        assert!(!luhn_valid(b"4111111111111112"));
        assert_eq!(
            replace_card_numbers("card 4111 1111 1111 1111 declined").as_deref(),
            Some("card [Filtered] declined")
        );
        assert_eq!(
            replace_card_numbers("4111-1111-1111-1111").as_deref(),
            Some(FILTERED)
        );
        assert_eq!(
            replace_card_numbers("id 4111111111111112"),
            None,
            "fails Luhn"
        );
        assert_eq!(replace_card_numbers("order 12345"), None);
        assert_eq!(
            replace_card_numbers("x4111111111111111"),
            None,
            "glued to a letter"
        );
    }

    /// Normalization turns a `Cookie` header into `request.cookies` pairs: every value is
    /// filtered, the names stay (a name-blind filter used to erase them too).
    #[test]
    fn cookie_pairs_keep_names_and_lose_values() {
        let mut ev = json!({
            "request": {"cookies": [["sessionid", "x"], ["theme", "dark"], ["n", 5]]},
            "contexts": {"response": {"type": "response", "cookies": [["a", "b"]]}},
        });
        default_scrubber().scrub(&mut ev);
        assert_eq!(
            ev["request"]["cookies"],
            json!([
                ["sessionid", FILTERED],
                ["theme", FILTERED],
                ["n", FILTERED]
            ])
        );
        assert_eq!(
            ev["contexts"]["response"]["cookies"],
            json!([["a", FILTERED]])
        );
        // A pair list under any other sensitive key is filtered whole, names included.
        let mut ev = json!({"extra": {"password": ["user", "hunter2"]}});
        default_scrubber().scrub(&mut ev);
        assert_eq!(ev["extra"]["password"], json!([FILTERED, FILTERED]));
    }

    #[test]
    fn sensitive_keys_everywhere() {
        let mut ev = json!({
            "event_id": "0123",
            "request": {
                "headers": [["Authorization", "Bearer abc"], ["Cookie", "s=1"], ["Accept", "*/*"]],
                "cookies": {"sessionid": "x", "theme": "dark"},
                "query_string": "a=1&api_key=zzz",
                "data": {"username": "bob", "password": "hunter2", "nested": {"client_secret": {"k": "v"}}},
            },
            "extra": {"Token": 5, "card": "4111111111111111"},
            "contexts": {"db": {"type": "db", "passwd": "p"}},
            "breadcrumbs": {"values": [{"data": {"auth_header": "x", "url": "/a"}}]},
            "exception": {"values": [{"stacktrace": {"frames": [{"vars": {"secret": "s", "i": 1}}]}}]},
            "tags": [["session", "abc"], ["browser", "Firefox"]],
        });
        default_scrubber().scrub(&mut ev);
        let r = &ev["request"];
        assert_eq!(r["headers"][0][1], FILTERED);
        assert_eq!(r["headers"][1][1], FILTERED);
        assert_eq!(r["headers"][2][1], "*/*");
        assert_eq!(r["cookies"]["theme"], FILTERED);
        assert_eq!(r["query_string"], "a=1&api_key=[Filtered]");
        assert_eq!(r["data"]["username"], "bob");
        assert_eq!(r["data"]["password"], FILTERED);
        assert_eq!(r["data"]["nested"]["client_secret"]["k"], FILTERED);
        assert_eq!(ev["extra"]["Token"], FILTERED);
        assert_eq!(ev["extra"]["card"], FILTERED);
        assert_eq!(ev["contexts"]["db"]["passwd"], FILTERED);
        assert_eq!(
            ev["breadcrumbs"]["values"][0]["data"]["auth_header"],
            FILTERED
        );
        assert_eq!(ev["breadcrumbs"]["values"][0]["data"]["url"], "/a");
        let vars = &ev["exception"]["values"][0]["stacktrace"]["frames"][0]["vars"];
        assert_eq!(vars["secret"], FILTERED);
        assert_eq!(vars["i"], 1);
        assert_eq!(ev["tags"][0][1], FILTERED);
        assert_eq!(ev["tags"][1][1], "Firefox");
        assert_eq!(ev["event_id"], "0123");
    }

    #[test]
    fn feedback_is_scrubbed_like_an_event() {
        let settings = ProjectSettings {
            scrub_ip_addresses: true,
            ..Default::default()
        };
        let mut feedback = storage::feedback::FeedbackRecord {
            id: "f".repeat(32),
            kind: storage::feedback::FeedbackKind::Feedback,
            project_id: 1,
            event_id: None,
            issue_id: None,
            name: "Ann 4111 1111 1111 1111".into(),
            email: "ann@example.com".into(),
            comments: "my card 4111-1111-1111-1111 was charged twice, from 10.1.2.3".into(),
            url: Some("https://shop.example.com/pay?token=abc&item=7".into()),
            source: None,
            environment: None,
            release: None,
            user: Some(serde_json::json!({
                "ip_address": "10.1.2.3",
                "email": "ann@example.com",
                "data": {"api_key": "k-123", "plan": "pro"},
            })),
            received_ms: 0,
        };
        Scrubber::from_settings(&settings).scrub_feedback(&mut feedback);
        assert_eq!(
            feedback.comments,
            "my card [Filtered] was charged twice, from [ip]"
        );
        assert_eq!(feedback.name, "Ann [Filtered]");
        assert_eq!(feedback.email, "ann@example.com");
        assert_eq!(
            feedback.url.as_deref(),
            Some("https://shop.example.com/pay?token=[Filtered]&item=7")
        );
        let user = feedback.user.as_ref().unwrap();
        assert!(user.get("ip_address").is_none());
        assert_eq!(user["email"], "ann@example.com");
        assert_eq!(user["data"]["api_key"], FILTERED);
        assert_eq!(user["data"]["plan"], "pro");

        // With scrubbing off, nothing changes.
        let off = Scrubber::from_settings(&ProjectSettings {
            scrub_data: false,
            ..Default::default()
        });
        let mut kept = feedback.clone();
        kept.comments = "card 4111 1111 1111 1111".into();
        let before = kept.clone();
        off.scrub_feedback(&mut kept);
        assert_eq!(kept, before);
    }

    #[test]
    fn settings_control_scrubbing() {
        let settings = ProjectSettings {
            scrub_data: true,
            scrub_ip_addresses: true,
            sensitive_fields: vec!["ssn".into()],
            safe_fields: vec!["session".into()],
            ..Default::default()
        };
        let s = Scrubber::from_settings(&settings);
        let mut ev = json!({
            "user": {"ip_address": "1.2.3.4", "id": "u"},
            "extra": {"SSN": "123", "session": "keep", "msg": "from 10.0.0.1 ok"},
        });
        s.scrub(&mut ev);
        assert!(ev["user"].get("ip_address").is_none());
        assert_eq!(ev["extra"]["SSN"], FILTERED);
        assert_eq!(ev["extra"]["session"], "keep");
        assert_eq!(ev["extra"]["msg"], "from [ip] ok");
        let off = Scrubber::from_settings(&ProjectSettings {
            scrub_data: false,
            ..Default::default()
        });
        let mut ev = json!({"extra": {"password": "p"}});
        off.scrub(&mut ev);
        assert_eq!(ev["extra"]["password"], "p");
    }
}
