//! The live endpoint set: writers publish immutable snapshots, readers load
//! them without locks.
//!
//! Every change (insert, remove, weight, drain, health) takes the writers'
//! mutex, copies the endpoint list (one `Arc` clone per endpoint) with the
//! change applied and publishes it with one atomic pointer swap
//! ([`arc_swap`]). Readers on the hot path load the current pointer; they
//! never touch the writers' mutex, so a reload or a burst of health updates
//! never delays a pick.

use std::collections::HashMap;
use std::fmt;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use arc_swap::ArcSwap;
use tokio::time::Instant;

use crate::stats::EndpointStats;

/// The part of an endpoint that never changes while its key is in the set.
#[derive(Debug)]
struct Entry<K, T> {
    key: K,
    value: T,
    stats: Arc<EndpointStats>,
}

/// One endpoint as seen in a [`Snapshot`]: its key, value, weight and state.
///
/// Cloning is cheap (one `Arc` and a few words).
pub struct Endpoint<K, T> {
    entry: Arc<Entry<K, T>>,
    weight: u32,
    healthy: bool,
    draining: bool,
    ramp_start: Option<Instant>,
}

impl<K, T> Clone for Endpoint<K, T> {
    fn clone(&self) -> Self {
        Self {
            entry: Arc::clone(&self.entry),
            weight: self.weight,
            healthy: self.healthy,
            draining: self.draining,
            ramp_start: self.ramp_start,
        }
    }
}

impl<K: fmt::Debug, T> fmt::Debug for Endpoint<K, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Endpoint")
            .field("key", &self.entry.key)
            .field("weight", &self.weight)
            .field("healthy", &self.healthy)
            .field("draining", &self.draining)
            .field("ramp_start", &self.ramp_start)
            .finish_non_exhaustive()
    }
}

impl<K, T> Endpoint<K, T> {
    /// The endpoint's key (its identity in the set).
    pub fn key(&self) -> &K {
        &self.entry.key
    }

    /// The endpoint's value (an address, a client, a service...).
    pub fn value(&self) -> &T {
        &self.entry.value
    }

    /// The configured weight; 0 takes no new traffic.
    pub fn weight(&self) -> u32 {
        self.weight
    }

    /// Whether health checking last reported the endpoint up.
    pub fn is_healthy(&self) -> bool {
        self.healthy
    }

    /// Whether the endpoint is draining (no new picks).
    pub fn is_draining(&self) -> bool {
        self.draining
    }

    /// Whether policies may pick it: healthy, not draining, weight above 0.
    pub fn is_available(&self) -> bool {
        self.healthy && !self.draining && self.weight > 0
    }

    /// When its slow-start ramp began (it last came up or was undrained).
    pub fn ramp_start(&self) -> Option<Instant> {
        self.ramp_start
    }

    /// Its live counters.
    pub fn stats(&self) -> &Arc<EndpointStats> {
        &self.entry.stats
    }
}

/// An immutable, consistent view of the endpoint set at one moment.
pub struct Snapshot<K, T> {
    endpoints: Vec<Endpoint<K, T>>,
    generation: u64,
    latest_ramp: Option<Instant>,
}

impl<K: fmt::Debug, T> fmt::Debug for Snapshot<K, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Snapshot")
            .field("generation", &self.generation)
            .field("endpoints", &self.endpoints)
            .finish()
    }
}

impl<K, T> Snapshot<K, T> {
    /// Every endpoint, in insertion order, including drained and down ones.
    pub fn endpoints(&self) -> &[Endpoint<K, T>] {
        &self.endpoints
    }

    /// Number of endpoints (any state).
    pub fn len(&self) -> usize {
        self.endpoints.len()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.endpoints.is_empty()
    }

    /// Number of endpoints a policy may pick.
    pub fn available(&self) -> usize {
        self.endpoints.iter().filter(|e| e.is_available()).count()
    }

    /// Increases by one with every published change.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The latest slow-start ramp start among the endpoints.
    pub(crate) fn latest_ramp(&self) -> Option<Instant> {
        self.latest_ramp
    }

    /// The endpoint with this key, if present.
    pub fn get(&self, key: &K) -> Option<&Endpoint<K, T>>
    where
        K: PartialEq,
    {
        self.endpoints.iter().find(|e| e.key() == key)
    }
}

/// Writers' state: the endpoint list and an index by key.
struct WriteState<K, T> {
    endpoints: Vec<Endpoint<K, T>>,
    index: HashMap<K, usize>,
    generation: u64,
}

struct SetInner<K, T> {
    current: ArcSwap<Snapshot<K, T>>,
    /// The generation of `current`, stored after it: one plain atomic load
    /// tells a picker whether its cached view is still current.
    generation: AtomicU64,
    write: Mutex<WriteState<K, T>>,
}

/// A set of endpoints that changes at runtime, shared by balancers, the
/// health checker and the configuration reloader.
///
/// Cloning gives another handle to the same set. `K` identifies an endpoint
/// (e.g. `SocketAddr` or a server name) and `T` is its value (an address, a
/// client, a tower service).
///
/// Changes to unknown keys are ignored and return `false`: a health result
/// may arrive just after a reload removed the endpoint.
pub struct EndpointSet<K, T> {
    inner: Arc<SetInner<K, T>>,
}

impl<K, T> Clone for EndpointSet<K, T> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<K: fmt::Debug, T> fmt::Debug for EndpointSet<K, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("EndpointSet")
            .field(&self.inner.current.load())
            .finish()
    }
}

impl<K, T> Default for EndpointSet<K, T>
where
    K: Clone + Eq + Hash,
{
    fn default() -> Self {
        Self::new()
    }
}

impl<K, T> EndpointSet<K, T>
where
    K: Clone + Eq + Hash,
{
    /// An empty set.
    pub fn new() -> Self {
        Self {
            inner: Arc::new(SetInner {
                current: ArcSwap::from_pointee(Snapshot {
                    endpoints: Vec::new(),
                    generation: 0,
                    latest_ramp: None,
                }),
                generation: AtomicU64::new(0),
                write: Mutex::new(WriteState {
                    endpoints: Vec::new(),
                    index: HashMap::new(),
                    generation: 0,
                }),
            }),
        }
    }

    /// The current snapshot (lock-free).
    pub fn snapshot(&self) -> Arc<Snapshot<K, T>> {
        self.inner.current.load_full()
    }

    /// The generation of the current snapshot. A change is visible here
    /// before the call that made it returns.
    pub(crate) fn generation(&self) -> u64 {
        self.inner.generation.load(Ordering::Acquire)
    }

    fn lock(&self) -> MutexGuard<'_, WriteState<K, T>> {
        // A panic while holding the lock cannot leave the state half-written
        // (every change is applied to a clone first), so poison is harmless.
        self.inner
            .write
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn publish(&self, w: &mut WriteState<K, T>) {
        w.generation = w.generation.wrapping_add(1);
        let latest_ramp = w.endpoints.iter().filter_map(|e| e.ramp_start).max();
        self.inner.current.store(Arc::new(Snapshot {
            endpoints: w.endpoints.clone(),
            generation: w.generation,
            latest_ramp,
        }));
        self.inner.generation.store(w.generation, Ordering::Release);
    }

    /// Adds an endpoint, healthy, or replaces the value and weight of an
    /// existing key (keeping its health, drain state and counters).
    ///
    /// A new endpoint takes its full weight at once, as in nginx and
    /// HAProxy; to have it ramp up (slow start) insert it down with
    /// [`insert_with_health`](Self::insert_with_health) and mark it healthy
    /// when its first check passes.
    pub fn insert(&self, key: K, value: T, weight: u32) {
        self.insert_with_health(key, value, weight, true);
    }

    /// Like [`insert`](Self::insert) but with an explicit initial health,
    /// for checkers that want endpoints down until proven up.
    pub fn insert_with_health(&self, key: K, value: T, weight: u32, healthy: bool) {
        let mut w = self.lock();
        match w.index.get(&key).copied() {
            Some(i) => {
                let Some(old) = w.endpoints.get(i) else {
                    return;
                };
                let entry = Arc::new(Entry {
                    key,
                    value,
                    stats: Arc::clone(&old.entry.stats),
                });
                let replaced = Endpoint {
                    entry,
                    weight,
                    healthy: old.healthy,
                    draining: old.draining,
                    ramp_start: old.ramp_start,
                };
                if let Some(slot) = w.endpoints.get_mut(i) {
                    *slot = replaced;
                }
            }
            None => {
                let idx = w.endpoints.len();
                w.index.insert(key.clone(), idx);
                w.endpoints.push(Endpoint {
                    entry: Arc::new(Entry {
                        key,
                        value,
                        stats: Arc::new(EndpointStats::new()),
                    }),
                    weight,
                    healthy,
                    draining: false,
                    ramp_start: None,
                });
            }
        }
        self.publish(&mut w);
    }

    /// Removes an endpoint. Work already picked finishes; no pick that
    /// starts after this returns can return it. Returns whether it existed.
    pub fn remove(&self, key: &K) -> bool {
        let mut w = self.lock();
        let Some(i) = w.index.remove(key) else {
            return false;
        };
        if i < w.endpoints.len() {
            w.endpoints.remove(i);
        }
        for slot in w.index.values_mut() {
            if *slot > i {
                *slot -= 1;
            }
        }
        self.publish(&mut w);
        true
    }

    /// Applies `f` to one endpoint and publishes if it changed anything.
    fn update(&self, key: &K, f: impl FnOnce(&mut Endpoint<K, T>) -> bool) -> bool {
        let mut w = self.lock();
        let Some(i) = w.index.get(key).copied() else {
            return false;
        };
        let Some(ep) = w.endpoints.get_mut(i) else {
            return false;
        };
        let changed = f(ep);
        if changed {
            self.publish(&mut w);
        }
        changed
    }

    /// Changes an endpoint's weight (0 stops new picks). Returns whether
    /// anything changed.
    pub fn set_weight(&self, key: &K, weight: u32) -> bool {
        self.update(key, |e| {
            let changed = e.weight != weight;
            e.weight = weight;
            changed
        })
    }

    /// Stops new picks of the endpoint; outstanding work finishes. Watch
    /// its [`in_flight`](EndpointStats::in_flight) reach 0, then
    /// [`remove`](Self::remove) it.
    pub fn drain(&self, key: &K) -> bool {
        self.update(key, |e| !std::mem::replace(&mut e.draining, true))
    }

    /// Takes a draining endpoint back into service (starting its
    /// slow-start ramp).
    pub fn undrain(&self, key: &K) -> bool {
        self.update(key, |e| {
            if !e.draining {
                return false;
            }
            e.draining = false;
            e.ramp_start = Some(Instant::now());
            true
        })
    }

    /// Records a health result. A repeated result is a cheap no-op (no
    /// snapshot is published); a down→up transition starts the slow-start
    /// ramp. Returns whether the state changed.
    pub fn set_healthy(&self, key: &K, healthy: bool) -> bool {
        self.update(key, |e| {
            if e.healthy == healthy {
                return false;
            }
            e.healthy = healthy;
            e.ramp_start = healthy.then(Instant::now);
            true
        })
    }

    /// Replaces the whole set in one published change: keys not in
    /// `endpoints` are removed, new ones inserted healthy, existing ones get
    /// the new value and weight and keep their state and counters.
    pub fn replace_all(&self, endpoints: impl IntoIterator<Item = (K, T, u32)>) {
        let mut w = self.lock();
        let old_index = std::mem::take(&mut w.index);
        let old = std::mem::take(&mut w.endpoints);
        for (key, value, weight) in endpoints {
            let prev = old_index.get(&key).and_then(|&i| old.get(i));
            let ep = match prev {
                Some(p) => Endpoint {
                    entry: Arc::new(Entry {
                        key: key.clone(),
                        value,
                        stats: Arc::clone(&p.entry.stats),
                    }),
                    weight,
                    healthy: p.healthy,
                    draining: p.draining,
                    ramp_start: p.ramp_start,
                },
                None => Endpoint {
                    entry: Arc::new(Entry {
                        key: key.clone(),
                        value,
                        stats: Arc::new(EndpointStats::new()),
                    }),
                    weight,
                    healthy: true,
                    draining: false,
                    ramp_start: None,
                },
            };
            match w.index.get(&key).copied() {
                // A duplicate key in the input: the last one wins.
                Some(i) => {
                    if let Some(slot) = w.endpoints.get_mut(i) {
                        *slot = ep;
                    }
                }
                None => {
                    let i = w.endpoints.len();
                    w.index.insert(key, i);
                    w.endpoints.push(ep);
                }
            }
        }
        self.publish(&mut w);
    }

    /// The counters of one endpoint.
    pub fn stats(&self, key: &K) -> Option<Arc<EndpointStats>> {
        let w = self.lock();
        let i = *w.index.get(key)?;
        w.endpoints.get(i).map(|e| Arc::clone(&e.entry.stats))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_publish_new_snapshots_and_keep_counters() {
        let set = EndpointSet::new();
        set.insert("a", 1, 1);
        set.insert("b", 2, 1);
        let before = set.snapshot();
        let stats = set.stats(&"a").expect("a present");
        stats.begin();
        assert!(set.set_weight(&"a", 5));
        assert!(!set.set_weight(&"a", 5), "same weight is a no-op");
        assert!(set.drain(&"b"));
        let after = set.snapshot();
        assert_eq!(before.get(&"a").map(Endpoint::weight), Some(1));
        assert_eq!(after.get(&"a").map(Endpoint::weight), Some(5));
        assert_eq!(after.get(&"a").map(|e| e.stats().in_flight()), Some(1));
        assert_eq!(after.available(), 1);
        assert!(after.generation() > before.generation());
    }

    #[test]
    fn repeated_health_is_a_no_op_and_unknown_keys_are_ignored() {
        let set = EndpointSet::new();
        set.insert(1u32, (), 1);
        let g = set.snapshot().generation();
        assert!(!set.set_healthy(&1, true));
        assert_eq!(set.snapshot().generation(), g);
        assert!(!set.set_healthy(&7, false));
        assert!(set.set_healthy(&1, false));
        assert_eq!(set.snapshot().available(), 0);
    }

    #[test]
    fn remove_keeps_index_consistent() {
        let set = EndpointSet::new();
        for k in 0..5u32 {
            set.insert(k, k, 1);
        }
        assert!(set.remove(&1));
        assert!(!set.remove(&1));
        assert!(set.set_weight(&4, 9));
        let s = set.snapshot();
        assert_eq!(s.get(&4).map(Endpoint::weight), Some(9));
        let keys: Vec<u32> = s.endpoints().iter().map(|e| *e.key()).collect();
        assert_eq!(keys, vec![0, 2, 3, 4]);
    }

    #[test]
    fn replace_all_keeps_state_of_surviving_keys() {
        let set = EndpointSet::new();
        set.insert("a", 1, 1);
        set.insert("b", 1, 1);
        set.set_healthy(&"a", false);
        set.replace_all([("a", 10, 2), ("c", 30, 1)]);
        let s = set.snapshot();
        assert_eq!(s.len(), 2);
        let a = s.get(&"a").expect("a kept");
        assert!(!a.is_healthy());
        assert_eq!((*a.value(), a.weight()), (10, 2));
        assert!(s.get(&"b").is_none());
        assert!(set.set_weight(&"c", 3));
    }
}
