//! Client reports → outcomes (sentry-protocol.md §9).
//!
//! A `client_report` item says how many items the SDK itself dropped and why. Ingest sums them
//! per (outcome, reason, category) into counters exposed on `/metrics`, and logs each report
//! that parses, so that the processor records them as the project's `client_discard` /
//! `rate_limited` / `filtered` outcomes, as Relay does (they show in the stats API). A report
//! that does not parse is dropped.

use serde::Deserialize;

/// Reasons longer than this are skipped (Relay's rule).
pub const MAX_REASON_LEN: usize = 200;

/// One summed outcome line from a client report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientOutcome {
    /// `client_discard`, `rate_limited` or `filtered`.
    pub outcome: &'static str,
    /// The SDK's reason (`queue_overflow`, `before_send`, …).
    pub reason: String,
    /// Data category name.
    pub category: String,
    /// How many.
    pub quantity: u64,
}

#[derive(Deserialize)]
struct Discard {
    #[serde(default)]
    reason: String,
    #[serde(default)]
    category: String,
    #[serde(default)]
    quantity: u64,
}

#[derive(Deserialize)]
struct ClientReport {
    #[serde(default)]
    discarded_events: Vec<Discard>,
    #[serde(default)]
    rate_limited_events: Vec<Discard>,
    #[serde(default)]
    filtered_events: Vec<Discard>,
    #[serde(default)]
    filtered_sampling_events: Vec<Discard>,
}

/// Why a client report was ignored.
#[derive(Debug, thiserror::Error)]
#[error("invalid client report: {0}")]
pub struct ClientReportError(String);

/// Parses one `client_report` payload into outcome lines (entries with quantity 0 or an
/// over-long reason are dropped).
pub fn parse_client_report(payload: &[u8]) -> Result<Vec<ClientOutcome>, ClientReportError> {
    let report: ClientReport =
        serde_json::from_slice(payload).map_err(|e| ClientReportError(e.to_string()))?;
    let mut out = Vec::new();
    for (outcome, list) in [
        ("client_discard", report.discarded_events),
        ("rate_limited", report.rate_limited_events),
        ("filtered", report.filtered_events),
        ("filtered", report.filtered_sampling_events),
    ] {
        for d in list {
            if d.quantity == 0
                || d.reason.len() > MAX_REASON_LEN
                || d.category.is_empty()
                || d.category.len() > 64
            {
                continue;
            }
            out.push(ClientOutcome {
                outcome,
                reason: d.reason,
                category: d.category,
                quantity: d.quantity,
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_discards() {
        let payload = br#"{"timestamp":"2024-01-01T00:00:00Z","discarded_events":[
            {"reason":"queue_overflow","category":"error","quantity":3},
            {"reason":"before_send","category":"transaction","quantity":0},
            {"reason":"sample_rate","category":"transaction","quantity":7}],
            "rate_limited_events":[{"reason":"x","category":"error","quantity":1}]}"#;
        let out = parse_client_report(payload).unwrap();
        assert_eq!(out.len(), 3);
        assert_eq!(out[0].outcome, "client_discard");
        assert_eq!(out[0].reason, "queue_overflow");
        assert_eq!(out[0].quantity, 3);
        assert_eq!(out[1].quantity, 7);
        assert_eq!(out[2].outcome, "rate_limited");
    }

    #[test]
    fn skips_long_reason_and_rejects_garbage() {
        let payload = format!(
            r#"{{"discarded_events":[{{"reason":"{}","category":"error","quantity":1}}]}}"#,
            "r".repeat(201)
        );
        assert!(parse_client_report(payload.as_bytes()).unwrap().is_empty());
        assert!(parse_client_report(b"[1,2]").is_err());
    }
}
