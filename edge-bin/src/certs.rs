//! Certificates: PEM files checked against their keys, and self-signed ones
//! made at start. They are served by `edge_acme::CertResolver` (see
//! [`crate::state`]), beside the ACME-managed ones.

use std::path::Path;
use std::sync::Arc;

use rustls::sign::CertifiedKey;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// Why a certificate pair could not be loaded; says which file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CertError {
    /// The certificate file.
    #[error("{0}")]
    Cert(String),
    /// The key file, or the key does not match the certificate.
    #[error("{0}")]
    Key(String),
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A certificate chain and its private key, checked to match.
#[derive(Debug)]
pub struct CertPair {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
}

impl Clone for CertPair {
    fn clone(&self) -> Self {
        Self {
            chain: self.chain.clone(),
            key: self.key.clone_key(),
        }
    }
}

/// Loads a PEM chain and key, and checks that the key belongs to the leaf.
pub fn load_pair(cert: &Path, key: &Path) -> Result<CertPair, CertError> {
    let cert_pem = std::fs::read(cert).map_err(|e| {
        CertError::Cert(format!(
            "cannot read certificate file {}: {e}",
            cert.display()
        ))
    })?;
    let chain: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut cert_pem.as_slice())
        .collect::<Result<_, _>>()
        .map_err(|e| CertError::Cert(format!("invalid PEM in {}: {e}", cert.display())))?;
    if chain.is_empty() {
        return Err(CertError::Cert(format!(
            "no CERTIFICATE block in {}",
            cert.display()
        )));
    }
    let key_pem = std::fs::read(key)
        .map_err(|e| CertError::Key(format!("cannot read key file {}: {e}", key.display())))?;
    let der = rustls_pemfile::private_key(&mut key_pem.as_slice())
        .map_err(|e| CertError::Key(format!("invalid PEM in {}: {e}", key.display())))?
        .ok_or_else(|| CertError::Key(format!("no PRIVATE KEY block in {}", key.display())))?;
    certified(chain, der).map_err(|e| match e {
        CertError::Key(m) => CertError::Key(format!("{}: {m}", key.display())),
        other => other,
    })
}

fn certified(
    chain: Vec<CertificateDer<'static>>,
    der: PrivateKeyDer<'static>,
) -> Result<CertPair, CertError> {
    CertifiedKey::from_der(chain.clone(), der.clone_key(), &provider()).map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) => {
            CertError::Key("private key does not match the certificate".into())
        }
        other => CertError::Key(format!("unusable private key: {other}")),
    })?;
    Ok(CertPair { chain, key: der })
}

/// Generates a self-signed certificate (ECDSA P-256) for `names`
/// (host names, `*.example.com` wildcards included).
pub fn self_signed(names: Vec<String>) -> Result<CertPair, CertError> {
    let ck = rcgen::generate_simple_self_signed(names)
        .map_err(|e| CertError::Cert(format!("cannot generate a self-signed certificate: {e}")))?;
    let der = PrivateKeyDer::Pkcs8(ck.signing_key.serialize_der().into());
    certified(vec![ck.cert.der().clone()], der)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mismatched_key_is_refused() {
        let dir = std::env::temp_dir().join(format!("edge-certs-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let one = rcgen::generate_simple_self_signed(vec!["one".into()]).unwrap();
        let two = rcgen::generate_simple_self_signed(vec!["two".into()]).unwrap();
        std::fs::write(dir.join("c.pem"), one.cert.pem()).unwrap();
        std::fs::write(dir.join("k1.pem"), one.signing_key.serialize_pem()).unwrap();
        std::fs::write(dir.join("k2.pem"), two.signing_key.serialize_pem()).unwrap();
        assert!(load_pair(&dir.join("c.pem"), &dir.join("k1.pem")).is_ok());
        let e = load_pair(&dir.join("c.pem"), &dir.join("k2.pem")).unwrap_err();
        assert!(e.to_string().contains("does not match"), "{e}");
        let e = load_pair(&dir.join("missing.pem"), &dir.join("k1.pem")).unwrap_err();
        assert!(matches!(e, CertError::Cert(_)));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn self_signed_covers_names() {
        let pair = self_signed(vec!["a.test".into(), "*.b.test".into()]).unwrap();
        assert_eq!(pair.chain.len(), 1);
    }
}
