//! osprey storage crate.
