//! `osprey mcp`: osprey's MCP server on stdio, for MCP clients that start a command.
//!
//! `--data DIR` opens the data directory as a RocksDB follower (secondary), which works
//! while a server owns the directory and when none runs; each tool call first catches up
//! with the server, so answers are fresh. Write tools need a server: `--url URL --token T`
//! bridges stdio to the server's `/mcp` endpoint instead. stdout carries the protocol; logs
//! go to stderr (set up in `main`).

use std::path::PathBuf;

use anyhow::Context;
use query::QueryService;
use storage::Store;

/// `osprey mcp [--data DIR | --url URL --token T]`.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// The data directory to read [default: ./osprey-data]. Read-only: write tools
    /// (manage_issues, capture_event, track_release, configure_alert) need --url.
    #[arg(long, env = "OSPREY_DATA", conflicts_with = "url")]
    pub data: Option<PathBuf>,
    /// A running osprey server (`http://127.0.0.1:9000`); stdio is bridged to its /mcp.
    #[arg(long, env = "OSPREY_URL", requires = "token")]
    pub url: Option<String>,
    /// API token for --url (`osprey token create`, or the admin token printed at first start).
    #[arg(long, env = "OSPREY_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

/// Runs the stdio server until the client closes stdin.
pub fn run(args: Args) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        match (args.url, args.token) {
            (Some(url), Some(token)) => mcp::bridge_stdio_to_http(&url, &token)
                .await
                .with_context(|| format!("MCP bridge to {url}")),
            _ => {
                let data = args.data.unwrap_or_else(|| PathBuf::from("./osprey-data"));
                let store = Store::open_secondary(&data).with_context(|| {
                    format!("cannot open the osprey data directory {}", data.display())
                })?;
                tracing::info!(data = %data.display(), "osprey mcp on stdio (read-only follower)");
                let tools = mcp::OspreyTools::new(QueryService::new(store), None);
                mcp::serve_stdio(tools).await.context("MCP over stdio")
            }
        }
    })
}
