//! Release health in Kafka mode against a real Apache Kafka broker: `session` and `sessions`
//! records produced to the events topic and folded by a processor consuming it leave exactly
//! the session counters and user sketches the embedded path leaves for the same records.
//!
//! The broker's address comes from `OSPREY_TEST_KAFKA` (see `scripts/kafka.sh`); without it
//! the test fails and says so.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use processor::pipeline::event_record;
use processor::{Processor, ProcessorConfig};
use serde_json::json;
use storage::{
    cf, decode_i64, keys, sessions as sk, KafkaConsumer, KafkaLog, Log, LogRecord, Store,
    StoreOptions,
};
use uuid::Uuid;

fn open(dir: &std::path::Path) -> Store {
    let store = Store::open(dir, &StoreOptions::default()).unwrap();
    store.bootstrap(None, None).unwrap();
    let org = store.meta().project(1).unwrap().org_id;
    let p = store.create_project(org, "p2", "P2", "python").unwrap();
    assert_eq!(p.id, 2);
    store
}

/// Session updates (healthy, errored in two updates, crashed, abnormal) and an aggregate, in
/// two projects and two releases.
fn sessions(now: u64) -> Vec<LogRecord> {
    let started = (now - 60_000) as f64 / 1000.0;
    let item = |project: u64, item_type: &str, payload: serde_json::Value| {
        let mut r = event_record(project, now, &serde_json::to_vec(&payload).unwrap(), None);
        r.item_type = item_type.into();
        r.item_header = bytes::Bytes::from(format!("{{\"type\":\"{item_type}\"}}"));
        r
    };
    let mut out = Vec::new();
    for project in [1, 2] {
        for (sid, init, status, errors, release) in [
            (1u128, true, "exited", 0, "a@1"),
            (2, true, "ok", 1, "a@1"),
            (2, false, "exited", 2, "a@1"),
            (3, true, "crashed", 1, "a@1"),
            (4, true, "abnormal", 0, "a@2"),
        ] {
            out.push(item(
                project,
                "session",
                json!({"sid": Uuid::from_u128(sid).to_string(), "did": format!("u{sid}"),
                       "init": init, "started": started, "status": status, "errors": errors,
                       "attrs": {"release": release, "environment": "production"}}),
            ));
        }
        out.push(item(
            project,
            "sessions",
            json!({"aggregates": [{"started": started, "exited": 4, "errored": 1, "crashed": 1}],
                   "attrs": {"release": "a@2", "environment": "production"}}),
        ));
    }
    out
}

/// Every session counter (its value) and user sketch (its occupied slots: a user seen in two
/// batches has a count of 2 in its slot, which is the same sketch) of a store.
fn health(store: &Store) -> BTreeMap<Vec<u8>, Vec<u64>> {
    let mut out = BTreeMap::new();
    for (cf_name, kind) in [
        (cf::COUNTERS, sk::COUNTER_KIND),
        (cf::HISTOGRAMS, sk::USERS_KIND),
    ] {
        for item in store.db().prefix_iterator_cf(&store.cf(cf_name), [kind]) {
            let (k, v) = item.unwrap();
            if k.first() != Some(&kind) {
                break;
            }
            let value = if kind == sk::COUNTER_KIND {
                vec![decode_i64(&v) as u64]
            } else {
                let mut slots = Vec::new();
                storage::hist::for_each_bucket(&v, |slot, n| {
                    if n > 0 {
                        slots.push(u64::from(slot));
                    }
                })
                .unwrap();
                slots
            };
            out.insert(k.to_vec(), value);
        }
    }
    out
}

#[test]
fn kafka_folds_sessions_like_the_embedded_processor() {
    let (config, rt) = common::fresh_kafka("s", 2);
    let records = sessions(storage::now_ms());

    let base_dir = tempfile::tempdir().unwrap();
    let base = open(base_dir.path());
    Processor::new(base.clone(), ProcessorConfig::default())
        .unwrap()
        .process_and_commit(&records)
        .unwrap();
    let expected = health(&base);
    let started_hour = keys::hour_start(storage::now_ms() - 60_000);
    let crashed = sk::counter_key(1, started_hour, "a@2", "production", sk::metric::CRASHED);
    assert!(
        expected.contains_key(&crashed),
        "the baseline folded the aggregate"
    );

    let log = KafkaLog::new(&config).unwrap();
    rt.block_on(async {
        for r in &records {
            log.append(vec![r.clone()]).unwrap().await.unwrap();
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let processor = Processor::new(
        store.clone(),
        ProcessorConfig {
            batch_records: 4,
            ..Default::default()
        },
    )
    .unwrap();
    let consumer = KafkaConsumer::new(&config, processor.store()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while health(&store) != expected {
        assert!(
            Instant::now() < deadline,
            "timed out: kafka {:?} != embedded {expected:?}",
            health(&store)
        );
        processor
            .kafka_step(&consumer, Duration::from_millis(200))
            .unwrap();
    }
    assert_eq!(health(&store), expected);
}
