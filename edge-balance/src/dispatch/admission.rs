//! Admission to an endpoint: a concurrency limit with a bounded queue in
//! front of it (HAProxy's `maxconn` and `maxqueue` per server, with
//! `timeout queue`).

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::outcome::DispatchError;

/// An endpoint's value with its admission state: the values of a
/// [`Dispatcher`](super::Dispatcher)'s endpoint set. Make them with
/// [`Dispatcher::target`](super::Dispatcher::target).
pub struct Target<T> {
    value: T,
    limiter: Option<Arc<Semaphore>>,
    queued: AtomicUsize,
    active: AtomicUsize,
}

impl<T: fmt::Debug> fmt::Debug for Target<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Target")
            .field("value", &self.value)
            .field("limited", &self.limiter.is_some())
            .field("queued", &self.queued())
            .field("active", &self.active())
            .finish()
    }
}

impl<T> Target<T> {
    /// `value` with at most `limit` leases at once (0: no limit).
    pub(crate) fn new(value: T, limit: usize) -> Self {
        Self {
            value,
            limiter: (limit > 0).then(|| Arc::new(Semaphore::new(limit))),
            queued: AtomicUsize::new(0),
            active: AtomicUsize::new(0),
        }
    }

    /// The endpoint's value (e.g. its address).
    pub fn value(&self) -> &T {
        &self.value
    }

    /// Leases alive: requests until their response ends, connections
    /// until they close.
    pub fn active(&self) -> usize {
        self.active.load(Ordering::Relaxed)
    }

    /// Requests waiting for a slot.
    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }

    /// Takes a slot, waiting in the bounded queue (at most `max_queue`
    /// waiters, each for at most `queue_timeout`) when the endpoint is at
    /// its limit.
    pub(crate) async fn admit<K, E>(
        self: Arc<Self>,
        key: K,
        max_queue: usize,
        queue_timeout: Duration,
    ) -> Result<Lease<K, T>, DispatchError<E>> {
        let permit = match &self.limiter {
            None => None,
            Some(sem) => match sem.clone().try_acquire_owned() {
                Ok(p) => Some(p),
                Err(_) => {
                    if self.queued.fetch_add(1, Ordering::Relaxed) >= max_queue {
                        self.queued.fetch_sub(1, Ordering::Relaxed);
                        return Err(DispatchError::QueueFull);
                    }
                    let r = tokio::time::timeout(queue_timeout, sem.clone().acquire_owned()).await;
                    self.queued.fetch_sub(1, Ordering::Relaxed);
                    match r {
                        Ok(Ok(p)) => Some(p),
                        _ => return Err(DispatchError::QueueTimeout(queue_timeout)),
                    }
                }
            },
        };
        self.active.fetch_add(1, Ordering::Relaxed);
        Ok(Lease {
            key,
            target: self,
            _permit: permit,
        })
    }
}

/// An endpoint in use by one request or connection: holds its slot and
/// counts in [`Target::active`] until dropped. Keep it as long as the work
/// lasts (a response body, an upgraded tunnel, a relayed connection).
pub struct Lease<K, T> {
    key: K,
    target: Arc<Target<T>>,
    _permit: Option<OwnedSemaphorePermit>,
}

impl<K: fmt::Debug, T> fmt::Debug for Lease<K, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lease")
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl<K, T> Lease<K, T> {
    /// The endpoint's key.
    pub fn key(&self) -> &K {
        &self.key
    }

    /// The endpoint's value.
    pub fn value(&self) -> &T {
        &self.target.value
    }
}

impl<K, T> Drop for Lease<K, T> {
    fn drop(&mut self) {
        self.target.active.fetch_sub(1, Ordering::Relaxed);
    }
}
