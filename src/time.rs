//! The program's two clocks, and wall-clock time as the store keeps it (milliseconds since
//! the Unix epoch, UTC) and as the wire shows it (RFC 3339).
//!
//! Every time read in the program goes through here: `now_ms` (the wall clock) for what is
//! stored or shown, `mono` (the monotonic clock) for deadlines and waits, so that NTP
//! stepping the wall clock neither stalls a deadline nor ends one early. A wall-clock time
//! read back from the store becomes a deadline only through `deadline`, which bounds it.
//!
//! Debug builds carry a test clock, armed only by `STATUSSENTRY_TEST_CLOCK=<file>`: tests
//! write two offsets into the file, one that moves both clocks (simulated time passing) and
//! one that moves the wall clock alone (an NTP step). While it is armed, `wait` caps every
//! wait at a few milliseconds so that a jump takes effect at once. Release builds compile
//! none of it: both clocks are the system's.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Now on the monotonic clock: for deadlines and waits, never stored.
pub fn mono() -> Instant {
    let now = Instant::now();
    #[cfg(debug_assertions)]
    if let Some(clock) = test_clock::get() {
        return now + Duration::from_millis(clock.advance_ms());
    }
    now
}

/// Now on the wall clock, as `SystemTime` (for HTTP dates).
pub fn system_now() -> SystemTime {
    let now = SystemTime::now();
    #[cfg(debug_assertions)]
    if let Some(clock) = test_clock::get() {
        let shift = clock.wall_shift_ms();
        let magnitude = Duration::from_millis(shift.unsigned_abs());
        return if shift >= 0 {
            now + magnitude
        } else {
            now.checked_sub(magnitude).unwrap_or(UNIX_EPOCH)
        };
    }
    now
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    system_now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Milliseconds since the Unix epoch, now, rounded up: a time that is never earlier than the
/// present, for waits that must never end early.
pub fn now_ms_ceil() -> i64 {
    system_now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros().div_ceil(1000) as i64)
        .unwrap_or(0)
}

/// The monotonic deadline for a wall-clock time read from the store (a backoff or a parked
/// message's next attempt, written before a restart or by another thread). The wall clock
/// may have been stepped since it was written, so the wait is held to `bound`, the longest
/// the rule that set it can ask: a clock stepped back never stalls beyond the rule's own
/// bound, and a time already past is due now.
pub fn deadline(at_ms: i64, bound: Duration) -> Instant {
    let wait = at_ms.saturating_sub(now_ms()).max(0) as u64;
    mono() + Duration::from_millis(wait).min(bound)
}

/// How long to block in one wait that should last `d`. Callers re-check their deadline when
/// it ends. With the test clock armed it is at most a few milliseconds, so that simulated
/// time that jumps is noticed at once; otherwise it is `d`.
pub fn wait(d: Duration) -> Duration {
    #[cfg(debug_assertions)]
    if test_clock::get().is_some() {
        return d.min(test_clock::POLL);
    }
    d
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

/// Parses an RFC 3339 date-time (`2023-10-27T14:30:00Z`; a fraction, lower-case `t` and `z`,
/// or a numeric offset such as `+02:00` allowed) into milliseconds since the epoch. Every year
/// RFC 3339 can write is read, 0000 to 9999: a time before 1970 is a negative number, not a
/// refusal. Digits of a fraction past the millisecond are dropped.
pub fn parse_rfc3339(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    let number = |range: std::ops::Range<usize>| -> Option<i64> {
        let digits = b.get(range)?;
        digits
            .iter()
            .all(u8::is_ascii_digit)
            .then(|| digits.iter().fold(0, |n, d| n * 10 + i64::from(d - b'0')))
    };
    let separators = [(4, b'-'), (7, b'-'), (13, b':'), (16, b':')];
    if b.len() < 20 || separators.iter().any(|&(i, c)| b[i] != c) || !matches!(b[10], b'T' | b't') {
        return None;
    }
    let (year, month, day) = (number(0..4)?, number(5..7)?, number(8..10)?);
    let (hour, minute, second) = (number(11..13)?, number(14..16)?, number(17..19)?);
    let mut i = 19;
    let mut ms = 0;
    if b[i] == b'.' {
        let start = i + 1;
        i = start;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        if i == start {
            return None;
        }
        for (d, scale) in b[start..i].iter().zip([100, 10, 1]) {
            ms += i64::from(d - b'0') * scale;
        }
    }
    let offset_secs = match &b[i..] {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), _, _, b':', _, _] => {
            let (h, m) = (number(i + 1..i + 3)?, number(i + 4..i + 6)?);
            if h > 23 || m > 59 {
                return None;
            }
            if *sign == b'+' {
                h * 3600 + m * 60
            } else {
                -(h * 3600 + m * 60)
            }
        }
        _ => return None,
    };
    let leap_year = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let days_in_month = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap_year => 29,
        2 => 28,
        _ => return None,
    };
    // A leap second (:60) is allowed, as RFC 3339 allows it, and counts into the next minute.
    if !(1..=days_in_month).contains(&day) || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    // Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's days_from_civil).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let year_of_era = y - era * 400;
    let day_of_year = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    let days = era * 146_097 + day_of_era - 719_468;
    Some((days * 86_400 + hour * 3600 + minute * 60 + second - offset_secs) * 1000 + ms)
}

/// The test clock of debug builds (see the module's doc). The file holds
/// `<advance_ms> <wall_step_ms>`; whichever clock read finds it unread for `POLL` reads it
/// again (no thread of its own: every wait ends within `POLL` while the clock is armed, so
/// some loop always reads the clock soon). Once applied, its content is copied to
/// `<file>.ack`, so a test knows the process has seen a jump. Simulated advance only grows:
/// the monotonic clock never goes back.
#[cfg(debug_assertions)]
mod test_clock {
    use std::path::PathBuf;
    use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
    use std::sync::{Mutex, OnceLock};
    use std::time::{Duration, Instant};

    /// The environment variable that arms the test clock.
    const VAR: &str = "STATUSSENTRY_TEST_CLOCK";
    /// How often the file is read, and the longest wait while the clock is armed.
    pub const POLL: Duration = Duration::from_millis(5);

    pub struct TestClock {
        path: PathBuf,
        origin: Instant,
        /// When the file was last read, in ms since `origin`.
        polled: AtomicU64,
        /// The file's text as last applied.
        applied: Mutex<String>,
        advance: AtomicU64,
        step: AtomicI64,
    }

    impl TestClock {
        pub fn advance_ms(&self) -> u64 {
            self.advance.load(Ordering::SeqCst)
        }

        /// What is added to the real wall clock: simulated time plus the NTP step.
        pub fn wall_shift_ms(&self) -> i64 {
            (self.advance_ms() as i64).saturating_add(self.step.load(Ordering::SeqCst))
        }

        /// Reads the file when it has not been read for `POLL`; one reader at a time.
        fn poll(&self) {
            let now = self.origin.elapsed().as_millis() as u64;
            let polled = self.polled.load(Ordering::SeqCst);
            if now < polled + POLL.as_millis() as u64
                || self
                    .polled
                    .compare_exchange(polled, now, Ordering::SeqCst, Ordering::SeqCst)
                    .is_err()
            {
                return;
            }
            self.apply();
        }

        /// Applies the file when it changed since it was last applied, then acknowledges it.
        fn apply(&self) {
            let Ok(text) = std::fs::read_to_string(&self.path) else {
                return;
            };
            let mut applied = self.applied.lock().unwrap_or_else(|p| p.into_inner());
            if text == *applied {
                return;
            }
            let mut numbers = text.split_whitespace();
            let (Some(Ok(advance)), Some(Ok(step))) = (
                numbers.next().map(str::parse::<u64>),
                numbers.next().map(str::parse::<i64>),
            ) else {
                return;
            };
            self.advance.fetch_max(advance, Ordering::SeqCst);
            self.step.store(step, Ordering::SeqCst);
            let mut ack = self.path.clone().into_os_string();
            ack.push(".ack");
            let mut tmp = ack.clone();
            tmp.push(".tmp");
            if std::fs::write(&tmp, text.trim()).is_ok() && std::fs::rename(&tmp, &ack).is_ok() {
                *applied = text;
            }
        }
    }

    static CLOCK: OnceLock<Option<TestClock>> = OnceLock::new();

    pub fn get() -> Option<&'static TestClock> {
        let clock = CLOCK
            .get_or_init(|| {
                let clock = TestClock {
                    path: PathBuf::from(std::env::var_os(VAR)?),
                    origin: Instant::now(),
                    polled: AtomicU64::new(0),
                    applied: Mutex::new(String::new()),
                    advance: AtomicU64::new(0),
                    step: AtomicI64::new(0),
                };
                // Applied once before anything reads the clock, so a process started with
                // an offset never sees time go back.
                clock.apply();
                log::warn!("the test clock is armed: time is driven by a file");
                Some(clock)
            })
            .as_ref()?;
        clock.poll();
        Some(clock)
    }
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
            ("2023-10-27t14:30:00.2509z", Some(1_698_417_000_250)),
            ("1969-12-31T23:59:59Z", Some(-1000)),
            ("0001-01-01T00:00:00Z", Some(-62_135_596_800_000)),
            ("0020-01-01T00:15:46.73+19:15", Some(-61_536_135_553_270)),
            ("2024-02-29T12:00:00Z", Some(1_709_208_000_000)),
            ("9999-12-31T23:59:59.999Z", Some(253_402_300_799_999)),
            ("2016-12-31T23:59:60Z", Some(1_483_228_800_000)),
            ("2023-02-29T12:00:00Z", None),
            ("2023-13-01T00:00:00Z", None),
            ("2023-10-27T24:00:00Z", None),
            ("2023-10-27T14:30:00+24:00", None),
            ("2023-10-27T14:30:00.Z", None),
            ("2023-10-27T14:30:00", None),
            ("2023-10-27T14:30:00Zx", None),
            (" 2023-10-27T14:30:00Z", None),
            ("2023-10-27 14:30:00Z", None),
            ("+2023-10-27T14:30:00Z", None),
            ("2023-10-27", None),
            ("yesterday", None),
            ("2023-10-27T14:30:00+0é:00", None),
        ];
        for (text, want) in rows {
            assert_eq!(parse_rfc3339(text), want, "{text}");
        }
    }

    #[test]
    fn a_stored_time_becomes_a_bounded_deadline() {
        let bound = Duration::from_secs(3600);
        let before = mono();
        let past = deadline(now_ms() - 5_000, bound);
        assert!(past >= before && past <= mono(), "a past time is due now");
        let soon = deadline(now_ms() + 10_000, bound);
        assert!(soon >= before + Duration::from_millis(9_000));
        assert!(soon <= mono() + Duration::from_millis(10_000));
        // A time far ahead (the wall clock was stepped back since it was written) waits
        // only as long as the rule that set it could ask.
        let far = deadline(now_ms() + 5 * 3600 * 1000, bound);
        assert!(far <= mono() + bound);
        assert!(far >= before + bound - Duration::from_secs(1));
    }
}
