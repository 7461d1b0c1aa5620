//! Query fan-out (design.md §7): a `--role query` node given `--peers` answers `/api/0/` by
//! asking every processor node the same request and merging the answers.
//!
//! Each processor node's store holds the results of the Kafka offset ranges it processed
//! (storage's Kafka consumer hands a partition over at the exact offset where the old owner's
//! results end), so every event is counted by exactly one node and additive answers merge by
//! adding:
//! - issue lists merge the same issue (same project and grouping hash, `ospreyHash`) seen by
//!   several nodes into one: `count` adds, `firstSeen` is the earliest, `lastSeen` the latest;
//!   then the list is merge-sorted by the requested `sort` and cut at `limit`/`per_page`;
//! - Discover rows (`/organizations/{org}/events/`) merge by their non-aggregate fields:
//!   `count()`, `count_if()`, `sum()`, `failure_count()`, `epm()`/`eps()` add, `min()`/`max()`
//!   take the extreme. Other aggregates (percentiles, `apdex()`, `avg()`, rates) are exact when
//!   one node holds the row, which is the normal case (a project's records stay on one
//!   partition); a row split over nodes (its partition moved) gets the count-weighted mean and
//!   the field is named in `meta.ospreyApproximate`;
//! - performance reports (`/projects/{org}/{project}/performance/`) come whole from the one
//!   node holding the project's transactions; split over nodes, counters add (count, apdex,
//!   failure rate and error events stay exact) and percentiles are count-weighted means named
//!   in `ospreyApproximate`;
//! - `events-stats` series add per interval for additive aggregates (`count()`, …); a
//!   percentile or rate of an interval two nodes share is their mean, named in
//!   `ospreyApproximate`;
//! - org stats (`/organizations/{org}/stats_v2/`) add per group (`by`) and per interval,
//!   project stats (`/projects/{org}/{project}/stats/`) per timestamp;
//! - release health (`/organizations/{org}/sessions/`): sums add per group, rates come from
//!   the node holding the group (`crate::sessions::merge_node_answers`);
//! - other lists are unions by `id`; single objects come from the first node that has them.
//!
//! A peer that does not answer (connection refused, timeout, 5xx) does not fail the request:
//! the answer covers the live nodes and carries `X-Osprey-Partial: <peers>` and, for JSON
//! objects, `"ospreyPartial": {"missing": [...]}`.

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use serde_json::{json, Map, Value};

/// The header naming the peers missing from an answer.
pub const PARTIAL_HEADER: &str = "x-osprey-partial";

/// Largest request body forwarded, and largest answer read from a peer.
const MAX_BODY: usize = 16 << 20;

/// Why the fan-out could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    /// A peer URL is not `http://host:port`.
    #[error("peer URL {0:?} must start with http:// or https://")]
    BadUrl(String),
    /// The HTTP client could not be built.
    #[error("building the HTTP client: {0}")]
    Client(String),
}

/// The processor nodes a query node fans out to.
#[derive(Clone, Debug)]
pub struct Peers {
    urls: Vec<String>,
    client: reqwest::Client,
}

/// One peer's answer, or why there is none.
#[derive(Debug, Clone)]
pub struct PeerAnswer {
    /// The peer's base URL.
    pub peer: String,
    /// Status and body, or the failure.
    pub result: Result<(StatusCode, Bytes), String>,
}

impl Peers {
    /// Peers at `urls` (base URLs); each request waits at most `timeout` for a peer.
    pub fn new(urls: &[String], timeout: Duration) -> Result<Peers, PeerError> {
        let mut clean = Vec::with_capacity(urls.len());
        for url in urls {
            let url = url.trim().trim_end_matches('/');
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(PeerError::BadUrl(url.to_owned()));
            }
            clean.push(url.to_owned());
        }
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(2)))
            .build()
            .map_err(|e| PeerError::Client(e.to_string()))?;
        Ok(Peers {
            urls: clean,
            client,
        })
    }

    /// The peers' base URLs.
    pub fn urls(&self) -> &[String] {
        &self.urls
    }

    /// The HTTP client (with the per-peer timeout) the fan-out uses; MCP's fan-out shares it.
    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// Answers one `/api/0/` request by fan-out and merge.
    pub async fn handle(
        &self,
        req: http::Request<hyper::body::Incoming>,
    ) -> http::Response<Full<Bytes>> {
        let (parts, body) = req.into_parts();
        let body = match Limited::new(body, MAX_BODY).collect().await {
            Ok(c) => c.to_bytes(),
            Err(e) => {
                return respond(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    json!({"detail": format!("request body not readable: {e}")}),
                    &[],
                )
            }
        };
        let path_and_query = parts
            .uri
            .path_and_query()
            .map(|p| p.as_str().to_owned())
            .unwrap_or_else(|| parts.uri.path().to_owned());
        let forwarded = forwarded_path(&parts.method, parts.uri.path(), &path_and_query);
        let answers = self
            .ask_all(&parts.method, &forwarded, &parts.headers, body)
            .await;
        let query = parts.uri.query().unwrap_or("");
        let (status, value, missing) = merge(&parts.method, parts.uri.path(), query, answers);
        respond(status, value, &missing)
    }

    async fn ask_all(
        &self,
        method: &Method,
        path_and_query: &str,
        headers: &HeaderMap,
        body: Bytes,
    ) -> Vec<PeerAnswer> {
        let mut tasks = tokio::task::JoinSet::new();
        for (i, peer) in self.urls.iter().enumerate() {
            let mut request = self
                .client
                .request(method.clone(), format!("{peer}{path_and_query}"))
                .body(body.clone());
            for name in [http::header::AUTHORIZATION, http::header::CONTENT_TYPE] {
                if let Some(v) = headers.get(&name) {
                    request = request.header(name, v.clone());
                }
            }
            let peer = peer.clone();
            tasks.spawn(async move {
                let result = async {
                    let resp = request.send().await.map_err(|e| e.to_string())?;
                    let status = resp.status();
                    let bytes = resp.bytes().await.map_err(|e| e.to_string())?;
                    if bytes.len() > MAX_BODY {
                        return Err(format!("answer larger than {MAX_BODY} bytes"));
                    }
                    Ok((status, bytes))
                }
                .await;
                (i, PeerAnswer { peer, result })
            });
        }
        let mut answers: Vec<(usize, PeerAnswer)> = Vec::with_capacity(self.urls.len());
        while let Some(done) = tasks.join_next().await {
            if let Ok(answer) = done {
                answers.push(answer);
            }
        }
        // Peer order, so that "the first node that has it" is stable.
        answers.sort_by_key(|(i, _)| *i);
        answers.into_iter().map(|(_, a)| a).collect()
    }
}

/// What a peer is asked: the caller's request, except that performance reports ask for
/// every row with its histogram so that the merge is exact (see [`merge_performance`]).
fn forwarded_path(method: &Method, path: &str, path_and_query: &str) -> String {
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let performance = matches!(
        segs.as_slice(),
        ["api", "0", "projects", _, _, "performance"]
    );
    if method == Method::GET && performance {
        let sep = if path_and_query.contains('?') {
            '&'
        } else {
            '?'
        };
        format!("{path_and_query}{sep}ospreyHistograms=1")
    } else {
        path_and_query.to_owned()
    }
}

fn respond(
    status: StatusCode,
    mut value: Value,
    missing: &[String],
) -> http::Response<Full<Bytes>> {
    let mut builder = http::Response::builder().status(status);
    if !missing.is_empty() {
        if let Some(obj) = value.as_object_mut() {
            obj.insert("ospreyPartial".into(), json!({"missing": missing}));
        }
        if let Ok(v) = HeaderValue::from_str(&missing.join(",")) {
            builder = builder.header(PARTIAL_HEADER, v);
        }
    }
    let body = if status == StatusCode::NO_CONTENT {
        Bytes::new()
    } else {
        builder = builder.header(http::header::CONTENT_TYPE, "application/json");
        Bytes::from(value.to_string())
    };
    builder
        .body(Full::new(body))
        .unwrap_or_else(|_| http::Response::new(Full::new(Bytes::new())))
}

/// Merges the peers' answers to one request: `(status, body, missing peers)`.
pub fn merge(
    method: &Method,
    path: &str,
    query: &str,
    answers: Vec<PeerAnswer>,
) -> (StatusCode, Value, Vec<String>) {
    let mut missing = Vec::new();
    let mut ok: Vec<Value> = Vec::new();
    let mut errors: Vec<(StatusCode, Value)> = Vec::new();
    for answer in answers {
        match answer.result {
            Err(e) => {
                tracing::warn!(peer = %answer.peer, error = %e, "peer did not answer");
                missing.push(answer.peer);
            }
            Ok((status, _)) if status.is_server_error() => missing.push(answer.peer),
            Ok((status, body)) => {
                let value = if body.is_empty() {
                    Value::Null
                } else {
                    serde_json::from_slice(&body).unwrap_or(Value::Null)
                };
                if status.is_success() {
                    ok.push(value);
                } else {
                    errors.push((status, value));
                }
            }
        }
    }
    if ok.is_empty() {
        // Auth and validation errors are the same on every node; a 404 only means "not
        // here" and loses to any more specific answer.
        errors.sort_by_key(|(s, _)| (*s == StatusCode::NOT_FOUND, s.as_u16()));
        return match errors.into_iter().next() {
            Some((status, value)) => (status, value, missing),
            None => (
                StatusCode::SERVICE_UNAVAILABLE,
                json!({"detail": "no processor node answered"}),
                missing,
            ),
        };
    }
    let params = crate::api::util::parse_query(query);
    let param = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let limit = param("limit")
        .or_else(|| param("per_page"))
        .and_then(|v| v.parse::<usize>().ok());
    let segs: Vec<&str> = path
        .trim_start_matches("/api/0")
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    let value = if *method != Method::GET {
        ok.swap_remove(0)
    } else {
        match segs.as_slice() {
            ["organizations", _, "issues"] | ["projects", _, _, "issues"] => {
                merge_issues(ok, param("sort").unwrap_or("date"), limit.unwrap_or(100))
            }
            ["organizations", _, "events"] => merge_discover(ok, param("sort"), limit),
            ["organizations", _, "events-stats"] => {
                let axes: Vec<&str> = params
                    .iter()
                    .filter(|(k, v)| k == "yAxis" && !v.trim().is_empty())
                    .map(|(_, v)| v.trim())
                    .collect();
                merge_events_stats(ok, &axes)
            }
            ["projects", _, _, "performance"] => {
                merge_performance(ok, param("sort"), param("asc"), limit)
            }
            ["organizations", _, "stats_v2"] => merge_outcome_stats(ok),
            ["organizations", _, "sessions"] => crate::sessions::merge_node_answers(ok),
            ["projects", _, _, "stats"] => merge_points(ok),
            ["projects", _, _, "user-feedback" | "user-reports" | "events"]
            | [.., "issues", _, "user-feedback" | "user-reports"] => {
                newest_first(merge_generic(ok), limit)
            }
            _ => merge_generic(ok),
        }
    };
    (StatusCode::OK, value, missing)
}

/// Performance reports ([`crate::perf::PerfReport`]) of several nodes. Peers are asked for
/// every row with its duration histogram ([`forwarded_path`]), so rows split over nodes (a
/// partition that moved) merge exactly: counts, statuses, apdex counters and sums add, and
/// the percentiles and max come from the summed histogram. Only the user counts of a split
/// row are approximate (sketch estimates added), named in `ospreyApproximate`; a peer that
/// sent no histograms (an older node) makes the percentiles count-weighted means, named there
/// too. The caller's sort and limit apply after the merge.
fn merge_performance(
    answers: Vec<Value>,
    sort: Option<&str>,
    asc: Option<&str>,
    limit: Option<usize>,
) -> Value {
    use crate::perf::{PerfReport, SortBy};
    let mut reports: Vec<PerfReport> = answers
        .into_iter()
        .filter_map(|v| serde_json::from_value(v).ok())
        .collect();
    if reports.is_empty() {
        return json!({"detail": "no node gave a performance report"});
    }
    // A node without any of the transactions still adds its error events (a project's
    // errors and transactions can sit on different nodes after a partition moved), so every
    // report is merged; the numbers of transactions are split only if two nodes have some.
    let split = reports.iter().filter(|r| r.total.count > 0).count() > 1;
    let mut merged = reports.swap_remove(0);
    let mut omitted = merged.groups_omitted;
    for other in reports {
        merged.total = merged_stats(&merged.total, &other.total);
        omitted += other.groups_omitted;
        for group in other.groups {
            match merged.groups.iter_mut().find(|g| g.key == group.key) {
                Some(mine) => mine.stats = merged_stats(&mine.stats, &group.stats),
                None => merged.groups.push(group),
            }
        }
        for point in other.series {
            match merged
                .series
                .iter_mut()
                .find(|p| p.start_ms == point.start_ms)
            {
                Some(mine) => mine.stats = merged_stats(&mine.stats, &point.stats),
                None => merged.series.push(point),
            }
        }
    }
    let exact_percentiles = std::iter::once(&merged.total)
        .chain(merged.groups.iter().map(|g| &g.stats))
        .chain(merged.series.iter().map(|p| &p.stats))
        .all(|s| s.count == 0 || s.histogram.is_some());
    let sort: SortBy = sort.and_then(|s| s.parse().ok()).unwrap_or_default();
    crate::perf::sort_groups(&mut merged.groups, sort, matches!(asc, Some("1" | "true")));
    let limit = limit.unwrap_or(20).max(1);
    omitted += merged.groups.len().saturating_sub(limit);
    merged.groups.truncate(limit);
    merged.groups_omitted = omitted;
    merged.series.sort_by_key(|p| p.start_ms);
    // The histograms were for merging; the caller gets the report it asked for.
    merged.total.histogram = None;
    for group in &mut merged.groups {
        group.stats.histogram = None;
    }
    for point in &mut merged.series {
        point.stats.histogram = None;
    }
    let mut value = serde_json::to_value(merged).unwrap_or(Value::Null);
    let mut approximate: Vec<&str> = Vec::new();
    if split && !exact_percentiles {
        approximate.extend(["p50_ms", "p75_ms", "p95_ms", "p99_ms", "max_ms"]);
    }
    if split {
        approximate.extend(["unique_users", "miserable_users", "user_misery"]);
    }
    if !approximate.is_empty() {
        value["ospreyApproximate"] = json!(approximate);
    }
    value
}

/// Two nodes' numbers for disjoint sets of transactions.
fn merged_stats(a: &crate::perf::PerfStats, b: &crate::perf::PerfStats) -> crate::perf::PerfStats {
    let n = a.count + b.count;
    let weighted = |x: Option<f64>, y: Option<f64>| match (x, y) {
        (Some(x), Some(y)) if n > 0 => Some((x * a.count as f64 + y * b.count as f64) / n as f64),
        (x, y) => x.or(y),
    };
    let add = |x: Option<u64>, y: Option<u64>| match (x, y) {
        (None, None) => None,
        (x, y) => Some(x.unwrap_or(0) + y.unwrap_or(0)),
    };
    let add_rate = |x: Option<f64>, y: Option<f64>| match (x, y) {
        (None, None) => None,
        (x, y) => Some(x.unwrap_or(0.0) + y.unwrap_or(0.0)),
    };
    if a.count == 0 || b.count == 0 {
        // One side has no transactions, only (perhaps) error events: the other side's
        // numbers stand, exactly, with both sides' error events.
        let (none, some) = if a.count == 0 { (a, b) } else { (b, a) };
        let mut merged = some.clone();
        merged.error_events = add(some.error_events, none.error_events);
        merged.epm = add_rate(some.epm, none.epm);
        return merged;
    }
    let mut statuses = a.statuses.clone();
    for (name, count) in &b.statuses {
        *statuses.entry(name.clone()).or_default() += count;
    }
    let failures = a.failures + b.failures;
    let (satisfied, tolerated) = (a.satisfied + b.satisfied, a.tolerated + b.tolerated);
    let unique_users = add(a.unique_users, b.unique_users);
    let miserable_users = add(a.miserable_users, b.miserable_users);
    let mut merged = crate::perf::PerfStats {
        count: n,
        tpm: a.tpm + b.tpm,
        tps: a.tps + b.tps,
        avg_ms: weighted(a.avg_ms, b.avg_ms),
        p50_ms: weighted(a.p50_ms, b.p50_ms),
        p75_ms: weighted(a.p75_ms, b.p75_ms),
        p95_ms: weighted(a.p95_ms, b.p95_ms),
        p99_ms: weighted(a.p99_ms, b.p99_ms),
        max_ms: match (a.max_ms, b.max_ms) {
            (Some(x), Some(y)) => Some(x.max(y)),
            (x, y) => x.or(y),
        },
        apdex: (n > 0).then(|| (satisfied as f64 + tolerated as f64 / 2.0) / n as f64),
        apdex_exact: a.apdex_exact && b.apdex_exact,
        apdex_threshold_ms: if a.apdex_threshold_ms == b.apdex_threshold_ms {
            a.apdex_threshold_ms
        } else {
            None
        },
        satisfied,
        tolerated,
        failures,
        failure_rate: (n > 0).then(|| failures as f64 / n as f64),
        error_events: add(a.error_events, b.error_events),
        epm: add_rate(a.epm, b.epm),
        statuses,
        unique_users,
        miserable_users,
        user_misery: unique_users
            .zip(miserable_users)
            .map(|(u, m)| crate::perf::users::user_misery(m, u)),
        histogram: None,
    };
    if let (Some(ha), Some(hb)) = (&a.histogram, &b.histogram) {
        merged.set_histogram(crate::perf::add_sparse(ha, hb));
    }
    merged
}

/// Union of lists by `id` (first node wins); else the first node's object.
/// Project stats (`[[unix_seconds, count], …]`) of several nodes: counts at the same time add.
fn merge_points(answers: Vec<Value>) -> Value {
    let mut sums: BTreeMap<i64, i64> = BTreeMap::new();
    for point in answers.iter().filter_map(Value::as_array).flatten() {
        if let (Some(t), Some(n)) = (point[0].as_i64(), point[1].as_i64()) {
            *sums.entry(t).or_insert(0) += n;
        }
    }
    json!(sums
        .into_iter()
        .map(|(t, n)| json!([t, n]))
        .collect::<Vec<_>>())
}

/// Sums by field name (`sum(quantity)` → a total or a series).
type StatsSums = Map<String, Value>;

/// The `intervals` of several nodes' answers as one sorted list without repeats (ISO
/// strings sort as times): nodes resolve a relative range at slightly different instants.
pub(crate) fn union_of_intervals(answers: &[Value]) -> Vec<String> {
    let mut intervals: Vec<String> = answers
        .iter()
        .flat_map(|a| a["intervals"].as_array().cloned().unwrap_or_default())
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect();
    intervals.sort();
    intervals.dedup();
    intervals
}

/// Org stats (`/organizations/{org}/stats_v2/`) of several nodes: each node counted the
/// outcomes of the records it processed, so the same group's totals and per-interval values
/// add. Nodes resolve a relative range at slightly different instants; the series are
/// aligned on the union of the intervals (ISO strings sort as times).
fn merge_outcome_stats(answers: Vec<Value>) -> Value {
    let intervals = union_of_intervals(&answers);
    let has_series = answers.iter().any(|a| a.get("intervals").is_some());
    let mut start: Option<String> = None;
    let mut end: Option<String> = None;
    // Groups in first-seen order, keyed by their `by`.
    let mut groups: Vec<(Value, StatsSums, StatsSums)> = Vec::new();
    for answer in &answers {
        if let Some(s) = answer["start"].as_str() {
            if start.as_deref().is_none_or(|cur| s < cur) {
                start = Some(s.to_owned());
            }
        }
        if let Some(e) = answer["end"].as_str() {
            if end.as_deref().is_none_or(|cur| e > cur) {
                end = Some(e.to_owned());
            }
        }
        let own: Vec<usize> = answer["intervals"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|v| {
                let t = v.as_str().unwrap_or_default();
                intervals
                    .binary_search_by(|x| x.as_str().cmp(t))
                    .unwrap_or(0)
            })
            .collect();
        for g in answer["groups"].as_array().into_iter().flatten() {
            let by = g["by"].clone();
            let idx = match groups.iter().position(|(b, _, _)| *b == by) {
                Some(i) => i,
                None => {
                    groups.push((by, Map::new(), Map::new()));
                    groups.len() - 1
                }
            };
            let (_, totals, series) = &mut groups[idx];
            for (field, v) in g["totals"].as_object().into_iter().flatten() {
                let sum = totals.get(field).and_then(Value::as_i64).unwrap_or(0)
                    + v.as_i64().unwrap_or(0);
                totals.insert(field.clone(), json!(sum));
            }
            for (field, values) in g["series"].as_object().into_iter().flatten() {
                let slot = series
                    .entry(field.clone())
                    .or_insert_with(|| json!(vec![0i64; intervals.len()]));
                for (i, v) in values.as_array().into_iter().flatten().enumerate() {
                    let Some(&at) = own.get(i) else { break };
                    if let Some(cell) = slot.get_mut(at) {
                        *cell = json!(cell.as_i64().unwrap_or(0) + v.as_i64().unwrap_or(0));
                    }
                }
            }
        }
    }
    let groups: Vec<Value> = groups
        .into_iter()
        .map(|(by, totals, series)| {
            let mut g = json!({"by": by, "totals": totals});
            if has_series {
                g["series"] = Value::Object(series);
            }
            g
        })
        .collect();
    let mut out = json!({"start": start, "end": end, "groups": groups});
    if has_series {
        out["intervals"] = json!(intervals);
    }
    out
}

/// A list of objects with `dateCreated` (user feedback), newest first, cut at `limit`.
fn newest_first(list: Value, limit: Option<usize>) -> Value {
    let Value::Array(mut items) = list else {
        return list;
    };
    // ISO 8601 times written alike sort as text.
    let created = |v: &Value| v["dateCreated"].as_str().unwrap_or("").to_owned();
    items.sort_by_key(|v| std::cmp::Reverse(created(v)));
    items.truncate(limit.unwrap_or(100));
    Value::Array(items)
}

fn merge_generic(mut answers: Vec<Value>) -> Value {
    if answers.iter().all(Value::is_array) {
        let mut seen = std::collections::HashSet::new();
        let mut out = Vec::new();
        for item in answers.into_iter().flat_map(|a| match a {
            Value::Array(items) => items,
            _ => Vec::new(),
        }) {
            let key = item
                .get("id")
                .map(Value::to_string)
                .unwrap_or_else(|| item.to_string());
            if seen.insert(key) {
                out.push(item);
            }
        }
        return Value::Array(out);
    }
    answers.swap_remove(0)
}

fn num(v: Option<&Value>) -> f64 {
    match v {
        Some(Value::Number(n)) => n.as_f64().unwrap_or(0.0),
        Some(Value::String(s)) => s.parse().unwrap_or(0.0),
        _ => 0.0,
    }
}

/// Issues from every node, the same group merged, sorted by `sort`, cut at `limit`.
fn merge_issues(answers: Vec<Value>, sort: &str, limit: usize) -> Value {
    let mut merged: Vec<Value> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    for issue in answers.into_iter().flat_map(|a| match a {
        Value::Array(items) => items,
        _ => Vec::new(),
    }) {
        let key = format!(
            "{}/{}",
            issue["project"]["id"],
            issue
                .get("ospreyHash")
                .and_then(Value::as_str)
                .map(str::to_owned)
                .unwrap_or_else(|| format!("id:{}", issue["id"]))
        );
        match index.get(&key) {
            None => {
                index.insert(key, merged.len());
                merged.push(issue);
            }
            Some(&i) => merge_issue(&mut merged[i], &issue),
        }
    }
    let text = |v: &Value, f: &str| v.get(f).and_then(Value::as_str).unwrap_or("").to_owned();
    merged.sort_by(|a, b| {
        let order = match sort {
            "new" => text(b, "firstSeen").cmp(&text(a, "firstSeen")),
            "freq" => num(b.get("count"))
                .partial_cmp(&num(a.get("count")))
                .unwrap_or(Ordering::Equal),
            "user" => num(b.get("userCount"))
                .partial_cmp(&num(a.get("userCount")))
                .unwrap_or(Ordering::Equal),
            _ => text(b, "lastSeen").cmp(&text(a, "lastSeen")),
        };
        order.then_with(|| text(a, "id").cmp(&text(b, "id")))
    });
    merged.truncate(limit.max(1));
    Value::Array(merged)
}

/// Folds `other` (the same issue on another node) into `into`.
fn merge_issue(into: &mut Value, other: &Value) {
    let count = num(into.get("count")) + num(other.get("count"));
    // Users are counted per node: a user seen by two nodes counts twice (an upper bound).
    let users = num(into.get("userCount")) + num(other.get("userCount"));
    let (a_first, b_first) = (into["firstSeen"].clone(), other["firstSeen"].clone());
    let (a_last, b_last) = (into["lastSeen"].clone(), other["lastSeen"].clone());
    let later = b_last.as_str().unwrap_or("") > a_last.as_str().unwrap_or("");
    if later {
        // The node that saw the issue last has its current title, level and status.
        let keep_id = into["id"].clone();
        let keep_short = into["shortId"].clone();
        *into = other.clone();
        into["id"] = keep_id;
        into["shortId"] = keep_short;
    }
    into["count"] = json!((count as u64).to_string());
    into["userCount"] = json!(users as u64);
    into["firstSeen"] = if b_first.as_str().unwrap_or("~") < a_first.as_str().unwrap_or("~") {
        b_first
    } else {
        a_first
    };
    into["lastSeen"] = if later { b_last } else { a_last };
}

/// How a Discover aggregate merges across nodes.
enum Fold {
    Add,
    Min,
    Max,
    /// Exact only when one node has the row.
    Weighted,
}

fn fold_of(field: &str) -> Option<Fold> {
    let name = field.split('(').next()?;
    if !field.contains('(') {
        return None;
    }
    Some(match name {
        "count" | "count_if" | "sum" | "failure_count" | "epm" | "eps" | "count_miserable" => {
            Fold::Add
        }
        "min" => Fold::Min,
        "max" => Fold::Max,
        _ => Fold::Weighted,
    })
}

/// `events-stats` answers of several nodes: per series (one, or one per `yAxis`), the points
/// of each interval fold like Discover's aggregates ([`fold_of`]); an interval where more
/// than one node has a non-zero value of a non-additive aggregate (a percentile, a rate)
/// gets the mean of those values and the series is named in `ospreyApproximate`.
fn merge_events_stats(answers: Vec<Value>, axes: &[&str]) -> Value {
    fn points(series: &Value) -> Vec<(u64, f64)> {
        series["data"]
            .as_array()
            .map(|data| {
                data.iter()
                    .filter_map(|p| Some((p[0].as_u64()?, p[1][0]["count"].as_f64()?)))
                    .collect()
            })
            .unwrap_or_default()
    }
    let single = answers.iter().any(|a| a.get("data").is_some());
    let names: Vec<String> = if single {
        vec![axes.first().copied().unwrap_or("count()").to_owned()]
    } else {
        let mut names: Vec<String> = answers
            .iter()
            .filter_map(Value::as_object)
            .flat_map(|o| o.keys().cloned())
            .collect();
        names.sort();
        names.dedup();
        names
    };
    let mut approximate = Vec::new();
    let mut merged_series = Map::new();
    for name in &names {
        let parts: Vec<&Value> = answers
            .iter()
            .map(|a| if single { a } else { &a[name.as_str()] })
            .filter(|s| s.get("data").is_some())
            .collect();
        let Some(template) = parts.first() else {
            continue;
        };
        let mut by_time: BTreeMap<u64, Vec<f64>> = BTreeMap::new();
        for part in &parts {
            for (t, v) in points(part) {
                by_time.entry(t).or_default().push(v);
            }
        }
        let fold = fold_of(name).unwrap_or(Fold::Weighted);
        let data: Vec<Value> = by_time
            .into_iter()
            .map(|(t, values)| {
                let nonzero: Vec<f64> = values.iter().copied().filter(|v| *v != 0.0).collect();
                let value = match fold {
                    Fold::Add => values.iter().sum(),
                    _ if nonzero.len() <= 1 => nonzero.first().copied().unwrap_or(0.0),
                    Fold::Min => nonzero.iter().copied().fold(f64::INFINITY, f64::min),
                    Fold::Max => nonzero.iter().copied().fold(f64::NEG_INFINITY, f64::max),
                    Fold::Weighted => {
                        if !approximate.contains(name) {
                            approximate.push(name.clone());
                        }
                        nonzero.iter().sum::<f64>() / nonzero.len() as f64
                    }
                };
                json!([t, [{"count": value}]])
            })
            .collect();
        let mut series = (*template).clone();
        series["data"] = Value::Array(data);
        series["start"] = parts
            .iter()
            .filter_map(|p| p["start"].as_u64())
            .min()
            .into();
        series["end"] = parts.iter().filter_map(|p| p["end"].as_u64()).max().into();
        merged_series.insert(name.clone(), series);
    }
    let mut out = if single {
        merged_series
            .into_iter()
            .next()
            .map(|(_, v)| v)
            .unwrap_or(Value::Null)
    } else {
        Value::Object(merged_series)
    };
    if !approximate.is_empty() && out.is_object() {
        out["ospreyApproximate"] = json!(approximate);
    }
    out
}

/// Discover answers merged by their non-aggregate fields.
fn merge_discover(mut answers: Vec<Value>, sort: Option<&str>, limit: Option<usize>) -> Value {
    let mut first = answers.swap_remove(0);
    let mut rows: Vec<(Map<String, Value>, f64)> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    let mut approximate: Vec<String> = Vec::new();
    let all = std::iter::once(&first).chain(answers.iter());
    for answer in all {
        let Some(data) = answer.get("data").and_then(Value::as_array) else {
            continue;
        };
        for row in data {
            let Some(row) = row.as_object() else { continue };
            let key: Vec<(&String, &Value)> =
                row.iter().filter(|(f, _)| fold_of(f).is_none()).collect();
            let key = serde_json::to_string(&key).unwrap_or_default();
            let weight = num(row.get("count()")).max(1.0);
            match index.get(&key) {
                None => {
                    index.insert(key, rows.len());
                    rows.push((row.clone(), weight));
                }
                Some(&i) => {
                    let (into, into_weight) = &mut rows[i];
                    for (field, value) in row {
                        let Some(fold) = fold_of(field) else { continue };
                        let (a, b) = (num(into.get(field)), num(Some(value)));
                        let merged = match fold {
                            Fold::Add => a + b,
                            Fold::Min => a.min(b),
                            Fold::Max => a.max(b),
                            Fold::Weighted => {
                                if !approximate.contains(field) {
                                    approximate.push(field.clone());
                                }
                                (a * *into_weight + b * weight) / (*into_weight + weight)
                            }
                        };
                        into.insert(field.clone(), json!(merged));
                    }
                    *into_weight += weight;
                }
            }
        }
    }
    let mut rows: Vec<Map<String, Value>> = rows.into_iter().map(|(r, _)| r).collect();
    if let Some(sort) = sort {
        let (desc, field) = match sort.strip_prefix('-') {
            Some(f) => (true, f),
            None => (false, sort),
        };
        rows.sort_by(|a, b| {
            let order = match (a.get(field), b.get(field)) {
                (Some(Value::String(x)), Some(Value::String(y))) => x.cmp(y),
                (x, y) => num(x).partial_cmp(&num(y)).unwrap_or(Ordering::Equal),
            };
            if desc {
                order.reverse()
            } else {
                order
            }
        });
    }
    if let Some(limit) = limit {
        rows.truncate(limit.max(1));
    }
    first["data"] = Value::Array(rows.into_iter().map(Value::Object).collect());
    if !approximate.is_empty() {
        first["meta"]["ospreyApproximate"] = json!(approximate);
    }
    first
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(peer: &str, body: Value) -> PeerAnswer {
        PeerAnswer {
            peer: peer.into(),
            result: Ok((StatusCode::OK, Bytes::from(body.to_string()))),
        }
    }

    fn issue(id: &str, hash: &str, count: u64, first: &str, last: &str) -> Value {
        json!({"id": id, "shortId": format!("P-{id}"), "ospreyHash": hash, "project": {"id": "1"},
               "count": count.to_string(), "userCount": 1, "firstSeen": first, "lastSeen": last,
               "title": format!("t{id}")})
    }

    #[test]
    fn user_feedback_of_two_nodes_is_one_newest_first_page() {
        let a = json!([{"id": "a2", "dateCreated": "2026-01-01T00:00:02Z"},
                       {"id": "a1", "dateCreated": "2026-01-01T00:00:01Z"}]);
        let b = json!([{"id": "b3", "dateCreated": "2026-01-01T00:00:03Z"}]);
        let merged = newest_first(merge_generic(vec![a, b]), Some(2));
        assert_eq!(
            merged,
            json!([{"id": "b3", "dateCreated": "2026-01-01T00:00:03Z"},
                   {"id": "a2", "dateCreated": "2026-01-01T00:00:02Z"}])
        );
    }

    #[test]
    fn events_stats_of_two_nodes_add_counts_per_interval() {
        let point = |t: u64, v: f64| json!([t, [{"count": v}]]);
        let a = json!({"count()": {"data": [point(3600, 2.0), point(7200, 0.0)], "start": 3600, "end": 7300, "order": 0},
                       "p95(transaction.duration)": {"data": [point(3600, 120.0), point(7200, 0.0)], "start": 3600, "end": 7300, "order": 1}});
        let b = json!({"count()": {"data": [point(7200, 5.0), point(10800, 1.0)], "start": 7200, "end": 10900, "order": 0},
                       "p95(transaction.duration)": {"data": [point(7200, 80.0), point(10800, 40.0)], "start": 7200, "end": 10900, "order": 1}});
        let (status, merged, _) = merge(
            &Method::GET,
            "/api/0/organizations/default/events-stats/",
            "yAxis=count()&yAxis=p95(transaction.duration)",
            vec![ok("a", a), ok("b", b)],
        );
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            merged["count()"]["data"],
            json!([point(3600, 2.0), point(7200, 5.0), point(10800, 1.0)])
        );
        assert_eq!(merged["count()"]["start"], 3600);
        assert_eq!(merged["count()"]["end"], 10900);
        assert_eq!(merged["count()"]["order"], 0);
        // Each interval's p95 from the one node that had transactions then: exact.
        assert_eq!(
            merged["p95(transaction.duration)"]["data"],
            json!([point(3600, 120.0), point(7200, 80.0), point(10800, 40.0)])
        );
        assert!(merged.get("ospreyApproximate").is_none(), "{merged}");
        // One series, the same fold.
        let one = |v: f64| json!({"data": [point(3600, v)], "start": 3600, "end": 3700});
        let (_, merged, _) = merge(
            &Method::GET,
            "/api/0/organizations/default/events-stats/",
            "",
            vec![ok("a", one(2.0)), ok("b", one(3.0))],
        );
        assert_eq!(merged["data"], json!([point(3600, 5.0)]));
    }

    #[test]
    fn project_events_of_two_nodes_are_one_newest_first_page() {
        let a = json!([{"id": "a1", "dateCreated": "2026-01-01T00:00:01Z"}]);
        let b = json!([{"id": "b3", "dateCreated": "2026-01-01T00:00:03Z"},
                       {"id": "b2", "dateCreated": "2026-01-01T00:00:02Z"}]);
        let (status, merged, _) = merge(
            &Method::GET,
            "/api/0/projects/default/default/events/",
            "per_page=2",
            vec![ok("a", a), ok("b", b)],
        );
        assert_eq!(status, StatusCode::OK);
        let ids: Vec<&str> = merged
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["id"].as_str().unwrap())
            .collect();
        assert_eq!(ids, ["b3", "b2"]);
    }

    #[test]
    fn org_stats_of_two_nodes_add_per_group_and_interval() {
        let a = json!({
            "start": "2026-01-01T00:00:00Z", "end": "2026-01-01T02:00:00Z",
            "intervals": ["2026-01-01T00:00:00Z", "2026-01-01T01:00:00Z"],
            "groups": [
                {"by": {"outcome": "accepted"}, "totals": {"sum(quantity)": 5},
                 "series": {"sum(quantity)": [2, 3]}},
                {"by": {"outcome": "invalid"}, "totals": {"sum(quantity)": 1},
                 "series": {"sum(quantity)": [0, 1]}}
            ]
        });
        // The other node resolved "now" an hour later.
        let b = json!({
            "start": "2026-01-01T01:00:00Z", "end": "2026-01-01T03:00:00Z",
            "intervals": ["2026-01-01T01:00:00Z", "2026-01-01T02:00:00Z"],
            "groups": [
                {"by": {"outcome": "accepted"}, "totals": {"sum(quantity)": 10},
                 "series": {"sum(quantity)": [4, 6]}},
                {"by": {"outcome": "filtered"}, "totals": {"sum(quantity)": 7},
                 "series": {"sum(quantity)": [7, 0]}}
            ]
        });
        let path = "/api/0/organizations/default/stats_v2/";
        let (status, merged, missing) = merge(
            &Method::GET,
            path,
            "field=sum(quantity)&groupBy=outcome&category=error",
            vec![ok("a", a), ok("b", b)],
        );
        assert_eq!(status, StatusCode::OK);
        assert!(missing.is_empty());
        assert_eq!(merged["start"], "2026-01-01T00:00:00Z");
        assert_eq!(merged["end"], "2026-01-01T03:00:00Z");
        assert_eq!(merged["intervals"].as_array().map(Vec::len), Some(3));
        let groups = merged["groups"].as_array().unwrap();
        assert_eq!(groups.len(), 3);
        assert_eq!(groups[0]["by"], json!({"outcome": "accepted"}));
        assert_eq!(groups[0]["totals"]["sum(quantity)"], 15);
        assert_eq!(groups[0]["series"]["sum(quantity)"], json!([2, 7, 6]));
        assert_eq!(groups[1]["series"]["sum(quantity)"], json!([0, 1, 0]));
        assert_eq!(groups[2]["by"], json!({"outcome": "filtered"}));
        assert_eq!(groups[2]["series"]["sum(quantity)"], json!([0, 7, 0]));
        let (_, points, _) = merge(
            &Method::GET,
            "/api/0/projects/default/web/stats/",
            "stat=received",
            vec![
                ok("a", json!([[3600, 1], [7200, 2]])),
                ok("b", json!([[7200, 5], [10800, 1]])),
            ],
        );
        assert_eq!(points, json!([[3600, 1], [7200, 7], [10800, 1]]));
        // Totals only (grouped by project): no series appear.
        let p = |n: i64| json!({"start": "s", "end": "e", "groups": [{"by": {"project": 1}, "totals": {"sum(quantity)": n}}]});
        let (_, merged, _) = merge(&Method::GET, path, "", vec![ok("a", p(2)), ok("b", p(3))]);
        assert_eq!(
            merged["groups"],
            json!([{"by": {"project": 1}, "totals": {"sum(quantity)": 5}}])
        );
        assert!(merged.get("intervals").is_none());
    }

    #[test]
    fn the_same_issue_on_two_nodes_merges_and_lists_merge_sort() {
        let a = json!([
            issue("1", "h1", 5, "2024-01-01T00:00:00Z", "2024-01-03T00:00:00Z"),
            issue("2", "h2", 1, "2024-01-01T00:00:00Z", "2024-01-01T00:00:00Z")
        ]);
        let b = json!([
            issue("1", "h1", 7, "2024-01-02T00:00:00Z", "2024-01-05T00:00:00Z"),
            issue(
                "9",
                "h3",
                10,
                "2024-01-04T00:00:00Z",
                "2024-01-04T00:00:00Z"
            )
        ]);
        let (status, v, missing) = merge(
            &Method::GET,
            "/api/0/projects/o/p/issues/",
            "sort=freq",
            vec![ok("a", a.clone()), ok("b", b.clone())],
        );
        assert_eq!(status, StatusCode::OK);
        assert!(missing.is_empty());
        let counts: Vec<&str> = v
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["count"].as_str().unwrap())
            .collect();
        assert_eq!(counts, ["12", "10", "1"]);
        let merged = &v[0];
        assert_eq!(merged["firstSeen"], "2024-01-01T00:00:00Z");
        assert_eq!(merged["lastSeen"], "2024-01-05T00:00:00Z");
        // By date (last seen) and cut at the limit.
        let (_, v, _) = merge(
            &Method::GET,
            "/api/0/organizations/o/issues/",
            "limit=2",
            vec![ok("a", a), ok("b", b)],
        );
        let ids: Vec<&str> = v
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["ospreyHash"].as_str().unwrap())
            .collect();
        assert_eq!(ids, ["h1", "h3"]);
    }

    #[test]
    fn a_dead_peer_makes_the_answer_partial_not_failed() {
        let dead = PeerAnswer {
            peer: "http://dead".into(),
            result: Err("connection refused".into()),
        };
        let (status, v, missing) = merge(
            &Method::GET,
            "/api/0/organizations/o/events/",
            "",
            vec![
                dead.clone(),
                ok(
                    "a",
                    json!({"data": [{"transaction": "/x", "count()": 3}], "meta": {}}),
                ),
            ],
        );
        assert_eq!(status, StatusCode::OK);
        assert_eq!(missing, ["http://dead"]);
        assert_eq!(v["data"][0]["count()"], 3);
        let (status, _, _) = merge(
            &Method::GET,
            "/api/0/organizations/o/events/",
            "",
            vec![dead],
        );
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    }

    #[test]
    fn discover_rows_add_counts_and_flag_split_percentiles() {
        let a = json!({"data": [{"transaction": "/x", "count()": 3, "p95(transaction.duration)": 100.0, "max(transaction.duration)": 120.0},
                                {"transaction": "/y", "count()": 1, "p95(transaction.duration)": 7.0, "max(transaction.duration)": 7.0}], "meta": {}});
        let b = json!({"data": [{"transaction": "/x", "count()": 1, "p95(transaction.duration)": 200.0, "max(transaction.duration)": 210.0}], "meta": {}});
        let (_, v, _) = merge(
            &Method::GET,
            "/api/0/organizations/o/events/",
            "sort=-count()",
            vec![ok("a", a), ok("b", b)],
        );
        let x = &v["data"][0];
        assert_eq!(x["transaction"], "/x");
        assert_eq!(x["count()"], 4.0);
        assert_eq!(x["max(transaction.duration)"], 210.0);
        assert_eq!(x["p95(transaction.duration)"], 125.0);
        assert_eq!(v["data"][1]["p95(transaction.duration)"], 7.0);
        assert_eq!(
            v["meta"]["ospreyApproximate"],
            json!(["p95(transaction.duration)"])
        );
    }

    fn perf_report(
        count: u64,
        satisfied: u64,
        failures: u64,
        p95: f64,
        groups: &[(&str, u64)],
    ) -> Value {
        let stats = |count: u64| crate::perf::PerfStats {
            count,
            tpm: count as f64 / 60.0,
            avg_ms: (count > 0).then_some(p95 / 2.0),
            p95_ms: (count > 0).then_some(p95),
            max_ms: (count > 0).then_some(p95 * 2.0),
            satisfied: satisfied.min(count),
            failures: failures.min(count),
            apdex: (count > 0).then(|| satisfied.min(count) as f64 / count as f64),
            failure_rate: (count > 0).then(|| failures.min(count) as f64 / count as f64),
            apdex_exact: true,
            ..Default::default()
        };
        serde_json::to_value(crate::perf::PerfReport {
            project_id: 1,
            start_ms: 0,
            end_ms: 3_600_000,
            total: stats(count),
            groups: groups
                .iter()
                .map(|(k, c)| crate::perf::PerfGroup {
                    key: (*k).into(),
                    stats: stats(*c),
                })
                .collect(),
            groups_omitted: 0,
            series: Vec::new(),
        })
        .unwrap()
    }

    #[test]
    fn performance_is_exact_from_one_node_and_adds_counters_across_nodes() {
        // Only one node holds transactions: its report is the answer, unchanged.
        let full = perf_report(10, 5, 2, 300.0, &[("/a", 10)]);
        let (_, v, _) = merge(
            &Method::GET,
            "/api/0/projects/o/p/performance/",
            "by=transaction",
            vec![
                ok("a", perf_report(0, 0, 0, 0.0, &[])),
                ok("b", full.clone()),
            ],
        );
        assert_eq!(v, full);
        // Split over two nodes: counts, apdex and failure rate exact; percentiles flagged.
        let (_, v, _) = merge(
            &Method::GET,
            "/api/0/projects/o/p/performance/",
            "by=transaction&sort=count",
            vec![
                ok("a", perf_report(10, 10, 0, 100.0, &[("/a", 10)])),
                ok("b", perf_report(30, 0, 3, 500.0, &[("/a", 20), ("/b", 10)])),
            ],
        );
        assert_eq!(v["total"]["count"], 40);
        assert_eq!(v["total"]["apdex"], 0.25);
        assert_eq!(v["total"]["failure_rate"], 0.075);
        assert_eq!(v["total"]["p95_ms"], 400.0);
        assert_eq!(v["total"]["max_ms"], 1000.0);
        assert_eq!(v["groups"][0]["key"], "/a");
        assert_eq!(v["groups"][0]["stats"]["count"], 30);
        assert_eq!(v["groups"][1]["key"], "/b");
        assert!(v["ospreyApproximate"]
            .as_array()
            .unwrap()
            .contains(&json!("p95_ms")));
    }

    #[test]
    fn a_node_with_only_error_events_adds_them_to_the_performance_report() {
        // The project's transactions were processed by node a; one of its errors by node b
        // (its partition moved): the report keeps a's numbers and counts both nodes' errors.
        let report = |count: u64, errors: u64, p95: Option<f64>| {
            let stats = crate::perf::PerfStats {
                count,
                p95_ms: p95,
                apdex: (count > 0).then_some(0.5),
                apdex_exact: true,
                apdex_threshold_ms: (count > 0).then_some(300),
                error_events: Some(errors),
                epm: Some(errors as f64 / 60.0),
                ..Default::default()
            };
            serde_json::to_value(crate::perf::PerfReport {
                project_id: 1,
                start_ms: 0,
                end_ms: 3_600_000,
                total: stats,
                groups: Vec::new(),
                groups_omitted: 0,
                series: Vec::new(),
            })
            .unwrap()
        };
        let (_, v, _) = merge(
            &Method::GET,
            "/api/0/projects/o/p/performance/",
            "",
            vec![
                ok("b", report(0, 1, None)),
                ok("a", report(90, 24, Some(250.0))),
            ],
        );
        let total = &v["total"];
        assert_eq!(total["count"], 90, "{v}");
        assert_eq!(total["error_events"], 25, "{v}");
        assert_eq!(total["p95_ms"], 250.0);
        assert_eq!(total["apdex_threshold_ms"], 300);
        assert_eq!(total["apdex_exact"], true);
        assert!(v.get("ospreyApproximate").is_none(), "{v}");
    }

    #[test]
    fn split_performance_rows_merge_their_histograms_exactly() {
        use storage::hist;
        // Node a processed 100 transactions of 1..=100 ms, node b 200 of 101..=300 ms.
        let sparse = |ms: std::ops::RangeInclusive<u64>| {
            let mut pairs: Vec<(u32, u64)> = Vec::new();
            for v in ms {
                let i = hist::index_of(v * 1000);
                match pairs.last_mut() {
                    Some((last, c)) if *last == i => *c += 1,
                    _ => pairs.push((i, 1)),
                }
            }
            pairs
        };
        let node = |count: u64, ms: std::ops::RangeInclusive<u64>| {
            let mut stats = crate::perf::PerfStats {
                count,
                ..Default::default()
            };
            stats.set_histogram(sparse(ms));
            let mut report = crate::perf::PerfReport {
                project_id: 1,
                start_ms: 0,
                end_ms: 3_600_000,
                total: stats.clone(),
                groups: vec![crate::perf::PerfGroup {
                    key: "/checkout".into(),
                    stats,
                }],
                groups_omitted: 0,
                series: Vec::new(),
            };
            report.groups[0].stats.count = count;
            serde_json::to_value(report).unwrap()
        };
        let (_, v, _) = merge(
            &Method::GET,
            "/api/0/projects/o/p/performance/",
            "by=transaction",
            vec![ok("a", node(100, 1..=100)), ok("b", node(200, 101..=300))],
        );
        // Nearest rank over all 300: p95 is the 285th value (285 ms), p50 the 150th, max 300,
        // each reported as the top of its histogram bucket.
        let top = |ms: u64| hist::highest_equivalent(hist::index_of(ms * 1000)) as f64 / 1000.0;
        for row in [&v["total"], &v["groups"][0]["stats"]] {
            assert_eq!(row["count"], 300);
            assert_eq!(row["p95_ms"], top(285), "{row}");
            assert_eq!(row["p50_ms"], top(150), "{row}");
            assert_eq!(row["max_ms"], top(300), "{row}");
            assert!(
                row.get("ospreyHistogram").is_none(),
                "histograms are not passed on"
            );
        }
        let approximate = v["ospreyApproximate"].as_array().unwrap();
        assert!(!approximate.contains(&json!("p95_ms")), "{approximate:?}");
        // The count-weighted mean of the two nodes' p95s (95 and 290 ms) would say 225 ms.
        assert!(v["total"]["p95_ms"].as_f64().unwrap() > 280.0);
    }

    #[test]
    fn performance_requests_ask_peers_for_histograms() {
        assert_eq!(
            forwarded_path(
                &Method::GET,
                "/api/0/projects/o/p/performance/",
                "/api/0/projects/o/p/performance/?by=transaction"
            ),
            "/api/0/projects/o/p/performance/?by=transaction&ospreyHistograms=1"
        );
        assert_eq!(
            forwarded_path(
                &Method::GET,
                "/api/0/projects/o/p/performance/",
                "/api/0/projects/o/p/performance/"
            ),
            "/api/0/projects/o/p/performance/?ospreyHistograms=1"
        );
        assert_eq!(
            forwarded_path(
                &Method::GET,
                "/api/0/organizations/o/issues/",
                "/api/0/organizations/o/issues/?limit=5"
            ),
            "/api/0/organizations/o/issues/?limit=5"
        );
    }

    #[test]
    fn errors_prefer_the_specific_one_and_urls_are_checked() {
        let e = |s: StatusCode| PeerAnswer {
            peer: "p".into(),
            result: Ok((s, Bytes::from_static(b"{\"detail\":\"x\"}"))),
        };
        let (status, _, _) = merge(
            &Method::GET,
            "/api/0/issues/1/",
            "",
            vec![e(StatusCode::NOT_FOUND), e(StatusCode::UNAUTHORIZED)],
        );
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert!(Peers::new(&["10.0.0.1:9000".into()], Duration::from_secs(1)).is_err());
    }
}
