//! `GET /organizations/{org}/events/` (Discover) and `…/events/validate/`, over the stored
//! events: the `errors` dataset (error and message events), `transactions`, and `spans` (each
//! transaction's root span plus its child spans).
//!
//! Non-aggregate fields group the rows; aggregates (`count()`, `count_unique(f)`, `avg(f)`,
//! `sum(f)`, `min(f)`, `max(f)`, `p50(f)` … `p100(f)`, `percentile(f, q)`, `apdex([T])`,
//! `failure_rate()`, `epm()`/`tpm()`/`eps()`/`tps()`, `last_seen()`, `first_seen()`) are
//! computed per group, exactly. The scan is bounded ([`MAX_SCANNED`] events), newest first.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde_json::{json, Map, Value};
use storage::records::{self, StoredEvent};
use storage::{cf, keys, now_ms, Organization, Store};
use uuid::Uuid;

use super::util::{iso, parse_iso, Page};
use super::{ApiError, ApiResponse, ApiResult, Ctx};
use crate::search::{self, parse_issue_query, wildcard_match, Term, TimeField};

/// Most stored events one Discover query reads.
pub const MAX_SCANNED: usize = 100_000;
/// Default window when the request names none (Sentry's default).
const DEFAULT_PERIOD_MS: u64 = 14 * 86_400_000;

/// Which rows a query runs over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dataset {
    Errors,
    Transactions,
    Spans,
}

impl Dataset {
    fn parse(name: Option<&str>) -> ApiResult<Dataset> {
        Ok(match name.unwrap_or("errors") {
            "" | "errors" | "discover" | "events" | "issuePlatform" => Dataset::Errors,
            "transactions" | "metricsEnhanced" | "metrics" => Dataset::Transactions,
            "spans" | "spansIndexed" => Dataset::Spans,
            other => {
                return Err(ApiError::BadRequest(format!(
                    "dataset {other:?} is not available; use errors, transactions or spans"
                )))
            }
        })
    }

    fn default_duration(self) -> &'static str {
        match self {
            Dataset::Spans => "span.duration",
            _ => "transaction.duration",
        }
    }
}

/// One aggregate function of a field list.
#[derive(Debug, Clone, PartialEq)]
enum Agg {
    Count,
    CountUnique(String),
    Avg(String),
    Sum(String),
    Min(String),
    Max(String),
    Quantile(String, f64),
    Apdex(Option<u64>),
    FailureRate,
    PerMinute,
    PerSecond,
    LastSeen,
    FirstSeen,
}

/// A requested column.
#[derive(Debug, Clone, PartialEq)]
enum Column {
    Plain(String),
    Agg(Agg),
}

fn parse_column(field: &str, dataset: Dataset) -> Result<Column, String> {
    let field = field.trim();
    let Some(open) = field.find('(') else {
        if field.is_empty() {
            return Err("empty field".into());
        }
        return Ok(Column::Plain(field.to_owned()));
    };
    if !field.ends_with(')') {
        return Err(format!("{field}: unbalanced parentheses"));
    }
    let name = &field[..open];
    let args: Vec<&str> = field[open + 1..field.len() - 1]
        .split(',')
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .collect();
    let arg = |i: usize| args.get(i).map(|s| s.to_string());
    let measure = || arg(0).unwrap_or_else(|| dataset.default_duration().to_owned());
    let quantile = |q: f64| Ok(Column::Agg(Agg::Quantile(measure(), q)));
    match name {
        "count" => Ok(Column::Agg(Agg::Count)),
        "count_unique" => arg(0)
            .map(|f| Column::Agg(Agg::CountUnique(f)))
            .ok_or_else(|| format!("{field}: count_unique needs a field")),
        "avg" => Ok(Column::Agg(Agg::Avg(measure()))),
        "sum" => Ok(Column::Agg(Agg::Sum(measure()))),
        "min" => Ok(Column::Agg(Agg::Min(measure()))),
        "max" => Ok(Column::Agg(Agg::Max(measure()))),
        "p50" => quantile(0.5),
        "p75" => quantile(0.75),
        "p90" => quantile(0.9),
        "p95" => quantile(0.95),
        "p99" => quantile(0.99),
        "p100" => quantile(1.0),
        "percentile" => {
            let q: f64 = args
                .get(1)
                .and_then(|q| q.parse().ok())
                .filter(|q| (0.0..=1.0).contains(q))
                .ok_or_else(|| format!("{field}: percentile(field, q) needs q between 0 and 1"))?;
            quantile(q)
        }
        "apdex" => match arg(0) {
            None => Ok(Column::Agg(Agg::Apdex(None))),
            Some(t) => t
                .parse()
                .map(|t| Column::Agg(Agg::Apdex(Some(t))))
                .map_err(|_| format!("{field}: apdex threshold must be whole milliseconds")),
        },
        "failure_rate" => Ok(Column::Agg(Agg::FailureRate)),
        "epm" | "tpm" => Ok(Column::Agg(Agg::PerMinute)),
        "eps" | "tps" => Ok(Column::Agg(Agg::PerSecond)),
        "last_seen" => Ok(Column::Agg(Agg::LastSeen)),
        "first_seen" => Ok(Column::Agg(Agg::FirstSeen)),
        other => Err(format!("unknown function {other}()")),
    }
}

/// Sentry's type and unit of a column, for `meta`.
fn column_meta(_field: &str, column: &Column) -> (&'static str, Option<&'static str>) {
    let is_duration = |f: &str| {
        f.ends_with("duration") || f.ends_with("self_time") || f.starts_with("measurements.")
    };
    match column {
        Column::Plain(f) => match f.as_str() {
            "timestamp" => ("date", None),
            "transaction.duration" | "span.duration" | "span.self_time" => {
                ("duration", Some("millisecond"))
            }
            "project.id" | "issue.id" => ("integer", None),
            "is_transaction" => ("boolean", None),
            _ => ("string", None),
        },
        Column::Agg(agg) => match agg {
            Agg::Count | Agg::CountUnique(_) => ("integer", None),
            Agg::Avg(f) | Agg::Sum(f) | Agg::Min(f) | Agg::Max(f) | Agg::Quantile(f, _) => {
                if is_duration(f) {
                    ("duration", Some("millisecond"))
                } else {
                    ("number", None)
                }
            }
            Agg::Apdex(_) => ("number", None),
            Agg::FailureRate => ("percentage", None),
            Agg::PerMinute => ("rate", Some("1/minute")),
            Agg::PerSecond => ("rate", Some("1/second")),
            Agg::LastSeen | Agg::FirstSeen => ("date", None),
        },
    }
}

/// One row of a dataset: its fields as JSON values.
struct Row {
    fields: HashMap<String, Value>,
    ts_ms: u64,
    project_id: u64,
    /// Transaction status, for failure_rate.
    status: Option<String>,
    /// Apdex threshold of this row's transaction.
    apdex_t: u64,
}

fn str_at<'a>(v: &'a Value, pointer: &str) -> Option<&'a str> {
    v.pointer(pointer).and_then(Value::as_str)
}

fn ts_of(v: &Value, key: &str) -> Option<f64> {
    match v.get(key)? {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => parse_iso(s).map(|ms| ms as f64 / 1000.0),
        _ => None,
    }
}

pub(super) fn user_display(user: Option<&Value>) -> Option<String> {
    let u = user?;
    for (k, prefix) in [
        ("email", "email:"),
        ("id", "id:"),
        ("username", "username:"),
        ("ip_address", "ip:"),
    ] {
        if let Some(v) = u.get(k) {
            let v = match v {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                _ => continue,
            };
            return Some(format!("{prefix}{v}"));
        }
    }
    None
}

/// The rows one stored event contributes to `dataset`.
fn rows_of(
    store: &Store,
    stored: &StoredEvent,
    dataset: Dataset,
    short_ids: &mut HashMap<u64, String>,
) -> Vec<Row> {
    let ev = &stored.event;
    let is_tx = str_at(ev, "/type") == Some("transaction");
    if (dataset == Dataset::Errors) == is_tx {
        return Vec::new();
    }
    let project = store.meta().project(stored.project_id);
    let slug = project.as_ref().map(|p| p.slug.clone()).unwrap_or_default();
    let mut base: HashMap<String, Value> = HashMap::new();
    let mut put = |k: &str, v: Option<Value>| {
        if let Some(v) = v {
            base.insert(k.to_owned(), v);
        }
    };
    let s = |p: &str| str_at(ev, p).map(|x| Value::String(x.to_owned()));
    put("id", Some(Value::String(stored.event_id.clone())));
    put("project", Some(Value::String(slug.clone())));
    put("project.name", Some(Value::String(slug.clone())));
    put("project.id", Some(json!(stored.project_id)));
    put("timestamp", Some(Value::String(iso(stored.timestamp_ms))));
    put("title", s("/title"));
    put(
        "message",
        s("/logentry/formatted")
            .or_else(|| s("/logentry/message"))
            .or_else(|| s("/title")),
    );
    put("level", s("/level"));
    put("platform", s("/platform"));
    put("environment", s("/environment"));
    put("release", s("/release"));
    put("dist", s("/dist"));
    put("culprit", s("/culprit"));
    put("transaction", s("/transaction"));
    put("trace", s("/contexts/trace/trace_id"));
    put("trace.span", s("/contexts/trace/span_id"));
    put("trace.parent_span", s("/contexts/trace/parent_span_id"));
    put("user", user_display(ev.get("user")).map(Value::String));
    put("user.email", s("/user/email"));
    put(
        "user.id",
        ev.pointer("/user/id").map(|v| {
            Value::String(
                v.as_str()
                    .map(str::to_owned)
                    .unwrap_or_else(|| v.to_string()),
            )
        }),
    );
    put("user.username", s("/user/username"));
    put("user.ip", s("/user/ip_address"));
    put("sdk.name", s("/sdk/name"));
    put("http.method", s("/request/method"));
    put("http.url", s("/request/url"));
    if let Some(tags) = ev.get("tags").and_then(Value::as_array) {
        for pair in tags {
            if let (Some(k), Some(v)) = (
                pair.get(0).and_then(Value::as_str),
                pair.get(1).and_then(Value::as_str),
            ) {
                base.entry(format!("tags[{k}]"))
                    .or_insert_with(|| Value::String(v.to_owned()));
                base.entry(k.to_owned())
                    .or_insert_with(|| Value::String(v.to_owned()));
            }
        }
    }
    if let Some(issue_id) = stored.issue_id {
        let short = short_ids.entry(issue_id).or_insert_with(|| {
            records::load_issue(store, issue_id)
                .ok()
                .flatten()
                .map(|r| records::qualified_short_id(&slug, r.short_id))
                .unwrap_or_default()
        });
        base.insert("issue".into(), Value::String(short.clone()));
        base.insert("issue.id".into(), json!(issue_id));
    }
    if let Some(ex) = ev
        .pointer("/exception/values")
        .and_then(Value::as_array)
        .and_then(|v| v.last())
    {
        if let Some(t) = ex.get("type").and_then(Value::as_str) {
            base.insert("error.type".into(), Value::String(t.to_owned()));
        }
        if let Some(v) = ex.get("value").and_then(Value::as_str) {
            base.insert("error.value".into(), Value::String(v.to_owned()));
        }
        let handled = ex.pointer("/mechanism/handled").and_then(Value::as_bool);
        base.insert("error.handled".into(), json!(handled.unwrap_or(true)));
    }
    let settings = project
        .as_ref()
        .map(|p| p.settings.clone())
        .unwrap_or_default();
    let tx_name = str_at(ev, "/transaction").unwrap_or("");
    let apdex_t = settings
        .transaction_thresholds
        .get(tx_name)
        .copied()
        .unwrap_or(settings.apdex_threshold_ms)
        .max(1);
    let status = str_at(ev, "/contexts/trace/status").map(str::to_owned);
    let row = |fields: HashMap<String, Value>| Row {
        fields,
        ts_ms: stored.timestamp_ms,
        project_id: stored.project_id,
        status: status.clone(),
        apdex_t,
    };
    if !is_tx {
        return vec![row(base)];
    }
    let start = ts_of(ev, "start_timestamp");
    let end = ts_of(ev, "timestamp");
    let duration_ms = match (start, end) {
        (Some(s), Some(e)) if e >= s => Some(ms_between(s, e)),
        _ => None,
    };
    let mut tx = base.clone();
    tx.insert("transaction.duration".into(), json!(duration_ms));
    tx.insert(
        "transaction.op".into(),
        json!(str_at(ev, "/contexts/trace/op")),
    );
    tx.insert("transaction.status".into(), json!(status));
    if dataset == Dataset::Transactions {
        return vec![row(tx)];
    }
    // Spans: the transaction's own (segment) span, then its children.
    let mut out = Vec::new();
    let mut root = base.clone();
    root.insert("id".into(), json!(str_at(ev, "/contexts/trace/span_id")));
    root.insert(
        "span_id".into(),
        json!(str_at(ev, "/contexts/trace/span_id")),
    );
    root.insert("span.op".into(), json!(str_at(ev, "/contexts/trace/op")));
    root.insert("span.description".into(), json!(tx_name));
    root.insert("span.duration".into(), json!(duration_ms));
    root.insert("span.status".into(), json!(status));
    root.insert("is_transaction".into(), json!(true));
    root.insert("transaction.event_id".into(), json!(stored.event_id));
    out.push(row(root));
    if let Some(spans) = ev.get("spans").and_then(Value::as_array) {
        for span in spans.iter().take(10_000) {
            let mut f = base.clone();
            let (s0, s1) = (ts_of(span, "start_timestamp"), ts_of(span, "timestamp"));
            let d = match (s0, s1) {
                (Some(a), Some(b)) if b >= a => Some(ms_between(a, b)),
                _ => None,
            };
            f.insert("id".into(), json!(span.get("span_id")));
            f.insert("span_id".into(), json!(span.get("span_id")));
            f.insert("span.op".into(), json!(span.get("op")));
            f.insert("span.description".into(), json!(span.get("description")));
            f.insert("span.duration".into(), json!(d));
            f.insert("span.status".into(), json!(span.get("status")));
            f.insert("is_transaction".into(), json!(false));
            f.insert("transaction.event_id".into(), json!(stored.event_id));
            let mut r = row(f);
            r.status = span
                .get("status")
                .and_then(Value::as_str)
                .map(str::to_owned);
            out.push(r);
        }
    }
    out
}

/// Milliseconds between two timestamps in seconds, rounded to the microsecond so that float
/// noise (0.105 s → 104.99999 ms) does not move a value across a threshold.
fn ms_between(start_s: f64, end_s: f64) -> f64 {
    ((end_s - start_s) * 1_000_000.0).round() / 1000.0
}

fn value_text(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

/// The Discover fields of one stored event (`id`, `title`, `level`, `release`, `user`,
/// `issue`, `trace`, `transaction.duration`, `transaction.status`, `error.type`, tags as
/// `key` and `tags[key]`, …) as the events API sees them, for the `transactions` dataset or
/// the `errors` one; `None` when the event belongs to the other. MCP's `search_events` reads
/// and filters events through this and [`event_matches`], so both agree with the API.
pub fn event_fields(
    store: &Store,
    stored: &StoredEvent,
    transactions: bool,
) -> Option<HashMap<String, Value>> {
    let dataset = if transactions {
        Dataset::Transactions
    } else {
        Dataset::Errors
    };
    rows_of(store, stored, dataset, &mut HashMap::new())
        .into_iter()
        .next()
        .map(|r| r.fields)
}

/// Whether an event's [`event_fields`] pass every term of a parsed query (Sentry syntax;
/// issue-state terms such as `is:` do not apply to events and pass).
pub fn event_matches(
    fields: &HashMap<String, Value>,
    timestamp_ms: u64,
    query: &search::IssueQuery,
) -> bool {
    query
        .terms
        .iter()
        .all(|t| fields_match(fields, timestamp_ms, t))
}

/// Whether a row passes one search term.
fn row_matches(row: &Row, term: &Term) -> bool {
    fields_match(&row.fields, row.ts_ms, term)
}

fn fields_match(fields: &HashMap<String, Value>, ts_ms: u64, term: &Term) -> bool {
    let get = |k: &str| fields.get(k).and_then(value_text);
    match term {
        Term::Field {
            negated,
            key,
            values,
        } => {
            let key = key.as_str();
            let current = get(key).or_else(|| get(&format!("tags[{key}]")));
            let hit = values.iter().any(|pattern| match &current {
                None => false,
                Some(v) => {
                    let numeric = v.parse::<f64>().ok();
                    let (op, rest) = match pattern.as_bytes().first() {
                        Some(b'>' | b'<') => {
                            let (op_len, op) = if pattern.starts_with(">=") {
                                (2, search::Cmp::Gte)
                            } else if pattern.starts_with("<=") {
                                (2, search::Cmp::Lte)
                            } else if pattern.starts_with('>') {
                                (1, search::Cmp::Gt)
                            } else {
                                (1, search::Cmp::Lt)
                            };
                            (Some(op), &pattern[op_len..])
                        }
                        _ => (None, pattern.as_str()),
                    };
                    match (op, numeric, parse_number_with_unit(rest)) {
                        (Some(op), Some(n), Some(bound)) => op.holds(n, bound),
                        (Some(_), _, _) => false,
                        _ => wildcard_match(pattern, v),
                    }
                }
            });
            hit != *negated
        }
        Term::Has { negated, key } => {
            (get(key).is_some() || get(&format!("tags[{key}]")).is_some()) != *negated
        }
        Term::Text { negated, text } => {
            let t = text.to_lowercase();
            let hit = [
                "title",
                "message",
                "transaction",
                "culprit",
                "span.description",
            ]
            .iter()
            .filter_map(|k| get(k))
            .any(|v| v.to_lowercase().contains(&t));
            hit != *negated
        }
        Term::EventId(id) => {
            get("id").is_some_and(|v| v.replace('-', "") == *id)
                || get("transaction.event_id").is_some_and(|v| v == *id)
        }
        Term::Time { field, op, at_ms } => match field {
            TimeField::Timestamp | TimeField::LastSeen | TimeField::FirstSeen => {
                op.holds(ts_ms, *at_ms)
            }
        },
        // Issue-state terms do not apply to events; Sentry ignores them here too.
        Term::Is { .. } | Term::Number { .. } | Term::Assigned { .. } => true,
    }
}

/// `500`, `1.5s`, `200ms`, `2m` → milliseconds (bare numbers as given).
fn parse_number_with_unit(text: &str) -> Option<f64> {
    let (num, mult) = if let Some(n) = text.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = text.strip_suffix('s') {
        (n, 1000.0)
    } else if let Some(n) = text.strip_suffix('m') {
        (n, 60_000.0)
    } else if let Some(n) = text.strip_suffix('h') {
        (n, 3_600_000.0)
    } else {
        (text, 1.0)
    };
    num.parse::<f64>().ok().map(|n| n * mult)
}

fn number(row: &Row, field: &str) -> Option<f64> {
    row.fields.get(field).and_then(Value::as_f64)
}

fn quantile(values: &mut [f64], q: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(|a, b| a.total_cmp(b));
    // Nearest rank: the smallest value with at least q of the values at or below it.
    let rank = ((q * values.len() as f64).ceil() as usize).clamp(1, values.len());
    Some(values[rank - 1])
}

fn aggregate(agg: &Agg, rows: &[&Row], window_ms: u64) -> Value {
    let numbers = |f: &str| {
        rows.iter()
            .filter_map(|r| number(r, f))
            .collect::<Vec<f64>>()
    };
    match agg {
        Agg::Count => json!(rows.len()),
        Agg::CountUnique(f) => {
            let set: HashSet<String> = rows
                .iter()
                .filter_map(|r| r.fields.get(f).and_then(value_text))
                .collect();
            json!(set.len())
        }
        Agg::Avg(f) => {
            let v = numbers(f);
            if v.is_empty() {
                Value::Null
            } else {
                json!(v.iter().sum::<f64>() / v.len() as f64)
            }
        }
        Agg::Sum(f) => json!(numbers(f).iter().sum::<f64>()),
        Agg::Min(f) => json!(numbers(f).into_iter().reduce(f64::min)),
        Agg::Max(f) => json!(numbers(f).into_iter().reduce(f64::max)),
        Agg::Quantile(f, q) => json!(quantile(&mut numbers(f), *q)),
        Agg::Apdex(t) => {
            let mut total = 0u64;
            let mut score = 0.0;
            for r in rows {
                let Some(d) =
                    number(r, "transaction.duration").or_else(|| number(r, "span.duration"))
                else {
                    continue;
                };
                let t = t.unwrap_or(r.apdex_t) as f64;
                total += 1;
                if d <= t {
                    score += 1.0;
                } else if d <= 4.0 * t {
                    score += 0.5;
                }
            }
            if total == 0 {
                Value::Null
            } else {
                json!(score / total as f64)
            }
        }
        Agg::FailureRate => {
            if rows.is_empty() {
                return Value::Null;
            }
            let failed = rows
                .iter()
                .filter(|r| {
                    !matches!(
                        r.status.as_deref(),
                        None | Some("ok" | "cancelled" | "unknown")
                    )
                })
                .count();
            json!(failed as f64 / rows.len() as f64)
        }
        Agg::PerMinute => json!(rows.len() as f64 / (window_ms.max(1) as f64 / 60_000.0)),
        Agg::PerSecond => json!(rows.len() as f64 / (window_ms.max(1) as f64 / 1_000.0)),
        Agg::LastSeen => rows
            .iter()
            .map(|r| r.ts_ms)
            .max()
            .map(|t| json!(iso(t)))
            .unwrap_or(Value::Null),
        Agg::FirstSeen => rows
            .iter()
            .map(|r| r.ts_ms)
            .min()
            .map(|t| json!(iso(t)))
            .unwrap_or(Value::Null),
    }
}

/// The parsed parts of a Discover request.
struct Request {
    dataset: Dataset,
    fields: Vec<(String, Column)>,
    terms: Vec<Term>,
    projects: Vec<u64>,
    environments: Vec<String>,
    start_ms: u64,
    end_ms: u64,
    sort: Option<(String, bool)>,
}

/// Validation problems of each part (for `events/validate/`), or the request.
fn parse_request(ctx: &Ctx<'_>, org: &Organization) -> (Result<Request, String>, Value) {
    let now = now_ms();
    let dataset = Dataset::parse(ctx.req.param("dataset"));
    let ds = *dataset.as_ref().unwrap_or(&Dataset::Errors);
    let mut field_names: Vec<String> = ctx
        .req
        .params("field")
        .into_iter()
        .map(str::to_owned)
        .collect();
    if field_names.is_empty() {
        field_names = match ds {
            Dataset::Errors => vec!["id", "title", "project", "timestamp"],
            Dataset::Transactions => vec![
                "id",
                "transaction",
                "transaction.duration",
                "project",
                "timestamp",
            ],
            Dataset::Spans => vec![
                "id",
                "span.op",
                "span.description",
                "span.duration",
                "transaction",
                "timestamp",
                "project",
                "trace",
            ],
        }
        .into_iter()
        .map(str::to_owned)
        .collect();
    }
    let mut fields = Vec::new();
    let mut field_reports = Vec::new();
    let mut first_error: Option<String> = None;
    for f in &field_names {
        match parse_column(f, ds) {
            Ok(c) => {
                let (ty, _) = column_meta(f, &c);
                field_reports.push(json!({"name": f, "valid": true, "attrType": if ty == "string" { "string" } else if ty == "boolean" { "boolean" } else { "number" }, "error": null}));
                fields.push((f.clone(), c));
            }
            Err(e) => {
                field_reports
                    .push(json!({"name": f, "valid": false, "attrType": null, "error": e}));
                first_error.get_or_insert(e);
            }
        }
    }
    let raw_query = ctx.req.param("query").unwrap_or("");
    let query = parse_issue_query(raw_query, now);
    let query_report = match &query {
        Ok(_) => json!({"valid": true, "error": null, "fields": []}),
        Err(e) => {
            first_error.get_or_insert(e.to_string());
            json!({"valid": false, "error": e.to_string(), "fields": []})
        }
    };
    // Projects: ids or slugs; -1 or none = all of the organization.
    let all: Vec<u64> = ctx
        .store
        .meta()
        .project_ids_of_org(org.id)
        .into_iter()
        .collect();
    let mut projects = Vec::new();
    let mut project_reports = Vec::new();
    for p in ctx.req.params("project") {
        if p == "-1" || p.is_empty() {
            projects = all.clone();
            project_reports.push(json!({"valid": true, "error": null}));
            continue;
        }
        match ctx.store.meta().project_by_slug(org.id, p) {
            Some(found) => {
                projects.push(found.id);
                project_reports.push(json!({"valid": true, "error": null}));
            }
            None => {
                let e = format!("project {p} is not in this organization");
                project_reports.push(json!({"valid": false, "error": e}));
                first_error.get_or_insert(e);
            }
        }
    }
    if projects.is_empty() {
        projects = all;
    }
    let environments: Vec<String> = ctx
        .req
        .params("environment")
        .into_iter()
        .filter(|e| !e.is_empty())
        .map(str::to_owned)
        .collect();
    let (start_ms, end_ms) = match ctx.req.param("statsPeriod").filter(|p| !p.is_empty()) {
        Some(p) => match search::parse_duration(p) {
            Some(ms) => (now.saturating_sub(ms), now),
            None => {
                first_error.get_or_insert(format!("invalid statsPeriod {p:?}"));
                (now.saturating_sub(DEFAULT_PERIOD_MS), now)
            }
        },
        None => {
            let start = ctx.req.param("start").and_then(parse_iso);
            let end = ctx.req.param("end").and_then(parse_iso);
            (
                start.unwrap_or(now.saturating_sub(DEFAULT_PERIOD_MS)),
                end.unwrap_or(now),
            )
        }
    };
    let sort_param = ctx
        .req
        .param("sort")
        .or_else(|| ctx.req.param("orderby"))
        .filter(|s| !s.is_empty());
    let mut orderby_reports = Vec::new();
    let sort = sort_param.map(|s| {
        let (desc, name) = match s.strip_prefix('-') {
            Some(n) => (true, n),
            None => (false, s),
        };
        let known = field_names.iter().any(|f| f == name);
        orderby_reports.push(json!({"name": s, "valid": known, "attrType": null, "error": if known { Value::Null } else { json!(format!("sort field {name} is not among the fields")) }}));
        if !known {
            first_error.get_or_insert(format!("sort field {name} is not among the fields"));
        }
        (name.to_owned(), desc)
    });
    let dataset_report = match &dataset {
        Ok(_) => {
            json!([{"name": ctx.req.param("dataset").unwrap_or("errors"), "valid": true, "error": null}])
        }
        Err(e) => {
            first_error.get_or_insert(e.to_string());
            json!([{"name": ctx.req.param("dataset"), "valid": false, "error": e.to_string()}])
        }
    };
    let report = json!({
        "valid": first_error.is_none(),
        "projects": project_reports,
        "dataset": dataset_report,
        "environment": environments.iter().map(|_| json!({"valid": true, "error": null})).collect::<Vec<_>>(),
        "field": field_reports,
        "query": query_report,
        "orderby": orderby_reports,
    });
    let request = match (first_error, dataset, query) {
        (None, Ok(dataset), Ok(query)) => Ok(Request {
            dataset,
            fields,
            terms: query.terms,
            projects,
            environments,
            start_ms,
            end_ms,
            sort,
        }),
        (Some(e), _, _) => Err(e),
        (None, Err(e), _) => Err(e.to_string()),
        (None, _, Err(e)) => Err(e.to_string()),
    };
    (request, report)
}

/// `GET /organizations/{org}/events/validate/`.
pub(super) fn validate(ctx: &Ctx<'_>, org: &str) -> ApiResult {
    let org = ctx.org(org)?;
    ctx.require_any(&["event:read", "org:read"])?;
    let (request, report) = parse_request(ctx, &org);
    Ok(ApiResponse {
        status: if request.is_ok() {
            http::StatusCode::OK
        } else {
            http::StatusCode::BAD_REQUEST
        },
        body: report,
        link: None,
        file: None,
    })
}

/// Stored events of `projects` between `start` and `end`, newest first, bounded.
pub(super) fn scan(
    ctx: &Ctx<'_>,
    projects: &[u64],
    start_ms: u64,
    end_ms: u64,
) -> ApiResult<Vec<StoredEvent>> {
    let store = ctx.store;
    let handle = store.cf(cf::INDEX);
    let mut out = Vec::new();
    for project in projects {
        let lower =
            keys::index_by_time(keys::index::PROJECT_TIME, *project, start_ms, &Uuid::nil());
        let upper = keys::index_by_time(keys::index::PROJECT_TIME, *project, end_ms, &Uuid::max());
        let iter = store.db().iterator_cf(
            &handle,
            rocksdb::IteratorMode::From(&upper, rocksdb::Direction::Reverse),
        );
        for item in iter {
            let (key, _) = item.map_err(storage::StorageError::from)?;
            if key.as_ref() < lower.as_slice() || out.len() >= MAX_SCANNED {
                break;
            }
            let Some(id) = key.get(17..33).and_then(|b| Uuid::from_slice(b).ok()) else {
                continue;
            };
            if let Some(ev) = records::load_event(store, *project, &id)? {
                out.push(ev);
            }
        }
    }
    Ok(out)
}

fn sort_rows(rows: &mut [Map<String, Value>], sort: &Option<(String, bool)>, default: &str) {
    let (key, desc) = match sort {
        Some((k, d)) => (k.as_str(), *d),
        None => (default, true),
    };
    rows.sort_by(|a, b| {
        let (x, y) = (
            a.get(key).unwrap_or(&Value::Null),
            b.get(key).unwrap_or(&Value::Null),
        );
        let ord = match (x.as_f64(), y.as_f64()) {
            (Some(p), Some(q)) => p.total_cmp(&q),
            _ => value_text(x).cmp(&value_text(y)),
        };
        if desc {
            ord.reverse()
        } else {
            ord
        }
    });
}

/// The rows of the request's dataset in its projects and time range that pass its
/// environments and query.
fn matching_rows(ctx: &Ctx<'_>, req: &Request) -> ApiResult<Vec<Row>> {
    let mut short_ids = HashMap::new();
    let mut rows = Vec::new();
    for stored in scan(ctx, &req.projects, req.start_ms, req.end_ms)? {
        for row in rows_of(ctx.store, &stored, req.dataset, &mut short_ids) {
            let env_ok = req.environments.is_empty()
                || row
                    .fields
                    .get("environment")
                    .and_then(Value::as_str)
                    .is_some_and(|e| req.environments.iter().any(|x| x == e));
            if env_ok && req.terms.iter().all(|t| row_matches(&row, t)) {
                rows.push(row);
            }
        }
    }
    Ok(rows)
}

/// Most series one `events-stats` request asks for.
const MAX_Y_AXES: usize = 10;
/// Most intervals one `events-stats` series has.
const MAX_INTERVALS: u64 = 10_000;

/// `GET /organizations/{org}/events-stats/`: time series of Discover aggregates (`yAxis`,
/// repeated; default `count()`) per `interval` (default 1h) over the same projects, range,
/// environments, dataset and query as `events/`. One series answers Sentry's
/// `{"data": [[seconds, [{"count": value}]], …], "start", "end"}`; several are keyed by their
/// `yAxis`, each with its `order`. Intervals are aligned to multiples of the interval; an
/// empty interval is 0.
pub(super) fn events_stats(ctx: &Ctx<'_>, org: &str) -> ApiResult {
    let org = ctx.org(org)?;
    ctx.require_any(&["event:read", "org:read"])?;
    let (request, _) = parse_request(ctx, &org);
    let req = request.map_err(ApiError::BadRequest)?;
    let mut axes: Vec<&str> = ctx
        .req
        .params("yAxis")
        .into_iter()
        .filter(|a| !a.trim().is_empty())
        .collect();
    if axes.is_empty() {
        axes.push("count()");
    }
    if axes.len() > MAX_Y_AXES {
        return Err(ApiError::BadRequest(format!(
            "at most {MAX_Y_AXES} yAxis per request"
        )));
    }
    let mut aggs = Vec::new();
    for axis in &axes {
        match parse_column(axis, req.dataset) {
            Ok(Column::Agg(agg)) => aggs.push((axis.trim().to_owned(), agg)),
            Ok(Column::Plain(_)) => {
                return Err(ApiError::BadRequest(format!(
                "yAxis {axis:?} is not an aggregate such as count() or p95(transaction.duration)"
            )))
            }
            Err(e) => return Err(ApiError::BadRequest(e)),
        }
    }
    let interval_ms = match ctx.req.param("interval").filter(|i| !i.is_empty()) {
        None => 3_600_000,
        Some(i) => search::parse_duration(i)
            .filter(|ms| *ms >= 1000)
            .ok_or_else(|| ApiError::BadRequest(format!("invalid interval {i:?}")))?,
    };
    let first = req.start_ms - req.start_ms % interval_ms;
    let buckets = (req.end_ms.saturating_sub(first) / interval_ms) + 1;
    if buckets > MAX_INTERVALS {
        return Err(ApiError::BadRequest(format!(
            "{buckets} intervals of {interval_ms} ms: at most {MAX_INTERVALS}; use a longer interval"
        )));
    }
    let rows = matching_rows(ctx, &req)?;
    let mut per_bucket: Vec<Vec<&Row>> = vec![Vec::new(); buckets as usize];
    for row in &rows {
        if let Some(members) =
            per_bucket.get_mut(((row.ts_ms.saturating_sub(first)) / interval_ms) as usize)
        {
            members.push(row);
        }
    }
    let series = |agg: &Agg| -> Value {
        let data: Vec<Value> = per_bucket
            .iter()
            .enumerate()
            .map(|(i, members)| {
                let value = match aggregate(agg, members, interval_ms) {
                    Value::Null => json!(0),
                    v => v,
                };
                json!([(first + i as u64 * interval_ms) / 1000, [{"count": value}]])
            })
            .collect();
        json!({
            "data": data,
            "start": first / 1000,
            "end": req.end_ms / 1000,
            "isMetricsData": false,
        })
    };
    let body = if let [(_, agg)] = aggs.as_slice() {
        series(agg)
    } else {
        let mut out = Map::new();
        for (order, (name, agg)) in aggs.iter().enumerate() {
            let mut one = series(agg);
            one["order"] = json!(order);
            out.insert(name.clone(), one);
        }
        Value::Object(out)
    };
    Ok(ApiResponse::ok(body))
}

/// `GET /organizations/{org}/events/`.
pub(super) fn events(ctx: &Ctx<'_>, org: &str) -> ApiResult {
    let org = ctx.org(org)?;
    ctx.require_any(&["event:read", "org:read"])?;
    let (request, _) = parse_request(ctx, &org);
    let req = request.map_err(ApiError::BadRequest)?;
    let rows = matching_rows(ctx, &req)?;
    let has_agg = req.fields.iter().any(|(_, c)| matches!(c, Column::Agg(_)));
    let window_ms = req.end_ms.saturating_sub(req.start_ms);
    let mut out: Vec<Map<String, Value>> = if has_agg {
        let group_keys: Vec<&String> = req
            .fields
            .iter()
            .filter_map(|(name, c)| matches!(c, Column::Plain(_)).then_some(name))
            .collect();
        let mut groups: BTreeMap<Vec<String>, Vec<&Row>> = BTreeMap::new();
        for row in &rows {
            let key: Vec<String> = group_keys
                .iter()
                .map(|k| {
                    row.fields
                        .get(k.as_str())
                        .map(|v| v.to_string())
                        .unwrap_or_default()
                })
                .collect();
            groups.entry(key).or_default().push(row);
        }
        groups
            .values()
            .map(|members| {
                let mut m = Map::new();
                for (name, column) in &req.fields {
                    let v = match column {
                        Column::Plain(f) => {
                            members[0].fields.get(f).cloned().unwrap_or(Value::Null)
                        }
                        Column::Agg(agg) => aggregate(agg, members, window_ms),
                    };
                    m.insert(name.clone(), v);
                }
                m
            })
            .collect()
    } else {
        rows.iter()
            .map(|row| {
                let mut m = Map::new();
                for (name, _) in &req.fields {
                    m.insert(
                        name.clone(),
                        row.fields
                            .get(name.as_str())
                            .cloned()
                            .unwrap_or(Value::Null),
                    );
                }
                // Sentry always includes the row's id and project.
                m.entry("id")
                    .or_insert_with(|| row.fields.get("id").cloned().unwrap_or(Value::Null));
                m.entry("project.name").or_insert_with(|| {
                    json!(ctx
                        .store
                        .meta()
                        .project(row.project_id)
                        .map(|p| p.slug.clone()))
                });
                m
            })
            .collect()
    };
    let default_sort = if has_agg {
        req.fields
            .iter()
            .find(|(_, c)| matches!(c, Column::Agg(_)))
            .map(|(n, _)| n.clone())
            .unwrap_or_default()
    } else {
        "timestamp".to_owned()
    };
    sort_rows(&mut out, &req.sort, &default_sort);
    let mut meta_fields = Map::new();
    let mut units = Map::new();
    for (name, column) in &req.fields {
        let (ty, unit) = column_meta(name, column);
        meta_fields.insert(name.clone(), json!(ty));
        units.insert(name.clone(), json!(unit));
    }
    let page = Page::from_request(ctx.req, 50)?;
    let (data, link) = page.apply(out.into_iter().map(Value::Object).collect(), ctx.req);
    Ok(ApiResponse {
        status: http::StatusCode::OK,
        body: json!({
            "data": data,
            "meta": {"fields": meta_fields, "units": units, "dataset": ctx.req.param("dataset").unwrap_or("errors"), "isMetricsData": false},
        }),
        link: Some(link),
        file: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_parse() {
        assert_eq!(
            parse_column("count()", Dataset::Errors),
            Ok(Column::Agg(Agg::Count))
        );
        assert_eq!(
            parse_column("p95()", Dataset::Transactions),
            Ok(Column::Agg(Agg::Quantile(
                "transaction.duration".into(),
                0.95
            )))
        );
        assert_eq!(
            parse_column("p95(span.duration)", Dataset::Spans),
            Ok(Column::Agg(Agg::Quantile("span.duration".into(), 0.95)))
        );
        assert_eq!(
            parse_column(
                "percentile(transaction.duration, 0.9)",
                Dataset::Transactions
            ),
            Ok(Column::Agg(Agg::Quantile(
                "transaction.duration".into(),
                0.9
            )))
        );
        assert_eq!(
            parse_column("apdex(300)", Dataset::Transactions),
            Ok(Column::Agg(Agg::Apdex(Some(300))))
        );
        assert_eq!(
            parse_column("count_unique(user)", Dataset::Errors),
            Ok(Column::Agg(Agg::CountUnique("user".into())))
        );
        assert_eq!(
            parse_column("title", Dataset::Errors),
            Ok(Column::Plain("title".into()))
        );
        assert!(parse_column("bogus()", Dataset::Errors)
            .unwrap_err()
            .contains("unknown function"));
        assert!(parse_column("count(", Dataset::Errors).is_err());
        assert!(parse_column("percentile(x, 2)", Dataset::Errors).is_err());
    }

    #[test]
    fn nearest_rank_quantiles() {
        let mut v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(quantile(&mut v, 0.95), Some(95.0));
        assert_eq!(quantile(&mut v, 0.5), Some(50.0));
        assert_eq!(quantile(&mut v, 1.0), Some(100.0));
        assert_eq!(quantile(&mut [7.0], 0.99), Some(7.0));
        assert_eq!(quantile(&mut [], 0.5), None);
        assert_eq!(parse_number_with_unit("1.5s"), Some(1500.0));
        assert_eq!(parse_number_with_unit("200ms"), Some(200.0));
    }
}
