//! ACME Renewal Information (RFC 9773) against a small local ACME directory
//! stub (Debian's Pebble has no `renewalInfo`), and a CA that sends a
//! malformed certificate chain.

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
    /// When set, orders go through and this is the "certificate" served.
    chain: Option<String>,
    finalized: bool,
}

fn order_body(base: &str, s: &Stub, replaces: &serde_json::Value) -> serde_json::Value {
    let mut order = serde_json::json!({
        "status": if s.finalized { "valid" } else { "ready" },
        "authorizations": [format!("{base}/authz/1")],
        "finalize": format!("{base}/finalize/1"),
    });
    if s.finalized {
        order["certificate"] = format!("{base}/cert/1").into();
    }
    if !replaces.is_null() {
        order["replaces"] = replaces.clone();
    }
    order
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
            let payload: serde_json::Value = serde_json::from_slice(&payload).unwrap();
            let mut s = state.lock().unwrap();
            s.orders.push(payload.clone());
            if s.chain.is_some() {
                let order = order_body(&base, &s, &payload["replaces"]);
                rsp.status(StatusCode::CREATED)
                    .header("location", format!("{base}/order/1"))
                    .body(json(order))
            } else {
                rsp.status(StatusCode::FORBIDDEN)
                    .header("content-type", "application/problem+json")
                    .body(json(serde_json::json!({
                        "type": "urn:ietf:params:acme:error:unauthorized",
                        "detail": "stub CA refuses orders",
                        "status": 403,
                    })))
            }
        }
        (Method::POST, "/order/1") => {
            let s = state.lock().unwrap();
            let replaces = s
                .orders
                .last()
                .map_or(serde_json::Value::Null, |o| o["replaces"].clone());
            rsp.body(json(order_body(&base, &s, &replaces)))
        }
        (Method::POST, "/authz/1") => {
            let s = state.lock().unwrap();
            let name = s.orders.last().unwrap()["identifiers"][0]["value"].clone();
            rsp.body(json(serde_json::json!({
                "status": "pending",
                "identifier": {"type": "dns", "value": name},
                "challenges": [{
                    "type": "http-01",
                    "url": format!("{base}/chall/1"),
                    "token": "stubToken_1",
                    "status": "pending",
                }],
            })))
        }
        (Method::POST, "/chall/1") => rsp.body(json(serde_json::json!({
            "type": "http-01",
            "url": format!("{base}/chall/1"),
            "token": "stubToken_1",
            "status": "valid",
        }))),
        (Method::POST, "/finalize/1") => {
            let mut s = state.lock().unwrap();
            s.finalized = true;
            let replaces = s
                .orders
                .last()
                .map_or(serde_json::Value::Null, |o| o["replaces"].clone());
            rsp.body(json(order_body(&base, &s, &replaces)))
        }
        (Method::POST, "/cert/1") => {
            let chain = state.lock().unwrap().chain.clone().unwrap_or_default();
            rsp.header("content-type", "application/pem-certificate-chain")
                .body(Full::new(Bytes::from(chain)))
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
    start_stub_with(window, None).await
}

async fn start_stub_with(
    window: (OffsetDateTime, OffsetDateTime),
    chain: Option<String>,
) -> (String, Arc<Mutex<Stub>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let state = Arc::new(Mutex::new(Stub {
        window: Some(window),
        chain,
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_chain_from_the_ca_is_refused_and_the_old_certificate_kept() {
    init_tracing();
    let key = KeyPair::generate().unwrap();
    let unrelated = CertificateParams::new(vec!["bad.edge.test".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap()
        .pem();
    let garbage =
        "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n";
    let cases = [
        (garbage.to_string(), "malformed"),
        (String::new(), "no certificate"),
        (unrelated, "does not match"),
    ];
    for (chain, expected) in cases {
        let now = OffsetDateTime::now_utc();
        let window = (
            now - time::Duration::hours(2),
            now - time::Duration::hours(1),
        );
        let (directory, stub) = start_stub_with(window, Some(chain)).await;
        let dir = tempfile::tempdir().unwrap();
        let storage: Arc<dyn Storage> = Arc::new(DirStorage::new(dir.path()));
        let (_, serial) = store_cert(storage.as_ref(), "bad.edge.test").await;
        let stored = storage
            .load("certificates/bad.edge.test/fullchain.pem")
            .await
            .unwrap();

        let resolver = CertResolver::new();
        let (tx, mut rx) = broadcast::channel(64);
        let _handle = AcmeManager::spawn_with_events(
            config(&directory, "bad.edge.test"),
            storage.clone(),
            resolver.clone(),
            tx,
        )
        .unwrap();
        match wait_event(&mut rx, Duration::from_secs(20), "refused chain", |e| {
            matches!(e, AcmeEvent::Failed { .. } | AcmeEvent::Renewed { .. })
        })
        .await
        {
            AcmeEvent::Failed { error, .. } => {
                assert!(
                    error.contains("certificate rejected") && error.contains(expected),
                    "{error}"
                )
            }
            other => panic!("{other:?}"),
        }
        assert!(
            stub.lock().unwrap().finalized,
            "the order did not reach the download"
        );
        assert_eq!(
            storage
                .load("certificates/bad.edge.test/fullchain.pem")
                .await
                .unwrap(),
            stored
        );
        assert_eq!(resolver.info("bad.edge.test").unwrap().serial, serial);
        assert!(storage.list("challenges").await.unwrap().is_empty());
    }
}
