//! Active probes against real backends: a hyper HTTP server that can fail
//! in every way, a rustls backend with rcgen certificates, a closed port.

mod common;

use std::time::{Duration, Instant};

use common::{Backend, Mode, TestCert, closed_port, wait_health, wait_target};
use edge_health::{
    CheckConfig, HealthChecker, HealthEvent, HealthHandle, HttpProbe, PoolConfig, Probe, Reason,
    SchedulerConfig, TargetState, TlsProbe, TlsVerify,
};

const MS: Duration = Duration::from_millis(1);

fn check(inter_ms: u64, rise: u32, fall: u32) -> CheckConfig {
    CheckConfig::default()
        .inter(Duration::from_millis(inter_ms))
        .rise(rise)
        .fall(fall)
        .timeout(Duration::from_secs(1))
}

fn spawn(pools: Vec<PoolConfig>) -> HealthHandle {
    let mut c = HealthChecker::new(SchedulerConfig::default()).unwrap();
    for p in pools {
        c.add_pool(p).unwrap();
    }
    c.spawn()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn down_after_exactly_fall_failures_and_up_after_exactly_rise_passes() {
    let b = Backend::http().await;
    let probe = Probe::Http(HttpProbe::get("/health"));
    let h = spawn(vec![
        PoolConfig::new("web", [b.addr])
            .probe(probe)
            .check(check(40, 2, 3)),
    ]);
    let mut ev = h.subscribe();
    wait_health(&mut ev, b.addr, true).await;

    let switched = Instant::now();
    b.set(Mode::Status(500));
    let down = wait_health(&mut ev, b.addr, false).await;
    assert_eq!(down.reason, Reason::Status(500));
    assert_eq!(down.state, TargetState::Down);
    // The failing answers the backend gave before the target went down.
    assert_eq!(b.count_before(Mode::Status(500), down.since), 3, "fall = 3");
    assert!(down.since > switched);
    assert_eq!(h.pool_summary("web"), Some((0, 1)));

    b.set(Mode::Ok);
    let up = wait_health(&mut ev, b.addr, true).await;
    assert_eq!(up.reason, Reason::Passed);
    let passes = b
        .seen()
        .iter()
        .filter(|s| s.mode == Mode::Ok && s.at > down.since && s.at < up.since)
        .count();
    assert_eq!(passes, 2, "rise = 2");
    assert_eq!(h.pool_summary("web"), Some((1, 1)));
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_failure_kind_is_detected_with_its_reason() {
    let b = Backend::http().await;
    let probe = Probe::Http(HttpProbe::get("/").body_contains("status: ok"));
    let h = spawn(vec![
        PoolConfig::new("web", [b.addr])
            .probe(probe)
            .check(check(30, 1, 1)),
    ]);
    let mut ev = h.subscribe();
    wait_health(&mut ev, b.addr, true).await;

    let cases = [
        (Mode::Status(503), "status 503"),
        (Mode::WrongBody, "body mismatch"),
        (Mode::Reset, "connection reset"),
        (Mode::Hang, "timeout"),
        (Mode::Slow(Duration::from_secs(3)), "timeout"),
    ];
    for (mode, reason) in cases {
        b.set(mode);
        let down = wait_health(&mut ev, b.addr, false).await;
        assert_eq!(down.reason.to_string(), reason, "{mode:?}");
        b.set(Mode::Ok);
        wait_health(&mut ev, b.addr, true).await;
    }
    // The client gave up on the hanging connections and closed them.
    assert!(b.hung_closed() >= 1, "hung probe connections are closed");

    // An answer slower than usual but within the timeout keeps it up.
    b.set(Mode::Slow(100 * MS));
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(h.pool_summary("web"), Some((1, 1)));
    assert!(b.seen().iter().any(|s| s.mode == Mode::Slow(100 * MS)));

    // The port closes.
    let addr = b.addr;
    b.stop().await;
    let down = wait_health(&mut ev, addr, false).await;
    assert_eq!(down.reason, Reason::Refused);
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_timeout_is_honoured() {
    let b = Backend::http().await;
    b.set(Mode::Hang);
    let h = spawn(vec![
        PoolConfig::new("web", [b.addr])
            .probe(Probe::Http(HttpProbe::get("/")))
            .check(CheckConfig::default().inter(50 * MS).timeout(200 * MS)),
    ]);
    let mut ev = h.subscribe();
    let t0 = Instant::now();
    let down = wait_health(&mut ev, b.addr, false).await;
    let took = down.since.duration_since(t0);
    assert_eq!(down.reason, Reason::Timeout);
    // The first probe starts within one interval (50 ms) and is cut at 200 ms.
    assert!(took >= 200 * MS, "cut before the timeout: {took:?}");
    // Not waiting on the hung server: far sooner than a TCP-level timeout.
    assert!(took < Duration::from_secs(5), "{took:?}");
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_request_carries_method_path_and_host() {
    let b = Backend::http().await;
    let probe = HttpProbe::get("/healthz?deep=1")
        .method(http::Method::HEAD)
        .host("api.example.test")
        .expect_status("200,204".parse().unwrap());
    let h = spawn(vec![
        PoolConfig::new("api", [b.addr])
            .probe(Probe::Http(probe))
            .check(check(50, 1, 1)),
    ]);
    let mut ev = h.subscribe();
    wait_health(&mut ev, b.addr, true).await;
    let s = b.seen().into_iter().next().unwrap();
    assert_eq!(s.method, "HEAD");
    assert_eq!(s.path, "/healthz?deep=1");
    assert_eq!(s.host.as_deref(), Some("api.example.test"));
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expected_status_set_and_body_regex() {
    let b = Backend::http().await;
    b.set(Mode::Status(404));
    let ok404 = HttpProbe::get("/").expect_status("404".parse().unwrap());
    let regex = HttpProbe::get("/").body_regex(r"^status: (ok|degraded)$");
    let default = HttpProbe::get("/");
    let h = spawn(vec![
        PoolConfig::new("ok404", [b.addr])
            .probe(Probe::Http(ok404))
            .check(check(40, 1, 1)),
        PoolConfig::new("regex", [b.addr])
            .probe(Probe::Http(regex))
            .check(check(40, 1, 1)),
        PoolConfig::new("default", [b.addr])
            .probe(Probe::Http(default))
            .check(check(40, 1, 1)),
    ]);
    let checked = |e: &HealthEvent| e.state != TargetState::Unchecked;
    let e = wait_target(&h, "ok404", checked).await;
    assert!(e.healthy);
    let e = wait_target(&h, "default", checked).await;
    assert_eq!(e.reason, Reason::Status(404), "default expects 200-399");
    let e = wait_target(&h, "regex", checked).await;
    assert_eq!(e.reason, Reason::Status(404), "the status is checked first");
    b.set(Mode::Ok);
    let e = wait_target(&h, "regex", |e| e.healthy).await;
    assert_eq!(e.reason, Reason::Passed);
    b.set(Mode::WrongBody);
    let e = wait_target(&h, "regex", |e| !e.healthy).await;
    assert_eq!(e.reason, Reason::BodyMismatch);
    h.shutdown().await;
}

/// A rustls client config trusting `ca` (else the Mozilla roots).
fn rustls_config(
    ca: Option<&rustls_pki_types::CertificateDer<'static>>,
) -> std::sync::Arc<rustls::ClientConfig> {
    let roots = match ca {
        Some(c) => {
            let mut r = rustls::RootCertStore::empty();
            r.add(c.clone()).unwrap();
            r
        }
        None => rustls::RootCertStore::from_iter(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    };
    let c = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    std::sync::Arc::new(c)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_and_https_probes_against_a_rustls_backend() {
    let cert = TestCert::new(5);
    let b = Backend::https(&cert).await;
    let closed = closed_port().await;
    let roots = TlsVerify::Roots(vec![cert.ca.clone()]);
    let tls_ok = TlsProbe::default()
        .sni("backend.test")
        .verify(roots.clone());
    let pools = vec![
        ("tls-verified", Probe::Tls(tls_ok.clone())),
        ("tls-unverified", Probe::Tls(TlsProbe::default())),
        (
            "tls-webpki",
            Probe::Tls(
                TlsProbe::default()
                    .sni("backend.test")
                    .verify(TlsVerify::WebPki),
            ),
        ),
        (
            "tls-wrong-name",
            Probe::Tls(TlsProbe::default().sni("other.test").verify(roots.clone())),
        ),
        (
            "tls-expiring",
            Probe::Tls(
                tls_ok
                    .clone()
                    .min_remaining_validity(Duration::from_secs(30 * 86400)),
            ),
        ),
        (
            "tls-long-enough",
            Probe::Tls(
                tls_ok
                    .clone()
                    .min_remaining_validity(Duration::from_secs(2 * 86400)),
            ),
        ),
        (
            "https",
            Probe::Http(
                HttpProbe::get("/ready")
                    .host("backend.test")
                    .body_contains("ok")
                    .tls(tls_ok.clone()),
            ),
        ),
        ("plain-http-to-tls", Probe::Http(HttpProbe::get("/"))),
        // The caller's own rustls config (a proxy's backend settings): its
        // roots decide.
        (
            "tls-config",
            Probe::Tls(
                TlsProbe::default()
                    .sni("backend.test")
                    .verify(TlsVerify::Config(rustls_config(Some(&cert.ca)))),
            ),
        ),
        (
            "tls-config-other-roots",
            Probe::Tls(
                TlsProbe::default()
                    .sni("backend.test")
                    .verify(TlsVerify::Config(rustls_config(None))),
            ),
        ),
    ];
    let mut cfgs: Vec<_> = pools
        .into_iter()
        .map(|(n, p)| PoolConfig::new(n, [b.addr]).probe(p).check(check(50, 1, 1)))
        .collect();
    cfgs.push(
        PoolConfig::new("tls-closed", [closed])
            .probe(Probe::Tls(tls_ok))
            .check(check(50, 1, 1)),
    );
    let h = spawn(cfgs);
    let mut results = std::collections::HashMap::new();
    for p in h.pools() {
        let e = wait_target(&h, &p, |e| e.state != TargetState::Unchecked).await;
        results.insert(p.to_string(), e);
    }
    assert_eq!(results.len(), 11);
    let get = |n: &str| results.get(n).unwrap();
    assert!(get("tls-verified").healthy);
    assert!(get("tls-unverified").healthy);
    assert!(get("tls-long-enough").healthy);
    assert!(get("https").healthy, "{:?}", get("https").reason);
    assert!(get("tls-config").healthy, "{:?}", get("tls-config").reason);
    for n in ["tls-webpki", "tls-wrong-name", "tls-config-other-roots"] {
        assert!(
            matches!(get(n).reason, Reason::Tls(_)),
            "{n}: {:?}",
            get(n).reason
        );
    }
    assert!(
        get("tls-webpki")
            .reason
            .to_string()
            .contains("UnknownIssuer")
    );
    let wrong = get("tls-wrong-name").reason.to_string();
    assert!(wrong.contains("not valid for name"), "{wrong}");
    match &get("tls-expiring").reason {
        Reason::CertificateExpiring { remaining } => {
            assert!(*remaining > Duration::from_secs(4 * 86400));
            assert!(*remaining <= Duration::from_secs(5 * 86400));
        }
        r => panic!("tls-expiring: {r:?}"),
    }
    assert!(!get("plain-http-to-tls").healthy);
    assert_eq!(get("tls-closed").reason, Reason::Refused);
    // The backend saw our SNI and Host.
    let https = b.seen().into_iter().find(|s| s.path == "/ready").unwrap();
    assert_eq!(https.sni.as_deref(), Some("backend.test"));
    assert_eq!(https.host.as_deref(), Some("backend.test"));
    h.shutdown().await;
}
