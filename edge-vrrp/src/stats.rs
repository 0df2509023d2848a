//! Per-instance counters and why a received packet was discarded. The
//! counters live in the instance (no global registry);
//! the caller reads snapshots and exports them however it likes.

use crate::packet::{DecodeError, Version};

/// Counters of one virtual router.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Counters {
    /// Advertisements sent (one per destination).
    pub sent: u64,
    /// Priority-0 advertisements sent.
    pub priority_zero_sent: u64,
    /// VRRP packets received (before any check).
    pub received: u64,
    /// Priority-0 advertisements received and acted on.
    pub priority_zero_received: u64,
    /// Transitions to master.
    pub became_master: u64,
    /// Discarded: not a well-formed advertisement (length, checksum, ...).
    pub discarded_malformed: u64,
    /// Discarded: TTL / hop limit not 255.
    pub discarded_ttl: u64,
    /// Discarded: another VRID.
    pub discarded_vrid: u64,
    /// Discarded: another VRRP version.
    pub discarded_version: u64,
    /// Discarded: VRRPv2 interval mismatch.
    pub discarded_interval: u64,
    /// Discarded: address list differs.
    pub discarded_addresses: u64,
    /// Discarded: v2 authentication type or password not ours.
    pub discarded_auth: u64,
    /// Discarded: unicast sender not a peer.
    pub discarded_peer: u64,
    /// Discarded: our own packet.
    pub discarded_own: u64,
    /// Discarded: received while not running.
    pub discarded_not_running: u64,
}

impl Counters {
    pub(crate) fn count_discard(&mut self, d: &Discard) {
        let slot = match d {
            Discard::Malformed(_) => &mut self.discarded_malformed,
            Discard::HopLimit(_) => &mut self.discarded_ttl,
            Discard::Vrid(_) => &mut self.discarded_vrid,
            Discard::Version(..) => &mut self.discarded_version,
            Discard::Interval { .. } => &mut self.discarded_interval,
            Discard::Addresses => &mut self.discarded_addresses,
            Discard::AuthType(_) | Discard::AuthPassword => &mut self.discarded_auth,
            Discard::NotAPeer => &mut self.discarded_peer,
            Discard::OwnPacket => &mut self.discarded_own,
            Discard::NotRunning => &mut self.discarded_not_running,
        };
        *slot += 1;
    }

    /// Every counter with a stable name (for exporting as metrics).
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, u64)> {
        [
            ("sent", self.sent),
            ("priority_zero_sent", self.priority_zero_sent),
            ("received", self.received),
            ("priority_zero_received", self.priority_zero_received),
            ("became_master", self.became_master),
            ("discarded_malformed", self.discarded_malformed),
            ("discarded_ttl", self.discarded_ttl),
            ("discarded_vrid", self.discarded_vrid),
            ("discarded_version", self.discarded_version),
            ("discarded_interval", self.discarded_interval),
            ("discarded_addresses", self.discarded_addresses),
            ("discarded_auth", self.discarded_auth),
            ("discarded_peer", self.discarded_peer),
            ("discarded_own", self.discarded_own),
            ("discarded_not_running", self.discarded_not_running),
        ]
        .into_iter()
    }
}

/// Why a received packet was discarded (RFC 9568 section 7.1 checks).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Discard {
    /// Not a well-formed advertisement.
    #[error("malformed: {0}")]
    Malformed(#[from] DecodeError),
    /// TTL / hop limit not 255 (multicast mode).
    #[error("TTL/hop limit {0}, expected 255")]
    HopLimit(u8),
    /// A VRID this router does not run.
    #[error("VRID {0} is not ours")]
    Vrid(u8),
    /// A different VRRP version.
    #[error("version {0} advertisement, we run version {1}")]
    Version(Version, Version),
    /// VRRPv2: the advertisement interval differs from ours (RFC 3768 7.1).
    #[error("advertisement interval {got}s differs from our {ours}s")]
    Interval {
        /// Theirs.
        got: u16,
        /// Ours.
        ours: u16,
    },
    /// The address list differs from ours and the sender is not the owner.
    #[error("virtual address list differs from ours")]
    Addresses,
    /// VRRPv2: the auth type differs from ours (0 without a password, 1
    /// with one).
    #[error("auth type {0} differs from ours")]
    AuthType(u8),
    /// VRRPv2: the simple text password differs from ours.
    #[error("wrong authentication password")]
    AuthPassword,
    /// Unicast mode: the sender is not a configured peer.
    #[error("sender is not a configured unicast peer")]
    NotAPeer,
    /// Our own advertisement looped back.
    #[error("our own advertisement")]
    OwnPacket,
    /// Not running (Initialize or Fault).
    #[error("not running")]
    NotRunning,
}

impl Discard {
    /// A stable label for counters and logs.
    pub fn label(&self) -> &'static str {
        match self {
            Discard::Malformed(_) => "malformed",
            Discard::HopLimit(_) => "ttl",
            Discard::Vrid(_) => "vrid",
            Discard::Version(..) => "version",
            Discard::Interval { .. } => "interval",
            Discard::Addresses => "addresses",
            Discard::AuthType(_) | Discard::AuthPassword => "auth",
            Discard::NotAPeer => "peer",
            Discard::OwnPacket => "own",
            Discard::NotRunning => "not-running",
        }
    }

    /// Whether this is worth a warning (a misconfigured or broken peer) as
    /// opposed to normal traffic (other groups, our own packets).
    pub(crate) fn is_complaint(&self) -> bool {
        !matches!(
            self,
            Discard::Vrid(_) | Discard::OwnPacket | Discard::NotRunning
        )
    }
}
