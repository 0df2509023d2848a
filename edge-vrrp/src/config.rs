//! Typed configuration of one virtual router, with documented defaults.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;
use std::time::Duration;

use crate::packet::{ChecksumMode, V3_MAX_INTERVAL_CS, Version};

/// A virtual address with its prefix length (`198.18.0.100/24`,
/// `2001:2::100/64`). Without a prefix it is a host address (/32, /128).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VirtualAddress {
    /// The address.
    pub address: IpAddr,
    /// Prefix length used when the address is added to the interface.
    pub prefix_len: u8,
}

impl VirtualAddress {
    /// A host address (/32 or /128).
    pub fn host(address: IpAddr) -> Self {
        let prefix_len = if address.is_ipv4() { 32 } else { 128 };
        VirtualAddress {
            address,
            prefix_len,
        }
    }
}

impl fmt::Display for VirtualAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.address, self.prefix_len)
    }
}

impl FromStr for VirtualAddress {
    type Err = ConfigError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |reason| ConfigError::Invalid {
            field: "virtual_addresses",
            value: s.to_owned(),
            reason,
        };
        let (addr, len) = match s.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (s, None),
        };
        let address: IpAddr = addr.parse().map_err(|_| bad("not an IP address"))?;
        let max = if address.is_ipv4() { 32 } else { 128 };
        let prefix_len = match len {
            None => max,
            Some(l) => l
                .parse::<u8>()
                .ok()
                .filter(|l| *l <= max)
                .ok_or(bad("bad prefix length"))?,
        };
        Ok(VirtualAddress {
            address,
            prefix_len,
        })
    }
}

/// Configuration of one virtual router (one VRID on one interface).
///
/// Build it from [`Config::default`] and the setters; [`Config::validate`]
/// (called by [`VirtualRouter::new`](crate::VirtualRouter::new) and
/// [`Instance::spawn`](crate::Instance::spawn)) refuses bad values with an
/// error naming the field.
///
/// ```
/// use std::time::Duration;
/// use edge_vrrp::Config;
///
/// let mut config = Config::default();
/// config
///     .interface("eth0")
///     .vrid(51)
///     .priority(150)
///     .advert_interval(Duration::from_millis(100))
///     .virtual_address("198.18.0.100/24".parse().unwrap());
/// config.validate().unwrap();
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub(crate) interface: String,
    pub(crate) vrid: u8,
    pub(crate) priority: u8,
    pub(crate) version: Version,
    pub(crate) advert_interval: Duration,
    pub(crate) virtual_addresses: Vec<VirtualAddress>,
    pub(crate) preempt: bool,
    pub(crate) preempt_delay: Duration,
    pub(crate) accept_mode: bool,
    pub(crate) unicast_source: Option<IpAddr>,
    pub(crate) unicast_peers: Vec<IpAddr>,
    pub(crate) checksum_mode: ChecksumMode,
    pub(crate) garp_delay: Duration,
    pub(crate) garp_repeat: u32,
    pub(crate) garp_refresh: Option<Duration>,
    pub(crate) garp_refresh_repeat: u32,
    pub(crate) two_node: bool,
    pub(crate) use_vmac: bool,
    pub(crate) vmac_interface: Option<String>,
    pub(crate) auth_password: Option<AuthPassword>,
}

/// A VRRPv2 simple text password as given (checked by
/// [`Config::validate`]); never shown by `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct AuthPassword(Vec<u8>);

impl std::fmt::Debug for AuthPassword {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuthPassword(..)")
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            interface: String::new(),
            vrid: 1,
            priority: 100,
            version: Version::V3,
            advert_interval: Duration::from_secs(1),
            virtual_addresses: Vec::new(),
            preempt: true,
            preempt_delay: Duration::ZERO,
            accept_mode: true,
            unicast_source: None,
            unicast_peers: Vec::new(),
            checksum_mode: ChecksumMode::PseudoHeader,
            garp_delay: Duration::from_secs(5),
            garp_repeat: 5,
            garp_refresh: None,
            garp_refresh_repeat: 1,
            two_node: false,
            use_vmac: false,
            vmac_interface: None,
            auth_password: None,
        }
    }
}

impl Config {
    /// Interface the router runs on. No default: required.
    pub fn interface(&mut self, name: impl Into<String>) -> &mut Self {
        self.interface = name.into();
        self
    }

    /// Virtual Router Identifier, 1–255. Default 1.
    pub fn vrid(&mut self, vrid: u8) -> &mut Self {
        self.vrid = vrid;
        self
    }

    /// Base priority, 1–255 (255: this router owns the addresses).
    /// Default 100.
    pub fn priority(&mut self, priority: u8) -> &mut Self {
        self.priority = priority;
        self
    }

    /// Protocol version. Default [`Version::V3`].
    pub fn version(&mut self, version: Version) -> &mut Self {
        self.version = version;
        self
    }

    /// Advertisement interval: 10 ms–40.95 s in steps of 10 ms for v3,
    /// 1–255 whole seconds for v2. Default 1 s.
    pub fn advert_interval(&mut self, interval: Duration) -> &mut Self {
        self.advert_interval = interval;
        self
    }

    /// Adds a virtual address. At least one is required; all of one family.
    pub fn virtual_address(&mut self, address: VirtualAddress) -> &mut Self {
        self.virtual_addresses.push(address);
        self
    }

    /// Replaces the virtual addresses.
    pub fn virtual_addresses(
        &mut self,
        addresses: impl IntoIterator<Item = VirtualAddress>,
    ) -> &mut Self {
        self.virtual_addresses = addresses.into_iter().collect();
        self
    }

    /// Preempt a lower-priority master (RFC `Preempt_Mode`). `false` is
    /// keepalived's `nopreempt`. Default `true`.
    pub fn preempt(&mut self, preempt: bool) -> &mut Self {
        self.preempt = preempt;
        self
    }

    /// How long a backup that outranks the current master keeps following
    /// it before taking over (keepalived's `preempt_delay`). Default 0.
    pub fn preempt_delay(&mut self, delay: Duration) -> &mut Self {
        self.preempt_delay = delay;
        self
    }

    /// RFC `Accept_Mode`. Only `true` (keepalived's default) is supported:
    /// enforcing `false` needs packet filter rules this crate does not
    /// install, so `false` is refused by [`Config::validate`]. Default `true`.
    pub fn accept_mode(&mut self, accept: bool) -> &mut Self {
        self.accept_mode = accept;
        self
    }

    /// Source address for unicast advertisements (keepalived's
    /// `unicast_src_ip`). Default: the interface's primary address.
    pub fn unicast_source(&mut self, source: IpAddr) -> &mut Self {
        self.unicast_source = Some(source);
        self
    }

    /// Adds a unicast peer. With any peer set, advertisements go to each
    /// peer instead of the multicast group, and are accepted only from
    /// peers. Default: none (multicast).
    pub fn unicast_peer(&mut self, peer: IpAddr) -> &mut Self {
        self.unicast_peers.push(peer);
        self
    }

    /// Checksum form for VRRPv3 over IPv4. Default
    /// [`ChecksumMode::PseudoHeader`] (what keepalived sends and requires).
    pub fn checksum_mode(&mut self, mode: ChecksumMode) -> &mut Self {
        self.checksum_mode = mode;
        self
    }

    /// Delay before the second burst of gratuitous ARPs / unsolicited NAs
    /// after becoming master (keepalived's `garp_master_delay`); zero sends
    /// only the first burst. Default 5 s.
    pub fn garp_delay(&mut self, delay: Duration) -> &mut Self {
        self.garp_delay = delay;
        self
    }

    /// Gratuitous ARPs / NAs per address in each burst
    /// (`garp_master_repeat`). Default 5.
    pub fn garp_repeat(&mut self, repeat: u32) -> &mut Self {
        self.garp_repeat = repeat;
        self
    }

    /// Period of refresh announcements while master
    /// (`garp_master_refresh`). Default: none.
    pub fn garp_refresh(&mut self, period: Option<Duration>) -> &mut Self {
        self.garp_refresh = period;
        self
    }

    /// Announcements per address in each refresh (`garp_master_refresh_repeat`).
    /// Default 1.
    pub fn garp_refresh_repeat(&mut self, repeat: u32) -> &mut Self {
        self.garp_refresh_repeat = repeat;
        self
    }

    /// The group has exactly two routers: a backup hearing a priority-0
    /// advertisement takes over at once instead of after Skew_Time (it is
    /// the only backup, so no election can be lost). Refused with more than
    /// one unicast peer. Default `false` (RFC 9568 behaviour).
    pub fn two_node(&mut self, two_node: bool) -> &mut Self {
        self.two_node = two_node;
        self
    }

    /// Run the addresses on a macvlan interface with the virtual MAC
    /// 00-00-5E-00-01-{VRID} (00-00-5E-00-02-{VRID} for IPv6). Default `false`.
    pub fn use_vmac(&mut self, vmac: bool) -> &mut Self {
        self.use_vmac = vmac;
        self
    }

    /// Name of the macvlan interface. Default `vrrp.{VRID}` (`vrrp6.{VRID}`
    /// for IPv6), as keepalived names them.
    pub fn vmac_interface(&mut self, name: impl Into<String>) -> &mut Self {
        self.vmac_interface = Some(name.into());
        self
    }

    /// VRRPv2 simple text password authentication (RFC 2338's auth type 1,
    /// keepalived's `authentication { auth_type PASS auth_pass ... }`), for
    /// groups migrated from such keepalived configurations: adverts carry
    /// the password and adverts without it are discarded. 1 to 8 bytes,
    /// VRRPv2 only (RFC 3768 and 9568 dropped authentication; it protects
    /// from misconfiguration, not from attackers: the password is sent in
    /// clear). Default none.
    pub fn auth_password(&mut self, password: impl Into<String>) -> &mut Self {
        self.auth_password = Some(AuthPassword(password.into().into_bytes()));
        self
    }

    /// The Authentication Data of our adverts (the password, zero-padded)
    /// when a password is set. Only meaningful after [`Config::validate`].
    pub(crate) fn auth_data(&self) -> Option<[u8; 8]> {
        self.auth_password.as_ref().map(|p| {
            let mut data = [0; 8];
            for (d, b) in data.iter_mut().zip(&p.0) {
                *d = *b;
            }
            data
        })
    }

    /// The interface name.
    pub fn interface_name(&self) -> &str {
        &self.interface
    }

    /// The VRID.
    pub fn vrid_value(&self) -> u8 {
        self.vrid
    }

    /// The configured virtual addresses.
    pub fn addresses(&self) -> &[VirtualAddress] {
        &self.virtual_addresses
    }

    /// Whether addresses are IPv6 (decided by the first virtual address).
    pub fn is_ipv6(&self) -> bool {
        self.virtual_addresses
            .first()
            .is_some_and(|a| a.address.is_ipv6())
    }

    /// The macvlan interface name when [`Config::use_vmac`] is set.
    pub fn vmac_name(&self) -> Option<String> {
        if !self.use_vmac {
            return None;
        }
        Some(self.vmac_interface.clone().unwrap_or_else(|| {
            if self.is_ipv6() {
                format!("vrrp6.{}", self.vrid)
            } else {
                format!("vrrp.{}", self.vrid)
            }
        }))
    }

    /// The advertisement interval as carried in Max Adver Int (centiseconds
    /// for v3, seconds for v2). Only meaningful after [`Config::validate`].
    pub(crate) fn wire_interval(&self) -> u16 {
        match self.version {
            Version::V2 => u16::try_from(self.advert_interval.as_secs()).unwrap_or(u16::MAX),
            Version::V3 => u16::try_from(self.advert_interval.as_millis() / 10).unwrap_or(u16::MAX),
        }
    }

    /// Checks every field; the error names the first bad one.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |field, value: String, reason| {
            Err(ConfigError::Invalid {
                field,
                value,
                reason,
            })
        };
        if self.interface.is_empty() {
            return bad("interface", String::new(), "an interface name is required");
        }
        if self.interface.len() > 15 || self.interface.contains(['/', ' ']) {
            return bad(
                "interface",
                self.interface.clone(),
                "not a valid interface name",
            );
        }
        if self.vrid == 0 {
            return bad("vrid", self.vrid.to_string(), "must be 1-255");
        }
        if self.priority == 0 {
            return bad("priority", self.priority.to_string(), "must be 1-255");
        }
        let ms = self.advert_interval.as_millis();
        match self.version {
            Version::V2 => {
                if self.advert_interval.subsec_nanos() != 0
                    || !(1..=255).contains(&self.advert_interval.as_secs())
                {
                    return bad(
                        "advert_interval",
                        format!("{:?}", self.advert_interval),
                        "VRRPv2 needs whole seconds, 1-255",
                    );
                }
            }
            Version::V3 => {
                let cs = ms / 10;
                if !self.advert_interval.as_nanos().is_multiple_of(10_000_000)
                    || cs == 0
                    || cs > u128::from(V3_MAX_INTERVAL_CS)
                {
                    return bad(
                        "advert_interval",
                        format!("{:?}", self.advert_interval),
                        "VRRPv3 needs 10 ms-40.95 s in steps of 10 ms",
                    );
                }
            }
        }
        let Some(first) = self.virtual_addresses.first() else {
            return bad(
                "virtual_addresses",
                String::new(),
                "at least one virtual address is required",
            );
        };
        if self.virtual_addresses.len() > 255 {
            return bad(
                "virtual_addresses",
                self.virtual_addresses.len().to_string(),
                "at most 255 addresses",
            );
        }
        let v6 = first.address.is_ipv6();
        if let Some(other) = self
            .virtual_addresses
            .iter()
            .find(|a| a.address.is_ipv6() != v6)
        {
            return bad(
                "virtual_addresses",
                other.to_string(),
                "mixed address families in one virtual router",
            );
        }
        if v6 && self.version == Version::V2 {
            return bad("version", "2".into(), "VRRPv2 supports IPv4 only");
        }
        if let Some(src) = self.unicast_source
            && src.is_ipv6() != v6
        {
            return bad(
                "unicast_source",
                src.to_string(),
                "not of the virtual addresses' family",
            );
        }
        if let Some(peer) = self.unicast_peers.iter().find(|p| p.is_ipv6() != v6) {
            return bad(
                "unicast_peers",
                peer.to_string(),
                "not of the virtual addresses' family",
            );
        }
        if self.unicast_source.is_some() && self.unicast_peers.is_empty() {
            return bad(
                "unicast_peers",
                String::new(),
                "unicast_source is set but no peer is",
            );
        }
        if !self.accept_mode {
            return bad(
                "accept_mode",
                "false".into(),
                "not supported: a backup that takes over always accepts traffic to the \
                 virtual addresses (keepalived's default too)",
            );
        }
        if let Some(AuthPassword(p)) = &self.auth_password {
            if self.version != Version::V2 {
                return bad(
                    "auth_password",
                    "(set)".into(),
                    "authentication exists in VRRPv2 only",
                );
            }
            if p.is_empty() || p.len() > 8 {
                return bad(
                    "auth_password",
                    format!("{} bytes", p.len()),
                    "the password must be 1 to 8 bytes",
                );
            }
        }
        if self.two_node && self.unicast_peers.len() > 1 {
            return bad(
                "two_node",
                self.unicast_peers.len().to_string(),
                "two_node with more than one unicast peer",
            );
        }
        if self.garp_refresh.is_some_and(|p| p.is_zero()) {
            return bad(
                "garp_refresh",
                "0s".into(),
                "refresh period must be above zero",
            );
        }
        if let Some(name) = self.vmac_name()
            && (name.is_empty() || name.len() > 15)
        {
            return bad("vmac_interface", name, "not a valid interface name");
        }
        Ok(())
    }
}

/// A configuration value was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// `field` holds `value`, which is wrong for `reason`.
    #[error("invalid {field} `{value}`: {reason}")]
    Invalid {
        /// The configuration field (the setter's name).
        field: &'static str,
        /// The refused value, as text.
        value: String,
        /// What is wrong with it.
        reason: &'static str,
    },
}

impl ConfigError {
    /// The field the error is about.
    pub fn field(&self) -> &'static str {
        match self {
            ConfigError::Invalid { field, .. } => field,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn good() -> Config {
        let mut c = Config::default();
        c.interface("eth0")
            .vrid(51)
            .virtual_address("198.18.0.100/24".parse().unwrap());
        c
    }

    #[test]
    fn defaults_need_interface_and_addresses() {
        assert_eq!(
            Config::default().validate().unwrap_err().field(),
            "interface"
        );
        let mut c = Config::default();
        c.interface("eth0");
        assert_eq!(c.validate().unwrap_err().field(), "virtual_addresses");
        good().validate().unwrap();
    }

    #[test]
    fn each_bad_value_names_its_field() {
        type Mutation = Box<dyn Fn(&mut Config)>;
        let cases: Vec<(&str, Mutation)> = vec![
            (
                "vrid",
                Box::new(|c| {
                    c.vrid(0);
                }),
            ),
            (
                "priority",
                Box::new(|c| {
                    c.priority(0);
                }),
            ),
            (
                "advert_interval",
                Box::new(|c| {
                    c.advert_interval(Duration::from_millis(5));
                }),
            ),
            (
                "advert_interval",
                Box::new(|c| {
                    c.advert_interval(Duration::from_secs(41));
                }),
            ),
            (
                "advert_interval",
                Box::new(|c| {
                    c.advert_interval(Duration::from_millis(15));
                }),
            ),
            (
                "advert_interval",
                Box::new(|c| {
                    c.version(Version::V2)
                        .advert_interval(Duration::from_millis(1500));
                }),
            ),
            (
                "advert_interval",
                Box::new(|c| {
                    c.version(Version::V2)
                        .advert_interval(Duration::from_secs(256));
                }),
            ),
            (
                "virtual_addresses",
                Box::new(|c| {
                    c.virtual_address("2001:2::1/64".parse().unwrap());
                }),
            ),
            (
                "version",
                Box::new(|c| {
                    c.version(Version::V2)
                        .virtual_addresses(["2001:2::1".parse().unwrap()]);
                }),
            ),
            (
                "interface",
                Box::new(|c| {
                    c.interface("a-very-long-interface-name");
                }),
            ),
            (
                "unicast_peers",
                Box::new(|c| {
                    c.unicast_peer("2001:2::2".parse().unwrap());
                }),
            ),
            (
                "unicast_peers",
                Box::new(|c| {
                    c.unicast_source("198.18.0.1".parse().unwrap());
                }),
            ),
            (
                "accept_mode",
                Box::new(|c| {
                    c.accept_mode(false);
                }),
            ),
            (
                "auth_password",
                Box::new(|c| {
                    c.auth_password("secret");
                }),
            ),
            (
                "auth_password",
                Box::new(|c| {
                    c.version(Version::V2)
                        .advert_interval(Duration::from_secs(1))
                        .auth_password("ninechars");
                }),
            ),
            (
                "two_node",
                Box::new(|c| {
                    c.two_node(true)
                        .unicast_peer("198.18.0.2".parse().unwrap())
                        .unicast_peer("198.18.0.3".parse().unwrap());
                }),
            ),
        ];
        for (field, f) in cases {
            let mut c = good();
            f(&mut c);
            let err = c.validate().unwrap_err();
            assert_eq!(err.field(), field, "{err}");
            assert!(err.to_string().contains(field));
        }
    }

    #[test]
    fn v3_accepts_fractional_and_v2_whole_seconds() {
        let mut c = good();
        c.advert_interval(Duration::from_millis(10));
        c.validate().unwrap();
        assert_eq!(c.wire_interval(), 1);
        c.advert_interval(Duration::from_millis(40_950));
        c.validate().unwrap();
        assert_eq!(c.wire_interval(), 4095);
        c.version(Version::V2)
            .advert_interval(Duration::from_secs(3));
        c.validate().unwrap();
        assert_eq!(c.wire_interval(), 3);
    }

    #[test]
    fn virtual_address_parsing() {
        let a: VirtualAddress = "198.18.0.100".parse().unwrap();
        assert_eq!(a.prefix_len, 32);
        let b: VirtualAddress = "2001:2::100/64".parse().unwrap();
        assert_eq!(b.prefix_len, 64);
        assert_eq!(b.to_string(), "2001:2::100/64");
        assert!("198.18.0.1/33".parse::<VirtualAddress>().is_err());
        assert!("nope".parse::<VirtualAddress>().is_err());
    }
}
