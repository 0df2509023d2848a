//! The tokio adapter and tower services over real TCP connections, with
//! real clients: a rustls client, curl, and rustls servers as backends.

use edge_sni::{
    ClientHelloBuilder, ReadClientHelloError, ReadClientHelloLayer, ReadError, ReadOptions,
    RouteBySni, RouteError, SniRouter, TlsConnection, read_client_hello,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use std::net::SocketAddr;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tower::{ServiceBuilder, ServiceExt, service_fn};

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn self_signed(names: &[&str]) -> (CertificateDer<'static>, PrivateKeyDer<'static>) {
    let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    let cert = rcgen::generate_simple_self_signed(names).unwrap();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(cert.signing_key.serialize_der()));
    (cert.cert.der().clone(), key)
}

fn server_config(names: &[&str]) -> Arc<rustls::ServerConfig> {
    let (cert, key) = self_signed(names);
    let config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .unwrap();
    Arc::new(config)
}

/// A rustls client that trusts `cert` and offers h2 and http/1.1.
fn client_config(cert: CertificateDer<'static>) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert).unwrap();
    let mut config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Arc::new(config)
}

/// The hello is read, then the replayed stream completes a real rustls
/// handshake with a rustls client, and data flows both ways.
#[tokio::test]
async fn replay_hands_the_connection_to_a_rustls_acceptor() {
    let (cert, key) = self_signed(&["rustls.example"]);
    let server = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.clone()], key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();

    let client = tokio::spawn(async move {
        let connector = tokio_rustls::TlsConnector::from(client_config(cert));
        let tcp = TcpStream::connect(addr).await.unwrap();
        let name = ServerName::try_from("rustls.example").unwrap();
        let mut tls = connector.connect(name, tcp).await.unwrap();
        tls.write_all(b"ping").await.unwrap();
        let mut reply = [0u8; 4];
        tls.read_exact(&mut reply).await.unwrap();
        reply
    });

    let (tcp, _) = listener.accept().await.unwrap();
    let (info, replay) = read_client_hello(tcp, &ReadOptions::default())
        .await
        .unwrap();
    assert_eq!(info.sni.as_deref(), Some("rustls.example"));
    assert_eq!(info.alpn, vec![b"h2".to_vec(), b"http/1.1".to_vec()]);
    assert!(info.versions.contains(&0x0304));
    assert!(info.ja4.starts_with("t13d"), "{}", info.ja4);
    let mut tls = acceptor.accept(replay).await.unwrap();
    let mut got = [0u8; 4];
    tls.read_exact(&mut got).await.unwrap();
    assert_eq!(&got, b"ping");
    tls.write_all(b"pong").await.unwrap();
    tls.flush().await.unwrap();
    assert_eq!(&client.await.unwrap(), b"pong");
}

/// Reads an HTTP request head (after `start`, the bytes already read).
async fn read_head<S: tokio::io::AsyncRead + Unpin>(
    stream: &mut S,
    start: Vec<u8>,
) -> std::io::Result<Vec<u8>> {
    let mut req = start;
    let mut buf = [0u8; 1024];
    while !req.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf).await? {
            0 => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            n => req.extend_from_slice(&buf[..n]),
        }
    }
    Ok(req)
}

/// A TLS backend that answers one HTTP/1.1 request with its name.
async fn https_backend(name: &'static str) -> SocketAddr {
    let acceptor = tokio_rustls::TlsAcceptor::from(server_config(&[name, "localhost"]));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                if read_head(&mut tls, Vec::new()).await.is_err() {
                    return;
                }
                let body = format!("backend {name}");
                let resp = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = tls.write_all(resp.as_bytes()).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    addr
}

/// An SNI-routing TLS passthrough proxy built from the tower services:
/// reads the hello, picks a backend by SNI, splices the bytes.
async fn passthrough_proxy(router: SniRouter<SocketAddr>) -> SocketAddr {
    let splice = |backend: SocketAddr| {
        service_fn(move |conn: TlsConnection<TcpStream>| async move {
            let mut upstream = TcpStream::connect(backend).await?;
            let (prefix, mut client) = conn.stream.into_parts();
            upstream.write_all(&prefix).await?;
            tokio::io::copy_bidirectional(&mut client, &mut upstream).await?;
            Ok::<_, std::io::Error>(conn.info.sni)
        })
    };
    let svc = ServiceBuilder::new()
        .layer(ReadClientHelloLayer::new(ReadOptions::default()))
        .service(RouteBySni::new(router.map(splice)));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let svc = svc.clone();
            tokio::spawn(async move {
                let _ = svc.oneshot(tcp).await;
            });
        }
    });
    addr
}

/// Runs curl (installed by .ci/test) and returns its stdout.
fn curl(args: &[&str]) -> String {
    let out = Command::new("curl")
        .args(["-sk", "--max-time", "10"])
        .args(args)
        .output()
        .expect("curl must be installed (.ci/test installs it)");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// curl (a real client) reaches the backend its SNI names through the
/// proxy: exact, wildcard, and no-SNI routes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_is_routed_by_sni_through_a_splicing_proxy() {
    let a = https_backend("a.example").await;
    let web = https_backend("www.web.example").await;
    let nosni = https_backend("nosni").await;
    let router = SniRouter::new()
        .exact("a.example", a)
        .wildcard("*.web.example", web)
        .no_sni(nosni);
    let proxy = passthrough_proxy(router).await;
    let port = proxy.port().to_string();
    let cases: [(&str, &str); 3] = [
        ("a.example", "backend a.example"),
        ("www.web.example", "backend www.web.example"),
        ("127.0.0.1", "backend nosni"),
    ];
    for (host, want) in cases {
        let resolve = format!("{host}:{port}:127.0.0.1");
        let url = format!("https://{host}:{port}/");
        let got = tokio::task::spawn_blocking(move || curl(&["--resolve", &resolve, &url]))
            .await
            .unwrap();
        assert_eq!(got, want, "curl to {host}");
    }
    // An SNI with no route and no default: the proxy drops the connection.
    let resolve = format!("other.example:{port}:127.0.0.1");
    let url = format!("https://other.example:{port}/");
    let got = tokio::task::spawn_blocking(move || curl(&["--resolve", &resolve, &url]))
        .await
        .unwrap();
    assert_eq!(got, "");
}

/// Plain HTTP on the TLS port: the caller gets the bytes and the stream back
/// and can answer (curl sees the redirect).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_gets_its_stream_back() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        match read_client_hello(tcp, &ReadOptions::default()).await {
            Err(ReadError::NotTls { prefix, mut stream }) => {
                assert!(prefix.starts_with(b"G"), "{prefix:?}");
                let req = read_head(&mut stream, prefix).await.unwrap();
                assert!(
                    req.starts_with(b"GET /path HTTP/1.1\r\n"),
                    "{}",
                    String::from_utf8_lossy(&req)
                );
                let resp = "HTTP/1.1 301 Moved Permanently\r\nLocation: https://x/\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
                stream.write_all(resp.as_bytes()).await.unwrap();
                stream.shutdown().await.unwrap();
            }
            other => panic!("{:?}", other.map(|(info, _)| info)),
        }
    });
    let url = format!("http://127.0.0.1:{port}/path");
    let code =
        tokio::task::spawn_blocking(move || curl(&["-o", "/dev/null", "-w", "%{http_code}", &url]))
            .await
            .unwrap();
    server.await.unwrap();
    assert_eq!(code, "301");
}

fn capture(file: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/captures/{file}.bin",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

/// The hello trickles in one byte per write; the reader still parses it
/// and the replay holds every byte, plus what the client sent after.
#[tokio::test]
async fn byte_at_a_time_and_everything_is_replayed() {
    let hello = capture("chromium");
    let (mut client, server) = tokio::io::duplex(64);
    let sent = hello.clone();
    let writer = tokio::spawn(async move {
        for b in &sent {
            client.write_all(&[*b]).await.unwrap();
        }
        client.write_all(b"after").await.unwrap();
        client
    });
    let (info, mut replay) = read_client_hello(server, &ReadOptions::default())
        .await
        .unwrap();
    assert_eq!(info.sni.as_deref(), Some("chromium.example"));
    assert!(info.has_ech);
    let _client = writer.await.unwrap();
    let mut got = vec![0u8; hello.len() + 5];
    replay.read_exact(&mut got).await.unwrap();
    assert_eq!(&got[..hello.len()], &hello[..]);
    assert_eq!(&got[hello.len()..], b"after");
}

#[tokio::test]
async fn slow_clients_time_out() {
    tokio::time::pause();
    let (mut client, server) = tokio::io::duplex(64);
    client.write_all(&capture("curl")[..10]).await.unwrap();
    let opts = ReadOptions::default().with_timeout(Duration::from_secs(3));
    let started = tokio::time::Instant::now();
    let res = read_client_hello(server, &opts).await;
    assert!(
        matches!(res, Err(ReadError::Timeout)),
        "{:?}",
        res.map(|r| r.0)
    );
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(3) && waited < Duration::from_millis(3100),
        "{waited:?}"
    );
}

#[tokio::test]
async fn early_close_malformed_and_oversized() {
    let (mut client, server) = tokio::io::duplex(4096);
    client.write_all(&capture("node")[..100]).await.unwrap();
    drop(client);
    let res = read_client_hello(server, &ReadOptions::default()).await;
    assert!(matches!(res, Err(ReadError::Eof)), "{:?}", res.map(|r| r.0));

    let (mut client, server) = tokio::io::duplex(4096);
    client
        .write_all(b"\x15\x03\x03\x00\x02\x02\x28")
        .await
        .unwrap();
    let res = read_client_hello(server, &ReadOptions::default()).await;
    let err = res.map(|r| r.0).unwrap_err();
    assert!(
        matches!(
            err,
            ReadError::Malformed(edge_sni::Error::UnexpectedContentType { content_type: 21 })
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("content type 21"), "{err}");

    let big = ClientHelloBuilder::tls13()
        .extension(0x5555, vec![0; 9000])
        .encode();
    let (mut client, server) = tokio::io::duplex(16384);
    let writer = tokio::spawn(async move { client.write_all(&big).await.map(|_| client) });
    let opts = ReadOptions::default()
        .with_limits(edge_sni::Limits::default().with_max_client_hello_len(8192));
    let res = read_client_hello(server, &opts).await;
    assert!(
        matches!(res, Err(ReadError::TooLarge)),
        "{:?}",
        res.map(|r| r.0)
    );
    drop(writer);
}

/// The tower stack: routes by SNI, reports "no route" and non-TLS streams.
#[tokio::test]
async fn tower_stack_routes_and_reports() {
    let named = |name: &'static str| {
        service_fn(
            move |conn: TlsConnection<tokio::io::DuplexStream>| async move {
                Ok::<_, std::convert::Infallible>((name, conn.info.sni))
            },
        )
    };
    let router = SniRouter::new()
        .exact("api.example.com", named("api"))
        .wildcard("*.example.com", named("web"));
    let svc = ServiceBuilder::new()
        .layer(ReadClientHelloLayer::new(ReadOptions::default()))
        .service(RouteBySni::new(router));
    let connect = |bytes: Vec<u8>| {
        let (mut client, server) = tokio::io::duplex(4096);
        tokio::spawn(async move {
            client.write_all(&bytes).await.unwrap();
            tokio::time::sleep(Duration::from_secs(5)).await;
        });
        server
    };
    let hello = |name: &str| ClientHelloBuilder::tls13().server_name(name).encode();
    let got = svc
        .clone()
        .oneshot(connect(hello("API.example.com")))
        .await
        .unwrap();
    assert_eq!(got, ("api", Some("api.example.com".to_owned())));
    let got = svc
        .clone()
        .oneshot(connect(hello("x.example.com")))
        .await
        .unwrap();
    assert_eq!(got.0, "web");
    match svc.clone().oneshot(connect(hello("x.y.example.com"))).await {
        Err(ReadClientHelloError::Service(RouteError::NoRoute { sni })) => {
            assert_eq!(sni.as_deref(), Some("x.y.example.com"))
        }
        other => panic!("{other:?}"),
    }
    match svc
        .clone()
        .oneshot(connect(b"SSH-2.0-OpenSSH_9.2\r\n".to_vec()))
        .await
    {
        Err(ReadClientHelloError::Read(ReadError::NotTls { prefix, .. })) => {
            assert!(prefix.starts_with(b"SSH-"))
        }
        other => panic!("{other:?}"),
    }
}
