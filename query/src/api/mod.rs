//! The Sentry Web API subset at `/api/0/` (reference/sentry-web-api.md): what `sentry-cli` and
//! the official Sentry MCP server call, answered in Sentry's shapes.
//!
//! Layers, outermost first:
//! - [`ApiService::handle`]: hyper request in, response out; collects the body under a size
//!   cap and runs the (blocking, RocksDB-reading) handler on the blocking pool.
//! - [`ApiService::call`]: a decoded [`ApiRequest`] in, an [`ApiResponse`] out. Authenticates
//!   the bearer token and routes by path segments. Tests drive this directly.
//! - The endpoint families (`orgs`, `releases`, …): plain functions over a [`Ctx`], which
//!   carries the authenticated token and resolves organizations and projects so that a token
//!   never sees another organization (404) and a missing scope is 403.

pub mod alerts;
mod discover;
pub mod feedback;
mod issues;
mod orgs;
mod performance;
mod project_settings;
mod releases;
mod sessions;
mod stats;
mod traces;
pub mod util;

pub use discover::{event_fields, event_matches};
pub use issues::{apply_issue_update, Actor};
pub use orgs::validate_scopes;

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use serde_json::{json, Value};
use storage::{ApiToken, Log, Organization, Project, StorageError, Store};

use crate::QueryService;

/// Settings of the API layer.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// The URL clients reach this server at (`https://osprey.example.com`), used in
    /// permalinks and `Link` headers; when `None`, `http://` + the request's `Host`.
    pub public_url: Option<String>,
    /// Largest request body accepted, in bytes (413 above).
    pub max_body_bytes: usize,
    /// Longest time a client may take to deliver its request body (408 after); `None` = no
    /// limit. Bodies are read before the token is checked, so this bounds what an
    /// unauthenticated slow sender can hold.
    pub body_read_timeout: Option<std::time::Duration>,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            public_url: None,
            max_body_bytes: 1 << 20,
            body_read_timeout: Some(std::time::Duration::from_secs(30)),
        }
    }
}

/// An API failure, rendered as Sentry does: a status and `{"detail": …}`.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No token, or an unknown one.
    #[error("{0}")]
    Unauthorized(&'static str),
    /// The token lacks a scope the endpoint needs.
    #[error("You do not have permission to perform this action (missing scope {0}).")]
    Forbidden(String),
    /// Nothing there (or not visible to this token).
    #[error("{0}")]
    NotFound(String),
    /// The request is malformed.
    #[error("{0}")]
    BadRequest(String),
    /// The path exists but not with this method.
    #[error("Method \"{0}\" not allowed.")]
    MethodNotAllowed(Method),
    /// The request conflicts with existing state (duplicate slug, …).
    #[error("{0}")]
    Conflict(String),
    /// The body is over [`ApiConfig::max_body_bytes`].
    #[error("request body larger than {0} bytes")]
    PayloadTooLarge(usize),
    /// A dependency is down for now (Kafka did not take a metadata write): retry later.
    #[error("{0}")]
    Unavailable(String),
    /// Storage failed underneath.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    /// The HTTP status of this error.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The generic 404 for a path osprey does not serve.
    pub fn no_route() -> ApiError {
        ApiError::NotFound("The requested resource does not exist".into())
    }
}

impl From<StorageError> for ApiError {
    fn from(e: StorageError) -> Self {
        match e {
            StorageError::NotFound(what) => ApiError::NotFound(format!("{what} not found")),
            StorageError::Conflict(what) => ApiError::Conflict(what),
            StorageError::Invalid(what) => ApiError::BadRequest(what),
            StorageError::ReadOnly => {
                ApiError::BadRequest("this server's data directory is read-only".into())
            }
            StorageError::Backpressure { retry_after_secs } => ApiError::Unavailable(format!(
                "the shared metadata log is not reachable; retry in {retry_after_secs} s"
            )),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl From<serde_json::Error> for ApiError {
    fn from(e: serde_json::Error) -> Self {
        ApiError::BadRequest(format!("invalid JSON body: {e}"))
    }
}

/// Handler result.
pub type ApiResult<T = ApiResponse> = Result<T, ApiError>;

/// A decoded API request: what handlers see, constructible without HTTP.
#[derive(Debug, Clone)]
pub struct ApiRequest {
    /// HTTP method.
    pub method: Method,
    /// The path, still percent-encoded (`/api/0/organizations/default/`).
    pub path: String,
    /// Decoded query parameters in order; repeated keys stay repeated.
    pub query: Vec<(String, String)>,
    /// Request headers (authorization, host).
    pub headers: HeaderMap,
    /// The body.
    pub body: Bytes,
    /// Base URL for links, without a trailing slash.
    pub base_url: String,
}

impl ApiRequest {
    /// A request with no headers or body; `path_and_query` like `/api/0/organizations/?query=x`.
    pub fn new(method: Method, path_and_query: &str) -> ApiRequest {
        let (path, raw_query) = path_and_query
            .split_once('?')
            .unwrap_or((path_and_query, ""));
        ApiRequest {
            method,
            path: path.to_owned(),
            query: util::parse_query(raw_query),
            headers: HeaderMap::new(),
            body: Bytes::new(),
            base_url: "http://localhost".into(),
        }
    }

    /// Adds `Authorization: Bearer <token>`.
    pub fn bearer(mut self, token: &str) -> ApiRequest {
        if let Ok(v) = http::HeaderValue::from_str(&format!("Bearer {token}")) {
            self.headers.insert(http::header::AUTHORIZATION, v);
        }
        self
    }

    /// Sets a JSON body.
    pub fn json(mut self, body: &Value) -> ApiRequest {
        self.body = Bytes::from(body.to_string());
        self
    }

    /// The first value of query parameter `name`.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of query parameter `name` (`field=a&field=b`).
    pub fn params(&self, name: &str) -> Vec<&str> {
        self.query
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The body as JSON; an empty body is `{}`.
    pub fn json_body(&self) -> ApiResult<Value> {
        if self.body.iter().all(u8::is_ascii_whitespace) {
            return Ok(json!({}));
        }
        let v: Value = serde_json::from_slice(&self.body)?;
        if !v.is_object() {
            return Err(ApiError::BadRequest(
                "the body must be a JSON object".into(),
            ));
        }
        Ok(v)
    }

    /// This request's URL with `cursor` replaced, for `Link` headers.
    pub fn url_with_cursor(&self, cursor: &str) -> String {
        let mut query: Vec<String> = self
            .query
            .iter()
            .filter(|(k, _)| k != "cursor")
            .map(|(k, v)| format!("{}={}", util::percent_encode(k), util::percent_encode(v)))
            .collect();
        query.push(format!("cursor={}", util::percent_encode(cursor)));
        format!("{}{}?{}", self.base_url, self.path, query.join("&"))
    }

    /// Adds `Authorization: DSN <dsn>`.
    pub fn dsn(mut self, dsn: &str) -> ApiRequest {
        if let Ok(v) = http::HeaderValue::from_str(&format!("DSN {dsn}")) {
            self.headers.insert(http::header::AUTHORIZATION, v);
        }
        self
    }

    /// What `Authorization` carries: a bearer token (`Bearer …` or `Sentry-Bearer …`) or a
    /// DSN (`DSN …`, which Sentry accepts for submitting user feedback only).
    fn credentials(&self) -> Credentials<'_> {
        let Some(value) = self
            .headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
        else {
            return Credentials::None;
        };
        let Some((scheme, secret)) = value.trim().split_once(' ') else {
            return Credentials::None;
        };
        let secret = secret.trim();
        if secret.is_empty() {
            Credentials::None
        } else if scheme.eq_ignore_ascii_case("bearer")
            || scheme.eq_ignore_ascii_case("sentry-bearer")
        {
            Credentials::Token(secret)
        } else if scheme.eq_ignore_ascii_case("dsn") {
            Credentials::Dsn(secret)
        } else {
            Credentials::None
        }
    }
}

/// The credentials of a request.
enum Credentials<'a> {
    /// None, or a scheme osprey does not know.
    None,
    /// An API token's secret.
    Token(&'a str),
    /// A DSN, as given.
    Dsn(&'a str),
}

/// The DSN key a `DSN …` credential names, as Sentry's `ProjectKey.from_dsn` finds it: the
/// public key (the URL's user) of a key of the project the DSN's last path segment names,
/// and the key enabled. Anything else is Sentry's `401 Invalid dsn`.
fn dsn_key(store: &Store, dsn: &str) -> ApiResult<Arc<storage::ProjectKey>> {
    let invalid = || ApiError::Unauthorized("Invalid dsn");
    let (_, rest) = dsn.split_once("://").ok_or_else(invalid)?;
    let (userinfo, location) = rest.split_once('@').ok_or_else(invalid)?;
    let public_key = userinfo.split(':').next().unwrap_or_default();
    let project_id: u64 = location
        .trim_end_matches('/')
        .rsplit_once('/')
        .and_then(|(_, id)| id.parse().ok())
        .ok_or_else(invalid)?;
    store
        .meta()
        .key(public_key)
        .filter(|key| key.project_id == project_id && key.enabled)
        .ok_or_else(invalid)
}

/// A handler's answer: status, JSON body, and an optional `Link` header.
#[derive(Debug, Clone)]
pub struct ApiResponse {
    /// HTTP status.
    pub status: StatusCode,
    /// JSON body (`Value::Null` with 204 sends no body).
    pub body: Value,
    /// Sentry pagination header.
    pub link: Option<String>,
    /// A file sent as is instead of the JSON body (attachment downloads).
    pub file: Option<FileBody>,
}

/// Bytes answered as a download rather than JSON.
#[derive(Debug, Clone)]
pub struct FileBody {
    /// `Content-Type`.
    pub content_type: String,
    /// File name for `Content-Disposition`.
    pub name: String,
    /// The content.
    pub bytes: Bytes,
}

impl ApiResponse {
    /// 200 with a file as the body.
    pub fn file(file: FileBody) -> ApiResponse {
        ApiResponse {
            status: StatusCode::OK,
            body: Value::Null,
            link: None,
            file: Some(file),
        }
    }

    /// 200 with `body`.
    pub fn ok(body: Value) -> ApiResponse {
        ApiResponse {
            status: StatusCode::OK,
            body,
            link: None,
            file: None,
        }
    }

    /// `status` with no body.
    pub fn empty(status: StatusCode) -> ApiResponse {
        ApiResponse {
            status,
            body: Value::Null,
            link: None,
            file: None,
        }
    }

    /// 400 with a message list per invalid field, as Sentry's serializers answer.
    pub fn field_errors(errors: serde_json::Map<String, Value>) -> ApiResponse {
        ApiResponse {
            status: StatusCode::BAD_REQUEST,
            body: Value::Object(errors),
            link: None,
            file: None,
        }
    }

    /// 201 with `body`.
    pub fn created(body: Value) -> ApiResponse {
        ApiResponse {
            status: StatusCode::CREATED,
            body,
            link: None,
            file: None,
        }
    }

    /// 204, no body.
    pub fn no_content() -> ApiResponse {
        ApiResponse {
            status: StatusCode::NO_CONTENT,
            body: Value::Null,
            link: None,
            file: None,
        }
    }

    /// 200 with a list page and its `Link` header.
    pub fn page(items: Vec<Value>, link: String) -> ApiResponse {
        ApiResponse {
            status: StatusCode::OK,
            body: Value::Array(items),
            link: Some(link),
            file: None,
        }
    }

    fn from_error(e: &ApiError) -> ApiResponse {
        ApiResponse {
            status: e.status(),
            body: json!({"detail": e.to_string()}),
            link: None,
            file: None,
        }
    }
}

/// What every handler gets: the stores, the request and the authenticated token.
pub struct Ctx<'a> {
    /// The data.
    pub store: &'a Store,
    /// The query layer.
    pub query: &'a QueryService,
    /// The request.
    pub req: &'a ApiRequest,
    /// The caller's token.
    pub token: &'a ApiToken,
    /// Where feedback submissions go instead of the store ([`ApiService::with_feedback_log`]).
    pub feedback_log: Option<&'a dyn Log>,
}

impl Ctx<'_> {
    /// Fails with 403 unless the token has `scope`.
    pub fn require(&self, scope: &str) -> ApiResult<()> {
        if self.token.has_scope(scope) {
            Ok(())
        } else {
            Err(ApiError::Forbidden(scope.to_owned()))
        }
    }

    /// Fails with 403 unless the token has at least one of `scopes`.
    pub fn require_any(&self, scopes: &[&str]) -> ApiResult<()> {
        if scopes.iter().any(|s| self.token.has_scope(s)) {
            Ok(())
        } else {
            Err(ApiError::Forbidden(scopes.join(" or ")))
        }
    }

    /// The organization `slug_or_id`, if this token may see it (else 404, so that another
    /// organization's existence is not revealed).
    pub fn org(&self, slug_or_id: &str) -> ApiResult<Arc<Organization>> {
        self.store
            .meta()
            .organization_by_slug(slug_or_id)
            .filter(|o| o.id == self.token.org_id)
            .ok_or_else(|| ApiError::NotFound("The requested resource does not exist".into()))
    }

    /// A project of a visible organization.
    pub fn project(
        &self,
        org: &str,
        project: &str,
    ) -> ApiResult<(Arc<Organization>, Arc<Project>)> {
        let org = self.org(org)?;
        let project = self
            .store
            .meta()
            .project_by_slug(org.id, project)
            .ok_or_else(|| ApiError::NotFound("The requested resource does not exist".into()))?;
        Ok((org, project))
    }

    /// The base URL, for links.
    pub fn base_url(&self) -> &str {
        &self.req.base_url
    }
}

/// Serves `/api/0/`. Cheap to clone.
#[derive(Clone, Debug)]
pub struct ApiService {
    inner: Arc<Inner>,
}

struct Inner {
    query: QueryService,
    config: ApiConfig,
    feedback_log: Option<Arc<dyn Log>>,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inner")
            .field("query", &self.query)
            .field("config", &self.config)
            .field("feedback_log", &self.feedback_log.is_some())
            .finish()
    }
}

impl ApiService {
    /// The API over `query`'s store.
    pub fn new(query: QueryService, config: ApiConfig) -> ApiService {
        ApiService::with_feedback_log(query, config, None)
    }

    /// The API over `query`'s store, with feedback submissions (`POST …/user-feedback/`)
    /// appended to `feedback_log` as `user_report` items instead of written to the store.
    /// Kafka mode passes its producer: the report then reaches the processor node that owns
    /// the project's partition (where the event and its issue are), exactly once, as an SDK's
    /// report would; the store of the node that took the request may not be that node's.
    pub fn with_feedback_log(
        query: QueryService,
        config: ApiConfig,
        feedback_log: Option<Arc<dyn Log>>,
    ) -> ApiService {
        ApiService {
            inner: Arc::new(Inner {
                query,
                config,
                feedback_log,
            }),
        }
    }

    /// Answers one HTTP request for a path under `/api/0/`.
    pub async fn handle(
        &self,
        req: http::Request<hyper::body::Incoming>,
    ) -> http::Response<Full<Bytes>> {
        let (parts, body) = req.into_parts();
        let limit = self.inner.config.max_body_bytes;
        let declared_too_big = parts
            .headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok())
            .is_some_and(|n| n > limit);
        if declared_too_big {
            return render(ApiResponse::from_error(&ApiError::PayloadTooLarge(limit)));
        }
        let collect = Limited::new(body, limit).collect();
        let collected = match self.inner.config.body_read_timeout {
            Some(limit) => match tokio::time::timeout(limit, collect).await {
                Ok(result) => result,
                Err(_) => {
                    let mut resp = render(ApiResponse::from_error(&ApiError::BadRequest(
                        "request body not received in time".into(),
                    )));
                    *resp.status_mut() = http::StatusCode::REQUEST_TIMEOUT;
                    return resp;
                }
            },
            None => collect.await,
        };
        let body = match collected {
            Ok(collected) => collected.to_bytes(),
            Err(e)
                if e.downcast_ref::<http_body_util::LengthLimitError>()
                    .is_some() =>
            {
                return render(ApiResponse::from_error(&ApiError::PayloadTooLarge(limit)));
            }
            Err(e) => {
                return render(ApiResponse::from_error(&ApiError::BadRequest(format!(
                    "could not read the request body: {e}"
                ))));
            }
        };
        let base_url = match &self.inner.config.public_url {
            Some(url) => url.trim_end_matches('/').to_owned(),
            None => {
                let host = parts
                    .headers
                    .get(http::header::HOST)
                    .and_then(|h| h.to_str().ok())
                    .or_else(|| parts.uri.authority().map(|a| a.as_str()))
                    .unwrap_or("localhost");
                format!("http://{host}")
            }
        };
        let api_req = ApiRequest {
            method: parts.method,
            path: parts.uri.path().to_owned(),
            query: util::parse_query(parts.uri.query().unwrap_or("")),
            headers: parts.headers,
            body,
            base_url,
        };
        let service = self.clone();
        // Handlers read RocksDB synchronously: keep them off the async workers.
        let response = tokio::task::spawn_blocking(move || service.call(&api_req))
            .await
            .unwrap_or_else(|e| {
                ApiResponse::from_error(&ApiError::Internal(format!("handler failed: {e}")))
            });
        render(response)
    }

    /// Authenticates and routes one decoded request.
    pub fn call(&self, req: &ApiRequest) -> ApiResponse {
        match self.dispatch(req) {
            Ok(resp) => resp,
            Err(e) => {
                if matches!(e, ApiError::Internal(_)) {
                    tracing::warn!(path = %req.path, error = %e, "API request failed");
                }
                ApiResponse::from_error(&e)
            }
        }
    }

    fn dispatch(&self, req: &ApiRequest) -> ApiResult {
        let rest = req
            .path
            .strip_prefix("/api/0")
            .ok_or_else(ApiError::no_route)?;
        let segments: Vec<String> = rest
            .split('/')
            .filter(|s| !s.is_empty())
            .map(|s| util::percent_decode(s, false))
            .collect();
        let store = self.inner.query.store();
        // A follower (secondary) store sees tokens created after it opened only after a
        // catch-up; the primary's cache is always current.
        let segs: Vec<&str> = segments.iter().map(String::as_str).collect();
        let token = match req.credentials() {
            Credentials::None => {
                return Err(ApiError::Unauthorized(
                    "Authentication credentials were not provided.",
                ))
            }
            Credentials::Token(secret) => store
                .meta()
                .token(secret)
                .ok_or(ApiError::Unauthorized("Invalid token"))?,
            Credentials::Dsn(dsn) => {
                let key = dsn_key(store, dsn)?;
                let log = self.inner.feedback_log.as_deref();
                return feedback::route_dsn(store, log, req, &key, &segs);
            }
        };
        let ctx = Ctx {
            store,
            query: &self.inner.query,
            req,
            token: &token,
            feedback_log: self.inner.feedback_log.as_deref(),
        };
        route(&ctx, &req.method, &segs)
    }
}

/// Whether a request only reads or writes shared metadata (projects, DSN keys, tokens,
/// alert rules). With metadata shared through Kafka every node holds all of it, so a query
/// node answers these itself: fanned out, one project creation would run on every peer.
/// Alert history and everything built from events stay fanned out.
pub fn is_shared_metadata_request(method: &Method, path: &str) -> bool {
    let Some(rest) = path.strip_prefix("/api/0/") else {
        return false;
    };
    let segs: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
    let write = method != Method::GET && method != Method::HEAD;
    match segs.as_slice() {
        ["projects", _, _, "keys", ..] | ["api-tokens", ..] => true,
        ["projects", _, _, "rules", ..] | ["organizations", _, "alert-rules", ..] => true,
        ["projects", _, _, "filters", ..] | ["projects", _, _, "transaction-threshold", ..] => true,
        ["organizations", _, "project-transaction-threshold-override"] => true,
        ["teams", _, _, "projects"] | ["projects", _, _] => write,
        _ => false,
    }
}

/// Whether a request submits legacy user feedback (`POST …/user-feedback/`). In Kafka mode
/// the node that takes it appends it to the log ([`ApiService::with_feedback_log`]); a query
/// node must not fan it out, or every processor node would store (and count) it once.
pub fn is_feedback_submission(method: &Method, path: &str) -> bool {
    let Some(rest) = path.strip_prefix("/api/0/") else {
        return false;
    };
    let segs: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
    method == Method::POST
        && matches!(
            segs.as_slice(),
            ["projects", _, _, "user-feedback" | "user-reports"]
        )
}

/// Path segments (after `/api/0/`) → handler.
fn route(ctx: &Ctx<'_>, method: &Method, segs: &[&str]) -> ApiResult {
    let get_only = |f: &dyn Fn() -> ApiResult| {
        if method == Method::GET {
            f()
        } else {
            Err(not_allowed(method))
        }
    };
    match segs {
        ["organizations", org, "events"] => return get_only(&|| discover::events(ctx, org)),
        ["organizations", org, "events-stats"] => {
            return get_only(&|| discover::events_stats(ctx, org))
        }
        ["organizations", org, "events", "validate"] => {
            return get_only(&|| discover::validate(ctx, org))
        }
        ["organizations", org, "trace-meta", id] => {
            return get_only(&|| traces::trace_meta(ctx, org, id))
        }
        ["organizations", org, "trace", id] => return get_only(&|| traces::trace(ctx, org, id)),
        _ => {}
    }
    if let Some(resp) = orgs::route(ctx, method, segs)? {
        return Ok(resp);
    }
    if let Some(resp) = project_settings::route(ctx, method, segs)? {
        return Ok(resp);
    }
    if let Some(resp) = alerts::route(ctx, method, segs)? {
        return Ok(resp);
    }
    if let Some(resp) = stats::route(ctx, method, segs)? {
        return Ok(resp);
    }
    if let Some(resp) = sessions::route(ctx, method, segs)? {
        return Ok(resp);
    }
    if let Some(resp) = performance::route(ctx, method, segs)? {
        return Ok(resp);
    }
    if let Some(resp) = releases::route(ctx, method, segs)? {
        return Ok(resp);
    }
    // Before the issues: `issues/{id}/user-reports/` is an issue sub-resource path.
    if let Some(resp) = feedback::route(ctx, method, segs)? {
        return Ok(resp);
    }
    if let Some(resp) = issues::route(ctx, method, segs)? {
        return Ok(resp);
    }
    Err(ApiError::no_route())
}

/// Turns a handler's answer into HTTP.
fn render(resp: ApiResponse) -> http::Response<Full<Bytes>> {
    let mut builder = http::Response::builder().status(resp.status);
    if let Some(link) = &resp.link {
        builder = builder.header(http::header::LINK, link);
    }
    if let Some(file) = resp.file {
        // The name is the SDK's: quote it and drop what would break the header.
        let name: String = file
            .name
            .chars()
            .filter(|c| !c.is_control() && *c != '"' && *c != '\\')
            .collect();
        let response = builder
            .header(http::header::CONTENT_TYPE, file.content_type)
            .header(
                http::header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}\""),
            )
            .body(Full::new(file.bytes));
        return response.unwrap_or_else(|_| {
            let mut r = http::Response::new(Full::new(Bytes::from_static(
                b"{\"detail\":\"attachment metadata cannot be sent as headers\"}",
            )));
            *r.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
            r
        });
    }
    // No body: 204, and answers that say nothing but their status (a DSN's feedback).
    let body = if resp.status == StatusCode::NO_CONTENT || resp.body.is_null() {
        Bytes::new()
    } else {
        builder = builder.header(http::header::CONTENT_TYPE, "application/json");
        Bytes::from(resp.body.to_string())
    };
    builder.body(Full::new(body)).unwrap_or_else(|_| {
        // Only a Link header with bytes HTTP forbids can fail; send the body without it.
        let mut r = http::Response::new(Full::new(Bytes::from_static(
            b"{\"detail\":\"bad link header\"}",
        )));
        *r.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
        r
    })
}

/// 405 when a known path is called with another method.
pub(crate) fn not_allowed(method: &Method) -> ApiError {
    ApiError::MethodNotAllowed(method.clone())
}

/// Reads an optional string field of a JSON body, failing if it has another type.
pub(crate) fn body_str<'a>(body: &'a Value, key: &str) -> ApiResult<Option<&'a str>> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(ApiError::BadRequest(format!("{key} must be a string"))),
    }
}

#[cfg(test)]
mod events_tests;
#[cfg(test)]
pub(crate) mod testutil;

#[cfg(test)]
mod routing_tests {
    use super::*;

    #[test]
    fn metadata_requests_are_told_apart_from_event_data() {
        let local = |m: Method, p: &str| is_shared_metadata_request(&m, p);
        assert!(local(
            Method::POST,
            "/api/0/teams/default/default/projects/"
        ));
        assert!(local(Method::PUT, "/api/0/projects/default/web/"));
        assert!(local(Method::GET, "/api/0/projects/default/web/keys/"));
        assert!(local(
            Method::DELETE,
            "/api/0/projects/default/web/keys/abc/"
        ));
        assert!(local(Method::POST, "/api/0/api-tokens/"));
        assert!(local(Method::GET, "/api/0/projects/default/web/rules/7/"));
        assert!(local(
            Method::PUT,
            "/api/0/projects/default/web/filters/localhost/"
        ));
        assert!(local(Method::GET, "/api/0/projects/default/web/filters/"));
        assert!(local(
            Method::POST,
            "/api/0/projects/default/web/transaction-threshold/configure/"
        ));
        // A feedback submission is taken where it arrives, then goes through the log.
        assert!(is_feedback_submission(
            &Method::POST,
            "/api/0/projects/default/web/user-feedback/"
        ));
        assert!(!is_feedback_submission(
            &Method::GET,
            "/api/0/projects/default/web/user-feedback/"
        ));
        assert!(!is_feedback_submission(
            &Method::POST,
            "/api/0/projects/default/web/"
        ));
        assert!(local(
            Method::POST,
            "/api/0/organizations/default/alert-rules/"
        ));
        // Reads of projects carry event-derived fields; history and issues are per node.
        assert!(!local(Method::GET, "/api/0/projects/default/web/"));
        assert!(!local(
            Method::GET,
            "/api/0/projects/default/web/alert-history/"
        ));
        assert!(!local(Method::GET, "/api/0/organizations/default/issues/"));
        assert!(!local(
            Method::PUT,
            "/api/0/organizations/default/issues/1/"
        ));
        assert!(!local(
            Method::POST,
            "/api/0/organizations/default/releases/"
        ));
        assert!(!local(Method::GET, "/api/1/envelope/"));
    }
}
