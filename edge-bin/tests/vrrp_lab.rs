//! Network lab (root, namespaces this test creates): two real `edge`
//! processes share a VIP through `[[vrrp]]`; a client reaches
//! https://VIP:443 through whichever holds it. A planned stop (SIGTERM)
//! and a crash (SIGKILL + link down) of the master each hand the VIP to the
//! backup, and the client is served again within a couple of seconds.
//! Only 198.18.0.0/24 is used, inside the namespaces; Drop guards kill the
//! processes and delete the namespaces, also when the test panics. The
//! node configs are `fixtures/vrrp_node.toml` and `fixtures/tracked_pool.toml`.

mod common;

use std::thread::sleep;
use std::time::{Duration, Instant};

use common::{EDGE, Edge, Proc, fixture, lab, wait_until};

const VIP: &str = "198.18.0.100";
/// Advert interval 100 ms: Master_Down_Interval is ~0.35 s; the rest is
/// slack for a loaded 2-core machine.
const TAKEOVER: Duration = Duration::from_millis(2500);

/// Namespaces: two edge nodes (.2, .3) and a client (.10) on a bridge.
struct Lab(lab::Lab);

impl Lab {
    fn new() -> Lab {
        let mut lab = lab::Lab::new("ebv");
        lab.host("n0", 2);
        lab.host("n1", 3);
        lab.host("c", 10);
        Lab(lab)
    }

    /// Starts `edge` in node `i` with VRRP priority `priority`, without
    /// waiting (a pair starts together; the tests wait for what the client
    /// is served). `extra` is appended to the config.
    fn start(&self, i: usize, priority: u8, tag: &str, extra: &str) -> Edge {
        let config = fixture("vrrp_node.toml")
            .set("vip", VIP)
            .set("node", i)
            .set("priority", priority)
            .set("extra", extra)
            .write(&self.0.dir, &format!("edge{i}-{tag}.toml"));
        self.0.edge(&format!("n{i}"), EDGE, config).spawn()
    }

    /// The body the client gets from https://VIP/, if any.
    fn fetch(&self) -> Option<String> {
        self.0.curl(
            "c",
            &[
                "-k",
                "--max-time",
                "1",
                "--resolve",
                &format!("vip.test:443:{VIP}"),
                "https://vip.test/",
            ],
        )
    }

    /// Waits until the client is served by `want`; returns how long it took.
    fn wait_served_by(
        &self,
        want: &str,
        since: Instant,
        limit: Duration,
        edges: &[&Edge],
    ) -> Duration {
        loop {
            if self.fetch().as_deref() == Some(want) {
                return since.elapsed();
            }
            if since.elapsed() > limit {
                let logs: Vec<String> = edges.iter().map(|e| e.log_text()).collect();
                panic!(
                    "the client was not served by {want} within {limit:?} (last answer {:?});\nlogs:\n{}",
                    self.fetch(),
                    logs.join("\n----\n")
                );
            }
            sleep(Duration::from_millis(50));
        }
    }

    /// A plain HTTP server on the client's address (a backend the nodes'
    /// health checks probe), ready when this returns.
    fn backend(&self, port: u16) -> Proc {
        let child = self.0.spawn(
            "c",
            &[
                "python3",
                "-m",
                "http.server",
                "--bind",
                "198.18.0.10",
                &port.to_string(),
            ],
            &format!("backend{port}.log"),
        );
        let url = format!("http://198.18.0.10:{port}/");
        assert!(
            wait_until(Duration::from_secs(10), || self
                .0
                .curl("c", &["-o", "/dev/null", &url])
                .is_some()),
            "backend :{port} did not start"
        );
        child
    }

    fn holds_vip(&self, i: usize) -> bool {
        self.0.holds(&format!("n{i}"), VIP)
    }
}

#[test]
fn vip_follows_the_master_on_stop_and_crash() {
    edge_testkit::needs_root!("vip_follows_the_master_on_stop_and_crash");
    let lab = Lab::new();
    let mut backup = lab.start(1, 100, "a", "");
    let mut master = lab.start(0, 150, "a", "");
    lab.wait_served_by(
        "node0",
        Instant::now(),
        Duration::from_secs(10),
        &[&master, &backup],
    );
    assert!(
        lab.holds_vip(0) && !lab.holds_vip(1),
        "node 0 must hold the VIP alone"
    );
    // One line per state change, one spelling (the state as edge-vrrp
    // names it).
    let log = master.log_plain();
    let changes: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("VRRP state change"))
        .collect();
    let to_master = changes
        .iter()
        .filter(|l| l.to_lowercase().contains("to=master"))
        .count();
    assert_eq!(to_master, 1, "one line for the change to master:\n{log}");
    assert!(changes.iter().all(|l| !l.contains("to=Master")), "{log}");

    // Planned stop: priority-0 advert, VIP removed, backup serves at once.
    let t0 = Instant::now();
    assert!(
        master.terminate(),
        "edge did not exit cleanly on SIGTERM:\n{}",
        master.log_text()
    );
    let took = lab.wait_served_by("node1", t0, TAKEOVER, &[&master, &backup]);
    assert!(!lab.holds_vip(0), "the stopped node still holds the VIP");
    eprintln!("takeover after SIGTERM: {took:?}");

    // Node 0 returns and preempts.
    let mut master = lab.start(0, 150, "b", "");
    lab.wait_served_by(
        "node0",
        Instant::now(),
        Duration::from_secs(10),
        &[&master, &backup],
    );

    // Crash: SIGKILL and the link goes down (the host is gone).
    let t0 = Instant::now();
    master.crash();
    lab.0.set_link("n0", false);
    let took = lab.wait_served_by("node1", t0, TAKEOVER, &[&master, &backup]);
    eprintln!("takeover after SIGKILL: {took:?}");
    assert!(lab.holds_vip(1));
    assert!(
        backup.terminate(),
        "backup did not exit cleanly:\n{}",
        backup.log_text()
    );
    assert!(!lab.holds_vip(1), "a clean stop must remove the VIP");
}

/// The pool a node tracks, checked every 100 ms, down after one failure.
fn tracked_pool(port: u16) -> String {
    fixture("tracked_pool.toml")
        .set("server", format!("198.18.0.10:{port}"))
        .render()
}

#[test]
fn master_with_a_failed_pool_hands_over_and_takes_back() {
    edge_testkit::needs_root!("master_with_a_failed_pool_hands_over_and_takes_back");
    let lab = Lab::new();
    let mut app0 = lab.backend(8000);
    let _app1 = lab.backend(8001);
    let backup = lab.start(1, 100, "a", &tracked_pool(8001));
    let master = lab.start(0, 150, "a", &tracked_pool(8000));
    let edges = [&master, &backup];
    lab.wait_served_by("node0", Instant::now(), Duration::from_secs(10), &edges);

    // Node 0's only server dies: its priority drops to 1 and node 1 (100)
    // preempts it.
    let t0 = Instant::now();
    app0.crash();
    let took = lab.wait_served_by("node1", t0, TAKEOVER, &edges);
    eprintln!("takeover after the tracked pool failed: {took:?}");
    assert!(
        lab.holds_vip(1) && !lab.holds_vip(0),
        "node 1 must hold the VIP alone"
    );

    // The server is back: node 0 regains its priority and preempts.
    let _app0 = lab.backend(8000);
    let took = lab.wait_served_by("node0", Instant::now(), TAKEOVER, &edges);
    eprintln!("takeback after the tracked pool recovered: {took:?}");
    assert!(
        master
            .log_text()
            .contains("tracked pool health changed the VRRP priority"),
        "no priority change logged:\n{}",
        master.log_text()
    );
}

impl Lab {
    /// Rewrites node `i`'s config `tag` with `change`, sends SIGHUP and
    /// waits until its log shows reload number `n` done.
    fn reload(&self, edge: &Edge, i: usize, tag: &str, change: impl Fn(&str) -> String, n: usize) {
        let config = self.0.dir.join(format!("edge{i}-{tag}.toml"));
        let text = std::fs::read_to_string(&config).unwrap();
        let new = change(&text);
        assert_ne!(text, new, "the change changed nothing");
        std::fs::write(&config, new).unwrap();
        edge.signal("-HUP");
        let t0 = Instant::now();
        while edge.log_plain().matches("configuration reloaded").count() < n {
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "reload {n} did not finish:\n{}",
                edge.log_text()
            );
            sleep(Duration::from_millis(20));
        }
    }
}

/// `[[vrrp]]` on SIGHUP: a reload that leaves VRRP alone keeps the VIP
/// where it is; a new priority applies to the running instance (the peer
/// preempts, then gives it back); a changed advert interval restarts the
/// instance, which hands over and takes the VIP back.
#[test]
fn vrrp_settings_follow_a_reload() {
    edge_testkit::needs_root!("vrrp_settings_follow_a_reload");
    let lab = Lab::new();
    // The master first: on a loaded machine a backup started first can
    // become master before the master's first advert, which this test
    // (about reloads) does not look at.
    let master = lab.start(0, 150, "a", "");
    lab.wait_served_by("node0", Instant::now(), Duration::from_secs(10), &[&master]);
    let backup = lab.start(1, 100, "a", "");
    let edges = [&master, &backup];
    lab.wait_served_by("node0", Instant::now(), Duration::from_secs(10), &edges);
    let backup_masters = || backup.log_plain().matches("to=master").count();
    assert_eq!(backup_masters(), 0);
    assert!(
        master.log_plain().contains("to=master"),
        "the state change log line changed its format:\n{}",
        master.log_text()
    );

    // Only the route changes: no handover, the new response is served.
    lab.reload(
        &master,
        0,
        "a",
        |c| c.replace("\"node0\"", "\"node0-v2\""),
        1,
    );
    lab.wait_served_by("node0-v2", Instant::now(), TAKEOVER, &edges);
    assert!(lab.holds_vip(0));
    assert_eq!(
        backup_masters(),
        0,
        "a reload without VRRP changes moved the VIP"
    );

    // Priority 150 -> 50 in place: node 1 (100) preempts.
    let t0 = Instant::now();
    lab.reload(
        &master,
        0,
        "a",
        |c| c.replace("priority = 150", "priority = 50"),
        2,
    );
    let took = lab.wait_served_by("node1", t0, TAKEOVER, &edges);
    eprintln!("takeover after a reload lowered the priority: {took:?}");
    let log = master.log_plain();
    assert!(log.contains("VRRP tracking updated in place"), "{log}");
    assert!(!log.contains("restarting it"), "{log}");

    // And back: node 0 preempts again.
    lab.reload(
        &master,
        0,
        "a",
        |c| c.replace("priority = 50", "priority = 150"),
        3,
    );
    lab.wait_served_by("node0-v2", Instant::now(), TAKEOVER, &edges);

    // A new advert interval restarts the instance; it ends up master again.
    lab.reload(
        &master,
        0,
        "a",
        |c| c.replace("advert_interval = \"100ms\"", "advert_interval = \"150ms\""),
        4,
    );
    assert!(master.log_plain().contains("restarting it"));
    lab.wait_served_by("node0-v2", Instant::now(), Duration::from_secs(10), &edges);
    assert!(lab.holds_vip(0) && !lab.holds_vip(1));
}
