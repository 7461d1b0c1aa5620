//! Webhook delivery: a bounded queue drained by one thread with a small blocking HTTP/1.1
//! client, so a slow or dead receiver never slows processing.
//!
//! The processor only ever calls [`WebhookQueue::push`], which never blocks on the network:
//! when the queue is full the oldest delivery is dropped and counted. The delivery thread
//! POSTs each body with a connect timeout and a total deadline per attempt, and retries
//! failures (connection errors, timeouts, non-2xx answers) with exponential backoff up to a
//! fixed number of attempts. `https://` targets (Slack incoming webhooks, most chat and
//! incident tools) go over TLS with rustls, verified against the Mozilla root store
//! (`webpki-roots`) plus, for self-hosted receivers with a private CA, the certificates of
//! [`WebhookConfig::extra_roots_pem`].

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use storage::alerts::Action;

use crate::error::ProcessorError;

/// Delivery tuning.
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    /// Most queued deliveries; beyond it the oldest is dropped.
    pub capacity: usize,
    /// TCP connect timeout.
    pub connect_timeout: Duration,
    /// Deadline of one attempt (connect + send + status line).
    pub total_timeout: Duration,
    /// Attempts per delivery.
    pub attempts: u32,
    /// Pause before the second attempt; doubled before each later one.
    pub backoff: Duration,
    /// PEM certificates trusted for `https://` receivers besides the public roots.
    pub extra_roots_pem: Option<Vec<u8>>,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        WebhookConfig {
            capacity: 1000,
            connect_timeout: Duration::from_secs(2),
            total_timeout: Duration::from_secs(5),
            attempts: 3,
            backoff: Duration::from_millis(500),
            extra_roots_pem: None,
        }
    }
}

/// One POST to make.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// Target URL.
    pub url: String,
    /// JSON body.
    pub body: Vec<u8>,
}

impl Delivery {
    /// What `action` sends for a fired alert with `payload`: the whole payload to a webhook,
    /// only its Slack-readable `text` to a Slack incoming webhook (Slack rejects other
    /// fields); `None` for an action without a URL.
    pub fn for_action(action: &Action, payload: &serde_json::Value) -> Option<Delivery> {
        let url = action.target_url()?;
        let body = match action {
            Action::Webhook { .. } => serde_json::to_vec(payload),
            Action::Slack { .. } => {
                serde_json::to_vec(&serde_json::json!({"text": payload["text"]}))
            }
        }
        .unwrap_or_default();
        Some(Delivery {
            url: url.to_owned(),
            body,
        })
    }
}

/// Counters of the delivery thread.
#[derive(Debug, Default)]
pub struct WebhookStats {
    /// Delivered (a 2xx answer).
    pub delivered: AtomicU64,
    /// Given up after every attempt failed.
    pub failed: AtomicU64,
    /// Attempts made, including retries.
    pub attempts: AtomicU64,
    /// Dropped because the queue was full.
    pub dropped: AtomicU64,
}

/// The bounded queue; share with `Arc`, start its thread with [`WebhookQueue::spawn`].
#[derive(Debug)]
pub struct WebhookQueue {
    config: WebhookConfig,
    tls: Option<Arc<rustls::ClientConfig>>,
    queue: Mutex<VecDeque<Delivery>>,
    ready: Condvar,
    stats: WebhookStats,
}

impl WebhookQueue {
    /// An empty queue.
    pub fn new(config: WebhookConfig) -> Arc<WebhookQueue> {
        // A bad extra-roots file is refused when the server starts (serve validates it with
        // `tls_client_config`); here it only leaves https deliveries failing with the reason.
        let tls = tls_client_config(&config)
            .inspect_err(|e| tracing::error!(error = %e, "webhook TLS client unavailable"))
            .ok();
        Arc::new(WebhookQueue {
            config,
            tls,
            queue: Mutex::new(VecDeque::new()),
            ready: Condvar::new(),
            stats: WebhookStats::default(),
        })
    }

    /// Queues a delivery; never blocks on the network. Drops the oldest when full.
    pub fn push(&self, delivery: Delivery) {
        let mut queue = self.queue.lock();
        if queue.len() >= self.config.capacity.max(1) {
            queue.pop_front();
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
        }
        queue.push_back(delivery);
        drop(queue);
        self.ready.notify_one();
    }

    /// Deliveries waiting.
    pub fn len(&self) -> usize {
        self.queue.lock().len()
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The counters.
    pub fn stats(&self) -> &WebhookStats {
        &self.stats
    }

    /// Starts the delivery thread; it ends once `shutdown` is set (within about a second, or
    /// after the attempt in flight).
    pub fn spawn(
        self: &Arc<Self>,
        shutdown: Arc<AtomicBool>,
    ) -> std::io::Result<std::thread::JoinHandle<()>> {
        let this = Arc::clone(self);
        std::thread::Builder::new()
            .name("osprey-webhooks".into())
            .spawn(move || this.run(&shutdown))
    }

    fn run(&self, shutdown: &AtomicBool) {
        while !shutdown.load(Ordering::Acquire) {
            let next = {
                let mut queue = self.queue.lock();
                if queue.is_empty() {
                    self.ready.wait_for(&mut queue, Duration::from_millis(500));
                }
                queue.pop_front()
            };
            if let Some(delivery) = next {
                self.deliver(&delivery, shutdown);
            }
        }
    }

    fn deliver(&self, delivery: &Delivery, shutdown: &AtomicBool) {
        let mut pause = self.config.backoff;
        for attempt in 1..=self.config.attempts.max(1) {
            self.stats.attempts.fetch_add(1, Ordering::Relaxed);
            match post(
                &delivery.url,
                &delivery.body,
                &self.config,
                self.tls.as_ref(),
            ) {
                Ok(()) => {
                    self.stats.delivered.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                Err(e) => {
                    tracing::warn!(url = %delivery.url, attempt, error = %e, "webhook delivery failed");
                    if matches!(e, ProcessorError::WebhookUrl(_)) {
                        break;
                    }
                }
            }
            if attempt < self.config.attempts && !shutdown.load(Ordering::Acquire) {
                std::thread::sleep(pause);
                pause = pause.saturating_mul(2);
            }
        }
        self.stats.failed.fetch_add(1, Ordering::Relaxed);
    }
}

/// A webhook target: `http[s]://host[:port][/path]`.
#[derive(Debug, PartialEq, Eq)]
struct Target<'a> {
    tls: bool,
    host: &'a str,
    port: u16,
    path: &'a str,
}

/// Splits a webhook URL into its parts; `None` for anything but a plain http(s) URL.
fn parse_url(url: &str) -> Option<Target<'_>> {
    let (tls, rest) = match url.strip_prefix("https://") {
        Some(rest) => (true, rest),
        None => (false, url.strip_prefix("http://")?),
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if authority.is_empty() || authority.contains('@') || path.contains(['\r', '\n', ' ']) {
        return None;
    }
    let default_port = if tls { 443 } else { 80 };
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => (h, p.parse().ok()?),
        _ => (authority, default_port),
    };
    if host.is_empty() || host.contains(['\r', '\n', ' ']) {
        return None;
    }
    Some(Target {
        tls,
        host,
        port,
        path,
    })
}

/// The TLS client settings for `config`: public roots plus its extra PEM roots.
pub fn tls_client_config(
    config: &WebhookConfig,
) -> Result<Arc<rustls::ClientConfig>, ProcessorError> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(pem) = &config.extra_roots_pem {
        let mut reader = std::io::BufReader::new(pem.as_slice());
        let mut added = 0;
        for cert in rustls_pemfile::certs(&mut reader) {
            let cert = cert.map_err(|e| ProcessorError::WebhookTls(format!("extra roots: {e}")))?;
            roots
                .add(cert)
                .map_err(|e| ProcessorError::WebhookTls(format!("extra roots: {e}")))?;
            added += 1;
        }
        if added == 0 {
            return Err(ProcessorError::WebhookTls(
                "extra roots: no PEM certificate found".into(),
            ));
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ProcessorError::WebhookTls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(tls))
}

/// One POST attempt: success on a 2xx status line within the deadline. `tls` is the client
/// configuration for `https://` URLs ([`tls_client_config`]); without it they fail.
pub fn post(
    url: &str,
    body: &[u8],
    config: &WebhookConfig,
    tls: Option<&Arc<rustls::ClientConfig>>,
) -> Result<(), ProcessorError> {
    let target = parse_url(url).ok_or_else(|| ProcessorError::WebhookUrl(url.into()))?;
    let deadline = Instant::now() + config.total_timeout;
    let bare_host = target.host.trim_start_matches('[').trim_end_matches(']');
    let addr = (bare_host, target.port)
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| ProcessorError::WebhookUrl(url.into()))?;
    let tcp = TcpStream::connect_timeout(&addr, config.connect_timeout)?;
    let timeouts = tcp.try_clone()?;
    let remaining = || {
        deadline
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
            .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::TimedOut, "deadline"))
    };
    // Every read and write of the exchange (the TLS handshake included) is bounded by what
    // is left of the attempt's deadline.
    let set_timeouts = || -> std::io::Result<()> {
        let left = remaining()?;
        timeouts.set_write_timeout(Some(left))?;
        timeouts.set_read_timeout(Some(left))
    };
    set_timeouts()?;
    if !target.tls {
        return exchange(tcp, &target, body, set_timeouts);
    }
    let tls = tls.ok_or_else(|| ProcessorError::WebhookTls("no TLS client configured".into()))?;
    let name = rustls::pki_types::ServerName::try_from(bare_host.to_owned())
        .map_err(|_| ProcessorError::WebhookUrl(url.into()))?;
    let connection = rustls::ClientConnection::new(Arc::clone(tls), name)
        .map_err(|e| ProcessorError::WebhookTls(e.to_string()))?;
    exchange(
        rustls::StreamOwned::new(connection, tcp),
        &target,
        body,
        set_timeouts,
    )
}

/// Sends the request on `stream` and reads the status line, bounded in bytes; `set_timeouts`
/// re-arms the socket timeouts before each read.
fn exchange(
    mut stream: impl Read + Write,
    target: &Target<'_>,
    body: &[u8],
    mut set_timeouts: impl FnMut() -> std::io::Result<()>,
) -> Result<(), ProcessorError> {
    let head = format!(
        "POST {} HTTP/1.1\r\nHost: {}:{}\r\nUser-Agent: osprey-webhook\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        target.path,
        target.host,
        target.port,
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    stream.flush()?;
    let mut answer = Vec::with_capacity(256);
    let mut buf = [0u8; 256];
    while !answer.windows(2).any(|w| w == b"\r\n") {
        if answer.len() > 4096 {
            return Err(ProcessorError::WebhookMalformed);
        }
        set_timeouts()?;
        let n = stream.read(&mut buf)?;
        if n == 0 {
            return Err(ProcessorError::WebhookMalformed);
        }
        answer.extend_from_slice(&buf[..n]);
    }
    let line = answer.split(|&b| b == b'\r').next().unwrap_or_default();
    let line = std::str::from_utf8(line).map_err(|_| ProcessorError::WebhookMalformed)?;
    let mut parts = line.split(' ');
    if !parts.next().is_some_and(|v| v.starts_with("HTTP/1.")) {
        return Err(ProcessorError::WebhookMalformed);
    }
    let status: u16 = parts
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or(ProcessorError::WebhookMalformed)?;
    if (200..300).contains(&status) {
        Ok(())
    } else {
        Err(ProcessorError::WebhookStatus(status))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_and_bad_ones_fail() {
        let parts = |url| parse_url(url).map(|t| (t.tls, t.host, t.port, t.path));
        assert_eq!(
            parts("http://127.0.0.1:8080/hook?a=1"),
            Some((false, "127.0.0.1", 8080, "/hook?a=1"))
        );
        assert_eq!(parts("http://example"), Some((false, "example", 80, "/")));
        assert_eq!(parts("http://[::1]:81/x"), Some((false, "[::1]", 81, "/x")));
        assert_eq!(
            parts("https://hooks.slack.com/services/T/B/X"),
            Some((true, "hooks.slack.com", 443, "/services/T/B/X"))
        );
        assert_eq!(parts("ftp://a/b"), None);
        assert_eq!(parts("http://a/b c"), None);
        assert_eq!(parts("http://:80/"), None);
        let err = post("ftp://x/", b"{}", &WebhookConfig::default(), None).unwrap_err();
        assert!(matches!(err, ProcessorError::WebhookUrl(_)));
    }

    #[test]
    fn extra_roots_must_hold_a_certificate() {
        let config = WebhookConfig {
            extra_roots_pem: Some(b"not a certificate".to_vec()),
            ..WebhookConfig::default()
        };
        assert!(matches!(
            tls_client_config(&config),
            Err(ProcessorError::WebhookTls(_))
        ));
        assert!(tls_client_config(&WebhookConfig::default()).is_ok());
    }

    #[test]
    fn full_queue_drops_oldest() {
        let q = WebhookQueue::new(WebhookConfig {
            capacity: 2,
            ..WebhookConfig::default()
        });
        for i in 0..3u8 {
            q.push(Delivery {
                url: "http://127.0.0.1:1/".into(),
                body: vec![i],
            });
        }
        assert_eq!(q.len(), 2);
        assert_eq!(q.stats().dropped.load(Ordering::Relaxed), 1);
        assert_eq!(q.queue.lock().front().unwrap().body, vec![1]);
    }
}
