//! The `[[pool]]` options that reach further into the libraries:
//! hashing (`hash_key`, `bounded_load`: edge-balance's Maglev), `slow_start`
//! and `fail_open` (edge-balance's `BalancerConfig`), `[pool.capacity]`
//! (edge-health's `CapacityConfig` and its hooks), and `[pool.health]`'s
//! `fastinter`, `downinter`, `expect_status`, `expect_body` and
//! `initial_state` (edge-health's `CheckConfig` and `HttpProbe`).

use std::time::Duration;

use edge_balance::HashSource;
use edge_health::{AlertHook, CapacityConfig, CheckConfig, HttpProbe, InitialState, StatusSet};
use toml::Spanned;

use super::shapes::{Capacity, InitialStateFile, StatusItem};
use super::{HealthKind, Policy, Validator, model};

/// Shortest `fastinter` / `downinter` (as `interval`'s floor).
const MIN_INTER: Duration = Duration::from_millis(50);
/// Longest `hook_timeout`.
const MAX_HOOK_TIMEOUT: Duration = Duration::from_secs(300);

/// The validated options of a `[[pool]]` beyond servers, timeouts and
/// queueing.
#[derive(Debug, Clone)]
pub struct PoolOptions {
    /// What the hashing policies key on.
    pub hash: HashSource,
    /// Bounded load of the hashing policies.
    pub bounded_load: Option<f64>,
    /// Weight ramp after a server comes back (zero: off).
    pub slow_start: Duration,
    /// With no server up, pick among all of them.
    pub fail_open: bool,
    /// The capacity alert (thresholds and hooks).
    pub capacity: CapacityConfig,
    /// The name of the sticky-session cookie edge sets.
    pub sticky_cookie: Option<String>,
}

impl Default for PoolOptions {
    fn default() -> Self {
        Self {
            hash: HashSource::SourceIp,
            bounded_load: None,
            slow_start: Duration::ZERO,
            fail_open: false,
            capacity: CapacityConfig::default(),
            sticky_cookie: None,
        }
    }
}

/// The validated `[pool.health]` options beyond kind, path, host,
/// interval, timeout, rise and fall.
#[derive(Debug, Clone)]
pub struct HealthOptions {
    pub fastinter: Option<Duration>,
    pub downinter: Option<Duration>,
    pub expect_status: Option<StatusSet>,
    pub expect_body: Option<String>,
    pub initial: InitialState,
}

impl Default for HealthOptions {
    fn default() -> Self {
        Self {
            fastinter: None,
            downinter: None,
            expect_status: None,
            expect_body: None,
            initial: InitialState::DownUntilFirstPass,
        }
    }
}

impl HealthOptions {
    /// `check` with these options' intervals and initial state.
    pub fn apply_check(&self, mut check: CheckConfig) -> CheckConfig {
        check.fastinter = self.fastinter;
        check.downinter = self.downinter;
        check.initial = self.initial;
        check
    }

    /// `probe` with these options' expected status and body.
    pub fn apply_http(&self, mut probe: HttpProbe) -> HttpProbe {
        if let Some(s) = &self.expect_status {
            probe = probe.expect_status(s.clone());
        }
        if let Some(b) = &self.expect_body {
            probe = probe.body_contains(b.clone());
        }
        probe
    }
}

impl Validator<'_> {
    /// The hashing, slow start, fail-open and capacity options of a pool.
    pub(super) fn pool_options(&mut self, p: &model::Pool, key: &str) -> PoolOptions {
        let mut o = PoolOptions::default();
        let hashing = matches!(p.policy, Policy::Maglev | Policy::Hash);
        if let Some(k) = &p.hash_key {
            if !hashing {
                self.err(
                    k,
                    format!("{key}.hash_key"),
                    "hash_key needs policy = \"hash\" or \"maglev\"",
                );
            }
            if let Some(h) = self.hash_source(k, &format!("{key}.hash_key")) {
                o.hash = h;
            }
        }
        if let Some(b) = &p.bounded_load {
            let v = *b.get_ref();
            if !hashing {
                self.err(
                    b,
                    format!("{key}.bounded_load"),
                    "bounded_load needs policy = \"hash\" or \"maglev\"",
                );
            } else if !(v.is_finite() && v > 1.0 && v <= 100.0) {
                self.err(
                    b,
                    format!("{key}.bounded_load"),
                    format!("bounded_load must be above 1.0 and at most 100 (e.g. 1.25), got {v}"),
                );
            } else {
                o.bounded_load = Some(v);
            }
        }
        if let Some(s) = &p.slow_start {
            let d = s.get_ref().0;
            if hashing && !d.is_zero() {
                self.err(
                    s,
                    format!("{key}.slow_start"),
                    "slow_start does not apply to hashing policies (a ramp would move keys twice)",
                );
            } else if d > Duration::from_secs(3600) {
                self.err(s, format!("{key}.slow_start"), "slow_start is at most 1h");
            }
            o.slow_start = d;
        }
        o.fail_open = p.fail_open;
        if let Some(c) = &p.sticky_cookie {
            match cookie_name(c.get_ref()) {
                Ok(name) => o.sticky_cookie = Some(name),
                Err(e) => self.err(c, format!("{key}.sticky_cookie"), e),
            }
        }
        if let Some(c) = &p.capacity {
            o.capacity = self.capacity(c.get_ref(), &format!("{key}.capacity"));
        }
        o
    }

    /// Warnings for pools of `[[passthrough]]` rules with options that
    /// need an HTTP request: a header or cookie `hash_key` (a passthrough
    /// connection gets a random server) and `sticky_cookie` (ignored).
    pub(super) fn passthrough_pool_warnings(
        &self,
        pools: &[model::Pool],
        rules: &[model::Passthrough],
    ) -> Vec<super::ConfigError> {
        let mut out = Vec::new();
        for (i, p) in pools.iter().enumerate() {
            if !rules.iter().any(|r| r.pool.get_ref() == p.name.get_ref()) {
                continue;
            }
            if let Some(k) = p
                .hash_key
                .as_ref()
                .filter(|k| k.get_ref().trim() != "source")
            {
                out.push(self.src.error(
                    k.span(),
                    format!("pool[{i}].hash_key"),
                    "this pool serves [[passthrough]] too, whose connections carry no header or cookie: they get a random server",
                ));
            }
            if let Some(c) = &p.sticky_cookie {
                out.push(self.src.error(
                    c.span(),
                    format!("pool[{i}].sticky_cookie"),
                    "this pool serves [[passthrough]] too, whose connections ignore sticky_cookie",
                ));
            }
        }
        out
    }

    /// `"source"`, `"header:NAME"` or `"cookie:NAME"`.
    fn hash_source(&mut self, s: &Spanned<String>, key: &str) -> Option<HashSource> {
        let v = s.get_ref().trim();
        let parsed = match v.split_once(':') {
            None if v == "source" => Ok(HashSource::SourceIp),
            Some(("header", name)) => http::HeaderName::from_bytes(name.trim().as_bytes())
                .map(HashSource::Header)
                .map_err(|_| format!("invalid header name {:?}", name.trim())),
            Some(("cookie", name)) => cookie_name(name).map(HashSource::Cookie),
            _ => Err(format!(
                "unknown hash_key {v:?} (expected \"source\", \"header:NAME\" or \"cookie:NAME\")"
            )),
        };
        parsed.map_err(|e| self.err(s, key, e)).ok()
    }

    /// `[pool.capacity]`.
    fn capacity(&mut self, c: &Capacity, key: &str) -> CapacityConfig {
        let mut out = CapacityConfig::default();
        if let Some(n) = &c.min_up {
            match usize::try_from(*n.get_ref()) {
                Ok(v) if v <= 10_000 => out.min_healthy = v,
                _ => self.err(n, format!("{key}.min_up"), "min_up must be 0-10000"),
            }
        }
        for (name, field, dst) in [
            (
                "min_up_percent",
                &c.min_up_percent,
                &mut out.min_healthy_percent,
            ),
            (
                "min_weight_percent",
                &c.min_weight_percent,
                &mut out.min_healthy_weight_percent,
            ),
        ] {
            if let Some(n) = field {
                match u8::try_from(*n.get_ref()) {
                    Ok(v) if v <= 100 => *dst = v,
                    _ => self.err(n, format!("{key}.{name}"), format!("{name} must be 0-100")),
                }
            }
        }
        if let Some(cmd) = &c.command {
            match cmd.get_ref().split_first() {
                Some((program, args)) if !program.is_empty() => {
                    out.hooks.push(AlertHook::Command {
                        program: self.path(program),
                        args: args.to_vec(),
                    });
                }
                _ => self.err(
                    cmd,
                    format!("{key}.command"),
                    "command must be [\"program\", \"arg\", ...] with a program",
                ),
            }
        }
        if let Some(w) = &c.webhook {
            let hook = w
                .get_ref()
                .parse::<http::Uri>()
                .ok()
                .map(|url| AlertHook::Webhook { url })
                .filter(|h| h.validate().is_ok());
            match hook {
                Some(h) => out.hooks.push(h),
                None => self.err(
                    w,
                    format!("{key}.webhook"),
                    format!(
                        "webhook must be an absolute http:// or https:// URL, got {:?}",
                        w.get_ref()
                    ),
                ),
            }
        }
        if let Some(t) = &c.hook_timeout {
            let d = t.get_ref().0;
            if d.is_zero() || d > MAX_HOOK_TIMEOUT {
                self.err(
                    t,
                    format!("{key}.hook_timeout"),
                    "hook_timeout must be more than 0s and at most 5m",
                );
            } else {
                out.hook_timeout = d;
            }
        }
        out
    }

    /// `[pool.health]`'s intervals, expectations and initial state.
    pub(super) fn health_options(&mut self, h: &model::Health, key: &str) -> HealthOptions {
        let mut o = HealthOptions::default();
        for (name, field, dst) in [
            ("fastinter", &h.fastinter, &mut o.fastinter),
            ("downinter", &h.downinter, &mut o.downinter),
        ] {
            if let Some(d) = field {
                if d.get_ref().0 < MIN_INTER {
                    self.err(
                        d,
                        format!("{key}.{name}"),
                        format!("{name} must be at least 50ms"),
                    );
                }
                *dst = Some(d.get_ref().0.max(MIN_INTER));
            }
        }
        let not_http = |what: &str| format!("{what} needs kind = \"http\" or \"https\"");
        let http = matches!(h.kind, HealthKind::Http | HealthKind::Https);
        if let Some(list) = &h.expect_status {
            if !http {
                self.err(
                    list,
                    format!("{key}.expect_status"),
                    not_http("expect_status"),
                );
            }
            let text: Vec<String> = list
                .get_ref()
                .iter()
                .map(|i| match i {
                    StatusItem::Code(c) => c.to_string(),
                    StatusItem::Range(r) => r.trim().to_owned(),
                })
                .collect();
            match text.join(",").parse::<StatusSet>() {
                Ok(s) => o.expect_status = Some(s),
                Err(e) => self.err(
                    list,
                    format!("{key}.expect_status"),
                    format!("{e} (expected codes and ranges, e.g. [\"200-299\", 301])"),
                ),
            }
        }
        if let Some(b) = &h.expect_body {
            if !http {
                self.err(b, format!("{key}.expect_body"), not_http("expect_body"));
            } else if b.get_ref().is_empty() {
                self.err(
                    b,
                    format!("{key}.expect_body"),
                    "expect_body must not be empty",
                );
            }
            o.expect_body = Some(b.get_ref().clone()).filter(|b| !b.is_empty());
        }
        o.initial = match h.initial_state {
            InitialStateFile::Up => InitialState::AssumedUp,
            InitialStateFile::Down => InitialState::DownUntilFirstPass,
        };
        o
    }
}

/// A cookie name (an RFC 6265 token), trimmed.
fn cookie_name(name: &str) -> Result<String, String> {
    let name = name.trim();
    let token = |c: char| c.is_ascii_graphic() && !"()<>@,;:\\\"/[]?={}".contains(c);
    if !name.is_empty() && name.chars().all(token) {
        Ok(name.to_owned())
    } else {
        Err(format!("invalid cookie name {name:?}"))
    }
}
