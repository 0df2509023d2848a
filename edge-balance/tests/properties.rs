//! Balancing invariants checked with generated inputs (proptest).

use std::collections::HashMap;
use std::time::Duration;

use edge_balance::{
    Balance, Balancer, BalancerConfig, EndpointSet, MaglevConfig, MaglevTable, PeakEwmaConfig,
    PickContext, Policy,
};
use proptest::prelude::*;
use tower::{Service, ServiceExt, service_fn};

fn all_policies() -> Vec<Policy> {
    vec![
        Policy::RoundRobin,
        Policy::LeastRequest,
        Policy::Random,
        Policy::P2c,
        Policy::PeakEwma(PeakEwmaConfig::default()),
        Policy::Maglev(MaglevConfig::default().table_size(1009)),
        Policy::Maglev(
            MaglevConfig::default()
                .table_size(1009)
                .bounded_load(Some(1.25)),
        ),
    ]
}

fn rr_sequence(weights: &[u32], picks: usize) -> Vec<usize> {
    let set = EndpointSet::new();
    for (i, w) in weights.iter().enumerate() {
        set.insert(i, (), *w);
    }
    let b = Balancer::new(set, Policy::RoundRobin, BalancerConfig::default());
    (0..picks)
        .map(|_| {
            *b.pick(&PickContext::new())
                .expect("endpoints available")
                .key()
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Every window of one cycle (sum of weights) holds exactly each
    /// endpoint's weight, and no endpoint gets more than its weight in a row.
    #[test]
    fn round_robin_gives_exact_shares_without_bursts(weights in prop::collection::vec(1u32..=12, 1..8)) {
        let cycle: usize = weights.iter().map(|&w| w as usize).sum();
        let seq = rr_sequence(&weights, cycle * 3);
        for start in 0..=cycle * 2 {
            let mut counts = vec![0u32; weights.len()];
            for &i in &seq[start..start + cycle] {
                counts[i] += 1;
            }
            prop_assert_eq!(&counts, &weights, "window at {}", start);
        }
        let mut run = 1u32;
        for pair in seq.windows(2) {
            run = if pair[0] == pair[1] { run + 1 } else { 1 };
            if weights.len() > 1 {
                prop_assert!(run <= weights[pair[1]], "{} picks of {} in a row", run, pair[1]);
            }
        }
    }

    /// With work held on endpoints, least-request never picks an endpoint
    /// busier (per unit of weight) than another available one.
    #[test]
    fn least_request_never_picks_a_busier_endpoint(
        weights in prop::collection::vec(1u32..=5, 2..8),
        down in prop::collection::vec(any::<bool>(), 8),
        ops in prop::collection::vec(any::<(bool, u8)>(), 1..120),
    ) {
        let set = EndpointSet::new();
        for (i, w) in weights.iter().enumerate() {
            set.insert(i, (), *w);
            if down[i] && i > 0 {
                set.set_healthy(&i, false);
            }
        }
        let b = Balancer::new(set.clone(), Policy::LeastRequest, BalancerConfig::default());
        let mut held = Vec::new();
        for (pick, n) in ops {
            if pick || held.is_empty() {
                let snap = set.snapshot();
                let loads: Vec<(usize, u64, u64)> = snap
                    .endpoints()
                    .iter()
                    .filter(|e| e.is_available())
                    .map(|e| (*e.key(), e.stats().in_flight(), u64::from(e.weight())))
                    .collect();
                let p = b.pick(&PickContext::new()).expect("endpoint 0 is up");
                let (_, l, w) = loads.iter().find(|x| x.0 == *p.key()).copied().expect("picked an available one");
                for &(k, lo, wo) in &loads {
                    prop_assert!(l * wo <= lo * w, "picked {} ({}/{}) over {} ({}/{})", p.key(), l, w, k, lo, wo);
                }
                held.push(p);
            } else {
                let i = usize::from(n) % held.len();
                drop(held.swap_remove(i));
            }
        }
    }

    /// Whatever the sequence of changes, no policy picks an endpoint that is
    /// drained, down, at weight 0 or removed in the set at that moment, and
    /// a pick fails only when nothing is available.
    #[test]
    fn unavailable_endpoints_are_never_picked(
        ops in prop::collection::vec((0u8..6, 0usize..6, 0u32..4), 1..60),
        hashes in prop::collection::vec(any::<u64>(), 4),
    ) {
        let set: EndpointSet<usize, usize> = EndpointSet::new();
        let balancers: Vec<_> = all_policies()
            .into_iter()
            .map(|p| Balancer::new(set.clone(), p, BalancerConfig::default()))
            .collect();
        for (op, k, w) in ops {
            match op {
                0 => set.insert(k, k * 10, w),
                1 => { set.remove(&k); }
                2 => { set.drain(&k); }
                3 => { set.undrain(&k); }
                4 => { set.set_healthy(&k, w % 2 == 0); }
                _ => { set.set_weight(&k, w); }
            }
            let snap = set.snapshot();
            for b in &balancers {
                for &h in &hashes {
                    match b.pick(&PickContext::new().hash_key(Some(h))) {
                        Ok(p) => {
                            let e = snap.get(p.key());
                            prop_assert!(e.is_some_and(|e| e.is_available()), "{:?} picked {:?}", b.policy(), e);
                            prop_assert_eq!(*p.value(), *p.key() * 10);
                        }
                        Err(err) => prop_assert_eq!(snap.available(), 0, "{:?}: {}", b.policy(), err),
                    }
                }
            }
        }
    }

    /// Maglev gives every endpoint its even share of the key space within
    /// 1 % when the table has more than 100 slots per endpoint, and hashed
    /// keys follow the table.
    #[test]
    fn maglev_spreads_keys_within_one_percent(n in 1usize..120, salt in any::<u64>()) {
        let keys: Vec<String> = (0..n).map(|i| format!("10.{}.{}.{}:{}", salt % 256, i / 256, i % 256, salt % 65536)).collect();
        let table = MaglevTable::build(&keys, &vec![1; n], edge_balance::DEFAULT_TABLE_SIZE);
        prop_assert!(table.len() as u64 > 100 * n as u64);
        let even = table.len() as f64 / n as f64;
        for (i, s) in table.shares(n).iter().enumerate() {
            prop_assert!((*s as f64 - even).abs() <= 0.01 * even, "endpoint {} owns {} of {} slots", i, s, table.len());
        }
    }

    /// Removing one of N endpoints moves close to 1/N of the key space:
    /// the removed endpoint's keys plus a small excess.
    #[test]
    fn maglev_removal_moves_about_one_nth(n in 3usize..60, victim in any::<prop::sample::Index>(), salt in any::<u32>()) {
        let keys: Vec<String> = (0..n).map(|i| format!("backend-{salt}-{i}")).collect();
        let before = MaglevTable::build(&keys, &vec![1; n], edge_balance::DEFAULT_TABLE_SIZE);
        let gone = victim.index(n);
        let rest: Vec<String> = keys.iter().enumerate().filter(|(i, _)| *i != gone).map(|(_, k)| k.clone()).collect();
        let after = MaglevTable::build(&rest, &vec![1; n - 1], before.len() as u64);
        prop_assert_eq!(before.len(), after.len());
        let m = before.len() as u64;
        let moved = (0..m)
            .filter(|&slot| {
                let b = before.lookup(slot).map(|i| &keys[i]);
                let a = after.lookup(slot).map(|i| &rest[i]);
                a != b
            })
            .count() as f64 / m as f64;
        let ideal = 1.0 / n as f64;
        prop_assert!(moved >= ideal * 0.98, "moved {} < ideal {}", moved, ideal);
        prop_assert!(moved <= ideal * 1.5 + 0.005, "moved {} of the keys, ideal {}", moved, ideal);
    }

    /// Under tokio's paused clock, Peak-EWMA sends most requests to the
    /// faster of two endpoints.
    #[test]
    fn peak_ewma_prefers_the_faster_endpoint(fast_ms in 1u64..50, factor in 3u64..10, fast_first in any::<bool>()) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().expect("runtime");
        let counts = rt.block_on(async move {
            let set = EndpointSet::new();
            let mut names = ["fast", "slow"];
            if !fast_first { names.reverse(); }
            for name in names {
                let delay = Duration::from_millis(if name == "fast" { fast_ms } else { fast_ms * factor });
                set.insert(name, service_fn(move |_: http::Request<()>| async move {
                    tokio::time::sleep(delay).await;
                    Ok::<_, std::convert::Infallible>(name)
                }), 1);
            }
            let mut lb = Balance::new(Balancer::new(set, Policy::PeakEwma(PeakEwmaConfig::default()), BalancerConfig::default()));
            let mut counts: HashMap<&str, u32> = HashMap::new();
            for _ in 0..200 {
                let who = lb.ready().await.expect("ready").call(http::Request::new(())).await.expect("answer");
                *counts.entry(who).or_default() += 1;
            }
            counts
        });
        let fast = counts.get("fast").copied().unwrap_or(0);
        prop_assert!(fast >= 180, "fast endpoint got {} of 200: {:?}", fast, counts);
    }
}

/// The fraction of the key space whose endpoint changes when `gone` is
/// removed from `n` equal endpoints.
fn maglev_moved_fraction(n: usize, gone: usize, size: u64) -> f64 {
    let keys: Vec<String> = (0..n).map(|i| format!("backend-{i}")).collect();
    let before = MaglevTable::build(&keys, &vec![1; n], size);
    let rest: Vec<String> = keys
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != gone)
        .map(|(_, k)| k.clone())
        .collect();
    let after = MaglevTable::build(&rest, &vec![1; n - 1], before.len() as u64);
    let m = before.len() as u64;
    let moved = (0..m)
        .filter(|&s| before.lookup(s).map(|i| &keys[i]) != after.lookup(s).map(|i| &rest[i]))
        .count();
    moved as f64 / m as f64
}

/// At 1000 endpoints the table is only ~100 slots per endpoint and Maglev
/// moves more than the ideal 1/N (measured: 6.3/N, i.e. 0.63 % of keys
/// instead of 0.1 %); a larger table brings it closer (3.1/N at 1 000 003
/// slots, measured in release, too slow for a debug test).
#[test]
fn maglev_removal_at_a_thousand_endpoints_stays_bounded() {
    let n = 1000;
    let moved = maglev_moved_fraction(n, 3, edge_balance::DEFAULT_TABLE_SIZE) * n as f64;
    assert!((1.0..8.0).contains(&moved), "moved {moved:.2}/N");
}
