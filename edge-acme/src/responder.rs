//! [`ChallengeResponder`]: the tower service for port 80.

use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HOST};
use http::uri::Authority;
use http::{HeaderValue, Method, Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Empty, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::config::ChallengeConfig;
use crate::redirect::{HttpsRedirect, host_of, plain};
use crate::storage::{Storage, StorageError, keys};

/// The path prefix of HTTP-01 challenges (RFC 8555 §8.3).
pub const CHALLENGE_PREFIX: &str = "/.well-known/acme-challenge/";
/// Header marking a request forwarded by the peer, never forwarded again.
pub const FORWARDED_HEADER: &str = "edge-acme-forwarded";
/// Longest token accepted (Let's Encrypt's are 43 characters).
const MAX_TOKEN_LEN: usize = 256;
/// Longest key authorization accepted from the peer or storage.
const MAX_KEY_AUTH_LEN: usize = 1024;

type PeerClient = Client<HttpConnector, Empty<Bytes>>;

struct Inner {
    storage: Arc<dyn Storage>,
    fallback: HttpsRedirect,
    peer: Option<Uri>,
    peer_timeout: Duration,
    client: Option<PeerClient>,
}

/// A tower service answering HTTP-01 challenges and nothing else.
///
/// - `GET /.well-known/acme-challenge/{token}` where `token` is base64url
///   and pending in [`Storage`] answers `200` with the key authorization as
///   `text/plain`. Because tokens live in storage, every node sharing it
///   answers, whichever one placed the order.
/// - An unknown token is asked of the configured peer (pairs without shared
///   storage) before answering `404`; a request the peer forwarded carries
///   the [`FORWARDED_HEADER`] and is never forwarded back.
/// - Anything else gets its [`HttpsRedirect`] (the [`Fallback`](crate::Fallback)
///   of its [`ChallengeConfig`]): a permanent redirect to HTTPS or `404`. A
///   missing, repeated or malformed `Host` gets `400`.
///
/// The request body is never read. Cloning is cheap.
#[derive(Clone)]
pub struct ChallengeResponder {
    inner: Arc<Inner>,
}

impl fmt::Debug for ChallengeResponder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChallengeResponder")
            .field("storage", &self.inner.storage)
            .field("fallback", &self.inner.fallback)
            .field("peer", &self.inner.peer)
            .finish()
    }
}

impl ChallengeResponder {
    /// A responder reading tokens from `storage`, with the default
    /// [`ChallengeConfig`] (redirect to HTTPS on 443, no peer).
    pub fn new(storage: Arc<dyn Storage>) -> Self {
        Self::from_config(&ChallengeConfig::default(), storage)
    }

    /// A responder with explicit settings.
    pub fn from_config(config: &ChallengeConfig, storage: Arc<dyn Storage>) -> Self {
        let client = config.peer.as_ref().map(|_| {
            let mut connector = HttpConnector::new();
            connector.set_connect_timeout(Some(config.peer_timeout));
            connector.set_nodelay(true);
            Client::builder(TokioExecutor::new()).build(connector)
        });
        Self {
            inner: Arc::new(Inner {
                storage,
                fallback: config.https_redirect(),
                peer: config.peer.clone(),
                peer_timeout: config.peer_timeout,
                client,
            }),
        }
    }

    /// Answers one request (what [`tower_service::Service::call`] runs).
    pub async fn respond<B>(&self, req: Request<B>) -> Response<Full<Bytes>> {
        let (parts, _body) = req.into_parts();
        let token = parts
            .uri
            .path()
            .strip_prefix(CHALLENGE_PREFIX)
            .filter(|t| is_token(t));
        if let (Some(token), &Method::GET) = (token, &parts.method) {
            let forwarded = parts.headers.contains_key(FORWARDED_HEADER);
            let host = host_of(&parts.uri, &parts.headers).ok();
            return self.challenge(token, host, forwarded).await;
        }
        self.inner
            .fallback
            .answer(&parts.method, &parts.uri, &parts.headers)
    }

    async fn challenge(
        &self,
        token: &str,
        host: Option<Authority>,
        forwarded: bool,
    ) -> Response<Full<Bytes>> {
        match self.inner.storage.load(&keys::challenge(token)).await {
            Ok(value) if value.len() <= MAX_KEY_AUTH_LEN && is_key_authorization(token, &value) => {
                tracing::info!(%token, "answered ACME challenge from storage");
                return key_authorization(value);
            }
            Ok(_) => {
                tracing::error!(%token, "stored key authorization is malformed; not served");
            }
            Err(StorageError::NotFound(_)) => {}
            Err(e) => tracing::error!(%token, error = %e, "could not read challenge token"),
        }
        if !forwarded && let Some(value) = self.ask_peer(token, host).await {
            tracing::info!(%token, "answered ACME challenge through the peer");
            return key_authorization(value);
        }
        tracing::debug!(%token, "unknown ACME challenge token");
        plain(StatusCode::NOT_FOUND, "unknown challenge token\n")
    }

    async fn ask_peer(&self, token: &str, host: Option<Authority>) -> Option<Vec<u8>> {
        let (peer, client) = (self.inner.peer.as_ref()?, self.inner.client.as_ref()?);
        let authority = peer.authority()?.clone();
        let uri = Uri::builder()
            .scheme("http")
            .authority(authority.clone())
            .path_and_query(format!("{CHALLENGE_PREFIX}{token}"))
            .build()
            .ok()?;
        let host = host.unwrap_or(authority);
        let req = Request::get(uri)
            .header(HOST, host.as_str())
            .header(FORWARDED_HEADER, "1")
            .body(Empty::new())
            .ok()?;
        let exchange = async {
            let rsp = client.request(req).await.ok()?;
            if rsp.status() != StatusCode::OK {
                return None;
            }
            let body = Limited::new(rsp.into_body(), MAX_KEY_AUTH_LEN)
                .collect()
                .await
                .ok()?;
            Some(body.to_bytes().to_vec())
        };
        match tokio::time::timeout(self.inner.peer_timeout, exchange).await {
            Ok(Some(value)) if is_key_authorization(token, &value) => Some(value),
            Ok(_) => None,
            Err(_) => {
                tracing::warn!(%peer, "peer did not answer the challenge in time");
                None
            }
        }
    }
}

/// Whether `token` is a plausible ACME token: base64url characters only.
pub fn is_token(token: &str) -> bool {
    !token.is_empty()
        && token.len() <= MAX_TOKEN_LEN
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn is_key_authorization(token: &str, value: &[u8]) -> bool {
    let Ok(value) = std::str::from_utf8(value) else {
        return false;
    };
    value
        .split_once('.')
        .is_some_and(|(t, thumb)| t == token && is_token(thumb))
}

fn key_authorization(value: Vec<u8>) -> Response<Full<Bytes>> {
    let mut rsp = Response::new(Full::new(Bytes::from(value)));
    rsp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    rsp
}

impl<B: Send + 'static> tower_service::Service<Request<B>> for ChallengeResponder {
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let this = self.clone();
        Box::pin(async move { Ok(this.respond(req).await) })
    }
}

#[cfg(test)]
mod tests {
    use tower::{Service, ServiceExt};

    use http::header::LOCATION;

    use super::*;
    use crate::{DirStorage, Fallback};

    const TOKEN: &str = "evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA";
    const KEY_AUTH: &str =
        "evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA.nP1qzpXGymHBrUEepNY9HCsQk7K8KhOypzEt62jcerQ";

    async fn responder(config: ChallengeConfig) -> (tempfile::TempDir, ChallengeResponder) {
        let dir = tempfile::tempdir().unwrap();
        let storage = Arc::new(DirStorage::new(dir.path()));
        storage
            .store(&keys::challenge(TOKEN), KEY_AUTH.as_bytes())
            .await
            .unwrap();
        (dir, ChallengeResponder::from_config(&config, storage))
    }

    fn get(uri: &str, host: Option<&str>) -> Request<()> {
        let mut req = Request::get(uri);
        if let Some(h) = host {
            req = req.header(HOST, h);
        }
        req.body(()).unwrap()
    }

    async fn call(r: &mut ChallengeResponder, req: Request<()>) -> (StatusCode, String, String) {
        let rsp = ServiceExt::<Request<()>>::ready(r)
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
        let status = rsp.status();
        let body = rsp.into_body().collect().await.unwrap().to_bytes();
        (status, loc, String::from_utf8(body.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn answers_pending_token_only() {
        let (_d, mut r) = responder(ChallengeConfig::default()).await;
        let path = format!("{CHALLENGE_PREFIX}{TOKEN}");
        let (s, _, body) = call(&mut r, get(&path, Some("a.example"))).await;
        assert_eq!((s, body.as_str()), (StatusCode::OK, KEY_AUTH));
        let rsp = r.respond(get(&path, Some("a.example"))).await;
        assert_eq!(rsp.headers()[CONTENT_TYPE], "text/plain");

        let (s, _, _) = call(
            &mut r,
            get(
                &format!("{CHALLENGE_PREFIX}unknownToken"),
                Some("a.example"),
            ),
        )
        .await;
        assert_eq!(s, StatusCode::NOT_FOUND);
        // Not base64url: never looked up, treated as any other path.
        let (s, loc, _) = call(
            &mut r,
            get(&format!("{CHALLENGE_PREFIX}..%2fx"), Some("a.example")),
        )
        .await;
        assert_eq!(
            (s, loc.as_str()),
            (
                StatusCode::MOVED_PERMANENTLY,
                "https://a.example/.well-known/acme-challenge/..%2fx"
            )
        );
        // POST to a valid token is not a challenge fetch.
        let post = Request::post(&path)
            .header(HOST, "a.example")
            .body(())
            .unwrap();
        let (s, _, _) = call(&mut r, post).await;
        assert_eq!(s, StatusCode::PERMANENT_REDIRECT);
    }

    #[tokio::test]
    async fn redirects_to_https_same_host_and_path() {
        let (_d, mut r) = responder(ChallengeConfig::default()).await;
        let (s, loc, _) = call(&mut r, get("/a/b?c=d", Some("Example.com:80"))).await;
        assert_eq!(
            (s, loc.as_str()),
            (StatusCode::MOVED_PERMANENTLY, "https://Example.com/a/b?c=d")
        );
        let (s, loc, _) = call(&mut r, get("/", Some("[::1]:8080"))).await;
        assert_eq!(
            (s, loc.as_str()),
            (StatusCode::MOVED_PERMANENTLY, "https://[::1]/")
        );
        let (_d, mut r) = responder(ChallengeConfig {
            https_port: 8443,
            ..Default::default()
        })
        .await;
        let (_, loc, _) = call(&mut r, get("http://abs.example/x", None)).await;
        assert_eq!(loc, "https://abs.example:8443/x");
    }

    #[tokio::test]
    async fn invalid_host_is_400_not_a_panic() {
        let (_d, mut r) = responder(ChallengeConfig::default()).await;
        for host in [
            "",
            "a b",
            "user@evil.example",
            "[zz]",
            "a/b",
            "x:99999999",
            "\u{7f}",
        ] {
            let req = Request::get("/")
                .header(
                    HOST,
                    HeaderValue::from_bytes(host.as_bytes())
                        .unwrap_or(HeaderValue::from_static("a b")),
                )
                .body(())
                .unwrap();
            let (s, loc, _) = call(&mut r, req).await;
            assert_eq!(s, StatusCode::BAD_REQUEST, "host {host:?} gave {loc}");
        }
        let (s, _, _) = call(&mut r, get("/", None)).await;
        assert_eq!(s, StatusCode::BAD_REQUEST);
        let bad_utf8 = Request::get("/")
            .header(HOST, HeaderValue::from_bytes(b"\xffa.example").unwrap())
            .body(())
            .unwrap();
        assert_eq!(call(&mut r, bad_utf8).await.0, StatusCode::BAD_REQUEST);
    }

    #[tokio::test]
    async fn not_found_fallback() {
        let (_d, mut r) = responder(ChallengeConfig {
            fallback: Fallback::NotFound,
            ..Default::default()
        })
        .await;
        let (s, loc, _) = call(&mut r, get("/index.html", Some("a.example"))).await;
        assert_eq!((s, loc.as_str()), (StatusCode::NOT_FOUND, ""));
    }

    #[tokio::test]
    async fn malformed_stored_value_is_not_served() {
        let (d, mut r) = responder(ChallengeConfig::default()).await;
        let storage = DirStorage::new(d.path());
        storage
            .store(&keys::challenge("tok"), b"<script>")
            .await
            .unwrap();
        let (s, _, _) = call(
            &mut r,
            get(&format!("{CHALLENGE_PREFIX}tok"), Some("a.example")),
        )
        .await;
        assert_eq!(s, StatusCode::NOT_FOUND);
    }

    #[test]
    fn token_charset() {
        assert!(is_token(TOKEN));
        for bad in ["", "a.b", "a/b", "a%2f", "a=", &"a".repeat(300)] {
            assert!(!is_token(bad), "{bad}");
        }
    }
}
