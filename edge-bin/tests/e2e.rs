//! End-to-end tests: the `edge` binary as a process, real clients (curl,
//! rustls, node's WebSocket, openssl s_server as a passthrough backend).

mod common;

use std::time::Duration;

use common::*;

/// Two names with their own certificates, HTTP/2 and HTTP/1.1, routing
/// rules, fixed responses, forwarding headers, redirects and ACME on the
/// plain port, WebSocket through the proxy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminate_route_redirect_and_websocket() {
    let dir = TempDir::new("route");
    let pki = Pki::new(&dir, "front");
    let a = pki.leaf(&dir, "a", &["a.test"]);
    let b = pki.leaf(&dir, "b", &["b.test", "*.wild.test"]);
    let (h, p, d) = (free_port(), free_port(), free_port());
    // A pending HTTP-01 token as edge-acme's directory storage keeps it.
    std::fs::create_dir_all(dir.path("acme/challenges")).unwrap();
    dir.write("acme/challenges/tok-123_ABC", "tok-123_ABC.thumbprint");
    let config = format!(
        r#"
[https]
listen = ["127.0.0.1:{h}"]
default_certificate = "a"
[http]
listen = ["127.0.0.1:{p}"]
https_port = {h}
[acme]
storage = "acme"

[[certificate]]
name = "a"
names = ["a.test"]
cert = "{ac}"
key = "{ak}"
[[certificate]]
name = "b"
names = ["b.test", "*.wild.test"]
cert = "{bc}"
key = "{bk}"

[[demo_backend]]
listen = "127.0.0.1:{d}"

[[route]]
path_prefix = "/ws"
pool = "app"
[[route]]
host = ["a.test"]
header = [{{ name = "x-canary", value = "1" }}]
respond = {{ status = 200, body = "canary" }}
[[route]]
host = ["a.test"]
path_prefix = "/old"
redirect = {{ location = "https://a.test/new", status = 301, keep_path = true }}
[[route]]
name = "api"
host = ["a.test"]
path_prefix = "/api"
pool = "app"
[[route]]
host = ["a.test"]
respond = {{ status = 200, body = "site a" }}
[[route]]
host = ["*.wild.test"]
respond = {{ status = 203, body = "wild", content_type = "text/x-wild" }}
[[route]]
host = ["b.test"]
respond = {{ status = 200, body = "site b" }}

[[pool]]
name = "app"
[[pool.server]]
address = "127.0.0.1:{d}"
"#,
        ac = a.cert.display(),
        ak = a.key.display(),
        bc = b.cert.display(),
        bk = b.key.display(),
    );
    let _edge = start_edge(&dir, "edge", &config, &[h, p, d]);
    let ca = pki.ca_pem.to_str().unwrap();
    let resolve = |n: &str| format!("{n}:{h}:127.0.0.1");

    // curl, verifying each name against the CA: HTTP/2 and HTTP/1.1.
    for (name, body) in [("a.test", "site a"), ("b.test", "site b")] {
        for (flag, version) in [("--http2", "2"), ("--http1.1", "1.1")] {
            let (code, out) = curl(&[
                "--cacert",
                ca,
                "--resolve",
                &resolve(name),
                flag,
                "-w",
                "\n%{http_version}",
                &format!("https://{name}:{h}/"),
            ]);
            assert_eq!(code, 0, "{out}");
            assert_eq!(out, format!("{body}\n{version}"), "{name} {flag}");
        }
    }

    // rustls: each name gets its own certificate.
    let cfg = pki.client_config(&[b"http/1.1"]);
    for (sni, der) in [
        ("a.test", &a.der),
        ("b.test", &b.der),
        ("x.wild.test", &b.der),
    ] {
        let s = tls(cfg.clone(), h, Some(sni)).await.unwrap();
        let peer = s.get_ref().1.peer_certificates().unwrap()[0].clone();
        assert_eq!(&peer, der, "certificate for {sni}");
    }
    let r = https_get(cfg.clone(), h, "x.wild.test", "/").await.unwrap();
    assert_eq!((r.status, r.body.as_str()), (203, "wild"));
    assert_eq!(r.headers["content-type"], "text/x-wild");
    // No SNI: the default certificate (openssl s_client sends no SNI here).
    let sans = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "openssl s_client -connect 127.0.0.1:{h} -noservername </dev/null 2>/dev/null | openssl x509 -noout -ext subjectAltName"
        ))
        .output()
        .unwrap();
    let sans = String::from_utf8_lossy(&sans.stdout);
    assert!(sans.contains("DNS:a.test"), "{sans}");

    // Routing: header match first, then path prefix, redirect.
    let s = tls(cfg.clone(), h, Some("a.test")).await.unwrap();
    let r = send(s, "GET", "a.test", "/", &[("x-canary", "1")])
        .await
        .unwrap();
    assert_eq!(r.body, "canary");
    let r = https_get(cfg.clone(), h, "a.test", "/old/page?q=1")
        .await
        .unwrap();
    assert_eq!(r.status, 301);
    assert_eq!(r.headers["location"], "https://a.test/new/old/page?q=1");
    assert!(r.headers.contains_key("x-request-id"));

    // Proxied to the backend with forwarding headers; hop-by-hop removed,
    // a forged X-Request-Id from an untrusted client replaced.
    let s = tls(cfg.clone(), h, Some("a.test")).await.unwrap();
    let r = send(
        s,
        "GET",
        "a.test",
        "/api/items?x=1",
        &[
            ("x-request-id", "forged"),
            ("x-forwarded-for", "6.6.6.6"),
            ("connection", "x-secret"),
            ("x-secret", "1"),
        ],
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200, "{r:?}");
    assert!(r.body.contains("GET /api/items?x=1"), "{}", r.body);
    assert!(r.body.contains("host: a.test\n"), "{}", r.body);
    assert!(
        r.body.contains("x-forwarded-for: 127.0.0.1\n"),
        "{}",
        r.body
    );
    assert!(r.body.contains("x-forwarded-proto: https\n"), "{}", r.body);
    assert!(r.body.contains("x-forwarded-host: a.test\n"), "{}", r.body);
    assert!(
        r.body
            .contains("forwarded: for=127.0.0.1;host=\"a.test\";proto=https\n"),
        "{}",
        r.body
    );
    assert!(!r.body.contains("forged"), "{}", r.body);
    let id = r.headers["x-request-id"].to_str().unwrap().to_string();
    assert!(
        r.body.contains(&format!("x-request-id: {id}\n")),
        "{}",
        r.body
    );

    // Host must match SNI; unknown host has no route.
    let s = tls(cfg.clone(), h, Some("a.test")).await.unwrap();
    let r = send(s, "GET", "b.test", "/", &[]).await.unwrap();
    assert_eq!(r.status, 421);
    assert!(r.body.contains("request id: "), "{}", r.body);

    // Port 80: redirect to https with the https port, 308 for POST, ACME tokens.
    let (code, out) = curl(&[
        "-i",
        &format!("http://127.0.0.1:{p}/some/path?q=2"),
        "-H",
        "Host: a.test",
    ]);
    assert_eq!(code, 0);
    assert!(out.starts_with("HTTP/1.1 301"), "{out}");
    assert!(
        out.to_ascii_lowercase()
            .contains(&format!("location: https://a.test:{h}/some/path?q=2")),
        "{out}"
    );
    assert!(out.contains("x-request-id: "), "{out}");
    let (_, out) = curl(&[
        "-i",
        "-X",
        "POST",
        &format!("http://127.0.0.1:{p}/form"),
        "-H",
        "Host: a.test",
    ]);
    assert!(out.starts_with("HTTP/1.1 308"), "{out}");
    let (_, out) = curl(&[&format!(
        "http://127.0.0.1:{p}/.well-known/acme-challenge/tok-123_ABC"
    )]);
    assert_eq!(out, "tok-123_ABC.thumbprint");
    let (_, out) = curl(&[
        "-i",
        &format!("http://127.0.0.1:{p}/.well-known/acme-challenge/missing"),
    ]);
    assert!(out.starts_with("HTTP/1.1 404"), "{out}");
    // Redirect followed end to end by curl.
    let (code, out) = curl(&[
        "-L",
        "--cacert",
        ca,
        "--resolve",
        &resolve("b.test"),
        "--resolve",
        &format!("b.test:{p}:127.0.0.1"),
        &format!("http://b.test:{p}/"),
    ]);
    assert_eq!((code, out.as_str()), (0, "site b"));

    // WebSocket echo end to end: a hand-written RFC 6455 client over rustls.
    {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tls(cfg.clone(), h, Some("a.test")).await.unwrap();
        let key = "dGhlIHNhbXBsZSBub25jZQ==";
        let req = format!(
            "GET /ws/echo HTTP/1.1\r\nHost: a.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
             Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {key}\r\n\r\n"
        );
        s.write_all(req.as_bytes()).await.unwrap();
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            let mut b = [0u8; 1];
            tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut b))
                .await
                .unwrap()
                .unwrap();
            head.push(b[0]);
        }
        let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
        assert!(head.starts_with("http/1.1 101"), "{head}");
        let accept = edge_bin::demo::ws_accept(key.as_bytes()).to_ascii_lowercase();
        assert!(
            head.contains(&format!("sec-websocket-accept: {accept}")),
            "{head}"
        );
        let payload = b"hello over edge";
        let mask = [1u8, 2, 3, 4];
        let mut frame = vec![0x81, 0x80 | payload.len() as u8];
        frame.extend_from_slice(&mask);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        s.write_all(&frame).await.unwrap();
        let mut hdr = [0u8; 2];
        tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut hdr))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(hdr, [0x81, payload.len() as u8], "unmasked text frame back");
        let mut back = vec![0u8; payload.len()];
        s.read_exact(&mut back).await.unwrap();
        assert_eq!(&back[..], &payload[..]);
    }

    // The same with node's WebSocket client, where node has one (20.10+).
    let script = format!(
        "const ws = new WebSocket('wss://127.0.0.1:{h}/ws/echo');
         ws.onopen = () => ws.send('ping-42');
         ws.onmessage = (e) => {{ console.log('got:' + e.data); ws.close(); process.exit(0); }};
         ws.onerror = (e) => {{ console.log('error:' + e.message); process.exit(1); }};
         setTimeout(() => {{ console.log('timeout'); process.exit(2); }}, 8000);"
    );
    let out = tokio::process::Command::new("node")
        .args(["--no-warnings", "--experimental-websocket", "-e", &script])
        .env("NODE_TLS_REJECT_UNAUTHORIZED", "0")
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Node.js 20+ (the machine's) has `--experimental-websocket`.
    assert_eq!(stdout.trim(), "got:ping-42", "{stdout} {stderr}");
}

/// `edge check` names the problem in broken configs and accepts a good one.
#[test]
fn check_names_problems() {
    let dir = TempDir::new("check");
    let pki = Pki::new(&dir, "check");
    let one = pki.leaf(&dir, "one", &["one.test"]);
    let two = pki.leaf(&dir, "two", &["two.test"]);
    let good = format!(
        r#"[https]
listen = ["127.0.0.1:18443"]
[http]
listen = ["127.0.0.1:18080"]
[[certificate]]
name = "one"
names = ["one.test"]
cert = "{}"
key = "{}"
[[route]]
pool = "app"
[[pool]]
name = "app"
[[pool.server]]
address = "127.0.0.1:9000"
"#,
        one.cert.display(),
        one.key.display()
    );
    let path = dir.write("good.toml", &good);
    let (code, out) = edge_check(&path);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("test is successful"), "{out}");
    let quickstart =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/quickstart.toml");
    assert_eq!(edge_check(&quickstart).0, 0);

    let cases: Vec<(&str, String, Vec<&str>)> = vec![
        (
            "syntax",
            good.replace("[[pool]]", "[[pool]"),
            vec!["syntax.toml:12:"],
        ),
        (
            "unknown",
            good.replace("name = \"app\"", "name = \"app\"\nretires = 3"),
            vec!["syntax.toml", "retires", "unknown field"],
        ),
        (
            "missing-pool",
            good.replace("pool = \"app\"", "pool = \"ap\""),
            vec![":11:", "route[0].pool", "no [[pool]] named \"ap\""],
        ),
        (
            "bad-cert-path",
            good.replace(one.cert.to_str().unwrap(), "/nonexistent/cert.pem"),
            vec![":8:", "certificate[0].cert", "/nonexistent/cert.pem"],
        ),
        (
            "mismatched-key",
            good.replace(one.key.to_str().unwrap(), two.key.to_str().unwrap()),
            vec![":9:", "certificate[0].key", "does not match"],
        ),
        (
            "bad-address",
            good.replace("127.0.0.1:9000", "127.0.0.1:99999"),
            vec!["pool[0].server[0].address", "invalid address"],
        ),
    ];
    for (name, text, needles) in cases {
        let path = dir.write("syntax.toml", &text);
        let (code, out) = edge_check(&path);
        assert_eq!(code, 1, "{name}: {out}");
        for n in needles {
            let n = n.replace("syntax.toml", &path.display().to_string());
            assert!(out.contains(&n), "{name}: expected {n:?} in:\n{out}");
        }
        assert!(out.contains("test failed"), "{name}: {out}");
    }
    let (code, _) = edge_check(&dir.path("absent.toml"));
    assert_eq!(code, 1);
    let out = std::process::Command::new(edge_bin())
        .arg("--version")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("edge "));
    let out = std::process::Command::new(edge_bin())
        .arg("bogus")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let _ = Duration::ZERO;
}

/// SNI passthrough on the same port as termination: to an `openssl
/// s_server` (the client sees the backend's certificate), and with a PROXY
/// v2 header to a backend that checks the client address and the SNI.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passthrough_by_sni_with_proxy_v2() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let dir = TempDir::new("pass");
    let front = Pki::new(&dir, "front");
    let back = Pki::new(&dir, "back");
    let term = front.leaf(&dir, "term", &["term.test"]);
    let pass = back.leaf(&dir, "pass", &["pass.test"]);
    let (h, s_port) = (free_port(), free_port());
    let pp_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let pp_port = pp_listener.local_addr().unwrap().port();

    let _s_server = Proc {
        child: std::process::Command::new("openssl")
            .args([
                "s_server",
                "-quiet",
                "-www",
                "-accept",
                &s_port.to_string(),
                "-cert",
            ])
            .arg(&pass.cert)
            .arg("-key")
            .arg(&pass.key)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
        name: "s_server".into(),
    };
    assert!(
        wait_port(s_port, Duration::from_secs(10)),
        "openssl s_server did not start"
    );

    let config = format!(
        r#"
[https]
listen = ["127.0.0.1:{h}"]
[http]
listen = []
[[certificate]]
name = "term"
names = ["term.test"]
cert = "{tc}"
key = "{tk}"
[[passthrough]]
sni = ["pass.test"]
pool = "ossl"
[[passthrough]]
sni = ["*.pp.test"]
pool = "pp"
proxy_protocol = "v2"
[[route]]
respond = {{ status = 200, body = "terminated" }}
[[pool]]
name = "ossl"
[[pool.server]]
address = "127.0.0.1:{s_port}"
[[pool]]
name = "pp"
[[pool.server]]
address = "127.0.0.1:{pp_port}"
"#,
        tc = term.cert.display(),
        tk = term.key.display(),
    );
    let _edge = start_edge(&dir, "edge", &config, &[h]);

    // Passthrough: verified against the backend's CA, which edge never saw.
    let s = tls(back.client_config(&[b"http/1.1"]), h, Some("pass.test"))
        .await
        .unwrap();
    assert_eq!(s.get_ref().1.peer_certificates().unwrap()[0], pass.der);
    drop(s);
    let (code, out) = curl(&[
        "--cacert",
        back.ca_pem.to_str().unwrap(),
        "--resolve",
        &format!("pass.test:{h}:127.0.0.1"),
        &format!("https://pass.test:{h}/"),
    ]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("s_server"),
        "expected openssl's -www page, got:\n{out}"
    );

    // Same port, another name: terminated by edge with its own certificate.
    let r = https_get(front.client_config(&[b"http/1.1"]), h, "term.test", "/")
        .await
        .unwrap();
    assert_eq!(r.body, "terminated");

    // PROXY v2: the backend learns the client address and the SNI.
    let client = tokio::spawn({
        let cfg = back.client_config(&[]);
        async move {
            let tcp = tokio::net::TcpStream::connect(("127.0.0.1", h))
                .await
                .unwrap();
            let local = tcp.local_addr().unwrap();
            let name = rustls_pki_types::ServerName::try_from("x.pp.test").unwrap();
            // The backend never answers TLS; the handshake just starts.
            let _ = tokio::time::timeout(
                Duration::from_secs(3),
                tokio_rustls::TlsConnector::from(cfg).connect(name, tcp),
            )
            .await;
            local
        }
    });
    // edge also TCP-checks the pool's server (the default health check):
    // those connections close without a byte, so skip them.
    let mut head = [0u8; 16];
    let mut conn = loop {
        let (mut conn, _) = tokio::time::timeout(Duration::from_secs(5), pp_listener.accept())
            .await
            .unwrap()
            .unwrap();
        if conn.read_exact(&mut head).await.is_ok() {
            break conn;
        }
    };
    assert_eq!(&head[..12], b"\r\n\r\n\0\r\nQUIT\n");
    assert_eq!(head[12], 0x21, "version 2, PROXY command");
    assert_eq!(head[13], 0x11, "TCP over IPv4");
    let len = u16::from_be_bytes([head[14], head[15]]) as usize;
    let mut rest = vec![0u8; len];
    conn.read_exact(&mut rest).await.unwrap();
    let src_ip = std::net::Ipv4Addr::new(rest[0], rest[1], rest[2], rest[3]);
    let src_port = u16::from_be_bytes([rest[8], rest[9]]);
    let dst_port = u16::from_be_bytes([rest[10], rest[11]]);
    assert_eq!(dst_port, h);
    let tlv = &rest[12..];
    assert_eq!(tlv[0], 0x02, "PP2_TYPE_AUTHORITY");
    let tlv_len = u16::from_be_bytes([tlv[1], tlv[2]]) as usize;
    assert_eq!(&tlv[3..3 + tlv_len], b"x.pp.test");
    // Then the untouched ClientHello.
    let mut first = [0u8; 1];
    conn.read_exact(&mut first).await.unwrap();
    assert_eq!(first[0], 0x16, "TLS handshake record follows the header");
    conn.shutdown().await.ok();
    drop(conn);
    let local = client.await.unwrap();
    assert_eq!(std::net::SocketAddr::from((src_ip, src_port)), local);
}

fn backend_config(port: u16) -> String {
    format!(
        "[https]\nlisten = []\n[http]\nlisten = []\n[[demo_backend]]\nlisten = \"127.0.0.1:{port}\"\n"
    )
}

/// Three backends behind one pool; one is killed during a load loop: no
/// GET fails (retries), traffic moves to the others, and the health checks
/// bring the server back once it is restarted.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn balancing_survives_a_killed_backend() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    use tokio::time::Instant;

    let dir = TempDir::new("balance");
    let pki = Pki::new(&dir, "front");
    let leaf = pki.leaf(&dir, "app", &["app.test"]);
    let ports = [free_port(), free_port(), free_port()];
    let mut backends: Vec<Proc> = ports
        .iter()
        .enumerate()
        .map(|(i, &p)| start_edge(&dir, &format!("backend{i}"), &backend_config(p), &[p]))
        .collect();
    let h = free_port();
    let servers: String = ports
        .iter()
        .map(|p| format!("[[pool.server]]\naddress = \"127.0.0.1:{p}\"\n"))
        .collect();
    let config = format!(
        r#"
[https]
listen = ["127.0.0.1:{h}"]
[http]
listen = []
[[certificate]]
name = "app"
names = ["app.test"]
cert = "{c}"
key = "{k}"
[[route]]
pool = "app"
[[pool]]
name = "app"
retries = 2
connect_timeout = "500ms"
{servers}
[pool.health]
path = "/health"
interval = "200ms"
timeout = "300ms"
rise = 2
fall = 2
[pool.outlier]
consecutive_failures = 3
ejection_time = "2s"
"#,
        c = leaf.cert.display(),
        k = leaf.key.display(),
    );
    let _edge = start_edge(&dir, "edge", &config, &[h]);

    // (when, backend port or None for a failure)
    type Log = Arc<Mutex<Vec<(Instant, Option<u16>)>>>;
    let log: Log = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let cfg = pki.client_config(&[b"http/1.1"]);
    let mut workers = Vec::new();
    for _ in 0..4 {
        let (log, stop, cfg) = (log.clone(), stop.clone(), cfg.clone());
        workers.push(tokio::spawn(async move {
            let mut sender: Option<
                hyper::client::conn::http1::SendRequest<http_body_util::Empty<bytes::Bytes>>,
            > = None;
            let mut n = 0u32;
            while !stop.load(Ordering::Relaxed) && n < 20_000 {
                n += 1;
                if sender.as_ref().is_none_or(|s| s.is_closed()) {
                    let Ok(s) = tls(cfg.clone(), h, Some("app.test")).await else {
                        log.lock().unwrap().push((Instant::now(), None));
                        continue;
                    };
                    let (snd, conn) =
                        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(s))
                            .await
                            .unwrap();
                    tokio::spawn(conn);
                    sender = Some(snd);
                }
                let Some(snd) = sender.as_mut() else { continue };
                let _ = snd.ready().await;
                let req = http::Request::get("/")
                    .header("host", "app.test")
                    .body(http_body_util::Empty::new())
                    .unwrap();
                let res = tokio::time::timeout(Duration::from_secs(5), snd.send_request(req)).await;
                let outcome = match res {
                    Ok(Ok(r)) if r.status() == 200 => {
                        let who = r
                            .headers()
                            .get("x-demo-backend")
                            .and_then(|v| v.to_str().ok())
                            .and_then(|v| v.rsplit(':').next())
                            .and_then(|p| p.parse().ok());
                        let _ = http_body_util::BodyExt::collect(r.into_body()).await;
                        who
                    }
                    _ => {
                        sender = None;
                        None
                    }
                };
                log.lock().unwrap().push((Instant::now(), outcome));
            }
        }));
    }
    let count = |from: Instant, to: Instant| -> (usize, [usize; 3]) {
        let log = log.lock().unwrap();
        let mut per = [0; 3];
        let mut failed = 0;
        for (t, who) in log.iter().filter(|(t, _)| *t >= from && *t < to) {
            let _ = t;
            match who.and_then(|p| ports.iter().position(|&x| x == p)) {
                Some(i) => per[i] += 1,
                None => failed += 1,
            }
        }
        (failed, per)
    };

    // Phases end on conditions (bounded), not on fixed sleeps, so a slow
    // machine only makes the test longer.
    let wait_until = |from: Instant, min: [usize; 3], limit: Duration| {
        let count = &count;
        async move {
            let end = Instant::now() + limit;
            while Instant::now() < end {
                let (_, per) = count(from, Instant::now());
                if per.iter().zip(min).all(|(n, m)| *n >= m) {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    let t0 = Instant::now();
    wait_until(t0, [5, 5, 5], Duration::from_secs(15)).await;
    let t_kill = Instant::now();
    backends[1].kill();
    tokio::time::sleep(Duration::from_millis(500)).await;
    wait_until(t_kill, [10, 0, 10], Duration::from_secs(15)).await;
    let t_restart = Instant::now();
    backends[1] = start_edge(
        &dir,
        "backend1-again",
        &backend_config(ports[1]),
        &[ports[1]],
    );
    // Health checks (200ms interval, rise 2) bring it back.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut back_at = None;
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if count(t_restart, Instant::now()).1[1] > 0 {
            back_at = Some(Instant::now());
            break;
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await.unwrap();
    }
    let end = Instant::now();

    let (f1, before) = count(t0, t_kill);
    let (f2, during) = count(t_kill + Duration::from_millis(50), t_restart);
    let (f3, _) = count(t_restart, end);
    let total = log.lock().unwrap().len();
    eprintln!(
        "requests: {total}; before kill {before:?}; while down {during:?}; back after {:?}",
        back_at.map(|b| b - t_restart)
    );
    assert_eq!(
        f1 + f2 + f3,
        0,
        "failed requests: before {f1}, while down {f2}, after restart {f3}"
    );
    assert!(
        before.iter().all(|&n| n > 0),
        "all three served before the kill: {before:?}"
    );
    assert_eq!(during[1], 0, "the killed server served nothing: {during:?}");
    assert!(
        during[0] > 0 && during[2] > 0,
        "traffic moved to the others: {during:?}"
    );
    assert!(
        back_at.is_some(),
        "the restarted server got traffic again within 10 s"
    );
}

/// Hostile and broken clients are answered or closed, and a well-behaved
/// client keeps being served all along.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_input_is_refused_while_others_are_served() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let dir = TempDir::new("bad");
    let pki = Pki::new(&dir, "front");
    let leaf = pki.leaf(&dir, "a", &["a.test"]);
    let h = free_port();
    let config = format!(
        r#"
# One worker: the current-thread runtime (as the benchmark runs it).
[runtime]
worker_threads = 1
[https]
listen = ["127.0.0.1:{h}"]
[http]
listen = []
[limits]
client_hello_timeout = "1s"
header_read_timeout = "1s"
[[certificate]]
name = "a"
names = ["a.test"]
cert = "{c}"
key = "{k}"
[[route]]
respond = {{ status = 200, body = "fine" }}
"#,
        c = leaf.cert.display(),
        k = leaf.key.display(),
    );
    let _edge = start_edge(&dir, "edge", &config, &[h]);
    let cfg = pki.client_config(&[b"http/1.1"]);

    // The well-behaved client: a new connection and a GET every 20 ms.
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let good = tokio::spawn({
        let (stop, ok, failed, cfg) = (stop.clone(), ok.clone(), failed.clone(), cfg.clone());
        async move {
            while !stop.load(Ordering::Relaxed) {
                match https_get(cfg.clone(), h, "a.test", "/").await {
                    Ok(r) if r.status == 200 && r.body == "fine" => {
                        ok.fetch_add(1, Ordering::Relaxed)
                    }
                    other => {
                        eprintln!("good client failed: {other:?}");
                        failed.fetch_add(1, Ordering::Relaxed)
                    }
                };
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    });

    let raw_tls = |alpn: &'static [u8]| {
        let cfg = pki.client_config(&[alpn]);
        async move { tls(cfg, h, Some("a.test")).await.unwrap() }
    };
    async fn exchange<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
        s: &mut S,
        req: &[u8],
    ) -> String {
        s.write_all(req).await.unwrap();
        let mut buf = vec![0u8; 512];
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
            .await
            .unwrap()
            .unwrap_or(0);
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    // Garbage on the TLS port, and plain HTTP: closed.
    let mut s = tokio::net::TcpStream::connect(addr(h)).await.unwrap();
    s.write_all(&[0x42u8; 2048]).await.unwrap();
    assert!(
        closed_within(&mut s, Duration::from_secs(3)).await,
        "garbage: not closed"
    );
    let mut s = tokio::net::TcpStream::connect(addr(h)).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n")
        .await
        .unwrap();
    assert!(
        closed_within(&mut s, Duration::from_secs(3)).await,
        "plain HTTP on 443: not closed"
    );

    // A ClientHello cut off mid-way: closed after client_hello_timeout.
    let mut hello = Vec::new();
    rustls::ClientConnection::new(cfg.clone(), "a.test".try_into().unwrap())
        .unwrap()
        .write_tls(&mut hello)
        .unwrap();
    let mut s = tokio::net::TcpStream::connect(addr(h)).await.unwrap();
    s.write_all(&hello[..hello.len() / 2]).await.unwrap();
    let t = std::time::Instant::now();
    assert!(
        closed_within(&mut s, Duration::from_secs(4)).await,
        "truncated hello: not closed"
    );
    assert!(
        t.elapsed() >= Duration::from_millis(800),
        "closed before the timeout: {:?}",
        t.elapsed()
    );

    // No SNI and no default certificate: the handshake fails with an alert.
    assert!(
        tls(cfg.clone(), h, None).await.is_err(),
        "handshake without SNI should fail"
    );

    // A client that completes the TLS handshake and then sends nothing is
    // closed after header_read_timeout (1 s here), not idle_timeout (60 s).
    let mut s = raw_tls(b"http/1.1").await;
    let t = std::time::Instant::now();
    assert!(
        closed_within(&mut s, Duration::from_secs(5)).await,
        "silent client after the handshake: not closed"
    );
    assert!(
        t.elapsed() >= Duration::from_millis(800),
        "silent client closed before the timeout: {:?}",
        t.elapsed()
    );

    // Slowloris: a header line every 200 ms never completes the head in time.
    let s = raw_tls(b"http/1.1").await;
    let (mut rd, mut wr) = tokio::io::split(s);
    let dribble = tokio::spawn(async move {
        if wr
            .write_all(b"GET / HTTP/1.1\r\nHost: a.test\r\n")
            .await
            .is_err()
        {
            return 0;
        }
        for i in 0..50 {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if wr
                .write_all(format!("X-Slow-{i}: 1\r\n").as_bytes())
                .await
                .is_err()
            {
                return i;
            }
        }
        50
    });
    assert!(
        closed_within(&mut rd, Duration::from_secs(5)).await,
        "slowloris: not closed"
    );
    dribble.abort();

    // 100 KB of headers: 431.
    let mut s = raw_tls(b"http/1.1").await;
    let big = format!(
        "GET / HTTP/1.1\r\nHost: a.test\r\nX-Big: {}\r\n\r\n",
        "a".repeat(100 * 1024)
    );
    let out = exchange(&mut s, big.as_bytes()).await;
    assert!(out.starts_with("HTTP/1.1 431"), "100 KB headers: {out:?}");

    // Too many headers: 431.
    let mut s = raw_tls(b"http/1.1").await;
    let many: String = (0..200).map(|i| format!("X-H{i}: v\r\n")).collect();
    let out = exchange(
        &mut s,
        format!("GET / HTTP/1.1\r\nHost: a.test\r\n{many}\r\n").as_bytes(),
    )
    .await;
    assert!(out.starts_with("HTTP/1.1 431"), "200 headers: {out:?}");

    // CL + TE smuggling: 400 and closed, also as a second request on a kept-alive connection.
    let mut s = raw_tls(b"http/1.1").await;
    let out = exchange(&mut s, b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n").await;
    assert!(out.starts_with("HTTP/1.1 200"), "{out:?}");
    let out = exchange(
        &mut s,
        b"POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    )
    .await;
    assert!(out.starts_with("HTTP/1.1 400"), "CL+TE: {out:?}");
    assert!(
        closed_within(&mut s, Duration::from_secs(3)).await,
        "CL+TE: connection not closed"
    );

    // Invalid and missing Host: 400; Host not matching SNI: 421.
    for (req, want) in [
        (
            &b"GET / HTTP/1.1\r\nHost: a.test/../x\r\n\r\n"[..],
            "HTTP/1.1 400",
        ),
        (b"GET / HTTP/1.1\r\n\r\n", "HTTP/1.1 400"),
        (
            b"GET / HTTP/1.1\r\nHost: a.test\r\nHost: b.test\r\n\r\n",
            "HTTP/1.1 400",
        ),
        (
            b"GET / HTTP/1.1\r\nHost: other.test\r\n\r\n",
            "HTTP/1.1 421",
        ),
    ] {
        let mut s = raw_tls(b"http/1.1").await;
        let out = exchange(&mut s, req).await;
        assert!(
            out.starts_with(want),
            "{}: {out:?}",
            String::from_utf8_lossy(req)
        );
    }

    // HTTP/2 rapid reset: HEADERS + RST_STREAM pairs until edge sends GOAWAY.
    let s = raw_tls(b"h2").await;
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    out.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 0, 0]); // SETTINGS
    for i in 0..2000u32 {
        let id = (1 + 2 * i).to_be_bytes();
        // :method GET, :scheme https, :path /, :authority a.test (literal, not indexed)
        let block = [&[0x82u8, 0x87, 0x84, 0x01, 6][..], b"a.test"].concat();
        out.extend_from_slice(&[0, 0, block.len() as u8, 1, 0x05]);
        out.extend_from_slice(&id);
        out.extend_from_slice(&block);
        out.extend_from_slice(&[0, 0, 4, 3, 0]);
        out.extend_from_slice(&id);
        out.extend_from_slice(&8u32.to_be_bytes()); // CANCEL
    }
    let (mut rd, mut wr) = tokio::io::split(s);
    let writer = tokio::spawn(async move {
        let _ = wr.write_all(&out).await;
        wr
    });
    let mut seen = Vec::new();
    let mut goaway = None;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut buf = [0u8; 16384];
    loop {
        match tokio::time::timeout_at(deadline, rd.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => seen.extend_from_slice(&buf[..n]),
        }
        // Walk the frames received so far.
        let mut at = 0;
        while seen.len() >= at + 9 {
            let len = (usize::from(seen[at]) << 16)
                | (usize::from(seen[at + 1]) << 8)
                | usize::from(seen[at + 2]);
            if seen.len() < at + 9 + len {
                break;
            }
            if seen[at + 3] == 7 && len >= 8 {
                let p = &seen[at + 9..at + 9 + len];
                goaway = Some(u32::from_be_bytes([p[4], p[5], p[6], p[7]]));
            }
            at += 9 + len;
        }
        if goaway.is_some() {
            break;
        }
    }
    let _ = writer.await;
    assert_eq!(
        goaway,
        Some(0xb),
        "expected GOAWAY ENHANCE_YOUR_CALM after the reset flood"
    );

    // The good client was served throughout.
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, Ordering::Relaxed);
    good.await.unwrap();
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    eprintln!("good client: {ok} ok, {failed} failed");
    assert_eq!(failed, 0);
    assert!(ok > 10, "good client served only {ok} times");
}
