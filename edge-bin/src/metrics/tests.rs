use super::*;

/// The sample line of `name` whose labels include every pair of `labels`
/// (the text format orders labels by name), and its value.
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines().find_map(|l| {
        let rest = l.strip_prefix(name)?;
        let (labelset, value) = match rest.strip_prefix('{') {
            Some(r) => r.split_once("} ")?,
            None => ("", rest.strip_prefix(' ')?),
        };
        labels
            .iter()
            .all(|(k, v)| labelset.split(',').any(|p| p == format!("{k}=\"{v}\"")))
            .then(|| value.parse().ok())?
    })
}

#[test]
fn every_family_registers() {
    // Families::new stops on an invalid name or label set: this runs it.
    let m = Metrics::new();
    let t = m.render();
    if let Ok(p) = std::env::var("EDGE_METRICS_DUMP") {
        std::fs::write(p, &t).unwrap();
    }
    for family in [
        "edge_build_info",
        "edge_start_time_seconds",
        "edge_http_requests_total",
        "edge_config_reloads_total",
        "edge_tls_handshake_failures_total",
        "edge_client_limit_refused_total",
        "process_resident_memory_bytes",
    ] {
        assert!(
            t.contains(&format!("# TYPE {family} ")),
            "{family} not in\n{t}"
        );
    }
}

#[test]
fn counters_survive_and_render() {
    let m = Metrics::new();
    let a = m.route("api");
    a.observe(204, Duration::from_millis(3));
    a.observe(503, Duration::from_millis(300));
    a.observe(42, Duration::ZERO);
    // A reload looks the route up again: the same counters.
    assert!(Arc::ptr_eq(&a, &m.route("api")));
    assert_eq!(
        (a.requests("2xx"), a.requests("5xx"), a.requests("other")),
        (1, 1, 1)
    );
    m.vrrp_state(7, "eth0", edge_vrrp::State::Initialize, false);
    m.vrrp_state(7, "eth0", edge_vrrp::State::Backup, true);
    m.vrrp_state(7, "eth0", edge_vrrp::State::Master, true);
    m.tls_failure(HandshakeFailure::Timeout);
    m.reload_result(false);
    m.sink("c\"q").dropped_queue_full.inc_by(3);
    let t = m.render();
    let api = ("route", "api");
    let vrrp = [("vrid", "7"), ("interface", "eth0")];
    for (name, labels, want) in [
        ("edge_http_requests_total", vec![api, ("class", "5xx")], 1.0),
        (
            "edge_http_request_duration_seconds_bucket",
            vec![api, ("le", "0.005")],
            2.0,
        ),
        (
            "edge_http_request_duration_seconds_bucket",
            vec![api, ("le", "0.25")],
            2.0,
        ),
        (
            "edge_http_request_duration_seconds_bucket",
            vec![api, ("le", "0.5")],
            3.0,
        ),
        ("edge_http_request_duration_seconds_count", vec![api], 3.0),
        (
            "edge_vrrp_state",
            [&vrrp[..], &[("state", "master")]].concat(),
            1.0,
        ),
        (
            "edge_vrrp_state",
            [&vrrp[..], &[("state", "backup")]].concat(),
            0.0,
        ),
        ("edge_vrrp_transitions_total", vrrp.to_vec(), 2.0),
        (
            "edge_tls_handshake_failures_total",
            vec![("reason", "timeout")],
            1.0,
        ),
        (
            "edge_tls_handshake_failures_total",
            vec![("reason", "alert")],
            0.0,
        ),
        (
            "edge_config_reloads_total",
            vec![("result", "failure")],
            1.0,
        ),
        ("edge_config_last_reload_successful", vec![], 0.0),
        (
            "edge_access_log_dropped_total",
            vec![("sink", "c\\\"q"), ("reason", "queue_full")],
            3.0,
        ),
    ] {
        assert_eq!(
            sample(&t, name, &labels),
            Some(want),
            "{name} {labels:?} in\n{t}"
        );
    }
    m.reload_result(true);
    assert!(
        m.render()
            .contains("edge_config_last_reload_successful 1\n")
    );
}

#[test]
fn per_server_series() {
    let m = Metrics::new();
    let addr: SocketAddr = "127.0.0.1:8080".parse().unwrap();
    let s = m.server("app", addr);
    assert!(
        Arc::ptr_eq(&s, &m.server("app", addr)),
        "same counters on reload"
    );
    s.response(200, Duration::from_micros(700));
    s.response(503, Duration::from_millis(40));
    s.error(BackendError::Connect);
    s.error(BackendError::Status5xx);
    s.health_check(true, Duration::from_millis(2));
    s.health_check(false, Duration::from_secs(2));
    let t = m.render();
    let srv = [("pool", "app"), ("server", "127.0.0.1:8080")];
    let with = |extra: (&'static str, &'static str)| [&srv[..], &[extra]].concat();
    for (name, labels, want) in [
        ("edge_backend_responses_total", with(("class", "2xx")), 1.0),
        ("edge_backend_responses_total", with(("class", "5xx")), 1.0),
        ("edge_backend_responses_total", with(("class", "4xx")), 0.0),
        ("edge_backend_errors_total", with(("kind", "connect")), 1.0),
        ("edge_backend_errors_total", with(("kind", "timeout")), 0.0),
        (
            "edge_backend_errors_total",
            with(("kind", "status_5xx")),
            1.0,
        ),
        (
            "edge_backend_response_duration_seconds_bucket",
            with(("le", "0.001")),
            1.0,
        ),
        (
            "edge_backend_response_duration_seconds_count",
            srv.to_vec(),
            2.0,
        ),
        (
            "edge_health_check_duration_seconds_count",
            with(("result", "pass")),
            1.0,
        ),
        (
            "edge_health_check_duration_seconds_bucket",
            with(("le", "1")),
            0.0,
        ),
    ] {
        assert_eq!(
            sample(&t, name, &labels),
            Some(want),
            "{name} {labels:?} in\n{t}"
        );
    }
    let p = s.latency().unwrap();
    assert_eq!(p.count, 2);
    assert!(p.p50 <= 0.001 && p.p99 > 0.025, "{p:?}");
}

#[test]
fn config_gauges_are_set_per_scrape() {
    let m = Metrics::new();
    let a: SocketAddr = "127.0.0.1:1".parse().unwrap();
    let t = m.render_with(|g| {
        g.pool("gone", 2, 1, true);
        g.server_up("gone", a, true);
    });
    assert_eq!(
        sample(&t, "edge_pool_capacity_low", &[("pool", "gone")]),
        Some(1.0)
    );
    assert_eq!(
        sample(&t, "edge_backend_up", &[("pool", "gone")]),
        Some(1.0)
    );
    // The next scrape describes the config then: the pool left it.
    let t = m.render_with(|g| g.pool("app", 3, 3, false));
    assert_eq!(sample(&t, "edge_pool_servers", &[("pool", "gone")]), None);
    assert_eq!(sample(&t, "edge_backend_up", &[("pool", "gone")]), None);
    assert_eq!(
        sample(&t, "edge_pool_healthy_servers", &[("pool", "app")]),
        Some(3.0)
    );
}

#[test]
fn handshakes_by_version_resumption_and_group() {
    let m = Metrics::new();
    let full = Handshake {
        version: "1.3",
        resumed: Some(false),
        group: "X25519",
    };
    m.tls_handshake(full);
    m.tls_handshake(full);
    m.tls_handshake(Handshake {
        version: "1.2",
        resumed: Some(true),
        group: "none",
    });
    let t = m.render();
    let count = |labels: &[(&str, &str)]| sample(&t, "edge_tls_handshakes_total", labels);
    assert_eq!(
        count(&[
            ("version", "1.3"),
            ("resumed", "false"),
            ("group", "X25519")
        ]),
        Some(2.0)
    );
    assert_eq!(
        count(&[("version", "1.2"), ("resumed", "true"), ("group", "none")]),
        Some(1.0)
    );
    assert_eq!(count(&[("version", "1.2"), ("resumed", "false")]), None);
    m.tls_handshake(Handshake::quic());
    let t = m.render();
    assert_eq!(
        sample(
            &t,
            "edge_tls_handshakes_total",
            &[
                ("version", "1.3"),
                ("resumed", "unknown"),
                ("group", "unknown")
            ]
        ),
        Some(1.0)
    );
}
