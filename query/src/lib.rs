//! osprey's query layer: one library API ([`QueryService`]) that the HTTP API, the CLI and MCP
//! all use, answering from the stored issues, events, counters and histograms.
//!
//! Modules: [`issues`], [`events`], [`feedback`] (user feedback), [`search`] (Sentry's search syntax), [`perf`]
//! (transaction histograms), [`trace`], [`outcomes`] (accepted/filtered/invalid/… counters,
//! also summed for Sentry's org stats endpoint `GET /api/0/organizations/{org}/stats_v2/`),
//! [`sessions`] (release health: sessions, users, crash-free rates for
//! `GET /api/0/organizations/{org}/sessions/`), [`api`] (the `/api/0/` HTTP surface) and [`peers`] (a query node's fan-out and merge).

pub mod api;
pub mod events;
pub mod feedback;
pub mod issues;
pub mod outcomes;
pub mod peers;
pub mod perf;
pub mod search;
pub mod sessions;
pub mod trace;

use storage::Store;

/// Answers questions about the data in one [`Store`]. Cheap to clone.
#[derive(Clone, Debug)]
pub struct QueryService {
    store: Store,
}

impl QueryService {
    /// A query service over `store` (a primary or a secondary instance).
    pub fn new(store: Store) -> QueryService {
        QueryService { store }
    }

    /// The underlying store.
    pub fn store(&self) -> &Store {
        &self.store
    }
}
