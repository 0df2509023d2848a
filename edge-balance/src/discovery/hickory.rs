//! [`Resolve`] with hickory-resolver.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hickory_resolver::config::{LookupIpStrategy, NameServerConfig, ResolverConfig, ResolverOpts};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::proto::xfer::Protocol;
use hickory_resolver::{ResolveError, TokioResolver};

use super::{Discovered, LookupError, LookupFuture, Members, Resolve, Source};

/// A DNS resolver for discovery: A and AAAA, SRV.
#[derive(Clone)]
pub struct DnsResolver {
    inner: Arc<TokioResolver>,
}

impl std::fmt::Debug for DnsResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DnsResolver").finish_non_exhaustive()
    }
}

/// Options common to both constructors: both address families, answers
/// used as their TTL says (the tracker bounds it), `/etc/hosts` not read.
fn options(mut o: ResolverOpts, timeout: Duration) -> ResolverOpts {
    o.ip_strategy = LookupIpStrategy::Ipv4AndIpv6;
    o.timeout = timeout;
    o.attempts = 2;
    o.use_hosts_file = hickory_resolver::config::ResolveHosts::Never;
    o.cache_size = 64;
    o
}

impl DnsResolver {
    /// The name servers of `/etc/resolv.conf`.
    pub fn from_system(timeout: Duration) -> Result<Self, LookupError> {
        let (config, opts) = hickory_resolver::system_conf::read_system_conf()
            .map_err(|e| LookupError::Failed(format!("/etc/resolv.conf: {e}")))?;
        Ok(Self::build(config, options(opts, timeout)))
    }

    /// These name servers (UDP, with TCP for truncated answers).
    pub fn with_name_servers(servers: &[SocketAddr], timeout: Duration) -> Self {
        let mut config = ResolverConfig::new();
        for s in servers {
            config.add_name_server(NameServerConfig::new(*s, Protocol::Udp));
            config.add_name_server(NameServerConfig::new(*s, Protocol::Tcp));
        }
        Self::build(config, options(ResolverOpts::default(), timeout))
    }

    fn build(config: ResolverConfig, opts: ResolverOpts) -> Self {
        let inner = TokioResolver::builder_with_config(config, TokioConnectionProvider::default())
            .with_options(opts)
            .build();
        Self {
            inner: Arc::new(inner),
        }
    }
}

/// NXDOMAIN and NODATA are "not found"; the rest is a failure.
fn lookup_error(name: &str, e: &ResolveError) -> LookupError {
    if e.is_nx_domain() || e.is_no_records_found() {
        LookupError::NotFound(format!("{name}: {e}"))
    } else {
        LookupError::Failed(format!("{name}: {e}"))
    }
}

/// The remaining lifetime of an answer valid until `until`.
fn ttl(until: Instant) -> Duration {
    until.saturating_duration_since(Instant::now())
}

/// The addresses of `name` and how long they may be used.
async fn host(r: &TokioResolver, name: &str) -> Result<(Vec<IpAddr>, Duration), LookupError> {
    let ips = r
        .lookup_ip(name)
        .await
        .map_err(|e| lookup_error(name, &e))?;
    Ok((ips.iter().collect(), ttl(ips.valid_until())))
}

async fn srv(r: &TokioResolver, name: &str) -> Result<Discovered, LookupError> {
    let answer = r
        .srv_lookup(name)
        .await
        .map_err(|e| lookup_error(name, &e))?;
    let mut min_ttl = ttl(answer.as_lookup().valid_until());
    let Some(best) = answer.iter().map(|s| s.priority()).min() else {
        return Err(LookupError::NotFound(format!("{name}: no SRV records")));
    };
    let mut members: Members = Vec::new();
    for rec in answer.iter().filter(|s| s.priority() == best) {
        let target = rec.target().to_ascii();
        // "." means the service is not available here (RFC 2782).
        if target == "." {
            continue;
        }
        match host(r, &target).await {
            Ok((ips, t)) => {
                min_ttl = min_ttl.min(t);
                let weight = u32::from(rec.weight()).max(1);
                members.extend(
                    ips.into_iter()
                        .map(|ip| (SocketAddr::new(ip, rec.port()), weight)),
                );
            }
            // One target without addresses leaves the others usable.
            Err(e) => tracing::warn!(srv = %name, %target, error = %e, "SRV target has no address"),
        }
    }
    if members.is_empty() {
        return Err(LookupError::NotFound(format!(
            "{name}: no SRV target has an address"
        )));
    }
    Ok(Discovered::new(members, min_ttl))
}

impl Resolve for DnsResolver {
    fn resolve(&self, source: &Source) -> LookupFuture {
        let r = self.inner.clone();
        let source = source.clone();
        Box::pin(async move {
            match &source {
                Source::Host { name, port } => {
                    let (ips, t) = host(&r, name).await?;
                    let members = ips
                        .into_iter()
                        .map(|ip| (SocketAddr::new(ip, *port), 1))
                        .collect();
                    Ok(Discovered::new(members, t))
                }
                Source::Srv { name } => srv(&r, name).await,
            }
        })
    }
}
