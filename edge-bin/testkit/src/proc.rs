//! Child processes killed and reaped on drop, and temporary directories.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::sleep;
use std::time::{Duration, Instant};

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A number unique within this test process (for names of files,
/// namespaces and links).
pub(crate) fn unique() -> usize {
    COUNTER.fetch_add(1, Ordering::Relaxed)
}

/// A temporary directory, removed on drop unless the test panicked or
/// `EDGE_TEST_KEEP` is set (then its path is printed).
#[derive(Debug)]
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// A new empty directory; `tag` goes into its name.
    pub fn new(tag: &str) -> Self {
        let p = std::env::temp_dir().join(format!(
            "edge-test-{tag}-{}-{}",
            std::process::id(),
            unique()
        ));
        let _ = fs::remove_dir_all(&p);
        fs::create_dir_all(&p).unwrap();
        Self(p)
    }

    /// `DIR/name`.
    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    /// Writes `DIR/name`; its path.
    pub fn write(&self, name: &str, content: impl AsRef<[u8]>) -> PathBuf {
        let p = self.path(name);
        fs::write(&p, content).unwrap();
        p
    }

    /// Reads `DIR/name` (empty when missing).
    pub fn read(&self, name: &str) -> String {
        fs::read_to_string(self.path(name)).unwrap_or_default()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::thread::panicking() || std::env::var_os("EDGE_TEST_KEEP").is_some() {
            eprintln!("test files kept in {}", self.0.display());
        } else {
            let _ = fs::remove_dir_all(&self.0);
        }
    }
}

/// A running child; SIGKILLed and reaped on drop (also when a test
/// panics). Its stdout and stderr go to a log file, unless it was
/// [adopted](Proc::adopt) with other plumbing.
#[derive(Debug)]
pub struct Proc {
    child: Option<Child>,
    /// The log file (stdout and stderr), when there is one.
    pub log: PathBuf,
    /// What it is, for messages.
    pub name: String,
}

impl Proc {
    /// Spawns `cmd` with stdin from /dev/null and stdout and stderr
    /// appended to `log`.
    pub fn spawn(mut cmd: Command, name: &str, log: impl Into<PathBuf>) -> Proc {
        let log = log.into();
        let file = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap_or_else(|e| panic!("log file {}: {e}", log.display()));
        let child = cmd
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {name} ({cmd:?}): {e}"));
        Proc {
            child: Some(child),
            log,
            name: name.to_owned(),
        }
    }

    /// Guards a child spawned with plumbing of its own (`log` may be a
    /// file it writes, or empty).
    pub fn adopt(child: Child, name: &str, log: impl Into<PathBuf>) -> Proc {
        Proc {
            child: Some(child),
            log: log.into(),
            name: name.to_owned(),
        }
    }

    /// The process id, while it was not reaped.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The child, while it was not reaped (its pipes, `try_wait`).
    pub fn child(&mut self) -> Option<&mut Child> {
        self.child.as_mut()
    }

    /// The log so far.
    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The log so far without ANSI colours.
    pub fn log_plain(&self) -> String {
        crate::strip_ansi(&self.log_text())
    }

    /// Sends `sig` (`-TERM`, `-HUP`, `-USR1`, ...) with kill(1); it must
    /// be delivered.
    pub fn signal(&self, sig: &str) {
        let pid = self
            .pid()
            .unwrap_or_else(|| panic!("{} already exited", self.name));
        crate::run(&["kill", sig, &pid.to_string()]);
    }

    /// Waits until the log contains `needle`; false after `limit`.
    pub fn wait_log(&self, needle: &str, limit: Duration) -> bool {
        crate::wait_until(limit, || self.log_text().contains(needle))
    }

    /// Whether it is still running (not exited, not reaped).
    pub fn running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Waits until the process exits (at most `limit`); its status, which
    /// is reaped. `None` when it still runs (or was reaped before).
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let c = self.child.as_mut()?;
        let t0 = Instant::now();
        loop {
            if let Ok(Some(status)) = c.try_wait() {
                self.child = None;
                return Some(status);
            }
            if t0.elapsed() >= limit {
                return None;
            }
            sleep(Duration::from_millis(10));
        }
    }

    /// SIGTERM and wait (at most 10 s, then SIGKILL); true when it exited
    /// with status 0 in time.
    pub fn terminate(&mut self) -> bool {
        if self.pid().is_none() {
            return false;
        }
        self.signal("-TERM");
        let clean = self.wait_exit(Duration::from_secs(10));
        self.crash();
        clean.is_some_and(|s| s.success())
    }

    /// SIGKILL and reap.
    pub fn crash(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.crash();
    }
}

impl AsRef<Proc> for Proc {
    fn as_ref(&self) -> &Proc {
        self
    }
}

/// The last 60 lines of each process's log, without access records
/// (`edge::access`), each under its log's path: what a failed assertion
/// about a group of processes prints.
pub fn log_tails<P: AsRef<Proc>>(procs: &[&P]) -> String {
    procs
        .iter()
        .map(|p| {
            let p = (*p).as_ref();
            let text = p.log_text();
            let lines: Vec<&str> = text
                .lines()
                .filter(|l| !l.contains("edge::access"))
                .collect();
            let tail = lines[lines.len().saturating_sub(60)..].join("\n");
            format!("== {}\n{tail}", p.log.display())
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The log at `path`, or a note that there is none.
pub(crate) fn read_log(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| format!("(no log {}: {e})", path.display()))
}

/// `openssl s_server` on 127.0.0.1:`port` with `leaf`'s certificate, as a
/// TLS backend (`mode`: `-www` answers a status page, `-rev` echoes lines
/// reversed); its log in `dir/s_server.log`. Ready (listening) on return.
pub fn openssl_s_server(dir: &TempDir, port: u16, leaf: &crate::Leaf, mode: &str) -> Proc {
    let mut cmd = Command::new("openssl");
    cmd.args([
        "s_server",
        "-quiet",
        mode,
        "-accept",
        &port.to_string(),
        "-cert",
    ])
    .arg(&leaf.cert)
    .arg("-key")
    .arg(&leaf.key);
    let p = Proc::spawn(cmd, "openssl s_server", dir.path("s_server.log"));
    assert!(
        crate::wait_port(port, std::time::Duration::from_secs(10)),
        "openssl s_server did not start"
    );
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dropped_proc_is_killed_and_reaped() {
        let dir = TempDir::new("proc");
        let mut sh = Command::new("sh");
        sh.args(["-c", "echo started; exec sleep 30"]);
        let p = Proc::spawn(sh, "sleep", dir.path("sleep.log"));
        let pid = p.pid().unwrap();
        assert!(p.wait_log("started", Duration::from_secs(10)), "no output");
        assert!(Path::new(&format!("/proc/{pid}")).exists());
        drop(p);
        // Reaped: no zombie is left under this pid.
        assert!(!Path::new(&format!("/proc/{pid}")).exists());
    }

    #[test]
    fn terminate_reports_a_clean_exit() {
        let dir = TempDir::new("proc");
        let mut sh = Command::new("sh");
        sh.args([
            "-c",
            "trap 'exit 0' TERM; echo up; while :; do sleep 0.05; done",
        ]);
        let mut p = Proc::spawn(sh, "sh", dir.path("sh.log"));
        assert!(p.wait_log("up", Duration::from_secs(10)));
        assert!(p.running());
        assert!(p.terminate());
        assert!(!p.running());
        let mut sh = Command::new("sh");
        sh.args(["-c", "exit 3"]);
        let mut p = Proc::spawn(sh, "sh", dir.path("sh3.log"));
        assert_eq!(
            p.wait_exit(Duration::from_secs(10)).unwrap().code(),
            Some(3)
        );
    }
}
