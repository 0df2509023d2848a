//! Reload and lifecycle, end to end with the real binary on loopback:
//! SIGHUP under load (curl, HTTP/1.1 and h2, keep-alive and new
//! connections) fails no request; a broken config keeps the old one;
//! listeners come and go; SIGTERM lets a slow request finish while new
//! connections are refused; sd_notify messages arrive in order;
//! `edge check --diff-against` / `--running` show what a reload changes.

mod common;

use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{Leaf, Pki, Proc, TempDir, free_port, wait_port};
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;

/// A backend answering `id` (and `/slow` after `slow`), counting requests.
struct Backend {
    port: u16,
    hits: Arc<AtomicUsize>,
    /// Requests for `/healthz` (health checks), not counted in `hits`.
    checks: Arc<AtomicUsize>,
}

async fn backend(id: &'static str, slow: Duration) -> Backend {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let hits = Arc::new(AtomicUsize::new(0));
    let checks = Arc::new(AtomicUsize::new(0));
    let (h, c) = (hits.clone(), checks.clone());
    tokio::spawn(async move {
        loop {
            let Ok((s, _)) = l.accept().await else {
                continue;
            };
            let (h, c) = (h.clone(), c.clone());
            tokio::spawn(async move {
                let svc = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let (h, c) = (h.clone(), c.clone());
                    async move {
                        if req.uri().path() == "/healthz" {
                            c.fetch_add(1, Ordering::Relaxed);
                        } else {
                            h.fetch_add(1, Ordering::Relaxed);
                        }
                        if req.uri().path().starts_with("/slow") {
                            tokio::time::sleep(slow).await;
                        }
                        Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from(id))))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    Backend { port, hits, checks }
}

impl Backend {
    /// Runs `f` (which sends a request to this backend) on a thread and
    /// returns once the request has arrived here.
    fn request_in_flight<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> std::thread::JoinHandle<T> {
        let before = self.hits.load(Ordering::Relaxed);
        let h = std::thread::spawn(f);
        let end = Instant::now() + Duration::from_secs(20);
        while self.hits.load(Ordering::Relaxed) == before {
            assert!(
                Instant::now() < end,
                "the request never reached the backend"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        h
    }
}

/// The edge process, its config file and its log.
struct Edge {
    proc: Proc,
    config: PathBuf,
    log: PathBuf,
}

impl Edge {
    fn start(
        dir: &TempDir,
        config: &str,
        ports: &[u16],
        extra: &[&str],
        env: &[(&str, &Path)],
    ) -> Self {
        let path = dir.write("edge.toml", config);
        let log = dir.path("edge.log");
        let mut cmd = Command::new(common::edge_bin());
        cmd.args(["run", "-c"])
            .arg(&path)
            .args(extra)
            .env(
                "RUST_LOG",
                std::env::var("EDGE_TEST_LOG").unwrap_or("info,edge::access=warn".into()),
            )
            .env_remove("NOTIFY_SOCKET")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut proc = Proc {
            child: cmd.spawn().unwrap(),
            name: "edge".into(),
        };
        for p in ports {
            if !wait_port(*p, Duration::from_secs(15)) {
                proc.kill();
                panic!(
                    "edge did not listen on {p}:\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
        }
        Self {
            proc,
            config: path,
            log,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.proc.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill {sig} failed");
    }

    /// Writes `config`, sends SIGHUP and waits until the log shows the
    /// outcome of reload number `n` (ok or refused). Returns the log.
    fn reload(&self, config: &str, n: usize) -> String {
        std::fs::write(&self.config, config).unwrap();
        self.signal("-HUP");
        let end = Instant::now() + Duration::from_secs(20);
        loop {
            let log = self.log();
            let done = log.matches("configuration reloaded").count()
                + log.matches("reload refused: invalid config").count()
                + log.matches("reload failed").count();
            if done >= n {
                return log;
            }
            assert!(Instant::now() < end, "reload {n} did not finish:\n{log}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for the process to exit; its status and how long it took.
    fn wait_exit(&mut self, timeout: Duration) -> (Option<i32>, Duration) {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if let Some(st) = self.proc.child.try_wait().unwrap() {
                return (st.code(), start.elapsed());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("edge did not exit within {timeout:?}:\n{}", self.log());
    }
}

fn config(https: &[u16], leaf: &Leaf, hello: &str, servers: &[u16], extra: &str) -> String {
    let listen: Vec<String> = https.iter().map(|p| format!("\"127.0.0.1:{p}\"")).collect();
    let servers: String = servers
        .iter()
        .map(|p| format!("[[pool.server]]\naddress = \"127.0.0.1:{p}\"\n"))
        .collect();
    format!(
        r#"
[https]
listen = [{listen}]
default_certificate = "t"
[http]
listen = []
{extra}
[[certificate]]
name = "t"
names = ["t.test"]
cert = "{c}"
key = "{k}"

[[route]]
name = "hello"
path_prefix = "/hello"
respond = {{ status = 200, body = "{hello}" }}
[[route]]
name = "app"
pool = "app"

[[pool]]
name = "app"
retries = 0
[pool.health]
kind = "tcp"
interval = "200ms"
{servers}"#,
        listen = listen.join(", "),
        c = leaf.cert.display(),
        k = leaf.key.display(),
    )
}

/// One curl run of `n` requests on one connection (keep-alive), h1 or h2:
/// the response bodies, or the failure.
fn curl_batch(port: u16, ca: &Path, h2: bool, urls: &[&str]) -> Result<Vec<String>, String> {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "--max-time", "20", "--cacert"])
        .arg(ca)
        .args(["--resolve", &format!("t.test:{port}:127.0.0.1")])
        .arg(if h2 { "--http2" } else { "--http1.1" })
        .args(["-w", "\n%{http_code}\n"]);
    for u in urls {
        cmd.arg(format!("https://t.test:{port}{u}"));
    }
    let out = cmd.output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        return Err(format!(
            "curl exit {:?}: {}{}",
            out.status.code(),
            text,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let lines: Vec<&str> = text.lines().collect();
    let mut bodies = Vec::new();
    for pair in lines.chunks(2) {
        match pair {
            [body, "200"] => bodies.push((*body).to_string()),
            other => return Err(format!("bad response {other:?} in {text:?}")),
        }
    }
    if bodies.len() != urls.len() {
        return Err(format!(
            "{} responses for {} requests: {text:?}",
            bodies.len(),
            urls.len()
        ));
    }
    Ok(bodies)
}

fn get(port: u16, ca: &Path, path: &str) -> Result<String, String> {
    curl_batch(port, ca, false, &[path]).map(|mut b| b.remove(0))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_under_load_fails_no_request() {
    let dir = TempDir::new("reload-load");
    let pki = Pki::new(&dir, "r");
    let leaf = pki.leaf(&dir, "t", &["t.test"]);
    let (b1, b2, b3) = (
        backend("b1", Duration::ZERO).await,
        backend("b2", Duration::ZERO).await,
        backend("b3", Duration::ZERO).await,
    );
    // A server that is down in every config: once the health checks took
    // it out, no reload may put it back in rotation (retries = 0, so a
    // request sent to it would fail).
    let dead = free_port();
    let port = free_port();
    let edge = Edge::start(
        &dir,
        &config(&[port], &leaf, "v1", &[b1.port, b2.port, dead], ""),
        &[port],
        &[],
        &[],
    );
    assert_eq!(get(port, &pki.ca_pem, "/hello").unwrap(), "v1");
    let end = Instant::now() + Duration::from_secs(15);
    while curl_batch(port, &pki.ca_pem, false, &["/app"; 9]).is_err() {
        assert!(Instant::now() < end, "the dead server was never taken out");
        std::thread::sleep(Duration::from_millis(100));
    }

    // The load: four client loops (two HTTP/1.1, two h2), each running
    // curl with 10 requests on one keep-alive connection, again and again.
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let mut loops = Vec::new();
    for i in 0..4 {
        let (stop, ok, failures) = (stop.clone(), ok.clone(), failures.clone());
        let ca = pki.ca_pem.clone();
        loops.push(std::thread::spawn(move || {
            let urls = [
                "/app", "/hello", "/app", "/app", "/hello", "/app", "/app", "/hello", "/app",
                "/app",
            ];
            let end = Instant::now() + Duration::from_secs(30);
            while !stop.load(Ordering::Relaxed) && Instant::now() < end {
                match curl_batch(port, &ca, i % 2 == 1, &urls) {
                    Ok(b) => {
                        ok.fetch_add(b.len(), Ordering::Relaxed);
                    }
                    Err(e) => failures.lock().unwrap().push(e),
                }
            }
        }));
    }
    let started = Instant::now();
    // Reloads while the loops run: change a response, add a server,
    // remove one, and once more with no change.
    std::thread::sleep(Duration::from_millis(400));
    edge.reload(
        &config(&[port], &leaf, "v2", &[b1.port, b2.port, b3.port, dead], ""),
        1,
    );
    std::thread::sleep(Duration::from_millis(400));
    edge.reload(
        &config(&[port], &leaf, "v3", &[dead, b2.port, b3.port], ""),
        2,
    );
    std::thread::sleep(Duration::from_millis(400));
    let log = edge.reload(
        &config(&[port], &leaf, "v3", &[dead, b2.port, b3.port], ""),
        3,
    );
    let b1_after = b1.hits.load(Ordering::Relaxed);
    // Keep the load on a little past the last reload.
    while started.elapsed() < Duration::from_secs(3) {
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    for l in loops {
        l.join().unwrap();
    }
    let failures = failures.lock().unwrap().clone();
    let ok = ok.load(Ordering::Relaxed);
    eprintln!("{ok} requests succeeded during 3 reloads");
    assert!(
        failures.is_empty(),
        "{} failed batches: {:#?}\n{log}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    // Bounded by the machine's speed; on 2 busy cores still dozens.
    assert!(ok >= 30, "only {ok} requests in the load loop");
    assert!(!log.contains("reload refused"), "{log}");
    assert!(
        log.contains("pool \\\"app\\\": server 127.0.0.1:")
            || log.contains("pool \"app\": server 127.0.0.1:"),
        "{log}"
    );

    // The new config answers: new response, the added server serves, the
    // removed one gets nothing more.
    assert_eq!(get(port, &pki.ca_pem, "/hello").unwrap(), "v3");
    let bodies = curl_batch(port, &pki.ca_pem, false, &["/app"; 6]).unwrap();
    assert!(bodies.iter().all(|b| b == "b2" || b == "b3"), "{bodies:?}");
    assert!(bodies.iter().any(|b| b == "b3"), "{bodies:?}");
    assert_eq!(
        b1.hits.load(Ordering::Relaxed),
        b1_after,
        "the removed server still got requests"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_reloads_keep_the_old_config_and_listeners_come_and_go() {
    let dir = TempDir::new("reload-bad");
    let pki = Pki::new(&dir, "r");
    let leaf = pki.leaf(&dir, "t", &["t.test"]);
    let slow = backend("slow", Duration::from_millis(1500)).await;
    let (p1, p2) = (free_port(), free_port());
    let copy = dir.path("running.toml");
    let acme = "[acme]\nstorage = \"acme\"";
    let v1 = config(&[p1], &leaf, "v1", &[slow.port], acme);
    let edge = Edge::start(
        &dir,
        &v1,
        &[p1],
        &["--running-config", copy.to_str().unwrap()],
        &[],
    );
    // Written once edge serves.
    let end = Instant::now() + Duration::from_secs(10);
    while !copy.exists() && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(std::fs::read_to_string(&copy).unwrap(), v1);

    // A config with a typo: refused with file:line, the old one serves.
    let broken = v1.replace("retries = 0", "retries = 0\nbogus_key = 1");
    let line = broken
        .lines()
        .position(|l| l.starts_with("bogus_key"))
        .unwrap()
        + 1;
    let log = edge.reload(&broken, 1);
    let want = format!("{}:{line}:", edge.config.display());
    assert!(
        log.contains(&want) && log.contains("bogus_key"),
        "want {want} in:\n{log}"
    );
    assert_eq!(get(p1, &pki.ca_pem, "/hello").unwrap(), "v1");
    assert_eq!(
        std::fs::read_to_string(&copy).unwrap(),
        v1,
        "a refused config replaced the running copy"
    );

    // A listener that cannot bind (the port is taken): refused too.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let tp = taken.local_addr().unwrap().port();
    let log = edge.reload(&config(&[p1, tp], &leaf, "v-taken", &[slow.port], ""), 2);
    assert!(
        log.contains(&format!("cannot listen on 127.0.0.1:{tp}")),
        "{log}"
    );
    assert_eq!(get(p1, &pki.ca_pem, "/hello").unwrap(), "v1");
    drop(taken);

    // Add a listener: both answer the new config.
    let v2 = config(&[p1, p2], &leaf, "v2", &[slow.port], acme);
    let log = edge.reload(&v2, 3);
    assert!(log.contains("[acme] unchanged"), "{log}");
    assert_eq!(get(p1, &pki.ca_pem, "/hello").unwrap(), "v2");
    assert_eq!(get(p2, &pki.ca_pem, "/hello").unwrap(), "v2");
    assert_eq!(std::fs::read_to_string(&copy).unwrap(), v2);

    // `edge check --running COPY` shows what the next reload changes.
    let v3 = config(&[p2], &leaf, "v3", &[slow.port], acme);
    let next = dir.write("next.toml", &v3);
    let out = Command::new(common::edge_bin())
        .args(["check", "-c"])
        .arg(&next)
        .arg("--running")
        .arg(&copy)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains(&format!("- listener 127.0.0.1:{p1} (https)")),
        "{text}"
    );
    assert!(
        text.contains("~ route \"hello\": respond.body: \"v2\" -> \"v3\""),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "-listen = [\"127.0.0.1:{p1}\", \"127.0.0.1:{p2}\"]"
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!("+listen = [\"127.0.0.1:{p2}\"]")),
        "{text}"
    );

    // A slow request in flight on the listener about to go: it completes;
    // then the removed port refuses connections, the other serves v3.
    let ca = pki.ca_pem.clone();
    let inflight = slow.request_in_flight(move || get(p1, &ca, "/slow"));
    let log = edge.reload(&v3, 4);
    assert!(log.contains("listener removed"), "{log}");
    assert_eq!(inflight.join().unwrap().unwrap(), "slow");
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", p1)).is_err(),
        "the removed listener still accepts"
    );
    assert_eq!(get(p2, &pki.ca_pem, "/hello").unwrap(), "v3");

    // The same address moves from [https] to [http]: same socket (no
    // rebind), now answering plain HTTP with a redirect.
    let v4 = v3
        .replace(&format!("listen = [\"127.0.0.1:{p2}\"]"), "listen = []")
        .replace(
            "[http]\nlisten = []",
            &format!("[http]\nlisten = [\"127.0.0.1:{p2}\"]"),
        );
    let log = edge.reload(&v4, 5);
    assert!(log.contains("listener changed kind (same socket)"), "{log}");
    let mut s = std::net::TcpStream::connect(("127.0.0.1", p2)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    use std::io::{Read, Write};
    s.write_all(b"GET /x HTTP/1.1\r\nHost: t.test\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut resp = String::new();
    let _ = s.read_to_string(&mut resp);
    assert!(resp.starts_with("HTTP/1.1 301"), "{resp}");
    assert!(resp.contains("location: https://t.test/x"), "{resp}");
}

/// Receives sd_notify datagrams on a socket the test creates, read
/// continuously (as systemd does) by a thread, in order.
fn notify_socket(dir: &TempDir) -> (std::sync::mpsc::Receiver<String>, PathBuf) {
    let path = dir.path("notify.sock");
    let sock = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = sock.recv(&mut buf) {
            if tx
                .send(String::from_utf8_lossy(&buf[..n]).into_owned())
                .is_err()
            {
                return;
            }
        }
    });
    (rx, path)
}

/// The next message other than a `WATCHDOG=1` keep-alive (counted).
fn next_message(rx: &std::sync::mpsc::Receiver<String>, watchdogs: &mut usize) -> String {
    loop {
        let msg = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("no sd_notify message within 20 s");
        if msg == "WATCHDOG=1" {
            *watchdogs += 1;
        } else {
            return msg;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_stop_finishes_a_slow_request_and_notifies_systemd() {
    let dir = TempDir::new("reload-stop");
    let pki = Pki::new(&dir, "r");
    let leaf = pki.leaf(&dir, "t", &["t.test"]);
    let slow = backend("slow", Duration::from_millis(2000)).await;
    let port = free_port();
    let (sock, sock_path) = notify_socket(&dir);
    let cfg = config(
        &[port],
        &leaf,
        "v1",
        &[slow.port],
        "[limits]\ndrain_timeout = \"10s\"",
    );
    let mut edge = Edge::start(
        &dir,
        &cfg,
        &[],
        &[],
        &[
            ("NOTIFY_SOCKET", &sock_path),
            ("WATCHDOG_USEC", Path::new("200000")),
        ],
    );
    let mut watchdogs = 0;

    let ready = next_message(&sock, &mut watchdogs);
    assert!(ready.starts_with("READY=1\n"), "{ready}");
    assert!(
        wait_port(port, Duration::from_secs(1)),
        "READY=1 before the listener accepts"
    );

    // A reload: RELOADING=1 with MONOTONIC_USEC, then READY=1.
    edge.reload(&cfg.replace("v1", "v2"), 1);
    let reloading = next_message(&sock, &mut watchdogs);
    assert!(
        reloading.starts_with("RELOADING=1\nMONOTONIC_USEC="),
        "{reloading}"
    );
    let ready = next_message(&sock, &mut watchdogs);
    assert!(ready.starts_with("READY=1\n"), "{ready}");

    // SIGTERM with a slow request in flight.
    let ca = pki.ca_pem.clone();
    let inflight = slow.request_in_flight(move || {
        let t = Instant::now();
        (get(port, &ca, "/slow"), t.elapsed())
    });
    edge.signal("-TERM");
    let stopping = next_message(&sock, &mut watchdogs);
    assert!(stopping.starts_with("STOPPING=1\n"), "{stopping}");
    // New connections are refused while the request drains.
    let end = Instant::now() + Duration::from_secs(2);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
        assert!(Instant::now() < end, "still accepting after SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    }
    let (status, _) = edge.wait_exit(Duration::from_secs(15));
    let (resp, took) = inflight.join().unwrap();
    assert_eq!(resp.unwrap(), "slow", "the request in flight failed");
    assert!(took >= Duration::from_millis(1900), "{took:?}");
    assert_eq!(status, Some(0), "{}", edge.log());
    assert!(
        edge.log().contains("all connections finished"),
        "{}",
        edge.log()
    );
    // The keep-alives sent after STOPPING=1.
    watchdogs += sock.try_iter().filter(|m| m == "WATCHDOG=1").count();
    assert!(
        watchdogs >= 2,
        "{watchdogs} WATCHDOG=1 during the test, one per 100 ms"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_deadline_and_second_sigterm_end_the_wait() {
    let dir = TempDir::new("reload-deadline");
    let pki = Pki::new(&dir, "r");
    let leaf = pki.leaf(&dir, "t", &["t.test"]);
    let slow = backend("slow", Duration::from_secs(30)).await;
    for (drain, second) in [("1s", false), ("30s", true)] {
        let port = free_port();
        let cfg = config(
            &[port],
            &leaf,
            "v1",
            &[slow.port],
            &format!("[limits]\ndrain_timeout = \"{drain}\""),
        );
        let mut edge = Edge::start(&dir, &cfg, &[port], &[], &[]);
        let ca = pki.ca_pem.clone();
        let inflight = slow.request_in_flight(move || get(port, &ca, "/slow"));
        edge.signal("-TERM");
        if second {
            std::thread::sleep(Duration::from_millis(300));
            edge.signal("-TERM");
        }
        let (status, took) = edge.wait_exit(Duration::from_secs(10));
        assert_eq!(status, Some(0), "{}", edge.log());
        assert!(
            took < Duration::from_secs(5),
            "drain {drain}, second {second}: took {took:?}"
        );
        assert!(
            inflight.join().unwrap().is_err(),
            "a 30 s request cannot have finished"
        );
        if second {
            assert!(edge.log().contains("second stop signal"), "{}", edge.log());
        } else {
            assert!(
                edge.log().contains("drain deadline reached"),
                "{}",
                edge.log()
            );
        }
    }
}

#[test]
fn check_diff_against_prints_summary_and_unified_diff() {
    let dir = TempDir::new("reload-check");
    let pki = Pki::new(&dir, "r");
    let leaf = pki.leaf(&dir, "t", &["t.test"]);
    let old = dir.write("old.toml", config(&[8443], &leaf, "v1", &[9001, 9002], ""));
    let new = dir.write(
        "new.toml",
        config(
            &[8443, 9443],
            &leaf,
            "v2",
            &[9002, 9003],
            "[runtime]\nworker_threads = 2",
        ),
    );
    let run = |args: &[&std::ffi::OsStr]| {
        let out = Command::new(common::edge_bin())
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, out, err) = run(&[
        "check".as_ref(),
        "-c".as_ref(),
        new.as_os_str(),
        "--diff-against".as_ref(),
        old.as_os_str(),
    ]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("test is successful"), "{out}");
    for want in [
        "+ listener 127.0.0.1:9443 (https)",
        "~ route \"hello\": respond.body: \"v1\" -> \"v2\"",
        "+ pool \"app\": server 127.0.0.1:9003",
        "- pool \"app\": server 127.0.0.1:9001",
        "! [runtime] worker_threads = 2 (needs a restart",
        "@@ -",
        "-address = \"127.0.0.1:9001\"",
        "+address = \"127.0.0.1:9003\"",
    ] {
        assert!(out.contains(want), "missing {want:?} in:\n{out}");
    }
    assert!(out.contains(&format!("--- {}", old.display())), "{out}");
    // Same file: no changes.
    let (code, out, _) = run(&[
        "check".as_ref(),
        "-c".as_ref(),
        old.as_os_str(),
        "--diff-against".as_ref(),
        old.as_os_str(),
    ]);
    assert_eq!(code, Some(0));
    assert!(out.contains("no changes"), "{out}");
    // No running instance: everything is new, still exit 0.
    let missing = dir.path("nothing-here.toml");
    let (code, out, _) = run(&[
        "check".as_ref(),
        "-c".as_ref(),
        new.as_os_str(),
        "--running".as_ref(),
        missing.as_os_str(),
    ]);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("no running config") && out.contains("+ route \"hello\" added"),
        "{out}"
    );
    // An invalid new file fails as before, whatever it is compared with.
    let bad = dir.write("bad.toml", "[https]\nlisten = 1\n");
    let (code, _, err) = run(&[
        "check".as_ref(),
        "-c".as_ref(),
        bad.as_os_str(),
        "--diff-against".as_ref(),
        old.as_os_str(),
    ]);
    assert_eq!(code, Some(1));
    assert!(err.contains("bad.toml:2:"), "{err}");
}

/// A passthrough connection open at SIGTERM keeps working through the
/// drain (edge relays it untouched, it cannot ask it to close); once the
/// client closes it, edge exits without waiting for the deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passthrough_connections_drain_at_stop() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let dir = TempDir::new("reload-pass");
    let front = Pki::new(&dir, "front");
    let back = Pki::new(&dir, "back");
    let leaf = front.leaf(&dir, "t", &["t.test"]);
    let pass = back.leaf(&dir, "pass", &["pt.test"]);
    let s_port = free_port();
    let _s_server = Proc {
        child: Command::new("openssl")
            .args([
                "s_server",
                "-quiet",
                "-rev",
                "-accept",
                &s_port.to_string(),
                "-cert",
            ])
            .arg(&pass.cert)
            .arg("-key")
            .arg(&pass.key)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
        name: "s_server".into(),
    };
    assert!(
        wait_port(s_port, Duration::from_secs(10)),
        "openssl s_server did not start"
    );
    let port = free_port();
    let extra = format!(
        "[limits]\ndrain_timeout = \"20s\"\n[[passthrough]]\nsni = [\"pt.test\"]\npool = \"raw\"\n[[pool]]\nname = \"raw\"\n[[pool.server]]\naddress = \"127.0.0.1:{s_port}\"\n"
    );
    let mut edge = Edge::start(
        &dir,
        &config(&[port], &leaf, "v1", &[s_port], &extra),
        &[port],
        &[],
        &[],
    );

    let mut tls = common::tls(back.client_config(&[]), port, Some("pt.test"))
        .await
        .expect("TLS through the passthrough");
    let echo = async |tls: &mut tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
                      line: &str| {
        tls.write_all(format!("{line}\n").as_bytes()).await.unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 256];
        let want: String = line.chars().rev().collect();
        while !String::from_utf8_lossy(&got).contains(&want) {
            let n = tokio::time::timeout(Duration::from_secs(5), tls.read(&mut buf))
                .await
                .expect("no echo within 5 s")
                .unwrap();
            assert!(
                n > 0,
                "passthrough closed; got {:?}",
                String::from_utf8_lossy(&got)
            );
            got.extend_from_slice(&buf[..n]);
        }
    };
    echo(&mut tls, "hello").await;

    edge.signal("-TERM");
    let end = Instant::now() + Duration::from_secs(5);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
        assert!(Instant::now() < end, "still accepting after SIGTERM");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Draining: the relay goes on.
    echo(&mut tls, "during the drain").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    echo(&mut tls, "still there").await;
    assert!(
        edge.proc.child.try_wait().unwrap().is_none(),
        "edge exited with a passthrough connection open"
    );

    let closed = Instant::now();
    drop(tls);
    let (status, _) = edge.wait_exit(Duration::from_secs(10));
    assert_eq!(status, Some(0));
    assert!(
        closed.elapsed() < Duration::from_secs(5),
        "edge waited {:?} after the last connection closed",
        closed.elapsed()
    );
    assert!(
        edge.log().contains("all connections finished"),
        "{}",
        edge.log()
    );
}

/// A reload stops the replaced config's health checker: a server probed
/// only by the old config gets no more probes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_old_health_checker_stops_after_a_reload() {
    let dir = TempDir::new("reload-health");
    let pki = Pki::new(&dir, "r");
    let leaf = pki.leaf(&dir, "t", &["t.test"]);
    let (old, new) = (
        backend("old", Duration::ZERO).await,
        backend("new", Duration::ZERO).await,
    );
    let port = free_port();
    let cfg = |server: u16| {
        config(&[port], &leaf, "v", &[server], "").replace(
            "kind = \"tcp\"\ninterval = \"200ms\"",
            "kind = \"http\"\npath = \"/healthz\"\ninterval = \"100ms\"",
        )
    };
    assert!(cfg(old.port).contains("/healthz"));
    let edge = Edge::start(&dir, &cfg(old.port), &[port], &[], &[]);
    let end = Instant::now() + Duration::from_secs(10);
    while old.checks.load(Ordering::Relaxed) < 3 {
        assert!(Instant::now() < end, "no health checks reached the server");
        std::thread::sleep(Duration::from_millis(20));
    }
    // A connection accepted under the old config (waiting for its
    // ClientHello) keeps the old state alive: the checker must stop anyway.
    let _holder = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    edge.reload(&cfg(new.port), 1);
    // The new checker probes the new server ...
    let end = Instant::now() + Duration::from_secs(10);
    while new.checks.load(Ordering::Relaxed) < 3 {
        assert!(Instant::now() < end, "the new checker does not probe");
        std::thread::sleep(Duration::from_millis(20));
    }
    // ... and the old one no longer probes the old server (a probe in
    // flight at the reload may still land).
    let after = old.checks.load(Ordering::Relaxed);
    std::thread::sleep(Duration::from_millis(800));
    let later = old.checks.load(Ordering::Relaxed);
    assert!(
        later <= after + 1,
        "the old checker still probes: {after} -> {later}"
    );
    assert_eq!(get(port, &pki.ca_pem, "/app").unwrap(), "new");
}

/// An ACME order in progress when a reload comes (one that leaves `[acme]`
/// alone) completes: the running ACME manager is kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acme_order_in_progress_survives_a_reload() {
    acme_order_across_a_reload(false).await;
}

/// A reload that changes `[acme]` mid-order replaces the ACME manager: the
/// old one gives its order up and releases the storage lock, so the new one
/// orders at once instead of waiting 20-30 s for the lock to expire.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_replacing_the_acme_manager_mid_order_orders_again_at_once() {
    acme_order_across_a_reload(true).await;
}

/// Against a real CA, Pebble (+ pebble-challtestsrv for DNS); a relay the
/// test controls holds the CA's HTTP-01 validation for 3 s, and the reload
/// (changing `[acme]` when `change_acme`) lands in between.
async fn acme_order_across_a_reload(change_acme: bool) {
    assert!(
        Path::new("/usr/bin/pebble").exists(),
        "Debian package pebble is needed (.ci/test installs it)"
    );
    let dir = TempDir::new("reload-acme");
    let pki = Pki::new(&dir, "r");
    let leaf = pki.leaf(&dir, "t", &["t.test"]);
    // Pebble's own HTTPS certificate, from the test CA edge is told to trust.
    let pebble_tls = pki.leaf(&dir, "pebble", &["localhost", "127.0.0.1"]);
    let (dns, listen, mgmt, relay_port) = (free_port(), free_port(), free_port(), free_port());
    let http = free_port();
    let pebble_config = dir.write(
        "pebble.json",
        format!(
            r#"{{"pebble": {{"listenAddress": "127.0.0.1:{listen}", "managementListenAddress": "127.0.0.1:{mgmt}",
  "certificate": "{c}", "privateKey": "{k}", "httpPort": {relay_port}, "tlsPort": {tls},
  "ocspResponderURL": "", "externalAccountBindingRequired": false}}}}"#,
            c = pebble_tls.cert.display(),
            k = pebble_tls.key.display(),
            tls = free_port(),
        ),
    );
    let spawn = |cmd: &mut Command, name: &str| Proc {
        child: cmd
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path(&format!("{name}.log"))).unwrap())
            .spawn()
            .unwrap(),
        name: name.into(),
    };
    let _chall = spawn(
        Command::new("pebble-challtestsrv")
            .args(["-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""])
            .args(["-dns01", &format!("127.0.0.1:{dns}")])
            .args(["-http01", "", "-https01", "", "-tlsalpn01", ""])
            .args(["-management", &format!("127.0.0.1:{}", free_port())]),
        "challtestsrv",
    );
    let _pebble = spawn(
        Command::new("pebble")
            .arg("-config")
            .arg(&pebble_config)
            .args(["-dnsserver", &format!("127.0.0.1:{dns}")])
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_WFE_NONCEREJECT", "0")
            .env("PEBBLE_AUTHZREUSE", "0"),
        "pebble",
    );
    assert!(
        wait_port(listen, Duration::from_secs(20)),
        "Pebble did not start"
    );

    // The relay in front of edge's port 80: each validation waits 3 s.
    let validations = Arc::new(AtomicUsize::new(0));
    let relay = tokio::net::TcpListener::bind(("127.0.0.1", relay_port))
        .await
        .unwrap();
    let seen = validations.clone();
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = relay.accept().await {
            seen.fetch_add(1, Ordering::Relaxed);
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_secs(3)).await;
                if let Ok(mut out) = tokio::net::TcpStream::connect(("127.0.0.1", http)).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut out).await;
                }
            });
        }
    });

    let port = free_port();
    let acme = |extra: &str| {
        format!(
            "[acme]\nstorage = \"acme\"\ndirectory_url = \"https://127.0.0.1:{listen}/dir\"\nca_roots = [\"{ca}\"]\ncertificates = [[\"acme.test\"]]\n{extra}",
            ca = pki.ca_pem.display()
        )
    };
    let cfg = |hello: &str, extra: &str| {
        config(&[port], &leaf, hello, &[free_port()], &acme(extra)).replace(
            "[http]\nlisten = []",
            &format!("[http]\nlisten = [\"127.0.0.1:{http}\"]"),
        )
    };
    let edge = Edge::start(&dir, &cfg("v1", ""), &[port], &[], &[]);
    let end = Instant::now() + Duration::from_secs(30);
    while validations.load(Ordering::Relaxed) == 0 {
        assert!(
            Instant::now() < end,
            "the CA never validated:\n{}",
            edge.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The order waits on its validation: reload now.
    let reloaded = Instant::now();
    let extra = if change_acme {
        "lock_ttl = \"30s\""
    } else {
        ""
    };
    let log = edge.reload(&cfg("v2", extra), 1);
    assert_eq!(log.contains("[acme] unchanged"), !change_acme, "{log}");
    assert_eq!(get(port, &pki.ca_pem, "/hello").unwrap(), "v2");

    // The certificate arrives well before a lock left behind by a replaced
    // manager could have expired (20-30 s).
    let root = Command::new("curl")
        .args(["-sf", "--cacert"])
        .arg(&pki.ca_pem)
        .arg(format!("https://127.0.0.1:{mgmt}/roots/0"))
        .output()
        .unwrap();
    assert!(root.status.success(), "no Pebble root");
    let root = dir.write("pebble-root.pem", &root.stdout);
    let issued = loop {
        let (code, out) = common::curl(&[
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--cacert",
            root.to_str().unwrap(),
            "--resolve",
            &format!("acme.test:{port}:127.0.0.1"),
            &format!("https://acme.test:{port}/hello"),
        ]);
        if code == 0 && out.contains("200") {
            break reloaded.elapsed();
        }
        assert!(
            reloaded.elapsed() < Duration::from_secs(15),
            "no ACME certificate 15 s after the reload:\n{}",
            edge.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    if change_acme {
        assert!(
            edge.log()
                .contains("order given up at stop; storage lock released"),
            "the replaced manager did not release its lock:\n{}",
            edge.log()
        );
    }
    eprintln!(
        "ACME certificate served {issued:?} after the mid-order reload (changed [acme]: {change_acme})"
    );
}
