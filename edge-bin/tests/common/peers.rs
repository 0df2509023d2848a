//! Real peers around edge on loopback: HAProxy and nginx from Debian,
//! each one process in the foreground (`haproxy -db`, nginx with
//! `master_process off`) with its config, log and pid file in a
//! [`TempDir`], killed on drop; and the management listener's
//! `/status.json` as the tests read it.

use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use super::*;

/// Starts `haproxy -db -f DIR/NAME.cfg` with `body` (the sections after
/// `global` and `defaults`); its log (stderr, and its own log lines) in
/// `DIR/NAME.log`. Ready when every port of `ports` accepts connections.
pub fn haproxy(dir: &TempDir, name: &str, body: &str, ports: &[u16]) -> Proc {
    let conf = dir.write(
        &format!("{name}.cfg"),
        format!(
            "global\n    log stderr format raw local0 info\n\
             defaults\n    log global\n    timeout connect 5s\n    \
             timeout client 30s\n    timeout server 30s\n{body}"
        ),
    );
    let mut cmd = Command::new("haproxy");
    cmd.arg("-db").arg("-f").arg(&conf);
    ready(
        Proc::spawn(cmd, "haproxy", dir.path(&format!("{name}.log"))),
        ports,
    )
}

/// Starts nginx (one process: `master_process off`) with `body` (the
/// `stream {}` and/or `http {}` blocks; the stream module is loaded when
/// there is one) under the prefix `DIR/NAME`; its
/// error log in `DIR/NAME.log`. Ready when every port of `ports` accepts
/// connections.
pub fn nginx(dir: &TempDir, name: &str, body: &str, ports: &[u16]) -> Proc {
    let prefix = dir.path(name);
    std::fs::create_dir_all(&prefix).unwrap();
    let p = prefix.display();
    // Debian builds the stream module as a dynamic one (libnginx-mod-stream).
    let stream = if body.contains("stream {") {
        format!("load_module {NGINX_STREAM_MODULE};\n")
    } else {
        String::new()
    };
    let conf = dir.write(
        &format!("{name}.conf"),
        format!(
            "{stream}master_process off;\ndaemon off;\npid {p}/nginx.pid;\n\
             error_log stderr info;\nevents {{ worker_connections 256; }}\n{body}"
        ),
    );
    let mut cmd = Command::new("nginx");
    cmd.arg("-p")
        .arg(&prefix)
        .arg("-e")
        .arg("stderr")
        .arg("-c")
        .arg(&conf);
    ready(
        Proc::spawn(cmd, "nginx", dir.path(&format!("{name}.log"))),
        ports,
    )
}

/// nginx's stream module as Debian installs it (`libnginx-mod-stream`).
pub const NGINX_STREAM_MODULE: &str = "/usr/lib/nginx/modules/ngx_stream_module.so";

/// The temp paths of an nginx `http {}` block, under its prefix (the
/// Debian defaults are under /var/lib/nginx).
pub const NGINX_HTTP_TEMP: &str = "client_body_temp_path body; proxy_temp_path proxy; \
     fastcgi_temp_path fastcgi; uwsgi_temp_path uwsgi; scgi_temp_path scgi; \
     access_log off;";

fn ready(mut p: Proc, ports: &[u16]) -> Proc {
    for &port in ports {
        let up = wait_until(Duration::from_secs(10), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() || !p.running()
        });
        assert!(
            up && p.running(),
            "{} did not listen on {port}:\n{}",
            p.name,
            p.log_text()
        );
    }
    p
}

/// `GET http://127.0.0.1:PORT/status.json` of a management listener.
pub fn status_json(port: u16) -> Value {
    let (code, body) = curl(&[&format!("http://127.0.0.1:{port}/status.json")]);
    assert_eq!(code, 0, "{body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

/// Server `pool/address` in a `/status.json` document.
pub fn status_server<'a>(v: &'a Value, key: &str) -> &'a Value {
    let (pool, addr) = key.split_once('/').unwrap();
    let p = v["pools"]
        .as_array()
        .and_then(|a| a.iter().find(|p| p["name"] == pool))
        .unwrap_or_else(|| panic!("no pool {pool} in {v}"));
    p["servers"]
        .as_array()
        .and_then(|a| a.iter().find(|s| s["address"] == addr))
        .unwrap_or_else(|| panic!("no server {addr} in pool {pool}: {p}"))
}

/// The `state` of server `pool/address` in a `/status.json` document.
pub fn status_state(v: &Value, key: &str) -> String {
    status_server(v, key)["state"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

/// GET `https://t.test:PORT/PATH` with curl (`t.test` resolved to
/// 127.0.0.1, verified against `ca`; `extra` options first): curl's exit
/// code, the status and the body (trimmed).
pub fn get_t_test(
    port: u16,
    ca: &std::path::Path,
    extra: &[&str],
    path: &str,
) -> (i32, u16, String) {
    let ca = ca.to_string_lossy();
    let resolve = format!("t.test:{port}:127.0.0.1");
    let url = format!("https://t.test:{port}{path}");
    let mut args = extra.to_vec();
    args.extend([
        "--cacert",
        &ca,
        "--resolve",
        &resolve,
        "-w",
        "\n%{http_code}",
        &url,
    ]);
    let (code, out) = curl(&args);
    let (body, status) = out.trim_end().rsplit_once('\n').unwrap_or(("", &out));
    (code, status.parse().unwrap_or(0), body.trim().to_owned())
}
