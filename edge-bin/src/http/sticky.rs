//! Sticky sessions by a cookie edge inserts (`[[pool]] sticky_cookie`,
//! HAProxy's `cookie SRV insert`): a response from a server carries
//! `Set-Cookie: NAME=<id>` naming that server (edge-balance's
//! `endpoint_id` of its address, in hex: the address itself is not shown);
//! a request carrying the cookie goes to that server while it is in
//! rotation (edge-balance's `Prefer`), and to the policy's pick, which
//! then sets the cookie anew, when it is not.

use std::net::SocketAddr;

use http::header::SET_COOKIE;
use http::{HeaderMap, HeaderValue, Request};

/// Reads the cookie `name` of `req` and, when it names a server id,
/// asks the balancer to prefer it. Returns the id read.
pub(super) fn prefer<B>(req: &mut Request<B>, name: &str) -> Option<u64> {
    let id = edge_balance::cookie_value(req.headers(), name)
        .filter(|v| v.len() == 16)
        .and_then(|v| std::str::from_utf8(v).ok())
        .and_then(|s| u64::from_str_radix(s, 16).ok())?;
    req.extensions_mut().insert(edge_balance::Prefer(id));
    Some(id)
}

/// Sets the cookie `name` to `server`'s id in a response, unless the
/// request already carried that id.
pub(super) fn set_cookie(
    headers: &mut HeaderMap,
    name: &str,
    sent: Option<u64>,
    server: &SocketAddr,
) {
    let id = edge_balance::endpoint_id(server);
    if sent == Some(id) {
        return;
    }
    let cookie = format!("{name}={id:016x}; Path=/; HttpOnly; Secure; SameSite=Lax");
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        headers.append(SET_COOKIE, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cookie_set_is_the_cookie_read() {
        let server: SocketAddr = "127.0.0.1:9000".parse().unwrap();
        let mut h = HeaderMap::new();
        set_cookie(&mut h, "SRV", None, &server);
        let set = h.get(SET_COOKIE).unwrap().to_str().unwrap().to_owned();
        let pair = set.split(';').next().unwrap();
        assert!(set.contains("HttpOnly") && set.contains("Path=/"), "{set}");
        let mut req = Request::builder()
            .header("cookie", format!("a=b; {pair}"))
            .body(())
            .unwrap();
        let id = prefer(&mut req, "SRV").unwrap();
        assert_eq!(id, edge_balance::endpoint_id(&server));
        assert_eq!(
            req.extensions().get::<edge_balance::Prefer>(),
            Some(&edge_balance::Prefer(id))
        );
        // Already carried: not set again.
        let mut h = HeaderMap::new();
        set_cookie(&mut h, "SRV", Some(id), &server);
        assert!(h.is_empty());
        // Garbage is no preference, and never a panic.
        for bad in ["SRV=zz", "SRV=", "SRV=0123456789abcdef0", "SRV=ééééééééé"] {
            let mut req = Request::builder().header("cookie", bad).body(()).unwrap();
            assert_eq!(prefer(&mut req, "SRV"), None, "{bad}");
            assert!(req.extensions().get::<edge_balance::Prefer>().is_none());
        }
    }
}
