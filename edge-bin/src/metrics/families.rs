//! Every metric family edge exports: its name, help, labels and buckets,
//! registered once in the process's [`Registry`]. The names are documented
//! in docs/OBSERVABILITY.md (`[management]`); the alert rules and the dashboard
//! under deploy/ use them.

use prometheus::{
    HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

/// Upper bounds in seconds of the request and response latency
/// histograms: from half a millisecond (a backend on the same LAN) to a
/// minute (a slow upload).
pub(super) const LATENCY_BUCKETS: [f64; 16] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0,
];

/// Upper bounds in seconds of the health-check duration histogram (checks
/// time out after seconds, not minutes).
const PROBE_BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

/// The families, each a handle into the registry.
#[derive(Debug)]
pub(super) struct Families {
    pub build_info: IntGaugeVec,
    pub start_time: IntGauge,
    pub http_requests: IntCounterVec,
    pub http_duration: HistogramVec,
    pub backend_responses: IntCounterVec,
    pub backend_errors: IntCounterVec,
    pub backend_duration: HistogramVec,
    pub health_check_duration: HistogramVec,
    pub dns_lookups: IntCounterVec,
    pub dns_held: IntGaugeVec,
    pub passthrough_connections: IntCounterVec,
    pub passthrough_failed: IntCounterVec,
    pub passthrough_received: IntCounterVec,
    pub passthrough_sent: IntCounterVec,
    pub tls_handshakes: IntCounterVec,
    pub tls_sni_ip_literal: IntCounter,
    pub tls_failures: IntCounterVec,
    pub client_refused: IntCounterVec,
    pub sink_records: IntCounterVec,
    pub sink_dropped: IntCounterVec,
    pub vrrp_state: IntGaugeVec,
    pub vrrp_transitions: IntCounterVec,
    pub anycast_announced: IntGaugeVec,
    pub reloads: IntCounterVec,
    pub last_reload_ok: IntGauge,
    pub last_success: IntGauge,
    /// Gauges of the running config, set on each scrape.
    pub pool_servers: IntGaugeVec,
    pub pool_healthy: IntGaugeVec,
    pub pool_capacity_low: IntGaugeVec,
    pub backend_up: IntGaugeVec,
    pub backend_in_flight: IntGaugeVec,
    pub certificate_expiry: IntGaugeVec,
    pub acme_failures: IntGaugeVec,
}

/// Makes and registers one family. The names and label sets below are
/// constants, so a failure is a bug of this file, found by its unit test.
struct Builder<'r> {
    registry: &'r Registry,
}

impl Builder<'_> {
    fn reg<C: prometheus::core::Collector + Clone + 'static>(&self, c: C) -> C {
        if let Err(e) = self.registry.register(Box::new(c.clone())) {
            tracing::error!(error = %e, "metric family not registered");
        }
        c
    }

    fn counter(&self, name: &str, help: &str) -> IntCounter {
        self.reg(IntCounter::new(name, help).unwrap_or_else(|e| invalid(name, &e)))
    }

    fn counters(&self, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
        self.reg(
            IntCounterVec::new(Opts::new(name, help), labels).unwrap_or_else(|e| invalid(name, &e)),
        )
    }

    fn gauge(&self, name: &str, help: &str) -> IntGauge {
        self.reg(IntGauge::new(name, help).unwrap_or_else(|e| invalid(name, &e)))
    }

    fn gauges(&self, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
        self.reg(
            IntGaugeVec::new(Opts::new(name, help), labels).unwrap_or_else(|e| invalid(name, &e)),
        )
    }

    fn histograms(&self, name: &str, help: &str, labels: &[&str], buckets: &[f64]) -> HistogramVec {
        let opts = HistogramOpts::new(name, help).buckets(buckets.to_vec());
        self.reg(HistogramVec::new(opts, labels).unwrap_or_else(|e| invalid(name, &e)))
    }
}

/// A family whose constant name or labels the library refused.
#[track_caller]
fn invalid(name: &str, e: &prometheus::Error) -> ! {
    unreachable!("metric family {name}: {e}")
}

impl Families {
    pub(super) fn new(registry: &Registry) -> Self {
        let b = Builder { registry };
        Self {
            build_info: b.gauges("edge_build_info", "The running edge version.", &["version"]),
            start_time: b.gauge("edge_start_time_seconds", "Unix time the process started."),
            http_requests: b.counters(
                "edge_http_requests_total",
                "HTTP requests by route (\"-\": no route matched, or the plain-HTTP port) and status class, counted when the response ends.",
                &["route", "class"],
            ),
            http_duration: b.histograms(
                "edge_http_request_duration_seconds",
                "Time from the request headers to the end of the response body, by route.",
                &["route"],
                &LATENCY_BUCKETS,
            ),
            backend_responses: b.counters(
                "edge_backend_responses_total",
                "Responses relayed from each server, by status class (the attempt that answered).",
                &["pool", "server", "class"],
            ),
            backend_errors: b.counters(
                "edge_backend_errors_total",
                "Failed attempts on each server, by kind: connect (no connection), response (sent, then reset or malformed), timeout (no answer in response_timeout), status_5xx (answered 5xx).",
                &["pool", "server", "kind"],
            ),
            backend_duration: b.histograms(
                "edge_backend_response_duration_seconds",
                "Time from sending a request to a server to its response headers, by server.",
                &["pool", "server"],
                &LATENCY_BUCKETS,
            ),
            health_check_duration: b.histograms(
                "edge_health_check_duration_seconds",
                "How long each active health check took, by server and result (pass, fail).",
                &["pool", "server", "result"],
                &PROBE_BUCKETS,
            ),
            dns_lookups: b.counters(
                "edge_dns_lookups_total",
                "DNS lookups of the servers given by name, by pool, source (NAME:PORT or SRV name) and result: answered, not_found (NXDOMAIN, no records), failed (SERVFAIL, timeout, unreachable).",
                &["pool", "source", "result"],
            ),
            dns_held: b.gauges(
                "edge_dns_last_good_held",
                "1 while lookups of a source fail and the last servers found are kept (the [resolvers] hold time), else 0.",
                &["pool", "source"],
            ),
            passthrough_connections: b.counters(
                "edge_passthrough_connections_total",
                "Passthrough (SNI-routed, not terminated) connections accepted, by pool.",
                &["pool"],
            ),
            passthrough_failed: b.counters(
                "edge_passthrough_failed_total",
                "Passthrough connections closed because no server could be reached, by pool.",
                &["pool"],
            ),
            passthrough_received: b.counters(
                "edge_passthrough_received_bytes_total",
                "Bytes relayed from clients to servers on finished passthrough connections, by pool.",
                &["pool"],
            ),
            passthrough_sent: b.counters(
                "edge_passthrough_sent_bytes_total",
                "Bytes relayed from servers to clients on finished passthrough connections, by pool.",
                &["pool"],
            ),
            tls_handshakes: b.counters(
                "edge_tls_handshakes_total",
                "TLS handshakes completed on the public port (terminated connections), by key exchange group (none for a TLS 1.2 resumption), resumed or full, and version (1.2, 1.3).",
                &["group", "resumed", "version"],
            ),
            tls_sni_ip_literal: b.counter(
                "edge_tls_sni_ip_literal_total",
                "ClientHellos whose SNI was an IP address (RFC 6066 forbids it), served as no SNI.",
            ),
            tls_failures: b.counters(
                "edge_tls_handshake_failures_total",
                "TLS handshakes that failed on the public port, by reason.",
                &["reason"],
            ),
            client_refused: b.counters(
                "edge_client_limit_refused_total",
                "Connections and requests refused by [client_limits], by kind.",
                &["kind"],
            ),
            sink_records: b.counters(
                "edge_access_log_records_total",
                "Access records handed to each sink's destination.",
                &["sink"],
            ),
            sink_dropped: b.counters(
                "edge_access_log_dropped_total",
                "Access records dropped per sink: queue full (the destination is slow or down), oversize (larger than a UDP datagram) or error (the destination refused it).",
                &["sink", "reason"],
            ),
            vrrp_state: b.gauges(
                "edge_vrrp_state",
                "VRRP instance state: 1 for the current state, 0 for the others.",
                &["vrid", "interface", "state"],
            ),
            vrrp_transitions: b.counters(
                "edge_vrrp_transitions_total",
                "VRRP state changes per instance.",
                &["vrid", "interface"],
            ),
            anycast_announced: b.gauges(
                "edge_anycast_announced",
                "1 while this node announces the [[anycast]] address (it is on the routing daemon's dummy interface), 0 while withdrawn.",
                &["address"],
            ),
            reloads: b.counters(
                "edge_config_reloads_total",
                "Config reloads (SIGHUP or admin), by result.",
                &["result"],
            ),
            last_reload_ok: b.gauge(
                "edge_config_last_reload_successful",
                "1 when the last config load (the start or a reload) succeeded.",
            ),
            last_success: b.gauge(
                "edge_config_last_reload_success_timestamp_seconds",
                "Unix time of the last successful config load.",
            ),
            pool_servers: b.gauges("edge_pool_servers", "Servers configured per pool.", &["pool"]),
            pool_healthy: b.gauges(
                "edge_pool_healthy_servers",
                "Servers in rotation per pool (healthy and not ejected).",
                &["pool"],
            ),
            pool_capacity_low: b.gauges(
                "edge_pool_capacity_low",
                "1 while the pool's capacity alert is raised (too few servers in rotation), else 0.",
                &["pool"],
            ),
            backend_up: b.gauges(
                "edge_backend_up",
                "1 when the server is in rotation (health checks and outlier detection), else 0.",
                &["pool", "server"],
            ),
            backend_in_flight: b.gauges(
                "edge_backend_in_flight",
                "Requests (until the response body ends), tunnels and passthrough connections on each server.",
                &["pool", "server"],
            ),
            certificate_expiry: b.gauges(
                "edge_certificate_expiry_seconds",
                "Seconds until the certificate served for each name expires (negative: expired).",
                &["name"],
            ),
            acme_failures: b.gauges(
                "edge_acme_consecutive_failures",
                "Failed attempts in a row to obtain or renew each [acme] certificate, by its first name (0 after a success).",
                &["name"],
            ),
        }
    }

    /// Clears the gauges that describe the running config, before a scrape
    /// sets them again (a pool or server that left the config leaves them).
    pub(super) fn reset_config_gauges(&self) {
        for g in [
            &self.pool_servers,
            &self.pool_healthy,
            &self.pool_capacity_low,
            &self.backend_up,
            &self.backend_in_flight,
            &self.certificate_expiry,
            &self.acme_failures,
        ] {
            g.reset();
        }
    }
}
