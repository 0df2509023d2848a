//! The UDP side of the HTTPS listener: one QUIC endpoint per `[https]
//! listen` address while `http3` is on, kept across reloads (the socket is
//! never rebound; the new config's TLS and transport settings apply to new
//! connections), and the accept loop that protects the handshake.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use http::{Request, Response, StatusCode};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;

use super::server::{RequestBody, Settings, serve_connection};
use crate::http::ConnInfo;
use crate::http::body::EdgeBody;
use crate::http::respond;
use crate::metrics::HandshakeFailure;
use crate::state::{SharedState, State};

#[derive(Debug)]
struct Running {
    endpoint: quinn::Endpoint,
    task: JoinHandle<()>,
}

/// The running QUIC endpoints, by bound address.
#[derive(Debug)]
pub struct Endpoints {
    shared: SharedState,
    conns: Arc<Semaphore>,
    active: HashMap<SocketAddr, Running>,
}

/// Binds a UDP socket for QUIC (IP_FREEBIND, as the TCP listener: a VIP
/// this node does not hold yet).
fn bind(addr: SocketAddr) -> std::io::Result<std::net::UdpSocket> {
    let sock = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::DGRAM,
        None,
    )?;
    if addr.is_ipv6() {
        sock.set_only_v6(true)?;
        sock.set_freebind_v6(true)?;
    } else {
        sock.set_freebind_v4(true)?;
    }
    sock.bind(&addr.into())?;
    Ok(sock.into())
}

impl Endpoints {
    /// No endpoints yet; connections take their state from `shared` and a
    /// permit from `conns` (`max_connections`, shared with TCP).
    pub fn new(shared: SharedState, conns: Arc<Semaphore>) -> Self {
        Self {
            shared,
            conns,
            active: HashMap::new(),
        }
    }

    /// Makes the endpoints match `addrs` (the HTTPS listeners' bound
    /// addresses, none when `http3` is off) and the current state's
    /// settings. An endpoint removed stops accepting; its connections go
    /// on. Returns one line per change.
    pub fn sync(&mut self, addrs: &[SocketAddr]) -> Vec<String> {
        let mut changes = Vec::new();
        let state = self.shared.load_full();
        let config = if addrs.is_empty() {
            None
        } else {
            match super::server_config(&state) {
                Ok(c) => Some(c),
                Err(e) => {
                    tracing::error!(error = %e, "HTTP/3 not served");
                    changes.push(format!("HTTP/3 not served: {e}"));
                    None
                }
            }
        };
        let wanted: &[SocketAddr] = if config.is_some() { addrs } else { &[] };
        self.active.retain(|a, r| {
            let keep = wanted.contains(a);
            if !keep {
                r.endpoint.set_server_config(None);
                r.task.abort();
                tracing::info!(address = %a, "HTTP/3 listener removed: no longer accepting");
                changes.push(format!("listener {a} (http3) removed"));
            }
            keep
        });
        let Some(config) = config else {
            return changes;
        };
        for r in self.active.values() {
            r.endpoint.set_server_config(Some(config.clone()));
        }
        for a in wanted {
            if self.active.contains_key(a) {
                continue;
            }
            match self.start(*a, config.clone()) {
                Ok(()) => changes.push(format!("listener {a} (http3) added")),
                Err(e) => {
                    tracing::error!(address = %a, error = %e, "cannot start the HTTP/3 listener");
                    changes.push(format!("listener {a} (http3) not started: {e}"));
                }
            }
        }
        changes
    }

    fn start(&mut self, addr: SocketAddr, config: quinn::ServerConfig) -> std::io::Result<()> {
        let socket = bind(addr)?;
        let endpoint = quinn::Endpoint::new(
            quinn::EndpointConfig::default(),
            Some(config),
            socket,
            Arc::new(quinn::TokioRuntime),
        )?;
        tracing::info!(address = %addr, kind = "http3", "listening");
        let task = tokio::spawn(accept_loop(
            endpoint.clone(),
            self.shared.clone(),
            self.conns.clone(),
        ));
        self.active.insert(addr, Running { endpoint, task });
        Ok(())
    }

    /// The bound addresses, sorted.
    pub fn bound(&self) -> Vec<SocketAddr> {
        let mut v: Vec<_> = self.active.keys().copied().collect();
        v.sort();
        v
    }

    /// Stops accepting everywhere (stop); connections go on.
    pub fn close_all(&mut self) {
        self.sync(&[]);
    }
}

/// Counts a handshake in progress while alive.
struct Handshaking(Arc<AtomicUsize>);

impl Handshaking {
    fn new(n: &Arc<AtomicUsize>) -> Self {
        n.fetch_add(1, Ordering::Relaxed);
        Self(n.clone())
    }
}

impl Drop for Handshaking {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The QUIC settings of the state connections are accepted under, made
/// again when a reload replaces it.
#[derive(Default)]
struct ConfigCache {
    state: Option<Arc<State>>,
    config: Option<Arc<quinn::ServerConfig>>,
}

impl ConfigCache {
    fn get(&mut self, state: &Arc<State>) -> Option<Arc<quinn::ServerConfig>> {
        if !self.state.as_ref().is_some_and(|s| Arc::ptr_eq(s, state)) {
            self.state = Some(state.clone());
            self.config = super::server_config(state).ok().map(Arc::new);
        }
        self.config.clone()
    }
}

/// Accepts QUIC connections: refused at `max_connections` or over the
/// client's `[client_limits]`, sent a Retry (address validation) when
/// `http3_retry_above` handshakes are in progress, otherwise handshaken
/// within `tls_handshake_timeout` and served.
async fn accept_loop(endpoint: quinn::Endpoint, shared: SharedState, conns: Arc<Semaphore>) {
    let handshakes = Arc::new(AtomicUsize::new(0));
    let mut cache = ConfigCache::default();
    while let Some(incoming) = endpoint.accept().await {
        let state = shared.load_full();
        let Some(config) = cache.get(&state) else {
            incoming.refuse();
            continue;
        };
        let Ok(permit) = conns.clone().try_acquire_owned() else {
            incoming.refuse();
            continue;
        };
        if !incoming.remote_address_validated()
            && handshakes.load(Ordering::Relaxed) >= state.https.http3_retry_above
        {
            // Unvalidated and under load: the client proves it owns its
            // address before any handshake state is kept for it.
            tracing::debug!(client = %incoming.remote_address(), "QUIC Retry sent: address not validated");
            let _ = incoming.retry();
            continue;
        }
        let client = incoming.remote_address();
        let slot = match state.client_limits.as_ref().map(|l| l.connect(client.ip())) {
            None => None,
            Some(Ok(slot)) => slot,
            Some(Err(_)) => {
                state.obs.metrics.client_refused(false);
                incoming.refuse();
                continue;
            }
        };
        let connecting = match incoming.accept_with(config) {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!(%client, error = %e, "QUIC connection not accepted");
                continue;
            }
        };
        let hs = Handshaking::new(&handshakes);
        tokio::spawn(async move {
            let _slot = slot;
            connection(state, connecting, hs, permit).await;
        });
    }
}

/// Handshakes and serves one QUIC connection under `state`.
async fn connection(
    state: Arc<State>,
    connecting: quinn::Connecting,
    hs: Handshaking,
    _permit: OwnedSemaphorePermit,
) {
    let client = connecting.remote_address();
    let timeout = state.limits.tls_handshake_timeout.0;
    let done = tokio::select! {
        r = tokio::time::timeout(timeout, connecting) => r,
        () = state.closing.stopped() => return,
    };
    drop(hs);
    let conn = match done {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            tracing::debug!(%client, error = %e, "QUIC handshake failed");
            state.obs.metrics.tls_failure(HandshakeFailure::Protocol);
            return;
        }
        Err(_) => {
            tracing::debug!(%client, "QUIC handshake timed out");
            state.obs.metrics.tls_failure(HandshakeFailure::Timeout);
            return;
        }
    };
    state
        .obs
        .metrics
        .tls_handshake(crate::metrics::Handshake::quic());
    let sni = conn
        .handshake_data()
        .and_then(|d| d.downcast::<quinn::crypto::rustls::HandshakeData>().ok())
        .and_then(|d| d.server_name);
    let info = Arc::new(ConnInfo::new(client, sni, Some("TLSv1.3")));
    let settings = Settings {
        max_field_section_size: state.limits.max_header_bytes as u64,
        send_timeout: state.limits.idle_timeout.0,
    };
    let svc_state = state.clone();
    let svc = tower::service_fn(move |req: Request<RequestBody>| {
        serve(svc_state.clone(), info.clone(), req)
    });
    let closing = state.closing.clone();
    if let Err(e) =
        serve_connection(conn, svc, settings, async move { closing.closed().await }).await
    {
        tracing::debug!(%client, error = %e, "HTTP/3 connection ended");
    }
}

/// [`crate::http::serve`], but a Host or SNI under `[[client_auth]]` is
/// answered 421: client certificates are not requested over QUIC, so the
/// client retries over TCP, where they are.
async fn serve(
    state: Arc<State>,
    conn: Arc<ConnInfo>,
    req: Request<RequestBody>,
) -> Result<Response<EdgeBody>, Infallible> {
    let host = edge_balance::forwarding::request_host(&req).ok();
    let under_client_auth = [conn.sni.as_deref(), host.as_deref()]
        .into_iter()
        .flatten()
        .any(|name| state.client_auth_of(name).is_some());
    if under_client_auth {
        let id = edge_balance::forwarding::new_request_id();
        return Ok(respond::error(StatusCode::MISDIRECTED_REQUEST, &id));
    }
    crate::http::serve(state, conn, req).await
}
