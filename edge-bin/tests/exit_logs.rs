//! What edge's log says when it starts and stops: a bind error names its
//! address (the demo backend's too), a fatal error is written once, and the
//! last line says why edge exits.

mod common;

use std::net::TcpListener;
use std::time::Duration;

use common::*;

/// Starts edge from `config` and waits for it to exit on its own: (exit
/// code, log).
fn run_until_exit(dir: &TempDir, config: &str) -> (Option<i32>, String) {
    let mut edge = Edge::builder(EDGE, dir.write("edge.toml", config))
        .log(dir.path("edge.log"))
        .spawn();
    let (status, _) = edge.wait_exited(Duration::from_secs(20));
    (status.code(), edge.log_plain())
}

fn last_line(log: &str) -> &str {
    log.lines().rfind(|l| !l.trim().is_empty()).unwrap_or("")
}

#[test]
fn a_demo_backend_bind_error_names_its_address_once_and_is_the_last_line() {
    let dir = TempDir::new("exit-logs-demo");
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let config = fixture("demo_backend.toml").set("port", port).render();
    let (code, log) = run_until_exit(&dir, &config);
    assert_eq!(code, Some(1), "{log}");
    let want = format!("cannot listen on 127.0.0.1:{port} (demo backend)");
    assert_eq!(
        log.matches(&want).count(),
        1,
        "once, naming the address:\n{log}"
    );
    assert!(last_line(&log).contains("edge exits on an error"), "{log}");
    assert!(last_line(&log).contains(&want), "{log}");
}

#[test]
fn a_listener_bind_error_is_written_once() {
    let dir = TempDir::new("exit-logs-listener");
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let config = fixture("exit_listener.toml")
        .set("https_port", port)
        .render();
    let (code, log) = run_until_exit(&dir, &config);
    assert_eq!(code, Some(1), "{log}");
    let want = format!("cannot listen on 127.0.0.1:{port}");
    assert_eq!(log.matches(&want).count(), 1, "{log}");
    assert!(last_line(&log).contains("edge exits on an error"), "{log}");
}

#[test]
fn the_last_line_after_sigterm_says_edge_stopped_and_why() {
    let dir = TempDir::new("exit-logs-term");
    let config = fixture("demo_backend.toml")
        .set("port", free_port())
        .render();
    let mut edge = start_edge(&dir, "edge", &config);
    edge.signal("-TERM");
    let (status, _) = edge.wait_exited(Duration::from_secs(20));
    let log = edge.log_plain();
    assert_eq!(status.code(), Some(0), "{log}");
    assert!(
        last_line(&log).contains("edge exits: stopped by SIGTERM"),
        "{log}"
    );
}
