//! `get_release_health`: sessions, crashes and crash-free rates of a project, one release or
//! each release, from the release health counters (`query::sessions`).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use query::sessions::{ReleaseHealth, SessionsField, SessionsGroupBy, SessionsQuery};

use super::{analysis, internal, iso, Access, Inner};

/// Releases listed when no release is asked for.
const MAX_RELEASES: usize = 20;

/// Arguments of `get_release_health`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct ReleaseHealthArgs {
    /// Project slug (e.g. "default") or numeric id; `find_projects` lists them.
    pub project: String,
    /// Only this release (e.g. "app@1.4.0"); without it, the project's total and its
    /// releases with the most sessions.
    #[serde(default)]
    pub release: Option<String>,
    /// Only this environment (e.g. "production").
    #[serde(default)]
    pub environment: Option<String>,
    /// How far back to look: 1h, 24h (default), 7d, 14d, 30d or 90d. Sessions are counted
    /// per hour, so the range is widened to whole hours.
    #[serde(default, rename = "timeRange")]
    pub time_range: Option<String>,
}

/// Session and user counts and crash-free rates.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HealthNumbers {
    /// Sessions started.
    pub sessions: i64,
    /// Sessions with an error (crashed and abnormal ones included).
    pub sessions_errored: i64,
    /// Sessions that ended in a crash (an unhandled error).
    pub sessions_crashed: i64,
    /// Sessions that ended abnormally (e.g. the app was killed).
    pub sessions_abnormal: i64,
    /// Distinct users with a session.
    pub users: i64,
    /// Distinct users with a crashed session.
    pub users_crashed: i64,
    /// Percent of sessions that did not crash (null without sessions).
    pub crash_free_sessions: Option<f64>,
    /// Percent of users without a crashed session (null without users).
    pub crash_free_users: Option<f64>,
}

impl From<ReleaseHealth> for HealthNumbers {
    fn from(h: ReleaseHealth) -> Self {
        HealthNumbers {
            sessions: h.sessions,
            sessions_errored: h.sessions_errored,
            sessions_crashed: h.sessions_crashed,
            sessions_abnormal: h.sessions_abnormal,
            users: h.users,
            users_crashed: h.users_crashed,
            crash_free_sessions: h.crash_free_sessions.map(percent),
            crash_free_users: h.crash_free_users.map(percent),
        }
    }
}

/// A rate as a percent rounded to 3 decimals.
fn percent(rate: f64) -> f64 {
    (rate * 100_000.0).round() / 1000.0
}

/// One release's health.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReleaseHealthRow {
    /// The release.
    pub release: String,
    /// Its numbers.
    #[serde(flatten)]
    pub numbers: HealthNumbers,
}

/// Answer of `get_release_health`.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReleaseHealthAnswer {
    /// Project slug.
    pub project: String,
    /// The release asked for, if any.
    pub release: Option<String>,
    /// The environment asked for, if any.
    pub environment: Option<String>,
    /// Start of the range (whole hour, ISO 8601).
    pub start: String,
    /// End of the range.
    pub end: String,
    /// The numbers of the project (or of the release asked for).
    pub total: HealthNumbers,
    /// Without a release asked for: the releases with the most sessions, most first.
    pub releases: Vec<ReleaseHealthRow>,
    /// Releases with sessions not listed.
    pub releases_omitted: usize,
}

impl Inner {
    pub(super) fn release_health(
        &self,
        acc: Access,
        args: ReleaseHealthArgs,
    ) -> Result<ReleaseHealthAnswer, String> {
        const HOUR: u64 = 3_600_000;
        let project = self.project(acc, &args.project)?;
        let range = analysis::parse_range(args.time_range.as_deref().unwrap_or("24h"))?;
        let now = storage::now_ms();
        let start = storage::keys::hour_start(now.saturating_sub(range));
        let end = now.div_ceil(HOUR) * HOUR;
        let release = args.release.filter(|r| !r.is_empty());
        let environment = args.environment.filter(|e| !e.is_empty());
        let total = self
            .query
            .release_health(
                project.id,
                release.as_deref(),
                environment.as_deref(),
                (start, end),
            )
            .map_err(internal)?;
        let mut releases = Vec::new();
        let mut releases_omitted = 0;
        if release.is_none() {
            let answer = self
                .query
                .sessions(&SessionsQuery {
                    fields: vec![SessionsField::Sessions, SessionsField::Users],
                    group_by: vec![SessionsGroupBy::Release],
                    projects: vec![project.id],
                    environments: environment.iter().cloned().collect(),
                    releases: Vec::new(),
                    start_ms: start,
                    end_ms: end,
                    interval_ms: end - start,
                    query_text: String::new(),
                })
                .map_err(internal)?;
            let mut rows: Vec<ReleaseHealthRow> = answer
                .groups
                .iter()
                .filter(|g| g.totals.started > 0)
                .map(|g| ReleaseHealthRow {
                    release: match g.key.first() {
                        Some(query::sessions::GroupValue::Name(n)) => n.clone(),
                        _ => String::new(),
                    },
                    numbers: ReleaseHealth::of_group(g).into(),
                })
                .collect();
            rows.sort_by(|a, b| {
                b.numbers
                    .sessions
                    .cmp(&a.numbers.sessions)
                    .then_with(|| a.release.cmp(&b.release))
            });
            releases_omitted = rows.len().saturating_sub(MAX_RELEASES);
            rows.truncate(MAX_RELEASES);
            releases = rows;
        }
        Ok(ReleaseHealthAnswer {
            project: project.slug.clone(),
            release,
            environment,
            start: iso(start),
            end: iso(end),
            total: total.into(),
            releases,
            releases_omitted,
        })
    }
}

/// `get_release_health` answers of several processor nodes as one: counts add up (a project's
/// sessions are folded on the node that processes it, so its users are not counted twice) and
/// the rates are computed again from the sums.
pub(crate) fn merge_release_health(answers: &[serde_json::Value]) -> serde_json::Value {
    use std::collections::BTreeMap;
    let numbers = |v: &serde_json::Value| serde_json::from_value::<HealthNumbers>(v.clone()).ok();
    let mut total: Option<HealthNumbers> = None;
    let mut releases: BTreeMap<String, HealthNumbers> = BTreeMap::new();
    let mut omitted = 0u64;
    for answer in answers {
        if let Some(n) = numbers(&answer["total"]) {
            total = Some(match total {
                Some(t) => add(t, &n),
                None => n,
            });
        }
        for row in answer["releases"].as_array().into_iter().flatten() {
            let Ok(row) = serde_json::from_value::<ReleaseHealthRow>(row.clone()) else {
                continue;
            };
            let merged = match releases.remove(&row.release) {
                Some(n) => add(n, &row.numbers),
                None => row.numbers,
            };
            releases.insert(row.release, merged);
        }
        omitted += answer["releasesOmitted"].as_u64().unwrap_or(0);
    }
    let mut rows: Vec<ReleaseHealthRow> = releases
        .into_iter()
        .map(|(release, numbers)| ReleaseHealthRow { release, numbers })
        .collect();
    rows.sort_by(|a, b| {
        b.numbers
            .sessions
            .cmp(&a.numbers.sessions)
            .then_with(|| a.release.cmp(&b.release))
    });
    omitted += rows.len().saturating_sub(MAX_RELEASES) as u64;
    rows.truncate(MAX_RELEASES);
    let mut merged = answers.first().cloned().unwrap_or_default();
    if let Some(obj) = merged.as_object_mut() {
        obj.insert(
            "total".into(),
            serde_json::to_value(total).unwrap_or_default(),
        );
        obj.insert(
            "releases".into(),
            serde_json::to_value(rows).unwrap_or_default(),
        );
        obj.insert("releasesOmitted".into(), omitted.into());
    }
    merged
}

/// The sums of two nodes' numbers, with the rates computed from them.
fn add(a: HealthNumbers, b: &HealthNumbers) -> HealthNumbers {
    let health = ReleaseHealth {
        sessions: a.sessions + b.sessions,
        sessions_errored: a.sessions_errored + b.sessions_errored,
        sessions_crashed: a.sessions_crashed + b.sessions_crashed,
        sessions_abnormal: a.sessions_abnormal + b.sessions_abnormal,
        users: a.users + b.users,
        users_crashed: a.users_crashed + b.users_crashed,
        crash_free_sessions: None,
        crash_free_users: None,
    };
    let rate = |crashed: i64, all: i64| (all > 0).then(|| 1.0 - crashed as f64 / all as f64);
    HealthNumbers::from(ReleaseHealth {
        crash_free_sessions: rate(health.sessions_crashed, health.sessions),
        crash_free_users: rate(health.users_crashed, health.users),
        ..health
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn node_answers_merge_into_sums_and_recomputed_rates() {
        let node = |sessions: i64, crashed: i64, release: &str| {
            let numbers = json!({
                "sessions": sessions, "sessionsErrored": crashed, "sessionsCrashed": crashed,
                "sessionsAbnormal": 0, "users": sessions, "usersCrashed": crashed,
                "crashFreeSessions": 100.0 * (1.0 - crashed as f64 / sessions as f64),
                "crashFreeUsers": 100.0 * (1.0 - crashed as f64 / sessions as f64),
            });
            let mut row = numbers.clone();
            row["release"] = json!(release);
            json!({"project": "default", "total": numbers, "releases": [row], "releasesOmitted": 0})
        };
        // Release a@1 is on both nodes (two projects), a@2 on the second only.
        let mut second = node(2, 0, "a@2");
        second["releases"]
            .as_array_mut()
            .unwrap()
            .push(node(2, 2, "a@1")["releases"][0].clone());
        let merged = merge_release_health(&[node(8, 2, "a@1"), second]);
        assert_eq!(merged["total"]["sessions"], 10);
        assert_eq!(merged["total"]["crashFreeSessions"], 80.0);
        assert_eq!(merged["releases"][0]["release"], "a@1");
        assert_eq!(merged["releases"][0]["sessions"], 10);
        assert_eq!(merged["releases"][0]["crashFreeSessions"], 60.0);
        assert_eq!(merged["releases"][1]["crashFreeUsers"], 100.0);
    }
}
