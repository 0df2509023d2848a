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

/// What [`certificates`] builds: the resolver, the port-80 challenge
/// responder and the ACME manager.
pub type Certificates = (
    Arc<CertResolver>,
    Option<ChallengeResponder>,
    Option<Arc<AcmeHandle>>,
);

/// The certificates of a config: the `[[certificate]]`s in a resolver,
/// plus `[acme]`. On a reload (`previous`) whose `[acme]` and port-80
/// redirect settings are unchanged, the previous resolver, responder and
/// ACME manager are kept (the static certificates in the resolver are
/// replaced in one step), so an order or renewal in progress goes on
/// undisturbed; otherwise everything is new and the reload stops the old
/// manager (an order it had in progress is picked up by the new one once
/// the storage lock expires).
pub fn certificates(
    v: &crate::config::Validated,
    previous: Option<&crate::state::State>,
) -> Result<Certificates, edge_acme::Error> {
    let statics: Vec<_> = v
        .certificates
        .iter()
        .map(|c| {
            (
                c.names.iter().map(ToString::to_string).collect::<Vec<_>>(),
                c.pair.chain.clone(),
                c.pair.key.clone_key(),
            )
        })
        .collect();
    let default = v
        .https
        .default_certificate
        .as_deref()
        .and_then(|d| v.certificates.iter().find(|c| c.name == d))
        .and_then(|c| c.names.first())
        .map(ToString::to_string);
    let keep = previous.filter(|p| {
        v.acme.storage.is_some()
            && p.acme_settings == v.acme
            && p.http.redirect_to_https == v.http.redirect_to_https
            && p.http.https_port == v.http.https_port
    });
    if let Some(p) = keep {
        p.certs.replace_static(statics, default.as_deref())?;
        tracing::info!(
            manager = p.acme.is_some(),
            "[acme] unchanged: the challenge responder and ACME manager keep running"
        );
        return Ok((p.certs.clone(), p.challenges.clone(), p.acme.clone()));
    }
    let certs = CertResolver::new();
    certs.replace_static(statics, default.as_deref())?;
    let (challenges, acme) = start(&v.acme, &v.http, &certs)?;
    Ok((certs, challenges, acme.map(Arc::new)))
}
