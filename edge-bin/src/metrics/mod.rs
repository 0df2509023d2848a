//! Process-wide metrics, rendered in the Prometheus text format (0.0.4) by
//! the management listener.
//!
//! One [`Metrics`] is made in `serve()` and outlives every config: the
//! per-route and per-pool counters are looked up by name when a
//! config's state is built (a lock taken only then) and handed to the data
//! path as `Arc`s, so a request touches a few atomics and nothing else, and
//! counters continue across reloads. Gauges that describe the current
//! config (backend health, in-flight requests, certificates) are written by
//! the management listener from the current state when scraped
//! ([`Metrics::render_with`]).
//!
//! ```
//! let m = edge_bin::metrics::Metrics::new();
//! m.reload_result(true);
//! let text = m.render();
//! assert!(text.contains("edge_config_reloads_total{result=\"success\"} 1"));
//! ```

mod histogram;
mod render;
mod snapshot;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub use histogram::Histogram;
pub use render::Out;
pub use snapshot::{SinkSnapshot, VrrpSnapshot};

/// Counters of one route (or of requests that matched none).
#[derive(Debug, Default)]
pub struct RouteStats {
    /// Requests by status class: 1xx, 2xx, 3xx, 4xx, 5xx, other.
    requests: [AtomicU64; 6],
    /// Seconds from request headers to the end of the response body.
    latency: Histogram,
}

/// Status class labels, in [`RouteStats`] order.
const CLASSES: [&str; 6] = ["1xx", "2xx", "3xx", "4xx", "5xx", "other"];

impl RouteStats {
    /// Counts one finished request.
    pub fn observe(&self, status: u16, duration: Duration) {
        let class = match status {
            100..=599 => usize::from(status / 100 - 1),
            _ => 5,
        };
        if let Some(c) = self.requests.get(class) {
            c.fetch_add(1, Ordering::Relaxed);
        }
        self.latency.observe(duration);
    }

    /// Requests counted with a status class (`"2xx"`, ...).
    pub fn requests(&self, class: &str) -> u64 {
        CLASSES
            .iter()
            .position(|c| *c == class)
            .and_then(|i| self.requests.get(i))
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }
}

/// Counters of the passthrough connections to one pool.
#[derive(Debug, Default)]
pub struct PassthroughStats {
    pub connections: AtomicU64,
    /// Connections for which no server could be reached.
    pub failed: AtomicU64,
    /// Client to server.
    pub bytes_in: AtomicU64,
    /// Server to client.
    pub bytes_out: AtomicU64,
}

/// Why a TLS handshake on the public port failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum HandshakeFailure {
    /// No usable ClientHello (not TLS, malformed, or too slow).
    ClientHello,
    /// The handshake did not finish in `tls_handshake_timeout`.
    Timeout,
    /// No common version, cipher suite or ALPN protocol.
    Incompatible,
    /// No certificate for the requested name.
    NoCertificate,
    /// The client sent an alert (for example it rejected the certificate).
    Alert,
    /// Malformed or unexpected messages.
    Protocol,
    /// The connection failed or closed during the handshake.
    Io,
    /// Anything else.
    Other,
}

impl HandshakeFailure {
    const ALL: [HandshakeFailure; 8] = [
        Self::ClientHello,
        Self::Timeout,
        Self::Incompatible,
        Self::NoCertificate,
        Self::Alert,
        Self::Protocol,
        Self::Io,
        Self::Other,
    ];

    /// The `reason` label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ClientHello => "client_hello",
            Self::Timeout => "timeout",
            Self::Incompatible => "incompatible",
            Self::NoCertificate => "no_certificate",
            Self::Alert => "alert",
            Self::Protocol => "protocol",
            Self::Io => "io",
            Self::Other => "other",
        }
    }

    /// Classifies the error tokio-rustls returned from `accept`.
    pub fn classify(e: &std::io::Error) -> Self {
        let Some(tls) = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) else {
            return Self::Io;
        };
        match tls {
            rustls::Error::PeerIncompatible(_) | rustls::Error::NoApplicationProtocol => {
                Self::Incompatible
            }
            rustls::Error::AlertReceived(_) => Self::Alert,
            rustls::Error::InvalidMessage(_)
            | rustls::Error::PeerMisbehaved(_)
            | rustls::Error::InappropriateMessage { .. }
            | rustls::Error::InappropriateHandshakeMessage { .. }
            | rustls::Error::DecryptError => Self::Protocol,
            rustls::Error::NoCertificatesPresented => Self::NoCertificate,
            rustls::Error::General(m) if m.contains("certificate") => Self::NoCertificate,
            _ => Self::Other,
        }
    }
}

/// TLS handshakes on the public port.
#[derive(Debug, Default)]
pub struct TlsStats {
    handshakes: AtomicU64,
    failures: [AtomicU64; 8],
    sni_ip_literal: AtomicU64,
    /// Refused by `[client_limits]`: connections, requests.
    client_refused: [AtomicU64; 2],
}

/// Counters of one access-log sink.
#[derive(Debug, Default)]
pub struct SinkStats {
    /// Records handed to the destination.
    pub written: AtomicU64,
    /// Records dropped because the queue was full.
    pub dropped_queue_full: AtomicU64,
    /// Records dropped because they did not fit one UDP datagram.
    pub dropped_oversize: AtomicU64,
    /// Records the destination refused (write or send failed).
    pub dropped_error: AtomicU64,
}

impl SinkStats {
    /// All records dropped, whatever the reason.
    pub fn dropped(&self) -> u64 {
        self.dropped_queue_full.load(Ordering::Relaxed)
            + self.dropped_oversize.load(Ordering::Relaxed)
            + self.dropped_error.load(Ordering::Relaxed)
    }
}

/// One VRRP instance.
#[derive(Debug, Default)]
struct VrrpStats {
    /// 0 initialize, 1 backup, 2 master, 3 fault.
    state: AtomicU8,
    transitions: AtomicU64,
}

const VRRP_STATES: [&str; 4] = ["initialize", "backup", "master", "fault"];

/// The process-wide registry. Cheap to share (`Arc<Metrics>`).
#[derive(Debug)]
pub struct Metrics {
    routes: Mutex<BTreeMap<String, Arc<RouteStats>>>,
    unrouted: Arc<RouteStats>,
    passthrough: Mutex<BTreeMap<String, Arc<PassthroughStats>>>,
    tls: TlsStats,
    sinks: Mutex<BTreeMap<String, Arc<SinkStats>>>,
    vrrp: Mutex<BTreeMap<(u8, String), Arc<VrrpStats>>>,
    reloads_ok: AtomicU64,
    reloads_failed: AtomicU64,
    /// 1 or 0.
    last_reload_ok: AtomicU8,
    /// Unix seconds of the last successful config load (start counts).
    last_success: AtomicI64,
    started: SystemTime,
}

/// Seconds since the Unix epoch (negative before it).
pub fn unix(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

fn get_or_insert<K: Ord, V: Default>(m: &Mutex<BTreeMap<K, Arc<V>>>, k: K) -> Arc<V> {
    m.lock()
        .unwrap_or_else(PoisonError::into_inner)
        .entry(k)
        .or_default()
        .clone()
}

impl Metrics {
    /// An empty registry; the config loaded at start counts as a successful load.
    pub fn new() -> Arc<Self> {
        let now = SystemTime::now();
        Arc::new(Self {
            routes: Mutex::default(),
            unrouted: Arc::default(),
            passthrough: Mutex::default(),
            tls: TlsStats::default(),
            sinks: Mutex::default(),
            vrrp: Mutex::default(),
            reloads_ok: AtomicU64::new(0),
            reloads_failed: AtomicU64::new(0),
            last_reload_ok: AtomicU8::new(1),
            last_success: AtomicI64::new(unix(now)),
            started: now,
        })
    }

    /// The counters of the route named `name` (made on first use).
    pub fn route(&self, name: &str) -> Arc<RouteStats> {
        if let Some(r) = self
            .routes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(name)
        {
            return r.clone();
        }
        get_or_insert(&self.routes, name.to_owned())
    }

    /// Requests that matched no route (and the plain-HTTP port's).
    pub fn unrouted(&self) -> Arc<RouteStats> {
        self.unrouted.clone()
    }

    /// The passthrough counters of pool `name`.
    pub fn passthrough(&self, pool: &str) -> Arc<PassthroughStats> {
        get_or_insert(&self.passthrough, pool.to_owned())
    }

    /// The counters of access-log sink `name`.
    pub fn sink(&self, name: &str) -> Arc<SinkStats> {
        get_or_insert(&self.sinks, name.to_owned())
    }

    /// A TLS handshake completed.
    pub fn tls_handshake(&self) {
        self.tls.handshakes.fetch_add(1, Ordering::Relaxed);
    }

    /// `[client_limits]` refused a connection (`requests`: false) or a
    /// request (true).
    pub fn client_refused(&self, requests: bool) {
        if let Some(c) = self.tls.client_refused.get(usize::from(requests)) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A ClientHello named an IP address as SNI (served as no SNI).
    pub fn sni_ip_literal(&self) {
        self.tls.sni_ip_literal.fetch_add(1, Ordering::Relaxed);
    }

    /// A TLS handshake failed.
    pub fn tls_failure(&self, why: HandshakeFailure) {
        let i = HandshakeFailure::ALL
            .iter()
            .position(|h| *h == why)
            .unwrap_or(7);
        if let Some(c) = self.tls.failures.get(i) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A VRRP instance changed state (`transition`: a real change, not the
    /// initial report).
    pub fn vrrp_state(&self, vrid: u8, interface: &str, state: edge_vrrp::State, transition: bool) {
        let s = get_or_insert(&self.vrrp, (vrid, interface.to_owned()));
        let v = match state {
            edge_vrrp::State::Initialize => 0,
            edge_vrrp::State::Backup => 1,
            edge_vrrp::State::Master => 2,
            edge_vrrp::State::Fault => 3,
        };
        s.state.store(v, Ordering::Relaxed);
        if transition {
            s.transitions.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Records the outcome of a config reload (SIGHUP or admin command).
    pub fn reload_result(&self, ok: bool) {
        if ok {
            self.reloads_ok.fetch_add(1, Ordering::Relaxed);
            self.last_success
                .store(unix(SystemTime::now()), Ordering::Relaxed);
        } else {
            self.reloads_failed.fetch_add(1, Ordering::Relaxed);
        }
        self.last_reload_ok.store(u8::from(ok), Ordering::Relaxed);
    }

    /// The exposition text.
    pub fn render(&self) -> String {
        render::render(self, |_| ())
    }

    /// The exposition text, with `extra` families (e.g. the gauges of the
    /// running config) written after the process's own.
    pub fn render_with(&self, extra: impl FnOnce(&mut Out)) -> String {
        render::render(self, extra)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_survive_and_render() {
        let m = Metrics::new();
        let a = m.route("api");
        a.observe(204, Duration::from_millis(3));
        a.observe(503, Duration::from_millis(300));
        a.observe(42, Duration::ZERO);
        // A reload looks the route up again: the same counters.
        assert!(Arc::ptr_eq(&a, &m.route("api")));
        assert_eq!(
            (a.requests("2xx"), a.requests("5xx"), a.requests("other")),
            (1, 1, 1)
        );
        m.vrrp_state(7, "eth0", edge_vrrp::State::Initialize, false);
        m.vrrp_state(7, "eth0", edge_vrrp::State::Backup, true);
        m.vrrp_state(7, "eth0", edge_vrrp::State::Master, true);
        m.tls_failure(HandshakeFailure::Timeout);
        m.reload_result(false);
        m.sink("c\"q")
            .dropped_queue_full
            .fetch_add(3, Ordering::Relaxed);
        let t = m.render();
        for line in [
            "edge_http_requests_total{route=\"api\",class=\"5xx\"} 1",
            "edge_http_request_duration_seconds_bucket{route=\"api\",le=\"0.005\"} 2",
            "edge_http_request_duration_seconds_bucket{route=\"api\",le=\"0.25\"} 2",
            "edge_http_request_duration_seconds_bucket{route=\"api\",le=\"0.5\"} 3",
            "edge_http_request_duration_seconds_count{route=\"api\"} 3",
            "edge_vrrp_state{vrid=\"7\",interface=\"eth0\",state=\"master\"} 1",
            "edge_vrrp_state{vrid=\"7\",interface=\"eth0\",state=\"backup\"} 0",
            "edge_vrrp_transitions_total{vrid=\"7\",interface=\"eth0\"} 2",
            "edge_tls_handshake_failures_total{reason=\"timeout\"} 1",
            "edge_config_reloads_total{result=\"failure\"} 1",
            "edge_config_last_reload_successful 0",
            "edge_access_log_dropped_total{sink=\"c\\\"q\",reason=\"queue_full\"} 3",
        ] {
            assert!(t.lines().any(|l| l == line), "{line} not in\n{t}");
        }
        m.reload_result(true);
        assert!(
            m.render()
                .contains("edge_config_last_reload_successful 1\n")
        );
    }
}
