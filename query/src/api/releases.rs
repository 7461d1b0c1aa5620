//! Releases, deploys, commits and repositories, as `sentry-cli` calls them:
//! `releases new|finalize|list|info|delete`, `releases set-commits` (`--commit REPO@SHA` lists
//! the organization's repositories first, then PUTs `refs`; without repositories it sends
//! `commits` from the local git tree), and `deploys new`.

use std::collections::{BTreeSet, HashMap};

use http::{Method, StatusCode};
use serde_json::{json, Value};
use storage::releases::{self as rel, Commit, Deploy, Release, ReleaseRef, Repository};
use storage::{now_ms, Organization};

use super::util::{iso, iso_opt, parse_iso, Page};
use super::{body_str, not_allowed, ApiError, ApiResponse, ApiResult, Ctx};

const READ: &[&str] = &["project:read", "project:releases"];
const WRITE: &[&str] = &["project:write", "project:releases"];

/// Most releases one list answer considers (newest first).
const MAX_LISTED: usize = 1_000;

pub(super) fn route(
    ctx: &Ctx<'_>,
    method: &Method,
    segs: &[&str],
) -> ApiResult<Option<ApiResponse>> {
    let m = method;
    let resp = match segs {
        ["organizations", org, "releases"] => match *m {
            Method::GET => list_releases(ctx, org, None)?,
            Method::POST => create_release(ctx, org, None)?,
            _ => return Err(not_allowed(m)),
        },
        ["organizations", org, "releases", version] => match *m {
            Method::GET => release_detail(ctx, org, version)?,
            Method::PUT => update_release(ctx, org, version)?,
            Method::DELETE => delete_release(ctx, org, version)?,
            _ => return Err(not_allowed(m)),
        },
        ["organizations", org, "releases", version, "deploys"] => match *m {
            Method::GET => list_deploys(ctx, org, version)?,
            Method::POST => create_deploy(ctx, org, version)?,
            _ => return Err(not_allowed(m)),
        },
        ["organizations", org, "releases", version, "commits"] => match *m {
            Method::GET => list_commits(ctx, org, version)?,
            _ => return Err(not_allowed(m)),
        },
        ["organizations", org, "releases", version, "previous-with-commits"] => match *m {
            Method::GET => previous_with_commits(ctx, org, version)?,
            _ => return Err(not_allowed(m)),
        },
        ["projects", org, project, "releases"] => {
            let (org, project) = ctx.project(org, project)?;
            match *m {
                Method::GET => list_releases(ctx, &org.slug, Some(project.id))?,
                Method::POST => create_release(ctx, &org.slug, Some(project.id))?,
                _ => return Err(not_allowed(m)),
            }
        }
        ["projects", org, project, "releases", version] => {
            let (org, project) = ctx.project(org, project)?;
            ctx.require_any(READ)?;
            let release = find(ctx, &org, version)?;
            if release.projects.binary_search(&project.id).is_err() {
                return Err(ApiError::NotFound(
                    "The requested resource does not exist".into(),
                ));
            }
            match *m {
                Method::GET => {
                    ApiResponse::ok(release_json(ctx, &org, &release, &new_groups(ctx, &org)?)?)
                }
                _ => return Err(not_allowed(m)),
            }
        }
        ["projects", org, project, "releases", version, "stats"] => {
            let (org, project) = ctx.project(org, project)?;
            ctx.require_any(READ)?;
            match *m {
                Method::GET => release_stats(ctx, &org, &project, version)?,
                _ => return Err(not_allowed(m)),
            }
        }
        ["organizations", org, "repos"] => match *m {
            Method::GET => list_repos(ctx, org)?,
            Method::POST => create_repo(ctx, org)?,
            _ => return Err(not_allowed(m)),
        },
        ["organizations", org, "repos", id] => match *m {
            Method::DELETE => delete_repo(ctx, org, id)?,
            _ => return Err(not_allowed(m)),
        },
        _ => return Ok(None),
    };
    Ok(Some(resp))
}

fn find(ctx: &Ctx<'_>, org: &Organization, version: &str) -> ApiResult<Release> {
    rel::release(ctx.store, org.id, version)?
        .ok_or_else(|| ApiError::NotFound("Release not found".into()))
}

/// A stable numeric id for a release (Sentry's releases have one; ours are keyed by version):
/// FNV-1a of org and version, kept within JavaScript's exact integers.
fn release_id(org_id: u64, version: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in org_id.to_be_bytes().iter().chain(version.as_bytes()) {
        hash ^= u64::from(*b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash & ((1 << 53) - 1)
}

/// `package@version+build` → Sentry's `versionInfo`.
fn version_info(version: &str) -> Value {
    let (package, rest) = match version.split_once('@') {
        Some((p, r)) if !p.is_empty() => (Value::String(p.to_owned()), r),
        _ => (Value::Null, version),
    };
    let (raw, build) = match rest.split_once('+') {
        Some((r, b)) => (r, Value::String(b.to_owned())),
        None => (rest, Value::Null),
    };
    json!({
        "package": package,
        "version": {"raw": raw},
        "description": rest,
        "buildHash": build,
    })
}

fn commit_json(c: &Commit) -> Value {
    json!({
        "id": c.id,
        "message": c.message,
        "dateCreated": iso_opt(c.timestamp_ms),
        "repository": {"name": c.repository},
        "author": match (&c.author_name, &c.author_email) {
            (None, None) => Value::Null,
            (name, email) => json!({"name": name, "email": email}),
        },
    })
}

/// The release's commits; with only refs (`--commit REPO@SHA`), each head stands as a commit.
fn commits_of(release: &Release) -> Vec<Commit> {
    if !release.commits.is_empty() {
        return release.commits.clone();
    }
    release
        .refs
        .iter()
        .map(|r| Commit {
            id: r.commit.clone(),
            repository: r.repository.clone(),
            ..Default::default()
        })
        .collect()
}

fn deploy_json(d: &Deploy) -> Value {
    json!({
        "id": d.id.to_string(),
        "environment": d.environment,
        "name": d.name,
        "url": d.url,
        "dateStarted": iso_opt(d.date_started_ms),
        "dateFinished": iso(d.date_finished_ms),
    })
}

/// Issues first seen in each (release, project): Sentry's `newGroups`.
type NewGroups = HashMap<(String, u64), u64>;

/// Most issue records read to count new issues per release.
const MAX_ISSUES_SCANNED: usize = 100_000;

/// Counts, for every release of the organization's projects, the issues it introduced (their
/// first release), in one bounded scan of the issue records.
fn new_groups(ctx: &Ctx<'_>, org: &Organization) -> ApiResult<NewGroups> {
    let projects: BTreeSet<u64> = ctx
        .store
        .meta()
        .project_ids_of_org(org.id)
        .into_iter()
        .collect();
    let store = ctx.store;
    let mut out = NewGroups::new();
    let prefix = [storage::keys::issues::ISSUE];
    for item in store
        .db()
        .prefix_iterator_cf(&store.cf(storage::cf::ISSUES), prefix)
        .take(MAX_ISSUES_SCANNED)
    {
        let (key, value) = item.map_err(storage::StorageError::from)?;
        if key.first() != Some(&storage::keys::issues::ISSUE) {
            break;
        }
        let rec = storage::records::IssueRecord::from_bytes(&value)?;
        if let (Some(release), true) = (rec.first_release, projects.contains(&rec.project_id)) {
            *out.entry((release, rec.project_id)).or_default() += 1;
        }
    }
    Ok(out)
}

/// Sentry's release shape.
pub(super) fn release_json(
    ctx: &Ctx<'_>,
    org: &Organization,
    r: &Release,
    new_groups: &NewGroups,
) -> ApiResult<Value> {
    let new_in = |project: u64| {
        new_groups
            .get(&(r.version.clone(), project))
            .copied()
            .unwrap_or(0)
    };
    let deploys = rel::deploys(ctx.store, org.id, &r.version, 10_000)?;
    let commits = commits_of(r);
    let projects: Vec<Value> = r
        .projects
        .iter()
        .filter_map(|id| ctx.store.meta().project(*id))
        .map(|p| {
            json!({
                "id": p.id,
                "slug": p.slug,
                "name": p.name,
                "newGroups": new_in(p.id),
                "platform": if p.platform.is_empty() { Value::Null } else { Value::String(p.platform.clone()) },
                "platforms": if p.platform.is_empty() { json!([]) } else { json!([p.platform]) },
                "hasHealthData": false,
            })
        })
        .collect();
    let mut authors: BTreeSet<(String, String)> = BTreeSet::new();
    for c in &commits {
        if c.author_name.is_some() || c.author_email.is_some() {
            authors.insert((
                c.author_name.clone().unwrap_or_default(),
                c.author_email.clone().unwrap_or_default(),
            ));
        }
    }
    Ok(json!({
        "id": release_id(org.id, &r.version),
        "version": r.version,
        "shortVersion": r.version,
        "ref": r.reference,
        "url": r.url,
        "status": r.status,
        "dateCreated": iso(r.date_created_ms),
        "dateStarted": iso_opt(r.date_started_ms),
        "dateReleased": iso_opt(r.date_released_ms),
        "firstEvent": iso_opt(r.first_event_ms),
        "lastEvent": iso_opt(r.last_event_ms),
        "newGroups": r.projects.iter().map(|p| new_in(*p)).sum::<u64>(),
        "commitCount": commits.len(),
        "lastCommit": commits.first().map(commit_json),
        "deployCount": deploys.len(),
        "lastDeploy": deploys.last().map(deploy_json),
        "authors": authors.iter().map(|(n, e)| json!({"name": n, "email": e})).collect::<Vec<_>>(),
        "projects": projects,
        "data": {},
        "owner": null,
        "versionInfo": version_info(&r.version),
    }))
}

fn list_releases(ctx: &Ctx<'_>, org: &str, project: Option<u64>) -> ApiResult {
    let org = ctx.org(org)?;
    ctx.require_any(READ)?;
    let query = ctx.req.param("query").map(str::to_lowercase);
    let project_filter: Option<Vec<u64>> = match project {
        Some(p) => Some(vec![p]),
        None => {
            let ids: Vec<u64> = ctx
                .req
                .params("project")
                .iter()
                .filter_map(|p| p.parse().ok())
                .filter(|p: &u64| *p != 0 && *p != u64::MAX)
                .collect();
            (!ids.is_empty()).then_some(ids)
        }
    };
    let releases: Vec<Release> = rel::releases(ctx.store, org.id, MAX_LISTED)?
        .into_iter()
        .filter(|r| {
            query
                .as_deref()
                .is_none_or(|q| r.version.to_lowercase().contains(q))
        })
        .filter(|r| {
            project_filter
                .as_ref()
                .is_none_or(|ids| ids.iter().any(|id| r.projects.contains(id)))
        })
        .collect();
    let page = Page::from_request(ctx.req, 100)?;
    let (releases, link) = page.apply(releases, ctx.req);
    let groups = new_groups(ctx, &org)?;
    let items = releases
        .iter()
        .map(|r| release_json(ctx, &org, r, &groups))
        .collect::<ApiResult<Vec<_>>>()?;
    Ok(ApiResponse::page(items, link))
}

fn date_field(body: &Value, key: &str) -> ApiResult<Option<u64>> {
    match body_str(body, key)? {
        None => Ok(None),
        Some(s) => parse_iso(s)
            .map(Some)
            .ok_or_else(|| ApiError::BadRequest(format!("{key} is not an ISO 8601 date: {s:?}"))),
    }
}

/// Project slugs or ids of the body's `projects` → ids (each must be in the organization).
fn projects_field(ctx: &Ctx<'_>, org: &Organization, body: &Value) -> ApiResult<Option<Vec<u64>>> {
    let Some(value) = body.get("projects").filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    let items = value
        .as_array()
        .ok_or_else(|| ApiError::BadRequest("projects must be a list".into()))?;
    let mut ids = Vec::with_capacity(items.len());
    for item in items {
        let name = match item {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            _ => return Err(ApiError::BadRequest("projects must be slugs or ids".into())),
        };
        let project = ctx
            .store
            .meta()
            .project_by_slug(org.id, &name)
            .ok_or_else(|| ApiError::BadRequest(format!("Invalid project ids or slugs: {name}")))?;
        ids.push(project.id);
    }
    ids.sort_unstable();
    ids.dedup();
    Ok(Some(ids))
}

/// Reads `refs` (heads per repository); each repository must be registered, as in Sentry.
fn refs_field(
    ctx: &Ctx<'_>,
    org: &Organization,
    body: &Value,
) -> ApiResult<Option<Vec<ReleaseRef>>> {
    let Some(value) = body.get("refs").filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    let items = value
        .as_array()
        .ok_or_else(|| ApiError::BadRequest("refs must be a list".into()))?;
    let repos = rel::repositories(ctx.store, org.id)?;
    let mut refs = Vec::with_capacity(items.len());
    let mut unknown = Vec::new();
    for item in items.iter().take(rel::MAX_COMMITS_PER_RELEASE) {
        let repository = body_str(item, "repository")?
            .ok_or_else(|| ApiError::BadRequest("each ref needs a repository".into()))?;
        let commit = body_str(item, "commit")?
            .ok_or_else(|| ApiError::BadRequest("each ref needs a commit".into()))?;
        match repos
            .iter()
            .find(|r| r.name.eq_ignore_ascii_case(repository))
        {
            Some(repo) => refs.push(ReleaseRef {
                repository: repo.name.clone(),
                commit: commit.to_owned(),
                previous_commit: body_str(item, "previousCommit")?.map(str::to_owned),
            }),
            None => unknown.push(repository.to_owned()),
        }
    }
    if !unknown.is_empty() {
        return Err(ApiError::BadRequest(format!(
            "Invalid repository names: {}",
            unknown.join(", ")
        )));
    }
    Ok(Some(refs))
}

/// Reads `commits` (sentry-cli's local-git mode): newest first, bounded.
fn commits_field(body: &Value) -> ApiResult<Option<Vec<Commit>>> {
    let Some(value) = body.get("commits").filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    let items = value
        .as_array()
        .ok_or_else(|| ApiError::BadRequest("commits must be a list".into()))?;
    let mut commits = Vec::with_capacity(items.len().min(rel::MAX_COMMITS_PER_RELEASE));
    for item in items.iter().take(rel::MAX_COMMITS_PER_RELEASE) {
        let id = body_str(item, "id")?
            .ok_or_else(|| ApiError::BadRequest("each commit needs an id".into()))?;
        commits.push(Commit {
            id: id.to_owned(),
            repository: body_str(item, "repository")?.unwrap_or("").to_owned(),
            message: body_str(item, "message")?.map(str::to_owned),
            author_name: body_str(item, "author_name")?.map(str::to_owned),
            author_email: body_str(item, "author_email")?.map(str::to_owned),
            timestamp_ms: date_field(item, "timestamp")?,
        });
    }
    Ok(Some(commits))
}

/// Applies the optional fields common to create and update.
fn apply_fields(ctx: &Ctx<'_>, org: &Organization, body: &Value, r: &mut Release) -> ApiResult<()> {
    if let Some(reference) = body_str(body, "ref")? {
        r.reference = Some(reference.to_owned());
    }
    if let Some(url) = body_str(body, "url")? {
        r.url = Some(url.to_owned());
    }
    if let Some(t) = date_field(body, "dateStarted")? {
        r.date_started_ms = Some(t);
    }
    if let Some(t) = date_field(body, "dateReleased")? {
        r.date_released_ms = Some(t);
    }
    if let Some(status) = body_str(body, "status")? {
        if !matches!(status, "open" | "archived") {
            return Err(ApiError::BadRequest(format!(
                "status must be open or archived, got {status:?}"
            )));
        }
        r.status = status.to_owned();
    }
    if let Some(refs) = refs_field(ctx, org, body)? {
        r.refs = refs;
    }
    if let Some(commits) = commits_field(body)? {
        r.commits = commits;
    }
    Ok(())
}

/// `POST /organizations/{org}/releases/` (also `/projects/{org}/{project}/releases/`):
/// creates a release, or adds projects to an existing one (208, as Sentry answers).
fn create_release(ctx: &Ctx<'_>, org: &str, project: Option<u64>) -> ApiResult {
    let org = ctx.org(org)?;
    ctx.require_any(WRITE)?;
    let body = ctx.req.json_body()?;
    let version = body_str(&body, "version")?
        .ok_or_else(|| ApiError::BadRequest("version is required".into()))?;
    rel::validate_version(version)?;
    let mut projects = projects_field(ctx, &org, &body)?.unwrap_or_default();
    if let Some(p) = project {
        projects.push(p);
    }
    projects.sort_unstable();
    projects.dedup();
    if projects.is_empty() {
        return Err(ApiError::BadRequest(
            "projects: at least one project is required".into(),
        ));
    }
    let (mut release, status) = match rel::release(ctx.store, org.id, version)? {
        Some(existing) => (existing, StatusCode::ALREADY_REPORTED),
        None => (
            Release {
                org_id: org.id,
                version: version.to_owned(),
                date_created_ms: now_ms(),
                status: "open".into(),
                ..Default::default()
            },
            StatusCode::CREATED,
        ),
    };
    for p in projects {
        if let Err(at) = release.projects.binary_search(&p) {
            release.projects.insert(at, p);
        }
    }
    apply_fields(ctx, &org, &body, &mut release)?;
    rel::put_release(ctx.store, &release)?;
    Ok(ApiResponse {
        status,
        body: release_json(ctx, &org, &release, &new_groups(ctx, &org)?)?,
        link: None,
        file: None,
    })
}

fn release_detail(ctx: &Ctx<'_>, org: &str, version: &str) -> ApiResult {
    let org = ctx.org(org)?;
    ctx.require_any(READ)?;
    let release = find(ctx, &org, version)?;
    Ok(ApiResponse::ok(release_json(
        ctx,
        &org,
        &release,
        &new_groups(ctx, &org)?,
    )?))
}

/// `PUT …/releases/{version}/`: finalize (`dateReleased`), refs, commits, url, status,
/// and more projects.
fn update_release(ctx: &Ctx<'_>, org: &str, version: &str) -> ApiResult {
    let org = ctx.org(org)?;
    ctx.require_any(WRITE)?;
    let mut release = find(ctx, &org, version)?;
    let body = ctx.req.json_body()?;
    if let Some(projects) = projects_field(ctx, &org, &body)? {
        for p in projects {
            if let Err(at) = release.projects.binary_search(&p) {
                release.projects.insert(at, p);
            }
        }
    }
    apply_fields(ctx, &org, &body, &mut release)?;
    rel::put_release(ctx.store, &release)?;
    Ok(ApiResponse::ok(release_json(
        ctx,
        &org,
        &release,
        &new_groups(ctx, &org)?,
    )?))
}

fn delete_release(ctx: &Ctx<'_>, org: &str, version: &str) -> ApiResult {
    let org = ctx.org(org)?;
    ctx.require("project:admin")
        .or_else(|_| ctx.require("project:releases"))?;
    find(ctx, &org, version)?;
    rel::delete_release(ctx.store, org.id, version)?;
    Ok(ApiResponse::no_content())
}

fn list_deploys(ctx: &Ctx<'_>, org: &str, version: &str) -> ApiResult {
    let org = ctx.org(org)?;
    ctx.require_any(READ)?;
    find(ctx, &org, version)?;
    let mut deploys = rel::deploys(ctx.store, org.id, version, 10_000)?;
    deploys.reverse();
    let page = Page::from_request(ctx.req, 100)?;
    let items: Vec<Value> = deploys.iter().map(deploy_json).collect();
    let (items, link) = page.apply(items, ctx.req);
    Ok(ApiResponse::page(items, link))
}

/// `POST …/releases/{version}/deploys/` — `sentry-cli deploys new -r VERSION -e ENV`.
fn create_deploy(ctx: &Ctx<'_>, org: &str, version: &str) -> ApiResult {
    let org = ctx.org(org)?;
    ctx.require_any(WRITE)?;
    let release = find(ctx, &org, version)?;
    let body = ctx.req.json_body()?;
    let environment = body_str(&body, "environment")?
        .ok_or_else(|| ApiError::BadRequest("environment is required".into()))?;
    let projects = projects_field(ctx, &org, &body)?.unwrap_or_else(|| release.projects.clone());
    let deploy = rel::create_deploy(
        ctx.store,
        Deploy {
            org_id: org.id,
            version: version.to_owned(),
            environment: environment.to_owned(),
            name: body_str(&body, "name")?.map(str::to_owned),
            url: body_str(&body, "url")?.map(str::to_owned),
            date_started_ms: date_field(&body, "dateStarted")?,
            date_finished_ms: date_field(&body, "dateFinished")?.unwrap_or_else(now_ms),
            projects,
            ..Default::default()
        },
    )?;
    Ok(ApiResponse::created(deploy_json(&deploy)))
}

fn list_commits(ctx: &Ctx<'_>, org: &str, version: &str) -> ApiResult {
    let org = ctx.org(org)?;
    ctx.require_any(READ)?;
    let release = find(ctx, &org, version)?;
    let items: Vec<Value> = commits_of(&release).iter().map(commit_json).collect();
    let page = Page::from_request(ctx.req, 100)?;
    let (items, link) = page.apply(items, ctx.req);
    Ok(ApiResponse::page(items, link))
}

/// The newest release created before this one that has commits, or `{}`.
fn previous_with_commits(ctx: &Ctx<'_>, org: &str, version: &str) -> ApiResult {
    let org = ctx.org(org)?;
    ctx.require_any(READ)?;
    let current = find(ctx, &org, version)?;
    // `releases` is newest first (ties broken by version), so "before" is "later in the list".
    let previous = rel::releases(ctx.store, org.id, MAX_LISTED)?
        .into_iter()
        .skip_while(|r| r.version != current.version)
        .skip(1)
        .find(|r| !r.commits.is_empty() || !r.refs.is_empty());
    Ok(ApiResponse::ok(match previous {
        Some(r) => release_json(ctx, &org, &r, &new_groups(ctx, &org)?)?,
        None => json!({}),
    }))
}

fn repo_json(r: &Repository) -> Value {
    json!({
        "id": r.id.to_string(),
        "name": r.name,
        "url": r.url,
        "provider": {"id": r.provider, "name": r.provider},
        "status": "active",
        "dateCreated": iso(r.date_created_ms),
        "integrationId": null,
        "externalSlug": r.name,
    })
}

fn list_repos(ctx: &Ctx<'_>, org: &str) -> ApiResult {
    let org = ctx.org(org)?;
    ctx.require("org:read")?;
    let items: Vec<Value> = rel::repositories(ctx.store, org.id)?
        .iter()
        .map(repo_json)
        .collect();
    let page = Page::from_request(ctx.req, 100)?;
    let (items, link) = page.apply(items, ctx.req);
    Ok(ApiResponse::page(items, link))
}

/// `POST /organizations/{org}/repos/ {"name", "url"?, "provider"?}` — registers a repository
/// so that releases can reference it (Sentry learns them from integrations; osprey has none).
fn create_repo(ctx: &Ctx<'_>, org: &str) -> ApiResult {
    let org = ctx.org(org)?;
    ctx.require("org:write")?;
    let body = ctx.req.json_body()?;
    let name =
        body_str(&body, "name")?.ok_or_else(|| ApiError::BadRequest("name is required".into()))?;
    let provider = body_str(&body, "provider")?.unwrap_or("osprey");
    let repo = rel::create_repository(ctx.store, org.id, name, body_str(&body, "url")?, provider)?;
    Ok(ApiResponse::created(repo_json(&repo)))
}

fn delete_repo(ctx: &Ctx<'_>, org: &str, id: &str) -> ApiResult {
    let org = ctx.org(org)?;
    ctx.require("org:write")?;
    let id: u64 = id
        .parse()
        .map_err(|_| ApiError::NotFound("The requested resource does not exist".into()))?;
    if !rel::repositories(ctx.store, org.id)?
        .iter()
        .any(|r| r.id == id)
    {
        return Err(ApiError::NotFound(
            "The requested resource does not exist".into(),
        ));
    }
    rel::delete_repository(ctx.store, org.id, id)?;
    Ok(ApiResponse::no_content())
}

/// Default window of release statistics: Sentry's release pages look back 30 days.
const STATS_PERIOD_MS: u64 = 30 * 86_400_000;

/// The numbers of one release of one project in a window.
struct ReleaseNumbers {
    version: String,
    date_created_ms: u64,
    new_issues: u64,
    events: u64,
    users: u64,
    transactions: u64,
    failure_rate: Option<f64>,
    p95_ms: Option<f64>,
    scan_limited: bool,
    health: crate::sessions::ReleaseHealth,
}

impl ReleaseNumbers {
    fn to_json(&self) -> Value {
        json!({
            "version": self.version,
            "dateCreated": iso(self.date_created_ms),
            "newIssues": self.new_issues,
            "events": self.events,
            "users": self.users,
            "transactions": self.transactions,
            "failureRate": self.failure_rate,
            "p95": self.p95_ms,
            "ospreyScanLimited": self.scan_limited,
            // Release health, as Sentry's `healthData`: crash-free rates in percent.
            "sessions": self.health.sessions,
            "sessionsCrashed": self.health.sessions_crashed,
            "crashFreeSessions": self.health.crash_free_sessions.map(|r| r * 100.0),
            "crashFreeUsers": self.health.crash_free_users.map(|r| r * 100.0),
        })
    }
}

/// Counts what happened in `release` of `project` within `[start, end)`:
/// - new issues: issues of the project whose first event carried this release;
/// - events and users: error events of the release, and distinct users (`user` as Discover
///   shows it: id, email, username or IP) over its error events and transactions, counted
///   exactly from the stored events (at most [`super::discover::MAX_SCANNED`] read, newest
///   first; `ospreyScanLimited` says when the window held more);
/// - transactions, failure rate and p95: from the release's transaction histograms;
/// - sessions, crashed sessions and crash-free sessions/users (percent): from the release
///   health counters (`crate::sessions`), over the window widened to whole hours.
fn release_numbers(
    ctx: &Ctx<'_>,
    org: &Organization,
    project: &storage::Project,
    release: &Release,
    (start_ms, end_ms): (u64, u64),
) -> ApiResult<ReleaseNumbers> {
    let version = release.version.as_str();
    let new_issues = new_groups(ctx, org)?
        .get(&(version.to_owned(), project.id))
        .copied()
        .unwrap_or(0);
    let stored = super::discover::scan(ctx, &[project.id], start_ms, end_ms)?;
    let scan_limited = stored.len() >= super::discover::MAX_SCANNED;
    let mut events = 0u64;
    let mut users = BTreeSet::new();
    for ev in &stored {
        if ev.event.get("release").and_then(Value::as_str) != Some(version) {
            continue;
        }
        if ev.event.get("type").and_then(Value::as_str) != Some("transaction") {
            events += 1;
        }
        if let Some(user) = super::discover::user_display(ev.event.get("user")) {
            users.insert(user);
        }
    }
    let perf = ctx
        .query
        .perf(&crate::perf::PerfQuery {
            project_id: project.id,
            range: crate::perf::TimeRange::Between { start_ms, end_ms },
            release: Some(version.to_owned()),
            ..crate::perf::PerfQuery::default()
        })
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(ReleaseNumbers {
        version: version.to_owned(),
        date_created_ms: release.date_created_ms,
        new_issues,
        events,
        users: users.len() as u64,
        transactions: perf.total.count,
        failure_rate: perf.total.failure_rate,
        p95_ms: perf.total.p95_ms,
        scan_limited,
        health: ctx
            .query
            .release_health(project.id, Some(version), None, (start_ms, end_ms))?,
    })
}

/// `GET /projects/{org}/{project}/releases/{version}/stats/[?statsPeriod=30d|start=&end=]
/// [&previous=VERSION]`: the release's new issues, events, users, transactions, failure rate,
/// p95 and release health (sessions, crash-free sessions and users), next to the same numbers of the previous release (semantic-version order when
/// the versions parse, else creation order; `previous=` picks another) and the changes.
fn release_stats(
    ctx: &Ctx<'_>,
    org: &Organization,
    project: &storage::Project,
    version: &str,
) -> ApiResult {
    let release = find(ctx, org, version)?;
    if release.projects.binary_search(&project.id).is_err() {
        return Err(ApiError::NotFound(
            "The requested resource does not exist".into(),
        ));
    }
    let now = now_ms();
    let window = match ctx.req.param("statsPeriod").filter(|p| !p.is_empty()) {
        Some(p) => {
            let ms = crate::search::parse_duration(p)
                .ok_or_else(|| ApiError::BadRequest(format!("invalid statsPeriod {p:?}")))?;
            (now.saturating_sub(ms), now)
        }
        None => {
            let bound = |key: &str| -> ApiResult<Option<u64>> {
                ctx.req
                    .param(key)
                    .map(|v| {
                        parse_iso(v)
                            .ok_or_else(|| ApiError::BadRequest(format!("invalid {key} {v:?}")))
                    })
                    .transpose()
            };
            let end = bound("end")?.unwrap_or(now);
            (
                bound("start")?.unwrap_or(end.saturating_sub(STATS_PERIOD_MS)),
                end,
            )
        }
    };
    if window.0 >= window.1 {
        return Err(ApiError::BadRequest("start must be before end".into()));
    }
    let previous = match ctx.req.param("previous") {
        Some(v) => Some(find(ctx, org, v)?),
        None => rel::previous_release(ctx.store, org.id, project.id, version)?,
    };
    let order = match &previous {
        Some(p) if rel::compare_versions(&p.version, version).is_some() => "semver",
        Some(_) => "date",
        None => "none",
    };
    let current = release_numbers(ctx, org, project, &release, window)?;
    let before = previous
        .as_ref()
        .map(|p| release_numbers(ctx, org, project, p, window))
        .transpose()?;
    let changes = before.as_ref().map(|b| {
        let diff = |a: Option<f64>, b: Option<f64>| a.zip(b).map(|(a, b)| a - b);
        let count = |a: u64, b: u64| a as i64 - b as i64;
        json!({
            "newIssues": count(current.new_issues, b.new_issues),
            "events": count(current.events, b.events),
            "users": count(current.users, b.users),
            "transactions": count(current.transactions, b.transactions),
            "failureRate": diff(current.failure_rate, b.failure_rate),
            "p95": diff(current.p95_ms, b.p95_ms),
            "crashFreeSessions": diff(
                current.health.crash_free_sessions.map(|r| r * 100.0),
                b.health.crash_free_sessions.map(|r| r * 100.0),
            ),
        })
    });
    Ok(ApiResponse::ok(json!({
        "release": current.to_json(),
        "previous": before.as_ref().map(ReleaseNumbers::to_json),
        "previousOrder": order,
        "changes": changes,
        "start": iso(window.0),
        "end": iso(window.1),
    })))
}

#[cfg(test)]
mod tests {
    use super::super::testutil::Fixture;
    use super::*;

    #[test]
    fn release_lifecycle_as_sentry_cli_drives_it() {
        let f = Fixture::new();
        // releases new
        let r = f.post(
            "/api/0/organizations/default/releases/",
            json!({"version": "app@1.0.0+42", "projects": ["default"], "dateStarted": "2026-11-28T12:56:08.532828397Z"}),
        );
        assert_eq!(r.status, 201, "{}", r.body);
        assert_eq!(r.body["version"], "app@1.0.0+42");
        assert_eq!(r.body["projects"][0]["slug"], "default");
        assert_eq!(r.body["versionInfo"]["package"], "app");
        assert_eq!(r.body["versionInfo"]["buildHash"], "42");
        assert_eq!(r.body["dateStarted"], "2026-11-28T12:56:08.532Z");
        assert!(r.body["dateReleased"].is_null());
        // Again: 208 and unchanged.
        let again = f.post(
            "/api/0/organizations/default/releases/",
            json!({"version": "app@1.0.0+42", "projects": ["1"]}),
        );
        assert_eq!(again.status, 208);
        // finalize (version in the path is percent-encoded by sentry-cli)
        let r = f.put(
            "/api/0/organizations/default/releases/app%401.0.0%2B42/",
            json!({"projects": ["default"], "dateReleased": "2026-11-28T13:00:00Z"}),
        );
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.body["dateReleased"], "2026-11-28T13:00:00.000Z");
        // info + list (project form)
        let info = f.get("/api/0/organizations/default/releases/app@1.0.0+42/");
        assert_eq!(info.body["dateReleased"], "2026-11-28T13:00:00.000Z");
        let list = f.get("/api/0/projects/default/default/releases/");
        assert_eq!(list.body.as_array().unwrap().len(), 1);
        assert!(list.link.is_some());
        assert_eq!(
            f.get("/api/0/organizations/default/releases/?query=nomatch")
                .body,
            json!([])
        );
        assert_eq!(
            f.get("/api/0/organizations/default/releases/2.0/").status,
            404
        );
        // bad input
        assert_eq!(
            f.post(
                "/api/0/organizations/default/releases/",
                json!({"version": "a/b", "projects": ["default"]})
            )
            .status,
            400
        );
        assert_eq!(
            f.post(
                "/api/0/organizations/default/releases/",
                json!({"version": "2.0", "projects": ["nope"]})
            )
            .status,
            400
        );
        assert_eq!(
            f.post(
                "/api/0/organizations/default/releases/",
                json!({"version": "2.0"})
            )
            .status,
            400
        );
        assert_eq!(
            f.put(
                "/api/0/organizations/default/releases/app@1.0.0+42/",
                json!({"dateReleased": "soon"})
            )
            .status,
            400
        );
    }

    #[test]
    fn set_commits_needs_a_registered_repository() {
        let f = Fixture::new();
        f.post(
            "/api/0/organizations/default/releases/",
            json!({"version": "1.0", "projects": ["default"]}),
        );
        let refs = json!({"refs": [{"repository": "acme/web", "commit": "abcdef0123", "previousCommit": null}]});
        let r = f.put("/api/0/organizations/default/releases/1.0/", refs.clone());
        assert_eq!(r.status, 400);
        assert!(r.body["detail"].as_str().unwrap().contains("acme/web"));
        let repo = f.post(
            "/api/0/organizations/default/repos/",
            json!({"name": "acme/web", "url": "https://example.invalid/acme/web"}),
        );
        assert_eq!(repo.status, 201);
        let repos = f.get("/api/0/organizations/default/repos/?cursor=");
        assert_eq!(repos.body[0]["name"], "acme/web");
        assert_eq!(repos.body[0]["provider"]["id"], "osprey");
        let r = f.put("/api/0/organizations/default/releases/1.0/", refs);
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.body["lastCommit"]["id"], "abcdef0123");
        assert_eq!(r.body["commitCount"], 1);
        let commits = f.get("/api/0/organizations/default/releases/1.0/commits/");
        assert_eq!(commits.body[0]["repository"]["name"], "acme/web");
        // Local-git mode: full commits.
        f.post(
            "/api/0/organizations/default/releases/",
            json!({"version": "1.1", "projects": ["default"]}),
        );
        let prev = f.get("/api/0/organizations/default/releases/1.1/previous-with-commits/");
        assert_eq!(prev.body["version"], "1.0");
        let r = f.put(
            "/api/0/organizations/default/releases/1.1/",
            json!({"commits": [{"id": "c2", "repository": "acme/web", "author_name": "Ann", "author_email": "ann@example.invalid",
                                "timestamp": "2026-11-28T10:00:00+01:00", "message": "fix", "patch_set": []}]}),
        );
        assert_eq!(r.body["authors"][0]["name"], "Ann");
        assert_eq!(
            r.body["lastCommit"]["dateCreated"],
            "2026-11-28T09:00:00.000Z"
        );
        assert_eq!(
            f.get("/api/0/organizations/default/releases/1.0/previous-with-commits/")
                .body,
            json!({})
        );
    }

    #[test]
    fn deploys_are_recorded_and_listed() {
        let f = Fixture::new();
        assert_eq!(
            f.post(
                "/api/0/organizations/default/releases/1.0/deploys/",
                json!({"environment": "production"})
            )
            .status,
            404
        );
        f.post(
            "/api/0/organizations/default/releases/",
            json!({"version": "1.0", "projects": ["default"]}),
        );
        let r = f.post(
            "/api/0/organizations/default/releases/1.0/deploys/",
            json!({"environment": "production", "name": null, "url": null, "dateStarted": null, "dateFinished": "2026-11-28T12:56:09.097892872Z"}),
        );
        assert_eq!(r.status, 201, "{}", r.body);
        assert_eq!(r.body["environment"], "production");
        assert_eq!(r.body["dateFinished"], "2026-11-28T12:56:09.097Z");
        f.post(
            "/api/0/organizations/default/releases/1.0/deploys/",
            json!({"environment": "staging"}),
        );
        let list = f.get("/api/0/organizations/default/releases/1.0/deploys/");
        let envs: Vec<&str> = list
            .body
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["environment"].as_str().unwrap())
            .collect();
        assert_eq!(envs, ["staging", "production"]);
        let info = f.get("/api/0/organizations/default/releases/1.0/");
        assert_eq!(info.body["deployCount"], 2);
        assert_eq!(info.body["lastDeploy"]["environment"], "staging");
        assert_eq!(
            f.post(
                "/api/0/organizations/default/releases/1.0/deploys/",
                json!({})
            )
            .status,
            400
        );
        assert_eq!(
            f.call(
                Method::DELETE,
                "/api/0/organizations/default/releases/1.0/",
                Some(&f.admin),
                None
            )
            .status,
            204
        );
        assert_eq!(
            f.get("/api/0/organizations/default/releases/1.0/deploys/")
                .status,
            404
        );
    }

    #[test]
    fn release_scopes_and_isolation() {
        let f = Fixture::new();
        let ci = f.token(1, &["project:releases"]);
        let r = f.call(
            Method::POST,
            "/api/0/organizations/default/releases/",
            Some(&ci),
            Some(json!({"version": "1", "projects": ["default"]})),
        );
        assert_eq!(r.status, 201);
        let reader = f.token(1, &["project:read"]);
        let r = f.call(
            Method::POST,
            "/api/0/organizations/default/releases/",
            Some(&reader),
            Some(json!({"version": "2", "projects": ["default"]})),
        );
        assert_eq!(r.status, 403);
        assert_eq!(
            f.call(
                Method::GET,
                "/api/0/organizations/default/releases/1/",
                Some(&reader),
                None
            )
            .status,
            200
        );
        let acme = f.store.create_organization("acme", "Acme").unwrap();
        let foreign = f.token(acme.id, storage::ALL_SCOPES);
        assert_eq!(
            f.call(
                Method::GET,
                "/api/0/organizations/default/releases/1/",
                Some(&foreign),
                None
            )
            .status,
            404
        );
        assert_eq!(
            f.call(
                Method::GET,
                "/api/0/organizations/acme/releases/",
                Some(&foreign),
                None
            )
            .body,
            json!([])
        );
    }

    #[test]
    fn releases_seen_in_events_show_up() {
        let f = Fixture::new();
        let mut batch = rocksdb_batch();
        storage::ensure_release(
            &f.store,
            &mut batch,
            1,
            "web@2.0",
            1_700_000_000_000,
            1_700_000_000_000,
        )
        .unwrap();
        f.store.write(batch, false).unwrap();
        let r = f.get("/api/0/organizations/default/releases/web@2.0/");
        assert_eq!(r.body["firstEvent"], "2023-11-14T22:13:20.000Z");
        assert_eq!(r.body["projects"][0]["id"], 1);
        assert_eq!(r.body["newGroups"], 0);
        // Two issues first seen in web@2.0, one in another release.
        let mut batch = rocksdb_batch();
        for (id, release) in [(1u64, "web@2.0"), (2, "web@2.0"), (3, "web@1.0")] {
            let rec = storage::records::IssueRecord {
                id,
                project_id: 1,
                short_id: id,
                event_type: "error".into(),
                title: "E".into(),
                culprit: String::new(),
                metadata: Default::default(),
                level: "error".into(),
                platform: "python".into(),
                logger: String::new(),
                status: Default::default(),
                substatus: None,
                first_seen_ms: 1,
                last_seen_ms: 1,
                active_at_ms: 1,
                first_release: Some(release.into()),
                last_release: None,
                resolution: None,
                primary_hash: format!("{id:032x}"),
            };
            batch.put_cf(
                &f.store.cf(storage::cf::ISSUES),
                storage::keys::issue(id),
                rec.to_bytes(),
            );
        }
        f.store.write(batch, false).unwrap();
        let r = f.get("/api/0/organizations/default/releases/web@2.0/");
        assert_eq!(r.body["newGroups"], 2);
        assert_eq!(r.body["projects"][0]["newGroups"], 2);
        let list = f.get("/api/0/organizations/default/releases/");
        assert_eq!(list.body[0]["newGroups"], 2);
    }

    fn rocksdb_batch() -> storage::WriteBatch {
        storage::WriteBatch::default()
    }
}
