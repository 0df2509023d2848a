//! [`DirStorage`]: storage in a directory, local or on a shared filesystem.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::{KeyInfo, Storage, StorageError, StorageFuture, validate_key};

/// Largest value [`DirStorage`] will read (certificate chains are a few KiB).
const MAX_VALUE_LEN: u64 = 1 << 20;

/// A [`Storage`] in a directory.
///
/// - Writes are atomic: the value goes to a uniquely named temporary file in
///   the same directory, is flushed with `fsync`, then renamed over the key,
///   and the directory itself is synced. A crash leaves the old value or the
///   new one, never a torn file.
/// - Every file is created `0600` and every directory `0700`: the directory
///   holds private keys.
/// - Locks are files under `locks/` created with `O_CREAT|O_EXCL`, which is
///   atomic on local filesystems and on NFSv3 or later, holding the owner and
///   an expiry time. An expired lock is moved aside with `rename` (atomic) and
///   checked before it is removed, so two nodes breaking the same stale lock
///   cannot remove each other's fresh one. Nodes sharing the directory must
///   have synchronised clocks (NTP), since expiry times are wall-clock times.
#[derive(Debug, Clone)]
pub struct DirStorage {
    root: Arc<PathBuf>,
}

#[derive(Serialize, Deserialize, PartialEq, Eq, Debug)]
struct LockFile {
    owner: String,
    /// Milliseconds since the Unix epoch.
    expires_ms: u64,
}

impl DirStorage {
    /// Storage rooted at `root` (created `0700` on first write if missing).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self {
            root: Arc::new(root.into()),
        }
    }

    /// The directory this storage lives in.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path(&self, key: &str) -> Result<PathBuf, StorageError> {
        validate_key(key)?;
        Ok(self.root.join(key))
    }

    fn lock_path(&self, name: &str) -> Result<PathBuf, StorageError> {
        validate_key(name)?;
        if name.contains('/') {
            return Err(StorageError::InvalidKey {
                key: name.to_owned(),
                reason: "lock names cannot contain '/'",
            });
        }
        Ok(self.root.join("locks").join(format!("{name}.lock")))
    }
}

/// Runs blocking filesystem work off the async runtime.
fn blocking<T: Send + 'static>(
    key: &str,
    f: impl FnOnce() -> Result<T, StorageError> + Send + 'static,
) -> StorageFuture<'static, T> {
    let key = key.to_owned();
    Box::pin(async move {
        match tokio::task::spawn_blocking(f).await {
            Ok(result) => result,
            Err(join) => Err(StorageError::io(&key, io::Error::other(join))),
        }
    })
}

fn create_dirs(dir: &Path) -> io::Result<()> {
    DirBuilder::new().recursive(true).mode(0o700).create(dir)
}

fn unique_suffix() -> String {
    format!("{}.{:016x}", std::process::id(), rand::random::<u64>())
}

/// Writes `value` to `path` atomically: temp file, fsync, rename, fsync dir.
fn write_atomic(path: &Path, value: &[u8]) -> io::Result<()> {
    let dir = path.parent().ok_or_else(|| io::Error::other("no parent"))?;
    create_dirs(dir)?;
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| io::Error::other("no file name"))?;
    let tmp = dir.join(format!(".{name}.tmp.{}", unique_suffix()));
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        file.write_all(value)?;
        file.sync_all()?;
        fs::rename(&tmp, path)?;
        File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

fn read_capped(path: &Path) -> io::Result<Vec<u8>> {
    let file = File::open(path)?;
    let mut buf = Vec::new();
    file.take(MAX_VALUE_LEN + 1).read_to_end(&mut buf)?;
    if buf.len() as u64 > MAX_VALUE_LEN {
        return Err(io::Error::other(format!(
            "value larger than {MAX_VALUE_LEN} bytes"
        )));
    }
    Ok(buf)
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

fn expiry_ms(ttl: Duration) -> u64 {
    now_ms().saturating_add(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX))
}

/// When a lock file that does not parse stops counting: its mtime plus `ttl`.
fn unparsable_lock_expired(path: &Path, ttl: Duration) -> bool {
    match fs::metadata(path).and_then(|m| m.modified()) {
        Ok(modified) => modified + ttl < SystemTime::now(),
        Err(_) => true,
    }
}

fn read_lock(path: &Path) -> io::Result<Option<(Vec<u8>, Option<LockFile>)>> {
    match read_capped(path) {
        Ok(bytes) => {
            let parsed = serde_json::from_slice(&bytes).ok();
            Ok(Some((bytes, parsed)))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

fn try_lock_blocking(path: &Path, owner: &str, ttl: Duration) -> io::Result<bool> {
    create_dirs(path.parent().ok_or_else(|| io::Error::other("no parent"))?)?;
    let contents = serde_json::to_vec(&LockFile {
        owner: owner.to_owned(),
        expires_ms: expiry_ms(ttl),
    })?;
    // Two rounds: the second one after breaking a stale lock.
    for _ in 0..2 {
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
        {
            Ok(mut file) => {
                file.write_all(&contents)?;
                file.sync_all()?;
                return Ok(true);
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
        let Some((raw, parsed)) = read_lock(path)? else {
            continue; // released between our create and read: try again
        };
        let expired = match &parsed {
            Some(lock) if lock.owner == owner => {
                write_atomic(path, &contents)?;
                return Ok(true);
            }
            Some(lock) => lock.expires_ms < now_ms(),
            None => unparsable_lock_expired(path, ttl),
        };
        if !expired {
            return Ok(false);
        }
        let holder = parsed.map_or_else(|| "<unreadable>".to_owned(), |l| l.owner);
        tracing::warn!(lock = %path.display(), %holder, "breaking expired storage lock (holder died or stalled)");
        break_stale(path, &raw)?;
    }
    Ok(false)
}

/// Moves a stale lock aside and removes it, unless what was moved is not the
/// stale lock we looked at (another node broke it and took a fresh one in
/// between): then the fresh lock is put back.
fn break_stale(path: &Path, observed: &[u8]) -> io::Result<()> {
    let aside = path.with_extension(format!("stale.{}", unique_suffix()));
    match fs::rename(path, &aside) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    }
    let moved = read_capped(&aside).unwrap_or_default();
    if moved != observed {
        // Not ours to break: restore it unless a new lock exists already.
        let _ = fs::hard_link(&aside, path);
    }
    fs::remove_file(&aside)
}

fn refresh_blocking(path: &Path, owner: &str, ttl: Duration) -> io::Result<bool> {
    match read_lock(path)? {
        Some((_, Some(lock))) if lock.owner == owner => {
            let contents = serde_json::to_vec(&LockFile {
                owner: owner.to_owned(),
                expires_ms: expiry_ms(ttl),
            })?;
            write_atomic(path, &contents)?;
            Ok(true)
        }
        _ => Ok(false),
    }
}

fn unlock_blocking(path: &Path, owner: &str) -> io::Result<()> {
    if let Some((_, Some(lock))) = read_lock(path)?
        && lock.owner == owner
    {
        match fs::remove_file(path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    Ok(())
}

fn list_blocking(root: &Path, dir: &Path, out: &mut Vec<String>) -> io::Result<()> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        if name.to_string_lossy().starts_with('.') {
            continue; // temporary files
        }
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            list_blocking(root, &path, out)?;
        } else if let Ok(rel) = path.strip_prefix(root)
            && let Some(key) = rel.to_str()
        {
            out.push(key.to_owned());
        }
    }
    Ok(())
}

impl Storage for DirStorage {
    fn store<'a>(&'a self, key: &'a str, value: &'a [u8]) -> StorageFuture<'a, ()> {
        let path = match self.path(key) {
            Ok(path) => path,
            Err(e) => return Box::pin(async { Err(e) }),
        };
        let value = value.to_vec();
        let k = key.to_owned();
        blocking(key, move || {
            write_atomic(&path, &value).map_err(|e| StorageError::io(&k, e))
        })
    }

    fn load<'a>(&'a self, key: &'a str) -> StorageFuture<'a, Vec<u8>> {
        let path = match self.path(key) {
            Ok(path) => path,
            Err(e) => return Box::pin(async { Err(e) }),
        };
        let k = key.to_owned();
        blocking(key, move || match read_capped(&path) {
            Ok(v) => Ok(v),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(StorageError::NotFound(k)),
            Err(e) => Err(StorageError::io(&k, e)),
        })
    }

    fn delete<'a>(&'a self, key: &'a str) -> StorageFuture<'a, ()> {
        let path = match self.path(key) {
            Ok(path) => path,
            Err(e) => return Box::pin(async { Err(e) }),
        };
        let k = key.to_owned();
        blocking(key, move || match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(StorageError::io(&k, e)),
        })
    }

    fn list<'a>(&'a self, prefix: &'a str) -> StorageFuture<'a, Vec<String>> {
        let root = self.root.as_ref().clone();
        let dir = if prefix.is_empty() {
            Ok(root.clone())
        } else {
            self.path(prefix)
        };
        let k = prefix.to_owned();
        blocking(prefix, move || {
            let dir = dir?;
            let mut out = Vec::new();
            list_blocking(&root, &dir, &mut out).map_err(|e| StorageError::io(&k, e))?;
            out.sort();
            Ok(out)
        })
    }

    fn stat<'a>(&'a self, key: &'a str) -> StorageFuture<'a, KeyInfo> {
        let path = match self.path(key) {
            Ok(path) => path,
            Err(e) => return Box::pin(async { Err(e) }),
        };
        let k = key.to_owned();
        blocking(key, move || match fs::metadata(&path) {
            Ok(meta) => Ok(KeyInfo {
                modified: meta.modified().map_err(|e| StorageError::io(&k, e))?,
                size: meta.len(),
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(StorageError::NotFound(k)),
            Err(e) => Err(StorageError::io(&k, e)),
        })
    }

    fn try_lock<'a>(
        &'a self,
        name: &'a str,
        owner: &'a str,
        ttl: Duration,
    ) -> StorageFuture<'a, bool> {
        let path = match self.lock_path(name) {
            Ok(path) => path,
            Err(e) => return Box::pin(async { Err(e) }),
        };
        let (k, owner) = (name.to_owned(), owner.to_owned());
        blocking(name, move || {
            try_lock_blocking(&path, &owner, ttl).map_err(|e| StorageError::io(&k, e))
        })
    }

    fn refresh_lock<'a>(
        &'a self,
        name: &'a str,
        owner: &'a str,
        ttl: Duration,
    ) -> StorageFuture<'a, bool> {
        let path = match self.lock_path(name) {
            Ok(path) => path,
            Err(e) => return Box::pin(async { Err(e) }),
        };
        let (k, owner) = (name.to_owned(), owner.to_owned());
        blocking(name, move || {
            refresh_blocking(&path, &owner, ttl).map_err(|e| StorageError::io(&k, e))
        })
    }

    fn unlock<'a>(&'a self, name: &'a str, owner: &'a str) -> StorageFuture<'a, ()> {
        let path = match self.lock_path(name) {
            Ok(path) => path,
            Err(e) => return Box::pin(async { Err(e) }),
        };
        let (k, owner) = (name.to_owned(), owner.to_owned());
        blocking(name, move || {
            unlock_blocking(&path, &owner).map_err(|e| StorageError::io(&k, e))
        })
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;
    use std::sync::Arc;

    use super::*;

    fn storage() -> (tempfile::TempDir, DirStorage) {
        let dir = tempfile::tempdir().unwrap();
        let storage = DirStorage::new(dir.path().join("store"));
        (dir, storage)
    }

    #[tokio::test]
    async fn keys_and_values() {
        let (_dir, s) = storage();
        crate::storage::contract::keys_and_values(&s).await;
    }

    #[tokio::test]
    async fn files_are_private_and_no_temp_files_remain() {
        let (_dir, s) = storage();
        s.store("certificates/x/privkey.pem", b"secret")
            .await
            .unwrap();
        let file = s.root().join("certificates/x/privkey.pem");
        let mode = fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let dir_mode = fs::metadata(file.parent().unwrap())
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(dir_mode, 0o700);
        let names: Vec<_> = fs::read_dir(file.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["privkey.pem"]);
    }

    #[tokio::test]
    async fn lock_is_exclusive_and_reentrant_for_owner() {
        let (_dir, s) = storage();
        crate::storage::contract::locks(&s).await;
    }

    #[tokio::test]
    async fn lock_of_dead_holder_expires() {
        let (_dir, s) = storage();
        let path = s.lock_path("cert-a").unwrap();
        create_dirs(path.parent().unwrap()).unwrap();
        let dead = LockFile {
            owner: "dead-node".into(),
            expires_ms: now_ms() - 1000,
        };
        fs::write(&path, serde_json::to_vec(&dead).unwrap()).unwrap();
        assert!(
            s.try_lock("cert-a", "node1", Duration::from_secs(5))
                .await
                .unwrap()
        );
        let now: LockFile = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
        assert_eq!(now.owner, "node1");
        // The holder lost the lock: refresh says so.
        assert!(
            !s.refresh_lock("cert-a", "dead-node", Duration::from_secs(5))
                .await
                .unwrap()
        );
    }

    #[tokio::test]
    async fn corrupt_lock_file_counts_until_its_mtime_plus_ttl() {
        let (_dir, s) = storage();
        let path = s.lock_path("cert-a").unwrap();
        create_dirs(path.parent().unwrap()).unwrap();
        fs::write(&path, b"\0garbage").unwrap();
        assert!(
            !s.try_lock("cert-a", "n", Duration::from_secs(60))
                .await
                .unwrap()
        );
        assert!(s.try_lock("cert-a", "n", Duration::ZERO).await.unwrap());
    }

    #[test]
    fn breaking_a_lock_that_changed_restores_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.lock");
        fs::write(&path, b"fresh lock of another node").unwrap();
        break_stale(&path, b"the stale lock we saw").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"fresh lock of another node");
        break_stale(&path, b"fresh lock of another node").unwrap();
        assert!(!path.exists());
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[tokio::test]
    async fn concurrent_lockers_one_winner() {
        let (_dir, s) = storage();
        crate::storage::contract::one_winner_among_lockers(Arc::new(s)).await;
    }
}
