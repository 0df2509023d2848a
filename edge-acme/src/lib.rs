//! Automatic certificates over ACME HTTP-01 and DNS-01, shared by the two
//! nodes of an HA pair.
//!
//! Port 80 stays open only so the CA can validate HTTP-01 challenges; the
//! certificates are obtained and renewed in the background, and both nodes
//! serve them, although the CA's validation request reaches only whichever
//! node holds the virtual IP at that moment.
//!
//! # Design
//!
//! - [`Storage`] (certmagic-style: load/store/list/delete and a lock with an
//!   expiry) holds the account, certificates, keys and **pending challenge
//!   tokens**. [`DirStorage`] keeps them in a directory, with atomic writes
//!   and `0600` files, safe on a shared filesystem. Any node sharing the
//!   storage answers the CA, whichever node placed the order. With the
//!   `etcd` feature, `EtcdStorage` keeps them in etcd for a fleet, its locks
//!   as etcd leases that expire with a dead node.
//! - [`ChallengeResponder`] is the tower service for port 80: it answers
//!   `GET /.well-known/acme-challenge/{token}` for pending tokens, forwards
//!   unknown tokens to the peer node when the pair does not share storage,
//!   and hands everything else to [`HttpsRedirect`]: a permanent redirect
//!   to HTTPS (301 for GET and HEAD, 308 otherwise) or 404. A server
//!   without ACME serves `HttpsRedirect` alone on port 80.
//! - DNS-01 (the only way to wildcard names): a certificate marked
//!   [`Challenge::Dns01`] publishes `_acme-challenge` TXT records through
//!   RFC 2136 dynamic updates signed with TSIG ([`DnsUpdater`], configured
//!   by [`DnsUpdateConfig`] and [`AcmeConfig::dns_update`]), waits until the
//!   zone's servers serve them, then tells the CA; the records are removed
//!   after the order (noted in storage first, so an order given up leaves
//!   none for long), and a failure deactivates the order's pending
//!   authorizations.
//! - [`CertResolver`] is a rustls [`ResolvesServerCert`](rustls::server::ResolvesServerCert)
//!   choosing by SNI (exact, then wildcard), swapped atomically on renewal,
//!   with static certificate files beside the ACME ones.
//! - [`AcmeManager`] runs the ACME client (instant-acme, keys and CSRs by
//!   rcgen, ECDSA P-256 by default; an RSA certificate for the same
//!   names is a second certificate, [`KeyType::Rsa2048`]): account created once and reused,
//!   renewal with a third of the lifetime left or earlier when the CA's
//!   renewal information (RFC 9773) says so, capped jittered exponential
//!   backoff, a per-account order rate cap, and the storage lock so only one
//!   node orders at a time while the other picks the result up. It reports
//!   [`AcmeEvent`]s and a [`CertificateStatus`] (seconds to expiry) per
//!   certificate. The timing decisions are pure functions tested in
//!   isolation; the manager is the thin tokio driver around them.
//!
//! # Example: automatic certificates for your own rustls server
//!
//! ```no_run
//! use std::sync::Arc;
//! use edge_acme::{AcmeConfig, AcmeManager, CertResolver, ChallengeResponder, DirStorage, Storage};
//!
//! # async fn run() -> Result<(), edge_acme::Error> {
//! let storage: Arc<dyn Storage> = Arc::new(DirStorage::new("/var/lib/edge/acme"));
//! let resolver = CertResolver::new();
//! let mut config = AcmeConfig::default();
//! config.contact("mailto:ops@example.com").certificate(["example.com", "www.example.com"]);
//! let acme = AcmeManager::spawn(config, storage.clone(), resolver.clone())?;
//!
//! // Port 443: rustls picks the certificate by SNI, renewed in place.
//! let tls = rustls::ServerConfig::builder()
//!     .with_no_client_auth()
//!     .with_cert_resolver(resolver);
//! // Port 80: serve `ChallengeResponder` with hyper (it is a tower service).
//! let port80 = ChallengeResponder::new(storage);
//! # let _ = (tls, port80, acme);
//! # Ok(()) }
//! ```
//!
//! The resolver and responder work without a CA too:
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! use std::sync::Arc;
//! use edge_acme::{CertResolver, ChallengeResponder, DirStorage, Storage};
//!
//! // A static certificate beside the ACME ones.
//! let key = rcgen::KeyPair::generate().unwrap();
//! let cert = rcgen::CertificateParams::new(vec!["*.example.net".to_string()])
//!     .unwrap()
//!     .self_signed(&key)
//!     .unwrap();
//! let resolver = CertResolver::new();
//! resolver
//!     .add_static(&[], vec![cert.der().clone()], key.serialize_der().try_into().unwrap())
//!     .unwrap();
//! assert!(resolver.lookup("www.example.net").is_some());
//!
//! // Port 80 redirects everything but pending challenges.
//! let dir = tempfile::tempdir().unwrap();
//! let storage: Arc<dyn Storage> = Arc::new(DirStorage::new(dir.path()));
//! let rsp = ChallengeResponder::new(storage)
//!     .respond(http::Request::get("/shop?x=1").header("host", "example.net").body(()).unwrap())
//!     .await;
//! assert_eq!(rsp.status(), 301);
//! assert_eq!(rsp.headers()["location"], "https://example.net/shop?x=1");
//! # }
//! ```

mod cert;
mod client;
mod config;
mod dns01;
mod dns01_records;
mod error;
mod event;
mod manager;
mod redirect;
mod resolver;
mod responder;
mod schedule;
mod stop;
mod storage;
mod wake;

pub use cert::{CertError, CertInfo};
pub use config::{
    AcmeConfig, CertificateConfig, Challenge, ChallengeConfig, DEFAULT_LOCK_TTL, DEFAULT_LOCK_WAIT,
    ExternalAccountBinding, KeyType, LETS_ENCRYPT_PRODUCTION, LETS_ENCRYPT_STAGING, RenewalConfig,
};
pub use dns01::{
    DEFAULT_PROPAGATION_TIMEOUT, DnsUpdateConfig, DnsUpdater, TsigAlgorithm, challenge_name,
};
pub use error::Error;
/// The etcd client crate, for building the client an [`EtcdStorage`] uses.
#[cfg(feature = "etcd")]
pub use etcd_client;
pub use manager::{AcmeEvent, AcmeHandle, AcmeManager, CertificateStatus, SHUTDOWN_LIMIT};
pub use redirect::{Fallback, HttpsRedirect};
pub use resolver::CertResolver;
pub use responder::{CHALLENGE_PREFIX, ChallengeResponder, FORWARDED_HEADER, is_token};
pub use storage::{
    DirStorage, KeyInfo, Storage, StorageError, StorageFuture, StorageLock, validate_key,
};
#[cfg(feature = "etcd")]
pub use storage::{EtcdObserver, EtcdStorage, retry_unreachable};
