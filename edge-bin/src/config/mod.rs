//! The config file: parse (TOML, unknown keys refused), then validate and
//! compile into [`Validated`], which is everything a run needs except sockets.
//!
//! `edge check` runs exactly this; `edge run` runs it and then binds.

pub mod duration;
pub mod error;
pub mod model;
pub mod net;
pub mod observability;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use toml::Spanned;

pub use duration::ConfigDuration;
pub use error::{ConfigError, ConfigErrors, Source};
pub use model::{BackendProtocol, HealthKind, Limits, Policy, ProxyProtocolOut};
pub use net::{HostPattern, IpNet};
pub use observability::{AccessLogSettings, ManagementSettings};

/// A validated, compiled config.
#[derive(Debug)]
pub struct Validated {
    pub worker_threads: usize,
    pub log_level: String,
    pub limits: Limits,
    pub https: HttpsSettings,
    pub http: HttpSettings,
    pub certificates: Vec<LoadedCert>,
    pub passthrough: Vec<PassthroughRule>,
    pub routes: Vec<RouteRule>,
    pub pools: Vec<PoolSettings>,
    pub demo_backends: Vec<SocketAddr>,
    pub acme: AcmeSettings,
    pub vrrp: Vec<VrrpSettings>,
    pub access_logs: Vec<AccessLogSettings>,
    pub management: Option<ManagementSettings>,
    pub admin: AdminSettings,
}

/// `[admin]`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminSettings {
    /// The unix socket path; `None`: no admin socket.
    pub socket: Option<std::path::PathBuf>,
    /// File mode of the socket (default `0o660`).
    pub mode: u32,
    /// Group id to own the socket.
    pub group: Option<u32>,
}

/// `[[vrrp]]`, validated: the edge-vrrp config plus health tracking.
#[derive(Debug, Clone)]
pub struct VrrpSettings {
    pub config: edge_vrrp::Config,
    /// The configured priority (also in `config`), applied in place on reload.
    pub priority: u8,
    /// Pools whose health is tracked (all pools when the key is absent).
    pub track_pools: Vec<String>,
    /// A tracked pool below this share of healthy servers lowers the priority.
    pub min_healthy_share: f64,
    /// How much the priority drops while a tracked pool is below the share.
    pub weight: u8,
}

/// `[https]`, validated.
#[derive(Debug, Clone)]
pub struct HttpsSettings {
    pub listen: Vec<SocketAddr>,
    pub proxy_protocol: bool,
    pub trusted_proxies: Vec<IpNet>,
    pub default_certificate: Option<String>,
    pub strict_host: bool,
    pub trusted_upstreams: Vec<IpNet>,
    pub alpn: Vec<Vec<u8>>,
}

/// `[http]`, validated.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    pub listen: Vec<SocketAddr>,
    pub proxy_protocol: bool,
    pub trusted_proxies: Vec<IpNet>,
    pub redirect_to_https: bool,
    pub https_port: u16,
}

/// `[acme]`, validated.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AcmeSettings {
    pub storage: Option<std::path::PathBuf>,
    pub directory_url: Option<String>,
    pub contact: Vec<String>,
    pub ca_roots: Vec<rustls_pki_types::CertificateDer<'static>>,
    pub peer: Option<http::Uri>,
    pub certificates: Vec<Vec<String>>,
    /// `lock_ttl` / `lock_wait`; `None`: edge-acme's defaults (30 s, 10 min).
    pub lock_ttl: Option<std::time::Duration>,
    pub lock_wait: Option<std::time::Duration>,
}

/// A certificate loaded (or generated) and checked against its key.
#[derive(Debug, Clone)]
pub struct LoadedCert {
    pub name: String,
    pub names: Vec<HostPattern>,
    pub pair: crate::certs::CertPair,
}

/// `[[passthrough]]`, validated.
#[derive(Debug, Clone)]
pub struct PassthroughRule {
    pub sni: Vec<HostPattern>,
    pub pool: String,
    pub proxy_protocol: ProxyProtocolOut,
}

/// `[[route]]`, validated.
#[derive(Debug, Clone)]
pub struct RouteRule {
    pub name: String,
    pub hosts: Vec<HostPattern>,
    pub path_prefix: String,
    pub headers: Vec<(http::HeaderName, Option<http::HeaderValue>)>,
    pub action: RouteAction,
}

/// What a matched route does.
#[derive(Debug, Clone)]
pub enum RouteAction {
    Proxy {
        pool: String,
    },
    Redirect {
        location: String,
        status: http::StatusCode,
        keep_path: bool,
    },
    Respond {
        status: http::StatusCode,
        body: bytes::Bytes,
        content_type: http::HeaderValue,
    },
}

/// `[[pool]]`, validated.
#[derive(Debug, Clone)]
pub struct PoolSettings {
    pub name: String,
    pub servers: Vec<(SocketAddr, u32)>,
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
}

/// Reads, parses and validates a config file.
pub fn load(path: &Path) -> Result<Validated, ConfigErrors> {
    load_with_text(path).map(|(_, v)| v)
}

/// Like [`load`], also returning the file's text (what a reload compares).
pub fn load_with_text(path: &Path) -> Result<(String, Validated), ConfigErrors> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigErrors(vec![ConfigError {
            file: path.to_path_buf(),
            line: 0,
            column: 0,
            key: String::new(),
            message: format!("cannot read config file: {e}"),
        }])
    })?;
    let base = path.parent().unwrap_or(Path::new("."));
    load_str(Source::new(path, text.clone()), base).map(|v| (text, v))
}

/// Parses and validates config text; relative file paths are resolved against `base`.
pub fn load_str(src: Source, base: &Path) -> Result<Validated, ConfigErrors> {
    let file: model::ConfigFile =
        toml::from_str(&src.text).map_err(|e| ConfigErrors(vec![src.from_toml(&e)]))?;
    let mut v = Validator {
        src: &src,
        base,
        errors: Vec::new(),
    };
    let out = v.validate(file);
    if v.errors.is_empty() {
        Ok(out)
    } else {
        Err(ConfigErrors(v.errors))
    }
}

struct Validator<'a> {
    src: &'a Source,
    base: &'a Path,
    errors: Vec<ConfigError>,
}

impl Validator<'_> {
    fn err<T>(&mut self, s: &Spanned<T>, key: impl Into<String>, msg: impl Into<String>) {
        let e = self.src.error(s.span(), key, msg);
        self.errors.push(e);
    }

    fn addr(&mut self, s: &Spanned<String>, key: &str) -> Option<SocketAddr> {
        match s.get_ref().parse::<SocketAddr>() {
            Ok(a) => Some(a),
            Err(_) => {
                self.err(s, key, format!("invalid address {:?}: expected IP:PORT, e.g. \"127.0.0.1:8443\" or \"[::1]:443\"", s.get_ref()));
                None
            }
        }
    }

    fn addrs(&mut self, list: &[Spanned<String>], key: &str) -> Vec<SocketAddr> {
        list.iter()
            .enumerate()
            .filter_map(|(i, s)| self.addr(s, &format!("{key}[{i}]")))
            .collect()
    }

    fn check_proxy_protocol(&mut self, enabled: bool, trusted: &[Spanned<String>], section: &str) {
        if enabled && trusted.is_empty() {
            self.errors.push(self.src.error(
                0..0,
                format!("{section}.trusted_proxies"),
                "proxy_protocol = true needs at least one trusted proxy network",
            ));
        }
    }

    fn nets(&mut self, list: &[Spanned<String>], key: &str) -> Vec<IpNet> {
        let mut out = Vec::new();
        for (i, s) in list.iter().enumerate() {
            match s.get_ref().parse::<IpNet>() {
                Ok(n) => out.push(n),
                Err(e) => self.err(s, format!("{key}[{i}]"), e),
            }
        }
        out
    }

    fn host(&mut self, s: &Spanned<String>, key: &str) -> Option<HostPattern> {
        match s.get_ref().parse::<HostPattern>() {
            Ok(h) => Some(h),
            Err(e) => {
                self.err(s, key, e);
                None
            }
        }
    }

    fn status(
        &mut self,
        s: &Spanned<u16>,
        key: &str,
        allowed: std::ops::RangeInclusive<u16>,
    ) -> http::StatusCode {
        match http::StatusCode::from_u16(*s.get_ref()) {
            Ok(c) if allowed.contains(&c.as_u16()) => c,
            _ => {
                self.err(
                    s,
                    key,
                    format!(
                        "status {} not allowed here (expected {}..={})",
                        s.get_ref(),
                        allowed.start(),
                        allowed.end()
                    ),
                );
                http::StatusCode::INTERNAL_SERVER_ERROR
            }
        }
    }

    fn path(&self, p: &str) -> std::path::PathBuf {
        let p = Path::new(p);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base.join(p)
        }
    }

    fn acme(&mut self, a: &model::Acme) -> AcmeSettings {
        let mut out = AcmeSettings {
            storage: a.storage.as_ref().map(|s| self.path(s.get_ref())),
            directory_url: a.directory_url.as_ref().map(|u| u.get_ref().clone()),
            contact: a.contact.clone(),
            ..Default::default()
        };
        if let Some(u) = a
            .directory_url
            .as_ref()
            .filter(|u| !u.get_ref().starts_with("https://"))
        {
            self.err(
                u,
                "acme.directory_url",
                "the ACME directory must be an https:// URL",
            );
        }
        for (i, r) in a.ca_roots.iter().enumerate() {
            let path = self.path(r.get_ref());
            match std::fs::read(&path).map(|pem| {
                rustls_pemfile::certs(&mut pem.as_slice()).collect::<Result<Vec<_>, _>>()
            }) {
                Ok(Ok(certs)) if !certs.is_empty() => out.ca_roots.extend(certs),
                _ => self.err(
                    r,
                    format!("acme.ca_roots[{i}]"),
                    format!("cannot read PEM certificates from {}", path.display()),
                ),
            }
        }
        if let Some(p) = &a.peer {
            match p.get_ref().parse::<http::Uri>() {
                Ok(u) if u.scheme_str() == Some("http") && u.authority().is_some() => {
                    out.peer = Some(u)
                }
                _ => self.err(
                    p,
                    "acme.peer",
                    "expected an http:// URL such as \"http://10.0.0.2:80\"",
                ),
            }
        }
        for (i, c) in a.certificates.iter().enumerate() {
            if c.get_ref().is_empty() {
                self.err(
                    c,
                    format!("acme.certificates[{i}]"),
                    "a certificate needs at least one name",
                );
            }
            for n in c.get_ref() {
                if let Err(e) = n.parse::<HostPattern>() {
                    self.err(c, format!("acme.certificates[{i}]"), e);
                }
            }
            out.certificates.push(c.get_ref().clone());
        }
        self.acme_locks(a, &mut out);
        if !a.certificates.is_empty() && a.storage.is_none() {
            self.errors.push(self.src.error(
                0..0,
                "acme.storage",
                "automatic certificates need a storage directory",
            ));
        }
        out
    }

    /// `[acme] lock_ttl` and `lock_wait`: the lock is refreshed every third of
    /// its TTL, so a TTL under 5 s would expire on a slow shared filesystem;
    /// the wait must outlast a crashed holder's lock.
    fn acme_locks(&mut self, a: &model::Acme, out: &mut AcmeSettings) {
        const TTL: (Duration, Duration) = (Duration::from_secs(5), Duration::from_secs(3600));
        const MAX_WAIT: Duration = Duration::from_secs(86_400);
        if let Some(t) = &a.lock_ttl {
            let ttl = t.get_ref().0;
            if ttl < TTL.0 || ttl > TTL.1 {
                self.err(
                    t,
                    "acme.lock_ttl",
                    format!("lock_ttl must be between 5s and 1h (got {ttl:?})"),
                );
            } else {
                out.lock_ttl = Some(ttl);
            }
        }
        if let Some(w) = &a.lock_wait {
            let wait = w.get_ref().0;
            // A lock_ttl refused above is not compared with.
            let ttl = match (&a.lock_ttl, out.lock_ttl) {
                (Some(_), None) => Duration::ZERO,
                (_, ttl) => ttl.unwrap_or(edge_acme::DEFAULT_LOCK_TTL),
            };
            if wait < ttl || wait > MAX_WAIT {
                self.err(
                    w,
                    "acme.lock_wait",
                    format!("lock_wait must be at least lock_ttl ({ttl:?}), so a crashed node's lock is waited out, and at most 24h (got {wait:?})"),
                );
            } else {
                out.lock_wait = Some(wait);
            }
        }
    }

    fn vrrp(&mut self, list: &[model::Vrrp], pools: &HashSet<String>) -> Vec<VrrpSettings> {
        let mut out = Vec::new();
        let mut seen = HashSet::new();
        for (i, r) in list.iter().enumerate() {
            let key = format!("vrrp[{i}]");
            let errors_before = self.errors.len();
            let mut c = edge_vrrp::Config::default();
            c.interface(r.interface.get_ref().clone());
            let vrid = match u8::try_from(*r.vrid.get_ref()) {
                Ok(v) if v >= 1 => v,
                _ => {
                    self.err(&r.vrid, format!("{key}.vrid"), "vrid must be 1-255");
                    1
                }
            };
            c.vrid(vrid);
            let priority = match u8::try_from(*r.priority.get_ref()) {
                Ok(p) if (1..=254).contains(&p) => p,
                _ => {
                    self.err(
                        &r.priority,
                        format!("{key}.priority"),
                        "priority must be 1-254 (255 is reserved for an address owner)",
                    );
                    100
                }
            };
            c.priority(priority);
            match r.version.as_ref().map(|v| *v.get_ref()) {
                None | Some(3) => {
                    c.version(edge_vrrp::Version::V3);
                }
                Some(2) => {
                    c.version(edge_vrrp::Version::V2);
                }
                Some(_) => {
                    if let Some(v) = &r.version {
                        self.err(v, format!("{key}.version"), "version must be 2 or 3");
                    }
                }
            }
            if let Some(d) = &r.advert_interval {
                c.advert_interval(d.get_ref().0);
            }
            for (j, a) in r.vips.get_ref().iter().enumerate() {
                match a.get_ref().parse::<edge_vrrp::VirtualAddress>() {
                    Ok(v) => {
                        c.virtual_address(v);
                    }
                    Err(e) => self.err(a, format!("{key}.vips[{j}]"), e.to_string()),
                }
            }
            c.preempt(!r.nopreempt);
            if let Some(s) = &r.unicast_src {
                match s.get_ref().parse() {
                    Ok(ip) => {
                        c.unicast_source(ip);
                    }
                    Err(_) => self.err(s, format!("{key}.unicast_src"), "not an IP address"),
                }
            }
            for (j, s) in r.unicast_peers.iter().enumerate() {
                match s.get_ref().parse() {
                    Ok(ip) => {
                        c.unicast_peer(ip);
                    }
                    Err(_) => self.err(s, format!("{key}.unicast_peers[{j}]"), "not an IP address"),
                }
            }
            c.two_node(r.two_node);
            c.use_vmac(r.use_vmac);
            if let Some(name) = &r.vmac_interface {
                c.vmac_interface(name.get_ref().clone());
            }
            if let Some(p) = &r.auth_password {
                c.auth_password(p.get_ref().clone());
            }
            let track_pools = match &r.track_pools {
                None => {
                    let mut all: Vec<String> = pools.iter().cloned().collect();
                    all.sort();
                    all
                }
                Some(list) => {
                    for (j, p) in list.iter().enumerate() {
                        if !pools.contains(p.get_ref()) {
                            self.err(
                                p,
                                format!("{key}.track_pools[{j}]"),
                                format!("no [[pool]] named {:?}", p.get_ref()),
                            );
                        }
                    }
                    list.iter().map(|p| p.get_ref().clone()).collect()
                }
            };
            let min_healthy_share = match &r.min_healthy_share {
                None => 0.5,
                Some(s) if (0.0..=1.0).contains(s.get_ref()) => *s.get_ref(),
                Some(s) => {
                    self.err(
                        s,
                        format!("{key}.min_healthy_share"),
                        "min_healthy_share must be 0.0-1.0",
                    );
                    0.5
                }
            };
            let weight = match &r.weight {
                None => priority.saturating_sub(1),
                Some(w) => match u8::try_from(*w.get_ref()) {
                    Ok(w) if w <= 253 => w,
                    _ => {
                        self.err(w, format!("{key}.weight"), "weight must be 0-253");
                        0
                    }
                },
            };
            if !seen.insert((r.interface.get_ref().clone(), vrid)) {
                self.err(
                    &r.vrid,
                    format!("{key}.vrid"),
                    format!(
                        "vrid {vrid} is already used on interface {:?}",
                        r.interface.get_ref()
                    ),
                );
            }
            // edge-vrrp's own checks, reported only when ours passed (so one
            // mistake gives one error), under the key the file uses.
            if self.errors.len() == errors_before
                && let Err(e) = c.validate()
            {
                let (field, span) = match e.field() {
                    "interface" => ("interface", r.interface.span()),
                    "vrid" => ("vrid", r.vrid.span()),
                    "priority" => ("priority", r.priority.span()),
                    "version" => (
                        "version",
                        r.version.as_ref().map_or(r.vips.span(), |v| v.span()),
                    ),
                    "advert_interval" => (
                        "advert_interval",
                        r.advert_interval
                            .as_ref()
                            .map_or(r.interface.span(), |v| v.span()),
                    ),
                    "unicast_source" => (
                        "unicast_src",
                        r.unicast_src
                            .as_ref()
                            .map_or(r.interface.span(), |v| v.span()),
                    ),
                    "unicast_peers" => ("unicast_peers", r.interface.span()),
                    "two_node" => ("two_node", r.interface.span()),
                    "virtual_addresses" => ("vips", r.vips.span()),
                    "vmac_interface" => (
                        "vmac_interface",
                        r.vmac_interface
                            .as_ref()
                            .map_or(r.interface.span(), |v| v.span()),
                    ),
                    "auth_password" => (
                        "auth_password",
                        r.auth_password
                            .as_ref()
                            .map_or(r.interface.span(), |v| v.span()),
                    ),
                    other => (other, r.interface.span()),
                };
                self.errors.push(
                    self.src
                        .error(span, format!("{key}.{field}"), e.to_string()),
                );
            }
            out.push(VrrpSettings {
                config: c,
                priority,
                track_pools,
                min_healthy_share,
                weight,
            });
        }
        out
    }

    fn validate(&mut self, f: model::ConfigFile) -> Validated {
        // Pools first: everything else refers to them.
        let mut pools = Vec::new();
        let mut pool_names = HashSet::new();
        for (i, p) in f.pools.iter().enumerate() {
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
            for (j, s) in p.servers.iter().enumerate() {
                if let Some(a) = self.addr(&s.address, &format!("{key}.server[{j}].address")) {
                    servers.push((a, *s.weight.get_ref()));
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
                HealthSettings {
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
            });
            if let Some(Err(e)) = pools
                .last()
                .map(|s| crate::health::pool_config(s).validate())
            {
                self.err(&p.name, format!("{key}.health"), e.to_string());
            }
        }

        let pool_ref = |v: &mut Self, s: &Spanned<String>, key: String| {
            if !pool_names.contains(s.get_ref()) {
                v.err(s, key, format!("no [[pool]] named {:?}", s.get_ref()));
            }
        };

        // Certificates.
        let mut certificates = Vec::new();
        let mut cert_names = HashSet::new();
        for (i, c) in f.certificates.iter().enumerate() {
            let key = format!("certificate[{i}]");
            if !cert_names.insert(c.name.get_ref().clone()) {
                self.err(
                    &c.name,
                    format!("{key}.name"),
                    format!("duplicate certificate name {:?}", c.name.get_ref()),
                );
            }
            let names: Vec<HostPattern> = c
                .names
                .iter()
                .enumerate()
                .filter_map(|(j, n)| self.host(n, &format!("{key}.names[{j}]")))
                .collect();
            let loaded = if c.self_signed {
                if c.cert.is_some() || c.key.is_some() {
                    self.err(
                        &c.name,
                        key.clone(),
                        "self_signed = true cannot be combined with cert/key",
                    );
                }
                if names.is_empty() {
                    self.err(
                        &c.name,
                        format!("{key}.names"),
                        "a self-signed certificate needs at least one name",
                    );
                    None
                } else {
                    match crate::certs::self_signed(&names) {
                        Ok(k) => Some(k),
                        Err(e) => {
                            self.err(&c.name, key.clone(), e.to_string());
                            None
                        }
                    }
                }
            } else {
                match (&c.cert, &c.key) {
                    (Some(cert), Some(k)) => {
                        if names.is_empty() {
                            self.err(
                                &c.name,
                                format!("{key}.names"),
                                "list the names this certificate serves (names = [...])",
                            );
                        }
                        let cp = self.path(cert.get_ref());
                        let kp = self.path(k.get_ref());
                        match crate::certs::load_pair(&cp, &kp) {
                            Ok(k) => Some(k),
                            Err(crate::certs::CertError::Cert(m)) => {
                                self.err(cert, format!("{key}.cert"), m);
                                None
                            }
                            Err(crate::certs::CertError::Key(m)) => {
                                self.err(k, format!("{key}.key"), m);
                                None
                            }
                        }
                    }
                    _ => {
                        self.err(
                            &c.name,
                            key.clone(),
                            "set both cert and key, or self_signed = true",
                        );
                        None
                    }
                }
            };
            if let Some(k) = loaded {
                certificates.push(LoadedCert {
                    name: c.name.get_ref().clone(),
                    names,
                    pair: k,
                });
            }
        }

        // Listeners.
        let h = &f.https;
        let https = HttpsSettings {
            listen: self.addrs(&h.listen, "https.listen"),
            proxy_protocol: h.proxy_protocol,
            trusted_proxies: self.nets(&h.trusted_proxies, "https.trusted_proxies"),
            default_certificate: h.default_certificate.as_ref().map(|d| {
                if !cert_names.contains(d.get_ref()) {
                    self.err(
                        d,
                        "https.default_certificate",
                        format!("no [[certificate]] named {:?}", d.get_ref()),
                    );
                }
                d.get_ref().clone()
            }),
            strict_host: h.strict_host,
            trusted_upstreams: self.nets(&h.trusted_upstreams, "https.trusted_upstreams"),
            alpn: h
                .alpn
                .iter()
                .enumerate()
                .filter_map(|(i, a)| match a.get_ref().as_str() {
                    "h2" | "http/1.1" => Some(a.get_ref().as_bytes().to_vec()),
                    other => {
                        self.err(
                            a,
                            format!("https.alpn[{i}]"),
                            format!("unsupported ALPN protocol {other:?} (h2, http/1.1)"),
                        );
                        None
                    }
                })
                .collect(),
        };
        self.check_proxy_protocol(h.proxy_protocol, &h.trusted_proxies, "https");
        let hp = &f.http;
        let http = HttpSettings {
            listen: self.addrs(&hp.listen, "http.listen"),
            proxy_protocol: hp.proxy_protocol,
            trusted_proxies: self.nets(&hp.trusted_proxies, "http.trusted_proxies"),
            redirect_to_https: hp.redirect_to_https,
            https_port: hp.https_port,
        };
        self.check_proxy_protocol(hp.proxy_protocol, &hp.trusted_proxies, "http");
        let mut all_listen = HashMap::new();
        for (a, key) in https
            .listen
            .iter()
            .map(|a| (a, "https.listen"))
            .chain(http.listen.iter().map(|a| (a, "http.listen")))
        {
            if let Some(prev) = all_listen.insert(*a, key) {
                self.errors.push(self.src.error(
                    0..0,
                    key,
                    format!("address {a} is already used by {prev}"),
                ));
            }
        }

        // Passthrough.
        let mut passthrough = Vec::new();
        for (i, p) in f.passthrough.iter().enumerate() {
            let key = format!("passthrough[{i}]");
            pool_ref(self, &p.pool, format!("{key}.pool"));
            let sni: Vec<HostPattern> = p
                .sni
                .iter()
                .enumerate()
                .filter_map(|(j, s)| self.host(s, &format!("{key}.sni[{j}]")))
                .collect();
            if p.sni.is_empty() {
                self.err(
                    &p.pool,
                    format!("{key}.sni"),
                    "a passthrough rule needs at least one SNI name",
                );
            }
            passthrough.push(PassthroughRule {
                sni,
                pool: p.pool.get_ref().clone(),
                proxy_protocol: p.proxy_protocol,
            });
        }

        // Routes.
        let mut routes = Vec::new();
        for (i, r) in f.routes.iter().enumerate() {
            let key = format!("route[{i}]");
            let hosts = r
                .host
                .iter()
                .enumerate()
                .filter_map(|(j, s)| self.host(s, &format!("{key}.host[{j}]")))
                .collect();
            if !r.path_prefix.get_ref().starts_with('/') {
                self.err(
                    &r.path_prefix,
                    format!("{key}.path_prefix"),
                    "path_prefix must start with '/'",
                );
            }
            let mut headers = Vec::new();
            for (j, hm) in r.header.iter().enumerate() {
                let name = http::HeaderName::from_bytes(hm.name.get_ref().as_bytes());
                let value = hm
                    .value
                    .as_deref()
                    .map(http::HeaderValue::from_str)
                    .transpose();
                match (name, value) {
                    (Ok(n), Ok(v)) => headers.push((n, v)),
                    _ => self.err(
                        &hm.name,
                        format!("{key}.header[{j}]"),
                        "invalid header name or value",
                    ),
                }
            }
            let n_actions = usize::from(r.pool.is_some())
                + usize::from(r.redirect.is_some())
                + usize::from(r.respond.is_some());
            let action = if n_actions != 1 {
                self.err(
                    &r.path_prefix,
                    key.clone(),
                    "a route needs exactly one of pool, redirect or respond",
                );
                None
            } else if let Some(p) = &r.pool {
                pool_ref(self, p, format!("{key}.pool"));
                Some(RouteAction::Proxy {
                    pool: p.get_ref().clone(),
                })
            } else if let Some(rd) = &r.redirect {
                let status = self.status(&rd.status, &format!("{key}.redirect.status"), 300..=399);
                if http::HeaderValue::from_str(rd.location.get_ref()).is_err()
                    || rd.location.get_ref().is_empty()
                {
                    self.err(
                        &rd.location,
                        format!("{key}.redirect.location"),
                        "invalid location",
                    );
                }
                Some(RouteAction::Redirect {
                    location: rd.location.get_ref().clone(),
                    status,
                    keep_path: rd.keep_path,
                })
            } else if let Some(rs) = &r.respond {
                let status = self.status(&rs.status, &format!("{key}.respond.status"), 200..=599);
                let content_type = match http::HeaderValue::from_str(&rs.content_type) {
                    Ok(v) => v,
                    Err(_) => {
                        self.err(
                            &rs.status,
                            format!("{key}.respond.content_type"),
                            "invalid content type",
                        );
                        http::HeaderValue::from_static("text/plain")
                    }
                };
                Some(RouteAction::Respond {
                    status,
                    body: bytes::Bytes::from(rs.body.clone()),
                    content_type,
                })
            } else {
                None
            };
            if let Some(action) = action {
                routes.push(RouteRule {
                    name: r.name.clone().unwrap_or_else(|| format!("route{i}")),
                    hosts,
                    path_prefix: r.path_prefix.get_ref().clone(),
                    headers,
                    action,
                });
            }
        }

        let demo_backends = f
            .demo_backends
            .iter()
            .enumerate()
            .filter_map(|(i, d)| self.addr(&d.listen, &format!("demo_backend[{i}].listen")))
            .collect();

        let l = &f.limits;
        if l.max_connections == 0
            || l.max_headers == 0
            || l.max_header_bytes < 1024
            || l.h2_max_concurrent_streams == 0
        {
            self.errors.push(self.src.error(0..0, "limits", "max_connections, max_headers and h2_max_concurrent_streams must be > 0 and max_header_bytes >= 1024"));
        }
        if f.runtime.worker_threads > 1024 {
            self.errors.push(self.src.error(
                0..0,
                "runtime.worker_threads",
                "at most 1024 worker threads",
            ));
        }

        let acme = self.acme(&f.acme);
        let vrrp = self.vrrp(&f.vrrp, &pool_names);
        let admin = crate::admin::config::validate(&f.admin, self.src, self.base, &mut self.errors);
        let access_logs = self.access_logs(&f.access_logs);
        let management = self.management(f.management.as_ref());

        Validated {
            admin,
            access_logs,
            management,
            acme,
            vrrp,
            worker_threads: f.runtime.worker_threads,
            log_level: f.runtime.log_level,
            limits: f.limits,
            https,
            http,
            certificates,
            passthrough,
            routes,
            pools,
            demo_backends,
        }
    }
}

#[cfg(test)]
mod tests;
