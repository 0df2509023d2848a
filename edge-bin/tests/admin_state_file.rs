//! `[admin] state_file` (HAProxy's `server-state-file`): drain/maint states
//! and runtime weights set on the admin socket are written on every change
//! and taken back at start, so they survive `kill -9` and a restart.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::*;

/// The `show servers` row of `server`, split in columns.
fn row(show: &str, server: &str) -> Vec<String> {
    show.lines()
        .map(|l| l.split_whitespace().map(str::to_string).collect::<Vec<_>>())
        .find(|cols| cols.get(1).map(String::as_str) == Some(server))
        .unwrap_or_else(|| panic!("no row for {server} in:\n{show}"))
}

async fn admin_ok(socket: &Path, args: &str) -> String {
    let (code, out, err) = edge_admin(socket, args).await;
    assert_eq!(code, 0, "edge admin {args}: {out}{err}");
    out
}

/// Starts edge with `config` and waits for its admin socket.
async fn start(dir: &TempDir, config: &str, socket: &Path) -> Edge {
    let _ = std::fs::remove_file(socket);
    let edge = start_edge(dir, "edge", config);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !socket.exists() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(socket.exists(), "no admin socket at {}", socket.display());
    edge
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_states_survive_kill_and_restart() {
    let dir = TempDir::new("admin-state-file");
    let pki = Pki::new(&dir, "front");
    let leaf = pki.leaf(&dir, "app", &["app.test"]);
    let socket = dir.path("admin.sock");
    let state = dir.path("server-state.json");
    let (a, b, c) = ("127.0.0.1:7001", "127.0.0.1:7002", "127.0.0.1:7003");
    let servers = |list: &[&str]| -> String {
        list.iter()
            .map(|s| format!("[[pool.server]]\naddress = \"{s}\"\nweight = 2\n"))
            .collect()
    };
    let config = fixture("admin.toml")
        .set("https_port", free_port())
        .set("admin_socket", socket.display())
        .set(
            "admin_extra",
            format!("state_file = \"{}\"", state.display()),
        )
        .set("cert", leaf.cert.display())
        .set("key", leaf.key.display())
        .set("http_servers", servers(&[a, b, c]))
        .set("tcp_servers", servers(&["127.0.0.1:7004"]))
        .render();
    let mut edge = start(&dir, &config, &socket).await;
    admin_ok(&socket, &format!("maint app {a}")).await;
    admin_ok(&socket, &format!("set server app/{b} state drain")).await;
    admin_ok(&socket, &format!("set weight app {c} 9")).await;
    let saved = std::fs::read_to_string(&state).expect("the state file is written");
    assert!(
        saved.contains("\"maint\"") && saved.contains("\"drain\""),
        "{saved}"
    );

    // kill -9: nothing runs at exit; what is on disk must be enough.
    edge.crash();
    drop(edge);
    let _edge = start(&dir, &config, &socket).await;
    let show = admin_ok(&socket, "show servers app").await;
    assert_eq!(row(&show, a)[2], "maint", "{show}");
    assert_eq!(row(&show, b)[2], "drain", "{show}");
    assert!(
        row(&show, c).contains(&"9".to_string()),
        "weight kept: {show}"
    );
    assert!(
        std::fs::read_to_string(dir.path("edge.log"))
            .unwrap()
            .contains("server states restored"),
        "the restore is logged"
    );

    // Back in rotation: the file forgets it, so a restart does too.
    admin_ok(&socket, &format!("enable app {a}")).await;
    let saved = std::fs::read_to_string(&state).unwrap();
    assert!(!saved.contains(a), "{saved}");
}
