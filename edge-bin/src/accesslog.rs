//! One record per HTTP request and per passthrough connection.
//!
//! For now records go to `tracing` (target `edge::access`); sinks (JSON lines,
//! syslog) take the same struct.

use std::net::SocketAddr;
use std::time::Duration;

/// What happened to one request or passthrough connection.
#[derive(Debug, Default, Clone)]
pub struct AccessRecord {
    pub client: Option<SocketAddr>,
    pub sni: Option<String>,
    pub host: Option<String>,
    pub method: Option<String>,
    pub path: Option<String>,
    pub status: u16,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub duration: Duration,
    pub route: Option<String>,
    pub backend: Option<SocketAddr>,
    pub backend_time: Option<Duration>,
    pub request_id: Option<String>,
    pub tls_version: Option<&'static str>,
    pub attempts: u32,
    /// `"http"` or `"passthrough"`.
    pub kind: &'static str,
}

impl AccessRecord {
    /// Emits the record.
    pub fn emit(&self) {
        tracing::info!(
            target: "edge::access",
            kind = self.kind,
            client = ?self.client,
            sni = self.sni.as_deref().unwrap_or("-"),
            host = self.host.as_deref().unwrap_or("-"),
            method = self.method.as_deref().unwrap_or("-"),
            path = self.path.as_deref().unwrap_or("-"),
            status = self.status,
            bytes_in = self.bytes_in,
            bytes_out = self.bytes_out,
            duration_ms = self.duration.as_secs_f64() * 1000.0,
            route = self.route.as_deref().unwrap_or("-"),
            backend = ?self.backend,
            backend_ms = self.backend_time.map(|d| d.as_secs_f64() * 1000.0),
            request_id = self.request_id.as_deref().unwrap_or("-"),
            tls = self.tls_version.unwrap_or("-"),
            attempts = self.attempts,
        );
    }
}
