//! Outlier detection with a real backend: nginx serves two servers of one
//! pool, `bad` answering 503 to traffic while its health path `/health`
//! answers 200, and `good`. `[pool.outlier]` (3 failures in a row, 3 s)
//! ejects `bad` although its checks pass (`/status.json`: "ejected", last
//! check passed; `edge_backend_up` 0), the traffic moves to `good` (every
//! answer is good's; nginx's access log of `bad` shows no request), and
//! after the ejection time `bad` is back in rotation and gets traffic again.

mod common;

use std::time::{Duration, Instant};

use common::peers::{NGINX_HTTP_TEMP, get_t_test, nginx, status_json, status_server, status_state};
use common::syslog::{metric, scrape};
use common::*;

struct Setup {
    f: Front,
    nginx: Proc,
    bad: u16,
    good: u16,
    management: u16,
}

impl Setup {
    fn start(test: &str) -> Setup {
        let (bad, good, management) = (free_port(), free_port(), free_port());
        let f = front(
            test,
            "peers_outlier.toml",
            &["t.test"],
            &[
                ("bad_port", bad),
                ("good_port", good),
                ("management_port", management),
            ],
        );
        let nginx = nginx(
            &f.dir,
            "nginx",
            &format!(
                "http {{ {NGINX_HTTP_TEMP} log_format uris '$request_uri $status';\n\
                 server {{ listen 127.0.0.1:{bad}; access_log bad-access.log uris;\n\
                 location = /health {{ return 200 \"ok\\n\"; }}\n\
                 location / {{ return 503 \"bad\\n\"; }} }}\n\
                 server {{ listen 127.0.0.1:{good}; access_log good-access.log uris;\n\
                 location / {{ return 200 \"good\\n\"; }} }} }}\n"
            ),
            &[bad, good],
        );
        let s = Setup {
            f,
            nginx,
            bad,
            good,
            management,
        };
        wait_for("both servers up", Duration::from_secs(15), || {
            let v = status_json(s.management);
            [s.key(s.bad), s.key(s.good)]
                .iter()
                .all(|k| status_state(&v, k) == "up")
                .then_some(())
        });
        s
    }

    fn key(&self, port: u16) -> String {
        format!("app/127.0.0.1:{port}")
    }

    /// One GET through edge on a new connection: (status, body).
    fn get(&self) -> (u16, String) {
        let (code, status, body) = get_t_test(self.f.port, &self.f.pki.ca_pem, &[], "/");
        assert_eq!(code, 0, "{body}\n{}", self.tails());
        (status, body)
    }

    /// Sends requests until `bad` is ejected (at most `limit`): the 503s
    /// they got.
    fn until_ejected(&self, limit: usize) -> usize {
        let key = self.key(self.bad);
        let mut failed = 0;
        for _ in 0..limit {
            let (status, body) = self.get();
            match (status, body.as_str()) {
                (200, "good") => {}
                (503, "bad") => failed += 1,
                other => panic!("unexpected answer {other:?}\n{}", self.tails()),
            }
            if status_state(&status_json(self.management), &key) == "ejected" {
                return failed;
            }
        }
        panic!(
            "{key} not ejected after {limit} requests ({failed} answered 503): {}\n{}",
            status_server(&status_json(self.management), &key),
            self.tails()
        );
    }

    /// Requests nginx logged for `server` ("bad" or "good"), health checks
    /// left out.
    fn traffic(&self, server: &str) -> usize {
        self.f
            .dir
            .read(&format!("nginx/{server}-access.log"))
            .lines()
            .filter(|l| !l.starts_with("/health "))
            .count()
    }

    fn backend_up(&self, port: u16) -> f64 {
        let (_, m) = scrape(self.management);
        metric(
            &m,
            &format!("edge_backend_up{{pool=\"app\",server=\"127.0.0.1:{port}\"}}"),
        )
    }

    fn tails(&self) -> String {
        log_tails(&[&*self.f.edge, &self.nginx])
    }
}

#[test]
fn a_server_answering_5xx_while_passing_checks_is_ejected_then_returns() {
    let s = Setup::start("outlier");
    let bad_key = s.key(s.bad);

    // Round robin sends every other request to `bad` until 3 failed in a
    // row (no retries: each 503 is relayed).
    let failed = s.until_ejected(20);
    let ejected_at = Instant::now();
    assert_eq!(failed, 3, "ejected after {failed} failures, not 3");
    assert_eq!(s.traffic("bad"), 3, "{}", s.tails());

    // Ejected, not down: its health checks keep passing.
    let v = status_json(s.management);
    let bad = status_server(&v, &bad_key);
    assert_eq!(bad["state"], "ejected", "{bad}");
    assert_eq!(bad["last_check"]["passed"], true, "{bad}");
    assert_eq!(status_state(&v, &s.key(s.good)), "up");
    assert_eq!(s.backend_up(s.bad), 0.0);
    assert_eq!(s.backend_up(s.good), 1.0);

    // All traffic goes to `good` meanwhile; `bad` sees none.
    let good_before = s.traffic("good");
    for _ in 0..8 {
        assert_eq!(s.get(), (200, "good".to_owned()), "{}", s.tails());
    }
    assert!(
        ejected_at.elapsed() < Duration::from_secs(3),
        "the requests during the ejection took too long to prove anything"
    );
    assert_eq!(s.traffic("bad"), 3, "an ejected server got traffic");
    assert_eq!(s.traffic("good"), good_before + 8);

    // After the ejection time (3 s) a passing check brings it back.
    wait_for("bad back in rotation", Duration::from_secs(10), || {
        (status_state(&status_json(s.management), &bad_key) == "up").then_some(())
    });
    let back_after = ejected_at.elapsed();
    assert!(
        back_after >= Duration::from_millis(2500),
        "back after {back_after:?}, before the ejection time"
    );
    assert_eq!(s.backend_up(s.bad), 1.0);

    // It gets traffic again (and, still failing, is ejected again).
    let failed = s.until_ejected(20);
    assert_eq!(failed, 3, "{}", s.tails());
    assert_eq!(s.traffic("bad"), 6, "{}", s.tails());
}
