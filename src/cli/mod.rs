//! Subcommands other than `serve`: each module has clap `Args` and a `run`.

pub mod alerts;
pub mod bench;
pub mod grouping;
pub mod health;
pub mod issues;
pub mod loadgen;
pub mod mcp;
pub mod perf;
pub mod remote;
pub mod token;
pub mod trace;
