//! Live endpoint sets and load-balancing policies as tower services.
//!
//! # Design
//!
//! - [`EndpointSet<K, T>`] is the runtime-changeable set of endpoints:
//!   [`insert`](EndpointSet::insert), [`remove`](EndpointSet::remove),
//!   [`set_weight`](EndpointSet::set_weight), [`drain`](EndpointSet::drain)
//!   and [`set_healthy`](EndpointSet::set_healthy), all keyed by `K`.
//!   Writers publish immutable [`Snapshot`]s through an atomic pointer
//!   (`arc-swap`); pickers load them without locks, so a reload or a health
//!   change never blocks a pick. Repeated health results are no-ops.
//! - [`Balancer<K, T>`] applies a [`Policy`] to a set. Besides the tower
//!   services it has a direct [`pick`](Balancer::pick) for callers that
//!   dispatch themselves (retries that must avoid endpoints already tried,
//!   via [`PickContext::exclude`]; raw TCP relays). A pick returns a
//!   [`Picked`] whose [`InFlight`] guard counts the work as outstanding
//!   until dropped and records the outcome.
//! - Policies: smooth weighted round robin as nginx
//!   ([`Policy::RoundRobin`], the default: see [`Policy::default`] for
//!   why), weighted least outstanding requests with
//!   alternating ties ([`Policy::LeastRequest`]), weighted random, power of
//!   two choices on outstanding requests, Peak-EWMA with P2C as linkerd
//!   ([`Policy::PeakEwma`]), and Maglev consistent hashing with an optional bounded
//!   load ([`Policy::Maglev`]), keyed by source IP, a header or a cookie
//!   ([`HashSource`]).
//! - Slow start ([`BalancerConfig::slow_start`]) ramps an endpoint's weight
//!   linearly after it comes up. With no available endpoint a pick fails
//!   with [`NoEndpoint`] (a 503), or with
//!   [`BalancerConfig::fail_open`] falls back to every endpoint not
//!   draining and logs a warning.
//! - [`EndpointStats`] counts picks, in-flight work and errors per
//!   endpoint; read them from a [`Snapshot`] or
//!   [`EndpointSet::stats`] into your own metrics registry.
//! - tower: [`Balance`] sends each request to a picked endpoint service;
//!   [`BalanceLayer`] / [`BalanceTo`] hand the picked target (e.g. an
//!   address) and the request to one inner service. Requests implement
//!   [`BalanceKey`]: `http::Request` (with the [`ClientAddr`] and
//!   [`HashKey`] extensions), accepted connections `(IO, SocketAddr)` and
//!   `TcpStream`.
//!
//! - Dispatch: [`Dispatcher`] (and the tower [`Dispatch`] /
//!   [`DispatchLayer`]) runs a proxy's whole request loop: pick, wait for
//!   a slot ([`Target`]: per-endpoint limit, bounded queue, queue
//!   timeout), send the next attempt ([`Attempts`]; [`ReplayRequest`]
//!   buffers small HTTP bodies for a retry) with an attempt timeout,
//!   classify the answer ([`Classify`] → [`Outcome`]) into the endpoint's
//!   counters and an outcome callback (edge-health's outlier detection,
//!   without either crate depending on the other), and retry on an
//!   endpoint not yet tried under a [`RetryBudget`]. A [`Served`] holds a
//!   [`Lease`] on the endpoint until the caller's work ends.
//!
//! - TLS to upstream servers (feature `tls`, module [`upstream_tls`]): the
//!   rustls client settings (roots, verification, client certificate, SNI,
//!   ALPN), the hyper connector built from them, and the named reason a
//!   handshake failed ([`upstream_tls::TlsFailure`]).
//!
//! This crate does no I/O and starts no tasks (dispatch waits with tokio's
//! timers; the I/O is the inner service's), except the connector of the
//! optional `upstream_tls` module.
//!
//! # Costs
//!
//! A pick reads one atomic generation number and an `arc-swap` pointer and
//! never waits for a writer. The first pick after a change rebuilds the
//! balancer's view of the set (available endpoints, prefix sums, the round
//! robin cycle or the Maglev table); pickers arriving during that build
//! wait for it (a few milliseconds for a Maglev table at 1000 endpoints).
//! Least-request is an exact O(N) scan; the other policies are O(1) or
//! O(log N) per pick outside slow-start ramps and exclusions.
//!
//! # Example: balancing your own tower services
//!
//! ```
//! use edge_balance::{Balance, Balancer, BalancerConfig, EndpointSet, Policy};
//! use tower::{service_fn, Service, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! let set = EndpointSet::new();
//! for name in ["a", "b", "c"] {
//!     let svc = service_fn(move |req: http::Request<()>| async move {
//!         Ok::<_, std::convert::Infallible>(format!("{name} got {}", req.uri()))
//!     });
//!     set.insert(name, svc, 1);
//! }
//! let mut lb = Balance::new(Balancer::new(set.clone(), Policy::RoundRobin, BalancerConfig::default()));
//! let rsp = lb.ready().await?.call(http::Request::new(())).await?;
//! assert_eq!(rsp, "a got /");
//! set.set_healthy(&"b", false); // e.g. from edge-health
//! # Ok(())
//! # }
//! ```

//!
//! # Example: direct picks with a retry on another endpoint
//!
//! ```
//! use std::net::SocketAddr;
//! use edge_balance::{Balancer, BalancerConfig, EndpointSet, NoEndpoint, PickContext, Policy};
//!
//! let set: EndpointSet<SocketAddr, SocketAddr> = EndpointSet::new();
//! for port in [8001, 8002] {
//!     let addr = SocketAddr::from(([127, 0, 0, 1], port));
//!     set.insert(addr, addr, 1);
//! }
//! let lb = Balancer::new(set, Policy::LeastRequest, BalancerConfig::default());
//! let first = lb.pick(&PickContext::new()).expect("an endpoint");
//! let tried = [*first.key()];
//! first.failure(); // e.g. connection refused
//! let second = lb.pick(&PickContext::new().exclude(&tried)).expect("another endpoint");
//! assert_ne!(second.key(), &tried[0]);
//! let both = [tried[0], *second.key()];
//! assert!(matches!(lb.pick(&PickContext::new().exclude(&both)), Err(NoEndpoint::AllExcluded { .. })));
//! ```

mod balancer;
pub mod body;
pub mod client_limit;
pub mod discovery;
mod dispatch;
mod error;
pub mod forwarding;
mod hash;
mod policy;
mod service;
mod set;
mod stats;
#[cfg(feature = "tls")]
pub mod upstream_tls;
mod view;

pub use balancer::{Balancer, BalancerConfig, InFlight, PickContext, Picked};
pub use dispatch::{
    AnySuccess, Attempts, Classify, Cloned, Connect, ConnectOnly, Dispatch, DispatchConfig,
    DispatchError, DispatchLayer, Dispatcher, Failed, HttpStatus, Lease, Outcome, ReplayBody,
    ReplayRequest, RetryBudget, Served, Target,
};
pub use error::{Error, NoEndpoint};
pub use hash::{HashKey, Prefer, endpoint_id, hash_bytes, hash_ip};
pub use policy::{
    DEFAULT_TABLE_SIZE, HashSource, MaglevConfig, MaglevTable, PeakEwmaConfig, Policy,
    UnknownPolicy,
};
pub use service::{
    Balance, BalanceKey, BalanceLayer, BalanceTo, ClientAddr, ResponseFuture, cookie_value,
};
pub use set::{Endpoint, EndpointSet, Snapshot};
pub use stats::{EndpointStats, StatsSnapshot};
