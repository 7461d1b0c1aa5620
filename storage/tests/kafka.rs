//! Kafka mode of the log against a real Apache Kafka broker.
//!
//! The broker's address comes from `OSPREY_TEST_KAFKA` (`scripts/kafka.sh start` prints it;
//! the test command exports it). Without it these tests fail with that message: a Kafka test
//! that silently passes without Kafka would prove nothing. Every test uses its own topics and
//! consumer groups, so they run in parallel on one broker.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use storage::{
    cf, ensure_topics, kafka_offset, keys, KafkaConfig, KafkaConsumer, KafkaLog, KafkaTopics, Log,
    LogRecord, StorageError, Store, StoreOptions, WriteBatch,
};
use uuid::Uuid;

fn broker() -> String {
    match std::env::var("OSPREY_TEST_KAFKA") {
        Ok(b) if !b.trim().is_empty() => b,
        _ => panic!(
            "OSPREY_TEST_KAFKA is not set: start a broker with `scripts/kafka.sh start` and \
             export the address it prints (the test command does both)"
        ),
    }
}

fn config(tag: &str) -> KafkaConfig {
    let run = Uuid::new_v4().simple().to_string();
    KafkaConfig {
        brokers: broker(),
        topics: KafkaTopics {
            events: format!("t-{tag}-events-{run}"),
            transactions: format!("t-{tag}-tx-{run}"),
            meta: format!("t-{tag}-meta-{run}"),
        },
        partitions: 3,
        group_id: format!("g-{tag}-{run}"),
        session_timeout_ms: 6_000,
        ..Default::default()
    }
}

/// The receive time of the records this process makes. Recent on purpose: a record's receive
/// time is its Kafka timestamp, and the broker's time-based retention (7 days) deletes
/// records older than that at its next check, in the middle of a test.
fn base_ms() -> u64 {
    static BASE: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *BASE.get_or_init(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64
    })
}

fn record(project_id: u64, i: u64, item_type: &str) -> LogRecord {
    LogRecord {
        project_id,
        key_id: 9,
        received_ms: base_ms() + i,
        event_id: Some(Uuid::from_u128(((project_id as u128) << 64) | i as u128)),
        item_type: item_type.into(),
        envelope_header: Bytes::from_static(
            br#"{"sdk":{"name":"sentry.python","version":"2.0.0"}}"#,
        ),
        item_header: Bytes::from(format!(r#"{{"type":"{item_type}"}}"#)),
        client_addr: Some("10.1.2.3".parse().unwrap()),
        payload: Bytes::from(format!(r#"{{"message":"m{i}"}}"#)),
    }
}

async fn setup(tag: &str) -> KafkaConfig {
    let config = config(tag);
    ensure_topics(&config).await.expect("creating topics");
    // Creating twice is fine (existing topics are left alone).
    ensure_topics(&config).await.expect("topics already exist");
    config
}

/// Reads and commits (offsets in the store, like the processor does) until `want` records
/// arrived or `deadline` passes. Returns the records' event ids in the order read.
fn consume_committing(
    consumer: &KafkaConsumer,
    store: &Store,
    want: usize,
    limit: Duration,
) -> Vec<Uuid> {
    let deadline = Instant::now() + limit;
    let mut ids = Vec::new();
    while ids.len() < want && Instant::now() < deadline {
        let batch = consumer
            .next_batch(64, 1 << 20, Duration::from_millis(500))
            .expect("next_batch");
        if batch.is_empty() {
            continue;
        }
        let mut wb = WriteBatch::default();
        batch.add_to_write_batch(store, &mut wb);
        store.write(wb, true).unwrap();
        consumer.commit_async(&batch);
        ids.extend(batch.records.iter().map(|r| r.record.event_id.unwrap()));
    }
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produce_consume_and_resume_exactly_from_the_local_offsets() {
    let config = setup("resume").await;
    let log = KafkaLog::new(&config).unwrap();
    let mut tickets = Vec::new();
    let mut sent = HashSet::new();
    for i in 0..300u64 {
        let project = 1 + i % 5;
        let ty = if i.is_multiple_of(3) {
            "transaction"
        } else {
            "event"
        };
        let r = record(project, i, ty);
        sent.insert(r.event_id.unwrap());
        tickets.push(log.append(vec![r]).unwrap());
    }
    for t in tickets {
        tokio::time::timeout(Duration::from_secs(60), t)
            .await
            .expect("delivery report within 60 s")
            .expect("delivered");
    }
    assert_eq!(log.stats().delivered, 300);
    assert_eq!(log.backlog_bytes(), 0);

    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), &StoreOptions::default()).unwrap();
    let first = {
        let c = config.clone();
        let s = store.clone();
        tokio::task::spawn_blocking(move || {
            let consumer = KafkaConsumer::new(&c, &s).unwrap();
            let ids = consume_committing(&consumer, &s, 120, Duration::from_secs(90));
            assert!(!consumer.assignment().is_empty());
            ids
        })
        .await
        .unwrap()
    };
    assert!(first.len() >= 120, "first consumer read {}", first.len());

    // A different consumer group has no Kafka-committed offsets at all: only the offsets in
    // the local store can make it start where the first one stopped.
    let mut second_config = config.clone();
    second_config.group_id.push_str("-second");
    let rest = {
        let s = store.clone();
        let want = 300 - first.len();
        tokio::task::spawn_blocking(move || {
            let consumer = KafkaConsumer::new(&second_config, &s).unwrap();
            let mut ids = consume_committing(&consumer, &s, want, Duration::from_secs(90));
            // Nothing more than the rest arrives.
            ids.extend(consume_committing(
                &consumer,
                &s,
                usize::MAX,
                Duration::from_secs(3),
            ));
            ids
        })
        .await
        .unwrap()
    };
    let all: Vec<Uuid> = first.iter().chain(&rest).copied().collect();
    let unique: HashSet<Uuid> = all.iter().copied().collect();
    assert_eq!(
        all.len(),
        300,
        "every record exactly once (first {}, rest {})",
        first.len(),
        rest.len()
    );
    assert_eq!(unique, sent);

    // Stored offsets equal the ends of the partitions.
    let mut total = 0;
    for topic in [&config.topics.events, &config.topics.transactions] {
        for p in 0..config.partitions {
            total += kafka_offset(&store, topic, p).unwrap().unwrap_or(0);
        }
    }
    assert_eq!(total, 300);
}

/// The ids a member read.
type ReadIds = Arc<Mutex<HashSet<Uuid>>>;

/// Produces records `from..to` (projects 1..=8, so every partition gets some) and waits for
/// every delivery report.
async fn produce_range(log: &KafkaLog, from: u64, to: u64) -> HashSet<Uuid> {
    let mut tickets = Vec::new();
    let mut sent = HashSet::new();
    for i in from..to {
        let r = record(1 + i % 8, i, "event");
        sent.insert(r.event_id.unwrap());
        tickets.push(log.append(vec![r]).unwrap());
    }
    for t in tickets {
        tokio::time::timeout(Duration::from_secs(60), t)
            .await
            .expect("delivery report within 60 s")
            .expect("delivered");
    }
    sent
}

/// One processor-like member: each batch goes to the group and then to the local store
/// (offsets included), as `Processor::kafka_step` does, until `stop`. Returns the member's
/// read ids (a member may re-read its own records after a rebalance: dedup absorbs that, so
/// the ids are a set) and publishes its assignment size in `owned`.
fn member(
    config: KafkaConfig,
    store: Store,
    stop: Arc<AtomicBool>,
    owned: Arc<AtomicUsize>,
    read: ReadIds,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let consumer = KafkaConsumer::new(&config, &store).unwrap();
        let started = Instant::now();
        let deadline = started + Duration::from_secs(150);
        let mut generation = 0;
        while !stop.load(Ordering::Acquire) && Instant::now() < deadline {
            let batch = consumer
                .next_batch(16, 1 << 20, Duration::from_millis(200))
                .expect("next_batch");
            owned.store(consumer.assignment().len(), Ordering::Release);
            // Shown when the test fails: when this member's partitions changed.
            if consumer.generation() != generation {
                generation = consumer.generation();
                eprintln!(
                    "{} at {:?}: generation {generation}, owns {:?}, owes {:?}",
                    consumer.node_id(),
                    started.elapsed(),
                    consumer.assignment(),
                    consumer.owed()
                );
            }
            // A commit that failed with its answer lost leaves the batch owed: it is read
            // again here, before anything else.
            while let Some(owed) = consumer.next_owed_batch(16, 1 << 20).expect("owed") {
                let mut wb = WriteBatch::default();
                owed.add_to_write_batch(&store, &mut wb);
                store.write(wb, true).unwrap();
                let mut read = read.lock().unwrap();
                read.extend(owed.records.iter().map(|r| r.record.event_id.unwrap()));
            }
            if batch.is_empty() {
                continue;
            }
            if let Err(e) = consumer.commit_group(&batch) {
                // A rebalance under way: nothing is written, the partition goes back to the
                // group's offset (here or at its new owner).
                eprintln!("group commit failed: {e}");
                consumer.recover_failed_commit(&batch).unwrap();
                continue;
            }
            let mut wb = WriteBatch::default();
            batch.add_to_write_batch(&store, &mut wb);
            store.write(wb, true).unwrap();
            let mut read = read.lock().unwrap();
            read.extend(batch.records.iter().map(|r| r.record.event_id.unwrap()));
        }
    })
}

fn wait_until(what: &str, limit: Duration, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + limit;
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what} ({limit:?})"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitions_moving_between_live_members_are_read_once_overall() {
    let mut config = setup("move").await;
    config.partitions = 4;
    // Four partitions need their own topics (setup made three-partition ones).
    config.topics.events.push_str("-4");
    config.topics.transactions.push_str("-4");
    ensure_topics(&config).await.unwrap();
    let log = KafkaLog::new(&config).unwrap();
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let store_a = Store::open(dir_a.path(), &StoreOptions::default()).unwrap();
    let store_b = Store::open(dir_b.path(), &StoreOptions::default()).unwrap();
    let (read_a, read_b): (ReadIds, ReadIds) = (Arc::default(), Arc::default());
    let (owned_a, owned_b) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (stop_a, stop_b) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicBool::new(false)),
    );
    let len = |r: &ReadIds| r.lock().unwrap().len();

    // A alone reads the first wave.
    let mut sent = produce_range(&log, 0, 160).await;
    let a = member(
        config.clone(),
        store_a.clone(),
        stop_a.clone(),
        owned_a.clone(),
        read_a.clone(),
    );
    wait_until("A reads the first wave", Duration::from_secs(60), || {
        len(&read_a) == 160
    });

    // B joins: some of A's partitions move to B while A is alive. B must start where A's
    // results end, not at the beginning of the partition.
    let b = member(
        config.clone(),
        store_b.clone(),
        stop_b.clone(),
        owned_b.clone(),
        read_b.clone(),
    );
    wait_until("B owns partitions", Duration::from_secs(60), || {
        owned_b.load(Ordering::Acquire) > 0 && owned_a.load(Ordering::Acquire) > 0
    });
    sent.extend(produce_range(&log, 160, 320).await);
    wait_until(
        "A and B read the second wave",
        Duration::from_secs(60),
        || {
            let (ra, rb) = (read_a.lock().unwrap(), read_b.lock().unwrap());
            ra.union(&rb).count() == 320
        },
    );
    assert!(len(&read_b) > 0, "B read nothing of the second wave");

    // B leaves: its partitions go back to A, which must continue where B stopped, not
    // from its own older offsets.
    stop_b.store(true, Ordering::Release);
    b.join().unwrap();
    sent.extend(produce_range(&log, 320, 400).await);
    wait_until("A reads the third wave", Duration::from_secs(60), || {
        let (ra, rb) = (read_a.lock().unwrap(), read_b.lock().unwrap());
        ra.union(&rb).count() == 400
    });
    std::thread::sleep(Duration::from_secs(1));
    stop_a.store(true, Ordering::Release);
    a.join().unwrap();

    let (ra, rb) = (read_a.lock().unwrap(), read_b.lock().unwrap());
    let both: Vec<_> = ra.intersection(&rb).collect();
    assert!(
        both.is_empty(),
        "{} records read by both members",
        both.len()
    );
    let union: HashSet<Uuid> = ra.union(&rb).copied().collect();
    assert_eq!(union, sent);
    // Every partition's offsets, A's and B's together, reach the partition's end.
    let mut ends = 0;
    for p in 0..config.partitions {
        let a_off = kafka_offset(&store_a, &config.topics.events, p)
            .unwrap()
            .unwrap_or(0);
        let b_off = kafka_offset(&store_b, &config.topics.events, p)
            .unwrap()
            .unwrap_or(0);
        ends += a_off.max(b_off);
    }
    assert_eq!(ends, 400);
}

/// Reads batches as the processor does (group commit, then the store) until `want` records
/// are read or `limit` passes; owed ranges first. Returns the ids read.
fn consume_as_processor(
    consumer: &KafkaConsumer,
    store: &Store,
    want: usize,
    limit: Duration,
) -> Vec<Uuid> {
    let deadline = Instant::now() + limit;
    let mut ids = Vec::new();
    let write = |batch: &storage::KafkaBatch, ids: &mut Vec<Uuid>| {
        let mut wb = WriteBatch::default();
        batch.add_to_write_batch(store, &mut wb);
        store.write(wb, true).unwrap();
        ids.extend(batch.records.iter().map(|r| r.record.event_id.unwrap()));
    };
    while ids.len() < want && Instant::now() < deadline {
        let batch = consumer
            .next_batch(8, 1 << 20, Duration::from_millis(300))
            .expect("next_batch");
        while let Some(owed) = consumer.next_owed_batch(8, 1 << 20).expect("owed") {
            write(&owed, &mut ids);
        }
        if batch.is_empty() {
            continue;
        }
        match consumer.commit_group(&batch) {
            Ok(()) => write(&batch, &mut ids),
            Err(e) => {
                eprintln!("group commit failed: {e}");
                consumer.recover_failed_commit(&batch).unwrap();
            }
        }
    }
    ids
}

/// The window between a batch's group commit and its local write, made deterministic: node
/// A takes a batch from the group and stops before writing it; node B takes the partitions
/// over (and goes further, adding its own turns); A comes back on its store. B never reads
/// A's batch (the group has it as A's), and A re-reads exactly that batch, once: every
/// record is in exactly one store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_taken_from_the_group_but_not_written_is_read_again_by_its_node_only() {
    let config = setup("owed").await;
    let log = KafkaLog::new(&config).unwrap();
    let mut sent = produce_range(&log, 0, 60).await;
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let store_a = Store::open(dir_a.path(), &StoreOptions::default()).unwrap();
    let store_b = Store::open(dir_b.path(), &StoreOptions::default()).unwrap();

    // A: some batches the whole way, then one taken from the group and never written.
    let (written_a, lost) = {
        let (c, s) = (config.clone(), store_a.clone());
        tokio::task::spawn_blocking(move || {
            let consumer = KafkaConsumer::new(&c, &s).unwrap();
            assert!(consumer.owed().is_empty());
            let written = consume_as_processor(&consumer, &s, 20, Duration::from_secs(60));
            assert!(written.len() >= 20, "A read {}", written.len());
            let deadline = Instant::now() + Duration::from_secs(30);
            let lost = loop {
                let batch = consumer
                    .next_batch(8, 1 << 20, Duration::from_millis(300))
                    .unwrap();
                if !batch.is_empty() {
                    consumer.commit_group(&batch).expect("group commit");
                    break batch;
                }
                assert!(Instant::now() < deadline, "no batch for A to lose");
            };
            let lost_ranges: Vec<(String, i32, i64, i64)> = {
                let mut first: std::collections::BTreeMap<(String, i32), i64> = Default::default();
                for r in &lost.records {
                    let e = first
                        .entry((r.topic.to_string(), r.partition))
                        .or_insert(r.offset);
                    *e = (*e).min(r.offset);
                }
                lost.next_offsets()
                    .map(|(t, p, next)| (t.to_owned(), p, first[&(t.to_owned(), p)], next))
                    .collect()
            };
            let ids: HashSet<Uuid> = lost
                .records
                .iter()
                .map(|r| r.record.event_id.unwrap())
                .collect();
            (written, (ids, lost_ranges))
        })
        .await
        .unwrap()
    };
    let (lost_ids, lost_ranges) = lost;
    assert!(!lost_ids.is_empty());

    // B takes every partition over, reads the rest and more, and never A's lost batch.
    sent.extend(produce_range(&log, 60, 90).await);
    let want_b = 90 - written_a.len() - lost_ids.len();
    let read_b = {
        let (c, s) = (config.clone(), store_b.clone());
        tokio::task::spawn_blocking(move || {
            let consumer = KafkaConsumer::new(&c, &s).unwrap();
            let mut ids = consume_as_processor(&consumer, &s, want_b, Duration::from_secs(60));
            ids.extend(consume_as_processor(
                &consumer,
                &s,
                usize::MAX,
                Duration::from_secs(2),
            ));
            assert!(consumer.owed().is_empty(), "B owes nothing");
            ids
        })
        .await
        .unwrap()
    };
    assert_eq!(read_b.len(), want_b, "B read the rest once");
    assert!(
        read_b.iter().all(|id| !lost_ids.contains(id)),
        "B read A's batch: it would be counted twice"
    );

    // A comes back: it owes exactly its lost batch and reads it, whoever owns the partitions.
    let reread = {
        let (c, s) = (config.clone(), store_a.clone());
        tokio::task::spawn_blocking(move || {
            let consumer = KafkaConsumer::new(&c, &s).unwrap();
            let mut owed = consumer.owed();
            owed.sort();
            let mut want = lost_ranges.clone();
            want.sort();
            assert_eq!(owed, want, "A owes its lost batch");
            let mut ids = Vec::new();
            while let Some(batch) = consumer.next_owed_batch(3, 1 << 20).unwrap() {
                let mut wb = WriteBatch::default();
                batch.add_to_write_batch(&s, &mut wb);
                s.write(wb, true).unwrap();
                ids.extend(batch.records.iter().map(|r| r.record.event_id.unwrap()));
            }
            assert!(consumer.owed().is_empty());
            for (topic, partition, _, next) in &want {
                assert!(kafka_offset(&s, topic, *partition).unwrap() >= Some(*next));
            }
            ids
        })
        .await
        .unwrap()
    };
    assert_eq!(reread.len(), lost_ids.len(), "each lost record once");
    assert_eq!(reread.iter().copied().collect::<HashSet<_>>(), lost_ids);

    let all: Vec<Uuid> = written_a
        .iter()
        .chain(&read_b)
        .chain(&reread)
        .copied()
        .collect();
    assert_eq!(all.len(), 90, "every record in exactly one store");
    assert_eq!(all.into_iter().collect::<HashSet<_>>(), sent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_carry_their_metadata_and_are_keyed_by_project() {
    let config = setup("meta").await;
    let log = KafkaLog::new(&config).unwrap();
    // One envelope with an event and a transaction: both topics, one ticket.
    let envelope = vec![
        record(77, 1, "event"),
        record(77, 2, "transaction"),
        record(77, 3, "attachment"),
    ];
    tokio::time::timeout(
        Duration::from_secs(60),
        log.append(envelope.clone()).unwrap(),
    )
    .await
    .unwrap()
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), &StoreOptions::default()).unwrap();
    let c = config.clone();
    let got = tokio::task::spawn_blocking(move || {
        let consumer = KafkaConsumer::new(&c, &store).unwrap();
        let deadline = Instant::now() + Duration::from_secs(90);
        let mut got = Vec::new();
        while got.len() < 3 && Instant::now() < deadline {
            got.extend(
                consumer
                    .next_batch(10, 1 << 20, Duration::from_millis(500))
                    .unwrap()
                    .records,
            );
        }
        got
    })
    .await
    .unwrap();
    assert_eq!(got.len(), 3);
    for r in &got {
        let original = envelope
            .iter()
            .find(|e| e.event_id == r.record.event_id)
            .unwrap();
        assert_eq!(&r.record, original, "the record travels unchanged");
        let expected_topic = if original.item_type == "transaction" {
            &config.topics.transactions
        } else {
            &config.topics.events
        };
        assert_eq!(&*r.topic, expected_topic.as_str());
    }
    // Same key → same partition number in both topics (same partition count, same hash).
    let partitions: HashSet<i32> = got.iter().map(|r| r.partition).collect();
    assert_eq!(partitions.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_that_is_not_a_record_is_an_outcome_and_is_skipped() {
    let config = setup("garbage").await;
    let raw: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &config.brokers)
        .create()
        .unwrap();
    raw.send(
        BaseRecord::to(&config.topics.events)
            .key("42")
            .payload("this is not an envelope")
            .partition(0),
    )
    .map_err(|(e, _)| e)
    .unwrap();
    raw.flush(Duration::from_secs(30)).unwrap();
    let log = KafkaLog::new(&config).unwrap();
    let good = record(42, 5, "event");
    log.append(vec![good.clone()]).unwrap().await.unwrap();

    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), &StoreOptions::default()).unwrap();
    let (c, s) = (config.clone(), store.clone());
    let (invalid, valid) = tokio::task::spawn_blocking(move || {
        let consumer = KafkaConsumer::new(&c, &s).unwrap();
        let deadline = Instant::now() + Duration::from_secs(90);
        let (mut invalid, mut valid) = (Vec::new(), Vec::new());
        while invalid.len() + valid.len() < 2 && Instant::now() < deadline {
            let batch = consumer
                .next_batch(10, 1 << 20, Duration::from_millis(500))
                .unwrap();
            let mut wb = WriteBatch::default();
            batch.add_to_write_batch(&s, &mut wb);
            s.write(wb, true).unwrap();
            invalid.extend(batch.invalid.iter().cloned());
            valid.extend(batch.records.iter().map(|r| r.record.clone()));
        }
        drop(consumer);
        // A new consumer on the same store does not see the bad message again.
        let consumer = KafkaConsumer::new(&c, &s).unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            let batch = consumer
                .next_batch(10, 1 << 20, Duration::from_millis(500))
                .unwrap();
            assert!(batch.is_empty(), "replayed after commit: {batch:?}");
            if !consumer.assignment().is_empty()
                && Instant::now() + Duration::from_secs(15) > deadline
            {
                break;
            }
        }
        (invalid, valid)
    })
    .await
    .unwrap();
    assert_eq!(invalid.len(), 1);
    assert_eq!(invalid[0].project_id, 42);
    assert_eq!(valid, vec![good]);
    let outcomes = store.cf(cf::OUTCOMES);
    let prefix = keys::outcome(
        42,
        keys::hour_start(invalid[0].timestamp_ms),
        3,
        0,
        "kafka_decode",
    );
    let value = store
        .db()
        .get_cf(&outcomes, prefix)
        .unwrap()
        .expect("outcome counted");
    assert_eq!(storage::decode_i64(&value), 1);
}

/// The broker process serving `addr` (found by its `server.properties`), with its command
/// line, so the test can stop it and start it again with the same data and port.
fn broker_process(addr: &str) -> (u32, Vec<String>, std::path::PathBuf) {
    let listener = format!("PLAINTEXT://{addr}");
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<String> = cmdline
            .split(|&b| b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        let Some(pos) = args.iter().position(|a| a == "kafka.Kafka") else {
            continue;
        };
        let Some(props) = args.get(pos + 1) else {
            continue;
        };
        let Ok(text) = std::fs::read_to_string(props) else {
            continue;
        };
        if text
            .lines()
            .any(|l| l.starts_with("listeners=") && l.contains(&listener))
        {
            let dir = std::path::Path::new(props).parent().unwrap().to_path_buf();
            return (pid, args, dir);
        }
    }
    panic!("no broker process found listening on {addr}");
}

fn stop_broker(pid: u32) {
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::path::Path::new(&format!("/proc/{pid}")).exists() {
        // A zombie still has /proc; its state says so.
        let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        if state.contains(") Z") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "broker {pid} did not stop within 60 s"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn start_broker(args: &[String], run_dir: &std::path::Path) {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(run_dir.join("broker.log"))
        .unwrap();
    let mut child = std::process::Command::new("setsid")
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    // scripts/kafka.sh stops the broker by the pid in its run directory.
    std::fs::write(run_dir.join("pid"), child.id().to_string()).unwrap();
    // The broker outlives this test (scripts/kafka.sh stops it); the thread only reaps it if
    // it exits while the test still runs.
    std::thread::spawn(move || child.wait());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "restarts the shared broker; run alone: cargo test -p storage --test kafka -- --ignored"]
async fn broker_restart_under_load_refuses_then_resumes_and_loses_nothing_acknowledged() {
    let mut config = setup("outage").await;
    config.delivery_timeout_ms = 4_000;
    config.max_inflight_messages = 2_000;
    let log = std::sync::Arc::new(KafkaLog::new(&config).unwrap());
    let (pid, args, run_dir) = broker_process(&config.brokers);

    // Load: one envelope every 2 ms from a task; each result is recorded.
    let acked = std::sync::Arc::new(parking_lot::Mutex::new(HashSet::<Uuid>::new()));
    let refused = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = {
        let (log, acked, refused, stop) =
            (log.clone(), acked.clone(), refused.clone(), stop.clone());
        tokio::spawn(async move {
            let mut i = 0u64;
            let mut waiting = tokio::task::JoinSet::new();
            while !stop.load(std::sync::atomic::Ordering::Acquire) {
                i += 1;
                let r = record(
                    3,
                    i,
                    if i.is_multiple_of(2) {
                        "event"
                    } else {
                        "transaction"
                    },
                );
                let id = r.event_id.unwrap();
                match log.append(vec![r]) {
                    Ok(ticket) => {
                        let (acked, refused) = (acked.clone(), refused.clone());
                        waiting.spawn(async move {
                            match ticket.await {
                                Ok(_) => {
                                    acked.lock().insert(id);
                                }
                                Err(StorageError::Backpressure { .. }) => {
                                    refused.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                                }
                                Err(e) => panic!("unexpected ticket error {e}"),
                            }
                        });
                    }
                    Err(StorageError::Backpressure { .. }) => {
                        refused.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    Err(e) => panic!("unexpected append error {e}"),
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            while waiting.join_next().await.is_some() {}
            i
        })
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    let acked_before = acked.lock().len();
    assert!(
        acked_before > 0,
        "nothing acknowledged while the broker was up"
    );

    tokio::task::spawn_blocking(move || stop_broker(pid))
        .await
        .unwrap();
    let refused_at_stop = refused.load(std::sync::atomic::Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(8)).await;
    let refused_while_down = refused.load(std::sync::atomic::Ordering::Relaxed) - refused_at_stop;
    assert!(
        refused_while_down > 0,
        "the producer never refused while the broker was down"
    );
    let acked_while_down = acked.lock().len();

    start_broker(&args, &run_dir);
    // Resumes by itself: the same KafkaLog gets acknowledgements again.
    let deadline = Instant::now() + Duration::from_secs(120);
    while acked.lock().len() <= acked_while_down + 50 {
        assert!(
            Instant::now() < deadline,
            "producer did not resume within 120 s of the restart"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Release);
    let appended = load.await.unwrap();
    let acked: HashSet<Uuid> = acked.lock().clone();
    eprintln!(
        "outage: {appended} appended, {} acknowledged, {} refused ({refused_while_down} while down)",
        acked.len(),
        refused.load(std::sync::atomic::Ordering::Relaxed)
    );

    // Nothing acknowledged is lost: every acknowledged id is on the topics.
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), &StoreOptions::default()).unwrap();
    let c = config.clone();
    let missing = tokio::task::spawn_blocking(move || {
        let consumer = KafkaConsumer::new(&c, &store).unwrap();
        let mut missing = acked;
        let deadline = Instant::now() + Duration::from_secs(120);
        while !missing.is_empty() && Instant::now() < deadline {
            for id in consume_committing(&consumer, &store, 1, Duration::from_secs(1)) {
                missing.remove(&id);
            }
        }
        missing
    })
    .await
    .unwrap();
    assert!(
        missing.is_empty(),
        "{} acknowledged records are not on the topics",
        missing.len()
    );
}

/// Polls `probe` every 50 ms for at most 30 s.
fn eventually(what: &str, mut probe: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !probe() {
        assert!(Instant::now() < deadline, "{what}: not within 30 s");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The compacted metadata topic: what one node writes, every node has; a node that starts
/// later has it before `start` returns; ids never collide across nodes; deletes made while
/// a node was down are applied when it comes back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_topic_shares_writes_deletes_and_ids_across_nodes() {
    use storage::meta_topic::MetaFollower;
    const KEY: &str = "0123456789abcdef0123456789abcdef";
    const TOKEN: &str = "meta-test-admin-token-0123456789";
    let config = config("meta");
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());

    let a = Store::open(dir_a.path(), &StoreOptions::default()).unwrap();
    let follower_a = MetaFollower::start(&config, &a).await.unwrap();
    assert!(a.shares_metadata());
    a.bootstrap(Some(KEY), Some(TOKEN)).unwrap();
    let shop = a.create_project(1, "shop", "Shop", "python").unwrap();
    assert!(shop.id >= storage::meta_topic::FIRST_REPLICATED_ID);

    // B joins later: everything A made is there when start returns, no waiting.
    let b = Store::open(dir_b.path(), &StoreOptions::default()).unwrap();
    let follower_b = MetaFollower::start(&config, &b).await.unwrap();
    assert_eq!(b.meta().key(KEY).map(|k| k.project_id), Some(1));
    assert!(b.meta().token(TOKEN).is_some());
    assert_eq!(
        b.meta().project(shop.id).map(|p| p.slug.clone()),
        Some("shop".into())
    );
    // Bootstrapping B as well does not make a second default organization or project.
    b.bootstrap(Some(KEY), Some(TOKEN)).unwrap();
    assert_eq!(b.meta().organizations().len(), 1);

    // Both nodes create projects at once: no id is handed out twice.
    let (a2, b2) = (a.clone(), b.clone());
    let make = |store: Store, node: &'static str| {
        std::thread::spawn(move || {
            (0..10)
                .map(|i| {
                    store
                        .create_project(1, &format!("{node}-{i}"), node, "")
                        .unwrap()
                        .id
                })
                .collect::<Vec<u64>>()
        })
    };
    let (from_a, from_b) = (make(a2, "a"), make(b2, "b"));
    let mut ids: Vec<u64> = from_a.join().unwrap();
    ids.extend(from_b.join().unwrap());
    ids.push(shop.id);
    ids.push(1);
    let distinct: HashSet<u64> = ids.iter().copied().collect();
    assert_eq!(distinct.len(), ids.len(), "ids collided: {ids:?}");
    for store in [&a, &b] {
        eventually("every project on both nodes", || {
            let mut have: Vec<u64> = store
                .meta()
                .projects_of_org(1)
                .iter()
                .map(|p| p.id)
                .collect();
            have.sort_unstable();
            let mut want = ids.clone();
            want.sort_unstable();
            have == want
        });
    }

    // Whatever B wrote before A's catch_up (the processor's call before each batch) is
    // applied on A when it returns: no polling.
    for i in 0..5 {
        let key = b
            .create_key(shop.id, &format!("caught up {i}"), None)
            .unwrap();
        a.catch_up_meta(Duration::from_secs(10)).unwrap();
        assert!(
            a.meta().key(&key.public_key).is_some(),
            "key {i} made on B is not applied on A after catch_up"
        );
    }

    // A key and an alert rule made on B work on A; deleting on A removes them on B.
    let key_b = b.create_key(shop.id, "from b", None).unwrap();
    eventually("B's key on A", || a.meta().key(&key_b.public_key).is_some());
    a.delete_key(&key_b.public_key).unwrap();
    eventually("A's delete on B", || {
        b.meta().key(&key_b.public_key).is_none()
    });

    // A goes down; B deletes a key and changes a project; A comes back with both applied
    // by the time start returns.
    let key_c = b
        .create_key(shop.id, "deleted while A is down", None)
        .unwrap();
    eventually("B's second key on A", || {
        a.meta().key(&key_c.public_key).is_some()
    });
    follower_a.shutdown();
    drop(follower_a);
    drop(a);
    let mut renamed = (*b.meta().project(shop.id).unwrap()).clone();
    renamed.name = "Shop (renamed)".into();
    b.put_project(renamed).unwrap();
    b.delete_key(&key_c.public_key).unwrap();
    let a = Store::open(dir_a.path(), &StoreOptions::default()).unwrap();
    let _follower_a = MetaFollower::start(&config, &a).await.unwrap();
    assert!(a.meta().key(&key_c.public_key).is_none());
    assert_eq!(a.meta().project(shop.id).unwrap().name, "Shop (renamed)");
    assert!(a.meta().key(KEY).is_some());
    drop(follower_b);
}
