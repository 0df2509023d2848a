//! One attempt to one server: the inner service of a pool's HTTP
//! [`Dispatch`](edge_balance::Dispatch). It points the attempt's request at
//! the server and sends it through the pool's pooled client; edge-balance
//! runs everything around it (pick, slot, timeout, outcome, retry).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use edge_balance::{Classify, Outcome, ReplayBody};
use futures::future::{Either, MapErr, Ready, TryFutureExt};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Request, Response, Uri};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::{Builder, Client, ResponseFuture};

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

/// Sends one attempt to the server it is given.
#[derive(Debug, Clone)]
pub struct SendToServer {
    clients: Clients,
}

#[derive(Debug, Clone)]
enum Clients {
    /// HTTP/1.1: one pooled client for the pool. The URI names the server
    /// (connections are pooled per server); the request line is sent in
    /// origin form, the client's Host as the Host header.
    Http1(Arc<Client<HttpConnector, EdgeBody>>),
    /// HTTP/2 without TLS: a pooled client per server, whose connector
    /// always connects to that server. The URI carries the client's Host,
    /// which HTTP/2 sends as `:authority` with no Host header beside it (RFC
    /// 9113 §8.3.1: a server may refuse a Host that differs from
    /// `:authority`, as nginx does with a 400).
    H2(Arc<H2Clients>),
}

/// The per-server clients of an HTTP/2 pool, made on first use.
#[derive(Debug)]
struct H2Clients {
    builder: Builder,
    connector: HttpConnector,
    by_server: Mutex<HashMap<SocketAddr, Client<ToServer, EdgeBody>>>,
}

impl H2Clients {
    fn client(&self, addr: SocketAddr) -> Option<Client<ToServer, EdgeBody>> {
        let mut map = self
            .by_server
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(c) = map.get(&addr) {
            return Some(c.clone());
        }
        let uri = backend_uri(addr, PathAndQuery::from_static("/"))?;
        let c = self.builder.build(ToServer {
            http: self.connector.clone(),
            uri,
        });
        map.insert(addr, c.clone());
        Some(c)
    }
}

/// A connector to one server, whatever the URI it is asked for.
#[derive(Debug, Clone)]
struct ToServer {
    http: HttpConnector,
    /// `http://SERVER/`.
    uri: Uri,
}

impl tower_service::Service<Uri> for ToServer {
    type Response = <HttpConnector as tower_service::Service<Uri>>::Response;
    type Error = <HttpConnector as tower_service::Service<Uri>>::Error;
    type Future = <HttpConnector as tower_service::Service<Uri>>::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.http.poll_ready(cx)
    }

    fn call(&mut self, _: Uri) -> Self::Future {
        self.http.call(self.uri.clone())
    }
}

impl SendToServer {
    /// HTTP/1.1 through `client`.
    pub fn http1(client: Client<HttpConnector, EdgeBody>) -> Self {
        Self {
            clients: Clients::Http1(Arc::new(client)),
        }
    }

    /// HTTP/2 without TLS: clients made by `builder` (set to HTTP/2 only)
    /// around `connector`, one per server.
    pub fn h2c(builder: Builder, connector: HttpConnector) -> Self {
        Self {
            clients: Clients::H2(Arc::new(H2Clients {
                builder,
                connector,
                by_server: Mutex::new(HashMap::new()),
            })),
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
        let fail = || Either::Left(futures::future::ready(Err(SendError::Uri(addr))));
        let sent = match &self.clients {
            Clients::Http1(client) => {
                let Some(uri) = backend_uri(addr, path) else {
                    return fail();
                };
                parts.uri = uri;
                client.request(Request::from_parts(parts, boxed(body)))
            }
            Clients::H2(clients) => {
                let host = parts.headers.remove(http::header::HOST);
                let uri = match host.and_then(|h| Authority::try_from(h.as_bytes()).ok()) {
                    Some(authority) => Uri::builder()
                        .scheme(Scheme::HTTP)
                        .authority(authority)
                        .path_and_query(path)
                        .build()
                        .ok(),
                    None => backend_uri(addr, path),
                };
                let (Some(uri), Some(client)) = (uri, clients.client(addr)) else {
                    return fail();
                };
                parts.uri = uri;
                client.request(Request::from_parts(parts, boxed(body)))
            }
        };
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

/// `http://<addr><path>` for the pooled client, built from parts (the path
/// is shared with the client's request, the address formatted once).
fn backend_uri(addr: SocketAddr, path: PathAndQuery) -> Option<Uri> {
    use std::io::Write as _;
    let mut buf = [0u8; 64];
    let mut cur = std::io::Cursor::new(&mut buf[..]);
    write!(cur, "{addr}").ok()?;
    let n = usize::try_from(cur.position()).ok()?;
    let authority = Authority::try_from(buf.get(..n)?).ok()?;
    let mut parts = http::uri::Parts::default();
    parts.scheme = Some(Scheme::HTTP);
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
        let u = backend_uri("127.0.0.1:8080".parse().unwrap(), p.clone()).unwrap();
        assert_eq!(u.to_string(), "http://127.0.0.1:8080/a/b?x=1&y");
        let u = backend_uri("[2001:db8::1]:80".parse().unwrap(), p).unwrap();
        assert_eq!(u.authority().unwrap().as_str(), "[2001:db8::1]:80");
        let long = "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff%4294967295]:65535";
        let addr: SocketAddr = "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535"
            .parse()
            .unwrap();
        assert!(long.len() < 64);
        assert!(backend_uri(addr, PathAndQuery::from_static("/")).is_some());
    }
}
