//! Produce and consume throughput of the Kafka log on a real broker.
//!
//! `OSPREY_TEST_KAFKA=127.0.0.1:PORT cargo run -p storage --example kafka_throughput -- [RECORDS] [PAYLOAD_BYTES]`
//!
//! Produces RECORDS one-record envelopes (as ingest does: each append waits for its own
//! delivery report, up to 2,000 appends in flight), then reads them back with a
//! [`KafkaConsumer`] that commits every batch's offsets to a RocksDB store, as the processor
//! does. Prints records/s and MB/s for both sides.

use std::time::{Duration, Instant};

use bytes::Bytes;
use storage::{
    ensure_topics, KafkaConfig, KafkaConsumer, KafkaLog, KafkaTopics, Log, LogRecord, StorageError,
    Store, StoreOptions, WriteBatch,
};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let brokers = std::env::var("OSPREY_TEST_KAFKA")
        .map_err(|_| "set OSPREY_TEST_KAFKA to a broker address (scripts/kafka.sh start)")?;
    let mut args = std::env::args().skip(1);
    let records: u64 = args
        .next()
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(100_000);
    let payload_bytes: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(1_000);
    let run = uuid::Uuid::new_v4().simple().to_string();
    let config = KafkaConfig {
        brokers,
        topics: KafkaTopics {
            events: format!("bench-events-{run}"),
            transactions: format!("bench-tx-{run}"),
            meta: format!("bench-meta-{run}"),
        },
        partitions: 4,
        group_id: format!("bench-{run}"),
        ..Default::default()
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(ensure_topics(&config))?;
    let payload = Bytes::from(vec![b'x'; payload_bytes]);
    let log = KafkaLog::new(&config)?;
    let start = Instant::now();
    let refused = rt.block_on(async {
        let mut inflight = std::collections::VecDeque::new();
        let mut refused = 0u64;
        let mut i = 0u64;
        while i < records {
            let record = LogRecord {
                project_id: 1 + i % 8,
                key_id: 1,
                received_ms: storage::now_ms(),
                event_id: Some(uuid::Uuid::from_u128(i as u128 + 1)),
                item_type: if i.is_multiple_of(2) {
                    "event"
                } else {
                    "transaction"
                }
                .into(),
                envelope_header: Bytes::from_static(br#"{"sdk":{"name":"bench"}}"#),
                item_header: Bytes::from_static(br#"{"type":"event"}"#),
                client_addr: None,
                payload: payload.clone(),
            };
            match log.append(vec![record]) {
                Ok(ticket) => {
                    inflight.push_back(ticket);
                    i += 1;
                }
                Err(StorageError::Backpressure { .. }) => {
                    refused += 1;
                    if let Some(t) = inflight.pop_front() {
                        t.await?;
                    }
                }
                Err(e) => return Err(e),
            }
            if inflight.len() >= 2_000 {
                if let Some(t) = inflight.pop_front() {
                    t.await?;
                }
            }
        }
        for t in inflight {
            t.await?;
        }
        Ok::<_, StorageError>(refused)
    })?;
    let produce = start.elapsed();
    let mb = (records as f64 * payload_bytes as f64) / 1e6;
    println!(
        "produce: {records} records of {payload_bytes} B in {:.2} s = {:.0} records/s, {:.1} MB/s ({refused} backpressure refusals)",
        produce.as_secs_f64(),
        records as f64 / produce.as_secs_f64(),
        mb / produce.as_secs_f64()
    );

    let dir = tempfile::tempdir()?;
    let store = Store::open(dir.path(), &StoreOptions::default())?;
    let consumer = KafkaConsumer::new(&config, &store)?;
    let mut got = 0u64;
    let mut first: Option<Instant> = None;
    let deadline = Instant::now() + Duration::from_secs(600);
    while got < records && Instant::now() < deadline {
        let batch = consumer.next_batch(1024, 16 << 20, Duration::from_millis(500))?;
        if batch.is_empty() {
            continue;
        }
        first.get_or_insert_with(Instant::now);
        let mut wb = WriteBatch::default();
        batch.add_to_write_batch(&store, &mut wb);
        store.write(wb, false)?;
        consumer.commit_async(&batch);
        got += batch.records.len() as u64;
    }
    let consume = first.map(|f| f.elapsed()).unwrap_or_default();
    println!(
        "consume: {got} records in {:.2} s (from the first message, group join excluded) = {:.0} records/s, {:.1} MB/s",
        consume.as_secs_f64(),
        got as f64 / consume.as_secs_f64().max(1e-9),
        (got as f64 * payload_bytes as f64) / 1e6 / consume.as_secs_f64().max(1e-9)
    );
    log.close(Duration::from_secs(5));
    Ok(())
}
