//! Parsing and checking certificate chains and keys.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

/// Why a certificate chain or key was rejected.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CertError {
    /// No certificate in the PEM input.
    #[error("no certificate in the chain")]
    EmptyChain,
    /// A certificate does not parse as PEM or X.509.
    #[error("certificate {index} of the chain is malformed: {reason}")]
    Malformed {
        /// Position in the chain (0 is the leaf).
        index: usize,
        /// The parser's complaint.
        reason: String,
    },
    /// The private key is missing, malformed or of an unsupported type.
    #[error("private key: {0}")]
    Key(String),
    /// The key does not belong to the leaf certificate.
    #[error("private key does not match the certificate: {0}")]
    KeyMismatch(String),
    /// The leaf does not cover a required name.
    #[error("certificate does not cover {0:?}")]
    NameNotCovered(String),
    /// The leaf's validity period is over.
    #[error("certificate expired at {0:?}")]
    Expired(SystemTime),
}

/// What the crate knows about one certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    /// DNS names of the leaf (subjectAltName, lower-case).
    pub names: Vec<String>,
    /// Start of validity.
    pub not_before: SystemTime,
    /// End of validity.
    pub not_after: SystemTime,
    /// Serial number of the leaf, as hex.
    pub serial: String,
    /// RFC 9773 certificate identifier (`base64url(AKI).base64url(serial)`),
    /// when the leaf has an authority key identifier.
    pub ari_id: Option<String>,
    /// The leaf's public key: `ecdsa-p256`, `ecdsa-p384`, `rsa2048` (as
    /// [`KeyType::name`](crate::KeyType::name) names them), `ed25519`, or
    /// `other`.
    pub key: String,
}

impl CertInfo {
    /// `not_after - not_before`.
    pub fn lifetime(&self) -> Duration {
        self.not_after
            .duration_since(self.not_before)
            .unwrap_or(Duration::ZERO)
    }

    /// Seconds until expiry (negative once expired).
    pub fn seconds_until_expiry(&self, now: SystemTime) -> i64 {
        match self.not_after.duration_since(now) {
            Ok(left) => i64::try_from(left.as_secs()).unwrap_or(i64::MAX),
            Err(past) => i64::try_from(past.duration().as_secs()).map_or(i64::MIN, |s| -s),
        }
    }

    /// Whether the certificate covers `name` (exactly or through a wildcard).
    pub fn covers(&self, name: &str) -> bool {
        let name = name.to_ascii_lowercase();
        self.names.iter().any(|n| {
            n == &name
                || n.strip_prefix("*.").is_some_and(|suffix| {
                    name.split_once('.')
                        .is_some_and(|(label, rest)| !label.is_empty() && rest == suffix)
                })
        })
    }
}

/// A parsed, checked chain with its signing key, ready for rustls.
#[derive(Debug, Clone)]
pub(crate) struct LoadedCert {
    pub(crate) certified: Arc<CertifiedKey>,
    pub(crate) info: CertInfo,
}

fn to_system_time(t: x509_parser::time::ASN1Time) -> SystemTime {
    let secs = t.timestamp();
    match u64::try_from(secs) {
        Ok(s) => UNIX_EPOCH + Duration::from_secs(s),
        Err(_) => UNIX_EPOCH,
    }
}

/// Parses a DER leaf certificate into [`CertInfo`].
pub(crate) fn leaf_info(der: &CertificateDer<'_>) -> Result<CertInfo, CertError> {
    let (rest, cert) =
        X509Certificate::from_der(der.as_ref()).map_err(|e| CertError::Malformed {
            index: 0,
            reason: e.to_string(),
        })?;
    if !rest.is_empty() {
        return Err(CertError::Malformed {
            index: 0,
            reason: "trailing bytes after the certificate".into(),
        });
    }
    let mut names = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            if let GeneralName::DNSName(dns) = name {
                names.push(dns.to_ascii_lowercase());
            }
        }
    }
    let ari_id = instant_acme::CertificateIdentifier::try_from(der)
        .ok()
        .map(|id| id.to_string());
    let validity = cert.validity();
    Ok(CertInfo {
        names,
        not_before: to_system_time(validity.not_before),
        not_after: to_system_time(validity.not_after),
        serial: cert.raw_serial_as_string().replace(':', ""),
        ari_id,
        key: key_name(cert.public_key()),
    })
}

/// A public key's kind and size, as [`CertInfo::key`] names it.
fn key_name(spki: &x509_parser::x509::SubjectPublicKeyInfo<'_>) -> String {
    use x509_parser::public_key::PublicKey;
    match spki.parsed() {
        Ok(PublicKey::RSA(rsa)) => {
            // The modulus as DER keeps a leading zero byte when its top bit is set.
            let bytes = rsa.modulus.iter().skip_while(|b| **b == 0).count();
            format!("rsa{}", bytes * 8)
        }
        Ok(PublicKey::EC(point)) => format!("ecdsa-p{}", point.key_size()),
        _ if spki.algorithm.algorithm == x509_parser::oid_registry::OID_SIG_ED25519 => {
            "ed25519".into()
        }
        _ => "other".into(),
    }
}

/// Parses a PEM chain (leaf first) and a PEM private key, checks every
/// certificate parses and that the key matches the leaf.
pub(crate) fn load_pem(chain_pem: &[u8], key_pem: &[u8]) -> Result<LoadedCert, CertError> {
    let mut chain = Vec::new();
    for (index, cert) in CertificateDer::pem_slice_iter(chain_pem).enumerate() {
        let cert = cert.map_err(|e| CertError::Malformed {
            index,
            reason: e.to_string(),
        })?;
        chain.push(cert);
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| CertError::Key(e.to_string()))?;
    load_der(chain, key)
}

/// Like [`load_pem`] for DER input.
pub(crate) fn load_der(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<LoadedCert, CertError> {
    let leaf = chain.first().ok_or(CertError::EmptyChain)?;
    let info = leaf_info(leaf)?;
    for (index, cert) in chain.iter().enumerate().skip(1) {
        X509Certificate::from_der(cert.as_ref()).map_err(|e| CertError::Malformed {
            index,
            reason: e.to_string(),
        })?;
    }
    // aws-lc-rs: the provider of edge's TLS server (post-quantum key
    // exchange), which signs with this key.
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    let signing = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| CertError::Key(e.to_string()))?;
    let certified = CertifiedKey::new(chain, signing);
    certified
        .keys_match()
        .map_err(|e| CertError::KeyMismatch(e.to_string()))?;
    Ok(LoadedCert {
        certified: Arc::new(certified),
        info,
    })
}

/// Checks a freshly issued certificate before it replaces anything.
pub(crate) fn check_issued(
    loaded: &LoadedCert,
    names: &[String],
    now: SystemTime,
) -> Result<(), CertError> {
    if let Some(missing) = names.iter().find(|n| !loaded.info.covers(n)) {
        return Err(CertError::NameNotCovered(missing.clone()));
    }
    if loaded.info.not_after <= now {
        return Err(CertError::Expired(loaded.info.not_after));
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use rcgen::{CertificateParams, KeyPair};

    use super::*;

    /// A self-signed certificate for `names`, as (chain PEM, key PEM).
    pub(crate) fn self_signed(names: &[&str]) -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let params =
            CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap();
        let cert = params.self_signed(&key).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    #[test]
    fn key_kind_and_size_are_named() {
        let named = |alg: &'static rcgen::SignatureAlgorithm| {
            let key = KeyPair::generate_for(alg).unwrap();
            let cert = CertificateParams::new(vec!["k.example".to_string()])
                .unwrap()
                .self_signed(&key)
                .unwrap();
            leaf_info(cert.der()).unwrap().key
        };
        assert_eq!(named(&rcgen::PKCS_ECDSA_P256_SHA256), "ecdsa-p256");
        assert_eq!(named(&rcgen::PKCS_ECDSA_P384_SHA384), "ecdsa-p384");
        assert_eq!(named(&rcgen::PKCS_ED25519), "ed25519");
        let rsa =
            KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048).unwrap();
        let cert = CertificateParams::new(vec!["k.example".to_string()])
            .unwrap()
            .self_signed(&rsa)
            .unwrap();
        assert_eq!(leaf_info(cert.der()).unwrap().key, "rsa2048");
    }

    #[test]
    fn good_chain_loads_with_names_and_validity() {
        let (chain, key) = self_signed(&["a.example", "*.b.example"]);
        let loaded = load_pem(chain.as_bytes(), key.as_bytes()).unwrap();
        assert_eq!(loaded.info.names, ["a.example", "*.b.example"]);
        assert!(loaded.info.covers("A.example"));
        assert!(loaded.info.covers("x.b.example"));
        assert!(!loaded.info.covers("b.example"));
        assert!(!loaded.info.covers("y.x.b.example"));
        assert!(loaded.info.seconds_until_expiry(SystemTime::now()) > 0);
        check_issued(&loaded, &["a.example".into()], SystemTime::now()).unwrap();
        assert!(matches!(
            check_issued(&loaded, &["c.example".into()], SystemTime::now()),
            Err(CertError::NameNotCovered(n)) if n == "c.example"
        ));
    }

    #[test]
    fn malformed_inputs_are_rejected_with_the_reason() {
        let (chain, key) = self_signed(&["a.example"]);
        let (_, other_key) = self_signed(&["a.example"]);
        assert!(matches!(
            load_pem(b"", key.as_bytes()),
            Err(CertError::EmptyChain)
        ));
        assert!(matches!(
            load_pem(chain.as_bytes(), other_key.as_bytes()),
            Err(CertError::KeyMismatch(_))
        ));
        assert!(matches!(
            load_pem(chain.as_bytes(), b"not a key"),
            Err(CertError::Key(_))
        ));
        let garbage = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        assert!(matches!(
            load_pem(garbage.as_bytes(), key.as_bytes()),
            Err(CertError::Malformed { index: 0, .. })
        ));
        let truncated_second = format!("{chain}{garbage}");
        assert!(matches!(
            load_pem(truncated_second.as_bytes(), key.as_bytes()),
            Err(CertError::Malformed { index: 1, .. })
        ));
    }

    #[test]
    fn expired_certificate_is_refused() {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec!["old.example".to_string()]).unwrap();
        params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        params.not_after = rcgen::date_time_ymd(2020, 2, 1);
        let cert = params.self_signed(&key).unwrap();
        let loaded = load_pem(cert.pem().as_bytes(), key.serialize_pem().as_bytes()).unwrap();
        assert!(matches!(
            check_issued(&loaded, &["old.example".into()], SystemTime::now()),
            Err(CertError::Expired(_))
        ));
    }
}
