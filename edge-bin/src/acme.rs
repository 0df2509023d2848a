//! `[acme]`: the port-80 challenge responder and automatic certificates,
//! both from `edge-acme`, sharing one storage directory (so either node of
//! a pair answers the CA, whichever placed the order).

use std::sync::{Arc, OnceLock};

use edge_acme::{
    AcmeConfig, AcmeHandle, AcmeManager, CertResolver, CertificateConfig, ChallengeConfig,
    ChallengeResponder, DirStorage, Fallback, HttpsRedirect, Storage,
};

use crate::config::{AcmeSettings, HttpSettings};

/// Port 80's answer to what is not an ACME challenge, from `[http]`
/// (`redirect_to_https`, `https_port`): edge-acme's redirect service, the
/// one the challenge responder falls back to.
pub fn https_redirect(http: &HttpSettings) -> HttpsRedirect {
    HttpsRedirect::new(fallback(http), http.https_port)
}

fn fallback(http: &HttpSettings) -> Fallback {
    if http.redirect_to_https {
        Fallback::RedirectHttps
    } else {
        Fallback::NotFound
    }
}

/// The storage a fleet shares (`[etcd]`) and this node's name (the owner of
/// its locks), set once at start by the `[etcd]` link.
static SHARED_STORAGE: OnceLock<(Arc<dyn Storage>, String)> = OnceLock::new();

/// Makes `storage` the ACME storage of every `[acme]` from now on, with
/// `node` as the owner of its locks. Once per process: `false` when it was
/// already set.
pub fn share_storage(storage: Arc<dyn Storage>, node: String) -> bool {
    SHARED_STORAGE.set((storage, node)).is_ok()
}

/// Builds the challenge responder (when storage is configured) and starts
/// the ACME manager (when certificates are configured). Inside the runtime.
pub fn start(
    a: &AcmeSettings,
    http: &HttpSettings,
    resolver: &Arc<CertResolver>,
) -> Result<(Option<ChallengeResponder>, Option<AcmeHandle>), edge_acme::Error> {
    // `[etcd]` (a fleet) is the storage when configured, else the directory.
    let (storage, node): (Arc<dyn Storage>, _) = match (SHARED_STORAGE.get().cloned(), &a.storage) {
        (Some((etcd, node)), _) => (etcd, Some(node)),
        (None, Some(dir)) => (Arc::new(DirStorage::new(dir.clone())), None),
        (None, None) => return Ok((None, None)),
    };
    let challenge = ChallengeConfig {
        fallback: fallback(http),
        https_port: http.https_port,
        peer: a.peer.clone(),
        ..ChallengeConfig::default()
    };
    let responder = ChallengeResponder::from_config(&challenge, storage.clone());
    if a.certificates.is_empty() {
        return Ok((Some(responder), None));
    }
    let mut cfg = AcmeConfig::default();
    if let Some(node) = node {
        cfg.node_id(node);
    }
    if let Some(url) = &a.directory_url {
        cfg.directory_url(url.clone());
    }
    for c in &a.contact {
        cfg.contact(c.clone());
    }
    for r in &a.ca_roots {
        cfg.trust_root(r.clone());
    }
    for ((names, challenge), key_types) in
        a.certificates.iter().zip(&a.challenges).zip(&a.key_types)
    {
        // One certificate per key type: ordered, stored and renewed apart,
        // served side by side (the client's signature algorithms choose).
        for key_type in key_types {
            let mut cert = CertificateConfig::new(names.iter().cloned()).with_key_type(*key_type);
            cert.challenge = *challenge;
            cfg.certificate_config(cert);
        }
    }
    if let Some(dns) = &a.dns {
        cfg.dns_update(dns.clone());
    }
    if let Some(ttl) = a.lock_ttl {
        cfg.lock_ttl(ttl);
    }
    if let Some(wait) = a.lock_wait {
        cfg.lock_wait(wait);
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
/// manager, which gives up an order in progress and releases its storage
/// lock, so the new one orders at once.
pub fn certificates(
    v: &crate::config::Validated,
    previous: Option<Previous<'_>>,
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
            && *p.acme_settings == v.acme
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

/// What a reload keeps of the running config's certificates.
#[derive(Debug, Clone, Copy)]
pub struct Previous<'a> {
    pub certs: &'a Arc<CertResolver>,
    pub challenges: &'a Option<edge_acme::ChallengeResponder>,
    pub acme: &'a Option<Arc<edge_acme::AcmeHandle>>,
    pub acme_settings: &'a AcmeSettings,
    pub http: &'a HttpSettings,
}

/// Graceful stop of the running ACME manager (SIGTERM): an order in progress
/// is given up and its storage lock released at once, so the other node of
/// the pair takes the order over without waiting for the lock to expire.
/// Bounded by [`edge_acme::SHUTDOWN_LIMIT`]. A crash (`kill -9`) leaves the
/// lock to expire after `[acme] lock_ttl`.
pub async fn stop(acme: Option<&Arc<edge_acme::AcmeHandle>>) {
    if let Some(acme) = acme {
        acme.shutdown().await;
        tracing::info!("ACME manager stopped; storage locks released");
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Duration;

    use crate::config::{Source, load_str};

    fn acme(extra: &str) -> Result<crate::config::AcmeSettings, String> {
        let text = format!(
            "[[route]]\nrespond = {{ status = 200 }}\n[https]\nlisten = [\"127.0.0.1:8443\"]\n[acme]\nstorage = \"/tmp/acme\"\ncertificates = [[\"a.example\"]]\n{extra}\n"
        );
        load_str(Source::new(Path::new("t.toml"), text), Path::new("."))
            .map(|v| v.acme)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn port_80_redirect_follows_http_settings() {
        use edge_acme::{Fallback, HttpsRedirect};
        let http = |extra: &str| {
            let text = format!(
                "[[route]]\nrespond = {{ status = 200 }}\n[https]\nlisten = [\"127.0.0.1:8443\"]\n[http]\nlisten = []\n{extra}\n"
            );
            load_str(Source::new(Path::new("t.toml"), text), Path::new("."))
                .unwrap()
                .http
        };
        assert_eq!(
            super::https_redirect(&http("https_port = 8443")),
            HttpsRedirect::new(Fallback::RedirectHttps, 8443)
        );
        assert_eq!(
            super::https_redirect(&http("redirect_to_https = false")),
            HttpsRedirect::new(Fallback::NotFound, 443)
        );
    }

    #[test]
    fn key_types_default_to_ecdsa_and_are_read() {
        use edge_acme::KeyType;
        assert_eq!(acme("").unwrap().key_types, [vec![KeyType::EcdsaP256]]);
        let with = |types: &str| {
            let text = format!(
                "[[route]]\nrespond = {{ status = 200 }}\n[acme]\nstorage = \"/tmp/acme\"\ncertificates = [{{ names = [\"a.example\"], key_types = {types} }}]\n"
            );
            load_str(Source::new(Path::new("t.toml"), text), Path::new("."))
                .map(|v| v.acme.key_types)
                .map_err(|e| e.to_string())
        };
        assert_eq!(
            with("[\"rsa\", \"ecdsa\"]").unwrap(),
            [vec![KeyType::Rsa2048, KeyType::EcdsaP256]]
        );
        for (bad, says) in [
            ("[\"dsa\"]", "unknown key type \"dsa\""),
            ("[\"rsa\", \"rsa\"]", "listed twice"),
            ("[]", "no key type"),
        ] {
            let e = with(bad).unwrap_err();
            assert!(e.contains(says) && e.contains("key_types"), "{bad}: {e}");
        }
    }

    #[test]
    fn lock_settings_default_to_edge_acme_and_are_read() {
        let a = acme("").unwrap();
        assert_eq!((a.lock_ttl, a.lock_wait), (None, None));
        let a = acme("lock_ttl = \"10s\"\nlock_wait = \"2m\"").unwrap();
        assert_eq!(a.lock_ttl, Some(Duration::from_secs(10)));
        assert_eq!(a.lock_wait, Some(Duration::from_secs(120)));
    }

    #[test]
    fn bad_lock_settings_are_refused_with_the_key_and_value() {
        for (extra, key, says) in [
            (
                "lock_ttl = \"1s\"",
                "acme.lock_ttl",
                "between 5s and 1h (got 1s)",
            ),
            ("lock_ttl = \"2h\"", "acme.lock_ttl", "between 5s and 1h"),
            (
                "lock_wait = \"10s\"",
                "acme.lock_wait",
                "at least lock_ttl (30s)",
            ),
            (
                "lock_ttl = \"1m\"\nlock_wait = \"30s\"",
                "acme.lock_wait",
                "at least lock_ttl (60s)",
            ),
            ("lock_wait = \"25h\"", "acme.lock_wait", "at most 24h"),
            (
                "lock_ttl = \"30\"",
                "lock_ttl",
                "unit must be ms, s, m or h",
            ),
        ] {
            let e = acme(extra).expect_err(extra);
            assert!(e.contains(key) && e.contains(says), "{extra}: {e}");
            assert!(e.contains("t.toml:"), "{extra}: no position in {e}");
        }
    }
}
