//! One sink: a bounded queue and a writer thread (stdout, file, syslog UDP
//! or TCP). Writer threads use blocking I/O so that a slow disk or
//! collector never occupies a runtime worker; they end when every sender
//! is gone and the queue is drained.

use std::io::Write;
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::mpsc;

use super::format::{self, SyslogHeader};
use super::{AccessRecord, SinkError};
use crate::config::AccessLogSettings;
use crate::config::observability::{AccessLogTarget, SyslogSettings, SyslogTransport};
use crate::metrics::SinkStats;

/// What the queue carries.
#[derive(Debug)]
enum Msg {
    Record(Arc<AccessRecord>),
    /// Reopen the file (records queued before go to the old one).
    Reopen,
}

/// Bytes formatted before they are written out in one go.
const BATCH_BYTES: usize = 64 * 1024;
/// First and largest wait between TCP connection attempts.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// A TCP collector that takes no bytes for this long is reconnected.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A running sink.
#[derive(Debug)]
pub(crate) struct Sink {
    pub(crate) settings: AccessLogSettings,
    tx: mpsc::Sender<Msg>,
    stats: Arc<SinkStats>,
    reopen: Arc<AtomicBool>,
}

impl Sink {
    /// Opens the destination and starts the writer thread.
    pub(crate) fn start(
        settings: AccessLogSettings,
        stats: Arc<SinkStats>,
    ) -> Result<Arc<Self>, SinkError> {
        let (tx, rx) = mpsc::channel(settings.queue);
        let reopen = Arc::new(AtomicBool::new(false));
        let name = settings.name.clone();
        let writer: Box<dyn FnOnce() + Send> = match &settings.target {
            AccessLogTarget::Stdout => {
                let w = Lines::new(None, rx, stats.clone(), reopen.clone());
                Box::new(move || w.run())
            }
            AccessLogTarget::File(path) => {
                let f = open(path).map_err(|source| SinkError::Open {
                    name: name.clone(),
                    path: path.display().to_string(),
                    source,
                })?;
                let w = Lines::new(Some((path.clone(), f)), rx, stats.clone(), reopen.clone());
                Box::new(move || w.run())
            }
            AccessLogTarget::Syslog(s) => {
                let header = SyslogHeader {
                    pri: s.facility * 8 + s.severity,
                    hostname: s.hostname.clone().unwrap_or_else(format::system_hostname),
                    app_name: s.app_name.clone(),
                    procid: std::process::id(),
                };
                match s.transport {
                    SyslogTransport::Udp => {
                        let sock = udp(s).map_err(|source| SinkError::Socket {
                            name: name.clone(),
                            source,
                        })?;
                        let (st, max) = (stats.clone(), s.max_datagram);
                        Box::new(move || run_udp(sock, header, max, rx, &st))
                    }
                    SyslogTransport::Tcp => {
                        let (st, addr) = (stats.clone(), s.address);
                        Box::new(move || run_tcp(addr, header, rx, &st))
                    }
                }
            }
        };
        std::thread::Builder::new()
            .name(format!("edge-log-{name}"))
            .spawn(writer)
            .map_err(|source| SinkError::Thread { name, source })?;
        Ok(Arc::new(Self {
            settings,
            tx,
            stats,
            reopen,
        }))
    }

    /// Queues a record; a full queue drops it (counted).
    pub(crate) fn send(&self, rec: Arc<AccessRecord>) {
        if self.tx.try_send(Msg::Record(rec)).is_err() {
            self.stats.dropped_queue_full.inc();
        }
    }

    /// Asks a file sink to reopen its file.
    pub(crate) fn reopen(&self) {
        if matches!(self.settings.target, AccessLogTarget::File(_)) {
            self.reopen.store(true, Ordering::Relaxed);
            // A full queue is fine: the flag is seen at the next batch.
            let _ = self.tx.try_send(Msg::Reopen);
        }
    }
}

fn open(path: &std::path::Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
}

fn udp(s: &SyslogSettings) -> std::io::Result<UdpSocket> {
    let any: SocketAddr = if s.address.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let sock = UdpSocket::bind(any)?;
    sock.connect(s.address)?;
    Ok(sock)
}

/// JSON lines to stdout or a file.
struct Lines {
    file: Option<(std::path::PathBuf, std::fs::File)>,
    rx: mpsc::Receiver<Msg>,
    stats: Arc<SinkStats>,
    reopen: Arc<AtomicBool>,
    buf: Vec<u8>,
    pending: u64,
}

impl Lines {
    fn new(
        file: Option<(std::path::PathBuf, std::fs::File)>,
        rx: mpsc::Receiver<Msg>,
        stats: Arc<SinkStats>,
        reopen: Arc<AtomicBool>,
    ) -> Self {
        Self {
            file,
            rx,
            stats,
            reopen,
            buf: Vec::with_capacity(BATCH_BYTES * 2),
            pending: 0,
        }
    }

    fn flush(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        let r = match &mut self.file {
            Some((_, f)) => f.write_all(&self.buf),
            None => {
                let mut out = std::io::stdout().lock();
                out.write_all(&self.buf).and_then(|()| out.flush())
            }
        };
        let counter = if r.is_ok() {
            &self.stats.written
        } else {
            &self.stats.dropped_error
        };
        counter.inc_by(self.pending);
        if let Err(e) = r {
            tracing::warn!(error = %e, records = self.pending, "access log write failed");
        }
        self.buf.clear();
        self.pending = 0;
    }

    fn do_reopen(&mut self) {
        self.flush();
        self.reopen.store(false, Ordering::Relaxed);
        if let Some((path, f)) = &mut self.file {
            match open(path) {
                Ok(new) => *f = new,
                Err(e) => {
                    tracing::error!(path = %path.display(), error = %e, "cannot reopen the access log; still writing to the old file")
                }
            }
        }
    }

    fn run(mut self) {
        while let Some(mut msg) = self.rx.blocking_recv() {
            loop {
                match msg {
                    Msg::Record(r) => {
                        format::json_line(&r, &mut self.buf);
                        self.pending += 1;
                    }
                    Msg::Reopen => self.do_reopen(),
                }
                if self.buf.len() >= BATCH_BYTES {
                    break;
                }
                match self.rx.try_recv() {
                    Ok(m) => msg = m,
                    Err(_) => break,
                }
            }
            self.flush();
            if self.reopen.load(Ordering::Relaxed) {
                self.do_reopen();
            }
        }
        self.flush();
    }
}

fn run_udp(
    sock: UdpSocket,
    header: SyslogHeader,
    max: usize,
    mut rx: mpsc::Receiver<Msg>,
    stats: &SinkStats,
) {
    let mut buf = Vec::with_capacity(max);
    while let Some(msg) = rx.blocking_recv() {
        let Msg::Record(r) = msg else { continue };
        if !format::syslog_datagram(&header, &r, max, &mut buf) {
            stats.dropped_oversize.inc();
            continue;
        }
        // A refused datagram (ICMP unreachable reported on a connected
        // socket) is lost, as with any syslog over UDP: counted.
        let counter = match sock.send(&buf) {
            Ok(_) => &stats.written,
            Err(_) => &stats.dropped_error,
        };
        counter.inc();
    }
}

fn run_tcp(addr: SocketAddr, header: SyslogHeader, mut rx: mpsc::Receiver<Msg>, stats: &SinkStats) {
    let mut conn: Option<TcpStream> = None;
    let mut backoff = BACKOFF_MIN;
    let mut frames = Vec::with_capacity(BATCH_BYTES * 2);
    let mut msg = Vec::with_capacity(1024);
    let mut pending = 0u64;
    loop {
        if pending == 0 {
            let Some(first) = rx.blocking_recv() else {
                return;
            };
            let mut next = Some(first);
            while let Some(m) = next.take() {
                if let Msg::Record(r) = m {
                    msg.clear();
                    format::syslog(&header, &r, &mut msg);
                    format::octet_counted(&msg, &mut frames);
                    pending += 1;
                }
                if frames.len() < BATCH_BYTES {
                    next = rx.try_recv().ok();
                }
            }
            if pending == 0 {
                continue;
            }
        }
        let stream = match &mut conn {
            Some(s) => s,
            None => match TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT) {
                Ok(s) => {
                    let _ = s.set_nodelay(true);
                    let _ = s.set_write_timeout(Some(WRITE_TIMEOUT));
                    backoff = BACKOFF_MIN;
                    tracing::info!(collector = %addr, "access log: connected to the syslog collector");
                    conn.insert(s)
                }
                Err(e) => {
                    if rx.is_closed() {
                        // The sink was removed and nobody listens: give up.
                        stats.dropped_error.inc_by(pending + rx.len() as u64);
                        return;
                    }
                    tracing::warn!(collector = %addr, error = %e, retry_in = ?backoff, "access log: cannot connect to the syslog collector");
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                    continue;
                }
            },
        };
        match stream.write_all(&frames) {
            Ok(()) => {
                stats.written.inc_by(pending);
                frames.clear();
                pending = 0;
            }
            Err(e) => {
                // Resent whole on the next connection (the collector may
                // have a cut frame from this one, which it discards).
                tracing::warn!(collector = %addr, error = %e, "access log: syslog connection lost");
                conn = None;
            }
        }
    }
}
