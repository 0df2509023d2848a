//! Wires pools to `edge-health`: one checker for every pool (the configured
//! probe, or a TCP connect probe when a pool has no `[pool.health]`), its
//! events applied to the pools' endpoint sets, and its outlier detector fed
//! by live traffic.

use std::collections::HashMap;
use std::sync::{Arc, Weak};

use edge_health::{
    CheckConfig, HealthChecker, HealthHandle, HttpProbe, InitialState, OutlierConfig, PoolConfig,
    Probe, SchedulerConfig,
};

use crate::config::{HealthKind, PoolSettings};
use crate::pool::Pool;

/// The edge-health settings of one pool.
pub fn pool_config(p: &PoolSettings) -> PoolConfig {
    let targets = p.servers.iter().map(|(a, _)| *a);
    let mut check = CheckConfig::default().initial(InitialState::AssumedUp);
    let mut probe = Probe::Tcp;
    if let Some(h) = &p.health {
        check = check
            .inter(h.interval)
            .timeout(h.timeout)
            .rise(h.rise)
            .fall(h.fall);
        if h.kind == HealthKind::Http {
            let mut hp = HttpProbe::get(h.path.clone());
            if let Some(host) = &h.host {
                hp = hp.host(host.clone());
            }
            probe = Probe::Http(hp);
        }
    }
    let outlier = OutlierConfig {
        enabled: p.outlier_consecutive_failures > 0,
        consecutive_failures: p.outlier_consecutive_failures.max(1),
        base_ejection_time: p.outlier_ejection_time,
        max_ejection_time: p.outlier_ejection_time.saturating_mul(10),
        max_ejection_percent: p.outlier_max_ejection_percent,
    };
    PoolConfig::new(p.name.clone(), targets)
        .probe(probe)
        .check(check)
        .outlier(outlier)
}

/// Starts the checker for `pools`; health events update the pools until
/// the returned handle and the pools are dropped.
///
/// `previous` is the checker of the config this one replaces (a reload): a
/// server that stays in a pool of the same name starts in the state it had
/// there (up: `fall` failures take it out; down: `rise` passes bring it
/// back), so a reload moves no server in or out of rotation.
pub fn start(
    pools: &HashMap<String, Arc<Pool>>,
    previous: Option<&HealthHandle>,
) -> Result<HealthHandle, edge_health::ConfigError> {
    let before = previous.map(HealthHandle::targets).unwrap_or_default();
    let known: HashMap<(&str, std::net::SocketAddr), bool> = before
        .iter()
        .map(|e| ((&*e.pool, e.target), e.healthy))
        .collect();
    let mut checker = HealthChecker::new(SchedulerConfig::default())?;
    for p in pools.values() {
        let mut cfg = pool_config(&p.settings);
        for (addr, _) in &p.settings.servers {
            if let Some(&up) = known.get(&(p.settings.name.as_str(), *addr)) {
                let s = if up {
                    InitialState::AssumedUp
                } else {
                    InitialState::AssumedDown
                };
                cfg = cfg.initial_state(*addr, s);
            }
        }
        checker.add_pool(cfg)?;
    }
    let handle = checker.spawn();
    // Apply the initial states now, before the pools serve a request.
    for e in handle.targets() {
        if let Some(pool) = pools.get(&*e.pool) {
            pool.set_healthy(e.target, e.healthy);
        }
    }
    for p in pools.values() {
        p.set_outlier_detector(handle.outlier_detector());
    }
    let weak: HashMap<String, Weak<Pool>> = pools
        .iter()
        .map(|(k, v)| (k.clone(), Arc::downgrade(v)))
        .collect();
    let mut events = handle.subscribe();
    tokio::spawn(async move {
        while let Some(e) = events.next().await {
            let Some(pool) = weak.get(&*e.pool).and_then(Weak::upgrade) else {
                if weak.values().all(|w| w.strong_count() == 0) {
                    return;
                }
                continue;
            };
            pool.set_healthy(e.target, e.healthy);
        }
    });
    Ok(handle)
}
