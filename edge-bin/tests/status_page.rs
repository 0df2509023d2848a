//! The status page of the management listener: `/status.json` follows a
//! backend that is killed and comes back, and `/status` in headless
//! Chromium (Debian's `chromium`, driven by Playwright through
//! `playwright-core` from npm; `tests/status_page/check.mjs`) lists every
//! server, shows the killed one down within two seconds and up again, and
//! leaves a screenshot under `target/status-page/`.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::peers::{status_json, status_server, status_state};
use common::*;
use serde_json::Value;

/// A down (or back up) server must show within this after its backend
/// went away (health checks every 200 ms, fall 2, rise 2).
const SHOWN_WITHIN: Duration = Duration::from_secs(2);

/// edge in front of two pools, `web` (two demo backends) and `api` (one).
struct Setup {
    front: Front,
    management: u16,
    /// (name, port, the running backend).
    backends: Vec<(&'static str, u16, Option<Edge>)>,
}

impl Setup {
    fn start(test: &str) -> Setup {
        let ports = [
            ("web1", free_port()),
            ("web2", free_port()),
            ("api1", free_port()),
        ];
        let management = free_port();
        let mut extra: Vec<(&str, u16)> = ports.to_vec();
        extra.push(("management_port", management));
        let front = front(
            test,
            "status_page.toml",
            &["app.test", "api.app.test"],
            &extra,
        );
        let backends = ports
            .iter()
            .map(|&(name, port)| (name, port, Some(start_backend(&front.dir, name, port))))
            .collect();
        let s = Setup {
            front,
            management,
            backends,
        };
        wait_for("every server up", Duration::from_secs(15), || {
            let v = s.status();
            s.servers()
                .iter()
                .all(|k| state_of(&v, k) == "up")
                .then_some(())
        });
        s
    }

    /// `pool/address` of every server, as the page keys them.
    fn servers(&self) -> Vec<String> {
        self.backends
            .iter()
            .map(|(name, port, _)| format!("{}/127.0.0.1:{port}", &name[..name.len() - 1]))
            .collect()
    }

    fn status(&self) -> Value {
        status_json(self.management)
    }

    /// `edge admin` on the admin socket; panics unless it succeeds.
    fn admin(&self, command: &str) {
        let socket = self.front.dir.path("admin.sock");
        let mut args = vec!["admin", "-s", socket.to_str().unwrap()];
        args.extend(command.split_whitespace());
        let (code, out) = edge_cmd(&args);
        assert_eq!(code, 0, "edge admin {command}: {out}");
    }

    /// Kills backend `i` (SIGKILL, reaped); returns when it is gone.
    fn kill(&mut self, i: usize) {
        drop(self.backends[i].2.take());
    }

    /// Starts backend `i` again on its port; returns when it serves.
    fn revive(&mut self, i: usize) {
        let (name, port, _) = self.backends[i];
        self.backends[i].2 = Some(start_backend(&self.front.dir, name, port));
    }
}

fn start_backend(dir: &TempDir, name: &str, port: u16) -> Edge {
    let config = fixture("demo_backend.toml").set("port", port).render();
    start_edge(dir, name, &config)
}

/// The `state` of server `pool/address` in a `/status.json` document.
fn state_of(v: &Value, key: &str) -> String {
    status_state(v, key)
}

fn server<'a>(v: &'a Value, key: &str) -> &'a Value {
    status_server(v, key)
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Polls `/status.json` (every 20 ms) until server `key` is in `state`:
/// how long that took.
fn time_until(s: &Setup, key: &str, state: &str, limit: Duration) -> Duration {
    let t0 = Instant::now();
    loop {
        let v = s.status();
        if state_of(&v, key) == state {
            return t0.elapsed();
        }
        assert!(
            t0.elapsed() < limit,
            "{key} not {state} within {limit:?}: {}",
            server(&v, key)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn status_json_follows_a_backend_down_and_up() {
    let mut s = Setup::start("status-json");
    let keys = s.servers();
    // Traffic through both pools.
    let ca = s.front.pki.ca_pem.to_str().unwrap().to_string();
    for host in ["app.test", "app.test", "api.app.test"] {
        let resolve = format!("{host}:{}:127.0.0.1", s.front.port);
        let url = format!("https://{host}:{}/", s.front.port);
        let (code, out) = curl(&[
            "--cacert",
            &ca,
            "--resolve",
            &resolve,
            "-o",
            "/dev/null",
            &url,
        ]);
        assert_eq!(code, 0, "{out}");
    }

    let v = s.status();
    let routes: Vec<(&str, &str)> = v["routes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["name"].as_str().unwrap(), r["target"].as_str().unwrap()))
        .collect();
    assert_eq!(
        routes,
        [("api", "api"), ("web", "web"), ("ping", "respond 200")]
    );
    assert_eq!(v["routes"][1]["hosts"], serde_json::json!(["app.test"]));
    assert_eq!(v["routes"][1]["requests"], 2);
    assert_eq!(v["routes"][0]["requests"], 1);
    let pools: Vec<&str> = v["pools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(pools, ["api", "web"]);
    let sent: u64 = keys[..2]
        .iter()
        .map(|k| server(&v, k)["requests"].as_u64().unwrap())
        .sum();
    assert_eq!(sent, 2, "{}", v["pools"]);
    // Each answer is counted for the server that gave it, with its latency.
    let answered: u64 = keys[..2]
        .iter()
        .map(|k| server(&v, k)["responses"]["2xx"].as_u64().unwrap())
        .sum();
    assert_eq!(answered, 2, "{}", v["pools"]);
    let api = server(&v, &keys[2]);
    assert_eq!(api["latency_ms"]["count"], 1, "{api}");
    let p50 = api["latency_ms"]["p50"].as_f64().unwrap();
    assert!(p50 > 0.0 && p50 < 1000.0, "{api}");
    assert_eq!(api["errors_by_kind"]["connect"], 0, "{api}");
    // Every check is shown, not only those that changed the state.
    let lc = &api["last_check"];
    assert_eq!(
        (lc["passed"].as_bool(), lc["reason"].as_str()),
        (Some(true), Some("passed")),
        "{lc}"
    );
    assert!(
        lc["seconds_ago"].as_u64().unwrap() <= 2,
        "checks every 200 ms: {lc}"
    );
    assert_eq!(server(&v, &keys[1])["weight"], 2);
    // Up from the start: no check has changed the state yet.
    let first = &server(&v, &keys[0])["last_change"];
    assert!(
        ["not_checked", "passed"].contains(&first["result"].as_str().unwrap()),
        "{first}"
    );
    let certs = v["certificates"].as_array().unwrap();
    assert_eq!(certs.len(), 1, "{certs:?}");
    assert_eq!(
        certs[0]["served_names"],
        serde_json::json!(["api.app.test", "app.test"])
    );
    assert!(
        certs[0]["issuer"].as_str().unwrap().contains("CN="),
        "{}",
        certs[0]
    );
    assert!(certs[0]["expires_in_seconds"].as_i64().unwrap() > 0);
    assert_eq!(v["access_logs"][0]["name"], "file");
    assert_eq!(v["vrrp"], serde_json::json!([]));

    // The page itself: HTML that fetches nothing from elsewhere.
    let (code, head) = curl(&[
        "-D",
        "-",
        "-o",
        "/dev/null",
        &format!("http://127.0.0.1:{}/status", s.management),
    ]);
    assert_eq!(code, 0);
    let head = head.to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains("content-type: text/html"), "{head}");
    assert!(
        head.contains("content-security-policy: default-src 'none'"),
        "{head}"
    );

    // What an operator set on the admin socket comes first.
    let (web2, api1) = (&keys[1], &keys[2]);
    s.admin(&format!("maint web {}", &web2[4..]));
    s.admin(&format!("set server {api1} state drain"));
    let v = s.status();
    assert_eq!(state_of(&v, web2), "maintenance");
    assert_eq!(server(&v, web2)["admin"], "maint");
    assert_eq!(state_of(&v, api1), "draining");
    assert_eq!(server(&v, api1)["health"], "up");
    s.admin(&format!("enable web {}", &web2[4..]));
    s.admin(&format!("enable api {}", &api1[4..]));
    let v = s.status();
    assert_eq!(
        (state_of(&v, web2), state_of(&v, api1)),
        ("up".into(), "up".into())
    );

    // web1's backend is killed: down within two seconds, the last check
    // says why and when; the others stay up.
    let before = unix_ms();
    s.kill(0);
    let down = time_until(&s, &keys[0], "down", SHOWN_WITHIN);
    let v = s.status();
    let check = &server(&v, &keys[0])["last_change"];
    assert_eq!(check["result"], "refused", "{check}");
    let last = &server(&v, &keys[0])["last_check"];
    assert_eq!(last["passed"], false, "{last}");
    assert_eq!(last["reason"], "connection refused", "{last}");
    let since = check["since_ms"].as_u64().unwrap();
    assert!(since + 50 >= before && since <= unix_ms(), "{check}");
    for k in &keys[1..] {
        assert_eq!(state_of(&v, k), "up", "{k}");
    }
    let web = v["pools"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "web")
        .unwrap();
    assert_eq!(
        (web["servers_up"].as_u64(), web["servers_total"].as_u64()),
        (Some(1), Some(2))
    );

    // It serves again: up within two seconds.
    s.revive(0);
    let up = time_until(&s, &keys[0], "up", SHOWN_WITHIN);
    println!(
        "status.json: {} down after {down:?}, up again after {up:?}",
        keys[0]
    );
}

/// Requests through both pools (curl, three per connection, every 100 ms)
/// until stopped, so the page has rates to show.
struct Traffic {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<u64>,
}

impl Traffic {
    fn start(s: &Setup) -> Traffic {
        use std::sync::atomic::Ordering;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let ca = s.front.pki.ca_pem.to_str().unwrap().to_string();
        let port = s.front.port;
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut runs = 0;
            while !flag.load(Ordering::Relaxed) {
                let mut args = vec!["--cacert".to_string(), ca.clone()];
                for host in ["app.test", "api.app.test"] {
                    args.push("--resolve".into());
                    args.push(format!("{host}:{port}:127.0.0.1"));
                }
                for url in ["app.test/a", "app.test/b", "api.app.test/c"] {
                    args.extend([
                        "-o".into(),
                        "/dev/null".into(),
                        format!("https://{}", url.replacen('/', &format!(":{port}/"), 1)),
                    ]);
                }
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                curl(&args);
                runs += 1;
                std::thread::sleep(Duration::from_millis(100));
            }
            runs
        });
        Traffic { stop, thread }
    }

    fn stop(self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let runs = self.thread.join().unwrap();
        assert!(runs > 0);
    }
}

/// Installs check.mjs's npm packages (`npm ci`) when they are missing.
fn npm_packages(dir: &Path) {
    if dir
        .join("node_modules/playwright-core/package.json")
        .exists()
    {
        return;
    }
    let out = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund"])
        .current_dir(dir)
        .output()
        .expect("npm must be installed (Debian package npm)");
    assert!(
        out.status.success(),
        "npm ci in {} failed:\n{}{}",
        dir.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `target/status-page/`, beside the test binaries.
fn artifacts() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    // target/debug/deps/status_page-HASH
    let target = exe.ancestors().nth(3).unwrap().to_path_buf();
    let dir = target.join("status-page");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn status_page_in_chromium() {
    assert!(
        Path::new("/usr/bin/chromium").exists(),
        "/usr/bin/chromium is missing (Debian package chromium; .ci/test installs it)"
    );
    let script_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/status_page");
    npm_packages(&script_dir);
    let mut s = Setup::start("status-page");
    let out = artifacts();
    let screenshot = out.join("status-page.png");
    let phone = out.join("status-page-phone.png");
    for p in [&screenshot, &phone] {
        let _ = std::fs::remove_file(p);
    }
    let keys = s.servers();
    let traffic = Traffic::start(&s);
    let cfg = serde_json::json!({
        "url": format!("http://127.0.0.1:{}/status", s.management),
        "profile": s.front.dir.path("chromium-profile"),
        "servers": keys,
        "routes": ["api", "web", "ping"],
        "victim": keys[0],
        "operated": keys[1],
        "screenshot": screenshot,
        "phone_screenshot": phone,
    });
    let mut node = Command::new("node")
        .arg(script_dir.join("check.mjs"))
        .arg(cfg.to_string())
        .current_dir(&script_dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("node must be installed (Debian package nodejs)");
    // A hung browser must not hang the test.
    let pid = node.id();
    let watchdog = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(120));
        let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
    });
    let mut stdin = node.stdin.take().unwrap();
    let mut results = Vec::new();
    let mut killed_at = None;
    for line in BufReader::new(node.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        println!("check.mjs: {line}");
        match line.as_str() {
            "kill" => {
                s.kill(0);
                killed_at = Some(Instant::now());
                writeln!(stdin, "killed").unwrap();
            }
            "revive" => {
                s.revive(0);
                writeln!(stdin, "revived").unwrap();
            }
            "maint" => {
                s.admin(&format!("set server {} state maint", keys[1]));
                writeln!(stdin, "done").unwrap();
            }
            "enable" => {
                s.admin(&format!("set server {} state ready", keys[1]));
                writeln!(stdin, "done").unwrap();
            }
            _ => results.push(line),
        }
    }
    let status = node.wait().unwrap();
    drop(watchdog);
    traffic.stop();
    assert!(
        status.success() && results.iter().any(|l| l == "result ok"),
        "the browser check failed ({status}): {results:?}; see {}",
        out.display()
    );
    assert!(
        killed_at.is_some(),
        "the check never asked to kill a backend"
    );
    let png = std::fs::read(&screenshot).unwrap();
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 10_000);
    println!("screenshot: {}", screenshot.display());
    println!("phone screenshot: {}", phone.display());
}
