//! [`EtcdStorage`]: the [`Storage`] of a fleet, in etcd (v3 API).
//!
//! Layout under the configured prefix `P` (for example `/edge/acme/`):
//!
//! | key             | value                                   |
//! |-----------------|-----------------------------------------|
//! | `P`data/KEY     | the stored bytes                        |
//! | `P`mtime/KEY    | when they were written (ms, decimal)    |
//! | `P`locks/NAME   | the holder's name, on a lease           |
//!
//! A value and its time are written and deleted together in one
//! transaction. A lock is a key created only when absent (a transaction on
//! its create revision) and attached to a lease with the lock's
//! time-to-live: refreshing it keeps the lease alive, and a node that dies
//! stops doing so, so etcd deletes its lock when the lease runs out. etcd
//! rounds a lease's time-to-live up to whole seconds and to its own
//! minimum (about two seconds with the default election timeout).

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use etcd_client::{
    Client, Compare, CompareOp, DeleteOptions, GetOptions, PutOptions, Txn, TxnOp, TxnOpResponse,
};

use super::{KeyInfo, Storage, StorageError, StorageFuture, validate_key};

/// A [`Storage`] kept in etcd under a key prefix; locks are etcd leases.
///
/// Cloning is cheap (the client's channel is shared). An unreachable etcd
/// makes every call fail with [`StorageError::Io`] after the client's
/// request timeout; nothing is cached here.
#[derive(Clone)]
pub struct EtcdStorage {
    client: Client,
    prefix: String,
    observer: Option<Observer>,
}

/// Told of the outcome of each request to etcd (an error: etcd failed or
/// could not be reached), for the caller's metrics and logs.
pub type Observer = Arc<dyn Fn(Result<(), &etcd_client::Error>) + Send + Sync>;

impl fmt::Debug for EtcdStorage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EtcdStorage")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl EtcdStorage {
    /// Storage under `prefix` (a `/` is added when it does not end with
    /// one) through `client`.
    pub fn new(client: Client, prefix: impl Into<String>) -> Self {
        let mut prefix = prefix.into();
        if !prefix.ends_with('/') {
            prefix.push('/');
        }
        Self {
            client,
            prefix,
            observer: None,
        }
    }

    /// Calls `observer` with the outcome of each request from now on.
    pub fn observe(mut self, observer: Observer) -> Self {
        self.observer = Some(observer);
        self
    }

    /// Tells the observer of `r`, and returns it.
    fn seen<T>(&self, r: Result<T, etcd_client::Error>) -> Result<T, etcd_client::Error> {
        if let Some(o) = &self.observer {
            o(r.as_ref().map(|_| ()));
        }
        r
    }

    /// The key prefix, ending with `/`.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    fn data_key(&self, key: &str) -> Result<String, StorageError> {
        validate_key(key)?;
        Ok(format!("{}data/{key}", self.prefix))
    }

    fn mtime_key(&self, key: &str) -> String {
        format!("{}mtime/{key}", self.prefix)
    }

    fn lock_key(&self, name: &str) -> Result<String, StorageError> {
        validate_key(name)?;
        if name.contains('/') {
            return Err(StorageError::InvalidKey {
                key: name.to_owned(),
                reason: "lock names cannot contain '/'",
            });
        }
        Ok(format!("{}locks/{name}", self.prefix))
    }

    /// A read of `key` (retried past an unreachable member).
    async fn get(
        &self,
        key: &str,
        options: Option<GetOptions>,
    ) -> Result<etcd_client::GetResponse, etcd_client::Error> {
        let r = retry_unreachable(|| {
            let mut kv = self.client.kv_client();
            let options = options.clone();
            async move { kv.get(key, options).await }
        })
        .await;
        self.seen(r)
    }

    /// A transaction (retried past an unreachable member).
    async fn txn(&self, txn: Txn) -> Result<etcd_client::TxnResponse, etcd_client::Error> {
        let r = retry_unreachable(|| {
            let mut kv = self.client.kv_client();
            let txn = txn.clone();
            async move { kv.txn(txn).await }
        })
        .await;
        self.seen(r)
    }

    /// The holder and lease of lock `key`, if it is held.
    async fn lock_holder(&self, key: &str) -> Result<Option<(Vec<u8>, i64)>, StorageError> {
        let resp = self.get(key, None).await.map_err(|e| etcd_error(key, e))?;
        Ok(resp
            .kvs()
            .first()
            .map(|kv| (kv.value().to_vec(), kv.lease())))
    }

    /// Keeps `lease` alive once; `false` when it has already expired.
    async fn keep_alive(&self, key: &str, lease: i64) -> Result<bool, StorageError> {
        let keep_alive = retry_unreachable(|| {
            let mut leases = self.client.lease_client();
            async move { leases.keep_alive(lease).await }
        });
        match self.seen(keep_alive.await) {
            Ok(_) => Ok(true),
            // The client reports an expired (unknown) lease this way.
            Err(etcd_client::Error::LeaseKeepAliveError(_)) => Ok(false),
            Err(e) => Err(etcd_error(key, e)),
        }
    }
}

/// Attempts per request. The client spreads requests over the endpoints
/// and does not skip a member that is down, so a request that met one is
/// sent again (most likely to another member).
const ATTEMPTS: u32 = 6;
/// The pause between two attempts.
const ATTEMPT_PAUSE: Duration = Duration::from_millis(50);
/// gRPC's `UNAVAILABLE` (the member could not be reached).
const GRPC_UNAVAILABLE: i32 = 14;

/// Whether `e` says the member the request went to could not be reached
/// (the request was not carried out, so it can be sent again).
fn unreachable_member(e: &etcd_client::Error) -> bool {
    match e {
        etcd_client::Error::GRpcStatus(s) => s.code() as i32 == GRPC_UNAVAILABLE,
        etcd_client::Error::TransportError(_) => true,
        _ => false,
    }
}

/// Runs the request `f` makes, again (up to 6 times) while it
/// meets a member that cannot be reached: one member of three down costs a
/// retry, not a failure. Any other error, or the last one, is returned.
pub async fn retry_unreachable<T, F, Fut>(mut f: F) -> Result<T, etcd_client::Error>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, etcd_client::Error>>,
{
    let mut attempt = 1;
    loop {
        match f().await {
            Err(e) if unreachable_member(&e) && attempt < ATTEMPTS => {
                attempt += 1;
                tokio::time::sleep(ATTEMPT_PAUSE).await;
            }
            r => return r,
        }
    }
}

/// An etcd failure as a storage error on `key`.
fn etcd_error(key: &str, e: etcd_client::Error) -> StorageError {
    StorageError::io(key, std::io::Error::other(e))
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// A lease time-to-live in whole seconds (rounded up, at least one).
fn lease_secs(ttl: Duration) -> i64 {
    let secs = ttl.as_secs() + u64::from(ttl.subsec_nanos() > 0);
    i64::try_from(secs.max(1)).unwrap_or(i64::MAX)
}

impl Storage for EtcdStorage {
    fn store<'a>(&'a self, key: &'a str, value: &'a [u8]) -> StorageFuture<'a, ()> {
        Box::pin(async move {
            let data = self.data_key(key)?;
            let txn = Txn::new().and_then([
                TxnOp::put(data.as_str(), value, None),
                TxnOp::put(self.mtime_key(key), now_ms().to_string(), None),
            ]);
            self.txn(txn).await.map_err(|e| etcd_error(key, e))?;
            Ok(())
        })
    }

    fn load<'a>(&'a self, key: &'a str) -> StorageFuture<'a, Vec<u8>> {
        Box::pin(async move {
            let data = self.data_key(key)?;
            let mut resp = self
                .get(&data, None)
                .await
                .map_err(|e| etcd_error(key, e))?;
            match resp.take_kvs().pop() {
                Some(kv) => Ok(kv.into_key_value().1),
                None => Err(StorageError::NotFound(key.to_owned())),
            }
        })
    }

    fn delete<'a>(&'a self, key: &'a str) -> StorageFuture<'a, ()> {
        Box::pin(async move {
            let data = self.data_key(key)?;
            let txn = Txn::new().and_then([
                TxnOp::delete(data.as_str(), None),
                TxnOp::delete(self.mtime_key(key), None),
            ]);
            self.txn(txn).await.map_err(|e| etcd_error(key, e))?;
            Ok(())
        })
    }

    fn list<'a>(&'a self, prefix: &'a str) -> StorageFuture<'a, Vec<String>> {
        Box::pin(async move {
            let under = if prefix.is_empty() {
                format!("{}data/", self.prefix)
            } else {
                format!("{}/", self.data_key(prefix)?)
            };
            let options = GetOptions::new().with_prefix().with_keys_only();
            let resp = self
                .get(&under, Some(options))
                .await
                .map_err(|e| etcd_error(prefix, e))?;
            let strip = self.prefix.len() + "data/".len();
            let mut keys: Vec<String> = resp
                .kvs()
                .iter()
                .filter_map(|kv| kv.key_str().ok()?.get(strip..).map(str::to_owned))
                .collect();
            keys.sort();
            Ok(keys)
        })
    }

    fn stat<'a>(&'a self, key: &'a str) -> StorageFuture<'a, KeyInfo> {
        Box::pin(async move {
            let data = self.data_key(key)?;
            // Both in one transaction: one revision of the pair.
            let txn = Txn::new().and_then([
                TxnOp::get(data.as_str(), None),
                TxnOp::get(self.mtime_key(key), None),
            ]);
            let resp = self.txn(txn).await.map_err(|e| etcd_error(key, e))?;
            let mut gets = resp.op_responses().into_iter().map(|r| match r {
                TxnOpResponse::Get(g) => g.kvs().first().cloned(),
                _ => None,
            });
            let (Some(Some(value)), mtime) = (gets.next(), gets.next().flatten()) else {
                return Err(StorageError::NotFound(key.to_owned()));
            };
            let ms = mtime
                .and_then(|m| m.value_str().ok()?.parse::<u64>().ok())
                .unwrap_or(0);
            Ok(KeyInfo {
                modified: UNIX_EPOCH + Duration::from_millis(ms),
                size: value.value().len() as u64,
            })
        })
    }

    fn try_lock<'a>(
        &'a self,
        name: &'a str,
        owner: &'a str,
        ttl: Duration,
    ) -> StorageFuture<'a, bool> {
        Box::pin(async move {
            let key = self.lock_key(name)?;
            match self.lock_holder(&key).await? {
                Some((holder, lease)) if holder == owner.as_bytes() => {
                    return self.keep_alive(&key, lease).await;
                }
                Some(_) => return Ok(false),
                None => {}
            }
            let grant = retry_unreachable(|| {
                let mut leases = self.client.lease_client();
                async move { leases.grant(lease_secs(ttl), None).await }
            });
            let lease = self
                .seen(grant.await)
                .map_err(|e| etcd_error(&key, e))?
                .id();
            let txn = Txn::new()
                .when([Compare::create_revision(key.as_str(), CompareOp::Equal, 0)])
                .and_then([TxnOp::put(
                    key.as_str(),
                    owner,
                    Some(PutOptions::new().with_lease(lease)),
                )]);
            let taken = self
                .txn(txn)
                .await
                .map_err(|e| etcd_error(&key, e))?
                .succeeded();
            if !taken {
                // Someone else was quicker; our lease holds nothing.
                let _ = self.client.lease_client().revoke(lease).await;
            }
            Ok(taken)
        })
    }

    fn refresh_lock<'a>(
        &'a self,
        name: &'a str,
        owner: &'a str,
        _ttl: Duration,
    ) -> StorageFuture<'a, bool> {
        Box::pin(async move {
            let key = self.lock_key(name)?;
            match self.lock_holder(&key).await? {
                Some((holder, lease)) if holder == owner.as_bytes() => {
                    self.keep_alive(&key, lease).await
                }
                _ => Ok(false),
            }
        })
    }

    fn unlock<'a>(&'a self, name: &'a str, owner: &'a str) -> StorageFuture<'a, ()> {
        Box::pin(async move {
            let key = self.lock_key(name)?;
            let txn = Txn::new()
                .when([Compare::value(key.as_str(), CompareOp::Equal, owner)])
                .and_then([TxnOp::delete(
                    key.as_str(),
                    Some(DeleteOptions::new().with_prev_key()),
                )]);
            let resp = self.txn(txn).await.map_err(|e| etcd_error(&key, e))?;
            // The lease had only this key: give it back rather than let it
            // run out.
            for r in resp.op_responses() {
                if let TxnOpResponse::Delete(d) = r {
                    for prev in d.prev_kvs() {
                        let _ = self.client.lease_client().revoke(prev.lease()).await;
                    }
                }
            }
            Ok(())
        })
    }
}

#[cfg(test)]
#[path = "etcd_tests.rs"]
mod tests;
