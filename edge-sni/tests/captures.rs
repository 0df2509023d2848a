//! Real client ClientHellos (captured by `tests/captures/capture.py` from
//! openssl, curl, gnutls-cli, python, node and Chromium) parse to what each
//! client was told to send, on every prefix and in any record framing.

use edge_sni::{
    ClientHello, ClientHelloInfo, Error, Limits, frame_records, parse_client_hello,
    reassemble_client_hello,
};

struct Capture {
    file: &'static str,
    sni: Option<&'static str>,
    alpn: &'static [&'static [u8]],
    max_version: u16,
    records: usize,
}

const H2_H1: &[&[u8]] = &[b"h2", b"http/1.1"];

const CAPTURES: &[Capture] = &[
    Capture {
        file: "openssl-tls12",
        sni: Some("openssl12.example"),
        alpn: H2_H1,
        max_version: 0x0303,
        records: 1,
    },
    Capture {
        file: "openssl-tls13",
        sni: Some("openssl13.example"),
        alpn: &[],
        max_version: 0x0304,
        records: 1,
    },
    Capture {
        file: "openssl-nosni",
        sni: None,
        alpn: &[],
        max_version: 0x0304,
        records: 1,
    },
    Capture {
        file: "openssl-fragmented",
        sni: Some(LONG_NAME),
        alpn: &[
            b"h2",
            b"http/1.1",
            b"spdy/3.1",
            b"h2c",
            b"http/1.0",
            b"acme-tls/1",
        ],
        max_version: 0x0304,
        records: 2,
    },
    Capture {
        file: "curl",
        sni: Some("curl.example"),
        alpn: H2_H1,
        max_version: 0x0304,
        records: 1,
    },
    Capture {
        file: "gnutls-cli",
        sni: Some("gnutls.example"),
        alpn: H2_H1,
        max_version: 0x0304,
        records: 1,
    },
    Capture {
        file: "python-ssl",
        sni: Some("python.example"),
        alpn: H2_H1,
        max_version: 0x0304,
        records: 1,
    },
    Capture {
        file: "node",
        sni: Some("node.example"),
        alpn: H2_H1,
        max_version: 0x0304,
        records: 1,
    },
    Capture {
        file: "chromium",
        sni: Some("chromium.example"),
        alpn: H2_H1,
        max_version: 0x0304,
        records: 1,
    },
];

const LONG_NAME: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.\
    bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb.\
    cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc.fragmented.example";

fn load(file: &str) -> Vec<u8> {
    let path = format!("{}/tests/captures/{file}.bin", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn real_clients_parse_to_what_they_sent() {
    for c in CAPTURES {
        let bytes = load(c.file);
        let hello = parse_client_hello(&bytes).unwrap_or_else(|e| panic!("{}: {e}", c.file));
        eprintln!("{}: {:?} ja4={}", c.file, hello, hello.ja4());
        assert_eq!(hello.server_name(), c.sni, "{}", c.file);
        assert_eq!(
            hello.has_server_name_extension(),
            c.sni.is_some(),
            "{}",
            c.file
        );
        assert_eq!(hello.alpn().collect::<Vec<_>>(), c.alpn, "{}", c.file);
        assert_eq!(hello.max_version(), c.max_version, "{}", c.file);
        assert_eq!(hello.legacy_version(), 0x0303, "{}", c.file);
        assert_eq!(hello.records(), c.records, "{}", c.file);
        assert_eq!(hello.consumed(), bytes.len(), "{}", c.file);
        assert!(hello.cipher_suites().count() >= 3, "{}", c.file);
        assert_eq!(hello.random().len(), 32);
        assert!(
            !hello.has_psk(),
            "{}: fresh connections carry no PSK",
            c.file
        );
        let ja4 = hello.ja4().to_string();
        assert_eq!(ja4.len(), 36, "{}: {ja4}", c.file);
        assert_eq!(&ja4[3..4], if c.sni.is_some() { "d" } else { "i" });
        // TLS 1.3 clients list 1.3 in supported_versions; 1.2-only ones omit it.
        let versions: Vec<u16> = ClientHelloInfo::from(&hello).versions;
        assert_eq!(
            versions.contains(&0x0304),
            c.max_version == 0x0304,
            "{}: {versions:x?}",
            c.file
        );
    }
}

#[test]
fn chromium_sends_a_post_quantum_hello() {
    let bytes = load("chromium");
    assert!(
        bytes.len() > 1800,
        "a post-quantum hello is ~1.9 KB, got {}",
        bytes.len()
    );
    let hello = parse_client_hello(&bytes).unwrap();
    // key_share carries X25519MLKEM768 (0x11ec, 1216-byte share).
    let (_, key_share) = hello
        .extensions()
        .find(|(t, _)| *t == 0x0033)
        .expect("key_share");
    let mut groups = Vec::new();
    let mut rest = key_share.get(2..).unwrap();
    while rest.len() >= 4 {
        let group = u16::from_be_bytes([rest[0], rest[1]]);
        let len = usize::from(u16::from_be_bytes([rest[2], rest[3]]));
        groups.push((group, len));
        rest = &rest[4 + len..];
    }
    assert!(groups.contains(&(0x11ec, 1216)), "{groups:x?}");
    // Chromium sends GREASE ciphers/extensions and a GREASE ECH extension.
    assert!(hello.cipher_suites().any(|c| c & 0x0f0f == 0x0a0a));
    assert!(hello.has_ech());
    assert!(hello.ja4().to_string().starts_with("t13d"));
}

/// Every proper prefix asks for more, never errs, and never asks for bytes
/// past the end of the hello.
fn check_prefixes(name: &str, bytes: &[u8]) {
    for end in 0..bytes.len() {
        match parse_client_hello(&bytes[..end]) {
            Err(Error::NeedMore { needed: Some(n) }) => {
                assert!(
                    n >= 1 && end + n <= bytes.len(),
                    "{name}: prefix {end} needs {n}"
                )
            }
            other => panic!("{name}: prefix of {end} bytes: {other:?}"),
        }
    }
}

/// Re-framed into records of 1..N bytes, the hello still parses to the
/// same fields.
fn check_reframing(name: &str, bytes: &[u8]) {
    let original = parse_client_hello(bytes).unwrap();
    let expected = ClientHelloInfo::from(&original);
    let mut handshake = vec![1u8];
    let body = reassemble_client_hello(bytes, &Limits::default())
        .unwrap()
        .body;
    handshake.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    handshake.extend_from_slice(&body);
    for size in [
        1,
        2,
        3,
        4,
        5,
        7,
        13,
        64,
        100,
        255,
        511,
        1000,
        handshake.len() - 1,
        handshake.len(),
    ] {
        let framed = frame_records(&handshake, size, 0x0301);
        let hello = parse_client_hello(&framed)
            .unwrap_or_else(|e| panic!("{name} in {size}-byte records: {e}"));
        assert_eq!(
            ClientHelloInfo::from(&hello),
            expected,
            "{name} in {size}-byte records"
        );
        assert_eq!(hello.records(), handshake.len().div_ceil(size));
        assert_same_fields(&hello, &original);
        // Bytes after the hello (early data, the next flight) are not its business.
        let mut with_tail = framed.clone();
        with_tail.extend_from_slice(b"\x17\x03\x03\x00\x01x");
        assert_eq!(
            parse_client_hello(&with_tail).unwrap().consumed(),
            framed.len()
        );
    }
}

#[test]
fn every_prefix_needs_more() {
    for c in CAPTURES {
        check_prefixes(c.file, &load(c.file));
    }
}

#[test]
fn reframing_keeps_every_field() {
    for c in CAPTURES {
        check_reframing(c.file, &load(c.file));
    }
}

/// The ClientHello a rustls client writes (captured in-process).
fn rustls_client_hello() -> Vec<u8> {
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let name = rustls::pki_types::ServerName::try_from("Rustls.Example").unwrap();
    let mut conn = rustls::ClientConnection::new(std::sync::Arc::new(config), name).unwrap();
    let mut out = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut out).unwrap();
    }
    out
}

#[test]
fn rustls_client() {
    let bytes = rustls_client_hello();
    let hello = parse_client_hello(&bytes).unwrap();
    assert_eq!(hello.server_name(), Some("rustls.example"));
    assert_eq!(hello.alpn().collect::<Vec<_>>(), H2_H1);
    assert_eq!(hello.max_version(), 0x0304);
    assert!(hello.supported_versions().eq([0x0304, 0x0303]));
    assert_eq!(hello.consumed(), bytes.len());
    check_prefixes("rustls", &bytes);
    check_reframing("rustls", &bytes);
}

fn assert_same_fields(a: &ClientHello<'_>, b: &ClientHello<'_>) {
    assert!(a.cipher_suites().eq(b.cipher_suites()));
    assert!(a.extensions().eq(b.extensions()));
    assert!(a.signature_algorithms().eq(b.signature_algorithms()));
    assert_eq!(a.session_id(), b.session_id());
    assert_eq!(a.random(), b.random());
    assert_eq!(a.compression_methods(), b.compression_methods());
    assert_eq!(a.ja4(), b.ja4());
}

/// A cap below a capture's size rejects it with a clear error, from the
/// handshake header alone.
#[test]
fn the_cap_rejects_big_hellos_early() {
    let bytes = load("chromium");
    let limits = Limits::default().with_max_client_hello_len(1024);
    match edge_sni::parse_client_hello_with(&bytes[..9], &limits) {
        Err(Error::TooLarge { len, max: 1024 }) => assert_eq!(len, bytes.len() - 5),
        other => panic!("{other:?}"),
    }
}
