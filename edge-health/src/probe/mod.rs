//! Probe kinds and their configuration. A probe is one attempt to prove a
//! target works; the [`HealthMachine`](crate::HealthMachine) turns results
//! into state.

mod http;
mod status;
mod tls;

use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;

pub use self::http::{BodyMatch, HttpProbe};
pub use self::status::StatusSet;
pub use self::tls::{TlsProbe, TlsVerify};
use crate::error::ConfigError;
use crate::reason::Reason;

pub(crate) use self::tls::client_config;

/// The future a custom probe returns.
pub type ProbeFuture = Pin<Box<dyn Future<Output = Result<(), Reason>> + Send + 'static>>;

/// A probe you write yourself (a Redis PING, an SMTP banner, ...). The
/// checker applies the timeout, so `probe` need not.
pub trait CustomProbe: Send + Sync + fmt::Debug + 'static {
    /// Probes `target` once. Return `Err(Reason::Custom(..))` (or any other
    /// reason) on failure.
    fn probe(&self, target: SocketAddr) -> ProbeFuture;
}

/// What to probe a pool's targets with.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Probe {
    /// The TCP connection is accepted.
    Tcp,
    /// An HTTP or HTTPS request gets an expected answer.
    Http(HttpProbe),
    /// A TLS handshake completes (optionally verified, optionally with
    /// enough remaining certificate validity).
    Tls(TlsProbe),
    /// Your own probe.
    Custom(Arc<dyn CustomProbe>),
}

impl Default for Probe {
    /// A TCP connect probe.
    fn default() -> Self {
        Probe::Tcp
    }
}

impl Probe {
    /// Checks the probe's settings without building it.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.compile().map(drop)
    }

    pub(crate) fn compile(&self) -> Result<CompiledProbe, ConfigError> {
        Ok(match self {
            Probe::Tcp => CompiledProbe::Tcp,
            Probe::Http(h) => CompiledProbe::Http(Arc::new(h.compile()?)),
            Probe::Tls(t) => CompiledProbe::Tls(Arc::new(t.compile("tls")?)),
            Probe::Custom(c) => CompiledProbe::Custom(Arc::clone(c)),
        })
    }
}

/// A probe with its regex compiled and TLS config built, cheap to clone.
#[derive(Debug, Clone)]
pub(crate) enum CompiledProbe {
    Tcp,
    Http(Arc<http::CompiledHttp>),
    Tls(Arc<tls::CompiledTls>),
    Custom(Arc<dyn CustomProbe>),
}

impl CompiledProbe {
    /// Runs the probe once, bounded by `timeout`.
    pub(crate) async fn run(self, target: SocketAddr, timeout: Duration) -> Result<(), Reason> {
        let fut = async move {
            match self {
                CompiledProbe::Tcp => connect(target).await.map(drop),
                CompiledProbe::Http(h) => h.run(target).await,
                CompiledProbe::Tls(t) => t.run(target).await.map(drop),
                CompiledProbe::Custom(c) => c.probe(target).await,
            }
        };
        match tokio::time::timeout(timeout, fut).await {
            Ok(r) => r,
            Err(_) => Err(Reason::Timeout),
        }
    }
}

pub(crate) async fn connect(target: SocketAddr) -> Result<TcpStream, Reason> {
    let s = TcpStream::connect(target)
        .await
        .map_err(|e| Reason::from_io(&e))?;
    // Probes are tiny request/response exchanges.
    let _ = s.set_nodelay(true);
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn tcp_probe_against_listener_and_closed_port() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let open = l.local_addr().unwrap();
        let p = Probe::Tcp.compile().unwrap();
        assert_eq!(p.clone().run(open, Duration::from_secs(5)).await, Ok(()));
        drop(l);
        assert_eq!(
            p.run(open, Duration::from_secs(5)).await,
            Err(Reason::Refused)
        );
    }
}
