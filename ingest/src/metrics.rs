//! Ingest's Prometheus metrics: accepted and rejected requests and items by reason and
//! category, client-report outcomes, and a request-latency histogram.
//!
//! The accepted path only touches atomics; rejections and client outcomes go through small
//! maps whose label sets are bounded (reasons are a fixed list; client outcome label pairs are
//! capped at [`MAX_OUTCOME_SERIES`]).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;

use crate::outcomes::ClientOutcome;
use crate::rate_limit::DataCategory;

/// Upper bounds (seconds) of the latency histogram buckets.
pub const LATENCY_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Most distinct (outcome, reason, category) series kept from client reports; beyond that the
/// quantities are folded into reason `other` so SDK-chosen strings cannot grow memory.
pub const MAX_OUTCOME_SERIES: usize = 1000;

const N_CAT: usize = DataCategory::ALL.len();
/// Label used for items without a category (client reports, unknown types) or requests that
/// were rejected before their items were known.
const NO_CATEGORY: &str = "none";

/// All ingest counters.
#[derive(Debug)]
pub struct Metrics {
    accepted_requests: AtomicU64,
    accepted_items: [AtomicU64; N_CAT + 1],
    rejected: Mutex<BTreeMap<(&'static str, &'static str), u64>>,
    client_outcomes: Mutex<BTreeMap<(&'static str, String, String), u64>>,
    latency_buckets: [AtomicU64; LATENCY_BUCKETS.len()],
    latency_count: AtomicU64,
    latency_sum_micros: AtomicU64,
    /// Bytes of request bodies currently held by requests being read or processed.
    pub(crate) inflight_body_bytes: AtomicU64,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            accepted_requests: AtomicU64::new(0),
            accepted_items: std::array::from_fn(|_| AtomicU64::new(0)),
            rejected: Mutex::new(BTreeMap::new()),
            client_outcomes: Mutex::new(BTreeMap::new()),
            latency_buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            latency_count: AtomicU64::new(0),
            latency_sum_micros: AtomicU64::new(0),
            inflight_body_bytes: AtomicU64::new(0),
        }
    }
}

fn category_label(category: Option<DataCategory>) -> &'static str {
    category.map(DataCategory::name).unwrap_or(NO_CATEGORY)
}

/// Escapes a Prometheus label value.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

impl Metrics {
    /// Counts one accepted request.
    pub fn accept_request(&self) {
        self.accepted_requests.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one accepted item of `category`.
    pub fn accept_item(&self, category: Option<DataCategory>) {
        let i = category.map(DataCategory::index).unwrap_or(N_CAT);
        self.accepted_items[i].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a rejection (`n` items, or 1 for a whole request) by reason and category.
    pub fn reject(&self, reason: &'static str, category: Option<DataCategory>, n: u64) {
        *self
            .rejected
            .lock()
            .entry((reason, category_label(category)))
            .or_insert(0) += n;
    }

    /// Records the outcomes of one client report.
    pub fn client_outcomes(&self, outcomes: &[ClientOutcome]) {
        let mut map = self.client_outcomes.lock();
        for o in outcomes {
            let key = (o.outcome, o.reason.clone(), o.category.clone());
            if map.len() >= MAX_OUTCOME_SERIES && !map.contains_key(&key) {
                *map.entry((o.outcome, "other".into(), "other".into()))
                    .or_insert(0) += o.quantity;
            } else {
                let v = map.entry(key).or_insert(0);
                *v = v.saturating_add(o.quantity);
            }
        }
    }

    /// Records one request's latency.
    pub fn observe_latency(&self, elapsed: Duration) {
        let secs = elapsed.as_secs_f64();
        if let Some(i) = LATENCY_BUCKETS.iter().position(|b| secs <= *b) {
            self.latency_buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.latency_count.fetch_add(1, Ordering::Relaxed);
        self.latency_sum_micros.fetch_add(
            elapsed.as_micros().min(u128::from(u64::MAX)) as u64,
            Ordering::Relaxed,
        );
    }

    /// Request body bytes currently held by requests in flight.
    pub fn inflight_body_bytes(&self) -> u64 {
        self.inflight_body_bytes.load(Ordering::Relaxed)
    }

    /// Accepted requests so far.
    pub fn accepted_requests(&self) -> u64 {
        self.accepted_requests.load(Ordering::Relaxed)
    }

    /// Accepted items of a category so far.
    pub fn accepted_items(&self, category: DataCategory) -> u64 {
        self.accepted_items[category.index()].load(Ordering::Relaxed)
    }

    /// Rejections recorded under (reason, category name).
    pub fn rejected(&self, reason: &str, category: &str) -> u64 {
        self.rejected
            .lock()
            .iter()
            .filter(|((r, c), _)| *r == reason && *c == category)
            .map(|(_, v)| *v)
            .sum()
    }

    /// Client outcome quantity recorded under (outcome, reason, category).
    pub fn client_outcome(&self, outcome: &str, reason: &str, category: &str) -> u64 {
        self.client_outcomes
            .lock()
            .iter()
            .filter(|((o, r, c), _)| *o == outcome && r == reason && c == category)
            .map(|(_, v)| *v)
            .sum()
    }

    /// Appends the Prometheus text exposition of every ingest metric to `out`.
    pub fn render(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "# HELP osprey_ingest_requests_accepted_total Requests answered 200."
        );
        let _ = writeln!(out, "# TYPE osprey_ingest_requests_accepted_total counter");
        let _ = writeln!(
            out,
            "osprey_ingest_requests_accepted_total {}",
            self.accepted_requests()
        );

        let _ = writeln!(out, "# HELP osprey_ingest_items_accepted_total Envelope items written to the log, by category.");
        let _ = writeln!(out, "# TYPE osprey_ingest_items_accepted_total counter");
        for (i, counter) in self.accepted_items.iter().enumerate() {
            let v = counter.load(Ordering::Relaxed);
            let label = DataCategory::ALL
                .get(i)
                .map(|c| c.name())
                .unwrap_or(NO_CATEGORY);
            let _ = writeln!(
                out,
                "osprey_ingest_items_accepted_total{{category=\"{label}\"}} {v}"
            );
        }

        let _ = writeln!(
            out,
            "# HELP osprey_ingest_rejected_total Rejected requests (and rate-limited items), by reason and category."
        );
        let _ = writeln!(out, "# TYPE osprey_ingest_rejected_total counter");
        for ((reason, category), v) in self.rejected.lock().iter() {
            let _ = writeln!(
                out,
                "osprey_ingest_rejected_total{{reason=\"{reason}\",category=\"{category}\"}} {v}"
            );
        }

        let _ = writeln!(out, "# HELP osprey_ingest_client_outcomes_total Items SDKs report they dropped (client reports).");
        let _ = writeln!(out, "# TYPE osprey_ingest_client_outcomes_total counter");
        for ((outcome, reason, category), v) in self.client_outcomes.lock().iter() {
            let _ = writeln!(
                out,
                "osprey_ingest_client_outcomes_total{{outcome=\"{outcome}\",reason=\"{}\",category=\"{}\"}} {v}",
                escape(reason),
                escape(category)
            );
        }

        let _ = writeln!(
            out,
            "# HELP osprey_ingest_request_duration_seconds Time from request to answer."
        );
        let _ = writeln!(
            out,
            "# TYPE osprey_ingest_request_duration_seconds histogram"
        );
        let mut cumulative = 0;
        for (bound, counter) in LATENCY_BUCKETS.iter().zip(&self.latency_buckets) {
            cumulative += counter.load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "osprey_ingest_request_duration_seconds_bucket{{le=\"{bound}\"}} {cumulative}"
            );
        }
        let count = self.latency_count.load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "osprey_ingest_request_duration_seconds_bucket{{le=\"+Inf\"}} {count}"
        );
        let sum = self.latency_sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "osprey_ingest_request_duration_seconds_sum {sum}");
        let _ = writeln!(out, "osprey_ingest_request_duration_seconds_count {count}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_histogram() {
        let m = Metrics::default();
        m.accept_request();
        m.accept_item(Some(DataCategory::Error));
        m.reject("too_large_item", Some(DataCategory::Error), 1);
        m.reject("missing_auth", None, 1);
        m.observe_latency(Duration::from_micros(700));
        m.observe_latency(Duration::from_secs(20));
        m.client_outcomes(&[ClientOutcome {
            outcome: "client_discard",
            reason: "queue\"overflow".into(),
            category: "error".into(),
            quantity: 4,
        }]);
        let mut s = String::new();
        m.render(&mut s);
        assert!(s.contains("osprey_ingest_requests_accepted_total 1"));
        assert!(s.contains("osprey_ingest_items_accepted_total{category=\"error\"} 1"));
        assert!(s.contains(
            "osprey_ingest_rejected_total{reason=\"too_large_item\",category=\"error\"} 1"
        ));
        assert!(
            s.contains("osprey_ingest_rejected_total{reason=\"missing_auth\",category=\"none\"} 1")
        );
        assert!(s.contains("osprey_ingest_request_duration_seconds_bucket{le=\"0.0005\"} 0"));
        assert!(s.contains("osprey_ingest_request_duration_seconds_bucket{le=\"0.001\"} 1"));
        assert!(s.contains("osprey_ingest_request_duration_seconds_bucket{le=\"10\"} 1"));
        assert!(s.contains("osprey_ingest_request_duration_seconds_bucket{le=\"+Inf\"} 2"));
        assert!(s.contains("osprey_ingest_request_duration_seconds_count 2"));
        assert!(s.contains(r#"reason="queue\"overflow""#));
        assert_eq!(
            m.client_outcome("client_discard", "queue\"overflow", "error"),
            4
        );
    }

    #[test]
    fn outcome_series_are_bounded() {
        let m = Metrics::default();
        for i in 0..(MAX_OUTCOME_SERIES + 50) {
            m.client_outcomes(&[ClientOutcome {
                outcome: "client_discard",
                reason: format!("r{i}"),
                category: "error".into(),
                quantity: 1,
            }]);
        }
        assert!(m.client_outcomes.lock().len() <= MAX_OUTCOME_SERIES + 1);
        assert_eq!(m.client_outcome("client_discard", "other", "other"), 50);
    }
}
