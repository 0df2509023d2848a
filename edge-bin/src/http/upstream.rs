//! One attempt to one server: the inner service of a pool's HTTP
//! [`Dispatch`](edge_balance::Dispatch). It points the attempt's request at
//! the server and sends it through the pool's pooled client; edge-balance
//! runs everything around it (pick, slot, timeout, outcome, retry).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, PoisonError, RwLock};
use std::task::{Context, Poll};

use edge_balance::upstream_tls::{DialServer, UpstreamConnector, UpstreamConnectors};
use edge_balance::{Classify, Outcome, ReplayBody};
use futures::future::{Either, MapErr, Ready, TryFutureExt};
use http::header::HOST;
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Request, Response, Uri};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::{Client, ResponseFuture};

use super::body::{EdgeBody, boxed};

/// Why one attempt failed.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The server's address and the request's path make no URI.
    #[error("no backend URI for {0}")]
    Uri(SocketAddr),
    /// The pooled client failed (connect, write, read).
    #[error(transparent)]
    Client(#[from] hyper_util::client::legacy::Error),
}

/// A server's pooled client: plaintext, or TLS (`[pool.tls]`, edge-balance's
/// upstream connector). Each dials its one server (edge-balance's
/// `DialServer`), so the request's URI can name the client's host.
#[derive(Debug)]
enum ServerClient {
    Plain(Client<DialServer, EdgeBody>),
    Tls(Client<UpstreamConnector, EdgeBody>),
}

/// How a pool reaches its servers: the client settings, and a pooled
/// client per server, made on first use.
#[derive(Debug)]
pub struct BackendClients {
    builder: hyper_util::client::legacy::Builder,
    http: HttpConnector,
    /// `[pool.tls]`'s connectors; `None`: plaintext.
    tls: Option<UpstreamConnectors>,
    /// The request's URI names the client's host (for HTTP/2's
    /// `:authority`), not the server's address.
    host_in_uri: bool,
    by_server: RwLock<HashMap<SocketAddr, ServerClient>>,
}

impl BackendClients {
    /// Clients built by `builder` over TCP by `http`, with TLS when `tls`.
    ///
    /// `may_speak_h2`: the pool speaks HTTP/2 (`h2c`, `h2`, or `auto` when
    /// ALPN chooses it). HTTP/2 sends the URI's authority as `:authority`
    /// and nginx refuses a second `Host`, so the URI then names the client's
    /// host (a server's connections are pooled per host; hyper-util writes
    /// an HTTP/1 `Host` from it). Otherwise the URI names the server and the
    /// client's `Host` goes as it is: one connection pool per server.
    pub fn new(
        mut builder: hyper_util::client::legacy::Builder,
        http: HttpConnector,
        tls: Option<UpstreamConnectors>,
        may_speak_h2: bool,
    ) -> Self {
        builder.set_host(may_speak_h2);
        Self {
            builder,
            http,
            tls,
            host_in_uri: may_speak_h2,
            by_server: RwLock::new(HashMap::new()),
        }
    }

    /// Sends `req` through `addr`'s client (made now if it is the first).
    fn request(&self, addr: SocketAddr, req: Request<EdgeBody>) -> ResponseFuture {
        let map = self
            .by_server
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(c) = map.get(&addr) {
            return c.request(req);
        }
        drop(map);
        let mut map = self
            .by_server
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        map.entry(addr)
            .or_insert_with(|| match &self.tls {
                None => ServerClient::Plain(
                    self.builder.build(DialServer::new(addr, self.http.clone())),
                ),
                Some(c) => ServerClient::Tls(self.builder.build(c.to(addr, self.http.clone()))),
            })
            .request(req)
    }
}

impl ServerClient {
    fn request(&self, req: Request<EdgeBody>) -> ResponseFuture {
        match self {
            ServerClient::Plain(c) => c.request(req),
            ServerClient::Tls(c) => c.request(req),
        }
    }
}

/// Sends one attempt to the server it is given.
#[derive(Debug, Clone)]
pub struct SendToServer {
    clients: Arc<BackendClients>,
}

impl SendToServer {
    pub fn new(clients: BackendClients) -> Self {
        Self {
            clients: Arc::new(clients),
        }
    }
}

type Sent = Either<
    Ready<Result<Response<Incoming>, SendError>>,
    MapErr<ResponseFuture, fn(hyper_util::client::legacy::Error) -> SendError>,
>;

impl tower_service::Service<(SocketAddr, Request<ReplayBody<EdgeBody>>)> for SendToServer {
    type Response = Response<Incoming>;
    type Error = SendError;
    type Future = Sent;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), SendError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, (addr, req): (SocketAddr, Request<ReplayBody<EdgeBody>>)) -> Sent {
        let (mut parts, body) = req.into_parts();
        let path = parts
            .uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
        // The client's host (edge set `Host` from it), else the server's address.
        let host = if self.clients.host_in_uri {
            parts
                .headers
                .remove(HOST)
                .and_then(|h| Authority::try_from(h.as_bytes()).ok())
                .or_else(|| parts.uri.authority().cloned())
        } else {
            None
        };
        let scheme = match self.clients.tls {
            None => Scheme::HTTP,
            Some(_) => Scheme::HTTPS,
        };
        let Some(uri) = backend_uri(host, addr, path, scheme) else {
            return Either::Left(futures::future::ready(Err(SendError::Uri(addr))));
        };
        parts.uri = uri;
        let sent = self
            .clients
            .request(addr, Request::from_parts(parts, boxed(body)));
        Either::Right(sent.map_err(SendError::Client as fn(_) -> _))
    }
}

/// 5xx answers are failures of the server; a client error is a connect
/// failure when hyper says the connection was never made.
#[derive(Debug, Clone, Copy)]
pub struct ByStatus;

impl Classify<Response<Incoming>, SendError> for ByStatus {
    fn response(&self, rsp: &Response<Incoming>) -> Outcome {
        if rsp.status().is_server_error() {
            Outcome::Status5xx
        } else {
            Outcome::Success
        }
    }

    fn error(&self, e: &SendError) -> Outcome {
        match e {
            SendError::Client(e) if e.is_connect() => Outcome::ConnectFailure,
            SendError::Client(e) if request_body_failed(e) => Outcome::RequestFault,
            SendError::Client(e) if closed_before_answer(e) => Outcome::Closed,
            _ => Outcome::Failure,
        }
    }
}

/// Whether the client's request body failed while it was sent (an aborted
/// upload, a malformed chunk): hyper reports the body it was given as a
/// "user" error. That is the client's fault, not the server's.
pub fn request_body_failed(e: &hyper_util::client::legacy::Error) -> bool {
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(h) = s.downcast_ref::<hyper::Error>() {
            return h.is_user();
        }
        source = s.source();
    }
    false
}

/// Whether the server closed the connection (an end of stream or a reset)
/// before any byte of its answer: most often a kept-alive connection it
/// closed (its keep-alive timeout) just as edge reused it.
fn closed_before_answer(e: &hyper_util::client::legacy::Error) -> bool {
    use std::io::ErrorKind::{BrokenPipe, ConnectionAborted, ConnectionReset, UnexpectedEof};
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(h) = s.downcast_ref::<hyper::Error>() {
            if h.is_incomplete_message() {
                return true;
            }
        } else if let Some(io) = s.downcast_ref::<std::io::Error>() {
            return matches!(
                io.kind(),
                ConnectionReset | BrokenPipe | ConnectionAborted | UnexpectedEof
            );
        }
        source = s.source();
    }
    false
}

/// `http://<host><path>` (or `https://`) for the server's client, built
/// from parts (the path is shared with the client's request); `<host>` is
/// the server's address when the request has none.
fn backend_uri(
    host: Option<Authority>,
    addr: SocketAddr,
    path: PathAndQuery,
    scheme: Scheme,
) -> Option<Uri> {
    let authority = match host {
        Some(h) => h,
        None => {
            use std::io::Write as _;
            let mut buf = [0u8; 64];
            let mut cur = std::io::Cursor::new(&mut buf[..]);
            write!(cur, "{addr}").ok()?;
            let n = usize::try_from(cur.position()).ok()?;
            Authority::try_from(buf.get(..n)?).ok()?
        }
    };
    let mut parts = http::uri::Parts::default();
    parts.scheme = Some(scheme);
    parts.authority = Some(authority);
    parts.path_and_query = Some(path);
    Uri::from_parts(parts).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_uris() {
        let p = PathAndQuery::from_static("/a/b?x=1&y");
        let any: SocketAddr = "192.0.2.1:1".parse().unwrap();
        let u = backend_uri(
            None,
            "127.0.0.1:8080".parse().unwrap(),
            p.clone(),
            Scheme::HTTP,
        );
        assert_eq!(u.unwrap().to_string(), "http://127.0.0.1:8080/a/b?x=1&y");
        let host = Some(Authority::from_static("app.example:8443"));
        let u = backend_uri(host, any, p.clone(), Scheme::HTTPS).unwrap();
        assert_eq!(u.to_string(), "https://app.example:8443/a/b?x=1&y");
        let u = backend_uri(None, "[2001:db8::1]:80".parse().unwrap(), p, Scheme::HTTP).unwrap();
        assert_eq!(u.authority().unwrap().as_str(), "[2001:db8::1]:80");
        let long = "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff%4294967295]:65535";
        let addr: SocketAddr = "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535"
            .parse()
            .unwrap();
        assert!(long.len() < 64);
        assert!(backend_uri(None, addr, PathAndQuery::from_static("/"), Scheme::HTTPS).is_some());
    }
}
