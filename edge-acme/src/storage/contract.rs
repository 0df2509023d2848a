//! What every [`Storage`] must do, as checks any implementation's tests
//! run against a fresh, empty store: keys and values, and locks.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::{Storage, StorageError};

/// Store, overwrite, load, stat, list by prefix, delete (idempotent), and
/// keys that leave the store refused.
pub(crate) async fn keys_and_values(s: &dyn Storage) {
    assert!(matches!(
        s.load("a/b").await,
        Err(StorageError::NotFound(k)) if k == "a/b"
    ));
    let before = SystemTime::now() - Duration::from_secs(1);
    s.store("a/b", b"one").await.unwrap();
    s.store("a/c/d", b"two").await.unwrap();
    s.store("ab", b"not under a/").await.unwrap();
    s.store("a/b", b"three").await.unwrap();
    assert_eq!(s.load("a/b").await.unwrap(), b"three");
    let info = s.stat("a/b").await.unwrap();
    assert_eq!(info.size, 5);
    assert!(info.modified >= before && info.modified <= SystemTime::now());
    assert!(matches!(
        s.stat("a/x").await,
        Err(StorageError::NotFound(_))
    ));
    assert_eq!(s.list("a").await.unwrap(), ["a/b", "a/c/d"]);
    assert_eq!(s.list("").await.unwrap(), ["a/b", "a/c/d", "ab"]);
    assert!(s.list("nothing").await.unwrap().is_empty());
    s.delete("a/b").await.unwrap();
    s.delete("a/b").await.unwrap();
    assert_eq!(s.list("a").await.unwrap(), ["a/c/d"]);
    assert!(matches!(
        s.stat("a/b").await,
        Err(StorageError::NotFound(_))
    ));
    assert!(s.store("../escape", b"x").await.is_err());
    assert!(s.list("../x").await.is_err());
}

/// A lock is exclusive, re-entrant and refreshable for its owner, released
/// only by its owner; lock names are checked as keys.
pub(crate) async fn locks(s: &dyn Storage) {
    let ttl = Duration::from_secs(60);
    assert!(s.try_lock("cert-a", "node1", ttl).await.unwrap());
    assert!(!s.try_lock("cert-a", "node2", ttl).await.unwrap());
    assert!(s.try_lock("cert-a", "node1", ttl).await.unwrap());
    assert!(s.refresh_lock("cert-a", "node1", ttl).await.unwrap());
    assert!(!s.refresh_lock("cert-a", "node2", ttl).await.unwrap());
    s.unlock("cert-a", "node2").await.unwrap(); // not the holder: no effect
    assert!(!s.try_lock("cert-a", "node2", ttl).await.unwrap());
    s.unlock("cert-a", "node1").await.unwrap();
    assert!(!s.refresh_lock("cert-a", "node1", ttl).await.unwrap());
    assert!(s.try_lock("cert-a", "node2", ttl).await.unwrap());
    assert!(s.try_lock("a/b", "n", ttl).await.is_err());
}

/// Eight nodes take one lock at once: exactly one gets it.
pub(crate) async fn one_winner_among_lockers(s: Arc<dyn Storage>) {
    let mut tasks = Vec::new();
    for i in 0..8 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            s.try_lock("race", &format!("node{i}"), Duration::from_secs(60))
                .await
                .unwrap()
        }));
    }
    let mut winners = 0;
    for t in tasks {
        winners += usize::from(t.await.unwrap());
    }
    assert_eq!(winners, 1);
}
