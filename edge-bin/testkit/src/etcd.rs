//! etcd (Debian `etcd-server`) for the shared-state tests: one member on
//! loopback, or the arguments of a member of a cluster in the lab.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::proc::{Proc, TempDir};
use crate::{free_port, wait_port};

/// The command line of one etcd member named `name` listening on `ip`
/// (clients on `client_port`, peers on `peer_port`), its data in
/// `data_dir`; `cluster` is the `--initial-cluster` list
/// (`name=http://ip:port,...`).
pub fn member_args(
    name: &str,
    data_dir: &Path,
    ip: &str,
    client_port: u16,
    peer_port: u16,
    cluster: &str,
) -> Vec<String> {
    assert!(
        Path::new("/usr/bin/etcd").exists(),
        "etcd is not installed: apt-get install etcd-server (Debian package)"
    );
    let client = format!("http://{ip}:{client_port}");
    let peer = format!("http://{ip}:{peer_port}");
    [
        "etcd",
        "--name",
        name,
        "--data-dir",
        &data_dir.to_string_lossy(),
        "--listen-client-urls",
        &client,
        "--advertise-client-urls",
        &client,
        "--listen-peer-urls",
        &peer,
        "--initial-advertise-peer-urls",
        &peer,
        "--initial-cluster",
        cluster,
        "--initial-cluster-state",
        "new",
        "--initial-cluster-token",
        "edge-test",
        // Short elections so that a killed leader is replaced within a
        // second or two in the tests.
        "--heartbeat-interval",
        "100",
        "--election-timeout",
        "1000",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect()
}

/// A one-member etcd on loopback with free ports and a temporary data
/// directory; SIGKILLed when dropped.
#[derive(Debug)]
pub struct LocalEtcd {
    proc: Option<Proc>,
    args: Vec<String>,
    port: u16,
    /// Its data directory and log.
    pub dir: TempDir,
}

impl LocalEtcd {
    /// Starts it and waits until it serves clients (at most 20 s).
    pub fn start(tag: &str) -> LocalEtcd {
        let dir = TempDir::new(&format!("etcd-{tag}"));
        let port = free_port();
        let peer = free_port();
        let cluster = format!("{tag}=http://127.0.0.1:{peer}");
        let args = member_args(tag, &dir.path("data"), "127.0.0.1", port, peer, &cluster);
        let mut etcd = LocalEtcd {
            proc: None,
            args,
            port,
            dir,
        };
        etcd.restart();
        etcd
    }

    /// The client URL (`http://127.0.0.1:PORT`).
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Kills it (SIGKILL); its data stays for [`restart`](Self::restart).
    pub fn kill(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.crash();
        }
    }

    /// Starts it again on the same port and data, waiting until it serves.
    pub fn restart(&mut self) {
        self.kill();
        let mut cmd = Command::new(&self.args[0]);
        cmd.args(&self.args[1..]);
        let proc = Proc::spawn(cmd, "etcd", self.dir.path("etcd.log"));
        assert!(
            wait_port(self.port, Duration::from_secs(20))
                && proc.wait_log("ready to serve client requests", Duration::from_secs(20)),
            "etcd did not start: {}",
            proc.log_text()
        );
        self.proc = Some(proc);
    }
}
