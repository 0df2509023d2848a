//! The HA lab (root, network namespaces this test creates; see
//! `common/ha.rs`): a node that restarts trusts none of its servers before
//! its first health check, keeps out of the VRRP election until its first
//! check round has ended, and a backup keeps checking while it is backup.
//! Each node's pool has backends 0 and 1 (python3, logging every request
//! with its time and peer); backend 1 fails its health check but would
//! serve any request sent to it, so every request it logs that is not a
//! health check is one a node should not have sent.

mod common;

use std::time::{Duration, Instant};

use common::ha::*;
use common::load::{self, Load, Logged};
use common::{EDGE, Edge, Proc, fixture, now_secs, wait_until};
use edge_testkit::lab::Lab;

/// node0 (150, preempt) and node1 (100), both with `pool`; node0 master
/// and serving when this returns: (backends, node0, node1).
fn pair(lab: &Lab, pool: &str) -> ([Proc; 2], Edge, Edge) {
    let backends = [0, 1].map(|i| {
        let ip = format!("198.18.0.{}", 20 + i);
        let tag = format!("backend{i}");
        load::logging_backend(lab, &format!("b{i}"), &tag, &ip, 8080, "client")
    });
    let node = |priority| Node {
        priority,
        v6: false,
        nopreempt: false,
        servers: &[],
        routes: pool,
        extra: "",
    };
    let node1 = start_edge(lab, 1, "a", &edge_config(1, &node(100)));
    let node0 = start_edge(lab, 0, "a", &edge_config(0, &node(150)));
    let via0 = format!("backend0 via {}", NODE[0]);
    wait_body(
        lab,
        &via0,
        Instant::now(),
        Duration::from_secs(15),
        &[&node0, &node1],
    );
    (backends, node0, node1)
}

/// The pool of backends 0 and 1, checked at `path` every `interval`.
fn pool(path: &str, interval: &str, timeout: &str) -> String {
    let servers: String = [backend_addr(0), backend_addr(1)]
        .iter()
        .map(|s| format!("[[pool.server]]\naddress = \"{s}\"\n"))
        .collect();
    fixture("ha_warm_pool.toml")
        .set("servers", servers)
        .set("path", path)
        .set("interval", interval)
        .set("timeout", timeout)
        .render()
}

/// Kills node0 with kill -9, waits until node1 holds the VIP, then starts
/// node0 again with `config` (not waiting for it): the restarted node0 and
/// the epoch time of its start.
fn crash_and_restart(lab: &Lab, node0: &mut Edge, node1: &Edge, config: &str) -> (Edge, f64) {
    node0.crash();
    assert!(
        wait_until(master_down_interval(100) + MARGIN, || lab
            .holds("node1", VIP)),
        "node1 did not take the VIP:\n{}",
        logs(&[node1])
    );
    let path = lab.write("edge0-b.toml", config);
    let started = now_secs();
    (lab.edge("node0", EDGE, path).spawn(), started)
}

/// Whether the restarted `node` became master. (Its address on `eth0` is
/// no sign: kill -9 leaves the VIP there until the new process removes it.)
fn became_master(node: &Edge) -> bool {
    node.log_plain().contains("to=master")
}

fn proxied(reqs: &[Logged], from: &str, since: f64) -> usize {
    reqs.iter()
        .filter(|r| r.from == from && r.at >= since && !r.path.starts_with("/health"))
        .count()
}

fn checks(reqs: &[Logged], from: &str, since: f64) -> usize {
    reqs.iter()
        .filter(|r| r.from == from && r.at >= since && r.path.starts_with("/health"))
        .count()
}

/// node0 is killed with kill -9 and started again while clients make
/// requests through the VIP for 10 s: it takes the VIP back (preempt) and
/// serves, and not one request reaches backend 1, whose health check
/// fails, although checks every 2 s with fall 3 would leave a server
/// trusted at start in rotation for seconds. Meanwhile node1, backup
/// again, goes on checking both backends.
#[test]
fn a_node_restarted_next_to_a_dead_server_sends_it_no_request() {
    edge_testkit::needs_root!("a_node_restarted_next_to_a_dead_server_sends_it_no_request");
    let lab = pair_lab("hws", 2);
    set_down(&lab, 1, true);
    let pool = pool("/health", "2s", "1s");
    let (backends, mut node0, node1) = pair(&lab, &pool);
    let config = std::fs::read_to_string(node0.config()).unwrap();

    let load = Load::start(&lab, "client", load_spec(Duration::from_secs(10)));
    let (mut node0, restarted) = crash_and_restart(&lab, &mut node0, &node1, &config);
    let mut took_vip = None;
    wait_until(Duration::from_secs(10), || {
        if took_vip.is_none() && became_master(&node0) {
            took_vip = Some(now_secs());
        }
        took_vip.is_some()
    });
    let reqs = load.finish();
    node0.wait_ready();
    let (live, dead) = (load::requests(&backends[0]), load::requests(&backends[1]));
    let edges = [&node0, &node1];
    let took_vip =
        took_vip.unwrap_or_else(|| panic!("node0 did not take the VIP back:\n{}", logs(&edges)));
    let served = proxied(&live, NODE[0], restarted);
    let to_dead = proxied(&dead, NODE[0], restarted);
    let backup_checks = [
        checks(&live, NODE[1], took_vip),
        checks(&dead, NODE[1], took_vip),
    ];
    let window = now_secs() - restarted;
    eprintln!(
        "node0 restarted next to a dead server: VIP back after {:.2} s; in {window:.1} s \
         {} client requests, {served} proxied by node0 to the live server, {to_dead} to the \
         dead one; node1 as backup checked the live server {} and the dead one {} times \
         in {:.1} s",
        took_vip - restarted,
        reqs.len(),
        backup_checks[0],
        backup_checks[1],
        now_secs() - took_vip
    );
    assert!(
        served > 0,
        "node0 served nothing after its restart:\n{}",
        logs(&edges)
    );
    assert_eq!(
        to_dead,
        0,
        "node0 sent requests to the dead server:\n{}",
        logs(&edges)
    );
    assert!(
        node0
            .log_text()
            .contains("first health check round complete"),
        "{}",
        logs(&edges)
    );
    // Checks every 2 s for the rest of the 10 s.
    assert!(
        !lab.holds("node1", VIP) && backup_checks.iter().all(|n| *n >= 2),
        "node1 did not check while backup: {backup_checks:?}"
    );
}

/// Health checks that take 2 s: node0, restarted with kill -9, keeps out
/// of the election until its first round has ended; only then does it
/// preempt node1. Every poll before the round's end finds the VIP on node1.
#[test]
fn a_restarted_node_takes_the_vip_only_after_its_first_check_round() {
    edge_testkit::needs_root!("a_restarted_node_takes_the_vip_only_after_its_first_check_round");
    let lab = pair_lab("hwr", 2);
    let pool = pool("/slow/2000", "5s", "3s");
    let (_backends, mut node0, node1) = pair(&lab, &pool);
    let config = std::fs::read_to_string(node0.config()).unwrap();

    let t0 = Instant::now();
    let (mut node0, _) = crash_and_restart(&lab, &mut node0, &node1, &config);
    let (mut released, mut took, mut early) = (None, None, Vec::new());
    wait_until(Duration::from_secs(15), || {
        let master = became_master(&node0);
        if released.is_none() && node0.log_text().contains("VRRP instance released") {
            released = Some(t0.elapsed());
        }
        if master && took.is_none() {
            took = Some(t0.elapsed());
            if released.is_none() {
                early.push(t0.elapsed());
            }
        }
        took.is_some()
    });
    node0.wait_ready();
    let edges = [&node0, &node1];
    let log = node0.log_plain();
    eprintln!(
        "node0 restarted with 2 s health checks: released {released:?}, VIP taken {took:?} \
         after the kill -9 (Master_Down_Interval {:?})",
        master_down_interval(150)
    );
    assert!(
        early.is_empty(),
        "node0 took the VIP before its first round:\n{}",
        logs(&edges)
    );
    let (released, took) = (
        released.unwrap_or_else(|| panic!("never released:\n{}", logs(&edges))),
        took.unwrap_or_else(|| panic!("node0 never took the VIP:\n{}", logs(&edges))),
    );
    assert!(took > released, "{took:?} <= {released:?}");
    // The log says the same, in order.
    let at = |needle: &str| {
        log.find(needle)
            .unwrap_or_else(|| panic!("no {needle:?}:\n{log}"))
    };
    let round = at("first health check round complete");
    let release = at("VRRP instance released: first health check round complete");
    assert!(round < release && release < at("to=master"), "{log}");
    assert!(lab.holds("node0", VIP) && !lab.holds("node1", VIP));
}
