#![no_main]
//! The VRRP decoder on arbitrary bytes. Input: a selector byte, then
//! 0: a raw IPv4 datagram as a raw socket returns it (header + VRRP);
//! 1: a 16-byte IPv6 source address, then a VRRP message sent to ff02::12.
//! Whatever decodes must re-encode to a message that decodes the same.
use std::net::{IpAddr, Ipv6Addr};

use edge_vrrp::{Addressing, Advertisement, ChecksumMode, Ipv4Header, MULTICAST_V6};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    let (addressing, payload) = if mode % 2 == 0 {
        let Ok((header, payload)) = Ipv4Header::split(rest) else { return };
        (Addressing { source: header.source.into(), destination: header.destination.into() }, payload)
    } else {
        let Some(src) = rest.get(..16) else { return };
        let mut a = [0u8; 16];
        a.copy_from_slice(src);
        let source = IpAddr::V6(Ipv6Addr::from(a));
        (Addressing { source, destination: IpAddr::V6(MULTICAST_V6) }, &rest[16..])
    };
    if let Ok(adv) = Advertisement::decode(payload, addressing) {
        for mode in [ChecksumMode::PseudoHeader, ChecksumMode::MessageOnly] {
            let bytes = adv.encode(addressing, mode).expect("a decoded advertisement encodes");
            assert_eq!(Advertisement::decode(&bytes, addressing).as_ref(), Ok(&adv));
        }
    }
});
