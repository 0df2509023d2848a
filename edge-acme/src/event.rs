//! What the manager tells about its certificates: events and status.

use std::time::{Duration, SystemTime};

/// Something that happened to a managed certificate, for logs and metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AcmeEvent {
    /// This node obtained a certificate for names that had none.
    Issued {
        /// The certificate's names.
        names: Vec<String>,
        /// Serial (hex) of the new certificate.
        serial: String,
        /// End of validity.
        not_after: SystemTime,
    },
    /// This node replaced a certificate with a new one.
    Renewed {
        /// The certificate's names.
        names: Vec<String>,
        /// Serial (hex) of the new certificate.
        serial: String,
        /// End of validity.
        not_after: SystemTime,
        /// Serial of the certificate it replaces.
        previous_serial: String,
    },
    /// A certificate was taken from storage (at start, or because another
    /// node sharing the storage obtained it).
    Loaded {
        /// The certificate's names.
        names: Vec<String>,
        /// Serial (hex).
        serial: String,
        /// End of validity.
        not_after: SystemTime,
    },
    /// An attempt failed; the certificate in service (if any) keeps serving.
    Failed {
        /// The certificate's names.
        names: Vec<String>,
        /// What went wrong, including the CA's problem document.
        error: String,
        /// The CA's problem type, e.g. `urn:ietf:params:acme:error:rateLimited`.
        ca_problem: Option<String>,
        /// Consecutive failures.
        attempt: u32,
        /// The nominal (un-jittered) backoff for this attempt.
        backoff: Duration,
        /// How long until the next attempt.
        retry_in: Duration,
    },
    /// A stored certificate or key could not be used; it is left in place
    /// (the next successful order overwrites it).
    StorageCorrupt {
        /// The certificate's names.
        names: Vec<String>,
        /// What is wrong.
        error: String,
    },
}

/// The state of one managed certificate, for metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CertificateStatus {
    /// The names configured.
    pub names: Vec<String>,
    /// The key type (a name may have an ECDSA and an RSA certificate).
    pub key_type: crate::KeyType,
    /// Serial of the certificate in service.
    pub serial: Option<String>,
    /// End of validity of the certificate in service.
    pub not_after: Option<SystemTime>,
    /// When it is due for renewal (own threshold or ARI, the earlier).
    pub renew_at: Option<SystemTime>,
    /// The CA's suggested renewal window (RFC 9773), if it gave one.
    pub ari_window: Option<(SystemTime, SystemTime)>,
    /// Consecutive failed attempts.
    pub failures: u32,
    /// The last error, until the next success.
    pub last_error: Option<String>,
    /// Orders this node completed for it.
    pub orders: u64,
    /// An order of this node is in progress (under the storage lock).
    pub ordering: bool,
    /// A renewal asked for with [`AcmeHandle::renew_now`](crate::AcmeHandle::renew_now) has not started yet.
    pub renewal_requested: bool,
}

impl CertificateStatus {
    /// Seconds until the certificate in service expires (negative once
    /// expired), `None` when there is none.
    pub fn seconds_until_expiry(&self) -> Option<i64> {
        let not_after = self.not_after?;
        Some(match not_after.duration_since(SystemTime::now()) {
            Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
            Err(e) => i64::try_from(e.duration().as_secs()).map_or(i64::MIN, |s| -s),
        })
    }
}
