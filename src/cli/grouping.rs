//! `osprey grouping FILE.json [--json]`: Sentry's "grouping info" for one event — every
//! variant with its component tree, whether it contributes and why not, and its hash.

use std::path::PathBuf;

use anyhow::Context;

/// Arguments of `osprey grouping`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// An event as JSON (an SDK payload, or a Sentry grouping fixture with `_fingerprinting_rules`
    /// and `_grouping.enhancements` keys, which are applied as project rules).
    pub file: PathBuf,
    /// Print `{"variants": …, "hashes": […]}` instead of the tree.
    #[arg(long)]
    pub json: bool,
}

/// Prints the grouping info of the event in `args.file`.
pub fn run(args: Args) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&args.file)
        .with_context(|| format!("reading {}", args.file.display()))?;
    let event: processor::value::Value = serde_json::from_str(&text)
        .with_context(|| format!("{} is not JSON", args.file.display()))?;
    let info = processor::grouping::compute_with_embedded_rules(&event)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&info.to_json())?);
    } else {
        print!("{}", info.render_text());
    }
    Ok(())
}
