//! [`BalanceLayer`] and [`BalanceTo`]: pick a target per request and hand
//! it, with the request, to one inner service.

use std::fmt;
use std::hash::Hash;
use std::task::{Context, Poll};

use tower_layer::Layer;
use tower_service::Service;

use super::future::ResponseFuture;
use super::key::BalanceKey;
use crate::balancer::Balancer;
use crate::error::Error;

/// Wraps a service that takes `(target, request)` into one that picks the
/// target per request: e.g. endpoints are `SocketAddr`s and the inner
/// service connects to the address and relays the accepted connection.
pub struct BalanceLayer<K, T> {
    balancer: Balancer<K, T>,
}

impl<K, T> BalanceLayer<K, T> {
    /// A layer picking targets with `balancer`.
    pub fn new(balancer: Balancer<K, T>) -> Self {
        Self { balancer }
    }
}

impl<K, T> Clone for BalanceLayer<K, T> {
    fn clone(&self) -> Self {
        Self {
            balancer: self.balancer.clone(),
        }
    }
}

impl<K: fmt::Debug, T> fmt::Debug for BalanceLayer<K, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BalanceLayer")
            .field("balancer", &self.balancer)
            .finish()
    }
}

impl<K, T, S> Layer<S> for BalanceLayer<K, T> {
    type Service = BalanceTo<K, T, S>;

    fn layer(&self, inner: S) -> Self::Service {
        BalanceTo {
            balancer: self.balancer.clone(),
            inner,
        }
    }
}

/// The service made by [`BalanceLayer`]: calls `inner` with
/// `(picked target, request)`; the target counts the request as in-flight
/// until the inner future completes.
pub struct BalanceTo<K, T, S> {
    balancer: Balancer<K, T>,
    inner: S,
}

impl<K, T, S: Clone> Clone for BalanceTo<K, T, S> {
    fn clone(&self) -> Self {
        Self {
            balancer: self.balancer.clone(),
            inner: self.inner.clone(),
        }
    }
}

impl<K: fmt::Debug, T, S: fmt::Debug> fmt::Debug for BalanceTo<K, T, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BalanceTo")
            .field("balancer", &self.balancer)
            .field("inner", &self.inner)
            .finish()
    }
}

impl<K, T, S> BalanceTo<K, T, S> {
    /// The balancer.
    pub fn balancer(&self) -> &Balancer<K, T> {
        &self.balancer
    }
}

impl<K, T, S, Req> Service<Req> for BalanceTo<K, T, S>
where
    K: Clone + Eq + Hash,
    T: Clone,
    S: Service<(T, Req)>,
    Req: BalanceKey,
{
    type Response = S::Response;
    type Error = Error<S::Error>;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Error::Endpoint)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        match super::key::pick_for(&self.balancer, &req) {
            Err(e) => ResponseFuture::no_endpoint(e),
            Ok(picked) => {
                let (endpoint, guard) = picked.into_parts();
                let fut = self.inner.call((endpoint.value().clone(), req));
                ResponseFuture::running(fut, guard)
            }
        }
    }
}
