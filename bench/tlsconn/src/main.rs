//! `tlsconn HOST PORT SNI GROUP SECONDS THREADS CA_FILE`: bench/run's
//! rustls load client, the counterpart of `benchtool tlsconn ... new` for
//! key exchange groups OpenSSL 3.0 cannot offer.
//!
//! Each of THREADS threads, for SECONDS: connects to HOST:PORT, makes a
//! full TLS 1.3 handshake (no session is ever offered) offering only GROUP
//! (`x25519mlkem768`, `x25519`, `secp256r1`), verifies the server's
//! certificate for SNI against CA_FILE, sends `GET / HTTP/1.1` with
//! `Connection: close` and reads the response to the end. A connection
//! counts as ok when the answer is `HTTP/1.1 200` and GROUP was
//! negotiated. Prints one JSON line with the counts, as benchtool does:
//! `{"mode":"new","group":...,"conns":...,"ok":...,"resumed":0,"errors":...,"elapsed":...}`.

use std::io::{ErrorKind, Read as _, Write as _};
use std::net::TcpStream;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::crypto::SupportedKxGroup;
use rustls::crypto::aws_lc_rs::{self, kx_group};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, ServerName};

/// What one thread did.
#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    conns: u64,
    ok: u64,
    errors: u64,
}

/// What every connection of a run shares.
#[derive(Debug)]
struct Target {
    addr: String,
    name: ServerName<'static>,
    config: Arc<ClientConfig>,
    group: &'static dyn SupportedKxGroup,
    request: Vec<u8>,
}

fn group(name: &str) -> Option<&'static dyn SupportedKxGroup> {
    match name.to_ascii_lowercase().as_str() {
        "x25519mlkem768" => Some(kx_group::X25519MLKEM768),
        "x25519" => Some(kx_group::X25519),
        "secp256r1" => Some(kx_group::SECP256R1),
        _ => None,
    }
}

/// TLS 1.3 only, only `group`, no resumption, ALPN http/1.1, roots from
/// the PEM file `ca`.
fn client_config(group: &'static dyn SupportedKxGroup, ca: &str) -> Result<ClientConfig, String> {
    let mut provider = aws_lc_rs::default_provider();
    provider.kx_groups = vec![group];
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).map_err(|e| format!("{ca}: {e}"))? {
        roots
            .add(cert.map_err(|e| format!("{ca}: {e}"))?)
            .map_err(|e| format!("{ca}: {e}"))?;
    }
    let mut config = ClientConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.resumption = rustls::client::Resumption::disabled();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// One connection: handshake, request, response to the end.
fn one(t: &Target) -> Result<(), String> {
    let tcp = TcpStream::connect(&t.addr).map_err(|e| e.to_string())?;
    tcp.set_nodelay(true).map_err(|e| e.to_string())?;
    tcp.set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    let conn =
        ClientConnection::new(t.config.clone(), t.name.clone()).map_err(|e| e.to_string())?;
    let mut tls = StreamOwned::new(conn, tcp);
    // The first write drives the handshake.
    tls.write_all(&t.request).map_err(|e| e.to_string())?;
    let mut response = Vec::with_capacity(1024);
    match tls.read_to_end(&mut response) {
        Ok(_) => {}
        // A server that closes without close_notify after its answer.
        Err(e) if e.kind() == ErrorKind::UnexpectedEof && !response.is_empty() => {}
        Err(e) => return Err(e.to_string()),
    }
    let negotiated = tls.conn.negotiated_key_exchange_group().map(|g| g.name());
    if negotiated != Some(t.group.name()) {
        return Err(format!("negotiated {negotiated:?}"));
    }
    if !response.starts_with(b"HTTP/1.1 200") {
        return Err("not a 200 answer".into());
    }
    Ok(())
}

fn worker(t: &Target, deadline: Instant) -> Counts {
    let mut c = Counts::default();
    let mut reported = false;
    while Instant::now() < deadline {
        c.conns += 1;
        match one(t) {
            Ok(()) => c.ok += 1,
            Err(e) => {
                c.errors += 1;
                if !reported {
                    eprintln!("tlsconn: {e}");
                    reported = true;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }
    c
}

fn run(args: &[String]) -> Result<String, String> {
    let [host, port, sni, group_name, seconds, threads, ca] = args else {
        return Err(
            "usage: tlsconn HOST PORT SNI x25519mlkem768|x25519|secp256r1 SECONDS THREADS CA_FILE"
                .into(),
        );
    };
    let group = group(group_name).ok_or_else(|| format!("unknown group {group_name:?}"))?;
    let seconds: f64 = seconds
        .parse()
        .map_err(|_| format!("bad SECONDS {seconds:?}"))?;
    let threads: usize = threads
        .parse()
        .map_err(|_| format!("bad THREADS {threads:?}"))?;
    let target = Arc::new(Target {
        addr: format!("{host}:{port}"),
        name: ServerName::try_from(sni.clone()).map_err(|e| format!("SNI {sni:?}: {e}"))?,
        config: Arc::new(client_config(group, ca)?),
        group,
        request: format!(
            "GET / HTTP/1.1\r\nHost: {sni}\r\nUser-Agent: tlsconn\r\nConnection: close\r\n\r\n"
        )
        .into_bytes(),
    });
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(seconds);
    let handles: Vec<_> = (0..threads.max(1))
        .map(|_| {
            let t = Arc::clone(&target);
            std::thread::spawn(move || worker(&t, deadline))
        })
        .collect();
    let mut total = Counts::default();
    for h in handles {
        let c = h
            .join()
            .map_err(|_| "a worker thread panicked".to_string())?;
        total.conns += c.conns;
        total.ok += c.ok;
        total.errors += c.errors;
    }
    Ok(format!(
        "{{\"mode\":\"new\",\"group\":\"{:?}\",\"conns\":{},\"ok\":{},\"resumed\":0,\"errors\":{},\"elapsed\":{:.3}}}",
        group.name(),
        total.conns,
        total.ok,
        total.errors,
        start.elapsed().as_secs_f64()
    ))
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(line) => {
            println!("{line}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("tlsconn: {e}");
            ExitCode::from(2)
        }
    }
}
