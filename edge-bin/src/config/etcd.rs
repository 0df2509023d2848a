//! `[etcd]`: the etcd cluster a fleet shares its state in (ACME storage and
//! locks, TLS ticket keys, server admin states). A pair uses `[peer]` and
//! a storage directory instead; the two do not mix.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::Validator;
use super::duration::ConfigDuration;

/// The key prefix unless `prefix` says.
pub(super) const DEFAULT_PREFIX: &str = "/edge/";
const DEFAULT_DIAL_TIMEOUT: Duration = Duration::from_secs(2);
const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(3);

/// `[etcd]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EtcdFile {
    /// Client URLs of the members: `http://HOST:PORT` or `https://HOST:PORT`.
    pub endpoints: Spanned<Vec<Spanned<String>>>,
    /// Every key edge writes starts with it; default `/edge/`.
    pub prefix: Option<Spanned<String>>,
    /// This node's name in locks and admin stamps; default the host name.
    pub node_name: Option<Spanned<String>>,
    /// Connecting to a member; default 2s.
    pub dial_timeout: Option<Spanned<ConfigDuration>>,
    /// One request; default 3s.
    pub request_timeout: Option<Spanned<ConfigDuration>>,
    /// CA file (PEM) for `https://` endpoints.
    pub ca_file: Option<Spanned<String>>,
    /// Client certificate and key (PEM), when etcd asks for one.
    pub cert_file: Option<Spanned<String>>,
    pub key_file: Option<Spanned<String>>,
}

/// `[etcd]`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdSettings {
    pub endpoints: Vec<String>,
    /// Ends with `/`.
    pub prefix: String,
    pub node_name: String,
    pub dial_timeout: Duration,
    pub request_timeout: Duration,
    pub ca_file: Option<PathBuf>,
    /// Certificate and key files.
    pub client_cert: Option<(PathBuf, PathBuf)>,
}

/// The host name (`/proc/sys/kernel/hostname`), or `edge`.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "edge".to_owned())
}

fn endpoint_error(s: &str) -> Option<&'static str> {
    let Ok(uri) = s.parse::<http::Uri>() else {
        return Some("not a URL");
    };
    if !matches!(uri.scheme_str(), Some("http" | "https")) {
        return Some("the scheme must be http:// or https://");
    }
    let Some(a) = uri.authority() else {
        return Some("no host");
    };
    if a.port_u16().is_none() {
        return Some("no port (etcd's client port is usually 2379)");
    }
    if uri.path() != "/" && !uri.path().is_empty() {
        return Some("no path allowed");
    }
    None
}

impl Validator<'_> {
    pub(super) fn etcd(&mut self, e: Option<&EtcdFile>) -> Option<EtcdSettings> {
        let e = e?;
        let n = self.errors.len();
        let mut endpoints = Vec::new();
        if e.endpoints.get_ref().is_empty() {
            self.err(&e.endpoints, "etcd.endpoints", "at least one endpoint");
        }
        for (i, s) in e.endpoints.get_ref().iter().enumerate() {
            match endpoint_error(s.get_ref()) {
                Some(why) => self.err(
                    s,
                    format!("etcd.endpoints[{i}]"),
                    format!("invalid etcd endpoint {:?}: {why}", s.get_ref()),
                ),
                None => endpoints.push(s.get_ref().trim_end_matches('/').to_owned()),
            }
        }
        let tls = endpoints.iter().any(|u| u.starts_with("https://"));
        if tls && endpoints.iter().any(|u| u.starts_with("http://")) {
            self.err(
                &e.endpoints,
                "etcd.endpoints",
                "mixes http:// and https:// endpoints",
            );
        }
        let mut prefix = e
            .prefix
            .as_ref()
            .map_or(DEFAULT_PREFIX.to_owned(), |p| p.get_ref().clone());
        if let Some(p) = &e.prefix
            && (!prefix.starts_with('/') || prefix.chars().any(|c| c.is_whitespace()))
        {
            self.err(
                p,
                "etcd.prefix",
                "the prefix must start with '/' and hold no spaces, e.g. \"/edge/\"",
            );
        }
        if !prefix.ends_with('/') {
            prefix.push('/');
        }
        let node_name = e
            .node_name
            .as_ref()
            .map_or_else(host_name, |s| s.get_ref().clone());
        if let Some(s) = &e.node_name
            && (node_name.is_empty() || node_name.len() > 128 || node_name.contains('/'))
        {
            self.err(
                s,
                "etcd.node_name",
                "1 to 128 characters, no '/' (it names this node's locks)",
            );
        }
        let mut timeout = |t: &Option<Spanned<ConfigDuration>>, key: &str, default| match t {
            Some(t) if t.get_ref().0.is_zero() => {
                self.err(t, key, "must be more than 0s");
                default
            }
            Some(t) => t.get_ref().0,
            None => default,
        };
        let dial_timeout = timeout(&e.dial_timeout, "etcd.dial_timeout", DEFAULT_DIAL_TIMEOUT);
        let request_timeout = timeout(
            &e.request_timeout,
            "etcd.request_timeout",
            DEFAULT_REQUEST_TIMEOUT,
        );
        let ca_file = e.ca_file.as_ref().and_then(|f| {
            let path = self.path(f.get_ref());
            match crate::certs::pem_certificates(&path, "CA file") {
                Ok(_) => Some(path),
                Err(err) => {
                    self.err(f, "etcd.ca_file", err);
                    None
                }
            }
        });
        if tls && ca_file.is_none() && e.ca_file.is_none() {
            self.err(
                &e.endpoints,
                "etcd.ca_file",
                "https:// endpoints need ca_file (the CA of etcd's certificates)",
            );
        }
        let client_cert = match (&e.cert_file, &e.key_file) {
            (Some(c), Some(k)) => {
                let (cp, kp) = (self.path(c.get_ref()), self.path(k.get_ref()));
                match crate::certs::load_pair(&cp, &kp) {
                    Ok(_) => Some((cp, kp)),
                    Err(err) => {
                        self.err(c, "etcd.cert_file", err.to_string());
                        None
                    }
                }
            }
            (None, None) => None,
            (Some(s), None) | (None, Some(s)) => {
                self.err(s, "etcd", "cert_file and key_file go together");
                None
            }
        };
        if (ca_file.is_some() || client_cert.is_some()) && !tls && !endpoints.is_empty() {
            self.err(
                &e.endpoints,
                "etcd.endpoints",
                "ca_file, cert_file and key_file need https:// endpoints",
            );
        }
        (self.errors.len() == n).then_some(EtcdSettings {
            endpoints,
            prefix,
            node_name,
            dial_timeout,
            request_timeout,
            ca_file,
            client_cert,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::{Source, load_str};

    const BASE: &str = "[https]\nlisten = [\"127.0.0.1:8443\"]\n[[certificate]]\nname = \"l\"\nnames = [\"localhost\"]\nself_signed = true\n[[route]]\nrespond = { status = 200, body = \"hi\" }\n";

    fn load(extra: &str) -> Result<crate::config::Validated, String> {
        let text = format!("{BASE}{extra}");
        load_str(Source::new(Path::new("t.toml"), text), Path::new("/")).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_and_values() {
        let v = load(
            "[etcd]\nendpoints = [\"http://198.18.0.1:2379/\", \"http://[2001:2::1]:2379\"]\n",
        )
        .unwrap();
        let e = v.etcd.unwrap();
        assert_eq!(
            e.endpoints,
            ["http://198.18.0.1:2379", "http://[2001:2::1]:2379"]
        );
        assert_eq!(e.prefix, "/edge/");
        assert!(!e.node_name.is_empty());
        assert_eq!(e.dial_timeout, DEFAULT_DIAL_TIMEOUT);
        assert_eq!(e.request_timeout, DEFAULT_REQUEST_TIMEOUT);
        let v = load("[etcd]\nendpoints = [\"http://e1:2379\"]\nprefix = \"/fleet/a\"\nnode_name = \"n1\"\nrequest_timeout = \"500ms\"\n")
            .unwrap();
        let e = v.etcd.unwrap();
        assert_eq!(
            (e.prefix.as_str(), e.node_name.as_str()),
            ("/fleet/a/", "n1")
        );
        assert_eq!(e.request_timeout, Duration::from_millis(500));
        assert!(load("").unwrap().etcd.is_none());
    }

    #[test]
    fn mistakes_are_refused() {
        for (extra, says) in [
            ("endpoints = []", "at least one endpoint"),
            ("endpoints = [\"198.18.0.1:2379\"]", "etcd.endpoints[0]"),
            ("endpoints = [\"http://e1\"]", "no port"),
            ("endpoints = [\"ftp://e1:2379\"]", "scheme"),
            ("endpoints = [\"http://e1:2379/v3\"]", "no path"),
            ("endpoints = [\"https://e1:2379\"]", "need ca_file"),
            (
                "endpoints = [\"http://e1:2379\", \"https://e2:2379\"]",
                "mixes",
            ),
            (
                "endpoints = [\"http://e1:2379\"]\nprefix = \"edge\"",
                "etcd.prefix",
            ),
            (
                "endpoints = [\"http://e1:2379\"]\nnode_name = \"a/b\"",
                "etcd.node_name",
            ),
            (
                "endpoints = [\"http://e1:2379\"]\ndial_timeout = \"0s\"",
                "etcd.dial_timeout",
            ),
            (
                "endpoints = [\"http://e1:2379\"]\ncert_file = \"c.pem\"",
                "go together",
            ),
            (
                "endpoints = [\"http://e1:2379\"]\nca_file = \"/nonexistent.pem\"",
                "etcd.ca_file",
            ),
            (
                "endpoints = [\"http://e1:2379\"]\nttl = \"1s\"",
                "unknown field",
            ),
        ] {
            let err = load(&format!("[etcd]\n{extra}\n")).unwrap_err();
            assert!(err.contains(says), "{extra:?}: {err}");
        }
    }

    #[test]
    fn a_fleet_does_not_use_the_peer_link() {
        let err = load("[etcd]\nendpoints = [\"http://e1:2379\"]\n[peer]\nlisten = \"127.0.0.1:1\"\naddress = \"127.0.0.1:2\"\ncredentials = \"/nonexistent\"\n")
            .unwrap_err();
        assert!(err.contains("[etcd] and [peer]"), "{err}");
    }

    #[test]
    fn acme_certificates_need_no_directory_with_etcd() {
        let acme = "[acme]\ncertificates = [[\"a.example\"]]\n";
        assert!(load(acme).unwrap_err().contains("acme.storage"));
        let v = load(&format!("{acme}[etcd]\nendpoints = [\"http://e1:2379\"]\n")).unwrap();
        assert!(v.acme.storage.is_none() && v.etcd.is_some());
    }
}
