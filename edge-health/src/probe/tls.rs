//! The TLS handshake probe, also used by HTTPS probes.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::error::ConfigError;
use crate::reason::Reason;

/// How a TLS probe treats the server's certificate chain.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub enum TlsVerify {
    /// Complete the handshake whatever the chain (HAProxy `verify none`).
    /// The default: backends often carry internal certificates.
    #[default]
    None,
    /// Verify the chain and name against the Mozilla roots (webpki-roots).
    WebPki,
    /// Verify the chain and name against these roots only.
    Roots(Vec<CertificateDer<'static>>),
    /// Use this rustls client config as it is: its verifier, roots and
    /// client certificate (e.g. the settings a proxy uses for a pool's
    /// traffic, so the probe proves the same handshake works). The probe's
    /// [`alpn`](TlsProbe::alpn) replaces the config's ALPN list.
    Config(Arc<ClientConfig>),
}

/// A TLS handshake probe.
#[derive(Debug, Clone, Default)]
pub struct TlsProbe {
    /// SNI and the name verified. Default: the target's IP address, sent
    /// without SNI (rustls sends no SNI for IP addresses).
    pub sni: Option<String>,
    /// Chain verification. Default [`TlsVerify::None`].
    pub verify: TlsVerify,
    /// Fail when the leaf certificate expires sooner than this. Default none.
    pub min_remaining_validity: Option<Duration>,
    /// ALPN protocols to offer. Default none.
    pub alpn: Vec<Vec<u8>>,
}

impl TlsProbe {
    /// Sets the SNI name.
    pub fn sni(mut self, name: impl Into<String>) -> Self {
        self.sni = Some(name.into());
        self
    }
    /// Sets chain verification.
    pub fn verify(mut self, v: TlsVerify) -> Self {
        self.verify = v;
        self
    }
    /// Sets the minimum remaining validity of the leaf certificate.
    pub fn min_remaining_validity(mut self, d: Duration) -> Self {
        self.min_remaining_validity = Some(d);
        self
    }

    pub(crate) fn compile(&self, field: &'static str) -> Result<CompiledTls, ConfigError> {
        let server_name = match &self.sni {
            None => None,
            Some(s) => Some(
                ServerName::try_from(s.clone()).map_err(|e| ConfigError::Invalid {
                    field,
                    value: s.clone(),
                    reason: format!("not a valid SNI name: {e}"),
                })?,
            ),
        };
        let mut config = client_config(&self.verify).map_err(|reason| ConfigError::Invalid {
            field,
            value: "verify".into(),
            reason,
        })?;
        config.alpn_protocols = self.alpn.clone();
        Ok(CompiledTls {
            config: Arc::new(config),
            server_name,
            min_remaining_validity: self.min_remaining_validity,
        })
    }
}

/// Builds a rustls client config for `verify` with the ring provider.
pub(crate) fn client_config(verify: &TlsVerify) -> Result<ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let config = match verify {
        TlsVerify::Config(c) => ClientConfig::clone(c),
        TlsVerify::None => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyChain(provider)))
            .with_no_client_auth(),
        TlsVerify::WebPki => {
            let roots = RootCertStore::from_iter(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        TlsVerify::Roots(certs) => {
            let mut roots = RootCertStore::empty();
            for c in certs {
                roots
                    .add(c.clone())
                    .map_err(|e| format!("bad root certificate: {e}"))?;
            }
            if roots.is_empty() {
                return Err("no root certificates given".into());
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
    };
    Ok(config)
}

#[derive(Debug)]
pub(crate) struct CompiledTls {
    config: Arc<ClientConfig>,
    server_name: Option<ServerName<'static>>,
    min_remaining_validity: Option<Duration>,
}

impl CompiledTls {
    pub(crate) async fn run(&self, target: SocketAddr) -> Result<TlsStream<TcpStream>, Reason> {
        let tcp = super::connect(target).await?;
        self.handshake(tcp, target).await
    }

    pub(crate) async fn handshake(
        &self,
        tcp: TcpStream,
        target: SocketAddr,
    ) -> Result<TlsStream<TcpStream>, Reason> {
        let name = self
            .server_name
            .clone()
            .unwrap_or_else(|| ServerName::IpAddress(target.ip().into()));
        let tls = TlsConnector::from(Arc::clone(&self.config))
            .connect(name, tcp)
            .await
            .map_err(|e| tls_error(&e))?;
        if let Some(min) = self.min_remaining_validity {
            let (_, conn) = tls.get_ref();
            let leaf = conn
                .peer_certificates()
                .and_then(|c| c.first())
                .ok_or_else(|| Reason::Tls("no server certificate".into()))?;
            let remaining = cert_remaining(leaf)?;
            if remaining < min {
                return Err(Reason::CertificateExpiring { remaining });
            }
        }
        Ok(tls)
    }
}

fn tls_error(e: &std::io::Error) -> Reason {
    match e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
        Some(t) => Reason::Tls(t.to_string()),
        None if e.kind() == std::io::ErrorKind::InvalidData => Reason::Tls(e.to_string()),
        None => Reason::from_io(e),
    }
}

/// Time left until the certificate's `notAfter`, zero when expired.
pub(crate) fn cert_remaining(der: &CertificateDer<'_>) -> Result<Duration, Reason> {
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref())
        .map_err(|e| Reason::Tls(format!("unparsable server certificate: {e}")))?;
    Ok(cert
        .validity()
        .time_to_expiration()
        .and_then(|d| Duration::try_from(d).ok())
        .unwrap_or(Duration::ZERO))
}

/// Accepts any chain but still checks the handshake signatures, so the
/// probe proves the server holds the key of the certificate it shows.
#[derive(Debug)]
struct AnyChain(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyChain {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
