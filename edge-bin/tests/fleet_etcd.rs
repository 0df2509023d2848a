//! A fleet's shared state in etcd (`[etcd]`), on loopback: two edge
//! processes and one etcd (Debian `etcd-server`) started here. A TLS
//! session made on one node resumes on the other (one ticket key set for
//! the fleet); a drain made on one node's admin socket is in force on the
//! other; with etcd killed both nodes go on serving, the outage is logged
//! once and shows in `edge_etcd_up`, and a change made during it reaches
//! the other node once etcd is back.
//!
//! The lab (root, network namespaces): a three-member etcd cluster, three
//! nodes and Pebble. One certificate is ordered once for the three nodes
//! (orders counted in Pebble's log) and all three serve it, although the
//! etcd leader is killed while the order's challenge is pending; then with
//! every etcd member killed, every node goes on serving HTTPS.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use edge_testkit::backend::{Backend, backend, get};
use edge_testkit::etcd::{LocalEtcd, member_args};
use edge_testkit::lab::Lab;
use edge_testkit::openssl;
use edge_testkit::pebble::start_pebble;
use edge_testkit::syslog::scrape;

struct Node {
    edge: Edge,
    port: u16,
    socket: PathBuf,
    metrics: u16,
    keys: PathBuf,
}

fn start_node(dir: &TempDir, i: usize, etcd: &str, leaf: &Leaf, servers: &[&Backend]) -> Node {
    let (port, metrics) = (free_port(), free_port());
    let socket = dir.path(&format!("admin{i}.sock"));
    let keys = dir.path(&format!("ticket-keys{i}"));
    let servers: String = servers
        .iter()
        .map(|b| format!("[[pool.server]]\naddress = \"127.0.0.1:{}\"\n", b.port))
        .collect();
    let config = fixture("fleet_etcd.toml")
        .set("https_port", port)
        .set("metrics_port", metrics)
        .path("admin_socket", &socket)
        .path("keys_file", &keys)
        .set("etcd", etcd)
        .set("node", format!("node{i}"))
        .path("cert", &leaf.cert)
        .path("key", &leaf.key)
        .set("servers", servers)
        .render();
    let edge = start_edge(dir, &format!("node{i}"), &config);
    assert!(
        wait_until(Duration::from_secs(10), || socket.exists()),
        "no admin socket"
    );
    Node {
        edge,
        port,
        socket,
        metrics,
        keys,
    }
}

/// One request over `openssl s_client` (`version`: `-tls1_3`, `-tls1_2`),
/// resuming from `input` or saving the session to `out`: whether it
/// resumed.
fn s_client(port: u16, version: &str, input: Option<&Path>, out: Option<&Path>) -> bool {
    let addr = format!("127.0.0.1:{port}");
    let mut cmd = Command::new("timeout");
    cmd.arg("10");
    openssl::resumed(&openssl::s_client_get(
        cmd, &addr, "t.test", version, input, out,
    ))
}

/// The state column of `show servers app` for `port` on a node.
fn state_of(rt: &tokio::runtime::Runtime, node: &Node, port: u16) -> String {
    let (code, out, err) = rt.block_on(edge_admin(&node.socket, "show servers app"));
    assert_eq!(code, 0, "{out}{err}");
    let addr = format!("127.0.0.1:{port}");
    out.lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|cols| cols.get(1) == Some(&addr.as_str()))
        .and_then(|cols| cols.get(2).map(|s| (*s).to_owned()))
        .unwrap_or_else(|| panic!("no row for {addr} in:\n{out}"))
}

fn admin_ok(rt: &tokio::runtime::Runtime, node: &Node, args: &str) {
    let (code, out, err) = rt.block_on(edge_admin(&node.socket, args));
    assert_eq!(code, 0, "edge admin {args}: {out}{err}");
}

fn metric(node: &Node, name: &str) -> Option<f64> {
    scrape(node.metrics).1.get(name).copied()
}

fn logs(nodes: &[&Node]) -> String {
    log_tails(&nodes.iter().map(|n| &n.edge).collect::<Vec<_>>())
}

#[test]
fn two_nodes_share_ticket_keys_and_server_states_and_serve_without_etcd() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (b0, b1) = rt.block_on(async {
        (
            backend("b0", Duration::ZERO).await,
            backend("b1", Duration::ZERO).await,
        )
    });
    let mut etcd = LocalEtcd::start("fleet");
    let dir = TempDir::new("fleet-etcd");
    let pki = Pki::new(&dir, "fleet");
    let leaf = pki.leaf(&dir, "t", &["t.test"]);
    let nodes = [0, 1].map(|i| start_node(&dir, i, &etcd.endpoint(), &leaf, &[&b0, &b1]));
    let [n0, n1] = &nodes;

    // One ticket key set for the fleet (each node keeps a copy in its file).
    let t0 = Instant::now();
    let same = wait_until(Duration::from_secs(10), || {
        let (a, b) = (std::fs::read(&n0.keys), std::fs::read(&n1.keys));
        a.is_ok() && a.ok() == b.ok()
    });
    assert!(
        same,
        "the ticket keys did not converge:\n{}",
        logs(&[n0, n1])
    );
    eprintln!(
        "ticket keys shared {:?} after both nodes started",
        t0.elapsed()
    );
    for version in ["-tls1_3", "-tls1_2"] {
        let session = dir.path(&format!("session{version}.pem"));
        assert!(!s_client(n0.port, version, None, Some(&session)));
        assert!(
            s_client(n1.port, version, Some(&session), None),
            "{version}: a session of node0 did not resume on node1\n{}",
            logs(&[n0, n1])
        );
    }

    // A drain on node0 is in force on node1.
    assert_eq!(state_of(&rt, n1, b0.port), "ready");
    let t0 = Instant::now();
    admin_ok(
        &rt,
        n0,
        &format!("drain app 127.0.0.1:{} --timeout 1s", b0.port),
    );
    assert!(
        wait_until(Duration::from_secs(5), || state_of(&rt, n1, b0.port)
            == "drain"),
        "node1 did not see node0's drain:\n{}",
        logs(&[n0, n1])
    );
    eprintln!(
        "a drain on node0 in force on node1 after {:?}",
        t0.elapsed()
    );
    for _ in 0..10 {
        assert_eq!(get(n1.port, &pki.ca_pem, "/").unwrap(), "b1");
    }

    // etcd killed: both nodes serve; the outage is logged once per node.
    etcd.kill();
    let t0 = Instant::now();
    assert!(
        wait_until(Duration::from_secs(10), || metric(n0, "edge_etcd_up")
            == Some(0.0)),
        "edge_etcd_up stayed 1 with etcd down"
    );
    eprintln!(
        "edge_etcd_up 0 on node0 {:?} after etcd was killed",
        t0.elapsed()
    );
    let mut served = 0;
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(4) {
        for n in &nodes {
            assert_eq!(
                get(n.port, &pki.ca_pem, "/").unwrap(),
                "b1",
                "while etcd is down"
            );
            served += 1;
        }
    }
    // A change made while etcd is away stays local, then reaches the fleet.
    admin_ok(&rt, n1, &format!("enable app 127.0.0.1:{}", b0.port));
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(state_of(&rt, n0, b0.port), "drain");
    for n in &nodes {
        let log = n.edge.log_plain();
        assert_eq!(
            log.matches("etcd unreachable").count(),
            1,
            "one log line per outage:\n{log}"
        );
    }
    let errors: f64 = scrape(n0.metrics)
        .1
        .iter()
        .filter(|(k, _)| k.starts_with("edge_etcd_errors_total"))
        .map(|(_, v)| v)
        .sum();
    assert!(errors >= 1.0, "edge_etcd_errors_total: {errors}");
    eprintln!("{served} requests served by the two nodes while etcd was down, none failed");
    etcd.restart();
    let t0 = Instant::now();
    assert!(
        wait_until(Duration::from_secs(15), || state_of(&rt, n0, b0.port)
            == "ready"),
        "node1's enable made during the outage did not reach node0:\n{}",
        logs(&[n0, n1])
    );
    eprintln!("caught up {:?} after etcd restarted", t0.elapsed());
    assert!(wait_until(Duration::from_secs(5), || metric(
        n0,
        "edge_etcd_up"
    ) == Some(1.0)));
    assert!(
        n0.edge
            .wait_log("etcd reachable again", Duration::from_secs(5))
    );
}

/// Pebble's address in the lab; the client's; node `i` is .11+i, etcd
/// member `i` .21+i.
const CA: &str = "198.18.0.30";
const CLIENT: &str = "198.18.0.40";
/// node0's second address, where the CA's validation goes.
const CHALLENGE: &str = "198.18.0.50";

fn node_ip(i: usize) -> String {
    format!("198.18.0.{}", 11 + i)
}

fn etcd_ip(i: usize) -> String {
    format!("198.18.0.{}", 21 + i)
}

/// The member that leads the lab's etcd cluster (etcd's own metric).
fn etcd_leader(lab: &Lab, alive: &[bool]) -> Option<usize> {
    (0..3).filter(|i| alive[*i]).find(|i| {
        let url = format!("http://{}:2379/metrics", etcd_ip(*i));
        lab.curl("client", &[&url])
            .is_some_and(|m| m.lines().any(|l| l == "etcd_server_is_leader 1"))
    })
}

/// `GET https://fleet.test/` on node `i` from the client, verified against
/// Pebble's root: the body.
fn fetch(lab: &Lab, root: &Path, i: usize) -> Option<String> {
    let resolve = format!("fleet.test:443:{}", node_ip(i));
    lab.curl(
        "client",
        &[
            "--cacert",
            &root.to_string_lossy(),
            "--resolve",
            &resolve,
            "https://fleet.test/",
        ],
    )
}

#[test]
fn three_nodes_order_one_certificate_through_etcd_and_serve_without_it() {
    edge_testkit::needs_root!(
        "three_nodes_order_one_certificate_through_etcd_and_serve_without_it"
    );
    let mut lab = Lab::new("fle");
    for i in 0..3 {
        lab.host(&format!("etcd{i}"), 21 + i as u8);
        lab.host(&format!("node{i}"), 11 + i as u8);
    }
    lab.host("ca", 30);
    lab.host("client", 40);

    // A three-member etcd cluster.
    let cluster: Vec<String> = (0..3)
        .map(|i| format!("e{i}=http://{}:2380", etcd_ip(i)))
        .collect();
    let mut members: Vec<Proc> = (0..3)
        .map(|i| {
            let args = member_args(
                &format!("e{i}"),
                &lab.dir.join(format!("etcd{i}")),
                &etcd_ip(i),
                2379,
                2380,
                &cluster.join(","),
            );
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            lab.spawn(&format!("etcd{i}"), &args, &format!("etcd{i}.log"))
        })
        .collect();
    let mut alive = [true; 3];
    let leader = wait_for("an etcd leader", Duration::from_secs(30), || {
        etcd_leader(&lab, &alive)
    });

    // Pebble; every name resolves to CHALLENGE, a second address of node0,
    // which answers the CA whoever placed the order. Its validation is held
    // back (that address routed to the client, which does not forward)
    // until the etcd leader has been killed; node0's own address stays
    // reachable, so node0 can place the order too.
    lab.ip(
        "node0",
        &["addr", "add", &format!("{CHALLENGE}/24"), "dev", "eth0"],
    );
    let (_pebble, tls_ca, root) = start_pebble(&lab, "ca", CA, CHALLENGE);
    let sink = lab.exec(
        "client",
        &["sysctl", "-qw", "net.ipv4.conf.all.forwarding=0"],
    );
    assert!(sink.status.success(), "{sink:?}");
    lab.ip(
        "ca",
        &["route", "add", &format!("{CHALLENGE}/32"), "via", CLIENT],
    );

    let endpoints: Vec<String> = (0..3)
        .map(|i| format!("\"http://{}:2379\"", etcd_ip(i)))
        .collect();
    let t0 = Instant::now();
    let mut nodes: Vec<Edge> = (0..3)
        .map(|i| {
            let config = fixture("fleet_etcd_lab.toml")
                .set("addr", node_ip(i))
                .set(
                    "http_listen",
                    if i == 0 {
                        format!("\"{}:80\", \"{CHALLENGE}:80\"", node_ip(i))
                    } else {
                        format!("\"{}:80\"", node_ip(i))
                    },
                )
                .set("node", format!("node{i}"))
                .set("ca", CA)
                .path("ca_roots", &tls_ca)
                .set("endpoints", endpoints.join(", "))
                .render();
            let path = lab.write(&format!("node{i}.toml"), config);
            lab.edge(&format!("node{i}"), EDGE, path).spawn()
        })
        .collect();
    for n in &mut nodes {
        n.wait_ready();
    }
    let all_logs = |nodes: &[Edge]| log_tails(&nodes.iter().collect::<Vec<_>>());
    let orderer = wait_for("an ACME order", Duration::from_secs(30), || {
        nodes
            .iter()
            .position(|n| n.log_text().contains("ACME order created"))
    });
    // The challenge is pending: kill the etcd leader, then let Pebble through.
    std::thread::sleep(Duration::from_millis(500));
    members[leader].crash();
    alive[leader] = false;
    let t_kill = Instant::now();
    let new_leader = wait_for("a new etcd leader", Duration::from_secs(15), || {
        etcd_leader(&lab, &alive)
    });
    eprintln!(
        "etcd leader e{leader} killed mid-order (node{orderer} ordering); e{new_leader} led {:?} later",
        t_kill.elapsed()
    );
    lab.ip("ca", &["route", "del", &format!("{CHALLENGE}/32")]);

    // Every node serves the one certificate, verified against Pebble's root.
    let mut served = [false; 3];
    let ok = wait_until(Duration::from_secs(120), || {
        for (i, s) in served.iter_mut().enumerate() {
            *s = *s || fetch(&lab, &root, i).as_deref() == Some(format!("node{i}").as_str());
        }
        served.iter().all(|s| *s)
    });
    let pebble_log = std::fs::read_to_string(lab.dir.join("pebble.log")).unwrap_or_default();
    assert!(
        ok,
        "not every node serves the certificate ({served:?}):\n{}\n{pebble_log}",
        all_logs(&nodes)
    );
    let to_cert = t0.elapsed();
    let orders = pebble_log
        .matches("/order-plz -> calling handler()")
        .count();
    let issued = pebble_log.matches("Issued certificate serial").count();
    let obtained = nodes
        .iter()
        .filter(|n| n.log_text().contains("certificate obtained"))
        .count();
    eprintln!(
        "orders at Pebble: {orders}, certificates issued: {issued}, nodes that ordered: {obtained}; all three nodes served it {to_cert:?} after they started"
    );
    assert_eq!(
        (orders, issued, obtained),
        (1, 1, 1),
        "{}",
        all_logs(&nodes)
    );

    // etcd stopped entirely: every node goes on serving HTTPS.
    for (m, a) in members.iter_mut().zip(&mut alive) {
        m.crash();
        *a = false;
    }
    let (mut ok, mut failed) = (0, 0);
    let t_down = Instant::now();
    while t_down.elapsed() < Duration::from_secs(8) {
        for i in 0..3 {
            match fetch(&lab, &root, i) {
                Some(b) if b == format!("node{i}") => ok += 1,
                _ => failed += 1,
            }
        }
    }
    eprintln!(
        "with etcd down for 8 s: {ok} HTTPS requests served by the three nodes, {failed} failed"
    );
    assert_eq!(failed, 0, "{}", all_logs(&nodes));
    for n in &nodes {
        assert!(
            n.wait_log("etcd unreachable", Duration::from_secs(10)),
            "{}",
            n.log_text()
        );
    }
}
