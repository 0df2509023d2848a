//! Wires pools to `edge-health`: one checker for every pool (the configured
//! probe, or a TCP connect probe when a pool has no `[pool.health]`), its
//! events applied to the pools' endpoint sets, its outlier detector fed
//! by live traffic, and each probe's duration counted per server.

use std::collections::HashMap;
use std::sync::{Arc, Weak};

use edge_health::{HealthChecker, HealthHandle, InitialState, SchedulerConfig, TargetState};

use crate::pool::Pool;

/// Starts the checker for `pools`; health events update the pools until
/// the returned handle and the pools are dropped.
///
/// `previous` is the checker of the config this one replaces (a reload): a
/// server that stays in a pool of the same name starts in the state it had
/// there (up: `fall` failures take it out; down or ejected: `rise` passes
/// bring it back; not checked yet: its first check decides), so a reload
/// moves no server in or out of rotation. A new server starts as its pool
/// says: down until its first check with `[pool.health]` (unless
/// `initial_state = "up"`), up without.
pub fn start(
    pools: &HashMap<String, Arc<Pool>>,
    previous: Option<&HealthHandle>,
) -> Result<HealthHandle, edge_health::ConfigError> {
    let before = previous.map(HealthHandle::targets).unwrap_or_default();
    let known: HashMap<(&str, std::net::SocketAddr), InitialState> = before
        .iter()
        .map(|e| ((&*e.pool, e.target), carried(e.state)))
        .collect();
    let mut checker = HealthChecker::new(SchedulerConfig::default())?;
    // Probe durations, by server (`edge_health_check_duration_seconds`),
    // servers found by DNS included.
    let by_name: HashMap<String, Weak<Pool>> = pools
        .iter()
        .map(|(k, v)| (k.clone(), Arc::downgrade(v)))
        .collect();
    checker.on_probe(move |r| {
        if let Some(s) = by_name
            .get(&*r.pool)
            .and_then(Weak::upgrade)
            .and_then(|p| p.server_stats(&r.target))
        {
            s.health_check(r.result.is_ok(), r.duration);
        }
    });
    for p in pools.values() {
        let mut cfg = p.settings.health_config();
        for (addr, _) in &p.settings.servers {
            if let Some(&s) = known.get(&(p.settings.name.as_str(), *addr)) {
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

/// The initial state in a new checker of a server that was in `state` in
/// the checker it replaces.
fn carried(state: TargetState) -> InitialState {
    match state {
        TargetState::Up => InitialState::AssumedUp,
        TargetState::Unchecked => InitialState::DownUntilFirstPass,
        _ => InitialState::AssumedDown,
    }
}
