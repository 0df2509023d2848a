//! The manager's stop signal, as its tasks and the storage lock see it.
//!
//! A graceful stop must not simply drop the work in progress: a storage
//! lock's release is an async storage call, which cannot run in `Drop`. So
//! the work watches this signal at its await points instead, gives up what it
//! was doing, and then releases what it holds explicitly.

use std::future::Future;

use tokio::sync::watch;

use crate::error::Error;

/// Set once by [`AcmeHandle::shutdown`](crate::AcmeHandle::shutdown).
#[derive(Debug, Clone)]
pub(crate) struct Stop(watch::Receiver<bool>);

impl Stop {
    /// A signal and its trigger (send `true` to stop).
    pub(crate) fn new() -> (watch::Sender<bool>, Self) {
        let (tx, rx) = watch::channel(false);
        (tx, Self(rx))
    }

    /// Whether the stop was requested (or its trigger is gone).
    pub(crate) fn is_set(&self) -> bool {
        *self.0.borrow() || self.0.has_changed().is_err()
    }

    /// Completes once the stop is requested (or its trigger is gone).
    pub(crate) async fn wait(&self) {
        let mut rx = self.0.clone();
        let _ = rx.wait_for(|stop| *stop).await;
    }

    /// Runs `work` unless the stop comes first, which drops `work` and
    /// returns [`Error::Stopped`]. Only for work that holds nothing needing
    /// an async release: the caller releases what it holds afterwards.
    /// Work that is done wins over a stop that comes at the same moment.
    pub(crate) async fn until<T>(
        &self,
        work: impl Future<Output = Result<T, Error>>,
    ) -> Result<T, Error> {
        tokio::select! {
            biased;
            result = work => result,
            () = self.wait() => Err(Error::Stopped),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn until_gives_up_the_work_at_stop() {
        let (tx, stop) = Stop::new();
        assert!(!stop.is_set());
        let quick = stop.until(async { Ok(1) }).await;
        assert_eq!(quick.ok(), Some(1));
        let task = tokio::spawn({
            let stop = stop.clone();
            async move {
                stop.until(async {
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                    Ok(())
                })
                .await
            }
        });
        tx.send_replace(true);
        let result = tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("the stop was not seen")
            .unwrap();
        assert!(matches!(result, Err(Error::Stopped)));
        assert!(stop.is_set());
    }

    #[tokio::test]
    async fn a_dropped_trigger_counts_as_stop() {
        let (tx, stop) = Stop::new();
        drop(tx);
        assert!(stop.is_set());
        tokio::time::timeout(Duration::from_secs(5), stop.wait())
            .await
            .unwrap();
    }
}
