//! MCP on a query node (`serve --role query --peers …`): each tool call goes to every
//! processor node's `/mcp` and the answers merge into the one an embedded server would give.
//!
//! A query node has the shared metadata (projects, tokens, alert rules) but no events, so:
//! - `configure_alert` and `capture_event` run locally (the rule goes through the shared
//!   metadata topic; the event through this node's Kafka producer);
//! - every other tool is asked of every peer with the caller's token and the
//!   [`FANOUT_HEADER`], which makes peers add what merging needs: grouping hashes on issues
//!   (`ospreyHash`), the event time on `search_events` rows ([`ROW_TIME`]) and the raw events
//!   of a trace (`ospreyEvents`). These never reach the caller.
//!
//! How answers merge. A project's records normally sit on one node (its Kafka partition's
//! owner), and issue ids are unique across nodes (each processor node numbers issues in its
//! own block, storage's `claim_issue_id_floor`), so most answers come whole from one node:
//! - counts add (events, issues, transactions, unresolved issues, fired alerts);
//! - the same issue held by several nodes (its partition moved) is one issue: counts add,
//!   first seen is the earliest, last seen the latest;
//! - lists are merged and cut again by the tool's own order and limit;
//! - performance rows held by one node are taken whole; a row split over nodes gets summed
//!   counts, count-weighted rates (exact: apdex, failure and error rates are ratios over the
//!   count) and count-weighted percentiles, which are approximate and named in
//!   `ospreyApproximate`, as are summed distinct-user counts;
//! - a trace's span tree is built here from every node's events;
//! - single objects (an event, an issue's details) come from the node that has them.
//!
//! A peer that does not answer does not fail the call: the answer covers the live nodes and
//! carries `ospreyPartial: {"missing": [...]}`. A mistake every live node reports (unknown
//! project, bad time range, no data) comes back as that tool error.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use rmcp::model::{CallToolResult, ContentBlock, Extensions};
use serde_json::{json, Map, Value};

/// Request header marking a tool call as a query node's fan-out.
pub const FANOUT_HEADER: &str = "x-osprey-fanout";
/// Key of the event time (unix ms) peers add to `search_events` rows.
pub(crate) const ROW_TIME: &str = "ospreyTs";
/// Key of a metric row's duration histogram (sparse `[bucket, count]` pairs) while merging.
const HISTOGRAM: &str = "ospreyHistogram";
/// Key of the error events peers add to performance metric rows.
pub(crate) const ERROR_EVENTS: &str = "ospreyErrorEvents";
/// Largest answer read from a peer.
const MAX_ANSWER_BYTES: usize = 16 << 20;
/// The MCP protocol version the fan-out speaks to peers (stateless, no handshake).
const PROTOCOL_VERSION: &str = "2025-06-18";

/// The processor nodes whose `/mcp` a query node asks: the same peers, URLs and HTTP client
/// (with its per-peer timeout) as the `/api/0/` fan-out.
#[derive(Debug, Clone)]
pub struct McpPeers {
    peers: query::peers::Peers,
}

/// One peer's reply to a tool call.
#[derive(Debug, Clone)]
pub(crate) enum Reply {
    /// The tool's structured answer.
    Answer(Value),
    /// The tool's error text (a mistake the caller can fix, or no data on that node).
    ToolError(String),
    /// The peer could not be asked or answered badly.
    Down(String),
}

/// The replies of all peers, split by kind.
#[derive(Debug, Default)]
pub(crate) struct Replies {
    /// Structured answers, in peer order.
    pub answers: Vec<Value>,
    /// Tool errors, in peer order.
    pub errors: Vec<String>,
    /// Peers that did not answer.
    pub missing: Vec<String>,
}

impl McpPeers {
    /// The MCP side of the query node's `peers`.
    pub fn new(peers: query::peers::Peers) -> McpPeers {
        McpPeers { peers }
    }

    /// Calls tool `name` with `arguments` on every peer at once, as the caller whose
    /// `authorization` header is given.
    pub(crate) async fn call_all(
        &self,
        authorization: Option<&http::HeaderValue>,
        name: &str,
        arguments: &Value,
    ) -> Replies {
        let body = json!({
            "jsonrpc": "2.0",
            "id": 1,
            "method": "tools/call",
            "params": {"name": name, "arguments": arguments},
        })
        .to_string();
        let mut tasks = tokio::task::JoinSet::new();
        for (i, peer) in self.peers.urls().iter().enumerate() {
            let mut request = self
                .peers
                .client()
                .post(format!("{peer}/mcp"))
                .header(http::header::CONTENT_TYPE, "application/json")
                .header(http::header::ACCEPT, "application/json, text/event-stream")
                .header("mcp-protocol-version", PROTOCOL_VERSION)
                .header(FANOUT_HEADER, "1")
                .body(body.clone());
            if let Some(auth) = authorization {
                request = request.header(http::header::AUTHORIZATION, auth.clone());
            }
            let peer = peer.clone();
            tasks.spawn(async move {
                let reply = match request.send().await {
                    Err(e) => Reply::Down(e.to_string()),
                    Ok(resp) => {
                        let status = resp.status();
                        match resp.bytes().await {
                            Err(e) => Reply::Down(e.to_string()),
                            Ok(b) if b.len() > MAX_ANSWER_BYTES => {
                                Reply::Down(format!("answer larger than {MAX_ANSWER_BYTES} bytes"))
                            }
                            Ok(b) if !status.is_success() => Reply::Down(format!(
                                "{status}: {}",
                                String::from_utf8_lossy(&b).trim()
                            )),
                            Ok(b) => parse_reply(&b),
                        }
                    }
                };
                (i, peer, reply)
            });
        }
        let mut done = Vec::with_capacity(self.peers.urls().len());
        while let Some(joined) = tasks.join_next().await {
            if let Ok(reply) = joined {
                done.push(reply);
            }
        }
        // Peer order, so that "the first node that has it" is stable.
        done.sort_by_key(|(i, _, _)| *i);
        let mut replies = Replies::default();
        for (_, peer, reply) in done {
            match reply {
                Reply::Answer(v) => replies.answers.push(v),
                Reply::ToolError(e) => replies.errors.push(e),
                Reply::Down(e) => {
                    tracing::warn!(peer = %peer, error = %e, "peer did not answer an MCP call");
                    replies.missing.push(peer);
                }
            }
        }
        replies
    }
}

/// A JSON-RPC answer (plain JSON, or the data lines of an event stream) as a [`Reply`].
fn parse_reply(body: &[u8]) -> Reply {
    let text = String::from_utf8_lossy(body);
    let message: Option<Value> = serde_json::from_str(text.trim()).ok().or_else(|| {
        let data: String = text
            .lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .map(|d| d.strip_prefix(' ').unwrap_or(d))
            .collect();
        serde_json::from_str(&data).ok()
    });
    let Some(message) = message else {
        return Reply::Down(format!("not a JSON-RPC answer: {}", text.trim()));
    };
    if let Some(error) = message.get("error") {
        return Reply::Down(format!("protocol error: {error}"));
    }
    let result = &message["result"];
    if result["isError"].as_bool() == Some(true) {
        let text = result["content"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c["text"].as_str())
            .collect::<Vec<_>>()
            .join("\n");
        return Reply::ToolError(text);
    }
    match result.get("structuredContent") {
        Some(v) if v.is_object() => Reply::Answer(v.clone()),
        _ => Reply::Down(format!("answer without structured content: {result}")),
    }
}

/// Whether a tool fans out on a query node (the others run on its own store).
pub(crate) fn fans_out(tool: &str) -> bool {
    !matches!(tool, "configure_alert" | "capture_event")
}

/// The caller's `Authorization` header, from the request's extensions.
pub(crate) fn authorization(ext: &Extensions) -> Option<http::HeaderValue> {
    ext.get::<http::request::Parts>()
        .and_then(|p| p.headers.get(http::header::AUTHORIZATION))
        .cloned()
}

/// The tool result for a merged answer (or the error every node gave).
pub(crate) fn to_result(merged: Result<Value, String>, missing: &[String]) -> CallToolResult {
    match merged {
        Ok(mut v) => {
            if !missing.is_empty() {
                if let Some(obj) = v.as_object_mut() {
                    obj.insert("ospreyPartial".into(), json!({"missing": missing}));
                }
            }
            CallToolResult::structured(v)
        }
        Err(text) => CallToolResult::error(vec![ContentBlock::text(text)]),
    }
}

/// Merges the peers' answers to `tool` called with `args`. `Err` when no node had an
/// answer: the first tool error, or that no node answered.
pub(crate) fn merge(tool: &str, args: &Value, replies: &Replies) -> Result<Value, String> {
    if replies.answers.is_empty() {
        return Err(no_answer(replies));
    }
    let answers = &replies.answers;
    let mut merged = match tool {
        "find_projects" => merge_projects(answers),
        "get_error_analysis" => merge_error_analysis(answers),
        "get_performance_metrics" => {
            let merged = merge_performance(args, answers);
            if f(&merged["metrics"]["count"]).unwrap_or(0.0) == 0.0 {
                // No node has transactions in the range: the error one node would give.
                let message = answers.iter().find_map(|a| a["ospreyNoData"].as_str());
                return Err(message.unwrap_or("no transactions in the range").to_owned());
            }
            merged
        }
        "compare_releases" => merge_release_comparison(answers),
        "get_release_health" => crate::tools::merge_release_health(answers),
        "search_issues" => merge_issue_search(args, answers),
        "search_events" => merge_events(args, answers),
        "list_alerts" => merge_alerts(args, answers),
        "manage_issues" => merge_managed(answers),
        "track_release" => merge_tracked(answers),
        "list_user_feedback" => merge_feedback(args, answers),
        // Single objects: the first node that has it (issue ids are unique across nodes).
        _ => answers[0].clone(),
    };
    strip_internal(&mut merged);
    Ok(merged)
}

/// `list_user_feedback` from several nodes: one newest-first list, cut to the limit.
fn merge_feedback(args: &Value, answers: &[Value]) -> Value {
    let limit = args["limit"].as_u64().unwrap_or(25).clamp(1, 100) as usize;
    let mut all: Vec<Value> = answers
        .iter()
        .flat_map(|a| a["feedback"].as_array().cloned().unwrap_or_default())
        .collect();
    // ISO 8601 times in one format sort as text.
    all.sort_by(|a, b| {
        b["dateCreated"]
            .as_str()
            .unwrap_or("")
            .cmp(a["dateCreated"].as_str().unwrap_or(""))
    });
    let truncated = all.len() > limit
        || answers
            .iter()
            .any(|a| a["truncated"].as_bool() == Some(true));
    all.truncate(limit);
    json!({"feedback": all, "truncated": truncated})
}

/// The error for a call no node answered.
pub(crate) fn no_answer(replies: &Replies) -> String {
    match replies.errors.first() {
        Some(e) => e.clone(),
        None => format!(
            "no processor node answered ({}); try again when they are up",
            replies.missing.join(", ")
        ),
    }
}

/// Removes the fan-out-only fields (`ospreyHash`, `ospreyTs`, `ospreyEvents`) everywhere.
fn strip_internal(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.remove("ospreyHash");
            m.remove(ROW_TIME);
            m.remove("ospreyEvents");
            m.remove("ospreyNoData");
            m.remove("ospreyHistograms");
            m.remove(HISTOGRAM);
            m.remove(ERROR_EVENTS);
            m.values_mut().for_each(strip_internal);
        }
        Value::Array(a) => a.iter_mut().for_each(strip_internal),
        _ => {}
    }
}

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap_or(0)
}

fn f(v: &Value) -> Option<f64> {
    v.as_f64()
}

/// The key that identifies one issue across nodes: project and grouping hash (the id when a
/// peer sent no hash).
fn issue_key(issue: &Value) -> String {
    match issue["ospreyHash"].as_str() {
        Some(h) => format!("{}/{h}", issue["project"].as_str().unwrap_or("")),
        None => format!("id/{}", issue["id"].as_str().unwrap_or("")),
    }
}

/// Adds `b`'s part of one issue into `a` (both `IssueSummary`, maybe with `IssueInRange`'s
/// range counts); the state fields come from the part seen last.
fn add_issue(a: &mut Value, b: &Value, approximate: &mut BTreeSet<String>) {
    let newer = b["lastSeen"].as_str() > a["lastSeen"].as_str();
    let (count, first_seen, last_seen) = (
        u(&a["count"]) + u(&b["count"]),
        std::cmp::min(a["firstSeen"].as_str(), b["firstSeen"].as_str()).map(str::to_owned),
        std::cmp::max(a["lastSeen"].as_str(), b["lastSeen"].as_str()).map(str::to_owned),
    );
    let users = u(&a["userCount"]) + u(&b["userCount"]);
    // Distinct users add exactly unless both parts have some (they may share users).
    let both_have_users = u(&a["userCount"]) > 0 && u(&b["userCount"]) > 0;
    let both_have_range_users = u(&a["usersInRange"]) > 0 && u(&b["usersInRange"]) > 0;
    let in_range = (
        a.get("eventsInRange")
            .map(|x| u(x) + u(&b["eventsInRange"])),
        a.get("usersInRange").map(|x| u(x) + u(&b["usersInRange"])),
    );
    let first_release = if b["firstSeen"].as_str() < a["firstSeen"].as_str() {
        b["firstRelease"].clone()
    } else {
        a["firstRelease"].clone()
    };
    if newer {
        let keep_id = a["id"].clone();
        let keep_short = a["shortId"].clone();
        *a = b.clone();
        a["id"] = keep_id;
        a["shortId"] = keep_short;
    }
    a["count"] = json!(count);
    a["userCount"] = json!(users);
    a["firstSeen"] = json!(first_seen);
    a["lastSeen"] = json!(last_seen);
    a["firstRelease"] = first_release;
    if let (Some(events), Some(users)) = in_range {
        a["eventsInRange"] = json!(events);
        a["usersInRange"] = json!(users);
        if both_have_range_users {
            approximate.insert("usersInRange".into());
        }
    }
    if both_have_users {
        approximate.insert("userCount".into());
    }
}

/// Merges issue lists by [`issue_key`], keeping first-seen order.
fn merge_issue_lists<'a>(
    lists: impl Iterator<Item = &'a Value>,
    approximate: &mut BTreeSet<String>,
) -> (Vec<Value>, usize) {
    let mut out: Vec<Value> = Vec::new();
    let mut at: HashMap<String, usize> = HashMap::new();
    let mut duplicates = 0;
    for list in lists {
        for issue in list.as_array().into_iter().flatten() {
            let key = issue_key(issue);
            match at.get(&key) {
                Some(&i) => {
                    add_issue(&mut out[i], issue, approximate);
                    duplicates += 1;
                }
                None => {
                    at.insert(key, out.len());
                    out.push(issue.clone());
                }
            }
        }
    }
    (out, duplicates)
}

fn finish(mut v: Value, approximate: BTreeSet<String>) -> Value {
    if !approximate.is_empty() {
        v["ospreyApproximate"] = json!(approximate);
    }
    v
}

fn merge_projects(answers: &[Value]) -> Value {
    let mut out: Vec<Value> = Vec::new();
    let mut at: HashMap<u64, usize> = HashMap::new();
    for a in answers {
        for p in a["projects"].as_array().into_iter().flatten() {
            let id = u(&p["id"]);
            match at.get(&id) {
                Some(&i) => {
                    let sum = u(&out[i]["unresolvedIssues"]) + u(&p["unresolvedIssues"]);
                    out[i]["unresolvedIssues"] = json!(sum);
                }
                None => {
                    at.insert(id, out.len());
                    out.push(p.clone());
                }
            }
        }
    }
    json!({"projects": out})
}

fn merge_error_analysis(answers: &[Value]) -> Value {
    let mut approximate = BTreeSet::new();
    let with_events: Vec<&Value> = answers
        .iter()
        .filter(|a| u(&a["totals"]["events"]) > 0 || u(&a["trend"]["previousEvents"]) > 0)
        .collect();
    if with_events.len() <= 1 {
        return with_events.first().copied().unwrap_or(&answers[0]).clone();
    }
    let mut out = with_events[0].clone();
    let mut by_level: BTreeMap<String, u64> = BTreeMap::new();
    let (mut events, mut users, mut issues, mut previous) = (0, 0, 0, 0);
    let mut truncated = false;
    for a in &with_events {
        events += u(&a["totals"]["events"]);
        users += u(&a["totals"]["users"]);
        issues += u(&a["totals"]["issues"]);
        previous += u(&a["trend"]["previousEvents"]);
        truncated |= a["truncated"].as_bool().unwrap_or(false);
        for (level, n) in a["totals"]["byLevel"].as_object().into_iter().flatten() {
            *by_level.entry(level.clone()).or_default() += u(n);
        }
    }
    if with_events
        .iter()
        .filter(|a| u(&a["totals"]["users"]) > 0)
        .count()
        > 1
    {
        approximate.insert("totals.users".to_owned());
    }
    // The same formula as one node's: events over the range's minutes.
    let range_ms = match (
        out["start"].as_str().and_then(query::api::util::parse_iso),
        out["end"].as_str().and_then(query::api::util::parse_iso),
    ) {
        (Some(start), Some(end)) if end > start => Some(end - start),
        _ => None,
    };
    let per_minute = match range_ms {
        Some(ms) => events as f64 / (ms as f64 / 60_000.0),
        None => with_events
            .iter()
            .filter_map(|a| f(&a["errorEventsPerMinute"]))
            .sum(),
    };
    let by_events = |list: &mut Vec<Value>| {
        list.sort_by_key(|i| std::cmp::Reverse(u(&i["eventsInRange"])));
    };
    let mut dups = 0;
    for field in ["topIssues", "newIssues", "regressedIssues"] {
        let (mut list, d) =
            merge_issue_lists(with_events.iter().map(|a| &a[field]), &mut approximate);
        by_events(&mut list);
        if field == "topIssues" {
            list.truncate(10);
            dups = d;
        }
        out[field] = json!(list);
    }
    let change = events as i64 - previous as i64;
    out["totals"] = json!({
        "events": events,
        "users": users,
        "issues": issues.saturating_sub(dups as u64),
        "byLevel": by_level,
    });
    out["errorEventsPerMinute"] = json!(per_minute);
    out["trend"] = json!({
        "previousEvents": previous,
        "change": change,
        "changePercent": (previous > 0)
            .then(|| (change as f64 / previous as f64 * 1000.0).round() / 10.0),
        "direction": match change {
            c if c > 0 => "up",
            c if c < 0 => "down",
            _ => "flat",
        },
    });
    out["truncated"] = json!(truncated);
    finish(out, approximate)
}

/// Merges metric rows (`count` plus the requested metrics) of one set of transactions held
/// by several nodes. `prefix` names the row in `ospreyApproximate`.
fn merge_rows(
    rows: &[&Value],
    prefix: &str,
    approximate: &mut BTreeSet<String>,
) -> Map<String, Value> {
    let live: Vec<&Value> = rows
        .iter()
        .copied()
        .filter(|r| f(&r["count"]).unwrap_or(0.0) > 0.0)
        .collect();
    // Error events per transaction: every node's error events (a node without these
    // transactions may still hold some of the project's errors) over all transactions.
    let error_events: Option<f64> = rows
        .iter()
        .filter_map(|r| f(&r[ERROR_EVENTS]))
        .reduce(|a, b| a + b);
    let mut out = match live.len() {
        0 => rows
            .first()
            .and_then(|r| r.as_object())
            .cloned()
            .unwrap_or_default(),
        1 => live[0].as_object().cloned().unwrap_or_default(),
        _ => merge_live_rows(&live, prefix, approximate),
    };
    let count = out.get("count").and_then(f).unwrap_or(0.0);
    if let (Some(errors), true) = (error_events, out.contains_key("error_rate")) {
        out.insert(
            "error_rate".into(),
            json!((count > 0.0).then(|| errors / count)),
        );
    }
    out
}

/// [`merge_rows`] for a set of transactions several nodes hold part of.
fn merge_live_rows(
    live: &[&Value],
    prefix: &str,
    approximate: &mut BTreeSet<String>,
) -> Map<String, Value> {
    let total: f64 = live.iter().map(|r| f(&r["count"]).unwrap_or(0.0)).sum();
    let mut out = Map::new();
    out.insert("count".into(), json!(total));
    let keys: BTreeSet<&String> = live
        .iter()
        .flat_map(|r| r.as_object().into_iter().flat_map(|m| m.keys()))
        .filter(|k| k.as_str() != "count" && k.as_str() != HISTOGRAM)
        .collect();
    // With every part's histogram the percentiles come from their sum, exactly as one node
    // computes them.
    let histograms: Option<Vec<Vec<(u32, u64)>>> = live
        .iter()
        .map(|r| serde_json::from_value(r[HISTOGRAM].clone()).ok())
        .collect();
    let exact: Option<BTreeMap<&str, Option<f64>>> = histograms.map(|hs| {
        let sum = hs
            .iter()
            .fold(Vec::new(), |acc, h| query::perf::add_sparse(&acc, h));
        let q = query::perf::nearest_rank(sum.iter().copied(), &[0.5, 0.75, 0.95, 0.99]);
        ["p50", "p75", "p95", "p99"].into_iter().zip(q).collect()
    });
    for key in keys {
        if let Some(v) = exact.as_ref().and_then(|e| e.get(key.as_str())) {
            out.insert(key.clone(), json!(v));
            continue;
        }
        let value = if key == "throughput" {
            Some(live.iter().filter_map(|r| f(&r[key])).sum::<f64>())
        } else {
            // Rates are ratios over the count: their count-weighted mean is exact.
            // Percentiles are not; they are flagged.
            let (mut sum, mut weight) = (0.0, 0.0);
            for r in live {
                if let Some(v) = f(&r[key.as_str()]) {
                    let w = f(&r["count"]).unwrap_or(0.0);
                    sum += v * w;
                    weight += w;
                }
            }
            if key.starts_with('p') && key[1..].chars().all(|c| c.is_ascii_digit()) {
                approximate.insert(format!("{prefix}{key}"));
            }
            (weight > 0.0).then(|| sum / weight)
        };
        out.insert(key.clone(), json!(value));
    }
    out
}

fn change_row(cur: &Map<String, Value>, prev: &Map<String, Value>) -> Map<String, Value> {
    cur.iter()
        .map(|(k, v)| {
            let d = match (f(v), prev.get(k).and_then(f)) {
                (Some(a), Some(b)) => Some(a - b),
                _ => None,
            };
            (k.clone(), json!(d))
        })
        .collect()
}

fn merge_performance(args: &Value, answers: &[Value]) -> Value {
    // Each row takes its histogram along (peers send them apart, the rows hold numbers only).
    let answers: Vec<Value> = answers
        .iter()
        .map(|a| {
            let mut a = a.clone();
            let h = a["ospreyHistograms"].take();
            for row in ["metrics", "previous"] {
                if a[row].is_object() && h[row].is_array() {
                    a[row][HISTOGRAM] = h[row].clone();
                }
            }
            for g in a["breakdown"].as_array_mut().into_iter().flatten() {
                let key = g["key"].as_str().unwrap_or("").to_owned();
                for row in ["metrics", "previous"] {
                    let gh = &h["breakdown"][key.as_str()][row];
                    if g[row].is_object() && gh.is_array() {
                        g[row][HISTOGRAM] = gh.clone();
                    }
                }
            }
            a
        })
        .collect();
    let answers = answers.as_slice();
    let mut approximate = BTreeSet::new();
    let mut out = answers[0].clone();
    let metrics: Vec<&Value> = answers.iter().map(|a| &a["metrics"]).collect();
    let previous: Vec<&Value> = answers.iter().map(|a| &a["previous"]).collect();
    let cur = merge_rows(&metrics, "metrics.", &mut approximate);
    let prev = merge_rows(&previous, "previous.", &mut approximate);
    out["change"] = json!(change_row(&cur, &prev));
    out["metrics"] = json!(cur);
    out["previous"] = json!(prev);
    // Breakdown groups by key, then by transaction count as the tool orders them.
    let mut groups: Vec<(String, Vec<&Value>, Vec<&Value>)> = Vec::new();
    let mut at: HashMap<String, usize> = HashMap::new();
    for a in answers {
        for g in a["breakdown"].as_array().into_iter().flatten() {
            let key = g["key"].as_str().unwrap_or("").to_owned();
            let i = *at.entry(key.clone()).or_insert_with(|| {
                groups.push((key, Vec::new(), Vec::new()));
                groups.len() - 1
            });
            groups[i].1.push(&g["metrics"]);
            groups[i].2.push(&g["previous"]);
        }
    }
    let mut breakdown: Vec<(f64, Value)> = groups
        .into_iter()
        .map(|(key, cur, prev)| {
            let name = format!("breakdown[{key}].");
            let m = merge_rows(&cur, &name, &mut approximate);
            let p = merge_rows(&prev, &name, &mut approximate);
            let count = m.get("count").and_then(f).unwrap_or(0.0);
            (count, json!({"key": key, "metrics": m, "previous": p}))
        })
        .collect();
    breakdown.sort_by(|a, b| {
        b.0.total_cmp(&a.0)
            .then_with(|| a.1["key"].as_str().cmp(&b.1["key"].as_str()))
    });
    let limit = args["breakdown"]["limit"]
        .as_u64()
        .unwrap_or(10)
        .clamp(1, 100) as usize;
    breakdown.truncate(limit);
    out["breakdown"] = json!(breakdown.into_iter().map(|(_, g)| g).collect::<Vec<_>>());
    finish(out, approximate)
}

fn merge_release_comparison(answers: &[Value]) -> Value {
    let mut approximate = BTreeSet::new();
    let mut out = answers[0].clone();
    for side in ["base", "head"] {
        let parts: Vec<&Value> = answers.iter().map(|a| &a[side]).collect();
        let with_tx: Vec<&&Value> = parts.iter().filter(|p| u(&p["transactions"]) > 0).collect();
        let transactions: u64 = parts.iter().map(|p| u(&p["transactions"])).sum();
        let weighted = |field: &str| -> Option<f64> {
            let (mut sum, mut weight) = (0.0, 0.0);
            for p in &with_tx {
                if let Some(v) = f(&p[field]) {
                    sum += v * u(&p["transactions"]) as f64;
                    weight += u(&p["transactions"]) as f64;
                }
            }
            (weight > 0.0).then(|| sum / weight)
        };
        if with_tx.len() > 1 {
            approximate.insert(format!("{side}.p95Ms"));
        }
        let merged = json!({
            "version": parts[0]["version"],
            "errorEvents": parts.iter().map(|p| u(&p["errorEvents"])).sum::<u64>(),
            "issues": parts.iter().map(|p| u(&p["issues"])).sum::<u64>(),
            "transactions": transactions,
            "p95Ms": weighted("p95Ms"),
            "failureRate": weighted("failureRate"),
            "tracked": parts.iter().map(|p| &p["tracked"]).find(|t| !t.is_null()).cloned().unwrap_or(Value::Null),
        });
        out[side] = merged;
    }
    for field in ["newIssues", "regressions"] {
        let (list, _) = merge_issue_lists(answers.iter().map(|a| &a[field]), &mut approximate);
        out[field] = json!(list);
    }
    let diff = |out: &Value, field: &str| match (f(&out["head"][field]), f(&out["base"][field])) {
        (Some(h), Some(b)) => Some(h - b),
        _ => None,
    };
    out["p95ChangeMs"] = json!(diff(&out, "p95Ms"));
    out["failureRateChange"] = json!(diff(&out, "failureRate"));
    if answers.len() > 1 {
        // Distinct issues of a release split over nodes may be counted twice.
        approximate.insert("issues".into());
    }
    finish(out, approximate)
}

/// Sorts merged issues as `search_issues` does: by last seen (default), first seen, events
/// or users, newest/largest first.
fn merge_issue_search(args: &Value, answers: &[Value]) -> Value {
    let mut approximate = BTreeSet::new();
    let (mut issues, duplicates) =
        merge_issue_lists(answers.iter().map(|a| &a["issues"]), &mut approximate);
    let sort = args["sort"].as_str().unwrap_or("date");
    issues.sort_by(|a, b| {
        let order = match sort {
            "new" => b["firstSeen"].as_str().cmp(&a["firstSeen"].as_str()),
            "freq" => u(&b["count"]).cmp(&u(&a["count"])),
            "user" => u(&b["userCount"]).cmp(&u(&a["userCount"])),
            _ => b["lastSeen"].as_str().cmp(&a["lastSeen"].as_str()),
        };
        order.then_with(|| {
            let id = |v: &Value| v["id"].as_str().and_then(|s| s.parse::<u64>().ok());
            id(b).cmp(&id(a))
        })
    });
    let limit = args["limit"].as_u64().unwrap_or(25).clamp(1, 100) as usize;
    issues.truncate(limit);
    let total: u64 = answers.iter().map(|a| u(&a["total"])).sum();
    if duplicates == 0 {
        approximate.clear();
    }
    finish(
        json!({"total": total.saturating_sub(duplicates as u64), "issues": issues}),
        approximate,
    )
}

fn merge_events(args: &Value, answers: &[Value]) -> Value {
    let mut rows: Vec<&Value> = answers
        .iter()
        .flat_map(|a| a["rows"].as_array().into_iter().flatten())
        .collect();
    rows.sort_by_key(|r| std::cmp::Reverse(u(&r[ROW_TIME])));
    let limit = args["limit"].as_u64().unwrap_or(50).clamp(1, 1000) as usize;
    let rows: Vec<Value> = rows.into_iter().take(limit).cloned().collect();
    json!({
        "count": answers.iter().map(|a| u(&a["count"])).sum::<u64>(),
        "rows": rows,
        "truncated": answers.iter().any(|a| a["truncated"].as_bool() == Some(true)),
    })
}

fn merge_alerts(args: &Value, answers: &[Value]) -> Value {
    // Rules are shared metadata, the same on every node; what fired is each node's own.
    let mut out = answers[0].clone();
    let mut fired: Vec<&Value> = answers
        .iter()
        .flat_map(|a| a["fired"].as_array().into_iter().flatten())
        .collect();
    fired.sort_by(|a, b| b["firedAt"].as_str().cmp(&a["firedAt"].as_str()));
    let limit = args["limit"].as_u64().unwrap_or(50).clamp(1, 500) as usize;
    out["fired"] = json!(fired.into_iter().take(limit).collect::<Vec<_>>());
    out
}

fn merge_managed(answers: &[Value]) -> Value {
    let mut seen = BTreeSet::new();
    let updated: Vec<&Value> = answers
        .iter()
        .flat_map(|a| a["updated"].as_array().into_iter().flatten())
        .filter(|i| seen.insert(i["id"].as_str().unwrap_or("").to_owned()))
        .collect();
    json!({"updated": updated})
}

fn merge_tracked(answers: &[Value]) -> Value {
    // Every node records the release; it is new if it was new anywhere.
    let mut out = answers[0].clone();
    out["created"] = json!(answers.iter().any(|a| a["created"].as_bool() == Some(true)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn issue(id: &str, hash: &str, count: u64, first: &str, last: &str) -> Value {
        json!({"id": id, "shortId": format!("P-{id}"), "ospreyHash": hash, "project": "shop",
               "count": count, "userCount": 1, "firstSeen": first, "lastSeen": last,
               "status": "unresolved", "firstRelease": format!("r{id}")})
    }

    fn replies(answers: Vec<Value>) -> Replies {
        Replies {
            answers,
            ..Default::default()
        }
    }

    #[test]
    fn one_issue_on_two_nodes_is_one_issue_with_summed_counts() {
        let a = json!({"total": 2, "issues": [
            issue("1", "aa", 5, "2026-01-01T00:00:00Z", "2026-01-03T00:00:00Z"),
            issue("2", "bb", 8, "2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z"),
        ]});
        let b = json!({"total": 1, "issues": [
            issue("16777217", "aa", 4, "2025-12-31T00:00:00Z", "2026-01-05T00:00:00Z"),
        ]});
        let merged = merge(
            "search_issues",
            &json!({"sort": "freq"}),
            &replies(vec![a, b]),
        )
        .unwrap();
        assert_eq!(merged["total"], 2);
        let issues = merged["issues"].as_array().unwrap();
        assert_eq!(issues.len(), 2);
        assert_eq!(issues[0]["id"], "1", "{merged}");
        assert_eq!(issues[0]["count"], 9);
        assert_eq!(issues[0]["firstSeen"], "2025-12-31T00:00:00Z");
        assert_eq!(issues[0]["lastSeen"], "2026-01-05T00:00:00Z");
        assert_eq!(issues[0]["firstRelease"], "r16777217");
        assert!(
            issues[0].get("ospreyHash").is_none(),
            "internal fields are removed"
        );
        assert_eq!(merged["ospreyApproximate"], json!(["userCount"]));
        // Alone, 5 < 8; together 9 > 8: the order is the merged one.
        assert_eq!(issues[1]["id"], "2");
    }

    #[test]
    fn issue_search_sorts_and_cuts_across_nodes() {
        let a = json!({"total": 1, "issues": [issue("1", "aa", 1, "2026-01-01T00:00:00Z", "2026-01-01T00:00:00Z")]});
        let b = json!({"total": 1, "issues": [issue("9", "bb", 1, "2026-01-02T00:00:00Z", "2026-01-04T00:00:00Z")]});
        let merged = merge("search_issues", &json!({"limit": 1}), &replies(vec![a, b])).unwrap();
        assert_eq!(merged["total"], 2);
        assert_eq!(merged["issues"].as_array().unwrap().len(), 1);
        assert_eq!(merged["issues"][0]["id"], "9", "newest last seen first");
        assert!(merged.get("ospreyApproximate").is_none());
    }

    #[test]
    fn a_performance_row_on_one_node_is_taken_whole() {
        let full = json!({"project": "shop", "metrics": {"count": 10.0, "p95": 250.0, "apdex": 0.9},
            "previous": {"count": 0.0, "p95": null, "apdex": null}, "change": {},
            "breakdown": [{"key": "GET /", "metrics": {"count": 10.0, "p95": 250.0}, "previous": {}}],
            "apdexThresholdMs": 300, "truncated": false});
        let empty = json!({"project": "shop", "metrics": {"count": 0.0, "p95": null, "apdex": null},
            "previous": {"count": 0.0, "p95": null, "apdex": null}, "change": {},
            "breakdown": [], "apdexThresholdMs": 300, "truncated": false});
        let merged = merge(
            "get_performance_metrics",
            &json!({}),
            &replies(vec![empty, full]),
        )
        .unwrap();
        assert_eq!(merged["metrics"]["p95"], 250.0);
        assert_eq!(merged["metrics"]["count"], 10.0);
        assert_eq!(merged["breakdown"][0]["metrics"]["p95"], 250.0);
        assert!(merged.get("ospreyApproximate").is_none(), "{merged}");
    }

    #[test]
    fn a_split_performance_row_adds_counts_and_flags_percentiles() {
        let part = |count: f64, p95: f64, apdex: f64, tpm: f64| {
            json!({"metrics": {"count": count, "p95": p95, "apdex": apdex, "throughput": tpm},
                   "previous": {"count": 0.0}, "breakdown": []})
        };
        let merged = merge(
            "get_performance_metrics",
            &json!({}),
            &replies(vec![
                part(30.0, 100.0, 1.0, 3.0),
                part(10.0, 500.0, 0.5, 1.0),
            ]),
        )
        .unwrap();
        let m = &merged["metrics"];
        assert_eq!(m["count"], 40.0);
        assert_eq!(m["throughput"], 4.0);
        // (30 * 1.0 + 10 * 0.5) / 40: the exact apdex of all 40.
        assert_eq!(m["apdex"], 0.875);
        assert_eq!(m["p95"], 200.0);
        assert_eq!(merged["ospreyApproximate"], json!(["metrics.p95"]));
    }

    #[test]
    fn a_split_performance_row_with_histograms_gets_exact_percentiles() {
        // 30 transactions in bucket 100 on one node, 10 in bucket 200 on the other.
        let part = |count: f64, bucket: u32, p95: f64| {
            json!({"metrics": {"count": count, "p50": p95, "p95": p95},
                   "previous": {"count": 0.0}, "breakdown": [],
                   "ospreyHistograms": {"metrics": [[bucket, count as u64]], "previous": null,
                                        "breakdown": {}}})
        };
        let merged = merge(
            "get_performance_metrics",
            &json!({}),
            &replies(vec![part(30.0, 100, 1.0), part(10.0, 200, 2.0)]),
        )
        .unwrap();
        // What one node holding all 40 would compute.
        let one_node = query::perf::nearest_rank([(100, 30), (200, 10)].into_iter(), &[0.5, 0.95]);
        assert_eq!(merged["metrics"]["p50"], json!(one_node[0]), "{merged}");
        assert_eq!(merged["metrics"]["p95"], json!(one_node[1]));
        assert_ne!(one_node[0], one_node[1]);
        assert!(merged.get("ospreyApproximate").is_none(), "{merged}");
        assert!(merged["metrics"].get("ospreyHistogram").is_none());
        assert!(merged.get("ospreyHistograms").is_none());
    }

    #[test]
    fn error_rate_counts_the_errors_of_a_node_without_transactions() {
        let full = json!({"metrics": {"count": 90.0, "error_rate": 24.0 / 90.0, "ospreyErrorEvents": 24.0},
            "previous": {"count": 0.0}, "breakdown": []});
        let errors_only = json!({"metrics": {"count": 0.0, "error_rate": null, "ospreyErrorEvents": 1.0},
            "previous": {"count": 0.0}, "breakdown": [], "ospreyNoData": "no transactions"});
        let merged = merge(
            "get_performance_metrics",
            &json!({}),
            &replies(vec![errors_only.clone(), full]),
        )
        .unwrap();
        assert_eq!(merged["metrics"]["error_rate"], 25.0 / 90.0, "{merged}");
        assert!(merged["metrics"].get("ospreyErrorEvents").is_none());
        assert!(merged.get("ospreyNoData").is_none());
        // No node with transactions: the single server's error.
        let err = merge(
            "get_performance_metrics",
            &json!({}),
            &replies(vec![errors_only]),
        )
        .unwrap_err();
        assert_eq!(err, "no transactions");
    }

    #[test]
    fn error_analysis_adds_totals_and_recomputes_the_trend() {
        let part = |events: u64, previous: u64, id: &str, hash: &str| {
            json!({"project": "shop", "totals": {"events": events, "users": 1, "issues": 1,
                   "byLevel": {"error": events}}, "errorEventsPerMinute": events as f64 / 60.0,
                   "topIssues": [{"id": id, "ospreyHash": hash, "project": "shop", "count": events,
                   "userCount": 1, "firstSeen": "a", "lastSeen": "b", "eventsInRange": events, "usersInRange": 1}],
                   "newIssues": [], "regressedIssues": [],
                   "trend": {"previousEvents": previous}, "truncated": false})
        };
        let merged = merge(
            "get_error_analysis",
            &json!({}),
            &replies(vec![part(6, 2, "1", "aa"), part(4, 3, "16777217", "aa")]),
        )
        .unwrap();
        assert_eq!(merged["totals"]["events"], 10);
        assert_eq!(
            merged["totals"]["issues"], 1,
            "the same issue on both nodes"
        );
        assert_eq!(merged["totals"]["byLevel"]["error"], 10);
        assert_eq!(merged["topIssues"].as_array().unwrap().len(), 1);
        assert_eq!(merged["topIssues"][0]["eventsInRange"], 10);
        assert_eq!(merged["trend"]["previousEvents"], 5);
        assert_eq!(merged["trend"]["change"], 5);
        assert_eq!(merged["trend"]["changePercent"], 100.0);
        assert_eq!(merged["trend"]["direction"], "up");
    }

    #[test]
    fn events_merge_newest_first_and_errors_pass_through() {
        let a = json!({"count": 2, "rows": [{"id": "a", "ospreyTs": 5}, {"id": "b", "ospreyTs": 1}], "truncated": false});
        let b = json!({"count": 1, "rows": [{"id": "c", "ospreyTs": 3}], "truncated": false});
        let merged = merge("search_events", &json!({"limit": 2}), &replies(vec![a, b])).unwrap();
        assert_eq!(merged["count"], 3);
        assert_eq!(merged["rows"], json!([{"id": "a"}, {"id": "c"}]));

        let none = Replies {
            answers: vec![],
            errors: vec!["unknown project \"x\"".into()],
            missing: vec!["http://127.0.0.1:1".into()],
        };
        assert_eq!(
            merge("search_events", &json!({}), &none).unwrap_err(),
            "unknown project \"x\""
        );
    }

    #[test]
    fn replies_parse_answers_tool_errors_and_protocol_errors() {
        let ok = br#"{"jsonrpc":"2.0","id":1,"result":{"content":[],"structuredContent":{"a":1}}}"#;
        assert!(matches!(parse_reply(ok), Reply::Answer(v) if v["a"] == 1));
        let tool = br#"{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"no issue"}],"isError":true}}"#;
        assert!(matches!(parse_reply(tool), Reply::ToolError(t) if t == "no issue"));
        let sse = b"event: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"structuredContent\":{\"b\":2}}}\n\n";
        assert!(matches!(parse_reply(sse), Reply::Answer(v) if v["b"] == 2));
        let proto = br#"{"jsonrpc":"2.0","id":1,"error":{"code":-32602,"message":"bad"}}"#;
        assert!(matches!(parse_reply(proto), Reply::Down(_)));
    }
}
