//! Who am I, organizations, teams, projects, DSN keys and API tokens.
//!
//! osprey has no users and no teams: a token stands for its holder (`/auth/`), and every
//! organization has one implicit team whose slug is the organization's, which is what
//! Sentry's project-creation endpoint (`/teams/{org}/{team}/projects/`) and `sentry-cli`'s
//! project shape need.

use std::sync::Arc;

use http::Method;
use serde_json::{json, Value};
use storage::{KeyRateLimit, Organization, Project, ProjectKey, ALL_SCOPES};

use super::project_settings;
use super::util::{iso, Page};
use super::{body_str, not_allowed, ApiError, ApiResponse, ApiResult, Ctx};

/// Longest name or slug accepted for projects and keys.
const MAX_NAME_LEN: usize = 64;

pub(super) fn route(
    ctx: &Ctx<'_>,
    method: &Method,
    segs: &[&str],
) -> ApiResult<Option<ApiResponse>> {
    let m = method;
    let resp = match segs {
        [] => only(m, &Method::GET, || info(ctx))?,
        ["auth"] => only(m, &Method::GET, || Ok(ApiResponse::ok(user(ctx))))?,
        ["organizations"] => only(m, &Method::GET, || list_organizations(ctx))?,
        ["organizations", org] => only(m, &Method::GET, || organization_detail(ctx, org))?,
        ["organizations", org, "projects"] => only(m, &Method::GET, || list_projects(ctx, org))?,
        ["organizations", org, "teams"] => only(m, &Method::GET, || list_teams(ctx, org))?,
        ["teams", org, team, "projects"] => match *m {
            Method::POST => create_project(ctx, org, team)?,
            Method::GET => {
                let org_rec = team_org(ctx, org, team)?;
                list_projects(ctx, &org_rec.slug)?
            }
            _ => return Err(not_allowed(m)),
        },
        ["projects", org, project] => match *m {
            Method::GET => project_detail(ctx, org, project)?,
            Method::PUT => update_project(ctx, org, project)?,
            Method::DELETE => delete_project(ctx, org, project)?,
            _ => return Err(not_allowed(m)),
        },
        ["projects", org, project, "keys"] => match *m {
            Method::GET => list_keys(ctx, org, project)?,
            Method::POST => create_key(ctx, org, project)?,
            _ => return Err(not_allowed(m)),
        },
        ["projects", org, project, "keys", key] => match *m {
            Method::GET => key_detail(ctx, org, project, key)?,
            Method::PUT => update_key(ctx, org, project, key)?,
            Method::DELETE => delete_key(ctx, org, project, key)?,
            _ => return Err(not_allowed(m)),
        },
        ["api-tokens"] => match *m {
            Method::GET => list_tokens(ctx)?,
            Method::POST => create_token(ctx)?,
            Method::DELETE => {
                let body = ctx.req.json_body()?;
                let id = body
                    .get("tokenId")
                    .and_then(|v| {
                        v.as_u64()
                            .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
                    })
                    .ok_or_else(|| ApiError::BadRequest("tokenId is required".into()))?;
                delete_token(ctx, id)?
            }
            _ => return Err(not_allowed(m)),
        },
        ["api-tokens", id] => match *m {
            Method::DELETE => {
                let id = id.parse().map_err(|_| {
                    ApiError::NotFound("The requested resource does not exist".into())
                })?;
                delete_token(ctx, id)?
            }
            _ => return Err(not_allowed(m)),
        },
        _ => return Ok(None),
    };
    Ok(Some(resp))
}

fn only(method: &Method, allowed: &Method, f: impl FnOnce() -> ApiResult) -> ApiResult {
    if method == allowed {
        f()
    } else {
        Err(not_allowed(method))
    }
}

/// The token's holder as Sentry's user shape. osprey has no users, so the token stands in.
fn user(ctx: &Ctx<'_>) -> Value {
    json!({
        "id": ctx.token.id.to_string(),
        "name": ctx.token.name,
        "username": ctx.token.name,
        "email": format!("{}@osprey.invalid", ctx.token.name.replace(char::is_whitespace, "-")),
        "isActive": true,
        "dateJoined": iso(ctx.token.created_ms),
    })
}

/// `GET /api/0/` — `sentry-cli info`: the token's scopes and user.
fn info(ctx: &Ctx<'_>) -> ApiResult {
    Ok(ApiResponse::ok(json!({
        "version": "0",
        "auth": {"scopes": ctx.token.scopes},
        "user": user(ctx),
    })))
}

/// Sentry's organization shape. `links.regionUrl` is empty on purpose: the MCP server copies
/// it back and rejects any non-https region (sentry-web-api.md §1.2).
pub(super) fn organization_json(ctx: &Ctx<'_>, org: &Organization) -> Value {
    json!({
        "id": org.id.to_string(),
        "slug": org.slug,
        "name": org.name,
        "dateCreated": iso(org.created_ms),
        "isEarlyAdopter": false,
        "require2FA": false,
        "requireEmailVerification": false,
        "features": [],
        "status": {"id": "active", "name": "active"},
        "avatar": {"avatarType": "letter_avatar", "avatarUuid": null},
        "links": {
            "organizationUrl": format!("{}/organizations/{}/", ctx.base_url(), org.slug),
            "regionUrl": "",
        },
    })
}

fn matches_query(query: Option<&str>, fields: &[&str]) -> bool {
    match query.map(str::trim) {
        None | Some("") => true,
        Some(q) => {
            let q = q.to_lowercase();
            fields.iter().any(|f| f.to_lowercase().contains(&q))
        }
    }
}

fn list_organizations(ctx: &Ctx<'_>) -> ApiResult {
    ctx.require("org:read")?;
    let query = ctx.req.param("query");
    let orgs: Vec<Value> = ctx
        .store
        .meta()
        .organization(ctx.token.org_id)
        .into_iter()
        .filter(|o| matches_query(query, &[&o.slug, &o.name]))
        .map(|o| organization_json(ctx, &o))
        .collect();
    let page = Page::from_request(ctx.req, 100)?;
    let (items, link) = page.apply(orgs, ctx.req);
    Ok(ApiResponse::page(items, link))
}

fn organization_detail(ctx: &Ctx<'_>, org: &str) -> ApiResult {
    let org = ctx.org(org)?;
    ctx.require("org:read")?;
    let mut body = organization_json(ctx, &org);
    let projects: Vec<Value> = ctx
        .store
        .meta()
        .projects_of_org(org.id)
        .iter()
        .map(|p| project_json(ctx, &org, p))
        .collect();
    body["projects"] = Value::Array(projects);
    body["teams"] = json!([team_json(&org)]);
    Ok(ApiResponse::ok(body))
}

fn team_json(org: &Organization) -> Value {
    json!({
        "id": org.id.to_string(),
        "slug": org.slug,
        "name": org.name,
        "dateCreated": iso(org.created_ms),
        "isMember": true,
        "memberCount": 1,
        "hasAccess": true,
    })
}

fn list_teams(ctx: &Ctx<'_>, org: &str) -> ApiResult {
    let org = ctx.org(org)?;
    ctx.require_any(&["team:read", "org:read"])?;
    let page = Page::from_request(ctx.req, 100)?;
    let (items, link) = page.apply(vec![team_json(&org)], ctx.req);
    Ok(ApiResponse::page(items, link))
}

/// The organization of `/teams/{org}/{team}/`: its one implicit team has the org's slug.
fn team_org(ctx: &Ctx<'_>, org: &str, team: &str) -> ApiResult<Arc<Organization>> {
    let org = ctx.org(org)?;
    if team != org.slug && team != org.id.to_string() {
        return Err(ApiError::NotFound(format!(
            "team {team} does not exist (this server has one team per organization: {})",
            org.slug
        )));
    }
    Ok(org)
}

/// Sentry's project shape (the fields `sentry-cli` and the MCP server read, plus the common ones).
pub(super) fn project_json(ctx: &Ctx<'_>, org: &Organization, p: &Project) -> Value {
    json!({
        "id": p.id.to_string(),
        "slug": p.slug,
        "name": p.name,
        "platform": if p.platform.is_empty() { Value::Null } else { Value::String(p.platform.clone()) },
        "dateCreated": iso(p.created_ms),
        "isBookmarked": false,
        "isMember": true,
        "hasAccess": true,
        "status": "active",
        "features": [],
        "organization": {"id": org.id.to_string(), "slug": org.slug, "name": org.name},
        "team": team_json(org),
        "teams": [team_json(org)],
        "links": {"projectUrl": format!("{}/organizations/{}/projects/{}/", ctx.base_url(), org.slug, p.slug)},
    })
}

fn list_projects(ctx: &Ctx<'_>, org: &str) -> ApiResult {
    let org = ctx.org(org)?;
    ctx.require("project:read")?;
    let query = ctx.req.param("query");
    let projects: Vec<Value> = ctx
        .store
        .meta()
        .projects_of_org(org.id)
        .iter()
        .filter(|p| matches_query(query, &[&p.slug, &p.name]))
        .map(|p| project_json(ctx, &org, p))
        .collect();
    let page = Page::from_request(ctx.req, 100)?;
    let (items, link) = page.apply(projects, ctx.req);
    Ok(ApiResponse::page(items, link))
}

fn project_detail(ctx: &Ctx<'_>, org: &str, project: &str) -> ApiResult {
    let (org, project) = ctx.project(org, project)?;
    ctx.require("project:read")?;
    Ok(ApiResponse::ok(detailed_project_json(ctx, &org, &project)))
}

/// A project with its settings, as Sentry's `DetailedProjectSerializer` (detail and PUT).
fn detailed_project_json(ctx: &Ctx<'_>, org: &Organization, p: &Project) -> Value {
    let mut v = project_json(ctx, org, p);
    if let Value::Object(obj) = &mut v {
        obj.extend(project_settings::settings_json(&p.settings));
    }
    v
}

/// Sentry-style slug: lowercase letters, digits, `-` and `_`; other runs become one `-`.
pub(super) fn slugify(name: &str) -> String {
    let mut slug = String::new();
    for c in name.trim().chars() {
        if c.is_ascii_alphanumeric() || c == '_' {
            slug.push(c.to_ascii_lowercase());
        } else if !slug.ends_with('-') {
            slug.push('-');
        }
    }
    slug.trim_matches('-').chars().take(MAX_NAME_LEN).collect()
}

fn valid_slug(slug: &str) -> ApiResult<()> {
    let ok = !slug.is_empty()
        && slug.len() <= MAX_NAME_LEN
        && slug
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
        && !slug.chars().all(|c| c.is_ascii_digit());
    if ok {
        Ok(())
    } else {
        Err(ApiError::BadRequest(format!(
            "invalid slug {slug:?}: use 1 to {MAX_NAME_LEN} lowercase letters, digits, '-' or '_', not only digits"
        )))
    }
}

fn check_name(name: &str, what: &str) -> ApiResult<()> {
    if name.trim().is_empty() || name.chars().count() > MAX_NAME_LEN {
        return Err(ApiError::BadRequest(format!(
            "{what} must be 1 to {MAX_NAME_LEN} characters"
        )));
    }
    Ok(())
}

/// `POST /teams/{org}/{team}/projects/` — creates a project and its first DSN key.
fn create_project(ctx: &Ctx<'_>, org: &str, team: &str) -> ApiResult {
    let org = team_org(ctx, org, team)?;
    ctx.require("project:write")?;
    let body = ctx.req.json_body()?;
    let name =
        body_str(&body, "name")?.ok_or_else(|| ApiError::BadRequest("name is required".into()))?;
    check_name(name, "name")?;
    let slug = match body_str(&body, "slug")? {
        Some(s) => s.to_owned(),
        None => slugify(name),
    };
    valid_slug(&slug)?;
    let platform = body_str(&body, "platform")?.unwrap_or("");
    if platform.len() > MAX_NAME_LEN {
        return Err(ApiError::BadRequest("platform is too long".into()));
    }
    let project = ctx
        .store
        .create_project(org.id, &slug, name, platform)
        .map_err(|e| match e {
            storage::StorageError::Conflict(_) => {
                ApiError::Conflict(format!("A project with the slug {slug:?} already exists."))
            }
            other => other.into(),
        })?;
    ctx.store.create_key(project.id, "Default", None)?;
    Ok(ApiResponse::created(project_json(ctx, &org, &project)))
}

/// `PUT /projects/{org}/{project}/` — name, slug, platform and the processing settings
/// ([`project_settings::apply`]).
fn update_project(ctx: &Ctx<'_>, org: &str, project: &str) -> ApiResult {
    let (org, project) = ctx.project(org, project)?;
    ctx.require("project:write")?;
    let body = ctx.req.json_body()?;
    let mut changed = (*project).clone();
    if let Err(errors) = project_settings::apply(&mut changed.settings, &body) {
        return Ok(ApiResponse::field_errors(errors));
    }
    if let Some(name) = body_str(&body, "name")? {
        check_name(name, "name")?;
        changed.name = name.to_owned();
    }
    if let Some(slug) = body_str(&body, "slug")? {
        valid_slug(slug)?;
        if slug != project.slug && ctx.store.meta().project_by_slug(org.id, slug).is_some() {
            return Err(ApiError::Conflict(format!(
                "A project with the slug {slug:?} already exists."
            )));
        }
        changed.slug = slug.to_owned();
    }
    if let Some(platform) = body_str(&body, "platform")? {
        changed.platform = platform.chars().take(MAX_NAME_LEN).collect();
    }
    let saved = ctx.store.put_project(changed)?;
    Ok(ApiResponse::ok(detailed_project_json(ctx, &org, &saved)))
}

/// `DELETE /projects/{org}/{project}/` (`project:admin`): the project and its DSN keys go at
/// once ([`storage::Store::delete_project`]); 204. The bootstrap project (`default` of the
/// `default` organization) is a 400, as Sentry refuses its internal projects: every start
/// would create it again.
fn delete_project(ctx: &Ctx<'_>, org: &str, project: &str) -> ApiResult {
    let (org, project) = ctx.project(org, project)?;
    ctx.require("project:admin")?;
    if org.slug == "default" && project.slug == "default" {
        return Err(ApiError::BadRequest(
            "the bootstrap project (default/default) cannot be removed: osprey creates it \
             again at every start"
                .into(),
        ));
    }
    ctx.store.delete_project(project.id)?;
    Ok(ApiResponse::no_content())
}

/// Sentry's client-key shape with every DSN form.
fn key_json(ctx: &Ctx<'_>, key: &ProjectKey) -> Value {
    let (scheme, host) = ctx
        .base_url()
        .split_once("://")
        .unwrap_or(("http", ctx.base_url()));
    let public = format!("{scheme}://{}@{host}/{}", key.public_key, key.project_id);
    let secret = format!(
        "{scheme}://{}:{}@{host}/{}",
        key.public_key, key.secret_key, key.project_id
    );
    let api = format!("{scheme}://{host}/api/{}", key.project_id);
    json!({
        "id": key.public_key,
        "name": key.label,
        "label": key.label,
        "public": key.public_key,
        "secret": key.secret_key,
        "projectId": key.project_id,
        "isActive": key.enabled,
        "dateCreated": iso(key.created_ms),
        "rateLimit": key.rate_limit.as_ref().map(|r| json!({"window": r.window_secs, "count": r.limit})),
        "dsn": {
            "public": public,
            "secret": secret,
            "csp": format!("{api}/csp-report/?sentry_key={}", key.public_key),
            "security": format!("{api}/security/?sentry_key={}", key.public_key),
            "minidump": format!("{api}/minidump/?sentry_key={}", key.public_key),
            "nel": format!("{api}/nel/?sentry_key={}", key.public_key),
            "unreal": format!("{api}/unreal/{}/", key.public_key),
            "otlp_traces": format!("{api}/integration/otlp/v1/traces"),
            "cdn": Value::Null,
            "crons": format!("{api}/cron/___MONITOR_SLUG___/{}/", key.public_key),
        },
        "browserSdkVersion": "latest",
        "browserSdk": {"choices": [["latest", "latest"]]},
        "dynamicSdkLoaderOptions": {"hasReplay": false, "hasPerformance": false, "hasDebug": false},
    })
}

fn list_keys(ctx: &Ctx<'_>, org: &str, project: &str) -> ApiResult {
    let (_, project) = ctx.project(org, project)?;
    ctx.require("project:read")?;
    let status = ctx.req.param("status");
    let keys: Vec<Value> = ctx
        .store
        .meta()
        .keys_of_project(project.id)
        .iter()
        .filter(|k| match status {
            Some("active") => k.enabled,
            Some("inactive") => !k.enabled,
            _ => true,
        })
        .map(|k| key_json(ctx, k))
        .collect();
    let page = Page::from_request(ctx.req, 100)?;
    let (items, link) = page.apply(keys, ctx.req);
    Ok(ApiResponse::page(items, link))
}

/// Reads Sentry's `rateLimit` body field: `{window, count}` sets, `null` clears, absent keeps.
fn rate_limit_field(body: &Value) -> ApiResult<Option<Option<KeyRateLimit>>> {
    match body.get("rateLimit") {
        None => Ok(None),
        Some(Value::Null) => Ok(Some(None)),
        Some(v) => {
            let window = v.get("window").and_then(Value::as_u64);
            let count = v.get("count").and_then(Value::as_u64);
            match (window, count) {
                (Some(w), Some(c)) if w > 0 => Ok(Some(Some(KeyRateLimit {
                    limit: c,
                    window_secs: w,
                }))),
                (None, None) => Ok(Some(None)),
                _ => Err(ApiError::BadRequest(
                    "rateLimit needs a positive integer window (seconds) and an integer count"
                        .into(),
                )),
            }
        }
    }
}

fn create_key(ctx: &Ctx<'_>, org: &str, project: &str) -> ApiResult {
    let (_, project) = ctx.project(org, project)?;
    ctx.require("project:write")?;
    let body = ctx.req.json_body()?;
    let name = body_str(&body, "name")?.unwrap_or("Default");
    check_name(name, "name")?;
    let rate_limit = rate_limit_field(&body)?;
    let key = ctx.store.create_key(project.id, name, None)?;
    let key = match rate_limit {
        Some(limit) => {
            let mut k = (*key).clone();
            k.rate_limit = limit;
            ctx.store.put_key(k)?
        }
        None => key,
    };
    Ok(ApiResponse::created(key_json(ctx, &key)))
}

fn find_key(ctx: &Ctx<'_>, project: &Project, key: &str) -> ApiResult<Arc<ProjectKey>> {
    ctx.store
        .meta()
        .key(key)
        .filter(|k| k.project_id == project.id)
        .ok_or_else(|| ApiError::NotFound("The requested resource does not exist".into()))
}

fn key_detail(ctx: &Ctx<'_>, org: &str, project: &str, key: &str) -> ApiResult {
    let (_, project) = ctx.project(org, project)?;
    ctx.require("project:read")?;
    let key = find_key(ctx, &project, key)?;
    Ok(ApiResponse::ok(key_json(ctx, &key)))
}

/// `PUT …/keys/{key}/` — name, `isActive` (disable/enable), `rateLimit`.
fn update_key(ctx: &Ctx<'_>, org: &str, project: &str, key: &str) -> ApiResult {
    let (_, project) = ctx.project(org, project)?;
    ctx.require("project:write")?;
    let mut changed = (*find_key(ctx, &project, key)?).clone();
    let body = ctx.req.json_body()?;
    if let Some(name) = body_str(&body, "name")? {
        check_name(name, "name")?;
        changed.label = name.to_owned();
    }
    match body.get("isActive") {
        None | Some(Value::Null) => {}
        Some(Value::Bool(b)) => changed.enabled = *b,
        Some(_) => return Err(ApiError::BadRequest("isActive must be a boolean".into())),
    }
    if let Some(limit) = rate_limit_field(&body)? {
        changed.rate_limit = limit;
    }
    let saved = ctx.store.put_key(changed)?;
    Ok(ApiResponse::ok(key_json(ctx, &saved)))
}

fn delete_key(ctx: &Ctx<'_>, org: &str, project: &str, key: &str) -> ApiResult {
    let (_, project) = ctx.project(org, project)?;
    ctx.require("project:admin")?;
    let key = find_key(ctx, &project, key)?;
    ctx.store.delete_key(&key.public_key)?;
    Ok(ApiResponse::no_content())
}

fn token_json(token: &storage::ApiToken) -> Value {
    json!({
        "id": token.id.to_string(),
        "name": token.name,
        "scopes": token.scopes,
        "dateCreated": iso(token.created_ms),
        "expiresAt": null,
    })
}

fn list_tokens(ctx: &Ctx<'_>) -> ApiResult {
    ctx.require("org:admin")?;
    let tokens: Vec<Value> = ctx
        .store
        .meta()
        .tokens_of_org(ctx.token.org_id)
        .iter()
        .map(|t| token_json(t))
        .collect();
    let page = Page::from_request(ctx.req, 100)?;
    let (items, link) = page.apply(tokens, ctx.req);
    Ok(ApiResponse::page(items, link))
}

/// Checks requested scopes: known ones only, at least one, none the caller lacks.
pub fn validate_scopes(
    requested: &[String],
    granter: Option<&storage::ApiToken>,
) -> Result<(), String> {
    if requested.is_empty() {
        return Err("at least one scope is required".into());
    }
    for scope in requested {
        if !ALL_SCOPES.contains(&scope.as_str()) {
            return Err(format!(
                "unknown scope {scope:?}; known scopes: {}",
                ALL_SCOPES.join(", ")
            ));
        }
        if let Some(granter) = granter {
            if !granter.has_scope(scope) {
                return Err(format!(
                    "cannot grant {scope:?}: the calling token does not have it"
                ));
            }
        }
    }
    Ok(())
}

/// `POST /api-tokens/ {"name", "scopes": [...]}` — a new token of the caller's organization,
/// with at most the caller's scopes. The secret is in the answer only.
fn create_token(ctx: &Ctx<'_>) -> ApiResult {
    ctx.require("org:admin")?;
    let body = ctx.req.json_body()?;
    let scopes: Vec<String> = match body.get("scopes") {
        Some(Value::Array(items)) => items
            .iter()
            .map(|s| {
                s.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| ApiError::BadRequest("scopes must be strings".into()))
            })
            .collect::<ApiResult<_>>()?,
        _ => return Err(ApiError::BadRequest("scopes (a list) is required".into())),
    };
    validate_scopes(&scopes, Some(ctx.token)).map_err(ApiError::BadRequest)?;
    let name = body_str(&body, "name")?.unwrap_or("api token");
    check_name(name, "name")?;
    let (secret, token) = ctx
        .store
        .create_token(ctx.token.org_id, name, &scopes, None)?;
    let mut out = token_json(&token);
    out["token"] = Value::String(secret);
    Ok(ApiResponse::created(out))
}

fn delete_token(ctx: &Ctx<'_>, id: u64) -> ApiResult {
    ctx.require("org:admin")?;
    ctx.store.delete_token(ctx.token.org_id, id)?;
    Ok(ApiResponse::no_content())
}

#[cfg(test)]
mod tests {
    use super::super::testutil::Fixture;
    use super::*;

    #[test]
    fn auth_is_required_and_checked() {
        let f = Fixture::new();
        let r = f.call(Method::GET, "/api/0/organizations/", None, None);
        assert_eq!(r.status, 401);
        assert!(r.body["detail"].as_str().unwrap().contains("credentials"));
        let r = f.call(Method::GET, "/api/0/organizations/", Some("wrong"), None);
        assert_eq!(r.status, 401);
        let r = f.get("/api/0/");
        assert_eq!(r.status, 200);
        assert!(r.body["auth"]["scopes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s == "project:write"));
        assert!(r.body["user"]["email"].is_string() && r.body["user"]["id"].is_string());
        let r = f.get("/api/0/auth/");
        assert_eq!(r.body["name"], "admin");
        let r = f.get("/api/0/no/such/thing/");
        assert_eq!(
            (r.status.as_u16(), r.body["detail"].is_string()),
            (404, true)
        );
    }

    #[test]
    fn organizations_and_projects_in_sentry_shape() {
        let f = Fixture::new();
        let r = f.get("/api/0/organizations/?per_page=26");
        let orgs = r.body.as_array().unwrap();
        assert_eq!(orgs.len(), 1);
        assert_eq!(orgs[0]["slug"], "default");
        assert_eq!(orgs[0]["id"], "1");
        assert_eq!(orgs[0]["links"]["regionUrl"], "");
        assert!(orgs[0]["dateCreated"].as_str().unwrap().ends_with('Z'));
        assert!(r.link.unwrap().contains("rel=\"next\"; results=\"false\""));
        assert_eq!(f.get("/api/0/organizations/?query=nomatch").body, json!([]));
        let r = f.get("/api/0/organizations/default/projects/?query=def");
        assert_eq!(r.body[0]["slug"], "default");
        assert_eq!(r.body[0]["team"]["slug"], "default");
        assert_eq!(f.get("/api/0/projects/default/1/").body["slug"], "default");
        assert_eq!(f.get("/api/0/projects/default/nope/").status, 404);
        assert_eq!(
            f.get("/api/0/organizations/1/").body["projects"][0]["id"],
            "1"
        );
    }

    /// A deleted project's keys stop at once, it leaves the listings, and its slug can be
    /// taken again by a new project with a new id.
    #[test]
    fn project_deletion() {
        let f = Fixture::new();
        let made = f.post(
            "/api/0/teams/default/default/projects/",
            json!({"name": "Web"}),
        );
        assert_eq!(made.status, 201, "{}", made.body);
        let old_id = made.body["id"].as_str().unwrap().to_owned();
        let key = f.store.meta().keys_of_project(old_id.parse().unwrap())[0].clone();
        let writer = f.token(1, &["project:write"]);
        let refused = f.call(
            Method::DELETE,
            "/api/0/projects/default/web/",
            Some(&writer),
            None,
        );
        assert_eq!(refused.status, 403);

        let r = f.call(
            Method::DELETE,
            "/api/0/projects/default/web/",
            Some(&f.admin),
            None,
        );
        assert_eq!(r.status, 204, "{}", r.body);
        assert!(
            f.store.meta().key(&key.public_key).is_none(),
            "its DSN key is gone"
        );
        assert_eq!(f.get("/api/0/projects/default/web/").status, 404);
        let listed = f.get("/api/0/organizations/default/projects/");
        assert_eq!(listed.body.as_array().unwrap().len(), 1, "{}", listed.body);
        let again = f.call(
            Method::DELETE,
            "/api/0/projects/default/web/",
            Some(&f.admin),
            None,
        );
        assert_eq!(again.status, 404);
        let remade = f.post(
            "/api/0/teams/default/default/projects/",
            json!({"name": "Web"}),
        );
        assert_eq!(remade.status, 201, "{}", remade.body);
        assert_ne!(remade.body["id"].as_str().unwrap(), old_id);

        let bootstrap = f.call(
            Method::DELETE,
            "/api/0/projects/default/default/",
            Some(&f.admin),
            None,
        );
        assert_eq!(bootstrap.status, 400, "{}", bootstrap.body);
        assert_eq!(f.get("/api/0/projects/default/default/").status, 200);
    }

    #[test]
    fn project_creation_update_and_conflicts() {
        let f = Fixture::new();
        let r = f.post(
            "/api/0/teams/default/default/projects/",
            json!({"name": "Web Shop", "platform": "python"}),
        );
        assert_eq!(r.status, 201, "{}", r.body);
        assert_eq!(r.body["slug"], "web-shop");
        assert_eq!(r.body["platform"], "python");
        let r = f.post(
            "/api/0/teams/default/default/projects/",
            json!({"name": "Web Shop"}),
        );
        assert_eq!(r.status, 409);
        let r = f.post(
            "/api/0/teams/default/default/projects/",
            json!({"name": "x", "slug": "Bad Slug"}),
        );
        assert_eq!(r.status, 400);
        let r = f.post(
            "/api/0/teams/default/other-team/projects/",
            json!({"name": "x"}),
        );
        assert_eq!(r.status, 404);
        let r = f.post("/api/0/teams/default/default/projects/", json!({}));
        assert_eq!(r.status, 400);
        // The new project got a DSN key.
        let keys = f.get("/api/0/projects/default/web-shop/keys/");
        assert_eq!(keys.body.as_array().unwrap().len(), 1);
        let r = f.put(
            "/api/0/projects/default/web-shop/",
            json!({"name": "Shop", "slug": "shop"}),
        );
        assert_eq!(
            (r.status.as_u16(), r.body["slug"].as_str()),
            (200, Some("shop"))
        );
        let r = f.put("/api/0/projects/default/shop/", json!({"slug": "default"}));
        assert_eq!(r.status, 409);
        assert_eq!(
            f.put("/api/0/projects/default/shop/", json!({"name": 5}))
                .status,
            400
        );
        assert_eq!(
            f.call(
                Method::POST,
                "/api/0/projects/default/shop/",
                Some(&f.admin),
                None
            )
            .status,
            405
        );
    }

    #[test]
    fn dsn_keys_list_create_update_disable_delete() {
        let f = Fixture::new();
        let r = f.post(
            "/api/0/projects/default/default/keys/",
            json!({"name": "CI", "rateLimit": {"window": 60, "count": 100}}),
        );
        assert_eq!(r.status, 201, "{}", r.body);
        let id = r.body["id"].as_str().unwrap().to_owned();
        assert_eq!(r.body["rateLimit"], json!({"window": 60, "count": 100}));
        let dsn = r.body["dsn"]["public"].as_str().unwrap();
        assert_eq!(dsn, format!("http://{id}@localhost/1"));
        assert_eq!(
            f.get("/api/0/projects/default/default/keys/")
                .body
                .as_array()
                .unwrap()
                .len(),
            2
        );
        let path = format!("/api/0/projects/default/default/keys/{id}/");
        let r = f.put(
            &path,
            json!({"isActive": false, "name": "CI-off", "rateLimit": null}),
        );
        assert_eq!(
            (r.body["isActive"].as_bool(), r.body["name"].as_str()),
            (Some(false), Some("CI-off"))
        );
        assert!(r.body["rateLimit"].is_null());
        assert!(!f.store.meta().key(&id).unwrap().enabled);
        let inactive = f.get("/api/0/projects/default/default/keys/?status=inactive");
        assert_eq!(inactive.body.as_array().unwrap().len(), 1);
        assert_eq!(
            f.put(&path, json!({"rateLimit": {"window": 0, "count": 1}}))
                .status,
            400
        );
        assert_eq!(
            f.call(Method::DELETE, &path, Some(&f.admin), None).status,
            204
        );
        assert!(f.store.meta().key(&id).is_none());
        assert_eq!(f.get(&path).status, 404);
    }

    #[test]
    fn scopes_and_org_isolation() {
        let f = Fixture::new();
        let reader = f.token(1, &["project:read", "org:read"]);
        // Read works, writes are 403.
        assert_eq!(
            f.call(
                Method::GET,
                "/api/0/projects/default/default/",
                Some(&reader),
                None
            )
            .status,
            200
        );
        let r = f.call(
            Method::POST,
            "/api/0/projects/default/default/keys/",
            Some(&reader),
            Some(json!({})),
        );
        assert_eq!(r.status, 403);
        assert!(r.body["detail"].as_str().unwrap().contains("project:write"));
        let r = f.call(
            Method::POST,
            "/api/0/teams/default/default/projects/",
            Some(&reader),
            Some(json!({"name": "x"})),
        );
        assert_eq!(r.status, 403);
        // A token of another organization sees none of this one.
        let other_org = f.store.create_organization("acme", "Acme").unwrap();
        f.store
            .create_project(other_org.id, "web", "Web", "")
            .unwrap();
        let foreign = f.token(other_org.id, storage::ALL_SCOPES);
        for path in [
            "/api/0/organizations/default/",
            "/api/0/organizations/default/projects/",
            "/api/0/projects/default/default/",
            "/api/0/projects/default/default/keys/",
        ] {
            assert_eq!(
                f.call(Method::GET, path, Some(&foreign), None).status,
                404,
                "{path}"
            );
        }
        let orgs = f.call(Method::GET, "/api/0/organizations/", Some(&foreign), None);
        assert_eq!(orgs.body.as_array().unwrap().len(), 1);
        assert_eq!(orgs.body[0]["slug"], "acme");
        // And the admin token of `default` does not see `acme`.
        assert_eq!(f.get("/api/0/projects/acme/web/").status, 404);
    }

    #[test]
    fn tokens_are_created_with_at_most_the_callers_scopes() {
        let f = Fixture::new();
        let r = f.post(
            "/api/0/api-tokens/",
            json!({"name": "ci", "scopes": ["project:read", "project:releases"]}),
        );
        assert_eq!(r.status, 201, "{}", r.body);
        let secret = r.body["token"].as_str().unwrap().to_owned();
        let t = f.store.meta().token(&secret).unwrap();
        assert_eq!(t.scopes, ["project:read", "project:releases"]);
        assert_eq!(
            f.post("/api/0/api-tokens/", json!({"scopes": ["root"]}))
                .status,
            400
        );
        assert_eq!(
            f.post("/api/0/api-tokens/", json!({"scopes": []})).status,
            400
        );
        // A non-admin token cannot mint tokens.
        let r = f.call(
            Method::POST,
            "/api/0/api-tokens/",
            Some(&secret),
            Some(json!({"scopes": ["project:read"]})),
        );
        assert_eq!(r.status, 403);
        let listed = f.get("/api/0/api-tokens/");
        assert!(listed
            .body
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t.get("token").is_none()));
        assert_eq!(listed.body.as_array().unwrap().len(), 2);
        let path = format!("/api/0/api-tokens/{}/", t.id);
        assert_eq!(
            f.call(Method::DELETE, &path, Some(&f.admin), None).status,
            204
        );
        assert_eq!(
            f.call(Method::GET, "/api/0/", Some(&secret), None).status,
            401
        );
        assert!(validate_scopes(&["org:admin".into()], Some(&t)).is_err());
    }

    #[test]
    fn slugs() {
        assert_eq!(slugify("  Web Shop (EU)!"), "web-shop-eu");
        assert_eq!(slugify("a__b"), "a__b");
        assert!(
            valid_slug("123").is_err() && valid_slug("").is_err() && valid_slug("ok-1").is_ok()
        );
    }
}
