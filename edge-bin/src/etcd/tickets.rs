//! The fleet's TLS session-ticket keys in etcd: one key set under
//! `PREFIX/tickets/keys` (edge-sni's encoding), so a client resumes on any
//! node.
//!
//! Each node merges the set it finds there into its own (edge-sni's rule:
//! the higher generation wins) and writes back only a set that beats it,
//! with a compare-and-swap on the value it read, then watches the key.
//! Rotation is one generation for the whole fleet: only the node holding
//! the rotation lock (a lease lock, `PREFIX/locks/tickets-rotation`)
//! rotates, and the others take the new set from the watch. While etcd is
//! unreachable a node rotates on its own once the rotation is overdue by
//! [`LOCAL_GRACE`]; the sets meet again by the same rule when it returns.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use edge_acme::etcd_client::{Compare, CompareOp, Error, EventType, Txn, TxnOp, WatchOptions};
use edge_acme::{EtcdStorage, Storage};
use edge_sni::tickets::{KeySet, Offered};

use super::{RETRY, Shared};
use edge_sni::tickets::TicketStore;

/// The key, under the prefix.
const KEY: &str = "tickets/keys";
/// The rotation lock's name and time-to-live; tried every [`CHECK`].
const LOCK: &str = "tickets-rotation";
const LOCK_TTL: Duration = Duration::from_secs(90);
const CHECK: Duration = Duration::from_secs(30);
/// How long past due a node cut off from etcd waits before rotating alone.
const LOCAL_GRACE: Duration = Duration::from_secs(600);

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Shares `store`'s keys through etcd for the process's life.
pub(super) async fn run(s: Shared, store: Arc<TicketStore>, locks: EtcdStorage) {
    let key = format!("{}{KEY}", s.prefix);
    loop {
        if let Err(e) = round(&s, &store, &locks, &key).await {
            s.health.failed("tickets", &e);
            rotate_alone(&store);
        }
        tokio::time::sleep(RETRY).await;
    }
}

/// Reads, merges and writes back, then follows the key until etcd fails.
async fn round(
    s: &Shared,
    store: &TicketStore,
    locks: &EtcdStorage,
    key: &str,
) -> Result<(), Error> {
    let resp = s.get(key, None).await?;
    let revision = resp.header().map_or(0, |h| h.revision());
    let raw = resp.kvs().first().map(|kv| kv.value().to_vec());
    merge(s, store, key, raw).await?;
    s.health.ok();
    let options = WatchOptions::new().with_start_revision(revision + 1);
    let mut watch = s.watch(key, options).await?;
    let mut tick = tokio::time::interval(CHECK);
    loop {
        tokio::select! {
            msg = watch.message() => {
                let resp = msg?.ok_or_else(|| Error::WatchError("watch ended".into()))?;
                if resp.canceled() {
                    return Err(Error::WatchError(format!("watch cancelled: {}", resp.cancel_reason())));
                }
                for ev in resp.events() {
                    let raw = match (ev.event_type(), ev.kv()) {
                        (EventType::Put, Some(kv)) => Some(kv.value().to_vec()),
                        _ => None,
                    };
                    merge(s, store, key, raw).await?;
                }
            }
            _ = tick.tick() => {
                rotate(s, store, locks, key).await?;
                s.health.ok();
            }
        }
    }
}

/// Merges the set etcd holds (`raw`, as read) into ours; writes ours back
/// when it differs (it beat theirs, or etcd had none or an unreadable one).
async fn merge(
    s: &Shared,
    store: &TicketStore,
    key: &str,
    raw: Option<Vec<u8>>,
) -> Result<(), Error> {
    let theirs = raw.as_deref().and_then(|b| match KeySet::decode(b) {
        Ok(set) => Some(set),
        Err(e) => {
            tracing::warn!(error = %e, "etcd: ticket keys unreadable, replaced by ours");
            None
        }
    });
    if let Some(t) = &theirs
        && let Offered::Changed(set) = store.offer(t)
        && set == *t
    {
        tracing::info!(
            generation = set.generation(),
            "etcd: the fleet's ticket keys adopted"
        );
        return Ok(());
    }
    let ours = store.key_set();
    if theirs.as_ref() != Some(&ours) && write_if(s, key, raw, &ours).await? {
        tracing::info!(
            generation = ours.generation(),
            "etcd: ticket keys published to the fleet"
        );
    }
    Ok(())
}

/// Writes `set` if the key still holds `expected` (`None`: absent);
/// whether it did. A lost race is no error: the watch brings the winner.
async fn write_if(
    s: &Shared,
    key: &str,
    expected: Option<Vec<u8>>,
    set: &KeySet,
) -> Result<bool, Error> {
    let compare = match expected {
        Some(v) => Compare::value(key, CompareOp::Equal, v),
        None => Compare::version(key, CompareOp::Equal, 0),
    };
    let txn = Txn::new()
        .when([compare])
        .and_then([TxnOp::put(key, set.encode(), None)]);
    Ok(s.txn(txn).await?.succeeded())
}

/// The rotation, on the node holding the rotation lock when it is due.
async fn rotate(
    s: &Shared,
    store: &TicketStore,
    locks: &EtcdStorage,
    key: &str,
) -> Result<(), Error> {
    let held = locks
        .try_lock(LOCK, &s.node, LOCK_TTL)
        .await
        .map_err(|e| Error::IoError(std::io::Error::other(e)))?;
    let current = store.key_set();
    if !held || !current.rotation_due(now()) {
        return Ok(());
    }
    let Ok(next) = current.rotated(now()) else {
        tracing::error!("ticket keys not rotated: no randomness");
        return Ok(());
    };
    if write_if(s, key, Some(current.encode()), &next).await? {
        store.offer(&next);
        tracing::info!(
            generation = next.generation(),
            "etcd: ticket keys rotated for the fleet"
        );
    }
    Ok(())
}

/// Cut off from etcd: rotates alone once overdue by [`LOCAL_GRACE`].
fn rotate_alone(store: &TicketStore) {
    let current = store.key_set();
    if !current.rotation_due(now().saturating_sub(LOCAL_GRACE.as_secs())) {
        return;
    }
    if let Ok(next) = current.rotated(now()) {
        store.offer(&next);
        tracing::warn!(
            generation = next.generation(),
            "ticket keys rotated without etcd (overdue); the fleet converges when it answers"
        );
    }
}
