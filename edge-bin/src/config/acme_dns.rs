//! `[acme]` DNS-01: the `challenge` of a certificate entry and the
//! `[acme.dns]` table (the zone's primary server, accepting RFC 2136
//! updates signed with a TSIG key).

use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use toml::Spanned;

use super::Validator;
use super::duration::ConfigDuration;

/// One `[acme] certificates` entry: a list of names (HTTP-01), or a table
/// `{ names = [...], challenge = "dns-01", key_types = ["ecdsa", "rsa"] }`.
#[derive(Debug, Clone, Default)]
pub struct AcmeCertificate {
    pub names: Vec<String>,
    pub challenge: Option<String>,
    /// `"ecdsa"`, `"rsa"`: one certificate of each; default `["ecdsa"]`.
    pub key_types: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AcmeCertificateTable {
    names: Vec<String>,
    challenge: Option<String>,
    key_types: Option<Vec<String>>,
}

impl<'de> Deserialize<'de> for AcmeCertificate {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = AcmeCertificate;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a list of names, or a table { names = [...], challenge = \"dns-01\" }")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
                let names = Vec::deserialize(de::value::SeqAccessDeserializer::new(seq))?;
                Ok(AcmeCertificate {
                    names,
                    ..Default::default()
                })
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                let t =
                    AcmeCertificateTable::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(AcmeCertificate {
                    names: t.names,
                    challenge: t.challenge,
                    key_types: t.key_types,
                })
            }
        }
        d.deserialize_any(V)
    }
}

/// `[acme.dns]`: where DNS-01 certificates publish their TXT records.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AcmeDns {
    /// The zone's primary server, `IP` or `IP:PORT` (port 53 by default).
    pub server: Spanned<String>,
    /// The zone updated; every DNS-01 name must be in it.
    pub zone: Spanned<String>,
    /// The TSIG key's name.
    pub tsig_key: Spanned<String>,
    /// Default `hmac-sha256`.
    pub tsig_algorithm: Option<Spanned<String>>,
    /// The TSIG secret in base64 (or `tsig_secret_file`).
    pub tsig_secret: Option<Spanned<String>>,
    /// A file holding the base64 secret.
    pub tsig_secret_file: Option<Spanned<String>>,
    /// The zone's servers to look the record up on; default `[server]`.
    #[serde(default)]
    pub check_servers: Vec<Spanned<String>>,
    /// Also wait for the servers the zone's NS records name; default false.
    #[serde(default)]
    pub check_ns: bool,
    /// Default 2m.
    pub propagation_timeout: Option<Spanned<ConfigDuration>>,
    /// TTL of the TXT records in seconds; default 60.
    pub ttl: Option<Spanned<i64>>,
}

/// A DNS server address: `IP:PORT`, or an IP meaning port 53.
fn dns_addr(s: &str) -> Option<SocketAddr> {
    s.parse::<SocketAddr>()
        .ok()
        .or_else(|| s.parse::<std::net::IpAddr>().ok().map(|ip| (ip, 53).into()))
}

fn decode_secret(text: &str) -> Result<Vec<u8>, String> {
    use base64::Engine as _;
    let compact: String = text.split_whitespace().collect();
    match base64::engine::general_purpose::STANDARD.decode(compact) {
        Ok(secret) if !secret.is_empty() => Ok(secret),
        Ok(_) => Err("the TSIG secret is empty".into()),
        Err(e) => Err(format!("the TSIG secret is not base64: {e}")),
    }
}

impl Validator<'_> {
    /// `[acme.dns]`, validated into edge-acme's settings.
    pub(super) fn acme_dns(&mut self, d: &Spanned<AcmeDns>) -> Option<edge_acme::DnsUpdateConfig> {
        let dns = d.get_ref();
        let addr = |v: &mut Self, s: &Spanned<String>, key: &str| {
            let a = dns_addr(s.get_ref());
            if a.is_none() {
                v.err(
                    s,
                    key,
                    format!(
                        "invalid address {:?}: expected IP or IP:PORT, e.g. \"127.0.0.1:53\"",
                        s.get_ref()
                    ),
                );
            }
            a
        };
        let server = addr(self, &dns.server, "acme.dns.server");
        let check: Vec<_> = dns
            .check_servers
            .iter()
            .enumerate()
            .map(|(i, s)| addr(self, s, &format!("acme.dns.check_servers[{i}]")))
            .collect();
        let zone = dns.zone.get_ref().trim_end_matches('.');
        if zone.parse::<super::HostPattern>().is_err() {
            self.err(
                &dns.zone,
                "acme.dns.zone",
                format!("{zone:?} is not a zone name"),
            );
        }
        let algorithm = match &dns.tsig_algorithm {
            None => Some(edge_acme::TsigAlgorithm::default()),
            Some(a) => match a.get_ref().parse() {
                Ok(a) => Some(a),
                Err(e) => {
                    self.err(a, "acme.dns.tsig_algorithm", e);
                    None
                }
            },
        };
        let secret = match (&dns.tsig_secret, &dns.tsig_secret_file) {
            (Some(s), None) => decode_secret(s.get_ref())
                .map_err(|e| self.err(s, "acme.dns.tsig_secret", e))
                .ok(),
            (None, Some(f)) => {
                let path = self.path(f.get_ref());
                std::fs::read_to_string(&path)
                    .map_err(|e| format!("cannot read {}: {e}", path.display()))
                    .and_then(|t| decode_secret(&t))
                    .map_err(|e| self.err(f, "acme.dns.tsig_secret_file", e))
                    .ok()
            }
            _ => {
                self.err(
                    d,
                    "acme.dns",
                    "set exactly one of tsig_secret (base64) and tsig_secret_file",
                );
                None
            }
        };
        let propagation = match &dns.propagation_timeout {
            None => edge_acme::DEFAULT_PROPAGATION_TIMEOUT,
            Some(t)
                if (Duration::from_secs(1)..=Duration::from_secs(3600))
                    .contains(&t.get_ref().0) =>
            {
                t.get_ref().0
            }
            Some(t) => {
                self.err(
                    t,
                    "acme.dns.propagation_timeout",
                    "must be between 1s and 1h",
                );
                edge_acme::DEFAULT_PROPAGATION_TIMEOUT
            }
        };
        let ttl = match &dns.ttl {
            None => 60,
            Some(t) => u32::try_from(*t.get_ref())
                .ok()
                .filter(|t| (1..=86_400).contains(t))
                .unwrap_or_else(|| {
                    self.err(t, "acme.dns.ttl", "must be between 1 and 86400 seconds");
                    60
                }),
        };
        let mut out =
            edge_acme::DnsUpdateConfig::new(server?, zone, dns.tsig_key.get_ref().clone(), secret?);
        out.tsig_algorithm = algorithm?;
        out.check_servers = check.into_iter().collect::<Option<_>>()?;
        out.propagation_timeout = propagation;
        out.check_ns = dns.check_ns;
        out.ttl = ttl;
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::{AcmeSettings, Source, load_str};

    const BASE: &str = "[http]\nlisten = [\"127.0.0.1:8080\"]\n[[route]]\nrespond = { status = 200 }\n[acme]\nstorage = \"/tmp/acme\"\n";
    const DNS: &str = "[acme.dns]\nserver = \"127.0.0.1:5353\"\nzone = \"example.test.\"\ntsig_key = \"acme\"\ntsig_secret = \"c2VjcmV0IGtleSBvZiAzMiBieXRlcyBmb3IgdGhlIHRlc3Q=\"\n";

    fn load(text: &str) -> Result<AcmeSettings, String> {
        load_str(
            Source::new(Path::new("t.toml"), text.to_owned()),
            Path::new("/"),
        )
        .map(|v| v.acme)
        .map_err(|e| e.to_string())
    }

    #[test]
    fn dns01_certificates_and_the_dns_table() {
        let certs = "certificates = [[\"www.example.test\"], { names = [\"*.apps.example.test\", \"apps.example.test\"], challenge = \"dns-01\" }]\n";
        let a = load(&format!("{BASE}{certs}{DNS}")).unwrap();
        assert_eq!(a.certificates.len(), 2);
        assert_eq!(
            a.challenges,
            [edge_acme::Challenge::Http01, edge_acme::Challenge::Dns01]
        );
        let dns = a.dns.unwrap();
        assert_eq!(dns.server, "127.0.0.1:5353".parse().unwrap());
        assert_eq!(dns.zone, "example.test");
        assert_eq!(dns.tsig_algorithm, edge_acme::TsigAlgorithm::HmacSha256);
        assert_eq!(dns.tsig_secret, b"secret key of 32 bytes for the test");
        assert_eq!(
            dns.propagation_timeout,
            edge_acme::DEFAULT_PROPAGATION_TIMEOUT
        );
        assert_eq!(dns.ttl, 60);
        assert!(!dns.check_ns);
        let port53 = DNS.replace("127.0.0.1:5353", "127.0.0.2");
        let a = load(&format!("{BASE}{certs}{port53}check_servers = [\"127.0.0.3:54\"]\npropagation_timeout = \"30s\"\nttl = 5\ncheck_ns = true\ntsig_algorithm = \"hmac-sha512\"\n")).unwrap();
        let dns = a.dns.unwrap();
        assert_eq!(dns.server, "127.0.0.2:53".parse().unwrap());
        assert_eq!(dns.check_servers, ["127.0.0.3:54".parse().unwrap()]);
        assert_eq!(dns.ttl, 5);
        assert!(dns.check_ns);
        assert_eq!(dns.tsig_algorithm, edge_acme::TsigAlgorithm::HmacSha512);
    }

    /// The secret from a file (base64, a final newline ignored), relative
    /// to the config file's directory.
    #[test]
    fn the_secret_may_come_from_a_file() {
        let dir = std::env::temp_dir().join(format!("edge-tsig-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("tsig.key"), "c2VjcmV0\n").unwrap();
        let dns = DNS.replace(
            "tsig_secret = \"c2VjcmV0IGtleSBvZiAzMiBieXRlcyBmb3IgdGhlIHRlc3Q=\"",
            "tsig_secret_file = \"tsig.key\"",
        );
        let text = format!("{BASE}{dns}");
        let a = load_str(Source::new(&dir.join("t.toml"), text.clone()), &dir)
            .map(|v| v.acme)
            .unwrap();
        assert_eq!(a.dns.unwrap().tsig_secret, b"secret");
        let e = load(&text.replace("tsig.key", "absent.key")).unwrap_err();
        assert!(e.contains("acme.dns.tsig_secret_file: cannot read"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// `edge check` names the line and says what to do.
    #[test]
    fn dns01_errors_are_clear_with_their_line() {
        let cases = [
            (
                "certificates = [[\"*.apps.example.test\"]]\n",
                "HTTP-01 cannot validate wildcard names (use challenge = \"dns-01\"",
            ),
            (
                "certificates = [{ names = [\"*.apps.example.test\"], challenge = \"dns-01\" }]\n",
                "needs an [acme.dns] table",
            ),
            (
                "certificates = [{ names = [\"a.example.test\"], challenge = \"dns01\" }]\n",
                "unknown challenge \"dns01\"",
            ),
            (
                &format!(
                    "certificates = [{{ names = [\"a.other.test\"], challenge = \"dns-01\" }}]\n{DNS}"
                ),
                "\"a.other.test\" is not in the [acme.dns] zone \"example.test\"",
            ),
            (
                &format!(
                    "certificates = [{{ names = [\"a.example.test\"], challenge = \"dns-01\" }}]\n{}",
                    DNS.replace("c2Vj", "!!")
                ),
                "acme.dns.tsig_secret: the TSIG secret is not base64",
            ),
            (
                &format!(
                    "certificates = [{{ names = [\"a.example.test\"], challenge = \"dns-01\" }}]\n{}tsig_secret_file = \"/x\"\n",
                    DNS
                ),
                "set exactly one of tsig_secret",
            ),
            (
                &format!(
                    "certificates = [{{ names = [\"a.example.test\"], challenge = \"dns-01\" }}]\n{}",
                    DNS.replace("127.0.0.1:5353", "dns.example.test")
                ),
                "acme.dns.server: invalid address",
            ),
        ];
        for (extra, want) in cases {
            let e = load(&format!("{BASE}{extra}")).unwrap_err();
            assert!(e.contains(want), "{e}");
            let line = BASE.lines().count() + 1;
            if extra.starts_with("certificates")
                && !want.contains("tsig")
                && !want.contains("server")
            {
                assert!(e.starts_with(&format!("t.toml:{line}:")), "{e}");
            }
        }
    }
}
