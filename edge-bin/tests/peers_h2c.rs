//! `protocol = "h2c"`: edge speaks HTTP/2 without TLS (prior knowledge) to
//! real plaintext HTTP/2 servers, HAProxy (`bind ... proto h2`) and nginx
//! (`listen ... http2` without TLS), whichever protocol the client used
//! towards edge; each server answers with the HTTP version and the host it
//! saw (the client's Host, sent as `:authority` alone: nginx refuses a Host
//! header that differs from `:authority`, which edge sent before). A
//! control pool speaking HTTP/1.1 to HAProxy's h2-only port fails (502):
//! these servers only answer HTTP/2.

mod common;

use common::peers::{NGINX_HTTP_TEMP, get_t_test, haproxy, nginx};
use common::*;

struct Setup {
    f: Front,
    haproxy: Proc,
    nginx: Proc,
}

fn setup(test: &str) -> Setup {
    let (hp, ng) = (free_port(), free_port());
    let f = front(
        test,
        "peers_h2c.toml",
        &["t.test"],
        &[("haproxy_port", hp), ("nginx_port", ng)],
    );
    let haproxy = haproxy(
        &f.dir,
        "haproxy",
        &format!(
            "frontend h2c\n    mode http\n    bind 127.0.0.1:{hp} proto h2\n    \
             http-request return status 200 content-type text/plain \
             lf-string \"haproxy saw HTTP/%[req.ver] %[req.hdr(host)] %[path]\\n\"\n"
        ),
        &[hp],
    );
    let nginx = nginx(
        &f.dir,
        "nginx",
        &format!(
            "http {{ {NGINX_HTTP_TEMP}\n\
             server {{ listen 127.0.0.1:{ng} http2;\n\
             location / {{ return 200 \"nginx saw $server_protocol $host $uri\\n\"; }} }} }}\n"
        ),
        &[ng],
    );
    Setup { f, haproxy, nginx }
}

impl Setup {
    /// GET `path` through edge, the client speaking `version` (`--http1.1`
    /// or `--http2`) to edge: (status, body).
    fn get(&self, version: &str, path: &str) -> (u16, String) {
        let (code, status, body) = get_t_test(self.f.port, &self.f.pki.ca_pem, &[version], path);
        assert_eq!(
            code,
            0,
            "{body}\n{}",
            log_tails(&[&*self.f.edge, &self.haproxy, &self.nginx])
        );
        (status, body)
    }
}

#[test]
fn h2c_pools_talk_http2_to_haproxy_and_nginx() {
    let s = setup("h2c");
    let port = s.f.port;
    // The client's Host reaches the servers as HTTP/2's :authority.
    for version in ["--http1.1", "--http2"] {
        assert_eq!(
            s.get(version, "/haproxy/a"),
            (
                200,
                format!("haproxy saw HTTP/2.0 t.test:{port} /haproxy/a")
            ),
            "client {version}"
        );
        assert_eq!(
            s.get(version, "/nginx/b"),
            (200, "nginx saw HTTP/2.0 t.test /nginx/b".to_owned()),
            "client {version}"
        );
    }
    // The same HAProxy port spoken to in HTTP/1.1 does not answer.
    let (status, body) = s.get("--http1.1", "/control");
    assert_eq!(status, 502, "{body}");
}
