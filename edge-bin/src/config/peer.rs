//! `[peer]` (the link between the two nodes of a pair: edge-vrrp's `peer`)
//! and `[tickets]` (where the TLS session-ticket keys are kept).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde::Deserialize;
use toml::Spanned;

use super::duration::ConfigDuration;
use super::{ConfigError, Source};

/// `[peer]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerFile {
    /// `ADDR:PORT` this node accepts the peer's connection on.
    pub listen: Spanned<String>,
    /// `ADDR:PORT` of the peer's `listen`.
    pub address: Spanned<String>,
    /// PEM file with this node's certificate and private key (`edge peer-key`).
    pub credentials: Spanned<String>,
    /// PEM certificate of the peer, when it is not the one in `credentials`.
    pub peer_certificate: Option<Spanned<String>>,
    /// Default 1s.
    pub keepalive: Option<Spanned<ConfigDuration>>,
    /// Default 5s.
    pub timeout: Option<Spanned<ConfigDuration>>,
}

/// `[tickets]` as written.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct TicketsFile {
    /// Where the ticket keys are kept (mode 0600).
    pub keys_file: Option<Spanned<String>>,
}

/// A node's certificate chain and key, and the certificates it pins.
pub struct PeerCredentials {
    pub cert_chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
    pub pinned: Vec<CertificateDer<'static>>,
}

impl std::fmt::Debug for PeerCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerCredentials")
            .field("certs", &self.cert_chain.len())
            .field("pinned", &self.pinned.len())
            .finish_non_exhaustive()
    }
}

/// `[peer]`, validated.
#[derive(Debug, Clone)]
pub struct PeerSettings {
    pub listen: SocketAddr,
    pub address: SocketAddr,
    pub credentials_file: PathBuf,
    pub credentials: Arc<PeerCredentials>,
    pub keepalive: Duration,
    pub timeout: Duration,
}

/// `[tickets]`, validated: `keys_file` defaults to `STATE_FILE.ticket-keys`
/// beside `[admin] state_file`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TicketSettings {
    pub keys_file: Option<PathBuf>,
}

fn full(base: &Path, p: &str) -> PathBuf {
    let p = Path::new(p);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

/// Checks `[peer]`: addresses, the credentials file (read and parsed, as a
/// run would), the timers.
pub(super) fn validate_peer(
    p: &PeerFile,
    src: &Source,
    base: &Path,
    errors: &mut Vec<ConfigError>,
) -> Option<PeerSettings> {
    let n = errors.len();
    let mut addr = |s: &Spanned<String>, key: &str| match s.get_ref().parse::<SocketAddr>() {
        Ok(a) => Some(a),
        Err(_) => {
            errors.push(src.error(
                s.span(),
                key,
                format!("invalid address {:?}: expected IP:PORT", s.get_ref()),
            ));
            None
        }
    };
    let listen = addr(&p.listen, "peer.listen");
    let address = addr(&p.address, "peer.address");
    let credentials_file = full(base, p.credentials.get_ref());
    let read = |path: &Path| {
        std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
    };
    let creds = read(&credentials_file).and_then(|pem| {
        edge_vrrp::peer::parse_credentials(&pem)
            .map_err(|e| format!("{}: {e}", credentials_file.display()))
    });
    let (cert_chain, key) = match creds {
        Ok(c) => c,
        Err(e) => {
            errors.push(src.error(p.credentials.span(), "peer.credentials", e));
            return None;
        }
    };
    let pinned = match &p.peer_certificate {
        None => vec![cert_chain[0].clone()],
        Some(s) => {
            let path = full(base, s.get_ref());
            let certs = read(&path).and_then(|pem| {
                use rustls_pki_types::pem::PemObject as _;
                CertificateDer::pem_slice_iter(&pem)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| format!("{}: {e}", path.display()))
            });
            match certs {
                Ok(c) if !c.is_empty() => c,
                Ok(_) => {
                    errors.push(src.error(
                        s.span(),
                        "peer.peer_certificate",
                        format!("{}: no CERTIFICATE block", path.display()),
                    ));
                    return None;
                }
                Err(e) => {
                    errors.push(src.error(s.span(), "peer.peer_certificate", e));
                    return None;
                }
            }
        }
    };
    let dur = |d: &Option<Spanned<ConfigDuration>>, default: u64| {
        d.as_ref()
            .map_or(Duration::from_secs(default), |d| d.get_ref().0)
    };
    let (keepalive, timeout) = (dur(&p.keepalive, 1), dur(&p.timeout, 5));
    if keepalive.is_zero() || timeout <= keepalive {
        let span = p
            .timeout
            .as_ref()
            .or(p.keepalive.as_ref())
            .map_or(0..0, |s| s.span());
        errors.push(src.error(
            span,
            "peer.timeout",
            format!(
                "keepalive ({keepalive:?}) must be more than 0 and less than timeout ({timeout:?})"
            ),
        ));
    }
    if listen.is_some() && listen == address {
        errors.push(src.error(
            p.address.span(),
            "peer.address",
            "the peer's address is this node's listen address",
        ));
    }
    if errors.len() > n {
        return None;
    }
    Some(PeerSettings {
        listen: listen?,
        address: address?,
        credentials_file,
        credentials: Arc::new(PeerCredentials {
            cert_chain,
            key,
            pinned,
        }),
        keepalive,
        timeout,
    })
}

/// Checks `[tickets]`.
pub(super) fn validate_tickets(
    t: &TicketsFile,
    state_file: Option<&Path>,
    src: &Source,
    base: &Path,
    errors: &mut Vec<ConfigError>,
) -> TicketSettings {
    let Some(f) = &t.keys_file else {
        let keys_file = state_file.map(|s| {
            let mut name = s.as_os_str().to_owned();
            name.push(".ticket-keys");
            PathBuf::from(name)
        });
        return TicketSettings { keys_file };
    };
    let path = full(base, f.get_ref());
    match path.parent() {
        _ if f.get_ref().is_empty() => {
            errors.push(src.error(f.span(), "tickets.keys_file", "the path is empty"));
            TicketSettings::default()
        }
        Some(dir) if !dir.as_os_str().is_empty() && !dir.is_dir() => {
            errors.push(src.error(
                f.span(),
                "tickets.keys_file",
                format!("the directory {} does not exist", dir.display()),
            ));
            TicketSettings::default()
        }
        _ => TicketSettings {
            keys_file: Some(path),
        },
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::{Source, load_str};

    fn check(text: &str, base: &Path) -> Result<crate::config::Validated, String> {
        let text = format!("[[route]]\nrespond = {{ status = 200 }}\n{text}");
        load_str(Source::new(Path::new("t.toml"), text), base).map_err(|e| e.to_string())
    }

    fn dir(tag: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("edge-peer-config-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn peer_settings_are_read_and_checked() {
        let d = dir("peer");
        // What `edge peer-key` writes: a self-signed certificate and its key.
        let c = rcgen::generate_simple_self_signed(vec!["edge-peer".into()]).unwrap();
        let pem = format!("{}{}", c.cert.pem(), c.signing_key.serialize_pem());
        std::fs::write(d.join("peer.pem"), pem).unwrap();
        std::fs::write(d.join("bad.pem"), "no pem here").unwrap();
        let peer = |extra: &str| {
            format!("[peer]\nlisten = \"127.0.0.1:7400\"\naddress = \"127.0.0.2:7400\"\n{extra}")
        };
        let v = check(&peer("credentials = \"peer.pem\""), &d).unwrap();
        let p = v.peer.unwrap();
        assert_eq!(p.credentials.pinned, p.credentials.cert_chain[..1]);
        assert_eq!(p.keepalive, std::time::Duration::from_secs(1));
        assert_eq!(p.timeout, std::time::Duration::from_secs(5));
        assert_eq!(v.tickets.keys_file, None);

        let e = check(&peer("credentials = \"bad.pem\""), &d).unwrap_err();
        assert!(
            e.contains("peer.credentials") && e.contains("no CERTIFICATE"),
            "{e}"
        );
        let e = check(&peer("credentials = \"none.pem\""), &d).unwrap_err();
        assert!(e.contains("cannot read"), "{e}");
        let e = check(&peer("credentials = \"peer.pem\"\nkeepalive = \"5s\""), &d).unwrap_err();
        assert!(e.contains("peer.timeout"), "{e}");
        let e = check(
            &peer("credentials = \"peer.pem\"\npeer_certificate = \"bad.pem\""),
            &d,
        )
        .unwrap_err();
        assert!(e.contains("peer.peer_certificate"), "{e}");
        let e = check(
            "[peer]\nlisten = \"x\"\naddress = \"127.0.0.2:1\"\ncredentials = \"peer.pem\"",
            &d,
        )
        .unwrap_err();
        assert!(e.contains("peer.listen"), "{e}");
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn ticket_keys_go_beside_the_state_file_unless_named() {
        let d = dir("tickets");
        let v = check("[admin]\nstate_file = \"state.json\"", &d).unwrap();
        assert_eq!(v.tickets.keys_file, Some(d.join("state.json.ticket-keys")));
        let v = check(
            "[admin]\nstate_file = \"state.json\"\n[tickets]\nkeys_file = \"k\"",
            &d,
        )
        .unwrap();
        assert_eq!(v.tickets.keys_file, Some(d.join("k")));
        let e = check("[tickets]\nkeys_file = \"no/such/dir/k\"", &d).unwrap_err();
        assert!(e.contains("tickets.keys_file"), "{e}");
        let _ = std::fs::remove_dir_all(&d);
    }
}
