//! `[[client_auth]]`: client certificates asked for on terminated TLS
//! hosts (HAProxy `verify required ca-file`, nginx `ssl_verify_client`):
//! for the listed SNI names, a client certificate signed by `ca_file` is
//! required or optionally requested, checked against `crl_file` when set.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::server::danger::ClientCertVerifier;
use rustls::server::{VerifierBuilderError, WebPkiClientVerifier};
use rustls_pki_types::CertificateRevocationListDer;
use rustls_pki_types::pem::PemObject as _;

use super::shapes::ClientAuthFile;
use super::{HostPattern, Validator};
use crate::certs;

/// `[[client_auth]]`, validated: the hosts and the rustls verifier.
#[derive(Debug, Clone)]
pub struct ClientAuthSettings {
    pub hosts: Vec<HostPattern>,
    /// A handshake without a valid client certificate fails (else: it
    /// goes on, and routes with `client_certificate = "required"` answer 403).
    pub required: bool,
    pub ca_file: PathBuf,
    pub crl_file: Option<PathBuf>,
    pub verifier: Arc<dyn ClientCertVerifier>,
}

impl ClientAuthSettings {
    /// Whether `name` (an SNI or a Host) is one of these hosts.
    pub fn covers(&self, name: &str) -> bool {
        self.match_rank(name).is_some()
    }

    /// How `name` matches these hosts: `Some(0)` exactly, `Some(1)` by a
    /// wildcard, `None` not at all (exact names win over wildcards, as
    /// for certificates and passthrough).
    pub fn match_rank(&self, name: &str) -> Option<u8> {
        self.hosts
            .iter()
            .filter(|h| h.matches(name))
            .map(|h| u8::from(h.is_wildcard()))
            .min()
    }
}

/// The CRLs of a file: PEM `X509 CRL` blocks, or one DER CRL.
fn load_crls(path: &Path) -> Result<Vec<CertificateRevocationListDer<'static>>, String> {
    let bytes =
        std::fs::read(path).map_err(|e| format!("cannot read CRL file {}: {e}", path.display()))?;
    if !bytes.starts_with(b"-----") && bytes.first() == Some(&0x30) {
        return Ok(vec![CertificateRevocationListDer::from(bytes)]);
    }
    let crls = CertificateRevocationListDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("invalid PEM in {}: {e}", path.display()))?;
    if crls.is_empty() {
        return Err(format!("no X509 CRL block in {}", path.display()));
    }
    Ok(crls)
}

impl Validator<'_> {
    /// The `[[client_auth]]` sections; a host in two of them is an error.
    pub(super) fn client_auth(&mut self, list: &[ClientAuthFile]) -> Vec<ClientAuthSettings> {
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        for (i, c) in list.iter().enumerate() {
            let key = format!("client_auth[{i}]");
            let mut hosts = Vec::new();
            for (j, h) in c.hosts.iter().enumerate() {
                let Some(p) = self.host(h, &format!("{key}.hosts[{j}]")) else {
                    continue;
                };
                if !seen.insert(p.to_string()) {
                    self.err(
                        h,
                        format!("{key}.hosts[{j}]"),
                        format!(
                            "host {:?} is already in another [[client_auth]]",
                            h.get_ref()
                        ),
                    );
                }
                hosts.push(p);
            }
            if c.hosts.is_empty() {
                self.err(
                    &c.ca_file,
                    format!("{key}.hosts"),
                    "list the TLS host names (SNI) that ask for a client certificate",
                );
            }
            let required = match c.verify.as_ref().map(|v| (v, v.get_ref().as_str())) {
                None | Some((_, "required")) => true,
                Some((_, "optional")) => false,
                Some((v, other)) => {
                    self.err(
                        v,
                        format!("{key}.verify"),
                        format!("unknown verify {other:?} (expected \"required\" or \"optional\")"),
                    );
                    true
                }
            };
            let ca_file = self.path(c.ca_file.get_ref());
            let roots = match certs::pem_certificates(&ca_file, "CA file") {
                Ok(cas) => {
                    let mut roots = rustls::RootCertStore::empty();
                    let (_, bad) = roots.add_parsable_certificates(cas);
                    if roots.is_empty() || bad > 0 {
                        self.err(
                            &c.ca_file,
                            format!("{key}.ca_file"),
                            format!("{}: a certificate is not a valid CA", ca_file.display()),
                        );
                    }
                    Some(roots)
                }
                Err(m) => {
                    self.err(&c.ca_file, format!("{key}.ca_file"), m);
                    None
                }
            };
            let crl_file = c.crl_file.as_ref().map(|f| (f, self.path(f.get_ref())));
            let crls = match &crl_file {
                None => Some(Vec::new()),
                Some((span, path)) => match load_crls(path) {
                    Ok(crls) => Some(crls),
                    Err(m) => {
                        self.err(*span, format!("{key}.crl_file"), m);
                        None
                    }
                },
            };
            let (Some(roots), Some(crls)) = (roots, crls) else {
                continue;
            };
            match build_verifier(roots, crls, required) {
                Ok(verifier) => out.push(ClientAuthSettings {
                    hosts,
                    required,
                    ca_file,
                    crl_file: crl_file.map(|(_, p)| p),
                    verifier,
                }),
                Err(e) => {
                    let (span, what) = match &c.crl_file {
                        Some(f) if matches!(e, VerifierBuilderError::InvalidCrl(_)) => {
                            (f, "crl_file")
                        }
                        _ => (&c.ca_file, "ca_file"),
                    };
                    self.err(span, format!("{key}.{what}"), format!("unusable: {e}"));
                }
            }
        }
        out
    }
}

impl Validator<'_> {
    /// A warning per `[[route]]` with `client_certificate = "required"`
    /// whose hosts no `[[client_auth]]` covers: no client certificate is
    /// ever asked for there, so it would answer 403 to everyone.
    pub(super) fn certificate_route_warnings(
        &self,
        routes: &[super::model::Route],
        client_auth: &[ClientAuthSettings],
    ) -> Vec<super::ConfigError> {
        let mut warnings = Vec::new();
        for (i, r) in routes.iter().enumerate() {
            let Some(c) = &r.client_certificate else {
                continue;
            };
            if c.get_ref() != "required" {
                continue;
            }
            let covered = |h: &str| {
                client_auth
                    .iter()
                    .any(|a| a.covers(h) || a.hosts.iter().any(|p| p.to_string() == h))
            };
            let asked = if r.host.is_empty() {
                !client_auth.is_empty()
            } else {
                r.host
                    .iter()
                    .any(|h| covered(&h.get_ref().to_ascii_lowercase()))
            };
            if !asked {
                warnings.push(self.src.error(
                    c.span(),
                    format!("route[{i}].client_certificate"),
                    "no [[client_auth]] covers this route's hosts: no client certificate is asked for, every request gets 403",
                ));
            }
        }
        warnings
    }
}

/// rustls' WebPKI client verifier over `roots` and `crls`.
fn build_verifier(
    roots: rustls::RootCertStore,
    crls: Vec<CertificateRevocationListDer<'static>>,
    required: bool,
) -> Result<Arc<dyn ClientCertVerifier>, VerifierBuilderError> {
    // The TLS server's provider (aws-lc-rs): its signature algorithms.
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut b = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
        .with_crls(crls)
        // A CRL speaks for the leaf's issuer; intermediates without one
        // would otherwise fail every handshake.
        .only_check_end_entity_revocation();
    if !required {
        b = b.allow_unauthenticated();
    }
    b.build()
}
