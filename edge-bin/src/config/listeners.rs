//! `[https]` and `[http]`: the two listeners, their PROXY protocol trust
//! and the HTTPS listener's certificate, Host and ALPN settings.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;

use toml::Spanned;

use super::{IpNet, KeyExchangeGroup, Validator, model};

/// `[https]`, validated.
#[derive(Debug, Clone)]
pub struct HttpsSettings {
    pub listen: Vec<SocketAddr>,
    pub proxy_protocol: bool,
    pub trusted_proxies: Vec<IpNet>,
    pub default_certificate: Option<String>,
    pub strict_host: bool,
    pub trusted_upstreams: Vec<IpNet>,
    pub alpn: Vec<Vec<u8>>,
    /// The TLS key exchange groups accepted (`post_quantum`,
    /// `key_exchange_groups`).
    pub key_exchange: Vec<KeyExchangeGroup>,
    /// `http3`: HTTP/3 over QUIC on UDP at the `listen` addresses.
    pub http3: bool,
    /// `http3_retry_above`: handshakes in progress above which QUIC
    /// clients must validate their address (Retry); 0: always.
    pub http3_retry_above: usize,
}

/// `[http]`, validated.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    pub listen: Vec<SocketAddr>,
    pub proxy_protocol: bool,
    pub trusted_proxies: Vec<IpNet>,
    pub redirect_to_https: bool,
    pub https_port: u16,
}

impl Validator<'_> {
    fn check_proxy_protocol(&mut self, enabled: bool, trusted: &[Spanned<String>], section: &str) {
        if enabled && trusted.is_empty() {
            self.errors.push(self.src.error(
                0..0,
                format!("{section}.trusted_proxies"),
                "proxy_protocol = true needs at least one trusted proxy network",
            ));
        }
    }

    /// `[https]` and `[http]`; `cert_names` are the `[[certificate]]` names
    /// `default_certificate` may refer to.
    pub(super) fn listeners(
        &mut self,
        h: &model::Https,
        hp: &model::Http,
        cert_names: &HashSet<String>,
    ) -> (HttpsSettings, HttpSettings) {
        let https = HttpsSettings {
            listen: self.addrs(&h.listen, "https.listen"),
            proxy_protocol: h.proxy_protocol,
            trusted_proxies: self.nets(&h.trusted_proxies, "https.trusted_proxies"),
            default_certificate: h.default_certificate.as_ref().map(|d| {
                if !cert_names.contains(d.get_ref()) {
                    self.err(
                        d,
                        "https.default_certificate",
                        format!("no [[certificate]] named {:?}", d.get_ref()),
                    );
                }
                d.get_ref().clone()
            }),
            strict_host: h.strict_host,
            trusted_upstreams: self.nets(&h.trusted_upstreams, "https.trusted_upstreams"),
            alpn: h
                .alpn
                .iter()
                .enumerate()
                .filter_map(|(i, a)| match a.get_ref().as_str() {
                    "h2" | "http/1.1" => Some(a.get_ref().as_bytes().to_vec()),
                    other => {
                        self.err(
                            a,
                            format!("https.alpn[{i}]"),
                            format!("unsupported ALPN protocol {other:?} (h2, http/1.1)"),
                        );
                        None
                    }
                })
                .collect(),
            key_exchange: self.key_exchange(h),
            http3: h.http3,
            http3_retry_above: h.http3_retry_above,
        };
        self.check_proxy_protocol(h.proxy_protocol, &h.trusted_proxies, "https");
        let http = HttpSettings {
            listen: self.addrs(&hp.listen, "http.listen"),
            proxy_protocol: hp.proxy_protocol,
            trusted_proxies: self.nets(&hp.trusted_proxies, "http.trusted_proxies"),
            redirect_to_https: hp.redirect_to_https,
            https_port: hp.https_port,
        };
        self.check_proxy_protocol(hp.proxy_protocol, &hp.trusted_proxies, "http");
        let mut all_listen = HashMap::new();
        for (a, key) in https
            .listen
            .iter()
            .map(|a| (a, "https.listen"))
            .chain(http.listen.iter().map(|a| (a, "http.listen")))
        {
            if let Some(prev) = all_listen.insert(*a, key) {
                self.errors.push(self.src.error(
                    0..0,
                    key,
                    format!("address {a} is already used by {prev}"),
                ));
            }
        }
        (https, http)
    }
}
