//! What observability needs across the process ([`Telemetry`]: the metrics
//! registry and the running access-log sinks, made once in `serve()`) and
//! per config ([`StateTelemetry`]: this config's sinks and the counters of
//! its routes and pools, looked up once when the state is built).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use http::Response;

use crate::accesslog::body::Logged;
use crate::accesslog::{AccessLog, AccessRecord, Registry, SinkError};
use crate::config::Validated;
use crate::http::body::EdgeBody;
use crate::metrics::{Metrics, PassthroughStats, RouteStats};

/// Process-wide: survives config reloads. Clones share everything.
#[derive(Debug, Clone)]
pub struct Telemetry {
    pub metrics: Arc<Metrics>,
    pub access_logs: Arc<Registry>,
}

impl Default for Telemetry {
    fn default() -> Self {
        Self::new()
    }
}

impl Telemetry {
    pub fn new() -> Self {
        Self {
            metrics: Metrics::new(),
            access_logs: Arc::default(),
        }
    }

    /// Reopens the access-log files (SIGUSR1, and on every reload).
    pub fn reopen(&self) {
        self.access_logs.reopen();
    }

    /// Counts a config reload and its result.
    pub fn reload_result(&self, ok: bool) {
        self.metrics.reload_result(ok);
    }

    /// The per-config part: starts (or reuses) this config's sinks.
    pub fn for_config(&self, v: &Validated) -> Result<StateTelemetry, SinkError> {
        let access = Arc::new(self.access_logs.build(&v.access_logs, &self.metrics)?);
        Ok(StateTelemetry {
            routes: v
                .routes
                .iter()
                .map(|r| self.metrics.route(&r.name))
                .collect(),
            unrouted: self.metrics.unrouted(),
            passthrough: v
                .passthrough
                .iter()
                .map(|p| (p.pool.clone(), self.metrics.passthrough(&p.pool)))
                .collect(),
            metrics: self.metrics.clone(),
            access,
            process: self.clone(),
        })
    }

    /// Reopens the access-log files on every SIGUSR1 (as nginx), until the
    /// runtime stops.
    pub fn reopen_on_sigusr1(&self) {
        use tokio::signal::unix::{SignalKind, signal};
        let Ok(mut usr1) = signal(SignalKind::user_defined1()) else {
            tracing::warn!("cannot listen for SIGUSR1: access logs will not be reopened on it");
            return;
        };
        let this = self.clone();
        tokio::spawn(async move {
            while usr1.recv().await.is_some() {
                tracing::info!("SIGUSR1: reopening access log files");
                this.reopen();
            }
        });
    }
}

/// Per config: shared by every connection accepted with that config.
#[derive(Debug)]
pub struct StateTelemetry {
    pub metrics: Arc<Metrics>,
    pub access: Arc<AccessLog>,
    /// Parallel to `State::routes`.
    routes: Vec<Arc<RouteStats>>,
    unrouted: Arc<RouteStats>,
    /// By pool name.
    passthrough: HashMap<String, Arc<PassthroughStats>>,
    process: Telemetry,
}

impl StateTelemetry {
    /// The process-wide telemetry this state was built with (for code
    /// that holds a state but not the handle: reload, admin).
    pub fn telemetry(&self) -> &Telemetry {
        &self.process
    }

    /// The counters of route number `index` (`None`: no route matched).
    pub fn route(&self, index: Option<usize>) -> &Arc<RouteStats> {
        index
            .and_then(|i| self.routes.get(i))
            .unwrap_or(&self.unrouted)
    }

    /// The passthrough counters of a pool.
    pub fn passthrough(&self, pool: &str) -> Option<&Arc<PassthroughStats>> {
        self.passthrough.get(pool)
    }

    /// Writes a record now (passthrough connections).
    pub fn log(&self, rec: AccessRecord) {
        self.access.log(rec);
    }

    /// Attaches `rec` to the response: it is counted and written when the
    /// response body ends, with the bytes sent.
    pub fn finish_http(
        &self,
        mut rec: AccessRecord,
        start: Instant,
        resp: Response<EdgeBody>,
    ) -> Response<EdgeBody> {
        rec.status = resp.status().as_u16();
        let stats = self.route(rec.route_index).clone();
        let access = self.access.clone();
        resp.map(|b| EdgeBody::new(Logged::new(b, rec, start, access, stats)))
    }
}
