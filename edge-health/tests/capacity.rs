//! Capacity alerts: raised and cleared, with a real command hook, a real
//! webhook receiver, and the structured log lines.

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use common::{Script, ScriptProbe, Step};
use edge_health::{
    AlertHook, CapacityConfig, CheckConfig, HealthChecker, HealthHandle, PoolConfig, Probe,
    SchedulerConfig,
};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;

const MS: Duration = Duration::from_millis(1);

fn addrs(n: u16) -> Vec<SocketAddr> {
    (0..n)
        .map(|i| SocketAddr::from(([127, 0, 0, 1], 30000 + i)))
        .collect()
}

fn spawn(
    probe: &Arc<ScriptProbe>,
    targets: Vec<SocketAddr>,
    capacity: CapacityConfig,
) -> HealthHandle {
    let mut c = HealthChecker::new(SchedulerConfig::default()).unwrap();
    c.add_pool(
        PoolConfig::new("web", targets)
            .probe(Probe::Custom(Arc::new(Script(Arc::clone(probe)))))
            .check(CheckConfig::default().inter(20 * MS).rise(1).fall(1))
            .capacity(capacity),
    )
    .unwrap();
    c.spawn()
}

async fn wait_file(path: &std::path::Path, lines: usize) -> Vec<String> {
    for _ in 0..1000 {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let l: Vec<String> = text.lines().map(str::to_owned).collect();
        if l.len() >= lines {
            return l;
        }
        tokio::time::sleep(10 * MS).await;
    }
    panic!("hook wrote fewer than {lines} lines");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn command_hook_runs_on_low_and_recovered() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("alerts");
    let p = Arc::new(ScriptProbe::default());
    let t = addrs(4);
    let hook = AlertHook::Command {
        program: "/bin/sh".into(),
        args: vec![
            "-c".into(),
            format!(
                "echo \"$EDGE_HEALTH_POOL $EDGE_HEALTH_STATE $EDGE_HEALTH_HEALTHY $EDGE_HEALTH_TOTAL\" >> {}",
                out.display()
            ),
        ],
    };
    let h = spawn(
        &p,
        t.clone(),
        CapacityConfig {
            min_healthy: 1,
            min_healthy_percent: 75,
            hooks: vec![hook],
            ..Default::default()
        },
    );
    let mut w = h.watch_pool("web").unwrap();
    w.wait_for(|s| s.healthy == 4).await.unwrap();
    assert!(!w.borrow().low);

    // 3 of 4 is still 75 %: no alert. 2 of 4 is low.
    p.set(t[0], vec![Step::Fail]);
    w.wait_for(|s| s.healthy == 3).await.unwrap();
    tokio::time::sleep(100 * MS).await;
    assert!(!h.pool_status("web").unwrap().low);
    p.set(t[1], vec![Step::Fail]);
    let st = w.wait_for(|s| s.low).await.unwrap().clone();
    assert_eq!((st.healthy, st.total), (2, 4));
    assert_eq!(wait_file(&out, 1).await, vec!["web low 2 4"]);

    // Back to 3 of 4: recovered, once.
    p.set(t[0], vec![Step::Pass]);
    w.wait_for(|s| !s.low).await.unwrap();
    assert_eq!(
        wait_file(&out, 2).await,
        vec!["web low 2 4", "web recovered 3 4"]
    );
    tokio::time::sleep(200 * MS).await;
    assert_eq!(std::fs::read_to_string(&out).unwrap().lines().count(), 2);
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_receives_low_and_recovered() {
    let received = Arc::new(Mutex::new(Vec::<serde_json::Value>::new()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url: http::Uri = format!("http://{}/alerts", listener.local_addr().unwrap())
        .parse()
        .unwrap();
    let rec = Arc::clone(&received);
    tokio::spawn(async move {
        loop {
            let (s, _) = listener.accept().await.unwrap();
            let rec = Arc::clone(&rec);
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| {
                        let rec = Arc::clone(&rec);
                        async move {
                            assert_eq!(req.method(), http::Method::POST);
                            assert_eq!(req.uri().path(), "/alerts");
                            let body = req.into_body().collect().await.unwrap().to_bytes();
                            rec.lock()
                                .unwrap()
                                .push(serde_json::from_slice(&body).unwrap());
                            Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(
                                Bytes::new(),
                            )))
                        }
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    let p = Arc::new(ScriptProbe::default());
    let t = addrs(2);
    let h = spawn(
        &p,
        t.clone(),
        CapacityConfig {
            min_healthy: 2,
            min_healthy_percent: 0,
            hooks: vec![AlertHook::Webhook { url }],
            ..Default::default()
        },
    );
    let mut w = h.watch_pool("web").unwrap();
    w.wait_for(|s| s.healthy == 2).await.unwrap();
    p.set(t[1], vec![Step::Fail]);
    w.wait_for(|s| s.low).await.unwrap();
    p.set(t[1], vec![Step::Pass]);
    w.wait_for(|s| !s.low && s.healthy == 2).await.unwrap();
    for _ in 0..500 {
        if received.lock().unwrap().len() >= 2 {
            break;
        }
        tokio::time::sleep(10 * MS).await;
    }
    let got = received.lock().unwrap().clone();
    assert_eq!(
        got,
        vec![
            serde_json::json!({"pool": "web", "state": "low", "healthy": 1, "total": 2,
                "healthy_weight": 1, "total_weight": 2}),
            serde_json::json!({"pool": "web", "state": "recovered", "healthy": 2, "total": 2,
                "healthy_weight": 2, "total_weight": 2}),
        ]
    );
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weight_share_raises_the_alert_and_a_slow_hook_is_killed_at_its_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("alerts");
    let p = Arc::new(ScriptProbe::default());
    let t = addrs(3);
    let hook = AlertHook::Command {
        program: "/bin/sh".into(),
        args: vec![
            "-c".into(),
            format!(
                "echo \"start $EDGE_HEALTH_HEALTHY_WEIGHT $EDGE_HEALTH_TOTAL_WEIGHT\" >> {0}; sleep 3; echo end >> {0}",
                out.display()
            ),
        ],
    };
    let mut c = HealthChecker::new(SchedulerConfig::default()).unwrap();
    c.add_pool(
        PoolConfig::new("web", t.clone())
            .probe(Probe::Custom(Arc::new(Script(Arc::clone(&p)))))
            .check(CheckConfig::default().inter(20 * MS).rise(1).fall(1))
            .weight(t[0], 8)
            .capacity(CapacityConfig {
                min_healthy: 1,
                min_healthy_percent: 0,
                min_healthy_weight_percent: 50,
                hooks: vec![hook],
                hook_timeout: 300 * MS,
            }),
    )
    .unwrap();
    let h = c.spawn();
    let mut w = h.watch_pool("web").unwrap();
    let st = w.wait_for(|s| s.healthy == 3).await.unwrap().clone();
    assert_eq!((st.healthy_weight, st.total_weight), (10, 10));
    assert_eq!(h.capacity_alert("web"), Some(false));
    // Two of three servers are up, but they carry 2 of 10 weight.
    p.set(t[0], vec![Step::Fail]);
    let st = w.wait_for(|s| s.low).await.unwrap().clone();
    assert_eq!((st.healthy, st.healthy_weight), (2, 2));
    assert_eq!(h.capacity_alert("web"), Some(true));
    assert_eq!(h.capacity_alert("nope"), None);
    assert_eq!(wait_file(&out, 1).await, vec!["start 2 10"]);
    // The hook sleeps 3 s; it is killed after 300 ms and never writes "end".
    tokio::time::sleep(Duration::from_millis(3500)).await;
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "start 2 10\n");
    h.shutdown().await;
}
