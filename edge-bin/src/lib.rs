//! edge: the HA edge proxy, as a library the `edge` binary (and the
//! operations and benchmark work built on it) uses.
//!
//! # Design
//!
//! - [`config`] owns the TOML file format: parse (unknown keys refused), then
//!   validate and compile into [`config::Validated`]; errors name file, line
//!   and key. `edge check` runs exactly this.
//! - [`state::State`] is the runtime form of one config: TLS config and
//!   certificate resolver, routes, pools with their HTTP clients and health
//!   checks. It is immutable and shared as `Arc<State>` through
//!   [`state::SharedState`] (an `ArcSwap`), so a reload swaps it atomically
//!   and every connection keeps the state it was accepted with.
//! - [`server`] runs the listeners: the TLS port reads the ClientHello with
//!   `edge_sni::read_client_hello` and either relays it untouched
//!   (passthrough) or terminates TLS with rustls and serves HTTP/1.1 or
//!   HTTP/2 with hyper's `http1` or `http2` server builder, picked by the
//!   ALPN the handshake agreed (no sniffing of the first bytes); the plain
//!   port speaks HTTP/1 and answers ACME challenges and redirects with
//!   edge-acme's tower services (`ChallengeResponder`, `HttpsRedirect`).
//! - [`reload::Reloader`] runs a config for the process: SIGHUP (or the
//!   admin command) re-reads it and switches in place ([`listeners`] keeps
//!   sockets that stay, [`lifecycle`] closes the old state's connections
//!   after their request), SIGTERM drains; [`notify`] tells systemd;
//!   [`confdiff`] says what a reload changes (`edge check --diff-against`).
//! - [`http`] routes and forwards terminated requests; [`pool`] picks servers,
//!   bounds concurrency and tracks health; [`accesslog::AccessRecord`] is the
//!   one record per request or passthrough connection.
//! - [`admin`] serves the runtime API on a local unix socket (show pools and
//!   servers, drain / maint / enable / set weight, reload); server states
//!   live outside the swapped state and survive reloads.
//!
//! ```
//! let v = edge_bin::config::load_str(
//!     edge_bin::config::Source::new(std::path::Path::new("inline.toml"), r#"
//!         [https]
//!         listen = ["127.0.0.1:8443"]
//!         [[route]]
//!         respond = { status = 200, body = "hi" }
//!     "#.into()),
//!     std::path::Path::new("."),
//! ).unwrap();
//! assert_eq!(v.routes.len(), 1);
//! ```

pub mod accesslog;
pub mod acme;
pub mod admin;
pub mod anycast;
pub mod certs;
pub mod client_cert;
pub mod confdiff;
pub mod config;
pub mod conn;
pub mod demo;
pub mod discovery;
pub mod etcd;
pub mod health;
pub mod http;
pub mod http3;
pub mod inbound;
pub mod lifecycle;
pub mod listeners;
pub mod management;
pub mod metrics;
pub mod notify;
pub mod passthrough;
pub mod peer;
pub mod pool;
pub mod reload;
pub mod server;
pub mod sni;
pub mod state;
pub mod status;
pub mod telemetry;
pub mod terminate;
pub mod tickets;
pub mod tls_tuning;
pub mod vrrp;
