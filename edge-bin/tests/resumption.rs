//! TLS session resumption survives a reload: the ticket keys (and the TLS
//! 1.2 session cache) of the running config are kept by the config that
//! replaces it, so a client that got a ticket before a SIGHUP resumes after
//! it. Checked with OpenSSL's `s_client` (`-sess_out`, `-sess_in`).

mod common;

use std::path::Path;
use std::process::Command;

use common::*;
use edge_testkit::openssl;

/// One request over `openssl s_client` with `version` (`-tls1_3`,
/// `-tls1_2`), resuming from `input` or saving the new session to `out`:
/// whether the handshake resumed ("Reused").
fn s_client(port: u16, version: &str, input: Option<&Path>, out: Option<&Path>) -> bool {
    let addr = format!("127.0.0.1:{port}");
    let mut cmd = Command::new("timeout");
    cmd.arg("10");
    openssl::resumed(&openssl::s_client_get(
        cmd, &addr, "app.test", version, input, out,
    ))
}

#[test]
fn a_session_resumes_across_a_reload() {
    let (f, _backend) = front_of_demo_backend("resumption", "client_faults.toml", &["app.test"]);
    let session = |v: &str| f.dir.path(&format!("session{v}.pem"));
    for version in ["-tls1_3", "-tls1_2"] {
        let first = session(version);
        assert!(
            !s_client(f.port, version, None, Some(&first)),
            "a first handshake is full"
        );
        assert!(
            s_client(f.port, version, Some(&first), None),
            "{version}: resumed before a reload"
        );
    }
    // A reload (the same file: a new state is built all the same).
    let config = std::fs::read_to_string(f.edge.config()).unwrap();
    f.edge.reload(&config, 1);
    for version in ["-tls1_3", "-tls1_2"] {
        assert!(
            s_client(f.port, version, Some(&session(version)), None),
            "{version}: a session from before the reload resumes after it"
        );
    }
}
