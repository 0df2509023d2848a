//! `[pool.tls]`: TLS to a pool's servers, checked and loaded (the CA file,
//! the client certificate and its key) into edge-balance's
//! [`UpstreamTls`]; and the pool's `protocol` and health `kind` checked
//! against it.

use std::sync::Arc;

use edge_balance::upstream_tls::{
    Alpn, Roots, UpstreamTls, UpstreamTlsError, load_certificates, load_private_key,
};

use super::{BackendProtocol, HealthKind, Validator, model};

/// `[pool.tls]`, validated: the settings, loaded.
#[derive(Debug, Clone)]
pub struct BackendTlsSettings {
    /// The connector's settings (roots, verification, client certificate,
    /// SNI, ALPN from the pool's `protocol`).
    pub upstream: Arc<UpstreamTls>,
    /// `verify`: `false` is logged as a warning when the pool starts.
    pub verify: bool,
    /// `sni`.
    pub sni: Option<String>,
    /// The same settings as a rustls config without ALPN, for the health
    /// probes (which speak HTTP/1.1 or only handshake).
    pub probe_config: Arc<rustls::ClientConfig>,
}

impl BackendTlsSettings {
    /// edge-health's TLS settings: the same handshake as the pool's traffic.
    pub fn health_probe(&self) -> edge_health::TlsProbe {
        let mut p = edge_health::TlsProbe::default().verify(edge_health::TlsVerify::Config(
            Arc::clone(&self.probe_config),
        ));
        if let Some(sni) = &self.sni {
            p = p.sni(sni.clone());
        }
        p
    }
}

impl Validator<'_> {
    /// The pool's `[pool.tls]` (checked with its `protocol` and health
    /// `kind`), `None` when absent or in error.
    pub(super) fn backend_tls(&mut self, p: &model::Pool, key: &str) -> Option<BackendTlsSettings> {
        let protocol_error = match (p.protocol, p.tls.is_some()) {
            (BackendProtocol::H2 | BackendProtocol::Auto, false) => Some(
                "protocol \"h2\" and \"auto\" speak HTTP over TLS: add a [pool.tls] table (plaintext HTTP/2 is \"h2c\")",
            ),
            (BackendProtocol::H2c, true) => Some(
                "protocol \"h2c\" is HTTP/2 in clear text: with [pool.tls] use \"h2\" (or \"auto\")",
            ),
            _ => None,
        };
        if let Some(msg) = protocol_error {
            self.err(&p.name, format!("{key}.protocol"), msg);
        }
        let tls_probe = p
            .health
            .as_ref()
            .is_some_and(|h| matches!(h.kind, HealthKind::Https | HealthKind::Tls));
        if tls_probe && p.tls.is_none() {
            self.err(
                &p.name,
                format!("{key}.health.kind"),
                "kind \"https\" and \"tls\" use the pool's TLS settings: add a [pool.tls] table",
            );
        }
        let t = p.tls.as_ref()?;
        let key = format!("{key}.tls");
        let roots = match &t.ca_file {
            None => Roots::System,
            Some(f) => match load_certificates(&self.path(f.get_ref())) {
                Ok(certs) => Roots::Certificates(certs),
                Err(e) => {
                    self.err(f, format!("{key}.ca_file"), e.to_string());
                    return None;
                }
            },
        };
        let alpn = match p.protocol {
            BackendProtocol::H2 => Alpn::Http2,
            BackendProtocol::Auto => Alpn::Auto,
            BackendProtocol::Http1 | BackendProtocol::H2c => Alpn::Http1,
        };
        let verify = *t.verify.get_ref();
        let mut tls = UpstreamTls::new(roots).verify(verify).alpn(alpn);
        if let Some(s) = &t.sni {
            tls = match tls.server_name(s.get_ref()) {
                Ok(tls) => tls,
                Err(e) => {
                    self.err(
                        s,
                        format!("{key}.sni"),
                        format!("{e}: expected a DNS name (or an IP address)"),
                    );
                    return None;
                }
            };
        }
        match (&t.client_cert, &t.client_key) {
            (None, None) => {}
            (Some(c), Some(k)) => {
                let chain = load_certificates(&self.path(c.get_ref()));
                let pkey = load_private_key(&self.path(k.get_ref()));
                match (chain, pkey) {
                    (Ok(chain), Ok(pkey)) => tls = tls.client_auth(chain, pkey),
                    (chain, pkey) => {
                        if let Err(e) = chain {
                            self.err(c, format!("{key}.client_cert"), e.to_string());
                        }
                        if let Err(e) = pkey {
                            self.err(k, format!("{key}.client_key"), e.to_string());
                        }
                        return None;
                    }
                }
            }
            (Some(s), None) | (None, Some(s)) => {
                self.err(
                    s,
                    key.clone(),
                    "client_cert and client_key go together: set both or neither",
                );
                return None;
            }
        }
        let probe_config = match tls.client_config() {
            Ok(c) => Arc::new(c),
            Err(e) => {
                let (span_key, msg) = match &e {
                    UpstreamTlsError::Rustls(_) => (
                        "client_key",
                        format!("{e} (does the key belong to client_cert?)"),
                    ),
                    _ => ("ca_file", e.to_string()),
                };
                let at = match span_key {
                    "client_key" => t.client_key.as_ref(),
                    _ => t.ca_file.as_ref(),
                };
                match at {
                    Some(s) => self.err(s, format!("{key}.{span_key}"), msg),
                    None => self.err(&p.name, format!("{key}.{span_key}"), msg),
                }
                return None;
            }
        };
        Some(BackendTlsSettings {
            upstream: Arc::new(tls),
            verify,
            sni: t.sni.as_ref().map(|s| s.get_ref().clone()),
            probe_config,
        })
    }
}

#[cfg(test)]
#[path = "backend_tls_tests.rs"]
mod tests;
