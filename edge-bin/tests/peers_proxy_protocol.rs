//! PROXY protocol received from real peers in front of edge's HTTPS port
//! (`proxy_protocol = true`, `trusted_proxies` = 127.0.0.4 and 127.0.0.5):
//! HAProxy relaying TCP with `send-proxy-v2` (connecting from 127.0.0.4)
//! and nginx's stream module with `proxy_protocol on` (v1, from
//! 127.0.0.5). The address edge logs (`client` in the access record) and
//! forwards (`X-Forwarded-For`, echoed by a demo backend) is the test
//! client's own, 127.0.0.2 or 127.0.0.3 with the port curl bound, never the
//! proxy's. A PROXY header from a peer outside `trusted_proxies` (HAProxy
//! connecting from 127.0.0.6, curl `--haproxy-protocol` from 127.0.0.7) is
//! refused: the connection is closed without an answer or an access record,
//! and edge's debug log names the peer. The plain-HTTP port has its own
//! `trusted_proxies` (nginx only): its redirect's record names the client
//! nginx saw, and HAProxy, trusted on the HTTPS port, is refused there.
//! Loopback only.

mod common;

use std::path::Path;
use std::time::Duration;

use common::peers::{get_t_test, haproxy, nginx};
use common::syslog::json_lines;
use common::*;

/// edge's log filter: access records and the listener's refusals.
const LOG: &str = "info,edge::access=debug,edge_bin::server=debug";

/// edge (PROXY protocol on its HTTPS port) in front of a demo backend, with
/// HAProxy and nginx in front of edge.
struct Setup {
    f: Front,
    _backend: DemoBackend,
    haproxy: Proc,
    nginx: Proc,
    /// HAProxy's frontend whose server line connects from 127.0.0.4.
    via_haproxy: u16,
    /// HAProxy's frontend whose server line connects from 127.0.0.6.
    via_haproxy_untrusted: u16,
    /// nginx's stream server (connects from 127.0.0.5).
    via_nginx: u16,
    /// HAProxy to edge's plain-HTTP port, from 127.0.0.4 (trusted only on
    /// the HTTPS port).
    plain_via_haproxy: u16,
    /// nginx to edge's plain-HTTP port, from 127.0.0.5.
    plain_via_nginx: u16,
}

fn setup(test: &str) -> Setup {
    let http = free_port();
    let (f, backend) = front_of_demo_backend_with(
        test,
        "peers_proxy_protocol.toml",
        &["t.test"],
        &[("http_port", http)],
        |b| b.rust_log(Some(LOG)),
    );
    let edge = f.port;
    let (hp, hpu, hpp, ng, ngp) = (
        free_port(),
        free_port(),
        free_port(),
        free_port(),
        free_port(),
    );
    let haproxy = haproxy(
        &f.dir,
        "haproxy",
        &format!(
            "frontend trusted\n    mode tcp\n    bind 127.0.0.1:{hp}\n    default_backend edge\n\
             frontend untrusted\n    mode tcp\n    bind 127.0.0.1:{hpu}\n    default_backend edge_untrusted\n\
             backend edge\n    mode tcp\n    \
             server edge 127.0.0.1:{edge} send-proxy-v2 source 127.0.0.4\n\
             backend edge_untrusted\n    mode tcp\n    \
             server edge 127.0.0.1:{edge} send-proxy-v2 source 127.0.0.6\n\
             listen plain\n    mode tcp\n    bind 127.0.0.1:{hpp}\n    \
             server edge 127.0.0.1:{http} send-proxy-v2 source 127.0.0.4\n"
        ),
        &[hp, hpu, hpp],
    );
    let nginx = nginx(
        &f.dir,
        "nginx",
        &format!(
            "stream {{ proxy_protocol on; proxy_bind 127.0.0.5;\n\
             server {{ listen 127.0.0.1:{ng}; proxy_pass 127.0.0.1:{edge}; }}\n\
             server {{ listen 127.0.0.1:{ngp}; proxy_pass 127.0.0.1:{http}; }} }}\n"
        ),
        &[ng, ngp],
    );
    Setup {
        f,
        _backend: backend,
        haproxy,
        nginx,
        via_haproxy: hp,
        via_haproxy_untrusted: hpu,
        via_nginx: ng,
        plain_via_haproxy: hpp,
        plain_via_nginx: ngp,
    }
}

/// `GET https://t.test:PORT/PATH` to 127.0.0.1:`port`, curl bound to
/// `from`:`local_port`, plus `extra` curl options: (curl's exit code,
/// status, body).
fn get_from(
    port: u16,
    ca: &Path,
    from: &str,
    local_port: u16,
    path: &str,
    extra: &[&str],
) -> (i32, u16, String) {
    let lp = local_port.to_string();
    let mut args = vec!["--interface", from, "--local-port", &lp];
    args.extend_from_slice(extra);
    get_t_test(port, ca, &args, path)
}

impl Setup {
    /// The access records (file sink) for `path`, waiting up to 5 s for
    /// the first when `expect` is true.
    fn records(&self, path: &str, expect: bool) -> Vec<serde_json::Value> {
        let file = self.f.dir.path("access.log");
        let of_path = || -> Vec<serde_json::Value> {
            json_lines(&file)
                .into_iter()
                .filter(|r| r["path"] == path)
                .collect()
        };
        if expect {
            wait_until(Duration::from_secs(5), || !of_path().is_empty());
        }
        of_path()
    }

    /// A request from `client` to `port` (a proxy, or edge itself with
    /// `extra` = `--haproxy-protocol`) is served, and edge logs and
    /// forwards `client` with the port curl bound.
    fn assert_client_seen(&self, port: u16, client: &str, path: &str, extra: &[&str]) {
        let lp = free_port();
        let (code, status, body) = get_from(port, &self.f.pki.ca_pem, client, lp, path, extra);
        assert_eq!((code, status), (0, 200), "{body}\n{}", self.tails());
        assert!(body.starts_with("hello from demo"), "{body}");
        // The demo backend echoes the forwarding headers it received.
        assert!(
            body.lines()
                .any(|l| l == format!("x-forwarded-for: {client}")),
            "X-Forwarded-For is not the client's {client}:\n{body}"
        );
        self.assert_record_client(path, &format!("{client}:{lp}"));
    }

    /// The one access record for `path` names `client` (`IP:PORT`).
    fn assert_record_client(&self, path: &str, client: &str) {
        let records = self.records(path, true);
        assert_eq!(records.len(), 1, "{records:?}");
        assert_eq!(
            records[0]["client"], client,
            "the access record's client is not the one the proxy saw: {}",
            records[0]
        );
    }

    /// A request refused by edge: curl fails, no access record, and edge's
    /// log names `peer` as not trusted.
    fn assert_refused(&self, port: u16, from: &str, peer: &str, path: &str, extra: &[&str]) {
        let (code, _, body) = get_from(port, &self.f.pki.ca_pem, from, free_port(), path, extra);
        self.assert_refused_as(code, &body, peer, path);
    }

    /// `code` and `body` (curl's) are those of a request edge refused from
    /// `peer`: no answer, no access record, and a log line naming `peer`.
    fn assert_refused_as(&self, code: i32, body: &str, peer: &str, path: &str) {
        assert_ne!(code, 0, "served through an untrusted PROXY peer: {body}");
        assert!(!body.contains("hello from demo"), "{body}");
        let named = self
            .f
            .edge
            .wait_log(&format!("peer={peer}:"), Duration::from_secs(5));
        let log = self.f.edge.log_plain();
        assert!(
            named
                && log
                    .lines()
                    .any(|l| l.contains("peer is not trusted")
                        && l.contains(&format!("peer={peer}:"))),
            "edge did not log the refusal of {peer}:\n{log}"
        );
        // Give a wrongly accepted request time to be logged, then check.
        std::thread::sleep(Duration::from_millis(300));
        assert!(
            self.records(path, false).is_empty(),
            "a request from an untrusted peer was logged as served"
        );
    }

    fn tails(&self) -> String {
        log_tails(&[&*self.f.edge, &self.haproxy, &self.nginx])
    }
}

#[test]
fn haproxy_send_proxy_v2_passes_the_client_address() {
    let s = setup("pp-haproxy");
    s.assert_client_seen(s.via_haproxy, "127.0.0.2", "/via-haproxy", &[]);
    // Another client address, on a new connection through HAProxy.
    s.assert_client_seen(s.via_haproxy, "127.0.0.3", "/via-haproxy-2", &[]);
}

#[test]
fn nginx_stream_proxy_protocol_passes_the_client_address() {
    let s = setup("pp-nginx");
    s.assert_client_seen(s.via_nginx, "127.0.0.3", "/via-nginx", &[]);
}

#[test]
fn a_proxy_header_from_an_untrusted_peer_is_refused() {
    let s = setup("pp-untrusted");
    // HAProxy sending PROXY v2 from 127.0.0.6, outside trusted_proxies.
    s.assert_refused(
        s.via_haproxy_untrusted,
        "127.0.0.2",
        "127.0.0.6",
        "/untrusted-haproxy",
        &[],
    );
    // curl's own PROXY v1 header straight to edge, from 127.0.0.7.
    s.assert_refused(
        s.f.port,
        "127.0.0.7",
        "127.0.0.7",
        "/untrusted-curl",
        &["--haproxy-protocol"],
    );
    // The same header from a trusted address is accepted: only the peer
    // address made the difference (curl writes its own address in it).
    s.assert_client_seen(
        s.f.port,
        "127.0.0.4",
        "/trusted-curl",
        &["--haproxy-protocol"],
    );
}

/// `GET http://t.test:PORT/PATH` on 127.0.0.1:`port` (a proxy in front of
/// edge's plain-HTTP port), curl bound to `from`:`local_port`: curl's exit
/// code and output (`-w` the status).
fn plain_get_from(port: u16, from: &str, local_port: u16, path: &str) -> (i32, String) {
    curl(&[
        "--interface",
        from,
        "--local-port",
        &local_port.to_string(),
        "--resolve",
        &format!("t.test:{port}:127.0.0.1"),
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        &format!("http://t.test:{port}{path}"),
    ])
}

#[test]
fn the_plain_http_port_trusts_its_own_proxies() {
    let s = setup("pp-plain");
    // nginx (127.0.0.5, trusted there): the redirect's record names the client.
    let lp = free_port();
    let (code, out) = plain_get_from(s.plain_via_nginx, "127.0.0.3", lp, "/plain-nginx");
    assert_eq!((code, out.as_str()), (0, "301"), "{}", s.tails());
    s.assert_record_client("/plain-nginx", &format!("127.0.0.3:{lp}"));
    // HAProxy from 127.0.0.4: trusted on the HTTPS port, not on this one.
    let (code, out) = plain_get_from(
        s.plain_via_haproxy,
        "127.0.0.2",
        free_port(),
        "/plain-haproxy",
    );
    s.assert_refused_as(code, &out, "127.0.0.4", "/plain-haproxy");
}
