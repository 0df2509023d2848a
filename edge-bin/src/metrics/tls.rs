//! TLS handshakes on the public port: the labels of
//! `edge_tls_handshakes_total` (version, resumed or full, key exchange
//! group) and why one failed (the `reason` label of
//! `edge_tls_handshake_failures_total`).

/// What a completed handshake was: the labels of
/// `edge_tls_handshakes_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Handshake {
    /// `"1.2"` or `"1.3"` (`"other"` for anything else).
    pub version: &'static str,
    /// The client resumed a session (ticket, session ID or PSK); `None`:
    /// not known (QUIC: quinn does not tell).
    pub resumed: Option<bool>,
    /// The key exchange group (`"X25519"`, `"secp256r1"`,
    /// `"X25519MLKEM768"`, ...), `"none"` when there was none (a TLS 1.2
    /// resumption).
    pub group: &'static str,
}

impl Handshake {
    /// Reads the labels off a connection whose handshake is complete.
    pub fn of(conn: &rustls::ServerConnection) -> Self {
        let version = match conn.protocol_version() {
            Some(rustls::ProtocolVersion::TLSv1_3) => "1.3",
            Some(rustls::ProtocolVersion::TLSv1_2) => "1.2",
            _ => "other",
        };
        let group = conn
            .negotiated_key_exchange_group()
            .map_or(Some("none"), |g| g.name().as_str())
            .unwrap_or("other");
        Self {
            version,
            resumed: Some(conn.handshake_kind() == Some(rustls::HandshakeKind::Resumed)),
            group,
        }
    }

    /// A QUIC handshake (HTTP/3): TLS 1.3, whether it resumed and its
    /// group not known (quinn does not expose the TLS session).
    pub fn quic() -> Self {
        Self {
            version: "1.3",
            resumed: None,
            group: "unknown",
        }
    }
}

/// Why a TLS handshake on the public port failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum HandshakeFailure {
    /// No usable ClientHello (not TLS, malformed, or too slow).
    ClientHello,
    /// The handshake did not finish in `tls_handshake_timeout`.
    Timeout,
    /// No common version, cipher suite or ALPN protocol.
    Incompatible,
    /// No certificate for the requested name.
    NoCertificate,
    /// `[[client_auth]]`: the client sent no certificate where one is
    /// required, or one that did not verify (unknown CA, revoked, expired).
    ClientCertificate,
    /// The client sent an alert (for example it rejected the certificate).
    Alert,
    /// Malformed or unexpected messages.
    Protocol,
    /// The connection failed or closed during the handshake.
    Io,
    /// Anything else.
    Other,
}

impl HandshakeFailure {
    /// Every reason, so each has a series from the start.
    pub const ALL: [HandshakeFailure; 9] = [
        Self::ClientHello,
        Self::Timeout,
        Self::Incompatible,
        Self::NoCertificate,
        Self::ClientCertificate,
        Self::Alert,
        Self::Protocol,
        Self::Io,
        Self::Other,
    ];

    /// The `reason` label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ClientHello => "client_hello",
            Self::Timeout => "timeout",
            Self::Incompatible => "incompatible",
            Self::NoCertificate => "no_certificate",
            Self::ClientCertificate => "client_certificate",
            Self::Alert => "alert",
            Self::Protocol => "protocol",
            Self::Io => "io",
            Self::Other => "other",
        }
    }

    /// Classifies the error tokio-rustls returned from `accept`.
    pub fn classify(e: &std::io::Error) -> Self {
        let Some(tls) = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) else {
            return Self::Io;
        };
        match tls {
            rustls::Error::PeerIncompatible(_) | rustls::Error::NoApplicationProtocol => {
                Self::Incompatible
            }
            rustls::Error::AlertReceived(_) => Self::Alert,
            rustls::Error::InvalidMessage(_)
            | rustls::Error::PeerMisbehaved(_)
            | rustls::Error::InappropriateMessage { .. }
            | rustls::Error::InappropriateHandshakeMessage { .. }
            | rustls::Error::DecryptError => Self::Protocol,
            // Only a server that asks for a client certificate meets these.
            rustls::Error::NoCertificatesPresented
            | rustls::Error::InvalidCertificate(_)
            | rustls::Error::InvalidCertRevocationList(_) => Self::ClientCertificate,
            rustls::Error::General(m) if m.contains("certificate") => Self::NoCertificate,
            _ => Self::Other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_certificate_failures_have_their_reason() {
        let io = |e: rustls::Error| std::io::Error::new(std::io::ErrorKind::InvalidData, e);
        for e in [
            rustls::Error::NoCertificatesPresented,
            rustls::Error::InvalidCertificate(rustls::CertificateError::Revoked),
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
        ] {
            assert_eq!(
                HandshakeFailure::classify(&io(e)).as_str(),
                "client_certificate"
            );
        }
        let e = rustls::Error::General("no server certificate chain resolved".into());
        assert_eq!(
            HandshakeFailure::classify(&io(e)),
            HandshakeFailure::NoCertificate
        );
    }
}
