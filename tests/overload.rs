//! Overload (issue 10): offered load far past what a deliberately small server accepts (a 1 MiB
//! log backlog budget, a per-second error quota, a small budget for bodies in flight) is shed
//! with 429/503 + Retry-After, accepted requests are answered within the client's timeout,
//! resident memory stays bounded, and when the load stops the server recovers by itself and
//! every accepted event is stored.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{OspreyServer, ServerOptions};
use uuid::Uuid;

/// Concurrent senders.
const SENDERS: usize = 8;
/// How long the overload lasts.
const LOAD: Duration = Duration::from_secs(6);
/// Any answer must come within this (the client timeout is the bound on latency).
const CLIENT_TIMEOUT: Duration = Duration::from_secs(10);
/// Resident memory the server may reach under load.
const RSS_BOUND_KIB: u64 = 512 * 1024;
/// Errors accepted per project per second.
const QUOTA_PER_SEC: u64 = 150;

fn config() -> String {
    format!(
        "[log]\nmax_inflight_mib = 1\nmax_backlog_mib = 1\n\
         [ingest]\nmax_inflight_body_bytes = 4194304\n\
         [ingest.rate_limits]\nwindow_secs = 1\n[ingest.rate_limits.project]\nerror = {QUOTA_PER_SEC}\n"
    )
}

fn envelope(id: Uuid, pad: usize) -> Vec<u8> {
    let payload = serde_json::json!({
        "event_id": id.simple().to_string(),
        "timestamp": storage::now_ms() as f64 / 1000.0,
        "platform": "python",
        "level": "error",
        "exception": {"values": [{"type": "OverloadError", "value": "burst"}]},
        "extra": {"pad": "p".repeat(pad)},
    })
    .to_string();
    format!(
        "{{\"event_id\":\"{}\"}}\n{{\"type\":\"event\",\"length\":{}}}\n{payload}\n",
        id.simple(),
        payload.len()
    )
    .into_bytes()
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

#[derive(Default)]
struct Tally {
    statuses: HashMap<u16, u64>,
    accepted: Vec<Uuid>,
    accepted_latency: Vec<Duration>,
    shed_without_retry_after: u64,
    failures: Vec<String>,
}

#[test]
fn overload_is_shed_with_retry_after_and_the_server_recovers() {
    let mut server = OspreyServer::start(ServerOptions {
        config: Some(config()),
        ..Default::default()
    });
    let pid = server.pid().expect("pid");
    let baseline = rss_kib(pid);
    let url = server.url("/api/1/envelope/");
    let key = server.default_key().to_owned();
    let tally = Arc::new(Mutex::new(Tally::default()));
    let stop = Arc::new(AtomicBool::new(false));

    let senders: Vec<_> = (0..SENDERS)
        .map(|n| {
            let (url, key, tally, stop) = (url.clone(), key.clone(), tally.clone(), stop.clone());
            std::thread::spawn(move || {
                let client = common::http_with_timeout(CLIENT_TIMEOUT);
                // Mixed sizes: many small events and some of 200 KB, which fill the log budget.
                for i in 0..1_000_000usize {
                    if stop.load(Ordering::Acquire) {
                        break;
                    }
                    let id = Uuid::new_v4();
                    let pad = if (i + n) % 4 == 0 { 200_000 } else { 500 };
                    let started = Instant::now();
                    let sent = client
                        .post(&url)
                        .header(
                            "X-Sentry-Auth",
                            format!("Sentry sentry_version=7, sentry_key={key}"),
                        )
                        .body(envelope(id, pad))
                        .send();
                    let mut t = tally.lock().unwrap();
                    match sent {
                        Ok(resp) => {
                            let status = resp.status().as_u16();
                            *t.statuses.entry(status).or_default() += 1;
                            match status {
                                200 => {
                                    t.accepted.push(id);
                                    t.accepted_latency.push(started.elapsed());
                                }
                                429 | 503 => {
                                    if resp.headers().get("retry-after").is_none() {
                                        t.shed_without_retry_after += 1;
                                    }
                                }
                                other => t.failures.push(format!("unexpected status {other}")),
                            }
                        }
                        Err(e) => t
                            .failures
                            .push(format!("no answer in {CLIENT_TIMEOUT:?}: {e}")),
                    }
                }
            })
        })
        .collect();

    let started = Instant::now();
    let mut peak = baseline;
    while started.elapsed() < LOAD {
        peak = peak.max(rss_kib(pid));
        std::thread::sleep(Duration::from_millis(100));
    }
    stop.store(true, Ordering::Release);
    for s in senders {
        s.join().expect("sender");
    }
    peak = peak.max(rss_kib(pid));
    let tally = std::mem::take(&mut *tally.lock().unwrap());
    let mut latencies = tally.accepted_latency.clone();
    latencies.sort();
    let p99 = latencies
        .get(latencies.len().saturating_sub(1) * 99 / 100)
        .copied()
        .unwrap_or_default();
    eprintln!(
        "overload: statuses {:?}, accepted p99 {p99:?}, RSS baseline {} MiB peak {} MiB",
        tally.statuses,
        baseline / 1024,
        peak / 1024
    );
    assert!(
        tally.failures.is_empty(),
        "failures: {:?}",
        &tally.failures[..tally.failures.len().min(5)]
    );
    let shed = tally.statuses.get(&429).copied().unwrap_or(0)
        + tally.statuses.get(&503).copied().unwrap_or(0);
    assert!(
        shed > 0,
        "the load never went past capacity: {:?}",
        tally.statuses
    );
    assert!(
        !tally.accepted.is_empty(),
        "nothing was accepted under overload"
    );
    assert_eq!(
        tally.shed_without_retry_after, 0,
        "every 429/503 carries Retry-After"
    );
    assert!(
        peak < RSS_BOUND_KIB,
        "RSS peaked at {peak} KiB (bound {RSS_BOUND_KIB} KiB)"
    );

    // Recovery without intervention: the backlog drains and a new event is accepted again.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let metrics = common::http()
            .get(server.url("/metrics"))
            .send()
            .and_then(|r| r.text())
            .unwrap_or_default();
        if metrics
            .lines()
            .any(|l| l.trim() == "osprey_log_backlog_bytes 0")
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the backlog never drained:\n{metrics}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // The quota window is 1 s: within a few windows a normal event gets through again.
    let client = common::http_with_timeout(CLIENT_TIMEOUT);
    let recovered = (0..50).find_map(|_| {
        let id = Uuid::new_v4();
        let status = client
            .post(&url)
            .header(
                "X-Sentry-Auth",
                format!("Sentry sentry_version=7, sentry_key={key}"),
            )
            .body(envelope(id, 100))
            .send()
            .map(|r| r.status().as_u16())
            .unwrap_or(0);
        if status == 200 {
            Some(id)
        } else {
            std::thread::sleep(Duration::from_millis(200));
            None
        }
    });
    let recovered =
        recovered.expect("the server did not accept events again after the load stopped");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let metrics = common::http()
            .get(server.url("/metrics"))
            .send()
            .and_then(|r| r.text())
            .unwrap_or_default();
        if metrics
            .lines()
            .any(|l| l.trim() == "osprey_log_backlog_bytes 0")
        {
            break;
        }
        assert!(Instant::now() < deadline, "the backlog never drained");
        std::thread::sleep(Duration::from_millis(200));
    }
    server.stop();

    // Every accepted event is stored.
    let mut wanted: Vec<(u64, Uuid)> = tally.accepted.iter().map(|id| (1, *id)).collect();
    wanted.push((1, recovered));
    let found = common::find_items(server.data_dir(), &wanted);
    let lost: Vec<&Uuid> = wanted
        .iter()
        .map(|(_, id)| id)
        .filter(|id| !found.contains_key(id))
        .collect();
    assert!(
        lost.is_empty(),
        "{} of {} accepted events were lost: {:?}",
        lost.len(),
        wanted.len(),
        &lost[..lost.len().min(5)]
    );
}
