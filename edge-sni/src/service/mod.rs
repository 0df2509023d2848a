//! Tower services: read the ClientHello off a connection, then dispatch the
//! connection by SNI.
//!
//! ```text
//! S (accepted stream) ──ReadClientHello──▶ TlsConnection<S> ──RouteBySni──▶ route's service
//! ```
//!
//! [`ReadClientHelloLayer`] wraps any `Service<TlsConnection<S>>`;
//! [`RouteBySni`] is such a service, choosing one of several inner services
//! with an [`SniRouter`](crate::SniRouter).

mod read_hello;
mod route;

pub use read_hello::{ReadClientHello, ReadClientHelloError, ReadClientHelloLayer};
pub use route::{RouteBySni, RouteError};

use crate::io::{ClientHelloInfo, Replay};
use std::future::Future;
use std::pin::Pin;

/// A connection whose ClientHello has been read: the hello's summary and
/// the stream, which replays the hello to whoever reads it next.
#[derive(Debug)]
pub struct TlsConnection<S> {
    /// The ClientHello summary.
    pub info: ClientHelloInfo,
    /// The connection, replaying the bytes already read.
    pub stream: Replay<S>,
}

/// The boxed response future of this module's services.
pub type BoxFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send + 'static>>;
