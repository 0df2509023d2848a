//! Anycast announcements through a routing daemon: service addresses put
//! on (announce) or taken off (withdraw) a dummy interface that FRR
//! (`redistribute connected`) or BIRD (`protocol direct`) exports over BGP,
//! as anycast-healthchecker and kube-vip do. No BGP here: the session, BFD
//! and ECMP belong to the daemon.
//!
//! Withdrawing must not break the sockets bound to the address, so the
//! address is also made local on `lo` by a `local` route in the local
//! table ([`Announcer::hold_locally`], Linux's "AnyIP"), not by an
//! interface address: the daemon sees no connected route for it there, and
//! the address stays local (bindable, answering the flows routers still
//! send) while it is not on the dummy interface. (An IPv6 socket binds
//! such an address only with `IP_FREEBIND`; IPv4 ones bind it as is.)

use std::net::IpAddr;

use crate::config::VirtualAddress;
use crate::error::Error;
use crate::netlink::Netlink;

/// Adds and removes announced addresses on one dummy interface, which it
/// creates (and sets up) when missing; on a kernel built without the dummy
/// driver, an empty bridge (as inert, and up with carrier) stands in.
#[derive(Debug, Clone)]
pub struct Announcer {
    netlink: Netlink,
    interface: String,
    index: u32,
    lo: u32,
}

impl Announcer {
    /// Opens netlink on the current tokio runtime and makes sure the dummy
    /// interface `interface` exists and is up (a routing daemon ignores the
    /// connected routes of a down interface).
    pub async fn new(interface: &str) -> Result<Self, Error> {
        let netlink = Netlink::connect()?;
        let link = netlink.ensure_dummy(interface).await?;
        netlink.set_up(link.index).await?;
        let lo = netlink
            .link("lo")
            .await?
            .ok_or_else(|| Error::Io {
                what: "looking up the loopback interface".into(),
                source: std::io::Error::from(std::io::ErrorKind::NotFound),
            })?
            .index;
        Ok(Announcer {
            netlink,
            interface: interface.to_owned(),
            index: link.index,
            lo,
        })
    }

    /// The dummy interface's name.
    pub fn interface(&self) -> &str {
        &self.interface
    }

    /// Makes `address` local to this host for good (a `local` route on
    /// `lo`), announced or not, so listeners can bind it before the first
    /// announcement and keep working after a withdrawal.
    pub async fn hold_locally(&self, address: IpAddr) -> Result<(), Error> {
        self.netlink.add_local_route(self.lo, address).await
    }

    /// Announces `address`: adds it (/32 or /128) to the dummy interface.
    /// Already announced is fine.
    pub async fn announce(&self, address: IpAddr) -> Result<(), Error> {
        self.netlink
            .add_address(self.index, VirtualAddress::host(address))
            .await
    }

    /// Withdraws `address`: removes it from the dummy interface. Not
    /// announced is fine.
    pub async fn withdraw(&self, address: IpAddr) -> Result<(), Error> {
        self.netlink
            .del_address(self.index, VirtualAddress::host(address))
            .await
    }

    /// The addresses on the dummy interface now.
    pub async fn announced(&self) -> Result<Vec<IpAddr>, Error> {
        Ok(self
            .netlink
            .addresses(self.index)
            .await?
            .into_iter()
            .map(|a| a.address)
            .filter(|a| !matches!(a, IpAddr::V6(v6) if v6.is_unicast_link_local()))
            .collect())
    }
}
