//! Smooth weighted round robin, as nginx does it: the sequence.
//!
//! On every pick each candidate's `current` grows by its weight, the
//! largest `current` wins (the first one on a tie) and loses the total
//! weight. Over a cycle of `sum(weights)` picks every endpoint is picked
//! exactly its weight, interleaved: weights 5, 1, 1 give `a a b a c a a`.
//!
//! The sequence is periodic, so when weights are static the balancer
//! precomputes one cycle ([`Table`]) and a pick is one atomic increment;
//! else the algorithm runs live ([`Live`]). Picking over a balancer's view
//! is in the `wrr` policy module.

/// Longest cycle precomputed (entries).
const MAX_TABLE: u64 = 1 << 20;
/// Most work spent precomputing one cycle (entries × endpoints).
const MAX_BUILD_WORK: u64 = 1 << 24;

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// One precomputed cycle of the smooth WRR sequence.
#[derive(Debug)]
pub(crate) struct Table {
    seq: Vec<u32>,
}

impl Table {
    /// Builds the cycle for `weights`, or `None` when it is too long.
    pub(crate) fn build(weights: &[u64]) -> Option<Self> {
        let g = weights.iter().copied().fold(0, gcd);
        if g == 0 || weights.len() > u32::MAX as usize {
            return None;
        }
        let reduced: Vec<u64> = weights.iter().map(|w| w / g).collect();
        let total: u64 = reduced.iter().sum();
        if total > MAX_TABLE || total.saturating_mul(reduced.len() as u64) > MAX_BUILD_WORK {
            return None;
        }
        let mut state = Live::default();
        let mut seq = Vec::with_capacity(usize::try_from(total).ok()?);
        for _ in 0..total {
            let i = state.step(reduced.len(), |i| reduced.get(i).copied().unwrap_or(0))?;
            seq.push(u32::try_from(i).ok()?);
        }
        Some(Self { seq })
    }

    /// The entry for the `n`-th pick.
    pub(crate) fn at(&self, n: usize) -> Option<usize> {
        let len = self.seq.len();
        if len == 0 {
            return None;
        }
        self.seq.get(n % len).map(|&i| i as usize)
    }

    pub(crate) fn len(&self) -> usize {
        self.seq.len()
    }
}

/// The live algorithm's state: one `current` per available endpoint.
#[derive(Debug, Default)]
pub(crate) struct Live {
    pub(crate) view_id: u64,
    current: Vec<i64>,
}

impl Live {
    pub(crate) fn reset(&mut self, view_id: u64, n: usize) {
        self.view_id = view_id;
        self.current.clear();
        self.current.resize(n, 0);
    }

    /// One nginx step over endpoints `0..n` with weights `w(i)`.
    fn step(&mut self, n: usize, w: impl Fn(usize) -> u64) -> Option<usize> {
        self.step_over((0..n).map(Some), w)
    }

    /// One nginx step over the given candidates.
    pub(crate) fn step_over(
        &mut self,
        cands: impl Iterator<Item = Option<usize>>,
        w: impl Fn(usize) -> u64,
    ) -> Option<usize> {
        let mut total: i64 = 0;
        let mut best: Option<usize> = None;
        let mut best_cur = i64::MIN;
        for i in cands.flatten() {
            if i >= self.current.len() {
                self.current.resize(i + 1, 0);
            }
            let wi = i64::try_from(w(i)).unwrap_or(i64::MAX / 4);
            total = total.saturating_add(wi);
            let cur = self.current.get_mut(i)?;
            *cur = cur.saturating_add(wi);
            if *cur > best_cur {
                best_cur = *cur;
                best = Some(i);
            }
        }
        let b = best?;
        if let Some(c) = self.current.get_mut(b) {
            *c = c.saturating_sub(total);
        }
        Some(b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nginx_documented_sequence() {
        // nginx's own example: weights 5, 1, 1 give a a b a c a a.
        let t = Table::build(&[5, 1, 1]).expect("small table");
        let seq: Vec<usize> = (0..7).filter_map(|n| t.at(n)).collect();
        assert_eq!(seq, vec![0, 0, 1, 0, 2, 0, 0]);
    }

    #[test]
    fn table_reduces_by_gcd() {
        let t = Table::build(&[1000, 2000]).expect("small table");
        assert_eq!(t.len(), 3);
    }

    #[test]
    fn oversized_cycle_falls_back_to_live() {
        let weights: Vec<u64> = (0..1000).map(|i| 100_000 + i).collect();
        assert!(Table::build(&weights).is_none());
    }
}
