//! `[[certificate]]`: PEM files checked against their keys, or self-signed
//! certificates made here, each with the names it serves.

use std::collections::HashSet;

use crate::certs::{self, CertError, CertPair};

use super::{HostMatch, Validator, model};

/// A certificate loaded (or generated) and checked against its key.
#[derive(Debug, Clone)]
pub struct LoadedCert {
    pub name: String,
    /// Host names and patterns, and IP addresses (SANs of a self-signed one).
    pub names: Vec<HostMatch>,
    pub pair: CertPair,
    /// The certificate and key files; `None` for a self-signed one.
    pub files: Option<(std::path::PathBuf, std::path::PathBuf)>,
}

impl Validator<'_> {
    /// The certificates and their `name`s.
    pub(super) fn certificates(
        &mut self,
        list: &[model::Certificate],
    ) -> (Vec<LoadedCert>, HashSet<String>) {
        let mut certificates = Vec::new();
        let mut cert_names = HashSet::new();
        for (i, c) in list.iter().enumerate() {
            let key = format!("certificate[{i}]");
            if !cert_names.insert(c.name.get_ref().clone()) {
                self.err(
                    &c.name,
                    format!("{key}.name"),
                    format!("duplicate certificate name {:?}", c.name.get_ref()),
                );
            }
            let names: Vec<HostMatch> = c
                .names
                .iter()
                .enumerate()
                .filter_map(|(j, n)| self.host_or_address(n, &format!("{key}.names[{j}]")))
                .collect();
            let loaded = if c.self_signed {
                if c.cert.is_some() || c.key.is_some() {
                    self.err(
                        &c.name,
                        key.clone(),
                        "self_signed = true cannot be combined with cert/key",
                    );
                }
                if names.is_empty() {
                    self.err(
                        &c.name,
                        format!("{key}.names"),
                        "a self-signed certificate needs at least one name",
                    );
                    None
                } else {
                    match certs::self_signed(names.iter().map(ToString::to_string).collect()) {
                        Ok(k) => Some((k, None)),
                        Err(e) => {
                            self.err(&c.name, key.clone(), e.to_string());
                            None
                        }
                    }
                }
            } else {
                match (&c.cert, &c.key) {
                    (Some(cert), Some(k)) => {
                        if names.is_empty() {
                            self.err(
                                &c.name,
                                format!("{key}.names"),
                                "list the names this certificate serves (names = [...])",
                            );
                        }
                        let cp = self.path(cert.get_ref());
                        let kp = self.path(k.get_ref());
                        match certs::load_pair(&cp, &kp) {
                            Ok(k) => Some((k, Some((cp, kp)))),
                            Err(CertError::Cert(m)) => {
                                self.err(cert, format!("{key}.cert"), m);
                                None
                            }
                            Err(CertError::Key(m)) => {
                                self.err(k, format!("{key}.key"), m);
                                None
                            }
                        }
                    }
                    _ => {
                        self.err(
                            &c.name,
                            key.clone(),
                            "set both cert and key, or self_signed = true",
                        );
                        None
                    }
                }
            };
            if let Some((k, files)) = loaded {
                certificates.push(LoadedCert {
                    name: c.name.get_ref().clone(),
                    names,
                    pair: k,
                    files,
                });
            }
        }
        (certificates, cert_names)
    }
}

impl Validator<'_> {
    /// A warning per `[[certificate]]` name that an earlier one with a key
    /// of the same type already serves: a name has one certificate per key
    /// type (ECDSA, Ed25519, RSA), so only one of the two is served.
    pub(super) fn same_key_type_warnings(
        &self,
        list: &[model::Certificate],
        loaded: &[LoadedCert],
    ) -> Vec<super::ConfigError> {
        let mut seen: HashSet<(String, String)> = HashSet::new();
        let mut out = Vec::new();
        for (i, c) in list.iter().enumerate() {
            let Some(l) = loaded.iter().find(|l| l.name == *c.name.get_ref()) else {
                continue;
            };
            let Ok(key) = rustls::crypto::aws_lc_rs::sign::any_supported_type(&l.pair.key) else {
                continue;
            };
            let kind = format!("{:?}", key.algorithm());
            for (j, n) in c.names.iter().enumerate() {
                let name = n.get_ref().to_ascii_lowercase();
                if !seen.insert((name.clone(), kind.clone())) {
                    out.push(self.src.error(
                        n.span(),
                        format!("certificate[{i}].names[{j}]"),
                        format!(
                            "another [[certificate]] with an {kind} key serves {name:?}: a name has one certificate per key type (ECDSA, Ed25519, RSA), only one of them is served"
                        ),
                    ));
                }
            }
        }
        out
    }
}
