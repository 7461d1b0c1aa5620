//! Metric alerts: transaction-duration percentiles, `count()`, `failure_rate()` and `apdex()`
//! over a window, checked every few seconds against the minute histograms and counters the
//! pipeline writes.
//!
//! The evaluator reads the project-total (or per-environment) minute series directly from
//! the `histograms` column family (storage's key layout, [`keys::perf`]), merges the
//! buckets of the last `timeWindow` minutes (the current, partial minute included) and
//! compares the aggregate with each trigger's `alertThreshold` (milliseconds for durations,
//! 0..1 for failure rate and apdex) above or below, as the rule's `thresholdType` says.
//! A breaching rule fires once and then at most once per `timeWindow` while it keeps
//! breaching; the mark is persisted like issue-alert throttles, so a restart does not
//! re-fire. Fired metric alerts go to the same history with issue id
//! [`alerts::METRIC_ALERT_ISSUE`] and to the same webhook queue. Because evaluation runs on
//! its own thread, it costs the pipeline nothing.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use storage::alerts::{
    self, Action, FiredAlert, MetricAlertRule, ThresholdType, METRIC_ALERT_ISSUE,
};
use storage::keys::perf::{self, Resolution};
use storage::{cf, hist, keys, Store, WriteBatch};

use crate::error::Result;
use crate::webhook::{Delivery, WebhookQueue};

/// The aggregate of `rule` over its window ending at `now_ms`, per project id; `None` when
/// the window holds no transactions (nothing to compare).
pub fn aggregate(
    store: &Store,
    rule: &MetricAlertRule,
    project_id: u64,
    now_ms: u64,
) -> Result<Option<f64>> {
    let mut dims = Vec::new();
    match &rule.environment {
        Some(env) => perf::push_dims(&mut dims, perf::DIM_ENVIRONMENT, env, "", ""),
        None => perf::push_dims(&mut dims, 0, "", "", ""),
    }
    let res = Resolution::Minute;
    let last = res.bucket_start(now_ms);
    let first = last.saturating_sub((rule.time_window.max(1) - 1) * res.millis());
    let handle = store.cf(cf::HISTOGRAMS);
    let mut merged = hist::new_histogram();
    let mut start = first;
    while start <= last {
        let key = keys::bucketed(res.duration_kind(), project_id, start, &dims);
        if let Some(value) = store.db().get_pinned_cf(&handle, key)? {
            hist::add(&mut merged, &hist::decode(&value)?);
        }
        start += res.millis();
    }
    if merged.is_empty() {
        return Ok(None);
    }
    let count = merged.len() as f64;
    let quantile = match rule.aggregate.as_str() {
        "count()" => return Ok(Some(count)),
        "failure_rate()" | "apdex()" => {
            let c = counters(store, project_id, &dims, first, last)?;
            return Ok(Some(if rule.aggregate == "apdex()" {
                (c.satisfied as f64 + c.tolerated as f64 / 2.0) / count
            } else {
                c.failures as f64 / count
            }));
        }
        "p50(transaction.duration)" => 0.50,
        "p75(transaction.duration)" => 0.75,
        "p99(transaction.duration)" => 0.99,
        _ => 0.95,
    };
    // Durations are stored in microseconds; thresholds are in milliseconds.
    Ok(Some(merged.value_at_quantile(quantile) as f64 / 1000.0))
}

/// Failure and apdex counters of one series over minute buckets `first..=last`.
#[derive(Default)]
struct Counters {
    failures: u64,
    satisfied: u64,
    tolerated: u64,
}

/// Sums the transaction counters (`counters` CF: the histogram key with the counter kind
/// byte, then a suffix) of the project-total or environment series. Neither series keeps
/// the transaction, so apdex counters are under the project's apdex configuration key.
fn counters(
    store: &Store,
    project_id: u64,
    dims: &[u8],
    first: u64,
    last: u64,
) -> Result<Counters> {
    let res = Resolution::Minute;
    let apdex_key = store
        .meta()
        .project(project_id)
        .map(|p| perf::apdex_config_key(&p.settings).to_be_bytes());
    let handle = store.cf(cf::COUNTERS);
    let mut out = Counters::default();
    let mut start = first;
    while start <= last {
        let prefix = keys::bucketed(res.counter_kind(), project_id, start, dims);
        for item in store.db().prefix_iterator_cf(&handle, &prefix).take(64) {
            let (key, value) = item?;
            if !key.starts_with(&prefix) {
                break;
            }
            let v = storage::decode_i64(&value).max(0) as u64;
            match &key[prefix.len()..] {
                [perf::COUNTER_STATUS, code] if perf::status_is_failure(*code) && *code < 17 => {
                    out.failures += v
                }
                [kind, k @ ..] if Some(k) == apdex_key.as_ref().map(|a| &a[..]) => match *kind {
                    perf::COUNTER_SATISFIED => out.satisfied += v,
                    perf::COUNTER_TOLERATED => out.tolerated += v,
                    _ => {}
                },
                _ => {}
            }
        }
        start += res.millis();
    }
    Ok(out)
}

/// Checks every metric rule once at `now_ms`; writes history and throttle marks, queues the
/// deliveries (if `sink` is set) and returns what fired.
pub fn evaluate_once(
    store: &Store,
    sink: Option<&WebhookQueue>,
    base_url: &str,
    now_ms: u64,
) -> Result<Vec<FiredAlert>> {
    let mut fired_all = Vec::new();
    for rule in store.metric_alert_rules()? {
        let window_ms = rule.time_window * 60_000;
        let last = alerts::load_throttle(store, rule.id, METRIC_ALERT_ISSUE)?;
        if last.is_some_and(|ms| now_ms < ms.saturating_add(window_ms)) {
            continue;
        }
        let org = store.meta().organization(rule.org_id);
        let org_slug = org.map(|o| o.slug.clone()).unwrap_or_default();
        for slug in &rule.projects {
            let Some(project) = store.meta().project_by_slug(rule.org_id, slug) else {
                continue;
            };
            let Some(value) = aggregate(store, &rule, project.id, now_ms)? else {
                continue;
            };
            // The most severe breached trigger: the threshold furthest past in the rule's
            // direction (highest for "above", lowest for "below").
            let Some(trigger) = rule
                .triggers
                .iter()
                .filter(|t| rule.threshold_type.breached(value, t.alert_threshold))
                .max_by(|a, b| match rule.threshold_type {
                    ThresholdType::Above => a.alert_threshold.total_cmp(&b.alert_threshold),
                    ThresholdType::Below => b.alert_threshold.total_cmp(&a.alert_threshold),
                })
            else {
                continue;
            };
            let base = base_url.trim_end_matches('/');
            let link = format!(
                "{base}/organizations/{org_slug}/alerts/rules/details/{}/?project={}",
                rule.id, project.id
            );
            let text = format!(
                "[{}] {}: {} is {:.1} (threshold {}) over the last {} min {}",
                project.slug,
                rule.name,
                rule.aggregate,
                value,
                trigger.alert_threshold,
                rule.time_window,
                link
            );
            let triggered_at = chrono::DateTime::from_timestamp_millis(now_ms as i64)
                .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
                .unwrap_or_default();
            let payload = json!({
                "text": text,
                "rule": {"id": rule.id.to_string(), "name": rule.name, "type": "metric"},
                "project": {"id": project.id.to_string(), "slug": project.slug, "organization": org_slug},
                "metric": {
                    "aggregate": rule.aggregate,
                    "value": value,
                    "threshold": trigger.alert_threshold,
                    "trigger": trigger.label,
                    "timeWindow": rule.time_window,
                    "environment": rule.environment,
                },
                "triggered_at": triggered_at,
                "url": link,
            });
            let fired = FiredAlert {
                rule_id: rule.id,
                rule_name: rule.name.clone(),
                project_id: project.id,
                issue_id: METRIC_ALERT_ISSUE,
                event_id: String::new(),
                fired_ms: now_ms,
                payload,
            };
            let mut batch = WriteBatch::default();
            alerts::put_fired(store, &mut batch, &fired);
            alerts::put_throttle(store, &mut batch, rule.id, METRIC_ALERT_ISSUE, now_ms);
            store.write(batch, true)?;
            if let Some(sink) = sink {
                for action in &trigger.actions {
                    let Some(url) = action.target_url() else {
                        continue;
                    };
                    let body = match action {
                        Action::Webhook { .. } => serde_json::to_vec(&fired.payload),
                        Action::Slack { .. } => {
                            serde_json::to_vec(&json!({"text": fired.payload["text"]}))
                        }
                    }
                    .unwrap_or_default();
                    sink.push(Delivery {
                        url: url.to_owned(),
                        body,
                    });
                }
            }
            fired_all.push(fired);
            // One firing per rule per window, whichever project breached first.
            break;
        }
    }
    Ok(fired_all)
}

/// Runs [`evaluate_once`] every `every` until `shutdown` is set.
pub fn spawn(
    store: Store,
    sink: Option<Arc<WebhookQueue>>,
    base_url: String,
    every: Duration,
    shutdown: Arc<AtomicBool>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("osprey-metric-alerts".into())
        .spawn(move || {
            while !shutdown.load(Ordering::Acquire) {
                if let Err(e) = evaluate_once(&store, sink.as_deref(), &base_url, storage::now_ms())
                {
                    tracing::warn!(error = %e, "metric alert evaluation failed");
                }
                // Sleep in short steps so shutdown is prompt.
                let mut slept = Duration::ZERO;
                while slept < every && !shutdown.load(Ordering::Acquire) {
                    let step = Duration::from_millis(100).min(every - slept);
                    std::thread::sleep(step);
                    slept += step;
                }
            }
        })
}
