//! The tool set: argument and answer types (their doc comments are the schema descriptions
//! a model reads) and [`OspreyTools`], the rmcp handler.
//!
//! Every tool runs its RocksDB reads on the blocking pool after catching a secondary store up
//! with the primary. Mistakes the model can fix are `Err(String)` (an `is_error` result whose
//! text says how to fix the call); nothing here returns a protocol error.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use rmcp::handler::server::{router::tool::ToolRouter, wrapper::Parameters};
use rmcp::model::{Extensions, Implementation, ServerCapabilities, ServerConfig};
use rmcp::{tool, tool_handler, tool_router, Json, ServerHandler};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use storage::records::{self, IssueRecord, IssueStatus, IssueSubstatus};
use storage::workflow::{self, IssueWorkflow};
use storage::{releases, ApiToken, Log, LogRecord, Project, StorageError};
use uuid::Uuid;

use query::issues::{sort_issue_rows, Issue, IssueFilter};
use query::search::{self, IssueSort};
use query::QueryService;

use query::perf::{GroupBy, PerfError, PerfQuery, PerfStats, TimeRange};

use crate::analysis::{self, EventFilter};

mod health;
pub(crate) use health::merge_release_health;
use health::{ReleaseHealthAnswer, ReleaseHealthArgs};

/// Every tool osprey's MCP server lists. Clients' tests and the fuzz target take the names
/// from here; `mcp/tests/tools.rs` checks that the server lists exactly these.
pub const TOOL_NAMES: &[&str] = &[
    "find_projects",
    "get_error_analysis",
    "get_performance_metrics",
    "compare_releases",
    "get_release_health",
    "search_issues",
    "get_issue_details",
    "get_event",
    "get_trace_details",
    "search_events",
    "manage_issues",
    "capture_event",
    "track_release",
    "configure_alert",
    "list_alerts",
    "list_user_feedback",
];

/// The tools that change data: annotated `read_only_hint = false`, they need a write scope.
pub const WRITE_TOOL_NAMES: &[&str] = &[
    "manage_issues",
    "capture_event",
    "track_release",
    "configure_alert",
];

/// The authenticated caller of an HTTP request, put into the request's extensions by
/// [`crate::McpHttp`]. Requests without it (stdio) act with the local user's full access.
#[derive(Clone, Debug)]
pub struct Caller {
    /// The API token that authenticated the request.
    pub token: Arc<ApiToken>,
}

/// What one call may see and do.
#[derive(Clone, Copy, Debug)]
struct Access {
    /// Only this organization (HTTP), or every organization (stdio).
    org: Option<u64>,
    /// The API token of an HTTP caller (the actor of write tools).
    token_id: Option<u64>,
    /// The call comes from a query node's fan-out ([`crate::fanout`]): answers carry the
    /// extra fields that node merges with (grouping hashes, row times, raw trace events).
    fanout: bool,
}

/// osprey's MCP tools over one [`QueryService`]. Cheap to clone.
#[derive(Clone)]
pub struct OspreyTools {
    inner: Arc<Inner>,
    tool_router: ToolRouter<Self>,
    /// On a query node: the processor nodes every data tool is asked of.
    peers: Option<Arc<crate::fanout::McpPeers>>,
}

struct Inner {
    query: QueryService,
    log: Option<Arc<dyn Log>>,
}

fn internal(e: impl std::fmt::Display) -> String {
    format!("osprey could not answer: {e}")
}

fn storage_error(e: StorageError) -> String {
    match e {
        StorageError::ReadOnly => "this MCP server reads the data directory as a follower \
            (`osprey mcp --data DIR`) and cannot change it. Run the write tools against a \
            running server instead: `osprey mcp --url http://HOST:PORT --token TOKEN`, or the \
            server's /mcp endpoint."
            .to_owned(),
        other => internal(other),
    }
}

// ---------------------------------------------------------------------------------------
// Arguments
// ---------------------------------------------------------------------------------------

/// No arguments.
#[derive(Debug, Default, Deserialize, JsonSchema)]
pub struct NoArgs {}

/// Level and tag filters of an error analysis.
#[derive(Debug, Default, Deserialize, JsonSchema)]
pub struct ErrorFilters {
    /// Only events of these levels, e.g. ["error", "fatal"].
    #[serde(default)]
    pub level: Vec<String>,
    /// Only events whose tags have these values, e.g. {"browser.name": "Chrome"}.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
}

/// Arguments of `get_error_analysis`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct ErrorAnalysisArgs {
    /// Project slug (e.g. "default") or numeric id; `find_projects` lists them.
    pub project: String,
    /// How far back to look: 30m, 1h, 24h, 7d or 2w. The trend compares with the range of
    /// the same length just before it.
    #[serde(rename = "timeRange")]
    pub time_range: String,
    /// Only events of this environment (e.g. "production").
    #[serde(default)]
    pub environment: Option<String>,
    /// Narrow to levels and tag values.
    #[serde(default)]
    pub filters: Option<ErrorFilters>,
}

/// A breakdown of performance metrics.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct Breakdown {
    /// Group by "transaction", "release" or "environment".
    pub field: String,
    /// Most groups returned, by transaction count (default 10, at most 100).
    #[serde(default)]
    pub limit: Option<usize>,
}

/// Arguments of `get_performance_metrics`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct PerformanceArgs {
    /// Project slug or numeric id.
    pub project: String,
    /// 30m, 1h, 24h, 7d or 2w. Changes are against the range of the same length before it.
    #[serde(rename = "timeRange")]
    pub time_range: String,
    /// Only transactions of this environment.
    #[serde(default)]
    pub environment: Option<String>,
    /// Only this transaction name (e.g. "GET /checkout").
    #[serde(default)]
    pub transaction: Option<String>,
    /// Which metrics: any of "apdex", "throughput" (transactions per minute), "p50", "p75",
    /// "p95", "p99" (milliseconds), "error_rate" (error events per transaction),
    /// "failure_rate" (share of transactions whose status is not ok/cancelled/unknown).
    /// Default: all.
    #[serde(default)]
    pub metrics: Option<Vec<String>>,
    /// Optional table by transaction, release or environment.
    #[serde(default)]
    pub breakdown: Option<Breakdown>,
}

/// Changes `manage_issues` applies to every listed issue.
#[derive(Debug, Default, Deserialize, JsonSchema)]
pub struct IssueChanges {
    /// "resolved", "resolvedInNextRelease", "unresolved" or "ignored" (ignored forever).
    #[serde(default)]
    pub status: Option<String>,
    /// Assignee: "user:ID", an e-mail or user name, "team:SLUG", "me" (the caller), or ""
    /// to unassign.
    #[serde(default, rename = "assignedTo")]
    pub assigned_to: Option<String>,
    /// Labels to put on the issues, e.g. {"team": "payments"}; null removes a label.
    /// `search_issues` then finds them with `team:payments`.
    #[serde(default)]
    pub tags: Option<BTreeMap<String, Option<String>>>,
}

/// Arguments of `manage_issues`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct ManageIssuesArgs {
    /// Project slug or numeric id the issues belong to.
    pub project: String,
    /// Only "bulk_update".
    pub action: String,
    /// Issue ids ("42") or short ids ("DEFAULT-1A"), at most 100.
    pub issues: Vec<String>,
    /// What to change.
    pub changes: IssueChanges,
    /// A note (comment) to add to each issue's activity, e.g. why it was ignored.
    #[serde(default)]
    pub note: Option<String>,
}

/// A commit of `track_release`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct CommitArg {
    /// Commit SHA.
    pub id: String,
    /// Commit message.
    #[serde(default)]
    pub message: Option<String>,
    /// Author: "Name <email>", a name or an e-mail.
    #[serde(default)]
    pub author: Option<String>,
    /// Repository name (e.g. "acme/shop").
    #[serde(default)]
    pub repository: Option<String>,
}

/// Arguments of `track_release`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct TrackReleaseArgs {
    /// Project slug or numeric id the release belongs to.
    pub project: String,
    /// Release version, exactly as the SDKs send it (e.g. "shop@2.4.0").
    pub version: String,
    /// Environment deployed to (e.g. "production"); records a deploy.
    #[serde(default)]
    pub environment: Option<String>,
    /// Commits in the release.
    #[serde(default)]
    pub commits: Option<Vec<CommitArg>>,
    /// When it was deployed/released, ISO 8601 (e.g. "2026-01-02T10:00:00Z"); default now.
    #[serde(default, rename = "deployTime")]
    pub deploy_time: Option<String>,
}

/// Arguments of `configure_alert`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct ConfigureAlertArgs {
    /// Project slug or numeric id.
    pub project: String,
    /// Rule name; configuring a name that exists in the project replaces that rule.
    pub name: String,
    /// Either issue-alert conditions in Sentry's shape, e.g.
    /// {"id": "sentry.rules.conditions.first_seen_event.FirstSeenEventCondition"},
    /// {"id": "sentry.rules.conditions.regression_event.RegressionEventCondition"},
    /// {"id": "sentry.rules.conditions.event_frequency.EventFrequencyCondition", "value": 100,
    /// "interval": "1h"} (intervals 1m, 5m, 15m, 1h, 1d), the unique-user variant
    /// `EventUniqueUserFrequencyCondition`, and filters such as
    /// {"id": "sentry.rules.filters.level.LevelFilter", "match": "gte", "level": "error"};
    /// or ONE metric condition {"aggregate": "p95(transaction.duration)" | "p50(…)" |
    /// "p75(…)" | "p99(…)" | "count()" | "failure_rate()" | "apdex()", "threshold": 500,
    /// "thresholdType": "above" | "below" (default above), "timeWindow": minutes (default 5),
    /// "warningThreshold"?: number}. Durations are in ms; failure_rate and apdex are 0..1.
    pub conditions: Vec<Value>,
    /// Where to send: {"id": "osprey.actions.webhook", "url": "https://…"} or Sentry's Slack
    /// action with "webhook": an incoming-webhook URL.
    pub actions: Vec<Value>,
    /// Issue alerts: "all" (default) or "any" of the conditions.
    #[serde(default, rename = "actionMatch")]
    pub action_match: Option<String>,
    /// Only events (issue alerts) or transactions (metric alerts) of this environment.
    #[serde(default)]
    pub environment: Option<String>,
    /// Issue alerts: fire at most once per issue every this many minutes (default 30).
    #[serde(default)]
    pub frequency: Option<u64>,
}

/// Arguments of `list_alerts`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct ListAlertsArgs {
    /// Project slug or numeric id.
    pub project: String,
    /// Most fired alerts returned, newest first (default 50, at most 500).
    #[serde(default)]
    pub limit: Option<usize>,
}

/// Arguments of `compare_releases`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct CompareReleasesArgs {
    /// Project slug or numeric id.
    pub project: String,
    /// The older release version (e.g. "1.4.0"); without it, the release before `head`
    /// (semantic-version order when the versions parse, else creation order).
    #[serde(default)]
    pub base: Option<String>,
    /// The newer release version.
    pub head: String,
    /// How far back to read transactions for p95 and failure rate (default 30d).
    #[serde(default, rename = "timeRange")]
    pub time_range: Option<String>,
}

/// Arguments of `capture_event`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct CaptureEventArgs {
    /// Project slug or numeric id.
    pub project: String,
    /// "fatal", "error", "warning", "info" or "debug".
    pub level: String,
    /// The message; events with the same message group into one issue.
    pub message: String,
    /// The user, e.g. {"id": "42", "email": "a@example.com"}.
    #[serde(default)]
    pub user: Option<Value>,
    /// Tags, e.g. {"feature": "checkout"}.
    #[serde(default)]
    pub tags: Option<BTreeMap<String, String>>,
    /// Extra data shown with the event.
    #[serde(default)]
    pub extra: Option<serde_json::Map<String, Value>>,
    /// Environment (e.g. "production").
    #[serde(default)]
    pub environment: Option<String>,
    /// Release version.
    #[serde(default)]
    pub release: Option<String>,
}

/// Arguments of `search_issues`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct SearchIssuesArgs {
    /// Project slug or numeric id; every project when left out.
    #[serde(default)]
    pub project: Option<String>,
    /// Sentry search syntax, e.g. `is:unresolved level:error release:1.2 timeout`.
    /// Default `is:unresolved`.
    #[serde(default)]
    pub query: Option<String>,
    /// "date" (last seen, default), "new" (first seen), "freq" (events) or "user" (users).
    #[serde(default)]
    pub sort: Option<String>,
    /// Most issues returned (default 25, at most 100).
    #[serde(default)]
    pub limit: Option<usize>,
}

/// Arguments of `get_issue_details`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct IssueArgs {
    /// Issue id ("42") or short id ("DEFAULT-1A").
    pub issue: String,
}

/// Arguments of `get_event`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct EventArgs {
    /// Event id: 32 hex characters (dashes allowed).
    pub event_id: String,
}

/// Arguments of `get_trace_details`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct TraceArgs {
    /// Trace id: 32 hex characters.
    pub trace_id: String,
}

/// Arguments of `search_events`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct SearchEventsArgs {
    /// Project slug or numeric id; every project when left out.
    #[serde(default)]
    pub project: Option<String>,
    /// "errors" (error and message events) or "transactions".
    pub dataset: String,
    /// Columns, as Sentry's Discover names them: id, timestamp, title, message, level,
    /// transaction, release, environment, user, user.email, issue (short id), issue.id, trace,
    /// transaction.duration (ms; alias duration), transaction.status (alias status),
    /// error.type, error.value, project, or any tag key. Default: a useful set per dataset.
    #[serde(default)]
    pub fields: Option<Vec<String>>,
    /// Sentry search syntax over the same names: `release:2.0 !level:info
    /// transaction.duration:>500ms error.type:ValueError* timeout` (free text matches the
    /// title, message, transaction or culprit).
    #[serde(default)]
    pub query: Option<String>,
    /// 30m, 1h, 24h (default), 7d or 2w.
    #[serde(default, rename = "timeRange")]
    pub time_range: Option<String>,
    /// Most rows, newest first (default 50, at most 1000).
    #[serde(default)]
    pub limit: Option<usize>,
}

/// Arguments of `list_user_feedback`.
#[derive(Debug, Default, Deserialize, JsonSchema)]
pub struct UserFeedbackArgs {
    /// Project slug (e.g. "default") or numeric id; `find_projects` lists them. Needed unless
    /// `issue` is given.
    #[serde(default)]
    pub project: Option<String>,
    /// Only the feedback of this issue: numeric id ("42") or short id ("DEFAULT-1A").
    #[serde(default)]
    pub issue: Option<String>,
    /// Most feedback, newest first (default 25, at most 100).
    #[serde(default)]
    pub limit: Option<usize>,
}

// ---------------------------------------------------------------------------------------
// Answers
// ---------------------------------------------------------------------------------------

/// One user feedback.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FeedbackInfo {
    /// Its id (32 hex).
    pub id: String,
    /// "user_report" (legacy report about one event) or "feedback" (new-style feedback).
    pub kind: String,
    /// What the user wrote.
    pub comments: String,
    /// The user's name, if given.
    pub name: Option<String>,
    /// The user's email, if given.
    pub email: Option<String>,
    /// When it was received (ISO 8601).
    pub date_created: String,
    /// The event it is about, if any (`get_event` shows it).
    pub event_id: Option<String>,
    /// The issue of that event (numeric id), once the event is processed.
    pub issue_id: Option<String>,
    /// The page it was given on (new-style feedback).
    pub url: Option<String>,
    /// Environment.
    pub environment: Option<String>,
}

/// Answer of `list_user_feedback`.
#[derive(Debug, Serialize, JsonSchema)]
pub struct UserFeedbackAnswer {
    /// Newest first.
    pub feedback: Vec<FeedbackInfo>,
    /// True when more feedback matched than `limit`.
    pub truncated: bool,
}

/// A project.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProjectInfo {
    /// Numeric id (the number at the end of the DSN).
    pub id: u64,
    /// Slug, usable as `project` in every tool.
    pub slug: String,
    /// Display name.
    pub name: String,
    /// Platform, if set.
    pub platform: Option<String>,
    /// Organization slug.
    pub organization: String,
    /// Unresolved issues now.
    pub unresolved_issues: u64,
}

/// Answer of `find_projects`.
#[derive(Debug, Serialize, JsonSchema)]
pub struct ProjectsAnswer {
    /// The projects this caller can see.
    pub projects: Vec<ProjectInfo>,
}

/// An issue, compactly.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IssueSummary {
    /// Numeric id.
    pub id: String,
    /// Short id (`DEFAULT-1A`).
    pub short_id: String,
    /// Title (`Type: value` or the message).
    pub title: String,
    /// Where it happened (function/module or transaction).
    pub culprit: String,
    /// Level of the latest event.
    pub level: String,
    /// unresolved, resolved or ignored.
    pub status: String,
    /// new, ongoing, regressed, escalating, archived_*…
    pub substatus: Option<String>,
    /// Events ever.
    pub count: u64,
    /// Users ever.
    pub user_count: u64,
    /// First event.
    pub first_seen: String,
    /// Latest event.
    pub last_seen: String,
    /// Release of the first event (the release that introduced the issue).
    pub first_release: Option<String>,
    /// Release of the latest event.
    pub last_release: Option<String>,
    /// Project slug.
    pub project: String,
    /// Assignee ("user:ID" or "team:SLUG"), if any.
    pub assigned_to: Option<String>,
    /// Labels put on the issue (`manage_issues` changes.tags).
    pub tags: BTreeMap<String, String>,
    /// The primary grouping hash, only in answers to a query node's fan-out: it merges the
    /// parts of one issue that several processor nodes hold.
    #[serde(rename = "ospreyHash", skip_serializing_if = "Option::is_none")]
    #[schemars(skip)]
    pub osprey_hash: Option<String>,
}

impl IssueSummary {
    fn new(i: Issue, state: &IssueWorkflow, rec: &IssueRecord, acc: Access) -> Self {
        IssueSummary {
            osprey_hash: acc.fanout.then(|| rec.primary_hash.clone()),
            assigned_to: state
                .assigned_to
                .as_ref()
                .map(|a| format!("{}:{}", a.kind, a.id)),
            tags: state.tags.clone(),
            count: i.count.parse().unwrap_or(0),
            id: i.id,
            short_id: i.short_id,
            title: i.title,
            culprit: i.culprit,
            level: i.level,
            status: i.status,
            substatus: i.substatus,
            user_count: i.user_count,
            first_seen: i.first_seen,
            last_seen: i.last_seen,
            first_release: i.first_release.map(|r| r.version),
            last_release: i.last_release.map(|r| r.version),
            project: i.project.slug,
        }
    }
}

/// Answer of `search_issues`.
#[derive(Debug, Serialize, JsonSchema)]
pub struct IssuesAnswer {
    /// Issues matching in total.
    pub total: usize,
    /// The first `limit` of them.
    pub issues: Vec<IssueSummary>,
}

/// An issue with its numbers in the analysed range.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IssueInRange {
    /// The issue.
    #[serde(flatten)]
    pub issue: IssueSummary,
    /// Events in the range (after filters).
    pub events_in_range: u64,
    /// Users in the range.
    pub users_in_range: u64,
}

/// Totals of an error analysis.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ErrorTotals {
    /// Error events in the range.
    pub events: u64,
    /// Distinct users affected.
    pub users: u64,
    /// Distinct issues with events.
    pub issues: u64,
    /// Events per level.
    pub by_level: BTreeMap<String, u64>,
}

/// Current range against the one before it.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Trend {
    /// Events in the previous range of the same length.
    pub previous_events: u64,
    /// Current minus previous.
    pub change: i64,
    /// Change in percent of the previous range (null when it had none).
    pub change_percent: Option<f64>,
    /// "up", "down" or "flat".
    pub direction: String,
}

/// Answer of `get_error_analysis`.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ErrorAnalysis {
    /// Project slug.
    pub project: String,
    /// Range start (ISO 8601).
    pub start: String,
    /// Range end.
    pub end: String,
    /// Totals.
    pub totals: ErrorTotals,
    /// Error events per minute over the range.
    pub error_events_per_minute: f64,
    /// Issues with the most events in the range (at most 10).
    pub top_issues: Vec<IssueInRange>,
    /// Issues first seen in the range.
    pub new_issues: Vec<IssueInRange>,
    /// Issues that came back after being resolved, in the range.
    pub regressed_issues: Vec<IssueInRange>,
    /// Against the previous range.
    pub trend: Trend,
    /// True when the range held more events than one answer reads (200k): counts are lower
    /// bounds.
    pub truncated: bool,
}

/// Metric values of one set of transactions; only requested metrics are present.
pub type MetricRow = BTreeMap<String, Option<f64>>;

/// One group of a performance breakdown.
#[derive(Debug, Serialize, JsonSchema)]
pub struct PerfGroup {
    /// Transaction name, release or environment ("" = none).
    pub key: String,
    /// Its metrics.
    pub metrics: MetricRow,
    /// Its metrics in the previous range.
    pub previous: MetricRow,
}

/// Answer of `get_performance_metrics`.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PerformanceAnswer {
    /// Project slug.
    pub project: String,
    /// Range start.
    pub start: String,
    /// Range end.
    pub end: String,
    /// All matching transactions (`count` is always present).
    pub metrics: MetricRow,
    /// The range of the same length before.
    pub previous: MetricRow,
    /// metrics minus previous, per metric.
    pub change: MetricRow,
    /// The breakdown table, if asked for.
    pub breakdown: Vec<PerfGroup>,
    /// Apdex threshold T of the project, ms.
    pub apdex_threshold_ms: u64,
    /// Always false: performance numbers come from merged histograms and counters, which
    /// cover every transaction.
    pub truncated: bool,
    /// Only in answers to a query node's fan-out, from a node without transactions in the
    /// range: the error a single server would give, used if no node has any.
    #[serde(rename = "ospreyNoData", skip_serializing_if = "Option::is_none")]
    #[schemars(skip)]
    pub osprey_no_data: Option<String>,
    /// Only in answers to a query node's fan-out: each row's duration histogram, so that a
    /// row split over nodes gets exact percentiles from their sum.
    #[serde(rename = "ospreyHistograms", skip_serializing_if = "Option::is_none")]
    #[schemars(skip)]
    pub osprey_histograms: Option<Value>,
}

/// One release's side of a comparison.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReleaseSide {
    /// Version.
    pub version: String,
    /// Error events of this release (all time).
    pub error_events: u64,
    /// Issues with events in this release.
    pub issues: u64,
    /// Transactions of this release in the range.
    pub transactions: u64,
    /// p95 duration, ms.
    pub p95_ms: Option<f64>,
    /// Failure rate.
    pub failure_rate: Option<f64>,
    /// What `track_release` (or sentry-cli) recorded about it, if anything.
    pub tracked: Option<TrackedRelease>,
}

/// A release record: when it was released, commits and deploys.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TrackedRelease {
    /// Created (ISO 8601).
    pub date_created: String,
    /// Released/deployed, if set.
    pub date_released: Option<String>,
    /// Commits recorded.
    pub commits: usize,
    /// Deploys: environment and time, oldest first.
    pub deploys: Vec<DeployInfo>,
    /// Project slugs the release belongs to.
    pub projects: Vec<String>,
}

/// One deploy.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeployInfo {
    /// Deploy id.
    pub id: String,
    /// Environment.
    pub environment: String,
    /// Finished (ISO 8601).
    pub date_finished: String,
}

/// Answer of `track_release`.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReleaseAnswer {
    /// Version.
    pub version: String,
    /// True if the release did not exist before.
    pub created: bool,
    /// The release now.
    pub release: TrackedRelease,
    /// The deploy recorded by this call, if `environment` was given.
    pub deploy: Option<DeployInfo>,
}

/// Answer of `configure_alert`.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AlertAnswer {
    /// "issue" (conditions on events and issues) or "metric" (an aggregate over
    /// transactions).
    pub kind: String,
    /// Rule id.
    pub id: String,
    /// False when a rule of the same name was replaced.
    pub created: bool,
    /// The stored rule in Sentry's shape.
    pub rule: Value,
}

/// One fired alert.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FiredInfo {
    /// Rule id.
    pub rule_id: String,
    /// Rule name when it fired.
    pub rule_name: String,
    /// "issue" or "metric".
    pub kind: String,
    /// When (ISO 8601).
    pub fired_at: String,
    /// The issue (issue alerts).
    pub issue_id: Option<String>,
    /// The issue's short id (issue alerts).
    pub short_id: Option<String>,
    /// The event that fired it (issue alerts).
    pub event_id: Option<String>,
    /// The notification text.
    pub text: Option<String>,
}

/// Answer of `list_alerts`.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AlertsAnswer {
    /// Issue alert rules of the project, in Sentry's shape.
    pub issue_rules: Vec<Value>,
    /// Metric alert rules watching the project, in Sentry's shape.
    pub metric_rules: Vec<Value>,
    /// Fired alerts of the project, newest first.
    pub fired: Vec<FiredInfo>,
}

/// Answer of `compare_releases`.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReleaseComparison {
    /// The older release.
    pub base: ReleaseSide,
    /// The newer release.
    pub head: ReleaseSide,
    /// Issues introduced by head (first seen in it).
    pub new_issues: Vec<IssueSummary>,
    /// Issues that regressed in head (resolved before, seen again in head).
    pub regressions: Vec<IssueSummary>,
    /// head p95 minus base p95, ms.
    pub p95_change_ms: Option<f64>,
    /// head failure rate minus base.
    pub failure_rate_change: Option<f64>,
}

/// What happened to one issue of a bulk update.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UpdatedIssue {
    /// As given.
    pub issue: String,
    /// Numeric id.
    pub id: String,
    /// Status now.
    pub status: String,
    /// Substatus now.
    pub substatus: Option<String>,
    /// Assignee now ("user:ID" or "team:SLUG").
    pub assigned_to: Option<String>,
    /// Labels now.
    pub tags: BTreeMap<String, String>,
    /// Id of the note added, if any.
    pub note_id: Option<String>,
}

/// Answer of `manage_issues`.
#[derive(Debug, Serialize, JsonSchema)]
pub struct ManageAnswer {
    /// The issues after the change.
    pub updated: Vec<UpdatedIssue>,
}

/// Answer of `capture_event`.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CaptureAnswer {
    /// The new event's id (use with `get_event` once processed).
    pub event_id: String,
    /// Always true: the event is durably in the ingest log and is processed like an SDK's.
    pub accepted: bool,
}

/// A stack frame.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Frame {
    /// Function.
    pub function: Option<String>,
    /// Module or package.
    pub module: Option<String>,
    /// File.
    pub filename: Option<String>,
    /// Line.
    pub line_no: Option<u64>,
    /// The source line, when the SDK sent it.
    pub context_line: Option<String>,
    /// Whether the frame is the application's own code (not a library).
    pub in_app: bool,
}

/// One exception of the latest event; frames are oldest call first, crashing frame last.
#[derive(Debug, Serialize, JsonSchema)]
pub struct ExceptionInfo {
    /// Type.
    #[serde(rename = "type")]
    pub exception_type: Option<String>,
    /// Value.
    pub value: Option<String>,
    /// Frames (the last 50).
    pub frames: Vec<Frame>,
}

/// The latest event of an issue.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LatestEvent {
    /// Event id.
    pub event_id: String,
    /// When.
    pub date_created: String,
    /// Message, if any.
    pub message: String,
    /// Environment.
    pub environment: Option<String>,
    /// Release.
    pub release: Option<String>,
    /// User interface as sent (scrubbed).
    pub user: Option<Value>,
    /// Tags.
    pub tags: BTreeMap<String, String>,
    /// Exceptions, innermost last.
    pub exceptions: Vec<ExceptionInfo>,
}

/// A tag facet.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TagFacet {
    /// Tag key.
    pub key: String,
    /// Events with the tag.
    pub total_values: u64,
    /// Distinct values.
    pub unique_values: u64,
    /// Top values with counts.
    pub top_values: Vec<(String, u64)>,
}

/// Answer of `get_issue_details`.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IssueDetails {
    /// The issue.
    pub issue: IssueSummary,
    /// The latest event with its stack trace.
    pub latest_event: Option<LatestEvent>,
    /// Tag facets (top 5 values each).
    pub tags: Vec<TagFacet>,
    /// Users: distinct count and the most affected.
    pub users: UsersInfo,
    /// Recent activity, newest first (at most 20): notes, status changes, assignments,
    /// labels, regressions.
    pub activity: Vec<ActivityInfo>,
}

/// One activity entry of an issue.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ActivityInfo {
    /// Sentry's activity type: note, set_resolved, set_ignored, assigned, set_tags,
    /// set_regression, …
    #[serde(rename = "type")]
    pub kind: String,
    /// Details ({"text": …} for notes).
    pub data: Value,
    /// Who (token name); null for osprey itself.
    pub user: Option<String>,
    /// When (ISO 8601).
    pub date_created: String,
}

/// Users of an issue.
#[derive(Debug, Serialize, JsonSchema)]
pub struct UsersInfo {
    /// Distinct users.
    pub count: u64,
    /// Most affected users (`id:…`, `email:…`, `ip:…`) with event counts.
    pub top: Vec<(String, u64)>,
}

/// Answer of `get_event`.
#[derive(Debug, Serialize, JsonSchema)]
pub struct EventAnswer {
    /// The event in Sentry's API shape (entries: exception, message, request, breadcrumbs…).
    pub event: Value,
}

/// One event of a trace.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TraceEvent {
    /// Event id.
    pub event_id: String,
    /// Project slug.
    pub project: String,
    /// "transaction", "error" or "default".
    #[serde(rename = "type")]
    pub event_type: String,
    /// Title.
    pub title: String,
    /// Transaction name, if any.
    pub transaction: Option<String>,
    /// When (ISO 8601).
    pub timestamp: String,
    /// Duration, ms (transactions).
    pub duration_ms: Option<f64>,
    /// Status (transactions).
    pub status: Option<String>,
    /// Spans (transactions).
    pub span_count: usize,
    /// Issue id (errors).
    pub issue_id: Option<String>,
}

/// Answer of `get_trace_details`.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TraceAnswer {
    /// Trace id.
    pub trace_id: String,
    /// Events, oldest first.
    pub events: Vec<TraceEvent>,
    /// Transactions in the trace.
    pub transactions: usize,
    /// Errors in the trace.
    pub errors: usize,
    /// Projects involved.
    pub projects: Vec<String>,
    /// Latest end minus earliest start, ms.
    pub duration_ms: f64,
    /// The span tree, depth-first (each: spanId, parentSpanId, depth, kind, op,
    /// description, status, offsetMs from the trace start, durationMs, projectId, eventId,
    /// errors raised in it); the first 200.
    pub spans: Vec<Value>,
    /// Spans beyond the first 200.
    pub spans_omitted: usize,
    /// The trace's stored events, only in answers to a query node's fan-out: it builds the
    /// span tree from every node's events.
    #[serde(rename = "ospreyEvents", skip_serializing_if = "Option::is_none")]
    #[schemars(skip)]
    pub osprey_events: Option<Vec<records::StoredEvent>>,
}

/// Answer of `search_events`.
#[derive(Debug, Serialize, JsonSchema)]
pub struct EventsAnswer {
    /// Matching events in the range.
    pub count: usize,
    /// The newest `limit`, one object per event keyed by field.
    pub rows: Vec<BTreeMap<String, Value>>,
    /// True when a range held more events than one answer reads.
    pub truncated: bool,
}

// ---------------------------------------------------------------------------------------
// The handler
// ---------------------------------------------------------------------------------------

const READ_SCOPES: &[&str] = &["event:read", "project:read"];
const WRITE_SCOPES: &[&str] = &["event:write", "project:write"];

fn access(ext: &Extensions, scopes: &[&str]) -> Result<Access, String> {
    let Some(parts) = ext.get::<http::request::Parts>() else {
        // stdio: the local user, who can read the data directory anyway.
        return Ok(Access {
            org: None,
            token_id: None,
            fanout: false,
        });
    };
    let Some(caller) = parts.extensions.get::<Caller>() else {
        return Err("this request was not authenticated; send Authorization: Bearer TOKEN".into());
    };
    if !scopes.iter().any(|s| caller.token.has_scope(s)) {
        return Err(format!(
            "the API token lacks the scope this tool needs ({}); create a token with it \
             (`osprey token create --scopes {}`)",
            scopes.join(" or "),
            scopes[0]
        ));
    }
    Ok(Access {
        org: Some(caller.token.org_id),
        token_id: Some(caller.token.id),
        fanout: parts.headers.contains_key(crate::fanout::FANOUT_HEADER),
    })
}

#[tool_router]
impl OspreyTools {
    /// Tools over `query`. `log` is where `capture_event` appends; without one (a read-only
    /// follower) write tools answer with an error that says where to write instead.
    pub fn new(query: QueryService, log: Option<Arc<dyn Log>>) -> OspreyTools {
        OspreyTools {
            inner: Arc::new(Inner { query, log }),
            tool_router: Self::tool_router(),
            peers: None,
        }
    }

    /// These tools on a query node: data tools ask `peers` and merge their answers
    /// ([`crate::fanout`]); metadata tools answer from this node's shared metadata.
    pub fn with_peers(mut self, peers: crate::fanout::McpPeers) -> OspreyTools {
        self.peers = Some(Arc::new(peers));
        self
    }

    /// One tool call: checks the caller's scopes, then answers with `f` on the blocking pool.
    /// Every tool but `capture_event` is this.
    async fn call<A: Send + 'static, T: Send + 'static>(
        &self,
        ext: &Extensions,
        scopes: &[&str],
        args: A,
        f: impl FnOnce(&Inner, Access, A) -> Result<T, String> + Send + 'static,
    ) -> Result<Json<T>, String> {
        let acc = access(ext, scopes)?;
        self.run(move |i| f(i, acc, args)).await.map(Json)
    }

    /// Runs `f` on the blocking pool after catching a follower store up with the primary.
    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Inner) -> Result<T, String> + Send + 'static,
    ) -> Result<T, String> {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || {
            inner.query.store().catch_up().map_err(internal)?;
            f(&inner)
        })
        .await
        .map_err(internal)?
    }

    #[tool(
        description = "List the projects (slug, id, platform, unresolved issue count). Use a slug or id as `project` in the other tools.",
        annotations(read_only_hint = true)
    )]
    async fn find_projects(
        &self,
        ext: Extensions,
        Parameters(args): Parameters<NoArgs>,
    ) -> Result<Json<ProjectsAnswer>, String> {
        self.call(&ext, READ_SCOPES, args, |i, acc, _args| {
            i.find_projects(acc)
        })
        .await
    }

    #[tool(
        description = "Errors of a project over a time range: totals, error events per minute, top issues, new issues, regressed issues, and the trend against the previous range of the same length.",
        annotations(read_only_hint = true)
    )]
    async fn get_error_analysis(
        &self,
        ext: Extensions,
        Parameters(args): Parameters<ErrorAnalysisArgs>,
    ) -> Result<Json<ErrorAnalysis>, String> {
        self.call(&ext, READ_SCOPES, args, Inner::error_analysis)
            .await
    }

    #[tool(
        description = "Transaction performance of a project over a time range: apdex, throughput, p50/p75/p95/p99 (ms), error and failure rate, optionally broken down by transaction, release or environment, with the change against the previous range.",
        annotations(read_only_hint = true)
    )]
    async fn get_performance_metrics(
        &self,
        ext: Extensions,
        Parameters(args): Parameters<PerformanceArgs>,
    ) -> Result<Json<PerformanceAnswer>, String> {
        self.call(&ext, READ_SCOPES, args, Inner::performance).await
    }

    #[tool(
        description = "Compare two releases of a project: issues the newer release introduced, issues that regressed in it, the change of p95 duration and failure rate, and what track_release recorded (commits, deploys).",
        annotations(read_only_hint = true)
    )]
    async fn compare_releases(
        &self,
        ext: Extensions,
        Parameters(args): Parameters<CompareReleasesArgs>,
    ) -> Result<Json<ReleaseComparison>, String> {
        self.call(&ext, READ_SCOPES, args, Inner::compare_releases)
            .await
    }

    #[tool(
        description = "Release health of a project over a time range: sessions, errored/crashed/abnormal sessions, users, and crash-free session and user rates (percent), for one release or the project with its releases that had the most sessions.",
        annotations(read_only_hint = true)
    )]
    async fn get_release_health(
        &self,
        ext: Extensions,
        Parameters(args): Parameters<ReleaseHealthArgs>,
    ) -> Result<Json<ReleaseHealthAnswer>, String> {
        self.call(&ext, READ_SCOPES, args, Inner::release_health)
            .await
    }

    #[tool(
        description = "Search issues with Sentry's search syntax (is:unresolved, level:error, release:X, firstRelease:X, assigned:me, has:key, tag:value, firstSeen:-24h, times_seen:>10, free text…), sorted by date, new, freq or user.",
        annotations(read_only_hint = true)
    )]
    async fn search_issues(
        &self,
        ext: Extensions,
        Parameters(args): Parameters<SearchIssuesArgs>,
    ) -> Result<Json<IssuesAnswer>, String> {
        self.call(&ext, READ_SCOPES, args, Inner::search_issues)
            .await
    }

    #[tool(
        description = "One issue in depth: status, counts, assignee and labels, the release that introduced it and the latest one, the latest event's stack trace with the app's own frames marked (inApp), tag facets, the most affected users and the recent activity (notes, status changes).",
        annotations(read_only_hint = true)
    )]
    async fn get_issue_details(
        &self,
        ext: Extensions,
        Parameters(args): Parameters<IssueArgs>,
    ) -> Result<Json<IssueDetails>, String> {
        self.call(&ext, READ_SCOPES, args, Inner::issue_details)
            .await
    }

    #[tool(
        description = "One event by id, in Sentry's event shape (exception with frames, message, request, breadcrumbs, tags, contexts).",
        annotations(read_only_hint = true)
    )]
    async fn get_event(
        &self,
        ext: Extensions,
        Parameters(args): Parameters<EventArgs>,
    ) -> Result<Json<EventAnswer>, String> {
        self.call(&ext, READ_SCOPES, args, Inner::event).await
    }

    #[tool(
        description = "Every transaction and error of one distributed trace, across projects, oldest first, with durations, statuses and the span tree.",
        annotations(read_only_hint = true)
    )]
    async fn get_trace_details(
        &self,
        ext: Extensions,
        Parameters(args): Parameters<TraceArgs>,
    ) -> Result<Json<TraceAnswer>, String> {
        self.call(&ext, READ_SCOPES, args, Inner::trace).await
    }

    #[tool(
        description = "Find individual events (dataset errors or transactions) in a time range with Sentry search syntax, returning chosen fields, newest first.",
        annotations(read_only_hint = true)
    )]
    async fn search_events(
        &self,
        ext: Extensions,
        Parameters(args): Parameters<SearchEventsArgs>,
    ) -> Result<Json<EventsAnswer>, String> {
        self.call(&ext, READ_SCOPES, args, Inner::search_events)
            .await
    }

    #[tool(
        description = "The alert rules of a project (issue alerts and metric alerts, in Sentry's shape) and the alerts that fired, newest first.",
        annotations(read_only_hint = true)
    )]
    async fn list_alerts(
        &self,
        ext: Extensions,
        Parameters(args): Parameters<ListAlertsArgs>,
    ) -> Result<Json<AlertsAnswer>, String> {
        self.call(&ext, READ_SCOPES, args, Inner::list_alerts).await
    }

    #[tool(
        description = "User feedback (what users wrote in a feedback widget or crash-report dialog), newest first, of a project or of one issue, each with the event and issue it is about.",
        annotations(read_only_hint = true)
    )]
    async fn list_user_feedback(
        &self,
        ext: Extensions,
        Parameters(args): Parameters<UserFeedbackArgs>,
    ) -> Result<Json<UserFeedbackAnswer>, String> {
        self.call(&ext, READ_SCOPES, args, Inner::user_feedback)
            .await
    }

    #[tool(
        description = "Change issues in bulk (action \"bulk_update\"): resolve, unresolve or ignore them, assign them, label them with tags, and add a note to their activity.",
        annotations(
            read_only_hint = false,
            destructive_hint = false,
            // A repeat adds the note again.
            idempotent_hint = false
        )
    )]
    async fn manage_issues(
        &self,
        ext: Extensions,
        Parameters(args): Parameters<ManageIssuesArgs>,
    ) -> Result<Json<ManageAnswer>, String> {
        self.call(&ext, WRITE_SCOPES, args, Inner::manage_issues)
            .await
    }

    #[tool(
        description = "Record a release of a project (version, commits) and, with an environment, a deploy of it; compare_releases and the releases API then show it.",
        annotations(
            read_only_hint = false,
            destructive_hint = false,
            // A repeat records another deploy.
            idempotent_hint = false
        )
    )]
    async fn track_release(
        &self,
        ext: Extensions,
        Parameters(args): Parameters<TrackReleaseArgs>,
    ) -> Result<Json<ReleaseAnswer>, String> {
        self.call(&ext, WRITE_SCOPES, args, Inner::track_release)
            .await
    }

    #[tool(
        description = "Create or replace (by name) an alert rule of a project: an issue alert (first seen, regression, more than N events or users in an interval, with level/tag filters) or a metric alert (p95 duration, count, failure rate or apdex over a window), notifying webhooks.",
        annotations(
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = true
        )
    )]
    async fn configure_alert(
        &self,
        ext: Extensions,
        Parameters(args): Parameters<ConfigureAlertArgs>,
    ) -> Result<Json<AlertAnswer>, String> {
        self.call(&ext, WRITE_SCOPES, args, Inner::configure_alert)
            .await
    }

    #[tool(
        description = "Record an event (a message with level, user, tags, extra) in a project, processed and grouped exactly like an event an SDK sends.",
        annotations(
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = false
        )
    )]
    async fn capture_event(
        &self,
        ext: Extensions,
        Parameters(args): Parameters<CaptureEventArgs>,
    ) -> Result<Json<CaptureAnswer>, String> {
        let acc = access(&ext, WRITE_SCOPES)?;
        let (log, record, event_id) = self.run(move |i| i.capture_record(acc, args)).await?;
        let ticket = log.append(vec![record]).map_err(storage_error)?;
        ticket.await.map_err(storage_error)?;
        Ok(Json(CaptureAnswer {
            event_id,
            accepted: true,
        }))
    }
}

impl OspreyTools {
    /// A data tool on a query node: asks every peer, merges ([`crate::fanout`]).
    async fn fan_out(
        &self,
        peers: &crate::fanout::McpPeers,
        request: &rmcp::model::CallToolRequestParams,
        ext: &Extensions,
    ) -> rmcp::model::CallToolResult {
        use crate::fanout;
        let name = request.name.as_ref();
        let scopes = if WRITE_TOOL_NAMES.contains(&name) {
            WRITE_SCOPES
        } else {
            READ_SCOPES
        };
        let acc = match access(ext, scopes) {
            Ok(acc) => acc,
            Err(e) => return fanout::to_result(Err(e), &[]),
        };
        let args = Value::Object(request.arguments.clone().unwrap_or_default());
        let auth = fanout::authorization(ext);
        let replies = peers.call_all(auth.as_ref(), name, &args).await;
        let merged = match name {
            "get_trace_details" => self.merge_trace(acc, &args, &replies),
            "manage_issues" if replies.answers.is_empty() && replies.missing.is_empty() => {
                self.manage_across_nodes(peers, auth.as_ref(), &args, &replies)
                    .await
            }
            _ => fanout::merge(name, &args, &replies),
        };
        fanout::to_result(merged, &replies.missing)
    }

    /// `get_trace_details` from every node's events of the trace: one span tree even when
    /// the trace's projects are processed by different nodes.
    fn merge_trace(
        &self,
        acc: Access,
        args: &Value,
        replies: &crate::fanout::Replies,
    ) -> Result<Value, String> {
        if replies.answers.is_empty() {
            return Err(crate::fanout::no_answer(replies));
        }
        let id = parse_id("trace_id", args["trace_id"].as_str().unwrap_or(""))?;
        let mut seen = std::collections::HashSet::new();
        let mut events: Vec<records::StoredEvent> = Vec::new();
        for answer in &replies.answers {
            let Some(list) = answer.get("ospreyEvents") else {
                continue;
            };
            let list: Vec<records::StoredEvent> =
                serde_json::from_value(list.clone()).map_err(internal)?;
            events.extend(list.into_iter().filter(|e| seen.insert(e.event_id.clone())));
        }
        // The order of the trace index: event time, then id.
        events.sort_by(|a, b| (a.timestamp_ms, &a.event_id).cmp(&(b.timestamp_ms, &b.event_id)));
        let visible: BTreeMap<u64, String> = self
            .inner
            .projects(acc)
            .iter()
            .map(|p| (p.id, p.slug.clone()))
            .collect();
        events.retain(|e| visible.contains_key(&e.project_id));
        serde_json::to_value(trace_answer(&id, &visible, &events)?).map_err(internal)
    }

    /// `manage_issues` whose issues live on different nodes fails on every node (each lacks
    /// some). When every issue exists somewhere, apply the change issue by issue; otherwise
    /// answer with the nodes' error, changing nothing, as a single server would.
    async fn manage_across_nodes(
        &self,
        peers: &crate::fanout::McpPeers,
        auth: Option<&http::HeaderValue>,
        args: &Value,
        failed: &crate::fanout::Replies,
    ) -> Result<Value, String> {
        let issues: Vec<Value> = args["issues"].as_array().cloned().unwrap_or_default();
        if issues.len() < 2 || issues.len() > 100 {
            return Err(crate::fanout::no_answer(failed));
        }
        for issue in &issues {
            let found = peers
                .call_all(auth, "get_issue_details", &json!({ "issue": issue }))
                .await;
            if found.answers.is_empty() {
                return Err(crate::fanout::no_answer(failed));
            }
        }
        let mut answers = Vec::new();
        for issue in &issues {
            let mut one = args.clone();
            one["issues"] = json!([issue]);
            let replies = peers.call_all(auth, "manage_issues", &one).await;
            if replies.answers.is_empty() {
                return Err(crate::fanout::no_answer(&replies));
            }
            answers.extend(replies.answers);
        }
        crate::fanout::merge(
            "manage_issues",
            args,
            &crate::fanout::Replies {
                answers,
                ..Default::default()
            },
        )
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for OspreyTools {
    async fn call_tool(
        &self,
        request: rmcp::model::CallToolRequestParams,
        context: rmcp::service::RequestContext<rmcp::RoleServer>,
    ) -> Result<rmcp::model::CallToolResponse, rmcp::ErrorData> {
        if let Some(peers) = self.peers.clone() {
            if crate::fanout::fans_out(&request.name) && self.get_tool(&request.name).is_some() {
                let result = self.fan_out(&peers, &request, &context.extensions).await;
                return Ok(rmcp::model::CallToolResponse::Complete(result));
            }
        }
        let tcc = rmcp::handler::server::tool::ToolCallContext::new(self, request, context);
        self.tool_router.call(tcc).await
    }

    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("osprey", env!("CARGO_PKG_VERSION")))
            .with_instructions(
                "osprey: errors and performance of your applications (Sentry-compatible). \
                 Start with find_projects; then get_error_analysis / get_performance_metrics \
                 for a time range (timeRange like 1h, 24h, 7d), search_issues and \
                 get_issue_details to dig in, track_release, compare_releases and \
                 get_release_health (crash-free sessions and users) around a deploy, \
                 manage_issues to resolve, ignore, assign, label or annotate, \
                 configure_alert / list_alerts for alert rules and what fired, and \
                 list_user_feedback for what users wrote about a project or an issue.",
            )
    }
}

// ---------------------------------------------------------------------------------------
// The answers, synchronously
// ---------------------------------------------------------------------------------------

/// The filters of one `query::perf` question.
#[derive(Clone, Copy, Default)]
struct PerfFilter<'a> {
    environment: Option<&'a str>,
    release: Option<&'a str>,
    transaction: Option<&'a str>,
    /// Also return each row's duration histogram (for a query node's exact merge).
    histograms: bool,
}

fn iso(ms: u64) -> String {
    query::issues::iso(ms)
}

impl Inner {
    fn store(&self) -> &storage::Store {
        self.query.store()
    }

    fn orgs(&self, acc: Access) -> Vec<u64> {
        match acc.org {
            Some(o) => vec![o],
            None => self
                .store()
                .meta()
                .organizations()
                .iter()
                .map(|o| o.id)
                .collect(),
        }
    }

    fn projects(&self, acc: Access) -> Vec<Arc<Project>> {
        self.orgs(acc)
            .into_iter()
            .flat_map(|o| self.store().meta().projects_of_org(o))
            .collect()
    }

    /// A project by slug or id, or an error listing the known ones.
    fn project(&self, acc: Access, wanted: &str) -> Result<Arc<Project>, String> {
        let wanted = wanted.trim();
        for org in self.orgs(acc) {
            if let Some(p) = self.store().meta().project_by_slug(org, wanted) {
                return Ok(p);
            }
        }
        let known: Vec<String> = self
            .projects(acc)
            .iter()
            .map(|p| format!("{} (id {})", p.slug, p.id))
            .collect();
        Err(if known.is_empty() {
            format!("unknown project {wanted:?}: there are no projects yet")
        } else {
            format!(
                "unknown project {wanted:?}. Known projects: {}. Pass one of these slugs or ids as `project`.",
                known.join(", ")
            )
        })
    }

    fn issue_summary(&self, rec: &IssueRecord, acc: Access) -> Result<IssueSummary, String> {
        let state = workflow::workflow(self.store(), rec.id).map_err(internal)?;
        Ok(IssueSummary::new(
            self.query.issue_from_record(rec).map_err(internal)?,
            &state,
            rec,
            acc,
        ))
    }

    /// Who a write tool acts as: the HTTP caller's API token (its name shows in the
    /// activity log), or the local user on stdio.
    fn actor(&self, acc: Access) -> query::api::Actor {
        let token = acc.token_id.and_then(|id| {
            self.orgs(acc)
                .into_iter()
                .flat_map(|o| self.store().meta().tokens_of_org(o))
                .find(|t| t.id == id)
        });
        match token {
            Some(t) => query::api::Actor::of_token(&t),
            None => query::api::Actor {
                id: "local".into(),
                name: "osprey mcp".into(),
            },
        }
    }

    /// Fails with the message that says where to write when this is a read-only follower.
    fn writable(&self) -> Result<(), String> {
        self.store().ensure_writable().map_err(storage_error)
    }

    /// An issue by id or short id, visible to `acc`.
    fn issue_record(&self, acc: Access, wanted: &str) -> Result<IssueRecord, String> {
        let rec = self
            .query
            .issue_record(wanted.trim(), acc.org)
            .map_err(internal)?;
        rec.ok_or_else(|| {
            format!(
                "no issue {wanted:?}. Pass a numeric issue id (\"42\") or a short id \
                 (\"DEFAULT-1A\"); search_issues lists them."
            )
        })
    }

    fn find_projects(&self, acc: Access) -> Result<ProjectsAnswer, String> {
        let mut projects = Vec::new();
        for p in self.projects(acc) {
            let unresolved = self
                .query
                .project_issue_records(p.id)
                .map_err(internal)?
                .iter()
                .filter(|r| r.status == IssueStatus::Unresolved)
                .count() as u64;
            let organization = self
                .store()
                .meta()
                .organization(p.org_id)
                .map(|o| o.slug.clone())
                .unwrap_or_default();
            projects.push(ProjectInfo {
                id: p.id,
                slug: p.slug.clone(),
                name: p.name.clone(),
                platform: (!p.platform.is_empty()).then(|| p.platform.clone()),
                organization,
                unresolved_issues: unresolved,
            });
        }
        Ok(ProjectsAnswer { projects })
    }

    fn error_analysis(
        &self,
        acc: Access,
        args: ErrorAnalysisArgs,
    ) -> Result<ErrorAnalysis, String> {
        let project = self.project(acc, &args.project)?;
        let range = analysis::parse_range(&args.time_range)?;
        let filters = args.filters.unwrap_or_default();
        let filter = EventFilter {
            environment: args.environment,
            levels: filters.level,
            tags: filters.tags,
        };
        let now = storage::now_ms();
        let start = now.saturating_sub(range);
        let cur = analysis::tally_errors(self.store(), project.id, start, now + 1, &filter)
            .map_err(internal)?;
        let prev = analysis::tally_errors(
            self.store(),
            project.id,
            start.saturating_sub(range),
            start,
            &filter,
        )
        .map_err(internal)?;
        let mut records = BTreeMap::new();
        for rec in self
            .query
            .project_issue_records(project.id)
            .map_err(internal)?
        {
            records.insert(rec.id, rec);
        }
        let in_range = |rec: &IssueRecord| -> Result<IssueInRange, String> {
            let t = cur.by_issue.get(&rec.id).cloned().unwrap_or_default();
            Ok(IssueInRange {
                issue: self.issue_summary(rec, acc)?,
                events_in_range: t.events,
                users_in_range: t.users.len() as u64,
            })
        };
        let mut ranked: Vec<(&u64, &analysis::IssueTally)> = cur.by_issue.iter().collect();
        ranked.sort_by(|a, b| b.1.events.cmp(&a.1.events).then(a.0.cmp(b.0)));
        let mut top_issues = Vec::new();
        for (id, _) in ranked.iter().take(10) {
            if let Some(rec) = records.get(id) {
                top_issues.push(in_range(rec)?);
            }
        }
        let filtered =
            !filter.levels.is_empty() || !filter.tags.is_empty() || filter.environment.is_some();
        let mut new_issues = Vec::new();
        let mut regressed_issues = Vec::new();
        for rec in records.values() {
            // With filters, only issues that have matching events in the range count.
            if filtered && !cur.by_issue.contains_key(&rec.id) {
                continue;
            }
            if rec.first_seen_ms >= start && rec.first_seen_ms <= now {
                new_issues.push(in_range(rec)?);
            }
            let became_active = if rec.active_at_ms > 0 {
                rec.active_at_ms
            } else {
                rec.last_seen_ms
            };
            if rec.substatus == Some(IssueSubstatus::Regressed) && became_active >= start {
                regressed_issues.push(in_range(rec)?);
            }
        }
        new_issues.sort_by_key(|i| std::cmp::Reverse(i.events_in_range));
        regressed_issues.sort_by_key(|i| std::cmp::Reverse(i.events_in_range));
        let change = cur.total as i64 - prev.total as i64;
        Ok(ErrorAnalysis {
            project: project.slug.clone(),
            start: iso(start),
            end: iso(now),
            totals: ErrorTotals {
                events: cur.total,
                users: cur.users.len() as u64,
                issues: cur.by_issue.len() as u64,
                by_level: cur.by_level.clone(),
            },
            error_events_per_minute: cur.total as f64 / (range as f64 / 60_000.0),
            top_issues,
            new_issues,
            regressed_issues,
            trend: Trend {
                previous_events: prev.total,
                change,
                change_percent: (prev.total > 0)
                    .then(|| (change as f64 / prev.total as f64 * 1000.0).round() / 10.0),
                direction: match change {
                    c if c > 0 => "up",
                    c if c < 0 => "down",
                    _ => "flat",
                }
                .into(),
            },
            truncated: cur.truncated || prev.truncated,
        })
    }

    /// One `query::perf` question about `project` over `[start, end)`.
    fn perf(
        &self,
        project: &Project,
        (start_ms, end_ms): (u64, u64),
        filter: PerfFilter<'_>,
        group_by: Option<GroupBy>,
        limit: usize,
    ) -> Result<query::perf::PerfReport, String> {
        self.query
            .perf(&PerfQuery {
                project_id: project.id,
                range: TimeRange::Between { start_ms, end_ms },
                environment: filter.environment.map(str::to_owned),
                release: filter.release.map(str::to_owned),
                transaction: filter.transaction.map(str::to_owned),
                group_by,
                limit,
                histograms: filter.histograms,
                ..PerfQuery::default()
            })
            .map_err(|e| match e {
                PerfError::InvalidRange(m) => {
                    format!("invalid time range ({m}): {}", analysis::RANGE_HELP)
                }
                other => internal(other),
            })
    }

    fn performance(&self, acc: Access, args: PerformanceArgs) -> Result<PerformanceAnswer, String> {
        const METRICS: &[&str] = &[
            "apdex",
            "throughput",
            "p50",
            "p75",
            "p95",
            "p99",
            "error_rate",
            "failure_rate",
        ];
        let project = self.project(acc, &args.project)?;
        let range = analysis::parse_range(&args.time_range)?;
        let metrics: Vec<String> = match args.metrics {
            Some(m) if !m.is_empty() => m,
            _ => METRICS.iter().map(|s| s.to_string()).collect(),
        };
        if let Some(bad) = metrics.iter().find(|m| !METRICS.contains(&m.as_str())) {
            return Err(format!(
                "unknown metric {bad:?}; `metrics` takes any of {}",
                METRICS.join(", ")
            ));
        }
        let group_by = match &args.breakdown {
            None => None,
            Some(b) => Some(match b.field.as_str() {
                "transaction" => GroupBy::Transaction,
                "release" => GroupBy::Release,
                "environment" => GroupBy::Environment,
                other => {
                    return Err(format!(
                        "breakdown.field {other:?} is not supported; use \"transaction\", \"release\" or \"environment\""
                    ))
                }
            }),
        };
        let limit = args
            .breakdown
            .as_ref()
            .and_then(|b| b.limit)
            .unwrap_or(10)
            .clamp(1, 100);
        let now = storage::now_ms();
        let cur_range = (now.saturating_sub(range), now);
        let prev_range = (cur_range.0.saturating_sub(range), cur_range.0);
        let env = args.environment.as_deref();
        if let Some(name) = &args.transaction {
            let mut known = std::collections::BTreeSet::new();
            for r in [cur_range, prev_range] {
                let names = self.perf(
                    &project,
                    r,
                    PerfFilter {
                        environment: env,
                        ..PerfFilter::default()
                    },
                    Some(GroupBy::Transaction),
                    query::perf::MAX_GROUPS,
                )?;
                known.extend(names.groups.into_iter().map(|g| g.key));
            }
            if !known.contains(name) {
                let close = analysis::did_you_mean(name, known.iter().map(String::as_str));
                return Err(if close.is_empty() {
                    format!(
                        "no transaction named {name:?} in project {} in the last {} (or the range before); \
                         leave `transaction` out to see every transaction, or use breakdown {{\"field\": \"transaction\"}} to list names",
                        project.slug, args.time_range
                    )
                } else {
                    format!(
                        "no transaction named {name:?} in project {}; did you mean {}?",
                        project.slug,
                        close
                            .iter()
                            .map(|c| format!("{c:?}"))
                            .collect::<Vec<_>>()
                            .join(" or ")
                    )
                });
            }
        }
        let tx = args.transaction.as_deref();
        let cur = self.perf(
            &project,
            cur_range,
            PerfFilter {
                environment: env,
                release: None,
                transaction: tx,
                histograms: acc.fanout,
            },
            group_by,
            limit,
        )?;
        let prev = self.perf(
            &project,
            prev_range,
            PerfFilter {
                environment: env,
                release: None,
                transaction: tx,
                histograms: acc.fanout,
            },
            group_by,
            query::perf::MAX_GROUPS,
        )?;
        let mut no_data = None;
        if cur.total.count == 0 {
            let message = format!(
                "no transactions in project {} in the last {}{}; try a longer timeRange (e.g. 7d){}",
                project.slug,
                args.time_range,
                env.map(|e| format!(" in environment {e:?}")).unwrap_or_default(),
                if prev.total.count == 0 { "" } else { " — the range before had some" }
            );
            if !acc.fanout {
                return Err(message);
            }
            // A query node merges this node's error events with another node's
            // transactions, and answers with this message only if no node has any.
            no_data = Some(message);
        }
        let row = |stats: &PerfStats| -> MetricRow {
            let mut r = MetricRow::new();
            r.insert("count".into(), Some(stats.count as f64));
            for m in &metrics {
                let v = match m.as_str() {
                    "apdex" => stats.apdex,
                    "throughput" => Some(stats.tpm),
                    "p50" => stats.p50_ms,
                    "p75" => stats.p75_ms,
                    "p95" => stats.p95_ms,
                    "p99" => stats.p99_ms,
                    "failure_rate" => stats.failure_rate,
                    // Error events per transaction; perf counts errors per environment, so
                    // this is absent for a transaction or release.
                    "error_rate" => stats
                        .error_events
                        .filter(|_| stats.count > 0)
                        .map(|e| e as f64 / stats.count as f64),
                    _ => None,
                };
                r.insert(m.clone(), v);
            }
            if acc.fanout {
                if let Some(errors) = stats.error_events {
                    r.insert(crate::fanout::ERROR_EVENTS.into(), Some(errors as f64));
                }
            }
            r
        };
        let metrics_row = row(&cur.total);
        let previous_row = row(&prev.total);
        let change = metrics_row
            .iter()
            .map(|(k, v)| {
                let d = match (v, previous_row.get(k).copied().flatten()) {
                    (Some(a), Some(b)) => Some(a - b),
                    _ => None,
                };
                (k.clone(), d)
            })
            .collect();
        let previous_groups: BTreeMap<&str, &PerfStats> = prev
            .groups
            .iter()
            .map(|g| (g.key.as_str(), &g.stats))
            .collect();
        let breakdown = cur
            .groups
            .iter()
            .map(|g| PerfGroup {
                key: g.key.clone(),
                metrics: row(&g.stats),
                previous: previous_groups
                    .get(g.key.as_str())
                    .map(|s| row(s))
                    .unwrap_or_default(),
            })
            .collect();
        Ok(PerformanceAnswer {
            project: project.slug.clone(),
            start: iso(cur.start_ms),
            end: iso(cur.end_ms),
            metrics: metrics_row,
            previous: previous_row,
            change,
            breakdown,
            apdex_threshold_ms: project.settings.apdex_threshold_ms,
            truncated: false,
            osprey_no_data: no_data,
            osprey_histograms: acc.fanout.then(|| {
                let breakdown: serde_json::Map<String, Value> = cur
                    .groups
                    .iter()
                    .map(|g| {
                        let previous = previous_groups
                            .get(g.key.as_str())
                            .and_then(|s| s.histogram.clone());
                        (
                            g.key.clone(),
                            json!({"metrics": g.stats.histogram, "previous": previous}),
                        )
                    })
                    .collect();
                json!({
                    "metrics": cur.total.histogram,
                    "previous": prev.total.histogram,
                    "breakdown": breakdown,
                })
            }),
        })
    }

    fn compare_releases(
        &self,
        acc: Access,
        args: CompareReleasesArgs,
    ) -> Result<ReleaseComparison, String> {
        let project = self.project(acc, &args.project)?;
        let range = analysis::parse_range(args.time_range.as_deref().unwrap_or("30d"))?;
        let issues = self
            .query
            .project_issue_records(project.id)
            .map_err(internal)?;
        let now = storage::now_ms();
        let window = (now.saturating_sub(range), now);
        let releases = self.perf(
            &project,
            window,
            PerfFilter::default(),
            Some(GroupBy::Release),
            query::perf::MAX_GROUPS,
        )?;
        let mut known: std::collections::BTreeSet<String> = releases
            .groups
            .iter()
            .map(|g| g.key.clone())
            .filter(|k| !k.is_empty())
            .collect();
        for rec in &issues {
            known.extend(rec.first_release.clone());
            known.extend(rec.last_release.clone());
            if let Ok(tags) = self.query.tag_values(rec.id, "release", 100) {
                known.extend(tags.top_values.into_iter().map(|v| v.value));
            }
        }
        // Releases recorded by track_release (or sentry-cli) count even before their events.
        known.extend(
            releases::releases(self.store(), project.org_id, 1_000)
                .map_err(internal)?
                .into_iter()
                .filter(|r| r.projects.contains(&project.id))
                .map(|r| r.version),
        );
        let base_version = match args.base.clone() {
            Some(base) => base,
            None => {
                releases::previous_release(self.store(), project.org_id, project.id, &args.head)
                    .map_err(internal)?
                    .map(|r| r.version)
                    .ok_or_else(|| {
                        format!(
                        "release {:?} has no previous release in project {}; name one with base",
                        args.head, project.slug
                    )
                    })?
            }
        };
        for version in [&base_version, &args.head] {
            if !known.contains(version) {
                let close = analysis::did_you_mean(version, known.iter().map(String::as_str));
                return Err(format!(
                    "release {version:?} has no events and was not tracked in project {}. {}",
                    project.slug,
                    if close.is_empty() {
                        format!(
                            "Releases with events: {}.",
                            known
                                .iter()
                                .rev()
                                .take(20)
                                .cloned()
                                .collect::<Vec<_>>()
                                .join(", ")
                        )
                    } else {
                        format!("Did you mean {}?", close.join(" or "))
                    }
                ));
            }
        }
        let side = |version: &str| -> Result<ReleaseSide, String> {
            let mut error_events = 0;
            let mut with_events = 0;
            for rec in &issues {
                let n = analysis::counter(
                    self.store(),
                    &storage::keys::issue_tag(rec.id, "release", version),
                )
                .map_err(internal)?;
                error_events += n;
                with_events += u64::from(n > 0);
            }
            let stats = self
                .perf(
                    &project,
                    window,
                    PerfFilter {
                        release: Some(version),
                        ..PerfFilter::default()
                    },
                    None,
                    0,
                )?
                .total;
            Ok(ReleaseSide {
                version: version.to_owned(),
                error_events,
                issues: with_events,
                transactions: stats.count,
                p95_ms: stats.p95_ms,
                failure_rate: stats.failure_rate,
                tracked: self.tracked_release(&project, version)?,
            })
        };
        let base = side(&base_version)?;
        let head = side(&args.head)?;
        let mut new_issues = Vec::new();
        let mut regressions = Vec::new();
        for rec in &issues {
            if rec.first_release.as_deref() == Some(args.head.as_str()) {
                new_issues.push(self.issue_summary(rec, acc)?);
            } else if rec.substatus == Some(IssueSubstatus::Regressed)
                && rec.last_release.as_deref() == Some(args.head.as_str())
            {
                regressions.push(self.issue_summary(rec, acc)?);
            }
        }
        let diff = |a: Option<f64>, b: Option<f64>| a.zip(b).map(|(a, b)| b - a);
        Ok(ReleaseComparison {
            p95_change_ms: diff(base.p95_ms, head.p95_ms),
            failure_rate_change: diff(base.failure_rate, head.failure_rate),
            base,
            head,
            new_issues,
            regressions,
        })
    }

    fn search_issues(&self, acc: Access, args: SearchIssuesArgs) -> Result<IssuesAnswer, String> {
        let project_ids = match &args.project {
            Some(p) => vec![self.project(acc, p)?.id],
            None => self.projects(acc).iter().map(|p| p.id).collect(),
        };
        let now = storage::now_ms();
        let text = args.query.unwrap_or_else(|| "is:unresolved".into());
        let query = search::parse_issue_query(&text, now).map_err(|e| query_error(&text, &e))?;
        let sort = match args.sort.as_deref() {
            None => IssueSort::Date,
            Some(s @ ("date" | "new" | "freq" | "user")) => {
                IssueSort::parse(s).map_err(|e| e.message)?
            }
            Some(other) => {
                return Err(format!(
                    "sort {other:?} is not supported; use \"date\", \"new\", \"freq\" or \"user\""
                ))
            }
        };
        let mut rows = self
            .query
            .matching_issues(&IssueFilter {
                project_ids: &project_ids,
                query: &query,
                seen_since_ms: None,
                seen_until_ms: None,
                environments: &[],
                me: &[],
                now_ms: now,
            })
            .map_err(internal)?;
        sort_issue_rows(&mut rows, sort);
        let limit = args.limit.unwrap_or(25).clamp(1, 100);
        let mut issues = Vec::new();
        for row in rows.iter().take(limit) {
            issues.push(IssueSummary::new(
                self.query.issue_from_record(&row.rec).map_err(internal)?,
                &row.state,
                &row.rec,
                acc,
            ));
        }
        Ok(IssuesAnswer {
            total: rows.len(),
            issues,
        })
    }

    fn issue_details(&self, acc: Access, args: IssueArgs) -> Result<IssueDetails, String> {
        let rec = self.issue_record(acc, &args.issue)?;
        let issue = self.issue_summary(&rec, acc)?;
        let latest = self.query.latest_event(rec.id).map_err(internal)?;
        let latest_event = latest.map(|e| {
            let v = serde_json::to_value(&e).unwrap_or(Value::Null);
            LatestEvent {
                event_id: e.event_id.clone(),
                date_created: e.date_created.clone(),
                message: e.message.clone(),
                environment: e.environment.clone(),
                release: e
                    .release
                    .as_ref()
                    .and_then(|r| r.get("version"))
                    .and_then(Value::as_str)
                    .map(str::to_owned),
                user: e.user.clone(),
                tags: e
                    .tags
                    .iter()
                    .map(|t| (t.key.clone(), t.value.clone()))
                    .collect(),
                exceptions: exceptions_of(&v),
            }
        });
        let tags = self
            .query
            .issue_tags(rec.id, 5)
            .map_err(internal)?
            .into_iter()
            .map(|t| TagFacet {
                key: t.key,
                total_values: t.total_values,
                unique_values: t.unique_values,
                top_values: t
                    .top_values
                    .into_iter()
                    .map(|v| (v.value, v.count))
                    .collect(),
            })
            .collect();
        let users = self.query.tag_values(rec.id, "user", 5).map_err(internal)?;
        let activity = workflow::activities(self.store(), rec.id)
            .map_err(internal)?
            .into_iter()
            .take(20)
            .map(|a| ActivityInfo {
                kind: a.kind,
                data: a.data,
                user: a.user,
                date_created: iso(a.date_ms),
            })
            .collect();
        Ok(IssueDetails {
            activity,
            users: UsersInfo {
                count: issue.user_count,
                top: users
                    .top_values
                    .into_iter()
                    .map(|v| (v.value, v.count))
                    .collect(),
            },
            issue,
            latest_event,
            tags,
        })
    }

    fn event(&self, acc: Access, args: EventArgs) -> Result<EventAnswer, String> {
        let id = parse_id("event_id", &args.event_id)?;
        let projects: Vec<u64> = self.projects(acc).iter().map(|p| p.id).collect();
        match self.query.find_event(&projects, &id).map_err(internal)? {
            Some(e) => Ok(EventAnswer {
                event: serde_json::to_value(e).map_err(internal)?,
            }),
            None => Err(format!(
                "no event {} in the projects this caller can see; it may not be processed yet \
                 (try again in a second), or it aged out of retention",
                id.simple()
            )),
        }
    }

    fn trace(&self, acc: Access, args: TraceArgs) -> Result<TraceAnswer, String> {
        let id = parse_id("trace_id", &args.trace_id)?;
        let visible: BTreeMap<u64, String> = self
            .projects(acc)
            .iter()
            .map(|p| (p.id, p.slug.clone()))
            .collect();
        let mut events = self.query.trace_events(&id, 1_000).map_err(internal)?;
        events.retain(|e| visible.contains_key(&e.project_id));
        let mut answer = trace_answer(&id, &visible, &events)?;
        if acc.fanout {
            // A trace can span projects held by different processor nodes: the query node
            // builds the span tree from every node's events at once.
            answer.osprey_events = Some(events);
        }
        Ok(answer)
    }
    fn search_events(&self, acc: Access, args: SearchEventsArgs) -> Result<EventsAnswer, String> {
        let transactions = match args.dataset.as_str() {
            "errors" | "error" | "events" => false,
            "transactions" | "transaction" => true,
            other => {
                return Err(format!(
                    "dataset {other:?} is not supported; use \"errors\" or \"transactions\""
                ))
            }
        };
        let projects = match &args.project {
            Some(p) => vec![self.project(acc, p)?],
            None => self.projects(acc),
        };
        let range = analysis::parse_range(args.time_range.as_deref().unwrap_or("24h"))?;
        let fields = args.fields.filter(|f| !f.is_empty()).unwrap_or_else(|| {
            let f: &[&str] = if transactions {
                &[
                    "id",
                    "timestamp",
                    "transaction",
                    "duration",
                    "status",
                    "release",
                    "environment",
                ]
            } else {
                &[
                    "id",
                    "timestamp",
                    "title",
                    "level",
                    "issue",
                    "release",
                    "environment",
                    "user",
                ]
            };
            f.iter().map(|s| s.to_string()).collect()
        });
        // (column as asked, Discover field it reads)
        let fields: Vec<(String, String)> = fields
            .into_iter()
            .map(|f| {
                let source = match f.as_str() {
                    "duration" => "transaction.duration",
                    "status" => "transaction.status",
                    "event_id" => "id",
                    "trace_id" => "trace",
                    other => other,
                };
                (source.to_owned(), f)
            })
            .map(|(source, f)| (f, source))
            .collect();
        let now = storage::now_ms();
        let text = args.query.unwrap_or_default();
        let query = search::parse_issue_query(&text, now).map_err(|e| query_error(&text, &e))?;
        if let Some(t) = query.terms.iter().find(|t| {
            matches!(
                t,
                search::Term::Is { .. }
                    | search::Term::Assigned { .. }
                    | search::Term::Number { .. }
            )
        }) {
            return Err(format!(
                "{t:?} filters issues, not events: use search_issues for is:/assigned:/times_seen:, \
                 or filter events by fields such as level:error release:1.2"
            ));
        }
        let limit = args.limit.unwrap_or(50).clamp(1, 1000);
        let mut matched: Vec<(u64, HashMap<String, Value>)> = Vec::new();
        let mut truncated = false;
        for p in &projects {
            let store = self.store();
            let (_, cut) = analysis::scan_events(
                store,
                p.id,
                now.saturating_sub(range),
                now + 1,
                analysis::MAX_SCAN,
                // Matches are collected here, so each event's fields are computed once; the
                // scan itself keeps nothing.
                |ev| {
                    if let Some(f) = query::api::event_fields(store, ev, transactions) {
                        if query::api::event_matches(&f, ev.timestamp_ms, &query) {
                            matched.push((ev.timestamp_ms, f));
                        }
                    }
                    false
                },
            )
            .map_err(internal)?;
            truncated |= cut;
        }
        matched.sort_by_key(|(ts, _)| std::cmp::Reverse(*ts));
        let rows = matched
            .iter()
            .take(limit)
            .map(|(ts, row)| {
                let mut out: BTreeMap<String, Value> = fields
                    .iter()
                    .map(|(name, source)| {
                        let v = row
                            .get(source)
                            .or_else(|| row.get(&format!("tags[{source}]")))
                            .cloned()
                            .unwrap_or(Value::Null);
                        (name.clone(), v)
                    })
                    .collect();
                if acc.fanout {
                    // The query node merges every node's rows newest first by this.
                    out.insert(crate::fanout::ROW_TIME.into(), json!(ts));
                }
                out
            })
            .collect();
        Ok(EventsAnswer {
            count: matched.len(),
            rows,
            truncated,
        })
    }

    fn manage_issues(&self, acc: Access, args: ManageIssuesArgs) -> Result<ManageAnswer, String> {
        if args.action != "bulk_update" {
            return Err(format!(
                "action {:?} is not supported; the only action is \"bulk_update\"",
                args.action
            ));
        }
        let changes = args.changes;
        let note = args.note.filter(|n| !n.trim().is_empty());
        if changes.status.is_none()
            && changes.assigned_to.is_none()
            && changes.tags.is_none()
            && note.is_none()
        {
            return Err(
                "nothing to change: set changes.status, changes.assignedTo, changes.tags or note"
                    .into(),
            );
        }
        if let Some(n) = &note {
            if n.len() > workflow::MAX_NOTE_BYTES {
                return Err(format!(
                    "note is longer than {} bytes; shorten it",
                    workflow::MAX_NOTE_BYTES
                ));
            }
        }
        if args.issues.is_empty() || args.issues.len() > 100 {
            return Err("`issues` must list 1 to 100 issue ids or short ids".into());
        }
        let project = self.project(acc, &args.project)?;
        self.writable()?;
        // The body of Sentry's issue update, applied by the same code as the HTTP API's PUT.
        let mut body = serde_json::Map::new();
        if let Some(status) = &changes.status {
            if !matches!(
                status.as_str(),
                "resolved" | "resolvedInNextRelease" | "unresolved" | "ignored"
            ) {
                return Err(format!(
                    "changes.status {status:?} is not supported; use \"resolved\", \
                     \"resolvedInNextRelease\", \"unresolved\" or \"ignored\""
                ));
            }
        }
        if let Some(status) = changes.status {
            body.insert("status".into(), json!(status));
        }
        if let Some(who) = changes.assigned_to {
            body.insert("assignedTo".into(), json!(who));
        }
        if let Some(tags) = changes.tags {
            body.insert("tags".into(), json!(tags));
        }
        let body = Value::Object(body);
        // Resolve every id first, so a typo changes nothing.
        let mut targets = Vec::new();
        for wanted in &args.issues {
            let rec = self.issue_record(acc, wanted)?;
            if rec.project_id != project.id {
                return Err(format!(
                    "issue {wanted:?} belongs to another project than {}",
                    project.slug
                ));
            }
            targets.push((wanted.clone(), rec));
        }
        let actor = self.actor(acc);
        let mut updated = Vec::new();
        for (wanted, rec) in targets {
            let rec = query::api::apply_issue_update(self.store(), &rec, &body, &actor)
                .map_err(|e| format!("issue {wanted:?}: {e}"))?;
            let note_id = match &note {
                Some(text) => Some(
                    workflow::add_activity(
                        self.store(),
                        rec.id,
                        "note",
                        json!({ "text": text }),
                        Some(&actor.name),
                    )
                    .map_err(storage_error)?
                    .id
                    .to_string(),
                ),
                None => None,
            };
            let state = workflow::workflow(self.store(), rec.id).map_err(internal)?;
            updated.push(UpdatedIssue {
                issue: wanted,
                id: rec.id.to_string(),
                status: rec.status.as_str().to_owned(),
                substatus: rec.substatus.map(|s| s.as_str().to_owned()),
                assigned_to: state
                    .assigned_to
                    .as_ref()
                    .map(|a| format!("{}:{}", a.kind, a.id)),
                tags: state.tags,
                note_id,
            });
        }
        Ok(ManageAnswer { updated })
    }

    /// The release record of `version` in `project`'s organization, shaped for answers.
    fn tracked_release(
        &self,
        project: &Project,
        version: &str,
    ) -> Result<Option<TrackedRelease>, String> {
        let Some(r) = releases::release(self.store(), project.org_id, version).map_err(internal)?
        else {
            return Ok(None);
        };
        let deploys = releases::deploys(self.store(), project.org_id, version, 100)
            .map_err(internal)?
            .iter()
            .map(deploy_info)
            .collect();
        Ok(Some(TrackedRelease {
            date_created: iso(r.date_created_ms),
            date_released: r.date_released_ms.map(iso),
            commits: r.commits.len(),
            deploys,
            projects: r
                .projects
                .iter()
                .filter_map(|id| self.store().meta().project(*id))
                .map(|p| p.slug.clone())
                .collect(),
        }))
    }

    fn track_release(&self, acc: Access, args: TrackReleaseArgs) -> Result<ReleaseAnswer, String> {
        let project = self.project(acc, &args.project)?;
        let version = args.version.trim();
        releases::validate_version(version).map_err(|e| {
            format!("version {version:?} is not a valid release: {e}; pass the version the SDKs send, e.g. \"shop@2.4.0\"")
        })?;
        let deploy_ms = match args.deploy_time.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(t) => Some(query::api::util::parse_iso(t).ok_or_else(|| {
                format!(
                    "deployTime {t:?} is not a date: use ISO 8601, e.g. \"2026-01-02T10:00:00Z\""
                )
            })?),
        };
        let commits = args.commits.unwrap_or_default();
        if commits.len() > releases::MAX_COMMITS_PER_RELEASE {
            return Err(format!(
                "at most {} commits per release",
                releases::MAX_COMMITS_PER_RELEASE
            ));
        }
        if let Some(c) = commits
            .iter()
            .find(|c| c.id.trim().is_empty() || c.id.len() > 64)
        {
            return Err(format!(
                "commit id {:?} is not a commit SHA (1 to 64 characters)",
                c.id
            ));
        }
        if let Some(env) = &args.environment {
            if env.trim().is_empty() || env.len() > 64 {
                return Err("environment must be 1 to 64 characters, e.g. \"production\"".into());
            }
        }
        self.writable()?;
        let existing =
            releases::release(self.store(), project.org_id, version).map_err(internal)?;
        let created = existing.is_none();
        let now = storage::now_ms();
        let mut release = existing.unwrap_or_else(|| releases::Release {
            org_id: project.org_id,
            version: version.to_owned(),
            date_created_ms: now,
            status: "open".into(),
            ..Default::default()
        });
        if let Err(at) = release.projects.binary_search(&project.id) {
            release.projects.insert(at, project.id);
        }
        for c in commits {
            let (author_name, author_email) = match c.author.as_deref().map(str::trim) {
                None | Some("") => (None, None),
                Some(a) => match a.split_once('<') {
                    Some((name, rest)) => (
                        Some(name.trim().to_owned()).filter(|n| !n.is_empty()),
                        Some(rest.trim_end_matches('>').trim().to_owned()),
                    ),
                    None if a.contains('@') => (None, Some(a.to_owned())),
                    None => (Some(a.to_owned()), None),
                },
            };
            let commit = releases::Commit {
                id: c.id.trim().to_owned(),
                repository: c.repository.unwrap_or_default(),
                message: c.message,
                author_name,
                author_email,
                timestamp_ms: None,
            };
            match release.commits.iter_mut().find(|old| old.id == commit.id) {
                Some(old) => *old = commit,
                None => release.commits.push(commit),
            }
        }
        release.commits.truncate(releases::MAX_COMMITS_PER_RELEASE);
        if deploy_ms.is_some() || args.environment.is_some() {
            release.date_released_ms = Some(deploy_ms.unwrap_or(now));
        }
        releases::put_release(self.store(), &release).map_err(storage_error)?;
        let deploy = match &args.environment {
            Some(env) => Some(deploy_info(
                &releases::create_deploy(
                    self.store(),
                    releases::Deploy {
                        org_id: project.org_id,
                        version: version.to_owned(),
                        environment: env.trim().to_owned(),
                        date_finished_ms: deploy_ms.unwrap_or(now),
                        projects: vec![project.id],
                        ..Default::default()
                    },
                )
                .map_err(storage_error)?,
            )),
            None => None,
        };
        let release = self
            .tracked_release(&project, version)?
            .ok_or_else(|| internal("the release was not stored"))?;
        Ok(ReleaseAnswer {
            version: version.to_owned(),
            created,
            release,
            deploy,
        })
    }

    fn list_alerts(&self, acc: Access, args: ListAlertsArgs) -> Result<AlertsAnswer, String> {
        let project = self.project(acc, &args.project)?;
        let issue_rules = self
            .store()
            .alert_rules(project.id)
            .iter()
            .map(|r| rule_json(&**r))
            .collect();
        let metric_rules = self
            .store()
            .metric_alert_rules()
            .map_err(internal)?
            .into_iter()
            .filter(|r| r.org_id == project.org_id && r.projects.contains(&project.slug))
            .map(|r| rule_json(&r))
            .collect();
        let limit = args.limit.unwrap_or(50).clamp(1, 500);
        let mut fired = Vec::new();
        for f in self
            .store()
            .fired_alerts(project.id, limit)
            .map_err(internal)?
        {
            let metric = f.issue_id == storage::alerts::METRIC_ALERT_ISSUE;
            let short_id = if metric {
                None
            } else {
                records::load_issue(self.store(), f.issue_id)
                    .map_err(internal)?
                    .map(|r| records::qualified_short_id(&project.slug, r.short_id))
            };
            fired.push(FiredInfo {
                rule_id: f.rule_id.to_string(),
                rule_name: f.rule_name,
                kind: if metric { "metric" } else { "issue" }.into(),
                fired_at: iso(f.fired_ms),
                issue_id: (!metric).then(|| f.issue_id.to_string()),
                short_id,
                event_id: Some(f.event_id).filter(|e| !e.is_empty()),
                text: f
                    .payload
                    .get("text")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
            });
        }
        Ok(AlertsAnswer {
            issue_rules,
            metric_rules,
            fired,
        })
    }

    fn user_feedback(
        &self,
        acc: Access,
        args: UserFeedbackArgs,
    ) -> Result<UserFeedbackAnswer, String> {
        let limit = args.limit.unwrap_or(25).clamp(1, 100);
        let (items, truncated) = match (&args.issue, &args.project) {
            (Some(issue), _) => {
                let rec = self.issue_record(acc, issue)?;
                self.query
                    .issue_feedback(&rec, None, 0, limit)
                    .map_err(internal)?
            }
            (None, Some(project)) => {
                let project = self.project(acc, project)?;
                self.query
                    .project_feedback(
                        project.id,
                        &query::feedback::FeedbackFilter::default(),
                        0,
                        limit,
                    )
                    .map_err(internal)?
            }
            (None, None) => {
                return Err("pass `project` (slug or id) or `issue` (id or short id)".into())
            }
        };
        let nonempty = |s: &str| (!s.is_empty()).then(|| s.to_owned());
        let feedback = items
            .into_iter()
            .map(|f| FeedbackInfo {
                id: f.record.id.clone(),
                kind: match f.record.kind {
                    storage::feedback::FeedbackKind::UserReport => "user_report",
                    storage::feedback::FeedbackKind::Feedback => "feedback",
                }
                .into(),
                name: nonempty(&f.record.name),
                email: nonempty(&f.record.email),
                date_created: iso(f.record.received_ms),
                event_id: f.record.event_id.clone(),
                issue_id: f.issue_id.map(|i| i.to_string()),
                url: f.record.url.clone(),
                environment: f.record.environment.clone(),
                comments: f.record.comments,
            })
            .collect();
        Ok(UserFeedbackAnswer {
            feedback,
            truncated,
        })
    }

    fn configure_alert(
        &self,
        acc: Access,
        args: ConfigureAlertArgs,
    ) -> Result<AlertAnswer, String> {
        let project = self.project(acc, &args.project)?;
        if args.conditions.is_empty() {
            return Err(format!("`conditions` is empty. {ALERT_HELP}"));
        }
        let metric: Vec<&Value> = args
            .conditions
            .iter()
            .filter(|c| c.get("aggregate").is_some())
            .collect();
        let invalid = |e: StorageError| match e {
            StorageError::Invalid(m) | StorageError::NotFound(m) | StorageError::Conflict(m) => {
                format!("{m}. {ALERT_HELP}")
            }
            other => storage_error(other),
        };
        self.writable()?;
        if metric.is_empty() {
            let (filters, conditions): (Vec<Value>, Vec<Value>) =
                args.conditions.into_iter().partition(|c| {
                    c.get("id")
                        .and_then(Value::as_str)
                        .is_some_and(|id| id.starts_with("sentry.rules.filters."))
                });
            let body = json!({
                "name": args.name,
                "actionMatch": args.action_match.as_deref().unwrap_or("all"),
                "filterMatch": "all",
                "conditions": conditions,
                "filters": filters,
                "actions": args.actions,
                "environment": args.environment,
                "frequency": args.frequency.unwrap_or(30),
            });
            let rule = storage::alerts::AlertRule::from_api_json(&body).map_err(invalid)?;
            let existing = self
                .store()
                .alert_rules(project.id)
                .iter()
                .find(|r| r.name == rule.name)
                .map(|r| r.id);
            let stored = match existing {
                Some(id) => self.store().update_alert_rule(id, rule),
                None => self.store().create_alert_rule(project.id, rule),
            }
            .map_err(invalid)?;
            return Ok(AlertAnswer {
                kind: "issue".into(),
                id: stored.id.to_string(),
                created: existing.is_none(),
                rule: rule_json(&*stored),
            });
        }
        if metric.len() > 1 || args.conditions.len() > 1 {
            return Err(format!(
                "a metric alert takes exactly one condition with an aggregate (put a second \
                 level in \"warningThreshold\"); issue conditions cannot be mixed in. {ALERT_HELP}"
            ));
        }
        let c = metric[0];
        let threshold = c
            .get("threshold")
            .or_else(|| c.get("alertThreshold"))
            .and_then(Value::as_f64)
            .ok_or_else(|| {
                format!("the metric condition needs a numeric \"threshold\". {ALERT_HELP}")
            })?;
        let threshold_type = match c.get("thresholdType") {
            None | Some(Value::Null) => 0,
            Some(Value::Number(n)) => n.as_u64().unwrap_or(u64::MAX),
            Some(Value::String(s)) => match s.as_str() {
                "above" | ">" => 0,
                "below" | "<" => 1,
                _ => u64::MAX,
            },
            Some(_) => u64::MAX,
        };
        if threshold_type > 1 {
            return Err(format!(
                "thresholdType must be \"above\" (0) or \"below\" (1). {ALERT_HELP}"
            ));
        }
        let mut triggers = vec![json!({
            "label": "critical", "alertThreshold": threshold, "actions": args.actions,
        })];
        if let Some(w) = c.get("warningThreshold").filter(|w| !w.is_null()) {
            let w = w
                .as_f64()
                .ok_or_else(|| "warningThreshold must be a number".to_owned())?;
            triggers
                .push(json!({"label": "warning", "alertThreshold": w, "actions": args.actions}));
        }
        let body = json!({
            "name": args.name,
            "aggregate": c.get("aggregate"),
            "query": "",
            "timeWindow": c.get("timeWindow").cloned().unwrap_or(json!(5)),
            "thresholdType": threshold_type,
            "projects": [project.slug],
            "environment": args.environment.or_else(|| {
                c.get("environment").and_then(Value::as_str).map(str::to_owned)
            }),
            "triggers": triggers,
        });
        let rule = storage::alerts::MetricAlertRule::from_api_json(&body).map_err(invalid)?;
        let existing = self
            .store()
            .metric_alert_rules()
            .map_err(internal)?
            .into_iter()
            .find(|r| {
                r.org_id == project.org_id
                    && r.name == rule.name
                    && r.projects == [project.slug.clone()]
            })
            .map(|r| r.id);
        let stored = match existing {
            Some(id) => self.store().update_metric_alert_rule(id, rule),
            None => self.store().create_metric_alert_rule(project.org_id, rule),
        }
        .map_err(invalid)?;
        Ok(AlertAnswer {
            kind: "metric".into(),
            id: stored.id.to_string(),
            created: existing.is_none(),
            rule: rule_json(&stored),
        })
    }

    /// Builds the log record an SDK's envelope would have produced for this event.
    fn capture_record(
        &self,
        acc: Access,
        args: CaptureEventArgs,
    ) -> Result<(Arc<dyn Log>, LogRecord, String), String> {
        let log = self
            .log
            .clone()
            .ok_or_else(|| storage_error(StorageError::ReadOnly))?;
        let project = self.project(acc, &args.project)?;
        let level = args.level.to_ascii_lowercase();
        if !matches!(
            level.as_str(),
            "fatal" | "error" | "warning" | "info" | "debug"
        ) {
            return Err(format!(
                "level {:?} is not a Sentry level; use fatal, error, warning, info or debug",
                args.level
            ));
        }
        if args.message.trim().is_empty() {
            return Err("message is empty; pass the text of the event".into());
        }
        let key = self
            .store()
            .meta()
            .keys_of_project(project.id)
            .into_iter()
            .find(|k| k.enabled)
            .ok_or_else(|| {
                format!(
                    "project {} has no enabled DSN key to record events with",
                    project.slug
                )
            })?;
        let event_id = Uuid::new_v4();
        let now = storage::now_ms();
        let mut event = json!({
            "event_id": event_id.simple().to_string(),
            "timestamp": now as f64 / 1000.0,
            "platform": "other",
            "level": level,
            "logentry": {"formatted": args.message},
            "sdk": {"name": "osprey.mcp", "version": env!("CARGO_PKG_VERSION")},
        });
        let obj = event.as_object_mut().expect("a JSON object literal");
        if let Some(user) = args.user {
            obj.insert("user".into(), user);
        }
        if let Some(tags) = args.tags {
            obj.insert("tags".into(), json!(tags));
        }
        if let Some(extra) = args.extra {
            obj.insert("extra".into(), Value::Object(extra));
        }
        if let Some(env) = args.environment {
            obj.insert("environment".into(), json!(env));
        }
        if let Some(release) = args.release {
            obj.insert("release".into(), json!(release));
        }
        let payload = serde_json::to_vec(&event).map_err(internal)?;
        let record = LogRecord {
            project_id: project.id,
            key_id: key.key_id,
            received_ms: now,
            event_id: Some(event_id),
            item_type: "event".into(),
            envelope_header: bytes::Bytes::from(
                json!({"event_id": event_id.simple().to_string(), "sdk": {"name": "osprey.mcp"}})
                    .to_string(),
            ),
            item_header: bytes::Bytes::from(
                json!({"type": "event", "length": payload.len()}).to_string(),
            ),
            client_addr: None,
            payload: bytes::Bytes::from(payload),
        };
        Ok((log, record, event_id.simple().to_string()))
    }
}

/// How to write `configure_alert` arguments, appended to its errors.
const ALERT_HELP: &str = "Examples: conditions [{\"id\": \"sentry.rules.conditions.event_frequency.EventFrequencyCondition\", \"value\": 100, \"interval\": \"1h\"}] (issue alert) or [{\"aggregate\": \"p95(transaction.duration)\", \"threshold\": 500, \"timeWindow\": 5}] (metric alert); actions [{\"id\": \"osprey.actions.webhook\", \"url\": \"https://example.com/hook\"}]";

/// A stored rule in its (Sentry-shaped) JSON, with the id as a string like the API's.
/// The `get_trace_details` answer over `events` (the trace's events the caller may see, in
/// time order); `visible` names their projects.
pub(crate) fn trace_answer(
    id: &Uuid,
    visible: &BTreeMap<u64, String>,
    events: &[records::StoredEvent],
) -> Result<TraceAnswer, String> {
    let mut out = Vec::new();
    for ev in events {
        let tx = analysis::is_transaction(ev);
        let sample = tx.then(|| analysis::tx_sample(ev)).flatten();
        out.push(TraceEvent {
            event_id: ev.event_id.clone(),
            project: visible[&ev.project_id].clone(),
            event_type: ev
                .event
                .get("type")
                .and_then(Value::as_str)
                .unwrap_or("default")
                .to_owned(),
            title: ev
                .event
                .get("title")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned(),
            transaction: analysis::field(ev, "transaction").map(str::to_owned),
            timestamp: iso(ev.timestamp_ms),
            duration_ms: sample.as_ref().map(|s| s.duration_ms),
            status: sample.map(|s| s.status),
            span_count: ev
                .event
                .get("spans")
                .and_then(Value::as_array)
                .map_or(0, Vec::len),
            issue_id: ev.issue_id.map(|i| i.to_string()),
        });
    }
    if out.is_empty() {
        return Err(format!(
            "no events of trace {} in the projects this caller can see; check the id \
                 (contexts.trace.trace_id of an event, 32 hex characters)",
            id.simple()
        ));
    }
    let visible_events: Vec<query::trace::TraceEvent<'_>> = events
        .iter()
        .map(|e| query::trace::TraceEvent {
            project_id: e.project_id,
            event_id: &e.event_id,
            event: &e.event,
        })
        .collect();
    let tree = query::trace::Trace::build(&id.simple().to_string(), &visible_events);
    let spans_omitted = tree.spans.len().saturating_sub(200);
    let spans = tree
            .spans
            .iter()
            .take(200)
            .map(|s| {
                json!({
                    "spanId": s.span_id, "parentSpanId": s.parent_span_id, "depth": s.depth,
                    "kind": s.kind, "op": s.op, "description": s.description,
                    "status": s.status, "offsetMs": s.offset_ms, "durationMs": s.duration_ms,
                    "projectId": s.project_id, "eventId": s.event_id,
                    "errors": s.errors.iter().map(|(id, title)| json!({"eventId": id, "title": title})).collect::<Vec<_>>(),
                })
            })
            .collect();
    let transactions = out.iter().filter(|e| e.event_type == "transaction").count();
    let mut projects: Vec<String> = out.iter().map(|e| e.project.clone()).collect();
    projects.sort();
    projects.dedup();
    Ok(TraceAnswer {
        trace_id: id.simple().to_string(),
        errors: out.len() - transactions,
        transactions,
        events: out,
        projects,
        duration_ms: tree.duration_ms,
        spans,
        spans_omitted,
        osprey_events: None,
    })
}

fn rule_json<T: Serialize>(rule: &T) -> Value {
    let mut v = serde_json::to_value(rule).unwrap_or(Value::Null);
    if let Some(id) = v.get("id").and_then(Value::as_u64) {
        v["id"] = json!(id.to_string());
    }
    v
}

fn deploy_info(d: &releases::Deploy) -> DeployInfo {
    DeployInfo {
        id: d.id.to_string(),
        environment: d.environment.clone(),
        date_finished: iso(d.date_finished_ms),
    }
}

/// A query the parser rejected, with how to fix it.
fn query_error(text: &str, e: &search::SearchError) -> String {
    format!(
        "query {text:?} is not valid Sentry search syntax: {e}. Fix that term; examples: \
         `is:unresolved level:error`, `release:\"1.0 beta\"`, `!environment:staging`, \
         `firstSeen:-24h`, free text in quotes"
    )
}

fn parse_id(name: &str, text: &str) -> Result<Uuid, String> {
    Uuid::try_parse(text.trim()).map_err(|_| {
        format!("{name} {text:?} is not an id: pass 32 hex characters (dashes allowed)")
    })
}

/// The exceptions of an API-shaped event, frames trimmed to the last 50.
fn exceptions_of(event: &Value) -> Vec<ExceptionInfo> {
    let mut out = Vec::new();
    let Some(entries) = event.get("entries").and_then(Value::as_array) else {
        return out;
    };
    for entry in entries {
        if entry.get("type").and_then(Value::as_str) != Some("exception") {
            continue;
        }
        for exc in entry
            .pointer("/data/values")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let frames: Vec<&Value> = exc
                .pointer("/stacktrace/frames")
                .and_then(Value::as_array)
                .map(|f| f.iter().collect())
                .unwrap_or_default();
            let skip = frames.len().saturating_sub(50);
            let s = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).map(str::to_owned);
            out.push(ExceptionInfo {
                exception_type: s(exc, "type"),
                value: s(exc, "value"),
                frames: frames
                    .into_iter()
                    .skip(skip)
                    .map(|f| Frame {
                        function: s(f, "function"),
                        module: s(f, "module"),
                        filename: s(f, "filename"),
                        line_no: f.get("lineNo").and_then(Value::as_u64),
                        context_line: f
                            .get("context")
                            .and_then(Value::as_array)
                            .and_then(|lines| {
                                let n = f.get("lineNo")?.as_u64()?;
                                lines
                                    .iter()
                                    .find(|l| l.get(0).and_then(Value::as_u64) == Some(n))
                            })
                            .and_then(|l| l.get(1))
                            .and_then(Value::as_str)
                            .map(str::to_owned),
                        in_app: f.get("inApp").and_then(Value::as_bool).unwrap_or(false),
                    })
                    .collect(),
            });
        }
    }
    out
}
