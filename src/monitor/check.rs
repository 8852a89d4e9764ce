//! One HTTP check of a monitor's URL through the shared outbound agent, so the outbound
//! address policy (SPEC 4.6) applies to checks as to deliveries. A failed check is data: the
//! outcome names the error, nothing here panics or retries.

use std::io::Read;
use std::time::{Duration, Instant};

use super::rules::{Expected, Outcome};

/// At most this much of a response body is read.
const MAX_BODY: u64 = 4096;

/// Requests `url` once with `method` (`GET` or `HEAD`) within `timeout`, on a new connection
/// (so the time includes name resolution and connecting, as a visitor's first request
/// would), and judges the status against `expected`.
pub fn run(
    agent: &ureq::Agent,
    method: &str,
    url: &str,
    timeout: Duration,
    expected: &Expected,
) -> Outcome {
    let at = crate::time::now_ms();
    let started = Instant::now();
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
    let elapsed_ms = |s: Instant| s.elapsed().as_millis() as i64;
    match result {
        Ok(mut response) => {
            let first_byte_ms = elapsed_ms(started);
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
            Outcome {
                at,
                ok: error.is_none(),
                status_code: Some(status),
                response_time_ms: elapsed_ms(started),
                first_byte_ms: Some(first_byte_ms),
                error,
            }
        }
        Err(e) => Outcome {
            at,
            ok: false,
            status_code: None,
            response_time_ms: elapsed_ms(started),
            first_byte_ms: None,
            error: Some(crate::net::error_kind(&e).as_str()),
        },
    }
}
