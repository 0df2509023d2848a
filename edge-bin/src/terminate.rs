//! TLS termination and HTTP serving: the handshake on a connection the SNI
//! router kept here, then hyper's HTTP/1.1 or HTTP/2 server chosen by ALPN
//! (HTTP/1.1 on the plain port), with the idle timeout and the graceful
//! close at reload and stop.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use edge_sni::TlsConnection;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};

use crate::accesslog::conn::ConnLog;
use crate::config::Limits;
use crate::conn::Guard;
use crate::http::ConnInfo;
use crate::http::body::EdgeBody;
use crate::inbound::Inbound;
use crate::metrics::{Handshake, HandshakeFailure};
use crate::state::State;
use edge_sni::meter::Metered;

/// The protocol of a terminated connection, known before the first byte:
/// ALPN on TLS, HTTP/1 on the plain port. (hyper-util's `auto` builder
/// would sniff the first bytes instead, with no timeout: a silent client
/// was held until `idle_timeout`, not `header_read_timeout`.)
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
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
        // A client that shuts its sending half after the request still
        // gets the answer (as from nginx and HAProxy).
        .half_close(true)
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
        .max_local_error_reset_streams(l.h2_max_local_error_reset_streams);
    // No keep-alive PINGs: the client's acks were traffic, so an idle
    // client that answers PINGs was never idle and its connection lived
    // forever. A silent or dead peer is closed by the idle timeout anyway.
    b
}

/// Terminates TLS on a connection the SNI router kept here, then serves
/// HTTP/1.1 or HTTP/2 on it by ALPN.
pub async fn terminate(conn: TlsConnection<Inbound>) {
    let TlsConnection {
        info,
        stream: replay,
    } = conn;
    let inbound = replay.get_ref();
    let (state, client) = (inbound.state.clone(), inbound.client);
    let l = &state.limits;
    let ja4: Arc<str> = info.ja4.as_str().into();
    // The TLS settings of the SNI (its `[[client_auth]]`, if any).
    let acceptor = tokio_rustls::TlsAcceptor::from(state.tls_for(info.sni.as_deref()).clone());
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
    let (_, session) = tls.get_ref();
    state.obs.metrics.tls_handshake(Handshake::of(session));
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
    // Verified by rustls (`[[client_auth]]`): the leaf comes first.
    let client_cert = session
        .peer_certificates()
        .and_then(<[_]>::first)
        .map(|leaf| Arc::new(crate::client_cert::ClientCert::of(leaf)));
    let mut conn = ConnInfo::new(client, sni, version).with_tls_details(Some(ja4), cipher);
    conn.client_cert = client_cert;
    let conn = Arc::new(conn);
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
/// a request in flight and without progress: for HTTP/1, bytes moving;
/// for HTTP/2, a new request (PINGs and other frames a client sends to
/// keep a connection open do not count; a GOAWAY lets open streams
/// finish). An error about a request head is logged.
pub async fn serve_with_idle_timeout<I, S>(
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
            drive(c, conn, &conn.activity, idle, retired, clog).await;
        }
        Protocol::Http2 => {
            let c = http2_builder(limits).serve_connection(io, svc);
            drive(c, conn, &conn.requests, idle, retired, clog).await;
        }
    }
}

async fn drive<C: Graceful>(
    c: C,
    conn: &ConnInfo,
    progress: &std::sync::atomic::AtomicU64,
    idle: Duration,
    retired: &crate::lifecycle::Closing,
    clog: &ConnLog,
) {
    tokio::pin!(c);
    let mut last = progress.load(Ordering::Relaxed);
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
                let now = progress.load(Ordering::Relaxed);
                if now == last && conn.in_flight.load(Ordering::Relaxed) == 0 {
                    c.as_mut().close_gracefully();
                    closing = true;
                }
                last = now;
            }
            // A reload replaced this connection's config, or edge stops:
            // finish the request in flight, then close (h2: GOAWAY).
            () = crate::lifecycle::protocol_started(retired, &conn.activity), if !closing => {
                c.as_mut().close_gracefully();
                closing = true;
            }
        }
    }
}
