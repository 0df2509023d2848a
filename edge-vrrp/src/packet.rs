//! VRRP advertisement codec: VRRPv3 (RFC 9568, IPv4 and IPv6) and VRRPv2
//! (RFC 3768, IPv4).
//!
//! Decoding reads through a [`Reader`] that checks every length and refuses
//! trailing bytes; each rejection names the field that was wrong.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use crate::checksum::{self, IPPROTO_VRRP, Sum};

/// Length of the fixed VRRP header (both versions).
const HEADER_LEN: usize = 8;
/// Length of the VRRPv2 authentication data trailer.
pub(crate) const V2_AUTH_DATA_LEN: usize = 8;
/// The only VRRP message type (ADVERTISEMENT).
const TYPE_ADVERTISEMENT: u8 = 1;
/// Largest VRRPv3 Max Adver Int (12 bits, centiseconds).
pub(crate) const V3_MAX_INTERVAL_CS: u16 = 0x0fff;

/// VRRP protocol version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Version {
    /// VRRPv2 (RFC 3768): IPv4 only, interval in whole seconds.
    V2,
    /// VRRPv3 (RFC 9568): IPv4 and IPv6, interval in centiseconds.
    V3,
}

impl Version {
    fn number(self) -> u8 {
        match self {
            Version::V2 => 2,
            Version::V3 => 3,
        }
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.number())
    }
}

/// How a VRRPv3 advertisement over IPv4 is checksummed when sent.
///
/// Both forms are accepted on receive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ChecksumMode {
    /// Include the IPv4 pseudo-header, as keepalived sends and requires
    /// (and as VRRPv3 over IPv6 always does). The default.
    #[default]
    PseudoHeader,
    /// Cover the VRRP message only, as RFC 9568 section 5.2.8 words it for
    /// IPv4. keepalived rejects this form.
    MessageOnly,
}

/// Where a packet came from and went to: the checksum's pseudo-header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Addressing {
    /// IP source address.
    pub source: IpAddr,
    /// IP destination address (the multicast group or our unicast address).
    pub destination: IpAddr,
}

/// A VRRP ADVERTISEMENT.
///
/// VRRPv3 (RFC 9568 section 5.1), the addresses are IPv4 or IPv6 as the IP
/// header that carried it:
///
/// ```text
///  0                   1                   2                   3
///  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |Version| Type  | Virtual Rtr ID|   Priority    |Count IPvX Addr|
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |(rsvd) |     Max Adver Int     |          Checksum             |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                                                               |
/// +                                                               +
/// |                       IPvX Address(es)                        |
/// +                                                               +
/// |                                                               |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// ```
///
/// VRRPv2 (RFC 3768 section 5.1), IPv4 only:
///
/// ```text
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |Version| Type  | Virtual Rtr ID|   Priority    | Count IP Addrs|
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |   Auth Type   |   Adver Int   |          Checksum             |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                         IP Address (1)                        |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                            .                                  |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                     Authentication Data (1)                   |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                     Authentication Data (2)                   |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Advertisement {
    /// Protocol version.
    pub version: Version,
    /// Virtual Router Identifier, 1–255.
    pub vrid: u8,
    /// Sender's priority: 255 address owner, 0 "master is leaving".
    pub priority: u8,
    /// Max Adver Int as on the wire: centiseconds (v3, 12 bits) or
    /// seconds (v2). See [`Advertisement::interval`].
    pub max_advert_int: u16,
    /// VRRPv2 Auth Type (0 = none, 1 = simple text password); always 0
    /// for v3.
    pub auth_type: u8,
    /// VRRPv2 Authentication Data (the password, zero-padded, with auth
    /// type 1); all zeros for v3.
    pub auth_data: [u8; V2_AUTH_DATA_LEN],
    /// The virtual addresses, all of one family.
    pub addresses: Vec<IpAddr>,
}

impl Advertisement {
    /// The advertisement interval as a duration.
    pub fn interval(&self) -> Duration {
        match self.version {
            Version::V2 => Duration::from_secs(u64::from(self.max_advert_int)),
            Version::V3 => Duration::from_millis(u64::from(self.max_advert_int) * 10),
        }
    }

    /// Encoded length in bytes.
    pub fn encoded_len(&self) -> usize {
        let per = match self.addresses.first() {
            Some(IpAddr::V6(_)) => 16,
            _ => 4,
        };
        let trailer = match self.version {
            Version::V2 => V2_AUTH_DATA_LEN,
            Version::V3 => 0,
        };
        HEADER_LEN + per * self.addresses.len() + trailer
    }

    /// Encodes the advertisement with its checksum for a packet sent from
    /// `addressing.source` to `addressing.destination`.
    pub fn encode(
        &self,
        addressing: Addressing,
        mode: ChecksumMode,
    ) -> Result<Vec<u8>, EncodeError> {
        let family = family_of(addressing)?;
        let count = u8::try_from(self.addresses.len())
            .map_err(|_| EncodeError::TooManyAddresses(self.addresses.len()))?;
        if count == 0 {
            return Err(EncodeError::NoAddresses);
        }
        if let Some(bad) = self
            .addresses
            .iter()
            .find(|a| a.is_ipv6() != (family == Family::V6))
        {
            return Err(EncodeError::MixedFamilies(*bad));
        }
        let mut out = Vec::with_capacity(self.encoded_len());
        out.push((self.version.number() << 4) | TYPE_ADVERTISEMENT);
        out.push(self.vrid);
        out.push(self.priority);
        out.push(count);
        match self.version {
            Version::V2 => {
                if family == Family::V6 {
                    return Err(EncodeError::V2OverIpv6);
                }
                let secs = u8::try_from(self.max_advert_int)
                    .map_err(|_| EncodeError::Interval(self.max_advert_int))?;
                out.push(self.auth_type);
                out.push(secs);
            }
            Version::V3 => {
                if self.max_advert_int > V3_MAX_INTERVAL_CS {
                    return Err(EncodeError::Interval(self.max_advert_int));
                }
                out.extend_from_slice(&self.max_advert_int.to_be_bytes());
            }
        }
        out.extend_from_slice(&[0, 0]);
        for addr in &self.addresses {
            match addr {
                IpAddr::V4(a) => out.extend_from_slice(&a.octets()),
                IpAddr::V6(a) => out.extend_from_slice(&a.octets()),
            }
        }
        if self.version == Version::V2 {
            out.extend_from_slice(&self.auth_data);
        }
        let sum = match (self.version, family, mode) {
            (Version::V2, _, _) | (Version::V3, Family::V4, ChecksumMode::MessageOnly) => {
                checksum::of(&out)
            }
            (Version::V3, _, _) => Sum::default()
                .pseudo_header(
                    addressing.source,
                    addressing.destination,
                    IPPROTO_VRRP,
                    out.len(),
                )
                .add(&out)
                .finish(),
        };
        out[6..8].copy_from_slice(&sum.to_be_bytes());
        Ok(out)
    }

    /// Decodes one advertisement (the IP payload, without the IP header)
    /// received from `addressing.source` sent to `addressing.destination`.
    pub fn decode(bytes: &[u8], addressing: Addressing) -> Result<Self, DecodeError> {
        let family = family_of(addressing).map_err(|_| DecodeError::MixedFamilies)?;
        let mut r = Reader::new(bytes);
        let vt = r.u8(Field::VersionType)?;
        let version = match vt >> 4 {
            2 => Version::V2,
            3 => Version::V3,
            other => return Err(DecodeError::Version(other)),
        };
        if vt & 0x0f != TYPE_ADVERTISEMENT {
            return Err(DecodeError::Type(vt & 0x0f));
        }
        if version == Version::V2 && family == Family::V6 {
            return Err(DecodeError::V2OverIpv6);
        }
        let vrid = r.u8(Field::Vrid)?;
        if vrid == 0 {
            return Err(DecodeError::Vrid(0));
        }
        let priority = r.u8(Field::Priority)?;
        let count = r.u8(Field::Count)?;
        let (auth_type, max_advert_int) = match version {
            Version::V2 => {
                let auth = r.u8(Field::AuthType)?;
                (auth, u16::from(r.u8(Field::Interval)?))
            }
            Version::V3 => (0, r.u16(Field::Interval)? & V3_MAX_INTERVAL_CS),
        };
        if max_advert_int == 0 {
            return Err(DecodeError::Interval(0));
        }
        let wire_checksum = r.u16(Field::Checksum)?;
        let per = match family {
            Family::V4 => 4,
            Family::V6 => 16,
        };
        let trailer = match version {
            Version::V2 => V2_AUTH_DATA_LEN,
            Version::V3 => 0,
        };
        let body = r.rest();
        if count == 0 {
            return Err(DecodeError::NoAddresses);
        }
        let want = usize::from(count) * per + trailer;
        if body.len() < want {
            return Err(DecodeError::Count {
                count,
                available: body.len(),
            });
        }
        if body.len() > want {
            return Err(DecodeError::TrailingBytes(body.len() - want));
        }
        let mut addresses = Vec::with_capacity(usize::from(count));
        let mut a = Reader::new(body);
        for _ in 0..count {
            let raw = a.take(per, Field::Addresses)?;
            addresses.push(match <[u8; 16]>::try_from(raw) {
                Ok(v6) => IpAddr::V6(Ipv6Addr::from(v6)),
                Err(_) => match <[u8; 4]>::try_from(raw) {
                    Ok(v4) => IpAddr::V4(Ipv4Addr::from(v4)),
                    Err(_) => return Err(DecodeError::Truncated(Field::Addresses)),
                },
            });
        }
        let mut auth_data = [0; V2_AUTH_DATA_LEN];
        if version == Version::V2 {
            auth_data.copy_from_slice(a.take(V2_AUTH_DATA_LEN, Field::AuthData)?);
        }
        let ok = match (version, family) {
            (Version::V2, _) => checksum::of(bytes) == 0,
            (Version::V3, Family::V6) => pseudo_sum(bytes, addressing) == 0,
            // keepalived's form first, then RFC 9568's wording.
            (Version::V3, Family::V4) => {
                pseudo_sum(bytes, addressing) == 0 || checksum::of(bytes) == 0
            }
        };
        if !ok {
            return Err(DecodeError::Checksum(wire_checksum));
        }
        Ok(Advertisement {
            version,
            vrid,
            priority,
            max_advert_int,
            auth_type,
            auth_data,
            addresses,
        })
    }
}

fn pseudo_sum(bytes: &[u8], addressing: Addressing) -> u16 {
    Sum::default()
        .pseudo_header(
            addressing.source,
            addressing.destination,
            IPPROTO_VRRP,
            bytes.len(),
        )
        .add(bytes)
        .finish()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    V4,
    V6,
}

fn family_of(addressing: Addressing) -> Result<Family, EncodeError> {
    match (addressing.source, addressing.destination) {
        (IpAddr::V4(_), IpAddr::V4(_)) => Ok(Family::V4),
        (IpAddr::V6(_), IpAddr::V6(_)) => Ok(Family::V6),
        _ => Err(EncodeError::MixedAddressing),
    }
}

/// A header field of a VRRP or IPv4 packet, as named in errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Field {
    /// Version and Type (first byte).
    VersionType,
    /// Virtual Rtr ID.
    Vrid,
    /// Priority.
    Priority,
    /// Count IPvX Addr.
    Count,
    /// VRRPv2 Auth Type.
    AuthType,
    /// VRRPv2 Authentication Data.
    AuthData,
    /// Max Adver Int / Adver Int.
    Interval,
    /// Checksum.
    Checksum,
    /// The address list.
    Addresses,
    /// The IPv4 header.
    Ipv4Header,
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Field::VersionType => "version/type",
            Field::Vrid => "virtual router id",
            Field::Priority => "priority",
            Field::Count => "address count",
            Field::AuthType => "auth type",
            Field::AuthData => "authentication data",
            Field::Interval => "advertisement interval",
            Field::Checksum => "checksum",
            Field::Addresses => "addresses",
            Field::Ipv4Header => "IPv4 header",
        })
    }
}

/// Why a received packet was not a valid advertisement.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The packet ended inside a field.
    #[error("packet truncated in the {0} field")]
    Truncated(Field),
    /// Version nibble is neither 2 nor 3.
    #[error("unsupported VRRP version {0}")]
    Version(u8),
    /// Type nibble is not 1 (ADVERTISEMENT).
    #[error("unknown VRRP message type {0}")]
    Type(u8),
    /// VRID 0 is reserved.
    #[error("invalid virtual router id {0}")]
    Vrid(u8),
    /// Interval 0 would make every timer fire at once.
    #[error("invalid advertisement interval {0}")]
    Interval(u16),
    /// Count IPvX Addr is 0.
    #[error("advertisement carries no addresses")]
    NoAddresses,
    /// Count IPvX Addr says more addresses than the packet holds.
    #[error("address count {count} does not fit the {available} bytes that follow the header")]
    Count {
        /// The count field.
        count: u8,
        /// Bytes after the fixed header.
        available: usize,
    },
    /// Bytes after the last address (v3) or the auth data (v2).
    #[error("{0} trailing bytes after the advertisement")]
    TrailingBytes(usize),
    /// Checksum did not verify (the value on the wire is given).
    #[error("bad checksum {0:#06x}")]
    Checksum(u16),
    /// VRRPv2 only runs over IPv4.
    #[error("VRRPv2 advertisement received over IPv6")]
    V2OverIpv6,
    /// Source and destination of the IP header are of different families.
    #[error("IP source and destination of different families")]
    MixedFamilies,
    /// The IPv4 header is malformed (length, version, protocol).
    #[error("bad IPv4 header: {0}")]
    Ipv4Header(&'static str),
}

/// Why an advertisement could not be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// No virtual addresses.
    #[error("an advertisement needs at least one address")]
    NoAddresses,
    /// More than 255 addresses.
    #[error("{0} addresses; at most 255 fit in an advertisement")]
    TooManyAddresses(usize),
    /// An address of the other family than the IP header's.
    #[error("address {0} is not of the packet's address family")]
    MixedFamilies(IpAddr),
    /// Source and destination of different families.
    #[error("IP source and destination of different families")]
    MixedAddressing,
    /// The interval does not fit the version's field.
    #[error("interval {0} does not fit the version's Max Adver Int field")]
    Interval(u16),
    /// VRRPv2 over IPv6.
    #[error("VRRPv2 cannot run over IPv6")]
    V2OverIpv6,
}

/// The IPv4 header fields the receiver needs (a raw IPv4 socket returns
/// the header in front of the VRRP message).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Header {
    /// Time to live.
    pub ttl: u8,
    /// Source address.
    pub source: Ipv4Addr,
    /// Destination address.
    pub destination: Ipv4Addr,
}

impl Ipv4Header {
    /// Splits a raw IPv4 datagram into its header and its VRRP payload.
    /// The payload is cut at the header's Total Length.
    pub fn split(bytes: &[u8]) -> Result<(Ipv4Header, &[u8]), DecodeError> {
        let mut r = Reader::new(bytes);
        let vihl = r.u8(Field::Ipv4Header)?;
        if vihl >> 4 != 4 {
            return Err(DecodeError::Ipv4Header("version is not 4"));
        }
        let ihl = usize::from(vihl & 0x0f) * 4;
        if ihl < 20 {
            return Err(DecodeError::Ipv4Header("header length below 20"));
        }
        r.take(1, Field::Ipv4Header)?; // DSCP/ECN
        let total = usize::from(r.u16(Field::Ipv4Header)?);
        r.take(4, Field::Ipv4Header)?; // identification, flags, fragment offset
        let ttl = r.u8(Field::Ipv4Header)?;
        let proto = r.u8(Field::Ipv4Header)?;
        if proto != IPPROTO_VRRP {
            return Err(DecodeError::Ipv4Header("protocol is not 112"));
        }
        r.take(2, Field::Ipv4Header)?; // header checksum (the kernel checked it)
        let source = r.ipv4(Field::Ipv4Header)?;
        let destination = r.ipv4(Field::Ipv4Header)?;
        if total < ihl || total > bytes.len() {
            return Err(DecodeError::Ipv4Header(
                "total length does not match the datagram",
            ));
        }
        let payload = bytes
            .get(ihl..total)
            .ok_or(DecodeError::Truncated(Field::Ipv4Header))?;
        Ok((
            Ipv4Header {
                ttl,
                source,
                destination,
            },
            payload,
        ))
    }
}

/// A bounds-checked cursor over received bytes (in the manner of rustls'
/// `codec::Reader`): every read says which field ran short.
#[derive(Debug)]
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    fn take(&mut self, n: usize, field: Field) -> Result<&'a [u8], DecodeError> {
        let end = self
            .pos
            .checked_add(n)
            .ok_or(DecodeError::Truncated(field))?;
        let out = self
            .buf
            .get(self.pos..end)
            .ok_or(DecodeError::Truncated(field))?;
        self.pos = end;
        Ok(out)
    }

    fn u8(&mut self, field: Field) -> Result<u8, DecodeError> {
        Ok(self.take(1, field)?[0])
    }

    fn u16(&mut self, field: Field) -> Result<u16, DecodeError> {
        let b = self.take(2, field)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn ipv4(&mut self, field: Field) -> Result<Ipv4Addr, DecodeError> {
        let b = self.take(4, field)?;
        Ok(Ipv4Addr::new(b[0], b[1], b[2], b[3]))
    }

    fn rest(&mut self) -> &'a [u8] {
        let out = self.buf.get(self.pos..).unwrap_or(&[]);
        self.pos = self.buf.len();
        out
    }
}

#[cfg(test)]
#[path = "packet_tests.rs"]
mod tests;
