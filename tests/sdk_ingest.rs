//! Real Sentry clients against a real `osprey serve`: the Python sentry-sdk, @sentry/node,
//! the Rust `sentry` crate and `sentry-cli send-event` each deliver an error (and a
//! transaction where the client can send one), every HTTP answer they get is 2xx, after the
//! server stops every item is durably in its data directory — still in the ingest log, or
//! already processed into the events table — and once it runs again the processor keeps every
//! item: each is readable through Sentry's event API.
//!
//! The tools come from `scripts/test`; run through it (or export what it exports).

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{
    find_items, run_node, run_python, run_sentry_cli, Found, OspreyServer, ServerOptions,
};
use serde_json::Value;
use uuid::Uuid;

/// The default project's id (the one `OSPREY_DEFAULT_KEY` belongs to).
const DEFAULT_PROJECT: u64 = 1;

/// One item a client reported as sent: which client, its event id, and the envelope item type
/// it must arrive as.
struct Sent {
    what: String,
    id: Uuid,
    item_type: &'static str,
}

fn id_field(what: &str, report: &Value, field: &str) -> Uuid {
    let text = report
        .get(field)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("{what} reported no {field:?} id: {report}"));
    Uuid::parse_str(text)
        .unwrap_or_else(|e| panic!("{what} {field} id {text:?} is not a UUID: {e}"))
}

/// The items a client script reported as sent: `(report field holding the event id, the
/// envelope item type it must arrive as)` per item.
fn reported(what: &str, report: &Value, fields: &[(&str, &'static str)]) -> Vec<Sent> {
    fields
        .iter()
        .map(|&(field, item_type)| Sent {
            what: what.into(),
            id: id_field(what, report, field),
            item_type,
        })
        .collect()
}

/// Every `responses[].status` the script's recording transport saw must be 2xx.
fn assert_all_2xx(what: &str, report: &Value, at_least: usize) {
    let responses = report
        .get("responses")
        .and_then(Value::as_array)
        .unwrap_or_else(|| panic!("{what} reported no responses: {report}"));
    assert!(
        responses.len() >= at_least,
        "{what}: {} HTTP answers, expected at least {at_least}: {report}",
        responses.len()
    );
    for response in responses {
        let status = response.get("status").and_then(Value::as_u64).unwrap_or(0);
        assert!(
            (200..300).contains(&status),
            "{what}: answer {response} is not 2xx"
        );
    }
}

/// How long the processor may take to make a sent item readable through the API.
const PROCESS_DEADLINE: Duration = Duration::from_secs(30);

/// Waits until each sent item is processed and kept: readable through Sentry's event API. An
/// item the processor drops (as an invalid transaction, say) fails here, whenever the
/// processor gets to it; checking only the data directory after stopping let such a drop pass
/// whenever the server stopped before processing the item.
fn assert_processed(server: &OspreyServer, sent: &[Sent]) {
    for item in sent {
        let path = format!(
            "/api/0/projects/default/default/events/{}/",
            item.id.simple()
        );
        let deadline = std::time::Instant::now() + PROCESS_DEADLINE;
        loop {
            let (status, body) = server.api_get(&path);
            if status == 200 {
                assert_eq!(
                    body.get("eventID").and_then(Value::as_str),
                    Some(item.id.simple().to_string().as_str()),
                    "{}: GET {path} answered another event: {body}",
                    item.what
                );
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{}: {} ({}) is still not readable at {path} after {PROCESS_DEADLINE:?} \
                 (last answer {status} {body}); the processor dropped or never reached it\n\
                 --- server log ---\n{}",
                item.what,
                item.id,
                item.item_type,
                server.log_tail(60)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Stops the server at once and checks that each sent item is stored in its data directory
/// (still in the log, or processed), then starts it again and checks that the processor keeps
/// every item (see [`assert_processed`]).
fn assert_stored(server: &mut OspreyServer, sent: &[Sent]) {
    assert_durable(server, sent);
    server.start_again();
    assert_processed(server, sent);
}

/// Stops the server, then checks that each sent item is stored in its data directory.
fn assert_durable(server: &mut OspreyServer, sent: &[Sent]) {
    server.stop();
    let wanted: Vec<(u64, Uuid)> = sent.iter().map(|s| (DEFAULT_PROJECT, s.id)).collect();
    let found: HashMap<Uuid, Found> = find_items(server.data_dir(), &wanted);
    for item in sent {
        eprintln!("{}: {} -> {:?}", item.what, item.id, found.get(&item.id));
        match found.get(&item.id) {
            Some(Found::Log { item_type, offset }) => assert_eq!(
                item_type, item.item_type,
                "{}: {} at log offset {offset} has the wrong item type",
                item.what, item.id
            ),
            Some(Found::Events) => {}
            None => panic!(
                "{}: {} ({}) was answered 2xx but is neither in the log nor in the events \
                 table of {}\n--- server log ---\n{}",
                item.what,
                item.id,
                item.item_type,
                server.data_dir().display(),
                server.log_tail(60)
            ),
        }
    }
}

#[test]
fn python_sentry_sdk_error_message_and_transaction_are_stored() {
    let mut server = OspreyServer::start(ServerOptions::default());
    let out = run_python("python_send.py", &[server.dsn()], &[]);
    out.assert_success();
    let report = out.json();
    assert_all_2xx("python sentry-sdk", &report, 3);
    let what = "python sentry-sdk";
    let sent = reported(
        what,
        &report,
        &[
            ("error", "event"),
            ("message", "event"),
            ("transaction", "transaction"),
        ],
    );
    assert_stored(&mut server, &sent);
}

#[test]
fn node_sentry_sdk_error_message_and_transaction_are_stored() {
    let mut server = OspreyServer::start(ServerOptions::default());
    let out = run_node("node_send.js", &[server.dsn()], &[]);
    out.assert_success();
    let report = out.json();
    assert_all_2xx("@sentry/node", &report, 3);
    let what = "@sentry/node";
    let sent = reported(
        what,
        &report,
        &[
            ("error", "event"),
            ("message", "event"),
            ("transaction", "transaction"),
        ],
    );
    assert_stored(&mut server, &sent);
}

/// @sentry/node 11's default: spans streamed as `span` items (span v2), no transaction event.
/// The server must accept them (2xx); the errors sent alongside must be stored.
#[test]
fn node_sentry_sdk_streamed_spans_are_accepted() {
    let mut server = OspreyServer::start(ServerOptions::default());
    let out = run_node("node_send.js", &[server.dsn(), "--stream"], &[]);
    out.assert_success();
    let report = out.json();
    assert_all_2xx("@sentry/node (span streaming)", &report, 3);
    let streamed = report["responses"]
        .as_array()
        .map(|r| {
            r.iter().any(|x| {
                x["items"]
                    .as_array()
                    .is_some_and(|i| i.iter().any(|t| t == "span"))
            })
        })
        .unwrap_or(false);
    assert!(
        streamed,
        "no span envelope was sent in stream mode: {report}"
    );
    let what = "@sentry/node (span streaming)";
    let sent = reported(what, &report, &[("error", "event"), ("message", "event")]);
    assert_stored(&mut server, &sent);
}

/// Spans in a trace tree from the trace API, the roots' descendants included.
fn trace_span_count(nodes: &Value) -> usize {
    nodes.as_array().map_or(0, |list| {
        list.iter()
            .filter(|n| n.get("span_id").is_some())
            .map(|n| 1 + trace_span_count(&n["children"]))
            .sum()
    })
}

/// @sentry/node's span buffer flushes a trace every 1000 spans (and every 5 s), so a segment
/// with 1200 children arrives as a span item of 1000 children and, later, one with the rest
/// and the segment span. Every child must end up in the segment's transaction: the trace
/// shows all 1201 spans (osprey used to drop the 1000 that came first).
#[test]
fn node_sentry_sdk_segment_streamed_in_several_envelopes_keeps_every_span() {
    const CHILDREN: usize = 1200;
    let server = OspreyServer::start(ServerOptions::default());
    let children = CHILDREN.to_string();
    let out = run_node(
        "node_stream_segment.js",
        &[server.dsn(), children.as_str()],
        &[],
    );
    out.assert_success();
    let report = out.json();
    assert_all_2xx("@sentry/node (large streamed segment)", &report, 2);
    assert!(
        report["span_items"]
            .as_array()
            .is_some_and(|i| i.len() >= 2),
        "the SDK sent the segment in one item; this test needs it split: {report}"
    );
    let trace_id = report["trace_id"]
        .as_str()
        .unwrap_or_else(|| panic!("no trace id: {report}"));
    let path = format!("/api/0/organizations/default/trace/{trace_id}/");
    let deadline = std::time::Instant::now() + PROCESS_DEADLINE;
    loop {
        let (status, body) = server.api_get(&path);
        let spans = if status == 200 {
            trace_span_count(&body)
        } else {
            0
        };
        if spans == CHILDREN + 1 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "GET {path}: {spans} of {} spans after {PROCESS_DEADLINE:?} (last answer {status})\n\
             --- server log ---\n{}",
            CHILDREN + 1,
            server.log_tail(60)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn sentry_cli_send_event_is_stored() {
    let mut server = OspreyServer::start(ServerOptions::default());
    let dsn = server.dsn().to_string();
    let out = run_sentry_cli(
        &[
            "--log-level=debug",
            "send-event",
            "--no-environ",
            "-m",
            "osprey sentry-cli message",
            "-t",
            "sdk_test:cli",
            "-r",
            "osprey-test@1.0.0",
        ],
        &[("SENTRY_DSN", dsn.as_str())],
    );
    out.assert_success();
    // With --log-level=debug sentry-cli logs each HTTP answer as `< HTTP/1.1 200 OK`.
    let statuses: Vec<u16> = out
        .stderr
        .lines()
        .chain(out.stdout.lines())
        .filter_map(|line| {
            let rest = &line[line.find("< HTTP/")?..];
            rest.split_whitespace().nth(2)?.parse().ok()
        })
        .collect();
    assert!(
        !statuses.is_empty(),
        "sentry-cli logged no HTTP answer\n{}",
        out.stderr
    );
    assert!(
        statuses.iter().all(|s| (200..300).contains(s)),
        "sentry-cli got non-2xx answers {statuses:?}\n{}",
        out.stderr
    );
    let id_text = out
        .stdout
        .lines()
        .chain(out.stderr.lines())
        .find_map(|line| line.trim().strip_prefix("Event id:").map(str::trim))
        .unwrap_or_else(|| {
            panic!(
                "sentry-cli printed no `Event id:`\n{}\n{}",
                out.stdout, out.stderr
            )
        })
        .to_string();
    let id = Uuid::parse_str(&id_text)
        .unwrap_or_else(|e| panic!("sentry-cli event id {id_text:?}: {e}"));
    assert_stored(
        &mut server,
        &[Sent {
            what: "sentry-cli send-event".into(),
            id,
            item_type: "event",
        }],
    );
}

/// Envelopes the Rust SDK handed to its transport: envelope event id and item kinds.
type SentLog = Arc<Mutex<Vec<(Option<Uuid>, Vec<&'static str>)>>>;

/// The crate's own HTTP transport (ureq), wrapped only to note which envelopes went out.
struct RecordingTransport {
    inner: Arc<dyn sentry::Transport>,
    sent: SentLog,
}

impl sentry::Transport for RecordingTransport {
    fn send_envelope(&self, envelope: sentry::Envelope) {
        use sentry::protocol::EnvelopeItem;
        let kinds = envelope
            .items()
            .map(|item| match item {
                EnvelopeItem::Event(_) => "event",
                EnvelopeItem::Transaction(_) => "transaction",
                EnvelopeItem::SessionUpdate(_) | EnvelopeItem::SessionAggregates(_) => "session",
                _ => "other",
            })
            .collect();
        self.sent
            .lock()
            .expect("recording lock")
            .push((envelope.uuid().copied(), kinds));
        self.inner.send_envelope(envelope);
    }

    fn flush(&self, timeout: Duration) -> bool {
        self.inner.flush(timeout)
    }

    fn shutdown(&self, timeout: Duration) -> bool {
        self.inner.shutdown(timeout)
    }
}

struct RecordingFactory(SentLog);

impl sentry::TransportFactory for RecordingFactory {
    fn create_transport_with_options(
        &self,
        options: sentry::TransportOptions,
    ) -> Arc<dyn sentry::Transport> {
        let inner = sentry::transports::UreqHttpTransportOptions::from(options).build();
        Arc::new(RecordingTransport {
            inner: Arc::new(inner),
            sent: Arc::clone(&self.0),
        })
    }
}

#[test]
fn rust_sentry_crate_error_message_and_transaction_are_stored() {
    let mut server = OspreyServer::start(ServerOptions::default());
    let recorded = Arc::new(Mutex::new(Vec::new()));
    let mut options = sentry::ClientOptions::new().traces_sample_rate(1.0);
    options.dsn = Some(
        server
            .dsn()
            .parse()
            .expect("the printed DSN parses as a Sentry DSN"),
    );
    options.release = Some("osprey-test@1.0.0".into());
    options.environment = Some("test".into());
    options.shutdown_timeout = Duration::from_secs(15);
    options.transport = Some(Arc::new(RecordingFactory(Arc::clone(&recorded))));
    let client = Arc::new(sentry::Client::from(options));
    // A hub of this test's own: other tests in this binary never see this client.
    let hub = Arc::new(sentry::Hub::new(
        Some(Arc::clone(&client)),
        Arc::new(sentry::Scope::default()),
    ));

    let (error_id, message_id) = sentry::Hub::run(Arc::clone(&hub), || {
        sentry::configure_scope(|scope| scope.set_tag("sdk_test", "rust"));
        let parse_error = "not a number"
            .parse::<u32>()
            .expect_err("parsing text as u32 fails");
        let error_id = sentry::capture_error(&parse_error);
        let message_id = sentry::capture_message("osprey rust message", sentry::Level::Warning);
        let transaction = sentry::start_transaction(sentry::TransactionContext::new(
            "GET /checkout",
            "http.server",
        ));
        let db = transaction.start_child("db.query", "SELECT * FROM carts");
        db.finish();
        let http = transaction.start_child("http.client", "GET /prices");
        http.finish();
        // The crate sends the whole URL; Relay moves its query and fragment into their fields.
        transaction.set_request(sentry::protocol::Request {
            url: Some(
                "http://shop.example/checkout?cart=42&step=pay#summary"
                    .parse()
                    .expect("a valid URL"),
            ),
            method: Some("GET".into()),
            ..Default::default()
        });
        transaction.finish();
        (error_id, message_id)
    });
    assert!(
        client.flush(Some(Duration::from_secs(15))),
        "the Rust SDK did not flush in 15 s"
    );
    client.close(Some(Duration::from_secs(15)));

    let recorded = recorded.lock().expect("recording lock").clone();
    let transaction_id = recorded
        .iter()
        .find(|(_, kinds)| kinds.contains(&"transaction"))
        .and_then(|(id, _)| *id)
        .unwrap_or_else(|| panic!("the Rust SDK sent no transaction envelope: {recorded:?}"));
    let what = "rust sentry crate";
    assert_stored(
        &mut server,
        &[
            Sent {
                what: what.into(),
                id: error_id,
                item_type: "event",
            },
            Sent {
                what: what.into(),
                id: message_id,
                item_type: "event",
            },
            Sent {
                what: what.into(),
                id: transaction_id,
                item_type: "transaction",
            },
        ],
    );
    let path = format!(
        "/api/0/projects/default/default/events/{}/",
        transaction_id.simple()
    );
    let (status, event) = server.api_get(&path);
    assert_eq!(status, 200, "GET {path}: {event}");
    let request = event["entries"]
        .as_array()
        .and_then(|entries| entries.iter().find(|e| e["type"] == "request"))
        .unwrap_or_else(|| panic!("the Rust SDK transaction has no request entry: {event}"));
    assert_eq!(
        request["data"]["url"], "http://shop.example/checkout",
        "{request}"
    );
    assert_eq!(
        request["data"]["query"],
        serde_json::json!([["cart", "42"], ["step", "pay"]]),
        "{request}"
    );
    assert_eq!(request["data"]["fragment"], "summary", "{request}");
}
