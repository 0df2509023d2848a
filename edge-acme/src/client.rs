//! Talking to the CA: the HTTP client under instant-acme, the account, and
//! one order from creation to a checked certificate.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Limited};
use hyper_rustls::HttpsConnectorBuilder;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, BodyWrapper, BytesResponse,
    CertificateIdentifier, ChallengeType, ExternalAccountKey, HttpClient, Identifier, NewAccount,
    NewOrder, OrderStatus, RetryPolicy,
};
use rcgen::{CertificateParams, DistinguishedName, KeyPair};
use serde::{Deserialize, Serialize};

use crate::cert::{self, LoadedCert};
use crate::config::{AcmeConfig, CertificateConfig, Challenge, KeyType};
use crate::dns01::{self, DnsUpdater};
use crate::dns01_records;
use crate::error::Error;
use crate::stop::Stop;
use crate::storage::{self, Storage, StorageError, keys};

/// Largest response accepted from the CA (chains are a few KiB).
const MAX_RESPONSE: usize = 1 << 20;

/// instant-acme's HTTP client: hyper over rustls (ring), Mozilla roots plus
/// configured extra roots, a timeout on every request including its body.
struct TimeoutClient {
    inner: Client<hyper_rustls::HttpsConnector<HttpConnector>, BodyWrapper<Bytes>>,
    timeout: Duration,
}

impl TimeoutClient {
    fn new(config: &AcmeConfig) -> Result<Self, Error> {
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        for root in &config.extra_roots {
            roots
                .add(root.clone())
                .map_err(|e| Error::Config(format!("extra trusted root: {e}")))?;
        }
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Config(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(config.request_timeout));
        let connector = HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        Ok(Self {
            inner: Client::builder(TokioExecutor::new()).build(connector),
            timeout: config.request_timeout,
        })
    }
}

impl HttpClient for TimeoutClient {
    fn request(
        &self,
        req: Request<BodyWrapper<Bytes>>,
    ) -> Pin<Box<dyn Future<Output = Result<BytesResponse, instant_acme::Error>> + Send>> {
        let fut = self.inner.request(req);
        let timeout = self.timeout;
        Box::pin(async move {
            let exchange = async {
                let rsp = fut
                    .await
                    .map_err(|e| instant_acme::Error::Other(Box::new(e)))?;
                let (parts, body) = rsp.into_parts();
                let body = Limited::new(body, MAX_RESPONSE)
                    .collect()
                    .await
                    .map_err(instant_acme::Error::Other)?
                    .to_bytes();
                Ok(BytesResponse {
                    parts,
                    body: Box::new(body),
                })
            };
            match tokio::time::timeout(timeout, exchange).await {
                Ok(result) => result,
                Err(_) => Err(instant_acme::Error::Other(
                    format!("no complete answer from the CA within {timeout:?}").into(),
                )),
            }
        })
    }
}

/// The account as stored: credentials plus the contacts it was made with.
#[derive(Serialize, Deserialize)]
struct StoredAccount {
    contact: Vec<String>,
    credentials: AccountCredentials,
}

/// A storage-safe id for a directory URL: `host_port_path`.
pub(crate) fn directory_id(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let id: String = rest
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let id = id.trim_matches('_').trim_start_matches('.');
    if id.is_empty() {
        "ca".to_owned()
    } else {
        id.to_owned()
    }
}

/// Wraps instant-acme errors with the CA they came from.
pub(crate) fn acme_err(config: &AcmeConfig) -> impl Fn(instant_acme::Error) -> Error + '_ {
    move |source| Error::Acme {
        directory: config.directory_url.clone(),
        source,
    }
}

/// Takes the storage lock `name` as this node (`node_id`, `lock_ttl`),
/// polling for up to `lock_wait`; `LockBusy` when another node keeps it,
/// `Stopped` when the manager stops while waiting.
pub(crate) async fn lock(
    config: &AcmeConfig,
    storage: &Arc<dyn Storage>,
    name: String,
    stop: &Stop,
) -> Result<storage::StorageLock, Error> {
    let lock = storage::acquire(
        storage,
        &name,
        &config.node_id,
        config.lock_ttl,
        Duration::from_millis(250),
        config.lock_wait,
        stop,
    )
    .await?;
    match lock {
        Some(lock) => Ok(lock),
        None if stop.is_set() => Err(Error::Stopped),
        None => Err(Error::LockBusy {
            name,
            waited: config.lock_wait,
        }),
    }
}

/// The ACME account: loaded from storage, or created once (under the
/// account lock, re-checking storage after taking it) and stored. At
/// `stop` the work is given up and the account lock released.
pub(crate) async fn load_or_create_account(
    config: &AcmeConfig,
    storage: &Arc<dyn Storage>,
    stop: &Stop,
) -> Result<Account, Error> {
    let dir_id = directory_id(&config.directory_url);
    let key = keys::account(&dir_id);
    if let Some(account) = stop.until(load_account(config, storage, &key)).await? {
        return Ok(account);
    }
    let lock = lock(config, storage, format!("account-{dir_id}"), stop).await?;
    let result = stop
        .until(async {
            if let Some(account) = load_account(config, storage, &key).await? {
                return Ok(account);
            }
            let contact: Vec<&str> = config.contact.iter().map(String::as_str).collect();
            let eab = config
                .eab
                .as_ref()
                .map(|e| ExternalAccountKey::new(e.key_id.clone(), &e.hmac_key));
            let (account, credentials) =
                Account::builder_with_http(Box::new(TimeoutClient::new(config)?))
                    .create(
                        &NewAccount {
                            contact: &contact,
                            terms_of_service_agreed: true,
                            only_return_existing: false,
                        },
                        config.directory_url.clone(),
                        eab.as_ref(),
                    )
                    .await
                    .map_err(acme_err(config))?;
            let stored = StoredAccount {
                contact: config.contact.clone(),
                credentials,
            };
            let json = serde_json::to_vec_pretty(&stored)
                .map_err(|e| Error::Protocol(format!("serialising the account: {e}")))?;
            storage.store(&key, &json).await?;
            tracing::info!(account = %account.id(), "created ACME account");
            Ok(account)
        })
        .await;
    lock.release().await;
    result
}

async fn load_account(
    config: &AcmeConfig,
    storage: &Arc<dyn Storage>,
    key: &str,
) -> Result<Option<Account>, Error> {
    let raw = match storage.load(key).await {
        Ok(raw) => raw,
        Err(StorageError::NotFound(_)) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let stored: StoredAccount =
        serde_json::from_slice(&raw).map_err(|e| Error::CorruptStorage {
            key: key.to_owned(),
            reason: format!("{e} (move the file away to create a new account)"),
        })?;
    let account = Account::builder_with_http(Box::new(TimeoutClient::new(config)?))
        .from_credentials(stored.credentials)
        .await
        .map_err(acme_err(config))?;
    if stored.contact != config.contact {
        let contact: Vec<&str> = config.contact.iter().map(String::as_str).collect();
        match account.update_contacts(&contact).await {
            Ok(()) => {
                let credentials = serde_json::from_slice::<StoredAccount>(&raw)
                    .map_err(|e| Error::Protocol(e.to_string()))?
                    .credentials;
                let updated = StoredAccount {
                    contact: config.contact.clone(),
                    credentials,
                };
                if let Ok(json) = serde_json::to_vec_pretty(&updated) {
                    storage.store(key, &json).await?;
                }
                tracing::info!("updated the ACME account's contacts");
            }
            Err(e) => tracing::warn!(error = %e, "could not update the account's contacts"),
        }
    }
    Ok(Some(account))
}

/// How old a pending challenge token must be before a node removes it: far
/// beyond an order's lifetime, so only tokens of orders given up (at a
/// graceful stop, or by a crash) are swept.
const STALE_CHALLENGE: Duration = Duration::from_secs(86_400);

/// Removes challenge tokens older than [`STALE_CHALLENGE`] (as of `now`).
pub(crate) async fn sweep_stale_challenges(storage: &Arc<dyn Storage>, now: SystemTime) {
    let Ok(tokens) = storage.list("challenges").await else {
        return;
    };
    for key in tokens {
        let Ok(info) = storage.stat(&key).await else {
            continue;
        };
        if now
            .duration_since(info.modified)
            .is_ok_and(|age| age > STALE_CHALLENGE)
        {
            match storage.delete(&key).await {
                Ok(()) => tracing::info!(%key, "removed a stale challenge token"),
                Err(e) => {
                    tracing::warn!(%key, error = %e, "could not remove a stale challenge token")
                }
            }
        }
    }
}

/// A certificate freshly obtained from the CA, checked, with its PEM forms.
pub(crate) struct Issued {
    pub(crate) loaded: LoadedCert,
    pub(crate) chain_pem: String,
    pub(crate) key_pem: String,
}

/// What an order published for the CA to see, removed after the order.
#[derive(Default)]
struct Published {
    /// HTTP-01 tokens in storage.
    tokens: Vec<String>,
    /// DNS-01 TXT records: (name, value).
    records: Vec<(String, String)>,
}

/// Runs one order: new order, challenges published (HTTP-01 tokens in
/// storage, DNS-01 TXT records on the DNS server), finalize with a fresh
/// key, download and check the chain. What was published is removed
/// whatever the outcome.
pub(crate) async fn order(
    config: &AcmeConfig,
    storage: &Arc<dyn Storage>,
    account: &Account,
    cert: &CertificateConfig,
    replaces: Option<&str>,
) -> Result<Issued, Error> {
    let dns = match (&config.dns, cert.challenge) {
        (Some(dns), Challenge::Dns01) => Some(DnsUpdater::new(dns.clone())?),
        (None, Challenge::Dns01) => {
            return Err(Error::Config("DNS-01 needs the DNS update settings".into()));
        }
        _ => None,
    };
    if let Some(dns) = &dns {
        dns01_records::sweep(storage, dns, &cert.id()).await;
    }
    let mut published = Published::default();
    // Bounded here, not only by the caller, so that what was published is
    // removed after a timeout too.
    let limit = order_limit(config, cert);
    let inner = order_inner(
        config,
        storage,
        account,
        cert,
        replaces,
        dns.as_ref(),
        &mut published,
    );
    let result = tokio::time::timeout(limit, inner)
        .await
        .unwrap_or(Err(Error::Timeout {
            what: "ACME order",
            after: limit,
        }));
    for token in published.tokens {
        if let Err(e) = storage.delete(&keys::challenge(&token)).await {
            tracing::warn!(%token, error = %e, "could not remove challenge token");
        }
    }
    if let Some(dns) = &dns {
        for (name, value) in published.records {
            dns01_records::remove(storage, dns, &cert.id(), &name, &value).await;
        }
    }
    result
}

/// The longest one order of `cert` may take: twice the order timeout (the
/// CA's validation, then the certificate), plus for DNS-01 the wait for
/// each name's record to show on the zone's servers.
pub(crate) fn order_limit(config: &AcmeConfig, cert: &CertificateConfig) -> Duration {
    let base = config.order_timeout.saturating_mul(2);
    match (&config.dns, cert.challenge) {
        (Some(dns), Challenge::Dns01) => {
            let names = u32::try_from(cert.names.len()).unwrap_or(u32::MAX);
            base.saturating_add(dns.propagation_timeout.saturating_mul(names))
        }
        _ => base,
    }
}

/// Publishes one authorization's challenge: an HTTP-01 token in storage, or
/// a DNS-01 TXT record, waited for on the zone's servers. Then tells the CA.
async fn publish_challenge(
    config: &AcmeConfig,
    storage: &Arc<dyn Storage>,
    mut authz: instant_acme::AuthorizationHandle<'_>,
    dns: Option<&DnsUpdater>,
    cert_id: &str,
    published: &mut Published,
) -> Result<(), Error> {
    let err = acme_err(config);
    let name = authz.identifier().to_string();
    let Some(dns) = dns else {
        let mut challenge = authz.challenge(ChallengeType::Http01).ok_or_else(|| {
            Error::Protocol(format!("the CA offers no http-01 challenge for {name}"))
        })?;
        let token = challenge.token.clone();
        if !crate::responder::is_token(&token) {
            return Err(Error::Protocol(format!(
                "challenge token for {name} is not base64url"
            )));
        }
        let key_auth = challenge.key_authorization();
        storage
            .store(&keys::challenge(&token), key_auth.as_str().as_bytes())
            .await?;
        published.tokens.push(token);
        return challenge.set_ready().await.map_err(&err);
    };
    let mut challenge = authz
        .challenge(ChallengeType::Dns01)
        .ok_or_else(|| Error::Protocol(format!("the CA offers no dns-01 challenge for {name}")))?;
    let record = dns01::challenge_name(&name);
    let value = challenge.key_authorization().dns_value();
    // Recorded first: a request that reached the server is undone even
    // when its answer was lost (and noted in storage, for an order given up).
    published.records.push((record.clone(), value.clone()));
    dns01_records::publish(storage, dns, cert_id, &record, &value).await?;
    tracing::info!(%record, "DNS-01 TXT record added; waiting for the zone's servers");
    dns.wait_visible(&record, &value).await?;
    challenge.set_ready().await.map_err(&err)
}

/// After a failure before validation: deactivates the order's pending
/// authorizations, so none is left waiting at the CA for a record that
/// will not come. Best effort (logged).
async fn abandon(order: &mut instant_acme::Order) {
    let mut authorizations = order.authorizations();
    while let Some(authz) = authorizations.next().await {
        let Ok(mut authz) = authz else { return };
        if authz.status != AuthorizationStatus::Pending {
            continue;
        }
        let name = authz.identifier().to_string();
        match authz.deactivate().await {
            Ok(_) => tracing::info!(%name, "pending authorization deactivated"),
            Err(e) => tracing::warn!(%name, error = %e, "could not deactivate the authorization"),
        }
    }
}

async fn order_inner(
    config: &AcmeConfig,
    storage: &Arc<dyn Storage>,
    account: &Account,
    cert: &CertificateConfig,
    replaces: Option<&str>,
    dns: Option<&DnsUpdater>,
    published: &mut Published,
) -> Result<Issued, Error> {
    let err = acme_err(config);
    let identifiers: Vec<Identifier> = cert
        .names
        .iter()
        .map(|n| Identifier::Dns(n.clone()))
        .collect();
    let replaces_id = replaces.and_then(|r| {
        let (aki, serial) = r.split_once('.')?;
        Some(CertificateIdentifier {
            authority_key_identifier: aki.to_owned().into(),
            serial: serial.to_owned().into(),
        })
    });
    let mut new_order = NewOrder::new(&identifiers);
    if let Some(id) = replaces_id.clone() {
        new_order = new_order.replaces(id);
    }
    let mut order = match account.new_order(&new_order).await {
        Ok(order) => order,
        // A CA without ARI, or one that already saw this certificate
        // replaced: order again without `replaces`.
        Err(e) if replaces_id.is_some() => {
            tracing::info!(error = %e, "order with `replaces` refused; ordering without it");
            account
                .new_order(&NewOrder::new(&identifiers))
                .await
                .map_err(&err)?
        }
        Err(e) => return Err(err(e)),
    };
    tracing::info!(order = %order.url(), "ACME order created");

    let mut authorizations = order.authorizations();
    let mut failure = None;
    while let Some(authz) = authorizations.next().await {
        let authz = authz.map_err(&err)?;
        match authz.status {
            AuthorizationStatus::Valid => continue,
            AuthorizationStatus::Pending => {}
            status => {
                return Err(Error::Protocol(format!(
                    "authorization for {} is {status:?}",
                    authz.identifier()
                )));
            }
        }
        if let Err(e) = publish_challenge(config, storage, authz, dns, &cert.id(), published).await
        {
            failure = Some(e);
            break;
        }
    }
    if let Some(e) = failure {
        abandon(&mut order).await;
        return Err(e);
    }

    let poll = RetryPolicy::new()
        .initial_delay(Duration::from_millis(250))
        .backoff(1.5)
        .timeout(config.order_timeout);
    let status = order.poll_ready(&poll).await.map_err(&err)?;
    if status != OrderStatus::Ready {
        // Find which name failed and why.
        let mut authorizations = order.authorizations();
        while let Some(authz) = authorizations.next().await {
            let mut authz = authz.map_err(&err)?;
            let state = authz.refresh().await.map_err(&err)?;
            if state.status == AuthorizationStatus::Invalid {
                let problem = state
                    .challenges
                    .iter()
                    .find_map(|c| c.error.as_ref())
                    .map_or_else(|| "no detail given".to_owned(), ToString::to_string);
                return Err(Error::Validation {
                    name: state.identifier().to_string(),
                    problem,
                });
            }
        }
        return Err(Error::Protocol(format!("order ended {status:?}")));
    }

    let key = match cert.key_type {
        KeyType::EcdsaP256 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256),
        KeyType::EcdsaP384 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384),
        KeyType::Rsa2048 => {
            KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048)
        }
    }
    .map_err(|e| Error::Protocol(format!("key: {e}")))?;
    let mut params = CertificateParams::new(cert.names.clone())
        .map_err(|e| Error::Config(format!("names: {e}")))?;
    params.distinguished_name = DistinguishedName::new();
    let csr = params
        .serialize_request(&key)
        .map_err(|e| Error::Protocol(format!("CSR: {e}")))?;
    order.finalize_csr(csr.der()).await.map_err(&err)?;
    let chain_pem = order.poll_certificate(&poll).await.map_err(&err)?;
    let key_pem = key.serialize_pem();
    let loaded = cert::load_pem(chain_pem.as_bytes(), key_pem.as_bytes())?;
    cert::check_issued(&loaded, &cert.names, SystemTime::now())?;
    Ok(Issued {
        loaded,
        chain_pem,
        key_pem,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directory_ids_are_storage_keys() {
        for url in [
            "https://acme-v02.api.letsencrypt.org/directory",
            "https://127.0.0.1:14000/dir",
            "http://[::1]:80/",
            "",
            "https://.../..",
        ] {
            let id = directory_id(url);
            storage::validate_key(&keys::account(&id)).unwrap_or_else(|e| panic!("{url}: {e}"));
        }
        assert_eq!(
            directory_id("https://acme-v02.api.letsencrypt.org/directory"),
            "acme-v02.api.letsencrypt.org_directory"
        );
    }

    /// A DNS-01 order may also wait for each name's record to show.
    #[test]
    fn dns01_orders_get_time_for_propagation() {
        let mut config = AcmeConfig::default();
        config.order_timeout(Duration::from_secs(100));
        let http = CertificateConfig::new(["a.example.test", "b.example.test"]);
        assert_eq!(order_limit(&config, &http), Duration::from_secs(200));
        let dns = http.clone().dns01();
        assert_eq!(order_limit(&config, &dns), Duration::from_secs(200));
        let mut update = crate::DnsUpdateConfig::new(
            "127.0.0.1:53".parse().unwrap(),
            "example.test",
            "k",
            b"s".to_vec(),
        );
        update.propagation_timeout = Duration::from_secs(30);
        config.dns_update(update);
        assert_eq!(order_limit(&config, &http), Duration::from_secs(200));
        assert_eq!(order_limit(&config, &dns), Duration::from_secs(260));
    }

    #[tokio::test]
    async fn only_challenge_tokens_older_than_a_day_are_swept() {
        let dir = tempfile::tempdir().unwrap();
        let storage: Arc<dyn Storage> = Arc::new(crate::DirStorage::new(dir.path()));
        storage.store("challenges/tok", b"tok.thumb").await.unwrap();
        storage
            .store("accounts/x/account.json", b"{}")
            .await
            .unwrap();
        sweep_stale_challenges(&storage, SystemTime::now()).await;
        assert!(
            storage.load("challenges/tok").await.is_ok(),
            "a fresh token went"
        );
        let later = SystemTime::now() + STALE_CHALLENGE + Duration::from_secs(60);
        sweep_stale_challenges(&storage, later).await;
        assert!(
            storage.load("challenges/tok").await.is_err(),
            "a stale token stayed"
        );
        assert!(storage.load("accounts/x/account.json").await.is_ok());
    }

    #[tokio::test]
    async fn a_ca_that_never_answers_times_out() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let _hold = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((s, _)) = listener.accept().await {
                held.push(s); // accept, never answer
            }
        });
        let mut config = AcmeConfig::default();
        config.request_timeout(Duration::from_millis(300));
        let client = TimeoutClient::new(&config).unwrap();
        let req = Request::get(format!("http://{addr}/dir"))
            .body(BodyWrapper::default())
            .unwrap();
        let started = std::time::Instant::now();
        let err = client.request(req).await.err().expect("must time out");
        assert!(err.to_string().contains("no complete answer"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}
