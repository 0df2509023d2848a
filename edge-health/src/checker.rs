//! The checker's configuration and handle: pools to check
//! ([`PoolConfig`]), the [`HealthChecker`] that spawns the driver
//! (`driver.rs`), and the [`HealthHandle`] that reads its state and changes
//! a pool's targets while it runs.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use rand::SeedableRng;
use rand::rngs::SmallRng;
use tokio::sync::{broadcast, mpsc, watch};
use tokio::task::JoinSet;
use tracing::Instrument;

use crate::config::SchedulerConfig;
use crate::driver::{Driver, PoolRuntime, now};
use crate::error::ConfigError;
use crate::event::{FirstRound, HealthEvent, PoolStatus, ProbeObserver, ProbeReport};
use crate::outlier::{Counters, OutlierDetector};
use crate::pool::PoolConfig;
use crate::probe::CompiledProbe;
use crate::round::FirstRoundTracker;
use crate::scheduler::ProbeQueue;
use crate::shared::{Command, HealthStream, PoolShared, Shared};

/// Collects pools, then [`spawn`](Self::spawn)s the driver.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), edge_health::ConfigError> {
/// use edge_health::{HealthChecker, PoolConfig, Probe, SchedulerConfig};
/// let backend = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
/// let mut checker = HealthChecker::new(SchedulerConfig::default())?;
/// checker.add_pool(PoolConfig::new("web", [backend.local_addr().unwrap()]).probe(Probe::Tcp))?;
/// let health = checker.spawn();
/// let mut events = health.subscribe();
/// let first = events.next().await.unwrap(); // the current state: not checked yet
/// assert!(!first.healthy);
/// let up = events.next().await.unwrap(); // the first probe passed
/// assert!(up.healthy);
/// assert_eq!(health.pool_summary("web"), Some((1, 1)));
/// health.shutdown().await;
/// # Ok(()) }
/// ```
pub struct HealthChecker {
    sched: SchedulerConfig,
    pools: Vec<(PoolConfig, CompiledProbe)>,
    observer: Option<ProbeObserver>,
}

impl std::fmt::Debug for HealthChecker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HealthChecker")
            .field("sched", &self.sched)
            .field("pools", &self.pools)
            .field("observer", &self.observer.is_some())
            .finish()
    }
}

impl HealthChecker {
    /// A checker with no pools yet.
    pub fn new(sched: SchedulerConfig) -> Result<Self, ConfigError> {
        sched.validate()?;
        Ok(Self {
            sched,
            pools: Vec::new(),
            observer: None,
        })
    }

    /// Calls `f` with the report of every probe as it ends (passed or
    /// failed, state change or not), e.g. to count probe durations.
    pub fn on_probe(&mut self, f: impl Fn(&ProbeReport) + Send + Sync + 'static) -> &mut Self {
        self.observer = Some(Arc::new(f));
        self
    }

    /// Adds a pool after validating it.
    pub fn add_pool(&mut self, pool: PoolConfig) -> Result<&mut Self, ConfigError> {
        if self.pools.iter().any(|(p, _)| p.name == pool.name) {
            return Err(ConfigError::DuplicatePool(pool.name));
        }
        let probe = pool.compile()?;
        self.pools.push((pool, probe));
        Ok(self)
    }

    /// Starts probing on the current tokio runtime.
    ///
    /// # Panics
    /// Outside a tokio runtime.
    pub fn spawn(self) -> HealthHandle {
        let now = now();
        let total_targets: usize = self.pools.iter().map(|(p, _)| p.targets.len()).sum();
        let (events_tx, _) = broadcast::channel(total_targets.saturating_mul(2).max(1024));
        let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
        let mut counters = Counters::new();
        let mut pools = Vec::with_capacity(self.pools.len());
        let mut shared_pools = Vec::with_capacity(self.pools.len());
        let mut by_name = HashMap::new();
        for (pi, (cfg, probe)) in self.pools.into_iter().enumerate() {
            let pool = PoolRuntime::new(pi, cfg, probe, now, &mut counters);
            by_name.insert(Arc::clone(&pool.name), pi);
            shared_pools.push(PoolShared {
                status: watch::channel(pool.status()).0,
                last_probes: Mutex::new(vec![None; pool.targets.len()]),
                targets: Mutex::new(pool.events().into_iter().map(Some).collect()),
            });
            pools.push(pool);
        }
        let (first_round, first_round_rx) = FirstRoundTracker::new(total_targets, now);
        let shared = Arc::new(Shared {
            pools: shared_pools,
            by_name,
            events: events_tx.downgrade(),
            first_round: first_round_rx,
        });
        let counters = Arc::new(ArcSwap::from_pointee(counters));
        let driver = Driver {
            queue: ProbeQueue::new(self.sched.max_concurrent_probes),
            jitter_percent: self.sched.jitter_percent,
            pools,
            probes: JoinSet::new(),
            hooks: JoinSet::new(),
            cmd_rx,
            events: events_tx,
            shared: Arc::clone(&shared),
            rng: SmallRng::from_rng(&mut rand::rng()),
            observer: self.observer,
            counters: Arc::clone(&counters),
            first_round,
        };
        let task = tokio::spawn(driver.run().instrument(tracing::info_span!("edge_health")));
        HealthHandle {
            shared,
            outlier: OutlierDetector {
                counters,
                tx: cmd_tx.clone(),
            },
            cmd: cmd_tx,
            task: Arc::new(Mutex::new(Some(task))),
        }
    }
}

/// The running checker. Clone it freely; the checker stops when
/// [`shutdown`](Self::shutdown) is called or when every handle and
/// [`OutlierDetector`] is dropped.
#[derive(Debug, Clone)]
pub struct HealthHandle {
    shared: Arc<Shared>,
    outlier: OutlierDetector,
    cmd: mpsc::UnboundedSender<Command>,
    task: Arc<Mutex<Option<tokio::task::JoinHandle<()>>>>,
}

impl HealthHandle {
    /// A stream of events starting with every target's current state.
    pub fn subscribe(&self) -> HealthStream {
        // Subscribe before reading the snapshot so no change falls between.
        let rx = self.shared.events.upgrade().map(|tx| tx.subscribe());
        HealthStream {
            rx,
            backlog: self.shared.snapshot().into(),
            shared: Arc::clone(&self.shared),
        }
    }

    /// Every target's current state.
    pub fn targets(&self) -> Vec<HealthEvent> {
        self.shared.snapshot()
    }

    /// The last probe of every target probed at least once.
    pub fn last_probes(&self) -> Vec<ProbeReport> {
        let mut out = Vec::new();
        for p in &self.shared.pools {
            if let Ok(l) = p.last_probes.lock() {
                out.extend(l.iter().flatten().cloned());
            }
        }
        out
    }

    /// `(healthy, total)` of a pool, `None` for an unknown pool.
    pub fn pool_summary(&self, pool: &str) -> Option<(usize, usize)> {
        self.pool_status(pool).map(|s| (s.healthy, s.total))
    }

    /// The full status of a pool.
    pub fn pool_status(&self, pool: &str) -> Option<PoolStatus> {
        let i = *self.shared.by_name.get(pool)?;
        Some(self.shared.pools.get(i)?.status.borrow().clone())
    }

    /// Whether a pool's capacity alert is raised (`None` for an unknown
    /// pool): below its [`CapacityConfig`](crate::CapacityConfig) thresholds after every target
    /// had a first result.
    pub fn capacity_alert(&self, pool: &str) -> Option<bool> {
        self.pool_status(pool).map(|s| s.low)
    }

    /// A watch of a pool's status (capacity alerts, VRRP priority
    /// tracking, metrics).
    pub fn watch_pool(&self, pool: &str) -> Option<watch::Receiver<PoolStatus>> {
        let i = *self.shared.by_name.get(pool)?;
        Some(self.shared.pools.get(i)?.status.subscribe())
    }

    /// Names of all pools.
    pub fn pools(&self) -> Vec<Arc<str>> {
        let mut v: Vec<_> = self
            .shared
            .by_name
            .iter()
            .map(|(k, i)| (*i, Arc::clone(k)))
            .collect();
        v.sort();
        v.into_iter().map(|(_, k)| k).collect()
    }

    /// Waits until every target the checker was spawned with has had its
    /// first probe finish (passed, failed or timed out; a target removed
    /// before counts as done), and returns how many were up and down then
    /// and how long it took. Every first probe starts at spawn (within
    /// [`SchedulerConfig::max_concurrent_probes`]), so the round takes
    /// about one probe timeout. Targets added later by
    /// [`set_targets`](Self::set_targets) are not part of it. `None` if the
    /// checker stopped before the round ended.
    ///
    /// [`SchedulerConfig::max_concurrent_probes`]: crate::SchedulerConfig::max_concurrent_probes
    pub async fn first_round(&self) -> Option<FirstRound> {
        let mut rx = self.shared.first_round.clone();
        let round = rx.wait_for(Option::is_some).await.ok()?;
        *round
    }

    /// The first round, if it has ended (see [`first_round`](Self::first_round)).
    pub fn first_round_done(&self) -> Option<FirstRound> {
        *self.shared.first_round.borrow()
    }

    /// Replaces the targets of `pool` while the checker runs (servers
    /// found by DNS): a new target starts in the pool's initial state
    /// (`CheckConfig::initial`) and is probed at once; a
    /// target that stays keeps its state; a removed one is no longer probed,
    /// counted or reported. `weights` as [`PoolConfig::weight`] (1 when
    /// absent). Returns `false` for an unknown pool or a stopped checker.
    pub fn set_targets(&self, pool: &str, targets: Vec<(SocketAddr, u32)>) -> bool {
        let Some(&index) = self.shared.by_name.get(pool) else {
            return false;
        };
        self.cmd
            .send(Command::SetTargets {
                pool: index,
                targets,
            })
            .is_ok()
    }

    /// The passive outlier detector fed from live traffic.
    pub fn outlier_detector(&self) -> OutlierDetector {
        self.outlier.clone()
    }

    /// Stops probing, cancels probes and hooks in flight, and waits for the
    /// driver to end.
    pub async fn shutdown(self) {
        let _ = self.cmd.send(Command::Shutdown);
        let task = self.task.lock().ok().and_then(|mut t| t.take());
        if let Some(task) = task {
            let _ = task.await;
        }
    }
}
