//! Issue alert evaluation, during the batch.
//!
//! For every processed error event the pipeline hands the [`AlertEngine`] the event, its
//! issue and whether the event created or regressed that issue; the engine checks the
//! project's rules ([`storage::alerts::AlertRule`]): environment, conditions combined by
//! `actionMatch`, filters combined by `filterMatch`, then the per-(rule, issue) throttle of
//! `frequency` minutes. A firing is written into the batch (history record and throttle mark,
//! so a restart does not fire again) and delivered to the webhooks only after the batch is
//! committed ([`AlertEngine::committed`]).
//!
//! Frequency conditions count events per (rule, issue, condition) in an in-memory sliding
//! window of 60 sub-buckets (1 s for `1m`, 1 min for `1h`, 24 min for `1d`), keyed by the
//! time the event was received. Approximations, by design: the window's oldest sub-bucket
//! is counted whole (a count can be high by at most one sub-bucket's events at the edge);
//! windows start empty when the process starts (events before a restart are not counted);
//! windows of events replayed after a failed commit may count those events twice; and when
//! more than [`AlertConfig::max_windows`] windows exist they are all reset. Unique users are
//! exact within a window up to the rule's threshold + 1 distinct users (all the condition
//! needs), hashed like the issue's user counter.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use crate::value::Value;
use parking_lot::Mutex;
use serde_json::json;
use storage::alerts::{
    self, level_number, Action, AlertRule, Condition, Filter, FiredAlert, LevelMatch, TagMatch,
};
use storage::records::{qualified_short_id, IssueRecord};
use storage::{cf, keys, Project, Store, WriteBatch};
use uuid::Uuid;

use crate::error::Result;
use crate::issues;
use crate::webhook::{Delivery, WebhookQueue};

/// Sub-buckets per frequency window.
const SUB_BUCKETS: u64 = 60;
/// Most distinct users remembered per window.
const MAX_USERS_PER_WINDOW: u64 = 10_000;

/// Engine tuning.
#[derive(Debug, Clone)]
pub struct AlertConfig {
    /// Base URL of links in payloads (no trailing slash), e.g. `http://osprey.example:9000`.
    pub base_url: String,
    /// Most frequency windows kept; beyond it every window is reset.
    pub max_windows: usize,
    /// Most throttle marks cached; beyond it the cache is cleared (it reloads from the store).
    pub max_throttle_cache: usize,
}

impl Default for AlertConfig {
    fn default() -> Self {
        AlertConfig {
            base_url: "http://127.0.0.1:9000".into(),
            max_windows: 100_000,
            max_throttle_cache: 100_000,
        }
    }
}

/// What the pipeline knows about one processed error event.
#[derive(Debug)]
pub struct EventFacts<'a> {
    /// The normalized event.
    pub event: &'a Value,
    /// Its id.
    pub event_id: Uuid,
    /// It created the issue.
    pub was_new: bool,
    /// It reopened a resolved issue.
    pub was_regression: bool,
    /// Processing clock (the record's receive time), unix ms.
    pub now_ms: u64,
}

/// Alerts of one batch, before commit.
#[derive(Debug, Default)]
pub struct BatchAlerts {
    throttle: HashMap<(u64, u64), u64>,
    fired: Vec<(FiredAlert, Vec<Action>)>,
    events: HashMap<u64, i64>,
}

/// Alerts written with a batch, to deliver once it is committed.
#[derive(Debug, Default)]
pub struct PendingAlerts {
    fired: Vec<(FiredAlert, Vec<Action>)>,
}

#[derive(Debug)]
struct Window {
    sub_ms: u64,
    interval_ms: u64,
    buckets: VecDeque<(u64, u64)>,
    users: HashMap<u64, u64>,
}

impl Window {
    fn new(interval_ms: u64) -> Window {
        Window {
            sub_ms: (interval_ms / SUB_BUCKETS).max(1),
            interval_ms,
            buckets: VecDeque::new(),
            users: HashMap::new(),
        }
    }

    fn evict(&mut self, now_ms: u64) {
        let oldest = now_ms.saturating_sub(self.interval_ms);
        while self
            .buckets
            .front()
            .is_some_and(|&(start, _)| start + self.sub_ms <= oldest)
        {
            self.buckets.pop_front();
        }
        self.users.retain(|_, seen| *seen > oldest);
    }

    /// Counts one event; returns the events in the window.
    fn add_event(&mut self, now_ms: u64) -> u64 {
        let start = now_ms - now_ms % self.sub_ms;
        match self.buckets.back_mut() {
            Some((s, n)) if *s >= start => *n += 1,
            _ => self.buckets.push_back((start, 1)),
        }
        self.evict(now_ms);
        // Bounded: only sub-buckets inside the window survive eviction.
        self.buckets.iter().map(|&(_, n)| n).sum()
    }

    /// Notes a user; returns the distinct users in the window (capped at `cap`).
    fn add_user(&mut self, now_ms: u64, user_hash: Option<u64>, cap: u64) -> u64 {
        self.evict(now_ms);
        if let Some(user) = user_hash {
            if !self.users.contains_key(&user) && self.users.len() as u64 >= cap {
                if let Some((&oldest, _)) = self.users.iter().min_by_key(|(_, seen)| **seen) {
                    self.users.remove(&oldest);
                }
            }
            self.users.insert(user, now_ms);
        }
        self.users.len() as u64
    }
}

#[derive(Debug, Default)]
struct EngineState {
    windows: HashMap<(u64, u64, usize), Window>,
    throttle: HashMap<(u64, u64), u64>,
}

/// Evaluates issue alert rules and hands firings to the webhook queue.
#[derive(Debug, Default)]
pub struct AlertEngine {
    config: AlertConfig,
    base_url: Mutex<Option<String>>,
    state: Mutex<EngineState>,
    sink: Mutex<Option<Arc<WebhookQueue>>>,
}

fn level_passes(event_level: &str, match_: LevelMatch, rule_level: &str) -> bool {
    let (Some(e), Some(r)) = (level_number(event_level), level_number(rule_level)) else {
        return false;
    };
    match match_ {
        LevelMatch::Eq => e == r,
        LevelMatch::Gte => e >= r,
        LevelMatch::Lte => e <= r,
    }
}

fn tag_passes(event: &Value, key: &str, match_: TagMatch, value: &str) -> bool {
    let found = issues::tag_pairs(event)
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v);
    match (match_, found) {
        (TagMatch::IsSet, f) => f.is_some(),
        (TagMatch::NotSet, f) => f.is_none(),
        (TagMatch::Eq, Some(v)) => v == value,
        (TagMatch::Ne, Some(v)) => v != value,
        (TagMatch::Ne, None) => true,
        (TagMatch::StartsWith, Some(v)) => v.starts_with(value),
        (TagMatch::EndsWith, Some(v)) => v.ends_with(value),
        (TagMatch::Contains, Some(v)) => v.contains(value),
        (TagMatch::NotContains, Some(v)) => !v.contains(value),
        (TagMatch::NotContains, None) => true,
        (_, None) => false,
    }
}

fn rfc3339(ms: u64) -> String {
    chrono::DateTime::from_timestamp_millis(ms as i64)
        .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

impl AlertEngine {
    /// An engine without a delivery queue (firings are recorded, not sent, until
    /// [`AlertEngine::set_delivery`]).
    pub fn new(config: AlertConfig) -> AlertEngine {
        AlertEngine {
            config,
            ..AlertEngine::default()
        }
    }

    /// Base URL of payload links (overrides [`AlertConfig::base_url`]), e.g. the server's
    /// public address.
    pub fn set_base_url(&self, base_url: &str) {
        *self.base_url.lock() = Some(base_url.trim_end_matches('/').to_owned());
    }

    /// Where committed firings go.
    pub fn set_delivery(&self, queue: Arc<WebhookQueue>) {
        *self.sink.lock() = Some(queue);
    }

    /// Evaluates the project's rules on one error event of `issue` (already updated by the
    /// event). Called by the pipeline inside the batch.
    pub fn observe(
        &self,
        batch: &mut BatchAlerts,
        store: &Store,
        project: &Project,
        issue: &IssueRecord,
        facts: &EventFacts<'_>,
    ) -> Result<()> {
        let rules = store.alert_rules(project.id);
        if rules.is_empty() {
            return Ok(());
        }
        *batch.events.entry(issue.id).or_insert(0) += 1;
        let environment = facts
            .event
            .get("environment")
            .and_then(Value::as_str)
            .unwrap_or("");
        let level = facts
            .event
            .get("level")
            .and_then(Value::as_str)
            .unwrap_or("error");
        let user_hash =
            issues::user_tag(facts.event).map(|u| xxhash_rust::xxh3::xxh3_64(u.as_bytes()));
        for rule in rules.iter() {
            if rule
                .environment
                .as_deref()
                .is_some_and(|e| e != environment)
            {
                continue;
            }
            let conditions = self.conditions(rule, issue.id, facts, user_hash);
            let conditions_pass = rule.action_match.combine(conditions);
            let filters_pass = rule
                .filter_match
                .combine(rule.filters.iter().map(|f| match f {
                    Filter::Level { match_, level: l } => level_passes(level, *match_, l),
                    Filter::TaggedEvent { key, match_, value } => {
                        tag_passes(facts.event, key, *match_, value)
                    }
                }));
            if !(conditions_pass && filters_pass)
                || self.throttled(batch, store, rule, issue.id, facts.now_ms)?
            {
                continue;
            }
            let fired = self.fire(batch, store, project, rule, issue, facts)?;
            batch.throttle.insert((rule.id, issue.id), facts.now_ms);
            batch.fired.push((fired, rule.actions.clone()));
        }
        Ok(())
    }

    /// Each condition's result; frequency conditions count the event in their windows.
    fn conditions(
        &self,
        rule: &AlertRule,
        issue_id: u64,
        facts: &EventFacts<'_>,
        user_hash: Option<u64>,
    ) -> Vec<bool> {
        let mut state = self.state.lock();
        if state.windows.len() > self.config.max_windows {
            state.windows.clear();
        }
        rule.conditions
            .iter()
            .enumerate()
            .map(|(i, condition)| match condition {
                Condition::FirstSeen => facts.was_new,
                Condition::Regression => facts.was_regression,
                Condition::EventFrequency { value, interval } => {
                    let window = state
                        .windows
                        .entry((rule.id, issue_id, i))
                        .or_insert_with(|| Window::new(interval.millis()));
                    window.add_event(facts.now_ms) > *value
                }
                Condition::UniqueUserFrequency { value, interval } => {
                    let window = state
                        .windows
                        .entry((rule.id, issue_id, i))
                        .or_insert_with(|| Window::new(interval.millis()));
                    let cap = value.saturating_add(1).min(MAX_USERS_PER_WINDOW);
                    window.add_user(facts.now_ms, user_hash, cap) > *value
                }
            })
            .collect()
    }

    fn throttled(
        &self,
        batch: &BatchAlerts,
        store: &Store,
        rule: &AlertRule,
        issue_id: u64,
        now_ms: u64,
    ) -> Result<bool> {
        if rule.frequency == 0 {
            return Ok(false);
        }
        let key = (rule.id, issue_id);
        let last = match batch.throttle.get(&key) {
            Some(ms) => Some(*ms),
            None => {
                let cached = self.state.lock().throttle.get(&key).copied();
                match cached {
                    Some(ms) => Some(ms),
                    None => {
                        let stored = alerts::load_throttle(store, rule.id, issue_id)?;
                        if let Some(ms) = stored {
                            self.remember_throttle(key, ms);
                        }
                        stored
                    }
                }
            }
        };
        Ok(last.is_some_and(|ms| now_ms < ms.saturating_add(rule.frequency * 60_000)))
    }

    fn remember_throttle(&self, key: (u64, u64), ms: u64) {
        let mut state = self.state.lock();
        if state.throttle.len() >= self.config.max_throttle_cache {
            state.throttle.clear();
        }
        state.throttle.insert(key, ms);
    }

    fn fire(
        &self,
        batch: &BatchAlerts,
        store: &Store,
        project: &Project,
        rule: &AlertRule,
        issue: &IssueRecord,
        facts: &EventFacts<'_>,
    ) -> Result<FiredAlert> {
        let stored_count = store
            .db()
            .get_pinned_cf(
                &store.cf(cf::COUNTERS),
                keys::issue_counter(keys::counters::ISSUE_EVENTS, issue.id),
            )?
            .map(|v| storage::decode_i64(&v))
            .unwrap_or(0);
        let count = stored_count + batch.events.get(&issue.id).copied().unwrap_or(0);
        let org = store
            .meta()
            .organization(project.org_id)
            .map(|o| o.slug.clone())
            .unwrap_or_else(|| project.org_id.to_string());
        let short_id = qualified_short_id(&project.slug, issue.short_id);
        let base = self
            .base_url
            .lock()
            .clone()
            .unwrap_or_else(|| self.config.base_url.trim_end_matches('/').to_owned());
        let permalink = format!(
            "{base}/organizations/{org}/issues/{}/?project={}",
            issue.id, project.id
        );
        let event_id = facts.event_id.simple().to_string();
        let event_url = format!(
            "{base}/organizations/{org}/issues/{}/events/{event_id}/?project={}",
            issue.id, project.id
        );
        let text = format!(
            "[{}] {}: {} {} (seen {} times) {}",
            project.slug, rule.name, short_id, issue.title, count, permalink
        );
        let payload = json!({
            "text": text,
            "rule": {"id": rule.id.to_string(), "name": rule.name},
            "project": {"id": project.id.to_string(), "slug": project.slug, "organization": org},
            "issue": {
                "id": issue.id.to_string(),
                "shortId": short_id,
                "title": issue.title,
                "culprit": issue.culprit,
                "level": issue.level,
                "count": count,
                "permalink": permalink,
            },
            "event": {"id": event_id},
            "triggered_at": rfc3339(facts.now_ms),
            "url": event_url,
        });
        Ok(FiredAlert {
            rule_id: rule.id,
            rule_name: rule.name.clone(),
            project_id: project.id,
            issue_id: issue.id,
            event_id,
            fired_ms: facts.now_ms,
            payload,
        })
    }

    /// Writes the batch's firings (history + throttle marks) into the write batch; the
    /// result goes to [`AlertEngine::committed`] once the batch is written.
    pub fn finish(
        &self,
        batch_alerts: BatchAlerts,
        store: &Store,
        batch: &mut WriteBatch,
    ) -> PendingAlerts {
        for (fired, _) in &batch_alerts.fired {
            alerts::put_fired(store, batch, fired);
            alerts::put_throttle(store, batch, fired.rule_id, fired.issue_id, fired.fired_ms);
        }
        PendingAlerts {
            fired: batch_alerts.fired,
        }
    }

    /// After the batch is durable: remembers the throttle marks and queues the deliveries.
    pub fn committed(&self, pending: PendingAlerts) {
        let sink = self.sink.lock().clone();
        for (fired, actions) in pending.fired {
            self.remember_throttle((fired.rule_id, fired.issue_id), fired.fired_ms);
            let Some(sink) = &sink else {
                tracing::debug!(
                    rule = fired.rule_id,
                    "alert fired; no webhook delivery configured"
                );
                continue;
            };
            for delivery in actions
                .iter()
                .filter_map(|action| Delivery::for_action(action, &fired.payload))
            {
                sink.push(delivery);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_slides_and_counts_users() {
        let mut w = Window::new(60_000);
        for i in 0..5 {
            assert_eq!(w.add_event(1_000_000 + i * 1_000), i + 1);
        }
        // 62 s later the first two sub-buckets have left the window; the sub-bucket on the
        // window's edge (the event at +2 s) is still counted whole.
        assert_eq!(w.add_event(1_000_000 + 62_000), 4);
        assert_eq!(w.add_event(1_000_000 + 63_500), 4);
        assert_eq!(w.add_event(1_000_000 + 200_000), 1);
        let mut u = Window::new(60_000);
        assert_eq!(u.add_user(0, Some(1), 3), 1);
        assert_eq!(u.add_user(1, Some(1), 3), 1);
        assert_eq!(u.add_user(2, Some(2), 3), 2);
        assert_eq!(u.add_user(3, None, 3), 2);
        assert_eq!(u.add_user(100_000, Some(3), 3), 1);
    }

    #[test]
    fn filters_compare_levels_and_tags() {
        assert!(level_passes("fatal", LevelMatch::Gte, "40"));
        assert!(!level_passes("warning", LevelMatch::Gte, "error"));
        assert!(level_passes("info", LevelMatch::Lte, "warning"));
        assert!(!level_passes("bogus", LevelMatch::Eq, "error"));
        let event = crate::value::json!({"tags": [["browser", "Chrome 120"], ["os", "Linux"]]});
        assert!(tag_passes(
            &event,
            "browser",
            TagMatch::StartsWith,
            "Chrome"
        ));
        assert!(!tag_passes(&event, "browser", TagMatch::Eq, "Chrome"));
        assert!(tag_passes(&event, "release", TagMatch::NotSet, ""));
        assert!(tag_passes(&event, "os", TagMatch::Eq, "Linux"));
    }
}
