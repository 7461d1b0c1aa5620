//! Stored events in Sentry's event API shape (`EventSerializer`): the interfaces become
//! `entries` (exception, message, breadcrumbs, request, threads, spans) with camelCase
//! frames; plus the per-issue and per-trace event lists over the time indexes.

use serde::Serialize;
use serde_json::{json, Map, Value};
use storage::records::{self, StoredEvent};
use storage::{cf, keys, Result};
use uuid::Uuid;

use crate::issues::{iso, parse_cursor};
use crate::QueryService;

/// A `{key, value}` tag.
/// What an issue's event list is narrowed to ([`QueryService::issue_events_matching`]).
#[derive(Debug, Clone)]
pub struct EventFilter {
    /// Events at or after this time (unix ms).
    pub start_ms: u64,
    /// Events at or before this time (unix ms).
    pub end_ms: u64,
    /// Only these environments (empty: any).
    pub environments: Vec<String>,
    /// Sentry search terms over the event's Discover fields (`None`: every event).
    pub query: Option<crate::search::IssueQuery>,
    /// Oldest first (`sort=timestamp`) instead of newest first.
    pub oldest_first: bool,
}

/// Where a page of [`QueryService::index_page`] comes from and how much of it to return.
struct IndexPage {
    project_id: u64,
    offset: usize,
    limit: usize,
    full: bool,
}

/// Index entries one project-events page reads at most (see
/// [`QueryService::project_error_events`]).
pub const MAX_INDEX_SCAN: usize = 20_000;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TagPair {
    /// Key.
    pub key: String,
    /// Value.
    pub value: String,
}

/// An event in Sentry's API shape.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    /// Event id (32 hex).
    pub id: String,
    /// Same as `id`.
    #[serde(rename = "eventID")]
    pub event_id: String,
    /// The issue id, if grouped.
    #[serde(rename = "groupID")]
    pub group_id: Option<String>,
    /// Project id.
    #[serde(rename = "projectID")]
    pub project_id: String,
    /// Title.
    pub title: String,
    /// The log message (or empty).
    pub message: String,
    /// Platform.
    pub platform: String,
    /// `error`, `default` or `transaction`.
    #[serde(rename = "type")]
    pub event_type: String,
    /// Event time.
    pub date_created: String,
    /// Receive time.
    pub date_received: String,
    /// Culprit.
    pub culprit: Option<String>,
    /// Crash location (file) or transaction name.
    pub location: Option<String>,
    /// Size of the stored JSON in bytes.
    pub size: usize,
    /// Tags.
    pub tags: Vec<TagPair>,
    /// User interface.
    pub user: Option<Value>,
    /// Contexts.
    pub contexts: Value,
    /// `extra`.
    pub context: Value,
    /// SDK.
    pub sdk: Option<Value>,
    /// Interfaces as entries.
    pub entries: Vec<Value>,
    /// `modules`.
    pub packages: Value,
    /// Metadata as stored with the event.
    pub metadata: Value,
    /// Grouping hashes.
    pub fingerprints: Vec<String>,
    /// Processing errors.
    pub errors: Vec<Value>,
    /// Release (`{version}`), if any.
    pub release: Option<Value>,
    /// Dist.
    pub dist: Option<String>,
    /// Environment (not part of Sentry's shape, but handy; Sentry puts it in tags).
    pub environment: Option<String>,
    /// Transactions: start (float seconds).
    pub start_timestamp: Option<f64>,
    /// Transactions: end (float seconds).
    pub end_timestamp: Option<f64>,
    /// Transactions: measurements.
    pub measurements: Option<Value>,
    /// Always null.
    pub crash_file: Option<Value>,
    /// Always null.
    pub occurrence: Option<Value>,
    /// Field metadata (empty).
    #[serde(rename = "_meta")]
    pub meta: Value,
}

/// One page of events.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct EventPage {
    /// Events, newest first.
    pub events: Vec<Event>,
    /// Cursor of the next page.
    pub next_cursor: Option<String>,
}

fn s(v: &Value, key: &str) -> Option<String> {
    v.get(key).and_then(Value::as_str).map(str::to_owned)
}

/// `[lineno, line]` pairs from pre/context/post lines.
fn frame_context(frame: &Value) -> Value {
    let Some(line) = frame.get("lineno").and_then(Value::as_u64) else {
        return json!([]);
    };
    let lines = |k: &str| -> Vec<String> {
        frame
            .get(k)
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    };
    let pre = lines("pre_context");
    let post = lines("post_context");
    let mut out = Vec::new();
    let start = line.saturating_sub(pre.len() as u64);
    for (i, l) in pre.into_iter().enumerate() {
        out.push(json!([start + i as u64, l]));
    }
    if let Some(cl) = frame.get("context_line").and_then(Value::as_str) {
        out.push(json!([line, cl]));
    }
    for (i, l) in post.into_iter().enumerate() {
        out.push(json!([line + 1 + i as u64, l]));
    }
    Value::Array(out)
}

fn api_frame(frame: &Value) -> Value {
    json!({
        "filename": frame.get("filename"),
        "absPath": frame.get("abs_path"),
        "module": frame.get("module"),
        "package": frame.get("package"),
        "platform": frame.get("platform"),
        "instructionAddr": frame.get("instruction_addr"),
        "symbolAddr": frame.get("symbol_addr"),
        "function": frame.get("function"),
        "rawFunction": frame.get("raw_function"),
        "symbol": frame.get("symbol"),
        "context": frame_context(frame),
        "lineNo": frame.get("lineno"),
        "colNo": frame.get("colno"),
        "inApp": frame.get("in_app").and_then(Value::as_bool).unwrap_or(false),
        "trust": frame.get("trust"),
        "errors": Value::Null,
        "vars": frame.get("vars"),
        "data": frame.get("data").cloned().unwrap_or_else(|| json!({})),
    })
}

fn api_stacktrace(st: Option<&Value>) -> Value {
    let Some(st) = st.filter(|v| v.is_object()) else {
        return Value::Null;
    };
    let frames: Vec<Value> = st
        .get("frames")
        .and_then(Value::as_array)
        .map(|f| f.iter().map(api_frame).collect())
        .unwrap_or_default();
    let has_system = frames.iter().any(|f| f["inApp"] == false);
    json!({
        "frames": frames,
        "framesOmitted": st.get("frames_omitted"),
        "registers": st.get("registers"),
        "hasSystemFrames": has_system,
    })
}

fn entries(ev: &Value) -> Vec<Value> {
    let mut out = Vec::new();
    if let Some(values) = ev.pointer("/exception/values").and_then(Value::as_array) {
        let values: Vec<Value> = values
            .iter()
            .map(|e| {
                json!({
                    "type": e.get("type"),
                    "value": e.get("value"),
                    "module": e.get("module"),
                    "mechanism": e.get("mechanism"),
                    "threadId": e.get("thread_id"),
                    "stacktrace": api_stacktrace(e.get("stacktrace")),
                    "rawStacktrace": api_stacktrace(e.get("raw_stacktrace")),
                })
            })
            .collect();
        let has_system = values
            .iter()
            .any(|v| v.pointer("/stacktrace/hasSystemFrames") == Some(&Value::Bool(true)));
        out.push(json!({"type": "exception", "data": {"values": values, "hasSystemFrames": has_system, "excOmitted": null}}));
    }
    if let Some(st) = ev.get("stacktrace") {
        out.push(json!({"type": "stacktrace", "data": api_stacktrace(Some(st))}));
    }
    if let Some(le) = ev.get("logentry") {
        out.push(json!({"type": "message", "data": {
            "formatted": le.get("formatted"),
            "message": le.get("message"),
            "params": le.get("params"),
        }}));
    }
    if let Some(threads) = ev.pointer("/threads/values").and_then(Value::as_array) {
        let values: Vec<Value> = threads
            .iter()
            .map(|t| {
                json!({
                    "id": t.get("id"),
                    "name": t.get("name"),
                    "crashed": t.get("crashed").and_then(Value::as_bool).unwrap_or(false),
                    "current": t.get("current").and_then(Value::as_bool).unwrap_or(false),
                    "main": t.get("main"),
                    "state": t.get("state"),
                    "stacktrace": api_stacktrace(t.get("stacktrace")),
                    "rawStacktrace": Value::Null,
                })
            })
            .collect();
        out.push(json!({"type": "threads", "data": {"values": values}}));
    }
    if let Some(req) = ev.get("request").and_then(Value::as_object) {
        let query = match req.get("query_string") {
            Some(Value::String(q)) => Value::Array(
                q.split('&')
                    .filter(|p| !p.is_empty())
                    .map(|p| {
                        let (k, v) = p.split_once('=').unwrap_or((p, ""));
                        json!([k, v])
                    })
                    .collect(),
            ),
            Some(other) => other.clone(),
            None => json!([]),
        };
        out.push(json!({"type": "request", "data": {
            "url": req.get("url"),
            "method": req.get("method"),
            "query": query,
            "fragment": req.get("fragment"),
            "data": req.get("data"),
            "headers": req.get("headers").cloned().unwrap_or_else(|| json!([])),
            "cookies": req.get("cookies"),
            "env": req.get("env"),
            "inferredContentType": Value::Null,
        }}));
    }
    if let Some(crumbs) = ev.pointer("/breadcrumbs/values").and_then(Value::as_array) {
        let values: Vec<Value> = crumbs
            .iter()
            .map(|c| {
                let ts = c
                    .get("timestamp")
                    .and_then(Value::as_f64)
                    .map(|secs| Value::String(iso((secs * 1000.0) as u64)))
                    .unwrap_or(Value::Null);
                json!({
                    "timestamp": ts,
                    "type": c.get("type").cloned().unwrap_or_else(|| json!("default")),
                    "category": c.get("category"),
                    "level": c.get("level").cloned().unwrap_or_else(|| json!("info")),
                    "message": c.get("message"),
                    "data": c.get("data"),
                    "event_id": Value::Null,
                })
            })
            .collect();
        out.push(json!({"type": "breadcrumbs", "data": {"values": values}}));
    }
    if let Some(spans) = ev.get("spans").and_then(Value::as_array) {
        out.push(json!({"type": "spans", "data": spans}));
    }
    out
}

/// Converts a stored event into the API shape.
pub fn to_api_event(stored: &StoredEvent, size: usize) -> Event {
    let ev = &stored.event;
    let tags = ev
        .get("tags")
        .and_then(Value::as_array)
        .map(|pairs| {
            pairs
                .iter()
                .filter_map(|p| {
                    Some(TagPair {
                        key: p.get(0)?.as_str()?.to_owned(),
                        value: p.get(1)?.as_str()?.to_owned(),
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    let message = ev
        .pointer("/logentry/formatted")
        .or_else(|| ev.pointer("/logentry/message"))
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    Event {
        id: stored.event_id.clone(),
        event_id: stored.event_id.clone(),
        group_id: stored.issue_id.map(|i| i.to_string()),
        project_id: stored.project_id.to_string(),
        title: s(ev, "title").unwrap_or_else(|| "<untitled>".into()),
        message,
        platform: s(ev, "platform").unwrap_or_else(|| "other".into()),
        event_type: s(ev, "type").unwrap_or_else(|| "default".into()),
        date_created: iso(stored.timestamp_ms),
        date_received: iso(stored.received_ms),
        culprit: s(ev, "culprit"),
        location: s(ev, "location"),
        size,
        tags,
        user: ev.get("user").cloned(),
        contexts: ev.get("contexts").cloned().unwrap_or_else(|| json!({})),
        context: ev.get("extra").cloned().unwrap_or_else(|| json!({})),
        sdk: ev.get("sdk").cloned(),
        entries: entries(ev),
        packages: ev.get("modules").cloned().unwrap_or_else(|| json!({})),
        metadata: ev.get("metadata").cloned().unwrap_or_else(|| json!({})),
        fingerprints: stored.hashes.clone(),
        errors: ev
            .get("errors")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default(),
        release: s(ev, "release").map(|r| json!({"version": r, "shortVersion": r})),
        dist: s(ev, "dist"),
        environment: s(ev, "environment"),
        start_timestamp: ev.get("start_timestamp").and_then(Value::as_f64),
        end_timestamp: (stored.event.get("type").and_then(Value::as_str) == Some("transaction"))
            .then(|| ev.get("timestamp").and_then(Value::as_f64))
            .flatten(),
        measurements: ev.get("measurements").cloned(),
        crash_file: None,
        occurrence: None,
        meta: Value::Object(Map::new()),
    }
}

impl QueryService {
    /// The stored event as saved (for tools that want the raw normalized JSON).
    pub fn stored_event(&self, project_id: u64, event_id: &Uuid) -> Result<Option<StoredEvent>> {
        records::load_event(self.store(), project_id, event_id)
    }

    /// One event (Sentry's `GET /projects/{org}/{project}/events/{id}/`).
    pub fn event(&self, project_id: u64, event_id: &Uuid) -> Result<Option<Event>> {
        let store = self.store();
        let Some(raw) = store
            .db()
            .get_pinned_cf(&store.cf(cf::EVENTS), keys::event(project_id, event_id))?
        else {
            return Ok(None);
        };
        let stored = records::decode_event(&raw)?;
        Ok(Some(to_api_event(&stored, raw.len())))
    }

    /// An event by id in any of `project_ids` (the CLI's `osprey event ID`).
    pub fn find_event(&self, project_ids: &[u64], event_id: &Uuid) -> Result<Option<Event>> {
        for p in project_ids {
            if let Some(e) = self.event(*p, event_id)? {
                return Ok(Some(e));
            }
        }
        Ok(None)
    }

    /// Events of an issue, newest first (`/issues/{id}/events/`). `full = false` leaves
    /// `entries` empty, like Sentry's list without `full=true`.
    pub fn issue_events(
        &self,
        issue_id: u64,
        limit: usize,
        cursor: Option<&str>,
        full: bool,
    ) -> Result<EventPage> {
        let every = EventFilter {
            start_ms: 0,
            end_ms: u64::MAX,
            environments: Vec::new(),
            query: None,
            oldest_first: false,
        };
        let limit = if limit == 0 { 100 } else { limit };
        self.issue_events_matching(issue_id, &every, parse_cursor(cursor), limit, full)
    }

    /// Events of an issue that pass `filter`, `offset` of them skipped
    /// (`/issues/{id}/events/?query=…&environment=…&statsPeriod=…&sort=…`, the official MCP
    /// server's `search_issue_events`). Reads the issue's time index within the range, newest
    /// or oldest first, and at most [`MAX_INDEX_SCAN`] entries per call.
    pub fn issue_events_matching(
        &self,
        issue_id: u64,
        filter: &EventFilter,
        offset: usize,
        limit: usize,
        full: bool,
    ) -> Result<EventPage> {
        let Some(issue) = records::load_issue(self.store(), issue_id)? else {
            return Ok(EventPage {
                events: Vec::new(),
                next_cursor: None,
            });
        };
        let store = self.store();
        let prefix = keys::index::ISSUE_TIME;
        let lower = keys::index_by_time(prefix, issue_id, filter.start_ms, &Uuid::nil());
        let upper = keys::index_by_time(prefix, issue_id, filter.end_ms, &Uuid::max());
        let keep = |stored: &StoredEvent| {
            if !filter.environments.is_empty() {
                let env = stored.event.get("environment").and_then(Value::as_str);
                if !env.is_some_and(|e| filter.environments.iter().any(|w| w == e)) {
                    return false;
                }
            }
            filter.query.as_ref().is_none_or(|query| {
                crate::api::event_fields(store, stored, false)
                    .is_some_and(|f| crate::api::event_matches(&f, stored.timestamp_ms, query))
            })
        };
        let page = IndexPage {
            project_id: issue.project_id,
            offset,
            limit,
            full,
        };
        if filter.oldest_first {
            self.index_page(&lower, &upper, rocksdb::Direction::Forward, keep, page)
        } else {
            self.index_page(&lower, &upper, rocksdb::Direction::Reverse, keep, page)
        }
    }

    /// The newest event of an issue (`/issues/{id}/events/latest/`).
    pub fn latest_event(&self, issue_id: u64) -> Result<Option<Event>> {
        Ok(self
            .issue_events(issue_id, 1, None, true)?
            .events
            .into_iter()
            .next())
    }

    /// The oldest event of an issue (`/issues/{id}/events/oldest/`).
    pub fn oldest_event(&self, issue_id: u64) -> Result<Option<Event>> {
        let Some(issue) = records::load_issue(self.store(), issue_id)? else {
            return Ok(None);
        };
        let store = self.store();
        let prefix = keys::prefixed_id(keys::index::ISSUE_TIME, issue_id);
        let first = store
            .db()
            .prefix_iterator_cf(&store.cf(cf::INDEX), prefix)
            .next()
            .transpose()?
            .filter(|(k, _)| k.starts_with(&prefix))
            .and_then(|(k, _)| Uuid::from_slice(k.get(17..33)?).ok());
        match first {
            Some(id) => self.event(issue.project_id, &id),
            None => Ok(None),
        }
    }

    /// A project's error events, newest first, `offset` of them skipped
    /// (`/projects/{org}/{project}/events/`; Sentry's list holds errors, not transactions).
    /// `full = false` leaves `entries` empty. At most [`MAX_INDEX_SCAN`] index entries are
    /// read per call, so a page deep in a transaction-heavy project ends early rather than
    /// scanning without bound.
    pub fn project_error_events(
        &self,
        project_id: u64,
        offset: usize,
        limit: usize,
        full: bool,
    ) -> Result<EventPage> {
        let prefix = keys::index::PROJECT_TIME;
        let lower = keys::index_by_time(prefix, project_id, 0, &Uuid::nil());
        let upper = keys::index_by_time(prefix, project_id, u64::MAX, &Uuid::max());
        let is_error = |stored: &StoredEvent| {
            stored.event.get("type").and_then(Value::as_str) != Some("transaction")
        };
        let page = IndexPage {
            project_id,
            offset,
            limit,
            full,
        };
        self.index_page(&lower, &upper, rocksdb::Direction::Reverse, is_error, page)
    }

    /// One page of the events the time-index keys in `lower..=upper` name, read in
    /// `direction` from the end it starts at: events `keep` refuses are passed over,
    /// `page.offset` kept ones skipped, and at most [`MAX_INDEX_SCAN`] entries read past the
    /// page.
    fn index_page(
        &self,
        lower: &[u8],
        upper: &[u8],
        direction: rocksdb::Direction,
        keep: impl Fn(&StoredEvent) -> bool,
        page: IndexPage,
    ) -> Result<EventPage> {
        let limit = page.limit.clamp(1, 100);
        let store = self.store();
        let from = match direction {
            rocksdb::Direction::Forward => lower,
            rocksdb::Direction::Reverse => upper,
        };
        let iter = store.db().iterator_cf(
            &store.cf(cf::INDEX),
            rocksdb::IteratorMode::From(from, direction),
        );
        let (mut skipped, mut events, mut more) = (0, Vec::new(), false);
        // The entries skipped for the offset are read too: bounded by what the client asks.
        let scan = page
            .offset
            .saturating_add(limit)
            .saturating_add(MAX_INDEX_SCAN);
        for item in iter.take(scan) {
            let (key, _) = item?;
            if key.as_ref() < lower || key.as_ref() > upper {
                break;
            }
            let Some(id) = key.get(17..33).and_then(|b| Uuid::from_slice(b).ok()) else {
                continue;
            };
            let Some(raw) = store
                .db()
                .get_pinned_cf(&store.cf(cf::EVENTS), keys::event(page.project_id, &id))?
            else {
                continue;
            };
            let stored = records::decode_event(&raw)?;
            if !keep(&stored) {
                continue;
            }
            if skipped < page.offset {
                skipped += 1;
                continue;
            }
            if events.len() == limit {
                more = true;
                break;
            }
            let mut event = to_api_event(&stored, raw.len());
            if !page.full {
                event.entries.clear();
            }
            events.push(event);
        }
        Ok(EventPage {
            events,
            next_cursor: more.then(|| format!("0:{}:0", page.offset + limit)),
        })
    }

    /// Events of a project, newest first.
    pub fn project_events(&self, project_id: u64, limit: usize) -> Result<Vec<Event>> {
        let ids =
            self.index_newest_first(keys::index::PROJECT_TIME, project_id, limit.min(1000))?;
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(e) = self.event(project_id, &id)? {
                out.push(e);
            }
        }
        Ok(out)
    }

    /// Every stored event of a trace (errors and transactions, any project), oldest first.
    pub fn trace_events(&self, trace_id: &Uuid, limit: usize) -> Result<Vec<StoredEvent>> {
        let store = self.store();
        let mut prefix = vec![keys::index::TRACE];
        prefix.extend_from_slice(trace_id.as_bytes());
        let mut ids = Vec::new();
        for item in store
            .db()
            .prefix_iterator_cf(&store.cf(cf::INDEX), &prefix)
            .take(limit.min(10_000))
        {
            let (key, _) = item?;
            if !key.starts_with(&prefix) {
                break;
            }
            if let Some(id) = key.get(25..41).and_then(|b| Uuid::from_slice(b).ok()) {
                ids.push(id);
            }
        }
        // The trace index does not carry the project: look the event up in each project.
        let projects: Vec<u64> = store
            .meta()
            .organizations()
            .iter()
            .flat_map(|o| store.meta().projects_of_org(o.id))
            .map(|p| p.id)
            .collect();
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            for p in &projects {
                if let Some(e) = records::load_event(store, *p, &id)? {
                    out.push(e);
                    break;
                }
            }
        }
        Ok(out)
    }

    /// Event ids under `prefix` + `owner` in an index, newest first, at most `max`.
    fn index_newest_first(&self, prefix: u8, owner: u64, max: usize) -> Result<Vec<Uuid>> {
        let store = self.store();
        let upper = keys::index_by_time(prefix, owner, u64::MAX, &Uuid::max());
        let owner_prefix = keys::prefixed_id(prefix, owner);
        let iter = store.db().iterator_cf(
            &store.cf(cf::INDEX),
            rocksdb::IteratorMode::From(&upper, rocksdb::Direction::Reverse),
        );
        let mut out = Vec::new();
        for item in iter {
            if out.len() >= max {
                break;
            }
            let (key, _) = item?;
            if !key.starts_with(&owner_prefix) {
                break;
            }
            if let Some(id) = key.get(17..33).and_then(|b| Uuid::from_slice(b).ok()) {
                out.push(id);
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_shape_of_an_error_event() {
        let stored = StoredEvent {
            event_id: "ab".repeat(16),
            project_id: 1,
            issue_id: Some(3),
            timestamp_ms: 1_700_000_000_000,
            received_ms: 1_700_000_000_500,
            hashes: vec!["h1".into()],
            event: json!({
                "type": "error",
                "platform": "python",
                "title": "ValueError: x",
                "culprit": "app in f",
                "tags": [["level", "error"]],
                "exception": {"values": [{"type": "ValueError", "value": "x", "stacktrace": {"frames": [
                    {"function": "f", "lineno": 10, "context_line": "raise", "pre_context": ["a", "b"], "post_context": ["c"], "in_app": true}
                ]}}]},
                "breadcrumbs": {"values": [{"timestamp": 1_700_000_000.0, "message": "m"}]},
                "request": {"url": "https://x.io/a", "method": "GET", "query_string": "a=1&b=2"},
            }),
        };
        let e = to_api_event(&stored, 10);
        assert_eq!(e.group_id.as_deref(), Some("3"));
        assert_eq!(e.date_created, "2023-11-14T22:13:20.000Z");
        assert_eq!(
            e.tags[0],
            TagPair {
                key: "level".into(),
                value: "error".into()
            }
        );
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(v["eventID"], "ab".repeat(16));
        let exc = &v["entries"][0];
        assert_eq!(exc["type"], "exception");
        let frame = &exc["data"]["values"][0]["stacktrace"]["frames"][0];
        assert_eq!(frame["lineNo"], 10);
        assert_eq!(frame["inApp"], true);
        assert_eq!(
            frame["context"],
            json!([[8, "a"], [9, "b"], [10, "raise"], [11, "c"]])
        );
        let kinds: Vec<&str> = v["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["type"].as_str().unwrap())
            .collect();
        assert_eq!(kinds, vec!["exception", "request", "breadcrumbs"]);
        assert_eq!(
            v["entries"][1]["data"]["query"],
            json!([["a", "1"], ["b", "2"]])
        );
    }
}
