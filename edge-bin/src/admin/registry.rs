//! Operator state of servers (ready / drain / maint, weights set at
//! runtime), kept by pool name and server address outside the swapped
//! [`State`], so it survives a reload for the servers that stay; shared
//! with the other node of a pair (`sync`).

mod sync;

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Instant;

use crate::pool::Pool;
use crate::state::State;

pub use sync::{ChangeHook, Origin, Stamp};

/// What an operator made of a server.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum AdminState {
    /// In rotation while healthy.
    #[default]
    Ready,
    /// No new traffic; what uses it finishes (`drain`).
    Drain,
    /// Out for maintenance (`maint`); like drain, without waiting.
    Maint,
}

impl AdminState {
    /// The state named `s` (`ready`, `drain`, `maint`), as `Display` writes it.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "ready" => Some(Self::Ready),
            "drain" => Some(Self::Drain),
            "maint" => Some(Self::Maint),
            _ => None,
        }
    }
}

impl fmt::Display for AdminState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AdminState::Ready => "ready",
            AdminState::Drain => "drain",
            AdminState::Maint => "maint",
        })
    }
}

#[derive(Debug, Default, Clone)]
struct ServerAdmin {
    state: AdminState,
    /// `(configured weight when set, weight set)`.
    weight: Option<(u32, u32)>,
    /// When and where it was last changed (the last writer wins).
    stamp: Stamp,
    /// Where this node learnt it.
    origin: Origin,
}

#[derive(Debug, Default)]
struct Registry {
    servers: HashMap<(String, SocketAddr), ServerAdmin>,
    /// Every pool still alive by name: the current state's and those of
    /// older states that connections accepted before a reload still use.
    live: HashMap<String, Vec<Weak<Pool>>>,
}

impl Registry {
    fn live(&self, pool: &str) -> Vec<Arc<Pool>> {
        self.live
            .get(pool)
            .map(|v| v.iter().filter_map(Weak::upgrade).collect())
            .unwrap_or_default()
    }
}

/// A server's state as stored and sent to the peer.
fn record(pool: &str, server: SocketAddr, s: &ServerAdmin) -> super::state_file::Entry {
    super::state_file::Entry {
        pool: pool.to_string(),
        server,
        state: s.state.to_string(),
        weight: s.weight.map(|(_, w)| w),
        configured_weight: s.weight.map(|(c, _)| c),
        stamp_ms: s.stamp.ms,
        node: s.stamp.node.clone(),
    }
}

/// Use of one server summed over every live pool of that name.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Requests, tunnels and passthrough connections using it.
    pub active: usize,
    /// Requests waiting in its queue.
    pub queued: usize,
    /// Picked and not yet done (covers the moment before a slot is taken).
    pub picked: u64,
}

impl Usage {
    /// Nothing uses the server and nothing is on its way to it.
    pub fn is_idle(&self) -> bool {
        self.active == 0 && self.queued == 0 && self.picked == 0
    }
}

/// The admin side of a running edge: server states by pool and address,
/// the pools they apply to, and what `show info` reports. One per process,
/// shared as `Arc<Admin>`.
///
/// Every [`State`] that will serve traffic must be passed to
/// [`adopt`](Self::adopt) before it is stored in the
/// [`SharedState`](crate::state::SharedState): at start and on each reload.
#[derive(Debug)]
pub struct Admin {
    started: Instant,
    config_path: PathBuf,
    generation: AtomicU64,
    reg: Mutex<Registry>,
    /// `[admin] state_file`: where the servers' states are kept.
    state_file: Mutex<Option<PathBuf>>,
    /// This node's name in change stamps, and who hears of local changes.
    sync: sync::SyncState,
}

impl Admin {
    /// The admin state of a process started with `config_path`.
    pub fn new(config_path: impl Into<PathBuf>) -> Arc<Self> {
        let path: PathBuf = config_path.into();
        Arc::new(Self {
            started: Instant::now(),
            config_path: std::fs::canonicalize(&path).unwrap_or(path),
            generation: AtomicU64::new(0),
            reg: Mutex::default(),
            state_file: Mutex::default(),
            sync: sync::SyncState::default(),
        })
    }

    /// Keeps the servers' states in `path` from now on (`[admin]
    /// state_file`; `None`: not kept). The first time, at start, the states
    /// the file holds are taken over (the next [`adopt`](Self::adopt)
    /// applies them); an unreadable file is logged and left as it is until
    /// the next change rewrites it.
    pub fn use_state_file(&self, path: Option<PathBuf>) {
        let mut current = self
            .state_file
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if *current == path {
            return;
        }
        let first = self.generation() == 0;
        *current = path.clone();
        drop(current);
        let Some(path) = path else {
            return;
        };
        if !first {
            // A reload that names another file: write the states there.
            self.persist();
            return;
        }
        match super::state_file::load(&path) {
            Ok(None) => {}
            Ok(Some(entries)) => {
                let mut reg = self.lock();
                let mut n = 0;
                for e in entries {
                    let Some(state) = AdminState::parse(&e.state) else {
                        tracing::warn!(file = %path.display(), pool = %e.pool, server = %e.server, state = %e.state, "server state file: unknown state, ignored");
                        continue;
                    };
                    let weight = e.weight.zip(e.configured_weight).map(|(w, c)| (c, w));
                    let admin = ServerAdmin {
                        state,
                        weight,
                        stamp: Stamp::new(e.stamp_ms, e.node),
                        origin: Origin::StateFile,
                    };
                    reg.servers.insert((e.pool, e.server), admin);
                    n += 1;
                }
                tracing::info!(file = %path.display(), servers = n, "server states restored");
            }
            Err(e) => tracing::error!(
                file = %path.display(), error = %e,
                "server state file unreadable: starting without it (the next change rewrites it)"
            ),
        }
    }

    /// Writes every non-default server state to the state file, if any.
    fn persist(&self) {
        let Some(path) = self
            .state_file
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
        else {
            return;
        };
        // A server back to ready with its configured weight is left out,
        // unless the pair shares states: then its stamp must outlive a
        // restart, or an older drain from the peer would undo the enable.
        let keep_ready = self.sync.sharing();
        let mut entries: Vec<super::state_file::Entry> = self
            .lock()
            .servers
            .iter()
            .filter(|(_, s)| keep_ready || s.state != AdminState::Ready || s.weight.is_some())
            .map(|((pool, server), s)| record(pool, *server, s))
            .collect();
        entries.sort_by(|a, b| (&a.pool, a.server).cmp(&(&b.pool, b.server)));
        if let Err(e) = super::state_file::save(&path, entries) {
            tracing::error!(file = %path.display(), error = %e, "server state file not written");
        }
    }

    fn lock(&self) -> MutexGuard<'_, Registry> {
        // Every change is a plain field write: a panic cannot leave the
        // registry half-updated, so poison is harmless.
        self.reg
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Takes over a freshly built state: applies the drain/maint states
    /// and runtime weights of servers it still has, forgets servers that
    /// left the config, and counts one state generation. Call it before
    /// the state is stored (so it never serves a drained server) — at
    /// start and on every reload.
    ///
    /// A weight set at runtime is kept only while the server's configured
    /// weight is unchanged: a new weight in the file wins.
    pub fn adopt(&self, state: &State) {
        let mut reg = self.lock();
        reg.servers.retain(|(pool, addr), _| {
            state
                .backends
                .get(pool)
                .is_some_and(|b| b.pool.has_server(*addr))
        });
        for (name, backend) in &state.backends {
            let pool = &backend.pool;
            let live = reg.live.entry(name.clone()).or_default();
            live.retain(|w| w.strong_count() > 0);
            live.push(Arc::downgrade(pool));
            for &(addr, _) in &pool.members() {
                let Some(s) = reg.servers.get_mut(&(name.clone(), addr)) else {
                    continue;
                };
                if s.state != AdminState::Ready {
                    pool.set_draining(addr, true);
                }
                if let Some((configured, w)) = s.weight {
                    if pool.config_weight(addr) == Some(configured) {
                        pool.set_weight(addr, w);
                    } else {
                        tracing::info!(pool = %name, server = %addr, "the configured weight changed: the weight set at runtime is dropped");
                        s.weight = None;
                    }
                }
            }
        }
        reg.live.retain(|_, v| {
            v.retain(|w| w.strong_count() > 0);
            !v.is_empty()
        });
        self.generation.fetch_add(1, Ordering::Relaxed);
    }

    /// Sets a server's admin state in every live pool. Returns the
    /// previous state.
    pub fn set_state(&self, pool: &str, addr: SocketAddr, state: AdminState) -> AdminState {
        let mut reg = self.lock();
        for p in reg.live(pool) {
            p.set_draining(addr, state != AdminState::Ready);
        }
        let key = (pool.to_string(), addr);
        let s = reg.servers.entry(key.clone()).or_default();
        let old = std::mem::replace(&mut s.state, state);
        self.sync.stamp_local(s);
        let changed = record(&key.0, addr, s);
        drop(reg);
        self.persist();
        self.sync.announce(changed);
        old
    }

    /// Sets a server's weight in every live pool; `configured` is its
    /// weight in the current config (setting it back clears the override).
    pub fn set_weight(&self, pool: &str, addr: SocketAddr, weight: u32, configured: u32) {
        let mut reg = self.lock();
        for p in reg.live(pool) {
            p.set_weight(addr, weight);
        }
        let key = (pool.to_string(), addr);
        let s = reg.servers.entry(key.clone()).or_default();
        s.weight = (weight != configured).then_some((configured, weight));
        self.sync.stamp_local(s);
        let changed = record(&key.0, addr, s);
        drop(reg);
        self.persist();
        self.sync.announce(changed);
    }

    /// A server's admin state.
    pub fn state_of(&self, pool: &str, addr: SocketAddr) -> AdminState {
        self.lock()
            .servers
            .get(&(pool.to_string(), addr))
            .map(|s| s.state)
            .unwrap_or_default()
    }

    /// How much a server is used, over every live pool of that name.
    pub fn usage(&self, pool: &str, addr: SocketAddr) -> Usage {
        let pools = self.lock().live(pool);
        let mut u = Usage::default();
        for s in pools.iter().filter_map(|p| p.server(addr)) {
            u.active += s.active;
            u.queued += s.queued;
            u.picked += s.picked;
        }
        u
    }

    /// Time since start.
    pub fn uptime(&self) -> std::time::Duration {
        self.started.elapsed()
    }

    /// The config file the process runs.
    pub fn config_path(&self) -> &std::path::Path {
        &self.config_path
    }

    /// How many states have been adopted (1 after start, +1 per reload).
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(servers: &str) -> State {
        let text = format!(
            "[[route]]\nrespond = {{ status = 200 }}\n[https]\nlisten = []\n[http]\nlisten = []\n[[pool]]\nname = \"app\"\n{servers}"
        );
        let v = crate::config::load_str(
            crate::config::Source::new(std::path::Path::new("t.toml"), text),
            std::path::Path::new("."),
        )
        .unwrap();
        State::build(&v, &crate::telemetry::Telemetry::new()).unwrap()
    }

    fn server(port: u16, weight: u32) -> String {
        format!("[[pool.server]]\naddress = \"127.0.0.1:{port}\"\nweight = {weight}\n")
    }

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[tokio::test]
    async fn states_survive_a_new_state_for_servers_that_stay() {
        let admin = Admin::new("t.toml");
        let old = state(&[server(1, 1), server(2, 2), server(3, 3), server(4, 4)].concat());
        admin.adopt(&old);
        assert_eq!(admin.generation(), 1);
        admin.set_state("app", addr(1), AdminState::Drain);
        admin.set_state("app", addr(2), AdminState::Maint);
        admin.set_weight("app", addr(3), 9, 3);
        admin.set_weight("app", addr(4), 7, 4);
        let p = &old.backends["app"].pool;
        assert!(p.server(addr(1)).unwrap().draining);
        assert_eq!(p.available(), (2, 4));

        // Server 4's configured weight changes; server 2 leaves, then
        // comes back; server 5 is new.
        let new = state(&[server(1, 1), server(3, 3), server(4, 5), server(5, 1)].concat());
        admin.adopt(&new);
        assert_eq!(admin.generation(), 2);
        let p = &new.backends["app"].pool;
        let s = |port| p.server(addr(port)).unwrap();
        assert!(s(1).draining);
        assert_eq!(admin.state_of("app", addr(1)), AdminState::Drain);
        assert_eq!(s(3).weight, 9, "runtime weight kept");
        assert_eq!(s(4).weight, 5, "the config's new weight wins");
        assert!(!s(5).draining);
        assert_eq!(admin.state_of("app", addr(2)), AdminState::Ready);

        // Both live pools follow a change; once the old state is gone only
        // the new one is tracked.
        admin.set_state("app", addr(5), AdminState::Maint);
        assert!(s(5).draining);
        admin.set_state("app", addr(1), AdminState::Ready);
        assert!(!s(1).draining);
        assert!(!old.backends["app"].pool.server(addr(1)).unwrap().draining);
        drop(old);
        let back = state(&[server(1, 1), server(2, 2)].concat());
        admin.adopt(&back);
        assert!(!back.backends["app"].pool.server(addr(2)).unwrap().draining);
        assert_eq!(admin.lock().live["app"].len(), 2);
    }

    #[tokio::test]
    async fn usage_counts_leases_until_they_end() {
        let admin = Admin::new("t.toml");
        let st = state(&server(1, 1));
        admin.adopt(&st);
        let pool = st.backends["app"].pool.clone();
        assert!(admin.usage("app", addr(1)).is_idle());
        let picked = pool.pick(&[]).unwrap();
        assert_eq!(admin.usage("app", addr(1)).picked, 1);
        drop(picked);
        // Answered (as after a response head or a passthrough connect),
        // but the body or relay still runs: still in use.
        let answer = tower::service_fn(|(_, ()): (std::net::SocketAddr, ())| async {
            Ok::<_, std::convert::Infallible>(())
        });
        let served = pool
            .dispatcher()
            .dispatch(&answer, edge_balance::Connect, &edge_balance::AnySuccess)
            .await
            .unwrap();
        let u = admin.usage("app", addr(1));
        assert_eq!((u.active, u.picked), (1, 0));
        assert!(!u.is_idle());
        let lease = served.lease;
        drop(lease);
        assert!(admin.usage("app", addr(1)).is_idle());
        assert_eq!(
            pool.server(addr(1)).unwrap().requests,
            2,
            "the bare pick and the dispatch"
        );
    }
}
