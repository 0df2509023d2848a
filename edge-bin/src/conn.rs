//! What is known about one client connection, shared by the HTTP service,
//! the HTTP/1 framing guard and the access log.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use edge_sni::h1guard::{Flags, Scanner};
use edge_sni::meter::Meter;

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
    /// Bytes moved in either direction (for the idle timeout).
    pub activity: AtomicU64,
    /// Requests seen so far on this connection (HTTP/1 only, in order).
    pub seq: AtomicUsize,
    /// JA4 fingerprint of the ClientHello (access log).
    pub ja4: Option<Arc<str>>,
    /// Negotiated TLS cipher suite (access log).
    pub tls_cipher: Option<&'static str>,
    /// The client certificate verified in the handshake (`[[client_auth]]`).
    pub client_cert: Option<Arc<crate::client_cert::ClientCert>>,
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
            activity: AtomicU64::new(0),
            seq: AtomicUsize::new(0),
            ja4: None,
            tls_cipher: None,
            client_cert: None,
        }
    }

    /// Adds the JA4 fingerprint and cipher suite for the access log.
    pub fn with_tls_details(mut self, ja4: Option<Arc<str>>, cipher: Option<&'static str>) -> Self {
        self.ja4 = ja4;
        self.tls_cipher = cipher;
        self
    }
}

/// The [`Meter`] of a client stream: counts activity, and (for HTTP/1)
/// scans framing (edge-sni's [`Scanner`]). Wrap the stream with
/// [`Metered`](edge_sni::meter::Metered).
#[derive(Debug)]
pub struct Guard {
    scanner: Option<Scanner>,
    conn: Arc<ConnInfo>,
}

impl Guard {
    /// `h1`: scan for CL+TE (false for HTTP/2 connections).
    pub fn new(conn: Arc<ConnInfo>, h1: bool, max_head: usize) -> Self {
        Self {
            scanner: h1.then(|| Scanner::new(max_head)),
            conn,
        }
    }
}

impl Meter for Guard {
    fn on_read(&mut self, data: &[u8]) {
        self.conn
            .activity
            .fetch_add(data.len() as u64 + 1, Ordering::Relaxed);
        if let Some(s) = &mut self.scanner {
            s.feed(data, &self.conn.smuggle);
            if s.stopped() {
                self.scanner = None;
            }
        }
    }
    fn on_write(&mut self, n: usize) {
        self.conn
            .activity
            .fetch_add(n as u64 + 1, Ordering::Relaxed);
    }
}
