//! The server states set with `edge admin` (drain, maint, weights), shared
//! by the fleet in etcd: one JSON record per server under
//! `PREFIX/admin/POOL/ADDR`, the pair's record with its stamp.
//!
//! The rule is the pair's (see `admin::registry`): a record applies when
//! its stamp is newer than the one a node has, so the order in which
//! nodes read and write does not matter. A change made here is written at
//! once when it beats what etcd holds (compare-and-swap on the key's
//! revision); every node watches the prefix. When etcd comes back after an
//! outage, a node reads every record, applies the newer ones, and writes
//! its own changes made meanwhile where they are newer.

use std::collections::HashMap;
use std::sync::Arc;

use edge_acme::etcd_client::{
    Compare, CompareOp, Error, EventType, GetOptions, Txn, TxnOp, WatchOptions,
};
use tokio::sync::mpsc;

use super::{RETRY, Shared};
use crate::admin::{Admin, ServerRecord};

/// A record's stamp, as compared (time, then node name).
type Stamp = (u64, String);

fn stamp(r: &ServerRecord) -> Stamp {
    (r.stamp_ms, r.node.clone())
}

fn key(dir: &str, r: &ServerRecord) -> String {
    format!("{dir}{}/{}", r.pool, r.server)
}

fn decode(raw: &[u8]) -> Option<ServerRecord> {
    serde_json::from_slice(raw)
        .inspect_err(|e| tracing::warn!(error = %e, "etcd: server state unreadable, ignored"))
        .ok()
}

/// Shares `admin`'s server states through etcd for the process's life.
pub(super) async fn run(s: Shared, admin: Arc<Admin>) {
    let (tx, mut changes) = mpsc::unbounded_channel();
    admin.share_changes(
        s.node.clone(),
        Arc::new(move |r| {
            let _ = tx.send(r);
        }),
    );
    let dir = format!("{}admin/", s.prefix);
    loop {
        if let Err(e) = round(&s, &admin, &dir, &mut changes).await {
            s.health.failed("admin", &e);
        }
        tokio::time::sleep(RETRY).await;
    }
}

/// Catches up both ways, then follows etcd and writes local changes until
/// etcd fails.
async fn round(
    s: &Shared,
    admin: &Admin,
    dir: &str,
    changes: &mut mpsc::UnboundedReceiver<ServerRecord>,
) -> Result<(), Error> {
    let resp = s.get(dir, Some(GetOptions::new().with_prefix())).await?;
    let revision = resp.header().map_or(0, |h| h.revision());
    let mut held: HashMap<String, (Stamp, i64)> = HashMap::new();
    for kv in resp.kvs() {
        if let Some(r) = decode(kv.value()) {
            admin.apply_peer(&r);
            held.insert(key(dir, &r), (stamp(&r), kv.mod_revision()));
        }
    }
    // What changed here while etcd was away is in the records.
    while changes.try_recv().is_ok() {}
    for r in admin.records() {
        let k = key(dir, &r);
        let seen = held.get(&k);
        if seen.is_none_or(|(st, _)| *st < stamp(&r)) {
            write(s, &k, &r, seen.map_or(0, |(_, rev)| *rev)).await?;
        }
    }
    s.health.ok();
    let options = WatchOptions::new()
        .with_prefix()
        .with_start_revision(revision + 1);
    let mut watch = s.watch(dir, options).await?;
    loop {
        tokio::select! {
            msg = watch.message() => {
                let resp = msg?.ok_or_else(|| Error::WatchError("watch ended".into()))?;
                if resp.canceled() {
                    return Err(Error::WatchError(format!("watch cancelled: {}", resp.cancel_reason())));
                }
                for ev in resp.events() {
                    if let (EventType::Put, Some(kv)) = (ev.event_type(), ev.kv())
                        && let Some(r) = decode(kv.value())
                    {
                        admin.apply_peer(&r);
                    }
                }
            }
            Some(r) = changes.recv() => {
                write_newer(s, &key(dir, &r), &r).await?;
                s.health.ok();
            }
        }
    }
}

/// Writes `r` under `k` if the key is still at `mod_revision` (0: absent);
/// whether it did.
async fn write(s: &Shared, k: &str, r: &ServerRecord, mod_revision: i64) -> Result<bool, Error> {
    let value = serde_json::to_vec(r).map_err(|e| Error::InvalidArgs(e.to_string()))?;
    let txn = Txn::new()
        .when([Compare::mod_revision(k, CompareOp::Equal, mod_revision)])
        .and_then([TxnOp::put(k, value, None)]);
    Ok(s.txn(txn).await?.succeeded())
}

/// Writes a change made here unless etcd holds a newer one (then the watch
/// brings it). Retries a lost compare-and-swap a few times.
async fn write_newer(s: &Shared, k: &str, r: &ServerRecord) -> Result<(), Error> {
    for _ in 0..5 {
        let resp = s.get(k, None).await?;
        let current = resp.kvs().first();
        if current
            .and_then(|kv| decode(kv.value()))
            .is_some_and(|theirs| stamp(&theirs) >= stamp(r))
        {
            return Ok(());
        }
        if write(s, k, r, current.map_or(0, |kv| kv.mod_revision())).await? {
            return Ok(());
        }
    }
    tracing::warn!(key = %k, "etcd: server state not written (the key kept changing)");
    Ok(())
}
