//! Backend pools: servers with weights, admission limits, retries and a
//! retry budget, all run by edge-balance's [`Dispatcher`]; health from
//! edge-health (active probes, and passive outlier detection fed with the
//! outcome of every attempt through the dispatcher's outcome callback; see
//! [`crate::health`]). This module only configures them.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use arc_swap::ArcSwap;

use edge_balance::{
    BalancerConfig, DispatchConfig, Dispatcher, EndpointSet, MaglevConfig, Outcome, PeakEwmaConfig,
    PickContext, Picked, RetryBudget, Target,
};
use edge_health::OutlierDetector;

use crate::config::{Policy, PoolSettings};
use crate::metrics::{BackendError, Metrics, ServerStats};

/// Each server's counters, by address.
type StatsByServer = HashMap<SocketAddr, Arc<ServerStats>>;

/// Retries always allowed in reserve, on top of the percentage.
const RETRY_RESERVE: u32 = 10;
/// Most retries that can be saved up.
const RETRY_CAP: u32 = 100;

/// A pool of servers.
#[derive(Debug)]
pub struct Pool {
    pub settings: PoolSettings,
    dispatcher: Dispatcher<SocketAddr, SocketAddr>,
    outlier: Arc<OnceLock<OutlierDetector>>,
    stats: Arc<ArcSwap<StatsByServer>>,
    metrics: OnceLock<Arc<Metrics>>,
    /// Every server now: the config's `IP:PORT`s, then those found by DNS.
    members: Mutex<Vec<(SocketAddr, u32)>>,
}

fn policy(s: &PoolSettings) -> edge_balance::Policy {
    match s.policy {
        Policy::RoundRobin => edge_balance::Policy::RoundRobin,
        Policy::LeastRequest => edge_balance::Policy::LeastRequest,
        Policy::Random => edge_balance::Policy::Random,
        Policy::P2c => edge_balance::Policy::P2c,
        Policy::PeakEwma => edge_balance::Policy::PeakEwma(PeakEwmaConfig::default()),
        Policy::Maglev | Policy::Hash => edge_balance::Policy::Maglev(
            MaglevConfig::default()
                .hash(s.options.hash.clone())
                .bounded_load(s.options.bounded_load),
        ),
    }
}

/// What passive health checking makes of an attempt's outcome. A failure
/// after the request was sent counts as a connect failure, as a reset does;
/// a fault of the request itself (the client's) is not the server's and
/// counts for nothing.
fn health_outcome(o: Outcome) -> Option<edge_health::Outcome> {
    Some(match o {
        Outcome::Success => edge_health::Outcome::Success,
        Outcome::Status5xx => edge_health::Outcome::Status5xx,
        Outcome::Timeout => edge_health::Outcome::Timeout,
        Outcome::RequestFault => return None,
        _ => edge_health::Outcome::ConnectFailure,
    })
}

/// The `edge_backend_errors_total` kind of a failed attempt; `None` for a
/// success and for the client's own fault.
fn error_kind(o: Outcome) -> Option<BackendError> {
    Some(match o {
        Outcome::ConnectFailure => BackendError::Connect,
        Outcome::Timeout => BackendError::Timeout,
        Outcome::Status5xx => BackendError::Status5xx,
        Outcome::Success | Outcome::RequestFault => return None,
        _ => BackendError::Response,
    })
}

impl Pool {
    pub fn new(settings: PoolSettings) -> Arc<Self> {
        let outlier: Arc<OnceLock<OutlierDetector>> = Arc::default();
        let config = DispatchConfig::default()
            .max_attempts(settings.retries.saturating_add(1))
            .max_per_endpoint(settings.max_connections_per_server)
            .max_queue(settings.max_queue)
            .queue_timeout(settings.queue_timeout)
            .attempt_timeout(Some(settings.response_timeout));
        let od = outlier.clone();
        let stats: Arc<ArcSwap<StatsByServer>> = Arc::default();
        let by_server = stats.clone();
        let dispatcher = Dispatcher::new(
            EndpointSet::new(),
            policy(&settings),
            BalancerConfig::default()
                .name(settings.name.clone())
                .slow_start(settings.options.slow_start)
                .fail_open(settings.options.fail_open),
            config,
        )
        .with_budget(RetryBudget::new(
            u32::from(settings.retry_budget_percent),
            RETRY_RESERVE,
            RETRY_CAP,
        ))
        .on_outcome(move |addr, outcome| {
            if let (Some(d), Some(o)) = (od.get(), health_outcome(outcome)) {
                d.record(*addr, o);
            }
            if let Some(kind) = error_kind(outcome)
                && let Some(s) = by_server.load().get(addr)
            {
                s.error(kind);
            }
        });
        for &(addr, weight) in &settings.servers {
            // In rotation from the start; health checks take servers out.
            dispatcher.insert(addr, addr, weight.max(1), true);
        }
        let members = Mutex::new(settings.servers.clone());
        Arc::new(Self {
            settings,
            dispatcher,
            outlier,
            stats,
            metrics: OnceLock::new(),
            members,
        })
    }

    /// Connects every server to its counters in `metrics` (the same ones
    /// across reloads), those found by DNS later too.
    pub fn set_metrics(&self, metrics: &Arc<Metrics>) {
        let _ = self.metrics.set(metrics.clone());
        let m = self
            .members()
            .iter()
            .map(|(addr, _)| (*addr, metrics.server(&self.settings.name, *addr)))
            .collect();
        self.stats.store(Arc::new(m));
    }

    /// A server's counters, once [`set_metrics`](Self::set_metrics) ran.
    pub fn server_stats(&self, addr: &SocketAddr) -> Option<Arc<ServerStats>> {
        self.stats.load().get(addr).cloned()
    }

    /// Every server now, with its weight: the config's `IP:PORT`s, then
    /// those found by DNS.
    pub fn members(&self) -> Vec<(SocketAddr, u32)> {
        self.members
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Makes `discovered` (servers found by DNS) the pool's servers beside
    /// the config's: new ones join out of rotation (the health checker's
    /// first event puts them in), weights follow, and servers that left
    /// are removed: no new request picks them, those in flight hold their
    /// lease and finish. Returns every server now.
    pub fn set_discovered(&self, discovered: &[(SocketAddr, u32)]) -> Vec<(SocketAddr, u32)> {
        let mut all = self.settings.servers.clone();
        for m in discovered {
            if !all.iter().any(|(a, _)| *a == m.0) {
                all.push(*m);
            }
        }
        let mut members = self.members.lock().unwrap_or_else(PoisonError::into_inner);
        let set = self.dispatcher.set();
        for (addr, _) in members.iter() {
            if !all.iter().any(|(a, _)| a == addr) {
                set.remove(addr);
            }
        }
        for &(addr, weight) in &all {
            match members.iter().find(|(a, _)| *a == addr) {
                None => self.dispatcher.insert(addr, addr, weight.max(1), false),
                Some(&(_, w)) if w != weight => {
                    set.set_weight(&addr, weight.max(1));
                }
                Some(_) => {}
            }
        }
        if let Some(metrics) = self.metrics.get() {
            let map: StatsByServer = all
                .iter()
                .map(|(a, _)| (*a, metrics.server(&self.settings.name, *a)))
                .collect();
            self.stats.store(Arc::new(map));
        }
        *members = all.clone();
        all
    }

    /// The dispatcher that runs requests and connections to this pool.
    pub fn dispatcher(&self) -> &Dispatcher<SocketAddr, SocketAddr> {
        &self.dispatcher
    }

    /// Picks a server by the pool's policy, never one in `exclude`, without
    /// dispatching to it. `None` when no server is available.
    pub fn pick(
        &self,
        exclude: &[SocketAddr],
    ) -> Option<Picked<SocketAddr, Arc<Target<SocketAddr>>>> {
        self.dispatcher
            .balancer()
            .pick(&PickContext::new().exclude(exclude))
            .ok()
    }

    /// Requests (until their response body ends), tunnels and passthrough
    /// connections on `addr` now (metrics `edge_backend_in_flight`).
    pub fn in_flight(&self, addr: &SocketAddr) -> Option<u64> {
        self.server(*addr).map(|s| s.active as u64)
    }

    /// Puts a server in or out of rotation (from health events).
    pub fn set_healthy(&self, addr: SocketAddr, healthy: bool) {
        self.dispatcher.set().set_healthy(&addr, healthy);
    }

    /// Connects the pool to the health checker's outlier detector.
    pub fn set_outlier_detector(&self, d: OutlierDetector) {
        let _ = self.outlier.set(d);
    }

    /// Servers in rotation and configured.
    pub fn available(&self) -> (usize, usize) {
        let s = self.dispatcher.set().snapshot();
        (s.available(), s.len())
    }

    /// Whether `addr` is one of the pool's servers.
    pub fn has_server(&self, addr: SocketAddr) -> bool {
        self.members().iter().any(|(a, _)| *a == addr)
    }

    /// Takes a server out of rotation (`true`: no new request or
    /// connection picks it; those using it finish) or puts it back.
    /// Health is tracked apart: a drained server that is down stays out
    /// after it is undrained until its checks pass. Returns whether
    /// anything changed.
    pub fn set_draining(&self, addr: SocketAddr, draining: bool) -> bool {
        let set = self.dispatcher.set();
        if draining {
            set.drain(&addr)
        } else {
            set.undrain(&addr)
        }
    }

    /// Sets a server's balancing weight (0: no new traffic). Returns
    /// whether anything changed.
    pub fn set_weight(&self, addr: SocketAddr, weight: u32) -> bool {
        self.dispatcher.set().set_weight(&addr, weight)
    }

    /// The weight a server has in the config (or from DNS), `None` for an
    /// unknown server.
    pub fn config_weight(&self, addr: SocketAddr) -> Option<u32> {
        self.members()
            .iter()
            .find(|(a, _)| *a == addr)
            .map(|(_, w)| (*w).max(1))
    }

    /// Every server's live state, in config order.
    pub fn servers(&self) -> Vec<ServerStatus> {
        let snap = self.dispatcher.set().snapshot();
        snap.endpoints().iter().map(status).collect()
    }

    /// One server's live state.
    pub fn server(&self, addr: SocketAddr) -> Option<ServerStatus> {
        let snap = self.dispatcher.set().snapshot();
        snap.endpoints()
            .iter()
            .find(|e| *e.key() == addr)
            .map(status)
    }
}

/// The live state of one endpoint of a pool's balancer.
fn status(e: &edge_balance::Endpoint<SocketAddr, Arc<Target<SocketAddr>>>) -> ServerStatus {
    let target = e.value();
    let stats = e.stats();
    ServerStatus {
        addr: *e.key(),
        weight: e.weight(),
        healthy: e.is_healthy(),
        draining: e.is_draining(),
        active: target.active(),
        picked: stats.in_flight(),
        queued: target.queued(),
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
    use std::time::Duration;

    fn settings(weights: &[u32], policy: Policy) -> PoolSettings {
        PoolSettings {
            name: "p".into(),
            discover: Vec::new(),
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
            options: Default::default(),
            tls: None,
        }
    }

    fn port(p: &Picked<SocketAddr, Arc<Target<SocketAddr>>>) -> u16 {
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
    fn pool_options_reach_the_balancer() {
        let mut s = settings(&[1, 1], Policy::RoundRobin);
        s.options.slow_start = Duration::from_secs(30);
        s.options.fail_open = true;
        let p = Pool::new(s);
        let b = p.dispatcher().balancer();
        assert_eq!(b.config().slow_start, Duration::from_secs(30));
        assert!(b.config().fail_open);
        assert_eq!(b.policy(), &edge_balance::Policy::RoundRobin);
        // fail_open: with every server down a pick still succeeds.
        p.set_healthy(SocketAddr::from(([127, 0, 0, 1], 1000)), false);
        p.set_healthy(SocketAddr::from(([127, 0, 0, 1], 1001)), false);
        assert!(p.pick(&[]).is_some());

        let mut s = settings(&[1, 1], Policy::Hash);
        s.options.hash = edge_balance::HashSource::Cookie("sid".into());
        s.options.bounded_load = Some(1.5);
        let p = Pool::new(s);
        let want = MaglevConfig::default()
            .hash(edge_balance::HashSource::Cookie("sid".into()))
            .bounded_load(Some(1.5));
        assert_eq!(
            p.dispatcher().balancer().policy(),
            &edge_balance::Policy::Maglev(want)
        );
        let p = Pool::new(settings(&[1], Policy::PeakEwma));
        assert_eq!(p.dispatcher().balancer().policy().name(), "peak_ewma");
    }
}
