//! Interval switching, timeouts and isolation of stuck probes, in tokio's
//! paused clock with a scripted custom probe.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use common::{Script, ScriptProbe, Step, wait_health};
use edge_health::{
    CheckConfig, HealthChecker, HealthHandle, InitialState, PoolConfig, Probe, Reason,
    SchedulerConfig, TargetState,
};

const S: Duration = Duration::from_secs(1);

fn addr(i: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 10000 + i))
}

fn spawn(probe: &Arc<ScriptProbe>, targets: Vec<SocketAddr>, check: CheckConfig) -> HealthHandle {
    let mut c = HealthChecker::new(SchedulerConfig {
        jitter_percent: 0,
        ..SchedulerConfig::default()
    })
    .unwrap();
    c.add_pool(
        PoolConfig::new("p", targets)
            .probe(Probe::Custom(Arc::new(Script(Arc::clone(probe)))))
            .check(check),
    )
    .unwrap();
    c.spawn()
}

fn gaps(calls: &[tokio::time::Instant]) -> Vec<Duration> {
    calls.windows(2).map(|w| w[1] - w[0]).collect()
}

#[tokio::test(start_paused = true)]
async fn intervals_switch_between_inter_fastinter_and_downinter() {
    let p = Arc::new(ScriptProbe::default());
    let t = addr(1);
    use Step::{Fail, Pass};
    // The first pass, then (after the spread second probe) the script.
    p.set(
        t,
        vec![Pass, Pass, Pass, Fail, Fail, Fail, Pass, Pass, Pass],
    );
    let check = CheckConfig::default()
        .inter(10 * S)
        .fastinter(S)
        .downinter(30 * S)
        .rise(2)
        .fall(2);
    let h = spawn(&p, vec![t], check);
    let mut ev = h.subscribe();
    wait_health(&mut ev, t, true).await;
    wait_health(&mut ev, t, false).await;
    wait_health(&mut ev, t, true).await;
    tokio::time::sleep(11 * S).await;
    let calls = p.calls_to(t);
    assert!(calls.len() >= 9, "{}", calls.len());
    assert_eq!(
        gaps(&calls[1..9]),
        vec![
            10 * S, // up, stable: inter
            10 * S, // up, stable: inter
            S,      // up, one failure: fastinter
            30 * S, // down: downinter
            30 * S, // still down: downinter
            S,      // one pass while down: fastinter
            10 * S, // back up: inter
        ]
    );
    h.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn first_probe_at_once_second_spread_and_unset_intervals_default_to_inter() {
    let p = Arc::new(ScriptProbe::default());
    let t = addr(2);
    use Step::{Fail, Pass};
    p.set(t, vec![Fail, Fail, Pass, Pass, Pass]);
    let start = tokio::time::Instant::now();
    let h = spawn(&p, vec![t], CheckConfig::default()); // inter 2 s only
    let mut ev = h.subscribe();
    wait_health(&mut ev, t, true).await;
    let calls = p.calls_to(t);
    assert_eq!(calls[0], start, "first probe at once");
    assert!(
        calls[1] - calls[0] < 2 * S,
        "second probe spread over the first interval"
    );
    assert_eq!(gaps(&calls[1..4]), vec![2 * S; 2]);
    h.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn timeout_cuts_a_hanging_probe_at_exactly_the_timeout() {
    let p = Arc::new(ScriptProbe::default());
    let t = addr(3);
    p.set(t, vec![Step::Pass, Step::Hang]);
    let check = CheckConfig::default().inter(5 * S).timeout(3 * S).fall(1);
    let h = spawn(&p, vec![t], check);
    let mut ev = h.subscribe();
    wait_health(&mut ev, t, true).await;
    let down = wait_health(&mut ev, t, false).await;
    assert_eq!(down.reason, Reason::Timeout);
    let calls = p.calls_to(t);
    let started = calls[1].into_std();
    assert_eq!(down.since - started, 3 * S);
    // The next probe comes one interval after the timed-out one started.
    tokio::time::sleep(5 * S).await;
    let calls = p.calls_to(t);
    assert_eq!(calls[2] - calls[1], 5 * S);
    h.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_stuck_probe_never_delays_the_others() {
    let p = Arc::new(ScriptProbe::default());
    let stuck = addr(4);
    let fine = addr(5);
    p.set(stuck, vec![Step::Hang]);
    let check = CheckConfig::default().inter(S).timeout(60 * S);
    let h = spawn(&p, vec![stuck, fine], check);
    tokio::time::sleep(30 * S).await;
    let calls = p.calls_to(fine);
    assert!(
        calls.len() >= 29,
        "fine target probed {} times",
        calls.len()
    );
    // After the spread second probe, one interval apart.
    assert!(
        gaps(&calls[1..]).iter().all(|g| *g == S),
        "{:?}",
        gaps(&calls)
    );
    assert_eq!(p.calls_to(stuck).len(), 1, "still hanging");
    let ts = h.targets();
    let st = ts.iter().find(|e| e.target == stuck).unwrap();
    assert_eq!(st.state, TargetState::Unchecked);
    h.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn assumed_up_targets_start_in_rotation() {
    let p = Arc::new(ScriptProbe::default());
    let t = addr(6);
    p.set(t, vec![Step::Fail]);
    let check = CheckConfig::default()
        .initial(InitialState::AssumedUp)
        .fall(3);
    let h = spawn(&p, vec![t], check);
    let mut ev = h.subscribe();
    let first = ev.next().await.unwrap();
    assert!(first.healthy);
    assert_eq!(h.pool_summary("p"), Some((1, 1)));
    let down = wait_health(&mut ev, t, false).await;
    assert_eq!(p.calls_to(t).len(), 3, "after fall = 3 failures");
    assert_eq!(down.reason, Reason::Custom("scripted failure".into()));
    h.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_lagging_subscriber_gets_the_full_state_again() {
    let p = Arc::new(ScriptProbe::default());
    let (a, b) = (addr(7), addr(8));
    use Step::{Fail, Pass};
    // Flapping every probe: one event per probe per target.
    p.set(a, [Pass, Fail].repeat(1000));
    p.set(b, [Fail, Pass].repeat(1000));
    let check = CheckConfig::default().inter(S).rise(1).fall(1);
    let h = spawn(&p, vec![a, b], check);
    let mut ev = h.subscribe();
    assert_eq!(ev.next().await.unwrap().reason, Reason::NotChecked);
    assert_eq!(ev.next().await.unwrap().reason, Reason::NotChecked);
    // Far more changes than the channel holds, unread.
    tokio::time::sleep(1500 * S).await;
    // Reading resumes with the current state of both targets.
    let now = h.targets();
    let first = ev.next().await.unwrap();
    let second = ev.next().await.unwrap();
    assert_eq!(vec![first, second], now);
    h.shutdown().await;
}
