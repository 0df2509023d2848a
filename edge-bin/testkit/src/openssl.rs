//! `openssl s_client` as a test's TLS client that saves and resumes
//! sessions.

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};

/// One `GET /` with `Connection: close` over `openssl s_client` to `addr`
/// (`HOST:PORT`) with SNI and `Host` `host` and `version` (`-tls1_3`,
/// `-tls1_2`), resuming the session in `input` or saving the new one to
/// `out`. `cmd` runs openssl: `Command::new("timeout")` with `10`, or a
/// lab host's `command(HOST, &["timeout", "10"])`. Panics unless the
/// answer is a 200; returns s_client's output (see [`resumed`]).
pub fn s_client_get(
    mut cmd: Command,
    addr: &str,
    host: &str,
    version: &str,
    input: Option<&Path>,
    out: Option<&Path>,
) -> String {
    cmd.args(["openssl", "s_client", "-connect", addr]).args([
        "-servername",
        host,
        version,
        "-ign_eof",
    ]);
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
    let request = format!("GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(request.as_bytes())
        .unwrap();
    let o = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        text.contains("HTTP/1.1 200"),
        "no answer:\n{text}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    text
}

/// Whether s_client's output says the handshake resumed ("Reused").
pub fn resumed(s_client_output: &str) -> bool {
    s_client_output.contains("Reused, TLSv1.")
}
