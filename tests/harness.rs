//! The test harness itself against the real binary: start, crash and restart on the same data
//! directory, and a graceful stop. The crash and SDK tests rely on these behaving.

mod common;

use common::{http, OspreyServer, ServerOptions};

#[test]
fn server_survives_kill_9_and_restart_on_the_same_data_dir() {
    let opts = ServerOptions::default();
    let key = opts.default_key.clone();
    let mut server = OspreyServer::start(opts);
    let expected = format!("http://{key}@127.0.0.1:");
    assert!(
        server.dsn().starts_with(&expected) && server.dsn().ends_with("/1"),
        "unexpected DSN {}",
        server.dsn()
    );
    let first_pid = server.pid().expect("running");

    server.kill_9();
    assert!(!server.is_running());
    assert!(
        http().get(server.url("/health")).send().is_err(),
        "something still answers on the killed server's port"
    );

    server.start_again();
    assert_ne!(server.pid(), Some(first_pid));
    assert!(
        server.dsn().contains(&key),
        "the DSN key changed across a crash: {}",
        server.dsn()
    );
    let health = http()
        .get(server.url("/health"))
        .send()
        .expect("GET /health");
    assert_eq!(health.status().as_u16(), 200);

    server.restart();
    assert!(
        server.dsn().contains(&key),
        "the DSN key changed across a restart: {}",
        server.dsn()
    );
    server.stop();
    assert!(!server.is_running());
    assert!(
        server.log().matches("===== osprey-it: start #").count() >= 3,
        "the log should hold all three starts:\n{}",
        server.log_tail(40)
    );
}
