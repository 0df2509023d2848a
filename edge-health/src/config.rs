//! Typed configuration with documented defaults.
//!
//! Library configuration only: the file format belongs to `edge-bin`. Every
//! struct has a [`Default`] and a `validate` method returning
//! [`ConfigError`] naming the field that is wrong.

use std::path::PathBuf;
use std::time::Duration;

use crate::error::ConfigError;

/// Whether a target is in rotation before its first probe has completed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum InitialState {
    /// Not in rotation until the first probe passes; the first pass puts it
    /// in rotation at once (HAProxy `init-state down`). The default.
    #[default]
    DownUntilFirstPass,
    /// In rotation from the start; it takes `fall` failed probes to take it
    /// out (HAProxy `init-state fully-up`).
    AssumedUp,
    /// Out of rotation and fully down: it takes `rise` passing probes to
    /// bring it in (HAProxy `init-state fully-down`). For a target known to
    /// be down, e.g. carried over from a previous checker on a config reload.
    AssumedDown,
}

/// The active check timing of one pool: HAProxy's `inter`, `fastinter`,
/// `downinter`, `rise`, `fall` and `timeout check`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckConfig {
    /// Interval between probes while the target is stable. Default 2 s.
    pub inter: Duration,
    /// Interval while the target is changing state (up with failures, or
    /// down with passes) and before the first result. Default: `inter`.
    pub fastinter: Option<Duration>,
    /// Interval while the target is fully down. Default: `inter`.
    pub downinter: Option<Duration>,
    /// Consecutive passes that bring a down target back. Default 2.
    pub rise: u32,
    /// Consecutive failures that take an up target out. Default 3.
    pub fall: u32,
    /// Time allowed for one probe (connect, handshake, request and body).
    /// Default 1 s.
    pub timeout: Duration,
    /// State before the first result. Default [`InitialState::DownUntilFirstPass`].
    pub initial: InitialState,
}

impl Default for CheckConfig {
    fn default() -> Self {
        Self {
            inter: Duration::from_secs(2),
            fastinter: None,
            downinter: None,
            rise: 2,
            fall: 3,
            timeout: Duration::from_secs(1),
            initial: InitialState::DownUntilFirstPass,
        }
    }
}

impl CheckConfig {
    /// Sets `inter`.
    pub fn inter(mut self, d: Duration) -> Self {
        self.inter = d;
        self
    }
    /// Sets `fastinter`.
    pub fn fastinter(mut self, d: Duration) -> Self {
        self.fastinter = Some(d);
        self
    }
    /// Sets `downinter`.
    pub fn downinter(mut self, d: Duration) -> Self {
        self.downinter = Some(d);
        self
    }
    /// Sets `rise`.
    pub fn rise(mut self, n: u32) -> Self {
        self.rise = n;
        self
    }
    /// Sets `fall`.
    pub fn fall(mut self, n: u32) -> Self {
        self.fall = n;
        self
    }
    /// Sets the per-probe timeout.
    pub fn timeout(mut self, d: Duration) -> Self {
        self.timeout = d;
        self
    }
    /// Sets the initial state.
    pub fn initial(mut self, s: InitialState) -> Self {
        self.initial = s;
        self
    }

    /// The interval used while changing state.
    pub fn effective_fastinter(&self) -> Duration {
        self.fastinter.unwrap_or(self.inter)
    }

    /// The interval used while fully down.
    pub fn effective_downinter(&self) -> Duration {
        self.downinter.unwrap_or(self.inter)
    }

    /// Refuses zero intervals, zero thresholds and a zero timeout.
    pub fn validate(&self) -> Result<(), ConfigError> {
        nonzero("check.inter", self.inter)?;
        if let Some(d) = self.fastinter {
            nonzero("check.fastinter", d)?;
        }
        if let Some(d) = self.downinter {
            nonzero("check.downinter", d)?;
        }
        nonzero("check.timeout", self.timeout)?;
        if self.rise == 0 {
            return Err(ConfigError::ZeroCount {
                field: "check.rise",
            });
        }
        if self.fall == 0 {
            return Err(ConfigError::ZeroCount {
                field: "check.fall",
            });
        }
        // rise + fall - 1 is the health counter's ceiling: keep it sane.
        for (field, v) in [("check.rise", self.rise), ("check.fall", self.fall)] {
            if v > 1000 {
                return Err(ConfigError::OutOfRange {
                    field,
                    value: u64::from(v),
                    min: 1,
                    max: 1000,
                });
            }
        }
        Ok(())
    }
}

/// Passive outlier detection from live traffic (Envoy's consecutive-5xx
/// detector).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutlierConfig {
    /// Whether live traffic can eject targets. Default true.
    pub enabled: bool,
    /// Consecutive failures (connect failure, 5xx, timeout) that eject a
    /// target. Default 5.
    pub consecutive_failures: u32,
    /// Ejection time for the first ejection; the n-th ejection in a row
    /// lasts n times this. Default 30 s.
    pub base_ejection_time: Duration,
    /// Ceiling of the growing ejection time. Default 300 s.
    pub max_ejection_time: Duration,
    /// Largest share of a pool that may be ejected at once, in percent.
    /// At least one target can always be ejected. Default 10.
    pub max_ejection_percent: u8,
}

impl Default for OutlierConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            consecutive_failures: 5,
            base_ejection_time: Duration::from_secs(30),
            max_ejection_time: Duration::from_secs(300),
            max_ejection_percent: 10,
        }
    }
}

impl OutlierConfig {
    /// Refuses a zero threshold, zero times and a share above 100 %.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.consecutive_failures == 0 {
            return Err(ConfigError::ZeroCount {
                field: "outlier.consecutive_failures",
            });
        }
        nonzero("outlier.base_ejection_time", self.base_ejection_time)?;
        nonzero("outlier.max_ejection_time", self.max_ejection_time)?;
        if self.max_ejection_time < self.base_ejection_time {
            return Err(ConfigError::Invalid {
                field: "outlier.max_ejection_time",
                value: format!("{:?}", self.max_ejection_time),
                reason: format!(
                    "must not be below outlier.base_ejection_time ({:?})",
                    self.base_ejection_time
                ),
            });
        }
        if self.max_ejection_percent > 100 {
            return Err(ConfigError::OutOfRange {
                field: "outlier.max_ejection_percent",
                value: u64::from(self.max_ejection_percent),
                min: 0,
                max: 100,
            });
        }
        Ok(())
    }
}

/// What to call when a pool's capacity runs low or recovers.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AlertHook {
    /// Run a program (no shell). It gets `EDGE_HEALTH_POOL`,
    /// `EDGE_HEALTH_STATE` (`low` or `recovered`), `EDGE_HEALTH_HEALTHY`,
    /// `EDGE_HEALTH_TOTAL`, `EDGE_HEALTH_HEALTHY_WEIGHT` and
    /// `EDGE_HEALTH_TOTAL_WEIGHT` in its environment, and is killed after
    /// [`CapacityConfig::hook_timeout`].
    Command {
        /// Program path.
        program: PathBuf,
        /// Arguments.
        args: Vec<String>,
    },
    /// POST a JSON object
    /// `{"pool","state","healthy","total","healthy_weight","total_weight"}`
    /// to an `http://` or `https://` URL (certificate verified against the
    /// webpki roots). Given up after [`CapacityConfig::hook_timeout`].
    Webhook {
        /// The URL.
        url: http::Uri,
    },
}

/// When a pool counts as low on capacity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CapacityConfig {
    /// Low when fewer than this many targets are healthy. Default 1.
    pub min_healthy: usize,
    /// Low when fewer than this share of targets, in percent, are healthy.
    /// Default 50.
    pub min_healthy_percent: u8,
    /// Low when the healthy targets carry less than this share of the
    /// pool's total weight, in percent (weights from
    /// [`PoolConfig::weight`](crate::PoolConfig::weight), 1 when unset).
    /// Default 0 (off).
    pub min_healthy_weight_percent: u8,
    /// Called on every low and recovered event, each on its own (one
    /// failing or slow hook does not hold up another). Default none.
    pub hooks: Vec<AlertHook>,
    /// How long a hook may run before it is killed or given up. Default 10 s.
    pub hook_timeout: Duration,
}

impl Default for CapacityConfig {
    fn default() -> Self {
        Self {
            min_healthy: 1,
            min_healthy_percent: 50,
            min_healthy_weight_percent: 0,
            hooks: Vec::new(),
            hook_timeout: Duration::from_secs(10),
        }
    }
}

impl CapacityConfig {
    /// Refuses a share above 100 %, a zero hook timeout and malformed hooks.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (field, v) in [
            ("capacity.min_healthy_percent", self.min_healthy_percent),
            (
                "capacity.min_healthy_weight_percent",
                self.min_healthy_weight_percent,
            ),
        ] {
            if v > 100 {
                return Err(ConfigError::OutOfRange {
                    field,
                    value: u64::from(v),
                    min: 0,
                    max: 100,
                });
            }
        }
        nonzero("capacity.hook_timeout", self.hook_timeout)?;
        self.hooks.iter().try_for_each(AlertHook::validate)
    }
}

impl AlertHook {
    /// Refuses an empty program and a URL that is not absolute http(s).
    pub fn validate(&self) -> Result<(), ConfigError> {
        match self {
            AlertHook::Command { program, .. } if program.as_os_str().is_empty() => {
                Err(ConfigError::Empty {
                    field: "capacity.hook.program",
                })
            }
            AlertHook::Webhook { url } => {
                let ok_scheme = matches!(url.scheme_str(), Some("http") | Some("https"));
                if !ok_scheme || url.host().is_none() {
                    return Err(ConfigError::Invalid {
                        field: "capacity.hook.url",
                        value: url.to_string(),
                        reason: "must be an absolute http:// or https:// URL".into(),
                    });
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

/// How the [`HealthChecker`](crate::HealthChecker) schedules probes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchedulerConfig {
    /// Most probes in flight at once, all pools together. Default 256.
    pub max_concurrent_probes: usize,
    /// Each interval is stretched or shrunk at random by up to this share,
    /// in percent, so targets never probe in lockstep. The first probe of
    /// every target starts at once (so the first round ends within about
    /// one probe timeout) and the second is spread over the interval after
    /// it. Default 10.
    pub jitter_percent: u8,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        Self {
            max_concurrent_probes: 256,
            jitter_percent: 10,
        }
    }
}

impl SchedulerConfig {
    /// Refuses zero concurrency and jitter above 50 %.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.max_concurrent_probes == 0 {
            return Err(ConfigError::ZeroCount {
                field: "scheduler.max_concurrent_probes",
            });
        }
        if self.jitter_percent > 50 {
            return Err(ConfigError::OutOfRange {
                field: "scheduler.jitter_percent",
                value: u64::from(self.jitter_percent),
                min: 0,
                max: 50,
            });
        }
        Ok(())
    }
}

fn nonzero(field: &'static str, value: Duration) -> Result<(), ConfigError> {
    if value.is_zero() {
        Err(ConfigError::ZeroDuration { field, value })
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_haproxy_and_envoy_defaults() {
        let c = CheckConfig::default();
        assert_eq!((c.inter, c.rise, c.fall), (Duration::from_secs(2), 2, 3));
        assert_eq!(c.initial, InitialState::DownUntilFirstPass);
        assert!(c.validate().is_ok());
        let o = OutlierConfig::default();
        assert_eq!((o.consecutive_failures, o.max_ejection_percent), (5, 10));
        assert!(o.validate().is_ok());
    }

    #[test]
    fn zero_values_are_refused_naming_the_field() {
        let e = CheckConfig::default().inter(Duration::ZERO).validate();
        assert_eq!(
            e.unwrap_err().to_string(),
            "check.inter must be greater than zero (got 0ns)"
        );
        let e = CheckConfig::default().rise(0).validate().unwrap_err();
        assert_eq!(e.to_string(), "check.rise must be at least 1 (got 0)");
        let e = CheckConfig::default().fall(0).validate().unwrap_err();
        assert!(e.to_string().contains("check.fall"));
        let e = CheckConfig::default()
            .fastinter(Duration::ZERO)
            .validate()
            .unwrap_err();
        assert!(e.to_string().contains("check.fastinter"));
        let e = CheckConfig::default()
            .timeout(Duration::ZERO)
            .validate()
            .unwrap_err();
        assert!(e.to_string().contains("check.timeout"));
        let o = OutlierConfig {
            max_ejection_percent: 101,
            ..Default::default()
        };
        assert!(o.validate().unwrap_err().to_string().contains("101"));
        let s = SchedulerConfig {
            max_concurrent_probes: 0,
            ..Default::default()
        };
        assert!(
            s.validate()
                .unwrap_err()
                .to_string()
                .contains("max_concurrent_probes")
        );
    }

    #[test]
    fn capacity_weight_share_and_hook_timeout_are_checked() {
        let c = CapacityConfig {
            min_healthy_weight_percent: 101,
            ..Default::default()
        };
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("capacity.min_healthy_weight_percent"), "{e}");
        let c = CapacityConfig {
            hook_timeout: Duration::ZERO,
            ..Default::default()
        };
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("capacity.hook_timeout"), "{e}");
        assert!(CapacityConfig::default().validate().is_ok());
    }

    #[test]
    fn webhook_needs_http_url() {
        let c = CapacityConfig {
            hooks: vec![AlertHook::Webhook {
                url: "ftp://x/".parse().unwrap(),
            }],
            ..Default::default()
        };
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("capacity.hook.url")
        );
    }
}
