//! [`EtcdStorage`] against a real etcd (Debian `etcd-server`) started on
//! loopback by each test: the behaviours `DirStorage`'s tests check, plus
//! lease expiry and an etcd that goes away.

use std::sync::Arc;
use std::time::{Duration, Instant};

use edge_testkit::etcd::LocalEtcd;
use etcd_client::{Client, ConnectOptions};

use super::*;
use crate::stop::Stop;
use crate::storage::acquire;

async fn client(endpoint: &str) -> Client {
    let options = ConnectOptions::new()
        .with_connect_timeout(Duration::from_secs(1))
        .with_timeout(Duration::from_secs(2));
    Client::connect([endpoint], Some(options)).await.unwrap()
}

async fn storage(tag: &str) -> (LocalEtcd, EtcdStorage) {
    let etcd = LocalEtcd::start(tag);
    let s = EtcdStorage::new(client(&etcd.endpoint()).await, "/edge/acme");
    (etcd, s)
}

#[tokio::test]
async fn store_load_list_delete_stat() {
    let (_etcd, s) = storage("kv").await;
    assert_eq!(s.prefix(), "/edge/acme/");
    crate::storage::contract::keys_and_values(&s).await;
    // Another prefix is another store.
    let other = EtcdStorage::new(s.client.clone(), "/other/");
    assert!(other.list("").await.unwrap().is_empty());
}

#[tokio::test]
async fn lock_is_exclusive_and_reentrant_for_owner() {
    let (_etcd, s) = storage("lock").await;
    crate::storage::contract::locks(&s).await;
    // Locks are no data (DirStorage keeps them under `locks/`).
    assert!(s.list("").await.unwrap().is_empty());
}

#[tokio::test]
async fn lock_of_dead_holder_expires_with_its_lease() {
    let (_etcd, s) = storage("expiry").await;
    let ttl = Duration::from_secs(2);
    assert!(s.try_lock("cert-a", "dead-node", ttl).await.unwrap());
    let t0 = Instant::now();
    // Nobody keeps the lease alive: etcd drops the lock by itself.
    while !s.try_lock("cert-a", "node1", ttl).await.unwrap() {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "the lock never expired"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let waited = t0.elapsed();
    assert!(
        waited >= Duration::from_millis(1500),
        "expired after {waited:?}"
    );
    eprintln!("a dead holder's 2 s lock expired after {waited:?}");
    assert!(!s.refresh_lock("cert-a", "dead-node", ttl).await.unwrap());
    assert!(s.refresh_lock("cert-a", "node1", ttl).await.unwrap());
}

#[tokio::test]
async fn keepalive_holds_the_lock_and_release_frees_it() {
    let (_etcd, s) = storage("keep").await;
    let storage: Arc<dyn Storage> = Arc::new(s);
    let (_stop_tx, stop) = Stop::new();
    let ttl = Duration::from_secs(2);
    let poll = Duration::from_millis(50);
    let held = acquire(&storage, "l", "a", ttl, poll, Duration::ZERO, &stop)
        .await
        .unwrap()
        .expect("free lock");
    tokio::time::sleep(ttl * 3).await;
    assert!(!held.is_lost());
    assert!(!storage.try_lock("l", "b", ttl).await.unwrap());
    held.release().await;
    assert!(storage.try_lock("l", "b", ttl).await.unwrap());
}

#[tokio::test]
async fn concurrent_lockers_one_winner() {
    let (_etcd, s) = storage("race").await;
    crate::storage::contract::one_winner_among_lockers(Arc::new(s)).await;
}

#[tokio::test]
async fn unreachable_etcd_is_an_error_in_bounded_time_and_then_recovers() {
    let (mut etcd, s) = storage("down").await;
    s.store("k", b"v").await.unwrap();
    etcd.kill();
    let t0 = Instant::now();
    assert!(matches!(s.load("k").await, Err(StorageError::Io { .. })));
    assert!(s.try_lock("l", "n", Duration::from_secs(5)).await.is_err());
    assert!(t0.elapsed() < Duration::from_secs(8), "{:?}", t0.elapsed());
    etcd.restart();
    let t0 = Instant::now();
    loop {
        match s.load("k").await {
            Ok(v) => break assert_eq!(v, b"v"),
            Err(e) => assert!(t0.elapsed() < Duration::from_secs(15), "{e}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
