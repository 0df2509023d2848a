//! The network lab of the process-level HA tests (root only): network
//! namespaces on one bridge, each a host with one address in
//! 198.18.0.0/24, and the processes the tests run inside them (`edge`,
//! python3 backends and load clients, Pebble). Drop guards kill the
//! processes and delete the namespaces, also when a test panics.
//!
//! The lab's files (configs, logs) are kept when a test fails or
//! `HA_LAB_KEEP` is set. Include it with `#[path = "common/lab.rs"] mod lab;`.
#![allow(dead_code, unreachable_pub)]

use std::fs;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread::sleep;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// Whether the tests run as root (namespaces need it; CI does).
pub fn is_root() -> bool {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

/// Runs a command that must succeed.
pub fn run(args: &[&str]) {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Seconds since the epoch, as the python helpers report times.
pub fn now_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Waits (polling every 20 ms, at most `limit`) until `f` is true.
pub fn wait_until(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let t0 = Instant::now();
    loop {
        if f() {
            return true;
        }
        if t0.elapsed() > limit {
            return false;
        }
        sleep(Duration::from_millis(20));
    }
}

/// A hub namespace with a bridge, and host namespaces attached to it.
pub struct Lab {
    hub: String,
    /// (short name, namespace, address)
    hosts: Vec<(String, String, String)>,
    /// Files of this lab (configs, logs), removed on drop.
    pub dir: PathBuf,
}

impl Lab {
    /// An empty lab; `tag` (a few letters) goes into the namespace names.
    pub fn new(tag: &str) -> Lab {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let id = format!("{tag}{}x{n}", std::process::id());
        let dir = std::env::temp_dir().join(&id);
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        // The guard exists before the first namespace: a failed setup is
        // cleaned up too.
        let lab = Lab {
            hub: format!("{id}hub"),
            hosts: Vec::new(),
            dir,
        };
        run(&["ip", "netns", "add", &lab.hub]);
        run(&["ip", "-n", &lab.hub, "link", "add", "br0", "type", "bridge"]);
        run(&["ip", "-n", &lab.hub, "link", "set", "br0", "up"]);
        lab
    }

    /// Adds host `name` with addresses 198.18.0.`host`/24 and
    /// 2001:2::`host`/64 (hex) on `eth0`; IPv6 without duplicate address
    /// detection, so the addresses are usable at once.
    pub fn host(&mut self, name: &str, host: u8) {
        let ns = format!("{}-{name}", self.hub.trim_end_matches("hub"));
        let addr = format!("198.18.0.{host}");
        run(&["ip", "netns", "add", &ns]);
        self.hosts.push((name.to_owned(), ns.clone(), addr.clone()));
        let no_dad = "net.ipv6.conf.default.accept_dad=0";
        run(&["ip", "netns", "exec", &ns, "sysctl", "-qw", no_dad]);
        let port = format!("p{}", self.hosts.len());
        run(&[
            "ip", "-n", &self.hub, "link", "add", &port, "type", "veth", "peer", "name", "eth0",
            "netns", &ns,
        ]);
        run(&[
            "ip", "-n", &self.hub, "link", "set", &port, "master", "br0", "up",
        ]);
        run(&["ip", "-n", &ns, "link", "set", "lo", "up"]);
        let (v4, v6) = (format!("{addr}/24"), format!("2001:2::{host:x}/64"));
        run(&["ip", "-n", &ns, "addr", "add", &v4, "dev", "eth0"]);
        run(&["ip", "-n", &ns, "addr", "add", &v6, "dev", "eth0", "nodad"]);
        run(&["ip", "-n", &ns, "link", "set", "eth0", "up"]);
    }

    /// The namespace of host `name`.
    pub fn ns(&self, name: &str) -> &str {
        &self.host_entry(name).1
    }

    /// The address of host `name`.
    pub fn addr(&self, name: &str) -> &str {
        &self.host_entry(name).2
    }

    fn host_entry(&self, name: &str) -> &(String, String, String) {
        self.hosts
            .iter()
            .find(|h| h.0 == name)
            .unwrap_or_else(|| panic!("no host {name} in the lab"))
    }

    /// Runs `args` inside host `name` and waits for it.
    pub fn exec(&self, name: &str, args: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", self.ns(name)])
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("{args:?} in {name}: {e}"))
    }

    /// Runs `ip ARGS` inside host `name`; it must succeed.
    pub fn ip(&self, name: &str, args: &[&str]) {
        let mut all = vec!["ip", "-n", self.ns(name)];
        all.extend_from_slice(args);
        run(&all);
    }

    /// Starts `args` inside host `name`, stdout and stderr to `DIR/log`.
    pub fn spawn(&self, name: &str, args: &[&str], log: &str) -> Proc {
        self.spawn_env(name, args, &[], log)
    }

    /// Like [`spawn`](Self::spawn) with extra environment variables.
    pub fn spawn_env(&self, name: &str, args: &[&str], env: &[(&str, &str)], log: &str) -> Proc {
        let path = self.dir.join(log);
        let file = fs::File::create(&path).unwrap();
        // `ip netns exec` execs the program, so the child's pid is its pid.
        let child = Command::new("ip")
            .args(["netns", "exec", self.ns(name)])
            .args(args)
            .envs(env.iter().copied())
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {args:?} in {name}: {e}"));
        Proc {
            child: Some(child),
            log: path,
            name: format!("{} in {name}", args[0]),
        }
    }

    /// Whether host `name` has `ip` on `eth0`.
    pub fn holds(&self, name: &str, ip: &str) -> bool {
        let out = self.exec(name, &["ip", "-o", "addr", "show", "dev", "eth0"]);
        String::from_utf8_lossy(&out.stdout).contains(&format!(" {ip}/"))
    }

    /// Writes `DIR/name`.
    pub fn write(&self, name: &str, content: impl AsRef<[u8]>) -> PathBuf {
        let p = self.dir.join(name);
        fs::write(&p, content).unwrap();
        p
    }

    /// Runs curl inside host `name` (`-s`, a 0.5 s connect and 2 s total
    /// timeout); the body when it exits 0.
    pub fn curl(&self, name: &str, args: &[&str]) -> Option<String> {
        let mut all = vec!["curl", "-s", "--connect-timeout", "0.5", "--max-time", "2"];
        all.extend_from_slice(args);
        let out = self.exec(name, &all);
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for ns in self
            .hosts
            .iter()
            .map(|h| &h.1)
            .chain(std::iter::once(&self.hub))
        {
            let _ = Command::new("ip")
                .args(["netns", "del", ns])
                .stderr(Stdio::null())
                .status();
        }
        if std::thread::panicking() || std::env::var_os("HA_LAB_KEEP").is_some() {
            eprintln!("lab files kept in {}", self.dir.display());
        } else {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

/// A running child; killed (SIGKILL) on drop.
pub struct Proc {
    child: Option<Child>,
    pub log: PathBuf,
    pub name: String,
}

impl Proc {
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends `sig` ("-TERM", "-HUP") to the process.
    pub fn signal(&self, sig: &str) {
        if let Some(pid) = self.pid() {
            run(&["kill", sig, &pid.to_string()]);
        }
    }

    /// Waits until the log contains `needle`; false after `limit`.
    pub fn wait_log(&self, needle: &str, limit: Duration) -> bool {
        wait_until(limit, || self.log_text().contains(needle))
    }

    /// Waits until the process exits (at most `limit`); its success.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<bool> {
        let c = self.child.as_mut()?;
        let t0 = Instant::now();
        while t0.elapsed() < limit {
            if let Ok(Some(status)) = c.try_wait() {
                self.child = None;
                return Some(status.success());
            }
            sleep(Duration::from_millis(10));
        }
        None
    }

    /// SIGTERM and wait (at most 10 s, then SIGKILL); true when it exited
    /// with status 0 in time.
    pub fn terminate(&mut self) -> bool {
        self.signal("-TERM");
        let clean = self.wait_exit(Duration::from_secs(10));
        self.crash();
        clean == Some(true)
    }

    /// SIGKILL and reap.
    pub fn crash(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.crash();
    }
}

/// A python3 HTTP/1.1 backend: `GET /health` is 200, or 503 while the file
/// `DOWN_FILE` exists; `GET /slow/MS` answers after MS milliseconds;
/// anything else answers `NAME via PEER_IP`.
pub const BACKEND_PY: &str = r#"
import http.server, os, sys, time
name, addr, port, down = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a):
        pass
    def reply(self, code, body):
        self.send_response(code)
        self.send_header("content-type", "text/plain")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def do_GET(self):
        if self.path.startswith("/health"):
            if os.path.exists(down):
                return self.reply(503, b"down\n")
            return self.reply(200, b"ok\n")
        if self.path.startswith("/slow/"):
            time.sleep(int(self.path[6:]) / 1000.0)
        self.reply(200, ("%s via %s\n" % (name, self.client_address[0])).encode())
class S(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256
S((addr, port), H).serve_forever()
"#;

/// A python3 HTTPS load client. argv[1] is a JSON object: `ip`, `port`,
/// `host` (SNI and Host), `path`, `duration` (s), `max` (requests per
/// worker), `workers` (retry-once clients), `probe` (one more worker that
/// never retries and pauses only `probe_pause` s), `connect_timeout`,
/// `timeout`, `retry_after` (s before the one retry), `cafile` (verify
/// against it; otherwise no verification). Every request is a new
/// connection and prints one JSON line: `w` (worker, -1 = probe), `t0`,
/// `t1` (epoch seconds), `ok`, `err`, `body`, and after a failure `rok`,
/// `rerr`, `t2` (the retry).
pub const LOAD_PY: &str = r#"
import http.client, json, socket, ssl, sys, threading, time
c = json.loads(sys.argv[1])
if c.get("cafile"):
    ctx = ssl.create_default_context(cafile=c["cafile"])
else:
    ctx = ssl._create_unverified_context()
class Conn(http.client.HTTPSConnection):
    def connect(self):
        s = socket.create_connection((c["ip"], c["port"]), timeout=c["connect_timeout"])
        s.settimeout(c["timeout"])
        self.sock = ctx.wrap_socket(s, server_hostname=c["host"])
def once():
    conn = Conn(c["host"], c["port"], context=ctx, timeout=c["timeout"])
    try:
        conn.request("GET", c["path"])
        r = conn.getresponse()
        body = r.read().decode(errors="replace").strip()
        if r.status != 200:
            return False, "status %d" % r.status, body
        return True, "", body
    except Exception as e:
        return False, "%s: %s" % (type(e).__name__, e), ""
    finally:
        conn.close()
lock = threading.Lock()
end = time.time() + c["duration"]
def worker(w, retry, pause):
    n = 0
    while time.time() < end and n < c["max"]:
        t0 = time.time()
        ok, err, body = once()
        rec = {"w": w, "t0": t0, "t1": time.time(), "ok": ok, "err": err, "body": body}
        if not ok and retry:
            time.sleep(c["retry_after"])
            rok, rerr, rbody = once()
            rec.update(rok=rok, rerr=rerr, t2=time.time(), rbody=rbody)
        with lock:
            print(json.dumps(rec), flush=True)
        n += 1
        time.sleep(pause)
ts = [threading.Thread(target=worker, args=(w, True, 0.0)) for w in range(c["workers"])]
if c.get("probe"):
    ts.append(threading.Thread(target=worker, args=(-1, False, c["probe_pause"])))
for t in ts:
    t.start()
for t in ts:
    t.join()
"#;

/// One request of the load client.
#[derive(Debug, Clone, Default)]
pub struct Req {
    pub worker: i64,
    pub t0: f64,
    pub t1: f64,
    pub ok: bool,
    pub err: String,
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
            let s = || unescape(v.trim_matches('"'));
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
pub struct Load {
    proc: Proc,
    spec: LoadSpec,
}

impl Load {
    /// Starts LOAD_PY inside host `name`.
    pub fn start(lab: &Lab, name: &str, spec: LoadSpec) -> Load {
        let script = lab.write("load.py", LOAD_PY);
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
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
        let done = self.proc.wait_exit(limit);
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
