//! `osprey loadgen --dsn DSN --events N --concurrency C --mix errors|transactions|mixed
//! [--duration S] [--compress gzip|zstd|none]`: realistic Sentry envelopes against a running
//! server, a progress line on stderr, and a summary (accepted events/s, statuses, p50/p99).

use std::time::Duration;

use ingest::loadgen::{self, Compress, LoadgenOptions, Mix};

/// Arguments of `osprey loadgen`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// DSN of the project to send to (`http://<key>@127.0.0.1:9000/1`).
    #[arg(long, env = "OSPREY_DSN")]
    pub dsn: String,
    /// Envelopes (one event each) to send.
    #[arg(long, default_value_t = 100_000)]
    pub events: u64,
    /// Concurrent keep-alive connections.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// `errors`, `transactions` or `mixed`.
    #[arg(long, default_value = "errors", value_parser = parse_mix)]
    pub mix: Mix,
    /// Stop after this many seconds even if not all events were sent.
    #[arg(long)]
    pub duration: Option<u64>,
    /// Body compression: `gzip`, `zstd` or `none`.
    #[arg(long, default_value = "none", value_parser = parse_compress)]
    pub compress: Compress,
    /// No progress line.
    #[arg(long)]
    pub quiet: bool,
    /// Seed of the event generator.
    #[arg(long, default_value_t = 0x05b2e7)]
    pub seed: u64,
}

fn parse_mix(s: &str) -> Result<Mix, String> {
    s.parse().map_err(|e: loadgen::LoadgenError| e.to_string())
}

fn parse_compress(s: &str) -> Result<Compress, String> {
    s.parse().map_err(|e: loadgen::LoadgenError| e.to_string())
}

/// Runs the load and prints the summary on stdout.
pub fn run(args: Args) -> anyhow::Result<()> {
    // Leave a core to the server when both run on one machine: the generator is light.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name("osprey-loadgen")
        .build()?;
    let summary = runtime.block_on(loadgen::run(LoadgenOptions {
        dsn: args.dsn,
        events: args.events,
        concurrency: args.concurrency,
        mix: args.mix,
        duration: args.duration.map(Duration::from_secs),
        compress: args.compress,
        progress: !args.quiet,
        seed: args.seed,
    }))?;
    println!("{summary}");
    Ok(())
}
