//! The retry budget: retries stay a bounded share of the traffic.

use std::sync::atomic::{AtomicI64, Ordering};

use tower::retry::budget::Budget;

/// One retry, in the budget's units (thousandths of a retry).
const RETRY: i64 = 1000;

/// A token bucket of retries, as linkerd's and Envoy's retry budgets: each
/// first attempt deposits `percent` / 100 of a retry, each retry withdraws
/// one, so retries stay `percent` % of the requests plus a fixed
/// `reserve`, even when every endpoint fails. Unlike tower's
/// [`TpsBudget`](tower::retry::budget::TpsBudget) it has no time window:
/// the balance is capped instead.
#[derive(Debug)]
pub struct RetryBudget {
    tokens: AtomicI64,
    per_request: i64,
    cap: i64,
}

impl RetryBudget {
    /// `percent` of the requests may be retried, on top of `reserve`
    /// retries always allowed; at most `cap` retries saved up.
    pub fn new(percent: u32, reserve: u32, cap: u32) -> Self {
        Self {
            tokens: AtomicI64::new(i64::from(reserve) * RETRY),
            per_request: i64::from(percent) * RETRY / 100,
            cap: i64::from(cap.max(reserve)) * RETRY,
        }
    }

    /// Whole retries available now.
    pub fn available(&self) -> u64 {
        u64::try_from(self.tokens.load(Ordering::Relaxed) / RETRY).unwrap_or(0)
    }
}

impl Default for RetryBudget {
    /// 20 % of the requests, 10 in reserve, at most 100 saved up.
    fn default() -> Self {
        Self::new(20, 10, 100)
    }
}

impl Budget for RetryBudget {
    fn deposit(&self) {
        let (add, cap) = (self.per_request, self.cap);
        let _ = self
            .tokens
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |t| {
                Some((t + add).min(cap))
            });
    }

    fn withdraw(&self) -> bool {
        self.tokens
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |t| {
                (t >= RETRY).then_some(t - RETRY)
            })
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_share_of_traffic_plus_the_reserve() {
        let b = RetryBudget::new(20, 10, 100);
        let mut granted = 0;
        for _ in 0..100 {
            b.deposit();
            if b.withdraw() {
                granted += 1;
            }
        }
        // 10 in reserve + 20 % of 100 requests.
        assert_eq!(granted, 30);
        assert!(!b.withdraw());
    }

    #[test]
    fn capped() {
        let b = RetryBudget::new(100, 0, 5);
        for _ in 0..50 {
            b.deposit();
        }
        assert_eq!(b.available(), 5);
        let none = RetryBudget::new(0, 0, 0);
        none.deposit();
        assert!(!none.withdraw());
    }
}
