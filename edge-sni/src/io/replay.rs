//! A stream that first yields bytes already read from it.

use pin_project_lite::pin_project;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

pin_project! {
    /// Wraps a stream whose first bytes were already read: reads return
    /// those bytes first, then read the stream; writes go straight to it.
    ///
    /// Hand it to a rustls acceptor (`tokio_rustls::TlsAcceptor::accept`)
    /// to terminate TLS, or take it apart with [`Replay::into_parts`] to
    /// forward the prefix and splice the rest to a backend.
    #[derive(Debug)]
    pub struct Replay<S> {
        prefix: Vec<u8>,
        pos: usize,
        #[pin]
        inner: S,
    }
}

impl<S> Replay<S> {
    /// A stream that yields `prefix`, then reads `inner`.
    pub fn new(prefix: Vec<u8>, inner: S) -> Self {
        Self {
            prefix,
            pos: 0,
            inner,
        }
    }

    /// The prefix bytes not yet read.
    pub fn prefix(&self) -> &[u8] {
        self.prefix.get(self.pos..).unwrap_or_default()
    }

    /// The wrapped stream.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped stream, mutably. Reading from it directly skips the
    /// unread prefix.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The unread prefix and the stream, for splice-style relays that write
    /// the prefix to the backend and then copy the rest.
    pub fn into_parts(self) -> (Vec<u8>, S) {
        let mut prefix = self.prefix;
        prefix.drain(..self.pos.min(prefix.len()));
        (prefix, self.inner)
    }
}

impl<S: AsyncRead> AsyncRead for Replay<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.project();
        let rest = this.prefix.get(*this.pos..).unwrap_or_default();
        if rest.is_empty() {
            if !this.prefix.is_empty() {
                // Done replaying: release the buffer.
                *this.prefix = Vec::new();
                *this.pos = 0;
            }
            return this.inner.poll_read(cx, buf);
        }
        let n = rest.len().min(buf.remaining());
        buf.put_slice(rest.get(..n).unwrap_or_default());
        *this.pos += n;
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite> AsyncWrite for Replay<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.project().inner.poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.project().inner.poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn replays_then_reads_and_writes_through() {
        let (client, mut server) = tokio::io::duplex(64);
        let mut replay = Replay::new(b"hello ".to_vec(), client);
        server.write_all(b"world").await.unwrap();
        server.shutdown().await.unwrap();
        let mut small = [0u8; 4];
        replay.read_exact(&mut small).await.unwrap();
        assert_eq!(&small, b"hell");
        assert_eq!(replay.prefix(), b"o ");
        let mut rest = Vec::new();
        replay.read_to_end(&mut rest).await.unwrap();
        assert_eq!(rest, b"o world");
        replay.write_all(b"back").await.unwrap();
        let mut got = [0u8; 4];
        server.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"back");
    }

    #[tokio::test]
    async fn into_parts_returns_the_unread_prefix() {
        let (client, _server) = tokio::io::duplex(64);
        let mut replay = Replay::new(b"abcdef".to_vec(), client);
        let mut two = [0u8; 2];
        replay.read_exact(&mut two).await.unwrap();
        let (prefix, _stream) = replay.into_parts();
        assert_eq!(prefix, b"cdef");
    }
}
