//! osprey query crate.
