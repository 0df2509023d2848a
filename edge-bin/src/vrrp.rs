//! Runs the `[[vrrp]]` instances (edge-vrrp) that hold the VIPs, lowers
//! their priority while a tracked pool is short of healthy servers, and
//! hands over cleanly (priority-0 advert, VIPs removed) at shutdown.

use edge_health::{HealthHandle, PoolStatus};
use edge_vrrp::{Instance, InstanceHandle};
use tokio::sync::{oneshot, watch};

use crate::config::VrrpSettings;

/// The running instances; [`Running::shutdown`] hands over each one.
#[derive(Debug, Default)]
pub struct Running {
    stops: Vec<oneshot::Sender<oneshot::Sender<()>>>,
}

/// Whether a pool is below the share of healthy servers its tracker wants.
pub fn below_share(s: &PoolStatus, min_healthy_share: f64) -> bool {
    // usize -> f64 is exact for any realistic pool size.
    (s.healthy as f64) < min_healthy_share * (s.total as f64)
}

/// The priority adjustment for the current status of the tracked pools.
pub fn adjustment(statuses: &[PoolStatus], min_healthy_share: f64, weight: u8) -> i32 {
    if statuses.iter().any(|s| below_share(s, min_healthy_share)) {
        -i32::from(weight)
    } else {
        0
    }
}

/// Starts every instance on the current runtime.
pub async fn start(settings: &[VrrpSettings], health: &HealthHandle) -> Result<Running, String> {
    let mut running = Running::default();
    for s in settings {
        let vrid = s.config.vrid_value();
        let interface = s.config.interface_name().to_owned();
        let handle = Instance::spawn(s.config.clone())
            .await
            .map_err(|e| format!("VRRP vrid {vrid} on {interface}: {e}"))?;
        let mut events = handle.events();
        tokio::spawn(async move {
            use tokio::sync::broadcast::error::RecvError;
            loop {
                match events.recv().await {
                    Ok(e) => tracing::info!(
                        vrid,
                        interface = %interface,
                        from = ?e.from,
                        to = ?e.to,
                        reason = ?e.reason,
                        priority = e.priority,
                        "VRRP state change"
                    ),
                    Err(RecvError::Lagged(n)) => {
                        tracing::warn!(vrid, missed = n, "VRRP state events missed")
                    }
                    Err(RecvError::Closed) => return,
                }
            }
        });
        let tracked: Vec<watch::Receiver<PoolStatus>> = s
            .track_pools
            .iter()
            .filter_map(|p| health.watch_pool(p))
            .collect();
        let (stop_tx, stop_rx) = oneshot::channel();
        tokio::spawn(track(
            vrid,
            handle,
            tracked,
            (s.min_healthy_share, s.weight, is_nopreempt(&s.config)),
            stop_rx,
        ));
        running.stops.push(stop_tx);
    }
    Ok(running)
}

/// Owns one instance: applies the health adjustment until asked to stop,
/// then shuts the instance down and reports back.
async fn track(
    vrid: u8,
    handle: InstanceHandle,
    mut tracked: Vec<watch::Receiver<PoolStatus>>,
    (share, weight, nopreempt): (f64, u8, bool),
    mut stop: oneshot::Receiver<oneshot::Sender<()>>,
) {
    let mut last = 0;
    let done = loop {
        let statuses: Vec<PoolStatus> = tracked.iter().map(|r| r.borrow().clone()).collect();
        let adj = adjustment(&statuses, share, weight);
        if adj != last {
            tracing::warn!(
                vrid,
                adjustment = adj,
                "tracked pool health changed the VRRP priority"
            );
            handle.set_priority_adjustment(adj);
            if adj != 0 && nopreempt {
                resign(&handle);
            }
            last = adj;
        }
        if tracked.is_empty() {
            break (&mut stop).await.ok();
        }
        let gone = {
            let changed =
                futures::future::select_all(tracked.iter_mut().map(|r| Box::pin(r.changed())));
            tokio::select! {
                (res, i, _) = changed => res.is_err().then_some(i),
                done = &mut stop => break done.ok(),
            }
        };
        if let Some(i) = gone {
            // The checker is gone: stop tracking that pool.
            tracked.swap_remove(i);
        }
    };
    if let Err(e) = handle.shutdown().await {
        tracing::warn!("VRRP shutdown: {e}");
    }
    if let Some(done) = done {
        let _ = done.send(());
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

impl Running {
    /// Hands over every instance (priority-0 advert, VIPs removed) and waits.
    pub async fn shutdown(self) {
        let waits = self.stops.into_iter().filter_map(|stop| {
            let (tx, rx) = oneshot::channel();
            stop.send(tx).ok().map(|()| rx)
        });
        futures::future::join_all(waits).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(healthy: usize, total: usize) -> PoolStatus {
        PoolStatus {
            pool: "p".into(),
            healthy,
            total,
            unchecked: 0,
            ejected: 0,
            low: false,
        }
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
