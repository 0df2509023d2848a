//! Test harness: a real Pebble + pebble-challtestsrv, HTTP and TLS servers
//! around the crate's services, and real TLS clients.
#![allow(dead_code, unreachable_pub)]

use std::convert::Infallible;
use std::net::{SocketAddr, TcpListener as StdTcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::Arc;
use std::time::{Duration, Instant};

use edge_acme::{AcmeConfig, AcmeEvent, CertResolver, ChallengeResponder, RenewalConfig};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, SanType};
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::broadcast;
use tokio::task::JoinHandle;

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "edge_acme=info".into()),
        )
        .with_test_writer()
        .try_init();
}

/// A port free on 127.0.0.1 for both TCP and UDP right now.
pub fn free_port() -> u16 {
    loop {
        let tcp = StdTcpListener::bind("127.0.0.1:0").unwrap();
        let port = tcp.local_addr().unwrap().port();
        if UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// Installs the Debian package `pebble` when it is missing (a fresh CI
/// machine runs as root); without root it says what to install.
pub fn ensure_pebble_installed() {
    static ONCE: std::sync::Mutex<bool> = std::sync::Mutex::new(false);
    let mut done = ONCE.lock().unwrap_or_else(|e| e.into_inner());
    if *done || Path::new("/usr/bin/pebble-challtestsrv").exists() {
        *done = true;
        return;
    }
    let root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout.starts_with(b"0"))
        .unwrap_or(false);
    assert!(
        root,
        "Pebble is not installed: run `apt-get install pebble` (Debian package)"
    );
    let install = || {
        Command::new("apt-get")
            .args(["install", "-y", "--no-install-recommends", "pebble"])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    };
    if !install() {
        let _ = Command::new("apt-get").arg("update").status();
        assert!(install(), "apt-get install pebble failed");
    }
    *done = true;
}

/// Kills and reaps a child process when dropped.
pub struct ChildGuard(pub Child, pub &'static str);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A running Pebble with its DNS stub. Everything stops on drop.
pub struct Pebble {
    pub directory_url: String,
    /// Pebble's issuing root (PEM), which issued certificates chain to.
    pub root_pem: String,
    pub root_path: PathBuf,
    /// The CA that signed Pebble's own HTTPS certificate.
    pub tls_ca: CertificateDer<'static>,
    pub dir: tempfile::TempDir,
    config_path: PathBuf,
    dns_port: u16,
    mgmt_port: u16,
    children: Vec<ChildGuard>,
}

impl Pebble {
    /// Starts Pebble validating HTTP-01 on `127.0.0.1:http_port`.
    pub fn start(http_port: u16, validity_secs: Option<u64>) -> Pebble {
        Self::start_with(http_port, validity_secs, None)
    }

    /// Like [`start`](Self::start), requiring external account binding with
    /// key id `eab.0` and base64url HMAC key `eab.1` when given.
    pub fn start_with(
        http_port: u16,
        validity_secs: Option<u64>,
        eab: Option<(&str, &str)>,
    ) -> Pebble {
        ensure_pebble_installed();
        let dir = tempfile::tempdir().unwrap();
        // Pebble's own HTTPS certificate, from a throwaway CA.
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "edge-acme test CA for Pebble's HTTPS");
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca_params, ca_key);
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        params
            .subject_alt_names
            .push(SanType::IpAddress("127.0.0.1".parse().unwrap()));
        let cert = params.signed_by(&key, &issuer).unwrap();
        let (cert_path, key_path, ca_path) = (
            dir.path().join("pebble-cert.pem"),
            dir.path().join("pebble-key.pem"),
            dir.path().join("pebble-tls-ca.pem"),
        );
        std::fs::write(&cert_path, cert.pem()).unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        std::fs::write(&ca_path, ca_cert.pem()).unwrap();

        let (dns, chall_mgmt, listen, mgmt) = (free_port(), free_port(), free_port(), free_port());
        let mut pebble = serde_json::json!({
            "listenAddress": format!("127.0.0.1:{listen}"),
            "managementListenAddress": format!("127.0.0.1:{mgmt}"),
            "certificate": cert_path,
            "privateKey": key_path,
            "httpPort": http_port,
            "tlsPort": free_port(),
            "ocspResponderURL": "",
            "externalAccountBindingRequired": false,
        });
        if let Some((kid, key)) = eab {
            pebble["externalAccountBindingRequired"] = true.into();
            pebble["externalAccountMACKeys"] = serde_json::json!({ kid: key });
        }
        if let Some(v) = validity_secs {
            pebble["certificateValidityPeriod"] = v.into();
        }
        let config_path = dir.path().join("pebble-config.json");
        std::fs::write(
            &config_path,
            serde_json::to_vec_pretty(&serde_json::json!({ "pebble": pebble })).unwrap(),
        )
        .unwrap();

        let log = |name: &str| std::fs::File::create(dir.path().join(name)).unwrap();
        let chall = Command::new("pebble-challtestsrv")
            .args(["-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""])
            .args(["-dns01", &format!("127.0.0.1:{dns}")])
            .args(["-http01", "", "-https01", "", "-tlsalpn01", ""])
            .args(["-management", &format!("127.0.0.1:{chall_mgmt}")])
            .stdout(log("challtestsrv.log"))
            .stderr(log("challtestsrv.err"))
            .spawn()
            .expect("pebble-challtestsrv (Debian package `pebble`) must be installed");
        let chall = ChildGuard(chall, "pebble-challtestsrv");
        let directory_url = format!("https://127.0.0.1:{listen}/dir");
        let mut this = Pebble {
            directory_url,
            root_pem: String::new(),
            root_path: dir.path().join("pebble-root.pem"),
            tls_ca: ca_cert.der().clone(),
            dir,
            config_path,
            dns_port: dns,
            mgmt_port: mgmt,
            children: vec![chall],
        };
        this.spawn_pebble();
        this
    }

    /// Starts the pebble process and waits until it serves its root.
    fn spawn_pebble(&mut self) {
        let log = |name: &str| {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(self.dir.path().join(name))
                .unwrap()
        };
        let pebble = Command::new("pebble")
            .arg("-config")
            .arg(&self.config_path)
            .args(["-dnsserver", &format!("127.0.0.1:{}", self.dns_port)])
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_WFE_NONCEREJECT", "0")
            .env("PEBBLE_AUTHZREUSE", "0")
            .stdout(log("pebble.log"))
            .stderr(log("pebble.err"))
            .spawn()
            .expect("pebble (Debian package `pebble`) must be installed");
        self.children.push(ChildGuard(pebble, "pebble"));
        let ca_path = self.dir.path().join("pebble-tls-ca.pem");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let out = Command::new("curl")
                .args(["-sf", "--cacert"])
                .arg(&ca_path)
                .arg(format!("https://127.0.0.1:{}/roots/0", self.mgmt_port))
                .output()
                .unwrap();
            if out.status.success() && !out.stdout.is_empty() {
                self.root_pem = String::from_utf8(out.stdout).unwrap();
                break;
            }
            assert!(
                Instant::now() < deadline,
                "Pebble did not start: {}\n{}",
                String::from_utf8_lossy(&out.stderr),
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        std::fs::write(&self.root_path, &self.root_pem).unwrap();
    }

    /// Restarts pebble on the same ports: it forgets every account, order
    /// and certificate, and has a new root.
    pub fn restart(&mut self) {
        if let Some(pos) = self.children.iter().position(|c| c.1 == "pebble") {
            drop(self.children.remove(pos));
        }
        self.spawn_pebble();
    }

    pub fn logs(&self) -> String {
        ["pebble.log", "pebble.err", "challtestsrv.err"]
            .iter()
            .map(|n| std::fs::read_to_string(self.dir.path().join(n)).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// An AcmeConfig for this Pebble with quick test timings.
    pub fn config(&self) -> AcmeConfig {
        let mut config = AcmeConfig::default();
        config
            .directory_url(self.directory_url.clone())
            .contact("mailto:test@edge.test")
            .trust_root(self.tls_ca.clone())
            .request_timeout(Duration::from_secs(10))
            .order_timeout(Duration::from_secs(30))
            .lock_ttl(Duration::from_secs(3))
            .lock_wait(Duration::from_secs(60))
            .renewal(quick_renewal());
        config
    }
}

pub fn quick_renewal() -> RenewalConfig {
    RenewalConfig {
        backoff_initial: Duration::from_millis(500),
        backoff_max: Duration::from_secs(2),
        storage_poll: Duration::from_millis(500),
        ..RenewalConfig::default()
    }
}

/// Serves `responder` over HTTP/1 on `listener` until the handle is aborted.
pub fn serve_http(listener: TcpListener, responder: ChallengeResponder) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let responder = responder.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req| {
                    let responder = responder.clone();
                    async move { Ok::<_, Infallible>(responder.respond(req).await) }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    })
}

/// A TLS server on 127.0.0.1 answering "hello from edge" with the
/// resolver's certificates.
pub async fn serve_tls(resolver: Arc<CertResolver>) -> (SocketAddr, JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_cert_resolver(resolver);
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                if let Ok(mut tls) = acceptor.accept(stream).await {
                    let mut buf = [0u8; 1024];
                    let _ = tls.read(&mut buf).await;
                    let _ = tls
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 15\r\nconnection: close\r\n\r\nhello from edge")
                        .await;
                    let _ = tls.shutdown().await;
                }
            });
        }
    });
    (addr, task)
}

/// A real rustls client handshake to `addr` with SNI `name`, verifying
/// against `root_pem`. Returns the leaf the server presented.
pub async fn tls_leaf(
    addr: SocketAddr,
    name: &str,
    root_pem: &str,
) -> Result<CertificateDer<'static>, String> {
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(root_pem.as_bytes()) {
        roots
            .add(cert.map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let stream = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let server_name = ServerName::try_from(name.to_owned()).map_err(|e| e.to_string())?;
    let mut tls = connector
        .connect(server_name, stream)
        .await
        .map_err(|e| format!("handshake for {name}: {e}"))?;
    tls.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .map_err(|e| e.to_string())?;
    let mut body = Vec::new();
    let _ = tls.read_to_end(&mut body).await;
    if !String::from_utf8_lossy(&body).ends_with("hello from edge") {
        return Err(format!(
            "unexpected answer {:?}",
            String::from_utf8_lossy(&body)
        ));
    }
    let (_, conn) = tls.get_ref();
    conn.peer_certificates()
        .and_then(|c| c.first())
        .cloned()
        .ok_or_else(|| "no peer certificate".into())
}

/// Decodes unpadded base64url.
pub fn b64url_decode(s: &str) -> Vec<u8> {
    let val = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'-' => 62,
        _ => 63,
    };
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0);
    for c in s.bytes() {
        acc = (acc << 6) | u32::from(val(c));
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}

/// DNS names in a DER certificate.
pub fn dns_names(der: &CertificateDer<'_>) -> Vec<String> {
    use x509_parser::prelude::*;
    let (_, cert) = X509Certificate::from_der(der.as_ref()).unwrap();
    let mut out = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for n in &san.value.general_names {
            if let GeneralName::DNSName(d) = n {
                out.push(d.to_string());
            }
        }
    }
    out
}

pub fn serial_hex(der: &CertificateDer<'_>) -> String {
    use x509_parser::prelude::*;
    let (_, cert) = X509Certificate::from_der(der.as_ref()).unwrap();
    cert.raw_serial_as_string().replace(':', "")
}

/// Waits for the first event matching `pred`, failing after `limit`.
pub async fn wait_event(
    rx: &mut broadcast::Receiver<AcmeEvent>,
    limit: Duration,
    what: &str,
    mut pred: impl FnMut(&AcmeEvent) -> bool,
) -> AcmeEvent {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Ok(event)) => {
                if pred(&event) {
                    return event;
                }
            }
            Ok(Err(broadcast::error::RecvError::Lagged(_))) => {}
            Ok(Err(e)) => panic!("event channel closed waiting for {what}: {e}"),
            Err(_) => panic!("timed out after {limit:?} waiting for {what}"),
        }
    }
}

pub fn write_file(path: &Path, contents: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, contents).unwrap();
}
