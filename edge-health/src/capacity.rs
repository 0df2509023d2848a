//! Capacity alerts: a pool running low on healthy targets.

use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HOST, USER_AGENT};
use http::{Method, Request};
use http_body_util::Full;
use hyper_util::rt::TokioIo;

use crate::config::{AlertHook, CapacityConfig};
use crate::event::PoolStatus;
use crate::probe::{TlsVerify, client_config};

/// A change of a pool's capacity alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CapacityChange {
    /// The pool fell below its threshold.
    Low,
    /// The pool is back at or above its threshold.
    Recovered,
}

impl CapacityChange {
    /// `low` or `recovered`, as given to hooks.
    pub fn as_str(self) -> &'static str {
        match self {
            CapacityChange::Low => "low",
            CapacityChange::Recovered => "recovered",
        }
    }
}

/// Decides when a pool's alert is raised and cleared. No I/O.
#[derive(Debug, Clone)]
pub struct CapacityTracker {
    min_healthy: usize,
    min_healthy_percent: u8,
    min_healthy_weight_percent: u8,
    low: bool,
}

impl CapacityTracker {
    /// A tracker for a validated config, not raised.
    pub fn new(cfg: &CapacityConfig) -> Self {
        Self {
            min_healthy: cfg.min_healthy,
            min_healthy_percent: cfg.min_healthy_percent,
            min_healthy_weight_percent: cfg.min_healthy_weight_percent,
            low: false,
        }
    }

    /// Whether the alert is raised.
    pub fn is_low(&self) -> bool {
        self.low
    }

    /// Feeds the pool's counts; returns the change, if any. The alert is
    /// not raised while some targets still await their first result. The
    /// weight rule is not applied (see [`observe`](Self::observe)).
    pub fn update(
        &mut self,
        healthy: usize,
        total: usize,
        unchecked: usize,
    ) -> Option<CapacityChange> {
        let below = self.below_count(healthy, total);
        self.settle(below, unchecked)
    }

    /// Feeds the pool's status, counts and weights; returns the change, if
    /// any. As [`update`](Self::update), plus the weight share rule.
    pub fn observe(&mut self, s: &PoolStatus) -> Option<CapacityChange> {
        let weight_below = s.healthy_weight.saturating_mul(100)
            < s.total_weight
                .saturating_mul(u64::from(self.min_healthy_weight_percent));
        let below = self.below_count(s.healthy, s.total) || weight_below;
        self.settle(below, s.unchecked)
    }

    fn below_count(&self, healthy: usize, total: usize) -> bool {
        healthy < self.min_healthy
            || healthy.saturating_mul(100)
                < total.saturating_mul(usize::from(self.min_healthy_percent))
    }

    fn settle(&mut self, below: bool, unchecked: usize) -> Option<CapacityChange> {
        match (self.low, below) {
            (false, true) if unchecked == 0 => {
                self.low = true;
                Some(CapacityChange::Low)
            }
            (true, false) => {
                self.low = false;
                Some(CapacityChange::Recovered)
            }
            _ => None,
        }
    }
}

/// Runs the hook for `change`, for at most `limit`; errors are logged
/// here, once.
pub(crate) async fn run_hook(
    hook: AlertHook,
    limit: Duration,
    change: CapacityChange,
    status: PoolStatus,
) {
    let result = tokio::time::timeout(limit, async {
        match &hook {
            AlertHook::Command { program, args } => {
                run_command(program, args, change, &status).await
            }
            AlertHook::Webhook { url } => post_webhook(url, change, &status).await,
        }
    })
    .await
    .unwrap_or_else(|_| Err(format!("gave up after {limit:?}")));
    match result {
        Ok(()) => {
            tracing::debug!(pool = %status.pool, state = change.as_str(), "capacity hook done")
        }
        Err(e) => {
            tracing::error!(pool = %status.pool, state = change.as_str(), error = %e, "capacity hook failed")
        }
    }
}

async fn run_command(
    program: &std::path::Path,
    args: &[String],
    change: CapacityChange,
    s: &PoolStatus,
) -> Result<(), String> {
    let status = tokio::process::Command::new(program)
        .args(args)
        .env("EDGE_HEALTH_POOL", &*s.pool)
        .env("EDGE_HEALTH_STATE", change.as_str())
        .env("EDGE_HEALTH_HEALTHY", s.healthy.to_string())
        .env("EDGE_HEALTH_TOTAL", s.total.to_string())
        .env("EDGE_HEALTH_HEALTHY_WEIGHT", s.healthy_weight.to_string())
        .env("EDGE_HEALTH_TOTAL_WEIGHT", s.total_weight.to_string())
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .status()
        .await
        .map_err(|e| format!("cannot run {}: {e}", program.display()))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{} exited with {status}", program.display()))
    }
}

async fn post_webhook(
    url: &http::Uri,
    change: CapacityChange,
    s: &PoolStatus,
) -> Result<(), String> {
    let https = url.scheme_str() == Some("https");
    let host = url.host().ok_or("webhook URL has no host")?;
    let port = url.port_u16().unwrap_or(if https { 443 } else { 80 });
    let host_trim = host.trim_start_matches('[').trim_end_matches(']');
    let addr = tokio::net::lookup_host((host_trim, port))
        .await
        .map_err(|e| format!("cannot resolve {host}: {e}"))?
        .next()
        .ok_or_else(|| format!("{host} has no address"))?;
    let body = serde_json::json!({
        "pool": &*s.pool,
        "state": change.as_str(),
        "healthy": s.healthy,
        "total": s.total,
        "healthy_weight": s.healthy_weight,
        "total_weight": s.total_weight,
    })
    .to_string();
    let path = url.path_and_query().map_or("/", |p| p.as_str()).to_owned();
    let authority = url.authority().map_or(host, |a| a.as_str()).to_owned();
    let req = Request::builder()
        .method(Method::POST)
        .uri(path)
        .header(HOST, authority)
        .header(USER_AGENT, "edge-health")
        .header(CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| e.to_string())?;
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
    let status = if https {
        let cfg = client_config(&TlsVerify::WebPki)?;
        let name = rustls_pki_types::ServerName::try_from(host_trim.to_owned())
            .map_err(|e| e.to_string())?;
        let tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(cfg))
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS to {host}: {e}"))?;
        send(TokioIo::new(tls), req).await?
    } else {
        send(TokioIo::new(tcp), req).await?
    };
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("webhook answered {status}"))
    }
}

async fn send<I>(io: I, req: Request<Full<Bytes>>) -> Result<http::StatusCode, String>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| e.to_string())?;
    let work = async move { sender.send_request(req).await.map(|r| r.status()) };
    tokio::pin!(work, conn);
    let r = tokio::select! {
        biased;
        r = &mut work => r,
        _ = &mut conn => work.await,
    };
    r.map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raised_below_share_or_count_and_cleared() {
        let mut t = CapacityTracker::new(&CapacityConfig {
            min_healthy: 2,
            min_healthy_percent: 50,
            ..Default::default()
        });
        assert_eq!(t.update(1, 10, 9), None, "not before all are checked");
        assert_eq!(t.update(6, 10, 0), None);
        assert_eq!(t.update(4, 10, 0), Some(CapacityChange::Low));
        assert_eq!(t.update(3, 10, 0), None, "raised once");
        assert_eq!(t.update(5, 10, 0), Some(CapacityChange::Recovered));
        assert_eq!(t.update(1, 2, 0), Some(CapacityChange::Low), "count rule");
        assert_eq!(t.update(2, 2, 0), Some(CapacityChange::Recovered));
    }

    fn status(healthy: usize, total: usize, hw: u64, tw: u64) -> PoolStatus {
        PoolStatus {
            healthy_weight: hw,
            total_weight: tw,
            ..PoolStatus::new("p", healthy, total)
        }
    }

    #[test]
    fn weight_share_rule_raises_and_clears() {
        let mut t = CapacityTracker::new(&CapacityConfig {
            min_healthy: 1,
            min_healthy_percent: 0,
            min_healthy_weight_percent: 60,
            ..Default::default()
        });
        // 3 of 4 servers up, but the heavy one (weight 7 of 10) is down.
        assert_eq!(t.observe(&status(3, 4, 3, 10)), Some(CapacityChange::Low));
        assert!(t.is_low());
        assert_eq!(
            t.observe(&status(1, 4, 7, 10)),
            Some(CapacityChange::Recovered)
        );
        // The count rules still apply through observe.
        assert_eq!(t.observe(&status(0, 4, 0, 10)), Some(CapacityChange::Low));
        // Off (0): weights alone never raise it.
        let mut off = CapacityTracker::new(&CapacityConfig {
            min_healthy_percent: 0,
            ..Default::default()
        });
        assert_eq!(off.observe(&status(1, 4, 1, 100)), None);
    }
}
