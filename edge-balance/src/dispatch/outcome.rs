//! What one attempt came to, how a response or an error is classified, and
//! how a whole dispatch ends.

use std::fmt;
use std::time::Duration;

use crate::error::NoEndpoint;

/// How one attempt on an endpoint ended. Dispatch feeds it to the
/// endpoint's counters and to the [`on_outcome`](super::Dispatcher::on_outcome)
/// callback (e.g. edge-health's passive outlier detection).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Outcome {
    /// The endpoint answered.
    Success,
    /// The endpoint answered with a failure (an HTTP 5xx). The answer goes
    /// back to the caller; it is never retried.
    Status5xx,
    /// No connection could be made (refused, unreachable, connect timeout):
    /// the request never reached the endpoint, so it is safe to retry.
    ConnectFailure,
    /// The request may have reached the endpoint, and failed.
    Failure,
    /// The endpoint closed the connection before any byte of an answer (an
    /// end of stream or a reset): mostly a kept-alive connection that the
    /// endpoint closed as it was being reused. The request may have reached
    /// it. Dispatch sends a request that may be resent once more at no cost
    /// (see [`Attempts::may_resend`](super::Attempts::may_resend)); a
    /// second one counts as a [`Outcome::Failure`] would.
    Closed,
    /// No answer within [`DispatchConfig::attempt_timeout`](super::DispatchConfig::attempt_timeout).
    Timeout,
    /// The request itself failed, not the endpoint (e.g. the client's body
    /// could not be read: an aborted upload, a malformed chunk). Not
    /// counted against the endpoint and never retried.
    RequestFault,
}

impl Outcome {
    /// Whether the endpoint served the request well.
    pub fn is_success(self) -> bool {
        self == Self::Success
    }
}

/// Classifies what the inner service returned. The defaults: every
/// response is a [`Outcome::Success`], every error a [`Outcome::Failure`].
pub trait Classify<Rsp, E> {
    /// The outcome of a response: [`Outcome::Success`] or [`Outcome::Status5xx`].
    fn response(&self, _rsp: &Rsp) -> Outcome {
        Outcome::Success
    }

    /// The outcome of an error: [`Outcome::ConnectFailure`] when the
    /// request cannot have reached the endpoint, [`Outcome::RequestFault`]
    /// when the request's own side failed, else [`Outcome::Failure`].
    fn error(&self, _error: &E) -> Outcome {
        Outcome::Failure
    }
}

/// Classifies HTTP responses by status (5xx: [`Outcome::Status5xx`]) and
/// every error as [`Outcome::Failure`]. Wrap it (or write your own
/// [`Classify`]) to tell connect failures apart.
#[derive(Debug, Clone, Copy, Default)]
pub struct HttpStatus;

impl<B, E> Classify<http::Response<B>, E> for HttpStatus {
    fn response(&self, rsp: &http::Response<B>) -> Outcome {
        if rsp.status().is_server_error() {
            Outcome::Status5xx
        } else {
            Outcome::Success
        }
    }
}

/// Every response is a success, every error a failure (e.g. a TCP connect
/// service, whose only error is a failed connect: use [`ConnectOnly`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct AnySuccess;

impl<Rsp, E> Classify<Rsp, E> for AnySuccess {}

/// Every response is a success, every error a connect failure: for inner
/// services that only connect (a TCP relay's connect step).
#[derive(Debug, Clone, Copy, Default)]
pub struct ConnectOnly;

impl<Rsp, E> Classify<Rsp, E> for ConnectOnly {
    fn error(&self, _error: &E) -> Outcome {
        Outcome::ConnectFailure
    }
}

/// Why a dispatch failed: the last attempt's failure, or why no attempt
/// could be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DispatchError<E> {
    /// No endpoint could be picked (a 503).
    #[error(transparent)]
    NoEndpoint(#[from] NoEndpoint),
    /// The endpoint's queue was full (a 503).
    #[error("the endpoint's queue is full")]
    QueueFull,
    /// Waited this long for a slot on the endpoint (a 503).
    #[error("no slot on the endpoint within {0:?}")]
    QueueTimeout(Duration),
    /// No answer within this time (a 504).
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The endpoint failed (a 502).
    #[error("endpoint failed: {0}")]
    Endpoint(#[source] E),
}

impl<E> DispatchError<E> {
    /// Whether no endpoint had room or could be picked: nothing was sent
    /// (a 503), as opposed to a failure of an endpoint.
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            Self::NoEndpoint(_) | Self::QueueFull | Self::QueueTimeout(_)
        )
    }
}

/// The error of a dispatch: the [`DispatchError`] of the last attempt, the
/// endpoint it was on, and how many attempts were made.
pub struct Failed<K, E> {
    /// What went wrong last.
    pub error: DispatchError<E>,
    /// The endpoint of the last attempt, if one was picked.
    pub endpoint: Option<K>,
    /// Endpoints picked (first attempt and retries).
    pub attempts: u32,
    /// Time of the last attempt that was sent, to its failure.
    pub elapsed: Option<Duration>,
}

impl<K: fmt::Debug, E: fmt::Debug> fmt::Debug for Failed<K, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Failed")
            .field("error", &self.error)
            .field("endpoint", &self.endpoint)
            .field("attempts", &self.attempts)
            .field("elapsed", &self.elapsed)
            .finish()
    }
}

impl<K: fmt::Debug, E: fmt::Display> fmt::Display for Failed<K, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} after {} attempt(s)", self.error, self.attempts)?;
        if let Some(k) = &self.endpoint {
            write!(f, ", last on {k:?}")?;
        }
        Ok(())
    }
}

impl<K: fmt::Debug, E: std::error::Error + 'static> std::error::Error for Failed<K, E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}
