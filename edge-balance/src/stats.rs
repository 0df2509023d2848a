//! Per-endpoint counters (picks, in-flight, errors) and the latency estimate.
//!
//! One [`EndpointStats`] lives as long as its key stays in the
//! [`EndpointSet`](crate::EndpointSet): changing the weight, health or value
//! of an endpoint keeps its counters. Every field is an atomic, so pickers,
//! completing requests and a metrics scraper never wait on each other.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

/// Marks "no latency sample yet" in [`EndpointStats::rtt_bits`].
const NO_SAMPLE: u64 = u64::MAX;

/// Live counters of one endpoint.
///
/// Read them with [`EndpointStats::snapshot`] (or the individual getters) and
/// export them into whatever metrics registry the caller owns.
#[derive(Debug)]
pub struct EndpointStats {
    picks: AtomicU64,
    in_flight: AtomicU64,
    successes: AtomicU64,
    errors: AtomicU64,
    /// Peak-EWMA latency estimate in nanoseconds, as `f64` bits.
    rtt_bits: AtomicU64,
    /// When `rtt_bits` was last updated, in nanoseconds since `epoch`.
    rtt_at: AtomicU64,
    epoch: Instant,
}

/// A point-in-time copy of an endpoint's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct StatsSnapshot {
    /// Times a balancer picked the endpoint.
    pub picks: u64,
    /// Requests or connections currently outstanding on the endpoint.
    pub in_flight: u64,
    /// Completed requests reported as successful.
    pub successes: u64,
    /// Completed requests reported as failed.
    pub errors: u64,
    /// The Peak-EWMA latency estimate, once a request has completed.
    pub rtt_estimate: Option<Duration>,
}

impl Default for EndpointStats {
    fn default() -> Self {
        Self::new()
    }
}

impl EndpointStats {
    /// Fresh counters, all zero.
    pub fn new() -> Self {
        Self {
            picks: AtomicU64::new(0),
            in_flight: AtomicU64::new(0),
            successes: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            rtt_bits: AtomicU64::new(NO_SAMPLE),
            rtt_at: AtomicU64::new(0),
            epoch: Instant::now(),
        }
    }

    /// Times the endpoint was picked.
    pub fn picks(&self) -> u64 {
        self.picks.load(Ordering::Relaxed)
    }

    /// Requests or connections currently outstanding.
    pub fn in_flight(&self) -> u64 {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Completed requests reported as failed.
    pub fn errors(&self) -> u64 {
        self.errors.load(Ordering::Relaxed)
    }

    /// Completed requests reported as successful.
    pub fn successes(&self) -> u64 {
        self.successes.load(Ordering::Relaxed)
    }

    /// The raw Peak-EWMA estimate (not decayed to now).
    pub fn rtt_estimate(&self) -> Option<Duration> {
        let bits = self.rtt_bits.load(Ordering::Relaxed);
        (bits != NO_SAMPLE).then(|| Duration::from_nanos(f64::from_bits(bits) as u64))
    }

    /// All counters at once.
    pub fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            picks: self.picks(),
            in_flight: self.in_flight(),
            successes: self.successes(),
            errors: self.errors(),
            rtt_estimate: self.rtt_estimate(),
        }
    }

    pub(crate) fn begin(&self) {
        self.picks.fetch_add(1, Ordering::Relaxed);
        self.in_flight.fetch_add(1, Ordering::Relaxed);
    }

    /// Ends one unit of work begun with [`begin`](Self::begin) (the
    /// in-flight guard pairs them, so this never goes below zero).
    pub(crate) fn end(&self) {
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
    }

    pub(crate) fn record_success(&self) {
        self.successes.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn record_error(&self) {
        self.errors.fetch_add(1, Ordering::Relaxed);
    }

    fn nanos_since_epoch(&self, now: Instant) -> u64 {
        u64::try_from(now.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX)
    }

    /// The estimate decayed towards zero for the time since its last update,
    /// or `None` before the first sample.
    ///
    /// As in Finagle and tower's `PeakEwma`, an idle endpoint's estimate
    /// decays, so a once-slow endpoint is tried again eventually.
    pub(crate) fn rtt_ns_at(&self, now: Instant, decay_ns: f64) -> Option<f64> {
        let bits = self.rtt_bits.load(Ordering::Relaxed);
        if bits == NO_SAMPLE {
            return None;
        }
        let est = f64::from_bits(bits);
        let at = self.rtt_at.load(Ordering::Relaxed);
        let elapsed = self.nanos_since_epoch(now).saturating_sub(at) as f64;
        Some(est * (-elapsed / decay_ns).exp())
    }

    /// Folds one latency sample into the Peak-EWMA estimate: a sample above
    /// the estimate replaces it (the peak), a lower one is averaged in with a
    /// weight that grows with the time since the last update.
    ///
    /// Two samples completing at the same instant may race; one of them is
    /// then lost, which an estimate can afford.
    pub(crate) fn observe_rtt(&self, rtt: Duration, now: Instant, decay_ns: f64) {
        let sample = rtt.as_nanos() as f64;
        let now_ns = self.nanos_since_epoch(now);
        let bits = self.rtt_bits.load(Ordering::Relaxed);
        let next = if bits == NO_SAMPLE {
            sample
        } else {
            let est = f64::from_bits(bits);
            if sample > est {
                sample
            } else {
                let at = self.rtt_at.load(Ordering::Relaxed);
                let elapsed = now_ns.saturating_sub(at) as f64;
                let decay = (-elapsed / decay_ns).exp();
                est * decay + sample * (1.0 - decay)
            }
        };
        self.rtt_at.store(now_ns, Ordering::Relaxed);
        self.rtt_bits.store(next.to_bits(), Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn begin_and_end_count_in_flight() {
        let s = EndpointStats::new();
        s.begin();
        s.begin();
        s.end();
        assert_eq!(s.snapshot().in_flight, 1);
        assert_eq!(s.snapshot().picks, 2);
    }

    #[test]
    fn peak_is_taken_at_once_and_decays_slowly() {
        let s = EndpointStats::new();
        let t0 = Instant::now();
        let decay = Duration::from_secs(10).as_nanos() as f64;
        s.observe_rtt(Duration::from_millis(10), t0, decay);
        s.observe_rtt(Duration::from_millis(100), t0, decay);
        assert_eq!(s.rtt_estimate(), Some(Duration::from_millis(100)));
        // A fast sample right after the peak barely moves the estimate.
        s.observe_rtt(
            Duration::from_millis(1),
            t0 + Duration::from_millis(1),
            decay,
        );
        let est = s.rtt_estimate().unwrap_or_default();
        assert!(est > Duration::from_millis(99), "{est:?}");
        // Long after, it has mostly followed the fast samples.
        s.observe_rtt(
            Duration::from_millis(1),
            t0 + Duration::from_secs(60),
            decay,
        );
        let est = s.rtt_estimate().unwrap_or_default();
        assert!(est < Duration::from_millis(2), "{est:?}");
    }
}
