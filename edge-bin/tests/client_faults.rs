//! A client's fault is never blamed on a backend: uploads the client
//! aborts mid-body, stalls, or whose chunked framing is malformed, are
//! answered as the client's fault (400, 408) and never eject the (healthy)
//! server.

mod common;

use std::time::Duration;

use common::*;

/// Sends `raw` over a fresh TLS connection, optionally half-closes, and
/// returns what came back (up to 5 s; empty when the connection closed).
async fn exchange(
    cfg: std::sync::Arc<rustls::ClientConfig>,
    port: u16,
    raw: &[u8],
    close: bool,
) -> String {
    raw_exchange(cfg, port, "app.test", raw, close, Duration::from_secs(5))
        .await
        .unwrap()
        .text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aborted_stalled_and_malformed_uploads_do_not_eject_the_server() {
    let (f, _backend) = front_of_demo_backend("client-faults", "client_faults.toml", &["app.test"]);
    let (port, cfg) = (f.port, f.pki.client_config(&[b"http/1.1"]));

    let head = "POST /upload HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n";
    for i in 0..3 {
        // A malformed chunk size.
        let bad = format!("{head}zz\r\nhello\r\n0\r\n\r\n");
        let got = exchange(cfg.clone(), port, bad.as_bytes(), false).await;
        assert!(got.starts_with("HTTP/1.1 400 "), "malformed #{i}: {got}");
        // An upload the client gives up on mid-body.
        let aborted = format!("{head}100\r\nonly a part of it");
        let got = exchange(cfg.clone(), port, aborted.as_bytes(), true).await;
        assert!(
            !got.contains(" 502 ") && !got.contains(" 503 "),
            "aborted #{i}: {got}"
        );
    }
    // Bodies that stall (buffered: Content-Length; streamed: chunked) are
    // answered 408 after `body_read_timeout`, not held open.
    let stalled_buffered =
        "POST /upload HTTP/1.1\r\nHost: app.test\r\nContent-Length: 100\r\n\r\n0123456789";
    let stalled_stream = format!("{head}5\r\nhello\r\n");
    for raw in [stalled_buffered.to_string(), stalled_stream] {
        let started = std::time::Instant::now();
        let got = exchange(cfg.clone(), port, raw.as_bytes(), false).await;
        assert!(got.starts_with("HTTP/1.1 408 "), "stalled body: {got}");
        assert!(
            started.elapsed() < Duration::from_secs(4),
            "{:?}",
            started.elapsed()
        );
    }
    // Eight client faults and no server failure: the server is still in
    // rotation and answers.
    let ok = edge_testkit::client::https_get(cfg.clone(), port, "app.test", "/")
        .await
        .unwrap();
    assert_eq!(ok.status, 200, "{ok:?}");
    let whole = format!("{head}5\r\nhello\r\n0\r\n\r\n");
    let got = exchange(cfg, port, whole.as_bytes(), false).await;
    assert!(got.starts_with("HTTP/1.1 200"), "{got}");
}
