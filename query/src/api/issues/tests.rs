//! Issue endpoints over issue records and events written the way the processor writes them.

use http::Method;
use serde_json::{json, Value};
use storage::records::{IssueMetadata, IssueRecord, IssueStatus, IssueSubstatus, StoredEvent};
use storage::{cf, encode_i64, keys, now_ms, Store, WriteBatch};
use uuid::Uuid;

use super::super::testutil::Fixture;

const MIN: u64 = 60_000;

struct Seed<'a> {
    id: u64,
    title: &'a str,
    level: &'a str,
    events: u64,
    users: u64,
    env: &'a str,
    release: &'a str,
    age_min: u64,
}

/// Writes an issue record, its counters, tag facets and `events` stored events.
fn put(store: &Store, s: &Seed<'_>) -> Vec<Uuid> {
    let now = now_ms();
    let last = now - s.age_min * MIN;
    let rec = IssueRecord {
        id: s.id,
        project_id: 1,
        short_id: s.id,
        event_type: "error".into(),
        title: s.title.into(),
        culprit: format!("app.views in handler_{}", s.id),
        metadata: IssueMetadata {
            exception_type: Some(s.title.split(':').next().unwrap_or("").into()),
            value: Some("boom".into()),
            ..Default::default()
        },
        level: s.level.into(),
        platform: "python".into(),
        logger: String::new(),
        status: IssueStatus::Unresolved,
        substatus: Some(IssueSubstatus::New),
        first_seen_ms: last - 10 * MIN,
        last_seen_ms: last,
        active_at_ms: last - 10 * MIN,
        first_release: Some(s.release.into()),
        last_release: Some(s.release.into()),
        resolution: None,
        primary_hash: format!("{:032x}", s.id),
    };
    let mut batch = WriteBatch::default();
    let issues = store.cf(cf::ISSUES);
    batch.put_cf(&issues, keys::issue(rec.id), rec.to_bytes());
    batch.put_cf(
        &issues,
        keys::issue_short_id(1, rec.short_id),
        rec.id.to_be_bytes(),
    );
    let counters = store.cf(cf::COUNTERS);
    batch.merge_cf(
        &counters,
        keys::issue_counter(keys::counters::ISSUE_EVENTS, rec.id),
        encode_i64(s.events as i64),
    );
    batch.merge_cf(
        &counters,
        keys::issue_counter(keys::counters::ISSUE_USERS, rec.id),
        encode_i64(s.users as i64),
    );
    let mut ids = Vec::new();
    for i in 0..s.events {
        let ts = last - i * MIN;
        let id = Uuid::from_u128(((s.id as u128) << 64) | i as u128);
        for (k, v) in [
            ("environment", s.env),
            ("release", s.release),
            ("level", s.level),
        ] {
            batch.merge_cf(&counters, keys::issue_tag(rec.id, k, v), encode_i64(1));
        }
        let stored = StoredEvent {
            event_id: id.simple().to_string(),
            project_id: 1,
            issue_id: Some(rec.id),
            timestamp_ms: ts,
            received_ms: ts,
            hashes: vec![rec.primary_hash.clone()],
            event: json!({"event_id": id.simple().to_string(), "type": "error", "title": s.title, "platform": "python",
                          "level": s.level, "environment": s.env, "release": s.release, "timestamp": ts as f64 / 1000.0,
                          "tags": [["environment", s.env], ["level", s.level]],
                          "exception": {"values": [{"type": "ValueError", "value": "boom"}]}}),
        };
        batch.put_cf(
            &store.cf(cf::EVENTS),
            keys::event(1, &id),
            storage::records::encode_event(&stored, 1).unwrap(),
        );
        batch.put_cf(
            &store.cf(cf::INDEX),
            keys::index_by_time(keys::index::ISSUE_TIME, rec.id, ts, &id),
            [],
        );
        batch.put_cf(
            &store.cf(cf::INDEX),
            keys::index_by_time(keys::index::PROJECT_TIME, 1, ts, &id),
            [],
        );
        ids.push(id);
    }
    store.write(batch, false).unwrap();
    ids
}

fn fixture() -> (Fixture, Vec<Uuid>) {
    let f = Fixture::new();
    let ids = put(
        &f.store,
        &Seed {
            id: 1,
            title: "ZeroDivisionError: division by zero",
            level: "error",
            events: 5,
            users: 3,
            env: "production",
            release: "1.0",
            age_min: 1,
        },
    );
    put(
        &f.store,
        &Seed {
            id: 2,
            title: "KeyError: 'user'",
            level: "warning",
            events: 9,
            users: 1,
            env: "staging",
            release: "1.1",
            age_min: 30,
        },
    );
    put(
        &f.store,
        &Seed {
            id: 3,
            title: "TimeoutError: upstream",
            level: "error",
            events: 2,
            users: 7,
            env: "production",
            release: "1.1",
            age_min: 3 * 24 * 60,
        },
    );
    (f, ids)
}

fn titles(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|i| {
            i["title"]
                .as_str()
                .unwrap()
                .split(':')
                .next()
                .unwrap()
                .to_owned()
        })
        .collect()
}

fn q(f: &Fixture, query: &str) -> Value {
    let path = format!(
        "/api/0/organizations/default/issues/?query={}&statsPeriod=30d",
        super::super::util::percent_encode(query)
    );
    let r = f.get(&path);
    assert_eq!(r.status, 200, "{query}: {}", r.body);
    r.body
}

#[test]
fn list_search_and_sort() {
    let (f, ids) = fixture();
    let all = f.get("/api/0/organizations/default/issues/?limit=25&sort=date&statsPeriod=30d&collapse=unhandled");
    assert_eq!(
        titles(&all.body),
        ["ZeroDivisionError", "KeyError", "TimeoutError"]
    );
    let first = &all.body[0];
    assert_eq!(first["shortId"], "DEFAULT-1");
    assert_eq!(first["count"], "5");
    assert_eq!(first["userCount"], 3);
    assert_eq!(first["project"]["slug"], "default");
    assert!(first["permalink"]
        .as_str()
        .unwrap()
        .starts_with("http://localhost/"));
    assert!(first["firstSeen"].as_str().unwrap().ends_with('Z'));
    assert!(first["assignedTo"].is_null());
    assert!(all
        .link
        .unwrap()
        .contains("rel=\"next\"; results=\"false\""));

    assert_eq!(
        titles(&f.get("/api/0/organizations/default/issues/?sort=freq").body),
        ["KeyError", "ZeroDivisionError", "TimeoutError"]
    );
    assert_eq!(
        titles(&f.get("/api/0/organizations/default/issues/?sort=user").body),
        ["TimeoutError", "ZeroDivisionError", "KeyError"]
    );
    assert_eq!(
        titles(&f.get("/api/0/organizations/default/issues/?sort=new").body),
        ["ZeroDivisionError", "KeyError", "TimeoutError"]
    );

    assert_eq!(
        titles(&q(&f, "level:error")),
        ["ZeroDivisionError", "TimeoutError"]
    );
    assert_eq!(titles(&q(&f, "!level:error")), ["KeyError"]);
    assert_eq!(titles(&q(&f, "level:[warning, fatal]")), ["KeyError"]);
    assert_eq!(
        titles(&q(&f, "environment:production")),
        ["ZeroDivisionError", "TimeoutError"]
    );
    assert_eq!(
        titles(&q(&f, "release:1.1 environment:staging")),
        ["KeyError"]
    );
    assert_eq!(titles(&q(&f, "release:1.*")).len(), 3);
    assert_eq!(
        titles(&q(&f, "lastSeen:-1h")),
        ["ZeroDivisionError", "KeyError"]
    );
    assert_eq!(titles(&q(&f, "lastSeen:+1d")), ["TimeoutError"]);
    assert_eq!(
        titles(&q(&f, "firstSeen:-2d")),
        ["ZeroDivisionError", "KeyError"]
    );
    assert_eq!(
        titles(&q(&f, "times_seen:>4")),
        ["ZeroDivisionError", "KeyError"]
    );
    assert_eq!(titles(&q(&f, "division")), ["ZeroDivisionError"]);
    assert_eq!(titles(&q(&f, "handler_2")), ["KeyError"]);
    assert_eq!(
        titles(&q(&f, "\"by zero\" is:unresolved")),
        ["ZeroDivisionError"]
    );
    assert_eq!(titles(&q(&f, "DEFAULT-3")), ["TimeoutError"]);
    assert_eq!(titles(&q(&f, "has:environment")).len(), 3);
    assert_eq!(titles(&q(&f, "!has:environment")).len(), 0);
    assert_eq!(titles(&q(&f, "is:unassigned")).len(), 3);
    assert_eq!(titles(&q(&f, "is:new")).len(), 3);
    assert_eq!(
        titles(&q(&f, &ids[2].simple().to_string())),
        ["ZeroDivisionError"]
    );
    // The window narrows by last seen; the project parameter by id.
    assert_eq!(
        titles(
            &f.get("/api/0/organizations/default/issues/?statsPeriod=1h")
                .body
        )
        .len(),
        2
    );
    assert_eq!(
        titles(&f.get("/api/0/organizations/default/issues/?project=1").body).len(),
        3
    );
    assert_eq!(
        titles(
            &f.get("/api/0/projects/default/default/issues/?query=level:warning")
                .body
        ),
        ["KeyError"]
    );
    // Pagination.
    let p1 = f.get("/api/0/organizations/default/issues/?limit=2");
    assert_eq!(p1.body.as_array().unwrap().len(), 2);
    assert!(p1
        .link
        .as_ref()
        .unwrap()
        .contains("results=\"true\"; cursor=\"0:2:0\""));
    let p2 = f.get("/api/0/organizations/default/issues/?limit=2&cursor=0:2:0");
    assert_eq!(titles(&p2.body), ["TimeoutError"]);
    // Bad syntax: 400 saying where.
    let bad = f.get("/api/0/organizations/default/issues/?query=level%3A%22open");
    assert_eq!(bad.status, 400);
    assert!(
        bad.body["detail"].as_str().unwrap().contains("character 6"),
        "{}",
        bad.body
    );
    assert_eq!(
        f.get("/api/0/organizations/default/issues/?sort=random")
            .status,
        400
    );
    assert_eq!(
        f.get("/api/0/organizations/default/issues/?statsPeriod=forever")
            .status,
        400
    );
}

#[test]
fn detail_by_numeric_and_short_id_with_events() {
    let (f, ids) = fixture();
    let by_short = f.get("/api/0/organizations/default/issues/DEFAULT-1/");
    assert_eq!(by_short.status, 200, "{}", by_short.body);
    assert_eq!(by_short.body["id"], "1");
    assert_eq!(
        f.get("/api/0/organizations/default/issues/1/").body["shortId"],
        "DEFAULT-1"
    );
    assert_eq!(
        f.get("/api/0/organizations/default/issues/DEFAULT-99/")
            .status,
        404
    );
    let latest = f.get("/api/0/organizations/default/issues/DEFAULT-1/events/latest/");
    assert_eq!(latest.status, 200, "{}", latest.body);
    assert_eq!(latest.body["eventID"], ids[0].simple().to_string());
    assert!(latest.body.get("message").is_some());
    let one = f.get(&format!(
        "/api/0/organizations/default/issues/1/events/{}/",
        ids[3].simple()
    ));
    assert_eq!(one.body["eventID"], ids[3].simple().to_string());
    // An event of another issue is not this issue's.
    assert_eq!(
        f.get(&format!(
            "/api/0/organizations/default/issues/2/events/{}/",
            ids[3].simple()
        ))
        .status,
        404
    );
    let list = f.get("/api/0/organizations/default/issues/1/events/?per_page=2");
    assert_eq!(list.body.as_array().unwrap().len(), 2);
    assert!(list.link.unwrap().contains("results=\"true\""));
    let by_project = f.get(&format!(
        "/api/0/projects/default/default/events/{}/",
        ids[1].simple()
    ));
    assert_eq!(by_project.body["eventID"], ids[1].simple().to_string());
    assert_eq!(
        f.get("/api/0/projects/default/default/events/0123456789abcdef0123456789abcdef/")
            .status,
        404
    );
    let tag = f.get("/api/0/organizations/default/issues/1/tags/environment/");
    assert_eq!(tag.body["topValues"][0]["value"], "production");
    assert_eq!(tag.body["totalValues"], 5);
    assert_eq!(
        f.get("/api/0/organizations/default/issues/1/tags/nope/")
            .status,
        404
    );
    let values = f.get("/api/0/organizations/default/issues/1/tags/level/values/");
    assert_eq!(values.body[0]["value"], "error");
}

#[test]
fn resolve_ignore_assign_note_and_activity() {
    let (f, _) = fixture();
    storage::releases::put_release(
        &f.store,
        &storage::releases::Release {
            org_id: 1,
            version: "2.0".into(),
            projects: vec![1],
            date_created_ms: now_ms(),
            status: "open".into(),
            ..Default::default()
        },
    )
    .unwrap();
    let path = "/api/0/organizations/default/issues/DEFAULT-1/";
    let r = f.put(path, json!({"status": "resolved"}));
    assert_eq!(
        (r.status.as_u16(), r.body["status"].as_str()),
        (200, Some("resolved"))
    );
    assert_eq!(titles(&q(&f, "is:resolved")), ["ZeroDivisionError"]);
    assert_eq!(titles(&q(&f, "is:unresolved")).len(), 2);
    let r = f.put(path, json!({"status": "resolvedInNextRelease"}));
    assert_eq!(r.body["statusDetails"]["inNextRelease"], true);
    let r = f.put(path, json!({"status": "unresolved"}));
    assert_eq!(r.body["status"], "unresolved");
    // Ignore until 3 more events: shown ignored with its condition.
    let r = f.put(path, json!({"status": "ignored", "substatus": "archived_until_condition_met", "ignoreCount": 3, "ignoreWindow": 60}));
    assert_eq!(r.body["status"], "ignored");
    assert_eq!(r.body["substatus"], "archived_until_condition_met");
    assert_eq!(r.body["statusDetails"]["ignoreCount"], 3);
    assert_eq!(titles(&q(&f, "is:ignored")), ["ZeroDivisionError"]);
    // Three more events arrive: reading the issue finds it escalating again.
    f.store
        .write(
            {
                let mut b = WriteBatch::default();
                b.merge_cf(
                    &f.store.cf(cf::COUNTERS),
                    keys::issue_counter(keys::counters::ISSUE_EVENTS, 1),
                    encode_i64(3),
                );
                b
            },
            false,
        )
        .unwrap();
    let r = f.get(path);
    assert_eq!(
        (r.body["status"].as_str(), r.body["substatus"].as_str()),
        (Some("unresolved"), Some("escalating"))
    );
    // Ignore forever, for a duration.
    assert_eq!(
        f.put(path, json!({"status": "ignored"})).body["substatus"],
        "archived_forever"
    );
    let r = f.put(
        path,
        json!({"status": "ignored", "statusDetails": {"ignoreDuration": 30}}),
    );
    assert!(r.body["statusDetails"]["ignoreUntil"]
        .as_str()
        .unwrap()
        .ends_with('Z'));
    assert_eq!(f.put(path, json!({"status": "sleeping"})).status, 400);
    assert_eq!(
        f.put(path, json!({"status": "ignored", "ignoreCount": -1}))
            .status,
        400
    );
    // Assignment.
    let r = f.put(path, json!({"assignedTo": "team:backend"}));
    assert_eq!(
        r.body["assignedTo"],
        json!({"type": "team", "id": "backend", "name": "backend"})
    );
    assert_eq!(titles(&q(&f, "assigned:#backend")), ["ZeroDivisionError"]);
    assert_eq!(titles(&q(&f, "is:assigned")), ["ZeroDivisionError"]);
    assert_eq!(
        f.put(path, json!({"assignedTo": ""})).body["assignedTo"],
        Value::Null
    );
    // Notes and activity.
    let note = f.post(
        "/api/0/organizations/default/issues/1/notes/",
        json!({"text": "looking into it"}),
    );
    assert_eq!(note.status, 201);
    assert_eq!(note.body["type"], "note");
    assert_eq!(note.body["data"]["text"], "looking into it");
    assert_eq!(
        f.post(
            "/api/0/organizations/default/issues/1/notes/",
            json!({"text": " "})
        )
        .status,
        400
    );
    let notes = f.get("/api/0/organizations/default/issues/1/notes/");
    assert_eq!(notes.body.as_array().unwrap().len(), 1);
    let activity = f.get("/api/0/organizations/default/issues/1/activities/");
    let kinds: Vec<&str> = activity.body["activity"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "note",
            "unassigned",
            "assigned",
            "set_ignored",
            "set_ignored",
            "set_escalating",
            "set_ignored",
            "set_unresolved",
            "set_resolved_in_release",
            "set_resolved",
            "first_seen"
        ]
    );
    assert_eq!(f.get(path).body["numComments"], 1);

    // Labels (osprey's `tags` in the update body): shown, searchable like tags, removable.
    let r = f.put(path, json!({"tags": {"owner": "checkout", "tier": "1"}}));
    assert_eq!(r.body["labels"], json!({"owner": "checkout", "tier": "1"}));
    assert_eq!(titles(&q(&f, "owner:checkout")), ["ZeroDivisionError"]);
    assert_eq!(
        titles(&q(&f, "has:tier owner:check*")),
        ["ZeroDivisionError"]
    );
    let r = f.put(path, json!({"tags": {"tier": null}}));
    assert_eq!(r.body["labels"], json!({"owner": "checkout"}));
    assert_eq!(f.put(path, json!({"tags": {"a b": "x"}})).status, 400);
    assert_eq!(f.put(path, json!({"tags": ["owner"]})).status, 400);
    let activity = f.get("/api/0/organizations/default/issues/1/activities/");
    assert_eq!(activity.body["activity"][0]["type"], "set_tags");
    assert_eq!(activity.body["activity"][0]["data"], json!({"tier": null}));
    // A bad field fails the whole update before anything changes.
    let before = f.get(path).body["status"].clone();
    let bad = f.put(
        path,
        json!({"status": "resolved", "tags": {"x": "y"}, "assignedTo": "u".repeat(200)}),
    );
    assert_eq!(bad.status, 400);
    let after = f.get(path).body;
    assert_eq!(after["status"], before);
    assert_eq!(after["labels"], json!({"owner": "checkout"}));
}

#[test]
fn bulk_update_by_ids() {
    let (f, _) = fixture();
    let r = f.put(
        "/api/0/projects/default/default/issues/?id=1&id=2",
        json!({"status": "resolved"}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["status"], "resolved");
    assert_eq!(
        titles(&q(&f, "is:resolved")),
        ["ZeroDivisionError", "KeyError"]
    );
    assert_eq!(
        f.put(
            "/api/0/projects/default/default/issues/?id=99",
            json!({"status": "resolved"})
        )
        .status,
        404
    );
    // Without ids: the query selects (here: the one still unresolved).
    let r = f.put(
        "/api/0/organizations/default/issues/?query=is:unresolved",
        json!({"status": "ignored"}),
    );
    assert_eq!(r.status, 200);
    assert_eq!(titles(&q(&f, "is:ignored")), ["TimeoutError"]);
}

/// The UI's jump-to lookups: a short id or an event id to its project and issue.
#[test]
fn short_and_event_ids_resolve_to_their_issue() {
    let (f, ids) = fixture();
    let short = f.get("/api/0/organizations/default/shortids/DEFAULT-2/");
    assert_eq!(short.status, 200, "{}", short.body);
    assert_eq!(short.body["groupId"], "2");
    assert_eq!(short.body["projectSlug"], "default");
    assert_eq!(short.body["shortId"], "DEFAULT-2");
    assert_eq!(short.body["group"]["title"], "KeyError: 'user'");
    let event = f.get(&format!(
        "/api/0/organizations/default/eventids/{}/",
        ids[2].simple()
    ));
    assert_eq!(event.status, 200, "{}", event.body);
    assert_eq!(event.body["groupId"], "1");
    assert_eq!(event.body["eventId"], ids[2].simple().to_string());
    assert_eq!(event.body["event"]["eventID"], ids[2].simple().to_string());
    for missing in [
        "/api/0/organizations/default/shortids/DEFAULT-99/",
        "/api/0/organizations/default/eventids/0123456789abcdef0123456789abcdef/",
        "/api/0/organizations/default/eventids/not-an-id/",
    ] {
        assert_eq!(f.get(missing).status, 404, "{missing}");
    }
}

/// `release:latest` is the project's newest release, not a release named "latest".
#[test]
fn release_latest_is_the_newest_release() {
    let (f, _) = fixture();
    // No release recorded yet: nothing is the latest.
    assert!(titles(&q(&f, "release:latest")).is_empty());
    for version in ["1.0", "1.1"] {
        let r = f.post(
            "/api/0/organizations/default/releases/",
            json!({"version": version, "projects": ["default"]}),
        );
        assert_eq!(r.status, 201, "{}", r.body);
        // Creation times order the releases; keep them apart.
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert_eq!(titles(&q(&f, "issue.category:error")).len(), 3);
    assert!(titles(&q(&f, "issue.category:performance")).is_empty());
    assert!(titles(&q(&f, "!issue.type:error")).is_empty());
    let mut latest = titles(&q(&f, "release:latest"));
    latest.sort();
    assert_eq!(latest, ["KeyError", "TimeoutError"]);
    assert_eq!(titles(&q(&f, "!release:latest")), ["ZeroDivisionError"]);
    assert_eq!(titles(&q(&f, "release:1.0")), ["ZeroDivisionError"]);
}

/// The official MCP server's `search_issue_events`: an issue's events narrowed by time,
/// environment and search query, in either order, paged.
#[test]
fn issue_events_filtered_sorted_and_paged() {
    let (f, ids) = fixture();
    let list = |query: &str| -> Vec<String> {
        let r = f.get(&format!(
            "/api/0/organizations/default/issues/1/events/?{query}"
        ));
        assert_eq!(r.status, 200, "{query}: {}", r.body);
        r.body
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["eventID"].as_str().unwrap().to_owned())
            .collect()
    };
    let id = |i: usize| ids[i].simple().to_string();
    // ids[i] is i minutes older than ids[0] (one minute old).
    let start = super::super::util::iso(now_ms() - 210 * 1000);
    assert_eq!(list(&format!("start={start}")), [id(0), id(1), id(2)]);
    assert_eq!(
        list("sort=timestamp&per_page=2"),
        [id(4), id(3)],
        "oldest first"
    );
    assert_eq!(
        list("sort=timestamp&per_page=2&cursor=0:2:0"),
        [id(2), id(1)]
    );
    assert_eq!(list("environment=production").len(), 5);
    assert!(list("environment=staging").is_empty());
    assert_eq!(list("query=environment:production level:error").len(), 5);
    assert!(list("query=level:warning").is_empty());
    assert_eq!(list(&format!("query=id:{}", id(3))), [id(3)]);
    assert_eq!(list("statsPeriod=24h&full=true").len(), 5);
    for bad in ["statsPeriod=soon", "sort=sideways", "start=yesterday"] {
        let r = f.get(&format!(
            "/api/0/organizations/default/issues/1/events/?{bad}"
        ));
        assert_eq!(r.status, 400, "{bad}: {}", r.body);
    }
}

/// Sentry update fields osprey does not implement are a 400 that says so, and nothing of the
/// request applies (a 200 that drops them would read as done).
#[test]
fn unsupported_update_fields_are_refused() {
    let (f, _) = fixture();
    let path = "/api/0/organizations/default/issues/1/";
    for body in [
        json!({"merge": 1}),
        json!({"status": "resolved", "discard": true}),
        json!({"status": "resolved", "isBookmarked": true}),
        json!({"hasSeen": true}),
        json!({"priority": "high"}),
        json!({"status": "resolved", "statusDetails": {"inCommit": {"commit": "abc", "repository": "r"}}}),
    ] {
        let r = f.put(path, body.clone());
        assert_eq!(r.status, 400, "{body}: {}", r.body);
        assert!(
            r.body["detail"].as_str().unwrap().contains("osprey"),
            "{}",
            r.body
        );
    }
    let bulk = f.put(
        "/api/0/projects/default/default/issues/?id=1&id=2",
        json!({"merge": 1}),
    );
    assert_eq!(bulk.status, 400, "{}", bulk.body);
    assert_eq!(f.get(path).body["status"], "unresolved");
}

#[test]
fn scopes_and_organization_isolation() {
    let (f, _) = fixture();
    let reader = f.token(1, &["org:read", "project:read", "event:read"]);
    let r = f.call(
        Method::PUT,
        "/api/0/organizations/default/issues/1/",
        Some(&reader),
        Some(json!({"status": "resolved"})),
    );
    assert_eq!(r.status, 403);
    let r = f.call(
        Method::PUT,
        "/api/0/projects/default/default/issues/?id=1",
        Some(&reader),
        Some(json!({"status": "resolved"})),
    );
    assert_eq!(r.status, 403);
    assert_eq!(
        f.call(
            Method::GET,
            "/api/0/organizations/default/issues/1/",
            Some(&reader),
            None
        )
        .status,
        200
    );
    let acme = f.store.create_organization("acme", "Acme").unwrap();
    let foreign = f.token(acme.id, storage::ALL_SCOPES);
    for path in [
        "/api/0/organizations/default/issues/",
        "/api/0/organizations/default/issues/1/",
        "/api/0/organizations/default/issues/DEFAULT-1/events/latest/",
    ] {
        assert_eq!(
            f.call(Method::GET, path, Some(&foreign), None).status,
            404,
            "{path}"
        );
    }
    // Under its own organization, the foreign token still cannot reach issue 1 (project 1 is not acme's).
    assert_eq!(
        f.call(
            Method::GET,
            "/api/0/organizations/acme/issues/1/",
            Some(&foreign),
            None
        )
        .status,
        404
    );
    assert_eq!(
        f.call(Method::GET, "/api/0/issues/1/", Some(&foreign), None)
            .status,
        404
    );
    let list = f.call(
        Method::GET,
        "/api/0/organizations/acme/issues/",
        Some(&foreign),
        None,
    );
    assert_eq!(list.body, json!([]));
    let r = f.call(
        Method::PUT,
        "/api/0/organizations/default/issues/1/",
        Some(&foreign),
        Some(json!({"status": "resolved"})),
    );
    assert_eq!(r.status, 404);
}
