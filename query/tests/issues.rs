//! The issue and event queries over a real store, with records written the way the
//! processor writes them (storage's record types and key layouts).

use query::issues::{IssueQuery, IssueSort};
use query::QueryService;
use serde_json::json;
use storage::records::{
    self, IssueMetadata, IssueRecord, IssueStatus, IssueSubstatus, StoredEvent,
};
use storage::{cf, encode_i64, keys, Store, StoreOptions, WriteBatch};
use uuid::Uuid;

const HOUR: u64 = 3_600_000;

fn issue(id: u64, short: u64, title: &str, level: &str, last_seen_ms: u64) -> IssueRecord {
    IssueRecord {
        id,
        project_id: 1,
        short_id: short,
        event_type: "error".into(),
        title: title.into(),
        culprit: format!("app in f{id}"),
        metadata: IssueMetadata {
            exception_type: Some(title.split(':').next().unwrap_or("").into()),
            value: Some("v".into()),
            ..Default::default()
        },
        level: level.into(),
        platform: "python".into(),
        logger: String::new(),
        status: IssueStatus::Unresolved,
        substatus: Some(IssueSubstatus::New),
        first_seen_ms: last_seen_ms - HOUR,
        last_seen_ms,
        active_at_ms: last_seen_ms - HOUR,
        first_release: Some("1.0".into()),
        last_release: Some("1.1".into()),
        resolution: None,
        primary_hash: format!("{id:032x}"),
    }
}

/// Writes an issue with `events` events (one per minute back from last seen) and `users`.
fn put_issue(store: &Store, rec: &IssueRecord, events: u64, users: u64) -> Vec<Uuid> {
    let mut batch = WriteBatch::default();
    batch.put_cf(&store.cf(cf::ISSUES), keys::issue(rec.id), rec.to_bytes());
    batch.put_cf(
        &store.cf(cf::ISSUES),
        keys::issue_short_id(rec.project_id, rec.short_id),
        rec.id.to_be_bytes(),
    );
    let counters = store.cf(cf::COUNTERS);
    batch.merge_cf(
        &counters,
        keys::issue_counter(keys::counters::ISSUE_EVENTS, rec.id),
        encode_i64(events as i64),
    );
    batch.merge_cf(
        &counters,
        keys::issue_counter(keys::counters::ISSUE_USERS, rec.id),
        encode_i64(users as i64),
    );
    let mut ids = Vec::new();
    for i in 0..events {
        let ts = rec.last_seen_ms - i * 60_000;
        let id = Uuid::from_u128(((rec.id as u128) << 32) | i as u128);
        let level = if i % 3 == 0 { "warning" } else { "error" };
        batch.merge_cf(
            &counters,
            keys::issue_tag(rec.id, "level", level),
            encode_i64(1),
        );
        let stored = StoredEvent {
            event_id: id.simple().to_string(),
            project_id: rec.project_id,
            issue_id: Some(rec.id),
            timestamp_ms: ts,
            received_ms: ts,
            hashes: vec![rec.primary_hash.clone()],
            event: json!({"type": "error", "title": rec.title, "platform": "python", "tags": [["level", level]],
                "exception": {"values": [{"type": "E", "value": "v", "stacktrace": {"frames": [{"function": "f", "lineno": 1}]}}]}}),
        };
        batch.put_cf(
            &store.cf(cf::EVENTS),
            keys::event(rec.project_id, &id),
            records::encode_event(&stored, 1).unwrap(),
        );
        batch.put_cf(
            &store.cf(cf::INDEX),
            keys::index_by_time(keys::index::ISSUE_TIME, rec.id, ts, &id),
            [],
        );
        ids.push(id);
    }
    store.write(batch, false).unwrap();
    ids
}

fn setup() -> (tempfile::TempDir, QueryService, Vec<Uuid>) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), &StoreOptions::default()).unwrap();
    store.bootstrap(None, None).unwrap();
    let now = storage::now_ms();
    let ids = put_issue(
        &store,
        &issue(1, 1, "ValueError: bad", "error", now - HOUR),
        5,
        2,
    );
    put_issue(
        &store,
        &issue(2, 2, "TimeoutError: slow", "warning", now - 2 * HOUR),
        9,
        1,
    );
    let mut resolved = issue(3, 42, "KeyError: k", "error", now - 3 * HOUR);
    resolved.status = IssueStatus::Resolved;
    resolved.substatus = None;
    put_issue(&store, &resolved, 1, 7);
    (dir, QueryService::new(store), ids)
}

fn ids(page: &query::issues::IssuePage) -> Vec<String> {
    page.issues.iter().map(|i| i.id.clone()).collect()
}

#[test]
fn list_sort_filter_and_page() {
    let (_dir, qs, _) = setup();
    let all = qs.issues(&IssueQuery::default()).unwrap();
    assert_eq!(
        ids(&all),
        ["1", "2", "3"],
        "date sort: newest last seen first"
    );
    let freq = qs
        .issues(&IssueQuery {
            sort: IssueSort::Freq,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(ids(&freq), ["2", "1", "3"]);
    let users = qs
        .issues(&IssueQuery {
            sort: IssueSort::User,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(ids(&users), ["3", "1", "2"]);
    let unresolved = qs
        .issues(&IssueQuery {
            query: "is:unresolved".into(),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(ids(&unresolved), ["1", "2"]);
    let q = |s: &str| {
        ids(&qs
            .issues(&IssueQuery {
                query: s.into(),
                ..Default::default()
            })
            .unwrap())
    };
    assert_eq!(q("level:warning"), ["2"]);
    assert_eq!(q("!level:warning is:unresolved"), ["1"]);
    assert_eq!(q("timeout"), ["2"]);
    assert_eq!(q("DEFAULT-1A"), ["3"]);
    assert_eq!(q("issue:DEFAULT-2"), ["2"]);
    assert_eq!(q("times_seen:>4 is:unresolved"), ["1", "2"]);
    let first_page = qs
        .issues(&IssueQuery {
            limit: 2,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(ids(&first_page), ["1", "2"]);
    assert_eq!(first_page.total, 3);
    let next = qs
        .issues(&IssueQuery {
            limit: 2,
            cursor: first_page.next_cursor.clone(),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(ids(&next), ["3"]);
    assert!(next.next_cursor.is_none() && next.prev_cursor.is_some());
    let recent = qs
        .issues(&IssueQuery {
            seen_since_ms: Some(storage::now_ms() - 90 * 60_000),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(ids(&recent), ["1"]);
}

#[test]
fn issue_shape_and_lookup_by_short_id() {
    let (_dir, qs, _) = setup();
    let by_short = qs.issue("default-1a", None).unwrap().unwrap();
    assert_eq!(by_short.id, "3");
    assert_eq!(by_short.short_id, "DEFAULT-1A");
    assert_eq!(by_short.status, "resolved");
    let mut i = qs.issue("1", Some(1)).unwrap().unwrap();
    assert_eq!((i.count.as_str(), i.user_count), ("5", 2));
    assert!(
        qs.issue("1", Some(99)).unwrap().is_none(),
        "other organization"
    );
    assert!(qs.issue("NOPE-1", None).unwrap().is_none());
    i.absolutize("http://127.0.0.1:9000/");
    assert_eq!(
        i.permalink,
        "http://127.0.0.1:9000/organizations/default/issues/1/"
    );
    let v = serde_json::to_value(&i).unwrap();
    for key in [
        "id",
        "shortId",
        "title",
        "firstSeen",
        "lastSeen",
        "count",
        "userCount",
        "permalink",
        "project",
        "status",
        "culprit",
        "substatus",
        "metadata",
    ] {
        assert!(v.get(key).is_some(), "missing {key}");
    }
    assert_eq!(v["project"]["slug"], "default");
    assert!(v["lastSeen"].as_str().unwrap().ends_with('Z'));
    assert_eq!(v["firstRelease"]["version"], "1.0");
}

#[test]
fn tags_and_events_of_an_issue() {
    let (_dir, qs, event_ids) = setup();
    let level = qs.tag_values(1, "level", 10).unwrap();
    assert_eq!((level.total_values, level.unique_values), (5, 2));
    assert_eq!(level.top_values[0].value, "error");
    assert_eq!(level.top_values[0].count, 3);
    assert_eq!(qs.issue_tags(1, 5).unwrap().len(), 1);
    let page = qs.issue_events(1, 2, None, false).unwrap();
    assert_eq!(page.events.len(), 2);
    assert_eq!(
        page.events[0].event_id,
        event_ids[0].simple().to_string(),
        "newest first"
    );
    assert!(page.events[0].entries.is_empty());
    let rest = qs
        .issue_events(1, 10, page.next_cursor.as_deref(), true)
        .unwrap();
    assert_eq!(rest.events.len(), 3);
    assert!(rest.next_cursor.is_none());
    let latest = qs.latest_event(1).unwrap().unwrap();
    assert_eq!(latest.event_id, event_ids[0].simple().to_string());
    assert_eq!(latest.entries[0]["type"], "exception");
    let oldest = qs.oldest_event(1).unwrap().unwrap();
    assert_eq!(oldest.event_id, event_ids[4].simple().to_string());
    let one = qs.event(1, &event_ids[2]).unwrap().unwrap();
    assert_eq!(one.group_id.as_deref(), Some("1"));
    assert!(qs.event(1, &Uuid::from_u128(1)).unwrap().is_none());
    // An event id as search text finds its issue.
    let found = qs
        .issues(&IssueQuery {
            query: event_ids[2].simple().to_string(),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(ids(&found), ["1"]);
}
