//! osprey processor crate.
