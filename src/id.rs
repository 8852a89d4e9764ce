//! Public identifiers. Most (`ep_…`, `bat_…`, …) are random, from the operating system's
//! CSPRNG; event ids (`evt_…`) are the event's `seq` and random bits through a keyed
//! permutation (`EventIds`). Identifiers are opaque to consumers; this module only promises
//! their shape.

use sha2::{Digest, Sha256};

/// The characters of an identifier's random part.
const ALPHABET: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";

/// The length of an identifier's random part.
pub const RANDOM_LEN: usize = 16;

/// `prefix` + `_` + 16 characters of `[0-9a-z]`, uniformly distributed.
pub fn new(prefix: &str) -> String {
    let mut out = String::with_capacity(prefix.len() + 1 + RANDOM_LEN);
    out.push_str(prefix);
    out.push('_');
    while out.len() < prefix.len() + 1 + RANDOM_LEN {
        let b = random_byte();
        // Rejection sampling keeps the distribution uniform: 252 is the largest multiple of 36
        // that fits in a byte.
        if b < 252 {
            out.push(ALPHABET[(b % 36) as usize] as char);
        }
    }
    out
}

/// Random bytes for identifiers, drawn from the operating system a kilobyte at a time per
/// thread: one system call per about 60 identifiers instead of one each. Secrets do not come
/// from here (`fill_random`).
struct Pool {
    bytes: [u8; 1024],
    used: usize,
}

thread_local! {
    static POOL: std::cell::RefCell<Pool> = const {
        std::cell::RefCell::new(Pool { bytes: [0; 1024], used: 1024 })
    };
}

fn random_byte() -> u8 {
    POOL.with_borrow_mut(|pool| {
        if pool.used == pool.bytes.len() {
            fill_random(&mut pool.bytes);
            pool.used = 0;
        }
        pool.used += 1;
        pool.bytes[pool.used - 1]
    })
}

/// Whether `text` is `prefix_` followed by 16 characters of `[0-9a-z]`.
#[cfg(test)]
pub fn is_valid(prefix: &str, text: &str) -> bool {
    text.strip_prefix(prefix)
        .and_then(|rest| rest.strip_prefix('_'))
        .is_some_and(|r| r.len() == RANDOM_LEN && r.bytes().all(|b| ALPHABET.contains(&b)))
}

/// Fills `buf` from the operating system's CSPRNG.
///
/// A machine whose kernel cannot hand out random bytes cannot sign or identify anything
/// safely, so this is one of the few places that ends the process instead of returning.
pub fn fill_random(buf: &mut [u8]) {
    if let Err(err) = getrandom::fill(buf) {
        panic!("the operating system's random number generator failed: {err}");
    }
}

/// The length of the key behind event ids: one SHA-256 block, so that the key is absorbed once
/// and every round of the permutation costs a single block.
pub const EVENT_ID_KEY_LEN: usize = 64;

/// 36^16: how many event ids there are.
const ID_SPACE: u128 = 36u128.pow(RANDOM_LEN as u32);

/// The permutation runs on 84-bit numbers, two halves of 42 bits: the smallest even width
/// that holds `ID_SPACE` (about 2^82.7).
const HALF_BITS: u32 = 42;
const HALF_MASK: u64 = (1 << HALF_BITS) - 1;

/// Feistel rounds. Four already make a pseudorandom permutation out of a pseudorandom
/// function (Luby and Rackoff); six leave a margin at this narrow width.
const ROUNDS: u8 = 6;

/// The bits of an event id's plaintext: the most that fit in the 36^16 ids (about 2^82.7).
const PLAIN_BITS: u32 = 82;

/// Bits of fresh randomness in each event id, below the `seq`.
const SALT_BITS: u32 = 38;

/// The largest `seq` an event id holds: the 44 bits above the salt. That is 1.7e13 events,
/// 55 years at 10,000 a second.
pub const MAX_EVENT_SEQ: i64 = (1 << (PLAIN_BITS - SALT_BITS)) - 1;

/// Event ids as a keyed permutation of (event `seq`, 38 random bits) onto `evt_` + 16 of
/// `[0-9a-z]`.
///
/// A unique index on random ids put each new event on an index page of its own, about half
/// of what every group commit wrote. A permutation needs no index: it is one-to-one, so two
/// events (two `seq`s) never share an id, and a lookup inverts it to the `seq`. Without the key
/// the ids cannot be told from uniformly random ones, or predicted from each other. The random
/// bits are there for a database restored from a backup: it hands out the `seq`s after the
/// backup again, and their events must not get the ids that consumers have already seen and
/// would drop as duplicates. The key lives in the database (`settings`).
///
/// The permutation is a balanced Feistel network over 84-bit numbers whose round function is
/// SHA-256 of the key, the round and the half, cycle-walked onto the 36^16 ids: a value that
/// lands outside them is permuted again until it lands inside, which keeps the map one-to-one
/// (on average 2.4 passes).
pub struct EventIds {
    /// SHA-256 with the key absorbed, cloned for each round.
    keyed: Sha256,
}

impl EventIds {
    pub fn new(key: &[u8; EVENT_ID_KEY_LEN]) -> EventIds {
        let mut keyed = Sha256::new();
        keyed.update(key);
        EventIds { keyed }
    }

    /// A new id for the event with this `seq`; `None` if `seq` is negative or above
    /// `MAX_EVENT_SEQ`.
    pub fn id(&self, seq: i64) -> Option<String> {
        let mut salt = [0u8; 8];
        for b in &mut salt[..5] {
            *b = random_byte();
        }
        self.id_salted(seq, u64::from_le_bytes(salt))
    }

    /// The id of the event with this `seq` and the low `SALT_BITS` of `salt`.
    fn id_salted(&self, seq: i64, salt: u64) -> Option<String> {
        if !(0..=MAX_EVENT_SEQ).contains(&seq) {
            return None;
        }
        let salt = u128::from(salt & ((1 << SALT_BITS) - 1));
        let mut x = (u128::from(seq.unsigned_abs()) << SALT_BITS) | salt;
        loop {
            x = self.forward(x);
            if x < ID_SPACE {
                break;
            }
        }
        let mut digits = [0u8; RANDOM_LEN];
        for d in digits.iter_mut().rev() {
            *d = ALPHABET[(x % 36) as usize];
            x /= 36;
        }
        let mut out = String::with_capacity(4 + RANDOM_LEN);
        out.push_str("evt_");
        out.extend(digits.iter().map(|&b| b as char));
        Some(out)
    }

    /// The `seq` whose id is `id`, or `None` for text that is no event id. Every well-formed
    /// id maps to some number; whether an event has it is for the caller to look up.
    pub fn seq(&self, id: &str) -> Option<i64> {
        let digits = id.strip_prefix("evt_")?.as_bytes();
        if digits.len() != RANDOM_LEN {
            return None;
        }
        let mut x: u128 = 0;
        for &b in digits {
            let d = ALPHABET.iter().position(|&a| a == b)?;
            x = x * 36 + d as u128;
        }
        loop {
            x = self.backward(x);
            if x < ID_SPACE {
                break;
            }
        }
        if x >> PLAIN_BITS != 0 {
            return None;
        }
        i64::try_from(x >> SALT_BITS).ok()
    }

    fn round(&self, round: u8, half: u64) -> u64 {
        let mut h = self.keyed.clone();
        h.update([round]);
        h.update(&half.to_le_bytes()[..6]);
        let digest = h.finalize();
        let mut first = [0u8; 8];
        first.copy_from_slice(&digest[..8]);
        u64::from_le_bytes(first) & HALF_MASK
    }

    fn forward(&self, x: u128) -> u128 {
        let (mut left, mut right) = ((x >> HALF_BITS) as u64, x as u64 & HALF_MASK);
        for r in 0..ROUNDS {
            (left, right) = (right, left ^ self.round(r, right));
        }
        (u128::from(left) << HALF_BITS) | u128::from(right)
    }

    fn backward(&self, y: u128) -> u128 {
        let (mut left, mut right) = ((y >> HALF_BITS) as u64, y as u64 & HALF_MASK);
        for r in (0..ROUNDS).rev() {
            (left, right) = (right ^ self.round(r, left), left);
        }
        (u128::from(left) << HALF_BITS) | u128::from(right)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event_ids(fill: u8) -> EventIds {
        let mut key = [0u8; EVENT_ID_KEY_LEN];
        for (i, b) in key.iter_mut().enumerate() {
            *b = fill.wrapping_add(i as u8);
        }
        EventIds::new(&key)
    }

    #[test]
    fn event_ids_have_the_spec_shape_and_map_back_to_their_seq() {
        let ids = event_ids(7);
        let seqs = (0..5000).chain([1 << 31, 1 << 40, MAX_EVENT_SEQ - 1, MAX_EVENT_SEQ]);
        for seq in seqs {
            let id = ids.id(seq).unwrap();
            assert!(is_valid("evt", &id), "{seq}: {id}");
            assert_eq!(ids.seq(&id), Some(seq), "{id}");
        }
        assert_eq!(ids.id(MAX_EVENT_SEQ + 1), None);
        assert_eq!(ids.id(-1), None);
    }

    #[test]
    fn the_same_seq_gets_a_new_id_each_time() {
        // A database restored from a backup hands out seqs again; their events must not
        // repeat the ids consumers have seen.
        let ids = event_ids(9);
        let again: std::collections::HashSet<String> =
            (0..1000).map(|_| ids.id(42).unwrap()).collect();
        assert_eq!(again.len(), 1000);
        assert!(again.iter().all(|id| ids.seq(id) == Some(42)));
    }

    #[test]
    fn event_ids_are_unique_and_every_character_is_even_at_every_position() {
        let ids = event_ids(1);
        let n = 36 * 600;
        // Without salt, so that only the permutation can make neighbours look unrelated.
        let all: Vec<String> = (1..=n).map(|seq| ids.id_salted(seq, 0).unwrap()).collect();
        let unique: std::collections::HashSet<&String> = all.iter().collect();
        assert_eq!(unique.len(), all.len());
        // Consecutive seqs must not give related ids: each position on its own is uniform.
        // The key is fixed, so this is deterministic; 600 expected, ±150 is over 6 sigma.
        for pos in 4..4 + RANDOM_LEN {
            let mut counts = [0u32; 36];
            for id in &all {
                let b = id.as_bytes()[pos];
                counts[ALPHABET.iter().position(|&a| a == b).unwrap()] += 1;
            }
            for (c, &k) in counts.iter().enumerate() {
                assert!(
                    (450..=750).contains(&k),
                    "position {pos}, character {}: {k} of {n}",
                    ALPHABET[c] as char
                );
            }
        }
        // Neighbours share a character at a position about 1 time in 36.
        let same: usize = all
            .windows(2)
            .map(|w| {
                w[0].bytes()
                    .zip(w[1].bytes())
                    .skip(4)
                    .filter(|(a, b)| a == b)
                    .count()
            })
            .sum();
        let expected = (all.len() - 1) * RANDOM_LEN / 36;
        assert!(
            same < expected * 13 / 10,
            "{same} shared characters, about {expected} expected"
        );
    }

    #[test]
    fn event_ids_depend_on_the_key() {
        let (a, b) = (event_ids(1), event_ids(2));
        let differ = (1..1000)
            .filter(|&seq| a.id_salted(seq, 7) != b.id_salted(seq, 7))
            .count();
        assert_eq!(differ, 999);
        assert_ne!(a.seq(&b.id(5).unwrap()), Some(5));
    }

    #[test]
    fn well_formed_ids_decode_to_a_seq_or_none_and_malformed_ones_to_none() {
        let ids = event_ids(3);
        // A random id decodes to a seq when its preimage is below 2^82: 2^82 / 36^16 = 61 %.
        let n = 4000;
        let decoded = (0..n)
            .filter_map(|_| ids.seq(&new("evt")))
            .inspect(|seq| assert!((0..=MAX_EVENT_SEQ).contains(seq)))
            .count();
        assert!(
            (n * 55 / 100..=n * 67 / 100).contains(&decoded),
            "{decoded} of {n} decoded"
        );
        for bad in [
            "",
            "evt_",
            "evt_0123456789abcdeF",
            "evt_0123456789abcde",
            "evt_0123456789abcdef0",
            "ep_0123456789abcdef",
            "evt-0123456789abcdef",
        ] {
            assert_eq!(ids.seq(bad), None, "{bad}");
        }
    }

    #[test]
    fn ids_have_the_spec_shape_and_differ() {
        let a = new("evt");
        let b = new("evt");
        assert!(is_valid("evt", &a), "{a}");
        assert_ne!(a, b);
        assert_eq!(a.len(), 20);
    }

    #[test]
    fn ids_drawn_across_many_refills_are_valid_unique_and_use_every_character() {
        let ids: Vec<String> = (0..5000).map(|_| new("evt")).collect();
        assert!(ids.iter().all(|id| is_valid("evt", id)));
        let unique: std::collections::HashSet<&String> = ids.iter().collect();
        assert_eq!(unique.len(), ids.len());
        let mut seen = [0usize; 36];
        for id in &ids {
            for b in id[4..].bytes() {
                seen[ALPHABET.iter().position(|&a| a == b).unwrap()] += 1;
            }
        }
        // 80,000 characters, about 2,222 of each: a character missing or far off the mean would
        // mean a broken draw.
        assert!(seen.iter().all(|&n| (1800..2650).contains(&n)), "{seen:?}");
    }

    #[test]
    fn validation_rejects_near_misses() {
        for bad in [
            "evt_",
            "evt_0123456789abcdeF",
            "ep_0123456789abcdef",
            "evt_0123456789abcde",
            "evt-0123456789abcdef",
        ] {
            assert!(!is_valid("evt", bad), "{bad}");
        }
        assert!(is_valid("evt", "evt_0123456789abcdef"));
    }
}
