//! Servers found by DNS: a name's A and AAAA records (`app.internal:8080`)
//! or an SRV name (`_http._tcp.app.internal`: targets, ports and weights),
//! re-resolved as their TTL runs out, as HAProxy's `server-template` with
//! `resolvers` does.
//!
//! The parts:
//! - [`Source`]: what to resolve; [`DiscoveryConfig`]: the TTL bounds, the
//!   retry interval and the hold time.
//! - [`Resolve`]: one lookup; [`DnsResolver`] (feature `dns`) does it with
//!   hickory-resolver, from `/etc/resolv.conf` or given name servers.
//! - [`Tracker`]: the sans-IO rules (clamp the TTL, keep the last good set
//!   through failures for the hold time, say when the set changed).
//! - [`watch`]: the tokio driver; it publishes each new member set on a
//!   [`tokio::sync::watch`] channel and stops when every receiver is gone.
//!
//! Applying a member set to an [`EndpointSet`](crate::EndpointSet) is the
//! caller's: a server that leaves should drain (its in-flight requests hold
//! their lease and finish) and a server that joins usually needs a health
//! check first.
//!
//! ```
//! use std::time::{Duration, Instant};
//! use edge_balance::discovery::{Discovered, DiscoveryConfig, LookupError, Tracker};
//!
//! let cfg = DiscoveryConfig::default().hold(Duration::from_secs(30));
//! let mut t = Tracker::new(cfg);
//! let now = Instant::now();
//! let a = vec![("192.0.2.1:80".parse().unwrap(), 1)];
//! let step = t.on_result(now, Ok(Discovered::new(a.clone(), Duration::from_secs(60))));
//! assert_eq!(step.update, Some(a.clone()));
//! // The resolver fails: the last good set is kept within the hold time.
//! let step = t.on_result(now + Duration::from_secs(61), Err(LookupError::Failed("timeout".into())));
//! assert_eq!(step.update, None);
//! assert_eq!(t.members(), Some(&a[..]));
//! ```

#[cfg(feature = "dns")]
mod hickory;
mod tracker;

use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::time::Duration;

#[cfg(feature = "dns")]
pub use hickory::DnsResolver;
pub use tracker::{Event, Step, Tracker, watch};

/// What to resolve.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Source {
    /// Every A and AAAA address of `name`, each on `port`, weight 1.
    Host {
        /// The name, e.g. `app.internal`.
        name: String,
        /// The port the servers listen on.
        port: u16,
    },
    /// The targets of SRV records (RFC 2782): those of the lowest priority,
    /// each target's addresses on the record's port, with its weight (0
    /// counts as 1).
    Srv {
        /// The SRV name, e.g. `_http._tcp.app.internal`.
        name: String,
    },
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Host { name, port } => write!(f, "{name}:{port}"),
            Self::Srv { name } => write!(f, "SRV {name}"),
        }
    }
}

/// A member set: each server's address and weight, sorted, without
/// duplicates.
pub type Members = Vec<(SocketAddr, u32)>;

/// One lookup's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Discovered {
    /// The servers (normalised: sorted by address, duplicates merged).
    pub members: Members,
    /// How long the answer may be used (the records' TTL).
    pub ttl: Duration,
}

impl Discovered {
    /// An answer; `members` are sorted and duplicate addresses merged (the
    /// highest weight wins).
    pub fn new(mut members: Members, ttl: Duration) -> Self {
        members.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
        members.dedup_by_key(|m| m.0);
        Self { members, ttl }
    }
}

/// Why a lookup gave no servers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LookupError {
    /// The name does not exist or has no such records (NXDOMAIN, NODATA).
    #[error("no records: {0}")]
    NotFound(String),
    /// The resolver failed (timeout, SERVFAIL, refused, network).
    #[error("resolver failed: {0}")]
    Failed(String),
}

/// The future of one lookup.
pub type LookupFuture = Pin<Box<dyn Future<Output = Result<Discovered, LookupError>> + Send>>;

/// Resolves a [`Source`] once.
pub trait Resolve: Send + Sync + 'static {
    /// Looks `source` up.
    fn resolve(&self, source: &Source) -> LookupFuture;
}

/// Timing of re-resolution.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DiscoveryConfig {
    /// An answer is used at least this long before asking again, whatever
    /// its TTL (default 1 s).
    pub min_ttl: Duration,
    /// And at most this long (default 300 s).
    pub max_ttl: Duration,
    /// After a failed lookup, ask again after this long (default 2 s).
    pub retry: Duration,
    /// While lookups fail (NXDOMAIN, SERVFAIL, timeout), the last good set
    /// is kept this long; then the servers are removed (default 30 s, as
    /// HAProxy's `hold nx` and `hold other`).
    pub hold: Duration,
}

impl Default for DiscoveryConfig {
    fn default() -> Self {
        Self {
            min_ttl: Duration::from_secs(1),
            max_ttl: Duration::from_secs(300),
            retry: Duration::from_secs(2),
            hold: Duration::from_secs(30),
        }
    }
}

impl DiscoveryConfig {
    /// Sets [`min_ttl`](Self::min_ttl).
    pub fn min_ttl(mut self, d: Duration) -> Self {
        self.min_ttl = d;
        self
    }
    /// Sets [`max_ttl`](Self::max_ttl).
    pub fn max_ttl(mut self, d: Duration) -> Self {
        self.max_ttl = d;
        self
    }
    /// Sets [`retry`](Self::retry).
    pub fn retry(mut self, d: Duration) -> Self {
        self.retry = d;
        self
    }
    /// Sets [`hold`](Self::hold).
    pub fn hold(mut self, d: Duration) -> Self {
        self.hold = d;
        self
    }
}
