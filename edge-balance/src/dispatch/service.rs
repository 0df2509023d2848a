//! [`Dispatch`] and [`DispatchLayer`]: a [`Dispatcher`] as a tower service
//! around an inner service that takes `(endpoint value, attempt)`.

use std::fmt;
use std::future::Future;
use std::hash::Hash;
use std::pin::Pin;
use std::task::{Context, Poll};

use tower_layer::Layer;
use tower_service::Service;

use super::outcome::Failed;
use super::replay::Attempts;
use super::{Classify, Dispatcher, Served};

/// Wraps an inner service of `(endpoint value, attempt)` into a
/// [`Dispatch`] of whole requests.
pub struct DispatchLayer<K, T, C> {
    dispatcher: Dispatcher<K, T>,
    classify: C,
}

impl<K, T, C> DispatchLayer<K, T, C> {
    /// Dispatches with `dispatcher`, classifying with `classify`.
    pub fn new(dispatcher: Dispatcher<K, T>, classify: C) -> Self {
        Self {
            dispatcher,
            classify,
        }
    }
}

impl<K, T, C: Clone> Clone for DispatchLayer<K, T, C> {
    fn clone(&self) -> Self {
        Self {
            dispatcher: self.dispatcher.clone(),
            classify: self.classify.clone(),
        }
    }
}

impl<K: fmt::Debug, T, C: fmt::Debug> fmt::Debug for DispatchLayer<K, T, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DispatchLayer")
            .field("dispatcher", &self.dispatcher)
            .field("classify", &self.classify)
            .finish()
    }
}

impl<K, T, C: Clone, S> Layer<S> for DispatchLayer<K, T, C> {
    type Service = Dispatch<K, T, S, C>;

    fn layer(&self, inner: S) -> Self::Service {
        Dispatch {
            dispatcher: self.dispatcher.clone(),
            inner,
            classify: self.classify.clone(),
        }
    }
}

/// A tower service that runs each request through
/// [`Dispatcher::dispatch`]. Always ready; the inner service is driven to
/// readiness per attempt.
pub struct Dispatch<K, T, S, C> {
    dispatcher: Dispatcher<K, T>,
    inner: S,
    classify: C,
}

impl<K, T, S, C> Dispatch<K, T, S, C> {
    /// Dispatches with `dispatcher` to `inner`, classifying with `classify`.
    pub fn new(dispatcher: Dispatcher<K, T>, inner: S, classify: C) -> Self {
        Self {
            dispatcher,
            inner,
            classify,
        }
    }

    /// The dispatcher.
    pub fn dispatcher(&self) -> &Dispatcher<K, T> {
        &self.dispatcher
    }
}

impl<K, T, S: Clone, C: Clone> Clone for Dispatch<K, T, S, C> {
    fn clone(&self) -> Self {
        Self {
            dispatcher: self.dispatcher.clone(),
            inner: self.inner.clone(),
            classify: self.classify.clone(),
        }
    }
}

impl<K: fmt::Debug, T, S: fmt::Debug, C: fmt::Debug> fmt::Debug for Dispatch<K, T, S, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dispatch")
            .field("dispatcher", &self.dispatcher)
            .field("inner", &self.inner)
            .field("classify", &self.classify)
            .finish()
    }
}

type BoxFuture<O> = Pin<Box<dyn Future<Output = O> + Send>>;

impl<K, T, S, C, R> Service<R> for Dispatch<K, T, S, C>
where
    K: Clone + Eq + Hash + Send + Sync + 'static,
    T: Clone + Send + Sync + 'static,
    R: Attempts + Send + 'static,
    R::Attempt: Send,
    S: Service<(T, R::Attempt)> + Clone + Send + Sync + 'static,
    S::Response: Send,
    S::Error: Send,
    S::Future: Send,
    C: Classify<S::Response, S::Error> + Clone + Send + Sync + 'static,
{
    type Response = Served<K, T, S::Response>;
    type Error = Failed<K, S::Error>;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: R) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            this.dispatcher
                .dispatch(&this.inner, req, &this.classify)
                .await
        })
    }
}
