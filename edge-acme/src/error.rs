//! The crate's error type.

use std::path::PathBuf;
use std::time::Duration;

use crate::cert::CertError;
use crate::storage::StorageError;

/// Everything that can go wrong obtaining, storing or serving certificates.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The storage backend failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// A stored file exists but cannot be used (it is left in place).
    #[error("corrupt storage entry {key:?}: {reason}")]
    CorruptStorage {
        /// The storage key.
        key: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The CA answered with an error or could not be reached.
    #[error("ACME CA {directory}: {source}")]
    Acme {
        /// The CA's directory URL.
        directory: String,
        /// The ACME client's error, with the CA's problem document if any.
        #[source]
        source: instant_acme::Error,
    },
    /// The CA refused to validate a name (the challenge failed).
    #[error("CA could not validate {name:?}: {problem}")]
    Validation {
        /// The name whose authorization failed.
        name: String,
        /// The CA's problem document, as text.
        problem: String,
    },
    /// The CA answered something this client cannot use.
    #[error("unexpected answer from the ACME CA: {0}")]
    Protocol(String),
    /// The CA's certificate (or a static one) was rejected.
    #[error("certificate rejected: {0}")]
    Certificate(#[from] CertError),
    /// A static certificate file could not be loaded.
    #[error("static certificate {path}: {source}")]
    StaticCert {
        /// The certificate file.
        path: PathBuf,
        /// Why it was rejected.
        #[source]
        source: CertError,
    },
    /// A file could not be read.
    #[error("reading {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Something took longer than allowed.
    #[error("{what} timed out after {after:?}")]
    Timeout {
        /// What was being waited for.
        what: &'static str,
        /// The limit.
        after: Duration,
    },
    /// Another node held the certificate's storage lock for too long.
    #[error("storage lock {name:?} still held by another node after {waited:?}")]
    LockBusy {
        /// Lock name.
        name: String,
        /// How long this node waited.
        waited: Duration,
    },
    /// The per-account order rate cap is reached.
    #[error("order rate cap reached; next order allowed in {retry_in:?}")]
    RateLimited {
        /// When an order will be allowed again.
        retry_in: Duration,
    },
    /// A DNS-01 update or lookup failed (refused, wrong TSIG key, no
    /// answer, record not served in time).
    #[error("DNS-01 via {server}: {problem}")]
    Dns {
        /// The DNS server asked.
        server: std::net::SocketAddr,
        /// What went wrong.
        problem: String,
    },
    /// The configuration is unusable.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The manager was stopped ([`AcmeHandle::shutdown`](crate::AcmeHandle::shutdown))
    /// while this was in progress; the work was given up and its storage
    /// lock released.
    #[error("the ACME manager stopped")]
    Stopped,
}

impl Error {
    /// The CA's problem type (`urn:ietf:params:acme:error:...`), if the CA
    /// sent a problem document.
    pub fn ca_problem_type(&self) -> Option<&str> {
        match self {
            Self::Acme {
                source: instant_acme::Error::Api(problem),
                ..
            } => problem.r#type.as_deref(),
            _ => None,
        }
    }
}
