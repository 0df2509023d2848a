//! HTTP/1 edge cases as nginx and HAProxy handle them: a client that shuts
//! its sending half after the request (as `nc -N` does) still gets the
//! answer, on the plain port and on HTTPS; a transfer coding other than
//! `chunked` is refused with 501. And edge's own log, in a file, is plain
//! text.

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

/// edge with one HTTPS route and the plain port (`http`); its log in
/// `f.dir/edge.log`.
struct H1 {
    f: Front,
    http: u16,
}

fn h1(name: &str) -> H1 {
    let http = free_port();
    let f = front(name, "e2e_http1.toml", &["a.test"], &[("http_port", http)]);
    H1 { f, http }
}

impl H1 {
    async fn tls(&self) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
        let cfg = self.f.pki.client_config(&[b"http/1.1"]);
        edge_testkit::client::tls(cfg, self.f.port, Some("a.test"))
            .await
            .unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_half_closed_client_gets_its_answer() {
    let f = h1("half-close");
    let plain = tokio::net::TcpStream::connect(("127.0.0.1", f.http))
        .await
        .unwrap();
    let got = half_closed(plain).await;
    assert!(got.starts_with("HTTP/1.1 301"), "plain port: {got}");
    assert!(got.contains("location: https://a.test"), "{got}");
    let got = half_closed(f.tls().await).await;
    assert!(
        got.starts_with("HTTP/1.1 200") && got.ends_with("fine"),
        "HTTPS: {got}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_chunked_is_understood_as_transfer_coding() {
    let f = h1("te");
    // `gzip, chunked`: edge understands only chunked (nginx answers 501 too).
    for te in ["gzip, chunked", "x-custom,chunked"] {
        let raw = format!(
            "POST / HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: {te}\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
        );
        let got = exchange(f.tls().await, raw.as_bytes()).await;
        assert!(got.starts_with("HTTP/1.1 501"), "{te}: {got}");
    }
    let raw = "POST / HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: Chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n";
    let got = exchange(f.tls().await, raw.as_bytes()).await;
    assert!(got.starts_with("HTTP/1.1 200"), "chunked: {got}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_in_a_file_is_plain_text() {
    let f = h1("log-text");
    let got = half_closed(f.tls().await).await;
    assert!(got.starts_with("HTTP/1.1 200"), "{got}");
    // The access record is written when the response ends; give it a moment.
    let path = f.f.dir.path("edge.log");
    let mut log = String::new();
    for _ in 0..50 {
        log = std::fs::read_to_string(&path).unwrap();
        if log.contains("edge::access") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        !log.contains('\x1b'),
        "ANSI escape codes in a log file:\n{log}"
    );
    assert!(log.contains("client=127.0.0.1:"), "{log}");
    assert!(!log.contains("Some(") && !log.contains("=None"), "{log}");
}
