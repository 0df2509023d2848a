//! Every probe is reported, not only those that change a target's state:
//! to the `on_probe` observer and in `last_probes`.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use common::{Backend, Mode, wait_health};
use edge_health::{
    CheckConfig, HealthChecker, HttpProbe, PoolConfig, Probe, ProbeReport, Reason, SchedulerConfig,
};

/// A checker of pool `web` = [`target`]: HTTP checks of `/health` every
/// 30 ms, rise 1, fall 1.
fn checker(target: std::net::SocketAddr) -> HealthChecker {
    let mut c = HealthChecker::new(SchedulerConfig::default()).unwrap();
    c.add_pool(
        PoolConfig::new("web", [target])
            .probe(Probe::Http(HttpProbe::get("/health")))
            .check(
                CheckConfig::default()
                    .inter(Duration::from_millis(30))
                    .rise(1)
                    .fall(1)
                    .timeout(Duration::from_secs(1)),
            ),
    )
    .unwrap();
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_probe_is_reported_with_its_result_and_duration() {
    let b = Backend::http().await;
    let seen: Arc<Mutex<Vec<ProbeReport>>> = Arc::default();
    let mut c = checker(b.addr);
    let log = seen.clone();
    c.on_probe(move |r| log.lock().unwrap().push(r.clone()));
    let before = SystemTime::now();
    let h = c.spawn();
    assert!(h.last_probes().is_empty() || h.last_probes()[0].target == b.addr);
    let mut ev = h.subscribe();
    wait_health(&mut ev, b.addr, true).await;
    // Passing probes go on without a state change: they are reported too.
    let start = seen.lock().unwrap().len();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let passes = seen.lock().unwrap().len() - start;
    assert!(
        passes >= 3,
        "{passes} probes reported in 300 ms at inter 30 ms"
    );
    let last = h.last_probes();
    assert_eq!(last.len(), 1);
    assert_eq!((&*last[0].pool, last[0].target), ("web", b.addr));
    assert_eq!(last[0].result, Ok(()));
    assert!(last[0].started >= before && last[0].duration < Duration::from_secs(1));

    b.set(Mode::Status(503));
    wait_health(&mut ev, b.addr, false).await;
    let last = h.last_probes();
    assert_eq!(last[0].result, Err(Reason::Status(503)));
    assert!(
        seen.lock()
            .unwrap()
            .iter()
            .any(|r| r.result == Err(Reason::Status(503))),
        "the observer saw the failure"
    );
    h.shutdown().await;
}

/// Targets found while the checker runs (DNS): added ones are probed and
/// reported, removed ones are not, those that stay keep their state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn targets_join_and_leave_a_running_pool() {
    let (a, b) = (Backend::http().await, Backend::http().await);
    let c = checker(a.addr);
    let h = c.spawn();
    let mut ev = h.subscribe();
    wait_health(&mut ev, a.addr, true).await;
    assert!(!h.set_targets("nope", vec![]), "an unknown pool");

    assert!(h.set_targets("web", vec![(a.addr, 1), (b.addr, 3)]));
    wait_health(&mut ev, b.addr, true).await;
    let st = h.pool_status("web").unwrap();
    assert_eq!((st.healthy, st.total, st.total_weight), (2, 2, 4));

    // a leaves: no longer probed nor listed; b stays up.
    assert!(h.set_targets("web", vec![(b.addr, 3)]));
    tokio::time::sleep(Duration::from_millis(100)).await;
    let probes_then = a.seen().len();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        a.seen().len(),
        probes_then,
        "a removed target is not probed"
    );
    let listed: Vec<_> = h.targets().iter().map(|e| e.target).collect();
    assert_eq!(listed, [b.addr]);
    assert_eq!(
        h.last_probes().iter().map(|r| r.target).collect::<Vec<_>>(),
        [b.addr]
    );
    assert_eq!(h.pool_summary("web"), Some((1, 1)));

    // a comes back: probed again, in rotation after its first pass.
    assert!(h.set_targets("web", vec![(a.addr, 1), (b.addr, 3)]));
    a.set(Mode::Status(500));
    wait_health(&mut ev, a.addr, false).await;
    a.set(Mode::Ok);
    wait_health(&mut ev, a.addr, true).await;
    assert_eq!(h.pool_summary("web"), Some((2, 2)));
    h.shutdown().await;
}
