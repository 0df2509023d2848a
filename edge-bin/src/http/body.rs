//! Response and request body types used across the HTTP path.

use bytes::Bytes;
use http_body::Body;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full};

/// Errors inside bodies.
pub use edge_balance::body::BoxError;
/// The one body type edge-bin composes (boxed only here, in the binary).
pub type EdgeBody = BoxBody<Bytes, BoxError>;

/// A body with all its bytes in memory.
pub fn full(b: impl Into<Bytes>) -> EdgeBody {
    Full::new(b.into()).map_err(|never| match never {}).boxed()
}

/// An empty body.
pub fn empty() -> EdgeBody {
    Empty::new().map_err(|never| match never {}).boxed()
}

/// Boxes any body whose error converts into [`BoxError`].
pub fn boxed<B>(b: B) -> EdgeBody
where
    B: Body<Data = Bytes> + Send + Sync + 'static,
    B::Error: Into<BoxError>,
{
    b.map_err(Into::into).boxed()
}
