//! CORS for browser SDKs (sentry-protocol.md §1.3): any origin, POST, Relay's allowed and
//! exposed headers, one-hour preflight cache.

use http::header::{self, HeaderMap, HeaderValue};

/// Request headers a browser may send cross-origin.
pub const ALLOWED_HEADERS: &str = "x-sentry-auth, x-requested-with, x-forwarded-for, origin, referer, accept, content-type, authentication, authorization, content-encoding, transfer-encoding";
/// Response headers a browser SDK may read.
pub const EXPOSED_HEADERS: &str = "x-sentry-error, x-sentry-rate-limits, retry-after";
/// Methods allowed cross-origin.
pub const ALLOWED_METHODS: &str = "GET, POST";
/// Preflight cache lifetime.
pub const MAX_AGE_SECS: &str = "3600";

/// Headers every ingest response carries.
pub fn apply(headers: &mut HeaderMap) {
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    headers.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static(EXPOSED_HEADERS),
    );
}

/// Headers of the answer to an `OPTIONS` preflight.
pub fn apply_preflight(headers: &mut HeaderMap) {
    apply(headers);
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static(ALLOWED_METHODS),
    );
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static(ALLOWED_HEADERS),
    );
    headers.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static(MAX_AGE_SECS),
    );
    headers.insert(
        header::VARY,
        HeaderValue::from_static(
            "origin, access-control-request-method, access-control-request-headers",
        ),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preflight_headers() {
        let mut h = HeaderMap::new();
        apply_preflight(&mut h);
        assert_eq!(h[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*");
        assert!(h[header::ACCESS_CONTROL_ALLOW_HEADERS]
            .to_str()
            .unwrap()
            .contains("x-sentry-auth"));
        assert!(h[header::ACCESS_CONTROL_ALLOW_METHODS]
            .to_str()
            .unwrap()
            .contains("POST"));
        assert!(h[header::ACCESS_CONTROL_EXPOSE_HEADERS]
            .to_str()
            .unwrap()
            .contains("x-sentry-rate-limits"));
        assert_eq!(h[header::ACCESS_CONTROL_MAX_AGE], "3600");
    }
}
