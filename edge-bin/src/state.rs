//! The runtime state compiled from a validated config: immutable, shared as
//! `Arc<State>` and swapped whole (see [`SharedState`]), so a reload can
//! replace it atomically while connections in flight keep the one they began with.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::config::{
    BackendProtocol, HttpSettings, HttpsSettings, Limits, PassthroughRule, PoolSettings, RouteRule,
    Validated,
};
use crate::http::upstream::{BackendClients, ByStatus, SendToServer};
use crate::pool::Pool;

/// The HTTP service of a pool: edge-balance's dispatch around one attempt
/// through the pool's pooled client.
pub type HttpDispatch = edge_balance::Dispatch<SocketAddr, SocketAddr, SendToServer, ByStatus>;

/// A pool plus the service that sends HTTP requests to its servers.
#[derive(Debug)]
pub struct Backend {
    pub pool: Arc<Pool>,
    pub http: HttpDispatch,
    /// The HTTP version requests to the servers use.
    pub version: http::Version,
}

impl Backend {
    fn new(settings: PoolSettings) -> Result<Self, BuildError> {
        let mut conn = HttpConnector::new();
        conn.set_connect_timeout(Some(settings.connect_timeout));
        conn.set_nodelay(true);
        let mut b = Client::builder(TokioExecutor::new());
        b.pool_idle_timeout(settings.idle_timeout)
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .retry_canceled_requests(true);
        let version = match settings.protocol {
            // `auto`: HTTP/1.1 requests; hyper speaks HTTP/2 on a
            // connection whose ALPN chose it.
            BackendProtocol::Http1 | BackendProtocol::Auto => http::Version::HTTP_11,
            BackendProtocol::H2c | BackendProtocol::H2 => {
                b.http2_only(true);
                http::Version::HTTP_2
            }
        };
        let tls = match &settings.tls {
            None => None,
            Some(tls) => {
                if !tls.verify {
                    tracing::warn!(
                        pool = %settings.name,
                        "[pool.tls] verify = false: the servers' certificates are not verified (the traffic is encrypted, the servers are not authenticated)"
                    );
                }
                let connectors = tls
                    .upstream
                    .connectors()
                    .map_err(|e| BuildError::BackendTls(settings.name.clone(), e))?;
                Some(connectors)
            }
        };
        let may_speak_h2 = settings.protocol != BackendProtocol::Http1;
        let clients = BackendClients::new(b, conn, tls, may_speak_h2);
        let pool = Pool::new(settings);
        let http = edge_balance::Dispatch::new(
            pool.dispatcher().clone(),
            SendToServer::new(clients),
            ByStatus,
        );
        Ok(Self {
            pool,
            http,
            version,
        })
    }
}

/// A `[[certificate]]` as configured.
#[derive(Debug, Clone)]
pub struct ConfiguredCert {
    /// Its `name`.
    pub name: String,
    /// The leaf certificate.
    pub leaf: rustls_pki_types::CertificateDer<'static>,
    /// The certificate and key files; `None` for a self-signed one.
    pub files: Option<(std::path::PathBuf, std::path::PathBuf)>,
}

/// Everything a connection needs, compiled once per config load.
#[derive(Debug)]
pub struct State {
    pub https: HttpsSettings,
    pub http: HttpSettings,
    pub limits: Limits,
    /// Per-client limits (`[client_limits]`), `None` when off.
    pub client_limits: Option<Arc<edge_balance::client_limit::ClientLimits>>,
    /// The TLS settings of hosts without `[[client_auth]]`.
    pub tls: Arc<rustls::ServerConfig>,
    /// `[[client_auth]]`, each with its own TLS settings (rustls picks the
    /// client verifier per config, so one config per setting), chosen by
    /// the SNI edge reads before the handshake ([`State::tls_for`]).
    pub client_auth: Vec<(crate::config::ClientAuthSettings, Arc<rustls::ServerConfig>)>,
    /// Certificates by SNI: static files, self-signed, and ACME-managed.
    pub certs: Arc<edge_acme::CertResolver>,
    /// Port 80's challenge responder, when `[acme] storage` is set.
    pub challenges: Option<edge_acme::ChallengeResponder>,
    /// The ACME manager, when `[acme] certificates` are configured.
    /// Shared with the state that replaces this one when `[acme]` is unchanged.
    pub acme: Option<Arc<edge_acme::AcmeHandle>>,
    /// The `[acme]` this state was built with (a reload that keeps it keeps
    /// the ACME manager, so an order in progress goes on).
    pub acme_settings: crate::config::AcmeSettings,
    /// The `[[certificate]]`s: name, leaf and files (for `show certs`).
    pub cert_configs: Vec<ConfiguredCert>,
    pub passthrough: Vec<PassthroughRule>,
    /// The TLS port's SNI routes (edge-sni): passthrough, or terminate.
    pub sni: edge_sni::RouteBySni<crate::sni::SniTarget>,
    pub routes: Vec<RouteRule>,
    pub backends: HashMap<String, Arc<Backend>>,
    /// The health checker of this state's pools (stops when the state is dropped).
    pub health: edge_health::HealthHandle,
    /// The DNS discovery of this state's pools (stops when the state is dropped).
    pub discovery: crate::discovery::Discovery,
    /// Tells this state's connections to close (reload, stop).
    pub closing: crate::lifecycle::Closing,
    /// Access-log sinks and metric counters of this config.
    pub obs: crate::telemetry::StateTelemetry,
}

/// Why a validated config could not be turned into a running state.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    #[error("TLS setup failed: {0}")]
    Tls(#[from] rustls::Error),
    #[error("health checks: {0}")]
    Health(String),
    #[error("certificates: {0}")]
    Certificates(#[from] edge_acme::Error),
    #[error("{0}")]
    AccessLog(#[from] crate::accesslog::SinkError),
    #[error("passthrough names: {0}")]
    Sni(edge_sni::PatternError),
    #[error("pool {0}: TLS to the servers: {1}")]
    BackendTls(String, edge_balance::upstream_tls::UpstreamTlsError),
}

/// The state every listener reads; `store` a new one to switch config.
pub type SharedState = Arc<ArcSwap<State>>;

impl State {
    /// Builds the runtime state. Must run inside the tokio runtime (health checks start here).
    /// `telemetry` is the process-wide one: counters and unchanged sinks carry over.
    pub fn build(
        v: &Validated,
        telemetry: &crate::telemetry::Telemetry,
    ) -> Result<Self, BuildError> {
        Self::build_after(v, None, telemetry)
    }

    /// Builds the state that replaces `previous` (a reload): servers that
    /// stay keep their health, connections share the process's stop signal.
    pub fn build_after(
        v: &Validated,
        previous: Option<&State>,
        telemetry: &crate::telemetry::Telemetry,
    ) -> Result<Self, BuildError> {
        let obs = telemetry.for_config(v)?;
        let (certs, challenges, acme) = crate::acme::certificates(
            v,
            previous.map(|p| crate::acme::Previous {
                certs: &p.certs,
                challenges: &p.challenges,
                acme: &p.acme,
                acme_settings: &p.acme_settings,
                http: &p.http,
            }),
        )?;
        let tls = server_config(
            v,
            &certs,
            rustls::server::WebPkiClientVerifier::no_client_auth(),
            previous.map(|p| &*p.tls),
        )?;
        // Each [[client_auth]] keeps its own ticket keys, carried over from
        // the running config's section with the same hosts and setting.
        let client_auth = v
            .client_auth
            .iter()
            .map(|c| {
                let before = previous.and_then(|p| {
                    p.client_auth
                        .iter()
                        .find(|(o, _)| o.hosts == c.hosts && o.required == c.required)
                        .map(|(_, t)| &**t)
                });
                Ok((
                    c.clone(),
                    server_config(v, &certs, c.verifier.clone(), before)?,
                ))
            })
            .collect::<Result<_, BuildError>>()?;
        let backends: HashMap<String, Arc<Backend>> = v
            .pools
            .iter()
            .map(|p| Ok((p.name.clone(), Arc::new(Backend::new(p.clone())?))))
            .collect::<Result<_, BuildError>>()?;
        for b in backends.values() {
            b.pool.set_metrics(&obs.metrics);
        }
        let pools: HashMap<String, Arc<Pool>> = backends
            .iter()
            .map(|(k, b)| (k.clone(), b.pool.clone()))
            .collect();
        let health = crate::health::start(&pools, previous.map(|p| &p.health))
            .map_err(|e| BuildError::Health(e.to_string()))?;
        let previous_pools: HashMap<String, Arc<Pool>> = previous
            .map(|p| {
                p.backends
                    .iter()
                    .map(|(k, b)| (k.clone(), b.pool.clone()))
                    .collect()
            })
            .unwrap_or_default();
        let discovery =
            crate::discovery::start(&pools, &health, &v.resolvers, &previous_pools, &obs.metrics);
        Ok(Self {
            https: v.https.clone(),
            http: v.http.clone(),
            limits: v.limits.clone(),
            client_limits: v.client_limits.limits(),
            tls,
            client_auth,
            certs,
            challenges,
            acme,
            acme_settings: v.acme.clone(),
            cert_configs: v
                .certificates
                .iter()
                .filter_map(|c| {
                    Some(ConfiguredCert {
                        name: c.name.clone(),
                        leaf: c.pair.chain.first()?.clone(),
                        files: c.files.clone(),
                    })
                })
                .collect(),
            passthrough: v.passthrough.clone(),
            sni: crate::sni::routes(&v.passthrough).map_err(BuildError::Sni)?,
            routes: v.routes.clone(),
            backends,
            health,
            discovery,
            closing: previous
                .map_or_else(crate::lifecycle::Closing::new, |p| p.closing.successor()),
            obs,
        })
    }

    /// The TLS settings of a connection whose ClientHello named `sni`:
    /// those of its `[[client_auth]]`, or the common ones.
    pub fn tls_for(&self, sni: Option<&str>) -> &Arc<rustls::ServerConfig> {
        sni.and_then(|name| self.client_auth_of(name))
            .map_or(&self.tls, |(_, tls)| tls)
    }

    /// The `[[client_auth]]` that covers `name` (an SNI or a Host): one
    /// that lists it exactly, else one with a wildcard for it.
    pub fn client_auth_of(
        &self,
        name: &str,
    ) -> Option<&(crate::config::ClientAuthSettings, Arc<rustls::ServerConfig>)> {
        self.client_auth
            .iter()
            .filter_map(|e| Some((e.0.match_rank(name)?, e)))
            .min_by_key(|(rank, _)| *rank)
            .map(|(_, e)| e)
    }

    /// The first route matching host, path and headers, in file order.
    pub fn route(&self, host: &str, path: &str, headers: &http::HeaderMap) -> Option<&RouteRule> {
        self.routes.iter().find(|r| {
            (r.hosts.is_empty() || r.hosts.iter().any(|h| h.matches(host)))
                && path.starts_with(r.path_prefix.as_str())
                && r.headers.iter().all(|(name, value)| match value {
                    None => headers.contains_key(name),
                    Some(v) => headers.get_all(name).iter().any(|x| x == v),
                })
        })
    }
}

/// A TLS server config over the certificate resolver, with `verifier` for
/// client certificates (each config has its own ticket keys and session
/// cache: a session resumes only under the settings it began with), taking
/// over those of `previous` (the same settings before a reload).
fn server_config(
    v: &Validated,
    certs: &Arc<edge_acme::CertResolver>,
    verifier: Arc<dyn rustls::server::danger::ClientCertVerifier>,
    previous: Option<&rustls::ServerConfig>,
) -> Result<Arc<rustls::ServerConfig>, BuildError> {
    let provider = Arc::new(crate::tls_tuning::server_provider_with(
        &v.https.key_exchange,
    ));
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(certs.clone());
    tls.alpn_protocols = v.https.alpn.clone();
    crate::tls_tuning::tune(&mut tls, previous)?;
    Ok(Arc::new(tls))
}
