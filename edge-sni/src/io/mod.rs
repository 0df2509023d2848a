//! The tokio adapter: read a ClientHello from a stream with a timeout, then
//! hand on a stream that replays the bytes already read.

mod info;
mod read;
mod relay;
mod replay;

pub use info::ClientHelloInfo;
pub use read::{ReadError, ReadOptions, read_client_hello};
pub use relay::{RelayEnd, RelayStats, relay, relay_io};
pub use replay::Replay;
