//! Backend pools: servers with weights balanced by `edge-balance`, a
//! per-server concurrency limit with a bounded queue, and health from
//! `edge-health` (active probes and passive outlier detection fed with the
//! outcome of every request and connection; see [`crate::health`]).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use edge_balance::{Balancer, BalancerConfig, EndpointSet, InFlight, PickContext, Picked};
use edge_health::{Outcome, OutlierDetector};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::config::{Policy, PoolSettings};

/// The per-server admission state: its concurrency limit and queue.
#[derive(Debug)]
pub struct Slot {
    pub addr: SocketAddr,
    limiter: Option<Arc<Semaphore>>,
    queued: AtomicUsize,
    /// Leases alive: requests (until their response body ends), upgrade
    /// tunnels and passthrough connections using the server.
    active: AtomicUsize,
}

/// A server in use by one request or connection. Counts as in flight for
/// the balancer and holds the server's slot until dropped; report how it
/// went with [`Lease::success`] / [`Lease::failure`].
#[derive(Debug)]
pub struct Lease {
    addr: SocketAddr,
    in_flight: Option<InFlight>,
    slot: Arc<Slot>,
    _permit: Option<OwnedSemaphorePermit>,
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.slot.active.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Lease {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
    /// The server answered; `latency` feeds Peak-EWMA.
    pub fn success(&mut self, latency: Duration) {
        if let Some(f) = self.in_flight.take() {
            f.success_after(latency);
        }
    }
    /// The server failed.
    pub fn failure(&mut self) {
        if let Some(f) = self.in_flight.take() {
            f.failure();
        }
    }
}

/// Why no slot on a server could be had.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AcquireError {
    /// The queue in front of the server is full.
    QueueFull,
    /// Waited `queue_timeout` for a slot.
    QueueTimeout,
}

/// A pool of servers.
#[derive(Debug)]
pub struct Pool {
    pub settings: PoolSettings,
    balancer: Balancer<SocketAddr, Arc<Slot>>,
    outlier: OnceLock<OutlierDetector>,
    /// Retry budget in thousandths of a retry (see [`Pool::deposit`]).
    retry_tokens: AtomicI64,
}

/// Retries always allowed in reserve, on top of the percentage.
const RETRY_RESERVE: i64 = 10_000;
/// Most retries that can be saved up.
const RETRY_CAP: i64 = 100_000;

fn policy(p: Policy) -> edge_balance::Policy {
    match p {
        Policy::RoundRobin => edge_balance::Policy::RoundRobin,
        Policy::LeastRequest => edge_balance::Policy::LeastRequest,
        Policy::Random => edge_balance::Policy::Random,
        Policy::P2c => edge_balance::Policy::P2c,
        Policy::PeakEwma => edge_balance::Policy::default(),
    }
}

impl Pool {
    pub fn new(settings: PoolSettings) -> Arc<Self> {
        let set = EndpointSet::new();
        for &(addr, weight) in &settings.servers {
            let slot = Arc::new(Slot {
                addr,
                limiter: (settings.max_connections_per_server > 0)
                    .then(|| Arc::new(Semaphore::new(settings.max_connections_per_server))),
                queued: AtomicUsize::new(0),
                active: AtomicUsize::new(0),
            });
            // In rotation from the start; health checks take servers out.
            set.insert_with_health(addr, slot, weight.max(1), true);
        }
        let balancer = Balancer::new(
            set,
            policy(settings.policy),
            BalancerConfig::default().name(settings.name.clone()),
        );
        Arc::new(Self {
            settings,
            balancer,
            outlier: OnceLock::new(),
            retry_tokens: AtomicI64::new(RETRY_RESERVE),
        })
    }

    /// Picks a server by the pool's policy, never one in `exclude`.
    /// `None` when no server is available (503).
    pub fn pick(&self, exclude: &[SocketAddr]) -> Option<Picked<SocketAddr, Arc<Slot>>> {
        self.balancer
            .pick(&PickContext::new().exclude(exclude))
            .ok()
    }

    /// Requests (until their response body ends), tunnels and passthrough
    /// connections on `addr` now (metrics `edge_backend_in_flight`).
    pub fn in_flight(&self, addr: &SocketAddr) -> Option<u64> {
        self.server(*addr).map(|s| s.active as u64)
    }

    /// The server for attempt number `attempts + 1` of one request or
    /// connection: `None` when the attempts (`retries + 1`) or, for a retry,
    /// the retry budget are spent, or no server outside `exclude` is
    /// available. Counts the attempt in `attempts`.
    pub fn next_attempt(
        &self,
        attempts: &mut u32,
        exclude: &[SocketAddr],
    ) -> Option<Picked<SocketAddr, Arc<Slot>>> {
        if *attempts > self.settings.retries {
            return None;
        }
        if *attempts > 0 && !self.withdraw_retry() {
            tracing::debug!(pool = %self.settings.name, "retry budget spent");
            return None;
        }
        let picked = self.pick(exclude)?;
        *attempts += 1;
        Some(picked)
    }

    /// Takes a slot on the picked server, waiting in its bounded queue when
    /// it is at `max_connections_per_server`.
    pub async fn acquire(
        &self,
        picked: Picked<SocketAddr, Arc<Slot>>,
    ) -> Result<Lease, AcquireError> {
        let (endpoint, in_flight) = picked.into_parts();
        let slot = endpoint.value().clone();
        let permit = match &slot.limiter {
            None => None,
            Some(sem) => match sem.clone().try_acquire_owned() {
                Ok(p) => Some(p),
                Err(_) => {
                    if slot.queued.fetch_add(1, Ordering::Relaxed) >= self.settings.max_queue {
                        slot.queued.fetch_sub(1, Ordering::Relaxed);
                        return Err(AcquireError::QueueFull);
                    }
                    let r = tokio::time::timeout(
                        self.settings.queue_timeout,
                        sem.clone().acquire_owned(),
                    )
                    .await;
                    slot.queued.fetch_sub(1, Ordering::Relaxed);
                    match r {
                        Ok(Ok(p)) => Some(p),
                        _ => return Err(AcquireError::QueueTimeout),
                    }
                }
            },
        };
        slot.active.fetch_add(1, Ordering::Relaxed);
        Ok(Lease {
            addr: slot.addr,
            in_flight: Some(in_flight),
            slot,
            _permit: permit,
        })
    }

    /// Each first attempt adds `retry_budget_percent` / 100 of a retry to
    /// the pool's budget (capped), so retries stay a bounded share of the
    /// traffic (plus a small reserve) even when every server fails.
    pub fn deposit(&self) {
        let add = i64::from(self.settings.retry_budget_percent) * 10;
        let _ = self
            .retry_tokens
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |t| {
                Some((t + add).min(RETRY_CAP))
            });
    }

    /// Takes one retry from the budget; false when it is spent.
    pub fn withdraw_retry(&self) -> bool {
        self.retry_tokens
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |t| {
                (t >= 1000).then_some(t - 1000)
            })
            .is_ok()
    }

    /// Feeds passive outlier detection with the outcome of one use of a server.
    pub fn record(&self, addr: SocketAddr, outcome: Outcome) {
        if let Some(d) = self.outlier.get() {
            d.record(addr, outcome);
        }
    }

    /// Puts a server in or out of rotation (from health events).
    pub fn set_healthy(&self, addr: SocketAddr, healthy: bool) {
        self.balancer.set().set_healthy(&addr, healthy);
    }

    /// Connects the pool to the health checker's outlier detector.
    pub fn set_outlier_detector(&self, d: OutlierDetector) {
        let _ = self.outlier.set(d);
    }

    /// Servers in rotation and configured.
    pub fn available(&self) -> (usize, usize) {
        let s = self.balancer.set().snapshot();
        (s.available(), s.len())
    }

    /// Whether `addr` is one of the pool's servers.
    pub fn has_server(&self, addr: SocketAddr) -> bool {
        self.settings.servers.iter().any(|(a, _)| *a == addr)
    }

    /// Takes a server out of rotation (`true`: no new request or
    /// connection picks it; those using it finish) or puts it back.
    /// Health is tracked apart: a drained server that is down stays out
    /// after it is undrained until its checks pass. Returns whether
    /// anything changed.
    pub fn set_draining(&self, addr: SocketAddr, draining: bool) -> bool {
        let set = self.balancer.set();
        if draining {
            set.drain(&addr)
        } else {
            set.undrain(&addr)
        }
    }

    /// Sets a server's balancing weight (0: no new traffic). Returns
    /// whether anything changed.
    pub fn set_weight(&self, addr: SocketAddr, weight: u32) -> bool {
        self.balancer.set().set_weight(&addr, weight)
    }

    /// The weight a server has in the config, `None` for an unknown server.
    pub fn config_weight(&self, addr: SocketAddr) -> Option<u32> {
        self.settings
            .servers
            .iter()
            .find(|(a, _)| *a == addr)
            .map(|(_, w)| (*w).max(1))
    }

    /// Every server's live state, in config order.
    pub fn servers(&self) -> Vec<ServerStatus> {
        let snap = self.balancer.set().snapshot();
        snap.endpoints().iter().map(status).collect()
    }

    /// One server's live state.
    pub fn server(&self, addr: SocketAddr) -> Option<ServerStatus> {
        let snap = self.balancer.set().snapshot();
        snap.endpoints()
            .iter()
            .find(|e| *e.key() == addr)
            .map(status)
    }
}

/// The live state of one endpoint of a pool's balancer.
fn status(e: &edge_balance::Endpoint<SocketAddr, Arc<Slot>>) -> ServerStatus {
    let slot = e.value();
    let stats = e.stats();
    ServerStatus {
        addr: *e.key(),
        weight: e.weight(),
        healthy: e.is_healthy(),
        draining: e.is_draining(),
        active: slot.active.load(Ordering::Relaxed),
        picked: stats.in_flight(),
        queued: slot.queued.load(Ordering::Relaxed),
        requests: stats.picks(),
        failures: stats.errors(),
    }
}

/// A server's live state, as [`Pool::servers`] reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerStatus {
    pub addr: SocketAddr,
    /// Current balancing weight (the config's, or one set at runtime).
    pub weight: u32,
    /// What health checking last reported.
    pub healthy: bool,
    /// Taken out of rotation by an operator (drain or maint).
    pub draining: bool,
    /// Requests (until their response body ends), tunnels and passthrough
    /// connections using the server now.
    pub active: usize,
    /// Picked and not yet finished or answered (includes requests still
    /// waiting for a slot).
    pub picked: u64,
    /// Requests waiting in the server's queue.
    pub queued: usize,
    /// Requests and connections sent to it since this pool was built.
    pub requests: u64,
    /// Of which failed.
    pub failures: u64,
}

impl ServerStatus {
    /// Nothing uses the server and nothing is on its way to it.
    pub fn is_idle(&self) -> bool {
        self.active == 0 && self.picked == 0 && self.queued == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(weights: &[u32], policy: Policy) -> PoolSettings {
        PoolSettings {
            name: "p".into(),
            servers: weights
                .iter()
                .enumerate()
                .map(|(i, &w)| (SocketAddr::from(([127, 0, 0, 1], 1000 + i as u16)), w))
                .collect(),
            policy,
            protocol: Default::default(),
            connect_timeout: Duration::from_secs(1),
            response_timeout: Duration::from_secs(1),
            idle_timeout: Duration::from_secs(1),
            max_connections_per_server: 1,
            max_queue: 1,
            queue_timeout: Duration::from_millis(200),
            retries: 2,
            health: None,
            outlier_consecutive_failures: 2,
            outlier_ejection_time: Duration::from_secs(60),
            outlier_max_ejection_percent: 10,
            retry_budget_percent: 20,
        }
    }

    fn port(p: &Picked<SocketAddr, Arc<Slot>>) -> u16 {
        p.key().port()
    }

    #[test]
    fn pick_respects_exclude_and_health() {
        let p = Pool::new(settings(&[1, 1, 1], Policy::RoundRobin));
        let a1 = SocketAddr::from(([127, 0, 0, 1], 1001));
        let mut seen = [0; 3];
        for _ in 0..30 {
            seen[usize::from(port(&p.pick(&[a1]).unwrap()) - 1000)] += 1;
        }
        assert_eq!(seen, [15, 0, 15]);
        p.set_healthy(SocketAddr::from(([127, 0, 0, 1], 1000)), false);
        assert_eq!(p.available(), (2, 3));
        assert_eq!(port(&p.pick(&[a1]).unwrap()), 1002);
        assert!(
            p.pick(&[a1, SocketAddr::from(([127, 0, 0, 1], 1002))])
                .is_none()
        );
        for pol in [
            Policy::LeastRequest,
            Policy::Random,
            Policy::P2c,
            Policy::PeakEwma,
        ] {
            let p = Pool::new(settings(&[1, 3], pol));
            assert_eq!(
                port(&p.pick(&[SocketAddr::from(([127, 0, 0, 1], 1000))]).unwrap()),
                1001
            );
        }
    }

    #[test]
    fn drain_and_weight_compose_with_health() {
        let p = Pool::new(settings(&[1, 1], Policy::RoundRobin));
        let a0 = SocketAddr::from(([127, 0, 0, 1], 1000));
        let a1 = SocketAddr::from(([127, 0, 0, 1], 1001));
        assert!(p.set_draining(a0, true));
        assert!(!p.set_draining(a0, true), "already draining");
        for _ in 0..10 {
            assert_eq!(port(&p.pick(&[]).unwrap()), 1001);
        }
        // Down while drained: enabling does not bring it back...
        p.set_healthy(a0, false);
        assert!(p.set_draining(a0, false));
        assert_eq!(p.available(), (1, 2));
        // ...its checks passing do.
        p.set_healthy(a0, true);
        assert_eq!(p.available(), (2, 2));
        // A healthy server with weight 0 gets nothing; the weight is shown.
        assert!(p.set_weight(a1, 0));
        for _ in 0..10 {
            assert_eq!(port(&p.pick(&[]).unwrap()), 1000);
        }
        let s = p.server(a1).unwrap();
        assert_eq!((s.weight, s.healthy, s.draining), (0, true, false));
        assert_eq!(p.config_weight(a1), Some(1));
        assert_eq!(p.server(a0).unwrap().requests, 10);
        assert!(p.has_server(a0) && !p.has_server(SocketAddr::from(([127, 0, 0, 1], 9))));
        assert!(!p.set_draining(SocketAddr::from(([127, 0, 0, 1], 9)), true));
    }

    #[test]
    fn retry_budget_is_a_share_of_traffic() {
        let p = Pool::new(settings(&[1], Policy::RoundRobin));
        let mut granted = 0;
        for _ in 0..100 {
            p.deposit();
            if p.withdraw_retry() {
                granted += 1;
            }
        }
        // 10 in reserve + 20 % of 100 requests.
        assert_eq!(granted, 30);
        assert!(!p.withdraw_retry());
    }

    #[tokio::test]
    async fn bounded_queue() {
        let p = Pool::new(settings(&[1], Policy::RoundRobin));
        let held = p.acquire(p.pick(&[]).unwrap()).await.unwrap();
        let waiter = {
            let p = p.clone();
            tokio::spawn(async move {
                let picked = p.pick(&[]).unwrap();
                p.acquire(picked).await.map(|_| ())
            })
        };
        // Wait until the waiter is queued.
        for _ in 0..100 {
            if p.pick(&[]).unwrap().value().queued.load(Ordering::Relaxed) == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        assert_eq!(
            p.acquire(p.pick(&[]).unwrap()).await.unwrap_err(),
            AcquireError::QueueFull
        );
        drop(held);
        assert_eq!(waiter.await.unwrap(), Ok(()));
    }
}
