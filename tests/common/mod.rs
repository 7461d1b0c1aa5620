//! Shared harness for osprey's integration tests (`mod common;` in each `tests/*.rs`).
//!
//! - [`OspreyServer`]: the real `osprey serve` binary on a free loopback port and a private data
//!   directory, ready once `/health` answers and the DSN is printed; stopped gracefully,
//!   `kill -9`ed or restarted on the same data directory; killed when dropped. Its stdout and
//!   stderr go to `server.log` in the test's temp dir, and the tail of that log is printed
//!   when a test panics while the server is alive, so a failure says what the server said.
//! - Real clients: the Python and Node Sentry SDKs and sentry-cli, installed by `scripts/test`
//!   into a cache and announced through `OSPREY_TEST_PYTHON`, `OSPREY_TEST_NODE_MODULES` and
//!   `OSPREY_SENTRY_CLI`; a Kafka broker through `OSPREY_TEST_KAFKA`. A test that needs one of
//!   them and does not find it FAILS with a message to run `scripts/test`: nothing is skipped.
//! - A small blocking HTTP client, and readers of a stopped server's data directory.
//!
//! Every wait here is bounded; every child process is killed when its handle is dropped.

// Each test binary compiles this module and uses a different part of it.
#![allow(dead_code)]

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use uuid::Uuid;

/// How long a server may take from spawn to a healthy `/health` and a printed DSN.
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a graceful stop (SIGTERM) may take before it counts as a hang.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// Default limit for one SDK script or CLI run.
pub const TOOL_TIMEOUT: Duration = Duration::from_secs(120);

/// Proxy variables are removed from every child: all traffic here is to 127.0.0.1, and a
/// proxy configured on the machine must not swallow it.
const PROXY_VARS: &[&str] = &[
    "http_proxy",
    "https_proxy",
    "all_proxy",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
];

/// A port on 127.0.0.1 that nothing listens on right now. The caller binds it moments later;
/// the race with another process is handled by the retries in [`OspreyServer::start`].
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local_addr").port()
}

/// 32 lowercase hex characters (the shape of DSN keys and tokens).
pub fn random_hex32() -> String {
    Uuid::new_v4().simple().to_string()
}

/// The repository root (where `Cargo.toml` of the `osprey` package is).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A file under `tests/sdk/`.
pub fn sdk_script(name: &str) -> PathBuf {
    let path = repo_root().join("tests").join("sdk").join(name);
    assert!(path.is_file(), "missing SDK script {}", path.display());
    path
}

// ---------------------------------------------------------------------------------------------
// The server.
// ---------------------------------------------------------------------------------------------

/// How to start `osprey serve`.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// `OSPREY_ADMIN_TOKEN`: the admin API token.
    pub admin_token: String,
    /// `OSPREY_DEFAULT_KEY`: the DSN key of the default project (id 1).
    pub default_key: String,
    /// TOML written to `osprey.toml` in the temp dir and passed as `--config`.
    pub config: Option<String>,
    /// Extra arguments after `serve --listen … --data …`.
    pub args: Vec<String>,
    /// Extra environment variables for the server.
    pub env: Vec<(String, String)>,
    /// Use this data directory instead of a fresh one inside the test's temp dir.
    pub data_dir: Option<PathBuf>,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            admin_token: random_hex32(),
            default_key: random_hex32(),
            config: None,
            args: Vec::new(),
            env: Vec::new(),
            data_dir: None,
        }
    }
}

/// A running (or stopped) `osprey serve` child process with its own temp dir.
pub struct OspreyServer {
    child: Option<Child>,
    opts: ServerOptions,
    tmp: tempfile::TempDir,
    data_dir: PathBuf,
    config_path: Option<PathBuf>,
    log_path: PathBuf,
    port: u16,
    dsn: String,
    starts: u32,
}

impl OspreyServer {
    /// Starts the server and waits (bounded) until `/health` answers 200 and it has printed
    /// `DSN: …` with the configured key. Panics with the server's output otherwise.
    pub fn start(opts: ServerOptions) -> OspreyServer {
        let tmp = tempfile::Builder::new()
            .prefix("osprey-it-")
            .tempdir()
            .expect("create temp dir");
        let data_dir = opts
            .data_dir
            .clone()
            .unwrap_or_else(|| tmp.path().join("data"));
        let config_path = opts.config.as_ref().map(|text| {
            let path = tmp.path().join("osprey.toml");
            fs::write(&path, text).expect("write osprey.toml");
            path
        });
        let log_path = tmp.path().join("server.log");
        let mut server = OspreyServer {
            child: None,
            opts,
            tmp,
            data_dir,
            config_path,
            log_path,
            port: 0,
            dsn: String::new(),
            starts: 0,
        };
        server.launch(None);
        server
    }

    /// The DSN the server printed (`http://KEY@127.0.0.1:PORT/1`).
    pub fn dsn(&self) -> &str {
        &self.dsn
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `http://127.0.0.1:PORT` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.port, path)
    }

    /// The admin API token the server was started with.
    pub fn admin_token(&self) -> &str {
        &self.opts.admin_token
    }

    /// The default project's DSN key.
    pub fn default_key(&self) -> &str {
        &self.opts.default_key
    }

    /// The data directory (kept across [`restart`](Self::restart) and [`kill_9`](Self::kill_9)).
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The test's private temp dir (deleted when the server is dropped).
    pub fn temp_dir(&self) -> &Path {
        self.tmp.path()
    }

    /// Where the server's stdout and stderr go (all starts, separated by marker lines).
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// Everything the server printed so far.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// The last `lines` lines the server printed.
    pub fn log_tail(&self, lines: usize) -> String {
        let log = self.log();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// The child's pid while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// True while the child process has not exited.
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Graceful stop: SIGTERM, then wait up to [`STOP_TIMEOUT`]. Panics if the server does not
    /// exit in time (it is then killed) or exits with a failure status.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "osprey serve had already exited ({status}) before stop\n{}",
                self.log_tail(60)
            );
        }
        // std offers only SIGKILL; SIGTERM goes through kill(1) so the tests need no unsafe.
        let sent = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(
            sent,
            "could not send SIGTERM to osprey serve ({})",
            child.id()
        );
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            match child.try_wait() {
                Ok(Some(status)) => {
                    assert!(
                        status.success(),
                        "osprey serve exited with {status} on SIGTERM\n{}",
                        self.log_tail(60)
                    );
                    return;
                }
                Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(50)),
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!(
                        "osprey serve did not exit within {STOP_TIMEOUT:?} of SIGTERM\n{}",
                        self.log_tail(60)
                    );
                }
            }
        }
    }

    /// Crash: SIGKILL, no chance to flush anything.
    pub fn kill_9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the server if it runs (gracefully), then starts it again on the same data
    /// directory, on the same port when that port is still free.
    pub fn restart(&mut self) {
        if self.child.is_some() {
            self.stop();
        }
        let port = self.port;
        self.launch(Some(port));
    }

    /// Starts the server after a crash or stop, like [`restart`](Self::restart) but without
    /// stopping first (it must not be running).
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "start_again on a running server");
        let port = self.port;
        self.launch(Some(port));
    }

    /// Spawns and waits for readiness, retrying on a fresh port when the process exits during
    /// start-up (another process took the port in between).
    fn launch(&mut self, preferred_port: Option<u16>) {
        let mut errors = Vec::new();
        for attempt in 0..3 {
            let port = match (attempt, preferred_port) {
                (0, Some(port)) if port != 0 => port,
                _ => free_port(),
            };
            match self.spawn_once(port) {
                Ok(()) => return,
                Err(LaunchError::Exited(msg)) => errors.push(msg),
                Err(LaunchError::Fatal(msg)) => {
                    panic!(
                        "{msg}\n--- server log ({}) ---\n{}",
                        self.log_path.display(),
                        self.log_tail(80)
                    )
                }
            }
        }
        panic!(
            "osprey serve did not start in 3 attempts:\n{}\n--- server log ({}) ---\n{}",
            errors.join("\n"),
            self.log_path.display(),
            self.log_tail(80)
        );
    }

    fn spawn_once(&mut self, port: u16) -> Result<(), LaunchError> {
        self.starts += 1;
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .map_err(|e| LaunchError::Fatal(format!("open {}: {e}", self.log_path.display())))?;
        writeln!(
            log,
            "===== osprey-it: start #{} on port {port} =====",
            self.starts
        )
        .map_err(|e| LaunchError::Fatal(format!("write log: {e}")))?;
        let start_offset = log
            .seek(SeekFrom::End(0))
            .map_err(|e| LaunchError::Fatal(format!("seek log: {e}")))?;
        let stderr = log
            .try_clone()
            .map_err(|e| LaunchError::Fatal(format!("clone log handle: {e}")))?;

        let mut cmd = Command::new(env!("CARGO_BIN_EXE_osprey"));
        cmd.arg("serve")
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--data")
            .arg(&self.data_dir);
        if let Some(config) = &self.config_path {
            cmd.arg("--config").arg(config);
        }
        cmd.args(&self.opts.args)
            .env("OSPREY_ADMIN_TOKEN", &self.opts.admin_token)
            .env("OSPREY_DEFAULT_KEY", &self.opts.default_key)
            .envs(self.opts.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(stderr));
        for var in PROXY_VARS {
            cmd.env_remove(var);
        }
        let child = cmd.spawn().map_err(|e| {
            LaunchError::Fatal(format!("spawn {}: {e}", env!("CARGO_BIN_EXE_osprey")))
        })?;
        self.child = Some(child);
        self.port = port;

        let client = http_with_timeout(Duration::from_secs(2));
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        let mut healthy = false;
        loop {
            let child = self.child.as_mut().expect("child just spawned");
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                return Err(LaunchError::Exited(format!(
                    "start #{} on port {port}: exited during start-up with {status}",
                    self.starts
                )));
            }
            if !healthy {
                healthy = matches!(
                    client.get(self.url("/health")).send(),
                    Ok(resp) if resp.status().as_u16() == 200
                );
            }
            if healthy {
                if let Some(dsn) = self.printed_dsn(start_offset) {
                    if !dsn.contains(&self.opts.default_key) {
                        return Err(LaunchError::Fatal(format!(
                            "the printed DSN {dsn} does not carry OSPREY_DEFAULT_KEY={}",
                            self.opts.default_key
                        )));
                    }
                    self.dsn = dsn;
                    return Ok(());
                }
            }
            if Instant::now() >= deadline {
                self.kill_9();
                return Err(LaunchError::Fatal(format!(
                    "osprey serve on port {port} not ready within {STARTUP_TIMEOUT:?} \
                     (/health answered 200: {healthy}; a `DSN: ` line printed: false)"
                )));
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// The first `DSN: …` line printed since `offset` in the log.
    fn printed_dsn(&self, offset: u64) -> Option<String> {
        let mut file = File::open(&self.log_path).ok()?;
        file.seek(SeekFrom::Start(offset)).ok()?;
        let mut text = String::new();
        file.take(1 << 20).read_to_string(&mut text).ok()?;
        text.lines().find_map(|line| {
            let rest = &line[line.find("DSN: ")? + "DSN: ".len()..];
            let dsn = rest.split_whitespace().next()?;
            dsn.starts_with("http").then(|| dsn.to_string())
        })
    }

    /// GET `path` with the admin token; returns the status and the body as JSON (Null when the
    /// body is not JSON).
    pub fn api_get(&self, path: &str) -> (u16, serde_json::Value) {
        let resp = http()
            .get(self.url(path))
            .bearer_auth(&self.opts.admin_token)
            .send()
            .unwrap_or_else(|e| panic!("GET {path}: {e}\n{}", self.log_tail(40)));
        let status = resp.status().as_u16();
        let body = resp.text().unwrap_or_default();
        (
            status,
            serde_json::from_str(&body).unwrap_or(serde_json::Value::Null),
        )
    }

    /// POSTs an envelope to the default project with the default key, as an SDK does;
    /// returns the status and the body text.
    pub fn post_envelope(&self, body: impl Into<reqwest::blocking::Body>) -> (u16, String) {
        let resp = http()
            .post(self.url("/api/1/envelope/"))
            .header(
                "X-Sentry-Auth",
                format!("Sentry sentry_version=7, sentry_key={}", self.default_key()),
            )
            .body(body)
            .send()
            .unwrap_or_else(|e| panic!("POST envelope: {e}\n{}", self.log_tail(40)));
        let status = resp.status().as_u16();
        (status, resp.text().unwrap_or_default())
    }
}

enum LaunchError {
    /// The process exited during start-up: worth another try on another port.
    Exited(String),
    /// Anything else: retrying will not help.
    Fatal(String),
}

impl Drop for OspreyServer {
    fn drop(&mut self) {
        let alive = self.child.is_some();
        self.kill_9();
        if alive && thread::panicking() {
            eprintln!(
                "--- osprey serve output ({}; last 60 lines) ---\n{}",
                self.log_path.display(),
                self.log_tail(60)
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// HTTP.
// ---------------------------------------------------------------------------------------------

/// A blocking HTTP client for tests: 30 s timeout, never a proxy.
pub fn http() -> reqwest::blocking::Client {
    http_with_timeout(Duration::from_secs(30))
}

/// Like [`http`] with another per-request timeout.
pub fn http_with_timeout(timeout: Duration) -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(timeout)
        .connect_timeout(Duration::from_secs(5))
        .no_proxy()
        .build()
        .expect("build HTTP client")
}

// ---------------------------------------------------------------------------------------------
// Real clients installed by scripts/test.
// ---------------------------------------------------------------------------------------------

/// The path in `var`, which scripts/test sets; panics (fails the test) when it is missing.
pub fn tool_path(var: &str) -> PathBuf {
    match std::env::var_os(var) {
        Some(value) if !value.is_empty() => {
            let path = PathBuf::from(value);
            assert!(
                path.exists(),
                "{var}={} does not exist: run `scripts/test`, which installs the test tools",
                path.display()
            );
            path
        }
        _ => panic!(
            "{var} is not set: this test needs the real SDKs and tools; run it through \
             `scripts/test` (it installs them into ~/.cache/osprey/tools and sets {var})"
        ),
    }
}

/// The Python interpreter of the venv with `sentry-sdk` and `mcp` (`OSPREY_TEST_PYTHON`).
pub fn python() -> PathBuf {
    tool_path("OSPREY_TEST_PYTHON")
}

/// The `node_modules` with `@sentry/node` and `@sentry/cli` (`OSPREY_TEST_NODE_MODULES`).
pub fn node_modules() -> PathBuf {
    tool_path("OSPREY_TEST_NODE_MODULES")
}

/// The `sentry-cli` executable (`OSPREY_SENTRY_CLI`).
pub fn sentry_cli() -> PathBuf {
    tool_path("OSPREY_SENTRY_CLI")
}

/// The bootstrap address of the test Kafka broker (`OSPREY_TEST_KAFKA`, `127.0.0.1:PORT`).
pub fn kafka_bootstrap() -> String {
    match std::env::var("OSPREY_TEST_KAFKA") {
        Ok(addr) if !addr.is_empty() => addr,
        _ => panic!(
            "OSPREY_TEST_KAFKA is not set: this test needs a Kafka broker; run it through \
             `scripts/test` (it starts one with scripts/kafka.sh) or `scripts/kafka.sh start` \
             and export the printed OSPREY_TEST_KAFKA"
        ),
    }
}

/// What a tool run printed and how it ended.
#[derive(Debug)]
pub struct ToolOutput {
    /// Short name for messages (`python sentry-sdk`, …).
    pub what: String,
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl ToolOutput {
    /// Panics with both output streams unless the tool exited 0.
    pub fn assert_success(&self) -> &Self {
        assert!(
            self.status.success(),
            "{} failed ({})\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.what,
            self.status,
            self.stdout,
            self.stderr
        );
        self
    }

    /// The last non-empty stdout line, parsed as JSON.
    pub fn json(&self) -> serde_json::Value {
        let line = self
            .stdout
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or_else(|| panic!("{} printed nothing on stdout\n{}", self.what, self.stderr));
        serde_json::from_str(line).unwrap_or_else(|e| {
            panic!(
                "{} printed no JSON ({e}): {line}\n{}",
                self.what, self.stderr
            )
        })
    }
}

/// Runs `cmd` (stdin closed, proxies removed) for at most `timeout`, capturing its output.
/// A run past the timeout is killed and fails the test.
pub fn run_tool(what: &str, mut cmd: Command, timeout: Duration) -> ToolOutput {
    for var in PROXY_VARS {
        cmd.env_remove(var);
    }
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{what}: cannot spawn {:?}: {e}", cmd.get_program()));
    let mut out = child.stdout.take().expect("piped stdout");
    let mut err = child.stderr.take().expect("piped stderr");
    // Readers drain both pipes while we wait, so a chatty child cannot block on a full pipe.
    let out_reader = thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = out.read_to_end(&mut buf);
        buf
    });
    let err_reader = thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = err.read_to_end(&mut buf);
        buf
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(20)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
        }
    };
    let stdout = String::from_utf8_lossy(&out_reader.join().unwrap_or_default()).into_owned();
    let stderr = String::from_utf8_lossy(&err_reader.join().unwrap_or_default()).into_owned();
    match status {
        Some(status) => ToolOutput {
            what: what.to_string(),
            status,
            stdout,
            stderr,
        },
        None => panic!("{what} did not finish within {timeout:?}\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}"),
    }
}

/// Runs `tests/sdk/<script>` with the test venv's Python.
pub fn run_python<S: AsRef<OsStr>>(script: &str, args: &[S], env: &[(&str, &str)]) -> ToolOutput {
    let mut cmd = Command::new(python());
    cmd.arg(sdk_script(script))
        .args(args)
        .env("PYTHONUNBUFFERED", "1");
    cmd.envs(env.iter().copied());
    run_tool(&format!("python {script}"), cmd, TOOL_TIMEOUT)
}

/// Runs `tests/sdk/<script>` with Node.js, `NODE_PATH` pointing at the test `node_modules`.
pub fn run_node<S: AsRef<OsStr>>(script: &str, args: &[S], env: &[(&str, &str)]) -> ToolOutput {
    let mut cmd = Command::new("node");
    cmd.arg(sdk_script(script))
        .args(args)
        .env("NODE_PATH", node_modules());
    cmd.envs(env.iter().copied());
    run_tool(&format!("node {script}"), cmd, TOOL_TIMEOUT)
}

/// Runs `sentry-cli ARGS` with no config file of the user's in the way.
pub fn run_sentry_cli<S: AsRef<OsStr>>(args: &[S], env: &[(&str, &str)]) -> ToolOutput {
    let mut cmd = Command::new(sentry_cli());
    cmd.args(args)
        // No ~/.sentryclirc of the machine's user, no update check.
        .env("SENTRY_DISABLE_UPDATE_CHECK", "true")
        .env("SENTRYCLI_SKIP_DOWNLOAD", "1")
        .env_remove("SENTRY_AUTH_TOKEN")
        .env_remove("SENTRY_URL")
        .env_remove("SENTRY_ORG")
        .env_remove("SENTRY_PROJECT");
    cmd.envs(env.iter().copied());
    run_tool("sentry-cli", cmd, TOOL_TIMEOUT)
}

// ---------------------------------------------------------------------------------------------
// Reading a data directory (server stopped, or running: a secondary instance follows it).
// ---------------------------------------------------------------------------------------------

/// Upper bound on records [`read_log`] returns, so a runaway log cannot eat the test's memory.
pub const MAX_LOG_RECORDS: usize = 1_000_000;

/// Every record still in the embedded log of `data_dir`, in offset order.
pub fn read_log(data_dir: &Path) -> Vec<(u64, storage::LogRecord)> {
    let store = storage::Store::open_secondary(data_dir)
        .unwrap_or_else(|e| panic!("open {} read-only: {e}", data_dir.display()));
    let reader = storage::LogReader::new(store);
    let mut out: Vec<(u64, storage::LogRecord)> = Vec::new();
    let mut from = 0u64;
    loop {
        let page = reader
            .read(from, 1000, 16 << 20)
            .unwrap_or_else(|e| panic!("read log of {} from {from}: {e}", data_dir.display()));
        let Some(&(last, _)) = page.last() else { break };
        out.extend(page);
        assert!(
            out.len() <= MAX_LOG_RECORDS,
            "log of {} holds over {MAX_LOG_RECORDS} records",
            data_dir.display()
        );
        from = last + 1;
    }
    out
}

/// Event ids of a log record: the envelope header's, else the payload's `event_id` field.
pub fn record_event_id(record: &storage::LogRecord) -> Option<Uuid> {
    record.event_id.or_else(|| {
        let payload: serde_json::Value = serde_json::from_slice(&record.payload).ok()?;
        Uuid::parse_str(payload.get("event_id")?.as_str()?).ok()
    })
}

/// Where one expected item was found after the server stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    /// Still in the ingest log, at this offset, with this item type.
    Log { offset: u64, item_type: String },
    /// Already processed into the `events` table.
    Events,
}

/// Looks up each `(project_id, event_id)` in `data_dir`: first in the ingest log (not yet
/// processed), then in the `events` table (processed, which removes it from the log).
pub fn find_items(data_dir: &Path, wanted: &[(u64, Uuid)]) -> HashMap<Uuid, Found> {
    let mut found = HashMap::new();
    for (offset, record) in read_log(data_dir) {
        if let Some(id) = record_event_id(&record) {
            if wanted.contains(&(record.project_id, id)) {
                found.entry(id).or_insert(Found::Log {
                    offset,
                    item_type: record.item_type.clone(),
                });
            }
        }
    }
    let missing: Vec<&(u64, Uuid)> = wanted
        .iter()
        .filter(|(_, id)| !found.contains_key(id))
        .collect();
    if !missing.is_empty() {
        let store = storage::Store::open_secondary(data_dir)
            .unwrap_or_else(|e| panic!("open {} read-only: {e}", data_dir.display()));
        let events = store.cf(storage::cf::EVENTS);
        for (project_id, id) in missing {
            let key = storage::keys::event(*project_id, id);
            let stored = store
                .db()
                .get_pinned_cf(&events, key)
                .unwrap_or_else(|e| panic!("read events table: {e}"));
            if stored.is_some() {
                found.insert(*id, Found::Events);
            }
        }
    }
    found
}
