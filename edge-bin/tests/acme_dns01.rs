//! ACME DNS-01 with real peers on loopback: Pebble validating through a
//! Knot DNS server that accepts RFC 2136 updates signed with a TSIG key,
//! and edge publishing the `_acme-challenge` records there. A wildcard
//! certificate is obtained and served to `openssl s_client`; a wrong TSIG
//! secret is a clear error, leaves no record behind and is retried.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use base64::Engine as _;
use common::reload::*;
use common::*;
use edge_testkit::dns::{Knot, TsigKey};

const WILDCARD: &str = "*.apps.example.test";

fn secret() -> String {
    base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 32]>())
}

/// Knot for `example.test` accepting updates signed with `key`, Pebble
/// resolving through it, and edge ordering `*.apps.example.test` and
/// `apps.example.test` over DNS-01 with `edge_secret`.
struct Setup {
    dir: TempDir,
    knot: Knot,
    _pebble: LocalPebble,
    edge: Edge,
    socket: std::path::PathBuf,
    https: u16,
    config: String,
}

fn setup(test: &str, knot_secret: &str, edge_secret: &str) -> Setup {
    setup_with(test, knot_secret, edge_secret, "hmac-sha256", "")
}

/// [`setup`] with the TSIG `algorithm` and more `[acme.dns]` lines.
fn setup_with(
    test: &str,
    knot_secret: &str,
    edge_secret: &str,
    algorithm: &str,
    dns_extra: &str,
) -> Setup {
    let dir = TempDir::new(test);
    let key = TsigKey {
        name: "acme-update".into(),
        algorithm: algorithm.into(),
        secret: knot_secret.into(),
    };
    let knot = Knot::start_with_tsig(&dir, "example.test", &["www 60 A 127.0.0.1"], key);
    let pki = Pki::new(&dir, "r");
    let pebble = LocalPebble::start_with_dns(&dir, &pki, free_port(), Some(knot.addr));
    let leaf = pki.leaf(&dir, "t", &["t.test"]);
    let socket = dir.path("admin.sock");
    let dns_extra = if dns_extra.contains("propagation_timeout") {
        dns_extra.to_owned()
    } else {
        format!("propagation_timeout = \"20s\"\n{dns_extra}")
    };
    let extra = format!(
        "[acme]\nstorage = \"acme\"\ndirectory_url = \"https://127.0.0.1:{}/dir\"\n\
         ca_roots = [\"{}\"]\n\
         certificates = [{{ names = [\"{WILDCARD}\", \"apps.example.test\"], challenge = \"dns-01\" }}]\n\
         [acme.dns]\nserver = \"{}\"\nzone = \"example.test\"\ntsig_key = \"acme-update\"\ntsig_algorithm = \"{algorithm}\"\n\
         tsig_secret = \"{edge_secret}\"\n{dns_extra}\
         [admin]\nsocket = \"{}\"\n",
        pebble.listen,
        pki.ca_pem.display(),
        knot.addr,
        socket.display()
    );
    let https = free_port();
    let cfg = config(&[https], &leaf, "v1", &[free_port()], &extra);
    let edge = start(&dir, &cfg, &[]);
    Setup {
        dir,
        knot,
        _pebble: pebble,
        edge,
        socket,
        https,
        config: cfg,
    }
}

/// `acme status`'s row of the wildcard certificate: (serial, failures,
/// last_error), and the whole answer.
async fn status(socket: &Path) -> ((String, u32, String), String) {
    let (code, out, err) = edge_admin(socket, "acme status").await;
    assert_eq!(code, 0, "acme status: {out}{err}");
    let row: Vec<&str> = out
        .lines()
        .find(|l| l.starts_with(WILDCARD))
        .unwrap_or_else(|| panic!("no {WILDCARD} row:\n{out}"))
        .split_whitespace()
        .collect();
    // names serial not_after days_left renew_at due ordering failures key last_error...
    let failures = row[7].parse().unwrap_or_else(|_| panic!("{out}"));
    ((row[1].to_owned(), failures, row[9..].join(" ")), out)
}

async fn wait_status(
    s: &Setup,
    limit: Duration,
    done: impl Fn(&(String, u32, String)) -> bool,
) -> (String, u32, String) {
    let end = Instant::now() + limit;
    loop {
        let (row, out) = status(&s.socket).await;
        if done(&row) {
            return row;
        }
        assert!(
            Instant::now() < end,
            "not reached within {limit:?}:\n{out}\n{}",
            s.edge.log_text()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The DNS-01 records noted in edge's ACME storage (not yet removed).
fn notes(s: &Setup) -> Vec<String> {
    let mut out = Vec::new();
    let mut dirs = vec![s.dir.path("acme/dns01")];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            if e.path().is_dir() {
                dirs.push(e.path());
            } else {
                out.push(e.file_name().to_string_lossy().into_owned());
            }
        }
    }
    out
}

/// The certificate edge serves for `sni`, as `openssl x509 -text` prints it.
fn served(https: u16, sni: &str) -> String {
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "openssl s_client -connect 127.0.0.1:{https} -servername {sni} </dev/null 2>/dev/null \
             | openssl x509 -noout -ext subjectAltName"
        ))
        .output()
        .expect("openssl");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wildcard_certificate_over_dns01_with_tsig_updates() {
    let secret = secret();
    let s = setup("acme-dns01", &secret, &secret);
    let started = Instant::now();
    let (serial, failures, error) = wait_status(&s, Duration::from_secs(60), |r| r.0 != "-").await;
    eprintln!("wildcard certificate {serial} in {:?}", started.elapsed());
    assert_eq!((failures, error.as_str()), (0, "-"));

    let san = served(s.https, "x.apps.example.test");
    assert!(san.contains("DNS:*.apps.example.test"), "served: {san:?}");
    assert!(san.contains("DNS:apps.example.test"), "served: {san:?}");
    // The base name too: its record and the wildcard's share the name
    // `_acme-challenge.apps.example.test`, two TXT values.
    let base = served(s.https, "apps.example.test");
    assert!(base.contains("DNS:*.apps.example.test"), "served: {base:?}");

    // The challenge record went again; the zone's other records stayed.
    let log = s.edge.log_text();
    assert!(log.contains("DNS-01 TXT record added"), "{log}");
    assert!(log.contains("DNS-01 TXT record removed"), "{log}");
    assert_eq!(s.knot.query("_acme-challenge.apps", "TXT").trim(), "");
    assert!(s.knot.query("www", "A").contains("127.0.0.1"));
    assert_eq!(notes(&s), Vec::<String>::new(), "records still noted");
    drop(s.dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_tsig_secret_is_a_clear_error_and_is_retried() {
    let s = setup("acme-dns01-badkey", &secret(), &secret());
    let (serial, failures, error) = wait_status(&s, Duration::from_secs(30), |r| r.1 >= 1).await;
    assert_eq!(serial, "-");
    assert_eq!(failures, 1);
    assert!(
        error.contains("NOTAUTH")
            && error.contains("acme-update")
            && error.contains(&s.knot.addr.to_string()),
        "{error}"
    );
    let log = s.edge.log_text();
    assert!(log.contains("certificate order failed"), "{log}");
    assert!(log.contains("NOTAUTH"), "{log}");
    // The authorization is not left pending at the CA, and no record
    // was published (nor left).
    assert!(log.contains("pending authorization deactivated"), "{log}");
    assert_eq!(s.knot.query("_acme-challenge.apps", "TXT").trim(), "");
    // The next attempt waits for the backoff (1 minute, jittered); asked
    // for at once, it is made and fails the same way.
    assert!(log.contains("retry_in="), "{log}");
    let (code, out, err) = edge_admin(&s.socket, &format!("acme renew {WILDCARD}")).await;
    assert_eq!(code, 0, "{out}{err}");
    let (_, failures, error) = wait_status(&s, Duration::from_secs(30), |r| r.1 >= 2).await;
    assert_eq!(failures, 2);
    assert!(error.contains("NOTAUTH"), "{error}");
    assert_eq!(s.knot.query("_acme-challenge.apps", "TXT").trim(), "");
}

/// An order given up at a stop while it waits for the record to show leaves
/// the record published; the next order of the certificate (here by a new
/// edge on the same storage) removes it before ordering. (With an
/// hmac-sha512 key.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_left_by_an_order_given_up_is_removed_by_the_next_order() {
    let secret = secret();
    // A check server that never answers: the order waits for the record.
    let dead = free_udp_port();
    let extra = format!("check_servers = [\"127.0.0.1:{dead}\"]\n");
    let mut s = setup_with("acme-dns01-stop", &secret, &secret, "hmac-sha512", &extra);
    let published = wait_until(Duration::from_secs(30), || {
        !s.knot
            .query("_acme-challenge.apps", "TXT")
            .trim()
            .is_empty()
    });
    assert!(published, "no record published:\n{}", s.edge.log_text());
    let left = s.knot.query("_acme-challenge.apps", "TXT");
    assert!(s.edge.terminate(), "edge did not stop cleanly");
    assert_eq!(s.knot.query("_acme-challenge.apps", "TXT"), left);
    assert_eq!(notes(&s).len(), 1, "the record is noted");

    let config = s.config.replace(&extra, "");
    let filter = std::env::var("EDGE_TEST_LOG").unwrap_or("info,edge::access=warn".into());
    s.edge = Edge::builder(EDGE, s.dir.write("edge2.toml", config))
        .rust_log(Some(&filter))
        .start();
    let (serial, failures, _) = wait_status(&s, Duration::from_secs(60), |r| r.0 != "-").await;
    assert_eq!(failures, 0, "{serial}");
    let log = s.edge.log_text();
    assert!(
        log.contains("removed a DNS-01 record left by an order given up"),
        "{log}"
    );
    assert_eq!(s.knot.query("_acme-challenge.apps", "TXT").trim(), "");
    assert_eq!(notes(&s), Vec::<String>::new());
    let san = served(s.https, "x.apps.example.test");
    assert!(san.contains("DNS:*.apps.example.test"), "served: {san:?}");
}

/// The serial of the certificate edge on `https` serves for `sni`.
fn served_serial(https: u16, sni: &str) -> String {
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "openssl s_client -connect 127.0.0.1:{https} -servername {sni} </dev/null 2>/dev/null \
             | openssl x509 -noout -serial"
        ))
        .output()
        .expect("openssl");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Two nodes on one storage: one orders (one set of DNS updates), the
/// other waits for the certificate's lock and picks the result up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pair_on_shared_storage_orders_once_over_dns01() {
    let secret = secret();
    let s = setup("acme-dns01-pair", &secret, &secret);
    let https2 = free_port();
    let socket2 = s.dir.path("admin2.sock");
    let config2 = s
        .config
        .replace(
            &format!("\"127.0.0.1:{}\"", s.https),
            &format!("\"127.0.0.1:{https2}\""),
        )
        .replace(
            &s.socket.display().to_string(),
            &socket2.display().to_string(),
        );
    let filter = std::env::var("EDGE_TEST_LOG").unwrap_or("info,edge::access=warn".into());
    let second = Edge::builder(EDGE, s.dir.write("edge2.toml", config2))
        .rust_log(Some(&filter))
        .start();
    let (serial, failures, _) = wait_status(&s, Duration::from_secs(60), |r| r.0 != "-").await;
    assert_eq!(failures, 0);
    let same = wait_until(Duration::from_secs(30), || {
        let (a, b) = (
            served_serial(s.https, "x.apps.example.test"),
            served_serial(https2, "x.apps.example.test"),
        );
        !a.is_empty() && a == b
    });
    let logs = format!("{}\n{}", s.edge.log_text(), second.log_text());
    assert!(
        same,
        "the nodes serve different certificates ({serial}):\n{logs}"
    );
    let count = |needle: &str| logs.lines().filter(|l| l.contains(needle)).count();
    assert_eq!(count("ordering certificate"), 1, "{logs}");
    // The node that did not order took the certificate from storage (after
    // waiting for the lock when it asked while the other one ordered).
    let (first, second) = if s.edge.log_text().contains("ordering certificate") {
        (s.edge.log_text(), second.log_text())
    } else {
        (second.log_text(), s.edge.log_text())
    };
    assert!(first.contains("certificate obtained"), "{first}");
    assert!(
        second.contains("certificate loaded from storage"),
        "{second}"
    );
    // One record for each of the two names, added and removed once.
    assert_eq!(count("DNS-01 TXT record added"), 2, "{logs}");
    assert_eq!(count("DNS-01 TXT record removed"), 2, "{logs}");
    assert_eq!(s.knot.query("_acme-challenge.apps", "TXT").trim(), "");
}

/// With `check_ns`, the record must show on every server the zone's NS
/// records name too (here `ns.example.test`, 127.0.0.1 port 53, which does
/// not serve it): the CA is not told, the attempt fails naming that server
/// and the record is removed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_ns_waits_for_every_name_server() {
    let secret = secret();
    let extra = "check_ns = true\npropagation_timeout = \"2s\"\n";
    let s = setup_with("acme-dns01-ns", &secret, &secret, "hmac-sha256", extra);
    let (serial, failures, error) = wait_status(&s, Duration::from_secs(30), |r| r.1 >= 1).await;
    assert_eq!((serial.as_str(), failures), ("-", 1));
    assert!(
        error.contains("not served by 127.0.0.1:53 after 2s"),
        "{error}"
    );
    let log = s.edge.log_text();
    assert!(log.contains("pending authorization deactivated"), "{log}");
    assert_eq!(s.knot.query("_acme-challenge.apps", "TXT").trim(), "");
}
