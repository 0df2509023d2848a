//! HTTP/3 (`[https] http3 = true`): QUIC on UDP at the HTTPS listener's
//! addresses, with the TLS settings of the TCP listener (same certificate
//! resolver, session tickets and key exchange groups; ALPN `h3`, 0-RTT
//! off), serving its requests through the same [`crate::http::serve`] as
//! HTTP/1 and HTTP/2: routes, pools, forwarding headers, access log
//! (protocol `h3`) and metrics.
//!
//! [`server`] is the generic part (h3 request streams as calls of a tower
//! service); [`endpoint`] binds the UDP sockets, protects the handshake
//! (connection cap, per-client limit, Retry under load, timeout) and wires
//! each connection to the state it was accepted under.

pub mod endpoint;
pub mod server;

use std::sync::Arc;

use http::{HeaderMap, HeaderValue};

use crate::state::State;

pub use endpoint::Endpoints;

/// How long a client may remember the `Alt-Svc` advertisement (`ma`).
const ALT_SVC_MAX_AGE: u32 = 86_400;

/// Adds `Alt-Svc: h3=":PORT"` to an HTTP/1 or HTTP/2 response: the port of
/// the first `[https] listen` address (HTTP/3 listens on every one). Not
/// for an SNI under `[[client_auth]]`, which HTTP/3 answers 421.
pub fn advertise(state: &State, sni: Option<&str>, headers: &mut HeaderMap) {
    if sni.is_some_and(|s| state.client_auth_of(s).is_some()) {
        return;
    }
    let Some(port) = state.https.listen.first().map(|a| a.port()) else {
        return;
    };
    let value = format!("h3=\":{port}\"; ma={ALT_SVC_MAX_AGE}");
    if let Ok(v) = HeaderValue::from_str(&value) {
        headers.insert(http::header::ALT_SVC, v);
    }
}

/// Why a state's TLS settings cannot serve QUIC.
#[derive(Debug, thiserror::Error)]
pub enum QuicConfigError {
    /// rustls refuses the settings for QUIC (no TLS 1.3, no QUIC suite).
    #[error("TLS settings unusable for QUIC: {0}")]
    Tls(#[from] rustls::Error),
    /// No cipher suite for QUIC's Initial packets.
    #[error("TLS settings unusable for QUIC: {0}")]
    NoInitialSuite(#[from] quinn::crypto::rustls::NoInitialCipherSuite),
}

/// The QUIC server settings of `state`: its TLS settings for hosts without
/// `[[client_auth]]` with ALPN `h3` and no early data (0-RTT off), and the
/// transport limits of `[limits]`.
pub fn server_config(state: &State) -> Result<quinn::ServerConfig, QuicConfigError> {
    let mut tls = (*state.tls).clone();
    tls.alpn_protocols = vec![b"h3".to_vec()];
    tls.max_early_data_size = 0;
    let tls = Arc::new(tls);
    // Checked here: quinn would panic on settings rustls refuses for QUIC.
    rustls::quic::ServerConnection::new(tls.clone(), rustls::quic::Version::V1, Vec::new())?;
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls)?;
    let mut cfg = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    cfg.transport_config(Arc::new(transport(&state.limits)));
    Ok(cfg)
}

/// QUIC transport limits from `[limits]`.
fn transport(l: &crate::config::Limits) -> quinn::TransportConfig {
    let mut t = quinn::TransportConfig::default();
    t.max_concurrent_bidi_streams(l.h2_max_concurrent_streams.into())
        // The client's control and QPACK streams, and room for grease.
        .max_concurrent_uni_streams(8u32.into())
        .max_idle_timeout(quinn::IdleTimeout::try_from(l.idle_timeout.0).ok())
        // No keep-alive from the server: an idle client is closed.
        .keep_alive_interval(None);
    t
}
