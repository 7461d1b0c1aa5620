//! `osprey trace TRACE_ID`: every transaction and error of a trace, from every service and
//! project, as one span tree with timings.

use std::path::PathBuf;

use anyhow::{bail, Context};
use query::trace::{Trace, TraceEvent};
use query::QueryService;
use storage::Store;

/// Most events of one trace read.
const MAX_TRACE_EVENTS: usize = 10_000;

/// Arguments of `osprey trace`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Trace id (32 hex digits, dashes allowed).
    pub trace_id: String,
    /// Data directory (opened read-only; a running server may own it).
    #[arg(long, env = "OSPREY_DATA", default_value = "./osprey-data")]
    pub data: PathBuf,
    /// Print JSON instead of a tree.
    #[arg(long)]
    pub json: bool,
}

/// Runs `osprey trace`.
pub fn run(args: Args) -> anyhow::Result<()> {
    let trace_id = uuid::Uuid::parse_str(args.trace_id.trim())
        .with_context(|| format!("{:?} is not a trace id (32 hex digits)", args.trace_id))?;
    let store = Store::open_secondary(&args.data)
        .with_context(|| format!("opening {}", args.data.display()))?;
    let service = QueryService::new(store);
    let stored = service.trace_events(&trace_id, MAX_TRACE_EVENTS)?;
    if stored.is_empty() {
        bail!("no events for trace {}", trace_id.simple());
    }
    let events: Vec<TraceEvent<'_>> = stored
        .iter()
        .map(|e| TraceEvent {
            project_id: e.project_id,
            event_id: &e.event_id,
            event: &e.event,
        })
        .collect();
    let trace = Trace::build(&trace_id.simple().to_string(), &events);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&trace)?);
    } else {
        print!("{}", trace.render());
    }
    Ok(())
}
