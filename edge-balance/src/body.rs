//! Body wrappers a proxy puts around what it relays: [`Guarded`] holds an
//! endpoint's slot until the response body ends; [`ReadTimeout`] fails a
//! request body whose client stops sending (nginx's
//! `client_body_timeout`), so a stalled upload is the client's fault, not
//! the backend's.

use std::future::Future as _;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

/// Errors inside bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A body that keeps `guard` alive until the body is finished, fails or is
/// dropped: a response body holding the [`Lease`](crate::Lease) on its
/// endpoint's slot, so the slot is busy for the whole response.
#[derive(Debug)]
pub struct Guarded<B, G> {
    inner: B,
    guard: Option<G>,
}

impl<B, G> Guarded<B, G> {
    /// `inner`, holding `guard` until its end.
    pub fn new(inner: B, guard: G) -> Self {
        Self {
            inner,
            guard: Some(guard),
        }
    }
}

impl<B: Body + Unpin, G: Unpin> Body for Guarded<B, G> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        let r = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(None) | Poll::Ready(Some(Err(_))) = r {
            self.guard = None;
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A request body stalled: the client sent no byte of it for the
/// `[limits] body_read_timeout`.
#[derive(Debug, thiserror::Error)]
#[error("no request body byte for {0:?}")]
pub struct BodyTimeout(pub std::time::Duration);

/// A body that fails with [`BodyTimeout`] when no frame arrives for
/// `timeout` while it is being read (the clock runs only while the reader
/// waits, so a slow backend never makes the client's body time out).
#[derive(Debug)]
pub struct ReadTimeout<B> {
    inner: B,
    timeout: std::time::Duration,
    /// Made at the first wait and reset at the next ones (one allocation
    /// per body, not one per frame).
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
    /// Whether `sleep` runs for the current wait.
    armed: bool,
}

impl<B> ReadTimeout<B> {
    /// `inner`, failing after `timeout` of silence.
    pub fn new(inner: B, timeout: std::time::Duration) -> Self {
        Self {
            inner,
            timeout,
            sleep: None,
            armed: false,
        }
    }
}

impl<B> Body for ReadTimeout<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if let Poll::Ready(r) = Pin::new(&mut this.inner).poll_frame(cx) {
            this.armed = false;
            return Poll::Ready(r.map(|f| f.map_err(Into::into)));
        }
        let timeout = this.timeout;
        let sleep = this
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        if !this.armed {
            sleep.as_mut().reset(tokio::time::Instant::now() + timeout);
            this.armed = true;
        }
        match sleep.as_mut().poll(cx) {
            Poll::Ready(()) => {
                this.armed = false;
                Poll::Ready(Some(Err(Box::new(BodyTimeout(timeout)))))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Whether `e`, or an error it was caused by, is a [`BodyTimeout`].
pub fn is_body_timeout(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(e) = cur {
        if e.is::<BodyTimeout>() {
            return true;
        }
        cur = e.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use http_body_util::BodyExt as _;
    use tokio::sync::mpsc;

    use super::*;

    /// A body fed by the test, one frame per message.
    struct Fed(mpsc::Receiver<Bytes>);

    impl Body for Fed {
        type Data = Bytes;
        type Error = std::convert::Infallible;
        fn poll_frame(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            self.0.poll_recv(cx).map(|b| b.map(|b| Ok(Frame::data(b))))
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_timeout_counts_silence_between_frames() {
        let (tx, rx) = mpsc::channel(4);
        let mut body = ReadTimeout::new(Fed(rx), Duration::from_secs(1));
        // Frames every 0.6 s: never 1 s of silence.
        for _ in 0..5 {
            tokio::time::sleep(Duration::from_millis(600)).await;
            tx.send(Bytes::from_static(b"x")).await.unwrap();
            assert!(body.frame().await.unwrap().is_ok());
        }
        // Then silence: the body fails with BodyTimeout after 1 s.
        let started = tokio::time::Instant::now();
        let e = body.frame().await.unwrap().unwrap_err();
        assert!(is_body_timeout(&*e), "{e}");
        assert_eq!(started.elapsed(), Duration::from_secs(1));
        drop(tx);
    }
}
