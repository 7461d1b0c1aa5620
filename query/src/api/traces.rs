//! `GET /organizations/{org}/trace-meta/{trace_id}/` and `…/trace/{trace_id}/`: one trace's
//! transactions and spans as a tree of span nodes (Sentry's trace endpoint shape), errors
//! attached to the span they happened in, from the events stored under the trace index.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde_json::{json, Value};
use storage::records::{self, StoredEvent};
use uuid::Uuid;

use super::util::iso;
use super::{ApiError, ApiResponse, ApiResult, Ctx};

/// Most events one trace answer reads.
const MAX_TRACE_EVENTS: usize = 10_000;
/// Most span nodes one trace answer holds.
const MAX_NODES: usize = 50_000;

fn str_at<'a>(v: &'a Value, pointer: &str) -> Option<&'a str> {
    v.pointer(pointer).and_then(Value::as_str)
}

fn secs(v: &Value, key: &str) -> Option<f64> {
    v.get(key).and_then(Value::as_f64)
}

/// The trace's events that the token's organization may see.
fn load(ctx: &Ctx<'_>, org: &str, trace_id: &str) -> ApiResult<Vec<StoredEvent>> {
    let org = ctx.org(org)?;
    ctx.require_any(&["event:read", "org:read"])?;
    let id = Uuid::try_parse(trace_id).map_err(|_| {
        ApiError::BadRequest(format!(
            "{trace_id:?} is not a trace id (32 hex characters)"
        ))
    })?;
    let projects: HashSet<u64> = ctx
        .store
        .meta()
        .project_ids_of_org(org.id)
        .into_iter()
        .collect();
    Ok(ctx
        .query
        .trace_events(&id, MAX_TRACE_EVENTS)?
        .into_iter()
        .filter(|e| projects.contains(&e.project_id))
        .collect())
}

fn is_transaction(e: &StoredEvent) -> bool {
    str_at(&e.event, "/type") == Some("transaction")
}

fn slug(ctx: &Ctx<'_>, project_id: u64) -> String {
    ctx.store
        .meta()
        .project(project_id)
        .map(|p| p.slug.clone())
        .unwrap_or_default()
}

/// `GET …/trace-meta/{trace_id}/`: counts the MCP server shows before the tree.
pub(super) fn trace_meta(ctx: &Ctx<'_>, org: &str, trace_id: &str) -> ApiResult {
    let events = load(ctx, org, trace_id)?;
    let mut errors = 0;
    let mut transactions = 0;
    let mut span_count = 0usize;
    let mut ops: BTreeMap<String, u64> = BTreeMap::new();
    let mut child_counts = Vec::new();
    let mut projects = HashSet::new();
    for e in &events {
        projects.insert(e.project_id);
        if !is_transaction(e) {
            errors += 1;
            continue;
        }
        transactions += 1;
        span_count += 1;
        *ops.entry(
            str_at(&e.event, "/contexts/trace/op")
                .unwrap_or("default")
                .to_owned(),
        )
        .or_default() += 1;
        let spans = e.event.get("spans").and_then(Value::as_array);
        let n = spans.map_or(0, Vec::len);
        span_count += n;
        for s in spans.into_iter().flatten() {
            *ops.entry(
                s.get("op")
                    .and_then(Value::as_str)
                    .unwrap_or("default")
                    .to_owned(),
            )
            .or_default() += 1;
        }
        child_counts.push(json!({"transaction.event_id": e.event_id, "count()": n}));
    }
    if events.is_empty() {
        return Err(ApiError::NotFound("Trace not found".into()));
    }
    Ok(ApiResponse::ok(json!({
        "projects": projects.len(),
        "transactions": transactions,
        "errors": errors,
        "performance_issues": 0,
        "logs": 0,
        "span_count": span_count,
        "span_count_map": ops,
        "transaction_child_count_map": child_counts,
    })))
}

/// A span node before nesting.
struct Node {
    span_id: String,
    parent: Option<String>,
    body: Value,
}

/// `GET …/trace/{trace_id}/`: the root span nodes, children nested, errors attached.
pub(super) fn trace(ctx: &Ctx<'_>, org: &str, trace_id: &str) -> ApiResult {
    let events = load(ctx, org, trace_id)?;
    if events.is_empty() {
        return Err(ApiError::NotFound("Trace not found".into()));
    }
    let mut nodes: Vec<Node> = Vec::new();
    for e in events.iter().filter(|e| is_transaction(e)) {
        let ev = &e.event;
        let project_slug = slug(ctx, e.project_id);
        let start = secs(ev, "start_timestamp").unwrap_or(0.0);
        let end = secs(ev, "timestamp").unwrap_or(start);
        let span_id = str_at(ev, "/contexts/trace/span_id")
            .unwrap_or(&e.event_id)
            .to_owned();
        let name = str_at(ev, "/transaction").unwrap_or("<unlabeled transaction>");
        nodes.push(Node {
            span_id: span_id.clone(),
            parent: str_at(ev, "/contexts/trace/parent_span_id").map(str::to_owned),
            body: json!({
                "event_id": e.event_id,
                "transaction_id": e.event_id,
                "project_id": e.project_id,
                "project_slug": project_slug,
                "span_id": span_id,
                "parent_span_id": str_at(ev, "/contexts/trace/parent_span_id"),
                "start_timestamp": start,
                "end_timestamp": end,
                "duration": (((end - start) * 1_000_000.0).round() / 1000.0).max(0.0),
                "op": str_at(ev, "/contexts/trace/op"),
                "description": name,
                "name": name,
                "transaction": name,
                "is_transaction": true,
                "status": str_at(ev, "/contexts/trace/status"),
                "sdk_name": str_at(ev, "/sdk/name"),
                "measurements": ev.get("measurements").cloned().unwrap_or(json!({})),
                "additional_attributes": {},
                "children": [],
                "errors": [],
                "occurrences": [],
            }),
        });
        for s in ev
            .get("spans")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if nodes.len() >= MAX_NODES {
                break;
            }
            let Some(id) = s.get("span_id").and_then(Value::as_str) else {
                continue;
            };
            let s0 = secs(s, "start_timestamp").unwrap_or(start);
            let s1 = secs(s, "timestamp").unwrap_or(s0);
            nodes.push(Node {
                span_id: id.to_owned(),
                parent: s
                    .get("parent_span_id")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
                body: json!({
                    "event_id": e.event_id,
                    "transaction_id": e.event_id,
                    "project_id": e.project_id,
                    "project_slug": project_slug,
                    "span_id": id,
                    "parent_span_id": s.get("parent_span_id"),
                    "start_timestamp": s0,
                    "end_timestamp": s1,
                    "duration": (((s1 - s0) * 1_000_000.0).round() / 1000.0).max(0.0),
                    "op": s.get("op"),
                    "description": s.get("description"),
                    "name": s.get("description"),
                    "transaction": name,
                    "is_transaction": false,
                    "status": s.get("status"),
                    "additional_attributes": {},
                    "children": [],
                    "errors": [],
                    "occurrences": [],
                }),
            });
        }
    }
    let index: HashMap<String, usize> = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (n.span_id.clone(), i))
        .collect();
    // Errors go to the span they were raised in; the rest stand alone at the top level.
    let mut standalone = Vec::new();
    let mut short_ids: HashMap<u64, String> = HashMap::new();
    for e in events.iter().filter(|e| !is_transaction(e)) {
        let ev = &e.event;
        let project_slug = slug(ctx, e.project_id);
        let short_id = e.issue_id.map(|id| {
            short_ids
                .entry(id)
                .or_insert_with(|| {
                    records::load_issue(ctx.store, id)
                        .ok()
                        .flatten()
                        .map(|r| records::qualified_short_id(&project_slug, r.short_id))
                        .unwrap_or_default()
                })
                .clone()
        });
        let span = str_at(ev, "/contexts/trace/span_id");
        let error = json!({
            "event_id": e.event_id,
            "issue_id": e.issue_id,
            "issue": short_id,
            "project_id": e.project_id,
            "project_slug": project_slug,
            "title": str_at(ev, "/title"),
            "culprit": str_at(ev, "/culprit"),
            "level": str_at(ev, "/level"),
            "type": "error",
            "span": span,
            "timestamp": e.timestamp_ms as f64 / 1000.0,
            "dateCreated": iso(e.timestamp_ms),
        });
        match span.and_then(|s| index.get(s)) {
            Some(&i) => {
                if let Some(list) = nodes[i].body["errors"].as_array_mut() {
                    list.push(error);
                }
            }
            None => standalone.push(error),
        }
    }
    // Nest children under parents (iteratively, deepest last-in first-out is not needed:
    // attach in reverse order of appearance so each subtree is complete before it moves).
    let parents: Vec<Option<usize>> = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| {
            n.parent
                .as_ref()
                .and_then(|p| index.get(p))
                .copied()
                .filter(|&p| p != i)
        })
        .collect();
    let order = topological_children_first(&parents);
    let mut bodies: Vec<Option<Value>> = nodes.into_iter().map(|n| Some(n.body)).collect();
    let mut roots = Vec::new();
    for i in order {
        let Some(body) = bodies[i].take() else {
            continue;
        };
        match parents[i] {
            Some(p) if bodies[p].is_some() => {
                if let Some(children) = bodies[p]
                    .as_mut()
                    .and_then(|b| b["children"].as_array_mut())
                {
                    children.push(body);
                }
            }
            _ => roots.push(body),
        }
    }
    for children in roots.iter_mut() {
        sort_children(children);
    }
    roots.sort_by(|a, b| {
        a["start_timestamp"]
            .as_f64()
            .unwrap_or(0.0)
            .total_cmp(&b["start_timestamp"].as_f64().unwrap_or(0.0))
    });
    roots.extend(standalone);
    Ok(ApiResponse::ok(Value::Array(roots)))
}

/// Node indexes ordered so that every node comes after all of its descendants; nodes in a
/// parent cycle (malformed input) are treated as roots.
fn topological_children_first(parents: &[Option<usize>]) -> Vec<usize> {
    let n = parents.len();
    let mut depth = vec![usize::MAX; n];
    for start in 0..n {
        // Walk up to a node of known depth (or a root), bounded by n steps against cycles.
        let mut path = Vec::new();
        let mut at = start;
        let mut steps = 0;
        while depth[at] == usize::MAX && steps <= n {
            path.push(at);
            match parents[at] {
                Some(p) if !path.contains(&p) => at = p,
                _ => break,
            }
            steps += 1;
        }
        let mut d = if depth[at] == usize::MAX {
            0
        } else {
            depth[at] + 1
        };
        for &node in path.iter().rev() {
            if depth[node] == usize::MAX {
                depth[node] = d;
                d += 1;
            }
        }
    }
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(depth[i]));
    order
}

fn sort_children(node: &mut Value) {
    if let Some(children) = node["children"].as_array_mut() {
        children.sort_by(|a, b| {
            a["start_timestamp"]
                .as_f64()
                .unwrap_or(0.0)
                .total_cmp(&b["start_timestamp"].as_f64().unwrap_or(0.0))
        });
        for c in children.iter_mut() {
            sort_children(c);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn children_come_before_parents_and_cycles_end() {
        // 0 <- 1 <- 2, 3 root, 4 <-> 5 cycle.
        let parents = vec![None, Some(0), Some(1), None, Some(5), Some(4)];
        let order = topological_children_first(&parents);
        let pos = |x: usize| order.iter().position(|&i| i == x).unwrap();
        assert!(pos(2) < pos(1) && pos(1) < pos(0));
        assert_eq!(order.len(), 6);
    }
}
