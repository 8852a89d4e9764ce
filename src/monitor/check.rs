//! One HTTP check of a monitor's URL through the shared outbound agent, so the outbound
//! address policy (SPEC 4.6) applies to checks as to deliveries. A failed check is data: the
//! outcome names the error, nothing here panics or retries.

use std::io::Read;
use std::time::Duration;

use crate::net::Stopwatch;

use super::rules::{Expected, Outcome};

/// At most this much of a response body is read.
const MAX_BODY: u64 = 4096;

/// Requests `url` once with `method` (`GET` or `HEAD`) within `timeout`, on a new connection
/// (so the time includes name resolution and connecting, as a visitor's first request
/// would), and judges the status against `expected`. Its phases are timed as a delivery's.
pub fn run(
    agent: &ureq::Agent,
    method: &str,
    url: &str,
    timeout: Duration,
    expected: &Expected,
) -> Outcome {
    let at = crate::time::now_ms();
    let mut watch = Stopwatch::start();
    let request = if method == "HEAD" {
        agent.head(url)
    } else {
        agent.get(url)
    };
    let result = request
        .header("Connection", "close")
        .config()
        .timeout_global(Some(timeout))
        .build()
        .call();
    match result {
        Ok(mut response) => {
            watch.head();
            let first_byte_ms = watch.started().elapsed().as_millis() as i64;
            let status = response.status().as_u16();
            let mut sink = Vec::new();
            let body = response
                .body_mut()
                .as_reader()
                .take(MAX_BODY)
                .read_to_end(&mut sink);
            let error = match body {
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => Some("timeout"),
                Err(_) => Some("connection_reset"),
                Ok(_) if !expected.contains(status) => Some("unexpected_status"),
                Ok(_) => None,
            };
            let timings = watch.finish();
            Outcome {
                at,
                ok: error.is_none(),
                status_code: Some(status),
                response_time_ms: timings.total.as_millis() as i64,
                first_byte_ms: Some(first_byte_ms),
                timings: Some(timings),
                error,
            }
        }
        Err(e) => {
            let timings = watch.finish();
            Outcome {
                at,
                ok: false,
                status_code: None,
                response_time_ms: timings.total.as_millis() as i64,
                first_byte_ms: None,
                timings: Some(timings),
                error: Some(crate::net::error_kind(&e).as_str()),
            }
        }
    }
}
