//! Parse real ClientHellos (curl: 517 bytes; Chromium with an ML-KEM key
//! share: 1924 bytes) with edge-sni, rustls's server `Acceptor` and the
//! `tls-parser` crate, in the same run, each extracting the SNI and ALPN.
//!
//! Run pinned: `taskset -c 1 cargo bench -p edge-sni --bench parse`.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;

fn load(file: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/captures/{file}.bin",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

/// edge-sni: SNI and the first ALPN protocol.
fn edge_sni(bytes: &[u8]) -> usize {
    let hello = edge_sni::parse_client_hello(bytes).unwrap();
    hello.server_name().map_or(0, str::len) + hello.alpn().next().map_or(0, <[u8]>::len)
}

/// edge-sni, also computing the JA4 fingerprint.
fn edge_sni_ja4(bytes: &[u8]) -> usize {
    let hello = edge_sni::parse_client_hello(bytes).unwrap();
    hello.server_name().map_or(0, str::len) + hello.ja4().a().len()
}

/// rustls: the server-side `Acceptor` that reads a ClientHello before
/// choosing a config.
fn rustls_acceptor(bytes: &[u8]) -> usize {
    let mut acceptor = rustls::server::Acceptor::default();
    let mut rd = bytes;
    acceptor.read_tls(&mut rd).unwrap();
    let accepted = acceptor.accept().map_err(|(e, _)| e).unwrap().unwrap();
    let hello = accepted.client_hello();
    hello.server_name().map_or(0, str::len)
        + hello
            .alpn()
            .and_then(|mut a| a.next())
            .map_or(0, <[u8]>::len)
}

/// tls-parser: the record and handshake, then the extension list.
fn tls_parser(bytes: &[u8]) -> usize {
    use tls_parser::{
        TlsExtension, TlsMessage, TlsMessageHandshake, parse_tls_client_hello_extensions,
        parse_tls_plaintext,
    };
    let (_, record) = parse_tls_plaintext(bytes).unwrap();
    let mut n = 0;
    for msg in &record.msg {
        if let TlsMessage::Handshake(TlsMessageHandshake::ClientHello(ch)) = msg {
            let (_, exts) = parse_tls_client_hello_extensions(ch.ext.unwrap_or_default()).unwrap();
            for ext in exts {
                match ext {
                    TlsExtension::SNI(names) => {
                        n += names.first().map_or(0, |(_, name)| name.len())
                    }
                    TlsExtension::ALPN(protos) => n += protos.first().map_or(0, |p| p.len()),
                    _ => {}
                }
            }
        }
    }
    n
}

fn bench(c: &mut Criterion) {
    for file in ["curl", "chromium"] {
        let bytes = load(file);
        // All parsers see the same SNI and ALPN.
        assert_eq!(edge_sni(&bytes), rustls_acceptor(&bytes));
        assert_eq!(edge_sni(&bytes), tls_parser(&bytes));
        let mut group = c.benchmark_group(format!("client_hello_{}B", bytes.len()));
        group.throughput(Throughput::Bytes(bytes.len() as u64));
        group.bench_with_input(BenchmarkId::new("edge-sni", file), &bytes, |b, bytes| {
            b.iter(|| edge_sni(black_box(bytes)))
        });
        group.bench_with_input(
            BenchmarkId::new("edge-sni+ja4", file),
            &bytes,
            |b, bytes| b.iter(|| edge_sni_ja4(black_box(bytes))),
        );
        group.bench_with_input(
            BenchmarkId::new("rustls-acceptor", file),
            &bytes,
            |b, bytes| b.iter(|| rustls_acceptor(black_box(bytes))),
        );
        group.bench_with_input(BenchmarkId::new("tls-parser", file), &bytes, |b, bytes| {
            b.iter(|| tls_parser(black_box(bytes)))
        });
        group.finish();
    }
}

/// Interleaved timing: each round times a batch of every parser in turn,
/// and the fastest round counts. On a shared, loaded machine the minimum
/// is far steadier than a mean. Prints ns per parse and the ratios.
fn interleaved_ratios() {
    type Parser = fn(&[u8]) -> usize;
    let parsers: [(&str, Parser); 4] = [
        ("edge-sni", edge_sni),
        ("edge-sni+ja4", edge_sni_ja4),
        ("rustls-acceptor", rustls_acceptor),
        ("tls-parser", tls_parser),
    ];
    for file in ["curl", "chromium"] {
        let bytes = load(file);
        let mut best = [f64::INFINITY; 4];
        for _ in 0..300 {
            for (i, (_, parse)) in parsers.iter().enumerate() {
                let start = std::time::Instant::now();
                for _ in 0..200 {
                    black_box(parse(black_box(&bytes)));
                }
                best[i] = best[i].min(start.elapsed().as_nanos() as f64 / 200.0);
            }
        }
        println!("interleaved minimum, {file} ({} bytes):", bytes.len());
        for (i, (name, _)) in parsers.iter().enumerate() {
            println!(
                "  {name:16} {:8.0} ns   rustls/this {:5.1}x   tls-parser/this {:5.1}x",
                best[i],
                best[2] / best[i],
                best[3] / best[i]
            );
        }
    }
}

fn bench_all(c: &mut Criterion) {
    interleaved_ratios();
    bench(c);
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(50).measurement_time(std::time::Duration::from_secs(3)).warm_up_time(std::time::Duration::from_secs(1));
    targets = bench_all
}
criterion_main!(benches);
