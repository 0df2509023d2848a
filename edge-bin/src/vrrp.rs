//! Runs the `[[vrrp]]` instances (edge-vrrp) that hold the VIPs, lowers
//! their priority while a tracked pool is short of healthy servers, and
//! hands over cleanly (priority-0 advert, VIPs removed) at shutdown.
//!
//! A new instance starts held (edge-vrrp's `spawn_held`: no advert, no
//! VIP, no election) until the health checker's first round has ended, at
//! most its `startup_hold`: a node that starts (or restarts next to dead
//! servers) neither takes nor preempts the VIP before it knows which of
//! its servers are up.

use edge_health::{HealthHandle, PoolStatus};
use edge_vrrp::{Instance, InstanceHandle};
use tokio::sync::{mpsc, oneshot, watch};

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::VrrpSettings;
use crate::metrics::Metrics;

/// The running instances; [`Running::update`] applies a reloaded config,
/// [`Running::shutdown`] hands over each one.
#[derive(Debug)]
pub struct Running {
    instances: Vec<RunningInstance>,
    /// Where state changes are counted (process-wide, survives reloads).
    metrics: Arc<Metrics>,
}

/// One instance: the settings it runs with and its tracking task.
#[derive(Debug)]
struct RunningInstance {
    settings: VrrpSettings,
    /// The priority the instance was started with; a reloaded priority is
    /// applied as an adjustment on top of it.
    spawned_priority: u8,
    control: mpsc::UnboundedSender<Control>,
}

/// Messages to an instance's tracking task.
#[derive(Debug)]
enum Control {
    /// New tracking: pools to watch (from a new health checker), share,
    /// weight, and the configured priority's offset from the spawned one.
    Track(Tracking),
    /// Hand over and stop; reply when done.
    Stop(oneshot::Sender<()>),
}

#[derive(Debug)]
struct Tracking {
    tracked: Vec<watch::Receiver<PoolStatus>>,
    share: f64,
    weight: u8,
    offset: i32,
    /// The instance runs with `nopreempt` (see [`resign`]).
    nopreempt: bool,
    /// The checker whose first round releases a held instance.
    health: HealthHandle,
}

impl Tracking {
    fn new(s: &VrrpSettings, health: &HealthHandle, offset: i32) -> Self {
        Self {
            tracked: s
                .track_pools
                .iter()
                .filter_map(|p| health.watch_pool(p))
                .collect(),
            share: s.min_healthy_share,
            weight: s.weight,
            offset,
            nopreempt: is_nopreempt(&s.config),
            health: health.clone(),
        }
    }
}

/// The priority adjustment for the current status of the tracked pools.
pub fn adjustment(statuses: &[PoolStatus], min_healthy_share: f64, weight: u8) -> i32 {
    if statuses
        .iter()
        .any(|s| !s.has_healthy(0, min_healthy_share))
    {
        -i32::from(weight)
    } else {
        0
    }
}

/// Starts every instance on the current runtime.
pub async fn start(
    settings: &[VrrpSettings],
    health: &HealthHandle,
    metrics: &Arc<Metrics>,
) -> Result<Running, String> {
    let mut running = Running {
        instances: Vec::new(),
        metrics: metrics.clone(),
    };
    for s in settings {
        running.instances.push(spawn(s, health, metrics).await?);
    }
    Ok(running)
}

fn describe(s: &VrrpSettings) -> String {
    format!(
        "vrrp vrid {} on {}",
        s.config.vrid_value(),
        s.config.interface_name()
    )
}

async fn spawn(
    s: &VrrpSettings,
    health: &HealthHandle,
    metrics: &Arc<Metrics>,
) -> Result<RunningInstance, String> {
    let vrid = s.config.vrid_value();
    let interface = s.config.interface_name().to_owned();
    let handle = Instance::spawn_held(s.config.clone())
        .await
        .map_err(|e| format!("VRRP vrid {vrid} on {interface}: {e}"))?;
    let mut events = handle.events();
    metrics.vrrp_state(vrid, &interface, edge_vrrp::State::Initialize, false);
    let metrics = metrics.clone();
    tokio::spawn(async move {
        use tokio::sync::broadcast::error::RecvError;
        loop {
            match events.recv().await {
                // edge-vrrp's router logs each change ("VRRP state
                // change"); here it only moves the gauges.
                Ok(e) => metrics.vrrp_state(vrid, &interface, e.to, e.from != e.to),
                Err(RecvError::Lagged(n)) => {
                    tracing::warn!(vrid, missed = n, "VRRP state events missed")
                }
                Err(RecvError::Closed) => return,
            }
        }
    });
    let (control, rx) = mpsc::unbounded_channel();
    let tracking = Tracking::new(s, health, 0);
    tokio::spawn(track(vrid, handle, tracking, rx, s.startup_hold));
    Ok(RunningInstance {
        spawned_priority: s.priority,
        settings: s.clone(),
        control,
    })
}

/// Keeps a held instance out of elections until the first health check
/// round of `t`'s checker has ended, at most `limit`, following reloads
/// meanwhile. `Some` when asked to stop instead (with whom to tell).
async fn hold(
    vrid: u8,
    limit: Duration,
    t: &mut Tracking,
    control: &mut mpsc::UnboundedReceiver<Control>,
) -> Option<Option<oneshot::Sender<()>>> {
    let since = Instant::now();
    let until = since + limit;
    tracing::info!(vrid, startup_hold = ?limit, "VRRP instance held until the first health check round ends");
    loop {
        let health = t.health.clone();
        let round = tokio::time::timeout_at(until.into(), health.first_round());
        // Control first: a reload hands over the new checker before it
        // stops the old one, so the old one's end is never taken as done.
        tokio::select! {
            biased;
            msg = control.recv() => match msg {
                Some(Control::Track(new)) => *t = new,
                Some(Control::Stop(done)) => return Some(Some(done)),
                None => return Some(None),
            },
            r = round => {
                let held = since.elapsed();
                match r {
                    Ok(Some(r)) => tracing::info!(
                        vrid, up = r.up, down = r.down, held_ms = millis(held),
                        "VRRP instance released: first health check round complete"
                    ),
                    Ok(None) => tracing::warn!(
                        vrid, held_ms = millis(held),
                        "VRRP instance released: the health checker stopped before its first round ended"
                    ),
                    Err(_) => tracing::warn!(
                        vrid, held_ms = millis(held),
                        "VRRP instance released: first health check round not complete within startup_hold"
                    ),
                }
                return None;
            }
        }
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Owns one instance: holds it for `startup_hold` at most (see [`hold`]),
/// then applies the health adjustment (plus the offset of a reloaded
/// priority) until asked to stop, then shuts the instance down and
/// reports back.
async fn track(
    vrid: u8,
    handle: InstanceHandle,
    mut t: Tracking,
    mut control: mpsc::UnboundedReceiver<Control>,
    startup_hold: Duration,
) {
    let done = match hold(vrid, startup_hold, &mut t, &mut control).await {
        Some(done) => done,
        None => {
            handle.start();
            follow(vrid, &handle, t, &mut control).await
        }
    };
    if let Err(e) = handle.shutdown().await {
        tracing::warn!("VRRP shutdown: {e}");
    }
    if let Some(done) = done {
        let _ = done.send(());
    }
}

/// Applies the health adjustment of the tracked pools until asked to stop
/// (`Some`: whom to tell) or the control channel closes (`None`).
async fn follow(
    vrid: u8,
    handle: &InstanceHandle,
    mut t: Tracking,
    control: &mut mpsc::UnboundedReceiver<Control>,
) -> Option<oneshot::Sender<()>> {
    let (mut last, mut last_health) = (0, 0);
    loop {
        let statuses: Vec<PoolStatus> = t.tracked.iter().map(|r| r.borrow().clone()).collect();
        let adj = adjustment(&statuses, t.share, t.weight);
        if adj != last_health {
            tracing::warn!(
                vrid,
                adjustment = adj,
                "tracked pool health changed the VRRP priority"
            );
        }
        if adj + t.offset != last {
            handle.set_priority_adjustment(adj + t.offset);
            last = adj + t.offset;
        }
        if adj != last_health {
            if adj != 0 && t.nopreempt {
                resign(handle);
            }
            last_health = adj;
        }
        let next = {
            let changed = async {
                if t.tracked.is_empty() {
                    std::future::pending::<()>().await;
                }
                let (res, i, _) = futures::future::select_all(
                    t.tracked.iter_mut().map(|r| Box::pin(r.changed())),
                )
                .await;
                if res.is_err() { Some(i) } else { None }
            };
            // Control first: a reload queues the new checker's watches
            // before it stops the old checker, so a closed old watch never
            // drops a tracked pool (and the priority) in between.
            tokio::select! {
                biased;
                msg = control.recv() => Err(msg),
                gone = changed => Ok(gone),
            }
        };
        match next {
            // The checker is gone (replaced by a reload): stop tracking that
            // pool until the new tracking arrives.
            Ok(Some(i)) => {
                t.tracked.swap_remove(i);
            }
            Ok(None) => {}
            Err(Some(Control::Track(new))) => t = new,
            Err(Some(Control::Stop(done))) => return Some(done),
            Err(None) => return None,
        }
    }
}

/// Whether the instance runs with `nopreempt` (edge-vrrp keeps the flag
/// to itself).
fn is_nopreempt(c: &edge_vrrp::Config) -> bool {
    let mut off = c.clone();
    off.preempt(false);
    off == *c
}

/// With `nopreempt` a backup never takes over from a master of lower
/// priority, so a lowered priority alone would leave the VIP on a node that
/// cannot serve. Such a master hands over itself (a brief fault: priority-0
/// advert, VIPs removed) and goes on as a backup with its lowered priority,
/// so it still takes the VIP when no other node holds it.
fn resign(handle: &InstanceHandle) {
    handle.set_fault(true);
    handle.set_fault(false);
}

async fn stop(i: RunningInstance) {
    let (tx, rx) = oneshot::channel();
    if i.control.send(Control::Stop(tx)).is_ok() {
        let _ = rx.await;
    }
}

impl Running {
    /// Whether no instance runs (no `[[vrrp]]` configured).
    pub fn is_empty(&self) -> bool {
        self.instances.is_empty()
    }

    /// Applies a reloaded `[[vrrp]]` list: a changed priority, weight,
    /// tracked pools or share goes to the running instance (no state
    /// change); an instance no longer listed hands over and stops; a new one
    /// starts; any other change (VIPs, advert interval, peers, ...)
    /// restarts that instance (it hands over first). Instances are matched
    /// by interface and VRID. `health` is the new config's checker.
    /// Returns one line per change.
    pub async fn update(
        &mut self,
        settings: &[VrrpSettings],
        health: &HealthHandle,
    ) -> Vec<String> {
        let mut changes = Vec::new();
        let key = |s: &VrrpSettings| (s.config.interface_name().to_owned(), s.config.vrid_value());
        let mut old: Vec<RunningInstance> = std::mem::take(&mut self.instances);
        for s in settings {
            let found = old.iter().position(|i| key(&i.settings) == key(s));
            let Some(pos) = found else {
                tracing::info!(instance = %describe(s), "VRRP instance added: starting");
                changes.push(self.spawn_into(s, health, "added").await);
                continue;
            };
            let mut running = old.swap_remove(pos);
            // Everything but the priority must match to keep the instance.
            let (mut new_cfg, mut old_cfg) = (s.config.clone(), running.settings.config.clone());
            new_cfg.priority(1);
            old_cfg.priority(1);
            if new_cfg != old_cfg {
                tracing::warn!(instance = %describe(s), "VRRP instance changed (addresses, timers or peers): restarting it, the peer holds the VIP meanwhile");
                stop(running).await;
                changes.push(
                    self.spawn_into(s, health, "restarted (settings changed)")
                        .await,
                );
                continue;
            }
            let offset = i32::from(s.priority) - i32::from(running.spawned_priority);
            let r = &running.settings;
            if r.priority != s.priority
                || r.weight != s.weight
                || r.track_pools != s.track_pools
                || r.min_healthy_share != s.min_healthy_share
            {
                tracing::info!(instance = %describe(s), priority = s.priority, weight = s.weight, "VRRP tracking updated in place");
                changes.push(format!(
                    "{} priority {} weight {} tracking {:?} (applied in place)",
                    describe(s),
                    s.priority,
                    s.weight,
                    s.track_pools
                ));
            }
            // Always hand over the new checker's watches: the old checker stops.
            let _ = running
                .control
                .send(Control::Track(Tracking::new(s, health, offset)));
            running.settings = s.clone();
            self.instances.push(running);
        }
        for i in old {
            tracing::info!(instance = %describe(&i.settings), "VRRP instance removed: handing over and stopping");
            changes.push(format!("{} removed", describe(&i.settings)));
            stop(i).await;
        }
        changes
    }

    /// Starts `s` and keeps it; the change line (`done` or why it failed).
    async fn spawn_into(&mut self, s: &VrrpSettings, health: &HealthHandle, done: &str) -> String {
        match spawn(s, health, &self.metrics).await {
            Ok(i) => {
                self.instances.push(i);
                format!("{} {done}", describe(s))
            }
            Err(e) => {
                tracing::error!("{e}");
                format!("{} failed to start: {e}", describe(s))
            }
        }
    }

    /// Hands over every instance (priority-0 advert, VIPs removed) and waits.
    pub async fn shutdown(self) {
        futures::future::join_all(self.instances.into_iter().map(stop)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(healthy: usize, total: usize) -> PoolStatus {
        PoolStatus::new("p", healthy, total)
    }

    #[test]
    fn priority_drops_while_any_tracked_pool_is_below_the_share() {
        assert_eq!(adjustment(&[status(2, 4), status(3, 3)], 0.5, 50), 0);
        assert_eq!(adjustment(&[status(1, 4), status(3, 3)], 0.5, 50), -50);
        assert_eq!(adjustment(&[status(0, 1)], 0.0, 50), 0);
        assert_eq!(adjustment(&[status(2, 3)], 1.0, 10), -10);
        assert_eq!(adjustment(&[], 0.5, 10), 0);
    }
}
