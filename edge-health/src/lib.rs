//! Active health checks, rise/fall state machines and passive outlier
//! detection for the edge proxy.
//!
//! # Design
//!
//! - [`HealthMachine`]: one target's state, HAProxy's model (`rise`, `fall`,
//!   `inter`, `fastinter`, `downinter`). It does no I/O and reads no clock:
//!   the caller passes `now` with every probe result and asks when the next
//!   probe is due. [`CapacityTracker`] is the same for a pool's capacity
//!   alert.
//! - Probes ([`Probe`]): TCP connect, HTTP/HTTPS request, TLS handshake,
//!   or your own [`CustomProbe`].
//! - [`HealthChecker`]: the tokio driver. It runs probes for thousands of
//!   targets with bounded concurrency, jitter, and a timeout per probe, so
//!   a stuck backend never delays the others. It publishes a
//!   [`HealthStream`] of [`HealthEvent`]s and a [`PoolStatus`] per pool, and
//!   logs every state change once, with its [`Reason`].
//! - [`OutlierDetector`]: live traffic reports [`Outcome`]s; consecutive
//!   failures eject a target for a growing time, capped to a share of the
//!   pool; an ejected target returns through a passing probe.
//!
//! # Example
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), edge_health::ConfigError> {
//! use std::time::Duration;
//! use edge_health::{CheckConfig, HealthChecker, PoolConfig, Probe, SchedulerConfig};
//!
//! let backend = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
//! let addr = backend.local_addr().unwrap();
//! let mut checker = HealthChecker::new(SchedulerConfig::default())?;
//! checker.add_pool(
//!     PoolConfig::new("web", [addr])
//!         .probe(Probe::Tcp)
//!         .check(CheckConfig::default().inter(Duration::from_millis(100)).fall(2)),
//! )?;
//! let health = checker.spawn();
//! let mut events = health.subscribe();
//! while !events.next().await.unwrap().healthy {}
//! drop(backend); // the port closes: two failed probes later it is out
//! let down = loop {
//!     let e = events.next().await.unwrap();
//!     if !e.healthy { break e; }
//! };
//! assert_eq!(down.reason.to_string(), "connection refused");
//! assert_eq!(health.pool_summary("web"), Some((0, 1)));
//! health.shutdown().await;
//! # Ok(()) }
//! ```

mod capacity;
mod checker;
mod config;
mod driver;
mod error;
mod event;
mod machine;
mod outlier;
mod pool;
mod probe;
mod reason;
mod round;
mod scheduler;
mod shared;

pub use crate::capacity::{CapacityChange, CapacityTracker};
pub use crate::checker::{HealthChecker, HealthHandle};
pub use crate::config::{
    AlertHook, CapacityConfig, CheckConfig, InitialState, OutlierConfig, SchedulerConfig,
};
pub use crate::error::ConfigError;
pub use crate::event::{FirstRound, HealthEvent, PoolStatus, ProbeObserver, ProbeReport};
pub use crate::machine::{HealthMachine, TargetState, Transition};
pub use crate::outlier::{Outcome, OutlierDetector, max_ejected};
pub use crate::pool::PoolConfig;
pub use crate::probe::{
    BodyMatch, CustomProbe, HttpProbe, Probe, ProbeFuture, StatusSet, TlsProbe, TlsVerify,
};
pub use crate::reason::Reason;
pub use crate::shared::HealthStream;
