//! `[pool.tls]`, `protocol` over TLS and health `kind` `https`/`tls`:
//! what validation accepts, and the errors (with line and key) it gives.

use std::path::{Path, PathBuf};

use super::super::{ConfigErrors, Source, Validated, load_str};

/// A directory with `ca.pem`, `client.pem` and `client.key` (removed on drop).
struct Files(PathBuf);

impl Files {
    fn new(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("edge-pool-tls-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ca = rcgen::generate_simple_self_signed(vec!["ca.test".into()]).unwrap();
        std::fs::write(dir.join("ca.pem"), ca.cert.pem()).unwrap();
        let client = rcgen::generate_simple_self_signed(vec!["client.test".into()]).unwrap();
        std::fs::write(dir.join("client.pem"), client.cert.pem()).unwrap();
        std::fs::write(dir.join("client.key"), client.signing_key.serialize_pem()).unwrap();
        Self(dir)
    }
}

impl Drop for Files {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A config whose one pool has `pool` (keys of `[[pool]]`) and `tables`
/// (its `[pool.tls]`, `[pool.health]`) after its server.
fn config(pool: &str, tables: &str) -> String {
    format!(
        r#"
[https]
listen = ["127.0.0.1:8443"]
default_certificate = "local"

[[certificate]]
name = "local"
names = ["localhost"]
self_signed = true

[[route]]
pool = "app"

[[pool]]
name = "app"
{pool}
[[pool.server]]
address = "127.0.0.1:9443"
{tables}
"#
    )
}

fn check(text: &str, base: &Path) -> Result<Validated, ConfigErrors> {
    load_str(Source::new(Path::new("t.toml"), text.into()), base)
}

fn errors(text: &str, base: &Path) -> String {
    match check(text, base) {
        Ok(_) => panic!("config unexpectedly valid:\n{text}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn full_settings_load() {
    let f = Files::new("full");
    let v = check(
        &config(
            "protocol = \"h2\"",
            "[pool.tls]\nca_file = \"ca.pem\"\nsni = \"app.internal\"\nclient_cert = \"client.pem\"\nclient_key = \"client.key\"\n[pool.health]\nkind = \"https\"\npath = \"/healthz\"",
        ),
        &f.0,
    )
    .unwrap();
    let p = &v.pools[0];
    let tls = p.tls.as_ref().expect("tls settings");
    assert!(tls.verify);
    assert_eq!(tls.sni.as_deref(), Some("app.internal"));
    assert_eq!(tls.upstream.alpn_protocols(), vec![b"h2".to_vec()]);
    // The probe speaks HTTPS with the pool's settings (and its own ALPN).
    assert!(tls.probe_config.alpn_protocols.is_empty());
    match p.health_config().probe {
        edge_health::Probe::Http(h) => {
            assert_eq!(h.path, "/healthz");
            assert_eq!(h.tls.and_then(|t| t.sni).as_deref(), Some("app.internal"));
        }
        other => panic!("{other:?}"),
    }

    // `tls`: a handshake probe; `verify = false` with the system roots
    // needs no CA file.
    let v = check(
        &config(
            "protocol = \"auto\"",
            "[pool.tls]\nverify = false\n[pool.health]\nkind = \"tls\"",
        ),
        &f.0,
    )
    .unwrap();
    let tls = v.pools[0].tls.as_ref().unwrap();
    assert!(!tls.verify);
    assert_eq!(
        tls.upstream.alpn_protocols(),
        vec![b"h2".to_vec(), b"http/1.1".to_vec()]
    );
    assert!(matches!(
        v.pools[0].health_config().probe,
        edge_health::Probe::Tls(_)
    ));
    // No [pool.tls]: plaintext, as before.
    let v = check(&config("", ""), &f.0).unwrap();
    assert!(v.pools[0].tls.is_none());
}

#[test]
fn file_errors_name_the_line_and_key() {
    let f = Files::new("files");
    let e = errors(&config("", "[pool.tls]\nca_file = \"missing.pem\""), &f.0);
    assert!(e.contains("t.toml:20:"), "{e}");
    assert!(e.contains("pool[0].tls.ca_file"), "{e}");
    assert!(e.contains("missing.pem"), "{e}");
    // A key is no certificate.
    let e = errors(&config("", "[pool.tls]\nca_file = \"client.key\""), &f.0);
    assert!(e.contains("no CERTIFICATE"), "{e}");
    let e = errors(
        &config(
            "",
            "[pool.tls]\nca_file = \"ca.pem\"\nclient_cert = \"client.pem\"",
        ),
        &f.0,
    );
    assert!(e.contains("t.toml:21:"), "{e}");
    assert!(e.contains("set both or neither"), "{e}");
    let e = errors(
        &config(
            "",
            "[pool.tls]\nca_file = \"ca.pem\"\nclient_cert = \"client.pem\"\nclient_key = \"ca.pem\"",
        ),
        &f.0,
    );
    assert!(e.contains("pool[0].tls.client_key"), "{e}");
    assert!(e.contains("no usable private key"), "{e}");
    let e = errors(&config("", "[pool.tls]\nsni = \"not a name\""), &f.0);
    assert!(e.contains("pool[0].tls.sni"), "{e}");
    let e = errors(&config("", "[pool.tls]\nverify = \"none\""), &f.0);
    assert!(e.contains("verify"), "{e}");
    let e = errors(&config("", "[pool.tls]\nca = \"ca.pem\""), &f.0);
    assert!(e.contains("unknown field"), "{e}");
}

#[test]
fn protocol_and_probe_kind_must_fit_the_tls_table() {
    let f = Files::new("fit");
    for p in ["h2", "auto"] {
        let e = errors(&config(&format!("protocol = \"{p}\""), ""), &f.0);
        assert!(e.contains("pool[0].protocol"), "{e}");
        assert!(e.contains("add a [pool.tls] table"), "{e}");
    }
    let e = errors(
        &config("protocol = \"h2c\"", "[pool.tls]\nca_file = \"ca.pem\""),
        &f.0,
    );
    assert!(e.contains("use \"h2\""), "{e}");
    for k in ["https", "tls"] {
        let e = errors(&config("", &format!("[pool.health]\nkind = \"{k}\"")), &f.0);
        assert!(e.contains("pool[0].health.kind"), "{e}");
    }
}
