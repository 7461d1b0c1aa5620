//! The real `sentry-cli` (OSPREY_SENTRY_CLI, installed by scripts/test) against the API served
//! in-process on loopback: `info`, `releases new|finalize|list|info`, `releases set-commits
//! --commit`, `deploys new`, and the results visible through the API.

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
