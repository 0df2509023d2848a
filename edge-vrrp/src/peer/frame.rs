//! Frames of the peer link: a 4-byte big-endian length, then that many
//! bytes of JSON. A frame longer than the cap is an error that closes the
//! link (tokio-util's `LengthDelimitedCodec` checks the length before it
//! reads the body).

use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio_util::codec::LengthDelimitedCodec;

use super::PeerError;

/// What travels on the link: keepalives and the application's messages.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "t", content = "m", rename_all = "snake_case")]
pub(crate) enum Frame<M> {
    /// Sent by the dialing side every keepalive interval.
    Ping,
    /// The answer to a ping.
    Pong,
    /// One application message.
    Msg(M),
}

/// The codec of frames of at most `max` bytes.
pub(crate) fn codec(max: usize) -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder()
        .length_field_length(4)
        .max_frame_length(max)
        .new_codec()
}

/// A frame's bytes, refused when longer than `max`.
pub(crate) fn encode<M: Serialize>(frame: &Frame<M>, max: usize) -> Result<Bytes, PeerError> {
    let bytes = serde_json::to_vec(frame).map_err(|e| PeerError::Encode(e.to_string()))?;
    if bytes.len() > max {
        return Err(PeerError::FrameTooLong {
            len: bytes.len(),
            max,
        });
    }
    Ok(bytes.into())
}

/// A frame from its bytes.
pub(crate) fn decode<M: DeserializeOwned>(bytes: &[u8]) -> Result<Frame<M>, PeerError> {
    serde_json::from_slice(bytes).map_err(|e| PeerError::Decode(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use tokio_util::codec::{Decoder, Encoder};

    #[test]
    fn frames_round_trip_within_the_cap() {
        let max = 64;
        let f: Frame<String> = Frame::Msg("hello".into());
        let b = encode(&f, max).unwrap();
        let mut wire = BytesMut::new();
        codec(max).encode(b, &mut wire).unwrap();
        assert_eq!(&wire[..4], &[0, 0, 0, 23]);
        let got = codec(max).decode(&mut wire).unwrap().unwrap();
        assert_eq!(decode::<String>(&got).unwrap(), f);
        assert_eq!(decode::<String>(b"{\"t\":\"ping\"}").unwrap(), Frame::Ping);
    }

    #[test]
    fn a_frame_over_the_cap_is_an_error_on_both_sides() {
        let max = 64;
        let big: Frame<String> = Frame::Msg("x".repeat(100));
        assert!(matches!(
            encode(&big, max),
            Err(PeerError::FrameTooLong { len: 118, max: 64 })
        ));
        // A length prefix over the cap is refused before the body arrives.
        let mut wire = BytesMut::from(&[0u8, 0, 0, 65][..]);
        assert!(codec(max).decode(&mut wire).is_err());
        let mut wire = BytesMut::from(&[0xffu8, 0xff, 0xff, 0xff, 1, 2][..]);
        assert!(codec(max).decode(&mut wire).is_err());
        // Exactly the cap is fine; a partial frame asks for more.
        let mut wire = BytesMut::from(&[0u8, 0, 0, 64][..]);
        wire.extend_from_slice(&[b' '; 63]);
        let mut c = codec(max);
        assert!(c.decode(&mut wire).unwrap().is_none());
        wire.extend_from_slice(b" ");
        assert_eq!(c.decode(&mut wire).unwrap().unwrap().len(), 64);
    }

    #[test]
    fn garbage_is_a_decode_error() {
        for bad in [
            &b""[..],
            b"{",
            b"{\"t\":\"nope\"}",
            b"\xff\xfe",
            b"{\"t\":\"msg\",\"m\":3}",
        ] {
            assert!(decode::<String>(bad).is_err(), "{bad:?}");
        }
    }
}
