//! The delivery rules of SPEC 4.4 as pure functions: how a response is classed, what one
//! request's answer means for its endpoint and each of its messages (`decide`), how long to
//! back off, how `Retry-After` is read. No clock, no randomness, no I/O: the dispatcher
//! passes the time and the random factors in and applies the decision, so every rule has a
//! table test.

use std::time::{Duration, SystemTime};

use crate::config::Delivery;
use crate::store::{DispatchEndpoint, QueuedMessage, Verdict};

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

/// The answer to one request, as the rules read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Answer {
    /// The response's status; `None` when none came (a transport error).
    pub status: Option<u16>,
    /// Its `Retry-After`, already read by `parse_retry_after`.
    pub retry_after: Option<Duration>,
}

/// The durations of `[delivery]` that the rules count with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    /// A message whose attempt fails longer than this after its `retry_from` is `failed`.
    pub retry_for: Duration,
    /// An endpoint failing unbroken for this long is disabled.
    pub disable_after: Duration,
}

impl Limits {
    pub fn of(config: &Delivery) -> Limits {
        Limits {
            initial_backoff: config.initial_backoff,
            max_backoff: config.max_backoff,
            retry_for: config.retry_for,
            disable_after: config.disable_after,
        }
    }
}

/// Why the rules disabled an endpoint: its `disabled_reason` (SPEC 4.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DisableReason {
    /// It answered 410 Gone.
    Gone,
    /// Its failures ran unbroken for `disable_after`.
    Failing,
}

impl DisableReason {
    pub fn as_str(self) -> &'static str {
        match self {
            DisableReason::Gone => "gone",
            DisableReason::Failing => "failing",
        }
    }
}

/// What becomes of an endpoint's backoff.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backoff {
    /// It stays as it was.
    Keep,
    /// It ends now.
    Clear,
    /// The endpoint waits this long from the request's end before its next request.
    Wait(Duration),
}

/// Everything one request's answer changes: the endpoint's failure state and each message's
/// new state. The dispatcher applies it to its memory and hands it to the recorder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub class: Class,
    /// The endpoint's consecutive failed requests, after this one.
    pub failures: i64,
    /// Since when (wall ms) its failures have run unbroken; `None` once one succeeds.
    pub failing_since: Option<i64>,
    pub backoff: Backoff,
    /// Set when this request disables the endpoint.
    pub disable: Option<DisableReason>,
    /// One per message of the request, in the request's order.
    pub verdicts: Vec<Verdict>,
}

/// What one request's answer means (SPEC 4.4) for `endpoint` (its state before the request)
/// and the request's `messages`, at `now` (wall ms, the request's end). `jitter` draws the
/// random factor in [1.0, 1.2] of each backoff computed, once per backoff, in the order: the
/// endpoint's, then each parked message's in the request's order; a `Retry-After` takes none.
pub fn decide(
    answer: Answer,
    endpoint: &DispatchEndpoint,
    messages: &[QueuedMessage],
    now: i64,
    limits: &Limits,
    mut jitter: impl FnMut() -> f64,
) -> Decision {
    let class = classify(answer.status, answer.retry_after);
    let mut backoff = |n: i64| backoff(n, limits.initial_backoff, limits.max_backoff, jitter());
    let expired = |m: &QueuedMessage| now - m.retry_from > limits.retry_for.as_millis() as i64;
    // A parked message that fails again waits on its own schedule.
    let park = |m: &QueuedMessage, backoff: &mut dyn FnMut(i64) -> Duration| {
        if expired(m) {
            Verdict::Failed
        } else {
            let failures = m.failures + 1;
            Verdict::Parked {
                failures,
                next_attempt_at: now + backoff(failures).as_millis() as i64,
            }
        }
    };
    let mut decision = Decision {
        class,
        failures: endpoint.failures,
        failing_since: endpoint.failing_since,
        backoff: Backoff::Keep,
        disable: None,
        verdicts: Vec::with_capacity(messages.len()),
    };
    match class {
        Class::Success => {
            decision.failures = 0;
            decision.failing_since = None;
            decision.backoff = Backoff::Clear;
            decision.verdicts = messages.iter().map(|_| Verdict::Delivered).collect();
        }
        Class::Gone => {
            decision.disable = Some(DisableReason::Gone);
            for m in messages {
                let v = if m.parked {
                    park(m, &mut backoff)
                } else {
                    Verdict::Pending
                };
                decision.verdicts.push(v);
            }
        }
        Class::Rejected => {
            for m in messages {
                decision.verdicts.push(park(m, &mut backoff));
            }
        }
        Class::Throttled(_) | Class::Failure => {
            decision.failures += 1;
            let since = *decision.failing_since.get_or_insert(now);
            let wait = match class {
                Class::Throttled(Some(d)) => d,
                _ => backoff(decision.failures),
            };
            decision.backoff = Backoff::Wait(wait);
            if now - since >= limits.disable_after.as_millis() as i64 {
                decision.disable = Some(DisableReason::Failing);
            }
            for m in messages {
                let v = if m.parked {
                    park(m, &mut backoff)
                } else if expired(m) {
                    Verdict::Failed
                } else {
                    Verdict::Pending
                };
                decision.verdicts.push(v);
            }
        }
    }
    decision
}

/// `min(initial * 2^(n-1), max) * factor` for the n-th consecutive failure (n ≥ 1), where
/// `factor` is drawn uniformly from [1.0, 1.2] by the caller.
pub fn backoff(n: i64, initial: Duration, max: Duration, factor: f64) -> Duration {
    let exponent = (n.max(1) - 1).min(1000) as i32;
    let base = Duration::try_from_secs_f64(initial.as_secs_f64() * 2f64.powi(exponent))
        .map_or(max, |d| d.min(max));
    base.mul_f64(factor.clamp(1.0, 1.2))
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
mod tests;
