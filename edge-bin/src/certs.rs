//! Certificates: PEM files checked against their keys, and self-signed ones
//! made at start. They are served by `edge_acme::CertResolver` (see
//! [`crate::state`]), beside the ACME-managed ones.

use std::path::Path;
use std::sync::Arc;

use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::{self, PemObject as _};
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

/// The TLS server's provider (aws-lc-rs, as `tls_tuning`): the keys are
/// loaded by the library that signs with them.
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
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
    let chain = pem_certificates(cert, "certificate file").map_err(CertError::Cert)?;
    let key_pem = std::fs::read(key)
        .map_err(|e| CertError::Key(format!("cannot read key file {}: {e}", key.display())))?;
    let der = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
        CertError::Key(match e {
            pem::Error::NoItemsFound => format!("no PRIVATE KEY block in {}", key.display()),
            e => format!("invalid PEM in {}: {}", key.display(), pem_problem(&e)),
        })
    })?;
    certified(chain, der).map_err(|e| match e {
        CertError::Key(m) => CertError::Key(format!("{}: {m}", key.display())),
        other => other,
    })
}

/// The certificates of a PEM file, in order; an error names the file
/// (`what`: "certificate file", "CA file") and says what is wrong:
/// unreadable, invalid PEM, or no CERTIFICATE block.
pub fn pem_certificates(path: &Path, what: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let text =
        std::fs::read(path).map_err(|e| format!("cannot read {what} {}: {e}", path.display()))?;
    let certs = CertificateDer::pem_slice_iter(&text)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("invalid PEM in {}: {}", path.display(), pem_problem(&e)))?;
    if certs.is_empty() {
        return Err(format!("no CERTIFICATE block in {}", path.display()));
    }
    Ok(certs)
}

/// A PEM parse error in words (the library's own text shows marker lines
/// as byte arrays).
fn pem_problem(e: &pem::Error) -> String {
    let text = |b: &[u8]| String::from_utf8_lossy(b).trim().to_string();
    match e {
        // `end_marker` is the block's label.
        pem::Error::MissingSectionEnd { end_marker } => {
            format!("no \"-----END {}-----\" line", text(end_marker))
        }
        pem::Error::IllegalSectionStart { line } => {
            format!("malformed BEGIN line {:?}", text(line))
        }
        other => other.to_string(),
    }
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
    fn bad_pem_files_are_named_with_the_problem() {
        let dir = std::env::temp_dir().join(format!("edge-certs-bad-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let one = rcgen::generate_simple_self_signed(vec!["one".into()]).unwrap();
        let (cert, key) = (one.cert.pem(), one.signing_key.serialize_pem());
        let write = |name: &str, text: &str| {
            let p = dir.join(name);
            std::fs::write(&p, text).unwrap();
            p
        };
        let (c, k) = (write("c.pem", &cert), write("k.pem", &key));
        let err = |c: &Path, k: &Path| load_pair(c, k).unwrap_err().to_string();
        // The files swapped: no certificate in the key file and the reverse.
        let e = err(&k, &k);
        assert!(
            e.contains("no CERTIFICATE block in") && e.contains("k.pem"),
            "{e}"
        );
        let e = err(&c, &c);
        assert!(
            e.contains("no PRIVATE KEY block in") && e.contains("c.pem"),
            "{e}"
        );
        // Cut short: the END line is missing.
        let cut = write("cut.pem", &cert[..cert.len() / 2]);
        let e = err(&cut, &k);
        assert!(e.contains("invalid PEM in") && e.contains("cut.pem"), "{e}");
        assert!(e.contains("\"-----END CERTIFICATE-----\""), "{e}");
        let cut = write("cutkey.pem", &key[..key.len() / 2]);
        let e = err(&c, &cut);
        assert!(
            e.contains("invalid PEM in") && e.contains("cutkey.pem"),
            "{e}"
        );
        // Unreadable: a directory.
        let e = err(&c, &dir);
        assert!(e.contains("cannot read key file"), "{e}");
        // A chain keeps its order.
        let two = rcgen::generate_simple_self_signed(vec!["two".into()]).unwrap();
        let chain = write("chain.pem", &format!("{cert}{}", two.cert.pem()));
        let certs = pem_certificates(&chain, "certificate file").unwrap();
        assert_eq!(certs, vec![one.cert.der().clone(), two.cert.der().clone()]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn self_signed_covers_names() {
        let pair = self_signed(vec!["a.test".into(), "*.b.test".into()]).unwrap();
        assert_eq!(pair.chain.len(), 1);
    }
}
