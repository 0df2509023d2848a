//! The response future: ends the in-flight count and reports the outcome.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use pin_project_lite::pin_project;

use crate::balancer::InFlight;
use crate::error::{Error, NoEndpoint};

pin_project! {
    /// The future of [`Balance`](super::Balance) and
    /// [`BalanceTo`](super::BalanceTo).
    ///
    /// While it is pending the picked endpoint counts the request as
    /// in-flight; when the inner future completes it records a success
    /// (and, under Peak-EWMA, the latency) or a failure. Dropping it early
    /// only ends the in-flight count.
    #[derive(Debug)]
    pub struct ResponseFuture<F> {
        #[pin]
        state: State<F>,
    }
}

pin_project! {
    #[project = StateProj]
    #[derive(Debug)]
    enum State<F> {
        NoEndpoint { error: NoEndpoint },
        Running { #[pin] fut: F, guard: Option<InFlight> },
    }
}

impl<F> ResponseFuture<F> {
    pub(crate) fn no_endpoint(error: NoEndpoint) -> Self {
        Self {
            state: State::NoEndpoint { error },
        }
    }

    pub(crate) fn running(fut: F, guard: InFlight) -> Self {
        Self {
            state: State::Running {
                fut,
                guard: Some(guard),
            },
        }
    }
}

impl<F, R, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<R, E>>,
{
    type Output = Result<R, Error<E>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::NoEndpoint { error } => Poll::Ready(Err(Error::NoEndpoint(error.clone()))),
            StateProj::Running { fut, guard } => {
                let out = ready!(fut.poll(cx));
                let guard = guard.take();
                Poll::Ready(match out {
                    Ok(rsp) => {
                        if let Some(g) = guard {
                            g.success();
                        }
                        Ok(rsp)
                    }
                    Err(e) => {
                        if let Some(g) = guard {
                            g.failure();
                        }
                        Err(Error::Endpoint(e))
                    }
                })
            }
        }
    }
}
