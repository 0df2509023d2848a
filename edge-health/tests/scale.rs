//! A thousand targets probed together: first probes at once, later ones
//! spread, the concurrency bound, and no task left behind.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::{Backend, Gauge, Script, ScriptProbe, Step};
use edge_health::{CheckConfig, HealthChecker, HttpProbe, PoolConfig, Probe, SchedulerConfig};

const S: Duration = Duration::from_secs(1);

fn alive_tasks() -> usize {
    tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks()
}

fn addrs(n: u32) -> Vec<SocketAddr> {
    (0..n)
        .map(|i| SocketAddr::from(([127, 0, (i / 250) as u8, (i % 250 + 1) as u8], 80)))
        .collect()
}

/// Counts per 100 ms bucket of `calls` within `[from, from + 1 s)`.
fn buckets(calls: &[tokio::time::Instant], from: tokio::time::Instant) -> Vec<usize> {
    let mut b = vec![0; 10];
    for c in calls {
        if *c >= from && *c < from + S {
            let i = ((*c - from).as_millis() / 100) as usize;
            b[i] += 1;
        }
    }
    b
}

#[tokio::test(start_paused = true)]
async fn a_thousand_targets_are_probed_at_once_then_spread_and_never_in_lockstep() {
    let p = Arc::new(ScriptProbe::default());
    let baseline = alive_tasks();
    let mut c = HealthChecker::new(SchedulerConfig {
        max_concurrent_probes: 1000,
        jitter_percent: 10,
    })
    .unwrap();
    c.add_pool(
        PoolConfig::new("big", addrs(1000))
            .probe(Probe::Custom(Arc::new(Script(Arc::clone(&p)))))
            .check(CheckConfig::default().inter(S)),
    )
    .unwrap();
    let start = tokio::time::Instant::now();
    let h = c.spawn();
    tokio::time::sleep(20 * S).await;
    let all = p.calls.lock().unwrap().clone();
    let calls: Vec<_> = all.iter().map(|c| c.1).collect();
    let mut count = std::collections::HashMap::new();
    let nth = |n: usize, count: &mut std::collections::HashMap<SocketAddr, usize>| {
        count.clear();
        all.iter()
            .filter(|c| {
                let k = count.entry(c.0).or_insert(0);
                *k += 1;
                *k == n
            })
            .map(|c| c.1)
            .collect::<Vec<_>>()
    };
    // First probes: all at once (the first round ends at once).
    let firsts = nth(1, &mut count);
    assert_eq!(firsts.len(), 1000);
    assert!(firsts.iter().all(|c| *c == start), "first probes at start");
    // Second probes: spread over the interval after the first, about 100
    // per 100 ms. (Timers fire on millisecond ticks: allow one tick past.)
    let seconds = nth(2, &mut count);
    assert_eq!(seconds.len(), 1000);
    assert!(
        seconds
            .iter()
            .all(|c| *c - start <= S + Duration::from_millis(1))
    );
    let second = buckets(&seconds, start);
    assert!(second.iter().all(|n| (50..=150).contains(n)), "{second:?}");
    // Twenty rounds later, jitter has kept them apart.
    let late = buckets(&calls, start + 19 * S);
    assert!(late.iter().all(|n| (40..=160).contains(n)), "{late:?}");
    assert!(late.iter().sum::<usize>() >= 950, "{late:?}");
    assert_eq!(h.pool_summary("big"), Some((1000, 1000)));
    h.shutdown().await;
    assert_eq!(alive_tasks(), baseline, "tasks left behind");
}

#[tokio::test(start_paused = true)]
async fn concurrency_bound_holds_when_probes_are_slow() {
    let p = Arc::new(ScriptProbe::default());
    let targets = addrs(1000);
    for t in &targets {
        p.set(*t, vec![Step::Sleep(S / 10)]);
    }
    // A quarter of the targets hang until their timeout.
    for t in targets.iter().step_by(4) {
        p.set(*t, vec![Step::Hang]);
    }
    let baseline = alive_tasks();
    let mut c = HealthChecker::new(SchedulerConfig {
        max_concurrent_probes: 50,
        jitter_percent: 10,
    })
    .unwrap();
    c.add_pool(
        PoolConfig::new("big", targets.clone())
            .probe(Probe::Custom(Arc::new(Script(Arc::clone(&p)))))
            .check(CheckConfig::default().inter(S).timeout(S / 2)),
    )
    .unwrap();
    let h = c.spawn();
    tokio::time::sleep(30 * S).await;
    assert_eq!(
        p.max_in_flight.load(Ordering::SeqCst),
        50,
        "bound reached, never passed"
    );
    // Every healthy target got through despite the hanging quarter.
    assert_eq!(h.pool_summary("big"), Some((750, 1000)));
    h.shutdown().await;
    assert_eq!(p.in_flight.load(Ordering::SeqCst), 0, "probes cancelled");
    assert_eq!(alive_tasks(), baseline, "tasks left behind");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_real_http_backends() {
    let gauge = Arc::new(Gauge::default());
    let mut backends = Vec::with_capacity(1000);
    for _ in 0..1000 {
        let b = Backend::http_with_gauge(Arc::clone(&gauge)).await;
        b.set_service_delay(Duration::from_millis(5));
        backends.push(b);
    }
    let baseline = alive_tasks();
    let mut c = HealthChecker::new(SchedulerConfig {
        max_concurrent_probes: 32,
        jitter_percent: 10,
    })
    .unwrap();
    c.add_pool(
        PoolConfig::new("big", backends.iter().map(|b| b.addr))
            .probe(Probe::Http(HttpProbe::get("/health").body_contains("ok")))
            .check(CheckConfig::default().inter(S).timeout(5 * S)),
    )
    .unwrap();
    let h = c.spawn();
    let mut w = h.watch_pool("big").unwrap();
    tokio::time::timeout(60 * S, w.wait_for(|s| s.healthy == 1000))
        .await
        .expect("all 1000 up")
        .unwrap();
    assert!(
        gauge.max.load(Ordering::SeqCst) <= 32,
        "{}",
        gauge.max.load(Ordering::SeqCst)
    );
    h.shutdown().await;
    // Backend connection tasks end as the probes' connections close.
    for _ in 0..500 {
        if alive_tasks() <= baseline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(alive_tasks(), baseline, "tasks left behind");
}
