//! osprey processor crate.
pub mod grouping;
