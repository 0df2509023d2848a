//! Real backends for the tests: an HTTP server whose behaviour can be
//! switched, a TLS variant with an rcgen certificate, and a scripted custom
//! probe for virtual-time tests.
#![allow(dead_code, unreachable_pub)]

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use edge_health::{CustomProbe, HealthEvent, HealthStream, ProbeFuture, Reason};
use http_body_util::Full;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

/// How the backend answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// 200 with body `status: ok`.
    Ok,
    /// This status with body `status: failing`.
    Status(u16),
    /// Accepts and never answers.
    Hang,
    /// Accepts and resets the connection.
    Reset,
    /// Answers 200 after this delay.
    Slow(Duration),
    /// 200 with body `maintenance`.
    WrongBody,
}

/// One request as the backend saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub at: Instant,
    pub mode: Mode,
    pub method: String,
    pub path: String,
    pub host: Option<String>,
    pub sni: Option<String>,
}

/// Requests in service now, and the most ever.
#[derive(Debug, Default)]
pub struct Gauge {
    pub busy: AtomicUsize,
    pub max: AtomicUsize,
}

#[derive(Debug, Default)]
struct State {
    mode: Mutex<Option<Mode>>,
    seen: Mutex<Vec<Seen>>,
    /// Hanging connections the client has closed.
    hung_closed: AtomicUsize,
    /// Requests being served right now, and the most ever (may be shared
    /// by many backends).
    gauge: Arc<Gauge>,
    /// Delay added to every answer (concurrency tests).
    service_delay: Mutex<Duration>,
}

/// A backend listening on 127.0.0.1.
#[derive(Debug)]
pub struct Backend {
    pub addr: SocketAddr,
    state: Arc<State>,
    task: JoinHandle<()>,
}

impl Backend {
    /// A plain HTTP backend.
    pub async fn http() -> Self {
        Self::start(None, Arc::default()).await
    }

    /// A plain HTTP backend counting requests in service in `gauge`.
    pub async fn http_with_gauge(gauge: Arc<Gauge>) -> Self {
        Self::start(None, gauge).await
    }

    /// An HTTPS backend with this certificate.
    pub async fn https(cert: &TestCert) -> Self {
        Self::start(Some(cert.acceptor()), Arc::default()).await
    }

    async fn start(tls: Option<TlsAcceptor>, gauge: Arc<Gauge>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(State {
            gauge,
            ..State::default()
        });
        *state.mode.lock().unwrap() = Some(Mode::Ok);
        let st = Arc::clone(&state);
        let task = tokio::spawn(async move {
            loop {
                let Ok((sock, _)) = listener.accept().await else {
                    continue;
                };
                let st = Arc::clone(&st);
                let tls = tls.clone();
                tokio::spawn(async move { serve_conn(sock, st, tls).await });
            }
        });
        Self { addr, state, task }
    }

    pub fn set(&self, mode: Mode) {
        *self.state.mode.lock().unwrap() = Some(mode);
    }

    pub fn set_service_delay(&self, d: Duration) {
        *self.state.service_delay.lock().unwrap() = d;
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.state.seen.lock().unwrap().clone()
    }

    /// Requests answered in `mode` that arrived before `t`.
    pub fn count_before(&self, mode: Mode, t: Instant) -> usize {
        self.seen()
            .iter()
            .filter(|s| s.mode == mode && s.at < t)
            .count()
    }

    pub fn hung_closed(&self) -> usize {
        self.state.hung_closed.load(Ordering::SeqCst)
    }

    /// Closes the listening socket: the port refuses from now on.
    pub async fn stop(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

async fn serve_conn(sock: TcpStream, st: Arc<State>, tls: Option<TlsAcceptor>) {
    let mode = st.mode.lock().unwrap().unwrap_or(Mode::Ok);
    match mode {
        Mode::Reset => {
            let _ = sock.set_zero_linger();
            drop(sock);
        }
        Mode::Hang => {
            record(&st, mode, "", "", None, None);
            hang(sock, &st).await;
        }
        _ => match tls {
            None => serve_http(sock, st, None).await,
            Some(acc) => {
                let Ok(tls) = acc.accept(sock).await else {
                    return;
                };
                let sni = tls.get_ref().1.server_name().map(str::to_owned);
                serve_http(tls, st, sni).await;
            }
        },
    }
}

async fn hang<S: AsyncRead + Unpin>(mut sock: S, st: &State) {
    let mut buf = [0u8; 1024];
    loop {
        match sock.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
    st.hung_closed.fetch_add(1, Ordering::SeqCst);
}

fn record(
    st: &State,
    mode: Mode,
    method: &str,
    path: &str,
    host: Option<String>,
    sni: Option<String>,
) {
    st.seen.lock().unwrap().push(Seen {
        at: Instant::now(),
        mode,
        method: method.into(),
        path: path.into(),
        host,
        sni,
    });
}

async fn serve_http<S>(io: S, st: Arc<State>, sni: Option<String>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
        let st = Arc::clone(&st);
        let sni = sni.clone();
        async move {
            let mode = st.mode.lock().unwrap().unwrap_or(Mode::Ok);
            let host = req
                .headers()
                .get(http::header::HOST)
                .and_then(|h| h.to_str().ok())
                .map(str::to_owned);
            let path = req
                .uri()
                .path_and_query()
                .map_or("/", |p| p.as_str())
                .to_owned();
            record(&st, mode, req.method().as_str(), &path, host, sni);
            let n = st.gauge.busy.fetch_add(1, Ordering::SeqCst) + 1;
            st.gauge.max.fetch_max(n, Ordering::SeqCst);
            let delay = *st.service_delay.lock().unwrap();
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            let (status, body) = match mode {
                Mode::Status(s) => (s, "status: failing"),
                Mode::Slow(d) => {
                    tokio::time::sleep(d).await;
                    (200, "status: ok")
                }
                Mode::WrongBody => (200, "maintenance"),
                _ => (200, "status: ok"),
            };
            st.gauge.busy.fetch_sub(1, Ordering::SeqCst);
            Ok::<_, Infallible>(
                Response::builder()
                    .status(status)
                    .body(Full::new(Bytes::from_static(body.as_bytes())))
                    .unwrap(),
            )
        }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(io), svc)
        .await;
}

/// A CA and a server certificate for `backend.test` it signed.
#[derive(Debug)]
pub struct TestCert {
    pub ca: rustls_pki_types::CertificateDer<'static>,
    pub leaf: rustls_pki_types::CertificateDer<'static>,
    key: Vec<u8>,
}

impl TestCert {
    /// Valid for `days` more days.
    pub fn new(days: i64) -> Self {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "edge-health test CA");
        let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["backend.test".to_owned()]).unwrap();
        params.not_before = time::OffsetDateTime::now_utc() - time::Duration::days(1);
        params.not_after = time::OffsetDateTime::now_utc() + time::Duration::days(days);
        let leaf = params.signed_by(&key, &ca).unwrap();
        Self {
            ca: ca.der().clone(),
            leaf: leaf.der().clone(),
            key: key.serialize_der(),
        }
    }

    fn acceptor(&self) -> TlsAcceptor {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let cfg = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![self.leaf.clone(), self.ca.clone()],
                rustls_pki_types::PrivateKeyDer::Pkcs8(self.key.clone().into()),
            )
            .unwrap();
        TlsAcceptor::from(Arc::new(cfg))
    }
}

/// What a scripted target does on each probe.
#[derive(Debug, Clone, Copy)]
pub enum Step {
    Pass,
    Fail,
    Hang,
    /// Take this long, then pass.
    Sleep(Duration),
}

/// A custom probe driven by a script per target, recording call times in
/// tokio's (possibly paused) clock.
#[derive(Debug, Default)]
pub struct ScriptProbe {
    /// Per target: steps to play; the last one repeats.
    pub plan: Mutex<HashMap<SocketAddr, Vec<Step>>>,
    pub calls: Mutex<Vec<(SocketAddr, tokio::time::Instant)>>,
    pub in_flight: AtomicUsize,
    pub max_in_flight: AtomicUsize,
}

impl ScriptProbe {
    pub fn set(&self, target: SocketAddr, steps: Vec<Step>) {
        self.plan.lock().unwrap().insert(target, steps);
    }

    pub fn calls_to(&self, target: SocketAddr) -> Vec<tokio::time::Instant> {
        self.calls
            .lock()
            .unwrap()
            .iter()
            .filter(|(t, _)| *t == target)
            .map(|(_, at)| *at)
            .collect()
    }
}

struct Guard<'a>(&'a AtomicUsize);
impl Drop for Guard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The [`CustomProbe`] face of a shared [`ScriptProbe`].
#[derive(Debug, Clone)]
pub struct Script(pub Arc<ScriptProbe>);

impl CustomProbe for Script {
    fn probe(&self, target: SocketAddr) -> ProbeFuture {
        let me = Arc::clone(&self.0);
        Box::pin(async move {
            me.calls
                .lock()
                .unwrap()
                .push((target, tokio::time::Instant::now()));
            let step = {
                let mut plan = me.plan.lock().unwrap();
                let steps = plan.entry(target).or_insert_with(|| vec![Step::Pass]);
                if steps.len() > 1 {
                    steps.remove(0)
                } else {
                    steps.first().cloned().unwrap_or(Step::Pass)
                }
            };
            let n = me.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            me.max_in_flight.fetch_max(n, Ordering::SeqCst);
            let _g = Guard(&me.in_flight);
            match step {
                Step::Pass => Ok(()),
                Step::Fail => Err(Reason::Custom("scripted failure".into())),
                Step::Hang => std::future::pending().await,
                Step::Sleep(d) => {
                    tokio::time::sleep(d).await;
                    Ok(())
                }
            }
        })
    }
}

/// Waits (up to 120 s of the test's clock: virtual in paused tests) for an event matching `pred`.
pub async fn wait_for(
    events: &mut HealthStream,
    mut pred: impl FnMut(&HealthEvent) -> bool,
) -> HealthEvent {
    tokio::time::timeout(Duration::from_secs(120), async {
        loop {
            let e = events.next().await.expect("checker stopped");
            if pred(&e) {
                return e;
            }
        }
    })
    .await
    .expect("no matching health event within 120 s")
}

/// Waits for `target` to become `healthy`.
pub async fn wait_health(
    events: &mut HealthStream,
    target: SocketAddr,
    healthy: bool,
) -> HealthEvent {
    wait_for(events, |e| {
        e.target == target && e.healthy == healthy && e.reason != Reason::NotChecked
    })
    .await
}

/// A closed port: bound then released.
pub async fn closed_port() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let a = l.local_addr().unwrap();
    drop(l);
    a
}

/// Polls the checker's current state (up to 20 s of the test's clock) until
/// the target of `pool` matches `pred`.
pub async fn wait_target(
    h: &edge_health::HealthHandle,
    pool: &str,
    mut pred: impl FnMut(&HealthEvent) -> bool,
) -> HealthEvent {
    tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            if let Some(e) = h
                .targets()
                .into_iter()
                .find(|e| &*e.pool == pool && pred(e))
            {
                return e;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .unwrap_or_else(|_| {
        panic!(
            "pool {pool}: no matching state within 20 s: {:?}",
            h.targets()
        )
    })
}
