//! The timing decisions, without I/O: when to renew, how long to back off,
//! whether the per-account rate cap allows another order. Callers pass the
//! current time and random numbers in.

use std::collections::VecDeque;
use std::time::{Duration, Instant, SystemTime};

use crate::cert::CertInfo;

/// When a certificate is due by its own lifetime: once `fraction` of it remains.
pub(crate) fn renew_at(info: &CertInfo, fraction: f64) -> SystemTime {
    let remaining = info.lifetime().mul_f64(fraction.clamp(0.0, 1.0));
    info.not_after
        .checked_sub(remaining)
        .unwrap_or(info.not_before)
}

/// A point in the CA's suggested window (RFC 9773 §4.2): uniformly random
/// inside it, `unit` in `[0, 1)` supplied by the caller. A window whose end
/// is before its start is read as its start.
pub(crate) fn pick_in_window(start: SystemTime, end: SystemTime, unit: f64) -> SystemTime {
    match end.duration_since(start) {
        Ok(width) => start + width.mul_f64(unit.clamp(0.0, 1.0)),
        Err(_) => start,
    }
}

/// Capped exponential backoff with jitter.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    initial: Duration,
    max: Duration,
    failures: u32,
}

impl Backoff {
    pub(crate) fn new(initial: Duration, max: Duration) -> Self {
        Self {
            initial,
            max: max.max(initial),
            failures: 0,
        }
    }

    /// Consecutive failures so far.
    pub(crate) fn failures(&self) -> u32 {
        self.failures
    }

    /// Records a failure. Returns the nominal delay (`initial * 2^(n-1)`,
    /// capped) and the delay to actually wait: uniformly random between half
    /// the nominal delay and the nominal delay, `unit` in `[0, 1)`.
    pub(crate) fn fail(&mut self, unit: f64) -> (Duration, Duration) {
        self.failures = self.failures.saturating_add(1);
        let exp = self.failures.saturating_sub(1).min(32);
        let nominal = self
            .initial
            .checked_mul(1u32 << exp.min(31))
            .map_or(self.max, |d| d.min(self.max));
        let half = nominal / 2;
        (nominal, half + half.mul_f64(unit.clamp(0.0, 1.0)))
    }

    pub(crate) fn reset(&mut self) {
        self.failures = 0;
    }
}

/// At most `limit` orders in any sliding `window`.
#[derive(Debug)]
pub(crate) struct RateLimiter {
    limit: usize,
    window: Duration,
    recent: VecDeque<Instant>,
}

impl RateLimiter {
    pub(crate) fn new(limit: u32, window: Duration) -> Self {
        Self {
            limit: usize::try_from(limit).unwrap_or(usize::MAX).max(1),
            window,
            recent: VecDeque::new(),
        }
    }

    /// Takes a slot at `now`, or says how long until one frees up.
    pub(crate) fn try_acquire(&mut self, now: Instant) -> Result<(), Duration> {
        while let Some(&oldest) = self.recent.front() {
            if now.saturating_duration_since(oldest) >= self.window {
                self.recent.pop_front();
            } else {
                break;
            }
        }
        if self.recent.len() < self.limit {
            self.recent.push_back(now);
            return Ok(());
        }
        let oldest = self.recent.front().copied().unwrap_or(now);
        Err(self
            .window
            .saturating_sub(now.saturating_duration_since(oldest)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(not_before: u64, not_after: u64) -> CertInfo {
        let t = |s| SystemTime::UNIX_EPOCH + Duration::from_secs(s);
        CertInfo {
            names: vec![],
            not_before: t(not_before),
            not_after: t(not_after),
            serial: String::new(),
            ari_id: None,
            key: "ecdsa-p256".into(),
        }
    }

    #[test]
    fn renews_with_a_third_left() {
        let day = 86_400;
        let at = renew_at(&info(0, 90 * day), 1.0 / 3.0);
        let at = at.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs();
        assert!((60 * day - 1..=60 * day + 1).contains(&at), "{at}");
        let six_day = renew_at(&info(0, 6 * day), 1.0 / 3.0);
        let s = six_day
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        assert!((4 * day - 1..=4 * day + 1).contains(&s), "{s}");
        // Broken validity (after before start): due at once.
        assert_eq!(
            renew_at(&info(100, 50), 1.0 / 3.0),
            SystemTime::UNIX_EPOCH + Duration::from_secs(50)
        );
    }

    #[test]
    fn window_pick_stays_inside() {
        let s = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        let e = s + Duration::from_secs(100);
        assert_eq!(pick_in_window(s, e, 0.0), s);
        assert_eq!(pick_in_window(s, e, 0.5), s + Duration::from_secs(50));
        assert!(pick_in_window(s, e, 0.999_999) <= e);
        assert_eq!(pick_in_window(e, s, 0.7), e);
    }

    #[test]
    fn backoff_doubles_is_capped_and_jittered_within_bounds() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(10));
        let nominal: Vec<u64> = (0..8).map(|_| b.fail(0.0).0.as_secs()).collect();
        assert_eq!(nominal, [1, 2, 4, 8, 10, 10, 10, 10]);
        for _ in 0..100 {
            b.fail(0.0);
        }
        let (n, low) = b.fail(0.0);
        let (_, high) = b.fail(0.999);
        assert_eq!(n, Duration::from_secs(10));
        assert_eq!(low, Duration::from_secs(5));
        assert!(high <= Duration::from_secs(10) && high > Duration::from_secs(9));
        b.reset();
        assert_eq!(b.fail(0.0).0, Duration::from_secs(1));
        assert_eq!(b.failures(), 1);
    }

    #[test]
    fn rate_cap_per_sliding_window() {
        let mut r = RateLimiter::new(2, Duration::from_secs(60));
        let t0 = Instant::now();
        assert!(r.try_acquire(t0).is_ok());
        assert!(r.try_acquire(t0 + Duration::from_secs(10)).is_ok());
        assert_eq!(
            r.try_acquire(t0 + Duration::from_secs(20)),
            Err(Duration::from_secs(40))
        );
        assert!(r.try_acquire(t0 + Duration::from_secs(60)).is_ok());
        assert_eq!(
            r.try_acquire(t0 + Duration::from_secs(61)),
            Err(Duration::from_secs(9))
        );
    }
}
