//! A server that closes a kept-alive connection just as edge reuses it (its
//! keep-alive timeout racing edge's next request) costs the client
//! nothing when the request may be sent twice: edge sends it again on
//! another connection, outside `retries`, as nginx does on a cached
//! connection and Go's transport on a reused one. A POST is not sent
//! twice: it gets a 502 whose access record says why.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Reads one request head (and a `Content-Length` body) from `s`; `false`
/// at the end of the stream.
async fn read_request(s: &mut tokio::net::TcpStream, buf: &mut Vec<u8>) -> bool {
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let body = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            if buf.len() >= end + 4 + body {
                buf.drain(..end + 4 + body);
                return true;
            }
        }
        let mut chunk = [0u8; 4096];
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// A server on 127.0.0.1 that answers the first request of every
/// connection (kept alive) and closes the connection, unanswered, when a
/// second request arrives. Returns its port and the connections it took.
async fn closes_second_requests() -> (u16, Arc<AtomicUsize>) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let conns = Arc::new(AtomicUsize::new(0));
    let counted = conns.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            counted.fetch_add(1, Ordering::Relaxed);
            tokio::spawn(async move {
                let mut buf = Vec::new();
                if !read_request(&mut s, &mut buf).await {
                    return;
                }
                let answer = "HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nfresh";
                if s.write_all(answer.as_bytes()).await.is_err() {
                    return;
                }
                // The second request is read, then the connection closes.
                read_request(&mut s, &mut buf).await;
            });
        }
    });
    (port, conns)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_on_a_connection_the_server_closes_is_sent_again() {
    let (backend, conns) = closes_second_requests().await;
    let f = front(
        "keepalive",
        "backend_keepalive.toml",
        &["app.test"],
        &[("backend_port", backend)],
    );
    let client = f.pki.client_config(&[b"http/1.1"]);
    // Every GET after the first goes on the connection the one before it
    // left in edge's pool, which the server then closes.
    for i in 0..5 {
        let s = tls(client.clone(), f.port, Some("app.test")).await.unwrap();
        let r = send(s, "GET", "app.test", "/", &[]).await.unwrap();
        assert_eq!((r.status, r.body.as_str()), (200, "fresh"), "GET {i}");
    }
    let taken = conns.load(Ordering::Relaxed);
    println!("5 GETs: 200 each, over {taken} server connections");
    assert!(taken >= 5, "{taken} connections");

    // A POST may have reached the server: it is not sent again.
    let s = tls(client.clone(), f.port, Some("app.test")).await.unwrap();
    let r = send(s, "POST", "app.test", "/", &[("content-length", "0")])
        .await
        .unwrap();
    assert_eq!(r.status, 502, "{}", r.body);
    let log = std::fs::read_to_string(f.dir.path("edge.log")).unwrap();
    let line = log
        .lines()
        .find(|l| l.contains("method=\"POST\""))
        .expect("an access record for the POST");
    assert!(
        line.contains("status=502") && line.contains("connection closed before message completed"),
        "{line}"
    );
}
