//! The Internet checksum (RFC 1071) and the pseudo-headers VRRP covers.

use std::net::IpAddr;

/// IP protocol number of VRRP.
pub(crate) const IPPROTO_VRRP: u8 = 112;

/// One's-complement sum of 16-bit words, folded later by [`finish`].
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Sum(u32);

impl Sum {
    pub(crate) fn add(mut self, bytes: &[u8]) -> Self {
        let mut chunks = bytes.chunks_exact(2);
        for pair in &mut chunks {
            self.0 = self
                .0
                .wrapping_add(u32::from(u16::from_be_bytes([pair[0], pair[1]])));
            self.fold_once();
        }
        if let [last] = chunks.remainder() {
            self.0 = self.0.wrapping_add(u32::from(*last) << 8);
            self.fold_once();
        }
        self
    }

    fn fold_once(&mut self) {
        self.0 = (self.0 & 0xffff) + (self.0 >> 16);
    }

    /// Adds the pseudo-header of `src`/`dst` for an upper-layer payload of
    /// `len` bytes with next header / protocol `proto`. Mixed families add
    /// nothing (callers reject them first).
    pub(crate) fn pseudo_header(self, src: IpAddr, dst: IpAddr, proto: u8, len: usize) -> Self {
        match (src, dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                let len = u16::try_from(len).unwrap_or(u16::MAX).to_be_bytes();
                self.add(&s.octets())
                    .add(&d.octets())
                    .add(&[0, proto])
                    .add(&len)
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                let len = u32::try_from(len).unwrap_or(u32::MAX).to_be_bytes();
                self.add(&s.octets())
                    .add(&d.octets())
                    .add(&len)
                    .add(&[0, 0, 0, proto])
            }
            _ => self,
        }
    }

    /// The checksum to put on the wire: the complement of the folded sum.
    pub(crate) fn finish(mut self) -> u16 {
        self.fold_once();
        self.fold_once();
        !(self.0 as u16)
    }
}

/// Checksum of `bytes` alone (VRRPv2, IPv4 headers).
pub(crate) fn of(bytes: &[u8]) -> u16 {
    Sum::default().add(bytes).finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc1071_example() {
        // RFC 1071 section 3: the sum of these words is 0xddf2.
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(of(&data), !0xddf2);
    }

    #[test]
    fn data_with_its_checksum_sums_to_zero() {
        let mut data = vec![
            0x45, 0x00, 0x00, 0x1c, 0x12, 0x34, 0x00, 0x00, 0xff, 0x70, 0, 0,
        ];
        let c = of(&data);
        data[10..12].copy_from_slice(&c.to_be_bytes());
        assert_eq!(of(&data), 0);
    }

    #[test]
    fn odd_length_pads_with_zero() {
        assert_eq!(of(&[0xab]), of(&[0xab, 0x00]));
    }
}
