//! VRRPv2/v3 (RFC 3768, RFC 9568) for edge: a protocol core without I/O and
//! a tokio driver, wire-compatible with keepalived.
//!
//! # Design
//!
//! - [`Advertisement`] encodes and decodes VRRP messages (v2, v3 over IPv4
//!   and IPv6) and refuses anything malformed with a [`DecodeError`] that
//!   names the field.
//! - [`VirtualRouter`] is the RFC 9568 state machine of one virtual router.
//!   It does no I/O and reads no clock (like `quinn-proto`): the caller
//!   passes `now` and received bytes in, and pulls [`Action`]s out (send an
//!   advertisement, add or remove the virtual addresses, announce them,
//!   state changed) along with the next timeout. Every RFC scenario is
//!   testable in virtual time with several routers in one test.
//! - [`Instance`] drives one `VirtualRouter` on a real interface: raw IP
//!   protocol 112 sockets (multicast or unicast peers, TTL 255), the
//!   virtual addresses through netlink, gratuitous ARP / unsolicited NA,
//!   an optional macvlan virtual MAC, priority 0 on clean shutdown. All
//!   sockets live in one module. [`Instance::spawn_held`] opens everything
//!   but leaves the router in Initialize until [`InstanceHandle::start`],
//!   for a caller that must not claim the addresses yet.
//! - [`anycast::Announcer`] is for fleets instead of pairs: it announces a
//!   service address by putting it on a dummy interface that a routing
//!   daemon (FRR, BIRD) exports over BGP, and withdraws it by taking it off.
//!
//! # Example
//!
//! Two routers in virtual time: the higher priority becomes master, and
//! when it shuts down the other takes over after Skew_Time.
//!
//! ```
//! use std::net::IpAddr;
//! use std::time::{Duration, Instant};
//! use edge_vrrp::{Action, Config, PacketInfo, State, VirtualRouter};
//!
//! let mut config = Config::default();
//! config.interface("eth0").vrid(51).virtual_address("198.18.0.100/24".parse().unwrap());
//! let (a_ip, b_ip): (IpAddr, IpAddr) = ("198.18.0.1".parse().unwrap(), "198.18.0.2".parse().unwrap());
//! let mut a = VirtualRouter::new(config.clone().priority(150).clone(), a_ip).unwrap();
//! let mut b = VirtualRouter::new(config.priority(100).clone(), b_ip).unwrap();
//!
//! let mut now = Instant::now();
//! a.start(now);
//! b.start(now);
//! // Run both until a is master, delivering a's adverts to b.
//! for _ in 0..100 {
//!     now += Duration::from_millis(100);
//!     for (r, src, other) in [(&mut a, a_ip, &mut b)] {
//!         r.handle_timeout(now);
//!         while let Some(action) = r.poll_action() {
//!             if let Action::Send(t) = action {
//!                 let info = PacketInfo { source: src, destination: t.destination, hop_limit: 255 };
//!                 let _ = other.handle_packet(now, info, &t.payload);
//!             }
//!         }
//!     }
//!     b.handle_timeout(now);
//!     while b.poll_action().is_some() {}
//! }
//! assert_eq!(a.state(), State::Master);
//! assert_eq!(b.state(), State::Backup);
//! ```

mod announce;
pub mod anycast;
mod checksum;
mod config;
mod error;
mod instance;
mod netlink;
mod network;
mod packet;
#[cfg(feature = "peer")]
pub mod peer;
mod router;
mod stats;
mod vmac;

pub use crate::announce::{gratuitous_arp, unsolicited_na, virtual_mac};
pub use crate::config::{Config, ConfigError, VirtualAddress};
pub use crate::error::Error;
pub use crate::instance::{Event, Instance, InstanceHandle};
pub use crate::packet::{
    Addressing, Advertisement, ChecksumMode, DecodeError, EncodeError, Field, Ipv4Header, Version,
};
pub use crate::router::{
    Action, MULTICAST_V4, MULTICAST_V6, PacketInfo, State, Transition, Transmit, VirtualRouter,
};
pub use crate::stats::{Counters, Discard};
