//! The HTTP / HTTPS request probe.

use std::net::SocketAddr;

use bytes::Bytes;
use http::header::{CONNECTION, HOST, USER_AGENT};
use http::uri::PathAndQuery;
use http::{HeaderValue, Method, Request};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use regex::bytes::Regex;

use super::StatusSet;
use super::tls::{CompiledTls, TlsProbe};
use crate::error::ConfigError;
use crate::reason::Reason;

/// Largest `max_body` accepted.
const MAX_BODY_LIMIT: usize = 1 << 20;

/// What the response body must contain.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum BodyMatch {
    /// The body contains this text.
    Contains(String),
    /// The body matches this regular expression (`regex` crate syntax,
    /// unanchored).
    Regex(String),
}

/// An HTTP request probe (HAProxy `option httpchk` + `http-check expect`).
#[derive(Debug, Clone)]
pub struct HttpProbe {
    /// Request method. Default `GET`.
    pub method: Method,
    /// Path and query. Default `/`.
    pub path: String,
    /// `Host` header. Default: the target's `ip:port`.
    pub host: Option<String>,
    /// Statuses that pass. Default `200-399`.
    pub expect_status: StatusSet,
    /// Optional body check. Default none (the body is not read).
    pub body: Option<BodyMatch>,
    /// Bytes of body read at most for the body check; a longer body is
    /// matched on its first `max_body` bytes. Default 16 KiB, at most 1 MiB.
    pub max_body: usize,
    /// Speak HTTPS: the TLS settings. Default none (plain HTTP).
    pub tls: Option<TlsProbe>,
}

impl Default for HttpProbe {
    fn default() -> Self {
        Self {
            method: Method::GET,
            path: "/".into(),
            host: None,
            expect_status: StatusSet::default(),
            body: None,
            max_body: 16 * 1024,
            tls: None,
        }
    }
}

impl HttpProbe {
    /// A GET probe of `path`.
    pub fn get(path: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            ..Self::default()
        }
    }
    /// Sets the method.
    pub fn method(mut self, m: Method) -> Self {
        self.method = m;
        self
    }
    /// Sets the `Host` header.
    pub fn host(mut self, h: impl Into<String>) -> Self {
        self.host = Some(h.into());
        self
    }
    /// Sets the expected statuses.
    pub fn expect_status(mut self, s: StatusSet) -> Self {
        self.expect_status = s;
        self
    }
    /// Requires the body to contain `text`.
    pub fn body_contains(mut self, text: impl Into<String>) -> Self {
        self.body = Some(BodyMatch::Contains(text.into()));
        self
    }
    /// Requires the body to match `regex`.
    pub fn body_regex(mut self, regex: impl Into<String>) -> Self {
        self.body = Some(BodyMatch::Regex(regex.into()));
        self
    }
    /// Sets the body read limit.
    pub fn max_body(mut self, n: usize) -> Self {
        self.max_body = n;
        self
    }
    /// Speaks HTTPS with these TLS settings.
    pub fn tls(mut self, t: TlsProbe) -> Self {
        self.tls = Some(t);
        self
    }

    pub(crate) fn compile(&self) -> Result<CompiledHttp, ConfigError> {
        if !self.path.starts_with('/') {
            return Err(ConfigError::Invalid {
                field: "http.path",
                value: self.path.clone(),
                reason: "must start with '/'".into(),
            });
        }
        let path: PathAndQuery = self.path.parse().map_err(|e| ConfigError::Invalid {
            field: "http.path",
            value: self.path.clone(),
            reason: format!("{e}"),
        })?;
        let host = match &self.host {
            None => None,
            Some(h) if h.is_empty() => return Err(ConfigError::Empty { field: "http.host" }),
            Some(h) => Some(HeaderValue::from_str(h).map_err(|e| ConfigError::Invalid {
                field: "http.host",
                value: h.clone(),
                reason: format!("{e}"),
            })?),
        };
        if self.expect_status.is_empty() {
            return Err(ConfigError::Empty {
                field: "http.expect_status",
            });
        }
        if self.max_body == 0 || self.max_body > MAX_BODY_LIMIT {
            return Err(ConfigError::OutOfRange {
                field: "http.max_body",
                value: self.max_body as u64,
                min: 1,
                max: MAX_BODY_LIMIT as u64,
            });
        }
        let body = match &self.body {
            None => None,
            Some(BodyMatch::Contains(t)) if t.is_empty() => {
                return Err(ConfigError::Empty {
                    field: "http.body_contains",
                });
            }
            Some(BodyMatch::Contains(t)) => {
                Some(
                    Regex::new(&regex::escape(t)).map_err(|e| ConfigError::Invalid {
                        field: "http.body_contains",
                        value: t.clone(),
                        reason: e.to_string(),
                    })?,
                )
            }
            Some(BodyMatch::Regex(r)) => Some(Regex::new(r).map_err(|e| ConfigError::Invalid {
                field: "http.body_regex",
                value: r.clone(),
                reason: e.to_string(),
            })?),
        };
        let tls = match &self.tls {
            None => None,
            Some(t) => Some(t.compile("http.tls")?),
        };
        Ok(CompiledHttp {
            method: self.method.clone(),
            path,
            host,
            expect_status: self.expect_status.clone(),
            body,
            max_body: self.max_body,
            tls,
        })
    }
}

#[derive(Debug)]
pub(crate) struct CompiledHttp {
    method: Method,
    path: PathAndQuery,
    host: Option<HeaderValue>,
    expect_status: StatusSet,
    body: Option<Regex>,
    max_body: usize,
    tls: Option<CompiledTls>,
}

impl CompiledHttp {
    pub(crate) async fn run(&self, target: SocketAddr) -> Result<(), Reason> {
        let tcp = super::connect(target).await?;
        match &self.tls {
            None => self.exchange(TokioIo::new(tcp), target).await,
            Some(t) => {
                let tls = t.handshake(tcp, target).await?;
                self.exchange(TokioIo::new(tls), target).await
            }
        }
    }

    async fn exchange<I>(&self, io: I, target: SocketAddr) -> Result<(), Reason>
    where
        I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    {
        let (mut sender, conn) = hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(io)
            .await
            .map_err(|e| hyper_error(&e))?;
        let host = match &self.host {
            Some(h) => h.clone(),
            None => HeaderValue::from_str(&target.to_string())
                .map_err(|e| Reason::Protocol(e.to_string()))?,
        };
        let req = Request::builder()
            .method(self.method.clone())
            .uri(self.path.clone())
            .header(HOST, host)
            .header(USER_AGENT, "edge-health")
            .header(CONNECTION, "close")
            .body(Empty::new())
            .map_err(|e| Reason::Protocol(e.to_string()))?;
        let work = async move {
            let resp = sender
                .send_request(req)
                .await
                .map_err(|e| hyper_error(&e))?;
            let status = resp.status().as_u16();
            if !self.expect_status.contains(status) {
                return Err(Reason::Status(status));
            }
            if let Some(re) = &self.body {
                let body = read_prefix(resp.into_body(), self.max_body).await?;
                if !re.is_match(&body) {
                    return Err(Reason::BodyMismatch);
                }
            }
            Ok(())
        };
        // The connection is driven here, not in a spawned task, so a probe
        // that is dropped (timeout, shutdown) leaves nothing behind.
        tokio::pin!(work, conn);
        tokio::select! {
            biased;
            r = &mut work => r,
            _ = &mut conn => work.await,
        }
    }
}

/// Reads at most `max` bytes of body; a longer body is cut, not refused.
async fn read_prefix(mut body: hyper::body::Incoming, max: usize) -> Result<Vec<u8>, Reason> {
    let mut out = Vec::new();
    while out.len() < max {
        match body.frame().await {
            None => break,
            Some(Err(e)) => return Err(hyper_error(&e)),
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    let room = max.saturating_sub(out.len());
                    out.extend_from_slice(data.get(..room.min(data.len())).unwrap_or(&data));
                }
            }
        }
    }
    Ok(out)
}

fn hyper_error(e: &hyper::Error) -> Reason {
    let mut src: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(s) = src {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            // HTTPS: a TLS alert after the handshake (TLS 1.3 servers refuse
            // a missing client certificate so) is a TLS failure.
            if let Some(t) = io.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
                return Reason::Tls(t.to_string());
            }
            return Reason::from_io(io);
        }
        src = s.source();
    }
    if e.is_incomplete_message() || e.is_canceled() || e.is_closed() {
        Reason::Closed
    } else if e.is_parse() {
        Reason::Protocol(e.to_string())
    } else {
        Reason::Io(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_bad_settings_naming_the_field() {
        let e = HttpProbe::get("health").compile().unwrap_err();
        assert!(e.to_string().starts_with("http.path"));
        let e = HttpProbe::get("/").max_body(0).compile().unwrap_err();
        assert!(e.to_string().starts_with("http.max_body"));
        let e = HttpProbe::get("/").body_regex("(").compile().unwrap_err();
        assert!(e.to_string().starts_with("http.body_regex"));
        let e = HttpProbe::get("/").host("a\nb").compile().unwrap_err();
        assert!(e.to_string().starts_with("http.host"));
        let e = HttpProbe::get("/").body_contains("").compile().unwrap_err();
        assert!(e.to_string().starts_with("http.body_contains"));
        assert!(HttpProbe::get("/health?full=1").compile().is_ok());
    }
}
