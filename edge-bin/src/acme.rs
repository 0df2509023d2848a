//! `[acme]`: the port-80 challenge responder and automatic certificates,
//! both from `edge-acme`, sharing one storage directory (so either node of
//! a pair answers the CA, whichever placed the order).

use std::sync::Arc;

use edge_acme::{
    AcmeConfig, AcmeHandle, AcmeManager, CertResolver, ChallengeConfig, ChallengeResponder,
    DirStorage, Fallback, Storage,
};

use crate::config::{AcmeSettings, HttpSettings};

/// Builds the challenge responder (when storage is configured) and starts
/// the ACME manager (when certificates are configured). Inside the runtime.
pub fn start(
    a: &AcmeSettings,
    http: &HttpSettings,
    resolver: &Arc<CertResolver>,
) -> Result<(Option<ChallengeResponder>, Option<AcmeHandle>), edge_acme::Error> {
    let Some(dir) = &a.storage else {
        return Ok((None, None));
    };
    let storage: Arc<dyn Storage> = Arc::new(DirStorage::new(dir.clone()));
    let challenge = ChallengeConfig {
        fallback: if http.redirect_to_https {
            Fallback::RedirectHttps
        } else {
            Fallback::NotFound
        },
        https_port: http.https_port,
        peer: a.peer.clone(),
        ..ChallengeConfig::default()
    };
    let responder = ChallengeResponder::from_config(&challenge, storage.clone());
    if a.certificates.is_empty() {
        return Ok((Some(responder), None));
    }
    let mut cfg = AcmeConfig::default();
    if let Some(url) = &a.directory_url {
        cfg.directory_url(url.clone());
    }
    for c in &a.contact {
        cfg.contact(c.clone());
    }
    for r in &a.ca_roots {
        cfg.trust_root(r.clone());
    }
    for names in &a.certificates {
        cfg.certificate(names.iter().cloned());
    }
    cfg.challenge(challenge);
    let handle = AcmeManager::spawn(cfg, storage, resolver.clone())?;
    Ok((Some(responder), Some(handle)))
}
