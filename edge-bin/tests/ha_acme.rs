//! The HA lab (root, network namespaces this test creates; see
//! `common/ha.rs`): the pair obtains an ACME certificate from Pebble while
//! the VIP moves between the nodes mid-order.

mod common;

use std::time::{Duration, Instant};

use common::ha::*;
use common::pebble::start_pebble;
use common::{fixture, wait_until};

/// Pebble's address in the lab.
const CA: &str = "198.18.0.30";

#[test]
fn the_pair_obtains_a_certificate_while_the_vip_moves_mid_order() {
    edge_testkit::needs_root!("the_pair_obtains_a_certificate_while_the_vip_moves_mid_order");
    let mut lab = pair_lab("haa", 0);
    lab.host("ca", 30);
    let (_pebble, tls_ca, root) = start_pebble(&lab, "ca", CA, VIP);
    let storage = lab.dir.join("acme");
    let acme = fixture("ha_acme.toml")
        .path("storage", &storage)
        .set("ca", CA)
        .path("ca_roots", &tls_ca)
        .render();
    let node = |priority| Node {
        priority,
        v6: false,
        nopreempt: false,
        servers: &[],
        routes: "",
        extra: &acme,
    };
    // Hold Pebble's HTTP-01 validation back until the VIP has moved: its
    // packets to the VIP go to the client host, which does not forward
    // them (TCP retries the SYN once the route is gone).
    let sink = lab.exec(
        "client",
        &["sysctl", "-qw", "net.ipv4.conf.all.forwarding=0"],
    );
    assert!(sink.status.success(), "{sink:?}");
    lab.ip("ca", &["route", "add", &format!("{VIP}/32"), "via", CLIENT]);

    // node0 starts first, so it places the order, and becomes master.
    let t_start = Instant::now();
    let mut master = start_edge(&lab, 0, "a", &edge_config(0, &node(150)));
    // The pending challenge's token, as node0 stored it (temporary files
    // of the storage's atomic writes start with a dot).
    let challenges = storage.join("challenges");
    let pending = || {
        std::fs::read_dir(&challenges)
            .ok()?
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .find(|n| !n.starts_with('.'))
    };
    let mut token = None;
    assert!(
        master.wait_log("ACME order created", Duration::from_secs(30))
            && wait_until(Duration::from_secs(10), || {
                token = pending();
                token.is_some()
            }),
        "node0 placed no order:\n{}",
        master.log_text()
    );
    let token = token.unwrap_or_default();
    assert!(
        wait_until(Duration::from_secs(10), || lab.holds("node0", VIP)),
        "node0 did not become master:\n{}",
        master.log_text()
    );
    let backup = start_edge(&lab, 1, "a", &edge_config(1, &node(100)));
    assert!(
        backup.wait_log("VRRP state change", Duration::from_secs(10)),
        "node1 did not start:\n{}",
        backup.log_text()
    );

    // The order is pending on node0 (its challenge not yet validated):
    // stop node0; the VIP moves to node1.
    let t_move = Instant::now();
    assert!(
        master.terminate(),
        "node0 did not stop cleanly:\n{}",
        master.log_text()
    );
    assert!(
        wait_until(master_down_interval(100) + MARGIN, || lab
            .holds("node1", VIP)),
        "node1 did not take the VIP:\n{}",
        backup.log_text()
    );
    lab.ip("ca", &["route", "del", &format!("{VIP}/32")]);

    // node0's graceful stop gave its order up and released the storage
    // lock, so node1 takes the order over at once (not after the lock's
    // 30 s expiry, as after a crash) and the client gets the certificate
    // through the VIP, verified against Pebble's root.
    let mut last = None;
    let (root, resolve) = (root.to_string_lossy(), format!("vip.test:443:{VIP}"));
    let verified = [
        "--cacert",
        &root,
        "--resolve",
        &resolve,
        "https://vip.test/",
    ];
    let served = wait_until(Duration::from_secs(60), || {
        last = lab.curl("client", &verified);
        last.as_deref() == Some("node1")
    });
    assert!(
        served,
        "no certificate via the VIP (last answer {last:?}):\n{}\n{}",
        logs(&[&master, &backup]),
        std::fs::read_to_string(lab.dir.join("pebble.log")).unwrap_or_default()
    );
    let took = t_move.elapsed();
    eprintln!(
        "certificate served via the VIP {took:?} after the VIP moved mid-order ({:?} after node0 started)",
        t_start.elapsed()
    );
    assert!(
        backup.log_text().contains("certificate obtained"),
        "node1 did not obtain it:\n{}",
        backup.log_text()
    );
    // A lock left behind would expire 20-30 s after node0 stopped (30 s
    // TTL, refreshed every 10 s).
    assert!(
        took < Duration::from_secs(15),
        "node1 needed {took:?} to take the order over: it waited for node0's lock"
    );
    assert!(
        master
            .log_text()
            .contains("order given up at stop; storage lock released"),
        "node0 did not release its order's lock at stop:\n{}",
        master.log_text()
    );
    assert!(!master.log_text().contains("certificate obtained"));
    // node0 comes back, loads the certificate from the storage and
    // preempts: the client is served by it with the same certificate.
    let node0 = start_edge(&lab, 0, "b", &edge_config(0, &node(150)));
    let back = wait_until(Duration::from_secs(15), || {
        last = lab.curl("client", &verified);
        last.as_deref() == Some("node0")
    });
    assert!(
        back,
        "node0 did not serve the certificate after its restart (last answer {last:?}):\n{}",
        logs(&[&node0])
    );
    assert!(node0.log_text().contains("certificate loaded from storage"));
    assert!(!node0.log_text().contains("ordering certificate"));
    // Pebble validated node0's pending challenge through the VIP, which
    // node1 held by then: node1 answered node0's token from the storage.
    assert!(
        backup
            .log_text()
            .lines()
            .any(|l| l.contains("answered ACME challenge from storage") && l.contains(&token)),
        "node1 did not answer node0's challenge {token}:\n{}",
        logs(&[&backup])
    );
}
