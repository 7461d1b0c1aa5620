//! `osprey mcp --url URL --token T`: a stdio ↔ streamable-HTTP bridge, so a client that only
//! speaks stdio can use a remote server's `/mcp`.
//!
//! Each newline-delimited JSON-RPC message from stdin is POSTed to `/mcp` with the token;
//! the answer (plain JSON, or the `data:` lines of an event stream) goes to stdout, one
//! message per line. A failed POST of a request becomes a JSON-RPC error for that request, so
//! the client is never left waiting.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::{mpsc, Mutex, Semaphore};

use crate::McpError;

/// Most requests in flight to the server at once.
const MAX_IN_FLIGHT: usize = 16;
/// Largest line read from stdin and largest answer read from the server.
const MAX_MESSAGE_BYTES: usize = 16 << 20;

struct Upstream {
    url: http::Uri,
    token: String,
    client: Client<HttpConnector, Full<Bytes>>,
    session: Mutex<Option<String>>,
    protocol_version: Mutex<Option<String>>,
}

/// Bridges stdin/stdout to the MCP endpoint at `url` (`http://host:port` or the full
/// `…/mcp` URL) until stdin closes.
pub async fn bridge_stdio_to_http(url: &str, token: &str) -> Result<(), McpError> {
    let mut full = url.trim_end_matches('/').to_owned();
    if !full.ends_with("/mcp") {
        full.push_str("/mcp");
    }
    let uri: http::Uri = full.parse().map_err(|_| McpError::InvalidUrl(url.into()))?;
    if uri.scheme_str() != Some("http") || uri.host().is_none() {
        return Err(McpError::InvalidUrl(url.into()));
    }
    let upstream = Arc::new(Upstream {
        url: uri,
        token: token.to_owned(),
        client: Client::builder(TokioExecutor::new()).build_http(),
        session: Mutex::new(None),
        protocol_version: Mutex::new(None),
    });
    let (out_tx, mut out_rx) = mpsc::channel::<String>(64);
    let writer = tokio::spawn(async move {
        let mut stdout = tokio::io::stdout();
        while let Some(line) = out_rx.recv().await {
            stdout.write_all(line.as_bytes()).await?;
            stdout.write_all(b"\n").await?;
            stdout.flush().await?;
        }
        Ok::<(), std::io::Error>(())
    });
    let permits = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let mut tasks = tokio::task::JoinSet::new();
    while let Some(line) = lines.next_line().await? {
        if line.trim().is_empty() {
            continue;
        }
        if line.len() > MAX_MESSAGE_BYTES {
            tracing::warn!(
                bytes = line.len(),
                "dropping an oversized message from stdin"
            );
            continue;
        }
        let permit = Arc::clone(&permits)
            .acquire_owned()
            .await
            .map_err(|e| McpError::Session(e.to_string()))?;
        let upstream = Arc::clone(&upstream);
        let out = out_tx.clone();
        // `initialize` must finish before anything else so the session and protocol version
        // are known; other messages run concurrently.
        let is_initialize = line.contains("\"initialize\"");
        let task = async move {
            let _permit = permit;
            for reply in upstream.forward(&line).await {
                if out.send(reply).await.is_err() {
                    break;
                }
            }
        };
        if is_initialize {
            task.await;
        } else {
            tasks.spawn(task);
        }
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
    drop(out_tx);
    writer
        .await
        .map_err(|e| McpError::Session(e.to_string()))??;
    Ok(())
}

impl Upstream {
    /// POSTs one message; returns the messages to write to stdout.
    async fn forward(&self, line: &str) -> Vec<String> {
        let message: Option<Value> = serde_json::from_str(line).ok();
        let id = message.as_ref().and_then(|m| m.get("id")).cloned();
        match self.post(line).await {
            Ok(replies) => {
                for r in &replies {
                    if let Some(v) = serde_json::from_str::<Value>(r)
                        .ok()
                        .and_then(|v| v.pointer("/result/protocolVersion").cloned())
                        .and_then(|v| v.as_str().map(str::to_owned))
                    {
                        *self.protocol_version.lock().await = Some(v);
                    }
                }
                replies
            }
            Err(e) => {
                tracing::error!(error = %e, "forwarding to the MCP server failed");
                match id {
                    Some(id) if !id.is_null() => vec![json!({
                        "jsonrpc": "2.0",
                        "id": id,
                        "error": {"code": -32603, "message": e.to_string()},
                    })
                    .to_string()],
                    _ => Vec::new(),
                }
            }
        }
    }

    async fn post(&self, line: &str) -> Result<Vec<String>, McpError> {
        let upstream_err = |detail: String| McpError::Upstream {
            url: self.url.to_string(),
            detail,
        };
        let mut req = http::Request::post(self.url.clone())
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(http::header::ACCEPT, "application/json, text/event-stream")
            .header(
                http::header::AUTHORIZATION,
                format!("Bearer {}", self.token),
            );
        if let Some(session) = self.session.lock().await.as_deref() {
            req = req.header("mcp-session-id", session);
        }
        if let Some(version) = self.protocol_version.lock().await.as_deref() {
            req = req.header("mcp-protocol-version", version);
        }
        let req = req
            .body(Full::new(Bytes::copy_from_slice(line.as_bytes())))
            .map_err(|e| upstream_err(e.to_string()))?;
        let resp = self
            .client
            .request(req)
            .await
            .map_err(|e| upstream_err(e.to_string()))?;
        let status = resp.status();
        if let Some(session) = resp
            .headers()
            .get("mcp-session-id")
            .and_then(|v| v.to_str().ok())
        {
            *self.session.lock().await = Some(session.to_owned());
        }
        let is_sse = resp
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"));
        let body = Limited::new(resp.into_body(), MAX_MESSAGE_BYTES)
            .collect()
            .await
            .map_err(|e| upstream_err(e.to_string()))?
            .to_bytes();
        let text = String::from_utf8_lossy(&body);
        if !status.is_success() {
            return Err(upstream_err(format!("{status}: {}", text.trim())));
        }
        if status == http::StatusCode::ACCEPTED || text.trim().is_empty() {
            return Ok(Vec::new());
        }
        if !is_sse {
            return Ok(vec![text.trim().to_owned()]);
        }
        // An event stream: each event's data lines joined form one message.
        let mut out = Vec::new();
        let mut data = String::new();
        for l in text.lines() {
            if let Some(d) = l.strip_prefix("data:") {
                data.push_str(d.strip_prefix(' ').unwrap_or(d));
            } else if l.is_empty() && !data.is_empty() {
                out.push(std::mem::take(&mut data));
            }
        }
        if !data.is_empty() {
            out.push(data);
        }
        Ok(out)
    }
}
