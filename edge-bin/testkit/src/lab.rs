//! The network lab (root only): a hub namespace with a bridge, and host
//! namespaces attached to it by veth pairs, each host with one IPv4 and
//! one IPv6 address on its `eth0`: 198.18.0.N/24 and 2001:2::N/64 (N
//! written the same in both). Processes started in the hosts are
//! [`Proc`]s; [`Lab::edge`] starts edge in one.
//!
//! Names are unique per lab (a tag, the test process id and a counter), so
//! tests run in parallel. Dropping the lab kills whatever still runs in
//! its namespaces and deletes them, also when a test panics; its directory
//! (configs, logs) is kept when the test failed or `EDGE_LAB_KEEP` is set.
//! `EDGE_LAB_PCAP=1` records the bridge's traffic into `DIR/hub.pcap`.
//!
//! Only 198.18.0.0/15 and 2001:2::/48 are used, inside the namespaces.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use crate::edge::{Edge, EdgeBuilder};
use crate::proc::{Proc, unique};
use crate::{require_root, run};

/// One host of the lab.
#[derive(Debug, Clone)]
struct Host {
    name: String,
    ns: String,
    v4: String,
    v6: String,
}

/// A hub namespace with a bridge, and host namespaces attached to it.
#[derive(Debug)]
pub struct Lab {
    id: String,
    hub: String,
    hosts: Vec<Host>,
    pcap: Option<Child>,
    /// Files of this lab (configs, logs).
    pub dir: PathBuf,
}

impl Lab {
    /// An empty lab; `tag` (a few letters) goes into its names. Fails the
    /// test unless it runs as root.
    pub fn new(tag: &str) -> Lab {
        require_root("the network lab");
        let id = format!("{tag}{}x{}", std::process::id(), unique());
        let dir = std::env::temp_dir().join(&id);
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        // The guard exists before the first namespace: a failed setup is
        // cleaned up too.
        let mut lab = Lab {
            hub: format!("{id}h"),
            id,
            hosts: Vec::new(),
            pcap: None,
            dir,
        };
        run(&["ip", "netns", "add", &lab.hub]);
        let hub = lab.hub.clone();
        // No multicast snooping: VRRP adverts reach every port at once.
        let br = [
            "link",
            "add",
            "br0",
            "type",
            "bridge",
            "mcast_snooping",
            "0",
        ];
        lab.hub_ip(&br);
        lab.hub_ip(&["link", "set", "br0", "up"]);
        if std::env::var_os("EDGE_LAB_PCAP").is_some() {
            lab.pcap = Command::new("ip")
                .args([
                    "netns", "exec", &hub, "tcpdump", "-U", "-i", "br0", "-e", "-w",
                ])
                .arg(lab.dir.join("hub.pcap"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .ok();
        }
        lab
    }

    /// This lab's id (the prefix of its namespaces).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The hub namespace (the bridge `br0`).
    pub fn hub(&self) -> &str {
        &self.hub
    }

    fn hub_ip(&self, args: &[&str]) {
        let mut all = vec!["ip", "-n", &self.hub];
        all.extend_from_slice(args);
        run(&all);
    }

    /// Adds host `name` with 198.18.0.`n`/24 and 2001:2::`n`/64 on its
    /// `eth0`. IPv6 without duplicate address detection (the addresses are
    /// usable at once), and addresses survive a link flap (a crash is
    /// simulated by taking the link down).
    pub fn host(&mut self, name: &str, n: u8) {
        assert!(
            self.hosts.iter().all(|h| h.name != name),
            "host {name} twice"
        );
        let ns = format!("{}-{name}", self.id);
        run(&["ip", "netns", "add", &ns]);
        self.hosts.push(Host {
            name: name.to_owned(),
            ns: ns.clone(),
            v4: format!("198.18.0.{n}"),
            v6: format!("2001:2::{n}"),
        });
        let port = format!("p{}", self.hosts.len());
        self.hub_ip(&[
            "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns", &ns,
        ]);
        self.hub_ip(&["link", "set", &port, "master", "br0", "up"]);
        for key in ["all", "default", "eth0"] {
            for setting in ["accept_dad=0", "keep_addr_on_down=1"] {
                let s = format!("net.ipv6.conf.{key}.{setting}");
                run(&["ip", "netns", "exec", &ns, "sysctl", "-qw", &s]);
            }
        }
        let (v4, v6) = (format!("198.18.0.{n}/24"), format!("2001:2::{n}/64"));
        self.ip(name, &["link", "set", "lo", "up"]);
        self.ip(name, &["addr", "add", &v4, "dev", "eth0"]);
        self.ip(name, &["addr", "add", &v6, "dev", "eth0", "nodad"]);
        self.ip(name, &["link", "set", "eth0", "up"]);
    }

    fn entry(&self, name: &str) -> &Host {
        self.hosts
            .iter()
            .find(|h| h.name == name)
            .unwrap_or_else(|| panic!("no host {name} in the lab"))
    }

    /// The namespace of host `name`.
    pub fn ns(&self, name: &str) -> &str {
        &self.entry(name).ns
    }

    /// The IPv4 address of host `name`.
    pub fn addr(&self, name: &str) -> &str {
        &self.entry(name).v4
    }

    /// The IPv6 address of host `name`.
    pub fn addr6(&self, name: &str) -> &str {
        &self.entry(name).v6
    }

    /// Runs `args` inside host `name` and waits for it.
    pub fn exec(&self, name: &str, args: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", self.ns(name)])
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("{args:?} in {name}: {e}"))
    }

    /// Runs `ip ARGS` inside host `name`; it must succeed. Its stdout.
    pub fn ip(&self, name: &str, args: &[&str]) -> String {
        let mut all = vec!["ip", "-n", self.ns(name)];
        all.extend_from_slice(args);
        run(&all)
    }

    /// A command running `args` inside host `name`, in the lab's directory.
    pub fn command(&self, name: &str, args: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", self.ns(name)])
            .args(args)
            .current_dir(&self.dir);
        c
    }

    /// Starts `args` inside host `name`, stdout and stderr to `DIR/log`.
    pub fn spawn(&self, name: &str, args: &[&str], log: &str) -> Proc {
        self.spawn_env(name, args, &[], log)
    }

    /// Like [`spawn`](Self::spawn) with extra environment variables.
    pub fn spawn_env(&self, name: &str, args: &[&str], env: &[(&str, &str)], log: &str) -> Proc {
        // `ip netns exec` execs the program: the child's pid is its pid.
        let mut cmd = self.command(name, args);
        cmd.envs(env.iter().copied());
        Proc::spawn(cmd, &format!("{} in {name}", args[0]), self.dir.join(log))
    }

    /// How to start edge (`bin`) inside host `name` with `config`, its log
    /// next to the config; `RUST_LOG` is left to the config's `log_level`.
    pub fn edge(&self, name: &str, bin: impl AsRef<Path>, config: impl AsRef<Path>) -> EdgeBuilder {
        Edge::builder(bin, config)
            .netns(self.ns(name))
            .rust_log(None)
    }

    /// Whether host `name` has `ip` on `eth0`.
    pub fn holds(&self, name: &str, ip: &str) -> bool {
        let out = self.exec(name, &["ip", "-o", "addr", "show", "dev", "eth0"]);
        String::from_utf8_lossy(&out.stdout).contains(&format!(" {ip}/"))
    }

    /// Whether any interface of host `name` (eth0, or a macvlan on it)
    /// holds `ip`.
    pub fn has_address(&self, name: &str, ip: &str) -> bool {
        let out = Command::new("ip")
            .args(["-n", self.ns(name), "-o", "addr", "show"])
            .output();
        out.is_ok_and(|o| {
            String::from_utf8_lossy(&o.stdout)
                .split_whitespace()
                .any(|w| w.split('/').next() == Some(ip))
        })
    }

    /// Whether host `name`'s `eth0` is up.
    pub fn link_up(&self, name: &str) -> bool {
        let out = self.ip(name, &["-o", "link", "show", "dev", "eth0"]);
        out.contains(",UP") || out.contains("<UP")
    }

    /// Takes host `name`'s `eth0` up or down.
    pub fn set_link(&self, name: &str, up: bool) {
        self.ip(
            name,
            &["link", "set", "eth0", if up { "up" } else { "down" }],
        );
    }

    /// Host `name`'s `eth0` MAC address.
    pub fn mac(&self, name: &str) -> String {
        let out = self.ip(name, &["-br", "link", "show", "dev", "eth0"]);
        out.split_whitespace().nth(2).unwrap_or_default().to_owned()
    }

    /// Writes `DIR/name`; its path.
    pub fn write(&self, name: &str, content: impl AsRef<[u8]>) -> PathBuf {
        let p = self.dir.join(name);
        fs::write(&p, content).unwrap();
        p
    }

    /// Runs curl inside host `name` (`-s`, a 0.5 s connect and 2 s total
    /// timeout; later arguments may override them); the body when it
    /// exits 0.
    pub fn curl(&self, name: &str, args: &[&str]) -> Option<String> {
        let mut all = vec!["curl", "-s", "--connect-timeout", "0.5", "--max-time", "2"];
        all.extend_from_slice(args);
        let out = self.exec(name, &all);
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Some(mut p) = self.pcap.take() {
            let _ = p.kill();
            let _ = p.wait();
        }
        for ns in self
            .hosts
            .iter()
            .map(|h| &h.ns)
            .chain(std::iter::once(&self.hub))
        {
            // Anything still running in it (a process a test lost track of).
            if let Ok(out) = Command::new("ip").args(["netns", "pids", ns]).output() {
                for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                    let _ = Command::new("kill").args(["-KILL", pid]).status();
                }
            }
            let _ = Command::new("ip")
                .args(["netns", "del", ns])
                .stderr(Stdio::null())
                .status();
        }
        if std::thread::panicking() || std::env::var_os("EDGE_LAB_KEEP").is_some() {
            eprintln!("lab files kept in {}", self.dir.display());
        } else {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn namespaces() -> String {
        run(&["ip", "netns", "list"])
    }

    /// Two hosts reach each other over IPv4 and IPv6; a process left
    /// running and the namespaces are gone after the lab, also when the
    /// test using it panics.
    #[test]
    fn hosts_talk_and_everything_is_gone_after_a_panic() {
        let (id, pid) = {
            let mut lab = Lab::new("tkl");
            lab.host("a", 2);
            lab.host("b", 3);
            assert_eq!(lab.addr("b"), "198.18.0.3");
            assert_eq!(lab.addr6("b"), "2001:2::3");
            assert!(lab.holds("a", "198.18.0.2"));
            assert!(lab.has_address("a", "2001:2::2"));
            assert!(!lab.holds("a", "198.18.0.3"));
            for dst in ["198.18.0.3", "2001:2::3"] {
                let out = lab.exec("a", &["ping", "-c1", "-W2", dst]);
                assert!(out.status.success(), "ping {dst}: {out:?}");
            }
            assert!(lab.link_up("a"));
            lab.set_link("a", false);
            assert!(!lab.link_up("a"));
            // Addresses survive the link flap.
            assert!(lab.holds("a", "198.18.0.2"));
            let p = lab.spawn("b", &["sleep", "60"], "sleep.log");
            let pid = p.pid().unwrap();
            std::mem::forget(p);
            assert!(namespaces().contains(&format!("{}-a", lab.id())));
            (lab.id().to_owned(), pid)
        };
        assert!(!namespaces().contains(&id), "{id} left behind");
        std::thread::sleep(Duration::from_millis(100));
        let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        // Killed; at most a zombie of this process (the forgotten Proc).
        assert!(stat.is_empty() || stat.contains(") Z "), "{stat}");

        let panicked = std::panic::catch_unwind(|| {
            let mut lab = Lab::new("tkp");
            lab.host("a", 2);
            let id = lab.id().to_owned();
            panic!("{id}");
        });
        let id = *panicked.unwrap_err().downcast::<String>().unwrap();
        assert!(
            !namespaces().contains(&id),
            "{id} left behind after a panic"
        );
        let dir = std::env::temp_dir().join(&id);
        assert!(dir.exists(), "the files of a failed lab are kept");
        let _ = fs::remove_dir_all(dir);
    }
}
