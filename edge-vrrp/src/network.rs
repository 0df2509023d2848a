//! Every socket of the crate: raw IP protocol 112 sockets for
//! advertisements and an AF_PACKET socket for gratuitous ARP / unsolicited
//! NA frames. Nothing outside this module sees a file descriptor.
//!
//! `unsafe` is allowed here only, for what socket2 does not wrap safely:
//! building a `sockaddr_ll` and reading the bytes `recvmsg` filled in.
#![allow(unsafe_code)]

use std::io::{self, Read};
use std::mem::MaybeUninit;
use std::net::{IpAddr, Ipv6Addr, SocketAddr, SocketAddrV6};

use socket2::{
    Domain, InterfaceIndexOrAddress, MaybeUninitSlice, MsgHdrMut, Protocol, SockAddr,
    SockAddrStorage, Socket, Type,
};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

use crate::checksum::IPPROTO_VRRP;
use crate::packet::Ipv4Header;
use crate::router::{MULTICAST_V4, MULTICAST_V6, PacketInfo};

/// Largest VRRP datagram we read (255 IPv6 addresses plus headers).
const RECV_BUF: usize = 8 + 255 * 16 + 64;
/// `IPV6_HOPLIMIT` control message type (linux/in6.h).
const IPV6_HOPLIMIT: i32 = 52;

/// How the router's advertisements travel.
#[derive(Debug, Clone)]
pub(crate) struct SocketPlan {
    /// Interface receiving advertisements (the base interface).
    pub(crate) recv_ifindex: u32,
    /// Interface name for SO_BINDTODEVICE on the receive socket.
    pub(crate) recv_ifname: String,
    /// Interface sending advertisements (the macvlan one with a VMAC).
    pub(crate) send_ifindex: u32,
    /// Interface name for SO_BINDTODEVICE on the send socket.
    pub(crate) send_ifname: String,
    /// Our source address.
    pub(crate) source: IpAddr,
    /// Multicast (join the group) or unicast peers.
    pub(crate) multicast: bool,
}

/// The advertisement sockets: one to receive (unbound, so that it sees
/// the multicast group) and one to send (bound to our source address).
#[derive(Debug)]
pub(crate) struct AdvertSockets {
    recv: AsyncFd<Socket>,
    send: Socket,
    v6: bool,
    /// Destination used for the checksum pseudo-header on receive.
    local: IpAddr,
    scope_id: u32,
}

impl AdvertSockets {
    pub(crate) fn open(plan: &SocketPlan) -> io::Result<Self> {
        let v6 = plan.source.is_ipv6();
        let domain = if v6 { Domain::IPV6 } else { Domain::IPV4 };
        let proto = Some(Protocol::from(i32::from(IPPROTO_VRRP)));
        let recv = Socket::new(domain, Type::RAW, proto)?;
        recv.bind_device(Some(plan.recv_ifname.as_bytes()))?;
        let send = Socket::new(domain, Type::RAW, proto)?;
        send.bind_device(Some(plan.send_ifname.as_bytes()))?;
        // The send socket is never read: keep what it queues small.
        send.set_recv_buffer_size(1)?;
        let local = if plan.multicast {
            if v6 {
                IpAddr::V6(MULTICAST_V6)
            } else {
                IpAddr::V4(MULTICAST_V4)
            }
        } else {
            plan.source
        };
        let scope_id = match plan.source {
            IpAddr::V6(a) if is_link_local(a) => plan.send_ifindex,
            _ => 0,
        };
        if v6 {
            recv.set_recv_hoplimit_v6(true)?;
            send.set_multicast_hops_v6(255)?;
            send.set_unicast_hops_v6(255)?;
            send.set_multicast_loop_v6(false)?;
            send.set_multicast_if_v6(plan.send_ifindex)?;
            send.bind(&SockAddr::from(SocketAddr::V6(SocketAddrV6::new(
                match plan.source {
                    IpAddr::V6(a) => a,
                    IpAddr::V4(_) => Ipv6Addr::UNSPECIFIED,
                },
                0,
                0,
                scope_id,
            ))))?;
            if plan.multicast {
                recv.join_multicast_v6(&MULTICAST_V6, plan.recv_ifindex)?;
            }
        } else {
            send.set_multicast_ttl_v4(255)?;
            send.set_ttl_v4(255)?;
            send.set_multicast_loop_v4(false)?;
            send.bind(&SockAddr::from(SocketAddr::new(plan.source, 0)))?;
            if plan.multicast {
                recv.join_multicast_v4_n(
                    &MULTICAST_V4,
                    &InterfaceIndexOrAddress::Index(plan.recv_ifindex),
                )?;
            }
        }
        recv.set_nonblocking(true)?;
        send.set_nonblocking(true)?;
        // SAFETY: `Socket` owns its descriptor, keeps it open until dropped
        // and always returns the same one from `as_raw_fd`; the AsyncFd owns
        // the socket for its whole life.
        let recv = unsafe { AsyncFd::register_with_interest(recv, Interest::READABLE) }?;
        Ok(AdvertSockets {
            recv,
            send,
            v6,
            local,
            scope_id,
        })
    }

    /// Sends one advertisement (an IP payload) to `destination`.
    pub(crate) fn send(&self, destination: IpAddr, payload: &[u8]) -> io::Result<()> {
        let addr = match destination {
            IpAddr::V6(a) => SocketAddr::V6(SocketAddrV6::new(
                a,
                0,
                0,
                if is_link_local(a) || a.is_multicast() {
                    self.scope_id
                } else {
                    0
                },
            )),
            IpAddr::V4(a) => SocketAddr::new(IpAddr::V4(a), 0),
        };
        self.send
            .send_to(payload, &SockAddr::from(addr))
            .map(|_| ())
    }

    /// Waits for the next datagram; returns its metadata and copies the
    /// VRRP message into `out`.
    pub(crate) async fn recv(&self, out: &mut Vec<u8>) -> io::Result<PacketInfo> {
        loop {
            let res = self
                .recv
                .async_io(Interest::READABLE, |sock| {
                    if self.v6 {
                        self.recv_v6(sock, out)
                    } else {
                        recv_v4(sock, out)
                    }
                })
                .await;
            match res {
                Ok(Some(info)) => return Ok(info),
                // Not a usable datagram (a bad IPv4 header): read the next.
                Ok(None) => continue,
                Err(e) => return Err(e),
            }
        }
    }

    fn recv_v6(&self, sock: &Socket, out: &mut Vec<u8>) -> io::Result<Option<PacketInfo>> {
        let mut buf = [MaybeUninit::<u8>::uninit(); RECV_BUF];
        let mut control = [MaybeUninit::<u8>::uninit(); 64];
        let mut addr = SockAddr::from(SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), 0));
        let mut bufs = [MaybeUninitSlice::new(&mut buf)];
        let mut msg = MsgHdrMut::new()
            .with_addr(&mut addr)
            .with_buffers(&mut bufs)
            .with_control(&mut control);
        let n = sock.recvmsg(&mut msg, 0)?;
        let control_len = msg.control_len();
        let n = n.min(RECV_BUF);
        // SAFETY: recvmsg wrote `n` bytes into the start of `buf`, and
        // `control_len` bytes into `control` (both capped at the lengths).
        let (data, control) = unsafe {
            (
                std::slice::from_raw_parts(buf.as_ptr().cast::<u8>(), n),
                std::slice::from_raw_parts(
                    control.as_ptr().cast::<u8>(),
                    control_len.min(control.len()),
                ),
            )
        };
        let Some(SocketAddr::V6(source)) = addr.as_socket() else {
            return Ok(None);
        };
        out.clear();
        out.extend_from_slice(data);
        Ok(Some(PacketInfo {
            source: IpAddr::V6(*source.ip()),
            destination: self.local,
            // A missing control message means we cannot prove 255.
            hop_limit: hop_limit_from_control(control).unwrap_or(0),
        }))
    }
}

fn recv_v4(mut sock: &Socket, out: &mut Vec<u8>) -> io::Result<Option<PacketInfo>> {
    let mut buf = [0u8; RECV_BUF];
    let n = sock.read(&mut buf)?;
    let Some(datagram) = buf.get(..n) else {
        return Ok(None);
    };
    let Ok((header, payload)) = Ipv4Header::split(datagram) else {
        return Ok(None);
    };
    out.clear();
    out.extend_from_slice(payload);
    Ok(Some(PacketInfo {
        source: IpAddr::V4(header.source),
        destination: IpAddr::V4(header.destination),
        hop_limit: header.ttl,
    }))
}

/// Walks `struct cmsghdr` records (Linux, 64-bit or 32-bit `size_t` len)
/// looking for IPV6_HOPLIMIT, without trusting any length.
fn hop_limit_from_control(control: &[u8]) -> Option<u8> {
    let word = std::mem::size_of::<usize>();
    let header = word + 8;
    let mut pos = 0usize;
    while let Some(h) = control.get(pos..pos.checked_add(header)?) {
        let len = usize::from_ne_bytes(h.get(..word)?.try_into().ok()?);
        let level = i32::from_ne_bytes(h.get(word..word + 4)?.try_into().ok()?);
        let kind = i32::from_ne_bytes(h.get(word + 4..word + 8)?.try_into().ok()?);
        if len < header {
            return None;
        }
        if level == libc::IPPROTO_IPV6 && kind == IPV6_HOPLIMIT {
            let data = control.get(pos + header..pos.checked_add(len)?)?;
            let v = i32::from_ne_bytes(data.get(..4)?.try_into().ok()?);
            return u8::try_from(v).ok();
        }
        let step = len.checked_add(word - 1)? / word * word;
        pos = pos.checked_add(step)?;
    }
    None
}

fn is_link_local(a: Ipv6Addr) -> bool {
    a.segments()[0] & 0xffc0 == 0xfe80
}

/// An AF_PACKET socket sending whole Ethernet frames on one interface.
#[derive(Debug)]
pub(crate) struct LinkSocket {
    socket: Socket,
    ifindex: u32,
}

impl LinkSocket {
    pub(crate) fn open(ifindex: u32) -> io::Result<Self> {
        // Protocol 0: this socket only sends, it receives nothing.
        let socket = Socket::new(Domain::PACKET, Type::RAW, None)?;
        socket.set_nonblocking(true)?;
        Ok(LinkSocket { socket, ifindex })
    }

    /// Sends one frame (Ethernet header included).
    pub(crate) fn send_frame(&self, frame: &[u8]) -> io::Result<()> {
        let ethertype = frame
            .get(12..14)
            .map(|b| u16::from_be_bytes([b[0], b[1]]))
            .unwrap_or(0);
        let mut storage = SockAddrStorage::zeroed();
        // SAFETY: SockAddrStorage is a `sockaddr_storage`, larger than and
        // aligned for `sockaddr_ll`; it is zeroed, a valid `sockaddr_ll`.
        let ll = unsafe { storage.view_as::<libc::sockaddr_ll>() };
        ll.sll_family = libc::AF_PACKET as u16;
        ll.sll_protocol = ethertype.to_be();
        ll.sll_ifindex = i32::try_from(self.ifindex)
            .map_err(|_| io::Error::other("interface index out of range"))?;
        ll.sll_halen = 6;
        if let Some(dst) = frame.get(..6) {
            ll.sll_addr[..6].copy_from_slice(dst);
        }
        let len = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
        // SAFETY: the storage holds an initialised `sockaddr_ll` with
        // family AF_PACKET and `len` is its size.
        let addr = unsafe { SockAddr::new(storage, len) };
        self.socket.send_to(frame, &addr).map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_message_parsing_is_bounded() {
        let word = std::mem::size_of::<usize>();
        let mut c = Vec::new();
        c.extend_from_slice(&(word + 8 + 4).to_ne_bytes());
        c.extend_from_slice(&libc::IPPROTO_IPV6.to_ne_bytes());
        c.extend_from_slice(&IPV6_HOPLIMIT.to_ne_bytes());
        c.extend_from_slice(&255i32.to_ne_bytes());
        assert_eq!(hop_limit_from_control(&c), Some(255));
        for n in 0..c.len() {
            assert_eq!(hop_limit_from_control(&c[..n]), None);
        }
        let mut bad = c.clone();
        bad[..word].copy_from_slice(&usize::MAX.to_ne_bytes());
        assert_eq!(hop_limit_from_control(&bad), None);
    }
}
