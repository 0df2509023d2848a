//! The admin socket end to end: a real `edge` process on loopback, real
//! HTTP and TCP backends in this process (they record every request and
//! connection they get), and the `edge admin` CLI.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use common::*;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

/// Requests an HTTP backend received: (arrival, backend index, path).
type Log = Arc<Mutex<Vec<(Instant, usize, String)>>>;

/// An HTTP/1.1 backend: answers `x-backend: <index>`; `/slow/<ms>` waits
/// that long before answering.
async fn http_backend(index: usize, log: Log) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((s, _)) = l.accept().await else {
                continue;
            };
            let log = log.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: http::Request<Incoming>| {
                    let log = log.clone();
                    async move {
                        let path = req.uri().path().to_string();
                        log.lock()
                            .unwrap()
                            .push((Instant::now(), index, path.clone()));
                        if let Some(ms) = path.strip_prefix("/slow/") {
                            let ms = ms.parse().unwrap_or(0);
                            tokio::time::sleep(Duration::from_millis(ms)).await;
                        }
                        let mut r = http::Response::new(Full::new(Bytes::from(format!(
                            "backend {index}\n"
                        ))));
                        r.headers_mut()
                            .insert("x-backend", http::HeaderValue::from(index));
                        Ok::<_, std::convert::Infallible>(r)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    addr
}

/// A TCP backend for passthrough: reads the ClientHello, says `T<index>`,
/// then echoes. Counts the connections that carried data.
async fn tcp_backend(index: usize, conns: Arc<AtomicUsize>) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                continue;
            };
            let conns = conns.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 16 * 1024];
                // Health checks connect and close without data.
                let Ok(n) = s.read(&mut buf).await else {
                    return;
                };
                if n == 0 {
                    return;
                }
                conns.fetch_add(1, Ordering::Relaxed);
                if s.write_all(format!("T{index}\n").as_bytes()).await.is_err() {
                    return;
                }
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

/// Runs `edge admin -s SOCKET ARGS...`: (exit code, stdout, stderr).
async fn admin(socket: &std::path::Path, args: &str) -> (i32, String, String) {
    edge_admin(socket, args).await
}

/// `admin` that must succeed; returns stdout.
async fn admin_ok(socket: &std::path::Path, args: &str) -> String {
    let (code, out, err) = admin(socket, args).await;
    assert_eq!(code, 0, "edge admin {args}: {out}{err}");
    out
}

/// The line of `show servers` for `server`, split in columns.
fn server_row(show: &str, server: SocketAddr) -> Vec<String> {
    let s = server.to_string();
    show.lines()
        .map(|l| l.split_whitespace().map(str::to_string).collect::<Vec<_>>())
        .find(|cols| cols.get(1) == Some(&s))
        .unwrap_or_else(|| panic!("no row for {s} in:\n{show}"))
}

struct Setup {
    _dir: TempDir,
    _edge: Edge,
    socket: std::path::PathBuf,
    port: u16,
    cfg: Arc<rustls::ClientConfig>,
    http: Vec<SocketAddr>,
    log: Log,
    tcp: Vec<SocketAddr>,
    tcp_conns: Vec<Arc<AtomicUsize>>,
}

/// edge with pool `app` (HTTP, `n` backends, round robin) and pool `tcp`
/// (passthrough for `pt.test`, 2 backends).
async fn setup(tag: &str, n: usize, admin_extra: &str) -> Setup {
    let dir = TempDir::new(tag);
    let pki = Pki::new(&dir, "front");
    let leaf = pki.leaf(&dir, "app", &["app.test"]);
    let log: Log = Arc::default();
    let mut http = Vec::new();
    for i in 0..n {
        http.push(http_backend(i, log.clone()).await);
    }
    let tcp_conns: Vec<Arc<AtomicUsize>> = (0..2).map(|_| Arc::default()).collect();
    let mut tcp = Vec::new();
    for (i, c) in tcp_conns.iter().enumerate() {
        tcp.push(tcp_backend(i, c.clone()).await);
    }
    let servers = |v: &[SocketAddr]| -> String {
        v.iter()
            .map(|a| format!("[[pool.server]]\naddress = \"{a}\"\n"))
            .collect()
    };
    let port = free_port();
    let socket = dir.path("admin.sock");
    let config = fixture("admin.toml")
        .set("https_port", port)
        .set("admin_socket", socket.display())
        .set("admin_extra", admin_extra)
        .set("cert", leaf.cert.display())
        .set("key", leaf.key.display())
        .set("http_servers", servers(&http))
        .set("tcp_servers", servers(&tcp))
        .render();
    let edge = start_edge(&dir, "edge", &config);
    // The socket comes up right after the listeners (it needs the running state).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !socket.exists() && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(socket.exists(), "no admin socket at {}", socket.display());
    Setup {
        cfg: pki.client_config(&[b"http/1.1"]),
        _dir: dir,
        _edge: edge,
        socket,
        port,
        http,
        log,
        tcp,
        tcp_conns,
    }
}

type Sender = hyper::client::conn::http1::SendRequest<Empty<Bytes>>;

async fn connect(s: &Setup) -> Sender {
    let io = tls(s.cfg.clone(), s.port, Some("app.test")).await.unwrap();
    let (snd, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .unwrap();
    tokio::spawn(conn);
    snd
}

/// One GET on a keep-alive connection: the backend index, or None on failure.
async fn get(snd: &mut Sender, path: &str) -> Option<usize> {
    snd.ready().await.ok()?;
    let req = http::Request::get(path)
        .header("host", "app.test")
        .body(Empty::new())
        .unwrap();
    let r = tokio::time::timeout(Duration::from_secs(10), snd.send_request(req))
        .await
        .ok()?
        .ok()?;
    if r.status() != 200 {
        return None;
    }
    let who = r.headers().get("x-backend")?.to_str().ok()?.parse().ok();
    r.into_body().collect().await.ok()?;
    who
}

/// `n` sequential GETs: requests per backend, failures.
async fn distribution(s: &Setup, n: usize) -> (Vec<usize>, usize) {
    let mut snd = connect(s).await;
    let mut per = vec![0; s.http.len()];
    let mut failed = 0;
    for _ in 0..n {
        match get(&mut snd, "/").await {
            Some(i) => per[i] += 1,
            None => failed += 1,
        }
    }
    (per, failed)
}

/// A ClientHello for `sni`, as a TLS client's first bytes.
fn client_hello(sni: &str) -> Vec<u8> {
    let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(rustls::RootCertStore::empty())
    .with_no_client_auth();
    let name = rustls_pki_types::ServerName::try_from(sni.to_string()).unwrap();
    let mut c = rustls::ClientConnection::new(Arc::new(cfg), name).unwrap();
    let mut out = Vec::new();
    c.write_tls(&mut out).unwrap();
    out
}

/// A passthrough connection: which TCP backend answered, and the stream.
async fn passthrough(s: &Setup) -> (usize, BufReader<TcpStream>) {
    let mut c = TcpStream::connect(("127.0.0.1", s.port)).await.unwrap();
    c.write_all(&client_hello("pt.test")).await.unwrap();
    let mut r = BufReader::new(c);
    let mut line = String::new();
    tokio::time::timeout(Duration::from_secs(5), r.read_line(&mut line))
        .await
        .expect("passthrough backend answers")
        .unwrap();
    let i = line.trim().strip_prefix('T').and_then(|x| x.parse().ok());
    (
        i.unwrap_or_else(|| panic!("bad passthrough answer {line:?}")),
        r,
    )
}

/// show servers / info / pools, maint, enable, set weight (HTTP and
/// passthrough), errors for bad commands, the socket's mode.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn show_maint_enable_weight_and_errors() {
    let s = setup("admin-basic", 3, "").await;
    let sock = &s.socket;
    let [b0, b1, b2] = [s.http[0], s.http[1], s.http[2]];

    // The socket is rw for owner and group only.
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    let meta = std::fs::metadata(sock).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o660);

    let info = admin_ok(sock, "show info").await;
    assert!(info.contains("Generation: 1\n"), "{info}");
    assert!(info.contains("Pools: 2\n"), "{info}");
    assert!(
        info.contains(&format!("Config: {}", s._dir.path("edge.toml").display())),
        "{info}"
    );

    let (per, failed) = distribution(&s, 30).await;
    assert_eq!((per.clone(), failed), (vec![10, 10, 10], 0));

    let show = admin_ok(sock, "show servers").await;
    assert!(show.starts_with("# pool"), "{show}");
    for (i, b) in s.http.iter().enumerate() {
        let row = server_row(&show, *b);
        // pool server admin health reason since weight in_flight queue requests failures
        assert_eq!(row[0], "app");
        assert_eq!(&row[2..4], ["ready", "up"], "{show}");
        assert_eq!(row[6], "1");
        assert_eq!(&row[7..9], ["0", "0"]);
        assert_eq!(row[9], per[i].to_string(), "{show}");
        assert_eq!(row[10], "0");
    }
    assert_eq!(server_row(&show, s.tcp[0])[0], "tcp");
    let only = admin_ok(sock, "show servers tcp").await;
    assert_eq!(only.lines().count(), 3, "{only}");

    // maint: out at once, for HTTP...
    let out = admin_ok(sock, &format!("maint app {b0}")).await;
    assert!(out.starts_with("maint:"), "{out}");
    let (per, failed) = distribution(&s, 20).await;
    assert_eq!((per, failed), (vec![0, 10, 10], 0));
    let show = admin_ok(sock, "show servers app").await;
    assert_eq!(server_row(&show, b0)[2], "maint");
    let pools = admin_ok(sock, "show pools").await;
    let app: Vec<&str> = pools
        .lines()
        .find(|l| l.starts_with("app "))
        .unwrap()
        .split_whitespace()
        .collect();
    // pool policy servers ready drain maint up available
    assert_eq!(
        app,
        ["app", "round_robin", "3", "2", "0", "1", "3", "2"],
        "{pools}"
    );

    // ...and for passthrough.
    admin_ok(sock, &format!("maint tcp {}", s.tcp[0])).await;
    for _ in 0..6 {
        assert_eq!(passthrough(&s).await.0, 1);
    }
    admin_ok(sock, &format!("enable tcp {}", s.tcp[0])).await;
    let mut seen = [0; 2];
    for _ in 0..6 {
        seen[passthrough(&s).await.0] += 1;
    }
    assert_eq!(seen, [3, 3]);

    // enable: back in rotation.
    let out = admin_ok(sock, &format!("enable app {b0}")).await;
    assert!(
        out.starts_with("ready:") && out.contains("was maint"),
        "{out}"
    );
    let (per, _) = distribution(&s, 30).await;
    assert_eq!(per, vec![10, 10, 10]);

    // set weight: 3 / 1 / 0 over 100 requests.
    admin_ok(sock, &format!("set weight app {b0} 3")).await;
    let out = admin_ok(sock, &format!("set server app/{b2} weight 0")).await;
    assert!(out.contains("1 -> 0"), "{out}");
    let (per, failed) = distribution(&s, 100).await;
    assert_eq!(failed, 0);
    assert_eq!(per[2], 0, "{per:?}");
    assert!(
        (70..=80).contains(&per[0]) && (20..=30).contains(&per[1]),
        "{per:?}"
    );
    let show = admin_ok(sock, "show servers app").await;
    assert_eq!(server_row(&show, b0)[6], "3");
    assert_eq!(server_row(&show, b2)[6], "0");
    // Back to the configured weights (HAProxy's percent form).
    admin_ok(sock, &format!("set weight app {b0} 100%")).await;
    admin_ok(sock, &format!("set weight app {b2} 1")).await;
    let (per, _) = distribution(&s, 30).await;
    assert_eq!(per, vec![10, 10, 10]);

    // Bad commands: a clear error line, exit 1, and nothing changes.
    for (cmd, want) in [
        ("frobnicate", "unknown command \"frobnicate\""),
        ("show servers nope", "no pool \"nope\" (pools: app, tcp)"),
        ("drain nope 127.0.0.1:1", "no pool \"nope\""),
        (
            "maint app 127.0.0.1:1",
            "pool \"app\" has no server 127.0.0.1:1",
        ),
        ("enable app not-an-address", "invalid server"),
        ("set weight app 127.0.0.1:1 99999", "invalid weight"),
        ("drain app", "usage: drain"),
    ] {
        let (code, out, err) = admin(sock, cmd).await;
        assert_eq!(code, 1, "{cmd}: {out}{err}");
        assert!(
            err.starts_with("error: ") && err.contains(want),
            "{cmd}: {err}"
        );
        assert!(out.is_empty());
    }
    // `reload` runs the same reload as SIGHUP: the file is unchanged.
    let (code, out, err) = admin(sock, "reload").await;
    assert_eq!(code, 0, "reload: {out}{err}");
    assert!(out.contains("no change"), "reload: {out}");
    let (code, _, err) = admin(sock, "").await;
    assert_eq!(code, 2, "{err}");
    // Raw socket clients: junk, an over-long line, a silent half-close.
    for input in [
        b"\xff\xfe\x00garbage\n".to_vec(),
        vec![b'a'; 5000],
        Vec::new(),
    ] {
        let mut c = tokio::net::UnixStream::connect(sock).await.unwrap();
        c.write_all(&input).await.unwrap();
        c.shutdown().await.unwrap();
        let mut answer = String::new();
        c.read_to_string(&mut answer).await.unwrap();
        assert!(answer.starts_with("error: "), "{answer}");
    }
    // Nothing changed and edge still serves.
    let show = admin_ok(sock, "show servers app").await;
    for b in [b0, b1, b2] {
        assert_eq!(&server_row(&show, b)[2..4], ["ready", "up"], "{show}");
    }
    let (_, failed) = distribution(&s, 6).await;
    assert_eq!(failed, 0);
    // No admin socket, no answer.
    let (code, _, err) = admin(&s._dir.path("nothing.sock"), "show info").await;
    assert_eq!(code, 1);
    assert!(err.contains("cannot talk to the admin socket"), "{err}");
}

/// drain under a bounded client load: no new request reaches the drained
/// server once the command returns, none fails, and the command returns as
/// soon as the server is idle; with a request still running it returns at
/// the timeout and that request still completes. Passthrough connections
/// already open keep working.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn drain_under_load() {
    let s = Arc::new(setup("admin-drain", 2, "mode = \"0600\"").await);
    let sock = s.socket.clone();
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&sock).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let [b0, b1] = [s.http[0], s.http[1]];

    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::new();
    for _ in 0..4 {
        let (s, stop, failures, done) = (s.clone(), stop.clone(), failures.clone(), done.clone());
        workers.push(tokio::spawn(async move {
            let mut snd = connect(&s).await;
            // Bounded: at most 2000 requests per worker.
            for _ in 0..2000 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                if get(&mut snd, "/slow/30").await.is_none() {
                    failures.fetch_add(1, Ordering::Relaxed);
                    snd = connect(&s).await;
                }
                done.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    let count = |from: Instant, who: usize| {
        s.log
            .lock()
            .unwrap()
            .iter()
            .filter(|(t, i, p)| *t >= from && *i == who && p.starts_with("/slow/"))
            .count()
    };
    let t0 = Instant::now();
    while (count(t0, 0) < 10 || count(t0, 1) < 10) && t0.elapsed() < Duration::from_secs(15) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        count(t0, 0) >= 10 && count(t0, 1) >= 10,
        "load reaches both"
    );

    let asked = Instant::now();
    let out = admin_ok(&sock, &format!("drain app {b0} --timeout 10s")).await;
    let returned = Instant::now();
    assert!(out.starts_with("drained:"), "{out}");
    // Requests take 30 ms: idle long before the timeout.
    assert!(
        returned - asked < Duration::from_secs(3),
        "drain took {:?}",
        returned - asked
    );
    let show = admin_ok(&sock, "show servers app").await;
    assert_eq!(server_row(&show, b0)[2], "drain");
    assert_eq!(server_row(&show, b0)[7], "0", "idle: {show}");
    let before = done.load(Ordering::Relaxed);
    while done.load(Ordering::Relaxed) < before + 40 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await.unwrap();
    }
    assert_eq!(failures.load(Ordering::Relaxed), 0, "no request failed");
    assert_eq!(count(returned, 0), 0, "the drained server got new requests");
    assert!(count(returned, 1) >= 40);

    // A request still running: drain returns at its timeout, saying so,
    // and the request completes.
    let slow = {
        let s = s.clone();
        tokio::spawn(async move {
            let mut snd = connect(&s).await;
            get(&mut snd, "/slow/2500").await
        })
    };
    let t1 = Instant::now();
    while !s
        .log
        .lock()
        .unwrap()
        .iter()
        .any(|(t, _, p)| *t >= t1 && p == "/slow/2500")
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let asked = Instant::now();
    let out = admin_ok(&sock, &format!("drain app {b1} --timeout 300ms")).await;
    let took = asked.elapsed();
    assert!(
        out.starts_with("draining:") && out.contains("1 active"),
        "{out}"
    );
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_millis(2000),
        "{took:?}"
    );
    assert_eq!(slow.await.unwrap(), Some(1), "the running request finishes");
    // Both drained: new requests get 503 rather than a drained server.
    let mut snd = connect(&s).await;
    assert_eq!(get(&mut snd, "/").await, None);
    admin_ok(&sock, &format!("enable app {b0}")).await;
    admin_ok(&sock, &format!("enable app {b1}")).await;
    let (per, failed) = distribution(&s, 10).await;
    assert_eq!((per, failed), (vec![5, 5], 0));

    // Passthrough: an open connection to the drained server keeps working,
    // new ones go elsewhere, and drain returns once it closes.
    let (mut first, mut held) = passthrough(&s).await;
    if first != 0 {
        (first, held) = passthrough(&s).await;
    }
    assert_eq!(first, 0);
    let t0 = s.tcp[0];
    let out = admin_ok(&sock, &format!("drain tcp {t0} --timeout 200ms")).await;
    assert!(
        out.starts_with("draining:") && out.contains("1 active"),
        "{out}"
    );
    let before = s.tcp_conns[0].load(Ordering::Relaxed);
    for _ in 0..5 {
        assert_eq!(passthrough(&s).await.0, 1);
    }
    assert_eq!(s.tcp_conns[0].load(Ordering::Relaxed), before);
    held.get_mut().write_all(b"still here\n").await.unwrap();
    let mut echo = String::new();
    held.read_line(&mut echo).await.unwrap();
    assert_eq!(echo, "still here\n");
    let closer = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        drop(held);
    });
    let asked = Instant::now();
    let out = admin_ok(&sock, &format!("drain tcp {t0} --timeout 10s")).await;
    assert!(out.starts_with("drained:"), "{out}");
    assert!(asked.elapsed() < Duration::from_secs(5));
    closer.await.unwrap();
}

/// `show certs` lists the file certificate with its names, issuer,
/// validity and serial; `acme` commands without ACME and unknown
/// subcommands answer clear errors.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn show_certs_and_certificate_errors() {
    let s = setup("admin-certs", 1, "").await;
    let sock = &s.socket;
    let pem = std::fs::read(s._dir.path("app.pem")).unwrap();
    let (_, pem) = x509_parser::pem::parse_x509_pem(&pem).unwrap();
    let leaf = pem.parse_x509().unwrap();
    let date = |t: x509_parser::time::ASN1Time| {
        let d = t.to_datetime();
        format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
            d.year(),
            u8::from(d.month()),
            d.day(),
            d.hour(),
            d.minute(),
            d.second()
        )
    };

    let show = admin_ok(sock, "show certs").await;
    let lines: Vec<Vec<&str>> = show
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        lines[0].join(" "),
        "# name names served_for source issuer not_before not_after days_left serial key files",
        "{show}"
    );
    assert_eq!(lines.len(), 2, "one certificate:\n{show}");
    assert_eq!(lines[1][0], "app", "the config's name: {show}");
    let row = &lines[1][1..];
    assert_eq!(row[0], "app.test", "{show}");
    assert_eq!(row[1], "app.test", "{show}");
    assert_eq!(row[2], "file", "{show}");
    assert_eq!(row[3], "CN=front_test_CA", "{show}");
    assert_eq!(row[4], date(leaf.validity().not_before), "{show}");
    assert_eq!(row[5], date(leaf.validity().not_after), "{show}");
    let days = leaf.validity().time_to_expiration().unwrap().whole_days();
    let shown: i64 = row[6].parse().unwrap();
    assert!((shown - days).abs() <= 1, "{shown} vs {days}: {show}");
    assert_eq!(
        row[7],
        leaf.raw_serial_as_string().replace(':', ""),
        "{show}"
    );
    let files = format!(
        "{},{}",
        s._dir.path("app.pem").display(),
        s._dir.path("app.key").display()
    );
    assert_eq!(row[8], "ecdsa-p256", "{show}");
    assert_eq!(row[9], files, "{show}");

    for (args, want) in [
        ("acme status", "error: no ACME certificates are configured"),
        (
            "acme renew app.test",
            "error: no ACME certificates are configured",
        ),
        ("acme frob", "error: usage: acme status | acme renew NAME"),
        ("acme renew", "error: usage: acme status | acme renew NAME"),
        ("show cert", "error: usage: show info | show pools"),
        ("show certs now", "error: usage: show info"),
    ] {
        let (code, out, err) = admin(sock, args).await;
        assert_eq!(code, 1, "{args}: {out}{err}");
        assert!(err.starts_with(want), "{args}: {out}{err}");
    }
    let help = admin_ok(sock, "help").await;
    for c in ["show certs", "acme status", "acme renew NAME"] {
        assert!(help.contains(c), "{c}: {help}");
    }
}
