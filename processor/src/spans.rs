//! Streamed spans (`span` envelope items) as transactions.
//!
//! SDKs that stream spans (`@sentry/node` 10+ by default, `traceLifecycle: 'stream'`) send no
//! `transaction` event: each finished span travels in a `span` item, usually a span v2
//! container (`content_type: application/vnd.sentry.items.span.v2+json`, payload
//! `{"version": 2, "items": [span, …]}`), and a span with `is_segment: true` is the root of
//! one service's part of the trace — what a transaction event describes. Without this module
//! a default-configured Node SDK would be invisible to performance queries and traces.
//!
//! [`segment_transactions`] turns every segment span of one item into a transaction event
//! (name, op, start/end, status, environment, release, user, trace context with the remote
//! parent) with the item's other spans of that segment as its `spans`, in the v1 span shape
//! Relay's `span_v2_to_span_v1` produces. The pipeline then treats the result like a
//! `transaction` item (validation, folding, storage, trace index).
//!
//! The event id is derived from (trace id, span id), so a span item replayed from the log
//! after a crash is deduplicated like any other event: exactly once holds for these too.
//!
//! Children usually travel with their segment, but the Node SDK's buffer flushes a trace every
//! 5 s and every 1000 spans, so the children of a long or large segment can come in earlier
//! items. Those name their segment (`sentry.segment.id`) and come back as
//! [`SegmentEvents::pending`]; the pipeline keeps them in the index until the segment's item
//! arrives and then adds them to its transaction ([`attach_pending`]). A child that ends after
//! its segment's transaction was stored stays pending until retention removes it.

use std::collections::HashMap;

use crate::value::{Map, Value};
use uuid::Uuid;

use crate::transactions::timestamp_us;

/// Most spans of one item looked at (a container is bounded by the ingest item size too).
pub const MAX_ITEM_SPANS: usize = 10_000;
/// Most child spans attached to one transaction.
pub const MAX_CHILD_SPANS: usize = 2_000;
/// Most attributes copied into one span's `data` (the segment also carries SDK facts such as
/// the integration list, which the queries do not need in full).
pub const MAX_SPAN_DATA: usize = 64;
/// Longest parent chain followed to find a span's segment.
const MAX_CHAIN: usize = 64;

/// Outcome reason for a `span` item that is not a span or a span container.
pub const INVALID_SPAN_REASON: &str = "invalid_span";

/// The event id a segment span's transaction gets: stable for (trace id, span id), so a
/// replayed item dedups against the stored one.
pub fn segment_event_id(trace_id: &str, span_id: &str) -> Uuid {
    let mut key = Vec::with_capacity(7 + trace_id.len() + span_id.len());
    key.extend_from_slice(b"segment");
    key.extend_from_slice(trace_id.as_bytes());
    key.push(b'/');
    key.extend_from_slice(span_id.as_bytes());
    Uuid::from_u128(xxhash_rust::xxh3::xxh3_128(&key))
}

/// The spans of a `span` item payload: a v2 container's `items`, or one bare span object.
/// `Err` when the payload is neither.
fn item_spans(payload: &Value) -> Result<Vec<&Map<String, Value>>, &'static str> {
    match payload {
        Value::Object(obj) if obj.get("items").is_some_and(Value::is_array) => Ok(obj["items"]
            .as_array()
            .into_iter()
            .flatten()
            .take(MAX_ITEM_SPANS)
            .filter_map(Value::as_object)
            .collect()),
        Value::Object(obj) if obj.contains_key("span_id") => Ok(vec![obj]),
        _ => Err(INVALID_SPAN_REASON),
    }
}

/// An attribute's value: v2 `attributes.KEY.value`, or v1 `data.KEY`.
fn attr<'a>(span: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    if let Some(a) = span.get("attributes").and_then(|a| a.get(key)) {
        return match a {
            Value::Object(o) => o.get("value"),
            other => Some(other),
        };
    }
    span.get("data").and_then(|d| d.get(key))
}

fn attr_str<'a>(span: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    attr(span, key)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

fn str_field<'a>(span: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    span.get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

/// v2 `end_timestamp`, v1 `timestamp`.
fn end_of(span: &Map<String, Value>) -> Option<&Value> {
    span.get("end_timestamp").or_else(|| span.get("timestamp"))
}

fn is_status_name(s: &str) -> bool {
    storage::keys::perf::STATUS_NAMES.contains(&s)
}

/// Sentry's span status from HTTP status codes (sentry-protocol.md §7 mapping).
fn http_status(code: i64) -> Option<&'static str> {
    Some(match code {
        400 => "invalid_argument",
        401 => "unauthenticated",
        403 => "permission_denied",
        404 => "not_found",
        409 => "already_exists",
        429 => "resource_exhausted",
        499 => "cancelled",
        500 => "internal_error",
        501 => "unimplemented",
        503 => "unavailable",
        504 => "deadline_exceeded",
        _ => return None,
    })
}

/// The v1 status of a span: a v1 status name is kept; v2's `ok` is `ok`; v2's `error` takes
/// the HTTP status code's status as Relay does, then — unlike Relay, which stops at
/// `internal_error` — the SDK's `sentry.status.message` when it names a status, so that
/// `span.setStatus({code: 2, message: 'cancelled'})` means the same whether the SDK sends a
/// transaction event or streams spans (failure rate must not change with the lifecycle).
fn span_status(span: &Map<String, Value>) -> &'static str {
    let status = str_field(span, "status").map(str::to_ascii_lowercase);
    if let Some(s) = status.as_deref() {
        if let Some(&name) = storage::keys::perf::STATUS_NAMES.iter().find(|&&n| n == s) {
            return name;
        }
    }
    let http = attr(span, "http.response.status_code")
        .or_else(|| attr(span, "http.status_code"))
        .and_then(|v| v.as_i64().or_else(|| v.as_str()?.parse().ok()))
        .and_then(http_status);
    if let Some(h) = http {
        return h;
    }
    if status.as_deref() == Some("error") {
        let message = attr_str(span, "sentry.status.message").map(str::to_ascii_lowercase);
        return match message.as_deref() {
            Some(m) if m != "ok" && is_status_name(m) => storage::keys::perf::STATUS_NAMES
                .iter()
                .find(|&&n| n == m)
                .copied()
                .unwrap_or("internal_error"),
            _ => "internal_error",
        };
    }
    "unknown"
}

/// Whether the span is a segment (the root of a service's part of a trace).
fn is_segment(span: &Map<String, Value>) -> bool {
    match span.get("is_segment").and_then(Value::as_bool) {
        Some(flag) => flag,
        None => {
            let id = str_field(span, "span_id");
            id.is_some()
                && (str_field(span, "segment_id") == id
                    || attr_str(span, "sentry.segment.id") == id)
        }
    }
}

/// The span's attributes as a flat `data` object (bounded).
fn flat_data(span: &Map<String, Value>) -> Map<String, Value> {
    let mut data = Map::new();
    let source = span
        .get("attributes")
        .and_then(Value::as_object)
        .or_else(|| span.get("data").and_then(Value::as_object));
    for (k, v) in source.into_iter().flatten() {
        if data.len() >= MAX_SPAN_DATA {
            break;
        }
        let value = match v {
            Value::Object(o) if o.contains_key("value") => o["value"].clone(),
            other => other.clone(),
        };
        data.insert(k.as_str().to_owned(), value);
    }
    data
}

fn op_of(span: &Map<String, Value>) -> Option<String> {
    attr_str(span, "sentry.op")
        .or_else(|| str_field(span, "op"))
        .map(str::to_owned)
}

/// A child span in the v1 shape a transaction's `spans` hold.
fn child_span(span: &Map<String, Value>) -> Value {
    let mut out = Map::new();
    for key in ["trace_id", "span_id", "parent_span_id", "start_timestamp"] {
        if let Some(v) = span.get(key) {
            out.insert(key.into(), v.clone());
        }
    }
    if let Some(end) = end_of(span) {
        out.insert("timestamp".into(), end.clone());
    }
    if let Some(op) = op_of(span) {
        out.insert("op".into(), Value::String(op));
    }
    let description = attr_str(span, "sentry.description")
        .or_else(|| str_field(span, "name"))
        .or_else(|| str_field(span, "description"));
    if let Some(d) = description {
        out.insert("description".into(), Value::String(d.to_owned()));
    }
    out.insert("status".into(), Value::String(span_status(span).into()));
    if let Some(origin) = attr_str(span, "sentry.origin").or_else(|| str_field(span, "origin")) {
        out.insert("origin".into(), Value::String(origin.to_owned()));
    }
    out.insert("data".into(), Value::Object(flat_data(span)));
    Value::Object(out)
}

/// The transaction event of one segment span and its children.
fn transaction_event(segment: &Map<String, Value>, children: &[&Map<String, Value>]) -> Value {
    let trace_id = str_field(segment, "trace_id").unwrap_or_default();
    let span_id = str_field(segment, "span_id").unwrap_or_default();
    let mut ev = Map::new();
    ev.insert(
        "event_id".into(),
        Value::String(segment_event_id(trace_id, span_id).simple().to_string()),
    );
    ev.insert("type".into(), Value::String("transaction".into()));
    let name = attr_str(segment, "sentry.segment.name")
        .or_else(|| str_field(segment, "name"))
        .or_else(|| str_field(segment, "description"));
    if let Some(name) = name {
        ev.insert("transaction".into(), Value::String(name.to_owned()));
    }
    if let Some(source) = attr_str(segment, "sentry.segment.name.source") {
        ev.insert(
            "transaction_info".into(),
            crate::value::json!({ "source": source }),
        );
    }
    if let Some(start) = segment.get("start_timestamp") {
        ev.insert("start_timestamp".into(), start.clone());
    }
    if let Some(end) = end_of(segment) {
        ev.insert("timestamp".into(), end.clone());
    }
    for (attr_key, field) in [
        ("sentry.release", "release"),
        ("sentry.environment", "environment"),
        ("sentry.dist", "dist"),
        ("sentry.platform", "platform"),
    ] {
        if let Some(v) = attr_str(segment, attr_key) {
            ev.insert(field.into(), Value::String(v.to_owned()));
        }
    }
    let mut user = Map::new();
    for (attr_key, field) in [
        ("user.id", "id"),
        ("user.email", "email"),
        ("user.name", "username"),
        ("user.username", "username"),
        ("user.ip_address", "ip_address"),
    ] {
        if let Some(v) = attr(segment, attr_key).filter(|v| v.is_string() || v.is_number()) {
            user.entry(field).or_insert_with(|| v.clone());
        }
    }
    if !user.is_empty() {
        ev.insert("user".into(), Value::Object(user));
    }
    if let (Some(name), Some(version)) = (
        attr_str(segment, "sentry.sdk.name"),
        attr_str(segment, "sentry.sdk.version"),
    ) {
        ev.insert(
            "sdk".into(),
            crate::value::json!({"name": name, "version": version}),
        );
    }
    let mut trace = Map::new();
    trace.insert("type".into(), Value::String("trace".into()));
    trace.insert("trace_id".into(), Value::String(trace_id.to_owned()));
    trace.insert("span_id".into(), Value::String(span_id.to_owned()));
    if let Some(parent) = str_field(segment, "parent_span_id") {
        trace.insert("parent_span_id".into(), Value::String(parent.to_owned()));
    }
    if let Some(op) = op_of(segment) {
        trace.insert("op".into(), Value::String(op));
    }
    trace.insert("status".into(), Value::String(span_status(segment).into()));
    if let Some(origin) = attr_str(segment, "sentry.origin") {
        trace.insert("origin".into(), Value::String(origin.to_owned()));
    }
    trace.insert("data".into(), Value::Object(flat_data(segment)));
    ev.insert(
        "contexts".into(),
        crate::value::json!({ "trace": Value::Object(trace) }),
    );
    ev.insert(
        "spans".into(),
        Value::Array(children.iter().map(|c| child_span(c)).collect()),
    );
    Value::Object(ev)
}

/// A child is kept only when the transaction validation would accept it; one malformed
/// streamed span must not cost its whole segment (they were separate items on the wire).
fn child_is_valid(span: &Map<String, Value>) -> bool {
    let hex = |key: &str, len: usize| {
        str_field(span, key)
            .is_some_and(|s| s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit()))
    };
    let start = span.get("start_timestamp").and_then(timestamp_us);
    let end = end_of(span).and_then(timestamp_us);
    hex("trace_id", 32)
        && hex("span_id", 16)
        && matches!((start, end), (Some(s), Some(e)) if s <= e)
}

/// What one `span` item holds as transactions.
#[derive(Debug, Default)]
pub struct SegmentEvents {
    /// One transaction event per segment span, with its children.
    pub transactions: Vec<Value>,
    /// Spans not attached to any segment of the item and not pending either (no segment id,
    /// malformed, or over [`MAX_CHILD_SPANS`]).
    pub unattached: usize,
    /// Valid children whose segment span is not in this item: the SDK sent them before their
    /// segment ended (its buffer flushes a trace every 5 s and every 1000 spans). The pipeline
    /// keeps them until the segment arrives ([`storage::keys::index::PENDING_SPAN`]).
    pub pending: Vec<PendingSpan>,
}

/// A child span waiting for its segment span (see [`SegmentEvents::pending`]).
#[derive(Debug)]
pub struct PendingSpan {
    /// The trace.
    pub trace_id: Uuid,
    /// The segment span's id, as a number.
    pub segment_id: u64,
    /// The span's own id, as a number.
    pub span_id: u64,
    /// When the span ended (unix ms): its retention clock.
    pub end_ms: u64,
    /// The span in the v1 shape a transaction's `spans` hold.
    pub span: Value,
}

/// A 16-digit hex span id as a number.
fn span_id_u64(id: &str) -> Option<u64> {
    (id.len() == 16)
        .then(|| u64::from_str_radix(id, 16).ok())
        .flatten()
}

/// The segment id and trace id of a transaction event built here (or of any transaction
/// event): `contexts.trace.span_id` and `trace_id`.
pub fn segment_of_transaction(event: &Value) -> Option<(Uuid, u64)> {
    let trace = event.get("contexts")?.get("trace")?;
    let trace_id = Uuid::try_parse(trace.get("trace_id")?.as_str()?).ok()?;
    let segment_id = span_id_u64(trace.get("span_id")?.as_str()?)?;
    Some((trace_id, segment_id))
}

/// Adds children that arrived earlier to a transaction event built here, up to
/// [`MAX_CHILD_SPANS`] in all; returns how many did not fit.
pub fn attach_pending(event: &mut Value, pending: Vec<Value>) -> usize {
    let Some(Value::Array(spans)) = event.get_mut("spans") else {
        return pending.len();
    };
    let room = MAX_CHILD_SPANS.saturating_sub(spans.len());
    let overflow = pending.len().saturating_sub(room);
    spans.extend(pending.into_iter().take(room));
    overflow
}

/// Converts a `span` item's payload into transaction events (see the module docs).
pub fn segment_transactions(payload: &[u8]) -> Result<SegmentEvents, &'static str> {
    let value: Value = crate::value::from_slice(payload).map_err(|_| INVALID_SPAN_REASON)?;
    let spans = item_spans(&value)?;
    let mut segments: Vec<usize> = Vec::new();
    let mut by_id: HashMap<&str, usize> = HashMap::new();
    for (i, span) in spans.iter().enumerate() {
        if let Some(id) = str_field(span, "span_id") {
            by_id.entry(id).or_insert(i);
        }
        if is_segment(span) {
            segments.push(i);
        }
    }
    let segment_of = |i: usize| -> Option<usize> {
        let span = spans[i];
        if let Some(&s) = attr_str(span, "sentry.segment.id")
            .or_else(|| str_field(span, "segment_id"))
            .and_then(|id| by_id.get(id))
        {
            if is_segment(spans[s]) {
                return Some(s);
            }
        }
        let mut at = i;
        for _ in 0..MAX_CHAIN {
            let parent = str_field(spans[at], "parent_span_id")?;
            at = *by_id.get(parent)?;
            if is_segment(spans[at]) {
                return Some(at);
            }
        }
        None
    };
    let mut children: HashMap<usize, Vec<&Map<String, Value>>> = HashMap::new();
    let mut unattached = 0;
    let mut pending = Vec::new();
    for (i, span) in spans.iter().enumerate() {
        if is_segment(span) {
            continue;
        }
        match segment_of(i) {
            Some(s) if child_is_valid(span) => {
                let list = children.entry(s).or_default();
                if list.len() < MAX_CHILD_SPANS {
                    list.push(span);
                } else {
                    unattached += 1;
                }
            }
            None if child_is_valid(span) => match pending_span(span) {
                Some(p) => pending.push(p),
                None => unattached += 1,
            },
            _ => unattached += 1,
        }
    }
    let transactions = segments
        .iter()
        .map(|&s| transaction_event(spans[s], children.get(&s).map_or(&[][..], Vec::as_slice)))
        .collect();
    Ok(SegmentEvents {
        transactions,
        unattached,
        pending,
    })
}

/// A valid child whose segment is elsewhere, when it names its segment (v2
/// `sentry.segment.id`, v1 `segment_id`).
fn pending_span(span: &Map<String, Value>) -> Option<PendingSpan> {
    let segment_id = attr_str(span, "sentry.segment.id")
        .or_else(|| str_field(span, "segment_id"))
        .and_then(span_id_u64)?;
    let trace_id = Uuid::try_parse(str_field(span, "trace_id")?).ok()?;
    let span_id = span_id_u64(str_field(span, "span_id")?)?;
    let end_ms = end_of(span).and_then(timestamp_us)? / 1000;
    Some(PendingSpan {
        trace_id,
        segment_id,
        span_id,
        end_ms: u64::try_from(end_ms).ok()?,
        span: child_span(span),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transactions::TransactionFacts;
    use crate::value::json;

    const TRACE: &str = "9a989807f13843b3a463579f94129b65";

    fn container() -> Value {
        json!({"version": 2, "items": [
            {"name": "SELECT 1", "span_id": "939ce64563a0dede", "trace_id": TRACE,
             "parent_span_id": "9bc45bfdfa883b06", "start_timestamp": 1795879839.36,
             "end_timestamp": 1795879839.4, "is_segment": false, "status": "ok",
             "attributes": {"sentry.op": {"value": "db", "type": "string"},
                            "sentry.segment.id": {"value": "9bc45bfdfa883b06", "type": "string"}}},
            {"name": "GET /node", "span_id": "9bc45bfdfa883b06", "trace_id": TRACE,
             "parent_span_id": "aaaaaaaaaaaaaaaa",
             "start_timestamp": 1795879839.35, "end_timestamp": 1795879839.473,
             "is_segment": true, "status": "error",
             "attributes": {"sentry.status.message": {"value": "internal_error", "type": "string"},
                            "sentry.op": {"value": "http.server", "type": "string"},
                            "sentry.segment.name.source": {"value": "route", "type": "string"},
                            "sentry.release": {"value": "r1", "type": "string"},
                            "sentry.environment": {"value": "test", "type": "string"},
                            "user.id": {"value": "u-1", "type": "string"}}},
            {"name": "lost", "span_id": "1111111111111111", "trace_id": TRACE,
             "parent_span_id": "2222222222222222", "start_timestamp": 1.0, "end_timestamp": 2.0,
             "is_segment": false, "status": "ok"}
        ]})
    }

    /// A valid child whose segment is not in the item is pending when it names its segment
    /// (`sentry.segment.id`), and unattached when it does not.
    #[test]
    fn children_without_their_segment_are_pending() {
        let item = json!({"version": 2, "items": [
            {"name": "early", "span_id": "939ce64563a0dede", "trace_id": TRACE,
             "parent_span_id": "9bc45bfdfa883b06", "start_timestamp": 1795879839.36,
             "end_timestamp": 1795879839.4, "is_segment": false, "status": "ok",
             "attributes": {"sentry.op": {"value": "db", "type": "string"},
                            "sentry.segment.id": {"value": "9bc45bfdfa883b06", "type": "string"}}},
            {"name": "anonymous", "span_id": "1111111111111111", "trace_id": TRACE,
             "parent_span_id": "2222222222222222", "start_timestamp": 1.0, "end_timestamp": 2.0,
             "is_segment": false, "status": "ok"}
        ]});
        let out = segment_transactions(&serde_json::to_vec(&item).unwrap()).unwrap();
        assert!(out.transactions.is_empty());
        assert_eq!(out.unattached, 1);
        assert_eq!(out.pending.len(), 1);
        let p = &out.pending[0];
        assert_eq!(p.trace_id, Uuid::try_parse(TRACE).unwrap());
        assert_eq!(p.segment_id, 0x9bc4_5bfd_fa88_3b06);
        assert_eq!(p.span_id, 0x939c_e645_63a0_dede);
        assert_eq!(p.end_ms, 1_795_879_839_400);
        assert_eq!(p.span["description"], json!("early"));
        assert_eq!(p.span["op"], json!("db"));

        let mut tx = json!({"contexts": {"trace": {"trace_id": TRACE, "span_id": "9bc45bfdfa883b06"}},
                            "spans": [{"span_id": "aaaaaaaaaaaaaaaa"}]});
        assert_eq!(
            segment_of_transaction(&tx),
            Some((Uuid::try_parse(TRACE).unwrap(), 0x9bc4_5bfd_fa88_3b06))
        );
        assert_eq!(attach_pending(&mut tx, vec![p.span.clone()]), 0);
        assert_eq!(tx["spans"].as_array().map(Vec::len), Some(2));
    }

    #[test]
    fn segment_becomes_a_transaction_with_its_children() {
        let payload = serde_json::to_vec(&container()).unwrap();
        let out = segment_transactions(&payload).unwrap();
        assert_eq!(out.transactions.len(), 1);
        assert_eq!(out.unattached, 1);
        let ev = &out.transactions[0];
        let facts = TransactionFacts::extract(ev).unwrap();
        assert_eq!(facts.name, "GET /node");
        assert_eq!(facts.op.as_deref(), Some("http.server"));
        assert_eq!(facts.status_name(), "internal_error");
        assert_eq!(facts.duration_us, 123_000);
        assert_eq!(facts.environment.as_deref(), Some("test"));
        assert_eq!(facts.release.as_deref(), Some("r1"));
        assert_eq!(facts.user.as_deref(), Some("id:u-1"));
        assert_eq!(facts.trace_id, TRACE);
        assert_eq!(facts.parent_span_id.as_deref(), Some("aaaaaaaaaaaaaaaa"));
        assert_eq!(facts.source.as_deref(), Some("route"));
        let spans = ev["spans"].as_array().unwrap();
        assert_eq!(spans.len(), 1);
        assert_eq!(spans[0]["op"], "db");
        assert_eq!(spans[0]["description"], "SELECT 1");
        assert_eq!(spans[0]["parent_span_id"], "9bc45bfdfa883b06");
        assert_eq!(spans[0]["timestamp"], json!(1795879839.4));
        assert_eq!(
            ev["event_id"].as_str().unwrap(),
            segment_event_id(TRACE, "9bc45bfdfa883b06")
                .simple()
                .to_string()
        );
    }

    #[test]
    fn statuses_follow_relay_with_the_sdk_message() {
        let span = |status: &str, attrs: Value| -> Map<String, Value> {
            json!({"status": status, "attributes": attrs})
                .as_object()
                .unwrap()
                .clone()
        };
        assert_eq!(span_status(&span("ok", json!({}))), "ok");
        assert_eq!(span_status(&span("not_found", json!({}))), "not_found");
        assert_eq!(span_status(&span("error", json!({}))), "internal_error");
        assert_eq!(
            span_status(&span(
                "error",
                json!({"http.response.status_code": {"value": 404}})
            )),
            "not_found"
        );
        assert_eq!(
            span_status(&span(
                "error",
                json!({"sentry.status.message": {"value": "cancelled"}})
            )),
            "cancelled"
        );
        assert_eq!(
            span_status(&span(
                "error",
                json!({"sentry.status.message": {"value": "card declined"}})
            )),
            "internal_error"
        );
        assert_eq!(span_status(&span("", json!({}))), "unknown");
    }

    #[test]
    fn bare_spans_and_garbage() {
        let single = json!({"span_id": "9bc45bfdfa883b06", "trace_id": TRACE, "segment_id": "9bc45bfdfa883b06",
                            "start_timestamp": 1.0, "timestamp": 1.5, "op": "task", "description": "job"});
        let out = segment_transactions(&serde_json::to_vec(&single).unwrap()).unwrap();
        assert_eq!(out.transactions.len(), 1);
        assert_eq!(out.transactions[0]["transaction"], "job");
        assert_eq!(out.transactions[0]["contexts"]["trace"]["op"], "task");
        assert_eq!(
            segment_transactions(b"[1,2]").unwrap_err(),
            INVALID_SPAN_REASON
        );
        assert_eq!(segment_transactions(b"{").unwrap_err(), INVALID_SPAN_REASON);
        let empty = segment_transactions(br#"{"version":2,"items":[]}"#).unwrap();
        assert!(empty.transactions.is_empty());
    }
}
