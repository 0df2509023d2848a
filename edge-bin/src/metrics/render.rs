//! The Prometheus text exposition format, version 0.0.4, written by hand.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};

use super::histogram::BUCKETS;
use super::{CLASSES, HandshakeFailure, Metrics, RouteStats, VRRP_STATES, unix};

/// Escapes a label value (backslash, double quote, newline).
fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => o.push_str("\\\\"),
            '"' => o.push_str("\\\""),
            '\n' => o.push_str("\\n"),
            c => o.push(c),
        }
    }
    o
}

/// A copy of a registry map, so the lock is not held while rendering.
fn entries<K: Clone, V>(m: &Mutex<BTreeMap<K, Arc<V>>>) -> Vec<(K, Arc<V>)> {
    m.lock()
        .unwrap_or_else(PoisonError::into_inner)
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// The exposition text being written: metric families and their samples.
#[derive(Debug)]
pub struct Out(String);

impl Out {
    /// Starts a family (`# HELP`, `# TYPE`).
    pub fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }
    /// One sample of the current family.
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
        self.0.push_str(name);
        if !labels.is_empty() {
            self.0.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.0.push(',');
                }
                let _ = write!(self.0, "{k}=\"{}\"", esc(v));
            }
            self.0.push('}');
        }
        let _ = writeln!(self.0, " {value}");
    }
}

fn routes(o: &mut Out, m: &Metrics) {
    let mut routes: Vec<(String, Arc<RouteStats>)> = entries(&m.routes);
    routes.push(("-".into(), m.unrouted.clone()));
    o.family(
        "edge_http_requests_total",
        "counter",
        "HTTP requests by route (\"-\": no route matched, or the plain-HTTP port) and status class, counted when the response ends.",
    );
    for (name, r) in &routes {
        for (i, class) in CLASSES.iter().enumerate() {
            let n = r.requests.get(i).map_or(0, |c| c.load(Ordering::Relaxed));
            o.sample(
                "edge_http_requests_total",
                &[("route", name), ("class", class)],
                n,
            );
        }
    }
    o.family(
        "edge_http_request_duration_seconds",
        "histogram",
        "Time from the request headers to the end of the response body, by route.",
    );
    for (name, r) in &routes {
        let (buckets, sum, count) = r.latency.snapshot();
        for (i, n) in buckets.iter().enumerate() {
            let le = BUCKETS
                .get(i)
                .map_or_else(|| "+Inf".to_string(), |b| b.to_string());
            o.sample(
                "edge_http_request_duration_seconds_bucket",
                &[("route", name), ("le", &le)],
                n,
            );
        }
        o.sample(
            "edge_http_request_duration_seconds_sum",
            &[("route", name)],
            sum,
        );
        o.sample(
            "edge_http_request_duration_seconds_count",
            &[("route", name)],
            count,
        );
    }
}

fn passthrough(o: &mut Out, m: &Metrics) {
    let map = entries(&m.passthrough);
    type Get = fn(&super::PassthroughStats) -> u64;
    let families: [(&str, &str, Get); 4] = [
        (
            "edge_passthrough_connections_total",
            "Passthrough (SNI-routed, not terminated) connections accepted, by pool.",
            |s| s.connections.load(Ordering::Relaxed),
        ),
        (
            "edge_passthrough_failed_total",
            "Passthrough connections closed because no server could be reached, by pool.",
            |s| s.failed.load(Ordering::Relaxed),
        ),
        (
            "edge_passthrough_received_bytes_total",
            "Bytes relayed from clients to servers on finished passthrough connections, by pool.",
            |s| s.bytes_in.load(Ordering::Relaxed),
        ),
        (
            "edge_passthrough_sent_bytes_total",
            "Bytes relayed from servers to clients on finished passthrough connections, by pool.",
            |s| s.bytes_out.load(Ordering::Relaxed),
        ),
    ];
    for (name, help, get) in families {
        o.family(name, "counter", help);
        for (pool, s) in &map {
            o.sample(name, &[("pool", pool)], get(s));
        }
    }
}

fn tls(o: &mut Out, m: &Metrics) {
    o.family(
        "edge_tls_handshakes_total",
        "counter",
        "TLS handshakes completed on the public port (terminated connections).",
    );
    o.sample(
        "edge_tls_handshakes_total",
        &[],
        m.tls.handshakes.load(Ordering::Relaxed),
    );
    o.family(
        "edge_tls_sni_ip_literal_total",
        "counter",
        "ClientHellos whose SNI was an IP address (RFC 6066 forbids it), served as no SNI.",
    );
    o.sample(
        "edge_tls_sni_ip_literal_total",
        &[],
        m.tls.sni_ip_literal.load(Ordering::Relaxed),
    );
    o.family(
        "edge_client_limit_refused_total",
        "counter",
        "Connections and requests refused by [client_limits], by kind.",
    );
    for (i, kind) in ["connections", "requests"].iter().enumerate() {
        let n = m
            .tls
            .client_refused
            .get(i)
            .map_or(0, |c| c.load(Ordering::Relaxed));
        o.sample("edge_client_limit_refused_total", &[("kind", kind)], n);
    }
    o.family(
        "edge_tls_handshake_failures_total",
        "counter",
        "TLS handshakes that failed on the public port, by reason.",
    );
    for (i, f) in HandshakeFailure::ALL.iter().enumerate() {
        let n = m
            .tls
            .failures
            .get(i)
            .map_or(0, |c| c.load(Ordering::Relaxed));
        o.sample(
            "edge_tls_handshake_failures_total",
            &[("reason", f.as_str())],
            n,
        );
    }
}

fn sinks(o: &mut Out, m: &Metrics) {
    let map = entries(&m.sinks);
    o.family(
        "edge_access_log_records_total",
        "counter",
        "Access records handed to each sink's destination.",
    );
    for (name, s) in &map {
        o.sample(
            "edge_access_log_records_total",
            &[("sink", name)],
            s.written.load(Ordering::Relaxed),
        );
    }
    o.family("edge_access_log_dropped_total", "counter", "Access records dropped per sink: queue full (the destination is slow or down), oversize (larger than a UDP datagram) or error (the destination refused it).");
    for (name, s) in &map {
        for (reason, c) in [
            ("queue_full", &s.dropped_queue_full),
            ("oversize", &s.dropped_oversize),
            ("error", &s.dropped_error),
        ] {
            o.sample(
                "edge_access_log_dropped_total",
                &[("sink", name), ("reason", reason)],
                c.load(Ordering::Relaxed),
            );
        }
    }
}

fn vrrp(o: &mut Out, m: &Metrics) {
    let map = entries(&m.vrrp);
    o.family(
        "edge_vrrp_state",
        "gauge",
        "VRRP instance state: 1 for the current state, 0 for the others.",
    );
    for ((vrid, ifname), s) in &map {
        let vrid = vrid.to_string();
        let cur = usize::from(s.state.load(Ordering::Relaxed));
        for (i, name) in VRRP_STATES.iter().enumerate() {
            o.sample(
                "edge_vrrp_state",
                &[("vrid", &vrid), ("interface", ifname), ("state", name)],
                u8::from(i == cur),
            );
        }
    }
    o.family(
        "edge_vrrp_transitions_total",
        "counter",
        "VRRP state changes per instance.",
    );
    for ((vrid, ifname), s) in &map {
        o.sample(
            "edge_vrrp_transitions_total",
            &[("vrid", &vrid.to_string()), ("interface", ifname)],
            s.transitions.load(Ordering::Relaxed),
        );
    }
}

fn reload(o: &mut Out, m: &Metrics) {
    o.family(
        "edge_config_reloads_total",
        "counter",
        "Config reloads (SIGHUP or admin), by result.",
    );
    o.sample(
        "edge_config_reloads_total",
        &[("result", "success")],
        m.reloads_ok.load(Ordering::Relaxed),
    );
    o.sample(
        "edge_config_reloads_total",
        &[("result", "failure")],
        m.reloads_failed.load(Ordering::Relaxed),
    );
    o.family(
        "edge_config_last_reload_successful",
        "gauge",
        "1 when the last config load (the start or a reload) succeeded.",
    );
    o.sample(
        "edge_config_last_reload_successful",
        &[],
        m.last_reload_ok.load(Ordering::Relaxed),
    );
    o.family(
        "edge_config_last_reload_success_timestamp_seconds",
        "gauge",
        "Unix time of the last successful config load.",
    );
    o.sample(
        "edge_config_last_reload_success_timestamp_seconds",
        &[],
        m.last_success.load(Ordering::Relaxed),
    );
}

pub(super) fn render(m: &Metrics, extra: impl FnOnce(&mut Out)) -> String {
    let mut o = Out(String::with_capacity(16 * 1024));
    o.family("edge_build_info", "gauge", "The running edge version.");
    o.sample(
        "edge_build_info",
        &[("version", env!("CARGO_PKG_VERSION"))],
        1,
    );
    o.family(
        "edge_start_time_seconds",
        "gauge",
        "Unix time the process started.",
    );
    o.sample("edge_start_time_seconds", &[], unix(m.started));
    routes(&mut o, m);
    passthrough(&mut o, m);
    tls(&mut o, m);
    sinks(&mut o, m);
    vrrp(&mut o, m);
    reload(&mut o, m);
    extra(&mut o);
    o.0
}
