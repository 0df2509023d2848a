//! Weighted least outstanding requests.

use tokio::time::Instant;

use crate::view::{Cands, View};

/// The candidate with the fewest in-flight requests per unit of effective
/// weight. The scan starts at `start` (rotated by the caller on every pick)
/// and only a strictly lower load replaces the best so far, so equally
/// loaded endpoints take turns.
pub(crate) fn pick<K, T>(
    view: &View<K, T>,
    cands: &Cands<'_>,
    now: Option<Instant>,
    start: usize,
) -> Option<usize> {
    let n = cands.len();
    if n == 0 {
        return None;
    }
    let mut best: Option<(usize, u128, u128)> = None;
    for step in 0..n {
        let i = cands.get((start.wrapping_add(step)) % n)?;
        let load = u128::from(view.avail[i].stats().in_flight());
        let w = u128::from(view.eff_weight(i, now).max(1));
        match best {
            // load/w < bl/bw  <=>  load*bw < bl*w
            Some((_, bl, bw)) if load * bw >= bl * w => {}
            _ => best = Some((i, load, w)),
        }
    }
    best.map(|(i, _, _)| i)
}
