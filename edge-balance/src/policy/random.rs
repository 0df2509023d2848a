//! Weighted random and power-of-two-choices.

use rand::Rng;

use crate::view::{Cands, View};
use tokio::time::Instant;

/// A weighted random candidate.
///
/// Without a slow-start ramp in progress and without exclusions this is
/// O(1) for equal weights and O(log n) otherwise (binary search over the
/// prefix sums built with the view); during a ramp or with exclusions it
/// is a linear pass over the candidates.
pub(crate) fn weighted<K, T>(
    view: &View<K, T>,
    cands: &Cands<'_>,
    now: Option<Instant>,
    rng: &mut impl Rng,
) -> Option<usize> {
    let n = cands.len();
    if n == 0 {
        return None;
    }
    if let (None, Cands::All(_)) = (now, cands) {
        let total = view.total_weight;
        if view.uniform || total == 0 {
            return Some(rng.random_range(0..n));
        }
        let r = rng.random_range(0..total);
        // First prefix sum strictly above r.
        let i = view.cumulative.partition_point(|&c| c <= r);
        return Some(i.min(n - 1));
    }
    let total: u64 = cands.iter().map(|i| view.eff_weight(i, now)).sum();
    if total == 0 {
        return cands.get(rng.random_range(0..n));
    }
    let mut r = rng.random_range(0..total);
    for i in cands.iter() {
        let w = view.eff_weight(i, now);
        if r < w {
            return Some(i);
        }
        r -= w;
    }
    cands.get(n - 1)
}

/// Power of two choices: two distinct candidates drawn uniformly, the one
/// with the lower `load / effective weight` wins (the first on a tie).
pub(crate) fn p2c<K, T>(
    view: &View<K, T>,
    cands: &Cands<'_>,
    now: Option<Instant>,
    rng: &mut impl Rng,
    load: impl Fn(usize) -> f64,
) -> Option<usize> {
    let n = cands.len();
    match n {
        0 => None,
        1 => cands.get(0),
        _ => {
            let a = rng.random_range(0..n);
            let mut b = rng.random_range(0..n - 1);
            if b >= a {
                b += 1;
            }
            let (a, b) = (cands.get(a)?, cands.get(b)?);
            let score = |i: usize| load(i) / view.eff_weight(i, now).max(1) as f64;
            Some(if score(b) < score(a) { b } else { a })
        }
    }
}
