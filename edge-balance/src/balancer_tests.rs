use std::time::Duration;

use super::*;
use crate::policy::{MaglevConfig, PeakEwmaConfig};

fn all_policies() -> Vec<Policy> {
    vec![
        Policy::RoundRobin,
        Policy::LeastRequest,
        Policy::Random,
        Policy::P2c,
        Policy::PeakEwma(PeakEwmaConfig::default()),
        Policy::Maglev(MaglevConfig::default()),
        Policy::Maglev(MaglevConfig::default().bounded_load(Some(1.25))),
    ]
}

fn set_of(keys: &[&'static str]) -> EndpointSet<&'static str, ()> {
    let set = EndpointSet::new();
    for k in keys {
        set.insert(*k, (), 1);
    }
    set
}

fn share(b: &Balancer<&'static str, ()>, key: &str, picks: usize) -> f64 {
    let hits = (0..picks)
        .filter_map(|_| b.pick(&PickContext::new()).ok())
        .filter(|p| *p.key() == key)
        .count();
    hits as f64 / picks as f64
}

#[tokio::test(start_paused = true)]
async fn slow_start_ramps_linearly_over_the_window() {
    let set = set_of(&["a", "b"]);
    let cfg = BalancerConfig::default().slow_start(Duration::from_secs(10));
    let b = Balancer::new(set.clone(), Policy::RoundRobin, cfg);
    set.set_healthy(&"b", false);
    set.set_healthy(&"b", true);
    // Just up: b gets almost nothing.
    assert!(share(&b, "b", 1000) < 0.01);
    tokio::time::advance(Duration::from_millis(2500)).await;
    // At 25 % of the window b weighs 0.25 against a's 1: 0.25 / 1.25.
    let s = share(&b, "b", 1000);
    assert!((s - 0.2).abs() < 0.02, "b share at 25 %: {s}");
    tokio::time::advance(Duration::from_millis(5000)).await;
    let s = share(&b, "b", 1000);
    assert!((s - 0.75 / 1.75).abs() < 0.02, "b share at 75 %: {s}");
    tokio::time::advance(Duration::from_secs(3)).await;
    assert_eq!(share(&b, "b", 1000), 0.5);
}

#[tokio::test(start_paused = true)]
async fn slow_start_applies_to_load_based_policies() {
    let set = set_of(&["a", "b"]);
    let cfg = BalancerConfig::default().slow_start(Duration::from_secs(10));
    let b = Balancer::new(set.clone(), Policy::Random, cfg);
    set.set_healthy(&"b", false);
    set.set_healthy(&"b", true);
    tokio::time::advance(Duration::from_secs(5)).await;
    let s = share(&b, "b", 20_000);
    assert!((s - 0.5 / 1.5).abs() < 0.03, "b share at 50 %: {s}");
}

#[test]
fn no_endpoint_errors_say_why() {
    let empty: EndpointSet<&str, ()> = EndpointSet::new();
    let b = Balancer::new(empty, Policy::P2c, BalancerConfig::default());
    assert_eq!(b.pick(&PickContext::new()).err(), Some(NoEndpoint::Empty));

    let set = set_of(&["a", "b", "c"]);
    let b = Balancer::new(set.clone(), Policy::RoundRobin, BalancerConfig::default());
    set.set_healthy(&"a", false);
    set.drain(&"b");
    set.set_weight(&"c", 0);
    assert_eq!(
        b.pick(&PickContext::new()).err(),
        Some(NoEndpoint::Unavailable {
            total: 3,
            down: 1,
            draining: 1,
            zero_weight: 1
        })
    );
}

#[test]
fn fail_open_uses_down_endpoints_but_not_drained_ones() {
    let set = set_of(&["a", "b", "c"]);
    let cfg = BalancerConfig::default().fail_open(true).name("pool");
    for policy in all_policies() {
        let b = Balancer::new(set.clone(), policy.clone(), cfg.clone());
        for k in ["a", "b", "c"] {
            set.set_healthy(&k, false);
        }
        set.drain(&"c");
        for _ in 0..50 {
            let p = b.pick(&PickContext::new()).expect("fail-open picks");
            assert_ne!(*p.key(), "c", "{policy:?} picked a drained endpoint");
        }
        assert!(b.is_failing_open());
        set.set_healthy(&"b", true);
        for _ in 0..50 {
            let p = b.pick(&PickContext::new()).expect("b is up");
            assert_eq!(*p.key(), "b", "{policy:?} kept failing open");
        }
        assert!(!b.is_failing_open());
        set.set_healthy(&"a", true);
        set.undrain(&"c");
        set.set_healthy(&"c", true);
    }
}

#[test]
fn excluded_endpoints_are_skipped_by_every_policy() {
    let set = set_of(&["a", "b", "c"]);
    for policy in all_policies() {
        let b = Balancer::new(set.clone(), policy.clone(), BalancerConfig::default());
        for h in 0..100u64 {
            let ctx = PickContext::new().hash_key(Some(h)).exclude(&["a", "c"]);
            let p = b.pick(&ctx).expect("b left");
            assert_eq!(*p.key(), "b", "{policy:?}");
        }
        let all = ["a", "b", "c"];
        let err = b.pick(&PickContext::new().exclude(&all)).err();
        assert_eq!(
            err,
            Some(NoEndpoint::AllExcluded { excluded: 3 }),
            "{policy:?}"
        );
    }
}

#[test]
fn least_request_alternates_between_equal_endpoints() {
    let set = set_of(&["a", "b"]);
    let b = Balancer::new(set, Policy::LeastRequest, BalancerConfig::default());
    let keys: Vec<&str> = (0..6)
        .filter_map(|_| b.pick(&PickContext::new()).ok())
        .map(|p| *p.key())
        .collect();
    assert_eq!(keys, ["a", "b", "a", "b", "a", "b"]);
    // Held work counts: with a busy, b wins every time.
    let held = b.pick(&PickContext::new()).expect("pick");
    let busy = *held.key();
    for _ in 0..5 {
        let p = b.pick(&PickContext::new()).expect("pick");
        assert_ne!(*p.key(), busy);
    }
}

#[test]
fn counters_follow_picks_and_outcomes() {
    let set = set_of(&["a"]);
    let b = Balancer::new(
        set.clone(),
        Policy::PeakEwma(PeakEwmaConfig::default()),
        BalancerConfig::default(),
    );
    let p1 = b.pick(&PickContext::new()).expect("pick");
    let p2 = b.pick(&PickContext::new()).expect("pick");
    let p3 = b.pick(&PickContext::new()).expect("pick");
    let stats = set.stats(&"a").expect("a");
    assert_eq!(stats.in_flight(), 3);
    p1.success();
    p2.failure();
    drop(p3);
    let s = stats.snapshot();
    assert_eq!((s.picks, s.in_flight, s.successes, s.errors), (3, 0, 1, 1));
    assert!(s.rtt_estimate.is_some());
}

#[test]
fn maglev_is_sticky_per_key_and_bounded_load_spills() {
    let keys = ["a", "b", "c", "d"];
    let set = set_of(&keys);
    let b = Balancer::new(
        set.clone(),
        Policy::Maglev(MaglevConfig::default()),
        BalancerConfig::default(),
    );
    for h in 0..200u64 {
        let first = *b
            .pick(&PickContext::new().hash_key(Some(h)))
            .expect("pick")
            .key();
        let again = *b
            .pick(&PickContext::new().hash_key(Some(h)))
            .expect("pick")
            .key();
        assert_eq!(first, again);
    }
    let bounded = Balancer::new(
        set.clone(),
        Policy::Maglev(MaglevConfig::default().bounded_load(Some(1.25))),
        BalancerConfig::default(),
    );
    // One hot key: pure Maglev sends all 40 to one endpoint, bounded load
    // caps each endpoint at 1.25 × the fair share.
    let held: Vec<_> = (0..40)
        .filter_map(|_| bounded.pick(&PickContext::new().hash_key(Some(42))).ok())
        .collect();
    assert_eq!(held.len(), 40);
    for k in keys {
        let n = set.stats(&k).map(|s| s.in_flight()).unwrap_or(0);
        assert!(n <= 13, "{k} carries {n} of 40");
        assert!(n >= 1, "{k} got nothing");
    }
}

#[test]
fn a_preferred_endpoint_is_picked_while_available_under_every_policy() {
    for policy in all_policies() {
        let set = set_of(&["a", "b", "c"]);
        let b = Balancer::new(set.clone(), policy.clone(), BalancerConfig::default());
        let id = crate::endpoint_id(&"b");
        for _ in 0..20 {
            let p = b.pick(&PickContext::new().prefer(Some(id))).unwrap();
            assert_eq!(*p.key(), "b", "{policy:?}");
        }
        // Excluded (already tried), down or draining: the policy picks.
        let tried = ["b"];
        let p = b
            .pick(&PickContext::new().prefer(Some(id)).exclude(&tried))
            .unwrap();
        assert_ne!(*p.key(), "b", "{policy:?}");
        set.set_healthy(&"b", false);
        let seen: std::collections::HashSet<_> = (0..30)
            .map(|_| *b.pick(&PickContext::new().prefer(Some(id))).unwrap().key())
            .collect();
        assert!(!seen.contains("b"), "{policy:?}");
        set.set_healthy(&"b", true);
        set.drain(&"b");
        let p = b.pick(&PickContext::new().prefer(Some(id))).unwrap();
        assert_ne!(*p.key(), "b", "{policy:?}");
        // An id that matches nothing is no preference.
        set.undrain(&"b");
        assert!(b.pick(&PickContext::new().prefer(Some(7))).is_ok());
    }
}

#[test]
fn endpoint_ids_are_stable_and_distinct() {
    let a: std::net::SocketAddr = "10.0.0.1:80".parse().unwrap();
    let b: std::net::SocketAddr = "10.0.0.2:80".parse().unwrap();
    assert_eq!(crate::endpoint_id(&a), crate::endpoint_id(&a));
    assert_ne!(crate::endpoint_id(&a), crate::endpoint_id(&b));
}
