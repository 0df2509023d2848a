//! Balancing policies and their settings.
//!
//! Each policy is a small module with a pure pick function over a
//! [`View`](crate::view) of the available endpoints; the
//! [`Balancer`](crate::Balancer) chooses one by [`Policy`].

use std::time::Duration;

pub(crate) mod least;
pub(crate) mod maglev;
pub(crate) mod random;
pub(crate) mod smooth;
pub(crate) mod wrr;

pub use maglev::{DEFAULT_TABLE_SIZE, MaglevTable};

/// Which endpoint gets the next request.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Policy {
    /// Smooth weighted round robin, as nginx does it: over each cycle of
    /// `sum(weights)` picks every endpoint gets exactly its weight, spread
    /// out rather than in bursts. The default (see [`Policy::default`]).
    RoundRobin,
    /// Weighted least outstanding requests: the endpoint with the fewest
    /// in-flight requests per unit of weight; equal endpoints alternate.
    LeastRequest,
    /// Weighted random.
    Random,
    /// Power of two choices on outstanding requests: two random endpoints,
    /// the less loaded (per unit of weight) wins.
    P2c,
    /// Peak-EWMA latency × outstanding requests, with power of two choices,
    /// as linkerd does.
    PeakEwma(PeakEwmaConfig),
    /// Consistent hashing with a Maglev lookup table.
    Maglev(MaglevConfig),
}

impl Default for Policy {
    /// [`Policy::RoundRobin`], the default of nginx and HAProxy and of
    /// edge's `[[pool]] policy`: weights are met exactly over every cycle,
    /// the result does not depend on timing (two proxies of a pair spread
    /// load alike, tests can assert it), and it means the same for HTTP
    /// requests and for long-lived passthrough connections, where a latency
    /// estimate only measures connects. Choose [`Policy::PeakEwma`] for
    /// request traffic with uneven backends.
    fn default() -> Self {
        Self::RoundRobin
    }
}

/// A policy name that [`Policy::from_str`](std::str::FromStr) does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown balancing policy {0:?} (expected round_robin, least_request, random, p2c, peak_ewma or maglev)"
)]
pub struct UnknownPolicy(pub String);

impl std::str::FromStr for Policy {
    type Err = UnknownPolicy;

    /// Parses a policy name with default settings. Accepts the names of
    /// [`Policy::name`] and the usual nginx / HAProxy spellings
    /// (`roundrobin`, `leastconn`, `least_conn`, `ewma`, `hash`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(
            match s.trim().to_ascii_lowercase().replace('-', "_").as_str() {
                "round_robin" | "roundrobin" | "rr" => Self::RoundRobin,
                "least_request" | "least_conn" | "leastconn" | "least_outstanding" => {
                    Self::LeastRequest
                }
                "random" => Self::Random,
                "p2c" | "power_of_two" => Self::P2c,
                "peak_ewma" | "ewma" => Self::PeakEwma(PeakEwmaConfig::default()),
                "maglev" | "hash" | "consistent_hash" => Self::Maglev(MaglevConfig::default()),
                _ => return Err(UnknownPolicy(s.to_owned())),
            },
        )
    }
}

impl Policy {
    /// The request attribute hashed by this policy, if it hashes.
    pub fn hash_source(&self) -> Option<&HashSource> {
        match self {
            Self::Maglev(c) => Some(&c.hash),
            _ => None,
        }
    }

    /// A short name for logs and metrics labels.
    pub fn name(&self) -> &'static str {
        match self {
            Self::RoundRobin => "round_robin",
            Self::LeastRequest => "least_request",
            Self::Random => "random",
            Self::P2c => "p2c",
            Self::PeakEwma(_) => "peak_ewma",
            Self::Maglev(_) => "maglev",
        }
    }
}

/// Settings of [`Policy::PeakEwma`].
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct PeakEwmaConfig {
    /// Latency assumed for an endpoint that has requests outstanding but
    /// has not answered yet. An endpoint with no answer and no outstanding
    /// request costs nothing, so every new endpoint gets tried (as in
    /// Finagle). Default: 30 ms (linkerd's default).
    pub default_rtt: Duration,
    /// Time constant of the moving average: how long a latency peak takes
    /// to fade to 1/e. Default: 10 s (linkerd's default).
    pub decay: Duration,
}

impl Default for PeakEwmaConfig {
    fn default() -> Self {
        Self {
            default_rtt: Duration::from_millis(30),
            decay: Duration::from_secs(10),
        }
    }
}

impl PeakEwmaConfig {
    /// Sets [`default_rtt`](Self::default_rtt).
    pub fn default_rtt(mut self, rtt: Duration) -> Self {
        self.default_rtt = rtt;
        self
    }

    /// Sets [`decay`](Self::decay).
    pub fn decay(mut self, decay: Duration) -> Self {
        self.decay = decay;
        self
    }

    pub(crate) fn decay_ns(&self) -> f64 {
        (self.decay.as_nanos() as f64).max(1.0)
    }

    pub(crate) fn default_ns(&self) -> f64 {
        self.default_rtt.as_nanos() as f64
    }
}

/// Settings of [`Policy::Maglev`].
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct MaglevConfig {
    /// Lookup table size. It is raised to the next prime if it is not one,
    /// and to the smallest prime above 100 × endpoints when that is larger.
    /// Default: [`DEFAULT_TABLE_SIZE`] (65537).
    pub table_size: u64,
    /// Bounded load ("consistent hashing with bounded loads"): when set to
    /// `c` (> 1.0), an endpoint already carrying more than `c` × its fair
    /// share of this balancer's in-flight requests is skipped and the key
    /// walks on through the table. Default: `None` (pure consistent hashing).
    pub bounded_load: Option<f64>,
    /// What to hash. Default: [`HashSource::SourceIp`].
    pub hash: HashSource,
}

impl Default for MaglevConfig {
    fn default() -> Self {
        Self {
            table_size: DEFAULT_TABLE_SIZE,
            bounded_load: None,
            hash: HashSource::SourceIp,
        }
    }
}

impl MaglevConfig {
    /// Sets [`table_size`](Self::table_size).
    pub fn table_size(mut self, size: u64) -> Self {
        self.table_size = size;
        self
    }

    /// Sets [`bounded_load`](Self::bounded_load).
    pub fn bounded_load(mut self, factor: Option<f64>) -> Self {
        self.bounded_load = factor;
        self
    }

    /// Sets [`hash`](Self::hash).
    pub fn hash(mut self, source: HashSource) -> Self {
        self.hash = source;
        self
    }
}

/// The request attribute a hashing policy keys on.
///
/// A request without the attribute (no such header or cookie) gets a random
/// key. For cookie stickiness edge-bin then sets the cookie: it generates a
/// value, passes [`hash_bytes`](crate::hash_bytes) of it as the request's
/// [`HashKey`](crate::HashKey) and sends it back in `Set-Cookie`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum HashSource {
    /// The client's IP address (port ignored), from the
    /// [`ClientAddr`](crate::ClientAddr) request extension or the
    /// connection's peer address.
    SourceIp,
    /// The value of a request header (all values, joined, if repeated).
    Header(http::HeaderName),
    /// The value of a cookie.
    Cookie(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_names_are_rejected() {
        for p in [
            Policy::RoundRobin,
            Policy::LeastRequest,
            Policy::Random,
            Policy::P2c,
            Policy::PeakEwma(PeakEwmaConfig::default()),
            Policy::Maglev(MaglevConfig::default()),
        ] {
            assert_eq!(p.name().parse::<Policy>().as_ref(), Ok(&p));
        }
        assert_eq!("leastconn".parse::<Policy>(), Ok(Policy::LeastRequest));
        assert_eq!(Policy::default(), Policy::RoundRobin);
        assert_eq!(
            "fastest".parse::<Policy>(),
            Err(UnknownPolicy("fastest".into()))
        );
    }
}
