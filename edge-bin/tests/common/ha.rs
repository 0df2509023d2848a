//! The HA lab's pair (root, network namespaces): a client (.10), two edge
//! nodes (.2, .3) sharing a VIP through `[[vrrp]]`, python3 backends
//! (.20 + i), all on one bridge in 198.18.0.0/24. The node config is
//! `fixtures/ha_node.toml` (and `ha_pool.toml`).

use std::time::{Duration, Instant};

use super::{EDGE, Edge, Proc, fixture, log_tails, wait_until};
use edge_testkit::lab::Lab;
use edge_testkit::load::{self, LoadSpec};

pub const VIP: &str = "198.18.0.100";
pub const VIP6: &str = "2001:2::100";
pub const NODE: [&str; 2] = ["198.18.0.2", "198.18.0.3"];
pub const CLIENT: &str = "198.18.0.10";
/// VRRP advert interval of every pair here.
pub const ADVERT: Duration = Duration::from_millis(100);
/// Slack over the protocol's times for a loaded 2-core machine.
pub const MARGIN: Duration = Duration::from_secs(2);

/// RFC 5798 Master_Down_Interval of a backup with `priority`.
pub fn master_down_interval(priority: u8) -> Duration {
    ADVERT * 3 + ADVERT * (256 - u32::from(priority)) / 256
}

/// RFC 5798 Skew_Time of a backup with `priority`: how long it waits after
/// a priority-0 advertisement before it takes over.
pub fn skew_time(priority: u8) -> Duration {
    ADVERT * (256 - u32::from(priority)) / 256
}

/// node0 .2, node1 .3, client .10, backends .20 + i.
pub fn pair_lab(tag: &str, backends: u8) -> Lab {
    let mut lab = Lab::new(tag);
    lab.host("node0", 2);
    lab.host("node1", 3);
    lab.host("client", 10);
    for i in 0..backends {
        lab.host(&format!("b{i}"), 20 + i);
    }
    lab
}

pub fn backend_addr(i: usize) -> String {
    format!("198.18.0.{}:8080", 20 + i)
}

/// Starts the python3 backend `backend{i}` and waits until it answers.
pub fn backend(lab: &Lab, i: usize) -> Proc {
    let ip = format!("198.18.0.{}", 20 + i);
    load::backend(
        lab,
        &format!("b{i}"),
        &format!("backend{i}"),
        &ip,
        8080,
        "client",
    )
}

/// Makes backend `i`'s health endpoint fail (or pass again).
pub fn set_down(lab: &Lab, i: usize, down: bool) {
    load::set_down(lab, &format!("backend{i}"), down);
}

/// One node's settings.
pub struct Node<'a> {
    pub priority: u8,
    /// The VIP (and listeners) are IPv6 (2001:2::100) instead of IPv4.
    pub v6: bool,
    pub nopreempt: bool,
    /// Servers of its pool `app`; none = the route answers `node{i}` itself.
    pub servers: &'a [String],
    /// `[[route]]`s tried before the catch-all one.
    pub routes: &'a str,
    pub extra: &'a str,
}

pub fn edge_config(i: usize, n: &Node<'_>) -> String {
    let (route, pool) = if n.servers.is_empty() {
        (
            format!(r#"respond = {{ status = 200, body = "node{i}" }}"#),
            String::new(),
        )
    } else {
        let servers: String = n
            .servers
            .iter()
            .map(|s| format!("[[pool.server]]\naddress = \"{s}\"\n"))
            .collect();
        (
            r#"pool = "app""#.to_owned(),
            fixture("ha_pool.toml").set("servers", servers).render(),
        )
    };
    let (listen, vip) = if n.v6 {
        (format!("[{VIP6}]"), format!("{VIP6}/64"))
    } else {
        (VIP.to_owned(), format!("{VIP}/24"))
    };
    fixture("ha_node.toml")
        .set("listen", listen)
        .set("vip", vip)
        .set("routes", n.routes)
        .set("route", route)
        .set("pool", pool)
        .set("priority", n.priority)
        .set("advert", format!("{}ms", ADVERT.as_millis()))
        .set("nopreempt", n.nopreempt)
        .set("extra", n.extra)
        .render()
}

/// Starts `edge run` in node `i` with `config` (`DIR/edge{i}-{tag}.toml`);
/// ready when this returns.
pub fn start_edge(lab: &Lab, i: usize, tag: &str, config: &str) -> Edge {
    let path = lab.write(&format!("edge{i}-{tag}.toml"), config);
    lab.edge(&format!("node{i}"), EDGE, path).start()
}

/// The body the client gets from https://vip.test/ (not verified).
pub fn fetch(lab: &Lab) -> Option<String> {
    fetch_at(lab, VIP)
}

/// The body the client gets from https://vip.test/ at `vip`.
pub fn fetch_at(lab: &Lab, vip: &str) -> Option<String> {
    let resolve = if vip.contains(':') {
        format!("vip.test:443:[{vip}]")
    } else {
        format!("vip.test:443:{vip}")
    };
    lab.curl(
        "client",
        &["-k", "--resolve", &resolve, "https://vip.test/"],
    )
}

/// The last 60 lines of each log, without the access records.
pub fn logs(edges: &[&Edge]) -> String {
    log_tails(edges)
}

/// Waits until the client's answer contains `want`; how long since `since`.
pub fn wait_body(
    lab: &Lab,
    want: &str,
    since: Instant,
    limit: Duration,
    edges: &[&Edge],
) -> Duration {
    wait_body_at(lab, VIP, want, since, limit, edges)
}

/// [`wait_body`] at `vip`.
pub fn wait_body_at(
    lab: &Lab,
    vip: &str,
    want: &str,
    since: Instant,
    limit: Duration,
    edges: &[&Edge],
) -> Duration {
    let mut last = None;
    let ok = wait_until(limit, || {
        last = fetch_at(lab, vip);
        last.as_deref().is_some_and(|b| b.contains(want))
    });
    assert!(
        ok,
        "the client did not get {want:?} from {vip} within {limit:?} (last answer {last:?});\n{}",
        logs(edges)
    );
    since.elapsed()
}

pub fn load_spec(duration: Duration) -> LoadSpec {
    LoadSpec {
        ip: VIP.into(),
        port: 443,
        host: "vip.test".into(),
        path: "/".into(),
        duration,
        max: 5000,
        workers: 4,
        probe: true,
        probe_pause: Duration::from_millis(10),
        connect_timeout: Duration::from_secs(1),
        timeout: Duration::from_secs(5),
        retry_after: Duration::from_secs(1),
        cafile: None,
    }
}

/// A pair whose nodes both proxy to backends 0 and 1, node0 (150) master
/// and serving through `vip` when this returns: (backends, node0, node1).
pub fn shared_pair(lab: &Lab, v6: bool) -> ([Proc; 2], Edge, Edge) {
    let backends = [backend(lab, 0), backend(lab, 1)];
    let servers = [backend_addr(0), backend_addr(1)];
    let node = |priority| Node {
        priority,
        v6,
        nopreempt: false,
        servers: &servers,
        routes: "",
        extra: "",
    };
    let backup = start_edge(lab, 1, "a", &edge_config(1, &node(100)));
    let master = start_edge(lab, 0, "a", &edge_config(0, &node(150)));
    let via0 = format!("via {}", NODE[0]);
    let vip = if v6 { VIP6 } else { VIP };
    let since = Instant::now();
    wait_body_at(
        lab,
        vip,
        &via0,
        since,
        Duration::from_secs(15),
        &[&master, &backup],
    );
    (backends, master, backup)
}
