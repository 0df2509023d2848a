//! A real authoritative DNS server for tests: Knot DNS (Debian's `knot`)
//! on 127.0.0.1, serving one zone that the test changes with RFC 2136
//! dynamic updates (`knsupdate`), as an operator's DNS would change.
//! Updates are allowed from 127.0.0.1, or only when signed with a TSIG key
//! ([`Knot::start_with_tsig`]).

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::{Proc, TempDir, free_port, wait_until};

/// A TSIG key knotd accepts updates signed with (`key:` of knot.conf).
#[derive(Debug, Clone)]
pub struct TsigKey {
    /// The key's name, e.g. `acme-update`.
    pub name: String,
    /// `hmac-sha256`, `hmac-sha512`...
    pub algorithm: String,
    /// The secret in base64.
    pub secret: String,
}

/// knotd in the foreground with its own config and zone; killed on drop.
#[derive(Debug)]
pub struct Knot {
    proc: Option<Proc>,
    conf: std::path::PathBuf,
    dir: std::path::PathBuf,
    /// The zone, e.g. `disc.test.` (with the final dot).
    pub zone: String,
    /// Where it answers (UDP and TCP).
    pub addr: SocketAddr,
    /// The key updates must be signed with, if any.
    pub tsig: Option<TsigKey>,
}

impl Knot {
    /// Starts knotd with `zone` holding `records` (zone-file lines relative
    /// to the zone, e.g. `app 2 A 127.0.0.2`); ready when it answers.
    pub fn start(dir: &TempDir, zone: &str, records: &[&str]) -> Self {
        Self::start_inner(dir, zone, records, None)
    }

    /// Like [`start`](Self::start), accepting only updates signed with
    /// `key` (an ACL with `key:` instead of the address-only one).
    pub fn start_with_tsig(dir: &TempDir, zone: &str, records: &[&str], key: TsigKey) -> Self {
        Self::start_inner(dir, zone, records, Some(key))
    }

    fn start_inner(dir: &TempDir, zone: &str, records: &[&str], tsig: Option<TsigKey>) -> Self {
        let acl = match &tsig {
            None => "acl:\n  - id: local_update\n    address: 127.0.0.1\n    action: update\n"
                .to_owned(),
            Some(k) => format!(
                "key:\n  - id: {}\n    algorithm: {}\n    secret: {}\n\
                 acl:\n  - id: local_update\n    key: {}\n    action: update\n",
                k.name, k.algorithm, k.secret, k.name
            ),
        };
        let zone = format!("{}.", zone.trim_end_matches('.'));
        let port = free_port();
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let work = dir.path("knot");
        std::fs::create_dir_all(&work).unwrap();
        let w = work.display();
        let conf = dir.write(
            "knot.conf",
            format!(
                "server:\n    rundir: \"{w}\"\n    listen: 127.0.0.1@{port}\n\
                 database:\n    storage: \"{w}\"\n\
                 log:\n  - target: stderr\n    any: info\n\
                 {acl}\
                 template:\n  - id: default\n    storage: \"{w}\"\n    file: \"%s.zone\"\n    \
                 zonefile-sync: -1\n    journal-content: changes\n\
                 zone:\n  - domain: {zone}\n    acl: local_update\n"
            ),
        );
        let mut z = format!(
            "$ORIGIN {zone}\n$TTL 60\n@ SOA ns hostmaster 1 3600 600 86400 1\n@ NS ns\nns A 127.0.0.1\n"
        );
        for r in records {
            z.push_str(r);
            z.push('\n');
        }
        std::fs::write(work.join(format!("{zone}zone")), z).unwrap();
        let mut cmd = Command::new("knotd");
        cmd.arg("-c").arg(&conf);
        let proc = Proc::spawn(cmd, "knotd", dir.path("knotd.log"));
        let k = Self {
            proc: Some(proc),
            conf,
            dir: work,
            zone,
            addr,
            tsig,
        };
        let ready = wait_until(Duration::from_secs(10), || {
            k.query(&format!("ns.{}", k.zone), "A")
                .contains("127.0.0.1")
        });
        assert!(
            ready,
            "knotd did not answer on {addr}:\n{}",
            k.proc.as_ref().map(Proc::log_text).unwrap_or_default()
        );
        k
    }

    /// `kdig` of `name` (relative names are in the zone) and `rtype`: the
    /// answer section, one record a line.
    pub fn query(&self, name: &str, rtype: &str) -> String {
        let out = Command::new("kdig")
            .args([
                &format!("@{}", self.addr.ip()),
                "-p",
                &self.addr.port().to_string(),
                "+short",
                "+time=1",
                "+retry=0",
                &self.fqdn(name),
                rtype,
            ])
            .output()
            .unwrap_or_else(|e| panic!("kdig: {e} (Debian's knot-dnsutils)"));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `name` made absolute in the zone.
    pub fn fqdn(&self, name: &str) -> String {
        if name.ends_with('.') {
            name.to_owned()
        } else {
            format!("{name}.{}", self.zone)
        }
    }

    /// Sends one dynamic update (RFC 2136) with `knsupdate`: each line an
    /// `add NAME TTL TYPE DATA` or `del NAME [TYPE [DATA]]` in the zone.
    pub fn update(&self, lines: &[&str]) {
        let mut script = format!(
            "server {} {}\nzone {}\n",
            self.addr.ip(),
            self.addr.port(),
            self.zone
        );
        if let Some(k) = &self.tsig {
            script.push_str(&format!("key {}:{} {}\n", k.algorithm, k.name, k.secret));
        }
        for l in lines {
            script.push_str(l);
            script.push('\n');
        }
        script.push_str("send\nquit\n");
        let mut child = Command::new("knsupdate")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("knsupdate: {e} (Debian's knot-dnsutils)"));
        std::io::Write::write_all(child.stdin.as_mut().unwrap(), script.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "knsupdate failed:\n{script}\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Stops the server (SIGKILL): lookups time out.
    pub fn stop(&mut self) {
        self.proc = None;
    }

    /// Starts it again with the zone as it was when stopped (the journal
    /// keeps the updates).
    pub fn restart(&mut self, dir: &TempDir) {
        let mut cmd = Command::new("knotd");
        cmd.arg("-c").arg(&self.conf);
        self.proc = Some(Proc::spawn(cmd, "knotd", dir.path("knotd.log")));
        let ns = format!("ns.{}", self.zone);
        assert!(
            wait_until(Duration::from_secs(10), || self
                .query(&ns, "A")
                .contains("127.0.0.1")),
            "knotd did not come back; its files are in {}",
            self.dir.display()
        );
    }
}
