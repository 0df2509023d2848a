//! An HTTP/1.1 backend on loopback for tokio tests, and curl against
//! edge with a test CA.

use std::convert::Infallible;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;

/// A backend answering `id` (and `/slow` after `slow`), counting requests.
#[derive(Debug)]
pub struct Backend {
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// Requests other than `/healthz`.
    pub hits: Arc<AtomicUsize>,
    /// Requests for `/healthz` (health checks), not counted in `hits`.
    pub checks: Arc<AtomicUsize>,
}

/// Starts a [`Backend`] on 127.0.0.1 (a tokio task of the calling runtime).
pub async fn backend(id: &'static str, slow: Duration) -> Backend {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let hits = Arc::new(AtomicUsize::new(0));
    let checks = Arc::new(AtomicUsize::new(0));
    let (h, c) = (hits.clone(), checks.clone());
    tokio::spawn(async move {
        loop {
            let Ok((s, _)) = l.accept().await else {
                continue;
            };
            let (h, c) = (h.clone(), c.clone());
            tokio::spawn(async move {
                let svc = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let (h, c) = (h.clone(), c.clone());
                    async move {
                        if req.uri().path() == "/healthz" {
                            c.fetch_add(1, Ordering::Relaxed);
                        } else {
                            h.fetch_add(1, Ordering::Relaxed);
                        }
                        if req.uri().path().starts_with("/slow") {
                            tokio::time::sleep(slow).await;
                        }
                        Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from(id))))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    Backend { port, hits, checks }
}

impl Backend {
    /// Runs `f` (which sends a request to this backend) on a thread and
    /// returns once the request has arrived here.
    pub fn request_in_flight<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> std::thread::JoinHandle<T> {
        let before = self.hits.load(Ordering::Relaxed);
        let h = std::thread::spawn(f);
        let end = Instant::now() + Duration::from_secs(20);
        while self.hits.load(Ordering::Relaxed) == before {
            assert!(
                Instant::now() < end,
                "the request never reached the backend"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        h
    }
}

/// One curl run of `n` requests on one connection to
/// `https://t.test:PORT` (127.0.0.1) (keep-alive), h1 or h2:
/// the response bodies, or the failure.
pub fn curl_batch(port: u16, ca: &Path, h2: bool, urls: &[&str]) -> Result<Vec<String>, String> {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "--max-time", "20", "--cacert"])
        .arg(ca)
        .args(["--resolve", &format!("t.test:{port}:127.0.0.1")])
        .arg(if h2 { "--http2" } else { "--http1.1" })
        .args(["-w", "\n%{http_code}\n"]);
    for u in urls {
        cmd.arg(format!("https://t.test:{port}{u}"));
    }
    let out = cmd.output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        return Err(format!(
            "curl exit {:?}: {}{}",
            out.status.code(),
            text,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let lines: Vec<&str> = text.lines().collect();
    let mut bodies = Vec::new();
    for pair in lines.chunks(2) {
        match pair {
            [body, "200"] => bodies.push((*body).to_string()),
            other => return Err(format!("bad response {other:?} in {text:?}")),
        }
    }
    if bodies.len() != urls.len() {
        return Err(format!(
            "{} responses for {} requests: {text:?}",
            bodies.len(),
            urls.len()
        ));
    }
    Ok(bodies)
}

/// GET `https://t.test:PORT/PATH` verified against `ca`: the body.
pub fn get(port: u16, ca: &Path, path: &str) -> Result<String, String> {
    curl_batch(port, ca, false, &[path]).map(|mut b| b.remove(0))
}
