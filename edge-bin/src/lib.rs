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
//!   (passthrough) or terminates TLS with rustls and serves HTTP/1.1 and
//!   HTTP/2 with hyper-util's auto builder; the plain port answers ACME
//!   challenges and redirects.
//! - [`http`] routes and forwards terminated requests; [`pool`] picks servers,
//!   bounds concurrency and tracks health; [`accesslog::AccessRecord`] is the
//!   one record per request or passthrough connection.
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
pub mod certs;
pub mod config;
pub mod demo;
pub mod h1guard;
pub mod health;
pub mod http;
pub mod pool;
pub mod proxy_protocol;
pub mod relay;
pub mod server;
pub mod state;
pub mod tls_tuning;
pub mod vrrp;
