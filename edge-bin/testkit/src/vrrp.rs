//! VRRP routers in the lab: the `vrrp` example of edge-vrrp, or
//! keepalived, in router hosts `n0`, `n1`, ... (198.18.0.2, .3, ...) with
//! a client host `c` (198.18.0.10) on the same bridge.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::thread::sleep;
use std::time::{Duration, Instant};

use crate::lab::Lab;
use crate::run_quiet;

/// keepalived, as Debian installs it.
pub const KEEPALIVED: &str = "/usr/sbin/keepalived";

/// The last octet (IPv4) / group (IPv6) of each router's address; the
/// client is 10.
pub const NODE_HOSTS: [u8; 2] = [2, 3];

/// The `vrrp` example binary (built by `cargo test --workspace`; built
/// here when missing). `$EDGE_VRRP_EXAMPLE` names another one.
pub fn vrrp_binary() -> PathBuf {
    if let Ok(p) = std::env::var("EDGE_VRRP_EXAMPLE") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("test binary path");
    // target/<profile>/deps/<test> -> target/<profile>/examples/vrrp
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target dir")
        .to_path_buf();
    let bin = profile_dir.join("examples").join("vrrp");
    if !bin.exists() {
        let target = profile_dir.parent().expect("target root");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "-p", "edge-examples", "--example", "vrrp"])
            .env("CARGO_TARGET_DIR", target)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .expect("running cargo build for the vrrp example");
        assert!(status.success(), "building the vrrp example failed");
    }
    bin
}

/// A lab of `routers` router hosts and a client.
#[derive(Debug)]
pub struct VrrpLab {
    /// The lab itself.
    pub lab: Lab,
    /// The router hosts' names (`n0`, `n1`, ...).
    pub nodes: Vec<String>,
}

impl VrrpLab {
    /// Router hosts `n0`.. at [`NODE_HOSTS`] (then .4, .5, ...) and the
    /// client `c` at .10.
    pub fn new(routers: usize) -> VrrpLab {
        let mut lab = Lab::new("evr");
        let nodes: Vec<String> = (0..routers).map(|i| format!("n{i}")).collect();
        for (name, host) in nodes.iter().zip(NODE_HOSTS.iter().copied().chain(4..)) {
            lab.host(name, host);
        }
        lab.host("c", 10);
        VrrpLab { lab, nodes }
    }

    /// The lab's id, for messages.
    pub fn id(&self) -> &str {
        self.lab.id()
    }

    /// The lab's directory.
    pub fn dir(&self) -> &Path {
        &self.lab.dir
    }

    /// Router `i`'s namespace.
    pub fn ns(&self, i: usize) -> &str {
        self.lab.ns(&self.nodes[i])
    }

    /// Router `i`'s address of the family.
    pub fn addr(&self, i: usize, v6: bool) -> String {
        if v6 {
            self.lab.addr6(&self.nodes[i]).to_owned()
        } else {
            self.lab.addr(&self.nodes[i]).to_owned()
        }
    }

    /// Whether any interface of router `i` holds `addr`.
    pub fn has_address(&self, i: usize, addr: &str) -> bool {
        self.lab.has_address(&self.nodes[i], addr)
    }

    /// Whether router `i`'s link is up.
    pub fn link_up(&self, i: usize) -> bool {
        self.lab.link_up(&self.nodes[i])
    }

    /// Routers (with their link up) holding `vip`.
    pub fn holders(&self, vip: &str) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| self.link_up(i) && self.has_address(i, vip))
            .collect()
    }

    /// Takes router `i`'s link up or down.
    pub fn set_link(&self, i: usize, up: bool) {
        self.lab.set_link(&self.nodes[i], up);
    }

    /// Waits until router `i` holds `vip`; returns the time taken since
    /// `since`.
    pub fn wait_holder(&self, i: usize, vip: &str, since: Instant, timeout: Duration) -> Duration {
        loop {
            if self.has_address(i, vip) {
                return since.elapsed();
            }
            assert!(
                since.elapsed() < timeout,
                "{}: router {i} did not take {vip} within {timeout:?}; holders {:?}",
                self.id(),
                self.holders(vip)
            );
            // Each check spawns `ip`: with a dozen labs polling at once,
            // faster polling loads the 2 CI cores enough to delay the
            // routers themselves. 20 ms is well inside every margin.
            sleep(Duration::from_millis(20));
        }
    }

    /// The client reaches `vip` (two tries, one second each).
    pub fn client_reaches(&self, vip: &str) -> bool {
        let ns = self.lab.ns("c");
        (0..2).any(|_| run_quiet(&["ip", "netns", "exec", ns, "ping", "-c1", "-W1", vip]))
    }

    /// What a failed reachability check needs to explain itself: the
    /// bridge's forwarding table, the client's neighbours and each
    /// router's addresses and links.
    pub fn diagnose(&self) -> String {
        let quiet = |args: &[&str]| {
            Command::new(args[0])
                .args(&args[1..])
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_else(|e| format!("{args:?}: {e}"))
        };
        let hub = self.lab.hub();
        let mut out = format!(
            "bridge fdb:\n{}client neighbours:\n{}",
            quiet(&[
                "ip", "netns", "exec", hub, "bridge", "fdb", "show", "br", "br0"
            ]),
            quiet(&["ip", "-n", self.lab.ns("c"), "neigh", "show"]),
        );
        for i in 0..self.nodes.len() {
            let ns = self.ns(i);
            out += &format!(
                "router {i} links:\n{}router {i} addresses:\n{}",
                quiet(&["ip", "-n", ns, "-br", "link", "show"]),
                quiet(&["ip", "-n", ns, "-br", "addr", "show"]),
            );
        }
        out
    }

    /// The client's neighbour entry for `ip`: (link-layer address, state).
    pub fn client_neighbour(&self, ip: &str) -> Option<(String, String)> {
        let out = self.lab.ip("c", &["neigh", "show", ip, "dev", "eth0"]);
        let words: Vec<&str> = out.split_whitespace().collect();
        let mac = words
            .iter()
            .position(|w| *w == "lladdr")
            .and_then(|i| words.get(i + 1))?;
        Some((mac.to_string(), words.last()?.to_string()))
    }

    /// Pins the client's neighbour entry for `ip` to `mac` (no ARP / ND
    /// for it any more), or with `None` removes it.
    pub fn pin_client_neighbour(&self, ip: &str, mac: Option<&str>) {
        match mac {
            Some(mac) => self.lab.ip(
                "c",
                &[
                    "neigh",
                    "replace",
                    ip,
                    "lladdr",
                    mac,
                    "nud",
                    "permanent",
                    "dev",
                    "eth0",
                ],
            ),
            None => self.lab.ip("c", &["neigh", "flush", "to", ip]),
        };
    }

    /// Router `i`'s base interface MAC.
    pub fn mac(&self, i: usize) -> String {
        self.lab.mac(&self.nodes[i])
    }
}
/// What a router is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Edge,
    Keepalived,
}

/// One router's settings.
#[derive(Clone, Debug)]
pub struct RouterSpec {
    pub kind: Kind,
    pub version: u8,
    pub v6: bool,
    pub vrid: u8,
    pub priority: u8,
    /// Seconds.
    pub interval: f64,
    pub vip: String,
    pub unicast: Option<(String, String)>,
    pub extra: Vec<String>,
}

/// A running router; killed (SIGKILL) when dropped.
#[derive(Debug)]
pub struct Router {
    child: Option<Child>,
    vrrp_pid_file: Option<PathBuf>,
    pub log: PathBuf,
    pub out: PathBuf,
}

impl Router {
    /// Starts router `i` of `lab` with `spec`; its files are `DIR/TAG.*`.
    pub fn start(lab: &VrrpLab, i: usize, spec: &RouterSpec, tag: &str) -> Router {
        let ns = lab.ns(i).to_owned();
        let dir = lab.dir();
        let log = dir.join(format!("{tag}.log"));
        let out = dir.join(format!("{tag}.out"));
        let (child, vrrp_pid_file) = match spec.kind {
            Kind::Edge => {
                let mut args: Vec<String> = vec![
                    "netns".into(),
                    "exec".into(),
                    ns.clone(),
                    vrrp_binary().display().to_string(),
                    "--interface".into(),
                    "eth0".into(),
                    "--vrid".into(),
                    spec.vrid.to_string(),
                    "--priority".into(),
                    spec.priority.to_string(),
                    "--advert-interval".into(),
                    spec.interval.to_string(),
                    "--vip".into(),
                    spec.vip.clone(),
                    "--version".into(),
                    spec.version.to_string(),
                ];
                if let Some((src, peer)) = &spec.unicast {
                    args.extend([
                        "--unicast-src".into(),
                        src.clone(),
                        "--unicast-peer".into(),
                        peer.clone(),
                    ]);
                }
                args.extend(spec.extra.iter().cloned());
                let child = Command::new("ip")
                    .args(&args)
                    .env("RUST_LOG", "edge_vrrp=debug,info")
                    .env("NO_COLOR", "1")
                    .stdout(fs::File::create(&out).unwrap())
                    .stderr(fs::File::create(&log).unwrap())
                    .spawn()
                    .expect("starting the vrrp example");
                (child, None)
            }
            Kind::Keepalived => {
                let conf = dir.join(format!("{tag}.conf"));
                fs::write(&conf, keepalived_conf(spec, tag)).unwrap();
                let pid = dir.join(format!("{tag}.pid"));
                let vrrp_pid = dir.join(format!("{tag}.vrrp.pid"));
                let child = Command::new("ip")
                    .args(["netns", "exec", &ns, KEEPALIVED, "-n", "-l", "-D", "-f"])
                    .arg(&conf)
                    .arg("-p")
                    .arg(&pid)
                    .arg("-r")
                    .arg(&vrrp_pid)
                    .stdout(fs::File::create(&out).unwrap())
                    .stderr(fs::File::create(&log).unwrap())
                    .spawn()
                    .expect("starting keepalived");
                (child, Some(vrrp_pid))
            }
        };
        Router {
            child: Some(child),
            vrrp_pid_file,
            log,
            out,
        }
    }

    fn signal(&self, sig: &str) {
        if let Some(c) = &self.child {
            let _ = Command::new("kill")
                .args([sig, &c.id().to_string()])
                .status();
        }
    }

    /// SIGKILL, including keepalived's VRRP child. keepalived's parent is
    /// stopped first: its children shut down cleanly (priority 0) when it
    /// dies, and it would respawn a killed child.
    pub fn crash(&mut self) {
        if let Some(p) = &self.vrrp_pid_file {
            self.signal("-STOP");
            if let Ok(pid) = fs::read_to_string(p) {
                let _ = Command::new("kill").args(["-KILL", pid.trim()]).status();
            }
        }
        self.signal("-KILL");
        if let Some(mut c) = self.child.take() {
            let _ = c.wait();
        }
    }

    /// Sends a signal (`-USR1`, ...).
    pub fn send_signal(&self, sig: &str) {
        self.signal(sig);
    }

    /// Sends SIGTERM without waiting.
    pub fn terminate(&self) {
        self.signal("-TERM");
    }

    /// SIGTERM and wait for a clean exit (up to 10 s).
    pub fn stop(&mut self) -> bool {
        self.terminate();
        let Some(mut c) = self.child.take() else {
            return false;
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match c.try_wait() {
                Ok(Some(status)) => return status.success(),
                Ok(None) if Instant::now() < deadline => sleep(Duration::from_millis(10)),
                _ => {
                    let _ = c.kill();
                    let _ = c.wait();
                    return false;
                }
            }
        }
    }

    /// Waits for `needle` in the log; returns when it was first seen.
    pub fn wait_log(&self, needle: &str, timeout: Duration) -> Instant {
        let t0 = Instant::now();
        while !self.log_text().contains(needle) {
            assert!(
                t0.elapsed() < timeout,
                "`{needle}` not logged: {}",
                self.log_text()
            );
            sleep(Duration::from_millis(2));
        }
        Instant::now()
    }

    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn out_text(&self) -> String {
        fs::read_to_string(&self.out).unwrap_or_default()
    }

    /// Waits until the router has started (its addresses from a crashed
    /// run cleaned up) and entered backup.
    pub fn wait_started(&self, kind: Kind, timeout: Duration) {
        let t0 = Instant::now();
        let needle = match kind {
            Kind::Edge => r#""state":"backup""#,
            Kind::Keepalived => "Entering BACKUP STATE",
        };
        while !(self.out_text().contains(needle) || self.log_text().contains(needle)) {
            assert!(
                t0.elapsed() < timeout,
                "router did not start: {}",
                self.log_text()
            );
            sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Router {
    fn drop(&mut self) {
        if self.child.is_some() {
            self.crash();
        }
    }
}

fn keepalived_conf(spec: &RouterSpec, tag: &str) -> String {
    let mut s = format!(
        "global_defs {{\n  router_id {tag}\n}}\nvrrp_instance VI_{vrid} {{\n  state BACKUP\n  interface eth0\n  \
         virtual_router_id {vrid}\n  priority {prio}\n  advert_int {int}\n  version {ver}\n",
        vrid = spec.vrid,
        prio = spec.priority,
        int = spec.interval,
        ver = spec.version,
    );
    if spec.v6 {
        s.push_str("  native_ipv6\n");
    }
    if let Some((src, peer)) = &spec.unicast {
        s.push_str(&format!(
            "  unicast_src_ip {src}\n  unicast_peer {{\n    {peer}\n  }}\n"
        ));
    }
    for e in &spec.extra {
        s.push_str(&format!("  {e}\n"));
    }
    s.push_str(&format!(
        "  virtual_ipaddress {{\n    {}\n  }}\n}}\n",
        spec.vip
    ));
    s
}

/// Lines of a keepalived log that complain about received packets.
pub fn keepalived_complaints(log: &str) -> Vec<String> {
    const WORDS: [&str; 11] = [
        "checksum",
        "ttl",
        "version",
        "count",
        "interval",
        "invalid",
        "bogus",
        "mismatch",
        "not present",
        "wrong",
        "length",
    ];
    log.lines()
        .filter(|l| {
            let l = l.to_ascii_lowercase();
            WORDS.iter().any(|w| l.contains(w))
                && !l.contains("starting keepalived")
                && !l.contains("running on linux")
        })
        .map(str::to_owned)
        .collect()
}
