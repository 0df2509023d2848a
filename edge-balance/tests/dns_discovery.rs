//! `DnsResolver` against a real authoritative server (Knot DNS on
//! loopback): A and AAAA, SRV with priorities and weights, TTLs, NXDOMAIN,
//! and a server that stops answering.
#![cfg(feature = "dns")]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use edge_balance::discovery::{
    DiscoveryConfig, DnsResolver, LookupError, Members, Resolve, Source, watch,
};
use edge_testkit::TempDir;
use edge_testkit::dns::Knot;

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_and_srv_records_resolve_to_servers() {
    let dir = TempDir::new("dns-resolve");
    let knot = Knot::start(
        &dir,
        "disc.test",
        &[
            "app 7 A 127.0.0.2",
            "app 7 A 127.0.0.3",
            "app 7 AAAA ::1",
            "b1 30 A 127.0.0.4",
            "b2 30 A 127.0.0.5",
            "b3 30 A 127.0.0.6",
            "_http._tcp.svc 20 SRV 10 5 8081 b1",
            "_http._tcp.svc 20 SRV 10 0 8082 b2",
            "_http._tcp.svc 20 SRV 20 9 8083 b3",
        ],
    );
    let r = DnsResolver::with_name_servers(&[knot.addr], Duration::from_secs(1));
    let host = Source::Host {
        name: knot.fqdn("app"),
        port: 8080,
    };
    let d = r.resolve(&host).await.unwrap();
    assert_eq!(
        d.members,
        [
            (sa("127.0.0.2:8080"), 1),
            (sa("127.0.0.3:8080"), 1),
            (sa("[::1]:8080"), 1)
        ]
    );
    assert!(
        d.ttl <= Duration::from_secs(7) && d.ttl >= Duration::from_secs(5),
        "{:?}",
        d.ttl
    );

    // SRV: the lowest priority only, each target's port, weight 0 as 1.
    let d = r
        .resolve(&Source::Srv {
            name: knot.fqdn("_http._tcp.svc"),
        })
        .await
        .unwrap();
    assert_eq!(
        d.members,
        [(sa("127.0.0.4:8081"), 5), (sa("127.0.0.5:8082"), 1)]
    );
    assert!(
        d.ttl <= Duration::from_secs(20),
        "the shortest TTL: {:?}",
        d.ttl
    );

    let missing = Source::Host {
        name: knot.fqdn("nothing"),
        port: 80,
    };
    assert!(matches!(
        r.resolve(&missing).await,
        Err(LookupError::NotFound(_))
    ));
}

/// The next member set published.
async fn next(rx: &mut tokio::sync::watch::Receiver<Members>) -> Members {
    tokio::time::timeout(Duration::from_secs(10), rx.changed())
        .await
        .expect("a change within 10 s")
        .unwrap();
    rx.borrow_and_update().clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_watch_follows_updates_and_holds_through_an_outage() {
    let dir = TempDir::new("dns-watch");
    let mut knot = Knot::start(&dir, "disc.test", &["app 1 A 127.0.0.2"]);
    let r = DnsResolver::with_name_servers(&[knot.addr], Duration::from_millis(300));
    let cfg = DiscoveryConfig::default()
        .min_ttl(Duration::from_millis(200))
        .retry(Duration::from_millis(200))
        .hold(Duration::from_secs(3));
    let (tx, mut rx) = tokio::sync::watch::channel(Vec::new());
    let source = Source::Host {
        name: knot.fqdn("app"),
        port: 80,
    };
    tokio::spawn(watch("app".into(), Arc::new(r), source, cfg, tx, |_| ()));
    assert_eq!(next(&mut rx).await, [(sa("127.0.0.2:80"), 1)]);

    // The record set changes on the server: the watch follows within the TTL.
    knot.update(&[
        "add app.disc.test. 1 A 127.0.0.3",
        "del app.disc.test. A 127.0.0.2",
    ]);
    assert_eq!(next(&mut rx).await, [(sa("127.0.0.3:80"), 1)]);

    // The server stops answering: the last set is kept for the hold time,
    // then removed.
    knot.stop();
    let stopped = std::time::Instant::now();
    let gone = next(&mut rx).await;
    assert_eq!(gone, []);
    let held = stopped.elapsed();
    assert!(
        held >= Duration::from_millis(2500),
        "held {held:?}, hold 3 s"
    );

    // It answers again: the servers come back.
    knot.restart(&dir);
    assert_eq!(next(&mut rx).await, [(sa("127.0.0.3:80"), 1)]);
}
