#![no_main]
//! Whole-stream prefix: any bytes a client may send first on :443.
//!
//! Checks that parsing never panics, that "need more" asks for at least one
//! byte, and that a parsed hello is consistent: its consumed bytes parse to
//! the same hello, and every shorter prefix of them answers "need more".

use edge_sni::{ClientHelloInfo, Error, parse_client_hello};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match parse_client_hello(data) {
        Ok(hello) => {
            let consumed = hello.consumed();
            assert!(consumed <= data.len());
            let info = ClientHelloInfo::from(&hello);
            assert_eq!(info.ja4.len(), 36);
            assert!(hello.alpn().all(|p| !p.is_empty()));
            if let Some(name) = hello.server_name() {
                assert!(!name.is_empty() && !name.ends_with('.'));
                assert!(!name.bytes().any(|b| b.is_ascii_uppercase()));
            }
            let _ = format!("{hello:?}");
            let again = parse_client_hello(&data[..consumed]).expect("the consumed bytes parse");
            assert_eq!(ClientHelloInfo::from(&again), info);
            for cut in [0, consumed / 3, consumed / 2, consumed.saturating_sub(1)] {
                if cut < consumed {
                    match parse_client_hello(&data[..cut]) {
                        Err(Error::NeedMore { needed: Some(n) }) => {
                            assert!(n >= 1 && cut + n <= consumed)
                        }
                        other => panic!("prefix {cut} of a {consumed}-byte hello: {other:?}"),
                    }
                }
            }
        }
        Err(Error::NeedMore { needed }) => assert!(needed.is_none_or(|n| n >= 1)),
        Err(_) => {}
    }
});
