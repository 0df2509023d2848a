//! SNI passthrough: the accepted connection is the request. The pool's
//! dispatcher (edge-balance) picks a server, takes a slot on it and
//! connects, retrying the connect on servers not yet tried; then the
//! ClientHello already read (after an optional PROXY v2 header) and the
//! rest of the connection are relayed ([`edge_sni::relay`]) while the lease
//! holds the slot.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use edge_balance::{Attempts, Classify, Dispatch, HashSource, Outcome};
use tokio::net::TcpStream;
use tower::ServiceExt as _;

use crate::accesslog::AccessRecord;
use crate::config::ProxyProtocolOut;
use crate::inbound::Inbound;
use edge_sni::TlsConnection;

/// Why a connect to a server failed.
#[derive(Debug, thiserror::Error)]
enum ConnectError {
    #[error("connect timed out")]
    Timeout,
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// A refused or unreachable server is a connect failure; a silent one a timeout.
#[derive(Debug, Clone, Copy)]
struct ByConnect;

impl Classify<TcpStream, ConnectError> for ByConnect {
    fn error(&self, e: &ConnectError) -> Outcome {
        match e {
            ConnectError::Timeout => Outcome::Timeout,
            ConnectError::Io(_) => Outcome::ConnectFailure,
        }
    }
}

/// A connection from a client to relay: as edge-balance's `Connect` (every
/// failed connect may be retried elsewhere), keyed by the client's address
/// for `hash_key = "source"` (a header or cookie key has nothing to read
/// here: such a pool hashes a random key for passthrough).
struct ConnectFrom(SocketAddr);

impl Attempts for ConnectFrom {
    type Attempt = ();

    fn next_attempt(&mut self) -> Option<()> {
        Some(())
    }

    fn may_retry(&self, _outcome: Outcome) -> bool {
        true
    }

    fn hash_key(&self, source: &HashSource) -> Option<u64> {
        matches!(source, HashSource::SourceIp).then(|| edge_balance::hash_ip(self.0.ip()))
    }
}

async fn connect(addr: SocketAddr, timeout: Duration) -> Result<TcpStream, ConnectError> {
    match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
        Ok(r) => Ok(r?),
        Err(_) => Err(ConnectError::Timeout),
    }
}

/// Relays one passthrough connection to a server of `pool_name` and logs it.
pub async fn relay(conn: TlsConnection<Inbound>, pool_name: &str, pp: ProxyProtocolOut) {
    let start = Instant::now();
    let TlsConnection { info, stream } = conn;
    let (hello, inbound) = stream.into_parts();
    let Inbound {
        stream: client_io,
        client,
        local,
        state,
    } = inbound;
    let sni = info.sni;
    let ja4: Arc<str> = info.ja4.as_str().into();
    let mut rec = AccessRecord {
        kind: "passthrough",
        client: Some(client),
        sni: sni.clone(),
        ja4: Some(ja4),
        route: Some(pool_name.to_string()),
        ..Default::default()
    };
    let Some(backend) = state.backends.get(pool_name) else {
        return;
    };
    let stats = state.obs.passthrough(pool_name);
    if let Some(s) = stats {
        s.connections.inc();
    }
    let pool = &backend.pool;
    let timeout = pool.settings.connect_timeout;
    let connector = tower::service_fn(move |(addr, ()): (SocketAddr, ())| connect(addr, timeout));
    let dispatch = Dispatch::new(pool.dispatcher().clone(), connector, ByConnect);
    let served = match dispatch.oneshot(ConnectFrom(client)).await {
        Ok(s) => s,
        Err(failed) => {
            tracing::debug!(pool = %pool_name, error = %failed, "passthrough connect failed");
            rec.attempts = failed.attempts;
            rec.duration = start.elapsed();
            rec.status = 503;
            if let Some(s) = stats {
                s.failed.inc();
            }
            state.obs.log(rec);
            return;
        }
    };
    rec.attempts = served.attempts;
    rec.backend = Some(*served.lease.key());
    let (upstream, lease) = (served.response, served.lease);
    let _ = upstream.set_nodelay(true);
    // The PROXY header and the ClientHello already read go out in one write,
    // then splice(2) relays the rest (edge_sni::relay).
    let mut prefix = Vec::new();
    if pp == ProxyProtocolOut::V2 {
        prefix = edge_sni::proxy_protocol::encode_v2(client, local, sni.as_deref());
    }
    let header_len = prefix.len() as u64;
    prefix.extend_from_slice(&hello);
    let idle = state.limits.passthrough_idle_timeout.0;
    let relayed = edge_sni::relay(client_io, upstream, &prefix, idle).await;
    rec.bytes_in = relayed.client_to_server.saturating_sub(header_len);
    rec.bytes_out = relayed.server_to_client;
    drop(lease);
    rec.duration = start.elapsed();
    if let Some(s) = stats {
        s.bytes_in.inc_by(rec.bytes_in);
        s.bytes_out.inc_by(rec.bytes_out);
    }
    state.obs.log(rec);
}
