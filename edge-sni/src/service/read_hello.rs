//! A service that reads the ClientHello, then calls its inner service.

use super::{BoxFuture, TlsConnection};
use crate::io::{ReadError, ReadOptions, read_client_hello};
use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::AsyncRead;
use tower_layer::Layer;
use tower_service::Service;

/// Reads the ClientHello from each connection (`S`) within the configured
/// timeout and calls the inner service with a [`TlsConnection`].
///
/// Always ready: the inner service's readiness is awaited only once a
/// hello has arrived, so slow clients do not hold inner capacity.
#[derive(Debug, Clone)]
pub struct ReadClientHello<Svc> {
    inner: Svc,
    opts: Arc<ReadOptions>,
}

impl<Svc> ReadClientHello<Svc> {
    /// Wraps `inner`.
    pub fn new(inner: Svc, opts: ReadOptions) -> Self {
        Self {
            inner,
            opts: Arc::new(opts),
        }
    }

    /// The wrapped service.
    pub fn get_ref(&self) -> &Svc {
        &self.inner
    }
}

/// The [`Layer`] of [`ReadClientHello`].
#[derive(Debug, Clone, Default)]
pub struct ReadClientHelloLayer {
    opts: Arc<ReadOptions>,
}

impl ReadClientHelloLayer {
    /// A layer reading with `opts`.
    pub fn new(opts: ReadOptions) -> Self {
        Self {
            opts: Arc::new(opts),
        }
    }
}

impl<Svc> Layer<Svc> for ReadClientHelloLayer {
    type Service = ReadClientHello<Svc>;
    fn layer(&self, inner: Svc) -> Self::Service {
        ReadClientHello {
            inner,
            opts: Arc::clone(&self.opts),
        }
    }
}

/// The error of [`ReadClientHello`].
#[derive(thiserror::Error)]
#[non_exhaustive]
pub enum ReadClientHelloError<S, E> {
    /// No usable ClientHello; [`ReadError::NotTls`] returns the stream.
    #[error(transparent)]
    Read(ReadError<S>),
    /// The inner service failed.
    #[error("{0}")]
    Service(#[source] E),
}

impl<S, E: fmt::Debug> fmt::Debug for ReadClientHelloError<S, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Read(e) => f.debug_tuple("Read").field(e).finish(),
            Self::Service(e) => f.debug_tuple("Service").field(e).finish(),
        }
    }
}

impl<S, Svc> Service<S> for ReadClientHello<Svc>
where
    S: AsyncRead + Unpin + Send + 'static,
    Svc: Service<TlsConnection<S>> + Clone + Send + 'static,
    Svc::Future: Send,
{
    type Response = Svc::Response;
    type Error = ReadClientHelloError<S, Svc::Error>;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, stream: S) -> Self::Future {
        let mut inner = self.inner.clone();
        let opts = Arc::clone(&self.opts);
        Box::pin(async move {
            let (info, stream) = match read_client_hello(stream, &opts).await {
                Ok(read) => read,
                Err(e) => {
                    tracing::debug!(error = %e, "no ClientHello");
                    return Err(ReadClientHelloError::Read(e));
                }
            };
            tracing::debug!(sni = info.sni.as_deref(), ja4 = %info.ja4, "ClientHello");
            std::future::poll_fn(|cx| inner.poll_ready(cx))
                .await
                .map_err(ReadClientHelloError::Service)?;
            inner
                .call(TlsConnection { info, stream })
                .await
                .map_err(ReadClientHelloError::Service)
        })
    }
}
