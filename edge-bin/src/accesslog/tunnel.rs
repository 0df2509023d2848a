//! Upgrade tunnels (WebSocket and other HTTP/1.1 `Upgrade`s): the record
//! of the request that was answered `101` waits for the tunnel to close,
//! then carries the bytes relayed each way (`bytes_in`: client to backend,
//! `bytes_out`: backend to client), the tunnel's duration (`tunnel_ms`) and
//! the whole request's (`duration_ms`, as nginx's `$request_time` and
//! HAProxy's `Tt`). The request is counted in the metrics at the `101`.

use std::borrow::Cow;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use edge_sni::RelayEnd;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;

use super::{AccessLog, AccessRecord};

/// Shared by the tunnel task and the `101` response's record.
#[derive(Debug, Default)]
pub struct Tunnel {
    phase: Mutex<Phase>,
}

#[derive(Debug, Default)]
enum Phase {
    #[default]
    Open,
    /// The response ended first: its record waits for the tunnel.
    Waiting(Box<(AccessRecord, Instant, Arc<AccessLog>)>),
    /// The tunnel ended first.
    Closed(Closed),
    Logged,
}

#[derive(Debug, Clone)]
struct Closed {
    time: Duration,
    to_backend: u64,
    to_client: u64,
    error: Option<Cow<'static, str>>,
}

/// Closes the tunnel's record also when the relay task is dropped.
struct Closer<'a> {
    tunnel: &'a Tunnel,
    closed: Option<Closed>,
}

impl Drop for Closer<'_> {
    fn drop(&mut self) {
        let c = self.closed.take().unwrap_or(Closed {
            time: Duration::ZERO,
            to_backend: 0,
            to_client: 0,
            error: Some("tunnel aborted".into()),
        });
        self.tunnel.close(c);
    }
}

impl Tunnel {
    /// A tunnel for the record `rec` (its record then waits for it).
    pub fn open(rec: &mut AccessRecord) -> Arc<Self> {
        let t = Arc::new(Self::default());
        rec.tunnel = Some(t.clone());
        t
    }

    /// Relays between the upgraded client and backend connections
    /// (edge-sni's relay: until both directions are closed, or `idle`
    /// without a byte either way), then finishes the record with what the
    /// relay counted.
    pub async fn relay(self: Arc<Self>, client: OnUpgrade, backend: OnUpgrade, idle: Duration) {
        let mut closer = Closer {
            tunnel: &self,
            closed: None,
        };
        let (c, b) = tokio::join!(client, backend);
        let start = Instant::now();
        let (c, b) = match (c, b) {
            (Ok(c), Ok(b)) => (c, TokioIo::new(b)),
            (c, b) => {
                let e = c
                    .err()
                    .or(b.err())
                    .map(|e| e.to_string())
                    .unwrap_or_default();
                tracing::debug!(error = %e, "upgrade failed");
                closer.closed = Some(Closed {
                    time: Duration::ZERO,
                    to_backend: 0,
                    to_client: 0,
                    error: Some("upgrade failed".into()),
                });
                return;
            }
        };
        let relayed = edge_sni::relay_io(TokioIo::new(c), b, idle).await;
        let error = match relayed.end {
            RelayEnd::Closed => None,
            RelayEnd::IdleTimeout => Some("tunnel idle timeout".into()),
            RelayEnd::Error(kind) => Some(format!("tunnel: {kind}").into()),
        };
        closer.closed = Some(Closed {
            time: start.elapsed(),
            to_backend: relayed.client_to_server,
            to_client: relayed.server_to_client,
            error,
        });
    }

    /// The response's record, when its (empty) body ended.
    pub(crate) fn attach(&self, rec: AccessRecord, start: Instant, log: Arc<AccessLog>) {
        let mut p = self.phase.lock().unwrap_or_else(PoisonError::into_inner);
        match std::mem::take(&mut *p) {
            Phase::Closed(c) => {
                *p = Phase::Logged;
                drop(p);
                finish(rec, start, &log, c);
            }
            Phase::Open => *p = Phase::Waiting(Box::new((rec, start, log))),
            other => *p = other,
        }
    }

    fn close(&self, c: Closed) {
        let mut p = self.phase.lock().unwrap_or_else(PoisonError::into_inner);
        match std::mem::take(&mut *p) {
            Phase::Waiting(w) => {
                *p = Phase::Logged;
                drop(p);
                let (rec, start, log) = *w;
                finish(rec, start, &log, c);
            }
            Phase::Open => *p = Phase::Closed(c),
            other => *p = other,
        }
    }
}

fn finish(mut rec: AccessRecord, start: Instant, log: &AccessLog, c: Closed) {
    rec.bytes_in = rec.bytes_in.saturating_add(c.to_backend);
    rec.bytes_out = rec.bytes_out.saturating_add(c.to_client);
    rec.tunnel_time = Some(c.time);
    rec.duration = start.elapsed();
    if rec.error.is_none() {
        rec.error = c.error;
    }
    log.log(rec);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn closed(n: u64) -> Closed {
        Closed {
            time: Duration::from_millis(5),
            to_backend: n,
            to_client: 2 * n,
            error: None,
        }
    }

    /// Whichever ends first, the record is written once, with the tunnel's bytes.
    #[test]
    fn the_record_waits_for_the_tunnel_or_the_other_way_round() {
        let dir = std::env::temp_dir().join(format!("edge-tunnel-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("t.log");
        let settings = [crate::config::AccessLogSettings {
            name: "f".into(),
            target: crate::config::observability::AccessLogTarget::File(path.clone()),
            queue: 16,
        }];
        let log = Arc::new(
            super::super::Registry::default()
                .build(&settings, &crate::metrics::Metrics::new())
                .unwrap(),
        );
        for (i, response_first) in [(1u64, true), (10, false)] {
            let mut rec = AccessRecord {
                kind: "http",
                status: 101,
                bytes_out: 0,
                ..Default::default()
            };
            let t = Tunnel::open(&mut rec);
            let rec = AccessRecord {
                tunnel: None,
                ..rec
            };
            if response_first {
                t.attach(rec, Instant::now(), log.clone());
                t.close(closed(i));
            } else {
                t.close(closed(i));
                t.attach(rec, Instant::now(), log.clone());
            }
            // A second close (the drop guard) changes nothing.
            t.close(closed(99));
        }
        let lines = (0..500)
            .find_map(|_| {
                let s = std::fs::read_to_string(&path).unwrap_or_default();
                if s.lines().count() == 2 {
                    return Some(s);
                }
                std::thread::sleep(Duration::from_millis(10));
                None
            })
            .expect("two records");
        let v: Vec<serde_json::Value> = lines
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(
            (v[0]["bytes_in"].as_u64(), v[0]["bytes_out"].as_u64()),
            (Some(1), Some(2))
        );
        assert_eq!(
            (v[1]["bytes_in"].as_u64(), v[1]["bytes_out"].as_u64()),
            (Some(10), Some(20))
        );
        assert!(
            v.iter()
                .all(|r| r["tunnel_ms"] == 5.0 && r["status"] == 101)
        );
        drop(log);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
