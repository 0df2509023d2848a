//! The driver: runs probes on a tokio runtime, feeds the state machines,
//! publishes their changes, and adds and removes targets while it runs.

use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwap;
use futures::FutureExt;
use rand::rngs::SmallRng;
use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinSet;

use crate::capacity::{CapacityChange, CapacityTracker, run_hook};
use crate::event::{HealthEvent, PoolStatus, ProbeObserver, ProbeReport};
use crate::machine::{HealthMachine, TargetState, Transition};
use crate::outlier::{Counters, FailureCounter, ejection_time, max_ejected, next_multiplier};
use crate::pool::PoolConfig;
use crate::probe::CompiledProbe;
use crate::reason::Reason;
use crate::round::FirstRoundTracker;
use crate::scheduler::{Key, ProbeQueue, jitter, spread};
use crate::shared::{Command, Shared};

#[derive(Debug)]
pub(crate) struct PoolRuntime {
    index: usize,
    pub(crate) name: Arc<str>,
    cfg: PoolConfig,
    probe: CompiledProbe,
    capacity: CapacityTracker,
    /// Every target ever added; removed ones stay as tombstones (`live`
    /// false) so the keys of the others never move.
    pub(crate) targets: Vec<TargetRuntime>,
}

impl PoolRuntime {
    /// The runtime of pool `index`, its counters added to `counters`.
    pub(crate) fn new(
        index: usize,
        cfg: PoolConfig,
        probe: CompiledProbe,
        now: Instant,
        counters: &mut Counters,
    ) -> Self {
        let name: Arc<str> = Arc::from(cfg.name.as_str());
        let mut pool = Self {
            index,
            name,
            capacity: CapacityTracker::new(&cfg.capacity),
            probe,
            targets: Vec::with_capacity(cfg.targets.len()),
            cfg,
        };
        for addr in pool.cfg.targets.clone() {
            pool.push_target(addr, now, counters);
        }
        let status = pool.status();
        let _ = pool.capacity.observe(&status);
        pool
    }

    /// Adds a target (reusing its tombstone, if it had one) and returns its
    /// index.
    fn push_target(&mut self, addr: SocketAddr, now: Instant, counters: &mut Counters) -> usize {
        let check = match self.cfg.initial_states.get(&addr) {
            Some(&s) => self.cfg.check.clone().initial(s),
            None => self.cfg.check.clone(),
        };
        let ti = self
            .targets
            .iter()
            .position(|t| !t.live && t.addr == addr)
            .unwrap_or(self.targets.len());
        let counter = Arc::new(FailureCounter::new((self.index, ti), &self.cfg.outlier));
        counters.entry(addr).or_default().push(Arc::clone(&counter));
        let t = TargetRuntime {
            addr,
            machine: HealthMachine::new(check, now),
            multiplier: 0,
            counter,
            live: true,
            queued: false,
            in_first_round: false,
        };
        match self.targets.get_mut(ti) {
            Some(slot) => {
                // A probe of the old life may still be queued: keep its flag.
                let queued = slot.queued;
                *slot = t;
                slot.queued = queued;
            }
            None => self.targets.push(t),
        }
        ti
    }

    /// Every live target's current state, in target order (`None`: removed).
    pub(crate) fn events(&self) -> Vec<HealthEvent> {
        self.targets
            .iter()
            .map(|t| event(&self.name, t.addr, &t.machine))
            .collect()
    }

    pub(crate) fn status(&self) -> PoolStatus {
        let mut s = PoolStatus {
            pool: Arc::clone(&self.name),
            healthy: 0,
            total: 0,
            unchecked: 0,
            ejected: 0,
            low: self.capacity.is_low(),
            healthy_weight: 0,
            total_weight: 0,
        };
        for t in self.targets.iter().filter(|t| t.live) {
            s.total += 1;
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
pub(crate) struct TargetRuntime {
    addr: SocketAddr,
    machine: HealthMachine,
    multiplier: u32,
    counter: Arc<FailureCounter>,
    /// Still a target (not removed by `set_targets`).
    live: bool,
    /// A probe of this slot is scheduled or running.
    queued: bool,
    /// One of the targets the checker was spawned with, its first probe
    /// not finished yet.
    in_first_round: bool,
}

pub(crate) struct Driver {
    pub(crate) queue: ProbeQueue,
    pub(crate) jitter_percent: u8,
    pub(crate) pools: Vec<PoolRuntime>,
    pub(crate) probes: JoinSet<(Key, Probed)>,
    pub(crate) hooks: JoinSet<()>,
    pub(crate) cmd_rx: mpsc::UnboundedReceiver<Command>,
    pub(crate) events: broadcast::Sender<HealthEvent>,
    pub(crate) shared: Arc<Shared>,
    pub(crate) rng: SmallRng,
    pub(crate) observer: Option<ProbeObserver>,
    /// The outlier detector's counters (replaced when targets change).
    pub(crate) counters: Arc<ArcSwap<Counters>>,
    /// The first round of probes.
    pub(crate) first_round: FirstRoundTracker,
}

/// A probe's result, its start and its duration.
pub(crate) type Probed = (Result<(), Reason>, SystemTime, Duration);

pub(crate) fn now() -> Instant {
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
    pub(crate) async fn run(mut self) {
        let start = now();
        // Every target's first probe at once (within the concurrency
        // bound): a starting node learns every server within one probe
        // timeout. The second probe is spread (see `on_result`).
        for (pi, p) in self.pools.iter_mut().enumerate() {
            for (ti, t) in p.targets.iter_mut().enumerate() {
                t.machine.delay_next_probe(start);
                t.queued = true;
                t.in_first_round = true;
                self.queue.schedule((pi, ti), start);
            }
        }
        if self.first_round.is_empty() {
            self.first_round.finish(start, 0, 0);
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
                    Some(Command::SetTargets { pool, targets }) => self.set_targets(pool, targets),
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
        if !t.live {
            // Removed while its probe was scheduled: it leaves the queue.
            t.queued = false;
            return self.queue.finish();
        }
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
        if !t.live {
            // Removed while probed: the result is of no one.
            t.queued = false;
            return;
        }
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
        let first = !t.machine.has_result();
        let ends_round = std::mem::take(&mut t.in_first_round);
        let transition = t.machine.on_probe_result(now, result);
        let next = if first {
            // First probes all start together: spread the second ones over
            // the interval so that targets never probe in lockstep.
            let at = spread(&mut self.rng, now, t.machine.interval());
            t.machine.delay_next_probe(at);
            at
        } else {
            jitter(
                &mut self.rng,
                t.machine.poll_timeout(),
                t.machine.interval(),
                self.jitter_percent,
            )
            .max(now)
        };
        self.queue.schedule(key, next);
        if let Some(tr) = transition {
            self.publish(key, tr);
        }
        if ends_round {
            self.first_round_step(now);
        }
    }

    /// One target of the first round is done; ends the round with the
    /// count of targets up and down when it was the last.
    fn first_round_step(&mut self, now: Instant) {
        if !self.first_round.done_one() {
            return;
        }
        let (mut up, mut down) = (0, 0);
        for t in self
            .pools
            .iter()
            .flat_map(|p| &p.targets)
            .filter(|t| t.live)
        {
            if t.machine.is_healthy() {
                up += 1;
            } else {
                down += 1;
            }
        }
        self.first_round.finish(now, up, down);
    }

    fn on_outlier(&mut self, key: Key, consecutive: u32) {
        let now = now();
        let Some(pool) = self.pools.get_mut(key.0) else {
            return;
        };
        let cfg = pool.cfg.outlier.clone();
        let live = pool.targets.iter().filter(|t| t.live).count();
        let cap = max_ejected(live, cfg.max_ejection_percent);
        let ejected = pool
            .targets
            .iter()
            .filter(|t| t.live && t.machine.state() == TargetState::Ejected)
            .count();
        let name = Arc::clone(&pool.name);
        let Some(t) = pool.targets.get_mut(key.1) else {
            return;
        };
        t.counter.reset();
        if !t.live || t.machine.state() != TargetState::Up {
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
            *slot = Some(ev.clone());
        }
        self.publish_status(key.0);
        // After the pool status, so a subscriber seeing the event sees a
        // summary that includes it.
        let _ = self.events.send(ev);
    }

    /// Re-evaluates pool `pi`'s capacity (alerting on a change) and
    /// publishes its status.
    fn publish_status(&mut self, pi: usize) {
        let Some(pool) = self.pools.get_mut(pi) else {
            return;
        };
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
        if let Some(ps) = self.shared.pools.get(pi) {
            ps.status.send_replace(status);
        }
    }

    /// Makes `targets` the targets of pool `pi`: new ones are added and
    /// scheduled, removed ones become tombstones, the others keep their
    /// state; then the outlier counters and the pool's status follow.
    fn set_targets(&mut self, pi: usize, targets: Vec<(SocketAddr, u32)>) {
        let now = now();
        let Some(pool) = self.pools.get_mut(pi) else {
            return;
        };
        pool.cfg.targets = targets.iter().map(|(a, _)| *a).collect();
        pool.cfg.weights = targets.iter().copied().collect();
        let mut counters: Counters = (**self.counters.load()).clone();
        let mut added = Vec::new();
        let mut left_round = 0;
        for t in pool.targets.iter_mut().filter(|t| t.live) {
            if !pool.cfg.weights.contains_key(&t.addr) {
                t.live = false;
                if std::mem::take(&mut t.in_first_round) {
                    left_round += 1;
                }
                if let Some(v) = counters.get_mut(&t.addr) {
                    v.retain(|c| !Arc::ptr_eq(c, &t.counter));
                    if v.is_empty() {
                        counters.remove(&t.addr);
                    }
                }
                tracing::info!(pool = %pool.name, target = %t.addr, "target removed");
            }
        }
        for (addr, _) in &targets {
            if pool.targets.iter().any(|t| t.live && t.addr == *addr) {
                continue;
            }
            let ti = pool.push_target(*addr, now, &mut counters);
            added.push(ti);
            tracing::info!(pool = %pool.name, target = %addr, "target added");
        }
        self.counters.store(Arc::new(counters));
        let mut events = Vec::new();
        for &ti in &added {
            let Some(t) = pool.targets.get_mut(ti) else {
                continue;
            };
            events.push(event(&pool.name, t.addr, &t.machine));
            if !t.queued {
                // Probed at once, as at the start.
                t.machine.delay_next_probe(now);
                t.queued = true;
                self.queue.schedule((pi, ti), now);
            }
        }
        if let Some(ps) = self.shared.pools.get(pi) {
            let live: Vec<Option<HealthEvent>> = pool
                .targets
                .iter()
                .map(|t| t.live.then(|| event(&pool.name, t.addr, &t.machine)))
                .collect();
            if let Ok(mut snap) = ps.targets.lock() {
                *snap = live;
            }
            if let Ok(mut last) = ps.last_probes.lock() {
                last.resize(pool.targets.len(), None);
                for (slot, t) in last.iter_mut().zip(&pool.targets) {
                    if !t.live || slot.as_ref().is_some_and(|r| r.target != t.addr) {
                        *slot = None;
                    }
                }
            }
        }
        self.publish_status(pi);
        for ev in events {
            let _ = self.events.send(ev);
        }
        for _ in 0..left_round {
            self.first_round_step(now);
        }
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
