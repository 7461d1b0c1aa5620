//! The API's HTTP layer over a real socket: JSON content type, `Link` headers, 401/404 as
//! JSON, and the request body cap (413).

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use common::serve;
use query::api::{ApiConfig, ApiService};
use query::QueryService;
use storage::{Store, StoreOptions};

/// Sends one raw HTTP/1.1 request and returns the whole response text.
fn raw(addr: SocketAddr, request: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    // The server may answer 413 and close before reading the whole body.
    let _ = s.write_all(request);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn http_layer() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), &StoreOptions::default()).unwrap();
    store.bootstrap(None, Some("tok")).unwrap();
    let config = ApiConfig {
        public_url: Some("https://osprey.example.com/".into()),
        max_body_bytes: 1024,
        ..Default::default()
    };
    let addr = serve(ApiService::new(QueryService::new(store), config));

    let ok = raw(
        addr,
        b"GET /api/0/organizations/?per_page=1 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer tok\r\nConnection: close\r\n\r\n",
    );
    assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
    assert!(ok.contains("content-type: application/json"), "{ok}");
    assert!(
        ok.contains("link: <https://osprey.example.com/api/0/organizations/?per_page=1&cursor=0:0:1>; rel=\"previous\"; results=\"false\"; cursor=\"0:0:1\", <https://osprey.example.com/api/0/organizations/?per_page=1&cursor=0:1:0>; rel=\"next\"; results=\"false\"; cursor=\"0:1:0\""),
        "{ok}"
    );
    assert!(
        ok.contains("\"organizationUrl\":\"https://osprey.example.com/organizations/default/\"")
    );

    let sentry_bearer = raw(
        addr,
        b"GET /api/0/auth/ HTTP/1.1\r\nHost: x\r\nAuthorization: Sentry-Bearer tok\r\nConnection: close\r\n\r\n",
    );
    assert!(sentry_bearer.starts_with("HTTP/1.1 200"), "{sentry_bearer}");

    let unauthorized = raw(
        addr,
        b"GET /api/0/organizations/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert!(unauthorized.starts_with("HTTP/1.1 401"), "{unauthorized}");
    assert!(unauthorized.contains("{\"detail\":"), "{unauthorized}");

    let missing = raw(
        addr,
        b"GET /api/0/nothing/here/ HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer tok\r\nConnection: close\r\n\r\n",
    );
    assert!(
        missing.starts_with("HTTP/1.1 404") && missing.contains("application/json"),
        "{missing}"
    );

    let body = "x".repeat(4096);
    let big = format!(
        "POST /api/0/api-tokens/ HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer tok\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let too_big = raw(addr, big.as_bytes());
    assert!(too_big.starts_with("HTTP/1.1 413"), "{too_big}");
    // Chunked bodies without a length are cut at the cap too.
    let chunked = format!(
        "POST /api/0/api-tokens/ HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer tok\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\n",
        body.len()
    );
    let too_big = raw(addr, chunked.as_bytes());
    assert!(too_big.starts_with("HTTP/1.1 413"), "{too_big}");
}
