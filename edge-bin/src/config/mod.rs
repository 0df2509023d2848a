//! The config file: parse (TOML, unknown keys refused), then validate and
//! compile into [`Validated`], which is everything a run needs except sockets.
//!
//! `edge check` runs exactly this; `edge run` runs it and then binds.
//!
//! One module per section checks it and holds its validated settings; this
//! module runs them in file order. The config imports nothing of the rest
//! of the binary but [`crate::certs`] (which imports nothing back), so it
//! can be read, tested and changed on its own.

mod acme;
mod acme_dns;
mod admin;
mod anycast;
mod backend_tls;
mod certificates;
mod client_auth;
mod client_limits;
mod coverage;
mod discovery;
pub mod duration;
pub mod error;
mod etcd;
mod key_exchange;
mod listeners;
pub mod model;
pub mod net;
pub mod observability;
mod peer;
mod pool_options;
mod pools;
mod routes;
mod shapes;
mod vrrp;

use std::net::SocketAddr;
use std::path::Path;

use toml::Spanned;

pub use acme::AcmeSettings;
pub use admin::AdminSettings;
pub use anycast::AnycastSettings;
pub use backend_tls::BackendTlsSettings;
pub use certificates::LoadedCert;
pub use client_auth::ClientAuthSettings;
pub use client_limits::ClientLimitSettings;
pub use discovery::{Discover, ResolverSettings};
pub use duration::ConfigDuration;
pub use edge_sni::HostPattern;
pub use error::{ConfigError, ConfigErrors, Source};
pub use etcd::EtcdSettings;
pub use key_exchange::KeyExchangeGroup;
pub use listeners::{HttpSettings, HttpsSettings};
pub use model::{BackendProtocol, HealthKind, Limits, Policy, ProxyProtocolOut};
pub use net::{HostMatch, IpNet};
pub use observability::{AccessLogSettings, ManagementSettings};
pub use peer::{PeerCredentials, PeerSettings, TicketSettings};
pub use pool_options::{HealthOptions, PoolOptions};
pub use pools::{HealthSettings, PoolSettings};
pub use routes::{PassthroughRule, RouteAction, RouteRule};
pub use vrrp::{DEFAULT_STARTUP_HOLD, VrrpSettings};

/// A validated, compiled config.
#[derive(Debug)]
pub struct Validated {
    pub worker_threads: usize,
    pub log_level: String,
    pub limits: Limits,
    pub client_limits: ClientLimitSettings,
    pub https: HttpsSettings,
    pub http: HttpSettings,
    pub certificates: Vec<LoadedCert>,
    /// `[[client_auth]]`: client certificates asked for by SNI.
    pub client_auth: Vec<ClientAuthSettings>,
    pub passthrough: Vec<PassthroughRule>,
    pub routes: Vec<RouteRule>,
    pub pools: Vec<PoolSettings>,
    pub demo_backends: Vec<SocketAddr>,
    pub acme: AcmeSettings,
    pub vrrp: Vec<VrrpSettings>,
    /// `[[anycast]]`: addresses announced through a routing daemon.
    pub anycast: Vec<AnycastSettings>,
    pub access_logs: Vec<AccessLogSettings>,
    pub management: Option<ManagementSettings>,
    pub admin: AdminSettings,
    /// `[resolvers]`: how servers found by DNS are looked up.
    pub resolvers: discovery::ResolverSettings,
    /// `[peer]`: the link to the other node of a pair.
    pub peer: Option<PeerSettings>,
    /// `[tickets]`: where the TLS session-ticket keys are kept.
    pub tickets: TicketSettings,
    /// `[etcd]`: the shared state of a fleet (instead of `[peer]`).
    pub etcd: Option<EtcdSettings>,
    /// Problems that do not stop a run (`edge check` prints them, a run
    /// logs them): a route host that no certificate covers.
    pub warnings: Vec<ConfigError>,
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

    /// A host name or `*.` pattern (edge-sni's, the one meaning of TLS).
    fn host(&mut self, s: &Spanned<String>, key: &str) -> Option<HostPattern> {
        match s.get_ref().parse::<HostPattern>() {
            Ok(h) => Some(h),
            Err(e) => {
                self.err(s, key, host_error(s.get_ref(), e));
                None
            }
        }
    }

    /// A host name, `*.` pattern or IP address (routes and certificates).
    fn host_or_address(&mut self, s: &Spanned<String>, key: &str) -> Option<HostMatch> {
        match s.get_ref().parse::<HostMatch>() {
            Ok(h) => Some(h),
            Err(e) => {
                self.err(s, key, host_error(s.get_ref(), e));
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

    /// Runs every section's checks, in the order a reader meets them.
    fn validate(&mut self, f: model::ConfigFile) -> Validated {
        // Pools first: everything else refers to them.
        let (pools, pool_names) = self.pools(&f.pools);
        let (certificates, cert_names) = self.certificates(&f.certificates);
        let client_auth = self.client_auth(&f.client_auth);
        let (https, http) = self.listeners(&f.https, &f.http, &cert_names);
        let passthrough = self.passthrough(&f.passthrough, &pool_names);
        let routes = self.routes(&f.routes, &pool_names);
        let demo_backends = f
            .demo_backends
            .iter()
            .enumerate()
            .filter_map(|(i, d)| self.addr(&d.listen, &format!("demo_backend[{i}].listen")))
            .collect();
        if f.routes.is_empty() && f.passthrough.is_empty() && f.demo_backends.is_empty() {
            // An empty or truncated file (a half-written deploy) must not
            // replace a running config with one that answers nothing.
            self.errors.push(self.src.error(
                0..0,
                "route",
                "nothing to serve: no [[route]], [[passthrough]] or [[demo_backend]] (an empty or truncated file?)",
            ));
        }
        self.limits(&f.limits, &f.runtime);
        let client_limits = self.client_limits(&f.client_limits);
        let etcd = self.etcd(f.etcd.as_ref());
        let acme = self.acme(&f.acme, f.etcd.is_some());
        let vrrp = self.vrrp(&f.vrrp, &pool_names);
        let anycast = self.anycast(&f.anycast, &pool_names);
        let admin = admin::validate(&f.admin, self.src, self.base, &mut self.errors);
        let access_logs = self.access_logs(&f.access_logs);
        let management = self.management(f.management.as_ref());
        let resolvers = self.resolvers(&f.resolvers);
        let peer = f
            .peer
            .as_ref()
            .and_then(|p| peer::validate_peer(p, self.src, self.base, &mut self.errors));
        if let (Some(_), Some(p)) = (&f.etcd, &f.peer) {
            self.err(
                &p.listen,
                "peer",
                "[etcd] and [peer] do not go together: a fleet shares its state through etcd, a pair over the peer link",
            );
        }
        let tickets = peer::validate_tickets(
            &f.tickets,
            admin.state_file.as_deref(),
            self.src,
            self.base,
            &mut self.errors,
        );

        let mut v = Validated {
            peer,
            tickets,
            etcd,
            resolvers,
            admin,
            access_logs,
            management,
            acme,
            vrrp,
            anycast,
            worker_threads: f.runtime.worker_threads,
            log_level: f.runtime.log_level,
            limits: f.limits,
            client_limits,
            https,
            http,
            certificates,
            client_auth,
            passthrough,
            routes,
            pools,
            demo_backends,
            warnings: Vec::new(),
        };
        v.warnings = self.uncovered_route_hosts(&f.routes, &v);
        v.warnings
            .extend(self.passthrough_pool_warnings(&f.pools, &f.passthrough));
        v.warnings
            .extend(self.certificate_route_warnings(&f.routes, &v.client_auth));
        v.warnings
            .extend(self.same_key_type_warnings(&f.certificates, &v.certificates));
        v.warnings
            .extend(self.key_exchange_warnings(&f.https, &v.https.key_exchange));
        v
    }

    /// `[limits]` and `[runtime]`.
    fn limits(&mut self, l: &Limits, runtime: &model::Runtime) {
        if l.max_connections == 0
            || l.max_headers == 0
            || l.max_header_bytes < 1024
            || l.h2_max_concurrent_streams == 0
        {
            self.errors.push(self.src.error(0..0, "limits", "max_connections, max_headers and h2_max_concurrent_streams must be > 0 and max_header_bytes >= 1024"));
        }
        if l.body_read_timeout.0.is_zero() {
            self.errors.push(self.src.error(
                0..0,
                "limits.body_read_timeout",
                "must be more than 0s",
            ));
        }
        if runtime.worker_threads > 1024 {
            self.errors.push(self.src.error(
                0..0,
                "runtime.worker_threads",
                "at most 1024 worker threads",
            ));
        }
    }
}

/// The message for a refused host name.
fn host_error(name: &str, e: edge_sni::HostPatternError) -> String {
    format!(
        "invalid host name {name:?}: {e} (expected e.g. \"www.example.com\" or \"*.example.com\")"
    )
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_client_auth;
#[cfg(test)]
mod tests_discovery;
#[cfg(test)]
mod tests_pool_options;
#[cfg(test)]
mod tests_vrrp_timing;
