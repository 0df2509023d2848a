//! The live status page of the management listener: `GET /status` (one
//! self-contained HTML page, built into the binary) and `GET /status.json`
//! (what it shows). The data comes from where the admin socket's `show`
//! commands and the metrics take it: the current [`State`] (routes, pools,
//! health, certificates, ACME), the [`Admin`] registry (drain, maint) and
//! the process-wide [`Metrics`] (route counters, VRRP, access-log sinks).
//!
//! Read-only: the page has no buttons; changes go through the admin socket.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use edge_health::{HealthEvent, ProbeReport, TargetState};
use http::{Response, StatusCode, header};
use serde_json::{Value, json};

use crate::admin::certs::served_certificates;
use crate::admin::{Admin, AdminState, policy_name};
use crate::config::RouteAction;
use crate::http::body::{EdgeBody, full};
use crate::metrics::Metrics;
use crate::state::State;

/// The page: inline CSS and script, nothing loaded from elsewhere.
pub const PAGE: &str = include_str!("../assets/status.html");

/// What the page may do: its own inline code, and fetch from this listener.
const CSP: &str = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
                   connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'";

/// A 200 response with `body` and these headers.
fn ok(
    body: impl Into<bytes::Bytes>,
    headers: &[(header::HeaderName, &'static str)],
) -> Response<EdgeBody> {
    let mut r = Response::new(full(body.into()));
    *r.status_mut() = StatusCode::OK;
    for (name, value) in headers {
        r.headers_mut()
            .insert(name, header::HeaderValue::from_static(value));
    }
    r
}

/// `GET /status`.
pub fn page() -> Response<EdgeBody> {
    ok(
        PAGE,
        &[
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CONTENT_SECURITY_POLICY, CSP),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
    )
}

/// `GET /status.json`.
pub fn json_response(metrics: &Metrics, state: &State, admin: &Admin) -> Response<EdgeBody> {
    let body = serde_json::to_vec(&snapshot(metrics, state, admin)).unwrap_or_default();
    ok(
        body,
        &[
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-store"),
        ],
    )
}

/// Milliseconds since the Unix epoch.
fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The wall-clock time of a monotonic instant in the past.
fn wall(at: Instant) -> SystemTime {
    SystemTime::now()
        .checked_sub(at.elapsed())
        .unwrap_or(UNIX_EPOCH)
}

/// Everything the page shows, as of now.
pub fn snapshot(metrics: &Metrics, state: &State, admin: &Admin) -> Value {
    let now = SystemTime::now();
    json!({
        "edge": {
            "version": env!("CARGO_PKG_VERSION"),
            "pid": std::process::id(),
            "uptime_seconds": admin.uptime().as_secs(),
            "generation": admin.generation(),
            "config": admin.config_path().display().to_string(),
            "now_ms": unix_ms(now),
        },
        "routes": routes(metrics, state),
        "passthrough": passthrough(metrics, state),
        "pools": pools(state, admin, now),
        "vrrp": metrics.vrrp_snapshot().iter().map(|v| json!({
            "vrid": v.vrid,
            "interface": v.interface,
            "state": v.state,
            "transitions": v.transitions,
        })).collect::<Vec<_>>(),
        "anycast": metrics.anycast_snapshot().iter().map(|(address, announced)| json!({
            "address": address.to_string(),
            "announced": announced,
        })).collect::<Vec<_>>(),
        "certificates": certificates(state, now),
        "acme": acme(state, now),
        "access_logs": metrics.sink_snapshot().iter().map(|s| json!({
            "name": s.name,
            "written": s.written,
            "dropped": s.dropped_queue_full + s.dropped_oversize + s.dropped_error,
            "dropped_queue_full": s.dropped_queue_full,
            "dropped_oversize": s.dropped_oversize,
            "dropped_error": s.dropped_error,
        })).collect::<Vec<_>>(),
    })
}

/// HTTP routes in match order, with their request counters.
fn routes(metrics: &Metrics, state: &State) -> Vec<Value> {
    const CLASSES: [&str; 6] = ["1xx", "2xx", "3xx", "4xx", "5xx", "other"];
    state
        .routes
        .iter()
        .map(|r| {
            let stats = metrics.route(&r.name);
            let by_class: BTreeMap<&str, u64> =
                CLASSES.iter().map(|c| (*c, stats.requests(c))).collect();
            let (kind, pool, target) = match &r.action {
                RouteAction::Proxy { pool } => ("proxy", Some(pool.clone()), pool.clone()),
                RouteAction::Redirect {
                    location, status, ..
                } => (
                    "redirect",
                    None,
                    format!("redirect {} {location}", status.as_u16()),
                ),
                RouteAction::Respond { status, .. } => {
                    ("respond", None, format!("respond {}", status.as_u16()))
                }
            };
            json!({
                "name": r.name,
                "hosts": r.hosts.iter().map(ToString::to_string).collect::<Vec<_>>(),
                "path_prefix": r.path_prefix,
                "headers": r.headers.iter().map(|(n, v)| match v {
                    Some(v) => format!("{n}: {}", String::from_utf8_lossy(v.as_bytes())),
                    None => n.to_string(),
                }).collect::<Vec<_>>(),
                "action": kind,
                "pool": pool,
                "target": target,
                "requests": by_class.values().sum::<u64>(),
                "errors": by_class.get("5xx").copied().unwrap_or(0),
                "by_class": by_class,
            })
        })
        .collect()
}

/// SNI passthrough rules, with their connection counters.
fn passthrough(metrics: &Metrics, state: &State) -> Vec<Value> {
    state
        .passthrough
        .iter()
        .map(|p| {
            let stats = metrics.passthrough(&p.pool);
            json!({
                "sni": p.sni.iter().map(ToString::to_string).collect::<Vec<_>>(),
                "pool": p.pool,
                "connections": stats.connections.get(),
                "failed": stats.failed.get(),
            })
        })
        .collect()
}

/// One word for a server: what an operator made of it first (maintenance,
/// draining), else what health checking says (up, down, ejected, unchecked).
fn server_state(admin: AdminState, health: Option<TargetState>, healthy: bool) -> &'static str {
    match admin {
        AdminState::Maint => "maintenance",
        AdminState::Drain => "draining",
        AdminState::Ready => match health {
            Some(TargetState::Up) => "up",
            Some(TargetState::Down) => "down",
            Some(TargetState::Ejected) => "ejected",
            Some(TargetState::Unchecked) => "unchecked",
            Some(_) | None if healthy => "up",
            Some(_) | None => "down",
        },
    }
}

fn health_name(s: TargetState) -> &'static str {
    match s {
        TargetState::Up => "up",
        TargetState::Down => "down",
        TargetState::Ejected => "ejected",
        TargetState::Unchecked => "unchecked",
        _ if s.is_healthy() => "up",
        _ => "down",
    }
}

/// Pools by name, each server with its state, weight, use and last check.
fn pools(state: &State, admin: &Admin, now: SystemTime) -> Vec<Value> {
    let events = state.health.targets();
    let health: HashMap<(&str, SocketAddr), &HealthEvent> =
        events.iter().map(|e| ((&*e.pool, e.target), e)).collect();
    let probes = state.health.last_probes();
    let last_probe: HashMap<(&str, SocketAddr), &ProbeReport> =
        probes.iter().map(|r| ((&*r.pool, r.target), r)).collect();
    let mut names: Vec<&String> = state.backends.keys().collect();
    names.sort();
    names
        .into_iter()
        .filter_map(|name| {
            let b = state.backends.get(name)?;
            let servers: Vec<Value> = b
                .pool
                .servers()
                .iter()
                .map(|s| {
                    let h = health.get(&(name.as_str(), s.addr)).copied();
                    let adm = admin.state_of(name, s.addr);
                    let usage = admin.usage(name, s.addr);
                    // The check result that last changed the state, and
                    // when; the last check itself is `last_check`.
                    let last_change = h.map(|e| {
                        json!({
                            "result": e.reason.code(),
                            "reason": e.reason.to_string(),
                            "since_ms": unix_ms(wall(e.since)),
                            "seconds_ago": e.since.elapsed().as_secs(),
                        })
                    });
                    let last_check = last_probe.get(&(name.as_str(), s.addr)).map(|r| {
                        json!({
                            "passed": r.result.is_ok(),
                            "reason": r.result.as_ref().err().map_or_else(|| "passed".to_string(), ToString::to_string),
                            "at_ms": unix_ms(r.started),
                            "seconds_ago": now.duration_since(r.started).map_or(0, |d| d.as_secs()),
                            "duration_ms": r.duration.as_secs_f64() * 1e3,
                        })
                    });
                    let stats = b.pool.server_stats(&s.addr);
                    let stats = stats.as_deref();
                    let latency = stats.and_then(|st| st.latency()).map(|p| {
                        json!({
                            "p50": p.p50 * 1e3,
                            "p90": p.p90 * 1e3,
                            "p99": p.p99 * 1e3,
                            "count": p.count,
                        })
                    });
                    let responses: BTreeMap<&str, u64> =
                        stats.map(|st| st.responses().collect()).unwrap_or_default();
                    let errors_by_kind: BTreeMap<&str, u64> =
                        stats.map(|st| st.errors().collect()).unwrap_or_default();
                    json!({
                        "address": s.addr.to_string(),
                        "state": server_state(adm, h.map(|e| e.state), s.healthy),
                        "admin": adm.to_string(),
                        "health": h.map_or(if s.healthy { "up" } else { "down" }, |e| health_name(e.state)),
                        "weight": s.weight,
                        "configured_weight": b.pool.config_weight(s.addr),
                        "in_flight": usage.active,
                        "queued": usage.queued,
                        "requests": s.requests,
                        "errors": s.failures,
                        "last_change": last_change,
                        "last_check": last_check,
                        "latency_ms": latency,
                        "responses": responses,
                        "errors_by_kind": errors_by_kind,
                    })
                })
                .collect();
            let up = servers.iter().filter(|s| s["state"] == "up").count();
            Some(json!({
                "name": name,
                "policy": policy_name(b.pool.settings.policy),
                "health_checks": b.pool.settings.health.is_some(),
                "servers_total": servers.len(),
                "servers_up": up,
                "servers": servers,
            }))
        })
        .collect()
}

/// Served certificates, one entry per certificate with the names it serves.
fn certificates(state: &State, now: SystemTime) -> Vec<Value> {
    served_certificates(state)
        .into_iter()
        .map(|c| {
            json!({
                "serial": c.info.serial,
                "key": c.info.key,
                "issuer": c.issuer,
                "subject": c.subject,
                "names": c.info.names,
                "not_before_ms": unix_ms(c.info.not_before),
                "not_after_ms": unix_ms(c.info.not_after),
                "expires_in_seconds": c.info.seconds_until_expiry(now),
                "source": c.source(),
                "config_name": c.config.as_ref().map(|c| c.name.clone()),
                "served_names": c.served,
            })
        })
        .collect()
}

/// The ACME manager's view of each managed certificate.
fn acme(state: &State, now: SystemTime) -> Vec<Value> {
    let Some(handle) = &state.acme else {
        return Vec::new();
    };
    let mut v: Vec<Value> = handle
        .status()
        .into_iter()
        .map(|s| {
            json!({
                "names": s.names,
                "key_type": s.key_type.name(),
                "serial": s.serial,
                "not_after_ms": s.not_after.map(unix_ms),
                "expires_in_seconds": s.seconds_until_expiry(),
                "renew_at_ms": s.renew_at.map(unix_ms),
                "renewal_due": s.renew_at.is_some_and(|t| t <= now),
                "ari_window_ms": s.ari_window.map(|(a, b)| [unix_ms(a), unix_ms(b)]),
                "failures": s.failures,
                "last_error": s.last_error,
                "orders": s.orders,
            })
        })
        .collect();
    v.sort_by(|a, b| a["names"].to_string().cmp(&b["names"].to_string()));
    v
}

#[cfg(test)]
#[path = "status_tests.rs"]
mod tests;
