//! PROXY protocol (HAProxy's spec): v1 and v2 headers read from trusted
//! upstream load balancers, and v2 headers written to passthrough backends.
//!
//! ```text
//! v2:  0                   1                   2                   3
//!     +---------------------------------------------------------------+
//!     |        signature \r\n\r\n\0\r\nQUIT\n (12 bytes)              |
//!     +-------+-------+---------------+-------------------------------+
//!     |ver|cmd|fam|prt|    length     |  addresses, then TLVs ...     |
//!     +-------+-------+---------------+-------------------------------+
//! ```

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use tokio::io::{AsyncRead, AsyncReadExt};

const V2_SIG: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
const V1_MAX: usize = 107;
/// Largest v2 payload accepted (addresses plus TLVs).
const V2_MAX_PAYLOAD: usize = 1024;
/// TLV type carrying the host name (here: the TLS SNI).
const PP2_TYPE_AUTHORITY: u8 = 0x02;

/// What was wrong with a PROXY header.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProxyHeaderError {
    #[error("connection closed or unreadable before the PROXY header was complete")]
    Truncated,
    #[error("no PROXY protocol signature")]
    NoSignature,
    #[error("PROXY v1 line is longer than 107 bytes or not terminated by CRLF")]
    V1TooLong,
    #[error("malformed PROXY v1 field: {0}")]
    V1Field(&'static str),
    #[error("unsupported PROXY v2 version {0}")]
    V2Version(u8),
    #[error("unsupported PROXY v2 command {0}")]
    V2Command(u8),
    #[error("PROXY v2 length {0} out of range for its address family")]
    V2Length(usize),
}

/// Reads one PROXY v1 or v2 header, consuming exactly its bytes.
///
/// Returns the original client address, or `None` for `LOCAL` / `UNKNOWN`
/// (health checks from the load balancer itself).
pub async fn read_header<S: AsyncRead + Unpin>(
    s: &mut S,
) -> Result<Option<SocketAddr>, ProxyHeaderError> {
    let mut head = [0u8; 12];
    s.read_exact(&mut head)
        .await
        .map_err(|_| ProxyHeaderError::Truncated)?;
    if head == V2_SIG {
        let mut rest = [0u8; 4];
        s.read_exact(&mut rest)
            .await
            .map_err(|_| ProxyHeaderError::Truncated)?;
        let len = usize::from(u16::from_be_bytes([rest[2], rest[3]]));
        if len > V2_MAX_PAYLOAD {
            return Err(ProxyHeaderError::V2Length(len));
        }
        let mut payload = vec![0u8; len];
        s.read_exact(&mut payload)
            .await
            .map_err(|_| ProxyHeaderError::Truncated)?;
        decode_v2(rest[0], rest[1], &payload)
    } else if head.starts_with(b"PROXY ") {
        let mut line = head.to_vec();
        while !line.ends_with(b"\r\n") {
            if line.len() >= V1_MAX {
                return Err(ProxyHeaderError::V1TooLong);
            }
            let b = s.read_u8().await.map_err(|_| ProxyHeaderError::Truncated)?;
            line.push(b);
        }
        decode_v1(&line)
    } else {
        Err(ProxyHeaderError::NoSignature)
    }
}

/// Decodes the PROXY v1 or v2 header at the start of `buf`, without I/O:
/// the client address (as [`read_header`] returns it) and the header's
/// length. [`ProxyHeaderError::Truncated`] means `buf` ends before the
/// header does. [`read_header`] reads exactly the bytes this accepts and
/// gives the same answer.
pub fn decode(buf: &[u8]) -> Result<(Option<SocketAddr>, usize), ProxyHeaderError> {
    let head = buf.get(..12).ok_or(ProxyHeaderError::Truncated)?;
    if head == V2_SIG {
        let rest = buf.get(12..16).ok_or(ProxyHeaderError::Truncated)?;
        let len = usize::from(u16::from_be_bytes([rest[2], rest[3]]));
        if len > V2_MAX_PAYLOAD {
            return Err(ProxyHeaderError::V2Length(len));
        }
        let payload = buf.get(16..16 + len).ok_or(ProxyHeaderError::Truncated)?;
        decode_v2(rest[0], rest[1], payload).map(|a| (a, 16 + len))
    } else if head.starts_with(b"PROXY ") {
        // As read_header: the line ends at the first CRLF from byte 12 on.
        let mut n = 12;
        loop {
            let line = buf.get(..n).ok_or(ProxyHeaderError::Truncated)?;
            if line.ends_with(b"\r\n") {
                return decode_v1(line).map(|a| (a, n));
            }
            if n >= V1_MAX {
                return Err(ProxyHeaderError::V1TooLong);
            }
            n += 1;
        }
    } else {
        Err(ProxyHeaderError::NoSignature)
    }
}

fn decode_v2(ver_cmd: u8, fam: u8, payload: &[u8]) -> Result<Option<SocketAddr>, ProxyHeaderError> {
    if ver_cmd >> 4 != 2 {
        return Err(ProxyHeaderError::V2Version(ver_cmd >> 4));
    }
    match ver_cmd & 0x0f {
        0 => return Ok(None), // LOCAL
        1 => {}
        c => return Err(ProxyHeaderError::V2Command(c)),
    }
    let need = match fam >> 4 {
        1 => 12,
        2 => 36,
        _ => return Ok(None), // AF_UNSPEC / AF_UNIX: no usable address
    };
    let a = payload
        .get(..need)
        .ok_or(ProxyHeaderError::V2Length(payload.len()))?;
    Ok(Some(match fam >> 4 {
        1 => {
            let ip = Ipv4Addr::new(a[0], a[1], a[2], a[3]);
            SocketAddr::new(IpAddr::V4(ip), u16::from_be_bytes([a[8], a[9]]))
        }
        _ => {
            let mut b = [0u8; 16];
            b.copy_from_slice(&a[..16]);
            SocketAddr::new(
                IpAddr::V6(Ipv6Addr::from(b)),
                u16::from_be_bytes([a[32], a[33]]),
            )
        }
    }))
}

fn decode_v1(line: &[u8]) -> Result<Option<SocketAddr>, ProxyHeaderError> {
    let text = std::str::from_utf8(line).map_err(|_| ProxyHeaderError::V1Field("not ASCII"))?;
    let text = text
        .strip_suffix("\r\n")
        .ok_or(ProxyHeaderError::V1TooLong)?;
    let mut parts = text.split(' ');
    let _proxy = parts.next();
    let v6 = match parts.next() {
        Some("UNKNOWN") => return Ok(None),
        Some("TCP4") => false,
        Some("TCP6") => true,
        _ => return Err(ProxyHeaderError::V1Field("protocol")),
    };
    // The addresses must be of the family the protocol names.
    let src: IpAddr = parts
        .next()
        .and_then(|p| p.parse().ok())
        .filter(|a: &IpAddr| a.is_ipv6() == v6)
        .ok_or(ProxyHeaderError::V1Field("source address"))?;
    let _dst: IpAddr = parts
        .next()
        .and_then(|p| p.parse().ok())
        .filter(|a: &IpAddr| a.is_ipv6() == v6)
        .ok_or(ProxyHeaderError::V1Field("destination address"))?;
    let sport: u16 = parts
        .next()
        .and_then(|p| p.parse().ok())
        .ok_or(ProxyHeaderError::V1Field("source port"))?;
    let _dport: u16 = parts
        .next()
        .and_then(|p| p.parse().ok())
        .ok_or(ProxyHeaderError::V1Field("destination port"))?;
    if parts.next().is_some() {
        return Err(ProxyHeaderError::V1Field("trailing data"));
    }
    Ok(Some(SocketAddr::new(src, sport)))
}

/// Encodes a v2 `PROXY` header for a TCP connection from `src` to `dst`,
/// with the SNI as an `AUTHORITY` TLV when given.
pub fn encode_v2(src: SocketAddr, dst: SocketAddr, authority: Option<&str>) -> Vec<u8> {
    let mut addrs = Vec::with_capacity(36);
    let fam = match (src, dst) {
        (SocketAddr::V4(s), SocketAddr::V4(d)) => {
            addrs.extend_from_slice(&s.ip().octets());
            addrs.extend_from_slice(&d.ip().octets());
            addrs.extend_from_slice(&s.port().to_be_bytes());
            addrs.extend_from_slice(&d.port().to_be_bytes());
            0x11
        }
        _ => {
            let v6 = |a: SocketAddr| match a.ip() {
                IpAddr::V4(v4) => v4.to_ipv6_mapped(),
                IpAddr::V6(v6) => v6,
            };
            addrs.extend_from_slice(&v6(src).octets());
            addrs.extend_from_slice(&v6(dst).octets());
            addrs.extend_from_slice(&src.port().to_be_bytes());
            addrs.extend_from_slice(&dst.port().to_be_bytes());
            0x21
        }
    };
    if let Some(name) = authority.filter(|n| n.len() <= 255) {
        addrs.push(PP2_TYPE_AUTHORITY);
        // Checked above: at most 255, fits in u16.
        addrs.extend_from_slice(&(name.len() as u16).to_be_bytes());
        addrs.extend_from_slice(name.as_bytes());
    }
    let mut out = Vec::with_capacity(16 + addrs.len());
    out.extend_from_slice(&V2_SIG);
    out.push(0x21); // version 2, PROXY
    out.push(fam);
    // Addresses (≤ 36) plus one TLV (≤ 258): fits in u16.
    out.extend_from_slice(&(addrs.len() as u16).to_be_bytes());
    out.extend_from_slice(&addrs);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn read(bytes: &[u8]) -> (Result<Option<SocketAddr>, ProxyHeaderError>, Vec<u8>) {
        let mut s = bytes;
        let r = read_header(&mut s).await;
        (r, s.to_vec())
    }

    #[tokio::test]
    async fn v2_round_trip_leaves_payload() {
        let src: SocketAddr = "192.0.2.1:5555".parse().unwrap();
        let dst: SocketAddr = "127.0.0.1:443".parse().unwrap();
        let mut bytes = encode_v2(src, dst, Some("a.example.com"));
        bytes.extend_from_slice(b"\x16\x03\x01");
        let (r, rest) = read(&bytes).await;
        assert_eq!(r, Ok(Some(src)));
        assert_eq!(rest, b"\x16\x03\x01");
        let src6: SocketAddr = "[2001:db8::1]:7".parse().unwrap();
        let (r, _) = read(&encode_v2(src6, "[::1]:443".parse().unwrap(), None)).await;
        assert_eq!(r, Ok(Some(src6)));
    }

    #[tokio::test]
    async fn v1_lines() {
        let (r, rest) = read(b"PROXY TCP4 192.0.2.9 127.0.0.1 4000 443\r\nGET").await;
        assert_eq!(r, Ok(Some("192.0.2.9:4000".parse().unwrap())));
        assert_eq!(rest, b"GET");
        assert_eq!(read(b"PROXY UNKNOWN\r\n").await.0, Ok(None));
        assert!(read(b"PROXY TCP4 x 127.0.0.1 1 2\r\n").await.0.is_err());
        let long = [b"PROXY TCP4 ".as_slice(), &[b'1'; 200]].concat();
        assert_eq!(read(&long).await.0, Err(ProxyHeaderError::V1TooLong));
    }

    /// The pure decoder and the stream reader agree, and the decoder's
    /// length is what the reader consumed.
    #[tokio::test]
    async fn decode_agrees_with_read_header() {
        let src: SocketAddr = "192.0.2.1:5555".parse().unwrap();
        let dst: SocketAddr = "[2001:db8::2]:443".parse().unwrap();
        let mut local = V2_SIG.to_vec();
        local.extend_from_slice(&[0x20, 0x00, 0x00, 0x00]);
        let cases: Vec<Vec<u8>> = vec![
            encode_v2(src, dst, Some("a.example.com")),
            encode_v2(src, "127.0.0.1:443".parse().unwrap(), None),
            local,
            b"PROXY TCP4 192.0.2.9 127.0.0.1 4000 443\r\nGET / HTTP/1.1\r\n".to_vec(),
            b"PROXY TCP6 2001:db8::1 ::1 4000 443\r\n".to_vec(),
            b"PROXY UNKNOWN ffff:f...f:ffff ffff:f...f:ffff 65535 65535\r\n".to_vec(),
            b"PROXY \r\nGET / HTTP/1.1\r\n".to_vec(),
            [b"PROXY TCP4 ".as_slice(), &[b'1'; 200]].concat(),
            b"GET / HTTP/1.1\r\n\r\n".to_vec(),
        ];
        for bytes in cases {
            let (r, rest) = read(&bytes).await;
            let d = decode(&bytes);
            assert_eq!(d.clone().map(|(a, _)| a), r, "{bytes:?}");
            if let Ok((_, n)) = d {
                assert_eq!(&bytes[n..], rest.as_slice());
                for cut in 0..n {
                    assert_eq!(decode(&bytes[..cut]), Err(ProxyHeaderError::Truncated));
                }
            }
        }
    }

    #[test]
    fn v1_family_must_match_protocol() {
        for line in [
            b"PROXY TCP4 2001:db8::1 127.0.0.1 1 2\r\n".as_slice(),
            b"PROXY TCP4 192.0.2.1 ::1 1 2\r\n",
            b"PROXY TCP6 192.0.2.1 ::1 1 2\r\n",
        ] {
            assert!(matches!(decode(line), Err(ProxyHeaderError::V1Field(_))));
        }
    }

    #[tokio::test]
    async fn garbage_and_truncation() {
        assert_eq!(
            read(b"GET / HTTP/1.1\r\n\r\n").await.0,
            Err(ProxyHeaderError::NoSignature)
        );
        assert_eq!(
            read(b"\r\n\r\n\0\r\n").await.0,
            Err(ProxyHeaderError::Truncated)
        );
        let mut bad = V2_SIG.to_vec();
        bad.extend_from_slice(&[0x21, 0x11, 0x00, 0x04, 1, 2, 3, 4]);
        assert_eq!(read(&bad).await.0, Err(ProxyHeaderError::V2Length(4)));
        let mut local = V2_SIG.to_vec();
        local.extend_from_slice(&[0x20, 0x00, 0x00, 0x00]);
        assert_eq!(read(&local).await.0, Ok(None));
    }
}
