//! The single-record parse allocates nothing; reassembly allocates once,
//! exactly the message's size.

use edge_sni::parse_client_hello;

fn load(file: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/captures/{file}.bin",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

#[test]
fn single_record_hellos_parse_without_allocating() {
    for file in [
        "openssl-tls12",
        "openssl-tls13",
        "openssl-nosni",
        "curl",
        "gnutls-cli",
        "python-ssl",
        "node",
        "chromium",
    ] {
        let bytes = load(file);
        let mut sink = 0usize;
        let info = allocation_counter::measure(|| {
            let hello = parse_client_hello(&bytes).unwrap();
            sink += hello.server_name().map_or(0, str::len);
            sink += hello.alpn().map(<[u8]>::len).sum::<usize>();
            sink += hello.supported_versions().count() + hello.cipher_suites().count();
            sink += hello.extension_types().count();
            sink += usize::from(hello.has_ech()) + usize::from(hello.has_psk());
            sink += hello.ja4().a().len();
            // Prefixes: the "need more" answers allocate nothing either.
            for end in [0, 3, 5, 9, bytes.len() / 2, bytes.len() - 1] {
                sink += usize::from(parse_client_hello(&bytes[..end]).is_err());
            }
        });
        assert!(sink > 0);
        assert_eq!(info.count_total, 0, "{file}: {info:?}");
    }
}

#[test]
fn reassembly_allocates_once_and_bounded() {
    let bytes = load("openssl-fragmented");
    let mut body_len = 0;
    let info = allocation_counter::measure(|| {
        let hello = parse_client_hello(&bytes).unwrap();
        assert_eq!(hello.records(), 2);
        body_len = hello.body().len();
    });
    assert_eq!(info.count_total, 1, "{info:?}");
    assert_eq!(info.bytes_total as usize, body_len);
}
