//! MCP tool argument handling, through the real protocol: one MCP session (rmcp client ↔
//! osprey's tools over an in-memory pipe, on a store with a few events) stays open across
//! runs; each input names a tool (first byte) and gives its arguments (the rest, as JSON).
//! Every call must come back as a result or a protocol error; a panic in a tool or a hung call
//! is a failure.
#![no_main]

use std::sync::OnceLock;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use rmcp::model::CallToolRequestParams;
use rmcp::service::RunningService;
use rmcp::{RoleClient, ServiceExt};


struct Session {
    runtime: tokio::runtime::Runtime,
    client: RunningService<RoleClient, ()>,
    _dir: tempfile::TempDir,
}

fn session() -> &'static Session {
    static SESSION: OnceLock<Session> = OnceLock::new();
    SESSION.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = storage::Store::open(dir.path(), &storage::StoreOptions::default())
            .expect("open store");
        store.bootstrap(None, None).expect("bootstrap");
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let tools = mcp::OspreyTools::new(query::QueryService::new(store), None);
        let client = runtime.block_on(async move {
            let (server_io, client_io) = tokio::io::duplex(1 << 16);
            tokio::spawn(async move {
                if let Ok(running) = tools.serve(server_io).await {
                    let _ = running.waiting().await;
                }
            });
            ().serve(client_io).await.expect("MCP session")
        });
        Session {
            runtime,
            client,
            _dir: dir,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let args = match serde_json::from_slice::<serde_json::Value>(rest) {
        Ok(serde_json::Value::Object(args)) => args,
        // Not a JSON object: the bytes become the value of every string argument, so string
        // handling (ids, time ranges, queries, slugs) is fuzzed too, not only JSON shapes.
        _ => {
            let text = String::from_utf8_lossy(rest).into_owned();
            let mut args = serde_json::Map::new();
            for key in [
                "project",
                "timeRange",
                "query",
                "issue",
                "event_id",
                "trace_id",
                "dataset",
                "base",
                "head",
                "sort",
                "level",
                "message",
                "action",
            ] {
                args.insert(key.into(), serde_json::Value::String(text.clone()));
            }
            args
        }
    };
    let name = mcp::TOOL_NAMES[selector as usize % mcp::TOOL_NAMES.len()];
    let s = session();
    let call = s
        .client
        .call_tool(CallToolRequestParams::new(name).with_arguments(args));
    let answered = s
        .runtime
        .block_on(async { tokio::time::timeout(Duration::from_secs(10), call).await });
    assert!(answered.is_ok(), "{name} did not answer within 10 s");
});
