//! Discover (`events/`, `events/validate/`) and trace endpoints over stored errors and
//! transactions written the way the processor stores them.

use serde_json::{json, Value};
use storage::records::StoredEvent;
use storage::{cf, keys, now_ms, Store, WriteBatch};
use uuid::Uuid;

use super::testutil::Fixture;
use super::util::percent_encode;

const TRACE: &str = "a1b2c3d4e5f60718293a4b5c6d7e8f90";

fn store_event(store: &Store, id: Uuid, ts_ms: u64, issue_id: Option<u64>, event: Value) {
    let stored = StoredEvent {
        event_id: id.simple().to_string(),
        project_id: 1,
        issue_id,
        timestamp_ms: ts_ms,
        received_ms: ts_ms,
        hashes: vec![],
        event,
    };
    let mut batch = WriteBatch::default();
    batch.put_cf(
        &store.cf(cf::EVENTS),
        keys::event(1, &id),
        storage::records::encode_event(&stored, 1).unwrap(),
    );
    batch.put_cf(
        &store.cf(cf::INDEX),
        keys::index_by_time(keys::index::PROJECT_TIME, 1, ts_ms, &id),
        [],
    );
    if let Some(trace) = stored
        .event
        .pointer("/contexts/trace/trace_id")
        .and_then(Value::as_str)
    {
        let trace = Uuid::try_parse(trace).unwrap();
        batch.put_cf(
            &store.cf(cf::INDEX),
            keys::index_trace(&trace, ts_ms, &id),
            [],
        );
    }
    store.write(batch, false).unwrap();
}

/// `n` transactions named `name` with durations `base + i` ms; the first one in `TRACE` with
/// two child spans; every fifth one failed.
fn transactions(store: &Store, name: &str, n: u64, base_ms: u64, seed: u128) {
    let now = now_ms();
    for i in 0..n {
        let ts = now - (i + 1) * 1_000;
        let end = ts as f64 / 1000.0;
        let start = end - (base_ms + i) as f64 / 1000.0;
        let trace = if i == 0 && seed == 1 {
            TRACE.to_owned()
        } else {
            format!("{:032x}", seed * 1000 + i as u128)
        };
        let span_id = format!("{:016x}", seed * 1000 + i as u128);
        let status = if i % 5 == 4 { "internal_error" } else { "ok" };
        let spans = if i == 0 && seed == 1 {
            json!([
                {"span_id": "1000000000000001", "parent_span_id": span_id, "op": "db", "description": "SELECT 1",
                 "start_timestamp": start, "timestamp": start + 0.010},
                {"span_id": "1000000000000002", "parent_span_id": "1000000000000001", "op": "db.fetch", "description": "fetch rows",
                 "start_timestamp": start + 0.001, "timestamp": start + 0.005},
            ])
        } else {
            json!([])
        };
        store_event(
            store,
            Uuid::from_u128((seed << 64) | i as u128),
            ts,
            None,
            json!({
                "type": "transaction", "transaction": name, "title": name, "environment": "production", "release": "1.0",
                "start_timestamp": start, "timestamp": end, "user": {"id": format!("u{}", i % 3)},
                "contexts": {"trace": {"trace_id": trace, "span_id": span_id, "op": "http.server", "status": status}},
                "spans": spans,
            }),
        );
    }
}

fn setup() -> Fixture {
    let f = Fixture::new();
    transactions(&f.store, "/checkout", 20, 100, 1);
    transactions(&f.store, "/home", 10, 10, 2);
    // Two errors, one inside the checkout trace's db span.
    store_event(
        &f.store,
        Uuid::from_u128(77),
        now_ms() - 500,
        Some(5),
        json!({
            "type": "error", "title": "ValueError: bad", "level": "error", "environment": "production",
            "culprit": "shop.views in pay", "user": {"email": "ann@example.invalid"},
            "exception": {"values": [{"type": "ValueError", "value": "bad", "mechanism": {"handled": false}}]},
            "contexts": {"trace": {"trace_id": TRACE, "span_id": "1000000000000001"}},
            "tags": [["environment", "production"], ["browser", "Firefox"]],
        }),
    );
    store_event(
        &f.store,
        Uuid::from_u128(78),
        now_ms() - 600,
        Some(6),
        json!({
            "type": "error", "title": "KeyError: x", "level": "warning", "environment": "staging",
            "user": {"email": "bob@example.invalid"}, "tags": [["environment", "staging"]],
        }),
    );
    f
}

fn events(f: &Fixture, dataset: &str, fields: &[&str], extra: &str) -> super::ApiResponse {
    let mut path = format!("/api/0/organizations/default/events/?dataset={dataset}&statsPeriod=14d&per_page=50&referrer=api.mcp.search-events");
    for field in fields {
        path.push_str(&format!("&field={}", percent_encode(field)));
    }
    path.push_str(extra);
    f.get(&path)
}

fn row<'a>(data: &'a Value, key: &str, value: &str) -> &'a Value {
    data.as_array()
        .unwrap()
        .iter()
        .find(|r| r[key] == value)
        .unwrap_or_else(|| panic!("no row {key}={value} in {data}"))
}

#[test]
fn aggregates_by_transaction() {
    let f = setup();
    let fields = [
        "transaction",
        "count()",
        "p50(transaction.duration)",
        "p95()",
        "avg(transaction.duration)",
        "failure_rate()",
        "apdex()",
        "count_unique(user)",
        "tpm()",
        "last_seen()",
    ];
    let r = events(&f, "transactions", &fields, "&sort=-count()");
    assert_eq!(r.status, 200, "{}", r.body);
    let data = &r.body["data"];
    assert_eq!(data[0]["transaction"], "/checkout");
    let c = row(data, "transaction", "/checkout");
    assert_eq!(c["count()"], 20);
    // Durations 100..=119 ms: nearest-rank p50 = 109, p95 = 118, avg = 109.5 (float ms).
    assert!(
        (c["p50(transaction.duration)"].as_f64().unwrap() - 109.0).abs() < 0.01,
        "{c}"
    );
    assert!((c["p95()"].as_f64().unwrap() - 118.0).abs() < 0.01, "{c}");
    assert!((c["avg(transaction.duration)"].as_f64().unwrap() - 109.5).abs() < 0.01);
    assert_eq!(c["failure_rate()"], 0.2);
    assert_eq!(c["apdex()"], 1.0);
    assert_eq!(c["count_unique(user)"], 3);
    assert!(c["tpm()"].as_f64().unwrap() > 0.0);
    assert!(c["last_seen()"].as_str().unwrap().ends_with('Z'));
    let h = row(data, "transaction", "/home");
    assert_eq!(h["count()"], 10);
    assert_eq!(h["failure_rate()"], 0.2);
    assert_eq!(r.body["meta"]["fields"]["p95()"], "duration");
    assert_eq!(r.body["meta"]["units"]["p95()"], "millisecond");
    assert_eq!(r.body["meta"]["fields"]["count()"], "integer");
    assert_eq!(r.body["meta"]["fields"]["failure_rate()"], "percentage");
    // Filters and apdex with an explicit threshold.
    let r = events(
        &f,
        "transactions",
        &["count()", "apdex(105)"],
        "&query=transaction:/checkout",
    );
    assert_eq!(r.body["data"][0]["count()"], 20);
    // 100..=105 satisfied (6), the other 14 tolerated: (6 + 7) / 20.
    assert_eq!(r.body["data"][0]["apdex(105)"], 0.65);
    let r = events(
        &f,
        "transactions",
        &["count()"],
        "&query=transaction.duration:>115",
    );
    assert_eq!(r.body["data"][0]["count()"], 4);
}

#[test]
fn spans_and_errors_datasets() {
    let f = setup();
    let r = events(
        &f,
        "spans",
        &["transaction", "count()", "p95(span.duration)"],
        "&query=is_transaction:true&sort=-count()",
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let c = row(&r.body["data"], "transaction", "/checkout");
    assert_eq!(c["count()"], 20);
    assert!((c["p95(span.duration)"].as_f64().unwrap() - 118.0).abs() < 0.01);
    let r = events(&f, "spans", &["span.op", "count()"], "&query=span.op:db*");
    let ops: Vec<&str> = r.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["span.op"].as_str().unwrap())
        .collect();
    assert_eq!(ops.len(), 2);
    // Errors: default fields, then a grouping with count().
    let r = events(
        &f,
        "errors",
        &[
            "issue",
            "title",
            "project",
            "timestamp",
            "level",
            "message",
            "error.type",
            "culprit",
            "user.email",
            "user.id",
        ],
        "&sort=-timestamp",
    );
    let data = r.body["data"].as_array().unwrap();
    assert_eq!(data.len(), 2);
    assert_eq!(data[0]["title"], "ValueError: bad");
    assert_eq!(data[0]["error.type"], "ValueError");
    assert_eq!(data[0]["user.email"], "ann@example.invalid");
    assert_eq!(data[0]["project"], "default");
    let r = events(
        &f,
        "errors",
        &["level", "count()"],
        "&query=environment:production",
    );
    assert_eq!(r.body["data"], json!([{"level": "error", "count()": 1}]));
    let r = events(
        &f,
        "errors",
        &["title", "count()"],
        "&query=browser:Firefox",
    );
    assert_eq!(r.body["data"][0]["count()"], 1);
    let r = events(&f, "errors", &["count()"], "&environment=staging");
    assert_eq!(r.body["data"][0]["count()"], 1);
    // Bad requests are 400 with a reason.
    assert_eq!(events(&f, "errors", &["bogus()"], "").status, 400);
    assert_eq!(events(&f, "logs", &["count()"], "").status, 400);
    assert_eq!(
        events(&f, "errors", &["count()"], "&query=level%3A%22x").status,
        400
    );
}

#[test]
fn validate_echoes_each_part() {
    let f = setup();
    let r = f.get("/api/0/organizations/default/events/validate/?dataset=spans&field=transaction&field=count()&query=is_transaction:true&orderby=-count()&project=1&statsPeriod=14d");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["valid"], true);
    assert_eq!(
        r.body["field"][1],
        json!({"name": "count()", "valid": true, "attrType": "number", "error": null})
    );
    assert_eq!(r.body["query"]["valid"], true);
    let bad = f.get(
        "/api/0/organizations/default/events/validate/?dataset=spans&field=nope(&query=a%20OR%20b",
    );
    assert_eq!(bad.status, 400);
    assert_eq!(bad.body["valid"], false);
    assert_eq!(bad.body["field"][0]["valid"], false);
    assert_eq!(bad.body["query"]["valid"], false);
}

#[test]
fn trace_meta_and_tree() {
    let f = setup();
    let meta = f.get(&format!(
        "/api/0/organizations/default/trace-meta/{TRACE}/?statsPeriod=14d"
    ));
    assert_eq!(meta.status, 200, "{}", meta.body);
    assert_eq!(meta.body["transactions"], 1);
    assert_eq!(meta.body["errors"], 1);
    assert_eq!(meta.body["span_count"], 3);
    assert_eq!(meta.body["span_count_map"]["db"], 1);
    assert_eq!(meta.body["transaction_child_count_map"][0]["count()"], 2);
    let tree = f.get(&format!(
        "/api/0/organizations/default/trace/{TRACE}/?limit=10000&project=-1&statsPeriod=14d"
    ));
    assert_eq!(tree.status, 200, "{}", tree.body);
    let roots = tree.body.as_array().unwrap();
    assert_eq!(roots.len(), 1);
    let root = &roots[0];
    assert_eq!(root["transaction"], "/checkout");
    assert_eq!(root["is_transaction"], true);
    assert_eq!(root["project_slug"], "default");
    assert!((root["duration"].as_f64().unwrap() - 100.0).abs() < 0.01);
    let db = &root["children"][0];
    assert_eq!(db["op"], "db");
    assert_eq!(db["errors"][0]["title"], "ValueError: bad");
    assert_eq!(db["children"][0]["op"], "db.fetch");
    assert_eq!(
        f.get("/api/0/organizations/default/trace/ffffffffffffffffffffffffffffffff/")
            .status,
        404
    );
    assert_eq!(
        f.get("/api/0/organizations/default/trace/not-a-trace/")
            .status,
        400
    );
    let acme = f.store.create_organization("acme", "Acme").unwrap();
    let foreign = f.token(acme.id, storage::ALL_SCOPES);
    let r = f.call(
        http::Method::GET,
        &format!("/api/0/organizations/acme/trace/{TRACE}/"),
        Some(&foreign),
        None,
    );
    assert_eq!(r.status, 404);
}

/// `events-stats/`: Discover aggregates per interval, for one series or several.
#[test]
fn events_stats_series() {
    let f = setup();
    let stats = |query: &str| -> Value {
        let r = f.get(&format!(
            "/api/0/organizations/default/events-stats/?{query}"
        ));
        assert_eq!(r.status, 200, "{query}: {}", r.body);
        r.body
    };
    let total = |series: &Value| -> f64 {
        series["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|point| point[1][0]["count"].as_f64().unwrap())
            .sum()
    };
    let errors = stats("dataset=errors&statsPeriod=1h&interval=1h");
    assert_eq!(total(&errors), 2.0, "{errors}");
    let points = errors["data"].as_array().unwrap();
    assert!((1..=2).contains(&points.len()), "{errors}");
    // Points are aligned to the interval and one interval apart.
    let first = points[0][0].as_u64().unwrap();
    assert_eq!(first % 3600, 0);
    assert_eq!(errors["start"].as_u64(), Some(first));
    assert_eq!(
        total(&stats(
            "dataset=errors&statsPeriod=1h&interval=1h&environment=staging"
        )),
        1.0
    );
    let checkout = stats(&format!(
        "dataset=transactions&statsPeriod=1h&interval=1m&query={}",
        percent_encode("transaction:/checkout")
    ));
    assert_eq!(total(&checkout), 20.0);
    // Several series: keyed by their yAxis, in order.
    let both = stats(&format!(
        "dataset=transactions&statsPeriod=1h&interval=1h&yAxis=count()&yAxis={}",
        percent_encode("p95(transaction.duration)")
    ));
    assert_eq!(total(&both["count()"]), 30.0, "{both}");
    assert_eq!(both["count()"]["order"], 0);
    assert_eq!(both["p95(transaction.duration)"]["order"], 1);
    assert!(total(&both["p95(transaction.duration)"]) > 0.0, "{both}");
    for bad in [
        "yAxis=title",
        "interval=1s&statsPeriod=14d",
        "interval=soon",
        "yAxis=nope(x)",
    ] {
        let r = f.get(&format!("/api/0/organizations/default/events-stats/?{bad}"));
        assert_eq!(r.status, 400, "{bad}: {}", r.body);
    }
}
