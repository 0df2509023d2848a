//! Requests that can be sent more than once: the [`Attempts`] a dispatch
//! draws from, and [`ReplayRequest`], an HTTP request whose small body is
//! buffered so a retry can send it again (as linkerd's replay body).

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::CONTENT_LENGTH;
use http::{HeaderValue, Method, Request};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt as _;
use pin_project_lite::pin_project;

use super::outcome::Outcome;
use crate::policy::HashSource;
use crate::service::BalanceKey;

/// What a dispatch sends: one request per attempt, for as long as it can
/// make them.
pub trait Attempts {
    /// The request one attempt sends to the inner service.
    type Attempt;

    /// The request for the next attempt; `None` when it cannot be sent
    /// again (a streamed body already went to a failed attempt).
    fn next_attempt(&mut self) -> Option<Self::Attempt>;

    /// Whether an attempt that ended with `outcome` may be retried on
    /// another endpoint. The default: only when it cannot have reached the
    /// endpoint ([`Outcome::ConnectFailure`]).
    fn may_retry(&self, outcome: Outcome) -> bool {
        outcome == Outcome::ConnectFailure
    }

    /// Whether, after an attempt that ended [`Outcome::Closed`], the
    /// request may go once more without counting as a retry (nginx resends
    /// a request that failed on a cached connection; Go's HTTP transport,
    /// one that failed on a reused one). The default: no.
    fn may_resend(&self) -> bool {
        false
    }

    /// The key a hashing policy picks by (see [`BalanceKey`]).
    fn hash_key(&self, _source: &HashSource) -> Option<u64> {
        None
    }

    /// The endpoint this request prefers (see [`Prefer`](crate::Prefer)).
    fn prefer(&self) -> Option<u64> {
        None
    }
}

/// A request that is `Clone` is sent as a copy per attempt, retried on
/// connect failures only (wrap it to say more).
#[derive(Debug, Clone, Copy, Default)]
pub struct Cloned<R>(pub R);

impl<R: Clone> Attempts for Cloned<R> {
    type Attempt = R;

    fn next_attempt(&mut self) -> Option<R> {
        Some(self.0.clone())
    }
}

/// A TCP connection to relay: the only thing an attempt does is connect,
/// so every failure may be retried on another endpoint. Each attempt's
/// request is `()`; the connection itself stays with the caller.
#[derive(Debug, Clone, Copy, Default)]
pub struct Connect;

impl Attempts for Connect {
    type Attempt = ();

    fn next_attempt(&mut self) -> Option<()> {
        Some(())
    }

    fn may_retry(&self, _outcome: Outcome) -> bool {
        true
    }
}

enum Held<B> {
    /// Empty or buffered: replayable.
    Buffered(Option<Bytes>),
    /// Streamed: sent once.
    Stream(Option<B>),
}

/// An HTTP request made replayable: its head, and its body buffered when it
/// is small (at most `limit` bytes by its size hint) or streamed once.
///
/// A retry goes to another endpoint after a connect failure whenever the
/// body is buffered, and after any other failure only for idempotent
/// methods (RFC 9110 §9.2.2). A timeout is not retried (the endpoint may
/// still be working on it).
pub struct ReplayRequest<B> {
    head: Request<()>,
    body: Held<B>,
}

impl<B> std::fmt::Debug for ReplayRequest<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplayRequest")
            .field("method", self.head.method())
            .field("uri", self.head.uri())
            .field("replayable", &self.is_replayable())
            .finish()
    }
}

impl<B> ReplayRequest<B>
where
    B: Body<Data = Bytes>,
{
    /// Buffers the body when the request has none or its size hint says at
    /// most `limit` bytes (then `Content-Length` is set to the bytes read);
    /// a larger or unsized body is streamed once. Fails when reading a
    /// body to buffer fails (the client's fault).
    pub async fn buffer(req: Request<B>, limit: u64) -> Result<Self, B::Error> {
        let (parts, body) = req.into_parts();
        let mut head = Request::from_parts(parts, ());
        let body = if body.is_end_stream() {
            Held::Buffered(None)
        } else if let Some(n) = body.size_hint().upper().filter(|&n| n <= limit) {
            Held::Buffered(Some(read_into_one(body, n).await?))
        } else {
            Held::Stream(Some(body))
        };
        if let Held::Buffered(b) = &body {
            let n = b.as_ref().map_or(0, Bytes::len);
            if n > 0 || head.headers().contains_key(CONTENT_LENGTH) {
                head.headers_mut()
                    .insert(CONTENT_LENGTH, HeaderValue::from(n));
            }
        }
        Ok(Self { head, body })
    }
}

/// Reads a body of at most `max` bytes (its size hint's upper bound) into
/// one buffer, copying each frame as it arrives, so a body sent in many tiny
/// frames holds one allocation, not every frame and the read buffer behind
/// it. The buffer is sized from the hint once; a body that sends more than
/// its hint said still loses nothing (the buffer grows).
async fn read_into_one<B>(body: B, max: u64) -> Result<Bytes, B::Error>
where
    B: Body<Data = Bytes>,
{
    use bytes::BufMut as _;
    let mut body = std::pin::pin!(body);
    let mut buf = bytes::BytesMut::with_capacity(usize::try_from(max).unwrap_or(0));
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data() {
            buf.put_slice(&data);
        }
    }
    Ok(buf.freeze())
}

impl<B> ReplayRequest<B> {
    /// A request whose body is streamed once (e.g. an Upgrade), unless it
    /// has none.
    pub fn streamed(req: Request<B>) -> Self
    where
        B: Body,
    {
        let (parts, body) = req.into_parts();
        let body = if body.is_end_stream() {
            Held::Buffered(None)
        } else {
            Held::Stream(Some(body))
        };
        Self {
            head: Request::from_parts(parts, ()),
            body,
        }
    }

    /// Whether every attempt can send the body.
    pub fn is_replayable(&self) -> bool {
        matches!(self.body, Held::Buffered(_))
    }

    /// The request head each attempt copies.
    pub fn head(&self) -> &Request<()> {
        &self.head
    }

    /// The request head, to rewrite before the first attempt.
    pub fn head_mut(&mut self) -> &mut Request<()> {
        &mut self.head
    }
}

fn idempotent(m: &Method) -> bool {
    matches!(
        *m,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}

impl<B> Attempts for ReplayRequest<B> {
    type Attempt = Request<ReplayBody<B>>;

    fn next_attempt(&mut self) -> Option<Self::Attempt> {
        let body = match &mut self.body {
            Held::Buffered(b) => ReplayBody::Full { data: b.clone() },
            Held::Stream(s) => ReplayBody::Stream { body: s.take()? },
        };
        let mut req = Request::new(body);
        *req.method_mut() = self.head.method().clone();
        *req.uri_mut() = self.head.uri().clone();
        *req.version_mut() = self.head.version();
        *req.headers_mut() = self.head.headers().clone();
        *req.extensions_mut() = self.head.extensions().clone();
        Some(req)
    }

    fn may_retry(&self, outcome: Outcome) -> bool {
        self.is_replayable()
            && match outcome {
                Outcome::ConnectFailure => true,
                Outcome::Failure | Outcome::Closed => idempotent(self.head.method()),
                _ => false,
            }
    }

    /// A replayable request with an idempotent method (RFC 9110 §9.2.2):
    /// sending it twice does no harm.
    fn may_resend(&self) -> bool {
        self.is_replayable() && idempotent(self.head.method())
    }

    fn hash_key(&self, source: &HashSource) -> Option<u64> {
        self.head.hash_key(source)
    }

    /// The [`Prefer`](crate::Prefer) request extension.
    fn prefer(&self) -> Option<u64> {
        self.head.extensions().get::<crate::Prefer>().map(|p| p.0)
    }
}

pin_project! {
    /// The body of one attempt of a [`ReplayRequest`]: the buffered bytes
    /// (shared, not copied) or the streamed body.
    #[project = ReplayBodyProj]
    #[derive(Debug)]
    pub enum ReplayBody<B> {
        /// Buffered (or empty).
        Full { data: Option<Bytes> },
        /// Streamed once.
        Stream { #[pin] body: B },
    }
}

impl<B> Body for ReplayBody<B>
where
    B: Body<Data = Bytes>,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        match self.project() {
            ReplayBodyProj::Full { data } => Poll::Ready(
                data.take()
                    .filter(|b| !b.is_empty())
                    .map(|b| Ok(Frame::data(b))),
            ),
            ReplayBodyProj::Stream { body } => body.poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Self::Full { data } => data.as_ref().is_none_or(Bytes::is_empty),
            Self::Stream { body } => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Self::Full { data } => {
                SizeHint::with_exact(data.as_ref().map_or(0, |b| b.len() as u64))
            }
            Self::Stream { body } => body.size_hint(),
        }
    }
}
