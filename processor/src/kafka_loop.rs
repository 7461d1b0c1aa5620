//! The processor in Kafka mode: one member of the processors' consumer group
//! (design.md §3, §7).
//!
//! Each step reads a batch from the partitions this node owns and then, in this order:
//! re-reads whatever this node took from the group earlier and never wrote (a crash between
//! the two commits below: `storage::KafkaConsumer::next_owed_batch`); makes sure the
//! metadata acknowledged before the batch's records were accepted is applied (projects,
//! keys, alert rules made on other nodes: `storage::Store::catch_up_meta`); commits the
//! batch's next offsets to the group (`commit_group`: from here on the offsets are this
//! node's); processes the batch exactly as the embedded loop does and writes the results,
//! the `invalid`/`kafka_decode` outcomes and every partition's next offset in **one** RocksDB
//! write batch. Every accepted event is thus counted once across crashes and partition moves
//! (the argument is in `storage::kafka`'s module docs); dedup by (project, event id) stays
//! as a second line of defence.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use storage::{KafkaBatch, KafkaConsumer};

use crate::error::Result;
use crate::pipeline::{BatchStats, Processor};

/// How long a batch waits for this node to apply the metadata topic up to the end it has at
/// the batch's start (normally no wait: the follower is milliseconds behind at most).
const META_CATCH_UP: Duration = Duration::from_secs(10);

/// Fault injection for tests, off unless this environment variable holds a number N: the
/// process exits (code 137, like a SIGKILL) right after the group commit of its N-th batch,
/// before that batch's results are written (the window between the two commits).
pub const EXIT_AFTER_GROUP_COMMIT_ENV: &str = "OSPREY_TEST_EXIT_AFTER_GROUP_COMMIT";

/// Exits the process when [`EXIT_AFTER_GROUP_COMMIT_ENV`] says this group commit is the one.
fn test_exit_after_group_commit() {
    static AT: OnceLock<Option<u64>> = OnceLock::new();
    static COMMITS: AtomicU64 = AtomicU64::new(0);
    let at = AT.get_or_init(|| {
        std::env::var(EXIT_AFTER_GROUP_COMMIT_ENV)
            .ok()
            .and_then(|v| v.trim().parse().ok())
    });
    if let Some(at) = *at {
        if COMMITS.fetch_add(1, Ordering::AcqRel) + 1 == at {
            tracing::error!(
                "{EXIT_AFTER_GROUP_COMMIT_ENV}={at}: exiting between the group commit and the local write"
            );
            std::process::exit(137);
        }
    }
}

impl Processor {
    /// One batch of the Kafka loop; `Ok(None)` when nothing arrived within `wait` and
    /// nothing was owed.
    pub fn kafka_step(
        &self,
        consumer: &KafkaConsumer,
        wait: Duration,
    ) -> Result<Option<BatchStats>> {
        let config = self.config();
        let batch = consumer.next_batch(config.batch_records, config.batch_bytes, wait)?;
        let mut done: Option<BatchStats> = None;
        // Offsets this node took from the group and never wrote lie before anything of
        // `batch` (its partitions resume at the group's offset): they go first. The group
        // has them already; only the store is written.
        while let Some(owed) = consumer.next_owed_batch(config.batch_records, config.batch_bytes)? {
            let stats = self.write_kafka_batch(&owed)?;
            done.get_or_insert_with(BatchStats::default).add(&stats);
        }
        if batch.is_empty() {
            return Ok(done);
        }
        // A rule or project made on another node before these records were accepted must
        // be known here before they are processed (or a first-seen alert never fires, and
        // an event of a new project is rejected as of an unknown project).
        if let Err(e) = self.store().catch_up_meta(META_CATCH_UP) {
            tracing::warn!(error = %e, "metadata topic not caught up; processing the batch anyway");
        }
        if let Err(e) = consumer.commit_group(&batch) {
            tracing::warn!(error = %e, "offsets not committed to the group; the batch is not written");
            consumer.recover_failed_commit(&batch)?;
            return Ok(done);
        }
        test_exit_after_group_commit();
        let stats = self.write_kafka_batch(&batch)?;
        done.get_or_insert_with(BatchStats::default).add(&stats);
        Ok(done)
    }

    /// Processes `batch` and writes its results, rejects and offsets in one write batch.
    fn write_kafka_batch(&self, batch: &KafkaBatch) -> Result<BatchStats> {
        let records = batch.log_records();
        let mut outcome = self.process_batch(&records)?;
        batch.add_to_write_batch(self.store(), outcome.batch_mut());
        let mut stats = self.commit(outcome)?;
        stats.invalid += batch.invalid.len() as u64;
        stats.records += batch.invalid.len() as u64;
        Ok(stats)
    }

    /// Runs [`Processor::kafka_step`] until `shutdown` is set. After a failed batch the
    /// consumer is re-created, after a pause that bounds the retry rate: it starts from the
    /// group's offsets and first re-reads whatever this node took from the group and did
    /// not write (the failed batch included).
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
                    tracing::error!(error = %e, "processor batch failed; re-reading from the group's offsets");
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
