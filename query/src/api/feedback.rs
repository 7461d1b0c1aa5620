//! User feedback (Sentry's user reports):
//! - `GET /projects/{org}/{project}/user-feedback/` (also `user-reports/`): the project's
//!   feedback, newest first, in Sentry's `UserReportWithGroupSerializer` shape (with `issue`).
//!   `environment=` filters; `status=unresolved` keeps only feedback of unresolved issues, as
//!   Sentry's default does. osprey's default is every feedback (also new-style feedback that
//!   is about no event), so that a widget's feedback is listed too.
//! - `POST` on the same path: Sentry's legacy submission `{event_id, name, email, comments}`,
//!   validated like Sentry's serializer (400 with per-field messages) and `save_userreport`
//!   (409 when the event is over 30 minutes old or the report may no longer change); 200 with
//!   the report.
//! - `GET /organizations/{org}/issues/{id}/user-reports/` (also `user-feedback/`, and under
//!   `/issues/{id}/`): an issue's feedback, newest first, in `UserReportSerializer`'s shape.

use bytes::Bytes;
use http::Method;
use serde_json::{json, Value};
use storage::feedback::{self, FeedbackKind, Refusal, UserReport};
use storage::{cf, encode_i64, keys, Log, LogRecord, Project, ProjectKey, WriteBatch};
use uuid::Uuid;

use super::issues::{find_issue, issue_json};
use super::util::{iso, Page};
use super::{not_allowed, ApiError, ApiRequest, ApiResponse, ApiResult, Ctx};
use crate::feedback::{FeedbackFilter, LinkedFeedback};

const READ: &[&str] = &["event:read", "project:read"];
const WRITE: &[&str] = &["event:write", "project:write"];

/// Feedback's outcome category (Relay's `feedback`, 14).
const FEEDBACK_CATEGORY: u8 = 14;

pub(super) fn route(
    ctx: &Ctx<'_>,
    method: &Method,
    segs: &[&str],
) -> ApiResult<Option<ApiResponse>> {
    let resp = match segs {
        ["projects", org, project, "user-feedback" | "user-reports"] => match *method {
            Method::GET => project_list(ctx, org, project)?,
            Method::POST => submit(ctx, org, project)?,
            _ => return Err(not_allowed(method)),
        },
        ["organizations", org, "issues", id, "user-reports" | "user-feedback"] => {
            issue_list(ctx, Some(org), id, method)?
        }
        ["issues" | "groups", id, "user-reports" | "user-feedback"] => {
            issue_list(ctx, None, id, method)?
        }
        _ => return Ok(None),
    };
    Ok(Some(resp))
}

/// Sentry's `EventUser` shape of a feedback event's `user`.
fn user_json(user: &Value) -> Value {
    let field = |k: &str| user.get(k).cloned().unwrap_or(Value::Null);
    let id = user.get("id").map(|v| match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    });
    let (tag, identifier) = match (&id, user.get("username"), user.get("email")) {
        (Some(id), _, _) => (format!("id:{id}"), Value::String(id.clone())),
        (None, Some(Value::String(u)), _) => (format!("username:{u}"), Value::String(u.clone())),
        (None, None, Some(Value::String(e))) => (format!("email:{e}"), Value::String(e.clone())),
        _ => (String::new(), Value::Null),
    };
    json!({
        "id": id,
        "tagValue": tag,
        "identifier": identifier,
        "username": field("username"),
        "email": field("email"),
        "name": field("name"),
        "ipAddress": field("ip_address"),
        "avatarUrl": null,
    })
}

/// Sentry's `UserReportSerializer` shape (plus osprey's `kind`, `url` and `source`).
pub fn feedback_json(f: &LinkedFeedback) -> Value {
    let r = &f.record;
    let event_id = r.event_id.clone();
    json!({
        "id": r.id,
        "eventID": event_id,
        // Sentry shows the email where no name was given.
        "name": if r.name.is_empty() { &r.email } else { &r.name },
        "email": r.email,
        "comments": r.comments,
        "dateCreated": iso(r.received_ms),
        "user": r.user.as_ref().map(user_json),
        "event": {"id": event_id, "eventID": event_id},
        "kind": match r.kind {
            FeedbackKind::UserReport => "user_report",
            FeedbackKind::Feedback => "feedback",
        },
        "url": r.url,
        "source": r.source,
        "environment": r.environment,
    })
}

/// [`feedback_json`] with the serialized issue (`UserReportWithGroupSerializer`).
fn with_issue(ctx: &Ctx<'_>, f: &LinkedFeedback) -> ApiResult<Value> {
    let mut v = feedback_json(f);
    let issue = match f.issue_id {
        Some(id) => match storage::records::load_issue(ctx.store, id)? {
            Some(rec) => {
                let state = storage::workflow::workflow(ctx.store, rec.id)?;
                issue_json(ctx, &rec, &state)?
            }
            None => Value::Null,
        },
        None => Value::Null,
    };
    v["issue"] = issue;
    Ok(v)
}

fn environment(ctx: &Ctx<'_>) -> Option<String> {
    ctx.req
        .param("environment")
        .filter(|e| !e.is_empty())
        .map(str::to_owned)
}

fn project_list(ctx: &Ctx<'_>, org: &str, project: &str) -> ApiResult {
    let (_, project) = ctx.project(org, project)?;
    ctx.require_any(READ)?;
    let unresolved_only = match ctx.req.param("status") {
        None | Some("") => false,
        Some("unresolved") => true,
        Some(_) => {
            return Ok(ApiResponse {
                status: http::StatusCode::BAD_REQUEST,
                body: json!({"status": "Invalid status choice"}),
                link: None,
                file: None,
            })
        }
    };
    let filter = FeedbackFilter {
        environment: environment(ctx),
        unresolved_only,
        issue_id: None,
    };
    let page = Page::from_request(ctx.req, 100)?;
    let (items, more) =
        ctx.query
            .project_feedback(project.id, &filter, page.offset, page.per_page)?;
    let body = items
        .iter()
        .map(|f| with_issue(ctx, f))
        .collect::<ApiResult<Vec<Value>>>()?;
    Ok(ApiResponse::page(body, page.link(ctx.req, more)))
}

fn issue_list(ctx: &Ctx<'_>, org: Option<&str>, id: &str, method: &Method) -> ApiResult {
    let (_, rec) = find_issue(ctx, org, id)?;
    ctx.require_any(READ)?;
    if method != Method::GET {
        return Err(not_allowed(method));
    }
    let page = Page::from_request(ctx.req, 100)?;
    let (items, more) =
        ctx.query
            .issue_feedback(&rec, environment(ctx), page.offset, page.per_page)?;
    let body = items.iter().map(feedback_json).collect();
    Ok(ApiResponse::page(body, page.link(ctx.req, more)))
}

/// One field of the submission as Django REST framework's `CharField` reads it: required, not
/// blank, at most `max` characters; numbers are taken as text.
fn field(
    body: &Value,
    key: &str,
    max: Option<usize>,
    errors: &mut serde_json::Map<String, Value>,
) -> String {
    let mut fail = |m: String| {
        errors.insert(key.to_owned(), json!([m]));
        String::new()
    };
    let text = match body.get(key) {
        None => return fail("This field is required.".into()),
        Some(Value::Null) => return fail("This field may not be null.".into()),
        Some(Value::String(s)) => s.clone(),
        Some(n @ Value::Number(_)) => n.to_string(),
        Some(_) => return fail("Not a valid string.".into()),
    };
    if text.trim().is_empty() {
        return fail("This field may not be blank.".into());
    }
    if let Some(max) = max {
        if text.chars().count() > max {
            return fail(format!(
                "Ensure this field has no more than {max} characters."
            ));
        }
    }
    text
}

fn submit(ctx: &Ctx<'_>, org: &str, project: &str) -> ApiResult {
    let (_, project) = ctx.project(org, project)?;
    ctx.require_any(WRITE)?;
    match store_report(ctx.store, ctx.feedback_log, ctx.req, &project)? {
        Ok(linked) => Ok(ApiResponse::ok(with_issue(ctx, &linked)?)),
        Err(invalid) => Ok(invalid),
    }
}

/// `Authorization: DSN …` requests. Sentry accepts a DSN on one endpoint only, the legacy
/// feedback submission, so that a page holding nothing but its public DSN can send feedback:
/// - `POST …/user-feedback/` of the DSN's own project stores the report as a token's POST
///   would, and answers 200 with no body (the report and its issue are not shown to a DSN
///   holder); another project's path is 400;
/// - reading feedback with a DSN is 401, as in Sentry;
/// - every other path is 401: a DSN is no API credential there.
pub(super) fn route_dsn(
    store: &storage::Store,
    log: Option<&dyn Log>,
    req: &ApiRequest,
    key: &ProjectKey,
    segs: &[&str],
) -> ApiResult {
    let ["projects", org, project, "user-feedback" | "user-reports"] = segs else {
        return Err(ApiError::Unauthorized(
            "A DSN authenticates only the submission of user feedback.",
        ));
    };
    match req.method {
        Method::POST => {}
        Method::GET => {
            return Err(ApiError::Unauthorized(
                "A DSN may submit user feedback but not read it.",
            ))
        }
        ref other => return Err(not_allowed(other)),
    }
    let meta = store.meta();
    let project = meta
        .organization_by_slug(org)
        .and_then(|org| meta.project_by_slug(org.id, project))
        .ok_or_else(|| ApiError::NotFound("The requested resource does not exist".into()))?;
    if project.id != key.project_id {
        return Err(ApiError::BadRequest(
            "The DSN belongs to another project.".into(),
        ));
    }
    Ok(match store_report(store, log, req, &project)? {
        Ok(_) => ApiResponse::empty(http::StatusCode::OK),
        Err(invalid) => invalid,
    })
}

/// Validates and stores a legacy report posted to `project`: the stored report with its issue,
/// or the 400 answer naming each invalid field (Sentry's serializer errors). With `log`, the
/// report is appended to it as a `user_report` item (answered once the log has it durably)
/// and the processor stores it; the answer is then the report as this node sees it, linked
/// to an issue only if this node holds the event.
fn store_report(
    store: &storage::Store,
    log: Option<&dyn Log>,
    req: &ApiRequest,
    project: &Project,
) -> ApiResult<Result<LinkedFeedback, ApiResponse>> {
    let body = req.json_body()?;
    let mut errors = serde_json::Map::new();
    let name = field(&body, "name", Some(feedback::MAX_NAME), &mut errors);
    let email = field(&body, "email", Some(feedback::MAX_EMAIL), &mut errors);
    if !errors.contains_key("email") && !feedback::plausible_email(&email) {
        errors.insert("email".into(), json!(["Enter a valid email address."]));
    }
    let comments = field(&body, "comments", None, &mut errors);
    let event_id = field(&body, "event_id", Some(32), &mut errors);
    if !errors.is_empty() {
        return Ok(Err(ApiResponse::field_errors(errors)));
    }
    let Ok(event_id) = Uuid::try_parse(event_id.trim()) else {
        return Err(ApiError::BadRequest("Invalid Event ID".into()));
    };
    let mut report = UserReport {
        event_id,
        name,
        email,
        comments,
    };
    feedback::validate_user_report(&mut report).map_err(|r| ApiError::BadRequest(r.into()))?;
    store.ensure_writable()?;
    let now = storage::now_ms();
    let mut record = match feedback::user_report_record(store, project.id, &report, now)? {
        Ok(record) => record,
        Err(Refusal::Conflict(_)) => {
            return Err(ApiError::Conflict(
                "Feedback for this event cannot be modified.".into(),
            ))
        }
        Err(Refusal::Invalid(reason)) => return Err(ApiError::BadRequest(reason.into())),
    };
    // Scrubbed as the same report sent by an SDK would be.
    processor::scrub::Scrubber::from_settings(&project.settings).scrub_feedback(&mut record);
    if let Some(log) = log {
        append_report(log, project.id, &report, now)?;
        let issue_id = record.issue_id;
        return Ok(Ok(LinkedFeedback { record, issue_id }));
    }
    let mut batch = WriteBatch::default();
    feedback::put(store, &mut batch, &record)?;
    // Counted like feedback that came through an envelope.
    batch.merge_cf(
        &store.cf(cf::OUTCOMES),
        keys::outcome(project.id, keys::hour_start(now), 0, FEEDBACK_CATEGORY, ""),
        encode_i64(1),
    );
    store.write(batch, true)?;
    let issue_id = feedback::resolve_issue(store, &record)?;
    Ok(Ok(LinkedFeedback { record, issue_id }))
}

/// Appends `report` to `log` as the `user_report` item an SDK would send, and waits until the
/// log has it durably (the caller runs on a blocking thread of the server's runtime).
fn append_report(log: &dyn Log, project_id: u64, report: &UserReport, now: u64) -> ApiResult<()> {
    let payload = json!({
        "event_id": report.event_id.simple().to_string(),
        "name": report.name,
        "email": report.email,
        "comments": report.comments,
    });
    let record = LogRecord {
        project_id,
        // No DSN key sent it: per-key outcomes and quotas do not apply.
        key_id: 0,
        received_ms: now,
        event_id: Some(report.event_id),
        item_type: "user_report".into(),
        envelope_header: Bytes::from_static(b"{}"),
        item_header: Bytes::from_static(b"{\"type\":\"user_report\"}"),
        client_addr: None,
        payload: Bytes::from(payload.to_string()),
    };
    let ticket = log.append(vec![record])?;
    let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
        ApiError::Internal("a feedback submission needs the server's runtime".into())
    })?;
    runtime.block_on(ticket)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::testutil::Fixture;
    use super::super::ApiRequest;
    use http::{Method, StatusCode};
    use processor::pipeline::event_record;
    use processor::{Processor, ProcessorConfig};
    use serde_json::{json, Value};
    use storage::LogRecord;
    use uuid::Uuid;

    fn error(id: &Uuid) -> LogRecord {
        let ev = json!({
            "event_id": id.simple().to_string(),
            "timestamp": storage::now_ms() as f64 / 1000.0,
            "environment": "prod",
            "exception": {"values": [{"type": "ValueError", "value": "bad cart"}]},
        });
        event_record(1, storage::now_ms(), ev.to_string().as_bytes(), None)
    }

    fn item(ty: &str, payload: Value, received_ms: u64) -> LogRecord {
        processor::pipeline::item_record(1, received_ms, ty, payload.to_string().as_bytes())
    }

    /// Sentry's `DSNAuthentication` on the legacy submission: a page's public DSN can send a
    /// report to its own project and do nothing else.
    #[test]
    fn a_dsn_submits_feedback_to_its_project_only() {
        let f = Fixture::new();
        let processor = Processor::new(f.store.clone(), ProcessorConfig::default()).unwrap();
        let event = Uuid::from_u128(0xd5);
        processor.process_and_commit(&[error(&event)]).unwrap();
        let key = f.store.meta().keys_of_project(1)[0].clone();
        let dsn = format!("http://{}@127.0.0.1:9000/1", key.public_key);
        let path = "/api/0/projects/default/default/user-feedback/";
        let report = json!({"event_id": event.simple().to_string(), "name": "Ann",
                            "email": "ann@example.com", "comments": "card 4111 1111 1111 1111"});
        let call = |method: Method, path: &str, dsn: &str, body: Option<&Value>| {
            let mut req = ApiRequest::new(method, path).dsn(dsn);
            if let Some(body) = body {
                req = req.json(body);
            }
            f.api.call(&req)
        };

        // Stored (and scrubbed) like a token's submission; the answer shows nothing.
        let posted = call(Method::POST, path, &dsn, Some(&report));
        assert_eq!(posted.status, StatusCode::OK, "{:?}", posted.body);
        assert!(posted.body.is_null(), "{:?}", posted.body);
        let rendered = super::super::render(posted);
        assert!(rendered.headers().get(http::header::CONTENT_TYPE).is_none());
        let listed = f.get(path);
        let items = listed.body.as_array().unwrap();
        assert_eq!(items.len(), 1, "{items:?}");
        assert_eq!(items[0]["name"], "Ann");
        assert_eq!(items[0]["comments"], "card [Filtered]");
        assert_eq!(items[0]["eventID"], event.simple().to_string());
        // The secret half and a path prefix in the DSN change nothing; bad input is still 400.
        let long = format!("https://{}:oldsecret@host/prefix/1/", key.public_key);
        let invalid = call(Method::POST, path, &long, Some(&json!({"name": "Ann"})));
        assert_eq!(
            invalid.status,
            StatusCode::BAD_REQUEST,
            "{:?}",
            invalid.body
        );
        assert_eq!(invalid.body["comments"], json!(["This field is required."]));

        // Reading with a DSN, and any other endpoint, is 401.
        let read = call(Method::GET, path, &dsn, None);
        assert_eq!(read.status, StatusCode::UNAUTHORIZED, "{:?}", read.body);
        assert!(read.body["detail"].as_str().unwrap().contains("not read"));
        for other in [
            "/api/0/organizations/default/issues/",
            "/api/0/projects/default/default/keys/",
        ] {
            let r = call(Method::GET, other, &dsn, None);
            assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{other}: {:?}", r.body);
        }
        let put = call(Method::PUT, path, &dsn, Some(&report));
        assert_eq!(put.status, StatusCode::METHOD_NOT_ALLOWED);

        // Another project's path is 400; an unknown, disabled or mismatched key is 401.
        let other = f
            .store
            .create_project(1, "other", "Other", "python")
            .unwrap();
        let other_key = f.store.create_key(other.id, "Default", None).unwrap();
        let cross = call(
            Method::POST,
            path,
            &format!(
                "http://{}@127.0.0.1:9000/{}",
                other_key.public_key, other.id
            ),
            Some(&report),
        );
        assert_eq!(cross.status, StatusCode::BAD_REQUEST, "{:?}", cross.body);
        let mut disabled = (*other_key).clone();
        disabled.enabled = false;
        f.store.put_key(disabled).unwrap();
        for bad in [
            format!(
                "http://{}@127.0.0.1:9000/{}",
                other_key.public_key, other.id
            ),
            format!("http://{}@127.0.0.1:9000/{}", key.public_key, other.id),
            format!("http://{}@127.0.0.1:9000/1", "0".repeat(32)),
            "not a dsn".to_owned(),
        ] {
            let r = call(Method::POST, path, &bad, Some(&report));
            assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{bad}: {:?}", r.body);
            assert_eq!(r.body["detail"], "Invalid dsn", "{bad}");
        }
        // Nothing but the first report was stored.
        assert_eq!(f.get(path).body.as_array().unwrap().len(), 1);
    }

    #[test]
    fn list_submit_and_issue_feedback() {
        let f = Fixture::new();
        let processor = Processor::new(f.store.clone(), ProcessorConfig::default()).unwrap();
        let event = Uuid::from_u128(0xabc);
        let now = storage::now_ms();
        // Feedback first, its event afterwards; then a widget feedback about no event.
        processor
            .process_and_commit(&[item(
                "user_report",
                json!({"event_id": event.simple().to_string(), "email": "ann@example.com",
                       "comments": "Cart emptied itself"}),
                now,
            )])
            .unwrap();
        processor.process_and_commit(&[error(&event)]).unwrap();
        processor
            .process_and_commit(&[item(
                "feedback",
                json!({"contexts": {"feedback": {"message": "Love the new UI", "name": "Bo"}}}),
                now + 1,
            )])
            .unwrap();
        let issue_id = storage::records::load_event(&f.store, 1, &event)
            .unwrap()
            .unwrap()
            .issue_id
            .unwrap();

        let list = f.get("/api/0/projects/default/default/user-feedback/");
        assert_eq!(list.status, StatusCode::OK, "{:?}", list.body);
        let items = list.body.as_array().unwrap().clone();
        assert_eq!(items.len(), 2);
        assert_eq!(items[0]["comments"], "Love the new UI");
        assert_eq!(items[0]["issue"], Value::Null);
        assert_eq!(items[0]["name"], "Bo");
        let report = &items[1];
        assert_eq!(report["eventID"], event.simple().to_string());
        assert_eq!(report["event"]["id"], event.simple().to_string());
        assert_eq!(
            report["name"], "ann@example.com",
            "no name: the email, as Sentry"
        );
        assert_eq!(report["issue"]["id"], issue_id.to_string());
        assert!(report["dateCreated"].as_str().unwrap().ends_with('Z'));
        assert!(list
            .link
            .unwrap()
            .contains("rel=\"next\"; results=\"false\""));

        // Sentry's status filter keeps feedback of unresolved issues only.
        let unresolved = f.get("/api/0/projects/default/default/user-feedback/?status=unresolved");
        assert_eq!(unresolved.body.as_array().unwrap().len(), 1);
        let bad = f.get("/api/0/projects/default/default/user-feedback/?status=nope");
        assert_eq!(bad.status, StatusCode::BAD_REQUEST);
        let paged = f.get("/api/0/projects/default/default/user-feedback/?per_page=1");
        assert_eq!(paged.body.as_array().unwrap().len(), 1);
        assert!(paged
            .link
            .unwrap()
            .contains("rel=\"next\"; results=\"true\""));

        // The issue's feedback: by numeric id and both path spellings.
        for path in [
            format!("/api/0/organizations/default/issues/{issue_id}/user-reports/"),
            format!("/api/0/issues/{issue_id}/user-feedback/"),
        ] {
            let r = f.get(&path);
            assert_eq!(r.status, StatusCode::OK, "{path}: {:?}", r.body);
            let items = r.body.as_array().unwrap();
            assert_eq!(items.len(), 1, "{path}");
            assert_eq!(items[0]["comments"], "Cart emptied itself");
        }
        let detail = f.get(&format!("/api/0/organizations/default/issues/{issue_id}/"));
        assert_eq!(detail.body["userReportCount"], 1);

        // The legacy submission: replaces the report (within 5 minutes) and answers it.
        let posted = f.post(
            "/api/0/projects/default/default/user-feedback/",
            json!({"event_id": event.simple().to_string(), "name": "Ann",
                   "email": "ann@example.com", "comments": "Cart emptied itself twice"}),
        );
        assert_eq!(posted.status, StatusCode::OK, "{:?}", posted.body);
        assert_eq!(posted.body["issue"]["id"], issue_id.to_string());
        assert_eq!(posted.body["name"], "Ann");
        let r = f.get(&format!("/api/0/issues/{issue_id}/user-reports/"));
        let items = r.body.as_array().unwrap();
        assert_eq!(items.len(), 1);
        assert_eq!(items[0]["comments"], "Cart emptied itself twice");
        // A card number in the comments is scrubbed before it is stored, as from an SDK.
        let carded = f.post(
            "/api/0/projects/default/default/user-feedback/",
            json!({"event_id": event.simple().to_string(), "name": "Ann",
                   "email": "ann@example.com", "comments": "charged 4111 1111 1111 1111 twice"}),
        );
        assert_eq!(carded.status, StatusCode::OK, "{:?}", carded.body);
        assert_eq!(carded.body["comments"], "charged [Filtered] twice");
        let r = f.get(&format!("/api/0/issues/{issue_id}/user-reports/"));
        assert_eq!(r.body[0]["comments"], "charged [Filtered] twice");

        // Sentry's serializer errors, per field.
        let invalid = f.post(
            "/api/0/projects/default/default/user-feedback/",
            json!({"event_id": event.hyphenated().to_string(), "email": "nope", "comments": ""}),
        );
        assert_eq!(invalid.status, StatusCode::BAD_REQUEST);
        assert_eq!(invalid.body["name"], json!(["This field is required."]));
        assert_eq!(
            invalid.body["email"],
            json!(["Enter a valid email address."])
        );
        assert_eq!(
            invalid.body["comments"],
            json!(["This field may not be blank."])
        );
        assert_eq!(
            invalid.body["event_id"],
            json!(["Ensure this field has no more than 32 characters."])
        );
        // Reading needs a read scope; writing a write scope.
        let reader = f.token(1, &["event:read"]);
        let denied = f.call(
            Method::POST,
            "/api/0/projects/default/default/user-feedback/",
            Some(&reader),
            Some(json!({"event_id": event.simple().to_string(), "name": "A",
                        "email": "a@b.io", "comments": "x"})),
        );
        assert_eq!(denied.status, StatusCode::FORBIDDEN);
        let nobody = f.token(1, &["org:read"]);
        let denied = f.call(
            Method::GET,
            "/api/0/projects/default/default/user-feedback/",
            Some(&nobody),
            None,
        );
        assert_eq!(denied.status, StatusCode::FORBIDDEN);
        assert_eq!(
            f.get("/api/0/projects/default/nope/user-feedback/").status,
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            f.get("/api/0/issues/999999/user-reports/").status,
            StatusCode::NOT_FOUND
        );
    }
}
