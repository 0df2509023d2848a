//! `[[client_auth]]` and `[[route]] client_certificate`: errors name the
//! line and the key.

use std::path::{Path, PathBuf};

use super::*;

/// A directory with a CA (`ca.pem`), a CRL of it (`ca.crl`) and a file
/// that is neither (`junk.pem`).
fn files(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("edge-client-auth-{test}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let key = rcgen::KeyPair::generate().unwrap();
    let ca = p.self_signed(&key).unwrap();
    std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
    let issuer = rcgen::Issuer::new(p, key);
    let now = std::time::SystemTime::now();
    let crl = rcgen::CertificateRevocationListParams {
        this_update: now.into(),
        next_update: (now + std::time::Duration::from_secs(86_400)).into(),
        crl_number: rcgen::SerialNumber::from(1u64),
        issuing_distribution_point: None,
        revoked_certs: Vec::new(),
        key_identifier_method: rcgen::KeyIdMethod::Sha256,
    }
    .signed_by(&issuer)
    .unwrap();
    std::fs::write(dir.join("ca.crl"), crl.pem().unwrap()).unwrap();
    std::fs::write(dir.join("junk.pem"), "not PEM\n").unwrap();
    dir
}

fn check(dir: &Path, extra: &str) -> Result<Validated, ConfigErrors> {
    let text = format!(
        r#"[https]
listen = ["127.0.0.1:8443"]
[[certificate]]
name = "a"
names = ["a.test", "b.test"]
self_signed = true
[[route]]
respond = {{ status = 200, body = "hi" }}
{extra}"#
    );
    load_str(Source::new(Path::new("t.toml"), text), dir)
}

fn error(dir: &Path, extra: &str) -> String {
    match check(dir, extra) {
        Ok(_) => panic!("config unexpectedly valid:\n{extra}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn client_auth_defaults_and_errors() {
    let dir = files("errors");
    let v = check(
        &dir,
        "[[client_auth]]\nhosts = [\"a.test\"]\nca_file = \"ca.pem\"\ncrl_file = \"ca.crl\"\n\
         [[client_auth]]\nhosts = [\"*.b.test\"]\nverify = \"optional\"\nca_file = \"ca.pem\"\n\
         [[route]]\nclient_certificate = \"required\"\nrespond = { status = 200, body = \"x\" }\n",
    )
    .unwrap();
    assert_eq!(v.client_auth.len(), 2);
    assert!(v.client_auth[0].required, "required is the default");
    assert!(!v.client_auth[1].required);
    assert!(v.client_auth[1].covers("x.b.test") && !v.client_auth[1].covers("b.test"));
    assert_eq!(v.client_auth[1].match_rank("X.b.test."), Some(1));
    assert_eq!(v.client_auth[0].match_rank("a.test"), Some(0));
    assert!(v.routes[1].client_certificate && !v.routes[0].client_certificate);
    assert!(v.warnings.is_empty(), "{:?}", v.warnings);
    // A demanding route no [[client_auth]] covers: a warning, not an error.
    let v = check(
        &dir,
        "[[client_auth]]\nhosts = [\"a.test\"]\nca_file = \"ca.pem\"\n\
         [[route]]\nhost = [\"b.test\"]\nclient_certificate = \"required\"\nrespond = { status = 200, body = \"x\" }\n\
         [[route]]\nhost = [\"A.test\"]\nclient_certificate = \"required\"\nrespond = { status = 200, body = \"x\" }\n",
    )
    .unwrap();
    assert_eq!(v.warnings.len(), 1, "{:?}", v.warnings);
    let w = v.warnings[0].to_string();
    assert!(
        w.contains("t.toml:14:22: route[1].client_certificate: no [[client_auth]] covers"),
        "{w}"
    );

    let e = error(
        &dir,
        "[[client_auth]]\nhosts = [\"a.test\"]\nca_file = \"missing.pem\"\n",
    );
    assert!(
        e.contains("t.toml:11:11: client_auth[0].ca_file: cannot read CA file"),
        "{e}"
    );
    let e = error(
        &dir,
        "[[client_auth]]\nhosts = [\"a.test\"]\nca_file = \"junk.pem\"\n",
    );
    assert!(
        e.contains("client_auth[0].ca_file: no CERTIFICATE block"),
        "{e}"
    );
    let e = error(
        &dir,
        "[[client_auth]]\nhosts = [\"a.test\"]\nca_file = \"ca.pem\"\ncrl_file = \"junk.pem\"\n",
    );
    assert!(
        e.contains("t.toml:12:12: client_auth[0].crl_file: no X509 CRL block"),
        "{e}"
    );
    let e = error(
        &dir,
        "[[client_auth]]\nhosts = [\"a.test\"]\nverify = \"sometimes\"\nca_file = \"ca.pem\"\n",
    );
    assert!(
        e.contains("t.toml:11:10: client_auth[0].verify: unknown verify \"sometimes\""),
        "{e}"
    );
    let e = error(
        &dir,
        "[[client_auth]]\nhosts = [\"a.test\"]\nca_file = \"ca.pem\"\n\
         [[client_auth]]\nhosts = [\"A.test\"]\nca_file = \"ca.pem\"\n",
    );
    assert!(
        e.contains("t.toml:13:10: client_auth[1].hosts[0]: host \"A.test\" is already"),
        "{e}"
    );
    let e = error(&dir, "[[client_auth]]\nhosts = []\nca_file = \"ca.pem\"\n");
    assert!(
        e.contains("client_auth[0].hosts: list the TLS host names"),
        "{e}"
    );
    let e = error(
        &dir,
        "[[route]]\nclient_certificate = \"yes\"\nrespond = { status = 200, body = \"x\" }\n",
    );
    assert!(
        e.contains("t.toml:10:22: route[1].client_certificate: unknown client_certificate \"yes\""),
        "{e}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn two_certificates_of_one_key_type_for_a_name_warn() {
    let dir = files("same-key-type");
    let v = check(
        &dir,
        "[[certificate]]\nname = \"b\"\nnames = [\"c.test\", \"A.test\"]\nself_signed = true\n",
    )
    .unwrap();
    assert_eq!(v.warnings.len(), 1, "{:?}", v.warnings);
    let w = v.warnings[0].to_string();
    assert!(
        w.contains("t.toml:11:20: certificate[1].names[1]: another [[certificate]] with an ECDSA key serves \"a.test\""),
        "{w}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
