//! Issue alert rules (Sentry's "issue alerts") and the history of fired alerts.
//!
//! A rule has Sentry's JSON shape (`/api/0/projects/{org}/{project}/rules/`): `actionMatch`
//! over `conditions` (first seen, regression, event frequency, unique-user frequency, with
//! Sentry's condition ids), `filterMatch` over `filters` (level, tagged event), an optional
//! `environment`, `actions` (osprey's webhook, Sentry's Slack action pointed at an incoming
//! webhook URL) and `frequency`, the per-issue throttle in minutes. Unknown condition, filter
//! or action ids are rejected when the rule is decoded, so a stored rule is always one the
//! processor can evaluate.
//!
//! Rules are JSON in the `meta` column family (`r` + id) and cached in memory per project
//! (the processor looks them up for every error event). Fired alerts are JSON in the `index`
//! column family keyed by project and time, so they expire with retention.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::RwLock;
use serde::{Deserialize, Serialize};

use crate::error::{Result, StorageError};
use crate::{cf, keys, now_ms, Rocks, Store};

/// Longest rule name, in characters.
pub const MAX_NAME_CHARS: usize = 256;
/// Most conditions, filters or actions in one rule (each).
pub const MAX_ITEMS: usize = 32;
/// Longest throttle, in minutes (Sentry's longest choice: 30 days).
pub const MAX_FREQUENCY_MINUTES: u64 = 43_200;
/// Most rules per project.
pub const MAX_RULES_PER_PROJECT: usize = 500;
/// Longest webhook URL.
pub const MAX_URL_LEN: usize = 2048;

/// How the conditions (or filters) of a rule combine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Match {
    /// Every item must pass.
    #[default]
    All,
    /// At least one item must pass.
    Any,
    /// No item may pass.
    None,
}

impl Match {
    /// Combines item results. An empty list passes for `all` and `none`; for `any` an empty
    /// list passes too (Sentry: a rule without conditions fires on every event).
    pub fn combine(self, results: impl IntoIterator<Item = bool>) -> bool {
        let mut iter = results.into_iter().peekable();
        if iter.peek().is_none() {
            return true;
        }
        match self {
            Match::All => iter.all(|r| r),
            Match::Any => iter.any(|r| r),
            Match::None => !iter.any(|r| r),
        }
    }
}

/// Window of a frequency condition (Sentry's `interval` choices up to a day).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Interval {
    /// One minute.
    #[serde(rename = "1m")]
    OneMinute,
    /// Five minutes.
    #[serde(rename = "5m")]
    FiveMinutes,
    /// Fifteen minutes.
    #[serde(rename = "15m")]
    FifteenMinutes,
    /// One hour.
    #[serde(rename = "1h")]
    OneHour,
    /// One day.
    #[serde(rename = "1d")]
    OneDay,
}

impl Interval {
    /// Length in milliseconds.
    pub fn millis(self) -> u64 {
        match self {
            Interval::OneMinute => 60_000,
            Interval::FiveMinutes => 300_000,
            Interval::FifteenMinutes => 900_000,
            Interval::OneHour => 3_600_000,
            Interval::OneDay => 86_400_000,
        }
    }
}

/// A trigger condition, tagged by Sentry's condition id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "id")]
pub enum Condition {
    /// The event created a new issue.
    #[serde(rename = "sentry.rules.conditions.first_seen_event.FirstSeenEventCondition")]
    FirstSeen,
    /// The event reopened a resolved issue.
    #[serde(rename = "sentry.rules.conditions.regression_event.RegressionEventCondition")]
    Regression,
    /// The issue was seen more than `value` times in `interval`.
    #[serde(rename = "sentry.rules.conditions.event_frequency.EventFrequencyCondition")]
    EventFrequency {
        /// Threshold (strictly exceeded, as Sentry's "more than").
        #[serde(deserialize_with = "u64_or_string")]
        value: u64,
        /// Window.
        interval: Interval,
    },
    /// The issue was seen by more than `value` distinct users in `interval`.
    #[serde(rename = "sentry.rules.conditions.event_frequency.EventUniqueUserFrequencyCondition")]
    UniqueUserFrequency {
        /// Threshold (strictly exceeded).
        #[serde(deserialize_with = "u64_or_string")]
        value: u64,
        /// Window.
        interval: Interval,
    },
}

/// Comparison of [`Filter::Level`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum LevelMatch {
    /// Equal.
    #[serde(rename = "eq")]
    Eq,
    /// At least as severe.
    #[serde(rename = "gte")]
    Gte,
    /// At most as severe.
    #[serde(rename = "lte")]
    Lte,
}

/// Comparison of [`Filter::TaggedEvent`] (Sentry's `MatchType` codes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TagMatch {
    /// Equals.
    #[serde(rename = "eq")]
    Eq,
    /// Does not equal.
    #[serde(rename = "ne")]
    Ne,
    /// Starts with.
    #[serde(rename = "sw")]
    StartsWith,
    /// Ends with.
    #[serde(rename = "ew")]
    EndsWith,
    /// Contains.
    #[serde(rename = "co")]
    Contains,
    /// Does not contain.
    #[serde(rename = "nc")]
    NotContains,
    /// The tag is set.
    #[serde(rename = "is")]
    IsSet,
    /// The tag is not set.
    #[serde(rename = "ns")]
    NotSet,
}

/// A filter, tagged by Sentry's filter id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "id")]
pub enum Filter {
    /// The event's level compared with `level` (a name like `error` or Sentry's number `40`).
    #[serde(rename = "sentry.rules.filters.level.LevelFilter")]
    Level {
        /// Comparison.
        #[serde(rename = "match")]
        match_: LevelMatch,
        /// Level name or number.
        #[serde(deserialize_with = "string_or_u64")]
        level: String,
    },
    /// The event's tag `key` compared with `value`.
    #[serde(rename = "sentry.rules.filters.tagged_event.TaggedEventFilter")]
    TaggedEvent {
        /// Tag key.
        key: String,
        /// Comparison.
        #[serde(rename = "match")]
        match_: TagMatch,
        /// Value (unused by `is`/`ns`).
        #[serde(default)]
        value: String,
    },
}

/// Sentry's numeric level (`logging` numbers); `None` for an unknown name.
pub fn level_number(level: &str) -> Option<u8> {
    Some(match level {
        "debug" | "10" => 10,
        "info" | "20" => 20,
        "warning" | "30" => 30,
        "error" | "40" => 40,
        "fatal" | "50" => 50,
        _ => return None,
    })
}

/// Where a fired alert goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "id")]
pub enum Action {
    /// POST the full JSON payload to `url`.
    #[serde(rename = "osprey.actions.webhook")]
    Webhook {
        /// `http://` URL.
        url: String,
    },
    /// Sentry's Slack action; osprey posts `{"text": …}` to a Slack incoming-webhook URL
    /// given as `webhook` (or `url`). `workspace`/`channel` are kept for display only.
    #[serde(rename = "sentry.integrations.slack.notify_action.SlackNotifyServiceAction")]
    Slack {
        /// Incoming-webhook URL.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        webhook: Option<String>,
        /// Alternative spelling of the URL.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        url: Option<String>,
        /// Slack channel, as Sentry's form has it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        channel: Option<String>,
        /// Slack workspace id, as Sentry's form has it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        workspace: Option<String>,
    },
}

impl Action {
    /// The URL the action posts to.
    pub fn target_url(&self) -> Option<&str> {
        match self {
            Action::Webhook { url } => Some(url),
            Action::Slack { webhook, url, .. } => webhook.as_deref().or(url.as_deref()),
        }
    }
}

fn default_frequency() -> u64 {
    30
}

/// An issue alert rule in Sentry's shape.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AlertRule {
    /// Id (assigned on create).
    #[serde(default)]
    pub id: u64,
    /// Owning project (set from the URL on create).
    #[serde(default)]
    pub project_id: u64,
    /// Name.
    pub name: String,
    /// How conditions combine.
    #[serde(default)]
    pub action_match: Match,
    /// How filters combine.
    #[serde(default)]
    pub filter_match: Match,
    /// Trigger conditions.
    #[serde(default)]
    pub conditions: Vec<Condition>,
    /// Filters.
    #[serde(default)]
    pub filters: Vec<Filter>,
    /// Only events of this environment (`None` = all).
    #[serde(default)]
    pub environment: Option<String>,
    /// Where to send.
    #[serde(default)]
    pub actions: Vec<Action>,
    /// Throttle per issue, in minutes (0 = fire on every matching event).
    #[serde(default = "default_frequency")]
    pub frequency: u64,
    /// Created, unix ms.
    #[serde(default)]
    pub created_ms: u64,
}

/// Turns a serde decoding error of a rule body into a clear 400-style message.
/// Condition ids an issue alert rule accepts.
pub const CONDITION_IDS: &[&str] = &[
    "sentry.rules.conditions.first_seen_event.FirstSeenEventCondition",
    "sentry.rules.conditions.regression_event.RegressionEventCondition",
    "sentry.rules.conditions.event_frequency.EventFrequencyCondition",
    "sentry.rules.conditions.event_frequency.EventUniqueUserFrequencyCondition",
];
/// Filter ids an issue alert rule accepts.
pub const FILTER_IDS: &[&str] = &[
    "sentry.rules.filters.level.LevelFilter",
    "sentry.rules.filters.tagged_event.TaggedEventFilter",
];
/// Action ids alert rules accept.
pub const ACTION_IDS: &[&str] = &[
    "osprey.actions.webhook",
    "sentry.integrations.slack.notify_action.SlackNotifyServiceAction",
];

/// Checks that every item of `body[field]` (if present) has one of the `known` ids, so that
/// the error names the item (`conditions[1]`) and lists what is accepted, which serde's
/// "unknown variant" does not.
fn check_ids(body: &serde_json::Value, field: &str, known: &[&str]) -> Result<()> {
    let Some(items) = body.get(field) else {
        return Ok(());
    };
    let Some(items) = items.as_array() else {
        return Err(StorageError::Invalid(format!("{field} must be a list")));
    };
    for (i, item) in items.iter().enumerate() {
        let id = item.get("id").and_then(serde_json::Value::as_str);
        if !id.is_some_and(|id| known.contains(&id)) {
            let what = match id {
                Some(id) => format!("unknown id {id:?}"),
                None => "no \"id\"".to_owned(),
            };
            return Err(StorageError::Invalid(format!(
                "{field}[{i}] has {what}; supported ids: {}",
                known.join(", ")
            )));
        }
    }
    Ok(())
}

fn decode_error(what: &str, e: &serde_json::Error) -> StorageError {
    StorageError::Invalid(format!("invalid {what}: {e}"))
}

impl AlertRule {
    /// Decodes and validates a rule body in Sentry's shape (what `POST`/`PUT
    /// /api/0/projects/{org}/{project}/rules/` take, and what the CLI and MCP tools send).
    /// `id`, `projectId` and `createdMs` in the body are ignored: the store assigns them.
    /// Every failure is [`StorageError::Invalid`] with a message fit for the caller.
    pub fn from_api_json(body: &serde_json::Value) -> Result<AlertRule> {
        if !body.is_object() {
            return Err(StorageError::Invalid(
                "an alert rule must be a JSON object".into(),
            ));
        }
        let mut body = body.clone();
        if let Some(obj) = body.as_object_mut() {
            for key in ["id", "projectId", "createdMs", "dateCreated", "projects"] {
                obj.remove(key);
            }
            // Sentry's forms send `"environment": null` or `""` for "all environments".
            if obj.get("environment").and_then(|v| v.as_str()) == Some("") {
                obj.insert("environment".into(), serde_json::Value::Null);
            }
            // `frequency` arrives as a number or a numeric string.
            if let Some(f) = obj.get("frequency").and_then(|v| v.as_str()) {
                let n: u64 = f.trim().parse().map_err(|_| {
                    StorageError::Invalid(format!(
                        "frequency must be a number of minutes, got {f:?}"
                    ))
                })?;
                obj.insert("frequency".into(), n.into());
            }
        }
        check_ids(&body, "conditions", CONDITION_IDS)?;
        check_ids(&body, "filters", FILTER_IDS)?;
        check_ids(&body, "actions", ACTION_IDS)?;
        let rule: AlertRule =
            serde_json::from_value(body).map_err(|e| decode_error("alert rule", &e))?;
        rule.validate()?;
        Ok(rule)
    }

    /// Checks sizes and URLs; the decoder already rejected unknown ids.
    pub fn validate(&self) -> Result<()> {
        let bad = |detail: String| Err(StorageError::Invalid(detail));
        let name_chars = self.name.trim().chars().count();
        if name_chars == 0 || name_chars > MAX_NAME_CHARS {
            return bad(format!("name must be 1 to {MAX_NAME_CHARS} characters"));
        }
        if self.conditions.len() > MAX_ITEMS
            || self.filters.len() > MAX_ITEMS
            || self.actions.len() > MAX_ITEMS
        {
            return bad(format!(
                "at most {MAX_ITEMS} conditions, filters and actions"
            ));
        }
        if self.actions.is_empty() {
            return bad("a rule needs at least one action".into());
        }
        if self.frequency > MAX_FREQUENCY_MINUTES {
            return bad(format!(
                "frequency must be at most {MAX_FREQUENCY_MINUTES} minutes"
            ));
        }
        for filter in &self.filters {
            match filter {
                Filter::Level { level, .. } if level_number(level).is_none() => {
                    return bad(format!("unknown level {level:?}"));
                }
                Filter::TaggedEvent { key, .. } if key.is_empty() || key.len() > 200 => {
                    return bad("tag key must be 1 to 200 bytes".into());
                }
                _ => {}
            }
        }
        for action in &self.actions {
            let Some(url) = action.target_url() else {
                return bad("the Slack action needs a webhook URL".into());
            };
            if url.len() > MAX_URL_LEN
                || !(url.starts_with("http://") || url.starts_with("https://"))
            {
                return bad(format!("invalid action URL {url:?}"));
            }
        }
        Ok(())
    }
}

/// A number sent as a JSON number or as a numeric string (Sentry's forms send both).
fn number_or_string<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de> + std::str::FromStr,
    T::Err: std::fmt::Display,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either<T> {
        N(T),
        S(String),
    }
    match Either::<T>::deserialize(d)? {
        Either::N(n) => Ok(n),
        Either::S(s) => s.trim().parse().map_err(serde::de::Error::custom),
    }
}

fn u64_or_string<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    number_or_string(d)
}

fn f64_or_string<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    number_or_string(d)
}

fn string_or_u64<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either {
        N(u64),
        S(String),
    }
    Ok(match Either::deserialize(d)? {
        Either::N(n) => n.to_string(),
        Either::S(s) => s,
    })
}

/// One fired alert, as kept in the history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FiredAlert {
    /// Rule id.
    pub rule_id: u64,
    /// Rule name at the time.
    pub rule_name: String,
    /// Project.
    pub project_id: u64,
    /// Issue.
    pub issue_id: u64,
    /// The event that fired it (32 hex).
    pub event_id: String,
    /// When, unix ms.
    pub fired_ms: u64,
    /// The JSON payload sent to the webhooks.
    pub payload: serde_json::Value,
}

/// In-memory copy of every rule, by project (the processor reads it per event).
#[derive(Default)]
pub(crate) struct RuleCache {
    by_project: RwLock<HashMap<u64, Arc<Vec<Arc<AlertRule>>>>>,
}

impl RuleCache {
    pub(crate) fn load(db: &Rocks) -> Result<RuleCache> {
        let cache = RuleCache::default();
        cache.reload(db)?;
        Ok(cache)
    }

    pub(crate) fn reload(&self, db: &Rocks) -> Result<()> {
        let handle = db.cf_handle(cf::META).expect("meta column family exists");
        let mut map: HashMap<u64, Vec<Arc<AlertRule>>> = HashMap::new();
        let start = [keys::meta::ALERT_RULE];
        let mode = rocksdb::IteratorMode::From(&start, rocksdb::Direction::Forward);
        for item in db.iterator_cf(&handle, mode) {
            let (key, value) = item?;
            if key.first() != Some(&keys::meta::ALERT_RULE) {
                break;
            }
            let rule: AlertRule = serde_json::from_slice(&value)?;
            map.entry(rule.project_id).or_default().push(Arc::new(rule));
        }
        let map = map
            .into_iter()
            .map(|(project, mut rules)| {
                rules.sort_by_key(|r| r.id);
                (project, Arc::new(rules))
            })
            .collect();
        *self.by_project.write() = map;
        Ok(())
    }

    fn upsert(&self, rule: Arc<AlertRule>) {
        let mut map = self.by_project.write();
        let entry = map.entry(rule.project_id).or_default();
        let mut rules: Vec<_> = entry.iter().filter(|r| r.id != rule.id).cloned().collect();
        rules.push(rule);
        rules.sort_by_key(|r| r.id);
        *entry = Arc::new(rules);
    }

    fn remove(&self, project_id: u64, rule_id: u64) {
        let mut map = self.by_project.write();
        if let Some(entry) = map.get_mut(&project_id) {
            let rules: Vec<_> = entry.iter().filter(|r| r.id != rule_id).cloned().collect();
            *entry = Arc::new(rules);
        }
    }

    fn of_project(&self, project_id: u64) -> Arc<Vec<Arc<AlertRule>>> {
        self.by_project
            .read()
            .get(&project_id)
            .cloned()
            .unwrap_or_default()
    }

    fn by_id(&self, rule_id: u64) -> Option<Arc<AlertRule>> {
        self.by_project
            .read()
            .values()
            .flat_map(|rules| rules.iter())
            .find(|r| r.id == rule_id)
            .cloned()
    }
}

impl Store {
    /// Every alert rule of a project, by id (a shared snapshot; cheap to call per event).
    pub fn alert_rules(&self, project_id: u64) -> Arc<Vec<Arc<AlertRule>>> {
        self.alert_cache().of_project(project_id)
    }

    /// One rule by id.
    pub fn alert_rule(&self, rule_id: u64) -> Option<Arc<AlertRule>> {
        self.alert_cache().by_id(rule_id)
    }

    /// Creates a rule for `project_id` (the rule's `id`, `project_id` and `created_ms` are
    /// assigned here).
    pub fn create_alert_rule(
        &self,
        project_id: u64,
        mut rule: AlertRule,
    ) -> Result<Arc<AlertRule>> {
        self.ensure_writable()?;
        if self.meta().project(project_id).is_none() {
            return Err(StorageError::NotFound(format!("project {project_id}")));
        }
        rule.validate()?;
        if self.alert_rules(project_id).len() >= MAX_RULES_PER_PROJECT {
            return Err(StorageError::Conflict(format!(
                "a project has at most {MAX_RULES_PER_PROJECT} alert rules"
            )));
        }
        rule.id = self.next_id("alert_rule")?;
        rule.project_id = project_id;
        rule.created_ms = now_ms();
        self.put_alert_rule(rule)
    }

    /// Replaces an existing rule (id, project and creation time are kept).
    pub fn update_alert_rule(&self, rule_id: u64, mut rule: AlertRule) -> Result<Arc<AlertRule>> {
        self.ensure_writable()?;
        let existing = self
            .alert_rule(rule_id)
            .ok_or_else(|| StorageError::NotFound(format!("alert rule {rule_id}")))?;
        rule.validate()?;
        rule.id = existing.id;
        rule.project_id = existing.project_id;
        rule.created_ms = existing.created_ms;
        self.put_alert_rule(rule)
    }

    fn put_alert_rule(&self, rule: AlertRule) -> Result<Arc<AlertRule>> {
        self.put_meta(&keys::prefixed_id(keys::meta::ALERT_RULE, rule.id), &rule)?;
        let rule = Arc::new(rule);
        self.alert_cache().upsert(Arc::clone(&rule));
        Ok(rule)
    }

    /// Deletes a rule.
    pub fn delete_alert_rule(&self, rule_id: u64) -> Result<()> {
        self.ensure_writable()?;
        let existing = self
            .alert_rule(rule_id)
            .ok_or_else(|| StorageError::NotFound(format!("alert rule {rule_id}")))?;
        self.delete_meta(&keys::prefixed_id(keys::meta::ALERT_RULE, rule_id))?;
        self.alert_cache().remove(existing.project_id, rule_id);
        Ok(())
    }

    /// Fired alerts of a project, newest first, at most `limit` (capped at 1000).
    pub fn fired_alerts(&self, project_id: u64, limit: usize) -> Result<Vec<FiredAlert>> {
        let limit = limit.min(1000);
        let handle = self.cf(cf::INDEX);
        let upper = keys::alert_fired(project_id, u64::MAX, u64::MAX, u64::MAX);
        let mode = rocksdb::IteratorMode::From(&upper, rocksdb::Direction::Reverse);
        let mut out = Vec::new();
        for item in self.db().iterator_cf(&handle, mode) {
            if out.len() >= limit {
                break;
            }
            let (key, value) = item?;
            if key.len() != 33
                || key[0] != keys::index::ALERT_FIRED
                || key[1..9] != project_id.to_be_bytes()
            {
                break;
            }
            out.push(
                serde_json::from_slice(&value).map_err(|e| StorageError::Corrupt {
                    what: "fired alert",
                    detail: e.to_string(),
                })?,
            );
        }
        Ok(out)
    }
}

/// Adds a fired alert to a write batch (the processor commits it with the batch).
pub fn put_fired(store: &Store, batch: &mut crate::WriteBatch, fired: &FiredAlert) {
    let key = keys::alert_fired(
        fired.project_id,
        fired.fired_ms,
        fired.rule_id,
        fired.issue_id,
    );
    let value = serde_json::to_vec(fired).unwrap_or_default();
    batch.put_cf(&store.cf(cf::INDEX), key, value);
}

/// Adds a throttle mark (rule fired for issue at `fired_ms`) to a write batch.
pub fn put_throttle(
    store: &Store,
    batch: &mut crate::WriteBatch,
    rule_id: u64,
    issue_id: u64,
    fired_ms: u64,
) {
    batch.put_cf(
        &store.cf(cf::INDEX),
        keys::alert_throttle(rule_id, issue_id),
        fired_ms.to_be_bytes(),
    );
}

/// When `rule_id` last fired for `issue_id`, if it has.
pub fn load_throttle(store: &Store, rule_id: u64, issue_id: u64) -> Result<Option<u64>> {
    Ok(store
        .db()
        .get_pinned_cf(
            &store.cf(cf::INDEX),
            keys::alert_throttle(rule_id, issue_id),
        )?
        .and_then(|v| v.as_ref().try_into().ok().map(u64::from_be_bytes)))
}

/// Aggregates a metric alert can watch (over the project's transactions).
pub const METRIC_AGGREGATES: &[&str] = &[
    "p50(transaction.duration)",
    "p75(transaction.duration)",
    "p95(transaction.duration)",
    "p99(transaction.duration)",
    "count()",
    "failure_rate()",
    "apdex()",
];

/// Whether `aggregate` is one a metric alert can watch: one of [`METRIC_AGGREGATES`], or
/// `apdex(T)` with an explicit threshold T in milliseconds (Sentry's older spelling).
pub fn metric_aggregate_supported(aggregate: &str) -> bool {
    METRIC_AGGREGATES.contains(&aggregate) || apdex_threshold_arg(aggregate).is_some()
}

/// T of `apdex(T)` (1 to 600000 ms); `None` for anything else (including `apdex()`).
pub fn apdex_threshold_arg(aggregate: &str) -> Option<u64> {
    let t: u64 = aggregate
        .strip_prefix("apdex(")?
        .strip_suffix(')')?
        .trim()
        .parse()
        .ok()?;
    (1..=600_000).contains(&t).then_some(t)
}

/// Which side of the threshold is bad (Sentry's `thresholdType`: 0 above, 1 below).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ThresholdType {
    /// Fire when the value is above the threshold (durations, counts, failure rate).
    #[default]
    Above,
    /// Fire when the value is below the threshold (apdex).
    Below,
}

impl Serialize for ThresholdType {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u8(match self {
            ThresholdType::Above => 0,
            ThresholdType::Below => 1,
        })
    }
}

impl<'de> Deserialize<'de> for ThresholdType {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match u64_or_string(d)? {
            0 => Ok(ThresholdType::Above),
            1 => Ok(ThresholdType::Below),
            n => Err(serde::de::Error::custom(format!(
                "thresholdType must be 0 (above) or 1 (below), got {n}"
            ))),
        }
    }
}

impl ThresholdType {
    /// Whether `value` breaches `threshold` on this side.
    pub fn breached(self, value: f64, threshold: f64) -> bool {
        match self {
            ThresholdType::Above => value > threshold,
            ThresholdType::Below => value < threshold,
        }
    }
}

/// What a metric rule's `query` selects: all transactions, or one transaction by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricQuery {
    /// Only transactions with this name.
    pub transaction: Option<String>,
}

/// Parses a metric rule's `query`: empty, `event.type:transaction`, and/or
/// `transaction:NAME` (`transaction:"NAME with spaces"`). Anything else is refused, because
/// osprey keeps per-minute series only per transaction, environment and release.
pub fn parse_metric_query(query: &str) -> Result<MetricQuery> {
    let mut out = MetricQuery { transaction: None };
    let mut rest = query.trim();
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix("event.type:transaction") {
            rest = r.trim_start();
            continue;
        }
        if let Some(r) = rest.strip_prefix("transaction:") {
            let (name, after) = if let Some(q) = r.strip_prefix('"') {
                let end = q.find('"').ok_or_else(|| {
                    StorageError::Invalid(format!("unterminated quote in query {query:?}"))
                })?;
                (&q[..end], &q[end + 1..])
            } else {
                let end = r.find(char::is_whitespace).unwrap_or(r.len());
                (&r[..end], &r[end..])
            };
            if name.is_empty() || out.transaction.is_some() {
                return Err(StorageError::Invalid(format!(
                    "query {query:?}: one non-empty transaction:NAME at most"
                )));
            }
            out.transaction = Some(name.to_owned());
            rest = after.trim_start();
            continue;
        }
        return Err(StorageError::Invalid(format!(
            "unsupported query {query:?} (supported: event.type:transaction, transaction:NAME)"
        )));
    }
    Ok(out)
}

/// One threshold of a metric alert (Sentry's trigger: `critical` or `warning`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MetricTrigger {
    /// `critical` or `warning`.
    #[serde(default)]
    pub label: String,
    /// Fires when the aggregate is past this (above or below per the rule's
    /// `thresholdType`; milliseconds for durations, a ratio 0..1 for failure rate and apdex).
    #[serde(deserialize_with = "f64_or_string")]
    pub alert_threshold: f64,
    /// Where to send.
    #[serde(default)]
    pub actions: Vec<Action>,
}

/// A metric alert rule in Sentry's shape (`/api/0/organizations/{org}/alert-rules/`),
/// limited to transaction-duration percentiles and `count()` over a window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MetricAlertRule {
    /// Id (assigned on create).
    #[serde(default)]
    pub id: u64,
    /// Owning organization (set from the URL on create).
    #[serde(default)]
    pub org_id: u64,
    /// Name.
    pub name: String,
    /// One of [`METRIC_AGGREGATES`] (or `apdex(T)`).
    pub aggregate: String,
    /// `""`, `event.type:transaction` and/or `transaction:NAME` ([`parse_metric_query`]).
    #[serde(default)]
    pub query: String,
    /// Window in minutes (1 to 1440).
    #[serde(deserialize_with = "u64_or_string")]
    pub time_window: u64,
    /// Above (0) or below (1) the thresholds is bad.
    #[serde(default)]
    pub threshold_type: ThresholdType,
    /// Project slugs of the organization.
    pub projects: Vec<String>,
    /// Only this environment (`None` = all).
    #[serde(default)]
    pub environment: Option<String>,
    /// Thresholds, each with its actions.
    pub triggers: Vec<MetricTrigger>,
    /// Created, unix ms.
    #[serde(default)]
    pub created_ms: u64,
}

impl MetricAlertRule {
    /// Decodes and validates a metric rule body in Sentry's shape (`POST`/`PUT
    /// /api/0/organizations/{org}/alert-rules/`, the CLI, the MCP tools). `id`, `orgId` and
    /// `createdMs` in the body are ignored; `environment: ""` means all environments;
    /// `thresholdType` may also be given on a trigger (Sentry echoes it there).
    pub fn from_api_json(body: &serde_json::Value) -> Result<MetricAlertRule> {
        let Some(obj) = body.as_object() else {
            return Err(StorageError::Invalid(
                "a metric alert rule must be a JSON object".into(),
            ));
        };
        let mut obj = obj.clone();
        for key in ["id", "orgId", "createdMs", "dateCreated", "organizationId"] {
            obj.remove(key);
        }
        if obj.get("environment").and_then(|v| v.as_str()) == Some("") {
            obj.insert("environment".into(), serde_json::Value::Null);
        }
        if !obj.contains_key("thresholdType") {
            let from_trigger = obj
                .get("triggers")
                .and_then(|t| t.as_array())
                .and_then(|t| t.iter().find_map(|t| t.get("thresholdType").cloned()));
            if let Some(t) = from_trigger {
                obj.insert("thresholdType".into(), t);
            }
        }
        let rule: MetricAlertRule = serde_json::from_value(serde_json::Value::Object(obj))
            .map_err(|e| decode_error("metric alert rule", &e))?;
        rule.validate()?;
        Ok(rule)
    }

    /// Checks the fields the evaluator relies on.
    pub fn validate(&self) -> Result<()> {
        let bad = |detail: String| Err(StorageError::Invalid(detail));
        let name_chars = self.name.trim().chars().count();
        if name_chars == 0 || name_chars > MAX_NAME_CHARS {
            return bad(format!("name must be 1 to {MAX_NAME_CHARS} characters"));
        }
        if !metric_aggregate_supported(&self.aggregate) {
            return bad(format!(
                "unsupported aggregate {:?} (supported: {}, apdex(T))",
                self.aggregate,
                METRIC_AGGREGATES.join(", ")
            ));
        }
        let query = parse_metric_query(&self.query)?;
        if query.transaction.is_some() && self.environment.is_some() {
            return bad(
                "a transaction:NAME query cannot be combined with an environment \
                 (osprey keeps per-transaction series across environments only)"
                    .into(),
            );
        }
        if !(1..=1440).contains(&self.time_window) {
            return bad("timeWindow must be 1 to 1440 minutes".into());
        }
        if self.projects.is_empty() || self.projects.len() > MAX_ITEMS {
            return bad(format!("1 to {MAX_ITEMS} projects"));
        }
        if self.triggers.is_empty() || self.triggers.len() > 2 {
            return bad("1 or 2 triggers".into());
        }
        let is_ratio = self.aggregate == "failure_rate()" || self.aggregate.starts_with("apdex(");
        for trigger in &self.triggers {
            if !trigger.alert_threshold.is_finite() || trigger.actions.len() > MAX_ITEMS {
                return bad("a trigger needs a finite alertThreshold".into());
            }
            if is_ratio && !(0.0..=1.0).contains(&trigger.alert_threshold) {
                return bad(format!(
                    "{} is a ratio from 0 to 1: alertThreshold {} is out of range",
                    self.aggregate, trigger.alert_threshold
                ));
            }
            for action in &trigger.actions {
                match action.target_url() {
                    Some(url)
                        if url.len() <= MAX_URL_LEN
                            && (url.starts_with("http://") || url.starts_with("https://")) => {}
                    _ => return bad("invalid action URL".into()),
                }
            }
        }
        Ok(())
    }
}

impl Store {
    /// Every metric alert rule, by id (read from the store; the evaluator calls it every few
    /// seconds, the API per request).
    pub fn metric_alert_rules(&self) -> Result<Vec<MetricAlertRule>> {
        let handle = self.cf(cf::META);
        let start = [keys::meta::METRIC_ALERT_RULE];
        let mode = rocksdb::IteratorMode::From(&start, rocksdb::Direction::Forward);
        let mut out = Vec::new();
        for item in self.db().iterator_cf(&handle, mode) {
            let (key, value) = item?;
            if key.first() != Some(&keys::meta::METRIC_ALERT_RULE) {
                break;
            }
            out.push(serde_json::from_slice(&value)?);
        }
        Ok(out)
    }

    /// One metric alert rule.
    pub fn metric_alert_rule(&self, rule_id: u64) -> Result<Option<MetricAlertRule>> {
        let key = keys::prefixed_id(keys::meta::METRIC_ALERT_RULE, rule_id);
        match self.db().get_cf(&self.cf(cf::META), key)? {
            Some(v) => Ok(Some(serde_json::from_slice(&v)?)),
            None => Ok(None),
        }
    }

    /// Creates a metric alert rule for an organization.
    pub fn create_metric_alert_rule(
        &self,
        org_id: u64,
        mut rule: MetricAlertRule,
    ) -> Result<MetricAlertRule> {
        self.ensure_writable()?;
        if self.meta().organization(org_id).is_none() {
            return Err(StorageError::NotFound(format!("organization {org_id}")));
        }
        rule.validate()?;
        for slug in &rule.projects {
            if self.meta().project_by_slug(org_id, slug).is_none() {
                return Err(StorageError::Invalid(format!(
                    "projects: no project {slug:?} in this organization"
                )));
            }
        }
        rule.id = self.next_id("metric_alert_rule")?;
        rule.org_id = org_id;
        rule.created_ms = now_ms();
        self.put_meta(
            &keys::prefixed_id(keys::meta::METRIC_ALERT_RULE, rule.id),
            &rule,
        )?;
        Ok(rule)
    }

    /// Replaces a metric alert rule (id, organization and creation time are kept).
    pub fn update_metric_alert_rule(
        &self,
        rule_id: u64,
        mut rule: MetricAlertRule,
    ) -> Result<MetricAlertRule> {
        self.ensure_writable()?;
        let existing = self
            .metric_alert_rule(rule_id)?
            .ok_or_else(|| StorageError::NotFound(format!("metric alert rule {rule_id}")))?;
        rule.validate()?;
        for slug in &rule.projects {
            if self.meta().project_by_slug(existing.org_id, slug).is_none() {
                return Err(StorageError::Invalid(format!(
                    "projects: no project {slug:?} in this organization"
                )));
            }
        }
        rule.id = existing.id;
        rule.org_id = existing.org_id;
        rule.created_ms = existing.created_ms;
        self.put_meta(
            &keys::prefixed_id(keys::meta::METRIC_ALERT_RULE, rule.id),
            &rule,
        )?;
        Ok(rule)
    }

    /// Deletes a metric alert rule.
    pub fn delete_metric_alert_rule(&self, rule_id: u64) -> Result<()> {
        self.ensure_writable()?;
        if self.metric_alert_rule(rule_id)?.is_none() {
            return Err(StorageError::NotFound(format!(
                "metric alert rule {rule_id}"
            )));
        }
        self.delete_meta(&keys::prefixed_id(keys::meta::METRIC_ALERT_RULE, rule_id))?;
        Ok(())
    }
}

/// Throttle/history "issue" id of metric alerts (no issue ids reach it).
pub const METRIC_ALERT_ISSUE: u64 = u64::MAX;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::StoreOptions;

    fn rule_json() -> serde_json::Value {
        serde_json::json!({
            "name": "Spike",
            "actionMatch": "any",
            "conditions": [
                {"id": "sentry.rules.conditions.first_seen_event.FirstSeenEventCondition"},
                {"id": "sentry.rules.conditions.event_frequency.EventFrequencyCondition",
                 "value": "10", "interval": "5m"}
            ],
            "filters": [
                {"id": "sentry.rules.filters.level.LevelFilter", "match": "gte", "level": "40"},
                {"id": "sentry.rules.filters.tagged_event.TaggedEventFilter",
                 "key": "browser", "match": "eq", "value": "Chrome"}
            ],
            "actions": [
                {"id": "osprey.actions.webhook", "url": "http://127.0.0.1:1/hook"},
                {"id": "sentry.integrations.slack.notify_action.SlackNotifyServiceAction",
                 "webhook": "https://hooks.slack.com/services/x", "channel": "#alerts"}
            ],
            "frequency": 5
        })
    }

    #[test]
    fn sentry_shape_decodes_and_unknown_ids_fail() {
        let rule: AlertRule = serde_json::from_value(rule_json()).unwrap();
        assert_eq!(rule.action_match, Match::Any);
        assert_eq!(
            rule.conditions[1],
            Condition::EventFrequency {
                value: 10,
                interval: Interval::FiveMinutes
            }
        );
        rule.validate().unwrap();
        let mut bad = rule_json();
        bad["conditions"][0]["id"] = "sentry.rules.conditions.nope".into();
        assert!(serde_json::from_value::<AlertRule>(bad).is_err());
        let mut bad = rule_json();
        bad["conditions"][1]["interval"] = "7m".into();
        assert!(serde_json::from_value::<AlertRule>(bad).is_err());
        let mut no_actions: AlertRule = serde_json::from_value(rule_json()).unwrap();
        no_actions.actions.clear();
        assert!(no_actions.validate().is_err());
        assert!(Match::None.combine([false, false]) && !Match::All.combine([true, false]));
    }

    #[test]
    fn crud_persists_and_history_lists_newest_first() {
        let dir = tempfile::tempdir().unwrap();
        let rule: AlertRule = serde_json::from_value(rule_json()).unwrap();
        let id = {
            let store = Store::open(dir.path(), &StoreOptions::default()).unwrap();
            store.bootstrap(None, Some("secret")).unwrap();
            assert!(store.create_alert_rule(99, rule.clone()).is_err());
            let created = store.create_alert_rule(1, rule.clone()).unwrap();
            let mut changed = rule.clone();
            changed.name = "Renamed".into();
            store.update_alert_rule(created.id, changed).unwrap();
            let second = store.create_alert_rule(1, rule.clone()).unwrap();
            store.delete_alert_rule(second.id).unwrap();
            assert!(store.delete_alert_rule(second.id).is_err());
            let mut batch = crate::WriteBatch::default();
            for (ms, issue) in [(1_000u64, 7u64), (2_000, 8)] {
                let fired = FiredAlert {
                    rule_id: created.id,
                    rule_name: "Renamed".into(),
                    project_id: 1,
                    issue_id: issue,
                    event_id: "e".repeat(32),
                    fired_ms: ms,
                    payload: serde_json::json!({"text": "x"}),
                };
                put_fired(&store, &mut batch, &fired);
            }
            put_throttle(&store, &mut batch, created.id, 7, 1_000);
            store.write(batch, true).unwrap();
            created.id
        };
        let store = Store::open(dir.path(), &StoreOptions::default()).unwrap();
        let rules = store.alert_rules(1);
        assert_eq!(rules.len(), 1);
        assert_eq!(rules[0].id, id);
        assert_eq!(rules[0].name, "Renamed");
        let history = store.fired_alerts(1, 10).unwrap();
        assert_eq!(
            history.iter().map(|f| f.issue_id).collect::<Vec<_>>(),
            [8, 7]
        );
        assert!(store.fired_alerts(2, 10).unwrap().is_empty());
        assert_eq!(load_throttle(&store, id, 7).unwrap(), Some(1_000));
        assert_eq!(load_throttle(&store, id, 8).unwrap(), None);
    }
}
