//! The official Sentry MCP server (`@sentry/mcp-server`, run by Node ≥ 22.13 over stdio) against
//! a real `osprey serve`, driven by the Python `mcp` client after the Python Sentry SDK sent
//! errors and transactions: every tool the acceptance names answers with the data that was
//! sent (tests/mcp/sentry_mcp_drive.py checks the values).
//!
//! Needs OSPREY_TEST_PYTHON (a Python with `sentry_sdk` and `mcp`, from scripts/test) and
//! OSPREY_MCP_NODE / OSPREY_MCP_SERVER (printed by scripts/install-mcp-server.sh); fails when
//! they are missing.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const TOKEN: &str = "mcp-acceptance-admin-token";

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run the tests through scripts/test (it installs the tools)")
    })
}

/// Kills the server when the test ends, however it ends.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `osprey serve` on a free loopback port; returns it with its DSN and host:port.
fn start(data: &std::path::Path) -> (Server, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_osprey"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(data)
        .env("OSPREY_ADMIN_TOKEN", TOKEN)
        .env("OSPREY_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start osprey serve");
    let stdout = child.stdout.take().expect("stdout piped");
    let server = Server(child);
    let mut dsn = None;
    let mut host = None;
    let deadline = Instant::now() + Duration::from_secs(60);
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("read server stdout");
        if let Some(d) = line.strip_prefix("DSN: ") {
            dsn = Some(d.trim().to_owned());
        }
        if let Some(h) = line.strip_prefix("Listening on http://") {
            host = Some(h.trim().to_owned());
            break;
        }
        assert!(Instant::now() < deadline, "server did not start");
    }
    let (dsn, host) = (dsn.expect("DSN printed"), host.expect("address printed"));
    // The DSN names the bound address already (no public_url configured).
    (server, dsn, host)
}

#[test]
fn official_sentry_mcp_server_answers_with_the_sent_data() {
    let python = env("OSPREY_TEST_PYTHON");
    let node = env("OSPREY_MCP_NODE");
    let entry = env("OSPREY_MCP_SERVER");
    let dir = tempfile::tempdir().unwrap();
    let (_server, dsn, host) = start(dir.path());
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/mcp/sentry_mcp_drive.py");
    let out = Command::new(python)
        .args([script, &node, &entry, &host, TOKEN, &dsn])
        .env_remove("SENTRY_DSN")
        .output()
        .expect("run the MCP driver");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "MCP driver failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("OK: find_organizations"), "{stdout}");
}
