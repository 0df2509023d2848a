//! Many threads pick while another one adds, removes, drains and marks
//! endpoints down: no pick that starts after a change returns an endpoint
//! the change made unavailable, and nothing deadlocks.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use edge_balance::{
    Balancer, BalancerConfig, EndpointSet, MaglevConfig, PeakEwmaConfig, PickContext, Policy,
};

const KEYS: usize = 12;
const PICKERS: usize = 3;
const RUN_FOR: Duration = Duration::from_millis(1500);

fn policies() -> Vec<Policy> {
    vec![
        Policy::RoundRobin,
        Policy::LeastRequest,
        Policy::Random,
        Policy::P2c,
        Policy::PeakEwma(PeakEwmaConfig::default()),
        Policy::Maglev(MaglevConfig::default().table_size(1301)),
        Policy::Maglev(
            MaglevConfig::default()
                .table_size(1301)
                .bounded_load(Some(1.5)),
        ),
    ]
}

/// Per key: even = available, odd = made unavailable (removed, drained or
/// down). The writer bumps it to odd after the change returns and to even
/// before undoing it.
struct Epochs([AtomicU64; KEYS]);

#[test]
fn picks_never_return_endpoints_made_unavailable_before_they_started() {
    let set: EndpointSet<usize, usize> = EndpointSet::new();
    for k in 0..KEYS {
        set.insert(k, k, 1 + k as u32 % 3);
    }
    let cfg = BalancerConfig::default().slow_start(Duration::from_millis(200));
    let balancers: Vec<_> = policies()
        .into_iter()
        .map(|p| Balancer::new(set.clone(), p, cfg.clone()))
        .collect();
    let epochs = Arc::new(Epochs(std::array::from_fn(|_| AtomicU64::new(0))));
    let stop = Arc::new(AtomicBool::new(false));
    let (done_tx, done_rx) = mpsc::channel::<Result<u64, String>>();

    for t in 0..PICKERS {
        let (balancers, epochs, stop, done) = (
            balancers.clone(),
            Arc::clone(&epochs),
            Arc::clone(&stop),
            done_tx.clone(),
        );
        thread::spawn(move || {
            let mut picks = 0u64;
            let mut held = Vec::new();
            let mut n = t as u64;
            let result = loop {
                if stop.load(Ordering::Relaxed) {
                    break Ok(picks);
                }
                n = n
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let b = &balancers[(n >> 33) as usize % balancers.len()];
                let before: Vec<u64> = epochs.0.iter().map(|e| e.load(Ordering::SeqCst)).collect();
                let Ok(p) = b.pick(&PickContext::new().hash_key(Some(n))) else {
                    continue;
                };
                picks += 1;
                let k = *p.key();
                let after = epochs.0[k].load(Ordering::SeqCst);
                if before[k] % 2 == 1 && after == before[k] {
                    break Err(format!(
                        "{:?} picked {k}, unavailable since before the pick",
                        b.policy()
                    ));
                }
                if *p.value() != k {
                    break Err(format!("endpoint {k} has value {}", p.value()));
                }
                // Hold some work so load-based policies see in-flight counts.
                held.push(p);
                if held.len() > 8 {
                    let i = (n >> 40) as usize % held.len();
                    held.swap_remove(i).success();
                }
            };
            drop(held);
            let _ = done.send(result);
        });
    }

    let writer = {
        let (set, epochs, stop, done) = (
            set.clone(),
            Arc::clone(&epochs),
            Arc::clone(&stop),
            done_tx.clone(),
        );
        thread::spawn(move || {
            let mut changes = 0u64;
            let mut state = [0u8; KEYS]; // 0 up, 1 removed, 2 drained, 3 down
            let mut n = 99u64;
            while !stop.load(Ordering::Relaxed) {
                n = n
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let k = (n >> 33) as usize % KEYS;
                let e = &epochs.0[k];
                if state[k] == 0 {
                    let how = 1 + (n >> 50) as u8 % 3;
                    match how {
                        1 => drop(set.remove(&k)),
                        2 => drop(set.drain(&k)),
                        _ => drop(set.set_healthy(&k, false)),
                    }
                    e.fetch_add(1, Ordering::SeqCst);
                    state[k] = how;
                } else {
                    e.fetch_add(1, Ordering::SeqCst);
                    match state[k] {
                        1 => set.insert(k, k, 1 + k as u32 % 3),
                        2 => drop(set.undrain(&k)),
                        _ => drop(set.set_healthy(&k, true)),
                    }
                    state[k] = 0;
                }
                set.set_weight(&((n >> 20) as usize % KEYS), 1 + (n >> 44) as u32 % 4);
                changes += 1;
                if changes.is_multiple_of(64) {
                    thread::yield_now();
                }
            }
            let _ = done.send(Ok(changes));
        })
    };
    drop(done_tx);

    thread::sleep(RUN_FOR);
    stop.store(true, Ordering::Relaxed);
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut results = Vec::new();
    for _ in 0..=PICKERS {
        let left = deadline.saturating_duration_since(Instant::now());
        match done_rx.recv_timeout(left) {
            Ok(r) => results.push(r),
            Err(e) => panic!("a thread did not finish (deadlock?): {e}"),
        }
    }
    let _ = writer.join();
    for r in &results {
        match r {
            Ok(count) => assert!(*count > 0, "a thread made no progress"),
            Err(violation) => panic!("{violation}"),
        }
    }
    // Every held guard was dropped: nothing stays in flight.
    let snap = set.snapshot();
    for e in snap.endpoints() {
        assert_eq!(
            e.stats().in_flight(),
            0,
            "endpoint {} leaks in-flight",
            e.key()
        );
    }
}
