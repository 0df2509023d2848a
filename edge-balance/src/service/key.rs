//! What a request tells the balancer: its hash key.

use std::net::SocketAddr;

use std::hash::Hash;

use crate::balancer::{Balancer, PickContext, Picked};
use crate::error::NoEndpoint;
use crate::hash::{HashKey, hash_bytes, hash_ip};
use crate::policy::HashSource;

/// Picks for `req`, with its hash key when the policy hashes.
pub(crate) fn pick_for<K, T, R>(
    balancer: &Balancer<K, T>,
    req: &R,
) -> Result<Picked<K, T>, NoEndpoint>
where
    K: Clone + Eq + Hash,
    R: BalanceKey,
{
    let hash_key = balancer
        .policy()
        .hash_source()
        .and_then(|s| req.hash_key(s));
    balancer.pick(&PickContext::new().hash_key(hash_key))
}

/// The client's address, as a request extension (edge-bin inserts it when
/// it accepts a connection).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClientAddr(pub SocketAddr);

/// A request the balancing services can take: it yields the hash key a
/// hashing policy asks for.
///
/// Implemented for `http::Request` (extensions [`HashKey`] and
/// [`ClientAddr`], headers, cookies), for `(IO, SocketAddr)` (an accepted
/// connection and its peer) and for `tokio::net::TcpStream`.
pub trait BalanceKey {
    /// The key for `source`, or `None` when the request does not carry it.
    fn hash_key(&self, source: &HashSource) -> Option<u64>;
}

impl<B> BalanceKey for http::Request<B> {
    fn hash_key(&self, source: &HashSource) -> Option<u64> {
        if let Some(HashKey(k)) = self.extensions().get::<HashKey>() {
            return Some(*k);
        }
        match source {
            HashSource::SourceIp => self
                .extensions()
                .get::<ClientAddr>()
                .map(|a| hash_ip(a.0.ip())),
            HashSource::Header(name) => header_key(self.headers(), name),
            HashSource::Cookie(name) => cookie(self.headers(), name).map(hash_bytes),
        }
    }
}

/// All values of a header, in order, hashed as one string.
fn header_key(headers: &http::HeaderMap, name: &http::HeaderName) -> Option<u64> {
    let mut values = headers.get_all(name).iter();
    let first = values.next()?;
    let mut rest = values.peekable();
    if rest.peek().is_none() {
        return Some(hash_bytes(first.as_bytes()));
    }
    let mut joined = first.as_bytes().to_vec();
    for v in rest {
        joined.extend_from_slice(b", ");
        joined.extend_from_slice(v.as_bytes());
    }
    Some(hash_bytes(&joined))
}

/// The value of cookie `name` in the request's `Cookie` headers
/// (RFC 6265 §5.4: `name=value` pairs separated by `;`; a quoted value
/// unquoted).
pub fn cookie_value<'h>(headers: &'h http::HeaderMap, name: &str) -> Option<&'h [u8]> {
    cookie(headers, name)
}

pub(crate) fn cookie<'h>(headers: &'h http::HeaderMap, name: &str) -> Option<&'h [u8]> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b';'))
        .find_map(|pair| {
            let pair = pair.trim_ascii();
            let eq = pair.iter().position(|&b| b == b'=')?;
            let (k, v) = (pair.get(..eq)?, pair.get(eq + 1..)?);
            (k.trim_ascii() == name.as_bytes()).then(|| {
                let v = v.trim_ascii();
                // A quoted value is the same cookie as the bare one.
                v.strip_prefix(b"\"")
                    .and_then(|v| v.strip_suffix(b"\""))
                    .unwrap_or(v)
            })
        })
}

impl<IO> BalanceKey for (IO, SocketAddr) {
    fn hash_key(&self, source: &HashSource) -> Option<u64> {
        match source {
            HashSource::SourceIp => Some(hash_ip(self.1.ip())),
            _ => None,
        }
    }
}

impl BalanceKey for tokio::net::TcpStream {
    fn hash_key(&self, source: &HashSource) -> Option<u64> {
        match source {
            HashSource::SourceIp => self.peer_addr().ok().map(|a| hash_ip(a.ip())),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(headers: &[(&str, &str)]) -> http::Request<()> {
        let mut b = http::Request::builder();
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap_or_default()
    }

    #[test]
    fn cookie_is_found_among_others() {
        let r = req(&[("cookie", "a=1; SRV=abc ; b=2"), ("cookie", "c=3")]);
        assert_eq!(cookie(r.headers(), "SRV"), Some(&b"abc"[..]));
        assert_eq!(cookie(r.headers(), "c"), Some(&b"3"[..]));
        assert_eq!(cookie(r.headers(), "srv"), None);
        let q = req(&[("cookie", "SRV=\"abc\"")]);
        assert_eq!(cookie(q.headers(), "SRV"), Some(&b"abc"[..]));
        let bad = req(&[("cookie", "novalue; =x; SRV")]);
        assert_eq!(cookie(bad.headers(), "SRV"), None);
    }

    #[test]
    fn keys_come_from_the_named_source() {
        let mut r = req(&[("x-user", "u1"), ("cookie", "sid=s1")]);
        let h = HashSource::Header(http::HeaderName::from_static("x-user"));
        assert_eq!(r.hash_key(&h), Some(hash_bytes(b"u1")));
        assert_eq!(
            r.hash_key(&HashSource::Cookie("sid".into())),
            Some(hash_bytes(b"s1"))
        );
        assert_eq!(r.hash_key(&HashSource::SourceIp), None);
        let addr: SocketAddr = "127.0.0.1:4000"
            .parse()
            .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 4000)));
        r.extensions_mut().insert(ClientAddr(addr));
        assert_eq!(r.hash_key(&HashSource::SourceIp), Some(hash_ip(addr.ip())));
        r.extensions_mut().insert(HashKey(7));
        assert_eq!(r.hash_key(&HashSource::SourceIp), Some(7));
    }

    #[test]
    fn repeated_headers_hash_joined() {
        let r = req(&[("x-k", "a"), ("x-k", "b")]);
        let h = HashSource::Header(http::HeaderName::from_static("x-k"));
        assert_eq!(r.hash_key(&h), Some(hash_bytes(b"a, b")));
    }
}
