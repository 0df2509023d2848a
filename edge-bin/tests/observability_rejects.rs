//! Access records of what edge refuses or relays without its service:
//! requests hyper rejects (400, 414, 431, 408), silent connections (not
//! logged), and WebSocket tunnels (bytes, duration, idle timeout).

mod common;

use std::time::Duration;

use common::syslog::*;
use common::*;

/// How long a test waits for records and metrics.
const LIMIT: Duration = Duration::from_secs(20);

/// The certificate every test here serves: a.test (pt.test also in the
/// leaf, for passthrough).
fn cert_config(dir: &TempDir, pki: &Pki) -> String {
    let a = pki.leaf(dir, "a", &["a.test", "pt.test"]);
    certificate("a", &["a.test"], &a)
}

/// Writes `bytes` to a fresh connection (plain or TLS) and returns what
/// came back before edge closed it (write errors ignored: edge may close
/// before it read everything).
async fn exchange<S>(mut s: S, bytes: Vec<u8>, close_write: bool) -> String
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let _ = s.write_all(&bytes).await;
    let _ = s.flush().await;
    if close_write {
        let _ = s.shutdown().await;
    }
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// Requests hyper refuses before edge's service sees them are logged as
/// HAProxy and nginx log them (400, 414, 431, 408), with the connection's
/// client and TLS details; connections that send nothing, and idle
/// keep-alive connections that time out, are not (`dontlognull`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_requests_are_logged_silent_connections_are_not() {
    let dir = TempDir::new("obs-badreq");
    let pki = Pki::new(&dir, "obs");
    let (h, p) = (free_port(), free_port());
    let log = dir.path("access.log");
    let config = fixture("obs_rejected.toml")
        .set("https_port", h)
        .set("http_port", p)
        .set("certs", cert_config(&dir, &pki))
        .render();
    let _edge = start_edge(&dir, "edge", &config);
    let cfg = pki.client_config(&[b"http/1.1"]);
    let plain = || tokio::net::TcpStream::connect(("127.0.0.1", p));

    // Nothing to log: connect and close (both ports), a TLS handshake and
    // close, connections that stay silent until the idle timeout closes
    // them, and a keep-alive connection left idle after a request until
    // the header read timeout closes it.
    drop(plain().await.unwrap());
    drop(
        tokio::net::TcpStream::connect(("127.0.0.1", h))
            .await
            .unwrap(),
    );
    drop(tls(cfg.clone(), h, Some("a.test")).await.unwrap());
    let mut silent_tls = tls(cfg.clone(), h, Some("a.test")).await.unwrap();
    let mut silent_plain = plain().await.unwrap();
    let silent = tokio::spawn(async move {
        closed_within(&mut silent_tls, Duration::from_secs(15)).await
            && closed_within(&mut silent_plain, Duration::from_secs(15)).await
    });
    {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = plain().await.unwrap();
        s.write_all(b"GET /kept HTTP/1.1\r\nHost: a.test\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 1024];
        let n = s.read(&mut buf).await.unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 301"), "{:?}", &buf[..n]);
        assert!(closed_within(&mut s, Duration::from_secs(10)).await);
    }

    // 1. A header section over max_header_bytes over TLS: 431.
    let big = format!(
        "GET /big HTTP/1.1\r\nHost: a.test\r\nX-Big: {}\r\n\r\n",
        "b".repeat(140_000)
    );
    let s = tls(cfg.clone(), h, Some("a.test")).await.unwrap();
    let got = exchange(s, big.into_bytes(), false).await;
    assert!(got.is_empty() || got.starts_with("HTTP/1.1 431"), "{got}");
    // 2. A malformed request line over TLS (garbage after the handshake): 400.
    let s = tls(cfg.clone(), h, Some("a.test")).await.unwrap();
    let bad_method = b"GE\x01T / HTTP/1.1\r\nHost: a.test\r\n\r\n";
    let got = exchange(s, bad_method.to_vec(), false).await;
    assert!(got.starts_with("HTTP/1.1 400"), "{got}");
    // 3. A URI longer than hyper's 65534 bytes, with curl: 414.
    let (code, out) = curl(&[
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        &format!("http://127.0.0.1:{p}/{}", "u".repeat(70_000)),
    ]);
    assert_eq!((code, out.as_str()), (0, "414"));
    // 4. Keep-alive: a good request, then a bad header on the same
    // connection: the record counts the bad request's bytes only.
    let bad = b"GET /second HTTP/1.1\r\nHost: a.test\r\nBad Header\r\n\r\n";
    {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = plain().await.unwrap();
        s.write_all(b"GET /first HTTP/1.1\r\nHost: a.test\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 1024];
        let n = s.read(&mut buf).await.unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 301"));
        let got = exchange(s, bad.to_vec(), false).await;
        assert!(got.starts_with("HTTP/1.1 400"), "{got}");
    }
    // 5. A head cut off: the client closes in the middle.
    let cut = b"GET /cut HTTP/1.1\r\nHo";
    let got = exchange(plain().await.unwrap(), cut.to_vec(), true).await;
    assert_eq!(got, "");
    // 6. A head that never ends: the header read timeout (1 s), 408.
    let slow = b"GET /slow HTTP/1.1\r\nHost: a";
    let got = exchange(plain().await.unwrap(), slow.to_vec(), false).await;
    assert_eq!(got, "");
    // 7. HTTP/2 (ALPN h2): a DATA frame on stream 0 is a connection error
    // (RFC 9113 §6.1); edge answers GOAWAY and closes.
    let s = tls(pki.client_config(&[b"h2"]), h, Some("a.test"))
        .await
        .unwrap();
    let h2 = [
        &b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"[..],
        &[0, 0, 0, 4, 0, 0, 0, 0, 0],
        &[0, 0, 1, 0, 0, 0, 0, 0, 0, b'x'],
    ]
    .concat();
    exchange(s, h2.clone(), false).await;
    assert!(
        silent.await.unwrap(),
        "the idle timeout closes silent connections"
    );
    // A marker: every record before it has been written.
    let r = https_get(cfg.clone(), h, "a.test", "/marker")
        .await
        .unwrap();
    assert_eq!(r.status, 200);

    let recs = wait_for("the marker record", LIMIT, || {
        let l = json_lines(&log);
        l.iter().any(|v| v["path"] == "/marker").then_some(l)
    });
    // Two requests answered 301, the seven rejected ones, the marker;
    // nothing for the silent or idle connections.
    let mut summary: Vec<(u64, String)> = recs
        .iter()
        .map(|v| {
            (
                v["status"].as_u64().unwrap(),
                // Up to the detail (HTTP/2's reason).
                v["error"]
                    .as_str()
                    .unwrap_or("-")
                    .split(':')
                    .next()
                    .unwrap()
                    .to_string(),
            )
        })
        .collect();
    summary.sort();
    let want: Vec<(u64, String)> = [
        (200, "-"),
        (301, "-"),
        (301, "-"),
        (400, "HTTP/2 protocol error"),
        (400, "client closed mid-request"),
        (400, "invalid method"),
        (400, "malformed request"),
        (408, "header read timeout"),
        (414, "URI too long"),
        (431, "header too large"),
    ]
    .iter()
    .map(|(s, e)| (*s, e.to_string()))
    .collect();
    assert_eq!(summary, want, "{recs:#?}");
    let find = |error: &str, tls: bool| {
        recs.iter()
            .find(|v| v["error"] == error && v["sni"].is_string() == tls)
            .unwrap()
            .clone()
    };
    let by = |error: &str| find(error, false);
    let (large, method) = (find("header too large", true), find("invalid method", true));
    for v in [&large, &method] {
        assert_eq!(v["kind"], "http");
        assert_eq!(v["sni"], "a.test");
        assert_eq!(v["tls_version"], "TLSv1.3");
        assert!(v["ja4"].as_str().unwrap().starts_with("t13d"), "{v}");
        assert!(v["method"].is_null() && v["path"].is_null(), "{v}");
        assert!(v["client"].as_str().unwrap().starts_with("127.0.0.1:"));
    }
    assert!(large["bytes_in"].as_u64().unwrap() >= 131_072, "{large}");
    assert!(large["bytes_out"].as_u64().unwrap() > 0, "the 431 was sent");
    // hyper gives up at the first bad byte it reads: it may not read all.
    let n = method["bytes_in"].as_u64().unwrap();
    assert!(n > 0 && n <= bad_method.len() as u64, "{method}");
    let long = by("URI too long");
    assert!(long["bytes_in"].as_u64().unwrap() > 70_000, "{long}");
    assert!(long["sni"].is_null() && long["tls_version"].is_null());
    assert_eq!(by("malformed request")["bytes_in"], bad.len());
    assert_eq!(by("client closed mid-request")["bytes_in"], cut.len());
    let h2_rec = recs
        .iter()
        .find(|v| v["error"].as_str().unwrap_or("").starts_with("HTTP/2"))
        .unwrap();
    assert!(
        h2_rec["error"]
            .as_str()
            .unwrap()
            .starts_with("HTTP/2 protocol error: connection error detected"),
        "{h2_rec}"
    );
    assert_eq!(
        (&h2_rec["sni"], &h2_rec["bytes_in"]),
        (&"a.test".into(), &h2.len().into())
    );
    let slow_rec = by("header read timeout");
    assert_eq!(slow_rec["bytes_in"], slow.len());
    assert_eq!(slow_rec["bytes_out"], 0);
    let waited = slow_rec["duration_ms"].as_f64().unwrap();
    assert!((900.0..5000.0).contains(&waited), "{waited}");
}

/// A WebSocket through edge with Node.js's client: the `101` record is
/// written when the tunnel closes, with the bytes relayed each way and
/// the tunnel's duration.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_tunnel_bytes_are_logged() {
    let dir = TempDir::new("obs-ws");
    let pki = Pki::new(&dir, "obs");
    let (h, d) = (free_port(), free_port());
    let log = dir.path("access.log");
    let config = ws_config(h, d, &cert_config(&dir, &pki), "");
    let _edge = start_edge(&dir, "edge", &config);
    // Three 1000-byte messages echoed, then a close; the client stays a
    // moment so the tunnel lasts at least 300 ms.
    let script = format!(
        "const ws = new WebSocket('wss://127.0.0.1:{h}/ws/echo');
         let n = 0;
         ws.onopen = () => ws.send('x'.repeat(1000));
         ws.onmessage = (e) => {{
           n += 1;
           if (n < 3) {{ ws.send('x'.repeat(1000)); return; }}
           setTimeout(() => ws.close(1000), 300);
         }};
         ws.onclose = () => {{ console.log('echoed:' + n); process.exit(0); }};
         ws.onerror = (e) => {{ console.log('error:' + e.message); process.exit(1); }};
         setTimeout(() => {{ console.log('timeout'); process.exit(2); }}, 8000);"
    );
    let out = node_websocket(&script).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        stdout.trim(),
        "echoed:3",
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = wait_for("the tunnel's record", LIMIT, || {
        json_lines(&log).into_iter().next()
    });
    assert_eq!(v["status"], 101, "{v}");
    assert_eq!(v["path"], "/ws/echo");
    assert_eq!(v["route"], "ws");
    // Client frames are masked: 1000 + 8 bytes each, plus the close frame.
    let up = v["bytes_in"].as_u64().unwrap();
    let down = v["bytes_out"].as_u64().unwrap();
    assert!((3 * 1008..3 * 1008 + 100).contains(&up), "{v}");
    assert!((3 * 1004..3 * 1004 + 100).contains(&down), "{v}");
    let tunnel = v["tunnel_ms"].as_f64().unwrap();
    assert!(tunnel >= 300.0, "{v}");
    assert!(v["duration_ms"].as_f64().unwrap() >= tunnel, "{v}");
    assert!(v["error"].is_null(), "{v}");
}

/// A WebSocket tunnel with no byte either way for `tunnel_idle_timeout` is
/// closed by edge (HAProxy's `timeout tunnel`), and its record says why.
#[tokio::test]
async fn idle_websocket_tunnel_is_closed_and_logged() {
    let dir = TempDir::new("obs-ws-idle");
    let pki = Pki::new(&dir, "obs");
    let (h, d) = (free_port(), free_port());
    let log = dir.path("access.log");
    let config = ws_config(
        h,
        d,
        &cert_config(&dir, &pki),
        "[limits]\ntunnel_idle_timeout = \"1s\"\n",
    );
    let _edge = start_edge(&dir, "edge", &config);
    // One echo, then silence: the client never closes; edge must.
    let script = format!(
        "const ws = new WebSocket('wss://127.0.0.1:{h}/ws/echo');
         let quiet;
         ws.onopen = () => ws.send('hello');
         ws.onmessage = () => {{ quiet = Date.now(); }};
         ws.onclose = () => {{ console.log('closed-after:' + (Date.now() - quiet)); process.exit(0); }};
         ws.onerror = () => {{}};
         setTimeout(() => {{ console.log('not closed'); process.exit(2); }}, 8000);"
    );
    let out = node_websocket(&script).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let ms: u64 = stdout
        .trim()
        .strip_prefix("closed-after:")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            panic!(
                "the idle tunnel was not closed: {stdout} {}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    assert!(
        (900..4000).contains(&ms),
        "closed {ms} ms after the last byte (timeout 1 s)"
    );
    let v = wait_for("the tunnel's record", LIMIT, || {
        json_lines(&log).into_iter().next()
    });
    assert_eq!(v["status"], 101, "{v}");
    assert_eq!(v["error"], "tunnel idle timeout", "{v}");
    assert!(v["tunnel_ms"].as_f64().unwrap() >= 900.0, "{v}");
}

/// edge with a file access log, the demo backend and one WebSocket route;
/// `extra` is more config (e.g. a `[limits]` table).
fn ws_config(h: u16, d: u16, certs: &str, extra: &str) -> String {
    fixture("obs_websocket.toml")
        .set("https_port", h)
        .set("extra", extra)
        .set("certs", certs)
        .set("demo_port", d)
        .render()
}

/// Runs `script` in Node.js 20+ with its built-in WebSocket client,
/// trusting any certificate.
async fn node_websocket(script: &str) -> std::process::Output {
    tokio::process::Command::new("node")
        .args(["--no-warnings", "--experimental-websocket", "-e", script])
        .env("NODE_TLS_REJECT_UNAUTHORIZED", "0")
        .output()
        .await
        .expect("node (Node.js 20+) must be installed")
}
