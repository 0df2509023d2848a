//! OpenSSL clients that reconnect after edge closed the connection (an
//! HTTP/1.0 request, `Connection: close`) resume their TLS session, over
//! TLS 1.2 and TLS 1.3, and `edge_tls_handshakes_total` counts the resumed
//! handshakes apart from the full ones.
//!
//! OpenSSL 3 forgets a session when the server closed the connection without
//! a `close_notify` alert before its FIN (an "unexpected EOF" is a fatal
//! error), so a client that reads to the end of the connection, as
//! `openssl s_time -www` does, resumes only from a server that closes
//! cleanly (against a server that sends only the FIN, the s_time check
//! sees no reconnection resumed, TLS 1.2 or 1.3: see
//! bench/results/2026-12-03-resumption.md). `wrk` is the benchmark's client
//! for new connections.

mod common;

use std::collections::HashMap;
use std::process::Command;
use std::time::Duration;

use common::syslog::scrape;
use common::*;

struct Setup {
    front: Front,
    _backend: DemoBackend,
    metrics_port: u16,
}

fn setup(test: &str) -> Setup {
    let metrics_port = free_port();
    let (front, backend) = front_of_demo_backend_with(
        test,
        "tls_resumption.toml",
        &["localhost"],
        &[("metrics_port", metrics_port)],
        |b| b,
    );
    Setup {
        front,
        _backend: backend,
        metrics_port,
    }
}

/// `edge_tls_handshakes_total` summed by (version, resumed).
fn handshakes(metrics_port: u16) -> HashMap<(String, bool), f64> {
    let mut out = HashMap::new();
    for (sample, value) in scrape(metrics_port).1 {
        let Some(labels) = sample.strip_prefix("edge_tls_handshakes_total{") else {
            continue;
        };
        let label = |k: &str| {
            labels
                .trim_end_matches('}')
                .split(',')
                .find_map(|p| p.strip_prefix(&format!("{k}=\"")))
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or_else(|| panic!("no {k} in {sample}"))
                .to_string()
        };
        *out.entry((label("version"), label("resumed") == "true"))
            .or_default() += value;
    }
    out
}

fn count(h: &HashMap<(String, bool), f64>, version: &str, resumed: bool) -> f64 {
    h.get(&(version.to_string(), resumed))
        .copied()
        .unwrap_or(0.0)
}

/// `openssl s_time -reuse -www /` for about a second: one connection, then
/// reconnections offering its session, each read to the end of the
/// connection. The marks it prints, one per reconnection: `r` resumed,
/// another letter a full handshake.
fn s_time(port: u16, version: &str) -> String {
    let out = Command::new("timeout")
        .args(["30", "openssl", "s_time", "-connect"])
        .arg(format!("127.0.0.1:{port}"))
        .args(["-www", "/", "-reuse", "-time", "1", version])
        .output()
        .expect("openssl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "s_time {version}: {text}");
    // The marks are the line after "starting".
    let marks = text
        .lines()
        .skip_while(|l| !l.starts_with("starting"))
        .nth(1)
        .unwrap_or_default()
        .to_string();
    assert!(
        marks.len() >= 2,
        "s_time {version} made {} reconnections:\n{text}",
        marks.len()
    );
    marks
}

#[test]
fn a_client_that_reads_to_the_close_resumes() {
    let s = setup("tls-resumption-s-time");
    for (flag, version) in [("-tls1_2", "1.2"), ("-tls1_3", "1.3")] {
        let before = handshakes(s.metrics_port);
        let marks = s_time(s.front.port, flag);
        let full = marks.chars().filter(|&c| c != 'r').count();
        println!("s_time {flag}: {} reconnections, {full} full", marks.len());
        assert_eq!(full, 0, "{flag}: every reconnection resumes: {marks}");
        let after = handshakes(s.metrics_port);
        let resumed = count(&after, version, true) - count(&before, version, true);
        let fresh = count(&after, version, false) - count(&before, version, false);
        println!("metrics {version}: {resumed} resumed, {fresh} full");
        assert_eq!(resumed, marks.len() as f64, "{version}: {after:?}");
        assert_eq!(fresh, 1.0, "{version}: only the first handshake is full");
    }
}

/// wrk as the benchmark runs it for new connections: `Connection: close`,
/// each connection reopened at once with the session of the one before.
/// `tls12`: wrk's OpenSSL capped at TLS 1.2 (an `OPENSSL_CONF` with
/// `MaxProtocol`), as the wrk builds with OpenSSL 1.x speak.
fn wrk(port: u16, dir: &TempDir, tls12: bool) -> u64 {
    let mut cmd = Command::new("timeout");
    cmd.args(["30", "wrk", "-t1", "-c2", "-d1s", "-H", "Connection: close"])
        .arg(format!("https://localhost:{port}/"));
    if tls12 {
        let conf = dir.write(
            "openssl-tls12.cnf",
            "openssl_conf = init\n[init]\nssl_conf = ssl\n[ssl]\n\
             system_default = tls\n[tls]\nMaxProtocol = TLSv1.2\n",
        );
        cmd.env("OPENSSL_CONF", conf);
    }
    let out = cmd.output().expect("wrk");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "wrk: {text}");
    assert!(!text.contains("Non-2xx"), "wrk got errors:\n{text}");
    let requests = text
        .split_whitespace()
        .zip(text.split_whitespace().skip(1))
        .find_map(|(n, w)| (w == "requests").then(|| n.parse::<u64>().ok()).flatten())
        .unwrap_or_else(|| panic!("no request count in\n{text}"));
    assert!(requests >= 4, "wrk made {requests} requests:\n{text}");
    requests
}

#[test]
fn wrk_reconnecting_after_connection_close_resumes() {
    let s = setup("tls-resumption-wrk");
    for (tls12, version) in [(true, "1.2"), (false, "1.3")] {
        let before = handshakes(s.metrics_port);
        let requests = wrk(s.front.port, &s.front.dir, tls12);
        wait_for(
            "the last handshakes counted",
            Duration::from_secs(5),
            || {
                let h = handshakes(s.metrics_port);
                let done = count(&h, version, true) + count(&h, version, false)
                    - count(&before, version, true)
                    - count(&before, version, false);
                (done >= requests as f64).then_some(())
            },
        );
        let after = handshakes(s.metrics_port);
        let resumed = count(&after, version, true) - count(&before, version, true);
        let fresh = count(&after, version, false) - count(&before, version, false);
        println!("wrk TLS {version}: {requests} requests, {resumed} resumed, {fresh} full");
        // Two connections start with a full handshake each; wrk may open a
        // last connection it never uses.
        assert!(fresh <= 3.0, "{version}: {fresh} full of {requests}");
        assert!(resumed >= requests as f64 - 2.0, "{version}: {after:?}");
    }
}
