//! `[etcd]`: a fleet's shared state in etcd (v3 API, the `etcd-client`
//! crate), where a pair uses a storage directory and the peer link:
//!
//! - the ACME storage and its locks (edge-acme's `EtcdStorage` under
//!   `PREFIX/acme/`): one node orders a certificate for the whole fleet, the
//!   others find it there; a lock is an etcd lease, so a dead node's lock
//!   runs out by itself;
//! - the TLS session-ticket keys (`etcd/tickets.rs`): one key set for the fleet
//!   under `PREFIX/tickets/keys`, rotated by the node holding the
//!   rotation lock, read and watched by the others;
//! - the server states set with `edge admin` (`etcd/admin.rs`): one key per
//!   server under `PREFIX/admin/`, watched; the newest change wins (the
//!   pair's rule).
//!
//! An unreachable etcd never stops traffic: each node serves from what it
//! has (its certificates, its key set, its states), logs the outage once
//! ([`Health`]), counts it (`edge_etcd_up`, `edge_etcd_errors_total`), and
//! catches up when etcd answers again (it re-reads everything, merges, and
//! writes back what it changed meanwhile).
//!
//! Started once at start: a reload does not change `[etcd]`.

mod admin;
mod health;
mod tickets;

use std::sync::Arc;
use std::time::Duration;

use edge_acme::etcd_client::{
    Client, ConnectOptions, Error, GetOptions, GetResponse, Txn, TxnResponse, WatchOptions,
    WatchStream,
};
use edge_acme::{EtcdStorage, retry_unreachable};

pub use health::Health;

use crate::admin::Admin;
use crate::config::EtcdSettings;
use crate::metrics::Metrics;
use edge_sni::tickets::TicketStore;

/// Pause between two attempts after etcd failed.
const RETRY: Duration = Duration::from_secs(1);

/// The running `[etcd]` link: its tasks end when it is dropped.
#[derive(Debug)]
pub struct Fleet {
    tasks: Vec<tokio::task::JoinHandle<()>>,
    health: Arc<Health>,
}

impl Fleet {
    /// Whether the last exchange with etcd succeeded.
    pub fn health(&self) -> &Arc<Health> {
        &self.health
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// A client of the cluster in `s`. It connects lazily: a down etcd is no
/// error here, each request fails after the timeouts instead.
pub async fn client(s: &EtcdSettings) -> Result<Client, String> {
    let mut options = ConnectOptions::new()
        .with_connect_timeout(s.dial_timeout)
        .with_timeout(s.request_timeout)
        // A member that vanishes without closing (a partition) is noticed
        // on idle watches too.
        .with_keep_alive(Duration::from_secs(5), s.request_timeout)
        .with_keep_alive_while_idle(true);
    if s.endpoints.iter().any(|e| e.starts_with("https://")) {
        options = options.with_tls(tls(s)?);
    }
    Client::connect(&s.endpoints, Some(options))
        .await
        .map_err(|e| format!("etcd client: {e}"))
}

fn tls(s: &EtcdSettings) -> Result<edge_acme::etcd_client::TlsOptions, String> {
    use edge_acme::etcd_client::{Certificate, Identity, TlsOptions};
    let read = |p: &std::path::Path| {
        std::fs::read(p).map_err(|e| format!("etcd: cannot read {}: {e}", p.display()))
    };
    let mut t = TlsOptions::new();
    if let Some(ca) = &s.ca_file {
        t = t.ca_certificate(Certificate::from_pem(read(ca)?));
    }
    if let Some((cert, key)) = &s.client_cert {
        t = t.identity(Identity::from_pem(read(cert)?, read(key)?));
    }
    Ok(t)
}

/// Starts the `[etcd]` link: sets the ACME storage (before the first
/// config builds its ACME manager), then shares the ticket keys and the
/// server states. `tickets` is not rotated by its own task: the fleet's
/// rotation runs here.
pub async fn start(
    s: &EtcdSettings,
    admin: Arc<Admin>,
    tickets: Arc<TicketStore>,
    metrics: &Metrics,
) -> Result<Fleet, String> {
    let client = client(s).await?;
    let health = Health::new(metrics);
    // Its failures count and log like the other exchanges with etcd.
    let observed = health.clone();
    let storage = EtcdStorage::new(client.clone(), format!("{}acme/", s.prefix)).observe(Arc::new(
        move |r| match r {
            Ok(()) => observed.ok(),
            Err(e) => observed.failed("acme", e),
        },
    ));
    if !crate::acme::share_storage(Arc::new(storage), s.node_name.clone()) {
        return Err("[etcd] started twice".to_owned());
    }
    // The rotation lock is a lease lock like ACME's, in the fleet's prefix.
    let locks = EtcdStorage::new(client.clone(), s.prefix.clone());
    let shared = Shared {
        client,
        prefix: s.prefix.clone(),
        node: s.node_name.clone(),
        health: health.clone(),
    };
    tracing::info!(endpoints = ?s.endpoints, prefix = %s.prefix, node = %s.node_name, "etcd: sharing ACME storage, ticket keys and server states");
    let tasks = vec![
        tokio::spawn(tickets::run(shared.clone(), tickets, locks)),
        tokio::spawn(admin::run(shared, admin)),
    ];
    Ok(Fleet { tasks, health })
}

/// What every sharing task needs.
#[derive(Clone)]
struct Shared {
    client: Client,
    prefix: String,
    node: String,
    health: Arc<Health>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("prefix", &self.prefix)
            .field("node", &self.node)
            .finish_non_exhaustive()
    }
}

/// The requests of the sharing tasks, each sent again past a member that
/// cannot be reached.
impl Shared {
    async fn get(&self, key: &str, options: Option<GetOptions>) -> Result<GetResponse, Error> {
        retry_unreachable(|| {
            let (mut kv, options) = (self.client.kv_client(), options.clone());
            async move { kv.get(key, options).await }
        })
        .await
    }

    async fn txn(&self, txn: Txn) -> Result<TxnResponse, Error> {
        retry_unreachable(|| {
            let (mut kv, txn) = (self.client.kv_client(), txn.clone());
            async move { kv.txn(txn).await }
        })
        .await
    }

    async fn watch(&self, key: &str, options: WatchOptions) -> Result<WatchStream, Error> {
        retry_unreachable(|| {
            let (mut w, options) = (self.client.watch_client(), options.clone());
            async move { w.watch(key, Some(options)).await }
        })
        .await
    }
}
