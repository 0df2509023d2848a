//! The HA lab (root, network namespaces this test creates; see
//! `common/ha.rs`) with the pair's peer link (`[peer]`): TLS sessions
//! resume on the backup after the master is killed, after a reload and
//! after a restart; a drain made on the master is in force on the backup
//! after a failover and on a node restarted with `kill -9`; a peer with
//! other credentials is refused and nothing it sends is applied.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::ha::*;
use common::{EDGE, Edge, edge_cmd, fixture, wait_until};
use edge_testkit::lab::Lab;
use edge_testkit::openssl;

/// `edge peer-key -o DIR/name`; its path.
fn peer_key(lab: &Lab, name: &str) -> PathBuf {
    let path = lab.dir.join(name);
    let (code, out) = edge_cmd(&["peer-key", "-o", &path.to_string_lossy()]);
    assert_eq!(code, 0, "{out}");
    path
}

fn socket(lab: &Lab, i: usize) -> PathBuf {
    lab.dir.join(format!("admin{i}.sock"))
}

/// Node `i`'s config: its pool (`servers`, or none: it answers `node{i}`),
/// its admin socket, the peer link with `credentials`, `tickets` lines.
fn node_config(
    lab: &Lab,
    i: usize,
    servers: &[String],
    credentials: &Path,
    tickets: &str,
) -> String {
    let extra = fixture("ha_peer.toml")
        .set("socket", socket(lab, i).display())
        .set("listen", NODE[i])
        .set("address", NODE[1 - i])
        .path("credentials", credentials)
        .set("tickets", tickets)
        .render();
    edge_config(
        i,
        &Node {
            priority: if i == 0 { 150 } else { 100 },
            v6: false,
            nopreempt: false,
            servers,
            routes: "",
            extra: &extra,
        },
    )
}

/// One `openssl s_client` request to the VIP from the client with
/// `version` (`-tls1_3`, `-tls1_2`), resuming from `input` or saving the
/// session to `out`: (the node that answered, whether it resumed).
fn s_client(lab: &Lab, version: &str, input: Option<&Path>, out: Option<&Path>) -> (String, bool) {
    let cmd = lab.command("client", &["timeout", "10"]);
    let addr = format!("{VIP}:443");
    let text = openssl::s_client_get(cmd, &addr, "vip.test", version, input, out);
    // The route answers `node{i}` (no newline): the line s_client's
    // "closed" follows.
    let body = text
        .lines()
        .find_map(|l| l.find("node").and_then(|at| l.get(at..at + 5)))
        .map(str::to_owned)
        .unwrap_or_default();
    (body, openssl::resumed(&text))
}

const VERSIONS: [&str; 2] = ["-tls1_3", "-tls1_2"];

/// Asserts that the sessions saved in `sessions` resume on node `node`.
fn assert_resumes(lab: &Lab, sessions: &[PathBuf; 2], node: &str, when: &str, edges: &[&Edge]) {
    for (v, s) in VERSIONS.iter().zip(sessions) {
        let (body, reused) = s_client(lab, v, Some(s), None);
        assert_eq!(body, node, "{when}: answered by {body}");
        assert!(
            reused,
            "{v}: the session did not resume {when}\n{}",
            logs(edges)
        );
    }
}

#[test]
fn sessions_resume_on_the_backup_after_a_crash_and_after_a_reload_and_a_restart() {
    edge_testkit::needs_root!(
        "sessions_resume_on_the_backup_after_a_crash_and_after_a_reload_and_a_restart"
    );
    let lab = pair_lab("hpt", 0);
    let creds = peer_key(&lab, "peer.pem");
    let keys = |i: usize| lab.dir.join(format!("ticket-keys{i}"));
    let config = |i: usize| {
        let tickets = format!("keys_file = \"{}\"", keys(i).display());
        node_config(&lab, i, &[], &creds, &tickets)
    };
    let backup = start_edge(&lab, 1, "a", &config(1));
    let mut master = start_edge(&lab, 0, "a", &config(0));
    wait_body(
        &lab,
        "node0",
        Instant::now(),
        Duration::from_secs(15),
        &[&master, &backup],
    );
    // The two nodes converge on one key set (the files are written 0600).
    let t0 = Instant::now();
    let same = wait_until(Duration::from_secs(10), || {
        let (a, b) = (std::fs::read(keys(0)), std::fs::read(keys(1)));
        a.is_ok() && a.ok() == b.ok()
    });
    assert!(
        same,
        "the ticket keys did not converge:\n{}",
        logs(&[&master, &backup])
    );
    eprintln!("ticket keys shared {:?} after node0 served", t0.elapsed());
    for i in 0..2 {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(keys(i)).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "ticket keys file of node{i}");
    }

    let sessions = VERSIONS.map(|v| lab.dir.join(format!("session{v}.pem")));
    for (v, s) in VERSIONS.iter().zip(&sessions) {
        let (body, reused) = s_client(&lab, v, None, Some(s));
        assert_eq!(
            (body.as_str(), reused),
            ("node0", false),
            "{v}: a first handshake"
        );
    }
    assert_resumes(&lab, &sessions, "node0", "on node0", &[&master]);

    master.crash();
    assert!(
        wait_until(master_down_interval(100) + MARGIN, || lab
            .holds("node1", VIP)),
        "node1 did not take the VIP:\n{}",
        logs(&[&backup])
    );
    assert_resumes(
        &lab,
        &sessions,
        "node1",
        "on the backup after kill -9 of the master",
        &[&backup],
    );

    backup.signal("-HUP");
    backup.wait_reloads(1, Duration::from_secs(20));
    assert_resumes(
        &lab,
        &sessions,
        "node1",
        "after a SIGHUP reload",
        &[&backup],
    );

    // Alone now: a restart resumes from its keys file.
    let mut backup = backup;
    backup.crash();
    drop(backup);
    let backup = start_edge(&lab, 1, "b", &config(1));
    assert!(
        wait_until(master_down_interval(100) + MARGIN, || lab
            .holds("node1", VIP)),
        "the restarted node1 did not take the VIP:\n{}",
        logs(&[&backup])
    );
    assert_resumes(
        &lab,
        &sessions,
        "node1",
        "after kill -9 and a restart",
        &[&backup],
    );
}

/// `edge admin -s SOCKET ARGS`: its output; it must succeed.
fn admin(socket: &Path, args: &str) -> String {
    let out = std::process::Command::new(EDGE)
        .arg("admin")
        .arg("-s")
        .arg(socket)
        .args(args.split_whitespace())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "edge admin {args}: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

/// The `show servers` row of `server` on node `i`: (admin state, from).
fn server_state(lab: &Lab, i: usize, server: &str) -> Option<(String, String)> {
    if !socket(lab, i).exists() {
        return None;
    }
    let show = admin(&socket(lab, i), "show servers app");
    show.lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|c| c.get(1) == Some(&server))
        .map(|c| (c[2].to_owned(), c.last().unwrap_or(&"").to_string()))
}

/// Ten requests through the VIP: the backends that answered.
fn answered_by(lab: &Lab) -> Vec<String> {
    (0..10)
        .filter_map(|_| fetch(lab))
        .map(|b| b.split_whitespace().next().unwrap_or_default().to_owned())
        .collect()
}

#[test]
fn a_drain_on_the_master_holds_on_the_backup_after_failover_and_after_a_crash() {
    edge_testkit::needs_root!(
        "a_drain_on_the_master_holds_on_the_backup_after_failover_and_after_a_crash"
    );
    let lab = pair_lab("hpd", 2);
    let _backends = [backend(&lab, 0), backend(&lab, 1)];
    let servers = [backend_addr(0), backend_addr(1)];
    let creds = peer_key(&lab, "peer.pem");
    let config = |i: usize| node_config(&lab, i, &servers, &creds, "");
    let backup = start_edge(&lab, 1, "a", &config(1));
    let mut master = start_edge(&lab, 0, "a", &config(0));
    wait_body(
        &lab,
        &format!("via {}", NODE[0]),
        Instant::now(),
        Duration::from_secs(15),
        &[&master, &backup],
    );
    assert!(
        wait_until(Duration::from_secs(10), || backup
            .log_plain()
            .contains("peer link up")
            && master.log_plain().contains("peer link up")),
        "the peer link did not come up:\n{}",
        logs(&[&master, &backup])
    );

    let drained = backend_addr(0);
    let t0 = Instant::now();
    let out = admin(
        &socket(&lab, 0),
        &format!("drain app {drained} --timeout 1s"),
    );
    assert!(out.starts_with("drained:"), "{out}");
    let want = Some(("drain".to_owned(), "peer".to_owned()));
    assert!(
        wait_until(Duration::from_secs(5), || server_state(&lab, 1, &drained)
            == want),
        "the drain did not reach node1: {:?}\n{}",
        server_state(&lab, 1, &drained),
        logs(&[&master, &backup])
    );
    let reached = t0.elapsed();
    assert_eq!(
        server_state(&lab, 0, &drained),
        Some(("drain".into(), "local".into()))
    );

    master.crash();
    assert!(
        wait_until(master_down_interval(100) + MARGIN, || lab
            .holds("node1", VIP)),
        "node1 did not take the VIP:\n{}",
        logs(&[&backup])
    );
    let after_failover = answered_by(&lab);
    eprintln!(
        "drain on node0 in force on node1 {reached:?} after the command (drain included); \
         after the failover node1 answered with {after_failover:?}"
    );
    assert!(
        after_failover.len() >= 8,
        "node1 does not serve: {after_failover:?}"
    );
    assert!(
        after_failover.iter().all(|b| b == "backend1"),
        "the drained server got requests on node1: {after_failover:?}"
    );

    // node0 restarts after kill -9 without a state file: it learns the
    // drain from node1, and serves without the drained server.
    drop(master);
    let master = start_edge(&lab, 0, "b", &config(0));
    assert!(
        wait_until(Duration::from_secs(10), || server_state(&lab, 0, &drained)
            == want),
        "the restarted node0 did not learn the drain: {:?}\n{}",
        server_state(&lab, 0, &drained),
        logs(&[&master, &backup])
    );
    assert!(
        wait_until(MARGIN, || lab.holds("node0", VIP)),
        "node0 did not take the VIP back"
    );
    let after_restart = answered_by(&lab);
    eprintln!("after node0 restarted it answered with {after_restart:?}");
    assert!(
        !after_restart.is_empty() && after_restart.iter().all(|b| b == "backend1"),
        "the drained server got requests on the restarted node0: {after_restart:?}"
    );
}

#[test]
fn a_peer_with_other_credentials_is_refused_and_nothing_is_applied() {
    edge_testkit::needs_root!("a_peer_with_other_credentials_is_refused_and_nothing_is_applied");
    let lab = pair_lab("hpw", 2);
    let _backends = [backend(&lab, 0), backend(&lab, 1)];
    let servers = [backend_addr(0), backend_addr(1)];
    let (ours, theirs) = (peer_key(&lab, "peer0.pem"), peer_key(&lab, "peer1.pem"));
    let backup = start_edge(&lab, 1, "a", &node_config(&lab, 1, &servers, &theirs, ""));
    let master = start_edge(&lab, 0, "a", &node_config(&lab, 0, &servers, &ours, ""));
    wait_body(
        &lab,
        &format!("via {}", NODE[0]),
        Instant::now(),
        Duration::from_secs(15),
        &[&master, &backup],
    );
    let drained = backend_addr(0);
    admin(&socket(&lab, 0), &format!("maint app {drained}"));
    // Each node refuses the other (as server and as client), naming it.
    for (e, other) in [(&master, NODE[1]), (&backup, NODE[0])] {
        assert!(
            wait_until(Duration::from_secs(5), || e
                .log_plain()
                .lines()
                .any(|l| l.contains("WARN")
                    && l.contains("refused")
                    && l.contains(other))),
            "no refusal of {other} logged:\n{}",
            logs(&[e])
        );
    }
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        server_state(&lab, 1, &drained),
        Some(("ready".into(), "-".into()))
    );
    assert_eq!(
        server_state(&lab, 0, &drained),
        Some(("maint".into(), "local".into()))
    );
    assert!(
        !backup.log_plain().contains("peer link up"),
        "{}",
        logs(&[&backup])
    );
    assert!(!backup.log_plain().contains("peer: server state applied"));
}
