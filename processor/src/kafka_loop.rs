//! The processor in Kafka mode: one member of the processors' consumer group
//! (design.md §3, §7).
//!
//! Each step reads a batch from the partitions this node owns, processes it exactly as the
//! embedded loop does, and writes the results, the `invalid`/`kafka_decode` outcomes of
//! messages that are not log records, and every partition's next offset in **one** RocksDB
//! write batch; then it commits the same offsets to the group before polling again. A crash
//! replays from the last local commit (dedup by (project, event id) makes that harmless), and
//! a partition that moves to another node continues there from where this node's results end
//! (`storage::KafkaConsumer`: start = max(local, group committed)).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use storage::KafkaConsumer;

use crate::error::Result;
use crate::pipeline::{BatchStats, Processor};

impl Processor {
    /// One batch of the Kafka loop; `Ok(None)` when nothing arrived within `wait`.
    pub fn kafka_step(
        &self,
        consumer: &KafkaConsumer,
        wait: Duration,
    ) -> Result<Option<BatchStats>> {
        let config = self.config();
        let batch = consumer.next_batch(config.batch_records, config.batch_bytes, wait)?;
        if batch.is_empty() {
            return Ok(None);
        }
        let records = batch.log_records();
        let mut outcome = self.process_batch(&records)?;
        batch.add_to_write_batch(self.store(), outcome.batch_mut());
        let mut stats = self.commit(outcome)?;
        stats.invalid += batch.invalid.len() as u64;
        stats.records += batch.invalid.len() as u64;
        // Before the next poll (where a rebalance may hand a partition to another node), so
        // that node starts where these results end.
        if let Err(e) = consumer.commit_offsets(&batch) {
            tracing::warn!(error = %e, "offsets not committed to the group; the next batch retries");
        }
        Ok(Some(stats))
    }

    /// Runs [`Processor::kafka_step`] until `shutdown` is set. A failed batch is not
    /// committed; the consumer is re-created so every partition is re-read from the stored
    /// offsets (the failed batch included), after a pause that bounds the retry rate.
    pub fn run_kafka(&self, config: &storage::KafkaConfig, shutdown: &AtomicBool) {
        let mut consumer: Option<KafkaConsumer> = None;
        while !shutdown.load(Ordering::Acquire) {
            let current = match consumer.take() {
                Some(c) => c,
                None => match KafkaConsumer::new(config, self.store()) {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::error!(error = %e, "cannot create the kafka consumer; retrying");
                        std::thread::sleep(Duration::from_secs(1));
                        continue;
                    }
                },
            };
            match self.kafka_step(&current, self.config().idle_wait) {
                Ok(_) => consumer = Some(current),
                Err(e) => {
                    tracing::error!(error = %e, "processor batch failed; re-reading from the stored offsets");
                    drop(current);
                    std::thread::sleep(Duration::from_secs(1));
                }
            }
        }
    }

    /// Starts [`Processor::run_kafka`] on a dedicated thread.
    pub fn spawn_kafka(
        self: Arc<Self>,
        config: storage::KafkaConfig,
        shutdown: Arc<AtomicBool>,
    ) -> std::io::Result<std::thread::JoinHandle<()>> {
        std::thread::Builder::new()
            .name("osprey-processor-kafka".into())
            .spawn(move || self.run_kafka(&config, &shutdown))
    }
}
