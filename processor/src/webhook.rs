//! Webhook delivery: a bounded queue drained by one thread with a small blocking HTTP/1.1
//! client, so a slow or dead receiver never slows processing.
//!
//! The processor only ever calls [`WebhookQueue::push`], which never blocks on the network:
//! when the queue is full the oldest delivery is dropped and counted. The delivery thread
//! POSTs each body with a connect timeout and a total deadline per attempt, and retries
//! failures (connection errors, timeouts, non-2xx answers) with exponential backoff up to a
//! fixed number of attempts. Only `http://` URLs are supported: there is no TLS client in
//! this crate, so an `https://` target (a real Slack incoming webhook) fails with a clear
//! error in the log and the `failed` counter; put a plain-HTTP relay in front of it.

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
}

impl Default for WebhookConfig {
    fn default() -> Self {
        WebhookConfig {
            capacity: 1000,
            connect_timeout: Duration::from_secs(2),
            total_timeout: Duration::from_secs(5),
            attempts: 3,
            backoff: Duration::from_millis(500),
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
    queue: Mutex<VecDeque<Delivery>>,
    ready: Condvar,
    stats: WebhookStats,
}

impl WebhookQueue {
    /// An empty queue.
    pub fn new(config: WebhookConfig) -> Arc<WebhookQueue> {
        Arc::new(WebhookQueue {
            config,
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
            match post(&delivery.url, &delivery.body, &self.config) {
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

/// Splits `http://host[:port][/path]` into (host, port, path).
fn parse_http_url(url: &str) -> Option<(&str, u16, &str)> {
    let rest = url.strip_prefix("http://")?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if authority.is_empty() || authority.contains('@') || path.contains(['\r', '\n', ' ']) {
        return None;
    }
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => (h, p.parse().ok()?),
        _ => (authority, 80),
    };
    if host.is_empty() || host.contains(['\r', '\n', ' ']) {
        return None;
    }
    Some((host, port, path))
}

/// One POST attempt: success on a 2xx status line within the deadline.
pub fn post(url: &str, body: &[u8], config: &WebhookConfig) -> Result<(), ProcessorError> {
    let (host, port, path) =
        parse_http_url(url).ok_or_else(|| ProcessorError::WebhookUrl(url.into()))?;
    let deadline = Instant::now() + config.total_timeout;
    let bare_host = host.trim_start_matches('[').trim_end_matches(']');
    let addr = (bare_host, port)
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| ProcessorError::WebhookUrl(url.into()))?;
    let mut stream = TcpStream::connect_timeout(&addr, config.connect_timeout)?;
    let remaining = |deadline: Instant| {
        deadline
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
            .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::TimedOut, "deadline"))
    };
    stream.set_write_timeout(Some(remaining(deadline)?))?;
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: osprey-webhook\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    stream.flush()?;
    // Read until the end of the status line, bounded in bytes and time.
    let mut answer = Vec::with_capacity(256);
    let mut buf = [0u8; 256];
    while !answer.windows(2).any(|w| w == b"\r\n") {
        if answer.len() > 4096 {
            return Err(ProcessorError::WebhookMalformed);
        }
        stream.set_read_timeout(Some(remaining(deadline)?))?;
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
        assert_eq!(
            parse_http_url("http://127.0.0.1:8080/hook?a=1"),
            Some(("127.0.0.1", 8080, "/hook?a=1"))
        );
        assert_eq!(parse_http_url("http://example"), Some(("example", 80, "/")));
        assert_eq!(
            parse_http_url("http://[::1]:81/x"),
            Some(("[::1]", 81, "/x"))
        );
        assert_eq!(parse_http_url("https://hooks.slack.com/x"), None);
        assert_eq!(parse_http_url("http://a/b c"), None);
        assert_eq!(parse_http_url("http://:80/"), None);
        let err = post("https://x/", b"{}", &WebhookConfig::default()).unwrap_err();
        assert!(matches!(err, ProcessorError::WebhookUrl(_)));
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
