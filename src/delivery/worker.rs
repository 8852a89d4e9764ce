//! Delivery workers: a fixed pool of threads that each take a job, sign it afresh, send one
//! HTTP request through the shared ureq agent and hand back what happened. Workers never
//! touch the database; a failed request is data for the dispatcher, never a panic.

use std::io::Read;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};

use crate::store::QueuedMessage;

/// At most this much of a response body is read and kept.
pub const MAX_RESPONSE_BODY: u64 = 4096;

/// One request to make.
pub struct Job {
    pub endpoint_seq: i64,
    pub url: String,
    /// Every secret that signs, newest first.
    pub secrets: Vec<String>,
    /// The envelope id of the body (`evt_…` or `bat_…`).
    pub delivery_id: String,
    /// `X-StatusSentry-Event`: the event type, or `batch`.
    pub event_header: String,
    pub body: String,
    /// The messages in the body, oldest first.
    pub messages: Vec<QueuedMessage>,
}

/// A finished request.
pub struct Sent {
    pub job: Job,
    /// Wall-clock start, ms since the epoch.
    pub at: i64,
    pub duration: Duration,
    pub result: Result<Response, &'static str>,
}

pub struct Response {
    pub status: u16,
    pub retry_after: Option<String>,
    pub body: String,
}

/// Runs jobs until the dispatcher closes the job channel, which is how workers are stopped.
pub fn run(agent: ureq::Agent, jobs: Receiver<Job>, done: Sender<Sent>) {
    while let Ok(job) = jobs.recv() {
        let sent = send(&agent, job);
        if done.send(sent).is_err() {
            break;
        }
    }
}

fn send(agent: &ureq::Agent, job: Job) -> Sent {
    let at = crate::time::now_ms();
    let started = Instant::now();
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
    Sent {
        job,
        at,
        duration: started.elapsed(),
        result,
    }
}
