//! The checker's log lines: each change once, with its reason; capacity
//! alerts as structured fields. Alone in its test binary: tracing's
//! per-callsite interest cache is process-wide, and a test in another
//! thread logging without a subscriber at the same moment can hide this
//! test's lines from the subscriber it sets.

mod common;

use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Script, ScriptProbe, Step};
use edge_health::{CapacityConfig, CheckConfig, HealthChecker, PoolConfig, Probe, SchedulerConfig};

fn addrs(n: u16) -> Vec<SocketAddr> {
    (0..n)
        .map(|i| SocketAddr::from(([127, 0, 0, 1], 30000 + i)))
        .collect()
}

#[derive(Clone, Default)]
struct LogBuf(Arc<Mutex<Vec<u8>>>);

impl Write for LogBuf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(start_paused = true)]
async fn every_change_is_logged_once_with_its_reason_and_alerts_are_structured() {
    let buf = LogBuf::default();
    let writer = buf.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::INFO)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let p = Arc::new(ScriptProbe::default());
    let t = addrs(2);
    p.set(
        t[0],
        vec![
            Step::Pass,
            Step::Fail,
            Step::Fail,
            Step::Fail,
            Step::Fail,
            Step::Fail,
            Step::Pass,
        ],
    );
    let mut c = HealthChecker::new(SchedulerConfig::default()).unwrap();
    c.add_pool(
        PoolConfig::new("web", t.clone())
            .probe(Probe::Custom(Arc::new(Script(Arc::clone(&p)))))
            .check(
                CheckConfig::default()
                    .inter(Duration::from_secs(1))
                    .rise(1)
                    .fall(2),
            )
            .capacity(CapacityConfig {
                min_healthy_percent: 75,
                ..CapacityConfig::default()
            }),
    )
    .unwrap();
    let h = c.spawn();
    tokio::time::sleep(Duration::from_secs(30)).await;
    h.shutdown().await;
    let log = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
    let lines_for = |needle: &str| {
        log.lines()
            .filter(|l| l.contains(needle) && l.contains(&format!("target={}", t[0])))
            .count()
    };
    assert_eq!(lines_for("target out of rotation"), 1, "{log}");
    assert_eq!(
        lines_for("target in rotation"),
        2,
        "first pass and recovery: {log}"
    );
    let down = log
        .lines()
        .find(|l| l.contains("target out of rotation"))
        .unwrap();
    assert!(
        down.contains("WARN") && down.contains("custom probe: scripted failure"),
        "{down}"
    );
    let low = log
        .lines()
        .find(|l| l.contains("pool capacity low"))
        .unwrap();
    assert!(
        low.contains("WARN") && low.contains("healthy=1") && low.contains("total=2"),
        "{low}"
    );
    assert!(log.contains("pool capacity recovered"), "{log}");
}
