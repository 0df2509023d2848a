//! Small value types of the config: networks (CIDR), and the names a route
//! or a certificate may list: edge-sni's [`HostPattern`] or an IP address.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use edge_sni::HostPattern;

/// An IP network such as `10.0.0.0/8`, `::1/128` or a bare address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

impl IpNet {
    /// Whether `ip` is inside this network (IPv4-mapped IPv6 addresses count as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }

    /// Whether any network in `nets` contains `ip`.
    pub fn any_contains(nets: &[IpNet], ip: IpAddr) -> bool {
        nets.iter().any(|n| n.contains(ip))
    }
}

impl FromStr for IpNet {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("invalid network {s:?}: expected e.g. \"10.0.0.0/8\" or \"::1\"");
        let (a, p) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = a.parse().map_err(|_| bad())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match p {
            Some(p) => p.parse::<u8>().ok().filter(|p| *p <= max).ok_or_else(bad)?,
            None => max,
        };
        Ok(Self { addr, prefix })
    }
}

/// A `[[route]] host` or `[[certificate]] names` entry: a host name or
/// `*.` pattern (edge-sni's [`HostPattern`], the one meaning of names), or
/// an IP address (what a client that connects to an address sends as Host,
/// and a self-signed certificate's IP SAN). SNI never carries an address
/// (RFC 6066), so passthrough rules and ACME take host names only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(
    clippy::large_enum_variant,
    reason = "a few per route, kept inline like edge-sni's HostName"
)]
pub enum HostMatch {
    Name(HostPattern),
    Address(IpAddr),
}

impl HostMatch {
    /// Whether a request's Host (without port; an IPv6 address may be in
    /// brackets) matches.
    pub fn matches(&self, host: &str) -> bool {
        match self {
            HostMatch::Name(p) => p.matches(host),
            HostMatch::Address(a) => parse_address(host) == Some(*a),
        }
    }

    /// The host-name pattern, unless this is an address.
    pub fn pattern(&self) -> Option<&HostPattern> {
        match self {
            HostMatch::Name(p) => Some(p),
            HostMatch::Address(_) => None,
        }
    }

    /// Whether every name `other` matches is served by a certificate
    /// listing `self`.
    pub fn covers(&self, other: &HostMatch) -> bool {
        match (self, other) {
            (HostMatch::Name(a), HostMatch::Name(b)) => a.covers(b),
            (HostMatch::Address(a), HostMatch::Address(b)) => a == b,
            _ => false,
        }
    }
}

fn parse_address(s: &str) -> Option<IpAddr> {
    let bare = s
        .strip_prefix('[')
        .and_then(|s| s.strip_suffix(']'))
        .unwrap_or(s);
    bare.parse().ok()
}

impl FromStr for HostMatch {
    type Err = edge_sni::HostPatternError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match parse_address(s) {
            Some(a) => Ok(HostMatch::Address(a)),
            None => s.parse().map(HostMatch::Name),
        }
    }
}

impl fmt::Display for HostMatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostMatch::Name(p) => p.fmt(f),
            HostMatch::Address(a) => a.fmt(f),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks() {
        let n: IpNet = "10.1.0.0/16".parse().unwrap();
        assert!(n.contains("10.1.2.3".parse().unwrap()));
        assert!(!n.contains("10.2.0.1".parse().unwrap()));
        assert!(n.contains("::ffff:10.1.0.9".parse().unwrap()));
        let all: IpNet = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("1.2.3.4".parse().unwrap()));
        let one: IpNet = "::1".parse().unwrap();
        assert!(one.contains("::1".parse().unwrap()));
        assert!(!one.contains("::2".parse().unwrap()));
        assert!("10.0.0.0/33".parse::<IpNet>().is_err());
        assert!("nope".parse::<IpNet>().is_err());
    }

    #[test]
    fn hosts_and_addresses() {
        let h: HostMatch = "*.Example.com".parse().unwrap();
        assert!(h.matches("a.example.com") && !h.matches("a.b.example.com"));
        assert_eq!(h.to_string(), "*.example.com");
        let a: HostMatch = "127.0.0.1".parse().unwrap();
        assert_eq!(a, HostMatch::Address("127.0.0.1".parse().unwrap()));
        assert!(a.matches("127.0.0.1") && !a.matches("127.0.0.2"));
        let v6: HostMatch = "[::1]".parse().unwrap();
        assert!(v6.matches("[::1]") && v6.matches("::1"));
        assert_eq!(v6.to_string(), "::1");
        assert!(a.covers(&a) && !a.covers(&h) && !h.covers(&a));
        assert!("a.*.com".parse::<HostMatch>().is_err());
        assert!("1.2.3".parse::<HostMatch>().is_err());
    }
}
