//! The `osprey` binary: command line, configuration and wiring. Everything it runs lives in
//! the library crates (ingest, processor, storage, query, mcp).

mod cli;
mod config;
mod kafka_mode;
mod serve;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// osprey: a self-hosted, Sentry-compatible event ingestion and aggregation engine.
#[derive(Parser, Debug)]
#[command(name = "osprey", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the engine: ingest endpoint, processor, query API and MCP over HTTP.
    Serve(ServeArgs),
    /// Show Sentry's grouping info (variants, components, hashes) for an event JSON file.
    Grouping(cli::grouping::Args),
    /// Send realistic envelopes to a server and report accepted events/s and latency.
    Loadgen(cli::loadgen::Args),
    /// List issues (short id, title, count, users, last seen, status).
    Issues(cli::issues::IssuesArgs),
    /// Print one event with its stack trace.
    Event(cli::issues::EventArgs),
    /// Performance of transactions: count, tpm, percentiles, apdex, failure rate.
    Perf(cli::perf::Args),
    /// Release health: sessions, crashes, crash-free sessions and users per release.
    Health(cli::health::Args),
    /// Print a trace's span tree with timings.
    Trace(cli::trace::Args),
    /// MCP server on stdio, over a data directory or bridged to a server's /mcp.
    Mcp(cli::mcp::Args),
    /// Create, list or revoke scoped API tokens on a data directory.
    Token(cli::token::Args),
    /// List, create or delete a project's issue and metric alert rules on a running server.
    Alerts(cli::alerts::Args),
    /// End-to-end benchmark: serve + loadgen per mix; accepted/processed events/s, latency,
    /// ingest→queryable lag, peak RSS, bytes per event.
    Bench(cli::bench::Args),
}

#[derive(clap::Args, Debug)]
struct ServeArgs {
    /// TOML configuration file.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:9000].
    #[arg(long)]
    listen: Option<std::net::SocketAddr>,
    /// Data directory [default: ./osprey-data].
    #[arg(long)]
    data: Option<PathBuf>,
    /// Roles this process runs (comma separated) [default: all].
    #[arg(long, value_delimiter = ',')]
    role: Option<Vec<config::Role>>,
    /// Kafka bootstrap servers (`host:port,…`): run as a scale-out node on Kafka.
    #[arg(long, value_name = "BROKERS")]
    kafka: Option<String>,
    /// Processor nodes a query node fans out to (comma separated base URLs).
    #[arg(long, value_delimiter = ',', value_name = "URL")]
    peers: Option<Vec<String>>,
}

// mimalloc: the processor builds and frees a JSON tree per event; it costs ~10 % fewer
// instructions per event than glibc malloc (BENCHMARKS.md, "Profiling"), and calling it
// without the aligned entry points where the layout allows saves more
// (`processor::allocator`).
#[global_allocator]
static GLOBAL: processor::allocator::Mimalloc = processor::allocator::Mimalloc;

fn init_tracing() {
    // Logs go to stderr so stdout stays for DSNs, tables and JSON (and MCP over stdio).
    let filter = tracing_subscriber::EnvFilter::try_from_env("OSPREY_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,rmcp=warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing();
    let result = match cli.command {
        Command::Serve(args) => {
            let overrides = config::Overrides {
                listen: args.listen,
                data: args.data,
                roles: args.role,
                kafka: args.kafka,
                peers: args.peers,
            };
            config::Config::load(
                args.config.as_deref(),
                |k| std::env::var(k).ok(),
                &overrides,
            )
            .and_then(serve::run)
        }
        Command::Grouping(args) => cli::grouping::run(args),
        Command::Loadgen(args) => cli::loadgen::run(args),
        Command::Issues(args) => cli::issues::run(args),
        Command::Event(args) => cli::issues::run_event(args),
        Command::Perf(args) => cli::perf::run(args),
        Command::Health(args) => cli::health::run(args),
        Command::Trace(args) => cli::trace::run(args),
        Command::Mcp(args) => cli::mcp::run(args),
        Command::Token(args) => cli::token::run(args),
        Command::Alerts(args) => cli::alerts::run(args),
        Command::Bench(args) => cli::bench::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
