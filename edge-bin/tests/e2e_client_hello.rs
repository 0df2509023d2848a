//! ClientHellos edge reads before TLS: one whose SNI is an IP address
//! (RFC 6066 forbids it; wrk and some embedded clients send one) is served
//! as a client without SNI, as HAProxy and nginx do, instead of being
//! closed; one that is malformed or too large is refused with a TLS alert
//! that says why, not a bare reset.

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
    let f = front(
        "sni-ip",
        "e2e_client_hello.toml",
        &["a.test", "127.0.0.1"],
        &[],
    );
    let (port, ca) = (f.port, f.pki.ca_pem.to_str().unwrap());
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

/// Sends `bytes` and returns everything edge answers before it closes.
fn answer(port: u16, bytes: &[u8]) -> Vec<u8> {
    use std::io::Read as _;
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    // edge may stop reading once it has seen enough; a reset on write is fine.
    let _ = s.write_all(bytes);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    out
}

#[test]
fn a_refused_client_hello_gets_an_alert() {
    let f = front("hello-alert", "e2e_client_hello.toml", &["a.test"], &[]);
    let port = f.port;
    // Over the 16 KiB limit, in well-formed records.
    let big = edge_sni::ClientHelloBuilder::tls13()
        .server_name("a.test")
        .extension(0x4444, vec![7; 20_000])
        .encode();
    let want = edge_sni::fatal_alert(edge_sni::alert::ILLEGAL_PARAMETER);
    assert_eq!(answer(port, &big), want, "too large");
    // A handshake record whose ClientHello is cut short inside.
    let bad = [22, 3, 1, 0, 6, 1, 0, 0, 2, 3, 3];
    let want = edge_sni::fatal_alert(edge_sni::alert::DECODE_ERROR);
    assert_eq!(answer(port, &bad), want, "malformed");
}
