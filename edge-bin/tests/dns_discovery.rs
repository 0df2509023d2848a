//! Servers found by DNS, end to end: edge's pools name their servers by
//! A records and by SRV records on a real authoritative server (Knot DNS on
//! loopback), and the test changes the records with dynamic updates while
//! a client keeps sending requests: no request fails, a new server
//! receives traffic, a removed one stops receiving it, and while the DNS
//! server is down the last servers found keep serving.

mod common;

use std::collections::BTreeSet;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use edge_testkit::dns::Knot;

/// How long a change may take to show in the traffic (TTL 1 s, min_ttl
/// 200 ms, health checks every 200 ms).
const SHOWN_WITHIN: Duration = Duration::from_secs(10);

/// One answer the client got: which demo backend (its address), or the
/// failure.
#[derive(Debug, Clone)]
struct Answer {
    at: Instant,
    from: Result<String, String>,
}

/// A client sending requests one after another to `host` until stopped.
struct Client {
    answers: Arc<Mutex<Vec<Answer>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Client {
    fn start(port: u16, ca: &std::path::Path, host: &'static str) -> Self {
        let answers: Arc<Mutex<Vec<Answer>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (a, s, ca) = (answers.clone(), stop.clone(), ca.to_path_buf());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                let out = Command::new("curl")
                    .args(["-sS", "--max-time", "5", "--cacert"])
                    .arg(&ca)
                    .args(["--resolve", &format!("{host}:{port}:127.0.0.1")])
                    .args(["-w", "\n%{http_code}"])
                    .arg(format!("https://{host}:{port}/"))
                    .output()
                    .expect("curl");
                let text = String::from_utf8_lossy(&out.stdout).into_owned();
                let from = match text.rsplit_once('\n') {
                    Some((body, "200")) => body
                        .lines()
                        .next()
                        .and_then(|l| l.rsplit_once('@'))
                        .map(|(_, addr)| addr.to_owned())
                        .ok_or_else(|| format!("not a demo answer: {body:?}")),
                    _ => Err(format!("{text:?} {}", String::from_utf8_lossy(&out.stderr))),
                };
                a.lock().unwrap().push(Answer {
                    at: Instant::now(),
                    from,
                });
            }
        });
        Self {
            answers,
            stop,
            thread: Some(thread),
        }
    }

    /// The servers that answered after `since`.
    fn servers_since(&self, since: Instant) -> BTreeSet<String> {
        self.answers
            .lock()
            .unwrap()
            .iter()
            .filter(|a| a.at > since)
            .filter_map(|a| a.from.clone().ok())
            .collect()
    }

    /// Waits until the servers answering (over a 1.5 s window) are `want`.
    fn wait_servers(&self, want: &[String], what: &str) {
        let want: BTreeSet<String> = want.iter().cloned().collect();
        wait_for(what, SHOWN_WITHIN, || {
            let since = Instant::now();
            std::thread::sleep(Duration::from_millis(1500));
            let got = self.servers_since(since);
            (got == want).then_some(())
        });
    }

    /// Every failed request so far.
    fn failures(&self) -> Vec<String> {
        self.answers
            .lock()
            .unwrap()
            .iter()
            .filter_map(|a| a.from.clone().err())
            .collect()
    }

    fn count(&self) -> usize {
        self.answers.lock().unwrap().len()
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[test]
fn servers_follow_dns_changes_without_a_failed_request() {
    let dir = TempDir::new("dns-discovery");
    // Four demo backends on one port, on four loopback addresses.
    let port = free_port();
    let ips = ["127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"];
    let listeners: String = ips
        .iter()
        .map(|ip| format!("[[demo_backend]]\nlisten = \"{ip}:{port}\"\n"))
        .collect();
    let _backends = start_edge(
        &dir,
        "backends",
        &format!("[https]\nlisten = []\n[http]\nlisten = []\n{listeners}"),
    );
    let at = |ip: &str| format!("{ip}:{port}");
    let mut knot = Knot::start(
        &dir,
        "disc.test",
        &[
            "app 1 A 127.0.0.2",
            "app 1 A 127.0.0.3",
            "b5 1 A 127.0.0.5",
            &format!("_http._tcp.svc 1 SRV 10 1 {port} b5"),
        ],
    );
    let management = free_port();
    let front = front(
        "dns-discovery-front",
        "dns_discovery.toml",
        &["t.test", "svc.test"],
        &[
            ("backend_port", port),
            ("dns_port", knot.addr.port()),
            ("management_port", management),
        ],
    );
    let app = Client::start(front.port, &front.pki.ca_pem, "t.test");
    let svc = Client::start(front.port, &front.pki.ca_pem, "svc.test");

    // Found by A records, and by an SRV record (its port, its target).
    app.wait_servers(&[at("127.0.0.2"), at("127.0.0.3")], "app on .2 and .3");
    svc.wait_servers(&[at("127.0.0.5")], "svc on .5 (SRV)");

    // A server joins: it receives traffic, without a reload.
    knot.update(&["add app.disc.test. 1 A 127.0.0.4"]);
    app.wait_servers(
        &[at("127.0.0.2"), at("127.0.0.3"), at("127.0.0.4")],
        "app on .2, .3 and .4",
    );
    // A server leaves: it stops receiving traffic.
    knot.update(&["del app.disc.test. A 127.0.0.2"]);
    app.wait_servers(&[at("127.0.0.3"), at("127.0.0.4")], "app on .3 and .4");

    // The DNS server goes away: the last servers found keep serving.
    knot.stop();
    let stopped = Instant::now();
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        app.servers_since(stopped),
        [at("127.0.0.3"), at("127.0.0.4")].into_iter().collect(),
        "the last good set is kept while the resolver is down"
    );
    assert_eq!(
        svc.servers_since(stopped),
        [at("127.0.0.5")].into_iter().collect()
    );
    assert!(
        front
            .edge
            .log_text()
            .contains("DNS: lookup failed, keeping the last servers"),
        "the outage is logged"
    );
    // And shown in the metrics: lookups failing, the last set held.
    let source = format!("app.disc.test:{port}");
    let labels = |extra: &str| format!(r#"{{pool="app",{extra}source="{source}"}}"#);
    let held = || {
        let (_, m) = syslog::scrape(management);
        syslog::metric(&m, &format!("edge_dns_last_good_held{}", labels("")))
    };
    assert_eq!(held(), 1.0);
    let (_, m) = syslog::scrape(management);
    let lookups = |result: &str| {
        let key = format!(
            "edge_dns_lookups_total{}",
            labels(&format!("result=\"{result}\","))
        );
        syslog::metric(&m, &key)
    };
    assert!(lookups("failed") >= 1.0 && lookups("answered") >= 3.0);
    knot.restart(&dir);
    app.wait_servers(&[at("127.0.0.3"), at("127.0.0.4")], "app after the outage");
    assert_eq!(held(), 0.0, "answers again: nothing held");

    let (n_app, n_svc) = (app.count(), svc.count());
    let failures: Vec<String> = app.failures().into_iter().chain(svc.failures()).collect();
    assert!(n_app > 50 && n_svc > 20, "{n_app} and {n_svc} requests");
    assert!(failures.is_empty(), "failed requests: {failures:#?}");
}
