//! What the reload and lifecycle tests share: edge started with
//! `fixtures/reload.toml` on loopback.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use super::{EDGE, Edge, Leaf, Pki, Proc, TempDir, fixture, free_port, wait_port};

/// Starts edge with `DIR/edge.toml` (`args` after `run -c FILE`), access
/// records quiet unless `$EDGE_TEST_LOG` says otherwise; ready on return.
pub fn start(dir: &TempDir, config: &str, args: &[&str]) -> Edge {
    start_with(dir, config, args, &[])
}

/// [`start`] with environment variables.
pub fn start_with(dir: &TempDir, config: &str, args: &[&str], env: &[(&str, &str)]) -> Edge {
    let filter = std::env::var("EDGE_TEST_LOG").unwrap_or("info,edge::access=warn".into());
    let mut b = Edge::builder(EDGE, dir.write("edge.toml", config)).rust_log(Some(&filter));
    for a in args {
        b = b.arg(*a);
    }
    for (k, v) in env {
        b = b.env(k, *v);
    }
    b.start()
}

/// `fixtures/reload.toml`: HTTPS on `https`, route `/hello` answering
/// `hello`, pool `app` of `servers` (TCP checks every 200 ms, no retries),
/// `extra` tables.
pub fn config(https: &[u16], leaf: &Leaf, hello: &str, servers: &[u16], extra: &str) -> String {
    let listen: Vec<String> = https.iter().map(|p| format!("\"127.0.0.1:{p}\"")).collect();
    let servers: String = servers
        .iter()
        .map(|p| format!("[[pool.server]]\naddress = \"127.0.0.1:{p}\"\n"))
        .collect();
    fixture("reload.toml")
        .set("listen", listen.join(", "))
        .set("extra", extra)
        .set("cert", leaf.cert.display())
        .set("key", leaf.key.display())
        .set("hello", hello)
        .set("servers", servers)
        .render()
}

/// Pebble (+ pebble-challtestsrv for DNS) on loopback, serving HTTPS with
/// a leaf of `pki` and validating HTTP-01 challenges on `http_port`.
pub struct LocalPebble {
    _procs: Vec<Proc>,
    /// The ACME directory's port (`https://127.0.0.1:PORT/dir`).
    pub listen: u16,
    /// The management port (`/roots/0`: the root of what it issues).
    pub mgmt: u16,
}

impl LocalPebble {
    /// Starts both and waits until Pebble listens.
    pub fn start(dir: &TempDir, pki: &Pki, http_port: u16) -> Self {
        Self::start_with_dns(dir, pki, http_port, None)
    }

    /// Like [`start`](Self::start); with `dns`, Pebble resolves (and
    /// validates DNS-01 challenges) through that server instead of
    /// pebble-challtestsrv, which is not started.
    pub fn start_with_dns(
        dir: &TempDir,
        pki: &Pki,
        http_port: u16,
        dns: Option<std::net::SocketAddr>,
    ) -> Self {
        assert!(
            Path::new("/usr/bin/pebble").exists(),
            "Debian package pebble is needed (.ci/test installs it)"
        );
        // Pebble's own HTTPS certificate, from the test CA edge is told to trust.
        let pebble_tls = pki.leaf(dir, "pebble", &["localhost", "127.0.0.1"]);
        let (listen, mgmt) = (free_port(), free_port());
        let pebble_config = dir.write(
            "pebble.json",
            format!(
                r#"{{"pebble": {{"listenAddress": "127.0.0.1:{listen}", "managementListenAddress": "127.0.0.1:{mgmt}",
  "certificate": "{c}", "privateKey": "{k}", "httpPort": {http_port}, "tlsPort": {tls},
  "ocspResponderURL": "", "externalAccountBindingRequired": false}}}}"#,
                c = pebble_tls.cert.display(),
                k = pebble_tls.key.display(),
                tls = free_port(),
            ),
        );
        let spawn = |cmd: &mut Command, name: &str| {
            let cmd = std::mem::replace(cmd, Command::new("true"));
            Proc::spawn(cmd, name, dir.path(&format!("{name}.log")))
        };
        let mut procs = Vec::new();
        let dns = dns.unwrap_or_else(|| {
            let dns = std::net::SocketAddr::from(([127, 0, 0, 1], free_port()));
            procs.push(spawn(
                Command::new("pebble-challtestsrv")
                    .args(["-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""])
                    .args(["-dns01", &dns.to_string()])
                    .args(["-http01", "", "-https01", "", "-tlsalpn01", ""])
                    .args(["-management", &format!("127.0.0.1:{}", free_port())]),
                "challtestsrv",
            ));
            dns
        });
        let pebble = spawn(
            Command::new("pebble")
                .arg("-config")
                .arg(&pebble_config)
                .args(["-dnsserver", &dns.to_string()])
                .env("PEBBLE_VA_NOSLEEP", "1")
                .env("PEBBLE_WFE_NONCEREJECT", "0")
                .env("PEBBLE_AUTHZREUSE", "0"),
            "pebble",
        );
        assert!(
            wait_port(listen, Duration::from_secs(20)),
            "Pebble did not start"
        );
        procs.push(pebble);
        Self {
            _procs: procs,
            listen,
            mgmt,
        }
    }

    /// The root of what Pebble issues (its management API's `/roots/0`,
    /// over HTTPS with `pki`'s CA), written to `DIR/pebble-root.pem`.
    pub fn root(&self, dir: &TempDir, pki: &Pki) -> std::path::PathBuf {
        let root = Command::new("curl")
            .args(["-sf", "--cacert"])
            .arg(&pki.ca_pem)
            .arg(format!("https://127.0.0.1:{}/roots/0", self.mgmt))
            .output()
            .unwrap();
        assert!(root.status.success(), "no Pebble root");
        dir.write("pebble-root.pem", &root.stdout)
    }
}
