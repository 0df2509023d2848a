//! The admin socket: HAProxy's runtime API, the edge way.
//!
//! A unix socket (`[admin] socket`, mode 0660 by default, never a TCP
//! port, so only local users with file access to it can reach it) takes
//! one command line per connection (several commands separated by `;`,
//! as HAProxy's runtime API takes them), answers with text and closes:
//!
//! ```text
//! $ edge admin -s /run/edge/admin.sock show servers app
//! # pool server         admin health reason since weight in_flight queue requests failures from
//! app    127.0.0.1:8001 ready up     passed 120s  1      0         0     5310     0        -
//! app    127.0.0.1:8002 drain up     passed 120s  1      2         0     5122     0        peer
//! ```
//!
//! An answer line that starts with `error:` is a failed command (`edge
//! admin` exits 1 if any line does); anything else succeeded. The commands are in
//! [`command::HELP`].
//!
//! Server states ([`AdminState`]: ready, drain, maint) and runtime weights
//! live in [`Admin`], keyed by pool name and server address, outside the
//! swapped [`State`](crate::state::State): [`Admin::adopt`] applies them to
//! every new state (call it before storing the state, at start and on
//! each reload), so they survive a reload for the servers that stay.
//! Drain and maint take a server out of the balancer's rotation
//! (edge-balance `drain`), which HTTP forwarding and passthrough both pick
//! from; health is tracked apart, so an enabled server goes back in
//! rotation only while its checks pass. With `[peer]`, states are shared
//! with the other node of a pair (`registry`'s `sync`: the newest change
//! wins) and `show servers` says where each came from.

pub(crate) mod certs;
pub mod client;
pub mod command;
mod exec;
pub mod registry;
mod state_file;
mod table;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::Semaphore;

pub(crate) use exec::policy_name;
pub use registry::{Admin, AdminState, ChangeHook, Origin, Stamp, Usage};
pub use state_file::Entry as ServerRecord;

use crate::config::AdminSettings;
use crate::state::SharedState;

/// What the `reload` command runs: re-read and apply the config file;
/// `Ok` carries a summary for the operator, `Err` why the old config stays.
pub type ReloadFn = Arc<dyn Fn() -> BoxFuture<'static, Result<String, String>> + Send + Sync>;

/// A [`ReloadFn`] for a process that cannot reload.
pub fn no_reload() -> ReloadFn {
    Arc::new(|| Box::pin(async { Err("this edge cannot reload (no reload hook)".to_string()) }))
}

/// Admin connections served at once; more are refused with an error line.
const MAX_CONNECTIONS: usize = 16;
/// How long a client has to send its command line.
const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How long writing the answer may take.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// One answer: its text and whether the command succeeded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub ok: bool,
    pub text: String,
}

impl Answer {
    pub fn ok(text: impl Into<String>) -> Self {
        Self {
            ok: true,
            text: text.into(),
        }
    }
    /// An error answer: one line `error: MSG`.
    pub fn err(msg: impl AsRef<str>) -> Self {
        let one_line: String = msg
            .as_ref()
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        Self {
            ok: false,
            text: format!("error: {one_line}\n"),
        }
    }
}

/// The bound admin socket; removes the socket file when dropped.
#[derive(Debug)]
pub struct AdminSocket {
    path: PathBuf,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for AdminSocket {
    fn drop(&mut self) {
        self.task.abort();
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Binds `[admin] socket` (when set) and serves it. `None` when no socket
/// is configured.
pub fn start(
    settings: &AdminSettings,
    admin: Arc<Admin>,
    shared: SharedState,
    reload: ReloadFn,
) -> Result<Option<AdminSocket>, String> {
    let Some(path) = &settings.socket else {
        return Ok(None);
    };
    let listener = bind(path, settings.mode, settings.group)
        .map_err(|e| format!("cannot bind the admin socket {}: {e}", path.display()))?;
    tracing::info!(socket = %path.display(), mode = format!("{:o}", settings.mode), "admin socket listening");
    let ctx = exec::Ctx {
        admin,
        shared,
        reload,
    };
    let task = tokio::spawn(serve(listener, ctx));
    Ok(Some(AdminSocket {
        path: path.clone(),
        task,
    }))
}

/// Binds the socket under a temporary name, sets its mode and group, then
/// renames it into place (as HAProxy does), so it is never reachable with
/// looser permissions. Refuses to replace a socket another process serves.
pub fn bind(path: &Path, mode: u32, group: Option<u32>) -> std::io::Result<UnixListener> {
    use std::io::{Error, ErrorKind};
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            return Err(Error::new(
                ErrorKind::AlreadyExists,
                "the path exists and is not a socket",
            ));
        }
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(Error::new(
                ErrorKind::AddrInUse,
                "another process serves this socket",
            ));
        }
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".{}.tmp", std::process::id()));
    let tmp = PathBuf::from(tmp);
    let _ = std::fs::remove_file(&tmp);
    let listener = UnixListener::bind(&tmp)?;
    let placed = (|| {
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode))?;
        if let Some(gid) = group {
            std::os::unix::fs::chown(&tmp, None, Some(gid))?;
        }
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = placed {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    Ok(listener)
}

async fn serve(listener: UnixListener, ctx: exec::Ctx) {
    let limit = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let mut stream = match listener.accept().await {
            Ok((s, _)) => s,
            Err(e) => {
                tracing::warn!(error = %e, "admin accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = limit.clone().try_acquire_owned() else {
            tokio::spawn(async move {
                let a = Answer::err("too many admin connections; try again");
                let _ =
                    tokio::time::timeout(WRITE_TIMEOUT, stream.write_all(a.text.as_bytes())).await;
            });
            continue;
        };
        let ctx = ctx.clone();
        tokio::spawn(async move {
            let _permit = permit;
            connection(stream, &ctx).await;
        });
    }
}

/// Reads one command line, runs it, writes the answer, closes.
async fn connection(stream: UnixStream, ctx: &exec::Ctx) {
    use tracing::Instrument;
    // Who asked, for the record: every change is logged in this span.
    let cred = stream.peer_cred().ok();
    let span = tracing::info_span!(
        "admin",
        uid = cred.map(|c| c.uid()),
        pid = cred.and_then(|c| c.pid())
    );
    let (r, mut w) = stream.into_split();
    let mut line = Vec::new();
    let mut reader = BufReader::new(r).take(command::MAX_LINE as u64 + 2);
    let read = reader.read_until(b'\n', &mut line);
    let answer = match tokio::time::timeout(READ_TIMEOUT, read).await {
        Err(_) => Answer::err("no command received in time"),
        Ok(Err(e)) => Answer::err(format!("cannot read the command: {e}")),
        Ok(Ok(_)) => answer_line(&line, ctx).instrument(span).await,
    };
    let _ = tokio::time::timeout(WRITE_TIMEOUT, async {
        w.write_all(answer.text.as_bytes()).await?;
        w.shutdown().await
    })
    .await;
}

/// At most this many `;`-separated commands run from one line.
const MAX_COMMANDS: usize = 16;

/// Runs the line's commands in order (HAProxy's `cmd1; cmd2` form) and
/// joins their answers; the line failed if any command failed.
async fn answer_line(line: &[u8], ctx: &exec::Ctx) -> Answer {
    let trimmed = line.strip_suffix(b"\n").unwrap_or(line);
    let trimmed = trimmed.strip_suffix(b"\r").unwrap_or(trimmed);
    if trimmed.len() > command::MAX_LINE {
        return Answer::err(format!("command longer than {} bytes", command::MAX_LINE));
    }
    let Ok(text) = std::str::from_utf8(trimmed) else {
        return Answer::err("the command is not UTF-8");
    };
    let commands: Vec<&str> = text
        .split(';')
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect();
    if commands.len() > MAX_COMMANDS {
        return Answer::err(format!("more than {MAX_COMMANDS} commands on one line"));
    }
    let Some((first, rest)) = commands.split_first() else {
        // Parsing the empty line gives its own error (and the help hint).
        return answer_one(text, ctx).await;
    };
    let mut answer = answer_one(first, ctx).await;
    for cmd in rest {
        let next = answer_one(cmd, ctx).await;
        answer.ok &= next.ok;
        answer.text.push_str(&next.text);
    }
    answer
}

async fn answer_one(text: &str, ctx: &exec::Ctx) -> Answer {
    match command::parse(text) {
        Ok(cmd) => {
            tracing::debug!(command = text, "admin command");
            ctx.run(cmd).await
        }
        Err(e) => Answer::err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("edge-admin-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[tokio::test]
    async fn bind_sets_the_mode_and_guards_the_path() {
        let d = dir("bind");
        let path = d.join("a.sock");
        let l = bind(&path, 0o640, None).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o640);
        // No temporary file is left behind.
        assert_eq!(std::fs::read_dir(&d).unwrap().count(), 1);
        // A socket someone serves is not taken over...
        let e = bind(&path, 0o660, None).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::AddrInUse);
        // ...a stale one is.
        drop(l);
        let _l = bind(&path, 0o660, None).unwrap();
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o660
        );
        // A regular file is never replaced.
        let file = d.join("file");
        std::fs::write(&file, "keep").unwrap();
        assert!(bind(&file, 0o660, None).is_err());
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "keep");
        // A missing directory is a clear error.
        assert!(bind(&d.join("no/such/dir.sock"), 0o660, None).is_err());
        let _ = std::fs::remove_dir_all(&d);
    }

    fn state(ports: &[u16]) -> crate::state::State {
        let servers: String = ports
            .iter()
            .map(|p| format!("[[pool.server]]\naddress = \"127.0.0.1:{p}\"\n"))
            .collect();
        let text = format!(
            "[[route]]\nrespond = {{ status = 200 }}\n[https]\nlisten = []\n[http]\nlisten = []\n[[pool]]\nname = \"app\"\n{servers}"
        );
        let v = crate::config::load_str(
            crate::config::Source::new(Path::new("t.toml"), text),
            Path::new("."),
        )
        .unwrap();
        crate::state::State::build(&v, &crate::telemetry::Telemetry::new()).unwrap()
    }

    /// The reload hook as the lead wires it: build the new state, adopt it,
    /// store it. Drains survive it; the answer is the hook's.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn reload_hook_and_drain_across_a_reload() {
        let d = dir("reload");
        let path = d.join("admin.sock");
        let admin = Admin::new("t.toml");
        let first = state(&[1, 2]);
        admin.adopt(&first);
        let shared: SharedState = Arc::new(arc_swap::ArcSwap::from_pointee(first));
        let reload: ReloadFn = {
            let (admin, shared) = (admin.clone(), shared.clone());
            Arc::new(move || {
                let (admin, shared) = (admin.clone(), shared.clone());
                Box::pin(async move {
                    let new = state(&[1, 2, 3]);
                    admin.adopt(&new);
                    shared.store(Arc::new(new));
                    Ok("added server 127.0.0.1:3".to_string())
                })
            })
        };
        let settings = AdminSettings {
            socket: Some(path.clone()),
            ..AdminSettings::default()
        };
        let sock = start(&settings, admin.clone(), shared.clone(), reload)
            .unwrap()
            .unwrap();
        let send = |line: &'static str| {
            let path = path.clone();
            async move {
                tokio::task::spawn_blocking(move || client::send(&path, line).unwrap())
                    .await
                    .unwrap()
            }
        };
        let out = send("drain app 127.0.0.1:1 --timeout 1s").await;
        assert!(out.starts_with("drained:"), "{out}");
        assert_eq!(send("reload").await, "added server 127.0.0.1:3");
        let out = send("show servers").await;
        assert_eq!(out.lines().count(), 4, "{out}");
        assert!(
            out.lines()
                .any(|l| l.starts_with("app") && l.contains("127.0.0.1:1 drain")),
            "{out}"
        );
        let pool = shared.load().backends["app"].pool.clone();
        for _ in 0..10 {
            assert_ne!(pool.pick(&[]).unwrap().key().port(), 1);
        }
        assert!(send("show info").await.contains("Generation: 2\n"));
        // Several commands on one line run in order; one failing fails the
        // line, the others still run.
        let out = send("show info; enable app 127.0.0.1:1 ;show servers").await;
        assert!(
            out.starts_with("Name: edge") || out.contains("Generation: 2\n"),
            "{out}"
        );
        assert!(
            out.lines()
                .any(|l| l.starts_with("app") && l.contains("127.0.0.1:1 ready")),
            "{out}"
        );
        let out = send("show pools; set weight app 127.0.0.1:9 3; show info").await;
        assert!(
            out.lines().any(|l| l.starts_with("error:")),
            "unknown server must fail: {out}"
        );
        assert!(out.contains("Generation: 2\n"), "{out}");
        // Past the connection limit: an error line, not a hang.
        let mut held = Vec::new();
        for _ in 0..MAX_CONNECTIONS {
            held.push(tokio::net::UnixStream::connect(&path).await.unwrap());
        }
        let mut extra = tokio::net::UnixStream::connect(&path).await.unwrap();
        let mut answer = String::new();
        extra.read_to_string(&mut answer).await.unwrap();
        assert!(answer.starts_with("error: too many"), "{answer}");
        // The `edge admin` client says so too, also when edge has answered
        // and closed before the command was written (a broken pipe before).
        let late = std::os::unix::net::UnixStream::connect(&path).unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        let answer = tokio::task::spawn_blocking(move || {
            client::exchange(late, "show info", Duration::from_secs(5))
        })
        .await
        .unwrap();
        assert!(
            answer
                .as_ref()
                .is_ok_and(|a| a.starts_with("error: too many")),
            "{answer:?}"
        );
        drop(held);
        drop(sock);
        assert!(!path.exists(), "the socket file is removed at stop");
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn error_answers_are_one_line() {
        let a = Answer::err("bad\nthing\r");
        assert_eq!(a.text, "error: bad thing \n");
        assert!(!a.ok);
    }
}
