//! The server-state file (`[admin] state_file`, HAProxy's
//! `server-state-file`): the drain and maint states and runtime weights set
//! on the admin socket, written on every change and read at start, so a
//! restart (even `kill -9`) keeps them.
//!
//! JSON, one object per server with a non-default state. Written to a
//! temporary file, synced, then renamed over the old one: a crash leaves
//! the old file or the new one, never half of one.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// One server's operator state as stored, and as sent to the peer node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub pool: String,
    pub server: SocketAddr,
    /// `ready`, `drain` or `maint`.
    pub state: String,
    /// The weight set at runtime, and the config's weight it replaced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub configured_weight: Option<u32>,
    /// When the change was made (Unix milliseconds, wall clock) and on
    /// which node: the last writer wins between the nodes of a pair.
    /// Absent in files of older versions: older than any change.
    #[serde(default)]
    pub stamp_ms: u64,
    #[serde(default)]
    pub node: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct File {
    /// The format's version.
    version: u32,
    servers: Vec<Entry>,
}

/// Writes `entries` to `path` atomically.
pub(super) fn save(path: &Path, entries: Vec<Entry>) -> std::io::Result<()> {
    let text = serde_json::to_vec_pretty(&File {
        version: 1,
        servers: entries,
    })
    .map_err(std::io::Error::other)?;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(&text)?;
    f.write_all(b"\n")?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// Reads `path`: `Ok(None)` when it does not exist yet.
pub(super) fn load(path: &Path) -> Result<Option<Vec<Entry>>, String> {
    let text = match std::fs::read(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.to_string()),
    };
    let f: File = serde_json::from_slice(&text).map_err(|e| e.to_string())?;
    if f.version != 1 {
        return Err(format!("unknown version {}", f.version));
    }
    Ok(Some(f.servers))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_missing_file() {
        let dir = std::env::temp_dir().join(format!("edge-state-file-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("state.json");
        assert_eq!(load(&path), Ok(None));
        let e = vec![Entry {
            pool: "app".into(),
            server: "10.0.0.2:80".parse().unwrap(),
            state: "maint".into(),
            weight: Some(3),
            configured_weight: Some(1),
            stamp_ms: 1_700_000_000_000,
            node: "198.18.0.2:7400".into(),
        }];
        save(&path, e.clone()).unwrap();
        assert_eq!(load(&path), Ok(Some(e)));
        std::fs::write(&path, "{not json").unwrap();
        assert!(load(&path).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
