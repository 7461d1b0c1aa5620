//! Issues: list with Sentry's search syntax ([`crate::search`]), one issue by numeric or short
//! id, status changes (resolve, resolve in next release, unresolve, ignore with its modes),
//! assignment, notes and activity, tag values, bulk update, and the events of an issue.
//!
//! Issue records, counters and events come from the processor's tables through
//! [`crate::issues`] and [`crate::events`]; the assignee, ignore condition and activity are
//! osprey's workflow records ([`storage::workflow`]).

use std::sync::Arc;

use http::Method;
use serde_json::{json, Value};
use storage::records::{self, IssueRecord, IssueStatus, IssueSubstatus, Resolution};
use storage::workflow::{
    self, Activity, Assignee as StoredAssignee, IgnoreCondition, IssueWorkflow,
};
use storage::{cf, decode_i64, keys, now_ms, Organization};
use uuid::Uuid;

use super::util::{iso, parse_iso, Page};
use super::{body_str, not_allowed, ApiError, ApiResponse, ApiResult, Ctx};
use crate::search::{
    self, parse_issue_query, wildcard_match, Assignee, IsFilter, IssueSort, NumberField, Term,
    TimeField,
};

/// Most issue records one list scans.
const MAX_SCAN: usize = 100_000;
/// A `new` issue stays new this long (Sentry: 7 days).
const NEW_MS: u64 = 7 * 86_400_000;
/// Most issues one bulk update touches.
const MAX_BULK: usize = 1_000;

const READ: &[&str] = &["event:read", "project:read"];
const WRITE: &[&str] = &["event:write", "project:write"];

pub(super) fn route(
    ctx: &Ctx<'_>,
    method: &Method,
    segs: &[&str],
) -> ApiResult<Option<ApiResponse>> {
    let m = method;
    let resp = match segs {
        ["organizations", org, "issues"] => match *m {
            Method::GET => list(ctx, org, None)?,
            Method::PUT => bulk_update(ctx, org, None)?,
            _ => return Err(not_allowed(m)),
        },
        ["projects", org, project, "issues"] => {
            let (org, project) = ctx.project(org, project)?;
            match *m {
                Method::GET => list(ctx, &org.slug, Some(project.id))?,
                Method::PUT => bulk_update(ctx, &org.slug, Some(project.id))?,
                _ => return Err(not_allowed(m)),
            }
        }
        ["organizations", org, "issues", id] => issue_root(ctx, Some(org), id, m)?,
        ["issues", id] | ["groups", id] => issue_root(ctx, None, id, m)?,
        ["organizations", org, "issues", id, rest @ ..] => {
            sub_resource(ctx, Some(org), id, m, rest)?
        }
        ["issues", id, rest @ ..] | ["groups", id, rest @ ..] => {
            sub_resource(ctx, None, id, m, rest)?
        }
        ["projects", org, project, "events", event_id] => {
            let (org, project) = ctx.project(org, project)?;
            ctx.require_any(READ)?;
            only_get(m)?;
            let id = parse_event_id(event_id)?;
            let event = ctx
                .query
                .event(project.id, &id)?
                .ok_or_else(|| ApiError::NotFound("Event not found".into()))?;
            ApiResponse::ok(event_json(ctx, &org, event))
        }
        _ => return Ok(None),
    };
    Ok(Some(resp))
}

/// `GET|PUT /organizations/{org}/issues/{id}/`.
fn issue_root(ctx: &Ctx<'_>, org: Option<&str>, id: &str, m: &Method) -> ApiResult {
    let (org, rec) = find_issue(ctx, org, id)?;
    match *m {
        Method::GET => {
            ctx.require_any(READ)?;
            Ok(ApiResponse::ok(issue_detail(ctx, &org, &rec)?))
        }
        Method::PUT => {
            ctx.require_any(WRITE)?;
            let body = ctx.req.json_body()?;
            let rec = apply_update(ctx, &rec, &body)?;
            Ok(ApiResponse::ok(issue_detail(ctx, &org, &rec)?))
        }
        _ => Err(not_allowed(m)),
    }
}

fn only_get(m: &Method) -> ApiResult<()> {
    if m == Method::GET {
        Ok(())
    } else {
        Err(not_allowed(m))
    }
}

fn sub_resource(
    ctx: &Ctx<'_>,
    org: Option<&str>,
    id: &str,
    m: &Method,
    rest: &[&str],
) -> ApiResult {
    let (org, rec) = find_issue(ctx, org, id)?;
    match rest {
        ["events"] => {
            ctx.require_any(READ)?;
            only_get(m)?;
            issue_events(ctx, &org, &rec)
        }
        ["events", which] => {
            ctx.require_any(READ)?;
            only_get(m)?;
            let event = match *which {
                "latest" | "recommended" => ctx.query.latest_event(rec.id)?,
                "oldest" => ctx.query.oldest_event(rec.id)?,
                other => {
                    let id = parse_event_id(other)?;
                    ctx.query
                        .event(rec.project_id, &id)?
                        .filter(|e| e.group_id.as_deref() == Some(&rec.id.to_string()))
                }
            };
            let event = event.ok_or_else(|| ApiError::NotFound("Event not found".into()))?;
            Ok(ApiResponse::ok(event_json(ctx, &org, event)))
        }
        ["notes"] => match *m {
            Method::GET => {
                ctx.require_any(READ)?;
                let notes: Vec<Value> = workflow::activities(ctx.store, rec.id)?
                    .iter()
                    .filter(|a| a.kind == "note")
                    .map(activity_json)
                    .collect();
                let page = Page::from_request(ctx.req, 100)?;
                let (items, link) = page.apply(notes, ctx.req);
                Ok(ApiResponse::page(items, link))
            }
            Method::POST => {
                ctx.require_any(&["event:read", "event:write", "project:write"])?;
                let body = ctx.req.json_body()?;
                let text = body_str(&body, "text")?
                    .filter(|t| !t.trim().is_empty())
                    .ok_or_else(|| ApiError::BadRequest("text is required".into()))?;
                if text.len() > workflow::MAX_NOTE_BYTES {
                    return Err(ApiError::BadRequest(format!(
                        "text is longer than {} bytes",
                        workflow::MAX_NOTE_BYTES
                    )));
                }
                let a = workflow::add_activity(
                    ctx.store,
                    rec.id,
                    "note",
                    json!({"text": text}),
                    Some(&ctx.token.name),
                )?;
                Ok(ApiResponse::created(activity_json(&a)))
            }
            _ => Err(not_allowed(m)),
        },
        ["activities"] => {
            ctx.require_any(READ)?;
            only_get(m)?;
            let mut items: Vec<Value> = workflow::activities(ctx.store, rec.id)?
                .iter()
                .map(activity_json)
                .collect();
            items.push(json!({
                "id": format!("first-seen-{}", rec.id),
                "type": "first_seen",
                "data": {},
                "user": null,
                "dateCreated": iso(rec.first_seen_ms),
            }));
            Ok(ApiResponse::ok(json!({"activity": items})))
        }
        ["tags"] => {
            ctx.require_any(READ)?;
            only_get(m)?;
            let tags = ctx.query.issue_tags(rec.id, 10)?;
            Ok(ApiResponse::ok(serde_json::to_value(tags)?))
        }
        ["tags", key] => {
            ctx.require_any(READ)?;
            only_get(m)?;
            let details = ctx.query.tag_values(rec.id, key, 10)?;
            if details.total_values == 0 {
                return Err(ApiError::NotFound(format!(
                    "Tag {key:?} not found on this issue"
                )));
            }
            Ok(ApiResponse::ok(serde_json::to_value(details)?))
        }
        ["tags", key, "values"] => {
            ctx.require_any(READ)?;
            only_get(m)?;
            let details = ctx.query.tag_values(rec.id, key, 1_000)?;
            let values: Vec<Value> = details
                .top_values
                .iter()
                .map(serde_json::to_value)
                .collect::<Result<_, _>>()?;
            let page = Page::from_request(ctx.req, 100)?;
            let (items, link) = page.apply(values, ctx.req);
            Ok(ApiResponse::page(items, link))
        }
        _ => Err(ApiError::no_route()),
    }
}

fn parse_event_id(text: &str) -> ApiResult<Uuid> {
    Uuid::try_parse(text).map_err(|_| ApiError::NotFound("Event not found".into()))
}

/// The issue `id` (numeric or short id) if it belongs to the token's organization.
fn find_issue(
    ctx: &Ctx<'_>,
    org: Option<&str>,
    id: &str,
) -> ApiResult<(Arc<Organization>, IssueRecord)> {
    let org = match org {
        Some(slug) => ctx.org(slug)?,
        None => ctx
            .store
            .meta()
            .organization(ctx.token.org_id)
            .ok_or_else(ApiError::no_route)?,
    };
    let rec = ctx
        .query
        .issue_record(id, Some(org.id))?
        .ok_or_else(|| ApiError::NotFound("Issue not found".into()))?;
    let rec = refresh_ignore(ctx, rec)?;
    Ok((org, rec))
}

fn counter(ctx: &Ctx<'_>, kind: u8, issue_id: u64) -> ApiResult<u64> {
    let v = ctx
        .store
        .db()
        .get_pinned_cf(
            &ctx.store.cf(cf::COUNTERS),
            keys::issue_counter(kind, issue_id),
        )
        .map_err(storage::StorageError::from)?;
    Ok(v.map(|v| decode_i64(&v).max(0) as u64).unwrap_or(0))
}

fn counts(ctx: &Ctx<'_>, issue_id: u64) -> ApiResult<(u64, u64)> {
    Ok((
        counter(ctx, keys::counters::ISSUE_EVENTS, issue_id)?,
        counter(ctx, keys::counters::ISSUE_USERS, issue_id)?,
    ))
}

/// An ignored issue whose condition ran out is unresolved again (Sentry's "escalating"),
/// checked when the issue is read so it needs no timer.
fn refresh_ignore(ctx: &Ctx<'_>, rec: IssueRecord) -> ApiResult<IssueRecord> {
    if rec.status != IssueStatus::Ignored {
        return Ok(rec);
    }
    let state = workflow::workflow(ctx.store, rec.id)?;
    let Some(cond) = &state.ignore else {
        return Ok(rec);
    };
    let (count, users) = counts(ctx, rec.id)?;
    if !cond.expired(count, users, now_ms()) || ctx.store.ensure_writable().is_err() {
        return Ok(rec);
    }
    let updated = records::update_issue(ctx.store, rec.id, |r| {
        if r.status == IssueStatus::Ignored {
            r.status = IssueStatus::Unresolved;
            r.substatus = Some(IssueSubstatus::Escalating);
        }
    })?;
    workflow::put_workflow(
        ctx.store,
        rec.id,
        &IssueWorkflow {
            ignore: None,
            ..state.clone()
        },
    )?;
    workflow::add_activity(
        ctx.store,
        rec.id,
        "set_escalating",
        json!({"reason": cond.mode}),
        None,
    )?;
    Ok(updated.unwrap_or(rec))
}

fn effective_substatus(rec: &IssueRecord, now: u64) -> Option<IssueSubstatus> {
    match rec.substatus {
        Some(IssueSubstatus::New) if rec.first_seen_ms + NEW_MS < now => {
            Some(IssueSubstatus::Ongoing)
        }
        other => other,
    }
}

fn assignee_json(a: &StoredAssignee) -> Value {
    let mut v = json!({"type": a.kind, "id": a.id, "name": a.name});
    if let Some(email) = &a.email {
        v["email"] = Value::String(email.clone());
    }
    v
}

/// The issue in Sentry's shape, with the workflow fields filled in.
fn issue_json(ctx: &Ctx<'_>, rec: &IssueRecord, state: &IssueWorkflow) -> ApiResult<Value> {
    let mut issue = ctx.query.issue_from_record(rec)?;
    issue.absolutize(ctx.base_url());
    let mut v = serde_json::to_value(issue)?;
    // osprey's own field: the grouping hash, by which a query node merges the same issue
    // seen by several processor nodes (their issue ids are per node).
    v["ospreyHash"] = json!(rec.primary_hash);
    v["assignedTo"] = state
        .assigned_to
        .as_ref()
        .map(assignee_json)
        .unwrap_or(Value::Null);
    if rec.status == IssueStatus::Ignored {
        if let Some(cond) = &state.ignore {
            v["statusDetails"] = json!({
                "ignoreUntil": cond.until_ms.map(iso),
                "ignoreCount": cond.count,
                "ignoreWindow": cond.window_minutes,
                "ignoreUserCount": cond.user_count,
                "ignoreUserWindow": cond.user_window_minutes,
                "actor": null,
            });
        }
    }
    Ok(v)
}

fn issue_detail(ctx: &Ctx<'_>, _org: &Organization, rec: &IssueRecord) -> ApiResult<Value> {
    let state = workflow::workflow(ctx.store, rec.id)?;
    let mut v = issue_json(ctx, rec, &state)?;
    let activity = workflow::activities(ctx.store, rec.id)?;
    v["numComments"] = json!(activity.iter().filter(|a| a.kind == "note").count());
    v["activity"] = Value::Array(activity.iter().take(100).map(activity_json).collect());
    v["participants"] = json!([]);
    v["seenBy"] = json!([]);
    v["userReportCount"] = json!(0);
    Ok(v)
}

fn activity_json(a: &Activity) -> Value {
    json!({
        "id": a.id.to_string(),
        "type": a.kind,
        "data": a.data,
        "user": a.user.as_ref().map(|name| json!({"id": name, "name": name, "username": name})),
        "dateCreated": iso(a.date_ms),
    })
}

fn event_json(ctx: &Ctx<'_>, _org: &Organization, event: crate::events::Event) -> Value {
    let mut v = serde_json::to_value(event).unwrap_or(Value::Null);
    // The MCP server's schema wants `message` present and the `release` object nullable.
    if v.get("message").is_none() {
        v["message"] = Value::Null;
    }
    let _ = ctx;
    v
}

fn issue_events(ctx: &Ctx<'_>, org: &Organization, rec: &IssueRecord) -> ApiResult {
    let page = Page::from_request(ctx.req, 100)?;
    let full = matches!(ctx.req.param("full"), Some("true" | "1"));
    let cursor = format!("0:{}:0", page.offset);
    let events = ctx
        .query
        .issue_events(rec.id, page.per_page, Some(&cursor), full)?;
    let has_next = events.next_cursor.is_some();
    let items: Vec<Value> = events
        .events
        .into_iter()
        .map(|e| event_json(ctx, org, e))
        .collect();
    Ok(ApiResponse::page(items, page.link(ctx.req, has_next)))
}

/// One issue with what filtering and sorting need.
struct Row {
    rec: IssueRecord,
    state: IssueWorkflow,
    count: u64,
    users: u64,
    short_id: String,
}

fn tag_has_value(ctx: &Ctx<'_>, issue_id: u64, key: &str, pattern: &str) -> ApiResult<bool> {
    if !pattern.contains('*') {
        let v = ctx
            .store
            .db()
            .get_pinned_cf(
                &ctx.store.cf(cf::COUNTERS),
                keys::issue_tag(issue_id, key, pattern),
            )
            .map_err(storage::StorageError::from)?;
        return Ok(v.is_some_and(|v| decode_i64(&v) > 0));
    }
    let details = ctx.query.tag_values(issue_id, key, 1_000)?;
    Ok(details
        .top_values
        .iter()
        .any(|t| t.count > 0 && wildcard_match(pattern, &t.value)))
}

fn tag_present(ctx: &Ctx<'_>, issue_id: u64, key: &str) -> ApiResult<bool> {
    Ok(ctx.query.tag_values(issue_id, key, 1)?.total_values > 0)
}

fn assignee_matches(ctx: &Ctx<'_>, state: &IssueWorkflow, to: &Assignee) -> bool {
    let current = state.assigned_to.as_ref();
    match to {
        Assignee::Nobody => current.is_none(),
        Assignee::Me => current.is_some_and(|a| {
            a.kind == "user" && (a.id == ctx.token.id.to_string() || a.name == ctx.token.name)
        }),
        Assignee::User(u) => current.is_some_and(|a| {
            a.kind == "user"
                && (a.id.eq_ignore_ascii_case(u)
                    || a.name.eq_ignore_ascii_case(u)
                    || a.email
                        .as_deref()
                        .is_some_and(|e| e.eq_ignore_ascii_case(u)))
        }),
        Assignee::Team(t) => current.is_some_and(|a| {
            a.kind == "team" && (a.id.eq_ignore_ascii_case(t) || a.name.eq_ignore_ascii_case(t))
        }),
    }
}

fn term_matches(
    ctx: &Ctx<'_>,
    row: &Row,
    term: &Term,
    event_issues: &[u64],
    now: u64,
) -> ApiResult<bool> {
    let rec = &row.rec;
    Ok(match term {
        Term::Is { negated, value } => {
            let sub = effective_substatus(rec, now);
            let hit = match value {
                IsFilter::Unresolved => rec.status == IssueStatus::Unresolved,
                IsFilter::Resolved => rec.status == IssueStatus::Resolved,
                IsFilter::Ignored => rec.status == IssueStatus::Ignored,
                IsFilter::Regressed => sub == Some(IssueSubstatus::Regressed),
                IsFilter::New => sub == Some(IssueSubstatus::New),
                IsFilter::Ongoing => sub == Some(IssueSubstatus::Ongoing),
                IsFilter::Escalating => sub == Some(IssueSubstatus::Escalating),
                IsFilter::Assigned => row.state.assigned_to.is_some(),
                IsFilter::Unassigned => row.state.assigned_to.is_none(),
                IsFilter::ForReview => {
                    rec.status == IssueStatus::Unresolved
                        && matches!(sub, Some(IssueSubstatus::New | IssueSubstatus::Regressed))
                }
            };
            hit != *negated
        }
        Term::Field {
            negated,
            key,
            values,
        } => {
            let mut hit = false;
            for pattern in values {
                let one = match key.as_str() {
                    "level" => wildcard_match(pattern, &rec.level),
                    "release" | "release.version" => {
                        rec.first_release
                            .as_deref()
                            .is_some_and(|r| wildcard_match(pattern, r))
                            || rec
                                .last_release
                                .as_deref()
                                .is_some_and(|r| wildcard_match(pattern, r))
                            || tag_has_value(ctx, rec.id, "release", pattern)?
                    }
                    "firstRelease" | "first_release" => rec
                        .first_release
                        .as_deref()
                        .is_some_and(|r| wildcard_match(pattern, r)),
                    "title" | "message" => contains_or_wild(&rec.title, pattern),
                    "culprit" | "transaction" if !rec.culprit.is_empty() || key == "culprit" => {
                        contains_or_wild(&rec.culprit, pattern)
                    }
                    "platform" => wildcard_match(pattern, &rec.platform),
                    "error.type" | "type" => rec
                        .metadata
                        .exception_type
                        .as_deref()
                        .is_some_and(|t| wildcard_match(pattern, t)),
                    "error.value" => rec
                        .metadata
                        .value
                        .as_deref()
                        .is_some_and(|t| contains_or_wild(t, pattern)),
                    "error.unhandled" => {
                        (pattern == "true" || pattern == "1") == rec.metadata.unhandled
                    }
                    "issue" | "issue.id" => {
                        pattern == &rec.id.to_string() || row.short_id.eq_ignore_ascii_case(pattern)
                    }
                    "project" => ctx
                        .store
                        .meta()
                        .project(rec.project_id)
                        .is_some_and(|p| wildcard_match(pattern, &p.slug)),
                    _ => tag_has_value(ctx, rec.id, key, pattern)?,
                };
                if one {
                    hit = true;
                    break;
                }
            }
            hit != *negated
        }
        Term::Time { field, op, at_ms } => {
            let t = match field {
                TimeField::FirstSeen => rec.first_seen_ms,
                TimeField::LastSeen | TimeField::Timestamp => rec.last_seen_ms,
            };
            op.holds(t, *at_ms)
        }
        Term::Number { field, op, value } => {
            let n = match field {
                NumberField::TimesSeen => row.count,
                NumberField::UserCount => row.users,
            };
            op.holds(n, *value)
        }
        Term::Assigned { negated, to } => assignee_matches(ctx, &row.state, to) != *negated,
        Term::Has { negated, key } => {
            let hit = match key.as_str() {
                "release" => rec.first_release.is_some() || rec.last_release.is_some(),
                "level" => !rec.level.is_empty(),
                "assigned" | "assignee" => row.state.assigned_to.is_some(),
                other => tag_present(ctx, rec.id, other)?,
            };
            hit != *negated
        }
        Term::EventId(_) => event_issues.contains(&rec.id),
        Term::Text { negated, text } => {
            let hit = contains_ci(&rec.title, text)
                || contains_ci(&rec.culprit, text)
                || row.short_id.eq_ignore_ascii_case(text)
                || rec.id.to_string() == *text;
            hit != *negated
        }
    })
}

fn contains_ci(hay: &str, needle: &str) -> bool {
    hay.to_lowercase().contains(&needle.to_lowercase())
}

fn contains_or_wild(hay: &str, pattern: &str) -> bool {
    if pattern.contains('*') {
        wildcard_match(pattern, hay)
    } else {
        contains_ci(hay, pattern)
    }
}

/// Projects the request narrows to (`project=ID`, repeated; `-1` = all), within the org.
fn project_scope(ctx: &Ctx<'_>, org: &Organization, fixed: Option<u64>) -> ApiResult<Vec<u64>> {
    let all: Vec<u64> = ctx
        .store
        .meta()
        .projects_of_org(org.id)
        .iter()
        .map(|p| p.id)
        .collect();
    if let Some(p) = fixed {
        return Ok(vec![p]);
    }
    let mut wanted = Vec::new();
    for p in ctx.req.params("project") {
        if p == "-1" || p.is_empty() {
            return Ok(all);
        }
        let project = ctx.store.meta().project_by_slug(org.id, p).ok_or_else(|| {
            ApiError::BadRequest(format!("project {p} is not in this organization"))
        })?;
        wanted.push(project.id);
    }
    Ok(if wanted.is_empty() { all } else { wanted })
}

/// The time window of `statsPeriod` or `start`/`end` (none = all time).
fn time_window(ctx: &Ctx<'_>, now: u64) -> ApiResult<(Option<u64>, Option<u64>)> {
    if let Some(period) = ctx.req.param("statsPeriod").filter(|p| !p.is_empty()) {
        let ms = search::parse_duration(period)
            .ok_or_else(|| ApiError::BadRequest(format!("invalid statsPeriod {period:?}")))?;
        return Ok((Some(now.saturating_sub(ms)), None));
    }
    let bound = |name: &str| -> ApiResult<Option<u64>> {
        match ctx.req.param(name).filter(|p| !p.is_empty()) {
            None => Ok(None),
            Some(t) => parse_iso(t)
                .map(Some)
                .ok_or_else(|| ApiError::BadRequest(format!("invalid {name} {t:?}"))),
        }
    };
    Ok((bound("start")?, bound("end")?))
}

/// Every issue of the request's projects that matches its query, sorted.
fn matching_rows(
    ctx: &Ctx<'_>,
    org: &Organization,
    fixed_project: Option<u64>,
    default_query: &str,
) -> ApiResult<Vec<Row>> {
    let now = now_ms();
    let raw_query = ctx.req.param("query").unwrap_or(default_query);
    let query =
        parse_issue_query(raw_query, now).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let sort = IssueSort::parse(ctx.req.param("sort").unwrap_or("date"))
        .map_err(|e| ApiError::BadRequest(e.message))?;
    let projects = project_scope(ctx, org, fixed_project)?;
    let (since, until) = time_window(ctx, now)?;
    let environments: Vec<&str> = ctx
        .req
        .params("environment")
        .into_iter()
        .filter(|e| !e.is_empty())
        .collect();

    // Event ids in the query name issues through the stored events.
    let mut event_issues = Vec::new();
    for term in &query.terms {
        if let Term::EventId(id) = term {
            if let Ok(uuid) = Uuid::try_parse(id) {
                for p in &projects {
                    if let Some(ev) = records::load_event(ctx.store, *p, &uuid)? {
                        event_issues.extend(ev.issue_id);
                    }
                }
            }
        }
    }

    let store = ctx.store;
    let handle = store.cf(cf::ISSUES);
    let mut rows = Vec::new();
    let prefix = [keys::issues::ISSUE];
    for item in store
        .db()
        .prefix_iterator_cf(&handle, prefix)
        .take(MAX_SCAN)
    {
        let (key, value) = item.map_err(storage::StorageError::from)?;
        if key.first() != Some(&keys::issues::ISSUE) {
            break;
        }
        let rec = IssueRecord::from_bytes(&value)?;
        if !projects.contains(&rec.project_id) {
            continue;
        }
        if since.is_some_and(|s| rec.last_seen_ms < s)
            || until.is_some_and(|u| rec.first_seen_ms > u)
        {
            continue;
        }
        let rec = refresh_ignore(ctx, rec)?;
        let (count, users) = counts(ctx, rec.id)?;
        let slug = store
            .meta()
            .project(rec.project_id)
            .map(|p| p.slug.clone())
            .unwrap_or_default();
        let row = Row {
            short_id: records::qualified_short_id(&slug, rec.short_id),
            state: workflow::workflow(store, rec.id)?,
            rec,
            count,
            users,
        };
        let mut ok = true;
        for env in &environments {
            ok = false;
            if tag_has_value(ctx, row.rec.id, "environment", env)? {
                ok = true;
                break;
            }
        }
        for term in &query.terms {
            if !ok {
                break;
            }
            ok = term_matches(ctx, &row, term, &event_issues, now)?;
        }
        if ok {
            rows.push(row);
        }
    }
    match sort {
        IssueSort::Date | IssueSort::Recommended => {
            rows.sort_by_key(|r| std::cmp::Reverse((r.rec.last_seen_ms, r.rec.id)))
        }
        IssueSort::New => rows.sort_by_key(|r| std::cmp::Reverse((r.rec.first_seen_ms, r.rec.id))),
        IssueSort::Freq => {
            rows.sort_by_key(|r| std::cmp::Reverse((r.count, r.rec.last_seen_ms, r.rec.id)))
        }
        IssueSort::User => rows.sort_by_key(|r| std::cmp::Reverse((r.users, r.count, r.rec.id))),
    }
    Ok(rows)
}

/// `GET /organizations/{org}/issues/` and `/projects/{org}/{project}/issues/`.
fn list(ctx: &Ctx<'_>, org: &str, project: Option<u64>) -> ApiResult {
    let org = ctx.org(org)?;
    ctx.require_any(READ)?;
    let rows = matching_rows(ctx, &org, project, "is:unresolved")?;
    let page = Page::from_request(ctx.req, 25)?;
    let (rows, link) = page.apply(rows, ctx.req);
    let items = rows
        .iter()
        .map(|r| issue_json(ctx, &r.rec, &r.state))
        .collect::<ApiResult<Vec<_>>>()?;
    Ok(ApiResponse::page(items, link))
}

/// `PUT /projects/{org}/{project}/issues/?id=1&id=2` (or `?query=…`): the same change to
/// several issues; answers the change, as Sentry does.
fn bulk_update(ctx: &Ctx<'_>, org: &str, project: Option<u64>) -> ApiResult {
    let org = ctx.org(org)?;
    ctx.require_any(WRITE)?;
    let body = ctx.req.json_body()?;
    let ids = ctx.req.params("id");
    let targets: Vec<IssueRecord> = if ids.is_empty() {
        // Sentry updates what the query (default: unresolved) selects.
        matching_rows(ctx, &org, project, "is:unresolved")?
            .into_iter()
            .take(MAX_BULK)
            .map(|r| r.rec)
            .collect()
    } else {
        if ids.len() > MAX_BULK {
            return Err(ApiError::BadRequest(format!(
                "at most {MAX_BULK} ids per update"
            )));
        }
        let mut out = Vec::new();
        for id in ids {
            let (_, rec) = find_issue(ctx, Some(&org.slug), id)?;
            if project.is_some_and(|p| p != rec.project_id) {
                return Err(ApiError::NotFound("Issue not found".into()));
            }
            out.push(rec);
        }
        out
    };
    if targets.is_empty() {
        return Ok(ApiResponse::no_content());
    }
    let mut last = None;
    for rec in &targets {
        last = Some(apply_update(ctx, rec, &body)?);
    }
    let mut delta = json!({});
    if let Some(rec) = last {
        let state = workflow::workflow(ctx.store, rec.id)?;
        let full = issue_json(ctx, &rec, &state)?;
        for key in ["status", "substatus", "statusDetails", "assignedTo"] {
            if body.get(key).is_some()
                || key == "statusDetails" && body.get("status").is_some()
                || key == "substatus" && body.get("status").is_some()
            {
                delta[key] = full[key].clone();
            }
        }
    }
    Ok(ApiResponse::ok(delta))
}

/// Minutes/counts given at the top level or inside `statusDetails`.
fn detail_u64(body: &Value, key: &str) -> ApiResult<Option<u64>> {
    let v = body.get(key).filter(|v| !v.is_null()).or_else(|| {
        body.get("statusDetails")
            .and_then(|d| d.get(key))
            .filter(|v| !v.is_null())
    });
    match v {
        None => Ok(None),
        Some(v) => v
            .as_u64()
            .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
            .filter(|n| *n > 0)
            .map(Some)
            .ok_or_else(|| ApiError::BadRequest(format!("{key} must be a positive whole number"))),
    }
}

/// The newest release of a project, for "resolved in next release".
fn latest_release(ctx: &Ctx<'_>, rec: &IssueRecord) -> ApiResult<Option<String>> {
    let Some(project) = ctx.store.meta().project(rec.project_id) else {
        return Ok(rec.last_release.clone());
    };
    let newest = storage::releases::releases(ctx.store, project.org_id, 1_000)?
        .into_iter()
        .find(|r| r.projects.contains(&rec.project_id))
        .map(|r| r.version);
    Ok(newest.or_else(|| rec.last_release.clone()))
}

fn parse_assignee(ctx: &Ctx<'_>, text: &str) -> ApiResult<Option<StoredAssignee>> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    let (kind, id) = if let Some(t) = text
        .strip_prefix("team:")
        .or_else(|| text.strip_prefix('#'))
    {
        ("team", t)
    } else if let Some(u) = text.strip_prefix("user:") {
        ("user", u)
    } else if text == "me" {
        ("user", "")
    } else {
        ("user", text)
    };
    if kind == "user" && id.is_empty() {
        return Ok(Some(StoredAssignee {
            kind: "user".into(),
            id: ctx.token.id.to_string(),
            name: ctx.token.name.clone(),
            email: None,
        }));
    }
    if id.is_empty() || id.len() > 128 {
        return Err(ApiError::BadRequest(format!("invalid assignee {text:?}")));
    }
    Ok(Some(StoredAssignee {
        kind: kind.into(),
        id: id.to_owned(),
        name: id.to_owned(),
        email: id.contains('@').then(|| id.to_owned()),
    }))
}

/// Applies Sentry's issue update body to one issue: status (with resolution or ignore
/// condition), assignment; every change goes to the activity log. Returns the new record.
fn apply_update(ctx: &Ctx<'_>, rec: &IssueRecord, body: &Value) -> ApiResult<IssueRecord> {
    let user = Some(ctx.token.name.as_str());
    let mut state = workflow::workflow(ctx.store, rec.id)?;
    let mut record = rec.clone();
    let now = now_ms();
    if let Some(status) = body_str(body, "status")? {
        let details = body.get("statusDetails").cloned().unwrap_or(json!({}));
        let (new_status, substatus, resolution, ignore, activity) = match status {
            "resolved" | "resolvedInNextRelease" => {
                let in_next = status == "resolvedInNextRelease"
                    || details.get("inNextRelease").and_then(Value::as_bool) == Some(true);
                let in_release = details
                    .get("inRelease")
                    .and_then(Value::as_str)
                    .map(str::to_owned);
                let next_only = in_next && in_release.is_none();
                let release = match (&in_release, in_next) {
                    (Some(r), _) => Some(r.clone()),
                    (None, true) => latest_release(ctx, rec)?,
                    (None, false) => None,
                };
                let kind = if in_next || in_release.is_some() {
                    "set_resolved_in_release"
                } else {
                    "set_resolved"
                };
                (
                    IssueStatus::Resolved,
                    None,
                    Some(Resolution {
                        resolved_ms: now,
                        release: release.clone(),
                        in_next_release: next_only,
                    }),
                    None,
                    (
                        kind,
                        json!({"version": release, "inNextRelease": next_only}),
                    ),
                )
            }
            "unresolved" => (
                IssueStatus::Unresolved,
                Some(IssueSubstatus::Ongoing),
                None,
                None,
                ("set_unresolved", json!({})),
            ),
            "ignored" | "archived" => {
                let minutes = detail_u64(body, "ignoreDuration")?;
                let count = detail_u64(body, "ignoreCount")?;
                let window = detail_u64(body, "ignoreWindow")?;
                let user_count = detail_u64(body, "ignoreUserCount")?;
                let user_window = detail_u64(body, "ignoreUserWindow")?;
                let requested_sub = body_str(body, "substatus")?;
                let (count_now, users_now) = counts(ctx, rec.id)?;
                let (mode, sub) = if minutes.is_some() {
                    ("forDuration", IssueSubstatus::ArchivedUntilConditionMet)
                } else if count.is_some() {
                    (
                        "untilOccurrenceCount",
                        IssueSubstatus::ArchivedUntilConditionMet,
                    )
                } else if user_count.is_some() {
                    ("untilUserCount", IssueSubstatus::ArchivedUntilConditionMet)
                } else if requested_sub == Some("archived_until_escalating") {
                    ("untilEscalating", IssueSubstatus::ArchivedUntilEscalating)
                } else {
                    ("forever", IssueSubstatus::ArchivedForever)
                };
                let cond = IgnoreCondition {
                    mode: mode.into(),
                    until_ms: minutes.map(|m| now.saturating_add(m.saturating_mul(60_000))),
                    count,
                    window_minutes: window,
                    user_count,
                    user_window_minutes: user_window,
                    baseline_count: count_now,
                    baseline_users: users_now,
                    since_ms: now,
                };
                let data = json!({
                    "ignoreDuration": minutes,
                    "ignoreCount": count,
                    "ignoreWindow": window,
                    "ignoreUserCount": user_count,
                    "ignoreUserWindow": user_window,
                    "mode": mode,
                });
                (
                    IssueStatus::Ignored,
                    Some(sub),
                    None,
                    Some(cond),
                    ("set_ignored", data),
                )
            }
            other => {
                return Err(ApiError::BadRequest(format!(
                    "unknown status {other:?}; \
                     use resolved, resolvedInNextRelease, unresolved or ignored"
                )))
            }
        };
        let updated = records::update_issue(ctx.store, rec.id, |r| {
            r.status = new_status;
            r.substatus = substatus;
            r.resolution = resolution.clone();
        })?
        .ok_or_else(|| ApiError::NotFound("Issue not found".into()))?;
        record = updated;
        state.ignore = ignore;
        workflow::put_workflow(ctx.store, rec.id, &state)?;
        workflow::add_activity(ctx.store, rec.id, activity.0, activity.1, user)?;
    }
    if let Some(assigned) = body.get("assignedTo") {
        let text = match assigned {
            Value::Null => "",
            Value::String(s) => s.as_str(),
            _ => {
                return Err(ApiError::BadRequest(
                    "assignedTo must be a string like user:ID or team:SLUG".into(),
                ))
            }
        };
        let new = parse_assignee(ctx, text)?;
        if new != state.assigned_to {
            let activity = match &new {
                Some(a) => (
                    "assigned",
                    json!({"assignee": a.id, "assigneeType": a.kind}),
                ),
                None => ("unassigned", json!({})),
            };
            state.assigned_to = new;
            workflow::put_workflow(ctx.store, rec.id, &state)?;
            workflow::add_activity(ctx.store, rec.id, activity.0, activity.1, user)?;
        }
    }
    Ok(record)
}

#[cfg(test)]
mod tests;
