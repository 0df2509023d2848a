//! TLS session resumption survives a reload: the ticket keys (and the TLS
//! 1.2 session cache) of the running config are kept by the config that
//! replaces it, so a client that got a ticket before a SIGHUP resumes after
//! it. Checked with OpenSSL's `s_client` (`-sess_out`, `-sess_in`).

mod common;

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};

use common::*;

/// One request over `openssl s_client` with `version` (`-tls1_3`,
/// `-tls1_2`), resuming from `input` or saving the new session to `out`:
/// whether the handshake resumed ("Reused").
fn s_client(port: u16, version: &str, input: Option<&Path>, out: Option<&Path>) -> bool {
    let mut cmd = Command::new("openssl");
    cmd.args(["s_client", "-connect", &format!("127.0.0.1:{port}")])
        .args(["-servername", "app.test", version, "-ign_eof"]);
    if let Some(o) = out {
        cmd.arg("-sess_out").arg(o);
    }
    if let Some(i) = input {
        cmd.arg("-sess_in").arg(i);
    }
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("openssl");
    // The server closes after the answer, so s_client reads the ticket
    // that came after the handshake, then ends.
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"GET / HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n")
        .unwrap();
    let o = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains("HTTP/1.1 200"),
        "no answer:\n{text}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    text.contains("Reused, TLSv1.")
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
