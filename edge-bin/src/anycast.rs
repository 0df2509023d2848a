//! Runs the `[[anycast]]` announcements: each service address is announced
//! (put on the routing daemon's dummy interface, see
//! [`edge_vrrp::anycast`]) while the node is healthy, and withdrawn when a
//! tracked pool falls short of healthy servers and first thing at stop.
//!
//! The addresses are made local on `lo` before the listeners bind and stay
//! local when withdrawn, so a withdrawal never breaks a socket: the flows
//! routers still send while they converge are served as before.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use edge_health::{HealthHandle, PoolStatus};
use edge_vrrp::anycast::Announcer;
use tokio::sync::{mpsc, oneshot, watch};

use crate::config::AnycastSettings;
use crate::metrics::Metrics;

/// After a failed netlink request, how long before it is tried again.
const RETRY: Duration = Duration::from_secs(1);

/// Whether every tracked pool has the servers up that the entry wants
/// (`min_healthy` servers and `min_healthy_share` of them). No tracked
/// pool: healthy.
pub fn healthy(statuses: &[PoolStatus], min_healthy: usize, min_healthy_share: f64) -> bool {
    statuses
        .iter()
        .all(|s| s.has_healthy(min_healthy, min_healthy_share))
}

/// Makes every address of `settings` local on `lo` (creating the dummy
/// interfaces on the way), so listeners can bind them. Run before the
/// listeners bind, at start and on reload.
pub async fn hold_locally(settings: &[AnycastSettings]) -> Result<Vec<Announcer>, String> {
    let mut out = Vec::new();
    for s in settings {
        let a = Announcer::new(&s.interface)
            .await
            .map_err(|e| format!("anycast interface {}: {e}", s.interface))?;
        for ip in &s.addresses {
            a.hold_locally(*ip)
                .await
                .map_err(|e| format!("anycast address {ip}: {e}"))?;
        }
        out.push(a);
    }
    Ok(out)
}

/// The running announcements.
#[derive(Debug)]
pub struct Running {
    entries: Vec<Entry>,
    metrics: Arc<Metrics>,
}

#[derive(Debug)]
struct Entry {
    settings: AnycastSettings,
    control: mpsc::UnboundedSender<Control>,
}

#[derive(Debug)]
enum Control {
    /// The watches of a new health checker (after a reload).
    Track(Vec<watch::Receiver<PoolStatus>>),
    /// Withdraw and stop; the reply says whether anything was announced.
    Withdraw(oneshot::Sender<bool>),
}

fn watches(s: &AnycastSettings, health: &HealthHandle) -> Vec<watch::Receiver<PoolStatus>> {
    s.track_pools
        .iter()
        .filter_map(|p| health.watch_pool(p))
        .collect()
}

/// Starts tracking for every entry; `announcers` are [`hold_locally`]'s,
/// in the same order. Call once the listeners are bound.
pub fn start(
    settings: &[AnycastSettings],
    announcers: Vec<Announcer>,
    health: &HealthHandle,
    metrics: &Arc<Metrics>,
) -> Running {
    let entries = settings
        .iter()
        .zip(announcers)
        .map(|(s, a)| spawn(s, a, health, metrics))
        .collect();
    Running {
        entries,
        metrics: metrics.clone(),
    }
}

fn spawn(
    s: &AnycastSettings,
    announcer: Announcer,
    health: &HealthHandle,
    metrics: &Arc<Metrics>,
) -> Entry {
    let (control, rx) = mpsc::unbounded_channel();
    let tracker = Tracker {
        announcer,
        settings: s.clone(),
        tracked: watches(s, health),
        metrics: metrics.clone(),
        announced: None,
    };
    tokio::spawn(tracker.run(rx));
    Entry {
        settings: s.clone(),
        control,
    }
}

/// Owns one entry's announcements.
struct Tracker {
    announcer: Announcer,
    settings: AnycastSettings,
    tracked: Vec<watch::Receiver<PoolStatus>>,
    metrics: Arc<Metrics>,
    /// What the dummy interface holds, as far as we know (`None` at start:
    /// a stale announcement of a previous run is withdrawn first).
    announced: Option<bool>,
}

impl Tracker {
    async fn run(mut self, mut control: mpsc::UnboundedReceiver<Control>) {
        // A watch closed by a reload: keep the state until the new ones come.
        let mut stale = false;
        let mut failed = false;
        let done = loop {
            if !stale {
                let statuses: Vec<PoolStatus> =
                    self.tracked.iter().map(|r| r.borrow().clone()).collect();
                let s = &self.settings;
                let want = healthy(&statuses, s.min_healthy, s.min_healthy_share);
                failed = !self.apply(want).await;
            }
            let changed = async {
                if self.tracked.is_empty() || stale {
                    std::future::pending::<()>().await;
                }
                let (res, _, _) = futures::future::select_all(
                    self.tracked.iter_mut().map(|r| Box::pin(r.changed())),
                )
                .await;
                res.is_err()
            };
            tokio::select! {
                biased;
                msg = control.recv() => match msg {
                    Some(Control::Track(new)) => {
                        self.tracked = new;
                        stale = false;
                    }
                    Some(Control::Withdraw(done)) => break Some(done),
                    None => break None,
                },
                closed = changed => stale |= closed,
                _ = tokio::time::sleep(RETRY), if failed => {}
            }
        };
        let was = self.announced != Some(false);
        // Best effort: on failure the log says so, the stop goes on.
        self.apply(false).await;
        if let Some(done) = done {
            let _ = done.send(was);
        }
    }

    /// Announces or withdraws every address; whether all went through.
    async fn apply(&mut self, announce: bool) -> bool {
        if self.announced == Some(announce) {
            return true;
        }
        let mut ok = true;
        for ip in &self.settings.addresses {
            let r = if announce {
                self.announcer.announce(*ip).await
            } else {
                self.announcer.withdraw(*ip).await
            };
            match r {
                Ok(()) => self.metrics.anycast_announced(*ip, announce),
                Err(e) => {
                    tracing::error!(address = %ip, interface = self.announcer.interface(), error = %e, "anycast: cannot {}", if announce { "announce" } else { "withdraw" });
                    ok = false;
                }
            }
        }
        if ok {
            let addresses = addresses(&self.settings.addresses);
            if announce {
                tracing::info!(%addresses, interface = self.announcer.interface(), "anycast: announced (healthy)");
            } else if self.announced.is_some() {
                tracing::warn!(%addresses, interface = self.announcer.interface(), "anycast: withdrawn");
            }
            self.announced = Some(announce);
        }
        ok
    }
}

fn addresses(list: &[IpAddr]) -> String {
    list.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

impl Running {
    /// Applies a reloaded `[[anycast]]` list: an entry whose addresses and
    /// interface are unchanged keeps running and tracks the new checker's
    /// pools with the new thresholds; any other entry is withdrawn, and new
    /// ones start. `announcers` are [`hold_locally`]'s for `settings`.
    pub async fn update(
        &mut self,
        settings: &[AnycastSettings],
        announcers: Vec<Announcer>,
        health: &HealthHandle,
    ) -> Vec<String> {
        let mut changes = Vec::new();
        let same = self.entries.len() == settings.len()
            && self.entries.iter().zip(settings).all(|(e, s)| {
                e.settings.addresses == s.addresses && e.settings.interface == s.interface
            });
        if same {
            for (e, s) in self.entries.iter_mut().zip(settings) {
                if e.settings != *s {
                    changes.push(format!(
                        "anycast {} tracking updated in place",
                        addresses(&s.addresses)
                    ));
                }
                let _ = e.control.send(Control::Track(watches(s, health)));
                e.settings = s.clone();
            }
            return changes;
        }
        for e in std::mem::take(&mut self.entries) {
            changes.push(format!(
                "anycast {} stopped",
                addresses(&e.settings.addresses)
            ));
            withdraw(e).await;
        }
        for (s, a) in settings.iter().zip(announcers) {
            changes.push(format!("anycast {} started", addresses(&s.addresses)));
            self.entries.push(spawn(s, a, health, &self.metrics));
        }
        changes
    }

    /// Withdraws every address (first thing at stop) and stops tracking;
    /// how long to wait then for the routers to stop sending new flows
    /// (the longest `withdraw_delay` of the entries that were announced).
    pub async fn withdraw_all(&mut self) -> Duration {
        let entries = std::mem::take(&mut self.entries);
        let delays = futures::future::join_all(entries.into_iter().map(|e| async move {
            let delay = e.settings.withdraw_delay;
            withdraw(e).await.then_some(delay)
        }))
        .await;
        delays.into_iter().flatten().max().unwrap_or_default()
    }
}

/// Withdraws one entry; whether it was announced.
async fn withdraw(e: Entry) -> bool {
    let (tx, rx) = oneshot::channel();
    if e.control.send(Control::Withdraw(tx)).is_err() {
        return false;
    }
    rx.await.unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(healthy: usize, total: usize) -> PoolStatus {
        PoolStatus::new("p", healthy, total)
    }

    #[test]
    fn announced_while_every_tracked_pool_has_enough_servers_up() {
        assert!(healthy(&[status(1, 2), status(3, 3)], 1, 0.0));
        assert!(!healthy(&[status(0, 2), status(3, 3)], 1, 0.0));
        assert!(!healthy(&[status(1, 4)], 1, 0.5));
        assert!(healthy(&[status(2, 4)], 1, 0.5));
        assert!(healthy(&[status(0, 0)], 0, 0.0));
        assert!(!healthy(&[status(1, 3)], 2, 0.0));
        assert!(healthy(&[], 1, 1.0));
    }
}
