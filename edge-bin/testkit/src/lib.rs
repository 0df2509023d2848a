//! Test support shared by the workspace's integration tests.
//!
//! - [`Proc`]: a child process killed and reaped on drop, its output in a
//!   log file.
//! - [`Edge`]: the `edge` binary started with a config file, ready (its
//!   `READY=1` sd_notify message received) when `start` returns. Every test
//!   starts edge this way; the binary's path comes from the caller
//!   (`env!("CARGO_BIN_EXE_edge")`), this crate does not depend on edge-bin.
//! - [`Pki`]: a throwaway CA issuing leaf certificates into a [`TempDir`].
//! - [`free_port`], [`free_udp_port`], [`wait_port`]: loopback ports.
//! - [`Fixture`]: TOML config templates with `{{name}}` placeholders.
//! - [`lab`]: the one network-namespace lab (root only), and on top of it
//!   [`load`] (python3 backends and load clients) and [`vrrp`] (VRRP
//!   routers: the `vrrp` example and keepalived) and [`pebble`] (an ACME
//!   CA in a lab host).
//! - [`client`]: TLS and HTTP/1.1 clients for tokio tests; [`backend`]: an
//!   HTTP/1.1 backend that counts requests, and curl with a test CA.
//! - [`etcd`]: etcd (Debian `etcd-server`) on loopback, or members of a
//!   cluster in the lab.
//! - [`syslog`]: rsyslogd as a collector, JSON-lines files, `/metrics`.
//!
//! Network rules: inside the lab's namespaces only 198.18.0.0/15 and
//! 2001:2::/48 are used; outside them, loopback only. Tests that need root
//! start with [`needs_root!`]: they fail without it, as they do when a tool
//! is missing, unless the run sets `EDGE_TESTS_ALLOW_SKIP=1`; then they
//! say `SKIPPED` and are counted in `EDGE_TESTS_SKIP_LOG` (`.ci/test`
//! prints the count). None skips itself silently.
//!
//! Environment: `EDGE_TEST_LOG` is edge's `RUST_LOG` (default
//! `info,edge::access=debug`); `EDGE_TEST_KEEP=1` keeps every
//! [`TempDir`] and `EDGE_LAB_KEEP=1` every lab directory (both are kept
//! anyway when the test panics); `EDGE_LAB_PCAP=1` records each lab's
//! bridge into `hub.pcap`.

mod edge;
mod fixture;
mod net;
mod pki;
mod proc;
mod root;

pub mod backend;
pub mod client;
pub mod dns;
pub mod etcd;
pub mod lab;
pub mod load;
pub mod openssl;
pub mod pebble;
pub mod syslog;
pub mod vrrp;

use std::process::Command;
use std::thread::sleep;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub use edge::{Edge, EdgeBuilder};
pub use fixture::Fixture;
pub use net::{addr, free_port, free_udp_port, wait_port};
pub use pki::{Leaf, Pki};
pub use proc::{Proc, TempDir, log_tails, openssl_s_server};
pub use root::{Verdict, is_root, require_root, skip_without_root, verdict};

/// Runs a command that must succeed; its stdout.
pub fn run(args: &[&str]) -> String {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("{args:?}: {e} (is {} installed?)", args[0]));
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs a command, quietly; whether it succeeded.
pub fn run_quiet(args: &[&str]) -> bool {
    Command::new(args[0])
        .args(&args[1..])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Seconds since the epoch, as the python helpers report times.
pub fn now_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Waits (polling every 20 ms, at most `limit`) until `f` is true.
pub fn wait_until(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let t0 = Instant::now();
    loop {
        if f() {
            return true;
        }
        if t0.elapsed() > limit {
            return false;
        }
        sleep(Duration::from_millis(20));
    }
}

/// Polls `f` (every 50 ms) until it returns `Some`; panics naming `what`
/// after `limit`.
pub fn wait_for<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let end = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < end, "timed out waiting for {what}");
        sleep(Duration::from_millis(50));
    }
}

/// `text` without ANSI colour sequences (`ESC [ ... m`).
pub fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Runs curl on the host (`-sS`, 10 s at most): (exit code, stdout and
/// stderr).
pub fn curl(args: &[&str]) -> (i32, String) {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10"])
        .args(args)
        .output()
        .expect("curl must be installed");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strip_ansi_removes_colour_sequences_only() {
        assert_eq!(
            strip_ansi("\u{1b}[2mat\u{1b}[0m x=\u{1b}[32mMaster\u{1b}[0m ok"),
            "at x=Master ok"
        );
        assert_eq!(strip_ansi("plain"), "plain");
    }

    #[test]
    fn wait_until_gives_up_after_the_limit() {
        let t0 = Instant::now();
        assert!(!wait_until(Duration::from_millis(60), || false));
        assert!(t0.elapsed() >= Duration::from_millis(60));
        let mut n = 0;
        assert!(wait_until(Duration::from_secs(5), || {
            n += 1;
            n == 3
        }));
        assert_eq!(n, 3);
    }

    #[test]
    fn run_reports_the_output_and_fails_on_error() {
        assert_eq!(run(&["echo", "hi"]), "hi\n");
        assert!(!run_quiet(&["false"]));
        assert!(std::panic::catch_unwind(|| run(&["false"])).is_err());
    }
}
