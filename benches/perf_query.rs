//! Performance-query latency over 10 million transactions spread over 24 h and 200
//! transaction names (2 environments, 3 releases). Targets: p95 + apdex + failure rate over
//! the last 24 h < 50 ms; the by-transaction breakdown < 200 ms.
//!
//! The data set is folded once at start-up through `TransactionFolder` (batches of 100,000),
//! written and compacted. The range starts 17 minutes past an hour, so it is read as minute
//! buckets at both edges and hour buckets in between, the worst case for a 24 h range.
//! `OSPREY_BENCH_TRANSACTIONS` changes the size (default 10,000,000).
//!
//! Run: `cargo bench --bench perf_query`.

use criterion::{criterion_group, criterion_main, Criterion};
use processor::transactions::{TransactionFacts, TransactionFolder};
use query::perf::{GroupBy, PerfQuery, SortBy, TimeRange};
use query::QueryService;
use storage::{Store, StoreOptions, WriteBatch};

const DAY_MS: u64 = 86_400_000;

fn bench(c: &mut Criterion) {
    let total: u64 = std::env::var("OSPREY_BENCH_TRANSACTIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000_000);
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path(), &StoreOptions::default()).expect("store");
    let org = store.create_organization("bench", "Bench").expect("org");
    let project = store
        .create_project(org.id, "bench", "Bench", "")
        .expect("project");

    let now = storage::now_ms();
    let end = now - now % 3_600_000 - 2 * 3_600_000 + 17 * 60_000;
    let start = end - DAY_MS;
    let names: Vec<String> = (0..200).map(|i| format!("/api/endpoint/{i}")).collect();
    let mut x: u64 = 0x9e37_79b9;
    let mut folder = TransactionFolder::new();
    let began = std::time::Instant::now();
    let mut facts = TransactionFacts {
        timestamp_ms: 0,
        start_timestamp_ms: 0,
        duration_us: 0,
        status: 0,
        op: None,
        name: String::new(),
        source: None,
        environment: None,
        release: None,
        user: None,
        trace_id: String::new(),
        span_id: String::new(),
        parent_span_id: None,
        measurements: Vec::new(),
    };
    let mut i = 0u64;
    while i < total {
        let mut batch = WriteBatch::default();
        for _ in 0..100_000.min(total - i) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // Time-ordered, as a live stream would be.
            facts.timestamp_ms = start + i * DAY_MS / total;
            facts.duration_us = 1_000 + (x % 400_000) * (1 + (x >> 50) % 8);
            facts.status = [0, 0, 0, 0, 0, 2, 13, 5][(x >> 20) as usize % 8];
            facts.name.clone_from(&names[(x >> 8) as usize % 200]);
            facts.environment = Some(["production", "staging"][(x >> 30) as usize % 2].to_string());
            facts.release = Some(format!("app@1.{}.0", (x >> 33) % 3));
            folder.fold(&project, &facts);
            i += 1;
        }
        folder.flush_into(&store, &mut batch);
        store.write(batch, false).expect("write");
    }
    store.compact_all().expect("compact");
    eprintln!(
        "folded and wrote {total} transactions in {:.1?}",
        began.elapsed()
    );

    let service = QueryService::new(store.clone());
    let query = PerfQuery {
        project_id: project.id,
        range: TimeRange::Between {
            start_ms: start,
            end_ms: end,
        },
        ..PerfQuery::default()
    };
    let report = service.perf(&query).expect("query");
    assert_eq!(
        report.total.count, total,
        "every transaction is in the range"
    );
    eprintln!(
        "p95 {:?} ms, apdex {:?}, failure rate {:?}",
        report.total.p95_ms, report.total.apdex, report.total.failure_rate
    );

    let mut group = c.benchmark_group("perf_query_24h");
    group.sample_size(20);
    group.bench_function("total_p95_apdex_failure_rate", |b| {
        b.iter(|| service.perf(&query).expect("query"))
    });
    let by_txn = PerfQuery {
        group_by: Some(GroupBy::Transaction),
        sort: SortBy::P95,
        limit: 200,
        ..query.clone()
    };
    group.bench_function("by_transaction", |b| {
        b.iter(|| service.perf(&by_txn).expect("query"))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
