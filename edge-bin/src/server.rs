//! Listeners: the TLS port (PROXY header, ClientHello read by edge-sni,
//! then edge-sni's SNI router to passthrough or termination) and the
//! plain-HTTP port (ACME challenges, redirects). Each accepted connection
//! takes the current [`State`] once and keeps it to the end.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use edge_sni::TlsConnection;
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tower_service::Service as _;

use crate::accesslog::AccessRecord;
use crate::accesslog::conn::ConnLog;
use crate::config::IpNet;
use crate::conn::Guard;
use crate::http::body::EdgeBody;
use crate::http::{ConnInfo, respond};
use crate::inbound::Inbound;
use crate::metrics::HandshakeFailure;
use crate::sni::SniTarget;
use crate::state::{SharedState, State};
use crate::terminate::{Protocol, serve_with_idle_timeout};
use edge_balance::forwarding::{new_request_id, request_host};
use edge_sni::meter::Metered;

/// Binds a listening socket (SO_REUSEADDR, backlog 1024).
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let sock = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        None,
    )?;
    sock.set_reuse_address(true)?;
    // IP_FREEBIND: bind a VIP this node does not hold yet, so a VRRP
    // takeover needs no rebind.
    if addr.is_ipv6() {
        sock.set_only_v6(true)?;
        sock.set_freebind_v6(true)?;
    } else {
        sock.set_freebind_v4(true)?;
    }
    // IP_TRANSPARENT (with CAP_NET_ADMIN, which VRRP needs anyway): the
    // connections accepted here may still send from the VIP after a
    // handover removed it, so a stopping node delivers the responses it
    // drains instead of leaving its clients waiting.
    let transparent = if addr.is_ipv6() {
        sock.set_ip_transparent_v6(true)
    } else {
        sock.set_ip_transparent_v4(true)
    };
    if let Err(e) = transparent {
        tracing::debug!(address = %addr, error = %e, "IP_TRANSPARENT not set");
    }
    sock.set_nonblocking(true)?;
    sock.bind(&addr.into())?;
    sock.listen(1024)?;
    TcpListener::from_std(sock.into())
}

/// Accepts on `listener` forever; `tls` picks the TLS or the plain handler.
pub async fn accept_loop(
    listener: TcpListener,
    shared: SharedState,
    conns: Arc<Semaphore>,
    tls: bool,
) {
    let local = listener.local_addr().ok();
    loop {
        // Stop accepting while at max_connections (the kernel backlog queues).
        let Ok(permit) = conns.clone().acquire_owned().await else {
            return;
        };
        let (stream, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let state = shared.load_full();
        let local = stream.local_addr().ok().or(local).unwrap_or(peer);
        tokio::spawn(async move {
            let _permit = permit;
            if tls {
                tls_connection(state, stream, peer, local).await;
            } else {
                plain_connection(state, stream, peer).await;
            }
        });
    }
}

/// Counts the connection against its client (`[client_limits]`); `None`
/// when the client already holds its most connections (the connection is
/// then closed: before TLS there is no way to say 429).
fn client_slot(
    state: &State,
    client: SocketAddr,
) -> Option<Option<edge_balance::client_limit::ConnectionSlot>> {
    match state.client_limits.as_ref().map(|l| l.connect(client.ip())) {
        None => Some(None),
        Some(Ok(slot)) => Some(slot),
        Some(Err(_)) => {
            state.obs.metrics.client_refused(false);
            None
        }
    }
}

/// Reads a PROXY header when the listener expects one; refuses untrusted peers.
async fn client_address(
    stream: &mut TcpStream,
    peer: SocketAddr,
    enabled: bool,
    trusted: &[IpNet],
    timeout: Duration,
) -> Option<SocketAddr> {
    if !enabled {
        return Some(peer);
    }
    if !IpNet::any_contains(trusted, peer.ip()) {
        tracing::debug!(%peer, "PROXY protocol expected but peer is not trusted: closed");
        return None;
    }
    match tokio::time::timeout(timeout, edge_sni::proxy_protocol::read_header(stream)).await {
        Ok(Ok(addr)) => Some(addr.unwrap_or(peer)),
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "bad PROXY header: closed");
            None
        }
        Err(_) => None,
    }
}

async fn tls_connection(
    state: Arc<State>,
    mut stream: TcpStream,
    peer: SocketAddr,
    local: SocketAddr,
) {
    let l = &state.limits;
    let Some(client) = client_address(
        &mut stream,
        peer,
        state.https.proxy_protocol,
        &state.https.trusted_proxies,
        l.client_hello_timeout.0,
    )
    .await
    else {
        return;
    };
    let Some(_slot) = client_slot(&state, client) else {
        return;
    };
    let opts = edge_sni::ReadOptions::default().with_timeout(l.client_hello_timeout.0);
    let mut inbound = Inbound {
        stream,
        client,
        local,
        state: state.clone(),
    };
    // At stop, a connection that has not begun a request is closed: after
    // a VRRP handover its packets reach the other node anyway. The hello is
    // read through a borrow, so a refused one can still be answered.
    let hello = tokio::select! {
        r = edge_sni::read_client_hello(&mut inbound, &opts) => r,
        () = state.closing.stopped() => return,
    };
    let (info, prefix) = match hello {
        Ok((info, replay)) => (info, replay.into_parts().0),
        Err(e) => {
            let alert = match &e {
                edge_sni::ReadError::Malformed(_) => Some(edge_sni::alert::DECODE_ERROR),
                edge_sni::ReadError::TooLarge => Some(edge_sni::alert::ILLEGAL_PARAMETER),
                _ => None,
            };
            tracing::debug!(%client, error = %e.without_stream(), "no usable ClientHello: closed");
            state.obs.metrics.tls_failure(HandshakeFailure::ClientHello);
            if let Some(a) = alert {
                // A TLS client: tell it why (as OpenSSL-based servers do).
                use tokio::io::AsyncWriteExt as _;
                let _ = tokio::time::timeout(
                    Duration::from_secs(1),
                    inbound.stream.write_all(&edge_sni::fatal_alert(a)),
                )
                .await;
            }
            return;
        }
    };
    let stream = edge_sni::Replay::new(prefix, inbound);
    if info.sni_ip_literal {
        state.obs.metrics.sni_ip_literal();
    }
    // edge-sni's router: passthrough to a pool, or terminate here. Always
    // ready; routes never fail (terminating is the default).
    let _ = state.sni.clone().call(TlsConnection { info, stream }).await;
}

async fn plain_connection(state: Arc<State>, mut stream: TcpStream, peer: SocketAddr) {
    let l = &state.limits;
    let Some(client) = client_address(
        &mut stream,
        peer,
        state.http.proxy_protocol,
        &state.http.trusted_proxies,
        l.header_read_timeout.0,
    )
    .await
    else {
        return;
    };
    let Some(_slot) = client_slot(&state, client) else {
        return;
    };
    let conn = Arc::new(ConnInfo::new(client, None, None));
    let clog = ConnLog::new(&state.obs, false);
    let io = Metered::new(stream, (Guard::new(conn.clone(), false, 0), clog.meter()));
    let svc_state = state.clone();
    let svc_log = clog.clone();
    let svc = service_fn(move |req| {
        let state = svc_state.clone();
        svc_log.track(async move {
            Ok::<_, std::convert::Infallible>(plain_request(&state, client, req).await)
        })
    });
    serve_with_idle_timeout(Protocol::Http1, &state, io, svc, &conn, &clog).await;
}

/// Port 80: ACME HTTP-01 tokens (edge-acme's responder, a tower service),
/// everything else edge-acme's [`HttpsRedirect`](edge_acme::HttpsRedirect)
/// (a redirect to HTTPS, or 404). No proxying here.
async fn plain_request(
    state: &State,
    client: SocketAddr,
    req: Request<Incoming>,
) -> Response<EdgeBody> {
    let id = new_request_id();
    let start = Instant::now();
    let mut rec = AccessRecord {
        kind: "http",
        client: Some(client),
        method: Some(req.method().to_string()),
        path: Some(req.uri().path().to_string()),
        request_id: Some(id.clone()),
        ..Default::default()
    };
    rec.host = request_host(&req).ok();
    let resp = match &state.challenges {
        Some(responder) => call(responder.clone(), req).await,
        // Without [acme] storage no token is pending on this node.
        None if req.uri().path().starts_with(edge_acme::CHALLENGE_PREFIX) => {
            let resp = respond::error(StatusCode::NOT_FOUND, &id);
            return state.obs.finish_http(rec, start, resp);
        }
        None => call(crate::acme::https_redirect(&state.http), req).await,
    };
    // As edge's own answers: the request id, and a 400 closes.
    let mut resp = resp.map(crate::http::body::boxed);
    let close = resp.status() == StatusCode::BAD_REQUEST;
    let h = resp.headers_mut();
    if let Ok(v) = http::HeaderValue::from_str(&id) {
        h.insert(edge_balance::forwarding::X_REQUEST_ID, v);
    }
    if close {
        h.insert(
            http::header::CONNECTION,
            http::HeaderValue::from_static("close"),
        );
    }
    state.obs.finish_http(rec, start, resp)
}

/// Runs one request through an infallible tower service.
async fn call<S, B>(mut svc: S, req: Request<B>) -> S::Response
where
    S: tower_service::Service<Request<B>, Error = std::convert::Infallible>,
{
    let Ok(()) = std::future::poll_fn(|cx| svc.poll_ready(cx)).await;
    let Ok(resp) = svc.call(req).await;
    resp
}

type Served = Pin<Box<dyn Future<Output = Result<(), Infallible>> + Send>>;

impl tower_service::Service<TlsConnection<Inbound>> for SniTarget {
    type Response = ();
    type Error = Infallible;
    type Future = Served;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, conn: TlsConnection<Inbound>) -> Served {
        match self {
            SniTarget::Passthrough {
                pool,
                proxy_protocol,
            } => {
                let (pool, pp) = (pool.clone(), *proxy_protocol);
                Box::pin(async move {
                    crate::passthrough::relay(conn, &pool, pp).await;
                    Ok(())
                })
            }
            SniTarget::Terminate => Box::pin(async move {
                crate::terminate::terminate(conn).await;
                Ok(())
            }),
        }
    }
}
