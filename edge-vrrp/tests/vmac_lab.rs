//! Network-lab test of the virtual MAC (root, in namespaces this test
//! creates): the client resolves the virtual address to
//! 00-00-5E-00-01-{VRID} (IPv6: 00-00-5E-00-02-{VRID}), and after a
//! failover it reaches the address with that same MAC without any new
//! resolution (its neighbour entry is pinned, so it cannot resolve again).
//! Two edge-vrrp routers over IPv4 and IPv6 (multicast) and IPv4 unicast,
//! and edge-vrrp with keepalived (`use_vmac`) over IPv4 and IPv6, each
//! side master in turn.

use std::thread;
use std::time::{Duration, Instant};

use edge_testkit::run;
use edge_testkit::vrrp::{Kind, Router, RouterSpec, VrrpLab as Lab, keepalived_complaints};

const VRID: u8 = 51;
const INTERVAL: f64 = 0.2;

fn spec(lab: &Lab, i: usize, kind: Kind, v6: bool, unicast: bool, priority: u8) -> RouterSpec {
    RouterSpec {
        kind,
        version: 3,
        v6,
        vrid: VRID,
        priority,
        interval: INTERVAL,
        vip: if v6 {
            "2001:2::100/64".into()
        } else {
            "198.18.0.100/24".into()
        },
        unicast: unicast.then(|| (lab.addr(i, v6), lab.addr(1 - i, v6))),
        extra: vec![match kind {
            Kind::Edge => "--vmac".into(),
            Kind::Keepalived => "use_vmac".into(),
        }],
    }
}

fn run_scenario(peer: Kind, v6: bool, unicast: bool) {
    let name = format!(
        "{peer:?}/{}/{}",
        if v6 { "ipv6" } else { "ipv4" },
        if unicast { "unicast" } else { "multicast" }
    );
    let lab = Lab::new(2);
    let vip = if v6 { "2001:2::100" } else { "198.18.0.100" };
    let vmac = format!("00:00:5e:00:0{}:{VRID:02x}", if v6 { 2 } else { 1 });
    let long = Duration::from_secs(15);
    let settle = Duration::from_secs_f64(INTERVAL * 3.0);
    let check = |holder: usize, step: &str| {
        thread::sleep(settle);
        assert_eq!(
            lab.holders(vip),
            vec![holder],
            "{name} {step}: exactly router {holder} must hold {vip}"
        );
        assert!(
            lab.client_reaches(vip),
            "{name} {step}: the client cannot reach {vip}\n{}",
            lab.diagnose()
        );
    };
    let resolves_to_vmac = |step: &str| {
        lab.pin_client_neighbour(vip, None);
        assert!(lab.client_reaches(vip), "{name} {step}: no reply");
        let (mac, state) = lab
            .client_neighbour(vip)
            .unwrap_or_else(|| panic!("{name} {step}: the client has no entry for {vip}"));
        assert_eq!(
            mac,
            vmac,
            "{name} {step}: the client resolved {vip} to {mac} ({state}), not the virtual MAC \
             (router MACs: {} and {})",
            lab.mac(0),
            lab.mac(1)
        );
        lab.pin_client_neighbour(vip, Some(&vmac));
    };

    // Edge (150) master, the peer (100) backup.
    let mut peer_router = Router::start(&lab, 1, &spec(&lab, 1, peer, v6, unicast, 100), "peer-1");
    let mut edge = Router::start(
        &lab,
        0,
        &spec(&lab, 0, Kind::Edge, v6, unicast, 150),
        "edge-1",
    );
    lab.wait_holder(0, vip, Instant::now(), long);
    check(0, "edge master");
    resolves_to_vmac("edge master");

    // Planned stop of the edge: the peer takes over and the client
    // reaches it through its pinned entry; the macvlan is gone and the
    // base interface's settings are back.
    assert!(edge.stop(), "{name}: edge did not exit cleanly");
    lab.wait_holder(1, vip, Instant::now(), long);
    check(1, "after edge stop");
    let links = run(&["ip", "-n", lab.ns(0), "-o", "link", "show"]);
    assert!(
        !links.contains("vrrp"),
        "{name}: the macvlan was left behind:\n{links}"
    );
    if !v6 {
        for key in ["arp_ignore", "arp_filter", "arp_announce"] {
            let value = run(&[
                "ip",
                "netns",
                "exec",
                lab.ns(0),
                "sysctl",
                "-n",
                &format!("net.ipv4.conf.eth0.{key}"),
            ]);
            assert_eq!(value.trim(), "0", "{name}: {key} not restored on eth0");
        }
    }
    // The peer itself answers with the virtual MAC too.
    resolves_to_vmac("peer master");

    // The edge returns and preempts; the pinned entry still works.
    let mut edge = Router::start(
        &lab,
        0,
        &spec(&lab, 0, Kind::Edge, v6, unicast, 150),
        "edge-2",
    );
    edge.wait_started(Kind::Edge, long);
    lab.wait_holder(0, vip, Instant::now(), long);
    check(0, "edge preempts");

    // The edge host crashes: the peer takes over, same MAC.
    edge.crash();
    lab.set_link(0, false);
    lab.wait_holder(1, vip, Instant::now(), long);
    check(1, "after edge crash");
    assert_eq!(
        lab.client_neighbour(vip),
        Some((vmac.clone(), "PERMANENT".into())),
        "{name}: the pinned entry changed"
    );
    assert!(peer_router.stop(), "{name}: the peer did not exit cleanly");
    let log = peer_router.log_text();
    if peer == Kind::Keepalived {
        let complaints = keepalived_complaints(&log);
        assert!(
            complaints.is_empty(),
            "{name}: keepalived complained:\n{}",
            complaints.join("\n")
        );
    }
}

/// All scenarios at once, each in its own lab.
#[test]
fn virtual_mac_survives_failover() {
    edge_testkit::needs_root!("virtual_mac_survives_failover");
    let scenarios = [
        (Kind::Edge, false, false),
        (Kind::Edge, true, false),
        (Kind::Edge, false, true),
        (Kind::Keepalived, false, false),
        (Kind::Keepalived, true, false),
    ];
    let handles: Vec<_> = scenarios
        .into_iter()
        .map(|(peer, v6, unicast)| {
            let name = format!("{peer:?}/{v6}/{unicast}");
            (
                name.clone(),
                thread::Builder::new()
                    .name(name)
                    .spawn(move || run_scenario(peer, v6, unicast))
                    .unwrap(),
            )
        })
        .collect();
    let failed: Vec<String> = handles
        .into_iter()
        .filter_map(|(name, h)| h.join().is_err().then_some(name))
        .collect();
    assert!(failed.is_empty(), "failed scenarios: {failed:?}");
}
