//! Endpoints that heal (SPEC 4.4, last paragraph), as pure functions: when an endpoint
//! disabled for failing is probed, when its probing is over, and what a probe's answer means.
//! The dispatcher passes the time in and applies the outcome; the store keeps the schedule in
//! the endpoint's row, so that a restart picks it up. A failed probe is followed by the next
//! one `recovery_probe` later, not by a growing backoff: the interval is already slow, and
//! a consumer that comes back is found within one interval.

use std::time::Duration;

use super::policy::Class;
use crate::store::{QueuedMessage, Recovery, Verdict};

/// The schedule that starts when an endpoint is disabled for failing at `now` (wall ms): the
/// first probe `probe` later, and none after `recovery_for`. `None` when `recovery_for` is
/// zero, which turns probing off.
pub fn start(now: i64, probe: Duration, recovery_for: Duration) -> Option<Recovery> {
    if recovery_for.is_zero() {
        return None;
    }
    Some(Recovery {
        next_probe_at: now.saturating_add(millis(probe)),
        probes: 0,
        until: now.saturating_add(millis(recovery_for)),
    })
}

/// When the next probe is due (wall ms), or `None` once probing is over: the next probe would
/// come after `until`, or `now` is already past it (a probe that fell due while the process
/// was stopped is not sent after the end).
pub fn due(r: &Recovery, now: i64) -> Option<i64> {
    (r.next_probe_at <= r.until && now <= r.until).then_some(r.next_probe_at)
}

/// What a probe's answer means for the endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    /// A 2xx: enabled again, with the events it missed queued.
    Recovered,
    /// A 410: disabled as `gone`, and probed no more.
    Gone,
    /// Any other answer: still disabled, probed again on this schedule.
    Again(Recovery),
    /// Any other answer, and the next probe would come after `until`: probing ends and the
    /// endpoint stays disabled.
    Over,
}

impl Probe {
    /// The `outcome` label of `statussentry_recovery_probes_total`.
    pub fn as_str(self) -> &'static str {
        match self {
            Probe::Recovered => "recovered",
            Probe::Gone => "gone",
            Probe::Again(_) | Probe::Over => "failed",
        }
    }
}

/// What a probe answered with `class` at `now` (wall ms, the probe's end) means for an
/// endpoint on schedule `r`. A `Retry-After` (429, or 503 with one) longer than `probe`
/// pushes the next probe to it; otherwise the next is `probe` after this one ended.
pub fn after(r: Recovery, class: Class, now: i64, probe: Duration) -> Probe {
    let wait = match class {
        Class::Success => return Probe::Recovered,
        Class::Gone => return Probe::Gone,
        Class::Throttled(Some(d)) => d.max(probe),
        Class::Throttled(None) | Class::Rejected | Class::Failure => probe,
    };
    let next = Recovery {
        next_probe_at: now.saturating_add(millis(wait)),
        probes: r.probes + 1,
        until: r.until,
    };
    if due(&next, now).is_some() {
        Probe::Again(next)
    } else {
        Probe::Over
    }
}

/// What becomes of the message a probe carried: delivered on a 2xx; otherwise it stays
/// pending, still the oldest, for the next probe (a probe's 4xx parks nothing: the endpoint is
/// not taking requests yet), unless more than `retry_for` has passed since its `retry_from`,
/// which makes it `failed` as any failed attempt would.
pub fn verdict(class: Class, m: &QueuedMessage, now: i64, retry_for: Duration) -> Verdict {
    if class == Class::Success {
        Verdict::Delivered
    } else if now - m.retry_from > millis(retry_for) {
        Verdict::Failed
    } else {
        Verdict::Pending
    }
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MessageSeq;

    const NOW: i64 = 1_000_000_000_000;
    const HOUR: i64 = 3_600_000;

    fn r(next: i64, probes: i64, until: i64) -> Recovery {
        Recovery {
            next_probe_at: next,
            probes,
            until,
        }
    }

    #[test]
    fn a_schedule_starts_one_interval_on_unless_it_is_off() {
        let h = Duration::from_secs(3600);
        let rows = [
            (h, 720 * h, Some(r(NOW + HOUR, 0, NOW + 720 * HOUR))),
            (
                Duration::from_millis(150),
                Duration::from_secs(2),
                Some(r(NOW + 150, 0, NOW + 2000)),
            ),
            (h, Duration::ZERO, None),
        ];
        for (probe, recovery_for, want) in rows {
            assert_eq!(
                start(NOW, probe, recovery_for),
                want,
                "{probe:?} {recovery_for:?}"
            );
        }
    }

    #[test]
    fn a_probe_is_due_until_the_schedule_ends() {
        // (next probe, until, now, due)
        let rows = [
            (NOW + HOUR, NOW + 10 * HOUR, NOW, Some(NOW + HOUR)),
            (NOW - 5, NOW + 10 * HOUR, NOW, Some(NOW - 5)),
            (NOW + 10 * HOUR, NOW + 10 * HOUR, NOW, Some(NOW + 10 * HOUR)),
            (NOW + 10 * HOUR + 1, NOW + 10 * HOUR, NOW, None),
            // Due before the end, but the process was stopped past it.
            (NOW - HOUR, NOW - 1, NOW, None),
            (NOW, NOW, NOW, Some(NOW)),
        ];
        for (next, until, now, want) in rows {
            assert_eq!(due(&r(next, 3, until), now), want, "{next} {until} {now}");
        }
    }

    #[test]
    fn a_probe_s_answer_recovers_stops_or_schedules_the_next() {
        let h = Duration::from_secs(3600);
        let s = Duration::from_secs;
        let sched = r(NOW, 2, NOW + 5 * HOUR);
        let rows = [
            (Class::Success, NOW, Probe::Recovered),
            (Class::Gone, NOW, Probe::Gone),
            (
                Class::Failure,
                NOW,
                Probe::Again(r(NOW + HOUR, 3, NOW + 5 * HOUR)),
            ),
            (
                Class::Rejected,
                NOW,
                Probe::Again(r(NOW + HOUR, 3, NOW + 5 * HOUR)),
            ),
            (
                Class::Throttled(None),
                NOW,
                Probe::Again(r(NOW + HOUR, 3, NOW + 5 * HOUR)),
            ),
            // A Retry-After shorter than the interval does not hasten the next probe...
            (
                Class::Throttled(Some(s(60))),
                NOW,
                Probe::Again(r(NOW + HOUR, 3, NOW + 5 * HOUR)),
            ),
            // ...and a longer one delays it.
            (
                Class::Throttled(Some(2 * h)),
                NOW,
                Probe::Again(r(NOW + 2 * HOUR, 3, NOW + 5 * HOUR)),
            ),
            // The last probe that fits, and the one that would not.
            (
                Class::Failure,
                NOW + 4 * HOUR,
                Probe::Again(r(NOW + 5 * HOUR, 3, NOW + 5 * HOUR)),
            ),
            (Class::Failure, NOW + 4 * HOUR + 1, Probe::Over),
            // A success or a 410 counts even after the end.
            (Class::Success, NOW + 6 * HOUR, Probe::Recovered),
            (Class::Gone, NOW + 6 * HOUR, Probe::Gone),
        ];
        for (class, now, want) in rows {
            assert_eq!(after(sched, class, now, h), want, "{class:?} at {now}");
        }
        assert_eq!(Probe::Over.as_str(), "failed");
        assert_eq!(Probe::Again(sched).as_str(), "failed");
    }

    #[test]
    fn the_probe_s_message_is_delivered_kept_or_failed() {
        let retry_for = Duration::from_secs(72 * 3600);
        let message = |age: i64| QueuedMessage {
            seq: MessageSeq(1),
            event_seq: 1,
            event_id: "evt_x".into(),
            event_type: "incident.created".into(),
            attempts: 3,
            failures: 0,
            parked: false,
            retry_from: NOW - age,
            created_at: NOW - age,
        };
        let rows = [
            (Class::Success, 100 * HOUR, Verdict::Delivered),
            (Class::Failure, HOUR, Verdict::Pending),
            (Class::Rejected, HOUR, Verdict::Pending),
            (Class::Gone, HOUR, Verdict::Pending),
            (Class::Failure, 72 * HOUR, Verdict::Pending),
            (Class::Failure, 72 * HOUR + 1, Verdict::Failed),
            (Class::Throttled(None), 100 * HOUR, Verdict::Failed),
        ];
        for (class, age, want) in rows {
            assert_eq!(
                verdict(class, &message(age), NOW, retry_for),
                want,
                "{class:?} {age}"
            );
        }
    }
}
