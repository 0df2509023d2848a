//! The TLS port's route table: after edge-sni has read a ClientHello, its
//! [`RouteBySni`] service sends the connection to the route its SNI names
//! ([`SniTarget`]): relayed untouched to a pool (passthrough), or
//! terminated here. Built once per config; the targets are served in
//! [`crate::server`].

use std::sync::Arc;

use edge_sni::{PatternError, RouteBySni, SniRouter};

use crate::config::{PassthroughRule, ProxyProtocolOut};

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::HostPattern;

    fn rule(pool: &str, sni: &[&str]) -> PassthroughRule {
        PassthroughRule {
            sni: sni
                .iter()
                .map(|p| p.parse::<HostPattern>().unwrap())
                .collect(),
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
            rule("wild", &["*.example.com"]),
            rule("db", &["db.example.com"]),
            rule("shadow", &["db.example.com"]),
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
