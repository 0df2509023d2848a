//! Point-in-time copies of the process-wide counters that the status page
//! (`/status.json`) shows beside the running config: VRRP instances and
//! access-log sinks.

use std::sync::PoisonError;

use super::{Metrics, VRRP_STATES};

/// One VRRP instance as last reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VrrpSnapshot {
    pub vrid: u8,
    pub interface: String,
    /// `initialize`, `backup`, `master` or `fault`.
    pub state: &'static str,
    pub transitions: u64,
}

/// One access-log sink's counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinkSnapshot {
    pub name: String,
    pub written: u64,
    pub dropped_queue_full: u64,
    pub dropped_oversize: u64,
    pub dropped_error: u64,
}

impl Metrics {
    /// Every VRRP instance that reported a state, by vrid and interface.
    pub fn vrrp_snapshot(&self) -> Vec<VrrpSnapshot> {
        let map = self.vrrp.lock().unwrap_or_else(PoisonError::into_inner);
        map.iter()
            .map(|((vrid, interface), s)| VrrpSnapshot {
                vrid: *vrid,
                interface: interface.clone(),
                state: VRRP_STATES.get(s.state).copied().unwrap_or("initialize"),
                transitions: s.transitions,
            })
            .collect()
    }

    /// Every access-log sink started since the process began, by name.
    pub fn sink_snapshot(&self) -> Vec<SinkSnapshot> {
        let map = self.sinks.lock().unwrap_or_else(PoisonError::into_inner);
        map.iter()
            .map(|(name, s)| SinkSnapshot {
                name: name.clone(),
                written: s.written.get(),
                dropped_queue_full: s.dropped_queue_full.get(),
                dropped_oversize: s.dropped_oversize.get(),
                dropped_error: s.dropped_error.get(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshots_copy_the_counters() {
        let m = Metrics::new();
        m.vrrp_state(7, "eth0", edge_vrrp::State::Backup, false);
        m.vrrp_state(7, "eth0", edge_vrrp::State::Master, true);
        m.sink("udp").dropped_error.inc_by(2);
        m.sink("udp").written.inc_by(5);
        assert_eq!(
            m.vrrp_snapshot(),
            [VrrpSnapshot {
                vrid: 7,
                interface: "eth0".into(),
                state: "master",
                transitions: 1
            }]
        );
        let s = m.sink_snapshot();
        assert_eq!(
            (s[0].name.as_str(), s[0].written, s[0].dropped_error),
            ("udp", 5, 2)
        );
    }
}
