//! An owned summary of a ClientHello for routing and logging.

use crate::client_hello::ClientHello;
use crate::reader::is_grease;

/// What a router or access log needs from a ClientHello, owned so it can
/// outlive the read buffer.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClientHelloInfo {
    /// SNI host name, validated and lower-cased.
    pub sni: Option<String>,
    /// The client sent an IP address as SNI, read as no SNI.
    pub sni_ip_literal: bool,
    /// ALPN protocols in the client's order.
    pub alpn: Vec<Vec<u8>>,
    /// supported_versions without GREASE (empty when the extension is
    /// absent, as from TLS 1.2-only clients).
    pub versions: Vec<u16>,
    /// `legacy_version`.
    pub legacy_version: u16,
    /// JA4 fingerprint.
    pub ja4: String,
    /// An encrypted_client_hello extension is present.
    pub has_ech: bool,
    /// A pre_shared_key extension is present (resumption).
    pub has_psk: bool,
}

impl From<&ClientHello<'_>> for ClientHelloInfo {
    fn from(hello: &ClientHello<'_>) -> Self {
        Self {
            sni: hello.server_name().map(str::to_owned),
            sni_ip_literal: hello.sni_ip_literal(),
            alpn: hello.alpn().map(<[u8]>::to_vec).collect(),
            versions: hello
                .supported_versions()
                .filter(|v| !is_grease(*v))
                .collect(),
            legacy_version: hello.legacy_version(),
            ja4: hello.ja4().to_string(),
            has_ech: hello.has_ech(),
            has_psk: hello.has_psk(),
        }
    }
}

impl ClientHelloInfo {
    /// Whether the client offers `protocol` by ALPN.
    pub fn offers_alpn(&self, protocol: &[u8]) -> bool {
        self.alpn.iter().any(|p| p == protocol)
    }
}
