//! The running process's config: started from a file, reloaded in place
//! (SIGHUP, the admin `reload` command), stopped gracefully (SIGTERM).
//!
//! A reload re-reads and validates the file; a config `edge check` would
//! refuse is logged (`file:line:column: key: message`) and the running one
//! stays. A good one is built into a new [`State`] (servers that stay keep
//! their health), new listeners are bound *before* the switch (a bind
//! failure aborts the reload), the state is swapped atomically, listeners
//! no longer configured stop accepting, VRRP instances are updated, and the
//! old state is retired: its connections finish the request in flight and
//! close, its health checker and ACME manager stop. Nothing in flight fails.
//!
//! ```text
//! SIGHUP / admin ──► Reloader::reload ──► validate ─✗─► keep the old config, log, Err
//!                                           │
//!                               bind new listeners ─✗─► Err
//!                                           │
//!                        State::build_after(new, old) ─✗─► Err
//!                                           │
//!              store ─► start/stop listeners ─► VRRP update ─► retire old ─► Ok(summary)
//! ```

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::sync::Semaphore;

use crate::confdiff::{self, Change, ChangeKind};
use crate::config::{self, ConfigErrors, Validated};
use crate::listeners::Listeners;
use crate::notify::Notifier;
use crate::state::{SharedState, State};
use crate::telemetry::Telemetry;

/// What a successful reload changed.
#[derive(Debug, Clone, Default)]
pub struct ReloadSummary {
    /// What differs between the previous file and the new one.
    pub changes: Vec<Change>,
    /// What the reload did beyond switching the state (listeners started
    /// and stopped, VRRP instances updated), one line each.
    pub applied: Vec<String>,
}

impl ReloadSummary {
    /// Settings that changed but only apply after a restart.
    pub fn restart_needed(&self) -> Vec<&Change> {
        self.changes
            .iter()
            .filter(|c| c.kind == ChangeKind::NeedsRestart)
            .collect()
    }
}

impl std::fmt::Display for ReloadSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.changes.is_empty() {
            f.write_str("no change in the config file (certificate files re-read)")?;
        }
        for (i, c) in self.changes.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{c}")?;
        }
        Ok(())
    }
}

/// Why a reload was refused; the running config stays in every case.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReloadError {
    /// The file is invalid (each problem as `file:line:column: key: message`).
    #[error("invalid config, the running one stays:\n{0}")]
    Config(ConfigErrors),
    /// A new listener could not be bound.
    #[error("the running config stays: {0}")]
    Listen(String),
    /// The state could not be built (TLS, health checks, ACME).
    #[error("the running config stays: {0}")]
    Build(#[from] crate::state::BuildError),
}

/// Reads and validates a config file, returning its text too.
pub fn read_config(path: &Path) -> Result<(String, Validated), ConfigErrors> {
    config::load_with_text(path)
}

/// Where `edge run` keeps a copy of the config as last loaded, for
/// `edge check --running`: `$RUNTIME_DIRECTORY/running.toml` under systemd
/// (the unit's `RuntimeDirectory=edge`), else `/run/edge/running.toml`.
pub fn default_running_copy() -> PathBuf {
    std::env::var_os("RUNTIME_DIRECTORY")
        .and_then(|d| {
            d.to_str()
                .and_then(|s| s.split(':').next().map(PathBuf::from))
        })
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or_else(|| PathBuf::from("/run/edge"))
        .join("running.toml")
}

/// Writes `text` to `path` atomically (a temporary file renamed over it).
pub fn write_atomically(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o640)
        .open(&tmp)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

/// Longest a starting node waits for its stored certificates before VRRP.
const CERTIFICATES_LOADED: Duration = Duration::from_secs(10);

/// How a process runs its config: the shared state, the listeners, the
/// VRRP instances, the connection limit. Create with [`Reloader::start`],
/// share as `Arc<Reloader>`.
#[derive(Debug)]
pub struct Reloader {
    path: PathBuf,
    running_copy: Option<PathBuf>,
    shared: SharedState,
    notifier: Arc<Notifier>,
    /// Admin server states (drain, maint, weight), applied to every new state.
    admin: Arc<crate::admin::Admin>,
    /// Metrics and access-log sinks: process-wide, survive reloads.
    telemetry: Telemetry,
    conns: Arc<Semaphore>,
    inner: tokio::sync::Mutex<Inner>,
    reloads_ok: AtomicU64,
    reloads_failed: AtomicU64,
    /// Longest wait for the first health check round at start: the longest
    /// `startup_hold` of the `[[vrrp]]` instances, or its default.
    startup_hold: Duration,
}

#[derive(Debug)]
struct Inner {
    /// The file's text as last loaded successfully.
    text: String,
    listeners: Listeners,
    vrrp: Option<crate::vrrp::Running>,
    /// `[[anycast]]`: withdrawn first at stop (`None` once withdrawn).
    anycast: Option<crate::anycast::Running>,
    max_connections: usize,
}

impl Reloader {
    /// Starts `v` (the config read from `path`, whose text is `text`):
    /// demo backends, state, listeners, then VRRP (so a node that becomes
    /// master serves at once). Writes `text` to `running_copy` when given.
    pub async fn start(
        path: &Path,
        text: String,
        v: Validated,
        running_copy: Option<PathBuf>,
        notifier: Arc<Notifier>,
        admin: Arc<crate::admin::Admin>,
        telemetry: Telemetry,
    ) -> Result<Arc<Self>, String> {
        crate::demo::start_all(&v.demo_backends).await?;
        let state = State::build(&v, &telemetry).map_err(|e| e.to_string())?;
        let health = state.health.clone();
        admin.adopt(&state);
        let shared: SharedState = Arc::new(ArcSwap::from_pointee(state));
        let conns = Arc::new(Semaphore::new(v.limits.max_connections));
        // Anycast addresses are local before the listeners bind them.
        let announcers = crate::anycast::hold_locally(&v.anycast).await?;
        let mut listeners = Listeners::new(shared.clone(), conns.clone());
        listeners.start_all(&v.https.listen, &v.http.listen)?;
        // A node claims no VIP before the certificates already in the
        // (shared) ACME storage are loaded: a fresh master serves them at once.
        let acme = shared.load().acme.clone();
        if let Some(acme) = acme
            && !v.vrrp.is_empty()
            && tokio::time::timeout(CERTIFICATES_LOADED, acme.loaded())
                .await
                .is_err()
        {
            tracing::warn!(waited = ?CERTIFICATES_LOADED, "ACME certificates in storage not all loaded: starting VRRP anyway");
        }
        let vrrp = crate::vrrp::start(&v.vrrp, &health, &telemetry.metrics).await?;
        let startup_hold = v
            .vrrp
            .iter()
            .map(|s| s.startup_hold)
            .max()
            .unwrap_or(config::DEFAULT_STARTUP_HOLD);
        // Announced once healthy, with every listener bound.
        let anycast = crate::anycast::start(&v.anycast, announcers, &health, &telemetry.metrics);
        let this = Arc::new(Self {
            path: path.to_path_buf(),
            running_copy,
            shared,
            notifier,
            admin,
            telemetry,
            conns,
            inner: tokio::sync::Mutex::new(Inner {
                text,
                listeners,
                vrrp: Some(vrrp),
                anycast: Some(anycast),
                max_connections: v.limits.max_connections,
            }),
            reloads_ok: AtomicU64::new(0),
            reloads_failed: AtomicU64::new(0),
            startup_hold,
        });
        this.write_running_copy(&this.inner.lock().await.text);
        Ok(this)
    }

    /// Waits until the first health check round of the running config has
    /// ended (every server checked once), at most the longest
    /// `startup_hold` (5 s without `[[vrrp]]`): a starting node reports
    /// itself ready once it knows which servers are up, as its VRRP
    /// instances claim the VIPs only then.
    pub async fn first_round(&self) {
        let health = self.shared.load().health.clone();
        let limit = self.startup_hold;
        if tokio::time::timeout(limit, health.first_round())
            .await
            .is_err()
        {
            tracing::warn!(waited = ?limit, "first health check round not complete: reporting ready anyway");
        }
    }

    /// The state every listener reads.
    pub fn shared(&self) -> &SharedState {
        &self.shared
    }

    /// The config file this process runs.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reloads succeeded and failed since start.
    pub fn counts(&self) -> (u64, u64) {
        (
            self.reloads_ok.load(Ordering::Relaxed),
            self.reloads_failed.load(Ordering::Relaxed),
        )
    }

    /// The listening addresses and their kind.
    pub async fn listeners(&self) -> Vec<(std::net::SocketAddr, crate::listeners::Kind)> {
        self.inner.lock().await.listeners.bound()
    }

    /// Re-reads the config file and switches to it, or keeps the running
    /// config and says why. Reloads are serialized; the outcome is logged
    /// here (callers need not log it again).
    pub async fn reload(&self) -> Result<ReloadSummary, ReloadError> {
        let mut inner = self.inner.lock().await;
        self.notifier.reloading();
        tracing::info!(config = %self.path.display(), "reloading the configuration");
        let result = self.reload_locked(&mut inner).await;
        let ok = result.is_ok();
        self.telemetry.reload_result(result.is_ok());
        match &result {
            Ok(summary) => {
                self.reloads_ok.fetch_add(1, Ordering::Relaxed);
                for c in &summary.changes {
                    if c.kind == ChangeKind::NeedsRestart {
                        tracing::warn!(change = %c, "config reloaded: this change needs a restart");
                    } else {
                        tracing::info!(change = %c, "config reloaded");
                    }
                }
                tracing::info!(changes = summary.changes.len(), "configuration reloaded");
                self.notifier.ready("serving; configuration reloaded");
            }
            Err(e) => {
                self.reloads_failed.fetch_add(1, Ordering::Relaxed);
                match e {
                    ReloadError::Config(errors) => {
                        for err in &errors.0 {
                            tracing::error!("reload refused: {err}");
                        }
                        tracing::error!(config = %self.path.display(), "reload refused: invalid config, the running one stays");
                    }
                    other => tracing::error!("reload failed: {other}"),
                }
                self.notifier
                    .ready("serving the previous configuration; the last reload failed");
            }
        }
        debug_assert_eq!(ok, result.is_ok());
        result
    }

    async fn reload_locked(&self, inner: &mut Inner) -> Result<ReloadSummary, ReloadError> {
        let (text, v) = read_config(&self.path).map_err(ReloadError::Config)?;
        for w in &v.warnings {
            tracing::warn!("{w}");
        }
        let changes = confdiff::summarize(&inner.text, &text).unwrap_or_default();
        let announcers = crate::anycast::hold_locally(&v.anycast)
            .await
            .map_err(ReloadError::Listen)?;
        let prepared = inner
            .listeners
            .prepare(&v.https.listen, &v.http.listen)
            .map_err(ReloadError::Listen)?;
        let old = self.shared.load_full();
        let (new, acme_carried) = self.successor(&v, &old)?;
        self.shared.store(new.clone());
        let mut applied = inner.listeners.commit(prepared);
        self.resize_connections(inner, v.limits.max_connections, &mut applied);
        if let Some(vrrp) = inner.vrrp.as_mut() {
            applied.extend(vrrp.update(&v.vrrp, &new.health).await);
        }
        if let Some(anycast) = inner.anycast.as_mut() {
            applied.extend(anycast.update(&v.anycast, announcers, &new.health).await);
        }
        retire(&old, acme_carried);
        inner.text = text;
        self.write_running_copy(&inner.text);
        Ok(ReloadSummary { changes, applied })
    }

    /// Keeps the VIPs while the connections accepted before the stop finish
    /// their request (up to `limit`): the running config is rebuilt as on a
    /// reload, the old state's connections are asked to close after their
    /// request, and new connections keep being served by the fresh state.
    /// Once the old state is released, the caller hands the VIPs over.
    async fn drain_before_handover(&self, inner: &mut Inner, limit: Duration) {
        self.notifier
            .stopping("finishing the requests in flight before handing over the VIPs");
        let base = self.path.parent().unwrap_or(Path::new("."));
        let src = config::Source::new(&self.path, inner.text.clone());
        let v = match config::load_str(src, base) {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(error = %e, "cannot rebuild the running config: handing over now");
                return;
            }
        };
        let old = self.shared.load_full();
        let (new, acme_carried) = match self.successor(&v, &old) {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(error = %e, "cannot rebuild the running state: handing over now");
                return;
            }
        };
        self.shared.store(new.clone());
        if let Some(vrrp) = inner.vrrp.as_mut() {
            vrrp.update(&v.vrrp, &new.health).await;
        }
        retire(&old, acme_carried);
        let start = tokio::time::Instant::now();
        tracing::info!(limit = ?limit, "stopping: finishing the requests in flight before the VRRP handover");
        // Every connection accepted under `old` holds a reference to it.
        while Arc::strong_count(&old) > 1 && start.elapsed() < limit {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let left = Arc::strong_count(&old) - 1;
        if left > 0 {
            tracing::warn!(
                connections = left,
                waited = ?start.elapsed(),
                "drain_before_handover reached: handing over with connections still open"
            );
        } else {
            tracing::info!(waited = ?start.elapsed(), "connections from before the stop finished: handing over");
        }
    }

    /// The state that replaces `old` for config `v`, with the admin states
    /// applied, and whether it carries `old`'s ACME manager (it does unless
    /// `[acme]` changed, see [`State::build_after`]).
    fn successor(
        &self,
        v: &Validated,
        old: &State,
    ) -> Result<(Arc<State>, bool), crate::state::BuildError> {
        let new = Arc::new(State::build_after(v, Some(old), &self.telemetry)?);
        self.admin.use_state_file(v.admin.state_file.clone());
        let acme_carried = match (&old.acme, &new.acme) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            _ => false,
        };
        self.admin.adopt(&new);
        Ok((new, acme_carried))
    }

    fn resize_connections(&self, inner: &mut Inner, max: usize, applied: &mut Vec<String>) {
        let old = inner.max_connections;
        if max > old {
            self.conns.add_permits(max - old);
        } else if max < old {
            // Take the difference out as connections end.
            let conns = self.conns.clone();
            let n = u32::try_from(old - max).unwrap_or(u32::MAX);
            tokio::spawn(async move {
                if let Ok(p) = conns.acquire_many(n).await {
                    p.forget();
                }
            });
        }
        if max != old {
            applied.push(format!("max_connections {old} -> {max}"));
            inner.max_connections = max;
        }
    }

    fn write_running_copy(&self, text: &str) {
        let Some(p) = &self.running_copy else {
            return;
        };
        if let Err(e) = write_atomically(p, text) {
            tracing::warn!(path = %p.display(), error = %e, "cannot write the running config copy (edge check --running)");
        }
    }

    /// Graceful stop: withdraws the `[[anycast]]` addresses and waits their
    /// `withdraw_delay` (the routers stop sending new flows; the listeners
    /// still serve the ones that come meanwhile), hands the VIPs over (bounded to 5 s), closes the
    /// listeners, asks every HTTP connection to finish and close, and waits
    /// for connections in flight up to `[limits] drain_timeout`. Returns
    /// the connections still open at the deadline.
    pub async fn stop(&self) -> usize {
        let mut inner = self.inner.lock().await;
        crate::acme::stop(self.shared.load().acme.as_ref()).await;
        if let Some(mut anycast) = inner.anycast.take() {
            let delay = anycast.withdraw_all().await;
            if !delay.is_zero() {
                self.notifier
                    .stopping("anycast withdrawn: waiting for the routers before draining");
                tracing::info!(withdraw_delay = ?delay, "anycast withdrawn: still serving while the routers converge");
                tokio::time::sleep(delay).await;
            }
        }
        let before = self.shared.load().limits.drain_before_handover.0;
        if inner.vrrp.as_ref().is_some_and(|v| !v.is_empty()) && !before.is_zero() {
            self.drain_before_handover(&mut inner, before).await;
        }
        let state = self.shared.load_full();
        let deadline = state.limits.drain_timeout.0;
        self.notifier
            .stopping("handing over the VIPs, then draining");
        // Hand the VIPs over first (priority-0 advert), then stop serving.
        // Bounded, so a wedged instance cannot keep edge from exiting.
        if let Some(vrrp) = inner.vrrp.take()
            && tokio::time::timeout(Duration::from_secs(5), vrrp.shutdown())
                .await
                .is_err()
        {
            tracing::warn!("VRRP handover did not finish within 5 s");
        }
        inner.listeners.close_all();
        state.closing.stop_all();
        let open = self.conns.available_permits();
        let busy = inner.max_connections.saturating_sub(open);
        tracing::info!(connections = busy, deadline = ?deadline, "stopped accepting; draining connections");
        self.notifier
            .status(&format!("draining {busy} connections (up to {deadline:?})"));
        let left = crate::lifecycle::drain(&self.conns, inner.max_connections, deadline).await;
        if left > 0 {
            tracing::warn!(
                connections = left,
                "drain deadline reached: closing the rest"
            );
        } else {
            tracing::info!("all connections finished");
        }
        left
    }
}

/// Retires a replaced state: its HTTP connections close after their
/// request, its health checker stops now (the new one has taken over its
/// servers' health), its ACME manager too unless the new state carries it
/// (releasing the storage lock of an order in progress, so the new manager
/// orders at once).
fn retire(old: &Arc<State>, acme_carried: bool) {
    old.closing.retire();
    let health = old.health.clone();
    tokio::spawn(health.shutdown());
    if let (Some(acme), false) = (&old.acme, acme_carried) {
        let acme = acme.clone();
        tokio::spawn(async move { acme.shutdown().await });
    }
}
