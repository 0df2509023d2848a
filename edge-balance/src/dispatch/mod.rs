//! Dispatch: the request loop of a proxy, as a library.
//!
//! A [`Dispatcher`] picks an endpoint by its [`Balancer`], waits for a slot
//! on it ([`Target`]: a concurrency limit with a bounded queue and a queue
//! timeout), sends the request's next attempt to an inner service with an
//! optional timeout, classifies what came back ([`Classify`] →
//! [`Outcome`]) into the endpoint's counters and an outcome callback, and
//! retries on an endpoint not yet tried while the request allows it
//! ([`Attempts::may_retry`]), attempts remain and the retry budget
//! ([`RetryBudget`], or any tower [`Budget`]) has one. An attempt that
//! ended [`Outcome::Closed`] (the connection closed before an answer) is
//! sent once more, outside that count, when [`Attempts::may_resend`].
//! [`Dispatch`] and
//! [`DispatchLayer`] are the same as a tower service.
//!
//! The success is a [`Served`]: the response and the [`Lease`] that holds
//! the endpoint's slot until the caller drops it (at the end of a response
//! body, or when a relayed connection closes).

mod admission;
mod budget;
mod outcome;
mod replay;
mod service;

use std::fmt;
use std::hash::Hash;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tower::ServiceExt;
use tower::retry::budget::Budget;
use tower_service::Service;

use crate::balancer::{Balancer, BalancerConfig, PickContext};
use crate::policy::Policy;
use crate::set::EndpointSet;

pub use admission::{Lease, Target};
pub use budget::RetryBudget;
pub use outcome::{AnySuccess, Classify, ConnectOnly, DispatchError, Failed, HttpStatus, Outcome};
pub use replay::{Attempts, Cloned, Connect, ReplayBody, ReplayRequest};
pub use service::{Dispatch, DispatchLayer};

/// Settings of a [`Dispatcher`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DispatchConfig {
    /// Attempts per request, the first included. Default: 3.
    pub max_attempts: u32,
    /// Leases an endpoint holds at once (0: no limit). Default: 0.
    pub max_per_endpoint: usize,
    /// Requests that may wait for a slot on one endpoint; one more finds
    /// the queue full and tries another endpoint. Default: 100.
    pub max_queue: usize,
    /// How long a request waits for a slot. Default: 5 s.
    pub queue_timeout: Duration,
    /// How long one attempt may take to answer (`None`: no limit).
    /// Default: none.
    pub attempt_timeout: Option<Duration>,
}

impl Default for DispatchConfig {
    fn default() -> Self {
        Self {
            max_attempts: 3,
            max_per_endpoint: 0,
            max_queue: 100,
            queue_timeout: Duration::from_secs(5),
            attempt_timeout: None,
        }
    }
}

impl DispatchConfig {
    /// Sets [`max_attempts`](Self::max_attempts) (at least 1).
    pub fn max_attempts(mut self, n: u32) -> Self {
        self.max_attempts = n.max(1);
        self
    }
    /// Sets [`max_per_endpoint`](Self::max_per_endpoint).
    pub fn max_per_endpoint(mut self, n: usize) -> Self {
        self.max_per_endpoint = n;
        self
    }
    /// Sets [`max_queue`](Self::max_queue).
    pub fn max_queue(mut self, n: usize) -> Self {
        self.max_queue = n;
        self
    }
    /// Sets [`queue_timeout`](Self::queue_timeout).
    pub fn queue_timeout(mut self, t: Duration) -> Self {
        self.queue_timeout = t;
        self
    }
    /// Sets [`attempt_timeout`](Self::attempt_timeout).
    pub fn attempt_timeout(mut self, t: Option<Duration>) -> Self {
        self.attempt_timeout = t;
        self
    }
}

type OutcomeFn<K> = Arc<dyn Fn(&K, Outcome) + Send + Sync>;

/// A balancer with admission, retries and outcome reporting. Cloning
/// shares it.
pub struct Dispatcher<K, T> {
    balancer: Balancer<K, Arc<Target<T>>>,
    config: Arc<DispatchConfig>,
    budget: Arc<dyn Budget + Send + Sync>,
    on_outcome: Option<OutcomeFn<K>>,
}

impl<K, T> Clone for Dispatcher<K, T> {
    fn clone(&self) -> Self {
        Self {
            balancer: self.balancer.clone(),
            config: Arc::clone(&self.config),
            budget: Arc::clone(&self.budget),
            on_outcome: self.on_outcome.clone(),
        }
    }
}

impl<K: fmt::Debug, T> fmt::Debug for Dispatcher<K, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dispatcher")
            .field("balancer", &self.balancer)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// A dispatched request: the response, and the lease on its endpoint.
#[derive(Debug)]
pub struct Served<K, T, R> {
    /// What the inner service returned.
    pub response: R,
    /// Holds the endpoint's slot; drop it when the work ends.
    pub lease: Lease<K, T>,
    /// Endpoints picked (first attempt and retries).
    pub attempts: u32,
    /// Time from sending the last attempt to its answer.
    pub elapsed: Duration,
    /// How the answer was classified.
    pub outcome: Outcome,
}

impl<K, T> Dispatcher<K, T>
where
    K: Clone + Eq + Hash,
{
    /// Dispatches over `set` with `policy`. The set's values are
    /// [`Target`]s: make them with [`target`](Self::target) so they carry
    /// this config's limit. The retry budget is [`RetryBudget::default`].
    pub fn new(
        set: EndpointSet<K, Arc<Target<T>>>,
        policy: Policy,
        balancer: BalancerConfig,
        config: DispatchConfig,
    ) -> Self {
        Self {
            balancer: Balancer::new(set, policy, balancer),
            config: Arc::new(config),
            budget: Arc::new(RetryBudget::default()),
            on_outcome: None,
        }
    }

    /// Replaces the retry budget.
    pub fn with_budget(mut self, budget: impl Budget + Send + Sync + 'static) -> Self {
        self.budget = Arc::new(budget);
        self
    }

    /// Calls `f` with the outcome of every attempt sent (not for requests
    /// that found no slot), e.g. to feed passive health checking.
    pub fn on_outcome(mut self, f: impl Fn(&K, Outcome) + Send + Sync + 'static) -> Self {
        self.on_outcome = Some(Arc::new(f));
        self
    }

    /// A set value for `value`, limited by this config's
    /// [`max_per_endpoint`](DispatchConfig::max_per_endpoint).
    pub fn target(&self, value: T) -> Arc<Target<T>> {
        Arc::new(Target::new(value, self.config.max_per_endpoint))
    }

    /// Adds (or replaces) an endpoint; `healthy: false` keeps it out of
    /// rotation until health checking says otherwise.
    pub fn insert(&self, key: K, value: T, weight: u32, healthy: bool) {
        let target = self.target(value);
        self.balancer
            .set()
            .insert_with_health(key, target, weight, healthy);
    }

    /// The balancer (its endpoint set: health, drain, weights, counters).
    pub fn balancer(&self) -> &Balancer<K, Arc<Target<T>>> {
        &self.balancer
    }

    /// The endpoint set.
    pub fn set(&self) -> &EndpointSet<K, Arc<Target<T>>> {
        self.balancer.set()
    }

    /// The settings.
    pub fn config(&self) -> &DispatchConfig {
        &self.config
    }

    fn report(&self, key: &K, outcome: Outcome) {
        if let Some(f) = &self.on_outcome {
            f(key, outcome);
        }
    }

    /// Runs one request to its end: pick, admit, send, classify, retry.
    /// `inner` is called with `(endpoint value, attempt)` once per attempt.
    pub async fn dispatch<S, R, C>(
        &self,
        inner: &S,
        mut req: R,
        classify: &C,
    ) -> Result<Served<K, T, S::Response>, Failed<K, S::Error>>
    where
        T: Clone,
        R: Attempts,
        S: Service<(T, R::Attempt)> + Clone,
        C: Classify<S::Response, S::Error>,
    {
        self.budget.deposit();
        let cfg = &*self.config;
        let hash_key = self
            .balancer
            .policy()
            .hash_source()
            .and_then(|s| req.hash_key(s));
        let prefer = req.prefer();
        let mut exclude: Vec<K> = Vec::new();
        let mut attempts = 0u32;
        let mut last: Option<(K, DispatchError<S::Error>, Option<Duration>)> = None;
        // One attempt that ended `Closed` is sent again outside the retry
        // count and the budget (`resent`); `free` marks that attempt.
        let mut resent = false;
        let mut free = false;
        while attempts < cfg.max_attempts.max(1) + u32::from(resent) {
            if attempts > 0 && !std::mem::take(&mut free) && !self.budget.withdraw() {
                tracing::debug!(pool = %self.balancer.config().name, "retry budget spent");
                break;
            }
            let ctx = PickContext::new()
                .hash_key(hash_key)
                .prefer(prefer)
                .exclude(&exclude);
            let picked = match self.balancer.pick(&ctx) {
                Ok(p) => p,
                Err(e) => {
                    if last.is_none() {
                        return Err(Failed {
                            error: DispatchError::NoEndpoint(e),
                            endpoint: None,
                            attempts,
                            elapsed: None,
                        });
                    }
                    break;
                }
            };
            attempts += 1;
            let (endpoint, in_flight) = picked.into_parts();
            let key = endpoint.key().clone();
            let target = Arc::clone(endpoint.value());
            drop(endpoint);
            let lease = match target
                .admit(key.clone(), cfg.max_queue, cfg.queue_timeout)
                .await
            {
                Ok(l) => l,
                Err(e) => {
                    exclude.push(key.clone());
                    last = Some((key, e, None));
                    continue;
                }
            };
            let Some(attempt) = req.next_attempt() else {
                break;
            };
            let started = Instant::now();
            let call = inner.clone().oneshot((lease.value().clone(), attempt));
            let result = match cfg.attempt_timeout {
                None => Some(call.await),
                Some(t) => tokio::time::timeout(t, call).await.ok(),
            };
            let elapsed = started.elapsed();
            let (outcome, error) = match result {
                Some(Ok(response)) => {
                    let outcome = classify.response(&response);
                    if outcome.is_success() {
                        in_flight.success_after(elapsed);
                    } else {
                        in_flight.failure();
                    }
                    self.report(&key, outcome);
                    return Ok(Served {
                        response,
                        lease,
                        attempts,
                        elapsed,
                        outcome,
                    });
                }
                Some(Err(e)) => (classify.error(&e), DispatchError::Endpoint(e)),
                None => (
                    Outcome::Timeout,
                    DispatchError::Timeout(cfg.attempt_timeout.unwrap_or_default()),
                ),
            };
            if outcome == Outcome::Closed && !resent && req.may_resend() {
                // Most likely a kept-alive connection the endpoint closed as
                // it was reused: nobody's fault yet. The in-flight count
                // ends, nothing is reported, the endpoint stays eligible.
                tracing::debug!(pool = %self.balancer.config().name, "connection closed before an answer; sending again");
                drop(in_flight);
                drop(lease);
                (resent, free) = (true, true);
                last = Some((key, error, Some(elapsed)));
                continue;
            }
            if outcome == Outcome::RequestFault {
                // Not the endpoint's doing: only the in-flight count ends.
                drop(in_flight);
            } else {
                in_flight.failure();
            }
            self.report(&key, outcome);
            drop(lease);
            exclude.push(key.clone());
            last = Some((key, error, Some(elapsed)));
            if outcome == Outcome::RequestFault || !req.may_retry(outcome) {
                break;
            }
        }
        let (endpoint, error, elapsed) = match last {
            Some((k, e, t)) => (Some(k), e, t),
            None => (
                None,
                DispatchError::NoEndpoint(crate::NoEndpoint::Empty),
                None,
            ),
        };
        Err(Failed {
            error,
            endpoint,
            attempts,
            elapsed,
        })
    }
}
