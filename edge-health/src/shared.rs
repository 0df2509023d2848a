//! What a checker's handles and its driver task share: the commands the
//! handles send, the state the driver publishes, and the event stream a
//! subscriber reads.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use futures::Stream;
use tokio::sync::{broadcast, watch};

use crate::event::{FirstRound, HealthEvent, PoolStatus, ProbeReport};
use crate::scheduler::Key;

/// Messages to the driver.
#[derive(Debug)]
pub(crate) enum Command {
    Outlier {
        key: Key,
        consecutive: u32,
    },
    SetTargets {
        pool: usize,
        targets: Vec<(SocketAddr, u32)>,
    },
    Shutdown,
}

/// State shared by the driver and the handles.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) pools: Vec<PoolShared>,
    pub(crate) by_name: HashMap<Arc<str>, usize>,
    pub(crate) events: broadcast::WeakSender<HealthEvent>,
    /// `Some` once the first round has ended.
    pub(crate) first_round: watch::Receiver<Option<FirstRound>>,
}

/// One pool's published state. Both vectors are in target order; a slot
/// of a removed target is `None`.
#[derive(Debug)]
pub(crate) struct PoolShared {
    pub(crate) status: watch::Sender<PoolStatus>,
    pub(crate) targets: Mutex<Vec<Option<HealthEvent>>>,
    /// Each target's last probe.
    pub(crate) last_probes: Mutex<Vec<Option<ProbeReport>>>,
}

impl Shared {
    pub(crate) fn snapshot(&self) -> Vec<HealthEvent> {
        let mut out = Vec::new();
        for p in &self.pools {
            if let Ok(t) = p.targets.lock() {
                out.extend(t.iter().flatten().cloned());
            }
        }
        out
    }
}

/// A stream of [`HealthEvent`]s. It starts with the current state of every
/// target, then yields each change. A subscriber that falls behind gets the
/// full current state again rather than losing changes, so applying events
/// in order always ends in the checker's state.
#[derive(Debug)]
pub struct HealthStream {
    pub(crate) rx: Option<broadcast::Receiver<HealthEvent>>,
    pub(crate) backlog: VecDeque<HealthEvent>,
    pub(crate) shared: Arc<Shared>,
}

impl HealthStream {
    /// The next event; `None` once the checker has stopped.
    pub async fn next(&mut self) -> Option<HealthEvent> {
        loop {
            if let Some(e) = self.backlog.pop_front() {
                return Some(e);
            }
            let rx = self.rx.as_mut()?;
            match rx.recv().await {
                Ok(e) => return Some(e),
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    tracing::debug!(missed = n, "health subscriber lagged, resending state");
                    self.backlog = self.shared.snapshot().into();
                }
                Err(broadcast::error::RecvError::Closed) => {
                    self.rx = None;
                }
            }
        }
    }

    /// As a [`futures::Stream`].
    pub fn into_stream(self) -> impl Stream<Item = HealthEvent> + Send + 'static {
        futures::stream::unfold(self, |mut s| async move {
            let e = s.next().await?;
            Some((e, s))
        })
    }
}
