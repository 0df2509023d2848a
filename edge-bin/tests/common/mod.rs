//! edge-bin's glue to edge-testkit: the `edge` binary these tests built,
//! the config fixtures, and everything of the testkit.
#![allow(dead_code, unused_imports, unreachable_pub)]

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};

pub use edge_testkit::client::*;
pub use edge_testkit::*;

/// The `edge` binary of this build.
pub const EDGE: &str = env!("CARGO_BIN_EXE_edge");

/// `edge-bin/tests/fixtures`: the TOML config templates.
pub const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");

/// The fixture `name` (in `tests/fixtures`), placeholders still to fill.
pub fn fixture(name: &str) -> Fixture {
    Fixture::load(FIXTURES, name)
}

/// Writes `config` to `DIR/NAME.toml` and starts edge with it (its log in
/// `DIR/NAME.log`); edge is ready when this returns.
pub fn start_edge(dir: &TempDir, name: &str, config: &str) -> Edge {
    Edge::start(EDGE, dir.write(&format!("{name}.toml"), config))
}

/// An edge in front: a fresh PKI, one certificate for `names`, and edge
/// started from `fixture` with `https_port`, `cert` and `key` filled in
/// (plus `extra` placeholders). Its log is `dir/edge.log`.
pub struct Front {
    pub dir: TempDir,
    pub pki: Pki,
    pub port: u16,
    pub edge: Edge,
}

pub fn front(test: &str, fixture_name: &str, names: &[&str], extra: &[(&str, u16)]) -> Front {
    front_with(test, fixture_name, names, extra, |b| b)
}

/// [`front`], with `tweak` applied to edge's [`EdgeBuilder`] (e.g. its
/// `RUST_LOG`).
pub fn front_with(
    test: &str,
    fixture_name: &str,
    names: &[&str],
    extra: &[(&str, u16)],
    tweak: impl FnOnce(EdgeBuilder) -> EdgeBuilder,
) -> Front {
    let dir = TempDir::new(test);
    let pki = Pki::new(&dir, "front");
    let leaf = pki.leaf(&dir, names[0], names);
    let port = free_port();
    let mut f = fixture(fixture_name)
        .set("https_port", port)
        .set("cert", leaf.cert.display())
        .set("key", leaf.key.display());
    for (k, v) in extra {
        f = f.set(k, v);
    }
    let config = dir.write("edge.toml", f.render());
    let edge = tweak(Edge::builder(EDGE, config)).start();
    Front {
        dir,
        pki,
        port,
        edge,
    }
}

/// A demo backend (an edge serving only `[[demo_backend]]`) with its
/// directory; dropping it stops the backend.
pub struct DemoBackend {
    pub port: u16,
    pub edge: Edge,
    pub dir: TempDir,
}

/// Starts a demo backend on a free port, then [`front`] with
/// `{{backend_port}}` set to it.
pub fn front_of_demo_backend(
    test: &str,
    fixture_name: &str,
    names: &[&str],
) -> (Front, DemoBackend) {
    front_of_demo_backend_with(test, fixture_name, names, &[], |b| b)
}

/// [`front_of_demo_backend`], with `extra` placeholders and `tweak`
/// applied to the front edge's [`EdgeBuilder`].
pub fn front_of_demo_backend_with(
    test: &str,
    fixture_name: &str,
    names: &[&str],
    extra: &[(&str, u16)],
    tweak: impl FnOnce(EdgeBuilder) -> EdgeBuilder,
) -> (Front, DemoBackend) {
    let dir = TempDir::new(&format!("{test}-backend"));
    let port = free_port();
    let config = fixture("demo_backend.toml").set("port", port).render();
    let edge = start_edge(&dir, "backend", &config);
    let mut extra = extra.to_vec();
    extra.push(("backend_port", port));
    let f = front_with(test, fixture_name, names, &extra, tweak);
    (f, DemoBackend { port, edge, dir })
}

/// Runs `edge ARGS`: (exit code, stdout + stderr).
pub fn edge_cmd(args: &[&str]) -> (i32, String) {
    let out = Command::new(EDGE).args(args).output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

/// Runs `edge check -c FILE`: (exit code, stdout + stderr).
pub fn edge_check(path: &Path) -> (i32, String) {
    edge_cmd(&["check", "-c", &path.to_string_lossy()])
}
pub mod ha;
pub mod peers;
pub mod reload;

/// A `[[certificate]]` table for `leaf` (`fixtures/certificate.toml`).
pub fn certificate(name: &str, names: &[&str], leaf: &Leaf) -> String {
    let names: Vec<String> = names.iter().map(|n| format!("\"{n}\"")).collect();
    fixture("certificate.toml")
        .set("name", name)
        .set("names", names.join(", "))
        .path("cert", &leaf.cert)
        .path("key", &leaf.key)
        .render()
}

/// `edge admin -s SOCKET ARGS...` (`args` split on spaces): exit code,
/// stdout, stderr.
pub async fn edge_admin(socket: &Path, args: &str) -> (i32, String, String) {
    let out = tokio::process::Command::new(EDGE)
        .arg("admin")
        .arg("-s")
        .arg(socket)
        .args(args.split_whitespace())
        .output()
        .await
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `openssl s_client` to edge; its output (handshake details and the
/// served leaf as text).
pub fn s_client(port: u16, ca: &str, extra: &[&str]) -> String {
    let connect = format!("127.0.0.1:{port}");
    let mut child = Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &connect,
            "-CAfile",
            ca,
            "-verify_return_error",
        ])
        .args(extra)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("openssl must be installed");
    let _ = child.stdin.take().unwrap().write_all(b"Q\n");
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}
