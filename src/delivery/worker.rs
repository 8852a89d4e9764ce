//! Delivery workers: a fixed pool of threads that each take a run of requests for one
//! endpoint, sign each afresh, send them one after another through the shared ureq agent and
//! hand back what happened to each. Workers never touch the database; a failed request is
//! data for the dispatcher, never a panic.

use std::collections::VecDeque;
use std::io::Read;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use crate::net::{ErrorKind, Stopwatch, Timings};
use crate::store::{EndpointSeq, QueuedMessage};
use crate::supervise::{Beat, IDLE_WAKE};

/// At most this much of a response body is read and kept.
pub const MAX_RESPONSE_BODY: u64 = 4096;

/// One request to make.
pub struct Job {
    pub endpoint_seq: EndpointSeq,
    pub url: String,
    /// Every secret that signs, newest first.
    pub secrets: Vec<String>,
    /// The envelope id of the body (`evt_…` or `bat_…`).
    pub delivery_id: String,
    /// `X-StatusSentry-Event`: the event type, or `batch`.
    pub event_header: String,
    pub body: String,
    /// The messages in the body, oldest first; none for a heartbeat.
    pub messages: Vec<QueuedMessage>,
    /// A heartbeat (SPEC 4.7), which carries no message.
    pub heartbeat: bool,
}

/// Requests for one endpoint, sent in order, one at a time.
pub struct Run {
    pub jobs: VecDeque<Job>,
    /// Set by the dispatcher to stop the run after the request in flight.
    pub cancel: Arc<AtomicBool>,
}

/// A finished request.
pub struct Sent {
    pub job: Job,
    /// Wall-clock start, ms since the epoch.
    pub at: i64,
    pub duration: Duration,
    /// Its phases (SPEC 4.5); `duration` is their `total`.
    pub timings: Timings,
    /// Wall-clock end, ms since the epoch, rounded up: waits counted from it never end early.
    pub ended: i64,
    pub result: Result<Response, ErrorKind>,
    /// The run ended with this request: the endpoint has nothing in flight any more.
    pub last: bool,
    /// The run's requests that were not sent, in order; only on the last `Sent`.
    pub unsent: Vec<Job>,
}

pub struct Response {
    pub status: u16,
    pub retry_after: Option<String>,
    pub body: String,
}

/// A run's finished requests are reported together, so that the dispatcher wakes once per
/// several requests instead of once per request: when the run ends, else once this many wait
/// or the oldest has waited this long. Nothing decides on a 2xx inside a run but the recorder,
/// which gathers outcomes for as long anyway. The check runs as each request ends, so a 2xx
/// can wait for one slow request after it (its timestamps, and so the lag metric, are exact).
const REPORT_MAX: usize = 16;
const REPORT_AFTER: Duration = Duration::from_millis(2);

/// Runs runs until the dispatcher closes their channel, which is how workers are stopped. A run
/// goes on after a 2xx only: any other answer is the dispatcher's to act on first, and ends the
/// run with its report.
///
/// It beats while it waits (waking every `IDLE_WAKE`) and before each request.
pub fn run(agent: ureq::Agent, runs: Receiver<Run>, done: Sender<Vec<Sent>>, beat: &Beat) {
    loop {
        beat.beat();
        let Run { mut jobs, cancel } = match runs.recv_timeout(IDLE_WAKE) {
            Ok(run) => run,
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => return,
        };
        beat.work();
        let mut report: Vec<Sent> = Vec::new();
        let mut oldest = Instant::now();
        while let Some(job) = jobs.pop_front() {
            beat.beat();
            let mut sent = send(&agent, job);
            let succeeded = matches!(&sent.result, Ok(r) if (200..300).contains(&r.status));
            let go_on = succeeded && !jobs.is_empty() && !cancel.load(Ordering::SeqCst);
            if !go_on {
                sent.last = true;
                sent.unsent = jobs.drain(..).collect();
            }
            if report.is_empty() {
                oldest = Instant::now();
            }
            report.push(sent);
            if (!go_on || report.len() >= REPORT_MAX || oldest.elapsed() >= REPORT_AFTER)
                && done.send(std::mem::take(&mut report)).is_err()
            {
                return;
            }
        }
    }
}

fn send(agent: &ureq::Agent, job: Job) -> Sent {
    let at = crate::time::now_ms();
    let mut watch = Stopwatch::start();
    let timestamp = at / 1000;
    let secrets: Vec<&str> = job.secrets.iter().map(String::as_str).collect();
    let body = job.body.as_bytes();
    let attempt = job.messages.first().map_or(1, |m| m.attempts + 1);
    let request = agent
        .post(&job.url)
        .header("Content-Type", "application/json")
        .header(
            "X-StatusSentry-Signature",
            crate::signature::header(&secrets, timestamp, body),
        )
        .header("X-StatusSentry-Event", &job.event_header)
        .header("X-StatusSentry-Delivery", &job.delivery_id)
        .header("X-StatusSentry-Attempt", attempt.to_string())
        .header("webhook-id", &job.delivery_id)
        .header("webhook-timestamp", timestamp.to_string())
        .header(
            "webhook-signature",
            crate::signature::standard_webhooks(&secrets, &job.delivery_id, timestamp, body),
        );
    let result = match request.send(body) {
        Ok(mut response) => {
            watch.head();
            let status = response.status().as_u16();
            let retry_after = response
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let mut buf = Vec::new();
            // A body that breaks off or is cut at the cap still leaves us what arrived.
            let _ = response
                .body_mut()
                .as_reader()
                .take(MAX_RESPONSE_BODY)
                .read_to_end(&mut buf);
            Ok(Response {
                status,
                retry_after,
                body: String::from_utf8_lossy(&buf).into_owned(),
            })
        }
        Err(err) => Err(crate::net::error_kind(&err)),
    };
    let timings = watch.finish();
    Sent {
        job,
        at,
        duration: timings.total,
        timings,
        ended: crate::time::now_ms_ceil(),
        result,
        last: false,
        unsent: Vec::new(),
    }
}
