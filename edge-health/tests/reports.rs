//! Every probe is reported, not only those that change a target's state:
//! to the `on_probe` observer and in `last_probes`.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use common::{Backend, Mode, wait_health};
use edge_health::{
    CheckConfig, HealthChecker, HttpProbe, PoolConfig, Probe, ProbeReport, Reason, SchedulerConfig,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_probe_is_reported_with_its_result_and_duration() {
    let b = Backend::http().await;
    let seen: Arc<Mutex<Vec<ProbeReport>>> = Arc::default();
    let mut c = HealthChecker::new(SchedulerConfig::default()).unwrap();
    c.add_pool(
        PoolConfig::new("web", [b.addr])
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
