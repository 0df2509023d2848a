//! The serde shapes of the sections added beside `model.rs`:
//! `[resolvers]`, `[[client_auth]]`, `[pool.capacity]` and the
//! expectations of `[pool.health]`. Like `model.rs`, nothing but the file's
//! shape; their checks live in `discovery.rs`, `client_auth.rs` and
//! `pool_options.rs`.

use std::time::Duration;

use edge_balance::discovery::DiscoveryConfig;
use serde::Deserialize;
use toml::Spanned;

use super::duration::ConfigDuration;

/// `[resolvers]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ResolversFile {
    /// `IP` or `IP:PORT` (port 53); empty: `/etc/resolv.conf`.
    pub nameservers: Vec<Spanned<String>>,
    pub timeout: Spanned<ConfigDuration>,
    pub min_ttl: Spanned<ConfigDuration>,
    pub max_ttl: Spanned<ConfigDuration>,
    pub retry: Spanned<ConfigDuration>,
    pub hold: Spanned<ConfigDuration>,
}

impl Default for ResolversFile {
    fn default() -> Self {
        let d = DiscoveryConfig::default();
        let s = |d: Duration| Spanned::new(0..0, ConfigDuration(d));
        Self {
            nameservers: Vec::new(),
            timeout: s(Duration::from_secs(2)),
            min_ttl: s(d.min_ttl),
            max_ttl: s(d.max_ttl),
            retry: s(d.retry),
            hold: s(d.hold),
        }
    }
}

/// `[[client_auth]]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientAuthFile {
    /// SNI names (exact or `*.example.com`) this setting applies to.
    pub hosts: Vec<Spanned<String>>,
    /// `"required"` (default) or `"optional"`.
    pub verify: Option<Spanned<String>>,
    /// PEM file of the CAs a client certificate must chain to.
    pub ca_file: Spanned<String>,
    /// PEM (or DER) certificate revocation list(s) of those CAs.
    pub crl_file: Option<Spanned<String>>,
}

/// One entry of `expect_status`: a code (`200`) or a range (`"200-299"`).
#[derive(Debug, Deserialize, Clone)]
#[serde(untagged)]
pub enum StatusItem {
    Code(i64),
    Range(String),
}

/// `initial_state` of `[pool.health]`.
#[derive(Debug, Deserialize, Clone, Copy, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum InitialStateFile {
    /// In rotation from the start; `fall` failed checks take it out.
    Up,
    /// Out of rotation until its first check, which decides (a pass puts
    /// it in rotation at once). The default.
    #[default]
    Down,
}

/// `[pool.capacity]`: when the pool's capacity alert is raised, and what
/// is called when it is raised or cleared.
#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct Capacity {
    /// Low when fewer servers than this are up; default 1.
    pub min_up: Option<Spanned<i64>>,
    /// Low when fewer than this share of servers (percent) are up; default 50.
    pub min_up_percent: Option<Spanned<i64>>,
    /// Low when the servers up carry less than this share (percent) of the
    /// pool's weight; default 0 (off).
    pub min_weight_percent: Option<Spanned<i64>>,
    /// A program and its arguments, run (no shell) on every change.
    pub command: Option<Spanned<Vec<String>>>,
    /// An `http://` or `https://` URL that gets a JSON POST on every change.
    pub webhook: Option<Spanned<String>>,
    /// How long a hook may run; default 10s.
    pub hook_timeout: Option<Spanned<ConfigDuration>>,
}
