//! `edge peer-key`: the credentials file of a pair's peer link.

use std::io::Write as _;
use std::path::Path;

/// Writes a new self-signed certificate and its private key (ECDSA P-256,
/// PEM) to `path`, mode 0600; refuses to replace a file unless `force`.
///
/// Both nodes of a pair may use the same file (each then pins the
/// certificate it presents itself): copy it to both, as a secret.
pub fn write_credentials(path: &Path, force: bool) -> Result<(), String> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let c = rcgen::generate_simple_self_signed(vec!["edge-peer".into()])
        .map_err(|e| format!("cannot make a certificate: {e}"))?;
    let pem = format!("{}{}", c.cert.pem(), c.signing_key.serialize_pem());
    let mut o = std::fs::OpenOptions::new();
    o.write(true).mode(0o600);
    if force {
        o.create(true).truncate(true);
    } else {
        o.create_new(true);
    }
    let mut f = o
        .open(path)
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    // An existing file keeps its mode on truncate: tighten it.
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o600))
        .map_err(|e| format!("cannot set the mode of {}: {e}", path.display()))?;
    f.write_all(pem.as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}
