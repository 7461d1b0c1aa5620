//! Zero-copy envelope parsing (sentry-protocol.md §3).
//!
//! ```text
//! Envelope := Headers ( "\n" Item )* [ "\n" ]
//! Item     := Headers "\n" Payload
//! ```
//!
//! The whole body is one [`Bytes`]; the envelope header line, every item header line and every
//! payload are `slice`s of it, so nothing is copied between the socket and the log. Only the
//! header lines are deserialized (and only the fields ingest needs); payloads stay opaque.

use std::borrow::Cow;

use bytes::Bytes;
use serde::de::IgnoredAny;
use serde::Deserialize;
use uuid::Uuid;

use crate::error::DetailError;
use crate::rate_limit::DataCategory;

/// Framing and header errors (Relay's `EnvelopeError`); they become the `causes` of a 400.
#[derive(Debug, thiserror::Error)]
pub enum EnvelopeError {
    /// The body has no header line at all.
    #[error("missing envelope header")]
    MissingHeader,
    /// A header or payload is followed by something other than `\n` or the end.
    #[error("missing newline after header or payload")]
    MissingNewline,
    /// An item's `length` runs past the end of the body.
    #[error("unexpected end of file")]
    UnexpectedEof,
    /// The envelope header is not a valid JSON object of the expected shape.
    #[error("invalid envelope header")]
    InvalidHeader(#[source] DetailError),
    /// An item header is not a valid JSON object with a string `type`.
    #[error("invalid item header")]
    InvalidItemHeader(#[source] DetailError),
    /// The envelope header's `dsn` disagrees with the request's authentication.
    #[error("{0} header mismatch between envelope and request")]
    HeaderMismatch(&'static str),
}

/// The item types ingest distinguishes; anything else is kept as [`ItemType::Unknown`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ItemType {
    /// `event`: an error or message event.
    Event,
    /// `transaction`.
    Transaction,
    /// `attachment`.
    Attachment,
    /// `session`.
    Session,
    /// `sessions` (aggregates).
    Sessions,
    /// `client_report`: SDK discard counts, turned into outcomes.
    ClientReport,
    /// `user_report` (legacy user feedback).
    UserReport,
    /// `feedback` (user feedback as an event).
    Feedback,
    /// `check_in` (cron monitors).
    CheckIn,
    /// `profile`.
    Profile,
    /// `profile_chunk` (and its `profile_chunk_ui` alias).
    ProfileChunk,
    /// `replay_event`.
    ReplayEvent,
    /// `replay_recording`.
    ReplayRecording,
    /// `replay_video`.
    ReplayVideo,
    /// `span` (also `otel_span`).
    Span,
    /// `log`.
    Log,
    /// `trace_metric`.
    TraceMetric,
    /// `statsd`.
    Statsd,
    /// `metric_buckets`.
    MetricBuckets,
    /// `security` / `raw_security` (CSP and friends).
    Security,
    /// `nel`.
    Nel,
    /// `form_data`.
    FormData,
    /// `unreal_report`.
    UnrealReport,
    /// Any other type: kept and forwarded, never an error.
    Unknown(String),
}

impl ItemType {
    /// Maps a wire name to a type.
    pub fn from_name(name: &str) -> ItemType {
        match name {
            "event" => ItemType::Event,
            "transaction" => ItemType::Transaction,
            "attachment" => ItemType::Attachment,
            "session" => ItemType::Session,
            "sessions" => ItemType::Sessions,
            "client_report" => ItemType::ClientReport,
            "user_report" => ItemType::UserReport,
            "feedback" => ItemType::Feedback,
            "check_in" => ItemType::CheckIn,
            "profile" => ItemType::Profile,
            "profile_chunk" | "profile_chunk_ui" => ItemType::ProfileChunk,
            "replay_event" => ItemType::ReplayEvent,
            "replay_recording" => ItemType::ReplayRecording,
            "replay_video" => ItemType::ReplayVideo,
            "span" | "otel_span" => ItemType::Span,
            "log" => ItemType::Log,
            "trace_metric" => ItemType::TraceMetric,
            "statsd" => ItemType::Statsd,
            "metric_buckets" => ItemType::MetricBuckets,
            "security" | "raw_security" => ItemType::Security,
            "nel" => ItemType::Nel,
            "form_data" => ItemType::FormData,
            "unreal_report" => ItemType::UnrealReport,
            other => ItemType::Unknown(other.to_owned()),
        }
    }

    /// The canonical wire name.
    pub fn name(&self) -> &str {
        match self {
            ItemType::Event => "event",
            ItemType::Transaction => "transaction",
            ItemType::Attachment => "attachment",
            ItemType::Session => "session",
            ItemType::Sessions => "sessions",
            ItemType::ClientReport => "client_report",
            ItemType::UserReport => "user_report",
            ItemType::Feedback => "feedback",
            ItemType::CheckIn => "check_in",
            ItemType::Profile => "profile",
            ItemType::ProfileChunk => "profile_chunk",
            ItemType::ReplayEvent => "replay_event",
            ItemType::ReplayRecording => "replay_recording",
            ItemType::ReplayVideo => "replay_video",
            ItemType::Span => "span",
            ItemType::Log => "log",
            ItemType::TraceMetric => "trace_metric",
            ItemType::Statsd => "statsd",
            ItemType::MetricBuckets => "metric_buckets",
            ItemType::Security => "security",
            ItemType::Nel => "nel",
            ItemType::FormData => "form_data",
            ItemType::UnrealReport => "unreal_report",
            ItemType::Unknown(name) => name,
        }
    }

    /// Whether an envelope holding this item needs an event id (Relay generates one if absent).
    pub fn requires_event(&self) -> bool {
        matches!(
            self,
            ItemType::Event
                | ItemType::Transaction
                | ItemType::Security
                | ItemType::Attachment
                | ItemType::FormData
                | ItemType::UnrealReport
                | ItemType::UserReport
                | ItemType::Feedback
                | ItemType::ReplayEvent
                | ItemType::Profile
        )
    }

    /// The rate-limit / outcome category the item counts against (`None` for client reports,
    /// which are never limited, and unknown items).
    pub fn category(&self) -> Option<DataCategory> {
        Some(match self {
            ItemType::Event | ItemType::FormData | ItemType::UnrealReport => DataCategory::Error,
            ItemType::Transaction => DataCategory::Transaction,
            ItemType::Security | ItemType::Nel => DataCategory::Security,
            ItemType::Attachment => DataCategory::Attachment,
            ItemType::Session | ItemType::Sessions => DataCategory::Session,
            ItemType::UserReport | ItemType::Feedback => DataCategory::Feedback,
            ItemType::CheckIn => DataCategory::Monitor,
            ItemType::Profile => DataCategory::Profile,
            ItemType::ProfileChunk => DataCategory::ProfileChunk,
            ItemType::ReplayEvent | ItemType::ReplayRecording => DataCategory::Replay,
            ItemType::ReplayVideo => DataCategory::ReplayVideo,
            ItemType::Span => DataCategory::Span,
            ItemType::Log => DataCategory::LogItem,
            ItemType::TraceMetric => DataCategory::TraceMetric,
            ItemType::Statsd | ItemType::MetricBuckets => DataCategory::MetricBucket,
            ItemType::ClientReport | ItemType::Unknown(_) => return None,
        })
    }
}

/// One item: its header line and payload, both slices of the envelope body.
#[derive(Debug, Clone)]
pub struct Item {
    /// The item type from the `type` header.
    pub ty: ItemType,
    /// The item header line, exactly as sent (JSON).
    pub header: Bytes,
    /// The payload.
    pub payload: Bytes,
    /// `item_count` for container items (batched spans/logs).
    pub item_count: Option<u32>,
    /// `attachment_type` for attachments.
    pub attachment_type: Option<String>,
}

/// A parsed envelope.
#[derive(Debug, Clone)]
pub struct Envelope {
    /// The envelope header line, exactly as sent (JSON).
    pub header: Bytes,
    /// The header's `event_id`, or one generated when an item needs it.
    pub event_id: Option<Uuid>,
    /// Whether `event_id` was generated here rather than sent.
    pub event_id_generated: bool,
    /// The header's `dsn`, if any.
    pub dsn: Option<String>,
    /// The items in order.
    pub items: Vec<Item>,
}

#[derive(Deserialize)]
struct RawEnvelopeHeader<'a> {
    #[serde(default)]
    event_id: Option<Uuid>,
    #[serde(default, borrow)]
    dsn: Option<Cow<'a, str>>,
    // Declared only so that a duplicate `sent_at` is a parse error (develop: envelopes.mdx).
    #[serde(default)]
    #[allow(dead_code)]
    sent_at: Option<IgnoredAny>,
}

#[derive(Deserialize)]
struct RawItemHeader<'a> {
    #[serde(rename = "type", borrow)]
    ty: Cow<'a, str>,
    #[serde(default)]
    length: Option<u32>,
    #[serde(default)]
    item_count: Option<u32>,
    #[serde(default, borrow)]
    attachment_type: Option<Cow<'a, str>>,
}

/// Reads one JSON value at the start of `data`, returning it and the number of bytes consumed.
/// Leading whitespace is skipped, as Relay's streaming deserializer does.
fn read_json<'a, T: Deserialize<'a>>(
    data: &'a [u8],
) -> Option<Result<(T, usize), serde_json::Error>> {
    let mut stream = serde_json::Deserializer::from_slice(data).into_iter::<T>();
    match stream.next()? {
        Ok(value) => Some(Ok((value, stream.byte_offset()))),
        Err(e) => Some(Err(e)),
    }
}

/// After a header or payload ending at `pos`, the next byte must be `\n` or the end.
fn require_termination(body: &[u8], pos: usize) -> Result<(), EnvelopeError> {
    match body.get(pos) {
        None | Some(b'\n') => Ok(()),
        Some(_) => Err(EnvelopeError::MissingNewline),
    }
}

impl Envelope {
    /// An envelope osprey makes itself from a request that is not one (a security or NEL
    /// report, a crash upload): the header carries only `event_id`, generated here.
    pub fn generated(event_id: Uuid, items: Vec<Item>) -> Envelope {
        Envelope {
            header: Bytes::from(format!(r#"{{"event_id":"{}"}}"#, event_id.simple())),
            event_id: Some(event_id),
            event_id_generated: true,
            dsn: None,
            items,
        }
    }

    /// Parses an envelope body. Fails on broken framing or header JSON; unknown item types and
    /// unknown header fields are kept.
    pub fn parse(body: Bytes) -> Result<Envelope, EnvelopeError> {
        let data: &[u8] = &body;
        let (raw, header_end) = match read_json::<RawEnvelopeHeader<'_>>(data) {
            None => return Err(EnvelopeError::MissingHeader),
            Some(Err(e)) => return Err(EnvelopeError::InvalidHeader(DetailError::new(e))),
            Some(Ok(v)) => v,
        };
        require_termination(data, header_end)?;
        let header_start = data[..header_end]
            .iter()
            .position(|b| !b.is_ascii_whitespace())
            .unwrap_or(0);
        let header = body.slice(header_start..header_end);
        let mut event_id = raw.event_id;
        let dsn = raw.dsn.map(Cow::into_owned);

        let mut items = Vec::new();
        let mut offset = header_end + 1;
        while offset < data.len() {
            let (item, next) = Self::parse_item(&body, offset)?;
            items.push(item);
            offset = next;
        }

        let mut event_id_generated = false;
        if event_id.is_none() && items.iter().any(|i| i.ty.requires_event()) {
            event_id = Some(Uuid::new_v4());
            event_id_generated = true;
        }
        Ok(Envelope {
            header,
            event_id,
            event_id_generated,
            dsn,
            items,
        })
    }

    /// Parses the item starting at `offset`; returns it and where the next one starts.
    fn parse_item(body: &Bytes, offset: usize) -> Result<(Item, usize), EnvelopeError> {
        let data = &body[offset..];
        let (raw, consumed) = match read_json::<RawItemHeader<'_>>(data) {
            // Only whitespace left: Relay's streaming reader reports no value; there is no item
            // header where one must be.
            None => return Err(EnvelopeError::UnexpectedEof),
            Some(Err(e)) => return Err(EnvelopeError::InvalidItemHeader(DetailError::new(e))),
            Some(Ok(v)) => v,
        };
        let header_end = offset + consumed;
        require_termination(body, header_end)?;
        let header_start = offset
            + data[..consumed]
                .iter()
                .position(|b| !b.is_ascii_whitespace())
                .unwrap_or(0);

        let payload_start = (header_end + 1).min(body.len());
        let payload_end = match raw.length {
            Some(len) => {
                let end = payload_start
                    .checked_add(len as usize)
                    .ok_or(EnvelopeError::UnexpectedEof)?;
                if end > body.len() {
                    return Err(EnvelopeError::UnexpectedEof);
                }
                end
            }
            None => match memchr::memchr(b'\n', &body[payload_start..]) {
                Some(rel) => payload_start + rel,
                None => body.len(),
            },
        };
        require_termination(body, payload_end)?;
        let item = Item {
            ty: ItemType::from_name(&raw.ty),
            header: body.slice(header_start..header_end),
            payload: body.slice(payload_start..payload_end),
            item_count: raw.item_count,
            attachment_type: raw.attachment_type.map(Cow::into_owned),
        };
        Ok((item, payload_end + 1))
    }

    /// Builds an envelope around one store-endpoint payload (`event` or `transaction`).
    pub fn from_store_payload(event_id: Uuid, ty: ItemType, payload: Bytes) -> Envelope {
        let header = Bytes::from(format!(r#"{{"event_id":"{}"}}"#, event_id.simple()));
        let item_header = Bytes::from(format!(
            r#"{{"type":"{}","length":{}}}"#,
            ty.name(),
            payload.len()
        ));
        Envelope {
            header,
            event_id: Some(event_id),
            event_id_generated: false,
            dsn: None,
            items: vec![Item {
                ty,
                header: item_header,
                payload,
                item_count: None,
                attachment_type: None,
            }],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &[u8]) -> Result<Envelope, EnvelopeError> {
        Envelope::parse(Bytes::copy_from_slice(s))
    }

    // The develop docs' "Full Examples", byte for byte in spirit.
    #[test]
    fn explicit_lengths_with_crlf_payload() {
        let body = b"{\"event_id\":\"9ec79c33ec9942ab8353589fcb2e04dc\",\"dsn\":\"https://e12d836b15bb49d7bbf99e64295d995b:@sentry.io/42\"}\n\
{\"type\":\"attachment\",\"length\":10,\"content_type\":\"text/plain\",\"filename\":\"hello.txt\"}\n\
\xef\xbb\xbfHello\r\n\n\
{\"type\":\"event\",\"length\":41,\"content_type\":\"application/json\",\"filename\":\"application.log\"}\n\
{\"message\":\"hello world\",\"level\":\"error\"}\n";
        let env = parse(body).unwrap();
        assert_eq!(env.items.len(), 2);
        assert_eq!(&env.items[0].payload[..], b"\xef\xbb\xbfHello\r\n");
        assert_eq!(env.items[0].ty, ItemType::Attachment);
        assert_eq!(
            &env.items[1].payload[..],
            b"{\"message\":\"hello world\",\"level\":\"error\"}"
        );
        assert_eq!(
            env.event_id.unwrap().simple().to_string(),
            "9ec79c33ec9942ab8353589fcb2e04dc"
        );
        assert!(!env.event_id_generated);
        assert!(env.dsn.is_some());
        assert!(env.header.starts_with(b"{\"event_id\""));
        assert!(env.items[1].header.ends_with(b"}"));
    }

    #[test]
    fn implicit_length_and_eof_without_newline() {
        let env = parse(
            b"{}\n{\"type\":\"session\"}\n{\"started\":1}\n{\"type\":\"session\"}\n{\"x\":2}",
        )
        .unwrap();
        assert_eq!(env.items.len(), 2);
        assert_eq!(&env.items[1].payload[..], b"{\"x\":2}");
        // Sessions need no event id.
        assert!(env.event_id.is_none());
    }

    #[test]
    fn empty_items_and_zero_items() {
        let env = parse(b"{}\n{\"type\":\"attachment\",\"length\":0}\n\n{\"type\":\"attachment\",\"length\":0}\n\n").unwrap();
        assert_eq!(env.items.len(), 2);
        assert!(env.items.iter().all(|i| i.payload.is_empty()));
        assert!(env.event_id_generated);
        let env = parse(b"{}").unwrap();
        assert!(env.items.is_empty());
        let env = parse(b"{}\n").unwrap();
        assert!(env.items.is_empty());
        // Implicit length at EOF gives an empty payload.
        let env = parse(b"{}\n{\"type\":\"attachment\"}").unwrap();
        assert_eq!(env.items.len(), 1);
        assert!(env.items[0].payload.is_empty());
    }

    #[test]
    fn unknown_item_type_is_kept() {
        let env = parse(b"{}\n{\"type\":\"brand_new\",\"length\":3}\nabc\n").unwrap();
        assert_eq!(env.items[0].ty, ItemType::Unknown("brand_new".into()));
        assert_eq!(env.items[0].ty.name(), "brand_new");
    }

    #[test]
    fn framing_errors() {
        assert!(matches!(parse(b""), Err(EnvelopeError::MissingHeader)));
        assert!(matches!(
            parse(b"nope"),
            Err(EnvelopeError::InvalidHeader(_))
        ));
        assert!(matches!(
            parse(b"{}x\n"),
            Err(EnvelopeError::MissingNewline)
        ));
        assert!(matches!(
            parse(b"{}\n{\"type\":\"event\",\"length\":100}\n{}\n"),
            Err(EnvelopeError::UnexpectedEof)
        ));
        assert!(matches!(
            parse(b"{}\n{\"type\":\"event\",\"length\":2}\n{}}\n"),
            Err(EnvelopeError::MissingNewline)
        ));
        assert!(matches!(
            parse(b"{}\n{\"length\":2}\n{}\n"),
            Err(EnvelopeError::InvalidItemHeader(_))
        ));
        assert!(matches!(
            parse(b"{}\n{\"type\":1}\n{}\n"),
            Err(EnvelopeError::InvalidItemHeader(_))
        ));
        assert!(matches!(
            parse(b"{}\n{\"type\":\"event\"} {}\n"),
            Err(EnvelopeError::MissingNewline)
        ));
        // A stray trailing byte is another (invalid) item header.
        assert!(matches!(
            parse(b"{}\n{\"type\":\"event\"}\n{}\nx"),
            Err(EnvelopeError::InvalidItemHeader(_))
        ));
        assert!(matches!(
            parse(b"{\"event_id\":\"zz\"}\n"),
            Err(EnvelopeError::InvalidHeader(_))
        ));
        assert!(matches!(
            parse(b"{\"sent_at\":\"2020-01-01T00:00:00Z\",\"sent_at\":\"2020-01-01T00:00:00Z\"}\n"),
            Err(EnvelopeError::InvalidHeader(_))
        ));
    }

    #[test]
    fn hyphenated_event_id_and_generation() {
        let env = parse(b"{\"event_id\":\"9ec79c33-ec99-42ab-8353-589fcb2e04dc\"}\n").unwrap();
        assert!(env.event_id.is_some());
        let env = parse(b"{}\n{\"type\":\"event\"}\n{}\n").unwrap();
        assert!(env.event_id_generated);
        assert_eq!(env.event_id.unwrap().get_version_num(), 4);
        let env = parse(b"{}\n{\"type\":\"client_report\"}\n{}\n").unwrap();
        assert!(env.event_id.is_none());
    }

    #[test]
    fn slices_share_the_body() {
        let body = Bytes::from_static(b"{}\n{\"type\":\"event\",\"length\":2}\n{}\n");
        let env = Envelope::parse(body.clone()).unwrap();
        let base = body.as_ptr() as usize;
        let p = env.items[0].payload.as_ptr() as usize;
        assert!(p >= base && p < base + body.len());
    }

    #[test]
    fn store_payload_wrapping() {
        let id = Uuid::new_v4();
        let env = Envelope::from_store_payload(id, ItemType::Event, Bytes::from_static(b"{}"));
        let again = Envelope::parse(Bytes::from(
            [
                &env.header[..],
                b"\n",
                &env.items[0].header[..],
                b"\n",
                &env.items[0].payload[..],
            ]
            .concat(),
        ))
        .unwrap();
        assert_eq!(again.event_id, Some(id));
        assert_eq!(&again.items[0].payload[..], b"{}");
    }
}
