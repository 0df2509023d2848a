//! `[[vrrp]]` `preempt_delay`, the gratuitous ARP / NA settings and
//! `startup_hold`.

use std::path::Path;
use std::time::Duration;

use super::*;

/// A route, then `tests::VRRP` (lines 3-8): the keys under test go on line 9.
const ROUTE: &str = "[[route]]\nrespond = { status = 200 }\n";

fn check(extra: &str) -> Result<Validated, ConfigErrors> {
    load_str(
        Source::new(
            Path::new("t.toml"),
            format!("{ROUTE}{}{extra}", super::tests::VRRP),
        ),
        Path::new("."),
    )
}

fn errors(extra: &str) -> String {
    match check(extra) {
        Ok(_) => panic!("config unexpectedly valid: {extra}"),
        Err(e) => e.0.iter().map(|e| format!("{e}\n")).collect(),
    }
}

fn want() -> edge_vrrp::Config {
    let mut c = edge_vrrp::Config::default();
    c.interface("eth0")
        .vrid(51)
        .priority(150)
        .virtual_address("198.18.0.100/24".parse().unwrap());
    c
}

#[test]
fn defaults_are_edge_vrrps() {
    assert_eq!(check("").unwrap().vrrp[0].config, want());
}

#[test]
fn preempt_delay_and_garp_keys_reach_edge_vrrp() {
    let v = check(
        "preempt_delay = \"30s\"\ngarp_master_delay = \"2s\"\ngarp_master_repeat = 3\n\
         garp_master_refresh = \"60s\"\ngarp_master_refresh_repeat = 2\n",
    )
    .unwrap();
    let mut w = want();
    w.preempt_delay(Duration::from_secs(30))
        .garp_delay(Duration::from_secs(2))
        .garp_repeat(3)
        .garp_refresh(Some(Duration::from_secs(60)))
        .garp_refresh_repeat(2);
    assert_eq!(v.vrrp[0].config, w);
    // "0s" turns the second burst off.
    let v = check("garp_master_delay = \"0s\"\n").unwrap();
    let mut w = want();
    w.garp_delay(Duration::ZERO);
    assert_eq!(v.vrrp[0].config, w);
}

#[test]
fn startup_hold_defaults_to_five_seconds() {
    assert_eq!(
        check("").unwrap().vrrp[0].startup_hold,
        DEFAULT_STARTUP_HOLD
    );
    assert_eq!(DEFAULT_STARTUP_HOLD, Duration::from_secs(5));
    let v = check("startup_hold = \"30s\"\n").unwrap();
    assert_eq!(v.vrrp[0].startup_hold, Duration::from_secs(30));
    // Not an edge-vrrp setting: the instance's config is the default one.
    assert_eq!(v.vrrp[0].config, want());
}

#[test]
fn errors_carry_line_and_key() {
    // The extra keys start on line 9.
    for (extra, key, msg) in [
        (
            "preempt_delay = \"2h\"",
            "vrrp[0].preempt_delay",
            "at most 1h",
        ),
        (
            "nopreempt = true\npreempt_delay = \"5s\"",
            "vrrp[0].preempt_delay",
            "no effect with nopreempt",
        ),
        (
            "garp_master_repeat = 0",
            "vrrp[0].garp_master_repeat",
            "1-100",
        ),
        (
            "garp_master_repeat = 500",
            "vrrp[0].garp_master_repeat",
            "1-100",
        ),
        (
            "garp_master_refresh = \"0s\"",
            "vrrp[0].garp_master_refresh",
            "more than 0s",
        ),
        (
            "garp_master_refresh_repeat = 2",
            "vrrp[0].garp_master_refresh_repeat",
            "needs garp_master_refresh",
        ),
        (
            "startup_hold = \"2h\"",
            "vrrp[0].startup_hold",
            "at most 1h",
        ),
        (
            "garp_master_delay = \"soon\"",
            "garp_master_delay",
            "invalid duration",
        ),
    ] {
        let e = errors(&format!("{extra}\n"));
        let line = 9 + extra.matches('\n').count();
        assert!(e.starts_with(&format!("t.toml:{line}:")), "{extra}: {e}");
        assert!(e.contains(key) && e.contains(msg), "{extra}: {e}");
    }
}
