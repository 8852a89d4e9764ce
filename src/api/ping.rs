//! `/ping/{token}` and `/ping/{token}/fail`: what a push monitor is sent (SPEC 5, 7). No admin
//! token: the ping token is the secret. A ping is recorded as a successful check, `/fail` as a
//! failed one (`reported_failure`), through the same path as an HTTP check, in one small store
//! transaction; then the scheduler moves the monitor's deadline. An unknown token is a plain
//! 404 that says nothing about which tokens exist. Pings are limited per monitor, so a job in
//! a loop cannot fill the check history or hold the writer.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::json;

use super::{Api, ApiError, Reply, Result, method_not_allowed};
use crate::monitor::rules::{self, Kind};

/// Pings one monitor takes per window; one more is refused with 429.
pub const LIMIT: u32 = 30;
/// The window of `LIMIT`.
pub const WINDOW: Duration = Duration::from_secs(60);

/// Counts pings per monitor in fixed windows. Only monitors that exist get an entry, and
/// entries whose window ended are dropped when the map grows, so it holds at most one entry
/// per monitor pinged within a window.
#[derive(Default)]
pub struct PingLimiter {
    windows: Mutex<HashMap<i64, (Instant, u32)>>,
}

impl PingLimiter {
    /// Counts a ping of `monitor_seq` at `now`; `Some(wait)` when it is over the limit.
    fn take(&self, monitor_seq: i64, now: Instant) -> Option<Duration> {
        // A poisoned lock only means another ping panicked while counting; the counts are
        // still counts.
        let mut windows = self
            .windows
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if windows.len() >= 1024 {
            windows.retain(|_, (start, _)| now.duration_since(*start) < WINDOW);
        }
        let entry = windows.entry(monitor_seq).or_insert((now, 0));
        if now.duration_since(entry.0) >= WINDOW {
            *entry = (now, 0);
        }
        if entry.1 >= LIMIT {
            return Some(WINDOW.saturating_sub(now.duration_since(entry.0)));
        }
        entry.1 += 1;
        None
    }
}

/// Answers `/ping/{rest}`.
pub fn serve(api: &Api, rest: &str, method: &str) -> Result<Reply> {
    let (token, failed) = match rest.strip_suffix("/fail") {
        Some(token) => (token, true),
        None => (rest, false),
    };
    // The method is checked first, the same for every path, so a 405 says nothing about
    // whether the token exists.
    if method != "GET" && method != "POST" {
        return Err(method_not_allowed("GET, POST"));
    }
    let unknown = || ApiError::new(404, "not_found", "no such ping URL");
    // A path that cannot hold a token is as unknown as a token that is not stored.
    if !crate::secret::is_ping_token(token) {
        return Err(unknown());
    }
    let monitor = match api.store.monitor_by_push_token(token)? {
        Some(m) if m.settings.kind == Kind::Push => m,
        _ => return Err(unknown()),
    };
    if let Some(wait) = api.pings.take(monitor.seq, crate::time::mono()) {
        let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        let mut e = ApiError::new(
            429,
            "rate_limited",
            format!(
                "more than {LIMIT} pings in {} s for this monitor; try again in {secs} s",
                WINDOW.as_secs()
            ),
        );
        e.retry_after = Some(secs.max(1));
        return Err(e);
    }
    // A paused monitor takes its pings without recording them: it is not being watched.
    if !monitor.settings.enabled {
        return Ok(Reply::json(200, &json!({"ok": true, "recorded": false})));
    }
    let error = failed.then_some(rules::REPORTED_FAILURE);
    let outcome = rules::push_outcome(crate::time::now_ms(), error);
    crate::monitor::record(
        &crate::monitor::Recorder {
            store: &api.store,
            dispatcher: &api.dispatcher,
            metrics: &api.metrics,
            region: rules::PUSH_REGION,
            keep_ms: i64::from(api.config.storage.retention_days) * 86_400_000,
        },
        &monitor,
        &outcome,
    )?;
    api.monitors.pinged(monitor.seq);
    Ok(Reply::json(200, &json!({"ok": true, "recorded": true})))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limit_counts_per_monitor_and_resets_with_the_window() {
        let limiter = PingLimiter::default();
        let start = Instant::now();
        for _ in 0..LIMIT {
            assert_eq!(limiter.take(1, start), None);
        }
        let wait = limiter.take(1, start + Duration::from_secs(10));
        assert_eq!(wait, Some(WINDOW - Duration::from_secs(10)));
        // Another monitor has its own count.
        assert_eq!(limiter.take(2, start), None);
        // The window's end starts a new count.
        assert_eq!(limiter.take(1, start + WINDOW), None);
    }
}
