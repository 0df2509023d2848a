//! `health-balance`: edge-balance consuming edge-health.
//!
//! Three HTTP backends sit behind an `edge_balance::Dispatcher` (pick,
//! retry once on another backend) whose endpoint health comes from an
//! `edge_health::HealthChecker` (HTTP probe every 200 ms, rise 2, fall 2)
//! and from passive outlier detection, fed by the dispatcher's outcome
//! callback with the outcome of every request. After a while backend `b` is killed: its port
//! closes, live traffic sees connection failures, `b` is ejected and then
//! marked down, and traffic moves to `a` and `c`. Then `b` is restarted on
//! the same port and comes back through its probes.
//!
//! ```text
//! cargo run -p edge-examples --example health-balance
//! ```
//!
//! It prints every health event and the share of requests each backend got
//! in each phase, and exits non-zero if traffic did not move.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use edge_balance::{
    BalancerConfig, Classify, Connect, DispatchConfig, Dispatcher, EndpointSet, Policy,
};
use edge_health::{
    CheckConfig, HealthChecker, HttpProbe, Outcome, OutlierConfig, PoolConfig, Probe,
    SchedulerConfig,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// A tiny HTTP/1.1 backend: answers every request `200 ok <name>`.
async fn backend(listener: TcpListener, name: &'static str) {
    loop {
        let Ok((mut s, _)) = listener.accept().await else {
            continue;
        };
        tokio::spawn(async move {
            let mut buf = [0u8; 2048];
            let mut seen = Vec::new();
            while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                match s.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => seen.extend_from_slice(buf.get(..n).unwrap_or_default()),
                }
                if seen.len() > 16 * 1024 {
                    return;
                }
            }
            let body = format!("ok {name}");
            let rsp = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = s.write_all(rsp.as_bytes()).await;
        });
    }
}

async fn start(
    addr: SocketAddr,
    name: &'static str,
) -> std::io::Result<(SocketAddr, JoinHandle<()>)> {
    let l = TcpListener::bind(addr).await?;
    let addr = l.local_addr()?;
    Ok((addr, tokio::spawn(backend(l, name))))
}

/// One request over a fresh connection; the body on success.
async fn request(addr: SocketAddr) -> Result<String, Outcome> {
    let io = async {
        let mut s = TcpStream::connect(addr)
            .await
            .map_err(|_| Outcome::ConnectFailure)?;
        s.write_all(b"GET / HTTP/1.1\r\nHost: demo\r\nConnection: close\r\n\r\n")
            .await
            .map_err(|_| Outcome::ConnectFailure)?;
        let mut rsp = String::new();
        s.read_to_string(&mut rsp)
            .await
            .map_err(|_| Outcome::ConnectFailure)?;
        if !rsp.starts_with("HTTP/1.1 200") {
            return Err(Outcome::Status5xx);
        }
        Ok(rsp.rsplit("\r\n\r\n").next().unwrap_or_default().to_owned())
    };
    tokio::time::timeout(Duration::from_secs(1), io)
        .await
        .unwrap_or(Err(Outcome::Timeout))
}

/// The backend's failure as an attempt's outcome.
#[derive(Debug, Clone, Copy)]
struct ByFailure;

impl Classify<String, Outcome> for ByFailure {
    fn error(&self, e: &Outcome) -> edge_balance::Outcome {
        match e {
            Outcome::ConnectFailure => edge_balance::Outcome::ConnectFailure,
            Outcome::Timeout => edge_balance::Outcome::Timeout,
            Outcome::Status5xx => edge_balance::Outcome::Status5xx,
            _ => edge_balance::Outcome::Failure,
        }
    }
}

/// An endpoint: its address and its name.
type Backend = (SocketAddr, &'static str);

/// Sends requests for `how_long`, each through the dispatcher (a failed
/// one retried once on another backend); returns how many each backend
/// answered and how many attempts failed.
async fn traffic(
    lb: &Dispatcher<SocketAddr, Backend>,
    how_long: Duration,
) -> BTreeMap<&'static str, usize> {
    let send = tower::service_fn(|((addr, _), ()): (Backend, ())| request(addr));
    let mut counts = BTreeMap::new();
    let end = tokio::time::Instant::now() + how_long;
    while tokio::time::Instant::now() < end {
        match lb.dispatch(&send, Connect, &ByFailure).await {
            Ok(served) => {
                let name = served.lease.value().1;
                debug_assert!(served.response.ends_with(name));
                *counts.entry(name).or_insert(0) += 1;
                let failed = served.attempts as usize - 1;
                *counts.entry("(failed attempt)").or_insert(0) += failed;
            }
            Err(failed) => {
                *counts.entry("(failed attempt)").or_insert(0) += failed.attempts as usize;
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    counts.retain(|_, n| *n > 0);
    counts
}

fn show(phase: &str, counts: &BTreeMap<&'static str, usize>) {
    let total: usize = counts
        .iter()
        .filter(|(k, _)| !k.starts_with('('))
        .map(|(_, v)| v)
        .sum();
    let parts: Vec<String> = counts
        .iter()
        .map(|(k, v)| {
            format!(
                "{k}: {v} ({:.0} %)",
                100.0 * *v as f64 / total.max(1) as f64
            )
        })
        .collect();
    println!("{phase:<28} {}", parts.join(", "));
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let any: SocketAddr = "127.0.0.1:0".parse()?;
    let (a, _ta) = start(any, "a").await?;
    let (b, tb) = start(any, "b").await?;
    let (c, _tc) = start(any, "c").await?;

    // The balancer's endpoints start out of rotation until their first probe.
    let lb: Dispatcher<SocketAddr, Backend> = Dispatcher::new(
        EndpointSet::new(),
        Policy::RoundRobin,
        BalancerConfig::default(),
        DispatchConfig::default().max_attempts(2),
    );
    for (addr, name) in [(a, "a"), (b, "b"), (c, "c")] {
        lb.insert(addr, (addr, name), 1, false);
    }

    let mut checker = HealthChecker::new(SchedulerConfig::default())?;
    checker.add_pool(
        PoolConfig::new("demo", [a, b, c])
            .probe(Probe::Http(HttpProbe::get("/health").body_contains("ok")))
            .check(
                CheckConfig::default()
                    .inter(Duration::from_millis(200))
                    .timeout(Duration::from_millis(300))
                    .rise(2)
                    .fall(2),
            )
            .outlier(OutlierConfig {
                consecutive_failures: 3,
                base_ejection_time: Duration::from_secs(1),
                max_ejection_percent: 34,
                ..OutlierConfig::default()
            }),
    )?;
    let health = checker.spawn();
    // Passive health: every attempt's outcome goes to the outlier detector.
    let od = health.outlier_detector();
    let lb = lb.on_outcome(move |addr, outcome| {
        let o = match outcome {
            edge_balance::Outcome::Success => Outcome::Success,
            edge_balance::Outcome::Status5xx => Outcome::Status5xx,
            edge_balance::Outcome::Timeout => Outcome::Timeout,
            _ => Outcome::ConnectFailure,
        };
        od.record(*addr, o);
    });
    let set = lb.set().clone();

    // edge-balance consumes the health stream directly.
    let mut events = health.subscribe();
    let started = tokio::time::Instant::now();
    let applier = tokio::spawn(async move {
        while let Some(e) = events.next().await {
            set.set_healthy(&e.target, e.healthy);
            println!(
                "[{:>5} ms] health: {} {} -> {:?} ({})",
                started.elapsed().as_millis(),
                e.pool,
                e.target,
                e.state,
                e.reason
            );
        }
    });

    let mut pool = health.watch_pool("demo").ok_or("no pool")?;
    pool.wait_for(|s| s.healthy == 3).await?;

    let before = traffic(&lb, Duration::from_millis(1500)).await;
    show("all up:", &before);

    println!(
        "[{:>5} ms] killing backend b ({b})",
        started.elapsed().as_millis()
    );
    tb.abort();
    let _ = tb.await;
    // Traffic goes on: its failures eject b before the probes notice.
    let during = traffic(&lb, Duration::from_millis(1500)).await;
    show("b killed:", &during);
    pool.wait_for(|s| s.healthy == 2).await?;

    println!(
        "[{:>5} ms] restarting backend b on {b}",
        started.elapsed().as_millis()
    );
    let (_, _tb2) = start(b, "b").await?;
    pool.wait_for(|s| s.healthy == 3).await?;
    let after = traffic(&lb, Duration::from_millis(1500)).await;
    show("b back:", &after);

    let summary = health.pool_status("demo").ok_or("no pool")?;
    println!(
        "pool {}: {}/{} healthy, capacity alert {}",
        summary.pool,
        summary.healthy,
        summary.total,
        if summary.low { "raised" } else { "clear" }
    );
    health.shutdown().await;
    let _ = applier.await;

    let moved = before.get("b").copied().unwrap_or(0) > 0
        && during.get("b").copied().unwrap_or(0) == 0
        && during.get("a").copied().unwrap_or(0) > 0
        && during.get("c").copied().unwrap_or(0) > 0
        && after.get("b").copied().unwrap_or(0) > 0;
    if !moved {
        return Err("traffic did not move away from the dead backend and back".into());
    }
    println!("traffic moved away from b while it was dead and back when it returned");
    Ok(())
}
