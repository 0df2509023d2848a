//! Reload, end to end with the real binary on loopback: SIGHUP under load
//! (curl, HTTP/1.1 and h2, keep-alive and new connections) fails no
//! request; a broken config keeps the old one; listeners come and go;
//! `edge check --diff-against` / `--running` show what a reload changes.

mod common;

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::backend::*;
use common::reload::*;
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_under_load_fails_no_request() {
    let dir = TempDir::new("reload-load");
    let pki = Pki::new(&dir, "r");
    let leaf = pki.leaf(&dir, "t", &["t.test"]);
    let (b1, b2, b3) = (
        backend("b1", Duration::ZERO).await,
        backend("b2", Duration::ZERO).await,
        backend("b3", Duration::ZERO).await,
    );
    // A server that is down in every config: once the health checks took
    // it out, no reload may put it back in rotation (retries = 0, so a
    // request sent to it would fail).
    let dead = free_port();
    let port = free_port();
    let edge = start(
        &dir,
        &config(&[port], &leaf, "v1", &[b1.port, b2.port, dead], ""),
        &[],
    );
    assert_eq!(get(port, &pki.ca_pem, "/hello").unwrap(), "v1");
    let end = Instant::now() + Duration::from_secs(15);
    while curl_batch(port, &pki.ca_pem, false, &["/app"; 9]).is_err() {
        assert!(Instant::now() < end, "the dead server was never taken out");
        std::thread::sleep(Duration::from_millis(100));
    }

    // The load: four client loops (two HTTP/1.1, two h2), each running
    // curl with 10 requests on one keep-alive connection, again and again.
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let mut loops = Vec::new();
    for i in 0..4 {
        let (stop, ok, failures) = (stop.clone(), ok.clone(), failures.clone());
        let ca = pki.ca_pem.clone();
        loops.push(std::thread::spawn(move || {
            let urls = [
                "/app", "/hello", "/app", "/app", "/hello", "/app", "/app", "/hello", "/app",
                "/app",
            ];
            let end = Instant::now() + Duration::from_secs(30);
            while !stop.load(Ordering::Relaxed) && Instant::now() < end {
                match curl_batch(port, &ca, i % 2 == 1, &urls) {
                    Ok(b) => {
                        ok.fetch_add(b.len(), Ordering::Relaxed);
                    }
                    Err(e) => failures.lock().unwrap().push(e),
                }
            }
        }));
    }
    let started = Instant::now();
    // Reloads while the loops run: change a response, add a server,
    // remove one, and once more with no change.
    std::thread::sleep(Duration::from_millis(400));
    edge.reload(
        &config(&[port], &leaf, "v2", &[b1.port, b2.port, b3.port, dead], ""),
        1,
    );
    std::thread::sleep(Duration::from_millis(400));
    edge.reload(
        &config(&[port], &leaf, "v3", &[dead, b2.port, b3.port], ""),
        2,
    );
    std::thread::sleep(Duration::from_millis(400));
    let log = edge.reload(
        &config(&[port], &leaf, "v3", &[dead, b2.port, b3.port], ""),
        3,
    );
    let b1_after = b1.hits.load(Ordering::Relaxed);
    // Keep the load on a little past the last reload.
    while started.elapsed() < Duration::from_secs(3) {
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    for l in loops {
        l.join().unwrap();
    }
    let failures = failures.lock().unwrap().clone();
    let ok = ok.load(Ordering::Relaxed);
    eprintln!("{ok} requests succeeded during 3 reloads");
    assert!(
        failures.is_empty(),
        "{} failed batches: {:#?}\n{log}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    // Bounded by the machine's speed; on 2 busy cores still dozens.
    assert!(ok >= 30, "only {ok} requests in the load loop");
    assert!(!log.contains("reload refused"), "{log}");
    assert!(
        log.contains("pool \\\"app\\\": server 127.0.0.1:")
            || log.contains("pool \"app\": server 127.0.0.1:"),
        "{log}"
    );

    // The new config answers: new response, the added server serves, the
    // removed one gets nothing more.
    assert_eq!(get(port, &pki.ca_pem, "/hello").unwrap(), "v3");
    let bodies = curl_batch(port, &pki.ca_pem, false, &["/app"; 6]).unwrap();
    assert!(bodies.iter().all(|b| b == "b2" || b == "b3"), "{bodies:?}");
    assert!(bodies.iter().any(|b| b == "b3"), "{bodies:?}");
    assert_eq!(
        b1.hits.load(Ordering::Relaxed),
        b1_after,
        "the removed server still got requests"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_reloads_keep_the_old_config_and_listeners_come_and_go() {
    let dir = TempDir::new("reload-bad");
    let pki = Pki::new(&dir, "r");
    let leaf = pki.leaf(&dir, "t", &["t.test"]);
    let slow = backend("slow", Duration::from_millis(1500)).await;
    let (p1, p2) = (free_port(), free_port());
    let copy = dir.path("running.toml");
    let acme = "[acme]\nstorage = \"acme\"";
    let v1 = config(&[p1], &leaf, "v1", &[slow.port], acme);
    let edge = start(&dir, &v1, &["--running-config", copy.to_str().unwrap()]);
    // Written once edge serves.
    let end = Instant::now() + Duration::from_secs(10);
    while !copy.exists() && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(std::fs::read_to_string(&copy).unwrap(), v1);

    // A config with a typo: refused with file:line, the old one serves.
    let broken = v1.replace("retries = 0", "retries = 0\nbogus_key = 1");
    let line = broken
        .lines()
        .position(|l| l.starts_with("bogus_key"))
        .unwrap()
        + 1;
    let log = edge.reload(&broken, 1);
    let want = format!("{}:{line}:", edge.config().display());
    assert!(
        log.contains(&want) && log.contains("bogus_key"),
        "want {want} in:\n{log}"
    );
    assert_eq!(get(p1, &pki.ca_pem, "/hello").unwrap(), "v1");
    assert_eq!(
        std::fs::read_to_string(&copy).unwrap(),
        v1,
        "a refused config replaced the running copy"
    );

    // A listener that cannot bind (the port is taken): refused too.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let tp = taken.local_addr().unwrap().port();
    let log = edge.reload(&config(&[p1, tp], &leaf, "v-taken", &[slow.port], ""), 2);
    assert!(
        log.contains(&format!("cannot listen on 127.0.0.1:{tp}")),
        "{log}"
    );
    assert_eq!(get(p1, &pki.ca_pem, "/hello").unwrap(), "v1");
    drop(taken);

    // Add a listener: both answer the new config.
    let v2 = config(&[p1, p2], &leaf, "v2", &[slow.port], acme);
    let log = edge.reload(&v2, 3);
    assert!(log.contains("[acme] unchanged"), "{log}");
    assert_eq!(get(p1, &pki.ca_pem, "/hello").unwrap(), "v2");
    assert_eq!(get(p2, &pki.ca_pem, "/hello").unwrap(), "v2");
    assert_eq!(std::fs::read_to_string(&copy).unwrap(), v2);

    // `edge check --running COPY` shows what the next reload changes.
    let v3 = config(&[p2], &leaf, "v3", &[slow.port], acme);
    let next = dir.write("next.toml", &v3);
    let out = Command::new(EDGE)
        .args(["check", "-c"])
        .arg(&next)
        .arg("--running")
        .arg(&copy)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains(&format!("- listener 127.0.0.1:{p1} (https)")),
        "{text}"
    );
    assert!(
        text.contains("~ route \"hello\": respond.body: \"v2\" -> \"v3\""),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "-listen = [\"127.0.0.1:{p1}\", \"127.0.0.1:{p2}\"]"
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!("+listen = [\"127.0.0.1:{p2}\"]")),
        "{text}"
    );

    // A slow request in flight on the listener about to go: it completes;
    // then the removed port refuses connections, the other serves v3.
    let ca = pki.ca_pem.clone();
    let inflight = slow.request_in_flight(move || get(p1, &ca, "/slow"));
    let log = edge.reload(&v3, 4);
    assert!(log.contains("listener removed"), "{log}");
    assert_eq!(inflight.join().unwrap().unwrap(), "slow");
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", p1)).is_err(),
        "the removed listener still accepts"
    );
    assert_eq!(get(p2, &pki.ca_pem, "/hello").unwrap(), "v3");

    // The same address moves from [https] to [http]: same socket (no
    // rebind), now answering plain HTTP with a redirect.
    let v4 = v3
        .replace(&format!("listen = [\"127.0.0.1:{p2}\"]"), "listen = []")
        .replace(
            "[http]\nlisten = []",
            &format!("[http]\nlisten = [\"127.0.0.1:{p2}\"]"),
        );
    let log = edge.reload(&v4, 5);
    assert!(log.contains("listener changed kind (same socket)"), "{log}");
    let mut s = std::net::TcpStream::connect(("127.0.0.1", p2)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    use std::io::{Read, Write};
    s.write_all(b"GET /x HTTP/1.1\r\nHost: t.test\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut resp = String::new();
    let _ = s.read_to_string(&mut resp);
    assert!(resp.starts_with("HTTP/1.1 301"), "{resp}");
    assert!(resp.contains("location: https://t.test/x"), "{resp}");

    // A truncated file (a half-written deploy) is refused: it would have
    // dropped every route and bound the default :443 and :80.
    let log = edge.reload("", 6);
    assert!(log.contains("nothing to serve"), "{log}");
    let mut s = std::net::TcpStream::connect(("127.0.0.1", p2)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET /y HTTP/1.1\r\nHost: t.test\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut resp = String::new();
    let _ = s.read_to_string(&mut resp);
    assert!(
        resp.starts_with("HTTP/1.1 301"),
        "still the old config: {resp}"
    );
}

#[test]
fn check_diff_against_prints_summary_and_unified_diff() {
    let dir = TempDir::new("reload-check");
    let pki = Pki::new(&dir, "r");
    let leaf = pki.leaf(&dir, "t", &["t.test"]);
    let old = dir.write("old.toml", config(&[8443], &leaf, "v1", &[9001, 9002], ""));
    let new = dir.write(
        "new.toml",
        config(
            &[8443, 9443],
            &leaf,
            "v2",
            &[9002, 9003],
            "[runtime]\nworker_threads = 2",
        ),
    );
    let run = |args: &[&std::ffi::OsStr]| {
        let out = Command::new(EDGE).args(args).output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, out, err) = run(&[
        "check".as_ref(),
        "-c".as_ref(),
        new.as_os_str(),
        "--diff-against".as_ref(),
        old.as_os_str(),
    ]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("test is successful"), "{out}");
    for want in [
        "+ listener 127.0.0.1:9443 (https)",
        "~ route \"hello\": respond.body: \"v1\" -> \"v2\"",
        "+ pool \"app\": server 127.0.0.1:9003",
        "- pool \"app\": server 127.0.0.1:9001",
        "! [runtime] worker_threads = 2 (needs a restart",
        "@@ -",
        "-address = \"127.0.0.1:9001\"",
        "+address = \"127.0.0.1:9003\"",
    ] {
        assert!(out.contains(want), "missing {want:?} in:\n{out}");
    }
    assert!(out.contains(&format!("--- {}", old.display())), "{out}");
    // Same file: no changes.
    let (code, out, _) = run(&[
        "check".as_ref(),
        "-c".as_ref(),
        old.as_os_str(),
        "--diff-against".as_ref(),
        old.as_os_str(),
    ]);
    assert_eq!(code, Some(0));
    assert!(out.contains("no changes"), "{out}");
    // No running instance: everything is new, still exit 0.
    let missing = dir.path("nothing-here.toml");
    let (code, out, _) = run(&[
        "check".as_ref(),
        "-c".as_ref(),
        new.as_os_str(),
        "--running".as_ref(),
        missing.as_os_str(),
    ]);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("no running config") && out.contains("+ route \"hello\" added"),
        "{out}"
    );
    // An invalid new file fails as before, whatever it is compared with.
    let bad = fixture("check_bad.toml").write(&dir.0, "bad.toml");
    let (code, _, err) = run(&[
        "check".as_ref(),
        "-c".as_ref(),
        bad.as_os_str(),
        "--diff-against".as_ref(),
        old.as_os_str(),
    ]);
    assert_eq!(code, Some(1));
    assert!(err.contains("bad.toml:2:"), "{err}");
}
