//! Frames that announce a virtual address on the link: gratuitous ARP for
//! IPv4 (RFC 5227 "ARP announcement") and unsolicited Neighbor
//! Advertisement for IPv6 (RFC 4861 section 7.2.6). Pure builders; the
//! driver sends them through the AF_PACKET socket.

use std::net::{Ipv4Addr, Ipv6Addr};

use crate::checksum::Sum;

const ETHERTYPE_ARP: u16 = 0x0806;
const ETHERTYPE_IPV6: u16 = 0x86dd;
const BROADCAST: [u8; 6] = [0xff; 6];
/// Ethernet multicast for ff02::1 (all nodes).
const ALL_NODES_MAC: [u8; 6] = [0x33, 0x33, 0, 0, 0, 1];
const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
const ICMPV6: u8 = 58;

/// The VRRP virtual MAC: 00-00-5E-00-01-{VRID} (IPv4) or
/// 00-00-5E-00-02-{VRID} (IPv6), RFC 9568 section 7.3.
pub fn virtual_mac(vrid: u8, ipv6: bool) -> [u8; 6] {
    [0x00, 0x00, 0x5e, 0x00, if ipv6 { 0x02 } else { 0x01 }, vrid]
}

fn ethernet(dst: [u8; 6], src: [u8; 6], ethertype: u16, out: &mut Vec<u8>) {
    out.extend_from_slice(&dst);
    out.extend_from_slice(&src);
    out.extend_from_slice(&ethertype.to_be_bytes());
}

/// A broadcast gratuitous ARP request announcing `ip` at `mac`
/// (sender and target protocol address both `ip`).
pub fn gratuitous_arp(mac: [u8; 6], ip: Ipv4Addr) -> Vec<u8> {
    let mut f = Vec::with_capacity(42);
    ethernet(BROADCAST, mac, ETHERTYPE_ARP, &mut f);
    f.extend_from_slice(&[0, 1, 0x08, 0x00, 6, 4, 0, 1]); // Ethernet, IPv4, request
    f.extend_from_slice(&mac);
    f.extend_from_slice(&ip.octets());
    f.extend_from_slice(&BROADCAST);
    f.extend_from_slice(&ip.octets());
    f
}

/// An unsolicited Neighbor Advertisement for `ip` at `mac`, from `ip` to
/// all nodes, Override flag set, hop limit 255, with the target link-layer
/// address option.
pub fn unsolicited_na(mac: [u8; 6], ip: Ipv6Addr) -> Vec<u8> {
    let mut icmp = Vec::with_capacity(32);
    icmp.extend_from_slice(&[136, 0, 0, 0]); // type NA, code, checksum
    icmp.extend_from_slice(&[0x20, 0, 0, 0]); // O flag
    icmp.extend_from_slice(&ip.octets());
    icmp.extend_from_slice(&[2, 1]); // target link-layer address, 8 bytes
    icmp.extend_from_slice(&mac);
    let sum = Sum::default()
        .pseudo_header(ip.into(), ALL_NODES.into(), ICMPV6, icmp.len())
        .add(&icmp)
        .finish();
    icmp[2..4].copy_from_slice(&sum.to_be_bytes());

    let mut f = Vec::with_capacity(14 + 40 + icmp.len());
    ethernet(ALL_NODES_MAC, mac, ETHERTYPE_IPV6, &mut f);
    f.extend_from_slice(&[0x60, 0, 0, 0]);
    f.extend_from_slice(&(icmp.len() as u16).to_be_bytes());
    f.push(ICMPV6);
    f.push(255);
    f.extend_from_slice(&ip.octets());
    f.extend_from_slice(&ALL_NODES.octets());
    f.extend_from_slice(&icmp);
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0a];

    #[test]
    fn garp_layout() {
        let f = gratuitous_arp(MAC, Ipv4Addr::new(198, 18, 0, 100));
        assert_eq!(f.len(), 42);
        assert_eq!(&f[..6], &BROADCAST);
        assert_eq!(&f[6..12], &MAC);
        assert_eq!(&f[12..14], &[0x08, 0x06]);
        assert_eq!(&f[22..28], &MAC);
        assert_eq!(&f[28..32], &[198, 18, 0, 100]);
        assert_eq!(&f[38..42], &[198, 18, 0, 100]);
    }

    #[test]
    fn na_checksum_verifies() {
        let ip: Ipv6Addr = "2001:2::100".parse().unwrap();
        let f = unsolicited_na(MAC, ip);
        assert_eq!(f.len(), 14 + 40 + 32);
        assert_eq!(f[14 + 7], 255, "hop limit");
        let icmp = &f[54..];
        let check = Sum::default()
            .pseudo_header(ip.into(), ALL_NODES.into(), ICMPV6, icmp.len())
            .add(icmp)
            .finish();
        assert_eq!(check, 0);
        assert_eq!(&icmp[8..24], &ip.octets());
    }

    #[test]
    fn vmac() {
        assert_eq!(virtual_mac(51, false), [0, 0, 0x5e, 0, 1, 51]);
        assert_eq!(virtual_mac(7, true), [0, 0, 0x5e, 0, 2, 7]);
    }
}
