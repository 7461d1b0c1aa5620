//! osprey's own MCP server: one tool set ([`OspreyTools`]) over [`query::QueryService`],
//! served two ways.
//!
//! - **stdio** ([`serve_stdio`]): `osprey mcp --data DIR` opens the data directory as a
//!   RocksDB secondary (it follows a running server, or reads a directory no server uses) and
//!   catches up before every tool call, so answers are fresh. stdout carries the protocol; logs
//!   go to stderr. `osprey mcp --url URL --token T` instead bridges stdio to a server's `/mcp`
//!   ([`bridge_stdio_to_http`]).
//! - **streamable HTTP** ([`McpHttp`]): mounted at `/mcp` by `osprey serve`, behind a bearer
//!   token (the same API tokens as `/api/0/`): read tools need `event:read` or `project:read`,
//!   write tools `event:write` or `project:write`, and a token only ever sees its own
//!   organization. On a query node (`serve --role query --peers …`) the data tools ask every
//!   processor node and merge their answers ([`fanout`]).
//!
//! Tools are shaped for agents, not for a REST client: each answers one question in one call
//! (error analysis with trend, performance table with change, release comparison), takes a
//! project by slug or id and a `timeRange` like `24h`, and answers with structured output. A
//! mistake the model can fix (unknown project, bad time range, no data in range, unknown
//! transaction) comes back as a tool result with `is_error` and a message that says how to
//! fix the call, not as a protocol error.

mod analysis;
mod bridge;
pub mod fanout;
mod http;
mod tools;

pub use bridge::bridge_stdio_to_http;
pub use fanout::McpPeers;
pub use http::{HttpConfig, McpHttp};
pub use tools::{Caller, OspreyTools, TOOL_NAMES, WRITE_TOOL_NAMES};

/// What can go wrong outside a tool call (serving, bridging).
#[derive(Debug, thiserror::Error)]
pub enum McpError {
    /// The MCP session could not start or ended with an error.
    #[error("mcp session: {0}")]
    Session(String),
    /// Reading stdin or writing stdout failed.
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    /// The server behind `--url` could not be reached or answered badly.
    #[error("server at {url}: {detail}")]
    Upstream {
        /// The `/mcp` URL.
        url: String,
        /// What went wrong.
        detail: String,
    },
    /// The `--url` argument is not an `http://` URL.
    #[error("invalid url {0:?}: expected http://HOST:PORT (the /mcp path is added if missing)")]
    InvalidUrl(String),
}

/// Serves `tools` on stdin/stdout until the client disconnects. Logs must go to stderr (the
/// caller sets up tracing that way): stdout belongs to the protocol.
pub async fn serve_stdio(tools: OspreyTools) -> Result<(), McpError> {
    use rmcp::ServiceExt;
    let running = tools
        .serve(rmcp::transport::stdio())
        .await
        .map_err(|e| McpError::Session(e.to_string()))?;
    running
        .waiting()
        .await
        .map_err(|e| McpError::Session(e.to_string()))?;
    Ok(())
}
