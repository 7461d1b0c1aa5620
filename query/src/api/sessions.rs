//! `GET /organizations/{org}/sessions/`: Sentry's release health query ("Retrieve Release
//! Health Session Statistics") over the session counters ([`crate::sessions`]).
//!
//! Parameters, as Sentry takes them:
//! - `field` (required, repeatable): `sum(session)`, `count_unique(user)`,
//!   `crash_rate(session)`, `crash_rate(user)`, `crash_free_rate(session)`,
//!   `crash_free_rate(user)`;
//! - `groupBy` (repeatable): `project`, `release`, `environment`, `session.status` (rates
//!   cannot be grouped by `session.status`, as in Sentry);
//! - `project` (ids or slugs; `-1` or none = every project of the organization),
//!   `environment` (repeatable), `query` (`release:X`, `environment:X`, quoted values and
//!   `[a,b]` lists; terms are ANDed);
//! - `statsPeriod` (default `14d`) or `start` and `end`; `interval` (default `1h`) a whole
//!   number of hours that divides a day (sessions are counted per hour);
//! - `orderBy` (a requested field, `-` for descending) and `per_page` to keep the top groups
//!   (not with `session.status`).
//!
//! The answer is `{start, end, intervals, groups: [{by, totals, series}], query}`; a bad
//! parameter is 400 with `{"detail": …}`. Needs `org:read` (or `event:read` /
//! `project:releases`, as Sentry's event permission allows).

use storage::now_ms;

use super::stats::{projects, range};
use super::{ApiError, ApiResponse, ApiResult, Ctx};
use crate::sessions::{SessionsField, SessionsGroupBy, SessionsQuery};

/// Most values one `query` term list may name.
const MAX_FILTER_VALUES: usize = 100;

pub(super) fn route(
    ctx: &Ctx<'_>,
    method: &http::Method,
    segs: &[&str],
) -> ApiResult<Option<ApiResponse>> {
    let ["organizations", org, "sessions"] = segs else {
        return Ok(None);
    };
    if method != http::Method::GET {
        return Err(super::not_allowed(method));
    }
    let org = ctx.org(org)?;
    ctx.require_any(&["org:read", "event:read", "project:releases"])?;
    let query = sessions_query(ctx, &org, now_ms())?;
    let answer = ctx.query.sessions(&query)?;
    let mut body = answer.to_json();
    order_and_limit(ctx, &query, &mut body)?;
    Ok(Some(ApiResponse::ok(body)))
}

fn bad(detail: impl Into<String>) -> ApiError {
    ApiError::BadRequest(detail.into())
}

/// The validated question of a request, its range resolved at `now`.
pub(super) fn sessions_query(
    ctx: &Ctx<'_>,
    org: &storage::Organization,
    now: u64,
) -> ApiResult<SessionsQuery> {
    let req = ctx.req;
    let raw_fields = req.params("field");
    if raw_fields.is_empty() {
        return Err(bad("Request is missing a \"field\""));
    }
    let mut fields = Vec::new();
    for f in raw_fields {
        let field =
            SessionsField::parse(f).ok_or_else(|| bad(format!("Invalid field: \"{f}\"")))?;
        if !fields.contains(&field) {
            fields.push(field);
        }
    }
    let mut group_by = Vec::new();
    for g in req.params("groupBy") {
        let col =
            SessionsGroupBy::parse(g).ok_or_else(|| bad(format!("Invalid groupBy: \"{g}\"")))?;
        if !group_by.contains(&col) {
            group_by.push(col);
        }
    }
    if group_by.contains(&SessionsGroupBy::Status) {
        if let Some(rate) = fields.iter().find(|f| f.is_rate()) {
            return Err(bad(format!(
                "Cannot group field {} by session.status",
                rate.name()
            )));
        }
    }
    let mut environments: Vec<String> = req
        .params("environment")
        .into_iter()
        .filter(|e| !e.is_empty())
        .map(str::to_owned)
        .collect();
    let query_text = req.param("query").unwrap_or("").to_owned();
    let mut releases = Vec::new();
    for (key, values) in parse_query(&query_text)? {
        // `parse_query` only lets `release` and `environment` through.
        if key == "release" {
            releases.extend(values);
        } else {
            environments.extend(values);
        }
    }
    let projects = projects(ctx, org)?;
    let (start_ms, end_ms, interval_ms) = range(ctx, now)?;
    Ok(SessionsQuery {
        fields,
        group_by,
        projects,
        environments,
        releases,
        start_ms,
        end_ms,
        interval_ms,
        query_text,
    })
}

/// `key:value` terms of a `query` (whitespace-separated, ANDed); values may be quoted or
/// `[a, b]` lists. Only `release` and `environment` are sessions filters.
fn parse_query(text: &str) -> ApiResult<Vec<(String, Vec<String>)>> {
    let mut terms = Vec::new();
    let mut rest = text.trim();
    while !rest.is_empty() {
        let Some(colon) = rest.find(':') else {
            return Err(bad(format!("Invalid query: \"{text}\"")));
        };
        let key = rest[..colon].trim();
        if key.starts_with('!') {
            return Err(bad(format!(
                "Invalid query: negated filters are not supported on sessions (\"{key}\")"
            )));
        }
        if !matches!(key, "release" | "environment") {
            return Err(bad(format!(
                "Invalid query field: \"{key}\" (sessions filter on release and environment)"
            )));
        }
        let after = &rest[colon + 1..];
        let (values, remaining) = if let Some(list) = after.strip_prefix('[') {
            let end = list
                .find(']')
                .ok_or_else(|| bad(format!("Invalid query: unclosed list in \"{text}\"")))?;
            let values = list[..end]
                .split(',')
                .map(|v| v.trim().trim_matches('"').to_owned())
                .filter(|v| !v.is_empty())
                .collect::<Vec<_>>();
            (values, &list[end + 1..])
        } else if let Some(quoted) = after.strip_prefix('"') {
            let end = quoted
                .find('"')
                .ok_or_else(|| bad(format!("Invalid query: unclosed quote in \"{text}\"")))?;
            (vec![quoted[..end].to_owned()], &quoted[end + 1..])
        } else {
            let end = after.find(char::is_whitespace).unwrap_or(after.len());
            (vec![after[..end].to_owned()], &after[end..])
        };
        if values.is_empty() || values.iter().any(String::is_empty) {
            return Err(bad(format!("Invalid query: \"{key}\" needs a value")));
        }
        if values.len() > MAX_FILTER_VALUES {
            return Err(bad(format!(
                "Invalid query: at most {MAX_FILTER_VALUES} values per filter"
            )));
        }
        terms.push((key.to_owned(), values));
        rest = remaining.trim_start();
    }
    // Two terms on one key are ANDed: only their common values can match.
    let mut merged: Vec<(String, Vec<String>)> = Vec::new();
    for (key, values) in terms {
        match merged.iter_mut().find(|(k, _)| *k == key) {
            Some((_, existing)) => {
                existing.retain(|v| values.contains(v));
                if existing.is_empty() {
                    // Nothing can match; keep an impossible value rather than "no filter".
                    existing.push("\0".to_owned());
                }
            }
            None => merged.push((key, values)),
        }
    }
    Ok(merged)
}

/// `orderBy` and `per_page`: the top groups by one field's total.
fn order_and_limit(
    ctx: &Ctx<'_>,
    query: &SessionsQuery,
    body: &mut serde_json::Value,
) -> ApiResult<()> {
    let param = |name: &str| ctx.req.param(name).filter(|v| !v.is_empty());
    let per_page = match param("per_page") {
        None => None,
        Some(p) => Some(
            p.parse::<usize>()
                .ok()
                .filter(|n| (1..=10_000).contains(n))
                .ok_or_else(|| bad(format!("Invalid per_page: \"{p}\"")))?,
        ),
    };
    let Some(order) = param("orderBy") else {
        return Ok(());
    };
    if query.group_by.contains(&SessionsGroupBy::Status) {
        return Err(bad("Cannot use 'orderBy' when grouping by sessions.status"));
    }
    let (descending, name) = match order.strip_prefix('-') {
        Some(n) => (true, n),
        None => (false, order),
    };
    if !query.fields.iter().any(|f| f.name() == name) {
        return Err(bad("'orderBy' must be one of the provided 'fields'"));
    }
    let Some(groups) = body["groups"].as_array_mut() else {
        return Ok(());
    };
    let total = |g: &serde_json::Value| g["totals"][name].as_f64();
    groups.sort_by(|a, b| {
        // Groups without a value (a rate without sessions) go last either way.
        let (x, y) = (total(a), total(b));
        match (x, y) {
            (Some(x), Some(y)) if descending => y.total_cmp(&x),
            (Some(x), Some(y)) => x.total_cmp(&y),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (None, None) => std::cmp::Ordering::Equal,
        }
    });
    if let Some(n) = per_page {
        groups.truncate(n);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};
    use storage::{cf, encode_i64, keys, sessions as sk, WriteBatch};

    use super::super::testutil::Fixture;
    use super::*;

    const HOUR: u64 = 3_600_000;

    /// Project 1: release a@1 in prod (10 sessions, 3 errored of which 1 crashed and 1
    /// abnormal; 4 users of which 1 crashed) this hour; release a@2 in staging (5 sessions, 1
    /// crashed) the previous hour.
    fn fixture() -> Fixture {
        let f = Fixture::new();
        let hour = keys::hour_start(now_ms());
        let mut batch = WriteBatch::default();
        let counters = f.store.cf(cf::COUNTERS);
        for (h, release, env, metric, n) in [
            (hour, "a@1", "prod", sk::metric::STARTED, 10),
            (hour, "a@1", "prod", sk::metric::ERRORED, 3),
            (hour, "a@1", "prod", sk::metric::CRASHED, 1),
            (hour, "a@1", "prod", sk::metric::ABNORMAL, 1),
            (hour - HOUR, "a@2", "staging", sk::metric::STARTED, 5),
            (hour - HOUR, "a@2", "staging", sk::metric::ERRORED, 1),
            (hour - HOUR, "a@2", "staging", sk::metric::CRASHED, 1),
        ] {
            batch.merge_cf(
                &counters,
                sk::counter_key(1, h, release, env, metric),
                encode_i64(n),
            );
        }
        let hist_cf = f.store.cf(cf::HISTOGRAMS);
        let mut value = Vec::new();
        for (which, slots) in [
            (sk::users::ALL, vec![(1u32, 1u64), (2, 1), (3, 1), (4, 1)]),
            (sk::users::ERRORED, vec![(2, 1)]),
            (sk::users::CRASHED, vec![(2, 1)]),
        ] {
            storage::hist::encode_sparse(&slots, &mut value);
            batch.merge_cf(
                &hist_cf,
                sk::users_key(1, hour, "a@1", "prod", which),
                &value,
            );
        }
        drop((counters, hist_cf));
        f.store.write(batch, false).unwrap();
        f
    }

    fn get(f: &Fixture, query: &str) -> (u16, Value) {
        let resp = f.get(&format!("/api/0/organizations/default/sessions/?{query}"));
        (resp.status.as_u16(), resp.body)
    }

    #[test]
    fn totals_series_and_crash_free_rates() {
        let f = fixture();
        let (status, body) = get(
            &f,
            "field=sum(session)&field=crash_free_rate(session)&field=count_unique(user)&field=crash_free_rate(user)&statsPeriod=2h&interval=1h",
        );
        assert_eq!(status, 200, "{body}");
        let g = &body["groups"][0];
        assert_eq!(g["by"], json!({}));
        assert_eq!(g["totals"]["sum(session)"], 15);
        // 2 crashed of 15.
        let rate = g["totals"]["crash_free_rate(session)"].as_f64().unwrap();
        assert!((rate - 13.0 / 15.0).abs() < 1e-9, "{rate}");
        assert_eq!(g["totals"]["count_unique(user)"], 4);
        assert_eq!(g["totals"]["crash_free_rate(user)"], 0.75);
        assert_eq!(
            body["intervals"].as_array().map(Vec::len),
            Some(2),
            "{body}"
        );
        let series: Vec<i64> = g["series"]["sum(session)"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_i64().unwrap())
            .collect();
        assert_eq!(series.iter().sum::<i64>(), 15);
        assert!(series.contains(&10) && series.contains(&5), "{series:?}");
        assert_eq!(body["query"], "");
    }

    #[test]
    fn group_by_status_partitions_and_release_filters() {
        let f = fixture();
        let (status, body) = get(
            &f,
            "field=sum(session)&groupBy=session.status&query=release:a@1&statsPeriod=1d",
        );
        assert_eq!(status, 200, "{body}");
        let by_status: std::collections::BTreeMap<String, i64> = body["groups"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| {
                (
                    g["by"]["session.status"].as_str().unwrap().to_owned(),
                    g["totals"]["sum(session)"].as_i64().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            by_status,
            [
                ("abnormal", 1),
                ("crashed", 1),
                ("errored", 1),
                ("healthy", 7)
            ]
            .map(|(k, v)| (k.to_owned(), v))
            .into()
        );
        let (_, by_release) = get(
            &f,
            "field=sum(session)&field=crash_rate(session)&groupBy=release&groupBy=environment&orderBy=-sum(session)&statsPeriod=1d",
        );
        let groups = by_release["groups"].as_array().unwrap();
        assert_eq!(groups.len(), 2, "{by_release}");
        assert_eq!(
            groups[0]["by"],
            json!({"release": "a@1", "environment": "prod"})
        );
        assert_eq!(groups[1]["totals"]["crash_rate(session)"], 0.2);
        let (_, staging) = get(&f, "field=sum(session)&environment=staging&statsPeriod=1d");
        assert_eq!(staging["groups"][0]["totals"]["sum(session)"], 5);
        let (_, none) = get(
            &f,
            "field=sum(session)&field=crash_free_rate(session)&query=release:nope&statsPeriod=1d",
        );
        assert_eq!(none["groups"][0]["totals"]["sum(session)"], 0);
        assert_eq!(
            none["groups"][0]["totals"]["crash_free_rate(session)"],
            Value::Null
        );
    }

    #[test]
    fn bad_parameters_are_400_with_a_detail() {
        let f = fixture();
        for query in [
            "statsPeriod=1d",
            "field=sum(sessions)",
            "field=sum(session)&groupBy=browser",
            "field=crash_free_rate(session)&groupBy=session.status",
            "field=sum(session)&interval=10m",
            "field=sum(session)&statsPeriod=forever",
            "field=sum(session)&query=transaction:foo",
            "field=sum(session)&query=release:\"unclosed",
            "field=sum(session)&orderBy=count_unique(user)",
            "field=sum(session)&project=no-such-project",
        ] {
            let (status, body) = get(&f, query);
            assert_eq!(status, 400, "{query}: {body}");
            assert!(
                body["detail"].as_str().is_some_and(|d| !d.is_empty()),
                "{query}: {body}"
            );
        }
    }

    #[test]
    fn query_terms_parse() {
        let terms = parse_query("release:\"a b\" environment:[prod, staging]  release:x").unwrap();
        assert_eq!(
            terms,
            vec![
                ("release".to_owned(), vec!["\0".to_owned()]),
                (
                    "environment".to_owned(),
                    vec!["prod".to_owned(), "staging".to_owned()]
                ),
            ]
        );
        assert_eq!(parse_query("").unwrap(), vec![]);
    }
}
