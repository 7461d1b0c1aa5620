//! Issue 8, release comparison: the real Python sentry-sdk sends errors and transactions under
//! three releases of one package — `shop@1.2.0`, then `shop@1.10.0`, then the hotfix line
//! `shop@1.9.0` — and `GET /api/0/projects/{org}/{project}/releases/{version}/stats/` must give,
//! for each release and its previous one, exactly the numbers the test computes from what it
//! sent: new issues, error events, users, transactions, failure rate and p95 (within the
//! histogram's 3 significant digits). The previous release is picked by semantic version
//! (1.9.0 before 1.10.0), not by arrival (1.10.0 came before 1.9.0) nor by string order.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{run_python, OspreyServer, ServerOptions};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

/// Bound on waiting for the processor.
const PROCESS_TIMEOUT: Duration = Duration::from_secs(60);

/// What one release sends.
struct ReleasePlan {
    version: &'static str,
    /// (exception type, user)
    errors: Vec<(&'static str, String)>,
    /// (name, duration µs, status, user)
    transactions: Vec<(String, u64, &'static str, String)>,
}

/// The numbers a release must show.
#[derive(Debug)]
struct Expected {
    new_issues: u64,
    events: u64,
    users: u64,
    transactions: u64,
    failure_rate: f64,
    p95_ms: f64,
}

fn plan() -> Vec<ReleasePlan> {
    let mut rng = StdRng::seed_from_u64(8);
    let errors = |spec: &[(&'static str, &str, usize)]| {
        spec.iter()
            .flat_map(|&(kind, user, n)| std::iter::repeat_n((kind, user.to_string()), n))
            .collect::<Vec<_>>()
    };
    let mut transactions = |n: usize, slow: u64, users: &[&str]| {
        (0..n)
            .map(|i| {
                let duration = 5_000 + rng.random_range(0..slow);
                let status = [
                    "ok",
                    "ok",
                    "ok",
                    "internal_error",
                    "cancelled",
                    "deadline_exceeded",
                ][rng.random_range(0..6)];
                (
                    format!("GET /checkout/{}", i % 3),
                    duration,
                    status,
                    users[i % users.len()].to_string(),
                )
            })
            .collect::<Vec<_>>()
    };
    vec![
        ReleasePlan {
            version: "shop@1.2.0",
            errors: errors(&[
                ("ValueError", "ana", 2),
                ("ValueError", "ben", 1),
                ("KeyError", "cy", 2),
            ]),
            transactions: transactions(30, 400_000, &["ana", "dee"]),
        },
        ReleasePlan {
            version: "shop@1.10.0",
            errors: errors(&[
                ("ValueError", "ana", 2),
                ("TypeError", "eve", 3),
                ("TypeError", "fay", 1),
            ]),
            transactions: transactions(40, 900_000, &["gus", "hal", "ana"]),
        },
        ReleasePlan {
            version: "shop@1.9.0",
            errors: errors(&[
                ("KeyError", "ivy", 1),
                ("ZeroDivisionError", "ana", 2),
                ("LookupError", "jo", 1),
            ]),
            transactions: transactions(25, 200_000, &["kim"]),
        },
    ]
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64
}

/// Nearest-rank percentile (rank ⌈q·n⌉), in ms.
fn nearest_rank(sorted: &[u64], q: f64) -> f64 {
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1] as f64 / 1000.0
}

fn expected(plans: &[ReleasePlan]) -> BTreeMap<&'static str, Expected> {
    let mut seen_types = BTreeSet::new();
    let mut out = BTreeMap::new();
    for p in plans {
        let new_issues = p
            .errors
            .iter()
            .filter(|(kind, _)| seen_types.insert(*kind))
            .count() as u64;
        let users: BTreeSet<&str> = p
            .errors
            .iter()
            .map(|(_, u)| u.as_str())
            .chain(p.transactions.iter().map(|t| t.3.as_str()))
            .collect();
        let mut durations: Vec<u64> = p.transactions.iter().map(|t| t.1).collect();
        durations.sort_unstable();
        // Sentry's failure rate: any status but ok, cancelled and unknown.
        let failures = p
            .transactions
            .iter()
            .filter(|t| !matches!(t.2, "ok" | "cancelled" | "unknown"))
            .count();
        out.insert(
            p.version,
            Expected {
                new_issues,
                events: p.errors.len() as u64,
                users: users.len() as u64,
                transactions: durations.len() as u64,
                failure_rate: failures as f64 / durations.len() as f64,
                p95_ms: nearest_rank(&durations, 0.95),
            },
        );
    }
    out
}

fn stats_path(version: &str, extra: &str) -> String {
    format!("/api/0/projects/default/default/releases/{version}/stats/?statsPeriod=1h{extra}")
}

/// Polls the stats of every release (bounded) until all its events and transactions count.
fn wait_until_processed(server: &OspreyServer, want: &BTreeMap<&'static str, Expected>) {
    let deadline = Instant::now() + PROCESS_TIMEOUT;
    loop {
        let done = want.iter().all(|(version, e)| {
            let (status, body) = server.api_get(&stats_path(version, ""));
            status == 200
                && body["release"]["events"] == e.events
                && body["release"]["transactions"] == e.transactions
        });
        if done {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "releases not processed within {PROCESS_TIMEOUT:?}\n{}",
            server.log_tail(40)
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn check_side(what: &str, side: &Value, version: &str, e: &Expected) {
    assert_eq!(side["version"], version, "{what}: {side}");
    assert_eq!(side["newIssues"], e.new_issues, "{what} newIssues: {side}");
    assert_eq!(side["events"], e.events, "{what} events: {side}");
    assert_eq!(side["users"], e.users, "{what} users: {side}");
    assert_eq!(
        side["transactions"], e.transactions,
        "{what} transactions: {side}"
    );
    let rate = side["failureRate"].as_f64().unwrap();
    assert!(
        (rate - e.failure_rate).abs() < 1e-12,
        "{what} failureRate {rate} vs {}",
        e.failure_rate
    );
    let p95 = side["p95"].as_f64().unwrap();
    assert!(
        (p95 - e.p95_ms).abs() <= e.p95_ms * 1e-3 + 1e-3,
        "{what} p95 {p95} ms is not within 3 significant digits of {} ms",
        e.p95_ms
    );
    assert_eq!(side["ospreyScanLimited"], false);
}

#[test]
fn release_comparison_numbers_match_what_the_sdk_sent() {
    let server = OspreyServer::start(ServerOptions::default());
    let plans = plan();
    let want = expected(&plans);
    let start = now_us() - 600_000_000;
    let releases: Vec<Value> = plans
        .iter()
        .map(|p| {
            json!({
                "version": p.version,
                "errors": p.errors.iter().map(|(kind, user)| json!({"type": kind, "user": user})).collect::<Vec<_>>(),
                "transactions": p.transactions.iter().enumerate().map(|(i, (name, d, status, user))| json!({
                    "name": name, "start_us": start + i as u64 * 1_000_000, "duration_us": d,
                    "status": status, "user": user,
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let plan_path = dir.path().join("plan.json");
    std::fs::write(&plan_path, json!({"releases": releases}).to_string()).unwrap();
    let out = run_python(
        "python_releases.py",
        &[server.dsn(), plan_path.to_str().unwrap()],
        &[],
    );
    out.assert_success();
    wait_until_processed(&server, &want);

    // Each release next to its previous one by semantic version.
    for (version, previous) in [
        ("shop@1.10.0", Some("shop@1.9.0")),
        ("shop@1.9.0", Some("shop@1.2.0")),
        ("shop@1.2.0", None),
    ] {
        let (status, body) = server.api_get(&stats_path(version, ""));
        assert_eq!(status, 200, "{body}");
        check_side(version, &body["release"], version, &want[version]);
        match previous {
            Some(prev) => {
                assert_eq!(body["previousOrder"], "semver", "{body}");
                check_side(
                    &format!("previous of {version}"),
                    &body["previous"],
                    prev,
                    &want[prev],
                );
                let (now, before) = (&want[version], &want[prev]);
                let changes = &body["changes"];
                assert_eq!(changes["events"], now.events as i64 - before.events as i64);
                assert_eq!(changes["users"], now.users as i64 - before.users as i64);
                assert_eq!(
                    changes["newIssues"],
                    now.new_issues as i64 - before.new_issues as i64
                );
                let delta = changes["failureRate"].as_f64().unwrap();
                assert!((delta - (now.failure_rate - before.failure_rate)).abs() < 1e-12);
            }
            None => {
                assert!(body["previous"].is_null(), "{body}");
                assert_eq!(body["previousOrder"], "none");
            }
        }
    }
    // Another baseline on request.
    let (_, body) = server.api_get(&stats_path("shop@1.10.0", "&previous=shop@1.2.0"));
    check_side(
        "explicit previous",
        &body["previous"],
        "shop@1.2.0",
        &want["shop@1.2.0"],
    );
    // Clear errors.
    let (status, body) = server.api_get(&stats_path("shop@9.9.9", ""));
    assert_eq!(status, 404, "{body}");
    let (status, body) = server
        .api_get("/api/0/projects/default/default/releases/shop@1.2.0/stats/?statsPeriod=soon");
    assert_eq!(status, 400, "{body}");
    assert!(
        body["detail"].as_str().unwrap().contains("statsPeriod"),
        "{body}"
    );
}
