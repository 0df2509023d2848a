//! `[[demo_backend]]`: a tiny built-in HTTP/1.1 backend so a fresh checkout
//! has something to proxy to. It answers every request with a short text
//! naming itself and echoing the request line and forwarding headers, serves
//! `/health`, and echoes WebSocket messages (RFC 6455) on Upgrade.
//! It is for trying edge out and for tests, not for production.

use std::net::SocketAddr;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::http::body::{EdgeBody, empty, full};

/// Serves the demo backend on `listener` forever.
pub async fn serve(listener: TcpListener, name: String) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let name = name.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let name = name.clone();
                async move { Ok::<_, std::convert::Infallible>(handle(&name, req).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(std::time::Duration::from_secs(30))
                .serve_connection(TokioIo::new(stream), svc)
                .with_upgrades()
                .await;
        });
    }
}

/// Starts every configured demo backend; returns their bound addresses.
pub async fn start_all(addrs: &[SocketAddr]) -> Result<Vec<SocketAddr>, String> {
    let mut out = Vec::new();
    for (i, a) in addrs.iter().enumerate() {
        let cannot = |e: std::io::Error| format!("cannot listen on {a} (demo backend): {e}");
        let l = crate::server::bind(*a).map_err(cannot)?;
        let bound = l.local_addr().map_err(cannot)?;
        tracing::info!(address = %bound, "demo backend listening");
        tokio::spawn(serve(l, format!("demo-{i}@{bound}")));
        out.push(bound);
    }
    Ok(out)
}

async fn handle(name: &str, mut req: Request<Incoming>) -> Response<EdgeBody> {
    if req.uri().path() == "/health" {
        return Response::new(full("ok\n"));
    }
    let is_ws = req
        .headers()
        .get(http::header::UPGRADE)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"));
    if is_ws {
        let Some(key) = req.headers().get("sec-websocket-key").cloned() else {
            let mut r = Response::new(full("missing Sec-WebSocket-Key\n"));
            *r.status_mut() = StatusCode::BAD_REQUEST;
            return r;
        };
        let on = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            if let Ok(up) = on.await {
                let _ = ws_echo(TokioIo::new(up)).await;
            }
        });
        let mut r = Response::new(empty());
        *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let h = r.headers_mut();
        h.insert(http::header::UPGRADE, HeaderValue::from_static("websocket"));
        h.insert(
            http::header::CONNECTION,
            HeaderValue::from_static("Upgrade"),
        );
        if let Ok(v) = HeaderValue::from_str(&ws_accept(key.as_bytes())) {
            h.insert("sec-websocket-accept", v);
        }
        return r;
    }
    let mut text = format!("hello from {name}\n{} {}\n", req.method(), req.uri());
    for h in [
        "host",
        "x-forwarded-for",
        "x-forwarded-proto",
        "x-forwarded-host",
        "forwarded",
        "x-request-id",
    ] {
        if let Some(v) = req.headers().get(h).and_then(|v| v.to_str().ok()) {
            text.push_str(&format!("{h}: {v}\n"));
        }
    }
    // Every value of the client certificate headers edge sets (a forged
    // one that got through would show as a second line).
    for (k, v) in req.headers() {
        if k.as_str().starts_with("x-client-cert-") {
            let v = String::from_utf8_lossy(v.as_bytes());
            text.push_str(&format!("{k}: {v}\n"));
        }
    }
    let body: Bytes = req
        .into_body()
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    if !body.is_empty() {
        text.push_str(&format!("body: {} bytes\n", body.len()));
    }
    let mut r = Response::new(full(text));
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    if let Ok(v) = HeaderValue::from_str(name) {
        r.headers_mut().insert("x-demo-backend", v);
    }
    r
}

/// Echoes WebSocket data frames back (unmasked, as a server sends them).
async fn ws_echo<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    mut s: S,
) -> std::io::Result<()> {
    loop {
        let mut h = [0u8; 2];
        s.read_exact(&mut h).await?;
        let opcode = h[0] & 0x0f;
        let masked = h[1] & 0x80 != 0;
        let mut len = u64::from(h[1] & 0x7f);
        if len == 126 {
            len = u64::from(s.read_u16().await?);
        } else if len == 127 {
            len = s.read_u64().await?;
        }
        if len > 1 << 20 {
            return Ok(());
        }
        let mut mask = [0u8; 4];
        if masked {
            s.read_exact(&mut mask).await?;
        }
        let mut payload = vec![0u8; usize::try_from(len).unwrap_or(0)];
        s.read_exact(&mut payload).await?;
        for (i, b) in payload.iter_mut().enumerate() {
            *b ^= mask[i % 4];
        }
        let reply_op = match opcode {
            0x8 => 0x8,
            0x9 => 0xA,
            0x0..=0x2 => opcode,
            _ => continue,
        };
        let mut frame = vec![0x80 | reply_op];
        match payload.len() {
            n if n < 126 => frame.push(n as u8),
            n if n <= 0xffff => {
                frame.push(126);
                frame.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                frame.push(127);
                frame.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        frame.extend_from_slice(&payload);
        s.write_all(&frame).await?;
        if opcode == 0x8 {
            return Ok(());
        }
    }
}

/// `Sec-WebSocket-Accept` for a key: base64(SHA-1(key ++ GUID)) (RFC 6455, 4.2.2).
pub fn ws_accept(key: &[u8]) -> String {
    use base64::Engine as _;
    use sha1::Digest as _;
    let digest = sha1::Sha1::new()
        .chain_update(key)
        .chain_update(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11")
        .finalize();
    base64::engine::general_purpose::STANDARD.encode(digest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn websocket_accept_matches_rfc6455_example() {
        assert_eq!(
            ws_accept(b"dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }
}
