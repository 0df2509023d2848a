//! End-to-end tests against a real ACME CA: Pebble and pebble-challtestsrv
//! (Debian package `pebble`), started by each test on free loopback ports.

mod common;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::*;
use edge_acme::{
    AcmeEvent, AcmeManager, CertResolver, ChallengeConfig, ChallengeResponder, DirStorage, Storage,
};
use tokio::net::TcpListener;
use tokio::sync::broadcast;

fn has(names: &[String], name: &str) -> bool {
    names.iter().any(|n| n == name)
}

async fn http_listener() -> (TcpListener, u16) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    (listener, port)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issues_two_certificates_and_serves_each_by_sni() {
    init_tracing();
    let (listener, port) = http_listener().await;
    let pebble = Pebble::start(port, None);
    let store = tempfile::tempdir().unwrap();

    // Bad input already in storage: a corrupt certificate and the lock of a
    // node that died while ordering.
    write_file(
        &store
            .path()
            .join("certificates/two.edge.test/fullchain.pem"),
        b"garbage",
    );
    write_file(
        &store.path().join("certificates/two.edge.test/privkey.pem"),
        b"garbage",
    );
    let expired_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis()
        - 60_000;
    write_file(
        &store.path().join("locks/cert-one.edge.test.lock"),
        format!(r#"{{"owner":"dead-node","expires_ms":{expired_ms}}}"#).as_bytes(),
    );

    let storage: Arc<dyn Storage> = Arc::new(DirStorage::new(store.path()));
    let _http = serve_http(listener, ChallengeResponder::new(storage.clone()));
    let resolver = CertResolver::new();

    // A static certificate beside the ACME ones.
    let key = rcgen::KeyPair::generate().unwrap();
    let static_cert = rcgen::CertificateParams::new(vec!["*.static.edge.test".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let (cert_file, key_file) = (store.path().join("s.pem"), store.path().join("s.key"));
    write_file(&cert_file, static_cert.pem().as_bytes());
    write_file(&key_file, key.serialize_pem().as_bytes());
    resolver
        .add_static_pem_files(&[], &cert_file, &key_file)
        .unwrap();

    let mut config = pebble.config();
    config
        .certificate(["one.edge.test"])
        .certificate(["two.edge.test", "www.two.edge.test"]);
    let (tx, mut rx) = broadcast::channel(64);
    let handle =
        AcmeManager::spawn_with_events(config, storage.clone(), resolver.clone(), tx).unwrap();

    let mut issued = Vec::new();
    let mut corrupt = false;
    while issued.len() < 2 {
        match wait_event(
            &mut rx,
            Duration::from_secs(60),
            "two issued certificates",
            |_| true,
        )
        .await
        {
            AcmeEvent::Issued { names, .. } => issued.push(names),
            AcmeEvent::StorageCorrupt { names, .. } => corrupt |= has(&names, "two.edge.test"),
            AcmeEvent::Failed { error, .. } => panic!("order failed: {error}\n{}", pebble.logs()),
            _ => {}
        }
    }
    assert!(corrupt, "the corrupt stored certificate was not reported");

    let (addr, _tls) = serve_tls(resolver.clone()).await;
    for name in ["one.edge.test", "two.edge.test", "www.two.edge.test"] {
        let leaf = tls_leaf(addr, name, &pebble.root_pem).await.unwrap();
        assert!(
            dns_names(&leaf).contains(&name.to_string()),
            "{name}: {:?}",
            dns_names(&leaf)
        );
    }
    assert!(
        tls_leaf(addr, "three.edge.test", &pebble.root_pem)
            .await
            .is_err()
    );
    let leaf = tls_leaf(addr, "x.static.edge.test", &static_cert.pem())
        .await
        .unwrap();
    assert_eq!(dns_names(&leaf), ["*.static.edge.test"]);

    // curl, verifying against Pebble's root.
    for name in ["one.edge.test", "www.two.edge.test"] {
        let out = std::process::Command::new("curl")
            .args(["-sS", "--max-time", "10", "--resolve"])
            .arg(format!("{name}:{}:127.0.0.1", addr.port()))
            .arg("--cacert")
            .arg(&pebble.root_path)
            .arg(format!("https://{name}:{}/", addr.port()))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "curl {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout), "hello from edge");
    }

    for status in handle.status() {
        assert_eq!(status.orders, 1, "{status:?}");
        let left = status.seconds_until_expiry().unwrap();
        assert!(left > 86_400, "{status:?}");
        assert!(status.renew_at.unwrap() > SystemTime::now());
    }
    // Keys are private; no challenge token is left behind.
    use std::os::unix::fs::PermissionsExt;
    let key_path = store.path().join("certificates/one.edge.test/privkey.pem");
    assert_eq!(
        std::fs::metadata(key_path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert!(storage.list("challenges").await.unwrap().is_empty());

    // A restarted node reuses the stored account and certificates.
    let accounts = storage.list("accounts").await.unwrap();
    assert_eq!(accounts.len(), 1, "{accounts:?}");
    let account_before = storage.load(&accounts[0]).await.unwrap();
    drop(handle);
    let mut config = pebble.config();
    config
        .certificate(["one.edge.test"])
        .certificate(["three.edge.test"]);
    let (tx, mut rx) = broadcast::channel(64);
    let resolver2 = CertResolver::new();
    let handle =
        AcmeManager::spawn_with_events(config, storage.clone(), resolver2.clone(), tx).unwrap();
    handle.loaded().await;
    assert!(
        resolver2.lookup("one.edge.test").is_some(),
        "not served right after start"
    );
    let mut loaded_one = false;
    loop {
        match wait_event(&mut rx, Duration::from_secs(60), "restart", |_| true).await {
            AcmeEvent::Loaded { names, .. } => loaded_one |= has(&names, "one.edge.test"),
            AcmeEvent::Issued { names, .. } => {
                assert!(
                    !has(&names, "one.edge.test"),
                    "stored certificate ordered again"
                );
                break;
            }
            AcmeEvent::Failed { error, .. } => panic!("{error}"),
            _ => {}
        }
    }
    assert!(loaded_one);
    assert_eq!(storage.list("accounts").await.unwrap(), accounts);
    assert_eq!(
        storage.load(&accounts[0]).await.unwrap(),
        account_before,
        "account re-created"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pair_renews_short_certificates_once_each_without_failed_handshakes() {
    init_tracing();
    let (listener, port) = http_listener().await;
    let pebble = Pebble::start(port, Some(12));
    let store = tempfile::tempdir().unwrap();
    let storage: Arc<dyn Storage> = Arc::new(DirStorage::new(store.path()));
    let _http = serve_http(listener, ChallengeResponder::new(storage.clone()));
    let node = |id: &str| {
        let mut config = pebble.config();
        config.node_id(id).certificate(["short.edge.test"]);
        config
    };
    let (resolver_a, resolver_b) = (CertResolver::new(), CertResolver::new());
    let (tx_a, mut rx_a) = broadcast::channel(64);
    let handle_a =
        AcmeManager::spawn_with_events(node("node-a"), storage.clone(), resolver_a.clone(), tx_a)
            .unwrap();
    let first = match wait_event(&mut rx_a, Duration::from_secs(60), "issue", |e| {
        matches!(e, AcmeEvent::Issued { .. } | AcmeEvent::Failed { .. })
    })
    .await
    {
        AcmeEvent::Issued {
            serial, not_after, ..
        } => (serial, not_after),
        other => panic!("{other:?}\n{}", pebble.logs()),
    };
    assert!(first.1 < SystemTime::now() + Duration::from_secs(13));
    let (tx_b, mut rx_b) = broadcast::channel(64);
    let handle_b =
        AcmeManager::spawn_with_events(node("node-b"), storage.clone(), resolver_b.clone(), tx_b)
            .unwrap();
    handle_b.loaded().await;
    assert!(resolver_b.lookup("short.edge.test").is_some());

    // Handshake with both nodes continuously while renewals happen.
    let (addr_a, _tls_a) = serve_tls(resolver_a.clone()).await;
    let (addr_b, _tls_b) = serve_tls(resolver_b.clone()).await;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let client = |addr| {
        let (stop, root) = (stop.clone(), pebble.root_pem.clone());
        tokio::spawn(async move {
            let (mut ok, mut failed, mut serials) = (0u32, Vec::new(), Vec::new());
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                match tls_leaf(addr, "short.edge.test", &root).await {
                    Ok(leaf) => {
                        ok += 1;
                        let s = serial_hex(&leaf);
                        if serials.last() != Some(&s) {
                            serials.push(s);
                        }
                    }
                    Err(e) => failed.push(e),
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            (ok, failed, serials)
        })
    };
    let (client_a, client_b) = (client(addr_a), client(addr_b));

    // Two renewals, by whichever node takes the lock.
    let orders = || handle_a.status()[0].orders + handle_b.status()[0].orders;
    let deadline = std::time::Instant::now() + Duration::from_secs(45);
    while orders() < 3 {
        assert!(
            std::time::Instant::now() < deadline,
            "{:?} {:?}",
            handle_a.status(),
            handle_b.status()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The other node picks the last one up from storage.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while handle_a.status()[0].serial != handle_b.status()[0].serial {
        assert!(std::time::Instant::now() < deadline, "nodes disagree");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let latest = handle_a.status()[0].serial.clone().unwrap();

    let mut replaced = Vec::new();
    for rx in [&mut rx_a, &mut rx_b] {
        while let Ok(event) = rx.try_recv() {
            if let AcmeEvent::Renewed {
                previous_serial,
                not_after,
                ..
            } = event
            {
                assert!(not_after > SystemTime::now() - Duration::from_secs(12));
                replaced.push(previous_serial);
            }
        }
    }
    let renewals = replaced.len();
    replaced.sort();
    replaced.dedup();
    assert_eq!(replaced.len(), renewals, "a certificate was renewed twice");
    assert!(replaced.contains(&first.0));
    assert_eq!(u64::try_from(renewals).unwrap() + 1, orders());

    for (name, client) in [("A", client_a), ("B", client_b)] {
        let (ok, failed, serials) = client.await.unwrap();
        assert!(
            failed.is_empty(),
            "node {name}: {} handshakes failed: {failed:?}",
            failed.len()
        );
        assert!(ok > 20, "node {name}: only {ok} handshakes");
        assert!(serials.len() >= 2, "node {name} served {serials:?}");
        assert_eq!(serials.last(), Some(&latest), "node {name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_sharing_storage_the_other_node_answers_the_ca() {
    init_tracing();
    // Pebble validates against node B's responder only (B holds the VIP),
    // while node A places the order.
    let (listener_b, port) = http_listener().await;
    let pebble = Pebble::start(port, None);
    let store = tempfile::tempdir().unwrap();
    let storage_a: Arc<dyn Storage> = Arc::new(DirStorage::new(store.path()));
    let storage_b: Arc<dyn Storage> = Arc::new(DirStorage::new(store.path()));
    let _http_b = serve_http(listener_b, ChallengeResponder::new(storage_b.clone()));

    let (resolver_a, resolver_b) = (CertResolver::new(), CertResolver::new());
    let mut config_a = pebble.config();
    config_a.node_id("node-a").certificate(["pair.edge.test"]);
    let mut config_b = pebble.config();
    config_b.node_id("node-b").certificate(["pair.edge.test"]);

    let (tx_a, mut rx_a) = broadcast::channel(64);
    let handle_a =
        AcmeManager::spawn_with_events(config_a, storage_a, resolver_a.clone(), tx_a).unwrap();
    // B starts while A holds the order lock.
    let lock = store.path().join("locks/cert-pair.edge.test.lock");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !std::fs::read_to_string(&lock)
        .unwrap_or_default()
        .contains("node-a")
    {
        assert!(
            std::time::Instant::now() < deadline,
            "node A never took the lock"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (tx_b, mut rx_b) = broadcast::channel(64);
    let handle_b =
        AcmeManager::spawn_with_events(config_b, storage_b, resolver_b.clone(), tx_b).unwrap();

    let serial_a = match wait_event(&mut rx_a, Duration::from_secs(60), "A issues", |e| {
        matches!(e, AcmeEvent::Issued { .. } | AcmeEvent::Failed { .. })
    })
    .await
    {
        AcmeEvent::Issued { serial, .. } => serial,
        other => panic!("{other:?}\n{}", pebble.logs()),
    };
    let serial_b = match wait_event(&mut rx_b, Duration::from_secs(30), "B loads", |e| {
        !matches!(e, AcmeEvent::StorageCorrupt { .. })
    })
    .await
    {
        AcmeEvent::Loaded { serial, .. } => serial,
        other => panic!("node B did not pick the certificate up: {other:?}"),
    };
    assert_eq!(serial_a, serial_b);
    assert_eq!(handle_a.status()[0].orders, 1);
    assert_eq!(handle_b.status()[0].orders, 0, "node B ordered too");
    let (addr_b, _tls) = serve_tls(resolver_b).await;
    let leaf = tls_leaf(addr_b, "pair.edge.test", &pebble.root_pem)
        .await
        .unwrap();
    assert_eq!(serial_hex(&leaf), serial_a);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_without_shared_storage_forward_to_the_peer() {
    init_tracing();
    let (listener_b, port_b) = http_listener().await;
    let (listener_a, port_a) = http_listener().await;
    let pebble = Pebble::start(port_b, None);
    let (store_a, store_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let storage_a: Arc<dyn Storage> = Arc::new(DirStorage::new(store_a.path()));
    let storage_b: Arc<dyn Storage> = Arc::new(DirStorage::new(store_b.path()));
    let peer = |port: u16| ChallengeConfig {
        peer: Some(format!("http://127.0.0.1:{port}").parse().unwrap()),
        ..ChallengeConfig::default()
    };
    let _http_a = serve_http(
        listener_a,
        ChallengeResponder::from_config(&peer(port_b), storage_a.clone()),
    );
    let _http_b = serve_http(
        listener_b,
        ChallengeResponder::from_config(&peer(port_a), storage_b),
    );

    // An unknown token is forwarded once, not bounced between the nodes.
    let out = std::process::Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "5",
            "-H",
            "Host: peer.edge.test",
        ])
        .arg(format!(
            "http://127.0.0.1:{port_b}/.well-known/acme-challenge/unknownToken"
        ))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "404");

    let resolver = CertResolver::new();
    let mut config = pebble.config();
    config.node_id("node-a").certificate(["peer.edge.test"]);
    let (tx, mut rx) = broadcast::channel(64);
    let _handle = AcmeManager::spawn_with_events(config, storage_a, resolver.clone(), tx).unwrap();
    match wait_event(
        &mut rx,
        Duration::from_secs(60),
        "issue through the peer",
        |e| matches!(e, AcmeEvent::Issued { .. } | AcmeEvent::Failed { .. }),
    )
    .await
    {
        AcmeEvent::Issued { names, .. } => assert_eq!(names, ["peer.edge.test"]),
        other => panic!("{other:?}\n{}", pebble.logs()),
    }
    assert!(resolver.lookup("peer.edge.test").is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_orders_back_off_capped_then_recover() {
    init_tracing();
    // The responder is down: the port is free, so validation is refused.
    let (listener, port) = http_listener().await;
    drop(listener);
    let pebble = Pebble::start(port, None);
    let store = tempfile::tempdir().unwrap();
    let storage: Arc<dyn Storage> = Arc::new(DirStorage::new(store.path()));
    let resolver = CertResolver::new();
    let mut config = pebble.config();
    config.certificate(["down.edge.test"]);
    let (tx, mut rx) = broadcast::channel(64);
    let handle =
        AcmeManager::spawn_with_events(config, storage.clone(), resolver.clone(), tx).unwrap();

    let mut backoffs = Vec::new();
    for attempt in 1..=5u32 {
        match wait_event(&mut rx, Duration::from_secs(30), "a failure", |_| true).await {
            AcmeEvent::Failed {
                error,
                attempt: a,
                backoff,
                retry_in,
                ..
            } => {
                assert_eq!(a, attempt);
                assert!(error.contains("down.edge.test"), "{error}");
                assert!(
                    retry_in <= backoff && retry_in >= backoff / 2,
                    "{retry_in:?} vs {backoff:?}"
                );
                backoffs.push(backoff.as_millis());
            }
            other => panic!("expected a failure, got {other:?}"),
        }
    }
    // quick_renewal(): 500 ms doubling, capped at 2 s.
    assert_eq!(backoffs, [500, 1000, 2000, 2000, 2000]);
    assert_eq!(handle.status()[0].failures, 5);
    assert!(resolver.lookup("down.edge.test").is_none());

    // The responder comes back on the same port.
    let listener = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
    let _http = serve_http(listener, ChallengeResponder::new(storage));
    wait_event(
        &mut rx,
        Duration::from_secs(30),
        "issue after recovery",
        |e| matches!(e, AcmeEvent::Issued { .. }),
    )
    .await;
    assert!(resolver.lookup("down.edge.test").is_some());
    let status = &handle.status()[0];
    assert_eq!((status.failures, status.last_error.as_deref()), (0, None));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_account_binding_is_used_when_the_ca_requires_it() {
    init_tracing();
    const KID: &str = "kid-edge";
    const KEY: &str = "zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W";
    let (listener, port) = http_listener().await;
    let pebble = Pebble::start_with(port, None, Some((KID, KEY)));
    let store = tempfile::tempdir().unwrap();
    let storage: Arc<dyn Storage> = Arc::new(DirStorage::new(store.path()));
    let _http = serve_http(listener, ChallengeResponder::new(storage.clone()));

    // Without a binding the CA refuses the account, and says why.
    let mut config = pebble.config();
    config.certificate(["eab.edge.test"]);
    let (tx, mut rx) = broadcast::channel(64);
    let handle =
        AcmeManager::spawn_with_events(config, storage.clone(), CertResolver::new(), tx).unwrap();
    match wait_event(&mut rx, Duration::from_secs(30), "refusal", |_| true).await {
        AcmeEvent::Failed {
            ca_problem, error, ..
        } => assert_eq!(
            ca_problem.as_deref(),
            Some("urn:ietf:params:acme:error:externalAccountRequired"),
            "{error}"
        ),
        other => panic!("{other:?}"),
    }
    drop(handle);
    assert!(storage.list("accounts").await.unwrap().is_empty());

    let mut config = pebble.config();
    config
        .certificate(["eab.edge.test"])
        .external_account(edge_acme::ExternalAccountBinding {
            key_id: KID.into(),
            hmac_key: b64url_decode(KEY),
        });
    let (tx, mut rx) = broadcast::channel(64);
    let _handle = AcmeManager::spawn_with_events(config, storage, CertResolver::new(), tx).unwrap();
    match wait_event(&mut rx, Duration::from_secs(30), "issue", |_| true).await {
        AcmeEvent::Issued { names, .. } => assert_eq!(names, ["eab.edge.test"]),
        other => panic!("{other:?}\n{}", pebble.logs()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_account_the_ca_forgot_is_replaced_and_kept_aside() {
    init_tracing();
    let (listener, port) = http_listener().await;
    let mut pebble = Pebble::start(port, None);
    let store = tempfile::tempdir().unwrap();
    let storage: Arc<dyn Storage> = Arc::new(DirStorage::new(store.path()));
    let _http = serve_http(listener, ChallengeResponder::new(storage.clone()));
    let issue = |name: &'static str, pebble: &Pebble| {
        let mut config = pebble.config();
        config.certificate([name]);
        let (tx, rx) = broadcast::channel(64);
        let handle =
            AcmeManager::spawn_with_events(config, storage.clone(), CertResolver::new(), tx)
                .unwrap();
        (handle, rx)
    };
    let (handle, mut rx) = issue("first.edge.test", &pebble);
    wait_event(&mut rx, Duration::from_secs(30), "first issue", |e| {
        matches!(e, AcmeEvent::Issued { .. })
    })
    .await;
    drop(handle);
    let accounts = storage.list("accounts").await.unwrap();
    let old_account = storage.load(&accounts[0]).await.unwrap();

    pebble.restart(); // same directory URL, no accounts
    let (_handle, mut rx) = issue("second.edge.test", &pebble);
    match wait_event(&mut rx, Duration::from_secs(30), "refusal", |_| true).await {
        AcmeEvent::Failed { ca_problem, .. } => assert_eq!(
            ca_problem.as_deref(),
            Some("urn:ietf:params:acme:error:accountDoesNotExist")
        ),
        other => panic!("{other:?}"),
    }
    wait_event(
        &mut rx,
        Duration::from_secs(30),
        "issue with a new account",
        |e| matches!(e, AcmeEvent::Issued { .. }),
    )
    .await;
    let accounts = storage.list("accounts").await.unwrap();
    assert_eq!(accounts.len(), 2, "{accounts:?}");
    let aside = accounts
        .iter()
        .find(|k| k.contains("unknown-to-ca"))
        .unwrap();
    assert_eq!(storage.load(aside).await.unwrap(), old_account);
    let current = accounts
        .iter()
        .find(|k| k.ends_with("/account.json"))
        .unwrap();
    assert_ne!(storage.load(current).await.unwrap(), old_account);
}
