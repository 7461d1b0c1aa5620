//! osprey ingest: Sentry's wire protocol and the HTTP endpoint SDKs send to.
//!
//! What it does for one request (design.md §1): authenticate the DSN key in every form Relay
//! accepts ([`auth`]), remove `Content-Encoding` with a cap on the decoded size ([`decode`]),
//! parse the envelope's header lines as zero-copy slices of one buffer ([`envelope`]), apply
//! rate limits ([`rate_limit`]; refusals become `rate_limited` outcomes: [`rejections`]) and Relay's size limits ([`limits`]), count client reports as
//! outcomes ([`outcomes`]), and append the items to the durable log, answering 200 only once
//! the log has them ([`endpoint`]). Every refusal is Relay's status and JSON body ([`error`]).
//!
//! [`loadgen`] is the load generator behind `osprey loadgen`; its envelope builders are public
//! so benchmarks can reuse them.

pub mod auth;
pub mod cors;
pub mod decode;
pub mod endpoint;
pub mod envelope;
pub mod error;
pub mod limits;
pub mod loadgen;
pub mod metrics;
pub mod minidump;
pub mod outcomes;
pub mod rate_limit;
pub mod rejections;
pub mod security;

pub use endpoint::{
    IngestConfig, IngestRequest, IngestResponse, IngestService, ProjectSource, StaticProjects,
    PIXEL_GIF,
};
pub use envelope::{Envelope, EnvelopeError, Item, ItemType};
pub use error::IngestError;
pub use limits::Limits;
pub use rate_limit::{DataCategory, RateLimitConfig};
