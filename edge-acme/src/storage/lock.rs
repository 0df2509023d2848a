//! Taking a storage lock, keeping it alive while working, releasing it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::{Storage, StorageError};
use crate::stop::Stop;

/// A held storage lock.
///
/// A background task pushes the lock's expiry forward every third of its
/// time-to-live, so a long order keeps it while a crashed node's lock simply
/// expires. Call [`release`](StorageLock::release) when done (also when the
/// work was given up at a graceful stop); dropping the guard only stops the
/// keep-alive, and the lock expires on its own after its time-to-live, as it
/// does when the process is killed.
#[derive(Debug)]
pub struct StorageLock {
    storage: Arc<dyn Storage>,
    name: String,
    owner: String,
    lost: Arc<AtomicBool>,
    keepalive: JoinHandle<()>,
    /// Tells the keep-alive to stop between two refreshes.
    stop_keepalive: Option<oneshot::Sender<()>>,
}

impl StorageLock {
    /// Whether a refresh found the lock taken by someone else (we stalled past
    /// its expiry). Work done under a lost lock must be re-checked.
    pub fn is_lost(&self) -> bool {
        self.lost.load(Ordering::Relaxed)
    }

    /// Stops the keep-alive and removes the lock.
    pub async fn release(mut self) {
        // Let a refresh in flight finish first: aborting it would leave its
        // blocking write running, which could put the lock back after the
        // unlock below.
        if let Some(stop) = self.stop_keepalive.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.keepalive).await;
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
/// `max_wait`. Returns `Ok(None)` when the wait ran out or `stop` was set.
/// The stop is seen between attempts, never during one, so a lock taken by
/// an attempt in flight is returned (for the caller to release) rather
/// than left behind.
pub(crate) async fn acquire(
    storage: &Arc<dyn Storage>,
    name: &str,
    owner: &str,
    ttl: Duration,
    poll: Duration,
    max_wait: Duration,
    stop: &Stop,
) -> Result<Option<StorageLock>, StorageError> {
    let deadline = Instant::now() + max_wait;
    loop {
        if stop.is_set() {
            return Ok(None);
        }
        if storage.try_lock(name, owner, ttl).await? {
            break;
        }
        if Instant::now() + poll > deadline {
            return Ok(None);
        }
        tokio::select! {
            () = tokio::time::sleep(poll) => {}
            () = stop.wait() => return Ok(None),
        }
    }
    let lost = Arc::new(AtomicBool::new(false));
    let (stop_keepalive, mut stopped) = oneshot::channel();
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
                tokio::select! {
                    () = tokio::time::sleep(every) => {}
                    _ = &mut stopped => return,
                }
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
        stop_keepalive: Some(stop_keepalive),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DirStorage;

    const POLL: Duration = Duration::from_millis(20);

    /// A fresh directory storage and a stop signal that is never set.
    struct Fixture {
        dir: tempfile::TempDir,
        storage: Arc<dyn Storage>,
        _trigger: tokio::sync::watch::Sender<bool>,
        stop: Stop,
    }

    impl Fixture {
        fn new() -> Self {
            let dir = tempfile::tempdir().unwrap();
            let storage: Arc<dyn Storage> = Arc::new(DirStorage::new(dir.path()));
            let (_trigger, stop) = Stop::new();
            Self {
                dir,
                storage,
                _trigger,
                stop,
            }
        }

        /// Lock "l" for `owner`, waiting up to `wait`.
        async fn take(&self, owner: &str, ttl: Duration, wait: Duration) -> Option<StorageLock> {
            acquire(&self.storage, "l", owner, ttl, POLL, wait, &self.stop)
                .await
                .unwrap()
        }
    }

    #[tokio::test]
    async fn keepalive_holds_the_lock_past_its_ttl_and_release_frees_it() {
        let f = Fixture::new();
        // Refreshed every ttl/3: a second of slack for a loaded CI machine.
        let ttl = Duration::from_millis(1500);
        let lock = f.take("a", ttl, Duration::ZERO).await.expect("free lock");
        tokio::time::sleep(ttl * 3).await;
        // Still held by "a" thanks to the keep-alive.
        assert!(f.take("b", ttl, Duration::from_millis(100)).await.is_none());
        assert!(!lock.is_lost());
        lock.release().await;
        assert!(f.take("b", ttl, Duration::ZERO).await.is_some());
    }

    #[tokio::test]
    async fn dropped_guard_lets_the_lock_expire() {
        let f = Fixture::new();
        let ttl = Duration::from_millis(300);
        drop(f.take("crashed", ttl, Duration::ZERO).await);
        let b = f.take("b", ttl, Duration::from_secs(5)).await;
        assert!(b.is_some(), "expired lock was not taken over");
    }

    #[tokio::test]
    async fn a_waiter_gives_up_at_stop() {
        let f = Fixture::new();
        let ttl = Duration::from_secs(30);
        let held = f.take("a", ttl, Duration::ZERO).await.expect("free lock");
        let (trigger, stop) = Stop::new();
        let storage = Arc::clone(&f.storage);
        let waiter = tokio::spawn(async move {
            let wait = Duration::from_secs(600);
            acquire(&storage, "l", "b", ttl, POLL, wait, &stop).await
        });
        tokio::time::sleep(Duration::from_millis(200)).await;
        trigger.send_replace(true);
        let got = tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("the waiter did not see the stop")
            .unwrap()
            .unwrap();
        assert!(got.is_none());
        held.release().await;
    }

    #[tokio::test]
    async fn release_during_refreshes_leaves_no_lock_behind() {
        let f = Fixture::new();
        // Refreshed every 100 ms: releases land on refreshes in flight.
        let ttl = Duration::from_millis(300);
        let file = f.dir.path().join("locks/l.lock");
        for i in 0..20u64 {
            let lock = f.take("a", ttl, Duration::ZERO).await.expect("free lock");
            tokio::time::sleep(Duration::from_millis(100 + i * 7)).await;
            lock.release().await;
            assert!(!file.exists(), "round {i}: the lock file is still there");
        }
        // Nothing puts it back later either.
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!file.exists(), "a late refresh wrote the lock back");
    }
}
