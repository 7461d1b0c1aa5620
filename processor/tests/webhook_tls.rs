//! Alert webhooks over TLS: a loopback HTTPS receiver with a certificate made here (rcgen),
//! trusted through `WebhookConfig::extra_roots_pem` as a self-hosted receiver's private CA
//! would be. Delivery succeeds with the certificate trusted, and is refused (and counted as
//! failed) when it is not — the client verifies, it does not just encrypt.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use processor::webhook::{post, tls_client_config, Delivery, WebhookConfig, WebhookQueue};
use processor::ProcessorError;

/// A one-thread HTTPS server on 127.0.0.1 that records request bodies and answers 200.
struct TlsReceiver {
    port: u16,
    bodies: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TlsReceiver {
    fn start(cert: &rcgen::CertifiedKey) -> TlsReceiver {
        let key =
            rustls::pki_types::PrivateKeyDer::try_from(cert.key_pair.serialize_der()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert.cert.der().clone()], key)
            .unwrap();
        let config = Arc::new(config);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (b, s) = (bodies.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Acquire) {
                let Ok((tcp, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                };
                tcp.set_nonblocking(false).unwrap();
                tcp.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
                let conn = rustls::ServerConnection::new(config.clone()).unwrap();
                let mut tls = rustls::StreamOwned::new(conn, tcp);
                let mut data = Vec::new();
                let mut buf = [0u8; 4096];
                // Head, then the body by Content-Length (bounded); a failed handshake (an
                // untrusting client) ends the connection here.
                let complete = loop {
                    let text = String::from_utf8_lossy(&data).into_owned();
                    if let Some(end) = text.find("\r\n\r\n") {
                        let length: usize = text[..end]
                            .lines()
                            .find_map(|l| {
                                let (k, v) = l.split_once(':')?;
                                k.eq_ignore_ascii_case("content-length")
                                    .then(|| v.trim().parse().ok())?
                            })
                            .unwrap_or(0);
                        if data.len() >= end + 4 + length {
                            break Some(text[end + 4..end + 4 + length].to_owned());
                        }
                    }
                    match tls.read(&mut buf) {
                        Ok(0) | Err(_) => break None,
                        Ok(n) if data.len() < 1 << 20 => data.extend_from_slice(&buf[..n]),
                        Ok(_) => break None,
                    }
                };
                if let Some(body) = complete {
                    b.lock().unwrap().push(body);
                    let _ = tls.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
                    let _ = tls.flush();
                }
            }
        });
        TlsReceiver {
            port,
            bodies,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for TlsReceiver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn certificate() -> rcgen::CertifiedKey {
    rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string(), "localhost".to_string()])
        .unwrap()
}

#[test]
fn https_webhooks_are_delivered_to_a_trusted_receiver() {
    let cert = certificate();
    let receiver = TlsReceiver::start(&cert);
    let config = WebhookConfig {
        extra_roots_pem: Some(cert.cert.pem().into_bytes()),
        ..WebhookConfig::default()
    };
    let queue = WebhookQueue::new(config);
    let shutdown = Arc::new(AtomicBool::new(false));
    let thread = queue.spawn(shutdown.clone()).unwrap();
    queue.push(Delivery {
        url: format!("https://127.0.0.1:{}/hooks/alert", receiver.port),
        body: br#"{"text":"Burst: DEFAULT-1"}"#.to_vec(),
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    while queue.stats().delivered.load(Ordering::SeqCst) < 1 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(queue.stats().delivered.load(Ordering::SeqCst), 1);
    assert_eq!(
        receiver.bodies.lock().unwrap().as_slice(),
        [r#"{"text":"Burst: DEFAULT-1"}"#.to_string()]
    );
    shutdown.store(true, Ordering::Release);
    thread.join().unwrap();
}

#[test]
fn an_untrusted_certificate_is_refused() {
    let cert = certificate();
    let receiver = TlsReceiver::start(&cert);
    let config = WebhookConfig {
        total_timeout: Duration::from_secs(3),
        ..WebhookConfig::default()
    };
    let public_roots_only = tls_client_config(&config).unwrap();
    let url = format!("https://127.0.0.1:{}/", receiver.port);
    let err = post(&url, b"{}", &config, Some(&public_roots_only)).unwrap_err();
    assert!(
        err.to_string().to_lowercase().contains("certificate"),
        "{err}"
    );
    assert!(receiver.bodies.lock().unwrap().is_empty());
    // Without any TLS client, https is refused with the reason, not sent in the clear.
    let err = post(&url, b"{}", &config, None).unwrap_err();
    assert!(matches!(err, ProcessorError::WebhookTls(_)), "{err}");
}
