//! TLS to upstream servers (feature `tls`): the rustls client settings an
//! operator gives (trusted roots from PEM or the system, verification on
//! unless turned off, a client certificate, the name sent as SNI and
//! verified, ALPN), the hyper connector built from them (its connections
//! pooled by hyper-util's client as plain ones), and the named reason a
//! handshake failed ([`TlsFailure`]), for logs and access records.
//!
//! ```no_run
//! use edge_balance::upstream_tls::{Alpn, Roots, UpstreamTls, load_certificates};
//! use hyper_util::client::legacy::{Client, connect::HttpConnector};
//! use hyper_util::rt::TokioExecutor;
//!
//! # fn main() -> Result<(), edge_balance::upstream_tls::UpstreamTlsError> {
//! let roots = Roots::Certificates(load_certificates("/etc/edge/backend-ca.pem".as_ref())?);
//! let tls = UpstreamTls::new(roots)
//!     .server_name("app.internal")?
//!     .alpn(Alpn::Http1);
//! let connectors = tls.connectors()?; // once per pool
//! let server = "10.0.0.5:8443".parse().unwrap();
//! let client: Client<_, http_body_util::Empty<bytes::Bytes>> =
//!     Client::builder(TokioExecutor::new()).build(connectors.to(server, HttpConnector::new()));
//! // client.request(...) to "https://app.example/path" goes to 10.0.0.5:8443,
//! // verified against the CA with SNI "app.internal"; a refused certificate
//! // is an error whose `TlsFailure::of(&err)` names why.
//! # let _ = client;
//! # Ok(())
//! # }
//! ```

use std::error::Error as StdError;
use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::Uri;
use hyper_rustls::{FixedServerNameResolver, HttpsConnector};
use hyper_util::client::legacy::connect::HttpConnector;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore};
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};

/// The connector [`UpstreamConnectors::to`] builds: TCP to one server,
/// then TLS (hyper-rustls).
pub type UpstreamConnector = HttpsConnector<DialServer>;

/// The certificates a server's chain must lead to.
#[derive(Debug, Clone)]
pub enum Roots {
    /// The system's trusted roots (rustls-native-certs: the OpenSSL
    /// directories, `SSL_CERT_FILE` / `SSL_CERT_DIR`).
    System,
    /// These roots only (e.g. an internal CA's file).
    Certificates(Vec<CertificateDer<'static>>),
}

/// The HTTP versions offered in ALPN.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Alpn {
    /// HTTP/1.1 only; no ALPN is sent.
    #[default]
    Http1,
    /// HTTP/2 only (`h2`); the client must speak HTTP/2 on every connection
    /// (hyper-util: `http2_only(true)`).
    Http2,
    /// `h2` then `http/1.1`: the server chooses, the client follows.
    Auto,
}

/// Why TLS settings could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UpstreamTlsError {
    /// A PEM file could not be read or holds nothing usable.
    #[error("{path}: {reason}")]
    File {
        /// The file.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Not a name a certificate can be verified against.
    #[error("invalid server name {0:?}")]
    ServerName(String),
    /// No trusted root: the system has none, or a root was refused.
    #[error("trusted roots: {0}")]
    Roots(String),
    /// rustls refused the settings (e.g. a client key that does not fit).
    #[error(transparent)]
    Rustls(#[from] rustls::Error),
}

/// TLS settings for connections to upstream servers.
#[derive(Debug)]
pub struct UpstreamTls {
    roots: Roots,
    verify: bool,
    client_auth: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
    server_name: Option<ServerName<'static>>,
    alpn: Alpn,
}

impl UpstreamTls {
    /// Verifies servers against `roots`; no client certificate; the
    /// server's address as the verified name (no SNI for an IP address);
    /// HTTP/1.1.
    pub fn new(roots: Roots) -> Self {
        Self {
            roots,
            verify: true,
            client_auth: None,
            server_name: None,
            alpn: Alpn::default(),
        }
    }

    /// `false`: accept any certificate chain and name (HAProxy `verify
    /// none`). The handshake signature is still checked, so the server
    /// holds the key of the certificate it shows; the connection is
    /// encrypted but not authenticated.
    pub fn verify(mut self, on: bool) -> Self {
        self.verify = on;
        self
    }

    /// Presents this certificate chain and key to servers that ask (mTLS).
    pub fn client_auth(
        mut self,
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    ) -> Self {
        self.client_auth = Some((chain, key));
        self
    }

    /// Sends `name` as SNI and verifies the certificate against it, whatever
    /// address the connection goes to. Without it the name is the server's
    /// IP address: rustls sends no SNI and the certificate must carry that
    /// IP address as a subject alternative name.
    pub fn server_name(mut self, name: &str) -> Result<Self, UpstreamTlsError> {
        let n = ServerName::try_from(name.to_string())
            .map_err(|_| UpstreamTlsError::ServerName(name.into()))?;
        self.server_name = Some(n);
        Ok(self)
    }

    /// The HTTP versions offered.
    pub fn alpn(mut self, alpn: Alpn) -> Self {
        self.alpn = alpn;
        self
    }

    /// The ALPN protocols offered, in preference order.
    pub fn alpn_protocols(&self) -> Vec<Vec<u8>> {
        match self.alpn {
            Alpn::Http1 => Vec::new(),
            Alpn::Http2 => vec![b"h2".to_vec()],
            Alpn::Auto => vec![b"h2".to_vec(), b"http/1.1".to_vec()],
        }
    }

    /// The name set with [`server_name`](Self::server_name).
    pub fn fixed_server_name(&self) -> Option<&ServerName<'static>> {
        self.server_name.as_ref()
    }

    /// The rustls client config (ring provider, TLS 1.2 and 1.3), without
    /// ALPN: whoever uses it sets the protocols it speaks (a health probe
    /// speaks HTTP/1.1 whatever the pool's requests do).
    pub fn client_config(&self) -> Result<ClientConfig, UpstreamTlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()?;
        let builder = if self.verify {
            builder.with_root_certificates(self.root_store()?)
        } else {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(NoVerification(provider)))
        };
        Ok(match &self.client_auth {
            Some((chain, key)) => builder.with_client_auth_cert(chain.clone(), key.clone_key())?,
            None => builder.with_no_client_auth(),
        })
    }

    fn root_store(&self) -> Result<RootCertStore, UpstreamTlsError> {
        let mut store = RootCertStore::empty();
        match &self.roots {
            Roots::Certificates(certs) => {
                for c in certs {
                    store
                        .add(c.clone())
                        .map_err(|e| UpstreamTlsError::Roots(e.to_string()))?;
                }
            }
            Roots::System => {
                let found = rustls_native_certs::load_native_certs();
                // Unparsable system certificates are skipped, as browsers do.
                let (_, refused) = store.add_parsable_certificates(found.certs);
                if refused > 0 {
                    tracing::debug!(refused, "system roots: unparsable certificates skipped");
                }
                if let Some(e) = found.errors.first().filter(|_| store.is_empty()) {
                    return Err(UpstreamTlsError::Roots(e.to_string()));
                }
            }
        }
        if store.is_empty() {
            return Err(UpstreamTlsError::Roots(
                "no trusted root certificate".into(),
            ));
        }
        Ok(store)
    }

    /// The connectors' shared part: the rustls config with ALPN, built once
    /// (the system roots are read here).
    pub fn connectors(&self) -> Result<UpstreamConnectors, UpstreamTlsError> {
        let mut config = self.client_config()?;
        config.alpn_protocols = self.alpn_protocols();
        Ok(UpstreamConnectors {
            config: Arc::new(config),
            server_name: self.server_name.clone(),
        })
    }
}

/// Makes the hyper connector of each server (see [`UpstreamTls::connectors`]).
#[derive(Debug, Clone)]
pub struct UpstreamConnectors {
    config: Arc<ClientConfig>,
    server_name: Option<ServerName<'static>>,
}

impl UpstreamConnectors {
    /// The connector to `server`: TCP by `http` (its timeouts and options)
    /// to that address whatever host the request's URI names, then TLS,
    /// verifying the name set with [`UpstreamTls::server_name`] (sent as
    /// SNI) or else the server's IP address (no SNI). Only `https` URIs
    /// are accepted: a plain `http` one is an error, never a connection in
    /// clear text.
    pub fn to(&self, server: SocketAddr, http: HttpConnector) -> UpstreamConnector {
        let name = self
            .server_name
            .clone()
            .unwrap_or_else(|| ServerName::IpAddress(server.ip().into()));
        HttpsConnector::new(
            DialServer::new(server, http),
            Arc::clone(&self.config),
            true,
            Arc::new(FixedServerNameResolver::new(name)),
        )
    }
}

/// hyper-util's TCP connector, dialing one server whatever host the URI
/// names: a client per server can keep the request's host in the URI, which
/// HTTP/2 sends as `:authority` (and hyper-util's HTTP/1 as `Host`), while
/// its connection pool holds connections to that server only.
#[derive(Debug, Clone)]
pub struct DialServer {
    uri: Uri,
    http: HttpConnector,
}

impl DialServer {
    /// Dials `server` with `http`.
    pub fn new(server: SocketAddr, mut http: HttpConnector) -> Self {
        http.enforce_http(false);
        let uri = Uri::builder()
            .scheme("http")
            .authority(server.to_string())
            .path_and_query("/")
            .build()
            .unwrap_or_default();
        Self { uri, http }
    }
}

impl tower_service::Service<Uri> for DialServer {
    type Response = <HttpConnector as tower_service::Service<Uri>>::Response;
    type Error = <HttpConnector as tower_service::Service<Uri>>::Error;
    type Future = <HttpConnector as tower_service::Service<Uri>>::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.http.poll_ready(cx)
    }

    fn call(&mut self, _: Uri) -> Self::Future {
        self.http.call(self.uri.clone())
    }
}

/// Certificates from a PEM file (a CA bundle, a client certificate chain).
pub fn load_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, UpstreamTlsError> {
    let file_err = |reason: String| UpstreamTlsError::File {
        path: path.display().to_string(),
        reason,
    };
    let bytes = std::fs::read(path).map_err(|e| file_err(e.to_string()))?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_err(format!("bad PEM: {e}")))?;
    if certs.is_empty() {
        return Err(file_err("no CERTIFICATE in the file".into()));
    }
    Ok(certs)
}

/// The private key in a PEM file (PKCS#8, PKCS#1 or SEC1).
pub fn load_private_key(path: &Path) -> Result<PrivateKeyDer<'static>, UpstreamTlsError> {
    let bytes = std::fs::read(path).map_err(|e| UpstreamTlsError::File {
        path: path.display().to_string(),
        reason: e.to_string(),
    })?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| UpstreamTlsError::File {
        path: path.display().to_string(),
        reason: format!("no usable private key: {e}"),
    })
}

/// Why a TLS connection to a server failed, as operators name it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TlsFailure {
    /// The chain leads to no trusted root (self-signed, another CA).
    UnknownCa,
    /// The certificate is not valid for the name verified.
    NameMismatch,
    /// The certificate has expired.
    Expired,
    /// The certificate is not valid yet.
    NotYetValid,
    /// The certificate was revoked.
    Revoked,
    /// Another certificate problem (bad encoding, wrong usage, ...).
    BadCertificate(String),
    /// The server sent a TLS alert (e.g. it wants a client certificate).
    AlertReceived(String),
    /// Another TLS error (no protocol in common, a peer misbehaving).
    Other(String),
}

impl TlsFailure {
    /// The TLS failure in `err` or its sources (an I/O error wrapping a
    /// rustls error counts), `None` when the error is no TLS failure.
    pub fn of(err: &(dyn StdError + 'static)) -> Option<Self> {
        let mut cur = Some(err);
        while let Some(e) = cur {
            if let Some(t) = e.downcast_ref::<rustls::Error>() {
                return Some(Self::from_rustls(t));
            }
            // `io::Error::source` skips the error it wraps: look inside.
            if let Some(inner) = e
                .downcast_ref::<std::io::Error>()
                .and_then(std::io::Error::get_ref)
            {
                cur = Some(inner);
                continue;
            }
            cur = e.source();
        }
        None
    }

    /// Names a rustls error.
    pub fn from_rustls(e: &rustls::Error) -> Self {
        use CertificateError as C;
        match e {
            rustls::Error::InvalidCertificate(c) => match c {
                C::UnknownIssuer => Self::UnknownCa,
                C::NotValidForName | C::NotValidForNameContext { .. } => Self::NameMismatch,
                C::Expired | C::ExpiredContext { .. } => Self::Expired,
                C::NotValidYet | C::NotValidYetContext { .. } => Self::NotYetValid,
                C::Revoked => Self::Revoked,
                other => Self::BadCertificate(format!("{other:?}")),
            },
            rustls::Error::AlertReceived(a) => Self::AlertReceived(format!("{a:?}")),
            other => Self::Other(other.to_string()),
        }
    }

    /// A short stable code for logs and metrics labels.
    pub fn code(&self) -> &'static str {
        match self {
            Self::UnknownCa => "unknown_ca",
            Self::NameMismatch => "name_mismatch",
            Self::Expired => "expired",
            Self::NotYetValid => "not_yet_valid",
            Self::Revoked => "revoked",
            Self::BadCertificate(_) => "bad_certificate",
            Self::AlertReceived(_) => "alert",
            Self::Other(_) => "other",
        }
    }
}

impl fmt::Display for TlsFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnknownCa => f.write_str("certificate signed by an unknown CA"),
            Self::NameMismatch => f.write_str("certificate name mismatch"),
            Self::Expired => f.write_str("certificate expired"),
            Self::NotYetValid => f.write_str("certificate not valid yet"),
            Self::Revoked => f.write_str("certificate revoked"),
            Self::BadCertificate(d) => write!(f, "bad certificate: {d}"),
            Self::AlertReceived(a) => write!(f, "alert from the server: {a}"),
            Self::Other(e) => write!(f, "{e}"),
        }
    }
}

/// `verify = false`: any chain and name, but the handshake signatures are
/// checked with the provider's algorithms.
#[derive(Debug)]
struct NoVerification(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        msg: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algs = &self.0.signature_verification_algorithms;
        rustls::crypto::verify_tls12_signature(msg, cert, dss, algs)
    }

    fn verify_tls13_signature(
        &self,
        msg: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algs = &self.0.signature_verification_algorithms;
        rustls::crypto::verify_tls13_signature(msg, cert, dss, algs)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
#[path = "upstream_tls_tests.rs"]
mod tests;
