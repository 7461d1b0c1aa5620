//! Alert rules in Sentry's two shapes, and the history of fired alerts.
//!
//! - Issue alerts: `/projects/{org}/{project}/rules/` (GET list, POST) and `…/rules/{id}/`
//!   (GET, PUT, DELETE).
//! - Metric alerts: `/organizations/{org}/alert-rules/` (GET list, POST) and
//!   `…/alert-rules/{id}/` (GET, PUT, DELETE).
//! - Fired alerts (osprey's own): `/projects/{org}/{project}/alert-history/` and
//!   `/organizations/{org}/alert-history/`, newest first, `?rule=ID` (issue rule) or `?metricRule=ID`, and `?limit=N`.
//!
//! Bodies are decoded and validated by storage ([`AlertRule::from_api_json`],
//! [`MetricAlertRule::from_api_json`]), the same functions the CLI and the MCP tools use, so
//! every client gets the same 400 with a `detail` for a bad rule. The renderers here are
//! public for the same reason. Reading needs `alerts:read` (or `project:read`), writing
//! `alerts:write` (or `project:write`), as Sentry's alert endpoints accept.

use std::collections::HashMap;

use http::Method;
use serde_json::{json, Value};
use storage::alerts::{AlertRule, FiredAlert, MetricAlertRule, METRIC_ALERT_ISSUE};
use storage::{Organization, Project, Store};

use super::util::iso;
use super::{not_allowed, ApiError, ApiResponse, ApiResult, Ctx};

const READ: &[&str] = &["alerts:read", "project:read"];
const WRITE: &[&str] = &["alerts:write", "project:write"];

/// Most fired alerts one history answer returns.
pub const MAX_HISTORY: usize = 1_000;

pub(super) fn route(
    ctx: &Ctx<'_>,
    method: &Method,
    segs: &[&str],
) -> ApiResult<Option<ApiResponse>> {
    let m = method;
    let resp = match segs {
        ["projects", org, project, "rules"] => {
            let (_, project) = ctx.project(org, project)?;
            match *m {
                Method::GET => {
                    ctx.require_any(READ)?;
                    let rules = ctx.store.alert_rules(project.id);
                    ApiResponse::ok(Value::Array(
                        rules.iter().map(|r| issue_rule_json(r, &project)).collect(),
                    ))
                }
                Method::POST => {
                    ctx.require_any(WRITE)?;
                    let rule = AlertRule::from_api_json(&ctx.req.json_body()?)?;
                    let created = ctx.store.create_alert_rule(project.id, rule)?;
                    ApiResponse::created(issue_rule_json(&created, &project))
                }
                _ => return Err(not_allowed(m)),
            }
        }
        ["projects", org, project, "rules", id] => {
            let (_, project) = ctx.project(org, project)?;
            let rule = issue_rule(ctx.store, &project, id)?;
            match *m {
                Method::GET => {
                    ctx.require_any(READ)?;
                    ApiResponse::ok(issue_rule_json(&rule, &project))
                }
                Method::PUT => {
                    ctx.require_any(WRITE)?;
                    let new = AlertRule::from_api_json(&ctx.req.json_body()?)?;
                    let updated = ctx.store.update_alert_rule(rule.id, new)?;
                    ApiResponse::ok(issue_rule_json(&updated, &project))
                }
                Method::DELETE => {
                    ctx.require_any(WRITE)?;
                    ctx.store.delete_alert_rule(rule.id)?;
                    ApiResponse::no_content()
                }
                _ => return Err(not_allowed(m)),
            }
        }
        ["projects", org, project, "alert-history"] => {
            let (org, project) = ctx.project(org, project)?;
            if *m != Method::GET {
                return Err(not_allowed(m));
            }
            ctx.require_any(READ)?;
            history(ctx, &org, &[project])?
        }
        ["organizations", org, "alert-history"] => {
            let org = ctx.org(org)?;
            if *m != Method::GET {
                return Err(not_allowed(m));
            }
            ctx.require_any(READ)?;
            let projects = ctx.store.meta().projects_of_org(org.id);
            history(ctx, &org, &projects)?
        }
        ["organizations", org, "alert-rules"] => {
            let org = ctx.org(org)?;
            match *m {
                Method::GET => {
                    ctx.require_any(READ)?;
                    let rules: Vec<Value> = ctx
                        .store
                        .metric_alert_rules()?
                        .iter()
                        .filter(|r| r.org_id == org.id)
                        .map(|r| metric_rule_json(r, &org))
                        .collect();
                    ApiResponse::ok(Value::Array(rules))
                }
                Method::POST => {
                    ctx.require_any(WRITE)?;
                    let rule = MetricAlertRule::from_api_json(&ctx.req.json_body()?)?;
                    let created = ctx.store.create_metric_alert_rule(org.id, rule)?;
                    ApiResponse::created(metric_rule_json(&created, &org))
                }
                _ => return Err(not_allowed(m)),
            }
        }
        ["organizations", org, "alert-rules", id] => {
            let org = ctx.org(org)?;
            let rule = metric_rule(ctx.store, &org, id)?;
            match *m {
                Method::GET => {
                    ctx.require_any(READ)?;
                    ApiResponse::ok(metric_rule_json(&rule, &org))
                }
                Method::PUT => {
                    ctx.require_any(WRITE)?;
                    let new = MetricAlertRule::from_api_json(&ctx.req.json_body()?)?;
                    let updated = ctx.store.update_metric_alert_rule(rule.id, new)?;
                    ApiResponse::ok(metric_rule_json(&updated, &org))
                }
                Method::DELETE => {
                    ctx.require_any(WRITE)?;
                    ctx.store.delete_metric_alert_rule(rule.id)?;
                    ApiResponse::no_content()
                }
                _ => return Err(not_allowed(m)),
            }
        }
        _ => return Ok(None),
    };
    Ok(Some(resp))
}

fn not_found() -> ApiError {
    ApiError::NotFound("The requested resource does not exist".into())
}

/// The issue rule `id` of `project` (404 for another project's rule).
fn issue_rule(store: &Store, project: &Project, id: &str) -> ApiResult<std::sync::Arc<AlertRule>> {
    let id: u64 = id.parse().map_err(|_| not_found())?;
    store
        .alert_rule(id)
        .filter(|r| r.project_id == project.id)
        .ok_or_else(not_found)
}

/// The metric rule `id` of `org` (404 for another organization's rule).
fn metric_rule(store: &Store, org: &Organization, id: &str) -> ApiResult<MetricAlertRule> {
    let id: u64 = id.parse().map_err(|_| not_found())?;
    store
        .metric_alert_rule(id)?
        .filter(|r| r.org_id == org.id)
        .ok_or_else(not_found)
}

/// An issue rule in Sentry's response shape (`id` as a string, `dateCreated`, `projects`).
pub fn issue_rule_json(rule: &AlertRule, project: &Project) -> Value {
    let raw = serde_json::to_value(rule).unwrap_or(Value::Null);
    json!({
        "id": rule.id.to_string(),
        "name": rule.name,
        "actionMatch": raw["actionMatch"],
        "filterMatch": raw["filterMatch"],
        "conditions": raw["conditions"],
        "filters": raw["filters"],
        "actions": raw["actions"],
        "frequency": rule.frequency,
        "environment": rule.environment,
        "projects": [project.slug],
        "dateCreated": iso(rule.created_ms),
        "owner": null,
        "createdBy": null,
        "status": "active",
        "snooze": false,
    })
}

/// A metric rule in Sentry's response shape.
pub fn metric_rule_json(rule: &MetricAlertRule, org: &Organization) -> Value {
    let threshold_type = serde_json::to_value(rule.threshold_type).unwrap_or(Value::Null);
    let triggers: Vec<Value> = rule
        .triggers
        .iter()
        .enumerate()
        .map(|(i, t)| {
            json!({
                "id": format!("{}-{i}", rule.id),
                "alertRuleId": rule.id.to_string(),
                "label": if t.label.is_empty() { "critical" } else { t.label.as_str() },
                "thresholdType": threshold_type,
                "alertThreshold": t.alert_threshold,
                "resolveThreshold": null,
                "actions": serde_json::to_value(&t.actions).unwrap_or(Value::Null),
            })
        })
        .collect();
    json!({
        "id": rule.id.to_string(),
        "name": rule.name,
        "organizationId": org.id.to_string(),
        "dataset": "transactions",
        "queryType": 1,
        "query": rule.query,
        "aggregate": rule.aggregate,
        "timeWindow": rule.time_window,
        "thresholdType": threshold_type,
        "resolveThreshold": null,
        "environment": rule.environment,
        "projects": rule.projects,
        "triggers": triggers,
        "owner": null,
        "dateCreated": iso(rule.created_ms),
        "dateModified": iso(rule.created_ms),
    })
}

/// One fired alert: which rule, where, when, and the payload that was sent.
pub fn fired_json(fired: &FiredAlert, project_slug: &str) -> Value {
    let metric = fired.issue_id == METRIC_ALERT_ISSUE;
    json!({
        "ruleId": fired.rule_id.to_string(),
        "ruleName": fired.rule_name,
        "type": if metric { "metric" } else { "issue" },
        "project": project_slug,
        "projectId": fired.project_id.to_string(),
        "issueId": if metric { Value::Null } else { Value::String(fired.issue_id.to_string()) },
        "eventId": if fired.event_id.is_empty() { Value::Null } else { Value::String(fired.event_id.clone()) },
        "dateFired": iso(fired.fired_ms),
        "payload": fired.payload,
    })
}

/// Fired alerts of `projects`, newest first, optionally of one rule (`?rule=ID`).
fn history(ctx: &Ctx<'_>, _org: &Organization, projects: &[std::sync::Arc<Project>]) -> ApiResult {
    let limit = match ctx.req.param("limit").or_else(|| ctx.req.param("per_page")) {
        None | Some("") => 100,
        Some(n) => n
            .parse::<usize>()
            .map_err(|_| ApiError::BadRequest(format!("limit must be a number, got {n:?}")))?
            .clamp(1, MAX_HISTORY),
    };
    // Issue and metric rules are numbered separately: `rule` names an issue rule,
    // `metricRule` a metric rule.
    let id_param = |name: &str| -> ApiResult<Option<u64>> {
        match ctx.req.param(name) {
            None | Some("") => Ok(None),
            Some(r) => r
                .parse()
                .map(Some)
                .map_err(|_| ApiError::BadRequest(format!("{name} must be a rule id, got {r:?}"))),
        }
    };
    let rule: Option<(u64, bool)> = match (id_param("rule")?, id_param("metricRule")?) {
        (Some(_), Some(_)) => {
            return Err(ApiError::BadRequest(
                "give rule or metricRule, not both".into(),
            ))
        }
        (Some(r), None) => Some((r, false)),
        (None, Some(r)) => Some((r, true)),
        (None, None) => None,
    };
    let slugs: HashMap<u64, &str> = projects.iter().map(|p| (p.id, p.slug.as_str())).collect();
    let mut all = Vec::new();
    for project in projects {
        // Each project's list is newest first and capped; filtering by rule happens after,
        // so ask for the cap when a rule is named.
        let want = if rule.is_some() { MAX_HISTORY } else { limit };
        all.extend(
            ctx.store
                .fired_alerts(project.id, want)?
                .into_iter()
                .filter(|f| {
                    rule.is_none_or(|(r, metric)| {
                        f.rule_id == r && (f.issue_id == METRIC_ALERT_ISSUE) == metric
                    })
                }),
        );
    }
    all.sort_by_key(|f| std::cmp::Reverse(f.fired_ms));
    all.truncate(limit);
    Ok(ApiResponse::ok(Value::Array(
        all.iter()
            .map(|f| fired_json(f, slugs.get(&f.project_id).copied().unwrap_or("")))
            .collect(),
    )))
}

#[cfg(test)]
mod tests {
    use http::{Method, StatusCode};
    use serde_json::json;

    use crate::api::testutil::Fixture;

    const RULES: &str = "/api/0/projects/default/default/rules/";
    const METRIC: &str = "/api/0/organizations/default/alert-rules/";

    fn frequency_rule() -> serde_json::Value {
        json!({
            "name": "Burst",
            "actionMatch": "all",
            "conditions": [{"id": "sentry.rules.conditions.event_frequency.EventFrequencyCondition",
                            "value": 5, "interval": "1m"}],
            "filters": [{"id": "sentry.rules.filters.level.LevelFilter", "match": "gte", "level": "error"}],
            "actions": [{"id": "osprey.actions.webhook", "url": "http://127.0.0.1:9/hook"}],
            "frequency": 30,
            "environment": ""
        })
    }

    #[test]
    fn issue_rules_crud_validate_and_scope() {
        let f = Fixture::new();
        let created = f.post(RULES, frequency_rule());
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
        let id = created.body["id"].as_str().unwrap().to_owned();
        assert_eq!(created.body["projects"], json!(["default"]));
        assert_eq!(created.body["environment"], serde_json::Value::Null);
        assert_eq!(created.body["conditions"][0]["interval"], "1m");
        let listed = f.get(RULES);
        assert_eq!(listed.body.as_array().unwrap().len(), 1);
        let mut changed = frequency_rule();
        changed["name"] = "Renamed".into();
        changed["frequency"] = "5".into();
        let put = f.put(&format!("{RULES}{id}/"), changed);
        assert_eq!(put.status, StatusCode::OK, "{}", put.body);
        assert_eq!(put.body["frequency"], 5);
        assert_eq!(f.get(&format!("{RULES}{id}/")).body["name"], "Renamed");

        // Validation: unknown condition id, bad interval, no actions, bad URL → 400 + detail.
        for (field, value) in [
            (
                "conditions",
                json!([{"id": "sentry.rules.conditions.nope"}]),
            ),
            (
                "conditions",
                json!([{"id": "sentry.rules.conditions.event_frequency.EventFrequencyCondition", "value": 1, "interval": "7m"}]),
            ),
            ("actions", json!([])),
            (
                "actions",
                json!([{"id": "osprey.actions.webhook", "url": "ftp://x"}]),
            ),
            ("frequency", json!("soon")),
        ] {
            let mut bad = frequency_rule();
            bad[field] = value;
            let r = f.post(RULES, bad);
            assert_eq!(r.status, StatusCode::BAD_REQUEST, "{field}: {}", r.body);
            assert!(r.body["detail"].as_str().is_some_and(|d| !d.is_empty()));
        }

        // Scopes: a read-only token lists but cannot create or delete.
        let reader = f.token(1, &["alerts:read"]);
        let r = f.call(Method::GET, RULES, Some(&reader), None);
        assert_eq!(r.status, StatusCode::OK);
        let r = f.call(Method::POST, RULES, Some(&reader), Some(frequency_rule()));
        assert_eq!(r.status, StatusCode::FORBIDDEN);
        let r = f.call(
            Method::DELETE,
            &format!("{RULES}{id}/"),
            Some(&reader),
            None,
        );
        assert_eq!(r.status, StatusCode::FORBIDDEN);
        let writer = f.token(1, &["alerts:write"]);
        let r = f.call(
            Method::DELETE,
            &format!("{RULES}{id}/"),
            Some(&writer),
            None,
        );
        assert_eq!(r.status, StatusCode::NO_CONTENT);
        assert_eq!(
            f.get(&format!("{RULES}{id}/")).status,
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            f.get("/api/0/projects/default/default/alert-history/").body,
            json!([])
        );
    }

    #[test]
    fn metric_rules_crud_and_validate() {
        let f = Fixture::new();
        let body = json!({
            "name": "Checkout apdex",
            "aggregate": "apdex()",
            "query": "event.type:transaction transaction:\"/checkout\"",
            "timeWindow": 5,
            "projects": ["default"],
            "triggers": [{"label": "critical", "alertThreshold": 0.8, "thresholdType": 1,
                          "actions": [{"id": "osprey.actions.webhook", "url": "http://127.0.0.1:9/m"}]}]
        });
        let created = f.post(METRIC, body.clone());
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
        assert_eq!(created.body["thresholdType"], 1);
        assert_eq!(created.body["triggers"][0]["alertThreshold"], 0.8);
        let id = created.body["id"].as_str().unwrap().to_owned();
        assert_eq!(f.get(METRIC).body.as_array().unwrap().len(), 1);
        let mut changed = body.clone();
        changed["aggregate"] = "failure_rate()".into();
        changed["query"] = "".into();
        let put = f.put(&format!("{METRIC}{id}/"), changed);
        assert_eq!(put.status, StatusCode::OK, "{}", put.body);
        assert_eq!(put.body["aggregate"], "failure_rate()");
        for (field, value) in [
            ("aggregate", json!("p42(foo)")),
            ("query", json!("browser:Chrome")),
            ("timeWindow", json!(0)),
            ("projects", json!(["nope"])),
            ("triggers", json!([])),
        ] {
            let mut bad = body.clone();
            bad[field] = value;
            let r = f.post(METRIC, bad);
            assert!(
                r.status == StatusCode::BAD_REQUEST || r.status == StatusCode::NOT_FOUND,
                "{field}: {} {}",
                r.status,
                r.body
            );
            assert!(r.body["detail"].is_string());
        }
        let r = f.call(
            Method::DELETE,
            &format!("{METRIC}{id}/"),
            Some(&f.admin),
            None,
        );
        assert_eq!(r.status, StatusCode::NO_CONTENT);
        assert_eq!(
            f.get(&format!("{METRIC}{id}/")).status,
            StatusCode::NOT_FOUND
        );
    }
}
