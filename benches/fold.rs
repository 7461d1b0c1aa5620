//! Folding throughput: transactions folded into per-minute histograms and counters (and
//! rolled up into hours and days) per second, on one core. Target: ≥ 1,000,000 durations/s.
//!
//! `fold` measures the hot path the pipeline runs per transaction after extraction, plus the
//! per-batch flush into a write batch (encoding every histogram and counter operand);
//! `extract_and_fold` adds the JSON extraction and validation of each transaction.
//!
//! Run: `cargo bench --bench fold`.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use processor::transactions::{TransactionFacts, TransactionFolder};
use serde_json::json;
use storage::{Store, StoreOptions, WriteBatch};

const BATCH: usize = 100_000;

fn facts(n: usize) -> Vec<TransactionFacts> {
    let mut x: u64 = 0x1234_5678;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let base_ms = 1_700_000_000_000;
    (0..n)
        .map(|i| {
            let r = next();
            TransactionFacts {
                // A batch spans a few minutes of traffic.
                timestamp_ms: base_ms + (i as u64 * 5) % 300_000,
                start_timestamp_ms: base_ms,
                duration_us: 500 + (r % 1_000_000) * (1 + (r >> 40) % 3),
                status: [0, 0, 0, 0, 2, 13][(r >> 20) as usize % 6],
                op: Some("http.server".into()),
                name: format!("/api/endpoint/{}", (r >> 8) % 200),
                source: Some("route".into()),
                environment: Some(["production", "staging"][(r >> 30) as usize % 2].into()),
                release: Some(format!("app@1.{}.0", (r >> 33) % 3)),
                user: None,
                trace_id: format!("{:032x}", i + 1),
                span_id: format!("{:016x}", i + 1),
                parent_span_id: None,
                measurements: Vec::new(),
            }
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path(), &StoreOptions::default()).expect("store");
    let org = store.create_organization("bench", "Bench").expect("org");
    let project = store
        .create_project(org.id, "bench", "Bench", "")
        .expect("project");
    let facts = facts(BATCH);

    let mut group = c.benchmark_group("transactions");
    group.throughput(Throughput::Elements(BATCH as u64));
    group.sample_size(20);
    group.bench_function("fold", |b| {
        let mut folder = TransactionFolder::new();
        b.iter(|| {
            for f in &facts {
                folder.fold(&project, f);
            }
            let mut batch = WriteBatch::default();
            folder.flush_into(&store, &mut batch);
            std::hint::black_box(batch.len());
        })
    });

    let events: Vec<processor::value::Value> = facts
        .iter()
        .take(20_000)
        .map(|f| {
            processor::value::Value::from(json!({
                "type": "transaction",
                "transaction": f.name,
                "start_timestamp": (f.timestamp_ms * 1000 - f.duration_us) as f64 / 1e6,
                "timestamp": f.timestamp_ms as f64 / 1e3,
                "environment": f.environment,
                "release": f.release,
                "contexts": {"trace": {"trace_id": f.trace_id, "span_id": f.span_id, "status": "ok"}},
            }))
        })
        .collect();
    group.throughput(Throughput::Elements(events.len() as u64));
    group.bench_function("extract_and_fold", |b| {
        let mut folder = TransactionFolder::new();
        b.iter(|| {
            for e in &events {
                folder.add(&project, e).expect("valid transaction");
            }
            let mut batch = WriteBatch::default();
            folder.flush_into(&store, &mut batch);
            std::hint::black_box(batch.len());
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
