//! `[acme]`: the storage directory, the CA, the peer node, the certificates
//! to obtain and the storage lock's timing.

use std::time::Duration;

use super::{HostPattern, Validator, host_error, model};

/// `[acme]`, validated.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AcmeSettings {
    pub storage: Option<std::path::PathBuf>,
    pub directory_url: Option<String>,
    pub contact: Vec<String>,
    pub ca_roots: Vec<rustls_pki_types::CertificateDer<'static>>,
    pub peer: Option<http::Uri>,
    pub certificates: Vec<Vec<String>>,
    /// The challenge of each of `certificates`, in the same order.
    pub challenges: Vec<edge_acme::Challenge>,
    /// The key types of each of `certificates` (one certificate each), in
    /// the same order.
    pub key_types: Vec<Vec<edge_acme::KeyType>>,
    /// `[acme.dns]`: where DNS-01 certificates publish their TXT records.
    pub dns: Option<edge_acme::DnsUpdateConfig>,
    /// `lock_ttl` / `lock_wait`; `None`: edge-acme's defaults (30 s, 10 min).
    pub lock_ttl: Option<std::time::Duration>,
    pub lock_wait: Option<std::time::Duration>,
}

impl Validator<'_> {
    /// `etcd`: `[etcd]` is present (it is the storage then).
    pub(super) fn acme(&mut self, a: &model::Acme, etcd: bool) -> AcmeSettings {
        let mut out = AcmeSettings {
            storage: a.storage.as_ref().map(|s| self.path(s.get_ref())),
            directory_url: a.directory_url.as_ref().map(|u| u.get_ref().clone()),
            contact: a.contact.clone(),
            ..Default::default()
        };
        if let Some(u) = a
            .directory_url
            .as_ref()
            .filter(|u| !u.get_ref().starts_with("https://"))
        {
            self.err(
                u,
                "acme.directory_url",
                "the ACME directory must be an https:// URL",
            );
        }
        for (i, r) in a.ca_roots.iter().enumerate() {
            let path = self.path(r.get_ref());
            match crate::certs::pem_certificates(&path, "CA file") {
                Ok(certs) => out.ca_roots.extend(certs),
                Err(e) => self.err(r, format!("acme.ca_roots[{i}]"), e),
            }
        }
        if let Some(p) = &a.peer {
            match p.get_ref().parse::<http::Uri>() {
                Ok(u) if u.scheme_str() == Some("http") && u.authority().is_some() => {
                    out.peer = Some(u)
                }
                _ => self.err(
                    p,
                    "acme.peer",
                    "expected an http:// URL such as \"http://10.0.0.2:80\"",
                ),
            }
        }
        out.dns = a.dns.as_ref().and_then(|d| self.acme_dns(d));
        for (i, c) in a.certificates.iter().enumerate() {
            self.acme_certificate(a, c, &format!("acme.certificates[{i}]"), &mut out);
        }
        self.acme_locks(a, &mut out);
        if !a.certificates.is_empty() && a.storage.is_none() && !etcd {
            self.errors.push(self.src.error(
                0..0,
                "acme.storage",
                "automatic certificates need a storage directory (or [etcd])",
            ));
        }
        out
    }

    /// One `[acme] certificates` entry: its names and challenge; wildcards
    /// only over DNS-01, whose names must be in `[acme.dns] zone`.
    fn acme_certificate(
        &mut self,
        a: &model::Acme,
        c: &toml::Spanned<super::acme_dns::AcmeCertificate>,
        key: &str,
        out: &mut AcmeSettings,
    ) {
        let entry = c.get_ref();
        if entry.names.is_empty() {
            self.err(c, key, "a certificate needs at least one name");
        }
        let challenge = match entry.challenge.as_deref() {
            None | Some("http-01") => edge_acme::Challenge::Http01,
            Some("dns-01") => edge_acme::Challenge::Dns01,
            Some(other) => {
                self.err(
                    c,
                    key,
                    format!("unknown challenge {other:?} (expected \"http-01\" or \"dns-01\")"),
                );
                edge_acme::Challenge::Http01
            }
        };
        let dns01 = challenge == edge_acme::Challenge::Dns01;
        if dns01 && a.dns.is_none() {
            self.err(
                c,
                key,
                "challenge = \"dns-01\" needs an [acme.dns] table (server, zone, TSIG key)",
            );
        }
        for n in &entry.names {
            match n.parse::<HostPattern>() {
                Err(e) => self.err(c, key, host_error(n, e)),
                Ok(p) if p.is_wildcard() && !dns01 => self.err(
                    c,
                    key,
                    format!("{n:?}: HTTP-01 cannot validate wildcard names (use challenge = \"dns-01\" with [acme.dns], or serve it from a [[certificate]])"),
                ),
                Ok(_) => {
                    if let Some(dns) = out.dns.as_ref().filter(|_| dns01)
                        && !dns.covers(n)
                    {
                        self.err(
                            c,
                            key,
                            format!("{n:?} is not in the [acme.dns] zone {:?}", dns.zone),
                        );
                    }
                }
            }
        }
        let key_types = self.acme_key_types(c, key);
        out.certificates.push(entry.names.clone());
        out.challenges.push(challenge);
        out.key_types.push(key_types);
    }

    /// `key_types` of an `[acme] certificates` entry: `"ecdsa"` (P-256)
    /// and `"rsa"` (2048 bits), each at most once; default `["ecdsa"]`.
    fn acme_key_types(
        &mut self,
        c: &toml::Spanned<super::acme_dns::AcmeCertificate>,
        key: &str,
    ) -> Vec<edge_acme::KeyType> {
        let Some(list) = &c.get_ref().key_types else {
            return vec![edge_acme::KeyType::EcdsaP256];
        };
        let mut out = Vec::new();
        for (i, t) in list.iter().enumerate() {
            let kt = match t.as_str() {
                "ecdsa" => edge_acme::KeyType::EcdsaP256,
                "rsa" => edge_acme::KeyType::Rsa2048,
                other => {
                    self.err(
                        c,
                        format!("{key}.key_types[{i}]"),
                        format!("unknown key type {other:?} (expected \"ecdsa\" or \"rsa\")"),
                    );
                    continue;
                }
            };
            if out.contains(&kt) {
                self.err(
                    c,
                    format!("{key}.key_types[{i}]"),
                    format!("{t:?} is listed twice"),
                );
            }
            out.push(kt);
        }
        if list.is_empty() {
            self.err(
                c,
                format!("{key}.key_types"),
                "no key type (\"ecdsa\", \"rsa\"; leave the key out for [\"ecdsa\"])",
            );
        }
        out
    }

    /// `[acme] lock_ttl` and `lock_wait`: the lock is refreshed every third of
    /// its TTL, so a TTL under 5 s would expire on a slow shared filesystem;
    /// the wait must outlast a crashed holder's lock.
    fn acme_locks(&mut self, a: &model::Acme, out: &mut AcmeSettings) {
        const TTL: (Duration, Duration) = (Duration::from_secs(5), Duration::from_secs(3600));
        const MAX_WAIT: Duration = Duration::from_secs(86_400);
        if let Some(t) = &a.lock_ttl {
            let ttl = t.get_ref().0;
            if ttl < TTL.0 || ttl > TTL.1 {
                self.err(
                    t,
                    "acme.lock_ttl",
                    format!("lock_ttl must be between 5s and 1h (got {ttl:?})"),
                );
            } else {
                out.lock_ttl = Some(ttl);
            }
        }
        if let Some(w) = &a.lock_wait {
            let wait = w.get_ref().0;
            // A lock_ttl refused above is not compared with.
            let ttl = match (&a.lock_ttl, out.lock_ttl) {
                (Some(_), None) => Duration::ZERO,
                (_, ttl) => ttl.unwrap_or(edge_acme::DEFAULT_LOCK_TTL),
            };
            if wait < ttl || wait > MAX_WAIT {
                self.err(
                    w,
                    "acme.lock_wait",
                    format!("lock_wait must be at least lock_ttl ({ttl:?}), so a crashed node's lock is waited out, and at most 24h (got {wait:?})"),
                );
            } else {
                out.lock_wait = Some(wait);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::{Source, load_str};

    fn load(ca_roots: &Path) -> Result<usize, String> {
        let text = format!(
            "[http]\nlisten = [\"127.0.0.1:8080\"]\n[acme]\nstorage = \"/tmp/acme\"\n\
             ca_roots = [{:?}]\n[[route]]\nrespond = {{ status = 200 }}\n",
            ca_roots.display().to_string()
        );
        load_str(Source::new(Path::new("t.toml"), text), Path::new("/"))
            .map(|v| v.acme.ca_roots.len())
            .map_err(|e| e.to_string())
    }

    #[test]
    fn ca_roots_errors_say_what_is_wrong_with_which_file() {
        let dir = std::env::temp_dir().join(format!("edge-acme-roots-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ca = rcgen::generate_simple_self_signed(vec!["ca".into()]).unwrap();
        let write = |name: &str, text: &str| {
            let p = dir.join(name);
            std::fs::write(&p, text).unwrap();
            p
        };
        let pem = ca.cert.pem();
        let good = write("ca.pem", &format!("{pem}{pem}"));
        assert_eq!(load(&good), Ok(2));
        let cases = [
            (dir.join("absent.pem"), "cannot read CA file"),
            (
                write("key.pem", &ca.signing_key.serialize_pem()),
                "no CERTIFICATE block in",
            ),
            (write("cut.pem", &pem[..pem.len() - 30]), "invalid PEM in"),
        ];
        for (path, want) in cases {
            let e = load(&path).unwrap_err();
            assert!(e.contains("acme.ca_roots[0]"), "{e}");
            assert!(
                e.contains(want) && e.contains(&path.display().to_string()),
                "{e}"
            );
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
