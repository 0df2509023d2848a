//! [`HttpsRedirect`]: what port 80 answers to everything that is not an
//! ACME challenge, as a tower service of its own.

use std::convert::Infallible;
use std::future::{Ready, ready};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HOST, LOCATION};
use http::uri::{Authority, PathAndQuery};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Uri};
use http_body_util::Full;

/// What the responder answers to requests that are not a pending challenge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Fallback {
    /// A permanent redirect to `https://` on the same host and path: `301`
    /// for GET and HEAD (what browsers and nginx users expect), `308` for
    /// other methods so they keep their method and body.
    #[default]
    RedirectHttps,
    /// `404 Not Found`.
    NotFound,
}

/// Port 80 for everything but ACME challenges: a permanent redirect to
/// the same host and path over HTTPS ([`Fallback::RedirectHttps`]: `301`
/// for GET and HEAD, `308` otherwise, the port left out when it is 443), or
/// `404` ([`Fallback::NotFound`]). A missing, repeated or malformed `Host`
/// gets `400`. The request body is never read.
///
/// [`ChallengeResponder`](crate::ChallengeResponder) answers with it
/// whatever is not a pending challenge; a server without ACME can serve it
/// alone.
///
/// ```
/// use edge_acme::{Fallback, HttpsRedirect};
///
/// let r = HttpsRedirect::new(Fallback::RedirectHttps, 8443);
/// let req = http::Request::post("/form?a=1").header("host", "example.net:8080").body(()).unwrap();
/// let rsp = r.respond(&req);
/// assert_eq!(rsp.status(), 308);
/// assert_eq!(rsp.headers()["location"], "https://example.net:8443/form?a=1");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpsRedirect {
    fallback: Fallback,
    https_port: u16,
}

impl Default for HttpsRedirect {
    /// Redirects to HTTPS on 443.
    fn default() -> Self {
        Self::new(Fallback::RedirectHttps, 443)
    }
}

impl HttpsRedirect {
    /// Answers with `fallback`, redirecting to `https_port`.
    pub const fn new(fallback: Fallback, https_port: u16) -> Self {
        Self {
            fallback,
            https_port,
        }
    }

    /// Answers one request (what [`tower_service::Service::call`] runs).
    pub fn respond<B>(&self, req: &Request<B>) -> Response<Full<Bytes>> {
        self.answer(req.method(), req.uri(), req.headers())
    }

    pub(crate) fn answer(
        &self,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
    ) -> Response<Full<Bytes>> {
        match self.fallback {
            Fallback::NotFound => plain(StatusCode::NOT_FOUND, "not found\n"),
            Fallback::RedirectHttps => self.redirect(method, uri, headers),
        }
    }

    fn redirect(&self, method: &Method, uri: &Uri, headers: &HeaderMap) -> Response<Full<Bytes>> {
        let Ok(authority) = host_of(uri, headers) else {
            return plain(StatusCode::BAD_REQUEST, "missing or invalid Host\n");
        };
        let host = authority.host();
        let port = match self.https_port {
            443 => String::new(),
            p => format!(":{p}"),
        };
        let path = uri.path_and_query().map_or("/", PathAndQuery::as_str);
        let location = format!("https://{host}{port}{path}");
        let Ok(location) = HeaderValue::try_from(location) else {
            return plain(StatusCode::BAD_REQUEST, "invalid request target\n");
        };
        let status = match *method {
            Method::GET | Method::HEAD => StatusCode::MOVED_PERMANENTLY,
            _ => StatusCode::PERMANENT_REDIRECT,
        };
        let mut rsp = plain(status, "");
        rsp.headers_mut().insert(LOCATION, location);
        rsp
    }
}

impl<B> tower_service::Service<Request<B>> for HttpsRedirect {
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        ready(Ok(self.respond(&req)))
    }
}

/// The request's host, validated: the absolute-form target's authority
/// when there is one (RFC 9112 §3.2.2), else the one `Host` header.
pub(crate) fn host_of(uri: &Uri, headers: &HeaderMap) -> Result<Authority, ()> {
    let mut hosts = headers.get_all(HOST).iter();
    let (header, repeated) = (hosts.next(), hosts.next().is_some());
    if repeated {
        return Err(()); // RFC 9112 §3.2: answer 400
    }
    let authority = match (uri.authority(), header) {
        (Some(a), _) => a.clone(),
        (None, Some(value)) => value
            .to_str()
            .map_err(|_| ())?
            .parse::<Authority>()
            .map_err(|_| ())?,
        (None, None) => return Err(()),
    };
    if authority.as_str().contains('@') {
        return Err(()); // userinfo has no place in Host
    }
    let host = authority.host();
    let port_ok = match authority.as_str().strip_prefix(host) {
        Some("") => true,
        Some(rest) => rest
            .strip_prefix(':')
            .is_some_and(|p| p.parse::<u16>().is_ok()),
        None => false,
    };
    if !port_ok {
        return Err(());
    }
    let valid = if let Some(v6) = host.strip_prefix('[') {
        v6.strip_suffix(']')
            .is_some_and(|a| a.parse::<std::net::Ipv6Addr>().is_ok())
    } else {
        // A DNS name (labels of 1 to 63 characters, one trailing dot
        // allowed) or an IPv4 address.
        let name = host.strip_suffix('.').unwrap_or(host);
        !name.is_empty()
            && name.len() <= 253
            && name.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'))
            })
    };
    if valid { Ok(authority) } else { Err(()) }
}

/// A `text/plain` response (no content type when `body` is empty).
pub(crate) fn plain(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut rsp = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *rsp.status_mut() = status;
    if !body.is_empty() {
        rsp.headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    }
    rsp
}

#[cfg(test)]
mod tests {
    use tower::{Service, ServiceExt};

    use super::*;

    async fn call(mut r: HttpsRedirect, req: Request<()>) -> (StatusCode, String) {
        let rsp = ServiceExt::<Request<()>>::ready(&mut r)
            .await
            .unwrap()
            .call(req)
            .await
            .unwrap();
        let loc = rsp
            .headers()
            .get(LOCATION)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        (rsp.status(), loc)
    }

    fn req(method: Method, uri: &str, hosts: &[&str]) -> Request<()> {
        let mut b = Request::builder().method(method).uri(uri);
        for h in hosts {
            b = b.header(HOST, *h);
        }
        b.body(()).unwrap()
    }

    #[tokio::test]
    async fn status_by_method_port_and_switch() {
        let on = HttpsRedirect::default();
        for (m, s) in [
            (Method::GET, 301),
            (Method::HEAD, 301),
            (Method::POST, 308),
            (Method::PUT, 308),
            (Method::DELETE, 308),
        ] {
            let (status, loc) = call(on, req(m, "/p?q=1", &["a.example"])).await;
            assert_eq!(
                (status.as_u16(), loc.as_str()),
                (s, "https://a.example/p?q=1")
            );
        }
        let (_, loc) = call(
            HttpsRedirect::new(Fallback::RedirectHttps, 8443),
            req(Method::GET, "/", &["a.example:80"]),
        )
        .await;
        assert_eq!(loc, "https://a.example:8443/");
        let off = HttpsRedirect::new(Fallback::NotFound, 443);
        assert_eq!(
            call(off, req(Method::GET, "/", &["a.example"])).await,
            (StatusCode::NOT_FOUND, String::new())
        );
        // Off answers 404 whatever the Host.
        assert_eq!(
            call(off, req(Method::GET, "/", &[])).await.0,
            StatusCode::NOT_FOUND
        );
    }

    #[tokio::test]
    async fn host_rules() {
        let r = HttpsRedirect::default();
        // Two Host headers: ambiguous, refused.
        let two = req(Method::GET, "/", &["a.example", "b.example"]);
        assert_eq!(call(r, two).await.0, StatusCode::BAD_REQUEST);
        for bad in ["a..example", ".a.example", "a.example..", &"x".repeat(64)] {
            let r400 = call(r, req(Method::GET, "/", &[bad])).await.0;
            assert_eq!(r400, StatusCode::BAD_REQUEST, "{bad}");
        }
        let dot = req(Method::GET, "/", &["a.example.:80"]);
        assert_eq!(
            call(r, dot).await,
            (StatusCode::MOVED_PERMANENTLY, "https://a.example./".into())
        );
        // Absolute form: its authority wins over Host.
        let abs = req(Method::GET, "http://a.example/x", &["b.example"]);
        assert_eq!(
            call(r, abs).await,
            (StatusCode::MOVED_PERMANENTLY, "https://a.example/x".into())
        );
        let cfg = crate::ChallengeConfig {
            https_port: 4443,
            ..crate::ChallengeConfig::default()
        };
        assert_eq!(
            cfg.https_redirect(),
            HttpsRedirect::new(Fallback::RedirectHttps, 4443)
        );
    }
}
