//! A service that dispatches a [`TlsConnection`] by its SNI.

use super::{BoxFuture, TlsConnection};
use crate::router::SniRouter;
use std::sync::Arc;
use std::task::{Context, Poll};
use tower_service::Service;

/// Sends each [`TlsConnection`] to the service its SNI routes to.
///
/// Each call clones the chosen service and awaits its readiness, like
/// `tower::ServiceExt::oneshot`, so routes are independent.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use edge_sni::{ClientHelloBuilder, ReadClientHelloLayer, ReadOptions, RouteBySni, SniRouter, TlsConnection};
/// use tower::{ServiceBuilder, ServiceExt, service_fn};
/// use tokio::io::AsyncWriteExt;
///
/// let backend = |name: &'static str| {
///     service_fn(move |_conn: TlsConnection<tokio::io::DuplexStream>| async move { Ok::<_, std::io::Error>(name) })
/// };
/// let router = SniRouter::new().exact("api.example.com", backend("api")).default_route(backend("web"));
/// let svc = ServiceBuilder::new()
///     .layer(ReadClientHelloLayer::new(ReadOptions::default()))
///     .service(RouteBySni::new(router));
///
/// let (mut client, server) = tokio::io::duplex(4096);
/// client.write_all(&ClientHelloBuilder::tls13().server_name("api.example.com").encode()).await.unwrap();
/// assert_eq!(svc.oneshot(server).await.unwrap(), "api");
/// # }
/// ```
#[derive(Debug)]
pub struct RouteBySni<Svc> {
    router: Arc<SniRouter<Svc>>,
}

impl<Svc> Clone for RouteBySni<Svc> {
    fn clone(&self) -> Self {
        Self {
            router: Arc::clone(&self.router),
        }
    }
}

impl<Svc> RouteBySni<Svc> {
    /// Routes with `router`.
    pub fn new(router: SniRouter<Svc>) -> Self {
        Self {
            router: Arc::new(router),
        }
    }

    /// The route table.
    pub fn router(&self) -> &SniRouter<Svc> {
        &self.router
    }
}

/// The error of [`RouteBySni`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RouteError<E> {
    /// No route matches and there is no default.
    #[error("no route for SNI {sni:?}")]
    NoRoute {
        /// The SNI that matched nothing.
        sni: Option<String>,
    },
    /// The chosen service failed.
    #[error("{0}")]
    Service(#[source] E),
}

impl<S, Svc> Service<TlsConnection<S>> for RouteBySni<Svc>
where
    S: Send + 'static,
    Svc: Service<TlsConnection<S>> + Clone + Send + Sync + 'static,
    Svc::Future: Send,
{
    type Response = Svc::Response;
    type Error = RouteError<Svc::Error>;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, conn: TlsConnection<S>) -> Self::Future {
        let chosen = self.router.route(conn.info.sni.as_deref()).cloned();
        Box::pin(async move {
            let Some(mut svc) = chosen else {
                tracing::debug!(sni = conn.info.sni.as_deref(), "no SNI route");
                return Err(RouteError::NoRoute { sni: conn.info.sni });
            };
            std::future::poll_fn(|cx| svc.poll_ready(cx))
                .await
                .map_err(RouteError::Service)?;
            svc.call(conn).await.map_err(RouteError::Service)
        })
    }
}
