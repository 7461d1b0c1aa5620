//! Event normalization as Relay does it (reference/sentry-protocol.md §6): one parsed JSON
//! event in, one canonical event out, or an [`Invalid`] with the outcome reason.
//!
//! What comes out is what every later stage relies on: an object with a simple-form
//! `event_id`, float-second `timestamp`/`received` (clock drift corrected, bounded to the
//! accepted window), a valid `level` and `platform`, `tags` as `[key, value]` pairs, interface
//! aliases resolved (`sentry.interfaces.*`, bare-array exceptions and breadcrumbs, plain-string
//! `message`), exceptions shaped (type/value split, mechanism type, stack moved in), frames
//! with `abs_path`/`filename`, and strings capped at Relay's lengths with `...`. Normalization
//! never panics on input: a wrong type is dropped (and noted in `errors`), not trusted.

use std::net::IpAddr;

use crate::value::{Map, Value};
use chrono::{DateTime, NaiveDateTime};
use uuid::Uuid;

/// Relay's minimum clock drift before it corrects (55 minutes).
pub const MINIMUM_CLOCK_DRIFT_MS: i64 = 55 * 60 * 1000;
/// Relay's default `max_secs_in_future` (60 s).
pub const MAX_FUTURE_MS: i64 = 60 * 1000;
/// Relay keeps at most this many frames per stack trace (the newest ones).
pub const MAX_FRAMES: usize = 250;
/// Depth past which `extra` values are cut.
const MAX_EXTRA_DEPTH: usize = 7;

/// Why an item was rejected; `reason` is the outcome reason Relay reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    /// Outcome reason (`invalid_json`, `payload`, …).
    pub reason: &'static str,
    /// Human detail for logs.
    pub detail: String,
}

impl Invalid {
    fn new(reason: &'static str, detail: impl Into<String>) -> Invalid {
        Invalid {
            reason,
            detail: detail.into(),
        }
    }
}

/// Sentry event types osprey distinguishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    /// Has at least one exception.
    Error,
    /// A message or anything else without an exception.
    Default,
    /// A performance transaction.
    Transaction,
}

impl EventType {
    /// The wire/API name.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Error => "error",
            EventType::Default => "default",
            EventType::Transaction => "transaction",
        }
    }
}

/// Everything about the record normalization needs besides the payload.
#[derive(Debug, Clone, Default)]
pub struct NormalizeContext<'a> {
    /// Project the event belongs to.
    pub project_id: u64,
    /// DSN key id.
    pub key_id: u64,
    /// When ingest received it (unix ms): `received`, the drift reference, the default time.
    pub received_ms: u64,
    /// Envelope header `sent_at`, already parsed (unix ms).
    pub sent_at_ms: Option<i64>,
    /// Event id from the envelope or item header.
    pub header_event_id: Option<Uuid>,
    /// The SDK's address for `{{auto}}`.
    pub client_addr: Option<IpAddr>,
    /// Envelope header `sdk`, used when the event has none.
    pub envelope_sdk: Option<&'a Value>,
    /// Oldest accepted event age (the retention window), ms.
    pub max_past_ms: u64,
    /// The record is a `transaction` item.
    pub is_transaction_item: bool,
}

/// A normalized event and the facts the pipeline needs without re-reading the JSON.
#[derive(Debug, Clone)]
pub struct Normalized {
    /// The canonical event object.
    pub event: Value,
    /// Its id.
    pub event_id: Uuid,
    /// Its (corrected) time, unix ms.
    pub timestamp_ms: u64,
    /// Its type.
    pub event_type: EventType,
}

/// Bits of [`Present`]: top-level keys that normalization reads, rewrites in place or
/// removes, but never adds unless the event had them. Once the first pass over the event
/// has found one absent, it stays absent, and every later lookup for it is skipped (about
/// twenty searches of the event's keys per event otherwise, each a scan or a binary search).
mod top {
    pub const LOGENTRY: u32 = 1 << 0;
    pub const EXCEPTION: u32 = 1 << 1;
    pub const STACKTRACE: u32 = 1 << 2;
    pub const THREADS: u32 = 1 << 3;
    pub const BREADCRUMBS: u32 = 1 << 4;
    pub const START_TIMESTAMP: u32 = 1 << 5;
    pub const SPANS: u32 = 1 << 6;
    pub const RELEASE: u32 = 1 << 7;
    pub const DIST: u32 = 1 << 8;
    pub const ENVIRONMENT: u32 = 1 << 9;
    pub const SERVER_NAME: u32 = 1 << 10;
    pub const SITE: u32 = 1 << 11;
    pub const TRANSACTION: u32 = 1 << 12;
    pub const CULPRIT: u32 = 1 << 13;
    pub const LOGGER: u32 = 1 << 14;
    pub const USER: u32 = 1 << 15;
    pub const REQUEST: u32 = 1 << 16;
    pub const CONTEXTS: u32 = 1 << 17;
    pub const MEASUREMENTS: u32 = 1 << 18;
    pub const BREAKDOWNS: u32 = 1 << 19;
    pub const EXTRA: u32 = 1 << 20;
    pub const FINGERPRINT: u32 = 1 << 21;
    pub const TIME_SPENT: u32 = 1 << 22;
    pub const SDK: u32 = 1 << 23;
}

/// Which [`top`] keys the event had after its first pass (see there).
#[derive(Debug, Clone, Copy)]
struct Present(u32);

impl Present {
    /// Every key possibly there: each lookup is made (the path the mask shortcuts).
    #[cfg(test)]
    const ALL: Present = Present(u32::MAX);

    /// Whether the key of `bit` may be in the event (false: it is not).
    #[inline]
    fn may_have(self, bit: u32) -> bool {
        self.0 & bit != 0
    }
}

/// For a top-level key Relay knows, its [`top`] bit (0 for the keys normalization adds
/// itself); `None` for anything else, which is removed (Relay's `remove_other`). A `match`
/// (length, then the bytes) rather than a search of a list: every top-level key of every
/// event goes through it.
fn known_top_level_key(key: &str) -> Option<u32> {
    use top::*;
    Some(match key {
        "logentry" => LOGENTRY,
        "exception" => EXCEPTION,
        "stacktrace" => STACKTRACE,
        "threads" => THREADS,
        "breadcrumbs" => BREADCRUMBS,
        "start_timestamp" => START_TIMESTAMP,
        "spans" => SPANS,
        "release" => RELEASE,
        "dist" => DIST,
        "environment" => ENVIRONMENT,
        "server_name" => SERVER_NAME,
        "site" => SITE,
        "transaction" => TRANSACTION,
        "culprit" => CULPRIT,
        "logger" => LOGGER,
        "user" => USER,
        "request" => REQUEST,
        "contexts" => CONTEXTS,
        "measurements" => MEASUREMENTS,
        "breakdowns" => BREAKDOWNS,
        "extra" => EXTRA,
        "fingerprint" => FINGERPRINT,
        "time_spent" => TIME_SPENT,
        "sdk" => SDK,
        "event_id"
        | "level"
        | "version"
        | "type"
        | "transaction_info"
        | "modules"
        | "platform"
        | "timestamp"
        | "received"
        | "template"
        | "tags"
        | "debug_meta"
        | "errors"
        | "key_id"
        | "project"
        | "grouping_config"
        | "checksum"
        | "main_exception_id"
        // Security-report interfaces (see `security`).
        | "csp"
        | "hpkp"
        | "expectct"
        | "expectstaple" => 0,
        _ => return None,
    })
}

/// Legacy interface names and where Relay puts them.
const ALIASES: &[(&str, &str)] = &[
    ("sentry.interfaces.Exception", "exception"),
    ("sentry.interfaces.Message", "logentry"),
    ("message", "logentry"),
    ("sentry.interfaces.Stacktrace", "stacktrace"),
    ("sentry.interfaces.Http", "request"),
    ("sentry.interfaces.User", "user"),
    ("sentry.interfaces.Breadcrumbs", "breadcrumbs"),
    ("sentry.interfaces.Template", "template"),
    ("sentry.interfaces.Threads", "threads"),
    ("sentry.interfaces.DebugMeta", "debug_meta"),
    ("client_sdk", "sdk"),
];

/// Whether `key` may be one of [`ALIASES`]' old names (every one of which passes).
#[inline]
fn may_be_alias(key: &str) -> bool {
    key.starts_with("sentry.") || key == "message" || key == "client_sdk"
}

/// The 19 platforms Relay accepts; anything else becomes `other`.
const PLATFORMS: &[&str] = &[
    "as3",
    "c",
    "cfml",
    "cocoa",
    "csharp",
    "elixir",
    "go",
    "groovy",
    "haskell",
    "java",
    "javascript",
    "native",
    "node",
    "objc",
    "other",
    "perl",
    "php",
    "python",
    "ruby",
];

/// Parses the payload and normalizes it.
pub fn normalize(payload: &[u8], ctx: &NormalizeContext<'_>) -> Result<Normalized, Invalid> {
    // UTF-8 is checked once for the whole payload: parsing from a `&str` then skips the
    // per-string check `from_slice` does (invalid UTF-8 is rejected either way).
    let text = std::str::from_utf8(payload)
        .map_err(|e| Invalid::new("invalid_json", format!("invalid UTF-8: {e}")))?;
    let value: Value =
        crate::value::from_str(text).map_err(|e| Invalid::new("invalid_json", e.to_string()))?;
    normalize_value(value, ctx)
}

/// Normalizes an already parsed event.
pub fn normalize_value(value: Value, ctx: &NormalizeContext<'_>) -> Result<Normalized, Invalid> {
    normalize_event(value, ctx, true)
}

/// [`normalize_value`]; `skip_absent` false makes every lookup that [`Present`] would skip
/// (the tests compare both).
fn normalize_event(
    value: Value,
    ctx: &NormalizeContext<'_>,
    skip_absent: bool,
) -> Result<Normalized, Invalid> {
    let Value::Object(mut ev) = value else {
        return Err(Invalid::new("payload", "event is not a JSON object"));
    };
    let mut errors: Vec<Value> = match ev.remove("errors") {
        Some(Value::Array(a)) => a.into_iter().take(100).collect(),
        _ => Vec::new(),
    };
    // One pass over the keys decides whether any alias is there (rarely: `message` on some
    // error events), instead of eleven searches for keys that are almost never present.
    if ev.keys().any(|k| may_be_alias(k)) {
        for (from, to) in ALIASES {
            if let Some(v) = ev.remove(from) {
                ev.entry(*to).or_insert(v);
            }
        }
    }
    let mut present = 0;
    ev.retain(|k, _| match known_top_level_key(k) {
        Some(bit) => {
            present |= bit;
            true
        }
        None => false,
    });
    let present = Present(if skip_absent { present } else { u32::MAX });

    let event_id = event_id(&mut ev, ctx, &mut errors);
    ev.insert_str("event_id", Value::String(event_id.simple().to_string()));

    if present.may_have(top::LOGENTRY) {
        normalize_logentry(&mut ev);
    }
    normalize_exceptions(&mut ev, present, &mut errors);
    let event_type = infer_type(&ev, ctx);
    ev.insert_str("type", Value::String(event_type.as_str().into()));

    if present.may_have(top::BREADCRUMBS) {
        normalize_breadcrumbs(&mut ev);
    }
    let timestamp_ms = normalize_timestamps(&mut ev, ctx, present, &mut errors);
    normalize_level(&mut ev, event_type, &mut errors);
    normalize_platform(&mut ev);
    normalize_strings(&mut ev, present, &mut errors);
    normalize_tags(&mut ev, &mut errors);
    normalize_user_and_request(&mut ev, ctx, present);
    if present.may_have(top::CONTEXTS) {
        normalize_contexts(&mut ev);
    }
    if event_type != EventType::Transaction {
        for (key, bit) in [
            ("measurements", top::MEASUREMENTS),
            ("breakdowns", top::BREAKDOWNS),
            ("spans", top::SPANS),
        ] {
            if present.may_have(bit) {
                ev.remove(key);
            }
        }
    }
    let extra = if present.may_have(top::EXTRA) {
        ev.get_mut("extra")
    } else {
        None
    };
    let has_extra = if let Some(Value::Object(extra)) = extra {
        for v in extra.values_mut() {
            cut_depth(v, MAX_EXTRA_DEPTH - 1);
        }
        true
    } else {
        false
    };
    if !present.may_have(top::FINGERPRINT) {
        // Nothing to drop or clean.
    } else if !ev.get("fingerprint").is_some_and(Value::is_array) {
        ev.remove("fingerprint");
    } else if let Some(Value::Array(fp)) = ev.get_mut("fingerprint") {
        // Relay keeps strings and stringifies numbers/bools; anything else is dropped.
        let parts: Vec<Value> = fp
            .drain(..)
            .filter_map(|v| match v {
                Value::String(s) => Some(Value::String(s)),
                Value::Number(n) => Some(Value::String(n.to_string())),
                Value::Bool(b) => Some(Value::String(if b { "True" } else { "False" }.into())),
                _ => None,
            })
            .collect();
        *fp = parts;
    }
    if present.may_have(top::TIME_SPENT)
        && ev
            .get("time_spent")
            .and_then(Value::as_u64)
            .is_some_and(|t| t >= (1 << 31) - 1)
    {
        ev.remove("time_spent");
    }
    if !present.may_have(top::SDK) || ev.get("sdk").is_none_or(|s| !s.is_object()) {
        match ctx.envelope_sdk {
            Some(sdk) if sdk.is_object() => {
                ev.insert_str("sdk", sdk.clone());
            }
            _ => {
                ev.remove("sdk");
            }
        }
    }
    // The top-level keys every event gets, merged in with one pass over the event's keys
    // (in key order; see `Map::insert_sorted_strs`).
    let mut tail: Vec<(&str, Value)> = Vec::with_capacity(8);
    tail.push(("errors", Value::Array(errors)));
    if !has_extra {
        tail.push(("extra", Value::Object(Map::new())));
    }
    tail.push((
        "grouping_config",
        Value::Object(Map::from_pairs(vec![
            (
                "enhancements".into(),
                Value::String("all-platforms:2023-01-11".into()),
            ),
            ("id".into(), Value::String("newstyle:2023-01-11".into())),
        ])),
    ));
    tail.push(("key_id", Value::String(ctx.key_id.to_string())));
    if !present.may_have(top::LOGGER) || !ev.contains_key("logger") {
        tail.push(("logger", Value::String(String::new())));
    }
    tail.push(("project", Value::from(ctx.project_id)));
    tail.push(("received", secs_value(ctx.received_ms as i64)));
    tail.push(("version", Value::String("7".into())));
    ev.insert_sorted_strs(tail);
    Ok(Normalized {
        event: Value::Object(ev),
        event_id,
        timestamp_ms,
        event_type,
    })
}

fn event_id(
    ev: &mut Map<String, Value>,
    ctx: &NormalizeContext<'_>,
    errors: &mut Vec<Value>,
) -> Uuid {
    match ev.get("event_id") {
        Some(Value::String(s)) => match Uuid::try_parse(s.trim()) {
            Ok(id) if !id.is_nil() => return id,
            _ => errors.push(
                crate::value::json!({"type": "invalid_data", "name": "event_id", "value": s}),
            ),
        },
        Some(Value::Null) | None => {}
        Some(other) => errors.push(
            crate::value::json!({"type": "invalid_data", "name": "event_id", "value": other}),
        ),
    }
    ctx.header_event_id.unwrap_or_else(Uuid::new_v4)
}

fn infer_type(ev: &Map<String, Value>, ctx: &NormalizeContext<'_>) -> EventType {
    if ctx.is_transaction_item || ev.get("type").and_then(Value::as_str) == Some("transaction") {
        return EventType::Transaction;
    }
    let has_exception = ev
        .get("exception")
        .and_then(|e| e.get("values"))
        .and_then(Value::as_array)
        .is_some_and(|v| !v.is_empty());
    if has_exception {
        EventType::Error
    } else {
        EventType::Default
    }
}

/// Parses a timestamp in any form Relay accepts into unix ms.
pub fn parse_timestamp(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => {
            let secs = n.as_f64()?;
            if !secs.is_finite() || !(0.0..=1e11).contains(&secs) {
                return None;
            }
            Some((secs * 1000.0).round() as i64)
        }
        Value::String(s) => parse_timestamp_str(s),
        _ => None,
    }
}

/// Parses an RFC 3339 or naive (UTC) datetime string into unix ms.
pub fn parse_timestamp_str(s: &str) -> Option<i64> {
    let s = s.trim();
    if let Ok(naive) = NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f") {
        return Some(naive.and_utc().timestamp_millis());
    }
    if let Ok(dt) = DateTime::parse_from_rfc3339(s) {
        return Some(dt.timestamp_millis());
    }
    if let Ok(naive) = NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f") {
        return Some(naive.and_utc().timestamp_millis());
    }
    None
}

fn secs_value(ms: i64) -> Value {
    serde_json::Number::from_f64(ms as f64 / 1000.0)
        .map(Value::Number)
        .unwrap_or(Value::Null)
}

fn ms_to_iso(ms: i64) -> String {
    DateTime::from_timestamp_millis(ms)
        .map(|d| d.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
        .unwrap_or_default()
}

/// Parses a timestamp in any form [`parse_timestamp`] accepts into unix microseconds, rounded
/// to the nearest one whatever the form. Rewritten timestamps keep the SDK's sub-millisecond
/// precision, or transaction and span durations (end − start) would be off by up to a
/// millisecond. Both forms round (never truncate) because SDKs mix them within one span: the
/// Rust SDK writes `start_timestamp` as float seconds and `timestamp` as RFC 3339 with
/// nanoseconds, and truncating one while rounding the other made a span shorter than a
/// microsecond end before it started.
pub fn parse_timestamp_us(v: &Value) -> Option<i64> {
    let us = match v {
        // Float seconds: the common case (every span has two), computed without the
        // millisecond parse, which cannot disagree with it (see `float_secs_to_us`).
        Value::Number(n) => return float_secs_to_us(n.as_f64()?),
        Value::String(s) => {
            let s = s.trim();
            let parsed = NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f")
                .map(|n| n.and_utc())
                .or_else(|_| DateTime::parse_from_rfc3339(s).map(|d| d.to_utc()))
                .or_else(|_| {
                    NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f").map(|n| n.and_utc())
                })
                .ok()?;
            // Sub-second nanoseconds may reach 1,999,999,999 in a leap second; rounding them
            // up to the next microsecond is the nearest instant either way.
            let micros = (i64::from(parsed.timestamp_subsec_nanos()) + 500) / 1000;
            parsed
                .timestamp()
                .checked_mul(1_000_000)?
                .checked_add(micros)?
        }
        _ => return None,
    };
    // Same instant as the millisecond parse (guards against any parser disagreement).
    let ms = parse_timestamp(v)?;
    ((us - ms * 1000).abs() <= 1000).then_some(us)
}

/// Float seconds as unix microseconds, for [`parse_timestamp_us`]: `None` where
/// [`parse_timestamp`] refuses the number (not finite, or outside 0..=1e11 s).
///
/// Whole seconds and the fraction apart: `secs * 1e6` in one step rounds in the 53-bit
/// product (1795940937.1108644 × 1e6 comes out as …864.5, then …865). Integer casts instead
/// of `f64::trunc`/`round` (software routines on baseline x86-64): in 0..=1e11 `as i64`
/// truncates exactly like `trunc`, `x − ⌊x⌋` is exact for non-negative `x`, and rounding half
/// away from zero is `⌊x⌋ + (x − ⌊x⌋ ≥ 0.5)`. The result is within half a microsecond (plus
/// the float's error, far below 1 µs here) of `secs`, and the millisecond parse within half a
/// millisecond, so the agreement check of the string path can never fail for a number.
#[inline]
fn float_secs_to_us(secs: f64) -> Option<i64> {
    if !secs.is_finite() || !(0.0..=1e11).contains(&secs) {
        return None;
    }
    let whole = secs as i64;
    let frac_us = (secs - whole as f64) * 1e6;
    let floor = frac_us as i64;
    Some(whole * 1_000_000 + floor + i64::from(frac_us - floor as f64 >= 0.5))
}

fn secs_value_us(us: i64) -> Value {
    serde_json::Number::from_f64(us as f64 / 1e6)
        .map(Value::Number)
        .unwrap_or(Value::Null)
}

/// How far a span's end may precede its start and still count as zero-length: float seconds
/// carry only about 0.24 µs at today's epoch, so an SDK's sub-microsecond span (the Rust SDK
/// finishes an empty child span ~50 ns after starting it) can come out a microsecond inverted
/// once both ends are whole microseconds. A real inversion is far larger and is still refused.
const FLOAT_SECONDS_SLACK_US: i64 = 1;

/// Rewrites a timestamp field in place as float seconds shifted by `shift_ms`, returning the
/// microseconds written; unparsable values are removed.
fn shift_field(obj: &mut Map<String, Value>, key: &str, shift_ms: i64) -> Option<i64> {
    // Rewritten in place (no new key string, no second search): this runs twice per span.
    let v = obj.get_mut(key)?;
    match parse_timestamp_us(v) {
        Some(us) => {
            let shifted = us + shift_ms * 1000;
            *v = secs_value_us(shifted);
            Some(shifted)
        }
        None => {
            obj.remove(key);
            None
        }
    }
}

/// Sets `timestamp` to `start` when it precedes it by no more than float seconds' precision
/// ([`FLOAT_SECONDS_SLACK_US`]).
fn close_float_gap(obj: &mut Map<String, Value>, start_us: Option<i64>, end_us: Option<i64>) {
    if let (Some(start), Some(end)) = (start_us, end_us) {
        if end < start && start - end <= FLOAT_SECONDS_SLACK_US {
            if let Some(v) = obj.get_mut("timestamp") {
                *v = secs_value_us(start);
            }
        }
    }
}

/// What `shift_field(span, "start_timestamp")`, `shift_field(span, "timestamp")` and
/// [`close_float_gap`] do, with one pass over the span's keys (one `match` on each key's text)
/// instead of two searches plus one: every span of a transaction comes through here.
fn shift_span(span: &mut Map<String, Value>, shift_ms: i64) {
    let (mut start_v, mut end_v) = (None, None);
    for (key, value) in span.iter_mut() {
        match key.as_str() {
            "start_timestamp" => start_v = Some(value),
            "timestamp" => end_v = Some(value),
            _ => {}
        }
    }
    let (start_present, end_present) = (start_v.is_some(), end_v.is_some());
    let start_us = start_v.and_then(|v| shift_value(v, shift_ms));
    let end_us = end_v.and_then(|v| {
        let end_us = shift_value(v, shift_ms);
        // `close_float_gap`: an end within float precision before its start closes to it.
        if let (Some(start), Some(end)) = (start_us, end_us) {
            if end < start && start - end <= FLOAT_SECONDS_SLACK_US {
                *v = secs_value_us(start);
            }
        }
        end_us
    });
    // Unparsable ends are removed, as `shift_field` does.
    if start_present && start_us.is_none() {
        span.remove("start_timestamp");
    }
    if end_present && end_us.is_none() {
        span.remove("timestamp");
    }
}

/// The value part of [`shift_field`]: rewrites a parsable timestamp as float seconds shifted
/// by `shift_ms` and returns its microseconds; leaves anything else alone.
fn shift_value(v: &mut Value, shift_ms: i64) -> Option<i64> {
    let shifted = parse_timestamp_us(v)? + shift_ms * 1000;
    *v = secs_value_us(shifted);
    Some(shifted)
}

fn normalize_timestamps(
    ev: &mut Map<String, Value>,
    ctx: &NormalizeContext<'_>,
    present: Present,
    errors: &mut Vec<Value>,
) -> u64 {
    let received = ctx.received_ms as i64;
    let mut ts = match ev.get("timestamp") {
        None | Some(Value::Null) => received,
        Some(v) => {
            match parse_timestamp(v) {
                Some(ms) => ms,
                None => {
                    errors.push(crate::value::json!({"type": "invalid_data", "name": "timestamp", "value": v}));
                    received
                }
            }
        }
    };
    let precise = ev
        .get("timestamp")
        .and_then(parse_timestamp_us)
        .map_or_else(|| secs_value(ts), secs_value_us);
    ev.insert_str("timestamp", precise);
    // Clock drift: the SDK's clock is off by received − sent_at; correct only large drifts.
    let mut shift = 0i64;
    if let Some(sent_at) = ctx.sent_at_ms {
        let drift = received - sent_at;
        if drift.abs() >= MINIMUM_CLOCK_DRIFT_MS {
            shift = drift;
            errors.push(crate::value::json!({
                "type": "clock_drift",
                "name": "timestamp",
                "sdk_time": ms_to_iso(sent_at),
                "server_time": ms_to_iso(received),
            }));
        }
    }
    let corrected = ts + shift;
    // Out of the accepted window: treat the event time itself as sent_at, as Relay does.
    let max_past = ctx.max_past_ms.min(i64::MAX as u64) as i64;
    let bound_error = if corrected > received + MAX_FUTURE_MS {
        Some("future_timestamp")
    } else if max_past > 0 && corrected < received - max_past {
        Some("past_timestamp")
    } else {
        None
    };
    if let Some(kind) = bound_error {
        errors.push(crate::value::json!({
            "type": kind,
            "name": "timestamp",
            "sdk_time": ms_to_iso(corrected),
            "server_time": ms_to_iso(received),
        }));
        shift = received - ts;
    }
    if shift != 0 {
        shift_field(ev, "timestamp", shift);
    }
    ts += shift;
    if present.may_have(top::START_TIMESTAMP) {
        if let Some(start) = shift_field(ev, "start_timestamp", shift) {
            let end = ev.get("timestamp").and_then(parse_timestamp_us);
            close_float_gap(ev, Some(start), end);
        }
    }
    if !present.may_have(top::SPANS) {
        // No spans to shift.
    } else if let Some(Value::Array(spans)) = ev.get_mut("spans") {
        for span in spans.iter_mut().filter_map(Value::as_object_mut) {
            shift_span(span, shift);
        }
    }
    if !present.may_have(top::BREADCRUMBS) {
        // No breadcrumbs to shift.
    } else if let Some(values) = ev
        .get_mut("breadcrumbs")
        .and_then(|b| b.get_mut("values"))
        .and_then(Value::as_array_mut)
    {
        for crumb in values.iter_mut().filter_map(Value::as_object_mut) {
            shift_field(crumb, "timestamp", shift);
        }
    }
    ts.max(0) as u64
}

fn normalize_level(ev: &mut Map<String, Value>, event_type: EventType, errors: &mut Vec<Value>) {
    let level = match ev.get("level") {
        Some(Value::String(s)) => match s.trim().to_ascii_lowercase().as_str() {
            "debug" => Some("debug"),
            "info" | "log" => Some("info"),
            "warning" | "warn" => Some("warning"),
            "error" => Some("error"),
            "fatal" | "critical" => Some("fatal"),
            _ => None,
        },
        Some(Value::Number(n)) => match n.as_i64() {
            Some(10) => Some("debug"),
            Some(20) => Some("info"),
            Some(30) => Some("warning"),
            Some(40) => Some("error"),
            Some(50) => Some("fatal"),
            _ => None,
        },
        _ => None,
    };
    if level.is_none() {
        if let Some(v) = ev.get("level").filter(|v| !v.is_null()) {
            errors.push(crate::value::json!({"type": "invalid_data", "name": "level", "value": v}));
        }
    }
    let level = level.unwrap_or(match event_type {
        EventType::Transaction => "info",
        _ => "error",
    });
    ev.insert_str("level", Value::String(level.into()));
}

fn normalize_platform(ev: &mut Map<String, Value>) {
    let platform = ev
        .get("platform")
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|p| PLATFORMS.contains(p))
        .unwrap_or("other")
        .to_owned();
    ev.insert_str("platform", Value::String(platform));
}

/// Cuts `s` to `max` characters (ending in `...`) if it is longer than `max + allowance`.
#[inline]
pub fn trim_chars(s: &mut String, max: usize, allowance: usize) -> bool {
    if s.len() <= max + allowance {
        // Byte length bounds char count from above: nothing to do (almost every string of
        // an event, so this test is inlined and only long strings make a call).
        return false;
    }
    trim_long_chars(s, max, allowance)
}

/// [`trim_chars`] of a string of more than `max + allowance` bytes.
fn trim_long_chars(s: &mut String, max: usize, allowance: usize) -> bool {
    let count = s.chars().count();
    if count <= max + allowance {
        return false;
    }
    let keep = max.saturating_sub(3);
    let cut = s
        .char_indices()
        .nth(keep)
        .map(|(i, _)| i)
        .unwrap_or(s.len());
    s.truncate(cut);
    s.push_str("...");
    true
}

fn trim_field(obj: &mut Map<String, Value>, key: &str, max: usize, allowance: usize) {
    if let Some(Value::String(s)) = obj.get_mut(key) {
        trim_chars(s, max, allowance);
    }
}

/// Turns a "lenient" scalar (string, number, bool) into a string, as Relay does for
/// `release`, `dist`, tag values and the like.
fn lenient_string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(true) => Some("True".into()),
        Value::Bool(false) => Some("False".into()),
        _ => None,
    }
}

/// Trims the top-level string field `key` of whitespace, then, if it is valid for its field,
/// caps it and returns true; an invalid value is left trimmed (for the error) and false
/// returned.
fn normalize_string_field(key: &str, s: &mut String) -> bool {
    let trimmed = s.trim();
    if trimmed.len() != s.len() {
        *s = trimmed.to_owned();
    }
    // Byte tests: every character tested for is ASCII, and in UTF-8 an ASCII byte is only
    // ever that character (a `char` pattern per character was most of this function's cost).
    let has_any = |bytes: &[u8]| s.bytes().any(|b| bytes.contains(&b));
    let valid = match key {
        "release" => {
            !s.is_empty()
                && s != "."
                && s != ".."
                && !s.eq_ignore_ascii_case("latest")
                && !has_any(b"\n\r\t/\\")
        }
        "environment" => !s.is_empty() && !has_any(b"\n\r/"),
        "dist" => {
            !s.is_empty()
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
        }
        "logger" => !has_any(b"\n\r"),
        _ => !s.is_empty(),
    };
    if !valid {
        return false;
    }
    let (max, allowance) = match key {
        "release" | "transaction" | "culprit" => (200, 0),
        "dist" | "environment" | "logger" => (64, 0),
        "server_name" | "site" => (256, 20),
        _ => (256, 0),
    };
    trim_chars(s, max, allowance);
    true
}

fn normalize_strings(ev: &mut Map<String, Value>, present: Present, errors: &mut Vec<Value>) {
    for (key, bit) in [
        ("release", top::RELEASE),
        ("dist", top::DIST),
        ("environment", top::ENVIRONMENT),
        ("server_name", top::SERVER_NAME),
        ("site", top::SITE),
        ("transaction", top::TRANSACTION),
        ("culprit", top::CULPRIT),
        ("logger", top::LOGGER),
    ] {
        if !present.may_have(bit) {
            continue;
        }
        // A string (nearly always) is checked and capped where it is: no copy, no insert.
        match ev.get_mut(key) {
            None => continue,
            Some(Value::String(s)) => {
                if normalize_string_field(key, s) {
                    continue;
                }
                let s = std::mem::take(s);
                if !s.is_empty() {
                    errors.push(
                        crate::value::json!({"type": "invalid_data", "name": key, "value": s}),
                    );
                }
                ev.remove(key);
                continue;
            }
            Some(_) => {}
        }
        let Some(v) = ev.get(key) else { continue };
        let Some(mut s) = lenient_string(v) else {
            errors.push(crate::value::json!({"type": "invalid_data", "name": key, "value": v}));
            ev.remove(key);
            continue;
        };
        if !normalize_string_field(key, &mut s) {
            if !s.is_empty() {
                errors.push(crate::value::json!({"type": "invalid_data", "name": key, "value": s}));
            }
            ev.remove(key);
            continue;
        }
        ev.insert(key.into(), Value::String(s));
    }
    if !present.may_have(top::LOGENTRY) {
        // No log entry to cap.
    } else if let Some(Value::Object(le)) = ev.get_mut("logentry") {
        trim_field(le, "message", 8192, 200);
        trim_field(le, "formatted", 8192, 200);
    }
}

fn normalize_logentry(ev: &mut Map<String, Value>) {
    let Some(le) = ev.remove("logentry") else {
        return;
    };
    let mut obj = match le {
        Value::String(s) => {
            let mut m = Map::new();
            m.insert_str("formatted", Value::String(s));
            m
        }
        Value::Object(m) => m,
        _ => return,
    };
    for key in ["message", "formatted"] {
        match obj.get(key) {
            Some(Value::String(_)) | None => {}
            Some(other) => {
                let s = lenient_string(other).unwrap_or_else(|| other.to_string());
                obj.insert(key.into(), Value::String(s));
            }
        }
    }
    if !obj.contains_key("formatted") {
        if let Some(Value::String(msg)) = obj.get("message") {
            let formatted = match obj.get("params") {
                Some(Value::Array(params)) => format_params(msg, params),
                _ => msg.clone(),
            };
            obj.insert_str("formatted", Value::String(formatted));
        }
    }
    let empty = |k: &str| obj.get(k).and_then(Value::as_str).is_none_or(str::is_empty);
    if empty("formatted") && empty("message") {
        return;
    }
    ev.insert_str("logentry", Value::Object(obj));
}

/// Fills `%s` (and `{}`) placeholders with positional params, as Relay's logentry does.
fn format_params(msg: &str, params: &[Value]) -> String {
    let mut out = String::with_capacity(msg.len());
    let mut params = params.iter();
    let mut rest = msg;
    while let Some(pos) = rest.find(['%', '{']) {
        out.push_str(&rest[..pos]);
        let tail = &rest[pos..];
        let token = if tail.starts_with("%s") || tail.starts_with("{}") {
            Some(2)
        } else {
            None
        };
        match (token, token.and_then(|_| params.next())) {
            (Some(len), Some(p)) => {
                out.push_str(&lenient_string(p).unwrap_or_else(|| p.to_string()));
                rest = &tail[len..];
            }
            _ => {
                out.push_str(&tail[..1]);
                rest = &tail[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

fn normalize_exceptions(ev: &mut Map<String, Value>, present: Present, errors: &mut Vec<Value>) {
    let exception = if present.may_have(top::EXCEPTION) {
        ev.remove("exception")
    } else {
        None
    };
    let values = match exception {
        Some(Value::Array(a)) => a,
        Some(Value::Object(mut o)) => match o.remove("values") {
            Some(Value::Array(a)) => a,
            _ if o.contains_key("type") || o.contains_key("value") => vec![Value::Object(o)],
            _ => Vec::new(),
        },
        _ => Vec::new(),
    };
    let mut out = Vec::with_capacity(values.len());
    for v in values {
        let Value::Object(mut exc) = v else { continue };
        for key in ["type", "value", "module"] {
            match exc.get(key) {
                Some(Value::String(_)) | None => {}
                Some(Value::Null) => {
                    exc.remove(key);
                }
                Some(other) => {
                    // Relay stringifies non-string values (JSON for objects).
                    let s = lenient_string(other).unwrap_or_else(|| other.to_string());
                    exc.insert(key.into(), Value::String(s));
                }
            }
        }
        let ty_empty = exc
            .get("type")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty);
        if ty_empty {
            if let Some(Value::String(value)) = exc.get("value") {
                if let Some((ty, rest)) = split_type_value(value) {
                    exc.insert_str("type", Value::String(ty));
                    exc.insert_str("value", Value::String(rest));
                }
            }
        }
        let has = |k: &str| {
            exc.get(k)
                .and_then(Value::as_str)
                .is_some_and(|s| !s.is_empty())
        };
        if !has("type") && !has("value") {
            errors.push(crate::value::json!({"type": "invalid_data", "name": "exception", "reason": "type or value required"}));
            continue;
        }
        trim_field(&mut exc, "type", 256, 20);
        trim_field(&mut exc, "value", 8192, 200);
        if let Some(Value::Object(mech)) = exc.get_mut("mechanism") {
            if mech
                .get("type")
                .and_then(Value::as_str)
                .is_none_or(str::is_empty)
            {
                mech.insert_str("type", Value::String("generic".into()));
            }
        } else if exc.get("mechanism").is_some() {
            exc.remove("mechanism");
        }
        normalize_stacktrace_in(&mut exc, "stacktrace");
        normalize_stacktrace_in(&mut exc, "raw_stacktrace");
        out.push(Value::Object(exc));
    }
    // A lone exception without a stack takes the deprecated top-level stacktrace.
    let top_stacktrace = if present.may_have(top::STACKTRACE) {
        ev.remove("stacktrace")
    } else {
        None
    };
    if out.len() == 1 {
        if let (Some(st), Some(exc)) = (top_stacktrace, out[0].as_object_mut()) {
            if !exc.contains_key("stacktrace") {
                exc.insert_str("stacktrace", st);
                normalize_stacktrace_in(exc, "stacktrace");
            }
        }
    } else if let Some(st) = top_stacktrace {
        ev.insert_str("stacktrace", st);
        normalize_stacktrace_in(ev, "stacktrace");
    }
    let threads = if present.may_have(top::THREADS) {
        ev.remove("threads")
    } else {
        None
    };
    if let Some(threads) = threads {
        let mut list = match threads {
            Value::Array(a) => a,
            Value::Object(mut o) => match o.remove("values") {
                Some(Value::Array(a)) => a,
                _ => Vec::new(),
            },
            _ => Vec::new(),
        };
        for t in list.iter_mut().filter_map(Value::as_object_mut) {
            normalize_stacktrace_in(t, "stacktrace");
        }
        if !list.is_empty() {
            ev.insert_str("threads", values_object(list));
        }
    }
    if !out.is_empty() {
        ev.insert_str("exception", values_object(out));
    }
}

/// `{"values": list}`, moving the list in. (`json!({"values": list})` would serialize the
/// list into a fresh `Value`: a deep copy of every exception and frame.)
fn values_object(list: Vec<Value>) -> Value {
    let mut m = Map::new();
    m.insert_str("values", Value::Array(list));
    Value::Object(m)
}

/// `Type: value` → (`Type`, `value`), Relay's `^(\w+):(.*)$` with trimming.
fn split_type_value(value: &str) -> Option<(String, String)> {
    let (ty, rest) = value.split_once(':')?;
    if ty.is_empty() || !ty.chars().all(|c| c.is_alphanumeric() || c == '_') || rest.contains('\n')
    {
        return None;
    }
    Some((ty.trim().to_owned(), rest.trim().to_owned()))
}

fn normalize_stacktrace_in(parent: &mut Map<String, Value>, key: &str) {
    let Some(st) = parent.get_mut(key) else {
        return;
    };
    let Some(st_obj) = st.as_object_mut() else {
        parent.remove(key);
        return;
    };
    let Some(Value::Array(frames)) = st_obj.get_mut("frames") else {
        parent.remove(key);
        return;
    };
    frames.retain(Value::is_object);
    if frames.len() > MAX_FRAMES {
        let drop = frames.len() - MAX_FRAMES;
        frames.drain(..drop);
        let omitted = crate::value::json!([0, drop]);
        st_obj.insert_str("frames_omitted", omitted);
    }
    let Some(Value::Array(frames)) = st_obj.get_mut("frames") else {
        return;
    };
    for frame in frames.iter_mut().filter_map(Value::as_object_mut) {
        normalize_frame(frame);
    }
}

/// Known-key indices ([`Key::known_index`](crate::value::Key::known_index)) of the frame
/// fields [`normalize_frame`] checks: a key with one of these texts is always stored as that
/// known key, so matching the index is matching the text.
mod frame_key {
    use crate::value::known_index_of;
    pub const FILENAME: u8 = known_index_of("filename");
    pub const ABS_PATH: u8 = known_index_of("abs_path");
    pub const FUNCTION: u8 = known_index_of("function");
    pub const MODULE: u8 = known_index_of("module");
    pub const PACKAGE: u8 = known_index_of("package");
    pub const CONTEXT_LINE: u8 = known_index_of("context_line");
    pub const LINENO: u8 = known_index_of("lineno");
    pub const COLNO: u8 = known_index_of("colno");
    pub const IN_APP: u8 = known_index_of("in_app");
}

/// Drops frame fields of the wrong type, fills `abs_path` from `filename` or the other way
/// round, and caps the path and name fields. One pass over the frame's own keys (a frame has
/// a handful), each dispatched on its known-key index, instead of a text `match` per key, two
/// searches and a second pass to trim: this runs for every frame of every event.
fn normalize_frame(frame: &mut Map<String, Value>) {
    use frame_key::*;
    let (mut has_filename, mut has_abs_path) = (false, false);
    // `abs_path` as sent, kept only when capping it changed it: a `filename` derived from it
    // comes from the whole path, as it did when capping came last.
    let mut uncapped_abs_path: Option<String> = None;
    // Fields of the wrong type are only marked here and dropped by a second pass, which
    // almost no frame needs (a `retain` would call its closure for every field).
    let mut drop_some = false;
    for (key, v) in frame.iter_mut() {
        let Some(index) = key.known_index() else {
            continue;
        };
        match index {
            FILENAME | ABS_PATH | FUNCTION | MODULE | PACKAGE | CONTEXT_LINE => {
                let Value::String(s) = v else {
                    drop_some = true;
                    continue;
                };
                match index {
                    FILENAME => {
                        has_filename = !s.is_empty();
                        trim_chars(s, 256, 40);
                    }
                    ABS_PATH => {
                        has_abs_path = !s.is_empty();
                        if s.len() > 256 + 40 {
                            let before = s.clone();
                            if trim_chars(s, 256, 40) {
                                uncapped_abs_path = Some(before);
                            }
                        }
                    }
                    FUNCTION | MODULE | PACKAGE => {
                        trim_chars(s, 256, 20);
                    }
                    _ => {}
                }
            }
            LINENO | COLNO => match v {
                Value::Number(n) if n.as_u64().is_some() => {}
                Value::String(s) => match s.parse::<u64>() {
                    Ok(n) => *v = Value::from(n),
                    Err(_) => drop_some = true,
                },
                _ => drop_some = true,
            },
            IN_APP => drop_some |= !v.is_boolean(),
            _ => {}
        }
    }
    if drop_some {
        // Line and column strings that parse are numbers by now.
        frame.retain(|key, v| match key.known_index() {
            Some(FILENAME | ABS_PATH | FUNCTION | MODULE | PACKAGE | CONTEXT_LINE) => v.is_string(),
            Some(LINENO | COLNO) => v.as_u64().is_some(),
            Some(IN_APP) => v.is_boolean(),
            _ => true,
        });
    }
    match (has_filename, has_abs_path) {
        (true, false) => {
            // Capped already, as the copy would have been.
            if let Some(Value::String(f)) = frame.get("filename") {
                let f = f.clone();
                frame.insert_str("abs_path", Value::String(f));
            }
        }
        (false, true) => {
            let derived = match (&uncapped_abs_path, frame.get("abs_path")) {
                (Some(a), _) | (None, Some(Value::String(a))) => Some(filename_from_abs_path(a)),
                _ => None,
            };
            if let Some(mut f) = derived {
                trim_chars(&mut f, 256, 40);
                frame.insert_str("filename", Value::String(f));
            }
        }
        _ => {}
    }
}

/// For a URL, its path (with query); otherwise the path as given.
fn filename_from_abs_path(abs: &str) -> String {
    if let Some(rest) = abs.split_once("://").map(|(_, r)| r) {
        if let Some(slash) = rest.find('/') {
            return rest[slash..].to_owned();
        }
        return "/".into();
    }
    abs.to_owned()
}

/// Relay's `MaxChars::TagKey` and `MaxChars::TagValue` (Sentry's `MAX_TAG_KEY_LENGTH` and
/// `MAX_TAG_VALUE_LENGTH`), in characters.
const MAX_TAG_KEY_CHARS: usize = 200;
const MAX_TAG_VALUE_CHARS: usize = 200;

/// Normalizes one tag key the way Relay validates it; `None` = drop the tag.
pub fn normalize_tag_key(key: &str) -> Option<String> {
    let key = key.trim();
    // Spaces become dashes, so they pass here. Only ASCII passes at all, so once every byte
    // has, the byte length is the character count.
    let ok = !key.is_empty()
        && key.len() <= MAX_TAG_KEY_CHARS
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'-' | b' '));
    if !ok {
        return None;
    }
    Some(if key.contains(' ') {
        key.replace(' ', "-")
    } else {
        key.to_owned()
    })
}

/// Normalizes one tag value; `None` = drop the tag.
pub fn normalize_tag_value(value: &Value) -> Option<String> {
    normalize_tag_string(lenient_string(value)?)
}

/// [`normalize_tag_value`] of a string value, reusing its buffer (derived tags are built as
/// strings first: no copy of each).
pub fn normalize_tag_string(mut v: String) -> Option<String> {
    let t = v.trim();
    if t.len() != v.len() {
        v = t.to_owned();
    }
    if v.is_empty() || v.contains('\n') {
        return None;
    }
    trim_chars(&mut v, 200, 0);
    Some(v)
}

/// Whether `s` has more than `max` characters (its byte length bounds the count from above).
fn more_chars_than(s: &str, max: usize) -> bool {
    s.len() > max && s.chars().count() > max
}

fn normalize_tags(ev: &mut Map<String, Value>, errors: &mut Vec<Value>) {
    let raw: Vec<(String, Value)> = match ev.remove("tags") {
        Some(Value::Object(o)) => o.into_iter().map(|(k, v)| (k.into_string(), v)).collect(),
        Some(Value::Array(a)) => a
            .into_iter()
            .filter_map(|pair| match pair {
                Value::Array(mut kv) if kv.len() == 2 => {
                    let v = kv.pop()?;
                    let k = kv.pop()?;
                    Some((lenient_string(&k)?, v))
                }
                Value::String(s) => {
                    let (k, v) = s.split_once(':')?;
                    Some((k.to_owned(), Value::String(v.to_owned())))
                }
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    let mut tags: Vec<Value> = Vec::with_capacity(raw.len());
    let mut seen = std::collections::HashSet::new();
    for (k, v) in raw.into_iter().take(1000) {
        if v.is_null() {
            continue;
        }
        // A client's tag whose key or value is longer than Relay's limit is dropped with a
        // `value_too_long` error, not truncated (Relay's `normalize_event_tags`): a cut value
        // would be searched and counted as a value the SDK never sent. Only tags osprey derives
        // itself (`normalize_tag_string`) are shortened.
        // One text of the value serves the length check and the normalization.
        let value = lenient_string(&v);
        let too_long = more_chars_than(k.trim(), MAX_TAG_KEY_CHARS)
            || value
                .as_deref()
                .is_some_and(|v| more_chars_than(v.trim(), MAX_TAG_VALUE_CHARS));
        if too_long {
            let mut name = k;
            trim_chars(&mut name, MAX_TAG_KEY_CHARS, 0);
            errors.push(
                crate::value::json!({"type": "value_too_long", "name": format!("tags.{name}")}),
            );
            continue;
        }
        match (normalize_tag_key(&k), value.and_then(normalize_tag_string)) {
            (Some(k), Some(v)) => {
                if seen.insert(k.clone()) {
                    tags.push(Value::Array(vec![Value::String(k), Value::String(v)]));
                }
            }
            _ => errors
                .push(crate::value::json!({"type": "invalid_data", "name": format!("tags.{k}")})),
        }
    }
    ev.insert_str("tags", Value::Array(tags));
}

fn normalize_user_and_request(
    ev: &mut Map<String, Value>,
    ctx: &NormalizeContext<'_>,
    present: Present,
) {
    let client_ip = ctx.client_addr.map(|ip| Value::String(ip.to_string()));
    let user = if present.may_have(top::USER) {
        ev.get_mut("user")
    } else {
        None
    };
    if let Some(user) = user {
        match user.as_object_mut() {
            Some(u) => {
                if u.get("ip_address").and_then(Value::as_str) == Some("{{auto}}") {
                    match &client_ip {
                        Some(ip) => u.insert_str("ip_address", ip.clone()),
                        None => u.remove("ip_address"),
                    };
                }
                if let Some(id) = u.get("id").filter(|v| v.is_number()) {
                    let s = id.to_string();
                    u.insert_str("id", Value::String(s));
                }
                trim_field(u, "email", 75, 0);
                if u.is_empty() {
                    ev.remove("user");
                }
            }
            None => {
                ev.remove("user");
            }
        }
    }
    if !present.may_have(top::REQUEST) {
        return;
    }
    if let Some(req) = ev.get_mut("request") {
        let Some(r) = req.as_object_mut() else {
            ev.remove("request");
            return;
        };
        if let Some(Value::Object(env)) = r.get_mut("env") {
            if env.get("REMOTE_ADDR").and_then(Value::as_str) == Some("{{auto}}") {
                match &client_ip {
                    Some(ip) => env.insert_str("REMOTE_ADDR", ip.clone()),
                    None => env.remove("REMOTE_ADDR"),
                };
            }
        }
        if let Some(Value::String(m)) = r.get_mut("method") {
            *m = m.to_ascii_uppercase();
        }
        // Headers may come as an object; keep Relay's canonical pair list (headers already
        // sent as pairs stay as they are).
        if let Some(Value::Object(h)) = r.get_mut("headers") {
            let pairs = object_to_pairs(std::mem::take(h));
            r.insert_str("headers", Value::Array(pairs));
        }
        normalize_cookies(r);
        split_request_url(r);
        trim_field(r, "url", 256, 40);
    }
}

/// An object's entries as Relay's `[name, value]` pairs (headers, cookies); values that are not
/// text-like are dropped.
fn object_to_pairs(map: Map<String, Value>) -> Vec<Value> {
    map.into_iter()
        .filter_map(|(k, v)| {
            let v = lenient_string(&v)?;
            Some(Value::Array(vec![
                Value::String(k.into_string()),
                Value::String(v),
            ]))
        })
        .collect()
}

/// Relay's cookie normalization (`normalize_cookies` in its request normalizer): cookies end
/// up in `request.cookies` as `[name, value]` pairs. SDKs that only forward the request's
/// `Cookie` header (@sentry/node's request data, hand-built events) get it parsed into
/// `cookies` when they set none, and the header is then dropped, as it is when explicit
/// cookies are given. A header that does not parse (a pair without `=`, an empty name) stays a
/// header, as in Relay. A `cookies` string is parsed the same way, keeping the pairs that
/// parse; an object becomes pairs.
fn normalize_cookies(r: &mut Map<String, Value>) {
    let cookie_header = |r: &Map<String, Value>| match r.get("headers") {
        Some(Value::Array(headers)) => headers.iter().position(|h| {
            h.get(0)
                .and_then(Value::as_str)
                .is_some_and(|name| name.eq_ignore_ascii_case("cookie"))
        }),
        _ => None,
    };
    let remove_header = |r: &mut Map<String, Value>, at: usize| {
        if let Some(Value::Array(headers)) = r.get_mut("headers") {
            headers.remove(at);
        }
    };
    match r.get_mut("cookies") {
        None | Some(Value::Null) => {
            let Some(at) = cookie_header(r) else {
                return;
            };
            let parsed = r
                .get("headers")
                .and_then(|h| h.get(at))
                .and_then(|h| h.get(1))
                .and_then(Value::as_str)
                .map(|raw| parse_cookies(raw).collect::<Option<Vec<Value>>>());
            if let Some(Some(pairs)) = parsed {
                r.insert_str("cookies", Value::Array(pairs));
                remove_header(r, at);
            }
        }
        Some(cookies) => {
            match cookies {
                Value::String(raw) => {
                    let pairs = parse_cookies(raw).flatten().collect();
                    *cookies = Value::Array(pairs);
                }
                Value::Object(map) => {
                    *cookies = Value::Array(object_to_pairs(std::mem::take(map)));
                }
                _ => {}
            }
            if let Some(at) = cookie_header(r) {
                remove_header(r, at);
            }
        }
    }
}

/// The `name=value` pairs of a `Cookie` header as `[name, value]` arrays, `None` for a part
/// that is not a cookie. Like the `cookie` crate Relay uses: parts split at `;`, blank parts
/// skipped, name and value trimmed and percent-decoded, the name non-empty.
fn parse_cookies(raw: &str) -> impl Iterator<Item = Option<Value>> + '_ {
    raw.split(';')
        .filter(|part| !part.trim().is_empty())
        .map(|part| {
            let (name, value) = part.split_once('=')?;
            let name = percent_decode(name.trim())?;
            if name.is_empty() {
                return None;
            }
            let value = percent_decode(value.trim())?;
            Some(Value::Array(vec![
                Value::String(name),
                Value::String(value),
            ]))
        })
}

/// `%XX` escapes decoded; a `%` not followed by two hex digits is kept as it is. `None` when
/// the decoded bytes are not UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    if !s.contains('%') {
        return Some(s.to_owned());
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8(out).ok()
}

/// Relay's URL normalization: the query string and fragment of `request.url` move into
/// `query_string` and `fragment`, and the URL keeps only what comes before them. SDKs that
/// send the full URL (the Rust crate, @sentry/node) then show the same request as those that
/// split it themselves (Python), and the URL's length cap no longer cuts into a query string
/// that would fit. Fields the SDK set take precedence over the URL's parts, as in Relay.
fn split_request_url(r: &mut Map<String, Value>) {
    let Some(Value::String(url)) = r.get_mut("url") else {
        return;
    };
    let Some(cut) = url.find(['?', '#']) else {
        return;
    };
    let rest = url.split_off(cut);
    // A `?` after the `#` belongs to the fragment (`/a#x?y` has no query).
    let (query, fragment) = match rest.strip_prefix('?') {
        Some(after) => match after.split_once('#') {
            Some((q, f)) => (q, Some(f)),
            None => (after, None),
        },
        None => ("", rest.strip_prefix('#')),
    };
    let unset = |r: &Map<String, Value>, key: &str| matches!(r.get(key), None | Some(Value::Null));
    if !query.is_empty() && unset(r, "query_string") {
        r.insert("query_string".into(), Value::String(query.to_owned()));
    }
    if let Some(fragment) = fragment.filter(|f| !f.is_empty()) {
        if unset(r, "fragment") {
            r.insert("fragment".into(), Value::String(fragment.to_owned()));
        }
    }
}

fn normalize_breadcrumbs(ev: &mut Map<String, Value>) {
    let list = match ev.remove("breadcrumbs") {
        Some(Value::Array(a)) => a,
        Some(Value::Object(mut o)) => match o.remove("values") {
            Some(Value::Array(a)) => a,
            _ => Vec::new(),
        },
        _ => Vec::new(),
    };
    let mut list: Vec<Value> = list.into_iter().filter(Value::is_object).collect();
    for crumb in list.iter_mut().filter_map(Value::as_object_mut) {
        if let Some(ms) = crumb.get("timestamp").and_then(parse_timestamp) {
            crumb.insert_str("timestamp", secs_value(ms));
        }
        trim_field(crumb, "message", 8192, 200);
        if let Some(Value::String(l)) = crumb.get_mut("level") {
            if l == "warn" {
                *l = "warning".into();
            }
        }
    }
    if !list.is_empty() {
        ev.insert_str("breadcrumbs", values_object(list));
    }
}

fn normalize_contexts(ev: &mut Map<String, Value>) {
    let Some(ctx) = ev.get_mut("contexts") else {
        return;
    };
    let Some(map) = ctx.as_object_mut() else {
        ev.remove("contexts");
        return;
    };
    map.retain(|_, v| v.is_object());
    for (name, c) in map.iter_mut() {
        if let Some(obj) = c.as_object_mut() {
            obj.entry("type")
                .or_insert_with(|| Value::from(name.as_str()));
            if name == "trace" {
                obj.entry("status")
                    .or_insert_with(|| Value::String("unknown".into()));
            }
        }
    }
}

fn cut_depth(v: &mut Value, depth: usize) {
    match v {
        Value::Object(m) => {
            if depth == 0 {
                *v = Value::Null;
                return;
            }
            for x in m.values_mut() {
                cut_depth(x, depth - 1);
            }
        }
        Value::Array(a) => {
            if depth == 0 {
                *v = Value::Null;
                return;
            }
            for x in a.iter_mut() {
                cut_depth(x, depth - 1);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::json;

    const NOW: u64 = 1_700_000_000_000;

    fn ctx() -> NormalizeContext<'static> {
        NormalizeContext {
            project_id: 1,
            key_id: 2,
            received_ms: NOW,
            max_past_ms: 90 * 86_400_000,
            client_addr: Some("203.0.113.9".parse().unwrap()),
            ..Default::default()
        }
    }

    fn norm(v: Value) -> Normalized {
        normalize_value(v, &ctx()).unwrap()
    }

    #[test]
    fn rejects_non_objects_and_bad_json() {
        assert_eq!(normalize(b"[1]", &ctx()).unwrap_err().reason, "payload");
        assert_eq!(normalize(b"{", &ctx()).unwrap_err().reason, "invalid_json");
        assert_eq!(
            normalize(b"{\"message\": \"\xff\"}", &ctx())
                .unwrap_err()
                .reason,
            "invalid_json"
        );
    }

    #[test]
    fn timestamps_in_every_form() {
        for ts in [
            json!(1_699_999_990.5),
            json!(1_699_999_990),
            json!("2023-11-14T22:13:10.5"),
            json!("2023-11-14T22:13:10.5Z"),
            json!("2023-11-14T23:13:10.5+01:00"),
        ] {
            let n = norm(json!({"timestamp": ts.clone()}));
            let want = if ts.is_i64() {
                1_699_999_990_000
            } else {
                1_699_999_990_500
            };
            assert_eq!(n.timestamp_ms, want, "{ts}");
        }
        let n = norm(json!({"timestamp": "yesterday"}));
        assert_eq!(n.timestamp_ms, NOW);
        assert_eq!(n.event["errors"][0]["name"], "timestamp");
    }

    #[test]
    fn clock_drift_only_past_55_minutes() {
        let mut c = ctx();
        c.sent_at_ms = Some(NOW as i64 - 30 * 60_000);
        let n = normalize_value(json!({"timestamp": (NOW / 1000 - 1800) as f64}), &c).unwrap();
        assert_eq!(
            n.timestamp_ms,
            NOW - 1_800_000,
            "30 min drift is left alone"
        );
        c.sent_at_ms = Some(NOW as i64 - 2 * 3_600_000);
        let ev = json!({
            "timestamp": (NOW / 1000 - 7200) as f64,
            "breadcrumbs": [{"timestamp": (NOW / 1000 - 7210) as f64, "message": "m"}],
        });
        let n = normalize_value(ev, &c).unwrap();
        assert_eq!(n.timestamp_ms, NOW);
        assert_eq!(
            n.event["breadcrumbs"]["values"][0]["timestamp"],
            json!((NOW / 1000 - 10) as f64)
        );
    }

    #[test]
    fn future_and_past_are_clamped_to_received() {
        let n = norm(json!({"timestamp": (NOW / 1000 + 3600) as f64}));
        assert_eq!(n.timestamp_ms, NOW);
        assert_eq!(n.event["errors"][0]["type"], "future_timestamp");
        let n = norm(json!({"timestamp": (NOW / 1000 - 100 * 86_400) as f64}));
        assert_eq!(n.timestamp_ms, NOW);
        assert_eq!(n.event["errors"][0]["type"], "past_timestamp");
    }

    #[test]
    fn levels_platform_and_type() {
        for (given, want) in [
            (json!("log"), "info"),
            (json!("CRITICAL"), "fatal"),
            (json!(30), "warning"),
            (json!("nonsense"), "error"),
        ] {
            assert_eq!(norm(json!({"level": given})).event["level"], want);
        }
        let n = norm(json!({"platform": "brainfuck"}));
        assert_eq!(n.event["platform"], "other");
        assert_eq!(n.event_type, EventType::Default);
        let n = norm(json!({"exception": [{"type": "E", "value": "v"}], "platform": "python"}));
        assert_eq!(n.event_type, EventType::Error);
        assert_eq!(n.event["platform"], "python");
        let mut c = ctx();
        c.is_transaction_item = true;
        let n = normalize_value(json!({}), &c).unwrap();
        assert_eq!(n.event_type, EventType::Transaction);
        assert_eq!(n.event["level"], "info");
    }

    #[test]
    fn transaction_timestamps_keep_microseconds() {
        let mut c = ctx();
        c.is_transaction_item = true;
        // Within the accepted window, so no shift: only the precision is at stake.
        let end_us = c.received_ms as i64 * 1000 - 5_000_123;
        let end_iso = chrono::DateTime::from_timestamp_micros(end_us)
            .unwrap()
            .format("%Y-%m-%dT%H:%M:%S%.6fZ")
            .to_string();
        let start = (end_us - 346_914) as f64 / 1e6;
        let n = normalize_value(
            json!({"start_timestamp": start, "timestamp": end_iso,
                   "spans": [{"start_timestamp": start, "timestamp": end_iso}]}),
            &c,
        )
        .unwrap();
        let us = |v: &Value| (v.as_f64().unwrap() * 1e6).round() as i64;
        assert_eq!(
            us(&n.event["timestamp"]) - us(&n.event["start_timestamp"]),
            346_914
        );
        let span = &n.event["spans"][0];
        assert_eq!(
            us(&span["timestamp"]) - us(&span["start_timestamp"]),
            346_914
        );
        assert_eq!(n.timestamp_ms as i64, end_us.div_euclid(1000));
    }

    /// A transaction with one span from `start` (float seconds) to `end` (either form).
    fn one_span_transaction(start: Value, end: Value) -> Value {
        json!({"type": "transaction", "start_timestamp": start.clone(), "timestamp": end.clone(),
               "contexts": {"trace": {"trace_id": "4c79f60c11214eb38604f4ae0781bfb2",
                                      "span_id": "fa90fdead5f74053"}},
               "spans": [{"start_timestamp": start, "timestamp": end,
                          "trace_id": "4c79f60c11214eb38604f4ae0781bfb2",
                          "span_id": "fa90fdead5f74052"}]})
    }

    /// The Rust SDK's spans: `start_timestamp` as float seconds, `timestamp` as RFC 3339 with
    /// nanoseconds. A span shorter than a microsecond must still end at or after its start once
    /// both are microseconds, and the transaction holding it must stay valid (it used to be
    /// dropped as `invalid_transaction` about half the time).
    /// The float path of [`parse_timestamp_us`] as it was written first: the millisecond
    /// parse, `trunc`/`round`, and the agreement check.
    fn float_secs_to_us_reference(secs: f64) -> Option<i64> {
        let v = Value::Number(serde_json::Number::from_f64(secs)?);
        let ms = parse_timestamp(&v)?;
        let whole = secs.trunc();
        let us = whole as i64 * 1_000_000 + ((secs - whole) * 1e6).round() as i64;
        ((us - ms * 1000).abs() <= 1000).then_some(us)
    }

    /// Frame normalization as it was before the one-pass rewrite: a text `match` per key,
    /// two searches, the fill, then a second pass capping the fields.
    fn normalize_frame_reference(frame: &mut Map<String, Value>) {
        frame.retain(|key, v| match key.as_str() {
            "filename" | "abs_path" | "function" | "module" | "package" | "context_line" => {
                v.is_string()
            }
            "lineno" | "colno" => match v {
                Value::Number(n) => n.as_u64().is_some(),
                Value::String(s) => match s.parse::<u64>() {
                    Ok(n) => {
                        *v = Value::from(n);
                        true
                    }
                    Err(_) => false,
                },
                _ => false,
            },
            "in_app" => v.is_boolean(),
            _ => true,
        });
        let filename = frame
            .get("filename")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty());
        let abs_path = frame
            .get("abs_path")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty());
        match (filename, abs_path) {
            (Some(f), None) => {
                let f = f.to_owned();
                frame.insert_str("abs_path", Value::String(f));
            }
            (None, Some(a)) => {
                let f = filename_from_abs_path(a);
                frame.insert_str("filename", Value::String(f));
            }
            _ => {}
        }
        for (key, v) in frame.iter_mut() {
            let (max, allowance) = match key.as_str() {
                "filename" | "abs_path" => (256, 40),
                "function" | "module" | "package" => (256, 20),
                _ => continue,
            };
            if let Value::String(s) = v {
                trim_chars(s, max, allowance);
            }
        }
    }

    #[test]
    fn frame_normalization_matches_the_reference_path() {
        const KEYS: &[&str] = &[
            "filename",
            "abs_path",
            "function",
            "module",
            "package",
            "context_line",
            "lineno",
            "colno",
            "in_app",
            "vars",
            "symbol",
            "Filename",
            "my_field",
            "pre_context",
        ];
        let mut next = crate::xorshift64(0x5851_f42d_4c95_7f2d);
        fn text(next: &mut impl FnMut() -> u64) -> String {
            let len = match next() % 4 {
                0 => 0,
                1 => (next() % 40) as usize,
                // Around the caps (276, 296) and well past them.
                2 => 250 + (next() % 80) as usize,
                _ => (next() % 700) as usize,
            };
            let mut s = String::with_capacity(len + 16);
            if next().is_multiple_of(3) {
                s.push_str(
                    ["https://cdn.example.com", "file://", "app://", "/srv/"]
                        [(next() % 4) as usize],
                );
            }
            while s.len() < len {
                s.push(match next() % 12 {
                    0 => '/',
                    1 => 'é',
                    2 => '?',
                    3 => char::from(b'0' + (next() % 10) as u8),
                    _ => char::from(b'a' + (next() % 26) as u8),
                });
            }
            s
        }
        for _ in 0..20_000 {
            let n = (next() % 9) as usize;
            let mut pairs = Vec::with_capacity(n);
            for _ in 0..n {
                let key = KEYS[(next() % KEYS.len() as u64) as usize];
                let value = match next() % 9 {
                    0 => Value::Null,
                    1 => Value::Bool(next().is_multiple_of(2)),
                    2 => Value::from(next() % 1000),
                    3 => Value::from(-((next() % 1000) as i64)),
                    4 => Value::Number(serde_json::Number::from_f64(1.5).expect("finite")),
                    5 => Value::String((next() % 1000).to_string()),
                    6 => Value::Object(Map::new()),
                    _ => Value::String(text(&mut next)),
                };
                pairs.push((crate::value::Key::new(key), value));
            }
            let frame = Map::from_pairs(pairs);
            let mut fast = frame.clone();
            let mut reference = frame.clone();
            normalize_frame(&mut fast);
            normalize_frame_reference(&mut reference);
            assert!(fast == reference, "{frame:?}");
        }
        // Parsed frames (keys stored by the parser) take the same path.
        let parsed = crate::value::from_str(
            r#"{"filename":"","abs_path":"https://x.example/a/b.js?v=1","lineno":"12","colno":-1,"in_app":1,"function":7}"#,
        )
        .expect("parses");
        let (mut fast, mut reference) = (parsed.clone(), parsed);
        normalize_frame(fast.as_object_mut().expect("object"));
        normalize_frame_reference(reference.as_object_mut().expect("object"));
        assert_eq!(fast, reference);
        assert_eq!(fast["filename"], "/a/b.js?v=1");
        assert_eq!(fast["lineno"], 12);
    }

    /// Top-level string normalization as it was before strings were checked in place: every
    /// value copied, checked, and inserted back.
    fn normalize_strings_reference(ev: &mut Map<String, Value>, errors: &mut Vec<Value>) {
        for key in [
            "release",
            "dist",
            "environment",
            "server_name",
            "site",
            "transaction",
            "culprit",
            "logger",
        ] {
            let Some(v) = ev.get(key) else { continue };
            let Some(mut s) = lenient_string(v) else {
                errors.push(json!({"type": "invalid_data", "name": key, "value": v}));
                ev.remove(key);
                continue;
            };
            let trimmed = s.trim();
            if trimmed.len() != s.len() {
                s = trimmed.to_owned();
            }
            let valid = match key {
                "release" => {
                    !s.is_empty()
                        && s != "."
                        && s != ".."
                        && !s.eq_ignore_ascii_case("latest")
                        && !s.contains(['\n', '\r', '\t', '/', '\\'])
                }
                "environment" => !s.is_empty() && !s.contains(['\n', '\r', '/']),
                "dist" => {
                    !s.is_empty()
                        && s.chars()
                            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
                }
                "logger" => !s.contains(['\n', '\r']),
                _ => !s.is_empty(),
            };
            if !valid {
                if !s.is_empty() {
                    errors.push(json!({"type": "invalid_data", "name": key, "value": s}));
                }
                ev.remove(key);
                continue;
            }
            let (max, allowance) = match key {
                "release" | "transaction" | "culprit" => (200, 0),
                "dist" | "environment" | "logger" => (64, 0),
                "server_name" | "site" => (256, 20),
                _ => (256, 0),
            };
            trim_chars(&mut s, max, allowance);
            ev.insert(key.into(), Value::String(s));
        }
        if let Some(Value::Object(le)) = ev.get_mut("logentry") {
            trim_field(le, "message", 8192, 200);
            trim_field(le, "formatted", 8192, 200);
        }
    }

    #[test]
    fn string_fields_match_the_reference_path() {
        const KEYS: &[&str] = &[
            "release",
            "dist",
            "environment",
            "server_name",
            "site",
            "transaction",
            "culprit",
            "logger",
            "platform",
        ];
        const PIECES: &[&str] = &[
            " ", "\t", "\n", "/", "\\", ".", "..", "latest", "LaTeSt", "1.2.3", "a", "é", "-", "_",
            "prod", "web-1",
        ];
        let mut next = crate::xorshift64(0x1405_7b7e_f767_814f);
        for _ in 0..20_000 {
            let mut pairs = Vec::new();
            for &key in KEYS {
                let value = match next() % 8 {
                    0 => continue,
                    1 => Value::Null,
                    2 => Value::Bool(next().is_multiple_of(2)),
                    3 => Value::from(next() % 1000),
                    4 => Value::Object(Map::new()),
                    5 => Value::String("x".repeat((next() % 300) as usize)),
                    _ => {
                        let n = (next() % 5) as usize;
                        Value::String(
                            (0..n)
                                .map(|_| PIECES[(next() % PIECES.len() as u64) as usize])
                                .collect(),
                        )
                    }
                };
                pairs.push((crate::value::Key::new(key), value));
            }
            let ev = Map::from_pairs(pairs);
            let (mut fast, mut reference) = (ev.clone(), ev.clone());
            let (mut fast_errors, mut reference_errors) = (Vec::new(), Vec::new());
            normalize_strings(&mut fast, Present::ALL, &mut fast_errors);
            normalize_strings_reference(&mut reference, &mut reference_errors);
            assert!(fast == reference, "{ev:?}");
            assert!(fast_errors == reference_errors, "{ev:?}");
        }
    }

    /// Tag normalization as it was before the byte-wise key check and the single value text.
    fn normalize_tags_reference(ev: &mut Map<String, Value>, errors: &mut Vec<Value>) {
        fn tag_key(key: &str) -> Option<String> {
            let key = key.trim().replace(' ', "-");
            let ok = !key.is_empty()
                && key.chars().count() <= MAX_TAG_KEY_CHARS
                && key
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_.:-".contains(c));
            ok.then_some(key)
        }
        let raw: Vec<(String, Value)> = match ev.remove("tags") {
            Some(Value::Object(o)) => o.into_iter().map(|(k, v)| (k.into_string(), v)).collect(),
            Some(Value::Array(a)) => a
                .into_iter()
                .filter_map(|pair| match pair {
                    Value::Array(mut kv) if kv.len() == 2 => {
                        let v = kv.pop()?;
                        let k = kv.pop()?;
                        Some((lenient_string(&k)?, v))
                    }
                    Value::String(s) => {
                        let (k, v) = s.split_once(':')?;
                        Some((k.to_owned(), Value::String(v.to_owned())))
                    }
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        };
        let mut tags: Vec<Value> = Vec::with_capacity(raw.len());
        let mut seen = std::collections::HashSet::new();
        for (k, v) in raw.into_iter().take(1000) {
            if v.is_null() {
                continue;
            }
            let too_long = k.trim().chars().count() > MAX_TAG_KEY_CHARS
                || lenient_string(&v)
                    .is_some_and(|v| v.trim().chars().count() > MAX_TAG_VALUE_CHARS);
            if too_long {
                let mut name = k;
                trim_chars(&mut name, MAX_TAG_KEY_CHARS, 0);
                errors.push(json!({"type": "value_too_long", "name": format!("tags.{name}")}));
                continue;
            }
            match (tag_key(&k), normalize_tag_value(&v)) {
                (Some(k), Some(v)) => {
                    if seen.insert(k.clone()) {
                        tags.push(Value::Array(vec![Value::String(k), Value::String(v)]));
                    }
                }
                _ => errors.push(json!({"type": "invalid_data", "name": format!("tags.{k}")})),
            }
        }
        ev.insert_str("tags", Value::Array(tags));
    }

    #[test]
    fn tags_match_the_reference_path() {
        const PIECES: &[&str] = &[
            " ", "  ", "\n", "\t", "-", "_", ".", ":", "a", "Z", "9", "é", "日本", "/", "=",
            "browser",
        ];
        fn text(next: &mut impl FnMut() -> u64) -> String {
            match next() % 6 {
                // Around the 200-character limit, in one- and two-byte characters.
                0 => "k".repeat(195 + (next() % 10) as usize),
                1 => "é".repeat(95 + (next() % 110) as usize),
                _ => {
                    let n = (next() % 6) as usize;
                    (0..n)
                        .map(|_| PIECES[(next() % PIECES.len() as u64) as usize])
                        .collect()
                }
            }
        }
        fn value(next: &mut impl FnMut() -> u64) -> Value {
            match next() % 7 {
                0 => Value::Null,
                1 => Value::Bool(next().is_multiple_of(2)),
                2 => Value::from(next() % 1000),
                3 => Value::Array(Vec::new()),
                _ => Value::String(text(next)),
            }
        }
        let mut next = crate::xorshift64(0x2f8b_1c3d_5e7a_9b0c);
        for round in 0..10_000 {
            let n = (next() % 8) as usize;
            let tags = if round % 2 == 0 {
                Value::Object(Map::from_pairs(
                    (0..n)
                        .map(|_| (crate::value::Key::from(text(&mut next)), value(&mut next)))
                        .collect(),
                ))
            } else {
                Value::Array(
                    (0..n)
                        .map(|_| match next() % 3 {
                            0 => Value::String(format!("{}:{}", text(&mut next), text(&mut next))),
                            _ => Value::Array(vec![value(&mut next), value(&mut next)]),
                        })
                        .collect(),
                )
            };
            let ev = Map::from_pairs(vec![(crate::value::Key::new("tags"), tags)]);
            let (mut fast, mut reference) = (ev.clone(), ev.clone());
            let (mut fast_errors, mut reference_errors) = (Vec::new(), Vec::new());
            normalize_tags(&mut fast, &mut fast_errors);
            normalize_tags_reference(&mut reference, &mut reference_errors);
            assert!(fast == reference, "{ev:?}");
            assert!(fast_errors == reference_errors, "{ev:?}");
        }
    }

    /// Skipping the lookups of keys the first pass found absent changes nothing: random
    /// events (each top-level key present or not, in varied forms) normalize the same with
    /// every lookup made.
    #[test]
    fn skipped_lookups_of_absent_keys_change_nothing() {
        let candidates: Vec<(&str, Vec<Value>)> = vec![
            (
                "event_id",
                vec![json!("4c79f60c11214eb38604f4ae0781bfb2"), json!(5)],
            ),
            (
                "timestamp",
                vec![
                    json!(1_700_000_000.5),
                    json!("2023-11-14T22:13:20Z"),
                    json!("x"),
                ],
            ),
            (
                "start_timestamp",
                vec![json!(1_700_000_000.25), json!("nope")],
            ),
            ("type", vec![json!("transaction"), json!("error")]),
            ("level", vec![json!("warn"), json!(40), json!("bogus")]),
            ("platform", vec![json!("python"), json!("cobol")]),
            (
                "logentry",
                vec![
                    json!({"message": "m %s", "params": [1]}),
                    json!("text"),
                    json!(3),
                ],
            ),
            ("message", vec![json!("plain message")]),
            (
                "exception",
                vec![
                    json!({"values": [{"type": "E", "value": "v", "stacktrace": {"frames": [{"filename": "a.py", "lineno": "3"}]}}]}),
                    json!([{"value": "ValueError: x"}]),
                    json!({"type": "T"}),
                    json!(null),
                ],
            ),
            (
                "stacktrace",
                vec![
                    json!({"frames": [{"abs_path": "https://x.example/a.js", "colno": 4}]}),
                    json!(1),
                ],
            ),
            (
                "threads",
                vec![
                    json!({"values": [{"id": 1, "stacktrace": {"frames": [{"function": "f"}]}}]}),
                    json!([]),
                ],
            ),
            (
                "breadcrumbs",
                vec![
                    json!([{"timestamp": 1_700_000_000.0, "level": "warn", "message": "b"}]),
                    json!({"values": []}),
                    json!("x"),
                ],
            ),
            (
                "spans",
                vec![
                    json!([{"start_timestamp": 1_700_000_000.0, "timestamp": 1_700_000_001.0, "span_id": "a"}]),
                    json!({}),
                ],
            ),
            (
                "release",
                vec![json!(" 1.0 "), json!("latest"), json!(7), json!({})],
            ),
            ("dist", vec![json!("b-1"), json!("a b")]),
            ("environment", vec![json!("prod"), json!("a/b")]),
            ("server_name", vec![json!("web-1"), json!(true)]),
            ("site", vec![json!("s"), json!("")]),
            ("transaction", vec![json!("GET /"), json!(null)]),
            ("culprit", vec![json!("c")]),
            ("logger", vec![json!("django"), json!("a\nb")]),
            (
                "user",
                vec![
                    json!({"id": 5, "ip_address": "{{auto}}", "email": "a@b.c"}),
                    json!({}),
                    json!("u"),
                ],
            ),
            (
                "request",
                vec![
                    json!({"url": "https://x.example/p?q=1#f", "method": "get", "headers": {"Cookie": "a=b"}, "env": {"REMOTE_ADDR": "{{auto}}"}}),
                    json!("r"),
                ],
            ),
            (
                "contexts",
                vec![
                    json!({"trace": {"trace_id": "t"}, "os": {"name": "Linux"}, "x": 1}),
                    json!([]),
                ],
            ),
            ("measurements", vec![json!({"lcp": {"value": 1}})]),
            ("breakdowns", vec![json!({"b": {}})]),
            (
                "extra",
                vec![
                    json!({"a": {"b": {"c": {"d": {"e": {"f": {"g": {"h": 1}}}}}}}}),
                    json!(1),
                ],
            ),
            (
                "fingerprint",
                vec![json!(["{{ default }}", 1, true, null]), json!("fp")],
            ),
            ("time_spent", vec![json!(5), json!(4_000_000_000u64)]),
            (
                "sdk",
                vec![json!({"name": "s", "version": "1"}), json!("s")],
            ),
            ("tags", vec![json!({"a": "b"}), json!([["k", "v"]])]),
            ("errors", vec![json!([{"type": "x"}])]),
            ("modules", vec![json!({"m": "1"})]),
            ("unknown_key", vec![json!(1)]),
            ("sentry.interfaces.User", vec![json!({"id": "legacy"})]),
        ];
        let envelope_sdk = json!({"name": "envelope", "version": "2"});
        let mut next = crate::xorshift64(0x6a09_e667_f3bc_c908);
        for round in 0..4_000 {
            let mut event = serde_json::Map::new();
            for (key, values) in &candidates {
                if next().is_multiple_of(2) {
                    let value = &values[(next() % values.len() as u64) as usize];
                    event.insert((*key).to_owned(), serde_json::Value::from(value.clone()));
                }
            }
            let event = Value::from(serde_json::Value::Object(event));
            let c = NormalizeContext {
                header_event_id: Some(Uuid::from_u128(0x1234)),
                envelope_sdk: (round % 3 == 0).then_some(&envelope_sdk),
                is_transaction_item: round % 4 == 0,
                sent_at_ms: (round % 5 == 0).then_some(NOW as i64 - 2 * MINIMUM_CLOCK_DRIFT_MS),
                ..ctx()
            };
            let fast = normalize_event(event.clone(), &c, true);
            let every_lookup = normalize_event(event.clone(), &c, false);
            match (fast, every_lookup) {
                (Ok(a), Ok(b)) => {
                    assert!(a.event == b.event, "{event:?}");
                    assert_eq!(
                        (a.event_id, a.timestamp_ms, a.event_type),
                        (b.event_id, b.timestamp_ms, b.event_type)
                    );
                }
                (a, b) => assert_eq!(a.err(), b.err()),
            }
        }
    }

    #[test]
    fn float_timestamps_match_the_reference_path() {
        let mut next = crate::xorshift64(0x2545_f491_4f6c_dd1d);
        let mut cases = vec![
            0.0,
            -0.0,
            0.5,
            0.4999999999999999,
            1e-7,
            1.0000005,
            1_795_940_937.110_864_4,
            1_795_940_937.110_864_6,
            1_700_000_000.123_457_2,
            1_700_000_000.000_000_5,
            1e11,
            1e11 + 1.0,
            99_999_999_999.999_99,
            -1.0,
            -1e-300,
            f64::MIN_POSITIVE,
            5e-324,
            f64::MAX,
        ];
        for _ in 0..300_000 {
            let r = next();
            cases.push(match r % 4 {
                // Today's epoch with every fraction: µs ties (x.5 µs) are the edge.
                0 => 1.7e9 + (next() % 200_000_000) as f64 / 1e6 + (r >> 8) as f64 / 2e19,
                1 => (next() % 2_000_000_000_000_000) as f64 / 1e6 + 0.5e-6,
                // Any bits at all (NaN, infinities, negatives, subnormals included).
                2 => f64::from_bits(next()),
                _ => (r >> 11) as f64 / (1u64 << 53) as f64 * 1.2e11,
            });
        }
        for secs in cases {
            let expected = float_secs_to_us_reference(secs);
            assert_eq!(float_secs_to_us(secs), expected, "{secs:e}");
            if let Some(n) = serde_json::Number::from_f64(secs) {
                assert_eq!(parse_timestamp_us(&Value::Number(n)), expected, "{secs:e}");
            }
        }
    }

    #[test]
    fn one_pass_span_shift_matches_the_field_by_field_path() {
        let mut next = crate::xorshift64(0x1405_7b7e_f767_814f);
        let base = 1_795_940_937.0;
        let forms = move |r: u64| -> Option<Value> {
            let us = (r >> 8) % 3_000_000;
            Some(match r % 9 {
                0 => return None,
                1 => json!(base + us as f64 / 1e6),
                2 => json!(base + us as f64 / 1e6 + 3e-7),
                3 => json!(chrono::DateTime::from_timestamp(
                    base as i64,
                    (us * 1000 % 1_000_000_000) as u32 + 466
                )
                .unwrap()
                .format("%Y-%m-%dT%H:%M:%S%.9fZ")
                .to_string()),
                4 => json!("not a time"),
                5 => json!(-5.0),
                6 => Value::Null,
                7 => json!(true),
                _ => json!(base + (us % 3) as f64 / 1e7),
            })
        };
        for i in 0..20_000 {
            let mut span = Map::new();
            span.insert("op".into(), json!("db"));
            if let Some(v) = forms(next()) {
                span.insert("start_timestamp".into(), v);
            }
            if let Some(v) = forms(next()) {
                span.insert("timestamp".into(), v);
            }
            if i % 3 == 0 {
                // Keys parsed with an escape (built from a String, off the fast path).
                span = match crate::value::from_str(
                    &serde_json::to_string(&Value::Object(span))
                        .unwrap()
                        .replace("\"timestamp\"", "\"time\\u0073tamp\""),
                ) {
                    Ok(Value::Object(m)) => m,
                    other => panic!("{other:?}"),
                };
            }
            let shift = [0, 3_600_000, -7_200_000][i % 3];
            let mut expected = span.clone();
            let start = shift_field(&mut expected, "start_timestamp", shift);
            let end = shift_field(&mut expected, "timestamp", shift);
            close_float_gap(&mut expected, start, end);
            shift_span(&mut span, shift);
            assert_eq!(
                serde_json::to_string(&Value::Object(span)).unwrap(),
                serde_json::to_string(&Value::Object(expected)).unwrap()
            );
        }
    }

    #[test]
    fn every_alias_passes_the_alias_pre_check() {
        for (from, to) in ALIASES {
            assert!(may_be_alias(from), "{from}");
            assert!(!may_be_alias(to), "{to}");
        }
        // And the aliases are still applied.
        let n = norm(json!({"sentry.interfaces.Message": {"formatted": "m"},
                            "client_sdk": {"name": "s", "version": "1"}}));
        assert_eq!(n.event["logentry"]["formatted"], "m");
        assert_eq!(n.event["sdk"]["name"], "s");
    }

    #[test]
    fn mixed_forms_of_one_sub_microsecond_span_keep_their_order() {
        let mut c = ctx();
        c.is_transaction_item = true;
        let base_s = c.received_ms as i64 / 1000 - 5;
        let mut cases: Vec<(Value, Value)> = [456_700u32, 456_400, 999_900, 0, 499_900]
            .into_iter()
            .map(|start_ns| {
                let start = base_s as f64 + f64::from(start_ns) / 1e9;
                let end_iso = chrono::DateTime::from_timestamp(base_s, start_ns + 200)
                    .unwrap()
                    .format("%Y-%m-%dT%H:%M:%S%.9fZ")
                    .to_string();
                (json!(start), json!(end_iso))
            })
            .collect();
        // A span the Rust SDK sent: the float start is 1795940937.1108644008…, its product
        // with 1e6 rounds to …864.5 in f64, and the span ends 66 ns later in the string.
        cases.push((
            json!(1_795_940_937.110_864_4),
            json!("2026-11-29T08:28:57.110864466Z"),
        ));
        // The float's own error (~0.12 µs) can put the start just past a later end.
        cases.push((
            json!(1_795_940_937.110_864_6),
            json!("2026-11-29T08:28:57.110864466Z"),
        ));
        for (start, end) in cases {
            let n = normalize_value(one_span_transaction(start.clone(), end.clone()), &c).unwrap();
            let span = &n.event["spans"][0];
            let (s, e) = (
                span["start_timestamp"].as_f64().unwrap(),
                span["timestamp"].as_f64().unwrap(),
            );
            assert!(e >= s, "{start} .. {end}: span {s} .. {e}");
            crate::transactions::TransactionFacts::extract(&n.event)
                .unwrap_or_else(|e| panic!("{start} .. {end}: {e}"));
        }
        // An end truly before its start (by 5 µs) is still refused.
        let n = normalize_value(
            one_span_transaction(
                json!(1_795_940_937.110_869_5),
                json!("2026-11-29T08:28:57.110864466Z"),
            ),
            &c,
        )
        .unwrap();
        assert!(crate::transactions::TransactionFacts::extract(&n.event).is_err());
        // Both forms round to the nearest microsecond.
        assert_eq!(
            parse_timestamp_us(&json!("2023-11-14T22:13:20.123456500Z")),
            Some(1_700_000_000_123_457)
        );
        assert_eq!(
            parse_timestamp_us(&json!(1_700_000_000.123_457_2)),
            Some(1_700_000_000_123_457)
        );
        assert_eq!(
            parse_timestamp_us(&json!(1_795_940_937.110_864_4)),
            Some(1_795_940_937_110_864)
        );
        assert_eq!(
            parse_timestamp_us(&json!("2023-11-14 22:13:20.000000499")),
            Some(1_700_000_000_000_000)
        );
    }

    #[test]
    fn tags_in_both_forms() {
        let n =
            norm(json!({"tags": {"a b": 1, "ok": true, "bad\u{1}": "x", "nl": "a\nb", "n": null}}));
        assert_eq!(n.event["tags"], json!([["a-b", "1"], ["ok", "True"]]));
        let n = norm(json!({"tags": [["k", "v"], ["k", "w"], "x:y"]}));
        assert_eq!(n.event["tags"], json!([["k", "v"], ["x", "y"]]));
        // Relay drops (does not truncate) a tag whose value or key is longer than 200
        // characters, and records a `value_too_long` error: a truncated value would be a tag
        // value the SDK never sent. Exactly 200 characters (multi-byte ones too) is kept.
        let long = "v".repeat(201);
        let max = "é".repeat(200);
        let long_key = "k".repeat(201);
        let n = norm(json!({"tags": [["k", long], ["ok", "1"], ["max", max], [long_key, "x"]]}));
        assert_eq!(n.event["tags"], json!([["ok", "1"], ["max", max]]));
        let errors = n.event["errors"].as_array().unwrap();
        let too_long: Vec<_> = errors
            .iter()
            .filter(|e| e["type"] == "value_too_long")
            .map(|e| e["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            too_long,
            vec!["tags.k".to_owned(), format!("tags.{}...", "k".repeat(197))]
        );
        let n = norm(json!({"tags": [["k", "v".repeat(300)]]}));
        assert_eq!(n.event["tags"], json!([]));
    }

    #[test]
    fn length_limits_and_release_rules() {
        let n = norm(
            json!({"transaction": "t".repeat(500), "release": 12, "environment": "", "logger": "l".repeat(100)}),
        );
        assert_eq!(n.event["transaction"].as_str().unwrap().len(), 200);
        assert_eq!(n.event["release"], "12");
        assert!(n.event.get("environment").is_none());
        assert_eq!(n.event["logger"].as_str().unwrap().len(), 64);
        let n = norm(json!({"release": "a/b"}));
        assert!(n.event.get("release").is_none());
    }

    #[test]
    fn event_id_forms() {
        let id = "5d167f9eb6d04d8aa1e4e5e0c0c6e1b3";
        let n = norm(json!({"event_id": "5D167F9E-B6D0-4D8A-A1E4-E5E0C0C6E1B3"}));
        assert_eq!(n.event["event_id"], id);
        let mut c = ctx();
        c.header_event_id = Some(Uuid::parse_str(id).unwrap());
        let n = normalize_value(json!({"event_id": "nope"}), &c).unwrap();
        assert_eq!(n.event_id.simple().to_string(), id);
        let n = norm(json!({}));
        assert!(!n.event_id.is_nil());
    }

    #[test]
    fn exception_shapes() {
        let n = norm(json!({
            "exception": {"values": [
                {"value": "ValueError: bad thing"},
                {"type": "", "value": ""},
                {"type": "E", "value": {"a": 1}, "mechanism": {"handled": false}},
            ]},
        }));
        let values = n.event["exception"]["values"].as_array().unwrap();
        assert_eq!(values.len(), 2);
        assert_eq!(values[0]["type"], "ValueError");
        assert_eq!(values[0]["value"], "bad thing");
        assert_eq!(values[1]["value"], "{\"a\":1}");
        assert_eq!(values[1]["mechanism"]["type"], "generic");
        let n = norm(json!({
            "exception": [{"type": "E"}],
            "stacktrace": {"frames": [{"abs_path": "https://x.io/a/b.js?x=1", "lineno": "3"}]},
        }));
        let frame = &n.event["exception"]["values"][0]["stacktrace"]["frames"][0];
        assert_eq!(frame["filename"], "/a/b.js?x=1");
        assert_eq!(frame["lineno"], 3);
        assert!(n.event.get("stacktrace").is_none());
    }

    #[test]
    fn frames_are_capped_to_the_newest_250() {
        let frames: Vec<Value> = (0..300)
            .map(|i| json!({"function": format!("f{i}")}))
            .collect();
        let n = norm(json!({"exception": [{"type": "E", "stacktrace": {"frames": frames}}]}));
        let st = &n.event["exception"]["values"][0]["stacktrace"];
        assert_eq!(st["frames"].as_array().unwrap().len(), 250);
        assert_eq!(st["frames"][249]["function"], "f299");
    }

    /// The Rust crate and @sentry/node send `request.url` with its query string (and maybe a
    /// fragment); Relay moves both into their own fields, keeping fields the SDK already set.
    #[test]
    fn request_url_query_and_fragment_move_to_their_fields() {
        let req = |request: Value| {
            let n = norm(json!({"message": "m", "request": request}));
            n.event.get("request").cloned().unwrap_or_default()
        };
        assert_eq!(
            req(json!({"url": "http://x.io/probe?a=1&b=2#top", "method": "GET"})),
            json!({"url": "http://x.io/probe", "method": "GET", "query_string": "a=1&b=2", "fragment": "top"})
        );
        // What the SDK set wins; the URL still loses its query and fragment.
        assert_eq!(
            req(json!({"url": "/p?x=1#f", "query_string": "y=2", "fragment": "g"})),
            json!({"url": "/p", "query_string": "y=2", "fragment": "g"})
        );
        // A `?` inside the fragment is not a query; empty parts set nothing.
        assert_eq!(
            req(json!({"url": "http://x.io/a#frag?b=1"})),
            json!({"url": "http://x.io/a", "fragment": "frag?b=1"})
        );
        assert_eq!(
            req(json!({"url": "http://x.io/a?"})),
            json!({"url": "http://x.io/a"})
        );
        assert_eq!(
            req(json!({"url": "http://x.io/a"})),
            json!({"url": "http://x.io/a"})
        );
        // A long query no longer makes the URL hit its 256-character cap.
        let long = format!("http://x.io/search?q={}", "z".repeat(400));
        let r = req(json!({"url": long}));
        assert_eq!(r["url"], json!("http://x.io/search"));
        assert_eq!(r["query_string"].as_str().map(str::len), Some(402));
    }

    /// Relay moves the `Cookie` header into `request.cookies` (as pairs) when the SDK set no
    /// cookies, drops the header when it did, and parses a `cookies` string into pairs.
    #[test]
    fn cookie_header_moves_into_cookies() {
        let req = |request: Value| {
            let n = norm(json!({"message": "m", "request": request}));
            n.event.get("request").cloned().unwrap_or_default()
        };
        // Headers sent as pairs (Node, Rust) are kept as they are (they were dropped before).
        assert_eq!(
            req(json!({"headers": [["Accept", "*/*"], ["X-A", "1"]]})),
            json!({"headers": [["Accept", "*/*"], ["X-A", "1"]]})
        );
        assert_eq!(
            req(
                json!({"headers": [["Accept", "*/*"], ["cookie", " a=b; c = d%20e;;theme=\"x\" "]]})
            ),
            json!({"headers": [["Accept", "*/*"]], "cookies": [["a", "b"], ["c", "d e"], ["theme", "\"x\""]]})
        );
        // Headers sent as an object (Python) become pairs first; the header is found too.
        assert_eq!(
            req(json!({"headers": {"Cookie": "s=1", "Host": "h"}})),
            json!({"headers": [["Host", "h"]], "cookies": [["s", "1"]]})
        );
        // Cookies the SDK set win; the header is dropped.
        assert_eq!(
            req(json!({"headers": [["Cookie", "a=b"]], "cookies": {"z": "y", "n": 1}})),
            json!({"headers": [], "cookies": [["n", "1"], ["z", "y"]]})
        );
        // A header that is not a cookie list stays a header.
        assert_eq!(
            req(json!({"headers": [["Cookie", "a=b; junk"]]})),
            json!({"headers": [["Cookie", "a=b; junk"]]})
        );
        assert_eq!(
            req(json!({"headers": [["Cookie", "=v"]]})),
            json!({"headers": [["Cookie", "=v"]]})
        );
        // A string of cookies keeps the pairs that parse.
        assert_eq!(
            req(json!({"cookies": "a=1; bad; b=%zz"})),
            json!({"cookies": [["a", "1"], ["b", "%zz"]]})
        );
        assert_eq!(percent_decode("%C3%A9%"), Some("é%".into()));
        assert_eq!(percent_decode("%FF"), None);
    }

    #[test]
    fn user_ip_auto_sdk_and_message() {
        let sdk = json!({"name": "sentry.python", "version": "2.0.0"});
        let mut c = ctx();
        c.envelope_sdk = Some(&sdk);
        let n = normalize_value(
            json!({"user": {"ip_address": "{{auto}}", "id": 5}, "message": "hello", "junk": 1}),
            &c,
        )
        .unwrap();
        assert_eq!(n.event["user"]["ip_address"], "203.0.113.9");
        assert_eq!(n.event["user"]["id"], "5");
        assert_eq!(n.event["sdk"]["name"], "sentry.python");
        assert_eq!(n.event["logentry"]["formatted"], "hello");
        assert!(n.event.get("junk").is_none());
        let n = norm(json!({"logentry": {"message": "a %s b %s", "params": ["x", 2]}}));
        assert_eq!(n.event["logentry"]["formatted"], "a x b 2");
    }
}
