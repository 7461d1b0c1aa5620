//! `osprey bench` end to end, small: two mixes × two encodings of 300 events each. The JSON it
//! writes must be complete and consistent — every event sent was accepted (and, since the
//! command waits for the backlog to drain, processed), lag samples were measured, and memory
//! and disk figures are real, and the settled footprint (flushed, compacted column families)
//! is counted over the events actually stored. No assertion on speed or size: the figures
//! are for BENCHMARKS.md.

use std::process::Command;
use std::time::Duration;

mod common;

#[test]
fn bench_reports_every_run_consistently() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("bench.json");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_osprey"));
    cmd.args(["bench", "--events", "300", "--mixes", "errors,transactions"])
        .args([
            "--compress",
            "none,gzip",
            "--concurrency",
            "8",
            "--durability",
            "os",
        ])
        .arg("--json")
        .arg(&json)
        .arg("--dir")
        .arg(dir.path().join("runs"));
    let out = common::run_tool("osprey bench", cmd, Duration::from_secs(300));
    out.assert_success();
    assert!(out.stdout.contains("processed/s"), "{}", out.stdout);
    let rows: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let rows = rows.as_array().unwrap();
    let runs: Vec<(String, String)> = rows
        .iter()
        .map(|r| {
            (
                r["mix"].as_str().unwrap().into(),
                r["compress"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        runs,
        [
            ("errors", "none"),
            ("errors", "gzip"),
            ("transactions", "none"),
            ("transactions", "gzip")
        ]
        .map(|(m, c)| (m.to_owned(), c.to_owned()))
    );
    for r in rows {
        assert_eq!(r["sent"], 300, "{r}");
        assert_eq!(r["accepted"], 300, "{r}");
        for positive in [
            "accepted_per_sec",
            "processed_per_sec",
            "peak_rss_mib",
            "bytes_per_event",
            "stored_bytes_per_event",
            "event_bytes_per_event",
        ] {
            assert!(r[positive].as_f64().unwrap() > 0.0, "{positive}: {r}");
        }
        assert!(
            r["ingest_p99_ms"].as_f64() >= r["ingest_p50_ms"].as_f64(),
            "{r}"
        );
        assert!(r["lag_samples"].as_u64().unwrap() >= 1, "{r}");
        assert!(r["lag_p99_ms"].as_f64() >= r["lag_p50_ms"].as_f64(), "{r}");
        // Every accepted event is stored, plus the lag samples (also stored events).
        let stored = r["stored_events"].as_u64().unwrap();
        assert!(stored >= 300 + r["lag_samples"].as_u64().unwrap(), "{r}");
        // The per-event figures are the column families' bytes over the stored events (the
        // log's may be 0: processed records are trimmed from it).
        let cfs = r["column_family_bytes"].as_object().unwrap();
        let events_cf = cfs["events"].as_u64().unwrap();
        let log_cf = cfs["log"].as_u64().unwrap();
        let processed: u64 = cfs
            .iter()
            .filter(|(name, _)| name.as_str() != "log")
            .map(|(_, b)| b.as_u64().unwrap())
            .sum();
        for (field, bytes) in [
            ("event_bytes_per_event", events_cf),
            ("log_bytes_per_event", log_cf),
            ("stored_bytes_per_event", processed),
        ] {
            let expected = bytes as f64 / stored as f64;
            let got = r[field].as_f64().unwrap();
            assert!(
                (got - expected).abs() < 1e-6 * expected.max(1.0),
                "{field}: {r}"
            );
        }
        for cf in ["index", "counters", "issues"] {
            assert!(cfs[cf].as_u64().unwrap() > 0, "{cf}: {r}");
        }
        // Settled processed data is a fraction of the directory right after the run (which
        // also holds the log, the WAL and uncompacted files).
        assert!(
            r["stored_bytes_per_event"].as_f64() < r["bytes_per_event"].as_f64(),
            "{r}"
        );
    }
    // Refused clearly: a mix that does not exist.
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_osprey"));
    cmd.args(["bench", "--mixes", "everything"]);
    let out = common::run_tool("osprey bench", cmd, Duration::from_secs(60));
    assert!(!out.status.success());
    assert!(out.stderr.contains("everything"), "{}", out.stderr);
}
