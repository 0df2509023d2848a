//! Interfaces and addresses through rtnetlink: look up the interface, its
//! MAC and primary address, add and remove virtual addresses (IPv6 without
//! DAD), create and delete the macvlan for a virtual MAC, create a dummy
//! interface and add local (AnyIP) routes for [`crate::anycast`].

use std::net::IpAddr;

use futures::StreamExt;
use futures::TryStreamExt;
use futures::channel::mpsc::UnboundedReceiver;
use rtnetlink::packet_core::{NetlinkMessage, NetlinkPayload};
use rtnetlink::packet_route::RouteNetlinkMessage;
use rtnetlink::packet_route::address::{
    AddressAttribute, AddressFlags, AddressHeaderFlags, AddressMessage,
};
use rtnetlink::packet_route::link::{LinkAttribute, LinkFlags, LinkMessage, MacVlanMode};
use rtnetlink::packet_route::route::{RouteProtocol, RouteScope, RouteType};
use rtnetlink::{
    Handle, LinkBridge, LinkDummy, LinkMacVlan, LinkUnspec, MulticastGroup, RouteMessageBuilder,
};

use crate::config::VirtualAddress;
use crate::error::Error;

/// What we need to know about an interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Link {
    pub(crate) index: u32,
    pub(crate) mac: [u8; 6],
    /// Administratively up and with carrier.
    pub(crate) up: bool,
}

/// One address on an interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Addr {
    pub(crate) address: IpAddr,
    pub(crate) prefix_len: u8,
    pub(crate) tentative: bool,
}

/// A netlink connection (its I/O task runs on the current runtime).
#[derive(Debug, Clone)]
pub(crate) struct Netlink {
    handle: Handle,
}

impl Netlink {
    pub(crate) fn connect() -> Result<Self, Error> {
        let (conn, handle, _) =
            rtnetlink::new_connection().map_err(Error::io("opening a netlink socket"))?;
        tokio::spawn(conn);
        Ok(Netlink { handle })
    }

    /// The interface called `name`, if any.
    pub(crate) async fn link(&self, name: &str) -> Result<Option<Link>, Error> {
        let mut links = self
            .handle
            .link()
            .get()
            .match_name(name.to_owned())
            .execute();
        match links.try_next().await {
            Ok(Some(msg)) => Ok(Some(link_of(&msg))),
            Ok(None) => Ok(None),
            // The kernel answers ENODEV for an unknown name.
            Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::ENODEV => Ok(None),
            Err(e) => Err(Error::netlink(format!("looking up interface {name}"))(e)),
        }
    }

    /// Every address on interface `index`.
    pub(crate) async fn addresses(&self, index: u32) -> Result<Vec<Addr>, Error> {
        let mut out = Vec::new();
        let mut stream = self
            .handle
            .address()
            .get()
            .set_link_index_filter(index)
            .execute();
        while let Some(msg) = stream
            .try_next()
            .await
            .map_err(Error::netlink("listing addresses"))?
        {
            if msg.header.index != index {
                continue;
            }
            let mut flags = AddressFlags::empty();
            let mut address = None;
            let mut local = None;
            for attr in &msg.attributes {
                match attr {
                    AddressAttribute::Address(a) => address = Some(*a),
                    AddressAttribute::Local(a) => local = Some(*a),
                    AddressAttribute::Flags(f) => flags = *f,
                    _ => {}
                }
            }
            // IFA_LOCAL is the interface's own address on point-to-point
            // links; IFA_ADDRESS otherwise.
            if let Some(address) = local.or(address) {
                let tentative = flags.contains(AddressFlags::Tentative)
                    || msg.header.flags.contains(AddressHeaderFlags::Tentative);
                out.push(Addr {
                    address,
                    prefix_len: msg.header.prefix_len,
                    tentative,
                });
            }
        }
        Ok(out)
    }

    /// Adds a virtual address. IPv6 ones skip DAD (a backup must not
    /// delay or refuse the address on takeover). Already present is fine.
    pub(crate) async fn add_address(&self, index: u32, vip: VirtualAddress) -> Result<(), Error> {
        let mut req = self
            .handle
            .address()
            .add(index, vip.address, vip.prefix_len);
        if vip.address.is_ipv6() {
            let msg = req.message_mut();
            msg.header.flags |= AddressHeaderFlags::Nodad;
            msg.attributes
                .push(AddressAttribute::Flags(AddressFlags::Nodad));
        }
        match req.execute().await {
            Ok(()) => Ok(()),
            Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::EEXIST => Ok(()),
            Err(e) => Err(Error::netlink(format!("adding {vip}"))(e)),
        }
    }

    /// Removes a virtual address. Already absent is fine.
    pub(crate) async fn del_address(&self, index: u32, vip: VirtualAddress) -> Result<(), Error> {
        let mut msg = AddressMessage::default();
        msg.header.family = match vip.address {
            IpAddr::V4(_) => rtnetlink::packet_route::AddressFamily::Inet,
            IpAddr::V6(_) => rtnetlink::packet_route::AddressFamily::Inet6,
        };
        msg.header.prefix_len = vip.prefix_len;
        msg.header.index = index;
        msg.attributes.push(AddressAttribute::Local(vip.address));
        msg.attributes.push(AddressAttribute::Address(vip.address));
        match self.handle.address().del(msg).execute().await {
            Ok(()) => Ok(()),
            Err(rtnetlink::Error::NetlinkError(e))
                if e.raw_code() == -libc::EADDRNOTAVAIL
                    || e.raw_code() == -libc::ENOENT
                    || e.raw_code() == -libc::ENODEV =>
            {
                Ok(())
            }
            Err(e) => Err(Error::netlink(format!("removing {vip}"))(e)),
        }
    }

    /// Creates the macvlan `name` on `parent` with `mac`, in private mode
    /// (it then also receives the frames other routers send from the same
    /// virtual MAC), left down so that its settings can be made first.
    pub(crate) async fn add_macvlan(
        &self,
        parent: u32,
        name: &str,
        mac: [u8; 6],
    ) -> Result<Link, Error> {
        let msg = LinkMacVlan::new(name, parent, MacVlanMode::Private)
            .address(mac.to_vec())
            .build();
        self.handle
            .link()
            .add(msg)
            .execute()
            .await
            .map_err(Error::netlink(format!("creating macvlan {name}")))?;
        self.link(name).await?.ok_or_else(|| Error::Io {
            what: format!("macvlan {name} vanished after creation"),
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        })
    }

    /// Creates the dummy interface `name` (already present is fine; an
    /// empty bridge where the kernel has no dummy driver); the interface,
    /// not yet set up.
    pub(crate) async fn ensure_dummy(&self, name: &str) -> Result<Link, Error> {
        if let Some(link) = self.link(name).await? {
            return Ok(link);
        }
        let add = |msg| self.handle.link().add(msg).execute();
        let created = match add(LinkDummy::new(name).build()).await {
            // A kernel without the dummy driver (CONFIG_DUMMY): a bridge
            // without ports is as inert and also up with carrier.
            Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::EOPNOTSUPP => {
                tracing::info!(
                    interface = name,
                    "no dummy interfaces in this kernel: using an empty bridge"
                );
                add(LinkBridge::new(name).build()).await
            }
            other => other,
        };
        match created {
            Ok(()) => {}
            Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::EEXIST => {}
            Err(e) => {
                return Err(Error::netlink(format!("creating dummy interface {name}"))(
                    e,
                ));
            }
        }
        self.link(name).await?.ok_or_else(|| Error::Io {
            what: format!("dummy interface {name} vanished after creation"),
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        })
    }

    /// Makes `address` local on interface `index` without an interface
    /// address: a host route of type `local` in the local table (Linux's
    /// "AnyIP"), so that sockets can bind it and receive its traffic while
    /// no interface holds it. Already present is fine.
    pub(crate) async fn add_local_route(&self, index: u32, address: IpAddr) -> Result<(), Error> {
        let prefix_len = if address.is_ipv4() { 32 } else { 128 };
        let what = || format!("adding the local route for {address}");
        let msg = RouteMessageBuilder::<IpAddr>::new()
            .destination_prefix(address, prefix_len)
            .map_err(|e| Error::Io {
                what: what(),
                source: std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string()),
            })?
            .output_interface(index)
            .table_id(u32::from(libc::RT_TABLE_LOCAL))
            .kind(RouteType::Local)
            .scope(RouteScope::Host)
            .protocol(RouteProtocol::Static)
            .build();
        match self.handle.route().add(msg).execute().await {
            Ok(()) => Ok(()),
            Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::EEXIST => Ok(()),
            Err(e) => Err(Error::netlink(what())(e)),
        }
    }

    /// Sets interface `index` administratively up.
    pub(crate) async fn set_up(&self, index: u32) -> Result<(), Error> {
        let msg = LinkUnspec::new_with_index(index).up().build();
        self.handle
            .link()
            .set(msg)
            .execute()
            .await
            .map_err(Error::netlink(format!("setting interface {index} up")))
    }

    /// Deletes interface `index`.
    pub(crate) async fn delete_link(&self, index: u32) -> Result<(), Error> {
        self.handle
            .link()
            .del(index)
            .execute()
            .await
            .map_err(Error::netlink("deleting the macvlan"))
    }
}

/// Link state changes pushed by the kernel (RTNLGRP_LINK), no polling.
#[derive(Debug)]
pub(crate) struct LinkEvents {
    messages: UnboundedReceiver<(
        NetlinkMessage<RouteNetlinkMessage>,
        rtnetlink::sys::SocketAddr,
    )>,
}

impl LinkEvents {
    /// Subscribes; call before reading the link's current state so that
    /// no change falls in between.
    pub(crate) fn subscribe() -> Result<Self, Error> {
        let (conn, _handle, messages) =
            rtnetlink::new_multicast_connection(&[MulticastGroup::Link])
                .map_err(Error::io("subscribing to netlink link events"))?;
        tokio::spawn(conn);
        Ok(LinkEvents { messages })
    }

    /// The next notification about interface `index`: `Some(up)` (a
    /// deleted interface is down), `None` once the subscription ended.
    pub(crate) async fn next(&mut self, index: u32) -> Option<bool> {
        loop {
            let (msg, _) = self.messages.next().await?;
            match msg.payload {
                NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewLink(l))
                    if l.header.index == index =>
                {
                    return Some(link_of(&l).up);
                }
                NetlinkPayload::InnerMessage(RouteNetlinkMessage::DelLink(l))
                    if l.header.index == index =>
                {
                    return Some(false);
                }
                _ => {}
            }
        }
    }
}

fn link_of(msg: &LinkMessage) -> Link {
    let mut mac = [0u8; 6];
    for attr in &msg.attributes {
        if let LinkAttribute::Address(a) = attr
            && let Ok(m) = <[u8; 6]>::try_from(a.as_slice())
        {
            mac = m;
        }
    }
    let f = msg.header.flags;
    Link {
        index: msg.header.index,
        mac,
        up: f.contains(LinkFlags::Up)
            && (f.contains(LinkFlags::LowerUp) || f.contains(LinkFlags::Running)),
    }
}
