//! The client certificate a terminated connection was verified with
//! (`[[client_auth]]`), and the request headers that tell the backend about
//! it. Headers of these names from the client are always removed first, so
//! a client cannot forge them.

use http::{HeaderMap, HeaderName, HeaderValue};
use rustls_pki_types::CertificateDer;
use sha2::{Digest as _, Sha256};
use x509_parser::der_parser::asn1_rs::ToDer as _;
use x509_parser::prelude::{FromDer as _, X509Certificate, X509Name};

/// The verified subject, RFC 4514 (`CN=client,O=Example`).
pub const SUBJECT: HeaderName = HeaderName::from_static("x-client-cert-subject");
/// SHA-256 of the leaf certificate's DER, lowercase hex.
pub const FINGERPRINT: HeaderName = HeaderName::from_static("x-client-cert-fingerprint");
/// `SUCCESS` (a certificate was verified) or `NONE` (no certificate).
pub const VERIFY: HeaderName = HeaderName::from_static("x-client-cert-verify");

/// The prefix of every header edge sets here; all are removed from the
/// client's request.
const PREFIX: &str = "x-client-cert-";

/// A verified client certificate, as forwarded and logged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCert {
    /// RFC 4514 subject; ASCII (other bytes escaped as `\XX`).
    pub subject: String,
    /// SHA-256 of the DER, lowercase hex.
    pub fingerprint: String,
}

impl ClientCert {
    /// The leaf's subject and fingerprint. rustls verified the chain
    /// already; a subject that does not parse is logged as empty.
    pub fn of(leaf: &CertificateDer<'_>) -> Self {
        let subject = X509Certificate::from_der(leaf)
            .map(|(_, c)| rfc4514(c.subject()))
            .unwrap_or_default();
        let fingerprint = Sha256::digest(leaf.as_ref())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        Self {
            subject,
            fingerprint,
        }
    }
}

/// Removes every `X-Client-Cert-*` header the client sent, then sets the
/// verify status and, with a certificate, its subject and fingerprint.
pub fn set_headers(headers: &mut HeaderMap, cert: Option<&ClientCert>) {
    let forged: Vec<HeaderName> = headers
        .keys()
        .filter(|k| k.as_str().starts_with(PREFIX))
        .cloned()
        .collect();
    for k in forged {
        headers.remove(k);
    }
    let Some(cert) = cert else {
        headers.insert(VERIFY, HeaderValue::from_static("NONE"));
        return;
    };
    headers.insert(VERIFY, HeaderValue::from_static("SUCCESS"));
    // Both are ASCII without control characters (escaped), so valid.
    if let Ok(v) = HeaderValue::from_str(&cert.subject) {
        headers.insert(SUBJECT, v);
    }
    if let Ok(v) = HeaderValue::from_str(&cert.fingerprint) {
        headers.insert(FINGERPRINT, v);
    }
}

/// A distinguished name as RFC 4514 writes it: the last RDN first, `,`
/// between RDNs, `+` inside one, short names (`CN`, `O`, ...) or the
/// dotted OID, string values escaped, others as `#` and the DER in hex.
pub fn rfc4514(name: &X509Name<'_>) -> String {
    let registry = x509_parser::objects::oid_registry();
    let rdns: Vec<String> = name
        .iter()
        .map(|rdn| {
            rdn.iter()
                .map(|attr| {
                    let ty = x509_parser::objects::oid2abbrev(attr.attr_type(), registry)
                        .map_or_else(|_| attr.attr_type().to_id_string(), str::to_string);
                    let value = match attr.as_str() {
                        Ok(s) => escape(s),
                        Err(_) => {
                            let der = attr.attr_value().to_der_vec().unwrap_or_default();
                            let hex: String = der.iter().map(|b| format!("{b:02x}")).collect();
                            format!("#{hex}")
                        }
                    };
                    format!("{ty}={value}")
                })
                .collect::<Vec<_>>()
                .join("+")
        })
        .collect();
    rdns.into_iter().rev().collect::<Vec<_>>().join(",")
}

/// RFC 4514 §2.4 escaping, plus every byte outside printable ASCII as
/// `\XX` (so the value fits an HTTP header).
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let last = s.len().saturating_sub(1);
    for (i, c) in s.char_indices() {
        match c {
            '"' | '+' | ',' | ';' | '<' | '>' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            '#' if i == 0 => out.push_str("\\#"),
            ' ' if i == 0 || i == last => out.push_str("\\ "),
            ' '..='~' => out.push(c),
            _ => {
                let mut buf = [0; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    out.push_str(&format!("\\{b:02X}"));
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(dn: &[(rcgen::DnType, &str)]) -> CertificateDer<'static> {
        let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name = rcgen::DistinguishedName::new();
        for (t, v) in dn {
            p.distinguished_name.push(t.clone(), *v);
        }
        let key = rcgen::KeyPair::generate().unwrap();
        p.self_signed(&key).unwrap().der().clone()
    }

    #[test]
    fn subject_is_rfc4514_last_rdn_first_and_escaped() {
        let der = cert(&[
            (rcgen::DnType::OrganizationName, "Example, Inc."),
            (rcgen::DnType::CommonName, "#admin é"),
        ]);
        let c = ClientCert::of(&der);
        assert_eq!(c.subject, r"CN=\#admin \C3\A9,O=Example\, Inc.");
        assert_eq!(c.fingerprint.len(), 64);
        assert!(HeaderValue::from_str(&c.subject).is_ok());
        let expected: String = Sha256::digest(der.as_ref())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(c.fingerprint, expected);
    }

    #[test]
    fn forged_headers_are_removed() {
        let mut h = HeaderMap::new();
        h.insert(
            "x-client-cert-subject",
            HeaderValue::from_static("CN=forged"),
        );
        h.insert("X-Client-Cert-Anything", HeaderValue::from_static("x"));
        h.insert("x-other", HeaderValue::from_static("kept"));
        set_headers(&mut h, None);
        assert!(h.get(SUBJECT).is_none());
        assert!(h.get("x-client-cert-anything").is_none());
        assert_eq!(h.get(VERIFY).unwrap(), "NONE");
        assert_eq!(h.get("x-other").unwrap(), "kept");
        let c = ClientCert {
            subject: "CN=real".into(),
            fingerprint: "ab".into(),
        };
        h.insert(
            "x-client-cert-subject",
            HeaderValue::from_static("CN=forged"),
        );
        set_headers(&mut h, Some(&c));
        assert_eq!(h.get_all(SUBJECT).iter().count(), 1);
        assert_eq!(h.get(SUBJECT).unwrap(), "CN=real");
        assert_eq!(h.get(FINGERPRINT).unwrap(), "ab");
        assert_eq!(h.get(VERIFY).unwrap(), "SUCCESS");
    }

    #[test]
    fn garbage_is_not_a_panic() {
        let c = ClientCert::of(&CertificateDer::from(vec![0x30, 0x03, 0x01]));
        assert_eq!(c.subject, "");
    }
}
