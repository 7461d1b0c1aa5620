//! Release health: sums of the session counters and user sketches the processor keeps
//! (`storage::sessions`), in the shape of Sentry's `GET /api/0/organizations/{org}/sessions/`.
//!
//! Fields: `sum(session)`, `count_unique(user)`, `crash_rate(session|user)` and
//! `crash_free_rate(session|user)` (fractions 0–1, `null` without sessions). Groups:
//! `project`, `release`, `environment` and the virtual `session.status`, which splits every
//! group into `healthy`, `errored`, `crashed` and `abnormal` as Sentry does: healthy = all −
//! errored (errored counts crashed and abnormal sessions too), errored = errored − crashed −
//! abnormal, so the four add up to the total. Users are the same arithmetic over distinct
//! users (sketches: exact for small numbers, within ~1 % up to tens of thousands).

use std::collections::{BTreeMap, HashMap};

use storage::sessions::{self as sk, metric, users};
use storage::{cf, decode_i64, hist, keys, Result, StorageError, Store};

use crate::outcomes::iso_seconds;
use crate::perf::users::estimate;
use crate::QueryService;

/// Most groups an answer may have (before `session.status` splits them).
pub const MAX_SESSION_GROUPS: usize = 1000;
/// Most counters and sketches one query reads.
pub const MAX_SESSION_ROWS: usize = 2_000_000;
const WORDS: usize = (keys::perf::USER_SLOTS as usize).div_ceil(64);

/// A requested field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionsField {
    /// `sum(session)`.
    Sessions,
    /// `count_unique(user)`.
    Users,
    /// `crash_rate(session)`.
    CrashRateSessions,
    /// `crash_rate(user)`.
    CrashRateUsers,
    /// `crash_free_rate(session)`.
    CrashFreeSessions,
    /// `crash_free_rate(user)`.
    CrashFreeUsers,
}

impl SessionsField {
    /// Every field, in the order of their names in errors.
    pub const ALL: [SessionsField; 6] = [
        SessionsField::Sessions,
        SessionsField::Users,
        SessionsField::CrashRateSessions,
        SessionsField::CrashRateUsers,
        SessionsField::CrashFreeSessions,
        SessionsField::CrashFreeUsers,
    ];

    /// The field's name in requests and answers.
    pub fn name(self) -> &'static str {
        match self {
            SessionsField::Sessions => "sum(session)",
            SessionsField::Users => "count_unique(user)",
            SessionsField::CrashRateSessions => "crash_rate(session)",
            SessionsField::CrashRateUsers => "crash_rate(user)",
            SessionsField::CrashFreeSessions => "crash_free_rate(session)",
            SessionsField::CrashFreeUsers => "crash_free_rate(user)",
        }
    }

    /// The field named `name`.
    pub fn parse(name: &str) -> Option<SessionsField> {
        Self::ALL.into_iter().find(|f| f.name() == name)
    }

    /// Whether the field is a rate (which `session.status` cannot split).
    pub fn is_rate(self) -> bool {
        !matches!(self, SessionsField::Sessions | SessionsField::Users)
    }

    fn needs_users(self) -> bool {
        matches!(
            self,
            SessionsField::Users | SessionsField::CrashRateUsers | SessionsField::CrashFreeUsers
        )
    }
}

/// A `groupBy` column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionsGroupBy {
    /// `project` (the project id).
    Project,
    /// `release`.
    Release,
    /// `environment`.
    Environment,
    /// `session.status`: healthy, errored, crashed, abnormal.
    Status,
}

impl SessionsGroupBy {
    /// The column's name in requests and answers.
    pub fn name(self) -> &'static str {
        match self {
            SessionsGroupBy::Project => "project",
            SessionsGroupBy::Release => "release",
            SessionsGroupBy::Environment => "environment",
            SessionsGroupBy::Status => "session.status",
        }
    }

    /// The column named `name`.
    pub fn parse(name: &str) -> Option<SessionsGroupBy> {
        [
            SessionsGroupBy::Project,
            SessionsGroupBy::Release,
            SessionsGroupBy::Environment,
            SessionsGroupBy::Status,
        ]
        .into_iter()
        .find(|g| g.name() == name)
    }
}

/// The statuses `session.status` splits a group into, in answer order.
pub const STATUSES: [&str; 4] = ["healthy", "errored", "crashed", "abnormal"];

/// A validated sessions question.
#[derive(Debug, Clone)]
pub struct SessionsQuery {
    /// Fields, in answer order.
    pub fields: Vec<SessionsField>,
    /// Group-by columns.
    pub group_by: Vec<SessionsGroupBy>,
    /// Projects to read.
    pub projects: Vec<u64>,
    /// Only these environments (empty = all).
    pub environments: Vec<String>,
    /// Only these releases (empty = all).
    pub releases: Vec<String>,
    /// Range start (unix ms, a multiple of the interval).
    pub start_ms: u64,
    /// Range end, exclusive.
    pub end_ms: u64,
    /// Interval (a whole number of hours).
    pub interval_ms: u64,
    /// The `query` text of the request, echoed in the answer.
    pub query_text: String,
}

impl SessionsQuery {
    /// Sessions and users of `project_id` (optionally one release and one environment) in
    /// `[start_ms, end_ms)` widened to whole hours (sessions are counted per hour), as one
    /// interval, grouped by `group_by`: the question behind release health.
    pub fn health(
        project_id: u64,
        release: Option<&str>,
        environment: Option<&str>,
        (start_ms, end_ms): (u64, u64),
        group_by: Vec<SessionsGroupBy>,
    ) -> SessionsQuery {
        const HOUR: u64 = 3_600_000;
        let start = keys::hour_start(start_ms);
        let end = end_ms.div_ceil(HOUR).saturating_mul(HOUR).max(start + HOUR);
        SessionsQuery {
            fields: vec![SessionsField::Sessions, SessionsField::Users],
            group_by,
            projects: vec![project_id],
            environments: environment.map(str::to_owned).into_iter().collect(),
            releases: release.map(str::to_owned).into_iter().collect(),
            start_ms: start,
            end_ms: end,
            interval_ms: end - start,
            query_text: String::new(),
        }
    }
}

/// Session counts of one set of hours.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SessionCounts {
    /// Sessions started.
    pub started: i64,
    /// Errored sessions (crashed and abnormal included).
    pub errored: i64,
    /// Crashed sessions.
    pub crashed: i64,
    /// Abnormal sessions.
    pub abnormal: i64,
}

impl SessionCounts {
    fn add(&mut self, suffix: u8, n: i64) {
        match suffix {
            metric::STARTED => self.started += n,
            metric::ERRORED => self.errored += n,
            metric::CRASHED => self.crashed += n,
            metric::ABNORMAL => self.abnormal += n,
            _ => {}
        }
    }

    /// The count of one status (`None` = all), as Sentry splits them.
    pub fn of_status(&self, status: Option<&str>) -> i64 {
        let errored = self.errored.min(self.started);
        match status {
            None => self.started,
            Some("healthy") => (self.started - errored).max(0),
            Some("errored") => (errored - self.crashed - self.abnormal).max(0),
            Some("crashed") => self.crashed,
            Some("abnormal") => self.abnormal,
            Some(_) => 0,
        }
    }

    /// Crashed / started, `None` without sessions.
    pub fn crash_rate(&self) -> Option<f64> {
        (self.started > 0).then(|| (self.crashed.min(self.started)) as f64 / self.started as f64)
    }
}

/// Occupied slots of the four user sketches of a set of hours.
#[derive(Clone)]
struct UserBits([Vec<u64>; 4]);

impl UserBits {
    fn new() -> UserBits {
        UserBits(std::array::from_fn(|_| vec![0; WORDS]))
    }

    fn index(which: u8) -> Option<usize> {
        match which {
            users::ALL => Some(0),
            users::ERRORED => Some(1),
            users::CRASHED => Some(2),
            users::ABNORMAL => Some(3),
            _ => None,
        }
    }

    fn set(&mut self, which: usize, slot: u32) {
        if let Some(word) = self.0[which].get_mut(slot as usize / 64) {
            *word |= 1 << (slot % 64);
        }
    }

    fn counts(&self) -> SessionCounts {
        let [all, errored, crashed, abnormal] = self.0.each_ref().map(|b| estimate(b) as i64);
        SessionCounts {
            started: all,
            errored: errored.min(all),
            crashed: crashed.min(all),
            abnormal: abnormal.min(all),
        }
    }
}

/// The value of a group key column.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum GroupValue {
    /// A project id.
    Project(u64),
    /// A release or environment name.
    Name(String),
}

/// Counts of one group (before the `session.status` split).
#[derive(Debug, Clone)]
pub struct SessionsGroup {
    /// The values of the non-status group-by columns, in query order.
    pub key: Vec<GroupValue>,
    /// Session counts over the range.
    pub totals: SessionCounts,
    /// Session counts per interval.
    pub series: Vec<SessionCounts>,
    /// User counts over the range (when a user field was asked for).
    pub user_totals: Option<SessionCounts>,
    /// User counts per interval (when a user field was asked for).
    pub user_series: Option<Vec<SessionCounts>>,
}

/// The answer to a [`SessionsQuery`].
#[derive(Debug, Clone)]
pub struct SessionsAnswer {
    /// The question.
    pub query: SessionsQuery,
    /// Groups, ordered by key.
    pub groups: Vec<SessionsGroup>,
}

struct GroupTally {
    totals: SessionCounts,
    series: Vec<SessionCounts>,
    users: Option<(UserBits, HashMap<usize, UserBits>)>,
}

impl QueryService {
    /// Sums the session counters (and, when a user field is asked for, merges the user
    /// sketches) of `query`'s projects in its range, filtered and grouped. Fails with
    /// [`StorageError::Invalid`] when the range holds too many rows or groups.
    pub fn sessions(&self, query: &SessionsQuery) -> Result<SessionsAnswer> {
        let interval = query.interval_ms.max(1);
        let buckets = (query.end_ms.saturating_sub(query.start_ms) / interval) as usize;
        let want_users = query.fields.iter().any(|f| f.needs_users());
        let mut tallies: BTreeMap<Vec<GroupValue>, GroupTally> = BTreeMap::new();
        if !query.group_by.iter().any(|g| *g != SessionsGroupBy::Status) {
            // Without a real grouping there is always the one group, even when empty.
            tallies.insert(Vec::new(), new_tally(buckets, want_users));
        }
        let store = self.store();
        let mut rows = 0usize;
        for &project in &query.projects {
            scan(
                store,
                cf::COUNTERS,
                sk::COUNTER_KIND,
                project,
                query,
                &mut rows,
                |p, value| {
                    let tally = tally_of(&mut tallies, query, p, buckets, want_users)?;
                    let n = decode_i64(value);
                    let i = bucket_index(query, p.hour_ms);
                    tally.totals.add(p.suffix, n);
                    if let Some(c) = i.and_then(|i| tally.series.get_mut(i)) {
                        c.add(p.suffix, n);
                    }
                    Ok(())
                },
            )?;
            if !want_users {
                continue;
            }
            scan(
                store,
                cf::HISTOGRAMS,
                sk::USERS_KIND,
                project,
                query,
                &mut rows,
                |p, value| {
                    let Some(which) = UserBits::index(p.suffix) else {
                        return Ok(());
                    };
                    let tally = tally_of(&mut tallies, query, p, buckets, want_users)?;
                    let i = bucket_index(query, p.hour_ms);
                    let Some((totals, series)) = tally.users.as_mut() else {
                        return Ok(());
                    };
                    let mut slots = Vec::new();
                    hist::for_each_bucket(value, |slot, count| {
                        if count > 0 {
                            slots.push(slot);
                        }
                    })?;
                    let mut per_bucket = i.map(|i| series.entry(i).or_insert_with(UserBits::new));
                    for slot in slots {
                        totals.set(which, slot);
                        if let Some(b) = per_bucket.as_mut() {
                            b.set(which, slot);
                        }
                    }
                    Ok(())
                },
            )?;
        }
        let groups = tallies
            .into_iter()
            .map(|(key, t)| {
                let (user_totals, user_series) = match t.users {
                    Some((totals, series)) => {
                        let mut per = vec![SessionCounts::default(); buckets];
                        for (i, bits) in series {
                            if let Some(c) = per.get_mut(i) {
                                *c = bits.counts();
                            }
                        }
                        (Some(totals.counts()), Some(per))
                    }
                    None => (None, None),
                };
                SessionsGroup {
                    key,
                    totals: t.totals,
                    series: t.series,
                    user_totals,
                    user_series,
                }
            })
            .collect();
        Ok(SessionsAnswer {
            query: query.clone(),
            groups,
        })
    }
}

/// Release health of one project (optionally one release and one environment) over a range:
/// what the per-release stats endpoint and the MCP tool show.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReleaseHealth {
    /// Sessions started.
    pub sessions: i64,
    /// Errored sessions (crashed and abnormal ones included).
    pub sessions_errored: i64,
    /// Crashed sessions.
    pub sessions_crashed: i64,
    /// Abnormal sessions.
    pub sessions_abnormal: i64,
    /// Distinct users with a session.
    pub users: i64,
    /// Distinct users with a crashed session.
    pub users_crashed: i64,
    /// 1 − crashed / sessions (`None` without sessions).
    pub crash_free_sessions: Option<f64>,
    /// 1 − crashed users / users (`None` without users).
    pub crash_free_users: Option<f64>,
}

impl QueryService {
    /// [`ReleaseHealth`] of `project_id` in `[start_ms, end_ms)`, widened to whole hours
    /// (sessions are counted per hour).
    pub fn release_health(
        &self,
        project_id: u64,
        release: Option<&str>,
        environment: Option<&str>,
        (start_ms, end_ms): (u64, u64),
    ) -> Result<ReleaseHealth> {
        let query = SessionsQuery::health(
            project_id,
            release,
            environment,
            (start_ms, end_ms),
            Vec::new(),
        );
        let answer = self.sessions(&query)?;
        Ok(answer
            .groups
            .first()
            .map(ReleaseHealth::of_group)
            .unwrap_or_default())
    }
}

impl ReleaseHealth {
    /// The totals of one group of a [`SessionsAnswer`] (users need a user field asked for).
    pub fn of_group(group: &SessionsGroup) -> ReleaseHealth {
        let s = group.totals;
        let u = group.user_totals.unwrap_or_default();
        ReleaseHealth {
            sessions: s.started,
            sessions_errored: s.errored.min(s.started),
            sessions_crashed: s.crashed,
            sessions_abnormal: s.abnormal,
            users: u.started,
            users_crashed: u.crashed,
            crash_free_sessions: s.crash_rate().map(|r| 1.0 - r),
            crash_free_users: u.crash_rate().map(|r| 1.0 - r),
        }
    }
}

fn new_tally(buckets: usize, want_users: bool) -> GroupTally {
    GroupTally {
        totals: SessionCounts::default(),
        series: vec![SessionCounts::default(); buckets],
        users: want_users.then(|| (UserBits::new(), HashMap::new())),
    }
}

fn bucket_index(query: &SessionsQuery, hour_ms: u64) -> Option<usize> {
    let offset = hour_ms.checked_sub(query.start_ms)?;
    Some((offset / query.interval_ms.max(1)) as usize)
}

/// The tally of the group `p` belongs to; `Ok(None)`-like filtering happens in [`scan`].
fn tally_of<'a>(
    tallies: &'a mut BTreeMap<Vec<GroupValue>, GroupTally>,
    query: &SessionsQuery,
    p: &sk::ParsedKey<'_>,
    buckets: usize,
    want_users: bool,
) -> Result<&'a mut GroupTally> {
    let key: Vec<GroupValue> = query
        .group_by
        .iter()
        .filter_map(|g| match g {
            SessionsGroupBy::Project => Some(GroupValue::Project(p.project_id)),
            SessionsGroupBy::Release => Some(GroupValue::Name(
                String::from_utf8_lossy(p.release).into_owned(),
            )),
            SessionsGroupBy::Environment => Some(GroupValue::Name(
                String::from_utf8_lossy(p.environment).into_owned(),
            )),
            SessionsGroupBy::Status => None,
        })
        .collect();
    if !tallies.contains_key(&key) && tallies.len() >= MAX_SESSION_GROUPS {
        return Err(StorageError::Invalid(format!(
            "the query has more than {MAX_SESSION_GROUPS} groups; filter by release or environment, or group by fewer columns"
        )));
    }
    Ok(tallies
        .entry(key)
        .or_insert_with(|| new_tally(buckets, want_users)))
}

/// Calls `f` with every key of `kind` of `project` in the range that passes the filters.
fn scan(
    store: &Store,
    cf_name: &str,
    kind: u8,
    project: u64,
    query: &SessionsQuery,
    rows: &mut usize,
    mut f: impl FnMut(&sk::ParsedKey<'_>, &[u8]) -> Result<()>,
) -> Result<()> {
    let start = keys::bucketed(kind, project, query.start_ms, &[]);
    let end = keys::bucketed(kind, project, query.end_ms, &[]);
    let handle = store.cf(cf_name);
    let iter = store.db().iterator_cf(
        &handle,
        rocksdb::IteratorMode::From(&start, rocksdb::Direction::Forward),
    );
    for item in iter {
        let (key, value) = item?;
        if key.as_ref() >= end.as_slice() {
            break;
        }
        *rows += 1;
        if *rows > MAX_SESSION_ROWS {
            return Err(StorageError::Invalid(format!(
                "the range holds more than {MAX_SESSION_ROWS} session rows; query a shorter range or fewer projects"
            )));
        }
        let Some(p) = sk::parse_key(&key) else {
            continue;
        };
        let wanted =
            |list: &[String], v: &[u8]| list.is_empty() || list.iter().any(|x| x.as_bytes() == v);
        if !wanted(&query.environments, p.environment) || !wanted(&query.releases, p.release) {
            continue;
        }
        f(&p, &value)?;
    }
    Ok(())
}

/// One field's value from session and user counts, for a status (`None` = all).
fn field_value(
    field: SessionsField,
    sessions: &SessionCounts,
    users: Option<&SessionCounts>,
    status: Option<&str>,
) -> serde_json::Value {
    let users = users.copied().unwrap_or_default();
    let rate = |r: Option<f64>| r.map_or(serde_json::Value::Null, serde_json::Value::from);
    match field {
        SessionsField::Sessions => sessions.of_status(status).into(),
        SessionsField::Users => users.of_status(status).into(),
        SessionsField::CrashRateSessions => rate(sessions.crash_rate()),
        SessionsField::CrashRateUsers => rate(users.crash_rate()),
        SessionsField::CrashFreeSessions => rate(sessions.crash_rate().map(|r| 1.0 - r)),
        SessionsField::CrashFreeUsers => rate(users.crash_rate().map(|r| 1.0 - r)),
    }
}

impl SessionsAnswer {
    /// Sentry's answer: `{start, end, intervals, groups: [{by, totals, series}], query}`.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::{json, Map, Value};
        let q = &self.query;
        let interval = q.interval_ms.max(1);
        let intervals: Vec<String> = (q.start_ms..q.end_ms)
            .step_by(interval as usize)
            .map(iso_seconds)
            .collect();
        let statuses: Vec<Option<&str>> = if q.group_by.contains(&SessionsGroupBy::Status) {
            STATUSES.iter().map(|s| Some(*s)).collect()
        } else {
            vec![None]
        };
        let mut groups = Vec::new();
        for g in &self.groups {
            for status in &statuses {
                let mut by = Map::new();
                let mut values = g.key.iter();
                for col in &q.group_by {
                    let v = match col {
                        SessionsGroupBy::Status => json!(status),
                        _ => match values.next() {
                            Some(GroupValue::Project(id)) => json!(id),
                            Some(GroupValue::Name(n)) => json!(n),
                            None => Value::Null,
                        },
                    };
                    by.insert(col.name().to_owned(), v);
                }
                let mut totals = Map::new();
                let mut series = Map::new();
                for &f in &q.fields {
                    totals.insert(
                        f.name().to_owned(),
                        field_value(f, &g.totals, g.user_totals.as_ref(), *status),
                    );
                    let points: Vec<Value> = g
                        .series
                        .iter()
                        .enumerate()
                        .map(|(i, c)| {
                            let u = g.user_series.as_ref().and_then(|s| s.get(i));
                            field_value(f, c, u, *status)
                        })
                        .collect();
                    series.insert(f.name().to_owned(), Value::Array(points));
                }
                groups.push(json!({"by": by, "totals": totals, "series": series}));
            }
        }
        json!({
            "start": iso_seconds(q.start_ms),
            "end": iso_seconds(q.end_ms),
            "intervals": intervals,
            "groups": groups,
            "query": q.query_text,
        })
    }
}

/// Answers of several processor nodes (a query node's fan-out, `crate::peers`) as one. A
/// project's sessions are folded on the one node that processes its partition, so the same
/// group (`by`) from several nodes means different projects: `sum(session)` and
/// `count_unique(user)` add (users of different projects are different users). A rate comes
/// from the one node with data for the group; when several nodes have data, it is their mean
/// weighted by sessions (or users) when the answer has them, and the field is named in
/// `ospreyApproximate`. Series are aligned on the union of the nodes' intervals.
pub(crate) fn merge_node_answers(answers: Vec<serde_json::Value>) -> serde_json::Value {
    use serde_json::{json, Map, Value};
    let intervals = crate::peers::union_of_intervals(&answers);
    let slot = |t: &Value| {
        intervals
            .binary_search_by(|x| x.as_str().cmp(t.as_str().unwrap_or_default()))
            .ok()
    };
    // Per group (first-seen order): per field, per cell (0 = totals, 1.. = intervals), the
    // nodes' (value, weight).
    type Cells = BTreeMap<String, Vec<Vec<(Value, f64)>>>;
    let mut groups: Vec<(Value, Cells)> = Vec::new();
    for answer in &answers {
        let own: Vec<Option<usize>> = answer["intervals"]
            .as_array()
            .into_iter()
            .flatten()
            .map(slot)
            .collect();
        for g in answer["groups"].as_array().into_iter().flatten() {
            let at = match groups.iter().position(|(b, _)| *b == g["by"]) {
                Some(i) => i,
                None => {
                    groups.push((g["by"].clone(), BTreeMap::new()));
                    groups.len() - 1
                }
            };
            let cells = &mut groups[at].1;
            for (field, total) in g["totals"].as_object().into_iter().flatten() {
                let weight_field = if field.ends_with("(user)") {
                    "count_unique(user)"
                } else {
                    "sum(session)"
                };
                let entry = cells
                    .entry(field.clone())
                    .or_insert_with(|| vec![Vec::new(); intervals.len() + 1]);
                let weight = g["totals"][weight_field].as_f64().unwrap_or(1.0);
                entry[0].push((total.clone(), weight));
                let series = g["series"][field].as_array().cloned().unwrap_or_default();
                let weights = g["series"][weight_field].as_array().cloned();
                for (i, v) in series.into_iter().enumerate() {
                    let Some(Some(cell)) = own.get(i) else {
                        continue;
                    };
                    let w = weights
                        .as_ref()
                        .and_then(|w| w.get(i))
                        .and_then(Value::as_f64)
                        .unwrap_or(1.0);
                    entry[cell + 1].push((v, w));
                }
            }
        }
    }
    let mut approximate: Vec<String> = Vec::new();
    let mut combine = |field: &str, parts: &[(Value, f64)]| -> Value {
        if SessionsField::parse(field).is_some_and(|f| !f.is_rate()) {
            return json!(parts.iter().filter_map(|(v, _)| v.as_i64()).sum::<i64>());
        }
        let with_data: Vec<(f64, f64)> = parts
            .iter()
            .filter_map(|(v, w)| v.as_f64().map(|v| (v, *w)))
            .filter(|(_, w)| *w > 0.0)
            .collect();
        match with_data.as_slice() {
            [] => Value::Null,
            [(v, _)] => json!(v),
            many => {
                if !approximate.iter().any(|a| a == field) {
                    approximate.push(field.to_owned());
                }
                let weight: f64 = many.iter().map(|(_, w)| w).sum();
                json!(many.iter().map(|(v, w)| v * w).sum::<f64>() / weight)
            }
        }
    };
    let groups: Vec<Value> = groups
        .into_iter()
        .map(|(by, cells)| {
            let mut totals = Map::new();
            let mut series = Map::new();
            for (field, parts) in &cells {
                totals.insert(field.clone(), combine(field, &parts[0]));
                let points: Vec<Value> = parts[1..].iter().map(|p| combine(field, p)).collect();
                series.insert(field.clone(), Value::Array(points));
            }
            json!({"by": by, "totals": totals, "series": series})
        })
        .collect();
    let first = answers.first().cloned().unwrap_or_default();
    let mut out = json!({
        "start": intervals.first().cloned().or_else(|| first["start"].as_str().map(str::to_owned)),
        "end": first["end"],
        "intervals": intervals,
        "groups": groups,
        "query": first["query"],
    });
    if let Some(end) = answers.iter().filter_map(|a| a["end"].as_str()).max() {
        out["end"] = json!(end);
    }
    if !approximate.is_empty() {
        out["ospreyApproximate"] = json!(approximate);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_partition_the_sessions() {
        let c = SessionCounts {
            started: 10,
            errored: 4,
            crashed: 1,
            abnormal: 1,
        };
        let parts: i64 = STATUSES.iter().map(|s| c.of_status(Some(s))).sum();
        assert_eq!(parts, 10);
        assert_eq!(c.of_status(Some("healthy")), 6);
        assert_eq!(c.of_status(Some("errored")), 2);
        assert_eq!(c.crash_rate(), Some(0.1));
        assert_eq!(SessionCounts::default().crash_rate(), None);
    }

    #[test]
    fn field_and_group_names_round_trip() {
        for f in SessionsField::ALL {
            assert_eq!(SessionsField::parse(f.name()), Some(f));
        }
        assert_eq!(
            SessionsGroupBy::parse("session.status"),
            Some(SessionsGroupBy::Status)
        );
        assert_eq!(SessionsField::parse("sum(sessions)"), None);
    }

    #[test]
    fn node_answers_add_counts_and_keep_single_node_rates() {
        use serde_json::json;
        let node = |by: &str, sessions: i64, rate: Option<f64>| {
            json!({
                "start": "2026-01-01T00:00:00Z", "end": "2026-01-01T02:00:00Z",
                "intervals": ["2026-01-01T00:00:00Z", "2026-01-01T01:00:00Z"],
                "groups": [{"by": {"release": by},
                            "totals": {"sum(session)": sessions, "crash_free_rate(session)": rate},
                            "series": {"sum(session)": [0, sessions], "crash_free_rate(session)": [null, rate]}}],
                "query": "",
            })
        };
        // Release a on node 1 only (node 2 answers it empty), release b on both.
        let mut second = node("a", 0, None);
        second["groups"]
            .as_array_mut()
            .unwrap()
            .push(node("b", 2, Some(1.0))["groups"][0].clone());
        let mut first = node("a", 10, Some(0.9));
        first["groups"]
            .as_array_mut()
            .unwrap()
            .push(node("b", 2, Some(0.5))["groups"][0].clone());
        let merged = merge_node_answers(vec![first, second]);
        let a = &merged["groups"][0];
        assert_eq!(a["totals"]["sum(session)"], 10);
        assert_eq!(a["totals"]["crash_free_rate(session)"], 0.9);
        assert_eq!(a["series"]["sum(session)"], json!([0, 10]));
        let b = &merged["groups"][1];
        assert_eq!(b["totals"]["sum(session)"], 4);
        assert_eq!(b["totals"]["crash_free_rate(session)"], 0.75);
        assert_eq!(
            merged["ospreyApproximate"],
            json!(["crash_free_rate(session)"])
        );
    }
}
