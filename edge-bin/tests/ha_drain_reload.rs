//! The HA lab (root, network namespaces this test creates; see
//! `common/ha.rs`): a SIGTERM of the master finishes the requests in
//! flight before it hands the VIP over, and SIGHUP reloads under load fail
//! no request.

mod common;

use std::time::{Duration, Instant};

use common::ha::*;
use common::load::{Load, Req, outcome};
use common::{fixture, now_secs, wait_until};

#[test]
fn sigterm_of_the_master_finishes_requests_in_flight_then_hands_over() {
    edge_testkit::needs_root!("sigterm_of_the_master_finishes_requests_in_flight_then_hands_over");
    let lab = pair_lab("hat", 2);
    let (_backends, mut master, backup) = shared_pair(&lab, false);

    // Every request takes 1.5 s at the backend, so about `workers` are in
    // flight at any time. New connections get 3 s to connect: a SYN that
    // reaches node0 after it gave the VIP away is resent after 1 s.
    let mut spec = load_spec(Duration::from_secs(5));
    spec.path = "/slow/1500".into();
    spec.workers = 6;
    spec.probe = false;
    spec.connect_timeout = Duration::from_secs(3);
    let load = Load::start(&lab, "client", spec);
    assert!(
        load.wait_served(6, Duration::from_secs(10)),
        "no steady load before the stop: {:?}",
        load.so_far().last()
    );
    // The workers started together: half a backend time later every one
    // has a request waiting for its response.
    std::thread::sleep(Duration::from_millis(700));
    let at = now_secs();
    let t0 = Instant::now();
    master.signal("-TERM");
    // node0 keeps the VIP until the requests in flight at the signal are
    // answered (`drain_before_handover`, default 5 s): at most one backend
    // time, then the handover within Skew_Time.
    let handed = wait_until(
        Duration::from_millis(1500) + skew_time(100) + MARGIN,
        || lab.holds("node1", VIP),
    );
    let handover = t0.elapsed();
    let exited = master
        .wait_exit(Duration::from_secs(15))
        .map(|s| s.success());
    let stopped_in = t0.elapsed();
    let reqs = load.finish();
    let in_flight: Vec<&Req> = reqs.iter().filter(|r| r.t0 < at && r.t1 > at).collect();
    let broken: Vec<String> = in_flight
        .iter()
        .filter(|r| !r.ok)
        .map(|r| format!("{:+.3}s {}", r.t0 - at, r.err))
        .collect();
    let o = outcome(&reqs, at);
    eprintln!(
        "SIGTERM of the master: node1 held the VIP after {handover:?} (Skew_Time {:?}); \
         node0 exited after {stopped_in:?}; {} requests in flight at the signal, {} failed {broken:?}; \
         {} requests, {} first attempts failed, {} lost after one retry; errors {:?}",
        skew_time(100),
        in_flight.len(),
        broken.len(),
        o.total,
        o.failed,
        o.lost,
        o.errors
    );
    assert!(
        handed,
        "node1 did not take the VIP:\n{}",
        logs(&[&master, &backup])
    );
    assert_eq!(
        exited,
        Some(true),
        "node0 did not exit cleanly after draining:\n{}",
        logs(&[&master])
    );
    assert!(
        !in_flight.is_empty(),
        "no request was in flight at the signal"
    );
    assert!(
        broken.is_empty(),
        "requests in flight at SIGTERM failed (after the handover the client's packets of \
         node0's connections reach node1, whose kernel resets them): {broken:?}\n{}",
        logs(&[&master])
    );
    assert_eq!(o.lost, 0, "requests were lost across the stop");
}

#[test]
fn sighup_reloads_under_load_fail_no_request() {
    edge_testkit::needs_root!("sighup_reloads_under_load_fail_no_request");
    let lab = pair_lab("har", 2);
    let _b0 = backend(&lab, 0);
    let _b1 = backend(&lab, 1);
    let (both, one) = ([backend_addr(0), backend_addr(1)], [backend_addr(1)]);
    // Version k: a route answering `vK` on /version, the pool alternating
    // between both servers and one, and node0's VRRP priority changing.
    let config = |k: u8| {
        let routes = fixture("ha_version_route.toml").set("version", k).render();
        edge_config(
            0,
            &Node {
                priority: 150 + k,
                v6: false,
                nopreempt: false,
                servers: if k.is_multiple_of(2) { &both } else { &one },
                routes: &routes,
                extra: "",
            },
        )
    };
    let backup = start_edge(
        &lab,
        1,
        "a",
        &edge_config(
            1,
            &Node {
                priority: 100,
                v6: false,
                nopreempt: false,
                servers: &both,
                routes: "",
                extra: "",
            },
        ),
    );
    let mut master = start_edge(&lab, 0, "a", &config(0));
    let path = lab.dir.join("edge0-a.toml");
    let version = || {
        lab.curl(
            "client",
            &[
                "-k",
                "--resolve",
                &format!("vip.test:443:{VIP}"),
                "https://vip.test/version",
            ],
        )
    };
    assert!(
        wait_until(Duration::from_secs(15), || version().as_deref()
            == Some("v0")),
        "node0 does not serve:\n{}",
        logs(&[&master, &backup])
    );

    let load = Load::start(&lab, "client", load_spec(Duration::from_secs(8)));
    assert!(
        load.wait_served(20, Duration::from_secs(10)),
        "no steady load before the reloads: {:?}",
        load.so_far().last()
    );
    let at = now_secs();
    let mut took = Vec::new();
    for k in 1..=4u8 {
        std::fs::write(&path, config(k)).unwrap();
        let t0 = Instant::now();
        master.signal("-HUP");
        let want = format!("v{k}");
        assert!(
            wait_until(Duration::from_secs(5), || version().as_deref()
                == Some(want.as_str())),
            "reload {k} was not applied (answer {:?}):\n{}",
            version(),
            logs(&[&master])
        );
        took.push(t0.elapsed());
    }
    // A broken config is refused: the running one stays, nothing fails.
    std::fs::write(
        &path,
        config(5).replace("[[pool.server]]", "[[pool.servr]]"),
    )
    .unwrap();
    master.signal("-HUP");
    assert!(
        master.wait_log("reload refused", Duration::from_secs(5)),
        "the broken config was not refused:\n{}",
        logs(&[&master])
    );
    assert_eq!(version().as_deref(), Some("v4"));
    let reqs = load.finish();
    let o = outcome(&reqs, at);
    let during = reqs.iter().filter(|r| r.t1 > at).count();
    eprintln!(
        "4 SIGHUP reloads and a refused one under load, applied after {took:?}: {} requests \
         ({during} after the first reload), {} probe and {} other requests failed; errors {:?}",
        o.total, o.probe_failed, o.failed, o.errors
    );
    assert!(
        lab.holds("node0", VIP) && !lab.holds("node1", VIP),
        "the reloads moved the VIP"
    );
    assert_eq!(
        o.probe_failed + o.failed,
        0,
        "requests failed across reloads: {:?}\n{}",
        o.errors,
        logs(&[&master])
    );
    assert!(master.wait_exit(Duration::ZERO).is_none(), "node0 exited");
}
