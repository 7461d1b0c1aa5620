//! Metric alerts: transaction-duration percentiles, `count()`, `failure_rate()` and `apdex()`
//! over a window, checked every few seconds against the minute series the pipeline writes.
//!
//! The evaluator reads the project-total (or per-environment) minute series directly from
//! the `histograms` column family (storage's key layout, [`keys::perf`]), merges the
//! buckets of the last `timeWindow` minutes (the current, partial minute included) and
//! compares the aggregate with each trigger's `alertThreshold` (milliseconds for durations).
//! A breaching rule fires once and then at most once per `timeWindow` while it keeps
//! breaching; the mark is persisted like issue-alert throttles, so a restart does not
//! re-fire. Fired metric alerts go to the same history with issue id
//! [`alerts::METRIC_ALERT_ISSUE`] and to the same webhook queue. Because evaluation runs on
//! its own thread, it costs the pipeline nothing.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use storage::alerts::{self, FiredAlert, MetricAlertRule, ThresholdType, METRIC_ALERT_ISSUE};
use storage::keys::perf::{self, Resolution};
use storage::{cf, hist, keys, Store, WriteBatch};

use crate::error::Result;
use crate::webhook::{Delivery, WebhookQueue};

/// The aggregate of `rule` over its window ending at `now_ms`, per project id; `None` when
/// the window holds no transactions (nothing to compare). Percentiles and `count()` come from
/// the merged minute histograms; `apdex()` judges the merged histogram against the project's
/// T (or `apdex(T)`'s), within histogram precision; `failure_rate()` sums the per-status
/// counters of the same series.
pub fn aggregate(
    store: &Store,
    rule: &MetricAlertRule,
    project_id: u64,
    now_ms: u64,
) -> Result<Option<f64>> {
    let query = alerts::parse_metric_query(&rule.query)?;
    let mut dims = Vec::new();
    match (&rule.environment, &query.transaction) {
        (_, Some(name)) => perf::push_dims(&mut dims, perf::DIM_TRANSACTION, "", "", name),
        (Some(env), None) => perf::push_dims(&mut dims, perf::DIM_ENVIRONMENT, env, "", ""),
        (None, None) => perf::push_dims(&mut dims, 0, "", "", ""),
    }
    let res = Resolution::Minute;
    let last = res.bucket_start(now_ms);
    let first = last.saturating_sub((rule.time_window.max(1) - 1) * res.millis());
    let handle = store.cf(cf::HISTOGRAMS);
    let counters = store.cf(cf::COUNTERS);
    let mut merged = hist::new_histogram();
    let (mut total, mut failures) = (0u64, 0u64);
    let want_failures = rule.aggregate == "failure_rate()";
    let mut start = first;
    while start <= last {
        let key = keys::bucketed(res.duration_kind(), project_id, start, &dims);
        if let Some(value) = store.db().get_pinned_cf(&handle, &key)? {
            hist::add(&mut merged, &hist::decode(&value)?);
        }
        if want_failures {
            let mut ckey = keys::bucketed(res.counter_kind(), project_id, start, &dims);
            let base = ckey.len();
            for code in 0..perf::STATUS_NAMES.len() as u8 {
                ckey.truncate(base);
                ckey.extend_from_slice(&[perf::COUNTER_STATUS, code]);
                if let Some(v) = store.db().get_pinned_cf(&counters, &ckey)? {
                    let n = storage::decode_i64(&v).max(0) as u64;
                    total += n;
                    if perf::status_is_failure(code) {
                        failures += n;
                    }
                }
            }
        }
        start += res.millis();
    }
    if merged.is_empty() {
        return Ok(None);
    }
    let quantile = match rule.aggregate.as_str() {
        "count()" => return Ok(Some(merged.len() as f64)),
        "failure_rate()" => {
            return Ok((total > 0).then(|| failures as f64 / total as f64));
        }
        "p50(transaction.duration)" => 0.50,
        "p75(transaction.duration)" => 0.75,
        "p99(transaction.duration)" => 0.99,
        "p95(transaction.duration)" => 0.95,
        other => {
            // apdex() or apdex(T): (satisfied + tolerated / 2) / count.
            let t_ms = match alerts::apdex_threshold_arg(other) {
                Some(t) => t,
                None => store
                    .meta()
                    .project(project_id)
                    .map(|p| p.settings.apdex_threshold_ms)
                    .unwrap_or(300),
            };
            let t_us = t_ms.saturating_mul(1000);
            let satisfied = merged.count_between(0, t_us);
            let tolerated = merged.count_between(t_us + 1, t_us.saturating_mul(4));
            let n = merged.len();
            return Ok(Some((satisfied as f64 + tolerated as f64 / 2.0) / n as f64));
        }
    };
    // Durations are stored in microseconds; thresholds are in milliseconds.
    Ok(Some(merged.value_at_quantile(quantile) as f64 / 1000.0))
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
            // The most severe breached trigger: the threshold furthest past on the bad side.
            let side = rule.threshold_type;
            let Some(trigger) = rule
                .triggers
                .iter()
                .filter(|t| side.breached(value, t.alert_threshold))
                .max_by(|a, b| match side {
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
                "[{}] {}: {} is {:.3} ({} threshold {}) over the last {} min {}",
                project.slug,
                rule.name,
                rule.aggregate,
                value,
                match side {
                    ThresholdType::Above => "above",
                    ThresholdType::Below => "below",
                },
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
                    "query": rule.query,
                    "thresholdType": side,
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
                for delivery in trigger
                    .actions
                    .iter()
                    .filter_map(|action| Delivery::for_action(action, &fired.payload))
                {
                    sink.push(delivery);
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
