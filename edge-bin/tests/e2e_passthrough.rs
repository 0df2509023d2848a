//! End-to-end: SNI passthrough on the same port as termination, to an
//! `openssl s_server` and with a PROXY v2 header.

mod common;

use std::time::Duration;

use common::*;

/// SNI passthrough on the same port as termination: to an `openssl
/// s_server` (the client sees the backend's certificate), and with a PROXY
/// v2 header to a backend that checks the client address and the SNI.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passthrough_by_sni_with_proxy_v2() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let dir = TempDir::new("pass");
    let front = Pki::new(&dir, "front");
    let back = Pki::new(&dir, "back");
    let term = front.leaf(&dir, "term", &["term.test"]);
    let pass = back.leaf(&dir, "pass", &["pass.test"]);
    let (h, s_port) = (free_port(), free_port());
    let pp_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let pp_port = pp_listener.local_addr().unwrap().port();

    let _s_server = openssl_s_server(&dir, s_port, &pass, "-www");

    let config = fixture("e2e_passthrough.toml")
        .set("https_port", h)
        .set("cert", term.cert.display())
        .set("key", term.key.display())
        .set("s_server_port", s_port)
        .set("proxy_v2_port", pp_port)
        .render();
    let _edge = start_edge(&dir, "edge", &config);

    // Passthrough: verified against the backend's CA, which edge never saw.
    let s = tls(back.client_config(&[b"http/1.1"]), h, Some("pass.test"))
        .await
        .unwrap();
    assert_eq!(s.get_ref().1.peer_certificates().unwrap()[0], pass.der);
    drop(s);
    let (code, out) = curl(&[
        "--cacert",
        back.ca_pem.to_str().unwrap(),
        "--resolve",
        &format!("pass.test:{h}:127.0.0.1"),
        &format!("https://pass.test:{h}/"),
    ]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("s_server"),
        "expected openssl's -www page, got:\n{out}"
    );

    // Same port, another name: terminated by edge with its own certificate.
    let r = https_get(front.client_config(&[b"http/1.1"]), h, "term.test", "/")
        .await
        .unwrap();
    assert_eq!(r.body, "terminated");

    // PROXY v2: the backend learns the client address and the SNI.
    let client = tokio::spawn({
        let cfg = back.client_config(&[]);
        async move {
            let tcp = tokio::net::TcpStream::connect(("127.0.0.1", h))
                .await
                .unwrap();
            let local = tcp.local_addr().unwrap();
            let name = rustls_pki_types::ServerName::try_from("x.pp.test").unwrap();
            // The backend never answers TLS; the handshake just starts.
            let _ = tokio::time::timeout(
                Duration::from_secs(3),
                tokio_rustls::TlsConnector::from(cfg).connect(name, tcp),
            )
            .await;
            local
        }
    });
    // edge also TCP-checks the pool's server (the default health check):
    // those connections close without a byte, so skip them.
    let mut head = [0u8; 16];
    let mut conn = loop {
        let (mut conn, _) = tokio::time::timeout(Duration::from_secs(5), pp_listener.accept())
            .await
            .unwrap()
            .unwrap();
        if conn.read_exact(&mut head).await.is_ok() {
            break conn;
        }
    };
    assert_eq!(&head[..12], b"\r\n\r\n\0\r\nQUIT\n");
    assert_eq!(head[12], 0x21, "version 2, PROXY command");
    assert_eq!(head[13], 0x11, "TCP over IPv4");
    let len = u16::from_be_bytes([head[14], head[15]]) as usize;
    let mut rest = vec![0u8; len];
    conn.read_exact(&mut rest).await.unwrap();
    let src_ip = std::net::Ipv4Addr::new(rest[0], rest[1], rest[2], rest[3]);
    let src_port = u16::from_be_bytes([rest[8], rest[9]]);
    let dst_port = u16::from_be_bytes([rest[10], rest[11]]);
    assert_eq!(dst_port, h);
    let tlv = &rest[12..];
    assert_eq!(tlv[0], 0x02, "PP2_TYPE_AUTHORITY");
    let tlv_len = u16::from_be_bytes([tlv[1], tlv[2]]) as usize;
    assert_eq!(&tlv[3..3 + tlv_len], b"x.pp.test");
    // Then the untouched ClientHello.
    let mut first = [0u8; 1];
    conn.read_exact(&mut first).await.unwrap();
    assert_eq!(first[0], 0x16, "TLS handshake record follows the header");
    conn.shutdown().await.ok();
    drop(conn);
    let local = client.await.unwrap();
    assert_eq!(std::net::SocketAddr::from((src_ip, src_port)), local);
}
