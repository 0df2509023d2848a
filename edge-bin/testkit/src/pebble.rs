//! Pebble (Let's Encrypt's test ACME CA) with pebble-challtestsrv as its
//! DNS, in a host of the lab.

use std::path::PathBuf;
use std::time::Duration;

use crate::lab::Lab;
use crate::{Proc, wait_until};

/// Pebble + pebble-challtestsrv in host `host` (address `ca`), every name
/// resolving to `vip`. Returns the processes, Pebble's HTTPS CA file and
/// its issuing root. The directory is `https://CA:14000/dir`.
pub fn start_pebble(lab: &Lab, host: &str, ca: &str, vip: &str) -> (Vec<Proc>, PathBuf, PathBuf) {
    assert!(
        std::path::Path::new("/usr/bin/pebble").exists()
            && std::path::Path::new("/usr/bin/pebble-challtestsrv").exists(),
        "Pebble is not installed: apt-get install pebble (Debian package)"
    );
    // Pebble's own HTTPS certificate, from a throwaway CA.
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "HA lab CA of Pebble's HTTPS");
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .subject_alt_names
        .push(rcgen::SanType::IpAddress(ca.parse().unwrap()));
    let cert = params.signed_by(&key, &issuer).unwrap();
    let cert_path = lab.write("pebble-cert.pem", cert.pem());
    let key_path = lab.write("pebble-key.pem", key.serialize_pem());
    let tls_ca = lab.write("pebble-tls-ca.pem", ca_cert.pem());
    let config = lab.write(
        "pebble.json",
        format!(
            r#"{{"pebble": {{"listenAddress": "{ca}:14000", "managementListenAddress": "{ca}:15000",
"certificate": "{}", "privateKey": "{}", "httpPort": 80, "tlsPort": 5001,
"ocspResponderURL": "", "externalAccountBindingRequired": false}}}}"#,
            cert_path.display(),
            key_path.display()
        ),
    );
    let chall = lab.spawn(
        host,
        &[
            "pebble-challtestsrv",
            "-defaultIPv4",
            vip,
            "-defaultIPv6",
            "",
            "-dns01",
            &format!("{ca}:8053"),
            "-http01",
            "",
            "-https01",
            "",
            "-tlsalpn01",
            "",
            "-management",
            &format!("{ca}:8055"),
        ],
        "challtestsrv.log",
    );
    let pebble = lab.spawn_env(
        host,
        &[
            "pebble",
            "-config",
            &config.to_string_lossy(),
            "-dnsserver",
            &format!("{ca}:8053"),
        ],
        &[
            ("PEBBLE_VA_NOSLEEP", "1"),
            ("PEBBLE_WFE_NONCEREJECT", "0"),
            // A validated authorization is reused by the next order.
            ("PEBBLE_AUTHZREUSE", "100"),
        ],
        "pebble.log",
    );
    let url = format!("https://{ca}:15000/roots/0");
    let mut root = None;
    let up = wait_until(Duration::from_secs(30), || {
        root = lab.curl(host, &["-f", "--cacert", &tls_ca.to_string_lossy(), &url]);
        root.as_deref()
            .is_some_and(|r| r.contains("BEGIN CERTIFICATE"))
    });
    assert!(
        up,
        "Pebble did not start:\n{}\n{}",
        pebble.log_text(),
        chall.log_text()
    );
    let root = lab.write("pebble-root.pem", root.unwrap_or_default());
    (vec![chall, pebble], tls_ca, root)
}
