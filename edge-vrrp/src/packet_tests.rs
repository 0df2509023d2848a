//! Tests of the VRRP packet codec.

use super::*;

fn v4(src: [u8; 4], dst: [u8; 4]) -> Addressing {
    Addressing {
        source: IpAddr::from(src),
        destination: IpAddr::from(dst),
    }
}

// A VRRPv3 advertisement keepalived 2.2.7 sent (tcpdump in the lab,
// also in fuzz/seeds/vrrp_packet): VRID 51, priority 100, 1 s, one VIP
// 198.18.0.100, from 198.18.0.2. Its checksum covers the pseudo-header.
const KEEPALIVED_V3_V4: [u8; 12] = [
    0x31, 0x33, 0x64, 0x01, 0x00, 0x64, 0xfd, 0x4c, 0xc6, 0x12, 0x00, 0x64,
];
// keepalived's VRRPv3 over IPv6: VRID 53, VIP 2001:2::100.
const KEEPALIVED_V3_V6: [u8; 24] = [
    0x31, 0x35, 0x64, 0x01, 0x00, 0x64, 0x2a, 0xd1, 0x20, 0x01, 0x00, 0x02, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0x01, 0x00,
];
// keepalived's VRRPv2: VRID 52, VIP 198.18.0.101, auth none, 1 s.
const KEEPALIVED_V2: [u8; 20] = [
    0x21, 0x34, 0x64, 0x01, 0x00, 0x01, 0xb4, 0x51, 0xc6, 0x12, 0x00, 0x65, 0, 0, 0, 0, 0, 0, 0, 0,
];

// keepalived's VRRPv2 with `auth_type PASS`, `auth_pass secret`.
const KEEPALIVED_V2_PASS: [u8; 20] = [
    0x21, 0x34, 0x64, 0x01, 0x01, 0x01, 0x77, 0x05, 0xc6, 0x12, 0x00, 0x65, b's', b'e', b'c', b'r',
    b'e', b't', 0, 0,
];

#[test]
fn decodes_and_re_encodes_keepalived_v2_password() {
    let adv = Advertisement::decode(&KEEPALIVED_V2_PASS, keepalived_addressing()).unwrap();
    assert_eq!((adv.auth_type, &adv.auth_data), (1, b"secret\0\0"));
    assert_eq!(
        adv.encode(keepalived_addressing(), ChecksumMode::PseudoHeader)
            .unwrap(),
        KEEPALIVED_V2_PASS
    );
}

#[test]
fn decodes_and_re_encodes_keepalived_v3_ipv6_and_v2() {
    let v6 = Addressing {
        source: "fe80::c98:d2ff:fe38:42a2".parse().unwrap(),
        destination: "ff02::12".parse().unwrap(),
    };
    let adv = Advertisement::decode(&KEEPALIVED_V3_V6, v6).unwrap();
    assert_eq!(
        adv.addresses,
        vec!["2001:2::100".parse::<IpAddr>().unwrap()]
    );
    assert_eq!(
        adv.encode(v6, ChecksumMode::PseudoHeader).unwrap(),
        KEEPALIVED_V3_V6
    );
    let adv = Advertisement::decode(&KEEPALIVED_V2, keepalived_addressing()).unwrap();
    assert_eq!(
        (adv.version, adv.vrid, adv.max_advert_int),
        (Version::V2, 52, 1)
    );
    assert_eq!(
        adv.encode(keepalived_addressing(), ChecksumMode::PseudoHeader)
            .unwrap(),
        KEEPALIVED_V2
    );
}

fn keepalived_addressing() -> Addressing {
    v4([198, 18, 0, 2], [224, 0, 0, 18])
}

#[test]
fn decodes_a_keepalived_v3_advertisement() {
    let adv = Advertisement::decode(&KEEPALIVED_V3_V4, keepalived_addressing()).unwrap();
    assert_eq!(adv.version, Version::V3);
    assert_eq!(adv.vrid, 51);
    assert_eq!(adv.priority, 100);
    assert_eq!(adv.interval(), Duration::from_secs(1));
    assert_eq!(adv.addresses, vec![IpAddr::from([198, 18, 0, 100])]);
    // And we encode it byte for byte as keepalived did.
    let again = adv
        .encode(keepalived_addressing(), ChecksumMode::PseudoHeader)
        .unwrap();
    assert_eq!(again, KEEPALIVED_V3_V4);
}

#[test]
fn v3_ipv4_accepts_both_checksum_forms_and_sends_the_chosen_one() {
    let adv = Advertisement::decode(&KEEPALIVED_V3_V4, keepalived_addressing()).unwrap();
    let rfc = adv
        .encode(keepalived_addressing(), ChecksumMode::MessageOnly)
        .unwrap();
    assert_ne!(rfc[6..8], KEEPALIVED_V3_V4[6..8]);
    assert_eq!(checksum::of(&rfc), 0);
    assert_eq!(
        Advertisement::decode(&rfc, keepalived_addressing()).unwrap(),
        adv
    );
}

#[test]
fn wrong_pseudo_header_fails_the_checksum() {
    let other = v4([198, 18, 0, 3], [224, 0, 0, 18]);
    assert_eq!(
        Advertisement::decode(&KEEPALIVED_V3_V4, other),
        Err(DecodeError::Checksum(0xfd4c))
    );
}

#[test]
fn each_field_has_its_own_rejection() {
    let a = keepalived_addressing();
    let fix = |mut p: Vec<u8>, mode| {
        p[6] = 0;
        p[7] = 0;
        let s = match mode {
            0 => pseudo_sum(&p, a),
            _ => checksum::of(&p),
        };
        p[6..8].copy_from_slice(&s.to_be_bytes());
        p
    };
    let base = KEEPALIVED_V3_V4.to_vec();
    let mut p = base.clone();
    p[0] = 0x41;
    assert_eq!(Advertisement::decode(&p, a), Err(DecodeError::Version(4)));
    p[0] = 0x32;
    assert_eq!(Advertisement::decode(&p, a), Err(DecodeError::Type(2)));
    let mut p = base.clone();
    p[3] = 2;
    assert_eq!(
        Advertisement::decode(&fix(p, 0), a),
        Err(DecodeError::Count {
            count: 2,
            available: 4
        })
    );
    let mut p = base.clone();
    p[3] = 0;
    assert_eq!(
        Advertisement::decode(&fix(p, 0), a),
        Err(DecodeError::NoAddresses)
    );
    let mut p = base.clone();
    p.extend_from_slice(&[0, 0]);
    assert_eq!(
        Advertisement::decode(&fix(p, 0), a),
        Err(DecodeError::TrailingBytes(2))
    );
    let mut p = base.clone();
    p[4] = 0;
    p[5] = 0;
    assert_eq!(
        Advertisement::decode(&fix(p, 0), a),
        Err(DecodeError::Interval(0))
    );
    let mut p = base.clone();
    p[1] = 0;
    assert_eq!(Advertisement::decode(&p, a), Err(DecodeError::Vrid(0)));
    for n in 0..8 {
        assert!(
            matches!(
                Advertisement::decode(&base[..n], a),
                Err(DecodeError::Truncated(_))
            ),
            "prefix {n}"
        );
    }
    let v6 = Addressing {
        source: "fe80::1".parse().unwrap(),
        destination: "ff02::12".parse().unwrap(),
    };
    let mut p = base.clone();
    p[0] = 0x21;
    assert_eq!(Advertisement::decode(&p, v6), Err(DecodeError::V2OverIpv6));
    let mixed = Addressing {
        source: "fe80::1".parse().unwrap(),
        destination: IpAddr::from([224, 0, 0, 18]),
    };
    assert_eq!(
        Advertisement::decode(&base, mixed),
        Err(DecodeError::MixedFamilies)
    );
}

#[test]
fn v2_round_trip_has_auth_data_and_plain_checksum() {
    let adv = Advertisement {
        version: Version::V2,
        vrid: 7,
        priority: 200,
        max_advert_int: 1,
        auth_type: 1,
        auth_data: *b"secret\0\0",
        addresses: vec![
            IpAddr::from([198, 18, 0, 100]),
            IpAddr::from([198, 18, 0, 101]),
        ],
    };
    let bytes = adv
        .encode(keepalived_addressing(), ChecksumMode::PseudoHeader)
        .unwrap();
    assert_eq!(bytes.len(), 8 + 8 + 8);
    assert_eq!(bytes[0], 0x21);
    assert_eq!(bytes[4], 1);
    assert_eq!(&bytes[16..], b"secret\0\0");
    assert_eq!(checksum::of(&bytes), 0);
    assert_eq!(
        Advertisement::decode(&bytes, keepalived_addressing()).unwrap(),
        adv
    );
    // Without the 8 bytes of authentication data the count is wrong.
    assert!(matches!(
        Advertisement::decode(&bytes[..16], keepalived_addressing()),
        Err(DecodeError::Count { .. })
    ));
}

#[test]
fn ipv4_header_split_checks_lengths() {
    let mut d = vec![
        0x45, 0xc0, 0, 32, 0, 0, 0, 0, 255, 112, 0, 0, 198, 18, 0, 2, 224, 0, 0, 18,
    ];
    d.extend_from_slice(&KEEPALIVED_V3_V4);
    let (h, p) = Ipv4Header::split(&d).unwrap();
    assert_eq!(h.ttl, 255);
    assert_eq!(h.source, Ipv4Addr::new(198, 18, 0, 2));
    assert_eq!(p, KEEPALIVED_V3_V4);
    d[3] = 200;
    assert!(matches!(
        Ipv4Header::split(&d),
        Err(DecodeError::Ipv4Header(_))
    ));
    d[3] = 32;
    d[9] = 6;
    assert!(matches!(
        Ipv4Header::split(&d),
        Err(DecodeError::Ipv4Header(_))
    ));
    assert!(Ipv4Header::split(&d[..10]).is_err());
}
