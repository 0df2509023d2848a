//! `[[passthrough]]` and `[[route]]`: which TLS connections are relayed
//! untouched by SNI, and what each terminated HTTP request is routed to.

use std::collections::HashSet;

use super::{HostMatch, HostPattern, ProxyProtocolOut, Validator, model};

/// `[[passthrough]]`, validated.
#[derive(Debug, Clone)]
pub struct PassthroughRule {
    pub sni: Vec<HostPattern>,
    pub pool: String,
    pub proxy_protocol: ProxyProtocolOut,
}

/// `[[route]]`, validated.
#[derive(Debug, Clone)]
pub struct RouteRule {
    pub name: String,
    pub hosts: Vec<HostMatch>,
    pub path_prefix: String,
    pub headers: Vec<(http::HeaderName, Option<http::HeaderValue>)>,
    pub action: RouteAction,
    /// `client_certificate = "required"`: 403 without a verified client
    /// certificate on the connection.
    pub client_certificate: bool,
}

/// What a matched route does.
#[derive(Debug, Clone)]
pub enum RouteAction {
    Proxy {
        pool: String,
    },
    Redirect {
        location: String,
        status: http::StatusCode,
        keep_path: bool,
    },
    Respond {
        status: http::StatusCode,
        body: bytes::Bytes,
        content_type: http::HeaderValue,
    },
}

impl Validator<'_> {
    pub(super) fn passthrough(
        &mut self,
        list: &[model::Passthrough],
        pool_names: &HashSet<String>,
    ) -> Vec<PassthroughRule> {
        let mut passthrough = Vec::new();
        for (i, p) in list.iter().enumerate() {
            let key = format!("passthrough[{i}]");
            self.pool_ref(pool_names, &p.pool, format!("{key}.pool"));
            let sni: Vec<HostPattern> = p
                .sni
                .iter()
                .enumerate()
                .filter_map(|(j, s)| self.host(s, &format!("{key}.sni[{j}]")))
                .collect();
            if p.sni.is_empty() {
                self.err(
                    &p.pool,
                    format!("{key}.sni"),
                    "a passthrough rule needs at least one SNI name",
                );
            }
            passthrough.push(PassthroughRule {
                sni,
                pool: p.pool.get_ref().clone(),
                proxy_protocol: p.proxy_protocol,
            });
        }
        passthrough
    }

    pub(super) fn routes(
        &mut self,
        list: &[model::Route],
        pool_names: &HashSet<String>,
    ) -> Vec<RouteRule> {
        let mut routes = Vec::new();
        for (i, r) in list.iter().enumerate() {
            let key = format!("route[{i}]");
            let hosts = r
                .host
                .iter()
                .enumerate()
                .filter_map(|(j, s)| self.host_or_address(s, &format!("{key}.host[{j}]")))
                .collect();
            if !r.path_prefix.get_ref().starts_with('/') {
                self.err(
                    &r.path_prefix,
                    format!("{key}.path_prefix"),
                    "path_prefix must start with '/'",
                );
            }
            let mut headers = Vec::new();
            for (j, hm) in r.header.iter().enumerate() {
                let name = http::HeaderName::from_bytes(hm.name.get_ref().as_bytes());
                let value = hm
                    .value
                    .as_deref()
                    .map(http::HeaderValue::from_str)
                    .transpose();
                match (name, value) {
                    (Ok(n), Ok(v)) => headers.push((n, v)),
                    _ => self.err(
                        &hm.name,
                        format!("{key}.header[{j}]"),
                        "invalid header name or value",
                    ),
                }
            }
            let client_certificate = match r.client_certificate.as_ref() {
                None => false,
                Some(c) => match c.get_ref().as_str() {
                    "required" => true,
                    "none" => false,
                    other => {
                        self.err(
                            c,
                            format!("{key}.client_certificate"),
                            format!(
                                "unknown client_certificate {other:?} (expected \"required\" or \"none\")"
                            ),
                        );
                        false
                    }
                },
            };
            if let Some(action) = self.route_action(r, &key, pool_names) {
                routes.push(RouteRule {
                    name: r.name.clone().unwrap_or_else(|| format!("route{i}")),
                    hosts,
                    path_prefix: r.path_prefix.get_ref().clone(),
                    headers,
                    action,
                    client_certificate,
                });
            }
        }
        routes
    }

    /// A route's one action: `pool`, `redirect` or `respond`.
    fn route_action(
        &mut self,
        r: &model::Route,
        key: &str,
        pool_names: &HashSet<String>,
    ) -> Option<RouteAction> {
        let n_actions = usize::from(r.pool.is_some())
            + usize::from(r.redirect.is_some())
            + usize::from(r.respond.is_some());
        if n_actions != 1 {
            self.err(
                &r.path_prefix,
                key.to_string(),
                "a route needs exactly one of pool, redirect or respond",
            );
            None
        } else if let Some(p) = &r.pool {
            self.pool_ref(pool_names, p, format!("{key}.pool"));
            Some(RouteAction::Proxy {
                pool: p.get_ref().clone(),
            })
        } else if let Some(rd) = &r.redirect {
            let status = self.status(&rd.status, &format!("{key}.redirect.status"), 300..=399);
            if http::HeaderValue::from_str(rd.location.get_ref()).is_err()
                || rd.location.get_ref().is_empty()
            {
                self.err(
                    &rd.location,
                    format!("{key}.redirect.location"),
                    "invalid location",
                );
            }
            Some(RouteAction::Redirect {
                location: rd.location.get_ref().clone(),
                status,
                keep_path: rd.keep_path,
            })
        } else if let Some(rs) = &r.respond {
            let status = self.status(&rs.status, &format!("{key}.respond.status"), 200..=599);
            let content_type = match http::HeaderValue::from_str(&rs.content_type) {
                Ok(v) => v,
                Err(_) => {
                    self.err(
                        &rs.status,
                        format!("{key}.respond.content_type"),
                        "invalid content type",
                    );
                    http::HeaderValue::from_static("text/plain")
                }
            };
            Some(RouteAction::Respond {
                status,
                body: bytes::Bytes::from(rs.body.clone()),
                content_type,
            })
        } else {
            None
        }
    }
}
