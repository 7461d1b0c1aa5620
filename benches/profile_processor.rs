//! A fixed amount of processor work for instruction-count profiling (callgrind), where
//! criterion's timing loop would only add noise: generates `BATCHES` batches of 1024 loadgen
//! events of one mix up front, then processes and commits them.
//!
//! ```sh
//! CARGO_PROFILE_DEV_OPT_LEVEL=3 cargo build --profile dev --example profile_processor
//! valgrind --tool=callgrind --collect-atstart=no --toggle-collect='*process_and_commit*' \
//!     target/debug/examples/profile_processor errors 2
//! ```
//!
//! Arguments: `errors` | `transactions` (default `errors`), number of batches (default 2).
//! One extra warm-up batch is processed first through `process_batch` + `commit` (outside the
//! toggle above), so one-time costs (regex compilation, rule parsing, caches) stay out of the
//! profile. Prints the wall time per event as a rough cross-check.

use std::time::Instant;

use bytes::Bytes;
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

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let mix = args.next().unwrap_or_else(|| "errors".to_owned());
    let batches: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(2);
    let (item_type, transactions) = match mix.as_str() {
        "errors" => ("event", false),
        "transactions" => ("transaction", true),
        other => return Err(format!("unknown mix {other:?} (errors | transactions)").into()),
    };
    let dir = tempfile::tempdir()?;
    let store = Store::open(dir.path(), &StoreOptions::default())?;
    store.bootstrap(None, None)?;
    // One preparing thread unless OSPREY_PROCESSOR_THREADS says otherwise: instruction
    // counts per event, comparable across runs.
    let prepare_threads = std::env::var("OSPREY_PROCESSOR_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    let config = processor::ProcessorConfig {
        prepare_threads,
        ..Default::default()
    };
    let processor = processor::Processor::new(store, config)?;
    let mut rng = StdRng::seed_from_u64(7);
    let now = storage::now_ms();
    let mut all: Vec<Vec<LogRecord>> = (0..=batches)
        .map(|_| {
            (0..BATCH)
                .map(|_| LogRecord {
                    project_id: 1,
                    key_id: 1,
                    received_ms: now,
                    event_id: Some(Uuid::new_v4()),
                    item_type: item_type.to_owned(),
                    envelope_header: Bytes::from_static(b"{}"),
                    item_header: Bytes::from(format!("{{\"type\":\"{item_type}\"}}")),
                    client_addr: Some([127, 0, 0, 1].into()),
                    payload: Bytes::from(if transactions {
                        ingest::loadgen::transaction_event(&mut rng)
                    } else {
                        ingest::loadgen::error_event(&mut rng, None)
                    }),
                })
                .collect()
        })
        .collect();
    let warm_up = all.remove(0);
    processor.commit(processor.process_batch(&warm_up)?)?;
    let start = Instant::now();
    for batch in &all {
        processor.process_and_commit(batch)?;
    }
    let elapsed = start.elapsed();
    let events = (batches * BATCH) as f64;
    println!(
        "{mix}: {events} events in {:.3} s = {:.0} events/s",
        elapsed.as_secs_f64(),
        events / elapsed.as_secs_f64()
    );
    Ok(())
}
