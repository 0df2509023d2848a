//! Maglev consistent hashing (Eisenbud et al., NSDI 2016), weighted, with
//! an optional bounded-load walk.
//!
//! Each endpoint has a pseudo-random permutation of the table's slots
//! (`offset + j × skip mod M`, M prime so every `skip` visits every slot).
//! Endpoints take turns claiming their next free preferred slot until the
//! table is full; an endpoint of weight `w` takes a turn in `w / max_w` of
//! the rounds. With equal weights every endpoint owns ⌊M/N⌋ or ⌈M/N⌉
//! slots, and removing one endpoint only reassigns its own slots plus a
//! few others.

use std::hash::Hash;

use crate::hash::hash_with_seed;

/// Default lookup table size: the prime 65537.
pub const DEFAULT_TABLE_SIZE: u64 = 65_537;

/// The largest table built (a prime above 100 × 100 000 endpoints).
const MAX_TABLE_SIZE: u64 = 20_000_003;

const EMPTY: u32 = u32::MAX;

fn is_prime(n: u64) -> bool {
    if n < 2 {
        return false;
    }
    if n.is_multiple_of(2) {
        return n == 2;
    }
    let mut d = 3u64;
    while d.saturating_mul(d) <= n {
        if n.is_multiple_of(d) {
            return false;
        }
        d += 2;
    }
    true
}

/// The smallest prime ≥ `n`.
fn next_prime(n: u64) -> u64 {
    let mut c = n.max(2);
    while !is_prime(c) {
        c += 1;
    }
    c
}

/// The table size used for `endpoints` endpoints: the configured size
/// rounded up to a prime, and at least the smallest prime above
/// 100 × endpoints.
pub(crate) fn table_size_for(configured: u64, endpoints: usize) -> u64 {
    let floor = (endpoints as u64).saturating_mul(100).saturating_add(1);
    next_prime(configured.max(floor).clamp(3, MAX_TABLE_SIZE))
}

/// A Maglev lookup table: slot → endpoint index.
#[derive(Debug, Clone)]
pub struct MaglevTable {
    entries: Vec<u32>,
}

impl MaglevTable {
    /// Builds the table for endpoints identified by `keys` with `weights`
    /// (same length; weight 0 endpoints get no slot unless all are 0).
    /// `size` is rounded up to a prime and to more than 100 × endpoints.
    pub fn build<K: Hash>(keys: &[K], weights: &[u32], size: u64) -> Self {
        let n = keys.len().min(weights.len());
        if n == 0 || n >= EMPTY as usize {
            return Self {
                entries: Vec::new(),
            };
        }
        let m = table_size_for(size, n);
        let mut pos = Vec::with_capacity(n);
        let mut skip = Vec::with_capacity(n);
        for k in &keys[..n] {
            pos.push(hash_with_seed(k, 0x6d61_676c) % m);
            skip.push(hash_with_seed(k, 0x736b_6970) % (m - 1) + 1);
        }
        let all_zero = weights[..n].iter().all(|&w| w == 0);
        let w: Vec<u64> = weights[..n]
            .iter()
            .map(|&w| if all_zero { 1 } else { u64::from(w) })
            .collect();
        let max_w = w.iter().copied().max().unwrap_or(1).max(1);
        let mut credit = vec![0u64; n];
        let mut entries = vec![EMPTY; m as usize];
        let mut filled = 0u64;
        while filled < m {
            for i in 0..n {
                credit[i] += w[i];
                if credit[i] < max_w {
                    continue;
                }
                credit[i] -= max_w;
                // Next free slot in this endpoint's permutation: M steps
                // visit every slot, and one is free since filled < M.
                loop {
                    let c = pos[i] as usize;
                    // pos, skip < m: one subtraction replaces the modulo.
                    pos[i] += skip[i];
                    if pos[i] >= m {
                        pos[i] -= m;
                    }
                    if entries[c] == EMPTY {
                        entries[c] = i as u32;
                        filled += 1;
                        break;
                    }
                }
                if filled == m {
                    break;
                }
            }
        }
        Self { entries }
    }

    /// Number of slots (a prime), 0 for an empty table.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the table has no slots (no endpoints).
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The endpoint index owning `hash`.
    pub fn lookup(&self, hash: u64) -> Option<usize> {
        let len = self.entries.len() as u64;
        if len == 0 {
            return None;
        }
        self.entries.get((hash % len) as usize).map(|&i| i as usize)
    }

    /// Walks the table from `hash`'s slot and returns the first endpoint
    /// that `accept` takes (consistent per key: the walk only depends on the
    /// table). Used for exclusions and bounded load.
    pub fn lookup_walk(&self, hash: u64, mut accept: impl FnMut(usize) -> bool) -> Option<usize> {
        let len = self.entries.len();
        if len == 0 {
            return None;
        }
        let start = (hash % len as u64) as usize;
        (0..len)
            .map(|s| self.entries[(start + s) % len] as usize)
            .find(|&i| accept(i))
    }

    /// How many slots each endpoint owns.
    pub fn shares(&self, endpoints: usize) -> Vec<usize> {
        let mut c = vec![0; endpoints];
        for &e in &self.entries {
            if let Some(x) = c.get_mut(e as usize) {
                *x += 1;
            }
        }
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_primes_above_100n() {
        assert_eq!(table_size_for(DEFAULT_TABLE_SIZE, 3), 65_537);
        assert_eq!(table_size_for(DEFAULT_TABLE_SIZE, 1000), 100_003);
        assert_eq!(table_size_for(1000, 1), 1009);
        assert!(is_prime(table_size_for(65_536, 2)));
    }

    #[test]
    fn equal_weights_share_the_table_within_one_slot() {
        let keys: Vec<String> = (0..7).map(|i| format!("10.0.0.{i}:80")).collect();
        let t = MaglevTable::build(&keys, &[1; 7], DEFAULT_TABLE_SIZE);
        let s = t.shares(7);
        let (min, max) = (s.iter().min(), s.iter().max());
        assert!(max.zip(min).is_some_and(|(a, b)| a - b <= 1), "{s:?}");
    }

    #[test]
    fn tables_are_identical_across_builds() {
        // Both proxies of a pair must map a client to the same endpoint.
        let t = MaglevTable::build(
            &["10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80"],
            &[1; 3],
            DEFAULT_TABLE_SIZE,
        );
        let picks: Vec<Option<usize>> = [0u64, 1, 2, 3, 4, 5, 6, 7, 1 << 40, u64::MAX]
            .iter()
            .map(|&h| t.lookup(h))
            .collect();
        let expected = [0, 1, 1, 0, 1, 0, 0, 1, 2, 0].map(Some);
        assert_eq!(picks, expected);
    }

    #[test]
    fn weights_scale_shares() {
        let t = MaglevTable::build(&["a", "b"], &[3, 1], 1009);
        let s = t.shares(2);
        let ratio = s[0] as f64 / s[1] as f64;
        assert!((ratio - 3.0).abs() < 0.05, "{s:?}");
    }
}
