//! Passive outlier detection: live traffic outcomes counted per target.
//!
//! The hot path ([`OutlierDetector::record`]) is a hash lookup and one
//! atomic operation; only when a target crosses its threshold does a message
//! go to the checker, which applies the ejection cap and the growing
//! ejection time.

use arc_swap::ArcSwap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use crate::config::OutlierConfig;
use crate::scheduler::Key;
use crate::shared::Command;

/// Each target's failure counters, one per outlier detector that watches
/// it; swapped whole when targets change.
pub(crate) type Counters = std::collections::HashMap<SocketAddr, Vec<Arc<FailureCounter>>>;

/// The outcome of one request or connection in live traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outcome {
    /// It worked (any non-5xx answer).
    Success,
    /// The connection could not be made (refused, reset, unreachable).
    ConnectFailure,
    /// The backend answered 5xx.
    Status5xx,
    /// The backend did not answer in time.
    Timeout,
}

/// Records live-traffic outcomes; cheap to clone and call from every
/// request. Targets unknown to the checker are ignored.
#[derive(Debug, Clone)]
pub struct OutlierDetector {
    pub(crate) counters: Arc<ArcSwap<Counters>>,
    pub(crate) tx: mpsc::UnboundedSender<Command>,
}

impl OutlierDetector {
    /// Records one outcome for `target` (in every pool that holds it).
    pub fn record(&self, target: SocketAddr, outcome: Outcome) {
        let map = self.counters.load();
        let Some(counters) = map.get(&target) else {
            return;
        };
        for c in counters {
            c.record(outcome, &self.tx);
        }
    }
}

/// Consecutive failures of one target in one pool.
#[derive(Debug)]
pub(crate) struct FailureCounter {
    pub(crate) key: Key,
    threshold: u32,
    enabled: bool,
    consecutive: AtomicU32,
    /// An ejection request is on its way to the checker.
    pending: AtomicBool,
}

impl FailureCounter {
    pub(crate) fn new(key: Key, cfg: &OutlierConfig) -> Self {
        Self {
            key,
            threshold: cfg.consecutive_failures,
            enabled: cfg.enabled,
            consecutive: AtomicU32::new(0),
            pending: AtomicBool::new(false),
        }
    }

    fn record(&self, outcome: Outcome, tx: &mpsc::UnboundedSender<Command>) {
        if !self.enabled {
            return;
        }
        if outcome == Outcome::Success {
            // Read first: no cache-line write on the common path.
            if self.consecutive.load(Ordering::Relaxed) != 0 {
                self.consecutive.store(0, Ordering::Relaxed);
            }
            return;
        }
        let n = self
            .consecutive
            .fetch_add(1, Ordering::Relaxed)
            .saturating_add(1);
        if n >= self.threshold && !self.pending.swap(true, Ordering::AcqRel) {
            let _ = tx.send(Command::Outlier {
                key: self.key,
                consecutive: n,
            });
        }
    }

    /// The checker handled the request: count from zero again.
    pub(crate) fn reset(&self) {
        self.consecutive.store(0, Ordering::Relaxed);
        self.pending.store(false, Ordering::Release);
    }
}

/// How many targets of a pool of `total` may be ejected at once: the
/// configured share, rounded down, but at least one.
pub fn max_ejected(total: usize, percent: u8) -> usize {
    (total.saturating_mul(usize::from(percent)) / 100).max(1)
}

/// The ejection multiplier after decay: it drops by one for every
/// `base_ejection_time` the target has been back in rotation (Envoy's
/// behaviour), then grows by one for this ejection.
pub(crate) fn next_multiplier(
    previous: u32,
    returned_at: Option<Instant>,
    now: Instant,
    base: Duration,
) -> u32 {
    let decay = match returned_at {
        Some(r) if !base.is_zero() => {
            let healthy_for = now.saturating_duration_since(r);
            u32::try_from(healthy_for.as_nanos() / base.as_nanos()).unwrap_or(u32::MAX)
        }
        _ => 0,
    };
    previous.saturating_sub(decay).saturating_add(1)
}

/// The ejection time for `multiplier`: base times multiplier, capped.
pub(crate) fn ejection_time(cfg: &OutlierConfig, multiplier: u32) -> Duration {
    cfg.base_ejection_time
        .checked_mul(multiplier)
        .unwrap_or(cfg.max_ejection_time)
        .min(cfg.max_ejection_time)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cap_is_a_share_but_at_least_one() {
        assert_eq!(max_ejected(5, 10), 1);
        assert_eq!(max_ejected(20, 10), 2);
        assert_eq!(max_ejected(1000, 10), 100);
        assert_eq!(max_ejected(3, 0), 1);
        assert_eq!(max_ejected(4, 100), 4);
    }

    #[test]
    fn ejection_time_grows_then_caps_and_decays() {
        let cfg = OutlierConfig::default();
        let t0 = Instant::now();
        let base = cfg.base_ejection_time;
        let m1 = next_multiplier(0, None, t0, base);
        assert_eq!(ejection_time(&cfg, m1), Duration::from_secs(30));
        // Back for 10 s only: the multiplier does not decay.
        let m2 = next_multiplier(m1, Some(t0), t0 + Duration::from_secs(10), base);
        assert_eq!(ejection_time(&cfg, m2), Duration::from_secs(60));
        let m3 = next_multiplier(m2, Some(t0), t0 + Duration::from_secs(1), base);
        assert_eq!(ejection_time(&cfg, m3), Duration::from_secs(90));
        assert_eq!(ejection_time(&cfg, 50), Duration::from_secs(300), "capped");
        // Back for two base times: decays by two.
        let m = next_multiplier(3, Some(t0), t0 + Duration::from_secs(61), base);
        assert_eq!(m, 2);
    }

    #[test]
    fn one_request_per_threshold_crossing() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let cfg = OutlierConfig::default();
        let c = FailureCounter::new((0, 0), &cfg);
        for _ in 0..4 {
            c.record(Outcome::Status5xx, &tx);
        }
        c.record(Outcome::Success, &tx);
        for _ in 0..4 {
            c.record(Outcome::ConnectFailure, &tx);
        }
        assert!(rx.try_recv().is_err(), "a success resets the count");
        for _ in 0..10 {
            c.record(Outcome::Timeout, &tx);
        }
        assert!(matches!(
            rx.try_recv(),
            Ok(Command::Outlier { consecutive: 5, .. })
        ));
        assert!(rx.try_recv().is_err(), "only one request while pending");
        c.reset();
        for _ in 0..5 {
            c.record(Outcome::Status5xx, &tx);
        }
        assert!(rx.try_recv().is_ok());
    }
}
