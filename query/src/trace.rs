//! Assembling a trace: the transactions of every service that took part (linked through
//! `parent_span_id`), their spans, and the errors raised inside them, as one span tree with
//! timings.
//!
//! [`Trace::build`] is pure: it takes the stored events of one trace (as the trace index
//! returns them, any project, any order) and links them. A span whose parent is not among
//! them (the trace's root, or a service that was not sampled) becomes a root.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Deepest nesting rendered; deeper spans are attached at this depth (bounds recursion on
/// malformed or adversarial parent chains).
pub const MAX_DEPTH: usize = 128;
/// Most spans a trace keeps.
pub const MAX_SPANS: usize = 50_000;

/// One event of a trace, as stored.
#[derive(Debug, Clone)]
pub struct TraceEvent<'a> {
    /// Project id.
    pub project_id: u64,
    /// Event id (32 hex).
    pub event_id: &'a str,
    /// The normalized event.
    pub event: &'a Value,
}

/// One node of the span tree (a transaction's root span or one of its spans).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TraceSpan {
    /// Span id.
    pub span_id: String,
    /// Parent span id, if any.
    pub parent_span_id: Option<String>,
    /// Depth in the tree (0 = root).
    pub depth: usize,
    /// `transaction` for a transaction's root span, `span` otherwise.
    pub kind: String,
    /// Operation (`http.server`, `db.sql.query`, …).
    pub op: Option<String>,
    /// Transaction name or span description.
    pub description: Option<String>,
    /// Status name.
    pub status: Option<String>,
    /// Start offset from the trace's start, ms.
    pub offset_ms: f64,
    /// Duration, ms.
    pub duration_ms: f64,
    /// Project of the transaction it belongs to.
    pub project_id: u64,
    /// Event id of the transaction it belongs to.
    pub event_id: String,
    /// Errors raised in this span: (event id, title).
    pub errors: Vec<(String, String)>,
}

/// A whole trace.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Trace {
    /// Trace id.
    pub trace_id: String,
    /// Earliest start, unix µs.
    pub start_us: i64,
    /// Latest end minus earliest start, ms.
    pub duration_ms: f64,
    /// Transactions in the trace.
    pub transactions: usize,
    /// Error events in the trace.
    pub errors: usize,
    /// Spans in tree order (depth-first, children by start time).
    pub spans: Vec<TraceSpan>,
    /// Errors whose span is not in the trace: (event id, title).
    pub orphan_errors: Vec<(String, String)>,
}

struct Node {
    span: TraceSpan,
    start_us: i64,
    end_us: i64,
}

fn text(v: Option<&Value>) -> Option<String> {
    v.and_then(Value::as_str).map(str::to_string)
}

fn ts_us(v: Option<&Value>) -> Option<i64> {
    match v? {
        Value::Number(n) => n.as_f64().map(|s| (s * 1e6).round() as i64),
        Value::String(s) => chrono::DateTime::parse_from_rfc3339(s)
            .map(|d| d.timestamp_micros())
            .or_else(|_| {
                chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f")
                    .map(|d| d.and_utc().timestamp_micros())
            })
            .ok(),
        _ => None,
    }
}

fn error_title(event: &Value) -> String {
    if let Some(t) = event.get("title").and_then(Value::as_str) {
        return t.to_string();
    }
    let last = event
        .pointer("/exception/values")
        .and_then(Value::as_array)
        .and_then(|v| v.last());
    match last {
        Some(e) => format!(
            "{}: {}",
            e.get("type").and_then(Value::as_str).unwrap_or("Error"),
            e.get("value").and_then(Value::as_str).unwrap_or("")
        ),
        None => event
            .pointer("/logentry/formatted")
            .or_else(|| event.pointer("/logentry/message"))
            .or_else(|| event.get("message"))
            .and_then(Value::as_str)
            .unwrap_or("<unlabeled event>")
            .to_string(),
    }
}

impl Trace {
    /// Links the events of one trace into a span tree.
    pub fn build(trace_id: &str, events: &[TraceEvent<'_>]) -> Trace {
        let mut nodes: Vec<Node> = Vec::new();
        let mut errors: Vec<(Option<String>, String, String)> = Vec::new();
        let mut transactions = 0;
        for e in events {
            let ev = e.event;
            let trace = ev.pointer("/contexts/trace");
            let is_transaction = ev.get("type").and_then(Value::as_str) == Some("transaction");
            if !is_transaction {
                let span = trace.and_then(|t| text(t.get("span_id")));
                errors.push((span, e.event_id.to_string(), error_title(ev)));
                continue;
            }
            transactions += 1;
            let (Some(start), Some(end)) =
                (ts_us(ev.get("start_timestamp")), ts_us(ev.get("timestamp")))
            else {
                continue;
            };
            let mut push = |span_id: Option<String>,
                            parent: Option<String>,
                            kind: &str,
                            src: Option<&Value>,
                            desc: Option<String>,
                            s: i64,
                            en: i64| {
                let Some(span_id) = span_id else { return };
                if nodes.len() >= MAX_SPANS {
                    return;
                }
                nodes.push(Node {
                    span: TraceSpan {
                        span_id,
                        parent_span_id: parent,
                        depth: 0,
                        kind: kind.to_string(),
                        op: text(src.and_then(|t| t.get("op"))),
                        description: desc,
                        status: text(src.and_then(|t| t.get("status"))),
                        offset_ms: 0.0,
                        duration_ms: (en - s).max(0) as f64 / 1000.0,
                        project_id: e.project_id,
                        event_id: e.event_id.to_string(),
                        errors: Vec::new(),
                    },
                    start_us: s,
                    end_us: en,
                });
            };
            push(
                trace.and_then(|t| text(t.get("span_id"))),
                trace.and_then(|t| text(t.get("parent_span_id"))),
                "transaction",
                trace,
                text(ev.get("transaction")),
                start,
                end,
            );
            for span in ev
                .get("spans")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if let (Some(s), Some(en)) = (
                    ts_us(span.get("start_timestamp")),
                    ts_us(span.get("timestamp")),
                ) {
                    push(
                        text(span.get("span_id")),
                        text(span.get("parent_span_id")),
                        "span",
                        Some(span),
                        text(span.get("description")),
                        s,
                        en,
                    );
                }
            }
        }

        let trace_start = nodes.iter().map(|n| n.start_us).min().unwrap_or(0);
        let trace_end = nodes.iter().map(|n| n.end_us).max().unwrap_or(0);
        let mut by_id: HashMap<String, usize> = HashMap::new();
        for (i, n) in nodes.iter().enumerate() {
            by_id.entry(n.span.span_id.clone()).or_insert(i);
        }
        let mut orphan_errors = Vec::new();
        let error_count = errors.len();
        for (span, id, title) in errors {
            match span.as_ref().and_then(|s| by_id.get(s)) {
                Some(&i) => nodes[i].span.errors.push((id, title)),
                None => orphan_errors.push((id, title)),
            }
        }
        let mut children: HashMap<usize, Vec<usize>> = HashMap::new();
        let mut roots = Vec::new();
        for (i, n) in nodes.iter().enumerate() {
            match n.span.parent_span_id.as_ref().and_then(|p| by_id.get(p)) {
                Some(&p) if p != i => children.entry(p).or_default().push(i),
                _ => roots.push(i),
            }
        }
        let by_start = |v: &mut Vec<usize>| v.sort_by_key(|&i| (nodes[i].start_us, i));
        by_start(&mut roots);
        for v in children.values_mut() {
            by_start(v);
        }
        // Depth-first with an explicit stack; `seen` breaks parent cycles.
        let mut order = Vec::with_capacity(nodes.len());
        let mut seen = HashSet::new();
        let mut stack: Vec<(usize, usize)> = roots.iter().rev().map(|&r| (r, 0)).collect();
        let mut visit = |stack: &mut Vec<(usize, usize)>, order: &mut Vec<(usize, usize)>| {
            while let Some((i, depth)) = stack.pop() {
                if !seen.insert(i) {
                    continue;
                }
                order.push((i, depth));
                if let Some(kids) = children.get(&i) {
                    for &k in kids.iter().rev() {
                        stack.push((k, (depth + 1).min(MAX_DEPTH)));
                    }
                }
            }
        };
        visit(&mut stack, &mut order);
        // Nodes only reachable through a cycle: show them as roots.
        for i in 0..nodes.len() {
            stack.push((i, 0));
            visit(&mut stack, &mut order);
        }
        let spans = order
            .into_iter()
            .map(|(i, depth)| {
                let mut s = nodes[i].span.clone();
                s.depth = depth;
                s.offset_ms = (nodes[i].start_us - trace_start) as f64 / 1000.0;
                s
            })
            .collect();
        Trace {
            trace_id: trace_id.to_string(),
            start_us: trace_start,
            duration_ms: (trace_end - trace_start).max(0) as f64 / 1000.0,
            transactions,
            errors: error_count,
            spans,
            orphan_errors,
        }
    }

    /// The tree as text: one line per span with its offset, duration and op.
    pub fn render(&self) -> String {
        let mut out = format!(
            "trace {}  {:.1} ms  {} transaction(s)  {} error(s)\n",
            self.trace_id, self.duration_ms, self.transactions, self.errors
        );
        for s in &self.spans {
            let indent = "  ".repeat(s.depth);
            let marker = if s.kind == "transaction" { "▶ " } else { "" };
            out.push_str(&format!(
                "{:>10.1} ms {:>10.1} ms  {indent}{marker}{}{}{}\n",
                s.offset_ms,
                s.duration_ms,
                s.op.as_deref().unwrap_or("-"),
                s.description
                    .as_deref()
                    .map(|d| format!(" — {d}"))
                    .unwrap_or_default(),
                match s.status.as_deref() {
                    Some(st) if st != "ok" => format!(" [{st}]"),
                    _ => String::new(),
                },
            ));
            for (id, title) in &s.errors {
                out.push_str(&format!("{:>27}{indent}  ✖ {title} ({id})\n", ""));
            }
        }
        for (id, title) in &self.orphan_errors {
            out.push_str(&format!("  ✖ {title} ({id}) — span not in trace\n"));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn links_services_spans_and_errors() {
        let frontend = json!({
            "type": "transaction", "transaction": "GET /checkout",
            "start_timestamp": 100.0, "timestamp": 100.5,
            "contexts": {"trace": {"trace_id": "t", "span_id": "a1", "op": "http.server", "status": "ok"}},
            "spans": [
                {"span_id": "a2", "parent_span_id": "a1", "op": "http.client", "description": "POST /pay",
                 "start_timestamp": 100.1, "timestamp": 100.4},
                {"span_id": "a3", "parent_span_id": "a1", "op": "db", "description": "SELECT 1",
                 "start_timestamp": 100.01, "timestamp": 100.02}
            ]
        });
        let backend = json!({
            "type": "transaction", "transaction": "POST /pay",
            "start_timestamp": "1970-01-01T00:01:40.150Z", "timestamp": 100.35,
            "contexts": {"trace": {"trace_id": "t", "span_id": "b1", "parent_span_id": "a2",
                                    "op": "http.server", "status": "internal_error"}}
        });
        let error = json!({
            "exception": {"values": [{"type": "ValueError", "value": "card declined"}]},
            "contexts": {"trace": {"trace_id": "t", "span_id": "b1"}}
        });
        let stray = json!({"message": "lost", "contexts": {"trace": {"span_id": "zz"}}});
        let events = [
            TraceEvent {
                project_id: 2,
                event_id: "e2",
                event: &backend,
            },
            TraceEvent {
                project_id: 2,
                event_id: "e3",
                event: &error,
            },
            TraceEvent {
                project_id: 1,
                event_id: "e1",
                event: &frontend,
            },
            TraceEvent {
                project_id: 1,
                event_id: "e4",
                event: &stray,
            },
        ];
        let trace = Trace::build("t", &events);
        let shape: Vec<(&str, usize)> = trace
            .spans
            .iter()
            .map(|s| (s.span_id.as_str(), s.depth))
            .collect();
        assert_eq!(shape, vec![("a1", 0), ("a3", 1), ("a2", 1), ("b1", 2)]);
        assert_eq!(trace.transactions, 2);
        assert_eq!(trace.errors, 2);
        assert!((trace.duration_ms - 500.0).abs() < 1e-6);
        let b1 = &trace.spans[3];
        assert!((b1.offset_ms - 150.0).abs() < 1e-3 && (b1.duration_ms - 200.0).abs() < 1e-3);
        assert_eq!(
            b1.errors,
            vec![("e3".to_string(), "ValueError: card declined".to_string())]
        );
        assert_eq!(trace.orphan_errors.len(), 1);
        let text = trace.render();
        assert!(text.contains("POST /pay [internal_error]"), "{text}");
        assert!(text.contains("card declined"), "{text}");
    }

    #[test]
    fn cycles_and_self_parents_terminate() {
        let t = json!({
            "type": "transaction", "start_timestamp": 1.0, "timestamp": 2.0,
            "contexts": {"trace": {"span_id": "x", "parent_span_id": "y"}},
            "spans": [
                {"span_id": "y", "parent_span_id": "x", "start_timestamp": 1.0, "timestamp": 1.5},
                {"span_id": "z", "parent_span_id": "z", "start_timestamp": 1.0, "timestamp": 1.5}
            ]
        });
        let trace = Trace::build(
            "t",
            &[TraceEvent {
                project_id: 1,
                event_id: "e",
                event: &t,
            }],
        );
        assert_eq!(trace.spans.len(), 3);
    }
}
