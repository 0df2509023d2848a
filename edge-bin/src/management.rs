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
use crate::metrics::{Metrics, Out, unix};
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
                metrics.render_with(|o| {
                    backends(o, &state);
                    certificates(o, &state);
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

/// Gauges of the running config: pool sizes, server health, in-flight work.
fn backends(o: &mut Out, s: &State) {
    let mut pools: Vec<&String> = s.backends.keys().collect();
    pools.sort();
    // Each family's samples right after its TYPE line, as the format wants.
    let statuses: Vec<_> = pools
        .iter()
        .filter_map(|p| Some((*p, s.health.pool_status(p)?)))
        .collect();
    o.family("edge_pool_servers", "gauge", "Servers configured per pool.");
    for (p, st) in &statuses {
        o.sample("edge_pool_servers", &[("pool", p)], st.total);
    }
    o.family(
        "edge_pool_healthy_servers",
        "gauge",
        "Servers in rotation per pool (healthy and not ejected).",
    );
    for (p, st) in &statuses {
        o.sample("edge_pool_healthy_servers", &[("pool", p)], st.healthy);
    }
    let mut targets = s.health.targets();
    targets.sort_by(|a, b| (&*a.pool, a.target).cmp(&(&*b.pool, b.target)));
    o.family(
        "edge_backend_up",
        "gauge",
        "1 when the server is in rotation (health checks and outlier detection), else 0.",
    );
    for t in &targets {
        o.sample(
            "edge_backend_up",
            &[("pool", &t.pool), ("server", &t.target.to_string())],
            u8::from(t.healthy),
        );
    }
    o.family(
        "edge_backend_in_flight",
        "gauge",
        "Requests (until the response body ends), tunnels and passthrough connections on each server.",
    );
    for p in &pools {
        let Some(b) = s.backends.get(*p) else {
            continue;
        };
        for (addr, _) in &b.pool.settings.servers {
            if let Some(n) = b.pool.in_flight(addr) {
                o.sample(
                    "edge_backend_in_flight",
                    &[("pool", p), ("server", &addr.to_string())],
                    n,
                );
            }
        }
    }
}

/// Seconds to each served certificate's expiry; ACME failures.
fn certificates(o: &mut Out, s: &State) {
    o.family(
        "edge_certificate_expiry_seconds",
        "gauge",
        "Seconds until the certificate served for each name expires (negative: expired).",
    );
    let now = unix(SystemTime::now());
    for name in s.certs.names() {
        if let Some(info) = s.certs.info(&name) {
            o.sample(
                "edge_certificate_expiry_seconds",
                &[("name", &name)],
                unix(info.not_after).saturating_sub(now),
            );
        }
    }
    o.family(
        "edge_acme_consecutive_failures",
        "gauge",
        "Failed attempts in a row to obtain or renew each [acme] certificate, by its first name (0 after a success).",
    );
    for c in s.acme.iter().flat_map(|a| a.status()) {
        if let Some(name) = c.names.first() {
            o.sample(
                "edge_acme_consecutive_failures",
                &[("name", name)],
                c.failures,
            );
        }
    }
}
