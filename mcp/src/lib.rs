//! osprey mcp crate.
