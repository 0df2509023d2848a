//! `[client_limits]`: per-client limits (HAProxy's stick tables with
//! `conn_cur` / `http_req_rate`, nginx's `limit_conn` / `limit_req`), off by
//! default.

use serde::Deserialize;
use toml::Spanned;

use super::{IpNet, Validator};

/// `[client_limits]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClientLimitsFile {
    pub max_connections: u32,
    pub requests_per_second: f64,
    pub burst: Option<u32>,
    pub exempt: Vec<Spanned<String>>,
    pub table_size: usize,
}

impl Default for ClientLimitsFile {
    fn default() -> Self {
        Self {
            max_connections: 0,
            requests_per_second: 0.0,
            burst: None,
            exempt: Vec::new(),
            table_size: 100_000,
        }
    }
}

/// `[client_limits]`, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientLimitSettings {
    /// Connections one client address may hold at once (0: no limit).
    pub max_connections: u32,
    /// Requests per second one client address may make, on average (0: no
    /// limit).
    pub requests_per_second: f64,
    /// Requests one client may make at once above the rate.
    pub burst: u32,
    /// Client networks never limited.
    pub exempt: Vec<IpNet>,
    /// Client addresses tracked at most (idle ones are forgotten first).
    pub table_size: usize,
}

impl ClientLimitSettings {
    /// Whether any limit is on.
    pub fn enabled(&self) -> bool {
        self.config().enabled()
    }

    /// edge-balance's limits and table, `None` when every limit is off.
    pub fn limits(&self) -> Option<std::sync::Arc<edge_balance::client_limit::ClientLimits>> {
        let exempt = self.exempt.clone();
        edge_balance::client_limit::ClientLimits::new(self.config(), move |ip| {
            IpNet::any_contains(&exempt, ip)
        })
    }

    fn config(&self) -> edge_balance::client_limit::ClientLimitConfig {
        edge_balance::client_limit::ClientLimitConfig {
            max_connections: self.max_connections,
            requests_per_second: self.requests_per_second,
            burst: self.burst,
            table_size: self.table_size,
        }
    }
}

impl Validator<'_> {
    pub(super) fn client_limits(&mut self, f: &ClientLimitsFile) -> ClientLimitSettings {
        let rate = f.requests_per_second;
        if !rate.is_finite() || rate < 0.0 {
            self.errors.push(self.src.error(
                0..0,
                "client_limits.requests_per_second",
                "must be a number >= 0 (0: no limit)",
            ));
        }
        if f.table_size == 0 {
            self.errors.push(
                self.src
                    .error(0..0, "client_limits.table_size", "must be > 0"),
            );
        }
        let exempt = self.nets(&f.exempt, "client_limits.exempt");
        ClientLimitSettings {
            max_connections: f.max_connections,
            requests_per_second: if rate.is_finite() { rate.max(0.0) } else { 0.0 },
            // By default a client may make one second's worth at once.
            burst: f.burst.unwrap_or_else(|| rate.ceil().max(1.0) as u32),
            exempt,
            table_size: f.table_size.max(1),
        }
    }
}
