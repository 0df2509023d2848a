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

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;
    use std::path::Path;
    use std::time::Duration;

    use crate::config::{Source, load_str};

    /// Pool `app` with `servers`, HTTP checks every minute (only the
    /// first probe of each server runs within a test) timing out after 5 s.
    fn pools(servers: &[SocketAddr]) -> HashMap<String, Arc<Pool>> {
        let mut text = String::from("[[route]]\npool = \"app\"\n\n[[pool]]\nname = \"app\"\n");
        for s in servers {
            text += &format!("[[pool.server]]\naddress = \"{s}\"\n");
        }
        text += "[pool.health]\npath = \"/\"\ninterval = \"60s\"\ntimeout = \"5s\"\n";
        let v = load_str(Source::new(Path::new("t.toml"), text), Path::new(".")).unwrap();
        v.pools
            .into_iter()
            .map(|s| (s.name.clone(), Pool::new(s)))
            .collect()
    }

    fn state(h: &HealthHandle, a: SocketAddr) -> Option<TargetState> {
        h.targets().iter().find(|e| e.target == a).map(|e| e.state)
    }

    fn healthy(pools: &HashMap<String, Arc<Pool>>, a: SocketAddr) -> bool {
        pools["app"].server(a).is_some_and(|s| s.healthy)
    }

    /// A start trusts no server before its first check; a reload keeps
    /// every known server where it was (up, down, or still unchecked) and
    /// starts a new one down until its first check.
    #[tokio::test]
    async fn servers_start_down_and_a_reload_keeps_what_was_known() {
        let live = edge_testkit::backend::backend("live", Duration::ZERO).await;
        let live = SocketAddr::from(([127, 0, 0, 1], live.port));
        let dead = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        // Accepts connections (the kernel's backlog) and never answers:
        // its HTTP check runs until its timeout.
        let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let silent = silent.local_addr().unwrap();
        let first = pools(&[live, dead, silent]);
        let h1 = start(&first, None).unwrap();
        for a in [live, dead, silent] {
            assert_eq!(state(&h1, a), Some(TargetState::Unchecked), "{a}");
            assert!(!healthy(&first, a), "{a} trusted before its check");
        }
        let checked = tokio::time::timeout(Duration::from_secs(4), async {
            while state(&h1, live) == Some(TargetState::Unchecked)
                || state(&h1, dead) == Some(TargetState::Unchecked)
            {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        });
        checked.await.expect("first probes at once");
        assert_eq!(state(&h1, live), Some(TargetState::Up));
        assert_eq!(state(&h1, dead), Some(TargetState::Down));
        assert_eq!(state(&h1, silent), Some(TargetState::Unchecked));

        // The reload, with a new server.
        let added = SocketAddr::from(([127, 0, 0, 2], live.port()));
        let second = pools(&[live, dead, silent, added]);
        let h2 = start(&second, Some(&h1)).unwrap();
        // At once, before the new checker has run a probe.
        assert_eq!(state(&h2, live), Some(TargetState::Up));
        assert_eq!(state(&h2, dead), Some(TargetState::Down));
        assert_eq!(state(&h2, silent), Some(TargetState::Unchecked));
        assert_eq!(state(&h2, added), Some(TargetState::Unchecked));
        assert!(healthy(&second, live));
        assert!(!healthy(&second, dead) && !healthy(&second, silent) && !healthy(&second, added));
        h1.shutdown().await;
        h2.shutdown().await;
    }
}
