//! Access-log sinks end to end: the file sink rotated the logrotate way
//! (mv + SIGUSR1), collectors that are dead or stalled, and a TCP
//! collector that comes up late.

mod common;

use std::time::Duration;

use common::syslog::*;
use common::*;

/// How long a test waits for records and metrics.
const LIMIT: Duration = Duration::from_secs(20);

use std::process::{Command, Stdio};

/// The certificate every test here serves: a.test (pt.test also in the
/// leaf, for passthrough).
fn cert_config(dir: &TempDir, pki: &Pki) -> String {
    let a = pki.leaf(dir, "a", &["a.test", "pt.test"]);
    certificate("a", &["a.test"], &a)
}

/// logrotate's way: mv the file, SIGUSR1; the next records go to a new
/// file with the same name and none is lost or duplicated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_sink_reopens_on_sigusr1() {
    let dir = TempDir::new("obs-file");
    let pki = Pki::new(&dir, "obs");
    let h = free_port();
    let log = dir.path("access.log");
    let config = fixture("obs_file_sink.toml")
        .set("https_port", h)
        .set("certs", cert_config(&dir, &pki))
        .render();
    let edge = start_edge(&dir, "edge", &config);
    let cfg = pki.client_config(&[b"http/1.1"]);
    let mut ids = Vec::new();
    for i in 0..10 {
        let r = https_get(cfg.clone(), h, "a.test", &format!("/before/{i}"))
            .await
            .unwrap();
        ids.push(r.headers["x-request-id"].to_str().unwrap().to_string());
    }
    wait_for("10 lines in the file", LIMIT, || {
        (json_lines(&log).len() == 10).then_some(())
    });
    let rotated = dir.path("access.log.1");
    std::fs::rename(&log, &rotated).unwrap();
    let ok = Command::new("kill")
        .args(["-USR1", &edge.pid().unwrap().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
    wait_for("the new file", LIMIT, || log.exists().then_some(()));
    for i in 0..7 {
        let r = https_get(cfg.clone(), h, "a.test", &format!("/after/{i}"))
            .await
            .unwrap();
        ids.push(r.headers["x-request-id"].to_str().unwrap().to_string());
    }
    let new = wait_for("7 lines in the new file", LIMIT, || {
        let l = json_lines(&log);
        (l.len() >= 7).then_some(l)
    });
    let old = json_lines(&rotated);
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
    let _py = Proc::adopt(py, "stalled collector", "");
    let config = fixture("obs_dead_collector.toml")
        .set("https_port", h)
        .set("metrics_port", m)
        .set("dead_port", dead)
        .set("stalled_port", stalled)
        .set("certs", cert_config(&dir, &pki))
        .render();
    let _edge = start_edge(&dir, "edge", &config);
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
    let s = wait_for("all records accounted for", LIMIT, || {
        let (_, s) = scrape(m);
        let dropped = metric(
            &s,
            r#"edge_access_log_dropped_total{reason="queue_full",sink="dead"}"#,
        );
        // The writer keeps what it took from the queue (4) at each of its
        // reconnect attempts (backoff 100 ms doubling), so a slow run keeps
        // a few dozen; everything else is dropped, and counted.
        (dropped >= f64::from(n - 100)).then_some(s)
    });
    let written = metric(&s, r#"edge_access_log_records_total{sink="stalled"}"#);
    let dropped = metric(
        &s,
        r#"edge_access_log_dropped_total{reason="queue_full",sink="stalled"}"#,
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
            r#"edge_http_requests_total{class="2xx",route="route0"}"#
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
    let config = fixture("obs_tcp_sink.toml")
        .set("https_port", h)
        .set("collector_port", c)
        .set("certs", cert_config(&dir, &pki))
        .render();
    let _edge = start_edge(&dir, "edge", &config);
    let cfg = pki.client_config(&[b"http/1.1"]);
    for i in 0..5 {
        let r = https_get(cfg.clone(), h, "a.test", &format!("/q/{i}"))
            .await
            .unwrap();
        assert_eq!(r.status, 200);
    }
    // Let edge fail to connect at least once, then bring the collector up.
    wait_for("a failed connection attempt", LIMIT, || {
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
