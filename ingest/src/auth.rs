//! DSNs and the authentication forms Relay accepts (sentry-protocol.md §1.1, §2.1).
//!
//! A request authenticates with exactly one of: `X-Sentry-Auth: Sentry …`,
//! `Authorization: Sentry …`, `Authorization: Basic base64(key:…)`, or `sentry_*` query
//! parameters. The envelope endpoint additionally falls back to the `dsn` of the envelope
//! header when none of those is present; that fallback lives in the endpoint because it needs
//! the body.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use base64::Engine;
use http::HeaderMap;

use crate::error::{AuthParseError, DetailError, IngestError};

/// The newest protocol version (`sentry_version`) ingest speaks; newer ones are refused.
pub const PROTOCOL_VERSION: u16 = 7;

/// Parsed authentication parameters of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Auth {
    /// `sentry_key`, as sent (may carry `.flags`; see [`parse_public_key`]).
    pub public_key: String,
    /// `sentry_version` (major part); 7 when absent.
    pub version: u16,
    /// `sentry_client` (`name/version`).
    pub client: Option<String>,
    /// `sentry_secret` (deprecated; tolerated, never required).
    pub secret: Option<String>,
}

/// Which form a request authenticated with (for metrics and tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthSource {
    /// `X-Sentry-Auth: Sentry …`.
    XSentryAuth,
    /// `Authorization: Sentry …`.
    AuthorizationSentry,
    /// `Authorization: Basic …`.
    AuthorizationBasic,
    /// `?sentry_key=…`.
    Query,
    /// The envelope header's `dsn`.
    EnvelopeHeader,
}

impl Auth {
    /// Builds auth from `sentry_*` key/value pairs; unknown keys are ignored.
    pub fn from_pairs<'a, I>(pairs: I) -> Result<Auth, AuthParseError>
    where
        I: IntoIterator<Item = (Cow<'a, str>, Cow<'a, str>)>,
    {
        let mut auth = Auth {
            public_key: String::new(),
            version: PROTOCOL_VERSION,
            client: None,
            secret: None,
        };
        for (key, value) in pairs {
            match key.as_ref() {
                "sentry_key" => auth.public_key = value.into_owned(),
                "sentry_version" => {
                    // `7` and `7.0` are both seen in the wild; only the major part counts.
                    auth.version = value
                        .split('.')
                        .next()
                        .and_then(|major| major.trim().parse().ok())
                        .ok_or(AuthParseError::InvalidVersion)?;
                }
                "sentry_client" => auth.client = Some(value.into_owned()),
                "sentry_secret" => auth.secret = Some(value.into_owned()),
                // `sentry_timestamp` is deprecated and ignored, as is anything unknown.
                _ => {}
            }
        }
        if auth.public_key.is_empty() {
            return Err(AuthParseError::MissingPublicKey);
        }
        Ok(auth)
    }

    /// Parses auth from a raw query string (`sentry_key=…&sentry_version=7`).
    pub fn from_query(query: &str) -> Result<Auth, AuthParseError> {
        Auth::from_pairs(query_pairs(query))
    }
}

impl FromStr for Auth {
    type Err = AuthParseError;

    /// Parses a `Sentry sentry_key=…, sentry_version=7, …` header value.
    fn from_str(s: &str) -> Result<Auth, AuthParseError> {
        let (prefix, rest) = s.split_once(' ').unwrap_or((s, ""));
        if !prefix.eq_ignore_ascii_case("sentry") {
            return Err(AuthParseError::NonSentryAuth);
        }
        Auth::from_pairs(rest.split(',').filter_map(|pair| {
            let mut kv = pair.split('=');
            Some((
                Cow::Borrowed(kv.next()?.trim()),
                Cow::Borrowed(kv.next()?.trim()),
            ))
        }))
    }
}

/// A header value that announces Sentry auth: `sentry ` (any case) followed by pairs.
/// Other values (e.g. a bearer token meant for a proxy) are not auth for us at all.
fn sentry_header<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .filter(|v| v.len() >= 7 && v[..7].eq_ignore_ascii_case("sentry "))
}

/// `Authorization: Basic base64(public_key:anything)` → the key, if the value is well formed.
fn basic_auth(headers: &HeaderMap) -> Option<Auth> {
    let value = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    if value.len() < 6 || !value[..6].eq_ignore_ascii_case("basic ") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(value[6..].trim().as_bytes())
        .ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (key, _) = decoded.split_once(':')?;
    Auth::from_pairs([(Cow::Borrowed("sentry_key"), Cow::Borrowed(key))]).ok()
}

/// Extracts auth from headers and query in Relay's order, refusing a second source.
///
/// Returns `Ok(None)` when no source is present (the envelope endpoint then tries its header).
pub fn auth_from_request(
    headers: &HeaderMap,
    query: Option<&str>,
) -> Result<Option<(Auth, AuthSource)>, IngestError> {
    let mut found: Option<(Auth, AuthSource)> = None;
    if let Some(value) = sentry_header(headers, "x-sentry-auth") {
        let auth = value.parse().map_err(IngestError::BadAuth)?;
        found = Some((auth, AuthSource::XSentryAuth));
    }
    if let Some(value) = sentry_header(headers, "authorization") {
        if found.is_some() {
            return Err(IngestError::MultipleAuth);
        }
        let auth = value.parse().map_err(IngestError::BadAuth)?;
        found = Some((auth, AuthSource::AuthorizationSentry));
    }
    if let Some(auth) = basic_auth(headers) {
        if found.is_some() {
            return Err(IngestError::MultipleAuth);
        }
        found = Some((auth, AuthSource::AuthorizationBasic));
    }
    let query = query.unwrap_or_default();
    if query.contains("sentry_") {
        if found.is_some() {
            return Err(IngestError::MultipleAuth);
        }
        let auth = Auth::from_query(query).map_err(IngestError::BadAuth)?;
        found = Some((auth, AuthSource::Query));
    }
    Ok(found)
}

/// Validates a public key: 32 ASCII characters, optionally followed by `.flag.flag`.
/// Returns the bare key.
pub fn parse_public_key(raw: &str) -> Result<&str, IngestError> {
    let key = raw.split('.').next().unwrap_or_default();
    if key.len() != 32 || !key.is_ascii() {
        return Err(IngestError::BadPublicKey);
    }
    Ok(key)
}

/// A parsed DSN: `{scheme}://{public_key}[:{secret}]@{host}[:{port}]{path}/{project_id}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dsn {
    /// `http` or `https`.
    pub scheme: String,
    /// The public key (not validated for length here).
    pub public_key: String,
    /// The deprecated secret, if present.
    pub secret: Option<String>,
    /// Host name or address.
    pub host: String,
    /// Explicit port, if any.
    pub port: Option<u16>,
    /// Path prefix before the project id (usually empty).
    pub path: String,
    /// Numeric project id.
    pub project_id: u64,
}

/// Why a DSN string did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DsnError {
    /// Not `scheme://…`.
    #[error("invalid DSN: missing scheme")]
    Scheme,
    /// No `key@` part.
    #[error("invalid DSN: missing public key")]
    PublicKey,
    /// Empty host or unparsable port.
    #[error("invalid DSN: bad host or port")]
    Host,
    /// Last path segment is not a number.
    #[error("invalid DSN: bad project id")]
    ProjectId,
}

impl FromStr for Dsn {
    type Err = DsnError;

    fn from_str(s: &str) -> Result<Dsn, DsnError> {
        let (scheme, rest) = s.split_once("://").ok_or(DsnError::Scheme)?;
        if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
            return Err(DsnError::Scheme);
        }
        let (userinfo, rest) = rest.split_once('@').ok_or(DsnError::PublicKey)?;
        let (public_key, secret) = match userinfo.split_once(':') {
            Some((k, s)) => (k, (!s.is_empty()).then(|| s.to_owned())),
            None => (userinfo, None),
        };
        if public_key.is_empty() {
            return Err(DsnError::PublicKey);
        }
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || authority.starts_with('[') => {
                (h, Some(p.parse::<u16>().map_err(|_| DsnError::Host)?))
            }
            _ => (authority, None),
        };
        if host.is_empty() {
            return Err(DsnError::Host);
        }
        let path = path.trim_end_matches('/');
        let (prefix, project) = path.rsplit_once('/').ok_or(DsnError::ProjectId)?;
        let project_id = project.parse::<u64>().map_err(|_| DsnError::ProjectId)?;
        Ok(Dsn {
            scheme: scheme.to_ascii_lowercase(),
            public_key: public_key.to_owned(),
            secret,
            host: host.to_owned(),
            port,
            path: prefix.to_owned(),
            project_id,
        })
    }
}

impl fmt::Display for Dsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}", self.scheme, self.public_key)?;
        if let Some(secret) = &self.secret {
            write!(f, ":{secret}")?;
        }
        write!(f, "@{}", self.host)?;
        if let Some(port) = self.port {
            write!(f, ":{port}")?;
        }
        write!(f, "{}/{}", self.path, self.project_id)
    }
}

impl Dsn {
    /// `scheme://host[:port]{path}`: what ingest URLs are built on.
    pub fn base_url(&self) -> String {
        let mut url = format!("{}://{}", self.scheme, self.host);
        if let Some(port) = self.port {
            url.push_str(&format!(":{port}"));
        }
        url.push_str(&self.path);
        url
    }

    /// `{base}/api/{project_id}/envelope/`.
    pub fn envelope_url(&self) -> String {
        format!("{}/api/{}/envelope/", self.base_url(), self.project_id)
    }

    /// `Sentry sentry_key=…, sentry_version=7, sentry_client=…` for this DSN.
    pub fn auth_header(&self, client: &str) -> String {
        format!(
            "Sentry sentry_key={}, sentry_version={PROTOCOL_VERSION}, sentry_client={client}",
            self.public_key
        )
    }
}

/// Parses an envelope header line used as authentication: its `dsn` must be a valid DSN.
pub fn dsn_from_envelope_header(line: &[u8]) -> Result<Dsn, IngestError> {
    #[derive(serde::Deserialize)]
    struct HeaderAuth<'a> {
        #[serde(borrow)]
        dsn: Cow<'a, str>,
    }
    let header: HeaderAuth<'_> = serde_json::from_slice(line)
        .map_err(|e| IngestError::BadEnvelopeAuth(DetailError::new(e)))?;
    header
        .dsn
        .parse()
        .map_err(|e| IngestError::BadEnvelopeAuth(DetailError::new(e)))
}

/// Splits a query string into decoded `key=value` pairs (`application/x-www-form-urlencoded`).
pub fn query_pairs(query: &str) -> impl Iterator<Item = (Cow<'_, str>, Cow<'_, str>)> {
    query.split('&').filter(|s| !s.is_empty()).map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (percent_decode(k), percent_decode(v))
    })
}

/// Decodes `%XX` escapes and `+` as space; invalid escapes are kept literally, and bytes that do
/// not form UTF-8 are replaced (a mangled query value must not abort the request).
pub fn percent_decode(s: &str) -> Cow<'_, str> {
    if !s.contains(['%', '+']) {
        return Cow::Borrowed(s);
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = |b: u8| (b as char).to_digit(16);
                match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                    (Some(h), Some(l)) => {
                        out.push((h * 16 + l) as u8);
                        i += 2;
                    }
                    _ => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    const KEY: &str = "e12d836b15bb49d7bbf99e64295d995b";

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        map
    }

    #[test]
    fn parses_x_sentry_auth() {
        let h = headers(&[(
            "x-sentry-auth",
            "Sentry sentry_key=e12d836b15bb49d7bbf99e64295d995b, sentry_version=7.0, sentry_client=raven/1",
        )]);
        let (auth, source) = auth_from_request(&h, None).unwrap().unwrap();
        assert_eq!(source, AuthSource::XSentryAuth);
        assert_eq!(auth.public_key, KEY);
        assert_eq!(auth.version, 7);
        assert_eq!(auth.client.as_deref(), Some("raven/1"));
    }

    #[test]
    fn header_prefix_is_case_insensitive_and_others_ignored() {
        let h = headers(&[("x-sentry-auth", &format!("SENTRY sentry_key={KEY}"))]);
        assert!(auth_from_request(&h, None).unwrap().is_some());
        // A bearer token is not Sentry auth and not an error.
        let h = headers(&[("authorization", "Bearer abc")]);
        assert!(auth_from_request(&h, None).unwrap().is_none());
    }

    #[test]
    fn authorization_sentry_and_basic() {
        let h = headers(&[("authorization", &format!("Sentry sentry_key={KEY}"))]);
        let (_, source) = auth_from_request(&h, None).unwrap().unwrap();
        assert_eq!(source, AuthSource::AuthorizationSentry);

        let basic = base64::engine::general_purpose::STANDARD.encode(format!("{KEY}:"));
        let h = headers(&[("authorization", &format!("Basic {basic}"))]);
        let (auth, source) = auth_from_request(&h, None).unwrap().unwrap();
        assert_eq!(source, AuthSource::AuthorizationBasic);
        assert_eq!(auth.public_key, KEY);
    }

    #[test]
    fn query_auth() {
        let q = format!("sentry_key={KEY}&sentry_version=7&sentry_client=js%2F1.0");
        let (auth, source) = auth_from_request(&HeaderMap::new(), Some(&q))
            .unwrap()
            .unwrap();
        assert_eq!(source, AuthSource::Query);
        assert_eq!(auth.client.as_deref(), Some("js/1.0"));
    }

    #[test]
    fn two_sources_conflict() {
        let h = headers(&[("x-sentry-auth", &format!("Sentry sentry_key={KEY}"))]);
        let err = auth_from_request(&h, Some(&format!("sentry_key={KEY}"))).unwrap_err();
        assert!(matches!(err, IngestError::MultipleAuth));
        let h = headers(&[
            ("x-sentry-auth", &format!("Sentry sentry_key={KEY}")),
            ("authorization", &format!("Sentry sentry_key={KEY}")),
        ]);
        assert!(matches!(
            auth_from_request(&h, None),
            Err(IngestError::MultipleAuth)
        ));
    }

    #[test]
    fn malformed_headers() {
        let h = headers(&[("x-sentry-auth", "Sentry sentry_version=7")]);
        assert!(matches!(
            auth_from_request(&h, None),
            Err(IngestError::BadAuth(AuthParseError::MissingPublicKey))
        ));
        let h = headers(&[(
            "x-sentry-auth",
            &format!("Sentry sentry_key={KEY}, sentry_version=x"),
        )]);
        assert!(matches!(
            auth_from_request(&h, None),
            Err(IngestError::BadAuth(AuthParseError::InvalidVersion))
        ));
    }

    #[test]
    fn public_key_rules() {
        assert_eq!(parse_public_key(KEY).unwrap(), KEY);
        assert_eq!(parse_public_key(&format!("{KEY}.no-cache")).unwrap(), KEY);
        assert!(parse_public_key("abc").is_err());
        assert!(parse_public_key(&"é".repeat(16)).is_err());
    }

    #[test]
    fn dsn_roundtrip() {
        let dsn: Dsn = format!("http://{KEY}@127.0.0.1:9000/1").parse().unwrap();
        assert_eq!(dsn.project_id, 1);
        assert_eq!(dsn.port, Some(9000));
        assert_eq!(dsn.envelope_url(), "http://127.0.0.1:9000/api/1/envelope/");
        assert_eq!(dsn.to_string(), format!("http://{KEY}@127.0.0.1:9000/1"));

        let dsn: Dsn = format!("https://{KEY}:secret@sentry.io/prefix/42")
            .parse()
            .unwrap();
        assert_eq!(dsn.secret.as_deref(), Some("secret"));
        assert_eq!(dsn.path, "/prefix");
        assert_eq!(dsn.project_id, 42);
        assert_eq!(
            dsn.envelope_url(),
            "https://sentry.io/prefix/api/42/envelope/"
        );

        assert_eq!("ftp://a@b/1".parse::<Dsn>(), Err(DsnError::Scheme));
        assert_eq!("http://a@b/x".parse::<Dsn>(), Err(DsnError::ProjectId));
        assert_eq!("http://b/1".parse::<Dsn>(), Err(DsnError::PublicKey));
    }

    #[test]
    fn envelope_header_dsn() {
        let line = format!(r#"{{"dsn":"http://{KEY}@localhost/3","event_id":null}}"#);
        assert_eq!(
            dsn_from_envelope_header(line.as_bytes())
                .unwrap()
                .project_id,
            3
        );
        assert!(matches!(
            dsn_from_envelope_header(b"{\"dsn\":\"nope\"}"),
            Err(IngestError::BadEnvelopeAuth(_))
        ));
        assert!(matches!(
            dsn_from_envelope_header(b"not json"),
            Err(IngestError::BadEnvelopeAuth(_))
        ));
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%20b+c"), "a b c");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz"), "%zz");
        assert_eq!(percent_decode("%7B%7D"), "{}");
    }
}
