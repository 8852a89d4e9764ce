//! The SLA rule of SPEC 7 as pure functions: the error budget over a rolling window, the
//! recent failure ratio, whether a breach is projected within the 24 h horizon, and when the
//! one warning may fire again. No storage, no clock: callers pass counts and times in.

use serde_json::{Value, json};

/// How far ahead a breach is looked for.
pub const HORIZON_SECS: f64 = 24.0 * 3600.0;
/// A recent ratio counts only when at least this many checks back it.
pub const MIN_CHECKS: i64 = 10;
/// After a warning, the condition must have been false this long before another may fire.
pub const REARM_MS: i64 = 3600 * 1000;
/// The recent periods whose failure ratios are compared.
pub const RECENT_SHORT_MS: i64 = 3600 * 1000;
pub const RECENT_LONG_MS: i64 = 6 * 3600 * 1000;

/// Check history is kept at three resolutions as it ages (`store/checks.rs`): every check
/// for `RECENT_LONG_MS` (what the recent ratios read, so they are exact), then one row per
/// minute until `MINUTE_ROWS_MS`, then one row per hour for the rest of the window.
pub const MINUTE_ROWS_MS: i64 = crate::store::MINUTE_ROWS_MS;
// The recent ratios are exact only while the store keeps raw checks at least that long.
const _: () = assert!(RECENT_LONG_MS <= crate::store::RAW_CHECKS_MS);
const MINUTE_MS: i64 = 60 * 1000;
const HOUR_MS: i64 = 3600 * 1000;

/// Where a window of `window_ms` ending at `now_ms` starts, as the history can count it: a
/// row of minutes or hours counts whole or not at all, so the start is rounded up to the
/// resolution of the rows it falls in (none for a window within the raw checks' six hours,
/// the minute within a day, the hour beyond). Every resolution's rows begin on those
/// boundaries, so the rounded start counts the same checks whether or not they have been
/// folded yet.
///
/// This is the one error downsampling brings into the rule: the window's figures are those
/// of a window shorter by less than one minute (windows of a day or less) or one hour
/// (longer windows) at its old end. A check leaves the window when its hour's start does,
/// up to an hour before it is `window` old, never later. Over a 30-day window of 60 s
/// checks that is at most 60 of 43,200 checks: uptime off by at most k / (n − k) (0.14
/// percentage points), and the budget spent understated by at most what the failed checks
/// of that hour spent (< 1 h + one interval), only while that hour is the window's oldest.
/// The 1 h and 6 h ratios, and so the burn rate, are exact.
pub fn window_start(now_ms: i64, window_ms: i64) -> i64 {
    let start = now_ms - window_ms;
    let resolution = if window_ms <= RECENT_LONG_MS {
        return start;
    } else if window_ms <= MINUTE_ROWS_MS {
        MINUTE_MS
    } else {
        HOUR_MS
    };
    ceil_to(start, resolution)
}

/// `t` rounded up to a multiple of `step` (both in ms since the epoch, `step` > 0).
fn ceil_to(t: i64, step: i64) -> i64 {
    t.div_euclid(step) * step + if t.rem_euclid(step) == 0 { 0 } else { step }
}

/// The counts and history the rule reads, and the warning's arming, are plain data of the
/// monitor's rows, kept by the store; the rule below decides over them.
pub use crate::store::{CheckCounts as Counts, CheckHistory as History, SlaArming as Arming};

impl Counts {
    /// The failure ratio, when enough checks back it.
    fn ratio(self) -> Option<f64> {
        (self.checks >= MIN_CHECKS).then(|| self.failures as f64 / self.checks as f64)
    }
}

impl History {
    /// Adds one check that is not yet in the counts (it happened now, so it is in every
    /// period).
    pub fn with_check(mut self, ok: bool, interval_secs: f64) -> History {
        let failed = i64::from(!ok);
        for c in [&mut self.window, &mut self.last_1h, &mut self.last_6h] {
            c.checks += 1;
            c.failures += failed;
        }
        if !ok {
            self.spent_secs += interval_secs;
        }
        self
    }
}

/// The SLA's state, as `GET /monitors/{id}/sla` shows it and the warning carries it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Assessment {
    /// (100 − target)% of the window, in seconds.
    pub budget_secs: f64,
    /// The budget less what the window's failed checks spent; negative once breached.
    pub budget_left_secs: f64,
    /// Successful checks / all checks in the window, in percent; `None` before any check.
    pub uptime_pct: Option<f64>,
    pub ratio_1h: Option<f64>,
    pub ratio_6h: Option<f64>,
    /// The larger of the two recent ratios that count.
    pub recent_ratio: Option<f64>,
    /// `recent_ratio` / (1 − target/100).
    pub burn_rate: Option<f64>,
    /// Seconds from now until the budget runs out at the recent ratio, while budget is left
    /// and failures happen.
    pub breach_in_secs: Option<f64>,
    /// The warning's condition: budget left, and the recent ratio spends it within 24 h.
    pub at_risk: bool,
}

/// Applies SPEC 7 to a target (percent, in (0, 100)), a window in days and the history.
pub fn assess(target_pct: f64, window_days: f64, h: &History) -> Assessment {
    let allowed = 1.0 - target_pct / 100.0;
    let budget_secs = allowed * window_days * 86_400.0;
    let budget_left_secs = budget_secs - h.spent_secs;
    let ratio_1h = h.last_1h.ratio();
    let ratio_6h = h.last_6h.ratio();
    let recent_ratio = match (ratio_1h, ratio_6h) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    };
    let burn_rate = recent_ratio.map(|r| r / allowed);
    let breach_in_secs = match recent_ratio {
        Some(r) if r > 0.0 && budget_left_secs > 0.0 => Some(budget_left_secs / r),
        _ => None,
    };
    let at_risk = budget_left_secs > 0.0
        && recent_ratio.is_some_and(|r| r > 0.0 && r * HORIZON_SECS >= budget_left_secs);
    let uptime_pct = (h.window.checks > 0)
        .then(|| (h.window.checks - h.window.failures) as f64 * 100.0 / h.window.checks as f64);
    Assessment {
        budget_secs,
        budget_left_secs,
        uptime_pct,
        ratio_1h,
        ratio_6h,
        recent_ratio,
        burn_rate,
        breach_in_secs,
        at_risk,
    }
}

impl Arming {
    pub const NEW: Arming = Arming {
        armed: true,
        false_since: None,
    };
}

/// One step of the warning's arming: returns the new state and whether a warning fires now.
/// A warning fires when armed and at risk; it re-arms once the condition has been false for
/// a whole hour.
pub fn arm(prev: Arming, at_risk: bool, now_ms: i64) -> (Arming, bool) {
    match (prev.armed, at_risk) {
        (true, true) => (
            Arming {
                armed: false,
                false_since: None,
            },
            true,
        ),
        (true, false) => (Arming::NEW, false),
        (false, true) => (
            Arming {
                armed: false,
                false_since: None,
            },
            false,
        ),
        (false, false) => {
            let since = prev.false_since.unwrap_or(now_ms);
            if now_ms - since >= REARM_MS {
                (Arming::NEW, false)
            } else {
                (
                    Arming {
                        armed: false,
                        false_since: Some(since),
                    },
                    false,
                )
            }
        }
    }
}

fn round(x: f64, places: i32) -> f64 {
    let f = 10f64.powi(places);
    (x * f).round() / f
}

/// A number as JSON: whole numbers without a fraction (`30`, not `30.0`).
pub fn number(x: f64) -> Value {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        Value::from(x as i64)
    } else {
        Value::from(x)
    }
}

/// The `data` of `sla.breach_warning` (SPEC 2.1).
pub fn warning_data(
    monitor_id: &str,
    monitor_name: &str,
    target_pct: f64,
    window_days: f64,
    a: &Assessment,
    now_ms: i64,
) -> Value {
    let remaining_pct = if a.budget_secs > 0.0 {
        (a.budget_left_secs / a.budget_secs * 100.0).max(0.0)
    } else {
        0.0
    };
    let breach_at = now_ms + (a.breach_in_secs.unwrap_or(0.0) * 1000.0).round() as i64;
    json!({
        "monitor_id": monitor_id,
        "monitor_name": monitor_name,
        "sla_target": number(target_pct),
        "window_days": number(window_days),
        "current_uptime": number(round(a.uptime_pct.unwrap_or(100.0), 4)),
        "error_budget_remaining_pct": number(round(remaining_pct, 2)),
        "burn_rate": number(round(a.burn_rate.unwrap_or(0.0), 2)),
        "projected_breach_at": crate::time::rfc3339(breach_at),
        "horizon_hours": 24,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(checks: i64, failures: i64) -> Counts {
        Counts { checks, failures }
    }

    /// One row: target, window days, spent seconds, last hour, last 6 h → at risk, r.
    struct Row {
        what: &'static str,
        target: f64,
        days: f64,
        spent: f64,
        h1: Counts,
        h6: Counts,
        at_risk: bool,
        r: Option<f64>,
    }

    #[test]
    fn the_rule_table() {
        let rows = [
            // SPEC 7's worked example: 99.9 % over 30 days of 60 s checks is a 2592 s budget;
            // 40 min already failed leaves 192 s; one failure in the last 360 checks is
            // r ≈ 0.28 %, 240 s a day ≥ 192 s: warning.
            Row {
                what: "spec example, one failure in 6 h",
                target: 99.9,
                days: 30.0,
                spent: 2400.0,
                h1: counts(60, 0),
                h6: counts(360, 1),
                at_risk: true,
                r: Some(1.0 / 360.0),
            },
            Row {
                what: "spec example, no recent failure",
                target: 99.9,
                days: 30.0,
                spent: 2400.0,
                h1: counts(60, 0),
                h6: counts(360, 0),
                at_risk: false,
                r: Some(0.0),
            },
            Row {
                what: "the last hour's ratio wins when larger",
                target: 99.9,
                days: 30.0,
                spent: 2400.0,
                h1: counts(60, 1),
                h6: counts(360, 1),
                at_risk: true,
                r: Some(1.0 / 60.0),
            },
            Row {
                what: "the 6 h ratio wins when larger",
                target: 99.9,
                days: 30.0,
                spent: 0.0,
                h1: counts(60, 0),
                h6: counts(360, 180),
                at_risk: true,
                r: Some(0.5),
            },
            Row {
                what: "more budget left than a day at r spends",
                target: 99.9,
                days: 30.0,
                spent: 2300.0,
                h1: counts(60, 0),
                h6: counts(360, 1),
                at_risk: false,
                r: Some(1.0 / 360.0),
            },
            Row {
                what: "fewer than 10 checks in either period count for nothing",
                target: 99.9,
                days: 30.0,
                spent: 2400.0,
                h1: counts(9, 9),
                h6: counts(9, 9),
                at_risk: false,
                r: None,
            },
            Row {
                what: "the last hour alone, at exactly 10 checks",
                target: 99.9,
                days: 30.0,
                spent: 2400.0,
                h1: counts(10, 1),
                h6: counts(10, 1),
                at_risk: true,
                r: Some(0.1),
            },
            Row {
                what: "budget gone: no warning (a breach, not a projection)",
                target: 99.9,
                days: 30.0,
                spent: 2600.0,
                h1: counts(60, 30),
                h6: counts(360, 30),
                at_risk: false,
                r: Some(0.5),
            },
            Row {
                what: "fractional window: 0.5 day at 99 % is 432 s",
                target: 99.0,
                days: 0.5,
                spent: 400.0,
                h1: counts(3600, 2),
                h6: counts(3600, 2),
                at_risk: true,
                r: Some(2.0 / 3600.0),
            },
            Row {
                what: "a target failing every fifth 1 s check, 1-day window at 99.9 %",
                target: 99.9,
                days: 1.0,
                spent: 2.0,
                h1: counts(10, 2),
                h6: counts(10, 2),
                at_risk: true,
                r: Some(0.2),
            },
            Row {
                what: "a healthy target",
                target: 99.9,
                days: 1.0,
                spent: 0.0,
                h1: counts(20, 0),
                h6: counts(20, 0),
                at_risk: false,
                r: Some(0.0),
            },
        ];
        for row in rows {
            let h = History {
                window: row.h6,
                spent_secs: row.spent,
                last_1h: row.h1,
                last_6h: row.h6,
            };
            let a = assess(row.target, row.days, &h);
            assert_eq!(a.at_risk, row.at_risk, "{}: {a:?}", row.what);
            assert_eq!(a.recent_ratio, row.r, "{}: {a:?}", row.what);
        }
    }

    /// One row per resolution the window's old end can fall in, on and off a boundary.
    #[test]
    fn the_window_starts_on_a_boundary_of_the_rows_it_falls_in() {
        let hour = 3_600_000;
        let day = 24 * hour;
        let now = 1_800_000_000_000 + 1_234_567; // 20 min 34.567 s past an hour
        let rows = [
            ("6 h: raw checks, exact", 6 * hour, now - 6 * hour),
            ("1 h: raw checks, exact", hour, now - hour),
            (
                "6 h 1 ms: up to the minute",
                6 * hour + 1,
                now - 6 * hour - 1 - 34_566 + 60_000,
            ),
            ("1 day: up to the minute", day, now - day - 34_567 + 60_000),
            (
                "1 day 1 ms: up to the hour",
                day + 1,
                now - day - 1 - 1_234_566 + hour,
            ),
            (
                "30 days: up to the hour",
                30 * day,
                now - 30 * day - 1_234_567 + hour,
            ),
            (
                "30 days + 1 234 567 ms: on an hour",
                30 * day + 1_234_567,
                now - 30 * day - 1_234_567,
            ),
        ];
        for (what, window, start) in rows {
            assert_eq!(window_start(now, window), start, "{what}");
            assert!(
                start >= now - window,
                "{what}: never longer than the window"
            );
        }
    }

    #[test]
    fn the_spec_example_figures() {
        let h = History {
            window: counts(43_200, 40),
            spent_secs: 2400.0,
            last_1h: counts(60, 0),
            last_6h: counts(360, 1),
        };
        let a = assess(99.9, 30.0, &h);
        assert!((a.budget_secs - 2592.0).abs() < 1e-6, "{a:?}");
        assert!((a.budget_left_secs - 192.0).abs() < 1e-6, "{a:?}");
        // 192 s at one failed minute in 360: 69 120 s, 19.2 h, inside the horizon.
        assert!((a.breach_in_secs.unwrap() - 69_120.0).abs() < 1e-3, "{a:?}");
        assert!((a.burn_rate.unwrap() - 2.7778).abs() < 1e-3, "{a:?}");
        assert!((a.uptime_pct.unwrap() - 99.9074).abs() < 1e-3, "{a:?}");
        let data = warning_data("mon_1", "API", 99.9, 30.0, &a, 1_698_417_000_000);
        assert_eq!(data["window_days"], json!(30));
        assert_eq!(data["horizon_hours"], json!(24));
        assert_eq!(data["error_budget_remaining_pct"], json!(7.41));
        assert_eq!(data["projected_breach_at"], "2023-10-28T09:42:00Z");
        crate::event::validate(crate::event::EventType::SlaBreachWarning, &data).unwrap();
    }

    #[test]
    fn a_new_check_counts_everywhere() {
        let h = History::default()
            .with_check(false, 60.0)
            .with_check(true, 60.0);
        assert_eq!(h.window, counts(2, 1));
        assert_eq!(h.last_1h, counts(2, 1));
        assert_eq!(h.last_6h, counts(2, 1));
        assert_eq!(h.spent_secs, 60.0);
    }

    #[test]
    fn one_warning_then_rearm_after_an_hour_false() {
        let minute = 60_000;
        // (minute, at risk, fires)
        let steps: [(i64, bool, bool); 9] = [
            (0, false, false),
            (1, true, true),
            (2, true, false),
            (3, false, false),
            (50, false, false),
            // true again before the hour is up: the hour starts over
            (60, true, false),
            (61, false, false),
            (121, false, false),
            (122, true, true),
        ];
        let mut state = Arming::NEW;
        for (at, risk, fires) in steps {
            let (next, fired) = arm(state, risk, at * minute);
            assert_eq!(fired, fires, "minute {at}: {state:?} → {next:?}");
            state = next;
        }
        // The re-arm itself happened at minute 121, exactly an hour after 61.
        let (s, _) = arm(
            Arming {
                armed: false,
                false_since: Some(0),
            },
            false,
            REARM_MS - 1,
        );
        assert!(!s.armed);
        let (s, _) = arm(s, false, REARM_MS);
        assert!(s.armed);
    }
}
