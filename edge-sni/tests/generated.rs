//! Property tests: generated ClientHellos (any extension order, GREASE,
//! unknown extensions, any record framing) parse back to what was
//! generated; arbitrary and mutated bytes never panic.

use edge_sni::{ClientHelloBuilder, Error, frame_records, parse_client_hello};
use proptest::prelude::*;
use std::collections::BTreeSet;

const GREASE: [u16; 16] = [
    0x0a0a, 0x1a1a, 0x2a2a, 0x3a3a, 0x4a4a, 0x5a5a, 0x6a6a, 0x7a7a, 0x8a8a, 0x9a9a, 0xaaaa, 0xbaba,
    0xcaca, 0xdada, 0xeaea, 0xfafa,
];
/// Types the parser interprets; unknown extensions avoid them.
const KNOWN: [u16; 6] = [0x0000, 0x000d, 0x0010, 0x0029, 0x002b, 0xfe0d];

#[derive(Debug, Clone)]
struct Spec {
    session_id: Vec<u8>,
    ciphers: Vec<u16>,
    sni: Option<String>,
    alpn: Vec<Vec<u8>>,
    versions: Vec<u16>,
    sig_algs: Vec<u16>,
    ech: bool,
    psk: bool,
    /// Unknown and GREASE extensions: (type, data).
    others: Vec<(u16, Vec<u8>)>,
    /// Order in which the non-PSK extensions are written.
    order_seed: Vec<u32>,
    fragment: usize,
}

fn host_name() -> impl Strategy<Value = String> {
    (
        "[a-zA-Z0-9]([a-zA-Z0-9_-]{0,20}[a-zA-Z0-9])?",
        0..4usize,
        "[a-zA-Z]{2,8}",
    )
        .prop_flat_map(|(first, n, tld)| {
            prop::collection::vec("[a-z0-9]{1,12}", n).prop_map(move |mid| {
                let mut labels = vec![first.clone()];
                labels.extend(mid);
                labels.push(tld.clone());
                labels.join(".")
            })
        })
}

fn spec() -> impl Strategy<Value = Spec> {
    let others = (
        prop::collection::btree_set(
            any::<u16>().prop_filter("unknown", |t| !KNOWN.contains(t)),
            0..12,
        ),
        prop::collection::btree_set(0..GREASE.len(), 0..3),
        prop::collection::vec(prop::collection::vec(any::<u8>(), 0..40), 15),
    )
        .prop_map(
            |(unknown, grease, datas): (BTreeSet<u16>, BTreeSet<usize>, Vec<Vec<u8>>)| {
                let types: BTreeSet<u16> = unknown
                    .into_iter()
                    .chain(grease.into_iter().map(|i| GREASE[i]))
                    .collect();
                types
                    .into_iter()
                    .zip(datas.into_iter().cycle())
                    .collect::<Vec<_>>()
            },
        );
    (
        prop::collection::vec(any::<u8>(), 0..=32),
        prop::collection::vec(any::<u16>(), 1..60),
        prop::option::of(host_name()),
        prop::collection::vec(prop::collection::vec(any::<u8>(), 1..12), 0..5),
        prop::collection::vec(any::<u16>(), 0..6),
        prop::collection::vec(any::<u16>(), 0..12),
        any::<bool>(),
        any::<bool>(),
        others,
        prop::collection::vec(any::<u32>(), 24),
        1usize..700,
    )
        .prop_map(
            |(
                session_id,
                ciphers,
                sni,
                alpn,
                versions,
                sig_algs,
                ech,
                psk,
                others,
                order_seed,
                fragment,
            )| Spec {
                session_id,
                ciphers,
                sni,
                alpn,
                versions,
                sig_algs,
                ech,
                psk,
                others,
                order_seed,
                fragment,
            },
        )
}

fn encode(spec: &Spec) -> Vec<u8> {
    let mut b = ClientHelloBuilder::tls12();
    b.session_id = spec.session_id.clone();
    b.cipher_suites = spec.ciphers.clone();
    let mut exts: Vec<ClientHelloBuilder> = Vec::new();
    let empty = || {
        let mut e = ClientHelloBuilder::tls12();
        e.extensions = None;
        e
    };
    if let Some(name) = &spec.sni {
        exts.push(empty().server_name(name));
    }
    if !spec.alpn.is_empty() {
        let protos: Vec<&[u8]> = spec.alpn.iter().map(Vec::as_slice).collect();
        exts.push(empty().alpn(&protos));
    }
    if !spec.versions.is_empty() {
        exts.push(empty().supported_versions(&spec.versions));
    }
    if !spec.sig_algs.is_empty() {
        exts.push(empty().signature_algorithms(&spec.sig_algs));
    }
    if spec.ech {
        exts.push(empty().extension(0xfe0d, vec![0, 1, 2]));
    }
    for (t, data) in &spec.others {
        exts.push(empty().extension(*t, data.clone()));
    }
    let mut list: Vec<(u16, Vec<u8>)> = exts
        .into_iter()
        .flat_map(|e| e.extensions.unwrap_or_default())
        .collect();
    // Shuffle deterministically from the seed.
    let mut keyed: Vec<(u32, (u16, Vec<u8>))> = list
        .drain(..)
        .enumerate()
        .map(|(i, e)| (spec.order_seed[i % spec.order_seed.len()] ^ i as u32, e))
        .collect();
    keyed.sort_by_key(|(k, _)| *k);
    let mut list: Vec<(u16, Vec<u8>)> = keyed.into_iter().map(|(_, e)| e).collect();
    if spec.psk {
        list.push((0x0029, vec![0; 10]));
    }
    b.extensions = Some(list);
    frame_records(&b.encode_handshake(), spec.fragment, 0x0301)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn generated_hellos_parse_back(spec in spec()) {
        let bytes = encode(&spec);
        let hello = parse_client_hello(&bytes).map_err(|e| TestCaseError::fail(format!("{e}")))?;
        prop_assert_eq!(hello.server_name().map(str::to_owned), spec.sni.as_ref().map(|s| s.to_ascii_lowercase()));
        prop_assert_eq!(hello.alpn().map(<[u8]>::to_vec).collect::<Vec<_>>(), spec.alpn.clone());
        prop_assert_eq!(hello.supported_versions().collect::<Vec<_>>(), spec.versions.clone());
        prop_assert_eq!(hello.signature_algorithms().collect::<Vec<_>>(), spec.sig_algs.clone());
        prop_assert_eq!(hello.cipher_suites().collect::<Vec<_>>(), spec.ciphers.clone());
        prop_assert_eq!(hello.session_id(), &spec.session_id[..]);
        prop_assert_eq!(hello.has_ech(), spec.ech);
        prop_assert_eq!(hello.has_psk(), spec.psk);
        prop_assert_eq!(hello.consumed(), bytes.len());
        let types: BTreeSet<u16> = hello.extension_types().collect();
        for (t, _) in &spec.others {
            prop_assert!(types.contains(t));
        }
        if spec.psk {
            prop_assert_eq!(hello.extension_types().last(), Some(0x0029));
        }
        // JA4 counts ignore GREASE.
        let ja4 = hello.ja4().to_string();
        let non_grease = spec.ciphers.iter().filter(|c| !GREASE.contains(c)).count().min(99);
        prop_assert_eq!(&ja4[4..6], format!("{non_grease:02}"));
    }

    #[test]
    fn generated_prefixes_need_more(spec in spec(), cut in any::<prop::sample::Index>()) {
        let bytes = encode(&spec);
        let end = cut.index(bytes.len());
        match parse_client_hello(&bytes[..end]) {
            Err(Error::NeedMore { needed: Some(n) }) => prop_assert!(end + n <= bytes.len()),
            other => prop_assert!(false, "prefix {} of {}: {:?}", end, bytes.len(), other),
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        if let Ok(hello) = parse_client_hello(&bytes) {
            prop_assert!(hello.consumed() <= bytes.len());
            let _ = hello.ja4().to_string();
        }
    }

    #[test]
    fn handshake_records_with_random_bodies_never_panic(body in prop::collection::vec(any::<u8>(), 0..600), frag in 1usize..64) {
        let mut msg = vec![1u8, 0, (body.len() >> 8) as u8, body.len() as u8];
        msg.extend_from_slice(&body);
        let _ = parse_client_hello(&frame_records(&msg, frag, 0x0303));
    }

    #[test]
    fn mutated_captures_never_panic(flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8)) {
        let mut bytes = std::fs::read(format!("{}/tests/captures/curl.bin", env!("CARGO_MANIFEST_DIR"))).unwrap();
        for (i, v) in flips {
            let at = i.index(bytes.len());
            bytes[at] = v;
        }
        if let Ok(hello) = parse_client_hello(&bytes) {
            let _ = (hello.ja4().to_string(), format!("{hello:?}"));
        }
    }
}
