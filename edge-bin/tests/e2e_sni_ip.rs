//! A ClientHello whose SNI is an IP address (RFC 6066 forbids it; wrk and
//! some embedded clients send one) is served as a client without SNI, as
//! HAProxy and nginx do, instead of being closed.

mod common;

use std::io::Write as _;
use std::process::{Command, Stdio};

use common::*;

/// `openssl s_client -servername ADDR`: sends the address as SNI.
fn get_with_sni(port: u16, sni: &str, ca: &str) -> String {
    let mut child = Command::new("openssl")
        .args(["s_client", "-quiet", "-verify_return_error", "-CAfile", ca])
        .args(["-connect", &format!("127.0.0.1:{port}"), "-servername", sni])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("openssl (.ci/test installs it)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"GET / HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

#[test]
fn an_ip_address_as_sni_is_served_as_no_sni() {
    let dir = TempDir::new("sni-ip");
    let pki = Pki::new(&dir, "front");
    let leaf = pki.leaf(&dir, "a", &["a.test", "127.0.0.1"]);
    let port = free_port();
    let config = fixture("e2e_sni_ip.toml")
        .set("https_port", port)
        .set("cert", leaf.cert.display())
        .set("key", leaf.key.display())
        .render();
    let _edge = start_edge(&dir, "edge", &config);
    let ca = pki.ca_pem.to_str().unwrap();
    for sni in ["127.0.0.1", "::1"] {
        let out = get_with_sni(port, sni, ca);
        assert!(
            out.contains("HTTP/1.1 200") && out.contains("fine"),
            "SNI {sni}: {out}"
        );
    }
    // A name still has to be a valid one.
    let out = get_with_sni(port, "bad_name!", ca);
    assert!(!out.contains("HTTP/1.1 200"), "{out}");
}
