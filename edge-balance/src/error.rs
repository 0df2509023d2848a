//! Errors: no endpoint to pick, and the tower service's error.

/// Why no endpoint could be picked. edge-bin answers it with a 503.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NoEndpoint {
    /// The set has no endpoints at all.
    #[error("no endpoint: the endpoint set is empty")]
    Empty,
    /// Every endpoint is down, draining or at weight 0 (and fail-open is
    /// off, or found nothing either).
    #[error(
        "no endpoint available: {total} configured, {down} down, {draining} draining, {zero_weight} at weight 0"
    )]
    Unavailable {
        /// Endpoints in the set.
        total: usize,
        /// Endpoints marked down by health checks.
        down: usize,
        /// Endpoints draining.
        draining: usize,
        /// Endpoints at weight 0.
        zero_weight: usize,
    },
    /// Every available endpoint was excluded by the caller (retries).
    #[error("no endpoint left: all {excluded} available endpoints were already tried")]
    AllExcluded {
        /// Available endpoints that the caller excluded.
        excluded: usize,
    },
}

/// The error of the balancing tower services.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error<E> {
    /// No endpoint could be picked.
    #[error(transparent)]
    NoEndpoint(#[from] NoEndpoint),
    /// The picked endpoint failed.
    #[error("endpoint failed: {0}")]
    Endpoint(#[source] E),
}

impl<E> Error<E> {
    /// The endpoint's own error, if that is what happened.
    pub fn into_endpoint_error(self) -> Option<E> {
        match self {
            Self::Endpoint(e) => Some(e),
            Self::NoEndpoint(_) => None,
        }
    }
}
