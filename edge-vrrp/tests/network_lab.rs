//! Network-lab tests (root, in namespaces this test creates): two edge-vrrp
//! routers, and edge-vrrp with keepalived, for VRRPv3 over IPv4 and IPv6
//! and VRRPv2, multicast and unicast. Each side is master in turn, after a
//! crash and after a planned stop; the checks are what an operator sees:
//! one holder of the address, a client that still reaches it, takeover
//! within the RFC's timers, and no complaints in keepalived's log.

use std::thread;
use std::time::{Duration, Instant};

use edge_testkit::vrrp::{self, Kind, Router, RouterSpec, VrrpLab as Lab, keepalived_complaints};

/// Scheduling slack on top of the RFC timers (a loaded 2-core machine).
const MARGIN: Duration = Duration::from_millis(600);

#[derive(Clone, Copy, Debug)]
struct Scenario {
    peer: Kind,
    version: u8,
    v6: bool,
    unicast: bool,
}

impl Scenario {
    fn name(&self) -> String {
        format!(
            "{:?}/v{}/{}/{}",
            self.peer,
            self.version,
            if self.v6 { "ipv6" } else { "ipv4" },
            if self.unicast { "unicast" } else { "multicast" }
        )
    }

    /// Short adverts where the version allows them, to keep the suite quick.
    fn interval(&self) -> f64 {
        if self.version == 3 { 0.2 } else { 1.0 }
    }

    fn vip(&self) -> (&'static str, &'static str) {
        if self.v6 {
            ("2001:2::100", "2001:2::100/64")
        } else {
            ("198.18.0.100", "198.18.0.100/24")
        }
    }

    fn spec(&self, lab: &Lab, i: usize, kind: Kind, priority: u8) -> RouterSpec {
        let unicast = self
            .unicast
            .then(|| (lab.addr(i, self.v6), lab.addr(1 - i, self.v6)));
        RouterSpec {
            kind,
            version: self.version,
            v6: self.v6,
            vrid: 51,
            priority,
            interval: self.interval(),
            vip: self.vip().1.to_owned(),
            unicast,
            extra: vec![],
        }
    }

    fn skew(&self, priority: u8) -> Duration {
        Duration::from_secs_f64(self.interval() * f64::from(256 - u32::from(priority)) / 256.0)
    }

    fn master_down(&self, priority: u8) -> Duration {
        Duration::from_secs_f64(self.interval() * 3.0) + self.skew(priority)
    }
}

/// The whole sequence for one scenario. Router 0 is edge-vrrp, router 1
/// the peer (edge-vrrp or keepalived).
fn run_scenario(s: Scenario) {
    let name = s.name();
    let lab = Lab::new(2);
    let (vip, _) = s.vip();
    let interval = Duration::from_secs_f64(s.interval());
    let settle = interval * 3;
    let long = s.master_down(1) * 3 + Duration::from_secs(5);
    let mut logs: Vec<(Kind, Router)> = Vec::new();
    let mut tag = 0;
    let mut start = |lab: &Lab, i: usize, kind: Kind, prio: u8| {
        tag += 1;
        Router::start(lab, i, &s.spec(lab, i, kind, prio), &format!("r{i}-{tag}"))
    };
    let one_holder = |lab: &Lab, who: usize, step: &str| {
        thread::sleep(settle);
        assert_eq!(
            lab.holders(vip),
            vec![who],
            "{name} {step}: exactly router {who} must hold {vip}"
        );
        assert!(
            lab.client_reaches(vip),
            "{name} {step}: the client cannot reach {vip}"
        );
    };

    // 1. edge 150, peer 100: edge becomes master.
    let mut peer = start(&lab, 1, s.peer, 100);
    let mut edge = start(&lab, 0, Kind::Edge, 150);
    lab.wait_holder(0, vip, Instant::now(), long);
    one_holder(&lab, 0, "edge master");
    assert!(
        edge.out_text().contains(r#""state":"master""#),
        "{name}: no JSON state line"
    );

    // 2. The edge host crashes: the peer takes over after its
    //    Master_Down_Interval (counted from the last advert it heard).
    let t0 = Instant::now();
    edge.crash();
    lab.set_link(0, false);
    let took = lab.wait_holder(1, vip, t0, long);
    let mdi = s.master_down(100);
    assert!(
        took + interval + Duration::from_millis(50) >= mdi && took <= mdi + MARGIN,
        "{name}: peer took over {took:?} after the crash; Master_Down_Interval {mdi:?}"
    );
    one_holder(&lab, 1, "after edge crash");
    logs.push((Kind::Edge, edge));

    // 3. The edge comes back (its crashed run's address is cleaned up)
    //    and preempts.
    lab.set_link(0, true);
    let mut edge = start(&lab, 0, Kind::Edge, 150);
    edge.wait_started(Kind::Edge, long);
    assert!(
        !lab.has_address(0, vip),
        "{name}: the crashed run's address was not cleaned up"
    );
    let t0 = Instant::now();
    lab.wait_holder(0, vip, t0, long);
    one_holder(&lab, 0, "edge preempts");

    // 4. Planned stop of the edge: priority 0, the peer takes over after
    //    its Skew_Time.
    let t0 = Instant::now();
    assert!(edge.stop(), "{name}: edge did not exit cleanly on SIGTERM");
    let took = lab.wait_holder(1, vip, t0, long);
    let skew = s.skew(100);
    assert!(
        took + Duration::from_millis(20) >= skew && took <= skew + MARGIN,
        "{name}: peer took over {took:?} after the planned stop; Skew_Time {skew:?}"
    );
    one_holder(&lab, 1, "after edge stop");
    logs.push((Kind::Edge, edge));

    // 5. The edge returns with priority 50 and stays backup.
    let mut edge = start(&lab, 0, Kind::Edge, 50);
    thread::sleep(s.master_down(50) + settle);
    one_holder(&lab, 1, "edge as backup");

    // 6. The peer crashes: the edge takes over after its own
    //    Master_Down_Interval.
    let t0 = Instant::now();
    peer.crash();
    lab.set_link(1, false);
    let took = lab.wait_holder(0, vip, t0, long);
    let mdi = s.master_down(50);
    assert!(
        took + interval + Duration::from_millis(50) >= mdi && took <= mdi + MARGIN,
        "{name}: edge took over {took:?} after the peer crashed; Master_Down_Interval {mdi:?}"
    );
    one_holder(&lab, 0, "after peer crash");
    logs.push((s.peer, peer));

    // 7. The peer returns with priority 100 and preempts the edge.
    lab.set_link(1, true);
    let mut peer = start(&lab, 1, s.peer, 100);
    peer.wait_started(s.peer, long);
    lab.wait_holder(1, vip, Instant::now(), long);
    one_holder(&lab, 1, "peer preempts");

    // 8. Planned stop of the peer: the edge takes over after Skew_Time,
    //    counted from the priority-0 advert (keepalived takes a while
    //    between SIGTERM and sending it; that is not ours to measure).
    let t0 = Instant::now();
    peer.terminate();
    let t0 = match s.peer {
        Kind::Edge => t0,
        Kind::Keepalived => peer.wait_log("sent 0 priority", long),
    };
    let took = lab.wait_holder(0, vip, t0, long);
    assert!(peer.stop(), "{name}: peer did not exit cleanly");
    let skew = s.skew(50);
    assert!(
        took + Duration::from_millis(30) >= skew && took <= skew + MARGIN,
        "{name}: edge took over {took:?} after the peer's planned stop; Skew_Time {skew:?}"
    );
    one_holder(&lab, 0, "after peer stop");
    logs.push((s.peer, peer));

    // 9. Clean shutdown removes the address.
    assert!(edge.stop(), "{name}: edge did not exit cleanly");
    assert!(
        lab.holders(vip).is_empty(),
        "{name}: address left after a clean shutdown"
    );
    logs.push((Kind::Edge, edge));

    for (kind, r) in &logs {
        let log = r.log_text();
        match kind {
            Kind::Keepalived => {
                let complaints = keepalived_complaints(&log);
                assert!(
                    complaints.is_empty(),
                    "{name}: keepalived complained:\n{}",
                    complaints.join("\n")
                );
                assert!(
                    log.contains("Entering MASTER STATE"),
                    "{name}: keepalived log looks wrong:\n{log}"
                );
            }
            Kind::Edge => {
                let bad: Vec<&str> = log
                    .lines()
                    .filter(|l| l.contains("discarding VRRP packets"))
                    .collect();
                assert!(
                    bad.is_empty(),
                    "{name}: edge-vrrp discarded its peer's packets:\n{}",
                    bad.join("\n")
                );
            }
        }
    }
}

/// Runs the scenarios at once (each in its own lab), then reports every
/// failure.
fn run_all(scenarios: Vec<Scenario>) {
    let handles: Vec<_> = scenarios
        .into_iter()
        .map(|s| {
            (
                s.name(),
                thread::Builder::new()
                    .name(s.name())
                    .spawn(move || run_scenario(s))
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

fn matrix(peer: Kind, unicast: bool) -> Vec<Scenario> {
    [(3, false), (3, true), (2, false)]
        .into_iter()
        .map(|(version, v6)| Scenario {
            peer,
            version,
            v6,
            unicast,
        })
        .collect()
}

/// The whole matrix at once (each scenario in its own lab, so they run
/// concurrently and the suite takes as long as its slowest, a VRRPv2 one):
/// edge+edge and edge+keepalived, v3/IPv4, v3/IPv6 and v2/IPv4, multicast
/// and unicast.
#[test]
fn interop_matrix() {
    edge_testkit::needs_root!("interop_matrix");
    assert!(
        std::path::Path::new(vrrp::KEEPALIVED).exists(),
        "keepalived is not installed"
    );
    let mut all = Vec::new();
    for peer in [Kind::Edge, Kind::Keepalived] {
        for unicast in [false, true] {
            all.extend(matrix(peer, unicast));
        }
    }
    run_all(all);
}

/// Two edge routers, VRRPv3 over IPv4 multicast: router 0 (priority 150)
/// master, router 1 (100) backup.
fn edge_pair() -> (Scenario, Lab, Router, Router) {
    let s = Scenario {
        peer: Kind::Edge,
        version: 3,
        v6: false,
        unicast: false,
    };
    let lab = Lab::new(2);
    let backup = Router::start(&lab, 1, &s.spec(&lab, 1, Kind::Edge, 100), "b");
    let master = Router::start(&lab, 0, &s.spec(&lab, 0, Kind::Edge, 150), "m");
    lab.wait_holder(0, s.vip().0, Instant::now(), Duration::from_secs(10));
    (s, lab, backup, master)
}

/// Fault forced through the driver (what edge-bin does when its own
/// health checks fail): the master hands over with priority 0 and drops
/// the address; cleared, it comes back as backup and preempts.
#[test]
fn fault_hands_over_and_recovers() {
    edge_testkit::needs_root!("fault_hands_over_and_recovers");
    let (s, lab, _backup, mut master) = edge_pair();
    let (vip, _) = s.vip();
    let long = Duration::from_secs(10);
    let t0 = Instant::now();
    master.send_signal("-USR1");
    let took = lab.wait_holder(1, vip, t0, long);
    assert!(took <= s.skew(100) + MARGIN, "fault handover took {took:?}");
    thread::sleep(Duration::from_millis(600));
    assert_eq!(lab.holders(vip), vec![1]);
    assert!(
        master.out_text().contains(r#""state":"fault""#),
        "{}",
        master.out_text()
    );
    assert!(lab.client_reaches(vip));
    master.send_signal("-USR2");
    lab.wait_holder(0, vip, Instant::now(), long);
    thread::sleep(Duration::from_millis(600));
    assert_eq!(lab.holders(vip), vec![0]);
    assert!(lab.client_reaches(vip));
    assert!(master.stop());
}

/// Bad configuration is refused at start with the field named.
#[test]
fn unknown_interface_and_bad_values_are_refused() {
    edge_testkit::needs_root!("unknown_interface_and_bad_values_are_refused");
    let lab = Lab::new(1);
    let bin = vrrp::vrrp_binary();
    let cases: [(&[&str], &str); 4] = [
        (
            &[
                "--interface",
                "nope0",
                "--vrid",
                "51",
                "--priority",
                "100",
                "--vip",
                "198.18.0.100/24",
            ],
            "interface",
        ),
        (
            &[
                "--interface",
                "eth0",
                "--vrid",
                "0",
                "--priority",
                "100",
                "--vip",
                "198.18.0.100/24",
            ],
            "vrid",
        ),
        (
            &[
                "--interface",
                "eth0",
                "--vrid",
                "5",
                "--priority",
                "100",
                "--vip",
                "198.18.0.100/24",
                "--vip",
                "2001:2::1",
            ],
            "virtual_addresses",
        ),
        (
            &[
                "--interface",
                "eth0",
                "--vrid",
                "5",
                "--version",
                "2",
                "--advert-interval",
                "0.5",
                "--vip",
                "198.18.0.100/24",
            ],
            "advert_interval",
        ),
    ];
    for (args, field) in cases {
        let out = std::process::Command::new("ip")
            .args(["netns", "exec", lab.ns(0)])
            .arg(&bin)
            .args(args)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?} was accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(field),
            "{args:?}: error does not name {field}: {err}"
        );
    }
}

/// Link state from netlink notifications: the master's interface goes
/// down (it cannot even send priority 0) → it enters Fault and drops the
/// address, the backup takes over within its Master_Down_Interval; the
/// link comes back → the router restarts as backup and preempts again.
#[test]
fn link_down_is_fault_and_link_up_settles() {
    edge_testkit::needs_root!("link_down_is_fault_and_link_up_settles");
    let (s, lab, _backup, mut master) = edge_pair();
    let (vip, _) = s.vip();
    let long = Duration::from_secs(10);
    thread::sleep(Duration::from_millis(600));

    let t0 = Instant::now();
    lab.set_link(0, false);
    let took = lab.wait_holder(1, vip, t0, long);
    assert!(
        took <= s.master_down(100) + MARGIN,
        "takeover after link down took {took:?}"
    );
    let deadline = Instant::now() + long;
    while !master.out_text().contains(r#""state":"fault""#) {
        assert!(Instant::now() < deadline, "no fault: {}", master.out_text());
        thread::sleep(Duration::from_millis(10));
    }
    assert!(
        !lab.has_address(0, vip),
        "the router with its link down still holds {vip}"
    );
    assert!(lab.client_reaches(vip));

    lab.set_link(0, true);
    lab.wait_holder(0, vip, Instant::now(), long);
    thread::sleep(Duration::from_millis(600));
    assert_eq!(lab.holders(vip), vec![0]);
    assert!(lab.client_reaches(vip));
    let out = master.out_text();
    assert!(
        out.lines()
            .any(|l| l.contains(r#""from":"fault""#) && l.contains(r#""state":"backup""#)),
        "no fault -> backup transition: {out}"
    );
    assert!(
        !master.log_text().contains("polling the link"),
        "{}",
        master.log_text()
    );
    assert!(master.stop());
}

/// VRRPv2 simple text password with keepalived (`authentication {
/// auth_type PASS ... }`, as in configurations being migrated): with the
/// same password they elect one master and hand over cleanly; with a
/// different one each discards the other's adverts (and says so).
#[test]
fn v2_password_interoperates_with_keepalived() {
    edge_testkit::needs_root!("v2_password_interoperates_with_keepalived");
    let s = Scenario {
        peer: Kind::Keepalived,
        version: 2,
        v6: false,
        unicast: false,
    };
    let lab = Lab::new(2);
    let (vip, _) = s.vip();
    let long = Duration::from_secs(15);
    let mut keepalived_spec = s.spec(&lab, 1, Kind::Keepalived, 100);
    keepalived_spec
        .extra
        .push("authentication {\n    auth_type PASS\n    auth_pass secret\n  }".into());
    let edge_spec = |password: &str| {
        let mut spec = s.spec(&lab, 0, Kind::Edge, 150);
        spec.extra = vec!["--auth-pass".into(), password.into()];
        spec
    };
    let keepalived = Router::start(&lab, 1, &keepalived_spec, "k");
    let mut edge = Router::start(&lab, 0, &edge_spec("secret"), "e1");
    lab.wait_holder(0, vip, Instant::now(), long);
    thread::sleep(Duration::from_secs(3));
    assert_eq!(lab.holders(vip), vec![0]);
    assert!(lab.client_reaches(vip));
    let t0 = Instant::now();
    assert!(edge.stop());
    let took = lab.wait_holder(1, vip, t0, long);
    assert!(took <= s.skew(100) + MARGIN, "handover took {took:?}");
    let complaints = keepalived_complaints(&keepalived.log_text());
    assert!(complaints.is_empty(), "{}", complaints.join("\n"));
    assert!(
        !edge.log_text().contains("discarding VRRP packets"),
        "{}",
        edge.log_text()
    );

    // Another password: neither hears the other.
    let edge = Router::start(&lab, 0, &edge_spec("other"), "e2");
    lab.wait_holder(0, vip, Instant::now(), long);
    assert_eq!(lab.holders(vip), vec![0, 1]);
    assert!(
        edge.log_text().contains("wrong authentication password"),
        "edge did not report the password mismatch: {}",
        edge.log_text()
    );
    let deadline = Instant::now() + long;
    while keepalived_complaints(&keepalived.log_text()).is_empty() {
        assert!(
            Instant::now() < deadline,
            "keepalived did not report the password mismatch: {}",
            keepalived.log_text()
        );
        thread::sleep(Duration::from_millis(50));
    }
}
