//! Renewals asked for by an operator (`AcmeHandle::renew_now`): one flag
//! and one wake-up per managed certificate, so its task stops waiting and
//! orders even though the certificate is not yet due.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::Notify;

/// The renewal requests of every managed certificate, by storage id.
#[derive(Debug, Default)]
pub(crate) struct RenewRequests {
    wake: BTreeMap<String, Arc<Notify>>,
    asked: Mutex<BTreeSet<String>>,
}

impl RenewRequests {
    /// Requests for the certificates with these storage ids.
    pub(crate) fn new(ids: impl IntoIterator<Item = String>) -> Self {
        Self {
            wake: ids
                .into_iter()
                .map(|id| (id, Arc::new(Notify::new())))
                .collect(),
            asked: Mutex::default(),
        }
    }

    fn asked(&self) -> std::sync::MutexGuard<'_, BTreeSet<String>> {
        self.asked.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Asks for a renewal of `id` and wakes its task; false for an id not
    /// managed.
    pub(crate) fn ask(&self, id: &str) -> bool {
        let Some(wake) = self.wake.get(id) else {
            return false;
        };
        self.asked().insert(id.to_owned());
        // Stores a permit when the task is not waiting right now.
        wake.notify_one();
        true
    }

    /// Whether a renewal of `id` is asked for (and not yet taken).
    pub(crate) fn is_asked(&self, id: &str) -> bool {
        self.asked().contains(id)
    }

    /// Takes the request for `id`: true when there was one.
    pub(crate) fn take(&self, id: &str) -> bool {
        self.asked().remove(id)
    }

    /// Resolves when a renewal of `id` is asked for (never for an id not
    /// managed).
    pub(crate) async fn woken(&self, id: &str) {
        match self.wake.get(id) {
            Some(wake) => wake.notified().await,
            None => std::future::pending().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn a_request_wakes_its_task_once_and_is_taken_once() {
        let r = Arc::new(RenewRequests::new([
            "a.test".to_string(),
            "b.test".to_string(),
        ]));
        assert!(!r.ask("c.test"), "not managed");
        assert!(!r.is_asked("a.test"));

        // Asked while nobody waits: the permit is kept for the next wait.
        assert!(r.ask("a.test"));
        assert!(r.is_asked("a.test") && !r.is_asked("b.test"));
        tokio::time::timeout(Duration::from_secs(1), r.woken("a.test"))
            .await
            .expect("woken by a request made before the wait");
        assert!(r.take("a.test"));
        assert!(!r.take("a.test"), "taken once");

        // Asked while waiting.
        let waiter = tokio::spawn({
            let r = Arc::clone(&r);
            async move { r.woken("b.test").await }
        });
        tokio::task::yield_now().await;
        assert!(r.ask("b.test"));
        tokio::time::timeout(Duration::from_secs(1), waiter)
            .await
            .expect("woken")
            .unwrap();

        // Nothing asked for a: no wake-up.
        assert!(
            tokio::time::timeout(Duration::from_millis(50), r.woken("a.test"))
                .await
                .is_err()
        );
        assert!(
            tokio::time::timeout(Duration::from_millis(50), r.woken("c.test"))
                .await
                .is_err()
        );
    }
}
