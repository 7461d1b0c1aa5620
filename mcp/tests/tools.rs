//! Every tool, in process: an rmcp client and [`mcp::OspreyTools`] over `tokio::io::duplex`,
//! on data written through the real processor into a temporary store.

use std::sync::Arc;

use processor::pipeline::event_record;
use processor::{Processor, ProcessorConfig};
use query::QueryService;
use rmcp::model::CallToolRequestParams;
use rmcp::service::RunningService;
use rmcp::{RoleClient, ServiceExt};
use serde_json::{json, Value};
use storage::records::{self, IssueStatus, Resolution};
use storage::{EmbeddedLog, EmbeddedLogOptions, Log, LogRecord, Store, StoreOptions};
use uuid::Uuid;

const MIN: u64 = 60_000;
const TRACE: &str = "4c79f60c11214eb38604f4ae0781bfb2";

fn now() -> u64 {
    storage::now_ms()
}

fn error(id: u128, ty: &str, release: &str, user: &str, ago_ms: u64, extra: Value) -> LogRecord {
    let mut ev = json!({
        "event_id": Uuid::from_u128(id).simple().to_string(),
        "platform": "python",
        "timestamp": (now() - ago_ms) as f64 / 1000.0,
        "release": release,
        "environment": "production",
        "user": {"id": user},
        "exception": {"values": [{
            "type": ty,
            "value": "boom",
            "stacktrace": {"frames": [
                {"module": "flask.app", "function": "dispatch", "filename": "flask/app.py", "lineno": 900, "in_app": false},
                {"module": "shop.views", "function": "checkout", "filename": "shop/views.py", "lineno": 42, "context_line": "total = price / qty", "in_app": true}
            ]},
        }]},
    });
    if let (Some(o), Value::Object(more)) = (ev.as_object_mut(), extra) {
        o.extend(more);
    }
    event_record(1, now(), &serde_json::to_vec(&ev).unwrap(), None)
}

fn transaction(
    id: u128,
    name: &str,
    release: &str,
    ms: f64,
    status: &str,
    trace: Option<&str>,
) -> LogRecord {
    let end = (now() - 5 * MIN) as f64 / 1000.0;
    let ev = json!({
        "event_id": Uuid::from_u128(id).simple().to_string(),
        "type": "transaction",
        "platform": "python",
        "transaction": name,
        "release": release,
        "environment": "production",
        "start_timestamp": end - ms / 1000.0,
        "timestamp": end,
        "contexts": {"trace": {
            "trace_id": trace.map(str::to_owned).unwrap_or_else(|| Uuid::from_u128(id + 7_000).simple().to_string()),
            "span_id": "fa90fdead5f74052",
            "op": "http.server",
            "status": status,
        }},
        "spans": [],
    });
    let mut r = event_record(1, now(), &serde_json::to_vec(&ev).unwrap(), None);
    r.item_type = "transaction".into();
    r.item_header = bytes::Bytes::from_static(b"{\"type\":\"transaction\"}");
    r
}

/// The data set: two releases, a regression, a new issue in 2.0, transactions of both.
fn fill(store: &Store) {
    let p = Processor::new(store.clone(), ProcessorConfig::default()).unwrap();
    let mut recs = Vec::new();
    // 1.0: ZeroDivisionError ×5 (2 users), KeyError ×3 in the last hour, KeyError ×2 90 min ago.
    for i in 0..5 {
        recs.push(error(
            100 + i,
            "ZeroDivisionError",
            "1.0",
            &format!("u{}", i % 2),
            20 * MIN,
            json!({}),
        ));
    }
    for i in 0..3 {
        recs.push(error(200 + i, "KeyError", "1.0", "u9", 10 * MIN, json!({})));
    }
    for i in 0..2 {
        recs.push(error(300 + i, "KeyError", "1.0", "u9", 90 * MIN, json!({})));
    }
    // Transactions: release 1.0 10..1000 ms (every 10th fails), 2.0 twice as slow.
    for i in 1..=100u128 {
        let status = if i % 10 == 0 { "internal_error" } else { "ok" };
        recs.push(transaction(
            1_000 + i,
            "GET /checkout",
            "1.0",
            i as f64 * 10.0,
            status,
            None,
        ));
    }
    for i in 1..=50u128 {
        recs.push(transaction(
            2_000 + i,
            "GET /checkout",
            "2.0",
            i as f64 * 40.0,
            "ok",
            None,
        ));
    }
    for i in 1..=20u128 {
        recs.push(transaction(
            3_000 + i,
            "GET /health",
            "2.0",
            5.0,
            "ok",
            None,
        ));
    }
    p.process_and_commit(&recs).unwrap();
    // ZeroDivisionError was resolved in 1.0 ...
    let zde = all_issues(store)
        .into_iter()
        .find(|r| r.title.starts_with("ZeroDivisionError"))
        .unwrap();
    records::update_issue(store, zde.id, |r| {
        r.status = IssueStatus::Resolved;
        r.substatus = None;
        r.resolution = Some(Resolution {
            resolved_ms: now(),
            release: Some("1.0".into()),
            in_next_release: false,
        });
    })
    .unwrap();
    // ... and comes back in 2.0, where TypeError is new; one error shares a trace.
    let mut recs = vec![error(
        400,
        "ZeroDivisionError",
        "2.0",
        "u3",
        2 * MIN,
        json!({}),
    )];
    for i in 0..4 {
        recs.push(error(500 + i, "TypeError", "2.0", "u4", 3 * MIN, json!({})));
    }
    recs.push(error(
        600,
        "TypeError",
        "2.0",
        "u5",
        3 * MIN,
        json!({"contexts": {"trace": {"trace_id": TRACE, "span_id": "aa90fdead5f74052"}}}),
    ));
    recs.push(transaction(
        4_000,
        "POST /pay",
        "2.0",
        250.0,
        "ok",
        Some(TRACE),
    ));
    p.process_and_commit(&recs).unwrap();
}

fn all_issues(store: &Store) -> Vec<records::IssueRecord> {
    let mut out = Vec::new();
    for item in store.db().prefix_iterator_cf(
        &store.cf(storage::cf::ISSUES),
        [storage::keys::issues::ISSUE],
    ) {
        let (k, v) = item.unwrap();
        if k.first() != Some(&storage::keys::issues::ISSUE) {
            break;
        }
        out.push(records::IssueRecord::from_bytes(&v).unwrap());
    }
    out
}

async fn connect(tools: mcp::OspreyTools) -> RunningService<RoleClient, ()> {
    let (server_io, client_io) = tokio::io::duplex(1 << 16);
    tokio::spawn(async move {
        if let Ok(running) = tools.serve(server_io).await {
            let _ = running.waiting().await;
        }
    });
    ().serve(client_io).await.unwrap()
}

/// Calls a tool; returns (is_error, structured content or the text).
async fn call(
    client: &RunningService<RoleClient, ()>,
    name: &'static str,
    args: Value,
) -> (bool, Value) {
    let result = client
        .call_tool(
            CallToolRequestParams::new(name).with_arguments(args.as_object().unwrap().clone()),
        )
        .await
        .unwrap_or_else(|e| panic!("{name}: protocol error {e}"));
    let is_error = result.is_error == Some(true);
    let v = serde_json::to_value(&result).unwrap();
    let body = match result.structured_content {
        Some(s) if !is_error => s,
        _ => v["content"][0]["text"].clone(),
    };
    (is_error, body)
}

async fn ok(client: &RunningService<RoleClient, ()>, name: &'static str, args: Value) -> Value {
    let (is_error, body) = call(client, name, args.clone()).await;
    assert!(!is_error, "{name} {args}: {body}");
    body
}

async fn err(client: &RunningService<RoleClient, ()>, name: &'static str, args: Value) -> String {
    let (is_error, body) = call(client, name, args.clone()).await;
    assert!(is_error, "{name} {args} should fail: {body}");
    body.as_str().unwrap().to_owned()
}

fn titles(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|i| i["title"].as_str().unwrap().to_owned())
        .collect()
}

/// Nearest-rank percentile of `n` values `step, 2·step, …`.
fn nearest_rank(n: usize, step: f64, p: f64) -> f64 {
    ((p * n as f64).ceil()) * step
}

#[tokio::test]
async fn every_tool_on_processed_data() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), &StoreOptions::default()).unwrap();
    store.bootstrap(None, None).unwrap();
    fill(&store);
    let log = EmbeddedLog::open(&store, EmbeddedLogOptions::default()).unwrap();
    let tools = mcp::OspreyTools::new(
        QueryService::new(store.clone()),
        Some(Arc::clone(&log) as Arc<dyn Log>),
    );
    let client = connect(tools).await;

    // Schemas: every tool is listed, read tools say so, arguments are documented.
    let listed = client.list_all_tools().await.unwrap();
    let names: Vec<&str> = listed.iter().map(|t| t.name.as_ref()).collect();
    // Exactly the documented tools, each annotated read-only unless it writes.
    let mut sorted_names = names.clone();
    sorted_names.sort_unstable();
    let mut documented = mcp::TOOL_NAMES.to_vec();
    documented.sort_unstable();
    assert_eq!(sorted_names, documented);
    for tool in &listed {
        let writes = mcp::WRITE_TOOL_NAMES.contains(&tool.name.as_ref());
        let read_only = tool.annotations.as_ref().and_then(|a| a.read_only_hint);
        assert_eq!(read_only, Some(!writes), "{}", tool.name);
    }
    let perf = listed
        .iter()
        .find(|t| t.name == "get_performance_metrics")
        .unwrap();
    assert_eq!(
        perf.annotations.as_ref().unwrap().read_only_hint,
        Some(true)
    );
    assert!(perf.output_schema.is_some());
    let schema = serde_json::to_string(&perf.input_schema).unwrap();
    assert!(
        schema.contains("timeRange") && schema.contains("24h"),
        "{schema}"
    );
    let manage = listed.iter().find(|t| t.name == "manage_issues").unwrap();
    assert_eq!(
        manage.annotations.as_ref().unwrap().read_only_hint,
        Some(false)
    );

    // find_projects
    let projects = ok(&client, "find_projects", json!({})).await;
    assert_eq!(projects["projects"][0]["slug"], "default");
    assert_eq!(projects["projects"][0]["id"], 1);
    assert_eq!(projects["projects"][0]["unresolvedIssues"], 3);

    // get_error_analysis over the last hour.
    let a = ok(
        &client,
        "get_error_analysis",
        json!({"project": "default", "timeRange": "1h"}),
    )
    .await;
    // 5 ZDE + 3 KeyError + 1 ZDE (2.0) + 5 TypeError; the 2 KeyErrors of 90 min ago are the previous range.
    assert_eq!(a["totals"]["events"], 14, "{a:#}");
    assert_eq!(a["totals"]["issues"], 3);
    assert_eq!(a["trend"]["previousEvents"], 2);
    assert_eq!(a["trend"]["direction"], "up");
    assert_eq!(a["trend"]["changePercent"], 600.0);
    assert!((a["errorEventsPerMinute"].as_f64().unwrap() - 14.0 / 60.0).abs() < 1e-9);
    assert_eq!(a["topIssues"][0]["title"], "ZeroDivisionError: boom");
    assert_eq!(a["topIssues"][0]["eventsInRange"], 6);
    assert_eq!(a["topIssues"][0]["usersInRange"], 3);
    assert_eq!(
        titles(&a["regressedIssues"]),
        vec!["ZeroDivisionError: boom"]
    );
    let new = titles(&a["newIssues"]);
    assert!(new.contains(&"TypeError: boom".to_string()), "{new:?}");
    // Filters: one tag value.
    let f = ok(
        &client,
        "get_error_analysis",
        json!({"project": "1", "timeRange": "1h", "filters": {"tags": {"release": "2.0"}}}),
    )
    .await;
    assert_eq!(f["totals"]["events"], 6);
    // Mistakes the model can fix.
    let e = err(
        &client,
        "get_error_analysis",
        json!({"project": "nope", "timeRange": "1h"}),
    )
    .await;
    assert!(e.contains("Known projects: default (id 1)"), "{e}");
    let e = err(
        &client,
        "get_error_analysis",
        json!({"project": "default", "timeRange": "yesterday"}),
    )
    .await;
    assert!(e.contains("24h") && e.contains("7d"), "{e}");

    // get_performance_metrics with a breakdown by transaction and release.
    let m = ok(
        &client,
        "get_performance_metrics",
        json!({"project": "default", "timeRange": "1h", "breakdown": {"field": "transaction", "limit": 5}}),
    )
    .await;
    assert_eq!(m["metrics"]["count"], 171.0, "{m:#}");
    let checkout = &m["breakdown"][0];
    assert_eq!(checkout["key"], "GET /checkout");
    assert_eq!(checkout["metrics"]["count"], 150.0);
    let m = ok(
        &client,
        "get_performance_metrics",
        json!({"project": "default", "timeRange": "1h", "transaction": "GET /checkout",
               "metrics": ["p95", "failure_rate"], "breakdown": {"field": "release"}}),
    )
    .await;
    let by_release: Vec<&Value> = m["breakdown"].as_array().unwrap().iter().collect();
    let r10 = by_release.iter().find(|g| g["key"] == "1.0").unwrap();
    let p95 = r10["metrics"]["p95"].as_f64().unwrap();
    assert!(
        (p95 - nearest_rank(100, 10.0, 0.95)).abs() <= p95 * 0.001,
        "{p95}"
    );
    assert_eq!(r10["metrics"]["failure_rate"], 0.1);
    let r20 = by_release.iter().find(|g| g["key"] == "2.0").unwrap();
    assert!((r20["metrics"]["p95"].as_f64().unwrap() - nearest_rank(50, 40.0, 0.95)).abs() < 2.0);
    assert!(
        m["metrics"].get("apdex").is_none(),
        "only the asked metrics"
    );
    let e = err(
        &client,
        "get_performance_metrics",
        json!({"project": "default", "timeRange": "1h", "transaction": "GET /chekout"}),
    )
    .await;
    assert!(e.contains("did you mean \"GET /checkout\""), "{e}");
    let e = err(
        &client,
        "get_performance_metrics",
        json!({"project": "default", "timeRange": "1m"}),
    )
    .await;
    assert!(
        e.contains("no transactions") && e.contains("longer timeRange"),
        "{e}"
    );
    let e = err(
        &client,
        "get_performance_metrics",
        json!({"project": "default", "timeRange": "1h", "metrics": ["p90"]}),
    )
    .await;
    assert!(e.contains("p95"), "{e}");

    // compare_releases: TypeError introduced by 2.0, ZeroDivisionError regressed in it.
    let c = ok(
        &client,
        "compare_releases",
        json!({"project": "default", "base": "1.0", "head": "2.0"}),
    )
    .await;
    assert_eq!(titles(&c["newIssues"]), vec!["TypeError: boom"]);
    assert_eq!(titles(&c["regressions"]), vec!["ZeroDivisionError: boom"]);
    assert_eq!(c["base"]["errorEvents"], 10);
    assert_eq!(c["head"]["errorEvents"], 6);
    assert_eq!(c["base"]["failureRate"], 0.1);
    assert!(c["p95ChangeMs"].as_f64().unwrap() > 900.0, "{c:#}");
    let e = err(
        &client,
        "compare_releases",
        json!({"project": "default", "base": "1.0", "head": "2.1"}),
    )
    .await;
    assert!(e.contains("2.0"), "{e}");

    // search_issues
    let s = ok(
        &client,
        "search_issues",
        json!({"query": "is:unresolved", "sort": "freq"}),
    )
    .await;
    assert_eq!(s["total"], 3);
    assert_eq!(s["issues"][0]["title"], "ZeroDivisionError: boom");
    let s = ok(
        &client,
        "search_issues",
        json!({"project": "default", "query": "firstRelease:2.0"}),
    )
    .await;
    assert_eq!(titles(&s["issues"]), vec!["TypeError: boom"]);
    let type_error_short = s["issues"][0]["shortId"].as_str().unwrap().to_owned();
    let e = err(&client, "search_issues", json!({"query": "title:\"open"})).await;
    assert!(
        e.contains("character 6") && e.contains("unterminated quoted string"),
        "{e}"
    );
    let e = err(
        &client,
        "search_issues",
        json!({"query": "", "sort": "priority"}),
    )
    .await;
    assert!(e.contains("\"freq\""), "{e}");

    // get_issue_details: introduced in 2.0, in-app frame marked, tags and users.
    let d = ok(
        &client,
        "get_issue_details",
        json!({"issue": type_error_short}),
    )
    .await;
    assert_eq!(d["issue"]["firstRelease"], "2.0");
    let frames = d["latestEvent"]["exceptions"][0]["frames"]
        .as_array()
        .unwrap();
    assert_eq!(frames.len(), 2);
    assert_eq!(frames[1]["function"], "checkout");
    assert_eq!(frames[1]["inApp"], true);
    assert_eq!(frames[0]["inApp"], false);
    assert_eq!(d["users"]["count"], 2);
    assert!(d["tags"]
        .as_array()
        .unwrap()
        .iter()
        .any(|t| t["key"] == "release"));
    let e = err(&client, "get_issue_details", json!({"issue": "DEFAULT-ZZ"})).await;
    assert!(e.contains("search_issues"), "{e}");

    // get_event and get_trace_details
    let ev = ok(
        &client,
        "get_event",
        json!({"event_id": Uuid::from_u128(600).to_string()}),
    )
    .await;
    assert_eq!(
        ev["event"]["eventID"],
        Uuid::from_u128(600).simple().to_string()
    );
    let e = err(&client, "get_event", json!({"event_id": "xyz"})).await;
    assert!(e.contains("32 hex"), "{e}");
    let t = ok(&client, "get_trace_details", json!({"trace_id": TRACE})).await;
    assert_eq!(
        (t["transactions"].as_u64(), t["errors"].as_u64()),
        (Some(1), Some(1)),
        "{t:#}"
    );
    assert_eq!(t["events"][0]["durationMs"], 250.0);
    assert_eq!(t["durationMs"], 250.0);
    let spans = t["spans"].as_array().unwrap();
    assert_eq!(spans[0]["kind"], "transaction");
    assert_eq!(spans[0]["description"], "POST /pay");

    // search_events
    let se = ok(
        &client,
        "search_events",
        json!({"dataset": "errors", "query": "release:2.0 !user:id:u3", "fields": ["id", "title", "user"], "timeRange": "1h"}),
    )
    .await;
    assert_eq!(se["count"], 5, "{se:#}");
    assert_eq!(se["rows"][0]["title"], "TypeError: boom");
    let se = ok(
        &client,
        "search_events",
        json!({"dataset": "transactions", "query": "transaction:\"GET /health\"", "limit": 3}),
    )
    .await;
    assert_eq!(se["count"], 20);
    assert_eq!(se["rows"].as_array().unwrap().len(), 3);
    assert_eq!(se["rows"][0]["duration"], 5.0);
    let e = err(&client, "search_events", json!({"dataset": "spans"})).await;
    assert!(e.contains("\"transactions\""), "{e}");

    // manage_issues: resolve by short id; the read tools then show it.
    let r = ok(
        &client,
        "manage_issues",
        json!({"project": "default", "action": "bulk_update", "issues": [type_error_short], "changes": {"status": "resolved"}}),
    )
    .await;
    assert_eq!(r["updated"][0]["status"], "resolved");
    let s = ok(&client, "search_issues", json!({"query": "is:resolved"})).await;
    assert_eq!(titles(&s["issues"]), vec!["TypeError: boom"]);
    let e = err(
        &client,
        "manage_issues",
        json!({"project": "default", "action": "bulk_update", "issues": ["DEFAULT-ZZ"], "changes": {"status": "resolved"}}),
    )
    .await;
    assert!(e.contains("short id"), "{e}");
    let e = err(
        &client,
        "manage_issues",
        json!({"project": "default", "action": "bulk_update", "issues": ["1"], "changes": {"status": "done"}}),
    )
    .await;
    assert!(e.contains("\"ignored\""), "{e}");

    // manage_issues: assign, label and note; search, details and the activity show them.
    let r = ok(
        &client,
        "manage_issues",
        json!({"project": "default", "action": "bulk_update", "issues": [type_error_short],
               "changes": {"assignedTo": "team:payments", "tags": {"owner": "checkout"}},
               "note": "fixed by the rollback"}),
    )
    .await;
    assert_eq!(r["updated"][0]["assignedTo"], "team:payments");
    assert_eq!(r["updated"][0]["tags"]["owner"], "checkout");
    assert!(r["updated"][0]["noteId"].is_string());
    let s = ok(
        &client,
        "search_issues",
        json!({"query": "owner:checkout assigned:#payments"}),
    )
    .await;
    assert_eq!(titles(&s["issues"]), vec!["TypeError: boom"]);
    assert_eq!(s["issues"][0]["assignedTo"], "team:payments");
    let d = ok(
        &client,
        "get_issue_details",
        json!({"issue": type_error_short}),
    )
    .await;
    let kinds: Vec<&str> = d["activity"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["type"].as_str().unwrap())
        .collect();
    assert_eq!(kinds[..4], ["note", "set_tags", "assigned", "set_resolved"]);
    assert_eq!(d["activity"][0]["data"]["text"], "fixed by the rollback");
    let e = err(
        &client,
        "manage_issues",
        json!({"project": "default", "action": "bulk_update", "issues": [type_error_short], "changes": {}}),
    )
    .await;
    assert!(e.contains("changes.assignedTo"), "{e}");

    // track_release: a release with commits and a deploy; compare_releases sees it.
    let t = ok(
        &client,
        "track_release",
        json!({"project": "default", "version": "3.0", "environment": "production",
               "commits": [{"id": "abc123", "message": "fix checkout", "author": "Ann <ann@example.com>"}],
               "deployTime": "2026-01-02T10:00:00Z"}),
    )
    .await;
    assert_eq!(t["created"], true);
    assert_eq!(t["release"]["commits"], 1);
    assert_eq!(t["deploy"]["environment"], "production");
    assert_eq!(t["release"]["dateReleased"], "2026-01-02T10:00:00.000Z");
    let c = ok(
        &client,
        "compare_releases",
        json!({"project": "default", "base": "2.0", "head": "3.0"}),
    )
    .await;
    assert_eq!(
        c["head"]["tracked"]["deploys"][0]["environment"],
        "production"
    );
    assert_eq!(c["head"]["errorEvents"], 0);
    // Without a base, the release before head by semantic version.
    let c = ok(
        &client,
        "compare_releases",
        json!({"project": "default", "head": "3.0"}),
    )
    .await;
    assert_eq!(c["base"]["version"], "2.0");
    let e = err(
        &client,
        "track_release",
        json!({"project": "default", "version": "3.0", "deployTime": "yesterday"}),
    )
    .await;
    assert!(e.contains("ISO 8601"), "{e}");

    // configure_alert / list_alerts: an issue alert, a metric alert, replace by name, errors.
    let hook = "http://127.0.0.1:9/hook";
    let a = ok(
        &client,
        "configure_alert",
        json!({"project": "default", "name": "New issues",
               "conditions": [{"id": "sentry.rules.conditions.first_seen_event.FirstSeenEventCondition"},
                              {"id": "sentry.rules.filters.level.LevelFilter", "match": "gte", "level": "warning"}],
               "actions": [{"id": "osprey.actions.webhook", "url": hook}]}),
    )
    .await;
    assert_eq!(
        (a["kind"].as_str(), a["created"].as_bool()),
        (Some("issue"), Some(true))
    );
    assert_eq!(a["rule"]["filters"][0]["level"], "warning");
    let a2 = ok(
        &client,
        "configure_alert",
        json!({"project": "default", "name": "New issues", "frequency": 5,
               "conditions": [{"id": "sentry.rules.conditions.first_seen_event.FirstSeenEventCondition"}],
               "actions": [{"id": "osprey.actions.webhook", "url": hook}]}),
    )
    .await;
    assert_eq!(
        (a2["id"].clone(), a2["created"].clone()),
        (a["id"].clone(), json!(false))
    );
    let m = ok(
        &client,
        "configure_alert",
        json!({"project": "default", "name": "Unhappy checkout",
               "conditions": [{"aggregate": "apdex()", "threshold": 0.8, "thresholdType": "below", "timeWindow": 10}],
               "actions": [{"id": "osprey.actions.webhook", "url": hook}]}),
    )
    .await;
    assert_eq!(m["kind"], "metric");
    assert_eq!(m["rule"]["thresholdType"], 1);
    for (args, hint) in [
        (
            json!({"conditions": [{"id": "sentry.rules.conditions.nope"}]}),
            "conditions[0]",
        ),
        (
            json!({"conditions": [{"id": "sentry.rules.conditions.event_frequency.EventFrequencyCondition", "value": 10, "interval": "7m"}]}),
            "1h",
        ),
        (
            json!({"conditions": [{"aggregate": "p90(transaction.duration)", "threshold": 1}]}),
            "p95(transaction.duration)",
        ),
        (
            json!({"conditions": [{"aggregate": "failure_rate()", "threshold": 5}]}),
            "0 to 1",
        ),
    ] {
        let mut full = json!({"project": "default", "name": "bad",
                              "actions": [{"id": "osprey.actions.webhook", "url": hook}]});
        full["conditions"] = args["conditions"].clone();
        let e = err(&client, "configure_alert", full).await;
        assert!(e.contains(hint) && e.contains("Examples"), "{hint}: {e}");
    }
    let e = err(
        &client,
        "configure_alert",
        json!({"project": "default", "name": "x", "actions": [{"id": "osprey.actions.email"}],
               "conditions": [{"id": "sentry.rules.conditions.first_seen_event.FirstSeenEventCondition"}]}),
    )
    .await;
    assert!(e.contains("osprey.actions.webhook"), "{e}");

    // capture_event goes through the log and the processor like an SDK event.
    let cap = ok(
        &client,
        "capture_event",
        json!({"project": "default", "level": "warning", "message": "disk almost full", "tags": {"host": "db1"}}),
    )
    .await;
    let event_id = cap["eventId"].as_str().unwrap().to_owned();
    drain(&store, &log);
    let s = ok(&client, "search_issues", json!({"query": "disk"})).await;
    assert_eq!(titles(&s["issues"]), vec!["disk almost full"]);
    assert_eq!(s["issues"][0]["level"], "warning");
    let ev = ok(&client, "get_event", json!({"event_id": event_id})).await;
    assert!(ev["event"]["tags"]
        .as_array()
        .unwrap()
        .iter()
        .any(|t| t["key"] == "host" && t["value"] == "db1"));
    let e = err(
        &client,
        "capture_event",
        json!({"project": "default", "level": "loud", "message": "x"}),
    )
    .await;
    assert!(e.contains("warning"), "{e}");

    // The captured event was a new issue: the "New issues" rule fired.
    let l = ok(&client, "list_alerts", json!({"project": "default"})).await;
    assert_eq!(l["issueRules"].as_array().unwrap().len(), 1);
    assert_eq!(l["issueRules"][0]["frequency"], 5);
    assert_eq!(l["metricRules"][0]["aggregate"], "apdex()");
    assert_eq!(l["fired"].as_array().unwrap().len(), 1, "{l:#}");
    assert_eq!(l["fired"][0]["ruleName"], "New issues");
    assert_eq!(l["fired"][0]["eventId"], event_id);
    assert!(l["fired"][0]["shortId"]
        .as_str()
        .unwrap()
        .starts_with("DEFAULT-"));
    let e = err(&client, "list_alerts", json!({"project": "nope"})).await;
    assert!(e.contains("Known projects"), "{e}");

    client.cancel().await.unwrap();
    log.close();
}

fn drain(store: &Store, log: &EmbeddedLog) {
    let p = Processor::new(store.clone(), ProcessorConfig::default()).unwrap();
    let reader = log.reader();
    let mut next = storage::consumer_offset(store, storage::EMBEDDED_CONSUMER).unwrap();
    for _ in 0..100 {
        match p.embedded_step(&reader, log, next).unwrap() {
            Some(n) => next = n,
            None => return,
        }
    }
    panic!("log did not drain");
}

#[tokio::test]
async fn a_follower_reads_fresh_data_and_refuses_writes() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), &StoreOptions::default()).unwrap();
    store.bootstrap(None, None).unwrap();
    store.flush().unwrap();
    let follower = Store::open_secondary(dir.path()).unwrap();
    let client = connect(mcp::OspreyTools::new(QueryService::new(follower), None)).await;
    let s = ok(&client, "search_issues", json!({})).await;
    assert_eq!(s["total"], 0);
    // The primary writes while the follower serves; the next call sees it.
    fill(&store);
    store.flush().unwrap();
    let s = ok(&client, "search_issues", json!({})).await;
    assert_eq!(s["total"], 3);
    let e = err(
        &client,
        "manage_issues",
        json!({"project": "default", "action": "bulk_update", "issues": ["1"], "changes": {"status": "resolved"}}),
    )
    .await;
    assert!(e.contains("--url"), "{e}");
    let e = err(
        &client,
        "capture_event",
        json!({"project": "default", "level": "info", "message": "x"}),
    )
    .await;
    assert!(e.contains("--url"), "{e}");
    client.cancel().await.unwrap();
}

/// A `session` or `sessions` item of project 1, as ingest logs it.
fn session_item(item_type: &str, payload: Value) -> LogRecord {
    let mut r = event_record(1, now(), &serde_json::to_vec(&payload).unwrap(), None);
    r.item_type = item_type.into();
    r.item_header = bytes::Bytes::from(format!("{{\"type\":\"{item_type}\"}}"));
    r
}

#[tokio::test]
async fn release_health_from_processed_sessions() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), &StoreOptions::default()).unwrap();
    store.bootstrap(None, None).unwrap();
    let started = (now() - 2 * MIN) as f64 / 1000.0;
    let update = |sid: u128, did: &str, release: &str, status: &str| {
        session_item(
            "session",
            json!({"sid": Uuid::from_u128(sid).to_string(), "did": did, "init": true,
                   "started": started, "status": status,
                   "attrs": {"release": release, "environment": "production"}}),
        )
    };
    let records = vec![
        update(1, "u1", "1.0", "exited"),
        update(2, "u2", "1.0", "crashed"),
        update(3, "u3", "1.0", "exited"),
        update(4, "u3", "1.0", "exited"),
        update(5, "u4", "2.0", "exited"),
        session_item(
            "sessions",
            json!({"aggregates": [{"started": started, "exited": 3, "errored": 1}],
                   "attrs": {"release": "2.0", "environment": "production"}}),
        ),
    ];
    let p = Processor::new(store.clone(), ProcessorConfig::default()).unwrap();
    p.process_and_commit(&records).unwrap();
    let client = connect(mcp::OspreyTools::new(QueryService::new(store), None)).await;

    let one = ok(
        &client,
        "get_release_health",
        json!({"project": "default", "release": "1.0", "timeRange": "1h"}),
    )
    .await;
    assert_eq!(one["total"]["sessions"], 4, "{one}");
    assert_eq!(one["total"]["sessionsCrashed"], 1, "{one}");
    assert_eq!(one["total"]["users"], 3, "{one}");
    assert_eq!(one["total"]["crashFreeSessions"], 75.0, "{one}");
    let free_users = one["total"]["crashFreeUsers"].as_f64().unwrap();
    assert!((free_users - 66.667).abs() < 1e-9, "{one}");
    assert_eq!(one["releases"], json!([]));

    let all = ok(
        &client,
        "get_release_health",
        json!({"project": "default", "environment": "production"}),
    )
    .await;
    assert_eq!(all["total"]["sessions"], 9, "{all}");
    assert_eq!(all["total"]["sessionsErrored"], 2, "{all}");
    let releases: Vec<(&str, i64)> = all["releases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["release"].as_str().unwrap(),
                r["sessions"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(releases, [("2.0", 5), ("1.0", 4)], "{all}");
    assert_eq!(all["releases"][0]["crashFreeSessions"], 100.0, "{all}");

    let e = err(
        &client,
        "get_release_health",
        json!({"project": "default", "timeRange": "forever"}),
    )
    .await;
    assert!(e.contains("timeRange"), "{e}");
}

/// `list_user_feedback`: a project's feedback newest first, and an issue's, with the issue a
/// report came before its event is linked to once the event is processed.
#[tokio::test]
async fn user_feedback_of_a_project_and_an_issue() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), &StoreOptions::default()).unwrap();
    store.bootstrap(None, None).unwrap();
    let p = Processor::new(store.clone(), ProcessorConfig::default()).unwrap();
    let feedback_item = |ty: &str, payload: Value, at: u64| {
        let mut r = event_record(1, at, payload.to_string().as_bytes(), None);
        r.item_type = ty.into();
        r.item_header = bytes::Bytes::from(format!("{{\"type\":\"{ty}\"}}"));
        r
    };
    let event = Uuid::from_u128(100).simple().to_string();
    p.process_and_commit(&[feedback_item(
        "user_report",
        json!({"event_id": event, "name": "Ann", "email": "ann@example.com",
               "comments": "Checkout crashed"}),
        now() - 2,
    )])
    .unwrap();
    p.process_and_commit(&[error(100, "ZeroDivisionError", "1.0", "u1", MIN, json!({}))])
        .unwrap();
    p.process_and_commit(&[feedback_item(
        "feedback",
        json!({"contexts": {"feedback": {"message": "Dark mode please",
                                         "url": "https://shop.example.com/"}}}),
        now() - 1,
    )])
    .unwrap();
    let issue = all_issues(&store)[0].id.to_string();
    let tools = mcp::OspreyTools::new(QueryService::new(store.clone()), None);
    let client = connect(tools).await;

    let all = ok(&client, "list_user_feedback", json!({"project": "default"})).await;
    let list = all["feedback"].as_array().unwrap();
    assert_eq!(list.len(), 2, "{all}");
    assert_eq!(list[0]["comments"], "Dark mode please");
    assert_eq!(list[0]["kind"], "feedback");
    assert_eq!(list[0]["url"], "https://shop.example.com/");
    assert_eq!(list[1]["comments"], "Checkout crashed");
    assert_eq!(list[1]["issueId"], issue.as_str());
    assert_eq!(list[1]["eventId"], event.as_str());
    assert_eq!(all["truncated"], false);
    let one = ok(
        &client,
        "list_user_feedback",
        json!({"project": "default", "limit": 1}),
    )
    .await;
    assert_eq!(one["truncated"], true);

    let of_issue = ok(&client, "list_user_feedback", json!({"issue": issue})).await;
    let list = of_issue["feedback"].as_array().unwrap();
    assert_eq!(list.len(), 1, "{of_issue}");
    assert_eq!(list[0]["name"], "Ann");

    let e = err(&client, "list_user_feedback", json!({})).await;
    assert!(e.contains("project"), "{e}");
    let e = err(&client, "list_user_feedback", json!({"project": "nope"})).await;
    assert!(e.contains("Known projects"), "{e}");
    client.cancel().await.unwrap();
}
