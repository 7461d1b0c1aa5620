//! Per-project and per-key rate limits by data category (sentry-protocol.md §5).
//!
//! Limits are fixed windows: a quota of N items of a category per `window_secs`, counted per
//! project and per DSN key. Configuration is empty (off) by default. When an item would cross a
//! quota it is dropped; the response then carries `X-Sentry-Rate-Limits` in Relay's format and,
//! if nothing of the envelope was accepted, becomes a 429 with `Retry-After`.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

/// Sentry's data categories (relay-base-schema `DataCategory`; names as on the wire).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[allow(missing_docs)]
pub enum DataCategory {
    Default,
    Error,
    Transaction,
    Security,
    Attachment,
    Session,
    Profile,
    Replay,
    Monitor,
    Span,
    Feedback,
    MetricBucket,
    ProfileChunk,
    ReplayVideo,
    LogItem,
    TraceMetric,
}

impl DataCategory {
    /// Every category, in id order (used for metric arrays).
    pub const ALL: [DataCategory; 16] = [
        DataCategory::Default,
        DataCategory::Error,
        DataCategory::Transaction,
        DataCategory::Security,
        DataCategory::Attachment,
        DataCategory::Session,
        DataCategory::Profile,
        DataCategory::Replay,
        DataCategory::Monitor,
        DataCategory::Span,
        DataCategory::Feedback,
        DataCategory::MetricBucket,
        DataCategory::ProfileChunk,
        DataCategory::ReplayVideo,
        DataCategory::LogItem,
        DataCategory::TraceMetric,
    ];

    /// The wire name (`error`, `transaction`, …).
    pub fn name(self) -> &'static str {
        match self {
            DataCategory::Default => "default",
            DataCategory::Error => "error",
            DataCategory::Transaction => "transaction",
            DataCategory::Security => "security",
            DataCategory::Attachment => "attachment",
            DataCategory::Session => "session",
            DataCategory::Profile => "profile",
            DataCategory::Replay => "replay",
            DataCategory::Monitor => "monitor",
            DataCategory::Span => "span",
            DataCategory::Feedback => "feedback",
            DataCategory::MetricBucket => "metric_bucket",
            DataCategory::ProfileChunk => "profile_chunk",
            DataCategory::ReplayVideo => "replay_video",
            DataCategory::LogItem => "log_item",
            DataCategory::TraceMetric => "trace_metric",
        }
    }

    /// Parses a wire name.
    pub fn from_name(name: &str) -> Option<DataCategory> {
        DataCategory::ALL.into_iter().find(|c| c.name() == name)
    }

    /// Position in [`DataCategory::ALL`].
    pub fn index(self) -> usize {
        DataCategory::ALL
            .iter()
            .position(|c| *c == self)
            .unwrap_or(0)
    }
}

/// Whom a limit applies to (the `scope` field of `X-Sentry-Rate-Limits`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    /// All keys of a project.
    Project,
    /// One DSN key.
    Key,
}

impl Scope {
    fn name(self) -> &'static str {
        match self {
            Scope::Project => "project",
            Scope::Key => "key",
        }
    }
}

/// One active limit: a category (or every category) is blocked in a scope for
/// `retry_after_secs` more seconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimit {
    /// The blocked category; `None` = all categories (a key's overall rate limit).
    pub category: Option<DataCategory>,
    /// Project or key.
    pub scope: Scope,
    /// Seconds until the window ends (at least 1).
    pub retry_after_secs: u64,
}

/// The limits hit by one request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RateLimits {
    /// Distinct (category, scope) limits, longest retry kept.
    pub limits: Vec<RateLimit>,
}

impl RateLimits {
    /// Adds a limit, merging with an existing one for the same category and scope.
    pub fn add(&mut self, limit: RateLimit) {
        match self
            .limits
            .iter_mut()
            .find(|l| l.category == limit.category && l.scope == limit.scope)
        {
            Some(existing) => {
                existing.retry_after_secs = existing.retry_after_secs.max(limit.retry_after_secs)
            }
            None => self.limits.push(limit),
        }
    }

    /// Whether any limit is active.
    pub fn is_limited(&self) -> bool {
        !self.limits.is_empty()
    }

    /// `Retry-After`: the longest remaining limit.
    pub fn retry_after(&self) -> Option<u64> {
        self.limits.iter().map(|l| l.retry_after_secs).max()
    }

    /// `X-Sentry-Rate-Limits` value: `retry_after:categories:scope` entries joined by `", "`,
    /// longest first. Limits with the same retry and scope share one entry with `;`-joined
    /// categories; an all-categories limit has an empty category list.
    pub fn header_value(&self) -> String {
        let mut groups: BTreeMap<(u64, &'static str, bool), Vec<&'static str>> = BTreeMap::new();
        for limit in &self.limits {
            let entry = groups
                .entry((
                    limit.retry_after_secs,
                    limit.scope.name(),
                    limit.category.is_none(),
                ))
                .or_default();
            if let Some(category) = limit.category {
                entry.push(category.name());
            }
        }
        let mut out = String::new();
        for ((retry, scope, _), mut categories) in groups.into_iter().rev() {
            categories.sort_unstable();
            categories.dedup();
            if !out.is_empty() {
                out.push_str(", ");
            }
            let _ = write!(out, "{retry}:{}:{scope}", categories.join(";"));
        }
        out
    }
}

/// Quotas per category name (`error`, `transaction`, …): items allowed per window.
pub type CategoryQuotas = BTreeMap<String, u64>;

/// Rate-limit configuration (`[ingest.rate_limits]`); empty = off. Validated when
/// deserialized: unknown categories, a zero window or a non-numeric project id are errors.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(try_from = "RawRateLimitConfig")]
pub struct RateLimitConfig {
    /// Length of a fixed window in seconds.
    pub window_secs: u64,
    /// Quotas every project gets.
    pub project: CategoryQuotas,
    /// Quotas every DSN key gets.
    pub key: CategoryQuotas,
    /// Per-project quotas replacing `project` for that project (keys are project ids as strings
    /// in TOML).
    pub projects: BTreeMap<String, CategoryQuotas>,
}

#[derive(Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawRateLimitConfig {
    window_secs: u64,
    project: CategoryQuotas,
    key: CategoryQuotas,
    projects: BTreeMap<String, CategoryQuotas>,
}

impl Default for RawRateLimitConfig {
    fn default() -> Self {
        let d = RateLimitConfig::default();
        RawRateLimitConfig {
            window_secs: d.window_secs,
            project: d.project,
            key: d.key,
            projects: d.projects,
        }
    }
}

impl TryFrom<RawRateLimitConfig> for RateLimitConfig {
    type Error = RateLimitConfigError;
    fn try_from(raw: RawRateLimitConfig) -> Result<Self, Self::Error> {
        let config = RateLimitConfig {
            window_secs: raw.window_secs,
            project: raw.project,
            key: raw.key,
            projects: raw.projects,
        };
        config.validate()?;
        Ok(config)
    }
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        RateLimitConfig {
            window_secs: 60,
            project: CategoryQuotas::new(),
            key: CategoryQuotas::new(),
            projects: BTreeMap::new(),
        }
    }
}

impl RateLimitConfig {
    /// Checks category names, the window and project ids.
    pub fn validate(&self) -> Result<(), RateLimitConfigError> {
        if self.window_secs == 0 {
            return Err(RateLimitConfigError::ZeroWindow);
        }
        for (id, quotas) in &self.projects {
            id.parse::<u64>()
                .map_err(|_| RateLimitConfigError::BadProject(id.clone()))?;
            compile(quotas)?;
        }
        compile(&self.project)?;
        compile(&self.key)?;
        Ok(())
    }
}

/// Why a rate-limit configuration is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RateLimitConfigError {
    /// A category name that is not a Sentry data category.
    #[error("unknown rate-limit category '{0}'")]
    UnknownCategory(String),
    /// `window_secs` is 0.
    #[error("rate-limit window_secs must be at least 1")]
    ZeroWindow,
    /// A `projects` key that is not a project id.
    #[error("rate-limit project '{0}' is not a numeric project id")]
    BadProject(String),
}

type Quotas = HashMap<DataCategory, u64>;

fn compile(quotas: &CategoryQuotas) -> Result<Quotas, RateLimitConfigError> {
    quotas
        .iter()
        .map(|(name, n)| {
            DataCategory::from_name(name)
                .map(|c| (c, *n))
                .ok_or_else(|| RateLimitConfigError::UnknownCategory(name.clone()))
        })
        .collect()
}

/// The count of one fixed window.
#[derive(Debug, Clone, Copy)]
struct Window {
    start: u64,
    count: u64,
}

/// (scope, project or key id, category or all).
type WindowKey = (Scope, u64, Option<DataCategory>);

/// A key's own overall limit (from the key's settings): `limit` items of any category per
/// `window_secs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyLimit {
    /// Items allowed per window.
    pub limit: u64,
    /// Window length in seconds.
    pub window_secs: u64,
}

/// The limiter: quotas compiled from [`RateLimitConfig`] and the live window counters.
#[derive(Debug)]
pub struct RateLimiter {
    window_secs: u64,
    project: Quotas,
    key: Quotas,
    projects: HashMap<u64, Quotas>,
    // One lock, taken only when some quota applies; one entry per (scope, id, category) with a
    // quota, so the map is bounded by (projects + keys) × categories.
    windows: Mutex<HashMap<WindowKey, Window>>,
}

/// One item to be counted: its category and quantity (1 per item, bytes for attachments).
#[derive(Debug, Clone, Copy)]
pub struct Demand {
    /// Category counted.
    pub category: DataCategory,
    /// Amount counted.
    pub quantity: u64,
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl RateLimiter {
    /// Compiles a configuration. Invalid parts (possible only when the struct was built in
    /// code rather than deserialized) are skipped with a warning.
    pub fn new(config: &RateLimitConfig) -> RateLimiter {
        if let Err(e) = config.validate() {
            tracing::warn!(error = %e, "invalid rate-limit configuration; invalid parts ignored");
        }
        let lenient = |q: &CategoryQuotas| -> Quotas {
            q.iter()
                .filter_map(|(name, n)| DataCategory::from_name(name).map(|c| (c, *n)))
                .collect()
        };
        RateLimiter {
            window_secs: config.window_secs.max(1),
            project: lenient(&config.project),
            key: lenient(&config.key),
            projects: config
                .projects
                .iter()
                .filter_map(|(id, q)| Some((id.parse().ok()?, lenient(q))))
                .collect(),
            windows: Mutex::new(HashMap::new()),
        }
    }

    /// Whether any configured quota exists (per-key limits from key settings aside).
    pub fn is_enabled(&self) -> bool {
        !self.project.is_empty() || !self.key.is_empty() || !self.projects.is_empty()
    }

    fn project_quotas(&self, project_id: u64) -> &Quotas {
        self.projects.get(&project_id).unwrap_or(&self.project)
    }

    /// Decides, for each demand in order, whether it fits the project's and the key's quotas
    /// (counting the accepted ones). Returns one flag per demand (`true` = accepted) and the
    /// limits that refused something.
    pub fn check(
        &self,
        project_id: u64,
        key_id: u64,
        key_limit: Option<KeyLimit>,
        demands: &[Demand],
    ) -> (Vec<bool>, RateLimits) {
        self.check_at(now_secs(), project_id, key_id, key_limit, demands)
    }

    /// [`RateLimiter::check`] at a given unix time (tests drive the clock).
    pub fn check_at(
        &self,
        now: u64,
        project_id: u64,
        key_id: u64,
        key_limit: Option<KeyLimit>,
        demands: &[Demand],
    ) -> (Vec<bool>, RateLimits) {
        let mut accepted = vec![true; demands.len()];
        let mut limits = RateLimits::default();
        let key_limit = key_limit.filter(|k| k.window_secs > 0);
        if !self.is_enabled() && key_limit.is_none() {
            return (accepted, limits);
        }
        let project_quotas = self.project_quotas(project_id);
        let mut windows = self.windows.lock();
        for (i, demand) in demands.iter().enumerate() {
            // (scope, id, counter category, quota, window length)
            let rules = [
                project_quotas.get(&demand.category).map(|q| {
                    (
                        Scope::Project,
                        project_id,
                        Some(demand.category),
                        *q,
                        self.window_secs,
                    )
                }),
                self.key.get(&demand.category).map(|q| {
                    (
                        Scope::Key,
                        key_id,
                        Some(demand.category),
                        *q,
                        self.window_secs,
                    )
                }),
                key_limit.map(|k| (Scope::Key, key_id, None, k.limit, k.window_secs)),
            ];
            // Check every rule first, then count in every rule: an item refused by one quota
            // must not use up another.
            let mut refused = false;
            for (scope, id, category, quota, window_secs) in rules.iter().flatten().copied() {
                let start = now - now % window_secs;
                let window = windows
                    .entry((scope, id, category))
                    .or_insert(Window { start, count: 0 });
                if window.start != start {
                    *window = Window { start, count: 0 };
                }
                if window.count.saturating_add(demand.quantity) > quota {
                    refused = true;
                    limits.add(RateLimit {
                        category,
                        scope,
                        retry_after_secs: (start + window_secs - now).max(1),
                    });
                }
            }
            if refused {
                accepted[i] = false;
                continue;
            }
            for (scope, id, category, _, _) in rules.iter().flatten().copied() {
                if let Some(window) = windows.get_mut(&(scope, id, category)) {
                    window.count = window.count.saturating_add(demand.quantity);
                }
            }
        }
        (accepted, limits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(project: &[(&str, u64)], key: &[(&str, u64)]) -> RateLimiter {
        let config = RateLimitConfig {
            window_secs: 60,
            project: project.iter().map(|(c, n)| (c.to_string(), *n)).collect(),
            key: key.iter().map(|(c, n)| (c.to_string(), *n)).collect(),
            projects: BTreeMap::new(),
        };
        RateLimiter::new(&config)
    }

    fn errors(n: usize) -> Vec<Demand> {
        one_each(&vec![DataCategory::Error; n])
    }

    /// One item of each category, in order.
    fn one_each(categories: &[DataCategory]) -> Vec<Demand> {
        categories
            .iter()
            .map(|&category| Demand {
                category,
                quantity: 1,
            })
            .collect()
    }

    #[test]
    fn off_by_default() {
        let l = RateLimiter::new(&RateLimitConfig::default());
        assert!(!l.is_enabled());
        let (ok, limits) = l.check_at(1000, 1, 1, None, &errors(1000));
        assert!(ok.iter().all(|x| *x));
        assert!(!limits.is_limited());
    }

    #[test]
    fn project_quota_fixed_window() {
        let l = limiter(&[("error", 3)], &[]);
        let (ok, limits) = l.check_at(6000, 1, 1, None, &errors(5));
        assert_eq!(ok, vec![true, true, true, false, false]);
        assert_eq!(limits.retry_after(), Some(60));
        assert_eq!(limits.header_value(), "60:error:project");
        // Other projects have their own counters.
        let (ok, _) = l.check_at(6010, 2, 2, None, &errors(1));
        assert_eq!(ok, vec![true]);
        // Later in the same window: still limited, shorter retry.
        let (ok, limits) = l.check_at(6030, 1, 1, None, &errors(1));
        assert_eq!(ok, vec![false]);
        assert_eq!(limits.retry_after(), Some(30));
        // Next window: allowed again.
        let (ok, _) = l.check_at(6060, 1, 1, None, &errors(1));
        assert_eq!(ok, vec![true]);
    }

    #[test]
    fn key_quota_and_categories() {
        let l = limiter(&[], &[("transaction", 1)]);
        let demands = one_each(&[
            DataCategory::Transaction,
            DataCategory::Error,
            DataCategory::Transaction,
        ]);
        let (ok, limits) = l.check_at(120, 1, 7, None, &demands);
        assert_eq!(ok, vec![true, true, false]);
        assert_eq!(limits.header_value(), "60:transaction:key");
        // Another key of the same project is not limited.
        let (ok, _) = l.check_at(121, 1, 8, None, &demands[..1]);
        assert_eq!(ok, vec![true]);
    }

    #[test]
    fn header_groups_and_orders() {
        let mut limits = RateLimits::default();
        for (category, scope, secs) in [
            (Some(DataCategory::Error), Scope::Project, 30),
            (Some(DataCategory::Transaction), Scope::Project, 30),
            (Some(DataCategory::Error), Scope::Key, 50),
            (Some(DataCategory::Error), Scope::Project, 20),
            (None, Scope::Key, 10),
        ] {
            limits.add(RateLimit {
                category,
                scope,
                retry_after_secs: secs,
            });
        }
        assert_eq!(
            limits.header_value(),
            "50:error:key, 30:error;transaction:project, 10::key"
        );
        assert_eq!(limits.retry_after(), Some(50));
    }

    #[test]
    fn key_overall_limit() {
        let l = RateLimiter::new(&RateLimitConfig::default());
        let key_limit = Some(KeyLimit {
            limit: 2,
            window_secs: 10,
        });
        let demands = one_each(&[
            DataCategory::Transaction,
            DataCategory::Error,
            DataCategory::Error,
        ]);
        let (ok, limits) = l.check_at(105, 1, 9, key_limit, &demands);
        assert_eq!(ok, vec![true, true, false]);
        assert_eq!(limits.header_value(), "5::key");
    }

    #[test]
    fn config_errors() {
        let mut c = RateLimitConfig::default();
        c.project.insert("nonsense".into(), 1);
        assert_eq!(
            c.validate(),
            Err(RateLimitConfigError::UnknownCategory("nonsense".into()))
        );
        let c = RateLimitConfig {
            window_secs: 0,
            ..Default::default()
        };
        assert_eq!(c.validate(), Err(RateLimitConfigError::ZeroWindow));
        assert!(serde_json::from_str::<RateLimitConfig>(r#"{"project":{"bogus":1}}"#).is_err());
        assert!(serde_json::from_str::<RateLimitConfig>(r#"{"unknown_field":1}"#).is_err());
        let parsed: RateLimitConfig =
            serde_json::from_str(r#"{"window_secs":10,"projects":{"1":{"error":5}}}"#).unwrap();
        let l = RateLimiter::new(&parsed);
        let (ok, _) = l.check_at(0, 1, 1, None, &errors(6));
        assert_eq!(ok.iter().filter(|x| **x).count(), 5);
        let (ok, _) = l.check_at(0, 2, 1, None, &errors(6));
        assert!(ok.iter().all(|x| *x));
    }
}
