//! A webhook receiver on 127.0.0.1 for tests of alert delivery.
//!
//! The processor's own tests and the `osprey` binary's end-to-end tests both need an HTTP
//! endpoint that records what alert delivery POSTs to it, or that misbehaves on purpose
//! (answers 500, or accepts and never answers). It lives here, next to the delivery code it
//! exercises, so that every test uses one receiver. The server never uses it.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;

/// How a [`WebhookReceiver`] answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReceiverMode {
    /// Records the request and answers `200 OK`.
    Ok,
    /// Records the request and answers `500 Internal Server Error`.
    Fail500,
    /// Accepts the connection and never answers (held open until the receiver drops).
    Hang,
}

/// Request heads larger than this are not a webhook delivery; the connection is dropped.
const MAX_HEAD: usize = 64 * 1024;
/// Bodies are read up to this many bytes.
const MAX_BODY: usize = 1 << 20;

/// A loopback HTTP server that keeps `(path, JSON body)` of every request it reads.
pub struct WebhookReceiver {
    port: u16,
    bodies: Arc<Mutex<Vec<(String, Value)>>>,
    connections: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl WebhookReceiver {
    /// Binds a free port on 127.0.0.1 and serves on a background thread until dropped.
    pub fn start(mode: ReceiverMode) -> std::io::Result<WebhookReceiver> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let port = listener.local_addr()?.port();
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (b, c, s) = (bodies.clone(), connections.clone(), stop.clone());
        let thread = std::thread::Builder::new()
            .name("webhook-receiver".into())
            .spawn(move || serve(listener, mode, &b, &c, &s))?;
        Ok(WebhookReceiver {
            port,
            bodies,
            connections,
            stop,
            thread: Some(thread),
        })
    }

    /// `http://127.0.0.1:PORT{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Every `(path, body)` recorded so far, in arrival order. A body that is not JSON is
    /// recorded as `null`.
    pub fn bodies(&self) -> Vec<(String, Value)> {
        lock(&self.bodies).clone()
    }

    /// Bodies recorded on `path` so far.
    pub fn on(&self, path: &str) -> Vec<Value> {
        lock(&self.bodies)
            .iter()
            .filter(|(p, _)| p == path)
            .map(|(_, b)| b.clone())
            .collect()
    }

    /// Connections accepted so far (delivery attempts, including ones never answered).
    pub fn connections(&self) -> u64 {
        self.connections.load(Ordering::SeqCst)
    }

    /// Waits (at most `within`) until at least `n` requests arrived; returns all of them.
    pub fn wait_for(&self, n: usize, within: Duration) -> Vec<(String, Value)> {
        let deadline = Instant::now() + within;
        while lock(&self.bodies).len() < n && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        self.bodies()
    }

    /// Waits (at most `within`) until `path` got at least `n` requests; returns them.
    pub fn wait_for_on(&self, path: &str, n: usize, within: Duration) -> Vec<Value> {
        let deadline = Instant::now() + within;
        while self.on(path).len() < n && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        self.on(path)
    }
}

impl Drop for WebhookReceiver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A poisoned lock only means another test thread panicked; the data is still usable.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn serve(
    listener: TcpListener,
    mode: ReceiverMode,
    bodies: &Mutex<Vec<(String, Value)>>,
    connections: &AtomicU64,
    stop: &AtomicBool,
) {
    let mut held = Vec::new();
    while !stop.load(Ordering::Acquire) {
        let Ok((mut stream, _)) = listener.accept() else {
            std::thread::sleep(Duration::from_millis(5));
            continue;
        };
        connections.fetch_add(1, Ordering::SeqCst);
        if stream.set_nonblocking(false).is_err() {
            continue;
        }
        if mode == ReceiverMode::Hang {
            held.push(stream);
            continue;
        }
        if let Some((path, body)) = read_request(&mut stream) {
            let value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            lock(bodies).push((path, value));
        }
        let answer: &[u8] = match mode {
            ReceiverMode::Fail500 => {
                b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n"
            }
            _ => b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
        };
        let _ = stream.write_all(answer);
    }
}

/// Reads one HTTP/1.1 request: its path and its body (by Content-Length, capped).
fn read_request(stream: &mut TcpStream) -> Option<(String, Vec<u8>)> {
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    let mut data = Vec::new();
    let mut buf = [0u8; 4096];
    let header_end = loop {
        if let Some(i) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if data.len() > MAX_HEAD {
            return None;
        }
        let n = stream.read(&mut buf).ok()?;
        if n == 0 {
            return None;
        }
        data.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&data[..header_end]).into_owned();
    let path = head.split(' ').nth(1)?.to_owned();
    let length: usize = head
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())?
        })
        .unwrap_or(0usize)
        .min(MAX_BODY);
    while data.len() < header_end + length {
        let n = stream.read(&mut buf).ok()?;
        if n == 0 {
            return None;
        }
        data.extend_from_slice(&buf[..n]);
    }
    Some((path, data[header_end..header_end + length].to_vec()))
}
