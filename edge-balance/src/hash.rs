//! Stable hashing of request keys and endpoint keys.
//!
//! The two proxies of an HA pair must send the same client to the same
//! endpoint, so hashing must not depend on a per-process random seed or on
//! the Rust version: this module uses its own fixed 64-bit mixer (the
//! SplitMix64 finalizer over 8-byte words) instead of `std`'s `RandomState`.

use std::hash::{Hash, Hasher};
use std::net::IpAddr;

/// A precomputed hash key for a request, as a request extension: it
/// overrides the policy's [`HashSource`](crate::HashSource).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct HashKey(pub u64);

/// A request extension for sticky sessions: send the request to the
/// endpoint whose [`endpoint_id`] this is while that endpoint is available
/// (healthy, not draining, not already tried); otherwise the policy picks.
/// edge-bin reads it from a cookie it set on an earlier response
/// (HAProxy's `cookie SRV insert`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Prefer(pub u64);

/// A stable id of an endpoint key, for a sticky-session cookie
/// ([`Prefer`]): the same for the same key in every process of the same
/// build, so the two proxies of a pair agree.
pub fn endpoint_id<K: Hash + ?Sized>(key: &K) -> u64 {
    hash_with_seed(key, 0x7374_6963_6b79)
}

/// SplitMix64's finalizer: a strong 64-bit bit mixer.
pub(crate) fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A deterministic [`Hasher`] with a seed; identical output on every
/// platform, process and Rust version for the same `write` calls.
#[derive(Debug, Clone)]
pub(crate) struct StableHasher {
    state: u64,
    len: u64,
}

impl StableHasher {
    pub(crate) fn with_seed(seed: u64) -> Self {
        Self {
            state: mix64(seed ^ 0x9e37_79b9_7f4a_7c15),
            len: 0,
        }
    }

    fn word(&mut self, w: u64) {
        self.state = mix64(self.state ^ w).rotate_left(17).wrapping_add(w);
    }
}

impl Hasher for StableHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.word(u64::from_le_bytes(w));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut w = [0u8; 8];
            w[..rest.len()].copy_from_slice(rest);
            self.word(u64::from_le_bytes(w) ^ ((rest.len() as u64) << 59));
        }
        self.len = self.len.wrapping_add(bytes.len() as u64);
    }

    fn write_u8(&mut self, i: u8) {
        self.word(u64::from(i) | 0x100);
    }

    fn write_u16(&mut self, i: u16) {
        self.word(u64::from(i) | 0x2_0000);
    }

    fn write_u32(&mut self, i: u32) {
        self.word(u64::from(i) | 0x4_0000_0000);
    }

    fn write_u64(&mut self, i: u64) {
        self.word(i);
    }

    fn write_usize(&mut self, i: usize) {
        // Same result on 32- and 64-bit targets.
        self.word(i as u64);
    }

    fn finish(&self) -> u64 {
        mix64(self.state ^ self.len)
    }
}

/// Hashes any `Hash` value with the stable hasher and a seed.
pub(crate) fn hash_with_seed<H: Hash + ?Sized>(value: &H, seed: u64) -> u64 {
    let mut h = StableHasher::with_seed(seed);
    value.hash(&mut h);
    h.finish()
}

/// The hash key of a byte string (a header or cookie value).
pub fn hash_bytes(bytes: &[u8]) -> u64 {
    let mut h = StableHasher::with_seed(0x6564_6765);
    h.write(bytes);
    h.finish()
}

/// The hash key of a client IP address. An IPv4-mapped IPv6 address hashes
/// like the IPv4 address, so dual-stack listeners agree.
pub fn hash_ip(ip: IpAddr) -> u64 {
    match ip {
        IpAddr::V4(v4) => hash_bytes(&v4.octets()),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => hash_bytes(&v4.octets()),
            None => hash_bytes(&v6.octets()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    #[test]
    fn hashes_are_stable_across_builds() {
        // Pinned values: a change here breaks stickiness between the two
        // proxies of a pair running different builds.
        assert_eq!(
            [
                hash_bytes(b""),
                hash_bytes(b"session-1"),
                hash_ip(IpAddr::V4(Ipv4Addr::new(198, 18, 0, 7)))
            ],
            [
                17_703_936_332_342_173_359,
                14_996_832_341_437_219_370,
                15_553_357_057_246_775_536
            ]
        );
        let a = hash_bytes(b"session-1");
        let b = hash_bytes(b"session-2");
        assert_ne!(a, b);
        assert_eq!(hash_bytes(b"session-1"), a);
        assert_ne!(hash_bytes(b"ab"), hash_bytes(b"ab\0"));
    }

    #[test]
    fn mapped_v6_hashes_like_v4() {
        let v4 = Ipv4Addr::new(198, 18, 0, 7);
        assert_eq!(
            hash_ip(IpAddr::V4(v4)),
            hash_ip(IpAddr::V6(v4.to_ipv6_mapped()))
        );
        assert_ne!(
            hash_ip(IpAddr::V4(v4)),
            hash_ip(IpAddr::V6(Ipv6Addr::LOCALHOST))
        );
    }
}
