//! A pool's check settings: its targets, probe, timing, outlier detection
//! and capacity alert.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;

use crate::config::{CapacityConfig, CheckConfig, InitialState, OutlierConfig};
use crate::error::ConfigError;
use crate::probe::{CompiledProbe, Probe};

/// One pool of targets checked the same way.
#[derive(Debug, Clone)]
pub struct PoolConfig {
    /// The pool's name, unique in the checker.
    pub name: String,
    /// The targets.
    pub targets: Vec<SocketAddr>,
    /// What to probe them with. Default TCP connect.
    pub probe: Probe,
    /// Probe timing and thresholds.
    pub check: CheckConfig,
    /// Passive outlier detection.
    pub outlier: OutlierConfig,
    /// Capacity alert.
    pub capacity: CapacityConfig,
    /// Per-target initial states that override `check.initial` (see
    /// [`initial_state`](Self::initial_state)).
    pub initial_states: HashMap<SocketAddr, InitialState>,
    /// Per-target weights for the capacity alert's weight share (see
    /// [`weight`](Self::weight)); a target not listed weighs 1.
    pub weights: HashMap<SocketAddr, u32>,
}

impl PoolConfig {
    /// A pool with default settings and a TCP probe.
    pub fn new(name: impl Into<String>, targets: impl IntoIterator<Item = SocketAddr>) -> Self {
        Self {
            name: name.into(),
            targets: targets.into_iter().collect(),
            probe: Probe::Tcp,
            check: CheckConfig::default(),
            outlier: OutlierConfig::default(),
            capacity: CapacityConfig::default(),
            initial_states: HashMap::new(),
            weights: HashMap::new(),
        }
    }
    /// Sets the probe.
    pub fn probe(mut self, p: Probe) -> Self {
        self.probe = p;
        self
    }
    /// Sets the check timing.
    pub fn check(mut self, c: CheckConfig) -> Self {
        self.check = c;
        self
    }
    /// Sets outlier detection.
    pub fn outlier(mut self, o: OutlierConfig) -> Self {
        self.outlier = o;
        self
    }
    /// Sets the capacity alert.
    pub fn capacity(mut self, c: CapacityConfig) -> Self {
        self.capacity = c;
        self
    }

    /// Starts `target` in `state` instead of `check.initial`: a config
    /// reload hands the state each target had in the previous checker to
    /// the new one, so targets keep their place in or out of rotation.
    pub fn initial_state(mut self, target: SocketAddr, state: InitialState) -> Self {
        self.initial_states.insert(target, state);
        self
    }

    /// Gives `target` a weight (default 1), counted by the capacity alert's
    /// [`min_healthy_weight_percent`](CapacityConfig::min_healthy_weight_percent)
    /// and reported in [`PoolStatus`](crate::PoolStatus).
    pub fn weight(mut self, target: SocketAddr, weight: u32) -> Self {
        self.weights.insert(target, weight);
        self
    }

    /// Validates every part, naming the pool in the error's value.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.compile().map(drop)
    }

    pub(crate) fn compile(&self) -> Result<CompiledProbe, ConfigError> {
        if self.name.is_empty() {
            return Err(ConfigError::Empty { field: "pool.name" });
        }
        self.check.validate()?;
        self.outlier.validate()?;
        self.capacity.validate()?;
        let mut seen = HashSet::new();
        for t in &self.targets {
            if !seen.insert(*t) {
                return Err(ConfigError::DuplicateTarget {
                    pool: self.name.clone(),
                    target: *t,
                });
            }
        }
        self.probe.compile()
    }
}
