//! Wall-clock time as the store keeps it (milliseconds since the Unix epoch, UTC) and as the
//! wire shows it (RFC 3339). Scheduling inside the process uses `Instant`; this is only for
//! what is stored or shown.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Milliseconds since the Unix epoch, now, rounded up: a time that is never earlier than the
/// present, for waits that must never end early.
pub fn now_ms_ceil() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros().div_ceil(1000) as i64)
        .unwrap_or(0)
}

fn system_time(ms: i64) -> SystemTime {
    if ms >= 0 {
        UNIX_EPOCH + Duration::from_millis(ms as u64)
    } else {
        UNIX_EPOCH
    }
}

/// RFC 3339 with whole seconds and a `Z` suffix, e.g. `2023-10-27T14:30:00Z`.
pub fn rfc3339(ms: i64) -> String {
    humantime::format_rfc3339_seconds(system_time(ms)).to_string()
}

/// RFC 3339 with milliseconds, for attempt times where ordering within a second matters.
pub fn rfc3339_ms(ms: i64) -> String {
    humantime::format_rfc3339_millis(system_time(ms)).to_string()
}

/// Parses RFC 3339 (`Z` or a numeric offset such as `+02:00`) into milliseconds since the epoch.
pub fn parse_rfc3339(text: &str) -> Option<i64> {
    let text = text.trim();
    // humantime accepts only UTC; a numeric offset is applied here.
    let (base, offset_secs) = match text.len().checked_sub(6).map(|i| (i, text.as_bytes()[i])) {
        Some((i, sign @ (b'+' | b'-'))) if text.as_bytes().get(i + 3) == Some(&b':') => {
            let hours: i64 = text[i + 1..i + 3].parse().ok()?;
            let minutes: i64 = text[i + 4..].parse().ok()?;
            if hours > 23 || minutes > 59 {
                return None;
            }
            let secs = hours * 3600 + minutes * 60;
            (
                format!("{}Z", &text[..i]),
                if sign == b'+' { secs } else { -secs },
            )
        }
        _ => (text.to_string(), 0),
    };
    let t = humantime::parse_rfc3339(&base).ok()?;
    let ms = t.duration_since(UNIX_EPOCH).ok()?.as_millis() as i64;
    Some(ms - offset_secs * 1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_and_parses() {
        assert_eq!(rfc3339(1_698_417_000_000), "2023-10-27T14:30:00Z");
        assert_eq!(rfc3339(1_698_417_000_999), "2023-10-27T14:30:00Z");
        let rows = [
            ("2023-10-27T14:30:00Z", Some(1_698_417_000_000)),
            ("2023-10-27T16:30:00+02:00", Some(1_698_417_000_000)),
            ("2023-10-27T13:30:00-01:00", Some(1_698_417_000_000)),
            ("2023-10-27T14:30:00.250Z", Some(1_698_417_000_250)),
            ("2023-10-27", None),
            ("yesterday", None),
        ];
        for (text, want) in rows {
            assert_eq!(parse_rfc3339(text), want, "{text}");
        }
    }
}
