//! What the checker publishes: per-target events and per-pool status.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crate::machine::TargetState;
use crate::reason::Reason;

/// One target's health, sent on every state change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthEvent {
    /// The target.
    pub target: SocketAddr,
    /// Its pool.
    pub pool: Arc<str>,
    /// Whether traffic may go to it.
    pub healthy: bool,
    /// Its state (why it is not healthy: unchecked, down or ejected).
    pub state: TargetState,
    /// Why it is in this state.
    pub reason: Reason,
    /// Since when.
    pub since: Instant,
}

/// One active probe, as it ended: every probe, not only those that change
/// a target's state (for status pages and probe-duration metrics).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeReport {
    /// The target.
    pub target: SocketAddr,
    /// Its pool.
    pub pool: Arc<str>,
    /// When the probe started (wall clock).
    pub started: SystemTime,
    /// How long it took (up to the check's timeout).
    pub duration: Duration,
    /// Passed, or why it failed.
    pub result: Result<(), Reason>,
}

/// Called with every [`ProbeReport`], on the checker's task: keep it short
/// (update counters, no I/O).
pub type ProbeObserver = Arc<dyn Fn(&ProbeReport) + Send + Sync>;

/// The end of a checker's first round: every target it was spawned with
/// had its first probe finish (passed, failed or timed out), or was removed
/// before. See [`HealthHandle::first_round`](crate::HealthHandle::first_round).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FirstRound {
    /// Targets in rotation when the round ended.
    pub up: usize,
    /// Targets out of rotation when the round ended (down or ejected).
    pub down: usize,
    /// From the checker's spawn to the end of the round.
    pub took: Duration,
}

/// A pool's capacity, for metrics and VRRP priority tracking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolStatus {
    /// The pool.
    pub pool: Arc<str>,
    /// Targets in rotation.
    pub healthy: usize,
    /// All targets.
    pub total: usize,
    /// Targets without a first result yet.
    pub unchecked: usize,
    /// Targets ejected by outlier detection.
    pub ejected: usize,
    /// Whether the capacity alert is raised (below the configured share or
    /// count). Never raised before every target has a first result.
    pub low: bool,
    /// Sum of the weights of the targets in rotation.
    pub healthy_weight: u64,
    /// Sum of the weights of all targets.
    pub total_weight: u64,
}

impl PoolStatus {
    /// A pool of `total` targets, each of weight 1, all checked, none
    /// ejected, `healthy` of them in rotation, the capacity alert down: a
    /// status to decide on (e.g. with [`has_healthy`](Self::has_healthy))
    /// where no checker runs, as in a test.
    pub fn new(pool: impl Into<Arc<str>>, healthy: usize, total: usize) -> Self {
        Self {
            pool: pool.into(),
            healthy,
            total,
            unchecked: 0,
            ejected: 0,
            low: false,
            healthy_weight: healthy as u64,
            total_weight: total as u64,
        }
    }

    /// Whether at least `min_count` targets are in rotation, and at least
    /// `min_share` (0.0-1.0) of all targets: what a VIP or an anycast
    /// announcement that tracks the pool waits for.
    pub fn has_healthy(&self, min_count: usize, min_share: f64) -> bool {
        // usize -> f64 is exact for any realistic pool size.
        self.healthy >= min_count && (self.healthy as f64) >= min_share * (self.total as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(healthy: usize, total: usize) -> PoolStatus {
        PoolStatus::new("p", healthy, total)
    }

    #[test]
    fn healthy_counts_and_shares() {
        assert!(status(1, 2).has_healthy(1, 0.0));
        assert!(!status(0, 2).has_healthy(1, 0.0));
        assert!(status(0, 2).has_healthy(0, 0.0), "nothing asked");
        assert!(status(2, 4).has_healthy(0, 0.5), "exactly the share");
        assert!(!status(1, 4).has_healthy(0, 0.5));
        assert!(!status(2, 4).has_healthy(3, 0.5), "the count too");
        assert!(
            status(0, 0).has_healthy(0, 1.0),
            "an empty pool meets a share"
        );
    }
}
