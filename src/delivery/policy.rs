//! The delivery rules of SPEC 4.4 as pure functions: how a response is classed, how long to
//! back off, how `Retry-After` is read. No clock, no randomness, no I/O: the dispatcher
//! passes them in, so every rule has a table test.

use std::time::{Duration, SystemTime};

/// The longest `Retry-After` honoured.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(12 * 3600);

/// What one request's result means for its endpoint and its events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// 2xx: every event in the body is delivered.
    Success,
    /// 410: the endpoint is disabled, its messages wait.
    Gone,
    /// 429, or 503 with `Retry-After`: back off at least this long when given.
    Throttled(Option<Duration>),
    /// Another 4xx except 408: the events are parked.
    Rejected,
    /// 1xx, 3xx, 408, 5xx or a transport error: the endpoint backs off.
    Failure,
}

/// Classes a response status (`None` for a transport error) and its `Retry-After`.
pub fn classify(status: Option<u16>, retry_after: Option<Duration>) -> Class {
    match status {
        Some(200..=299) => Class::Success,
        Some(410) => Class::Gone,
        Some(429) => Class::Throttled(retry_after),
        Some(503) if retry_after.is_some() => Class::Throttled(retry_after),
        Some(408) => Class::Failure,
        Some(400..=499) => Class::Rejected,
        _ => Class::Failure,
    }
}

/// `min(initial * 2^(n-1), max) * factor` for the n-th consecutive failure (n ≥ 1), where
/// `factor` is drawn uniformly from [1.0, 1.2] by the caller.
pub fn backoff(n: i64, initial: Duration, max: Duration, factor: f64) -> Duration {
    let exponent = (n.max(1) - 1).min(1000) as i32;
    let base = Duration::try_from_secs_f64(initial.as_secs_f64() * 2f64.powi(exponent))
        .map_or(max, |d| d.min(max));
    base.mul_f64(factor.clamp(1.0, 1.2))
}

/// A uniform random factor in [1.0, 1.2] from the operating system's generator.
pub fn jitter() -> f64 {
    let mut b = [0u8; 4];
    crate::id::fill_random(&mut b);
    1.0 + 0.2 * (u32::from_le_bytes(b) as f64 / u32::MAX as f64)
}

/// Reads `Retry-After` as delay-seconds or an HTTP date, capped at 12 h. A date in the past
/// means no wait; an unreadable value is ignored.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    let delay = if let Ok(secs) = value.parse::<u64>() {
        Duration::from_secs(secs)
    } else {
        let when = httpdate::parse_http_date(value).ok()?;
        when.duration_since(now).unwrap_or(Duration::ZERO)
    };
    Some(delay.min(MAX_RETRY_AFTER))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_follow_the_outcome_table() {
        let ra = Some(Duration::from_secs(3));
        let rows = [
            (Some(200), None, Class::Success),
            (Some(204), None, Class::Success),
            (Some(299), None, Class::Success),
            (Some(410), None, Class::Gone),
            (Some(429), None, Class::Throttled(None)),
            (Some(429), ra, Class::Throttled(ra)),
            (Some(503), ra, Class::Throttled(ra)),
            (Some(503), None, Class::Failure),
            (Some(500), ra, Class::Failure),
            (Some(408), None, Class::Failure),
            (Some(400), None, Class::Rejected),
            (Some(404), None, Class::Rejected),
            (Some(422), None, Class::Rejected),
            (Some(101), None, Class::Failure),
            (Some(302), None, Class::Failure),
            (None, None, Class::Failure),
        ];
        for (status, retry_after, want) in rows {
            assert_eq!(
                classify(status, retry_after),
                want,
                "{status:?} {retry_after:?}"
            );
        }
    }

    #[test]
    fn backoff_doubles_then_caps() {
        let s = Duration::from_secs;
        let rows = [
            (1, 1.0, s(5)),
            (2, 1.0, s(10)),
            (3, 1.0, s(20)),
            (10, 1.0, s(2560)),
            (11, 1.0, s(3600)),
            (500, 1.0, s(3600)),
            (1, 1.2, s(6)),
            (11, 1.2, s(4320)),
            (0, 1.0, s(5)),
        ];
        for (n, factor, want) in rows {
            assert_eq!(
                backoff(n, s(5), s(3600), factor),
                want,
                "n={n} factor={factor}"
            );
        }
    }

    #[test]
    fn jitter_stays_in_range() {
        for _ in 0..1000 {
            let j = jitter();
            assert!((1.0..=1.2).contains(&j), "{j}");
        }
    }

    #[test]
    fn retry_after_forms() {
        let now = httpdate::parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT").unwrap();
        let rows = [
            ("120", Some(Duration::from_secs(120))),
            (" 0 ", Some(Duration::ZERO)),
            (
                "Sun, 06 Nov 1994 08:50:37 GMT",
                Some(Duration::from_secs(60)),
            ),
            ("Sun, 06 Nov 1994 08:00:00 GMT", Some(Duration::ZERO)),
            ("999999", Some(MAX_RETRY_AFTER)),
            ("soon", None),
            ("-5", None),
        ];
        for (value, want) in rows {
            assert_eq!(parse_retry_after(value, now), want, "{value}");
        }
    }
}
