//! A balancer's derived view of one snapshot: the endpoints it may pick,
//! their weights and the policy's precomputed tables.
//!
//! A view is built once per published snapshot (by the first picker that
//! sees the new snapshot) and shared read-only by every pick until the
//! next change.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use crate::error::NoEndpoint;
use crate::policy::Policy;
use crate::policy::maglev::MaglevTable;
use crate::policy::smooth;
use crate::set::{Endpoint, Snapshot};

/// Fixed-point scale of effective weights (so a ramp can be fractional).
pub(crate) const WEIGHT_SCALE: u64 = 1024;

/// The candidates of one pick: every available endpoint, or a sorted
/// subset (when the caller excluded some).
#[derive(Debug)]
pub(crate) enum Cands<'a> {
    All(usize),
    List(&'a [usize]),
}

impl Cands<'_> {
    pub(crate) fn len(&self) -> usize {
        match self {
            Self::All(n) => *n,
            Self::List(l) => l.len(),
        }
    }

    pub(crate) fn get(&self, j: usize) -> Option<usize> {
        match self {
            Self::All(n) => (j < *n).then_some(j),
            Self::List(l) => l.get(j).copied(),
        }
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.len()).filter_map(|j| self.get(j))
    }

    pub(crate) fn contains(&self, i: usize) -> bool {
        match self {
            Self::All(n) => i < *n,
            Self::List(l) => l.binary_search(&i).is_ok(),
        }
    }
}

/// Slow-start state of a view.
#[derive(Debug)]
struct Ramp {
    starts: Vec<Option<Instant>>,
    window: Duration,
    end: Instant,
    done: AtomicBool,
}

pub(crate) struct View<K, T> {
    pub(crate) id: u64,
    pub(crate) snapshot: Arc<Snapshot<K, T>>,
    pub(crate) avail: Vec<Endpoint<K, T>>,
    weights: Vec<u64>,
    pub(crate) total_weight: u64,
    pub(crate) uniform: bool,
    pub(crate) cumulative: Vec<u64>,
    ramp: Option<Ramp>,
    pub(crate) wrr: Option<smooth::Table>,
    pub(crate) maglev: Option<MaglevTable>,
    pub(crate) fail_open: bool,
    pub(crate) unavailable: NoEndpoint,
}

impl<K, T> std::fmt::Debug for View<K, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("View")
            .field("id", &self.id)
            .field("generation", &self.snapshot.generation())
            .field("available", &self.avail.len())
            .field("fail_open", &self.fail_open)
            .finish_non_exhaustive()
    }
}

impl<K, T> View<K, T> {
    pub(crate) fn build(
        id: u64,
        snapshot: Arc<Snapshot<K, T>>,
        policy: &Policy,
        slow_start: Duration,
        fail_open: bool,
    ) -> Self
    where
        K: std::hash::Hash,
    {
        let eps = snapshot.endpoints();
        let mut avail: Vec<Endpoint<K, T>> =
            eps.iter().filter(|e| e.is_available()).cloned().collect();
        let mut opened = false;
        if avail.is_empty() && fail_open {
            // As sozu: every endpoint not taken out by the operator.
            avail = eps
                .iter()
                .filter(|e| !e.is_draining() && e.weight() > 0)
                .cloned()
                .collect();
            opened = !avail.is_empty();
        }
        let unavailable = if eps.is_empty() {
            NoEndpoint::Empty
        } else {
            NoEndpoint::Unavailable {
                total: eps.len(),
                down: eps.iter().filter(|e| !e.is_healthy()).count(),
                draining: eps.iter().filter(|e| e.is_draining()).count(),
                zero_weight: eps.iter().filter(|e| e.weight() == 0).count(),
            }
        };
        let weights: Vec<u64> = avail.iter().map(|e| u64::from(e.weight())).collect();
        let total_weight = weights.iter().sum();
        let uniform = weights.windows(2).all(|w| w[0] == w[1]);
        let cumulative = if uniform {
            Vec::new()
        } else {
            weights
                .iter()
                .scan(0u64, |acc, w| {
                    *acc += w;
                    Some(*acc)
                })
                .collect()
        };
        let now = Instant::now();
        let ramp = (!slow_start.is_zero())
            .then(|| snapshot.latest_ramp())
            .flatten()
            .map(|latest| latest + slow_start)
            .filter(|&end| end > now)
            .map(|end| Ramp {
                starts: avail.iter().map(Endpoint::ramp_start).collect(),
                window: slow_start,
                end,
                done: AtomicBool::new(false),
            });
        let wrr = matches!(policy, Policy::RoundRobin)
            .then(|| smooth::Table::build(&weights))
            .flatten();
        let maglev = match policy {
            Policy::Maglev(cfg) => {
                let keys: Vec<&K> = avail.iter().map(Endpoint::key).collect();
                let w: Vec<u32> = avail.iter().map(Endpoint::weight).collect();
                Some(MaglevTable::build(&keys, &w, cfg.table_size))
            }
            _ => None,
        };
        Self {
            id,
            snapshot,
            avail,
            weights,
            total_weight,
            uniform,
            cumulative,
            ramp,
            wrr,
            maglev,
            fail_open: opened,
            unavailable,
        }
    }

    /// `Some(now)` while a slow-start ramp is running, `None` after (so
    /// steady-state picks never read the clock for it).
    pub(crate) fn ramp_now(&self) -> Option<Instant> {
        let ramp = self.ramp.as_ref()?;
        if ramp.done.load(Ordering::Relaxed) {
            return None;
        }
        let now = Instant::now();
        if now >= ramp.end {
            ramp.done.store(true, Ordering::Relaxed);
            return None;
        }
        Some(now)
    }

    /// The weight of available endpoint `i` in [`WEIGHT_SCALE`] units,
    /// reduced linearly while it ramps up (never below 1 unit).
    pub(crate) fn eff_weight(&self, i: usize, now: Option<Instant>) -> u64 {
        let base = self.weights.get(i).copied().unwrap_or(0) * WEIGHT_SCALE;
        let (Some(now), Some(ramp)) = (now, &self.ramp) else {
            return base;
        };
        let Some(Some(start)) = ramp.starts.get(i) else {
            return base;
        };
        let elapsed = now.saturating_duration_since(*start);
        if elapsed >= ramp.window {
            return base;
        }
        let frac = elapsed.as_nanos() * u128::from(base) / ramp.window.as_nanos().max(1);
        u64::try_from(frac).unwrap_or(base).max(1)
    }
}
