//! systemd's service notification protocol (`sd_notify(3)`): one datagram
//! of `KEY=VALUE` lines to the unix socket named by `$NOTIFY_SOCKET`
//! (a path, or an abstract name when it starts with `@`).
//!
//! edge sends `READY=1` once its listeners are bound and the first round of
//! health checks has ended (at most `startup_hold`), `RELOADING=1` with
//! `MONOTONIC_USEC=` when a reload starts and `READY=1` when it ends,
//! `STOPPING=1` when it stops, a `STATUS=` line with each, and `WATCHDOG=1`
//! keep-alives when systemd asks for them (`WatchdogSec=`). Without
//! `$NOTIFY_SOCKET` (not under systemd, or `Type=` other than notify)
//! every call does nothing.

use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;

/// Where notifications go.
#[derive(Debug)]
pub struct Notifier {
    target: Option<Target>,
}

#[derive(Debug)]
enum Target {
    Path(PathBuf),
    Abstract(Vec<u8>),
}

impl Notifier {
    /// The socket named by `$NOTIFY_SOCKET`, if set.
    pub fn from_env() -> Self {
        Self::new(std::env::var_os("NOTIFY_SOCKET").map(PathBuf::from))
    }

    /// The socket `path` (`@name` for an abstract one); `None` sends nothing.
    pub fn new(path: Option<PathBuf>) -> Self {
        use std::os::unix::ffi::OsStrExt;
        let target = path.and_then(|p| {
            let bytes = p.as_os_str().as_bytes();
            match bytes.first() {
                None => None,
                Some(b'@') => Some(Target::Abstract(
                    bytes.get(1..).unwrap_or_default().to_vec(),
                )),
                Some(_) => Some(Target::Path(p)),
            }
        });
        Self { target }
    }

    /// Whether notifications go anywhere.
    pub fn enabled(&self) -> bool {
        self.target.is_some()
    }

    /// Sends `state` (newline-separated `KEY=VALUE` lines). Failures are
    /// logged and otherwise ignored: serving never depends on systemd.
    pub fn notify(&self, state: &str) {
        let Some(target) = &self.target else {
            return;
        };
        if let Err(e) = send(target, state) {
            tracing::warn!(error = %e, "sd_notify failed");
        }
    }

    /// `READY=1` with a status line.
    pub fn ready(&self, status: &str) {
        self.notify(&format!("READY=1\nSTATUS={}", one_line(status)));
    }

    /// `RELOADING=1` with the monotonic time systemd expects.
    pub fn reloading(&self) {
        let usec = monotonic_usec();
        self.notify(&format!(
            "RELOADING=1\nMONOTONIC_USEC={usec}\nSTATUS=reloading the configuration"
        ));
    }

    /// `STOPPING=1` with a status line.
    pub fn stopping(&self, status: &str) {
        self.notify(&format!("STOPPING=1\nSTATUS={}", one_line(status)));
    }

    /// Sends `WATCHDOG=1` at half the interval systemd asks for in
    /// `$WATCHDOG_USEC` (`WatchdogSec=`), from a task on the current
    /// runtime, so a runtime that stops scheduling tasks gets edge
    /// restarted. Nothing when the variable is unset or meant for another
    /// process (`$WATCHDOG_PID`).
    pub fn spawn_watchdog(self: &std::sync::Arc<Self>) {
        let Some(every) = watchdog_interval(
            std::env::var("WATCHDOG_USEC").ok().as_deref(),
            std::env::var("WATCHDOG_PID").ok().as_deref(),
        ) else {
            return;
        };
        if !self.enabled() {
            return;
        }
        let this = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                this.notify("WATCHDOG=1");
            }
        });
    }

    /// A `STATUS=` line alone.
    pub fn status(&self, status: &str) {
        self.notify(&format!("STATUS={}", one_line(status)));
    }
}

/// Half the watchdog interval, when it is set for this process.
fn watchdog_interval(usec: Option<&str>, pid: Option<&str>) -> Option<std::time::Duration> {
    if let Some(pid) = pid
        && pid.parse::<u32>().ok() != Some(std::process::id())
    {
        return None;
    }
    let usec: u64 = usec?.parse().ok().filter(|u| *u > 0)?;
    Some(std::time::Duration::from_micros(usec / 2).max(std::time::Duration::from_millis(10)))
}

fn one_line(s: &str) -> String {
    s.replace(['\n', '\r'], " ")
}

fn send(target: &Target, state: &str) -> std::io::Result<()> {
    let sock = UnixDatagram::unbound()?;
    // Never block the runtime on a receiver that does not read.
    sock.set_nonblocking(true)?;
    match target {
        Target::Path(p) => sock.send_to(state.as_bytes(), p).map(drop),
        Target::Abstract(name) => {
            use std::os::linux::net::SocketAddrExt;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
            sock.send_to_addr(state.as_bytes(), &addr).map(drop)
        }
    }
}

/// CLOCK_MONOTONIC in microseconds, the clock systemd compares reload
/// timestamps with.
fn monotonic_usec() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    u64::try_from(t.tv_sec)
        .unwrap_or(0)
        .saturating_mul(1_000_000)
        .saturating_add(u64::try_from(t.tv_nsec / 1000).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sends_to_a_path_and_an_abstract_socket() {
        let dir = std::env::temp_dir().join(format!("edge-notify-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join("notify.sock");
        let _ = std::fs::remove_file(&path);
        let rx = UnixDatagram::bind(&path).unwrap();
        let n = Notifier::new(Some(path.clone()));
        n.ready("serving");
        let mut buf = [0u8; 256];
        let len = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"READY=1\nSTATUS=serving");

        use std::os::linux::net::SocketAddrExt;
        let name = format!("edge-notify-test-{}", std::process::id());
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let rx2 = UnixDatagram::bind_addr(&addr).unwrap();
        let n = Notifier::new(Some(PathBuf::from(format!("@{name}"))));
        n.reloading();
        let len = rx2.recv(&mut buf).unwrap();
        let msg = std::str::from_utf8(&buf[..len]).unwrap();
        assert!(msg.starts_with("RELOADING=1\nMONOTONIC_USEC="), "{msg}");
        let usec: u64 = msg.lines().nth(1).unwrap()["MONOTONIC_USEC=".len()..]
            .parse()
            .unwrap();
        assert!(usec > 0);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn watchdog_interval_is_half_of_systemds() {
        let me = std::process::id().to_string();
        assert_eq!(
            watchdog_interval(Some("10000000"), None),
            Some(std::time::Duration::from_secs(5))
        );
        assert_eq!(
            watchdog_interval(Some("2000000"), Some(&me)),
            Some(std::time::Duration::from_secs(1))
        );
        assert_eq!(watchdog_interval(Some("2000000"), Some("1")), None);
        assert_eq!(watchdog_interval(Some("0"), None), None);
        assert_eq!(watchdog_interval(Some("x"), None), None);
        assert_eq!(watchdog_interval(None, None), None);
    }

    #[test]
    fn without_a_socket_nothing_is_sent() {
        let n = Notifier::new(None);
        assert!(!n.enabled());
        n.ready("x");
        assert!(!Notifier::new(Some(PathBuf::new())).enabled());
    }
}
