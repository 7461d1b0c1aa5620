//! Subcommands other than `serve`: each module has clap `Args` and a `run`.

pub mod grouping;
pub mod issues;
pub mod loadgen;
pub mod perf;
pub mod token;
pub mod trace;
