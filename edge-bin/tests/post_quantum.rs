//! Post-quantum key exchange with real clients: a rustls client offering
//! only X25519MLKEM768 gets it, Chromium (which offers it first) gets it,
//! OpenSSL 3.0 (no ML-KEM) is still served with X25519; with
//! `post_quantum = false` the ML-KEM-only client is refused and a client
//! offering both gets X25519.

mod common;

use std::process::Command;
use std::sync::Arc;

use common::*;
use rustls::NamedGroup;
use rustls::crypto::SupportedKxGroup;
use rustls::crypto::aws_lc_rs::kx_group;

/// edge serving `pq.test` with `post_quantum` set to `on`.
struct Setup {
    dir: TempDir,
    pki: Pki,
    port: u16,
    _edge: Edge,
}

fn setup(test: &str, on: bool) -> Setup {
    let dir = TempDir::new(test);
    let pki = Pki::new(&dir, "front");
    let leaf = pki.leaf(&dir, "pq", &["pq.test"]);
    let port = free_port();
    let config = fixture("post_quantum.toml")
        .set("https_port", port)
        .set("post_quantum", on)
        .path("cert", &leaf.cert)
        .path("key", &leaf.key)
        .render();
    let edge = start_edge(&dir, "edge", &config);
    Setup {
        dir,
        pki,
        port,
        _edge: edge,
    }
}

/// A TLS 1.3 rustls client (aws-lc-rs) trusting the test CA and offering
/// only `groups`.
fn client(pki: &Pki, groups: &[&'static dyn SupportedKxGroup]) -> Arc<rustls::ClientConfig> {
    let mut provider = rustls::crypto::aws_lc_rs::default_provider();
    provider.kx_groups = groups.to_vec();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(pki.ca_der.clone()).unwrap();
    Arc::new(
        rustls::ClientConfig::builder_with_provider(Arc::new(provider))
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

/// A handshake and one request: the group negotiated, or why it failed.
async fn negotiate(
    s: &Setup,
    groups: &[&'static dyn SupportedKxGroup],
) -> Result<NamedGroup, String> {
    let tls = tls(client(&s.pki, groups), s.port, Some("pq.test"))
        .await
        .map_err(|e| e.to_string())?;
    let group = tls
        .get_ref()
        .1
        .negotiated_key_exchange_group()
        .unwrap()
        .name();
    let resp = send(tls, "GET", "pq.test", "/", &[]).await?;
    assert_eq!((resp.status, resp.body.as_str()), (200, "pq"));
    Ok(group)
}

/// `openssl s_client -tls1_3` and `-tls1_2` with OpenSSL's default groups:
/// the group each got, as s_client prints it.
fn openssl_groups(s: &Setup) -> Vec<String> {
    let ca = s.pki.ca_pem.display().to_string();
    ["-tls1_3", "-tls1_2"]
        .iter()
        .map(|v| {
            let out = s_client(s.port, &ca, &[v, "-servername", "pq.test"]);
            assert!(out.contains("Verify return code: 0 (ok)"), "{out}");
            out.lines()
                .find_map(|l| l.strip_prefix("Server Temp Key: "))
                .unwrap_or_else(|| panic!("no Server Temp Key in {out}"))
                .to_owned()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn ml_kem_by_default_classical_still_served() {
    let s = setup("pq-default", true);
    // (a) A client offering only X25519MLKEM768.
    let group = negotiate(&s, &[kx_group::X25519MLKEM768]).await.unwrap();
    assert_eq!(group, NamedGroup::X25519MLKEM768);
    // rustls' default list (X25519MLKEM768 first, as browsers): the hybrid.
    let group = negotiate(&s, rustls::crypto::aws_lc_rs::DEFAULT_KX_GROUPS)
        .await
        .unwrap();
    assert_eq!(group, NamedGroup::X25519MLKEM768);
    // (b) OpenSSL 3.0 cannot do ML-KEM: X25519, in TLS 1.3 and 1.2.
    let got = openssl_groups(&s);
    eprintln!("openssl: {got:?}");
    assert!(got.iter().all(|g| g.starts_with("X25519")), "{got:?}");
    // A client offering only P-384 is served too.
    let group = negotiate(&s, &[kx_group::SECP384R1]).await.unwrap();
    assert_eq!(group, NamedGroup::secp384r1);
}

#[tokio::test(flavor = "multi_thread")]
async fn post_quantum_off_serves_classical_only() {
    let s = setup("pq-off", false);
    let err = negotiate(&s, &[kx_group::X25519MLKEM768])
        .await
        .unwrap_err();
    eprintln!("ML-KEM-only client: {err}");
    assert!(err.contains("HandshakeFailure"), "{err}");
    let group = negotiate(&s, rustls::crypto::aws_lc_rs::DEFAULT_KX_GROUPS)
        .await
        .unwrap();
    assert_eq!(group, NamedGroup::X25519);
    let got = openssl_groups(&s);
    assert!(got.iter().all(|g| g.starts_with("X25519")), "{got:?}");
}

/// (c) Debian's Chromium, headless: the key exchange group of its
/// handshake with edge, from its NetLog (`key_exchange_group`, the IANA
/// number: 4588 is X25519MLKEM768, 29 X25519).
#[test]
fn chromium_negotiates_ml_kem() {
    assert!(
        std::path::Path::new("/usr/bin/chromium").exists(),
        "/usr/bin/chromium is missing (Debian package chromium; .ci/test installs it)"
    );
    let s = setup("pq-chromium", true);
    let netlog = s.dir.path("netlog.json");
    let out = Command::new("timeout")
        .arg("60")
        .arg("/usr/bin/chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            // The test CA is not in Chromium's store; the group is what is
            // tested here, the chain is checked by the other clients.
            "--ignore-certificate-errors",
            "--host-resolver-rules=MAP pq.test 127.0.0.1",
            "--dump-dom",
        ])
        .arg(format!(
            "--user-data-dir={}",
            s.dir.path("profile").display()
        ))
        .arg(format!("--log-net-log={}", netlog.display()))
        .arg(format!("https://pq.test:{}/", s.port))
        .output()
        .expect("chromium must be installed");
    let dom = String::from_utf8_lossy(&out.stdout);
    assert!(
        dom.contains(">pq<"),
        "Chromium did not get the page: {dom}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let log = std::fs::read_to_string(&netlog).unwrap();
    let groups: Vec<&str> = log
        .match_indices("\"key_exchange_group\":")
        .map(|(i, k)| {
            let rest = &log[i + k.len()..];
            &rest[..rest
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(rest.len())]
        })
        .collect();
    eprintln!("Chromium's key_exchange_group: {groups:?}");
    let x25519mlkem768 = u16::from(NamedGroup::X25519MLKEM768).to_string();
    assert!(!groups.is_empty(), "no handshake in Chromium's NetLog");
    assert!(groups.iter().all(|g| *g == x25519mlkem768), "{groups:?}");
}
