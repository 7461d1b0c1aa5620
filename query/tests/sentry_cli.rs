//! The real `sentry-cli` (OSPREY_SENTRY_CLI, installed by scripts/test) against the API served
//! in-process on loopback: `info`, `releases new|finalize|list|info`, `releases set-commits
//! --commit`, `deploys new`, `events list`, and the results visible through the API.

mod common;

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use common::serve;
use http::Method;
use query::api::{ApiConfig, ApiRequest, ApiService};
use query::QueryService;
use serde_json::{json, Value};
use storage::{Store, StoreOptions};

const TOKEN: &str = "cli-test-admin-token";

fn sentry_cli() -> String {
    std::env::var("OSPREY_SENTRY_CLI")
        .expect("OSPREY_SENTRY_CLI must name the sentry-cli binary (scripts/test sets it)")
}

fn run_cli(addr: SocketAddr, args: &[&str]) -> String {
    let mut child = Command::new(sentry_cli());
    child
        .args(args)
        .env("SENTRY_URL", format!("http://{addr}"))
        .env("SENTRY_AUTH_TOKEN", TOKEN)
        .env("SENTRY_ORG", "default")
        .env("SENTRY_PROJECT", "default")
        .env("SENTRY_LOAD_DOTENV", "0")
        .env_remove("SENTRY_DSN")
        .env_remove("SENTRY_PROPERTIES")
        .current_dir(std::env::temp_dir());
    let out = child.output().expect("run sentry-cli");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "sentry-cli {args:?} failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn sentry_cli_releases_and_deploys() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), &StoreOptions::default()).unwrap();
    store.bootstrap(None, Some(TOKEN)).unwrap();
    let api = ApiService::new(QueryService::new(store.clone()), ApiConfig::default());
    let addr = serve(api.clone());
    std::thread::sleep(Duration::from_millis(50));
    let get = |path: &str| -> Value {
        api.call(&ApiRequest::new(Method::GET, path).bearer(TOKEN))
            .body
    };

    let info = run_cli(addr, &["info"]);
    assert!(info.contains("project:releases"), "{info}");

    run_cli(addr, &["releases", "new", "shop@2.4.0"]);
    run_cli(addr, &["releases", "finalize", "shop@2.4.0"]);
    let listed = run_cli(addr, &["releases", "list"]);
    assert!(listed.contains("shop@2.4.0"), "{listed}");
    let shown = run_cli(addr, &["releases", "info", "shop@2.4.0"]);
    assert!(shown.contains("shop@2.4.0"), "{shown}");

    // set-commits --commit needs the repository registered first, as on Sentry.
    let repo = api.call(
        &ApiRequest::new(Method::POST, "/api/0/organizations/default/repos/")
            .bearer(TOKEN)
            .json(&json!({"name": "acme/shop"})),
    );
    assert_eq!(repo.status, 201);
    run_cli(
        addr,
        &[
            "releases",
            "set-commits",
            "shop@2.4.0",
            "--commit",
            "acme/shop@0123abcd0123abcd0123abcd0123abcd0123abcd",
        ],
    );
    run_cli(
        addr,
        &[
            "deploys",
            "new",
            "-r",
            "shop@2.4.0",
            "-e",
            "production",
            "-n",
            "blue",
        ],
    );

    let release = get("/api/0/organizations/default/releases/shop@2.4.0/");
    assert_eq!(release["version"], "shop@2.4.0");
    assert!(
        release["dateReleased"]
            .as_str()
            .is_some_and(|d| d.ends_with('Z')),
        "{release}"
    );
    assert_eq!(
        release["lastCommit"]["id"],
        "0123abcd0123abcd0123abcd0123abcd0123abcd"
    );
    assert_eq!(release["deployCount"], 1);
    assert_eq!(release["projects"][0]["slug"], "default");
    let deploys = get("/api/0/organizations/default/releases/shop@2.4.0/deploys/");
    assert_eq!(deploys[0]["environment"], "production");
    assert_eq!(deploys[0]["name"], "blue");
    let deploys_cli = run_cli(addr, &["deploys", "list", "-r", "shop@2.4.0"]);
    assert!(
        deploys_cli.contains("production") && deploys_cli.contains("blue"),
        "{deploys_cli}"
    );
}

/// `sentry-cli events list` reads `GET /projects/{org}/{project}/events/`: the project's error
/// events (not its transactions), newest first, with users and tags.
#[test]
fn sentry_cli_lists_a_projects_error_events() {
    use processor::pipeline::event_record;
    use processor::{Processor, ProcessorConfig};

    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), &StoreOptions::default()).unwrap();
    store.bootstrap(None, Some(TOKEN)).unwrap();
    let now = storage::now_ms();
    let mut records = Vec::new();
    for (i, ty) in ["CartError", "PaymentError", "StockError"]
        .iter()
        .enumerate()
    {
        let ev = json!({
            "event_id": format!("{:032x}", 0xe0 + i),
            "timestamp": (now - 60_000 + i as u64 * 1000) as f64 / 1000.0,
            "user": {"email": format!("buyer{i}@example.com")},
            "tags": {"shop": "north"},
            "exception": {"values": [{"type": ty, "value": "went wrong"}]},
        });
        records.push(event_record(1, now, ev.to_string().as_bytes(), None));
    }
    let tx = json!({
        "type": "transaction", "event_id": format!("{:032x}", 0xf0),
        "transaction": "GET /checkout-page",
        "start_timestamp": (now - 2_000) as f64 / 1000.0, "timestamp": (now - 1_000) as f64 / 1000.0,
        "contexts": {"trace": {"trace_id": "a".repeat(32), "span_id": "b".repeat(16), "op": "http.server"}},
    });
    records.push(event_record(1, now, tx.to_string().as_bytes(), None));
    Processor::new(store.clone(), ProcessorConfig::default())
        .unwrap()
        .process_and_commit(&records)
        .unwrap();
    let api = ApiService::new(QueryService::new(store.clone()), ApiConfig::default());
    let addr = serve(api.clone());
    std::thread::sleep(Duration::from_millis(50));

    let stored_tx = api.call(
        &ApiRequest::new(
            Method::GET,
            &format!("/api/0/projects/default/default/events/{:032x}/", 0xf0),
        )
        .bearer(TOKEN),
    );
    assert_eq!(
        stored_tx.status, 200,
        "the transaction is stored: {}",
        stored_tx.body
    );
    let listed = run_cli(addr, &["events", "list", "--show-user", "--show-tags"]);
    for expected in [
        "CartError",
        "PaymentError",
        "StockError",
        "buyer2@example.com",
        "shop: north",
    ] {
        assert!(listed.contains(expected), "{expected} missing:\n{listed}");
    }
    assert!(
        !listed.contains("checkout-page"),
        "a transaction was listed:\n{listed}"
    );

    // Newest first, paged with Sentry's cursors.
    let page = |path: &str| api.call(&ApiRequest::new(Method::GET, path).bearer(TOKEN));
    let first = page("/api/0/projects/default/default/events/?per_page=2");
    assert_eq!(first.status, 200, "{}", first.body);
    let titles: Vec<&str> = first
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["title"].as_str().unwrap())
        .collect();
    assert_eq!(
        titles,
        ["StockError: went wrong", "PaymentError: went wrong"]
    );
    assert!(first
        .link
        .as_deref()
        .unwrap()
        .contains("rel=\"next\"; results=\"true\""));
    let second = page("/api/0/projects/default/default/events/?per_page=2&cursor=0:2:0");
    let rest = second.body.as_array().unwrap();
    assert_eq!(rest.len(), 1, "{}", second.body);
    assert_eq!(rest[0]["title"], "CartError: went wrong");
    assert!(second
        .link
        .as_deref()
        .unwrap()
        .contains("rel=\"next\"; results=\"false\""));
}
