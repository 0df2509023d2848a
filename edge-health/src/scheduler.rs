//! The probe queue: which probe starts next. No I/O, no clock.
//!
//! Every target is in exactly one place: waiting in the timer heap, due and
//! waiting for a free slot, or in flight. At most `max_in_flight` probes run
//! at once; due probes start in the order they fell due. A probe that hangs
//! holds one slot until its timeout, never the queue.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::time::{Duration, Instant};

use rand::Rng;

/// A target: (pool index, target index).
pub(crate) type Key = (usize, usize);

#[derive(Debug)]
pub(crate) struct ProbeQueue {
    timers: BinaryHeap<Reverse<(Instant, u64, Key)>>,
    due: VecDeque<Key>,
    in_flight: usize,
    max_in_flight: usize,
    seq: u64,
}

impl ProbeQueue {
    pub(crate) fn new(max_in_flight: usize) -> Self {
        Self {
            timers: BinaryHeap::new(),
            due: VecDeque::new(),
            in_flight: 0,
            max_in_flight: max_in_flight.max(1),
            seq: 0,
        }
    }

    /// Schedules `key`'s next probe at `at`.
    pub(crate) fn schedule(&mut self, key: Key, at: Instant) {
        self.seq = self.seq.wrapping_add(1);
        self.timers.push(Reverse((at, self.seq, key)));
    }

    /// The next probe to start at `now`, if one is due and a slot is free.
    pub(crate) fn poll_start(&mut self, now: Instant) -> Option<Key> {
        while let Some(Reverse((at, _, key))) = self.timers.peek().copied() {
            if at > now {
                break;
            }
            self.timers.pop();
            self.due.push_back(key);
        }
        if self.in_flight >= self.max_in_flight {
            return None;
        }
        let key = self.due.pop_front()?;
        self.in_flight += 1;
        Some(key)
    }

    /// A probe finished; its slot is free.
    pub(crate) fn finish(&mut self) {
        self.in_flight = self.in_flight.saturating_sub(1);
    }

    /// When to call [`poll_start`](Self::poll_start) again, if not on a
    /// completion: `None` while all slots are busy or nothing is scheduled.
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        if self.in_flight >= self.max_in_flight {
            return None;
        }
        self.timers.peek().map(|Reverse((at, _, _))| *at)
    }

    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight
    }

    pub(crate) fn waiting(&self) -> usize {
        self.due.len()
    }
}

/// `base` moved by a random share of `interval` within ±`percent` %.
pub(crate) fn jitter(
    rng: &mut impl Rng,
    base: Instant,
    interval: Duration,
    percent: u8,
) -> Instant {
    if percent == 0 {
        return base;
    }
    let span = interval.mul_f64(f64::from(percent) / 100.0);
    let offset = span.mul_f64(rng.random::<f64>());
    if rng.random::<bool>() {
        base.checked_add(offset).unwrap_or(base)
    } else {
        base.checked_sub(offset).unwrap_or(base)
    }
}

/// A random point in `[now, now + interval)`: the second probe's spread.
pub(crate) fn spread(rng: &mut impl Rng, now: Instant, interval: Duration) -> Instant {
    now.checked_add(interval.mul_f64(rng.random::<f64>()))
        .unwrap_or(now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_more_than_the_bound_in_flight_and_fifo_by_due_time() {
        let t0 = Instant::now();
        let mut q = ProbeQueue::new(3);
        for i in 0..10 {
            q.schedule((0, i), t0 + Duration::from_millis(10 - i as u64));
        }
        assert_eq!(q.poll_start(t0), None, "nothing due yet");
        assert_eq!(q.poll_timeout(), Some(t0 + Duration::from_millis(1)));
        let now = t0 + Duration::from_millis(20);
        let started: Vec<_> = std::iter::from_fn(|| q.poll_start(now)).collect();
        assert_eq!(started, vec![(0, 9), (0, 8), (0, 7)]);
        assert_eq!(q.in_flight(), 3);
        assert_eq!(q.waiting(), 7);
        assert_eq!(q.poll_timeout(), None, "all slots busy");
        q.finish();
        assert_eq!(q.poll_start(now), Some((0, 6)));
        assert_eq!(q.poll_start(now), None);
    }

    #[test]
    fn jitter_stays_within_bounds_and_spreads() {
        let mut rng = rand::rng();
        let t0 = Instant::now() + Duration::from_secs(10);
        let i = Duration::from_secs(2);
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..1000 {
            let t = jitter(&mut rng, t0, i, 10);
            assert!(t >= t0 - Duration::from_millis(200) && t <= t0 + Duration::from_millis(200));
            seen.insert((t.max(t0) - t0.min(t)).as_millis() / 20);
            let s = spread(&mut rng, t0, i);
            assert!(s >= t0 && s < t0 + i);
        }
        assert!(seen.len() > 5, "jitter takes many values");
    }
}
