//! The load generator behind `osprey loadgen`: realistic Sentry envelopes over keep-alive
//! HTTP/1.1 connections, with a progress line and a latency summary.
//!
//! Events look like what SDKs send: errors with 10–30-frame Python- or JavaScript-like stacks
//! drawn from a few hundred error kinds (each kind has a stable type and stack, so it groups
//! into one issue, while its message varies numbers and ids), and transactions with 5–30 spans,
//! log-normal durations and a few failing statuses; users, tags, releases and environments vary.
//!
//! Building JSON for every request would cost the generator more CPU than the server spends
//! accepting it, so a pool of distinct envelopes is built up front and each request copies one
//! and writes a fresh event id into its header (at a fixed offset), compressing it if asked.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Write as _;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

use crate::auth::{Dsn, DsnError};

/// Which events to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mix {
    /// Only error events.
    Errors,
    /// Only transactions.
    Transactions,
    /// Half and half.
    Mixed,
}

impl FromStr for Mix {
    type Err = LoadgenError;
    fn from_str(s: &str) -> Result<Mix, LoadgenError> {
        match s {
            "errors" => Ok(Mix::Errors),
            "transactions" => Ok(Mix::Transactions),
            "mixed" => Ok(Mix::Mixed),
            other => Err(LoadgenError::Option(format!(
                "unknown mix '{other}' (errors, transactions, mixed)"
            ))),
        }
    }
}

impl fmt::Display for Mix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mix::Errors => "errors",
            Mix::Transactions => "transactions",
            Mix::Mixed => "mixed",
        })
    }
}

/// Body compression.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compress {
    /// Plain body.
    None,
    /// `Content-Encoding: gzip`.
    Gzip,
    /// `Content-Encoding: zstd`.
    Zstd,
}

impl FromStr for Compress {
    type Err = LoadgenError;
    fn from_str(s: &str) -> Result<Compress, LoadgenError> {
        match s {
            "none" => Ok(Compress::None),
            "gzip" => Ok(Compress::Gzip),
            "zstd" => Ok(Compress::Zstd),
            other => Err(LoadgenError::Option(format!(
                "unknown compression '{other}' (gzip, zstd, none)"
            ))),
        }
    }
}

impl fmt::Display for Compress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Compress::None => "none",
            Compress::Gzip => "gzip",
            Compress::Zstd => "zstd",
        })
    }
}

/// What to run.
#[derive(Debug, Clone)]
pub struct LoadgenOptions {
    /// Where to send (`http://<key>@host:port/<project>`).
    pub dsn: String,
    /// Envelopes (one event each) to send at most.
    pub events: u64,
    /// Concurrent keep-alive connections.
    pub concurrency: usize,
    /// Errors, transactions or both.
    pub mix: Mix,
    /// Stop after this long even if `events` were not all sent.
    pub duration: Option<Duration>,
    /// Body compression.
    pub compress: Compress,
    /// Print a progress line on stderr every second.
    pub progress: bool,
    /// Seed for the generator (the same seed gives the same pool).
    pub seed: u64,
}

impl Default for LoadgenOptions {
    fn default() -> Self {
        LoadgenOptions {
            dsn: String::new(),
            events: 10_000,
            concurrency: 16,
            mix: Mix::Errors,
            duration: None,
            compress: Compress::None,
            progress: true,
            seed: 0x05b2e7,
        }
    }
}

/// What happened.
#[derive(Debug, Clone)]
pub struct LoadgenSummary {
    /// Options the run used (mix, concurrency, compression).
    pub mix: Mix,
    /// Connections used.
    pub concurrency: usize,
    /// Compression used.
    pub compress: Compress,
    /// Requests that got an HTTP answer.
    pub sent: u64,
    /// Requests answered 200.
    pub accepted: u64,
    /// Requests that failed below HTTP (connect, reset).
    pub transport_errors: u64,
    /// Answers by status code.
    pub status_counts: BTreeMap<u16, u64>,
    /// Wall time of the run.
    pub elapsed: Duration,
    /// Median request latency.
    pub p50: Duration,
    /// 99th percentile request latency.
    pub p99: Duration,
    /// Slowest request.
    pub max: Duration,
    /// Mean request body size on the wire.
    pub mean_body_bytes: u64,
}

impl LoadgenSummary {
    /// Accepted events per second of wall time.
    pub fn accepted_per_sec(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.accepted as f64 / secs
        } else {
            0.0
        }
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

impl fmt::Display for LoadgenSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "sent {} envelopes in {:.2} s (mix {}, concurrency {}, compress {}, mean body {} B)",
            self.sent,
            self.elapsed.as_secs_f64(),
            self.mix,
            self.concurrency,
            self.compress,
            self.mean_body_bytes
        )?;
        writeln!(
            f,
            "accepted: {} ({:.0} events/s)",
            self.accepted,
            self.accepted_per_sec()
        )?;
        let statuses: Vec<String> = self
            .status_counts
            .iter()
            .map(|(s, n)| format!("{s}={n}"))
            .collect();
        writeln!(
            f,
            "status: {}{}",
            if statuses.is_empty() {
                "-".to_owned()
            } else {
                statuses.join(" ")
            },
            if self.transport_errors > 0 {
                format!(" transport_errors={}", self.transport_errors)
            } else {
                String::new()
            }
        )?;
        write!(
            f,
            "latency: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            ms(self.p50),
            ms(self.p99),
            ms(self.max)
        )
    }
}

/// Why a run could not start or went wrong as a whole.
#[derive(Debug, thiserror::Error)]
pub enum LoadgenError {
    /// The DSN does not parse.
    #[error("bad DSN: {0}")]
    Dsn(#[from] DsnError),
    /// An option is out of range.
    #[error("{0}")]
    Option(String),
    /// No connection could be opened at all.
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        /// host:port.
        addr: String,
        /// The I/O error.
        source: std::io::Error,
    },
}

// ---------------------------------------------------------------------------------------------
// Event generation
// ---------------------------------------------------------------------------------------------

/// Number of distinct error kinds (issues) the generator draws from.
pub const ERROR_KINDS: usize = 300;

const RELEASES: &[&str] = &[
    "shop@4.2.0",
    "shop@4.2.1",
    "shop@4.3.0",
    "shop@4.3.1",
    "shop@5.0.0-rc1",
];
const ENVIRONMENTS: &[&str] = &[
    "production",
    "production",
    "production",
    "staging",
    "development",
];
const REGIONS: &[&str] = &["eu-west-1", "us-east-1", "us-west-2", "ap-south-1"];
const BROWSERS: &[&str] = &["Chrome 131", "Firefox 133", "Safari 18.1", "Edge 131"];

const PY_TYPES: &[&str] = &[
    "ValueError",
    "KeyError",
    "TypeError",
    "AttributeError",
    "IndexError",
    "ZeroDivisionError",
    "RuntimeError",
    "ConnectionError",
    "TimeoutError",
    "PermissionError",
    "FileNotFoundError",
    "IntegrityError",
    "OperationalError",
    "ValidationError",
    "JSONDecodeError",
];
const JS_TYPES: &[&str] = &[
    "TypeError",
    "ReferenceError",
    "RangeError",
    "SyntaxError",
    "Error",
    "AbortError",
    "NetworkError",
    "ChunkLoadError",
    "FetchError",
    "ValidationError",
];
const PY_MESSAGES: &[&str] = &[
    "invalid literal for int() with base 10: '{n}'",
    "'order_{n}'",
    "User {id} not found",
    "division by zero in invoice {n}",
    "list index out of range (index {n})",
    "Connection refused: db-{n}.internal:5432",
    "Read timed out after {ms} ms (request {uuid})",
    "duplicate key value violates unique constraint \"orders_pkey\" DETAIL: Key (id)=({n}) already exists.",
    "'NoneType' object has no attribute 'customer_{n}'",
    "Expecting value: line 1 column {n} (char {n})",
    "permission denied for tenant {id}",
    "Payment {uuid} declined with code {n}",
];
const JS_MESSAGES: &[&str] = &[
    "Cannot read properties of undefined (reading 'item{n}')",
    "x{n} is not defined",
    "Invalid array length {n}",
    "Unexpected token < in JSON at position {n}",
    "Request failed with status code {status}",
    "Loading chunk {n} failed.",
    "The user aborted a request ({uuid}).",
    "Failed to fetch /api/cart/{id}",
    "Maximum call stack size exceeded at depth {n}",
    "Cart {uuid} has no items",
];
const PY_MODULES: &[&str] = &[
    "shop.views.checkout",
    "shop.views.cart",
    "shop.models.order",
    "shop.services.payment",
    "shop.services.inventory",
    "shop.tasks.email",
    "shop.api.serializers",
    "shop.utils.money",
    "django.core.handlers.base",
    "django.db.models.query",
    "celery.app.trace",
    "requests.adapters",
    "sqlalchemy.engine.base",
];
const PY_FUNCTIONS: &[&str] = &[
    "get_response",
    "dispatch",
    "post",
    "get",
    "process_payment",
    "charge",
    "reserve_stock",
    "serialize",
    "to_internal_value",
    "execute",
    "send",
    "apply_discount",
    "calculate_total",
    "_fetch_all",
    "run",
    "__call__",
    "validate",
    "save",
    "load_user",
    "handle",
];
const JS_FILES: &[&str] = &[
    "app:///src/components/Cart.tsx",
    "app:///src/components/Checkout.tsx",
    "app:///src/pages/ProductPage.tsx",
    "app:///src/hooks/useCart.ts",
    "app:///src/api/client.ts",
    "app:///src/store/orders.ts",
    "app:///node_modules/react-dom/cjs/react-dom.production.min.js",
    "app:///node_modules/react/cjs/react.production.min.js",
    "app:///node_modules/axios/lib/core/Axios.js",
    "app:///src/utils/format.ts",
];
const JS_FUNCTIONS: &[&str] = &[
    "renderWithHooks",
    "commitRoot",
    "onClick",
    "handleSubmit",
    "fetchCart",
    "request",
    "dispatchEvent",
    "useEffect",
    "formatPrice",
    "addToCart",
    "Promise.then",
    "async loadProduct",
    "updateQuantity",
    "validateForm",
];
const ROUTES: &[&str] = &[
    "/api/products/{id}",
    "/api/products",
    "/api/cart",
    "/api/cart/items",
    "/api/checkout",
    "/api/orders/{id}",
    "/api/orders",
    "/api/users/me",
    "/api/search",
    "/api/recommendations",
    "/api/payments/{id}/capture",
    "/api/inventory/{sku}",
    "/health",
    "/login",
    "/products/{slug}",
    "/checkout/confirm",
];
const SPAN_OPS: &[(&str, &str)] = &[
    ("db.sql.query", "SELECT * FROM products WHERE id = %s"),
    (
        "db.sql.query",
        "SELECT * FROM orders WHERE user_id = %s ORDER BY created_at DESC LIMIT 20",
    ),
    (
        "db.sql.query",
        "UPDATE inventory SET reserved = reserved + %s WHERE sku = %s",
    ),
    (
        "db.sql.query",
        "INSERT INTO order_items (order_id, sku, qty) VALUES (%s, %s, %s)",
    ),
    ("cache.get", "product:{id}"),
    ("cache.set", "cart:{id}"),
    (
        "http.client",
        "GET https://payments.example.com/v1/charges/{id}",
    ),
    ("http.client", "POST https://search.internal/query"),
    ("template.render", "products/detail.html"),
    ("serialize", "OrderSerializer"),
    ("function", "shop.services.pricing.calculate"),
    ("queue.publish", "emails.send_confirmation"),
];
const FAILING_STATUSES: &[&str] = &[
    "internal_error",
    "deadline_exceeded",
    "not_found",
    "unavailable",
    "permission_denied",
];

/// A tiny deterministic mixer so that each error kind always gets the same type, module and
/// stack (the grouping-relevant parts) regardless of the run's random stream.
fn mix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

fn pick<T: Copy>(list: &[T], seed: u64) -> T {
    list[(seed % list.len() as u64) as usize]
}

fn hex_id<R: Rng + ?Sized>(rng: &mut R, chars: usize) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    (0..chars)
        .map(|_| DIGITS[rng.random_range(0..16)] as char)
        .collect()
}

fn fill_template<R: Rng + ?Sized>(rng: &mut R, template: &str) -> String {
    let mut out = template.to_owned();
    // Each placeholder gets fresh values per event: that is what message parameterization in
    // grouping has to see through.
    while let Some(i) = out.find("{n}") {
        out.replace_range(i..i + 3, &rng.random_range(1..100_000u32).to_string());
    }
    while let Some(i) = out.find("{id}") {
        out.replace_range(i..i + 4, &rng.random_range(1..5_000_000u32).to_string());
    }
    while let Some(i) = out.find("{ms}") {
        out.replace_range(i..i + 4, &rng.random_range(1000..60_000u32).to_string());
    }
    while let Some(i) = out.find("{status}") {
        out.replace_range(
            i..i + 8,
            pick(&["500", "502", "503", "504", "404"], rng.random()),
        );
    }
    while let Some(i) = out.find("{uuid}") {
        out.replace_range(i..i + 6, &uuid::Uuid::from_u128(rng.random()).to_string());
    }
    while let Some(i) = out.find("{sku}") {
        out.replace_range(i..i + 5, &format!("SKU-{}", rng.random_range(100..999u32)));
    }
    while let Some(i) = out.find("{slug}") {
        out.replace_range(
            i..i + 6,
            pick(&["red-shoes", "blue-hat", "green-socks"], rng.random()),
        );
    }
    out
}

fn now_secs_f64() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

fn common_fields<R: Rng + ?Sized>(
    rng: &mut R,
    event: &mut serde_json::Map<String, Value>,
    platform: &str,
) {
    let user_id = rng.random_range(1..20_000u32);
    event.insert("platform".into(), json!(platform));
    event.insert("timestamp".into(), json!(now_secs_f64()));
    event.insert("release".into(), json!(pick(RELEASES, rng.random())));
    event.insert(
        "environment".into(),
        json!(pick(ENVIRONMENTS, rng.random())),
    );
    event.insert(
        "user".into(),
        json!({"id": format!("user-{user_id}"), "email": format!("user{user_id}@example.com"), "ip_address": format!("10.{}.{}.{}", rng.random_range(0..255u8), rng.random_range(0..255u8), rng.random_range(1..255u8))}),
    );
    event.insert(
        "tags".into(),
        json!({"region": pick(REGIONS, rng.random()), "browser": pick(BROWSERS, rng.random()), "customer_tier": pick(&["free", "pro", "enterprise"], rng.random())}),
    );
    event.insert(
        "server_name".into(),
        json!(format!("web-{}", rng.random_range(1..9u8))),
    );
}

/// An error event's JSON: kind `kind` (stable type and stack) or a random one.
pub fn error_event<R: Rng + ?Sized>(rng: &mut R, kind: Option<usize>) -> Vec<u8> {
    let kind = kind.unwrap_or_else(|| rng.random_range(0..ERROR_KINDS)) as u64;
    let seed = mix64(kind);
    let python = kind.is_multiple_of(2);
    let frames_n = 10 + (mix64(seed) % 21) as usize;
    let mut frames = Vec::with_capacity(frames_n);
    for f in 0..frames_n as u64 {
        let s = mix64(seed ^ (f + 1));
        let frame = if python {
            let module = pick(PY_MODULES, s);
            let in_app = module.starts_with("shop.");
            json!({
                "filename": format!("{}.py", module.replace('.', "/")),
                "abs_path": format!("/srv/app/{}.py", module.replace('.', "/")),
                "module": module,
                "function": pick(PY_FUNCTIONS, s >> 8),
                "lineno": 10 + (s >> 16) % 900,
                "in_app": in_app,
                "context_line": "    result = handler(request, *args, **kwargs)",
            })
        } else {
            let file = pick(JS_FILES, s);
            json!({
                "filename": file,
                "abs_path": file,
                "function": pick(JS_FUNCTIONS, s >> 8),
                "lineno": 1 + (s >> 16) % 400,
                "colno": 1 + (s >> 24) % 120,
                "in_app": !file.contains("node_modules"),
            })
        };
        frames.push(frame);
    }
    let (ty, template, platform, sdk) = if python {
        (
            pick(PY_TYPES, seed >> 4),
            pick(PY_MESSAGES, seed >> 12),
            "python",
            json!({"name": "sentry.python", "version": "2.19.2"}),
        )
    } else {
        (
            pick(JS_TYPES, seed >> 4),
            pick(JS_MESSAGES, seed >> 12),
            "javascript",
            json!({"name": "sentry.javascript.browser", "version": "8.42.0"}),
        )
    };
    let mut event = serde_json::Map::new();
    common_fields(rng, &mut event, platform);
    event.insert(
        "level".into(),
        json!(if seed.is_multiple_of(7) {
            "warning"
        } else {
            "error"
        }),
    );
    event.insert(
        "logger".into(),
        json!(if python { "django.request" } else { "console" }),
    );
    event.insert("sdk".into(), sdk);
    event.insert(
        "exception".into(),
        json!({"values": [{
            "type": ty,
            "value": fill_template(rng, template),
            "module": if python { json!(pick(PY_MODULES, seed >> 20)) } else { Value::Null },
            "mechanism": {"type": if python { "django" } else { "onunhandledrejection" }, "handled": seed.is_multiple_of(3)},
            "stacktrace": {"frames": frames},
        }]}),
    );
    event.insert(
        "contexts".into(),
        if python {
            json!({"runtime": {"name": "CPython", "version": "3.12.7"}, "os": {"name": "Linux"}})
        } else {
            json!({"browser": {"name": "Chrome", "version": "131.0"}, "os": {"name": "Windows", "version": "11"}})
        },
    );
    serde_json::to_vec(&Value::Object(event)).unwrap_or_default()
}

/// A standard normal sample (Box–Muller).
fn normal<R: Rng + ?Sized>(rng: &mut R) -> f64 {
    let u1: f64 = rng.random::<f64>().max(1e-12);
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

/// A transaction's JSON with 5–30 spans and a log-normal duration (median ~120 ms).
pub fn transaction_event<R: Rng + ?Sized>(rng: &mut R) -> Vec<u8> {
    let route_template = pick(ROUTES, rng.random());
    let route = fill_template(rng, route_template);
    let method = pick(
        &["GET", "GET", "GET", "POST", "PUT", "DELETE"],
        rng.random(),
    );
    // Per-route medians differ so percentiles per transaction are distinguishable.
    let route_factor = 0.5 + (mix64(route_template.len() as u64) % 100) as f64 / 50.0;
    let duration = (120.0f64.ln() + 0.7 * normal(rng)).exp() * route_factor / 1000.0;
    let end = now_secs_f64();
    let start = end - duration;
    let failing = rng.random_bool(0.04);
    let status = if failing {
        pick(FAILING_STATUSES, rng.random())
    } else {
        "ok"
    };
    let trace_id = hex_id(rng, 32);
    let root_span = hex_id(rng, 16);
    let n_spans = rng.random_range(5..=30usize);
    let mut spans = Vec::with_capacity(n_spans);
    for _ in 0..n_spans {
        let (op, description) = pick(SPAN_OPS, rng.random());
        let s_start = start + rng.random::<f64>() * duration * 0.8;
        let s_len = (duration * 0.2 * rng.random::<f64>()).min(end - s_start);
        spans.push(json!({
            "trace_id": trace_id,
            "span_id": hex_id(rng, 16),
            "parent_span_id": root_span,
            "op": op,
            "description": fill_template(rng, description),
            "start_timestamp": s_start,
            "timestamp": s_start + s_len,
            "status": if failing && rng.random_bool(0.3) { status } else { "ok" },
        }));
    }
    let name = format!("{method} {route_template}");
    let mut event = serde_json::Map::new();
    common_fields(rng, &mut event, "python");
    event.insert("type".into(), json!("transaction"));
    event.insert("transaction".into(), json!(name));
    event.insert("transaction_info".into(), json!({"source": "route"}));
    event.insert("start_timestamp".into(), json!(start));
    event.insert("timestamp".into(), json!(end));
    event.insert(
        "sdk".into(),
        json!({"name": "sentry.python", "version": "2.19.2"}),
    );
    event.insert(
        "contexts".into(),
        json!({"trace": {"trace_id": trace_id, "span_id": root_span, "op": "http.server", "status": status},
               "runtime": {"name": "CPython", "version": "3.12.7"}}),
    );
    event.insert(
        "request".into(),
        json!({"method": method, "url": format!("https://shop.example.com{route}")}),
    );
    event.insert("spans".into(), Value::Array(spans));
    serde_json::to_vec(&Value::Object(event)).unwrap_or_default()
}

/// Offset of the event id inside an envelope built by [`envelope`]: the header starts with
/// `{"event_id":"`.
pub const EVENT_ID_OFFSET: usize = 13;

/// An envelope with one item: header (event id first, so it can be patched in place), item
/// header with explicit length, payload.
pub fn envelope(event_id: uuid::Uuid, dsn: &str, item_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 200);
    let _ = write!(
        out,
        "{{\"event_id\":\"{}\",\"dsn\":\"{dsn}\",\"sdk\":{{\"name\":\"osprey.loadgen\",\"version\":\"{}\"}}}}\n{{\"type\":\"{item_type}\",\"length\":{}}}\n",
        event_id.simple(),
        env!("CARGO_PKG_VERSION"),
        payload.len()
    );
    out.extend_from_slice(payload);
    out.push(b'\n');
    out
}

/// Distinct prebuilt envelopes; requests cycle through them with fresh event ids.
pub fn envelope_pool(seed: u64, mix: Mix, dsn: &str, size: usize) -> Vec<Vec<u8>> {
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut errors = 0usize;
    (0..size)
        .map(|i| {
            let transaction = match mix {
                Mix::Errors => false,
                Mix::Transactions => true,
                Mix::Mixed => i % 2 == 1,
            };
            let id = uuid::Builder::from_random_bytes(rng.random()).into_uuid();
            if transaction {
                envelope(id, dsn, "transaction", &transaction_event(&mut rng))
            } else {
                // Cover every kind, then repeat them with other messages.
                let kind = errors % ERROR_KINDS;
                errors += 1;
                envelope(id, dsn, "event", &error_event(&mut rng, Some(kind)))
            }
        })
        .collect()
}

/// Writes a fresh 32-hex event id into an envelope from [`envelope`].
pub fn set_event_id(envelope: &mut [u8], id: uuid::Uuid) {
    let mut buf = [0u8; 32];
    let hex = id.simple().encode_lower(&mut buf);
    if envelope.len() >= EVENT_ID_OFFSET + 32 {
        envelope[EVENT_ID_OFFSET..EVENT_ID_OFFSET + 32].copy_from_slice(hex.as_bytes());
    }
}

fn compress_body(body: Vec<u8>, compress: Compress) -> Vec<u8> {
    match compress {
        Compress::None => body,
        Compress::Gzip => {
            let mut enc = flate2::write::GzEncoder::new(
                Vec::with_capacity(body.len() / 4),
                flate2::Compression::fast(),
            );
            // Writing into a Vec cannot fail.
            let _ = enc.write_all(&body);
            enc.finish().unwrap_or_default()
        }
        Compress::Zstd => zstd::encode_all(&body[..], 1).unwrap_or_default(),
    }
}

// ---------------------------------------------------------------------------------------------
// Running
// ---------------------------------------------------------------------------------------------

struct Shared {
    next: AtomicU64,
    sent: AtomicU64,
    accepted: AtomicU64,
    stop: AtomicBool,
}

struct WorkerResult {
    statuses: BTreeMap<u16, u64>,
    transport_errors: u64,
    latency: hdrhistogram::Histogram<u64>,
    body_bytes: u64,
}

/// Requests a connection may fail in a row before the worker gives up.
const MAX_CONSECUTIVE_FAILURES: u32 = 20;

struct Target {
    addr: String,
    host_header: String,
    path: String,
    auth: String,
}

async fn connect(
    addr: &str,
) -> std::io::Result<hyper::client::conn::http1::SendRequest<Full<Bytes>>> {
    let stream = tokio::net::TcpStream::connect(addr).await?;
    let _ = stream.set_nodelay(true);
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(std::io::Error::other)?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

async fn worker(
    target: Arc<Target>,
    pool: Arc<Vec<Vec<u8>>>,
    shared: Arc<Shared>,
    opts: Arc<LoadgenOptions>,
    deadline: Option<Instant>,
    worker_id: u64,
) -> WorkerResult {
    let mut result = WorkerResult {
        statuses: BTreeMap::new(),
        transport_errors: 0,
        latency: hdrhistogram::Histogram::new_with_bounds(1, 60_000_000, 3).unwrap_or_else(|_| {
            hdrhistogram::Histogram::new(3).expect("3 significant figures is valid")
        }),
        body_bytes: 0,
    };
    let mut rng = SmallRng::seed_from_u64(opts.seed ^ mix64(worker_id + 1));
    let mut sender = None;
    let mut failures = 0u32;
    loop {
        if shared.stop.load(Ordering::Relaxed) || deadline.is_some_and(|d| Instant::now() >= d) {
            break;
        }
        let n = shared.next.fetch_add(1, Ordering::Relaxed);
        if n >= opts.events {
            break;
        }
        let mut body = pool[(n as usize) % pool.len()].clone();
        set_event_id(
            &mut body,
            uuid::Builder::from_random_bytes(rng.random()).into_uuid(),
        );
        let body = compress_body(body, opts.compress);
        result.body_bytes += body.len() as u64;

        let mut builder = http::Request::post(&target.path)
            .header(http::header::HOST, &target.host_header)
            .header("x-sentry-auth", &target.auth)
            .header(http::header::CONTENT_TYPE, "application/x-sentry-envelope")
            .header(
                http::header::USER_AGENT,
                concat!("osprey-loadgen/", env!("CARGO_PKG_VERSION")),
            );
        match opts.compress {
            Compress::None => {}
            Compress::Gzip => builder = builder.header(http::header::CONTENT_ENCODING, "gzip"),
            Compress::Zstd => builder = builder.header(http::header::CONTENT_ENCODING, "zstd"),
        }
        let Ok(request) = builder.body(Full::new(Bytes::from(body))) else {
            result.transport_errors += 1;
            continue;
        };

        let start = Instant::now();
        let outcome = async {
            if sender.is_none() {
                sender = Some(connect(&target.addr).await.map_err(|e| e.to_string())?);
            }
            let s = sender.as_mut().ok_or_else(|| "no connection".to_owned())?;
            s.ready().await.map_err(|e| e.to_string())?;
            let response = s.send_request(request).await.map_err(|e| e.to_string())?;
            let status = response.status().as_u16();
            // Drain the body so the connection can be reused.
            response
                .into_body()
                .collect()
                .await
                .map_err(|e| e.to_string())?;
            Ok::<u16, String>(status)
        }
        .await;
        match outcome {
            Ok(status) => {
                failures = 0;
                let micros = start.elapsed().as_micros().clamp(1, 60_000_000) as u64;
                let _ = result.latency.record(micros);
                *result.statuses.entry(status).or_insert(0) += 1;
                shared.sent.fetch_add(1, Ordering::Relaxed);
                if status == 200 {
                    shared.accepted.fetch_add(1, Ordering::Relaxed);
                }
            }
            Err(e) => {
                result.transport_errors += 1;
                failures += 1;
                sender = None;
                tracing::debug!(error = %e, "loadgen request failed");
                if failures >= MAX_CONSECUTIVE_FAILURES {
                    break;
                }
                // Back off a little before reconnecting; bounded by the failure count above.
                tokio::time::sleep(Duration::from_millis(20 * u64::from(failures))).await;
            }
        }
    }
    result
}

/// Runs the load: `events` envelopes (or until `duration`) over `concurrency` connections.
pub async fn run(opts: LoadgenOptions) -> Result<LoadgenSummary, LoadgenError> {
    let dsn: Dsn = opts.dsn.parse()?;
    if opts.concurrency == 0 || opts.concurrency > 10_000 {
        return Err(LoadgenError::Option(
            "concurrency must be between 1 and 10000".into(),
        ));
    }
    if dsn.scheme != "http" {
        return Err(LoadgenError::Option(
            "loadgen speaks plain http only".into(),
        ));
    }
    let port = dsn.port.unwrap_or(80);
    let addr = format!("{}:{port}", dsn.host);
    // Fail fast with a clear message when nothing listens.
    if let Err(source) = tokio::net::TcpStream::connect(&addr).await {
        return Err(LoadgenError::Connect { addr, source });
    }
    let path = format!("{}/api/{}/envelope/", dsn.path, dsn.project_id);
    let target = Arc::new(Target {
        host_header: match dsn.port {
            Some(p) => format!("{}:{p}", dsn.host),
            None => dsn.host.clone(),
        },
        addr,
        path,
        auth: dsn.auth_header(concat!("osprey-loadgen/", env!("CARGO_PKG_VERSION"))),
    });
    let pool_size = (opts.events.min(2048) as usize).max(1);
    let pool = Arc::new(envelope_pool(opts.seed, opts.mix, &opts.dsn, pool_size));
    let shared = Arc::new(Shared {
        next: AtomicU64::new(0),
        sent: AtomicU64::new(0),
        accepted: AtomicU64::new(0),
        stop: AtomicBool::new(false),
    });
    let start = Instant::now();
    let deadline = opts.duration.map(|d| start + d);
    let opts = Arc::new(opts);

    let progress = opts.progress.then(|| {
        let shared = Arc::clone(&shared);
        let total = opts.events;
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.tick().await;
            let mut last = 0;
            loop {
                tick.tick().await;
                let sent = shared.sent.load(Ordering::Relaxed);
                let accepted = shared.accepted.load(Ordering::Relaxed);
                eprint!(
                    "\r{:>6.1}s  sent {sent}/{total}  accepted {accepted}  {} req/s        ",
                    start.elapsed().as_secs_f64(),
                    sent - last
                );
                last = sent;
            }
        })
    });

    let mut handles = Vec::with_capacity(opts.concurrency);
    for w in 0..opts.concurrency {
        handles.push(tokio::spawn(worker(
            Arc::clone(&target),
            Arc::clone(&pool),
            Arc::clone(&shared),
            Arc::clone(&opts),
            deadline,
            w as u64,
        )));
    }
    let mut statuses = BTreeMap::new();
    let mut transport_errors = 0;
    let mut body_bytes = 0;
    let mut latency =
        hdrhistogram::Histogram::<u64>::new(3).expect("3 significant figures is valid");
    for h in handles {
        match h.await {
            Ok(r) => {
                for (s, n) in r.statuses {
                    *statuses.entry(s).or_insert(0) += n;
                }
                transport_errors += r.transport_errors;
                body_bytes += r.body_bytes;
                let _ = latency.add(&r.latency);
            }
            Err(e) => {
                tracing::warn!(error = %e, "loadgen worker panicked");
                shared.stop.store(true, Ordering::Relaxed);
            }
        }
    }
    let elapsed = start.elapsed();
    if let Some(p) = progress {
        p.abort();
        eprintln!();
    }
    let sent = shared.sent.load(Ordering::Relaxed);
    let attempts = sent + transport_errors;
    Ok(LoadgenSummary {
        mix: opts.mix,
        concurrency: opts.concurrency,
        compress: opts.compress,
        sent,
        accepted: shared.accepted.load(Ordering::Relaxed),
        transport_errors,
        status_counts: statuses,
        elapsed,
        p50: Duration::from_micros(latency.value_at_quantile(0.5)),
        p99: Duration::from_micros(latency.value_at_quantile(0.99)),
        max: Duration::from_micros(latency.max()),
        mean_body_bytes: body_bytes.checked_div(attempts.max(1)).unwrap_or(0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::{Envelope, ItemType};

    #[test]
    fn error_events_have_stable_stacks_and_varying_messages() {
        let mut rng = SmallRng::seed_from_u64(1);
        let a: Value = serde_json::from_slice(&error_event(&mut rng, Some(7))).unwrap();
        let b: Value = serde_json::from_slice(&error_event(&mut rng, Some(7))).unwrap();
        let ex_a = &a["exception"]["values"][0];
        let ex_b = &b["exception"]["values"][0];
        assert_eq!(ex_a["type"], ex_b["type"]);
        assert_eq!(ex_a["stacktrace"], ex_b["stacktrace"]);
        let frames = ex_a["stacktrace"]["frames"].as_array().unwrap().len();
        assert!((10..=30).contains(&frames));
        // Messages differ in their numbers/ids (with overwhelming probability for two draws).
        let c: Value = serde_json::from_slice(&error_event(&mut rng, Some(7))).unwrap();
        assert!(
            ex_a["value"] != ex_b["value"] || ex_a["value"] != c["exception"]["values"][0]["value"]
        );
        // Different kinds, different stacks.
        let d: Value = serde_json::from_slice(&error_event(&mut rng, Some(8))).unwrap();
        assert_ne!(
            ex_a["stacktrace"],
            d["exception"]["values"][0]["stacktrace"]
        );
        assert!(a["user"]["id"].is_string());
        assert!(a["release"].is_string());
    }

    #[test]
    fn transactions_have_spans_and_durations() {
        let mut rng = SmallRng::seed_from_u64(2);
        let mut failing = 0;
        for _ in 0..200 {
            let t: Value = serde_json::from_slice(&transaction_event(&mut rng)).unwrap();
            let spans = t["spans"].as_array().unwrap().len();
            assert!((5..=30).contains(&spans));
            let d = t["timestamp"].as_f64().unwrap() - t["start_timestamp"].as_f64().unwrap();
            assert!(d > 0.0 && d < 60.0);
            if t["contexts"]["trace"]["status"] != "ok" {
                failing += 1;
            }
        }
        assert!(failing > 0 && failing < 40, "{failing}");
    }

    #[test]
    fn pool_envelopes_parse_and_ids_patch() {
        let dsn = "http://0123456789abcdef0123456789abcdef@127.0.0.1:9000/1";
        let pool = envelope_pool(3, Mix::Mixed, dsn, 10);
        let mut body = pool[1].clone();
        let id = uuid::Uuid::new_v4();
        set_event_id(&mut body, id);
        let env = Envelope::parse(Bytes::from(body)).unwrap();
        assert_eq!(env.event_id, Some(id));
        assert_eq!(env.items.len(), 1);
        assert_eq!(env.items[0].ty, ItemType::Transaction);
        let env = Envelope::parse(Bytes::from(pool[0].clone())).unwrap();
        assert_eq!(env.items[0].ty, ItemType::Event);
        assert_eq!(env.dsn.as_deref(), Some(dsn));
    }

    #[test]
    fn mixed_pool_covers_both_platforms() {
        let pool = envelope_pool(4, Mix::Mixed, "http://k@h/1", 40);
        let mut platforms = std::collections::HashSet::new();
        for body in &pool {
            let env = Envelope::parse(Bytes::from(body.clone())).unwrap();
            let v: Value = serde_json::from_slice(&env.items[0].payload).unwrap();
            if env.items[0].ty == ItemType::Event {
                platforms.insert(v["platform"].as_str().unwrap().to_owned());
            }
        }
        assert_eq!(platforms.len(), 2, "{platforms:?}");
    }

    #[test]
    fn options_parse() {
        assert_eq!("mixed".parse::<Mix>().unwrap(), Mix::Mixed);
        assert!("lots".parse::<Mix>().is_err());
        assert_eq!("zstd".parse::<Compress>().unwrap(), Compress::Zstd);
        assert!("lz4".parse::<Compress>().is_err());
    }
}
