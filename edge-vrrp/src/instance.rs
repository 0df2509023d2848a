//! The tokio driver: runs one [`VirtualRouter`] on a real interface.

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tracing::Instrument;

use crate::announce::{gratuitous_arp, unsolicited_na};
use crate::config::{Config, ConfigError};
use crate::error::Error;
use crate::netlink::{Link, LinkEvents, Netlink};
use crate::network::{AdvertSockets, LinkSocket, SocketPlan};
use crate::router::{Action, State, Transition, VirtualRouter};
use crate::stats::Counters;
use crate::vmac::Vmac;

/// A state change, as published by [`InstanceHandle::events`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Previous state.
    pub from: State,
    /// New state.
    pub to: State,
    /// Why.
    pub reason: Transition,
    /// Effective priority at the time.
    pub priority: u8,
    /// When (monotonic clock).
    pub at: Instant,
}

#[derive(Debug)]
enum Command {
    AdjustPriority(i32),
    SetPriorityAdjustment(i32),
    SetFault(bool),
    Start,
    Shutdown(oneshot::Sender<()>),
}

/// Entry point of the driver.
#[derive(Debug)]
pub struct Instance;

impl Instance {
    /// Validates `config`, opens the sockets, cleans up addresses a crashed
    /// run left behind, and starts the virtual router on the current tokio
    /// runtime. Needs CAP_NET_RAW and CAP_NET_ADMIN.
    pub async fn spawn(config: Config) -> Result<InstanceHandle, Error> {
        Self::spawn_with(config, false).await
    }

    /// Like [`spawn`](Self::spawn), but the router stays in
    /// [`State::Initialize`] until [`InstanceHandle::start`]: it sends no
    /// advertisement, adds no address and takes no part in elections (the
    /// RFC's Startup event has not happened), so a node that is not ready
    /// to serve neither takes nor preempts the VIPs. Unlike
    /// [`InstanceHandle::set_fault`] nothing is reported as a fault. The
    /// sockets are open, so a setup error shows at once.
    pub async fn spawn_held(config: Config) -> Result<InstanceHandle, Error> {
        Self::spawn_with(config, true).await
    }

    async fn spawn_with(config: Config, held: bool) -> Result<InstanceHandle, Error> {
        config.validate()?;
        let span = tracing::info_span!("vrrp", vrid = config.vrid, interface = %config.interface);
        let driver = Driver::setup(config).instrument(span.clone()).await?;
        let (state_tx, state_rx) = watch::channel(State::Initialize);
        let (events_tx, _) = broadcast::channel(64);
        let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
        let counters = Arc::new(Mutex::new(Counters::default()));
        let task = tokio::spawn(
            driver
                .run(
                    held,
                    cmd_rx,
                    state_tx,
                    events_tx.clone(),
                    Arc::clone(&counters),
                )
                .instrument(span),
        );
        Ok(InstanceHandle {
            state: state_rx,
            events: events_tx,
            commands: cmd_tx,
            counters,
            task: Some(task),
        })
    }
}

/// Controls a running instance. Dropping it shuts the instance down
/// cleanly in the background (prefer [`InstanceHandle::shutdown`]).
#[derive(Debug)]
pub struct InstanceHandle {
    state: watch::Receiver<State>,
    events: broadcast::Sender<Event>,
    commands: mpsc::UnboundedSender<Command>,
    counters: Arc<Mutex<Counters>>,
    task: Option<JoinHandle<Result<(), Error>>>,
}

impl InstanceHandle {
    /// The current state, updated on every change.
    pub fn state(&self) -> watch::Receiver<State> {
        self.state.clone()
    }

    /// Every state change with its reason, from now on.
    pub fn events(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    /// Adds `delta` to the priority adjustment (a tracked check's weight:
    /// negative when it fails, its opposite when it recovers).
    pub fn adjust_priority(&self, delta: i32) {
        let _ = self.commands.send(Command::AdjustPriority(delta));
    }

    /// Sets the total priority adjustment.
    pub fn set_priority_adjustment(&self, total: i32) {
        let _ = self.commands.send(Command::SetPriorityAdjustment(total));
    }

    /// Forces (or clears) Fault: a master hands over with priority 0 and
    /// removes its addresses; a faulty router takes no part in elections.
    pub fn set_fault(&self, fault: bool) {
        let _ = self.commands.send(Command::SetFault(fault));
    }

    /// Starts an instance spawned with [`Instance::spawn_held`] (the
    /// Startup event: it becomes backup, or master as the address owner).
    /// Does nothing to an instance already started.
    pub fn start(&self) {
        let _ = self.commands.send(Command::Start);
    }

    /// A snapshot of the counters.
    pub fn counters(&self) -> Counters {
        self.counters.lock().map(|c| c.clone()).unwrap_or_default()
    }

    /// Clean shutdown: a master sends priority 0 (the backup takes over
    /// after Skew_Time), then the addresses are removed. Returns when done.
    pub async fn shutdown(mut self) -> Result<(), Error> {
        let (tx, rx) = oneshot::channel();
        let _ = self.commands.send(Command::Shutdown(tx));
        let _ = rx.await;
        match self.task.take() {
            Some(task) => task.await.map_err(|_| Error::Stopped)?,
            None => Ok(()),
        }
    }
}

impl Drop for InstanceHandle {
    fn drop(&mut self) {
        if self.task.is_some() {
            let (tx, _) = oneshot::channel();
            let _ = self.commands.send(Command::Shutdown(tx));
        }
    }
}

struct Driver {
    router: VirtualRouter,
    netlink: Netlink,
    sockets: AdvertSockets,
    link_socket: LinkSocket,
    /// The base interface (watched for link state).
    base: Link,
    /// Where the virtual addresses go (the macvlan with a VMAC).
    vip_link: Link,
    /// The macvlan, with a virtual MAC.
    vmac: Option<Vmac>,
    user_fault: bool,
    link_up: bool,
    /// Kernel notifications about the base interface (`None`: they
    /// stopped, the link is polled instead).
    link_events: Option<LinkEvents>,
}

impl Driver {
    async fn setup(config: Config) -> Result<Self, Error> {
        let netlink = Netlink::connect()?;
        let link_events = LinkEvents::subscribe()?;
        let name = config.interface.clone();
        let base = netlink
            .link(&name)
            .await?
            .ok_or_else(|| ConfigError::Invalid {
                field: "interface",
                value: name.clone(),
                reason: "no such interface",
            })?;
        let multicast = config.unicast_peers.is_empty();
        let source = match config.unicast_source {
            Some(s) => s,
            None => primary_address(&netlink, &config, &base).await?,
        };
        let vmac = match config.vmac_name() {
            Some(vname) => {
                Some(Vmac::create(&netlink, &base, &name, &vname, config.vrid, source).await?)
            }
            None => None,
        };
        let vip_link = vmac
            .as_ref()
            .map_or_else(|| base.clone(), |v| v.link.clone());
        // A crashed run may have left our addresses behind: a backup must
        // not hold them. (An owner, priority 255, owns them for good.)
        if config.priority != 255 {
            let present = netlink.addresses(vip_link.index).await?;
            for vip in &config.virtual_addresses {
                if present.iter().any(|a| a.address == vip.address) {
                    tracing::warn!(address = %vip, "removing a virtual address left by a previous run");
                    netlink.del_address(vip_link.index, *vip).await?;
                }
            }
        }
        // Multicast adverts travel on the macvlan (sent from the virtual
        // MAC, and received there: see `vmac`); unicast ones on the base
        // interface, addressed to the peers' own addresses and MACs
        // (keepalived's `vmac_xmit_base`).
        let (advert_link, advert_ifname) = match &vmac {
            Some(v) if multicast => (v.link.clone(), v.name.clone()),
            _ => (base.clone(), name.clone()),
        };
        let plan = SocketPlan {
            recv_ifindex: advert_link.index,
            recv_ifname: advert_ifname.clone(),
            send_ifindex: advert_link.index,
            send_ifname: advert_ifname,
            source,
            multicast,
        };
        let sockets = AdvertSockets::open(&plan)
            .map_err(Error::io(format!("opening VRRP sockets on {name}")))
            .and_then(|s| {
                let l = LinkSocket::open(vip_link.index)
                    .map_err(Error::io("opening the AF_PACKET socket"))?;
                Ok((s, l))
            });
        let (sockets, link_socket) = match sockets {
            Ok(s) => s,
            Err(e) => {
                if let Some(v) = &vmac {
                    v.remove(&netlink).await;
                }
                return Err(e);
            }
        };
        tracing::info!(source = %source, multicast = plan.multicast, "VRRP instance ready");
        let router = VirtualRouter::new(config, source)?;
        Ok(Driver {
            router,
            netlink,
            sockets,
            link_socket,
            link_up: base.up,
            base,
            vip_link,
            vmac,
            user_fault: false,
            link_events: Some(link_events),
        })
    }

    async fn run(
        mut self,
        held: bool,
        mut commands: mpsc::UnboundedReceiver<Command>,
        state: watch::Sender<State>,
        events: broadcast::Sender<Event>,
        counters: Arc<Mutex<Counters>>,
    ) -> Result<(), Error> {
        let now = Instant::now();
        self.router.set_fault(now, !self.link_up);
        if held {
            tracing::debug!("VRRP instance held: no advertisement, no address until started");
        } else {
            self.router.start(now);
        }
        let mut buf = Vec::with_capacity(4096);
        // Only used if the link notifications stop.
        let mut link_poll = tokio::time::interval(Duration::from_secs(1));
        link_poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut done: Option<oneshot::Sender<()>> = None;
        let mut fired_early = false;
        loop {
            self.execute(&state, &events).await;
            if let Ok(mut c) = counters.lock() {
                c.clone_from(self.router.counters());
            }
            if let Some(tx) = done.take() {
                let _ = tx.send(());
                break;
            }
            // A timer already due (a two-node backup that just heard
            // priority 0) fires now, not at the runtime's next
            // millisecond tick (once in a row: a timer the router leaves
            // due goes through the runtime, which yields).
            if !fired_early
                && self
                    .router
                    .poll_timeout()
                    .is_some_and(|d| d <= Instant::now())
            {
                self.router.handle_timeout(Instant::now());
                fired_early = true;
                continue;
            }
            fired_early = false;
            let deadline = self
                .router
                .poll_timeout()
                .map(tokio::time::Instant::from_std);
            tokio::select! {
                res = self.sockets.recv(&mut buf) => match res {
                    Ok(info) => {
                        let _ = self.router.handle_packet(Instant::now(), info, &buf);
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "receiving VRRP packets");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
                () = sleep_until(deadline) => self.router.handle_timeout(Instant::now()),
                cmd = commands.recv() => {
                    let now = Instant::now();
                    match cmd {
                        Some(Command::AdjustPriority(d)) => {
                            let p = self.router.adjust_priority(now, d);
                            tracing::info!(delta = d, priority = p, "priority adjusted");
                        }
                        Some(Command::SetPriorityAdjustment(t)) => {
                            let p = self.router.set_priority_adjustment(now, t);
                            tracing::info!(total = t, priority = p, "priority adjustment set");
                        }
                        Some(Command::SetFault(f)) => {
                            self.user_fault = f;
                            self.router.set_fault(now, self.user_fault || !self.link_up);
                        }
                        Some(Command::Start) => self.router.start(now),
                        Some(Command::Shutdown(tx)) => {
                            self.router.shutdown(now);
                            done = Some(tx);
                        }
                        None => {
                            self.router.shutdown(now);
                            let (tx, _) = oneshot::channel();
                            done = Some(tx);
                        }
                    }
                }
                up = next_link_event(&mut self.link_events, self.base.index) => match up {
                    Some(up) => self.link_changed(up),
                    None => {
                        tracing::warn!("netlink link notifications stopped; polling the link");
                        self.link_events = None;
                    }
                },
                _ = link_poll.tick(), if self.link_events.is_none() => {
                    match self.netlink.link(&self.router.config().interface.clone()).await {
                        Ok(Some(link)) => self.link_changed(link.up),
                        Ok(None) => self.link_changed(false),
                        Err(e) => tracing::warn!(error = %e, "checking the interface"),
                    }
                }
            }
        }
        if let Some(vmac) = &self.vmac {
            vmac.remove(&self.netlink).await;
        }
        Ok(())
    }

    /// The base interface's link went up or down: down is Fault (a master
    /// tries to send priority 0 and removes the addresses), up starts
    /// again from Initialize.
    fn link_changed(&mut self, up: bool) {
        if up == self.link_up {
            return;
        }
        tracing::warn!(up, "interface link state changed");
        self.link_up = up;
        self.router
            .set_fault(Instant::now(), self.user_fault || !self.link_up);
    }

    /// Carries out the router's actions.
    async fn execute(&mut self, state: &watch::Sender<State>, events: &broadcast::Sender<Event>) {
        while let Some(action) = self.router.poll_action() {
            match action {
                Action::Send(t) => {
                    if let Err(e) = self.sockets.send(t.destination, &t.payload) {
                        tracing::warn!(error = %e, destination = %t.destination, "sending advertisement");
                    }
                }
                Action::AddAddresses => {
                    for vip in self.router.config().virtual_addresses.clone() {
                        if let Err(e) = self.netlink.add_address(self.vip_link.index, vip).await {
                            tracing::error!(error = %e, "adding virtual address");
                        }
                    }
                }
                Action::RemoveAddresses => {
                    for vip in self.router.config().virtual_addresses.clone() {
                        if let Err(e) = self.netlink.del_address(self.vip_link.index, vip).await {
                            tracing::error!(error = %e, "removing virtual address");
                        }
                    }
                }
                Action::Announce { repeat } => self.announce(repeat),
                Action::StateChanged { from, to, reason } => {
                    state.send_replace(to);
                    let _ = events.send(Event {
                        from,
                        to,
                        reason,
                        priority: self.router.effective_priority(),
                        at: Instant::now(),
                    });
                }
            }
        }
    }

    fn announce(&self, repeat: u32) {
        let mac = self.vip_link.mac;
        for vip in &self.router.config().virtual_addresses {
            let frame = match vip.address {
                IpAddr::V4(a) => gratuitous_arp(mac, a),
                IpAddr::V6(a) => unsolicited_na(mac, a),
            };
            for _ in 0..repeat {
                if let Err(e) = self.link_socket.send_frame(&frame) {
                    tracing::warn!(error = %e, address = %vip, "sending announcement");
                    break;
                }
            }
        }
        tracing::debug!(
            repeat,
            base = self.base.index,
            "announced virtual addresses"
        );
    }
}

async fn next_link_event(events: &mut Option<LinkEvents>, index: u32) -> Option<bool> {
    match events {
        Some(e) => e.next(index).await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// Our advertisement source: the interface's first IPv4 address that is
/// not virtual, or its IPv6 link-local address (waiting a little for DAD).
async fn primary_address(netlink: &Netlink, config: &Config, link: &Link) -> Result<IpAddr, Error> {
    let v6 = config.is_ipv6();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let addrs = netlink.addresses(link.index).await?;
        let found = addrs.iter().find(|a| {
            let virtual_ = config
                .virtual_addresses
                .iter()
                .any(|v| v.address == a.address);
            !virtual_
                && !a.tentative
                && match a.address {
                    IpAddr::V4(_) => !v6,
                    IpAddr::V6(x) => v6 && x.segments()[0] & 0xffc0 == 0xfe80,
                }
        });
        if let Some(a) = found {
            return Ok(a.address);
        }
        if Instant::now() >= deadline {
            return Err(Error::NoPrimaryAddress {
                interface: config.interface.clone(),
                family: if v6 { "IPv6 link-local" } else { "IPv4" },
            });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
