//! Per-client limits, as HAProxy's stick tables and nginx's `limit_conn` /
//! `limit_req` give: connections held at once and a request rate (a token
//! bucket with a burst) per client address, in one table bounded in size
//! (clients holding no connection are forgotten first). Exempt clients
//! (trusted networks) are never counted. A refusal is logged once per 10 s
//! at most, whatever the rate.
//!
//! ```
//! use std::net::IpAddr;
//! use edge_balance::client_limit::{ClientLimitConfig, ClientLimits, Refused};
//!
//! let config = ClientLimitConfig { max_connections: 1, ..ClientLimitConfig::default() };
//! let limits = ClientLimits::new(config, |ip: IpAddr| ip.is_loopback()).unwrap();
//! let client = IpAddr::from([192, 0, 2, 1]);
//! let slot = limits.connect(client).unwrap();
//! assert_eq!(limits.connect(client).unwrap_err(), Refused::Connections);
//! drop(slot);
//! assert!(limits.connect(client).is_ok());
//! ```

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// The limits (every one off by default).
#[derive(Debug, Clone, PartialEq)]
pub struct ClientLimitConfig {
    /// Connections one client address may hold at once (0: no limit).
    pub max_connections: u32,
    /// Requests per second one client address may make, on average (0: no
    /// limit).
    pub requests_per_second: f64,
    /// Requests one client may make at once above the rate.
    pub burst: u32,
    /// Client addresses tracked at most (idle ones are forgotten first).
    pub table_size: usize,
}

impl Default for ClientLimitConfig {
    fn default() -> Self {
        Self {
            max_connections: 0,
            requests_per_second: 0.0,
            burst: 1,
            table_size: 100_000,
        }
    }
}

impl ClientLimitConfig {
    /// Whether any limit is on.
    pub fn enabled(&self) -> bool {
        self.max_connections > 0 || self.requests_per_second > 0.0
    }
}

/// Which clients are never limited.
type Exempt = Box<dyn Fn(IpAddr) -> bool + Send + Sync>;

/// What one client address has in use.
#[derive(Debug)]
struct Entry {
    connections: u32,
    tokens: f64,
    refilled: Instant,
}

/// The limits and the table of clients.
pub struct ClientLimits {
    settings: ClientLimitConfig,
    exempt: Exempt,
    table: Mutex<HashMap<IpAddr, Entry>>,
    refused: Mutex<Refusals>,
}

/// Refusals since the last log line (one line per 10 s at most).
#[derive(Debug)]
struct Refusals {
    connections: u64,
    requests: u64,
    since: Instant,
}

/// A connection counted against its client until dropped.
#[derive(Debug)]
pub struct ConnectionSlot {
    limits: Arc<ClientLimits>,
    ip: IpAddr,
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let mut t = self.limits.lock();
        if let Some(e) = t.get_mut(&self.ip) {
            e.connections = e.connections.saturating_sub(1);
        }
    }
}

/// Why a client was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// At `max_connections`.
    Connections,
    /// Over the request rate; a token comes back after this long.
    Requests(Duration),
}

impl fmt::Debug for ClientLimits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientLimits")
            .field("settings", &self.settings)
            .field("tracked", &self.tracked())
            .finish_non_exhaustive()
    }
}

impl ClientLimits {
    /// The limits, with `exempt` saying which clients are never counted;
    /// `None` when every limit is off.
    pub fn new(
        settings: ClientLimitConfig,
        exempt: impl Fn(IpAddr) -> bool + Send + Sync + 'static,
    ) -> Option<Arc<Self>> {
        settings.enabled().then(|| {
            Arc::new(Self {
                settings,
                exempt: Box::new(exempt),
                table: Mutex::new(HashMap::new()),
                refused: Mutex::new(Refusals {
                    connections: 0,
                    requests: 0,
                    since: Instant::now(),
                }),
            })
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, Entry>> {
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn exempt(&self, ip: IpAddr) -> bool {
        (self.exempt)(ip)
    }

    /// The client's entry, made room for: at `table_size`, clients with no
    /// connection are forgotten (their request budget starts full again).
    fn entry<'t>(
        &self,
        t: &'t mut HashMap<IpAddr, Entry>,
        ip: IpAddr,
        now: Instant,
    ) -> &'t mut Entry {
        if !t.contains_key(&ip) && t.len() >= self.settings.table_size {
            t.retain(|_, e| e.connections > 0);
        }
        t.entry(ip).or_insert_with(|| Entry {
            connections: 0,
            tokens: f64::from(self.settings.burst),
            refilled: now,
        })
    }

    /// Counts a new connection from `ip`; `Err` when the client already
    /// holds `max_connections`.
    pub fn connect(self: &Arc<Self>, ip: IpAddr) -> Result<Option<ConnectionSlot>, Refused> {
        let max = self.settings.max_connections;
        if max == 0 || self.exempt(ip) {
            return Ok(None);
        }
        let mut t = self.lock();
        let e = self.entry(&mut t, ip, Instant::now());
        if e.connections >= max {
            drop(t);
            self.note(ip, Refused::Connections);
            return Err(Refused::Connections);
        }
        e.connections += 1;
        Ok(Some(ConnectionSlot {
            limits: Arc::clone(self),
            ip,
        }))
    }

    /// Takes one request from `ip`'s budget; `Err` with the wait until the
    /// next one when it is spent.
    pub fn request(&self, ip: IpAddr) -> Result<(), Refused> {
        let rate = self.settings.requests_per_second;
        if rate <= 0.0 || self.exempt(ip) {
            return Ok(());
        }
        let now = Instant::now();
        let mut t = self.lock();
        let e = self.entry(&mut t, ip, now);
        let burst = f64::from(self.settings.burst.max(1));
        let elapsed = now.saturating_duration_since(e.refilled).as_secs_f64();
        e.tokens = (e.tokens + elapsed * rate).min(burst);
        e.refilled = now;
        if e.tokens >= 1.0 {
            e.tokens -= 1.0;
            return Ok(());
        }
        let wait = Duration::from_secs_f64((1.0 - e.tokens) / rate);
        drop(t);
        self.note(ip, Refused::Requests(wait));
        Err(Refused::Requests(wait))
    }

    /// Counts a refusal; logs one line per 10 s at most, whatever the rate.
    fn note(&self, ip: IpAddr, why: Refused) {
        let mut r = self.refused.lock().unwrap_or_else(PoisonError::into_inner);
        match why {
            Refused::Connections => r.connections += 1,
            Refused::Requests(_) => r.requests += 1,
        }
        if r.since.elapsed() >= Duration::from_secs(10) || r.connections + r.requests == 1 {
            tracing::warn!(
                connections = r.connections,
                requests = r.requests,
                last_client = %ip,
                "per-client limits refused clients"
            );
            *r = Refusals {
                connections: 0,
                requests: 0,
                since: Instant::now(),
            };
        }
    }

    /// Client addresses tracked now.
    pub fn tracked(&self) -> usize {
        self.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(conns: u32, rate: f64, burst: u32, table: usize) -> Arc<ClientLimits> {
        let config = ClientLimitConfig {
            max_connections: conns,
            requests_per_second: rate,
            burst,
            table_size: table,
        };
        // 10.9.0.0/16 is trusted.
        ClientLimits::new(
            config,
            |ip| matches!(ip, IpAddr::V4(v4) if v4.octets()[..2] == [10, 9]),
        )
        .unwrap()
    }

    fn ip(n: u8) -> IpAddr {
        IpAddr::from([192, 0, 2, n])
    }

    #[test]
    fn connections_per_client_and_exempt_networks() {
        let l = limits(2, 0.0, 0, 100);
        let a = l.connect(ip(1)).unwrap();
        let b = l.connect(ip(1)).unwrap();
        assert_eq!(l.connect(ip(1)).unwrap_err(), Refused::Connections);
        assert!(l.connect(ip(2)).is_ok(), "another client is not affected");
        drop(a);
        assert!(
            l.connect(ip(1)).is_ok(),
            "a closed connection frees its slot"
        );
        drop(b);
        let trusted = IpAddr::from([10, 9, 1, 1]);
        let held: Vec<_> = (0..10).map(|_| l.connect(trusted).unwrap()).collect();
        assert!(held.iter().all(Option::is_none), "exempt: not even counted");
    }

    #[test]
    fn a_request_rate_with_a_burst() {
        let l = limits(0, 2.0, 3, 100);
        for _ in 0..3 {
            l.request(ip(1)).unwrap();
        }
        match l.request(ip(1)) {
            Err(Refused::Requests(wait)) => assert!(wait <= Duration::from_millis(500), "{wait:?}"),
            other => panic!("{other:?}"),
        }
        l.request(ip(2)).unwrap();
        std::thread::sleep(Duration::from_millis(600));
        l.request(ip(1)).unwrap();
    }

    #[test]
    fn the_table_is_bounded_and_keeps_clients_with_connections() {
        let l = limits(1, 1.0, 1, 4);
        let held = l.connect(ip(1)).unwrap();
        for n in 2..50 {
            let _ = l.request(ip(n));
            assert!(l.tracked() <= 4, "{}", l.tracked());
        }
        // The client holding a connection was not forgotten.
        assert_eq!(l.connect(ip(1)).unwrap_err(), Refused::Connections);
        drop(held);
        assert!(ClientLimits::new(ClientLimitConfig::default(), |_| false).is_none());
    }
}
