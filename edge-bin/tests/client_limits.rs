//! `[client_limits]`: connections per client refused past the limit, and
//! requests past the client's rate answered 429 with Retry-After, counted
//! in `edge_client_limit_refused_total`.

mod common;

use std::time::Duration;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_and_requests_per_client() {
    let mgmt = free_port();
    let f = front(
        "client-limits",
        "client_limits.toml",
        &["a.test"],
        &[("mgmt_port", mgmt)],
    );
    let (port, cfg) = (f.port, f.pki.client_config(&[b"http/1.1"]));
    let tls = || edge_testkit::client::tls(cfg.clone(), port, Some("a.test"));

    // Two connections held; the third is closed before TLS completes.
    let first = tls().await.unwrap();
    let second = tls().await.unwrap();
    assert!(tls().await.is_err(), "a third connection from one client");
    drop(first);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let third = tls().await.expect("a slot came free");

    // Requests: a burst of two, then 429 with Retry-After.
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(third))
            .await
            .unwrap();
    tokio::spawn(conn);
    let mut statuses = Vec::new();
    let mut retry_after = None;
    for _ in 0..3 {
        let req = http::Request::builder()
            .uri("/")
            .header("host", "a.test")
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .unwrap();
        sender.ready().await.unwrap();
        let resp = sender.send_request(req).await.unwrap();
        statuses.push(resp.status().as_u16());
        if let Some(v) = resp.headers().get(http::header::RETRY_AFTER) {
            retry_after = Some(v.to_str().unwrap().to_owned());
        }
    }
    assert_eq!(statuses, [200, 200, 429]);
    // One token every 5 s: the client is told to come back within 5 s.
    let secs: u64 = retry_after.expect("Retry-After").parse().unwrap();
    assert!((1..=5).contains(&secs), "{secs}");
    drop(second);

    let metrics = std::process::Command::new("curl")
        .args(["-s", &format!("http://127.0.0.1:{mgmt}/metrics")])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&metrics.stdout);
    assert!(
        text.contains("edge_client_limit_refused_total{kind=\"connections\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("edge_client_limit_refused_total{kind=\"requests\"} 1"),
        "{text}"
    );
}
