#![no_main]
//! The PROXY protocol v1/v2 decoder on arbitrary bytes (what a client, or
//! a load balancer, sends first). Never panics; the pure decoder and the
//! stream reader give the same answer and the reader consumes exactly the
//! header's bytes; a decoded header decodes the same on its own bytes and
//! every shorter prefix answers "truncated".
use edge_sni::proxy_protocol::{ProxyHeaderError, decode, encode_v2, read_header};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let decoded = decode(data);
    let mut rest = data;
    let read = futures::executor::block_on(read_header(&mut rest));
    assert_eq!(read, decoded.clone().map(|(addr, _)| addr));
    let Ok((addr, n)) = decoded else { return };
    assert!((12..=data.len()).contains(&n), "length {n} of {}", data.len());
    assert_eq!(rest, &data[n..], "the reader consumed other bytes");
    assert_eq!(decode(&data[..n]), Ok((addr, n)));
    for cut in [0, 11, 15, n / 2, n - 1] {
        if cut < n {
            assert_eq!(decode(&data[..cut]), Err(ProxyHeaderError::Truncated), "prefix {cut}");
        }
    }
    // The address survives edge's own v2 encoding (what passthrough sends).
    if let Some(src) = addr {
        let v2 = encode_v2(src, src, Some("a.example"));
        assert_eq!(decode(&v2), Ok((Some(src), v2.len())));
    }
});
