//! RFC 9568 scenarios with several routers on one simulated LAN, in
//! virtual time (no sockets, no sleeping): the harness delivers each
//! router's advertisements to the others after a fixed latency and steps
//! the clock to the next timeout, as quinn's `Pair` does.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use edge_vrrp::{Action, Config, PacketInfo, State, Transition, Version, VirtualRouter};

const LATENCY: Duration = Duration::from_millis(1);
const VIP: &str = "198.18.0.100/24";

fn config(priority: u8) -> Config {
    let mut c = Config::default();
    c.interface("eth0")
        .vrid(51)
        .priority(priority)
        .virtual_address(VIP.parse().unwrap());
    c
}

fn ip(n: u8) -> IpAddr {
    IpAddr::from([198, 18, 0, n])
}

struct Node {
    router: VirtualRouter,
    ip: IpAddr,
    alive: bool,
    holds_vip: bool,
    announces: Vec<(Duration, u32)>,
    changes: Vec<(Duration, State, Transition)>,
    sent_priorities: Vec<(Duration, u8)>,
}

struct Lan {
    nodes: Vec<Node>,
    start: Instant,
    now: Instant,
    in_flight: Vec<(Instant, usize, IpAddr, Vec<u8>)>,
    hop_limit: u8,
    /// Links cut: packets between these node pairs are lost.
    cut: Vec<(usize, usize)>,
}

impl Lan {
    fn new(nodes: Vec<(Config, u8)>) -> Lan {
        let start = Instant::now();
        let nodes = nodes
            .into_iter()
            .map(|(c, n)| Node {
                router: VirtualRouter::new(c, ip(n)).unwrap(),
                ip: ip(n),
                alive: false,
                holds_vip: false,
                announces: vec![],
                changes: vec![],
                sent_priorities: vec![],
            })
            .collect();
        Lan {
            nodes,
            start,
            now: start,
            in_flight: vec![],
            hop_limit: 255,
            cut: vec![],
        }
    }

    fn t(&self) -> Duration {
        self.now - self.start
    }

    fn start(&mut self, i: usize) {
        self.nodes[i].alive = true;
        let now = self.now;
        self.nodes[i].router.start(now);
        self.drain(i);
    }

    fn start_all(&mut self) {
        for i in 0..self.nodes.len() {
            self.start(i);
        }
    }

    /// The node dies: it sends nothing more (its addresses die with it).
    fn crash(&mut self, i: usize) {
        self.nodes[i].alive = false;
        self.nodes[i].holds_vip = false;
    }

    fn shutdown(&mut self, i: usize) {
        let now = self.now;
        self.nodes[i].router.shutdown(now);
        self.drain(i);
        self.nodes[i].alive = false;
    }

    fn drain(&mut self, i: usize) {
        let t = self.t();
        let deliver = self.now + LATENCY;
        while let Some(a) = self.nodes[i].router.poll_action() {
            let node = &mut self.nodes[i];
            match a {
                Action::Send(tx) => {
                    node.sent_priorities.push((t, tx.payload[2]));
                    self.in_flight
                        .push((deliver, i, tx.destination, tx.payload));
                }
                Action::AddAddresses => node.holds_vip = true,
                Action::RemoveAddresses => node.holds_vip = false,
                Action::Announce { repeat } => node.announces.push((t, repeat)),
                Action::StateChanged { to, reason, .. } => node.changes.push((t, to, reason)),
                _ => {}
            }
        }
    }

    /// Runs until `until` (time since start), processing events in order.
    fn run_until(&mut self, until: Duration) {
        let end = self.start + until;
        loop {
            let next_packet = self.in_flight.iter().map(|p| p.0).min();
            let next_timer = self
                .nodes
                .iter()
                .filter(|n| n.alive)
                .filter_map(|n| n.router.poll_timeout())
                .min();
            let Some(next) = [next_packet, next_timer].into_iter().flatten().min() else {
                self.now = end;
                return;
            };
            if next > end {
                self.now = end;
                return;
            }
            self.now = self.now.max(next);
            let now = self.now;
            let (due, later): (Vec<_>, Vec<_>) = self.in_flight.drain(..).partition(|p| p.0 <= now);
            self.in_flight = later;
            for (_, from, dst, payload) in due {
                for to in 0..self.nodes.len() {
                    if to == from
                        || !self.nodes[to].alive
                        || self.cut.contains(&(from.min(to), from.max(to)))
                    {
                        continue;
                    }
                    if !dst.is_multicast() && dst != self.nodes[to].ip {
                        continue;
                    }
                    let info = PacketInfo {
                        source: self.nodes[from].ip,
                        destination: dst,
                        hop_limit: self.hop_limit,
                    };
                    let _ = self.nodes[to].router.handle_packet(now, info, &payload);
                    self.drain(to);
                }
            }
            for i in 0..self.nodes.len() {
                if self.nodes[i].alive
                    && self.nodes[i]
                        .router
                        .poll_timeout()
                        .is_some_and(|t| t <= now)
                {
                    self.nodes[i].router.handle_timeout(now);
                    self.drain(i);
                }
            }
        }
    }

    fn masters(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| self.nodes[i].alive && self.nodes[i].router.state() == State::Master)
            .collect()
    }

    fn holders(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| self.nodes[i].holds_vip)
            .collect()
    }

    /// When node `i` last became master (time since start).
    fn became_master(&self, i: usize) -> Option<(Duration, Transition)> {
        self.nodes[i]
            .changes
            .iter()
            .rev()
            .find(|c| c.1 == State::Master)
            .map(|c| (c.0, c.2))
    }
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

/// Asserts `got` is within [lo, hi].
fn within(got: Duration, lo: Duration, hi: Duration) {
    assert!(
        got >= lo && got <= hi,
        "{got:?} not within [{lo:?}, {hi:?}]"
    );
}

#[test]
fn highest_priority_wins_and_only_it_holds_the_address() {
    let mut lan = Lan::new(vec![(config(100), 1), (config(150), 2), (config(50), 3)]);
    lan.start_all();
    lan.run_until(secs(10.0));
    assert_eq!(lan.masters(), vec![1]);
    assert_eq!(lan.holders(), vec![1]);
    assert_eq!(lan.nodes[0].router.state(), State::Backup);
    assert_eq!(lan.nodes[2].router.state(), State::Backup);
    // All start as backups; the 150 times out first: 3 s + (256-150)/256 s.
    let (t, why) = lan.became_master(1).unwrap();
    assert_eq!(why, Transition::MasterDown);
    within(t, secs(3.414), secs(3.415));
    // Nobody else ever became master (the others heard it in time).
    assert!(lan.became_master(0).is_none() && lan.became_master(2).is_none());
    // And the master announced the address at once and after garp_delay.
    assert_eq!(lan.nodes[1].announces.len(), 2);
    assert_eq!(lan.nodes[1].announces[0], (t, 5));
    within(lan.nodes[1].announces[1].0 - t, secs(5.0), secs(5.0));
}

#[test]
fn master_death_backup_takes_over_after_master_down_interval() {
    let mut lan = Lan::new(vec![(config(150), 1), (config(100), 2)]);
    lan.start_all();
    lan.run_until(secs(5.0));
    assert_eq!(lan.masters(), vec![0]);
    let crash = lan.t();
    lan.crash(0);
    lan.run_until(secs(12.0));
    assert_eq!(lan.masters(), vec![1]);
    assert_eq!(lan.holders(), vec![1]);
    let (t, why) = lan.became_master(1).unwrap();
    assert_eq!(why, Transition::MasterDown);
    // Master_Down_Interval for priority 100 at 1 s: 3 + 156/256 s, counted
    // from the last advertisement heard (at most one interval before).
    let mdi = lan.nodes[1].router.master_down_interval();
    within(mdi, secs(3.609), secs(3.61));
    within(t - crash, mdi - secs(1.0), mdi + LATENCY);
}

#[test]
fn priority_zero_handover_takes_skew_time() {
    let mut lan = Lan::new(vec![(config(150), 1), (config(100), 2), (config(50), 3)]);
    lan.start_all();
    lan.run_until(secs(5.0));
    let stop = lan.t();
    lan.shutdown(0);
    // The last advertisement it sent had priority 0.
    assert_eq!(lan.nodes[0].sent_priorities.last().unwrap().1, 0);
    assert!(lan.holders().is_empty());
    lan.run_until(secs(8.0));
    assert_eq!(
        lan.masters(),
        vec![1],
        "the higher backup wins: its skew is shorter"
    );
    let (t, why) = lan.became_master(1).unwrap();
    assert_eq!(why, Transition::PriorityZero);
    let skew = lan.nodes[1].router.skew_time();
    within(skew, secs(0.609), secs(0.61));
    within(t - stop, skew, skew + LATENCY * 2);
    assert_eq!(lan.nodes[0].router.state(), State::Initialize);
}

#[test]
fn two_node_option_takes_over_at_once_on_priority_zero() {
    let mut b = config(100);
    b.two_node(true);
    let mut lan = Lan::new(vec![(config(150), 1), (b, 2)]);
    lan.start_all();
    lan.run_until(secs(5.0));
    let stop = lan.t();
    lan.shutdown(0);
    lan.run_until(secs(6.0));
    let (t, why) = lan.became_master(1).unwrap();
    assert_eq!(why, Transition::PriorityZero);
    within(t - stop, Duration::ZERO, LATENCY * 2);
}

#[test]
fn preemption_and_nopreempt() {
    // The low one starts alone and becomes master; the high one arrives.
    let mut lan = Lan::new(vec![(config(100), 1), (config(150), 2)]);
    lan.start(0);
    lan.run_until(secs(5.0));
    assert_eq!(lan.masters(), vec![0]);
    let arrive = lan.t();
    lan.start(1);
    lan.run_until(secs(12.0));
    assert_eq!(lan.masters(), vec![1]);
    assert_eq!(lan.holders(), vec![1]);
    // It ignores the lower master and times out after its own
    // Master_Down_Interval; the old master steps down on its first advert.
    let (t, _) = lan.became_master(1).unwrap();
    within(t - arrive, secs(3.414), secs(3.415));
    let down = lan.nodes[0].changes.last().unwrap();
    assert_eq!(
        (down.1, down.2),
        (State::Backup, Transition::HigherPriority)
    );
    within(down.0 - t, LATENCY, LATENCY);

    // The same with nopreempt: the low master keeps the address.
    let mut high = config(150);
    high.preempt(false);
    let mut lan = Lan::new(vec![(config(100), 1), (high, 2)]);
    lan.start(0);
    lan.run_until(secs(5.0));
    lan.start(1);
    lan.run_until(secs(30.0));
    assert_eq!(lan.masters(), vec![0]);
    assert_eq!(lan.holders(), vec![0]);
    assert!(lan.became_master(1).is_none());
}

#[test]
fn preempt_delay_waits_before_taking_over() {
    let mut high = config(150);
    high.preempt_delay(secs(10.0));
    let mut lan = Lan::new(vec![(config(100), 1), (high, 2)]);
    lan.start(0);
    lan.run_until(secs(5.0));
    lan.start(1);
    // It hears the low master's first advertisement within 1 s of starting.
    lan.run_until(secs(14.5));
    assert_eq!(lan.masters(), vec![0], "still within preempt_delay");
    lan.run_until(secs(20.0));
    assert_eq!(lan.masters(), vec![1]);
    let (t, _) = lan.became_master(1).unwrap();
    within(t, secs(15.0), secs(16.0));
}

#[test]
fn equal_priority_tie_breaks_on_the_higher_address() {
    let mut lan = Lan::new(vec![
        (config(100), 9),
        (config(100), 200),
        (config(100), 30),
    ]);
    lan.start_all();
    lan.run_until(secs(10.0));
    assert_eq!(lan.masters(), vec![1]);
    assert_eq!(lan.holders(), vec![1]);
    // They all timed out together; the lower addresses stepped down.
    for i in [0, 2] {
        let last = lan.nodes[i].changes.last().unwrap();
        assert_eq!(
            (last.1, last.2),
            (State::Backup, Transition::HigherPriority)
        );
    }
}

#[test]
fn backups_adopt_the_masters_interval() {
    let mut fast = config(150);
    fast.advert_interval(Duration::from_millis(200));
    let mut lan = Lan::new(vec![(fast, 1), (config(100), 2)]);
    lan.start_all();
    lan.run_until(secs(5.0));
    assert_eq!(lan.masters(), vec![0]);
    assert_eq!(
        lan.nodes[1].router.master_adver_interval(),
        Duration::from_millis(200)
    );
    let crash = lan.t();
    lan.crash(0);
    lan.run_until(secs(8.0));
    let (t, _) = lan.became_master(1).unwrap();
    // 3 * 0.2 + 156/256 * 0.2 = 0.72 s, not the 3.6 s of its own 1 s.
    let mdi = secs(0.6) + Duration::from_millis(200) * 156 / 256;
    within(t - crash, mdi - secs(0.2), mdi + LATENCY);
}

#[test]
fn tracking_lowers_priority_and_hands_over_then_takes_back() {
    let mut lan = Lan::new(vec![(config(150), 1), (config(100), 2)]);
    lan.start_all();
    lan.run_until(secs(5.0));
    assert_eq!(lan.masters(), vec![0]);
    let now = lan.now;
    assert_eq!(lan.nodes[0].router.adjust_priority(now, -60), 90);
    lan.drain(0);
    // The master advertised its new priority at once.
    assert_eq!(lan.nodes[0].sent_priorities.last().unwrap(), &(lan.t(), 90));
    let drop = lan.t();
    lan.run_until(secs(10.0));
    assert_eq!(lan.masters(), vec![1]);
    assert_eq!(lan.holders(), vec![1]);
    let (t, _) = lan.became_master(1).unwrap();
    within(t - drop, secs(2.0), secs(3.61));
    // Health recovers: the node preempts back.
    let now = lan.now;
    assert_eq!(lan.nodes[0].router.adjust_priority(now, 60), 150);
    lan.run_until(secs(15.0));
    assert_eq!(lan.masters(), vec![0]);
    assert_eq!(lan.holders(), vec![0]);
}

#[test]
fn fault_hands_over_with_priority_zero_and_recovers_as_backup() {
    let mut lan = Lan::new(vec![(config(150), 1), (config(100), 2)]);
    lan.start_all();
    lan.run_until(secs(5.0));
    let now = lan.now;
    let fault_at = lan.t();
    lan.nodes[0].router.set_fault(now, true);
    lan.drain(0);
    assert_eq!(lan.nodes[0].router.state(), State::Fault);
    assert_eq!(lan.nodes[0].sent_priorities.last().unwrap().1, 0);
    assert!(!lan.nodes[0].holds_vip);
    lan.run_until(secs(8.0));
    assert_eq!(lan.masters(), vec![1]);
    let (t, why) = lan.became_master(1).unwrap();
    assert_eq!(why, Transition::PriorityZero);
    within(t - fault_at, secs(0.6), secs(0.62));
    // While faulty it neither advertises nor takes over.
    let sent = lan.nodes[0].sent_priorities.len();
    lan.run_until(secs(20.0));
    assert_eq!(lan.nodes[0].sent_priorities.len(), sent);
    assert_eq!(lan.nodes[0].router.state(), State::Fault);
    // Cleared: it comes back as backup and (preempt) becomes master again.
    let now = lan.now;
    lan.nodes[0].router.set_fault(now, false);
    lan.drain(0);
    assert_eq!(lan.nodes[0].router.state(), State::Backup);
    lan.run_until(secs(30.0));
    assert_eq!(lan.masters(), vec![0]);
}

#[test]
fn address_owner_becomes_master_at_once() {
    let mut lan = Lan::new(vec![(config(100), 1), (config(255), 2)]);
    lan.start(0);
    lan.run_until(secs(5.0));
    lan.start(1);
    assert_eq!(lan.nodes[1].router.state(), State::Master);
    assert_eq!(lan.became_master(1).unwrap().1, Transition::StartupOwner);
    lan.run_until(secs(6.0));
    assert_eq!(lan.masters(), vec![1]);
    assert_eq!(lan.holders(), vec![1]);
}

#[test]
fn master_hearing_a_lower_master_re_advertises_at_once() {
    let mut lan = Lan::new(vec![(config(150), 1), (config(100), 2)]);
    lan.start_all();
    lan.run_until(secs(5.0));
    // Partition: the backup also becomes master.
    lan.cut.push((0, 1));
    lan.run_until(secs(10.0));
    assert_eq!(lan.masters(), vec![0, 1]);
    lan.cut.clear();
    let heal = lan.t();
    // The low master's next advertisement reaches the high one, which
    // answers at once; the low one steps down well before a full interval.
    lan.run_until(secs(12.0));
    assert_eq!(lan.masters(), vec![0]);
    assert_eq!(lan.holders(), vec![0]);
    let down = lan.nodes[1].changes.last().unwrap();
    assert_eq!(down.1, State::Backup);
    // Healed mid-interval; whichever advert crossed first, the step-down
    // comes at most one interval plus two hops later.
    within(down.0 - heal, Duration::ZERO, secs(1.0) + LATENCY * 2);
}

#[test]
fn bad_packets_are_discarded_and_counted() {
    // TTL below 255: the backup never hears the master and takes over.
    let mut lan = Lan::new(vec![(config(150), 1), (config(100), 2)]);
    lan.hop_limit = 254;
    lan.start_all();
    lan.run_until(secs(6.0));
    assert_eq!(lan.masters(), vec![0, 1]);
    assert!(lan.nodes[1].router.counters().discarded_ttl > 0);

    // A different address list is refused (unless from the owner).
    let mut other = config(150);
    other.virtual_addresses(["198.18.0.101/24".parse().unwrap()]);
    let mut lan = Lan::new(vec![(other, 1), (config(100), 2)]);
    lan.start_all();
    lan.run_until(secs(6.0));
    assert_eq!(lan.masters(), vec![0, 1]);
    assert!(lan.nodes[1].router.counters().discarded_addresses > 0);

    // VRRPv2 peers must agree on the interval.
    let mut a = config(150);
    a.version(Version::V2).advert_interval(secs(2.0));
    let mut b = config(100);
    b.version(Version::V2);
    let mut lan = Lan::new(vec![(a, 1), (b, 2)]);
    lan.start_all();
    lan.run_until(secs(12.0));
    assert!(lan.nodes[1].router.counters().discarded_interval > 0);
    assert_eq!(lan.masters(), vec![0, 1]);

    // A v2 router and a v3 router do not understand each other.
    let mut v2 = config(150);
    v2.version(Version::V2);
    let mut lan = Lan::new(vec![(v2, 1), (config(100), 2)]);
    lan.start_all();
    lan.run_until(secs(6.0));
    assert!(lan.nodes[1].router.counters().discarded_version > 0);
}

#[test]
fn unicast_peers_get_each_advertisement_and_strangers_are_ignored() {
    let mut a = config(150);
    a.unicast_peer(ip(2));
    let mut b = config(100);
    b.unicast_peer(ip(1));
    // A third router that is nobody's peer but talks to b.
    let mut c = config(200);
    c.unicast_peer(ip(2));
    let mut lan = Lan::new(vec![(a, 1), (b, 2), (c, 3)]);
    lan.start_all();
    lan.run_until(secs(8.0));
    // b ignores c (not its peer) and follows a.
    assert_eq!(lan.nodes[1].router.state(), State::Backup);
    assert!(lan.nodes[1].router.counters().discarded_peer > 0);
    assert_eq!(lan.nodes[0].router.state(), State::Master);
}

#[test]
fn garp_refresh_repeats_while_master() {
    let mut c = config(150);
    c.garp_delay(Duration::ZERO)
        .garp_refresh(Some(secs(2.0)))
        .garp_refresh_repeat(2);
    let mut lan = Lan::new(vec![(c, 1)]);
    lan.start_all();
    lan.run_until(secs(10.0));
    let a = &lan.nodes[0].announces;
    let (t0, _) = lan.became_master(0).unwrap();
    assert_eq!(a[0], (t0, 5));
    let refreshes: Vec<_> = a[1..]
        .iter()
        .map(|(t, n)| ((*t - t0).as_secs_f64().round() as u64, *n))
        .collect();
    assert_eq!(refreshes, vec![(2, 2), (4, 2), (6, 2)]);
}

/// With a virtual MAC and unicast adverts, a master that preempts
/// announces again one interval after taking over: the old master may
/// have answered the first announcement from the same MAC. Without a
/// virtual MAC (or with multicast adverts) it does not.
#[test]
fn vmac_with_unicast_announces_again_after_one_interval() {
    for (vmac, unicast, confirms) in [
        (true, true, true),
        (false, true, false),
        (true, false, false),
    ] {
        let mut a = config(100);
        let mut b = config(150);
        a.use_vmac(vmac);
        b.use_vmac(vmac);
        if unicast {
            a.unicast_peer(ip(2));
            b.unicast_peer(ip(1));
        }
        let mut lan = Lan::new(vec![(a, 1), (b, 2)]);
        lan.start(0);
        lan.run_until(secs(5.0));
        lan.start(1);
        lan.run_until(secs(12.0));
        assert_eq!(lan.masters(), vec![1]);
        let (t, why) = lan.became_master(1).unwrap();
        assert_eq!(why, Transition::MasterDown);
        let early: Vec<Duration> = lan.nodes[1]
            .announces
            .iter()
            .map(|(at, _)| *at - t)
            .filter(|d| *d < secs(4.0))
            .collect();
        let expected = if confirms {
            vec![Duration::ZERO, secs(1.0)]
        } else {
            vec![Duration::ZERO]
        };
        assert_eq!(early, expected, "vmac {vmac}, unicast {unicast}");
    }
}

/// VRRPv2 simple text password (keepalived's `auth_type PASS`): routers
/// with the same password elect one master; a router with another
/// password (or none) does not hear them and becomes master too, its
/// adverts counted as discarded.
#[test]
fn v2_password_authentication() {
    let v2 = |priority: u8, password: Option<&str>| {
        let mut c = config(priority);
        c.version(Version::V2).advert_interval(secs(1.0));
        if let Some(p) = password {
            c.auth_password(p);
        }
        c
    };
    let mut lan = Lan::new(vec![
        (v2(150, Some("secret")), 1),
        (v2(100, Some("secret")), 2),
    ]);
    lan.start_all();
    lan.run_until(secs(10.0));
    assert_eq!(lan.masters(), vec![0]);
    assert_eq!(lan.nodes[1].router.counters().discarded_auth, 0);

    for other in [Some("secreT"), None] {
        let mut lan = Lan::new(vec![(v2(150, Some("secret")), 1), (v2(100, other), 2)]);
        lan.start_all();
        lan.run_until(secs(10.0));
        assert_eq!(lan.masters(), vec![0, 1], "{other:?}");
        assert!(lan.nodes[1].router.counters().discarded_auth > 0);
    }
}
