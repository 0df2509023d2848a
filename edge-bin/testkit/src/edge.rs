//! The `edge` binary as a child process, started one way for every test:
//! `edge run -c CONFIG`, ready when its `READY=1` sd_notify message
//! arrived (edge sends it once every listener, the management endpoint
//! and the admin socket are bound).

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::sync::{Arc, Mutex, Weak};
use std::thread::sleep;
use std::time::{Duration, Instant};

use crate::proc::{Proc, read_log};

/// How long edge may take to become ready.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// How to start edge; [`start`](EdgeBuilder::start) runs it and waits
/// until it is ready.
#[derive(Debug)]
pub struct EdgeBuilder {
    bin: PathBuf,
    config: PathBuf,
    log: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
    rust_log: Option<String>,
    netns: Option<String>,
}

impl EdgeBuilder {
    /// Its log (stdout and stderr) goes to `path` instead of `CONFIG.log`.
    pub fn log(mut self, path: impl Into<PathBuf>) -> Self {
        self.log = path.into();
        self
    }

    /// One more argument after `run -c CONFIG`.
    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// An environment variable (`NOTIFY_SOCKET` is the builder's own).
    pub fn env(mut self, key: &str, value: impl Into<String>) -> Self {
        self.env.push((key.to_owned(), value.into()));
        self
    }

    /// `RUST_LOG` for edge; `None` leaves the config's `log_level` in
    /// charge. The default is `$EDGE_TEST_LOG`, else
    /// `info,edge::access=debug`.
    pub fn rust_log(mut self, filter: Option<&str>) -> Self {
        self.rust_log = filter.map(str::to_owned);
        self
    }

    /// Runs edge inside network namespace `ns` (`ip netns exec`).
    pub fn netns(mut self, ns: &str) -> Self {
        self.netns = Some(ns.to_owned());
        self
    }

    /// Starts edge and waits until it is ready; panics with its log when it
    /// exits or is not ready within 30 s.
    pub fn start(self) -> Edge {
        let mut edge = self.spawn();
        edge.wait_ready();
        edge
    }

    /// Starts edge without waiting: for tests that start several at once
    /// (a VRRP pair) and call [`Edge::wait_ready`] later, or wait for what
    /// they serve.
    pub fn spawn(self) -> Edge {
        let notify_path = self.log.with_extension("notify");
        let _ = std::fs::remove_file(&notify_path);
        let sock = UnixDatagram::bind(&notify_path)
            .unwrap_or_else(|e| panic!("notify socket {}: {e}", notify_path.display()));
        let messages = Arc::new(Mutex::new(Vec::new()));
        spawn_reader(sock, Arc::downgrade(&messages));

        let mut cmd = match &self.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(&self.bin);
                c
            }
            None => Command::new(&self.bin),
        };
        cmd.args(["run", "-c"])
            .arg(&self.config)
            .args(&self.args)
            .env("NOTIFY_SOCKET", &notify_path)
            .env_remove("WATCHDOG_USEC")
            .env_remove("RUST_LOG");
        if let Some(filter) = &self.rust_log {
            cmd.env("RUST_LOG", filter);
        }
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        let name = format!(
            "edge {}{}",
            self.config.display(),
            self.netns
                .as_deref()
                .map(|n| format!(" in {n}"))
                .unwrap_or_default()
        );
        let proc = Proc::spawn(cmd, &name, &self.log);
        Edge {
            proc,
            config: self.config,
            notify_path,
            messages,
            seen: 0,
        }
    }
}

/// Reads sd_notify datagrams into `messages` until the [`Edge`] is gone.
fn spawn_reader(sock: UnixDatagram, messages: Weak<Mutex<Vec<String>>>) {
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        loop {
            let got = sock.recv(&mut buf);
            let Some(messages) = messages.upgrade() else {
                return;
            };
            if let Ok(n) = got {
                let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
                messages.lock().unwrap().push(msg);
            }
        }
    });
}

/// A running edge; killed (SIGKILL) and reaped on drop.
#[derive(Debug)]
pub struct Edge {
    proc: Proc,
    config: PathBuf,
    notify_path: PathBuf,
    messages: Arc<Mutex<Vec<String>>>,
    /// How many messages [`next_notification`](Edge::next_notification)
    /// returned.
    seen: usize,
}

impl Edge {
    /// `edge run -c CONFIG` on the host, its log in `CONFIG` with the
    /// extension `.log`. `bin` is `env!("CARGO_BIN_EXE_edge")`.
    pub fn builder(bin: impl AsRef<Path>, config: impl AsRef<Path>) -> EdgeBuilder {
        let config = config.as_ref().to_path_buf();
        EdgeBuilder {
            bin: bin.as_ref().to_path_buf(),
            log: config.with_extension("log"),
            config,
            args: Vec::new(),
            env: Vec::new(),
            rust_log: Some(
                std::env::var("EDGE_TEST_LOG").unwrap_or_else(|_| "info,edge::access=debug".into()),
            ),
            netns: None,
        }
    }

    /// Starts edge with `config` and the defaults; ready when this returns.
    pub fn start(bin: impl AsRef<Path>, config: impl AsRef<Path>) -> Edge {
        Edge::builder(bin, config).start()
    }

    /// Waits until edge sent `READY=1`; panics with its log when it exits
    /// first or is not ready within 30 s.
    pub fn wait_ready(&mut self) {
        let t0 = Instant::now();
        loop {
            if self.notifications().iter().any(|m| is_ready(m)) {
                return;
            }
            if let Some(status) = self.proc.wait_exit(Duration::ZERO) {
                panic!(
                    "{} exited ({status}) before it was ready:\n{}",
                    self.proc.name,
                    read_log(&self.proc.log)
                );
            }
            if t0.elapsed() > READY_TIMEOUT {
                self.proc.crash();
                panic!(
                    "{} was not ready within {READY_TIMEOUT:?}:\n{}",
                    self.proc.name,
                    read_log(&self.proc.log)
                );
            }
            sleep(Duration::from_millis(10));
        }
    }

    /// The config file it runs with.
    pub fn config(&self) -> &Path {
        &self.config
    }

    /// Every sd_notify message edge sent so far, in order.
    pub fn notifications(&self) -> Vec<String> {
        self.messages.lock().unwrap().clone()
    }

    /// The next sd_notify message not returned before (the first one is
    /// the `READY=1` of the start), waiting at most `limit`.
    pub fn next_notification(&mut self, limit: Duration) -> Option<String> {
        let t0 = Instant::now();
        loop {
            if let Some(m) = self.messages.lock().unwrap().get(self.seen) {
                self.seen += 1;
                return Some(m.clone());
            }
            if t0.elapsed() > limit {
                return None;
            }
            sleep(Duration::from_millis(5));
        }
    }

    /// Writes `config` to its config file, sends SIGHUP and waits (20 s at
    /// most) until the log shows the outcome of reload number `n` (done,
    /// refused or failed). Returns the log.
    pub fn reload(&self, config: &str, n: usize) -> String {
        std::fs::write(&self.config, config).unwrap();
        self.signal("-HUP");
        self.wait_reloads(n, Duration::from_secs(20))
    }

    /// Waits until the log shows the outcome of `n` reloads; the log.
    pub fn wait_reloads(&self, n: usize, limit: Duration) -> String {
        let t0 = Instant::now();
        loop {
            let log = self.proc.log_plain();
            let done = log.matches("configuration reloaded").count()
                + log.matches("reload refused: invalid config").count()
                + log.matches("reload failed").count();
            if done >= n {
                return log;
            }
            assert!(t0.elapsed() < limit, "reload {n} did not finish:\n{log}");
            sleep(Duration::from_millis(20));
        }
    }

    /// Waits for the process to exit (panics with its log after `limit`);
    /// its status and how long it took.
    pub fn wait_exited(&mut self, limit: Duration) -> (ExitStatus, Duration) {
        let t0 = Instant::now();
        match self.proc.wait_exit(limit) {
            Some(status) => (status, t0.elapsed()),
            None => panic!(
                "{} did not exit within {limit:?}:\n{}",
                self.proc.name,
                self.proc.log_text()
            ),
        }
    }
}

fn is_ready(message: &str) -> bool {
    message.lines().any(|l| l == "READY=1")
}

impl AsRef<Proc> for Edge {
    fn as_ref(&self) -> &Proc {
        &self.proc
    }
}

impl std::ops::Deref for Edge {
    type Target = Proc;
    fn deref(&self) -> &Proc {
        &self.proc
    }
}

impl std::ops::DerefMut for Edge {
    fn deref_mut(&mut self) -> &mut Proc {
        &mut self.proc
    }
}

impl Drop for Edge {
    fn drop(&mut self) {
        self.proc.crash();
        let _ = std::fs::remove_file(&self.notify_path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TempDir;

    /// A binary that exits at once fails the start; the panic carries its
    /// log.
    #[test]
    fn an_edge_that_exits_before_ready_fails_the_start() {
        let dir = TempDir::new("edge");
        let fake = dir.write(
            "fake-edge",
            "#!/bin/sh\necho \"bad config: $3\" >&2\nexit 2\n",
        );
        crate::run(&["chmod", "+x", &fake.to_string_lossy()]);
        let config = dir.write("edge.toml", "");
        let err = std::panic::catch_unwind(|| Edge::start(&fake, &config))
            .expect_err("a start without READY=1 must fail");
        let msg = err.downcast_ref::<String>().cloned().unwrap_or_default();
        assert!(msg.contains("before it was ready"), "{msg}");
        assert!(msg.contains("bad config:"), "{msg}");
        assert!(msg.contains("edge.toml"), "{msg}");
    }

    /// A stand-in for edge (python3) that sends `READY=1`, then
    /// `RELOADING=1` on SIGHUP: the start returns once it is ready and the
    /// messages arrive in order.
    #[test]
    fn start_waits_for_ready_and_keeps_the_messages() {
        let dir = TempDir::new("edge");
        let fake = dir.write(
            "fake-edge",
            "#!/usr/bin/env python3\n\
             import os, signal, socket, time\n\
             s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)\n\
             send = lambda m: s.sendto(m, os.environ['NOTIFY_SOCKET'])\n\
             signal.signal(signal.SIGHUP, lambda *a: send(b'RELOADING=1'))\n\
             time.sleep(0.3)\n\
             send(b'READY=1\\nSTATUS=serving')\n\
             while True: time.sleep(1)\n",
        );
        crate::run(&["chmod", "+x", &fake.to_string_lossy()]);
        let config = dir.write("edge.toml", "");
        let t0 = Instant::now();
        let mut edge = Edge::start(&fake, &config);
        assert!(t0.elapsed() >= Duration::from_millis(300));
        assert_eq!(
            edge.next_notification(Duration::ZERO).as_deref(),
            Some("READY=1\nSTATUS=serving")
        );
        edge.signal("-HUP");
        assert_eq!(
            edge.next_notification(Duration::from_secs(10)).as_deref(),
            Some("RELOADING=1")
        );
        assert!(edge.running());
        let pid = edge.pid().unwrap();
        drop(edge);
        assert!(!Path::new(&format!("/proc/{pid}")).exists());
    }

    #[test]
    fn ready_is_a_line_of_its_own() {
        assert!(is_ready("READY=1\nSTATUS=serving"));
        assert!(!is_ready("RELOADING=1"));
        assert!(!is_ready("NOTREADY=1"));
    }
}
