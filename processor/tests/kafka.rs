//! The processor in Kafka mode against a real Apache Kafka broker: two processors in one
//! consumer group produce the same issues and counts as the embedded path, and when one
//! leaves, its partitions move to the other, which ends with every event exactly once.
//!
//! The broker's address comes from `OSPREY_TEST_KAFKA` (see `scripts/kafka.sh`); without it
//! the test fails and says so.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use processor::pipeline::event_record;
use processor::{Processor, ProcessorConfig};
use serde_json::json;
use storage::records::IssueRecord;
use storage::{
    cf, decode_i64, keys, KafkaConfig, KafkaConsumer, KafkaLog, Log, LogRecord, Store, StoreOptions,
};
use uuid::Uuid;

/// A store with the default project and projects 2..=4, the same ids on every node (what
/// shared metadata gives a cluster).
fn open(dir: &std::path::Path) -> Store {
    let store = Store::open(dir, &StoreOptions::default()).unwrap();
    store.bootstrap(None, None).unwrap();
    let org = store.meta().project(1).unwrap().org_id;
    for n in 2..=4 {
        let p = store
            .create_project(org, &format!("p{n}"), &format!("P{n}"), "python")
            .unwrap();
        assert_eq!(p.id, n);
    }
    store
}

fn events() -> Vec<LogRecord> {
    let now = storage::now_ms();
    (0..240u128)
        .map(|i| {
            let project = 1 + (i % 4) as u64;
            let payload = json!({
                "event_id": Uuid::from_u128(i + 1).simple().to_string(),
                "platform": "python",
                "timestamp": now as f64 / 1000.0,
                "user": {"id": format!("u{}", i % 9)},
                "exception": {"values": [{
                    "type": format!("Error{}", i % 5),
                    "value": "boom",
                    "stacktrace": {"frames": [
                        {"module": "app", "function": format!("f{}", i % 3), "filename": "app.py", "in_app": true}
                    ]},
                }]},
            });
            let mut r = event_record(project, now, &serde_json::to_vec(&payload).unwrap(), None);
            r.event_id = Some(Uuid::from_u128(i + 1));
            r
        })
        .collect()
}

/// (project, title, culprit) → times seen, over every issue of `stores`.
fn issue_counts(stores: &[&Store]) -> BTreeMap<(u64, String, String), i64> {
    let mut out = BTreeMap::new();
    for store in stores {
        for item in store
            .db()
            .prefix_iterator_cf(&store.cf(cf::ISSUES), [keys::issues::ISSUE])
        {
            let (k, v) = item.unwrap();
            if k.first() != Some(&keys::issues::ISSUE) {
                break;
            }
            let issue = IssueRecord::from_bytes(&v).unwrap();
            let seen = store
                .db()
                .get_cf(
                    &store.cf(cf::COUNTERS),
                    keys::issue_counter(keys::counters::ISSUE_EVENTS, issue.id),
                )
                .unwrap()
                .map(|v| decode_i64(&v))
                .unwrap_or(0);
            *out.entry((issue.project_id, issue.title, issue.culprit))
                .or_insert(0) += seen;
        }
    }
    out
}

fn stored_events(store: &Store) -> usize {
    store
        .db()
        .iterator_cf(&store.cf(cf::EVENTS), rocksdb::IteratorMode::Start)
        .count()
}

struct Node {
    store: Store,
    stop: Arc<AtomicBool>,
    owned: Arc<AtomicUsize>,
    thread: Option<std::thread::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl Node {
    fn start(config: &KafkaConfig) -> Node {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let processor = Arc::new(
            Processor::new(
                store.clone(),
                ProcessorConfig {
                    batch_records: 32,
                    ..Default::default()
                },
            )
            .unwrap(),
        );
        let stop = Arc::new(AtomicBool::new(false));
        let owned = Arc::new(AtomicUsize::new(0));
        // The loop of `Processor::run_kafka`, plus a view of the assignment for the test.
        let thread = {
            let (config, stop, owned) = (config.clone(), Arc::clone(&stop), Arc::clone(&owned));
            std::thread::spawn(move || {
                let consumer = KafkaConsumer::new(&config, processor.store()).unwrap();
                while !stop.load(Ordering::Acquire) {
                    processor
                        .kafka_step(&consumer, Duration::from_millis(200))
                        .unwrap();
                    owned.store(consumer.assignment().len(), Ordering::Release);
                }
            })
        };
        Node {
            store,
            stop,
            owned,
            thread: Some(thread),
            _dir: dir,
        }
    }

    fn stop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.stop();
    }
}

fn wait_for(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn two_processors_match_embedded_and_a_leaver_hands_over_without_recounting() {
    let (config, rt) = common::fresh_kafka("p", 4);

    let records = events();
    // Embedded baseline: the same records through the same pipeline, one store.
    let base_dir = tempfile::tempdir().unwrap();
    let base = open(base_dir.path());
    Processor::new(base.clone(), ProcessorConfig::default())
        .unwrap()
        .process_and_commit(&records)
        .unwrap();
    let expected = issue_counts(&[&base]);
    assert_eq!(expected.values().sum::<i64>(), records.len() as i64);

    let mut a = Node::start(&config);
    let b = Node::start(&config);
    // Produce once the group is stable, so that each partition's events are split between
    // the two stores only by the hand-over tested at the end.
    wait_for(
        "both processors to own partitions",
        Duration::from_secs(60),
        || {
            let (oa, ob) = (
                a.owned.load(Ordering::Acquire),
                b.owned.load(Ordering::Acquire),
            );
            oa > 0 && ob > 0 && oa + ob == 2 * config.partitions as usize
        },
    );
    let log = KafkaLog::new(&config).unwrap();
    // Each record once, plus every tenth again (an SDK resend): dedup keeps counts exact.
    rt.block_on(async {
        for (i, r) in records.iter().enumerate() {
            log.append(vec![r.clone()]).unwrap().await.unwrap();
            if i.is_multiple_of(10) {
                log.append(vec![r.clone()]).unwrap().await.unwrap();
            }
        }
    });
    wait_for(
        "both processors to store every event",
        Duration::from_secs(120),
        || stored_events(&a.store) + stored_events(&b.store) == records.len(),
    );
    assert!(
        stored_events(&a.store) > 0 && stored_events(&b.store) > 0,
        "both processors got partitions"
    );
    assert_eq!(issue_counts(&[&a.store, &b.store]), expected);

    // A leaves: B takes A's partitions and starts where A's committed offsets end (A's results
    // stay in A's store and are served from there by a query node's fan-out), so across the two
    // stores every event is still counted exactly once: nothing is read twice.
    // Every partition of both topics: B owned half of them (`config.partitions`) before A
    // left, so waiting for that count would pass before the hand-over, or never once B had
    // already taken the other half.
    a.stop();
    let all_partitions = 2 * config.partitions as usize;
    wait_for(
        "the survivor to own every partition",
        Duration::from_secs(120),
        || b.owned.load(Ordering::Acquire) == all_partitions,
    );
    // Give B time to (wrongly) re-read anything before checking that it did not.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        stored_events(&a.store) + stored_events(&b.store),
        records.len(),
        "an event was processed by both nodes"
    );
    assert_eq!(issue_counts(&[&a.store, &b.store]), expected);
}
