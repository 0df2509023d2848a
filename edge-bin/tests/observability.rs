//! Access logs and metrics end to end: the `edge` binary with real
//! traffic (curl, rustls), records received by a real rsyslog (Debian's
//! `rsyslogd`, over UDP and TCP) and the Prometheus endpoint; VRRP
//! metrics from an instance in the network lab (root).

mod common;

use std::time::Duration;

use common::syslog::*;
use common::*;

/// How long a test waits for records and metrics.
const LIMIT: Duration = Duration::from_secs(20);

/// The certificate every test here serves: a.test (pt.test also in the
/// leaf, for passthrough).
fn cert_config(dir: &TempDir, pki: &Pki) -> String {
    let a = pki.leaf(dir, "a", &["a.test", "pt.test"]);
    certificate("a", &["a.test"], &a)
}

/// Real traffic through edge; every record reaches rsyslog over UDP and
/// over TCP with the RFC 5424 header fields and a complete JSON record;
/// then every metric family is scraped with the counts the traffic made.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_reach_rsyslog_and_metrics_count_them() {
    let dir = TempDir::new("obs-syslog");
    let syslog = Rsyslog::start(&dir);
    let pki = Pki::new(&dir, "obs");
    let (h, p, d, m) = (free_port(), free_port(), free_port(), free_port());
    let config = fixture("obs_syslog_metrics.toml")
        .set("https_port", h)
        .set("http_port", p)
        .set("metrics_port", m)
        .set("syslog_udp_port", syslog.udp)
        .set("syslog_tcp_port", syslog.tcp)
        .set("certs", cert_config(&dir, &pki))
        .set("demo_port", d)
        .render();
    let edge = start_edge(&dir, "edge", &config);
    let pid = edge.pid().unwrap().to_string();
    let ca = pki.ca_pem.to_str().unwrap();
    let resolve = format!("a.test:{h}:127.0.0.1");

    // 1. A fixed response over HTTP/2.
    let (code, out) = curl(&[
        "--cacert",
        ca,
        "--resolve",
        &resolve,
        "--http2",
        &format!("https://a.test:{h}/hello"),
    ]);
    assert_eq!((code, out.as_str()), (0, "hello"));
    // 2. A POST with a 1000-byte body through the pool, over HTTP/1.1.
    let body = dir.write("body.bin", vec![b'x'; 1000]);
    let (code, out) = curl(&[
        "--cacert",
        ca,
        "--resolve",
        &resolve,
        "--http1.1",
        "--data-binary",
        &format!("@{}", body.display()),
        "-D",
        "-",
        "-o",
        dir.path("resp.bin").to_str().unwrap(),
        &format!("https://a.test:{h}/api/echo"),
    ]);
    assert_eq!(code, 0, "{out}");
    let request_id = out
        .lines()
        .find_map(|l| l.strip_prefix("x-request-id: "))
        .unwrap_or_else(|| panic!("no x-request-id in {out}"))
        .trim()
        .to_string();
    let resp_len = std::fs::metadata(dir.path("resp.bin")).unwrap().len();
    assert!(
        std::fs::read_to_string(dir.path("resp.bin"))
            .unwrap()
            .contains("body: 1000 bytes")
    );
    // 3. /metrics on the public port is only a route miss.
    let (code, out) = curl(&[
        "--cacert",
        ca,
        "--resolve",
        &resolve,
        "-w",
        "\n%{http_code}",
        &format!("https://a.test:{h}/metrics"),
    ]);
    assert_eq!(code, 0);
    assert!(out.ends_with("\n404") && !out.contains("edge_"), "{out}");
    // 4. A passthrough connection (the demo backend is not TLS: the
    // client fails, the relay still carries the ClientHello and the answer).
    let cfg = pki.client_config(&[b"http/1.1"]);
    assert!(tls(cfg.clone(), h, Some("pt.test")).await.is_err());
    // Handshake failures: not TLS at all, and a client that rejects the certificate.
    {
        use tokio::io::AsyncWriteExt;
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", h))
            .await
            .unwrap();
        s.write_all(b"GET / HTTP/1.0\r\n\r\n").await.unwrap();
        assert!(closed_within(&mut s, Duration::from_secs(10)).await);
    }
    let other = Pki::new(&dir, "other");
    assert!(
        tls(other.client_config(&[b"http/1.1"]), h, Some("a.test"))
            .await
            .is_err()
    );

    // Four records per sink: hello, api, the 404 and the passthrough.
    let recs = wait_for("4 records over UDP and 4 over TCP", LIMIT, || {
        let r = syslog.records();
        let n = |i: &str| r.iter().filter(|f| f[0] == i).count();
        (n("imudp") >= 4 && n("imtcp") >= 4).then_some(r)
    });
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    for f in &recs {
        let (pri, host) = match f[0].as_str() {
            "imudp" => ("190", "edge-test-host"), // local7.info
            "imtcp" => ("157", hostname.trim()),  // local3.notice
            other => panic!("unexpected input {other}"),
        };
        assert_eq!(f[1], pri, "{f:?}");
        assert_eq!(f[2], "1", "RFC 5424 version: {f:?}");
        assert_eq!(f[4], host, "{f:?}");
        assert_eq!(
            (f[6].as_str(), f[7].as_str(), f[8].as_str()),
            (pid.as_str(), "access", "-")
        );
        let v = record_json(f);
        let time = v["time"].as_str().unwrap();
        assert!(time.ends_with('Z') && time.len() == 24, "{time}");
        assert!(
            f[3].starts_with(&time[..19]),
            "syslog TIMESTAMP {} vs {time}",
            f[3]
        );
        assert!(v["client"].as_str().unwrap().starts_with("127.0.0.1:"));
        assert!(v["ja4"].as_str().unwrap().starts_with("t13d"), "{v}");
    }
    for input in ["imudp", "imtcp"] {
        let of: Vec<serde_json::Value> = recs
            .iter()
            .filter(|f| f[0] == input)
            .map(|f| record_json(f))
            .collect();
        let find = |pred: &dyn Fn(&serde_json::Value) -> bool| {
            of.iter()
                .find(|v| pred(v))
                .unwrap_or_else(|| panic!("{input}: no such record in {of:#?}"))
                .clone()
        };
        let api = find(&|v| v["route"] == "api");
        assert_eq!(api["kind"], "http");
        assert_eq!(api["method"], "POST");
        assert_eq!(api["path"], "/api/echo");
        assert_eq!(api["host"], "a.test");
        assert_eq!(api["sni"], "a.test");
        assert_eq!(api["status"], 200);
        assert_eq!(api["bytes_in"], 1000);
        assert_eq!(api["bytes_out"], resp_len);
        assert_eq!(api["backend"], format!("127.0.0.1:{d}"));
        assert!(api["backend_ms"].as_f64().unwrap() > 0.0);
        assert!(api["duration_ms"].as_f64().unwrap() >= api["backend_ms"].as_f64().unwrap());
        assert_eq!(api["request_id"], request_id.as_str());
        assert_eq!(api["tls_version"], "TLSv1.3");
        assert!(
            api["tls_cipher"].as_str().unwrap().starts_with("TLS13_"),
            "{api}"
        );
        assert_eq!(api["attempts"], 1);
        let hello = find(&|v| v["route"] == "hello");
        assert_eq!(
            (hello["status"].as_u64(), hello["bytes_out"].as_u64()),
            (Some(200), Some(5))
        );
        let miss = find(&|v| v["path"] == "/metrics");
        assert_eq!(miss["status"], 404);
        assert!(miss["route"].is_null());
        let pt = find(&|v| v["kind"] == "passthrough");
        assert_eq!(pt["sni"], "pt.test");
        assert_eq!(pt["route"], "relay");
        assert_eq!(pt["backend"], format!("127.0.0.1:{d}"));
        assert!(
            pt["bytes_in"].as_u64().unwrap() > 100,
            "the ClientHello was relayed: {pt}"
        );
    }

    // Metrics: every family this config and traffic give samples (a family
    // without any, like VRRP's here, is left out of the exposition;
    // `vrrp_state_is_exported` has them), with what the traffic did.
    let (text, s) = scrape(m);
    for family in [
        "edge_http_requests_total",
        "edge_http_request_duration_seconds",
        "edge_backend_up",
        "edge_pool_healthy_servers",
        "edge_backend_in_flight",
        "edge_passthrough_connections_total",
        "edge_passthrough_received_bytes_total",
        "edge_passthrough_sent_bytes_total",
        "edge_tls_handshakes_total",
        "edge_tls_handshake_failures_total",
        "edge_certificate_expiry_seconds",
        "edge_backend_responses_total",
        "edge_backend_errors_total",
        "edge_backend_response_duration_seconds",
        "edge_health_check_duration_seconds",
        "edge_access_log_dropped_total",
        "edge_config_reloads_total",
        "edge_config_last_reload_successful",
        "edge_config_last_reload_success_timestamp_seconds",
    ] {
        assert!(
            text.contains(&format!("# TYPE {family} ")),
            "{family} missing:\n{text}"
        );
    }
    assert_eq!(
        metric(&s, r#"edge_http_requests_total{class="2xx",route="api"}"#),
        1.0
    );
    assert_eq!(
        metric(&s, r#"edge_http_requests_total{class="2xx",route="hello"}"#),
        1.0
    );
    assert_eq!(
        metric(&s, r#"edge_http_requests_total{class="4xx",route="-"}"#),
        1.0
    );
    assert_eq!(
        metric(
            &s,
            r#"edge_http_request_duration_seconds_count{route="api"}"#
        ),
        1.0
    );
    assert_eq!(
        metric(
            &s,
            r#"edge_http_request_duration_seconds_bucket{route="api",le="+Inf"}"#
        ),
        1.0
    );
    assert!(metric(&s, r#"edge_http_request_duration_seconds_sum{route="api"}"#) > 0.0);
    let server = format!("127.0.0.1:{d}");
    assert_eq!(
        metric(
            &s,
            &format!(r#"edge_backend_up{{pool="app",server="{server}"}}"#)
        ),
        1.0
    );
    assert_eq!(
        metric(
            &s,
            &format!(r#"edge_backend_in_flight{{pool="app",server="{server}"}}"#)
        ),
        0.0
    );
    // Per server: the one request the api route sent it, answered 2xx.
    let srv = format!(r#"pool="app",server="{server}""#);
    assert_eq!(
        metric(
            &s,
            &format!(r#"edge_backend_responses_total{{class="2xx",{srv}}}"#)
        ),
        1.0
    );
    assert_eq!(
        metric(
            &s,
            &format!(r#"edge_backend_errors_total{{kind="connect",{srv}}}"#)
        ),
        0.0
    );
    assert_eq!(
        metric(
            &s,
            &format!(r#"edge_backend_response_duration_seconds_count{{{srv}}}"#)
        ),
        1.0
    );
    // Its health checks (TCP, at the default interval) are timed.
    let checks = format!(
        r#"edge_health_check_duration_seconds_count{{pool="app",result="pass",server="{server}"}}"#
    );
    wait_for("a timed health check", Duration::from_secs(10), || {
        (metric(&scrape(m).1, &checks) >= 1.0).then_some(())
    });
    assert_eq!(metric(&s, r#"edge_pool_healthy_servers{pool="app"}"#), 1.0);
    assert_eq!(metric(&s, r#"edge_pool_servers{pool="relay"}"#), 1.0);
    assert_eq!(
        metric(&s, r#"edge_passthrough_connections_total{pool="relay"}"#),
        1.0
    );
    assert!(metric(&s, r#"edge_passthrough_received_bytes_total{pool="relay"}"#) > 100.0);
    // Labelled by version, resumption and key exchange group: the sum.
    let handshakes: f64 = s
        .iter()
        .filter(|(k, _)| k.starts_with("edge_tls_handshakes_total{"))
        .map(|(_, v)| v)
        .sum();
    assert!(handshakes >= 3.0, "{handshakes} handshakes");
    assert!(
        metric(
            &s,
            r#"edge_tls_handshake_failures_total{reason="client_hello"}"#
        ) >= 1.0
    );
    assert!(metric(&s, r#"edge_tls_handshake_failures_total{reason="alert"}"#) >= 1.0);
    let expiry = metric(&s, r#"edge_certificate_expiry_seconds{name="a.test"}"#);
    assert!(
        expiry > 86_400.0 * 300.0,
        "rcgen leaves are valid for years: {expiry}"
    );
    for sink in ["central-udp", "central-tcp"] {
        assert_eq!(
            metric(
                &s,
                &format!(r#"edge_access_log_records_total{{sink="{sink}"}}"#)
            ),
            4.0
        );
        assert_eq!(
            metric(
                &s,
                &format!(r#"edge_access_log_dropped_total{{reason="queue_full",sink="{sink}"}}"#)
            ),
            0.0
        );
    }
    assert_eq!(
        metric(&s, r#"edge_config_reloads_total{result="success"}"#),
        0.0
    );
    assert_eq!(metric(&s, "edge_config_last_reload_successful"), 1.0);
    assert!(metric(&s, "edge_config_last_reload_success_timestamp_seconds") > 1.7e9);

    // The plain port does not serve it either.
    let (_, out) = curl(&[
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        &format!("http://127.0.0.1:{p}/metrics"),
    ]);
    assert_eq!(out, "301");
    // Another scrape sees the counters move.
    let (code, _) = curl(&[
        "--cacert",
        ca,
        "--resolve",
        &resolve,
        &format!("https://a.test:{h}/hello"),
    ]);
    assert_eq!(code, 0);
    let s2 = wait_for("the second hello to be counted", LIMIT, || {
        let (_, s) = scrape(m);
        (metric(&s, r#"edge_http_requests_total{class="2xx",route="hello"}"#) == 2.0).then_some(s)
    });
    assert_eq!(
        metric(&s2, r#"edge_http_requests_total{class="3xx",route="-"}"#),
        1.0
    );
}

/// VRRP metrics from a real instance (root, in a network-lab host of its
/// own): a lone router becomes master, and `/metrics` says so.
#[test]
fn vrrp_state_is_exported() {
    edge_testkit::needs_root!("vrrp_state_is_exported");
    let mut lab = lab::Lab::new("ebo");
    lab.host("r", 2);
    let conf = fixture("obs_vrrp.toml").write(&lab.dir, "edge.toml");
    let _edge = lab.edge("r", EDGE, conf).start();
    let scrape_ns = || {
        let out = lab.exec(
            "r",
            &[
                "curl",
                "-sS",
                "--max-time",
                "5",
                "http://127.0.0.1:9900/metrics",
            ],
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let text = wait_for("the instance to become master", LIMIT, || {
        let t = scrape_ns();
        t.contains(r#"edge_vrrp_state{interface="eth0",state="master",vrid="51"} 1"#)
            .then_some(t)
    });
    assert!(text.contains(r#"edge_vrrp_state{interface="eth0",state="backup",vrid="51"} 0"#));
    let transitions: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix(r#"edge_vrrp_transitions_total{interface="eth0",vrid="51"} "#))
        .unwrap()
        .parse()
        .unwrap();
    assert!(transitions >= 1.0, "{text}");
}
