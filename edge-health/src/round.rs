//! The checker's first round: over once every target the checker was
//! spawned with has had its first probe finish (passed, failed or timed
//! out) or was removed before. A starting node waits for it before it
//! claims its VIPs, so it never serves from servers it knows nothing of.

use std::time::Instant;

use tokio::sync::watch;

use crate::event::FirstRound;

/// Counts the targets still waiting for their first result and publishes
/// the end of the round once.
#[derive(Debug)]
pub(crate) struct FirstRoundTracker {
    pending: usize,
    started: Instant,
    tx: watch::Sender<Option<FirstRound>>,
}

impl FirstRoundTracker {
    /// A round of `pending` targets from `started`, and the receiver the
    /// handles wait on (it sees an error once the checker stops).
    pub(crate) fn new(
        pending: usize,
        started: Instant,
    ) -> (Self, watch::Receiver<Option<FirstRound>>) {
        let (tx, rx) = watch::channel(None);
        (
            Self {
                pending,
                started,
                tx,
            },
            rx,
        )
    }

    /// Whether the round has ended.
    pub(crate) fn is_over(&self) -> bool {
        self.tx.borrow().is_some()
    }

    /// One target of the round is done. Returns `true` when that ends the
    /// round: the caller then calls [`finish`](Self::finish).
    pub(crate) fn done_one(&mut self) -> bool {
        self.pending = self.pending.saturating_sub(1);
        self.pending == 0 && !self.is_over()
    }

    /// Whether no target is left (a checker spawned without any).
    pub(crate) fn is_empty(&self) -> bool {
        self.pending == 0
    }

    /// Ends the round with `up` and `down` targets, logs it once and wakes
    /// the waiters.
    pub(crate) fn finish(&mut self, now: Instant, up: usize, down: usize) {
        if self.is_over() {
            return;
        }
        let round = FirstRound {
            up,
            down,
            took: now.saturating_duration_since(self.started),
        };
        tracing::info!(
            up,
            down,
            took_ms = u64::try_from(round.took.as_millis()).unwrap_or(u64::MAX),
            "first health check round complete"
        );
        self.tx.send_replace(Some(round));
    }
}
