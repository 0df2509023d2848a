//! The TLS record layer (RFC 8446 §5.1): finds the ClientHello handshake
//! message in a stream prefix, across as many records as it spans.
//!
//! ```text
//!  0      1      2      3      4      5 ...
//! +------+------+------+------+------+---------------------------+
//! | type | legacy version | length (BE) | fragment (length bytes) |
//! +------+------+------+------+------+---------------------------+
//!   22     3.x              1..=16384     handshake: 1 | u24 len | body
//! ```

use crate::error::Error;
use crate::limits::Limits;
use std::borrow::Cow;

/// Content type of a handshake record.
pub(crate) const CONTENT_TYPE_HANDSHAKE: u8 = 22;
/// Handshake message type of a ClientHello.
pub(crate) const HANDSHAKE_CLIENT_HELLO: u8 = 1;
/// Length of a record header.
pub(crate) const RECORD_HEADER_LEN: usize = 5;
/// Largest record fragment allowed (RFC 8446 §5.1).
pub const MAX_FRAGMENT_LEN: usize = 1 << 14;
/// Length of a handshake message header (type and 24-bit length).
pub(crate) const HANDSHAKE_HEADER_LEN: usize = 4;

/// The ClientHello handshake message found in a stream prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandshakeMessage<'a> {
    /// The ClientHello body (after the 4-byte handshake header). Borrowed
    /// from the input when the message sits in one record, otherwise
    /// reassembled into one buffer of exactly the message's length.
    pub body: Cow<'a, [u8]>,
    /// Stream bytes from the start of the input to the last byte of the
    /// message.
    pub consumed: usize,
    /// How many records the message spans.
    pub records: usize,
}

/// Finds the ClientHello handshake message at the start of a stream prefix
/// and joins it across records.
///
/// Answers [`Error::NeedMore`] for every proper prefix of a well-formed
/// stream, [`Error::NotTls`] as soon as the first bytes rule TLS out, and
/// a specific error for malformed record framing. It does not look inside
/// the message body; [`parse_client_hello`](crate::parse_client_hello) does.
/// It allocates only when the message spans records, and then exactly the
/// body's length (at most [`Limits::max_client_hello_len`]).
///
/// ```
/// use edge_sni::{reassemble_client_hello, Error, Limits};
/// // One record holding a 3-byte "ClientHello" body.
/// let stream = [22, 3, 1, 0, 7, 1, 0, 0, 3, 0xaa, 0xbb, 0xcc];
/// let msg = reassemble_client_hello(&stream, &Limits::default()).unwrap();
/// assert_eq!(&*msg.body, &[0xaa, 0xbb, 0xcc]);
/// assert_eq!(
///     reassemble_client_hello(&stream[..7], &Limits::default()),
///     Err(Error::NeedMore { needed: Some(2) })
/// );
/// ```
pub fn reassemble_client_hello<'a>(
    input: &'a [u8],
    limits: &Limits,
) -> Result<HandshakeMessage<'a>, Error> {
    classify_start(input)?;
    let mut single: Option<&'a [u8]> = None;
    let scan = scan_records(input, limits, |piece, records| {
        if records == 1 {
            single = Some(piece);
        }
    })?;
    if scan.records == 1
        && let Some(body) = single
    {
        return Ok(HandshakeMessage {
            body: Cow::Borrowed(body),
            consumed: scan.consumed,
            records: 1,
        });
    }
    let mut body = Vec::with_capacity(scan.body_len);
    scan_records(input, limits, |piece, _| body.extend_from_slice(piece))?;
    Ok(HandshakeMessage {
        body: Cow::Owned(body),
        consumed: scan.consumed,
        records: scan.records,
    })
}

/// Decides from the first bytes whether the stream can be TLS at all.
fn classify_start(input: &[u8]) -> Result<(), Error> {
    let Some(&first) = input.first() else {
        return Err(Error::NeedMore {
            needed: Some(RECORD_HEADER_LEN),
        });
    };
    match first {
        CONTENT_TYPE_HANDSHAKE => match input.get(1) {
            Some(3) | None => Ok(()),
            Some(_) => Err(Error::NotTls),
        },
        // change_cipher_spec, alert, application_data, heartbeat
        20 | 21 | 23 | 24 => match input.get(1) {
            None => Err(Error::NeedMore {
                needed: Some(RECORD_HEADER_LEN - 1),
            }),
            Some(3) => Err(Error::UnexpectedContentType {
                content_type: first,
            }),
            Some(_) => Err(Error::NotTls),
        },
        // SSLv2 record: 2-byte length with the top bit set, then
        // msg_type 1 (CLIENT-HELLO) and a version of 0x0002 or 3.x.
        b if b & 0x80 != 0 => match (input.get(2), input.get(3)) {
            (None, _) => Err(Error::NeedMore {
                needed: Some(4 - input.len()),
            }),
            (Some(1), None) => Err(Error::NeedMore { needed: Some(1) }),
            (Some(1), Some(0 | 3)) => Err(Error::SslV2ClientHello),
            _ => Err(Error::NotTls),
        },
        _ => Err(Error::NotTls),
    }
}

struct Scan {
    body_len: usize,
    consumed: usize,
    records: usize,
}

/// Walks the records, checking their framing, and hands each piece of the
/// message body to `piece` along with the number of the record it is in.
fn scan_records<'a>(
    input: &'a [u8],
    limits: &Limits,
    mut piece: impl FnMut(&'a [u8], usize),
) -> Result<Scan, Error> {
    let mut offset = 0usize;
    let mut records = 0usize;
    let mut header = [0u8; HANDSHAKE_HEADER_LEN];
    let mut header_have = 0usize;
    let mut body_len: Option<usize> = None;
    let mut body_have = 0usize;
    loop {
        let rest = input.get(offset..).unwrap_or_default();
        let Some(record_header) = rest.get(..RECORD_HEADER_LEN) else {
            return Err(Error::NeedMore {
                needed: Some(RECORD_HEADER_LEN - rest.len()),
            });
        };
        let &[content_type, major, minor, len_hi, len_lo] = record_header else {
            return Err(Error::NeedMore {
                needed: Some(RECORD_HEADER_LEN),
            });
        };
        if content_type != CONTENT_TYPE_HANDSHAKE {
            return Err(Error::UnexpectedContentType { content_type });
        }
        if major != 3 {
            return Err(if records == 0 {
                Error::NotTls
            } else {
                Error::BadRecordVersion {
                    version: u16::from_be_bytes([major, minor]),
                }
            });
        }
        let len = usize::from(u16::from_be_bytes([len_hi, len_lo]));
        if len == 0 {
            return Err(Error::EmptyRecord);
        }
        if len > MAX_FRAGMENT_LEN {
            return Err(Error::RecordOverflow { len });
        }
        records += 1;
        let fragment_start = offset + RECORD_HEADER_LEN;
        let available = rest.len().saturating_sub(RECORD_HEADER_LEN).min(len);
        let mut fragment = input
            .get(fragment_start..fragment_start + available)
            .unwrap_or_default();

        while header_have < HANDSHAKE_HEADER_LEN {
            let Some((&b, tail)) = fragment.split_first() else {
                break;
            };
            fragment = tail;
            if let Some(slot) = header.get_mut(header_have) {
                *slot = b;
            }
            header_have += 1;
            if header_have == 1 && b != HANDSHAKE_CLIENT_HELLO {
                return Err(Error::NotClientHello { msg_type: b });
            }
        }
        if header_have == HANDSHAKE_HEADER_LEN && body_len.is_none() {
            let [_, a, b, c] = header;
            let n = usize::from(a) << 16 | usize::from(b) << 8 | usize::from(c);
            let total = n + HANDSHAKE_HEADER_LEN;
            if total > limits.max_client_hello_len {
                return Err(Error::TooLarge {
                    len: total,
                    max: limits.max_client_hello_len,
                });
            }
            body_len = Some(n);
        }
        let missing_in_record = len - available;
        match body_len {
            Some(n) => {
                let take = (n - body_have).min(fragment.len());
                piece(fragment.get(..take).unwrap_or_default(), records);
                body_have += take;
                let used = available - (fragment.len() - take);
                if body_have == n {
                    return Ok(Scan {
                        body_len: n,
                        consumed: fragment_start + used,
                        records,
                    });
                }
                if missing_in_record > 0 {
                    return Err(Error::NeedMore {
                        needed: Some(missing_in_record.min(n - body_have)),
                    });
                }
            }
            None if missing_in_record > 0 => {
                let header_missing = HANDSHAKE_HEADER_LEN - header_have;
                return Err(Error::NeedMore {
                    needed: Some(missing_in_record.min(header_missing)),
                });
            }
            None => {}
        }
        offset = fragment_start + len;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reassemble(input: &[u8]) -> Result<HandshakeMessage<'_>, Error> {
        reassemble_client_hello(input, &Limits::default())
    }

    #[test]
    fn first_bytes_decide_tls_or_not() {
        assert_eq!(reassemble(b""), Err(Error::NeedMore { needed: Some(5) }));
        assert_eq!(
            reassemble(b"\x16"),
            Err(Error::NeedMore { needed: Some(4) })
        );
        assert_eq!(reassemble(b"GET / HTTP/1.1\r\n"), Err(Error::NotTls));
        assert_eq!(reassemble(b"SSH-2.0-OpenSSH"), Err(Error::NotTls));
        assert_eq!(reassemble(b"\x16\x01"), Err(Error::NotTls));
        assert_eq!(
            reassemble(b"\x15\x03\x03\x00\x02\x02\x28"),
            Err(Error::UnexpectedContentType { content_type: 21 })
        );
        assert_eq!(
            reassemble(b"\x17\x03\x03\x00\x01"),
            Err(Error::UnexpectedContentType { content_type: 23 })
        );
        assert_eq!(
            reassemble(b"\x17"),
            Err(Error::NeedMore { needed: Some(4) })
        );
        assert_eq!(
            reassemble(b"\x80\x2e\x01\x00\x02"),
            Err(Error::SslV2ClientHello)
        );
        assert_eq!(
            reassemble(b"\x80\x2e\x01\x03\x01"),
            Err(Error::SslV2ClientHello)
        );
        assert_eq!(
            reassemble(b"\x80\x2e"),
            Err(Error::NeedMore { needed: Some(2) })
        );
        assert_eq!(reassemble(b"\x80\x2e\x05\x03"), Err(Error::NotTls));
    }

    #[test]
    fn record_framing_errors() {
        assert_eq!(reassemble(b"\x16\x03\x01\x00\x00"), Err(Error::EmptyRecord));
        assert_eq!(
            reassemble(b"\x16\x03\x01\x40\x01"),
            Err(Error::RecordOverflow { len: 16385 })
        );
        assert_eq!(
            reassemble(b"\x16\x03\x01\x00\x04\x02\x00\x00\x00"),
            Err(Error::NotClientHello { msg_type: 2 })
        );
        // 16 KiB + 1 byte body: over the default cap, rejected from the header alone.
        assert_eq!(
            reassemble(b"\x16\x03\x01\x40\x00\x01\x00\x40\x01"),
            Err(Error::TooLarge {
                len: 16389,
                max: 16384
            })
        );
        // Second record is an alert.
        assert_eq!(
            reassemble(b"\x16\x03\x01\x00\x05\x01\x00\x00\x04\xaa\x15\x03\x03\x00\x02"),
            Err(Error::UnexpectedContentType { content_type: 21 })
        );
        assert_eq!(
            reassemble(b"\x16\x03\x01\x00\x05\x01\x00\x00\x04\xaa\x16\x02\x03\x00\x02"),
            Err(Error::BadRecordVersion { version: 0x0203 })
        );
    }

    #[test]
    fn joins_records_and_reports_what_is_missing() {
        // Body "abcd" split as header+"a" | "bc" | "d", then trailing bytes.
        let stream =
            b"\x16\x03\x01\x00\x05\x01\x00\x00\x04a\x16\x03\x01\x00\x02bc\x16\x03\x01\x00\x01dXYZ";
        let msg = reassemble(stream).unwrap();
        assert_eq!(&*msg.body, b"abcd");
        assert_eq!(msg.records, 3);
        assert_eq!(msg.consumed, stream.len() - 3);
        assert!(matches!(msg.body, Cow::Owned(_)));
        assert_eq!(
            reassemble(&stream[..12]),
            Err(Error::NeedMore { needed: Some(3) })
        );
        assert_eq!(
            reassemble(&stream[..16]),
            Err(Error::NeedMore { needed: Some(1) })
        );
        assert_eq!(
            reassemble(&stream[..17]),
            Err(Error::NeedMore { needed: Some(5) })
        );
        // The handshake header itself split over records.
        let split = b"\x16\x03\x01\x00\x02\x01\x00\x16\x03\x01\x00\x03\x00\x01z";
        assert_eq!(&*reassemble(split).unwrap().body, b"z");
        assert_eq!(
            reassemble(&split[..6]),
            Err(Error::NeedMore { needed: Some(1) })
        );
    }

    #[test]
    fn single_record_borrows() {
        let stream = b"\x16\x03\x01\x00\x06\x01\x00\x00\x02hi";
        let msg = reassemble(stream).unwrap();
        assert!(matches!(msg.body, Cow::Borrowed(b"hi")));
        assert_eq!(msg.consumed, stream.len());
    }
}
