//! Runs parsed commands against the running proxy and renders the answers.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use edge_health::{HealthEvent, Reason, TargetState};

use super::command::{Command, HELP, ServerRef, Weight};
use super::registry::{Admin, AdminState};
use super::table::Table;
use super::{Answer, ReloadFn};
use crate::config::Policy;
use crate::pool::Pool;
use crate::state::{SharedState, State};

/// How often `drain` looks whether the server went idle. The first look
/// is one period after the change, so a pick that raced the change is
/// counted by then.
const DRAIN_POLL: Duration = Duration::from_millis(20);

/// What commands act on.
#[derive(Clone)]
pub(super) struct Ctx {
    pub admin: Arc<Admin>,
    pub shared: SharedState,
    pub reload: ReloadFn,
}

impl std::fmt::Debug for Ctx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ctx")
            .field("admin", &self.admin)
            .finish_non_exhaustive()
    }
}

impl Ctx {
    pub(super) async fn run(&self, cmd: Command) -> Answer {
        match cmd {
            Command::Help => Answer::ok(HELP),
            Command::ShowInfo => Answer::ok(self.show_info()),
            Command::ShowPools => Answer::ok(self.show_pools()),
            Command::ShowServers(pool) => self.show_servers(pool.as_deref()),
            Command::Drain { server, timeout } => self.drain(&server, timeout).await,
            Command::Maint(server) => self.maint(&server),
            Command::Enable(server) => self.enable(&server),
            Command::SetWeight { server, weight } => self.set_weight(&server, weight),
            Command::ShowCerts => super::certs::show_certs(&self.shared.load()),
            Command::AcmeStatus => super::certs::acme_status(&self.shared.load()),
            Command::AcmeRenew(name) => super::certs::acme_renew(&self.shared.load(), &name),
            Command::Reload => match (self.reload)().await {
                Ok(msg) => Answer::ok(msg),
                Err(e) => Answer::err(format!("reload failed: {e}")),
            },
        }
    }

    /// The current state's pool and the server's configured weight.
    fn lookup(&self, s: &ServerRef) -> Result<(Arc<Pool>, u32), Answer> {
        let state = self.shared.load();
        let Some(backend) = state.backends.get(&s.pool) else {
            return Err(Answer::err(format!(
                "no pool {:?} (pools: {})",
                s.pool,
                pool_names(&state).join(", ")
            )));
        };
        match backend.pool.config_weight(s.addr) {
            Some(w) => Ok((backend.pool.clone(), w)),
            None => Err(Answer::err(format!(
                "pool {:?} has no server {} (servers: {})",
                s.pool,
                s.addr,
                backend
                    .pool
                    .members()
                    .iter()
                    .map(|(a, _)| a.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
        }
    }

    async fn drain(&self, s: &ServerRef, timeout: Duration) -> Answer {
        if let Err(a) = self.lookup(s) {
            return a;
        }
        let was = self.admin.set_state(&s.pool, s.addr, AdminState::Drain);
        tracing::info!(pool = %s.pool, server = %s.addr, from = %was, "admin: drain");
        let start = Instant::now();
        loop {
            tokio::time::sleep(DRAIN_POLL).await;
            let now = self.admin.state_of(&s.pool, s.addr);
            if now != AdminState::Drain {
                return Answer::ok(format!(
                    "drain of pool {} server {} stopped: its state is now {now}\n",
                    s.pool, s.addr
                ));
            }
            let u = self.admin.usage(&s.pool, s.addr);
            let waited = start.elapsed();
            if u.is_idle() {
                return Answer::ok(format!(
                    "drained: pool {} server {} is idle after {:.3}s (no new traffic until enable)\n",
                    s.pool,
                    s.addr,
                    waited.as_secs_f64()
                ));
            }
            if waited >= timeout {
                return Answer::ok(format!(
                    "draining: pool {} server {} still has {} active, {} queued after {:.3}s (timeout); it stays in drain\n",
                    s.pool,
                    s.addr,
                    u.active,
                    u.queued,
                    waited.as_secs_f64()
                ));
            }
        }
    }

    fn maint(&self, s: &ServerRef) -> Answer {
        if let Err(a) = self.lookup(s) {
            return a;
        }
        let was = self.admin.set_state(&s.pool, s.addr, AdminState::Maint);
        tracing::info!(pool = %s.pool, server = %s.addr, from = %was, "admin: maint");
        let u = self.admin.usage(&s.pool, s.addr);
        Answer::ok(format!(
            "maint: pool {} server {} is out of rotation ({} active finishing)\n",
            s.pool, s.addr, u.active
        ))
    }

    fn enable(&self, s: &ServerRef) -> Answer {
        let pool = match self.lookup(s) {
            Ok((p, _)) => p,
            Err(a) => return a,
        };
        let was = self.admin.set_state(&s.pool, s.addr, AdminState::Ready);
        tracing::info!(pool = %s.pool, server = %s.addr, from = %was, "admin: enable");
        let healthy = pool.server(s.addr).is_some_and(|x| x.healthy);
        Answer::ok(format!(
            "ready: pool {} server {} (was {was}; health {})\n",
            s.pool,
            s.addr,
            if healthy {
                "up: in rotation"
            } else {
                "down: back in rotation when its checks pass"
            }
        ))
    }

    fn set_weight(&self, s: &ServerRef, weight: Weight) -> Answer {
        let (pool, configured) = match self.lookup(s) {
            Ok(x) => x,
            Err(a) => return a,
        };
        let old = pool.server(s.addr).map_or(configured, |x| x.weight);
        let w = weight.resolve(configured);
        self.admin.set_weight(&s.pool, s.addr, w, configured);
        tracing::info!(pool = %s.pool, server = %s.addr, from = old, to = w, "admin: set weight");
        Answer::ok(format!(
            "weight: pool {} server {} {old} -> {w} (configured {configured})\n",
            s.pool, s.addr
        ))
    }

    fn show_info(&self) -> String {
        let state = self.shared.load();
        let up = self.admin.uptime().as_secs();
        let servers: usize = state
            .backends
            .values()
            .map(|b| b.pool.members().len())
            .sum();
        format!(
            "Name: edge\nVersion: {}\nPid: {}\nUptime: {}d {}h{:02}m{:02}s\nUptime_sec: {up}\nConfig: {}\nGeneration: {}\nPools: {}\nServers: {servers}\n",
            env!("CARGO_PKG_VERSION"),
            std::process::id(),
            up / 86_400,
            up / 3600 % 24,
            up / 60 % 60,
            up % 60,
            self.admin.config_path().display(),
            self.admin.generation(),
            state.backends.len(),
        )
    }

    fn show_pools(&self) -> String {
        let state = self.shared.load();
        let mut t = Table::new(&[
            "pool",
            "policy",
            "servers",
            "ready",
            "drain",
            "maint",
            "up",
            "available",
        ]);
        for name in pool_names(&state) {
            let Some(b) = state.backends.get(&name) else {
                continue;
            };
            let servers = b.pool.servers();
            let count = |st: AdminState| {
                servers
                    .iter()
                    .filter(|s| self.admin.state_of(&name, s.addr) == st)
                    .count()
            };
            let up = servers.iter().filter(|s| s.healthy).count();
            let available = servers
                .iter()
                .filter(|s| s.healthy && !s.draining && s.weight > 0)
                .count();
            t.row(vec![
                name.clone(),
                policy_name(b.pool.settings.policy).into(),
                servers.len().to_string(),
                count(AdminState::Ready).to_string(),
                count(AdminState::Drain).to_string(),
                count(AdminState::Maint).to_string(),
                up.to_string(),
                available.to_string(),
            ]);
        }
        t.render()
    }

    fn show_servers(&self, only: Option<&str>) -> Answer {
        let state = self.shared.load();
        if let Some(p) = only.filter(|p| !state.backends.contains_key(*p)) {
            return Answer::err(format!(
                "no pool {p:?} (pools: {})",
                pool_names(&state).join(", ")
            ));
        }
        let health: HashMap<(String, SocketAddr), HealthEvent> = state
            .health
            .targets()
            .into_iter()
            .map(|e| ((e.pool.to_string(), e.target), e))
            .collect();
        let mut t = Table::new(&[
            "pool",
            "server",
            "admin",
            "health",
            "reason",
            "since",
            "weight",
            "in_flight",
            "queue",
            "requests",
            "failures",
            "from",
        ]);
        for name in pool_names(&state) {
            if only.is_some_and(|p| p != name) {
                continue;
            }
            let Some(b) = state.backends.get(&name) else {
                continue;
            };
            for s in b.pool.servers() {
                let h = health.get(&(name.clone(), s.addr));
                let u = self.admin.usage(&name, s.addr);
                let (check, since) = match h {
                    Some(e) => (
                        check_result(&e.reason),
                        format!("{}s", e.since.elapsed().as_secs()),
                    ),
                    None => ("-".into(), "-".into()),
                };
                let up = h.map_or(s.healthy, |e| e.state == TargetState::Up);
                t.row(vec![
                    name.clone(),
                    s.addr.to_string(),
                    self.admin.state_of(&name, s.addr).to_string(),
                    if up { "up" } else { "down" }.into(),
                    check,
                    since,
                    s.weight.to_string(),
                    u.active.to_string(),
                    u.queued.to_string(),
                    s.requests.to_string(),
                    s.failures.to_string(),
                    self.admin
                        .origin_of(&name, s.addr)
                        .map_or("-".into(), |o| o.to_string()),
                ]);
            }
        }
        Answer::ok(t.render())
    }
}

/// The policy as the config spells it.
pub(crate) fn policy_name(p: Policy) -> &'static str {
    match p {
        Policy::RoundRobin => "round_robin",
        Policy::LeastRequest => "least_request",
        Policy::Random => "random",
        Policy::P2c => "p2c",
        Policy::PeakEwma => "peak_ewma",
        Policy::Maglev => "maglev",
        Policy::Hash => "hash",
    }
}

fn pool_names(state: &State) -> Vec<String> {
    let mut v: Vec<String> = state.backends.keys().cloned().collect();
    v.sort();
    v
}

/// The last check result as one word: `passed`, `refused`, `status:503`...
fn check_result(r: &Reason) -> String {
    match r {
        Reason::Status(code) => format!("status:{code}"),
        other => other.code().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_aligns_and_splits_on_whitespace() {
        let mut t = Table::new(&["pool", "server", "admin"]);
        t.row(vec!["app".into(), "127.0.0.1:8001".into(), "drain".into()]);
        t.row(vec![
            "a-long-name".into(),
            "[::1]:80".into(),
            "ready".into(),
        ]);
        let s = t.render();
        let lines: Vec<&str> = s.lines().collect();
        assert_eq!(lines[0], "# pool      server         admin");
        assert_eq!(lines[1], "app         127.0.0.1:8001 drain");
        assert_eq!(
            lines[2].split_whitespace().collect::<Vec<_>>(),
            ["a-long-name", "[::1]:80", "ready"]
        );
    }

    #[test]
    fn check_results_are_one_word() {
        assert_eq!(check_result(&Reason::Status(503)), "status:503");
        assert_eq!(check_result(&Reason::Passed), "passed");
        assert_eq!(check_result(&Reason::Io("a b".into())), "io");
    }
}
