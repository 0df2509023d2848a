//! Reading a ClientHello from an async stream, with a timeout.

use super::{ClientHelloInfo, Replay};
use crate::client_hello::parse_client_hello_with;
use crate::error::Error;
use crate::limits::Limits;
use std::fmt;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt};

/// How [`read_client_hello`] reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadOptions {
    /// How long the client has to send its whole ClientHello. Default
    /// 10 s (HAProxy's `timeout client` examples and nginx's
    /// `ssl_preread` both wait seconds, not minutes).
    pub timeout: Duration,
    /// Parser limits (default 16 KiB hello).
    pub limits: Limits,
}

impl ReadOptions {
    /// The default timeout: 10 seconds.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

    /// Sets [`ReadOptions::timeout`].
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sets [`ReadOptions::limits`].
    #[must_use]
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }
}

impl Default for ReadOptions {
    fn default() -> Self {
        Self {
            timeout: Self::DEFAULT_TIMEOUT,
            limits: Limits::default(),
        }
    }
}

/// Why [`read_client_hello`] returned no ClientHello.
///
/// [`ReadError::NotTls`] gives the stream back with the bytes read, so a
/// caller can serve plain traffic (an HTTP redirect to https, say).
#[derive(thiserror::Error)]
#[non_exhaustive]
pub enum ReadError<S> {
    /// The client did not send a complete ClientHello in time.
    #[error("timed out waiting for the ClientHello")]
    Timeout,
    /// The stream is not TLS. `prefix` holds what was read from `stream`.
    #[error("not TLS (first {} bytes read)", prefix.len())]
    NotTls {
        /// Bytes already read from `stream`.
        prefix: Vec<u8>,
        /// The stream, positioned after `prefix`.
        stream: S,
    },
    /// A malformed ClientHello.
    #[error("malformed ClientHello: {0}")]
    Malformed(#[source] Error),
    /// The ClientHello is longer than the configured limit.
    #[error("ClientHello exceeds the size limit")]
    TooLarge,
    /// Reading failed.
    #[error("reading the ClientHello: {0}")]
    Io(#[from] std::io::Error),
    /// The client closed the connection before a complete ClientHello.
    #[error("connection closed before a complete ClientHello")]
    Eof,
}

impl<S> ReadError<S> {
    /// The stream, when the error carries it ([`ReadError::NotTls`]).
    pub fn into_stream(self) -> Option<(Vec<u8>, S)> {
        match self {
            ReadError::NotTls { prefix, stream } => Some((prefix, stream)),
            _ => None,
        }
    }

    /// The same error with the stream dropped, e.g. to box it or log it.
    pub fn without_stream(self) -> ReadError<()> {
        match self {
            ReadError::Timeout => ReadError::Timeout,
            ReadError::NotTls { prefix, .. } => ReadError::NotTls { prefix, stream: () },
            ReadError::Malformed(e) => ReadError::Malformed(e),
            ReadError::TooLarge => ReadError::TooLarge,
            ReadError::Io(e) => ReadError::Io(e),
            ReadError::Eof => ReadError::Eof,
        }
    }
}

impl<S> fmt::Debug for ReadError<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadError::Timeout => f.write_str("Timeout"),
            ReadError::NotTls { prefix, .. } => f
                .debug_struct("NotTls")
                .field("prefix_len", &prefix.len())
                .finish_non_exhaustive(),
            ReadError::Malformed(e) => f.debug_tuple("Malformed").field(e).finish(),
            ReadError::TooLarge => f.write_str("TooLarge"),
            ReadError::Io(e) => f.debug_tuple("Io").field(e).finish(),
            ReadError::Eof => f.write_str("Eof"),
        }
    }
}

/// Bytes asked of the stream per read when the parser needs fewer: a
/// typical hello then arrives in one read.
const READ_CHUNK: usize = 4096;

/// Reads a ClientHello from `stream` within `opts.timeout`.
///
/// Returns the hello's summary and a [`Replay`] that yields every byte read
/// so far (the hello and anything after it) before reading `stream`.
/// Buffers at most [`Limits::max_buffered_len`] plus one read chunk.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use edge_sni::{ClientHelloBuilder, ReadOptions, read_client_hello};
/// use tokio::io::{AsyncReadExt, AsyncWriteExt};
/// let hello = ClientHelloBuilder::tls13().server_name("api.example.com").encode();
/// let (mut client, server) = tokio::io::duplex(4096);
/// client.write_all(&hello).await.unwrap();
/// let (info, mut stream) = read_client_hello(server, &ReadOptions::default()).await.unwrap();
/// assert_eq!(info.sni.as_deref(), Some("api.example.com"));
/// let mut replayed = vec![0; hello.len()];
/// stream.read_exact(&mut replayed).await.unwrap();
/// assert_eq!(replayed, hello);
/// # }
/// ```
pub async fn read_client_hello<S: AsyncRead + Unpin>(
    mut stream: S,
    opts: &ReadOptions,
) -> Result<(ClientHelloInfo, Replay<S>), ReadError<S>> {
    let mut buf = Vec::new();
    let filled =
        tokio::time::timeout(opts.timeout, fill(&mut stream, &mut buf, &opts.limits)).await;
    let Ok(filled) = filled else {
        return Err(ReadError::Timeout);
    };
    match filled {
        Ok(Ok(info)) => Ok((info, Replay::new(buf, stream))),
        Ok(Err(io)) => Err(ReadError::Io(io)),
        Err(Error::NotTls) => Err(ReadError::NotTls {
            prefix: buf,
            stream,
        }),
        Err(Error::TooLarge { .. }) => Err(ReadError::TooLarge),
        Err(Error::NeedMore { .. }) => Err(ReadError::Eof),
        Err(e) => Err(ReadError::Malformed(e)),
    }
}

/// Reads until the parser answers; `Ok(Err(_))` is an I/O error, and
/// `Err(NeedMore)` means end of stream.
async fn fill<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut Vec<u8>,
    limits: &Limits,
) -> Result<Result<ClientHelloInfo, std::io::Error>, Error> {
    loop {
        let needed = match parse_client_hello_with(buf, limits) {
            Ok(hello) => return Ok(Ok(ClientHelloInfo::from(&hello))),
            Err(Error::NeedMore { needed }) => needed.unwrap_or(1),
            Err(e) => return Err(e),
        };
        let cap = limits.max_buffered_len().saturating_add(READ_CHUNK);
        let start = buf.len();
        let want = needed.max(READ_CHUNK).min(cap.saturating_sub(start));
        if want == 0 {
            let max = limits.max_client_hello_len;
            return Err(Error::TooLarge { len: start, max });
        }
        buf.resize(start + want, 0);
        let read = stream.read(buf.get_mut(start..).unwrap_or_default()).await;
        let n = match read {
            Ok(n) => n,
            Err(e) => {
                buf.truncate(start);
                return Ok(Err(e));
            }
        };
        buf.truncate(start + n);
        if n == 0 {
            return Err(Error::NeedMore {
                needed: Some(needed),
            });
        }
    }
}
