//! The connector against a real TLS server (tokio-rustls) on loopback,
//! with certificates made by rcgen.

use std::net::SocketAddr;

use hyper_util::client::legacy::connect::HttpConnector;
use tokio::net::TcpListener;
use tower::{Service as _, ServiceExt as _};

use super::*;

struct Ca {
    der: CertificateDer<'static>,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

fn ca(name: &str) -> Ca {
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, format!("{name} test CA"));
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    Ca {
        der: cert.der().clone(),
        issuer: rcgen::Issuer::new(params, key),
    }
}

/// A leaf for `names`, expired when `expired`.
fn leaf(
    ca: &Ca,
    names: &[&str],
    expired: bool,
) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
    let mut params =
        rcgen::CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .unwrap();
    if expired {
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::days(10);
        params.not_after = now - time::Duration::days(1);
    }
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &ca.issuer).unwrap();
    let key = PrivateKeyDer::try_from(key.serialize_der()).unwrap();
    (vec![cert.der().clone()], key)
}

/// A TLS server on loopback that completes handshakes (and offers `h2`);
/// with `client_ca` it requires a client certificate from that CA and
/// speaks TLS 1.2 only, so a missing certificate fails the client's
/// handshake (in TLS 1.3 the server refuses it after the client finished).
async fn server(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    client_ca: Option<&Ca>,
) -> SocketAddr {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let versions: &[&rustls::SupportedProtocolVersion] = match client_ca {
        Some(_) => &[&rustls::version::TLS12],
        None => rustls::DEFAULT_VERSIONS,
    };
    let b = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(versions)
        .unwrap();
    let b = match client_ca {
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            roots.add(ca.der.clone()).unwrap();
            let v = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .build()
            .unwrap();
            b.with_client_cert_verifier(v)
        }
        None => b.with_no_client_auth(),
    };
    let mut cfg = b.with_single_cert(chain, key).unwrap();
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = l.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                if let Ok(mut s) = acceptor.accept(tcp).await {
                    // Hold the connection open until the client goes.
                    let mut buf = [0u8; 64];
                    let _ = tokio::io::AsyncReadExt::read(&mut s, &mut buf).await;
                }
            });
        }
    });
    addr
}

/// Connects through the connector to `addr`: the failure, if any.
async fn connect(tls: &UpstreamTls, addr: SocketAddr) -> Result<Option<Vec<u8>>, TlsFailure> {
    let mut c = tls.connectors().unwrap().to(addr, HttpConnector::new());
    // The URI names the request's host; the connection goes to `addr`.
    let uri: http::Uri = "https://app.example/".parse().unwrap();
    let r = c.ready().await.unwrap().call(uri).await;
    match r {
        Ok(hyper_rustls::MaybeHttpsStream::Https(s)) => {
            Ok(s.inner().get_ref().1.alpn_protocol().map(<[u8]>::to_vec))
        }
        Ok(_) => panic!("a plain connection"),
        Err(e) => Err(TlsFailure::of(&*e).unwrap_or_else(|| panic!("no TLS failure in {e}"))),
    }
}

#[tokio::test]
async fn verifies_chain_name_and_validity() {
    let good = ca("good");
    let other = ca("other");
    let roots = || Roots::Certificates(vec![good.der.clone()]);
    let (chain, key) = leaf(&good, &["app.test", "127.0.0.1"], false);
    let ok = server(chain, key, None).await;

    // By IP (no SNI): the certificate carries the IP address.
    assert_eq!(connect(&UpstreamTls::new(roots()), ok).await, Ok(None));
    // By name, HTTP/2 offered and chosen.
    let named = UpstreamTls::new(roots())
        .server_name("app.test")
        .unwrap()
        .alpn(Alpn::Http2);
    assert_eq!(connect(&named, ok).await, Ok(Some(b"h2".to_vec())));
    let wrong = UpstreamTls::new(roots()).server_name("other.test").unwrap();
    assert_eq!(connect(&wrong, ok).await, Err(TlsFailure::NameMismatch));

    let (chain, key) = leaf(&other, &["127.0.0.1"], false);
    let foreign = server(chain, key, None).await;
    assert_eq!(
        connect(&UpstreamTls::new(roots()), foreign).await,
        Err(TlsFailure::UnknownCa)
    );
    // Verification off: accepted.
    let off = UpstreamTls::new(roots()).verify(false);
    assert_eq!(connect(&off, foreign).await, Ok(None));

    let (chain, key) = leaf(&good, &["127.0.0.1"], true);
    let expired = server(chain, key, None).await;
    assert_eq!(
        connect(&UpstreamTls::new(roots()), expired).await,
        Err(TlsFailure::Expired)
    );
}

/// A TLS connector never falls back to clear text: an `http` URI is an
/// error, and nothing is dialled.
#[tokio::test]
async fn a_plain_uri_is_refused() {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let tls = UpstreamTls::new(Roots::Certificates(vec![ca("plain").der]));
    let mut c = tls.connectors().unwrap().to(addr, HttpConnector::new());
    let uri: http::Uri = "http://app.example/".parse().unwrap();
    let r = c.ready().await.unwrap().call(uri).await;
    assert!(r.is_err());
    let accepted = tokio::time::timeout(std::time::Duration::from_millis(100), l.accept()).await;
    assert!(accepted.is_err(), "a connection was made");
}

#[tokio::test]
async fn presents_a_client_certificate() {
    let ca = ca("mtls");
    let (chain, key) = leaf(&ca, &["127.0.0.1"], false);
    let addr = server(chain, key, Some(&ca)).await;
    let (cchain, ckey) = leaf(&ca, &["client.test"], false);
    let roots = || Roots::Certificates(vec![ca.der.clone()]);
    let tls = UpstreamTls::new(roots())
        .client_auth(cchain, ckey)
        .alpn(Alpn::Auto);
    assert_eq!(connect(&tls, addr).await, Ok(Some(b"h2".to_vec())));
    let without = UpstreamTls::new(roots()).alpn(Alpn::Auto);
    let e = connect(&without, addr).await.unwrap_err();
    assert!(matches!(e, TlsFailure::AlertReceived(_)), "{e:?}");
    assert_eq!(e.code(), "alert");
}

#[test]
fn settings_errors() {
    assert!(matches!(
        UpstreamTls::new(Roots::System).server_name("bad name!"),
        Err(UpstreamTlsError::ServerName(_))
    ));
    assert!(matches!(
        UpstreamTls::new(Roots::Certificates(Vec::new())).client_config(),
        Err(UpstreamTlsError::Roots(_))
    ));
    let dir = std::env::temp_dir().join(format!("edge-upstream-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let empty = dir.join("empty.pem");
    std::fs::write(&empty, "not pem\n").unwrap();
    let e = load_certificates(&empty).unwrap_err().to_string();
    assert!(e.contains("no CERTIFICATE"), "{e}");
    assert!(load_private_key(&empty).is_err());
    assert!(load_certificates(&dir.join("missing.pem")).is_err());
    std::fs::remove_dir_all(&dir).unwrap();
}
