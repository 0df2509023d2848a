//! ns per pick for every policy at 3, 100 and 1000 endpoints, next to
//! tower's own p2c balancer on the same number of endpoints, and the Maglev
//! table rebuild time at 1000 endpoints.
//!
//! Run pinned: `taskset -c 0,1 cargo bench -p edge-balance --bench pick`.

use std::convert::Infallible;
use std::future::{Ready, ready};
use std::hint::black_box;
use std::task::{Context, Poll};
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use edge_balance::{
    Balance, Balancer, BalancerConfig, DEFAULT_TABLE_SIZE, EndpointSet, MaglevConfig, MaglevTable,
    PeakEwmaConfig, PickContext, Policy,
};
use tower::Service;
use tower::balance::p2c;
use tower::discover::ServiceList;
use tower::load::{CompleteOnResponse, PendingRequests};

const SIZES: [usize; 3] = [3, 100, 1000];

/// An endpoint that is always ready and answers at once.
#[derive(Clone, Copy, Debug)]
struct Echo;

impl Service<u64> for Echo {
    type Response = u64;
    type Error = Infallible;
    type Future = Ready<Result<u64, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: u64) -> Self::Future {
        ready(Ok(req))
    }
}

impl edge_balance::BalanceKey for Wrapped {
    fn hash_key(&self, _: &edge_balance::HashSource) -> Option<u64> {
        Some(self.0)
    }
}

/// A request for our `Balance` service (carries its own hash key).
#[derive(Clone, Copy, Debug)]
struct Wrapped(u64);

impl Service<Wrapped> for Echo {
    type Response = u64;
    type Error = Infallible;
    type Future = Ready<Result<u64, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Wrapped) -> Self::Future {
        ready(Ok(req.0))
    }
}

fn policies() -> Vec<(&'static str, Policy)> {
    vec![
        ("round_robin", Policy::RoundRobin),
        ("least_request", Policy::LeastRequest),
        ("random", Policy::Random),
        ("p2c", Policy::P2c),
        ("peak_ewma", Policy::PeakEwma(PeakEwmaConfig::default())),
        ("maglev", Policy::Maglev(MaglevConfig::default())),
        (
            "maglev_bounded",
            Policy::Maglev(MaglevConfig::default().bounded_load(Some(1.25))),
        ),
    ]
}

fn set_of(n: usize) -> EndpointSet<usize, Echo> {
    let set = EndpointSet::new();
    // Weights 1..=3 so weighted paths run (not the equal-weight shortcut).
    set.replace_all((0..n).map(|i| (i, Echo, 1 + (i % 3) as u32)));
    set
}

/// One group per endpoint count, so every policy is measured right next to
/// tower's p2c on the same machine state (the ratio is what counts).
fn bench_by_size(c: &mut Criterion) {
    let waker = futures::task::noop_waker();
    let mut cx = Context::from_waker(&waker);
    for n in SIZES {
        let mut g = c.benchmark_group(format!("n={n}"));
        // tower's own p2c balancer: PendingRequests load, ServiceList discovery.
        let list: Vec<_> = (0..n)
            .map(|_| PendingRequests::new(Echo, CompleteOnResponse::default()))
            .collect();
        let mut tower_p2c: p2c::Balance<_, u64> = p2c::Balance::new(ServiceList::new::<u64>(list));
        g.bench_function("tower_p2c_service", |bench| {
            bench.iter(|| {
                let ready = tower_p2c.poll_ready(&mut cx);
                assert!(ready.is_ready());
                black_box(tower_p2c.call(1u64))
            })
        });
        for (name, policy) in policies() {
            let b = Balancer::new(set_of(n), policy, BalancerConfig::default());
            let mut key = 0u64;
            g.bench_function(format!("pick_{name}"), |bench| {
                bench.iter(|| {
                    key = key.wrapping_add(0x9e37_79b9_7f4a_7c15);
                    let p = b.pick(&PickContext::new().hash_key(Some(key)));
                    black_box(p.is_ok())
                })
            });
        }
        for (name, policy) in [
            ("edge_p2c_service", Policy::P2c),
            (
                "edge_peak_ewma_service",
                Policy::PeakEwma(PeakEwmaConfig::default()),
            ),
        ] {
            let mut ours =
                Balance::new(Balancer::new(set_of(n), policy, BalancerConfig::default()));
            let mut key = 0u64;
            g.bench_function(name, |bench| {
                bench.iter(|| {
                    key = key.wrapping_add(1);
                    let ready = Service::<Wrapped>::poll_ready(&mut ours, &mut cx);
                    assert!(ready.is_ready());
                    black_box(ours.call(Wrapped(key)))
                })
            });
        }
        g.finish();
    }
}

fn bench_maglev_rebuild(c: &mut Criterion) {
    let keys: Vec<String> = (0..1000)
        .map(|i| format!("10.0.{}.{}:8080", i / 256, i % 256))
        .collect();
    let weights = vec![1u32; 1000];
    c.bench_function("maglev_rebuild/1000", |b| {
        b.iter(|| black_box(MaglevTable::build(&keys, &weights, DEFAULT_TABLE_SIZE)).len())
    });
    // The same rebuild as a health change triggers it: the first pick after
    // the change pays for it.
    let set = set_of(1000);
    let lb = Balancer::new(
        set.clone(),
        Policy::Maglev(MaglevConfig::default()),
        BalancerConfig::default(),
    );
    let mut up = false;
    c.bench_function("maglev_health_flip_then_pick/1000", |b| {
        b.iter(|| {
            set.set_healthy(&7, up);
            up = !up;
            black_box(lb.pick(&PickContext::new().hash_key(Some(7))).is_ok())
        })
    });
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(30)
}

criterion_group! {
    name = benches;
    config = config();
    targets = bench_by_size, bench_maglev_rebuild
}
criterion_main!(benches);
