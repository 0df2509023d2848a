//! A server's ticket keys kept and rotated: one [`TicketKeys`] for every
//! TLS config a process builds (so sessions resume across a config
//! reload), kept in a file (mode 0600, so they resume across a restart),
//! rotated every 6 hours, and merged with the sets of other servers (a
//! pair's peer, a fleet's store) by [`TicketKeys::offer`]'s rule: the
//! higher generation wins; a tie goes to the set in use longer, one
//! generation up.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::{KeySet, Offered, TicketKeys};
use base64::Engine as _;

/// How often the rotation task looks whether the keys are due.
const ROTATION_CHECK: Duration = Duration::from_secs(60);

/// Told of every key set this node starts using by its own rotation.
pub type KeysHook = Arc<dyn Fn(&KeySet) + Send + Sync>;

/// Ticket keys, where they are kept and who hears of a rotation.
pub struct TicketStore {
    keys: Arc<TicketKeys>,
    file: Option<PathBuf>,
    hook: Mutex<Option<KeysHook>>,
}

impl std::fmt::Debug for TicketStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TicketStore")
            .field("keys", &self.keys)
            .field("file", &self.file)
            .finish_non_exhaustive()
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl TicketStore {
    fn new(set: KeySet, file: Option<PathBuf>) -> Self {
        Self {
            keys: Arc::new(TicketKeys::new(set)),
            file,
            hook: Mutex::default(),
        }
    }

    /// The keys in `file` when it holds some, else fresh ones (written
    /// there); `None`: fresh keys kept in memory only. An unreadable file
    /// is logged and replaced.
    pub fn open(file: Option<PathBuf>) -> Result<Arc<Self>, String> {
        let set = match file.as_deref().map(load) {
            Some(Ok(Some(set))) => {
                tracing::info!(file = %file.as_deref().unwrap_or(Path::new("")).display(), generation = set.generation(), "ticket keys restored");
                set
            }
            Some(Err(e)) => {
                tracing::error!(error = %e, "ticket keys unreadable: starting with new ones");
                KeySet::generate(now()).map_err(|e| e.to_string())?
            }
            _ => KeySet::generate(now()).map_err(|e| e.to_string())?,
        };
        let store = Arc::new(Self::new(set, file));
        store.persist();
        Ok(store)
    }

    /// The ticket producer to install in each rustls `ServerConfig`.
    pub fn keys(&self) -> Arc<TicketKeys> {
        self.keys.clone()
    }

    /// The key set in use.
    pub fn key_set(&self) -> KeySet {
        self.keys.key_set()
    }

    /// Calls `hook` with each set this node rotates to.
    pub fn on_rotation(&self, hook: KeysHook) {
        *self
            .hook
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(hook);
    }

    /// Merges another server's set into ours (kept on disk when it changed).
    pub fn offer(&self, theirs: &KeySet) -> Offered {
        let o = self.keys.offer(theirs);
        if let Offered::Changed(set) = &o {
            tracing::info!(
                generation = set.generation(),
                "ticket keys: a shared key set adopted"
            );
            self.persist();
        }
        o
    }

    /// Rotates every 6 hours (checked every minute), for the process's life.
    pub fn spawn_rotation(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let store = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(ROTATION_CHECK);
            loop {
                tick.tick().await;
                match store.keys.rotate_if_due(now()) {
                    Ok(None) => {}
                    Ok(Some(set)) => {
                        tracing::info!(generation = set.generation(), "ticket keys rotated");
                        store.persist();
                        let hook = store
                            .hook
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner)
                            .clone();
                        if let Some(h) = hook {
                            h(&set);
                        }
                    }
                    Err(e) => tracing::error!(error = %e, "ticket keys not rotated"),
                }
            }
        })
    }

    fn persist(&self) {
        let Some(path) = &self.file else {
            return;
        };
        if let Err(e) = save(path, &self.keys.key_set()) {
            tracing::error!(file = %path.display(), error = %e, "ticket keys not written");
        }
    }
}

/// Writes the set (base64, one line) to `path`, mode 0600, atomically.
fn save(path: &Path, set: &KeySet) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?;
    let text = base64::engine::general_purpose::STANDARD.encode(set.encode());
    f.write_all(text.as_bytes())?;
    f.write_all(b"\n")?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// Reads a set written by [`save`]; `Ok(None)` when there is no file.
fn load(path: &Path) -> Result<Option<KeySet>, String> {
    use std::os::unix::fs::PermissionsExt as _;
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    if let Ok(m) = std::fs::metadata(path)
        && m.permissions().mode() & 0o077 != 0
    {
        tracing::warn!(file = %path.display(), mode = format!("{:o}", m.permissions().mode() & 0o777), "the ticket keys file is readable by others: it is rewritten 0600");
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .map_err(|e| format!("{}: {e}", path.display()))?;
    KeySet::decode(&bytes)
        .map(Some)
        .map_err(|e| format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    #[test]
    fn the_keys_file_round_trips_with_mode_0600() {
        let dir = std::env::temp_dir().join(format!("edge-ticket-keys-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("keys");
        assert_eq!(load(&path), Ok(None));
        let set = KeySet::generate(now()).unwrap();
        save(&path, &set).unwrap();
        save(&path, &set).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(load(&path), Ok(Some(set)));
        std::fs::write(&path, "not base64!").unwrap();
        assert!(load(&path).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
