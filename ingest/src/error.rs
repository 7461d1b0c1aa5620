//! The crate's one error type, and how each error becomes Relay's HTTP answer.
//!
//! Every rejection is a JSON body `{"detail": "<error>", "causes": ["<source>", …]}` with the
//! status Relay gives for the same condition (sentry-protocol.md §2.2, §4.2, §5.1). `detail` is
//! the error's `Display`; `causes` walks its `source()` chain and is omitted when empty.

use http::StatusCode;

use crate::envelope::EnvelopeError;
use crate::rate_limit::RateLimits;

/// Why an otherwise well-formed request was refused for its project or key (Relay's
/// `DiscardReason`, rendered with `{:?}` in the 403 detail, e.g. `with_reason: ProjectId`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiscardReason {
    /// Unknown key, disabled key, missing project, or the path's project is not the key's.
    ProjectId,
    /// The request's `Origin`/`Referer` is not in the project's allowed domains.
    Cors,
    /// The project's state could not be used.
    ProjectState,
}

/// Everything ingest can answer with other than success.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// No key in headers, query or envelope header.
    #[error("missing authorization information")]
    MissingAuth,
    /// More than one of the auth sources carried a key.
    #[error("multiple authorization payloads detected")]
    MultipleAuth,
    /// `X-Sentry-Auth` / `Authorization: Sentry` / query auth that does not parse.
    #[error("bad x-sentry-auth header")]
    BadAuth(#[source] AuthParseError),
    /// The envelope header used for authentication is not valid JSON or has no usable `dsn`.
    #[error("bad envelope authentication header")]
    BadEnvelopeAuth(#[source] DetailError),
    /// The public key is not 32 ASCII characters.
    #[error("bad sentry DSN public key")]
    BadPublicKey,
    /// `{project_id}` in the path is not a number.
    #[error("bad project path parameter")]
    BadProject,
    /// `sentry_version` is newer than protocol 7.
    #[error("unsupported protocol version ({0})")]
    UnsupportedProtocolVersion(u16),
    /// The key or project refuses the submission.
    #[error("event submission rejected with_reason: {0:?}")]
    EventRejected(DiscardReason),
    /// The request had no body.
    #[error("empty request body")]
    EmptyBody,
    /// The body could not be read or decoded (broken gzip stream, bad base64, …).
    #[error("invalid request body")]
    InvalidBody(#[source] DetailError),
    /// `Content-Encoding` names an encoding we do not decode.
    #[error("unsupported content encoding '{0}'")]
    UnsupportedEncoding(String),
    /// The store endpoint's compressed payload could not be inflated.
    #[error("invalid compression container")]
    InvalidCompressionContainer(#[source] DetailError),
    /// A store-endpoint payload that is not a JSON object.
    #[error("invalid JSON data: {0}")]
    InvalidJson(String),
    /// A security-report body (CSP, Reporting API, Expect-CT, HPKP) of no supported shape.
    #[error("invalid security report: {0}")]
    InvalidSecurityReport(String),
    /// A crash upload that is not a minidump or whose form is broken.
    #[error("invalid minidump upload: {0}")]
    InvalidMinidump(String),
    /// A form upload to the attachments route that is not `multipart/form-data` or whose form
    /// is broken (Relay's `InvalidMultipart`).
    #[error("invalid multipart data")]
    InvalidMultipart(#[source] DetailError),
    /// An upload that carries no item at all (Relay's `EmptyEnvelope`): an attachments form
    /// without a file part.
    #[error("empty envelope")]
    EmptyEnvelope,
    /// Envelope framing or header errors.
    #[error("invalid event envelope")]
    InvalidEnvelope(#[from] EnvelopeError),
    /// The body (compressed or decoded) is over the route's limit.
    #[error("Failed to buffer the request body")]
    BodyTooLarge(#[source] DetailError),
    /// An item is over its per-type size or count limit.
    #[error("envelope exceeded size limits for type '{0}' (https://develop.sentry.dev/sdk/envelopes/#size-limits)")]
    Overflow(String),
    /// Every item of the envelope was rate limited.
    #[error("Sentry dropped data due to a quota or internal rate limit being reached. This will not affect your application. See https://docs.sentry.io/product/accounts/quotas/ for more information.")]
    RateLimited(RateLimits),
    /// The log refused or failed the append (backpressure, shutdown, I/O).
    #[error("failed to queue envelope")]
    QueueFailed {
        /// Seconds to put in `Retry-After`, when the log said how long to back off.
        retry_after_secs: Option<u64>,
        /// What the log reported.
        #[source]
        cause: DetailError,
    },
    /// The client did not send its whole body within the configured read timeout (a slow or
    /// stalled sender must not hold a connection and a body buffer forever).
    #[error("request body not received within {0} s")]
    BodyTimeout(u64),
    /// No ingest route at this path.
    #[error("not found")]
    NotFound,
    /// The route exists but not for this method.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// The body's content type is not one this route takes (NEL reports are JSON).
    #[error("unsupported media type")]
    UnsupportedMediaType,
}

/// A leaf error carrying a message, used as the `source` of variants whose cause comes from
/// another library (kept as text so the enum stays `Send + Sync` and cheap to build).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct DetailError(pub String);

impl DetailError {
    /// Wraps anything printable.
    pub fn new(message: impl std::fmt::Display) -> Self {
        DetailError(message.to_string())
    }
}

/// Why an auth header or query string did not parse (Relay's `ParseAuthError`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthParseError {
    /// The value does not start with `Sentry `.
    #[error("non sentry auth")]
    NonSentryAuth,
    /// `sentry_version` is not an integer (optionally followed by `.minor`).
    #[error("invalid value for version")]
    InvalidVersion,
    /// No `sentry_key`.
    #[error("missing public key in auth header")]
    MissingPublicKey,
}

impl IngestError {
    /// The HTTP status Relay answers this error with.
    pub fn status(&self) -> StatusCode {
        match self {
            IngestError::MissingAuth
            | IngestError::MultipleAuth
            | IngestError::BadAuth(_)
            | IngestError::BadEnvelopeAuth(_) => StatusCode::UNAUTHORIZED,
            IngestError::EventRejected(_) => StatusCode::FORBIDDEN,
            IngestError::BodyTooLarge(_) | IngestError::Overflow(_) => {
                StatusCode::PAYLOAD_TOO_LARGE
            }
            IngestError::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
            IngestError::QueueFailed { .. } => StatusCode::SERVICE_UNAVAILABLE,
            IngestError::NotFound => StatusCode::NOT_FOUND,
            IngestError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            IngestError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            IngestError::BodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            IngestError::BadPublicKey
            | IngestError::BadProject
            | IngestError::UnsupportedProtocolVersion(_)
            | IngestError::EmptyBody
            | IngestError::InvalidBody(_)
            | IngestError::UnsupportedEncoding(_)
            | IngestError::InvalidCompressionContainer(_)
            | IngestError::InvalidJson(_)
            | IngestError::InvalidSecurityReport(_)
            | IngestError::InvalidMinidump(_)
            | IngestError::InvalidMultipart(_)
            | IngestError::EmptyEnvelope
            | IngestError::InvalidEnvelope(_) => StatusCode::BAD_REQUEST,
        }
    }

    /// A short, stable label for metrics (`reason="…"`).
    pub fn reason(&self) -> &'static str {
        match self {
            IngestError::MissingAuth => "missing_auth",
            IngestError::MultipleAuth => "multiple_auth",
            IngestError::BadAuth(_) => "bad_auth",
            IngestError::BadEnvelopeAuth(_) => "bad_envelope_auth",
            IngestError::BadPublicKey => "bad_public_key",
            IngestError::BadProject => "bad_project",
            IngestError::UnsupportedProtocolVersion(_) => "unsupported_version",
            IngestError::EventRejected(DiscardReason::ProjectId) => "project_id",
            IngestError::EventRejected(DiscardReason::ProjectState) => "project_state",
            IngestError::EventRejected(DiscardReason::Cors) => "cors",
            IngestError::EmptyBody => "empty_body",
            IngestError::InvalidBody(_) => "invalid_body",
            IngestError::UnsupportedEncoding(_) => "unsupported_encoding",
            IngestError::InvalidCompressionContainer(_) => "invalid_compression",
            IngestError::InvalidJson(_) => "invalid_json",
            IngestError::InvalidSecurityReport(_) => "invalid_security_report",
            IngestError::InvalidMinidump(_) => "invalid_minidump",
            IngestError::InvalidMultipart(_) => "invalid_multipart",
            IngestError::EmptyEnvelope => "empty_envelope",
            IngestError::InvalidEnvelope(_) => "invalid_envelope",
            IngestError::BodyTooLarge(_) => "too_large",
            IngestError::Overflow(_) => "too_large_item",
            IngestError::RateLimited(_) => "rate_limited",
            IngestError::QueueFailed { .. } => "queue_failed",
            IngestError::NotFound => "not_found",
            IngestError::BodyTimeout(_) => "body_timeout",
            IngestError::MethodNotAllowed => "method_not_allowed",
            IngestError::UnsupportedMediaType => "unsupported_media_type",
        }
    }

    /// The `causes` list: the `Display` of every error in the `source()` chain.
    pub fn causes(&self) -> Vec<String> {
        let mut causes = Vec::new();
        let mut source = std::error::Error::source(self);
        // The chain is short by construction; the bound only guards against a cyclic source.
        while let Some(err) = source {
            if causes.len() >= 8 {
                break;
            }
            causes.push(err.to_string());
            source = err.source();
        }
        causes
    }

    /// The JSON body `{"detail": …, "causes": […]}` (causes omitted when empty).
    pub fn body(&self) -> Vec<u8> {
        let causes = self.causes();
        let value = if causes.is_empty() {
            serde_json::json!({ "detail": self.to_string() })
        } else {
            serde_json::json!({ "detail": self.to_string(), "causes": causes })
        };
        // Serializing a `Value` of strings cannot fail.
        serde_json::to_vec(&value).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_has_detail_and_causes() {
        let err = IngestError::InvalidEnvelope(EnvelopeError::UnexpectedEof);
        assert_eq!(err.status(), StatusCode::BAD_REQUEST);
        let body: serde_json::Value = serde_json::from_slice(&err.body()).unwrap();
        assert_eq!(body["detail"], "invalid event envelope");
        assert_eq!(body["causes"][0], "unexpected end of file");
    }

    #[test]
    fn causes_omitted_when_empty() {
        let err = IngestError::MissingAuth;
        let body: serde_json::Value = serde_json::from_slice(&err.body()).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"detail": "missing authorization information"})
        );
        assert_eq!(err.status(), StatusCode::UNAUTHORIZED);
    }

    #[test]
    fn rejected_detail_uses_debug_name() {
        let err = IngestError::EventRejected(DiscardReason::ProjectId);
        assert_eq!(
            err.to_string(),
            "event submission rejected with_reason: ProjectId"
        );
        assert_eq!(err.status(), StatusCode::FORBIDDEN);
    }

    #[test]
    fn version_detail() {
        let err = IngestError::UnsupportedProtocolVersion(8);
        assert_eq!(err.to_string(), "unsupported protocol version (8)");
        assert_eq!(err.status(), StatusCode::BAD_REQUEST);
    }
}
