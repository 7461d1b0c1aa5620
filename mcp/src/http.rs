//! `/mcp` on `osprey serve`: rmcp's streamable HTTP service behind bearer-token auth.
//!
//! The service runs stateless (no MCP session kept between requests) with plain JSON
//! answers, so any node can answer any request and nothing accumulates per client. The
//! token is checked here, before rmcp sees the request, and travels to the tools in the
//! request's extensions ([`Caller`]); each tool checks its scope and limits itself to the
//! token's organization.

use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{combinators::BoxBody, BodyExt, Full};
use query::QueryService;
use rmcp::transport::streamable_http_server::{
    session::local::LocalSessionManager, StreamableHttpServerConfig, StreamableHttpService,
};
use storage::{Log, Store};
use tokio_util::sync::CancellationToken;

use crate::tools::{Caller, OspreyTools};

/// The body type `osprey serve` answers with.
pub type Body = BoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>;

/// Settings of the HTTP endpoint.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// `Host` header values accepted (a DNS-rebinding guard). rmcp's default is loopback
    /// only (`localhost`, `127.0.0.1`, `::1`); a server reached by name must list it, e.g.
    /// `osprey.example.com` or `osprey.example.com:9000`. Empty = any host.
    pub allowed_hosts: Vec<String>,
    /// Cancelled when the server shuts down; ends in-flight MCP streams.
    pub shutdown: CancellationToken,
    /// Largest request body, in bytes.
    pub max_body_bytes: usize,
    /// On a query node: the processor nodes the data tools fan out to.
    pub peers: Option<crate::McpPeers>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            allowed_hosts: vec!["localhost".into(), "127.0.0.1".into(), "::1".into()],
            shutdown: CancellationToken::new(),
            max_body_bytes: 1 << 20,
            peers: None,
        }
    }
}

impl HttpConfig {
    /// The hosts a server listening on `listen` and reached at `public_url` answers to:
    /// loopback names, the listen address when it is a specific one, and the public URL's
    /// host. A server on `0.0.0.0` reached by another name must add that name.
    pub fn default_allowed_hosts(
        listen: std::net::SocketAddr,
        public_url: Option<&str>,
    ) -> Vec<String> {
        let mut hosts: Vec<String> = vec!["localhost".into(), "127.0.0.1".into(), "::1".into()];
        if !listen.ip().is_unspecified() && !listen.ip().is_loopback() {
            hosts.push(listen.ip().to_string());
        }
        if let Some(host) = public_url
            .and_then(|u| u.parse::<http::Uri>().ok())
            .and_then(|u| u.host().map(|h| h.trim_matches(['[', ']']).to_owned()))
        {
            hosts.push(host);
        }
        hosts.dedup();
        hosts
    }
}

/// The `/mcp` endpoint. Cheap to clone.
#[derive(Clone)]
pub struct McpHttp {
    service: StreamableHttpService<OspreyTools, LocalSessionManager>,
    store: Store,
}

impl McpHttp {
    /// The endpoint over `query`; `log` receives `capture_event`'s events.
    pub fn new(query: QueryService, log: Option<Arc<dyn Log>>, config: HttpConfig) -> McpHttp {
        let store = query.store().clone();
        let mut tools = OspreyTools::new(query, log);
        if let Some(peers) = config.peers {
            tools = tools.with_peers(peers);
        }
        let mut rmcp_config = StreamableHttpServerConfig::default()
            .with_legacy_session_mode(false)
            .with_json_response(true)
            .with_cancellation_token(config.shutdown.child_token())
            .with_max_request_body_bytes(config.max_body_bytes);
        rmcp_config = if config.allowed_hosts.is_empty() {
            rmcp_config.disable_allowed_hosts()
        } else {
            rmcp_config.with_allowed_hosts(config.allowed_hosts)
        };
        // The factory runs per request in stateless mode: cloning the tools is two Arc bumps.
        let service = StreamableHttpService::new(
            move || Ok(tools.clone()),
            LocalSessionManager::default().into(),
            rmcp_config,
        );
        McpHttp { service, store }
    }

    /// Answers one request for `/mcp`: 401 without a valid bearer token, else the MCP
    /// exchange (POST), 405 for GET (no server-initiated stream in stateless mode).
    pub async fn handle<B>(&self, mut req: Request<B>) -> Response<Body>
    where
        B: hyper::body::Body + Send + 'static,
        B::Data: Send + 'static,
        B::Error: std::fmt::Display,
    {
        let secret = req
            .headers()
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, s)| s.trim().to_owned())
            .filter(|s| !s.is_empty());
        let Some(secret) = secret else {
            return unauthorized("send Authorization: Bearer <API token>");
        };
        let Some(token) = self.store.meta().token(&secret) else {
            return unauthorized("invalid token");
        };
        req.extensions_mut().insert(Caller { token });
        self.service
            .handle(req)
            .await
            .map(|b| b.map_err(|never| match never {}).boxed())
    }
}

fn unauthorized(detail: &str) -> Response<Body> {
    let body = serde_json::json!({"detail": detail}).to_string();
    Response::builder()
        .status(StatusCode::UNAUTHORIZED)
        .header(http::header::WWW_AUTHENTICATE, "Bearer")
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(
            Full::new(Bytes::from(body))
                .map_err(|never| match never {})
                .boxed(),
        )
        .expect("static response parts are valid")
}
