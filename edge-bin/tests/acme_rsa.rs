//! An ECDSA and an RSA certificate for one name from ACME (`key_types =
//! ["ecdsa", "rsa"]`), both ordered from Pebble on loopback: `openssl
//! s_client` restricted to RSA signature algorithms gets the RSA one, a
//! default client the ECDSA one; the two are stored apart, and a second
//! node sharing the storage serves both without ordering.

mod common;

use std::time::{Duration, Instant};

use common::reload::*;
use common::*;

const ECDSA: &str = "Server public key is 256 bit";
const RSA: &str = "Server public key is 2048 bit";
const VERIFIED: &str = "Verify return code: 0 (ok)";

/// The served leaf, as s_client prints it (PEM).
fn leaf(out: &str) -> &str {
    let start = out.find("-----BEGIN CERTIFICATE-----").unwrap_or(0);
    let end = out.find("-----END CERTIFICATE-----").unwrap_or(0);
    out.get(start..end).unwrap_or("")
}

/// `openssl s_client` to `port` for `acme.test` with `extra` options,
/// retried until the chain verifies against Pebble's `root` (the ACME
/// certificates arrive in the background) or `limit` passes.
fn s_client_until_issued(
    port: u16,
    root: &str,
    extra: &[&str],
    limit: Duration,
    edge: &Edge,
) -> String {
    let start = Instant::now();
    loop {
        let out = s_client(port, root, &[&["-servername", "acme.test"], extra].concat());
        // Without a certificate the handshake fails, yet s_client still
        // says "Verify return code: 0": a served key counts.
        if out.contains(VERIFIED) && out.contains("Server public key is") {
            return out;
        }
        assert!(
            start.elapsed() < limit,
            "no certificate from Pebble for {extra:?} within {limit:?}:\n{out}\n{}",
            edge.log_text()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[test]
fn acme_orders_ecdsa_and_rsa_and_clients_choose() {
    let dir = TempDir::new("acme-rsa");
    let pki = Pki::new(&dir, "r");
    let http = free_port();
    let pebble = LocalPebble::start(&dir, &pki, http);
    let storage = dir.path("acme");
    let node = |name: &str, http_port: u16| {
        let port = free_port();
        let config = fixture("acme_rsa.toml")
            .set("https_port", port)
            .set("http_port", http_port)
            .path("storage", &storage)
            .set("directory_port", pebble.listen)
            .path("ca_roots", &pki.ca_pem)
            .path("socket", dir.path(&format!("{name}.sock")))
            .render();
        (start_edge(&dir, name, &config), port)
    };
    let (edge, port) = node("edge", http);
    let root = pebble.root(&dir, &pki).display().to_string();
    let limit = Duration::from_secs(60);

    let tls13_rsa = ["-tls1_3", "-sigalgs", "rsa_pss_rsae_sha256"];
    let tls12_rsa = ["-tls1_2", "-sigalgs", "RSA+SHA256"];
    let ec = s_client_until_issued(port, &root, &["-tls1_3"], limit, &edge);
    let rsa = s_client_until_issued(port, &root, &tls13_rsa, limit, &edge);
    assert!(ec.contains(ECDSA), "{ec}");
    assert!(rsa.contains(RSA), "{rsa}");
    let out = s_client(
        port,
        &root,
        &[&["-servername", "acme.test"], &tls12_rsa[..]].concat(),
    );
    assert!(out.contains(RSA) && out.contains(VERIFIED), "{out}");
    let out = s_client(port, &root, &["-servername", "acme.test", "-tls1_2"]);
    assert!(out.contains(ECDSA) && out.contains(VERIFIED), "{out}");
    for o in [&ec, &rsa] {
        assert!(o.contains("Pebble"), "issued by Pebble: {o}");
    }
    // Two certificates in storage, each with its key.
    for id in ["acme.test", "acme.test+rsa2048"] {
        for file in ["fullchain.pem", "privkey.pem"] {
            let p = storage.join("certificates").join(id).join(file);
            assert!(p.exists(), "{} missing", p.display());
        }
    }

    // `show certs` and `acme status` list both, each with its key.
    let admin = |what: &str| {
        let socket = dir.path("edge.sock").display().to_string();
        let mut args = vec!["admin", "-s", &socket];
        args.extend(what.split(' '));
        let (code, out) = edge_cmd(&args);
        assert_eq!(code, 0, "{what}: {out}");
        out
    };
    let show = admin("show certs");
    for key in ["ecdsa-p256", "rsa2048"] {
        let rows = show
            .lines()
            .filter(|l| l.contains("acme.test") && l.split_whitespace().any(|c| c == key))
            .count();
        assert_eq!(rows, 1, "one {key} certificate listed:\n{show}");
    }
    let status = admin("acme status");
    for key in ["ecdsa-p256", "rsa2048"] {
        assert!(
            status
                .lines()
                .any(|l| l.split_whitespace().any(|c| c == key)),
            "{key} in acme status:\n{status}"
        );
    }

    // A second node on the same storage serves the same two certificates
    // and orders nothing.
    let (edge2, port2) = node("edge2", free_port());
    let ec2 = s_client_until_issued(port2, &root, &["-tls1_3"], Duration::from_secs(15), &edge2);
    let rsa2 = s_client_until_issued(port2, &root, &tls13_rsa, Duration::from_secs(15), &edge2);
    assert_eq!(leaf(&ec2), leaf(&ec));
    assert_eq!(leaf(&rsa2), leaf(&rsa));
    assert_ne!(leaf(&ec), leaf(&rsa));
    let log2 = edge2.log_text();
    assert!(!log2.contains("ordering certificate"), "{log2}");
}
