//! A graceful stop in the middle of an order, against a real ACME CA
//! (Pebble, Debian package `pebble`): the stopped node releases its storage
//! lock, so the other node of the pair orders at once instead of waiting for
//! the lock to expire.

mod common;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use edge_acme::{
    AcmeEvent, AcmeManager, CertResolver, ChallengeResponder, DirStorage, SHUTDOWN_LIMIT, Storage,
};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::{broadcast, mpsc, watch};
use tokio::task::JoinHandle;

/// Serves `responder` on `listener`, but holds every request until `open`
/// is set, reporting each held request's path on `arrived`: the CA's
/// validation request waits there while its order is in progress.
fn serve_gated(
    listener: TcpListener,
    responder: ChallengeResponder,
    open: watch::Receiver<bool>,
    arrived: mpsc::UnboundedSender<String>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let (responder, open, arrived) = (responder.clone(), open.clone(), arrived.clone());
            tokio::spawn(async move {
                let svc = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let (responder, mut open, arrived) =
                        (responder.clone(), open.clone(), arrived.clone());
                    async move {
                        let _ = arrived.send(req.uri().path().to_owned());
                        let _ = open.wait_for(|o| *o).await;
                        Ok::<_, Infallible>(responder.respond(req).await)
                    }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_stopped_mid_order_releases_its_lock_and_the_peer_orders_at_once() {
    init_tracing();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let pebble = Pebble::start(port, None);
    let store = tempfile::tempdir().unwrap();
    let storage: Arc<dyn Storage> = Arc::new(DirStorage::new(store.path()));
    let (open, open_rx) = watch::channel(false);
    let (arrived_tx, mut arrived) = mpsc::unbounded_channel();
    let _http = serve_gated(
        listener,
        ChallengeResponder::new(storage.clone()),
        open_rx,
        arrived_tx,
    );
    // The production lock expiry: a peer that had to wait for it would
    // take 20-30 s.
    let ttl = Duration::from_secs(30);
    let config = |node: &str| {
        let mut c = pebble.config();
        c.node_id(node)
            .lock_ttl(ttl)
            .lock_wait(Duration::from_secs(120))
            .certificate(["stop.edge.test"]);
        c
    };
    let lock = store.path().join("locks/cert-stop.edge.test.lock");
    let holder = || std::fs::read_to_string(&lock).ok();

    // Node A orders; the CA's validation request is held at port 80, so A
    // is mid-order, holding the lock, polling the order.
    let (tx_a, mut rx_a) = broadcast::channel(64);
    let a = AcmeManager::spawn_with_events(
        config("node-a"),
        Arc::new(DirStorage::new(store.path())),
        CertResolver::new(),
        tx_a,
    )
    .unwrap();
    let path = tokio::time::timeout(Duration::from_secs(30), arrived.recv())
        .await
        .unwrap_or_else(|_| panic!("the CA never validated A's challenge\n{}", pebble.logs()))
        .unwrap();
    assert!(path.starts_with(edge_acme::CHALLENGE_PREFIX), "{path}");
    assert!(
        holder().is_some_and(|h| h.contains("node-a")),
        "A does not hold the lock mid-order: {:?}",
        holder()
    );

    // A node waiting for A's lock stops at once, and leaves A's lock alone.
    let waiter = AcmeManager::spawn(
        config("node-w"),
        Arc::new(DirStorage::new(store.path())),
        CertResolver::new(),
    )
    .unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    let started = Instant::now();
    waiter.shutdown().await;
    assert!(
        started.elapsed() < SHUTDOWN_LIMIT,
        "a waiting node took {:?} to stop",
        started.elapsed()
    );
    assert!(holder().is_some_and(|h| h.contains("node-a")));

    // Graceful stop of A mid-order: no lock left in storage.
    let started = Instant::now();
    a.shutdown().await;
    let stop_time = started.elapsed();
    assert!(
        stop_time < SHUTDOWN_LIMIT,
        "A took {stop_time:?} to stop (so it was aborted, not stopped)"
    );
    assert_eq!(holder(), None, "A left its lock in storage");
    assert_eq!(a.status()[0].orders, 0);
    assert!(a.status()[0].serial.is_none());
    while let Ok(event) = rx_a.try_recv() {
        assert!(
            !matches!(event, AcmeEvent::Failed { .. } | AcmeEvent::Issued { .. }),
            "the stop was reported as {event:?}"
        );
    }

    // Node B, sharing the storage, orders at once, well under the TTL.
    open.send_replace(true);
    let started = Instant::now();
    let (tx_b, mut rx_b) = broadcast::channel(64);
    let b = AcmeManager::spawn_with_events(
        config("node-b"),
        storage.clone(),
        CertResolver::new(),
        tx_b,
    )
    .unwrap();
    match wait_event(&mut rx_b, ttl, "B issues", |e| {
        matches!(e, AcmeEvent::Issued { .. } | AcmeEvent::Failed { .. })
    })
    .await
    {
        AcmeEvent::Issued { names, .. } => assert_eq!(names, ["stop.edge.test"]),
        other => panic!("{other:?}\n{}", pebble.logs()),
    }
    let took = started.elapsed();
    eprintln!("A stopped mid-order in {stop_time:?}; B obtained the certificate {took:?} later");
    assert!(
        took < Duration::from_secs(10),
        "B needed {took:?} (lock TTL {ttl:?}): it waited for A's lock"
    );
    assert_eq!(b.status()[0].orders, 1);
    b.shutdown().await;
    assert_eq!(holder(), None);
}
