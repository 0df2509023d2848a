//! End-to-end: balancing across edge demo backends while one is killed,
//! and bad input refused while other clients are served.

mod common;

use std::time::Duration;

use common::*;

fn backend_config(port: u16) -> String {
    fixture("demo_backend.toml").set("port", port).render()
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
    let mut backends: Vec<Edge> = ports
        .iter()
        .enumerate()
        .map(|(i, &p)| start_edge(&dir, &format!("backend{i}"), &backend_config(p)))
        .collect();
    let h = free_port();
    let servers: String = ports
        .iter()
        .map(|p| format!("[[pool.server]]\naddress = \"127.0.0.1:{p}\"\n"))
        .collect();
    let config = fixture("e2e_balancing.toml")
        .set("https_port", h)
        .set("cert", leaf.cert.display())
        .set("key", leaf.key.display())
        .set("servers", servers)
        .render();
    let _edge = start_edge(&dir, "edge", &config);

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
    backends[1].crash();
    tokio::time::sleep(Duration::from_millis(500)).await;
    wait_until(t_kill, [10, 0, 10], Duration::from_secs(15)).await;
    let t_restart = Instant::now();
    backends[1] = start_edge(&dir, "backend1-again", &backend_config(ports[1]));
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
    let config = fixture("e2e_bad_input.toml")
        .set("https_port", h)
        .set("cert", leaf.cert.display())
        .set("key", leaf.key.display())
        .render();
    // edge's own default log filter (no RUST_LOG), as in production.
    let _edge = Edge::builder(EDGE, dir.write("edge.toml", &config))
        .rust_log(None)
        .start();
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
    // An attack costs no log line per connection (the h2 library's
    // warnings are off by default; each connection is an access record
    // and counts in the metrics).
    let log = std::fs::read_to_string(dir.path("edge.log")).unwrap();
    assert!(!log.contains("reached limit"), "{log}");

    // The good client was served throughout.
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, Ordering::Relaxed);
    good.await.unwrap();
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    eprintln!("good client: {ok} ok, {failed} failed");
    assert_eq!(failed, 0);
    assert!(ok > 10, "good client served only {ok} times");
}
