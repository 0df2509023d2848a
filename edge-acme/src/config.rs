//! Typed configuration, with documented defaults.

use std::time::Duration;

use http::Uri;
use rustls_pki_types::CertificateDer;

use crate::redirect::Fallback;

/// Let's Encrypt's production directory.
pub const LETS_ENCRYPT_PRODUCTION: &str = "https://acme-v02.api.letsencrypt.org/directory";
/// Let's Encrypt's staging directory (untrusted certificates, generous limits).
pub const LETS_ENCRYPT_STAGING: &str = "https://acme-staging-v02.api.letsencrypt.org/directory";

/// The key type of certificate keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum KeyType {
    /// ECDSA on P-256 with SHA-256 (default: small, fast, universally supported).
    #[default]
    EcdsaP256,
    /// ECDSA on P-384 with SHA-384.
    EcdsaP384,
    /// RSA with a 2048-bit modulus, for clients without ECDSA (served
    /// beside an ECDSA certificate for the same names: see
    /// [`CertificateConfig::id`]).
    Rsa2048,
}

impl KeyType {
    /// A short name: `ecdsa-p256`, `ecdsa-p384`, `rsa2048`.
    pub fn name(self) -> &'static str {
        match self {
            Self::EcdsaP256 => "ecdsa-p256",
            Self::EcdsaP384 => "ecdsa-p384",
            Self::Rsa2048 => "rsa2048",
        }
    }
}

/// External account binding, for CAs that need one (RFC 8555 §7.3.4).
#[derive(Clone)]
pub struct ExternalAccountBinding {
    /// The key identifier the CA gave.
    pub key_id: String,
    /// The raw (decoded) HMAC key the CA gave.
    pub hmac_key: Vec<u8>,
}

impl std::fmt::Debug for ExternalAccountBinding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExternalAccountBinding")
            .field("key_id", &self.key_id)
            .field("hmac_key", &"<redacted>")
            .finish()
    }
}

/// How the CA validates a certificate's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Challenge {
    /// HTTP-01: a token served on port 80 (default).
    #[default]
    Http01,
    /// DNS-01: a TXT record published through RFC 2136 updates (see
    /// [`AcmeConfig::dns_update`]); the only way to wildcard names.
    Dns01,
}

/// One certificate to obtain and keep renewed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateConfig {
    /// DNS names (the first one names the certificate in storage). Only
    /// DNS-01 can validate wildcards (`*.example.com`).
    pub names: Vec<String>,
    /// Key type (default [`KeyType::EcdsaP256`]).
    pub key_type: KeyType,
    /// The challenge type (default [`Challenge::Http01`]).
    pub challenge: Challenge,
}

impl CertificateConfig {
    /// A P-256 certificate for `names`.
    pub fn new<S: Into<String>>(names: impl IntoIterator<Item = S>) -> Self {
        Self {
            names: names
                .into_iter()
                .map(|n| n.into().trim_end_matches('.').to_ascii_lowercase())
                .collect(),
            key_type: KeyType::default(),
            challenge: Challenge::default(),
        }
    }

    /// The same, validated over DNS-01.
    #[must_use]
    pub fn dns01(mut self) -> Self {
        self.challenge = Challenge::Dns01;
        self
    }

    /// The same, with a key of type `key_type`.
    #[must_use]
    pub fn with_key_type(mut self, key_type: KeyType) -> Self {
        self.key_type = key_type;
        self
    }

    /// The storage id: the first name, `*` spelled `_`; for an RSA key,
    /// followed by `+rsa2048`. So an ECDSA and an RSA certificate for the
    /// same names are two certificates, ordered, stored and renewed each
    /// on its own, and both served (the client's signature algorithms
    /// choose, see [`CertResolver`](crate::CertResolver)).
    pub fn id(&self) -> String {
        let name = self
            .names
            .first()
            .map(|n| n.replace('*', "_"))
            .unwrap_or_default();
        match self.key_type {
            KeyType::EcdsaP256 | KeyType::EcdsaP384 => name,
            KeyType::Rsa2048 => format!("{name}+{}", KeyType::Rsa2048.name()),
        }
    }
}

/// Settings of the challenge responder on port 80.
#[derive(Debug, Clone)]
pub struct ChallengeConfig {
    /// What requests other than a pending challenge get
    /// (default [`Fallback::RedirectHttps`]).
    pub fallback: Fallback,
    /// The HTTPS port redirects point to (default 443, left out of the URL).
    pub https_port: u16,
    /// The peer node's responder (`http://10.0.0.2:80`) that unknown tokens
    /// are forwarded to when the pair does not share storage (default none).
    pub peer: Option<Uri>,
    /// How long to wait for the peer (default 3 s).
    pub peer_timeout: Duration,
}

impl ChallengeConfig {
    /// What requests other than a pending challenge get, as a service.
    pub fn https_redirect(&self) -> crate::redirect::HttpsRedirect {
        crate::redirect::HttpsRedirect::new(self.fallback, self.https_port)
    }
}

impl Default for ChallengeConfig {
    fn default() -> Self {
        Self {
            fallback: Fallback::RedirectHttps,
            https_port: 443,
            peer: None,
            peer_timeout: Duration::from_secs(3),
        }
    }
}

/// When to renew and how to retry.
#[derive(Debug, Clone)]
pub struct RenewalConfig {
    /// Renew once this fraction of the lifetime remains (default 1/3, so 30
    /// days before expiry for 90-day certificates, 2 days for 6-day ones).
    pub remaining_fraction: f64,
    /// Ask the CA for ACME Renewal Information (RFC 9773) when it offers it,
    /// and renew earlier if its window says so (default true).
    pub use_ari: bool,
    /// First retry delay after a failed order (default 1 minute).
    pub backoff_initial: Duration,
    /// Largest retry delay (default 6 hours). Each retry waits a random time
    /// between half the nominal delay and the nominal delay.
    pub backoff_max: Duration,
    /// At most this many orders per account in [`rate_window`](Self::rate_window)
    /// (default 20; Let's Encrypt allows 300 per 3 hours).
    pub rate_limit: u32,
    /// The window of the rate cap (default 1 hour).
    pub rate_window: Duration,
    /// How often to look in storage for a certificate another node renewed
    /// (default 1 minute).
    pub storage_poll: Duration,
}

impl Default for RenewalConfig {
    fn default() -> Self {
        Self {
            remaining_fraction: 1.0 / 3.0,
            use_ari: true,
            backoff_initial: Duration::from_secs(60),
            backoff_max: Duration::from_secs(6 * 3600),
            rate_limit: 20,
            rate_window: Duration::from_secs(3600),
            storage_poll: Duration::from_secs(60),
        }
    }
}

/// Everything the [`AcmeManager`](crate::AcmeManager) needs.
///
/// ```
/// use std::time::Duration;
/// use edge_acme::{AcmeConfig, LETS_ENCRYPT_STAGING};
///
/// let mut config = AcmeConfig::default();
/// config
///     .directory_url(LETS_ENCRYPT_STAGING)
///     .contact("mailto:ops@example.com")
///     .certificate(["example.com", "www.example.com"])
///     .order_timeout(Duration::from_secs(120));
/// assert_eq!(config.certificates().len(), 1);
/// ```
#[derive(Debug, Clone)]
pub struct AcmeConfig {
    pub(crate) directory_url: String,
    pub(crate) contact: Vec<String>,
    pub(crate) eab: Option<ExternalAccountBinding>,
    pub(crate) certificates: Vec<CertificateConfig>,
    pub(crate) extra_roots: Vec<CertificateDer<'static>>,
    pub(crate) request_timeout: Duration,
    pub(crate) order_timeout: Duration,
    pub(crate) lock_ttl: Duration,
    pub(crate) lock_wait: Duration,
    pub(crate) node_id: String,
    pub(crate) renewal: RenewalConfig,
    pub(crate) challenge: ChallengeConfig,
    pub(crate) dns: Option<crate::dns01::DnsUpdateConfig>,
}

impl Default for AcmeConfig {
    fn default() -> Self {
        Self {
            directory_url: LETS_ENCRYPT_PRODUCTION.to_owned(),
            contact: Vec::new(),
            eab: None,
            certificates: Vec::new(),
            extra_roots: Vec::new(),
            request_timeout: Duration::from_secs(30),
            order_timeout: Duration::from_secs(180),
            lock_ttl: DEFAULT_LOCK_TTL,
            lock_wait: DEFAULT_LOCK_WAIT,
            node_id: default_node_id(),
            renewal: RenewalConfig::default(),
            challenge: ChallengeConfig::default(),
            dns: None,
        }
    }
}

/// Default [`AcmeConfig::lock_ttl`]: 30 s.
pub const DEFAULT_LOCK_TTL: Duration = Duration::from_secs(30);

/// Default [`AcmeConfig::lock_wait`]: 10 minutes.
pub const DEFAULT_LOCK_WAIT: Duration = Duration::from_secs(600);

fn default_node_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "node".to_owned());
    format!(
        "{host}-{}-{:08x}",
        std::process::id(),
        rand::random::<u32>()
    )
}

impl AcmeConfig {
    /// The CA's directory URL (default [`LETS_ENCRYPT_PRODUCTION`]).
    pub fn directory_url(&mut self, url: impl Into<String>) -> &mut Self {
        self.directory_url = url.into();
        self
    }

    /// Adds an account contact, e.g. `mailto:ops@example.com` (default none).
    pub fn contact(&mut self, contact: impl Into<String>) -> &mut Self {
        self.contact.push(contact.into());
        self
    }

    /// External account binding for CAs that require one (default none).
    pub fn external_account(&mut self, eab: ExternalAccountBinding) -> &mut Self {
        self.eab = Some(eab);
        self
    }

    /// Adds a P-256 certificate for `names`.
    pub fn certificate<S: Into<String>>(
        &mut self,
        names: impl IntoIterator<Item = S>,
    ) -> &mut Self {
        self.certificates.push(CertificateConfig::new(names));
        self
    }

    /// Adds a certificate with explicit settings.
    pub fn certificate_config(&mut self, certificate: CertificateConfig) -> &mut Self {
        self.certificates.push(certificate);
        self
    }

    /// The certificates configured.
    pub fn certificates(&self) -> &[CertificateConfig] {
        &self.certificates
    }

    /// Also trust this root when talking to the CA (for private CAs and
    /// test CAs; default: the Mozilla roots only).
    pub fn trust_root(&mut self, root: CertificateDer<'static>) -> &mut Self {
        self.extra_roots.push(root);
        self
    }

    /// Limit on each HTTP request to the CA (default 30 s).
    pub fn request_timeout(&mut self, timeout: Duration) -> &mut Self {
        self.request_timeout = timeout;
        self
    }

    /// Limit on a whole order, from creation to certificate (default 180 s).
    pub fn order_timeout(&mut self, timeout: Duration) -> &mut Self {
        self.order_timeout = timeout;
        self
    }

    /// Expiry of the storage lock taken while ordering, refreshed every
    /// third of it while the order runs (default [`DEFAULT_LOCK_TTL`], at
    /// least 1 s). A node that dies holding it blocks the other one for at
    /// most this long; a graceful stop
    /// ([`AcmeHandle::shutdown`](crate::AcmeHandle::shutdown)) releases it at once.
    pub fn lock_ttl(&mut self, ttl: Duration) -> &mut Self {
        self.lock_ttl = ttl;
        self
    }

    /// How long to wait for another node's lock before counting a failure
    /// (default [`DEFAULT_LOCK_WAIT`], at most 24 h).
    pub fn lock_wait(&mut self, wait: Duration) -> &mut Self {
        self.lock_wait = wait;
        self
    }

    /// This node's name in storage locks (default `hostname-pid-random`).
    pub fn node_id(&mut self, id: impl Into<String>) -> &mut Self {
        self.node_id = id.into();
        self
    }

    /// Renewal settings.
    pub fn renewal(&mut self, renewal: RenewalConfig) -> &mut Self {
        self.renewal = renewal;
        self
    }

    /// Challenge responder settings (used by
    /// [`ChallengeResponder::from_config`](crate::ChallengeResponder::from_config)).
    pub fn challenge(&mut self, challenge: ChallengeConfig) -> &mut Self {
        self.challenge = challenge;
        self
    }

    /// Where DNS-01 certificates publish their TXT records (default none;
    /// needed by any [`Challenge::Dns01`] certificate).
    pub fn dns_update(&mut self, dns: crate::dns01::DnsUpdateConfig) -> &mut Self {
        self.dns = Some(dns);
        self
    }

    /// The challenge responder settings.
    pub fn challenge_config(&self) -> &ChallengeConfig {
        &self.challenge
    }

    pub(crate) fn validate(&self) -> Result<(), crate::Error> {
        let bad = |m: String| Err(crate::Error::Config(m));
        if self.certificates.is_empty() {
            return bad("no certificate configured".into());
        }
        if !(self.renewal.remaining_fraction > 0.0 && self.renewal.remaining_fraction < 1.0) {
            return bad(format!(
                "renewal remaining_fraction {} is not between 0 and 1",
                self.renewal.remaining_fraction
            ));
        }
        if self.renewal.rate_limit == 0 {
            return bad("renewal rate_limit is 0".into());
        }
        if self.lock_ttl < Duration::from_secs(1) {
            return bad(format!("lock_ttl {:?} is under 1 s", self.lock_ttl));
        }
        if self.lock_wait > Duration::from_secs(86_400) {
            return bad(format!("lock_wait {:?} is over 24 h", self.lock_wait));
        }
        if let Some(dns) = &self.dns {
            dns.validate()
                .map_err(|e| crate::Error::Config(format!("DNS-01: {e}")))?;
        }
        let mut ids = std::collections::HashSet::new();
        for cert in &self.certificates {
            if cert.names.is_empty() {
                return bad("a certificate has no names".into());
            }
            if cert.challenge == Challenge::Dns01 && self.dns.is_none() {
                return bad(format!(
                    "{}: DNS-01 needs the DNS update settings",
                    cert.id()
                ));
            }
            for name in &cert.names {
                if let Some(dns) = self
                    .dns
                    .as_ref()
                    .filter(|_| cert.challenge == Challenge::Dns01)
                    && !dns.covers(name)
                {
                    return bad(format!("{name} is not in the DNS-01 zone {}", dns.zone));
                }
                if name.starts_with("*.") && cert.challenge == Challenge::Http01 {
                    return bad(format!("{name}: HTTP-01 cannot validate wildcard names"));
                }
                let name = name.strip_prefix("*.").unwrap_or(name);
                let ok = !name.is_empty()
                    && name.len() <= 253
                    && name.split('.').all(|l| {
                        !l.is_empty()
                            && l.len() <= 63
                            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                    });
                if !ok {
                    return bad(format!("{name:?} is not a DNS name"));
                }
            }
            if !ids.insert(cert.id()) {
                return bad(format!(
                    "two certificates start with the name {}",
                    cert.id()
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An ECDSA and an RSA certificate for the same names are two
    /// certificates with two storage ids; the ECDSA one keeps the id it
    /// always had (storage written before RSA existed still loads).
    #[test]
    fn rsa_beside_ecdsa_has_its_own_id() {
        let ecdsa = CertificateConfig::new(["*.Example.com", "example.com"]);
        let rsa = ecdsa.clone().with_key_type(KeyType::Rsa2048);
        assert_eq!(ecdsa.id(), "_.example.com");
        assert_eq!(rsa.id(), "_.example.com+rsa2048");
        crate::storage::validate_key(&crate::storage::keys::cert_chain(&rsa.id())).unwrap();
        let mut c = AcmeConfig::default();
        c.certificate_config(CertificateConfig::new(["example.com"]))
            .certificate_config(
                CertificateConfig::new(["example.com"]).with_key_type(KeyType::Rsa2048),
            );
        c.validate().unwrap();
    }

    #[test]
    fn validation_names_the_problem() {
        let mut c = AcmeConfig::default();
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("no certificate")
        );
        c.certificate(["*.example.com"]);
        assert!(c.validate().unwrap_err().to_string().contains("wildcard"));
        let mut c = AcmeConfig::default();
        c.certificate(["bad name.example"]);
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("not a DNS name")
        );
        let mut c = AcmeConfig::default();
        c.certificate(["Example.COM."]).certificate(["example.com"]);
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("two certificates")
        );
        let mut c = AcmeConfig::default();
        c.certificate(["a.example", "b.example"]);
        c.validate().unwrap();
        assert_eq!(c.certificates()[0].id(), "a.example");
        let err = |c: &AcmeConfig| c.validate().unwrap_err().to_string();
        c.lock_ttl(Duration::from_millis(500));
        assert!(err(&c).contains("lock_ttl 500ms"), "{}", err(&c));
        c.lock_ttl(DEFAULT_LOCK_TTL)
            .lock_wait(Duration::from_secs(90_000));
        assert!(err(&c).contains("lock_wait"), "{}", err(&c));
    }

    /// Wildcards only over DNS-01, which needs the update settings and
    /// names in their zone.
    #[test]
    fn dns01_validation() {
        let err = |c: &AcmeConfig| c.validate().unwrap_err().to_string();
        let wildcard = CertificateConfig::new(["*.apps.example.test", "apps.example.test"]).dns01();
        let mut c = AcmeConfig::default();
        c.certificate_config(wildcard.clone());
        assert!(
            err(&c).contains("needs the DNS update settings"),
            "{}",
            err(&c)
        );
        let dns = crate::DnsUpdateConfig::new(
            "127.0.0.1:53".parse().unwrap(),
            "example.test",
            "k",
            b"secret".to_vec(),
        );
        c.dns_update(dns.clone());
        c.validate().unwrap();
        assert_eq!(c.certificates()[0].id(), "_.apps.example.test");
        c.certificate_config(CertificateConfig::new(["www.other.test"]).dns01());
        assert!(
            err(&c).contains("not in the DNS-01 zone example.test"),
            "{}",
            err(&c)
        );
        let mut c = AcmeConfig::default();
        c.dns_update(dns).certificate(["*.example.test"]);
        assert!(
            err(&c).contains("HTTP-01 cannot validate wildcard"),
            "{}",
            err(&c)
        );
    }
}
