//! Accuracy of the performance queries against the exact answers computed from the raw
//! durations: random duration sets from several distributions (heavy tails included), spread
//! over days, folded through the processor's `TransactionFolder` into a real RocksDB, queried
//! over ranges that cut minute, hour and day buckets, with filters and breakdowns.
//!
//! Percentiles must be within the histogram's precision (3 significant digits) of the exact
//! nearest-rank value; count, failure rate, apdex, average and error counts must be exact.

use std::collections::BTreeMap;

use processor::transactions::{count_error_event, TransactionFolder};
use query::perf::{GroupBy, PerfQuery, PerfStats, SortBy, TimeRange};
use query::QueryService;
use serde_json::json;
use storage::{Store, StoreOptions, WriteBatch};

/// SplitMix64: deterministic, dependency-free randomness.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn unit(&mut self) -> f64 {
        ((self.next() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn normal(&mut self) -> f64 {
        (-2.0 * self.unit().ln()).sqrt() * (2.0 * std::f64::consts::PI * self.unit()).cos()
    }
}

/// A duration in µs from one of several distributions, chosen per transaction name.
fn duration_us(rng: &mut Rng, dist: usize) -> u64 {
    let us = match dist {
        // Uniform 0.1 ms … 2 s.
        0 => 100.0 + rng.unit() * 2_000_000.0,
        // Log-normal around 120 ms.
        1 => (120_000f64.ln() + 0.9 * rng.normal()).exp(),
        // Pareto, alpha 1.1: a very heavy tail (minutes, occasionally hours).
        2 => 20_000.0 / rng.unit().powf(1.0 / 1.1),
        // Exponential, mean 40 ms, with sub-millisecond values.
        3 => -40_000.0 * rng.unit().ln(),
        // Bimodal: cache hits at ~2 ms and misses at ~900 ms.
        _ => {
            if rng.below(4) == 0 {
                900_000.0 + 50_000.0 * rng.normal()
            } else {
                2_000.0 + 300.0 * rng.normal()
            }
        }
    };
    us.clamp(0.0, 4.0e9) as u64
}

const TRANSACTIONS: [&str; 5] = ["/checkout", "/slow", "GET /api/items", "task.sync", "/ping"];
const ENVIRONMENTS: [Option<&str>; 3] = [Some("production"), Some("staging"), None];
const RELEASES: [&str; 3] = ["1.0.0", "1.1.0", "2.0.0"];
const STATUSES: [&str; 8] = [
    "ok",
    "ok",
    "ok",
    "cancelled",
    "unknown",
    "internal_error",
    "not_found",
    "deadline_exceeded",
];

#[derive(Clone)]
struct Raw {
    end_ms: u64,
    duration_us: u64,
    failed: bool,
    transaction: &'static str,
    environment: &'static str,
    release: &'static str,
}

fn iso_micros(us: u64) -> String {
    chrono::DateTime::from_timestamp_micros(us as i64)
        .unwrap()
        .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

fn threshold_ms(name: &str) -> u64 {
    if name == "/slow" {
        1_000
    } else {
        300
    }
}

/// The exact answer for a set of raw transactions, checked against what the query said.
fn check(label: &str, raws: &[&Raw], got: &PerfStats, minutes: u64) {
    assert_eq!(got.count, raws.len() as u64, "{label}: count");
    if raws.is_empty() {
        assert_eq!(got.p95_ms, None, "{label}");
        return;
    }
    let n = raws.len() as u64;
    assert!(
        (got.tpm - n as f64 / minutes as f64).abs() < 1e-9,
        "{label}: tpm"
    );
    let failures = raws.iter().filter(|r| r.failed).count() as u64;
    assert_eq!(got.failures, failures, "{label}: failures");
    assert_eq!(
        got.failure_rate,
        Some(failures as f64 / n as f64),
        "{label}: failure rate"
    );
    let (mut satisfied, mut tolerated) = (0u64, 0u64);
    for r in raws {
        let t = threshold_ms(r.transaction) * 1000;
        if r.duration_us <= t {
            satisfied += 1;
        } else if r.duration_us <= 4 * t {
            tolerated += 1;
        }
    }
    assert!(got.apdex_exact, "{label}: apdex exact");
    assert_eq!(
        (got.satisfied, got.tolerated),
        (satisfied, tolerated),
        "{label}: apdex counts"
    );
    assert_eq!(
        got.apdex,
        Some((satisfied as f64 + tolerated as f64 / 2.0) / n as f64),
        "{label}: apdex"
    );
    let sum: u64 = raws.iter().map(|r| r.duration_us).sum();
    let avg = sum as f64 / n as f64 / 1000.0;
    assert!(
        (got.avg_ms.unwrap() - avg).abs() <= avg * 1e-12,
        "{label}: avg"
    );
    let mut sorted: Vec<u64> = raws.iter().map(|r| r.duration_us).collect();
    sorted.sort_unstable();
    let nearest_rank = |q: f64| sorted[((q * n as f64).ceil() as usize).clamp(1, sorted.len()) - 1];
    for (q, value) in [
        (0.5, got.p50_ms),
        (0.75, got.p75_ms),
        (0.95, got.p95_ms),
        (0.99, got.p99_ms),
        (1.0, got.max_ms),
    ] {
        let exact = nearest_rank(q) as f64;
        let reported = value.unwrap() * 1000.0;
        // 3 significant digits: the histogram's bucket around the exact value is < 0.1 % wide.
        assert!(
            reported >= exact - 0.5 && reported - exact <= exact / 1000.0 + 0.5,
            "{label}: p{} = {reported} µs, exact {exact} µs",
            q * 100.0
        );
    }
}

#[test]
fn percentiles_apdex_and_failure_rate_match_the_raw_data() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), &StoreOptions::default()).unwrap();
    let org = store.create_organization("acme", "Acme").unwrap();
    let project = store
        .create_project(org.id, "shop", "Shop", "python")
        .unwrap();
    let mut p = (*project).clone();
    p.settings.apdex_threshold_ms = 300;
    p.settings
        .transaction_thresholds
        .insert("/slow".into(), 1_000);
    let project = store.put_project(p).unwrap();

    const DAY: u64 = 86_400_000;
    const HOUR: u64 = 3_600_000;
    const MINUTE: u64 = 60_000;
    // Five days ago, minus a few hours, to three days later and a bit: inside retention.
    let now = storage::now_ms();
    let day0 = now - now % DAY - 5 * DAY;
    let (first, last) = (
        day0 - 7 * HOUR - 13 * MINUTE,
        day0 + 3 * DAY + 5 * HOUR + 7 * MINUTE,
    );

    let mut rng = Rng(0x05b7_e1a5);
    let mut raws = Vec::new();
    let mut errors: Vec<(u64, &'static str)> = Vec::new();
    let mut folder = TransactionFolder::new();
    let mut batch = WriteBatch::default();
    for i in 0..30_000u64 {
        let t = rng.below(TRANSACTIONS.len() as u64) as usize;
        let transaction = TRANSACTIONS[t];
        let environment = ENVIRONMENTS[rng.below(3) as usize];
        let release = RELEASES[rng.below(3) as usize];
        let status = STATUSES[rng.below(STATUSES.len() as u64) as usize];
        // Cluster some load on a few minutes so buckets hold many values.
        let end_ms = if rng.below(5) == 0 {
            day0 + DAY + 37 * MINUTE + rng.below(3 * MINUTE)
        } else {
            first + rng.below(last - first)
        };
        let end_us = end_ms * 1000 + rng.below(1000);
        let d = duration_us(&mut rng, t);
        let mut event = json!({
            "type": "transaction",
            "transaction": transaction,
            "transaction_info": {"source": "route"},
            "start_timestamp": iso_micros(end_us - d),
            "timestamp": iso_micros(end_us),
            "release": release,
            "contexts": {"trace": {
                "trace_id": format!("{:032x}", i + 1),
                "span_id": format!("{:016x}", i + 1),
                "op": "http.server",
                "status": status,
            }},
        });
        if let Some(env) = environment {
            event["environment"] = json!(env);
        }
        let facts = folder
            .add(&project, &processor::value::Value::from(event.clone()))
            .unwrap();
        assert_eq!(facts.duration_us, d);
        raws.push(Raw {
            end_ms: end_us / 1000,
            duration_us: d,
            failed: facts.is_failure(),
            transaction,
            environment: environment.unwrap_or(""),
            release,
        });
        if rng.below(10) == 0 {
            let env = environment.unwrap_or("");
            count_error_event(&store, &mut batch, project.id, end_ms, env);
            errors.push((end_ms, env));
        }
        // Several batches: the same keys receive several merge operands.
        if i % 4_000 == 3_999 {
            folder.flush_into(&store, &mut batch);
            store.write(std::mem::take(&mut batch), false).unwrap();
        }
    }
    folder.flush_into(&store, &mut batch);
    store.write(batch, false).unwrap();
    // Half the data goes through a flush and compaction, so merged values are read too.
    store.compact_all().unwrap();

    let service = QueryService::new(store.clone());
    let ranges = [
        (first - first % MINUTE, last + MINUTE),
        (
            day0 - 3 * HOUR - 17 * MINUTE,
            day0 + 2 * DAY + HOUR + 3 * MINUTE,
        ),
        (day0 + DAY + 38 * MINUTE, day0 + DAY + 39 * MINUTE),
        (day0 + 59 * MINUTE, day0 + 2 * HOUR + MINUTE),
        (day0, day0 + DAY),
        (
            day0 + 5 * HOUR + 11 * MINUTE,
            day0 + DAY + 20 * HOUR + 49 * MINUTE,
        ),
    ];
    let mut checked_groups = 0;
    for (start, end) in ranges {
        let minutes = (end - start) / MINUTE;
        let in_range: Vec<&Raw> = raws
            .iter()
            .filter(|r| r.end_ms >= start && r.end_ms < end)
            .collect();
        let base = PerfQuery {
            project_id: project.id,
            range: TimeRange::Between {
                start_ms: start,
                end_ms: end,
            },
            limit: 100,
            ..PerfQuery::default()
        };
        let report = service.perf(&base).unwrap();
        assert_eq!((report.start_ms, report.end_ms), (start, end));
        check(
            &format!("total {start}..{end}"),
            &in_range,
            &report.total,
            minutes,
        );
        let want_errors = errors
            .iter()
            .filter(|(t, _)| *t >= start && *t < end)
            .count() as u64;
        assert_eq!(report.total.error_events, Some(want_errors));

        for group_by in [GroupBy::Transaction, GroupBy::Release, GroupBy::Environment] {
            let report = service
                .perf(&PerfQuery {
                    group_by: Some(group_by),
                    sort: SortBy::P95,
                    ..base.clone()
                })
                .unwrap();
            let mut expected: BTreeMap<&str, Vec<&Raw>> = BTreeMap::new();
            for r in &in_range {
                let key = match group_by {
                    GroupBy::Transaction => r.transaction,
                    GroupBy::Release => r.release,
                    GroupBy::Environment => r.environment,
                };
                expected.entry(key).or_default().push(r);
            }
            assert_eq!(report.groups.len(), expected.len(), "{group_by:?}");
            for pair in report.groups.windows(2) {
                assert!(
                    pair[0].stats.p95_ms >= pair[1].stats.p95_ms,
                    "sorted by p95"
                );
            }
            for g in &report.groups {
                check(
                    &format!("{group_by:?}={} {start}..{end}", g.key),
                    &expected[g.key.as_str()],
                    &g.stats,
                    minutes,
                );
                if group_by == GroupBy::Environment {
                    let n = errors
                        .iter()
                        .filter(|(t, e)| *t >= start && *t < end && *e == g.key)
                        .count() as u64;
                    assert_eq!(g.stats.error_events, Some(n));
                } else {
                    assert_eq!(g.stats.error_events, None);
                }
                checked_groups += 1;
            }
        }

        // Filters, alone and combined.
        let filtered = service
            .perf(&PerfQuery {
                environment: Some("staging".into()),
                transaction: Some("/slow".into()),
                ..base.clone()
            })
            .unwrap();
        let want: Vec<&Raw> = in_range
            .iter()
            .copied()
            .filter(|r| r.environment == "staging" && r.transaction == "/slow")
            .collect();
        check("staging /slow", &want, &filtered.total, minutes);
        assert_eq!(
            filtered.total.apdex_threshold_ms,
            if want.is_empty() { None } else { Some(1_000) }
        );
        let none_env = service
            .perf(&PerfQuery {
                environment: Some(String::new()),
                release: Some("2.0.0".into()),
                ..base.clone()
            })
            .unwrap();
        let want: Vec<&Raw> = in_range
            .iter()
            .copied()
            .filter(|r| r.environment.is_empty() && r.release == "2.0.0")
            .collect();
        check("no environment, 2.0.0", &want, &none_env.total, minutes);
    }
    assert!(checked_groups > 50);

    // A time series: every point equals the query of its own interval.
    let (start, end) = (
        day0 + 22 * HOUR + 30 * MINUTE,
        day0 + DAY + 2 * HOUR + 5 * MINUTE,
    );
    let series = service
        .perf(&PerfQuery {
            project_id: project.id,
            range: TimeRange::Between {
                start_ms: start,
                end_ms: end,
            },
            interval_ms: Some(HOUR),
            ..PerfQuery::default()
        })
        .unwrap()
        .series;
    assert_eq!(series.len(), 4);
    let mut total = 0;
    for point in &series {
        let until = (point.start_ms + HOUR).min(end);
        let want: Vec<&Raw> = raws
            .iter()
            .filter(|r| r.end_ms >= point.start_ms && r.end_ms < until)
            .collect();
        check(
            "series point",
            &want,
            &point.stats,
            (until - point.start_ms) / MINUTE,
        );
        total += point.stats.count;
    }
    assert_eq!(
        total,
        raws.iter()
            .filter(|r| r.end_ms >= start && r.end_ms < end)
            .count() as u64
    );

    // Changing T after the fact: apdex falls back to the histogram and says so.
    let mut p = (*project).clone();
    p.settings.apdex_threshold_ms = 500;
    store.put_project(p).unwrap();
    let report = service
        .perf(&PerfQuery {
            project_id: project.id,
            range: TimeRange::Between {
                start_ms: ranges[0].0,
                end_ms: ranges[0].1,
            },
            transaction: Some("/checkout".into()),
            ..PerfQuery::default()
        })
        .unwrap();
    assert!(!report.total.apdex_exact);
    let want: Vec<&Raw> = raws
        .iter()
        .filter(|r| r.transaction == "/checkout")
        .collect();
    let exact = want
        .iter()
        .map(|r| {
            if r.duration_us <= 500_000 {
                1.0
            } else if r.duration_us <= 2_000_000 {
                0.5
            } else {
                0.0
            }
        })
        .sum::<f64>()
        / want.len() as f64;
    assert!((report.total.apdex.unwrap() - exact).abs() < 0.01);
    // The project total comes from a rollup judged under the old configuration: the query
    // falls back to the full series, re-judges each transaction with its own T, and says so.
    let report = service
        .perf(&PerfQuery {
            project_id: project.id,
            range: TimeRange::Between {
                start_ms: ranges[0].0,
                end_ms: ranges[0].1,
            },
            ..PerfQuery::default()
        })
        .unwrap();
    assert!(!report.total.apdex_exact);
    assert_eq!(report.total.count, raws.len() as u64);
    let exact = raws
        .iter()
        .map(|r| {
            let t = if r.transaction == "/slow" {
                1_000_000
            } else {
                500_000
            };
            if r.duration_us <= t {
                1.0
            } else if r.duration_us <= 4 * t {
                0.5
            } else {
                0.0
            }
        })
        .sum::<f64>()
        / raws.len() as f64;
    assert!((report.total.apdex.unwrap() - exact).abs() < 0.01);
    assert_eq!(
        report.total.apdex_threshold_ms, None,
        "two thresholds apply"
    );
}

#[test]
fn unknown_project_and_bad_ranges_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), &StoreOptions::default()).unwrap();
    let service = QueryService::new(store);
    let q = PerfQuery {
        project_id: 42,
        ..PerfQuery::default()
    };
    assert!(service.perf(&q).is_err());
    assert!(TimeRange::parse(Some("forever"), None, None).is_err());
}

/// Error events per minute, through the real pipeline: every processed error counts once, next
/// to the other counters the pipeline writes for the same events (issue times-seen, hourly
/// issue counts) — which share the counters column family and must not be read as error
/// counts. Windows end now, so the events sit at the start of the last hour's minute range.
#[test]
fn error_events_count_each_processed_error_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), &StoreOptions::default()).unwrap();
    store.bootstrap(None, None).unwrap();
    let processor =
        processor::Processor::new(store.clone(), processor::ProcessorConfig::default()).unwrap();
    let now = storage::now_ms();
    let records: Vec<_> = (0..7u32)
        .map(|i| {
            let event = json!({
                "event_id": format!("{:032x}", i + 1),
                "level": "error",
                "environment": if i % 2 == 0 { "production" } else { "staging" },
                "message": format!("failure kind {}", i % 3),
                "timestamp": now as f64 / 1000.0,
            });
            processor::pipeline::event_record(1, now, &serde_json::to_vec(&event).unwrap(), None)
        })
        .collect();
    processor.process_and_commit(&records).unwrap();
    let service = QueryService::new(store);
    for since in ["10m", "2h", "3d"] {
        let report = service
            .perf(&PerfQuery {
                project_id: 1,
                range: TimeRange::parse(Some(since), None, None).unwrap(),
                ..PerfQuery::default()
            })
            .unwrap();
        assert_eq!(report.total.error_events, Some(7), "last {since}");
        let by_env = service
            .perf(&PerfQuery {
                project_id: 1,
                range: TimeRange::parse(Some(since), None, None).unwrap(),
                environment: Some("production".into()),
                ..PerfQuery::default()
            })
            .unwrap();
        assert_eq!(
            by_env.total.error_events,
            Some(4),
            "production, last {since}"
        );
    }
}
