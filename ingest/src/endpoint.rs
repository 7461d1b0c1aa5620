//! The ingest endpoint: routes, the request pipeline and the HTTP adapter.
//!
//! Pipeline of one request (the order Relay checks things in, see sentry-protocol.md §2–§5):
//! route and method → header/query auth → public key and protocol version → key and project
//! (403) → body decoding with a cap (413/400) → envelope-header auth when nothing else
//! authenticated → envelope parsing (400) → header/DSN agreement (400) → origin → rate limits
//! (429, or 200 + header when only part was limited) → per-item size limits (413) → client
//! reports into outcome counters → the other items into the log, answered only once the log
//! reports them durable (503 when it refuses).

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use serde::{Deserialize, Serialize};
use storage::{Log, LogRecord, Project, ProjectKey, StorageError};
use uuid::Uuid;

use crate::auth::{self, Auth, Dsn};
use crate::decode;
use crate::envelope::{Envelope, EnvelopeError, Item, ItemType};
use crate::error::{DetailError, DiscardReason, IngestError};
use crate::limits::{self, Limits};
use crate::metrics::Metrics;
use crate::minidump;
use crate::outcomes;
use crate::rate_limit::{Demand, KeyLimit, RateLimitConfig, RateLimiter, RateLimits};
use crate::security;
use crate::{cors, DataCategory};

/// The 1×1 transparent GIF the store endpoint answers `GET` with.
pub const PIXEL_GIF: &[u8] = &[
    0x47, 0x49, 0x46, 0x38, 0x39, 0x61, 0x01, 0x00, 0x01, 0x00, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00,
    0xff, 0xff, 0xff, 0x21, 0xf9, 0x04, 0x01, 0x00, 0x00, 0x00, 0x00, 0x2c, 0x00, 0x00, 0x00, 0x00,
    0x01, 0x00, 0x01, 0x00, 0x00, 0x02, 0x01, 0x44, 0x00, 0x3b,
];

/// Compressed bodies below this size are decoded inline; larger ones on the blocking pool.
const INLINE_DECODE_BYTES: usize = 32 * 1024;

/// Ingest settings (`[ingest]` in the server's configuration).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct IngestConfig {
    /// Size limits (Relay's defaults).
    pub limits: Limits,
    /// Rate limits (off by default).
    pub rate_limits: RateLimitConfig,
    /// Take the client address from the first `X-Forwarded-For` entry (behind a trusted proxy).
    pub trust_forwarded_for: bool,
    /// Bytes of request bodies being read at once, over all connections; past it a request is
    /// answered 503 + Retry-After instead of buffering more (0 = unlimited).
    pub max_inflight_body_bytes: u64,
    /// Seconds a request may take to deliver its whole body; a client trickling bytes slower
    /// than that is answered 408 and its buffer freed (0 = no limit).
    pub body_read_timeout_secs: u64,
}

impl Default for IngestConfig {
    fn default() -> Self {
        IngestConfig {
            limits: Limits::default(),
            rate_limits: RateLimitConfig::default(),
            trust_forwarded_for: false,
            max_inflight_body_bytes: 512 << 20,
            body_read_timeout_secs: 30,
        }
    }
}

/// Where ingest looks up DSN keys and projects. `storage::Store` implements it over its cached
/// metadata; tests use [`StaticProjects`].
pub trait ProjectSource: Send + Sync + 'static {
    /// The key with this public key.
    fn key(&self, public_key: &str) -> Option<Arc<ProjectKey>>;
    /// The project with this id.
    fn project(&self, id: u64) -> Option<Arc<Project>>;
}

impl ProjectSource for storage::Store {
    fn key(&self, public_key: &str) -> Option<Arc<ProjectKey>> {
        self.meta().key(public_key)
    }
    fn project(&self, id: u64) -> Option<Arc<Project>> {
        self.meta().project(id)
    }
}

/// A fixed, in-memory set of keys and projects (tests, benchmarks).
#[derive(Debug, Default, Clone)]
pub struct StaticProjects {
    /// Keys by public key.
    pub keys: std::collections::HashMap<String, Arc<ProjectKey>>,
    /// Projects by id.
    pub projects: std::collections::HashMap<u64, Arc<Project>>,
}

impl StaticProjects {
    /// Adds a project (default settings) and an enabled key for it.
    pub fn with(mut self, project_id: u64, key_id: u64, public_key: &str) -> Self {
        self.projects.entry(project_id).or_insert_with(|| {
            Arc::new(Project {
                id: project_id,
                org_id: 1,
                slug: format!("project-{project_id}"),
                name: format!("Project {project_id}"),
                platform: String::new(),
                created_ms: 0,
                settings: Default::default(),
            })
        });
        self.keys.insert(
            public_key.to_owned(),
            Arc::new(ProjectKey {
                public_key: public_key.to_owned(),
                secret_key: String::new(),
                key_id,
                project_id,
                label: "test".into(),
                enabled: true,
                created_ms: 0,
                rate_limit: None,
            }),
        );
        self
    }
}

impl ProjectSource for StaticProjects {
    fn key(&self, public_key: &str) -> Option<Arc<ProjectKey>> {
        self.keys.get(public_key).cloned()
    }
    fn project(&self, id: u64) -> Option<Arc<Project>> {
        self.projects.get(&id).cloned()
    }
}

/// One request, without HTTP: what [`IngestService::ingest`] needs.
#[derive(Debug, Clone)]
pub struct IngestRequest {
    /// HTTP method.
    pub method: Method,
    /// URI path (`/api/1/envelope/`).
    pub path: String,
    /// Raw query string, without `?`.
    pub query: Option<String>,
    /// Request headers.
    pub headers: HeaderMap,
    /// The whole body as received (still content-encoded).
    pub body: Bytes,
    /// The peer's address.
    pub client_addr: Option<IpAddr>,
}

/// The answer, without HTTP.
#[derive(Debug, Clone)]
pub struct IngestResponse {
    /// Status code.
    pub status: StatusCode,
    /// Headers (content type, CORS, rate limits).
    pub headers: HeaderMap,
    /// Body.
    pub body: Bytes,
}

impl IngestResponse {
    fn json(status: StatusCode, body: Vec<u8>) -> IngestResponse {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        IngestResponse {
            status,
            headers,
            body: Bytes::from(body),
        }
    }

    fn from_error(err: &IngestError) -> IngestResponse {
        let mut resp = IngestResponse::json(err.status(), err.body());
        match err {
            IngestError::RateLimited(limits) => {
                add_rate_limit_headers(&mut resp.headers, limits, true)
            }
            IngestError::QueueFailed {
                retry_after_secs: Some(secs),
                ..
            } => {
                resp.headers
                    .insert(header::RETRY_AFTER, HeaderValue::from(*secs));
            }
            IngestError::MethodNotAllowed => {
                resp.headers.insert(
                    header::ALLOW,
                    HeaderValue::from_static("GET, POST, OPTIONS"),
                );
            }
            _ => {}
        }
        resp
    }

    /// The `detail` of an error body, if this is one (tests and logs).
    pub fn detail(&self) -> Option<String> {
        let value: serde_json::Value = serde_json::from_slice(&self.body).ok()?;
        value.get("detail")?.as_str().map(str::to_owned)
    }

    /// Converts into an HTTP response.
    pub fn into_http(self) -> Response<Full<Bytes>> {
        let mut response = Response::new(Full::new(self.body));
        *response.status_mut() = self.status;
        *response.headers_mut() = self.headers;
        response
    }
}

fn add_rate_limit_headers(headers: &mut HeaderMap, limits: &RateLimits, retry_after: bool) {
    if !limits.is_limited() {
        return;
    }
    if let Ok(v) = HeaderValue::from_str(&limits.header_value()) {
        headers.insert("x-sentry-rate-limits", v);
    }
    if retry_after {
        if let Some(secs) = limits.retry_after() {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
    }
}

/// Which ingest route a path is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    Envelope(u64),
    Store(Option<u64>),
    /// `/api/{id}/security/` and its alias `/api/{id}/csp-report/`.
    Security(u64),
    /// `/api/{id}/minidump/`: native crash uploads.
    Minidump(u64),
    /// `/api/{id}/events/{event_id}/attachments/`: the legacy multipart attachment upload of
    /// older SDKs and sentry-native (the event id is read from the path again by
    /// [`attachments_event_id`]).
    Attachments(u64),
    /// `/api/{id}/cron/{slug}[/{sentry_key}]/`: HTTP check-ins of cron monitors (the slug
    /// and key are read from the path again by [`cron_path`]).
    Cron(u64),
    /// `/api/{id}/nel/`: browsers' Network Error Logging reports.
    Nel(u64),
}

fn parse_route(path: &str) -> Result<Route, IngestError> {
    let rest = path.strip_prefix("/api/").ok_or(IngestError::NotFound)?;
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest == "store" {
        return Ok(Route::Store(None));
    }
    let (project, endpoint) = rest.split_once('/').ok_or(IngestError::NotFound)?;
    let make: fn(u64) -> Route = match endpoint {
        "envelope" => Route::Envelope,
        "store" => |id| Route::Store(Some(id)),
        "security" | "csp-report" => Route::Security,
        "minidump" => Route::Minidump,
        "nel" => Route::Nel,
        events if attachments_event_id(events).is_some() => Route::Attachments,
        cron if cron_path(cron).is_some() => Route::Cron,
        _ => return Err(IngestError::NotFound),
    };
    let project_id = project
        .parse::<u64>()
        .map_err(|_| IngestError::BadProject)?;
    Ok(make(project_id))
}

/// Whether a NEL upload's content type is one Relay takes: `application/json` or
/// `application/reports+json` (the Reporting API's), parameters aside.
fn is_nel_content_type(headers: &HeaderMap) -> bool {
    let Some(value) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = value.split(';').next().unwrap_or("").trim();
    essence.eq_ignore_ascii_case("application/json")
        || essence.eq_ignore_ascii_case("application/reports+json")
}

/// The event id segment of an attachments path's tail (`events/{event_id}/attachments`,
/// trailing slash already removed); whether it is a valid id is checked when it is used.
fn attachments_event_id(endpoint: &str) -> Option<&str> {
    let id = endpoint
        .strip_prefix("events/")?
        .strip_suffix("/attachments")?;
    (!id.is_empty() && !id.contains('/')).then_some(id)
}

/// The monitor slug and the optional public key of a cron check-in path's tail
/// (`cron/{slug}` or `cron/{slug}/{sentry_key}`, trailing slash already removed).
fn cron_path(endpoint: &str) -> Option<(&str, Option<&str>)> {
    let rest = endpoint.strip_prefix("cron/")?;
    let (slug, key) = match rest.split_once('/') {
        Some((slug, key)) => (slug, Some(key)),
        None => (rest, None),
    };
    let segment_ok = |s: &str| !s.is_empty() && !s.contains('/');
    (segment_ok(slug) && key.is_none_or(segment_ok)).then_some((slug, key))
}

/// The `check_in` item of an HTTP check-in, built as Relay builds it: a JSON body (when the
/// content type says JSON) is the check-in itself, otherwise the query carries `status`,
/// `check_in_id`, `environment` and `duration`; the slug always comes from the path. A
/// check-in without a `status` is a bad request.
fn cron_check_in(
    slug: &str,
    query: Option<&str>,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Bytes, IngestError> {
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.trim().starts_with("application/json"));
    let mut check_in = if is_json {
        match serde_json::from_slice::<serde_json::Value>(body) {
            Ok(serde_json::Value::Object(map)) => map,
            Ok(_) => return Err(IngestError::InvalidJson("check-in is not an object".into())),
            Err(e) => return Err(IngestError::InvalidJson(format!("{e}"))),
        }
    } else {
        let mut map = serde_json::Map::new();
        for (k, v) in query.map(auth::query_pairs).into_iter().flatten() {
            let value = match &*k {
                "status" | "check_in_id" | "environment" => serde_json::Value::from(v.as_ref()),
                "duration" => match v.parse::<f64>() {
                    Ok(d) if d.is_finite() => serde_json::Value::from(d),
                    _ => return Err(IngestError::InvalidJson(format!("duration {v:?}"))),
                },
                _ => continue,
            };
            map.insert(k.into_owned(), value);
        }
        map
    };
    if !check_in
        .get("status")
        .is_some_and(serde_json::Value::is_string)
    {
        return Err(IngestError::InvalidJson("check-in without a status".into()));
    }
    check_in
        .entry("check_in_id")
        .or_insert_with(|| Uuid::nil().simple().to_string().into());
    check_in.insert("monitor_slug".into(), slug.into());
    Ok(Bytes::from(serde_json::Value::Object(check_in).to_string()))
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn first_line(body: &[u8]) -> &[u8] {
    match memchr::memchr(b'\n', body) {
        Some(i) => &body[..i],
        None => body,
    }
}

/// Host of an `Origin` / `Referer` URL (`https://app.example.com:8443/x` → `app.example.com`).
fn url_host(url: &str) -> Option<&str> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split(['/', '?', '#']).next()?;
    let authority = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next()?,
        None => authority.split(':').next()?,
    };
    (!host.is_empty()).then_some(host)
}

/// Sentry's "allowed domains": `*` allows all, `example.com` that host, `*.example.com` its
/// subdomains (and itself). A request without `Origin`/`Referer` (server SDKs) is allowed.
fn origin_allowed(allowed: &[String], headers: &HeaderMap) -> bool {
    if allowed.is_empty() || allowed.iter().any(|d| d == "*") {
        return true;
    }
    let origin = headers
        .get(header::ORIGIN)
        .or_else(|| headers.get(header::REFERER))
        .and_then(|v| v.to_str().ok());
    let Some(origin) = origin else { return true };
    let Some(host) = url_host(origin) else {
        return false;
    };
    let host = host.to_ascii_lowercase();
    allowed.iter().any(|pattern| {
        let pattern = pattern.trim().to_ascii_lowercase();
        match pattern.strip_prefix("*.") {
            Some(base) => host == base || host.ends_with(&format!(".{base}")),
            None => host == pattern,
        }
    })
}

/// A share of the in-flight body budget, returned on drop.
struct Reservation<'a> {
    used: &'a AtomicU64,
    max: u64,
    held: u64,
}

impl Reservation<'_> {
    fn grow(&mut self, n: u64) -> bool {
        let before = self.used.fetch_add(n, Ordering::AcqRel);
        if self.max > 0 && before + n > self.max {
            self.used.fetch_sub(n, Ordering::AcqRel);
            return false;
        }
        self.held += n;
        true
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        self.used.fetch_sub(self.held, Ordering::AcqRel);
    }
}

/// Result of a handled envelope: the event id to answer with and limits to announce.
struct Accepted {
    event_id: Option<Uuid>,
    rate_limits: RateLimits,
}

/// The ingest service: one per process, shared by all connections.
pub struct IngestService {
    projects: Arc<dyn ProjectSource>,
    log: Arc<dyn Log>,
    config: IngestConfig,
    limiter: RateLimiter,
    /// Items refused by `limiter`, summed into `rate_limited` outcomes.
    rejections: Arc<crate::rejections::Rejections>,
    metrics: Metrics,
}

impl IngestService {
    /// Creates the service over a key/project source and the log.
    pub fn new(
        projects: impl ProjectSource,
        log: Arc<dyn Log>,
        config: IngestConfig,
    ) -> IngestService {
        let limiter = RateLimiter::new(&config.rate_limits);
        let rejections = crate::rejections::Rejections::new(Arc::clone(&log));
        IngestService {
            projects: Arc::new(projects),
            log,
            config,
            limiter,
            rejections,
            metrics: Metrics::default(),
        }
    }

    /// The service's counters (tests, embedding).
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Appends the rate-limit refusals summed so far to the log now, instead of at the next
    /// periodic flush (tests, shutdown).
    pub fn flush_rejections(&self) {
        self.rejections.flush();
    }

    /// The configuration in use.
    pub fn config(&self) -> &IngestConfig {
        &self.config
    }

    /// Appends the Prometheus text of ingest's metrics to `out`.
    pub fn render_metrics(&self, out: &mut String) {
        self.metrics.render(out);
    }

    /// Most bytes read from the wire (before decoding). The store endpoint also takes
    /// envelopes (by content type), so both routes read up to the envelope limit; the event
    /// limit is enforced on the decoded store payload.
    fn body_cap(&self) -> usize {
        self.config.limits.max_envelope_size
    }

    /// Handles one HTTP request: reads the body while streaming with a byte cap (never
    /// unbounded), then runs [`IngestService::ingest`]. The peer address is taken from a
    /// `SocketAddr` (or `IpAddr`) request extension when the server inserted one.
    pub async fn handle<B>(&self, req: Request<B>) -> Response<Full<Bytes>>
    where
        B: hyper::body::Body<Data = Bytes>,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let start = Instant::now();
        let (parts, body) = req.into_parts();
        let route = parse_route(parts.uri.path()).ok();
        let client_addr = parts
            .extensions
            .get::<SocketAddr>()
            .map(SocketAddr::ip)
            .or_else(|| parts.extensions.get::<IpAddr>().copied());
        let cap = self.body_cap();
        // Held until the answer is built: the body's bytes stay alive that long.
        let mut reservation = Reservation {
            used: &self.metrics.inflight_body_bytes,
            max: self.config.max_inflight_body_bytes,
            held: 0,
        };

        let early = if route.is_none() || parts.method == Method::OPTIONS {
            // Nothing to read: errors and preflights are answered from the head alone.
            Ok(Bytes::new())
        } else if parts
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .is_some_and(|n| n > cap as u64)
        {
            Err(IngestError::BodyTooLarge(DetailError(format!(
                "length limit exceeded ({cap} bytes)"
            ))))
        } else {
            let secs = self.config.body_read_timeout_secs;
            let read = self.read_body(body, cap, &mut reservation);
            if secs == 0 {
                read.await
            } else {
                tokio::time::timeout(std::time::Duration::from_secs(secs), read)
                    .await
                    .unwrap_or(Err(IngestError::BodyTimeout(secs)))
            }
        };
        let response = match early {
            Ok(body) => {
                let request = IngestRequest {
                    method: parts.method,
                    path: parts.uri.path().to_owned(),
                    query: parts.uri.query().map(str::to_owned),
                    headers: parts.headers,
                    body,
                    client_addr,
                };
                self.ingest_at(request, start).await
            }
            Err(err) => self.finish_error(&err, None, start),
        };
        drop(reservation);
        response.into_http()
    }

    /// Reads a body frame by frame, refusing past `cap` bytes (413) or when all bodies in
    /// flight would exceed the configured budget (503).
    async fn read_body<B>(
        &self,
        body: B,
        cap: usize,
        reservation: &mut Reservation<'_>,
    ) -> Result<Bytes, IngestError>
    where
        B: hyper::body::Body<Data = Bytes>,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let mut body = std::pin::pin!(body);
        let mut chunks: Vec<Bytes> = Vec::new();
        let mut total = 0usize;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| IngestError::InvalidBody(DetailError::new(e.into())))?;
            let Ok(data) = frame.into_data() else {
                continue; // trailers
            };
            total = total.saturating_add(data.len());
            if total > cap {
                return Err(IngestError::BodyTooLarge(DetailError(format!(
                    "length limit exceeded ({cap} bytes)"
                ))));
            }
            if !reservation.grow(data.len() as u64) {
                return Err(IngestError::QueueFailed {
                    retry_after_secs: Some(1),
                    cause: DetailError("request bodies in flight over budget".into()),
                });
            }
            chunks.push(data);
        }
        Ok(match chunks.len() {
            0 => Bytes::new(),
            1 => chunks.pop().unwrap_or_default(),
            _ => {
                let mut all = Vec::with_capacity(total);
                for c in &chunks {
                    all.extend_from_slice(c);
                }
                Bytes::from(all)
            }
        })
    }

    /// Runs the whole pipeline on a request whose body is already in memory.
    pub async fn ingest(&self, request: IngestRequest) -> IngestResponse {
        self.ingest_at(request, Instant::now()).await
    }

    async fn ingest_at(&self, request: IngestRequest, start: Instant) -> IngestResponse {
        let route = parse_route(&request.path);
        if request.method == Method::OPTIONS && route.is_ok() {
            let mut resp = IngestResponse {
                status: StatusCode::OK,
                headers: HeaderMap::new(),
                body: Bytes::new(),
            };
            cors::apply_preflight(&mut resp.headers);
            return resp;
        }
        let is_get = request.method == Method::GET;
        let is_minidump = matches!(route, Ok(Route::Minidump(_)));
        let is_attachments = matches!(route, Ok(Route::Attachments(_)));
        let is_cron = matches!(route, Ok(Route::Cron(_)));
        let is_nel = matches!(route, Ok(Route::Nel(_)));
        let mut category = None;
        let result = match route {
            Ok(route) => self.process(route, request, &mut category).await,
            Err(e) => Err(e),
        };
        match result {
            Ok(accepted) => {
                self.metrics.accept_request();
                self.metrics.observe_latency(start.elapsed());
                let mut resp = if is_attachments {
                    // Relay's answer to an attachment upload: 201, nothing to read.
                    IngestResponse {
                        status: StatusCode::CREATED,
                        headers: HeaderMap::new(),
                        body: Bytes::new(),
                    }
                } else if is_cron {
                    // Relay's answer to a check-in: 202, nothing to read.
                    IngestResponse {
                        status: StatusCode::ACCEPTED,
                        headers: HeaderMap::new(),
                        body: Bytes::new(),
                    }
                } else if is_nel {
                    // Relay's answer to NEL reports: 200, nothing to read.
                    IngestResponse {
                        status: StatusCode::OK,
                        headers: HeaderMap::new(),
                        body: Bytes::new(),
                    }
                } else if is_minidump {
                    // Crash reporters read the hyphenated event id as plain text.
                    let id = accepted.event_id.map(|id| id.hyphenated().to_string());
                    let mut r = IngestResponse {
                        status: StatusCode::OK,
                        headers: HeaderMap::new(),
                        body: Bytes::from(id.unwrap_or_default()),
                    };
                    r.headers.insert(
                        header::CONTENT_TYPE,
                        HeaderValue::from_static("text/plain; charset=utf-8"),
                    );
                    r
                } else if is_get {
                    let mut r = IngestResponse {
                        status: StatusCode::OK,
                        headers: HeaderMap::new(),
                        body: Bytes::from_static(PIXEL_GIF),
                    };
                    r.headers
                        .insert(header::CONTENT_TYPE, HeaderValue::from_static("image/gif"));
                    r
                } else {
                    let body = match accepted.event_id {
                        Some(id) => format!(r#"{{"id":"{}"}}"#, id.simple()),
                        None => "{}".to_owned(),
                    };
                    IngestResponse::json(StatusCode::OK, body.into_bytes())
                };
                add_rate_limit_headers(&mut resp.headers, &accepted.rate_limits, false);
                cors::apply(&mut resp.headers);
                resp
            }
            Err(err) => self.finish_error(&err, category, start),
        }
    }

    fn finish_error(
        &self,
        err: &IngestError,
        category: Option<DataCategory>,
        start: Instant,
    ) -> IngestResponse {
        // Rate-limited items were already counted one by one when they were dropped.
        if !matches!(err, IngestError::RateLimited(_)) {
            self.metrics.reject(err.reason(), category, 1);
        }
        self.metrics.observe_latency(start.elapsed());
        // Server faults at error, client faults at debug; shedding load on a full log is an
        // answer by design (counted on /metrics), not a fault.
        match err {
            IngestError::QueueFailed {
                retry_after_secs: Some(_),
                ..
            } => tracing::debug!(error = %err, "ingest request shed"),
            _ if err.status().is_server_error() => {
                tracing::error!(error = %err, "ingest request failed")
            }
            _ => tracing::debug!(error = %err, "ingest request rejected"),
        }
        let mut resp = IngestResponse::from_error(err);
        cors::apply(&mut resp.headers);
        resp
    }

    async fn process(
        &self,
        route: Route,
        request: IngestRequest,
        category: &mut Option<DataCategory>,
    ) -> Result<Accepted, IngestError> {
        let IngestRequest {
            method,
            path,
            query,
            headers,
            body,
            client_addr,
        } = request;
        match (route, &method) {
            (
                Route::Envelope(_)
                | Route::Security(_)
                | Route::Minidump(_)
                | Route::Attachments(_)
                | Route::Nel(_),
                &Method::POST,
            )
            | (Route::Store(_) | Route::Cron(_), &Method::POST | &Method::GET) => {}
            _ => return Err(IngestError::MethodNotAllowed),
        }
        if matches!(route, Route::Nel(_)) && !is_nel_content_type(&headers) {
            // Relay's check, before anything else is read.
            return Err(IngestError::UnsupportedMediaType);
        }
        if let Route::Cron(project_id) = route {
            *category = Some(DataCategory::Monitor);
            return self
                .handle_cron(
                    project_id,
                    &path,
                    query.as_deref(),
                    &headers,
                    body,
                    client_addr,
                )
                .await;
        }
        let path_project = match route {
            Route::Envelope(id)
            | Route::Security(id)
            | Route::Minidump(id)
            | Route::Attachments(id)
            | Route::Cron(id)
            | Route::Nel(id) => Some(id),
            Route::Store(id) => id,
        };
        let is_envelope = matches!(route, Route::Envelope(_))
            || headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|ct| ct.trim().starts_with("application/x-sentry-envelope"));

        let header_auth = auth::auth_from_request(&headers, query.as_deref())?;
        let mut resolved = match &header_auth {
            Some((auth, _)) => Some(self.resolve_key(auth, path_project)?),
            None if is_envelope && method == Method::POST => None,
            None => return Err(IngestError::MissingAuth),
        };

        // The body: the GET store form carries the event in `sentry_data`.
        let raw = if method == Method::GET {
            let data = query
                .as_deref()
                .and_then(|q| {
                    auth::query_pairs(q)
                        .find(|(k, _)| k == "sentry_data")
                        .map(|(_, v)| v.into_owned())
                })
                .unwrap_or_default();
            Bytes::from(data)
        } else {
            body
        };
        if raw.is_empty() {
            return Err(if resolved.is_none() {
                IngestError::MissingAuth
            } else {
                IngestError::EmptyBody
            });
        }
        let cap = if is_envelope || matches!(route, Route::Minidump(_)) {
            self.config.limits.max_envelope_size
        } else if matches!(route, Route::Attachments(_)) {
            // Relay bounds this route's whole body by the attachments limit.
            self.config.limits.max_attachments_size
        } else {
            self.config.limits.max_event_size
        };
        // A GET has no body to decode: `sentry_data` is never content-encoded.
        let encodings = if method == Method::GET {
            Vec::new()
        } else {
            decode::encodings(&headers)?
        };
        let decoded = if encodings.is_empty() {
            if raw.len() > cap {
                return Err(IngestError::BodyTooLarge(DetailError(format!(
                    "length limit exceeded ({cap} bytes)"
                ))));
            }
            raw
        } else if raw.len() < INLINE_DECODE_BYTES {
            decode::decode_body(&encodings, raw, cap)?
        } else {
            // Inflating megabytes (up to the cap, for a bomb) takes milliseconds of CPU; keep
            // that off the runtime's worker threads so other connections keep moving.
            tokio::task::spawn_blocking(move || decode::decode_body(&encodings, raw, cap))
                .await
                .map_err(|e| IngestError::InvalidBody(DetailError::new(e)))??
        };
        if decoded.is_empty() {
            return Err(IngestError::EmptyBody);
        }

        let mut header_dsn_auth = false;
        if resolved.is_none() {
            // Envelope endpoint without header/query auth: the envelope header's `dsn`.
            let line = first_line(&decoded);
            let has_dsn = serde_json::from_slice::<serde_json::Value>(line)
                .ok()
                .is_some_and(|v| v.get("dsn").is_some());
            let dsn = match auth::dsn_from_envelope_header(line) {
                Ok(dsn) => dsn,
                // A well-formed header with no `dsn` at all means the client sent no auth.
                Err(_) if !has_dsn && serde_json::from_slice::<serde_json::Value>(line).is_ok() => {
                    return Err(IngestError::MissingAuth)
                }
                Err(e) => return Err(e),
            };
            let auth = Auth {
                public_key: dsn.public_key.clone(),
                version: auth::PROTOCOL_VERSION,
                client: None,
                secret: dsn.secret.clone(),
            };
            let key = self.resolve_key(&auth, path_project.or(Some(dsn.project_id)))?;
            resolved = Some(key);
            header_dsn_auth = true;
        }
        let (key, project) = resolved.ok_or(IngestError::MissingAuth)?;

        // Multipart uploads: the legacy attachment route and native crash reports.
        let multipart_category = match &route {
            Route::Attachments(_) => Some(DataCategory::Attachment),
            Route::Minidump(_) => Some(DataCategory::Error),
            _ => None,
        };
        if let Some(multipart_category) = multipart_category {
            *category = Some(multipart_category);
            if !origin_allowed(&project.settings.allowed_domains, &headers) {
                return Err(IngestError::EventRejected(DiscardReason::Cors));
            }
            let content_type = headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok());
            return if matches!(route, Route::Attachments(_)) {
                self.handle_attachments(&path, decoded, content_type, &key, client_addr)
                    .await
            } else {
                self.handle_minidump(decoded, content_type, &key, client_addr)
                    .await
            };
        }
        if matches!(route, Route::Nel(_)) {
            *category = Some(DataCategory::Security);
            if !origin_allowed(&project.settings.allowed_domains, &headers) {
                return Err(IngestError::EventRejected(DiscardReason::Cors));
            }
            return self.handle_nel(decoded, &key, client_addr).await;
        }
        if matches!(route, Route::Security(_)) {
            *category = Some(DataCategory::Security);
            if !origin_allowed(&project.settings.allowed_domains, &headers) {
                return Err(IngestError::EventRejected(DiscardReason::Cors));
            }
            return self
                .handle_security_reports(&decoded, query.as_deref(), &headers, &key, client_addr)
                .await;
        }

        let envelope = if is_envelope {
            let envelope = Envelope::parse(decoded)?;
            if let Some(dsn) = &envelope.dsn {
                let dsn: Dsn = dsn.parse().map_err(|e| {
                    IngestError::InvalidEnvelope(EnvelopeError::InvalidHeader(DetailError::new(e)))
                })?;
                if path_project.is_some_and(|p| p != dsn.project_id) {
                    return Err(EnvelopeError::HeaderMismatch("project id").into());
                }
                if !header_dsn_auth {
                    if let Some((auth, _)) = &header_auth {
                        if auth::parse_public_key(&auth.public_key)?
                            != dsn.public_key.split('.').next().unwrap_or("")
                        {
                            return Err(EnvelopeError::HeaderMismatch("public key").into());
                        }
                    }
                }
            }
            envelope
        } else {
            store_envelope(decoded, self.config.limits.max_event_size)?
        };
        *category = envelope.items.iter().find_map(|i| i.ty.category());

        if !origin_allowed(&project.settings.allowed_domains, &headers) {
            return Err(IngestError::EventRejected(DiscardReason::Cors));
        }

        let client_addr = if self.config.trust_forwarded_for {
            headers
                .get("x-forwarded-for")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.split(',').next())
                .and_then(|v| v.trim().parse().ok())
                .or(client_addr)
        } else {
            client_addr
        };
        self.handle_envelope(envelope, &key, client_addr, is_envelope)
            .await
    }

    /// A browser's NEL reports (a JSON list, or one report): one `nel` item counting them,
    /// appended like any envelope and answered 200 with no body, as Relay answers. Relay
    /// turns NEL reports into logs, a product osprey does not keep, so the processor counts
    /// them as dropped (`feature_disabled`) instead of storing them. Rate limits are not
    /// answered to the browser, as in Relay.
    async fn handle_nel(
        &self,
        decoded: Bytes,
        key: &ProjectKey,
        client_addr: Option<IpAddr>,
    ) -> Result<Accepted, IngestError> {
        let reports = match serde_json::from_slice::<serde_json::Value>(&decoded)
            .map_err(|e| IngestError::InvalidJson(e.to_string()))?
        {
            serde_json::Value::Array(list) => list.len(),
            serde_json::Value::Object(_) => 1,
            _ => {
                return Err(IngestError::InvalidJson(
                    "a NEL body is a report or a list of reports".into(),
                ))
            }
        };
        let event_id = Uuid::new_v4();
        let item_header = serde_json::json!({
            "type": "nel",
            "length": decoded.len(),
            "item_count": reports,
        });
        let envelope = Envelope::generated(
            event_id,
            vec![Item {
                ty: ItemType::Nel,
                header: Bytes::from(item_header.to_string()),
                payload: decoded,
                item_count: u32::try_from(reports).ok(),
                attachment_type: None,
            }],
        );
        match self
            .handle_envelope(envelope, key, client_addr, false)
            .await
        {
            Ok(_) | Err(IngestError::RateLimited(_)) => Ok(Accepted {
                event_id: None,
                rate_limits: RateLimits::default(),
            }),
            Err(e) => Err(e),
        }
    }

    /// Browser security reports: each report becomes its own one-item envelope (own event id,
    /// own rate-limit check), carrying `sentry_release`/`sentry_environment` from the query and
    /// the browser's `User-Agent` in its item header for the processor.
    async fn handle_security_reports(
        &self,
        decoded: &[u8],
        query: Option<&str>,
        headers: &HeaderMap,
        key: &ProjectKey,
        client_addr: Option<IpAddr>,
    ) -> Result<Accepted, IngestError> {
        let reports = security::split_reports(decoded)?;
        let mut extra = serde_json::Map::new();
        for (name, value) in query.map(auth::query_pairs).into_iter().flatten() {
            if name == "sentry_release" || name == "sentry_environment" {
                extra.insert(name.into_owned(), value.into_owned().into());
            }
        }
        if let Some(agent) = headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
        {
            extra.insert("user_agent".into(), agent.into());
        }
        let mut last = None;
        for payload in reports {
            let event_id = Uuid::new_v4();
            let mut item_header = extra.clone();
            item_header.insert("type".into(), "security".into());
            item_header.insert("length".into(), payload.len().into());
            let envelope = Envelope::generated(
                event_id,
                vec![Item {
                    ty: ItemType::Security,
                    header: Bytes::from(
                        serde_json::to_vec(&item_header)
                            .map_err(|e| IngestError::InvalidSecurityReport(e.to_string()))?,
                    ),
                    payload,
                    item_count: None,
                    attachment_type: None,
                }],
            );
            last = Some(
                self.handle_envelope(envelope, key, client_addr, false)
                    .await?,
            );
        }
        // Relay answers a security report with an empty body; the ids are per report.
        last.map(|accepted| Accepted {
            event_id: None,
            rate_limits: accepted.rate_limits,
        })
        .ok_or_else(|| IngestError::InvalidSecurityReport("no report".into()))
    }

    /// A crash upload: an event naming the crash, the dump as an `event.minidump` attachment
    /// and any other uploaded files as attachments, in one envelope. Like Relay, never a 429
    /// (crash reporters retry forever): a rate-limited upload is answered with its id and
    /// dropped (counted on /metrics).
    async fn handle_minidump(
        &self,
        body: Bytes,
        content_type: Option<&str>,
        key: &ProjectKey,
        client_addr: Option<IpAddr>,
    ) -> Result<Accepted, IngestError> {
        let cap = self.config.limits.max_attachment_size;
        let decoded_cap = self.config.limits.max_envelope_size;
        let upload = {
            let content_type = content_type.map(str::to_owned);
            tokio::task::spawn_blocking(move || {
                minidump::parse_upload(content_type.as_deref(), body, decoded_cap)
            })
            .await
            .map_err(|e| IngestError::InvalidBody(DetailError::new(e)))??
        };
        if upload.minidump.len() > cap {
            return Err(IngestError::Overflow("attachment".into()));
        }
        let crash = minidump::crash_info(&upload.minidump)?;
        let event_id = Uuid::new_v4();
        let event = minidump::event_json(event_id, &upload, &crash);
        let event = Bytes::from(
            serde_json::to_vec(&event).map_err(|e| IngestError::InvalidMinidump(e.to_string()))?,
        );
        let item_header = |fields: serde_json::Value| -> Result<Bytes, IngestError> {
            serde_json::to_vec(&fields)
                .map(Bytes::from)
                .map_err(|e| IngestError::InvalidMinidump(e.to_string()))
        };
        let mut items = vec![
            Item {
                ty: ItemType::Event,
                header: item_header(serde_json::json!({"type": "event", "length": event.len()}))?,
                payload: event,
                item_count: None,
                attachment_type: None,
            },
            Item {
                ty: ItemType::Attachment,
                header: item_header(serde_json::json!({
                    "type": "attachment",
                    "length": upload.minidump.len(),
                    "filename": upload.minidump_name,
                    "content_type": "application/x-dmp",
                    "attachment_type": "event.minidump",
                }))?,
                payload: upload.minidump.clone(),
                item_count: None,
                attachment_type: Some("event.minidump".into()),
            },
        ];
        for file in &upload.files {
            items.push(attachment_item(file.clone())?);
        }
        let envelope = Envelope::generated(event_id, items);
        match self.handle_envelope(envelope, key, client_addr, true).await {
            Err(IngestError::RateLimited(rate_limits)) => Ok(Accepted {
                event_id: Some(event_id),
                rate_limits,
            }),
            other => other,
        }
    }

    /// A legacy attachment upload (`/api/{id}/events/{event_id}/attachments/`): every file
    /// part of the form becomes an `event.attachment` item of the event named in the path, in
    /// one envelope through the usual limits and rate limits, as Relay's attachments endpoint
    /// does. The event itself was (or will be) sent on its own.
    async fn handle_attachments(
        &self,
        path: &str,
        body: Bytes,
        content_type: Option<&str>,
        key: &ProjectKey,
        client_addr: Option<IpAddr>,
    ) -> Result<Accepted, IngestError> {
        let event_id = path
            .strip_prefix("/api/")
            .and_then(|rest| rest.split_once('/'))
            .map(|(_, tail)| tail.strip_suffix('/').unwrap_or(tail))
            .and_then(attachments_event_id)
            .and_then(|id| Uuid::parse_str(id).ok())
            .ok_or_else(|| {
                IngestError::InvalidBody(DetailError("invalid event id in the path".into()))
            })?;
        let files = {
            let cap_each = self.config.limits.max_attachment_size;
            let content_type = content_type.map(str::to_owned);
            tokio::task::spawn_blocking(move || {
                minidump::attachment_files(content_type.as_deref(), &body, cap_each)
            })
            .await
            .map_err(|e| IngestError::InvalidBody(DetailError::new(e)))??
        };
        if files.is_empty() {
            return Err(IngestError::EmptyEnvelope);
        }
        let items = files
            .into_iter()
            .map(attachment_item)
            .collect::<Result<Vec<Item>, IngestError>>()?;
        let envelope = Envelope {
            header: Bytes::from(format!(r#"{{"event_id":"{}"}}"#, event_id.simple())),
            event_id: Some(event_id),
            event_id_generated: false,
            dsn: None,
            items,
        };
        self.handle_envelope(envelope, key, client_addr, true).await
    }

    /// An HTTP check-in (`/api/{id}/cron/{slug}[/{sentry_key}]/`): the key from the path or
    /// the usual auth, one `check_in` item through the envelope path. As in Relay a rate limit
    /// never reaches the client (crons retry), so only a bad request or a server fault fails.
    async fn handle_cron(
        &self,
        project_id: u64,
        path: &str,
        query: Option<&str>,
        headers: &HeaderMap,
        body: Bytes,
        client_addr: Option<IpAddr>,
    ) -> Result<Accepted, IngestError> {
        let tail = path
            .strip_prefix("/api/")
            .map(|rest| rest.strip_suffix('/').unwrap_or(rest))
            .and_then(|rest| rest.split_once('/'))
            .map_or("", |(_, endpoint)| endpoint);
        let (slug, path_key) = cron_path(tail).ok_or(IngestError::NotFound)?;
        let auth = match path_key {
            Some(key) => Auth {
                public_key: key.to_owned(),
                version: auth::PROTOCOL_VERSION,
                client: None,
                secret: None,
            },
            None => match auth::auth_from_request(headers, query)? {
                Some((auth, _)) => auth,
                None => return Err(IngestError::MissingAuth),
            },
        };
        let (key, _) = self.resolve_key(&auth, Some(project_id))?;
        let body = if body.len() > self.config.limits.max_event_size {
            return Err(IngestError::BodyTooLarge(DetailError(format!(
                "length limit exceeded ({} bytes)",
                self.config.limits.max_event_size
            ))));
        } else {
            let encodings = decode::encodings(headers)?;
            if encodings.is_empty() {
                body
            } else {
                decode::decode_body(&encodings, body, self.config.limits.max_event_size)?
            }
        };
        let payload = cron_check_in(slug, query, headers, &body)?;
        let envelope = Envelope::from_store_payload(Uuid::new_v4(), ItemType::CheckIn, payload);
        match self
            .handle_envelope(envelope, &key, client_addr, true)
            .await
        {
            Err(IngestError::RateLimited(_)) => Ok(Accepted {
                event_id: None,
                rate_limits: RateLimits::default(),
            }),
            other => other,
        }
    }

    /// Validates the key and version, then finds the key and its project (403 if unusable).
    fn resolve_key(
        &self,
        auth: &Auth,
        path_project: Option<u64>,
    ) -> Result<(Arc<ProjectKey>, Arc<Project>), IngestError> {
        let public_key = auth::parse_public_key(&auth.public_key)?;
        if auth.version > auth::PROTOCOL_VERSION {
            return Err(IngestError::UnsupportedProtocolVersion(auth.version));
        }
        let rejected = IngestError::EventRejected(DiscardReason::ProjectId);
        let key = self
            .projects
            .key(public_key)
            .ok_or(IngestError::EventRejected(DiscardReason::ProjectId))?;
        if !key.enabled || path_project.is_some_and(|p| p != key.project_id) {
            return Err(rejected);
        }
        let project = self.projects.project(key.project_id).ok_or(rejected)?;
        Ok((key, project))
    }

    async fn handle_envelope(
        &self,
        mut envelope: Envelope,
        key: &ProjectKey,
        client_addr: Option<IpAddr>,
        announce_partial_limits: bool,
    ) -> Result<Accepted, IngestError> {
        let event_id = envelope.event_id;
        if envelope.items.is_empty() {
            return Ok(Accepted {
                event_id,
                rate_limits: RateLimits::default(),
            });
        }

        // Rate limits: client reports and unknown items have no category and are never limited.
        let demands: Vec<(usize, Demand)> = envelope
            .items
            .iter()
            .enumerate()
            .filter_map(|(i, item)| {
                let category = item.ty.category()?;
                let quantity = match category {
                    DataCategory::Attachment => item.payload.len() as u64,
                    _ => u64::from(item.item_count.unwrap_or(1).max(1)),
                };
                Some((i, Demand { category, quantity }))
            })
            .collect();
        let key_limit = key.rate_limit.as_ref().map(|l| KeyLimit {
            limit: l.limit,
            window_secs: l.window_secs,
        });
        let only: Vec<Demand> = demands.iter().map(|(_, d)| *d).collect();
        let (accepted, rate_limits) =
            self.limiter
                .check(key.project_id, key.key_id, key_limit, &only);
        self.rejections.flush_if_due();
        if rate_limits.is_limited() {
            let mut drop = vec![false; envelope.items.len()];
            for ((i, demand), ok) in demands.iter().zip(&accepted) {
                if !ok {
                    drop[*i] = true;
                    self.metrics
                        .reject("rate_limited", Some(demand.category), 1);
                    self.rejections.add(
                        key.project_id,
                        key.key_id,
                        demand.category,
                        crate::rejections::refusal_reason(&rate_limits, demand.category),
                        demand.quantity,
                    );
                }
            }
            let mut index = 0;
            envelope.items.retain(|_| {
                let keep = !drop[index];
                index += 1;
                keep
            });
            // The store endpoint keeps Relay's legacy behaviour: any limit is a 429.
            if envelope.items.is_empty() || !announce_partial_limits {
                return Err(IngestError::RateLimited(rate_limits));
            }
        }

        if let Err(item) = limits::check_envelope(&self.config.limits, &envelope) {
            return Err(IngestError::Overflow(item));
        }

        let received_ms = now_ms();
        let mut records = Vec::with_capacity(envelope.items.len());
        for item in envelope.items {
            if item.ty == ItemType::ClientReport {
                match outcomes::parse_client_report(&item.payload) {
                    // Counted on `/metrics` now, and logged so that the processor adds them to
                    // the project's outcomes (Sentry's stats API counts client discards).
                    Ok(list) => self.metrics.client_outcomes(&list),
                    // Client reports are best effort on both sides: a broken one is dropped.
                    Err(e) => {
                        tracing::debug!(error = %e, "ignoring client report");
                        continue;
                    }
                }
            }
            records.push(LogRecord {
                project_id: key.project_id,
                key_id: key.key_id,
                received_ms,
                event_id,
                item_type: item.ty.name().to_owned(),
                envelope_header: envelope.header.clone(),
                item_header: item.header,
                client_addr,
                payload: item.payload,
            });
        }
        if !records.is_empty() {
            let categories: Vec<Option<DataCategory>> = records
                .iter()
                .map(|r| ItemType::from_name(&r.item_type).category())
                .collect();
            let ticket = self.log.append(records).map_err(queue_failed)?;
            ticket.await.map_err(queue_failed)?;
            for c in categories {
                self.metrics.accept_item(c);
            }
        }
        Ok(Accepted {
            event_id,
            rate_limits,
        })
    }
}

fn queue_failed(err: StorageError) -> IngestError {
    let retry_after_secs = match &err {
        StorageError::Backpressure { retry_after_secs } => Some(*retry_after_secs),
        StorageError::Closed => Some(5),
        _ => None,
    };
    IngestError::QueueFailed {
        retry_after_secs,
        cause: DetailError::new(err),
    }
}

/// The store endpoint's payload: base64/zlib sniffing, then a minimal parse for the event id
/// and type, wrapped into a one-item envelope.
fn store_envelope(decoded: Bytes, cap: usize) -> Result<Envelope, IngestError> {
    #[derive(Deserialize)]
    struct Minimal<'a> {
        #[serde(default)]
        event_id: Option<Uuid>,
        #[serde(default, rename = "type", borrow)]
        ty: Option<std::borrow::Cow<'a, str>>,
    }
    let payload = decode::decode_store_payload(decoded, cap)?;
    if payload.len() > cap {
        return Err(IngestError::Overflow("event".into()));
    }
    // Python clients of the store endpoint send NaN/Infinity for non-finite floats, which
    // JSON has no words for: patch them to 0 (as Relay does) rather than refuse the event.
    let payload = match serde_json::from_slice::<Minimal<'_>>(&payload) {
        Ok(_) => payload,
        Err(e) => {
            let mut patched = payload.to_vec();
            if !decode::patch_non_finite_numbers(&mut patched) {
                return Err(IngestError::InvalidJson(format!("{e:?}")));
            }
            Bytes::from(patched)
        }
    };
    let minimal: Minimal<'_> =
        serde_json::from_slice(&payload).map_err(|e| IngestError::InvalidJson(format!("{e:?}")))?;
    let ty = match minimal.ty.as_deref() {
        Some("transaction") => ItemType::Transaction,
        _ => ItemType::Event,
    };
    let event_id = minimal.event_id.unwrap_or_else(Uuid::new_v4);
    Ok(Envelope::from_store_payload(event_id, ty, payload))
}

/// One uploaded file (minidump upload, legacy attachment route) as an `event.attachment`
/// envelope item of its event.
fn attachment_item(file: minidump::UploadFile) -> Result<Item, IngestError> {
    let header = serde_json::json!({
        "type": "attachment",
        "length": file.bytes.len(),
        "filename": file.filename,
        "content_type": file.content_type,
        "attachment_type": "event.attachment",
    });
    Ok(Item {
        ty: ItemType::Attachment,
        header: Bytes::from(
            serde_json::to_vec(&header)
                .map_err(|e| IngestError::InvalidBody(DetailError::new(e)))?,
        ),
        payload: file.bytes,
        item_count: None,
        attachment_type: Some("event.attachment".into()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert_eq!(parse_route("/api/1/envelope/").unwrap(), Route::Envelope(1));
        assert_eq!(parse_route("/api/1/envelope").unwrap(), Route::Envelope(1));
        assert_eq!(
            parse_route("/api/42/store/").unwrap(),
            Route::Store(Some(42))
        );
        assert_eq!(parse_route("/api/store/").unwrap(), Route::Store(None));
        assert_eq!(parse_route("/api/7/security/").unwrap(), Route::Security(7));
        assert_eq!(parse_route("/api/3/cron/job/").unwrap(), Route::Cron(3));
        assert_eq!(parse_route("/api/5/nel/").unwrap(), Route::Nel(5));
        assert_eq!(parse_route("/api/3/cron/job/abc").unwrap(), Route::Cron(3));
        assert_eq!(cron_path("cron/job/abc"), Some(("job", Some("abc"))));
        assert_eq!(cron_path("cron/job"), Some(("job", None)));
        for bad in ["/api/3/cron/", "/api/3/cron//k/", "/api/3/cron/job/k/x/"] {
            assert!(
                matches!(parse_route(bad), Err(IngestError::NotFound)),
                "{bad}"
            );
        }
        assert_eq!(
            parse_route("/api/7/csp-report").unwrap(),
            Route::Security(7)
        );
        assert!(matches!(
            parse_route("/api/abc/envelope/"),
            Err(IngestError::BadProject)
        ));
        assert_eq!(parse_route("/api/1/minidump").unwrap(), Route::Minidump(1));
        assert_eq!(
            parse_route("/api/3/events/9ec79c33ec9942ab8353589fcb2e04dc/attachments/").unwrap(),
            Route::Attachments(3)
        );
        assert_eq!(
            attachments_event_id("events/abc/attachments"),
            Some("abc"),
            "the id is validated when the upload is handled"
        );
        for bad in [
            "/api/3/events//attachments/",
            "/api/3/events/a/b/attachments/",
            "/api/3/events/abc/",
            "/api/3/events/abc/attachment/",
        ] {
            assert!(
                matches!(parse_route(bad), Err(IngestError::NotFound)),
                "{bad}"
            );
        }
        assert!(matches!(
            parse_route("/api/1/unreal/"),
            Err(IngestError::NotFound)
        ));
        assert!(matches!(parse_route("/health"), Err(IngestError::NotFound)));
    }

    #[test]
    fn origins() {
        let mut h = HeaderMap::new();
        let allowed = vec!["*.example.com".to_owned(), "other.org".to_owned()];
        assert!(origin_allowed(&allowed, &h));
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://app.example.com:8443"),
        );
        assert!(origin_allowed(&allowed, &h));
        h.insert(header::ORIGIN, HeaderValue::from_static("https://evil.com"));
        assert!(!origin_allowed(&allowed, &h));
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://other.org/"),
        );
        assert!(origin_allowed(&allowed, &h));
        assert!(origin_allowed(&["*".to_owned()], &h));
    }

    #[test]
    fn config_deserializes_with_defaults_and_rejects_unknown_keys() {
        let c: IngestConfig = serde_json::from_str(
            r#"{"limits":{"max_event_size":100},"rate_limits":{"window_secs":10,"project":{"error":5}}}"#,
        )
        .unwrap();
        assert_eq!(c.limits.max_event_size, 100);
        assert_eq!(
            c.limits.max_envelope_size,
            Limits::default().max_envelope_size
        );
        assert_eq!(c.rate_limits.project.get("error"), Some(&5));
        assert!(!c.trust_forwarded_for);
        assert!(serde_json::from_str::<IngestConfig>(r#"{"limitz":{}}"#).is_err());
        assert!(serde_json::from_str::<IngestConfig>(r#"{"limits":{"max_evnt_size":1}}"#).is_err());
        assert_eq!(
            serde_json::from_str::<IngestConfig>("{}").unwrap(),
            IngestConfig::default()
        );
    }

    #[test]
    fn gif_is_a_gif() {
        assert!(PIXEL_GIF.starts_with(b"GIF89a"));
        assert_eq!(PIXEL_GIF.last(), Some(&0x3b));
    }
}
