//! The round-robin policy: smooth weighted round robin (the sequence in
//! the `smooth` module) over a balancer's view. With static weights a pick
//! follows the precomputed cycle with one atomic increment; during a
//! slow-start ramp (weights change with time) or when the cycle would be
//! too long to precompute, picks run the algorithm live under a mutex that
//! only pickers take.

use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::time::Instant;

use super::smooth::Live;
use crate::view::{Cands, View};

/// Picks the next candidate: from the precomputed cycle when there is one
/// and no ramp is running, else live.
pub(crate) fn pick<K, T>(
    view: &View<K, T>,
    cands: &Cands<'_>,
    now: Option<Instant>,
    counter: &AtomicUsize,
    live: &std::sync::Mutex<Live>,
) -> Option<usize> {
    if let (Some(table), None) = (&view.wrr, now) {
        match cands {
            Cands::All(_) => return table.at(counter.fetch_add(1, Ordering::Relaxed)),
            Cands::List(list) => {
                // Follow the cycle past excluded endpoints.
                for _ in 0..table.len() {
                    let i = table.at(counter.fetch_add(1, Ordering::Relaxed))?;
                    if list.binary_search(&i).is_ok() {
                        return Some(i);
                    }
                }
                return None;
            }
        }
    }
    let mut state = live
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if state.view_id != view.id {
        state.reset(view.id, view.avail.len());
    }
    state.step_over(cands.iter().map(Some), |i| view.eff_weight(i, now))
}
