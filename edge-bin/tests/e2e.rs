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
    std::fs::create_dir_all(dir.path("acme")).unwrap();
    dir.write("acme/tok-123_ABC", "tok-123_ABC.thumbprint");
    let config = format!(
        r#"
[https]
listen = ["127.0.0.1:{h}"]
default_certificate = "a"
[http]
listen = ["127.0.0.1:{p}"]
https_port = {h}
acme_challenge_dir = "acme"

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

    // WebSocket echo end to end (node's WebSocket client, the demo backend).
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
    assert_eq!(
        stdout.trim(),
        "got:ping-42",
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
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
