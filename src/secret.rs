//! Signing secrets (`whsec_` + standard base64 without padding) and the admin token: how they
//! are made, checked and compared. Secret values never reach a log line from here.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use sha2::{Digest, Sha256};

/// The prefix of every signing secret.
pub const PREFIX: &str = "whsec_";

/// A new signing secret: `whsec_` + 32 characters encoding 24 random bytes.
pub fn generate() -> String {
    let mut bytes = [0u8; 24];
    crate::id::fill_random(&mut bytes);
    format!("{PREFIX}{}", STANDARD_NO_PAD.encode(bytes))
}

/// Why a user-supplied secret was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum SecretError {
    /// The secret does not start with `whsec_`.
    Prefix,
    /// The part after the prefix is not standard base64.
    Encoding,
    /// The decoded key is shorter than 24 or longer than 64 bytes.
    Length(usize),
}

impl std::fmt::Display for SecretError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SecretError::Prefix => write!(f, "secret must start with \"whsec_\""),
            SecretError::Encoding => {
                write!(f, "secret must be \"whsec_\" followed by standard base64")
            }
            SecretError::Length(n) => write!(f, "secret must encode 24 to 64 bytes, not {n}"),
        }
    }
}

/// Checks a user-supplied secret's form and returns its key bytes.
pub fn key_bytes(secret: &str) -> Result<Vec<u8>, SecretError> {
    let encoded = secret.strip_prefix(PREFIX).ok_or(SecretError::Prefix)?;
    let bytes = STANDARD_NO_PAD
        .decode(encoded)
        .or_else(|_| STANDARD.decode(encoded))
        .map_err(|_| SecretError::Encoding)?;
    if !(24..=64).contains(&bytes.len()) {
        return Err(SecretError::Length(bytes.len()));
    }
    Ok(bytes)
}

/// Lower-case hex of `bytes`.
pub fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[(b >> 4) as usize] as char);
        out.push(DIGITS[(b & 15) as usize] as char);
    }
    out
}

/// Exactly `N` bytes from `2 * N` hex digits, or `None`.
pub fn from_hex<const N: usize>(hex: &str) -> Option<[u8; N]> {
    // `from_str_radix` alone would take "+f" as a digit pair.
    if hex.len() != 2 * N || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let mut out = [0u8; N];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(i * 2..i * 2 + 2)?, 16).ok()?;
    }
    Some(out)
}

/// The longest admin token the configuration accepts. The API refuses a longer bearer token
/// without hashing it, which keeps the cost of a wrong token small and bounded.
pub const MAX_ADMIN_TOKEN_LEN: usize = 256;

/// A new admin token: `sstok_` + 43 characters of URL-safe base64 (32 random bytes).
pub fn generate_admin_token() -> String {
    let mut bytes = [0u8; 32];
    crate::id::fill_random(&mut bytes);
    format!(
        "sstok_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}

/// The length of a push monitor's ping token (SPEC 7).
pub const PING_TOKEN_LEN: usize = 32;

/// A new ping token: 32 characters of URL-safe base64 (24 random bytes), so that it sits in
/// a URL path unescaped.
pub fn generate_ping_token() -> String {
    let mut bytes = [0u8; 24];
    crate::id::fill_random(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Whether `token` has a ping token's form; a path that has not is refused unread.
pub fn is_ping_token(token: &str) -> bool {
    token.len() == PING_TOKEN_LEN
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The SHA-256 of a token, as stored and compared.
pub fn hash_token(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Compares two byte strings in time that depends only on their lengths (`subtle`).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    subtle::ConstantTimeEq::ct_eq(a, b).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ping_tokens_are_32_url_safe_characters_and_differ() {
        let (a, b) = (generate_ping_token(), generate_ping_token());
        assert!(is_ping_token(&a), "{a}");
        assert_ne!(a, b);
        assert!(!is_ping_token(&a[1..]));
        assert!(!is_ping_token(&format!("{}/", &a[1..])));
    }

    #[test]
    fn generated_secrets_have_the_spec_form() {
        let s = generate();
        assert!(s.starts_with("whsec_"));
        assert_eq!(s.len(), 6 + 32);
        assert_eq!(key_bytes(&s).unwrap().len(), 24);
        assert_ne!(s, generate());
    }

    #[test]
    fn user_secrets_are_checked() {
        let rows: [(&str, Result<usize, SecretError>); 6] = [
            ("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", Ok(24)),
            ("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", Err(SecretError::Prefix)),
            ("whsec_not base64!", Err(SecretError::Encoding)),
            ("whsec_c2hvcnQ", Err(SecretError::Length(5))),
            (
                "whsec_4eC39HqLyjWDarjtT1zdp7dc",
                Err(SecretError::Length(18)),
            ),
            (
                "whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
                Err(SecretError::Length(66)),
            ),
        ];
        for (secret, want) in rows {
            assert_eq!(key_bytes(secret).map(|k| k.len()), want, "{secret}");
        }
    }

    #[test]
    fn hex_round_trips_and_refuses_wrong_lengths_and_digits() {
        let bytes = [0x00, 0x0f, 0xa5, 0xff];
        assert_eq!(to_hex(&bytes), "000fa5ff");
        assert_eq!(from_hex::<4>("000fa5ff"), Some(bytes));
        assert_eq!(from_hex::<4>("000FA5FF"), Some(bytes));
        for bad in [
            "000fa5f",
            "000fa5ff00",
            "000fa5fg",
            "00+fa5ff",
            "000fa\u{e9}f",
        ] {
            assert_eq!(from_hex::<4>(bad), None, "{bad}");
        }
    }

    #[test]
    fn constant_time_eq_compares() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
