//! The balancer: a policy applied to a live endpoint set, with a direct
//! (non-tower) pick API.

use std::fmt;
use std::hash::Hash;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::time::Instant;

use crate::error::NoEndpoint;
use crate::policy::{Policy, least, random, smooth, wrr};
use crate::set::{Endpoint, EndpointSet};
use crate::stats::EndpointStats;
use crate::view::{Cands, View};

/// Settings of a [`Balancer`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct BalancerConfig {
    /// Slow start: an endpoint that comes back up (health down → up) or is
    /// undrained gets its weight ramped linearly from ~0 to full over this
    /// window. Default: zero (off). Maglev ignores it (a ramp would move
    /// keys twice).
    pub slow_start: Duration,
    /// When no endpoint is available, pick among all endpoints that are not
    /// draining, even those marked down, and log a warning once (as sozu
    /// and the AWS health-check guidance do). Default: `false`: picks fail
    /// with [`NoEndpoint`].
    pub fail_open: bool,
    /// A name for this pool in log events. Default: empty.
    pub name: String,
}

impl BalancerConfig {
    /// Sets [`slow_start`](Self::slow_start).
    pub fn slow_start(mut self, window: Duration) -> Self {
        self.slow_start = window;
        self
    }

    /// Sets [`fail_open`](Self::fail_open).
    pub fn fail_open(mut self, on: bool) -> Self {
        self.fail_open = on;
        self
    }

    /// Sets [`name`](Self::name).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }
}

/// What a pick may take into account.
#[derive(Debug)]
pub struct PickContext<'a, K> {
    /// The request's hash key for hashing policies ([`hash_bytes`],
    /// [`hash_ip`]); ignored by the others. `None` under a hashing policy
    /// picks a random slot.
    ///
    /// [`hash_bytes`]: crate::hash_bytes
    /// [`hash_ip`]: crate::hash_ip
    pub hash_key: Option<u64>,
    /// Endpoints not to pick (already tried by a retry).
    pub exclude: &'a [K],
    /// The [`endpoint_id`](crate::endpoint_id) of the endpoint to pick
    /// when it is available and not excluded, whatever the policy (sticky
    /// sessions, [`Prefer`](crate::Prefer)).
    pub prefer: Option<u64>,
}

impl<K> Default for PickContext<'_, K> {
    fn default() -> Self {
        Self {
            hash_key: None,
            exclude: &[],
            prefer: None,
        }
    }
}

impl<K> Clone for PickContext<'_, K> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<K> Copy for PickContext<'_, K> {}

impl<'a, K> PickContext<'a, K> {
    /// No hash key, nothing excluded.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets [`hash_key`](Self::hash_key).
    pub fn hash_key(mut self, key: Option<u64>) -> Self {
        self.hash_key = key;
        self
    }

    /// Sets [`prefer`](Self::prefer).
    pub fn prefer(mut self, id: Option<u64>) -> Self {
        self.prefer = id;
        self
    }

    /// Sets [`exclude`](Self::exclude).
    pub fn exclude(mut self, keys: &'a [K]) -> Self {
        self.exclude = keys;
        self
    }
}

/// Outstanding work on a picked endpoint: counts as in-flight until it is
/// dropped. Report the outcome with [`success`](Self::success) or
/// [`failure`](Self::failure); dropping it without either (a cancelled
/// request) only ends the in-flight count.
#[derive(Debug)]
pub struct InFlight {
    stats: Arc<EndpointStats>,
    /// Set when latency feeds a Peak-EWMA estimate.
    timing: Option<(Instant, f64)>,
    /// This balancer's total in-flight count (bounded-load Maglev).
    total: Option<Arc<AtomicU64>>,
}

impl InFlight {
    fn new(stats: Arc<EndpointStats>, timing: Option<f64>, total: Option<Arc<AtomicU64>>) -> Self {
        stats.begin();
        if let Some(t) = &total {
            t.fetch_add(1, Ordering::Relaxed);
        }
        Self {
            stats,
            timing: timing.map(|d| (Instant::now(), d)),
            total,
        }
    }

    /// The endpoint answered: counts a success and, under Peak-EWMA, feeds
    /// the time since the pick into its latency estimate.
    pub fn success(self) {
        self.stats.record_success();
        if let Some((start, decay)) = self.timing {
            let now = Instant::now();
            self.stats
                .observe_rtt(now.saturating_duration_since(start), now, decay);
        }
    }

    /// Like [`success`](Self::success) with a latency measured by the
    /// caller (e.g. time to the response head).
    pub fn success_after(self, latency: Duration) {
        self.stats.record_success();
        if let Some((_, decay)) = self.timing {
            self.stats.observe_rtt(latency, Instant::now(), decay);
        }
    }

    /// The endpoint failed: counts an error. A failure never lowers the
    /// latency estimate (a fast-failing endpoint must not attract traffic)
    /// but a slow one raises it.
    pub fn failure(self) {
        self.stats.record_error();
        if let Some((start, decay)) = self.timing {
            let now = Instant::now();
            let elapsed = now.saturating_duration_since(start);
            if self.stats.rtt_estimate().is_none_or(|est| elapsed > est) {
                self.stats.observe_rtt(elapsed, now, decay);
            }
        }
    }

    /// The endpoint's counters.
    pub fn stats(&self) -> &Arc<EndpointStats> {
        &self.stats
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.stats.end();
        if let Some(t) = &self.total {
            t.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// A picked endpoint plus its in-flight guard.
pub struct Picked<K, T> {
    endpoint: Endpoint<K, T>,
    guard: InFlight,
}

impl<K: fmt::Debug, T> fmt::Debug for Picked<K, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Picked")
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

impl<K, T> Picked<K, T> {
    /// The endpoint's key.
    pub fn key(&self) -> &K {
        self.endpoint.key()
    }

    /// The endpoint's value.
    pub fn value(&self) -> &T {
        self.endpoint.value()
    }

    /// The endpoint as it was in the snapshot it was picked from.
    pub fn endpoint(&self) -> &Endpoint<K, T> {
        &self.endpoint
    }

    /// Reports success (see [`InFlight::success`]).
    pub fn success(self) {
        self.guard.success();
    }

    /// Reports failure (see [`InFlight::failure`]).
    pub fn failure(self) {
        self.guard.failure();
    }

    /// Splits into the endpoint and the guard (e.g. to move the guard into
    /// a future or a relay task).
    pub fn into_parts(self) -> (Endpoint<K, T>, InFlight) {
        (self.endpoint, self.guard)
    }
}

struct Inner<K, T> {
    set: EndpointSet<K, T>,
    policy: Policy,
    config: BalancerConfig,
    view: ArcSwap<View<K, T>>,
    rebuild: Mutex<()>,
    next_view_id: AtomicU64,
    failing_open: AtomicBool,
    counter: AtomicUsize,
    live_wrr: Mutex<smooth::Live>,
    total_in_flight: Arc<AtomicU64>,
}

/// A balancing policy over an [`EndpointSet`]. Cloning shares the state.
pub struct Balancer<K, T> {
    inner: Arc<Inner<K, T>>,
}

impl<K, T> Clone for Balancer<K, T> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<K: fmt::Debug, T> fmt::Debug for Balancer<K, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Balancer")
            .field("policy", &self.inner.policy)
            .field("config", &self.inner.config)
            .field("view", &self.inner.view.load())
            .finish_non_exhaustive()
    }
}

impl<K, T> Balancer<K, T>
where
    K: Clone + Eq + Hash,
{
    /// A balancer applying `policy` to `set`.
    pub fn new(set: EndpointSet<K, T>, policy: Policy, config: BalancerConfig) -> Self {
        let view = View::build(
            0,
            set.snapshot(),
            &policy,
            config.slow_start,
            config.fail_open,
        );
        let b = Self {
            inner: Arc::new(Inner {
                set,
                policy,
                config,
                view: ArcSwap::from_pointee(view),
                rebuild: Mutex::new(()),
                next_view_id: AtomicU64::new(1),
                failing_open: AtomicBool::new(false),
                counter: AtomicUsize::new(0),
                live_wrr: Mutex::new(smooth::Live::default()),
                total_in_flight: Arc::new(AtomicU64::new(0)),
            }),
        };
        b.log_fail_open(&b.inner.view.load());
        b
    }

    /// The endpoint set this balancer picks from.
    pub fn set(&self) -> &EndpointSet<K, T> {
        &self.inner.set
    }

    /// The policy.
    pub fn policy(&self) -> &Policy {
        &self.inner.policy
    }

    /// The settings.
    pub fn config(&self) -> &BalancerConfig {
        &self.inner.config
    }

    /// Whether the last pick ran in fail-open mode (every endpoint down).
    pub fn is_failing_open(&self) -> bool {
        self.inner.failing_open.load(Ordering::Relaxed)
    }

    /// The view of the current snapshot, rebuilt if the set changed.
    fn view(&self) -> arc_swap::Guard<Arc<View<K, T>>> {
        let generation = self.inner.set.generation();
        let view = self.inner.view.load();
        if view.snapshot.generation() == generation {
            return view;
        }
        drop(view);
        let _building = self
            .inner
            .rebuild
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Another picker may have built it while we waited.
        let snap = self.inner.set.snapshot();
        let view = self.inner.view.load();
        if Arc::ptr_eq(&view.snapshot, &snap) {
            return view;
        }
        let id = self.inner.next_view_id.fetch_add(1, Ordering::Relaxed);
        let cfg = &self.inner.config;
        let built = Arc::new(View::build(
            id,
            snap,
            &self.inner.policy,
            cfg.slow_start,
            cfg.fail_open,
        ));
        self.inner.view.store(Arc::clone(&built));
        self.log_fail_open(&built);
        self.inner.view.load()
    }

    fn log_fail_open(&self, view: &View<K, T>) {
        let was = self
            .inner
            .failing_open
            .swap(view.fail_open, Ordering::Relaxed);
        let pool = self.inner.config.name.as_str();
        if view.fail_open && !was {
            tracing::warn!(
                pool,
                endpoints = view.avail.len(),
                "no healthy endpoint: failing open to every endpoint not draining"
            );
        } else if was && !view.fail_open {
            tracing::info!(
                pool,
                available = view.avail.len(),
                "healthy endpoints are back: fail-open ended"
            );
        }
    }

    /// Picks an endpoint for one request or connection.
    ///
    /// The returned [`Picked`] holds an in-flight guard: keep it until the
    /// work ends, and report [`success`](Picked::success) or
    /// [`failure`](Picked::failure). Lock-free except while the first pick
    /// after a change rebuilds the policy's tables, and, for round robin,
    /// during a slow-start ramp.
    pub fn pick(&self, ctx: &PickContext<'_, K>) -> Result<Picked<K, T>, NoEndpoint> {
        let view = self.view();
        let n = view.avail.len();
        if n == 0 {
            return Err(view.unavailable.clone());
        }
        let list: Vec<usize>;
        let cands = if ctx.exclude.is_empty() {
            Cands::All(n)
        } else {
            list = (0..n)
                .filter(|&i| !ctx.exclude.contains(view.avail[i].key()))
                .collect();
            if list.is_empty() {
                return Err(NoEndpoint::AllExcluded { excluded: n });
            }
            Cands::List(&list)
        };
        let preferred = ctx.prefer.and_then(|id| {
            (0..n).find(|&i| {
                let key = view.avail[i].key();
                crate::hash::endpoint_id(key) == id && !ctx.exclude.contains(key)
            })
        });
        let idx = match preferred {
            Some(i) => i,
            None => self
                .pick_index(&view, &cands, ctx.hash_key)
                .ok_or(NoEndpoint::AllExcluded { excluded: n })?,
        };
        let endpoint = view
            .avail
            .get(idx)
            .cloned()
            .ok_or(view.unavailable.clone())?;
        let timing = match &self.inner.policy {
            Policy::PeakEwma(c) => Some(c.decay_ns()),
            _ => None,
        };
        let total = match &self.inner.policy {
            Policy::Maglev(c) if c.bounded_load.is_some() => {
                Some(Arc::clone(&self.inner.total_in_flight))
            }
            _ => None,
        };
        let guard = InFlight::new(Arc::clone(endpoint.stats()), timing, total);
        Ok(Picked { endpoint, guard })
    }

    fn pick_index(&self, view: &View<K, T>, cands: &Cands<'_>, hash: Option<u64>) -> Option<usize> {
        match &self.inner.policy {
            Policy::RoundRobin => wrr::pick(
                view,
                cands,
                view.ramp_now(),
                &self.inner.counter,
                &self.inner.live_wrr,
            ),
            Policy::LeastRequest => {
                let start = self.inner.counter.fetch_add(1, Ordering::Relaxed);
                least::pick(view, cands, view.ramp_now(), start)
            }
            Policy::Random => random::weighted(view, cands, view.ramp_now(), &mut rand::rng()),
            Policy::P2c => random::p2c(view, cands, view.ramp_now(), &mut rand::rng(), |i| {
                view.avail[i].stats().in_flight() as f64 + 1.0
            }),
            Policy::PeakEwma(cfg) => {
                let now = Instant::now();
                let ramp = view.ramp_now();
                let (def, decay) = (cfg.default_ns(), cfg.decay_ns());
                random::p2c(view, cands, ramp, &mut rand::rng(), |i| {
                    let s = view.avail[i].stats();
                    let pending = s.in_flight() as f64;
                    match s.rtt_ns_at(now, decay) {
                        Some(rtt) => rtt.max(1.0) * (pending + 1.0),
                        // Never answered yet: try it while it is idle (as
                        // Finagle does), else assume the default latency.
                        None if pending == 0.0 => 0.0,
                        None => def * (pending + 1.0),
                    }
                })
            }
            Policy::Maglev(cfg) => {
                use rand::Rng;
                let table = view.maglev.as_ref()?;
                let h = hash.unwrap_or_else(|| rand::rng().random());
                match cfg.bounded_load {
                    None => match cands {
                        Cands::All(_) => table.lookup(h),
                        Cands::List(_) => table.lookup_walk(h, |i| cands.contains(i)),
                    },
                    Some(c) => {
                        let total = self.inner.total_in_flight.load(Ordering::Relaxed);
                        let w_total = view.total_weight.max(1) as f64;
                        let c = c.max(1.0);
                        let found = table.lookup_walk(h, |i| {
                            if !cands.contains(i) {
                                return false;
                            }
                            let share = view.avail[i].weight() as f64 / w_total;
                            let cap = (c * (total + 1) as f64 * share).ceil();
                            (view.avail[i].stats().in_flight() as f64) < cap
                        });
                        found.or_else(|| table.lookup_walk(h, |i| cands.contains(i)))
                    }
                }
            }
        }
    }
}

#[cfg(test)]
#[path = "balancer_tests.rs"]
mod tests;
