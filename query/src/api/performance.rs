//! `GET /projects/{org}/{project}/performance/`: the [`PerfReport`] that `osprey perf` prints,
//! over HTTP, so the command (`osprey perf --url`) and other clients get the histogram answers
//! (exact apdex and failure rate, percentiles within 3 significant digits) from a running
//! server.
//!
//! Parameters, all optional: `statsPeriod` (`24h`, default) or `start`/`end` (ISO 8601 or unix
//! ms), `environment`, `release`, `transaction`, `by` (`transaction`, `release`,
//! `environment`), `sort` (`count`, `avg`, `p50` … `p99`, `max`, `apdex`, `failure_rate`,
//! `name`), `asc=1`, `limit` (rows of the breakdown, default 20) and `interval` (`1m`, `1h`,
//! … for a time series).

use serde_json::Value;

use super::{ApiError, ApiResponse, ApiResult, Ctx};
use crate::perf::{parse_duration_ms, GroupBy, PerfError, PerfQuery, SortBy, TimeRange};

const READ: &[&str] = &["project:read", "event:read"];

impl From<PerfError> for ApiError {
    fn from(e: PerfError) -> ApiError {
        match e {
            PerfError::Storage(e) => e.into(),
            PerfError::UnknownProject(id) => ApiError::NotFound(format!("project {id} not found")),
            other => ApiError::BadRequest(other.to_string()),
        }
    }
}

/// The query a request asks.
fn perf_query(ctx: &Ctx<'_>, project_id: u64) -> ApiResult<PerfQuery> {
    let param = |name: &str| ctx.req.param(name).filter(|v| !v.is_empty());
    let limit = match param("limit") {
        Some(text) => match text.parse::<usize>() {
            Ok(n) if n > 0 => n,
            _ => {
                return Err(ApiError::BadRequest(format!(
                    "limit {text:?} must be a positive whole number"
                )))
            }
        },
        None => 20,
    };
    // A query node merging several nodes' reports asks for every row with its histogram
    // (`peers.rs`) and applies the caller's limit after merging.
    let for_merge = param("ospreyHistograms") == Some("1");
    let limit = if for_merge {
        crate::perf::MAX_GROUPS
    } else {
        limit
    };
    Ok(PerfQuery {
        histograms: for_merge,
        project_id,
        range: TimeRange::parse(param("statsPeriod"), param("start"), param("end"))?,
        environment: ctx.req.param("environment").map(str::to_owned),
        release: param("release").map(str::to_owned),
        transaction: param("transaction").map(str::to_owned),
        group_by: param("by").map(str::parse::<GroupBy>).transpose()?,
        sort: param("sort")
            .map(str::parse::<SortBy>)
            .transpose()?
            .unwrap_or_default(),
        ascending: matches!(param("asc"), Some("1" | "true")),
        limit,
        interval_ms: param("interval").map(parse_duration_ms).transpose()?,
    })
}

pub(super) fn route(
    ctx: &Ctx<'_>,
    method: &http::Method,
    segs: &[&str],
) -> ApiResult<Option<ApiResponse>> {
    let ["projects", org, project, "performance"] = segs else {
        return Ok(None);
    };
    if method != http::Method::GET {
        return Err(super::not_allowed(method));
    }
    let (_, project) = ctx.project(org, project)?;
    ctx.require_any(READ)?;
    let report = ctx.query.perf(&perf_query(ctx, project.id)?)?;
    let body = serde_json::to_value(&report).unwrap_or(Value::Null);
    Ok(Some(ApiResponse::ok(body)))
}
