//! Body wrappers that count bytes for the access log: [`Counted`] for
//! request bodies sent to a backend, [`Logged`] for responses, which writes
//! the record when the response body ends (or is dropped, when the client
//! goes away first).

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

use super::{AccessLog, AccessRecord};
use crate::http::body::{BoxError, EdgeBody};
use crate::metrics::RouteStats;

/// Counts the data bytes of a body into a shared tally.
#[derive(Debug)]
pub struct Counted {
    inner: EdgeBody,
    n: u64,
    tally: Arc<AtomicU64>,
}

impl Counted {
    /// Counts from zero (the tally is overwritten, so a retried request
    /// reports the bytes of its last attempt).
    pub fn new(inner: EdgeBody, tally: Arc<AtomicU64>) -> Self {
        tally.store(0, Ordering::Relaxed);
        Self { inner, n: 0, tally }
    }
}

fn data_len(r: &Poll<Option<Result<Frame<Bytes>, BoxError>>>) -> u64 {
    match r {
        Poll::Ready(Some(Ok(f))) => f.data_ref().map_or(0, |d| d.len() as u64),
        _ => 0,
    }
}

impl Body for Counted {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let r = Pin::new(&mut self.inner).poll_frame(cx);
        let n = data_len(&r);
        if n > 0 {
            self.n = self.n.saturating_add(n);
            self.tally.store(self.n, Ordering::Relaxed);
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

/// What is needed to finish a record.
#[derive(Debug)]
struct Finish {
    rec: AccessRecord,
    start: Instant,
    log: Arc<AccessLog>,
    stats: Arc<RouteStats>,
}

/// A response body that counts its bytes and writes the access record when
/// it ends, fails or is dropped.
#[derive(Debug)]
pub struct Logged {
    inner: EdgeBody,
    bytes: u64,
    finish: Option<Finish>,
}

impl Logged {
    /// Wraps `inner`; `rec` is written to `log` and counted in `stats` at the end.
    pub fn new(
        inner: EdgeBody,
        rec: AccessRecord,
        start: Instant,
        log: Arc<AccessLog>,
        stats: Arc<RouteStats>,
    ) -> Self {
        Self {
            inner,
            bytes: 0,
            finish: Some(Finish {
                rec,
                start,
                log,
                stats,
            }),
        }
    }

    fn done(&mut self) {
        if let Some(Finish {
            mut rec,
            start,
            log,
            stats,
        }) = self.finish.take()
        {
            rec.duration = start.elapsed();
            rec.bytes_out = self.bytes;
            if let Some(t) = &rec.request_body {
                rec.bytes_in = t.load(Ordering::Relaxed);
            }
            stats.observe(rec.status, rec.duration);
            match rec.tunnel.take() {
                // A `101`: the record waits for the tunnel to close.
                Some(t) => t.attach(rec, start, log),
                None => log.log(rec),
            }
        }
    }
}

impl Body for Logged {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let r = Pin::new(&mut self.inner).poll_frame(cx);
        self.bytes = self.bytes.saturating_add(data_len(&r));
        if matches!(r, Poll::Ready(None) | Poll::Ready(Some(Err(_)))) {
            self.done();
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

impl Drop for Logged {
    fn drop(&mut self) {
        self.done();
    }
}
