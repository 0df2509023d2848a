//! What is known about one client connection, shared by the HTTP service,
//! the HTTP/1 framing guard and the access log.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// What is known about the client connection.
#[derive(Debug)]
pub struct ConnInfo {
    /// The client (from PROXY protocol when a trusted upstream sent one).
    pub client: SocketAddr,
    pub sni: Option<String>,
    pub tls_version: Option<&'static str>,
    /// Requests being served on this connection (for the idle timeout).
    pub in_flight: AtomicUsize,
    /// Requests started on this connection: the HTTP/2 idle timeout counts
    /// these, not bytes, so a client's PINGs do not keep it open.
    pub requests: AtomicU64,
    /// Set by the HTTP/1 framing guard when a request had both
    /// Content-Length and Transfer-Encoding: the index of that request.
    pub smuggle: Flags,
    /// Requests seen so far on this connection (HTTP/1 only, in order).
    pub seq: AtomicUsize,
    /// JA4 fingerprint of the ClientHello (access log).
    pub ja4: Option<Arc<str>>,
    /// Negotiated TLS cipher suite (access log).
    pub tls_cipher: Option<&'static str>,
}

impl ConnInfo {
    pub fn new(client: SocketAddr, sni: Option<String>, tls_version: Option<&'static str>) -> Self {
        Self {
            client,
            sni,
            tls_version,
            in_flight: AtomicUsize::new(0),
            requests: AtomicU64::new(0),
            smuggle: Default::default(),
            seq: AtomicUsize::new(0),
            ja4: None,
            tls_cipher: None,
        }
    }

    /// Adds the JA4 fingerprint and cipher suite for the access log.
    pub fn with_tls_details(mut self, ja4: Option<Arc<str>>, cipher: Option<&'static str>) -> Self {
        self.ja4 = ja4;
        self.tls_cipher = cipher;
        self
    }
}

/// Per-connection flags shared with the HTTP service.
#[derive(Debug, Default)]
pub struct Flags {
    /// 1 + index of the first request with CL+TE; 0 = none.
    flagged: AtomicUsize,
    /// Bytes moved in either direction (for the idle timeout).
    pub activity: AtomicU64,
}

impl Flags {
    /// Marks request number `seq` (0-based) as having both CL and TE; only
    /// the first such request is kept.
    pub fn flag(&self, seq: usize) {
        let _ = self.flagged.compare_exchange(
            0,
            seq.wrapping_add(1),
            Ordering::AcqRel,
            Ordering::Relaxed,
        );
    }

    /// The first request (0-based) that had both CL and TE, if any.
    pub fn first_flagged(&self) -> Option<usize> {
        self.flagged.load(Ordering::Acquire).checked_sub(1)
    }

    /// Whether request number `seq` (0-based) had both CL and TE.
    pub fn is_flagged(&self, seq: usize) -> bool {
        self.flagged.load(Ordering::Acquire) == seq.wrapping_add(1)
    }
}
