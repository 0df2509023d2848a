//! A throwaway PKI: a CA and the leaf certificates it issues, written as
//! PEM files into a test directory.

use std::path::PathBuf;
use std::sync::Arc;

use rustls_pki_types::CertificateDer;

use crate::TempDir;

/// A CA that issues leaf certificates into a directory.
pub struct Pki {
    ca: rcgen::Issuer<'static, rcgen::KeyPair>,
    /// The CA certificate.
    pub ca_der: CertificateDer<'static>,
    /// The CA certificate as a PEM file (`NAME-ca.pem`).
    pub ca_pem: PathBuf,
}

impl std::fmt::Debug for Pki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pki").field("ca_pem", &self.ca_pem).finish()
    }
}

/// A leaf certificate and its key, as PEM files.
#[derive(Debug, Clone)]
pub struct Leaf {
    /// `STEM.pem`.
    pub cert: PathBuf,
    /// `STEM.key`.
    pub key: PathBuf,
    /// The certificate.
    pub der: CertificateDer<'static>,
}

impl Pki {
    /// A new CA named `NAME test CA`, its certificate in `DIR/NAME-ca.pem`.
    pub fn new(dir: &TempDir, name: &str) -> Self {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, format!("{name} test CA"));
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let ca_pem = dir.write(&format!("{name}-ca.pem"), cert.pem());
        Self {
            ca_der: cert.der().clone(),
            ca: rcgen::Issuer::new(params, key),
            ca_pem,
        }
    }

    /// A leaf for `names` (DNS names, or IP addresses in their text form),
    /// in `DIR/STEM.pem` and `DIR/STEM.key`.
    pub fn leaf(&self, dir: &TempDir, stem: &str, names: &[&str]) -> Leaf {
        self.leaf_with(dir, stem, names, |_| {})
    }

    /// Like [`leaf`](Self::leaf), valid only during 2020 (expired).
    pub fn expired_leaf(&self, dir: &TempDir, stem: &str, names: &[&str]) -> Leaf {
        self.leaf_with(dir, stem, names, |p| {
            p.not_before = rcgen::date_time_ymd(2020, 1, 1);
            p.not_after = rcgen::date_time_ymd(2021, 1, 1);
        })
    }

    fn leaf_with(
        &self,
        dir: &TempDir,
        stem: &str,
        names: &[&str],
        adjust: impl FnOnce(&mut rcgen::CertificateParams),
    ) -> Leaf {
        let mut params =
            rcgen::CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap();
        adjust(&mut params);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.ca).unwrap();
        Leaf {
            cert: dir.write(&format!("{stem}.pem"), cert.pem()),
            key: dir.write(&format!("{stem}.key"), key.serialize_pem()),
            der: cert.der().clone(),
        }
    }

    /// A client certificate (extended key usage clientAuth) with subject
    /// `CN=CN,O=edge tests` and serial `serial`, in `DIR/STEM.pem` and
    /// `DIR/STEM.key` (for `[[client_auth]]` and [`crl`](Self::crl)).
    pub fn client_leaf(&self, dir: &TempDir, stem: &str, cn: &str, serial: u64) -> Leaf {
        self.leaf_with(dir, stem, &[], |p| {
            p.distinguished_name = rcgen::DistinguishedName::new();
            p.distinguished_name
                .push(rcgen::DnType::OrganizationName, "edge tests");
            p.distinguished_name.push(rcgen::DnType::CommonName, cn);
            p.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
            p.serial_number = Some(rcgen::SerialNumber::from(serial));
        })
    }

    /// A CRL of this CA revoking the certificates of `serials`, valid from
    /// yesterday for 30 days, as PEM in `DIR/STEM.crl`.
    pub fn crl(&self, dir: &TempDir, stem: &str, serials: &[u64]) -> PathBuf {
        let now = std::time::SystemTime::now();
        let day = std::time::Duration::from_secs(86_400);
        let revoked = serials
            .iter()
            .map(|s| rcgen::RevokedCertParams {
                serial_number: rcgen::SerialNumber::from(*s),
                revocation_time: (now - day).into(),
                reason_code: Some(rcgen::RevocationReason::KeyCompromise),
                invalidity_date: None,
            })
            .collect();
        let params = rcgen::CertificateRevocationListParams {
            this_update: (now - day).into(),
            next_update: (now + 30 * day).into(),
            crl_number: rcgen::SerialNumber::from(1u64),
            issuing_distribution_point: None,
            revoked_certs: revoked,
            key_identifier_method: rcgen::KeyIdMethod::Sha256,
        };
        let crl = params.signed_by(&self.ca).unwrap();
        dir.write(&format!("{stem}.crl"), crl.pem().unwrap())
    }

    /// A rustls client trusting only this CA, offering `alpn`.
    pub fn client_config(&self, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca_der.clone()).unwrap();
        let mut c = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        c.alpn_protocols = alpn.iter().map(|a| a.to_vec()).collect();
        Arc::new(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leaves_chain_to_the_ca_and_name_their_hosts() {
        let dir = TempDir::new("pki");
        let pki = Pki::new(&dir, "t");
        let leaf = pki.leaf(&dir, "a", &["a.test", "198.18.0.1"]);
        let pem = std::fs::read_to_string(&leaf.cert).unwrap();
        assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"), "{pem}");
        let key = std::fs::read_to_string(&leaf.key).unwrap();
        assert!(key.contains("PRIVATE KEY"), "{key}");
        // openssl verifies the chain and reads the names.
        let out = std::process::Command::new("openssl")
            .args(["verify", "-CAfile"])
            .arg(&pki.ca_pem)
            .arg(&leaf.cert)
            .output()
            .expect("openssl must be installed");
        assert!(out.status.success(), "{out:?}");
        let text = crate::run(&[
            "openssl",
            "x509",
            "-noout",
            "-ext",
            "subjectAltName",
            "-in",
            &leaf.cert.to_string_lossy(),
        ]);
        assert!(text.contains("DNS:a.test"), "{text}");
        assert!(text.contains("IP Address:198.18.0.1"), "{text}");
        // Another CA's leaf does not verify against this one.
        let other = Pki::new(&dir, "o").leaf(&dir, "b", &["b.test"]);
        let out = std::process::Command::new("openssl")
            .args(["verify", "-CAfile"])
            .arg(&pki.ca_pem)
            .arg(&other.cert)
            .output()
            .unwrap();
        assert!(!out.status.success());
    }
}
