//! [`CertResolver`]: the rustls certificate resolver, chosen by SNI.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{SignatureAlgorithm, SignatureScheme};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::cert::{self, CertInfo, LoadedCert};
use crate::error::Error;

/// Where a certificate in the resolver came from.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Source {
    /// Managed by ACME, by certificate id. Takes precedence.
    Acme(String),
    /// Added with [`CertResolver::add_static`] or from files.
    Static(String),
}

#[derive(Debug, Clone)]
struct Entry {
    names: Vec<String>,
    certified: Arc<CertifiedKey>,
    info: CertInfo,
}

/// The certificates of one name: at most one per key type, the preferred
/// first (ECDSA, Ed25519, RSA: see [`key_rank`]).
type Candidates = Vec<Arc<CertifiedKey>>;

/// The immutable lookup table readers use; replaced whole on every change.
#[derive(Default)]
struct Table {
    exact: HashMap<String, Candidates>,
    /// `*.example.com` stored as `example.com`.
    wildcard: HashMap<String, Candidates>,
    default: Option<Candidates>,
}

/// The preference among a name's certificates by key type: ECDSA (small,
/// fast), then Ed25519, then RSA (for clients without ECDSA), as HAProxy
/// and nginx choose.
fn key_rank(c: &CertifiedKey) -> u8 {
    match c.key.algorithm() {
        SignatureAlgorithm::ECDSA => 0,
        SignatureAlgorithm::ED25519 => 1,
        SignatureAlgorithm::RSA => 2,
        _ => 3,
    }
}

/// The first of `candidates` whose key can sign with one of the client's
/// `schemes`; the preferred one when none can (the handshake then fails
/// as it would with that certificate alone).
fn choose(
    candidates: &[Arc<CertifiedKey>],
    schemes: &[SignatureScheme],
) -> Option<Arc<CertifiedKey>> {
    if let [only] = candidates {
        return Some(Arc::clone(only));
    }
    candidates
        .iter()
        .find(|c| c.key.choose_scheme(schemes).is_some())
        .or(candidates.first())
        .cloned()
}

#[derive(Debug, Clone)]
struct StaticFiles {
    cert: PathBuf,
    key: PathBuf,
    names: Vec<String>,
    stamp: Option<(SystemTime, u64, SystemTime, u64)>,
}

#[derive(Default, Debug)]
struct Sources {
    entries: BTreeMap<Source, Entry>,
    files: Vec<StaticFiles>,
    default_name: Option<String>,
}

/// A rustls [`ResolvesServerCert`] that picks a certificate by SNI.
///
/// - Exact names first, then a wildcard one label up (`*.example.com`
///   serves `www.example.com`, not `example.com` nor `a.b.example.com`:
///   the meaning of [`edge_sni::HostPattern`], RFC 6125 §6.4.3).
///   Names are matched case-insensitively.
/// - ACME-managed certificates take precedence over static ones for the
///   same name and key type; static certificates serve names ACME does
///   not manage.
/// - A name may have one certificate per key type (ECDSA, Ed25519, RSA):
///   a client gets the first its signature algorithms allow, ECDSA before
///   RSA (HAProxy's and nginx's choice), so old clients get RSA.
/// - Updates swap an immutable table atomically: handshakes in progress
///   keep the certificate they chose, established connections are never
///   touched, new handshakes see the new certificate.
/// - A client without SNI gets the certificate of the name set with
///   [`set_default_name`](Self::set_default_name), or the handshake fails.
pub struct CertResolver {
    table: ArcSwap<Table>,
    sources: Mutex<Sources>,
}

impl fmt::Debug for CertResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertResolver")
            .field("names", &self.names())
            .finish()
    }
}

fn normalize(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// The key of a static certificate: its first name (given, else its own,
/// else its serial) and its key type, so an ECDSA and an RSA certificate
/// for the same names are two entries.
fn static_id(names: &[String], loaded: &LoadedCert) -> String {
    let name = names
        .first()
        .or(loaded.info.names.first())
        .cloned()
        .unwrap_or_else(|| loaded.info.serial.clone());
    format!("{name}#{}", key_rank(&loaded.certified))
}

fn file_stamp(cert: &Path, key: &Path) -> Option<(SystemTime, u64, SystemTime, u64)> {
    let c = std::fs::metadata(cert).ok()?;
    let k = std::fs::metadata(key).ok()?;
    Some((c.modified().ok()?, c.len(), k.modified().ok()?, k.len()))
}

impl CertResolver {
    /// An empty resolver.
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            table: ArcSwap::from_pointee(Table::default()),
            sources: Mutex::new(Sources::default()),
        })
    }

    fn with_sources<T>(&self, f: impl FnOnce(&mut Sources) -> T) -> T {
        let mut sources = self.sources.lock().unwrap_or_else(PoisonError::into_inner);
        let out = f(&mut sources);
        self.rebuild(&sources);
        out
    }

    fn rebuild(&self, sources: &Sources) {
        let mut table = Table::default();
        // BTreeMap order puts Acme before Static: for each name and key
        // type, the first insert wins.
        for entry in sources.entries.values() {
            let rank = key_rank(&entry.certified);
            for name in &entry.names {
                let map = match name.strip_prefix("*.") {
                    Some(_) => &mut table.wildcard,
                    None => &mut table.exact,
                };
                let key = name.strip_prefix("*.").unwrap_or(name).to_owned();
                let candidates = map.entry(key).or_default();
                if candidates.iter().all(|c| key_rank(c) != rank) {
                    candidates.push(Arc::clone(&entry.certified));
                    candidates.sort_by_key(|c| key_rank(c));
                }
            }
        }
        if let Some(default) = &sources.default_name {
            table.default = Self::candidates_in(&table, default).cloned();
        }
        self.table.store(Arc::new(table));
    }

    fn candidates_in<'t>(table: &'t Table, name: &str) -> Option<&'t Candidates> {
        let name = normalize(name);
        if let Some(found) = table.exact.get(&name) {
            return Some(found);
        }
        // `*` is one whole left-most label: edge-sni's `HostPattern` meaning.
        table.wildcard.get(edge_sni::wildcard_parent(&name)?)
    }

    /// The certificate a client asking for `server_name` gets when it
    /// supports every key type (the preferred one: ECDSA before RSA).
    pub fn lookup(&self, server_name: &str) -> Option<Arc<CertifiedKey>> {
        Self::candidates_in(&self.table.load(), server_name)?
            .first()
            .cloned()
    }

    /// The certificate a client asking for `server_name` (`None`: no SNI)
    /// and offering the signature `schemes` gets: of the name's
    /// certificates (one per key type), the first, ECDSA before RSA, whose
    /// key signs with one of the schemes.
    pub fn lookup_for(
        &self,
        server_name: Option<&str>,
        schemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        let table = self.table.load();
        let candidates = match server_name {
            Some(name) => Self::candidates_in(&table, name),
            None => table.default.as_ref(),
        }?;
        choose(candidates, schemes)
    }

    /// Every certificate that serves `name`, the preferred first.
    pub fn lookup_all(&self, name: &str) -> Vec<Arc<CertifiedKey>> {
        Self::candidates_in(&self.table.load(), name)
            .cloned()
            .unwrap_or_default()
    }

    /// Serve the certificate of `name` to clients that send no SNI.
    pub fn set_default_name(&self, name: &str) {
        self.with_sources(|s| s.default_name = Some(normalize(name)));
    }

    /// Every name served (wildcards as `*.example.com`), sorted.
    pub fn names(&self) -> Vec<String> {
        let sources = self.sources.lock().unwrap_or_else(PoisonError::into_inner);
        let mut names: Vec<String> = sources
            .entries
            .values()
            .flat_map(|e| e.names.iter().cloned())
            .collect();
        names.sort();
        names.dedup();
        names
    }

    /// Validity of the certificate that serves `name`, if any.
    pub fn info(&self, name: &str) -> Option<CertInfo> {
        let certified = self.lookup(name)?;
        let sources = self.sources.lock().unwrap_or_else(PoisonError::into_inner);
        sources
            .entries
            .values()
            .find(|e| Arc::ptr_eq(&e.certified, &certified))
            .map(|e| e.info.clone())
    }

    /// Every certificate that serves `name` with its validity, the
    /// preferred first (an ECDSA and an RSA certificate for one name are
    /// two).
    pub fn infos(&self, name: &str) -> Vec<(Arc<CertifiedKey>, CertInfo)> {
        let all = self.lookup_all(name);
        let sources = self.sources.lock().unwrap_or_else(PoisonError::into_inner);
        all.into_iter()
            .filter_map(|certified| {
                let info = sources
                    .entries
                    .values()
                    .find(|e| Arc::ptr_eq(&e.certified, &certified))?
                    .info
                    .clone();
                Some((certified, info))
            })
            .collect()
    }

    /// Installs or replaces the ACME certificate `id` (used by the manager).
    pub(crate) fn set_acme(&self, id: &str, loaded: &LoadedCert) {
        self.insert(Source::Acme(id.to_owned()), loaded, None);
    }

    fn insert(&self, source: Source, loaded: &LoadedCert, names: Option<Vec<String>>) {
        let names = names
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| loaded.info.names.clone())
            .iter()
            .map(|n| normalize(n))
            .collect();
        let entry = Entry {
            names,
            certified: Arc::clone(&loaded.certified),
            info: loaded.info.clone(),
        };
        self.with_sources(|s| {
            s.entries.insert(source, entry);
        });
    }

    /// Adds a certificate not managed by ACME. `names` may be empty: the
    /// certificate's own DNS names are used. Replaces a static certificate
    /// added before under the same first name with the same key type (an
    /// ECDSA and an RSA one for the same names both serve: see
    /// [`lookup_for`](Self::lookup_for)).
    pub fn add_static(
        &self,
        names: &[&str],
        cert_chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    ) -> Result<(), Error> {
        let loaded = cert::load_der(cert_chain, key)?;
        let names: Vec<String> = names.iter().map(|n| normalize(n)).collect();
        let id = static_id(&names, &loaded);
        self.insert(Source::Static(id), &loaded, Some(names));
        Ok(())
    }

    /// Replaces every certificate added with [`add_static`](Self::add_static)
    /// by `certs` (each: names, chain, key; empty names = the certificate's
    /// own) and the no-SNI default name, in one step: a handshake sees the
    /// old set or the new one, never a mix. ACME certificates and
    /// [`add_static_pem_files`](Self::add_static_pem_files) ones stay. A
    /// certificate that does not load changes nothing. For a config reload
    /// that keeps the resolver (and the ACME manager writing into it).
    pub fn replace_static(
        &self,
        certs: Vec<(
            Vec<String>,
            Vec<CertificateDer<'static>>,
            PrivateKeyDer<'static>,
        )>,
        default_name: Option<&str>,
    ) -> Result<(), Error> {
        let mut entries = Vec::with_capacity(certs.len());
        for (names, chain, key) in certs {
            let loaded = cert::load_der(chain, key)?;
            let names: Vec<String> = names.iter().map(|n| normalize(n)).collect();
            let id = static_id(&names, &loaded);
            let names = if names.is_empty() {
                loaded.info.names.iter().map(|n| normalize(n)).collect()
            } else {
                names
            };
            let entry = Entry {
                names,
                certified: Arc::clone(&loaded.certified),
                info: loaded.info.clone(),
            };
            entries.push((Source::Static(id), entry));
        }
        self.with_sources(|s| {
            s.entries
                .retain(|k, _| !matches!(k, Source::Static(id) if !id.starts_with("file:")));
            s.entries.extend(entries);
            s.default_name = default_name.map(normalize);
        });
        Ok(())
    }

    /// Adds a static certificate from PEM files (full chain and key), to be
    /// reloaded by [`reload_static_files`](Self::reload_static_files) when
    /// they change.
    pub fn add_static_pem_files(
        &self,
        names: &[&str],
        cert_path: impl Into<PathBuf>,
        key_path: impl Into<PathBuf>,
    ) -> Result<(), Error> {
        let mut files = StaticFiles {
            cert: cert_path.into(),
            key: key_path.into(),
            names: names.iter().map(|n| normalize(n)).collect(),
            stamp: None,
        };
        self.load_files(&mut files)?;
        self.with_sources(|s| {
            s.files.retain(|f| f.cert != files.cert);
            s.files.push(files);
        });
        Ok(())
    }

    fn load_files(&self, files: &mut StaticFiles) -> Result<(), Error> {
        let stamp = file_stamp(&files.cert, &files.key);
        let read = |p: &Path| {
            std::fs::read(p).map_err(|source| Error::Io {
                path: p.to_owned(),
                source,
            })
        };
        let chain = read(&files.cert)?;
        let key = read(&files.key)?;
        let loaded = cert::load_pem(&chain, &key).map_err(|source| Error::StaticCert {
            path: files.cert.clone(),
            source,
        })?;
        let id = format!("file:{}", files.cert.display());
        self.insert(Source::Static(id), &loaded, Some(files.names.clone()));
        files.stamp = stamp;
        Ok(())
    }

    /// Re-reads static certificate files whose size or modification time
    /// changed. A file that fails to load is reported and the certificate
    /// loaded before keeps serving. Returns how many were reloaded.
    pub fn reload_static_files(&self) -> (usize, Vec<Error>) {
        let files = {
            let sources = self.sources.lock().unwrap_or_else(PoisonError::into_inner);
            sources.files.clone()
        };
        let mut reloaded = 0;
        let mut errors = Vec::new();
        for mut files in files {
            if file_stamp(&files.cert, &files.key) == files.stamp && files.stamp.is_some() {
                continue;
            }
            match self.load_files(&mut files) {
                Ok(()) => {
                    tracing::info!(cert = %files.cert.display(), "reloaded static certificate");
                    reloaded += 1;
                    let mut sources = self.sources.lock().unwrap_or_else(PoisonError::into_inner);
                    if let Some(f) = sources.files.iter_mut().find(|f| f.cert == files.cert) {
                        f.stamp = files.stamp;
                    }
                }
                Err(e) => {
                    tracing::error!(cert = %files.cert.display(), error = %e, "static certificate not reloaded; the previous one keeps serving");
                    errors.push(e);
                }
            }
        }
        (reloaded, errors)
    }

    /// Spawns a task that calls [`reload_static_files`](Self::reload_static_files)
    /// every `interval`.
    pub fn watch_static_files(self: &Arc<Self>, interval: Duration) -> tokio::task::JoinHandle<()> {
        let this = Arc::clone(self);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(interval).await;
                this.reload_static_files();
            }
        })
    }
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.lookup_for(client_hello.server_name(), client_hello.signature_schemes())
    }
}

#[cfg(test)]
mod tests {
    use rustls_pki_types::pem::PemObject;

    use super::*;
    use crate::cert::tests::self_signed;

    fn loaded(names: &[&str]) -> LoadedCert {
        let (c, k) = self_signed(names);
        cert::load_pem(c.as_bytes(), k.as_bytes()).unwrap()
    }

    #[test]
    fn replace_static_swaps_the_static_set_and_keeps_acme() {
        let r = CertResolver::new();
        let a = loaded(&["acme.example"]);
        r.set_acme("a", &a);
        let pem = |names: &[&str]| {
            let (c, k) = self_signed(names);
            (
                vec![CertificateDer::from_pem_slice(c.as_bytes()).unwrap()],
                PrivateKeyDer::from_pem_slice(k.as_bytes()).unwrap(),
            )
        };
        let (c, k) = pem(&["old.example"]);
        r.add_static(&["old.example"], c, k).unwrap();
        r.set_default_name("old.example");
        let (c, k) = pem(&["new.example"]);
        r.replace_static(
            vec![(vec!["new.example".into()], c, k)],
            Some("new.example"),
        )
        .unwrap();
        assert!(r.lookup("old.example").is_none());
        assert!(r.lookup("new.example").is_some());
        assert!(Arc::ptr_eq(
            &r.lookup("acme.example").unwrap(),
            &a.certified
        ));
        assert_eq!(r.names(), ["acme.example", "new.example"]);
        // A bad certificate changes nothing.
        let (c, _) = pem(&["x.example"]);
        let (_, other_key) = pem(&["y.example"]);
        assert!(
            r.replace_static(vec![(vec![], c, other_key)], None)
                .is_err()
        );
        assert!(r.lookup("new.example").is_some());
    }

    #[test]
    fn exact_then_wildcard_and_acme_wins() {
        let r = CertResolver::new();
        let a = loaded(&["a.example"]);
        let w = loaded(&["*.example"]);
        r.set_acme("a", &a);
        r.set_acme("w", &w);
        let (c, k) = self_signed(&["a.example", "static.example"]);
        let chain = vec![CertificateDer::from_pem_slice(c.as_bytes()).unwrap()];
        r.add_static(
            &[],
            chain,
            PrivateKeyDer::from_pem_slice(k.as_bytes()).unwrap(),
        )
        .unwrap();
        assert!(Arc::ptr_eq(&r.lookup("A.EXAMPLE.").unwrap(), &a.certified));
        assert!(Arc::ptr_eq(&r.lookup("b.example").unwrap(), &w.certified));
        assert!(r.lookup("x.b.example").is_none());
        assert!(r.lookup("example").is_none());
        assert!(r.lookup(".example").is_none(), "no label for the '*'");
        assert!(r.lookup("static.example").is_some());
        assert_eq!(r.names(), ["*.example", "a.example", "static.example"]);
        // Replacing keeps the other names.
        let a2 = loaded(&["a.example"]);
        r.set_acme("a", &a2);
        assert!(Arc::ptr_eq(&r.lookup("a.example").unwrap(), &a2.certified));
        assert!(Arc::ptr_eq(&r.lookup("b.example").unwrap(), &w.certified));
    }

    /// A self-signed RSA certificate for `names` (the key from `openssl
    /// genpkey`: ring cannot generate RSA keys), as (chain, key).
    fn rsa_self_signed(names: &[&str]) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
        let out = std::process::Command::new("openssl")
            .args([
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
            ])
            .output()
            .expect("openssl must be installed");
        let pem = String::from_utf8(out.stdout).unwrap();
        let key = rcgen::KeyPair::from_pem(&pem).unwrap();
        let params =
            rcgen::CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap();
        let cert = params.self_signed(&key).unwrap();
        (
            vec![cert.der().clone()],
            PrivateKeyDer::from_pem_slice(pem.as_bytes()).unwrap(),
        )
    }

    fn ecdsa(names: &[&str]) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
        let (c, k) = self_signed(names);
        (
            vec![CertificateDer::from_pem_slice(c.as_bytes()).unwrap()],
            PrivateKeyDer::from_pem_slice(k.as_bytes()).unwrap(),
        )
    }

    fn alg(c: &CertifiedKey) -> SignatureAlgorithm {
        c.key.algorithm()
    }

    #[test]
    fn ecdsa_and_rsa_for_one_name_chosen_by_the_client_schemes() {
        use SignatureScheme as S;
        let r = CertResolver::new();
        let (rc, rk) = rsa_self_signed(&["both.example", "*.w.example"]);
        let (ec, ek) = ecdsa(&["both.example", "*.w.example"]);
        // RSA first in the list: the order of the config does not matter.
        r.replace_static(
            vec![
                (vec!["both.example".into(), "*.w.example".into()], rc, rk),
                (vec!["both.example".into(), "*.w.example".into()], ec, ek),
            ],
            Some("both.example"),
        )
        .unwrap();
        let modern = [
            S::ECDSA_NISTP256_SHA256,
            S::RSA_PSS_SHA256,
            S::RSA_PKCS1_SHA256,
        ];
        let rsa_only = [S::RSA_PSS_SHA256, S::RSA_PKCS1_SHA256];
        for name in [Some("both.example"), Some("x.w.example"), None] {
            let got = r.lookup_for(name, &modern).unwrap();
            assert_eq!(alg(&got), SignatureAlgorithm::ECDSA, "{name:?}");
            let got = r.lookup_for(name, &rsa_only).unwrap();
            assert_eq!(alg(&got), SignatureAlgorithm::RSA, "{name:?}");
            // Neither usable: the preferred one (the handshake fails later).
            let got = r.lookup_for(name, &[S::ED448]).unwrap();
            assert_eq!(alg(&got), SignatureAlgorithm::ECDSA, "{name:?}");
        }
        // ECDSA on another curve than the client's: RSA.
        let got = r
            .lookup_for(
                Some("both.example"),
                &[S::ECDSA_NISTP384_SHA384, S::RSA_PSS_SHA256],
            )
            .unwrap();
        assert_eq!(alg(&got), SignatureAlgorithm::RSA);
        assert_eq!(
            alg(&r.lookup("both.example").unwrap()),
            SignatureAlgorithm::ECDSA
        );
        assert_eq!(r.lookup_all("both.example").len(), 2);
        assert_eq!(r.names(), ["*.w.example", "both.example"]);

        // ACME's ECDSA certificate wins over the static ECDSA one, the
        // static RSA one still serves RSA-only clients.
        let a = loaded(&["both.example"]);
        r.set_acme("a", &a);
        assert!(Arc::ptr_eq(
            &r.lookup_for(Some("both.example"), &modern).unwrap(),
            &a.certified
        ));
        let got = r.lookup_for(Some("both.example"), &rsa_only).unwrap();
        assert_eq!(alg(&got), SignatureAlgorithm::RSA);
        // One certificate alone is served whatever the client offers.
        let (c, k) = ecdsa(&["one.example"]);
        r.add_static(&["one.example"], c, k).unwrap();
        assert!(r.lookup_for(Some("one.example"), &rsa_only).is_some());
    }

    #[test]
    fn static_files_reload_when_changed_and_survive_bad_content() {
        let dir = tempfile::tempdir().unwrap();
        let (cp, kp) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
        let (c, k) = self_signed(&["files.example"]);
        std::fs::write(&cp, &c).unwrap();
        std::fs::write(&kp, &k).unwrap();
        let r = CertResolver::new();
        r.add_static_pem_files(&[], &cp, &kp).unwrap();
        let first = r.info("files.example").unwrap();
        assert_eq!(r.reload_static_files().0, 0);

        std::fs::write(&cp, b"garbage, being rewritten").unwrap();
        let (n, errors) = r.reload_static_files();
        assert_eq!((n, errors.len()), (0, 1));
        assert_eq!(r.info("files.example").unwrap(), first, "old cert kept");

        let (c2, k2) = self_signed(&["files.example", "more.example"]);
        std::fs::write(&cp, &c2).unwrap();
        std::fs::write(&kp, &k2).unwrap();
        assert_eq!(r.reload_static_files().0, 1);
        let second = r.info("files.example").unwrap();
        assert_ne!(second.serial, first.serial);
        assert!(r.lookup("more.example").is_some());
    }

    #[test]
    fn bad_static_input_is_an_error() {
        let r = CertResolver::new();
        let (_, k) = self_signed(&["x.example"]);
        let err = r
            .add_static(
                &["x.example"],
                vec![],
                PrivateKeyDer::from_pem_slice(k.as_bytes()).unwrap(),
            )
            .unwrap_err();
        assert!(err.to_string().contains("no certificate"), "{err}");
        assert!(
            r.add_static_pem_files(&[], "/nonexistent/c.pem", "/nonexistent/k.pem")
                .is_err()
        );
    }
}
