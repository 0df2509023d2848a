//! tower integration: [`Balance`] (endpoints are services) and
//! [`BalanceLayer`] / [`BalanceTo`] (endpoints are targets handed to one
//! inner service, e.g. addresses for a TCP relay).

mod future;
mod key;
mod layer;
#[allow(clippy::module_inception)]
mod service;

pub use future::ResponseFuture;
pub use key::{BalanceKey, ClientAddr, cookie_value};
pub use layer::{BalanceLayer, BalanceTo};
pub use service::Balance;
