//! [`AcmeManager`]: orders and renews in the background.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use instant_acme::{Account, CertificateIdentifier};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;
use tokio::task::JoinHandle;
use tracing::Instrument;

use crate::cert::{self, LoadedCert};
use crate::client;
use crate::config::{AcmeConfig, CertificateConfig};
use crate::error::Error;
pub use crate::event::{AcmeEvent, CertificateStatus};
use crate::resolver::CertResolver;
use crate::schedule::{Backoff, RateLimiter, pick_in_window, renew_at};
use crate::stop::Stop;
use crate::storage::{Storage, StorageError, keys};
use crate::wake::RenewRequests;

/// Extra facts stored beside a certificate.
#[derive(Serialize, Deserialize)]
struct Meta {
    names: Vec<String>,
    serial: String,
    issued_by_node: String,
    issued_at_unix: u64,
}

struct Shared {
    config: AcmeConfig,
    storage: Arc<dyn Storage>,
    resolver: Arc<CertResolver>,
    events: broadcast::Sender<AcmeEvent>,
    status: Mutex<BTreeMap<String, CertificateStatus>>,
    account: tokio::sync::Mutex<Option<Account>>,
    rate: Mutex<RateLimiter>,
    /// How many certificate tasks finished their first look at storage.
    synced: tokio::sync::watch::Sender<usize>,
    /// Set by [`AcmeHandle::shutdown`].
    stop: Stop,
    /// How many certificate tasks have ended.
    exited: tokio::sync::watch::Sender<usize>,
    /// Renewals asked for with [`AcmeHandle::renew_now`].
    requests: RenewRequests,
}

impl Shared {
    fn emit(&self, event: AcmeEvent) {
        let _ = self.events.send(event);
    }

    fn update(&self, id: &str, f: impl FnOnce(&mut CertificateStatus)) {
        let mut status = self.status.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(s) = status.get_mut(id) {
            f(s);
        }
    }

    async fn account(&self) -> Result<Account, Error> {
        let mut cached = self.account.lock().await;
        if let Some(account) = cached.as_ref() {
            return Ok(account.clone());
        }
        let account =
            client::load_or_create_account(&self.config, &self.storage, &self.stop).await?;
        *cached = Some(account.clone());
        Ok(account)
    }

    /// The CA says the account does not exist (it was deleted, or the CA
    /// was reset): move the stored credentials aside, never delete them, so
    /// the next attempt creates a new account. Credentials another node
    /// already replaced are left alone.
    async fn forget_account(&self) {
        let mut cached = self.account.lock().await;
        let Some(gone) = cached.take() else { return };
        let dir_id = client::directory_id(&self.config.directory_url);
        let key = keys::account(&dir_id);
        let Ok(raw) = self.storage.load(&key).await else {
            return;
        };
        let stored_id = serde_json::from_slice::<serde_json::Value>(&raw)
            .ok()
            .and_then(|v| v["credentials"]["id"].as_str().map(str::to_owned));
        if stored_id.as_deref() != Some(gone.id()) {
            return;
        }
        let unix = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let aside = format!("accounts/{dir_id}/account-unknown-to-ca-{unix}.json");
        match self.storage.store(&aside, &raw).await {
            Ok(()) => {
                if let Err(e) = self.storage.delete(&key).await {
                    tracing::error!(error = %e, "could not remove the stale account");
                }
                tracing::warn!(account = %gone.id(), moved_to = %aside, "the CA does not know the stored account; a new one will be created");
            }
            Err(e) => tracing::error!(error = %e, "could not move the stale account aside"),
        }
    }
}

/// Orders and renews the configured certificates in the background.
#[derive(Debug)]
pub struct AcmeManager;

impl AcmeManager {
    /// Starts one task per configured certificate (on the current tokio
    /// runtime). Each task loads the certificate from `storage` into
    /// `resolver`, orders it when missing or due, renews it when a third of
    /// its lifetime remains (or when the CA's renewal information says so),
    /// and retries failures with capped, jittered exponential backoff. Only
    /// one node sharing `storage` orders a given certificate at a time; the
    /// others pick the result up from storage.
    pub fn spawn(
        config: AcmeConfig,
        storage: Arc<dyn Storage>,
        resolver: Arc<CertResolver>,
    ) -> Result<AcmeHandle, Error> {
        let (events, _) = broadcast::channel(256);
        Self::spawn_with_events(config, storage, resolver, events)
    }

    /// Like [`spawn`](Self::spawn), sending events to `events`, so a
    /// receiver subscribed before the start misses none.
    pub fn spawn_with_events(
        config: AcmeConfig,
        storage: Arc<dyn Storage>,
        resolver: Arc<CertResolver>,
        events: broadcast::Sender<AcmeEvent>,
    ) -> Result<AcmeHandle, Error> {
        config.validate()?;
        let status = config
            .certificates
            .iter()
            .map(|c| {
                let status = CertificateStatus {
                    names: c.names.clone(),
                    key_type: c.key_type,
                    ..Default::default()
                };
                (c.id(), status)
            })
            .collect();
        let rate = RateLimiter::new(config.renewal.rate_limit, config.renewal.rate_window);
        let (stop_trigger, stop) = Stop::new();
        let shared = Arc::new(Shared {
            storage,
            resolver,
            events: events.clone(),
            status: Mutex::new(status),
            account: tokio::sync::Mutex::new(None),
            rate: Mutex::new(rate),
            synced: tokio::sync::watch::Sender::new(0),
            stop,
            exited: tokio::sync::watch::Sender::new(0),
            requests: RenewRequests::new(config.certificates.iter().map(CertificateConfig::id)),
            config,
        });
        let tasks = shared
            .config
            .certificates
            .iter()
            .map(|cert| {
                let span = tracing::info_span!("acme_cert", cert = %cert.id(), node = %shared.config.node_id);
                tokio::spawn(
                    CertTask::new(Arc::clone(&shared), cert.clone())
                        .run()
                        .instrument(span),
                )
            })
            .collect();
        Ok(AcmeHandle {
            shared,
            tasks,
            events,
            stop_trigger,
        })
    }
}

/// How long [`AcmeHandle::shutdown`] waits for the tasks to give up their
/// work and release their storage locks before it aborts them.
pub const SHUTDOWN_LIMIT: Duration = Duration::from_secs(5);

/// Handle to the running manager.
///
/// Stop it with [`shutdown`](Self::shutdown), which releases the storage
/// lock of an order in progress so the other node can order at once.
/// Dropping the handle (or [`abort`](Self::abort)) stops the tasks where
/// they are, like a crash: such a lock expires after its time-to-live.
pub struct AcmeHandle {
    shared: Arc<Shared>,
    tasks: Vec<JoinHandle<()>>,
    events: broadcast::Sender<AcmeEvent>,
    stop_trigger: tokio::sync::watch::Sender<bool>,
}

impl std::fmt::Debug for AcmeHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AcmeHandle")
            .field("status", &self.status())
            .finish()
    }
}

impl AcmeHandle {
    /// Events from now on (issued, renewed, loaded, failed).
    pub fn subscribe(&self) -> broadcast::Receiver<AcmeEvent> {
        self.events.subscribe()
    }

    /// Waits until every certificate already in storage is loaded into the
    /// resolver (so a node starting up serves them before accepting TLS).
    /// Does not wait for orders.
    pub async fn loaded(&self) {
        let total = self.shared.config.certificates.len();
        let mut rx = self.shared.synced.subscribe();
        let _ = rx.wait_for(|n| *n >= total).await;
    }

    /// The state of every managed certificate.
    pub fn status(&self) -> Vec<CertificateStatus> {
        let status = self
            .shared
            .status
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        status
            .iter()
            .map(|(id, s)| CertificateStatus {
                renewal_requested: self.shared.requests.is_asked(id),
                ..s.clone()
            })
            .collect()
    }

    /// Asks for the certificate named `name` (any of its configured names)
    /// to be renewed now, even though it is not due: its task stops waiting
    /// and orders under the storage lock the nodes of a pair share (so it
    /// waits while the other node orders it), within the rate limit. A
    /// name with an ECDSA and an RSA certificate has both renewed.
    /// Returns at once with the certificate's names, or `None` when no
    /// managed certificate has that name.
    pub fn renew_now(&self, name: &str) -> Option<Vec<String>> {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        let certs = &self.shared.config.certificates;
        let first = certs
            .iter()
            .find(|c| c.names.contains(&name) || c.id() == name)?;
        // The same names with other key types.
        for cert in certs.iter().filter(|c| c.names == first.names) {
            self.shared.requests.ask(&cert.id());
            tracing::info!(names = ?cert.names, key_type = cert.key_type.name(), "renewal asked for");
        }
        Some(first.names.clone())
    }

    /// Graceful stop: every task gives up what it is doing (an order in
    /// progress, waiting for another node's lock, a pause between attempts)
    /// and releases the storage lock it holds, so the other node of the pair
    /// can order at once instead of waiting for the lock to expire. A
    /// certificate already obtained is stored before its task ends. Waits
    /// up to [`SHUTDOWN_LIMIT`], then aborts what is left (whose locks then
    /// expire on their own). Idempotent; safe to call from several places.
    ///
    /// An abandoned order's pending challenge tokens stay in storage: the CA
    /// may be validating them right now, and the other node, using the same
    /// account, may be handed the same authorization for its own order.
    pub async fn shutdown(&self) {
        self.stop_trigger.send_replace(true);
        let total = self.tasks.len();
        let mut exited = self.shared.exited.subscribe();
        let ended = tokio::time::timeout(SHUTDOWN_LIMIT, exited.wait_for(|n| *n >= total)).await;
        if ended.is_err() {
            tracing::warn!(limit = ?SHUTDOWN_LIMIT, "ACME tasks did not stop in time; aborting them (their storage locks expire on their own)");
        }
        self.abort();
    }

    /// Stops the background tasks where they are, like a crash: an order in
    /// progress is abandoned and its storage lock expires after its
    /// time-to-live. Prefer [`shutdown`](Self::shutdown).
    pub fn abort(&self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl Drop for AcmeHandle {
    fn drop(&mut self) {
        self.abort();
    }
}

/// Counts a certificate task as ended when dropped (returned or aborted).
struct Exited(Arc<Shared>);

impl Drop for Exited {
    fn drop(&mut self) {
        self.0.exited.send_modify(|n| *n += 1);
    }
}

/// The CA's renewal window for one certificate, as last fetched.
struct AriState {
    serial: String,
    pick: Option<SystemTime>,
    window: Option<(SystemTime, SystemTime)>,
    refetch_at: SystemTime,
}

enum Outcome {
    Ordered,
    PickedUp,
}

struct CertTask {
    shared: Arc<Shared>,
    cert: CertificateConfig,
    id: String,
    current: Option<LoadedCert>,
    backoff: Backoff,
    ari: Option<AriState>,
    /// The last storage problem reported, so it is reported once.
    last_corrupt: Option<String>,
}

impl CertTask {
    fn new(shared: Arc<Shared>, cert: CertificateConfig) -> Self {
        let r = &shared.config.renewal;
        let backoff = Backoff::new(r.backoff_initial, r.backoff_max);
        Self {
            id: cert.id(),
            shared,
            cert,
            current: None,
            backoff,
            ari: None,
            last_corrupt: None,
        }
    }

    async fn run(mut self) {
        let _exited = Exited(Arc::clone(&self.shared));
        let stop = self.shared.stop.clone();
        self.sync_from_storage().await;
        self.shared.synced.send_modify(|n| *n += 1);
        while !stop.is_set() {
            self.sync_from_storage().await;
            let now = SystemTime::now();
            // Not raced against the stop: it may hold the account lock,
            // which it releases itself at a stop.
            let due = self.due_at().await;
            if stop.is_set() {
                break;
            }
            self.shared.update(&self.id, |s| s.renew_at = Some(due));
            if let Ok(wait) = due.duration_since(now)
                && !wait.is_zero()
                && !self.shared.requests.is_asked(&self.id)
            {
                let wait = wait.min(self.shared.config.renewal.storage_poll);
                tokio::select! {
                    () = tokio::time::sleep(wait) => continue,
                    // Asked (or a permit left from a request already
                    // served): looked at again above.
                    () = self.shared.requests.woken(&self.id) => continue,
                    () = stop.wait() => break,
                }
            }
            match self.renew().await {
                Ok(_) => self.succeeded(),
                Err(_) if stop.is_set() => break,
                Err(e) => {
                    if e.ca_problem_type() == Some("urn:ietf:params:acme:error:accountDoesNotExist")
                    {
                        self.shared.forget_account().await;
                    }
                    let wait = self.failed(&e);
                    tokio::select! {
                        () = tokio::time::sleep(wait) => {}
                        () = self.shared.requests.woken(&self.id) => {}
                        () = stop.wait() => break,
                    }
                }
            }
        }
        tracing::info!("certificate task stopped");
    }

    fn succeeded(&mut self) {
        self.backoff.reset();
        self.shared.update(&self.id, |s| {
            s.failures = 0;
            s.last_error = None;
        });
    }

    fn corrupt(&self, e: &Error) {
        tracing::error!(error = %e, "stored certificate unusable; the one in service (if any) keeps serving and a new one will be ordered");
        self.shared.emit(AcmeEvent::StorageCorrupt {
            names: self.cert.names.clone(),
            error: e.to_string(),
        });
    }

    /// Records a failure; returns how long to wait before the next attempt.
    fn failed(&mut self, e: &Error) -> Duration {
        let (backoff, mut retry_in) = self.backoff.fail(rand::random::<f64>());
        if let Error::RateLimited { retry_in: until } = e {
            retry_in = retry_in.max(*until);
        }
        let attempt = self.backoff.failures();
        tracing::warn!(error = %e, attempt, ?retry_in, "certificate order failed; the certificate in service (if any) keeps serving");
        self.shared.update(&self.id, |s| {
            s.failures = attempt;
            s.last_error = Some(e.to_string());
        });
        self.shared.emit(AcmeEvent::Failed {
            names: self.cert.names.clone(),
            error: e.to_string(),
            ca_problem: e.ca_problem_type().map(str::to_owned),
            attempt,
            backoff,
            retry_in,
        });
        retry_in
    }

    fn covers_all(&self, loaded: &LoadedCert) -> bool {
        self.cert.names.iter().all(|n| loaded.info.covers(n))
    }

    fn own_due(&self, loaded: &LoadedCert) -> SystemTime {
        if !self.covers_all(loaded) {
            return SystemTime::UNIX_EPOCH;
        }
        renew_at(&loaded.info, self.shared.config.renewal.remaining_fraction)
    }

    /// When to act: now without a certificate, else the earlier of the own
    /// threshold and the CA's suggestion.
    async fn due_at(&mut self) -> SystemTime {
        let Some(current) = self.current.clone() else {
            return SystemTime::UNIX_EPOCH;
        };
        let own = self.own_due(&current);
        match self.ari_pick(&current).await {
            Some(ari) => own.min(ari),
            None => own,
        }
    }

    async fn ari_pick(&mut self, current: &LoadedCert) -> Option<SystemTime> {
        if !self.shared.config.renewal.use_ari {
            return None;
        }
        let id = current.info.ari_id.as_deref()?;
        let now = SystemTime::now();
        if let Some(state) = &self.ari
            && state.serial == current.info.serial
            && now < state.refetch_at
        {
            return state.pick;
        }
        let (aki, serial) = id.split_once('.')?;
        let cert_id = CertificateIdentifier {
            authority_key_identifier: aki.to_owned().into(),
            serial: serial.to_owned().into(),
        };
        let fetched = match self.shared.account().await {
            Ok(account) => tokio::select! {
                info = account.renewal_info(&cert_id) => info.map_err(Some),
                () = self.shared.stop.wait() => return None,
            },
            Err(Error::Stopped) => return None,
            Err(e) => {
                tracing::warn!(error = %e, "no account to ask the CA for renewal information");
                Err(None)
            }
        };
        let state = match fetched {
            Ok((info, retry_after)) => {
                let start = SystemTime::from(info.suggested_window.start);
                let end = SystemTime::from(info.suggested_window.end);
                let pick = pick_in_window(start, end, rand::random::<f64>());
                tracing::info!(?start, ?end, "CA renewal window (ARI)");
                let refetch =
                    retry_after.clamp(Duration::from_secs(60), Duration::from_secs(86_400));
                AriState {
                    serial: current.info.serial.clone(),
                    pick: Some(pick),
                    window: Some((start, end)),
                    refetch_at: now + refetch,
                }
            }
            Err(Some(instant_acme::Error::Unsupported(_))) => AriState {
                serial: current.info.serial.clone(),
                pick: None,
                window: None,
                refetch_at: now + Duration::from_secs(86_400),
            },
            Err(e) => {
                if let Some(e) = e {
                    tracing::warn!(error = %e, "could not fetch renewal information");
                }
                AriState {
                    serial: current.info.serial.clone(),
                    pick: None,
                    window: None,
                    // Not every poll: a CA that is down would fill the log.
                    refetch_at: now
                        + self
                            .shared
                            .config
                            .renewal
                            .storage_poll
                            .max(Duration::from_secs(600)),
                }
            }
        };
        let (pick, window) = (state.pick, state.window);
        self.ari = Some(state);
        self.shared.update(&self.id, |s| s.ari_window = window);
        pick
    }

    /// Reads the stored certificate and key. A key that does not match
    /// may be a write by the other node in progress (key first, then chain):
    /// read again briefly before calling it corrupt.
    async fn read_stored(&self) -> Result<Option<LoadedCert>, Error> {
        let storage = &self.shared.storage;
        let (chain_key, key_key) = (keys::cert_chain(&self.id), keys::cert_key(&self.id));
        let mut attempt = 0;
        loop {
            attempt += 1;
            let chain = match storage.load(&chain_key).await {
                Ok(chain) => chain,
                Err(StorageError::NotFound(_)) => return Ok(None),
                Err(e) => return Err(e.into()),
            };
            let key = match storage.load(&key_key).await {
                Ok(key) => key,
                Err(StorageError::NotFound(_)) => {
                    return Err(Error::CorruptStorage {
                        key: key_key,
                        reason: "certificate stored without its key".into(),
                    });
                }
                Err(e) => return Err(e.into()),
            };
            match cert::load_pem(&chain, &key) {
                Ok(loaded) => return Ok(Some(loaded)),
                Err(cert::CertError::KeyMismatch(_)) if attempt < 4 => {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => {
                    return Err(Error::CorruptStorage {
                        key: chain_key,
                        reason: e.to_string(),
                    });
                }
            }
        }
    }

    /// Loads the stored certificate; installs it when newer than the one in
    /// service. Returns whether it changed what is served.
    async fn sync_from_storage(&mut self) -> bool {
        let stored = match self.read_stored().await {
            Ok(stored) => {
                self.last_corrupt = None;
                stored
            }
            Err(e) => {
                let reason = e.to_string();
                if self.last_corrupt.as_ref() != Some(&reason) {
                    self.corrupt(&e);
                    self.last_corrupt = Some(reason);
                }
                return false;
            }
        };
        let Some(loaded) = stored else {
            return false;
        };
        if let Some(current) = &self.current
            && (current.info.serial == loaded.info.serial
                || current.info.not_after > loaded.info.not_after)
        {
            return false;
        }
        self.install(&loaded);
        tracing::info!(serial = %loaded.info.serial, "certificate loaded from storage");
        self.shared.emit(AcmeEvent::Loaded {
            names: self.cert.names.clone(),
            serial: loaded.info.serial.clone(),
            not_after: loaded.info.not_after,
        });
        self.current = Some(loaded);
        true
    }

    fn install(&self, loaded: &LoadedCert) {
        self.shared.resolver.set_acme(&self.id, loaded);
        self.shared.update(&self.id, |s| {
            s.serial = Some(loaded.info.serial.clone());
            s.not_after = Some(loaded.info.not_after);
        });
    }

    /// Takes the certificate's storage lock, does the work, and releases
    /// the lock, also when the work was given up at a stop.
    async fn renew(&mut self) -> Result<Outcome, Error> {
        let shared = &self.shared;
        let name = format!("cert-{}", self.id);
        let lock = client::lock(&shared.config, &shared.storage, name, &shared.stop).await?;
        let result = self.renew_locked().await;
        lock.release().await;
        if matches!(result, Err(Error::Stopped)) {
            tracing::info!("order given up at stop; storage lock released");
        }
        result
    }

    async fn renew_locked(&mut self) -> Result<Outcome, Error> {
        // Re-check under the lock: another node may have done the work
        // (unless a renewal was asked for).
        let before = self.current.as_ref().map(|c| c.info.serial.clone());
        if self.sync_from_storage().await
            && !self.shared.requests.is_asked(&self.id)
            && let Some(current) = &self.current
            && self.own_due(current) > SystemTime::now()
        {
            tracing::info!("another node renewed it; picked up from storage");
            return Ok(Outcome::PickedUp);
        }
        {
            let mut rate = self
                .shared
                .rate
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            rate.try_acquire(std::time::Instant::now())
                .map_err(|retry_in| Error::RateLimited { retry_in })?;
        }
        self.shared.requests.take(&self.id);
        let account = self.shared.account().await?;
        let config = &self.shared.config;
        // `replaces` only to a CA that answered renewal information.
        let ari_supported = self.ari.as_ref().is_some_and(|a| a.window.is_some());
        let replaces = if config.renewal.use_ari && ari_supported {
            self.current.as_ref().and_then(|c| c.info.ari_id.clone())
        } else {
            None
        };
        // Tokens of orders given up long ago (at a stop or a crash).
        client::sweep_stale_challenges(&self.shared.storage, SystemTime::now()).await;
        tracing::info!(names = ?self.cert.names, renewing = before.is_some(), "ordering certificate");
        let order = client::order(
            config,
            &self.shared.storage,
            &account,
            &self.cert,
            replaces.as_deref(),
        );
        // A backstop: the order bounds itself (and cleans up) first.
        let limit = client::order_limit(config, &self.cert).saturating_add(Duration::from_secs(60));
        let order = async {
            tokio::time::timeout(limit, order)
                .await
                .map_err(|_| Error::Timeout {
                    what: "ACME order",
                    after: limit,
                })?
        };
        // At a stop the order is given up (the caller releases the lock);
        // once issued, the certificate is stored whatever happens.
        self.shared.update(&self.id, |s| s.ordering = true);
        let issued = self.shared.stop.until(order).await;
        self.shared.update(&self.id, |s| s.ordering = false);
        let issued = issued?;
        // Key first: a reader that sees the new chain finds its key.
        let storage = &self.shared.storage;
        storage
            .store(&keys::cert_key(&self.id), issued.key_pem.as_bytes())
            .await?;
        storage
            .store(&keys::cert_chain(&self.id), issued.chain_pem.as_bytes())
            .await?;
        let meta = Meta {
            names: self.cert.names.clone(),
            serial: issued.loaded.info.serial.clone(),
            issued_by_node: config.node_id.clone(),
            issued_at_unix: SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        };
        if let Ok(json) = serde_json::to_vec_pretty(&meta) {
            storage.store(&keys::cert_meta(&self.id), &json).await?;
        }
        self.install(&issued.loaded);
        let info = issued.loaded.info.clone();
        tracing::info!(serial = %info.serial, not_after = ?info.not_after, "certificate obtained");
        let previous = self.current.replace(issued.loaded);
        self.succeeded();
        self.shared
            .update(&self.id, |s| s.orders = s.orders.saturating_add(1));
        self.shared.emit(match previous {
            Some(previous) => AcmeEvent::Renewed {
                names: self.cert.names.clone(),
                serial: info.serial,
                not_after: info.not_after,
                previous_serial: previous.info.serial,
            },
            None => AcmeEvent::Issued {
                names: self.cert.names.clone(),
                serial: info.serial,
                not_after: info.not_after,
            },
        });
        Ok(Outcome::Ordered)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::DirStorage;

    /// `renew_now` finds a certificate by any of its names (as the config
    /// spells them, or not), answers at once, and refuses other names.
    #[tokio::test]
    async fn renew_now_takes_any_name_of_a_managed_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = AcmeConfig::default();
        // Nothing listens there: orders fail, which does not matter here.
        config.directory_url("https://127.0.0.1:9/dir");
        config.certificate(["example.com", "www.example.com"]);
        config.certificate(["api.example.com"]);
        let handle = AcmeManager::spawn(
            config,
            Arc::new(DirStorage::new(dir.path())),
            CertResolver::new(),
        )
        .unwrap();
        let both = vec!["example.com".to_string(), "www.example.com".to_string()];
        assert_eq!(handle.renew_now("www.example.com"), Some(both.clone()));
        assert_eq!(handle.renew_now("WWW.Example.COM."), Some(both));
        assert_eq!(
            handle.renew_now("api.example.com"),
            Some(vec!["api.example.com".to_string()])
        );
        assert_eq!(handle.renew_now("other.example.com"), None);
        assert_eq!(handle.renew_now(""), None);
        handle.shutdown().await;
    }
}
