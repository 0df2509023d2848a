//! TLS to backends (`[pool.tls]`) against the real peers from Debian: nginx
//! serving HTTPS (HTTP/1.1 and HTTP/2 by ALPN), nginx serving a certificate
//! of another CA, nginx serving HTTP/2 in clear text (h2c), and HAProxy
//! requiring a client certificate. Everything listens on 127.0.0.1 with
//! ephemeral ports; every process is stopped and every file removed on drop.

mod common;

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use common::*;

/// The peers' ports.
struct Ports {
    /// nginx, HTTPS (HTTP/1.1 and h2 by ALPN), a certificate of the backend
    /// CA for `backend.test` and `127.0.0.1`.
    ok: u16,
    /// nginx, HTTPS, a certificate of another CA.
    foreign: u16,
    /// nginx, HTTPS, an expired certificate of the backend CA.
    expired: u16,
    /// nginx, HTTP/2 in clear text (prior knowledge).
    h2c: u16,
    /// HAProxy, HTTPS, requires a client certificate of the client CA.
    mtls: u16,
}

/// nginx, HAProxy and edge in front of them, with their PKIs.
struct Setup {
    dir: TempDir,
    ports: Ports,
    https: u16,
    edge: Edge,
    front: Arc<rustls::ClientConfig>,
    _nginx: Proc,
    _haproxy: Proc,
}

/// The binary, or a failure that says which package to install.
fn tool(name: &str) -> String {
    for d in ["/usr/sbin", "/usr/bin", "/sbin", "/bin"] {
        let p = format!("{d}/{name}");
        if Path::new(&p).exists() {
            return p;
        }
    }
    panic!("{name} is not installed: apt-get install {name} (.ci/test installs it)");
}

fn nginx_conf(dir: &TempDir, p: &Ports, ok: &Leaf, foreign: &Leaf, expired: &Leaf) -> String {
    let d = dir.0.display();
    format!(
        r#"daemon off;
master_process off;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/nginx-error.log info;
events {{ worker_connections 128; }}
http {{
    default_type text/plain;
    log_format proto '$server_port $server_protocol "$ssl_server_name" $connection';
    access_log {d}/nginx-access.log proto;
    client_body_temp_path {d}/nginx-body;
    proxy_temp_path {d}/nginx-proxy;
    fastcgi_temp_path {d}/nginx-fastcgi;
    uwsgi_temp_path {d}/nginx-uwsgi;
    scgi_temp_path {d}/nginx-scgi;
    server {{
        listen 127.0.0.1:{ok_port} ssl http2;
        ssl_certificate {ok_cert};
        ssl_certificate_key {ok_key};
        location / {{ return 200 "nginx $server_protocol sni=$ssl_server_name host=$host conn=$connection\n"; }}
    }}
    server {{
        listen 127.0.0.1:{foreign_port} ssl;
        ssl_certificate {foreign_cert};
        ssl_certificate_key {foreign_key};
        location / {{ return 200 "foreign\n"; }}
    }}
    server {{
        listen 127.0.0.1:{expired_port} ssl;
        ssl_certificate {expired_cert};
        ssl_certificate_key {expired_key};
        location / {{ return 200 "expired\n"; }}
    }}
    server {{
        listen 127.0.0.1:{h2c_port} http2;
        location / {{ return 200 "nginx $server_protocol host=$host cleartext\n"; }}
    }}
}}
"#,
        ok_port = p.ok,
        ok_cert = ok.cert.display(),
        ok_key = ok.key.display(),
        foreign_port = p.foreign,
        foreign_cert = foreign.cert.display(),
        foreign_key = foreign.key.display(),
        h2c_port = p.h2c,
        expired_port = p.expired,
        expired_cert = expired.cert.display(),
        expired_key = expired.key.display(),
    )
}

fn haproxy_cfg(p: &Ports, pem: &Path, client_ca: &Path) -> String {
    format!(
        r#"global
    maxconn 256
defaults
    mode http
    timeout connect 5s
    timeout client 30s
    timeout server 30s
frontend mtls
    bind 127.0.0.1:{port} ssl crt {pem} ca-file {ca} verify required alpn http/1.1
    http-request return status 200 content-type text/plain lf-string "haproxy client-cert=%[ssl_c_used] verify=%[ssl_c_verify]\n"
"#,
        port = p.mtls,
        pem = pem.display(),
        ca = client_ca.display(),
    )
}

/// A pool named `name` for server `port` with `extra` keys and tables.
fn pool(name: &str, port: u16, keys: &str, tables: &str) -> String {
    format!(
        "[[route]]\npath_prefix = \"/{name}/\"\npool = \"{name}\"\n[[pool]]\nname = \"{name}\"\nretries = 0\n{keys}\n[[pool.server]]\naddress = \"127.0.0.1:{port}\"\n{tables}\n"
    )
}

/// A pool `name` over servers `a` and `b` with `[pool.health] kind = KIND`
/// every 200 ms (rise and fall 1) and the TLS table `tls`.
fn checked(name: &str, kind: &str, tls: &str, a: u16, b: u16) -> String {
    let health =
        format!("[pool.health]\nkind = \"{kind}\"\ninterval = \"200ms\"\nrise = 1\nfall = 1\n");
    pool(name, a, "", &(tls.to_string() + &health))
        + &format!("[[pool.server]]\naddress = \"127.0.0.1:{b}\"\n")
}

fn setup(test: &str) -> Setup {
    let nginx = tool("nginx");
    let haproxy = tool("haproxy");
    let dir = TempDir::new(test);
    let backend_ca = Pki::new(&dir, "backend");
    let other_ca = Pki::new(&dir, "other");
    let client_ca = Pki::new(&dir, "client");
    let front_ca = Pki::new(&dir, "front");
    let ok = backend_ca.leaf(&dir, "ok", &["backend.test", "127.0.0.1"]);
    let foreign = other_ca.leaf(&dir, "foreign", &["backend.test", "127.0.0.1"]);
    let expired = backend_ca.expired_leaf(&dir, "expired", &["backend.test", "127.0.0.1"]);
    let mtls = backend_ca.leaf(&dir, "mtls", &["backend.test", "127.0.0.1"]);
    let client = client_ca.leaf(&dir, "client", &["edge.client.test"]);
    let front = front_ca.leaf(&dir, "front", &["edge.test"]);
    let ports = Ports {
        ok: free_port(),
        foreign: free_port(),
        expired: free_port(),
        h2c: free_port(),
        mtls: free_port(),
    };

    let conf = dir.write(
        "nginx.conf",
        nginx_conf(&dir, &ports, &ok, &foreign, &expired),
    );
    let mut cmd = Command::new(nginx);
    cmd.arg("-p")
        .arg(&dir.0)
        .arg("-e")
        .arg(dir.path("nginx-startup.log"))
        .arg("-c")
        .arg(&conf);
    let nginx = Proc::spawn(cmd, "nginx", dir.path("nginx.log"));
    let pem =
        std::fs::read_to_string(&mtls.cert).unwrap() + &std::fs::read_to_string(&mtls.key).unwrap();
    let pem = dir.write("haproxy.pem", pem);
    let cfg = dir.write("haproxy.cfg", haproxy_cfg(&ports, &pem, &client_ca.ca_pem));
    let mut cmd = Command::new(haproxy);
    cmd.arg("-db").arg("-f").arg(&cfg);
    let haproxy = Proc::spawn(cmd, "haproxy", dir.path("haproxy.log"));
    for (what, port) in [
        ("nginx", ports.ok),
        ("nginx", ports.foreign),
        ("nginx", ports.expired),
        ("nginx", ports.h2c),
        ("haproxy", ports.mtls),
    ] {
        assert!(
            wait_port(port, Duration::from_secs(10)),
            "{what} is not listening on {port}:\n{}",
            log_tails(&[&nginx, &haproxy])
        );
    }

    let ca = backend_ca.ca_pem.display();
    let client_tls = format!(
        "client_cert = \"{}\"\nclient_key = \"{}\"",
        client.cert.display(),
        client.key.display()
    );
    let https = free_port();
    let mut config = format!(
        "[https]\nlisten = [\"127.0.0.1:{https}\"]\ndefault_certificate = \"front\"\n[http]\nlisten = []\n[admin]\nsocket = \"{sock}\"\n[[access_log]]\ntype = \"file\"\npath = \"access.log\"\n{cert}\n",
        sock = dir.path("admin.sock").display(),
        cert = certificate("front", &["edge.test"], &front),
    );
    let tls = |extra: &str| format!("[pool.tls]\nca_file = \"{ca}\"\n{extra}\n");
    for p in [
        pool("ok", ports.ok, "", &tls("sni = \"backend.test\"")),
        pool("byip", ports.ok, "", &tls("")),
        pool("wrongname", ports.ok, "", &tls("sni = \"wrong.test\"")),
        pool("foreign", ports.foreign, "", &tls("sni = \"backend.test\"")),
        pool("unverified", ports.foreign, "", &tls("verify = false")),
        pool("expired", ports.expired, "", &tls("sni = \"backend.test\"")),
        pool(
            "h2",
            ports.ok,
            "protocol = \"h2\"",
            &tls("sni = \"backend.test\""),
        ),
        pool(
            "auto",
            ports.ok,
            "protocol = \"auto\"",
            &tls("sni = \"backend.test\""),
        ),
        pool("h2c", ports.h2c, "protocol = \"h2c\"", ""),
        pool("mtls", ports.mtls, "", &tls(&client_tls)),
        pool("nocert", ports.mtls, "", &tls("")),
        checked(
            "https_checked",
            "https",
            &tls("sni = \"backend.test\""),
            ports.ok,
            ports.foreign,
        ),
        checked(
            "tls_checked",
            "tls",
            &tls("sni = \"backend.test\""),
            ports.ok,
            ports.foreign,
        ),
        checked(
            "mtls_checked",
            "https",
            &tls(&client_tls),
            ports.mtls,
            ports.foreign,
        ),
        checked("nocert_checked", "https", &tls(""), ports.ok, ports.mtls),
    ] {
        config.push_str(&p);
    }
    let path = dir.write("edge.toml", &config);
    let (code, out) = edge_check(&path);
    assert_eq!(code, 0, "edge check:\n{out}\n{config}");
    let edge = Edge::builder(EDGE, &path)
        .rust_log(Some("info,edge::access=debug,edge_bin::http=debug"))
        .start();
    Setup {
        https,
        front: front_ca.client_config(&[b"http/1.1"]),
        ports,
        edge,
        dir,
        _nginx: nginx,
        _haproxy: haproxy,
    }
}

impl Setup {
    /// GET `/POOL/` through edge.
    async fn get(&self, pool: &str) -> Resp {
        https_get(
            self.front.clone(),
            self.https,
            "edge.test",
            &format!("/{pool}/"),
        )
        .await
        .unwrap_or_else(|e| panic!("GET /{pool}/: {e}\n{}", self.logs()))
    }

    /// The access records (JSON) of requests to `/POOL/`, waiting for `n`.
    fn records(&self, pool: &str, n: usize) -> Vec<serde_json::Value> {
        let path = self.dir.path("access.log");
        let prefix = format!("/{pool}/");
        let mut got = Vec::new();
        let found = wait_until(Duration::from_secs(10), || {
            got = std::fs::read_to_string(&path)
                .unwrap_or_default()
                .lines()
                .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                .filter(|r| r["path"].as_str() == Some(prefix.as_str()))
                .collect();
            got.len() >= n
        });
        assert!(
            found,
            "{n} access records for {prefix}: {got:?}\n{}",
            self.logs()
        );
        got
    }

    fn logs(&self) -> String {
        let edge: &Proc = &self.edge;
        log_tails(&[edge, &self._nginx, &self._haproxy])
    }
}

/// edge → nginx over TLS, verified against the backend CA: by name (SNI
/// sent) and by IP address (no SNI; the certificate names 127.0.0.1), one
/// pooled connection for sequential requests; and `verify = false`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_over_tls_verified_against_a_ca_file() {
    let s = setup("backend-tls-ok");
    let mut conns = Vec::new();
    for _ in 0..3 {
        let r = s.get("ok").await;
        assert_eq!(r.status, 200, "{r:?}\n{}", s.logs());
        assert!(
            r.body
                .starts_with("nginx HTTP/1.1 sni=backend.test host=edge.test conn="),
            "{r:?}"
        );
        conns.push(r.body.rsplit('=').next().unwrap().trim().to_string());
    }
    // Connection reuse: the three requests came on one nginx connection.
    assert!(conns.iter().all(|c| *c == conns[0]), "{conns:?}");
    let r = s.get("byip").await;
    assert_eq!(r.status, 200, "{r:?}\n{}", s.logs());
    assert!(
        r.body
            .starts_with("nginx HTTP/1.1 sni= host=edge.test conn="),
        "{r:?}"
    );
    let rec = &s.records("ok", 3)[0];
    assert_eq!(rec["status"], 200);
    assert!(rec["error"].is_null(), "{rec}");
    // `verify = false`: another CA's certificate is accepted, and the start
    // said so.
    let r = s.get("unverified").await;
    assert_eq!((r.status, r.body.as_str()), (200, "foreign\n"), "{r:?}");
    assert!(
        s.edge.log_text().contains("verify = false"),
        "no warning at start:\n{}",
        s.logs()
    );
}

/// HAProxy with `verify required`: the pool with a client certificate gets
/// through (HAProxy saw and verified it); the same server without one is
/// a 502 whose record says the server refused the handshake.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn haproxy_requires_a_client_certificate() {
    let s = setup("backend-tls-mtls");
    let r = s.get("mtls").await;
    assert_eq!(r.status, 200, "{r:?}\n{}", s.logs());
    assert_eq!(r.body, "haproxy client-cert=1 verify=0\n");
    let r = s.get("nocert").await;
    assert_eq!(r.status, 502, "{r:?}\n{}", s.logs());
    let rec = &s.records("nocert", 1)[0];
    assert_eq!(rec["status"], 502);
    let err = rec["error"].as_str().unwrap_or_default();
    assert!(
        err.starts_with("backend TLS: alert from the server: "),
        "{rec}\n{}",
        s.logs()
    );
}

/// Certificates the pool must refuse: another CA's, one that does not
/// carry the name verified, an expired one. 502s whose access records and debug log
/// name why; nginx never sees a request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_certificate_is_a_502_that_names_why() {
    let s = setup("backend-tls-refused");
    for (pool, why) in [
        (
            "foreign",
            "backend TLS: certificate signed by an unknown CA",
        ),
        ("wrongname", "backend TLS: certificate name mismatch"),
        ("expired", "backend TLS: certificate expired"),
    ] {
        let r = s.get(pool).await;
        assert_eq!(r.status, 502, "{pool}: {r:?}\n{}", s.logs());
        let rec = &s.records(pool, 1)[0];
        assert_eq!(rec["error"].as_str(), Some(why), "{rec}");
        assert!(
            s.edge
                .wait_log(&format!("reason=\"{why}\""), Duration::from_secs(5)),
            "debug log names {why:?}:\n{}",
            s.logs()
        );
    }
    let nginx_log = std::fs::read_to_string(s.dir.path("nginx-access.log")).unwrap_or_default();
    assert!(
        !nginx_log.lines().any(|l| {
            [s.ports.foreign, s.ports.expired]
                .iter()
                .any(|p| l.starts_with(&p.to_string()))
                || l.contains("wrong.test")
        }),
        "a refused server got a request:\n{nginx_log}"
    );
}

/// `protocol = "h2"` over TLS, and `"auto"` (nginx chooses h2 in ALPN):
/// nginx saw HTTP/2, with the client's host as `:authority` (and no second
/// `Host`, which nginx refuses).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_over_tls_reaches_nginx_as_http2() {
    let s = setup("backend-tls-h2");
    for pool in ["h2", "auto"] {
        let r = s.get(pool).await;
        assert_eq!(r.status, 200, "{pool}: {r:?}\n{}", s.logs());
        assert!(
            r.body
                .starts_with("nginx HTTP/2.0 sni=backend.test host=edge.test conn="),
            "{pool}: {r:?}"
        );
    }
}

/// `protocol = "h2c"`: HTTP/2 in clear text (prior knowledge) to nginx's
/// `listen ... http2` without TLS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_reaches_a_cleartext_http2_backend() {
    let s = setup("backend-tls-h2c");
    let r = s.get("h2c").await;
    assert_eq!(r.status, 200, "{r:?}\n{}", s.logs());
    assert_eq!(r.body, "nginx HTTP/2.0 host=edge.test cleartext\n");
}

/// `[pool.health] kind = "https"` and `"tls"` with the pool's TLS
/// settings: a server whose certificate the pool accepts is up, one with
/// another CA's certificate is down with a TLS reason, and so is HAProxy
/// requiring a client certificate when the pool has none (up when it has);
/// traffic goes to the servers up only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_and_tls_health_checks_use_the_pool_tls_settings() {
    let s = setup("backend-tls-health");
    let sock = s.dir.path("admin.sock");
    let p = &s.ports;
    let row = |show: &str, port: u16| -> Vec<String> {
        let addr = format!("127.0.0.1:{port}");
        show.lines()
            .find(|l| l.split_whitespace().nth(1) == Some(addr.as_str()))
            .map(|l| l.split_whitespace().map(str::to_string).collect())
            .unwrap_or_default()
    };
    for (pool, up, down, answer) in [
        ("https_checked", p.ok, p.foreign, "nginx "),
        ("tls_checked", p.ok, p.foreign, "nginx "),
        ("mtls_checked", p.mtls, p.foreign, "haproxy client-cert=1"),
        ("nocert_checked", p.ok, p.mtls, "nginx "),
    ] {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let show = loop {
            let show = edge_admin(&sock, &format!("show servers {pool}")).await.1;
            let state = |port| row(&show, port).get(3).cloned().unwrap_or_default();
            if state(up) == "up" && state(down) == "down" {
                break show;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{pool} did not settle:\n{show}\n{}",
                s.logs()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        // The reason column: the probe's TLS handshake failed.
        assert_eq!(row(&show, down)[4], "tls", "{pool}:\n{show}");
        for _ in 0..4 {
            let r = s.get(pool).await;
            assert_eq!(r.status, 200, "{pool}: {r:?}\n{}", s.logs());
            assert!(r.body.starts_with(answer), "{pool}: {r:?}");
        }
    }
}

/// `edge check` refuses a `[pool.tls]` whose CA file is missing, naming the
/// file's line and the key.
#[test]
fn edge_check_names_a_missing_ca_file() {
    let dir = TempDir::new("backend-tls-check");
    let front = Pki::new(&dir, "front").leaf(&dir, "front", &["edge.test"]);
    let config = format!(
        "[https]\nlisten = [\"127.0.0.1:{}\"]\n[http]\nlisten = []\n{}\n{}",
        free_port(),
        certificate("front", &["edge.test"], &front),
        pool("app", 9, "", "[pool.tls]\nca_file = \"missing-ca.pem\"\n"),
    );
    let line = config
        .lines()
        .position(|l| l.starts_with("ca_file"))
        .unwrap()
        + 1;
    let path = dir.write("edge.toml", &config);
    let (code, out) = edge_check(&path);
    assert_ne!(code, 0, "{out}");
    assert!(
        out.contains(&format!("edge.toml:{line}:")) && out.contains("pool[0].tls.ca_file"),
        "{out}"
    );
    assert!(out.contains("missing-ca.pem"), "{out}");
}
