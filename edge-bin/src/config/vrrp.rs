//! `[[vrrp]]`: the VRRP instances that hold the VIPs, checked here and by
//! edge-vrrp's own `Config::validate`, plus the pools whose health they track.

use std::collections::HashSet;

use super::{Validator, model};

/// `[[vrrp]]`, validated: the edge-vrrp config plus health tracking.
#[derive(Debug, Clone)]
pub struct VrrpSettings {
    pub config: edge_vrrp::Config,
    /// The configured priority (also in `config`), applied in place on reload.
    pub priority: u8,
    /// Pools whose health is tracked (all pools when the key is absent).
    pub track_pools: Vec<String>,
    /// A tracked pool below this share of healthy servers lowers the priority.
    pub min_healthy_share: f64,
    /// How much the priority drops while a tracked pool is below the share.
    pub weight: u8,
    /// Longest the instance is held out of elections at start while the
    /// first health check round runs (`startup_hold`).
    pub startup_hold: std::time::Duration,
}

/// `startup_hold`'s default: enough for a first round of probes with the
/// default 1 s timeout, short enough that a node with unreachable servers
/// still joins the pair soon.
pub const DEFAULT_STARTUP_HOLD: std::time::Duration = std::time::Duration::from_secs(5);

impl Validator<'_> {
    pub(super) fn vrrp(
        &mut self,
        list: &[model::Vrrp],
        pools: &HashSet<String>,
    ) -> Vec<VrrpSettings> {
        let mut out = Vec::new();
        let mut seen = HashSet::new();
        for (i, r) in list.iter().enumerate() {
            let key = format!("vrrp[{i}]");
            let errors_before = self.errors.len();
            let mut c = edge_vrrp::Config::default();
            c.interface(r.interface.get_ref().clone());
            let vrid = match u8::try_from(*r.vrid.get_ref()) {
                Ok(v) if v >= 1 => v,
                _ => {
                    self.err(&r.vrid, format!("{key}.vrid"), "vrid must be 1-255");
                    1
                }
            };
            c.vrid(vrid);
            let priority = match u8::try_from(*r.priority.get_ref()) {
                Ok(p) if (1..=254).contains(&p) => p,
                _ => {
                    self.err(
                        &r.priority,
                        format!("{key}.priority"),
                        "priority must be 1-254 (255 is reserved for an address owner)",
                    );
                    100
                }
            };
            c.priority(priority);
            match r.version.as_ref().map(|v| *v.get_ref()) {
                None | Some(3) => {
                    c.version(edge_vrrp::Version::V3);
                }
                Some(2) => {
                    c.version(edge_vrrp::Version::V2);
                }
                Some(_) => {
                    if let Some(v) = &r.version {
                        self.err(v, format!("{key}.version"), "version must be 2 or 3");
                    }
                }
            }
            if let Some(d) = &r.advert_interval {
                c.advert_interval(d.get_ref().0);
            }
            for (j, a) in r.vips.get_ref().iter().enumerate() {
                match a.get_ref().parse::<edge_vrrp::VirtualAddress>() {
                    Ok(v) => {
                        c.virtual_address(v);
                    }
                    Err(e) => self.err(a, format!("{key}.vips[{j}]"), e.to_string()),
                }
            }
            c.preempt(!r.nopreempt);
            self.vrrp_timing(r, &key, &mut c);
            if let Some(s) = &r.unicast_src {
                match s.get_ref().parse() {
                    Ok(ip) => {
                        c.unicast_source(ip);
                    }
                    Err(_) => self.err(s, format!("{key}.unicast_src"), "not an IP address"),
                }
            }
            for (j, s) in r.unicast_peers.iter().enumerate() {
                match s.get_ref().parse() {
                    Ok(ip) => {
                        c.unicast_peer(ip);
                    }
                    Err(_) => self.err(s, format!("{key}.unicast_peers[{j}]"), "not an IP address"),
                }
            }
            c.two_node(r.two_node);
            c.use_vmac(r.use_vmac);
            if let Some(name) = &r.vmac_interface {
                c.vmac_interface(name.get_ref().clone());
            }
            if let Some(p) = &r.auth_password {
                c.auth_password(p.get_ref().clone());
            }
            let track_pools = match &r.track_pools {
                None => {
                    let mut all: Vec<String> = pools.iter().cloned().collect();
                    all.sort();
                    all
                }
                Some(list) => {
                    for (j, p) in list.iter().enumerate() {
                        if !pools.contains(p.get_ref()) {
                            self.err(
                                p,
                                format!("{key}.track_pools[{j}]"),
                                format!("no [[pool]] named {:?}", p.get_ref()),
                            );
                        }
                    }
                    list.iter().map(|p| p.get_ref().clone()).collect()
                }
            };
            let min_healthy_share = match &r.min_healthy_share {
                None => 0.5,
                Some(s) if (0.0..=1.0).contains(s.get_ref()) => *s.get_ref(),
                Some(s) => {
                    self.err(
                        s,
                        format!("{key}.min_healthy_share"),
                        "min_healthy_share must be 0.0-1.0",
                    );
                    0.5
                }
            };
            let weight = match &r.weight {
                None => priority.saturating_sub(1),
                Some(w) => match u8::try_from(*w.get_ref()) {
                    Ok(w) if w <= 253 => w,
                    _ => {
                        self.err(w, format!("{key}.weight"), "weight must be 0-253");
                        0
                    }
                },
            };
            if !seen.insert((r.interface.get_ref().clone(), vrid)) {
                self.err(
                    &r.vrid,
                    format!("{key}.vrid"),
                    format!(
                        "vrid {vrid} is already used on interface {:?}",
                        r.interface.get_ref()
                    ),
                );
            }
            // edge-vrrp's own checks, reported only when ours passed (so one
            // mistake gives one error), under the key the file uses.
            if self.errors.len() == errors_before
                && let Err(e) = c.validate()
            {
                let (field, span) = file_key(r, e.field());
                self.errors.push(
                    self.src
                        .error(span, format!("{key}.{field}"), e.to_string()),
                );
            }
            let startup_hold = match &r.startup_hold {
                None => DEFAULT_STARTUP_HOLD,
                Some(d) => {
                    if d.get_ref().0 > MAX_VRRP_DELAY {
                        self.err(
                            d,
                            format!("{key}.startup_hold"),
                            "startup_hold is at most 1h",
                        );
                    }
                    d.get_ref().0.min(MAX_VRRP_DELAY)
                }
            };
            out.push(VrrpSettings {
                config: c,
                priority,
                track_pools,
                min_healthy_share,
                weight,
                startup_hold,
            });
        }
        out
    }
}

/// Longest `preempt_delay`, `garp_master_delay` and `garp_master_refresh`.
const MAX_VRRP_DELAY: std::time::Duration = std::time::Duration::from_secs(3600);

impl Validator<'_> {
    /// `preempt_delay` and the gratuitous ARP / unsolicited NA settings.
    fn vrrp_timing(&mut self, r: &model::Vrrp, key: &str, c: &mut edge_vrrp::Config) {
        let delay = |v: &mut Self, s: &toml::Spanned<super::ConfigDuration>, name: &str| {
            let d = s.get_ref().0;
            if d > MAX_VRRP_DELAY {
                v.err(s, format!("{key}.{name}"), format!("{name} is at most 1h"));
            }
            d.min(MAX_VRRP_DELAY)
        };
        let count = |v: &mut Self, s: &toml::Spanned<i64>, name: &str, min: i64| match u32::try_from(
            *s.get_ref(),
        ) {
            Ok(n) if i64::from(n) >= min && n <= 100 => n,
            _ => {
                v.err(
                    s,
                    format!("{key}.{name}"),
                    format!("{name} must be {min}-100"),
                );
                1
            }
        };
        if let Some(s) = &r.preempt_delay {
            if r.nopreempt && !s.get_ref().0.is_zero() {
                self.err(
                    s,
                    format!("{key}.preempt_delay"),
                    "preempt_delay has no effect with nopreempt = true",
                );
            }
            c.preempt_delay(delay(self, s, "preempt_delay"));
        }
        if let Some(s) = &r.garp_master_delay {
            c.garp_delay(delay(self, s, "garp_master_delay"));
        }
        if let Some(s) = &r.garp_master_repeat {
            c.garp_repeat(count(self, s, "garp_master_repeat", 1));
        }
        if let Some(s) = &r.garp_master_refresh {
            if s.get_ref().0.is_zero() {
                self.err(
                    s,
                    format!("{key}.garp_master_refresh"),
                    "garp_master_refresh must be more than 0s (leave it out for none)",
                );
            } else {
                c.garp_refresh(Some(delay(self, s, "garp_master_refresh")));
            }
        }
        if let Some(s) = &r.garp_master_refresh_repeat {
            if r.garp_master_refresh.is_none() {
                self.err(
                    s,
                    format!("{key}.garp_master_refresh_repeat"),
                    "garp_master_refresh_repeat needs garp_master_refresh",
                );
            }
            c.garp_refresh_repeat(count(self, s, "garp_master_refresh_repeat", 1));
        }
    }
}

/// The key in the file, and its place, of a field edge-vrrp's own
/// `Config::validate` names.
fn file_key<'a>(r: &model::Vrrp, field: &'a str) -> (&'a str, std::ops::Range<usize>) {
    match field {
        "interface" => ("interface", r.interface.span()),
        "vrid" => ("vrid", r.vrid.span()),
        "priority" => ("priority", r.priority.span()),
        "version" => (
            "version",
            r.version.as_ref().map_or(r.vips.span(), |v| v.span()),
        ),
        "advert_interval" => (
            "advert_interval",
            r.advert_interval
                .as_ref()
                .map_or(r.interface.span(), |v| v.span()),
        ),
        "unicast_source" => (
            "unicast_src",
            r.unicast_src
                .as_ref()
                .map_or(r.interface.span(), |v| v.span()),
        ),
        "unicast_peers" => ("unicast_peers", r.interface.span()),
        "two_node" => ("two_node", r.interface.span()),
        "virtual_addresses" => ("vips", r.vips.span()),
        "vmac_interface" => (
            "vmac_interface",
            r.vmac_interface
                .as_ref()
                .map_or(r.interface.span(), |v| v.span()),
        ),
        "auth_password" => (
            "auth_password",
            r.auth_password
                .as_ref()
                .map_or(r.interface.span(), |v| v.span()),
        ),
        other => (other, r.interface.span()),
    }
}
