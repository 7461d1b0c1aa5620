//! The processor end to end, on one core and with two preparing threads: a batch of log records (the load generator's
//! realistic error events, 3–6 KB each) through parse, normalize, scrub, group, issue upsert,
//! event compression and the RocksDB write batch, committed.
//!
//! Run: `CARGO_PROFILE_DEV_OPT_LEVEL=3 cargo bench --profile dev --bench processor`
//! (see BENCHMARKS.md for why benches use the dev profile).

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use rand::{rngs::StdRng, SeedableRng};
use storage::{LogRecord, Store, StoreOptions};
use uuid::Uuid;

// mimalloc: the processor builds and frees a JSON tree per event; it costs ~10 % fewer
// instructions per event than glibc malloc (BENCHMARKS.md, "Profiling"), and calling it
// without the aligned entry points where the layout allows saves more
// (`processor::allocator`).
#[global_allocator]
static GLOBAL: processor::allocator::Mimalloc = processor::allocator::Mimalloc;

const BATCH: usize = 1024;

fn records(
    rng: &mut StdRng,
    item_type: &str,
    make: impl Fn(&mut StdRng) -> Vec<u8>,
) -> Vec<LogRecord> {
    let now = storage::now_ms();
    (0..BATCH)
        .map(|_| LogRecord {
            project_id: 1,
            key_id: 1,
            received_ms: now,
            event_id: Some(Uuid::new_v4()),
            item_type: item_type.to_owned(),
            envelope_header: Bytes::from_static(b"{}"),
            item_header: Bytes::from(format!("{{\"type\":\"{item_type}\"}}")),
            client_addr: Some("127.0.0.1".parse().expect("valid address")),
            payload: Bytes::from(make(rng)),
        })
        .collect()
}

fn bench_processor(c: &mut Criterion) {
    let mut group = c.benchmark_group("processor");
    group.throughput(Throughput::Elements(BATCH as u64));
    group.sample_size(10);
    // One preparing thread is the one-core figure the targets are stated in; two is what
    // this 2-core machine's server uses by default (`ProcessorConfig::prepare_threads`).
    for threads in [1, 2] {
        let suffix = if threads == 1 {
            String::new()
        } else {
            format!("_{threads}_threads")
        };
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(dir.path(), &StoreOptions::default()).expect("open store");
        store.bootstrap(None, None).expect("bootstrap");
        let config = processor::ProcessorConfig {
            prepare_threads: threads,
            ..Default::default()
        };
        let processor = processor::Processor::new(store, config).expect("processor");
        let mut rng = StdRng::seed_from_u64(7);
        group.bench_function(format!("errors_batch_1024{suffix}"), |b| {
            b.iter_batched(
                || records(&mut rng, "event", |r| ingest::loadgen::error_event(r, None)),
                |batch| processor.process_and_commit(&batch).expect("batch"),
                BatchSize::PerIteration,
            )
        });
        group.bench_function(format!("transactions_batch_1024{suffix}"), |b| {
            b.iter_batched(
                || records(&mut rng, "transaction", ingest::loadgen::transaction_event),
                |batch| processor.process_and_commit(&batch).expect("batch"),
                BatchSize::PerIteration,
            )
        });
    }
    group.finish();
}

criterion_group!(benches, bench_processor);
criterion_main!(benches);
