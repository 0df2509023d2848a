//! Terminated HTTP: one service per connection that validates the request,
//! routes it (first match in file order) and answers, redirects or forwards.

pub mod body;
pub mod forward;
pub mod respond;
mod sticky;
pub mod upstream;

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use bytes::Bytes;
use http::{Request, Response, StatusCode};

use crate::accesslog::AccessRecord;
use crate::config::{IpNet, RouteAction};
use crate::state::State;
use body::{BoxError, EdgeBody};
use edge_balance::forwarding::{
    ForwardInfo, new_request_id, request_host, set_forwarding, upgrade_protocol,
};

pub use crate::conn::ConnInfo;

/// Whether the request's `Transfer-Encoding`, if any, is exactly
/// `chunked` (the one coding edge forwards).
fn transfer_coding_understood(h: &http::HeaderMap) -> bool {
    h.get_all(http::header::TRANSFER_ENCODING)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b','))
        .all(|c| c.trim_ascii().eq_ignore_ascii_case(b"chunked"))
}

struct InFlight<'a>(&'a AtomicUsize);
impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Whether the request's Host falls under another `[[client_auth]]` than
/// the connection's SNI (or under one while the SNI is under none, or the
/// reverse): the certificate, or its absence, was settled by the SNI's
/// setting, so it says nothing for this Host (nginx answers 421 too).
fn client_auth_mismatch(state: &State, conn: &ConnInfo, host: &str) -> bool {
    let by_host = state.client_auth_of(host).map(|(c, _)| c);
    let by_sni = conn
        .sni
        .as_deref()
        .and_then(|s| state.client_auth_of(s))
        .map(|(c, _)| c);
    match (by_host, by_sni) {
        (None, None) => false,
        (Some(h), Some(s)) => !std::ptr::eq(h, s),
        _ => true,
    }
}

/// The ALPN name of a request's HTTP version, for the access log.
fn protocol_name(v: http::Version) -> &'static str {
    match v {
        http::Version::HTTP_2 => "h2",
        http::Version::HTTP_3 => "h3",
        http::Version::HTTP_10 => "http/1.0",
        _ => "http/1.1",
    }
}

/// Serves one request on a terminated (HTTPS) connection: HTTP/1 and
/// HTTP/2 (hyper's `Incoming` body) or HTTP/3 (the QUIC stream's body);
/// monomorphized per body type, so no body is boxed for being generic.
pub async fn serve<B>(
    state: Arc<State>,
    conn: Arc<ConnInfo>,
    req: Request<B>,
) -> Result<Response<EdgeBody>, Infallible>
where
    B: http_body::Body<Data = Bytes> + Send + Sync + Unpin + 'static,
    B::Error: Into<BoxError>,
{
    conn.in_flight.fetch_add(1, Ordering::Relaxed);
    conn.requests.fetch_add(1, Ordering::Relaxed);
    let _in_flight = InFlight(&conn.in_flight);
    let start = Instant::now();
    let mut rec = AccessRecord {
        kind: "http",
        client: Some(conn.client),
        sni: conn.sni.clone(),
        method: Some(req.method().to_string()),
        path: Some(req.uri().path().to_string()),
        tls_version: conn.tls_version,
        tls_cipher: conn.tls_cipher,
        ja4: conn.ja4.clone(),
        client_cert: conn.client_cert.clone(),
        protocol: Some(protocol_name(req.version())),
        ..Default::default()
    };
    let h3 = req.version() == http::Version::HTTP_3;
    let mut resp = serve_inner(&state, &conn, req, &mut rec).await;
    if state.https.http3 && !h3 {
        crate::http3::advertise(&state, conn.sni.as_deref(), resp.headers_mut());
    }
    // Logged and counted when the response body ends.
    Ok(state.obs.finish_http(rec, start, resp))
}

async fn serve_inner<B>(
    state: &State,
    conn: &ConnInfo,
    mut req: Request<B>,
    rec: &mut AccessRecord,
) -> Response<EdgeBody>
where
    B: http_body::Body<Data = Bytes> + Send + Sync + Unpin + 'static,
    B::Error: Into<BoxError>,
{
    let trusted = IpNet::any_contains(&state.https.trusted_upstreams, conn.client.ip());
    let seq = if req.version() <= http::Version::HTTP_11 {
        Some(conn.seq.fetch_add(1, Ordering::Relaxed))
    } else {
        None
    };
    if seq.is_some_and(|s| conn.smuggle.is_flagged(s)) {
        let id = new_request_id();
        rec.request_id = Some(id.clone());
        return respond::error(StatusCode::BAD_REQUEST, &id);
    }
    if let Some(Err(edge_balance::client_limit::Refused::Requests(wait))) = state
        .client_limits
        .as_ref()
        .map(|l| l.request(conn.client.ip()))
    {
        // Over the client's request rate: 429 with when to come back.
        state.obs.metrics.client_refused(true);
        let id = new_request_id();
        rec.request_id = Some(id.clone());
        let mut r = respond::error(StatusCode::TOO_MANY_REQUESTS, &id);
        let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
        r.headers_mut()
            .insert(http::header::RETRY_AFTER, http::HeaderValue::from(secs));
        return r;
    }
    if !transfer_coding_understood(req.headers()) {
        // RFC 9112 §6.1: a transfer coding other than chunked is not
        // understood here; forwarding it as plain chunked would hand the
        // backend a body in a coding it was never told about.
        let id = new_request_id();
        rec.request_id = Some(id.clone());
        return respond::error(StatusCode::NOT_IMPLEMENTED, &id);
    }
    let host = match request_host(&req) {
        Ok(h) => h,
        Err(_) => {
            let id = new_request_id();
            rec.request_id = Some(id.clone());
            return respond::error(StatusCode::BAD_REQUEST, &id);
        }
    };
    rec.host = Some(host.clone());
    let forward = ForwardInfo {
        client: conn.client,
        host: &host,
        proto: "https",
        trusted,
    };
    let id = set_forwarding(req.headers_mut(), &forward, new_request_id);
    rec.request_id = Some(id.clone());
    // Always: a client never forges the certificate headers.
    crate::client_cert::set_headers(req.headers_mut(), conn.client_cert.as_deref());
    if state.https.strict_host && conn.sni.as_ref().is_some_and(|sni| *sni != host) {
        return respond::error(StatusCode::MISDIRECTED_REQUEST, &id);
    }
    if client_auth_mismatch(state, conn, &host) {
        rec.error = Some("Host and SNI differ in client certificate settings".into());
        return respond::error(StatusCode::MISDIRECTED_REQUEST, &id);
    }
    let Some(route) = state.route(&host, req.uri().path(), req.headers()) else {
        return respond::error(StatusCode::NOT_FOUND, &id);
    };
    rec.route = Some(route.name.clone());
    rec.route_index = state.routes.iter().position(|r| std::ptr::eq(r, route));
    if route.client_certificate && conn.client_cert.is_none() {
        rec.error = Some("no client certificate".into());
        return respond::error(StatusCode::FORBIDDEN, &id);
    }
    match &route.action {
        RouteAction::Respond {
            status,
            body,
            content_type,
        } => respond::fixed(*status, body.clone(), content_type.clone(), &id),
        RouteAction::Redirect {
            location,
            status,
            keep_path,
        } => {
            let loc = if *keep_path {
                let pq = req.uri().path_and_query().map_or("/", |p| p.as_str());
                format!("{}{}", location.trim_end_matches('/'), pq)
            } else {
                location.clone()
            };
            respond::redirect(*status, &loc, &id)
        }
        RouteAction::Proxy { pool } => {
            let Some(backend) = state.backends.get(pool) else {
                return respond::error(StatusCode::SERVICE_UNAVAILABLE, &id);
            };
            if req.headers().contains_key(http::header::HOST)
                || req.version() >= http::Version::HTTP_2
            {
                // Backends get the client's Host (HTTP/2 carries it as :authority).
                if let Some(v) = req
                    .uri()
                    .authority()
                    .and_then(|a| http::HeaderValue::from_str(a.as_str()).ok())
                {
                    req.headers_mut().insert(http::header::HOST, v);
                }
            }
            let upgrade = upgrade_protocol(&req);
            // The key of `hash_key = "source"`.
            req.extensions_mut()
                .insert(edge_balance::ClientAddr(conn.client));
            forward::forward(backend, req, upgrade, &id, rec, &state.limits).await
        }
    }
}
