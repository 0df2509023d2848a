//! A small HTTP/3 server adapter, independent of edge: it accepts the
//! request streams of one QUIC connection (h3 over h3-quinn) and answers
//! each with a call of a tower [`Service`]`<http::Request<`[`RequestBody`]`>>`,
//! streaming the response body back. Request streams run concurrently (one
//! task each), bounded by the QUIC stream limit the connection was
//! accepted with.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use h3::error::{Code, StreamError};
use h3::server::RequestStream;
use http::{HeaderMap, Request, Response};
use http_body::{Body, Frame};
use http_body_util::BodyExt;
use tower_service::Service;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The body of an HTTP/3 request: the DATA frames of its stream, then
/// its trailers.
pub struct RequestBody {
    recv: RequestStream<h3_quinn::RecvStream, Bytes>,
    data_done: bool,
    done: bool,
}

impl RequestBody {
    fn new(recv: RequestStream<h3_quinn::RecvStream, Bytes>) -> Self {
        Self {
            recv,
            data_done: false,
            done: false,
        }
    }
}

impl std::fmt::Debug for RequestBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestBody")
            .field("stream", &self.recv.id())
            .field("done", &self.done)
            .finish()
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = StreamError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, StreamError>>> {
        let this = &mut *self;
        if this.done {
            return Poll::Ready(None);
        }
        if !this.data_done {
            match std::task::ready!(this.recv.poll_recv_data(cx)) {
                Ok(Some(mut buf)) => {
                    let b = buf.copy_to_bytes(buf.remaining());
                    return Poll::Ready(Some(Ok(Frame::data(b))));
                }
                Ok(None) => this.data_done = true,
                Err(e) => {
                    this.done = true;
                    return Poll::Ready(Some(Err(e)));
                }
            }
        }
        let trailers = std::task::ready!(this.recv.poll_recv_trailers(cx));
        this.done = true;
        match trailers {
            Ok(Some(t)) => Poll::Ready(Some(Ok(Frame::trailers(t)))),
            Ok(None) => Poll::Ready(None),
            Err(e) => Poll::Ready(Some(Err(e))),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done
    }
}

/// Settings of [`serve_connection`].
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// The largest request header section accepted, in bytes (h3's
    /// `SETTINGS_MAX_FIELD_SECTION_SIZE`); a larger one is answered 431.
    pub max_field_section_size: u64,
    /// The longest one piece of a response body may wait for the client
    /// to take it (QUIC flow control); beyond it the stream is reset, so a
    /// client that stops reading does not hold the response forever.
    pub send_timeout: std::time::Duration,
}

/// Connection-specific header fields HTTP/3 forbids (RFC 9114 §4.2): an
/// HTTP/1 service may set them; they are dropped from its response.
fn strip_connection_headers(h: &mut HeaderMap) {
    for name in [
        http::header::CONNECTION,
        http::header::TRANSFER_ENCODING,
        http::header::UPGRADE,
        http::header::HeaderName::from_static("keep-alive"),
        http::header::HeaderName::from_static("proxy-connection"),
    ] {
        h.remove(name);
    }
}

/// Serves the requests of `conn` with `svc` until the client closes it, or
/// until `shutdown` completes: then a GOAWAY lets the requests in flight
/// finish and no new one starts.
pub async fn serve_connection<S, RB>(
    conn: quinn::Connection,
    svc: S,
    settings: Settings,
    shutdown: impl Future<Output = ()>,
) -> Result<(), h3::error::ConnectionError>
where
    S: Service<Request<RequestBody>, Response = Response<RB>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Into<BoxError> + Send,
    RB: Body<Data = Bytes> + Send + 'static,
    RB::Error: Into<BoxError> + Send,
{
    let mut h3c = h3::server::builder()
        .max_field_section_size(settings.max_field_section_size)
        .build::<_, Bytes>(h3_quinn::Connection::new(conn))
        .await?;
    tokio::pin!(shutdown);
    let mut closing = false;
    loop {
        tokio::select! {
            accepted = h3c.accept() => match accepted? {
                Some(resolver) => {
                    let svc = svc.clone();
                    tokio::spawn(async move {
                        match resolver.resolve_request().await {
                            Ok((req, stream)) => serve_request(svc, req, stream, settings).await,
                            Err(e) => tracing::debug!(error = %e, "HTTP/3 request refused"),
                        }
                    });
                }
                None => return Ok(()),
            },
            () = &mut shutdown, if !closing => {
                closing = true;
                tracing::debug!("HTTP/3 GOAWAY");
                // GOAWAY names the first request not served (RFC 9114
                // §5.2): the one after the last accepted, so the client
                // knows every accepted request is answered (h3's
                // `shutdown(0)` would name the last accepted one).
                h3c.shutdown(1).await?;
            }
        }
    }
}

/// Answers one request stream with `svc`.
async fn serve_request<S, RB>(
    mut svc: S,
    req: Request<()>,
    stream: RequestStream<h3_quinn::BidiStream<Bytes>, Bytes>,
    settings: Settings,
) where
    S: Service<Request<RequestBody>, Response = Response<RB>>,
    S::Error: Into<BoxError> + Send,
    RB: Body<Data = Bytes>,
    RB::Error: Into<BoxError> + Send,
{
    let (mut send, recv) = stream.split();
    let req = req.map(|()| RequestBody::new(recv));
    let called = match std::future::poll_fn(|cx| svc.poll_ready(cx)).await {
        Ok(()) => svc.call(req).await,
        Err(e) => Err(e),
    };
    let resp = match called {
        Ok(r) => r,
        Err(e) => {
            let e: BoxError = e.into();
            tracing::debug!(error = %e, "HTTP/3 service failed");
            send.stop_stream(Code::H3_INTERNAL_ERROR);
            return;
        }
    };
    let (mut parts, body) = resp.into_parts();
    strip_connection_headers(&mut parts.headers);
    let send_timeout = settings.send_timeout;
    if let Err(e) = send.send_response(Response::from_parts(parts, ())).await {
        tracing::debug!(error = %e, "HTTP/3 response head not sent");
        return;
    }
    let mut body = std::pin::pin!(body);
    while let Some(frame) = body.frame().await {
        let sent = match frame {
            Ok(f) => match f.into_data() {
                Ok(data) if data.is_empty() => Ok(()),
                Ok(data) => match tokio::time::timeout(send_timeout, send.send_data(data)).await {
                    Ok(r) => r,
                    Err(_) => {
                        tracing::debug!("HTTP/3 client stopped reading: stream reset");
                        send.stop_stream(Code::H3_REQUEST_CANCELLED);
                        return;
                    }
                },
                Err(f) => match f.into_trailers() {
                    Ok(t) => send.send_trailers(t).await,
                    Err(_) => Ok(()),
                },
            },
            Err(e) => {
                let e: BoxError = e.into();
                tracing::debug!(error = %e, "HTTP/3 response body failed");
                send.stop_stream(Code::H3_INTERNAL_ERROR);
                return;
            }
        };
        if let Err(e) = sent {
            // The client reset the stream or the connection ended.
            tracing::debug!(error = %e, "HTTP/3 response not sent");
            return;
        }
    }
    if let Err(e) = send.finish().await {
        tracing::debug!(error = %e, "HTTP/3 response not finished");
    }
}
