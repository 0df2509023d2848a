//! ACME Renewal Information (RFC 9773) against a small local ACME directory
//! stub: Debian's Pebble has no `renewalInfo`.

mod common;

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use common::*;
use edge_acme::{AcmeEvent, AcmeManager, CertResolver, DirStorage, RenewalConfig, Storage};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::net::TcpListener;
use tokio::sync::broadcast;

#[derive(Default)]
struct Stub {
    window: Option<(OffsetDateTime, OffsetDateTime)>,
    renewal_info_ids: Vec<String>,
    orders: Vec<serde_json::Value>,
}

async fn handle(
    state: Arc<Mutex<Stub>>,
    base: String,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path().to_owned();
    let method = req.method().clone();
    let body = req.into_body().collect().await.unwrap().to_bytes();
    let rsp = Response::builder().header("replay-nonce", format!("n{}", rand_nonce()));
    let json = |v: serde_json::Value| Full::new(Bytes::from(v.to_string()));
    let rsp = match (method, path.as_str()) {
        (Method::GET, "/dir") => rsp.body(json(serde_json::json!({
            "newNonce": format!("{base}/nonce"),
            "newAccount": format!("{base}/account"),
            "newOrder": format!("{base}/order"),
            "revokeCert": format!("{base}/revoke"),
            "keyChange": format!("{base}/key-change"),
            "renewalInfo": format!("{base}/renewal-info"),
        }))),
        (_, "/nonce") => rsp.body(Full::default()),
        (Method::POST, "/account") => rsp
            .status(StatusCode::CREATED)
            .header("location", format!("{base}/acct/1"))
            .body(json(serde_json::json!({"status": "valid"}))),
        (Method::POST, "/order") => {
            let jws: serde_json::Value = serde_json::from_slice(&body).unwrap();
            let payload = b64url_decode(jws["payload"].as_str().unwrap());
            state
                .lock()
                .unwrap()
                .orders
                .push(serde_json::from_slice(&payload).unwrap());
            rsp.status(StatusCode::FORBIDDEN)
                .header("content-type", "application/problem+json")
                .body(json(serde_json::json!({
                    "type": "urn:ietf:params:acme:error:unauthorized",
                    "detail": "stub CA refuses orders",
                    "status": 403,
                })))
        }
        (Method::GET, p) if p.starts_with("/renewal-info/") => {
            let mut s = state.lock().unwrap();
            s.renewal_info_ids
                .push(p["/renewal-info/".len()..].to_owned());
            let (start, end) = s.window.unwrap();
            rsp.header("retry-after", "3600")
                .body(json(serde_json::json!({
                    "suggestedWindow": {
                        "start": start.format(&Rfc3339).unwrap(),
                        "end": end.format(&Rfc3339).unwrap(),
                    }
                })))
        }
        _ => rsp.status(StatusCode::NOT_FOUND).body(Full::default()),
    };
    Ok(rsp.unwrap())
}

fn rand_nonce() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(1);
    N.fetch_add(1, Ordering::Relaxed)
}

async fn start_stub(window: (OffsetDateTime, OffsetDateTime)) -> (String, Arc<Mutex<Stub>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let state = Arc::new(Mutex::new(Stub {
        window: Some(window),
        ..Stub::default()
    }));
    let (st, b) = (state.clone(), base.clone());
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let (st, b) = (st.clone(), b.clone());
            tokio::spawn(async move {
                let svc = service_fn(move |req| handle(st.clone(), b.clone(), req));
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (format!("{base}/dir"), state)
}

/// Stores a 90-day certificate with an authority key identifier, as if
/// issued 1 day ago. Returns its RFC 9773 identifier and serial.
async fn store_cert(storage: &dyn Storage, name: &str) -> (String, String) {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(DnType::CommonName, "stub CA");
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(vec![name.to_string()]).unwrap();
    params.use_authority_key_identifier_extension = true;
    let now = OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + time::Duration::days(89);
    let cert = params.signed_by(&key, &issuer).unwrap();
    storage
        .store(
            &format!("certificates/{name}/fullchain.pem"),
            cert.pem().as_bytes(),
        )
        .await
        .unwrap();
    storage
        .store(
            &format!("certificates/{name}/privkey.pem"),
            key.serialize_pem().as_bytes(),
        )
        .await
        .unwrap();
    let id = instant_acme::CertificateIdentifier::try_from(cert.der()).unwrap();
    (id.to_string(), serial_hex(cert.der()))
}

fn config(directory: &str, name: &str) -> edge_acme::AcmeConfig {
    let mut config = edge_acme::AcmeConfig::default();
    config
        .directory_url(directory)
        .certificate([name])
        .request_timeout(Duration::from_secs(5))
        .renewal(RenewalConfig {
            backoff_initial: Duration::from_secs(30),
            storage_poll: Duration::from_millis(200),
            ..RenewalConfig::default()
        });
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ari_window_in_the_past_renews_now_replacing_the_old_certificate() {
    init_tracing();
    let now = OffsetDateTime::now_utc();
    let (directory, stub) = start_stub((
        now - time::Duration::hours(2),
        now - time::Duration::hours(1),
    ))
    .await;
    let dir = tempfile::tempdir().unwrap();
    let storage: Arc<dyn Storage> = Arc::new(DirStorage::new(dir.path()));
    let (ari_id, serial) = store_cert(storage.as_ref(), "ari.edge.test").await;

    let resolver = CertResolver::new();
    let (tx, mut rx) = broadcast::channel(64);
    let handle = AcmeManager::spawn_with_events(
        config(&directory, "ari.edge.test"),
        storage,
        resolver.clone(),
        tx,
    )
    .unwrap();
    match wait_event(&mut rx, Duration::from_secs(20), "load", |_| true).await {
        AcmeEvent::Loaded { serial: s, .. } => assert_eq!(s, serial),
        other => panic!("{other:?}"),
    }
    // Own threshold is 59 days away; the CA's window says now.
    match wait_event(&mut rx, Duration::from_secs(20), "renewal attempt", |_| {
        true
    })
    .await
    {
        AcmeEvent::Failed {
            error, ca_problem, ..
        } => {
            assert_eq!(
                ca_problem.as_deref(),
                Some("urn:ietf:params:acme:error:unauthorized")
            );
            assert!(error.contains("stub CA refuses orders"), "{error}");
        }
        other => panic!("{other:?}"),
    }
    let s = stub.lock().unwrap();
    assert_eq!(s.renewal_info_ids, std::slice::from_ref(&ari_id));
    assert_eq!(
        s.orders[0]["replaces"],
        serde_json::json!(ari_id),
        "{:?}",
        s.orders
    );
    assert_eq!(s.orders[0]["identifiers"][0]["value"], "ari.edge.test");
    drop(s);
    // Nothing lost: the old certificate still serves.
    assert_eq!(resolver.info("ari.edge.test").unwrap().serial, serial);
    assert!(handle.status()[0].ari_window.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ari_window_ahead_schedules_renewal_inside_it() {
    init_tracing();
    let now = OffsetDateTime::now_utc();
    let (start, end) = (
        now + time::Duration::hours(1),
        now + time::Duration::hours(2),
    );
    let (directory, stub) = start_stub((start, end)).await;
    let dir = tempfile::tempdir().unwrap();
    let storage: Arc<dyn Storage> = Arc::new(DirStorage::new(dir.path()));
    let (ari_id, _) = store_cert(storage.as_ref(), "later.edge.test").await;

    let handle = AcmeManager::spawn(
        config(&directory, "later.edge.test"),
        storage,
        CertResolver::new(),
    )
    .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let status = loop {
        let status = handle.status().remove(0);
        if status.ari_window.is_some() && status.renew_at.is_some() {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no ARI window: {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let (start, end) = (SystemTime::from(start), SystemTime::from(end));
    let renew_at = status.renew_at.unwrap();
    assert!(
        renew_at >= start - Duration::from_secs(1) && renew_at <= end,
        "{status:?}"
    );
    assert_eq!(status.ari_window, Some((start, end)));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let s = stub.lock().unwrap();
    assert!(
        s.orders.is_empty(),
        "ordered before the window: {:?}",
        s.orders
    );
    assert_eq!(
        s.renewal_info_ids,
        [ari_id],
        "renewal info is cached until Retry-After"
    );
}
