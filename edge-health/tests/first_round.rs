//! The first round: every target's first probe starts at once, the first
//! result decides a target that starts down until its first pass, and
//! `first_round()` resolves once every target of the spawn has a result.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use common::{Script, ScriptProbe, Step};
use edge_health::{
    CheckConfig, FirstRound, HealthChecker, HealthHandle, PoolConfig, Probe, SchedulerConfig,
    TargetState,
};

const S: Duration = Duration::from_secs(1);

fn addr(i: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 11000 + i))
}

fn scripted(
    probe: &Arc<ScriptProbe>,
    targets: Vec<SocketAddr>,
    check: CheckConfig,
) -> HealthHandle {
    let mut c = HealthChecker::new(SchedulerConfig::default()).unwrap();
    c.add_pool(
        PoolConfig::new("p", targets)
            .probe(Probe::Custom(Arc::new(Script(Arc::clone(probe)))))
            .check(check),
    )
    .unwrap();
    c.spawn()
}

/// Real sockets, a long interval: a listening server is up and a closed
/// port down after the first probe of each, long before one interval, and
/// the first pass alone puts a server in rotation (rise 3 counts from
/// there on). One runtime thread: no probe runs before the test first
/// awaits, so the state right after the spawn is the unchecked one (with a
/// second thread the first probe, sent at once, could already have passed).
#[tokio::test(flavor = "current_thread")]
async fn first_probes_run_at_once_and_the_first_result_decides() {
    let live = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let live_addr = live.local_addr().unwrap();
    let mut c = HealthChecker::new(SchedulerConfig::default()).unwrap();
    c.add_pool(
        PoolConfig::new("web", [live_addr, closed])
            .probe(Probe::Tcp)
            .check(CheckConfig::default().inter(60 * S).rise(3)),
    )
    .unwrap();
    let h = c.spawn();
    assert_eq!(h.pool_summary("web"), Some((0, 2)), "down until checked");
    let round = tokio::time::timeout(10 * S, h.first_round())
        .await
        .expect("the first round ends within one probe timeout, not one interval")
        .expect("the checker runs");
    assert_eq!((round.up, round.down), (1, 1));
    assert!(round.took < 10 * S);
    eprintln!("first round of 2 targets (interval 60 s): {:?}", round.took);
    let states: Vec<_> = h.targets().iter().map(|e| (e.target, e.state)).collect();
    assert!(states.contains(&(live_addr, TargetState::Up)), "{states:?}");
    assert!(states.contains(&(closed, TargetState::Down)), "{states:?}");
    assert_eq!(h.first_round_done(), Some(round));
    h.shutdown().await;
}

/// In the paused clock: a hanging target ends the round at its timeout;
/// a target removed before its first result no longer holds it.
#[tokio::test(start_paused = true)]
async fn the_round_waits_for_timeouts_and_not_for_removed_targets() {
    let p = Arc::new(ScriptProbe::default());
    let (a, hang) = (addr(1), addr(2));
    p.set(hang, vec![Step::Hang]);
    let check = CheckConfig::default().inter(10 * S).timeout(3 * S);
    let h = scripted(&p, vec![a, hang], check.clone());
    let round = h.first_round().await.unwrap();
    assert_eq!(
        round,
        FirstRound {
            up: 1,
            down: 1,
            took: 3 * S
        }
    );
    h.shutdown().await;

    let long = check.timeout(60 * S);
    let h = scripted(&p, vec![a, hang], long);
    tokio::time::sleep(S).await;
    assert_eq!(h.first_round_done(), None, "the hanging probe holds it");
    assert!(h.set_targets("p", vec![(a, 1)]));
    let round = h.first_round().await.unwrap();
    assert_eq!((round.up, round.down), (1, 0));
    assert_eq!(round.took, S);
    // A target added later is not part of the round, and is probed at once.
    let late = addr(3);
    assert!(h.set_targets("p", vec![(a, 1), (late, 1)]));
    tokio::time::sleep(S / 10).await;
    assert_eq!(
        p.calls_to(late).len(),
        1,
        "an added target is probed at once"
    );
    h.shutdown().await;
}

/// A checker without targets has its round at once; one stopped before
/// its round ended says so.
#[tokio::test(start_paused = true)]
async fn an_empty_checker_is_done_at_once_and_a_stopped_one_never() {
    let h = HealthChecker::new(SchedulerConfig::default())
        .unwrap()
        .spawn();
    let round = h.first_round().await.unwrap();
    assert_eq!((round.up, round.down), (0, 0));
    h.shutdown().await;

    let p = Arc::new(ScriptProbe::default());
    p.set(addr(4), vec![Step::Hang]);
    let h = scripted(&p, vec![addr(4)], CheckConfig::default().timeout(60 * S));
    let waiter = h.clone();
    let wait = tokio::spawn(async move { waiter.first_round().await });
    tokio::time::sleep(S).await;
    h.shutdown().await;
    assert_eq!(wait.await.unwrap(), None);
}
