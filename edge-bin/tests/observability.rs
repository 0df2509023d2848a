//! Access logs and metrics end to end: the `edge` binary with real
//! traffic (curl, rustls), records received by a real rsyslog (Debian's
//! `rsyslogd`, over UDP and TCP), the file sink rotated the logrotate way
//! (mv + SIGUSR1), a dead collector, and the Prometheus endpoint.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// rsyslogd in the foreground with its own config, killed on drop.
struct Rsyslog {
    _proc: Proc,
    out: PathBuf,
    udp: u16,
    tcp: u16,
}

fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Rsyslog {
    fn start(dir: &TempDir) -> Self {
        let (udp, tcp) = (free_udp_port(), free_port());
        let work = dir.path("rsyslog");
        std::fs::create_dir_all(&work).unwrap();
        let out = dir.path("rsyslog.out");
        // One line per message: the parsed RFC 5424 fields, then the MSG.
        let conf = format!(
            r#"global(workDirectory="{work}" maxMessageSize="64k")
module(load="imudp")
module(load="imtcp")
template(name="edge" type="string" string="%inputname%|%pri%|%protocol-version%|%timereported:::date-rfc3339%|%hostname%|%app-name%|%procid%|%msgid%|%structured-data%|%msg%\n")
input(type="imudp" address="127.0.0.1" port="{udp}")
input(type="imtcp" address="127.0.0.1" port="{tcp}")
action(type="omfile" file="{out}" template="edge")
"#,
            work = work.display(),
            out = out.display(),
        );
        let conf_path = dir.write("rsyslog.conf", conf);
        let log = std::fs::File::create(dir.path("rsyslogd.log")).unwrap();
        let child = Command::new("rsyslogd")
            .arg("-n")
            .arg("-f")
            .arg(&conf_path)
            .arg("-i")
            .arg(dir.path("rsyslogd.pid"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("rsyslogd (Debian package rsyslog) must be installed");
        let p = Proc {
            child,
            name: "rsyslogd".into(),
        };
        assert!(
            wait_port(tcp, Duration::from_secs(15)),
            "rsyslogd did not listen: {}",
            std::fs::read_to_string(dir.path("rsyslogd.log")).unwrap_or_default()
        );
        // UDP is ready once a probe arrives.
        let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let end = Instant::now() + Duration::from_secs(15);
        loop {
            sock.send_to(b"<14>1 - probe probe - probe - ready", ("127.0.0.1", udp))
                .unwrap();
            if std::fs::read_to_string(&out).is_ok_and(|s| s.contains("ready")) {
                break;
            }
            assert!(
                Instant::now() < end,
                "rsyslogd's UDP input never got a probe"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Self {
            _proc: p,
            out,
            udp,
            tcp,
        }
    }

    /// Lines from edge (`app-name` edge), split into their fields.
    fn records(&self) -> Vec<Vec<String>> {
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .map(|l| l.splitn(10, '|').map(str::to_string).collect::<Vec<_>>())
            .filter(|f| f.len() == 10 && f[5] == "edge")
            .collect()
    }
}

/// Polls `f` until it returns `Some`, or panics with `what` after 20 s.
fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let end = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Scrapes `/metrics`: sample (name with labels) → value.
fn scrape(port: u16) -> (String, HashMap<String, f64>) {
    let (code, text) = curl(&[&format!("http://127.0.0.1:{port}/metrics")]);
    assert_eq!(code, 0, "{text}");
    let samples = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            Some((k.to_string(), v.parse().ok()?))
        })
        .collect();
    (text, samples)
}

fn metric(m: &HashMap<String, f64>, key: &str) -> f64 {
    *m.get(key)
        .unwrap_or_else(|| panic!("no sample {key} in {:#?}", m.keys()))
}

fn cert_config(dir: &TempDir, pki: &Pki) -> String {
    let a = pki.leaf(dir, "a", &["a.test", "pt.test"]);
    format!(
        "[[certificate]]\nname = \"a\"\nnames = [\"a.test\"]\ncert = \"{}\"\nkey = \"{}\"\n",
        a.cert.display(),
        a.key.display()
    )
}

fn json(fields: &[String]) -> serde_json::Value {
    serde_json::from_str(fields[9].trim()).unwrap_or_else(|e| panic!("{e}: {:?}", fields[9]))
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
    let config = format!(
        r#"
[https]
listen = ["127.0.0.1:{h}"]
default_certificate = "a"
[http]
listen = ["127.0.0.1:{p}"]
https_port = {h}
[management]
listen = "127.0.0.1:{m}"

[[access_log]]
name = "central-udp"
type = "syslog"
address = "127.0.0.1:{u}"
hostname = "edge-test-host"
[[access_log]]
name = "central-tcp"
type = "syslog"
transport = "tcp"
address = "127.0.0.1:{t}"
facility = "local3"
severity = "notice"

{certs}
[[demo_backend]]
listen = "127.0.0.1:{d}"

[[route]]
name = "api"
host = ["a.test"]
path_prefix = "/api"
pool = "app"
[[route]]
name = "hello"
host = ["a.test"]
path_prefix = "/hello"
respond = {{ status = 200, body = "hello" }}

[[passthrough]]
sni = ["pt.test"]
pool = "relay"

[[pool]]
name = "app"
[[pool.server]]
address = "127.0.0.1:{d}"
[[pool]]
name = "relay"
[[pool.server]]
address = "127.0.0.1:{d}"
"#,
        u = syslog.udp,
        t = syslog.tcp,
        certs = cert_config(&dir, &pki),
    );
    let edge = start_edge(&dir, "edge", &config, &[h, p, d, m]);
    let pid = edge.child.id().to_string();
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
    let recs = wait_for("4 records over UDP and 4 over TCP", || {
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
        let v = json(f);
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
            .map(|f| json(f))
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

    // Metrics: every family, with what the traffic did.
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
        "edge_vrrp_state",
        "edge_vrrp_transitions_total",
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
        metric(&s, r#"edge_http_requests_total{route="api",class="2xx"}"#),
        1.0
    );
    assert_eq!(
        metric(&s, r#"edge_http_requests_total{route="hello",class="2xx"}"#),
        1.0
    );
    assert_eq!(
        metric(&s, r#"edge_http_requests_total{route="-",class="4xx"}"#),
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
    assert_eq!(metric(&s, r#"edge_pool_healthy_servers{pool="app"}"#), 1.0);
    assert_eq!(metric(&s, r#"edge_pool_servers{pool="relay"}"#), 1.0);
    assert_eq!(
        metric(&s, r#"edge_passthrough_connections_total{pool="relay"}"#),
        1.0
    );
    assert!(metric(&s, r#"edge_passthrough_received_bytes_total{pool="relay"}"#) > 100.0);
    assert!(metric(&s, "edge_tls_handshakes_total") >= 3.0);
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
                &format!(r#"edge_access_log_dropped_total{{sink="{sink}",reason="queue_full"}}"#)
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
    let s2 = wait_for("the second hello to be counted", || {
        let (_, s) = scrape(m);
        (metric(&s, r#"edge_http_requests_total{route="hello",class="2xx"}"#) == 2.0).then_some(s)
    });
    assert_eq!(
        metric(&s2, r#"edge_http_requests_total{route="-",class="3xx"}"#),
        1.0
    );
}

fn lines(p: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(p)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}")))
        .collect()
}

/// logrotate's way: mv the file, SIGUSR1; the next records go to a new
/// file with the same name and none is lost or duplicated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_sink_reopens_on_sigusr1() {
    let dir = TempDir::new("obs-file");
    let pki = Pki::new(&dir, "obs");
    let h = free_port();
    let log = dir.path("access.log");
    let config = format!(
        r#"
[https]
listen = ["127.0.0.1:{h}"]
default_certificate = "a"
[http]
listen = []
[[access_log]]
type = "file"
path = "access.log"
{certs}
[[route]]
name = "hello"
respond = {{ status = 200, body = "hi" }}
"#,
        certs = cert_config(&dir, &pki),
    );
    let edge = start_edge(&dir, "edge", &config, &[h]);
    let cfg = pki.client_config(&[b"http/1.1"]);
    let mut ids = Vec::new();
    for i in 0..10 {
        let r = https_get(cfg.clone(), h, "a.test", &format!("/before/{i}"))
            .await
            .unwrap();
        ids.push(r.headers["x-request-id"].to_str().unwrap().to_string());
    }
    wait_for("10 lines in the file", || {
        (lines(&log).len() == 10).then_some(())
    });
    let rotated = dir.path("access.log.1");
    std::fs::rename(&log, &rotated).unwrap();
    let ok = Command::new("kill")
        .args(["-USR1", &edge.child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
    wait_for("the new file", || log.exists().then_some(()));
    for i in 0..7 {
        let r = https_get(cfg.clone(), h, "a.test", &format!("/after/{i}"))
            .await
            .unwrap();
        ids.push(r.headers["x-request-id"].to_str().unwrap().to_string());
    }
    let new = wait_for("7 lines in the new file", || {
        let l = lines(&log);
        (l.len() >= 7).then_some(l)
    });
    let old = lines(&rotated);
    assert_eq!(old.len(), 10);
    assert_eq!(new.len(), 7);
    assert!(
        old.iter()
            .all(|v| v["path"].as_str().unwrap().starts_with("/before/"))
    );
    assert!(
        new.iter()
            .all(|v| v["path"].as_str().unwrap().starts_with("/after/"))
    );
    let logged: Vec<&str> = old
        .iter()
        .chain(&new)
        .map(|v| v["request_id"].as_str().unwrap())
        .collect();
    assert_eq!(logged, ids, "every request once, in order");
    assert!(
        new.iter()
            .all(|v| v["status"] == 200 && v["bytes_out"] == 2 && v["route"] == "hello")
    );
}

/// Two collectors that take nothing: one is down (connection refused),
/// one accepts and never reads (python3, a tiny receive buffer). Their
/// queues fill, records are dropped and counted, requests are served as
/// usual; edge keeps retrying the one that is down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_collector_drops_records_not_requests() {
    let dir = TempDir::new("obs-dead");
    let pki = Pki::new(&dir, "obs");
    let (h, m) = (free_port(), free_port());
    let dead = free_port(); // nothing listens there
    let mut py = Command::new("python3")
        .args(["-c", "import socket,time\ns=socket.socket()\ns.setsockopt(socket.SOL_SOCKET,socket.SO_RCVBUF,4096)\ns.bind(('127.0.0.1',0))\ns.listen()\nprint(s.getsockname()[1],flush=True)\nc,_=s.accept()\ntime.sleep(300)"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut port_line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(py.stdout.take().unwrap()),
        &mut port_line,
    )
    .unwrap();
    let stalled: u16 = port_line.trim().parse().unwrap();
    let _py = Proc {
        child: py,
        name: "stalled collector".into(),
    };
    let config = format!(
        r#"
[https]
listen = ["127.0.0.1:{h}"]
default_certificate = "a"
[http]
listen = []
[management]
listen = "127.0.0.1:{m}"
[[access_log]]
name = "dead"
type = "syslog"
transport = "tcp"
address = "127.0.0.1:{dead}"
queue = 4
[[access_log]]
name = "stalled"
type = "syslog"
transport = "tcp"
address = "127.0.0.1:{stalled}"
queue = 4
{certs}
[[route]]
respond = {{ status = 200, body = "hi" }}
"#,
        certs = cert_config(&dir, &pki),
    );
    let _edge = start_edge(&dir, "edge", &config, &[h, m]);
    let cfg = pki.client_config(&[b"http/1.1"]);
    // One connection, many requests: each must be answered promptly.
    let s = tls(cfg, h, Some("a.test")).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(s))
        .await
        .unwrap();
    tokio::spawn(conn);
    // Long paths make big records, so the stalled connection's buffers fill.
    let pad = "p".repeat(4000);
    let n = 1500;
    for i in 0..n {
        let req = http::Request::get(format!("/r/{i}/{pad}"))
            .header("host", "a.test")
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .unwrap();
        sender.ready().await.unwrap();
        let resp = tokio::time::timeout(Duration::from_secs(5), sender.send_request(req))
            .await
            .unwrap_or_else(|_| panic!("request {i} was held up"))
            .unwrap();
        assert_eq!(resp.status(), 200);
        use http_body_util::BodyExt;
        resp.into_body().collect().await.unwrap();
    }
    let s = wait_for("all records accounted for", || {
        let (_, s) = scrape(m);
        let dropped = metric(
            &s,
            r#"edge_access_log_dropped_total{sink="dead",reason="queue_full"}"#,
        );
        // The writer keeps what it took from the queue (4) at each of its
        // reconnect attempts (backoff 100 ms doubling), so a slow run keeps
        // a few dozen; everything else is dropped, and counted.
        (dropped >= f64::from(n - 100)).then_some(s)
    });
    let written = metric(&s, r#"edge_access_log_records_total{sink="stalled"}"#);
    let dropped = metric(
        &s,
        r#"edge_access_log_dropped_total{sink="stalled",reason="queue_full"}"#,
    );
    eprintln!("stalled collector: {written} records written, {dropped} dropped of {n}");
    assert!(
        written < f64::from(n) && dropped > 0.0,
        "stalled: written {written}, dropped {dropped}"
    );
    assert_eq!(
        metric(&s, r#"edge_access_log_records_total{sink="dead"}"#),
        0.0
    );
    assert_eq!(
        metric(
            &s,
            r#"edge_http_requests_total{route="route0",class="2xx"}"#
        ),
        f64::from(n)
    );
    // edge says why in its log.
    let log = std::fs::read_to_string(dir.path("edge.log")).unwrap();
    assert!(
        log.contains("cannot connect to the syslog collector"),
        "{log}"
    );
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .find(|l| l.starts_with("Uid:"))
            .is_some_and(|l| l.split_whitespace().nth(1) == Some("0"))
    })
}

/// A network namespace with a veth pair, deleted on drop (also on panic).
struct Netns(String);

impl Netns {
    fn new() -> Self {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let ns = Netns(format!("ebo{}x{n}", std::process::id()));
        ns.ip(&["netns", "add", &ns.0]);
        for args in [
            &["link", "set", "lo", "up"][..],
            &["link", "add", "v0", "type", "veth", "peer", "name", "v1"],
            &["addr", "add", "198.18.0.2/24", "dev", "v0"],
            &["link", "set", "v0", "up"],
            &["link", "set", "v1", "up"],
        ] {
            let mut a = vec!["-n", ns.0.as_str()];
            a.extend_from_slice(args);
            ns.ip(&a);
        }
        ns
    }

    fn ip(&self, args: &[&str]) {
        let out = Command::new("ip").args(args).output().unwrap();
        assert!(
            out.status.success(),
            "ip {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn exec(&self, cmd: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.0, cmd]);
        c
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// VRRP metrics from a real instance (root, in a namespace of its own):
/// a lone router becomes master, and `/metrics` says so.
#[test]
fn vrrp_state_is_exported() {
    if !is_root() {
        eprintln!("vrrp_state_is_exported: skipped (needs root for a network namespace)");
        return;
    }
    let dir = TempDir::new("obs-vrrp");
    let ns = Netns::new();
    let conf = dir.write(
        "edge.toml",
        r#"
[https]
listen = ["127.0.0.1:8443"]
[http]
listen = []
[management]
listen = "127.0.0.1:9900"
[[certificate]]
name = "a"
names = ["a.test"]
self_signed = true
[[route]]
respond = { status = 200, body = "hi" }
[[vrrp]]
interface = "v0"
vrid = 51
priority = 100
advert_interval = "100ms"
vips = ["198.18.0.100/24"]
"#,
    );
    let log = std::fs::File::create(dir.path("edge.log")).unwrap();
    let child = ns
        .exec(edge_bin())
        .arg("run")
        .arg("-c")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let _edge = Proc {
        child,
        name: "edge".into(),
    };
    let scrape_ns = || {
        let out = ns
            .exec("curl")
            .args(["-sS", "--max-time", "5", "http://127.0.0.1:9900/metrics"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let text = wait_for("the instance to become master", || {
        let t = scrape_ns();
        t.contains(r#"edge_vrrp_state{vrid="51",interface="v0",state="master"} 1"#)
            .then_some(t)
    });
    assert!(text.contains(r#"edge_vrrp_state{vrid="51",interface="v0",state="backup"} 0"#));
    let transitions: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix(r#"edge_vrrp_transitions_total{vrid="51",interface="v0"} "#))
        .unwrap()
        .parse()
        .unwrap();
    assert!(transitions >= 1.0, "{text}");
}

/// Reads RFC 6587 octet-counted frames until `n` arrived.
fn read_frames(s: &mut std::net::TcpStream, n: usize) -> Vec<String> {
    use std::io::Read;
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut buf = Vec::new();
    let mut frames = Vec::new();
    let mut chunk = [0u8; 4096];
    while frames.len() < n {
        let got = s.read(&mut chunk).expect("frames before the timeout");
        assert!(got > 0, "collector connection closed early");
        buf.extend_from_slice(&chunk[..got]);
        while let Some(sp) = buf.iter().position(|b| *b == b' ') {
            let len: usize = std::str::from_utf8(&buf[..sp]).unwrap().parse().unwrap();
            if buf.len() < sp + 1 + len {
                break;
            }
            frames.push(String::from_utf8(buf[sp + 1..sp + 1 + len].to_vec()).unwrap());
            buf.drain(..sp + 1 + len);
        }
    }
    frames
}

/// The collector is down when traffic starts: records wait in the queue,
/// edge retries with backoff, and once the collector is up every queued
/// record arrives, in order, framed by octet counting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_sink_reconnects_and_delivers_the_queue() {
    let dir = TempDir::new("obs-reconnect");
    let pki = Pki::new(&dir, "obs");
    let (h, c) = (free_port(), free_port());
    let config = format!(
        r#"
[https]
listen = ["127.0.0.1:{h}"]
default_certificate = "a"
[http]
listen = []
[[access_log]]
type = "syslog"
transport = "tcp"
address = "127.0.0.1:{c}"
app_name = "edge-lb"
{certs}
[[route]]
respond = {{ status = 200, body = "hi" }}
"#,
        certs = cert_config(&dir, &pki),
    );
    let _edge = start_edge(&dir, "edge", &config, &[h]);
    let cfg = pki.client_config(&[b"http/1.1"]);
    for i in 0..5 {
        let r = https_get(cfg.clone(), h, "a.test", &format!("/q/{i}"))
            .await
            .unwrap();
        assert_eq!(r.status, 200);
    }
    // Let edge fail to connect at least once, then bring the collector up.
    wait_for("a failed connection attempt", || {
        std::fs::read_to_string(dir.path("edge.log"))
            .unwrap()
            .contains("cannot connect to the syslog collector")
            .then_some(())
    });
    let listener = std::net::TcpListener::bind(("127.0.0.1", c)).unwrap();
    let frames = tokio::task::spawn_blocking(move || {
        let (mut s, _) = listener.accept().unwrap();
        read_frames(&mut s, 5)
    })
    .await
    .unwrap();
    let paths: Vec<String> = frames
        .iter()
        .map(|f| {
            assert!(f.starts_with("<190>1 "), "{f}");
            let mut it = f.splitn(8, ' ');
            let fields: Vec<&str> = it.by_ref().take(7).collect();
            assert_eq!(
                (fields[3], fields[5], fields[6]),
                ("edge-lb", "access", "-"),
                "{f}"
            );
            let v: serde_json::Value = serde_json::from_str(it.next().unwrap()).unwrap();
            v["path"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(paths, (0..5).map(|i| format!("/q/{i}")).collect::<Vec<_>>());
}

/// Writes `bytes` to a fresh connection (plain or TLS) and returns what
/// came back before edge closed it (write errors ignored: edge may close
/// before it read everything).
async fn exchange<S>(mut s: S, bytes: Vec<u8>, close_write: bool) -> String
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let _ = s.write_all(&bytes).await;
    let _ = s.flush().await;
    if close_write {
        let _ = s.shutdown().await;
    }
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// Requests hyper refuses before edge's service sees them are logged as
/// HAProxy and nginx log them (400, 414, 431, 408), with the connection's
/// client and TLS details; connections that send nothing, and idle
/// keep-alive connections that time out, are not (`dontlognull`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_requests_are_logged_silent_connections_are_not() {
    let dir = TempDir::new("obs-badreq");
    let pki = Pki::new(&dir, "obs");
    let (h, p) = (free_port(), free_port());
    let log = dir.path("access.log");
    let config = format!(
        r#"
[https]
listen = ["127.0.0.1:{h}"]
default_certificate = "a"
[http]
listen = ["127.0.0.1:{p}"]
https_port = {h}
[limits]
header_read_timeout = "1s"
idle_timeout = "2s"
max_header_bytes = 131072
[[access_log]]
type = "file"
path = "access.log"
{certs}
[[route]]
name = "hello"
respond = {{ status = 200, body = "hi" }}
"#,
        certs = cert_config(&dir, &pki),
    );
    let _edge = start_edge(&dir, "edge", &config, &[h, p]);
    let cfg = pki.client_config(&[b"http/1.1"]);
    let plain = || tokio::net::TcpStream::connect(("127.0.0.1", p));

    // Nothing to log: connect and close (both ports), a TLS handshake and
    // close, connections that stay silent until the idle timeout closes
    // them, and a keep-alive connection left idle after a request until
    // the header read timeout closes it.
    drop(plain().await.unwrap());
    drop(
        tokio::net::TcpStream::connect(("127.0.0.1", h))
            .await
            .unwrap(),
    );
    drop(tls(cfg.clone(), h, Some("a.test")).await.unwrap());
    let mut silent_tls = tls(cfg.clone(), h, Some("a.test")).await.unwrap();
    let mut silent_plain = plain().await.unwrap();
    let silent = tokio::spawn(async move {
        closed_within(&mut silent_tls, Duration::from_secs(15)).await
            && closed_within(&mut silent_plain, Duration::from_secs(15)).await
    });
    {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = plain().await.unwrap();
        s.write_all(b"GET /kept HTTP/1.1\r\nHost: a.test\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 1024];
        let n = s.read(&mut buf).await.unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 301"), "{:?}", &buf[..n]);
        assert!(closed_within(&mut s, Duration::from_secs(10)).await);
    }

    // 1. A header section over max_header_bytes over TLS: 431.
    let big = format!(
        "GET /big HTTP/1.1\r\nHost: a.test\r\nX-Big: {}\r\n\r\n",
        "b".repeat(140_000)
    );
    let s = tls(cfg.clone(), h, Some("a.test")).await.unwrap();
    let got = exchange(s, big.into_bytes(), false).await;
    assert!(got.is_empty() || got.starts_with("HTTP/1.1 431"), "{got}");
    // 2. A malformed request line over TLS (garbage after the handshake): 400.
    let s = tls(cfg.clone(), h, Some("a.test")).await.unwrap();
    let bad_method = b"GE\x01T / HTTP/1.1\r\nHost: a.test\r\n\r\n";
    let got = exchange(s, bad_method.to_vec(), false).await;
    assert!(got.starts_with("HTTP/1.1 400"), "{got}");
    // 3. A URI longer than hyper's 65534 bytes, with curl: 414.
    let (code, out) = curl(&[
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        &format!("http://127.0.0.1:{p}/{}", "u".repeat(70_000)),
    ]);
    assert_eq!((code, out.as_str()), (0, "414"));
    // 4. Keep-alive: a good request, then a bad header on the same
    // connection: the record counts the bad request's bytes only.
    let bad = b"GET /second HTTP/1.1\r\nHost: a.test\r\nBad Header\r\n\r\n";
    {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = plain().await.unwrap();
        s.write_all(b"GET /first HTTP/1.1\r\nHost: a.test\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 1024];
        let n = s.read(&mut buf).await.unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 301"));
        let got = exchange(s, bad.to_vec(), false).await;
        assert!(got.starts_with("HTTP/1.1 400"), "{got}");
    }
    // 5. A head cut off: the client closes in the middle.
    let cut = b"GET /cut HTTP/1.1\r\nHo";
    let got = exchange(plain().await.unwrap(), cut.to_vec(), true).await;
    assert_eq!(got, "");
    // 6. A head that never ends: the header read timeout (1 s), 408.
    let slow = b"GET /slow HTTP/1.1\r\nHost: a";
    let got = exchange(plain().await.unwrap(), slow.to_vec(), false).await;
    assert_eq!(got, "");
    // 7. HTTP/2 (ALPN h2): a DATA frame on stream 0 is a connection error
    // (RFC 9113 §6.1); edge answers GOAWAY and closes.
    let s = tls(pki.client_config(&[b"h2"]), h, Some("a.test"))
        .await
        .unwrap();
    let h2 = [
        &b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"[..],
        &[0, 0, 0, 4, 0, 0, 0, 0, 0],
        &[0, 0, 1, 0, 0, 0, 0, 0, 0, b'x'],
    ]
    .concat();
    exchange(s, h2.clone(), false).await;
    assert!(
        silent.await.unwrap(),
        "the idle timeout closes silent connections"
    );
    // A marker: every record before it has been written.
    let r = https_get(cfg.clone(), h, "a.test", "/marker")
        .await
        .unwrap();
    assert_eq!(r.status, 200);

    let recs = wait_for("the marker record", || {
        let l = lines(&log);
        l.iter().any(|v| v["path"] == "/marker").then_some(l)
    });
    // Two requests answered 301, the seven rejected ones, the marker;
    // nothing for the silent or idle connections.
    let mut summary: Vec<(u64, String)> = recs
        .iter()
        .map(|v| {
            (
                v["status"].as_u64().unwrap(),
                // Up to the detail (HTTP/2's reason).
                v["error"]
                    .as_str()
                    .unwrap_or("-")
                    .split(':')
                    .next()
                    .unwrap()
                    .to_string(),
            )
        })
        .collect();
    summary.sort();
    let want: Vec<(u64, String)> = [
        (200, "-"),
        (301, "-"),
        (301, "-"),
        (400, "HTTP/2 protocol error"),
        (400, "client closed mid-request"),
        (400, "invalid method"),
        (400, "malformed request"),
        (408, "header read timeout"),
        (414, "URI too long"),
        (431, "header too large"),
    ]
    .iter()
    .map(|(s, e)| (*s, e.to_string()))
    .collect();
    assert_eq!(summary, want, "{recs:#?}");
    let find = |error: &str, tls: bool| {
        recs.iter()
            .find(|v| v["error"] == error && v["sni"].is_string() == tls)
            .unwrap()
            .clone()
    };
    let by = |error: &str| find(error, false);
    let (large, method) = (find("header too large", true), find("invalid method", true));
    for v in [&large, &method] {
        assert_eq!(v["kind"], "http");
        assert_eq!(v["sni"], "a.test");
        assert_eq!(v["tls_version"], "TLSv1.3");
        assert!(v["ja4"].as_str().unwrap().starts_with("t13d"), "{v}");
        assert!(v["method"].is_null() && v["path"].is_null(), "{v}");
        assert!(v["client"].as_str().unwrap().starts_with("127.0.0.1:"));
    }
    assert!(large["bytes_in"].as_u64().unwrap() >= 131_072, "{large}");
    assert!(large["bytes_out"].as_u64().unwrap() > 0, "the 431 was sent");
    // hyper gives up at the first bad byte it reads: it may not read all.
    let n = method["bytes_in"].as_u64().unwrap();
    assert!(n > 0 && n <= bad_method.len() as u64, "{method}");
    let long = by("URI too long");
    assert!(long["bytes_in"].as_u64().unwrap() > 70_000, "{long}");
    assert!(long["sni"].is_null() && long["tls_version"].is_null());
    assert_eq!(by("malformed request")["bytes_in"], bad.len());
    assert_eq!(by("client closed mid-request")["bytes_in"], cut.len());
    let h2_rec = recs
        .iter()
        .find(|v| v["error"].as_str().unwrap_or("").starts_with("HTTP/2"))
        .unwrap();
    assert!(
        h2_rec["error"]
            .as_str()
            .unwrap()
            .starts_with("HTTP/2 protocol error: connection error detected"),
        "{h2_rec}"
    );
    assert_eq!(
        (&h2_rec["sni"], &h2_rec["bytes_in"]),
        (&"a.test".into(), &h2.len().into())
    );
    let slow_rec = by("header read timeout");
    assert_eq!(slow_rec["bytes_in"], slow.len());
    assert_eq!(slow_rec["bytes_out"], 0);
    let waited = slow_rec["duration_ms"].as_f64().unwrap();
    assert!((900.0..5000.0).contains(&waited), "{waited}");
}

/// A WebSocket through edge with Node.js's client: the `101` record is
/// written when the tunnel closes, with the bytes relayed each way and
/// the tunnel's duration.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_tunnel_bytes_are_logged() {
    let dir = TempDir::new("obs-ws");
    let pki = Pki::new(&dir, "obs");
    let (h, d) = (free_port(), free_port());
    let log = dir.path("access.log");
    let config = ws_config(h, d, &cert_config(&dir, &pki), "");
    let _edge = start_edge(&dir, "edge", &config, &[h, d]);
    // Three 1000-byte messages echoed, then a close; the client stays a
    // moment so the tunnel lasts at least 300 ms.
    let script = format!(
        "const ws = new WebSocket('wss://127.0.0.1:{h}/ws/echo');
         let n = 0;
         ws.onopen = () => ws.send('x'.repeat(1000));
         ws.onmessage = (e) => {{
           n += 1;
           if (n < 3) {{ ws.send('x'.repeat(1000)); return; }}
           setTimeout(() => ws.close(1000), 300);
         }};
         ws.onclose = () => {{ console.log('echoed:' + n); process.exit(0); }};
         ws.onerror = (e) => {{ console.log('error:' + e.message); process.exit(1); }};
         setTimeout(() => {{ console.log('timeout'); process.exit(2); }}, 8000);"
    );
    let out = node_websocket(&script).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        stdout.trim(),
        "echoed:3",
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = wait_for("the tunnel's record", || lines(&log).into_iter().next());
    assert_eq!(v["status"], 101, "{v}");
    assert_eq!(v["path"], "/ws/echo");
    assert_eq!(v["route"], "ws");
    // Client frames are masked: 1000 + 8 bytes each, plus the close frame.
    let up = v["bytes_in"].as_u64().unwrap();
    let down = v["bytes_out"].as_u64().unwrap();
    assert!((3 * 1008..3 * 1008 + 100).contains(&up), "{v}");
    assert!((3 * 1004..3 * 1004 + 100).contains(&down), "{v}");
    let tunnel = v["tunnel_ms"].as_f64().unwrap();
    assert!(tunnel >= 300.0, "{v}");
    assert!(v["duration_ms"].as_f64().unwrap() >= tunnel, "{v}");
    assert!(v["error"].is_null(), "{v}");
}

/// A WebSocket tunnel with no byte either way for `tunnel_idle_timeout` is
/// closed by edge (HAProxy's `timeout tunnel`), and its record says why.
#[tokio::test]
async fn idle_websocket_tunnel_is_closed_and_logged() {
    let dir = TempDir::new("obs-ws-idle");
    let pki = Pki::new(&dir, "obs");
    let (h, d) = (free_port(), free_port());
    let log = dir.path("access.log");
    let config = ws_config(
        h,
        d,
        &cert_config(&dir, &pki),
        "[limits]\ntunnel_idle_timeout = \"1s\"\n",
    );
    let _edge = start_edge(&dir, "edge", &config, &[h, d]);
    // One echo, then silence: the client never closes; edge must.
    let script = format!(
        "const ws = new WebSocket('wss://127.0.0.1:{h}/ws/echo');
         let quiet;
         ws.onopen = () => ws.send('hello');
         ws.onmessage = () => {{ quiet = Date.now(); }};
         ws.onclose = () => {{ console.log('closed-after:' + (Date.now() - quiet)); process.exit(0); }};
         ws.onerror = () => {{}};
         setTimeout(() => {{ console.log('not closed'); process.exit(2); }}, 8000);"
    );
    let out = node_websocket(&script).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let ms: u64 = stdout
        .trim()
        .strip_prefix("closed-after:")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            panic!(
                "the idle tunnel was not closed: {stdout} {}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    assert!(
        (900..4000).contains(&ms),
        "closed {ms} ms after the last byte (timeout 1 s)"
    );
    let v = wait_for("the tunnel's record", || lines(&log).into_iter().next());
    assert_eq!(v["status"], 101, "{v}");
    assert_eq!(v["error"], "tunnel idle timeout", "{v}");
    assert!(v["tunnel_ms"].as_f64().unwrap() >= 900.0, "{v}");
}

/// edge with a file access log, the demo backend and one WebSocket route;
/// `extra` is more config (e.g. a `[limits]` table).
fn ws_config(h: u16, d: u16, certs: &str, extra: &str) -> String {
    format!(
        r#"
[https]
listen = ["127.0.0.1:{h}"]
default_certificate = "a"
[http]
listen = []
{extra}
[[access_log]]
type = "file"
path = "access.log"
{certs}
[[demo_backend]]
listen = "127.0.0.1:{d}"
[[route]]
name = "ws"
pool = "app"
[[pool]]
name = "app"
[[pool.server]]
address = "127.0.0.1:{d}"
"#
    )
}

/// Runs `script` in Node.js 20+ with its built-in WebSocket client,
/// trusting any certificate.
async fn node_websocket(script: &str) -> std::process::Output {
    tokio::process::Command::new("node")
        .args(["--no-warnings", "--experimental-websocket", "-e", script])
        .env("NODE_TLS_REJECT_UNAUTHORIZED", "0")
        .output()
        .await
        .expect("node (Node.js 20+) must be installed")
}
