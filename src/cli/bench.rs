//! `osprey bench`: the end-to-end benchmark. For each load mix (errors, transactions, mixed)
//! and body encoding (none, gzip) it starts `osprey serve` (this binary) on a fresh data
//! directory and a free loopback port, runs the load generator against it, waits until the
//! log backlog is empty (every accepted event processed), and reports:
//!
//! - accepted events/s: events answered 200 over the load generator's wall time;
//! - processed events/s: accepted events over the time from the first request until the
//!   backlog is empty (so it includes the processor catching up after the load ends);
//! - ingest latency p50/p99: the load generator's request latency;
//! - ingest→queryable lag p50/p99: while the load runs, a sampler sends one marked error
//!   event every 200 ms through the store endpoint and polls the event API until the event is
//!   served; the lag is from the 200 answer to the first successful read (polled every
//!   10 ms at first, then every 5 % of the time waited so far, at most every 100 ms: accurate
//!   to 10 ms or 5 %, whichever is larger, without the polls themselves loading the server
//!   while the processor is behind);
//! - peak RSS of the server (`VmHWM` from `/proc/PID/status`);
//! - bytes on disk per event: the data directory's size after draining, over the events it
//!   holds (the log still holds the raw envelopes until retention, so this is the whole
//!   footprint, not only the processed event: WAL and unflushed, uncompacted files included);
//! - stored bytes per event: what the processed data costs once settled. After draining, the
//!   server is stopped, the bench opens the data directory itself, flushes and fully compacts
//!   every column family ([`storage::Store::compact_fully`]), and divides the live SST bytes
//!   of every column family but the log by the events in the events column family. The
//!   events column family alone and the log are reported beside it, and the JSON has the
//!   bytes of each column family;
//! - CPU seconds: the server's threads summed by name (`osprey-processo`, `osprey-rt`,
//!   `rocksdb:low`, …) when the backlog is empty, and the bench process itself (load generator
//!   and lag sampler) over the load, from `/proc` (Linux only; empty elsewhere). Together they
//!   say where the cores went (BENCHMARKS.md, "End-to-end pass").
//!
//! It prints a table and, with `--json FILE`, writes the rows as JSON.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use ingest::loadgen::{self, Compress, LoadgenOptions, Mix};
use serde::Serialize;

/// Arguments of `osprey bench`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Events per run.
    #[arg(long, default_value_t = 20_000)]
    pub events: u64,
    /// Mixes to run, comma separated: errors, transactions, mixed.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "errors,transactions,mixed"
    )]
    pub mixes: Vec<String>,
    /// Body encodings to run, comma separated: none, gzip, zstd.
    #[arg(long, value_delimiter = ',', default_value = "none,gzip")]
    pub compress: Vec<String>,
    /// Concurrent keep-alive connections of the load generator.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// Durability of acknowledged events: fsync or os.
    #[arg(long, default_value = "fsync")]
    pub durability: String,
    /// Longest wait for the processor to drain the backlog after a run, seconds.
    #[arg(long, default_value_t = 600)]
    pub drain_timeout: u64,
    /// Write the results as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Directory for the runs' data directories [default: a temporary one, removed after].
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

/// The figures of one run.
#[derive(Debug, Serialize)]
pub struct BenchRow {
    /// Load mix.
    pub mix: String,
    /// Body encoding.
    pub compress: String,
    /// Events the load generator sent.
    pub sent: u64,
    /// Events answered 200.
    pub accepted: u64,
    /// Accepted events per second of load.
    pub accepted_per_sec: f64,
    /// Accepted events per second until the backlog was empty.
    pub processed_per_sec: f64,
    /// Request latency, ms.
    pub ingest_p50_ms: f64,
    /// Request latency, ms.
    pub ingest_p99_ms: f64,
    /// Ingest→queryable lag of the sampled events, ms.
    pub lag_p50_ms: Option<f64>,
    /// Ingest→queryable lag of the sampled events, ms.
    pub lag_p99_ms: Option<f64>,
    /// Sampled events whose lag was measured.
    pub lag_samples: usize,
    /// Peak resident memory of the server, MiB.
    pub peak_rss_mib: f64,
    /// Data directory size after draining over the events in it.
    pub bytes_per_event: f64,
    /// Seconds from the end of the load until the backlog was empty.
    pub drain_secs: f64,
    /// Events in the events column family after the run (errors, transactions and the lag
    /// samples).
    pub stored_events: u64,
    /// Live SST bytes of every column family but the log, after flush and full compaction,
    /// over `stored_events`.
    pub stored_bytes_per_event: f64,
    /// The events column family's share of `stored_bytes_per_event`.
    pub event_bytes_per_event: f64,
    /// Live SST bytes of the log column family (raw envelopes, kept until log retention)
    /// after flush and compaction, over `stored_events`.
    pub log_bytes_per_event: f64,
    /// Live SST bytes per column family after flush and full compaction.
    pub column_family_bytes: BTreeMap<String, u64>,
    /// CPU seconds of the server's threads by name (trailing numbers removed), read when the
    /// backlog was empty.
    pub server_cpu_secs: BTreeMap<String, f64>,
    /// CPU seconds of the bench process (load generator and lag sampler) during the load.
    pub loadgen_cpu_secs: f64,
}

/// Clock ticks per second of the times in `/proc/*/stat` (Linux's `USER_HZ`, 100 on every
/// architecture osprey runs on).
const USER_HZ: f64 = 100.0;

/// The name and CPU seconds (user + system) in one `/proc/PID[/task/TID]/stat` line. The name
/// is in parentheses and may itself hold spaces and parentheses, so the fields are counted
/// from the last `)`.
fn parse_stat(stat: &str) -> Option<(String, f64)> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let name = stat.get(open + 1..close)?.to_owned();
    let fields: Vec<&str> = stat.get(close + 1..)?.split_whitespace().collect();
    // After the name: state is field 3 of proc(5), utime 14, stime 15.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((name, (utime + stime) / USER_HZ))
}

/// CPU seconds of process `pid`, its exited threads included.
fn process_cpu_secs(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| parse_stat(&s))
        .map_or(0.0, |(_, secs)| secs)
}

/// CPU seconds of each live thread of process `pid`, summed by thread name with a trailing
/// number removed, so every runtime worker counts under one name.
fn cpu_by_thread(pid: u32) -> BTreeMap<String, f64> {
    let mut by_name = BTreeMap::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return by_name;
    };
    for task in tasks.flatten() {
        let Some((name, secs)) = std::fs::read_to_string(task.path().join("stat"))
            .ok()
            .and_then(|s| parse_stat(&s))
        else {
            continue;
        };
        let name = name
            .trim_end_matches(|c: char| c.is_ascii_digit())
            .trim_end_matches(['-', '_', ' '])
            .to_owned();
        *by_name.entry(name).or_insert(0.0) += secs;
    }
    by_name
}

/// What the processed data of a run costs once flushed and compacted.
struct Footprint {
    events: u64,
    column_family_bytes: BTreeMap<String, u64>,
}

/// Opens a stopped server's data directory, flushes and compacts it fully, and measures the
/// column families (see the module doc).
fn stored_footprint(data: &Path) -> anyhow::Result<Footprint> {
    let store = storage::Store::open(data, &storage::StoreOptions::default())
        .with_context(|| format!("opening {} to measure it", data.display()))?;
    store.compact_fully()?;
    let column_family_bytes = store
        .sst_bytes()?
        .into_iter()
        .map(|(name, bytes)| (name.to_owned(), bytes))
        .collect();
    let mut events = 0u64;
    let mut iter = store.db().raw_iterator_cf(&store.cf(storage::cf::EVENTS));
    iter.seek_to_first();
    while iter.valid() {
        events += 1;
        iter.next();
    }
    iter.status()?;
    Ok(Footprint {
        events,
        column_family_bytes,
    })
}

/// Runs `osprey bench`.
pub fn run(args: Args) -> anyhow::Result<()> {
    if args.events == 0 {
        bail!("--events must be at least 1");
    }
    if !matches!(args.durability.as_str(), "fsync" | "os") {
        bail!("--durability must be fsync or os");
    }
    let mixes: Vec<Mix> = args
        .mixes
        .iter()
        .map(|m| {
            m.parse()
                .map_err(|e: loadgen::LoadgenError| anyhow::anyhow!("{e}"))
        })
        .collect::<anyhow::Result<_>>()?;
    let encodings: Vec<Compress> = args
        .compress
        .iter()
        .map(|c| {
            c.parse()
                .map_err(|e: loadgen::LoadgenError| anyhow::anyhow!("{e}"))
        })
        .collect::<anyhow::Result<_>>()?;
    let temp = match &args.dir {
        Some(_) => None,
        None => Some(tempfile::tempdir().context("creating a temporary directory")?),
    };
    let root = args
        .dir
        .clone()
        .or_else(|| temp.as_ref().map(|t| t.path().to_path_buf()))
        .context("no directory for the runs")?;
    std::fs::create_dir_all(&root).with_context(|| format!("creating {}", root.display()))?;
    let mut rows = Vec::new();
    for &mix in &mixes {
        for &compress in &encodings {
            let data = root.join(format!("{mix}-{compress}"));
            eprintln!("[osprey bench] {mix}, {compress}: {} events", args.events);
            let row = run_one(&args, mix, compress, &data)
                .with_context(|| format!("run {mix}/{compress}"))?;
            rows.push(row);
        }
    }
    print!("{}", render(&rows));
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_vec_pretty(&rows)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// A `osprey serve` child, killed when dropped.
struct Server {
    child: Child,
    port: u16,
    key: String,
    token: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn random_hex() -> String {
    format!("{:032x}", rand::random::<u128>())
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

impl Server {
    fn start(data: &Path, durability: &str) -> anyhow::Result<Server> {
        let exe = std::env::current_exe().context("locating the osprey binary")?;
        let port = free_port()?;
        let (key, token) = (random_hex(), random_hex());
        let log = std::fs::File::create(data.with_extension("log"))?;
        let child = Command::new(exe)
            .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--data"])
            .arg(data)
            .env("OSPREY_DEFAULT_KEY", &key)
            .env("OSPREY_ADMIN_TOKEN", &token)
            .env("OSPREY_DURABILITY", durability)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("starting osprey serve")?;
        let server = Server {
            child,
            port,
            key,
            token,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while server.metrics().is_err() {
            if Instant::now() > deadline {
                bail!("osprey serve did not start within 60 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(server)
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// `/metrics` as (name → value) for unlabeled series.
    fn metrics(&self) -> anyhow::Result<std::collections::HashMap<String, f64>> {
        let text = reqwest::blocking::Client::new()
            .get(self.url("/metrics"))
            .timeout(Duration::from_secs(5))
            .send()?
            .error_for_status()?
            .text()?;
        Ok(text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| {
                let (name, value) = l.rsplit_once(' ')?;
                Some((name.to_owned(), value.parse().ok()?))
            })
            .collect())
    }

    fn peak_rss_mib(&self) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .map_or(0.0, |kib| kib / 1024.0)
    }
}

/// Sends one marked error every 200 ms until `stop`, and measures how long each takes from
/// its 200 to being readable through the event API.
fn sample_lag(server: &Server, stop: &AtomicBool) -> Vec<f64> {
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("a default HTTP client builds");
    let lags = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        while !stop.load(Ordering::Acquire) {
            let id = format!("{:032x}", rand::random::<u128>());
            let body = serde_json::json!({
                "event_id": id, "level": "error", "platform": "other",
                "message": "osprey bench lag sample",
            });
            let accepted = client
                .post(server.url(&format!("/api/1/store/?sentry_key={}", server.key)))
                .json(&body)
                .send()
                .is_ok_and(|r| r.status().is_success());
            if accepted {
                let at = Instant::now();
                let (client, lags) = (&client, &lags);
                let url = server.url(&format!("/api/0/projects/default/default/events/{id}/"));
                scope.spawn(move || {
                    // Bounded: a sample not readable within 60 s is left out (and shows as
                    // fewer samples).
                    while at.elapsed() < Duration::from_secs(60) {
                        let found = client
                            .get(&url)
                            .bearer_auth(&server.token)
                            .send()
                            .is_ok_and(|r| r.status().is_success());
                        if found {
                            let lag = at.elapsed().as_secs_f64() * 1000.0;
                            lags.lock().unwrap_or_else(|e| e.into_inner()).push(lag);
                            return;
                        }
                        // While the processor is seconds behind, a dozen samples wait at
                        // once; polling each every 10 ms sent the server ~2,000 event
                        // reads per second, CPU taken from the processor being measured.
                        std::thread::sleep(poll_interval(at.elapsed()));
                    }
                });
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    });
    lags.into_inner().unwrap_or_else(|e| e.into_inner())
}

/// How long a lag sample waits before polling again, `waited` after its 200: 10 ms, then 5 %
/// of the wait so far (so the measured lag is off by at most 5 %), never more than 100 ms.
fn poll_interval(waited: Duration) -> Duration {
    (waited / 20).clamp(Duration::from_millis(10), Duration::from_millis(100))
}

fn percentile(sorted: &[f64], q: f64) -> Option<f64> {
    let n = sorted.len();
    (n > 0).then(|| sorted[((q * n as f64).ceil() as usize).clamp(1, n) - 1])
}

fn dir_size(path: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(path) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_size(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

fn run_one(args: &Args, mix: Mix, compress: Compress, data: &Path) -> anyhow::Result<BenchRow> {
    if data.exists() {
        bail!("{} exists; use a fresh --dir", data.display());
    }
    let server = Server::start(data, &args.durability)?;
    let dsn = format!("http://{}@127.0.0.1:{}/1", server.key, server.port);
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let bench_cpu_before = process_cpu_secs(std::process::id());
    let (summary, lags) = std::thread::scope(|scope| {
        let sampler = scope.spawn(|| sample_lag(&server, &stop));
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .thread_name("osprey-bench-load")
            .build();
        let summary = runtime.map_err(anyhow::Error::from).and_then(|rt| {
            rt.block_on(loadgen::run(LoadgenOptions {
                dsn: dsn.clone(),
                events: args.events,
                concurrency: args.concurrency,
                mix,
                duration: None,
                compress,
                progress: false,
                seed: 0x05b2e7,
            }))
            .map_err(anyhow::Error::from)
        });
        stop.store(true, Ordering::Release);
        let lags = sampler.join().unwrap_or_default();
        (summary, lags)
    });
    let summary = summary?;
    let load_end = Instant::now();
    let loadgen_cpu_secs = process_cpu_secs(std::process::id()) - bench_cpu_before;
    // Drained: nothing accepted is waiting for the processor.
    let deadline = load_end + Duration::from_secs(args.drain_timeout);
    loop {
        let metrics = server.metrics()?;
        if metrics.get("osprey_log_backlog_bytes") == Some(&0.0) {
            break;
        }
        if Instant::now() > deadline {
            bail!(
                "the processor did not drain the backlog within {} s",
                args.drain_timeout
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let drained = Instant::now();
    let peak_rss_mib = server.peak_rss_mib();
    let server_cpu_secs = cpu_by_thread(server.child.id());
    let stored_events = server
        .metrics()?
        .get("osprey_log_records_total")
        .copied()
        .unwrap_or(summary.accepted as f64)
        .max(1.0);
    // Stopped (killed: the WAL holds every acknowledged write, and reopening replays it), so
    // the bench can open the directory as its one writer.
    drop(server);
    let footprint = stored_footprint(data)?;
    let per_event = |bytes: u64| bytes as f64 / footprint.events.max(1) as f64;
    let cf_bytes = |name: &str| {
        footprint
            .column_family_bytes
            .get(name)
            .copied()
            .unwrap_or(0)
    };
    let processed_bytes: u64 = footprint
        .column_family_bytes
        .iter()
        .filter(|(name, _)| name.as_str() != storage::cf::LOG)
        .map(|(_, bytes)| bytes)
        .sum();
    let mut sorted = lags;
    sorted.sort_by(f64::total_cmp);
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    Ok(BenchRow {
        mix: mix.to_string(),
        compress: compress.to_string(),
        sent: summary.sent,
        accepted: summary.accepted,
        accepted_per_sec: summary.accepted_per_sec(),
        processed_per_sec: summary.accepted as f64
            / drained.duration_since(started).as_secs_f64().max(1e-9),
        ingest_p50_ms: ms(summary.p50),
        ingest_p99_ms: ms(summary.p99),
        lag_p50_ms: percentile(&sorted, 0.5),
        lag_p99_ms: percentile(&sorted, 0.99),
        lag_samples: sorted.len(),
        peak_rss_mib,
        bytes_per_event: dir_size(data) as f64 / stored_events,
        drain_secs: drained.duration_since(load_end).as_secs_f64(),
        stored_events: footprint.events,
        stored_bytes_per_event: per_event(processed_bytes),
        event_bytes_per_event: per_event(cf_bytes(storage::cf::EVENTS)),
        log_bytes_per_event: per_event(cf_bytes(storage::cf::LOG)),
        column_family_bytes: footprint.column_family_bytes,
        server_cpu_secs,
        loadgen_cpu_secs,
    })
}

fn render(rows: &[BenchRow]) -> String {
    let opt = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.1}"));
    let mut table = vec![[
        "mix",
        "compress",
        "accepted",
        "accepted/s",
        "processed/s",
        "p50 ms",
        "p99 ms",
        "lag p50 ms",
        "lag p99 ms",
        "peak RSS MiB",
        "bytes/event",
        "stored B/event",
        "events CF B/event",
    ]
    .map(str::to_owned)];
    for r in rows {
        table.push([
            r.mix.clone(),
            r.compress.clone(),
            r.accepted.to_string(),
            format!("{:.0}", r.accepted_per_sec),
            format!("{:.0}", r.processed_per_sec),
            format!("{:.1}", r.ingest_p50_ms),
            format!("{:.1}", r.ingest_p99_ms),
            opt(r.lag_p50_ms),
            opt(r.lag_p99_ms),
            format!("{:.0}", r.peak_rss_mib),
            format!("{:.0}", r.bytes_per_event),
            format!("{:.0}", r.stored_bytes_per_event),
            format!("{:.0}", r.event_bytes_per_event),
        ]);
    }
    let widths: Vec<usize> = (0..table[0].len())
        .map(|i| table.iter().map(|r| r[i].len()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in &table {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:>w$}"))
            .collect();
        out.push_str(&cells.join("  "));
        out.push('\n');
    }
    for r in rows {
        let mut threads: Vec<(&String, &f64)> = r.server_cpu_secs.iter().collect();
        threads.sort_by(|a, b| b.1.total_cmp(a.1));
        let threads: Vec<String> = threads
            .iter()
            .filter(|(_, secs)| **secs >= 0.01)
            .map(|(name, secs)| format!("{name} {secs:.2}"))
            .collect();
        out.push_str(&format!(
            "CPU s, {} {}: server: {}; bench (load generator, lag sampler): {:.2}\n",
            r.mix,
            r.compress,
            threads.join(", "),
            r.loadgen_cpu_secs
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_parse_from_the_last_parenthesis() {
        let line = "4242 (a (b) c) S 1 2 3 4 5 6 7 8 9 10 250 75 0 0 20 0 9 0 100";
        let (name, secs) = parse_stat(line).unwrap();
        assert_eq!(name, "a (b) c");
        assert!((secs - 3.25).abs() < 1e-9, "{secs}");
        assert!(parse_stat("4242 (short) S 1 2").is_none());
        assert!(parse_stat("no parentheses").is_none());
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn threads_are_summed_by_name_without_their_number() {
        // Two threads named like runtime workers stay alive until their senders are dropped.
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let mut holds = Vec::new();
        let mut workers = Vec::new();
        for i in 0..2 {
            let (hold_tx, hold_rx) = std::sync::mpsc::channel::<()>();
            let ready_tx = ready_tx.clone();
            holds.push(hold_tx);
            workers.push(
                std::thread::Builder::new()
                    .name(format!("benchprobe-{i}"))
                    .spawn(move || {
                        ready_tx.send(()).unwrap();
                        // Returns when the sender is dropped.
                        let _ = hold_rx.recv();
                    })
                    .unwrap(),
            );
        }
        for _ in 0..2 {
            ready_rx.recv().unwrap();
        }
        let by_name = cpu_by_thread(std::process::id());
        drop(holds);
        for w in workers {
            w.join().unwrap();
        }
        assert!(by_name.contains_key("benchprobe"), "{by_name:?}");
        assert!(!by_name.keys().any(|k| k.starts_with("benchprobe-")));
        // The real process line parses (the kernel's format, not only the sample above);
        // a process that does not exist counts nothing.
        let own = std::fs::read_to_string(format!("/proc/{}/stat", std::process::id())).unwrap();
        assert!(parse_stat(&own).is_some(), "{own}");
        assert_eq!(process_cpu_secs(u32::MAX), 0.0);
    }

    #[test]
    fn lag_polls_slow_down_with_the_wait_within_bounds() {
        let ms = Duration::from_millis;
        assert_eq!(poll_interval(ms(0)), ms(10));
        assert_eq!(poll_interval(ms(150)), ms(10));
        assert_eq!(poll_interval(ms(1_000)), ms(50));
        assert_eq!(poll_interval(ms(4_000)), ms(100));
        assert_eq!(poll_interval(Duration::from_secs(60)), ms(100));
    }
}
