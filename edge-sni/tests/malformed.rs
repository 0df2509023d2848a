//! Each kind of malformed input gets its own specific error.

use edge_sni::{
    ClientHelloBuilder, Error, Field, HostNameError, Limits, parse_client_hello,
    parse_client_hello_with,
};

/// Wraps a ClientHello body in a handshake header and one record.
fn wrap(body: &[u8]) -> Vec<u8> {
    let mut msg = vec![1u8];
    msg.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    msg.extend_from_slice(body);
    edge_sni::frame_records(&msg, 16384, 0x0301)
}

/// A body up to (not including) the extension block.
fn head(session_id: &[u8], ciphers: &[u8], compression: &[u8]) -> Vec<u8> {
    let mut b = vec![3, 3];
    b.extend_from_slice(&[0x11; 32]);
    b.push(session_id.len() as u8);
    b.extend_from_slice(session_id);
    b.extend_from_slice(&(ciphers.len() as u16).to_be_bytes());
    b.extend_from_slice(ciphers);
    b.push(compression.len() as u8);
    b.extend_from_slice(compression);
    b
}

fn with_extensions(block: &[u8]) -> Vec<u8> {
    let mut b = head(&[], &[0x13, 0x01], &[0]);
    b.extend_from_slice(&(block.len() as u16).to_be_bytes());
    b.extend_from_slice(block);
    wrap(&b)
}

fn err(bytes: &[u8]) -> Error {
    parse_client_hello(bytes).expect_err("malformed input parsed")
}

#[test]
fn bad_lengths() {
    assert_eq!(
        err(&wrap(&head(&[0; 33], &[0x13, 1], &[0]))),
        Error::BadLength {
            field: Field::SessionId,
            len: 33
        }
    );
    assert_eq!(
        err(&wrap(&head(&[], &[0x13, 1, 0], &[0]))),
        Error::BadLength {
            field: Field::CipherSuites,
            len: 3
        }
    );
    assert_eq!(
        err(&wrap(&head(&[], &[], &[0]))),
        Error::BadLength {
            field: Field::CipherSuites,
            len: 0
        }
    );
    assert_eq!(
        err(&wrap(&head(&[], &[0x13, 1], &[]))),
        Error::BadLength {
            field: Field::CompressionMethods,
            len: 0
        }
    );
    // A cipher list length running past the body.
    let mut body = head(&[], &[0x13, 1], &[0]);
    body[35] = 0x40;
    assert_eq!(
        err(&wrap(&body)),
        Error::Truncated {
            field: Field::CipherSuites
        }
    );
    // A body that ends inside the random.
    assert_eq!(
        err(&wrap(&[3, 3, 0, 0])),
        Error::Truncated {
            field: Field::Random
        }
    );
    assert_eq!(
        err(&wrap(&[3])),
        Error::Truncated {
            field: Field::LegacyVersion
        }
    );
    // Bytes after the extension block.
    let mut body = head(&[], &[0x13, 1], &[0]);
    body.extend_from_slice(&[0, 0, 0xde, 0xad]);
    assert_eq!(
        err(&wrap(&body)),
        Error::TrailingBytes {
            field: Field::HandshakeMessage,
            len: 2
        }
    );
}

#[test]
fn truncated_extensions() {
    // Extension block length longer than what follows.
    let mut body = head(&[], &[0x13, 1], &[0]);
    body.extend_from_slice(&[0, 10, 0, 0x17, 0, 0]);
    assert_eq!(
        err(&wrap(&body)),
        Error::Truncated {
            field: Field::Extensions
        }
    );
    // Extension data longer than the block.
    assert_eq!(
        err(&with_extensions(&[0, 0x17, 0, 5, 1, 2])),
        Error::Truncated {
            field: Field::Extension(0x17)
        }
    );
    // Half an extension header.
    assert_eq!(
        err(&with_extensions(&[0, 0x17, 0])),
        Error::Truncated {
            field: Field::Extensions
        }
    );
    // SNI list longer than the extension.
    assert_eq!(
        err(&with_extensions(&[0, 0, 0, 4, 0, 9, 0, 0])),
        Error::Truncated {
            field: Field::ServerNameList
        }
    );
    // Host name longer than the list.
    assert_eq!(
        err(&with_extensions(&[0, 0, 0, 6, 0, 4, 0, 0, 9, b'a'])),
        Error::Truncated {
            field: Field::ServerName
        }
    );
    // ALPN protocol longer than the list; an empty protocol; trailing bytes.
    assert_eq!(
        err(&with_extensions(&[0, 16, 0, 4, 0, 2, 5, b'h'])),
        Error::Truncated {
            field: Field::AlpnProtocol
        }
    );
    assert_eq!(
        err(&with_extensions(&[0, 16, 0, 4, 0, 2, 0, 0])),
        Error::BadLength {
            field: Field::AlpnProtocol,
            len: 0
        }
    );
    assert_eq!(
        err(&with_extensions(&[0, 16, 0, 5, 0, 2, 1, b'h', 9])),
        Error::TrailingBytes {
            field: Field::Extension(16),
            len: 1
        }
    );
    assert_eq!(
        err(&with_extensions(&[0, 0x2b, 0, 4, 3, 3, 4, 3])),
        Error::BadLength {
            field: Field::SupportedVersions,
            len: 3
        }
    );
    assert_eq!(
        err(&with_extensions(&[0, 0x0d, 0, 2, 0, 0])),
        Error::BadLength {
            field: Field::SignatureAlgorithms,
            len: 0
        }
    );
}

#[test]
fn duplicates() {
    let twice = ClientHelloBuilder::tls13()
        .server_name("a.example")
        .alpn(&[b"h2"])
        .server_name("b.example")
        .encode();
    assert_eq!(err(&twice), Error::DuplicateExtension { ext_type: 0 });
    // Two host_name entries in one server_name list.
    let entries = [0u8, 0, 1, b'a', 0, 0, 1, b'b'];
    let mut data = (entries.len() as u16).to_be_bytes().to_vec();
    data.extend_from_slice(&entries);
    let two_names = ClientHelloBuilder::tls13().extension(0, data).encode();
    assert_eq!(err(&two_names), Error::DuplicateHostName);
    // A duplicate far down a long extension list (the bitmap path).
    let mut many = ClientHelloBuilder::tls13();
    for t in 0x1000..0x1040u16 {
        many = many.extension(t, vec![]);
    }
    assert!(parse_client_hello(&many.encode()).is_ok());
    let many = many.extension(0x1003, vec![]);
    assert_eq!(
        err(&many.encode()),
        Error::DuplicateExtension { ext_type: 0x1003 }
    );
}

#[test]
fn oversized_messages_and_records() {
    let mut big = ClientHelloBuilder::tls13().server_name("big.example");
    big = big.extension(0x5555, vec![0; 20_000]);
    let bytes = big.encode();
    match err(&bytes) {
        Error::TooLarge { len, max: 16384 } => assert!(len > 20_000),
        other => panic!("{other:?}"),
    }
    // Allowed with a bigger cap (the hello then spans two records).
    let limits = Limits::default().with_max_client_hello_len(32 * 1024);
    let hello = parse_client_hello_with(&bytes, &limits).unwrap();
    assert_eq!(hello.records(), 2);
    assert_eq!(hello.server_name(), Some("big.example"));
    assert_eq!(
        err(b"\x16\x03\x01\xff\xff"),
        Error::RecordOverflow { len: 65535 }
    );
    assert_eq!(err(b"\x16\x03\x01\x00\x00"), Error::EmptyRecord);
}

#[test]
fn non_handshake_records_and_other_protocols() {
    assert_eq!(
        err(b"\x15\x03\x01\x00\x02\x02\x46"),
        Error::UnexpectedContentType { content_type: 21 }
    );
    assert_eq!(
        err(b"\x14\x03\x03\x00\x01\x01"),
        Error::UnexpectedContentType { content_type: 20 }
    );
    assert_eq!(
        err(b"\x17\x03\x03\x00\x10"),
        Error::UnexpectedContentType { content_type: 23 }
    );
    assert_eq!(
        err(b"\x16\x03\x01\x00\x04\x02\x00\x00\x00"),
        Error::NotClientHello { msg_type: 2 }
    );
    assert_eq!(err(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"), Error::NotTls);
    assert_eq!(
        err(b"PROXY TCP4 127.0.0.1 127.0.0.1 1 2\r\n"),
        Error::NotTls
    );
    assert_eq!(err(b"\x00\x00\x00\x00\x00"), Error::NotTls);
    // An SSLv2-compatible hello (as old clients sent): 2-byte header with the
    // top bit set, CLIENT-HELLO, version 3.1, then cipher specs.
    let sslv2 = b"\x80\x2e\x01\x03\x01\x00\x15\x00\x00\x00\x10\x07\x00\xc0\x05\x00\x80\x03\x00\x80\x01\x00\x80\x06\x00\x40\x04\x00\x80\x02\x00\x80";
    assert_eq!(err(sslv2), Error::SslV2ClientHello);
}

#[test]
fn bad_server_names() {
    // An IP address (RFC 6066 forbids it; wrk and some embedded clients
    // send one) is read as no SNI, and said so.
    for addr in ["192.0.2.7", "2001:db8::1"] {
        let ip = ClientHelloBuilder::tls13().server_name(addr).encode();
        let hello = parse_client_hello(&ip).unwrap();
        assert_eq!(hello.server_name(), None, "{addr}");
        assert!(hello.sni_ip_literal() && hello.has_server_name_extension());
    }
    let named = ClientHelloBuilder::tls13()
        .server_name("a.example")
        .encode();
    assert!(!parse_client_hello(&named).unwrap().sni_ip_literal());
    let space = ClientHelloBuilder::tls13().server_name("a b").encode();
    assert_eq!(
        err(&space),
        Error::InvalidServerName(HostNameError::InvalidByte {
            byte: b' ',
            offset: 1
        })
    );
    let empty = ClientHelloBuilder::tls13().server_name("").encode();
    assert_eq!(err(&empty), Error::InvalidServerName(HostNameError::Empty));
    let ok = ClientHelloBuilder::tls13()
        .server_name("WWW.Example.ORG.")
        .encode();
    assert_eq!(
        parse_client_hello(&ok).unwrap().server_name(),
        Some("www.example.org")
    );
}

#[test]
fn psk_must_be_last() {
    let last = ClientHelloBuilder::tls13()
        .server_name("r.example")
        .extension(0x29, vec![0; 8])
        .encode();
    assert!(parse_client_hello(&last).unwrap().has_psk());
    let early = ClientHelloBuilder::tls13()
        .extension(0x29, vec![0; 8])
        .server_name("r.example")
        .encode();
    assert_eq!(err(&early), Error::PskNotLast);
}

#[test]
fn a_short_message_waits_for_the_next_record() {
    // The handshake header promises 100 bytes, the record holds 10: wait.
    let mut bytes = b"\x16\x03\x01\x00\x0e\x01\x00\x00\x64".to_vec();
    bytes.extend_from_slice(&[0; 10]);
    assert_eq!(err(&bytes), Error::NeedMore { needed: Some(5) });
    // Errors display what was wrong.
    assert_eq!(
        Error::Truncated {
            field: Field::Extension(0x17)
        }
        .to_string(),
        "extension 0x0017: length runs past the end of the enclosing structure"
    );
}
