//! A stream whose reads and writes are reported to a [`Meter`]: one
//! wrapper, one pass over the bytes, for whatever watches a connection (an
//! access log counting bytes, an idle timer, the HTTP/1 framing guard
//! [`crate::h1guard`]).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Watches the bytes through a stream (see [`Metered`]).
pub trait Meter {
    /// `data` (not empty) was read from the stream.
    fn on_read(&mut self, data: &[u8]);
    /// `n > 0` bytes were written to the stream.
    fn on_write(&mut self, n: usize);
}

/// Two meters on one stream (one wrapper, one pass over the bytes).
impl<A: Meter, B: Meter> Meter for (A, B) {
    fn on_read(&mut self, data: &[u8]) {
        self.0.on_read(data);
        self.1.on_read(data);
    }
    fn on_write(&mut self, n: usize) {
        self.0.on_write(n);
        self.1.on_write(n);
    }
}

/// A stream whose reads and writes are reported to a [`Meter`].
#[derive(Debug)]
pub struct Metered<S, M> {
    inner: S,
    meter: M,
}

impl<S, M> Metered<S, M> {
    /// `inner`, reported to `meter`.
    pub fn new(inner: S, meter: M) -> Self {
        Self { inner, meter }
    }
    /// The meter.
    pub fn meter(&self) -> &M {
        &self.meter
    }
}

impl<S: AsyncRead + Unpin, M: Meter + Unpin> AsyncRead for Metered<S, M> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let r = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Some(data) = buf.filled().get(before..)
            && !data.is_empty()
        {
            this.meter.on_read(data);
        }
        r
    }
}

impl<S, M: Meter> Metered<S, M> {
    fn wrote(&mut self, r: &Poll<io::Result<usize>>) {
        if let Poll::Ready(Ok(n)) = r
            && *n > 0
        {
            self.meter.on_write(*n);
        }
    }
}

impl<S: AsyncWrite + Unpin, M: Meter + Unpin> AsyncWrite for Metered<S, M> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_write(cx, data);
        this.wrote(&r);
        r
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.wrote(&r);
        r
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}
