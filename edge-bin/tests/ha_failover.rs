//! The HA lab (root, network namespaces this test creates; see
//! `common/ha.rs`): failover of a pair of real `edge` processes under load.
//! A crashed master (kill -9, IPv4 and IPv6) and a master whose backends
//! fail (with and without preemption) each hand the VIP to the backup;
//! every wait and load loop is bounded in time and count.

mod common;

use std::time::{Duration, Instant};

use common::ha::*;
use common::load::{Load, outcome};
use common::{now_secs, wait_until};

/// kill -9 of the master while clients make requests through the VIP
/// (IPv4 or IPv6); every request is a new connection.
fn kill_9_under_load(v6: bool) {
    let lab = pair_lab(if v6 { "hk6" } else { "hak" }, 2);
    let (vip, family) = if v6 { (VIP6, "IPv6") } else { (VIP, "IPv4") };
    let (_backends, mut master, backup) = shared_pair(&lab, v6);

    let mut spec = load_spec(Duration::from_secs(6));
    spec.ip = vip.into();
    let load = Load::start(&lab, "client", spec);
    assert!(
        load.wait_served(20, Duration::from_secs(10)),
        "no steady load before the crash: {:?}",
        load.so_far().last()
    );
    let killed = now_secs();
    master.crash();
    let moved = wait_until(master_down_interval(100) + MARGIN, || {
        lab.holds("node1", vip)
    });
    let reqs = load.finish();
    let o = outcome(&reqs, killed);
    eprintln!(
        "{}: kill -9 of the master: failover gap {:?} (Master_Down_Interval {:?}); {} requests, \
         {} probe requests failed, {} first attempts of the retry-once clients failed, \
         {} lost after one retry; errors {:?}",
        family,
        o.gap,
        master_down_interval(100),
        o.total,
        o.probe_failed,
        o.failed,
        o.lost,
        o.errors
    );
    assert!(moved, "node1 did not take the VIP:\n{}", logs(&[&backup]));
    let via1 = format!("via {}", NODE[1]);
    assert!(
        reqs.iter()
            .any(|r| r.t0 > killed && r.ok && r.body.contains(&via1)),
        "no request after the crash was served by node1"
    );
    let gap = o.gap.expect("no probe request succeeded after the crash");
    assert!(
        gap <= master_down_interval(100) + MARGIN,
        "failover took {gap:?}"
    );
    assert_eq!(o.lost, 0, "the retry-once clients lost requests");
}

#[test]
fn kill_9_of_the_master_under_load_moves_the_vip_and_a_retrying_client_loses_nothing() {
    edge_testkit::needs_root!(
        "kill_9_of_the_master_under_load_moves_the_vip_and_a_retrying_client_loses_nothing"
    );
    kill_9_under_load(false);
}

#[test]
fn kill_9_of_the_master_under_ipv6_load_moves_the_vip_and_a_retrying_client_loses_nothing() {
    edge_testkit::needs_root!(
        "kill_9_of_the_master_under_ipv6_load_moves_the_vip_and_a_retrying_client_loses_nothing"
    );
    kill_9_under_load(true);
}

/// The master's only backend fails its health check: the master drops its
/// priority and node1 takes over; the backend recovers: node0 takes the VIP
/// back, or (nopreempt on both nodes, as one Ansible template gives) not.
fn unhealthy_backends_hand_the_vip_over(nopreempt: bool) {
    let lab = pair_lab(if nopreempt { "han" } else { "hap" }, 2);
    let _b0 = backend(&lab, 0);
    let _b1 = backend(&lab, 1);
    let (s0, s1) = ([backend_addr(0)], [backend_addr(1)]);
    let node = |priority, servers| Node {
        priority,
        v6: false,
        nopreempt,
        servers,
        routes: "",
        extra: "",
    };
    // node0 first: with nopreempt whoever is master keeps the VIP.
    let master = start_edge(&lab, 0, "a", &edge_config(0, &node(150, &s0)));
    wait_body(
        &lab,
        "backend0",
        Instant::now(),
        Duration::from_secs(15),
        &[&master],
    );
    let backup = start_edge(&lab, 1, "a", &edge_config(1, &node(100, &s1)));
    let edges = [&master, &backup];
    assert!(
        backup.wait_log("VRRP state change", Duration::from_secs(10)),
        "node1 did not start:\n{}",
        logs(&edges)
    );
    assert!(lab.holds("node0", VIP) && !lab.holds("node1", VIP));

    let t0 = Instant::now();
    set_down(&lab, 0, true);
    // fall 1 at 100 ms interval, then one advert or a master-down interval.
    let limit = master_down_interval(100) + MARGIN;
    let took = wait_body(&lab, "backend1", t0, limit, &edges);
    eprintln!("nopreempt={nopreempt}: takeover after the master's backend failed: {took:?}");
    assert!(
        lab.holds("node1", VIP) && !lab.holds("node0", VIP),
        "node1 must hold the VIP alone"
    );
    const CHANGED: &str = "tracked pool health changed the VRRP priority";
    assert!(master.log_text().contains(CHANGED), "{}", logs(&edges));

    let t0 = Instant::now();
    set_down(&lab, 0, false);
    if nopreempt {
        // node0 is healthy again (its priority is restored) ...
        assert!(
            wait_until(limit, || master.log_text().matches(CHANGED).count() >= 2),
            "node0 did not see its backend recover:\n{}",
            logs(&edges)
        );
        // ... and for many advert intervals it leaves the VIP where it is.
        let watch = ADVERT * 15;
        let stayed = !wait_until(watch, || {
            lab.holds("node0", VIP) || fetch(&lab).is_some_and(|b| b.contains("backend0"))
        });
        assert!(
            stayed,
            "node0 took the VIP back despite nopreempt:\n{}",
            logs(&edges)
        );
        assert!(lab.holds("node1", VIP));
        eprintln!("nopreempt: node1 kept the VIP for {watch:?} after node0 recovered");
    } else {
        let took = wait_body(&lab, "backend0", t0, limit, &edges);
        eprintln!("preempt: node0 took the VIP back {took:?} after its backend recovered");
        assert!(lab.holds("node0", VIP) && !lab.holds("node1", VIP));
    }
}

#[test]
fn unhealthy_master_hands_over_and_preempts_back() {
    edge_testkit::needs_root!("unhealthy_master_hands_over_and_preempts_back");
    unhealthy_backends_hand_the_vip_over(false);
}

#[test]
fn unhealthy_master_hands_over_and_stays_backup_with_nopreempt() {
    edge_testkit::needs_root!("unhealthy_master_hands_over_and_stays_backup_with_nopreempt");
    unhealthy_backends_hand_the_vip_over(true);
}
