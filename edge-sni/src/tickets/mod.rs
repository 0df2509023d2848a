//! TLS session tickets that several servers can share (feature `tickets`).
//!
//! A [`KeySet`] holds three ticket keys: the *previous* one, the *current*
//! one (which encrypts new tickets) and the *next* one. [`TicketKeys`] is a
//! rustls [`ProducesTickets`] over a key set that can be replaced while it
//! serves: every node of a group that holds the same set decrypts the
//! tickets of the others. A ticket decrypts under any of the three keys, so
//! a node that has rotated (its next key became current) and one that has
//! not yet understand each other's tickets.
//!
//! Rotation every [`ROTATE_EVERY`] (6 hours, as rustls' own ticketer):
//! previous is erased, current becomes previous, next becomes current and a
//! new next is drawn; a ticket therefore stays usable at least 6 hours
//! ([`ProducesTickets::lifetime`]).
//!
//! **Convergence rule** ([`KeySet::merge`]): of two sets, the one with the
//! higher generation wins (a rotation adds one; a set made at start without
//! saved keys is generation 0, so any set already in use beats it). Two
//! different sets of the same generation (made or rotated apart) resolve to
//! the one in use longer (the earlier `rotated_at`: its tickets are out
//! there), then the larger set id, with its generation raised by one. Both
//! sides compute the same result from the same two sets, in either order.
//!
//! Tickets are ChaCha20-Poly1305 (ring's AEAD): `key id (4) | nonce (12) |
//! ciphertext | tag (16)`, the key id authenticated as associated data.
//! [`KeySet`] and [`TicketKeys`] do no I/O and read no clock: the caller
//! passes the time. [`TicketStore`] is the I/O around them: the keys kept
//! in a file and rotated by a tokio task.
//!
//! ```
//! use edge_sni::tickets::{KeySet, TicketKeys};
//! use rustls::server::ProducesTickets;
//!
//! let set = KeySet::generate(1_700_000_000).unwrap();
//! let a = TicketKeys::new(set.clone());
//! let b = TicketKeys::new(set.clone());
//! let ticket = a.encrypt(b"session state").unwrap();
//! assert_eq!(b.decrypt(&ticket).as_deref(), Some(&b"session state"[..]));
//! assert_eq!(b.decrypt(b"garbage"), None);
//! // Carried between nodes (over an encrypted link) as bytes.
//! assert_eq!(KeySet::decode(&set.encode()).unwrap(), set);
//! ```

mod store;

pub use store::{KeysHook, TicketStore};

use std::fmt;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use rustls::server::ProducesTickets;

/// How long a key stays current.
pub const ROTATE_EVERY: Duration = Duration::from_secs(6 * 3600);

const SECRET_LEN: usize = 32;
const ID_LEN: usize = 4;
const TAG_LEN: usize = 16;
const FORMAT: u8 = 1;
/// format, generation, set id, rotated at, then 3 × (id, secret).
const ENCODED_LEN: usize = 1 + 8 + 8 + 8 + 3 * (ID_LEN + SECRET_LEN);

/// Why a key set could not be made or read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeySetError {
    /// The system's random generator failed.
    #[error("no random bytes from the system")]
    Random,
    /// The encoded set has the wrong length.
    #[error("a key set is {ENCODED_LEN} bytes, got {0}")]
    Length(usize),
    /// The encoded set has an unknown format byte.
    #[error("unknown key set format {0}")]
    Format(u8),
    /// Two keys of the set have the same id.
    #[error("two keys with the id {0:#010x}")]
    DuplicateId(u32),
}

/// One ticket key: its id (written in each ticket) and its secret.
#[derive(Clone, PartialEq, Eq)]
struct TicketKey {
    id: u32,
    secret: [u8; SECRET_LEN],
}

impl fmt::Debug for TicketKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the secret.
        write!(f, "TicketKey({:#010x})", self.id)
    }
}

/// Previous, current and next ticket keys, with the generation and id the
/// convergence rule compares. `Debug` shows ids, never secrets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeySet {
    generation: u64,
    set_id: u64,
    /// Unix seconds when the current key became current.
    rotated_at: u64,
    /// previous, current, next.
    keys: [TicketKey; 3],
}

fn random<const N: usize>(rng: &SystemRandom) -> Result<[u8; N], KeySetError> {
    let mut b = [0u8; N];
    rng.fill(&mut b).map_err(|_| KeySetError::Random)?;
    Ok(b)
}

fn new_key(rng: &SystemRandom, taken: &[u32]) -> Result<TicketKey, KeySetError> {
    loop {
        let id = u32::from_be_bytes(random(rng)?);
        if !taken.contains(&id) {
            return Ok(TicketKey {
                id,
                secret: random(rng)?,
            });
        }
    }
}

impl KeySet {
    /// A fresh set of generation 0 made at `now` (Unix seconds).
    pub fn generate(now: u64) -> Result<Self, KeySetError> {
        let rng = SystemRandom::new();
        let a = new_key(&rng, &[])?;
        let b = new_key(&rng, &[a.id])?;
        let c = new_key(&rng, &[a.id, b.id])?;
        Ok(Self {
            generation: 0,
            set_id: u64::from_be_bytes(random(&rng)?),
            rotated_at: now,
            keys: [a, b, c],
        })
    }

    /// The generation (one more per rotation).
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The random id of this set (the tie-break of [`merge`](Self::merge)).
    pub fn set_id(&self) -> u64 {
        self.set_id
    }

    /// Whether the current key has been current for [`ROTATE_EVERY`] at `now`.
    pub fn rotation_due(&self, now: u64) -> bool {
        now >= self.rotated_at.saturating_add(ROTATE_EVERY.as_secs())
    }

    /// The set after one rotation at `now`: next becomes current, a new
    /// next, the old previous erased; one generation more, a new set id.
    pub fn rotated(&self, now: u64) -> Result<Self, KeySetError> {
        let rng = SystemRandom::new();
        let [_, current, next] = &self.keys;
        let fresh = new_key(&rng, &[current.id, next.id])?;
        Ok(Self {
            generation: self.generation.saturating_add(1),
            set_id: u64::from_be_bytes(random(&rng)?),
            rotated_at: now,
            keys: [current.clone(), next.clone(), fresh],
        })
    }

    /// The set two nodes converge on from `self` and `other` (see the
    /// module docs): the same answer whichever side computes it.
    pub fn merge(&self, other: &Self) -> Self {
        let (a, b) = (self, other);
        if a.generation != b.generation {
            return if a.generation > b.generation { a } else { b }.clone();
        }
        if a == b {
            return a.clone();
        }
        // Same generation, different sets: the one in use longer, then the
        // larger id (then the larger encoding, for a coincidence of ids),
        // one generation up so that it beats both.
        let rank = |k: &Self| (std::cmp::Reverse(k.rotated_at), k.set_id, k.encode());
        let mut w = if rank(a) > rank(b) {
            a.clone()
        } else {
            b.clone()
        };
        w.generation = w.generation.saturating_add(1);
        w
    }

    /// The set as bytes (secrets included: keep them in a 0600 file or an
    /// encrypted link).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(ENCODED_LEN);
        out.push(FORMAT);
        out.extend_from_slice(&self.generation.to_be_bytes());
        out.extend_from_slice(&self.set_id.to_be_bytes());
        out.extend_from_slice(&self.rotated_at.to_be_bytes());
        for k in &self.keys {
            out.extend_from_slice(&k.id.to_be_bytes());
            out.extend_from_slice(&k.secret);
        }
        out
    }

    /// Reads what [`encode`](Self::encode) wrote.
    pub fn decode(bytes: &[u8]) -> Result<Self, KeySetError> {
        if bytes.len() != ENCODED_LEN {
            return Err(KeySetError::Length(bytes.len()));
        }
        let (&format, rest) = bytes.split_first().ok_or(KeySetError::Length(0))?;
        if format != FORMAT {
            return Err(KeySetError::Format(format));
        }
        let (u64s, keys) = rest.split_at(24);
        let word = |i: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&u64s[i * 8..i * 8 + 8]);
            u64::from_be_bytes(b)
        };
        let key = |i: usize| {
            let k = &keys[i * (ID_LEN + SECRET_LEN)..(i + 1) * (ID_LEN + SECRET_LEN)];
            let (id, secret) = k.split_at(ID_LEN);
            let mut s = [0u8; SECRET_LEN];
            s.copy_from_slice(secret);
            TicketKey {
                id: u32::from_be_bytes([id[0], id[1], id[2], id[3]]),
                secret: s,
            }
        };
        let set = Self {
            generation: word(0),
            set_id: word(1),
            rotated_at: word(2),
            keys: [key(0), key(1), key(2)],
        };
        for (i, k) in set.keys.iter().enumerate() {
            if set.keys[..i].iter().any(|o| o.id == k.id) {
                return Err(KeySetError::DuplicateId(k.id));
            }
        }
        Ok(set)
    }
}

/// A key set ready to use: one AEAD key per ticket key.
struct Loaded {
    set: KeySet,
    aead: [LessSafeKey; 3],
}

impl Loaded {
    fn new(set: KeySet) -> Self {
        let aead = set.keys.each_ref().map(|k| {
            // A 32-byte key is always valid for ChaCha20-Poly1305.
            LessSafeKey::new(
                UnboundKey::new(&CHACHA20_POLY1305, &k.secret)
                    .unwrap_or_else(|_| unreachable!("32-byte ChaCha20-Poly1305 key")),
            )
        });
        Self { set, aead }
    }
}

/// A session-ticket producer over a [`KeySet`] that can be replaced while
/// it serves (install it as `ServerConfig::ticketer`).
pub struct TicketKeys {
    loaded: RwLock<Arc<Loaded>>,
    rng: SystemRandom,
}

impl fmt::Debug for TicketKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TicketKeys")
            .field("set", &self.current().set)
            .finish()
    }
}

/// What [`TicketKeys::offer`] did with a set from elsewhere.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Offered {
    /// Nothing changed: the offered set is the one in use.
    Same,
    /// The set in use beats the offered one and stays; the other side
    /// should get it.
    Kept,
    /// The set in use changed to this (the merge of both).
    Changed(KeySet),
}

impl TicketKeys {
    /// A producer over `set`.
    pub fn new(set: KeySet) -> Self {
        Self {
            loaded: RwLock::new(Arc::new(Loaded::new(set))),
            rng: SystemRandom::new(),
        }
    }

    fn current(&self) -> Arc<Loaded> {
        // Replacing is one pointer store: poison cannot leave it half-done.
        self.loaded
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// The set in use.
    pub fn key_set(&self) -> KeySet {
        self.current().set.clone()
    }

    /// Uses `set` from now on.
    pub fn replace(&self, set: KeySet) {
        *self
            .loaded
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(Loaded::new(set));
    }

    /// Rotates when due at `now` (Unix seconds); the new set if it did.
    pub fn rotate_if_due(&self, now: u64) -> Result<Option<KeySet>, KeySetError> {
        let mut guard = self
            .loaded
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if !guard.set.rotation_due(now) {
            return Ok(None);
        }
        let next = guard.set.rotated(now)?;
        *guard = Arc::new(Loaded::new(next.clone()));
        Ok(Some(next))
    }

    /// Merges `theirs` into the set in use ([`KeySet::merge`]).
    pub fn offer(&self, theirs: &KeySet) -> Offered {
        let mut guard = self
            .loaded
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let merged = guard.set.merge(theirs);
        if merged == guard.set {
            return if merged == *theirs {
                Offered::Same
            } else {
                Offered::Kept
            };
        }
        *guard = Arc::new(Loaded::new(merged.clone()));
        Offered::Changed(merged)
    }
}

impl ProducesTickets for TicketKeys {
    fn enabled(&self) -> bool {
        true
    }

    fn lifetime(&self) -> u32 {
        // A ticket's key stays current at most ROTATE_EVERY, then previous
        // for as long: at least ROTATE_EVERY of use either way.
        ROTATE_EVERY.as_secs() as u32
    }

    fn encrypt(&self, plain: &[u8]) -> Option<Vec<u8>> {
        let loaded = self.current();
        let key = &loaded.set.keys[1];
        let nonce: [u8; NONCE_LEN] = random(&self.rng).ok()?;
        let id = key.id.to_be_bytes();
        let mut out = Vec::with_capacity(ID_LEN + NONCE_LEN + plain.len() + TAG_LEN);
        out.extend_from_slice(&id);
        out.extend_from_slice(&nonce);
        let mut body = plain.to_vec();
        loaded.aead[1]
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(id),
                &mut body,
            )
            .ok()?;
        out.extend_from_slice(&body);
        Some(out)
    }

    fn decrypt(&self, cipher: &[u8]) -> Option<Vec<u8>> {
        if cipher.len() < ID_LEN + NONCE_LEN + TAG_LEN {
            return None;
        }
        let (id, rest) = cipher.split_at(ID_LEN);
        let (nonce, sealed) = rest.split_at(NONCE_LEN);
        let id: [u8; ID_LEN] = id.try_into().ok()?;
        let loaded = self.current();
        let i = loaded
            .set
            .keys
            .iter()
            .position(|k| k.id.to_be_bytes() == id)?;
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut body = sealed.to_vec();
        let plain = loaded.aead[i]
            .open_in_place(nonce, Aad::from(id), &mut body)
            .ok()?;
        Some(plain.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const T0: u64 = 1_700_000_000;

    #[test]
    fn a_ticket_decrypts_wherever_the_set_is_the_same() {
        let set = KeySet::generate(T0).unwrap();
        let a = TicketKeys::new(set.clone());
        let b = TicketKeys::new(KeySet::decode(&set.encode()).unwrap());
        let t = a.encrypt(b"state").unwrap();
        assert_eq!(b.decrypt(&t).as_deref(), Some(&b"state"[..]));
        // Another set does not.
        let other = TicketKeys::new(KeySet::generate(T0).unwrap());
        assert_eq!(other.decrypt(&t), None);
        // Two tickets of the same state differ (random nonce).
        assert_ne!(a.encrypt(b"state").unwrap(), t);
    }

    #[test]
    fn tickets_survive_two_rotations_on_either_side() {
        let set = KeySet::generate(T0).unwrap();
        let a = TicketKeys::new(set.clone());
        let t = a.encrypt(b"x").unwrap();
        assert_eq!(a.rotate_if_due(T0 + 60).unwrap(), None, "not due yet");
        let r1 = a
            .rotate_if_due(T0 + ROTATE_EVERY.as_secs())
            .unwrap()
            .unwrap();
        assert_eq!(r1.generation(), 1);
        assert!(a.decrypt(&t).is_some(), "as previous");
        // A node that has not rotated yet reads tickets of the rotated
        // one (its next key).
        let b = TicketKeys::new(set.clone());
        assert!(b.decrypt(&a.encrypt(b"y").unwrap()).is_some());
        a.rotate_if_due(T0 + 2 * ROTATE_EVERY.as_secs())
            .unwrap()
            .unwrap();
        assert_eq!(a.decrypt(&t), None, "erased after two rotations");
    }

    #[test]
    fn garbage_and_tampered_tickets_are_none() {
        let a = TicketKeys::new(KeySet::generate(T0).unwrap());
        let t = a.encrypt(b"state").unwrap();
        for i in 0..t.len() {
            let mut bad = t.clone();
            bad[i] ^= 1;
            assert_eq!(a.decrypt(&bad), None, "byte {i} flipped");
        }
        for n in 0..t.len() {
            assert_eq!(a.decrypt(&t[..n]), None, "cut to {n}");
        }
    }

    #[test]
    fn merge_is_the_same_from_both_sides() {
        let a = KeySet::generate(T0).unwrap();
        let b = KeySet::generate(T0).unwrap();
        // The set in use longer wins a tie, whichever id it has.
        let later = KeySet::generate(T0 + 60).unwrap();
        assert_eq!(a.merge(&later).set_id(), a.set_id());
        assert_eq!(later.merge(&a).set_id(), a.set_id());
        let m = a.merge(&b);
        assert_eq!(m, b.merge(&a));
        assert_eq!(m.generation(), 1, "a tie goes one generation up");
        assert_eq!(m.merge(&a), m);
        assert_eq!(m.merge(&b), m);
        let r = a.rotated(T0 + 1).unwrap().rotated(T0 + 2).unwrap();
        assert_eq!(r.merge(&m), r, "the higher generation wins");
        // A node converging through offer.
        let keys = TicketKeys::new(a.clone());
        assert_eq!(keys.offer(&a), Offered::Same);
        assert_eq!(keys.offer(&b), Offered::Changed(m.clone()));
        assert_eq!(keys.offer(&a), Offered::Kept);
        assert_eq!(keys.key_set(), m);
    }

    #[test]
    fn decode_refuses_bad_sets() {
        let e = KeySet::generate(T0).unwrap().encode();
        assert_eq!(
            KeySet::decode(&e[1..]),
            Err(KeySetError::Length(e.len() - 1))
        );
        let mut f = e.clone();
        f[0] = 9;
        assert_eq!(KeySet::decode(&f), Err(KeySetError::Format(9)));
        let mut d = e.clone();
        let second = 25 + ID_LEN + SECRET_LEN;
        d.copy_within(25..25 + ID_LEN, second);
        assert!(matches!(
            KeySet::decode(&d),
            Err(KeySetError::DuplicateId(_))
        ));
        assert!(!format!("{:?}", KeySet::decode(&e).unwrap()).contains("secret"));
    }

    proptest! {
        #[test]
        fn decrypt_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let a = TicketKeys::new(KeySet::generate(T0).unwrap());
            prop_assert_eq!(a.decrypt(&bytes), None);
        }

        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = KeySet::decode(&bytes);
        }
    }
}
