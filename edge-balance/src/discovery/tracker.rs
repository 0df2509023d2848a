//! The rules of re-resolution without I/O ([`Tracker`]) and the tokio
//! driver that runs them ([`watch`]).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{Discovered, DiscoveryConfig, LookupError, Members, Resolve, Source};

/// No lookup takes longer than this, whatever the resolver's own timeouts.
const LOOKUP_LIMIT: Duration = Duration::from_secs(30);

/// What one lookup result changes.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Step {
    /// The new member set, when it changed.
    pub update: Option<Members>,
    /// When to look up again.
    pub next: Instant,
    /// What happened, for the log.
    pub event: Event,
}

/// What happened at a lookup.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// The same servers as before.
    Unchanged,
    /// Servers joined or left.
    Changed {
        /// Addresses that joined (or whose weight changed).
        added: Vec<SocketAddr>,
        /// Addresses that left.
        removed: Vec<SocketAddr>,
    },
    /// The lookup failed; the last good set is kept until `until`.
    Held { error: LookupError, until: Instant },
    /// The lookup failed past the hold time: the servers were removed.
    Expired { error: LookupError },
    /// The lookup failed and there is no set to keep (none yet, or it
    /// expired already).
    Failed { error: LookupError },
}

/// The state of one source's discovery: the last good member set and how
/// long lookups have been failing.
#[derive(Debug, Clone)]
pub struct Tracker {
    cfg: DiscoveryConfig,
    members: Option<Members>,
    failing_since: Option<Instant>,
}

impl Tracker {
    /// No members yet.
    pub fn new(cfg: DiscoveryConfig) -> Self {
        Self {
            cfg,
            members: None,
            failing_since: None,
        }
    }

    /// The current member set (`None` before the first answer, or after the
    /// hold time expired).
    pub fn members(&self) -> Option<&[(SocketAddr, u32)]> {
        self.members.as_deref()
    }

    /// Takes a lookup's result at `now`.
    pub fn on_result(&mut self, now: Instant, result: Result<Discovered, LookupError>) -> Step {
        match result {
            Ok(d) => {
                self.failing_since = None;
                let ttl = d
                    .ttl
                    .clamp(self.cfg.min_ttl, self.cfg.max_ttl.max(self.cfg.min_ttl));
                let next = now.checked_add(ttl).unwrap_or(now);
                let first = self.members.is_none();
                let before = self.members.take().unwrap_or_default();
                let event = diff(&before, &d.members);
                let update = (first || event != Event::Unchanged).then(|| d.members.clone());
                self.members = Some(d.members);
                Step {
                    update,
                    next,
                    event,
                }
            }
            Err(error) => {
                let since = *self.failing_since.get_or_insert(now);
                let next = now.checked_add(self.cfg.retry).unwrap_or(now);
                let until = since.checked_add(self.cfg.hold).unwrap_or(since);
                let (update, event) = match &self.members {
                    Some(_) if now < until => (None, Event::Held { error, until }),
                    Some(_) => {
                        self.members = None;
                        (Some(Vec::new()), Event::Expired { error })
                    }
                    None => (None, Event::Failed { error }),
                };
                Step {
                    update,
                    next,
                    event,
                }
            }
        }
    }
}

/// What changed from `before` to `after` (both sorted by address).
fn diff(before: &[(SocketAddr, u32)], after: &[(SocketAddr, u32)]) -> Event {
    let added: Vec<SocketAddr> = after
        .iter()
        .filter(|m| !before.contains(m))
        .map(|m| m.0)
        .collect();
    let removed: Vec<SocketAddr> = before
        .iter()
        .filter(|b| !after.iter().any(|a| a.0 == b.0))
        .map(|b| b.0)
        .collect();
    if added.is_empty() && removed.is_empty() {
        Event::Unchanged
    } else {
        Event::Changed { added, removed }
    }
}

/// Resolves `source` until every receiver of `tx` is dropped, publishing
/// each new member set on `tx`, logging each change and failure once with
/// `name` (e.g. the pool's), and calling `observe` with every lookup's
/// [`Event`] (e.g. to count them).
pub async fn watch(
    name: String,
    resolver: Arc<dyn Resolve>,
    source: Source,
    cfg: DiscoveryConfig,
    tx: tokio::sync::watch::Sender<Members>,
    observe: impl Fn(&Event) + Send + 'static,
) {
    let mut tracker = Tracker::new(cfg);
    let mut was_failing = false;
    loop {
        let lookup = tokio::time::timeout(LOOKUP_LIMIT, resolver.resolve(&source));
        let result = tokio::select! {
            r = lookup => r.unwrap_or_else(|_| Err(LookupError::Failed("lookup timed out".into()))),
            () = tx.closed() => return,
        };
        let step = tracker.on_result(Instant::now(), result);
        observe(&step.event);
        match &step.event {
            Event::Unchanged => {}
            Event::Changed { added, removed } => tracing::info!(
                pool = %name, %source, servers = tracker.members().map_or(0, <[_]>::len),
                ?added, ?removed, "DNS: servers changed"
            ),
            Event::Held { error, until } if !was_failing => tracing::warn!(
                pool = %name, %source, %error,
                hold_seconds = until.saturating_duration_since(Instant::now()).as_secs(),
                "DNS: lookup failed, keeping the last servers"
            ),
            Event::Held { .. } => {}
            Event::Expired { error } => tracing::error!(
                pool = %name, %source, %error,
                "DNS: lookups failed for the hold time, servers removed"
            ),
            Event::Failed { error } if !was_failing => tracing::error!(
                pool = %name, %source, %error, "DNS: lookup failed, no servers"
            ),
            Event::Failed { .. } => {}
        }
        if matches!(step.event, Event::Changed { .. } | Event::Unchanged) && was_failing {
            tracing::info!(pool = %name, %source, "DNS: lookups answer again");
        }
        was_failing = matches!(
            step.event,
            Event::Held { .. } | Event::Expired { .. } | Event::Failed { .. }
        );
        if let Some(m) = step.update {
            tx.send_replace(m);
        }
        tokio::select! {
            () = tokio::time::sleep_until(step.next.into()) => {}
            () = tx.closed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(last: u8, weight: u32) -> (SocketAddr, u32) {
        (SocketAddr::from(([192, 0, 2, last], 80)), weight)
    }

    fn ok(m: Members, ttl_s: u64) -> Result<Discovered, LookupError> {
        Ok(Discovered::new(m, Duration::from_secs(ttl_s)))
    }

    fn cfg() -> DiscoveryConfig {
        DiscoveryConfig::default()
            .min_ttl(Duration::from_secs(5))
            .max_ttl(Duration::from_secs(60))
            .retry(Duration::from_secs(2))
            .hold(Duration::from_secs(10))
    }

    #[test]
    fn ttl_is_clamped_and_changes_reported() {
        let t0 = Instant::now();
        let s = |n: u64| t0 + Duration::from_secs(n);
        let mut t = Tracker::new(cfg());
        let st = t.on_result(t0, ok(vec![a(2, 1), a(1, 1)], 1));
        assert_eq!(st.update, Some(vec![a(1, 1), a(2, 1)]), "sorted");
        assert_eq!(st.next, s(5), "TTL 1 s raised to min_ttl");
        let st = t.on_result(s(5), ok(vec![a(1, 1), a(2, 1)], 3600));
        assert_eq!(
            (st.update, st.event, st.next),
            (None, Event::Unchanged, s(65))
        );
        let st = t.on_result(s(65), ok(vec![a(2, 3), a(3, 1)], 30));
        assert_eq!(st.update, Some(vec![a(2, 3), a(3, 1)]));
        let want = Event::Changed {
            added: vec![a(2, 3).0, a(3, 1).0],
            removed: vec![a(1, 1).0],
        };
        assert_eq!(st.event, want, "a weight change counts as added");
    }

    #[test]
    fn failures_hold_the_last_set_then_remove_it() {
        let t0 = Instant::now();
        let s = |n: u64| t0 + Duration::from_secs(n);
        let err = || Err(LookupError::Failed("SERVFAIL".into()));
        let mut t = Tracker::new(cfg());
        // No answer yet: nothing to hold.
        let st = t.on_result(t0, err());
        assert!(matches!(st.event, Event::Failed { .. }) && st.update.is_none());
        assert_eq!(st.next, s(2), "retried");
        t.on_result(s(2), ok(vec![a(1, 1)], 30));
        let st = t.on_result(s(32), Err(LookupError::NotFound("NXDOMAIN".into())));
        assert_eq!(
            st.event,
            Event::Held {
                error: LookupError::NotFound("NXDOMAIN".into()),
                until: s(42)
            }
        );
        assert_eq!(t.on_result(s(41), err()).update, None, "still held");
        let st = t.on_result(s(42), err());
        assert_eq!(st.update, Some(vec![]), "hold expired: removed");
        assert_eq!(t.members(), None);
        assert!(matches!(
            t.on_result(s(44), err()).event,
            Event::Failed { .. }
        ));
        // It answers again: the servers are back, and a new failure holds
        // for a whole hold time again.
        assert_eq!(
            t.on_result(s(46), ok(vec![a(1, 1)], 30)).update,
            Some(vec![a(1, 1)])
        );
        assert!(matches!(
            t.on_result(s(80), err()).event,
            Event::Held { .. }
        ));
    }

    struct Script(std::sync::Mutex<Vec<Result<Discovered, LookupError>>>);

    impl Resolve for Script {
        fn resolve(&self, _: &Source) -> super::super::LookupFuture {
            let mut v = self.0.lock().unwrap();
            let r = if v.len() > 1 {
                v.remove(0)
            } else {
                v[0].clone()
            };
            Box::pin(async move { r })
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_driver_publishes_changes_and_stops_with_its_receivers() {
        let script = Script(std::sync::Mutex::new(vec![
            ok(vec![a(1, 1)], 5),
            ok(vec![a(1, 1), a(2, 1)], 5),
        ]));
        let (tx, mut rx) = tokio::sync::watch::channel(Vec::new());
        let src = Source::Host {
            name: "app.test".into(),
            port: 80,
        };
        let task = tokio::spawn(watch("p".into(), Arc::new(script), src, cfg(), tx, |_| ()));
        rx.changed().await.unwrap();
        assert_eq!(*rx.borrow_and_update(), vec![a(1, 1)]);
        rx.changed().await.unwrap();
        assert_eq!(*rx.borrow_and_update(), vec![a(1, 1), a(2, 1)]);
        drop(rx);
        tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .expect("the driver stops when nobody listens")
            .unwrap();
    }
}
