//! The example configs are real: `edge check` passes, without a warning, on
//! every `.toml` under examples/configs (at any depth) and on
//! examples/quickstart.toml; and the HAProxy and keepalived originals in
//! examples/configs/from-haproxy pass `haproxy -c` and `keepalived -t`, with
//! test certificates where haproxy.cfg names its certificate directory.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use edge_testkit::{Pki, TempDir};

/// The configs this test was written with, relative to examples/. More may
/// be added (they are found by walking the folder); none of these may go
/// missing.
const KNOWN: &[&str] = &[
    "quickstart.toml",
    "configs/pair/node-a.toml",
    "configs/pair/node-b.toml",
    "configs/sni-passthrough-k8s.toml",
    "configs/from-haproxy/edge.toml",
];

const HAPROXY: &str = "/usr/sbin/haproxy";

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples")
        .canonicalize()
        .unwrap()
}

/// Every `.toml` file under `dir`, at any depth.
fn tomls(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries =
        std::fs::read_dir(dir).unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()));
    for e in entries {
        let path = e.unwrap().path();
        if path.is_dir() {
            tomls(&path, out);
        } else if path.extension().is_some_and(|x| x == "toml") {
            out.push(path);
        }
    }
}

fn edge_check(config: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_edge"))
        .args(["check", "-c"])
        .arg(config)
        .output()
        .unwrap()
}

/// `None` when `edge check` succeeded without a warning; else what it said.
fn check_problem(config: &Path) -> Option<String> {
    let out = edge_check(config);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    let ok = out.status.success()
        && stdout.contains("test is successful")
        && !stderr.contains("warning:");
    (!ok).then(|| {
        format!(
            "edge check -c {} ({}):\n{stdout}{stderr}",
            config.display(),
            out.status
        )
    })
}

#[test]
fn every_example_config_passes_edge_check() {
    let root = examples();
    let mut files = vec![root.join("quickstart.toml")];
    tomls(&root.join("configs"), &mut files);
    files.sort();
    let found: Vec<String> = files
        .iter()
        .map(|f| {
            f.strip_prefix(&root)
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    for known in KNOWN {
        assert!(
            found.iter().any(|f| f == known),
            "examples/{known} is missing; found {found:?}"
        );
    }
    assert!(files.len() >= KNOWN.len(), "{found:?}");
    let problems: Vec<String> = files.iter().filter_map(|f| check_problem(f)).collect();
    assert!(
        problems.is_empty(),
        "{} of {} example configs fail edge check or warn:\n\n{}",
        problems.len(),
        files.len(),
        problems.join("\n")
    );
}

/// The check above can fail: a config with a mistake does.
#[test]
fn a_broken_example_is_caught() {
    let dir = TempDir::new("example-broken");
    let text = std::fs::read_to_string(examples().join("configs/pair/node-a.toml")).unwrap();
    let broken = text.replacen("vrid = 51", "vrid = 300", 1);
    assert_ne!(text, broken);
    let path = dir.write("node-a.toml", broken);
    let problem = check_problem(&path).expect("vrid 300 must be refused");
    assert!(problem.contains("vrid must be 1-255"), "{problem}");
}

fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e} (installed by .ci/test)"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{cmd:?} ({}):\n{text}", out.status);
    text
}

/// haproxy.cfg with its certificate directory replaced by one holding a
/// test certificate (certificate and key in one PEM, as HAProxy wants).
fn haproxy_with_certs(dir: &TempDir) -> (PathBuf, PathBuf) {
    let original =
        std::fs::read_to_string(examples().join("configs/from-haproxy/haproxy.cfg")).unwrap();
    let certs = dir.path("certs");
    std::fs::create_dir(&certs).unwrap();
    let pki = Pki::new(dir, "example");
    let leaf = pki.leaf(dir, "www", &["www.example.com", "example.com"]);
    let pem = certs.join("www.example.com.pem");
    let mut both = std::fs::read(&leaf.cert).unwrap();
    both.extend(std::fs::read(&leaf.key).unwrap());
    std::fs::write(&pem, both).unwrap();
    let named = "crt /etc/haproxy/certs/";
    assert_eq!(original.matches(named).count(), 1, "haproxy.cfg: {named}");
    let cfg = original.replace(named, &format!("crt {}/", certs.display()));
    (dir.write("haproxy.cfg", cfg), pem)
}

#[test]
fn haproxy_original_is_valid() {
    let dir = TempDir::new("example-haproxy");
    let (cfg, _) = haproxy_with_certs(&dir);
    // -dW: a warning is an error too.
    let text = run(Command::new(HAPROXY).args(["-dW", "-c", "-f"]).arg(&cfg));
    assert!(text.contains("Configuration file is valid"), "{text}");
}

#[test]
fn keepalived_original_is_valid() {
    let conf = examples().join("configs/from-haproxy/keepalived.conf");
    // keepalived -t prints nothing and exits 0 when the file is good; an
    // unknown keyword, a value out of range or a missing track script
    // makes it print the problem and exit non-zero.
    let text = run(Command::new(edge_testkit::vrrp::KEEPALIVED)
        .arg("-t")
        .arg("-f")
        .arg(&conf));
    assert!(text.trim().is_empty(), "{text}");
}

/// README.md in from-haproxy says HAProxy's PEM (certificate and key in one
/// file) can be named as both `cert` and `key` of a `[[certificate]]`.
#[test]
fn haproxy_pem_serves_as_an_edge_certificate() {
    let dir = TempDir::new("example-haproxy-pem");
    let (_, pem) = haproxy_with_certs(&dir);
    let edge = std::fs::read_to_string(examples().join("configs/from-haproxy/edge.toml")).unwrap();
    let with_pem = format!(
        "{edge}\n[[certificate]]\nname = \"www\"\nnames = [\"www.example.com\", \"example.com\"]\ncert = \"{p}\"\nkey = \"{p}\"\n",
        p = pem.display()
    );
    let path = dir.write("edge.toml", with_pem);
    assert_eq!(check_problem(&path), None);
    // And a PEM without the key is refused, so the line above is a test.
    let cert_only = dir.write("cert-only.pem", {
        let text = std::fs::read_to_string(&pem).unwrap();
        text[..text.find("-----BEGIN PRIVATE KEY-----").unwrap()].to_string()
    });
    let without_key = std::fs::read_to_string(&path).unwrap().replace(
        &format!("key = \"{}\"", pem.display()),
        &format!("key = \"{}\"", cert_only.display()),
    );
    let path = dir.write("edge-no-key.toml", without_key);
    assert!(check_problem(&path).is_some());
}
