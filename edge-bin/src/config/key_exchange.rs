//! `[https] post_quantum` and `key_exchange_groups`: the TLS key exchange
//! groups the server accepts. They are rustls' aws-lc-rs groups; the hybrid
//! post-quantum X25519MLKEM768 is on by default, the classical groups stay
//! for clients without ML-KEM (OpenSSL 3.0, TLS 1.2).

use std::fmt;
use std::str::FromStr;

use super::{ConfigError, Validator, model};
use rustls::crypto::SupportedKxGroup;
use rustls::crypto::aws_lc_rs::kx_group;

/// A key exchange group edge's TLS server can accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyExchangeGroup {
    /// X25519 with ML-KEM-768: hybrid post-quantum, TLS 1.3 only (what
    /// Chromium and Firefox offer first).
    X25519MlKem768,
    /// P-256 with ML-KEM-768: hybrid post-quantum, TLS 1.3 only.
    Secp256r1MlKem768,
    /// X25519 (classical).
    X25519,
    /// NIST P-256 (classical).
    Secp256r1,
    /// NIST P-384 (classical).
    Secp384r1,
}

/// Every group with the names the config accepts for it (any case), the
/// canonical IANA name first.
const NAMES: [(KeyExchangeGroup, &[&str]); 5] = [
    (KeyExchangeGroup::X25519MlKem768, &["X25519MLKEM768"]),
    (KeyExchangeGroup::Secp256r1MlKem768, &["SecP256r1MLKEM768"]),
    (KeyExchangeGroup::X25519, &["x25519"]),
    (KeyExchangeGroup::Secp256r1, &["secp256r1", "P-256"]),
    (KeyExchangeGroup::Secp384r1, &["secp384r1", "P-384"]),
];

impl KeyExchangeGroup {
    /// The groups accepted when the config names none: the hybrid
    /// post-quantum group, then the classical ones. The server takes the
    /// first of the client's groups that is on the list (a client that
    /// offers X25519MLKEM768 first, as browsers do, gets it).
    pub const DEFAULT: [Self; 4] = [
        Self::X25519MlKem768,
        Self::X25519,
        Self::Secp256r1,
        Self::Secp384r1,
    ];

    /// The IANA name, as `openssl s_client` and the config write it.
    pub fn name(self) -> &'static str {
        NAMES
            .iter()
            .find(|(g, _)| *g == self)
            .map_or("", |(_, names)| names[0])
    }

    /// Whether the group is a post-quantum hybrid.
    pub fn is_post_quantum(self) -> bool {
        matches!(self, Self::X25519MlKem768 | Self::Secp256r1MlKem768)
    }

    /// The rustls group (aws-lc-rs provider).
    pub fn rustls(self) -> &'static dyn SupportedKxGroup {
        match self {
            Self::X25519MlKem768 => kx_group::X25519MLKEM768,
            Self::Secp256r1MlKem768 => kx_group::SECP256R1MLKEM768,
            Self::X25519 => kx_group::X25519,
            Self::Secp256r1 => kx_group::SECP256R1,
            Self::Secp384r1 => kx_group::SECP384R1,
        }
    }
}

impl fmt::Display for KeyExchangeGroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for KeyExchangeGroup {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        NAMES
            .iter()
            .find(|(_, names)| names.iter().any(|n| n.eq_ignore_ascii_case(s)))
            .map(|(g, _)| *g)
            .ok_or_else(|| {
                let known: Vec<&str> = NAMES.iter().map(|(_, names)| names[0]).collect();
                format!(
                    "unknown key exchange group {s:?} (known: {})",
                    known.join(", ")
                )
            })
    }
}

impl Validator<'_> {
    /// `[https] post_quantum` and `key_exchange_groups`: the groups the
    /// server accepts.
    pub(super) fn key_exchange(&mut self, h: &model::Https) -> Vec<KeyExchangeGroup> {
        let post_quantum = h.post_quantum;
        let Some(list) = &h.key_exchange_groups else {
            return KeyExchangeGroup::DEFAULT
                .into_iter()
                .filter(|g| post_quantum || !g.is_post_quantum())
                .collect();
        };
        let mut out = Vec::new();
        for (i, s) in list.get_ref().iter().enumerate() {
            let key = format!("https.key_exchange_groups[{i}]");
            match s.get_ref().parse::<KeyExchangeGroup>() {
                Err(e) => self.err(s, key, e),
                Ok(g) if out.contains(&g) => self.err(s, key, format!("{g} is listed twice")),
                Ok(g) if g.is_post_quantum() && !post_quantum => self.err(
                    s,
                    key,
                    format!("{g} is a post-quantum group, and post_quantum = false"),
                ),
                Ok(g) => out.push(g),
            }
        }
        if list.get_ref().is_empty() {
            self.err(
                list,
                "https.key_exchange_groups",
                "no group: no TLS handshake could complete (leave the key out for the default list)",
            );
        }
        out
    }

    /// A warning when `key_exchange_groups` has no classical group: clients
    /// without ML-KEM (OpenSSL 3.0, every TLS 1.2 client) cannot connect.
    pub(super) fn key_exchange_warnings(
        &self,
        h: &model::Https,
        groups: &[KeyExchangeGroup],
    ) -> Vec<ConfigError> {
        match &h.key_exchange_groups {
            Some(list) if !groups.is_empty() && groups.iter().all(|g| g.is_post_quantum()) => {
                vec![self.src.error(
                    list.span(),
                    "https.key_exchange_groups",
                    "only post-quantum groups: clients without ML-KEM (OpenSSL 3.0, curl and HAProxy linked to it, any TLS 1.2 client) cannot connect; add \"x25519\"",
                )]
            }
            _ => Vec::new(),
        }
    }
}

/// Only the config text: what `[https]` makes of it.
#[cfg(test)]
mod tests {
    use super::KeyExchangeGroup as G;
    use crate::config::{Source, load_str};

    fn load(https: &str) -> Result<crate::config::Validated, String> {
        let text = format!(
            "[https]\nlisten = [\"127.0.0.1:0\"]\n{https}\n\n[http]\nlisten = []\n\n[[demo_backend]]\nlisten = \"127.0.0.1:0\"\n"
        );
        load_str(Source::new("t.toml".as_ref(), text), ".".as_ref()).map_err(|e| e.to_string())
    }

    #[test]
    fn post_quantum_is_on_by_default_and_can_be_turned_off() {
        assert_eq!(load("").unwrap().https.key_exchange, G::DEFAULT);
        let off = load("post_quantum = false").unwrap().https.key_exchange;
        assert_eq!(off, [G::X25519, G::Secp256r1, G::Secp384r1]);
    }

    #[test]
    fn groups_by_name() {
        let v = load("key_exchange_groups = [\"x25519\", \"X25519MLKEM768\", \"P-256\"]").unwrap();
        assert_eq!(
            v.https.key_exchange,
            [G::X25519, G::X25519MlKem768, G::Secp256r1]
        );
        assert!(v.warnings.is_empty());
        let e = load("key_exchange_groups = [\"ffdhe2048\"]").unwrap_err();
        assert!(
            e.contains("unknown key exchange group \"ffdhe2048\""),
            "{e}"
        );
        let e = load("key_exchange_groups = []").unwrap_err();
        assert!(e.contains("no group"), "{e}");
        let e = load("key_exchange_groups = [\"x25519\", \"X25519\"]").unwrap_err();
        assert!(e.contains("listed twice"), "{e}");
    }

    #[test]
    fn a_post_quantum_group_with_post_quantum_off_is_refused() {
        let e =
            load("post_quantum = false\nkey_exchange_groups = [\"X25519MLKEM768\"]").unwrap_err();
        assert!(e.contains("post_quantum = false"), "{e}");
    }

    #[test]
    fn only_post_quantum_groups_warn() {
        let v = load("key_exchange_groups = [\"X25519MLKEM768\"]").unwrap();
        assert_eq!(v.warnings.len(), 1);
        assert!(v.warnings[0].to_string().contains("OpenSSL 3.0"));
    }
}
