//! Whether etcd answers: one log line when an outage starts and one when it
//! ends (not one per failed request), `edge_etcd_up` and
//! `edge_etcd_errors_total`.

use std::sync::Arc;
use std::sync::Mutex;
use std::time::Instant;

use prometheus::{IntCounterVec, IntGauge, Opts};

use crate::metrics::Metrics;

/// The link's state, shared by its tasks.
#[derive(Debug)]
pub struct Health {
    /// Since when etcd fails; `None` while it answers.
    down_since: Mutex<Option<Instant>>,
    up: IntGauge,
    errors: IntCounterVec,
}

impl Health {
    /// Registers the metrics in `metrics`; up until a failure says not.
    pub(super) fn new(metrics: &Metrics) -> Arc<Self> {
        let h = Self::unregistered();
        metrics.register(Box::new(h.up.clone()));
        metrics.register(Box::new(h.errors.clone()));
        Arc::new(h)
    }

    fn unregistered() -> Self {
        let up = IntGauge::new(
            "edge_etcd_up",
            "1 while the last exchange with [etcd] succeeded, 0 during an outage (traffic goes on from local state).",
        )
        .unwrap_or_else(|e| unreachable!("constant metric: {e}"));
        let errors = IntCounterVec::new(
            Opts::new(
                "edge_etcd_errors_total",
                "Failed exchanges with [etcd], by what was shared (acme, tickets, admin).",
            ),
            &["what"],
        )
        .unwrap_or_else(|e| unreachable!("constant metric: {e}"));
        for what in ["acme", "tickets", "admin"] {
            errors.with_label_values(&[what]);
        }
        up.set(1);
        Self {
            down_since: Mutex::default(),
            up,
            errors,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Instant>> {
        self.down_since
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether etcd answered last.
    pub fn is_up(&self) -> bool {
        self.lock().is_none()
    }

    /// An exchange succeeded: logs the end of an outage.
    pub(super) fn ok(&self) {
        if let Some(since) = self.lock().take() {
            tracing::info!(
                outage_s = since.elapsed().as_secs_f64(),
                "etcd reachable again: shared state caught up"
            );
        }
        self.up.set(1);
    }

    /// An exchange failed: counted; logged when an outage starts.
    pub(super) fn failed(&self, what: &'static str, e: &dyn std::fmt::Display) {
        self.errors.with_label_values(&[what]).inc();
        self.up.set(0);
        let mut down = self.lock();
        if down.is_none() {
            *down = Some(Instant::now());
            tracing::warn!(error = %e, what, "etcd unreachable: serving from local state until it answers again");
        } else {
            tracing::debug!(error = %e, what, "etcd still unreachable");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_outage_is_counted_and_ends() {
        let h = Health::unregistered();
        assert!(h.is_up());
        h.failed("admin", &"refused");
        h.failed("tickets", &"refused");
        assert!(!h.is_up());
        assert_eq!(h.up.get(), 0);
        assert_eq!(h.errors.with_label_values(&["admin"]).get(), 1);
        h.ok();
        assert!(h.is_up());
        assert_eq!(h.up.get(), 1);
    }
}
