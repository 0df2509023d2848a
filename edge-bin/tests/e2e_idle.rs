//! `[limits] idle_timeout` closes an idle HTTP/2 connection, also when the
//! client is one that answers PINGs (hyper's, as browsers do) or sends
//! PINGs of its own to keep the connection open.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use http_body_util::Empty;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_http2_connection_is_closed() {
    idle_http2_connection_is_closed("idle-h2", None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_http2_connection_is_closed_though_the_client_sends_pings() {
    idle_http2_connection_is_closed("idle-h2-pings", Some(Duration::from_millis(300))).await;
}

/// One request, then nothing but (with `pings`) a client PING that often:
/// edge must close the connection within a few idle timeouts (1 s).
async fn idle_http2_connection_is_closed(test: &str, pings: Option<Duration>) {
    let f = front(test, "e2e_idle.toml", &["a.test"], &[]);
    let tls = edge_testkit::client::tls(f.pki.client_config(&[b"h2"]), f.port, Some("a.test"))
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let mut builder = hyper::client::conn::http2::Builder::new(TokioExecutor::new());
    builder.timer(TokioTimer::new());
    if let Some(every) = pings {
        builder
            .keep_alive_interval(every)
            .keep_alive_while_idle(true);
    }
    let (mut sender, conn) = builder.handshake(TokioIo::new(tls)).await.unwrap();
    let conn = tokio::spawn(conn);
    let req = http::Request::builder()
        .uri("https://a.test/")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    drop(resp);
    // Idle from here: edge must close within a few idle timeouts.
    let closed = tokio::time::timeout(Duration::from_secs(6), conn).await;
    assert!(
        closed.is_ok(),
        "the idle HTTP/2 connection was still open after 6 s"
    );
}
