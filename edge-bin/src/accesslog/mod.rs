//! Access logs: one [`AccessRecord`] per HTTP request and per passthrough
//! connection, written to the `[[access_log]]` sinks of the config.
//!
//! - The data path never waits on a sink: each sink has a bounded queue
//!   (`try_send`; a full queue drops the record and counts it in
//!   `edge_access_log_dropped_total`) and one writer thread that formats and
//!   writes. Records are formatted off the request path.
//! - Sinks: JSON lines to stdout or a file (reopened on SIGUSR1 or
//!   [`Registry::reopen`], for logrotate), and RFC 5424 syslog with a JSON
//!   message over UDP (one datagram per record, size-limited) or TCP
//!   (RFC 6587 octet counting, reconnect with capped backoff).
//! - With no `[[access_log]]`, records go to `tracing` (target
//!   `edge::access`, level info), i.e. to standard error / the journal.
//! - A sink outlives config reloads while its settings stay the same
//!   ([`Registry::build`] hands out the running one); a removed sink drains
//!   its queue and stops when the last connection using it ends.
//!
//! ```
//! use edge_bin::accesslog::{AccessRecord, format};
//! let rec = AccessRecord { kind: "http", status: 204, method: Some("GET".into()), ..Default::default() };
//! let mut line = Vec::new();
//! format::json_line(&rec, &mut line);
//! let v: serde_json::Value = serde_json::from_slice(&line).unwrap();
//! assert_eq!(v["status"], 204);
//! assert_eq!(v["method"], "GET");
//! ```

pub mod body;
pub mod conn;
pub mod format;
mod sink;
pub mod tunnel;

use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, SystemTime};

use crate::config::AccessLogSettings;
use crate::metrics::Metrics;
use sink::Sink;

/// What happened to one request or passthrough connection.
#[derive(Debug, Default, Clone)]
pub struct AccessRecord {
    /// When the request or connection ended (`None`: when formatted).
    pub time: Option<SystemTime>,
    /// `"http"` or `"passthrough"`.
    pub kind: &'static str,
    pub client: Option<SocketAddr>,
    pub sni: Option<String>,
    /// JA4 fingerprint of the ClientHello (public TLS port only).
    pub ja4: Option<Arc<str>>,
    pub host: Option<String>,
    pub method: Option<String>,
    pub path: Option<String>,
    pub status: u16,
    /// Request body bytes read from the client (passthrough: client to server).
    pub bytes_in: u64,
    /// Response body bytes sent to the client (passthrough: server to client).
    pub bytes_out: u64,
    pub duration: Duration,
    pub route: Option<String>,
    pub backend: Option<SocketAddr>,
    /// Time to the backend's response headers (last attempt).
    pub backend_time: Option<Duration>,
    pub request_id: Option<String>,
    pub tls_version: Option<&'static str>,
    pub tls_cipher: Option<&'static str>,
    /// The client certificate verified on the connection (`[[client_auth]]`).
    pub client_cert: Option<Arc<crate::client_cert::ClientCert>>,
    pub attempts: u32,
    /// Index of the matched route in `State::routes` (for metrics).
    pub route_index: Option<usize>,
    /// Request body bytes, counted while the body streams to the backend.
    pub request_body: Option<Arc<AtomicU64>>,
    /// Why the request or connection ended abnormally (`None`: it did not):
    /// `"header too large"`, `"header read timeout"`, ... (see [`conn`]).
    pub error: Option<Cow<'static, str>>,
    /// How long an Upgrade tunnel was open (see [`tunnel`]).
    pub tunnel_time: Option<Duration>,
    /// The Upgrade tunnel this record waits for.
    pub tunnel: Option<Arc<tunnel::Tunnel>>,
    /// The client's HTTP version by its ALPN name: `http/1.1`, `h2`, `h3`
    /// (`None`: no request, a passthrough connection).
    pub protocol: Option<&'static str>,
}

impl AccessRecord {
    /// Wraps a request body sent to a backend so its bytes land in
    /// `bytes_in` (each attempt restarts the count: the last one wins).
    pub fn count_request_body(
        &mut self,
        b: crate::http::body::EdgeBody,
    ) -> crate::http::body::EdgeBody {
        let tally = self
            .request_body
            .get_or_insert_with(Default::default)
            .clone();
        crate::http::body::boxed(body::Counted::new(b, tally))
    }

    /// Emits the record to `tracing` (target `edge::access`), absent
    /// values as `-`.
    pub fn emit(&self) {
        tracing::info!(
            target: "edge::access",
            kind = self.kind,
            client = %Shown(self.client),
            sni = self.sni.as_deref().unwrap_or("-"),
            ja4 = self.ja4.as_deref().unwrap_or("-"),
            host = self.host.as_deref().unwrap_or("-"),
            method = self.method.as_deref().unwrap_or("-"),
            path = self.path.as_deref().unwrap_or("-"),
            status = self.status,
            bytes_in = self.bytes_in,
            bytes_out = self.bytes_out,
            duration_ms = self.duration.as_secs_f64() * 1000.0,
            route = self.route.as_deref().unwrap_or("-"),
            backend = %Shown(self.backend),
            backend_ms = self.backend_time.map(|d| d.as_secs_f64() * 1000.0),
            request_id = self.request_id.as_deref().unwrap_or("-"),
            tls = self.tls_version.unwrap_or("-"),
            cipher = self.tls_cipher.unwrap_or("-"),
            attempts = self.attempts,
            error = self.error.as_deref().unwrap_or("-"),
            tunnel_ms = self.tunnel_time.map(|d| d.as_secs_f64() * 1000.0),
            protocol = self.protocol.unwrap_or("-"),
        );
    }
}

/// The sinks of one config. Cheap to log to from any task.
#[derive(Debug, Default)]
pub struct AccessLog {
    sinks: Vec<Arc<Sink>>,
}

impl AccessLog {
    /// Queues `rec` on every sink (never waits), or emits it to `tracing`
    /// when the config has no sink.
    pub fn log(&self, mut rec: AccessRecord) {
        rec.time.get_or_insert_with(SystemTime::now);
        if self.sinks.is_empty() {
            rec.emit();
            return;
        }
        let rec = Arc::new(rec);
        for s in &self.sinks {
            s.send(rec.clone());
        }
    }

    /// Names of the sinks.
    pub fn names(&self) -> Vec<&str> {
        self.sinks
            .iter()
            .map(|s| s.settings.name.as_str())
            .collect()
    }
}

/// Why a sink could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SinkError {
    #[error("access log {name:?}: cannot open {path}: {source}")]
    Open {
        name: String,
        path: String,
        source: std::io::Error,
    },
    #[error("access log {name:?}: {source}")]
    Socket {
        name: String,
        source: std::io::Error,
    },
    #[error("access log {name:?}: cannot start the writer thread: {source}")]
    Thread {
        name: String,
        source: std::io::Error,
    },
}

/// The process-wide set of running sinks: reuse across reloads, and reopen.
#[derive(Debug, Default)]
pub struct Registry {
    live: Mutex<Vec<Weak<Sink>>>,
}

impl Registry {
    /// The sinks for `settings`: running ones with the same settings are
    /// reused (no record lost, no reconnect; files are reopened), the
    /// others started.
    pub fn build(
        &self,
        settings: &[AccessLogSettings],
        metrics: &Metrics,
    ) -> Result<AccessLog, SinkError> {
        let mut live = self.live.lock().unwrap_or_else(PoisonError::into_inner);
        live.retain(|w| w.strong_count() > 0);
        let mut sinks = Vec::with_capacity(settings.len());
        for s in settings {
            let running = live
                .iter()
                .filter_map(Weak::upgrade)
                .find(|l| l.settings == *s);
            let sink = match running {
                Some(r) => {
                    // A reload also reopens files (logrotate may use either).
                    r.reopen();
                    r
                }
                None => {
                    let sink = Sink::start(s.clone(), metrics.sink(&s.name))?;
                    live.push(Arc::downgrade(&sink));
                    sink
                }
            };
            sinks.push(sink);
        }
        Ok(AccessLog { sinks })
    }

    /// Reopens every file sink (after logrotate moved the file); the
    /// records queued after this call go to the new file.
    pub fn reopen(&self) {
        let live = self.live.lock().unwrap_or_else(PoisonError::into_inner);
        for s in live.iter().filter_map(Weak::upgrade) {
            s.reopen();
        }
    }
}

/// An optional value as log text: the value, or `-`.
struct Shown<T>(Option<T>);

impl<T: std::fmt::Display> std::fmt::Display for Shown<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Some(v) => v.fmt(f),
            None => f.write_str("-"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::observability::AccessLogTarget;

    fn wait_lines(p: &std::path::Path, n: usize) {
        for _ in 0..500 {
            if std::fs::read_to_string(p).is_ok_and(|s| s.lines().count() == n) {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("{} never had {n} lines", p.display());
    }

    #[test]
    fn a_reload_reuses_the_sink_and_reopens_its_file() {
        let dir = std::env::temp_dir().join(format!("edge-accesslog-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("a.log");
        let settings = [AccessLogSettings {
            name: "f".into(),
            target: AccessLogTarget::File(path.clone()),
            queue: 16,
        }];
        let (reg, metrics) = (Registry::default(), Metrics::new());
        let first = reg.build(&settings, &metrics).unwrap();
        first.log(AccessRecord {
            kind: "http",
            status: 200,
            ..Default::default()
        });
        wait_lines(&path, 1);
        std::fs::rename(&path, dir.join("a.log.1")).unwrap();
        // The "reload": same settings, same sink, file reopened.
        let second = reg.build(&settings, &metrics).unwrap();
        assert!(Arc::ptr_eq(&first.sinks[0], &second.sinks[0]));
        drop(first);
        second.log(AccessRecord {
            kind: "http",
            status: 201,
            ..Default::default()
        });
        wait_lines(&path, 1);
        assert!(
            std::fs::read_to_string(&path)
                .unwrap()
                .contains("\"status\":201")
        );
        wait_lines(&dir.join("a.log.1"), 1);
        // Other settings: a new sink (its own counters by name).
        let other = [AccessLogSettings {
            queue: 32,
            ..settings[0].clone()
        }];
        let third = reg.build(&other, &metrics).unwrap();
        assert!(!Arc::ptr_eq(&second.sinks[0], &third.sinks[0]));
        drop((second, third));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
