//! The config file's shape: one struct per section, unknown keys refused.
//!
//! Every default here is documented in `docs/CONFIG.md`; keep both in step.
//! Where a library has the setting, its `Default` is the default here too
//! (`[pool.health]` and `[pool.outlier]`: edge-health; `[[vrrp]]`: edge-vrrp,
//! whose `Config::default()` validation starts from).

use serde::Deserialize;
use toml::Spanned;

use super::duration::ConfigDuration;

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    #[serde(default)]
    pub runtime: Runtime,
    #[serde(default)]
    pub https: Https,
    #[serde(default)]
    pub http: Http,
    #[serde(default)]
    pub limits: Limits,
    #[serde(default, rename = "certificate")]
    pub certificates: Vec<Certificate>,
    #[serde(default, rename = "client_auth")]
    pub client_auth: Vec<super::shapes::ClientAuthFile>,
    #[serde(default, rename = "passthrough")]
    pub passthrough: Vec<Passthrough>,
    #[serde(default, rename = "route")]
    pub routes: Vec<Route>,
    #[serde(default, rename = "pool")]
    pub pools: Vec<Pool>,
    #[serde(default, rename = "demo_backend")]
    pub demo_backends: Vec<DemoBackend>,
    #[serde(default)]
    pub acme: Acme,
    #[serde(default, rename = "vrrp")]
    pub vrrp: Vec<Vrrp>,
    #[serde(default, rename = "anycast")]
    pub anycast: Vec<super::anycast::AnycastFile>,
    #[serde(default, rename = "access_log")]
    pub access_logs: Vec<super::observability::AccessLog>,
    pub management: Option<super::observability::Management>,
    #[serde(default)]
    pub admin: Admin,
    #[serde(default)]
    pub client_limits: super::client_limits::ClientLimitsFile,
    #[serde(default)]
    pub resolvers: super::shapes::ResolversFile,
    pub peer: Option<super::peer::PeerFile>,
    #[serde(default)]
    pub tickets: super::peer::TicketsFile,
    pub etcd: Option<super::etcd::EtcdFile>,
}

/// `[admin]`: the runtime API on a local unix socket (see `crate::admin`).
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Admin {
    /// Socket path; no admin socket when absent.
    pub socket: Option<Spanned<String>>,
    /// Octal file mode of the socket; default `"0660"`.
    pub mode: Option<Spanned<String>>,
    /// Group owning the socket (name or number); default the process's.
    pub group: Option<Spanned<String>>,
    /// Where drain/maint states and runtime weights are kept across
    /// restarts (HAProxy's `server-state-file`); default none.
    pub state_file: Option<Spanned<String>>,
}

/// `[[vrrp]]`: one VRRP instance (edge-vrrp) that holds the VIPs.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Vrrp {
    pub interface: Spanned<String>,
    /// 1-255 (read wider so that out-of-range values get a clear error).
    pub vrid: Spanned<i64>,
    /// 1-254.
    pub priority: Spanned<i64>,
    /// 2 or 3; default 3.
    pub version: Option<Spanned<i64>>,
    /// Default 1s.
    pub advert_interval: Option<Spanned<ConfigDuration>>,
    /// CIDR strings (`198.18.0.100/24`); a bare address is a host route.
    pub vips: Spanned<Vec<Spanned<String>>>,
    #[serde(default)]
    pub nopreempt: bool,
    pub unicast_src: Option<Spanned<String>>,
    #[serde(default)]
    pub unicast_peers: Vec<Spanned<String>>,
    #[serde(default)]
    pub two_node: bool,
    /// Virtual MAC on a macvlan (keepalived's `use_vmac`).
    #[serde(default)]
    pub use_vmac: bool,
    /// The macvlan's name; default `vrrp.{vrid}` (`vrrp6.{vrid}` for IPv6).
    pub vmac_interface: Option<Spanned<String>>,
    /// VRRPv2 simple password (keepalived `auth_type PASS`), 1-8 bytes.
    pub auth_password: Option<Spanned<String>>,
    /// Pools whose health lowers the priority; default all pools.
    pub track_pools: Option<Vec<Spanned<String>>>,
    /// Default 0.5.
    pub min_healthy_share: Option<Spanned<f64>>,
    /// Default `priority - 1`.
    pub weight: Option<Spanned<i64>>,
    /// keepalived's `preempt_delay`; default edge-vrrp's (0s).
    pub preempt_delay: Option<Spanned<ConfigDuration>>,
    /// keepalived's `garp_master_delay`; default edge-vrrp's (5s).
    pub garp_master_delay: Option<Spanned<ConfigDuration>>,
    /// keepalived's `garp_master_repeat`; default edge-vrrp's (5).
    pub garp_master_repeat: Option<Spanned<i64>>,
    /// keepalived's `garp_master_refresh`; default off.
    pub garp_master_refresh: Option<Spanned<ConfigDuration>>,
    /// keepalived's `garp_master_refresh_repeat`; default edge-vrrp's (1).
    pub garp_master_refresh_repeat: Option<Spanned<i64>>,
    /// Longest a starting node keeps the instance out of elections while
    /// its first health check round runs; default 5s.
    pub startup_hold: Option<Spanned<ConfigDuration>>,
}

/// `[acme]`: HTTP-01 challenges on the plain port, DNS-01 updates and
/// automatic certificates.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Acme {
    /// Storage directory (account, certificates, pending tokens), shared by the pair.
    pub storage: Option<Spanned<String>>,
    /// The CA's ACME directory URL.
    pub directory_url: Option<Spanned<String>>,
    /// Account contacts (`mailto:...`).
    pub contact: Vec<String>,
    /// Extra PEM roots to trust for the CA (private or test CAs).
    pub ca_roots: Vec<Spanned<String>>,
    /// The peer node's plain-HTTP address, asked for tokens this node does not know.
    pub peer: Option<Spanned<String>>,
    /// Certificates to obtain: each a list of names, or a table with
    /// `names` and `challenge`.
    pub certificates: Vec<Spanned<super::acme_dns::AcmeCertificate>>,
    /// `[acme.dns]`: RFC 2136 updates for DNS-01 certificates.
    pub dns: Option<Spanned<super::acme_dns::AcmeDns>>,
    /// Expiry of the storage lock held while ordering (edge-acme's default).
    pub lock_ttl: Option<Spanned<ConfigDuration>>,
    /// How long to wait for the other node's lock (edge-acme's default).
    pub lock_wait: Option<Spanned<ConfigDuration>>,
}

/// `[runtime]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Runtime {
    /// Tokio worker threads; 0 = one per core.
    pub worker_threads: usize,
    /// Default `tracing` filter when `RUST_LOG` is unset.
    pub log_level: String,
}

impl Default for Runtime {
    fn default() -> Self {
        Self {
            worker_threads: 0,
            log_level: "info".into(),
        }
    }
}

/// `[https]`: the TLS listener (termination and passthrough on one port).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Https {
    pub listen: Vec<Spanned<String>>,
    pub proxy_protocol: bool,
    pub trusted_proxies: Vec<Spanned<String>>,
    /// Name of a `[[certificate]]` served when SNI is absent or unknown.
    pub default_certificate: Option<Spanned<String>>,
    /// Reject requests whose Host differs from the TLS SNI (421).
    pub strict_host: bool,
    /// Clients whose X-Forwarded-* and X-Request-Id headers are kept (appended to).
    pub trusted_upstreams: Vec<Spanned<String>>,
    /// ALPN protocols offered, in preference order.
    pub alpn: Vec<Spanned<String>>,
    /// Accept the hybrid post-quantum key exchange X25519MLKEM768.
    pub post_quantum: bool,
    /// The key exchange groups accepted; none = the default list
    /// (`post_quantum` decides whether it has X25519MLKEM768).
    pub key_exchange_groups: Option<Spanned<Vec<Spanned<String>>>>,
    /// Serve HTTP/3 (QUIC) on UDP at the same addresses.
    pub http3: bool,
    /// QUIC handshakes in progress above which a new client is asked to
    /// prove its address (Retry) first; 0: always.
    pub http3_retry_above: usize,
}

impl Default for Https {
    fn default() -> Self {
        Self {
            listen: vec![Spanned::new(0..0, "0.0.0.0:443".into())],
            proxy_protocol: false,
            trusted_proxies: Vec::new(),
            default_certificate: None,
            strict_host: true,
            trusted_upstreams: Vec::new(),
            alpn: vec![
                Spanned::new(0..0, "h2".into()),
                Spanned::new(0..0, "http/1.1".into()),
            ],
            post_quantum: true,
            key_exchange_groups: None,
            http3: false,
            http3_retry_above: 64,
        }
    }
}

/// `[http]`: the plain-HTTP listener (ACME challenges and redirects only).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Http {
    pub listen: Vec<Spanned<String>>,
    pub proxy_protocol: bool,
    pub trusted_proxies: Vec<Spanned<String>>,
    /// Redirect to HTTPS (true) or answer 404 (false).
    pub redirect_to_https: bool,
    /// Port written in redirect locations (443 leaves it out).
    pub https_port: u16,
}

impl Default for Http {
    fn default() -> Self {
        Self {
            listen: vec![Spanned::new(0..0, "0.0.0.0:80".into())],
            proxy_protocol: false,
            trusted_proxies: Vec::new(),
            redirect_to_https: true,
            https_port: 443,
        }
    }
}

/// `[limits]`: safety limits, all on by default.
#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    pub max_connections: usize,
    pub client_hello_timeout: ConfigDuration,
    pub tls_handshake_timeout: ConfigDuration,
    pub header_read_timeout: ConfigDuration,
    pub idle_timeout: ConfigDuration,
    pub max_header_bytes: usize,
    pub max_headers: usize,
    pub h2_max_concurrent_streams: u32,
    pub h2_max_header_list_size: u32,
    pub h2_max_pending_accept_reset_streams: usize,
    pub h2_max_local_error_reset_streams: usize,
    pub passthrough_idle_timeout: ConfigDuration,
    /// An Upgrade tunnel (WebSocket) is closed after this long without a
    /// byte in either direction (HAProxy's `timeout tunnel`).
    pub tunnel_idle_timeout: ConfigDuration,
    /// A request body that sends nothing for this long is the client's
    /// fault: 408 (nginx's `client_body_timeout`).
    pub body_read_timeout: ConfigDuration,
    /// At stop (SIGTERM), how long requests and passthrough connections in
    /// flight may take to finish before edge exits anyway (nginx's
    /// `worker_shutdown_timeout`, HAProxy's `hard-stop-after`).
    pub drain_timeout: ConfigDuration,
    /// At stop, with `[[vrrp]]`: how long the node keeps the VIPs (and keeps
    /// serving) while the requests in flight at the signal finish, before
    /// it hands the VIPs over. Connections that are still open when the VIP
    /// moves lose their packets to the new master (its kernel resets them),
    /// so this is what lets in-flight requests complete. `"0s"`: hand over
    /// at once.
    pub drain_before_handover: ConfigDuration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 10_000,
            client_hello_timeout: ConfigDuration::secs(5),
            tls_handshake_timeout: ConfigDuration::secs(10),
            header_read_timeout: ConfigDuration::secs(10),
            idle_timeout: ConfigDuration::secs(60),
            max_header_bytes: 65_536,
            max_headers: 100,
            h2_max_concurrent_streams: 128,
            h2_max_header_list_size: 65_536,
            h2_max_pending_accept_reset_streams: 20,
            h2_max_local_error_reset_streams: 256,
            passthrough_idle_timeout: ConfigDuration::secs(3600),
            tunnel_idle_timeout: ConfigDuration::secs(3600),
            body_read_timeout: ConfigDuration::secs(30),
            drain_timeout: ConfigDuration::secs(30),
            drain_before_handover: ConfigDuration::secs(5),
        }
    }
}

/// `[[certificate]]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Certificate {
    pub name: Spanned<String>,
    /// Names this certificate serves; defaults to the names in the certificate.
    #[serde(default)]
    pub names: Vec<Spanned<String>>,
    /// PEM chain (leaf first).
    pub cert: Option<Spanned<String>>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: Option<Spanned<String>>,
    /// Generate a self-signed certificate for `names` at start (testing only).
    #[serde(default)]
    pub self_signed: bool,
}

/// `[[passthrough]]`: SNI names relayed untouched to a pool.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Passthrough {
    pub sni: Vec<Spanned<String>>,
    pub pool: Spanned<String>,
    #[serde(default)]
    pub proxy_protocol: ProxyProtocolOut,
}

/// PROXY protocol sent to a passthrough backend.
#[derive(Debug, Deserialize, Clone, Copy, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ProxyProtocolOut {
    #[default]
    None,
    V2,
}

/// `[[route]]`: HTTP routing rules, first match wins in file order.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    pub name: Option<String>,
    #[serde(default)]
    pub host: Vec<Spanned<String>>,
    #[serde(default = "default_prefix")]
    pub path_prefix: Spanned<String>,
    #[serde(default)]
    pub header: Vec<HeaderMatch>,
    pub pool: Option<Spanned<String>>,
    pub redirect: Option<Redirect>,
    pub respond: Option<Respond>,
    /// `"required"`: answer 403 unless the connection carries a verified
    /// client certificate (`[[client_auth]]`); `"none"` (default): no check.
    pub client_certificate: Option<Spanned<String>>,
}

fn default_prefix() -> Spanned<String> {
    Spanned::new(0..0, "/".into())
}

/// `header = [{ name = "...", value = "..." }]` in a route.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderMatch {
    pub name: Spanned<String>,
    /// Exact value; absent = the header only has to be present.
    pub value: Option<String>,
}

/// `redirect = { location = "...", status = 301 }`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Redirect {
    pub location: Spanned<String>,
    #[serde(default = "default_redirect_status")]
    pub status: Spanned<u16>,
    /// Append the request path and query to `location`.
    #[serde(default)]
    pub keep_path: bool,
}

fn default_redirect_status() -> Spanned<u16> {
    Spanned::new(0..0, 302)
}

/// `respond = { status = 200, body = "...", content_type = "..." }`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Respond {
    #[serde(default = "default_respond_status")]
    pub status: Spanned<u16>,
    #[serde(default)]
    pub body: String,
    #[serde(default = "default_content_type")]
    pub content_type: String,
}

fn default_respond_status() -> Spanned<u16> {
    Spanned::new(0..0, 200)
}
fn default_content_type() -> String {
    "text/plain; charset=utf-8".into()
}

/// `[[pool]]`: a set of backend servers.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pool {
    pub name: Spanned<String>,
    #[serde(rename = "server")]
    pub servers: Vec<Server>,
    #[serde(default)]
    pub policy: Policy,
    #[serde(default)]
    pub protocol: BackendProtocol,
    #[serde(default = "d_connect_timeout")]
    pub connect_timeout: ConfigDuration,
    #[serde(default = "d_response_timeout")]
    pub response_timeout: ConfigDuration,
    #[serde(default = "d_idle_timeout")]
    pub idle_timeout: ConfigDuration,
    /// Concurrent requests per server; 0 = unlimited.
    #[serde(default)]
    pub max_connections_per_server: usize,
    /// Requests waiting for a server slot before 503.
    #[serde(default = "d_max_queue")]
    pub max_queue: usize,
    #[serde(default = "d_queue_timeout")]
    pub queue_timeout: ConfigDuration,
    #[serde(default = "d_retries")]
    pub retries: u32,
    /// Retries allowed as a share of requests, in percent (plus a reserve of 10).
    #[serde(default = "d_retry_budget")]
    pub retry_budget_percent: u8,
    pub health: Option<Health>,
    #[serde(default)]
    pub outlier: Outlier,
    /// What `policy = "hash"` / `"maglev"` keys on: `"source"` (default),
    /// `"header:NAME"` or `"cookie:NAME"`.
    pub hash_key: Option<Spanned<String>>,
    /// Bounded load of the hashing policies (> 1.0); default off.
    pub bounded_load: Option<Spanned<f64>>,
    /// Weight ramp after a server comes back; default `"0s"` (off).
    pub slow_start: Option<Spanned<ConfigDuration>>,
    /// With no server up, use them all (except drained ones); default false.
    #[serde(default)]
    pub fail_open: bool,
    /// `[pool.capacity]`: capacity alert thresholds and hooks.
    pub capacity: Option<Spanned<super::shapes::Capacity>>,
    /// Sticky sessions by a cookie of this name that edge sets; default off.
    pub sticky_cookie: Option<Spanned<String>>,
    /// `[pool.tls]`: TLS to the servers (absent: plaintext).
    pub tls: Option<PoolTls>,
}

/// `[pool.tls]`: TLS to a pool's servers (HAProxy `server ... ssl`, nginx
/// `proxy_ssl_*`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolTls {
    /// Trusted roots (PEM); absent: the system's roots.
    pub ca_file: Option<Spanned<String>>,
    /// Verify the server's certificate chain and name.
    #[serde(default = "d_verify")]
    pub verify: Spanned<bool>,
    /// The name sent as SNI and verified.
    pub sni: Option<Spanned<String>>,
    /// Client certificate chain (PEM), for servers that require one.
    pub client_cert: Option<Spanned<String>>,
    /// The client certificate's private key (PEM).
    pub client_key: Option<Spanned<String>>,
}

fn d_verify() -> Spanned<bool> {
    Spanned::new(0..0, true)
}

fn d_connect_timeout() -> ConfigDuration {
    ConfigDuration::secs(3)
}
fn d_response_timeout() -> ConfigDuration {
    ConfigDuration::secs(60)
}
fn d_idle_timeout() -> ConfigDuration {
    ConfigDuration::secs(90)
}
fn d_max_queue() -> usize {
    128
}
fn d_queue_timeout() -> ConfigDuration {
    ConfigDuration::secs(5)
}
fn d_retries() -> u32 {
    2
}
fn d_retry_budget() -> u8 {
    20
}

/// `[[pool.server]]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Server {
    /// `IP:PORT`, or `NAME:PORT` (found by DNS).
    pub address: Option<Spanned<String>>,
    /// An SRV name (found by DNS).
    pub srv: Option<Spanned<String>>,
    #[serde(default = "d_weight")]
    pub weight: Spanned<u32>,
}

fn d_weight() -> Spanned<u32> {
    Spanned::new(0..0, 1)
}

/// Balancing policy of a pool.
#[derive(Debug, Deserialize, Clone, Copy, Default, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Policy {
    #[default]
    RoundRobin,
    LeastRequest,
    Random,
    /// Power of two random choices on outstanding requests.
    P2c,
    /// Peak-EWMA latency × outstanding requests with two choices (linkerd's).
    PeakEwma,
    /// Consistent hashing (Maglev table) on `hash_key`.
    Maglev,
    /// The same as `Maglev` (HAProxy's `balance source` / `hash-type consistent`).
    Hash,
}

/// How edge speaks to a pool's servers (HTTP routes only).
#[derive(Debug, Deserialize, Clone, Copy, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum BackendProtocol {
    #[default]
    Http1,
    H2c,
    /// HTTP/2 over TLS (`[pool.tls]`).
    H2,
    /// HTTP/2 or HTTP/1.1 over TLS, as the server chooses in ALPN.
    Auto,
}

/// `[pool.health]`: active health checks.
#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct Health {
    #[serde(default)]
    pub kind: HealthKind,
    #[serde(default = "d_health_path")]
    pub path: String,
    #[serde(default = "d_health_interval")]
    pub interval: ConfigDuration,
    #[serde(default = "d_health_timeout")]
    pub timeout: ConfigDuration,
    #[serde(default = "d_rise")]
    pub rise: u32,
    #[serde(default = "d_fall")]
    pub fall: u32,
    /// Host header sent with HTTP checks.
    pub host: Option<String>,
    /// Interval while a server is changing state; default `interval`.
    pub fastinter: Option<Spanned<ConfigDuration>>,
    /// Interval while a server is fully down; default `interval`.
    pub downinter: Option<Spanned<ConfigDuration>>,
    /// Statuses that pass: codes and `"lo-hi"` ranges; default 200-399.
    pub expect_status: Option<Spanned<Vec<super::shapes::StatusItem>>>,
    /// Text the response body must contain; default none.
    pub expect_body: Option<Spanned<String>>,
    /// State before the first check: `"down"` (default) or `"up"`.
    #[serde(default)]
    pub initial_state: super::shapes::InitialStateFile,
}

// The `[pool.health]` defaults are edge-health's (`HttpProbe` and `CheckConfig`).
fn d_health_path() -> String {
    edge_health::HttpProbe::default().path
}
fn d_health_interval() -> ConfigDuration {
    ConfigDuration(edge_health::CheckConfig::default().inter)
}
fn d_health_timeout() -> ConfigDuration {
    ConfigDuration(edge_health::CheckConfig::default().timeout)
}
fn d_rise() -> u32 {
    edge_health::CheckConfig::default().rise
}
fn d_fall() -> u32 {
    edge_health::CheckConfig::default().fall
}

/// Kind of active probe.
#[derive(Debug, Deserialize, Clone, Copy, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum HealthKind {
    /// `GET path`, healthy on 2xx/3xx.
    #[default]
    Http,
    /// TCP connect only.
    Tcp,
    /// `GET path` over TLS with the pool's `[pool.tls]` settings.
    Https,
    /// A TLS handshake with the pool's `[pool.tls]` settings.
    Tls,
}

/// `[pool.outlier]`: passive detection from live traffic.
#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields, default)]
pub struct Outlier {
    /// Consecutive failures that eject a server; 0 = off.
    pub consecutive_failures: u32,
    pub ejection_time: ConfigDuration,
    /// Largest share of the pool ejected at once (at least one server can be).
    pub max_ejection_percent: u8,
}

/// edge-health's `OutlierConfig` defaults (5 failures, 30 s, 10 %).
impl Default for Outlier {
    fn default() -> Self {
        let d = edge_health::OutlierConfig::default();
        Self {
            consecutive_failures: d.consecutive_failures,
            ejection_time: ConfigDuration(d.base_ejection_time),
            max_ejection_percent: d.max_ejection_percent,
        }
    }
}

/// `[[demo_backend]]`: a tiny built-in HTTP echo server, for trying edge out.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DemoBackend {
    pub listen: Spanned<String>,
    #[serde(default = "d_demo_name")]
    pub name: String,
}

fn d_demo_name() -> String {
    "demo".into()
}
