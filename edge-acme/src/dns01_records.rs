//! The DNS-01 records an order publishes, noted in storage
//! (`dns01/<certificate>/<name>@<value>`) before they are sent, so that an
//! order given up (a graceful stop, a crash) leaves no record behind for
//! long: the next order of the certificate, under its storage lock, removes
//! them first.

use std::sync::Arc;

use crate::dns01::DnsUpdater;
use crate::error::Error;
use crate::storage::Storage;

fn key(cert_id: &str, name: &str, value: &str) -> String {
    format!("dns01/{cert_id}/{name}@{value}")
}

/// Notes the record, then adds it on the DNS server.
pub(crate) async fn publish(
    storage: &Arc<dyn Storage>,
    dns: &DnsUpdater,
    cert_id: &str,
    name: &str,
    value: &str,
) -> Result<(), Error> {
    storage
        .store(&key(cert_id, name, value), value.as_bytes())
        .await?;
    dns.publish(name, value).await
}

/// Removes the record from the DNS server, then its note. A record that
/// could not be removed stays noted, for the next order to remove.
pub(crate) async fn remove(
    storage: &Arc<dyn Storage>,
    dns: &DnsUpdater,
    cert_id: &str,
    name: &str,
    value: &str,
) -> bool {
    match dns.remove(name, value).await {
        Ok(()) => {
            if let Err(e) = storage.delete(&key(cert_id, name, value)).await {
                tracing::warn!(error = %e, "could not remove the note of a DNS-01 record");
            }
            tracing::info!(%name, "DNS-01 TXT record removed");
            true
        }
        Err(e) => {
            tracing::warn!(error = %e, "could not remove the DNS-01 TXT record; the next order tries again");
            false
        }
    }
}

/// Removes the records of this certificate's earlier orders that were given
/// up before their clean-up. Called under the certificate's storage lock.
pub(crate) async fn sweep(storage: &Arc<dyn Storage>, dns: &DnsUpdater, cert_id: &str) {
    let Ok(keys) = storage.list(&format!("dns01/{cert_id}")).await else {
        return;
    };
    for k in keys {
        let Some((name, value)) = k.rsplit('/').next().and_then(|n| n.split_once('@')) else {
            continue;
        };
        if remove(storage, dns, cert_id, name, value).await {
            tracing::info!(%name, "removed a DNS-01 record left by an order given up");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A noted record is found by the sweep; a server that cannot be reached
    /// keeps the note for the next order.
    #[tokio::test]
    async fn noted_records_stay_until_removed() {
        let dir = tempfile::tempdir().unwrap();
        let storage: Arc<dyn Storage> = Arc::new(crate::DirStorage::new(dir.path()));
        // Nothing listens on port 9 of loopback: the update fails at once.
        let mut config = crate::DnsUpdateConfig::new(
            "127.0.0.1:9".parse().unwrap(),
            "example.test",
            "k",
            b"secret".to_vec(),
        );
        config.request_timeout = std::time::Duration::from_millis(500);
        let dns = DnsUpdater::new(config).unwrap();
        let (name, value) = ("_acme-challenge.example.test", "abc-_1");
        assert!(
            publish(&storage, &dns, "_.example.test", name, value)
                .await
                .is_err()
        );
        let noted = storage.list("dns01/_.example.test").await.unwrap();
        assert_eq!(
            noted,
            ["dns01/_.example.test/_acme-challenge.example.test@abc-_1"]
        );
        sweep(&storage, &dns, "_.example.test").await;
        assert_eq!(storage.list("dns01").await.unwrap().len(), 1);
        assert!(storage.list("dns01/other").await.unwrap().is_empty());
    }
}
