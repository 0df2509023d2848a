//! `sni-dump FILE...`: parse files holding the first bytes a TLS client sent
//! (raw captures) and print one JSON object per file:
//!
//! ```text
//! {"file":"curl.bin","sni":"localhost","alpn":["h2","http/1.1"],"versions":["0x0304","0x0303"],"ja4":"t13d3112h2_…"}
//! {"file":"http.bin","error":"not TLS: the stream does not start with a TLS handshake record"}
//! ```
//!
//! Exits 0 when every file parsed, 1 when any did not, 2 on usage errors.

use edge_sni::{ClientHelloInfo, parse_client_hello};
use serde_json::{Value, json};
use std::process::ExitCode;

fn dump(path: &str) -> (Value, bool) {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) => {
            return (
                json!({ "file": path, "error": format!("reading: {e}") }),
                false,
            );
        }
    };
    match parse_client_hello(&bytes) {
        Ok(hello) => {
            let info = ClientHelloInfo::from(&hello);
            let alpn: Vec<String> = info
                .alpn
                .iter()
                .map(|p| String::from_utf8_lossy(p).into_owned())
                .collect();
            let versions: Vec<String> = info.versions.iter().map(|v| format!("{v:#06x}")).collect();
            let value = json!({
                "file": path,
                "sni": info.sni,
                "alpn": alpn,
                "versions": versions,
                "legacy_version": format!("{:#06x}", info.legacy_version),
                "ja4": info.ja4,
                "ech": info.has_ech,
                "psk": info.has_psk,
                "records": hello.records(),
            });
            (value, true)
        }
        Err(e) => (json!({ "file": path, "error": e.to_string() }), false),
    }
}

fn main() -> ExitCode {
    let files: Vec<String> = std::env::args().skip(1).collect();
    if files.is_empty() || files.iter().any(|f| f == "-h" || f == "--help") {
        eprintln!("usage: sni-dump FILE...  (each FILE holds the first bytes a TLS client sent)");
        return ExitCode::from(2);
    }
    let mut all_ok = true;
    for file in &files {
        let (value, ok) = dump(file);
        all_ok &= ok;
        println!("{value}");
    }
    if all_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
