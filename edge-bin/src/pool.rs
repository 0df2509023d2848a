//! Backend pools: servers with weights, a balancing policy, per-server
//! concurrency limits with a bounded queue, active health checks and
//! passive outlier ejection fed from live results.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::AbortHandle;

use crate::config::{HealthKind, HealthSettings, Policy, PoolSettings};

/// One backend server and its live state.
#[derive(Debug)]
pub struct Endpoint {
    pub addr: SocketAddr,
    pub weight: u32,
    /// Active health (true until checks say otherwise).
    healthy: AtomicBool,
    /// Passive ejection: until this instant (ms since pool start), 0 = not ejected.
    ejected_until_ms: AtomicU64,
    consecutive_failures: AtomicU32,
    in_flight: AtomicUsize,
    /// Requests waiting for a slot.
    queued: AtomicUsize,
    limiter: Option<Arc<Semaphore>>,
}

impl Endpoint {
    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }
}

/// Held while a request uses an endpoint; releases the slot on drop.
#[derive(Debug)]
pub struct EndpointGuard {
    ep: Arc<Endpoint>,
    _permit: Option<OwnedSemaphorePermit>,
}

impl EndpointGuard {
    pub fn addr(&self) -> SocketAddr {
        self.ep.addr
    }
}

impl Drop for EndpointGuard {
    fn drop(&mut self) {
        self.ep.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Why no slot on an endpoint could be had.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AcquireError {
    /// The queue in front of the server is full.
    QueueFull,
    /// Waited `queue_timeout` for a slot.
    QueueTimeout,
}

/// Result of one use of an endpoint, fed to passive detection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    /// Connect refused/timed out, reset, 5xx-class gateway failure.
    Failure,
}

/// A pool of servers.
#[derive(Debug)]
pub struct Pool {
    pub settings: PoolSettings,
    pub endpoints: Vec<Arc<Endpoint>>,
    /// Weighted round-robin schedule: endpoint indices, interleaved.
    schedule: Vec<usize>,
    cursor: AtomicUsize,
    epoch: Instant,
    tasks: Mutex<Vec<AbortHandle>>,
}

impl Drop for Pool {
    fn drop(&mut self) {
        if let Ok(tasks) = self.tasks.lock() {
            for t in tasks.iter() {
                t.abort();
            }
        }
    }
}

impl Pool {
    pub fn new(settings: PoolSettings) -> Arc<Self> {
        let endpoints: Vec<Arc<Endpoint>> = settings
            .servers
            .iter()
            .map(|&(addr, weight)| {
                Arc::new(Endpoint {
                    addr,
                    weight: weight.max(1),
                    healthy: AtomicBool::new(true),
                    ejected_until_ms: AtomicU64::new(0),
                    consecutive_failures: AtomicU32::new(0),
                    in_flight: AtomicUsize::new(0),
                    queued: AtomicUsize::new(0),
                    limiter: (settings.max_connections_per_server > 0)
                        .then(|| Arc::new(Semaphore::new(settings.max_connections_per_server))),
                })
            })
            .collect();
        let schedule = wrr_schedule(&endpoints.iter().map(|e| e.weight).collect::<Vec<_>>());
        Arc::new(Self {
            settings,
            endpoints,
            schedule,
            cursor: AtomicUsize::new(rand::random::<u32>() as usize),
            epoch: Instant::now(),
            tasks: Mutex::new(Vec::new()),
        })
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Whether the endpoint may take traffic now (healthy and not ejected).
    pub fn is_available(&self, i: usize) -> bool {
        self.endpoints.get(i).is_some_and(|e| {
            e.is_healthy() && e.ejected_until_ms.load(Ordering::Relaxed) <= self.now_ms()
        })
    }

    /// Number of endpoints that may take traffic now.
    pub fn available(&self) -> usize {
        (0..self.endpoints.len())
            .filter(|&i| self.is_available(i))
            .count()
    }

    /// Picks an endpoint index by the pool's policy, never one in `exclude`.
    ///
    /// When every endpoint is unavailable but not excluded, returns `None`
    /// (503), as HAProxy does when all servers of a backend are down.
    pub fn pick(&self, exclude: &[usize]) -> Option<usize> {
        let ok = |i: usize| !exclude.contains(&i) && self.is_available(i);
        match self.settings.policy {
            Policy::RoundRobin => {
                // Each probe takes the next slot of the shared cursor, so the
                // share of a server that is down spreads over all the others
                // instead of falling on its neighbour in the schedule.
                let n = self.schedule.len();
                (0..n)
                    .map(|_| self.schedule[self.cursor.fetch_add(1, Ordering::Relaxed) % n])
                    .find(|&i| ok(i))
            }
            Policy::LeastRequest => {
                (0..self.endpoints.len())
                    .filter(|&i| ok(i))
                    .min_by(|&a, &b| {
                        // in_flight / weight, compared without division.
                        let ea = &self.endpoints[a];
                        let eb = &self.endpoints[b];
                        (ea.in_flight() as u128 * u128::from(eb.weight))
                            .cmp(&(eb.in_flight() as u128 * u128::from(ea.weight)))
                    })
            }
            Policy::Random => {
                let cands: Vec<usize> = (0..self.endpoints.len()).filter(|&i| ok(i)).collect();
                let total: u64 = cands
                    .iter()
                    .map(|&i| u64::from(self.endpoints[i].weight))
                    .sum();
                if total == 0 {
                    return None;
                }
                let mut r = rand::random::<u64>() % total;
                cands.into_iter().find(|&i| {
                    let w = u64::from(self.endpoints[i].weight);
                    if r < w {
                        true
                    } else {
                        r -= w;
                        false
                    }
                })
            }
        }
    }

    /// Takes a slot on endpoint `i`, waiting in its bounded queue if it is at
    /// `max_connections_per_server`.
    pub async fn acquire(&self, i: usize) -> Result<EndpointGuard, AcquireError> {
        let ep = self.endpoints[i].clone();
        let permit = match &ep.limiter {
            None => None,
            Some(sem) => match sem.clone().try_acquire_owned() {
                Ok(p) => Some(p),
                Err(_) => {
                    if ep.queued.fetch_add(1, Ordering::Relaxed) >= self.settings.max_queue {
                        ep.queued.fetch_sub(1, Ordering::Relaxed);
                        return Err(AcquireError::QueueFull);
                    }
                    let r = tokio::time::timeout(
                        self.settings.queue_timeout,
                        sem.clone().acquire_owned(),
                    )
                    .await;
                    ep.queued.fetch_sub(1, Ordering::Relaxed);
                    match r {
                        Ok(Ok(p)) => Some(p),
                        _ => return Err(AcquireError::QueueTimeout),
                    }
                }
            },
        };
        ep.in_flight.fetch_add(1, Ordering::Relaxed);
        Ok(EndpointGuard {
            ep,
            _permit: permit,
        })
    }

    /// Feeds passive outlier detection with the outcome of one use of endpoint `i`.
    pub fn record(&self, i: usize, outcome: Outcome) {
        let Some(ep) = self.endpoints.get(i) else {
            return;
        };
        match outcome {
            Outcome::Success => ep.consecutive_failures.store(0, Ordering::Relaxed),
            Outcome::Failure => {
                let n = ep
                    .consecutive_failures
                    .fetch_add(1, Ordering::Relaxed)
                    .saturating_add(1);
                let limit = self.settings.outlier_consecutive_failures;
                if limit > 0 && n >= limit {
                    ep.consecutive_failures.store(0, Ordering::Relaxed);
                    let until = self.now_ms().saturating_add(
                        u64::try_from(self.settings.outlier_ejection_time.as_millis())
                            .unwrap_or(u64::MAX),
                    );
                    ep.ejected_until_ms.store(until, Ordering::Relaxed);
                    tracing::warn!(pool = %self.settings.name, server = %ep.addr, failures = n, "server ejected by outlier detection");
                }
            }
        }
    }

    /// Starts the active health checks of this pool (if configured).
    pub fn start_health_checks(self: &Arc<Self>) {
        let Some(h) = self.settings.health.clone() else {
            return;
        };
        let mut handles = Vec::new();
        for (i, _) in self.endpoints.iter().enumerate() {
            let weak = Arc::downgrade(self);
            let h = h.clone();
            let task = tokio::spawn(async move {
                let mut rise = 0u32;
                let mut fall = 0u32;
                let mut tick = tokio::time::interval(h.interval);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tick.tick().await;
                    let Some(pool) = weak.upgrade() else { return };
                    let ep = pool.endpoints[i].clone();
                    drop(pool);
                    let ok = probe(ep.addr, &h).await;
                    if ok {
                        fall = 0;
                        rise = rise.saturating_add(1);
                        if !ep.is_healthy() && rise >= h.rise {
                            ep.healthy.store(true, Ordering::Relaxed);
                            tracing::info!(server = %ep.addr, "server is UP (health check)");
                        }
                    } else {
                        rise = 0;
                        fall = fall.saturating_add(1);
                        if ep.is_healthy() && fall >= h.fall {
                            ep.healthy.store(false, Ordering::Relaxed);
                            tracing::warn!(server = %ep.addr, "server is DOWN (health check)");
                        }
                    }
                }
            });
            handles.push(task.abort_handle());
        }
        if let Ok(mut t) = self.tasks.lock() {
            t.extend(handles);
        }
    }
}

/// One active probe: TCP connect, or an HTTP/1.1 GET expecting 2xx/3xx.
async fn probe(addr: SocketAddr, h: &HealthSettings) -> bool {
    let attempt = async {
        let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
        if h.kind == HealthKind::Tcp {
            return Some(true);
        }
        let host = h.host.clone().unwrap_or_else(|| addr.to_string());
        let req = format!(
            "GET {} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: edge-health\r\nConnection: close\r\n\r\n",
            h.path
        );
        s.write_all(req.as_bytes()).await.ok()?;
        let mut buf = [0u8; 16];
        let mut n = 0;
        while n < 12 {
            let r = s.read(&mut buf[n..]).await.ok()?;
            if r == 0 {
                return Some(false);
            }
            n += r;
        }
        // "HTTP/1.x NNN"
        let code = std::str::from_utf8(buf.get(9..12)?)
            .ok()?
            .parse::<u16>()
            .ok()?;
        Some((200..400).contains(&code))
    };
    matches!(
        tokio::time::timeout(h.timeout, attempt).await,
        Ok(Some(true))
    )
}

/// Smooth weighted round robin (nginx's), unrolled into one cycle of picks.
fn wrr_schedule(weights: &[u32]) -> Vec<usize> {
    if weights.is_empty() {
        return Vec::new();
    }
    let g = weights.iter().copied().fold(0, gcd).max(1);
    let w: Vec<i64> = weights.iter().map(|&x| i64::from(x / g)).collect();
    let total: i64 = w.iter().sum();
    // Bound the schedule; beyond this, proportions are approximated.
    let len = usize::try_from(total.min(10_000)).unwrap_or(1);
    let mut current = vec![0i64; w.len()];
    let mut out = Vec::with_capacity(len);
    for _ in 0..len {
        for (c, wi) in current.iter_mut().zip(&w) {
            *c += wi;
        }
        let (best, _) = current
            .iter()
            .enumerate()
            .max_by_key(|&(i, c)| (*c, std::cmp::Reverse(i)))
            .unwrap_or((0, &0));
        current[best] -= total;
        out.push(best);
    }
    out
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 { a } else { gcd(b, a % b) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn settings(weights: &[u32], policy: Policy) -> PoolSettings {
        PoolSettings {
            name: "p".into(),
            servers: weights
                .iter()
                .enumerate()
                .map(|(i, &w)| (SocketAddr::from(([127, 0, 0, 1], 1000 + i as u16)), w))
                .collect(),
            policy,
            protocol: Default::default(),
            connect_timeout: Duration::from_secs(1),
            response_timeout: Duration::from_secs(1),
            idle_timeout: Duration::from_secs(1),
            max_connections_per_server: 1,
            max_queue: 1,
            queue_timeout: Duration::from_millis(50),
            retries: 2,
            health: None,
            outlier_consecutive_failures: 2,
            outlier_ejection_time: Duration::from_secs(60),
        }
    }

    #[test]
    fn smooth_wrr_interleaves() {
        assert_eq!(wrr_schedule(&[5, 1, 1]), vec![0, 0, 1, 0, 2, 0, 0]);
        assert_eq!(wrr_schedule(&[2, 2]), vec![0, 1]);
    }

    #[test]
    fn pick_respects_exclude_and_ejection() {
        let p = Pool::new(settings(&[1, 1, 1], Policy::RoundRobin));
        let mut seen = [0; 3];
        for _ in 0..30 {
            seen[p.pick(&[1]).unwrap()] += 1;
        }
        assert_eq!(seen[1], 0);
        assert!(seen[0] > 0 && seen[2] > 0);
        p.record(0, Outcome::Failure);
        assert!(p.is_available(0));
        p.record(0, Outcome::Failure);
        assert!(!p.is_available(0));
        assert_eq!(p.pick(&[2]), Some(1));
        assert_eq!(p.pick(&[1, 2]), None);
        for pol in [Policy::LeastRequest, Policy::Random] {
            let p = Pool::new(settings(&[1, 3], pol));
            assert_eq!(p.pick(&[0]), Some(1));
        }
    }

    #[tokio::test]
    async fn bounded_queue() {
        let p = Pool::new(settings(&[1], Policy::RoundRobin));
        let g = p.acquire(0).await.unwrap();
        let waiter = {
            let p = p.clone();
            tokio::spawn(async move { p.acquire(0).await.map(|_| ()) })
        };
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert_eq!(p.acquire(0).await.unwrap_err(), AcquireError::QueueFull);
        drop(g);
        assert_eq!(waiter.await.unwrap(), Ok(()));
    }
}
