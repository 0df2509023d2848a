//! An ECDSA and an RSA certificate for one name (two `[[certificate]]`
//! files): `openssl s_client` restricted to RSA signature algorithms gets
//! the RSA certificate, a default client the ECDSA one, in TLS 1.3 and
//! 1.2, with SNI and without (the default certificate's name).

mod common;

use common::*;

#[test]
fn rsa_only_clients_get_rsa_others_ecdsa() {
    let dir = TempDir::new("dual-cert");
    let pki = Pki::new(&dir, "front");
    let ecdsa = pki.leaf(&dir, "ecdsa", &["dual.test"]);
    // ring cannot make RSA keys: openssl does, self-signed.
    let (rsa_cert, rsa_key) = (dir.0.join("rsa.pem"), dir.0.join("rsa.key"));
    run(&[
        "openssl",
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=dual.test",
        "-addext",
        "subjectAltName=DNS:dual.test",
        "-keyout",
        &rsa_key.display().to_string(),
        "-out",
        &rsa_cert.display().to_string(),
    ]);
    // Both issuers trusted by the client.
    let both = format!(
        "{}{}",
        std::fs::read_to_string(&pki.ca_pem).unwrap(),
        std::fs::read_to_string(&rsa_cert).unwrap()
    );
    let ca = dir.write("both-ca.pem", both).display().to_string();
    let port = free_port();
    let config = fixture("dual_cert.toml")
        .set("https_port", port)
        .path("rsa_cert", &rsa_cert)
        .path("rsa_key", &rsa_key)
        .path("ecdsa_cert", &ecdsa.cert)
        .path("ecdsa_key", &ecdsa.key)
        .render();
    let (code, out) = edge_check(&dir.write("check.toml", config.clone()));
    assert_eq!(code, 0, "{out}");
    let _edge = start_edge(&dir, "edge", &config);

    let rsa = "Server public key is 2048 bit";
    let ec = "Server public key is 256 bit";
    for sni in [&["-servername", "dual.test"][..], &["-noservername"][..]] {
        let run = |extra: &[&str]| s_client(port, &ca, &[sni, extra].concat());
        let out = run(&["-tls1_3"]);
        assert!(
            out.contains(ec) && out.contains("Verify return code: 0"),
            "{sni:?} {out}"
        );
        let out = run(&["-tls1_3", "-sigalgs", "rsa_pss_rsae_sha256"]);
        assert!(
            out.contains(rsa) && out.contains("Verify return code: 0"),
            "{sni:?} {out}"
        );
        let out = run(&["-tls1_2"]);
        assert!(out.contains(ec), "{sni:?} {out}");
        let out = run(&["-tls1_2", "-sigalgs", "RSA+SHA256"]);
        assert!(
            out.contains(rsa) && out.contains("Verify return code: 0"),
            "{sni:?} {out}"
        );
        let out = run(&["-tls1_2", "-sigalgs", "ECDSA+SHA256:RSA+SHA256"]);
        assert!(out.contains(ec), "{sni:?} {out}");
    }
    // curl with its defaults gets through (the chain verifies).
    let resolve = format!("dual.test:{port}:127.0.0.1");
    let url = format!("https://dual.test:{port}/");
    let (code, out) = curl(&["--cacert", &ca, "--resolve", &resolve, &url]);
    assert_eq!((code, out.as_str()), (0, "dual"));
}
