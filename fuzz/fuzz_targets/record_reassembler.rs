#![no_main]
//! The TLS record reassembler on its own, against a naive reference.
//!
//! Input: 2 bytes of cap (the `max_client_hello_len` limit), 1 byte of
//! re-framing size, then the stream. A joined message must equal the
//! concatenated record payloads after the handshake header, stay within
//! the cap, and survive re-framing into records of another size.

use edge_sni::{Error, Limits, frame_records, reassemble_client_hello};
use libfuzzer_sys::fuzz_target;

/// Concatenates the payloads of the handshake records at the start.
fn naive_payloads(mut stream: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while stream.len() >= 5 && stream[0] == 22 {
        // The message may end inside its last record: take what is there.
        let len = usize::from(u16::from_be_bytes([stream[3], stream[4]])).min(stream.len() - 5);
        out.extend_from_slice(&stream[5..5 + len]);
        stream = &stream[5 + len..];
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let [c1, c2, frame, stream @ ..] = data else {
        return;
    };
    let limits = Limits {
        max_client_hello_len: usize::from(u16::from_be_bytes([*c1, *c2])),
    };
    match reassemble_client_hello(stream, &limits) {
        Ok(msg) => {
            assert!(msg.consumed <= stream.len());
            assert!(msg.records >= 1);
            assert!(msg.body.len() + 4 <= limits.max_client_hello_len);
            let payloads = naive_payloads(&stream[..msg.consumed]);
            assert_eq!(payloads.first(), Some(&1));
            assert_eq!(
                &payloads[4..],
                &*msg.body,
                "joined body differs from the record payloads"
            );
            let mut handshake = payloads[..4].to_vec();
            handshake.extend_from_slice(&msg.body);
            let size = usize::from(*frame).max(1);
            let reframed = frame_records(&handshake, size, 0x0303);
            let again = reassemble_client_hello(&reframed, &limits).expect("re-framed message");
            assert_eq!(again.body, msg.body);
            assert_eq!(again.consumed, reframed.len());
        }
        Err(Error::NeedMore { needed }) => assert!(needed.is_none_or(|n| n >= 1)),
        Err(Error::TooLarge { len, max }) => {
            assert!(len > max && max == limits.max_client_hello_len)
        }
        Err(_) => {}
    }
});
