//! Records for requests that never reached the HTTP service: hyper refused
//! the request head (HTTP/1 `400`, `414`, `431`), the head did not arrive
//! in time (`408`, HAProxy's and nginx's status for it), the client closed
//! or reset the connection in the middle of a head (`400`, as nginx logs
//! it), or an HTTP/2 connection ended on a protocol error (`400`).
//!
//! [`ConnLog`] rides along with one terminated connection: its I/O wrapper
//! ([`ConnLog::io`]) counts the bytes each way and where the current
//! request began, its [`ConnLog::track`] marks requests handed to the
//! service, and [`ConnLog::connection_error`] turns the error that ended
//! `serve_connection` into one [`AccessRecord`] (or none). Nothing is
//! written for a connection that sent no byte of a request: a client that
//! connects and closes, or an idle keep-alive connection that times out
//! (HAProxy's `option dontlognull`).
//!
//! ```
//! use edge_bin::accesslog::conn::{Failure, classify};
//! // What hyper says when the request head outgrew `max_header_bytes`:
//! assert_eq!(classify(false, true, false, false, "message head is too large"),
//!            Some(Failure { status: 431, error: "header too large" }));
//! // An idle keep-alive connection that timed out is not a failure to log
//! // by itself; whether bytes of a request arrived decides (see ConnLog).
//! assert_eq!(classify(false, false, true, false, "").map(|f| f.status), Some(408));
//! ```

use std::error::Error as StdError;
use std::future::Future;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use super::{AccessLog, AccessRecord};
use crate::http::ConnInfo;
use crate::metrics::RouteStats;
use crate::telemetry::StateTelemetry;
use edge_sni::meter::{Meter, Metered};

/// What the access log says about a request that never reached the service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Failure {
    /// The status sent (400, 414, 431), or HAProxy's for it when nothing
    /// was sent (408 for a timeout, 400 for a cut-off head or HTTP/2 error).
    pub status: u16,
    /// The record's `error` field.
    pub error: &'static str,
}

/// Classifies the error that ended an HTTP/1 connection, from hyper's
/// predicates and message (`too_large`: `is_parse_too_large`). `None`: an
/// error that is not about a request head (the request, if any, has its
/// own record).
pub fn classify(
    parse: bool,
    too_large: bool,
    timeout: bool,
    incomplete: bool,
    message: &str,
) -> Option<Failure> {
    let (status, error) = if too_large {
        if message.contains("URI") {
            (414, "URI too long")
        } else {
            (431, "header too large")
        }
    } else if parse {
        // hyper cannot tell a bad byte in the request line from one in a
        // header ("invalid HTTP header parsed" for both).
        let error = match message {
            m if m.contains("HTTP2 preface") => "HTTP/2 preface on an HTTP/1 connection",
            m if m.contains("method") => "invalid method",
            m if m.contains("URI") => "invalid URI",
            m if m.contains("version") => "invalid HTTP version",
            m if m.contains("content-length") || m.contains("transfer-encoding") => {
                "invalid header"
            }
            _ => "malformed request",
        };
        (400, error)
    } else if timeout {
        (408, "header read timeout")
    } else if incomplete {
        (400, "client closed mid-request")
    } else {
        return None;
    };
    Some(Failure { status, error })
}

/// Where the connection is, as seen from its bytes and the service.
#[derive(Debug)]
struct Tally {
    /// Bytes read from / written to the client since the connection began.
    read: AtomicU64,
    written: AtomicU64,
    /// `read` and `written` when the current request began (its first
    /// byte arrived after the previous response was returned).
    mark_read: AtomicU64,
    mark_written: AtomicU64,
    /// The current request was handed to the service.
    dispatched: AtomicBool,
    /// The service returned the current request's response: the next
    /// byte read begins the next request.
    responded: AtomicBool,
    /// When the current request's first byte arrived (since `opened`, ns).
    began: AtomicU64,
    opened: Instant,
}

/// Per terminated connection: counts bytes and requests, and writes a
/// record when the connection ends on an error about a request head.
/// Cheap to clone (one `Arc`).
#[derive(Debug, Clone)]
pub struct ConnLog(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    tally: Tally,
    h2: bool,
    log: Arc<AccessLog>,
    stats: Arc<RouteStats>,
}

/// The [`Meter`] of a [`ConnLog`].
#[derive(Debug, Clone)]
pub struct ConnMeter(ConnLog);

impl Meter for ConnMeter {
    fn on_read(&mut self, data: &[u8]) {
        let n = data.len();
        let t = &self.0.0.tally;
        // One writer (the connection's task): load + store, no RMW.
        let read = t.read.load(Ordering::Relaxed);
        if t.responded.load(Ordering::Relaxed) {
            t.responded.store(false, Ordering::Relaxed);
            t.dispatched.store(false, Ordering::Relaxed);
            t.mark_read.store(read, Ordering::Relaxed);
            t.mark_written
                .store(t.written.load(Ordering::Relaxed), Ordering::Relaxed);
            let ns = u64::try_from(t.opened.elapsed().as_nanos()).unwrap_or(u64::MAX);
            t.began.store(ns, Ordering::Relaxed);
        }
        t.read
            .store(read.saturating_add(n as u64), Ordering::Relaxed);
    }
    fn on_write(&mut self, n: usize) {
        let t = &self.0.0.tally;
        let w = t.written.load(Ordering::Relaxed);
        t.written
            .store(w.saturating_add(n as u64), Ordering::Relaxed);
    }
}

impl ConnLog {
    /// For one connection accepted with `obs`'s config (`h2`: HTTP/2).
    pub fn new(obs: &StateTelemetry, h2: bool) -> Self {
        Self::with(obs.access.clone(), obs.route(None).clone(), h2)
    }

    /// Writes to `log` and counts in `stats`.
    pub fn with(log: Arc<AccessLog>, stats: Arc<RouteStats>, h2: bool) -> Self {
        Self(Arc::new(Inner {
            tally: Tally {
                read: AtomicU64::new(0),
                written: AtomicU64::new(0),
                mark_read: AtomicU64::new(0),
                mark_written: AtomicU64::new(0),
                dispatched: AtomicBool::new(false),
                // So that the first byte read begins the first request.
                responded: AtomicBool::new(true),
                began: AtomicU64::new(0),
                opened: Instant::now(),
            },
            h2,
            log,
            stats,
        }))
    }

    /// Wraps the client stream (plaintext side) so its bytes are counted.
    pub fn io<S>(&self, inner: S) -> Metered<S, ConnMeter> {
        Metered::new(inner, self.meter())
    }

    /// This connection's byte counter, to combine with another [`Meter`].
    pub fn meter(&self) -> ConnMeter {
        ConnMeter(self.clone())
    }

    /// Wraps the service's future for one request: marks the request as
    /// handed over, and its response as returned when the future ends.
    pub fn track<F: Future>(&self, fut: F) -> impl Future<Output = F::Output> + use<F> {
        let this = self.clone();
        this.0.tally.dispatched.store(true, Ordering::Relaxed);
        async move {
            let out = fut.await;
            this.0.tally.responded.store(true, Ordering::Relaxed);
            out
        }
    }

    /// The record for `err`, which ended `serve_connection`, if it is about
    /// a request the service never saw. Also counted in the metrics as a
    /// request without a route.
    pub fn record(
        &self,
        err: &(dyn StdError + Send + Sync + 'static),
        conn: &ConnInfo,
    ) -> Option<AccessRecord> {
        let t = &self.0.tally;
        let (read, written) = (
            t.read.load(Ordering::Relaxed),
            t.written.load(Ordering::Relaxed),
        );
        let (failure, bytes_in, bytes_out, error) = if self.0.h2 {
            // Only protocol errors: I/O errors are the client going away,
            // and its streams have their own records.
            let h2 = err
                .source()
                .filter(|s| s.downcast_ref::<io::Error>().is_none())?;
            let f = Failure {
                status: 400,
                error: "HTTP/2 protocol error",
            };
            (f, read, written, Some(format!("{}: {h2}", f.error)))
        } else {
            let h = err.downcast_ref::<hyper::Error>()?;
            let pending = read.saturating_sub(t.mark_read.load(Ordering::Relaxed));
            let f = classify(
                h.is_parse(),
                h.is_parse_too_large(),
                h.is_timeout(),
                h.is_incomplete_message() || err.source().is_some_and(|s| s.is::<io::Error>()),
                &h.to_string(),
            )?;
            // A parse error is always about a head the service never saw;
            // for the others, bytes of a new request must have arrived.
            if !h.is_parse() && (pending == 0 || t.dispatched.load(Ordering::Relaxed)) {
                return None;
            }
            let out = written.saturating_sub(t.mark_written.load(Ordering::Relaxed));
            (f, pending, out, None)
        };
        let began = t.opened + std::time::Duration::from_nanos(t.began.load(Ordering::Relaxed));
        Some(AccessRecord {
            kind: "http",
            client: Some(conn.client),
            sni: conn.sni.clone(),
            ja4: conn.ja4.clone(),
            status: failure.status,
            bytes_in,
            bytes_out,
            duration: began.elapsed(),
            tls_version: conn.tls_version,
            tls_cipher: conn.tls_cipher,
            error: Some(error.map_or(std::borrow::Cow::Borrowed(failure.error), Into::into)),
            ..Default::default()
        })
    }

    /// Writes the record for `err` (see [`ConnLog::record`]), if any.
    pub fn connection_error(&self, err: &(dyn StdError + Send + Sync + 'static), conn: &ConnInfo) {
        if let Some(rec) = self.record(err, conn) {
            self.0.stats.observe(rec.status, rec.duration);
            self.0.log.log(rec);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Serves one HTTP/1 connection with hyper as edge does (200 to every
    /// request) while `client` talks to it; the record for how it ended.
    async fn serve<F, Fut>(client: F) -> (Option<AccessRecord>, Vec<u8>)
    where
        F: FnOnce(tokio::io::DuplexStream) -> Fut,
        Fut: Future<Output = Vec<u8>>,
    {
        let (c, s) = tokio::io::duplex(1 << 20);
        let clog = ConnLog::with(Default::default(), Metrics::new().unrouted(), false);
        let svc_log = clog.clone();
        let svc = hyper::service::service_fn(move |_req| {
            svc_log.track(async {
                Ok::<_, std::convert::Infallible>(http::Response::new(http_body_util::Full::new(
                    bytes::Bytes::from_static(b"ok"),
                )))
            })
        });
        let conn = hyper::server::conn::http1::Builder::new()
            .timer(hyper_util::rt::TokioTimer::new())
            .header_read_timeout(Duration::from_millis(200))
            .max_buf_size(8192)
            .serve_connection(hyper_util::rt::TokioIo::new(clog.io(s)), svc);
        let (r, got) = tokio::join!(conn, client(c));
        let info = ConnInfo::new("127.0.0.1:1".parse().unwrap(), None, None);
        let rec = r.err().and_then(|e| {
            let e: Box<dyn StdError + Send + Sync> = Box::new(e);
            clog.record(&*e, &info)
        });
        (rec, got)
    }

    async fn send(mut c: tokio::io::DuplexStream, parts: Vec<Vec<u8>>, close: bool) -> Vec<u8> {
        for p in parts {
            c.write_all(&p).await.unwrap();
            // Let the server answer each part before the next.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if close {
            c.shutdown().await.unwrap();
        }
        let mut out = Vec::new();
        let _ = c.read_to_end(&mut out).await;
        out
    }

    fn status_error(r: &Option<AccessRecord>) -> Option<(u16, &str)> {
        r.as_ref()
            .map(|r| (r.status, r.error.as_deref().unwrap_or("-")))
    }

    #[tokio::test]
    async fn hyper_rejections_become_records() {
        let big = [b"GET / HTTP/1.1\r\nX: ".as_slice(), &[b'a'; 9000]].concat();
        let (r, got) = serve(|c| send(c, vec![big.to_vec()], false)).await;
        assert_eq!(status_error(&r), Some((431, "header too large")));
        assert!(got.starts_with(b"HTTP/1.1 431"));
        let r = r.unwrap();
        assert!(
            r.bytes_in >= 8192 && r.bytes_out == got.len() as u64,
            "{r:?}"
        );

        let bad = b"GET / HTTP/1.1\r\nHost: a\r\n\r\nG@T / HTTP/1.1\r\n\r\n";
        let (first, second) = bad.split_at(27);
        let (r, got) = serve(|c| send(c, vec![first.to_vec(), second.to_vec()], false)).await;
        assert_eq!(status_error(&r), Some((400, "invalid method")));
        let text = String::from_utf8_lossy(&got);
        assert!(
            text.starts_with("HTTP/1.1 200") && text.contains("HTTP/1.1 400"),
            "{text}"
        );
        assert_eq!(
            r.unwrap().bytes_in,
            second.len() as u64,
            "only the bad request"
        );

        for (line, error) in [
            (
                &b"GET / HTTP/1.1\r\nBad Header\r\n\r\n"[..],
                "malformed request",
            ),
            (b"GET / HTTP/9.1\r\n\r\n", "invalid HTTP version"),
            (
                b"GET / HTTP/1.1\r\nContent-Length: x\r\n\r\n",
                "invalid header",
            ),
            (
                b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
                "HTTP/2 preface on an HTTP/1 connection",
            ),
        ] {
            let (r, _) = serve(|c| send(c, vec![line.to_vec()], false)).await;
            assert_eq!(status_error(&r).map(|s| s.1), Some(error));
        }

        // Cut off mid-head, and a head that never ends.
        let (r, _) = serve(|c| send(c, vec![b"GET / HT".to_vec()], true)).await;
        assert_eq!(status_error(&r), Some((400, "client closed mid-request")));
        assert_eq!(r.unwrap().bytes_in, 8);
        let slow = b"GET / HTTP/1.1\r\nHo";
        let (r, got) = serve(|c| send(c, vec![slow.to_vec()], false)).await;
        assert_eq!(status_error(&r), Some((408, "header read timeout")));
        let r = r.unwrap();
        assert_eq!(
            (r.bytes_in, r.bytes_out, got.len()),
            (slow.len() as u64, 0, 0)
        );
        assert!(r.duration >= Duration::from_millis(150), "{r:?}");
    }

    #[tokio::test]
    async fn silent_and_idle_connections_are_not_logged() {
        // Connect and close; connect and say nothing until the timeout.
        let (r, _) = serve(|c| send(c, vec![], true)).await;
        assert!(r.is_none());
        let (r, _) = serve(|c| send(c, vec![], false)).await;
        assert!(r.is_none());
        // Blank lines only (ignored before a request line, RFC 9112).
        let (r, _) = serve(|c| send(c, vec![b"\r\n".to_vec()], true)).await;
        assert!(r.is_none());
        // A request answered, then idle until the timeout or closed.
        for close in [false, true] {
            let (r, got) =
                serve(|c| send(c, vec![b"GET / HTTP/1.1\r\n\r\n".to_vec()], close)).await;
            assert!(got.starts_with(b"HTTP/1.1 200"));
            assert!(r.is_none(), "{r:?}");
        }
    }

    /// HTTP/2: one record for a connection-level protocol error, none for
    /// a client that says hello and leaves.
    #[tokio::test]
    async fn http2_protocol_errors() {
        const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
        const SETTINGS: &[u8] = &[0, 0, 0, 4, 0, 0, 0, 0, 0];
        // A DATA frame on stream 0 is a connection error (RFC 9113 §6.1).
        const DATA0: &[u8] = &[0, 0, 1, 0, 0, 0, 0, 0, 0, b'x'];
        for (bytes, logged) in [
            ([PREFACE, SETTINGS, DATA0].concat(), true),
            ([PREFACE, SETTINGS].concat(), false),
        ] {
            let (c, s) = tokio::io::duplex(1 << 16);
            let clog = ConnLog::with(Default::default(), Metrics::new().unrouted(), true);
            let svc = hyper::service::service_fn(|_req| async {
                Ok::<_, std::convert::Infallible>(http::Response::new(http_body_util::Empty::<
                    bytes::Bytes,
                >::new()))
            });
            let conn =
                hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                    .serve_connection(hyper_util::rt::TokioIo::new(clog.io(s)), svc);
            let (r, _) = tokio::join!(conn, send(c, vec![bytes.to_vec()], true));
            let info = ConnInfo::new("127.0.0.1:1".parse().unwrap(), None, None);
            let rec = r.err().and_then(|e| {
                let e: Box<dyn StdError + Send + Sync> = Box::new(e);
                clog.record(&*e, &info)
            });
            assert_eq!(rec.is_some(), logged, "{rec:?}");
            if let Some(r) = rec {
                assert_eq!(r.status, 400);
                let e = r.error.unwrap();
                assert!(
                    e.starts_with("HTTP/2 protocol error: connection error detected"),
                    "{e}"
                );
                assert_eq!(r.bytes_in, bytes.len() as u64);
            }
        }
    }
}
