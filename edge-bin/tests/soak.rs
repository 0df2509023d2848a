//! A bounded soak: normal clients keep being served while hostile and
//! clumsy ones do, side by side, each of the things that once hurt edge
//! (stalled bodies, 1-byte TLS records, aborted and malformed uploads,
//! `Connection:` naming edge's own headers, idle HTTP/2 connections that
//! answer PINGs, a truncated config reloaded, a burst of connections), and
//! edge's memory returns near its baseline afterwards.
//!
//! About 40 s of load, then at most 30 s for the memory to come back. It
//! prints RSS before, at the peak and after.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How long the mixed load runs.
const SOAK: Duration = Duration::from_secs(40);
/// Connections in the burst (opened, one request each, closed).
const BURST: usize = 1_000;
/// How far above its baseline edge's RSS may stay once the load is gone.
const RSS_SLACK_KIB: u64 = 16 * 1024;
/// How far above its baseline the load must have taken edge's RSS for the
/// return to mean anything.
const RSS_LOAD_KIB: u64 = 2 * RSS_SLACK_KIB;

type Cfg = Arc<rustls::ClientConfig>;

/// Counters of one kind of client: done as expected, and what went wrong.
#[derive(Default)]
struct Tally {
    ok: AtomicU64,
    /// Requests put on a new connection because edge had closed the
    /// kept-alive one before they were sent.
    reconnects: AtomicU64,
    bad: std::sync::Mutex<Vec<String>>,
}

impl Tally {
    fn check(&self, fine: bool, what: impl FnOnce() -> String) {
        if fine {
            self.ok.fetch_add(1, Relaxed);
        } else {
            let mut bad = self.bad.lock().unwrap();
            if bad.len() < 20 {
                bad.push(what());
            }
        }
    }
    fn report(&self, name: &str) -> (u64, Vec<String>) {
        let bad = self.bad.lock().unwrap().clone();
        eprintln!(
            "{name}: {} as expected, {} not, {} sent again on a new connection",
            self.ok.load(Relaxed),
            bad.len(),
            self.reconnects.load(Relaxed)
        );
        (self.ok.load(Relaxed), bad)
    }
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap()
}

/// Writes `raw` on a fresh TLS connection (optionally half-closing) and
/// reads the answer for up to `wait`; what went wrong, as text, otherwise.
async fn exchange(cfg: Cfg, port: u16, raw: &[u8], close: bool, wait: Duration) -> String {
    timed_exchange(cfg, port, raw, close, wait).await.0
}

/// [`exchange`], and how long the answer took after the request was sent.
async fn timed_exchange(
    cfg: Cfg,
    port: u16,
    raw: &[u8],
    close: bool,
    wait: Duration,
) -> (String, Duration) {
    match raw_exchange(cfg, port, "app.test", raw, close, wait).await {
        Ok(a) => (a.text, a.took),
        Err(e) => (e, Duration::ZERO),
    }
}

/// Keep-alive connections of 20 requests each, GETs and small POSTs; every
/// one must be a 200 that carries the client's address to the backend. A
/// request that was never sent because edge had closed the kept-alive
/// connection (a reload retires connections, as nginx's and HAProxy's do)
/// goes on a new connection, as browsers and curl do; a request that was
/// sent must be answered.
async fn normal(cfg: Cfg, port: u16, until: Instant, t: Arc<Tally>) {
    let mut sender: Option<hyper::client::conn::http1::SendRequest<Full<Bytes>>> = None;
    let mut i = 0u64;
    while Instant::now() < until {
        i += 1;
        let mut s = match sender.take() {
            Some(s) if !i.is_multiple_of(20) => s,
            _ => match connect_h1(cfg.clone(), port).await {
                Ok(s) => s,
                Err(e) => {
                    t.check(false, || e);
                    continue;
                }
            },
        };
        if s.ready().await.is_err() {
            // Closed by edge while kept alive: nothing was sent.
            t.reconnects.fetch_add(1, Relaxed);
            continue;
        }
        let req = http::Request::builder()
            .method(if i.is_multiple_of(4) { "POST" } else { "GET" })
            .uri("/normal")
            .header("host", "app.test")
            .body(Full::new(Bytes::from_static(b"0123456789")))
            .unwrap();
        let answer = async {
            let resp = s.send_request(req).await?;
            let status = resp.status();
            let body = resp.into_body().collect().await?.to_bytes();
            Ok::<_, hyper::Error>((status, body))
        };
        match tokio::time::timeout(Duration::from_secs(5), answer).await {
            Ok(Ok((status, body))) => {
                let body = String::from_utf8_lossy(&body);
                t.check(
                    status == 200 && body.contains("x-forwarded-for: 127.0.0.1"),
                    || format!("{status}: {body}"),
                );
                sender = Some(s);
            }
            Ok(Err(e)) if e.is_canceled() => {
                t.reconnects.fetch_add(1, Relaxed);
            }
            Ok(Err(e)) => t.check(false, || e.to_string()),
            Err(_) => t.check(false, || "no answer within 5 s".into()),
        }
    }
}

async fn connect_h1(
    cfg: Cfg,
    port: u16,
) -> Result<hyper::client::conn::http1::SendRequest<Full<Bytes>>, String> {
    let s = edge_testkit::client::tls(cfg, port, Some("app.test"))
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(s))
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    tokio::spawn(conn);
    Ok(sender)
}

/// Twenty bodies that stop after 10 of 100 bytes, at once: each is
/// answered 408 within `body_read_timeout` (1 s) and a margin for a loaded
/// machine.
async fn stalled_bodies(cfg: Cfg, port: u16, until: Instant, t: Arc<Tally>) {
    let raw = b"POST /stall HTTP/1.1\r\nHost: app.test\r\nContent-Length: 100\r\n\r\n0123456789";
    while Instant::now() < until {
        let mut batch = tokio::task::JoinSet::new();
        for _ in 0..20 {
            let cfg = cfg.clone();
            batch.spawn(timed_exchange(
                cfg,
                port,
                raw,
                false,
                Duration::from_secs(8),
            ));
        }
        while let Some(r) = batch.join_next().await {
            let (got, took) = r.unwrap();
            t.check(
                got.starts_with("HTTP/1.1 408 ") && took < Duration::from_secs(5),
                || format!("after {took:?}: {got:?}"),
            );
        }
    }
}

/// A 16 KiB buffered body sent as 1-byte TLS records, one request after
/// another: answered 200.
async fn tiny_records(cfg: Cfg, port: u16, until: Instant, t: Arc<Tally>) {
    while Instant::now() < until {
        let Ok(mut s) = edge_testkit::client::tls(cfg.clone(), port, Some("app.test")).await else {
            t.check(false, || "TLS failed".into());
            continue;
        };
        let head = "POST /tiny HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\nContent-Length: 16384\r\n\r\n";
        let mut sent = s.write_all(head.as_bytes()).await.is_ok();
        for _ in 0..16384 {
            // One write, one flush: one TLS record with one byte in it.
            sent = sent && s.write_all(b"x").await.is_ok() && s.flush().await.is_ok();
        }
        let mut out = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await;
        let got = String::from_utf8_lossy(&out);
        t.check(
            sent && got.starts_with("HTTP/1.1 200 ") && got.contains("body: 16384 bytes"),
            || format!("{got:?}"),
        );
    }
}

/// Uploads the client aborts mid-body or frames wrongly: answered as the
/// client's fault, never 502/503 (the server is not ejected).
async fn client_faults(cfg: Cfg, port: u16, until: Instant, t: Arc<Tally>) {
    let head = "POST /fault HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n";
    let wait = Duration::from_secs(5);
    while Instant::now() < until {
        let bad = format!("{head}zz\r\nhello\r\n0\r\n\r\n");
        let got = exchange(cfg.clone(), port, bad.as_bytes(), false, wait).await;
        t.check(got.starts_with("HTTP/1.1 400 "), || {
            format!("malformed: {got:?}")
        });
        let aborted = format!("{head}100\r\nonly a part of it");
        let got = exchange(cfg.clone(), port, aborted.as_bytes(), true, wait).await;
        t.check(!got.contains(" 502 ") && !got.contains(" 503 "), || {
            format!("aborted: {got:?}")
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `Connection:` naming edge's forwarding headers: the backend still gets
/// the client's address.
async fn connection_strip(cfg: Cfg, port: u16, until: Instant, t: Arc<Tally>) {
    while Instant::now() < until {
        let raw = "GET /strip HTTP/1.1\r\nHost: app.test\r\nConnection: close, X-Forwarded-For, Forwarded, X-Request-Id\r\n\r\n";
        let got = exchange(
            cfg.clone(),
            port,
            raw.as_bytes(),
            false,
            Duration::from_secs(5),
        )
        .await;
        t.check(
            got.starts_with("HTTP/1.1 200 ")
                && got.contains("x-forwarded-for: 127.0.0.1")
                && got.contains("x-request-id: "),
            || format!("{got:?}"),
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Ten HTTP/2 connections at a time that make one request, then only answer
/// and send PINGs: each is closed within two idle timeouts (5 s each) and
/// a margin.
async fn idle_h2(cfg: Cfg, port: u16, until: Instant, t: Arc<Tally>) {
    while Instant::now() < until {
        let mut batch = tokio::task::JoinSet::new();
        for _ in 0..10 {
            let cfg = cfg.clone();
            batch.spawn(async move {
                let tls = edge_testkit::client::tls(cfg, port, Some("app.test"))
                    .await
                    .map_err(|e| e.to_string())?;
                let (mut sender, conn) =
                    hyper::client::conn::http2::Builder::new(TokioExecutor::new())
                        .timer(TokioTimer::new())
                        .keep_alive_interval(Duration::from_millis(300))
                        .keep_alive_while_idle(true)
                        .handshake(TokioIo::new(tls))
                        .await
                        .map_err(|e| e.to_string())?;
                let conn = tokio::spawn(conn);
                let req = http::Request::builder()
                    .uri("https://app.test/h2")
                    .body(Empty::<Bytes>::new())
                    .unwrap();
                let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
                if resp.status() != 200 {
                    return Err(format!("status {}", resp.status()));
                }
                drop(resp);
                // Ended, cleanly or with an error: either way edge closed it.
                let _ended = tokio::time::timeout(Duration::from_secs(15), conn)
                    .await
                    .map_err(|_| "still open 15 s after its last request".to_string())?
                    .map_err(|e| e.to_string())?;
                Ok(())
            });
        }
        while let Some(r) = batch.join_next().await {
            let r = r.unwrap();
            t.check(r.is_ok(), || format!("{r:?}"));
        }
    }
}

/// `BURST` connections open at once (opened 50 at a time, one request
/// each, held until all are open, then closed together): the memory peak.
async fn burst(cfg: Cfg, port: u16, t: Arc<Tally>) {
    let (release, held) = tokio::sync::watch::channel(false);
    let settled = Arc::new(AtomicU64::new(0));
    let mut all = tokio::task::JoinSet::new();
    for i in 0..BURST {
        let (cfg, mut held, settled) = (cfg.clone(), held.clone(), settled.clone());
        all.spawn(async move {
            let r = async {
                let mut s = edge_testkit::client::tls(cfg, port, Some("app.test"))
                    .await
                    .map_err(|e| format!("connect: {e}"))?;
                s.write_all(b"GET /burst HTTP/1.1\r\nHost: app.test\r\n\r\n")
                    .await
                    .map_err(|e| format!("write: {e}"))?;
                let mut buf = vec![0; 4096];
                let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
                    .await
                    .map_err(|_| "no answer within 10 s".to_string())?
                    .map_err(|e| format!("read: {e}"))?;
                match buf[..n].starts_with(b"HTTP/1.1 200 ") {
                    true => Ok(s),
                    false => Err(String::from_utf8_lossy(&buf[..n]).into_owned()),
                }
            }
            .await;
            settled.fetch_add(1, Relaxed);
            let _ = held.wait_for(|go| *go).await;
            r.map(drop)
        });
        if i % 50 == 49 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let t0 = Instant::now();
    while settled.load(Relaxed) < BURST as u64 && t0.elapsed() < Duration::from_secs(30) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    release.send_replace(true);
    while let Some(r) = all.join_next().await {
        let r = r.unwrap();
        t.check(r.is_ok(), || format!("{r:?}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn normal_clients_are_served_beside_hostile_ones_and_memory_comes_back() {
    let (f, _backend) = front_of_demo_backend("soak", "soak.toml", &["app.test"]);
    let pid = f.edge.pid().unwrap();
    let h1 = f.pki.client_config(&[b"http/1.1"]);
    let h2 = f.pki.client_config(&[b"h2"]);
    let port = f.port;

    // Baseline: after a few requests, so the pools and TLS state exist.
    for _ in 0..20 {
        let r = edge_testkit::client::https_get(h1.clone(), port, "app.test", "/warm").await;
        assert_eq!(r.map(|r| r.status), Ok(200));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let baseline = rss_kib(pid);

    let until = Instant::now() + SOAK;
    let peak = Arc::new(AtomicU64::new(baseline));
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let peak = peak.clone();
        let done = done.clone();
        tokio::spawn(async move {
            while !done.load(Relaxed) {
                peak.fetch_max(rss_kib(pid), Relaxed);
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    };
    let names = [
        "normal", "stalled", "tiny", "faults", "strip", "idle_h2", "burst",
    ];
    let tallies: Vec<Arc<Tally>> = names.iter().map(|_| Arc::default()).collect();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..4 {
        tasks.spawn(normal(h1.clone(), port, until, tallies[0].clone()));
    }
    tasks.spawn(stalled_bodies(h1.clone(), port, until, tallies[1].clone()));
    tasks.spawn(tiny_records(h1.clone(), port, until, tallies[2].clone()));
    tasks.spawn(client_faults(h1.clone(), port, until, tallies[3].clone()));
    tasks.spawn(connection_strip(
        h1.clone(),
        port,
        until,
        tallies[4].clone(),
    ));
    tasks.spawn(idle_h2(h2, port, until, tallies[5].clone()));

    // A truncated config reloaded mid-run is refused; the running one
    // serves on (the file is then put back without a reload).
    tokio::time::sleep(Duration::from_secs(5)).await;
    let good = std::fs::read_to_string(f.edge.config()).unwrap();
    let log = f.edge.reload("", 1);
    assert!(log.contains("reload refused: invalid config"), "{log}");
    std::fs::write(f.edge.config(), good).unwrap();
    // The burst, while the rest goes on.
    burst(h1.clone(), port, tallies[6].clone()).await;
    while let Some(r) = tasks.join_next().await {
        r.unwrap();
    }
    done.store(true, Relaxed);
    sampler.await.unwrap();

    let mut failures = Vec::new();
    for (name, t) in names.iter().zip(&tallies) {
        let (ok, bad) = t.report(name);
        if ok == 0 || !bad.is_empty() {
            failures.push(format!("{name}: {ok} as expected; {bad:#?}"));
        }
    }
    assert!(
        tallies[0].ok.load(Relaxed) >= 500,
        "too few normal requests were made to tell anything"
    );

    // Memory given back: RSS within the bound of the baseline, in 30 s.
    let peak = peak.load(Relaxed);
    let t0 = Instant::now();
    let mut after = rss_kib(pid);
    while after > baseline + RSS_SLACK_KIB && t0.elapsed() < Duration::from_secs(30) {
        tokio::time::sleep(Duration::from_millis(500)).await;
        after = rss_kib(pid);
    }
    eprintln!(
        "RSS: baseline {} MiB, peak under load {} MiB, after {} MiB ({:?} after the load)",
        baseline / 1024,
        peak / 1024,
        after / 1024,
        t0.elapsed()
    );
    assert!(
        failures.is_empty(),
        "{failures:#?}\n{}",
        log_tails(&[&f.edge])
    );
    assert!(
        peak >= baseline + RSS_LOAD_KIB,
        "the load took RSS only to {peak} KiB (baseline {baseline} KiB): too light to tell"
    );
    assert!(
        after <= baseline + RSS_SLACK_KIB,
        "RSS stayed at {after} KiB (baseline {baseline} KiB, peak {peak} KiB)"
    );
}
