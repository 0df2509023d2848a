//! Percentiles estimated from a histogram's buckets, as PromQL's
//! `histogram_quantile` does: linear interpolation inside the bucket that
//! holds the rank.

use prometheus::Histogram;
use prometheus::core::Metric as _;

/// The median, 90th and 99th percentile, in seconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Percentiles {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    /// Observations they are made of.
    pub count: u64,
}

/// `None` while the histogram is empty.
pub(super) fn percentiles(h: &Histogram) -> Option<Percentiles> {
    let m = h.metric();
    let hist = m.get_histogram();
    let buckets: Vec<(f64, u64)> = hist
        .get_bucket()
        .iter()
        .map(|b| (b.upper_bound(), b.cumulative_count()))
        .collect();
    let count = hist.get_sample_count();
    Some(Percentiles {
        p50: estimate(&buckets, count, 0.5)?,
        p90: estimate(&buckets, count, 0.9)?,
        p99: estimate(&buckets, count, 0.99)?,
        count,
    })
}

/// The `q` quantile of `count` observations in cumulative `buckets`
/// (upper bound, count at or below it; +Inf implied). Observations above
/// the last bound are reported at it.
fn estimate(buckets: &[(f64, u64)], count: u64, q: f64) -> Option<f64> {
    if count == 0 {
        return None;
    }
    let rank = q * count as f64;
    let mut lower = (0.0, 0u64);
    for &(bound, cum) in buckets {
        if cum as f64 >= rank {
            let in_bucket = cum.saturating_sub(lower.1) as f64;
            if in_bucket == 0.0 {
                return Some(bound);
            }
            let frac = (rank - lower.1 as f64) / in_bucket;
            return Some(lower.0 + (bound - lower.0) * frac);
        }
        lower = (bound, cum);
    }
    Some(lower.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interpolates_inside_the_bucket() {
        let b = [(0.1, 50), (0.2, 100)];
        assert_eq!(estimate(&b, 100, 0.5), Some(0.1));
        let p = estimate(&b, 100, 0.75).unwrap();
        assert!((p - 0.15).abs() < 1e-9, "{p}");
        assert_eq!(estimate(&b, 0, 0.5), None);
        // Above the last bound: the last bound.
        assert_eq!(estimate(&[(0.1, 1)], 4, 0.99), Some(0.1));
    }

    #[test]
    fn from_a_histogram() {
        let h = Histogram::with_opts(
            prometheus::HistogramOpts::new("t", "t").buckets(vec![0.001, 0.01, 0.1]),
        )
        .unwrap();
        assert_eq!(percentiles(&h), None);
        for _ in 0..98 {
            h.observe(0.0005);
        }
        h.observe(0.05);
        h.observe(0.05);
        let p = percentiles(&h).unwrap();
        assert_eq!(p.count, 100);
        assert!(p.p50 <= 0.001 && p.p90 <= 0.001, "{p:?}");
        assert!(p.p99 > 0.01 && p.p99 <= 0.1, "{p:?}");
    }
}
