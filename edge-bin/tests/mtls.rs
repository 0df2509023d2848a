//! Client certificates by SNI (`[[client_auth]]`) with real clients: curl
//! and `openssl s_client`. A valid certificate gets through and the backend
//! (the demo backend, which echoes the `X-Client-Cert-*` headers) sees its
//! subject; none is a TLS alert where required and a 403 on a route that
//! demands one where optional; a certificate of another CA and a revoked
//! one are refused; a client's own `X-Client-Cert-Subject` never reaches
//! the backend; the access log records subject and fingerprint.

mod common;

use std::io::Write as _;
use std::process::{Command, Stdio};

use common::*;

struct Setup {
    dir: TempDir,
    port: u16,
    edge: Edge,
    clients: Pki,
    _backend: Edge,
    ca: String,
    alice: Leaf,
    revoked: Leaf,
    eve: Leaf,
}

fn setup(test: &str) -> Setup {
    let dir = TempDir::new(test);
    let backend_port = free_port();
    let backend = start_edge(
        &dir,
        "backend",
        &fixture("demo_backend.toml")
            .set("port", backend_port)
            .render(),
    );
    let server = Pki::new(&dir, "front");
    let leaf = server.leaf(&dir, "front", &["req.test", "opt.test", "open.test"]);
    let clients = Pki::new(&dir, "clients");
    let alice = clients.client_leaf(&dir, "alice", "alice", 10);
    let revoked = clients.client_leaf(&dir, "mallory", "mallory", 11);
    let crl = clients.crl(&dir, "clients", &[11]);
    // Another CA, the same subject.
    let other = Pki::new(&dir, "other");
    let eve = other.client_leaf(&dir, "eve", "alice", 12);
    let port = free_port();
    let config = fixture("mtls.toml")
        .set("https_port", port)
        .set("backend_port", backend_port)
        .path("cert", &leaf.cert)
        .path("key", &leaf.key)
        .path("clients_ca", &clients.ca_pem)
        .path("clients_crl", &crl)
        .render();
    let edge = start_edge(&dir, "edge", &config);
    Setup {
        ca: server.ca_pem.display().to_string(),
        dir,
        port,
        edge,
        clients,
        _backend: backend,
        alice,
        revoked,
        eve,
    }
}

impl Setup {
    /// curl to `https://HOST:PORT/PATH` (resolved to 127.0.0.1) with the
    /// client certificate `leaf`, if any, and extra arguments.
    fn curl(&self, host: &str, path: &str, leaf: Option<&Leaf>, extra: &[&str]) -> (i32, String) {
        let port = self.port;
        let resolve = format!("{host}:{port}:127.0.0.1");
        let url = format!("https://{host}:{port}{path}");
        let (cert, key);
        let mut args = vec!["--cacert", &self.ca, "--resolve", &resolve];
        if let Some(l) = leaf {
            cert = l.cert.display().to_string();
            key = l.key.display().to_string();
            args.extend(["--cert", &cert, "--key", &key]);
        }
        args.extend(["-w", "\nstatus=%{http_code}\n"]);
        args.extend(extra);
        args.push(&url);
        curl(&args)
    }

    /// `openssl s_client` to HOST with `leaf`, sending one request: its
    /// output (the handshake, any alert, the answer).
    fn s_client(&self, host: &str, leaf: Option<&Leaf>, tls: &str) -> String {
        let connect = format!("127.0.0.1:{}", self.port);
        let mut cmd = Command::new("openssl");
        cmd.args(["s_client", tls, "-connect", &connect, "-servername", host]);
        cmd.args(["-CAfile", &self.ca, "-verify_return_error", "-ign_eof"]);
        if let Some(l) = leaf {
            cmd.arg("-cert").arg(&l.cert).arg("-key").arg(&l.key);
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("openssl must be installed");
        let req = format!("GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
        let _ = child.stdin.take().unwrap().write_all(req.as_bytes());
        let out = child.wait_with_output().unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
    }
}

#[test]
fn required_client_certificate_with_curl_and_openssl() {
    let s = setup("mtls-required");
    let (code, out) = s.curl(
        "req.test",
        "/",
        Some(&s.alice),
        &["-H", "X-Client-Cert-Subject: CN=forged"],
    );
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("status=200"), "{out}");
    assert!(
        out.contains("x-client-cert-subject: CN=alice,O=edge tests\n"),
        "{out}"
    );
    assert!(out.contains("x-client-cert-verify: SUCCESS"), "{out}");
    assert!(
        !out.contains("forged"),
        "a forged header reached the backend: {out}"
    );
    assert!(out.contains("x-client-cert-fingerprint: "), "{out}");

    // None: the handshake fails with an alert (curl cannot connect).
    let (code, out) = s.curl("req.test", "/", None, &[]);
    assert_ne!(code, 0, "{out}");
    assert!(!out.contains("status=200"), "{out}");
    for tls in ["-tls1_3", "-tls1_2"] {
        let out = s.s_client("req.test", None, tls);
        assert!(out.contains("alert"), "{tls}: {out}");
        assert!(!out.contains("HTTP/1.1 200"), "{tls}: {out}");
        // Another CA's certificate (same subject), and a revoked one.
        let out = s.s_client("req.test", Some(&s.eve), tls);
        assert!(out.contains("alert unknown ca"), "{tls}: {out}");
        assert!(!out.contains("HTTP/1.1 200"), "{tls}: {out}");
        let out = s.s_client("req.test", Some(&s.revoked), tls);
        assert!(out.contains("alert certificate revoked"), "{tls}: {out}");
        assert!(!out.contains("HTTP/1.1 200"), "{tls}: {out}");
        let out = s.s_client("req.test", Some(&s.alice), tls);
        assert!(out.contains("HTTP/1.1 200"), "{tls}: {out}");
        assert!(
            out.contains("x-client-cert-subject: CN=alice,O=edge tests"),
            "{tls}: {out}"
        );
    }
    let (code, out) = s.curl("req.test", "/", Some(&s.eve), &[]);
    assert_ne!(code, 0, "{out}");
    let (code, out) = s.curl("req.test", "/", Some(&s.revoked), &[]);
    assert_ne!(code, 0, "{out}");

    // The Host of a required host over a connection whose SNI asked for
    // no certificate: 421, never the backend.
    let (code, out) = s.curl("open.test", "/", None, &["-H", "Host: req.test"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("status=421"), "{out}");

    // The access log has subject and fingerprint of the one that got in.
    let log = s.dir.0.join("access.log");
    let text = wait_for(
        "the access log record",
        std::time::Duration::from_secs(5),
        || {
            let t = std::fs::read_to_string(&log).ok()?;
            t.contains("\"client_cert_subject\":\"CN=alice,O=edge tests\"")
                .then_some(t)
        },
    );
    assert!(text.contains("\"client_cert_fingerprint\":\""), "{text}");
}

#[test]
fn optional_client_certificate_and_demanding_route() {
    let s = setup("mtls-optional");
    // Without a certificate: the handshake succeeds, the open route
    // answers (verify NONE), the demanding one is 403.
    let (_, out) = s.curl(
        "opt.test",
        "/",
        None,
        &[
            "-H",
            "X-Client-Cert-Subject: CN=forged",
            "-H",
            "X-Client-Cert-Verify: SUCCESS",
        ],
    );
    assert!(out.contains("status=200"), "{out}");
    assert!(out.contains("x-client-cert-verify: NONE"), "{out}");
    assert!(!out.contains("forged") && !out.contains("SUCCESS"), "{out}");
    let (_, out) = s.curl(
        "opt.test",
        "/secure",
        None,
        &["-H", "X-Client-Cert-Subject: CN=forged"],
    );
    assert!(out.contains("status=403"), "{out}");
    // With one: both answer, the backend sees the subject.
    let (_, out) = s.curl("opt.test", "/secure", Some(&s.alice), &[]);
    assert!(out.contains("status=200"), "{out}");
    assert!(
        out.contains("x-client-cert-subject: CN=alice,O=edge tests"),
        "{out}"
    );
    // Another CA's certificate is refused even where optional.
    let out = s.s_client("opt.test", Some(&s.eve), "-tls1_3");
    assert!(out.contains("alert unknown ca"), "{out}");
    // A host without [[client_auth]] asks for nothing.
    let (_, out) = s.curl("open.test", "/", None, &[]);
    assert!(out.contains("status=200"), "{out}");
    assert!(out.contains("x-client-cert-verify: NONE"), "{out}");
}

#[test]
fn a_new_crl_applies_at_reload() {
    let s = setup("mtls-reload");
    let (_, out) = s.curl("req.test", "/", Some(&s.alice), &[]);
    assert!(out.contains("status=200"), "{out}");
    // The same file now revokes alice too; the config text is unchanged.
    s.clients.crl(&s.dir, "clients", &[10, 11]);
    let config = std::fs::read_to_string(s.edge.config()).unwrap();
    let log = s.edge.reload(&config, 1);
    assert!(log.contains("reload"), "{log}");
    let out = s.s_client("req.test", Some(&s.alice), "-tls1_3");
    assert!(out.contains("alert certificate revoked"), "{out}");
    let (code, out) = s.curl("req.test", "/", Some(&s.alice), &[]);
    assert_ne!(code, 0, "{out}");
    // A CRL file that no longer parses: the reload is refused with the
    // key, the running config keeps serving.
    std::fs::write(s.dir.0.join("clients.crl"), "garbage\n").unwrap();
    let log = s.edge.reload(&config, 2);
    assert!(log.contains("client_auth[0].crl_file"), "{log}");
    let (_, out) = s.curl("opt.test", "/", None, &[]);
    assert!(out.contains("status=200"), "{out}");
}
