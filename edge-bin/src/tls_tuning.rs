//! TLS server settings chosen for speed without giving up security: the
//! server's cipher-suite order (nginx's `ssl_prefer_server_ciphers on`),
//! stateless session tickets, and one ticket per connection.
//!
//! - **Suite order.** Clients (OpenSSL's default among them) list
//!   AES-256-GCM with SHA-384 first. SHA-384 has no CPU instructions on x86,
//!   while SHA-256 has (SHA-NI), and AES-128 does fewer rounds than AES-256,
//!   so edge prefers AES-128-GCM on CPUs with AES instructions and
//!   ChaCha20-Poly1305 on CPUs without them (where software AES is slow
//!   and not constant-time), then the others. Every suite stays enabled.
//! - **Key exchange.** rustls' aws-lc-rs provider, for the hybrid
//!   post-quantum group X25519MLKEM768 (ring has no ML-KEM), beside
//!   X25519, P-256 and P-384 for clients without it; the groups are
//!   `[https] key_exchange_groups` (`config::KeyExchangeGroup`).
//! - **Tickets.** TLS 1.3 resumption with stateless tickets (edge-sni's
//!   ticketer: ChaCha20-Poly1305, a key set rotated every 6 hours), as nginx
//!   and HAProxy do by default: no per-client server state, and no
//!   256-entry cache limit. TLS 1.2 keeps session-ID resumption through the
//!   cache. A reload keeps both (the ticket keys and the cache); the keys
//!   also survive a restart through `[tickets] keys_file` and are shared
//!   with the other node of a pair over `[peer]`, so a client resumes
//!   after a failover too.
//! - **One ticket per handshake** instead of rustls' two: each costs an
//!   encryption and random bytes, and a client that resumes gets a fresh one
//!   every time (OpenSSL sends one after a resumed handshake too).

use rustls::CipherSuite;
use rustls::crypto::CryptoProvider;

use crate::config::KeyExchangeGroup;

/// The aws-lc-rs provider with the default key exchange groups
/// (X25519MLKEM768 first) and its cipher suites in edge's preference order.
pub fn server_provider() -> CryptoProvider {
    server_provider_with(&KeyExchangeGroup::DEFAULT)
}

/// [`server_provider`] accepting only the key exchange `groups`, in that
/// order (rustls takes the client's first group on the list).
pub fn server_provider_with(groups: &[KeyExchangeGroup]) -> CryptoProvider {
    let mut provider = rustls::crypto::aws_lc_rs::default_provider();
    provider.kx_groups = groups.iter().map(|g| g.rustls()).collect();
    let aes = cpu_has_aes();
    // Stable sort: suites of equal rank keep the provider's order.
    provider
        .cipher_suites
        .sort_by_key(|s| suite_rank(s.suite(), aes));
    provider
}

/// Applies edge's suite-order and ticket settings to a server config built
/// with [`server_provider`].
///
/// Tickets are encrypted with the process's ticket keys
/// (`crate::tickets`: kept in `[tickets] keys_file` across restarts
/// and shared with the other node of a pair over `[peer]`).
///
/// `previous`: the config this one replaces (a reload). Its ticket keys and
/// its TLS 1.2 session cache are kept, so a client resumes across a reload
/// as if nothing happened.
pub fn tune(
    config: &mut rustls::ServerConfig,
    previous: Option<&rustls::ServerConfig>,
) -> Result<(), rustls::Error> {
    config.ignore_client_order = true;
    match previous {
        Some(p) => {
            config.ticketer = p.ticketer.clone();
            config.session_storage = p.session_storage.clone();
        }
        None => config.ticketer = crate::tickets::ticketer()?,
    }
    config.send_tls13_tickets = 1;
    Ok(())
}

/// Lower is preferred.
fn suite_rank(suite: CipherSuite, aes: bool) -> u8 {
    #[derive(PartialEq)]
    enum Kind {
        Aes128,
        Aes256,
        Chacha,
        Other,
    }
    let kind = match suite {
        CipherSuite::TLS13_AES_128_GCM_SHA256
        | CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
        | CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 => Kind::Aes128,
        CipherSuite::TLS13_AES_256_GCM_SHA384
        | CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384
        | CipherSuite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384 => Kind::Aes256,
        CipherSuite::TLS13_CHACHA20_POLY1305_SHA256
        | CipherSuite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256
        | CipherSuite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256 => Kind::Chacha,
        _ => Kind::Other,
    };
    match (kind, aes) {
        (Kind::Aes128, true) | (Kind::Chacha, false) => 0,
        (Kind::Aes256, true) | (Kind::Aes128, false) => 1,
        (Kind::Chacha, true) | (Kind::Aes256, false) => 2,
        (Kind::Other, _) => 3,
    }
}

/// Whether the CPU has the AES (and carry-less multiply, for GCM) instructions.
pub fn cpu_has_aes() -> bool {
    #[cfg(any(target_arch = "x86_64", target_arch = "x86"))]
    {
        std::arch::is_x86_feature_detected!("aes")
            && std::arch::is_x86_feature_detected!("pclmulqdq")
    }
    #[cfg(target_arch = "aarch64")]
    {
        std::arch::is_aarch64_feature_detected!("aes")
            && std::arch::is_aarch64_feature_detected!("pmull")
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "x86", target_arch = "aarch64")))]
    {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
    use rustls::{ClientConfig, ClientConnection, ServerConfig, ServerConnection};

    fn server() -> (Arc<ServerConfig>, CertificateDer<'static>) {
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let der = cert.cert.der().clone();
        let key = PrivateKeyDer::Pkcs8(cert.signing_key.serialize_der().into());
        let mut cfg = ServerConfig::builder_with_provider(Arc::new(server_provider()))
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![der.clone()], key)
            .unwrap();
        tune(&mut cfg, None).unwrap();
        (Arc::new(cfg), der)
    }

    /// A client that lists AES-256-GCM first, as OpenSSL does.
    fn client(ca: &CertificateDer<'static>) -> Arc<ClientConfig> {
        let mut provider = rustls::crypto::ring::default_provider();
        provider
            .cipher_suites
            .sort_by_key(|s| s.suite() != CipherSuite::TLS13_AES_256_GCM_SHA384);
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca.clone()).unwrap();
        Arc::new(
            ClientConfig::builder_with_provider(Arc::new(provider))
                .with_protocol_versions(&[&rustls::version::TLS13])
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth(),
        )
    }

    /// Runs a handshake in memory, then lets the client read the tickets.
    fn handshake(
        s: &Arc<ServerConfig>,
        c: &Arc<ClientConfig>,
    ) -> (ServerConnection, ClientConnection) {
        let mut server = ServerConnection::new(s.clone()).unwrap();
        let name = ServerName::try_from("localhost").unwrap();
        let mut client = ClientConnection::new(c.clone(), name).unwrap();
        for _ in 0..10 {
            let mut buf = Vec::new();
            while client.wants_write() {
                client.write_tls(&mut buf).unwrap();
            }
            let mut rd = &buf[..];
            while !rd.is_empty() {
                server.read_tls(&mut rd).unwrap();
                server.process_new_packets().unwrap();
            }
            let mut buf = Vec::new();
            while server.wants_write() {
                server.write_tls(&mut buf).unwrap();
            }
            let mut rd = &buf[..];
            while !rd.is_empty() {
                client.read_tls(&mut rd).unwrap();
                client.process_new_packets().unwrap();
            }
        }
        assert!(!server.is_handshaking() && !client.is_handshaking());
        (server, client)
    }

    #[test]
    fn server_order_wins_and_tickets_resume() {
        let (s, ca) = server();
        let c = client(&ca);
        let (server, _client) = handshake(&s, &c);
        let want = if cpu_has_aes() {
            CipherSuite::TLS13_AES_128_GCM_SHA256
        } else {
            CipherSuite::TLS13_CHACHA20_POLY1305_SHA256
        };
        assert_eq!(server.negotiated_cipher_suite().unwrap().suite(), want);
        // The ticket from the first connection resumes the second (stateless
        // ticketer: nothing stored server-side).
        let (server2, _) = handshake(&s, &c);
        assert_eq!(
            server2.handshake_kind(),
            Some(rustls::HandshakeKind::Resumed)
        );
    }

    #[test]
    fn every_suite_stays_enabled() {
        let before = rustls::crypto::aws_lc_rs::default_provider()
            .cipher_suites
            .len();
        assert_eq!(server_provider().cipher_suites.len(), before);
        for aes in [true, false] {
            assert_eq!(
                suite_rank(CipherSuite::TLS13_AES_128_GCM_SHA256, aes) == 0,
                aes
            );
            assert_eq!(
                suite_rank(CipherSuite::TLS13_CHACHA20_POLY1305_SHA256, aes) == 0,
                !aes
            );
        }
    }
}
