//! `GET /organizations/{org}/stats_v2/`: Sentry's "Retrieve Event Counts for an Organization
//! (v2)" over osprey's outcome counters ([`crate::outcomes`]): how many items were accepted,
//! filtered, rate limited, invalid or discarded by the client, and why.
//!
//! Parameters, as Sentry takes them:
//! - `field` (required, repeatable): `sum(quantity)`, `sum(times_seen)`;
//! - `groupBy` (repeatable): `outcome`, `category`, `reason`, `project`; grouping by project
//!   answers totals only (no `intervals`, no `series`), as Sentry does;
//! - filters (repeatable): `category` (`error` also covers `default` and `security`; an
//!   `attachment` filter allows no other category), `outcome`, `reason`, `project` (ids or
//!   slugs, `-1` or none = every project of the organization);
//! - `category` must appear as a filter or a `groupBy` (Sentry's rule: quantities of
//!   different categories are different units);
//! - `statsPeriod` (default `14d`) or `start` and `end`; `interval` (default `1h`) a whole
//!   number of hours that divides a day. The range is widened to whole intervals ending at
//!   the interval after `end`, and may hold at most
//!   [`MAX_STATS_INTERVALS`](crate::outcomes::MAX_STATS_INTERVALS) intervals.
//!
//! The answer is `{start, end, intervals, groups: [{by, totals, series}]}`; a bad parameter is
//! 400 with `{"detail": …}`. Needs `org:read`. The counts are what the processor recorded
//! (accepted, filtered, invalid, and client reports that reach the log); osprey keeps one
//! quantity per counter, so `sum(times_seen)` equals `sum(quantity)` (for attachments both
//! are bytes).
//!
//! Also `GET /projects/{org}/{project}/stats/`, Sentry's older per-project counts of error
//! events: `[[unix_seconds, count], …]` for `stat` = `received` (accepted, filtered and rate
//! limited, Sentry's "total received"), `rejected` (rate limited), `blacklisted` (filtered),
//! `generated` (accepted) or an inbound filter's name (`localhost`, `release-version`,
//! `error-message`: filtered by it), with `since`/`until` (unix seconds; default the last day)
//! and `resolution` `1h` (default) or `1d` (osprey's counters are hourly, so no `10s`).

use std::collections::BTreeSet;

use storage::{now_ms, Organization};

use super::util::parse_iso;
use super::{ApiError, ApiResponse, ApiResult, Ctx};
use crate::outcomes::{
    category_id, outcome_id, stored_reason, StatsField, StatsGroupBy, StatsQuery,
    MAX_STATS_INTERVALS,
};
use crate::search::parse_duration;

const HOUR: u64 = 3_600_000;
const DAY: u64 = 24 * HOUR;
/// Range when the request names none.
const DEFAULT_PERIOD: &str = "14d";

pub(super) fn route(
    ctx: &Ctx<'_>,
    method: &http::Method,
    segs: &[&str],
) -> ApiResult<Option<ApiResponse>> {
    if let ["projects", org, project, "stats"] = segs {
        if method != http::Method::GET {
            return Err(super::not_allowed(method));
        }
        let (_, project) = ctx.project(org, project)?;
        ctx.require_any(&["project:read", "org:read"])?;
        return project_stats(ctx, project.id, now_ms()).map(Some);
    }
    let ["organizations", org, "stats_v2"] = segs else {
        return Ok(None);
    };
    if method != http::Method::GET {
        return Err(super::not_allowed(method));
    }
    let org = ctx.org(org)?;
    ctx.require("org:read")?;
    let query = stats_query(ctx, &org, now_ms())?;
    let stats = ctx.query.outcome_stats(&query)?;
    Ok(Some(ApiResponse::ok(stats.to_json())))
}

fn bad(detail: impl Into<String>) -> ApiError {
    ApiError::BadRequest(detail.into())
}

/// The validated query of a request, its range resolved at `now`.
fn stats_query(ctx: &Ctx<'_>, org: &Organization, now: u64) -> ApiResult<StatsQuery> {
    let req = ctx.req;
    let raw_fields = req.params("field");
    if raw_fields.is_empty() {
        return Err(bad("At least one \"field\" is required."));
    }
    let mut fields = Vec::new();
    for f in raw_fields {
        let field = StatsField::parse(f).ok_or_else(|| bad(format!("Invalid field: \"{f}\"")))?;
        if !fields.contains(&field) {
            fields.push(field);
        }
    }
    let mut group_by = Vec::new();
    for g in req.params("groupBy") {
        let col = StatsGroupBy::parse(g).ok_or_else(|| bad(format!("Invalid groupBy: \"{g}\"")))?;
        if !group_by.contains(&col) {
            group_by.push(col);
        }
    }

    let raw_categories = req.params("category");
    if raw_categories.is_empty() && !group_by.contains(&StatsGroupBy::Category) {
        return Err(bad("Query must have category as groupby or filter"));
    }
    let categories = if raw_categories.is_empty() {
        None
    } else {
        let mut set = BTreeSet::new();
        for c in raw_categories {
            let id = category_id(c).ok_or_else(|| bad(format!("Invalid category: \"{c}\"")))?;
            if id == 1 {
                // Sentry's `error` is every error-like category.
                set.extend([0, 1, 3]);
            } else {
                set.insert(id);
            }
        }
        if set.contains(&4) && set.len() > 1 {
            return Err(bad(
                "if filtering by attachment no other category may be present",
            ));
        }
        Some(set)
    };
    let raw_outcomes = req.params("outcome");
    let outcomes = if raw_outcomes.is_empty() {
        None
    } else {
        let mut set = BTreeSet::new();
        for o in raw_outcomes {
            set.insert(outcome_id(o).ok_or_else(|| bad(format!("Invalid outcome: \"{o}\"")))?);
        }
        Some(set)
    };
    let raw_reasons = req.params("reason");
    let reasons = (!raw_reasons.is_empty()).then(|| {
        raw_reasons
            .iter()
            .map(|r| stored_reason(r).to_owned())
            .collect::<BTreeSet<String>>()
    });

    let projects = projects(ctx, org)?;
    let (start_ms, end_ms, interval_ms) = range(ctx, now)?;
    Ok(StatsQuery {
        fields,
        group_by,
        projects,
        categories,
        outcomes,
        reasons,
        start_ms,
        end_ms,
        interval_ms,
    })
}

/// `GET /projects/{org}/{project}/stats/`: one series of error-event counts.
fn project_stats(ctx: &Ctx<'_>, project_id: u64, now: u64) -> ApiResult<ApiResponse> {
    let param = |name: &str| ctx.req.param(name).filter(|v| !v.is_empty());
    let stat = param("stat").unwrap_or("received");
    let (outcomes, reason): (&[u8], Option<&str>) = match stat {
        "received" => (&[0, 1, 2], None),
        "rejected" => (&[2], None),
        "blacklisted" => (&[1], None),
        "generated" => (&[0], None),
        "localhost" | "release-version" | "error-message" => (&[1], Some(stat)),
        other => return Err(bad(format!("Invalid stat: {other}"))),
    };
    let interval = match param("resolution").unwrap_or("1h") {
        "1h" => HOUR,
        "1d" => DAY,
        _ => return Err(bad("Invalid resolution")),
    };
    let seconds = |name: &str| -> ApiResult<Option<u64>> {
        match param(name) {
            None => Ok(None),
            Some(t) => t
                .parse::<f64>()
                .ok()
                .filter(|s| s.is_finite() && *s >= 0.0 && *s < 1e11)
                .map(|s| Some((s * 1000.0) as u64))
                .ok_or_else(|| bad(format!("Invalid {name}: \"{t}\""))),
        }
    };
    let until = seconds("until")?.unwrap_or(now);
    let since = seconds("since")?.unwrap_or(until.saturating_sub(DAY - 1_000));
    if since > until {
        return Err(bad("since must not be after until"));
    }
    // Buckets from the one holding `since` through the one holding `until`.
    let start = since - since % interval;
    let end = (until - until % interval).saturating_add(interval);
    if (end - start) / interval > MAX_STATS_INTERVALS {
        return Err(bad("Invalid resolution: too many points for this range"));
    }
    let query = StatsQuery {
        fields: vec![StatsField::Quantity],
        group_by: Vec::new(),
        projects: vec![project_id],
        categories: Some([0, 1, 3].into()),
        outcomes: Some(outcomes.iter().copied().collect()),
        reasons: reason.map(|r| [r.to_owned()].into()),
        start_ms: start,
        end_ms: end,
        interval_ms: interval,
    };
    let stats = ctx.query.outcome_stats(&query)?;
    let series = stats
        .groups
        .first()
        .map(|g| g.series.clone())
        .unwrap_or_default();
    let points: Vec<serde_json::Value> = series
        .iter()
        .enumerate()
        .map(|(i, n)| serde_json::json!([(start + i as u64 * interval) / 1000, n]))
        .collect();
    Ok(ApiResponse::ok(serde_json::Value::Array(points)))
}

/// The organization's projects the request names (`-1` or none = all of them).
pub(super) fn projects(ctx: &Ctx<'_>, org: &Organization) -> ApiResult<Vec<u64>> {
    let meta = ctx.store.meta();
    let all = || meta.projects_of_org(org.id).iter().map(|p| p.id).collect();
    let mut wanted = BTreeSet::new();
    for p in ctx.req.params("project") {
        if p == "-1" || p.is_empty() {
            return Ok(all());
        }
        let project = meta
            .project_by_slug(org.id, p)
            .ok_or_else(|| bad(format!("project {p} is not in this organization")))?;
        wanted.insert(project.id);
    }
    Ok(if wanted.is_empty() {
        all()
    } else {
        wanted.into_iter().collect()
    })
}

/// `[start, end)` and the interval, in ms: the requested range rounded out to whole
/// intervals as Sentry rounds it (the end up to the next interval boundary, the length up to
/// a whole number of intervals).
pub(super) fn range(ctx: &Ctx<'_>, now: u64) -> ApiResult<(u64, u64, u64)> {
    let param = |name: &str| ctx.req.param(name).filter(|v| !v.is_empty());
    let interval_text = param("interval").unwrap_or("1h");
    let interval = parse_duration(interval_text)
        .ok_or_else(|| bad(format!("Invalid interval: \"{interval_text}\"")))?;
    if interval < HOUR || !interval.is_multiple_of(HOUR) {
        return Err(bad(
            "The interval has to be a multiple of the minimum interval of one hour.",
        ));
    }
    if interval > DAY {
        return Err(bad("The interval has to be less than one day."));
    }
    if !DAY.is_multiple_of(interval) {
        return Err(bad(
            "The interval should divide one day without a remainder.",
        ));
    }
    let (start, end) = match (param("start"), param("end")) {
        (Some(s), Some(e)) => {
            let start = parse_iso(s).ok_or_else(|| bad(format!("Invalid start: \"{s}\"")))?;
            let end = parse_iso(e).ok_or_else(|| bad(format!("Invalid end: \"{e}\"")))?;
            if start >= end {
                return Err(bad("start must be before end"));
            }
            (start, end)
        }
        (Some(_), None) | (None, Some(_)) => {
            return Err(bad("start and end are both required"));
        }
        (None, None) => {
            let period = param("statsPeriod").unwrap_or(DEFAULT_PERIOD);
            let ms = parse_duration(period)
                .filter(|&ms| ms > 0)
                .ok_or_else(|| bad(format!("Invalid statsPeriod: \"{period}\"")))?;
            (now.saturating_sub(ms), now)
        }
    };
    let too_many = || {
        bad("Your interval and date range would create too many results. Use a larger interval, or a smaller date range.")
    };
    let intervals = (end - start).div_ceil(interval);
    if intervals > MAX_STATS_INTERVALS {
        return Err(too_many());
    }
    let end = end
        .div_ceil(interval)
        .checked_mul(interval)
        .ok_or_else(too_many)?;
    let start = end.saturating_sub(intervals * interval);
    Ok((start, end, interval))
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};
    use storage::{cf, encode_i64, keys, WriteBatch};

    use super::super::testutil::Fixture;
    use super::*;

    const PATH: &str = "/api/0/organizations/default/stats_v2/";

    /// Counters of the bootstrap project (1) in the current and the previous hour.
    fn fixture() -> (Fixture, u64) {
        let f = Fixture::new();
        let hour = keys::hour_start(now_ms());
        let mut batch = WriteBatch::default();
        let cf = f.store.cf(cf::OUTCOMES);
        for (h, outcome, category, reason, n) in [
            (hour, 0u8, 1u8, "", 3i64),
            (hour - HOUR, 0, 1, "", 2),
            (hour, 0, 2, "", 4),
            (hour, 3, 1, "invalid_json", 1),
            (hour, 1, 1, "localhost", 6),
        ] {
            batch.merge_cf(
                &cf,
                keys::outcome(1, h, outcome, category, reason),
                encode_i64(n),
            );
        }
        drop(cf);
        f.store.write(batch, false).unwrap();
        (f, hour)
    }

    fn get(f: &Fixture, query: &str) -> (u16, Value) {
        let resp = f.get(&format!("{PATH}?{query}"));
        (resp.status.as_u16(), resp.body)
    }

    #[test]
    fn answers_sentry_shape_grouped_by_outcome_and_category() {
        let (f, hour) = fixture();
        let (status, body) = get(
            &f,
            "field=sum(quantity)&groupBy=outcome&groupBy=category&statsPeriod=3h&interval=1h",
        );
        assert_eq!(status, 200, "{body}");
        let intervals = body["intervals"].as_array().unwrap();
        assert_eq!(intervals.len(), 3);
        assert_eq!(
            intervals[2].as_str().and_then(parse_iso),
            Some(hour),
            "the last interval is the current hour"
        );
        assert_eq!(body["end"].as_str().and_then(parse_iso), Some(hour + HOUR));
        let groups = body["groups"].as_array().unwrap();
        let find = |o: &str, c: &str| {
            groups
                .iter()
                .find(|g| g["by"] == json!({"outcome": o, "category": c}))
                .unwrap_or_else(|| panic!("no group {o}/{c} in {body}"))
        };
        let acc = find("accepted", "error");
        assert_eq!(acc["totals"]["sum(quantity)"], 5);
        assert_eq!(acc["series"]["sum(quantity)"], json!([0, 2, 3]));
        assert_eq!(
            find("accepted", "transaction")["totals"]["sum(quantity)"],
            4
        );
        assert_eq!(find("invalid", "error")["totals"]["sum(quantity)"], 1);
        assert_eq!(find("filtered", "error")["totals"]["sum(quantity)"], 6);
        assert_eq!(groups.len(), 4);
    }

    #[test]
    fn filters_and_daily_interval() {
        let (f, hour) = fixture();
        let (status, body) = get(
            &f,
            "field=sum(times_seen)&category=error&outcome=accepted&outcome=invalid&groupBy=reason&statsPeriod=2d&interval=1d&project=-1",
        );
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["intervals"].as_array().unwrap().len(), 2);
        assert_eq!(
            body["start"].as_str().and_then(parse_iso),
            Some(hour - hour % DAY - DAY)
        );
        let groups = body["groups"].as_array().unwrap();
        assert_eq!(groups.len(), 2, "{body}");
        assert_eq!(groups[0]["by"], json!({"reason": ""}));
        assert_eq!(groups[0]["totals"]["sum(times_seen)"], 5);
        assert_eq!(groups[1]["by"], json!({"reason": "invalid_json"}));
        // A project filter by id, and one by a project with nothing in it.
        let (_, one) = get(&f, "field=sum(quantity)&category=transaction&project=1");
        assert_eq!(one["groups"][0]["totals"]["sum(quantity)"], 4);
        let (_, by_project) = get(&f, "field=sum(quantity)&category=error&groupBy=project");
        assert_eq!(by_project["groups"][0]["by"], json!({"project": 1}));
        assert_eq!(by_project["groups"][0]["totals"]["sum(quantity)"], 12);
        assert!(by_project.get("intervals").is_none());
    }

    #[test]
    fn bad_parameters_are_400_with_detail() {
        let (f, _) = fixture();
        for (query, detail) in [
            ("category=error", "At least one \"field\" is required."),
            ("field=count()&category=error", "Invalid field: \"count()\""),
            ("field=sum(quantity)&groupBy=release&category=error", "Invalid groupBy: \"release\""),
            ("field=sum(quantity)", "Query must have category as groupby or filter"),
            ("field=sum(quantity)&category=errors", "Invalid category: \"errors\""),
            ("field=sum(quantity)&category=attachment&category=error", "if filtering by attachment no other category may be present"),
            ("field=sum(quantity)&category=error&outcome=lost", "Invalid outcome: \"lost\""),
            ("field=sum(quantity)&category=error&interval=30m", "The interval has to be a multiple of the minimum interval of one hour."),
            ("field=sum(quantity)&category=error&interval=2d", "The interval has to be less than one day."),
            ("field=sum(quantity)&category=error&interval=5h", "The interval should divide one day without a remainder."),
            ("field=sum(quantity)&category=error&statsPeriod=90d", "Your interval and date range would create too many results. Use a larger interval, or a smaller date range."),
            ("field=sum(quantity)&category=error&statsPeriod=forever", "Invalid statsPeriod: \"forever\""),
            ("field=sum(quantity)&category=error&start=2026-01-02T00:00:00Z", "start and end are both required"),
            ("field=sum(quantity)&category=error&start=2026-01-02&end=2026-01-01", "start must be before end"),
            ("field=sum(quantity)&category=error&project=999", "project 999 is not in this organization"),
        ] {
            let (status, body) = get(&f, query);
            assert_eq!(status, 400, "{query}: {body}");
            assert_eq!(body["detail"], detail, "{query}");
        }
        // 90 days is fine by day.
        let (status, body) = get(
            &f,
            "field=sum(quantity)&category=error&statsPeriod=90d&interval=1d",
        );
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["intervals"].as_array().unwrap().len(), 90);
    }

    #[test]
    fn project_stats_counts_error_outcomes_per_hour() {
        let (f, hour) = fixture();
        let path = |q: &str| format!("/api/0/projects/default/default/stats/?{q}");
        let series = |q: &str| -> Vec<(u64, i64)> {
            let resp = f.get(&path(q));
            assert_eq!(resp.status.as_u16(), 200, "{q}: {}", resp.body);
            resp.body
                .as_array()
                .unwrap()
                .iter()
                .map(|p| (p[0].as_u64().unwrap(), p[1].as_i64().unwrap()))
                .collect()
        };
        let since = (hour - HOUR) / 1000;
        let until = hour / 1000 + 10;
        let q = |stat: &str| format!("stat={stat}&since={since}&until={until}");
        // received = accepted + filtered (+ rate limited) errors; not the transactions, not
        // the invalid one.
        assert_eq!(
            series(&q("received")),
            vec![(since, 2), (hour / 1000, 3 + 6)]
        );
        assert_eq!(
            series(&q("blacklisted")),
            vec![(since, 0), (hour / 1000, 6)]
        );
        assert_eq!(series(&q("localhost")), vec![(since, 0), (hour / 1000, 6)]);
        assert_eq!(series(&q("generated")), vec![(since, 2), (hour / 1000, 3)]);
        assert_eq!(series(&q("rejected")), vec![(since, 0), (hour / 1000, 0)]);
        // Default: the last day (less a second, as Sentry) by hour, from the hour holding
        // its start through the current hour: 25 points, 24 in an hour's last second.
        let day = series("");
        assert!((24..=25).contains(&day.len()), "{day:?}");
        assert_eq!(day.last(), Some(&(hour / 1000, 9)));
        let daily = series("resolution=1d");
        assert_eq!(daily.iter().map(|p| p.1).sum::<i64>(), 11);
        for bad in [
            "stat=nope",
            "resolution=10s",
            "since=x",
            "since=20&until=10",
        ] {
            let resp = f.get(&path(bad));
            assert_eq!(resp.status.as_u16(), 400, "{bad}: {}", resp.body);
            assert!(resp.body["detail"].is_string());
        }
        assert_eq!(
            f.get("/api/0/projects/default/nope/stats/").status.as_u16(),
            404
        );
    }

    #[test]
    fn needs_org_read_and_a_visible_org() {
        let (f, _) = fixture();
        let q = "?field=sum(quantity)&category=error";
        let events_only = f.token(1, &["event:read"]);
        let resp = f.call(
            http::Method::GET,
            &format!("{PATH}{q}"),
            Some(&events_only),
            None,
        );
        assert_eq!(resp.status.as_u16(), 403);
        let reader = f.token(1, &["org:read"]);
        let resp = f.call(
            http::Method::GET,
            &format!("{PATH}{q}"),
            Some(&reader),
            None,
        );
        assert_eq!(resp.status.as_u16(), 200);
        let resp = f.call(http::Method::GET, &format!("{PATH}{q}"), None, None);
        assert_eq!(resp.status.as_u16(), 401);
        let other = f.get(&format!("/api/0/organizations/nope/stats_v2/{q}"));
        assert_eq!(other.status.as_u16(), 404);
        let post = f.post(PATH, json!({}));
        assert_eq!(post.status.as_u16(), 405);
    }
}
