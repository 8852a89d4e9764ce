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
    let mut buf = [0u8; 32];
    while out.len() < prefix.len() + 1 + RANDOM_LEN {
        fill_random(&mut buf);
        // Rejection sampling keeps the distribution uniform: 252 is the largest multiple of 36
        // that fits in a byte.
        for &b in buf.iter().filter(|&&b| b < 252) {
            if out.len() == prefix.len() + 1 + RANDOM_LEN {
                break;
            }
            out.push(ALPHABET[(b % 36) as usize] as char);
        }
    }
    out
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
