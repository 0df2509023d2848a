//! The HA lab (root, network namespaces this test creates): a client, two
//! edge nodes running the real `edge` binary with `[[vrrp]]`, python3
//! backends, and for certificates Pebble with pebble-challtestsrv, all on
//! one bridge in 198.18.0.0/24. Each scenario is what an operator of a pair
//! would check before trusting it: a crashed master, a master whose
//! backends fail (with and without preemption), and the pair obtaining an
//! ACME certificate while the VIP moves between the nodes mid-order.
//! Every wait and load loop is bounded in time and count.

#[path = "common/lab.rs"]
mod lab;

use std::time::{Duration, Instant};

use lab::{Lab, Load, LoadSpec, Proc, Req, is_root, now_secs, wait_until};

const VIP: &str = "198.18.0.100";
const VIP6: &str = "2001:2::100";
const NODE: [&str; 2] = ["198.18.0.2", "198.18.0.3"];
const CLIENT: &str = "198.18.0.10";
/// VRRP advert interval of every pair here.
const ADVERT: Duration = Duration::from_millis(100);
/// Slack over the protocol's times for a loaded 2-core machine.
const MARGIN: Duration = Duration::from_secs(2);

/// RFC 5798 Master_Down_Interval of a backup with `priority`.
fn master_down_interval(priority: u8) -> Duration {
    ADVERT * 3 + ADVERT * (256 - u32::from(priority)) / 256
}

/// Skip (with a message) unless root.
macro_rules! need_root {
    ($name:expr) => {
        if !is_root() {
            eprintln!("{}: skipped, the network lab needs root", $name);
            return;
        }
    };
}

/// node0 .2, node1 .3, client .10, backends .20 + i.
fn pair_lab(tag: &str, backends: u8) -> Lab {
    let mut lab = Lab::new(tag);
    lab.host("node0", 2);
    lab.host("node1", 3);
    lab.host("client", 10);
    for i in 0..backends {
        lab.host(&format!("b{i}"), 20 + i);
    }
    lab
}

fn backend_addr(i: usize) -> String {
    format!("198.18.0.{}:8080", 20 + i)
}

/// Starts the python3 backend `backend{i}` and waits until it answers.
fn backend(lab: &Lab, i: usize) -> Proc {
    let script = lab.write("backend.py", lab::BACKEND_PY);
    let down = lab.dir.join(format!("backend{i}.down"));
    let ip = format!("198.18.0.{}", 20 + i);
    let p = lab.spawn(
        &format!("b{i}"),
        &[
            "python3",
            &script.to_string_lossy(),
            &format!("backend{i}"),
            &ip,
            "8080",
            &down.to_string_lossy(),
        ],
        &format!("backend{i}.log"),
    );
    let url = format!("http://{ip}:8080/health");
    assert!(
        wait_until(Duration::from_secs(10), || lab
            .curl("client", &[&url])
            .is_some()),
        "backend{i} did not start:\n{}",
        p.log_text()
    );
    p
}

/// Makes backend `i`'s health endpoint fail (or pass again).
fn set_down(lab: &Lab, i: usize, down: bool) {
    let f = lab.dir.join(format!("backend{i}.down"));
    if down {
        std::fs::write(f, "down").unwrap();
    } else {
        std::fs::remove_file(f).unwrap();
    }
}

/// One node's settings.
struct Node<'a> {
    priority: u8,
    /// The VIP (and listeners) are IPv6 (2001:2::100) instead of IPv4.
    v6: bool,
    nopreempt: bool,
    /// Servers of its pool `app`; none = the route answers `node{i}` itself.
    servers: &'a [String],
    /// `[[route]]`s tried before the catch-all one.
    routes: &'a str,
    extra: &'a str,
}

fn edge_config(i: usize, n: &Node<'_>) -> String {
    let (route, pool) = if n.servers.is_empty() {
        (
            format!(r#"respond = {{ status = 200, body = "node{i}" }}"#),
            String::new(),
        )
    } else {
        let servers: String = n
            .servers
            .iter()
            .map(|s| format!("[[pool.server]]\naddress = \"{s}\"\n"))
            .collect();
        (
            r#"pool = "app""#.to_owned(),
            format!(
                r#"
[[pool]]
name = "app"
{servers}
[pool.health]
kind = "http"
path = "/health"
interval = "100ms"
timeout = "300ms"
rise = 1
fall = 1
"#
            ),
        )
    };
    format!(
        r#"
[https]
listen = ["{listen}:443"]
default_certificate = "fallback"

[http]
listen = ["{listen}:80"]

[[certificate]]
name = "fallback"
names = ["vip.test"]
self_signed = true

{routes}
[[route]]
{route}
{pool}
[[vrrp]]
interface = "eth0"
vrid = 51
priority = {priority}
advert_interval = "{advert}ms"
vips = ["{vip}"]
nopreempt = {nopreempt}
{extra}
"#,
        priority = n.priority,
        listen = if n.v6 {
            format!("[{VIP6}]")
        } else {
            VIP.to_owned()
        },
        vip = if n.v6 {
            format!("{VIP6}/64")
        } else {
            format!("{VIP}/24")
        },
        advert = ADVERT.as_millis(),
        nopreempt = n.nopreempt,
        routes = n.routes,
        extra = n.extra,
    )
}

/// Starts `edge run` in node `i` with `config`.
fn start_edge(lab: &Lab, i: usize, tag: &str, config: &str) -> Proc {
    let path = lab.write(&format!("edge{i}-{tag}.toml"), config);
    lab.spawn(
        &format!("node{i}"),
        &[
            env!("CARGO_BIN_EXE_edge"),
            "run",
            "-c",
            &path.to_string_lossy(),
        ],
        &format!("edge{i}-{tag}.log"),
    )
}

/// The body the client gets from https://vip.test/ (not verified).
fn fetch(lab: &Lab) -> Option<String> {
    fetch_at(lab, VIP)
}

/// The body the client gets from https://vip.test/ at `vip`.
fn fetch_at(lab: &Lab, vip: &str) -> Option<String> {
    let resolve = if vip.contains(':') {
        format!("vip.test:443:[{vip}]")
    } else {
        format!("vip.test:443:{vip}")
    };
    lab.curl(
        "client",
        &["-k", "--resolve", &resolve, "https://vip.test/"],
    )
}

/// The last 60 lines of each log, without the access records.
fn logs(edges: &[&Proc]) -> String {
    edges
        .iter()
        .map(|e| {
            let text = e.log_text();
            let lines: Vec<&str> = text
                .lines()
                .filter(|l| !l.contains("edge::access"))
                .collect();
            let tail = lines[lines.len().saturating_sub(60)..].join("\n");
            format!("== {}\n{tail}", e.log.display())
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Waits until the client's answer contains `want`; how long since `since`.
fn wait_body(lab: &Lab, want: &str, since: Instant, limit: Duration, edges: &[&Proc]) -> Duration {
    wait_body_at(lab, VIP, want, since, limit, edges)
}

/// [`wait_body`] at `vip`.
fn wait_body_at(
    lab: &Lab,
    vip: &str,
    want: &str,
    since: Instant,
    limit: Duration,
    edges: &[&Proc],
) -> Duration {
    let mut last = None;
    let ok = wait_until(limit, || {
        last = fetch_at(lab, vip);
        last.as_deref().is_some_and(|b| b.contains(want))
    });
    assert!(
        ok,
        "the client did not get {want:?} from {vip} within {limit:?} (last answer {last:?});\n{}",
        logs(edges)
    );
    since.elapsed()
}

fn load_spec(duration: Duration) -> LoadSpec {
    LoadSpec {
        ip: VIP.into(),
        port: 443,
        host: "vip.test".into(),
        path: "/".into(),
        duration,
        max: 5000,
        workers: 4,
        probe: true,
        probe_pause: Duration::from_millis(10),
        connect_timeout: Duration::from_secs(1),
        timeout: Duration::from_secs(5),
        retry_after: Duration::from_secs(1),
        cafile: None,
    }
}

/// What the load client saw around an event at `at` (epoch seconds).
struct Outcome {
    /// Requests made (probe and retry-once clients).
    total: usize,
    /// Probe requests (no retry, one every 10 ms) that failed.
    probe_failed: usize,
    /// First attempts of the retry-once clients that failed.
    failed: usize,
    /// Retry-once requests that failed twice.
    lost: usize,
    /// From `at` to the end of the first probe request that started after
    /// `at` and succeeded.
    gap: Option<Duration>,
    /// Failed attempts by error kind.
    errors: std::collections::BTreeMap<String, usize>,
}

fn outcome(reqs: &[Req], at: f64) -> Outcome {
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

/// A pair whose nodes both proxy to backends 0 and 1, node0 (150) master
/// and serving through `vip` when this returns: (backends, node0, node1).
fn shared_pair(lab: &Lab, v6: bool) -> ([Proc; 2], Proc, Proc) {
    let backends = [backend(lab, 0), backend(lab, 1)];
    let servers = [backend_addr(0), backend_addr(1)];
    let node = |priority| Node {
        priority,
        v6,
        nopreempt: false,
        servers: &servers,
        routes: "",
        extra: "",
    };
    let backup = start_edge(lab, 1, "a", &edge_config(1, &node(100)));
    let master = start_edge(lab, 0, "a", &edge_config(0, &node(150)));
    let via0 = format!("via {}", NODE[0]);
    let vip = if v6 { VIP6 } else { VIP };
    let since = Instant::now();
    wait_body_at(
        lab,
        vip,
        &via0,
        since,
        Duration::from_secs(15),
        &[&master, &backup],
    );
    (backends, master, backup)
}

/// kill -9 of the master while clients make requests through the VIP
/// (IPv4 or IPv6); every request is a new connection.
fn kill_9_under_load(v6: bool) {
    let lab = pair_lab(if v6 { "hk6" } else { "hak" }, 2);
    let (vip, family) = if v6 { (VIP6, "IPv6") } else { (VIP, "IPv4") };
    let (_backends, mut master, backup) = shared_pair(&lab, v6);

    let mut spec = load_spec(Duration::from_secs(6));
    spec.ip = vip.into();
    let load = Load::start(&lab, "client", spec);
    assert!(
        load.wait_served(20, Duration::from_secs(10)),
        "no steady load before the crash: {:?}",
        load.so_far().last()
    );
    let killed = now_secs();
    master.crash();
    let moved = wait_until(master_down_interval(100) + MARGIN, || {
        lab.holds("node1", vip)
    });
    let reqs = load.finish();
    let o = outcome(&reqs, killed);
    eprintln!(
        "{}: kill -9 of the master: failover gap {:?} (Master_Down_Interval {:?}); {} requests, \
         {} probe requests failed, {} first attempts of the retry-once clients failed, \
         {} lost after one retry; errors {:?}",
        family,
        o.gap,
        master_down_interval(100),
        o.total,
        o.probe_failed,
        o.failed,
        o.lost,
        o.errors
    );
    assert!(moved, "node1 did not take the VIP:\n{}", logs(&[&backup]));
    let via1 = format!("via {}", NODE[1]);
    assert!(
        reqs.iter()
            .any(|r| r.t0 > killed && r.ok && r.body.contains(&via1)),
        "no request after the crash was served by node1"
    );
    let gap = o.gap.expect("no probe request succeeded after the crash");
    assert!(
        gap <= master_down_interval(100) + MARGIN,
        "failover took {gap:?}"
    );
    assert_eq!(o.lost, 0, "the retry-once clients lost requests");
}

#[test]
fn kill_9_of_the_master_under_load_moves_the_vip_and_a_retrying_client_loses_nothing() {
    need_root!("kill_9_of_the_master_under_load");
    kill_9_under_load(false);
}

#[test]
fn kill_9_of_the_master_under_ipv6_load_moves_the_vip_and_a_retrying_client_loses_nothing() {
    need_root!("kill_9_of_the_master_under_ipv6_load");
    kill_9_under_load(true);
}

/// The master's only backend fails its health check: the master drops its
/// priority and node1 takes over; the backend recovers: node0 takes the VIP
/// back, or (nopreempt on both nodes, as one Ansible template gives) not.
fn unhealthy_backends_hand_the_vip_over(nopreempt: bool) {
    let lab = pair_lab(if nopreempt { "han" } else { "hap" }, 2);
    let _b0 = backend(&lab, 0);
    let _b1 = backend(&lab, 1);
    let (s0, s1) = ([backend_addr(0)], [backend_addr(1)]);
    let node = |priority, servers| Node {
        priority,
        v6: false,
        nopreempt,
        servers,
        routes: "",
        extra: "",
    };
    // node0 first: with nopreempt whoever is master keeps the VIP.
    let master = start_edge(&lab, 0, "a", &edge_config(0, &node(150, &s0)));
    wait_body(
        &lab,
        "backend0",
        Instant::now(),
        Duration::from_secs(15),
        &[&master],
    );
    let backup = start_edge(&lab, 1, "a", &edge_config(1, &node(100, &s1)));
    let edges = [&master, &backup];
    assert!(
        backup.wait_log("VRRP state change", Duration::from_secs(10)),
        "node1 did not start:\n{}",
        logs(&edges)
    );
    assert!(lab.holds("node0", VIP) && !lab.holds("node1", VIP));

    let t0 = Instant::now();
    set_down(&lab, 0, true);
    // fall 1 at 100 ms interval, then one advert or a master-down interval.
    let limit = master_down_interval(100) + MARGIN;
    let took = wait_body(&lab, "backend1", t0, limit, &edges);
    eprintln!("nopreempt={nopreempt}: takeover after the master's backend failed: {took:?}");
    assert!(
        lab.holds("node1", VIP) && !lab.holds("node0", VIP),
        "node1 must hold the VIP alone"
    );
    const CHANGED: &str = "tracked pool health changed the VRRP priority";
    assert!(master.log_text().contains(CHANGED), "{}", logs(&edges));

    let t0 = Instant::now();
    set_down(&lab, 0, false);
    if nopreempt {
        // node0 is healthy again (its priority is restored) ...
        assert!(
            wait_until(limit, || master.log_text().matches(CHANGED).count() >= 2),
            "node0 did not see its backend recover:\n{}",
            logs(&edges)
        );
        // ... and for many advert intervals it leaves the VIP where it is.
        let watch = ADVERT * 15;
        let stayed = !wait_until(watch, || {
            lab.holds("node0", VIP) || fetch(&lab).is_some_and(|b| b.contains("backend0"))
        });
        assert!(
            stayed,
            "node0 took the VIP back despite nopreempt:\n{}",
            logs(&edges)
        );
        assert!(lab.holds("node1", VIP));
        eprintln!("nopreempt: node1 kept the VIP for {watch:?} after node0 recovered");
    } else {
        let took = wait_body(&lab, "backend0", t0, limit, &edges);
        eprintln!("preempt: node0 took the VIP back {took:?} after its backend recovered");
        assert!(lab.holds("node0", VIP) && !lab.holds("node1", VIP));
    }
}

#[test]
fn unhealthy_master_hands_over_and_preempts_back() {
    need_root!("unhealthy_master_hands_over_and_preempts_back");
    unhealthy_backends_hand_the_vip_over(false);
}

#[test]
fn unhealthy_master_hands_over_and_stays_backup_with_nopreempt() {
    need_root!("unhealthy_master_hands_over_and_stays_backup_with_nopreempt");
    unhealthy_backends_hand_the_vip_over(true);
}

/// Pebble's address in the lab, and the ports it uses there.
const CA: &str = "198.18.0.30";

/// Pebble + pebble-challtestsrv in host `ca`; `vip.test` resolves to the
/// VIP. Returns the processes, Pebble's HTTPS CA file and its issuing root.
fn start_pebble(lab: &Lab) -> (Vec<Proc>, std::path::PathBuf, std::path::PathBuf) {
    assert!(
        std::path::Path::new("/usr/bin/pebble").exists()
            && std::path::Path::new("/usr/bin/pebble-challtestsrv").exists(),
        "Pebble is not installed: apt-get install pebble (Debian package)"
    );
    // Pebble's own HTTPS certificate, from a throwaway CA.
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "HA lab CA of Pebble's HTTPS");
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .subject_alt_names
        .push(rcgen::SanType::IpAddress(CA.parse().unwrap()));
    let cert = params.signed_by(&key, &issuer).unwrap();
    let cert_path = lab.write("pebble-cert.pem", cert.pem());
    let key_path = lab.write("pebble-key.pem", key.serialize_pem());
    let tls_ca = lab.write("pebble-tls-ca.pem", ca_cert.pem());
    let config = lab.write(
        "pebble.json",
        format!(
            r#"{{"pebble": {{"listenAddress": "{CA}:14000", "managementListenAddress": "{CA}:15000",
"certificate": "{}", "privateKey": "{}", "httpPort": 80, "tlsPort": 5001,
"ocspResponderURL": "", "externalAccountBindingRequired": false}}}}"#,
            cert_path.display(),
            key_path.display()
        ),
    );
    let chall = lab.spawn(
        "ca",
        &[
            "pebble-challtestsrv",
            "-defaultIPv4",
            VIP,
            "-defaultIPv6",
            "",
            "-dns01",
            &format!("{CA}:8053"),
            "-http01",
            "",
            "-https01",
            "",
            "-tlsalpn01",
            "",
            "-management",
            &format!("{CA}:8055"),
        ],
        "challtestsrv.log",
    );
    let pebble = lab.spawn_env(
        "ca",
        &[
            "pebble",
            "-config",
            &config.to_string_lossy(),
            "-dnsserver",
            &format!("{CA}:8053"),
        ],
        &[
            ("PEBBLE_VA_NOSLEEP", "1"),
            ("PEBBLE_WFE_NONCEREJECT", "0"),
            // A validated authorization is reused by the next order.
            ("PEBBLE_AUTHZREUSE", "100"),
        ],
        "pebble.log",
    );
    let url = format!("https://{CA}:15000/roots/0");
    let mut root = None;
    let up = wait_until(Duration::from_secs(30), || {
        root = lab.curl("ca", &["-f", "--cacert", &tls_ca.to_string_lossy(), &url]);
        root.as_deref()
            .is_some_and(|r| r.contains("BEGIN CERTIFICATE"))
    });
    assert!(
        up,
        "Pebble did not start:\n{}\n{}",
        pebble.log_text(),
        chall.log_text()
    );
    let root = lab.write("pebble-root.pem", root.unwrap_or_default());
    (vec![chall, pebble], tls_ca, root)
}

#[test]
fn the_pair_obtains_a_certificate_while_the_vip_moves_mid_order() {
    need_root!("the_pair_obtains_a_certificate_while_the_vip_moves_mid_order");
    let mut lab = pair_lab("haa", 0);
    lab.host("ca", 30);
    let (_pebble, tls_ca, root) = start_pebble(&lab);
    let storage = lab.dir.join("acme");
    let acme = format!(
        r#"
[acme]
storage = "{}"
directory_url = "https://{CA}:14000/dir"
contact = ["mailto:ops@vip.test"]
ca_roots = ["{}"]
certificates = [["vip.test"]]
"#,
        storage.display(),
        tls_ca.display()
    );
    let node = |priority| Node {
        priority,
        v6: false,
        nopreempt: false,
        servers: &[],
        routes: "",
        extra: &acme,
    };
    // Hold Pebble's HTTP-01 validation back until the VIP has moved: its
    // packets to the VIP go to the client host, which does not forward
    // them (TCP retries the SYN once the route is gone).
    let sink = lab.exec(
        "client",
        &["sysctl", "-qw", "net.ipv4.conf.all.forwarding=0"],
    );
    assert!(sink.status.success(), "{sink:?}");
    lab.ip("ca", &["route", "add", &format!("{VIP}/32"), "via", CLIENT]);

    // node0 starts first, so it places the order, and becomes master.
    let t_start = Instant::now();
    let mut master = start_edge(&lab, 0, "a", &edge_config(0, &node(150)));
    // The pending challenge's token, as node0 stored it (temporary files
    // of the storage's atomic writes start with a dot).
    let challenges = storage.join("challenges");
    let pending = || {
        std::fs::read_dir(&challenges)
            .ok()?
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .find(|n| !n.starts_with('.'))
    };
    let mut token = None;
    assert!(
        master.wait_log("ACME order created", Duration::from_secs(30))
            && wait_until(Duration::from_secs(10), || {
                token = pending();
                token.is_some()
            }),
        "node0 placed no order:\n{}",
        master.log_text()
    );
    let token = token.unwrap_or_default();
    assert!(
        wait_until(Duration::from_secs(10), || lab.holds("node0", VIP)),
        "node0 did not become master:\n{}",
        master.log_text()
    );
    let backup = start_edge(&lab, 1, "a", &edge_config(1, &node(100)));
    assert!(
        backup.wait_log("VRRP state change", Duration::from_secs(10)),
        "node1 did not start:\n{}",
        backup.log_text()
    );

    // The order is pending on node0 (its challenge not yet validated):
    // stop node0; the VIP moves to node1.
    let t_move = Instant::now();
    assert!(
        master.terminate(),
        "node0 did not stop cleanly:\n{}",
        master.log_text()
    );
    assert!(
        wait_until(master_down_interval(100) + MARGIN, || lab
            .holds("node1", VIP)),
        "node1 did not take the VIP:\n{}",
        backup.log_text()
    );
    lab.ip("ca", &["route", "del", &format!("{VIP}/32")]);

    // node0's graceful stop gave its order up and released the storage
    // lock, so node1 takes the order over at once (not after the lock's
    // 30 s expiry, as after a crash) and the client gets the certificate
    // through the VIP, verified against Pebble's root.
    let mut last = None;
    let (root, resolve) = (root.to_string_lossy(), format!("vip.test:443:{VIP}"));
    let verified = [
        "--cacert",
        &root,
        "--resolve",
        &resolve,
        "https://vip.test/",
    ];
    let served = wait_until(Duration::from_secs(60), || {
        last = lab.curl("client", &verified);
        last.as_deref() == Some("node1")
    });
    assert!(
        served,
        "no certificate via the VIP (last answer {last:?}):\n{}\n{}",
        logs(&[&master, &backup]),
        std::fs::read_to_string(lab.dir.join("pebble.log")).unwrap_or_default()
    );
    let took = t_move.elapsed();
    eprintln!(
        "certificate served via the VIP {took:?} after the VIP moved mid-order ({:?} after node0 started)",
        t_start.elapsed()
    );
    assert!(
        backup.log_text().contains("certificate obtained"),
        "node1 did not obtain it:\n{}",
        backup.log_text()
    );
    // A lock left behind would expire 20-30 s after node0 stopped (30 s
    // TTL, refreshed every 10 s).
    assert!(
        took < Duration::from_secs(15),
        "node1 needed {took:?} to take the order over: it waited for node0's lock"
    );
    assert!(
        master
            .log_text()
            .contains("order given up at stop; storage lock released"),
        "node0 did not release its order's lock at stop:\n{}",
        master.log_text()
    );
    assert!(!master.log_text().contains("certificate obtained"));
    // node0 comes back, loads the certificate from the storage and
    // preempts: the client is served by it with the same certificate.
    let node0 = start_edge(&lab, 0, "b", &edge_config(0, &node(150)));
    let back = wait_until(Duration::from_secs(15), || {
        last = lab.curl("client", &verified);
        last.as_deref() == Some("node0")
    });
    assert!(
        back,
        "node0 did not serve the certificate after its restart (last answer {last:?}):\n{}",
        logs(&[&node0])
    );
    assert!(node0.log_text().contains("certificate loaded from storage"));
    assert!(!node0.log_text().contains("ordering certificate"));
    // Pebble validated node0's pending challenge through the VIP, which
    // node1 held by then: node1 answered node0's token from the storage.
    assert!(
        backup
            .log_text()
            .lines()
            .any(|l| l.contains("answered ACME challenge from storage") && l.contains(&token)),
        "node1 did not answer node0's challenge {token}:\n{}",
        logs(&[&backup])
    );
}

/// RFC 5798 Skew_Time of a backup with `priority`: how long it waits after
/// a priority-0 advertisement before it takes over.
fn skew_time(priority: u8) -> Duration {
    ADVERT * (256 - u32::from(priority)) / 256
}

#[test]
fn sigterm_of_the_master_finishes_requests_in_flight_then_hands_over() {
    need_root!("sigterm_of_the_master_finishes_requests_in_flight_then_hands_over");
    let lab = pair_lab("hat", 2);
    let (_backends, mut master, backup) = shared_pair(&lab, false);

    // Every request takes 1.5 s at the backend, so about `workers` are in
    // flight at any time. New connections get 3 s to connect: a SYN that
    // reaches node0 after it gave the VIP away is resent after 1 s.
    let mut spec = load_spec(Duration::from_secs(5));
    spec.path = "/slow/1500".into();
    spec.workers = 6;
    spec.probe = false;
    spec.connect_timeout = Duration::from_secs(3);
    let load = Load::start(&lab, "client", spec);
    assert!(
        load.wait_served(6, Duration::from_secs(10)),
        "no steady load before the stop: {:?}",
        load.so_far().last()
    );
    // The workers started together: half a backend time later every one
    // has a request waiting for its response.
    std::thread::sleep(Duration::from_millis(700));
    let at = now_secs();
    let t0 = Instant::now();
    master.signal("-TERM");
    // node0 keeps the VIP until the requests in flight at the signal are
    // answered (`drain_before_handover`, default 5 s): at most one backend
    // time, then the handover within Skew_Time.
    let handed = wait_until(
        Duration::from_millis(1500) + skew_time(100) + MARGIN,
        || lab.holds("node1", VIP),
    );
    let handover = t0.elapsed();
    let exited = master.wait_exit(Duration::from_secs(15));
    let stopped_in = t0.elapsed();
    let reqs = load.finish();
    let in_flight: Vec<&Req> = reqs.iter().filter(|r| r.t0 < at && r.t1 > at).collect();
    let broken: Vec<String> = in_flight
        .iter()
        .filter(|r| !r.ok)
        .map(|r| format!("{:+.3}s {}", r.t0 - at, r.err))
        .collect();
    let o = outcome(&reqs, at);
    eprintln!(
        "SIGTERM of the master: node1 held the VIP after {handover:?} (Skew_Time {:?}); \
         node0 exited after {stopped_in:?}; {} requests in flight at the signal, {} failed {broken:?}; \
         {} requests, {} first attempts failed, {} lost after one retry; errors {:?}",
        skew_time(100),
        in_flight.len(),
        broken.len(),
        o.total,
        o.failed,
        o.lost,
        o.errors
    );
    assert!(
        handed,
        "node1 did not take the VIP:\n{}",
        logs(&[&master, &backup])
    );
    assert_eq!(
        exited,
        Some(true),
        "node0 did not exit cleanly after draining:\n{}",
        logs(&[&master])
    );
    assert!(
        !in_flight.is_empty(),
        "no request was in flight at the signal"
    );
    assert!(
        broken.is_empty(),
        "requests in flight at SIGTERM failed (after the handover the client's packets of \
         node0's connections reach node1, whose kernel resets them): {broken:?}\n{}",
        logs(&[&master])
    );
    assert_eq!(o.lost, 0, "requests were lost across the stop");
}

#[test]
fn sighup_reloads_under_load_fail_no_request() {
    need_root!("sighup_reloads_under_load_fail_no_request");
    let lab = pair_lab("har", 2);
    let _b0 = backend(&lab, 0);
    let _b1 = backend(&lab, 1);
    let (both, one) = ([backend_addr(0), backend_addr(1)], [backend_addr(1)]);
    // Version k: a route answering `vK` on /version, the pool alternating
    // between both servers and one, and node0's VRRP priority changing.
    let config = |k: u8| {
        let routes = format!(
            "[[route]]\npath_prefix = \"/version\"\nrespond = {{ status = 200, body = \"v{k}\" }}\n"
        );
        edge_config(
            0,
            &Node {
                priority: 150 + k,
                v6: false,
                nopreempt: false,
                servers: if k.is_multiple_of(2) { &both } else { &one },
                routes: &routes,
                extra: "",
            },
        )
    };
    let backup = start_edge(
        &lab,
        1,
        "a",
        &edge_config(
            1,
            &Node {
                priority: 100,
                v6: false,
                nopreempt: false,
                servers: &both,
                routes: "",
                extra: "",
            },
        ),
    );
    let mut master = start_edge(&lab, 0, "a", &config(0));
    let path = lab.dir.join("edge0-a.toml");
    let version = || {
        lab.curl(
            "client",
            &[
                "-k",
                "--resolve",
                &format!("vip.test:443:{VIP}"),
                "https://vip.test/version",
            ],
        )
    };
    assert!(
        wait_until(Duration::from_secs(15), || version().as_deref()
            == Some("v0")),
        "node0 does not serve:\n{}",
        logs(&[&master, &backup])
    );

    let load = Load::start(&lab, "client", load_spec(Duration::from_secs(8)));
    assert!(
        load.wait_served(20, Duration::from_secs(10)),
        "no steady load before the reloads: {:?}",
        load.so_far().last()
    );
    let at = now_secs();
    let mut took = Vec::new();
    for k in 1..=4u8 {
        std::fs::write(&path, config(k)).unwrap();
        let t0 = Instant::now();
        master.signal("-HUP");
        let want = format!("v{k}");
        assert!(
            wait_until(Duration::from_secs(5), || version().as_deref()
                == Some(want.as_str())),
            "reload {k} was not applied (answer {:?}):\n{}",
            version(),
            logs(&[&master])
        );
        took.push(t0.elapsed());
    }
    // A broken config is refused: the running one stays, nothing fails.
    std::fs::write(
        &path,
        config(5).replace("[[pool.server]]", "[[pool.servr]]"),
    )
    .unwrap();
    master.signal("-HUP");
    assert!(
        master.wait_log("reload refused", Duration::from_secs(5)),
        "the broken config was not refused:\n{}",
        logs(&[&master])
    );
    assert_eq!(version().as_deref(), Some("v4"));
    let reqs = load.finish();
    let o = outcome(&reqs, at);
    let during = reqs.iter().filter(|r| r.t1 > at).count();
    eprintln!(
        "4 SIGHUP reloads and a refused one under load, applied after {took:?}: {} requests \
         ({during} after the first reload), {} probe and {} other requests failed; errors {:?}",
        o.total, o.probe_failed, o.failed, o.errors
    );
    assert!(
        lab.holds("node0", VIP) && !lab.holds("node1", VIP),
        "the reloads moved the VIP"
    );
    assert_eq!(
        o.probe_failed + o.failed,
        0,
        "requests failed across reloads: {:?}\n{}",
        o.errors,
        logs(&[&master])
    );
    assert!(master.wait_exit(Duration::ZERO).is_none(), "node0 exited");
}
