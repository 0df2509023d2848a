//! How connections end: when the config they were accepted under is
//! replaced (a reload), and when the process stops.
//!
//! Every [`State`](crate::state::State) carries a [`Closing`]. A reload
//! [`retire`](Closing::retire)s the old state's: its HTTP connections finish
//! the request in flight and close (HTTP/1 answers with `connection: close`,
//! HTTP/2 sends GOAWAY), so clients come back on the new config within one
//! request while no request fails. A stop [`stop_all`](Closing::stop_all)s
//! every state's connections the same way. Passthrough connections are not
//! told anything (edge cannot end a TLS stream it does not terminate); they
//! run until they end or the stop deadline.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Semaphore, watch};

/// The close signals one state's connections watch: its own (set when the
/// state is replaced) and the process's (set at stop).
#[derive(Debug, Clone)]
pub struct Closing {
    state: Arc<watch::Sender<bool>>,
    process: Arc<watch::Sender<bool>>,
}

impl Default for Closing {
    fn default() -> Self {
        Self::new()
    }
}

impl Closing {
    /// The signals of a process's first state.
    pub fn new() -> Self {
        Self {
            state: Arc::new(watch::Sender::new(false)),
            process: Arc::new(watch::Sender::new(false)),
        }
    }

    /// The signals of the state that replaces this one: its own state
    /// signal, the same process signal.
    pub fn successor(&self) -> Self {
        Self {
            state: Arc::new(watch::Sender::new(false)),
            process: self.process.clone(),
        }
    }

    /// Asks this state's connections to finish their request and close.
    pub fn retire(&self) {
        self.state.send_replace(true);
    }

    /// Asks every connection of the process to finish and close.
    pub fn stop_all(&self) {
        self.process.send_replace(true);
    }

    /// Whether [`stop_all`](Self::stop_all) was called (the process stops).
    pub fn is_stopping(&self) -> bool {
        *self.process.borrow()
    }

    /// Whether [`retire`](Self::retire) or [`stop_all`](Self::stop_all) was called.
    pub fn is_closing(&self) -> bool {
        *self.state.borrow() || *self.process.borrow()
    }

    /// Completes once the process stops ([`stop_all`](Self::stop_all));
    /// a reload does not count.
    pub async fn stopped(&self) {
        let mut process = self.process.subscribe();
        // The sender lives as long as `self`, so this only returns on stop.
        let _ = process.wait_for(|c| *c).await;
    }

    /// Completes once the connection should close.
    pub async fn closed(&self) {
        let mut state = self.state.subscribe();
        let mut process = self.process.subscribe();
        tokio::select! {
            _ = state.wait_for(|c| *c) => {}
            _ = process.wait_for(|c| *c) => {}
        }
    }
}

/// Completes once `closing` is signalled and the connection is past
/// hyper-util's protocol detection, which a graceful shutdown would cancel
/// outright, failing the client's first request. `activity` counts the
/// bytes moved plus one per read or write; until the server writes
/// anything, 48 means at least the 24 bytes that decide HTTP/1 or HTTP/2
/// were read. On a reload, a connection that never gets there ends by its
/// idle timeout; at stop, once it has been quiet for [`STOP_GRACE`] (it has
/// no request to lose, and after a VRRP handover its packets go to the
/// other node anyway).
pub async fn protocol_started(closing: &Closing, activity: &std::sync::atomic::AtomicU64) {
    use std::sync::atomic::Ordering::Relaxed;
    closing.closed().await;
    let step = Duration::from_millis(10);
    let (mut last, mut quiet) = (activity.load(Relaxed), Duration::ZERO);
    while activity.load(Relaxed) < 48 {
        tokio::time::sleep(step).await;
        let now = activity.load(Relaxed);
        if now == last {
            quiet += step;
        } else {
            (last, quiet) = (now, Duration::ZERO);
        }
        if closing.is_stopping() && quiet >= STOP_GRACE {
            return;
        }
    }
}

/// At stop, how long a connection that has not begun a request may stay
/// silent before it is closed.
pub const STOP_GRACE: Duration = Duration::from_secs(1);

/// Waits until every connection counted by `conns` (a semaphore of
/// `max_connections` permits, one held per connection) has ended, or
/// `timeout`. Returns the connections still open at the deadline.
pub async fn drain(conns: &Semaphore, max_connections: usize, timeout: Duration) -> usize {
    let want = u32::try_from(max_connections).unwrap_or(u32::MAX);
    match tokio::time::timeout(timeout, conns.acquire_many(want)).await {
        Ok(Ok(permits)) => {
            drop(permits);
            0
        }
        _ => max_connections.saturating_sub(conns.available_permits()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn retire_closes_one_state_stop_closes_all() {
        let first = Closing::new();
        let second = first.successor();
        first.retire();
        tokio::time::timeout(Duration::from_secs(1), first.closed())
            .await
            .unwrap();
        assert!(!second.is_closing());
        assert!(
            tokio::time::timeout(Duration::from_millis(50), second.closed())
                .await
                .is_err()
        );
        first.stop_all();
        tokio::time::timeout(Duration::from_secs(1), second.closed())
            .await
            .unwrap();
        assert!(second.successor().is_closing());
    }

    #[tokio::test]
    async fn drain_waits_for_connections_up_to_the_deadline() {
        let conns = Arc::new(Semaphore::new(4));
        let held = conns.clone().acquire_many_owned(2).await.unwrap();
        assert_eq!(drain(&conns, 4, Duration::from_millis(50)).await, 2);
        let release = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            drop(held);
        });
        assert_eq!(drain(&conns, 4, Duration::from_secs(10)).await, 0);
        release.await.unwrap();
    }
}
