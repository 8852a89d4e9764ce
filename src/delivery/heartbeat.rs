//! Heartbeats (SPEC 4.7): when one is due and what its body says, as pure functions. The
//! dispatcher keeps no timer of its own for them: an endpoint's next heartbeat is one more
//! deadline among those its loop already computes, so heartbeats cost no thread and no memory
//! per endpoint beyond the slot it has anyway. A heartbeat is not an event: it is never stored,
//! batched, retried or filtered by `event_types`, and its answer changes no endpoint state.

use std::time::{Duration, Instant};

/// The id prefix of a heartbeat envelope (`hb_` + 16 of `[0-9a-z]`).
pub const ID_PREFIX: &str = "hb";

/// The envelope type, also its `X-StatusSentry-Event` header.
pub const TYPE: &str = "heartbeat";

/// When the endpoint's next heartbeat may go: `heartbeat_secs` after `quiet_since` (when its
/// last request ended, or when the dispatcher began tracking it if it has had none since), and
/// not before its batch window ends (flood control, SPEC 4.2; the one request in flight is the
/// caller's to check). `None` when heartbeats are off, or when a message may go now: that
/// request is the sign of life, and a heartbeat is never sent in its stead or batched with it.
/// The endpoint's backoff does not hold a heartbeat back: a backlog is what it reports.
pub fn due(
    quiet_since: Instant,
    heartbeat_secs: Option<i64>,
    window_end: Option<Instant>,
    message_ready: bool,
) -> Option<Instant> {
    if message_ready {
        return None;
    }
    let secs = u64::try_from(heartbeat_secs?).ok().filter(|s| *s > 0)?;
    let due = quiet_since.checked_add(Duration::from_secs(secs))?;
    Some(window_end.map_or(due, |w| due.max(w)))
}

/// What a heartbeat reports of the endpoint's backlog.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backlog {
    /// Messages pending for the endpoint.
    pub pending: i64,
    /// When the oldest of them was accepted, wall ms; `None` when none is pending.
    pub oldest_accepted: Option<i64>,
}

/// The envelope's exact bytes: keys in the order id, type, created_at, data, as every
/// envelope (SPEC 2). `oldest_pending_age_secs` is whole seconds, 0 when nothing is pending
/// (as the `/metrics` gauge), never negative when the wall clock stepped back.
pub fn envelope(id: &str, now_ms: i64, endpoint_id: &str, backlog: Backlog) -> String {
    let age = backlog
        .oldest_accepted
        .map_or(0, |at| (now_ms - at).max(0) / 1000);
    // The ids are ours (`[0-9a-z_]`), but serde_json quotes them so that the body stays JSON
    // whatever they hold.
    let quote = |s: &str| serde_json::Value::from(s).to_string();
    format!(
        "{{\"id\":{},\"type\":\"{TYPE}\",\"created_at\":\"{}\",\"data\":{{\"endpoint_id\":{},\"pending\":{},\"oldest_pending_age_secs\":{age}}}}}",
        quote(id),
        crate::time::rfc3339(now_ms),
        quote(endpoint_id),
        backlog.pending.max(0),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn due_follows_the_setting_the_window_and_waiting_messages() {
        let t = Instant::now();
        let secs = |n: u64| Duration::from_secs(n);
        // (heartbeat_secs, window end after t, a message may go now, due after t)
        type Row = (Option<i64>, Option<u64>, bool, Option<u64>);
        let rows: [Row; 9] = [
            (None, None, false, None),
            (Some(0), None, false, None),
            (Some(-5), None, false, None),
            (Some(1), None, false, Some(1)),
            (Some(3600), None, false, Some(3600)),
            (Some(10), Some(5), false, Some(10)),
            (Some(10), Some(30), false, Some(30)),
            (Some(10), None, true, None),
            (None, None, true, None),
        ];
        for (hb, window, ready, want) in rows {
            assert_eq!(
                due(t, hb, window.map(|w| t + secs(w)), ready),
                want.map(|d| t + secs(d)),
                "{hb:?} {window:?} {ready}"
            );
        }
    }

    #[test]
    fn envelope_has_the_contract_shape() {
        let now = 1_698_417_000_000;
        let body = envelope(
            "hb_0123456789abcdef",
            now,
            "ep_aaaaaaaaaaaaaaaa",
            Backlog {
                pending: 3,
                oldest_accepted: Some(now - 90_500),
            },
        );
        assert_eq!(
            body,
            "{\"id\":\"hb_0123456789abcdef\",\"type\":\"heartbeat\",\"created_at\":\"2023-10-27T14:30:00Z\",\
             \"data\":{\"endpoint_id\":\"ep_aaaaaaaaaaaaaaaa\",\"pending\":3,\"oldest_pending_age_secs\":90}}"
        );
        let v: serde_json::Value = serde_json::from_str(&body).expect("valid JSON");
        assert_eq!(v["data"]["pending"], 3);
    }

    #[test]
    fn an_empty_backlog_or_a_clock_step_gives_age_zero() {
        for oldest in [None, Some(2_000_000)] {
            let body = envelope(
                "hb_x",
                1_000_000,
                "ep_y",
                Backlog {
                    pending: 0,
                    oldest_accepted: oldest,
                },
            );
            assert!(
                body.ends_with("\"pending\":0,\"oldest_pending_age_secs\":0}}"),
                "{body}"
            );
        }
    }
}
