//! `[[anycast]]`: service addresses this node announces through a routing
//! daemon (FRR, BIRD) while it is healthy, for a fleet behind BGP ECMP.

use std::collections::HashSet;
use std::net::IpAddr;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::Validator;
use super::duration::ConfigDuration;

/// The dummy interface the routing daemon exports, unless `interface` says.
pub(super) const DEFAULT_INTERFACE: &str = "edge-anycast0";
/// How long a stopping node waits between withdrawing and draining.
pub(super) const DEFAULT_WITHDRAW_DELAY: Duration = Duration::from_secs(2);

/// `[[anycast]]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnycastFile {
    /// Service addresses (IPv4 or IPv6, one host each; `/32` or `/128`
    /// may be written).
    pub addresses: Spanned<Vec<Spanned<String>>>,
    /// The dummy interface; default `edge-anycast0`.
    pub interface: Option<Spanned<String>>,
    /// Pools whose health decides; default every pool.
    pub track_pools: Option<Vec<Spanned<String>>>,
    /// Servers up needed in each tracked pool; default 1.
    pub min_healthy: Option<Spanned<i64>>,
    /// Share of servers up needed in each tracked pool; default 0.0.
    pub min_healthy_share: Option<Spanned<f64>>,
    /// At stop, time between the withdrawal and the drain; default 2s.
    pub withdraw_delay: Option<Spanned<ConfigDuration>>,
}

/// `[[anycast]]`, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct AnycastSettings {
    pub addresses: Vec<IpAddr>,
    pub interface: String,
    pub track_pools: Vec<String>,
    pub min_healthy: usize,
    pub min_healthy_share: f64,
    pub withdraw_delay: Duration,
}

/// Parses `198.19.0.10`, `198.19.0.10/32`, `2001:2::10/128`: one host.
fn host_address(s: &str) -> Result<IpAddr, &'static str> {
    let (ip, len) = match s.split_once('/') {
        Some((ip, len)) => (ip, Some(len)),
        None => (s, None),
    };
    let ip: IpAddr = ip.parse().map_err(|_| "not an IP address")?;
    let host = if ip.is_ipv4() { "32" } else { "128" };
    match len {
        None => Ok(ip),
        Some(l) if l == host => Ok(ip),
        Some(_) => Err("an anycast address is one host: /32 (IPv4) or /128 (IPv6)"),
    }
}

impl Validator<'_> {
    pub(super) fn anycast(
        &mut self,
        list: &[AnycastFile],
        pools: &HashSet<String>,
    ) -> Vec<AnycastSettings> {
        let mut out = Vec::new();
        let mut seen = HashSet::new();
        for (i, a) in list.iter().enumerate() {
            let key = format!("anycast[{i}]");
            let mut addresses = Vec::new();
            for (j, s) in a.addresses.get_ref().iter().enumerate() {
                match host_address(s.get_ref()) {
                    Ok(ip) if !seen.insert(ip) => self.err(
                        s,
                        format!("{key}.addresses[{j}]"),
                        format!("{ip} is listed twice in [[anycast]]"),
                    ),
                    Ok(ip) => addresses.push(ip),
                    Err(e) => self.err(s, format!("{key}.addresses[{j}]"), e),
                }
            }
            if a.addresses.get_ref().is_empty() {
                self.err(&a.addresses, format!("{key}.addresses"), "no address");
            }
            let interface = match &a.interface {
                None => DEFAULT_INTERFACE.to_owned(),
                Some(n) => {
                    let name = n.get_ref();
                    // IFNAMSIZ is 16 with the NUL; no '/', no space.
                    if name.is_empty()
                        || name.len() > 15
                        || name.contains(['/', ' ', ':'])
                        || name == "lo"
                    {
                        self.err(
                            n,
                            format!("{key}.interface"),
                            "an interface name of 1-15 characters, no '/', ':' or space, not lo",
                        );
                    }
                    name.clone()
                }
            };
            let track_pools = self.tracked_pools(a.track_pools.as_deref(), pools, &key);
            let min_healthy = match &a.min_healthy {
                None => 1,
                Some(n) => usize::try_from(*n.get_ref()).unwrap_or_else(|_| {
                    self.err(n, format!("{key}.min_healthy"), "must be 0 or more");
                    1
                }),
            };
            let min_healthy_share = match &a.min_healthy_share {
                None => 0.0,
                Some(s) if (0.0..=1.0).contains(s.get_ref()) => *s.get_ref(),
                Some(s) => {
                    let msg = "min_healthy_share must be 0.0-1.0";
                    self.err(s, format!("{key}.min_healthy_share"), msg);
                    0.0
                }
            };
            out.push(AnycastSettings {
                addresses,
                interface,
                track_pools,
                min_healthy,
                min_healthy_share,
                withdraw_delay: a
                    .withdraw_delay
                    .as_ref()
                    .map_or(DEFAULT_WITHDRAW_DELAY, |d| d.get_ref().0),
            });
        }
        out
    }

    /// `track_pools` checked against the `[[pool]]` names; absent: all.
    fn tracked_pools(
        &mut self,
        list: Option<&[Spanned<String>]>,
        pools: &HashSet<String>,
        key: &str,
    ) -> Vec<String> {
        let Some(list) = list else {
            let mut all: Vec<String> = pools.iter().cloned().collect();
            all.sort();
            return all;
        };
        for (j, p) in list.iter().enumerate() {
            if !pools.contains(p.get_ref()) {
                let msg = format!("no [[pool]] named {:?}", p.get_ref());
                self.err(p, format!("{key}.track_pools[{j}]"), msg);
            }
        }
        list.iter().map(|p| p.get_ref().clone()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ConfigErrors, Source, Validated, load_str};
    use std::path::Path;

    const BASE: &str = "[[route]]\npool = \"web\"\n[[pool]]\nname = \"web\"\n[[pool.server]]\naddress = \"127.0.0.1:8080\"\n";

    fn check(anycast: &str) -> Result<Validated, ConfigErrors> {
        let text = format!("{BASE}[[anycast]]\n{anycast}");
        load_str(Source::new(Path::new("t.toml"), text), Path::new("."))
    }

    #[test]
    fn defaults_track_every_pool() {
        let v = check("addresses = [\"198.19.0.10\", \"2001:2::10/128\"]\n").unwrap();
        assert_eq!(
            v.anycast,
            [AnycastSettings {
                addresses: vec![
                    "198.19.0.10".parse().unwrap(),
                    "2001:2::10".parse().unwrap()
                ],
                interface: "edge-anycast0".into(),
                track_pools: vec!["web".into()],
                min_healthy: 1,
                min_healthy_share: 0.0,
                withdraw_delay: Duration::from_secs(2),
            }]
        );
    }

    #[test]
    fn bad_entries_are_refused_with_their_key() {
        for (bad, want) in [
            ("addresses = [\"198.19.0.0/24\"]", "anycast[0].addresses[0]"),
            ("addresses = []", "anycast[0].addresses"),
            (
                "addresses = [\"198.19.0.10\"]\ntrack_pools = [\"api\"]",
                "anycast[0].track_pools[0]",
            ),
            (
                "addresses = [\"198.19.0.10\"]\nmin_healthy_share = 1.5",
                "anycast[0].min_healthy_share",
            ),
            (
                "addresses = [\"198.19.0.10\"]\ninterface = \"lo\"",
                "anycast[0].interface",
            ),
            (
                "addresses = [\"198.19.0.10\"]\nmin_healthy = -1",
                "anycast[0].min_healthy",
            ),
        ] {
            let e = check(bad).expect_err(bad).to_string();
            assert!(e.contains(want), "{bad}: {e}");
        }
    }

    #[test]
    fn anycast_addresses_are_single_hosts() {
        assert_eq!(
            host_address("198.19.0.10"),
            Ok("198.19.0.10".parse().unwrap())
        );
        assert_eq!(
            host_address("198.19.0.10/32"),
            Ok("198.19.0.10".parse().unwrap())
        );
        assert_eq!(
            host_address("2001:2::10/128"),
            Ok("2001:2::10".parse().unwrap())
        );
        assert!(host_address("198.19.0.0/24").is_err());
        assert!(host_address("2001:2::/64").is_err());
        assert!(host_address("2001:2::10/32").is_err());
        assert!(host_address("anycast").is_err());
    }
}
