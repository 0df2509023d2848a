//! The network lab: namespaces joined by a bridge, VRRP routers (the
//! `vrrp` example or keepalived) started inside them, and a client.
//! Everything is torn down by Drop guards, also when a test panics.
//! Only 198.18.0.0/15 and 2001:2::/48 are used, inside the namespaces.
//! `EDGE_VRRP_LAB_KEEP=1` keeps each lab's directory (router logs) and
//! `EDGE_VRRP_LAB_PCAP=1` records the bridge's traffic there (`hub.pcap`).

#![allow(dead_code, unreachable_pub)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread::sleep;
use std::time::{Duration, Instant};

static COUNTER: AtomicU32 = AtomicU32::new(0);

pub const KEEPALIVED: &str = "/usr/sbin/keepalived";

/// True when the lab can run (root); otherwise says why it is skipped.
pub fn can_run(test: &str) -> bool {
    // SAFETY-free check: /proc/self/status Uid line.
    let uid = fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false);
    if !uid {
        eprintln!("{test}: skipped, the network lab needs root");
    }
    uid
}

pub fn run(args: &[&str]) -> String {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn run_quiet(args: &[&str]) -> bool {
    Command::new(args[0])
        .args(&args[1..])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The `vrrp` example binary (built by `cargo test --workspace`; built
/// here when missing).
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

/// One lab: a hub namespace with a bridge, router namespaces and a client.
pub struct Lab {
    pub id: String,
    hub: String,
    pub nodes: Vec<String>,
    pub client: String,
    pub dir: PathBuf,
}

/// Last octet / last group of each router's address; the client is .10.
pub const NODE_HOSTS: [u8; 2] = [2, 3];

impl Lab {
    pub fn new(routers: usize) -> Lab {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let id = format!("evr{}x{n}", std::process::id());
        let dir = std::env::temp_dir().join(&id);
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let mut lab = Lab {
            hub: format!("{id}h"),
            nodes: (0..routers).map(|i| format!("{id}n{i}")).collect(),
            client: format!("{id}c"),
            id,
            dir,
        };
        lab.setup();
        lab
    }

    fn setup(&mut self) {
        run(&["ip", "netns", "add", &self.hub]);
        run(&[
            "ip",
            "-n",
            &self.hub,
            "link",
            "add",
            "br0",
            "type",
            "bridge",
            "mcast_snooping",
            "0",
        ]);
        run(&["ip", "-n", &self.hub, "link", "set", "br0", "up"]);
        if std::env::var_os("EDGE_VRRP_LAB_PCAP").is_some() {
            let _ = Command::new("ip")
                .args([
                    "netns", "exec", &self.hub, "tcpdump", "-U", "-i", "br0", "-e", "-w",
                ])
                .arg(self.dir.join("hub.pcap"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn();
        }
        let mut all: Vec<(String, u8)> = self
            .nodes
            .iter()
            .cloned()
            .zip(NODE_HOSTS.iter().copied().chain(4..))
            .collect();
        all.push((self.client.clone(), 10));
        for (i, (ns, host)) in all.iter().enumerate() {
            run(&["ip", "netns", "add", ns]);
            let port = format!("p{i}");
            run(&[
                "ip", "-n", &self.hub, "link", "add", &port, "type", "veth", "peer", "name",
                "eth0", "netns", ns,
            ]);
            run(&[
                "ip", "-n", &self.hub, "link", "set", &port, "master", "br0", "up",
            ]);
            for key in ["all", "default", "eth0"] {
                // No DAD delay, and addresses survive a link flap (a crash
                // is simulated by taking the link down).
                for setting in ["accept_dad=0", "keep_addr_on_down=1"] {
                    run(&[
                        "ip",
                        "netns",
                        "exec",
                        ns,
                        "sysctl",
                        "-qw",
                        &format!("net.ipv6.conf.{key}.{setting}"),
                    ]);
                }
            }
            run(&["ip", "-n", ns, "link", "set", "lo", "up"]);
            run(&[
                "ip",
                "-n",
                ns,
                "addr",
                "add",
                &format!("198.18.0.{host}/24"),
                "dev",
                "eth0",
            ]);
            run(&[
                "ip",
                "-n",
                ns,
                "addr",
                "add",
                &format!("2001:2::{host}/64"),
                "dev",
                "eth0",
                "nodad",
            ]);
            run(&["ip", "-n", ns, "link", "set", "eth0", "up"]);
        }
    }

    /// Router `i`'s address of the family.
    pub fn addr(&self, i: usize, v6: bool) -> String {
        let host = NODE_HOSTS.get(i).copied().unwrap_or(4 + i as u8);
        if v6 {
            format!("2001:2::{host}")
        } else {
            format!("198.18.0.{host}")
        }
    }

    /// Whether any interface of `ns` (eth0 or a macvlan on it) holds `addr`.
    pub fn has_address(&self, ns: &str, addr: &str) -> bool {
        let out = Command::new("ip")
            .args(["-n", ns, "-o", "addr", "show"])
            .output();
        out.is_ok_and(|o| {
            String::from_utf8_lossy(&o.stdout)
                .split_whitespace()
                .any(|w| w.split('/').next() == Some(addr))
        })
    }

    pub fn link_up(&self, i: usize) -> bool {
        let out = run(&[
            "ip",
            "-n",
            &self.nodes[i],
            "-o",
            "link",
            "show",
            "dev",
            "eth0",
        ]);
        out.contains(",UP") || out.contains("<UP")
    }

    /// Routers (with their link up) holding `vip`.
    pub fn holders(&self, vip: &str) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| self.link_up(i) && self.has_address(&self.nodes[i], vip))
            .collect()
    }

    pub fn set_link(&self, i: usize, up: bool) {
        run(&[
            "ip",
            "-n",
            &self.nodes[i],
            "link",
            "set",
            "eth0",
            if up { "up" } else { "down" },
        ]);
    }

    /// Waits until exactly router `i` holds `vip`; returns the time taken.
    pub fn wait_holder(&self, i: usize, vip: &str, since: Instant, timeout: Duration) -> Duration {
        loop {
            if self.has_address(&self.nodes[i], vip) {
                return since.elapsed();
            }
            assert!(
                since.elapsed() < timeout,
                "{}: router {i} did not take {vip} within {timeout:?}; holders {:?}",
                self.id,
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
        (0..2).any(|_| {
            run_quiet(&[
                "ip",
                "netns",
                "exec",
                &self.client,
                "ping",
                "-c1",
                "-W1",
                vip,
            ])
        })
    }
}

impl Lab {
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
        let mut out = format!(
            "bridge fdb:\n{}client neighbours:\n{}",
            quiet(&[
                "ip", "netns", "exec", &self.hub, "bridge", "fdb", "show", "br", "br0"
            ]),
            quiet(&["ip", "-n", &self.client, "neigh", "show"]),
        );
        for (i, ns) in self.nodes.iter().enumerate() {
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
        let out = run(&["ip", "-n", &self.client, "neigh", "show", ip, "dev", "eth0"]);
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
            Some(mac) => run(&[
                "ip",
                "-n",
                &self.client,
                "neigh",
                "replace",
                ip,
                "lladdr",
                mac,
                "nud",
                "permanent",
                "dev",
                "eth0",
            ]),
            None => run(&["ip", "-n", &self.client, "neigh", "flush", "to", ip]),
        };
    }

    /// Router `i`'s base interface MAC.
    pub fn mac(&self, i: usize) -> String {
        let out = run(&[
            "ip",
            "-n",
            &self.nodes[i],
            "-br",
            "link",
            "show",
            "dev",
            "eth0",
        ]);
        out.split_whitespace().nth(2).unwrap_or_default().to_owned()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for ns in self.nodes.iter().chain([&self.client, &self.hub]) {
            // Anything still running in it (a router we lost track of).
            if let Ok(out) = Command::new("ip").args(["netns", "pids", ns]).output() {
                for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                    let _ = Command::new("kill").args(["-KILL", pid]).status();
                }
            }
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
        if std::env::var_os("EDGE_VRRP_LAB_KEEP").is_none() {
            let _ = fs::remove_dir_all(&self.dir);
        }
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
pub struct Router {
    child: Option<Child>,
    vrrp_pid_file: Option<PathBuf>,
    pub log: PathBuf,
    pub out: PathBuf,
}

impl Router {
    pub fn start(lab: &Lab, i: usize, spec: &RouterSpec, tag: &str) -> Router {
        let ns = &lab.nodes[i];
        let log = lab.dir.join(format!("{tag}.log"));
        let out = lab.dir.join(format!("{tag}.out"));
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
                let conf = lab.dir.join(format!("{tag}.conf"));
                fs::write(&conf, keepalived_conf(spec, tag)).unwrap();
                let pid = lab.dir.join(format!("{tag}.pid"));
                let vrrp_pid = lab.dir.join(format!("{tag}.vrrp.pid"));
                let child = Command::new("ip")
                    .args(["netns", "exec", ns, KEEPALIVED, "-n", "-l", "-D", "-f"])
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
