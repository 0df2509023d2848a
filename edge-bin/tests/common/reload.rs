//! What the reload and lifecycle tests share: edge started with
//! `fixtures/reload.toml` on loopback.

use super::{EDGE, Edge, Leaf, TempDir, fixture};

/// Starts edge with `DIR/edge.toml` (`args` after `run -c FILE`), access
/// records quiet unless `$EDGE_TEST_LOG` says otherwise; ready on return.
pub fn start(dir: &TempDir, config: &str, args: &[&str]) -> Edge {
    start_with(dir, config, args, &[])
}

/// [`start`] with environment variables.
pub fn start_with(dir: &TempDir, config: &str, args: &[&str], env: &[(&str, &str)]) -> Edge {
    let filter = std::env::var("EDGE_TEST_LOG").unwrap_or("info,edge::access=warn".into());
    let mut b = Edge::builder(EDGE, dir.write("edge.toml", config)).rust_log(Some(&filter));
    for a in args {
        b = b.arg(*a);
    }
    for (k, v) in env {
        b = b.env(k, *v);
    }
    b.start()
}

/// `fixtures/reload.toml`: HTTPS on `https`, route `/hello` answering
/// `hello`, pool `app` of `servers` (TCP checks every 200 ms, no retries),
/// `extra` tables.
pub fn config(https: &[u16], leaf: &Leaf, hello: &str, servers: &[u16], extra: &str) -> String {
    let listen: Vec<String> = https.iter().map(|p| format!("\"127.0.0.1:{p}\"")).collect();
    let servers: String = servers
        .iter()
        .map(|p| format!("[[pool.server]]\naddress = \"127.0.0.1:{p}\"\n"))
        .collect();
    fixture("reload.toml")
        .set("listen", listen.join(", "))
        .set("extra", extra)
        .set("cert", leaf.cert.display())
        .set("key", leaf.key.display())
        .set("hello", hello)
        .set("servers", servers)
        .render()
}
