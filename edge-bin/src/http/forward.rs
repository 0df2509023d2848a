//! Forwarding a request to a pool: the request made replayable, handed to
//! the pool's [`Dispatch`](edge_balance::Dispatch) service (pick, slot,
//! send, retry: edge-balance), then the answer: a response whose body holds
//! the server's lease, an Upgrade tunnel, or 502/503/504 without internal
//! detail.

use bytes::Bytes;
use edge_balance::{DispatchError, ReplayRequest};
use http::header::{CONNECTION, UPGRADE};
use http::{HeaderValue, Request, Response, StatusCode, Version};
use tower_service::Service as _;

use super::body::{BoxError, EdgeBody, boxed, empty};
use super::respond;
use super::upstream::{SendError, request_body_failed};
use crate::accesslog::AccessRecord;
use crate::state::Backend;
use edge_balance::body::{Guarded, ReadTimeout, is_body_timeout};
use edge_balance::forwarding::{X_REQUEST_ID, strip_hop_by_hop};

/// Request bodies up to this size are buffered so the request can be retried.
const MAX_REPLAY_BODY: u64 = 64 * 1024;

/// The client's request body failed (stalled past `body_read_timeout`,
/// aborted, malformed): its fault, answered 408 or 400 and logged as such
/// (nginx's 408/400/499), never the server's.
fn client_body_failed(
    e: &(dyn std::error::Error + 'static),
    rec: &mut AccessRecord,
    request_id: &str,
) -> Response<EdgeBody> {
    tracing::debug!(error = %e, "request body failed");
    if is_body_timeout(e) {
        rec.error = Some("client request body timeout".into());
        respond::error(StatusCode::REQUEST_TIMEOUT, request_id)
    } else {
        rec.error = Some("client aborted or malformed request body".into());
        respond::error(StatusCode::BAD_REQUEST, request_id)
    }
}

/// Whether the request failed on TLS to the server (`[pool.tls]`: a
/// certificate refused, an alert from the server); the access record's
/// `error` then names why, e.g. `"backend TLS: certificate signed by an
/// unknown CA"`. Never a fallback to plaintext: the answer is a 502.
fn backend_tls_failed(e: &hyper_util::client::legacy::Error, rec: &mut AccessRecord) -> bool {
    match edge_balance::upstream_tls::TlsFailure::of(e) {
        Some(f) => {
            rec.error = Some(format!("backend TLS: {f}").into());
            true
        }
        None => false,
    }
}

/// Why an attempt failed, for the access record's `error`: the error and
/// its causes, innermost last (`"backend: client error (SendRequest):
/// connection closed before message completed"`).
fn backend_failure(e: &DispatchError<SendError>) -> String {
    use std::fmt::Write as _;
    let e: &(dyn std::error::Error + 'static) = match e {
        DispatchError::Endpoint(e) => e,
        e => e,
    };
    let mut why = format!("backend: {e}");
    let mut source = e.source();
    while let Some(s) = source {
        let _ = write!(why, ": {s}");
        source = s.source();
    }
    why
}

/// Sends `req` (headers already rewritten) to the backend, with retries.
pub async fn forward<B>(
    backend: &Backend,
    mut req: Request<B>,
    upgrade: Option<HeaderValue>,
    request_id: &str,
    rec: &mut AccessRecord,
    limits: &crate::config::Limits,
) -> Response<EdgeBody>
where
    B: http_body::Body<Data = Bytes> + Send + Sync + Unpin + 'static,
    B::Error: Into<BoxError>,
{
    let tunnel_idle = limits.tunnel_idle_timeout.0;
    let sticky = backend.pool.settings.options.sticky_cookie.as_deref();
    let sticky_sent = sticky.and_then(|name| super::sticky::prefer(&mut req, name));
    let client_upgrade = upgrade.as_ref().map(|_| hyper::upgrade::on(&mut req));
    let (mut parts, body) = req.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    if let Some(proto) = &upgrade {
        parts
            .headers
            .insert(CONNECTION, HeaderValue::from_static("upgrade"));
        parts.headers.insert(UPGRADE, proto.clone());
    }
    parts.version = backend.version;
    let body = if body.is_end_stream() {
        empty()
    } else {
        let body = ReadTimeout::new(body, limits.body_read_timeout.0);
        rec.count_request_body(boxed(body))
    };
    // Small bodies are buffered so the request can go to another server;
    // an Upgrade's body is streamed.
    let limit = if upgrade.is_some() {
        0
    } else {
        MAX_REPLAY_BODY
    };
    let req = match ReplayRequest::buffer(Request::from_parts(parts, body), limit).await {
        Ok(req) => req,
        Err(e) => return client_body_failed(&*e, rec, request_id),
    };
    let sent_id = req.head().headers().get(X_REQUEST_ID).cloned();

    // Dispatch is always ready; its future is boxed, which keeps the
    // generic service types out of this (Send) future.
    let served = match backend.http.clone().call(req).await {
        Ok(s) => s,
        Err(failed) => {
            rec.attempts = failed.attempts;
            rec.backend = failed.endpoint;
            rec.backend_time = failed.elapsed;
            let status = match &failed.error {
                e if e.is_unavailable() => StatusCode::SERVICE_UNAVAILABLE,
                DispatchError::Endpoint(SendError::Client(e)) if request_body_failed(e) => {
                    return client_body_failed(e, rec, request_id);
                }
                DispatchError::Timeout(_) => {
                    tracing::debug!(server = ?failed.endpoint, "backend response timed out");
                    rec.error = Some("backend response timeout".into());
                    StatusCode::GATEWAY_TIMEOUT
                }
                DispatchError::Endpoint(SendError::Client(c)) if backend_tls_failed(c, rec) => {
                    tracing::debug!(server = ?failed.endpoint, error = %c, reason = rec.error.as_deref().unwrap_or("-"), "backend request failed");
                    StatusCode::BAD_GATEWAY
                }
                e => {
                    let why = backend_failure(e);
                    tracing::debug!(server = ?failed.endpoint, error = %why, "backend request failed");
                    rec.error = Some(why.into());
                    StatusCode::BAD_GATEWAY
                }
            };
            return respond::error(status, request_id);
        }
    };
    let lease = served.lease;
    rec.attempts = served.attempts;
    rec.backend = Some(*lease.key());
    rec.backend_time = Some(served.elapsed);
    let mut resp = served.response;
    if let Some(s) = backend.pool.server_stats(lease.key()) {
        s.response(resp.status().as_u16(), served.elapsed);
    }
    if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
        let Some(cu) = client_upgrade else {
            return respond::error(StatusCode::BAD_GATEWAY, request_id);
        };
        let bu = hyper::upgrade::on(&mut resp);
        // Relayed and logged (bytes, duration) by accesslog::tunnel.
        let tunnel = crate::accesslog::tunnel::Tunnel::open(rec);
        tokio::spawn(async move {
            let _lease = lease;
            tunnel.relay(cu, bu, tunnel_idle).await;
        });
        let (mut p, _) = resp.into_parts();
        let proto = p.headers.get(UPGRADE).cloned();
        strip_hop_by_hop(&mut p.headers);
        p.headers
            .insert(CONNECTION, HeaderValue::from_static("upgrade"));
        if let Some(proto) = proto {
            p.headers.insert(UPGRADE, proto);
        }
        return Response::from_parts(p, empty());
    }
    let (mut p, rb) = resp.into_parts();
    strip_hop_by_hop(&mut p.headers);
    if let Some(name) = sticky {
        super::sticky::set_cookie(&mut p.headers, name, sticky_sent, lease.key());
    }
    if !p.headers.contains_key(X_REQUEST_ID) {
        if let Some(v) = sent_id {
            // The value sent to the backend (same id), shared.
            p.headers.insert(X_REQUEST_ID, v);
        } else if let Ok(v) = HeaderValue::from_str(request_id) {
            p.headers.insert(X_REQUEST_ID, v);
        }
    }
    p.version = Version::HTTP_11;
    Response::from_parts(p, EdgeBody::new(Guarded::new(boxed(rb), lease)))
}
