//! `deploy/lab/pair --check` (root, network namespaces the script creates):
//! the lab pair a user runs by hand, run unattended. Two edge nodes of this
//! build share a VIP through `[[vrrp]]`; the master gets SIGTERM while a
//! client makes requests; the script exits 0 only if the backup took the
//! VIP, the master exited cleanly and no request failed.

use std::fs::File;
use std::path::Path;
use std::process::{Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use edge_testkit::TempDir;

/// The script runs about 15 s; this bounds a hung one.
const LIMIT: Duration = Duration::from_secs(120);

#[test]
fn lab_pair_check_moves_the_vip_on_sigterm_and_fails_no_request() {
    edge_testkit::needs_root!("lab_pair_check_moves_the_vip_on_sigterm_and_fails_no_request");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/lab/pair");
    let dir = TempDir::new("labpair");
    let log = dir.path("pair.log");
    let mut child = Command::new(&script)
        .arg("--check")
        .env("EDGE_BIN", env!("CARGO_BIN_EXE_edge"))
        .stdin(Stdio::null())
        .stdout(File::create(&log).unwrap())
        .stderr(File::create(dir.path("pair.err")).unwrap())
        .spawn()
        .unwrap_or_else(|e| panic!("{}: {e}", script.display()));
    let t0 = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break Some(s);
        }
        if t0.elapsed() > LIMIT {
            // The script's trap removes its namespaces and processes.
            let pid = child.id().to_string();
            let _ = Command::new("kill").args(["-TERM", &pid]).status();
            sleep(Duration::from_secs(5));
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        sleep(Duration::from_millis(200));
    };
    let out = format!(
        "{}\n--- stderr\n{}",
        dir.read("pair.log"),
        dir.read("pair.err")
    );
    eprintln!("{out}");
    let status = status.unwrap_or_else(|| panic!("pair --check ran over {LIMIT:?}:\n{out}"));
    assert!(status.success(), "pair --check failed ({status}):\n{out}");
    // What the success rests on, as the script printed it.
    assert!(
        out.contains("check: VIP moved to b: true; node a exited with 0;")
            && out.contains(" 0 failed")
            && out.contains("check: ok"),
        "{out}"
    );
}
