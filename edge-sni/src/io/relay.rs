//! The relay: moves bytes both ways between a client and a backend until
//! both are done, with one idle timer. [`relay`] joins two TCP sockets
//! (SNI passthrough) with `splice(2)` through a pipe per direction, so the
//! payload never enters user space (HAProxy's `option splice-auto` does the
//! same); [`relay_io`] joins any two byte streams (e.g. an HTTP Upgrade's
//! two upgraded connections) through user-space buffers. Both count the
//! bytes each way and say how the relay ended ([`RelayStats`]); whoever
//! logs or measures reads that, it never moves bytes itself.
//!
//! Each direction loops "socket → pipe" then "pipe → socket" driven by tokio's
//! readiness (`readable()` / `writable()` + `try_io`), with nix's safe
//! `splice` wrapper. When one side ends its stream the relay half-closes the
//! other side's write half and keeps the other direction running, as TCP
//! proxies do. The relay ends when both directions have ended, on the first
//! error, or when neither direction has moved a byte for the idle timeout
//! (nginx's `proxy_timeout`, HAProxy's `timeout client`/`timeout server` in
//! `mode tcp`): a long download with a silent client is not cut, a dead one
//! is.
//!
//! Where a pipe cannot be made (descriptor limit), or off Linux, the same
//! loop copies through a 64 KiB user-space buffer instead.

use std::io;
use std::net::Shutdown;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, Interest};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// Bytes moved per call: one pipe's default capacity (16 pages), also the
/// user-space buffer size of the fallback copy.
const CHUNK: usize = 64 * 1024;

/// How one relay ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayEnd {
    /// Both sides closed their sending half.
    Closed,
    /// No byte moved in either direction for the idle timeout.
    IdleTimeout,
    /// A read or write failed (e.g. a reset); the relay stopped both ways.
    Error(io::ErrorKind),
}

/// What a relay did: bytes per direction (for the access log) and why it ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RelayStats {
    /// Bytes the client sent that reached the backend (the prefix included).
    pub client_to_server: u64,
    /// Bytes the backend sent that reached the client.
    pub server_to_client: u64,
    /// How the relay ended.
    pub end: RelayEnd,
    /// How long it ran.
    pub duration: Duration,
    /// Whether the payload went through `splice(2)` (false: user-space copy).
    pub spliced: bool,
}

/// One direction's counters, shared with the idle watchdog.
#[derive(Debug, Default)]
struct Direction {
    bytes: AtomicU64,
    /// Milliseconds since the relay started at this direction's last byte.
    last_ms: AtomicU64,
}

impl Direction {
    fn moved(&self, n: usize, start: Instant) {
        self.bytes.fetch_add(n as u64, Ordering::Relaxed);
        let ms = u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }
}

/// Relays between `client` and `server` until both directions end, an error,
/// or `idle` without traffic either way. `prefix` (bytes already read from
/// the client, e.g. its ClientHello) is sent to the server first and counted.
pub async fn relay(
    client: TcpStream,
    server: TcpStream,
    prefix: &[u8],
    idle: Duration,
) -> RelayStats {
    let start = Instant::now();
    let up = Direction::default();
    let down = Direction::default();
    let mut spliced = false;
    let result = async {
        write_all(&server, prefix).await?;
        up.moved(prefix.len(), start);
        match (Pipe::new(), Pipe::new()) {
            (Ok(p1), Ok(p2)) => {
                spliced = true;
                tokio::try_join!(
                    one_way(&client, &server, Mover::Splice(p1), &up, start),
                    one_way(&server, &client, Mover::Splice(p2), &down, start),
                )
            }
            _ => {
                let (b1, b2) = (vec![0u8; CHUNK], vec![0u8; CHUNK]);
                tokio::try_join!(
                    one_way(&client, &server, Mover::Copy(b1), &up, start),
                    one_way(&server, &client, Mover::Copy(b2), &down, start),
                )
            }
        }
    };
    let end = until_idle(result, &up, &down, start, idle).await;
    stats(&up, &down, end, start, spliced)
}

/// Runs both directions until they end, or until neither has moved a byte
/// for `idle`: the relay's one idle timer.
async fn until_idle<T>(
    both: impl Future<Output = io::Result<T>>,
    up: &Direction,
    down: &Direction,
    start: Instant,
    idle: Duration,
) -> RelayEnd {
    tokio::select! {
        r = both => match r {
            Ok(_) => RelayEnd::Closed,
            Err(e) => {
                tracing::debug!(error = %e, "relay ended with an error");
                RelayEnd::Error(e.kind())
            }
        },
        () = watchdog(up, down, start, idle) => RelayEnd::IdleTimeout,
    }
}

fn stats(
    up: &Direction,
    down: &Direction,
    end: RelayEnd,
    start: Instant,
    spliced: bool,
) -> RelayStats {
    RelayStats {
        client_to_server: up.bytes.load(Ordering::Relaxed),
        server_to_client: down.bytes.load(Ordering::Relaxed),
        end,
        duration: start.elapsed(),
        spliced,
    }
}

/// Buffer per direction of [`relay_io`].
const IO_CHUNK: usize = 16 * 1024;

/// Relays between any two byte streams until both directions end, an
/// error, or `idle` without traffic either way, as [`relay`] does for TCP
/// sockets but through user-space buffers.
pub async fn relay_io<A, B>(client: A, server: B, idle: Duration) -> RelayStats
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let start = Instant::now();
    let (up, down) = (Direction::default(), Direction::default());
    let (mut cr, mut cw) = tokio::io::split(client);
    let (mut sr, mut sw) = tokio::io::split(server);
    let both = async {
        tokio::try_join!(
            copy_io(&mut cr, &mut sw, &up, start),
            copy_io(&mut sr, &mut cw, &down, start),
        )
    };
    let end = until_idle(both, &up, &down, start, idle).await;
    stats(&up, &down, end, start, false)
}

/// Copies `src` to `dst` until `src` ends, then shuts `dst`'s write half.
async fn copy_io<R, W>(src: &mut R, dst: &mut W, dir: &Direction, start: Instant) -> io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; IO_CHUNK];
    loop {
        let n = src.read(&mut buf).await?;
        let Some(chunk) = buf.get(..n).filter(|c| !c.is_empty()) else {
            // The peer may already be gone; the other direction reports that.
            let _ = dst.shutdown().await;
            return Ok(());
        };
        dst.write_all(chunk).await?;
        dst.flush().await?;
        dir.moved(n, start);
    }
}

/// Returns once neither direction has moved a byte for `idle`.
async fn watchdog(up: &Direction, down: &Direction, start: Instant, idle: Duration) {
    loop {
        let last = up
            .last_ms
            .load(Ordering::Relaxed)
            .max(down.last_ms.load(Ordering::Relaxed));
        let deadline = start + Duration::from_millis(last) + idle;
        if Instant::now() >= deadline {
            return;
        }
        tokio::time::sleep_until(deadline).await;
    }
}

/// How a direction moves bytes: through a pipe, or through a buffer.
enum Mover {
    Splice(Pipe),
    Copy(Vec<u8>),
}

/// Copies `src` to `dst` until `src` ends, then half-closes `dst`.
async fn one_way(
    src: &TcpStream,
    dst: &TcpStream,
    mut mover: Mover,
    dir: &Direction,
    start: Instant,
) -> io::Result<()> {
    loop {
        let n = loop {
            src.readable().await?;
            let r = src.try_io(Interest::READABLE, || match &mut mover {
                Mover::Splice(p) => p.fill(src),
                Mover::Copy(buf) => read_into(src, buf),
            });
            match r {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            }
        };
        if n == 0 {
            // The peer may already be gone; the other direction reports that.
            let _ = socket2::SockRef::from(dst).shutdown(Shutdown::Write);
            return Ok(());
        }
        let mut done = 0;
        while done < n {
            dst.writable().await?;
            let r = dst.try_io(Interest::WRITABLE, || match &mut mover {
                Mover::Splice(p) => p.drain(dst, n - done),
                Mover::Copy(buf) => write_from(dst, buf.get(done..n).unwrap_or_default()),
            });
            match r {
                Ok(m) => {
                    done += m;
                    dir.moved(m, start);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            }
        }
    }
}

fn read_into(src: &TcpStream, buf: &mut [u8]) -> io::Result<usize> {
    src.try_read(buf)
}

fn write_from(dst: &TcpStream, buf: &[u8]) -> io::Result<usize> {
    match dst.try_write(buf) {
        Ok(0) if !buf.is_empty() => Err(io::ErrorKind::WriteZero.into()),
        r => r,
    }
}

async fn write_all(dst: &TcpStream, mut buf: &[u8]) -> io::Result<()> {
    while !buf.is_empty() {
        dst.writable().await?;
        match dst.try_io(Interest::WRITABLE, || write_from(dst, buf)) {
            Ok(n) => buf = buf.get(n..).unwrap_or_default(),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(target_os = "linux")]
use linux::Pipe;

#[cfg(target_os = "linux")]
mod linux {
    use std::io;
    use std::os::fd::OwnedFd;

    use nix::fcntl::{OFlag, SpliceFFlags, splice};
    use tokio::net::TcpStream;

    use super::CHUNK;

    /// A non-blocking pipe holding the bytes of one direction in flight.
    #[derive(Debug)]
    pub(super) struct Pipe {
        read: OwnedFd,
        write: OwnedFd,
    }

    fn flags() -> SpliceFFlags {
        SpliceFFlags::SPLICE_F_MOVE | SpliceFFlags::SPLICE_F_NONBLOCK
    }

    impl Pipe {
        pub(super) fn new() -> io::Result<Self> {
            let (read, write) = nix::unistd::pipe2(OFlag::O_NONBLOCK | OFlag::O_CLOEXEC)?;
            Ok(Self { read, write })
        }

        /// Socket → pipe; only called with an empty pipe, so `WouldBlock`
        /// means the socket has nothing to read.
        pub(super) fn fill(&mut self, src: &TcpStream) -> io::Result<usize> {
            Ok(splice(src, None, &self.write, None, CHUNK, flags())?)
        }

        /// Pipe → socket, at most the `len` bytes the pipe holds.
        pub(super) fn drain(&mut self, dst: &TcpStream, len: usize) -> io::Result<usize> {
            match splice(&self.read, None, dst, None, len, flags())? {
                0 => Err(io::ErrorKind::WriteZero.into()),
                n => Ok(n),
            }
        }
    }
}

/// Off Linux there is no `splice(2)`: the relay always copies.
#[cfg(not(target_os = "linux"))]
#[derive(Debug)]
struct Pipe;

#[cfg(not(target_os = "linux"))]
impl Pipe {
    fn new() -> io::Result<Self> {
        Err(io::ErrorKind::Unsupported.into())
    }
    fn fill(&mut self, _: &TcpStream) -> io::Result<usize> {
        Err(io::ErrorKind::Unsupported.into())
    }
    fn drain(&mut self, _: &TcpStream, _: usize) -> io::Result<usize> {
        Err(io::ErrorKind::Unsupported.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    /// A connected (relay side, far side) pair of loopback sockets.
    async fn pair() -> (TcpStream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let (a, b) = tokio::join!(l.accept(), TcpStream::connect(addr));
        (a.unwrap().0, b.unwrap())
    }

    /// Deterministic pseudo-random bytes (xorshift), different per seed.
    fn data(len: usize, seed: u64) -> Vec<u8> {
        let mut x = seed | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    /// client ⇄ [relay] ⇄ server; returns the outer ends and the relay task.
    async fn setup(
        prefix: &'static [u8],
        idle: Duration,
    ) -> (TcpStream, TcpStream, tokio::task::JoinHandle<RelayStats>) {
        let (relay_client, client) = pair().await;
        let (relay_server, server) = pair().await;
        let task = tokio::spawn(relay(relay_client, relay_server, prefix, idle));
        (client, server, task)
    }

    #[tokio::test]
    async fn bulk_both_directions_arrive_intact_with_byte_counts() {
        let (client, server, task) = setup(b"hello", Duration::from_secs(30)).await;
        let up = data(6 * 1024 * 1024 + 17, 1);
        let down = data(5 * 1024 * 1024 + 3, 2);
        let (mut cr, mut cw) = client.into_split();
        let (mut sr, mut sw) = server.into_split();
        let (up2, down2) = (up.clone(), down.clone());
        let send_up = tokio::spawn(async move {
            cw.write_all(&up2).await.unwrap();
            cw.shutdown().await.unwrap();
            cw
        });
        let send_down = tokio::spawn(async move {
            sw.write_all(&down2).await.unwrap();
            sw.shutdown().await.unwrap();
            sw
        });
        let recv_up = tokio::spawn(async move {
            let mut v = Vec::new();
            sr.read_to_end(&mut v).await.unwrap();
            v
        });
        let mut got_down = Vec::new();
        cr.read_to_end(&mut got_down).await.unwrap();
        let got_up = recv_up.await.unwrap();
        let (_cw, _sw) = (send_up.await.unwrap(), send_down.await.unwrap());
        assert_eq!(&got_up[..5], b"hello");
        assert!(got_up[5..] == up[..], "client→server bytes differ");
        assert!(got_down == down, "server→client bytes differ");
        let stats = task.await.unwrap();
        assert_eq!(stats.end, RelayEnd::Closed);
        assert_eq!(stats.client_to_server, up.len() as u64 + 5);
        assert_eq!(stats.server_to_client, down.len() as u64);
        assert_eq!(stats.spliced, cfg!(target_os = "linux"));
    }

    #[tokio::test]
    async fn streams_relay_both_ways_and_idle_out() {
        let (relay_client, mut client) = pair().await;
        let (relay_server, mut server) = pair().await;
        let idle = Duration::from_millis(300);
        let task = tokio::spawn(relay_io(relay_client, relay_server, idle));
        let up = data(200 * 1024 + 1, 4);
        let (up2, mut got) = (up.clone(), vec![0u8; up.len()]);
        let w = tokio::spawn(async move {
            client.write_all(&up2).await.unwrap();
            client
        });
        server.read_exact(&mut got).await.unwrap();
        assert!(got == up);
        server.write_all(b"pong").await.unwrap();
        let mut client = w.await.unwrap();
        let mut pong = [0u8; 4];
        client.read_exact(&mut pong).await.unwrap();
        let stats = tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .expect("relay ended")
            .unwrap();
        assert_eq!(stats.end, RelayEnd::IdleTimeout);
        assert_eq!(
            (stats.client_to_server, stats.server_to_client),
            (up.len() as u64, 4)
        );
        assert!(!stats.spliced && stats.duration >= idle);
        let mut rest = Vec::new();
        assert_eq!(client.read_to_end(&mut rest).await.unwrap(), 0);
    }

    #[tokio::test]
    async fn half_close_keeps_the_other_direction_open() {
        let (mut client, mut server, task) = setup(b"", Duration::from_secs(30)).await;
        client.write_all(b"request").await.unwrap();
        client.shutdown().await.unwrap();
        // The server sees the request, then EOF, while it can still answer.
        let mut req = Vec::new();
        server.read_to_end(&mut req).await.unwrap();
        assert_eq!(req, b"request");
        let answer = data(300 * 1024, 3);
        server.write_all(&answer).await.unwrap();
        server.shutdown().await.unwrap();
        let mut got = Vec::new();
        client.read_to_end(&mut got).await.unwrap();
        assert!(got == answer);
        let stats = task.await.unwrap();
        assert_eq!(stats.end, RelayEnd::Closed);
        assert_eq!(
            (stats.client_to_server, stats.server_to_client),
            (7, 300 * 1024)
        );
    }

    #[tokio::test]
    async fn idle_connection_is_closed_after_the_idle_timeout() {
        let idle = Duration::from_millis(300);
        let (mut client, mut server, task) = setup(b"", idle).await;
        client.write_all(b"x").await.unwrap();
        let mut b = [0u8; 1];
        server.read_exact(&mut b).await.unwrap();
        let quiet = std::time::Instant::now();
        let stats = tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .expect("relay ended")
            .unwrap();
        assert_eq!(stats.end, RelayEnd::IdleTimeout);
        assert!(quiet.elapsed() >= Duration::from_millis(250));
        // Both outer ends see the close.
        let mut rest = Vec::new();
        assert_eq!(client.read_to_end(&mut rest).await.unwrap(), 0);
        assert_eq!(server.read_to_end(&mut rest).await.unwrap(), 0);
    }

    #[tokio::test]
    async fn one_way_traffic_keeps_the_connection_alive_past_the_idle_timeout() {
        // A download with a silent client lasts 4× the idle timeout.
        let idle = Duration::from_millis(200);
        let (mut client, mut server, task) = setup(b"", idle).await;
        let send = tokio::spawn(async move {
            for i in 0..16u8 {
                server.write_all(&[i; 1000]).await.unwrap();
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            server.shutdown().await.unwrap();
            server
        });
        let mut got = Vec::new();
        client.read_to_end(&mut got).await.unwrap();
        assert_eq!(got.len(), 16_000);
        // The client never closed its half, so the relay now idles out.
        let stats = task.await.unwrap();
        assert_eq!(stats.end, RelayEnd::IdleTimeout);
        assert_eq!(stats.server_to_client, 16_000);
        drop(send.await.unwrap());
    }
}
