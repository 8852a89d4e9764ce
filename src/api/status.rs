//! The two routes a monitoring system reads without a token: `/healthz` (200 while every part
//! that delivers is alive and the store answers, else 503 with the reason) and `/metrics`.

use serde_json::json;

use super::{Api, Reply, Result, method_not_allowed};

/// Why `/healthz` answers 503: a closed set, so a probe or a person reading the body can
/// match on the text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unhealthy {
    /// The API's accept loop has ended.
    ListenerStopped,
    /// A long-lived thread stopped and was not restarted (the supervisor's verdict).
    ThreadStopped,
    DispatcherStopped,
    /// The background `quick_check` found the file damaged: no more writes go into it.
    Damaged,
    /// The store failed its probe (a failed flush, a full disk, a lock held past the busy
    /// timeout).
    StoreNotAnswering,
}

impl Unhealthy {
    fn as_str(self) -> &'static str {
        match self {
            Unhealthy::ListenerStopped => "listener stopped",
            Unhealthy::ThreadStopped => "a long-lived thread stopped",
            Unhealthy::DispatcherStopped => "dispatcher stopped",
            Unhealthy::Damaged => "the database failed its integrity check; see the log",
            Unhealthy::StoreNotAnswering => "store not answering",
        }
    }
}

pub(super) fn health(api: &Api, method: &str) -> Result<Reply> {
    if method != "GET" && method != "HEAD" {
        return Err(method_not_allowed("GET, HEAD"));
    }
    Ok(match unhealthy(api) {
        None => Reply::json(200, &json!({"status": "ok"})),
        Some(reason) => Reply::json(
            503,
            &json!({"status": "unavailable", "reason": reason.as_str()}),
        ),
    })
}

fn unhealthy(api: &Api) -> Option<Unhealthy> {
    // Asked directly as well as through the supervisor's probe, so that /healthz fails at
    // once rather than at the supervisor's next check.
    if api.listener.get().is_some_and(|l| !l.running()) {
        return Some(Unhealthy::ListenerStopped);
    }
    if api.health.is_failing() {
        return Some(Unhealthy::ThreadStopped);
    }
    if !api.dispatcher.is_alive() {
        return Some(Unhealthy::DispatcherStopped);
    }
    match api.store.health_check() {
        Ok(()) => None,
        Err(crate::store::StoreError::Corrupt(..)) => Some(Unhealthy::Damaged),
        // The store logs when it starts failing and when it recovers, not once per probe.
        Err(_) => Some(Unhealthy::StoreNotAnswering),
    }
}

pub(super) fn metrics(api: &Api, method: &str) -> Result<Reply> {
    if method != "GET" && method != "HEAD" {
        return Err(method_not_allowed("GET, HEAD"));
    }
    let gauges = api.store.gauges(crate::time::now_ms())?;
    Ok(Reply {
        status: 200,
        body: api.metrics.render(&gauges).into_bytes(),
        content_type: "text/plain; version=0.0.4; charset=utf-8",
        headers: Vec::new(),
    })
}
