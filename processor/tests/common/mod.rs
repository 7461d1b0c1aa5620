//! What the processor's Kafka tests share: the broker's address and a fresh set of topics
//! and a consumer group of their own for each test run.

use storage::{KafkaConfig, KafkaTopics};
use uuid::Uuid;

/// The broker from `OSPREY_TEST_KAFKA` (see `scripts/kafka.sh`); the test fails without it.
pub fn broker() -> String {
    match std::env::var("OSPREY_TEST_KAFKA") {
        Ok(b) if !b.trim().is_empty() => b,
        _ => panic!(
            "OSPREY_TEST_KAFKA is not set: start a broker with `scripts/kafka.sh start` and \
             export the address it prints (the test command does both)"
        ),
    }
}

/// A config whose topics (`partitions` each) and group are named `{prefix}-…-{random}`, so
/// runs never see each other's records, with the topics created; and a one-worker runtime
/// for the test's async calls.
pub fn fresh_kafka(prefix: &str, partitions: i32) -> (KafkaConfig, tokio::runtime::Runtime) {
    let run = Uuid::new_v4().simple().to_string();
    let config = KafkaConfig {
        brokers: broker(),
        topics: KafkaTopics {
            events: format!("{prefix}-events-{run}"),
            transactions: format!("{prefix}-tx-{run}"),
            meta: format!("{prefix}-meta-{run}"),
        },
        partitions,
        group_id: format!("{prefix}-group-{run}"),
        session_timeout_ms: 6_000,
        ..Default::default()
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(storage::ensure_topics(&config)).unwrap();
    (config, rt)
}
