//! Certificates: PEM files checked against their keys, self-signed ones made at
//! start, and the SNI resolver rustls asks for every handshake.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::sync::Arc;

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::{HostPattern, LoadedCert};

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

/// Loads a PEM chain and key, and checks that the key belongs to the leaf.
pub fn load_pair(cert: &Path, key: &Path) -> Result<Arc<CertifiedKey>, CertError> {
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
) -> Result<Arc<CertifiedKey>, CertError> {
    let ck = CertifiedKey::from_der(chain, der, &provider()).map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) => {
            CertError::Key("private key does not match the certificate".into())
        }
        other => CertError::Key(format!("unusable private key: {other}")),
    })?;
    Ok(Arc::new(ck))
}

/// Generates a self-signed certificate (ECDSA P-256) for `names`.
pub fn self_signed(names: &[HostPattern]) -> Result<Arc<CertifiedKey>, CertError> {
    let sans: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let ck = rcgen::generate_simple_self_signed(sans)
        .map_err(|e| CertError::Cert(format!("cannot generate a self-signed certificate: {e}")))?;
    let der = PrivateKeyDer::Pkcs8(ck.signing_key.serialize_der().into());
    certified(vec![ck.cert.der().clone()], der)
}

/// Picks a certificate by SNI: exact name, then the longest wildcard, then the default.
pub struct SniCertResolver {
    exact: HashMap<String, Arc<CertifiedKey>>,
    /// (suffix with leading dot, key), longest suffix first.
    wildcard: Vec<(String, Arc<CertifiedKey>)>,
    default: Option<Arc<CertifiedKey>>,
}

impl fmt::Debug for SniCertResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SniCertResolver")
            .field("exact", &self.exact.keys().collect::<Vec<_>>())
            .field(
                "wildcard",
                &self.wildcard.iter().map(|w| &w.0).collect::<Vec<_>>(),
            )
            .field("default", &self.default.is_some())
            .finish()
    }
}

impl SniCertResolver {
    /// Builds the lookup tables; `default` names one of `certs`.
    pub fn new(certs: &[LoadedCert], default: Option<&str>) -> Self {
        let mut exact = HashMap::new();
        let mut wildcard = Vec::new();
        for c in certs {
            for n in &c.names {
                match n {
                    HostPattern::Exact(e) => {
                        exact.entry(e.clone()).or_insert_with(|| c.key.clone());
                    }
                    HostPattern::Wildcard(s) => wildcard.push((s.clone(), c.key.clone())),
                }
            }
        }
        wildcard.sort_by_key(|w: &(String, _)| std::cmp::Reverse(w.0.len()));
        let default = default
            .and_then(|d| certs.iter().find(|c| c.name == d))
            .map(|c| c.key.clone());
        Self {
            exact,
            wildcard,
            default,
        }
    }

    /// The certificate for `sni` (lower case), without the default.
    pub fn lookup(&self, sni: &str) -> Option<Arc<CertifiedKey>> {
        if let Some(k) = self.exact.get(sni) {
            return Some(k.clone());
        }
        self.wildcard
            .iter()
            .find(|(suffix, _)| sni.len() > suffix.len() && sni.ends_with(suffix.as_str()))
            .map(|(_, k)| k.clone())
    }

    /// Whether some certificate (including the default) would serve `sni`.
    pub fn covers(&self, sni: Option<&str>) -> bool {
        self.default.is_some() || sni.is_some_and(|s| self.lookup(s).is_some())
    }
}

impl ResolvesServerCert for SniCertResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        // rustls hands over the SNI already validated and lower-cased.
        hello
            .server_name()
            .and_then(|s| self.lookup(s))
            .or_else(|| self.default.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(name: &str, names: &[&str]) -> LoadedCert {
        let names: Vec<HostPattern> = names.iter().map(|n| n.parse().unwrap()).collect();
        LoadedCert {
            name: name.into(),
            key: self_signed(&names).unwrap(),
            names,
        }
    }

    #[test]
    fn picks_exact_then_wildcard_then_default() {
        let a = cert("a", &["a.example.com"]);
        let w = cert("w", &["*.example.com"]);
        let r = SniCertResolver::new(&[a.clone(), w.clone()], None);
        assert!(Arc::ptr_eq(&r.lookup("a.example.com").unwrap(), &a.key));
        assert!(Arc::ptr_eq(&r.lookup("b.example.com").unwrap(), &w.key));
        assert!(r.lookup("example.org").is_none());
        assert!(!r.covers(None));
        let r = SniCertResolver::new(&[a.clone(), w], Some("a"));
        assert!(r.covers(Some("example.org")));
    }

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
}
