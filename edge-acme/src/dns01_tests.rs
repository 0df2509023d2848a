use super::*;

fn updater() -> DnsUpdater {
    let mut config = DnsUpdateConfig::new(
        "127.0.0.1:53".parse().unwrap(),
        "Example.TEST.",
        "acme-key",
        b"0123456789abcdef0123456789abcdef".to_vec(),
    );
    config.ttl = 30;
    DnsUpdater::new(config).unwrap()
}

fn response(id: u16, code: ResponseCode) -> Message {
    let mut m = Message::new();
    m.set_id(id)
        .set_message_type(MessageType::Response)
        .set_op_code(OpCode::Update)
        .set_response_code(code);
    m
}

#[test]
fn names_zones_and_algorithms() {
    assert_eq!(
        challenge_name("*.Apps.example.test."),
        "_acme-challenge.apps.example.test"
    );
    assert_eq!(
        challenge_name("www.example.test"),
        "_acme-challenge.www.example.test"
    );
    let u = updater();
    assert_eq!(u.config().zone, "example.test");
    assert!(u.config().covers("*.apps.example.test"));
    assert!(u.config().covers("example.test"));
    assert!(!u.config().covers("badexample.test"));
    assert_eq!(u.config().servers_to_check(), vec![u.config().server]);
    assert_eq!("HMAC-SHA512".parse(), Ok(TsigAlgorithm::HmacSha512));
    assert!(
        "hmac-md5"
            .parse::<TsigAlgorithm>()
            .unwrap_err()
            .contains("hmac-sha256")
    );
    let mut c = u.config().clone();
    c.tsig_secret.clear();
    assert!(
        DnsUpdater::new(c)
            .unwrap_err()
            .to_string()
            .contains("secret is empty")
    );
    assert!(!format!("{:?}", u.config()).contains("0123456789"));
}

/// The update is an RFC 2136 UPDATE of the zone, adding (class IN) or
/// deleting (class NONE) exactly the one TXT value, signed with the key.
#[test]
fn update_messages_are_signed_rfc2136_updates() {
    let u = updater();
    for add in [true, false] {
        let (m, _) = u
            .update_message(
                "_acme-challenge.www.example.test",
                "v4lue",
                add,
                1_700_000_000,
            )
            .unwrap();
        let m = Message::from_vec(&m.to_vec().unwrap()).unwrap();
        assert_eq!(m.op_code(), OpCode::Update);
        assert_eq!(m.queries().len(), 1, "zone section");
        assert_eq!(m.queries()[0].name().to_string(), "example.test.");
        assert_eq!(m.queries()[0].query_type(), RecordType::SOA);
        let updates = m.name_servers();
        assert_eq!(updates.len(), 1);
        let r = &updates[0];
        assert_eq!(r.name().to_string(), "_acme-challenge.www.example.test.");
        let class = if add { "IN" } else { "NONE" };
        assert_eq!(r.dns_class().to_string(), class);
        match r.data() {
            RData::TXT(t) => assert_eq!(&*t.txt_data()[0], b"v4lue"),
            other => panic!("{other:?}"),
        }
        let sig = m.signature();
        assert_eq!(sig.len(), 1);
        assert_eq!(sig[0].record_type(), RecordType::TSIG);
        assert_eq!(sig[0].name().to_string(), "acme-key.");
    }
    let Err(e) = u.update_message("_acme-challenge.other.test", "v", true, 0) else {
        panic!("a name outside the zone was accepted");
    };
    assert!(e.contains("not in the zone"), "{e}");
}

#[test]
fn update_answers_are_checked() {
    let u = updater();
    let (m, mut verify) = u
        .update_message("_acme-challenge.example.test", "v", true, 0)
        .unwrap();
    let id = m.id();
    let notauth = response(id, ResponseCode::NotAuth).to_vec().unwrap();
    let e = check_update_answer(&notauth, id, "acme-key", &mut verify).unwrap_err();
    assert!(e.contains("NOTAUTH") && e.contains("acme-key"), "{e}");
    let refused = response(id, ResponseCode::Refused).to_vec().unwrap();
    let e = check_update_answer(&refused, id, "acme-key", &mut verify).unwrap_err();
    assert!(e.contains("REFUSED"), "{e}");
    // A success without the server's signature is not believed.
    let unsigned = response(id, ResponseCode::NoError).to_vec().unwrap();
    let e = check_update_answer(&unsigned, id, "acme-key", &mut verify).unwrap_err();
    assert!(e.contains("does not verify"), "{e}");
    let other = response(id.wrapping_add(1), ResponseCode::NoError)
        .to_vec()
        .unwrap();
    assert!(check_update_answer(&other, id, "k", &mut verify).is_err());
    for junk in [&b""[..], b"\x00", &[0xff; 40]] {
        assert!(check_update_answer(junk, id, "k", &mut verify).is_err());
        assert!(read_answer(junk, id).is_err());
    }
}

#[test]
fn answers_are_read() {
    let q = query("_acme-challenge.example.test", RecordType::TXT).unwrap();
    assert_eq!(q.queries()[0].query_type(), RecordType::TXT);
    assert!(!q.recursion_desired());
    let mut a = Message::new();
    a.set_id(q.id()).set_message_type(MessageType::Response);
    let name = Name::from_ascii("_acme-challenge.example.test.").unwrap();
    a.add_answer(Record::from_rdata(
        name,
        60,
        RData::TXT(TXT::new(vec!["other".into()])),
    ));
    let bytes = a.to_vec().unwrap();
    let records = read_answer(&bytes, q.id()).unwrap();
    assert_eq!(records.len(), 1);
    assert!(read_answer(&bytes, q.id().wrapping_add(1)).is_err());
    a.set_response_code(ResponseCode::ServFail);
    let e = read_answer(&a.to_vec().unwrap(), q.id()).unwrap_err();
    assert!(
        e.contains("SERVFAIL") || e.contains("Server Failure"),
        "{e}"
    );
}

/// Over a real socket: a server answering NOTAUTH (a wrong TSIG key) is a
/// clear error naming the server and the key.
#[tokio::test]
async fn a_refused_signature_is_a_clear_error() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut len = [0u8; 2];
        s.read_exact(&mut len).await.unwrap();
        let mut req = vec![0u8; usize::from(u16::from_be_bytes(len))];
        s.read_exact(&mut req).await.unwrap();
        let id = Message::from_vec(&req).unwrap().id();
        let rsp = response(id, ResponseCode::NotAuth).to_vec().unwrap();
        let mut out = u16::try_from(rsp.len()).unwrap().to_be_bytes().to_vec();
        out.extend_from_slice(&rsp);
        s.write_all(&out).await.unwrap();
    });
    let mut config = updater().config().clone();
    config.server = addr;
    let e = DnsUpdater::new(config)
        .unwrap()
        .publish("_acme-challenge.example.test", "v")
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains(&addr.to_string()) && e.contains("NOTAUTH"),
        "{e}"
    );
    assert!(e.contains("adding TXT _acme-challenge.example.test"), "{e}");
}
