//! The [`Storage`] trait: where certificates, keys, the account and pending
//! challenge tokens live, plus a lock with an expiry.
//!
//! The design follows certmagic's: a small key/value interface that a
//! directory, a network filesystem or a database can implement, and a named
//! lock that a crashed holder cannot keep forever (the lock has an expiry that
//! the holder keeps pushing forward while it works). Whoever takes the lock
//! re-checks the work afterwards, because another node may have finished it in
//! the meantime.
//!
//! Keys are `/`-separated paths of segments made of `A-Z a-z 0-9 . _ - @ +`,
//! never empty, `.` or `..` (see [`validate_key`]).

#[cfg(test)]
mod contract;
mod dir;
#[cfg(feature = "etcd")]
mod etcd;
mod lock;

use std::fmt::Debug;
use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, SystemTime};

pub use dir::DirStorage;
#[cfg(feature = "etcd")]
pub use etcd::{EtcdStorage, Observer as EtcdObserver, retry_unreachable};
pub use lock::StorageLock;
pub(crate) use lock::acquire;

/// The future returned by every [`Storage`] method.
pub type StorageFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StorageError>> + Send + 'a>>;

/// An error from a [`Storage`] backend.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// Nothing is stored under this key.
    #[error("storage key {0:?} not found")]
    NotFound(String),
    /// The key is not a valid storage key.
    #[error("invalid storage key {key:?}: {reason}")]
    InvalidKey {
        /// The rejected key.
        key: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The backend failed to read or write.
    #[error("storage I/O on {key:?}: {source}")]
    Io {
        /// The key (or lock name) being accessed.
        key: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

impl StorageError {
    pub(crate) fn io(key: &str, source: std::io::Error) -> Self {
        Self::Io {
            key: key.to_owned(),
            source,
        }
    }
}

/// Size and modification time of a stored value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyInfo {
    /// When the value was last written.
    pub modified: SystemTime,
    /// Its length in bytes.
    pub size: u64,
}

/// Shared key/value storage with expiring locks, in the style of certmagic.
///
/// Every node of an HA pair that points at the same storage sees the same
/// certificates, account and pending challenge tokens, so any of them can
/// answer the CA's validation request and serve the result.
///
/// Implementations must make [`store`](Storage::store) atomic (a reader sees
/// the old value or the new one, never a mix) and must make
/// [`try_lock`](Storage::try_lock) exclusive across every node sharing the
/// storage.
pub trait Storage: Debug + Send + Sync + 'static {
    /// Writes `value` under `key`, replacing any previous value atomically.
    fn store<'a>(&'a self, key: &'a str, value: &'a [u8]) -> StorageFuture<'a, ()>;
    /// Reads the value under `key`; [`StorageError::NotFound`] when absent.
    fn load<'a>(&'a self, key: &'a str) -> StorageFuture<'a, Vec<u8>>;
    /// Removes `key`; succeeds when it was already absent.
    fn delete<'a>(&'a self, key: &'a str) -> StorageFuture<'a, ()>;
    /// Every key under `prefix` (recursively), sorted.
    fn list<'a>(&'a self, prefix: &'a str) -> StorageFuture<'a, Vec<String>>;
    /// Size and modification time of `key`.
    fn stat<'a>(&'a self, key: &'a str) -> StorageFuture<'a, KeyInfo>;
    /// Takes the lock `name` for `owner` until `ttl` from now, if it is free,
    /// expired, or already held by `owner` (then its expiry is extended).
    /// Returns whether `owner` now holds it.
    fn try_lock<'a>(
        &'a self,
        name: &'a str,
        owner: &'a str,
        ttl: Duration,
    ) -> StorageFuture<'a, bool>;
    /// Pushes the expiry of a held lock to `ttl` from now. Returns `false` when
    /// `owner` no longer holds it (it expired and someone else took it).
    fn refresh_lock<'a>(
        &'a self,
        name: &'a str,
        owner: &'a str,
        ttl: Duration,
    ) -> StorageFuture<'a, bool>;
    /// Releases the lock if `owner` holds it.
    fn unlock<'a>(&'a self, name: &'a str, owner: &'a str) -> StorageFuture<'a, ()>;
}

/// Checks that `key` is a valid storage key (see the module docs).
pub fn validate_key(key: &str) -> Result<(), StorageError> {
    let bad = |reason| {
        Err(StorageError::InvalidKey {
            key: key.to_owned(),
            reason,
        })
    };
    if key.is_empty() {
        return bad("empty");
    }
    if key.len() > 1024 {
        return bad("longer than 1024 bytes");
    }
    for segment in key.split('/') {
        if segment.is_empty() || segment == "." || segment == ".." {
            return bad("empty, '.' or '..' path segment");
        }
        if segment.starts_with('.') {
            return bad("segment starts with '.' (reserved for temporary files)");
        }
        if !segment
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'@' | b'+'))
        {
            return bad("character outside A-Z a-z 0-9 . _ - @ +");
        }
    }
    Ok(())
}

/// Storage keys used by this crate (documented in the README).
pub(crate) mod keys {
    /// Pending HTTP-01 challenge: the key authorization for `token`.
    pub(crate) fn challenge(token: &str) -> String {
        format!("challenges/{token}")
    }
    pub(crate) fn account(directory_id: &str) -> String {
        format!("accounts/{directory_id}/account.json")
    }
    pub(crate) fn cert_chain(cert_id: &str) -> String {
        format!("certificates/{cert_id}/fullchain.pem")
    }
    pub(crate) fn cert_key(cert_id: &str) -> String {
        format!("certificates/{cert_id}/privkey.pem")
    }
    pub(crate) fn cert_meta(cert_id: &str) -> String {
        format!("certificates/{cert_id}/meta.json")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_checked() {
        for good in ["a", "certificates/a.example/fullchain.pem", "x_y-z@+/1"] {
            validate_key(good).unwrap();
        }
        for bad in [
            "", "/a", "a/", "a//b", "../x", "a/../b", "a/./b", ".hidden", "a b", "a\\b", "é",
        ] {
            assert!(validate_key(bad).is_err(), "{bad:?} accepted");
        }
    }
}
