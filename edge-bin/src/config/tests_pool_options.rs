//! The `[[pool]]` options of `pool_options.rs`: hashing, slow start,
//! fail-open, `[pool.capacity]` and `[pool.health]`'s extra keys.

use std::path::Path;
use std::time::Duration;

use edge_balance::HashSource;
use edge_health::{AlertHook, InitialState};

use super::*;

fn check(text: &str) -> Result<Validated, ConfigErrors> {
    load_str(
        Source::new(Path::new("t.toml"), text.into()),
        Path::new("/etc/edge"),
    )
}

/// A valid file whose one pool ends the file (lines 1-8), so a test adds
/// keys to it by appending.
const BASE: &str = r#"[[route]]
pool = "app"

[[pool]]
name = "app"
[[pool.server]]
address = "127.0.0.1:9000"
weight = 3
"#;

/// `BASE` with `pool_keys` in the `[[pool]]` table and `tables` after it.
fn with(pool_keys: &str, tables: &str) -> String {
    let keys = if pool_keys.is_empty() {
        String::new()
    } else {
        format!("{pool_keys}\n")
    };
    BASE.replace("name = \"app\"\n", &format!("name = \"app\"\n{keys}")) + tables
}

fn pool(text: &str) -> PoolSettings {
    match check(text) {
        Ok(v) => v.pools.into_iter().next().unwrap(),
        Err(e) => panic!("config refused: {e}\n{text}"),
    }
}

/// All error messages, one per line.
fn errors(text: &str) -> String {
    match check(text) {
        Ok(_) => panic!("config unexpectedly valid:\n{text}"),
        Err(e) => e.0.iter().map(|e| format!("{e}\n")).collect(),
    }
}

#[test]
fn defaults_are_the_libraries() {
    let p = pool(BASE);
    assert_eq!(p.policy, Policy::RoundRobin);
    assert_eq!(p.options.hash, HashSource::SourceIp);
    assert_eq!(p.options.bounded_load, None);
    assert_eq!(p.options.slow_start, Duration::ZERO);
    assert!(!p.options.fail_open);
    assert_eq!(p.options.capacity, edge_health::CapacityConfig::default());
    let h = pool(&with("", "[pool.health]\n")).health.unwrap();
    assert_eq!(h.options.fastinter, None);
    assert_eq!(h.options.downinter, None);
    assert_eq!(h.options.expect_status, None);
    assert_eq!(h.options.expect_body, None);
    // With active checks a server is down until its first check; without
    // `[pool.health]` (a TCP check that only brings ejected servers back)
    // it starts up.
    assert_eq!(h.options.initial, InitialState::DownUntilFirstPass);
    let checked = pool(&with("", "[pool.health]\n")).health_config();
    assert_eq!(checked.check.initial, InitialState::DownUntilFirstPass);
    let cfg = pool(BASE).health_config();
    assert_eq!(cfg.check.initial, InitialState::AssumedUp);
    // Today's behaviour stays one key away.
    let up = pool(&with("", "[pool.health]\ninitial_state = \"up\"\n")).health_config();
    assert_eq!(up.check.initial, InitialState::AssumedUp);
    assert_eq!(cfg.weights.values().copied().collect::<Vec<_>>(), vec![3]);
}

#[test]
fn hash_policies_and_keys() {
    let p = pool(&with(
        "policy = \"hash\"\nhash_key = \"header:X-User\"\nbounded_load = 1.25",
        "",
    ));
    assert_eq!(p.policy, Policy::Hash);
    assert_eq!(
        p.options.hash,
        HashSource::Header(http::HeaderName::from_static("x-user"))
    );
    assert_eq!(p.options.bounded_load, Some(1.25));
    let p = pool(&with("policy = \"maglev\"\nhash_key = \"cookie:sid\"", ""));
    assert_eq!(p.policy, Policy::Maglev);
    assert_eq!(p.options.hash, HashSource::Cookie("sid".into()));
    let p = pool(&with("policy = \"maglev\"\nhash_key = \"source\"", ""));
    assert_eq!(p.options.hash, HashSource::SourceIp);
}

#[test]
fn hash_key_errors_carry_their_line() {
    let e = errors(&with("policy = \"hash\"\nhash_key = \"url\"", ""));
    assert!(e.starts_with("t.toml:7:"), "{e}");
    assert!(e.contains("pool[0].hash_key"), "{e}");
    assert!(e.contains("expected \"source\""), "{e}");
    let e = errors(&with(
        "policy = \"hash\"\nhash_key = \"header:bad header\"",
        "",
    ));
    assert!(e.contains("invalid header name"), "{e}");
    let e = errors(&with("policy = \"hash\"\nhash_key = \"cookie:\"", ""));
    assert!(e.contains("invalid cookie name"), "{e}");
    let e = errors(&with("hash_key = \"source\"", ""));
    assert!(e.starts_with("t.toml:6:"), "{e}");
    assert!(e.contains("needs policy = \"hash\""), "{e}");
    let e = errors(&with("policy = \"round_robin\"\nbounded_load = 1.5", ""));
    assert!(e.contains("pool[0].bounded_load"), "{e}");
    let e = errors(&with("policy = \"hash\"\nbounded_load = 1.0", ""));
    assert!(e.starts_with("t.toml:7:"), "{e}");
    assert!(e.contains("above 1.0"), "{e}");
    let e = errors(&with("policy = \"consistent\"", ""));
    assert!(e.starts_with("t.toml:6:"), "{e}");
}

#[test]
fn slow_start_and_fail_open() {
    let p = pool(&with("slow_start = \"30s\"\nfail_open = true", ""));
    assert_eq!(p.options.slow_start, Duration::from_secs(30));
    assert!(p.options.fail_open);
    let e = errors(&with("policy = \"maglev\"\nslow_start = \"10s\"", ""));
    assert!(e.starts_with("t.toml:7:"), "{e}");
    assert!(e.contains("pool[0].slow_start"), "{e}");
    let e = errors(&with("slow_start = \"2h\"", ""));
    assert!(e.contains("at most 1h"), "{e}");
    let e = errors(&with("fail_open = \"yes\"", ""));
    assert!(e.starts_with("t.toml:6:"), "{e}");
}

#[test]
fn health_options_reach_edge_health() {
    let p = pool(&with(
        "",
        r#"[pool.health]
path = "/ready"
interval = "5s"
fastinter = "500ms"
downinter = "30s"
expect_status = ["200-299", 301]
expect_body = "ok"
initial_state = "down"
"#,
    ));
    let h = p.health.as_ref().unwrap();
    assert_eq!(h.options.fastinter, Some(Duration::from_millis(500)));
    assert_eq!(h.options.downinter, Some(Duration::from_secs(30)));
    assert_eq!(h.options.initial, InitialState::DownUntilFirstPass);
    assert_eq!(h.options.expect_body.as_deref(), Some("ok"));
    let set = h.options.expect_status.clone().unwrap();
    assert!(set.contains(204) && set.contains(301));
    assert!(!set.contains(302) && !set.contains(500));
    let cfg = p.health_config();
    assert_eq!(cfg.check.effective_fastinter(), Duration::from_millis(500));
    assert_eq!(cfg.check.effective_downinter(), Duration::from_secs(30));
    assert_eq!(cfg.check.initial, InitialState::DownUntilFirstPass);
    match &cfg.probe {
        edge_health::Probe::Http(hp) => {
            assert_eq!(hp.expect_status, set);
            assert_eq!(hp.body, Some(edge_health::BodyMatch::Contains("ok".into())));
            assert_eq!(hp.path, "/ready");
        }
        other => panic!("not an HTTP probe: {other:?}"),
    }
}

#[test]
fn health_option_errors_carry_their_line() {
    let table = |keys: &str| with("", &format!("[pool.health]\n{keys}\n"));
    // [pool.health] is line 9, its first key line 10.
    let e = errors(&table("expect_status = [\"300-200\"]"));
    assert!(e.starts_with("t.toml:10:"), "{e}");
    assert!(e.contains("pool[0].health.expect_status"), "{e}");
    let e = errors(&table("expect_status = [99]"));
    assert!(e.contains("expect_status"), "{e}");
    let e = errors(&table("expect_status = []"));
    assert!(e.contains("expect_status"), "{e}");
    let e = errors(&table("kind = \"tcp\"\nexpect_status = [200]"));
    assert!(e.starts_with("t.toml:11:"), "{e}");
    assert!(e.contains("needs kind = \"http\""), "{e}");
    let e = errors(&table("kind = \"tcp\"\nexpect_body = \"ok\""));
    assert!(e.contains("pool[0].health.expect_body"), "{e}");
    let e = errors(&table("expect_body = \"\""));
    assert!(e.contains("must not be empty"), "{e}");
    let e = errors(&table("fastinter = \"10ms\""));
    assert!(e.starts_with("t.toml:10:"), "{e}");
    assert!(e.contains("fastinter must be at least 50ms"), "{e}");
    let e = errors(&table("downinter = \"0s\""));
    assert!(e.contains("pool[0].health.downinter"), "{e}");
    let e = errors(&table("initial_state = \"maybe\""));
    assert!(e.starts_with("t.toml:10:"), "{e}");
    assert!(
        e.contains("initial_state") || e.contains("unknown variant"),
        "{e}"
    );
}

#[test]
fn capacity_thresholds_and_hooks() {
    let p = pool(&with(
        "",
        r#"[pool.capacity]
min_up = 2
min_up_percent = 25
min_weight_percent = 60
command = ["hooks/page.sh", "--pool", "app"]
webhook = "http://127.0.0.1:9900/alert"
hook_timeout = "3s"
"#,
    ));
    let c = &p.options.capacity;
    assert_eq!(
        (
            c.min_healthy,
            c.min_healthy_percent,
            c.min_healthy_weight_percent
        ),
        (2, 25, 60)
    );
    assert_eq!(c.hook_timeout, Duration::from_secs(3));
    assert_eq!(
        c.hooks,
        vec![
            AlertHook::Command {
                program: "/etc/edge/hooks/page.sh".into(),
                args: vec!["--pool".into(), "app".into()],
            },
            AlertHook::Webhook {
                url: "http://127.0.0.1:9900/alert".parse().unwrap(),
            },
        ]
    );
    assert_eq!(p.health_config().capacity, *c);
}

#[test]
fn capacity_errors_carry_their_line() {
    let table = |keys: &str| with("", &format!("[pool.capacity]\n{keys}\n"));
    let e = errors(&table("min_up_percent = 150"));
    assert!(e.starts_with("t.toml:10:"), "{e}");
    assert!(e.contains("pool[0].capacity.min_up_percent"), "{e}");
    let e = errors(&table("min_weight_percent = -1"));
    assert!(e.contains("min_weight_percent must be 0-100"), "{e}");
    let e = errors(&table("min_up = -3"));
    assert!(e.contains("pool[0].capacity.min_up"), "{e}");
    let e = errors(&table("command = []"));
    assert!(e.contains("pool[0].capacity.command"), "{e}");
    let e = errors(&table("webhook = \"ftp://x/alert\""));
    assert!(e.starts_with("t.toml:10:"), "{e}");
    assert!(e.contains("http:// or https://"), "{e}");
    let e = errors(&table("webhook = \"/alert\""));
    assert!(e.contains("pool[0].capacity.webhook"), "{e}");
    let e = errors(&table("hook_timeout = \"0s\""));
    assert!(e.contains("pool[0].capacity.hook_timeout"), "{e}");
    let e = errors(&table("min_servers = 1"));
    assert!(e.contains("unknown field"), "{e}");
}

#[test]
fn sticky_cookie() {
    assert_eq!(pool(BASE).options.sticky_cookie, None);
    let p = pool(&with("sticky_cookie = \"SRV\"", ""));
    assert_eq!(p.options.sticky_cookie.as_deref(), Some("SRV"));
    let e = errors(&with("sticky_cookie = \"a b\"", ""));
    assert!(e.starts_with("t.toml:6:"), "{e}");
    assert!(e.contains("pool[0].sticky_cookie"), "{e}");
    assert!(e.contains("invalid cookie name"), "{e}");
    assert!(errors(&with("sticky_cookie = \"\"", "")).contains("invalid cookie name"));
}

#[test]
fn passthrough_pools_warn_about_http_only_options() {
    let pt = "[[passthrough]]\nsni = [\"db.test\"]\npool = \"app\"\n";
    let text = |keys: &str| format!("{pt}{}", with(keys, ""));
    let v = check(&text("policy = \"hash\"\nhash_key = \"header:X-User\"")).unwrap();
    assert_eq!(v.warnings.len(), 1, "{:?}", v.warnings);
    let w = v.warnings[0].to_string();
    assert!(w.starts_with("t.toml:10:"), "{w}");
    assert!(
        w.contains("pool[0].hash_key") && w.contains("random server"),
        "{w}"
    );
    let v = check(&text("sticky_cookie = \"SRV\"")).unwrap();
    assert!(v.warnings[0].to_string().contains("pool[0].sticky_cookie"));
    // Hashing the source works for passthrough: no warning.
    let v = check(&text("policy = \"hash\"\nhash_key = \"source\"")).unwrap();
    assert!(v.warnings.is_empty(), "{:?}", v.warnings);
    // Not a passthrough pool: no warning.
    let v = check(&with("sticky_cookie = \"SRV\"", "")).unwrap();
    assert!(v.warnings.is_empty(), "{:?}", v.warnings);
}

/// `expect_status` and `expect_body` apply to HTTPS checks too (the pool's
/// `[pool.tls]`), as HAProxy's `check ssl` with `http-check expect`.
#[test]
fn https_checks_take_the_expectations() {
    let text = with(
        "",
        "[pool.tls]\nverify = false\n[pool.health]\nkind = \"https\"\nexpect_status = [204]\nexpect_body = \"ready\"\n",
    );
    let cfg = pool(&text).health_config();
    let edge_health::Probe::Http(hp) = &cfg.probe else {
        panic!("an HTTP probe: {:?}", cfg.probe);
    };
    assert!(hp.tls.is_some(), "over TLS");
    assert_eq!(hp.expect_status, "204".parse().unwrap());
    assert!(hp.body.is_some(), "the body match");
}
