//! Python3 helpers the lab runs: an HTTP/1.1 backend and an HTTPS load
//! client whose every request is one JSON line.

use std::path::PathBuf;
use std::time::Duration;

use crate::lab::Lab;
use crate::proc::{Proc, unique};
use crate::wait_until;

/// A python3 HTTP/1.1 backend (`scripts/backend.py`), run as
/// `python3 backend.py NAME ADDR PORT DOWN_FILE` (ADDR IPv4 or IPv6):
/// `GET /health` is 200, or 503 while the file `DOWN_FILE` exists;
/// `GET /slow/MS` answers after MS milliseconds; anything else answers
/// `NAME via PEER_IP`. With `BACKEND_LOG_REQUESTS=1` it prints each request
/// as `REQ EPOCH_SECONDS PEER_IP PATH` (see [`logging_backend`]).
pub const BACKEND_PY: &str = include_str!("../scripts/backend.py");

/// A python3 HTTPS load client (`scripts/load.py`). argv\[1\] is a JSON
/// object: `ip`, `port`, `host` (SNI and Host), `path`, `duration` (s),
/// `max` (requests per worker), `workers` (retry-once clients), `probe`
/// (one more worker that never retries and pauses only `probe_pause` s),
/// `connect_timeout`, `timeout`, `retry_after` (s before the one retry),
/// `cafile` (verify against it; otherwise no verification). Every request
/// is a new connection and prints one JSON line: `w` (worker, -1 = probe),
/// `t0`, `t1` (epoch seconds), `ok`, `err`, `body`, and after a failure
/// `rok`, `rerr`, `t2` (the retry).
pub const LOAD_PY: &str = include_str!("../scripts/load.py");

/// Starts [`BACKEND_PY`] in host `name` of `lab` as `tag`, listening on
/// `ip:port`, down (503 on /health) while `DIR/TAG.down` exists; waits
/// (10 s at most) until host `probe_from` gets its health page.
pub fn backend(lab: &Lab, name: &str, tag: &str, ip: &str, port: u16, probe_from: &str) -> Proc {
    backend_env(lab, name, tag, ip, port, probe_from, &[])
}

/// [`backend`] that logs every request it gets (health checks included),
/// for [`requests`].
pub fn logging_backend(
    lab: &Lab,
    name: &str,
    tag: &str,
    ip: &str,
    port: u16,
    probe_from: &str,
) -> Proc {
    let env = [("BACKEND_LOG_REQUESTS", "1")];
    backend_env(lab, name, tag, ip, port, probe_from, &env)
}

/// One request a [`logging_backend`] got.
#[derive(Debug, Clone, PartialEq)]
pub struct Logged {
    /// When it arrived, epoch seconds.
    pub at: f64,
    /// The peer's address.
    pub from: String,
    /// The request's path.
    pub path: String,
}

/// Every request a [`logging_backend`] got so far.
pub fn requests(backend: &Proc) -> Vec<Logged> {
    backend
        .log_text()
        .lines()
        .filter_map(|l| {
            let mut w = l.strip_prefix("REQ ")?.split(' ');
            Some(Logged {
                at: w.next()?.parse().ok()?,
                from: w.next()?.to_owned(),
                path: w.next()?.to_owned(),
            })
        })
        .collect()
}

fn backend_env(
    lab: &Lab,
    name: &str,
    tag: &str,
    ip: &str,
    port: u16,
    probe_from: &str,
    env: &[(&str, &str)],
) -> Proc {
    let script = lab.write("backend.py", BACKEND_PY);
    let down = lab.dir.join(format!("{tag}.down"));
    let p = lab.spawn_env(
        name,
        &[
            "python3",
            &script.to_string_lossy(),
            tag,
            ip,
            &port.to_string(),
            &down.to_string_lossy(),
        ],
        env,
        &format!("{tag}.log"),
    );
    let url = format!("http://{ip}:{port}/health");
    assert!(
        wait_until(Duration::from_secs(10), || lab
            .curl(probe_from, &[&url])
            .is_some()),
        "{tag} did not start:\n{}",
        p.log_text()
    );
    p
}

/// Makes the health page of [`backend`] `tag` fail (or pass again).
pub fn set_down(lab: &Lab, tag: &str, down: bool) {
    let f = lab.dir.join(format!("{tag}.down"));
    if down {
        std::fs::write(f, "down").unwrap();
    } else {
        std::fs::remove_file(f).unwrap();
    }
}
/// One request of the load client.
#[derive(Debug, Clone, Default)]
pub struct Req {
    /// The worker: -1 is the probe.
    pub worker: i64,
    /// Start, epoch seconds.
    pub t0: f64,
    /// End, epoch seconds.
    pub t1: f64,
    /// Served (status 200).
    pub ok: bool,
    /// Why not.
    pub err: String,
    /// The response body.
    pub body: String,
    /// The retry after a failure: (ok, error, end time).
    pub retry: Option<(bool, String, f64)>,
}

impl Req {
    /// Parses one line the load client printed.
    pub fn parse(line: &str) -> Option<Req> {
        // A tiny reader for the flat JSON objects LOAD_PY prints (json.dumps
        // escapes quotes, so `", "` only separates fields).
        let inner = line.trim().strip_prefix('{')?.strip_suffix('}')?;
        let mut r = Req::default();
        let mut rok = None;
        let (mut rerr, mut t2) = (String::new(), 0.0);
        for field in split_fields(inner) {
            let (k, v) = field.split_once(": ")?;
            let k = k.trim_matches('"');
            let s = || {
                unescape(
                    v.strip_prefix('"')
                        .and_then(|v| v.strip_suffix('"'))
                        .unwrap_or(v),
                )
            };
            match k {
                "w" => r.worker = v.parse().ok()?,
                "t0" => r.t0 = v.parse().ok()?,
                "t1" => r.t1 = v.parse().ok()?,
                "ok" => r.ok = v == "true",
                "err" => r.err = s(),
                "body" => r.body = s(),
                "rok" => rok = Some(v == "true"),
                "rerr" => rerr = s(),
                "t2" => t2 = v.parse().ok()?,
                _ => {}
            }
        }
        r.retry = rok.map(|ok| (ok, rerr, t2));
        Some(r)
    }

    /// Whether the request was served, counting its retry.
    pub fn served(&self) -> bool {
        self.ok || self.retry.as_ref().is_some_and(|r| r.0)
    }
}

fn split_fields(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut start, mut in_str, mut esc) = (0, false, false);
    for (i, ch) in s.char_indices() {
        match ch {
            _ if esc => esc = false,
            '\\' if in_str => esc = true,
            '"' => in_str = !in_str,
            ',' if !in_str => {
                out.push(s[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(s[start..].trim());
    out
}

fn unescape(s: &str) -> String {
    s.replace("\\\"", "\"").replace("\\\\", "\\")
}

/// Settings of a [`Load`] run.
#[derive(Debug, Clone)]
pub struct LoadSpec {
    pub ip: String,
    pub port: u16,
    pub host: String,
    pub path: String,
    pub duration: Duration,
    pub max: u32,
    pub workers: u32,
    pub probe: bool,
    pub probe_pause: Duration,
    pub connect_timeout: Duration,
    pub timeout: Duration,
    pub retry_after: Duration,
    pub cafile: Option<PathBuf>,
}

impl LoadSpec {
    fn json(&self) -> String {
        format!(
            r#"{{"ip": "{}", "port": {}, "host": "{}", "path": "{}", "duration": {}, "max": {}, "workers": {}, "probe": {}, "probe_pause": {}, "connect_timeout": {}, "timeout": {}, "retry_after": {}, "cafile": {}}}"#,
            self.ip,
            self.port,
            self.host,
            self.path,
            self.duration.as_secs_f64(),
            self.max,
            self.workers,
            self.probe,
            self.probe_pause.as_secs_f64(),
            self.connect_timeout.as_secs_f64(),
            self.timeout.as_secs_f64(),
            self.retry_after.as_secs_f64(),
            self.cafile
                .as_ref()
                .map_or("null".to_owned(), |p| format!("\"{}\"", p.display())),
        )
    }
}

/// A running load client.
#[derive(Debug)]
pub struct Load {
    proc: Proc,
    spec: LoadSpec,
}

impl Load {
    /// Starts [`LOAD_PY`] inside host `name`.
    pub fn start(lab: &Lab, name: &str, spec: LoadSpec) -> Load {
        let script = lab.write("load.py", LOAD_PY);
        let n = unique();
        let proc = lab.spawn(
            name,
            &["python3", &script.to_string_lossy(), &spec.json()],
            &format!("load{n}.out"),
        );
        Load { proc, spec }
    }

    /// The requests finished so far.
    pub fn so_far(&self) -> Vec<Req> {
        self.proc
            .log_text()
            .lines()
            .filter_map(Req::parse)
            .collect()
    }

    /// Waits until `n` requests were served (at most `limit`).
    pub fn wait_served(&self, n: usize, limit: Duration) -> bool {
        wait_until(limit, || self.so_far().iter().filter(|r| r.ok).count() >= n)
    }

    /// Waits for the client to finish; every request it made.
    pub fn finish(mut self) -> Vec<Req> {
        let limit = self.spec.duration
            + self.spec.timeout * 2
            + self.spec.connect_timeout * 2
            + self.spec.retry_after
            + Duration::from_secs(10);
        let done = self.proc.wait_exit(limit).map(|s| s.success());
        let text = self.proc.log_text();
        assert!(done.is_some(), "the load client did not finish:\n{text}");
        let reqs: Vec<Req> = text.lines().filter_map(Req::parse).collect();
        assert!(
            !reqs.is_empty(),
            "the load client made no request (exit {done:?}):\n{text}"
        );
        reqs
    }
}

/// What the load client saw around an event at `at` (epoch seconds).
#[derive(Debug)]
pub struct Outcome {
    /// Requests made (probe and retry-once clients).
    pub total: usize,
    /// Probe requests (no retry) that failed.
    pub probe_failed: usize,
    /// First attempts of the retry-once clients that failed.
    pub failed: usize,
    /// Retry-once requests that failed twice.
    pub lost: usize,
    /// From `at` to the end of the first probe request that started after
    /// `at` and succeeded.
    pub gap: Option<Duration>,
    /// Failed attempts by error kind.
    pub errors: std::collections::BTreeMap<String, usize>,
}

/// Sums `reqs` up around the event at `at` (epoch seconds).
pub fn outcome(reqs: &[Req], at: f64) -> Outcome {
    let gap = reqs
        .iter()
        .filter(|r| r.worker < 0 && r.t0 >= at && r.ok)
        .map(|r| r.t1)
        .reduce(f64::min)
        .map(|t| Duration::from_secs_f64((t - at).max(0.0)));
    let mut errors = std::collections::BTreeMap::new();
    for r in reqs.iter().filter(|r| !r.ok) {
        let kind = r.err.split(':').next().unwrap_or_default().to_owned();
        *errors.entry(kind).or_insert(0) += 1;
    }
    Outcome {
        total: reqs.len(),
        probe_failed: reqs.iter().filter(|r| r.worker < 0 && !r.ok).count(),
        failed: reqs.iter().filter(|r| r.worker >= 0 && !r.ok).count(),
        lost: reqs.iter().filter(|r| r.worker >= 0 && !r.served()).count(),
        gap,
        errors,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn load_lines_parse_with_their_retry() {
        let r = Req::parse(
            r#"{"w": 2, "t0": 1.5, "t1": 2.25, "ok": false, "err": "timeout: a, \"b\"", "body": "", "rok": true, "rerr": "", "t2": 3.0, "rbody": "x"}"#,
        )
        .unwrap();
        assert_eq!((r.worker, r.t0, r.t1, r.ok), (2, 1.5, 2.25, false));
        assert_eq!(r.err, "timeout: a, \"b\"");
        assert_eq!(r.retry, Some((true, String::new(), 3.0)));
        assert!(r.served());
        let p = Req::parse(
            r#"{"w": -1, "t0": 1, "t1": 2, "ok": true, "err": "", "body": "node0 via 198.18.0.2"}"#,
        )
        .unwrap();
        assert!(p.ok && p.retry.is_none() && p.body == "node0 via 198.18.0.2");
        assert!(Req::parse("Traceback (most recent call last):").is_none());
        let o = outcome(&[r.clone(), p.clone()], 0.5);
        assert_eq!((o.total, o.probe_failed, o.failed, o.lost), (2, 0, 1, 0));
        assert_eq!(o.gap, Some(Duration::from_secs_f64(1.5)));
        assert_eq!(o.errors.get("timeout"), Some(&1));
    }
}
