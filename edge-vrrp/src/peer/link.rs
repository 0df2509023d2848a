//! The tasks of the peer link: the listener that accepts the peer's
//! connection and reads its messages, and the dialer that connects to the
//! peer (reconnecting with backoff) and writes ours.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{SinkExt as _, StreamExt as _};
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ServerConfig};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_rustls::{TlsAcceptor, TlsConnector};
use tokio_util::codec::{FramedRead, FramedWrite, LengthDelimitedCodec};

use super::frame::{self, Frame};
use super::pinned::Pinned;
use super::{Outbox, PeerConfig, PeerError, PeerHandler};

/// Incoming connections open at once (handshaking or established).
const MAX_INCOMING: usize = 4;

/// The settings both tasks read.
#[derive(Debug, Clone, Copy)]
struct Settings {
    peer: SocketAddr,
    keepalive: Duration,
    timeout: Duration,
    connect_timeout: Duration,
    backoff: (Duration, Duration),
    max_frame: usize,
}

/// A running peer link; dropping it stops both tasks.
#[derive(Debug)]
pub struct PeerLink {
    local: SocketAddr,
    up: watch::Receiver<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for PeerLink {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl PeerLink {
    /// Binds `config.listen` and starts accepting the peer and dialing it:
    /// messages queued on the [`PeerSender`](super::PeerSender) of
    /// `outbox` go to the peer, the peer's go to `handler`.
    pub async fn start<M, H>(
        config: PeerConfig,
        outbox: Outbox<M>,
        handler: Arc<H>,
    ) -> Result<Self, PeerError>
    where
        M: Serialize + DeserializeOwned + Send + 'static,
        H: PeerHandler<M>,
    {
        let pinned = Arc::new(Pinned::new(config.pinned, config.provider.clone()));
        let server = ServerConfig::builder_with_provider(config.provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_client_cert_verifier(pinned.clone())
            .with_single_cert(config.cert_chain.clone(), config.key.clone_key())?;
        let client = ClientConfig::builder_with_provider(config.provider)
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .dangerous()
            .with_custom_certificate_verifier(pinned)
            .with_client_auth_cert(config.cert_chain, config.key)?;
        let listener = TcpListener::bind(config.listen).await?;
        let local = listener.local_addr()?;
        let s = Settings {
            peer: config.peer,
            keepalive: config.keepalive,
            timeout: config.timeout,
            connect_timeout: config.connect_timeout,
            backoff: config.backoff,
            max_frame: config.max_frame,
        };
        let (up_tx, up) = watch::channel(false);
        let acceptor = TlsAcceptor::from(Arc::new(server));
        let connector = TlsConnector::from(Arc::new(client));
        let tasks = vec![
            tokio::spawn(accept_loop(listener, acceptor, s, handler.clone())),
            tokio::spawn(dial_loop(connector, s, outbox, handler, up_tx)),
        ];
        tracing::info!(listen = %local, peer = %s.peer, "peer link listening");
        Ok(Self { local, up, tasks })
    }

    /// The address the listener is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Whether the connection to the peer is up.
    pub fn is_up(&self) -> bool {
        *self.up.borrow()
    }
}

async fn accept_loop<M, H>(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    s: Settings,
    handler: Arc<H>,
) where
    M: Serialize + DeserializeOwned + Send + 'static,
    H: PeerHandler<M>,
{
    // Connections end with this task (a dropped link closes them).
    let mut connections = tokio::task::JoinSet::new();
    loop {
        while connections.try_join_next().is_some() {}
        let (tcp, addr) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(error = %e, "peer link: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        if connections.len() >= MAX_INCOMING {
            // The peer needs one; more are someone else's (each is dropped
            // before its handshake costs anything).
            tracing::warn!(peer = %addr, "peer link: refused a connection ({MAX_INCOMING} already open)");
            continue;
        }
        let (acceptor, handler) = (acceptor.clone(), handler.clone());
        connections.spawn(async move {
            let tls = match tokio::time::timeout(s.connect_timeout, acceptor.accept(tcp)).await {
                Ok(Ok(t)) => t,
                Ok(Err(e)) => {
                    tracing::warn!(peer = %addr, error = %e, "peer link: refused a peer (TLS handshake failed: not the pinned certificate?)");
                    return;
                }
                Err(_) => {
                    tracing::warn!(peer = %addr, "peer link: refused a peer (no TLS handshake in time)");
                    return;
                }
            };
            tracing::info!(peer = %addr, "peer link: the peer connected");
            match incoming(tls, s, &*handler).await {
                Ok(()) => tracing::info!(peer = %addr, "peer link: the peer closed its connection"),
                Err(e) => tracing::warn!(peer = %addr, error = %e, "peer link: incoming connection closed"),
            }
        });
    }
}

fn framed<S: AsyncRead + AsyncWrite>(
    stream: S,
    max: usize,
) -> (
    FramedRead<tokio::io::ReadHalf<S>, LengthDelimitedCodec>,
    FramedWrite<tokio::io::WriteHalf<S>, LengthDelimitedCodec>,
) {
    let (r, w) = tokio::io::split(stream);
    (
        FramedRead::new(r, frame::codec(max)),
        FramedWrite::new(w, frame::codec(max)),
    )
}

/// Reads the peer's frames: answers pings, hands messages over.
async fn incoming<M, H, S>(stream: S, s: Settings, handler: &H) -> Result<(), PeerError>
where
    M: Serialize + DeserializeOwned,
    H: PeerHandler<M>,
    S: AsyncRead + AsyncWrite,
{
    let (mut rd, mut wr) = framed(stream, s.max_frame);
    loop {
        let bytes = match tokio::time::timeout(s.timeout, rd.next()).await {
            Err(_) => return Err(PeerError::Timeout(s.timeout)),
            Ok(None) => return Ok(()),
            Ok(Some(b)) => b?,
        };
        match frame::decode::<M>(&bytes)? {
            Frame::Ping => {
                let pong = frame::encode::<M>(&Frame::Pong, s.max_frame)?;
                write(&mut wr, pong, s.timeout).await?;
            }
            Frame::Pong => {}
            Frame::Msg(m) => handler.on_message(m),
        }
    }
}

async fn write<W: AsyncWrite + Unpin>(
    wr: &mut FramedWrite<W, LengthDelimitedCodec>,
    bytes: bytes::Bytes,
    limit: Duration,
) -> Result<(), PeerError> {
    match tokio::time::timeout(limit, wr.send(bytes)).await {
        Ok(r) => r.map_err(PeerError::from),
        Err(_) => Err(PeerError::Timeout(limit)),
    }
}

async fn dial_loop<M, H>(
    connector: TlsConnector,
    s: Settings,
    mut outbox: Outbox<M>,
    handler: Arc<H>,
    up: watch::Sender<bool>,
) where
    M: Serialize + DeserializeOwned + Send + 'static,
    H: PeerHandler<M>,
{
    let mut backoff = s.backoff.0;
    let mut quiet = false;
    loop {
        match tokio::time::timeout(s.connect_timeout, connect(&connector, s.peer)).await {
            Ok(Ok(tls)) => {
                tracing::info!(peer = %s.peer, "peer link up");
                up.send_replace(true);
                backoff = s.backoff.0;
                quiet = false;
                // What was queued while down is in the snapshot.
                while outbox.rx.try_recv().is_ok() {}
                let result = outgoing(tls, s, &mut outbox, &*handler).await;
                up.send_replace(false);
                match result {
                    Ok(()) => return,
                    Err(e) => tracing::warn!(peer = %s.peer, error = %e, "peer link down"),
                }
            }
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::InvalidData => {
                // A TLS failure: the peer is there but not the pinned one.
                tracing::warn!(peer = %s.peer, error = %e, "peer link: refused the peer (TLS handshake failed: not the pinned certificate?)");
            }
            Ok(Err(e)) if !quiet => {
                tracing::warn!(peer = %s.peer, error = %e, "peer link: cannot connect (retrying quietly)");
                quiet = true;
            }
            Ok(Err(e)) => tracing::debug!(peer = %s.peer, error = %e, "peer link: cannot connect"),
            Err(_) => tracing::debug!(peer = %s.peer, "peer link: connect timed out"),
        }
        while outbox.rx.try_recv().is_ok() {}
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(s.backoff.1);
    }
}

async fn connect(
    connector: &TlsConnector,
    peer: SocketAddr,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(peer).await?;
    let _ = tcp.set_nodelay(true);
    connector
        .connect(ServerName::IpAddress(peer.ip().into()), tcp)
        .await
}

/// Writes the snapshot, then queued messages and pings, until the link
/// fails; `Ok` when every sender is gone.
async fn outgoing<M, H, S>(
    stream: S,
    s: Settings,
    outbox: &mut Outbox<M>,
    handler: &H,
) -> Result<(), PeerError>
where
    M: Serialize + DeserializeOwned,
    H: PeerHandler<M>,
    S: AsyncRead + AsyncWrite,
{
    let (mut rd, mut wr) = framed(stream, s.max_frame);
    let send = |m: M| match frame::encode(&Frame::Msg(m), s.max_frame) {
        Ok(b) => Some(b),
        Err(e) => {
            // Our own message is too large: drop it, keep the link.
            tracing::error!(error = %e, "peer link: a message not sent");
            None
        }
    };
    for m in handler.on_connect() {
        if let Some(b) = send(m) {
            write(&mut wr, b, s.timeout).await?;
        }
    }
    let mut tick = tokio::time::interval(s.keepalive);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut heard = Instant::now();
    loop {
        tokio::select! {
            m = outbox.rx.recv() => match m {
                None => return Ok(()),
                Some(m) => if let Some(b) = send(m) {
                    write(&mut wr, b, s.timeout).await?;
                },
            },
            _ = tick.tick() => {
                if heard.elapsed() > s.timeout {
                    return Err(PeerError::Timeout(s.timeout));
                }
                write(&mut wr, frame::encode::<M>(&Frame::Ping, s.max_frame)?, s.timeout).await?;
            }
            f = rd.next() => match f {
                None => return Err(PeerError::Io(std::io::ErrorKind::UnexpectedEof.into())),
                Some(b) => {
                    b?;
                    heard = Instant::now();
                }
            },
        }
    }
}

#[cfg(test)]
mod tests;
