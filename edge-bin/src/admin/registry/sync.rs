//! Server states shared by the two nodes of a pair.
//!
//! Every change made on the admin socket carries a [`Stamp`]: the wall
//! clock in milliseconds and the node's name. A change from the peer is
//! applied when its stamp is newer than the one this node has for that
//! server (last writer wins, ties by node name), so two nodes that made
//! conflicting changes while apart end with the same state once they meet
//! again, whichever sends first. A local change is stamped at least one
//! millisecond after the stamp it replaces, so it always wins locally and,
//! the same rule applying, on the peer too.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use super::{Admin, AdminState, ServerAdmin, record};
use crate::admin::state_file::Entry;

/// When and on which node a server's state was last set.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Stamp {
    /// Unix milliseconds (wall clock).
    pub ms: u64,
    /// The node's name (`[peer] listen`); empty: a file of an older version.
    pub node: String,
}

impl Stamp {
    pub fn new(ms: u64, node: String) -> Self {
        Self { ms, node }
    }
}

/// Where this node learnt a server's state (`show servers`, column `from`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Origin {
    /// A command on this node's admin socket.
    #[default]
    Local,
    /// The other node of the pair.
    Peer,
    /// The state file, at start.
    StateFile,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Origin::Local => "local",
            Origin::Peer => "peer",
            Origin::StateFile => "state_file",
        })
    }
}

/// Called with each server state changed on this node's admin socket.
pub type ChangeHook = Arc<dyn Fn(Entry) + Send + Sync>;

#[derive(Default)]
pub(super) struct SyncState {
    node: Mutex<String>,
    hook: Mutex<Option<ChangeHook>>,
}

impl std::fmt::Debug for SyncState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyncState")
            .field("node", &*lock(&self.node))
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl SyncState {
    /// Stamps a change made here, after the stamp it replaces.
    pub(super) fn stamp_local(&self, s: &mut ServerAdmin) {
        s.stamp = Stamp::new(
            now_ms().max(s.stamp.ms.saturating_add(1)),
            lock(&self.node).clone(),
        );
        s.origin = Origin::Local;
    }

    /// Whether changes are shared with a peer.
    pub(super) fn sharing(&self) -> bool {
        lock(&self.hook).is_some()
    }

    pub(super) fn announce(&self, e: Entry) {
        let hook = lock(&self.hook).clone();
        if let Some(h) = hook {
            h(e);
        }
    }
}

impl Admin {
    /// Names this node in the stamps of its changes, and calls `hook` with
    /// each change made on its admin socket (to send it to the peer).
    pub fn share_changes(&self, node: String, hook: ChangeHook) {
        *lock(&self.sync.node) = node;
        *lock(&self.sync.hook) = Some(hook);
    }

    /// Every server state this node knows with its stamp (what the peer
    /// gets when the link comes up), ready ones included.
    pub fn records(&self) -> Vec<Entry> {
        let mut v: Vec<Entry> = self
            .lock()
            .servers
            .iter()
            .map(|((pool, server), s)| record(pool, *server, s))
            .collect();
        v.sort_by(|a, b| (&a.pool, a.server).cmp(&(&b.pool, b.server)));
        v
    }

    /// Applies a server state from the peer when it is newer than ours;
    /// whether it was.
    pub fn apply_peer(&self, e: &Entry) -> bool {
        let Some(state) = AdminState::parse(&e.state) else {
            tracing::warn!(pool = %e.pool, server = %e.server, state = %e.state, "peer: unknown server state, ignored");
            return false;
        };
        let stamp = Stamp::new(e.stamp_ms, e.node.clone());
        let key = (e.pool.clone(), e.server);
        let mut reg = self.lock();
        if reg.servers.get(&key).is_some_and(|s| s.stamp >= stamp) {
            return false;
        }
        let weight = e.weight.zip(e.configured_weight).map(|(w, c)| (c, w));
        for p in reg.live(&e.pool) {
            apply_to_pool(&p, e.server, state, weight);
        }
        let s = ServerAdmin {
            state,
            weight,
            stamp,
            origin: Origin::Peer,
        };
        reg.servers.insert(key, s);
        drop(reg);
        tracing::info!(pool = %e.pool, server = %e.server, state = %state, weight = ?e.weight, node = %e.node, "peer: server state applied");
        self.persist();
        true
    }

    /// Where this node learnt a server's state; `None`: never set.
    pub fn origin_of(&self, pool: &str, addr: SocketAddr) -> Option<Origin> {
        self.lock()
            .servers
            .get(&(pool.to_string(), addr))
            .map(|s| s.origin)
    }
}

fn apply_to_pool(
    p: &crate::pool::Pool,
    addr: SocketAddr,
    state: AdminState,
    weight: Option<(u32, u32)>,
) {
    let Some(configured) = p.config_weight(addr) else {
        return;
    };
    p.set_draining(addr, state != AdminState::Ready);
    match weight {
        // As at a reload: a weight set for another configured weight is
        // not applied.
        Some((c, w)) if c == configured => p.set_weight(addr, w),
        _ => p.set_weight(addr, configured),
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(state: &str, ms: u64, node: &str) -> Entry {
        Entry {
            pool: "app".into(),
            server: "127.0.0.1:1".parse().unwrap(),
            state: state.into(),
            weight: None,
            configured_weight: None,
            stamp_ms: ms,
            node: node.into(),
        }
    }

    /// Two nodes that changed the same server while apart converge on the
    /// newest change, whichever order the records arrive in.
    #[test]
    fn the_last_writer_wins_on_both_nodes() {
        let (a, b) = (Admin::new("a.toml"), Admin::new("b.toml"));
        a.share_changes("a".into(), Arc::new(|_| {}));
        b.share_changes("b".into(), Arc::new(|_| {}));
        let addr = "127.0.0.1:1".parse().unwrap();
        a.set_state("app", addr, AdminState::Maint);
        std::thread::sleep(std::time::Duration::from_millis(3));
        b.set_state("app", addr, AdminState::Drain);
        let (ra, rb) = (a.records(), b.records());
        assert!(a.apply_peer(&rb[0]), "b's later drain wins on a");
        assert!(!b.apply_peer(&ra[0]), "a's older maint loses on b");
        assert_eq!(a.state_of("app", addr), AdminState::Drain);
        assert_eq!(b.state_of("app", addr), AdminState::Drain);
        assert_eq!(a.origin_of("app", addr), Some(Origin::Peer));
        assert_eq!(b.origin_of("app", addr), Some(Origin::Local));
        // Equal times: the node name decides, the same way on both.
        let (x, y) = (entry("ready", 5, "a"), entry("maint", 5, "b"));
        let c = Admin::new("c.toml");
        assert!(c.apply_peer(&x) && c.apply_peer(&y));
        assert!(!c.apply_peer(&x));
        assert_eq!(c.state_of("app", addr), AdminState::Maint);
        // A local change after a peer's with a clock behind still wins.
        let d = Admin::new("d.toml");
        assert!(d.apply_peer(&entry("maint", u64::MAX - 10, "z")));
        d.set_state("app", addr, AdminState::Ready);
        assert_eq!(d.records()[0].stamp_ms, u64::MAX - 9);
        assert!(!d.apply_peer(&entry("bogus", u64::MAX, "z")));
    }

    /// While shared, an `enable` stays in the state file with its stamp.
    #[test]
    fn a_shared_enable_is_kept_in_the_state_file() {
        let dir = std::env::temp_dir().join(format!("edge-sync-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("state.json");
        let a = Admin::new("a.toml");
        a.use_state_file(Some(path.clone()));
        let addr = "127.0.0.1:1".parse().unwrap();
        a.set_state("app", addr, AdminState::Drain);
        a.set_state("app", addr, AdminState::Ready);
        assert!(!std::fs::read_to_string(&path).unwrap().contains("ready"));
        a.share_changes("a".into(), Arc::new(|_| {}));
        a.set_state("app", addr, AdminState::Ready);
        let saved = std::fs::read_to_string(&path).unwrap();
        assert!(
            saved.contains("\"ready\"") && saved.contains("\"node\": \"a\""),
            "{saved}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
