//! TLS and HTTP/1.1 clients for tokio tests against 127.0.0.1.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

/// TLS to 127.0.0.1:`port` with `sni` (`None` sends no SNI); 5 s at most.
pub async fn tls(
    cfg: Arc<rustls::ClientConfig>,
    port: u16,
    sni: Option<&str>,
) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(("127.0.0.1", port)).await?;
    let name = match sni {
        Some(s) => ServerName::try_from(s.to_string()).unwrap(),
        None => ServerName::IpAddress(std::net::Ipv4Addr::LOCALHOST.into()),
    };
    let connector = tokio_rustls::TlsConnector::from(cfg);
    tokio::time::timeout(Duration::from_secs(5), connector.connect(name, tcp))
        .await
        .map_err(|_| std::io::Error::other("TLS handshake timed out"))?
}

/// A response as the tests look at it.
#[derive(Debug)]
pub struct Resp {
    /// The status code.
    pub status: u16,
    /// The headers.
    pub headers: http::HeaderMap,
    /// The body, lossily as text.
    pub body: String,
}

/// Sends one HTTP/1.1 request on an established stream (10 s at most).
pub async fn send<S>(
    io: S,
    method: &str,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<Resp, String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let mut b = http::Request::builder()
        .method(method)
        .uri(path)
        .header("host", host);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let req = b.body(Empty::<Bytes>::new()).unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(10), sender.send_request(req))
        .await
        .map_err(|_| "timeout".to_string())?
        .map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok(Resp {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

/// HTTPS GET over a fresh connection.
pub async fn https_get(
    cfg: Arc<rustls::ClientConfig>,
    port: u16,
    sni: &str,
    path: &str,
) -> Result<Resp, String> {
    let s = tls(cfg, port, Some(sni)).await.map_err(|e| e.to_string())?;
    send(s, "GET", sni, path, &[]).await
}

/// Reads until EOF/error or `timeout`; true when the peer closed in time.
pub async fn closed_within<S: tokio::io::AsyncRead + Unpin>(s: &mut S, timeout: Duration) -> bool {
    use tokio::io::AsyncReadExt;
    let mut buf = [0u8; 4096];
    let end = tokio::time::Instant::now() + timeout;
    loop {
        match tokio::time::timeout_at(end, s.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
        }
    }
}

/// What [`raw_exchange`] got back.
#[derive(Debug)]
pub struct RawAnswer {
    /// The bytes the peer sent until it closed (or `wait` ran out), as text.
    pub text: String,
    /// How long after the request was written.
    pub took: Duration,
}

/// Writes `raw` on a fresh TLS connection to 127.0.0.1:`port` with `sni`,
/// half-closes when `close`, and reads the answer for up to `wait`.
pub async fn raw_exchange(
    cfg: Arc<rustls::ClientConfig>,
    port: u16,
    sni: &str,
    raw: &[u8],
    close: bool,
    wait: Duration,
) -> Result<RawAnswer, String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tls(cfg, port, Some(sni))
        .await
        .map_err(|e| format!("TLS: {e}"))?;
    s.write_all(raw).await.map_err(|e| format!("write: {e}"))?;
    let sent = tokio::time::Instant::now();
    if close {
        let _ = s.shutdown().await;
    }
    let mut out = Vec::new();
    let _ = tokio::time::timeout(wait, s.read_to_end(&mut out)).await;
    Ok(RawAnswer {
        text: String::from_utf8_lossy(&out).into_owned(),
        took: sent.elapsed(),
    })
}
