//! The two signature schemes every delivery carries (SPEC 3): `X-StatusSentry-Signature`
//! (Stripe's construction) and the Standard Webhooks headers, and the verification that the
//! `verify` subcommand offers consumers. Pure functions: no clock, no I/O.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::secret::to_hex as hex;

type HmacSha256 = Hmac<Sha256>;

fn hmac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    // HMAC takes keys of any length, so this cannot fail.
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC accepts any key length");
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

/// The `v1` value for one secret: hex HMAC-SHA256 keyed by the whole secret string.
pub fn v1(secret: &str, timestamp: i64, body: &[u8]) -> String {
    hex(&hmac(
        secret.as_bytes(),
        &[timestamp.to_string().as_bytes(), b".", body],
    ))
}

/// The `X-StatusSentry-Signature` value: `t=…,v1=…[,v1=…]`, one `v1` per secret, in order.
pub fn header(secrets: &[&str], timestamp: i64, body: &[u8]) -> String {
    let mut out = format!("t={timestamp}");
    for secret in secrets {
        out.push_str(",v1=");
        out.push_str(&v1(secret, timestamp, body));
    }
    out
}

/// The Standard Webhooks `webhook-signature` value: `v1,<base64>` per secret, space-separated.
/// Secrets whose key part does not decode are skipped; the store only holds valid ones.
pub fn standard_webhooks(secrets: &[&str], id: &str, timestamp: i64, body: &[u8]) -> String {
    let mut entries = Vec::with_capacity(secrets.len());
    for secret in secrets {
        if let Ok(key) = crate::secret::key_bytes(secret) {
            let mac = hmac(
                &key,
                &[
                    id.as_bytes(),
                    b".",
                    timestamp.to_string().as_bytes(),
                    b".",
                    body,
                ],
            );
            entries.push(format!("v1,{}", STANDARD.encode(mac)));
        }
    }
    entries.join(" ")
}

/// Why a received request did not verify.
#[derive(Debug, PartialEq, Eq)]
pub enum VerifyError {
    /// The header is not `t=<unix seconds>,v1=<hex>[,…]`.
    Malformed,
    /// `t` is further than the tolerance from now, in either direction.
    Timestamp,
    /// No `v1` matches the body under this secret.
    Mismatch,
}

impl std::fmt::Display for VerifyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            VerifyError::Malformed => "malformed header",
            VerifyError::Timestamp => "timestamp outside tolerance",
            VerifyError::Mismatch => "signature mismatch",
        })
    }
}

/// Verifies an `X-StatusSentry-Signature` header the way a consumer should.
pub fn verify(
    secret: &str,
    header: &str,
    body: &[u8],
    now: i64,
    tolerance_secs: i64,
) -> Result<(), VerifyError> {
    let mut timestamp = None;
    let mut candidates = Vec::new();
    for part in header.split(',') {
        let (key, value) = part.trim().split_once('=').ok_or(VerifyError::Malformed)?;
        match key {
            "t" => timestamp = Some(value.parse::<i64>().map_err(|_| VerifyError::Malformed)?),
            "v1" => candidates.push(value),
            _ => {} // Other schemes may be added later; consumers ignore what they do not know.
        }
    }
    let timestamp = timestamp.ok_or(VerifyError::Malformed)?;
    if candidates.is_empty() {
        return Err(VerifyError::Malformed);
    }
    if now.abs_diff(timestamp) > tolerance_secs.unsigned_abs() {
        return Err(VerifyError::Timestamp);
    }
    let expected = v1(secret, timestamp, body);
    if candidates
        .iter()
        .any(|c| crate::secret::constant_time_eq(c.as_bytes(), expected.as_bytes()))
    {
        Ok(())
    } else {
        Err(VerifyError::Mismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_rfc4231_case_2() {
        let mac = hmac(b"Jefe", &[b"what do ya want ", b"for nothing?"]);
        assert_eq!(
            hex(&mac),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn standard_webhooks_published_vector() {
        // The test vector from the Standard Webhooks specification's reference libraries.
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let body = br#"{"test": 2432232314}"#;
        let sig = standard_webhooks(&[secret], "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body);
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn header_lists_every_secret_in_order() {
        let h = header(&["whsec_a", "whsec_b"], 1698417000, b"{}");
        let parts: Vec<&str> = h.split(',').collect();
        assert_eq!(parts.len(), 3);
        assert_eq!(parts[0], "t=1698417000");
        assert_eq!(parts[1], format!("v1={}", v1("whsec_a", 1698417000, b"{}")));
        assert_eq!(parts[2], format!("v1={}", v1("whsec_b", 1698417000, b"{}")));
    }

    #[test]
    fn verify_outcomes() {
        let body = b"{\"id\":\"evt_1\"}";
        let good = header(&["whsec_new", "whsec_old"], 1000, body);
        type Row<'a> = (&'a str, &'a str, &'a [u8], i64, Result<(), VerifyError>);
        let rows: [Row; 8] = [
            ("whsec_new", &good, body, 1000, Ok(())),
            ("whsec_old", &good, body, 1299, Ok(())),
            (
                "whsec_new",
                &good,
                b"{\"id\":\"evt_2\"}",
                1000,
                Err(VerifyError::Mismatch),
            ),
            ("whsec_other", &good, body, 1000, Err(VerifyError::Mismatch)),
            ("whsec_new", &good, body, 1301, Err(VerifyError::Timestamp)),
            ("whsec_new", &good, body, 699, Err(VerifyError::Timestamp)),
            (
                "whsec_new",
                "v1=abc",
                body,
                1000,
                Err(VerifyError::Malformed),
            ),
            (
                "whsec_new",
                "t=x,v1=abc",
                body,
                1000,
                Err(VerifyError::Malformed),
            ),
        ];
        for (secret, header, body, now, want) in rows {
            assert_eq!(
                verify(secret, header, body, now, 300),
                want,
                "{secret} {header} at {now}"
            );
        }
    }
}
