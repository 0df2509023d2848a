//! TLS 1.3 handshakes in memory: a server choosing among 1000 certificates
//! through `CertResolver` (exact and wildcard names) against rustls with a
//! single certificate (`with_single_cert`), the floor for any resolver.
//! Also the bare lookup cost.

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use edge_acme::CertResolver;
use rustls::{ClientConfig, ClientConnection, RootCertStore, ServerConfig, ServerConnection};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn cert(names: &[String]) -> (CertificateDer<'static>, PrivateKeyDer<'static>) {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(names.to_vec())
        .unwrap()
        .self_signed(&key)
        .unwrap();
    (cert.der().clone(), key.serialize_der().try_into().unwrap())
}

fn handshake(server: &Arc<ServerConfig>, client: &Arc<ClientConfig>, name: &str) {
    let name = ServerName::try_from(name.to_owned()).unwrap();
    let mut c = ClientConnection::new(client.clone(), name).unwrap();
    let mut s = ServerConnection::new(server.clone()).unwrap();
    let mut buf = Vec::with_capacity(8192);
    while c.is_handshaking() || s.is_handshaking() {
        buf.clear();
        while c.wants_write() {
            c.write_tls(&mut buf).unwrap();
        }
        s.read_tls(&mut buf.as_slice()).unwrap();
        s.process_new_packets().unwrap();
        buf.clear();
        while s.wants_write() {
            s.write_tls(&mut buf).unwrap();
        }
        c.read_tls(&mut buf.as_slice()).unwrap();
        c.process_new_packets().unwrap();
    }
}

fn bench(cr: &mut Criterion) {
    let target = vec!["www.target.example".to_string()];
    let (target_cert, target_key) = cert(&target);
    let resolver = CertResolver::new();
    for i in 0..1000 {
        let names = [format!("host{i}.example"), format!("*.zone{i}.example")];
        let (c, k) = cert(&names);
        resolver.add_static(&[], vec![c], k).unwrap();
    }
    resolver
        .add_static(&[], vec![target_cert.clone()], target_key.clone_key())
        .unwrap();

    let many = Arc::new(
        ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_cert_resolver(resolver.clone()),
    );
    let single = Arc::new(
        ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![target_cert.clone()], target_key)
            .unwrap(),
    );
    let mut roots = RootCertStore::empty();
    roots.add(target_cert).unwrap();
    let client = Arc::new(
        ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    );

    let mut group = cr.benchmark_group("tls13_handshake");
    group.bench_function("single_cert", |b| {
        b.iter(|| handshake(&single, &client, "www.target.example"))
    });
    group.bench_function("cert_resolver_1000", |b| {
        b.iter(|| handshake(&many, &client, "www.target.example"))
    });
    group.finish();

    let mut group = cr.benchmark_group("lookup");
    group.bench_function("exact", |b| {
        b.iter(|| resolver.lookup(black_box("host512.example")))
    });
    group.bench_function("wildcard", |b| {
        b.iter(|| resolver.lookup(black_box("a.zone512.example")))
    });
    group.bench_function("miss", |b| {
        b.iter(|| resolver.lookup(black_box("nothing.example")))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
