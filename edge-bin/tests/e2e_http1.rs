//! HTTP/1 edge cases as nginx and HAProxy handle them: a client that shuts
//! its sending half after the request (as `nc -N` does) still gets the
//! answer, on the plain port and on HTTPS; a transfer coding other than
//! `chunked` is refused with 501.

mod common;

use std::time::Duration;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn half_closed<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(s: S) -> String {
    exchange(s, b"GET /x HTTP/1.1\r\nHost: a.test\r\n\r\n").await
}

/// Writes `raw`, shuts the sending half, reads the answer (5 s at most).
async fn exchange<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    mut s: S,
    raw: &[u8],
) -> String {
    s.write_all(raw).await.unwrap();
    s.shutdown().await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_half_closed_client_gets_its_answer() {
    let dir = TempDir::new("half-close");
    let pki = Pki::new(&dir, "front");
    let leaf = pki.leaf(&dir, "a", &["a.test"]);
    let (https, http) = (free_port(), free_port());
    let config = fixture("e2e_http1.toml")
        .set("https_port", https)
        .set("http_port", http)
        .set("cert", leaf.cert.display())
        .set("key", leaf.key.display())
        .render();
    let _edge = start_edge(&dir, "edge", &config);
    let plain = tokio::net::TcpStream::connect(("127.0.0.1", http))
        .await
        .unwrap();
    let got = half_closed(plain).await;
    assert!(got.starts_with("HTTP/1.1 301"), "plain port: {got}");
    assert!(got.contains("location: https://a.test"), "{got}");
    let tls = edge_testkit::client::tls(pki.client_config(&[b"http/1.1"]), https, Some("a.test"))
        .await
        .unwrap();
    let got = half_closed(tls).await;
    assert!(
        got.starts_with("HTTP/1.1 200") && got.ends_with("fine"),
        "HTTPS: {got}"
    );

    // `gzip, chunked`: edge understands only chunked (nginx answers 501 too).
    let cfg = pki.client_config(&[b"http/1.1"]);
    for te in ["gzip, chunked", "x-custom,chunked"] {
        let tls = edge_testkit::client::tls(cfg.clone(), https, Some("a.test"))
            .await
            .unwrap();
        let raw = format!(
            "POST / HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: {te}\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
        );
        let got = exchange(tls, raw.as_bytes()).await;
        assert!(got.starts_with("HTTP/1.1 501"), "{te}: {got}");
    }
    let tls = edge_testkit::client::tls(cfg, https, Some("a.test"))
        .await
        .unwrap();
    let raw = "POST / HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: Chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n";
    let got = exchange(tls, raw.as_bytes()).await;
    assert!(got.starts_with("HTTP/1.1 200"), "chunked: {got}");
}
