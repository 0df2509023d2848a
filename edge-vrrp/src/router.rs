//! The VRRP state machine of one virtual router (RFC 9568 section 6), with
//! no I/O and no clock: time comes in as `now`, packets as bytes, and what to
//! do comes out of [`VirtualRouter::poll_action`].

use std::collections::{HashSet, VecDeque};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

use crate::config::{Config, ConfigError};
use crate::packet::{Addressing, Advertisement, Version};
use crate::stats::{Counters, Discard};

/// IPv4 multicast group of VRRP.
pub const MULTICAST_V4: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 18);
/// IPv6 multicast group of VRRP.
pub const MULTICAST_V6: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0x12);

/// The state of a virtual router.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    /// Not started, or shut down.
    Initialize,
    /// Watching the master; takes over when it goes quiet.
    Backup,
    /// Holding the virtual addresses and advertising.
    Master,
    /// The interface is down or a tracked source failed: neither holds the
    /// addresses nor takes part in elections.
    Fault,
}

impl State {
    /// Lower-case name, as in keepalived's logs and the example's JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Initialize => "init",
            State::Backup => "backup",
            State::Master => "master",
            State::Fault => "fault",
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why the state changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Transition {
    /// Started (or left Fault) as the address owner (priority 255).
    StartupOwner,
    /// Started (or left Fault) as a backup.
    Startup,
    /// Master_Down_Timer fired: no advertisement in Master_Down_Interval.
    MasterDown,
    /// The master sent priority 0 and Skew_Time (or, in a two-node group,
    /// nothing) passed.
    PriorityZero,
    /// A higher priority (or higher-address equal priority) master.
    HigherPriority,
    /// A fault was raised.
    Fault,
    /// Shut down.
    Shutdown,
}

impl Transition {
    /// Short name for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Transition::StartupOwner => "startup-owner",
            Transition::Startup => "startup",
            Transition::MasterDown => "master-down",
            Transition::PriorityZero => "priority-zero",
            Transition::HigherPriority => "higher-priority",
            Transition::Fault => "fault",
            Transition::Shutdown => "shutdown",
        }
    }
}

/// One packet to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// Destination: the multicast group or a unicast peer.
    pub destination: IpAddr,
    /// The encoded VRRP message (the IP payload).
    pub payload: Vec<u8>,
}

/// What the driver must do, pulled with [`VirtualRouter::poll_action`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Action {
    /// Send this advertisement (sent with TTL / hop limit 255).
    Send(Transmit),
    /// Add every virtual address to the interface.
    AddAddresses,
    /// Remove every virtual address from the interface.
    RemoveAddresses,
    /// Announce every virtual address: gratuitous ARP (IPv4) or unsolicited
    /// Neighbor Advertisement (IPv6), `repeat` times each.
    Announce {
        /// How many announcements per address.
        repeat: u32,
    },
    /// The state changed.
    StateChanged {
        /// Previous state.
        from: State,
        /// New state.
        to: State,
        /// Why.
        reason: Transition,
    },
}

/// What the receiver knows about a packet besides its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacketInfo {
    /// IP source address.
    pub source: IpAddr,
    /// IP destination address.
    pub destination: IpAddr,
    /// IPv4 TTL or IPv6 hop limit as received.
    pub hop_limit: u8,
}

/// VRRPv2 Auth Type of a simple text password.
const AUTH_TYPE_PASSWORD: u8 = 1;

/// Which announcement burst comes next while master.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AnnouncePhase {
    Delayed,
    Refresh,
}

/// One VRRP virtual router, sans-IO.
///
/// Feed it [`handle_packet`](Self::handle_packet) and
/// [`handle_timeout`](Self::handle_timeout) (when
/// [`poll_timeout`](Self::poll_timeout) passes), change its priority or fault
/// state, and drain [`poll_action`](Self::poll_action) after each call.
#[derive(Debug)]
pub struct VirtualRouter {
    config: Config,
    /// Our primary address: the IPv4 source of our adverts, or the IPv6
    /// link-local one (or the unicast source).
    primary: IpAddr,
    /// Sorted virtual addresses, for comparing with received lists.
    addresses: Vec<IpAddr>,
    state: State,
    started: bool,
    fault: bool,
    priority_delta: i32,
    master_adver_interval: Duration,
    adver_timer: Option<Instant>,
    master_down_timer: Option<Instant>,
    announce_timer: Option<(Instant, AnnouncePhase)>,
    /// With a virtual MAC and unicast adverts: a second announcement one
    /// advertisement interval after taking over (see `become_master`).
    confirm_timer: Option<Instant>,
    preempt_deadline: Option<Instant>,
    /// The master down timer was shortened by a priority-0 advertisement.
    priority_zero_pending: bool,
    actions: VecDeque<Action>,
    complained: HashSet<(IpAddr, &'static str)>,
    counters: Counters,
}

impl VirtualRouter {
    /// A router in [`State::Initialize`]; call [`start`](Self::start).
    /// `primary` is our address of the virtual addresses' family that
    /// advertisements come from (see [`Config::unicast_source`]).
    pub fn new(config: Config, primary: IpAddr) -> Result<Self, ConfigError> {
        config.validate()?;
        if primary.is_ipv6() != config.is_ipv6() {
            return Err(ConfigError::Invalid {
                field: "unicast_source",
                value: primary.to_string(),
                reason: "primary address not of the virtual addresses' family",
            });
        }
        let mut addresses: Vec<IpAddr> =
            config.virtual_addresses.iter().map(|a| a.address).collect();
        addresses.sort();
        addresses.dedup();
        Ok(VirtualRouter {
            master_adver_interval: config.advert_interval,
            config,
            primary,
            addresses,
            state: State::Initialize,
            started: false,
            fault: false,
            priority_delta: 0,
            adver_timer: None,
            master_down_timer: None,
            announce_timer: None,
            confirm_timer: None,
            preempt_deadline: None,
            priority_zero_pending: false,
            actions: VecDeque::new(),
            complained: HashSet::new(),
            counters: Counters::default(),
        })
    }

    /// Current state.
    pub fn state(&self) -> State {
        self.state
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Counters since creation.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// The priority advertised now: the base priority plus the tracking
    /// adjustments, kept within 1–254. An owner (255) is not adjusted.
    pub fn effective_priority(&self) -> u8 {
        if self.config.priority == 255 {
            return 255;
        }
        let p = i32::from(self.config.priority).saturating_add(self.priority_delta);
        p.clamp(1, 254) as u8
    }

    /// The master's advertisement interval as learnt (v3) or configured.
    pub fn master_adver_interval(&self) -> Duration {
        self.master_adver_interval
    }

    /// Skew_Time: ((256 - Priority) * Master_Adver_Interval) / 256.
    pub fn skew_time(&self) -> Duration {
        self.master_adver_interval * (256 - u32::from(self.effective_priority())) / 256
    }

    /// Master_Down_Interval: 3 * Master_Adver_Interval + Skew_Time.
    pub fn master_down_interval(&self) -> Duration {
        self.master_adver_interval * 3 + self.skew_time()
    }

    /// Startup event.
    pub fn start(&mut self, now: Instant) {
        if self.started {
            return;
        }
        self.started = true;
        if self.fault {
            self.change(State::Fault, Transition::Fault);
        } else {
            self.startup(now);
        }
    }

    fn startup(&mut self, now: Instant) {
        if self.effective_priority() == 255 {
            self.become_master(now, Transition::StartupOwner);
        } else {
            self.master_adver_interval = self.config.advert_interval;
            self.master_down_timer = Some(now + self.master_down_interval());
            self.change(State::Backup, Transition::Startup);
        }
    }

    /// Shutdown event: a master sends priority 0 and removes its
    /// addresses. The router ends in [`State::Initialize`].
    pub fn shutdown(&mut self, _now: Instant) {
        if self.state == State::Master {
            self.send_advertisement(0);
            self.actions.push_back(Action::RemoveAddresses);
        }
        self.clear_timers();
        self.started = false;
        if self.state != State::Initialize {
            self.change(State::Initialize, Transition::Shutdown);
        }
    }

    /// Raises or clears a fault (interface down, tracked check failed).
    /// A master in fault hands over with priority 0 first.
    pub fn set_fault(&mut self, now: Instant, fault: bool) {
        if self.fault == fault {
            return;
        }
        self.fault = fault;
        if !self.started {
            return;
        }
        if fault {
            if self.state == State::Master {
                self.send_advertisement(0);
                self.actions.push_back(Action::RemoveAddresses);
            }
            self.clear_timers();
            self.change(State::Fault, Transition::Fault);
        } else if self.state == State::Fault {
            self.startup(now);
        }
    }

    /// Whether a fault is raised.
    pub fn is_fault(&self) -> bool {
        self.fault
    }

    /// Adds `delta` to the priority adjustment (keepalived's tracking
    /// weights). Returns the new effective priority. A master advertises
    /// the new priority at once so that a preempting backup sees it.
    pub fn adjust_priority(&mut self, now: Instant, delta: i32) -> u8 {
        self.set_priority_adjustment(now, self.priority_delta.saturating_add(delta))
    }

    /// Sets the total priority adjustment. Returns the effective priority.
    pub fn set_priority_adjustment(&mut self, now: Instant, total: i32) -> u8 {
        let before = self.effective_priority();
        self.priority_delta = total;
        let after = self.effective_priority();
        if before != after && self.state == State::Master {
            self.send_advertisement(after);
            self.adver_timer = Some(now + self.config.advert_interval);
        }
        after
    }

    /// The total priority adjustment.
    pub fn priority_adjustment(&self) -> i32 {
        self.priority_delta
    }

    /// The earliest time [`handle_timeout`](Self::handle_timeout) must be
    /// called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        [
            self.adver_timer,
            self.master_down_timer,
            self.announce_timer.map(|(t, _)| t),
            self.confirm_timer,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Next action for the driver.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// Timer event(s) due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        match self.state {
            State::Backup => {
                if self.master_down_timer.is_some_and(|t| t <= now) {
                    let reason = if self.priority_zero_pending {
                        Transition::PriorityZero
                    } else {
                        Transition::MasterDown
                    };
                    self.become_master(now, reason);
                }
            }
            State::Master => {
                if self.adver_timer.is_some_and(|t| t <= now) {
                    self.send_advertisement(self.effective_priority());
                    self.adver_timer = Some(now + self.config.advert_interval);
                }
                if self.confirm_timer.is_some_and(|t| t <= now) {
                    self.confirm_timer = None;
                    self.announce(self.config.garp_repeat);
                }
                if let Some((t, phase)) = self.announce_timer
                    && t <= now
                {
                    match phase {
                        AnnouncePhase::Delayed => {
                            self.announce(self.config.garp_repeat);
                        }
                        AnnouncePhase::Refresh => {
                            self.announce(self.config.garp_refresh_repeat);
                        }
                    }
                    self.announce_timer = self
                        .config
                        .garp_refresh
                        .map(|p| (now + p, AnnouncePhase::Refresh));
                }
            }
            State::Initialize | State::Fault => {}
        }
    }

    /// A received VRRP message. `Err` says why it was discarded (it is
    /// counted, and complaints are logged once per sender and reason).
    pub fn handle_packet(
        &mut self,
        now: Instant,
        info: PacketInfo,
        bytes: &[u8],
    ) -> Result<(), Discard> {
        self.counters.received += 1;
        match self.check(info, bytes) {
            Ok(adv) => {
                self.on_advertisement(now, info.source, &adv);
                Ok(())
            }
            Err(d) => {
                self.counters.count_discard(&d);
                if d.is_complaint() && self.complained.insert((info.source, d.label())) {
                    tracing::warn!(
                        vrid = self.config.vrid,
                        peer = %info.source,
                        reason = %d,
                        "discarding VRRP packets from this peer (logged once per peer and reason)"
                    );
                }
                Err(d)
            }
        }
    }

    fn check(&self, info: PacketInfo, bytes: &[u8]) -> Result<Advertisement, Discard> {
        if !matches!(self.state, State::Backup | State::Master) {
            return Err(Discard::NotRunning);
        }
        if info.source == self.primary {
            return Err(Discard::OwnPacket);
        }
        let unicast = !self.config.unicast_peers.is_empty();
        if unicast && !self.config.unicast_peers.contains(&info.source) {
            // Other groups share the multicast address; in unicast mode a
            // stranger is only interesting if it is for our VRID.
            return match bytes.get(1) {
                Some(&vrid) if vrid != self.config.vrid => Err(Discard::Vrid(vrid)),
                _ => Err(Discard::NotAPeer),
            };
        }
        let addressing = Addressing {
            source: info.source,
            destination: info.destination,
        };
        let adv = Advertisement::decode(bytes, addressing)?;
        if adv.vrid != self.config.vrid {
            return Err(Discard::Vrid(adv.vrid));
        }
        if !unicast && info.hop_limit != 255 {
            return Err(Discard::HopLimit(info.hop_limit));
        }
        if adv.version != self.config.version {
            return Err(Discard::Version(adv.version, self.config.version));
        }
        if adv.version == Version::V2 {
            match self.config.auth_data() {
                None if adv.auth_type != 0 => return Err(Discard::AuthType(adv.auth_type)),
                Some(_) if adv.auth_type != AUTH_TYPE_PASSWORD => {
                    return Err(Discard::AuthType(adv.auth_type));
                }
                Some(ours) if adv.auth_data != ours => return Err(Discard::AuthPassword),
                _ => {}
            }
            let ours = self.config.wire_interval();
            if adv.max_advert_int != ours {
                return Err(Discard::Interval {
                    got: adv.max_advert_int,
                    ours,
                });
            }
        }
        if adv.priority != 255 {
            let mut theirs = adv.addresses.clone();
            theirs.sort();
            theirs.dedup();
            if theirs != self.addresses {
                return Err(Discard::Addresses);
            }
        }
        Ok(adv)
    }

    fn on_advertisement(&mut self, now: Instant, source: IpAddr, adv: &Advertisement) {
        let ours = self.effective_priority();
        match self.state {
            State::Backup => {
                if adv.priority == 0 {
                    self.counters.priority_zero_received += 1;
                    let wait = if self.config.two_node {
                        Duration::ZERO
                    } else {
                        self.skew_time()
                    };
                    self.master_down_timer = Some(now + wait);
                    self.priority_zero_pending = true;
                } else if !self.config.preempt || adv.priority >= ours {
                    self.adopt_interval(adv);
                    self.master_down_timer = Some(now + self.master_down_interval());
                    self.priority_zero_pending = false;
                    if adv.priority > ours || !self.config.preempt {
                        self.preempt_deadline = None;
                    }
                } else if !self.config.preempt_delay.is_zero() {
                    // We outrank this master but wait preempt_delay from
                    // the first time we saw it before taking over.
                    let deadline = *self
                        .preempt_deadline
                        .get_or_insert(now + self.config.preempt_delay);
                    if now < deadline {
                        self.adopt_interval(adv);
                        let down = now + self.master_down_interval();
                        self.master_down_timer = Some(down.min(deadline));
                        self.priority_zero_pending = false;
                    }
                }
                // Otherwise (preempt, lower priority): discard, so the
                // master down timer runs out and we take over.
            }
            State::Master => {
                let higher_address = adv.priority == ours && ip_greater(source, self.primary);
                if adv.priority == 0 {
                    self.counters.priority_zero_received += 1;
                    self.send_advertisement(ours);
                    self.adver_timer = Some(now + self.config.advert_interval);
                } else if adv.priority > ours || higher_address {
                    self.adopt_interval(adv);
                    self.master_down_timer = Some(now + self.master_down_interval());
                    self.priority_zero_pending = false;
                    self.preempt_deadline = None;
                    self.adver_timer = None;
                    self.announce_timer = None;
                    self.confirm_timer = None;
                    self.actions.push_back(Action::RemoveAddresses);
                    self.change(State::Backup, Transition::HigherPriority);
                } else {
                    // A lower-priority router thinks it is master: remind
                    // it at once rather than at our next advertisement.
                    self.send_advertisement(ours);
                    self.adver_timer = Some(now + self.config.advert_interval);
                }
            }
            State::Initialize | State::Fault => {}
        }
    }

    fn adopt_interval(&mut self, adv: &Advertisement) {
        if adv.version == Version::V3 {
            self.master_adver_interval = adv.interval();
        }
    }

    fn become_master(&mut self, now: Instant, reason: Transition) {
        self.master_down_timer = None;
        self.priority_zero_pending = false;
        self.preempt_deadline = None;
        self.send_advertisement(self.effective_priority());
        self.actions.push_back(Action::AddAddresses);
        self.announce(self.config.garp_repeat);
        // A preempted master still holds the addresses on the same virtual
        // MAC until our advertisement reaches it, and the kernel answers
        // our gratuitous ARP request from that MAC: switches then learn
        // the MAC on its port again. Multicast adverts come from the
        // virtual MAC and correct that at once; unicast ones come from
        // the interface's own MAC, so announce again once the old master
        // has heard us (up to `garp_delay` of lost traffic otherwise).
        if self.config.use_vmac && !self.config.unicast_peers.is_empty() {
            self.confirm_timer = Some(now + self.config.advert_interval);
        }
        self.adver_timer = Some(now + self.config.advert_interval);
        self.announce_timer = if !self.config.garp_delay.is_zero() {
            Some((now + self.config.garp_delay, AnnouncePhase::Delayed))
        } else {
            self.config
                .garp_refresh
                .map(|p| (now + p, AnnouncePhase::Refresh))
        };
        self.counters.became_master += 1;
        self.change(State::Master, reason);
    }

    fn announce(&mut self, repeat: u32) {
        if repeat > 0 {
            self.actions.push_back(Action::Announce { repeat });
        }
    }

    fn clear_timers(&mut self) {
        self.adver_timer = None;
        self.master_down_timer = None;
        self.announce_timer = None;
        self.confirm_timer = None;
        self.preempt_deadline = None;
        self.priority_zero_pending = false;
    }

    fn change(&mut self, to: State, reason: Transition) {
        let from = self.state;
        self.state = to;
        tracing::info!(
            vrid = self.config.vrid,
            interface = %self.config.interface,
            from = %from,
            to = %to,
            reason = reason.as_str(),
            priority = self.effective_priority(),
            "VRRP state change"
        );
        self.actions
            .push_back(Action::StateChanged { from, to, reason });
    }

    fn send_advertisement(&mut self, priority: u8) {
        let adv = Advertisement {
            version: self.config.version,
            vrid: self.config.vrid,
            priority,
            max_advert_int: self.config.wire_interval(),
            auth_type: if self.config.auth_data().is_some() {
                AUTH_TYPE_PASSWORD
            } else {
                0
            },
            auth_data: self.config.auth_data().unwrap_or_default(),
            addresses: self
                .config
                .virtual_addresses
                .iter()
                .map(|a| a.address)
                .collect(),
        };
        let destinations: Vec<IpAddr> = if self.config.unicast_peers.is_empty() {
            vec![if self.config.is_ipv6() {
                IpAddr::V6(MULTICAST_V6)
            } else {
                IpAddr::V4(MULTICAST_V4)
            }]
        } else {
            self.config.unicast_peers.clone()
        };
        for destination in destinations {
            let addressing = Addressing {
                source: self.primary,
                destination,
            };
            match adv.encode(addressing, self.config.checksum_mode) {
                Ok(payload) => {
                    self.counters.sent += 1;
                    if priority == 0 {
                        self.counters.priority_zero_sent += 1;
                    }
                    self.actions.push_back(Action::Send(Transmit {
                        destination,
                        payload,
                    }));
                }
                // Unreachable with a validated config; never panic for it.
                Err(e) => tracing::error!(error = %e, "cannot encode advertisement"),
            }
        }
    }
}

/// Unsigned comparison of two addresses in network byte order.
fn ip_greater(a: IpAddr, b: IpAddr) -> bool {
    match (a, b) {
        (IpAddr::V4(a), IpAddr::V4(b)) => a.octets() > b.octets(),
        (IpAddr::V6(a), IpAddr::V6(b)) => a.octets() > b.octets(),
        _ => false,
    }
}
