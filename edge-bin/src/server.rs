//! Listeners: the TLS port (SNI read → passthrough or termination) and the
//! plain-HTTP port (ACME challenges, redirects). Each accepted connection
//! takes the current [`State`] once and keeps it to the end.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use crate::accesslog::AccessRecord;
use crate::accesslog::conn::{ConnLog, Metered};
use crate::config::{IpNet, Limits, ProxyProtocolOut};
use crate::h1guard::Guard;
use crate::http::body::EdgeBody;
use crate::http::headers::{new_request_id, request_host};
use crate::http::{ConnInfo, respond};
use crate::metrics::HandshakeFailure;
use crate::state::{SharedState, State};
use edge_health::Outcome;

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

/// The protocol of a terminated connection, known before the first byte:
/// ALPN on TLS, HTTP/1 on the plain port. (hyper-util's `auto` builder
/// would sniff the first bytes instead, with no timeout: a silent client
/// was held until `idle_timeout`, not `header_read_timeout`.)
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Protocol {
    Http1,
    Http2,
}

/// A hyper server connection that can be asked to close gracefully.
trait Graceful: Future<Output = hyper::Result<()>> {
    fn close_gracefully(self: Pin<&mut Self>);
}

impl<I, S> Graceful for http1::UpgradeableConnection<I, S>
where
    S: hyper::service::HttpService<Incoming, ResBody = EdgeBody>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    fn close_gracefully(self: Pin<&mut Self>) {
        self.graceful_shutdown();
    }
}

impl<I, S> Graceful for http2::Connection<I, S, TokioExecutor>
where
    S: hyper::service::HttpService<Incoming, ResBody = EdgeBody>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    S::Future: Send + 'static,
    I: hyper::rt::Read + hyper::rt::Write + Unpin,
{
    fn close_gracefully(self: Pin<&mut Self>) {
        self.graceful_shutdown();
    }
}

/// HTTP/1 server settings every terminated connection uses.
fn http1_builder(l: &Limits) -> http1::Builder {
    let mut b = http1::Builder::new();
    b.timer(TokioTimer::new())
        .header_read_timeout(l.header_read_timeout.0)
        .max_header_size(l.max_header_bytes)
        .max_buf_size(l.max_header_bytes.max(8192))
        .max_headers(l.max_headers)
        .keep_alive(true);
    b
}

/// HTTP/2 server settings every terminated connection uses.
fn http2_builder(l: &Limits) -> http2::Builder<TokioExecutor> {
    let mut b = http2::Builder::new(TokioExecutor::new());
    b.timer(TokioTimer::new())
        .max_concurrent_streams(l.h2_max_concurrent_streams)
        .max_header_list_size(l.h2_max_header_list_size)
        .max_pending_accept_reset_streams(l.h2_max_pending_accept_reset_streams)
        .max_local_error_reset_streams(l.h2_max_local_error_reset_streams)
        .keep_alive_interval(Some(l.idle_timeout.0))
        .keep_alive_timeout(Duration::from_secs(20));
    b
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
    match tokio::time::timeout(timeout, crate::proxy_protocol::read_header(stream)).await {
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
    let opts = edge_sni::ReadOptions::default().with_timeout(l.client_hello_timeout.0);
    // At stop, a connection that has not begun a request is closed: after
    // a VRRP handover its packets reach the other node anyway.
    let hello = tokio::select! {
        r = edge_sni::read_client_hello(stream, &opts) => r,
        () = state.closing.stopped() => return,
    };
    let (info, replay) = match hello {
        Ok(x) => x,
        Err(e) => {
            tracing::debug!(%client, error = %e.without_stream(), "no usable ClientHello: closed");
            state.obs.metrics.tls_failure(HandshakeFailure::ClientHello);
            return;
        }
    };
    let ja4: Arc<str> = info.ja4.as_str().into();
    if let Some(rule) = info.sni.as_deref().and_then(|s| state.passthrough_for(s)) {
        let (pool, pp) = (rule.pool.clone(), rule.proxy_protocol);
        passthrough(&state, replay, client, local, info.sni, ja4, &pool, pp).await;
        return;
    }
    let acceptor = tokio_rustls::TlsAcceptor::from(state.tls.clone());
    let accepted = tokio::select! {
        r = tokio::time::timeout(l.tls_handshake_timeout.0, acceptor.accept(replay)) => r,
        () = state.closing.stopped() => return,
    };
    let tls = match accepted {
        Ok(Ok(t)) => t,
        Ok(Err(e)) => {
            tracing::debug!(%client, sni = ?info.sni, error = %e, "TLS handshake failed");
            state
                .obs
                .metrics
                .tls_failure(HandshakeFailure::classify(&e));
            return;
        }
        Err(_) => {
            tracing::debug!(%client, "TLS handshake timed out");
            state.obs.metrics.tls_failure(HandshakeFailure::Timeout);
            return;
        }
    };
    state.obs.metrics.tls_handshake();
    let (_, session) = tls.get_ref();
    let h2 = session.alpn_protocol() == Some(b"h2");
    let version = match session.protocol_version() {
        Some(rustls::ProtocolVersion::TLSv1_3) => Some("TLSv1.3"),
        Some(rustls::ProtocolVersion::TLSv1_2) => Some("TLSv1.2"),
        _ => None,
    };
    let sni = session.server_name().map(str::to_string);
    let cipher = session
        .negotiated_cipher_suite()
        .and_then(|c| c.suite().as_str());
    let conn = Arc::new(ConnInfo::new(client, sni, version).with_tls_details(Some(ja4), cipher));
    let clog = ConnLog::new(&state.obs, h2);
    let guard = Guard::new(conn.clone(), !h2, l.max_header_bytes.max(8192));
    let io = Metered::new(tls, (guard, clog.meter()));
    let svc_state = state.clone();
    let svc_conn = conn.clone();
    let svc_log = clog.clone();
    let svc = service_fn(move |req| {
        svc_log.track(crate::http::serve(svc_state.clone(), svc_conn.clone(), req))
    });
    let protocol = if h2 { Protocol::Http2 } else { Protocol::Http1 };
    serve_with_idle_timeout(protocol, &state, io, svc, &conn, &clog).await;
}

/// Serves one connection; closes it gracefully after `idle_timeout` without
/// traffic and without a request in flight. An error about a request head
/// is logged.
async fn serve_with_idle_timeout<I, S>(
    protocol: Protocol,
    state: &State,
    io: I,
    svc: S,
    conn: &ConnInfo,
    clog: &ConnLog,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: hyper::service::Service<
            Request<Incoming>,
            Response = Response<EdgeBody>,
            Error = std::convert::Infallible,
        > + Send
        + 'static,
    S::Future: Send + 'static,
{
    let io = TokioIo::new(io);
    let (limits, idle, retired) = (&state.limits, state.limits.idle_timeout.0, &state.closing);
    match protocol {
        Protocol::Http1 => {
            let c = http1_builder(limits)
                .serve_connection(io, svc)
                .with_upgrades();
            drive(c, conn, idle, retired, clog).await;
        }
        Protocol::Http2 => {
            let c = http2_builder(limits).serve_connection(io, svc);
            drive(c, conn, idle, retired, clog).await;
        }
    }
}

async fn drive<C: Graceful>(
    c: C,
    conn: &ConnInfo,
    idle: Duration,
    retired: &crate::lifecycle::Closing,
    clog: &ConnLog,
) {
    tokio::pin!(c);
    let mut last = conn.smuggle.activity.load(Ordering::Relaxed);
    let mut tick = tokio::time::interval(idle.max(Duration::from_millis(100)));
    tick.tick().await;
    let mut closing = false;
    loop {
        tokio::select! {
            r = c.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(error = %e, "connection ended with an error");
                    clog.connection_error(&e, conn);
                }
                return;
            }
            _ = tick.tick(), if !closing => {
                let now = conn.smuggle.activity.load(Ordering::Relaxed);
                if now == last && conn.in_flight.load(Ordering::Relaxed) == 0 {
                    c.as_mut().close_gracefully();
                    closing = true;
                }
                last = now;
            }
            // A reload replaced this connection's config, or edge stops:
            // finish the request in flight, then close (h2: GOAWAY).
            () = crate::lifecycle::protocol_started(retired, &conn.smuggle.activity), if !closing => {
                c.as_mut().close_gracefully();
                closing = true;
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn passthrough(
    state: &State,
    client_io: edge_sni::Replay<TcpStream>,
    client: SocketAddr,
    local: SocketAddr,
    sni: Option<String>,
    ja4: Arc<str>,
    pool_name: &str,
    pp: ProxyProtocolOut,
) {
    let start = Instant::now();
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
        s.connections.fetch_add(1, Ordering::Relaxed);
    }
    let pool = &backend.pool;
    let mut exclude = Vec::new();
    let mut connected = None;
    pool.deposit();
    while let Some(picked) = pool.next_attempt(&mut rec.attempts, &exclude) {
        let addr = *picked.key();
        let Ok(mut guard) = pool.acquire(picked).await else {
            exclude.push(addr);
            continue;
        };
        let started = Instant::now();
        match tokio::time::timeout(pool.settings.connect_timeout, TcpStream::connect(addr)).await {
            Ok(Ok(s)) => {
                pool.record(addr, Outcome::Success);
                guard.success(started.elapsed());
                connected = Some((s, guard));
                break;
            }
            r => {
                tracing::debug!(server = %addr, "passthrough connect failed");
                let outcome = if r.is_err() {
                    Outcome::Timeout
                } else {
                    Outcome::ConnectFailure
                };
                pool.record(addr, outcome);
                guard.failure();
                exclude.push(addr);
            }
        }
    }
    let Some((upstream, guard)) = connected else {
        rec.duration = start.elapsed();
        rec.status = 503;
        if let Some(s) = stats {
            s.failed.fetch_add(1, Ordering::Relaxed);
        }
        state.obs.log(rec);
        return;
    };
    rec.backend = Some(guard.addr());
    let _ = upstream.set_nodelay(true);
    // The PROXY header and the ClientHello already read go out in one write,
    // then splice(2) relays the rest (crate::relay).
    let (hello, client_io) = client_io.into_parts();
    let mut prefix = Vec::new();
    if pp == ProxyProtocolOut::V2 {
        prefix = crate::proxy_protocol::encode_v2(client, local, sni.as_deref());
    }
    let header_len = prefix.len() as u64;
    prefix.extend_from_slice(&hello);
    let idle = state.limits.passthrough_idle_timeout.0;
    let relayed = crate::relay::relay(client_io, upstream, &prefix, idle).await;
    rec.bytes_in = relayed.client_to_server.saturating_sub(header_len);
    rec.bytes_out = relayed.server_to_client;
    drop(guard);
    rec.duration = start.elapsed();
    if let Some(s) = stats {
        s.bytes_in.fetch_add(rec.bytes_in, Ordering::Relaxed);
        s.bytes_out.fetch_add(rec.bytes_out, Ordering::Relaxed);
    }
    state.obs.log(rec);
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
        h.insert(crate::http::headers::X_REQUEST_ID, v);
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
