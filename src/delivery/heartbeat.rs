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

/// When the endpoint's next heartbeat is due: `heartbeat_secs` after its last request ended,
/// or after the dispatcher started tracking it when it has had none since; `None` when
/// heartbeats are off.
pub fn due(quiet_since: Instant, heartbeat_secs: Option<i64>) -> Option<Instant> {
    let secs = u64::try_from(heartbeat_secs?).ok().filter(|s| *s > 0)?;
    quiet_since.checked_add(Duration::from_secs(secs))
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
    fn due_follows_the_setting() {
        let t = Instant::now();
        let rows: [(Option<i64>, Option<Duration>); 5] = [
            (None, None),
            (Some(0), None),
            (Some(-5), None),
            (Some(1), Some(Duration::from_secs(1))),
            (Some(3600), Some(Duration::from_secs(3600))),
        ];
        for (secs, want) in rows {
            assert_eq!(due(t, secs), want.map(|d| t + d), "{secs:?}");
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
