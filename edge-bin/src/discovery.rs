//! Servers found by DNS, kept live: for each pool with `NAME:PORT` or
//! `srv` servers, edge-balance's discovery [`watch`] re-resolves each name
//! on its TTL, and one task per pool applies every new member set to the
//! pool's endpoints ([`Pool::set_discovered`]) and to the health checker's
//! targets ([`HealthHandle::set_targets`]), without a reload. The tasks
//! end with the state that started them ([`Discovery`] aborts them on
//! drop).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use edge_balance::discovery::{DnsResolver, Members, Resolve, watch};
use edge_health::HealthHandle;
use tokio::sync::mpsc;
use tokio::task::AbortHandle;

use crate::config::{Discover, ResolverSettings};
use crate::metrics::Metrics;
use crate::pool::Pool;

/// The running discovery of one state's pools; stops them on drop.
#[derive(Debug, Default)]
pub struct Discovery {
    tasks: Vec<AbortHandle>,
}

impl Drop for Discovery {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// The resolver of `[resolvers]`: its name servers, or `/etc/resolv.conf`.
fn resolver(r: &ResolverSettings) -> Option<Arc<dyn Resolve>> {
    if !r.nameservers.is_empty() {
        return Some(Arc::new(DnsResolver::with_name_servers(
            &r.nameservers,
            r.timeout,
        )));
    }
    match DnsResolver::from_system(r.timeout) {
        Ok(d) => Some(Arc::new(d)),
        Err(e) => {
            tracing::error!(error = %e, "no DNS resolver ([resolvers] nameservers unset): servers given by name get no addresses");
            None
        }
    }
}

/// The union of each source's last members, a configured weight replacing
/// the records' (first source wins for an address listed twice).
fn union(sources: &[Discover], latest: &[Members]) -> Members {
    let mut out: Members = Vec::new();
    for (d, m) in sources.iter().zip(latest) {
        for &(addr, w) in m {
            if !out.iter().any(|(a, _)| *a == addr) {
                out.push((addr, d.weight.unwrap_or(w)));
            }
        }
    }
    out
}

/// Applies a member set to the pool and the health checker.
fn apply(pool: &Pool, health: &HealthHandle, discovered: &[(SocketAddr, u32)]) {
    let all = pool.set_discovered(discovered);
    health.set_targets(&pool.settings.name, all);
}

/// Starts discovery for every pool of `pools` with servers by name.
/// A pool that had the same names in `previous` (the state this one
/// replaces) starts with the servers found there, so a reload opens no
/// gap while the names are looked up again.
pub fn start(
    pools: &HashMap<String, Arc<Pool>>,
    health: &HealthHandle,
    settings: &ResolverSettings,
    previous: &HashMap<String, Arc<Pool>>,
    metrics: &Metrics,
) -> Discovery {
    let mut out = Discovery::default();
    if pools.values().all(|p| p.settings.discover.is_empty()) {
        return out;
    }
    let Some(resolver) = resolver(settings) else {
        return out;
    };
    for (name, pool) in pools {
        let sources = pool.settings.discover.clone();
        if sources.is_empty() {
            continue;
        }
        // Servers found before a reload, kept until every name answered.
        let mut seeded: Members = Vec::new();
        if let Some(prev) = previous.get(name)
            && prev.settings.discover == sources
        {
            let statics = &prev.settings.servers;
            seeded = prev
                .members()
                .into_iter()
                .filter(|m| !statics.contains(m))
                .collect();
            apply(pool, health, &seeded);
        }
        // Each source's watch forwards its changes, tagged, to the pool's
        // task.
        let (changes_tx, mut changes) = mpsc::unbounded_channel::<(usize, Members)>();
        for (i, d) in sources.iter().enumerate() {
            let (tx, mut rx) = tokio::sync::watch::channel(Vec::new());
            let stats = metrics.dns(name, &d.source.to_string());
            let task = tokio::spawn(watch(
                name.clone(),
                resolver.clone(),
                d.source.clone(),
                settings.discovery.clone(),
                tx,
                move |e| stats.lookup(e),
            ));
            out.tasks.push(task.abort_handle());
            let changes_tx = changes_tx.clone();
            let forward = tokio::spawn(async move {
                while rx.changed().await.is_ok() {
                    let m = rx.borrow_and_update().clone();
                    if changes_tx.send((i, m)).is_err() {
                        return;
                    }
                }
            });
            out.tasks.push(forward.abort_handle());
        }
        drop(changes_tx);
        let (pool, health) = (pool.clone(), health.clone());
        let task = tokio::spawn(async move {
            let mut latest: Vec<Option<Members>> = vec![None; sources.len()];
            while let Some((i, members)) = changes.recv().await {
                if let Some(slot) = latest.get_mut(i) {
                    *slot = Some(members);
                }
                let answered: Vec<Members> = latest
                    .iter()
                    .map(|m| m.clone().unwrap_or_default())
                    .collect();
                let mut found = union(&sources, &answered);
                if latest.iter().any(Option::is_none) {
                    for m in &seeded {
                        if !found.iter().any(|(a, _)| *a == m.0) {
                            found.push(*m);
                        }
                    }
                }
                apply(&pool, &health, &found);
            }
        });
        out.tasks.push(task.abort_handle());
    }
    out
}
