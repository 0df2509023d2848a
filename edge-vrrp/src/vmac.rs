//! The virtual MAC (00-00-5E-00-01-{VRID}, IPv6 00-00-5E-00-02-{VRID}):
//! a macvlan interface that carries the virtual addresses, so that every
//! router answers ARP / ND for them with the same MAC and a client needs
//! no new resolution after a failover.
//!
//! What makes it work (keepalived's settings, plus `arp_announce`):
//!
//! - the macvlan is in **private** mode: a multicast frame whose source MAC
//!   is one of our macvlans' (another router sending from the same virtual
//!   MAC) is delivered to that macvlan only, not to the base interface, so
//!   advertisements are received on the macvlan;
//! - on the macvlan, `arp_ignore=1` (answer only for its own addresses),
//!   `rp_filter=0` (accept packets while it holds no address),
//!   `accept_local=1`; for IPv6, no auto-generated link-local address (it
//!   would be the same on every router): the base interface's link-local
//!   address is added instead and advertisements are sent from it;
//! - on the base interface, `arp_ignore=1` and `arp_filter=1` (it must not
//!   answer ARP for the virtual addresses with its own MAC) and
//!   `arp_announce=2`: the ARP requests it sends carry its own address as
//!   sender, never a virtual address (with the default 0, a reply from the
//!   virtual address makes the base interface ask for the client's MAC
//!   with the virtual address as sender, and the client then maps the
//!   virtual address to the base interface's MAC). The previous values are
//!   restored on shutdown.

use std::net::IpAddr;

use crate::announce::virtual_mac;
use crate::config::VirtualAddress;
use crate::error::Error;
use crate::netlink::{Link, Netlink};

/// Settings of the base interface while a macvlan uses it.
const BASE_SETTINGS: [(&str, &str); 3] = [
    ("arp_ignore", "1"),
    ("arp_filter", "1"),
    ("arp_announce", "2"),
];
/// Settings of the macvlan (deleted on shutdown, nothing to restore).
const VMAC_SETTINGS_V4: [(&str, &str); 3] = [
    ("arp_ignore", "1"),
    ("rp_filter", "0"),
    ("accept_local", "1"),
];

/// A macvlan created for one instance.
#[derive(Debug)]
pub(crate) struct Vmac {
    pub(crate) link: Link,
    pub(crate) name: String,
    /// Base interface sysctls to put back: (path, previous value).
    restore: Vec<(String, String)>,
}

impl Vmac {
    /// Creates the macvlan `name` on `base` (replacing one a crashed run
    /// left behind), applies the settings above and brings it up. With
    /// IPv6, `source` (the base interface's link-local address) is added
    /// to it.
    pub(crate) async fn create(
        netlink: &Netlink,
        base: &Link,
        base_name: &str,
        name: &str,
        vrid: u8,
        source: IpAddr,
    ) -> Result<Vmac, Error> {
        let v6 = source.is_ipv6();
        if let Some(old) = netlink.link(name).await? {
            tracing::warn!(
                interface = name,
                "removing a macvlan left by a previous run"
            );
            netlink.delete_link(old.index).await?;
        }
        let link = netlink
            .add_macvlan(base.index, name, virtual_mac(vrid, v6))
            .await?;
        let mut vmac = Vmac {
            link,
            name: name.to_owned(),
            restore: Vec::new(),
        };
        if let Err(e) = vmac.configure(netlink, base_name, source).await {
            vmac.remove(netlink).await;
            return Err(e);
        }
        Ok(vmac)
    }

    async fn configure(
        &mut self,
        netlink: &Netlink,
        base_name: &str,
        source: IpAddr,
    ) -> Result<(), Error> {
        // No link-local address generated from the virtual MAC: it would be
        // the same on every router (an IPv4-only host has no ipv6 tree).
        let no_ll = sysctl("ipv6", &self.name, "addr_gen_mode", "1");
        if source.is_ipv6() {
            no_ll?;
        } else {
            for (key, value) in VMAC_SETTINGS_V4 {
                sysctl("ipv4", &self.name, key, value)?;
            }
            for (key, value) in BASE_SETTINGS {
                let before = sysctl("ipv4", base_name, key, value)?;
                self.restore
                    .push((sysctl_path("ipv4", base_name, key), before));
            }
        }
        netlink.set_up(self.link.index).await?;
        if source.is_ipv6() {
            let vip = VirtualAddress {
                address: source,
                prefix_len: 64,
            };
            netlink.add_address(self.link.index, vip).await?;
        }
        Ok(())
    }

    /// Deletes the macvlan and restores the base interface's settings.
    pub(crate) async fn remove(&self, netlink: &Netlink) {
        if let Err(e) = netlink.delete_link(self.link.index).await {
            tracing::warn!(error = %e, interface = %self.name, "deleting the macvlan");
        }
        for (path, before) in &self.restore {
            if let Err(e) = std::fs::write(path, before) {
                tracing::warn!(error = %e, path, "restoring a sysctl");
            }
        }
    }
}

fn sysctl_path(family: &str, ifname: &str, key: &str) -> String {
    format!("/proc/sys/net/{family}/conf/{ifname}/{key}")
}

/// Sets `net.<family>.conf.<ifname>.<key>`; returns the previous value.
fn sysctl(family: &str, ifname: &str, key: &str, value: &str) -> Result<String, Error> {
    let path = sysctl_path(family, ifname, key);
    let before = std::fs::read_to_string(&path).map_err(Error::io(format!("reading {path}")))?;
    std::fs::write(&path, value).map_err(Error::io(format!("writing {value} to {path}")))?;
    Ok(before.trim().to_owned())
}
