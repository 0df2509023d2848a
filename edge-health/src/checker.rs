//! The driver: runs probes on a tokio runtime, feeds the state machines and
//! publishes their changes.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use futures::FutureExt;
use rand::SeedableRng;
use rand::rngs::SmallRng;
use tokio::sync::{broadcast, mpsc, watch};
use tokio::task::JoinSet;
use tracing::Instrument;

use crate::capacity::{CapacityChange, CapacityTracker, run_hook};
use crate::config::{CapacityConfig, CheckConfig, InitialState, OutlierConfig, SchedulerConfig};
use crate::error::ConfigError;
use crate::event::{HealthEvent, HealthStream, PoolStatus, ProbeObserver, ProbeReport};
use crate::machine::{HealthMachine, TargetState, Transition};
use crate::outlier::{
    FailureCounter, OutlierDetector, ejection_time, max_ejected, next_multiplier,
};
use crate::probe::{CompiledProbe, Probe};
use crate::reason::Reason;
use crate::scheduler::{Key, ProbeQueue, jitter, spread};

/// One pool of targets checked the same way.
#[derive(Debug, Clone)]
pub struct PoolConfig {
    /// The pool's name, unique in the checker.
    pub name: String,
    /// The targets.
    pub targets: Vec<SocketAddr>,
    /// What to probe them with. Default TCP connect.
    pub probe: Probe,
    /// Probe timing and thresholds.
    pub check: CheckConfig,
    /// Passive outlier detection.
    pub outlier: OutlierConfig,
    /// Capacity alert.
    pub capacity: CapacityConfig,
    /// Per-target initial states that override `check.initial` (see
    /// [`initial_state`](Self::initial_state)).
    pub initial_states: HashMap<SocketAddr, InitialState>,
    /// Per-target weights for the capacity alert's weight share (see
    /// [`weight`](Self::weight)); a target not listed weighs 1.
    pub weights: HashMap<SocketAddr, u32>,
}

impl PoolConfig {
    /// A pool with default settings and a TCP probe.
    pub fn new(name: impl Into<String>, targets: impl IntoIterator<Item = SocketAddr>) -> Self {
        Self {
            name: name.into(),
            targets: targets.into_iter().collect(),
            probe: Probe::Tcp,
            check: CheckConfig::default(),
            outlier: OutlierConfig::default(),
            capacity: CapacityConfig::default(),
            initial_states: HashMap::new(),
            weights: HashMap::new(),
        }
    }
    /// Sets the probe.
    pub fn probe(mut self, p: Probe) -> Self {
        self.probe = p;
        self
    }
    /// Sets the check timing.
    pub fn check(mut self, c: CheckConfig) -> Self {
        self.check = c;
        self
    }
    /// Sets outlier detection.
    pub fn outlier(mut self, o: OutlierConfig) -> Self {
        self.outlier = o;
        self
    }
    /// Sets the capacity alert.
    pub fn capacity(mut self, c: CapacityConfig) -> Self {
        self.capacity = c;
        self
    }

    /// Starts `target` in `state` instead of `check.initial`: a config
    /// reload hands the state each target had in the previous checker to
    /// the new one, so targets keep their place in or out of rotation.
    pub fn initial_state(mut self, target: SocketAddr, state: InitialState) -> Self {
        self.initial_states.insert(target, state);
        self
    }

    /// Gives `target` a weight (default 1), counted by the capacity alert's
    /// [`min_healthy_weight_percent`](CapacityConfig::min_healthy_weight_percent)
    /// and reported in [`PoolStatus`].
    pub fn weight(mut self, target: SocketAddr, weight: u32) -> Self {
        self.weights.insert(target, weight);
        self
    }

    /// Validates every part, naming the pool in the error's value.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.compile().map(drop)
    }

    fn compile(&self) -> Result<CompiledProbe, ConfigError> {
        if self.name.is_empty() {
            return Err(ConfigError::Empty { field: "pool.name" });
        }
        self.check.validate()?;
        self.outlier.validate()?;
        self.capacity.validate()?;
        let mut seen = HashSet::new();
        for t in &self.targets {
            if !seen.insert(*t) {
                return Err(ConfigError::DuplicateTarget {
                    pool: self.name.clone(),
                    target: *t,
                });
            }
        }
        self.probe.compile()
    }
}

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
        let mut counters: HashMap<SocketAddr, Vec<Arc<FailureCounter>>> = HashMap::new();
        let mut pools = Vec::with_capacity(self.pools.len());
        let mut shared_pools = Vec::with_capacity(self.pools.len());
        let mut by_name = HashMap::new();
        for (pi, (cfg, probe)) in self.pools.into_iter().enumerate() {
            let name: Arc<str> = Arc::from(cfg.name.as_str());
            let targets: Vec<TargetRuntime> = cfg
                .targets
                .iter()
                .enumerate()
                .map(|(ti, addr)| {
                    let counter = Arc::new(FailureCounter::new((pi, ti), &cfg.outlier));
                    counters
                        .entry(*addr)
                        .or_default()
                        .push(Arc::clone(&counter));
                    TargetRuntime {
                        addr: *addr,
                        machine: HealthMachine::new(
                            match cfg.initial_states.get(addr) {
                                Some(&s) => cfg.check.clone().initial(s),
                                None => cfg.check.clone(),
                            },
                            now,
                        ),
                        multiplier: 0,
                        counter,
                    }
                })
                .collect();
            let snapshot = targets
                .iter()
                .map(|t| event(&name, t.addr, &t.machine))
                .collect();
            let mut pool = PoolRuntime {
                name: Arc::clone(&name),
                probe,
                capacity: CapacityTracker::new(&cfg.capacity),
                cfg,
                targets,
            };
            let status = pool.status();
            let _ = pool.capacity.observe(&status);
            by_name.insert(Arc::clone(&name), pi);
            shared_pools.push(PoolShared {
                status: watch::channel(pool.status()).0,
                last_probes: Mutex::new(vec![None; pool.targets.len()]),
                targets: Mutex::new(snapshot),
            });
            pools.push(pool);
        }
        let shared = Arc::new(Shared {
            pools: shared_pools,
            by_name,
            events: events_tx.downgrade(),
        });
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
        };
        let task = tokio::spawn(driver.run().instrument(tracing::info_span!("edge_health")));
        HealthHandle {
            shared,
            outlier: OutlierDetector {
                counters: Arc::new(counters),
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
    /// pool): below its [`CapacityConfig`] thresholds after every target
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

/// Messages to the driver.
#[derive(Debug)]
pub(crate) enum Command {
    Outlier { key: Key, consecutive: u32 },
    Shutdown,
}

/// State shared by the driver and the handles.
#[derive(Debug)]
pub(crate) struct Shared {
    pools: Vec<PoolShared>,
    by_name: HashMap<Arc<str>, usize>,
    events: broadcast::WeakSender<HealthEvent>,
}

#[derive(Debug)]
struct PoolShared {
    status: watch::Sender<PoolStatus>,
    targets: Mutex<Vec<HealthEvent>>,
    /// Each target's last probe, in target order.
    last_probes: Mutex<Vec<Option<ProbeReport>>>,
}

impl Shared {
    pub(crate) fn snapshot(&self) -> Vec<HealthEvent> {
        let mut out = Vec::new();
        for p in &self.pools {
            if let Ok(t) = p.targets.lock() {
                out.extend(t.iter().cloned());
            }
        }
        out
    }
}

#[derive(Debug)]
struct PoolRuntime {
    name: Arc<str>,
    cfg: PoolConfig,
    probe: CompiledProbe,
    capacity: CapacityTracker,
    targets: Vec<TargetRuntime>,
}

impl PoolRuntime {
    fn status(&self) -> PoolStatus {
        let mut s = PoolStatus {
            pool: Arc::clone(&self.name),
            healthy: 0,
            total: self.targets.len(),
            unchecked: 0,
            ejected: 0,
            low: self.capacity.is_low(),
            healthy_weight: 0,
            total_weight: 0,
        };
        for t in &self.targets {
            let w = u64::from(self.cfg.weights.get(&t.addr).copied().unwrap_or(1));
            s.total_weight += w;
            if t.machine.is_healthy() {
                s.healthy_weight += w;
            }
            match t.machine.state() {
                TargetState::Up => s.healthy += 1,
                TargetState::Unchecked => s.unchecked += 1,
                TargetState::Ejected => s.ejected += 1,
                _ => {}
            }
        }
        s
    }
}

#[derive(Debug)]
struct TargetRuntime {
    addr: SocketAddr,
    machine: HealthMachine,
    multiplier: u32,
    counter: Arc<FailureCounter>,
}

struct Driver {
    queue: ProbeQueue,
    jitter_percent: u8,
    pools: Vec<PoolRuntime>,
    probes: JoinSet<(Key, Probed)>,
    hooks: JoinSet<()>,
    cmd_rx: mpsc::UnboundedReceiver<Command>,
    events: broadcast::Sender<HealthEvent>,
    shared: Arc<Shared>,
    rng: SmallRng,
    observer: Option<ProbeObserver>,
}

/// A probe's result, its start and its duration.
type Probed = (Result<(), Reason>, SystemTime, Duration);

fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

fn event(pool: &Arc<str>, target: SocketAddr, m: &HealthMachine) -> HealthEvent {
    HealthEvent {
        target,
        pool: Arc::clone(pool),
        healthy: m.is_healthy(),
        state: m.state(),
        reason: m.reason().clone(),
        since: m.since(),
    }
}

impl Driver {
    async fn run(mut self) {
        let start = now();
        // Spread every target's first probe over its first interval.
        for (pi, p) in self.pools.iter_mut().enumerate() {
            for (ti, t) in p.targets.iter_mut().enumerate() {
                let at = spread(&mut self.rng, start, t.machine.interval());
                t.machine.delay_next_probe(at);
                self.queue.schedule((pi, ti), at);
            }
        }
        loop {
            let now = now();
            while let Some(key) = self.queue.poll_start(now) {
                self.start_probe(key, now);
            }
            let wake = self.queue.poll_timeout();
            tokio::select! {
                _ = sleep_until(wake) => {}
                Some(done) = self.probes.join_next(), if !self.probes.is_empty() => {
                    self.queue.finish();
                    match done {
                        Ok((key, probed)) => self.on_result(key, probed),
                        Err(e) => tracing::error!(error = %e, "probe task failed"),
                    }
                }
                Some(_) = self.hooks.join_next(), if !self.hooks.is_empty() => {}
                cmd = self.cmd_rx.recv() => match cmd {
                    Some(Command::Outlier { key, consecutive }) => self.on_outlier(key, consecutive),
                    Some(Command::Shutdown) | None => break,
                }
            }
        }
        self.probes.shutdown().await;
        self.hooks.shutdown().await;
        tracing::debug!("health checker stopped");
    }

    fn start_probe(&mut self, key: Key, now: Instant) {
        let Some(pool) = self.pools.get_mut(key.0) else {
            return self.queue.finish();
        };
        let Some(t) = pool.targets.get_mut(key.1) else {
            return self.queue.finish();
        };
        t.machine.on_probe_started(now);
        let probe = pool.probe.clone();
        let timeout = pool.cfg.check.timeout;
        let addr = t.addr;
        self.probes.spawn(async move {
            let (started, clock) = (SystemTime::now(), Instant::now());
            let r = AssertUnwindSafe(probe.run(addr, timeout))
                .catch_unwind()
                .await
                .unwrap_or_else(|_| Err(Reason::Custom("probe panicked".into())));
            (key, (r, started, clock.elapsed()))
        });
    }

    fn on_result(&mut self, key: Key, (result, started, duration): Probed) {
        let now = now();
        let Some(pool) = self.pools.get_mut(key.0) else {
            return;
        };
        let Some(t) = pool.targets.get_mut(key.1) else {
            return;
        };
        if let Err(r) = &result {
            tracing::debug!(pool = %pool.name, target = %t.addr, reason = %r, "probe failed");
        }
        let report = ProbeReport {
            target: t.addr,
            pool: Arc::clone(&pool.name),
            started,
            duration,
            result: result.clone(),
        };
        if let Some(f) = &self.observer {
            f(&report);
        }
        if let Some(ps) = self.shared.pools.get(key.0)
            && let Ok(mut last) = ps.last_probes.lock()
            && let Some(slot) = last.get_mut(key.1)
        {
            *slot = Some(report);
        }
        let transition = t.machine.on_probe_result(now, result);
        let next = jitter(
            &mut self.rng,
            t.machine.poll_timeout(),
            t.machine.interval(),
            self.jitter_percent,
        )
        .max(now);
        self.queue.schedule(key, next);
        if let Some(tr) = transition {
            self.publish(key, tr);
        }
    }

    fn on_outlier(&mut self, key: Key, consecutive: u32) {
        let now = now();
        let Some(pool) = self.pools.get_mut(key.0) else {
            return;
        };
        let cfg = pool.cfg.outlier.clone();
        let cap = max_ejected(pool.targets.len(), cfg.max_ejection_percent);
        let ejected = pool
            .targets
            .iter()
            .filter(|t| t.machine.state() == TargetState::Ejected)
            .count();
        let name = Arc::clone(&pool.name);
        let Some(t) = pool.targets.get_mut(key.1) else {
            return;
        };
        t.counter.reset();
        if t.machine.state() != TargetState::Up {
            return;
        }
        if ejected >= cap {
            tracing::warn!(
                pool = %name, target = %t.addr, consecutive, ejected, cap,
                "outlier not ejected: ejection cap reached"
            );
            return;
        }
        let multiplier = next_multiplier(
            t.multiplier,
            t.machine.returned_at(),
            now,
            cfg.base_ejection_time,
        );
        let duration = ejection_time(&cfg, multiplier);
        let until = now.checked_add(duration).unwrap_or(now);
        let reason = Reason::Ejected {
            consecutive_failures: consecutive,
            duration,
        };
        if let Some(tr) = t.machine.eject(now, until, reason) {
            t.multiplier = multiplier;
            self.publish(key, tr);
        }
    }

    /// Logs a change once, publishes it and re-evaluates the pool.
    fn publish(&mut self, key: Key, tr: Transition) {
        let Some(pool) = self.pools.get_mut(key.0) else {
            return;
        };
        let Some(t) = pool.targets.get(key.1) else {
            return;
        };
        let ev = event(&pool.name, t.addr, &t.machine);
        if tr.to.is_healthy() {
            tracing::info!(
                pool = %pool.name, target = %t.addr, from = ?tr.from, to = ?tr.to,
                reason = %tr.reason, "target in rotation"
            );
        } else {
            tracing::warn!(
                pool = %pool.name, target = %t.addr, from = ?tr.from, to = ?tr.to,
                reason = %tr.reason, code = tr.reason.code(), "target out of rotation"
            );
        }
        if let Some(ps) = self.shared.pools.get(key.0)
            && let Ok(mut snap) = ps.targets.lock()
            && let Some(slot) = snap.get_mut(key.1)
        {
            *slot = ev.clone();
        }
        let mut status = pool.status();
        let change = pool.capacity.observe(&status);
        status.low = pool.capacity.is_low();
        if let Some(change) = change {
            match change {
                CapacityChange::Low => tracing::warn!(
                    pool = %pool.name, healthy = status.healthy, total = status.total,
                    alert = "capacity", state = "low", "pool capacity low"
                ),
                CapacityChange::Recovered => tracing::info!(
                    pool = %pool.name, healthy = status.healthy, total = status.total,
                    alert = "capacity", state = "recovered", "pool capacity recovered"
                ),
            }
            let limit = pool.cfg.capacity.hook_timeout;
            for hook in &pool.cfg.capacity.hooks {
                self.hooks
                    .spawn(run_hook(hook.clone(), limit, change, status.clone()));
            }
        }
        if let Some(ps) = self.shared.pools.get(key.0) {
            ps.status.send_replace(status);
        }
        // After the pool status, so a subscriber seeing the event sees a
        // summary that includes it.
        let _ = self.events.send(ev);
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await,
        None => std::future::pending().await,
    }
}

impl std::fmt::Debug for Driver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Driver")
            .field("in_flight", &self.queue.in_flight())
            .field("waiting", &self.queue.waiting())
            .finish_non_exhaustive()
    }
}
