//! The fleet lab (root, network namespaces this test creates): three edge
//! nodes announce one service address through a routing daemon beside
//! them (node0 and node1 FRR, node2 BIRD), over eBGP with BFD to a router
//! namespace running FRR with ECMP (`maximum-paths`, L4 multipath hash);
//! a client reaches the address through the router. Each node's backend
//! answers with the node's name. One test runs the phases in order on one
//! lab (a lab of five namespaces and seven daemons is too heavy to build
//! four times on a small CI machine): flows spread over the three nodes; a
//! node whose pool fails withdraws and comes back; SIGTERM of a node under
//! load withdraws before the listeners close; a whole node that dies
//! (silent link, kill -9) is noticed by BFD. Every wait is bounded.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::load::{self, Load, LoadSpec, outcome};
use common::{EDGE, Proc, fixture, now_secs, wait_until};
use edge_testkit::lab::Lab;

/// The anycast service address (outside the lab's /24: reached through the router).
const SERVICE: &str = "198.19.0.10";
const ROUTER: &str = "198.18.0.1";
const CLIENT: u8 = 10;
/// BFD: 100 ms intervals, multiplier 3 (down after 300 ms of silence).
const BFD_DETECT: Duration = Duration::from_millis(300);
/// Slack for a loaded 2-core machine.
const MARGIN: Duration = Duration::from_secs(2);
/// What each node's `[[anycast]]` waits at stop between withdrawing and draining.
const WITHDRAW_DELAY: Duration = Duration::from_secs(1);

fn node_ip(i: usize) -> String {
    format!("198.18.0.{}", 11 + i)
}

fn sysctl(lab: &Lab, host: &str, settings: &[&str]) {
    for s in settings {
        let out = lab.exec(host, &["sysctl", "-qw", s]);
        assert!(out.status.success(), "sysctl {s} in {host}: {out:?}");
    }
}

/// A per-host directory the FRR daemons (user frr) can write.
fn frr_dir(lab: &Lab, host: &str) -> std::path::PathBuf {
    let d = lab.dir.join(format!("frr-{host}"));
    std::fs::create_dir_all(&d).unwrap();
    common::run(&["chown", "frr:frr", &d.to_string_lossy()]);
    d
}

/// zebra, bfdd and bgpd in `host`, sockets and logs in their own
/// directory, in the foreground (killed with the lab).
fn start_frr(lab: &Lab, host: &str, bgpd: &str) -> Vec<Proc> {
    let d = frr_dir(lab, host);
    let bfdd = "bfd\n profile fast\n  detect-multiplier 3\n  receive-interval 100\n  transmit-interval 100\n !\n!\n";
    let mut procs = Vec::new();
    for (daemon, conf) in [
        ("zebra", format!("hostname {host}\n")),
        ("bfdd", bfdd.to_owned()),
        ("bgpd", bgpd.to_owned()),
    ] {
        let p = |f: &str| d.join(f).to_string_lossy().into_owned();
        std::fs::write(p(&format!("{daemon}.conf")), conf).unwrap();
        let bin = format!("/usr/lib/frr/{daemon}");
        let (zserv, pid, vty, cfg) = (
            p("zserv.api"),
            p(&format!("{daemon}.pid")),
            p(""),
            p(&format!("{daemon}.conf")),
        );
        let log = format!("file:{}", p(&format!("{daemon}.log")));
        let ctl = p("bfdd.sock");
        let mut args = vec![
            bin.as_str(),
            "-u",
            "frr",
            "-g",
            "frr",
            "-z",
            &zserv,
            "-i",
            &pid,
            "--vty_socket",
            &vty,
            "-f",
            &cfg,
            "-P",
            "0",
            "--log",
            &log,
        ];
        if daemon == "bfdd" {
            args.extend(["--bfdctl", &ctl]);
        }
        procs.push(lab.spawn(host, &args, &format!("{host}-{daemon}.out")));
        if daemon == "zebra" {
            // bfdd and bgpd connect to zebra's socket.
            let zs = d.join("zserv.api");
            assert!(wait_until(Duration::from_secs(5), || zs.exists()));
        }
    }
    procs
}

/// The router: FRR with ECMP over the three nodes' sessions, BFD on each.
fn router_bgpd() -> String {
    let mut s = String::from(
        "frr defaults datacenter\nrouter bgp 65000\n bgp router-id 198.18.0.1\n no bgp ebgp-requires-policy\n neighbor fleet peer-group\n neighbor fleet remote-as 65001\n neighbor fleet bfd\n neighbor fleet bfd profile fast\n",
    );
    for i in 0..3 {
        s += &format!(" neighbor {} peer-group fleet\n", node_ip(i));
    }
    s + " address-family ipv4 unicast\n  maximum-paths 8\n exit-address-family\n!\n"
}

/// A node with FRR: the connected routes of the dummy interface whose
/// prefixes are in the anycast range, to the router.
fn node_bgpd(i: usize) -> String {
    format!(
        "frr defaults datacenter\nip prefix-list ANYCAST seq 5 permit 198.19.0.0/24 ge 32\nroute-map ANYCAST permit 10\n match ip address prefix-list ANYCAST\n set origin igp\n!\nrouter bgp 65001\n bgp router-id {ip}\n no bgp ebgp-requires-policy\n neighbor {ROUTER} remote-as 65000\n neighbor {ROUTER} bfd\n neighbor {ROUTER} bfd profile fast\n address-family ipv4 unicast\n  redistribute connected route-map ANYCAST\n exit-address-family\n!\n",
        ip = node_ip(i)
    )
}

/// A node with BIRD: `protocol direct` on the dummy interface, exported.
fn start_bird(lab: &Lab, host: &str, i: usize) -> Proc {
    let conf = format!(
        r#"router id {ip};
log stderr all;
protocol device {{ scan time 10; }}
protocol direct anycast {{ ipv4; interface "edge-anycast0"; }}
protocol bfd {{ interface "eth0" {{ min rx interval 100 ms; min tx interval 100 ms; multiplier 3; }}; }}
protocol bgp uplink {{
    local {ip} as 65001;
    neighbor {ROUTER} as 65000;
    bfd on;
    hold time 9;
    keepalive time 3;
    error wait time 1, 5;
    connect retry time 2;
    ipv4 {{ import none; export where proto = "anycast"; }};
}}
"#,
        ip = node_ip(i)
    );
    let cfg = lab.write(&format!("bird-{host}.conf"), conf);
    let ctl = lab.dir.join(format!("bird-{host}.ctl"));
    lab.spawn(
        host,
        &[
            "bird",
            "-f",
            "-c",
            &cfg.to_string_lossy(),
            "-s",
            &ctl.to_string_lossy(),
        ],
        &format!("{host}-bird.out"),
    )
}

fn edge_config(i: usize) -> String {
    let pool = fixture("ha_pool.toml")
        .set("servers", "[[pool.server]]\naddress = \"127.0.0.1:8080\"\n")
        .render();
    format!(
        r#"# Fleet node {i}: HTTPS on the anycast address, announced while the pool is up.
[https]
listen = ["{SERVICE}:443"]
default_certificate = "fallback"

[[certificate]]
name = "fallback"
names = ["fleet.test"]
self_signed = true

[[route]]
pool = "app"
{pool}
[management]

[[anycast]]
addresses = ["{SERVICE}/32"]
withdraw_delay = "{}ms"
"#,
        WITHDRAW_DELAY.as_millis()
    )
}

/// The router's next hops for the service address.
fn next_hops(lab: &Lab) -> BTreeSet<String> {
    let out = lab.exec("router", &["ip", "route", "show", SERVICE]);
    let text = String::from_utf8_lossy(&out.stdout);
    let words: Vec<&str> = text.split_whitespace().collect();
    words
        .windows(2)
        .filter(|w| w[0] == "via")
        .map(|w| w[1].to_owned())
        .collect()
}

fn wait_hops(lab: &Lab, want: &[usize], limit: Duration) -> Option<Duration> {
    let want: BTreeSet<String> = want.iter().map(|i| node_ip(*i)).collect();
    let t0 = Instant::now();
    wait_until(limit, || next_hops(lab) == want).then(|| t0.elapsed())
}

fn load_spec(duration: Duration) -> LoadSpec {
    LoadSpec {
        ip: SERVICE.into(),
        port: 443,
        host: "fleet.test".into(),
        path: "/".into(),
        duration,
        max: 5000,
        workers: 4,
        probe: true,
        probe_pause: Duration::from_millis(10),
        connect_timeout: Duration::from_secs(1),
        timeout: Duration::from_secs(5),
        retry_after: Duration::from_millis(200),
        cafile: None,
    }
}

/// The node's `edge_anycast_announced` gauge for the service address.
fn announced(lab: &Lab, host: &str) -> String {
    let metrics = lab
        .curl(host, &["http://127.0.0.1:9900/metrics"])
        .unwrap_or_default();
    let series = format!("edge_anycast_announced{{address=\"{SERVICE}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&series))
        .unwrap_or("absent")
        .to_owned()
}

/// Requests served per node (by the backend's answer `nodeN via ...`).
fn per_node(reqs: &[load::Req]) -> [usize; 3] {
    let mut n = [0; 3];
    for r in reqs.iter().filter(|r| r.ok) {
        for (i, c) in n.iter_mut().enumerate() {
            if r.body.starts_with(&format!("node{i} ")) {
                *c += 1;
            }
        }
    }
    n
}

/// The lab: router .1, client .10, nodes .11-.13 each with edge, its
/// routing daemon and a backend on 127.0.0.1:8080.
struct Fleet {
    lab: Lab,
    edges: Vec<common::Edge>,
    routing: Vec<Vec<Proc>>,
    _backends: Vec<Proc>,
}

fn fleet() -> Fleet {
    let mut lab = Lab::new("flt");
    lab.host("router", 1);
    lab.host("client", CLIENT);
    for i in 0..3 {
        lab.host(&format!("node{i}"), 11 + i as u8);
    }
    // The router forwards back out of the interface it received on: no
    // redirects, or the client would bypass ECMP. L4 hash for multipath.
    sysctl(
        &lab,
        "router",
        &[
            "net.ipv4.ip_forward=1",
            "net.ipv4.conf.all.send_redirects=0",
            "net.ipv4.conf.eth0.send_redirects=0",
            "net.ipv4.fib_multipath_hash_policy=1",
        ],
    );
    sysctl(&lab, "client", &["net.ipv4.conf.all.accept_redirects=0"]);
    lab.ip(
        "client",
        &["route", "add", &format!("{SERVICE}/32"), "via", ROUTER],
    );
    let mut routing = vec![start_frr(&lab, "router", &router_bgpd())];
    let mut backends = Vec::new();
    let mut edges = Vec::new();
    for i in 0..3 {
        let host = format!("node{i}");
        backends.push(load::backend(&lab, &host, &host, "127.0.0.1", 8080, &host));
        routing.push(if i < 2 {
            start_frr(&lab, &host, &node_bgpd(i))
        } else {
            vec![start_bird(&lab, &host, i)]
        });
        let cfg = lab.write(&format!("edge{i}.toml"), edge_config(i));
        edges.push(lab.edge(&host, EDGE, cfg).start());
    }
    Fleet {
        lab,
        edges,
        routing,
        _backends: backends,
    }
}

impl Fleet {
    fn logs(&self) -> String {
        let vty = self.lab.dir.join("frr-router");
        let out = self.lab.exec(
            "router",
            &[
                "vtysh",
                "--vty_socket",
                &vty.to_string_lossy(),
                "-c",
                "show bgp summary",
                "-c",
                &format!("show bgp ipv4 unicast {SERVICE}"),
                "-c",
                "show bfd peers brief",
            ],
        );
        let mut s = format!("--- router:\n{}", String::from_utf8_lossy(&out.stdout));
        s += &common::log_tails(&self.edges.iter().collect::<Vec<_>>());
        for (i, r) in self.routing.iter().enumerate() {
            s += &format!(
                "\n--- routing {i}:\n{}",
                common::log_tails(&r.iter().collect::<Vec<_>>())
            );
        }
        s
    }
}

#[test]
fn fleet_behind_bgp_ecmp_spreads_withdraws_on_failure_and_drains_on_stop() {
    edge_testkit::needs_root!(
        "fleet_behind_bgp_ecmp_spreads_withdraws_on_failure_and_drains_on_stop"
    );
    let t0 = Instant::now();
    let mut f = fleet();
    let up = wait_hops(&f.lab, &[0, 1, 2], Duration::from_secs(20));
    assert!(
        up.is_some(),
        "the router did not learn the address from all three nodes (next hops {:?}):\n{}",
        next_hops(&f.lab),
        f.logs()
    );
    eprintln!(
        "fleet up: three next hops at the router {:?} after start",
        t0.elapsed()
    );

    // (a) Flows spread over all three nodes.
    let mut spec = load_spec(Duration::from_secs(3));
    spec.probe = false;
    let reqs = Load::start(&f.lab, "client", spec).finish();
    let counts = per_node(&reqs);
    let total: usize = counts.iter().sum();
    eprintln!(
        "(a) ECMP spread: {total} requests (new connection each): node0 {}, node1 {}, node2 {} (BIRD)",
        counts[0], counts[1], counts[2]
    );
    assert_eq!(
        total,
        reqs.len(),
        "requests failed: {:?}",
        outcome(&reqs, 0.0)
    );
    for (i, c) in counts.iter().enumerate() {
        assert!(
            *c * 10 >= total,
            "node{i} got {c} of {total} requests: not spread"
        );
    }

    // (b) node0's only backend fails: withdrawn; it recovers: announced.
    load::set_down(&f.lab, "node0", true);
    let gone = wait_hops(&f.lab, &[1, 2], MARGIN * 2);
    eprintln!("(b) node0's pool down: route via node0 withdrawn at the router after {gone:?}");
    assert!(gone.is_some(), "node0 was not withdrawn:\n{}", f.logs());
    // Withdrawn, the address stays local: node0's listener still answers.
    let local = f.lab.curl(
        "node0",
        &[
            "-k",
            "--resolve",
            &format!("fleet.test:443:{SERVICE}"),
            "https://fleet.test/",
        ],
    );
    assert!(local.is_some(), "node0's listener broke on withdrawal");
    assert_eq!(
        announced(&f.lab, "node0"),
        "0",
        "node0's gauge while withdrawn"
    );
    load::set_down(&f.lab, "node0", false);
    let back = wait_hops(&f.lab, &[0, 1, 2], MARGIN * 2);
    eprintln!("(b) node0's pool up again: announced, three next hops after {back:?}");
    assert!(back.is_some(), "node0 did not come back:\n{}", f.logs());
    assert_eq!(
        announced(&f.lab, "node0"),
        "1",
        "node0's gauge once announced"
    );

    // (c) SIGTERM of node1 under load: withdrawn before its listener closes.
    let load = Load::start(&f.lab, "client", load_spec(Duration::from_secs(4)));
    assert!(load.wait_served(20, Duration::from_secs(10)));
    let stopped = now_secs();
    let t_term = Instant::now();
    f.edges[1].signal("-TERM");
    let (mut withdrawn, mut closed) = (None, None);
    wait_until(WITHDRAW_DELAY + MARGIN * 3, || {
        if withdrawn.is_none() && !next_hops(&f.lab).contains(&node_ip(1)) {
            withdrawn = Some(t_term.elapsed());
        }
        if closed.is_none() {
            let out = f
                .lab
                .exec("node1", &["ss", "-Hltn", "src", &format!("{SERVICE}:443")]);
            if String::from_utf8_lossy(&out.stdout).trim().is_empty() {
                closed = Some(t_term.elapsed());
            }
        }
        withdrawn.is_some() && closed.is_some()
    });
    let (status, _) = f.edges[1].wait_exited(Duration::from_secs(15));
    let exited = t_term.elapsed();
    let reqs = load.finish();
    let o = outcome(&reqs, stopped);
    let failed_at: Vec<String> = reqs
        .iter()
        .filter(|r| !r.ok)
        .map(|r| format!("{:.2}s", r.t1 - stopped))
        .collect();
    let after = per_node(
        &reqs
            .iter()
            .filter(|r| r.t0 > stopped + 0.5)
            .cloned()
            .collect::<Vec<_>>(),
    );
    eprintln!(
        "(c) SIGTERM of node1 under load: route withdrawn after {withdrawn:?}, listener closed after {closed:?}, \
         exit after {exited:?} ({status}); {} requests, {} probe requests failed, {} first attempts of the \
         retry-once clients failed (at {failed_at:?} after the signal: connections in flight when the router \
         rehashed them onto the other nodes), {} lost after one retry; errors {:?}; served after the stop: {after:?}",
        o.total, o.probe_failed, o.failed, o.lost, o.errors
    );
    let (w, c) = (
        withdrawn.expect("node1 never withdrawn"),
        closed.expect("node1's listener never closed"),
    );
    assert!(
        w < c,
        "the listener closed ({c:?}) before the withdrawal ({w:?})"
    );
    assert!(
        c >= WITHDRAW_DELAY,
        "the listener closed before withdraw_delay: {c:?}"
    );
    assert!(status.success());
    assert_eq!(o.lost, 0, "requests lost after one retry:\n{}", f.logs());
    assert_eq!(after[1], 0, "node1 served after it stopped");

    // (d) kill -9 of node2 (edge and BIRD: the machine dies) under load.
    let load = Load::start(&f.lab, "client", load_spec(Duration::from_secs(3)));
    assert!(load.wait_served(20, Duration::from_secs(10)));
    // The machine vanishes: its link goes silent first (no TCP FIN or
    // BGP notification reaches the router, only BFD can tell), then its
    // processes die.
    let killed = now_secs();
    let t_kill = Instant::now();
    f.lab.set_link("node2", false);
    f.edges[2].crash();
    for p in &mut f.routing[3] {
        p.crash();
    }
    let dropped = wait_hops(&f.lab, &[0], BFD_DETECT + MARGIN * 2).map(|_| t_kill.elapsed());
    let reqs = load.finish();
    let o = outcome(&reqs, killed);
    eprintln!(
        "(d) node2 dies (link silent, edge and BIRD kill -9) under load: route dropped by the router after {dropped:?} \
         (BFD detect time {BFD_DETECT:?}); {} requests, {} probe requests failed, {} first attempts of the \
         retry-once clients failed, {} lost after one retry; errors {:?}",
        o.total, o.probe_failed, o.failed, o.lost, o.errors
    );
    assert!(
        dropped.is_some(),
        "the router kept node2's route:\n{}",
        f.logs()
    );
    assert_eq!(o.lost, 0, "requests lost after one retry");
    eprintln!("fleet lab total {:?}", t0.elapsed());
}
