//! `[[pool]]`: backend servers, timeouts, queueing, retries, active health
//! checks and outlier detection; and the edge-health settings of a pool
//! ([`PoolSettings::health_config`]), which validation checks too.

use std::collections::HashSet;
use std::time::Duration;

use edge_health::{CheckConfig, HttpProbe, InitialState, OutlierConfig, PoolConfig, Probe};

use super::discovery::ServerEntry;
use super::{BackendProtocol, HealthKind, Policy, Validator, model};

/// `[[pool]]`, validated.
#[derive(Debug, Clone)]
pub struct PoolSettings {
    pub name: String,
    /// The servers given as `IP:PORT`.
    pub servers: Vec<(std::net::SocketAddr, u32)>,
    /// The servers found by DNS (`NAME:PORT`, `srv`).
    pub discover: Vec<super::discovery::Discover>,
    pub policy: Policy,
    pub protocol: BackendProtocol,
    pub connect_timeout: Duration,
    pub response_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections_per_server: usize,
    pub max_queue: usize,
    pub queue_timeout: Duration,
    pub retries: u32,
    pub health: Option<HealthSettings>,
    pub outlier_consecutive_failures: u32,
    pub outlier_ejection_time: Duration,
    pub outlier_max_ejection_percent: u8,
    pub retry_budget_percent: u8,
    /// Hashing, slow start, fail-open and the capacity alert.
    pub options: super::PoolOptions,
    /// `[pool.tls]`: TLS to the servers; `None`: plaintext.
    pub tls: Option<super::BackendTlsSettings>,
}

/// `[pool.health]`, validated.
#[derive(Debug, Clone)]
pub struct HealthSettings {
    pub kind: HealthKind,
    pub path: String,
    pub host: Option<String>,
    pub interval: Duration,
    pub timeout: Duration,
    pub rise: u32,
    pub fall: u32,
    /// `fastinter`, `downinter`, `expect_status`, `expect_body`, `initial_state`.
    pub options: super::HealthOptions,
}

impl PoolSettings {
    /// The edge-health settings of this pool: the configured probe, or a
    /// TCP connect probe when the pool has no `[pool.health]`.
    pub fn health_config(&self) -> PoolConfig {
        let targets = self.servers.iter().map(|(a, _)| *a);
        let mut check = CheckConfig::default().initial(InitialState::AssumedUp);
        let mut probe = Probe::Tcp;
        if let Some(h) = &self.health {
            check = check
                .inter(h.interval)
                .timeout(h.timeout)
                .rise(h.rise)
                .fall(h.fall);
            check = h.options.apply_check(check);
            if h.kind == HealthKind::Http {
                let mut hp = h.options.apply_http(HttpProbe::get(h.path.clone()));
                if let Some(host) = &h.host {
                    hp = hp.host(host.clone());
                }
                probe = Probe::Http(hp);
            }
            // Validation makes sure the pool has TLS settings for these.
            if let Some(tls) = self
                .tls
                .as_ref()
                .map(super::BackendTlsSettings::health_probe)
            {
                match h.kind {
                    HealthKind::Https => {
                        let mut hp = h
                            .options
                            .apply_http(HttpProbe::get(h.path.clone()))
                            .tls(tls);
                        if let Some(host) = &h.host {
                            hp = hp.host(host.clone());
                        }
                        probe = Probe::Http(hp);
                    }
                    HealthKind::Tls => probe = Probe::Tls(tls),
                    HealthKind::Http | HealthKind::Tcp => {}
                }
            }
        }
        let outlier = OutlierConfig {
            enabled: self.outlier_consecutive_failures > 0,
            consecutive_failures: self.outlier_consecutive_failures.max(1),
            base_ejection_time: self.outlier_ejection_time,
            max_ejection_time: self.outlier_ejection_time.saturating_mul(10),
            max_ejection_percent: self.outlier_max_ejection_percent,
        };
        let cfg = PoolConfig::new(self.name.clone(), targets)
            .probe(probe)
            .check(check)
            .outlier(outlier)
            .capacity(self.options.capacity.clone());
        self.servers
            .iter()
            .fold(cfg, |cfg, &(addr, w)| cfg.weight(addr, w))
    }
}

impl Validator<'_> {
    /// The pools and their names (everything else refers to them).
    pub(super) fn pools(&mut self, list: &[model::Pool]) -> (Vec<PoolSettings>, HashSet<String>) {
        let mut pools = Vec::new();
        let mut pool_names = HashSet::new();
        for (i, p) in list.iter().enumerate() {
            let key = format!("pool[{i}]");
            if !pool_names.insert(p.name.get_ref().clone()) {
                self.err(
                    &p.name,
                    format!("{key}.name"),
                    format!("duplicate pool name {:?}", p.name.get_ref()),
                );
            }
            if p.servers.is_empty() {
                self.err(
                    &p.name,
                    format!("{key}.server"),
                    "a pool needs at least one [[pool.server]]",
                );
            }
            let mut servers = Vec::new();
            let mut discover = Vec::new();
            for (j, s) in p.servers.iter().enumerate() {
                match self.server_entry(s, &format!("{key}.server[{j}]")) {
                    Some(ServerEntry::Static(a, w)) => servers.push((a, w)),
                    Some(ServerEntry::Dns(d)) => discover.push(d),
                    None => {}
                }
                if *s.weight.get_ref() == 0 || *s.weight.get_ref() > 10_000 {
                    self.err(
                        &s.weight,
                        format!("{key}.server[{j}].weight"),
                        "weight must be 1..=10000",
                    );
                }
            }
            let health = p.health.as_ref().map(|h| {
                if h.rise == 0 || h.fall == 0 {
                    self.err(
                        &p.name,
                        format!("{key}.health"),
                        "rise and fall must be at least 1",
                    );
                }
                if !h.path.starts_with('/') {
                    self.err(
                        &p.name,
                        format!("{key}.health.path"),
                        "path must start with '/'",
                    );
                }
                let options = self.health_options(h, &format!("{key}.health"));
                HealthSettings {
                    options,
                    kind: h.kind,
                    path: h.path.clone(),
                    host: h.host.clone(),
                    interval: h.interval.0.max(Duration::from_millis(50)),
                    timeout: h.timeout.0,
                    rise: h.rise,
                    fall: h.fall,
                }
            });
            pools.push(PoolSettings {
                name: p.name.get_ref().clone(),
                servers,
                discover,
                policy: p.policy,
                protocol: p.protocol,
                connect_timeout: p.connect_timeout.0,
                response_timeout: p.response_timeout.0,
                idle_timeout: p.idle_timeout.0,
                max_connections_per_server: p.max_connections_per_server,
                max_queue: p.max_queue,
                queue_timeout: p.queue_timeout.0,
                retries: p.retries.min(10),
                health,
                outlier_consecutive_failures: p.outlier.consecutive_failures,
                outlier_ejection_time: p.outlier.ejection_time.0,
                outlier_max_ejection_percent: p.outlier.max_ejection_percent,
                retry_budget_percent: p.retry_budget_percent.min(100),
                options: self.pool_options(p, &key),
                tls: self.backend_tls(p, &key),
            });
            if let Some(Err(e)) = pools.last().map(|s| s.health_config().validate()) {
                self.err(&p.name, format!("{key}.health"), e.to_string());
            }
        }
        (pools, pool_names)
    }

    /// A reference to a pool by name.
    pub(super) fn pool_ref(
        &mut self,
        names: &HashSet<String>,
        s: &toml::Spanned<String>,
        key: String,
    ) {
        if !names.contains(s.get_ref()) {
            self.err(s, key, format!("no [[pool]] named {:?}", s.get_ref()));
        }
    }
}
