//! A fixed-bucket latency histogram on atomics (no lock per observation).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds in seconds (Prometheus client defaults, plus 30 and 60 s
/// for slow backends).
pub(super) const BUCKETS: [f64; 13] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// The same bounds in microseconds, for integer comparison.
const BOUNDS_US: [u64; 13] = [
    5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000, 5_000_000,
    10_000_000, 30_000_000, 60_000_000,
];

/// Observations per bucket (not cumulative; the renderer sums), the sum in
/// microseconds and the count.
#[derive(Debug, Default)]
pub struct Histogram {
    /// One per bound, plus +Inf.
    buckets: [AtomicU64; 14],
    sum_us: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    /// Adds one observation.
    pub fn observe(&self, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        let i = BOUNDS_US
            .iter()
            .position(|b| us <= *b)
            .unwrap_or(BOUNDS_US.len());
        if let Some(b) = self.buckets.get(i) {
            b.fetch_add(1, Ordering::Relaxed);
        }
        self.sum_us.fetch_add(us, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// Cumulative counts per bound (the last is +Inf), sum in seconds, count.
    pub fn snapshot(&self) -> ([u64; 14], f64, u64) {
        let mut out = [0u64; 14];
        let mut acc = 0u64;
        for (o, b) in out.iter_mut().zip(&self.buckets) {
            acc = acc.saturating_add(b.load(Ordering::Relaxed));
            *o = acc;
        }
        // Microseconds to seconds; f64 is exact far beyond any realistic sum.
        let sum = self.sum_us.load(Ordering::Relaxed) as f64 / 1e6;
        (out, sum, acc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_cumulative() {
        let h = Histogram::default();
        h.observe(Duration::from_millis(1));
        h.observe(Duration::from_millis(5));
        h.observe(Duration::from_millis(7));
        h.observe(Duration::from_secs(120));
        let (b, sum, n) = h.snapshot();
        assert_eq!(n, 4);
        assert_eq!(b[0], 2, "1 ms and exactly 5 ms are <= 0.005");
        assert_eq!(b[1], 3);
        assert_eq!(b[12], 3);
        assert_eq!(b[13], 4);
        assert!((sum - 120.013).abs() < 1e-9, "{sum}");
    }
}
