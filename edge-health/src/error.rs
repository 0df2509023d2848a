//! The crate's error type.

use std::time::Duration;

/// A configuration value was refused. Every variant names the field and the
/// value that was wrong, so the message can be shown to the operator as is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A duration that must be positive was zero.
    #[error("{field} must be greater than zero (got {value:?})")]
    ZeroDuration {
        /// The field, e.g. `check.inter`.
        field: &'static str,
        /// The refused value.
        value: Duration,
    },
    /// A count that must be at least one was zero.
    #[error("{field} must be at least 1 (got 0)")]
    ZeroCount {
        /// The field, e.g. `check.rise`.
        field: &'static str,
    },
    /// A number was outside its allowed range.
    #[error("{field} must be between {min} and {max} (got {value})")]
    OutOfRange {
        /// The field.
        field: &'static str,
        /// The refused value.
        value: u64,
        /// Smallest allowed value.
        min: u64,
        /// Largest allowed value.
        max: u64,
    },
    /// A set or list that must not be empty was empty.
    #[error("{field} must not be empty")]
    Empty {
        /// The field, e.g. `http.expect_status`.
        field: &'static str,
    },
    /// A value could not be parsed or is not valid for its field.
    #[error("{field}: invalid value {value:?}: {reason}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// The refused value, as given.
        value: String,
        /// Why it was refused.
        reason: String,
    },
    /// Two pools have the same name.
    #[error("pool {0:?} is defined twice")]
    DuplicatePool(String),
    /// The same target appears twice in one pool.
    #[error("pool {pool:?}: target {target} is listed twice")]
    DuplicateTarget {
        /// The pool.
        pool: String,
        /// The repeated target.
        target: std::net::SocketAddr,
    },
}
