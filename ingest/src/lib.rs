//! osprey ingest crate.
