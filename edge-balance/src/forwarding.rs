//! What a proxy does to a request's headers before it forwards it: the
//! request's host (from the URI authority or the single `Host`), hop-by-hop
//! stripping (RFC 9110 §7.6.1, the client unable to strip the proxy's own
//! headers by naming them in `Connection`), `X-Forwarded-For/Proto/Host`,
//! `Forwarded` (RFC 7239) and `X-Request-Id` (kept from a trusted upstream,
//! else new).
//!
//! ```
//! use edge_balance::forwarding::{ForwardInfo, set_forwarding, strip_hop_by_hop};
//!
//! let mut h = http::HeaderMap::new();
//! h.insert("connection", "x-forwarded-for, keep-alive".parse().unwrap());
//! h.insert("keep-alive", "timeout=5".parse().unwrap());
//! let info = ForwardInfo {
//!     client: "192.0.2.7:50000".parse().unwrap(),
//!     host: "app.example",
//!     proto: "https",
//!     trusted: false,
//! };
//! strip_hop_by_hop(&mut h);
//! let id = set_forwarding(&mut h, &info, || "id-1".into());
//! assert_eq!(id, "id-1");
//! assert_eq!(h["x-forwarded-for"], "192.0.2.7");
//! assert!(!h.contains_key("keep-alive"));
//! ```

use std::net::{IpAddr, SocketAddr};

use http::header::{CONNECTION, HOST, HeaderName, TE, TRANSFER_ENCODING, UPGRADE};
use http::{HeaderMap, HeaderValue, Request, Version};

/// `X-Request-Id`.
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const FORWARDED: HeaderName = HeaderName::from_static("forwarded");
const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
const PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");
/// The headers [`set_forwarding`] sets on every forwarded request.
const EDGE_HEADERS: [HeaderName; 5] = [
    X_REQUEST_ID,
    X_FORWARDED_FOR,
    X_FORWARDED_PROTO,
    X_FORWARDED_HOST,
    FORWARDED,
];

/// Why a request's Host is refused (400).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostError {
    /// No authority and no `Host`.
    Missing,
    /// More than one `Host`.
    Multiple,
    /// Not a host name, IP literal or address (with an optional port).
    Invalid,
}

/// The request's host (lower case, port removed), from the URI authority
/// (HTTP/2, absolute-form) or the single `Host` header.
pub fn request_host<B>(req: &Request<B>) -> Result<String, HostError> {
    let mut hosts = req.headers().get_all(HOST).iter();
    let header = hosts.next();
    if hosts.next().is_some() {
        return Err(HostError::Multiple);
    }
    let authority = match (req.uri().authority(), header) {
        (Some(a), _) => a.as_str(),
        (None, Some(h)) => h.to_str().map_err(|_| HostError::Invalid)?,
        (None, None) => return Err(HostError::Missing),
    };
    host_of_authority(authority).ok_or(HostError::Invalid)
}

/// `host[:port]` → the host, lower case, without a trailing dot; `None`
/// when it is not a valid DNS name, `[IPv6]` literal or IPv4 address (with
/// user info, a bad port, or characters a host cannot have).
fn host_of_authority(authority: &str) -> Option<String> {
    let (host, port) = if authority.starts_with('[') {
        let end = authority.find(']')?;
        let (h, rest) = authority.split_at(end + 1);
        match rest.strip_prefix(':') {
            Some(p) => (h, Some(p)),
            None if rest.is_empty() => (h, None),
            None => return None,
        }
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    if port.is_some_and(|p| !p.is_empty() && (p.len() > 5 || p.parse::<u16>().is_err())) {
        return None;
    }
    let host = host.strip_suffix('.').unwrap_or(host);
    let valid = if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        v6.parse::<std::net::Ipv6Addr>().is_ok()
    } else {
        !host.is_empty()
            && host.len() <= 253
            && host.split('.').all(|l| {
                !l.is_empty()
                    && l.len() <= 63
                    && l.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            })
    };
    valid.then(|| host.to_ascii_lowercase())
}

/// Whether this is an HTTP/1.1 Upgrade request (WebSocket and the like);
/// returns the `Upgrade` value to pass on.
pub fn upgrade_protocol<B>(req: &Request<B>) -> Option<HeaderValue> {
    if req.version() != Version::HTTP_11 {
        return None;
    }
    let wants = req
        .headers()
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("upgrade"));
    if wants {
        req.headers().get(UPGRADE).cloned()
    } else {
        None
    }
}

/// Removes hop-by-hop headers (RFC 9110 §7.6.1), including those named in `Connection`.
pub fn strip_hop_by_hop(h: &mut HeaderMap) {
    let named: Vec<HeaderName> = h
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        // edge's own headers are end-to-end: a client naming them in
        // `Connection` must not remove what edge added (the backend would
        // lose the client's address).
        .filter(|n| !EDGE_HEADERS.contains(n))
        .collect();
    for n in named {
        h.remove(n);
    }
    for n in [
        CONNECTION,
        KEEP_ALIVE,
        PROXY_CONNECTION,
        TE,
        TRANSFER_ENCODING,
        UPGRADE,
        http::header::TRAILER,
    ] {
        h.remove(n);
    }
}

/// What the forwarding headers say about the client.
#[derive(Debug, Clone)]
pub struct ForwardInfo<'a> {
    /// The client's address (IPv4-mapped IPv6 is written as IPv4).
    pub client: SocketAddr,
    /// The request's host, as [`request_host`] gives it.
    pub host: &'a str,
    /// `https` or `http`: how the client reached the proxy.
    pub proto: &'static str,
    /// The client is a trusted upstream: keep its X-Forwarded-* (append) and X-Request-Id.
    pub trusted: bool,
}

/// Sets `X-Forwarded-For/Proto/Host`, `Forwarded` and `X-Request-Id`; returns the request id used.
pub fn set_forwarding(
    h: &mut HeaderMap,
    fi: &ForwardInfo<'_>,
    new_id: impl FnOnce() -> String,
) -> String {
    let ip = fi.client.ip();
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    let ip_s = ip.to_string();
    let xff = match (
        fi.trusted,
        h.get(&X_FORWARDED_FOR).and_then(|v| v.to_str().ok()),
    ) {
        (true, Some(prev)) if !prev.trim().is_empty() => format!("{prev}, {ip_s}"),
        _ => ip_s.clone(),
    };
    let node = if ip.is_ipv6() {
        format!("\"[{ip_s}]\"")
    } else {
        ip_s
    };
    let fwd_elem = format!("for={node};host=\"{}\";proto={}", fi.host, fi.proto);
    let fwd = match (fi.trusted, h.get(&FORWARDED).and_then(|v| v.to_str().ok())) {
        (true, Some(prev)) if !prev.trim().is_empty() => format!("{prev}, {fwd_elem}"),
        _ => fwd_elem,
    };
    // `insert` replaces every earlier value of the name; an owned string
    // becomes the header value without another copy.
    let set = |h: &mut HeaderMap, n: HeaderName, v: String| match HeaderValue::from_maybe_shared(
        bytes::Bytes::from(v),
    ) {
        Ok(v) => {
            h.insert(n, v);
        }
        Err(_) => {
            h.remove(&n);
        }
    };
    set(h, X_FORWARDED_FOR, xff);
    set(h, FORWARDED, fwd);
    if !(fi.trusted && h.contains_key(&X_FORWARDED_PROTO)) {
        h.insert(X_FORWARDED_PROTO, HeaderValue::from_static(fi.proto));
    }
    if !(fi.trusted && h.contains_key(&X_FORWARDED_HOST)) {
        set(h, X_FORWARDED_HOST, fi.host.to_string());
    }
    let kept = fi
        .trusted
        .then(|| {
            h.get(&X_REQUEST_ID)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        })
        .flatten()
        .filter(|id| !id.is_empty() && id.len() <= 200);
    let id = kept.unwrap_or_else(new_id);
    set(h, X_REQUEST_ID, id.clone());
    id
}

/// A fresh request id: 128 random bits in hex.
pub fn new_request_id() -> String {
    format!("{:032x}", rand::random::<u128>())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(host: Option<&str>, uri: &str) -> Request<()> {
        let mut b = Request::builder().uri(uri);
        if let Some(h) = host {
            b = b.header(HOST, h);
        }
        b.body(()).unwrap()
    }

    #[test]
    fn hosts() {
        assert_eq!(
            request_host(&req(Some("Example.COM:8443"), "/")),
            Ok("example.com".into())
        );
        assert_eq!(request_host(&req(None, "https://a.b/x")), Ok("a.b".into()));
        assert_eq!(request_host(&req(None, "/")), Err(HostError::Missing));
        assert_eq!(
            request_host(&req(Some("bad host"), "/")),
            Err(HostError::Invalid)
        );
        assert_eq!(
            request_host(&req(Some("a/b"), "/")),
            Err(HostError::Invalid)
        );
        assert_eq!(
            request_host(&req(Some("[::1]:80"), "/")),
            Ok("[::1]".into())
        );
        assert_eq!(request_host(&req(Some("a.b.:443"), "/")), Ok("a.b".into()));
        assert_eq!(request_host(&req(Some("a.b:"), "/")), Ok("a.b".into()));
        for bad in [
            "u@a.b",
            "a.b:99999",
            "a.b:x",
            "[::1]x",
            "[::1",
            "a:b:c",
            ":80",
            "[zz]",
        ] {
            assert_eq!(
                request_host(&req(Some(bad), "/")),
                Err(HostError::Invalid),
                "{bad}"
            );
        }
        let mut r = req(Some("a"), "/");
        r.headers_mut().append(HOST, HeaderValue::from_static("b"));
        assert_eq!(request_host(&r), Err(HostError::Multiple));
    }

    /// The order of the data path: forwarding headers set, then the
    /// request's hop-by-hop headers stripped on the way to the backend.
    #[test]
    fn connection_cannot_strip_the_forwarding_headers() {
        let mut h = HeaderMap::new();
        h.insert(
            CONNECTION,
            HeaderValue::from_static(
                "X-Forwarded-For, forwarded, x-request-id, X-Forwarded-Proto, x-forwarded-host, x-gone",
            ),
        );
        h.insert("x-gone", HeaderValue::from_static("1"));
        let fi = ForwardInfo {
            client: "192.0.2.7:1".parse().unwrap(),
            host: "a.example",
            proto: "https",
            trusted: false,
        };
        set_forwarding(&mut h, &fi, || "fresh".into());
        strip_hop_by_hop(&mut h);
        assert!(!h.contains_key("x-gone") && !h.contains_key(CONNECTION));
        assert_eq!(h["x-forwarded-for"], "192.0.2.7");
        assert_eq!(h["x-request-id"], "fresh");
        for n in ["forwarded", "x-forwarded-proto", "x-forwarded-host"] {
            assert!(h.contains_key(n), "{n} stripped");
        }
    }

    #[test]
    fn hop_by_hop_and_forwarding() {
        let mut h = HeaderMap::new();
        h.insert(CONNECTION, HeaderValue::from_static("keep-alive, x-secret"));
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("x-forwarded-for", HeaderValue::from_static("6.6.6.6"));
        h.insert("x-request-id", HeaderValue::from_static("forged"));
        h.insert("accept", HeaderValue::from_static("*/*"));
        strip_hop_by_hop(&mut h);
        assert!(!h.contains_key("x-secret") && !h.contains_key(CONNECTION));
        let fi = ForwardInfo {
            client: "[::ffff:192.0.2.7]:1".parse().unwrap(),
            host: "a.example",
            proto: "https",
            trusted: false,
        };
        let id = set_forwarding(&mut h, &fi, || "fresh".into());
        assert_eq!(id, "fresh");
        assert_eq!(h["x-forwarded-for"], "192.0.2.7");
        assert_eq!(
            h["forwarded"],
            "for=192.0.2.7;host=\"a.example\";proto=https"
        );
        assert_eq!(h["x-forwarded-proto"], "https");
        assert_eq!(h["accept"], "*/*");
        let fi = ForwardInfo {
            trusted: true,
            ..fi
        };
        h.insert("x-request-id", HeaderValue::from_static("upstream-id"));
        let id = set_forwarding(&mut h, &fi, || "fresh".into());
        assert_eq!(id, "upstream-id");
        assert_eq!(h["x-forwarded-for"], "192.0.2.7, 192.0.2.7");
    }
}
