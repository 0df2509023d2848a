//! A link between the two nodes of a pair (feature `peer`): mutual TLS 1.3
//! with pinned certificates, carrying typed messages in size-capped frames.
//!
//! Each node listens, and dials the other: what a node sends goes over the
//! connection it dialed, what it receives comes in on the one it accepted,
//! so neither side has to decide who connects. Both ends of each
//! connection present a certificate and accept only the pinned ones
//! ([`PeerConfig::pinned`]); a peer presenting anything else fails the
//! handshake, is logged (`warn`, with its address) and nothing it sends is
//! read.
//!
//! - **Frames**: a 4-byte big-endian length, then JSON (serde) of at most
//!   [`PeerConfig::max_frame`] bytes (64 KiB by default); a longer frame
//!   closes the link.
//! - **Keepalive**: the dialing side pings every
//!   [`PeerConfig::keepalive`]; either side closes the connection when it
//!   has heard nothing for [`PeerConfig::timeout`].
//! - **Reconnect** with exponential backoff; on every new connection
//!   [`PeerHandler::on_connect`] gives the messages to send first (a full
//!   snapshot), so what was sent while the link was down is not needed:
//!   [`PeerSender::send`] drops messages while the link is down.
//!
//! ```no_run
//! # async fn f(config: edge_vrrp::peer::PeerConfig) -> Result<(), edge_vrrp::peer::PeerError> {
//! use std::sync::Arc;
//! use edge_vrrp::peer::{PeerHandler, PeerLink, channel};
//!
//! #[derive(Debug)]
//! struct Print;
//! impl PeerHandler<String> for Print {
//!     fn on_connect(&self) -> Vec<String> { vec!["hello".into()] }
//!     fn on_message(&self, msg: String) { println!("peer says {msg}") }
//! }
//! let (sender, outbox) = channel::<String>(64);
//! let link = PeerLink::start(config, outbox, Arc::new(Print)).await?;
//! sender.send("a change".into());
//! # drop(link); Ok(()) }
//! ```

mod frame;
mod link;
mod pinned;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::sync::mpsc;

pub use link::PeerLink;

/// What can go wrong on the peer link.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PeerError {
    /// The credentials (certificate and key) could not be read.
    #[error("peer credentials: {0}")]
    Credentials(String),
    /// The TLS settings were refused by rustls.
    #[error("peer TLS settings: {0}")]
    Tls(#[from] rustls::Error),
    /// Binding, connecting, reading or writing.
    #[error("peer link I/O: {0}")]
    Io(#[from] std::io::Error),
    /// A frame longer than the cap.
    #[error("a frame of {len} bytes, more than the {max} allowed")]
    FrameTooLong { len: usize, max: usize },
    /// A message could not be serialised.
    #[error("cannot encode a message: {0}")]
    Encode(String),
    /// A frame is not a message of the expected type.
    #[error("cannot decode a frame: {0}")]
    Decode(String),
    /// Nothing heard from the peer in time.
    #[error("nothing from the peer for {0:?}")]
    Timeout(Duration),
}

/// A node's certificate and private key, and the certificates it accepts.
#[derive(Debug)]
pub struct PeerConfig {
    /// Where this node accepts the peer's connection.
    pub listen: SocketAddr,
    /// Where the peer listens.
    pub peer: SocketAddr,
    /// This node's certificate chain (the first is the one pinned by the peer).
    pub cert_chain: Vec<CertificateDer<'static>>,
    /// Its private key.
    pub key: PrivateKeyDer<'static>,
    /// The certificates accepted from the peer (byte for byte).
    pub pinned: Vec<CertificateDer<'static>>,
    /// How often the dialing side pings (default 1 s).
    pub keepalive: Duration,
    /// Silence after which a connection is closed (default 5 s).
    pub timeout: Duration,
    /// Time for TCP connect plus TLS handshake (default 3 s).
    pub connect_timeout: Duration,
    /// First and longest wait between connection attempts (100 ms, 5 s).
    pub backoff: (Duration, Duration),
    /// The largest frame, either way (default 64 KiB).
    pub max_frame: usize,
    /// The rustls provider (default ring's).
    pub provider: Arc<CryptoProvider>,
}

/// The largest frame by default.
pub const DEFAULT_MAX_FRAME: usize = 64 * 1024;

impl PeerConfig {
    /// A config with the defaults above, presenting `cert_chain` and `key`
    /// and accepting only `pinned`.
    pub fn new(
        listen: SocketAddr,
        peer: SocketAddr,
        cert_chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
        pinned: Vec<CertificateDer<'static>>,
    ) -> Self {
        Self {
            listen,
            peer,
            cert_chain,
            key,
            pinned,
            keepalive: Duration::from_secs(1),
            timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(3),
            backoff: (Duration::from_millis(100), Duration::from_secs(5)),
            max_frame: DEFAULT_MAX_FRAME,
            provider: Arc::new(rustls::crypto::ring::default_provider()),
        }
    }
}

/// Certificates and the private key read from one PEM text (a credentials
/// file: `CERTIFICATE` blocks and one `PRIVATE KEY` block).
pub fn parse_credentials(
    pem: &[u8],
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), PeerError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| PeerError::Credentials(e.to_string()))?;
    if certs.is_empty() {
        return Err(PeerError::Credentials("no CERTIFICATE block".into()));
    }
    let key = PrivateKeyDer::from_pem_slice(pem)
        .map_err(|e| PeerError::Credentials(format!("no private key: {e}")))?;
    Ok((certs, key))
}

/// The application's side of the link.
pub trait PeerHandler<M>: Send + Sync + 'static {
    /// The messages sent first on each new connection to the peer.
    fn on_connect(&self) -> Vec<M>;
    /// A message from the (authenticated) peer.
    fn on_message(&self, msg: M);
}

/// Queues messages for the peer; cheap to clone.
#[derive(Debug)]
pub struct PeerSender<M> {
    tx: mpsc::Sender<M>,
}

impl<M> Clone for PeerSender<M> {
    fn clone(&self) -> Self {
        Self {
            tx: self.tx.clone(),
        }
    }
}

impl<M> PeerSender<M> {
    /// Queues `msg`; dropped when the queue is full or the link is down
    /// (the next connection starts with [`PeerHandler::on_connect`]).
    pub fn send(&self, msg: M) {
        if self.tx.try_send(msg).is_err() {
            tracing::debug!("peer link: queue full or closed, a message dropped");
        }
    }
}

/// The receiving end of a [`PeerSender`], given to [`PeerLink::start`].
#[derive(Debug)]
pub struct Outbox<M> {
    rx: mpsc::Receiver<M>,
}

/// A sender and its outbox holding up to `capacity` messages.
pub fn channel<M>(capacity: usize) -> (PeerSender<M>, Outbox<M>) {
    let (tx, rx) = mpsc::channel(capacity);
    (PeerSender { tx }, Outbox { rx })
}
