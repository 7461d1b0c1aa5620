//! Issues as Sentry's API shows them (`GroupSerializer` shapes): list with search, sort and
//! cursor, one issue by numeric or short id, and tag facets.
//!
//! Issue records are small and few compared to events, so a list is a scan of the issue
//! table, filtered and sorted in memory; counts come from the merge-operator counters.

use std::cmp::Reverse;
use std::collections::HashMap;

use serde::Serialize;
use serde_json::Value;
use storage::records::{self, IssueRecord, IssueStatus, IssueSubstatus};
use storage::workflow::{self, IssueWorkflow};
use storage::{cf, decode_i64, keys, Result, Store};

use crate::search::{self, wildcard_match, Assignee, IsFilter, NumberField, Term, TimeField};
use crate::QueryService;

/// A new issue stays `new` for this long, then becomes `ongoing` (Sentry: 7 days).
const NEW_ISSUE_MS: u64 = 7 * 86_400_000;
/// Most tag values a facet scan reads.
const MAX_TAG_SCAN: usize = 10_000;
/// Most issue records a list scans.
const MAX_ISSUE_SCAN: usize = 100_000;

pub use crate::search::IssueSort;

/// Parameters of [`QueryService::issues`].
#[derive(Debug, Clone, Default)]
pub struct IssueQuery {
    /// Organization whose projects to search (`None` = every organization).
    pub org_id: Option<u64>,
    /// Restrict to these projects (empty = all of the organization).
    pub project_ids: Vec<u64>,
    /// Sentry search syntax ([`crate::search`], the same parser and matching as the HTTP
    /// API); a syntax error is [`storage::StorageError::Invalid`] with its position.
    pub query: String,
    /// Only issues seen at or after this time (unix ms), e.g. from `statsPeriod`.
    pub seen_since_ms: Option<u64>,
    /// Sort order.
    pub sort: IssueSort,
    /// Page size (capped at 100; 0 = 25).
    pub limit: usize,
    /// Opaque cursor from a previous page.
    pub cursor: Option<String>,
}

/// A project reference inside an issue.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ProjectRef {
    /// Id as a string, as Sentry sends it.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Slug.
    pub slug: String,
    /// Platform.
    pub platform: Option<String>,
}

/// A release reference (`firstRelease`/`lastRelease`).
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ReleaseRef {
    /// The version string.
    pub version: String,
    /// Sentry's short form (same as the version here).
    pub short_version: String,
}

/// An issue in Sentry's API shape.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Issue {
    /// Numeric id as a string.
    pub id: String,
    /// `SLUG-1A`.
    pub short_id: String,
    /// Title.
    pub title: String,
    /// Culprit.
    pub culprit: String,
    /// Link to the issue: a path until [`Issue::absolutize`] prefixes the server URL.
    pub permalink: String,
    /// Logger, if any.
    pub logger: Option<String>,
    /// Level.
    pub level: String,
    /// `unresolved`, `resolved` or `ignored`.
    pub status: String,
    /// Extra status data (`inRelease`, `inNextRelease`, …).
    pub status_details: Value,
    /// `new`, `ongoing`, `regressed`, `escalating`, `archived_*`, or null.
    pub substatus: Option<String>,
    /// Always false (no public sharing).
    pub is_public: bool,
    /// Platform.
    pub platform: String,
    /// The project.
    pub project: ProjectRef,
    /// `error` or `default`.
    #[serde(rename = "type")]
    pub issue_event_type: String,
    /// Metadata (`type`, `value`, `filename`, `function` / `title`).
    pub metadata: Value,
    /// Comments (none yet).
    pub num_comments: u64,
    /// Assignee (none).
    pub assigned_to: Option<Value>,
    /// Bookmark flag.
    pub is_bookmarked: bool,
    /// Subscription flag.
    pub is_subscribed: bool,
    /// Seen flag.
    pub has_seen: bool,
    /// Annotations (none).
    pub annotations: Vec<Value>,
    /// `error`.
    pub issue_type: String,
    /// `error`.
    pub issue_category: String,
    /// Whether the main exception was unhandled.
    pub is_unhandled: bool,
    /// Times seen, as a string (Sentry's shape).
    pub count: String,
    /// Unique users.
    pub user_count: u64,
    /// First seen, ISO 8601 with `Z`.
    pub first_seen: String,
    /// Last seen, ISO 8601 with `Z`.
    pub last_seen: String,
    /// First release.
    pub first_release: Option<ReleaseRef>,
    /// Last release.
    pub last_release: Option<ReleaseRef>,
}

impl Issue {
    /// Prefixes the permalink with the server's base URL (`http://host:port`).
    pub fn absolutize(&mut self, base_url: &str) {
        if self.permalink.starts_with('/') {
            self.permalink = format!("{}{}", base_url.trim_end_matches('/'), self.permalink);
        }
    }
}

/// One page of issues.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct IssuePage {
    /// The issues.
    pub issues: Vec<Issue>,
    /// Cursor of the next page, if there is one.
    pub next_cursor: Option<String>,
    /// Cursor of the previous page, if there is one.
    pub prev_cursor: Option<String>,
    /// Matches in total.
    pub total: usize,
}

/// One value of a tag facet.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TagValue {
    /// The tag key.
    pub key: String,
    /// Display name of the value.
    pub name: String,
    /// The value.
    pub value: String,
    /// Events with this value.
    pub count: u64,
    /// Not tracked per value (null).
    pub last_seen: Option<String>,
    /// Not tracked per value (null).
    pub first_seen: Option<String>,
}

/// A tag facet of an issue (`/issues/{id}/tags/{key}/`).
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TagDetails {
    /// The tag key.
    pub key: String,
    /// Display name.
    pub name: String,
    /// Distinct values.
    pub unique_values: u64,
    /// Events with the tag.
    pub total_values: u64,
    /// Top values by count.
    pub top_values: Vec<TagValue>,
}

/// Unix ms → `2024-01-02T03:04:05.678Z`.
pub fn iso(ms: u64) -> String {
    chrono::DateTime::from_timestamp_millis(ms as i64)
        .map(|d| d.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
        .unwrap_or_default()
}

/// Parses Sentry-style cursors (`0:25:0`) or a plain offset.
pub fn parse_cursor(cursor: Option<&str>) -> usize {
    let Some(c) = cursor else { return 0 };
    let parts: Vec<&str> = c.split(':').collect();
    let offset = if parts.len() == 3 { parts[1] } else { c };
    offset.parse().unwrap_or(0)
}

fn cursor_at(offset: usize) -> String {
    format!("0:{offset}:0")
}

fn counter(store: &Store, key: &[u8]) -> Result<u64> {
    Ok(store
        .db()
        .get_pinned_cf(&store.cf(cf::COUNTERS), key)?
        .map(|v| decode_i64(&v).max(0) as u64)
        .unwrap_or(0))
}

/// Status as shown now: a `new` issue older than 7 days is `ongoing`.
fn effective_substatus(rec: &IssueRecord, now_ms: u64) -> Option<IssueSubstatus> {
    match rec.substatus {
        Some(IssueSubstatus::New) if rec.first_seen_ms + NEW_ISSUE_MS < now_ms => {
            Some(IssueSubstatus::Ongoing)
        }
        other => other,
    }
}

/// One issue as the search sees it: the record (ignore conditions refreshed), its workflow
/// state, totals and qualified short id.
#[derive(Debug, Clone)]
pub struct IssueRow {
    /// The processor's record.
    pub rec: IssueRecord,
    /// Assignee, ignore condition, labels.
    pub state: IssueWorkflow,
    /// Events ever.
    pub count: u64,
    /// Distinct users ever.
    pub users: u64,
    /// `SLUG-1A`.
    pub short_id: String,
}

/// Which issues [`QueryService::matching_issues`] returns.
#[derive(Debug, Clone, Copy)]
pub struct IssueFilter<'a> {
    /// Only these projects.
    pub project_ids: &'a [u64],
    /// The parsed query ([`crate::search::parse_issue_query`]); every term must match.
    pub query: &'a search::IssueQuery,
    /// Only issues last seen at or after this (unix ms).
    pub seen_since_ms: Option<u64>,
    /// Only issues first seen at or before this (unix ms).
    pub seen_until_ms: Option<u64>,
    /// Only issues with events in one of these environments (empty = any).
    pub environments: &'a [String],
    /// Who `assigned:me` is: user ids or names (empty = nobody).
    pub me: &'a [String],
    /// The clock for "new" (7 days).
    pub now_ms: u64,
}

/// Search keys naming a release, where `latest` stands for the project's newest release.
const RELEASE_KEYS: &[&str] = &[
    "release",
    "release.version",
    "firstRelease",
    "first_release",
];

impl QueryService {
    fn issue_ref_project(&self, project_id: u64) -> ProjectRef {
        match self.store().meta().project(project_id) {
            Some(p) => ProjectRef {
                id: p.id.to_string(),
                name: p.name.clone(),
                slug: p.slug.clone(),
                platform: (!p.platform.is_empty()).then(|| p.platform.clone()),
            },
            None => ProjectRef {
                id: project_id.to_string(),
                name: String::new(),
                slug: String::new(),
                platform: None,
            },
        }
    }

    /// Turns a stored record into the API shape.
    pub fn issue_from_record(&self, rec: &IssueRecord) -> Result<Issue> {
        let count = counter(
            self.store(),
            &keys::issue_counter(keys::counters::ISSUE_EVENTS, rec.id),
        )?;
        let users = counter(
            self.store(),
            &keys::issue_counter(keys::counters::ISSUE_USERS, rec.id),
        )?;
        Ok(self.render(rec, count, users))
    }

    fn render(&self, rec: &IssueRecord, count: u64, users: u64) -> Issue {
        let project = self.issue_ref_project(rec.project_id);
        let org_slug = self
            .store()
            .meta()
            .project(rec.project_id)
            .and_then(|p| self.store().meta().organization(p.org_id))
            .map(|o| o.slug.clone())
            .unwrap_or_else(|| "default".into());
        let status_details = match &rec.resolution {
            Some(res) if rec.status == IssueStatus::Resolved => {
                match (&res.release, res.in_next_release) {
                    (Some(_), true) => serde_json::json!({"inNextRelease": true}),
                    (Some(r), false) => serde_json::json!({"inRelease": r}),
                    _ => serde_json::json!({}),
                }
            }
            _ => serde_json::json!({}),
        };
        let release = |r: &Option<String>| {
            r.as_ref().map(|v| ReleaseRef {
                version: v.clone(),
                short_version: v.clone(),
            })
        };
        Issue {
            id: rec.id.to_string(),
            short_id: records::qualified_short_id(&project.slug, rec.short_id),
            title: rec.title.clone(),
            culprit: rec.culprit.clone(),
            permalink: format!("/organizations/{org_slug}/issues/{}/", rec.id),
            logger: (!rec.logger.is_empty()).then(|| rec.logger.clone()),
            level: rec.level.clone(),
            status: rec.status.as_str().to_owned(),
            status_details,
            substatus: effective_substatus(rec, storage::now_ms()).map(|s| s.as_str().to_owned()),
            is_public: false,
            platform: rec.platform.clone(),
            project,
            issue_event_type: rec.event_type.clone(),
            metadata: serde_json::to_value(&rec.metadata).unwrap_or(Value::Null),
            num_comments: 0,
            assigned_to: None,
            is_bookmarked: false,
            is_subscribed: false,
            has_seen: false,
            annotations: Vec::new(),
            issue_type: "error".into(),
            issue_category: "error".into(),
            is_unhandled: rec.metadata.unhandled,
            count: count.to_string(),
            user_count: users,
            first_seen: iso(rec.first_seen_ms),
            last_seen: iso(rec.last_seen_ms),
            first_release: release(&rec.first_release),
            last_release: release(&rec.last_release),
        }
    }

    /// Every issue record of one project (bounded scan of the issue table).
    pub fn project_issue_records(&self, project_id: u64) -> Result<Vec<IssueRecord>> {
        let mut all = self.issue_records()?;
        all.retain(|r| r.project_id == project_id);
        Ok(all)
    }

    /// Every issue record (bounded scan).
    fn issue_records(&self) -> Result<Vec<IssueRecord>> {
        let store = self.store();
        let mut out = Vec::new();
        let iter = store
            .db()
            .prefix_iterator_cf(&store.cf(cf::ISSUES), [keys::issues::ISSUE]);
        for item in iter.take(MAX_ISSUE_SCAN) {
            let (key, value) = item?;
            if key.first() != Some(&keys::issues::ISSUE) {
                break;
            }
            out.push(IssueRecord::from_bytes(&value)?);
        }
        Ok(out)
    }

    /// An ignored issue whose condition ran out is unresolved again (Sentry's
    /// "escalating"), checked when the issue is read so it needs no timer. A read-only
    /// follower leaves the record as it is.
    pub fn refresh_ignore(&self, rec: IssueRecord) -> Result<IssueRecord> {
        let store = self.store();
        if rec.status != IssueStatus::Ignored {
            return Ok(rec);
        }
        let state = workflow::workflow(store, rec.id)?;
        let Some(cond) = &state.ignore else {
            return Ok(rec);
        };
        let (count, users) = self.issue_totals(rec.id)?;
        if !cond.expired(count, users, storage::now_ms()) || store.ensure_writable().is_err() {
            return Ok(rec);
        }
        let updated = records::update_issue(store, rec.id, |r| {
            if r.status == IssueStatus::Ignored {
                r.status = IssueStatus::Unresolved;
                r.substatus = Some(IssueSubstatus::Escalating);
            }
        })?;
        workflow::put_workflow(
            store,
            rec.id,
            &IssueWorkflow {
                ignore: None,
                ..state.clone()
            },
        )?;
        workflow::add_activity(
            store,
            rec.id,
            "set_escalating",
            serde_json::json!({"reason": cond.mode}),
            None,
        )?;
        Ok(updated.unwrap_or(rec))
    }

    /// Events and distinct users of an issue, ever.
    pub fn issue_totals(&self, issue_id: u64) -> Result<(u64, u64)> {
        Ok((
            counter(
                self.store(),
                &keys::issue_counter(keys::counters::ISSUE_EVENTS, issue_id),
            )?,
            counter(
                self.store(),
                &keys::issue_counter(keys::counters::ISSUE_USERS, issue_id),
            )?,
        ))
    }

    /// Every issue that passes `f`, unsorted (bounded scan of the issue table). The HTTP
    /// API's issue list and bulk update, [`QueryService::issues`] (CLI) and MCP's
    /// `search_issues` all select issues here.
    pub fn matching_issues(&self, f: &IssueFilter<'_>) -> Result<Vec<IssueRow>> {
        let store = self.store();
        // Event ids in the query name issues through the stored events.
        let mut event_issues = Vec::new();
        for term in &f.query.terms {
            if let Term::EventId(id) = term {
                if let Ok(uuid) = uuid::Uuid::try_parse(id) {
                    for p in f.project_ids {
                        if let Some(ev) = records::load_event(store, *p, &uuid)? {
                            event_issues.extend(ev.issue_id);
                        }
                    }
                }
            }
        }
        let latest = self.latest_releases(f)?;
        let mut rows = Vec::new();
        for rec in self.issue_records()? {
            if !f.project_ids.contains(&rec.project_id) {
                continue;
            }
            if f.seen_since_ms.is_some_and(|s| rec.last_seen_ms < s)
                || f.seen_until_ms.is_some_and(|u| rec.first_seen_ms > u)
            {
                continue;
            }
            let rec = self.refresh_ignore(rec)?;
            let (count, users) = self.issue_totals(rec.id)?;
            let row = IssueRow {
                short_id: records::qualified_short_id(
                    &self.issue_ref_project(rec.project_id).slug,
                    rec.short_id,
                ),
                state: workflow::workflow(store, rec.id)?,
                rec,
                count,
                users,
            };
            let mut ok = f.environments.is_empty();
            for env in f.environments {
                if self.tag_has_value(row.rec.id, "environment", env)? {
                    ok = true;
                    break;
                }
            }
            for term in &f.query.terms {
                if !ok {
                    break;
                }
                ok = self.term_matches(&row, term, &event_issues, &latest, f)?;
            }
            if ok {
                rows.push(row);
            }
        }
        Ok(rows)
    }

    fn tag_has_value(&self, issue_id: u64, key: &str, pattern: &str) -> Result<bool> {
        if !pattern.contains('*') {
            let v = counter(self.store(), &keys::issue_tag(issue_id, key, pattern))?;
            return Ok(v > 0);
        }
        let details = self.tag_values(issue_id, key, 1_000)?;
        Ok(details
            .top_values
            .iter()
            .any(|t| t.count > 0 && wildcard_match(pattern, &t.value)))
    }

    /// Sentry's `release:latest`: per project of the filter, the version of its newest release
    /// (by creation), when the query names `latest` for a release field at all.
    fn latest_releases(&self, f: &IssueFilter<'_>) -> Result<HashMap<u64, String>> {
        let asks = f.query.terms.iter().any(|t| {
            matches!(t, Term::Field { key, values, .. }
                if RELEASE_KEYS.contains(&key.as_str()) && values.iter().any(|v| v == "latest"))
        });
        let mut latest = HashMap::new();
        if !asks {
            return Ok(latest);
        }
        let meta = self.store().meta();
        let mut orgs: Vec<u64> = f
            .project_ids
            .iter()
            .filter_map(|p| meta.project(*p).map(|p| p.org_id))
            .collect();
        orgs.sort_unstable();
        orgs.dedup();
        for org in orgs {
            // Newest first: the first release naming a project is that project's latest.
            for release in storage::releases::releases(self.store(), org, 10_000)? {
                for p in &release.projects {
                    latest.entry(*p).or_insert_with(|| release.version.clone());
                }
            }
        }
        Ok(latest)
    }

    fn term_matches(
        &self,
        row: &IssueRow,
        term: &Term,
        event_issues: &[u64],
        latest: &HashMap<u64, String>,
        f: &IssueFilter<'_>,
    ) -> Result<bool> {
        let rec = &row.rec;
        Ok(match term {
            Term::Is { negated, value } => {
                let sub = effective_substatus(rec, f.now_ms);
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
                    let pattern = match pattern.as_str() {
                        "latest" if RELEASE_KEYS.contains(&key.as_str()) => {
                            match latest.get(&rec.project_id) {
                                Some(version) => version,
                                // A project without releases has no latest one to match.
                                None => continue,
                            }
                        }
                        _ => pattern,
                    };
                    let one = match key.as_str() {
                        "level" => wildcard_match(pattern, &rec.level),
                        // Every osprey issue is of Sentry's error category and type (no
                        // performance, cron, replay or feedback issues).
                        "issue.category" | "issue.type" => wildcard_match(pattern, "error"),
                        "release" | "release.version" => {
                            rec.first_release
                                .as_deref()
                                .is_some_and(|r| wildcard_match(pattern, r))
                                || rec
                                    .last_release
                                    .as_deref()
                                    .is_some_and(|r| wildcard_match(pattern, r))
                                || self.tag_has_value(rec.id, "release", pattern)?
                        }
                        "firstRelease" | "first_release" => rec
                            .first_release
                            .as_deref()
                            .is_some_and(|r| wildcard_match(pattern, r)),
                        "title" | "message" => contains_or_wild(&rec.title, pattern),
                        "culprit" | "transaction"
                            if !rec.culprit.is_empty() || key == "culprit" =>
                        {
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
                            pattern == &rec.id.to_string()
                                || row.short_id.eq_ignore_ascii_case(pattern)
                        }
                        "project" => self
                            .store()
                            .meta()
                            .project(rec.project_id)
                            .is_some_and(|p| wildcard_match(pattern, &p.slug)),
                        // Labels people put on the issue match like event tags.
                        _ => {
                            row.state
                                .tags
                                .get(key.as_str())
                                .is_some_and(|v| wildcard_match(pattern, v))
                                || self.tag_has_value(rec.id, key, pattern)?
                        }
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
            Term::Assigned { negated, to } => assignee_matches(&row.state, to, f.me) != *negated,
            Term::Has { negated, key } => {
                let hit = match key.as_str() {
                    "release" => rec.first_release.is_some() || rec.last_release.is_some(),
                    "level" => !rec.level.is_empty(),
                    "assigned" | "assignee" => row.state.assigned_to.is_some(),
                    other => {
                        row.state.tags.contains_key(other)
                            || self.tag_values(rec.id, other, 1)?.total_values > 0
                    }
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

    /// Lists issues (Sentry's `GET /organizations/{org}/issues/`).
    pub fn issues(&self, q: &IssueQuery) -> Result<IssuePage> {
        let meta = self.store().meta();
        let allowed: Vec<u64> = if !q.project_ids.is_empty() {
            q.project_ids.clone()
        } else {
            let orgs = match q.org_id {
                Some(id) => vec![id],
                None => meta.organizations().iter().map(|o| o.id).collect(),
            };
            orgs.into_iter()
                .flat_map(|o| meta.projects_of_org(o).into_iter().map(|p| p.id))
                .collect()
        };
        let now = storage::now_ms();
        let query = search::parse_issue_query(&q.query, now)
            .map_err(|e| storage::StorageError::Invalid(e.to_string()))?;
        let mut rows = self.matching_issues(&IssueFilter {
            project_ids: &allowed,
            query: &query,
            seen_since_ms: q.seen_since_ms,
            seen_until_ms: None,
            environments: &[],
            me: &[],
            now_ms: now,
        })?;
        sort_issue_rows(&mut rows, q.sort);
        let limit = match q.limit {
            0 => 25,
            n => n.min(100),
        };
        let offset = parse_cursor(q.cursor.as_deref());
        let total = rows.len();
        let issues = rows
            .iter()
            .skip(offset)
            .take(limit)
            .map(|r| self.render(&r.rec, r.count, r.users))
            .collect();
        Ok(IssuePage {
            issues,
            next_cursor: (offset + limit < total).then(|| cursor_at(offset + limit)),
            prev_cursor: (offset > 0).then(|| cursor_at(offset.saturating_sub(limit))),
            total,
        })
    }

    /// The record behind a numeric id or a short id (`DEFAULT-1A`), within `org_id` if given.
    pub fn issue_record(
        &self,
        id_or_short_id: &str,
        org_id: Option<u64>,
    ) -> Result<Option<IssueRecord>> {
        let store = self.store();
        let in_org = |rec: &IssueRecord| match org_id {
            None => true,
            Some(org) => store
                .meta()
                .project(rec.project_id)
                .is_some_and(|p| p.org_id == org),
        };
        if let Ok(id) = id_or_short_id.parse::<u64>() {
            return Ok(records::load_issue(store, id)?.filter(in_org));
        }
        let Some((slug, number)) = records::parse_short_id(id_or_short_id) else {
            return Ok(None);
        };
        let orgs: Vec<u64> = match org_id {
            Some(o) => vec![o],
            None => store.meta().organizations().iter().map(|o| o.id).collect(),
        };
        for org in orgs {
            let Some(project) = store.meta().project_by_slug(org, &slug) else {
                continue;
            };
            let key = keys::issue_short_id(project.id, number);
            if let Some(v) = store.db().get_pinned_cf(&store.cf(cf::ISSUES), key)? {
                let Ok(bytes) = <[u8; 8]>::try_from(v.as_ref()) else {
                    continue;
                };
                return Ok(records::load_issue(store, u64::from_be_bytes(bytes))?.filter(in_org));
            }
        }
        Ok(None)
    }

    /// One issue by numeric or short id (Sentry's `GET /organizations/{org}/issues/{id}/`).
    pub fn issue(&self, id_or_short_id: &str, org_id: Option<u64>) -> Result<Option<Issue>> {
        match self.issue_record(id_or_short_id, org_id)? {
            Some(rec) => Ok(Some(self.issue_from_record(&rec)?)),
            None => Ok(None),
        }
    }

    /// Top values of one tag of an issue (`/issues/{id}/tags/{key}/`).
    pub fn tag_values(&self, issue_id: u64, tag_key: &str, limit: usize) -> Result<TagDetails> {
        let store = self.store();
        let prefix = keys::issue_tag_prefix(issue_id, tag_key);
        let mut values: Vec<(String, u64)> = Vec::new();
        for item in store
            .db()
            .prefix_iterator_cf(&store.cf(cf::COUNTERS), &prefix)
            .take(MAX_TAG_SCAN)
        {
            let (key, value) = item?;
            if !key.starts_with(&prefix) {
                break;
            }
            let count = decode_i64(&value).max(0) as u64;
            let v = String::from_utf8_lossy(&key[prefix.len()..]).into_owned();
            values.push((v, count));
        }
        Ok(tag_details(tag_key, values, limit))
    }

    /// Every tag key of an issue with its top values (`/issues/{id}/tags/`).
    pub fn issue_tags(&self, issue_id: u64, limit_per_key: usize) -> Result<Vec<TagDetails>> {
        let store = self.store();
        let mut prefix = vec![keys::counters::ISSUE_TAG];
        prefix.extend_from_slice(&issue_id.to_be_bytes());
        let mut by_key: std::collections::BTreeMap<String, Vec<(String, u64)>> = Default::default();
        for item in store
            .db()
            .prefix_iterator_cf(&store.cf(cf::COUNTERS), &prefix)
            .take(MAX_TAG_SCAN)
        {
            let (key, value) = item?;
            if !key.starts_with(&prefix) {
                break;
            }
            let rest = &key[prefix.len()..];
            let Some(sep) = rest.iter().position(|&b| b == 0) else {
                continue;
            };
            let k = String::from_utf8_lossy(&rest[..sep]).into_owned();
            let v = String::from_utf8_lossy(&rest[sep + 1..]).into_owned();
            by_key
                .entry(k)
                .or_default()
                .push((v, decode_i64(&value).max(0) as u64));
        }
        Ok(by_key
            .into_iter()
            .map(|(k, values)| tag_details(&k, values, limit_per_key))
            .collect())
    }
}

fn tag_details(key: &str, mut values: Vec<(String, u64)>, limit: usize) -> TagDetails {
    values.retain(|(_, c)| *c > 0);
    let unique = values.len() as u64;
    let total = values.iter().map(|(_, c)| c).sum();
    values.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    values.truncate(if limit == 0 { 10 } else { limit });
    TagDetails {
        key: key.to_owned(),
        name: tag_name(key),
        unique_values: unique,
        total_values: total,
        top_values: values
            .into_iter()
            .map(|(value, count)| TagValue {
                key: key.to_owned(),
                name: value.clone(),
                value,
                count,
                last_seen: None,
                first_seen: None,
            })
            .collect(),
    }
}

/// Sentry's display names for well-known tag keys.
fn tag_name(key: &str) -> String {
    match key {
        "level" => "Level".into(),
        "release" => "Release".into(),
        "environment" => "Environment".into(),
        "user" => "User".into(),
        "url" => "URL".into(),
        "transaction" => "Transaction".into(),
        "server_name" => "Server".into(),
        "browser" => "Browser".into(),
        "os" => "OS".into(),
        "runtime" => "Runtime".into(),
        "device" => "Device".into(),
        "handled" => "Handled".into(),
        "mechanism" => "Mechanism".into(),
        other => other.to_owned(),
    }
}

/// Sorts rows in `sort` order (ties by recency, then id, so pages are stable).
pub fn sort_issue_rows(rows: &mut [IssueRow], sort: IssueSort) {
    match sort {
        IssueSort::Date | IssueSort::Recommended => {
            rows.sort_by_key(|r| Reverse((r.rec.last_seen_ms, r.rec.id)))
        }
        IssueSort::New => rows.sort_by_key(|r| Reverse((r.rec.first_seen_ms, r.rec.id))),
        IssueSort::Freq => rows.sort_by_key(|r| Reverse((r.count, r.rec.last_seen_ms, r.rec.id))),
        IssueSort::User => rows.sort_by_key(|r| Reverse((r.users, r.count, r.rec.id))),
    }
}

fn assignee_matches(state: &IssueWorkflow, to: &Assignee, me: &[String]) -> bool {
    let current = state.assigned_to.as_ref();
    match to {
        Assignee::Nobody => current.is_none(),
        Assignee::Me => current
            .is_some_and(|a| a.kind == "user" && me.iter().any(|m| *m == a.id || *m == a.name)),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_and_dates() {
        assert_eq!(parse_cursor(Some("0:50:0")), 50);
        assert_eq!(parse_cursor(Some("7")), 7);
        assert_eq!(parse_cursor(Some("junk")), 0);
        assert_eq!(iso(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
    }
}
