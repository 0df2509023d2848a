//! `[admin]` validation: the socket path, its mode and its group.

use std::path::Path;

use toml::Spanned;

use super::model::Admin;
use super::{ConfigError, Source};

/// `[admin]`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminSettings {
    /// The unix socket path; `None`: no admin socket.
    pub socket: Option<std::path::PathBuf>,
    /// File mode of the socket (default `0o660`).
    pub mode: u32,
    /// Group id to own the socket.
    pub group: Option<u32>,
    /// The server-state file (drain, maint, weights), `None`: not kept.
    pub state_file: Option<std::path::PathBuf>,
}

/// The socket's mode when `mode` is absent: owner and group read/write.
const DEFAULT_MODE: u32 = 0o660;

impl Default for AdminSettings {
    fn default() -> Self {
        Self {
            socket: None,
            mode: DEFAULT_MODE,
            group: None,
            state_file: None,
        }
    }
}

/// Checks `[admin]`; problems are pushed to `errors` (file, line, key).
pub(super) fn validate(
    a: &Admin,
    src: &Source,
    base: &Path,
    errors: &mut Vec<ConfigError>,
) -> AdminSettings {
    let mut out = AdminSettings::default();
    let mut err = |s: &Spanned<String>, key: &str, msg: String| {
        errors.push(src.error(s.span(), key, msg));
    };
    if let Some(s) = &a.socket {
        let p = Path::new(s.get_ref());
        // The length that counts is the path edge binds: a relative path
        // joined to the config file's directory.
        let full = if p.is_absolute() {
            p.to_path_buf()
        } else {
            base.join(p)
        };
        if s.get_ref().is_empty() {
            err(s, "admin.socket", "the socket path is empty".into());
        } else if full.as_os_str().len() > 100 {
            // sun_path holds 108 bytes including the temporary suffix edge
            // binds first.
            err(
                s,
                "admin.socket",
                format!(
                    "the socket path {} is too long ({} bytes, at most 100)",
                    full.display(),
                    full.as_os_str().len()
                ),
            );
        } else {
            out.socket = Some(full);
        }
    }
    if let Some(m) = &a.mode {
        match u32::from_str_radix(m.get_ref().trim_start_matches("0o"), 8) {
            Ok(v) if v <= 0o777 && !m.get_ref().is_empty() => out.mode = v,
            _ => err(
                m,
                "admin.mode",
                format!(
                    "invalid mode {:?}: expected octal such as \"0660\"",
                    m.get_ref()
                ),
            ),
        }
    }
    if let Some(g) = &a.group {
        match resolve_group(g.get_ref()) {
            Ok(gid) => out.group = Some(gid),
            Err(e) => err(g, "admin.group", e),
        }
    }
    if let Some(f) = &a.state_file {
        let p = Path::new(f.get_ref());
        let full = if p.is_absolute() {
            p.to_path_buf()
        } else {
            base.join(p)
        };
        match full.parent() {
            _ if f.get_ref().is_empty() => {
                err(f, "admin.state_file", "the state file path is empty".into());
            }
            Some(dir) if !dir.as_os_str().is_empty() && !dir.is_dir() => err(
                f,
                "admin.state_file",
                format!("the directory {} does not exist", dir.display()),
            ),
            _ => out.state_file = Some(full),
        }
    }
    if let (None, Some(s)) = (&out.socket, a.mode.as_ref().or(a.group.as_ref())) {
        err(
            s,
            "admin",
            "mode and group need a socket path (admin.socket)".into(),
        );
    }
    out
}

/// A group name (looked up in /etc/group) or number to its id.
fn resolve_group(g: &str) -> Result<u32, String> {
    if let Ok(n) = g.parse::<u32>() {
        return Ok(n);
    }
    let text = std::fs::read_to_string("/etc/group")
        .map_err(|e| format!("cannot read /etc/group to find group {g:?}: {e}"))?;
    group_id(&text, g).ok_or_else(|| format!("no group {g:?} in /etc/group"))
}

/// The id of group `name` in /etc/group text (`name:x:gid:members`).
fn group_id(text: &str, name: &str) -> Option<u32> {
    text.lines().find_map(|l| {
        let mut f = l.split(':');
        (f.next()? == name).then_some(())?;
        f.nth(1)?.parse().ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Something to serve: a config without it is refused.
    const ROUTE: &str = "[[route]]\nrespond = { status = 200 }\n";

    fn load(text: &str) -> Result<AdminSettings, String> {
        crate::config::load_str(
            Source::new(Path::new("t.toml"), format!("{text}\n{ROUTE}")),
            Path::new("/etc/edge"),
        )
        .map(|v| v.admin)
        .map_err(|e| e.to_string())
    }

    #[test]
    fn a_relative_socket_path_is_measured_where_it_is_bound() {
        let long_base = Path::new("/").join("d".repeat(95));
        let text = format!("[admin]\nsocket = \"admin.sock\"\n{ROUTE}");
        let e = crate::config::load_str(Source::new(Path::new("t.toml"), text), &long_base)
            .unwrap_err()
            .to_string();
        assert!(e.contains("too long (107 bytes, at most 100)"), "{e}");
    }

    #[test]
    fn defaults_and_values() {
        assert_eq!(load("").unwrap(), AdminSettings::default());
        let a = load("[admin]\nsocket = \"run/admin.sock\"\n").unwrap();
        assert_eq!(
            a.socket.as_deref(),
            Some(Path::new("/etc/edge/run/admin.sock"))
        );
        assert_eq!(a.mode, 0o660);
        let a = load("[admin]\nsocket = \"/run/edge/a.sock\"\nmode = \"0600\"\ngroup = \"0\"\n")
            .unwrap();
        assert_eq!((a.mode, a.group), (0o600, Some(0)));
        let a = load("[admin]\nsocket = \"/a.sock\"\ngroup = \"root\"\n").unwrap();
        assert_eq!(a.group, Some(0));
    }

    #[test]
    fn errors_name_the_key() {
        let e = load("[admin]\nsocket = \"/a.sock\"\nmode = \"0999\"\n").unwrap_err();
        assert!(e.contains("admin.mode") && e.contains(":3:"), "{e}");
        let e = load("[admin]\nsocket = \"/a.sock\"\ngroup = \"no-such-group-x\"\n").unwrap_err();
        assert!(e.contains("admin.group"), "{e}");
        let e = load("[admin]\nmode = \"0600\"\n").unwrap_err();
        assert!(e.contains("need a socket path"), "{e}");
        let e = load("[admin]\nsocket = \"/a.sock\"\nport = 1\n").unwrap_err();
        assert!(e.contains("port"), "{e}");
        let long = format!("[admin]\nsocket = \"/{}\"\n", "x".repeat(120));
        assert!(load(&long).unwrap_err().contains("too long"));
    }

    #[test]
    fn group_file_lookup() {
        let t = "root:x:0:\nadm:x:4:syslog\nedge:x:998:\n";
        assert_eq!(group_id(t, "edge"), Some(998));
        assert_eq!(group_id(t, "ed"), None);
        assert_eq!(group_id("broken", "broken"), None);
    }
}
