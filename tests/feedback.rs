//! User feedback end to end: the real Python sentry-sdk sends an error, then a legacy
//! `user_report` and a new-style `feedback` item about it through its own transport; the real
//! @sentry/node SDK sends an error and `Sentry.captureFeedback` about it. The web API lists the
//! feedback newest first in Sentry's user-report shape, each linked to the error's issue, the
//! issue's `user-reports/` lists them, and `stats_v2` counts them as accepted `feedback`.

mod common;

use std::thread;
use std::time::{Duration, Instant};

use common::{run_node, run_python, OspreyServer, ServerOptions};
use serde_json::Value;

/// How long processing may take.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(60);

/// GET `path` until `done` accepts the body (bounded by [`DRAIN_TIMEOUT`]).
fn wait_for(server: &OspreyServer, path: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + DRAIN_TIMEOUT;
    loop {
        let (status, body) = server.api_get(path);
        if status == 200 && done(&body) {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "{path} not as expected in time: {status} {body}"
        );
        thread::sleep(Duration::from_millis(100));
    }
}

/// The issue id of a processed event.
fn issue_of(server: &OspreyServer, event_id: &str) -> String {
    let event = wait_for(
        server,
        &format!("/api/0/projects/default/default/events/{event_id}/"),
        |e| e["groupID"].is_string(),
    );
    event["groupID"].as_str().unwrap().to_owned()
}

/// The feedback of the project's list whose `eventID` is `event_id`, once `count` of them are.
fn feedback_about(server: &OspreyServer, event_id: &str, count: usize) -> Vec<Value> {
    let list = wait_for(
        server,
        "/api/0/projects/default/default/user-feedback/",
        |l| {
            l.as_array()
                .is_some_and(|a| a.iter().filter(|f| f["eventID"] == event_id).count() >= count)
        },
    );
    list.as_array()
        .unwrap()
        .iter()
        .filter(|f| f["eventID"] == event_id)
        .cloned()
        .collect()
}

#[test]
fn python_and_node_sdk_feedback_is_listed_with_its_issue() {
    let server = OspreyServer::start(ServerOptions::default());

    // Python: an error, then a user report and a feedback event about it.
    let out = run_python("python_feedback.py", &[server.dsn()], &[]);
    out.assert_success();
    let report = out.json();
    let event_id = report["event"].as_str().expect("event id").replace('-', "");
    let feedback_id = report["feedback"].as_str().expect("feedback id").to_owned();
    let issue = issue_of(&server, &event_id);

    let listed = feedback_about(&server, &event_id, 2);
    assert_eq!(listed.len(), 2, "{listed:#?}");
    // Newest first: the feedback event was sent after the user report.
    let (fb, ur) = (&listed[0], &listed[1]);
    assert_eq!(fb["id"], feedback_id.as_str(), "{fb}");
    assert_eq!(fb["kind"], "feedback");
    assert_eq!(fb["comments"], "Checkout button does nothing");
    assert_eq!(fb["name"], "Bo");
    assert_eq!(fb["email"], "bo@example.com");
    assert_eq!(fb["url"], "https://shop.example.com/checkout");
    assert_eq!(ur["kind"], "user_report");
    assert_eq!(
        ur["comments"], "The cart emptied itself when I paid.",
        "trimmed"
    );
    assert_eq!(ur["name"], "Ann Example");
    assert_eq!(ur["email"], "ann@example.com");
    assert_eq!(ur["event"]["eventID"], event_id.as_str());
    for f in [fb, ur] {
        assert_eq!(f["issue"]["id"], issue.as_str(), "{f}");
        assert!(f["dateCreated"].as_str().unwrap().ends_with('Z'), "{f}");
    }

    // The issue's feedback (Sentry's path) and its count.
    let of_issue = wait_for(
        &server,
        &format!("/api/0/organizations/default/issues/{issue}/user-reports/"),
        |l| l.as_array().is_some_and(|a| a.len() >= 2),
    );
    let comments: Vec<&str> = of_issue
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["comments"].as_str().unwrap())
        .collect();
    assert_eq!(
        comments,
        [
            "Checkout button does nothing",
            "The cart emptied itself when I paid."
        ]
    );
    let (_, detail) = server.api_get(&format!("/api/0/organizations/default/issues/{issue}/"));
    assert_eq!(detail["userReportCount"], 2, "{detail}");

    // Node: an error, then Sentry.captureFeedback about it.
    let out = run_node("node_feedback.js", &[server.dsn()], &[]);
    out.assert_success();
    let report = out.json();
    let node_event = report["error"].as_str().expect("error id").to_owned();
    let node_issue = issue_of(&server, &node_event);
    let listed = feedback_about(&server, &node_event, 1);
    let fb = &listed[0];
    assert_eq!(fb["id"], report["feedback"], "{fb}");
    assert_eq!(fb["comments"], "Payment keeps failing");
    assert_eq!(fb["name"], "Cy");
    assert_eq!(fb["email"], "cy@example.com");
    assert_eq!(fb["url"], "https://shop.example.com/pay");
    assert_eq!(fb["environment"], "test");
    assert_eq!(fb["issue"]["id"], node_issue.as_str(), "{fb}");
    let of_issue = server.api_get(&format!("/api/0/issues/{node_issue}/user-feedback/"));
    assert_eq!(
        of_issue.1.as_array().map(Vec::len),
        Some(1),
        "{:?}",
        of_issue.1
    );

    // Counted as Relay counts them: three accepted items in category feedback.
    let stats = server.api_get(
        "/api/0/organizations/default/stats_v2/?field=sum(quantity)&groupBy=outcome\
         &category=feedback&statsPeriod=1d",
    );
    assert_eq!(stats.0, 200, "{}", stats.1);
    let accepted = stats.1["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["by"]["outcome"] == "accepted")
        .map(|g| g["totals"]["sum(quantity)"].clone());
    assert_eq!(accepted, Some(3.into()), "{}", stats.1);
}
