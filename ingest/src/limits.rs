//! Relay's default size limits and the per-item check (sentry-protocol.md §4.2).
//!
//! Each item type has a per-item size, a count per envelope and a total size per envelope;
//! the first item over any of them rejects the whole envelope with 413 naming its type.
//! Container items (batched spans/logs with `item_count`) are checked by average item size.

use serde::{Deserialize, Serialize};

use crate::envelope::{Envelope, Item, ItemType};

const KIB: usize = 1024;
const MIB: usize = 1024 * 1024;

/// Size limits, defaulting to Relay's (`relay-config` `Limits`, newest).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
#[allow(missing_docs)]
pub struct Limits {
    /// Whole decoded envelope body (also the cap for the compressed body).
    pub max_envelope_size: usize,
    /// Event-like items; also the store endpoint's body.
    pub max_event_size: usize,
    pub max_attachment_size: usize,
    pub max_attachments_size: usize,
    pub max_attachment_count: usize,
    pub max_check_in_size: usize,
    pub max_sessions_size: usize,
    pub max_session_count: usize,
    pub max_client_reports_size: usize,
    pub max_client_reports_count: usize,
    pub max_profile_size: usize,
    pub max_span_size: usize,
    pub max_standalone_span_count: usize,
    pub max_log_size: usize,
    pub max_container_size: usize,
    pub max_trace_metric_size: usize,
    pub max_statsd_size: usize,
    pub max_metric_buckets_size: usize,
    pub max_replay_compressed_size: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_envelope_size: 200 * MIB,
            max_event_size: MIB,
            max_attachment_size: 200 * MIB,
            max_attachments_size: 200 * MIB,
            max_attachment_count: 30,
            max_check_in_size: 100 * KIB,
            max_sessions_size: 10 * MIB,
            max_session_count: 100,
            max_client_reports_size: 100 * KIB,
            max_client_reports_count: 100,
            max_profile_size: 50 * MIB,
            max_span_size: 10 * MIB,
            max_standalone_span_count: 25,
            max_log_size: 2 * MIB,
            max_container_size: 12 * MIB,
            max_trace_metric_size: MIB,
            max_statsd_size: MIB,
            max_metric_buckets_size: MIB,
            max_replay_compressed_size: 10 * MIB,
        }
    }
}

/// Remaining allowance of one limit class within an envelope.
#[derive(Debug, Clone, Copy)]
struct Allowance {
    item_size: usize,
    count: usize,
    total: usize,
}

impl Allowance {
    fn new(item_size: usize, count: usize, total: usize) -> Self {
        Allowance {
            item_size,
            count,
            total,
        }
    }

    fn take(&mut self, item: &Item) -> bool {
        let len = item.payload.len();
        let size = match item.item_count {
            Some(n) => len / (n.max(1) as usize),
            None => len,
        };
        if size > self.item_size {
            return false;
        }
        let (Some(count), Some(total)) = (self.count.checked_sub(1), self.total.checked_sub(len))
        else {
            return false;
        };
        self.count = count;
        self.total = total;
        true
    }
}

/// Checks every item against its class; `Err` names the offending item type.
pub fn check_envelope(limits: &Limits, envelope: &Envelope) -> Result<(), String> {
    let l = limits;
    let mut event = Allowance::new(l.max_event_size, 1, l.max_event_size);
    let mut attachment = Allowance::new(
        l.max_attachment_size,
        l.max_attachment_count,
        l.max_attachments_size,
    );
    let mut replay_recording = Allowance::new(
        l.max_replay_compressed_size,
        1,
        l.max_replay_compressed_size,
    );
    let mut replay_video = replay_recording;
    let mut session = Allowance::new(
        l.max_sessions_size,
        l.max_session_count,
        l.max_sessions_size,
    );
    let mut client_report = Allowance::new(
        l.max_client_reports_size,
        l.max_client_reports_count,
        l.max_client_reports_size,
    );
    let mut profile = Allowance::new(l.max_profile_size, 1, l.max_profile_size);
    let mut check_in = Allowance::new(l.max_check_in_size, 1, l.max_check_in_size);
    let mut statsd = Allowance::new(l.max_statsd_size, 1, l.max_statsd_size);
    let mut metric_buckets =
        Allowance::new(l.max_metric_buckets_size, 1, l.max_metric_buckets_size);
    let mut log = Allowance::new(l.max_log_size, 1, l.max_container_size);
    let mut trace_metric = Allowance::new(l.max_trace_metric_size, 1, l.max_container_size);
    let mut span = Allowance::new(l.max_span_size, 1, l.max_container_size);
    let mut span_legacy = Allowance::new(
        l.max_span_size,
        l.max_standalone_span_count,
        l.max_container_size,
    );

    for item in &envelope.items {
        let allowance = match item.ty {
            ItemType::Event
            | ItemType::Transaction
            | ItemType::Security
            | ItemType::ReplayEvent
            | ItemType::Nel
            | ItemType::Feedback
            | ItemType::FormData => &mut event,
            ItemType::Attachment | ItemType::UnrealReport | ItemType::UserReport => &mut attachment,
            ItemType::ReplayRecording => &mut replay_recording,
            ItemType::ReplayVideo => &mut replay_video,
            ItemType::Session | ItemType::Sessions => &mut session,
            ItemType::ClientReport => &mut client_report,
            ItemType::Profile | ItemType::ProfileChunk => &mut profile,
            ItemType::CheckIn => &mut check_in,
            ItemType::Statsd => &mut statsd,
            ItemType::MetricBuckets => &mut metric_buckets,
            ItemType::Log => &mut log,
            ItemType::TraceMetric => &mut trace_metric,
            ItemType::Span if item.item_count.is_some() => &mut span,
            ItemType::Span => &mut span_legacy,
            ItemType::Unknown(_) => continue,
        };
        if !allowance.take(item) {
            return Err(item.ty.name().to_owned());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn envelope(items: &[(&str, usize)]) -> Envelope {
        let mut body = b"{}\n".to_vec();
        for (ty, len) in items {
            body.extend_from_slice(format!("{{\"type\":\"{ty}\",\"length\":{len}}}\n").as_bytes());
            body.extend(std::iter::repeat_n(b'x', *len));
            body.push(b'\n');
        }
        Envelope::parse(Bytes::from(body)).unwrap()
    }

    #[test]
    fn defaults_accept_normal_envelopes() {
        let limits = Limits::default();
        let env = envelope(&[
            ("event", 10_000),
            ("attachment", 100_000),
            ("client_report", 100),
            ("weird", 5 * MIB),
        ]);
        assert_eq!(check_envelope(&limits, &env), Ok(()));
    }

    #[test]
    fn oversized_event() {
        let env = envelope(&[("event", MIB + 1)]);
        assert_eq!(
            check_envelope(&Limits::default(), &env),
            Err("event".to_owned())
        );
        let env = envelope(&[("transaction", MIB)]);
        assert_eq!(check_envelope(&Limits::default(), &env), Ok(()));
    }

    #[test]
    fn counts() {
        let env = envelope(&[("event", 10), ("transaction", 10)]);
        assert_eq!(
            check_envelope(&Limits::default(), &env),
            Err("transaction".to_owned())
        );
        let many: Vec<(&str, usize)> = vec![("attachment", 1); 31];
        assert_eq!(
            check_envelope(&Limits::default(), &envelope(&many)),
            Err("attachment".to_owned())
        );
        let limits = Limits {
            max_check_in_size: 10,
            ..Limits::default()
        };
        assert_eq!(
            check_envelope(&limits, &envelope(&[("check_in", 11)])),
            Err("check_in".to_owned())
        );
    }

    #[test]
    fn container_uses_average() {
        let limits = Limits {
            max_span_size: 100,
            ..Limits::default()
        };
        let body = b"{}\n{\"type\":\"span\",\"item_count\":10,\"length\":500}\n".to_vec();
        let mut body = body;
        body.extend(std::iter::repeat_n(b'x', 500));
        let env = Envelope::parse(Bytes::from(body)).unwrap();
        assert_eq!(check_envelope(&limits, &env), Ok(()));
    }
}
