//! Random public identifiers (`evt_…`, `ep_…`, `bat_…`) from the operating system's CSPRNG.
//! Identifiers are opaque to consumers; this module only promises their shape.

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

#[cfg(test)]
mod tests {
    use super::*;

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
