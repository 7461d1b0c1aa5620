//! Issues as Sentry's API shows them (`GroupSerializer` shapes): list with search, sort and
//! cursor, one issue by numeric or short id, and tag facets.
//!
//! Issue records are small and few compared to events, so a list is a scan of the issue
//! table, filtered and sorted in memory; counts come from the merge-operator counters.

use std::cmp::Reverse;

use serde::Serialize;
use serde_json::Value;
use storage::records::{self, IssueRecord, IssueStatus, IssueSubstatus};
use storage::{cf, decode_i64, keys, Result, Store};

use crate::QueryService;

/// A new issue stays `new` for this long, then becomes `ongoing` (Sentry: 7 days).
const NEW_ISSUE_MS: u64 = 7 * 86_400_000;
/// Most tag values a facet scan reads.
const MAX_TAG_SCAN: usize = 10_000;
/// Most issue records a list scans.
const MAX_ISSUE_SCAN: usize = 100_000;

/// Sort orders of the issue list (Sentry's `sort` parameter).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IssueSort {
    /// Last seen, newest first (`date`; also used for `recommended`/`priority`/`trends`).
    #[default]
    Date,
    /// First seen, newest first (`new`).
    New,
    /// Times seen, most first (`freq`).
    Freq,
    /// Unique users, most first (`user`).
    User,
}

impl IssueSort {
    /// Parses Sentry's sort names; unknown names sort by date.
    pub fn parse(s: &str) -> IssueSort {
        match s {
            "new" => IssueSort::New,
            "freq" => IssueSort::Freq,
            "user" => IssueSort::User,
            _ => IssueSort::Date,
        }
    }
}

/// Parameters of [`QueryService::issues`].
#[derive(Debug, Clone, Default)]
pub struct IssueQuery {
    /// Organization whose projects to search (`None` = every organization).
    pub org_id: Option<u64>,
    /// Restrict to these projects (empty = all of the organization).
    pub project_ids: Vec<u64>,
    /// Sentry search syntax subset: `is:unresolved|resolved|ignored|archived|new|ongoing|
    /// regressed|unhandled`, `level:`, `release:`, `firstRelease:`, `issue:`/`issue.id:`,
    /// `project:`, negation with `!`, an event id, and free text (title, culprit, short id).
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

/// One parsed search term.
#[derive(Debug, Clone, PartialEq)]
enum Term {
    Is(String, bool),
    Field(String, String, bool),
    Text(String),
}

fn parse_query(q: &str) -> Vec<Term> {
    let mut terms = Vec::new();
    let mut rest = q.trim();
    while !rest.is_empty() {
        // A token runs to the next space outside quotes.
        let mut end = rest.len();
        let mut in_quotes = false;
        for (i, c) in rest.char_indices() {
            match c {
                '"' => in_quotes = !in_quotes,
                ' ' if !in_quotes => {
                    end = i;
                    break;
                }
                _ => {}
            }
        }
        let token = &rest[..end];
        rest = rest[end..].trim_start();
        let (negated, body) = match token.strip_prefix('!') {
            Some(b) => (true, b),
            None => (false, token),
        };
        match body.split_once(':') {
            Some((k, v))
                if !k.is_empty()
                    && k.chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '_') =>
            {
                let v = v.trim_matches('"').to_owned();
                if k == "is" {
                    terms.push(Term::Is(v.to_ascii_lowercase(), negated));
                } else {
                    terms.push(Term::Field(k.to_owned(), v, negated));
                }
            }
            _ => terms.push(Term::Text(token.trim_matches('"').to_owned())),
        }
    }
    terms
}

struct Row {
    rec: IssueRecord,
    count: u64,
    users: u64,
}

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

    fn matches(&self, row: &Row, terms: &[Term], event_issue: Option<u64>) -> bool {
        let rec = &row.rec;
        let now = storage::now_ms();
        let substatus = effective_substatus(rec, now);
        terms.iter().all(|t| match t {
            Term::Is(what, neg) => {
                let hit = match what.as_str() {
                    "unresolved" => rec.status == IssueStatus::Unresolved,
                    "resolved" => rec.status == IssueStatus::Resolved,
                    "ignored" | "archived" => rec.status == IssueStatus::Ignored,
                    "new" => substatus == Some(IssueSubstatus::New),
                    "ongoing" => substatus == Some(IssueSubstatus::Ongoing),
                    "regressed" => substatus == Some(IssueSubstatus::Regressed),
                    "escalating" => substatus == Some(IssueSubstatus::Escalating),
                    "unhandled" => rec.metadata.unhandled,
                    "unassigned" | "for_review" | "linked" | "unlinked" => true,
                    "assigned" | "bookmarked" => false,
                    _ => true,
                };
                hit != *neg
            }
            Term::Field(key, value, neg) => {
                let v = value.as_str();
                let hit = match key.as_str() {
                    "level" => v
                        .split(',')
                        .any(|l| l.trim_matches(['[', ']']) == rec.level),
                    "release" | "release.version" => {
                        rec.last_release.as_deref() == Some(v)
                            || rec.first_release.as_deref() == Some(v)
                    }
                    "firstRelease" | "first-release" => rec.first_release.as_deref() == Some(v),
                    "issue" | "issue.id" | "id" => {
                        let short = records::qualified_short_id(
                            &self.issue_ref_project(rec.project_id).slug,
                            rec.short_id,
                        );
                        v == rec.id.to_string() || short.eq_ignore_ascii_case(v)
                    }
                    "project" => self.issue_ref_project(rec.project_id).slug == v,
                    "error.type" | "type" => rec.metadata.exception_type.as_deref() == Some(v),
                    "platform" => rec.platform == v,
                    "culprit" => rec.culprit.contains(v),
                    "title" | "message" => contains_ci(&rec.title, v),
                    "times_seen" | "timesSeen" => compare_number(row.count, v),
                    "user.count" | "userCount" => compare_number(row.users, v),
                    // Unknown keys (environment, assigned, …) do not narrow the result.
                    _ => true,
                };
                hit != *neg
            }
            Term::Text(text) => {
                if let Some(id) = event_issue {
                    return rec.id == id;
                }
                let short = records::qualified_short_id(
                    &self.issue_ref_project(rec.project_id).slug,
                    rec.short_id,
                );
                contains_ci(&rec.title, text)
                    || contains_ci(&rec.culprit, text)
                    || short.eq_ignore_ascii_case(text)
                    || rec.id.to_string() == *text
            }
        })
    }

    /// The issue an event id (free text in a search) belongs to.
    fn issue_of_event_text(&self, terms: &[Term], project_ids: &[u64]) -> Result<Option<u64>> {
        let texts: Vec<&String> = terms
            .iter()
            .filter_map(|t| match t {
                Term::Text(s) => Some(s),
                _ => None,
            })
            .collect();
        let [text] = texts.as_slice() else {
            return Ok(None);
        };
        let Ok(event_id) = uuid::Uuid::try_parse(text) else {
            return Ok(None);
        };
        for project_id in project_ids {
            if let Some(ev) = records::load_event(self.store(), *project_id, &event_id)? {
                return Ok(ev.issue_id);
            }
        }
        Ok(Some(0))
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
        let terms = parse_query(&q.query);
        let event_issue = self.issue_of_event_text(&terms, &allowed)?;
        let mut rows = Vec::new();
        for rec in self.issue_records()? {
            if !allowed.contains(&rec.project_id) {
                continue;
            }
            if q.seen_since_ms
                .is_some_and(|since| rec.last_seen_ms < since)
            {
                continue;
            }
            let count = counter(
                self.store(),
                &keys::issue_counter(keys::counters::ISSUE_EVENTS, rec.id),
            )?;
            let users = counter(
                self.store(),
                &keys::issue_counter(keys::counters::ISSUE_USERS, rec.id),
            )?;
            let row = Row { rec, count, users };
            if self.matches(&row, &terms, event_issue) {
                rows.push(row);
            }
        }
        match q.sort {
            IssueSort::Date => rows.sort_by_key(|r| Reverse((r.rec.last_seen_ms, r.rec.id))),
            IssueSort::New => rows.sort_by_key(|r| Reverse((r.rec.first_seen_ms, r.rec.id))),
            IssueSort::Freq => {
                rows.sort_by_key(|r| Reverse((r.count, r.rec.last_seen_ms, r.rec.id)))
            }
            IssueSort::User => {
                rows.sort_by_key(|r| Reverse((r.users, r.rec.last_seen_ms, r.rec.id)))
            }
        }
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

fn contains_ci(hay: &str, needle: &str) -> bool {
    hay.to_lowercase().contains(&needle.to_lowercase())
}

/// `>10`, `<5`, `>=3`, `<=3` or `7`.
fn compare_number(actual: u64, expr: &str) -> bool {
    let (op, num) = if let Some(n) = expr.strip_prefix(">=") {
        (">=", n)
    } else if let Some(n) = expr.strip_prefix("<=") {
        ("<=", n)
    } else if let Some(n) = expr.strip_prefix('>') {
        (">", n)
    } else if let Some(n) = expr.strip_prefix('<') {
        ("<", n)
    } else {
        ("=", expr)
    };
    let Ok(n) = num.parse::<u64>() else {
        return true;
    };
    match op {
        ">=" => actual >= n,
        "<=" => actual <= n,
        ">" => actual > n,
        "<" => actual < n,
        _ => actual == n,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_parsing() {
        let t = parse_query(r#"is:unresolved !level:info release:"1.0 beta" Timeout error"#);
        assert_eq!(
            t,
            vec![
                Term::Is("unresolved".into(), false),
                Term::Field("level".into(), "info".into(), true),
                Term::Field("release".into(), "1.0 beta".into(), false),
                Term::Text("Timeout".into()),
                Term::Text("error".into()),
            ]
        );
        assert_eq!(parse_cursor(Some("0:50:0")), 50);
        assert_eq!(parse_cursor(Some("7")), 7);
        assert_eq!(parse_cursor(Some("junk")), 0);
        assert!(compare_number(5, ">3") && !compare_number(5, "<=4") && compare_number(5, "5"));
        assert_eq!(iso(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
    }
}
