//! The TLS port's routing: after edge-sni has read a ClientHello, its
//! [`RouteBySni`] service sends the connection to the route its SNI names
//! ([`SniTarget`]): relayed untouched to a pool (passthrough), or
//! terminated here. The route table is built once per config.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use edge_sni::{PatternError, RouteBySni, SniRouter, TlsConnection};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::config::{PassthroughRule, ProxyProtocolOut};
use crate::state::State;

/// An accepted TLS-port connection and what edge knows of it: the client
/// (after a PROXY header), the local address, and the config it started
/// with. Reads and writes go to the socket.
#[derive(Debug)]
pub struct Inbound {
    pub stream: TcpStream,
    pub client: SocketAddr,
    pub local: SocketAddr,
    pub state: Arc<State>,
}

impl AsyncRead for Inbound {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Inbound {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

/// Where a TLS connection goes.
#[derive(Debug, Clone)]
pub enum SniTarget {
    /// Relayed untouched to a server of `pool`.
    Passthrough {
        pool: Arc<str>,
        proxy_protocol: ProxyProtocolOut,
    },
    /// TLS terminated here, then HTTP.
    Terminate,
}

/// The TLS port's route table: passthrough names (the first rule naming a
/// host wins), everything else terminated.
pub fn routes(rules: &[PassthroughRule]) -> Result<RouteBySni<SniTarget>, PatternError> {
    let mut router = SniRouter::new().default_route(SniTarget::Terminate);
    // Later additions replace earlier ones: add the rules last to first.
    for rule in rules.iter().rev() {
        let target = SniTarget::Passthrough {
            pool: rule.pool.as_str().into(),
            proxy_protocol: rule.proxy_protocol,
        };
        for pattern in &rule.sni {
            router = router.add(&pattern.to_string(), target.clone())?;
        }
    }
    Ok(RouteBySni::new(router))
}

type Served = Pin<Box<dyn Future<Output = Result<(), Infallible>> + Send>>;

impl tower_service::Service<TlsConnection<Inbound>> for SniTarget {
    type Response = ();
    type Error = Infallible;
    type Future = Served;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, conn: TlsConnection<Inbound>) -> Served {
        match self {
            SniTarget::Passthrough {
                pool,
                proxy_protocol,
            } => {
                let (pool, pp) = (pool.clone(), *proxy_protocol);
                Box::pin(async move {
                    crate::passthrough::relay(conn, &pool, pp).await;
                    Ok(())
                })
            }
            SniTarget::Terminate => Box::pin(async move {
                crate::server::terminate(conn).await;
                Ok(())
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::HostPattern;

    fn rule(pool: &str, sni: &[HostPattern]) -> PassthroughRule {
        PassthroughRule {
            sni: sni.to_vec(),
            pool: pool.into(),
            proxy_protocol: ProxyProtocolOut::None,
        }
    }

    fn pool_of(r: &RouteBySni<SniTarget>, sni: Option<&str>) -> Option<String> {
        match r.router().route(sni)? {
            SniTarget::Passthrough { pool, .. } => Some(pool.to_string()),
            SniTarget::Terminate => None,
        }
    }

    #[test]
    fn exact_names_win_then_the_first_rule() {
        let r = routes(&[
            rule("wild", &[HostPattern::Wildcard(".example.com".into())]),
            rule("db", &[HostPattern::Exact("db.example.com".into())]),
            rule("shadow", &[HostPattern::Exact("db.example.com".into())]),
        ])
        .unwrap();
        assert_eq!(pool_of(&r, Some("db.example.com")).as_deref(), Some("db"));
        assert_eq!(pool_of(&r, Some("x.example.com")).as_deref(), Some("wild"));
        assert_eq!(pool_of(&r, Some("example.com")), None, "terminated");
        assert_eq!(pool_of(&r, None), None);
        assert!(matches!(
            r.router().route(Some("a.b")),
            Some(SniTarget::Terminate)
        ));
    }
}
