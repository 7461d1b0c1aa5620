//! The tool set: argument and answer types (their doc comments are the schema descriptions
//! a model reads) and [`OspreyTools`], the rmcp handler.
//!
//! Every tool runs its RocksDB reads on the blocking pool after catching a secondary store up
//! with the primary. Mistakes the model can fix are `Err(String)` (an `is_error` result whose
//! text says how to fix the call); nothing here returns a protocol error.

use std::collections::BTreeMap;
use std::sync::Arc;

use rmcp::handler::server::{router::tool::ToolRouter, wrapper::Parameters};
use rmcp::model::{Extensions, Implementation, ServerCapabilities, ServerConfig};
use rmcp::{tool, tool_handler, tool_router, Json, ServerHandler};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use storage::records::{self, IssueRecord, IssueStatus, IssueSubstatus, Resolution};
use storage::{ApiToken, Log, LogRecord, Project, StorageError};
use uuid::Uuid;

use query::issues::{Issue, IssueQuery, IssueSort};
use query::QueryService;

use query::perf::{GroupBy, PerfError, PerfQuery, PerfStats, TimeRange};

use crate::analysis::{self, EventFilter};

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
}

/// osprey's MCP tools over one [`QueryService`]. Cheap to clone.
#[derive(Clone)]
pub struct OspreyTools {
    inner: Arc<Inner>,
    tool_router: ToolRouter<Self>,
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
    /// "resolved", "unresolved" or "ignored".
    #[serde(default)]
    pub status: Option<String>,
    /// Assignee (a user name or email). Not supported by this server yet: leave it out.
    #[serde(default, rename = "assignedTo")]
    pub assigned_to: Option<String>,
    /// Tags to set on the issues. Not supported by this server yet: leave it out.
    #[serde(default)]
    pub tags: Option<BTreeMap<String, String>>,
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
    /// A note to record with the change. Not supported by this server yet: leave it out.
    #[serde(default)]
    pub note: Option<String>,
}

/// Arguments of `compare_releases`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct CompareReleasesArgs {
    /// Project slug or numeric id.
    pub project: String,
    /// The older release version (e.g. "1.4.0").
    pub base: String,
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
    /// Columns: id, timestamp, title, message, level, transaction, release, environment,
    /// user, issue, trace, duration (ms, transactions), status (transactions), project, or any
    /// tag key. Default: a useful set per dataset.
    #[serde(default)]
    pub fields: Option<Vec<String>>,
    /// `key:value` terms (negate with `!key:value`) on the same names, plus free text that
    /// must appear in the title or message.
    #[serde(default)]
    pub query: Option<String>,
    /// 30m, 1h, 24h (default), 7d or 2w.
    #[serde(default, rename = "timeRange")]
    pub time_range: Option<String>,
    /// Most rows, newest first (default 50, at most 1000).
    #[serde(default)]
    pub limit: Option<usize>,
}

// ---------------------------------------------------------------------------------------
// Answers
// ---------------------------------------------------------------------------------------

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
}

impl From<Issue> for IssueSummary {
    fn from(i: Issue) -> Self {
        IssueSummary {
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
        return Ok(Access { org: None });
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
        }
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
        Parameters(_args): Parameters<NoArgs>,
    ) -> Result<Json<ProjectsAnswer>, String> {
        let acc = access(&ext, READ_SCOPES)?;
        self.run(move |i| i.find_projects(acc)).await.map(Json)
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
        let acc = access(&ext, READ_SCOPES)?;
        self.run(move |i| i.error_analysis(acc, args))
            .await
            .map(Json)
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
        let acc = access(&ext, READ_SCOPES)?;
        self.run(move |i| i.performance(acc, args)).await.map(Json)
    }

    #[tool(
        description = "Compare two releases of a project: issues the newer release introduced, issues that regressed in it, and the change of p95 duration and failure rate.",
        annotations(read_only_hint = true)
    )]
    async fn compare_releases(
        &self,
        ext: Extensions,
        Parameters(args): Parameters<CompareReleasesArgs>,
    ) -> Result<Json<ReleaseComparison>, String> {
        let acc = access(&ext, READ_SCOPES)?;
        self.run(move |i| i.compare_releases(acc, args))
            .await
            .map(Json)
    }

    #[tool(
        description = "Search issues with Sentry's search syntax (is:unresolved, level:error, release:X, firstRelease:X, free text…), sorted by date, new, freq or user.",
        annotations(read_only_hint = true)
    )]
    async fn search_issues(
        &self,
        ext: Extensions,
        Parameters(args): Parameters<SearchIssuesArgs>,
    ) -> Result<Json<IssuesAnswer>, String> {
        let acc = access(&ext, READ_SCOPES)?;
        self.run(move |i| i.search_issues(acc, args))
            .await
            .map(Json)
    }

    #[tool(
        description = "One issue in depth: status, counts, the release that introduced it and the latest one, the latest event's stack trace with the app's own frames marked (inApp), tag facets and the most affected users.",
        annotations(read_only_hint = true)
    )]
    async fn get_issue_details(
        &self,
        ext: Extensions,
        Parameters(args): Parameters<IssueArgs>,
    ) -> Result<Json<IssueDetails>, String> {
        let acc = access(&ext, READ_SCOPES)?;
        self.run(move |i| i.issue_details(acc, args))
            .await
            .map(Json)
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
        let acc = access(&ext, READ_SCOPES)?;
        self.run(move |i| i.event(acc, args)).await.map(Json)
    }

    #[tool(
        description = "Every transaction and error of one distributed trace, across projects, oldest first, with durations and statuses.",
        annotations(read_only_hint = true)
    )]
    async fn get_trace_details(
        &self,
        ext: Extensions,
        Parameters(args): Parameters<TraceArgs>,
    ) -> Result<Json<TraceAnswer>, String> {
        let acc = access(&ext, READ_SCOPES)?;
        self.run(move |i| i.trace(acc, args)).await.map(Json)
    }

    #[tool(
        description = "Find individual events (dataset errors or transactions) in a time range with key:value filters, returning chosen fields, newest first.",
        annotations(read_only_hint = true)
    )]
    async fn search_events(
        &self,
        ext: Extensions,
        Parameters(args): Parameters<SearchEventsArgs>,
    ) -> Result<Json<EventsAnswer>, String> {
        let acc = access(&ext, READ_SCOPES)?;
        self.run(move |i| i.search_events(acc, args))
            .await
            .map(Json)
    }

    #[tool(
        description = "Change issues in bulk: resolve, unresolve or ignore them (action \"bulk_update\").",
        annotations(
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = true
        )
    )]
    async fn manage_issues(
        &self,
        ext: Extensions,
        Parameters(args): Parameters<ManageIssuesArgs>,
    ) -> Result<Json<ManageAnswer>, String> {
        let acc = access(&ext, WRITE_SCOPES)?;
        self.run(move |i| i.manage_issues(acc, args))
            .await
            .map(Json)
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
        let inner = Arc::clone(&self.inner);
        let (log, record, event_id) = self.run(move |i| i.capture_record(acc, args)).await?;
        drop(inner);
        let ticket = log.append(vec![record]).map_err(storage_error)?;
        ticket.await.map_err(storage_error)?;
        Ok(Json(CaptureAnswer {
            event_id,
            accepted: true,
        }))
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for OspreyTools {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("osprey", env!("CARGO_PKG_VERSION")))
            .with_instructions(
                "osprey: errors and performance of your applications (Sentry-compatible). \
                 Start with find_projects; then get_error_analysis / get_performance_metrics \
                 for a time range (timeRange like 1h, 24h, 7d), search_issues and \
                 get_issue_details to dig in, compare_releases after a deploy, and \
                 manage_issues to resolve or ignore.",
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

    fn issue_summary(&self, rec: &IssueRecord) -> Result<IssueSummary, String> {
        Ok(self.query.issue_from_record(rec).map_err(internal)?.into())
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
            let unresolved = analysis::project_issues(self.store(), p.id)
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
        for rec in analysis::project_issues(self.store(), project.id).map_err(internal)? {
            records.insert(rec.id, rec);
        }
        let in_range = |rec: &IssueRecord| -> Result<IssueInRange, String> {
            let t = cur.by_issue.get(&rec.id).cloned().unwrap_or_default();
            Ok(IssueInRange {
                issue: self.issue_summary(rec)?,
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
                        release: None,
                        transaction: None,
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
            },
            group_by,
            query::perf::MAX_GROUPS,
        )?;
        if cur.total.count == 0 {
            return Err(format!(
                "no transactions in project {} in the last {}{}; try a longer timeRange (e.g. 7d){}",
                project.slug,
                args.time_range,
                env.map(|e| format!(" in environment {e:?}")).unwrap_or_default(),
                if prev.total.count == 0 { "" } else { " — the range before had some" }
            ));
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
        })
    }

    fn compare_releases(
        &self,
        acc: Access,
        args: CompareReleasesArgs,
    ) -> Result<ReleaseComparison, String> {
        let project = self.project(acc, &args.project)?;
        let range = analysis::parse_range(args.time_range.as_deref().unwrap_or("30d"))?;
        let issues = analysis::project_issues(self.store(), project.id).map_err(internal)?;
        let now = storage::now_ms();
        let window = (now.saturating_sub(range), now);
        let releases = self.perf(
            &project,
            window,
            PerfFilter {
                environment: None,
                release: None,
                transaction: None,
            },
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
        for version in [&args.base, &args.head] {
            if !known.contains(version) {
                let close = analysis::did_you_mean(version, known.iter().map(String::as_str));
                return Err(format!(
                    "release {version:?} has no events in project {}. {}",
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
            })
        };
        let base = side(&args.base)?;
        let head = side(&args.head)?;
        let mut new_issues = Vec::new();
        let mut regressions = Vec::new();
        for rec in &issues {
            if rec.first_release.as_deref() == Some(args.head.as_str()) {
                new_issues.push(self.issue_summary(rec)?);
            } else if rec.substatus == Some(IssueSubstatus::Regressed)
                && rec.last_release.as_deref() == Some(args.head.as_str())
            {
                regressions.push(self.issue_summary(rec)?);
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
        let query = args.query.unwrap_or_else(|| "is:unresolved".into());
        if let Some(pos) = unclosed_quote(&query) {
            return Err(format!(
                "query has an unclosed quote at character {pos}: close it (\"...\") or remove it"
            ));
        }
        let sort = match args.sort.as_deref() {
            None | Some("date") => IssueSort::Date,
            Some(s @ ("new" | "freq" | "user")) => IssueSort::parse(s),
            Some(other) => {
                return Err(format!(
                    "sort {other:?} is not supported; use \"date\", \"new\", \"freq\" or \"user\""
                ))
            }
        };
        if project_ids.is_empty() {
            return Ok(IssuesAnswer {
                total: 0,
                issues: Vec::new(),
            });
        }
        let page = self
            .query
            .issues(&IssueQuery {
                org_id: acc.org,
                project_ids,
                query,
                seen_since_ms: None,
                sort,
                limit: args.limit.unwrap_or(25).clamp(1, 100),
                cursor: None,
            })
            .map_err(internal)?;
        Ok(IssuesAnswer {
            total: page.total,
            issues: page.issues.into_iter().map(IssueSummary::from).collect(),
        })
    }

    fn issue_details(&self, acc: Access, args: IssueArgs) -> Result<IssueDetails, String> {
        let rec = self.issue_record(acc, &args.issue)?;
        let issue = self.issue_summary(&rec)?;
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
        Ok(IssueDetails {
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
        let events = self.query.trace_events(&id, 1_000).map_err(internal)?;
        let mut out = Vec::new();
        for ev in events
            .iter()
            .filter(|e| visible.contains_key(&e.project_id))
        {
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
            .filter(|e| visible.contains_key(&e.project_id))
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
        })
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
        let terms = parse_terms(args.query.as_deref().unwrap_or(""))?;
        let limit = args.limit.unwrap_or(50).clamp(1, 1000);
        let now = storage::now_ms();
        let mut matched = Vec::new();
        let mut truncated = false;
        for p in &projects {
            let (events, cut) = analysis::scan_events(
                self.store(),
                p.id,
                now.saturating_sub(range),
                now + 1,
                analysis::MAX_SCAN,
                |ev| {
                    analysis::is_transaction(ev) == transactions
                        && terms.iter().all(|t| t.matches(ev, &p.slug))
                },
            )
            .map_err(internal)?;
            truncated |= cut;
            matched.extend(events.into_iter().map(|e| (p.slug.clone(), e)));
        }
        matched.sort_by_key(|(_, e)| std::cmp::Reverse(e.timestamp_ms));
        let rows = matched
            .iter()
            .take(limit)
            .map(|(slug, ev)| {
                fields
                    .iter()
                    .map(|f| (f.clone(), event_field(ev, slug, f)))
                    .collect()
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
        if args.changes.assigned_to.is_some() || args.changes.tags.is_some() || args.note.is_some()
        {
            return Err(
                "this server changes issue status only: leave out changes.assignedTo, changes.tags and note"
                    .into(),
            );
        }
        let status = match args.changes.status.as_deref() {
            Some(s @ ("resolved" | "unresolved" | "ignored")) => s.to_owned(),
            Some(other) => {
                return Err(format!(
                    "changes.status {other:?} is not supported; use \"resolved\", \"unresolved\" or \"ignored\""
                ))
            }
            None => return Err("nothing to change: set changes.status".into()),
        };
        if args.issues.is_empty() || args.issues.len() > 100 {
            return Err("`issues` must list 1 to 100 issue ids or short ids".into());
        }
        let project = self.project(acc, &args.project)?;
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
            targets.push((wanted.clone(), rec.id));
        }
        let now = storage::now_ms();
        let mut updated = Vec::new();
        for (wanted, id) in targets {
            let rec = records::update_issue(self.store(), id, |r| match status.as_str() {
                "resolved" => {
                    r.status = IssueStatus::Resolved;
                    r.substatus = None;
                    r.resolution = Some(Resolution {
                        resolved_ms: now,
                        release: None,
                        in_next_release: false,
                    });
                }
                "ignored" => {
                    r.status = IssueStatus::Ignored;
                    r.substatus = Some(IssueSubstatus::ArchivedForever);
                    r.resolution = None;
                }
                _ => {
                    r.status = IssueStatus::Unresolved;
                    r.substatus = Some(IssueSubstatus::Ongoing);
                    r.resolution = None;
                }
            })
            .map_err(storage_error)?
            .ok_or_else(|| format!("issue {wanted:?} disappeared"))?;
            updated.push(UpdatedIssue {
                issue: wanted,
                id: rec.id.to_string(),
                status: rec.status.as_str().to_owned(),
                substatus: rec.substatus.map(|s| s.as_str().to_owned()),
            });
        }
        Ok(ManageAnswer { updated })
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

/// Position (in characters) of a quote that is never closed.
fn unclosed_quote(query: &str) -> Option<usize> {
    let mut open = None;
    for (i, c) in query.chars().enumerate() {
        if c == '"' {
            open = if open.is_some() { None } else { Some(i) };
        }
    }
    open
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

/// One `search_events` filter term.
struct Term {
    key: Option<String>,
    value: String,
    negated: bool,
}

impl Term {
    fn matches(&self, ev: &storage::records::StoredEvent, slug: &str) -> bool {
        let hit = match &self.key {
            Some(k) => match event_field(ev, slug, k) {
                Value::String(s) => s == self.value,
                Value::Number(n) => n.to_string() == self.value,
                _ => false,
            },
            None => {
                let needle = self.value.to_lowercase();
                ["title", "message"].iter().any(|f| {
                    event_field(ev, slug, f)
                        .as_str()
                        .is_some_and(|s| s.to_lowercase().contains(&needle))
                })
            }
        };
        hit != self.negated
    }
}

fn parse_terms(query: &str) -> Result<Vec<Term>, String> {
    if let Some(pos) = unclosed_quote(query) {
        return Err(format!(
            "query has an unclosed quote at character {pos}: close it (\"...\") or remove it"
        ));
    }
    let mut terms = Vec::new();
    let mut rest = query.trim();
    while !rest.is_empty() {
        let mut end = rest.len();
        let mut quoted = false;
        for (i, c) in rest.char_indices() {
            match c {
                '"' => quoted = !quoted,
                ' ' if !quoted => {
                    end = i;
                    break;
                }
                _ => {}
            }
        }
        let token = &rest[..end];
        rest = rest[end..].trim_start();
        let (negated, body) = match token.strip_prefix('!') {
            Some(b) => (true, b),
            None => (false, token),
        };
        match body.split_once(':') {
            Some((k, v)) if !k.is_empty() && !k.contains('"') => {
                if v.is_empty() {
                    return Err(format!(
                        "query term {token:?} has no value: write key:value"
                    ));
                }
                terms.push(Term {
                    key: Some(k.to_owned()),
                    value: v.trim_matches('"').to_owned(),
                    negated,
                });
            }
            _ => terms.push(Term {
                key: None,
                value: body.trim_matches('"').to_owned(),
                negated,
            }),
        }
    }
    Ok(terms)
}

/// A `search_events` column of a stored event.
fn event_field(ev: &storage::records::StoredEvent, slug: &str, name: &str) -> Value {
    let e = &ev.event;
    let s = |v: Option<&str>| v.map_or(Value::Null, |s| Value::String(s.to_owned()));
    match name {
        "id" | "event_id" => json!(ev.event_id),
        "timestamp" => json!(iso(ev.timestamp_ms)),
        "project" => json!(slug),
        "title" => s(e.get("title").and_then(Value::as_str)),
        "message" => s(e
            .pointer("/logentry/formatted")
            .or_else(|| e.pointer("/logentry/message"))
            .and_then(Value::as_str)),
        "issue" | "issue.id" => ev.issue_id.map_or(Value::Null, |i| json!(i.to_string())),
        "trace" | "trace_id" => s(e
            .pointer("/contexts/trace/trace_id")
            .and_then(Value::as_str)),
        "duration" | "transaction.duration" => analysis::tx_sample(ev).map_or(Value::Null, |t| {
            json!((t.duration_ms * 1000.0).round() / 1000.0)
        }),
        "status" | "transaction.status" => {
            s(e.pointer("/contexts/trace/status").and_then(Value::as_str))
        }
        other => {
            let key = other
                .strip_prefix("tags[")
                .and_then(|k| k.strip_suffix(']'))
                .unwrap_or(other);
            s(analysis::field(ev, key))
        }
    }
}
