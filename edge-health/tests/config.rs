//! Malformed configuration is refused with an error naming the field.

use std::net::SocketAddr;
use std::time::Duration;

use edge_health::{
    AlertHook, CapacityConfig, CheckConfig, ConfigError, HealthChecker, HttpProbe, OutlierConfig,
    PoolConfig, Probe, SchedulerConfig, StatusSet, TlsProbe, TlsVerify,
};

fn target() -> SocketAddr {
    "127.0.0.1:8080".parse().unwrap()
}

fn refused(pool: PoolConfig) -> String {
    let mut c = HealthChecker::new(SchedulerConfig::default()).unwrap();
    c.add_pool(pool).unwrap_err().to_string()
}

#[test]
fn malformed_pools_are_refused_naming_the_field() {
    let base = || PoolConfig::new("web", [target()]);
    let cases: Vec<(PoolConfig, &str)> = vec![
        (
            base().check(CheckConfig::default().inter(Duration::ZERO)),
            "check.inter must be greater than zero",
        ),
        (
            base().check(CheckConfig::default().downinter(Duration::ZERO)),
            "check.downinter",
        ),
        (
            base().check(CheckConfig::default().timeout(Duration::ZERO)),
            "check.timeout",
        ),
        (
            base().check(CheckConfig::default().rise(0)),
            "check.rise must be at least 1",
        ),
        (
            base().check(CheckConfig::default().fall(0)),
            "check.fall must be at least 1",
        ),
        (
            base().outlier(OutlierConfig {
                consecutive_failures: 0,
                ..Default::default()
            }),
            "outlier.consecutive_failures",
        ),
        (
            base().outlier(OutlierConfig {
                base_ejection_time: Duration::ZERO,
                ..Default::default()
            }),
            "outlier.base_ejection_time",
        ),
        (
            base().capacity(CapacityConfig {
                min_healthy_percent: 150,
                ..Default::default()
            }),
            "capacity.min_healthy_percent must be between 0 and 100 (got 150)",
        ),
        (
            base().capacity(CapacityConfig {
                hooks: vec![AlertHook::Command {
                    program: "".into(),
                    args: vec![],
                }],
                ..Default::default()
            }),
            "capacity.hook.program",
        ),
        (
            base().probe(Probe::Http(HttpProbe::get("no-slash"))),
            "http.path",
        ),
        (
            base().probe(Probe::Http(HttpProbe::get("/").body_regex("a("))),
            "http.body_regex",
        ),
        (
            base().probe(Probe::Http(HttpProbe::get("/").max_body(0))),
            "http.max_body",
        ),
        (
            base().probe(Probe::Tls(TlsProbe::default().sni("bad name!"))),
            "tls: invalid value",
        ),
        (
            base().probe(Probe::Tls(
                TlsProbe::default().verify(TlsVerify::Roots(vec![])),
            )),
            "no root certificates",
        ),
        (
            PoolConfig::new("", [target()]),
            "pool.name must not be empty",
        ),
        (
            PoolConfig::new("web", [target(), target()]),
            "target 127.0.0.1:8080 is listed twice",
        ),
    ];
    for (pool, want) in cases {
        let got = refused(pool);
        assert!(got.contains(want), "got {got:?}, want {want:?}");
    }
}

#[test]
fn empty_expected_status_is_refused() {
    let e = "".parse::<StatusSet>().unwrap_err();
    assert_eq!(
        e,
        ConfigError::Empty {
            field: "http.expect_status"
        }
    );
    assert_eq!(e.to_string(), "http.expect_status must not be empty");
    let e = StatusSet::from_ranges([]).unwrap_err();
    assert_eq!(e.to_string(), "http.expect_status must not be empty");
    let e = "200-".parse::<StatusSet>().unwrap_err();
    assert!(
        e.to_string()
            .starts_with("http.expect_status: invalid value \"200-\"")
    );
}

#[test]
fn duplicate_pools_and_bad_scheduler_are_refused() {
    let mut c = HealthChecker::new(SchedulerConfig::default()).unwrap();
    c.add_pool(PoolConfig::new("web", [target()])).unwrap();
    let e = c.add_pool(PoolConfig::new("web", [target()])).unwrap_err();
    assert_eq!(e.to_string(), "pool \"web\" is defined twice");
    let e = HealthChecker::new(SchedulerConfig {
        max_concurrent_probes: 0,
        jitter_percent: 10,
    })
    .unwrap_err();
    assert!(e.to_string().contains("scheduler.max_concurrent_probes"));
    let e = HealthChecker::new(SchedulerConfig {
        max_concurrent_probes: 1,
        jitter_percent: 90,
    })
    .unwrap_err();
    assert!(e.to_string().contains("scheduler.jitter_percent"));
}
