//! Reload of what runs in the background: the replaced config's health
//! checker stops, and an ACME order (against Pebble on loopback) survives
//! a reload or is placed again at once by a replaced ACME manager.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::backend::*;
use common::reload::*;
use common::*;

/// A reload stops the replaced config's health checker: a server probed
/// only by the old config gets no more probes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_old_health_checker_stops_after_a_reload() {
    let dir = TempDir::new("reload-health");
    let pki = Pki::new(&dir, "r");
    let leaf = pki.leaf(&dir, "t", &["t.test"]);
    let (old, new) = (
        backend("old", Duration::ZERO).await,
        backend("new", Duration::ZERO).await,
    );
    let port = free_port();
    let cfg = |server: u16| {
        config(&[port], &leaf, "v", &[server], "").replace(
            "kind = \"tcp\"\ninterval = \"200ms\"",
            "kind = \"http\"\npath = \"/healthz\"\ninterval = \"100ms\"",
        )
    };
    assert!(cfg(old.port).contains("/healthz"));
    let edge = start(&dir, &cfg(old.port), &[]);
    let end = Instant::now() + Duration::from_secs(10);
    while old.checks.load(Ordering::Relaxed) < 3 {
        assert!(Instant::now() < end, "no health checks reached the server");
        std::thread::sleep(Duration::from_millis(20));
    }
    // A connection accepted under the old config (waiting for its
    // ClientHello) keeps the old state alive: the checker must stop anyway.
    let _holder = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    edge.reload(&cfg(new.port), 1);
    // The new checker probes the new server ...
    let end = Instant::now() + Duration::from_secs(10);
    while new.checks.load(Ordering::Relaxed) < 3 {
        assert!(Instant::now() < end, "the new checker does not probe");
        std::thread::sleep(Duration::from_millis(20));
    }
    // ... and the old one no longer probes the old server (a probe in
    // flight at the reload may still land).
    let after = old.checks.load(Ordering::Relaxed);
    std::thread::sleep(Duration::from_millis(800));
    let later = old.checks.load(Ordering::Relaxed);
    assert!(
        later <= after + 1,
        "the old checker still probes: {after} -> {later}"
    );
    assert_eq!(get(port, &pki.ca_pem, "/app").unwrap(), "new");
}

/// An ACME order in progress when a reload comes (one that leaves `[acme]`
/// alone) completes: the running ACME manager is kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acme_order_in_progress_survives_a_reload() {
    acme_order_across_a_reload(false).await;
}

/// A reload that changes `[acme]` mid-order replaces the ACME manager: the
/// old one gives its order up and releases the storage lock, so the new one
/// orders at once instead of waiting 20-30 s for the lock to expire.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_replacing_the_acme_manager_mid_order_orders_again_at_once() {
    acme_order_across_a_reload(true).await;
}

/// Against a real CA, Pebble (+ pebble-challtestsrv for DNS); a relay the
/// test controls holds the CA's HTTP-01 validation for 3 s, and the reload
/// (changing `[acme]` when `change_acme`) lands in between.
async fn acme_order_across_a_reload(change_acme: bool) {
    let dir = TempDir::new("reload-acme");
    let pki = Pki::new(&dir, "r");
    let leaf = pki.leaf(&dir, "t", &["t.test"]);
    let (http, relay_port) = (free_port(), free_port());
    let pebble = LocalPebble::start(&dir, &pki, relay_port);
    let listen = pebble.listen;

    // The relay in front of edge's port 80: each validation waits 3 s.
    let validations = Arc::new(AtomicUsize::new(0));
    let relay = tokio::net::TcpListener::bind(("127.0.0.1", relay_port))
        .await
        .unwrap();
    let seen = validations.clone();
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = relay.accept().await {
            seen.fetch_add(1, Ordering::Relaxed);
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_secs(3)).await;
                if let Ok(mut out) = tokio::net::TcpStream::connect(("127.0.0.1", http)).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut out).await;
                }
            });
        }
    });

    let port = free_port();
    let acme = |extra: &str| {
        fixture("reload_acme.toml")
            .set("directory_port", listen)
            .path("ca_roots", &pki.ca_pem)
            .set("extra", extra)
            .render()
    };
    let cfg = |hello: &str, extra: &str| {
        config(&[port], &leaf, hello, &[free_port()], &acme(extra)).replace(
            "[http]\nlisten = []",
            &format!("[http]\nlisten = [\"127.0.0.1:{http}\"]"),
        )
    };
    let edge = start(&dir, &cfg("v1", ""), &[]);
    let end = Instant::now() + Duration::from_secs(30);
    while validations.load(Ordering::Relaxed) == 0 {
        assert!(
            Instant::now() < end,
            "the CA never validated:\n{}",
            edge.log_text()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The order waits on its validation: reload now.
    let reloaded = Instant::now();
    let extra = if change_acme {
        "lock_ttl = \"30s\""
    } else {
        ""
    };
    let log = edge.reload(&cfg("v2", extra), 1);
    assert_eq!(log.contains("[acme] unchanged"), !change_acme, "{log}");
    assert_eq!(get(port, &pki.ca_pem, "/hello").unwrap(), "v2");

    // The certificate arrives well before a lock left behind by a replaced
    // manager could have expired (20-30 s).
    let root = pebble.root(&dir, &pki);
    let issued = loop {
        let (code, out) = curl(&[
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--cacert",
            root.to_str().unwrap(),
            "--resolve",
            &format!("acme.test:{port}:127.0.0.1"),
            &format!("https://acme.test:{port}/hello"),
        ]);
        if code == 0 && out.contains("200") {
            break reloaded.elapsed();
        }
        assert!(
            reloaded.elapsed() < Duration::from_secs(15),
            "no ACME certificate 15 s after the reload:\n{}",
            edge.log_text()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    if change_acme {
        assert!(
            edge.log_text()
                .contains("order given up at stop; storage lock released"),
            "the replaced manager did not release its lock:\n{}",
            edge.log_text()
        );
    }
    eprintln!(
        "ACME certificate served {issued:?} after the mid-order reload (changed [acme]: {change_acme})"
    );
}
