//! Passive outlier detection fed from "live traffic", in tokio's paused
//! clock; active probes are a scripted custom probe.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use common::{Script, ScriptProbe, Step, wait_for, wait_health};
use edge_health::{
    CheckConfig, HealthChecker, HealthHandle, Outcome, OutlierConfig, PoolConfig, Probe, Reason,
    SchedulerConfig, TargetState,
};

const S: Duration = Duration::from_secs(1);

fn addrs(n: u16) -> Vec<SocketAddr> {
    (0..n)
        .map(|i| SocketAddr::from(([127, 0, 0, 1], 20000 + i)))
        .collect()
}

fn spawn(
    probe: &Arc<ScriptProbe>,
    targets: Vec<SocketAddr>,
    outlier: OutlierConfig,
) -> HealthHandle {
    let mut c = HealthChecker::new(SchedulerConfig::default()).unwrap();
    c.add_pool(
        PoolConfig::new("p", targets)
            .probe(Probe::Custom(Arc::new(Script(Arc::clone(probe)))))
            .check(CheckConfig::default().inter(S).fall(3))
            .outlier(outlier),
    )
    .unwrap();
    c.spawn()
}

async fn all_up(h: &HealthHandle, n: usize) {
    let mut w = h.watch_pool("p").unwrap();
    tokio::time::timeout(60 * S, w.wait_for(|s| s.healthy == n))
        .await
        .expect("all targets up")
        .unwrap();
}

#[tokio::test(start_paused = true)]
async fn consecutive_failures_eject_and_a_probe_brings_the_target_back() {
    let p = Arc::new(ScriptProbe::default());
    let t = addrs(10);
    let h = spawn(&p, t.clone(), OutlierConfig::default());
    all_up(&h, 10).await;
    let mut ev = h.subscribe();
    let od = h.outlier_detector();

    // Four failures, a success, four failures: no ejection.
    for _ in 0..4 {
        od.record(t[0], Outcome::Status5xx);
    }
    od.record(t[0], Outcome::Success);
    for _ in 0..4 {
        od.record(t[0], Outcome::ConnectFailure);
    }
    tokio::time::sleep(5 * S).await;
    assert_eq!(h.pool_summary("p"), Some((10, 10)));

    // The fifth in a row ejects (Envoy default 5).
    od.record(t[0], Outcome::Timeout);
    let out = wait_health(&mut ev, t[0], false).await;
    assert_eq!(out.state, TargetState::Ejected);
    assert_eq!(
        out.reason,
        Reason::Ejected {
            consecutive_failures: 5,
            duration: 30 * S
        }
    );
    assert_eq!(h.pool_summary("p"), Some((9, 10)));
    assert_eq!(h.pool_status("p").unwrap().ejected, 1);

    // Probes pass all along, but it stays out for the ejection time, then
    // the first probe after it brings it back.
    let back = wait_health(&mut ev, t[0], true).await;
    assert_eq!(back.reason, Reason::Passed);
    let out_for = back.since - out.since;
    assert!(out_for >= 30 * S && out_for <= 31 * S, "{out_for:?}");

    // Ejected again soon after: the ejection time grows.
    for _ in 0..5 {
        od.record(t[0], Outcome::Status5xx);
    }
    let out = wait_health(&mut ev, t[0], false).await;
    assert_eq!(
        out.reason,
        Reason::Ejected {
            consecutive_failures: 5,
            duration: 60 * S
        }
    );
    let back = wait_health(&mut ev, t[0], true).await;
    assert!(back.since - out.since >= 60 * S);
    h.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn never_more_than_the_ejection_share_is_ejected() {
    let p = Arc::new(ScriptProbe::default());
    let t = addrs(20);
    let h = spawn(&p, t.clone(), OutlierConfig::default()); // 10 %: 2 of 20
    all_up(&h, 20).await;
    let od = h.outlier_detector();
    for target in &t[..5] {
        for _ in 0..5 {
            od.record(*target, Outcome::ConnectFailure);
        }
    }
    tokio::time::sleep(S).await;
    let st = h.pool_status("p").unwrap();
    assert_eq!(st.ejected, 2, "{st:?}");
    assert_eq!(st.healthy, 18);
    let refused: Vec<_> = h
        .targets()
        .into_iter()
        .filter(|e| t[..5].contains(&e.target) && e.healthy)
        .map(|e| e.target)
        .collect();
    assert_eq!(refused.len(), 3);
    // The ejected two return after 30 s; the refused ones count from zero
    // again and can be ejected once there is room.
    tokio::time::sleep(31 * S).await;
    assert_eq!(h.pool_status("p").unwrap().ejected, 0);
    let mut ev = h.subscribe();
    for _ in 0..4 {
        od.record(refused[0], Outcome::Status5xx);
    }
    tokio::time::sleep(S).await;
    assert_eq!(
        h.pool_status("p").unwrap().ejected,
        0,
        "the count restarted"
    );
    od.record(refused[0], Outcome::Status5xx);
    let out = wait_health(&mut ev, refused[0], false).await;
    assert_eq!(out.state, TargetState::Ejected);
    h.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn at_least_one_target_can_be_ejected_from_a_small_pool() {
    let p = Arc::new(ScriptProbe::default());
    let t = addrs(3);
    let h = spawn(&p, t.clone(), OutlierConfig::default()); // 10 % of 3 = 0, but 1
    all_up(&h, 3).await;
    let od = h.outlier_detector();
    for target in &t {
        for _ in 0..5 {
            od.record(*target, Outcome::Status5xx);
        }
    }
    tokio::time::sleep(S).await;
    assert_eq!(h.pool_status("p").unwrap().ejected, 1);
    assert_eq!(h.pool_summary("p"), Some((2, 3)));
    h.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn an_ejected_target_failing_its_probes_stays_out_and_needs_rise_passes() {
    let p = Arc::new(ScriptProbe::default());
    let t = addrs(2);
    let cfg = OutlierConfig {
        base_ejection_time: 5 * S,
        ..OutlierConfig::default()
    };
    let h = spawn(&p, t.clone(), cfg);
    all_up(&h, 2).await;
    let mut ev = h.subscribe();
    p.set(t[0], vec![Step::Fail]);
    for _ in 0..5 {
        h.outlier_detector().record(t[0], Outcome::Status5xx);
    }
    wait_health(&mut ev, t[0], false).await;
    let down = wait_for(&mut ev, |e| {
        e.target == t[0] && e.state == TargetState::Down
    })
    .await;
    assert!(matches!(down.reason, Reason::Custom(_)));
    p.set(t[0], vec![Step::Pass]);
    let up = wait_health(&mut ev, t[0], true).await;
    let calls = p.calls_to(t[0]);
    let passes_before_up = calls
        .iter()
        .filter(|c| c.into_std() > down.since && c.into_std() <= up.since)
        .count();
    assert_eq!(passes_before_up, 2, "rise = 2 after a real failure");
    h.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn unknown_targets_and_disabled_detection_are_ignored() {
    let p = Arc::new(ScriptProbe::default());
    let t = addrs(2);
    let h = spawn(
        &p,
        t.clone(),
        OutlierConfig {
            enabled: false,
            ..OutlierConfig::default()
        },
    );
    all_up(&h, 2).await;
    let od = h.outlier_detector();
    for _ in 0..100 {
        od.record(t[0], Outcome::Status5xx);
        od.record(SocketAddr::from(([127, 0, 0, 9], 1)), Outcome::Status5xx);
    }
    tokio::time::sleep(5 * S).await;
    assert_eq!(h.pool_summary("p"), Some((2, 2)));
    h.shutdown().await;
}
