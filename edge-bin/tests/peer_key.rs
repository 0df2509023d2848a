//! `edge peer-key` writes the credentials of a pair's peer link with mode
//! 0600 and never replaces a file unless told to; `edge check` reads the
//! file named by `[peer] credentials` and refuses one that is not.

mod common;

use std::os::unix::fs::PermissionsExt as _;

use common::*;

#[test]
fn peer_key_writes_0600_and_check_reads_it() {
    let dir = TempDir::new("peer-key");
    let path = dir.path("peer.pem");
    let (code, out) = edge_cmd(&["peer-key", "-o", &path.to_string_lossy()]);
    assert_eq!(code, 0, "{out}");
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let first = std::fs::read_to_string(&path).unwrap();
    assert!(first.contains("BEGIN CERTIFICATE") && first.contains("BEGIN PRIVATE KEY"));

    let (code, out) = edge_cmd(&["peer-key", "-o", &path.to_string_lossy()]);
    assert_eq!(code, 1, "an existing file is kept: {out}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), first);
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (code, out) = edge_cmd(&["peer-key", "--force", "-o", &path.to_string_lossy()]);
    assert_eq!(code, 0, "{out}");
    assert_ne!(std::fs::read_to_string(&path).unwrap(), first);
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "--force tightens the mode");

    let config = |creds: &str| {
        format!(
            "[[route]]\nrespond = {{ status = 200 }}\n[peer]\nlisten = \"127.0.0.1:7400\"\n\
             address = \"127.0.0.2:7400\"\ncredentials = \"{creds}\"\n"
        )
    };
    let good = dir.write("good.toml", config("peer.pem"));
    let (code, out) = edge_check(&good);
    assert_eq!(code, 0, "{out}");
    dir.write("garbage.pem", "-----BEGIN CERTIFICATE-----\nnope\n");
    let bad = dir.write("bad.toml", config("garbage.pem"));
    let (code, out) = edge_check(&bad);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("peer.credentials"), "{out}");
}
