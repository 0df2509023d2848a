//! [`Balance`]: a service over endpoints that are themselves services.

use std::fmt;
use std::hash::Hash;
use std::task::{Context, Poll};

use tower::ServiceExt;
use tower::util::Oneshot;
use tower_service::Service;

use super::future::ResponseFuture;
use super::key::BalanceKey;
use crate::balancer::Balancer;
use crate::error::Error;

/// Picks an endpoint per request and calls it.
///
/// The endpoints' values are services (`T: Service<Req> + Clone`): each
/// request is sent to a clone of the picked one, driven to readiness
/// inside the response future. `Balance` itself is always ready; when no
/// endpoint is available the future fails with [`Error::NoEndpoint`].
pub struct Balance<K, T> {
    balancer: Balancer<K, T>,
}

impl<K, T> Balance<K, T> {
    /// Balances requests with `balancer`.
    pub fn new(balancer: Balancer<K, T>) -> Self {
        Self { balancer }
    }

    /// The balancer (for its endpoint set and counters).
    pub fn balancer(&self) -> &Balancer<K, T> {
        &self.balancer
    }
}

impl<K, T> Clone for Balance<K, T> {
    fn clone(&self) -> Self {
        Self {
            balancer: self.balancer.clone(),
        }
    }
}

impl<K: fmt::Debug, T> fmt::Debug for Balance<K, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Balance")
            .field("balancer", &self.balancer)
            .finish()
    }
}

impl<K, T, Req> Service<Req> for Balance<K, T>
where
    K: Clone + Eq + Hash,
    T: Service<Req> + Clone,
    Req: BalanceKey,
{
    type Response = T::Response;
    type Error = Error<T::Error>;
    type Future = ResponseFuture<Oneshot<T, Req>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Req) -> Self::Future {
        match super::key::pick_for(&self.balancer, &req) {
            Err(e) => ResponseFuture::no_endpoint(e),
            Ok(picked) => {
                let (endpoint, guard) = picked.into_parts();
                ResponseFuture::running(endpoint.value().clone().oneshot(req), guard)
            }
        }
    }
}
