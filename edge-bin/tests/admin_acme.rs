//! The admin socket's ACME commands against a real CA (Pebble on
//! loopback): `acme status` after issuance, `acme renew NAME` ordering a
//! new certificate though the current one is not due, `show certs`
//! telling the ACME certificate apart.

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use common::reload::*;
use common::*;

/// `acme status`'s row for `acme.test`, by column name, and the whole
/// answer.
async fn acme_row(socket: &Path) -> (HashMap<String, String>, String) {
    let (code, out, err) = edge_admin(socket, "acme status").await;
    assert_eq!(code, 0, "acme status: {out}{err}");
    let mut lines = out.lines();
    let header: Vec<&str> = lines
        .next()
        .unwrap_or_default()
        .trim_start_matches("# ")
        .split_whitespace()
        .collect();
    assert_eq!(header.last(), Some(&"last_error"), "{out}");
    let row: Vec<&str> = lines
        .find(|l| l.starts_with("acme.test "))
        .unwrap_or_else(|| panic!("no acme.test row:\n{out}"))
        .split_whitespace()
        .collect();
    // The last column (last_error) may hold spaces.
    let (cells, error) = row.split_at(header.len() - 1);
    let mut map: HashMap<String, String> = header
        .iter()
        .zip(cells)
        .map(|(h, c)| (h.to_string(), c.to_string()))
        .collect();
    map.insert("last_error".into(), error.join(" "));
    (map, out)
}

/// Waits up to `limit` for `acme.test`'s serial to be set and differ from
/// `old`; returns it.
async fn new_serial(socket: &Path, old: &str, limit: Duration, edge: &Edge) -> String {
    let end = Instant::now() + limit;
    loop {
        let (row, out) = acme_row(socket).await;
        let serial = &row["serial"];
        if serial != "-" && serial != old {
            return serial.clone();
        }
        assert!(
            Instant::now() < end,
            "no new certificate within {limit:?}:\n{out}\n{}",
            edge.log_text()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Issuance shows in `acme status` and `show certs`; `acme renew` orders
/// a new certificate at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acme_status_and_renew_against_pebble() {
    let dir = TempDir::new("admin-acme");
    let socket = dir.path("admin.sock");
    let pki = Pki::new(&dir, "r");
    let http = free_port();
    let pebble = LocalPebble::start(&dir, &pki, http);
    let leaf = pki.leaf(&dir, "t", &["t.test"]);
    let acme = fixture("reload_acme.toml")
        .set("directory_port", pebble.listen)
        .path("ca_roots", &pki.ca_pem)
        .set("extra", "")
        .render();
    let cfg = config(
        &[free_port()],
        &leaf,
        "v1",
        &[free_port()],
        &format!("{acme}\n[admin]\nsocket = \"{}\"\n", socket.display()),
    )
    .replace(
        "[http]\nlisten = []",
        &format!("[http]\nlisten = [\"127.0.0.1:{http}\"]"),
    );
    let edge = start(&dir, &cfg, &[]);

    // Issued: acme status shows it, not due, no failures.
    let first = new_serial(&socket, "-", Duration::from_secs(30), &edge).await;
    let (row, out) = acme_row(&socket).await;
    assert_eq!(row["due"], "no", "{out}");
    assert_eq!(row["ordering"], "no", "{out}");
    assert_eq!(row["failures"], "0", "{out}");
    assert_eq!(row["last_error"], "-", "{out}");
    assert!(row["days_left"].parse::<i64>().unwrap() > 1, "{out}");
    assert_ne!(row["renew_at"], "-", "{out}");

    // show certs: the ACME one beside the file one.
    let (code, certs, err) = edge_admin(&socket, "show certs").await;
    assert_eq!(code, 0, "{certs}{err}");
    let acme_line = certs
        .lines()
        .find(|l| l.split_whitespace().nth(8) == Some(first.as_str()))
        .unwrap_or_else(|| panic!("no row for serial {first}:\n{certs}"));
    let cols: Vec<&str> = acme_line.split_whitespace().collect();
    assert_eq!(
        cols[..4],
        ["acme.test", "acme.test", "acme.test", "acme"],
        "{certs}"
    );
    assert!(cols[4].contains("Pebble"), "issuer: {certs}");
    assert!(
        certs
            .lines()
            .any(|l| l.starts_with("t ") && l.contains(" file ")),
        "{certs}"
    );

    // Unknown name: a clear error, nothing ordered.
    let (code, out, err) = edge_admin(&socket, "acme renew nope.test").await;
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.starts_with("error: no ACME certificate named \"nope.test\" (certificates: acme.test)"),
        "{err}"
    );

    // Renew now: answered at once, a new certificate within the bound.
    let asked = Instant::now();
    let (code, out, err) = edge_admin(&socket, "acme renew acme.test").await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.starts_with("renewal of acme.test started"), "{out}");
    assert!(asked.elapsed() < Duration::from_secs(2), "answered at once");
    let second = new_serial(&socket, &first, Duration::from_secs(30), &edge).await;
    let (row, out) = acme_row(&socket).await;
    assert_eq!(
        (row["due"].as_str(), row["failures"].as_str()),
        ("no", "0"),
        "{out}"
    );
    let (_, certs, _) = edge_admin(&socket, "show certs").await;
    assert!(
        certs.contains(&second) && !certs.contains(&first),
        "{certs}"
    );
    eprintln!("renewed on request in {:?}", asked.elapsed());
}
