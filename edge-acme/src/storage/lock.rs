//! Taking a storage lock, keeping it alive while working, releasing it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::{Storage, StorageError};

/// A held storage lock.
///
/// A background task pushes the lock's expiry forward every third of its
/// time-to-live, so a long order keeps it while a crashed node's lock simply
/// expires. Call [`release`](StorageLock::release) when done; dropping the
/// guard stops the keep-alive and the lock expires on its own.
#[derive(Debug)]
pub struct StorageLock {
    storage: Arc<dyn Storage>,
    name: String,
    owner: String,
    lost: Arc<AtomicBool>,
    keepalive: JoinHandle<()>,
}

impl StorageLock {
    /// Whether a refresh found the lock taken by someone else (we stalled past
    /// its expiry). Work done under a lost lock must be re-checked.
    pub fn is_lost(&self) -> bool {
        self.lost.load(Ordering::Relaxed)
    }

    /// Stops the keep-alive and removes the lock.
    pub async fn release(self) {
        self.keepalive.abort();
        if let Err(e) = self.storage.unlock(&self.name, &self.owner).await {
            tracing::warn!(lock = %self.name, error = %e, "could not release storage lock; it will expire");
        }
    }
}

impl Drop for StorageLock {
    fn drop(&mut self) {
        self.keepalive.abort();
    }
}

/// Waits until `owner` holds lock `name`, polling every `poll`, for at most
/// `max_wait`. Returns `Ok(None)` when the wait ran out.
pub(crate) async fn acquire(
    storage: &Arc<dyn Storage>,
    name: &str,
    owner: &str,
    ttl: Duration,
    poll: Duration,
    max_wait: Duration,
) -> Result<Option<StorageLock>, StorageError> {
    let deadline = Instant::now() + max_wait;
    loop {
        if storage.try_lock(name, owner, ttl).await? {
            break;
        }
        if Instant::now() + poll > deadline {
            return Ok(None);
        }
        tokio::time::sleep(poll).await;
    }
    let lost = Arc::new(AtomicBool::new(false));
    let keepalive = {
        let (storage, name, owner, lost) = (
            Arc::clone(storage),
            name.to_owned(),
            owner.to_owned(),
            Arc::clone(&lost),
        );
        tokio::spawn(async move {
            let every = (ttl / 3).max(Duration::from_millis(100));
            loop {
                tokio::time::sleep(every).await;
                match storage.refresh_lock(&name, &owner, ttl).await {
                    Ok(true) => {}
                    Ok(false) => {
                        tracing::warn!(lock = %name, "storage lock was taken over by another node");
                        lost.store(true, Ordering::Relaxed);
                        return;
                    }
                    Err(e) => {
                        tracing::warn!(lock = %name, error = %e, "could not refresh storage lock")
                    }
                }
            }
        })
    };
    Ok(Some(StorageLock {
        storage: Arc::clone(storage),
        name: name.to_owned(),
        owner: owner.to_owned(),
        lost,
        keepalive,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DirStorage;

    #[tokio::test]
    async fn keepalive_holds_the_lock_past_its_ttl_and_release_frees_it() {
        let dir = tempfile::tempdir().unwrap();
        let storage: Arc<dyn Storage> = Arc::new(DirStorage::new(dir.path()));
        // Refreshed every ttl/3: a second of slack for a loaded CI machine.
        let ttl = Duration::from_millis(1500);
        let poll = Duration::from_millis(50);
        let lock = acquire(&storage, "l", "a", ttl, poll, Duration::ZERO)
            .await
            .unwrap()
            .expect("free lock");
        tokio::time::sleep(ttl * 3).await;
        // Still held by "a" thanks to the keep-alive.
        assert!(
            acquire(&storage, "l", "b", ttl, poll, Duration::from_millis(100))
                .await
                .unwrap()
                .is_none()
        );
        assert!(!lock.is_lost());
        lock.release().await;
        let b = acquire(&storage, "l", "b", ttl, poll, Duration::ZERO)
            .await
            .unwrap();
        assert!(b.is_some());
    }

    #[tokio::test]
    async fn dropped_guard_lets_the_lock_expire() {
        let dir = tempfile::tempdir().unwrap();
        let storage: Arc<dyn Storage> = Arc::new(DirStorage::new(dir.path()));
        let ttl = Duration::from_millis(300);
        let poll = Duration::from_millis(50);
        drop(
            acquire(&storage, "l", "crashed", ttl, poll, Duration::ZERO)
                .await
                .unwrap(),
        );
        let b = acquire(&storage, "l", "b", ttl, poll, Duration::from_secs(5))
            .await
            .unwrap();
        assert!(b.is_some(), "expired lock was not taken over");
    }
}
