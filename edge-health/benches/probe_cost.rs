//! Benchmark (run by hand, not a test):
//!
//! ```text
//! CARGO_TARGET_DIR=/work/target-health taskset -c 0,1 \
//!     cargo bench -p edge-health --bench probe_cost
//! ```
//!
//! 1. CPU cost of probing 1,000 HTTP targets every second on one core: the
//!    checker runs alone on a current-thread runtime (one OS thread); the
//!    CPU time of that thread over a 20 s window is compared with HAProxy
//!    (`nbthread 1`) checking the same 1,000 backends with the same check
//!    (`GET /health`, body must contain `ok`, `inter 1s`), in the same run.
//! 2. Detection time from a backend dying (its port closing) to it leaving
//!    rotation: active probes with HAProxy's defaults (inter 2 s, fall 3),
//!    with `fastinter`, and passive outlier detection fed by live traffic.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use edge_health::{
    CheckConfig, HealthChecker, HttpProbe, Outcome, OutlierConfig, PoolConfig, Probe,
    SchedulerConfig, TargetState,
};
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

const TARGETS: usize = 1000;
const WINDOW: Duration = Duration::from_secs(20);

fn main() {
    // Backends live on their own runtime and threads.
    let backends_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let (addrs, _tasks) = backends_rt.block_on(start_backends(TARGETS));
    let ticks = clock_ticks();

    // --- 1. CPU cost -----------------------------------------------------
    let checker_rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (edge_cpu, probes) = checker_rt.block_on(edge_cpu(&addrs, ticks));
    let haproxy_cpu = haproxy_cpu(&addrs, ticks);
    println!("== CPU cost: {TARGETS} HTTP targets, inter 1 s, {WINDOW:?} window ==");
    println!(
        "edge-health: {:.3} s CPU = {:.1} % of one core ({probes} probes, {:.1} us/probe)",
        edge_cpu.as_secs_f64(),
        100.0 * edge_cpu.as_secs_f64() / WINDOW.as_secs_f64(),
        edge_cpu.as_secs_f64() * 1e6 / probes.max(1) as f64
    );
    match haproxy_cpu {
        Some(h) => println!(
            "haproxy:     {:.3} s CPU = {:.1} % of one core; ratio edge/haproxy = {:.2}",
            h.as_secs_f64(),
            100.0 * h.as_secs_f64() / WINDOW.as_secs_f64(),
            edge_cpu.as_secs_f64() / h.as_secs_f64().max(1e-9)
        ),
        None => println!("haproxy:     not run (not installed?)"),
    }

    // --- 2. Detection time ----------------------------------------------
    println!("== Detection time: backend port closes -> out of rotation (10 backends each) ==");
    let defaults = CheckConfig::default().inter(Duration::from_secs(2)).fall(3);
    let fast = CheckConfig::default()
        .inter(Duration::from_secs(1))
        .fastinter(Duration::from_millis(200))
        .timeout(Duration::from_millis(500))
        .fall(3);
    for (name, check, traffic) in [
        ("active, inter 2s fall 3 (defaults)", defaults, false),
        ("active, inter 1s fastinter 200ms fall 3", fast, false),
        (
            "passive, live traffic 200 req/s per backend, 5 failures",
            CheckConfig::default(),
            true,
        ),
    ] {
        let (addrs, tasks) = backends_rt.block_on(start_backends(10));
        let mut times = checker_rt.block_on(detection(&addrs, tasks, check, traffic));
        times.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        println!(
            "{name}: min {:.0} ms, median {:.0} ms, max {:.0} ms",
            ms(times[0]),
            ms(times[times.len() / 2]),
            ms(times[times.len() - 1])
        );
    }
}

async fn start_backends(n: usize) -> (Vec<SocketAddr>, Vec<tokio::task::JoinHandle<()>>) {
    let mut addrs = Vec::with_capacity(n);
    let mut tasks = Vec::with_capacity(n);
    for _ in 0..n {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        addrs.push(l.local_addr().unwrap());
        tasks.push(tokio::spawn(async move {
            loop {
                let Ok((s, _)) = l.accept().await else {
                    continue;
                };
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(|_req| async {
                        Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from_static(
                            b"status: ok",
                        ))))
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(s), svc)
                        .await;
                });
            }
        }));
    }
    (addrs, tasks)
}

fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// utime + stime of a /proc stat file.
fn cpu_of(stat_path: &str, ticks: f64) -> Option<Duration> {
    let s = std::fs::read_to_string(stat_path).ok()?;
    let after = s.rsplit_once(')')?.1;
    let f: Vec<&str> = after.split_whitespace().collect();
    // Fields after the command: state is index 0, utime 11, stime 12.
    let u: f64 = f.get(11)?.parse().ok()?;
    let st: f64 = f.get(12)?.parse().ok()?;
    Some(Duration::from_secs_f64((u + st) / ticks))
}

async fn edge_cpu(addrs: &[SocketAddr], ticks: f64) -> (Duration, usize) {
    let mut c = HealthChecker::new(SchedulerConfig::default()).unwrap();
    c.add_pool(
        PoolConfig::new("bench", addrs.iter().copied())
            .probe(Probe::Http(HttpProbe::get("/health").body_contains("ok")))
            .check(CheckConfig::default().inter(Duration::from_secs(1))),
    )
    .unwrap();
    let h = c.spawn();
    let mut w = h.watch_pool("bench").unwrap();
    w.wait_for(|s| s.healthy == addrs.len()).await.unwrap();
    // Warm up one more round, then measure.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = cpu_of("/proc/thread-self/stat", ticks).unwrap();
    tokio::time::sleep(WINDOW).await;
    let after = cpu_of("/proc/thread-self/stat", ticks).unwrap();
    assert_eq!(h.pool_summary("bench"), Some((addrs.len(), addrs.len())));
    h.shutdown().await;
    // One probe per target per second.
    (after - before, addrs.len() * WINDOW.as_secs() as usize)
}

struct Reap(Child);
impl Drop for Reap {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn haproxy_cpu(addrs: &[SocketAddr], ticks: f64) -> Option<Duration> {
    let dir = std::env::temp_dir().join(format!("edge-health-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).ok()?;
    let free = std::net::TcpListener::bind("127.0.0.1:0").ok()?;
    let port = free.local_addr().ok()?.port();
    drop(free);
    let mut cfg = format!(
        "global\n  nbthread 1\n\ndefaults\n  mode http\n  timeout connect 1s\n  timeout client 5s\n  \
         timeout server 5s\n  timeout check 1s\n\nfrontend f\n  bind 127.0.0.1:{port}\n  \
         default_backend b\n\nbackend b\n  option httpchk GET /health\n  http-check expect string ok\n  \
         default-server check inter 1s rise 2 fall 3\n"
    );
    for (i, a) in addrs.iter().enumerate() {
        cfg.push_str(&format!("  server s{i} {a}\n"));
    }
    let path = dir.join("haproxy.cfg");
    std::fs::write(&path, cfg).ok()?;
    let child = Command::new("haproxy")
        .arg("-db")
        .arg("-f")
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let child = Reap(child);
    let stat = format!("/proc/{}/stat", child.0.id());
    // Let every server come up (rise 2) and a round pass.
    std::thread::sleep(Duration::from_secs(5));
    let before = cpu_of(&stat, ticks)?;
    std::thread::sleep(WINDOW);
    let after = cpu_of(&stat, ticks)?;
    drop(child);
    let _ = std::fs::remove_dir_all(&dir);
    Some(after - before)
}

async fn detection(
    addrs: &[SocketAddr],
    tasks: Vec<tokio::task::JoinHandle<()>>,
    check: CheckConfig,
    traffic: bool,
) -> Vec<Duration> {
    let mut c = HealthChecker::new(SchedulerConfig::default()).unwrap();
    c.add_pool(
        PoolConfig::new("detect", addrs.iter().copied())
            .probe(Probe::Http(HttpProbe::get("/health")))
            .check(check)
            .outlier(OutlierConfig {
                max_ejection_percent: 100,
                ..OutlierConfig::default()
            }),
    )
    .unwrap();
    let h = c.spawn();
    let mut w = h.watch_pool("detect").unwrap();
    w.wait_for(|s| s.healthy == addrs.len()).await.unwrap();
    let mut traffic_tasks = Vec::new();
    if traffic {
        for a in addrs {
            let od = h.outlier_detector();
            let a = *a;
            traffic_tasks.push(tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_millis(5));
                loop {
                    tick.tick().await;
                    let outcome = match tokio::net::TcpStream::connect(a).await {
                        Ok(_) => Outcome::Success,
                        Err(_) => Outcome::ConnectFailure,
                    };
                    od.record(a, outcome);
                }
            }));
        }
    }
    let mut events = h.subscribe();
    let mut results = Vec::new();
    // Kill the backends one by one at random points of their probe cycle.
    for (i, task) in tasks.into_iter().enumerate() {
        let pause = Duration::from_millis(300 + rand::random::<u64>() % 1700);
        tokio::time::sleep(pause).await;
        task.abort();
        let killed = Instant::now();
        let target = addrs[i];
        let gone = loop {
            let e = events.next().await.unwrap();
            if e.target == target && !e.healthy && e.state != TargetState::Unchecked {
                break e;
            }
        };
        results.push(gone.since.saturating_duration_since(killed));
    }
    for t in traffic_tasks {
        t.abort();
    }
    h.shutdown().await;
    results
}
