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
    let config = fixture("e2e_routes.toml")
        .set("https_port", h)
        .set("http_port", p)
        .set("a_cert", a.cert.display())
        .set("a_key", a.key.display())
        .set("b_cert", b.cert.display())
        .set("b_key", b.key.display())
        .set("demo_port", d)
        .render();
    let _edge = start_edge(&dir, "edge", &config);
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
    // Line numbers matter here: the errors name them.
    let good = fixture("check_good.toml")
        .path("cert", &one.cert)
        .path("key", &one.key)
        .render();
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
    let out = std::process::Command::new(EDGE)
        .arg("--version")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("edge "));
    let out = std::process::Command::new(EDGE)
        .arg("bogus")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let _ = Duration::ZERO;
}
