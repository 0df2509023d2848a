//! Process-wide metrics, kept in a `prometheus` crate [`Registry`] and
//! exposed in the Prometheus text format (0.0.4) by the management
//! listener.
//!
//! One [`Metrics`] is made in `serve()` and outlives every config: the
//! per-route, per-pool and per-server counters are looked up by name when a
//! config's state is built (a lock taken only then) and handed to the data
//! path as `Arc`s, so a request touches a few atomics and nothing else, and
//! counters continue across reloads. Gauges that describe the current
//! config (backend health, in-flight requests, certificates) are set by the
//! management listener from the current state when scraped
//! ([`Metrics::render_with`]).
//!
//! ```
//! let m = edge_bin::metrics::Metrics::new();
//! m.reload_result(true);
//! let text = m.render();
//! assert!(text.contains("edge_config_reloads_total{result=\"success\"} 1"));
//! ```

mod families;
mod quantile;
mod server;
mod snapshot;
mod tls;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus::{Encoder as _, Histogram, IntCounter, Registry, TextEncoder};

use families::Families;
pub use quantile::Percentiles;
pub use server::{BackendError, DnsStats, ServerStats};
pub use snapshot::{SinkSnapshot, VrrpSnapshot};
pub use tls::{Handshake, HandshakeFailure};

/// Status class labels, in counter order.
const CLASSES: [&str; 6] = ["1xx", "2xx", "3xx", "4xx", "5xx", "other"];

/// The index of `status`'s class in [`CLASSES`].
fn class_of(status: u16) -> usize {
    match status {
        100..=599 => usize::from(status / 100 - 1),
        _ => 5,
    }
}

/// The six status-class counters of one family and label set.
fn class_counters(v: &prometheus::IntCounterVec, labels: &[&str]) -> [IntCounter; 6] {
    CLASSES.map(|c| {
        let mut l = labels.to_vec();
        l.push(c);
        v.with_label_values(&l)
    })
}

/// Counters of one route (or of requests that matched none).
#[derive(Debug)]
pub struct RouteStats {
    /// Requests by status class: 1xx, 2xx, 3xx, 4xx, 5xx, other.
    requests: [IntCounter; 6],
    /// Seconds from request headers to the end of the response body.
    latency: Histogram,
}

impl RouteStats {
    /// Counts one finished request.
    pub fn observe(&self, status: u16, duration: Duration) {
        if let Some(c) = self.requests.get(class_of(status)) {
            c.inc();
        }
        self.latency.observe(duration.as_secs_f64());
    }

    /// Requests counted with a status class (`"2xx"`, ...).
    pub fn requests(&self, class: &str) -> u64 {
        CLASSES
            .iter()
            .position(|c| *c == class)
            .and_then(|i| self.requests.get(i))
            .map_or(0, IntCounter::get)
    }
}

/// Counters of the passthrough connections to one pool.
#[derive(Debug)]
pub struct PassthroughStats {
    pub connections: IntCounter,
    /// Connections for which no server could be reached.
    pub failed: IntCounter,
    /// Client to server.
    pub bytes_in: IntCounter,
    /// Server to client.
    pub bytes_out: IntCounter,
}

/// Counters of one access-log sink.
#[derive(Debug)]
pub struct SinkStats {
    /// Records handed to the destination.
    pub written: IntCounter,
    /// Records dropped because the queue was full.
    pub dropped_queue_full: IntCounter,
    /// Records dropped because they did not fit one UDP datagram.
    pub dropped_oversize: IntCounter,
    /// Records the destination refused (write or send failed).
    pub dropped_error: IntCounter,
}

impl SinkStats {
    /// All records dropped, whatever the reason.
    pub fn dropped(&self) -> u64 {
        self.dropped_queue_full.get() + self.dropped_oversize.get() + self.dropped_error.get()
    }
}

/// VRRP state names, in `edge_vrrp::State` order.
const VRRP_STATES: [&str; 4] = ["initialize", "backup", "master", "fault"];

/// One VRRP instance as last reported (for the status page).
#[derive(Debug, Default, Clone, Copy)]
struct VrrpEntry {
    /// An index into [`VRRP_STATES`].
    state: usize,
    transitions: u64,
}

/// The process-wide registry. Cheap to share (`Arc<Metrics>`).
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    f: Families,
    routes: Mutex<BTreeMap<String, Arc<RouteStats>>>,
    unrouted: Arc<RouteStats>,
    passthrough: Mutex<BTreeMap<String, Arc<PassthroughStats>>>,
    sinks: Mutex<BTreeMap<String, Arc<SinkStats>>>,
    servers: Mutex<BTreeMap<(String, SocketAddr), Arc<ServerStats>>>,
    dns: Mutex<BTreeMap<(String, String), Arc<DnsStats>>>,
    vrrp: Mutex<BTreeMap<(u8, String), VrrpEntry>>,
    /// `[[anycast]]` addresses and whether each is announced.
    anycast: Mutex<BTreeMap<std::net::IpAddr, bool>>,
    /// One scrape at a time: each resets and sets the config gauges.
    scrape: Mutex<()>,
}

/// Seconds since the Unix epoch (negative before it).
pub fn unix(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// The value for `key`, made by `make` on first use.
fn get_or_make<K: Ord, V>(
    m: &Mutex<BTreeMap<K, Arc<V>>>,
    key: K,
    make: impl FnOnce(&K) -> V,
) -> Arc<V> {
    let mut m = m.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(v) = m.get(&key) {
        return v.clone();
    }
    let v = Arc::new(make(&key));
    m.insert(key, v.clone());
    v
}

impl Metrics {
    /// An empty registry; the config loaded at start counts as a successful load.
    pub fn new() -> Arc<Self> {
        let registry = Registry::new();
        let f = Families::new(&registry);
        #[cfg(target_os = "linux")]
        if let Err(e) = registry.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        )) {
            tracing::warn!(error = %e, "process metrics not registered");
        }
        f.build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        let now = unix(SystemTime::now());
        f.start_time.set(now);
        f.last_success.set(now);
        f.last_reload_ok.set(1);
        for result in ["success", "failure"] {
            f.reloads.with_label_values(&[result]);
        }
        for kind in ["connections", "requests"] {
            f.client_refused.with_label_values(&[kind]);
        }
        for h in HandshakeFailure::ALL {
            f.tls_failures.with_label_values(&[h.as_str()]);
        }
        let unrouted = Arc::new(route_stats(&f, "-"));
        Arc::new(Self {
            registry,
            f,
            routes: Mutex::default(),
            unrouted,
            passthrough: Mutex::default(),
            sinks: Mutex::default(),
            servers: Mutex::default(),
            dns: Mutex::default(),
            vrrp: Mutex::default(),
            anycast: Mutex::default(),
            scrape: Mutex::default(),
        })
    }

    /// The counters of the route named `name` (made on first use).
    pub fn route(&self, name: &str) -> Arc<RouteStats> {
        get_or_make(&self.routes, name.to_owned(), |n| route_stats(&self.f, n))
    }

    /// Requests that matched no route (and the plain-HTTP port's).
    pub fn unrouted(&self) -> Arc<RouteStats> {
        self.unrouted.clone()
    }

    /// The passthrough counters of pool `name`.
    pub fn passthrough(&self, pool: &str) -> Arc<PassthroughStats> {
        get_or_make(&self.passthrough, pool.to_owned(), |p| {
            let l = [p.as_str()];
            PassthroughStats {
                connections: self.f.passthrough_connections.with_label_values(&l),
                failed: self.f.passthrough_failed.with_label_values(&l),
                bytes_in: self.f.passthrough_received.with_label_values(&l),
                bytes_out: self.f.passthrough_sent.with_label_values(&l),
            }
        })
    }

    /// The counters of access-log sink `name`.
    pub fn sink(&self, name: &str) -> Arc<SinkStats> {
        get_or_make(&self.sinks, name.to_owned(), |n| {
            let d = |reason: &str| self.f.sink_dropped.with_label_values(&[n.as_str(), reason]);
            SinkStats {
                written: self.f.sink_records.with_label_values(&[n.as_str()]),
                dropped_queue_full: d("queue_full"),
                dropped_oversize: d("oversize"),
                dropped_error: d("error"),
            }
        })
    }

    /// The counters of server `addr` of pool `pool` (made on first use;
    /// the same across reloads).
    pub fn server(&self, pool: &str, addr: SocketAddr) -> Arc<ServerStats> {
        get_or_make(&self.servers, (pool.to_owned(), addr), |(p, a)| {
            ServerStats::new(&self.f, p, &a.to_string())
        })
    }

    /// The lookup counters of a pool's source of servers found by DNS.
    pub fn dns(&self, pool: &str, source: &str) -> Arc<DnsStats> {
        get_or_make(&self.dns, (pool.to_owned(), source.to_owned()), |(p, s)| {
            DnsStats::new(&self.f, p, s)
        })
    }

    /// A TLS handshake completed.
    pub fn tls_handshake(&self, h: Handshake) {
        let resumed = match h.resumed {
            Some(true) => "true",
            Some(false) => "false",
            None => "unknown",
        };
        self.f
            .tls_handshakes
            .with_label_values(&[h.group, resumed, h.version])
            .inc();
    }

    /// `[client_limits]` refused a connection (`requests`: false) or a
    /// request (true).
    pub fn client_refused(&self, requests: bool) {
        let kind = if requests { "requests" } else { "connections" };
        self.f.client_refused.with_label_values(&[kind]).inc();
    }

    /// A ClientHello named an IP address as SNI (served as no SNI).
    pub fn sni_ip_literal(&self) {
        self.f.tls_sni_ip_literal.inc();
    }

    /// A TLS handshake failed.
    pub fn tls_failure(&self, why: HandshakeFailure) {
        self.f.tls_failures.with_label_values(&[why.as_str()]).inc();
    }

    /// An `[[anycast]]` address was announced or withdrawn.
    pub fn anycast_announced(&self, address: std::net::IpAddr, announced: bool) {
        self.f
            .anycast_announced
            .with_label_values(&[address.to_string().as_str()])
            .set(i64::from(announced));
        self.anycast
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(address, announced);
    }

    /// Every `[[anycast]]` address seen and whether it is announced.
    pub fn anycast_snapshot(&self) -> Vec<(std::net::IpAddr, bool)> {
        let map = self.anycast.lock().unwrap_or_else(PoisonError::into_inner);
        map.iter().map(|(a, b)| (*a, *b)).collect()
    }

    /// A VRRP instance changed state (`transition`: a real change, not the
    /// initial report).
    pub fn vrrp_state(&self, vrid: u8, interface: &str, state: edge_vrrp::State, transition: bool) {
        let cur = match state {
            edge_vrrp::State::Initialize => 0,
            edge_vrrp::State::Backup => 1,
            edge_vrrp::State::Master => 2,
            edge_vrrp::State::Fault => 3,
        };
        let vrid_s = vrid.to_string();
        let mut map = self.vrrp.lock().unwrap_or_else(PoisonError::into_inner);
        let e = map.entry((vrid, interface.to_owned())).or_default();
        e.state = cur;
        for (i, name) in VRRP_STATES.iter().enumerate() {
            self.f
                .vrrp_state
                .with_label_values(&[vrid_s.as_str(), interface, name])
                .set(i64::from(i == cur));
        }
        let transitions = self
            .f
            .vrrp_transitions
            .with_label_values(&[vrid_s.as_str(), interface]);
        if transition {
            e.transitions += 1;
            transitions.inc();
        }
    }

    /// Records the outcome of a config reload (SIGHUP or admin command).
    pub fn reload_result(&self, ok: bool) {
        let result = if ok { "success" } else { "failure" };
        self.f.reloads.with_label_values(&[result]).inc();
        if ok {
            self.f.last_success.set(unix(SystemTime::now()));
        }
        self.f.last_reload_ok.set(i64::from(ok));
    }

    /// Registers a family owned by another module (the `[etcd]` link's).
    pub fn register(&self, c: Box<dyn prometheus::core::Collector>) {
        if let Err(e) = self.registry.register(c) {
            tracing::error!(error = %e, "metric family not registered");
        }
    }

    /// The exposition text.
    pub fn render(&self) -> String {
        self.render_with(|_| ())
    }

    /// The exposition text, with the gauges of the running config set by
    /// `set` first (those of an earlier scrape are cleared).
    pub fn render_with(&self, set: impl FnOnce(&ConfigGauges<'_>)) -> String {
        let _one = self.scrape.lock().unwrap_or_else(PoisonError::into_inner);
        self.f.reset_config_gauges();
        set(&ConfigGauges(&self.f));
        let mut out = Vec::with_capacity(32 * 1024);
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::warn!(error = %e, "metrics not encoded");
        }
        String::from_utf8(out).unwrap_or_default()
    }
}

fn route_stats(f: &Families, name: &str) -> RouteStats {
    RouteStats {
        requests: class_counters(&f.http_requests, &[name]),
        latency: f.http_duration.with_label_values(&[name]),
    }
}

/// The gauges that describe the running config, set on each scrape.
#[derive(Debug)]
pub struct ConfigGauges<'a>(&'a Families);

impl ConfigGauges<'_> {
    /// A pool: servers configured, in rotation, and its capacity alert.
    pub fn pool(&self, pool: &str, servers: usize, healthy: usize, capacity_low: bool) {
        let l = [pool];
        let n = |v: usize| i64::try_from(v).unwrap_or(i64::MAX);
        self.0.pool_servers.with_label_values(&l).set(n(servers));
        self.0.pool_healthy.with_label_values(&l).set(n(healthy));
        self.0
            .pool_capacity_low
            .with_label_values(&l)
            .set(i64::from(capacity_low));
    }

    /// Whether a server is in rotation.
    pub fn server_up(&self, pool: &str, server: SocketAddr, up: bool) {
        let s = server.to_string();
        self.0
            .backend_up
            .with_label_values(&[pool, s.as_str()])
            .set(i64::from(up));
    }

    /// Requests, tunnels and connections on a server now.
    pub fn server_in_flight(&self, pool: &str, server: SocketAddr, n: u64) {
        let s = server.to_string();
        self.0
            .backend_in_flight
            .with_label_values(&[pool, s.as_str()])
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// Seconds until the certificate served for `name` expires.
    pub fn certificate_expiry(&self, name: &str, seconds: i64) {
        self.0
            .certificate_expiry
            .with_label_values(&[name])
            .set(seconds);
    }

    /// Failed ACME attempts in a row for a managed certificate.
    pub fn acme_failures(&self, name: &str, failures: u32) {
        self.0
            .acme_failures
            .with_label_values(&[name])
            .set(i64::from(failures));
    }
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
