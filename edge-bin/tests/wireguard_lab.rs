//! WireGuard to a remote site (root, network namespaces this test creates):
//! edge's pool servers sit at another site and are reached through a
//! WireGuard tunnel, as nodes set up with the Ansible role `wireguard` reach
//! them. edge knows nothing of WireGuard: its servers are the far end's
//! tunnel addresses, and its HTTP health checks are what notices a tunnel
//! that is down.
//!
//! The tunnel is `wireguard-go` (userspace: no kernel module needed)
//! configured with `wg`, one end in the lab host `edge` and one in the lab
//! host `remote`; its UDP goes over the lab's bridge between them. Two
//! backends in `remote` listen only on its tunnel addresses (IPv4 and
//! IPv6). A third host, `client`, makes HTTPS requests to edge. The
//! tunnel is taken down twice (its link set down at the remote end, then
//! its wireguard-go killed): each time the health checks take both servers
//! out within a bound, seen on the admin socket, and edge answers 503 at
//! once instead of hanging; each time the tunnel returns, so do the servers
//! and the requests succeed again.

mod common;

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{EDGE, Edge, Proc, edge_cmd, fixture, log_tails, run, run_quiet, wait_until};
use edge_testkit::lab::Lab;
use edge_testkit::load::BACKEND_PY;

/// The lab hosts: edge, the remote site, the client (198.18.0.N on the
/// bridge, where the tunnel's UDP goes).
const HOSTS: [(&str, u8); 3] = [("edge", 2), ("remote", 3), ("client", 10)];
/// Tunnel addresses of edge's end and of the remote end: IPv4 in a /24,
/// IPv6 in a /64.
const TUN_EDGE: [&str; 2] = ["198.18.64.1", "2001:2:64::1"];
const TUN_REMOTE: [&str; 2] = ["198.18.64.2", "2001:2:64::2"];
const WG_PORT: u16 = 51820;
/// The pool's servers: the two backends at the remote end of the tunnel.
const SERVERS: [&str; 2] = ["198.18.64.2:8080", "[2001:2:64::2]:8080"];
/// Health checks: every 100 ms with a 300 ms timeout, out after 2 failed
/// checks, back after 2 passed ones.
const INTERVAL: Duration = Duration::from_millis(100);
const TIMEOUT: Duration = Duration::from_millis(300);
const RISE: u32 = 2;
const FALL: u32 = 2;
/// Slack over the computed times for a loaded 2-core machine.
const MARGIN: Duration = Duration::from_secs(2);
/// WireGuard's Rekey-Timeout: a handshake that got no answer is retried
/// after 5 s. A returning remote end starts one at once (it has a
/// persistent keepalive), so one lost handshake is the worst case here.
const REKEY_TIMEOUT: Duration = Duration::from_secs(5);
/// The pool's connect timeout: how long a connect into the dead tunnel
/// waits (per attempt) before the checks have taken the servers out.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// How long the servers may take to leave once the tunnel is down: `FALL`
/// checks that each time out, the wait for the first of them, and margin.
fn out_bound() -> Duration {
    (INTERVAL + TIMEOUT) * FALL + INTERVAL + MARGIN
}

/// How long the servers may take to return once the tunnel is back: one
/// lost handshake, `RISE` passing checks, and margin.
fn back_bound() -> Duration {
    REKEY_TIMEOUT + INTERVAL * RISE + TIMEOUT + MARGIN
}

/// The UAPI socket of wireguard-go's interface `ifname`. /var/run is
/// shared by every namespace: interface names are unique per test.
fn socket_path(ifname: &str) -> PathBuf {
    Path::new("/var/run/wireguard").join(format!("{ifname}.sock"))
}

/// A WireGuard key pair, made as the Ansible role makes it (`wg genkey`
/// into a file only root reads, `wg pubkey` from it): (private, public),
/// base64.
fn keypair(lab: &Lab, name: &str) -> (String, String) {
    let file = lab.dir.join(format!("{name}.key"));
    let script = format!(
        "umask 077 && wg genkey > {0} && wg pubkey < {0}",
        file.display()
    );
    let public = run(&["sh", "-c", &script]).trim().to_owned();
    let private = fs::read_to_string(&file).unwrap().trim().to_owned();
    (private, public)
}

/// One end of the tunnel: wireguard-go in a lab host.
struct End {
    host: &'static str,
    ifname: String,
    /// Its `wg setconf` file (private key, port, the peer), mode 0600.
    conf: PathBuf,
    addrs: [&'static str; 2],
    proc: Option<Proc>,
}

/// Both ends (0 in `edge`, 1 in `remote`). Dropping it kills wireguard-go
/// and removes the sockets a killed one leaves behind; the lab deletes
/// the namespaces and with them the interfaces.
struct Tunnel {
    ends: [End; 2],
}

impl Tunnel {
    /// Keys, configs, and both ends started and up.
    fn new(lab: &Lab) -> Tunnel {
        let keys = [keypair(lab, "edge"), keypair(lab, "remote")];
        let hosts = [HOSTS[0].0, HOSTS[1].0];
        let addrs = [TUN_EDGE, TUN_REMOTE];
        let end = |i: usize| {
            let peer = 1 - i;
            let ifname = format!("{}{}", lab.id(), ["e", "r"][i]);
            assert!(ifname.len() <= 15, "interface name {ifname} too long");
            let conf = format!(
                "[Interface]\nPrivateKey = {}\nListenPort = {WG_PORT}\n\n\
                 [Peer]\nPublicKey = {}\nEndpoint = {}:{WG_PORT}\n\
                 AllowedIPs = {}/32, {}/128\nPersistentKeepalive = 1\n",
                keys[i].0,
                keys[peer].1,
                lab.addr(hosts[peer]),
                addrs[peer][0],
                addrs[peer][1],
            );
            let path = lab.dir.join(format!("{ifname}.conf"));
            fs::OpenOptions::new()
                .create(true)
                .truncate(true)
                .write(true)
                .mode(0o600)
                .open(&path)
                .and_then(|mut f| f.write_all(conf.as_bytes()))
                .unwrap();
            End {
                host: hosts[i],
                ifname,
                conf: path,
                addrs: addrs[i],
                proc: None,
            }
        };
        let mut t = Tunnel {
            ends: [end(0), end(1)],
        };
        t.start(lab, 0);
        t.start(lab, 1);
        t
    }

    /// Starts wireguard-go for end `i` (in the foreground, so it is a
    /// child of this test), configures it with `wg setconf`, adds its
    /// addresses and sets its link up.
    fn start(&mut self, lab: &Lab, i: usize) {
        let e = &mut self.ends[i];
        assert!(e.proc.is_none(), "{} runs already", e.ifname);
        let sock = socket_path(&e.ifname);
        // A killed wireguard-go leaves its socket.
        let _ = fs::remove_file(&sock);
        let proc = lab.spawn_env(
            e.host,
            &["wireguard-go", "-f", &e.ifname],
            &[("LOG_LEVEL", "verbose")],
            &format!("wireguard-go-{}.log", e.host),
        );
        let ns = lab.ns(e.host).to_owned();
        let ready = wait_until(Duration::from_secs(10), || {
            sock.exists() && run_quiet(&["ip", "-n", &ns, "link", "show", "dev", &e.ifname])
        });
        assert!(
            ready,
            "wireguard-go did not create {} in {}:\n{}",
            e.ifname,
            e.host,
            proc.log_text()
        );
        e.proc = Some(proc);
        let conf = e.conf.to_string_lossy();
        run(&[
            "ip", "netns", "exec", &ns, "wg", "setconf", &e.ifname, &conf,
        ]);
        let (v4, v6) = (format!("{}/24", e.addrs[0]), format!("{}/64", e.addrs[1]));
        lab.ip(e.host, &["addr", "add", &v4, "dev", &e.ifname]);
        lab.ip(e.host, &["addr", "add", &v6, "dev", &e.ifname, "nodad"]);
        self.set_link(lab, i, true);
    }

    /// Sets end `i`'s interface up or down (wireguard-go stops its
    /// device while the link is down: no handshakes, no packets).
    fn set_link(&self, lab: &Lab, i: usize, up: bool) {
        let e = &self.ends[i];
        let state = if up { "up" } else { "down" };
        lab.ip(e.host, &["link", "set", "dev", &e.ifname, state]);
    }

    /// kill -9 of end `i`'s wireguard-go: its interface and addresses go.
    fn kill(&mut self, i: usize) {
        let mut p = self.ends[i].proc.take().expect("wireguard-go runs");
        p.crash();
    }

    /// The wireguard-go processes that run.
    fn procs(&self) -> Vec<&Proc> {
        self.ends.iter().filter_map(|e| e.proc.as_ref()).collect()
    }
}

impl Drop for Tunnel {
    fn drop(&mut self) {
        for e in &mut self.ends {
            if let Some(mut p) = e.proc.take() {
                p.crash();
            }
            let _ = fs::remove_file(socket_path(&e.ifname));
        }
    }
}

/// Starts the python3 backend `tag` in `remote`, listening on `ip:8080`.
fn backend(lab: &Lab, tag: &str, ip: &str) -> Proc {
    let script = lab.write("backend.py", BACKEND_PY);
    let down = lab.dir.join(format!("{tag}.down"));
    lab.spawn(
        "remote",
        &[
            "python3",
            &script.to_string_lossy(),
            tag,
            ip,
            "8080",
            &down.to_string_lossy(),
        ],
        &format!("{tag}.log"),
    )
}

/// The health page of server `server`, fetched from `host`.
fn health_page(lab: &Lab, host: &str, server: &str) -> Option<String> {
    lab.curl(host, &["-g", &format!("http://{server}/health")])
}

/// What the client got from edge.
#[derive(Debug)]
struct Reply {
    /// 0 when curl got no answer (within 10 s).
    status: u16,
    body: String,
    took: Duration,
}

/// `edge admin -s SOCK show servers remote`: (server, health) per server.
fn health(sock: &Path) -> Vec<(String, String)> {
    let sock = sock.to_string_lossy();
    let (code, out) = edge_cmd(&["admin", "-s", &sock, "show", "servers", "remote"]);
    assert_eq!(code, 0, "edge admin show servers: {out}");
    out.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            (cols.len() > 3).then(|| (cols[1].to_owned(), cols[3].to_owned()))
        })
        .collect()
}

/// The lab with the tunnel, the backends and edge running.
struct Site {
    edge: Edge,
    /// edge's admin socket.
    sock: PathBuf,
    backends: [Proc; 2],
    tunnel: Tunnel,
    lab: Lab,
}

impl Site {
    fn start() -> Site {
        let mut lab = Lab::new("wg");
        for (name, n) in HOSTS {
            lab.host(name, n);
        }
        let tunnel = Tunnel::new(&lab);
        let backends = [
            backend(&lab, "v4", TUN_REMOTE[0]),
            backend(&lab, "v6", TUN_REMOTE[1]),
        ];
        // The backends answer through the tunnel (after its first
        // handshake), and only there: nothing listens on the remote
        // host's own address.
        for server in SERVERS {
            let through = wait_until(Duration::from_secs(15), || {
                health_page(&lab, "edge", server).is_some()
            });
            assert!(
                through,
                "{server} does not answer through the tunnel:\n{}",
                log_tails(&tunnel.procs())
            );
        }
        let direct = format!("{}:8080", lab.addr("remote"));
        assert!(health_page(&lab, "edge", &direct).is_none());

        let sock = lab.dir.join("admin.sock");
        let servers: String = SERVERS
            .iter()
            .map(|s| format!("[[pool.server]]\naddress = \"{s}\"\n"))
            .collect();
        let config = fixture("wireguard_lab.toml")
            .set("listen", lab.addr("edge"))
            .path("admin_socket", &sock)
            .set("connect_timeout", format!("{}s", CONNECT_TIMEOUT.as_secs()))
            .set("servers", servers)
            .set("interval", format!("{}ms", INTERVAL.as_millis()))
            .set("timeout", format!("{}ms", TIMEOUT.as_millis()))
            .set("rise", RISE)
            .set("fall", FALL)
            .render();
        let path = lab.write("edge.toml", config);
        let edge = lab.edge("edge", EDGE, path).start();
        Site {
            edge,
            sock,
            backends,
            tunnel,
            lab,
        }
    }

    /// The processes' logs, for a failed assertion.
    fn logs(&self) -> String {
        let mut procs: Vec<&Proc> = vec![&self.edge];
        procs.extend(self.tunnel.procs());
        procs.extend(&self.backends);
        log_tails(&procs)
    }

    /// Whether the admin socket reports every server of the pool `state`.
    fn all_servers(&self, state: &str) -> bool {
        let h = health(&self.sock);
        h.len() == SERVERS.len() && h.iter().all(|(_, s)| s == state)
    }

    /// Waits until the admin socket reports every server `state`; how long
    /// since `since`.
    fn wait_servers(&self, state: &str, since: Instant, limit: Duration, why: &str) -> Duration {
        let ok = wait_until(limit, || self.all_servers(state));
        let took = since.elapsed();
        assert!(
            ok,
            "{why}: the servers were not all {state} within {limit:?}: {:?}\n{}",
            health(&self.sock),
            self.logs()
        );
        took
    }

    /// `GET https://app.test/` from the client to edge.
    fn get(&self) -> Reply {
        let resolve = format!("app.test:443:{}", self.lab.addr("edge"));
        let t0 = Instant::now();
        let out = self.lab.exec(
            "client",
            &[
                "curl",
                "-sk",
                "--max-time",
                "10",
                "--resolve",
                &resolve,
                "-w",
                "\n%{http_code}",
                "https://app.test/",
            ],
        );
        let took = t0.elapsed();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
        Reply {
            status: code.trim().parse().unwrap_or(0),
            body: body.to_owned(),
            took,
        }
    }

    /// Requests through edge and the tunnel: every one is 200, both
    /// servers answer, and they see edge's tunnel address as the client
    /// (the requests came through the tunnel).
    fn requests_succeed(&self, why: &str) {
        let replies: Vec<Reply> = (0..6).map(|_| self.get()).collect();
        for r in &replies {
            assert_eq!(r.status, 200, "{why}: {r:?}\n{}", self.logs());
        }
        for want in [
            format!("v4 via {}", TUN_EDGE[0]),
            format!("v6 via {}", TUN_EDGE[1]),
        ] {
            assert!(
                replies.iter().any(|r| r.body.trim() == want),
                "{why}: no answer {want:?} in {replies:?}"
            );
        }
    }

    /// With every server out, edge answers 503 at once: well within one
    /// connect timeout, which a connect into the dead tunnel would wait.
    fn answers_503_at_once(&self, why: &str) -> Duration {
        let r = self.get();
        assert_eq!(r.status, 503, "{why}: {r:?}\n{}", self.logs());
        assert!(r.took < CONNECT_TIMEOUT / 2, "{why}: 503 after {r:?}");
        r.took
    }
}

#[test]
fn servers_through_a_wireguard_tunnel_leave_while_it_is_down_and_return_with_it() {
    edge_testkit::needs_root!(
        "servers_through_a_wireguard_tunnel_leave_while_it_is_down_and_return_with_it"
    );
    let test_t0 = Instant::now();
    let mut s = Site::start();
    s.wait_servers("up", Instant::now(), Duration::from_secs(10), "at start");
    s.requests_succeed("tunnel up");

    // 1. The remote end's link goes down, then up again.
    let t0 = Instant::now();
    s.tunnel.set_link(&s.lab, 1, false);
    let out = s.wait_servers("down", t0, out_bound(), "link down");
    let fast = s.answers_503_at_once("link down");
    let t0 = Instant::now();
    s.tunnel.set_link(&s.lab, 1, true);
    let back = s.wait_servers("up", t0, back_bound(), "link up");
    s.requests_succeed("link up again");
    eprintln!(
        "remote link down: servers out after {out:?} (bound {:?}), then 503 in {fast:?}; \
         link up: servers back after {back:?} (bound {:?})",
        out_bound(),
        back_bound()
    );

    // 2. The remote end's wireguard-go is killed, then started again.
    let t0 = Instant::now();
    s.tunnel.kill(1);
    let out = s.wait_servers("down", t0, out_bound(), "wireguard-go killed");
    let fast = s.answers_503_at_once("wireguard-go killed");
    let t0 = Instant::now();
    s.tunnel.start(&s.lab, 1);
    let back = s.wait_servers("up", t0, back_bound(), "wireguard-go restarted");
    s.requests_succeed("wireguard-go restarted");
    eprintln!(
        "remote wireguard-go killed: servers out after {out:?}, then 503 in {fast:?}; \
         restarted: servers back after {back:?}"
    );
    eprintln!("test ran {:?}", test_t0.elapsed());
}
