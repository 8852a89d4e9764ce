//! A monitor's pure rules (SPEC 7): the UP/DOWN state machine with its two thresholds, the
//! `expected_status` list, the limits on a monitor's settings and the `data` of
//! `monitor.status_change`. No storage, no network, no clock.

use serde_json::{Value, json};

use crate::net::Timings;

/// The monitor's stored vocabulary and state are plain data of its row, kept by the store;
/// the rules below decide over them.
pub use crate::store::{MonitorKind as Kind, MonitorState as State, MonitorStatus as Status};

impl State {
    /// A new monitor's state; the store's column defaults say the same.
    #[cfg(test)]
    pub const NEW: State = State {
        status: Status::Up,
        failures: 0,
        successes: 0,
    };
}

/// The state after one check. An UP monitor goes DOWN when `failures_before_down` checks
/// in a row have failed; a DOWN monitor goes UP when `successes_before_up` in a row have
/// succeeded. A change of `status` is a transition.
pub fn step(s: State, ok: bool, failures_before_down: i64, successes_before_up: i64) -> State {
    if ok {
        let successes = s.successes.saturating_add(1);
        let status = if s.status == Status::Down && successes >= successes_before_up {
            Status::Up
        } else {
            s.status
        };
        State {
            status,
            failures: 0,
            successes,
        }
    } else {
        let failures = s.failures.saturating_add(1);
        let status = if s.status == Status::Up && failures >= failures_before_down {
            Status::Down
        } else {
            s.status
        };
        State {
            status,
            failures,
            successes: 0,
        }
    }
}

/// Which response codes count as up: codes and ranges such as `200-299,301`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expected(Vec<(u16, u16)>);

/// The most parts an `expected_status` list may have.
const MAX_PARTS: usize = 32;

impl Expected {
    pub const DEFAULT: &'static str = "200-299";

    pub fn parse(text: &str) -> Result<Expected, String> {
        let wrong = || {
            format!(
                "expected_status must be status codes and ranges from 100 to 599 such as \"200-299,301\", got {text:?}"
            )
        };
        let code = |s: &str| -> Result<u16, String> {
            match s.trim().parse::<u16>() {
                Ok(c @ 100..=599) => Ok(c),
                _ => Err(wrong()),
            }
        };
        let mut parts = Vec::new();
        for part in text.split(',') {
            let (lo, hi) = match part.split_once('-') {
                Some((a, b)) => (code(a)?, code(b)?),
                None => {
                    let c = code(part)?;
                    (c, c)
                }
            };
            if lo > hi {
                return Err(wrong());
            }
            parts.push((lo, hi));
        }
        if parts.is_empty() || parts.len() > MAX_PARTS {
            return Err(wrong());
        }
        Ok(Expected(parts))
    }

    pub fn contains(&self, code: u16) -> bool {
        self.0.iter().any(|(lo, hi)| (*lo..=*hi).contains(&code))
    }
}

impl std::fmt::Display for Expected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, (lo, hi)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            if lo == hi {
                write!(f, "{lo}")?;
            } else {
                write!(f, "{lo}-{hi}")?;
            }
        }
        Ok(())
    }
}

/// Limits on a monitor's settings.
pub const MAX_INTERVAL_SECS: i64 = 86_400;
/// A check holds a checker thread for at most this long, whatever the interval.
pub const MAX_TIMEOUT_MS: i64 = 60_000;
pub const MAX_THRESHOLD: i64 = 100;
pub const MAX_WINDOW_DAYS: f64 = 366.0;
pub const MAX_NAME: usize = 200;
pub const DEFAULT_WINDOW_DAYS: f64 = 30.0;

/// The rule that ties two settings together: a check must end before the next is due.
pub fn check_timeout(timeout_ms: i64, interval_ms: i64) -> Result<(), String> {
    if timeout_ms >= interval_ms {
        Err(format!(
            "timeout_ms must be below the interval ({interval_ms} ms), got {timeout_ms}"
        ))
    } else {
        Ok(())
    }
}

/// The `region` a push monitor's checks are reported from: its checks are made by whoever
/// pings it, not from this appliance's region (SPEC 7).
pub const PUSH_REGION: &str = "push";
/// The error of a push monitor's check when no ping came within interval + grace.
pub const NO_PING: &str = "no_ping";
/// The error of a push monitor's check made by `/ping/{token}/fail`.
pub const REPORTED_FAILURE: &str = "reported_failure";
/// The longest grace a push monitor takes past its interval.
pub const MAX_GRACE_SECS: i64 = 86_400;
/// A push monitor's grace when none is given.
pub const DEFAULT_GRACE_SECS: i64 = 60;

/// A push check: a ping (ok), an explicit failure, or a missed ping, at `at`.
pub fn push_outcome(at: i64, error: Option<&'static str>) -> Outcome {
    Outcome {
        at,
        ok: error.is_none(),
        status_code: None,
        response_time_ms: 0,
        first_byte_ms: None,
        timings: None,
        error,
    }
}

/// What one check found.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// Wall-clock start, ms since the epoch.
    pub at: i64,
    pub ok: bool,
    pub status_code: Option<u16>,
    /// From the start of the request to the end of the (at most 4 KiB read of the) body.
    pub response_time_ms: i64,
    /// From the start of the request to the response head, when one arrived.
    pub first_byte_ms: Option<i64>,
    /// The request's phases (SPEC 4.5); `None` for a push check, which makes no request.
    pub timings: Option<Timings>,
    /// `unexpected_status`, or the transport error's name (SPEC 7).
    pub error: Option<&'static str>,
}

/// What `monitor.status_change` says about one monitor (SPEC 2.1).
pub struct Change<'a> {
    pub monitor_id: &'a str,
    pub monitor_name: &'a str,
    pub url: &'a str,
    pub region: &'a str,
    pub previous: Status,
    pub current: Status,
    pub checked_at_ms: i64,
    pub status_code: Option<i64>,
    pub response_time_ms: i64,
    /// The check's phases, which say where its time went (a slow name lookup, connection,
    /// TLS handshake or answer); `None` for a push check.
    pub timings: Option<Timings>,
    pub error: Option<&'a str>,
    pub consecutive_failures: i64,
}

/// The `data` of `monitor.status_change`, with the metrics of the check that caused it.
pub fn status_change_data(c: &Change) -> Value {
    json!({
        "monitor_id": c.monitor_id,
        "monitor_name": c.monitor_name,
        "url": c.url,
        "region": c.region,
        "previous_status": c.previous.as_str(),
        "status": c.current.as_str(),
        "checked_at": crate::time::rfc3339(c.checked_at_ms),
        "metrics": {
            "status_code": c.status_code,
            "response_time_ms": c.response_time_ms,
            "timings": c.timings.as_ref().map(Timings::as_json),
            "error": c.error,
            "consecutive_failures": c.consecutive_failures,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_state_machine() {
        // (checks as ok/fail, failures_before_down, successes_before_up, status after each)
        let rows: [(&str, i64, i64, &str); 8] = [
            ("+++", 3, 1, "UUU"),
            ("--", 3, 1, "UU"),
            ("---", 3, 1, "UUD"),
            ("--+--", 3, 1, "UUUUU"),
            ("-+", 1, 1, "DU"),
            ("---++", 3, 2, "UUDDU"),
            ("---+-++", 3, 2, "UUDDDDU"),
            ("-----+", 2, 1, "UDDDDU"),
        ];
        for (checks, down, up, want) in rows {
            let mut s = State::NEW;
            let mut got = String::new();
            for c in checks.chars() {
                s = step(s, c == '+', down, up);
                got.push(if s.status == Status::Up { 'U' } else { 'D' });
            }
            assert_eq!(got, want, "{checks} with {down}/{up}");
        }
    }

    #[test]
    fn counters_run_on_and_reset() {
        let mut s = State::NEW;
        for _ in 0..5 {
            s = step(s, false, 3, 1);
        }
        assert_eq!(
            s,
            State {
                status: Status::Down,
                failures: 5,
                successes: 0
            }
        );
        s = step(s, true, 3, 1);
        assert_eq!(
            s,
            State {
                status: Status::Up,
                failures: 0,
                successes: 1
            }
        );
    }

    #[test]
    fn expected_status_lists() {
        let rows: [(&str, Option<&str>); 9] = [
            ("200-299", Some("200-299")),
            ("200-299,301", Some("200-299,301")),
            (" 204 , 300-302", Some("204,300-302")),
            ("200", Some("200")),
            ("", None),
            ("299-200", None),
            ("99", None),
            ("600", None),
            ("2xx", None),
        ];
        for (text, want) in rows {
            let got = Expected::parse(text).map(|e| e.to_string()).ok();
            assert_eq!(got.as_deref(), want, "{text:?}");
        }
        let e = Expected::parse("200-299,301").unwrap();
        assert!(e.contains(204) && e.contains(301));
        assert!(!e.contains(302) && !e.contains(500));
    }

    #[test]
    fn timeouts_stay_below_the_interval() {
        assert!(check_timeout(999, 1000).is_ok());
        assert!(check_timeout(1000, 1000).is_err());
    }

    #[test]
    fn change_data_validates() {
        let data = status_change_data(&Change {
            monitor_id: "mon_0123456789abcdef",
            monitor_name: "API",
            url: "https://api.example.com/health",
            region: "eu-west",
            previous: Status::Up,
            current: Status::Down,
            checked_at_ms: 1_698_417_000_000,
            status_code: None,
            response_time_ms: 5000,
            timings: Some(Timings {
                dns: Some(std::time::Duration::from_millis(4)),
                connect: Some(std::time::Duration::from_millis(30)),
                tls: None,
                ttfb: None,
                total: std::time::Duration::from_millis(5000),
                reused: false,
            }),
            error: Some("timeout"),
            consecutive_failures: 3,
        });
        assert_eq!(data["metrics"]["status_code"], Value::Null);
        // The connect time is known, and so where the time of a timeout went.
        assert_eq!(data["metrics"]["timings"]["connect_ms"], 30.0);
        assert_eq!(data["metrics"]["timings"]["ttfb_ms"], Value::Null);
        assert_eq!(data["checked_at"], "2023-10-27T14:30:00Z");
        crate::event::validate(crate::event::EventType::MonitorStatusChange, &data).unwrap();
    }
}
