//! `show certs`, `acme status` and `acme renew NAME`: the certificates in
//! service and what the ACME manager does with the managed ones.

use std::collections::BTreeMap;
use std::time::SystemTime;

use super::Answer;
use super::table::Table;
use crate::state::State;

/// `t` as RFC 3339 UTC to the second: `2026-11-25T11:08:27Z`.
fn utc(t: SystemTime) -> String {
    let mut out = Vec::new();
    crate::accesslog::format::rfc3339(t, &mut out);
    out.truncate(19);
    out.push(b'Z');
    String::from_utf8_lossy(&out).into_owned()
}

/// Whole days from now to `t` (negative once past).
fn days_left(t: SystemTime, now: SystemTime) -> i64 {
    match t.duration_since(now) {
        Ok(d) => i64::try_from(d.as_secs() / 86_400).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_secs().div_ceil(86_400)).unwrap_or(i64::MAX),
    }
}

/// A table header from space-separated column names.
fn columns(names: &str) -> Vec<&str> {
    names.split(' ').collect()
}

/// A list as one cell: comma-separated, `-` when empty.
fn list(v: &[String]) -> String {
    if v.is_empty() {
        "-".into()
    } else {
        v.join(",")
    }
}

/// A distinguished name as one cell (spaces would split the column).
fn dn(s: Option<&str>) -> String {
    s.map_or_else(|| "-".into(), |s| s.replace(", ", ",").replace(' ', "_"))
}

/// `show certs`: one row per certificate in service, soonest expiry first.
pub(super) fn show_certs(state: &State) -> Answer {
    let now = SystemTime::now();
    let mut t = Table::new(&columns(
        "name names served_for source issuer not_before not_after days_left serial key files",
    ));
    for c in served_certificates(state) {
        let name = match &c.config {
            Some(conf) => conf.name.clone(),
            None => c.info.names.first().cloned().unwrap_or_else(|| "-".into()),
        };
        let files = match c.config.as_ref().and_then(|conf| conf.files.as_ref()) {
            Some((cert, key)) => format!("{},{}", cert.display(), key.display()),
            None => "-".into(),
        };
        t.row(vec![
            name,
            list(&c.info.names),
            list(&c.served),
            c.source().into(),
            dn(c.issuer.as_deref()),
            utc(c.info.not_before),
            utc(c.info.not_after),
            days_left(c.info.not_after, now).to_string(),
            c.info.serial.clone(),
            c.info.key.clone(),
            files,
        ]);
    }
    Answer::ok(t.render())
}

const NO_ACME: &str = "no ACME certificates are configured ([acme] certificates is empty)";

/// `acme status`: per managed certificate, what the manager knows.
pub(super) fn acme_status(state: &State) -> Answer {
    let Some(handle) = &state.acme else {
        return Answer::err(NO_ACME);
    };
    let now = SystemTime::now();
    let mut t = Table::new(&columns(
        "names serial not_after days_left renew_at due ordering failures key last_error",
    ));
    let mut all = handle.status();
    all.sort_by(|a, b| a.names.cmp(&b.names));
    for s in all {
        let due = s.renewal_requested || s.renew_at.is_some_and(|r| r <= now);
        t.row(vec![
            list(&s.names),
            s.serial.unwrap_or_else(|| "-".into()),
            s.not_after.map_or_else(|| "-".into(), utc),
            s.not_after
                .map_or_else(|| "-".into(), |n| days_left(n, now).to_string()),
            s.renew_at.map_or_else(|| "-".into(), utc),
            if s.renewal_requested {
                "asked"
            } else if due {
                "yes"
            } else {
                "no"
            }
            .into(),
            if s.ordering { "yes" } else { "no" }.into(),
            s.failures.to_string(),
            s.key_type.name().into(),
            // Last column: may hold spaces.
            s.last_error
                .map_or_else(|| "-".into(), |e| e.replace(['\n', '\r'], " ")),
        ]);
    }
    Answer::ok(t.render())
}

/// `acme renew NAME`: asks the manager to renew now; answers at once.
pub(super) fn acme_renew(state: &State, name: &str) -> Answer {
    let Some(handle) = &state.acme else {
        return Answer::err(NO_ACME);
    };
    match handle.renew_now(name) {
        Some(names) => {
            tracing::info!(names = ?names, "admin: acme renew");
            Answer::ok(format!(
                "renewal of {name} started (certificate {}); see \"acme status\"\n",
                names.join(",")
            ))
        }
        None => {
            let mut known: Vec<String> = handle
                .status()
                .into_iter()
                .filter_map(|s| s.names.first().cloned())
                .collect();
            known.sort();
            Answer::err(format!(
                "no ACME certificate named {name:?} (certificates: {})",
                known.join(", ")
            ))
        }
    }
}

/// The issuer and subject of a DER certificate, as `CN=..., O=...`.
fn names_of(der: &[u8]) -> Option<(String, String)> {
    use x509_parser::prelude::{FromDer, X509Certificate};
    let (_, c) = X509Certificate::from_der(der).ok()?;
    Some((c.issuer().to_string(), c.subject().to_string()))
}

/// One certificate in service, with the names it is served for.
#[derive(Debug, Clone)]
pub(crate) struct ServedCert {
    pub(crate) info: edge_acme::CertInfo,
    pub(crate) issuer: Option<String>,
    pub(crate) subject: Option<String>,
    /// The names it is served for (SNI), sorted.
    pub(crate) served: Vec<String>,
    /// Managed by ACME (its serial is one the ACME manager serves).
    pub(crate) acme: bool,
    /// The `[[certificate]]` it comes from, if any.
    pub(crate) config: Option<crate::state::ConfiguredCert>,
}

impl ServedCert {
    /// Where it comes from: `acme`, `self-signed` or `file`.
    pub(crate) fn source(&self) -> &'static str {
        match &self.config {
            _ if self.acme => "acme",
            Some(c) if c.files.is_none() => "self-signed",
            Some(_) => "file",
            None if self.issuer.is_some() && self.issuer == self.subject => "self-signed",
            None => "file",
        }
    }
}

/// Served certificates, one per certificate (by serial), soonest expiry
/// first. Shared by the status page and the admin socket's `show certs`.
pub(crate) fn served_certificates(state: &State) -> Vec<ServedCert> {
    let acme_serials: Vec<String> = state
        .acme
        .as_ref()
        .map(|h| h.status().into_iter().filter_map(|s| s.serial).collect())
        .unwrap_or_default();
    let mut by_serial: BTreeMap<String, ServedCert> = BTreeMap::new();
    for name in state.certs.names() {
        // An ECDSA and an RSA certificate for one name: both listed.
        for (certified, info) in state.certs.infos(&name) {
            let entry = by_serial.entry(info.serial.clone()).or_insert_with(|| {
                let leaf = certified.cert.first().cloned();
                let (issuer, subject) = leaf.as_deref().and_then(names_of).unzip();
                ServedCert {
                    config: state
                        .cert_configs
                        .iter()
                        .find(|c| Some(&c.leaf) == leaf.as_ref())
                        .cloned(),
                    acme: acme_serials.contains(&info.serial),
                    info,
                    issuer,
                    subject,
                    served: Vec::new(),
                }
            });
            entry.served.push(name.clone());
        }
    }
    let mut out: Vec<ServedCert> = by_serial.into_values().collect();
    out.sort_by_key(|c| c.info.not_after);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn dates_and_days() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_764_000_000);
        assert_eq!(utc(t), "2025-11-24T16:00:00Z");
        let day = Duration::from_secs(86_400);
        assert_eq!(days_left(t + day * 3 + Duration::from_secs(5), t), 3);
        assert_eq!(days_left(t, t + Duration::from_secs(5)), -1);
        assert_eq!(
            dn(Some("CN=Pebble Intermediate CA, O=x")),
            "CN=Pebble_Intermediate_CA,O=x"
        );
        assert_eq!(list(&[]), "-");
    }
}
