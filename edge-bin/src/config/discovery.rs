//! Servers found by DNS: `[[pool.server]] address = "NAME:PORT"` (A and
//! AAAA) or `srv = "_SERVICE._PROTO.NAME"` (SRV), and the `[resolvers]`
//! table (name servers and re-resolution timing), as HAProxy's
//! `server-template` with `resolvers`.

use std::net::SocketAddr;
use std::time::Duration;

use edge_balance::discovery::{DiscoveryConfig, Source};
use toml::Spanned;

use super::Validator;
use super::duration::ConfigDuration;
use super::model;
use super::shapes::ResolversFile;

/// `[resolvers]`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolverSettings {
    /// Empty: the system's (`/etc/resolv.conf`).
    pub nameservers: Vec<SocketAddr>,
    /// One query's timeout (two attempts per name server).
    pub timeout: Duration,
    pub discovery: DiscoveryConfig,
}

/// A server of a pool found by DNS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Discover {
    pub source: Source,
    /// The configured weight; `None`: each SRV record's (or 1).
    pub weight: Option<u32>,
}

/// A `[[pool.server]]`, validated.
#[derive(Debug)]
pub(super) enum ServerEntry {
    Static(SocketAddr, u32),
    Dns(Discover),
}

/// Whether `name` is a DNS name edge can look up: dot-separated labels of
/// letters, digits, `-` and `_` (SRV's `_http._tcp`), each 1..=63 bytes, at
/// most 253 in all; a final dot is allowed.
fn valid_name(name: &str) -> bool {
    let n = name.strip_suffix('.').unwrap_or(name);
    !n.is_empty()
        && n.len() <= 253
        && n.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

impl Validator<'_> {
    /// `[resolvers]`.
    pub(super) fn resolvers(&mut self, r: &ResolversFile) -> ResolverSettings {
        let mut nameservers = Vec::new();
        for (i, s) in r.nameservers.iter().enumerate() {
            let text = s.get_ref();
            let parsed = text.parse::<SocketAddr>().ok().or_else(|| {
                text.parse::<std::net::IpAddr>()
                    .ok()
                    .map(|ip| SocketAddr::new(ip, 53))
            });
            match parsed {
                Some(a) => nameservers.push(a),
                None => self.err(
                    s,
                    format!("resolvers.nameservers[{i}]"),
                    format!("invalid name server {text:?}: expected IP or IP:PORT, e.g. \"10.0.0.53\" or \"[2001:db8::53]:53\""),
                ),
            }
        }
        let d = |s: &Spanned<ConfigDuration>| s.get_ref().0;
        for (key, v, min, max) in [
            (
                "timeout",
                &r.timeout,
                Duration::from_millis(100),
                Duration::from_secs(30),
            ),
            (
                "min_ttl",
                &r.min_ttl,
                Duration::from_millis(100),
                Duration::from_secs(3600),
            ),
            (
                "max_ttl",
                &r.max_ttl,
                Duration::from_secs(1),
                Duration::from_secs(86_400),
            ),
            (
                "retry",
                &r.retry,
                Duration::from_millis(100),
                Duration::from_secs(3600),
            ),
            ("hold", &r.hold, Duration::ZERO, Duration::from_secs(86_400)),
        ] {
            if d(v) < min || d(v) > max {
                self.err(
                    v,
                    format!("resolvers.{key}"),
                    format!("must be {min:?}..={max:?}"),
                );
            }
        }
        if d(&r.min_ttl) > d(&r.max_ttl) {
            self.err(&r.min_ttl, "resolvers.min_ttl", "must not exceed max_ttl");
        }
        ResolverSettings {
            nameservers,
            timeout: d(&r.timeout),
            discovery: DiscoveryConfig::default()
                .min_ttl(d(&r.min_ttl))
                .max_ttl(d(&r.max_ttl))
                .retry(d(&r.retry))
                .hold(d(&r.hold)),
        }
    }

    /// One `[[pool.server]]`: a literal `IP:PORT`, a `NAME:PORT`, or `srv`.
    pub(super) fn server_entry(&mut self, s: &model::Server, key: &str) -> Option<ServerEntry> {
        let weight = *s.weight.get_ref();
        // The default weight has an empty span: SRV weights apply then.
        let explicit = s.weight.span().end > 0;
        match (&s.address, &s.srv) {
            (Some(a), None) => {
                let text = a.get_ref();
                if let Ok(addr) = text.parse::<SocketAddr>() {
                    return Some(ServerEntry::Static(addr, weight));
                }
                let parsed = text
                    .rsplit_once(':')
                    .and_then(|(n, p)| Some((n, p.parse::<u16>().ok().filter(|p| *p > 0)?)))
                    .filter(|(n, _)| valid_name(n) && n.parse::<std::net::IpAddr>().is_err());
                match parsed {
                    Some((name, port)) => Some(ServerEntry::Dns(Discover {
                        source: Source::Host {
                            name: name.to_owned(),
                            port,
                        },
                        weight: Some(weight),
                    })),
                    None => {
                        self.err(a, format!("{key}.address"), format!("invalid address {text:?}: expected IP:PORT (\"10.0.0.2:8080\", \"[2001:db8::2]:8080\") or NAME:PORT (\"app.internal:8080\", found by DNS)"));
                        None
                    }
                }
            }
            (None, Some(srv)) => {
                if !valid_name(srv.get_ref()) {
                    self.err(
                        srv,
                        format!("{key}.srv"),
                        format!(
                            "invalid SRV name {:?}: expected e.g. \"_http._tcp.app.internal\"",
                            srv.get_ref()
                        ),
                    );
                    return None;
                }
                Some(ServerEntry::Dns(Discover {
                    source: Source::Srv {
                        name: srv.get_ref().clone(),
                    },
                    weight: explicit.then_some(weight),
                }))
            }
            (Some(a), Some(_)) => {
                self.err(a, key, "a server has either address or srv, not both");
                None
            }
            (None, None) => {
                self.err(
                    &s.weight,
                    key,
                    "a server needs address (IP:PORT or NAME:PORT) or srv",
                );
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::valid_name;

    #[test]
    fn dns_names() {
        for ok in [
            "app.internal",
            "_http._tcp.app.internal.",
            "a-1.b",
            "localhost",
        ] {
            assert!(valid_name(ok), "{ok}");
        }
        for bad in ["", ".", "a..b", "-a.b", "a b", "a/b", &"x".repeat(64)] {
            assert!(!valid_name(bad), "{bad}");
        }
    }
}
