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

/// edge with one HTTPS route and the plain port; its log in `DIR/edge.log`.
struct Front {
    dir: TempDir,
    pki: Pki,
    https: u16,
    http: u16,
    _edge: Edge,
}

fn front(name: &str) -> Front {
    let dir = TempDir::new(name);
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
    Front {
        dir,
        pki,
        https,
        http,
        _edge,
    }
}

impl Front {
    async fn tls(&self) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
        let cfg = self.pki.client_config(&[b"http/1.1"]);
        edge_testkit::client::tls(cfg, self.https, Some("a.test"))
            .await
            .unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_half_closed_client_gets_its_answer() {
    let f = front("half-close");
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
    let f = front("te");
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
    let f = front("log-text");
    let got = half_closed(f.tls().await).await;
    assert!(got.starts_with("HTTP/1.1 200"), "{got}");
    // The access record is written when the response ends; give it a moment.
    let path = f.dir.path("edge.log");
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
