//! Forwarding a request to a pool: pick, slot, send through the pool's
//! pooled client, retry/redispatch on another server when safe, Upgrade
//! tunnels, and 502/503/504 without internal detail.

use std::time::Instant;

use bytes::Bytes;
use http::header::{CONNECTION, CONTENT_LENGTH, UPGRADE};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderValue, Method, Request, Response, StatusCode, Uri, Version};
use http_body::Body as _;
use http_body_util::BodyExt;
use hyper::body::Incoming;

use super::body::{EdgeBody, Guarded, boxed, empty, full};
use super::headers::{X_REQUEST_ID, strip_hop_by_hop};
use super::respond;
use crate::accesslog::AccessRecord;
use crate::config::BackendProtocol;
use crate::pool::AcquireError;
use crate::state::Backend;
use edge_health::Outcome;

/// Request bodies up to this size are buffered so the request can be retried.
const MAX_REPLAY_BODY: u64 = 64 * 1024;

enum ReqBody {
    /// Replayable: empty or buffered.
    Bytes(Option<Bytes>),
    /// Streamed; can be sent once.
    Stream(Option<Incoming>),
}

impl ReqBody {
    fn take(&mut self) -> Option<EdgeBody> {
        match self {
            ReqBody::Bytes(None) => Some(empty()),
            ReqBody::Bytes(Some(b)) => Some(full(b.clone())),
            ReqBody::Stream(s) => s.take().map(boxed),
        }
    }
    fn replayable(&self) -> bool {
        matches!(self, ReqBody::Bytes(_))
    }
}

fn idempotent(m: &Method) -> bool {
    matches!(
        *m,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}

/// `http://<addr><path>` for the pooled client, built from parts (the path
/// is shared with the client's request, the address formatted once).
fn backend_uri(addr: std::net::SocketAddr, path: &PathAndQuery) -> Option<Uri> {
    use std::io::Write as _;
    let mut buf = [0u8; 64];
    let mut cur = std::io::Cursor::new(&mut buf[..]);
    write!(cur, "{addr}").ok()?;
    let n = usize::try_from(cur.position()).ok()?;
    let authority = Authority::try_from(buf.get(..n)?).ok()?;
    let mut parts = http::uri::Parts::default();
    parts.scheme = Some(Scheme::HTTP);
    parts.authority = Some(authority);
    parts.path_and_query = Some(path.clone());
    Uri::from_parts(parts).ok()
}

/// Sends `req` (headers already rewritten) to the backend, with retries.
pub async fn forward(
    backend: &Backend,
    mut req: Request<Incoming>,
    upgrade: Option<HeaderValue>,
    request_id: &str,
    rec: &mut AccessRecord,
    tunnel_idle: std::time::Duration,
) -> Response<EdgeBody> {
    let pool = &backend.pool;
    let settings = &pool.settings;
    let client_upgrade = upgrade.as_ref().map(|_| hyper::upgrade::on(&mut req));
    let (parts, body) = req.into_parts();
    let mut headers = parts.headers;
    strip_hop_by_hop(&mut headers);
    if let Some(proto) = &upgrade {
        headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(UPGRADE, proto.clone());
    }
    let version = match settings.protocol {
        BackendProtocol::Http1 => Version::HTTP_11,
        BackendProtocol::H2c => Version::HTTP_2,
    };
    // Shared, not copied, into every attempt's URI.
    let path = parts
        .uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));

    // Small bodies are buffered so the request can go to another server.
    let mut body = if body.is_end_stream() {
        ReqBody::Bytes(None)
    } else if body
        .size_hint()
        .upper()
        .is_some_and(|n| n <= MAX_REPLAY_BODY)
        && upgrade.is_none()
    {
        match body.collect().await {
            Ok(c) => ReqBody::Bytes(Some(c.to_bytes())),
            Err(_) => return respond::error(StatusCode::BAD_REQUEST, request_id),
        }
    } else {
        ReqBody::Stream(Some(body))
    };
    if let ReqBody::Bytes(b) = &body {
        let n = b.as_ref().map_or(0, Bytes::len);
        if n > 0 || headers.contains_key(CONTENT_LENGTH) {
            headers.insert(CONTENT_LENGTH, HeaderValue::from(n));
        }
    }

    let mut exclude = Vec::new();
    let mut last_status = StatusCode::SERVICE_UNAVAILABLE;
    pool.deposit();
    while let Some(picked) = pool.next_attempt(&mut rec.attempts, &exclude) {
        let addr = *picked.key();
        let mut guard = match pool.acquire(picked).await {
            Ok(g) => g,
            Err(AcquireError::QueueFull | AcquireError::QueueTimeout) => {
                exclude.push(addr);
                last_status = StatusCode::SERVICE_UNAVAILABLE;
                continue;
            }
        };
        rec.backend = Some(addr);
        let Some(b) = body.take().map(|b| rec.count_request_body(b)) else {
            break;
        };
        let Some(uri) = backend_uri(addr, &path) else {
            return respond::error(StatusCode::BAD_REQUEST, request_id);
        };
        let mut out = Request::new(b);
        *out.method_mut() = parts.method.clone();
        *out.uri_mut() = uri;
        *out.version_mut() = version;
        *out.headers_mut() = headers.clone();
        let started = Instant::now();
        let result =
            tokio::time::timeout(settings.response_timeout, backend.client.request(out)).await;
        let elapsed = started.elapsed();
        rec.backend_time = Some(elapsed);
        match result {
            Ok(Ok(mut resp)) => {
                if resp.status().is_server_error() {
                    pool.record(addr, Outcome::Status5xx);
                    guard.failure();
                } else {
                    pool.record(addr, Outcome::Success);
                    guard.success(elapsed);
                }
                if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
                    if let Some(cu) = client_upgrade {
                        let bu = hyper::upgrade::on(&mut resp);
                        // Relayed and logged (bytes, duration) by accesslog::tunnel.
                        let tunnel = crate::accesslog::tunnel::Tunnel::open(rec);
                        tokio::spawn(async move {
                            let _guard = guard;
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
                    return respond::error(StatusCode::BAD_GATEWAY, request_id);
                }
                let (mut p, rb) = resp.into_parts();
                strip_hop_by_hop(&mut p.headers);
                if !p.headers.contains_key(X_REQUEST_ID) {
                    if let Some(v) = headers.get(X_REQUEST_ID) {
                        // The value sent to the backend (same id), shared.
                        p.headers.insert(X_REQUEST_ID, v.clone());
                    } else if let Ok(v) = HeaderValue::from_str(request_id) {
                        p.headers.insert(X_REQUEST_ID, v);
                    }
                }
                p.version = Version::HTTP_11;
                let rb = EdgeBody::new(Guarded::new(boxed(rb), guard));
                return Response::from_parts(p, rb);
            }
            Ok(Err(e)) => {
                pool.record(addr, Outcome::ConnectFailure);
                guard.failure();
                exclude.push(addr);
                let connect = e.is_connect();
                tracing::debug!(server = %addr, error = %e, connect, "backend request failed");
                last_status = StatusCode::BAD_GATEWAY;
                let retry = body.replayable() && (connect || idempotent(&parts.method));
                if !retry {
                    break;
                }
            }
            Err(_) => {
                pool.record(addr, Outcome::Timeout);
                guard.failure();
                tracing::debug!(server = %addr, "backend response timed out");
                last_status = StatusCode::GATEWAY_TIMEOUT;
                break;
            }
        }
    }
    respond::error(last_status, request_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_uris() {
        let p = PathAndQuery::from_static("/a/b?x=1&y");
        let u = backend_uri("127.0.0.1:8080".parse().unwrap(), &p).unwrap();
        assert_eq!(u.to_string(), "http://127.0.0.1:8080/a/b?x=1&y");
        let u = backend_uri("[2001:db8::1]:80".parse().unwrap(), &p).unwrap();
        assert_eq!(u.authority().unwrap().as_str(), "[2001:db8::1]:80");
        let long = "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff%4294967295]:65535";
        let addr: std::net::SocketAddr = "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535"
            .parse()
            .unwrap();
        assert!(long.len() < 64);
        assert!(backend_uri(addr, &PathAndQuery::from_static("/")).is_some());
    }
}
