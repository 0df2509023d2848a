//! The management listener (`[management]`): `GET /metrics` in the
//! Prometheus text format. It is a separate socket, loopback by default;
//! the public listeners never serve it.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http::{Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;

use crate::admin::Admin;
use crate::config::ManagementSettings;
use crate::http::body::{EdgeBody, full};
use crate::metrics::{ConfigGauges, Metrics, unix};
use crate::state::{SharedState, State};

/// Scrapes served at once; more wait in the kernel backlog.
const MAX_CONNECTIONS: usize = 32;

/// Binds the management address (a loud warning when it is not loopback).
pub async fn bind(s: &ManagementSettings) -> std::io::Result<TcpListener> {
    if !s.listen.ip().is_loopback() {
        tracing::warn!(address = %s.listen, "the management listener is NOT on a loopback address: anyone who can reach it can read the metrics");
    }
    TcpListener::bind(s.listen).await
}

/// Serves the listener until the runtime stops.
pub fn spawn(listener: TcpListener, metrics: Arc<Metrics>, shared: SharedState, admin: Arc<Admin>) {
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    tokio::spawn(async move {
        loop {
            let Ok(permit) = slots.clone().acquire_owned().await else {
                return;
            };
            let (stream, _) = match listener.accept().await {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "management accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let (metrics, shared, admin) = (metrics.clone(), shared.clone(), admin.clone());
            tokio::spawn(async move {
                let _permit = permit;
                let svc = service_fn(move |req| {
                    let r = handle(&metrics, &shared, &admin, &req);
                    async move { Ok::<_, Infallible>(r) }
                });
                let conn = hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(Duration::from_secs(10))
                    .serve_connection(TokioIo::new(stream), svc);
                let _ = tokio::time::timeout(Duration::from_secs(60), conn).await;
            });
        }
    });
}

fn text(status: StatusCode, body: impl Into<bytes::Bytes>) -> Response<EdgeBody> {
    let mut r = Response::new(full(body.into()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// Answers one management request.
pub fn handle(
    metrics: &Metrics,
    shared: &SharedState,
    admin: &Admin,
    req: &Request<Incoming>,
) -> Response<EdgeBody> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "405 Method Not Allowed\n");
        r.headers_mut()
            .insert(header::ALLOW, header::HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    match req.uri().path() {
        "/metrics" => {
            let state = shared.load_full();
            let mut r = text(
                StatusCode::OK,
                metrics.render_with(|g| {
                    backends(g, &state);
                    certificates(g, &state);
                }),
            );
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            r
        }
        "/status" => crate::status::page(),
        "/status.json" => crate::status::json_response(metrics, &shared.load_full(), admin),
        "/" => text(
            StatusCode::OK,
            "edge management\n/metrics      Prometheus metrics\n/status       live status page\n/status.json  its data\n",
        ),
        _ => text(StatusCode::NOT_FOUND, "404 Not Found\n"),
    }
}

/// Gauges of the running config: pool sizes and capacity, server health,
/// in-flight work.
fn backends(g: &ConfigGauges<'_>, s: &State) {
    for (name, b) in &s.backends {
        if let Some(st) = s.health.pool_status(name) {
            g.pool(name, st.total, st.healthy, st.low);
        }
        for (addr, _) in &b.pool.members() {
            if let Some(n) = b.pool.in_flight(addr) {
                g.server_in_flight(name, *addr, n);
            }
        }
    }
    for t in s.health.targets() {
        g.server_up(&t.pool, t.target, t.healthy);
    }
}

/// Seconds to each served certificate's expiry; ACME failures.
fn certificates(g: &ConfigGauges<'_>, s: &State) {
    let now = unix(SystemTime::now());
    for name in s.certs.names() {
        if let Some(info) = s.certs.info(&name) {
            g.certificate_expiry(&name, unix(info.not_after).saturating_sub(now));
        }
    }
    // By first name: an ECDSA and an RSA certificate for the same names
    // show the worse of the two.
    let mut failures = std::collections::BTreeMap::new();
    for c in s.acme.iter().flat_map(|a| a.status()) {
        if let Some(name) = c.names.first() {
            let f = failures.entry(name.clone()).or_insert(0);
            *f = c.failures.max(*f);
        }
    }
    for (name, f) in failures {
        g.acme_failures(&name, f);
    }
}
