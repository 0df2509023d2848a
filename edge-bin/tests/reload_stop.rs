//! Stopping, end to end with the real binary on loopback: SIGTERM lets a
//! slow request (and a passthrough connection) finish while new
//! connections are refused; the drain deadline and a second SIGTERM end
//! the wait; sd_notify messages arrive in order.

mod common;

use std::time::{Duration, Instant};

use common::backend::*;
use common::reload::*;
use common::*;

/// The next message other than a `WATCHDOG=1` keep-alive (counted).
fn next_message(edge: &mut Edge, watchdogs: &mut usize) -> String {
    loop {
        let msg = edge
            .next_notification(Duration::from_secs(20))
            .expect("no sd_notify message within 20 s");
        if msg == "WATCHDOG=1" {
            *watchdogs += 1;
        } else {
            return msg;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_stop_finishes_a_slow_request_and_notifies_systemd() {
    let dir = TempDir::new("reload-stop");
    let pki = Pki::new(&dir, "r");
    let leaf = pki.leaf(&dir, "t", &["t.test"]);
    let slow = backend("slow", Duration::from_millis(2000)).await;
    let port = free_port();
    let cfg = config(
        &[port],
        &leaf,
        "v1",
        &[slow.port],
        "[limits]\ndrain_timeout = \"10s\"",
    );
    // edge's notifications go to the socket of testkit's Edge, read
    // continuously (as systemd does) by a thread, in order.
    let mut edge = start_with(&dir, &cfg, &[], &[("WATCHDOG_USEC", "200000")]);
    let mut watchdogs = 0;

    let ready = next_message(&mut edge, &mut watchdogs);
    assert!(ready.starts_with("READY=1\n"), "{ready}");
    assert!(
        wait_port(port, Duration::from_secs(1)),
        "READY=1 before the listener accepts"
    );

    // A reload: RELOADING=1 with MONOTONIC_USEC, then READY=1.
    edge.reload(&cfg.replace("v1", "v2"), 1);
    let reloading = next_message(&mut edge, &mut watchdogs);
    assert!(
        reloading.starts_with("RELOADING=1\nMONOTONIC_USEC="),
        "{reloading}"
    );
    let ready = next_message(&mut edge, &mut watchdogs);
    assert!(ready.starts_with("READY=1\n"), "{ready}");

    // SIGTERM with a slow request in flight.
    let ca = pki.ca_pem.clone();
    let inflight = slow.request_in_flight(move || {
        let t = Instant::now();
        (get(port, &ca, "/slow"), t.elapsed())
    });
    edge.signal("-TERM");
    let stopping = next_message(&mut edge, &mut watchdogs);
    assert!(stopping.starts_with("STOPPING=1\n"), "{stopping}");
    // New connections are refused while the request drains.
    let end = Instant::now() + Duration::from_secs(2);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
        assert!(Instant::now() < end, "still accepting after SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    }
    let (status, _) = edge.wait_exited(Duration::from_secs(15));
    let (resp, took) = inflight.join().unwrap();
    assert_eq!(resp.unwrap(), "slow", "the request in flight failed");
    assert!(took >= Duration::from_millis(1900), "{took:?}");
    assert_eq!(status.code(), Some(0), "{}", edge.log_text());
    assert!(
        edge.log_text().contains("all connections finished"),
        "{}",
        edge.log_text()
    );
    // The keep-alives sent after STOPPING=1.
    while let Some(m) = edge.next_notification(Duration::ZERO) {
        watchdogs += usize::from(m == "WATCHDOG=1");
    }
    assert!(
        watchdogs >= 2,
        "{watchdogs} WATCHDOG=1 during the test, one per 100 ms"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_deadline_and_second_sigterm_end_the_wait() {
    let dir = TempDir::new("reload-deadline");
    let pki = Pki::new(&dir, "r");
    let leaf = pki.leaf(&dir, "t", &["t.test"]);
    let slow = backend("slow", Duration::from_secs(30)).await;
    for (drain, second) in [("1s", false), ("30s", true)] {
        let port = free_port();
        let cfg = config(
            &[port],
            &leaf,
            "v1",
            &[slow.port],
            &format!("[limits]\ndrain_timeout = \"{drain}\""),
        );
        let mut edge = start(&dir, &cfg, &[]);
        let ca = pki.ca_pem.clone();
        let inflight = slow.request_in_flight(move || get(port, &ca, "/slow"));
        edge.signal("-TERM");
        if second {
            std::thread::sleep(Duration::from_millis(300));
            edge.signal("-TERM");
        }
        let (status, took) = edge.wait_exited(Duration::from_secs(10));
        assert_eq!(status.code(), Some(0), "{}", edge.log_text());
        assert!(
            took < Duration::from_secs(5),
            "drain {drain}, second {second}: took {took:?}"
        );
        assert!(
            inflight.join().unwrap().is_err(),
            "a 30 s request cannot have finished"
        );
        if second {
            assert!(
                edge.log_text().contains("second stop signal"),
                "{}",
                edge.log_text()
            );
        } else {
            assert!(
                edge.log_text().contains("drain deadline reached"),
                "{}",
                edge.log_text()
            );
        }
    }
}

/// A passthrough connection open at SIGTERM keeps working through the
/// drain (edge relays it untouched, it cannot ask it to close); once the
/// client closes it, edge exits without waiting for the deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passthrough_connections_drain_at_stop() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let dir = TempDir::new("reload-pass");
    let front = Pki::new(&dir, "front");
    let back = Pki::new(&dir, "back");
    let leaf = front.leaf(&dir, "t", &["t.test"]);
    let pass = back.leaf(&dir, "pass", &["pt.test"]);
    let s_port = free_port();
    let _s_server = openssl_s_server(&dir, s_port, &pass, "-rev");
    let port = free_port();
    let extra = fixture("reload_passthrough.toml")
        .set("s_server_port", s_port)
        .render();
    let mut edge = start(&dir, &config(&[port], &leaf, "v1", &[s_port], &extra), &[]);

    let mut tls = common::tls(back.client_config(&[]), port, Some("pt.test"))
        .await
        .expect("TLS through the passthrough");
    let echo = async |tls: &mut tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
                      line: &str| {
        tls.write_all(format!("{line}\n").as_bytes()).await.unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 256];
        let want: String = line.chars().rev().collect();
        while !String::from_utf8_lossy(&got).contains(&want) {
            let n = tokio::time::timeout(Duration::from_secs(5), tls.read(&mut buf))
                .await
                .expect("no echo within 5 s")
                .unwrap();
            assert!(
                n > 0,
                "passthrough closed; got {:?}",
                String::from_utf8_lossy(&got)
            );
            got.extend_from_slice(&buf[..n]);
        }
    };
    echo(&mut tls, "hello").await;

    edge.signal("-TERM");
    let end = Instant::now() + Duration::from_secs(5);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
        assert!(Instant::now() < end, "still accepting after SIGTERM");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Draining: the relay goes on.
    echo(&mut tls, "during the drain").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    echo(&mut tls, "still there").await;
    assert!(
        edge.running(),
        "edge exited with a passthrough connection open"
    );

    let closed = Instant::now();
    drop(tls);
    let (status, _) = edge.wait_exited(Duration::from_secs(10));
    assert_eq!(status.code(), Some(0));
    assert!(
        closed.elapsed() < Duration::from_secs(5),
        "edge waited {:?} after the last connection closed",
        closed.elapsed()
    );
    assert!(
        edge.log_text().contains("all connections finished"),
        "{}",
        edge.log_text()
    );
}
