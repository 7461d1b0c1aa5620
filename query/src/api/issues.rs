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
use storage::{cf, decode_i64, keys, now_ms, Organization, Store};
use uuid::Uuid;

use super::util::{iso, parse_iso, Page};
use super::{body_str, not_allowed, ApiError, ApiResponse, ApiResult, Ctx};
use crate::issues::{sort_issue_rows, IssueFilter, IssueRow};
use crate::search::{self, parse_issue_query, IssueSort};

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
        ["projects", org, project, "events"] => {
            only_get(m)?;
            project_events(ctx, org, project)?
        }
        ["organizations", org, "shortids", short_id] => {
            only_get(m)?;
            resolve_short_id(ctx, org, short_id)?
        }
        ["organizations", org, "eventids", event_id] => {
            only_get(m)?;
            resolve_event_id(ctx, org, event_id)?
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
        ["projects", org, project, "events", event_id, "attachments"] => {
            let (_, project) = ctx.project(org, project)?;
            ctx.require_any(READ)?;
            only_get(m)?;
            let id = parse_event_id(event_id)?;
            let list = storage::attachments::list(ctx.store, project.id, &id)?;
            ApiResponse::ok(Value::Array(
                list.iter().map(|a| attachment_json(&id, a)).collect(),
            ))
        }
        ["projects", org, project, "events", event_id, "attachments", attachment_id] => {
            let (_, project) = ctx.project(org, project)?;
            ctx.require_any(READ)?;
            only_get(m)?;
            let id = parse_event_id(event_id)?;
            let attachment_id: u64 = attachment_id
                .parse()
                .map_err(|_| ApiError::NotFound("Attachment not found".into()))?;
            let (meta, bytes) =
                storage::attachments::get(ctx.store, project.id, &id, attachment_id)?
                    .ok_or_else(|| ApiError::NotFound("Attachment not found".into()))?;
            if ctx.req.param("download").is_some() {
                ApiResponse::file(super::FileBody {
                    content_type: meta
                        .content_type
                        .clone()
                        .unwrap_or_else(|| "application/octet-stream".to_owned()),
                    name: meta.name.clone(),
                    bytes: bytes.into(),
                })
            } else {
                ApiResponse::ok(attachment_json(&id, &meta))
            }
        }
        _ => return Ok(None),
    };
    Ok(Some(resp))
}

/// Sentry's `EventAttachment` shape.
fn attachment_json(event_id: &Uuid, a: &storage::attachments::AttachmentMeta) -> Value {
    let mimetype = a
        .content_type
        .clone()
        .unwrap_or_else(|| "application/octet-stream".to_owned());
    json!({
        "id": a.id.to_string(),
        "event_id": event_id.simple().to_string(),
        "type": a.attachment_type,
        "name": a.name,
        "mimetype": mimetype,
        "headers": {"Content-Type": mimetype},
        "size": a.size,
        "dateCreated": iso(a.received_ms),
    })
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
            let rec = apply_issue_update(ctx.store, &rec, &body, &Actor::of_token(ctx.token))?;
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
pub(super) fn find_issue(
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
    let rec = ctx.query.refresh_ignore(rec)?;
    Ok((org, rec))
}

fn counter(store: &Store, kind: u8, issue_id: u64) -> ApiResult<u64> {
    let v = store
        .db()
        .get_pinned_cf(&store.cf(cf::COUNTERS), keys::issue_counter(kind, issue_id))
        .map_err(storage::StorageError::from)?;
    Ok(v.map(|v| decode_i64(&v).max(0) as u64).unwrap_or(0))
}

fn counts(store: &Store, issue_id: u64) -> ApiResult<(u64, u64)> {
    Ok((
        counter(store, keys::counters::ISSUE_EVENTS, issue_id)?,
        counter(store, keys::counters::ISSUE_USERS, issue_id)?,
    ))
}

fn assignee_json(a: &StoredAssignee) -> Value {
    let mut v = json!({"type": a.kind, "id": a.id, "name": a.name});
    if let Some(email) = &a.email {
        v["email"] = Value::String(email.clone());
    }
    v
}

/// The issue in Sentry's shape, with the workflow fields filled in.
pub(super) fn issue_json(
    ctx: &Ctx<'_>,
    rec: &IssueRecord,
    state: &IssueWorkflow,
) -> ApiResult<Value> {
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
    if !state.tags.is_empty() {
        v["labels"] = json!(state.tags);
    }
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
    v["userReportCount"] = json!(ctx.query.issue_feedback_count(rec)?);
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
    let events = match issue_event_filter(ctx)? {
        None => {
            let cursor = format!("0:{}:0", page.offset);
            ctx.query
                .issue_events(rec.id, page.per_page, Some(&cursor), full)?
        }
        Some(filter) => {
            ctx.query
                .issue_events_matching(rec.id, &filter, page.offset, page.per_page, full)?
        }
    };
    let has_next = events.next_cursor.is_some();
    let items: Vec<Value> = events
        .events
        .into_iter()
        .map(|e| event_json(ctx, org, e))
        .collect();
    Ok(ApiResponse::page(items, page.link(ctx.req, has_next)))
}

/// `GET /organizations/{org}/shortids/{short_id}/`: which issue a short id (`SHOP-12`) is.
fn resolve_short_id(ctx: &Ctx<'_>, org: &str, short_id: &str) -> ApiResult {
    ctx.require_any(READ)?;
    let (org, rec) = find_issue(ctx, Some(org), short_id)?;
    let state = workflow::workflow(ctx.store, rec.id)?;
    let group = issue_json(ctx, &rec, &state)?;
    Ok(ApiResponse::ok(json!({
        "organizationSlug": org.slug,
        "projectSlug": group["project"]["slug"],
        "groupId": rec.id.to_string(),
        "shortId": group["shortId"],
        "group": group,
    })))
}

/// `GET /organizations/{org}/eventids/{event_id}/`: which project and issue an event id is in.
fn resolve_event_id(ctx: &Ctx<'_>, org: &str, event_id: &str) -> ApiResult {
    let org = ctx.org(org)?;
    ctx.require_any(READ)?;
    let id = parse_event_id(event_id)?;
    let projects: Vec<u64> = ctx
        .store
        .meta()
        .project_ids_of_org(org.id)
        .into_iter()
        .collect();
    let event = ctx
        .query
        .find_event(&projects, &id)?
        .ok_or_else(|| ApiError::NotFound("Event not found".into()))?;
    let project = event
        .project_id
        .parse::<u64>()
        .ok()
        .and_then(|p| ctx.store.meta().project(p))
        .ok_or_else(|| ApiError::NotFound("Event not found".into()))?;
    Ok(ApiResponse::ok(json!({
        "organizationSlug": org.slug,
        "projectSlug": project.slug,
        "groupId": event.group_id,
        "eventId": event.event_id,
        "event": event_json(ctx, &org, event),
    })))
}

/// The narrowing of an issue's event list the request asks for (`query`, `environment`,
/// `statsPeriod` or `start`/`end`, `sort=timestamp|-timestamp`), `None` when it asks none.
fn issue_event_filter(ctx: &Ctx<'_>) -> ApiResult<Option<crate::events::EventFilter>> {
    let req = ctx.req;
    let given = |name: &str| req.param(name).is_some_and(|v| !v.trim().is_empty());
    if ![
        "query",
        "environment",
        "statsPeriod",
        "start",
        "end",
        "sort",
    ]
    .iter()
    .any(|p| given(p))
    {
        return Ok(None);
    }
    let now = now_ms();
    let (start_ms, end_ms) = match req.param("statsPeriod").filter(|p| !p.is_empty()) {
        Some(p) => {
            let ms = search::parse_duration(p)
                .ok_or_else(|| ApiError::BadRequest(format!("invalid statsPeriod {p:?}")))?;
            (now.saturating_sub(ms), now)
        }
        None => {
            let instant = |name: &str| -> ApiResult<Option<u64>> {
                match req.param(name).filter(|v| !v.is_empty()) {
                    None => Ok(None),
                    Some(v) => parse_iso(v)
                        .map(Some)
                        .ok_or_else(|| ApiError::BadRequest(format!("invalid {name} {v:?}"))),
                }
            };
            (
                instant("start")?.unwrap_or(0),
                instant("end")?.unwrap_or(u64::MAX),
            )
        }
    };
    let oldest_first = match req.param("sort").unwrap_or("") {
        "" | "-timestamp" | "date" | "-date" => false,
        "timestamp" => true,
        other => {
            return Err(ApiError::BadRequest(format!(
                "invalid sort {other:?}: use timestamp or -timestamp"
            )))
        }
    };
    let query = match req.param("query").map(str::trim).filter(|q| !q.is_empty()) {
        None => None,
        Some(q) => Some(
            search::parse_issue_query(q, now).map_err(|e| ApiError::BadRequest(e.to_string()))?,
        ),
    };
    Ok(Some(crate::events::EventFilter {
        start_ms,
        end_ms,
        environments: req
            .params("environment")
            .into_iter()
            .filter(|e| !e.is_empty())
            .map(str::to_owned)
            .collect(),
        query,
        oldest_first,
    }))
}

/// `GET /projects/{org}/{project}/events/`: the project's error events, newest first
/// (`sentry-cli events list`); `full=true` includes the entries.
fn project_events(ctx: &Ctx<'_>, org: &str, project: &str) -> ApiResult {
    let (org, project) = ctx.project(org, project)?;
    ctx.require_any(READ)?;
    let page = Page::from_request(ctx.req, 100)?;
    let full = matches!(ctx.req.param("full"), Some("true" | "1"));
    let events = ctx
        .query
        .project_error_events(project.id, page.offset, page.per_page, full)?;
    let has_next = events.next_cursor.is_some();
    let items: Vec<Value> = events
        .events
        .into_iter()
        .map(|e| event_json(ctx, &org, e))
        .collect();
    Ok(ApiResponse::page(items, page.link(ctx.req, has_next)))
}

/// Projects the request narrows to (`project=ID`, repeated; `-1` = all), within the org.
fn project_scope(ctx: &Ctx<'_>, org: &Organization, fixed: Option<u64>) -> ApiResult<Vec<u64>> {
    let all: Vec<u64> = ctx
        .store
        .meta()
        .project_ids_of_org(org.id)
        .into_iter()
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

/// Every issue of the request's projects that matches its query, sorted (the matching is
/// [`crate::QueryService::matching_issues`], shared with the CLI and MCP).
fn matching_rows(
    ctx: &Ctx<'_>,
    org: &Organization,
    fixed_project: Option<u64>,
    default_query: &str,
) -> ApiResult<Vec<IssueRow>> {
    let now = now_ms();
    let raw_query = ctx.req.param("query").unwrap_or(default_query);
    let query =
        parse_issue_query(raw_query, now).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let sort = IssueSort::parse(ctx.req.param("sort").unwrap_or("date"))
        .map_err(|e| ApiError::BadRequest(e.message))?;
    let projects = project_scope(ctx, org, fixed_project)?;
    let (since, until) = time_window(ctx, now)?;
    let environments: Vec<String> = ctx
        .req
        .params("environment")
        .into_iter()
        .filter(|e| !e.is_empty())
        .map(str::to_owned)
        .collect();
    let me = [ctx.token.id.to_string(), ctx.token.name.clone()];
    let mut rows = ctx.query.matching_issues(&IssueFilter {
        project_ids: &projects,
        query: &query,
        seen_since_ms: since,
        seen_until_ms: until,
        environments: &environments,
        me: &me,
        now_ms: now,
    })?;
    sort_issue_rows(&mut rows, sort);
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
        last = Some(apply_issue_update(
            ctx.store,
            rec,
            &body,
            &Actor::of_token(ctx.token),
        )?);
    }
    let mut delta = json!({});
    if let Some(rec) = last {
        let state = workflow::workflow(ctx.store, rec.id)?;
        let full = issue_json(ctx, &rec, &state)?;
        for key in [
            "status",
            "substatus",
            "statusDetails",
            "assignedTo",
            "labels",
        ] {
            if body.get(key).is_some()
                || key == "statusDetails" && body.get("status").is_some()
                || key == "substatus" && body.get("status").is_some()
                || key == "labels" && body.get("tags").is_some()
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
fn latest_release(store: &Store, rec: &IssueRecord) -> ApiResult<Option<String>> {
    let Some(project) = store.meta().project(rec.project_id) else {
        return Ok(rec.last_release.clone());
    };
    let newest = storage::releases::releases(store, project.org_id, 1_000)?
        .into_iter()
        .find(|r| r.projects.contains(&rec.project_id))
        .map(|r| r.version);
    Ok(newest.or_else(|| rec.last_release.clone()))
}

fn parse_assignee(actor: &Actor, text: &str) -> ApiResult<Option<StoredAssignee>> {
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
            id: actor.id.clone(),
            name: actor.name.clone(),
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

/// An issue's labels.
type Labels = std::collections::BTreeMap<String, String>;

/// The labels after applying `update` (`{key: value}`, null removes a key) to `current`,
/// with the changes for the activity log; `None` when nothing changes.
fn labels_update(
    current: &Labels,
    update: &Value,
) -> ApiResult<Option<(Labels, serde_json::Map<String, Value>)>> {
    let Some(update) = update.as_object() else {
        return Err(ApiError::BadRequest(
            "tags must be an object like {\"team\": \"payments\"} (null removes a tag)".into(),
        ));
    };
    let mut tags = current.clone();
    let mut changed = serde_json::Map::new();
    for (key, value) in update {
        if key.is_empty() || key.len() > 200 || key.contains(char::is_whitespace) {
            return Err(ApiError::BadRequest(format!(
                "tag key {key:?} must be 1 to 200 characters without spaces"
            )));
        }
        match value {
            Value::Null => {
                tags.remove(key);
            }
            Value::String(v) if !v.is_empty() && v.len() <= 200 => {
                tags.insert(key.clone(), v.clone());
            }
            _ => {
                return Err(ApiError::BadRequest(format!(
                    "tag {key:?} needs a string value of 1 to 200 characters, or null to remove it"
                )))
            }
        }
        changed.insert(key.clone(), value.clone());
    }
    if tags.len() > workflow::MAX_ISSUE_TAGS {
        return Err(ApiError::BadRequest(format!(
            "an issue has at most {} tags",
            workflow::MAX_ISSUE_TAGS
        )));
    }
    Ok((!changed.is_empty()).then_some((tags, changed)))
}

/// Who changes an issue: the activity log's user and whom `assignedTo: "me"` means.
#[derive(Debug, Clone)]
pub struct Actor {
    /// Id (the API token's id).
    pub id: String,
    /// Display name (the token's name).
    pub name: String,
}

impl Actor {
    /// The holder of `token`.
    pub fn of_token(token: &storage::ApiToken) -> Actor {
        Actor {
            id: token.id.to_string(),
            name: token.name.clone(),
        }
    }
}

/// Applies Sentry's issue update body to one issue: `status` (`resolved`,
/// `resolvedInNextRelease`, `unresolved`, `ignored` with `statusDetails`/ignore fields),
/// `assignedTo` (`user:ID`, `team:SLUG`, `me`, an e-mail, or null), and osprey's `tags`
/// (labels `{key: value}` kept in the workflow record; a null value removes one). Every change
/// goes to the activity log under `actor`. Returns the new record. The HTTP API's issue
/// `PUT`s and MCP's `manage_issues` both go through here.
/// Fields of Sentry's issue update that osprey does not implement, with what they do there.
/// osprey has no users (bookmarks, subscriptions and seen markers are per user in Sentry),
/// no public share links, no priorities, and merging or discarding would re-map grouping
/// hashes, which it does not do.
const UNSUPPORTED_UPDATES: &[(&str, &str)] = &[
    ("merge", "merging issues"),
    ("discard", "discarding issues"),
    ("isPublic", "public issue links"),
    ("priority", "issue priorities"),
    ("isBookmarked", "bookmarks"),
    ("isSubscribed", "subscriptions"),
    ("hasSeen", "seen markers"),
];

pub fn apply_issue_update(
    store: &Store,
    rec: &IssueRecord,
    body: &Value,
    actor: &Actor,
) -> ApiResult<IssueRecord> {
    // Sentry fields osprey has no counterpart for are refused, not answered 200 and dropped.
    for (field, what) in UNSUPPORTED_UPDATES {
        if body.get(*field).is_some() {
            return Err(ApiError::BadRequest(format!(
                "osprey does not support {what} (`{field}`)"
            )));
        }
    }
    if body.pointer("/statusDetails/inCommit").is_some() {
        return Err(ApiError::BadRequest(
            "osprey has no repository integration to resolve an issue in a commit \
             (`statusDetails.inCommit`); resolve it in a release instead"
                .into(),
        ));
    }
    let user = Some(actor.name.as_str());
    let mut state = workflow::workflow(store, rec.id)?;
    let mut record = rec.clone();
    let now = now_ms();
    // Everything is validated before the first write, so a bad field changes nothing.
    let new_assignee = match body.get("assignedTo") {
        None => None,
        Some(Value::Null) => Some(None),
        Some(Value::String(text)) => Some(parse_assignee(actor, text)?),
        Some(_) => {
            return Err(ApiError::BadRequest(
                "assignedTo must be a string like user:ID or team:SLUG".into(),
            ))
        }
    };
    let new_tags = match body.get("tags") {
        None => None,
        Some(tags) => labels_update(&state.tags, tags)?,
    };
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
                    (None, true) => latest_release(store, rec)?,
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
                let (count_now, users_now) = counts(store, rec.id)?;
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
        let updated = records::update_issue(store, rec.id, |r| {
            r.status = new_status;
            r.substatus = substatus;
            r.resolution = resolution.clone();
        })?
        .ok_or_else(|| ApiError::NotFound("Issue not found".into()))?;
        record = updated;
        state.ignore = ignore;
        workflow::put_workflow(store, rec.id, &state)?;
        workflow::add_activity(store, rec.id, activity.0, activity.1, user)?;
    }
    if let Some(new) = new_assignee {
        if new != state.assigned_to {
            let activity = match &new {
                Some(a) => (
                    "assigned",
                    json!({"assignee": a.id, "assigneeType": a.kind}),
                ),
                None => ("unassigned", json!({})),
            };
            state.assigned_to = new;
            workflow::put_workflow(store, rec.id, &state)?;
            workflow::add_activity(store, rec.id, activity.0, activity.1, user)?;
        }
    }
    if let Some((tags, changed)) = new_tags {
        state.tags = tags;
        workflow::put_workflow(store, rec.id, &state)?;
        workflow::add_activity(store, rec.id, "set_tags", Value::Object(changed), user)?;
    }
    Ok(record)
}

#[cfg(test)]
mod tests;
