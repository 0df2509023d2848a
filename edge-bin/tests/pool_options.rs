//! The library options the config file reaches, end to end: hashing by
//! header, cookie and source address; `[pool.health]` `expect_status`,
//! `expect_body` and `initial_state`; `fail_open`; and `[pool.capacity]`
//! with a command hook and a webhook. Backends are small HTTP servers of
//! this test on 127.0.0.1 whose check answers the test changes.

mod common;

use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;

/// A backend answering its name on every path but `/healthz`, which
/// answers `check_status` with `check_body`.
struct Backend {
    port: u16,
    check_status: Arc<AtomicU16>,
    check_body: Arc<Mutex<String>>,
    hits: Arc<AtomicUsize>,
}

impl Backend {
    async fn start(name: &'static str) -> Backend {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let b = Backend {
            port,
            check_status: Arc::new(AtomicU16::new(200)),
            check_body: Arc::new(Mutex::new("ready".into())),
            hits: Arc::default(),
        };
        let (status, body, hits) = (b.check_status.clone(), b.check_body.clone(), b.hits.clone());
        tokio::spawn(async move {
            loop {
                let Ok((s, _)) = l.accept().await else {
                    continue;
                };
                let (status, body, hits) = (status.clone(), body.clone(), hits.clone());
                let svc = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let (code, text) = if req.uri().path() == "/healthz" {
                        let code = status.load(Ordering::Relaxed);
                        (code, body.lock().unwrap().clone())
                    } else {
                        hits.fetch_add(1, Ordering::Relaxed);
                        (200, name.to_owned())
                    };
                    async move {
                        let mut r = http::Response::new(Full::new(Bytes::from(text)));
                        *r.status_mut() = http::StatusCode::from_u16(code).unwrap();
                        if (300..400).contains(&code) {
                            r.headers_mut()
                                .insert("location", http::HeaderValue::from_static("/"));
                        }
                        Ok::<_, Infallible>(r)
                    }
                });
                tokio::spawn(async move {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(s), svc)
                        .await;
                });
            }
        });
        b
    }

    fn server(&self) -> String {
        format!("[[pool.server]]\naddress = \"127.0.0.1:{}\"\n", self.port)
    }
}

/// edge in front of `backends`, the pool written as `keys` (before the
/// servers) and `tables` (after them).
struct Front {
    _dir: TempDir,
    _edge: Edge,
    port: u16,
    client: Arc<rustls::ClientConfig>,
}

fn front(test: &str, keys: &str, backends: &[&Backend], tables: &str) -> Front {
    let dir = TempDir::new(test);
    let pki = Pki::new(&dir, "front");
    let leaf = pki.leaf(&dir, "app", &["app.test"]);
    let port = free_port();
    let servers: String = backends.iter().map(|b| b.server()).collect();
    let config = fixture("pool_options.toml")
        .set("https_port", port)
        .set("cert", leaf.cert.display())
        .set("key", leaf.key.display())
        .set("pool", format!("{keys}\n{servers}{tables}"))
        .render();
    let edge = start_edge(&dir, "edge", &config);
    Front {
        _dir: dir,
        _edge: edge,
        port,
        client: pki.client_config(&[b"http/1.1"]),
    }
}

impl Front {
    /// GET / on a new connection with `headers`: (status, body).
    async fn get(&self, headers: &[(&str, &str)]) -> (u16, String) {
        let s = tls(self.client.clone(), self.port, Some("app.test"))
            .await
            .unwrap();
        let r = send(s, "GET", "app.test", "/", headers).await.unwrap();
        (r.status, r.body)
    }

    /// Who answers `n` requests: backend name → count (failures as
    /// `"<status>"`).
    async fn spread(&self, n: usize, headers: &[(&str, &str)]) -> HashMap<String, usize> {
        let mut out = HashMap::new();
        for _ in 0..n {
            let (status, body) = self.get(headers).await;
            let who = if status == 200 {
                body
            } else {
                format!("<{status}>")
            };
            *out.entry(who).or_default() += 1;
        }
        out
    }

    /// Sends requests until `done` holds for one answer (20 s at most).
    async fn wait_for(&self, what: &str, done: impl Fn(u16, &str) -> bool) {
        let end = Instant::now() + Duration::from_secs(20);
        loop {
            let (status, body) = self.get(&[]).await;
            if done(status, &body) {
                return;
            }
            assert!(Instant::now() < end, "never saw {what}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Backends `a`, `b` and `c`.
async fn three_backends() -> [Backend; 3] {
    [
        Backend::start("a").await,
        Backend::start("b").await,
        Backend::start("c").await,
    ]
}

const FAST_CHECKS: &str = "[pool.health]\npath = \"/healthz\"\ninterval = \"100ms\"\ntimeout = \"500ms\"\nrise = 1\nfall = 1\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hash_by_header_cookie_and_source_keeps_a_key_on_one_server() {
    let b = three_backends().await;
    let refs: Vec<&Backend> = b.iter().collect();
    let by_header = front(
        "hash-header",
        "policy = \"hash\"\nhash_key = \"header:X-User\"",
        &refs,
        "",
    );
    let mut servers_used = HashSet::new();
    for user in 0..12 {
        let u = format!("user-{user}");
        let got = by_header.spread(6, &[("x-user", &u)]).await;
        assert_eq!(got.len(), 1, "{u} went to more than one server: {got:?}");
        servers_used.extend(got.into_keys());
    }
    assert!(
        servers_used.len() >= 2,
        "12 keys all on one server: {servers_used:?}"
    );

    let by_cookie = front(
        "hash-cookie",
        "policy = \"maglev\"\nhash_key = \"cookie:sid\"\nbounded_load = 2.0",
        &refs,
        "",
    );
    for sid in ["s1", "s2", "s3", "s4"] {
        let cookie = format!("theme=dark; sid={sid}");
        let got = by_cookie.spread(6, &[("cookie", &cookie)]).await;
        assert_eq!(
            got.len(),
            1,
            "sid {sid} went to more than one server: {got:?}"
        );
    }

    // Every client here is 127.0.0.1: hashing the source sends all to one
    // server, where round robin would spread them.
    let by_source = front("hash-source", "policy = \"hash\"", &refs, "");
    let got = by_source.spread(9, &[]).await;
    assert_eq!(got.len(), 1, "one source address, several servers: {got:?}");
    let rr = front("round-robin", "", &refs, "");
    let got = rr.spread(9, &[]).await;
    assert_eq!(got.len(), 3, "round robin should use every server: {got:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expect_status_and_body_take_servers_out_and_bring_them_back() {
    let ok = Backend::start("ok").await;
    let moved = Backend::start("moved").await;
    let starting = Backend::start("starting").await;
    // 301 passes edge-health's default (200-399) but not `expect_status`.
    moved.check_status.store(301, Ordering::Relaxed);
    *starting.check_body.lock().unwrap() = "warming up".into();
    let f = front(
        "expect",
        "",
        &[&ok, &moved, &starting],
        &format!("{FAST_CHECKS}expect_status = [\"200-204\"]\nexpect_body = \"ready\"\n"),
    );
    // Checks run every 100 ms with fall = 1: give them a few rounds.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let got = f.spread(12, &[]).await;
    assert_eq!(
        got.get("ok"),
        Some(&12),
        "only `ok` passes its checks: {got:?}"
    );
    assert_eq!(moved.hits.load(Ordering::Relaxed), 0);
    assert_eq!(starting.hits.load(Ordering::Relaxed), 0);

    // The body now matches: `starting` comes back; a 500 takes `ok` out.
    *starting.check_body.lock().unwrap() = "ready".into();
    f.wait_for("`starting` back", |_, who| who == "starting")
        .await;
    ok.check_status.store(500, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(800)).await;
    let got = f.spread(8, &[]).await;
    assert_eq!(got.get("starting"), Some(&8), "{got:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn initial_state_down_keeps_a_server_out_until_its_checks_pass() {
    let a = Backend::start("a").await;
    let late = Backend::start("late").await;
    late.check_status.store(503, Ordering::Relaxed);
    // Slow checks that take 3 failures to take a server out: with "up",
    // `late` serves from the start, failing checks and all.
    let slow = "[pool.health]\npath = \"/healthz\"\ninterval = \"1s\"\nrise = 3\nfall = 3\n";
    let up = front(
        "initial-up",
        "",
        &[&a, &late],
        &format!("{slow}initial_state = \"up\"\n"),
    );
    let got = up.spread(4, &[]).await;
    assert_eq!(got.get("late"), Some(&2), "initial_state up: {got:?}");
    drop(up);
    let before = late.hits.load(Ordering::Relaxed);

    // "down", the default: edge is ready once the first checks have run,
    // so `a` serves at once and `late` never.
    let down = front("initial-down", "", &[&a, &late], slow);
    let got = down.spread(8, &[]).await;
    assert_eq!(got.get("a"), Some(&8), "initial_state down: {got:?}");
    // Its first check failed, so it is fully down: `rise` passes bring it in.
    late.check_status.store(200, Ordering::Relaxed);
    down.wait_for("`late` in rotation", |_, who| who == "late")
        .await;
    assert!(late.hits.load(Ordering::Relaxed) > before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_open_serves_from_servers_marked_down() {
    let a = Backend::start("a").await;
    a.check_status.store(500, Ordering::Relaxed);
    let closed = front("fail-closed", "", &[&a], FAST_CHECKS);
    closed.wait_for("503 once down", |s, _| s == 503).await;
    let open = front("fail-open", "fail_open = true", &[&a], FAST_CHECKS);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let got = open.spread(4, &[]).await;
    assert_eq!(got.get("a"), Some(&4), "fail_open: {got:?}");
    let got = closed.spread(2, &[]).await;
    assert_eq!(got.get("<503>"), Some(&2), "without fail_open: {got:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capacity_alert_runs_the_command_and_posts_the_webhook() {
    let received: Arc<Mutex<Vec<serde_json::Value>>> = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook_port = listener.local_addr().unwrap().port();
    let rec = received.clone();
    tokio::spawn(async move {
        loop {
            let Ok((s, _)) = listener.accept().await else {
                continue;
            };
            let rec = rec.clone();
            let svc = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                let rec = rec.clone();
                async move {
                    let path = req.uri().path().to_owned();
                    let body = req.into_body().collect().await.unwrap().to_bytes();
                    let mut v: serde_json::Value = serde_json::from_slice(&body).unwrap();
                    v["path"] = path.into();
                    rec.lock().unwrap().push(v);
                    Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::new())))
                }
            });
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    let a = Backend::start("a").await;
    let b = Backend::start("b").await;
    let out_dir = TempDir::new("capacity-hook-out");
    let out = out_dir.path("alerts");
    let tables = format!(
        "{FAST_CHECKS}[pool.capacity]\nmin_up = 2\nmin_up_percent = 0\n\
         command = [\"/bin/sh\", \"-c\", \"echo $EDGE_HEALTH_POOL $EDGE_HEALTH_STATE $EDGE_HEALTH_HEALTHY $EDGE_HEALTH_TOTAL >> {}\"]\n\
         webhook = \"http://127.0.0.1:{hook_port}/alert\"\nhook_timeout = \"2s\"\n",
        out.display()
    );
    let f = front("capacity", "", &[&a, &b], &tables);
    f.wait_for("both servers", |_, who| who == "b").await;
    b.check_status.store(500, Ordering::Relaxed);
    let lines = wait_lines(&out, 1).await;
    assert_eq!(lines, vec!["app low 1 2"]);
    b.check_status.store(200, Ordering::Relaxed);
    let lines = wait_lines(&out, 2).await;
    assert_eq!(lines, vec!["app low 1 2", "app recovered 2 2"]);
    let end = Instant::now() + Duration::from_secs(10);
    while received.lock().unwrap().len() < 2 && Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let got = received.lock().unwrap().clone();
    let brief: Vec<(String, String, u64)> = got
        .iter()
        .map(|v| {
            (
                v["path"].as_str().unwrap_or_default().to_owned(),
                v["state"].as_str().unwrap_or_default().to_owned(),
                v["healthy"].as_u64().unwrap_or(99),
            )
        })
        .collect();
    assert_eq!(
        brief,
        vec![
            ("/alert".into(), "low".into(), 1),
            ("/alert".into(), "recovered".into(), 2)
        ],
        "{got:?}"
    );
    assert_eq!(got[0]["pool"], "app");
    assert_eq!(got[0]["total"], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sticky_cookie_holds_while_the_server_is_up_and_moves_when_it_is_not() {
    let b = three_backends().await;
    let refs: Vec<&Backend> = b.iter().collect();
    let f = front("sticky", "sticky_cookie = \"SRV\"", &refs, FAST_CHECKS);
    let get = |cookie: Option<String>| {
        let f = &f;
        async move {
            let s = tls(f.client.clone(), f.port, Some("app.test"))
                .await
                .unwrap();
            let headers: Vec<(&str, &str)> = cookie
                .as_deref()
                .map(|c| vec![("cookie", c)])
                .unwrap_or_default();
            let r = send(s, "GET", "app.test", "/", &headers).await.unwrap();
            assert_eq!(r.status, 200);
            let set = r
                .headers
                .get("set-cookie")
                .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_owned());
            (r.body, set)
        }
    };
    // No cookie: the policy picks and the answer names the server.
    let (first, set) = get(None).await;
    let cookie = set.expect("no Set-Cookie on the first answer");
    assert!(cookie.starts_with("SRV="), "{cookie}");
    // With it, every request goes there (round robin alone would rotate)
    // and the cookie is not set again.
    for _ in 0..6 {
        let (who, set) = get(Some(format!("other=1; {cookie}"))).await;
        assert_eq!(who, first);
        assert_eq!(set, None);
    }
    // Its server goes down: re-picked, and a new cookie that sticks.
    let hits: Vec<usize> = b.iter().map(|x| x.hits.load(Ordering::Relaxed)).collect();
    let mut sorted = hits.clone();
    sorted.sort();
    assert_eq!(sorted, vec![0, 0, 7], "all 7 requests on the sticky server");
    let down = &b[hits.iter().position(|&n| n == 7).unwrap()];
    down.check_status.store(500, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(800)).await;
    let (moved_to, set) = get(Some(cookie.clone())).await;
    assert_ne!(moved_to, first);
    let new_cookie = set.expect("no new Set-Cookie after the server went down");
    assert_ne!(new_cookie, cookie);
    for _ in 0..4 {
        let (who, _) = get(Some(new_cookie.clone())).await;
        assert_eq!(who, moved_to);
    }
}

/// The lines of `path` once it has `n` (20 s at most).
async fn wait_lines(path: &std::path::Path, n: usize) -> Vec<String> {
    let end = Instant::now() + Duration::from_secs(20);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<String> = text.lines().map(str::to_owned).collect();
        if lines.len() >= n || Instant::now() > end {
            return lines;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
