//! The set of listening sockets, changed in place by a reload: an address
//! that stays keeps its socket (never rebound, so no connection is refused
//! and the kernel's accept queue is kept), a new one is bound before the
//! new config is switched in, a removed one stops accepting while its
//! connections finish.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

use crate::state::SharedState;

/// What a listener serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// `[https] listen`: SNI passthrough and TLS termination.
    Https,
    /// `[http] listen`: ACME challenges and redirects.
    Http,
    /// `[https] listen` over UDP: HTTP/3 (`[https] http3`).
    Http3,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Https => "https",
            Kind::Http => "http",
            Kind::Http3 => "http3",
        }
    }
}

#[derive(Debug)]
struct Entry {
    kind: Kind,
    /// The address the socket is bound to (differs from the key for port 0).
    bound: SocketAddr,
    /// A duplicate of the socket's descriptor, so the socket outlives its
    /// accept loop when only its kind changes.
    socket: std::net::TcpListener,
    task: JoinHandle<()>,
}

/// The running listeners, by configured address.
#[derive(Debug)]
pub struct Listeners {
    shared: SharedState,
    conns: Arc<Semaphore>,
    active: HashMap<SocketAddr, Entry>,
    /// HTTP/3 on the HTTPS addresses, when `[https] http3` is on.
    quic: crate::http3::Endpoints,
}

/// Sockets bound for a config that is not switched in yet
/// ([`Listeners::prepare`]); [`Listeners::commit`] starts them.
#[derive(Debug, Default)]
pub struct Prepared {
    new: Vec<(SocketAddr, Kind, std::net::TcpListener)>,
    wanted: HashMap<SocketAddr, Kind>,
}

/// What [`Listeners::commit`] changed, one line per listener.
pub type Changes = Vec<String>;

impl Listeners {
    /// No listeners yet; connections take their state from `shared` and a
    /// permit from `conns`.
    pub fn new(shared: SharedState, conns: Arc<Semaphore>) -> Self {
        Self {
            quic: crate::http3::Endpoints::new(shared.clone(), conns.clone()),
            shared,
            conns,
            active: HashMap::new(),
        }
    }

    /// Binds the addresses of `https` and `http` that are not bound yet.
    /// Nothing changes for the running listeners; on an error the sockets
    /// bound so far are closed again.
    pub fn prepare(&self, https: &[SocketAddr], http: &[SocketAddr]) -> Result<Prepared, String> {
        let mut out = Prepared::default();
        for (addrs, kind) in [(https, Kind::Https), (http, Kind::Http)] {
            for a in addrs {
                out.wanted.insert(*a, kind);
                if self.active.contains_key(a) {
                    continue;
                }
                let l = crate::server::bind(*a)
                    .and_then(|l| l.into_std())
                    .map_err(|e| format!("cannot listen on {a}: {e}"))?;
                out.new.push((*a, kind, l));
            }
        }
        Ok(out)
    }

    /// Starts the prepared listeners, switches the kind of addresses that
    /// changed it (same socket), and closes the listeners no longer wanted
    /// (their connections go on). Call after the new state is stored.
    pub fn commit(&mut self, p: Prepared) -> Changes {
        let mut changes = Vec::new();
        let removed: Vec<SocketAddr> = self
            .active
            .keys()
            .filter(|a| !p.wanted.contains_key(a))
            .copied()
            .collect();
        for a in removed {
            if let Some(e) = self.active.remove(&a) {
                e.task.abort();
                tracing::info!(address = %e.bound, kind = e.kind.name(), "listener removed: no longer accepting");
                changes.push(format!("listener {} ({}) removed", e.bound, e.kind.name()));
            }
        }
        for (a, kind) in &p.wanted {
            let Some(e) = self.active.get_mut(a) else {
                continue;
            };
            if e.kind == *kind {
                continue;
            }
            e.task.abort();
            match e
                .socket
                .try_clone()
                .and_then(tokio::net::TcpListener::from_std)
            {
                Ok(l) => {
                    tracing::info!(address = %e.bound, from = e.kind.name(), to = kind.name(), "listener changed kind (same socket)");
                    changes.push(format!(
                        "listener {} changed from {} to {}",
                        e.bound,
                        e.kind.name(),
                        kind.name()
                    ));
                    e.kind = *kind;
                    e.task = spawn_accept(&self.shared, &self.conns, l, *kind);
                }
                Err(err) => {
                    tracing::error!(address = %e.bound, error = %err, "cannot reuse the listening socket");
                    changes.push(format!("listener {} lost: {err}", e.bound));
                }
            }
        }
        for (a, kind, socket) in p.new {
            match self.start(a, kind, socket) {
                Ok(bound) => changes.push(format!("listener {bound} ({}) added", kind.name())),
                Err(err) => {
                    tracing::error!(address = %a, error = %err, "cannot start a listener");
                    changes.push(format!("listener {a} not started: {err}"));
                }
            }
        }
        changes.extend(self.sync_quic());
        changes
    }

    /// Starts, updates or stops HTTP/3 on the HTTPS listeners' bound
    /// addresses by the current state's `[https] http3`.
    fn sync_quic(&mut self) -> Changes {
        let addrs: Vec<SocketAddr> = if self.shared.load().https.http3 {
            self.active
                .values()
                .filter(|e| e.kind == Kind::Https)
                .map(|e| e.bound)
                .collect()
        } else {
            Vec::new()
        };
        self.quic.sync(&addrs)
    }

    /// Binds and starts every address (the first config at start).
    pub fn start_all(&mut self, https: &[SocketAddr], http: &[SocketAddr]) -> Result<(), String> {
        let p = self.prepare(https, http)?;
        for (a, kind, socket) in p.new {
            self.start(a, kind, socket)
                .map_err(|e| format!("cannot listen on {a}: {e}"))?;
        }
        self.sync_quic();
        Ok(())
    }

    fn start(
        &mut self,
        addr: SocketAddr,
        kind: Kind,
        socket: std::net::TcpListener,
    ) -> std::io::Result<SocketAddr> {
        let dup = socket.try_clone()?;
        let l = tokio::net::TcpListener::from_std(socket)?;
        let bound = l.local_addr()?;
        tracing::info!(address = %bound, kind = kind.name(), "listening");
        let task = self.spawn(l, kind);
        self.active.insert(
            addr,
            Entry {
                kind,
                bound,
                socket: dup,
                task,
            },
        );
        Ok(bound)
    }

    fn spawn(&self, l: tokio::net::TcpListener, kind: Kind) -> JoinHandle<()> {
        spawn_accept(&self.shared, &self.conns, l, kind)
    }

    /// The bound addresses and their kind, sorted.
    pub fn bound(&self) -> Vec<(SocketAddr, Kind)> {
        let mut v: Vec<_> = self.active.values().map(|e| (e.bound, e.kind)).collect();
        v.extend(self.quic.bound().into_iter().map(|a| (a, Kind::Http3)));
        v.sort();
        v
    }

    /// Closes every listening socket (stop): new connections are refused,
    /// accepted ones go on.
    pub fn close_all(&mut self) {
        for (_, e) in self.active.drain() {
            e.task.abort();
        }
        self.quic.close_all();
    }
}

fn spawn_accept(
    shared: &SharedState,
    conns: &Arc<Semaphore>,
    l: tokio::net::TcpListener,
    kind: Kind,
) -> JoinHandle<()> {
    tokio::spawn(crate::server::accept_loop(
        l,
        shared.clone(),
        conns.clone(),
        kind == Kind::Https,
    ))
}

impl Drop for Listeners {
    fn drop(&mut self) {
        self.close_all();
    }
}
