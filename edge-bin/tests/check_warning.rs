//! `edge check` warns, and still succeeds, when a terminated route names a
//! host that no certificate covers (`*.example.com` covers one label only).

use std::process::Command;

const CONFIG: &str = r#"
[https]
listen = ["127.0.0.1:18443"]
default_certificate = "site"

[http]
listen = ["127.0.0.1:18080"]

[[certificate]]
name = "site"
names = ["*.example.com"]
self_signed = true

[[route]]
host = ["www.example.com", "a.b.example.com"]
respond = { status = 200, body = "hi" }
"#;

#[test]
fn uncovered_route_host_is_a_warning_not_an_error() {
    let dir = std::env::temp_dir().join(format!("edge-check-warning-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("edge.toml");
    std::fs::write(&path, CONFIG).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_edge"))
        .args(["check", "-c"])
        .arg(&path)
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert!(stdout.contains("test is successful"), "{stdout}");
    let line = CONFIG
        .lines()
        .position(|l| l.starts_with("host = "))
        .unwrap()
        + 1;
    let want = format!("warning: {}:{line}:", path.display());
    let warnings: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("warning:"))
        .collect();
    assert_eq!(warnings.len(), 1, "{stderr}");
    assert!(warnings[0].starts_with(&want), "{stderr}");
    assert!(warnings[0].contains("route[0].host[1]"), "{stderr}");
    assert!(warnings[0].contains("\"a.b.example.com\""), "{stderr}");
    assert!(warnings[0].contains("covers one label only"), "{stderr}");
}
