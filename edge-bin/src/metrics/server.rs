//! The counters of one server of one pool: responses by status class,
//! failed attempts by kind, response latency and health-check durations.

use std::time::Duration;

use prometheus::{Histogram, IntCounter};

use super::families::Families;
use super::quantile::{self, Percentiles};
use super::{CLASSES, class_counters, class_of};

/// Why an attempt on a server failed (the `kind` label of
/// `edge_backend_errors_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum BackendError {
    /// No connection could be made.
    Connect,
    /// The request was sent, then the connection failed or the answer was
    /// malformed.
    Response,
    /// No answer within the pool's `response_timeout`.
    Timeout,
    /// The server answered 5xx.
    Status5xx,
}

impl BackendError {
    const ALL: [BackendError; 4] = [
        Self::Connect,
        Self::Response,
        Self::Timeout,
        Self::Status5xx,
    ];

    /// The `kind` label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Connect => "connect",
            Self::Response => "response",
            Self::Timeout => "timeout",
            Self::Status5xx => "status_5xx",
        }
    }
}

/// One server's counters, shared by every config that has it.
#[derive(Debug)]
pub struct ServerStats {
    responses: [IntCounter; 6],
    errors: [IntCounter; 4],
    latency: Histogram,
    /// Health-check durations: passed, failed.
    checks: [Histogram; 2],
}

impl ServerStats {
    pub(super) fn new(f: &Families, pool: &str, server: &str) -> Self {
        let l = [pool, server];
        Self {
            responses: class_counters(&f.backend_responses, &l),
            errors: BackendError::ALL.map(|k| {
                f.backend_errors
                    .with_label_values(&[pool, server, k.as_str()])
            }),
            latency: f.backend_duration.with_label_values(&l),
            checks: ["pass", "fail"].map(|r| {
                f.health_check_duration
                    .with_label_values(&[pool, server, r])
            }),
        }
    }

    /// A response from this server is relayed: its status, and the time
    /// from sending the request to its headers.
    pub fn response(&self, status: u16, elapsed: Duration) {
        if let Some(c) = self.responses.get(class_of(status)) {
            c.inc();
        }
        self.latency.observe(elapsed.as_secs_f64());
    }

    /// An attempt on this server failed.
    pub fn error(&self, kind: BackendError) {
        let i = BackendError::ALL
            .iter()
            .position(|k| *k == kind)
            .unwrap_or(0);
        if let Some(c) = self.errors.get(i) {
            c.inc();
        }
    }

    /// An active health check of this server ended.
    pub fn health_check(&self, passed: bool, took: Duration) {
        if let Some(h) = self.checks.get(usize::from(!passed)) {
            h.observe(took.as_secs_f64());
        }
    }

    /// Responses relayed, by status class.
    pub fn responses(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        CLASSES
            .iter()
            .copied()
            .zip(self.responses.iter().map(IntCounter::get))
    }

    /// Failed attempts, by kind.
    pub fn errors(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        BackendError::ALL
            .iter()
            .map(|k| k.as_str())
            .zip(self.errors.iter().map(IntCounter::get))
    }

    /// Response-latency percentiles since the start (bucket estimates).
    pub fn latency(&self) -> Option<Percentiles> {
        quantile::percentiles(&self.latency)
    }
}

/// The lookups of one source of servers found by DNS.
#[derive(Debug)]
pub struct DnsStats {
    answered: IntCounter,
    not_found: IntCounter,
    failed: IntCounter,
    held: prometheus::IntGauge,
}

impl DnsStats {
    pub(super) fn new(f: &Families, pool: &str, source: &str) -> Self {
        let c = |r: &str| f.dns_lookups.with_label_values(&[pool, source, r]);
        Self {
            answered: c("answered"),
            not_found: c("not_found"),
            failed: c("failed"),
            held: f.dns_held.with_label_values(&[pool, source]),
        }
    }

    /// Counts one lookup by what it came to.
    pub fn lookup(&self, event: &edge_balance::discovery::Event) {
        use edge_balance::discovery::{Event, LookupError};
        let error = match event {
            Event::Held { error, .. } | Event::Expired { error } | Event::Failed { error } => {
                Some(error)
            }
            _ => None,
        };
        match error {
            None => self.answered.inc(),
            Some(LookupError::NotFound(_)) => self.not_found.inc(),
            Some(_) => self.failed.inc(),
        }
        self.held
            .set(i64::from(matches!(event, Event::Held { .. })));
    }
}
