//! The dispatcher's recovery probes (SPEC 4.4, last paragraph): an endpoint disabled for
//! failing gets one real, signed request every `recovery_probe` until `recovery_for` after it
//! was disabled: its oldest pending message, recorded as an attempt like any other, or a
//! heartbeat envelope (`pending` 0) when none is pending. When a probe is due and what its
//! answer means are `delivery::recovery`'s pure rules; this applies them to the slot and hands
//! the outcome to the recorder, which writes the endpoint's new state, and on a 2xx the
//! events it missed, in one transaction.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use super::super::heartbeat::Backlog;
use super::super::policy;
use super::super::recovery::{self, Probe};
use super::super::worker::{Run, Sent};
use super::jobs::{build_job, heartbeat_job, with_payloads};
use super::{Dispatcher, READ_RETRY};
use crate::net::ErrorKind;
use crate::store::{EndpointSeq, MessageOutcome, MessageSeq, RecoveryChange, RequestOutcome};

/// What a finished request was answered, as `Dispatcher::finish` has read it.
pub(super) struct Heard {
    pub(super) status: Option<u16>,
    pub(super) retry_after: Option<Duration>,
    pub(super) body: Option<String>,
    pub(super) error: Option<ErrorKind>,
}

impl Dispatcher {
    /// Sends a recovery probe to disabled endpoint `seq` if one is due now (nothing of it is
    /// in flight or unrecorded: the store is the whole truth); returns when the next is due.
    /// `None` when the endpoint is not probed, or no longer.
    pub(super) fn probe(
        &mut self,
        seq: EndpointSeq,
        now: i64,
        now_mono: Instant,
    ) -> Option<Instant> {
        let bound = self.config.recovery_probe.max(policy::MAX_RETRY_AFTER);
        let slot = self.slots.get_mut(&seq)?;
        let r = slot.ep.recovery?;
        recovery::due(&r, now)?;
        // The schedule is kept in wall time, in the store; the wait for it is monotonic, held
        // to the longest a probe's interval can be, so that a stepped clock cannot stall it.
        let due = *slot
            .probe_at
            .get_or_insert_with(|| crate::time::deadline(r.next_probe_at, bound));
        // Flood control holds for probes as for any request.
        let window_end = slot
            .last_end
            .map(|end| end + Duration::from_millis(slot.ep.batch_window_ms.max(0) as u64));
        let at = window_end.map_or(due, |w| w.max(due));
        if at > now_mono {
            return Some(at);
        }
        let oldest = match self.store.pending_after(seq, MessageSeq(0), 1) {
            Ok(mut messages) => messages.pop(),
            Err(e) => {
                log::error!("dispatcher cannot read a probe's message: {e}");
                return Some(now_mono + READ_RETRY);
            }
        };
        let job = match oldest {
            Some(m) => match with_payloads(&self.store, vec![vec![m]]) {
                Ok(mut requests) => requests.pop().map(|r| build_job(&slot.ep, r, now)),
                Err((e, _)) => {
                    log::error!("dispatcher cannot read a probe's envelope: {e}");
                    return Some(now_mono + READ_RETRY);
                }
            },
            None => None,
        };
        // With nothing pending (or its event gone meanwhile), a ping: the heartbeat envelope,
        // which is signed like any request and stored nowhere.
        let job = job.unwrap_or_else(|| {
            let empty = Backlog {
                pending: 0,
                oldest_accepted: None,
            };
            heartbeat_job(&slot.ep, empty, now)
        });
        let cancel = Arc::new(AtomicBool::new(false));
        slot.in_flight = Some(cancel.clone());
        slot.probing = true;
        let jobs = VecDeque::from([job]);
        match self.runs.send(Run { jobs, cancel }) {
            Ok(()) => self.in_flight += 1,
            Err(_) => {
                slot.in_flight = None;
                slot.probing = false;
                slot.stale = true;
            }
        }
        None
    }

    /// Applies a probe's answer (`recovery::after`) to the endpoint's slot and returns what
    /// to record: the message's attempt, if it carried one, and the endpoint's new recovery
    /// state. `None` when the endpoint was deleted, or stopped being probed, meanwhile.
    pub(super) fn finish_probe(
        &mut self,
        sent: Sent,
        heard: Heard,
        now: i64,
        now_mono: Instant,
    ) -> Option<RequestOutcome> {
        let slot = self.slots.get_mut(&sent.job.endpoint_seq)?;
        let ep = &mut slot.ep;
        let r = ep.recovery?;
        let class = policy::classify(heard.status, heard.retry_after);
        let step = recovery::after(r, class, now, self.config.recovery_probe);
        self.metrics.recovery_probe(step.as_str());
        if !sent.job.messages.is_empty() {
            // A probe that carries a message is a delivery attempt like any other.
            self.metrics.delivery(heard.status, heard.error);
            self.metrics
                .attempt_duration
                .observe(sent.duration.as_secs_f64());
        }
        let change = match step {
            Probe::Recovered => {
                log::info!(
                    "endpoint {} answered recovery probe {} and is enabled again; the events it missed are queued",
                    ep.id,
                    r.probes + 1
                );
                ep.failures = 0;
                ep.failing_since = None;
                ep.backoff_until = None;
                slot.backoff_until = None;
                ep.recovery = None;
                // Enabled, with new messages, once this is recorded: the slot reloads both
                // from the store then.
                slot.stale = true;
                RecoveryChange::Recovered {
                    expired_before: now.saturating_sub(self.config.retry_for.as_millis() as i64),
                    now,
                }
            }
            Probe::Gone => {
                log::warn!(
                    "endpoint {} answered a recovery probe with 410 Gone; it stays disabled and is probed no more",
                    ep.id
                );
                ep.recovery = None;
                RecoveryChange::Gone
            }
            Probe::Again(next) => {
                log::debug!(
                    "recovery probe {} of endpoint {} was not accepted",
                    next.probes,
                    ep.id
                );
                ep.recovery = Some(next);
                let wait = (next.next_probe_at - now).max(0) as u64;
                slot.probe_at = Some(now_mono + Duration::from_millis(wait));
                RecoveryChange::Next(next)
            }
            Probe::Over => {
                log::warn!(
                    "endpoint {} is still failing after {} recovery probes; probing ends and it stays disabled",
                    ep.id,
                    r.probes + 1
                );
                ep.recovery = None;
                RecoveryChange::End
            }
        };
        let messages = sent
            .job
            .messages
            .iter()
            .map(|m| {
                let verdict = recovery::verdict(class, m, now, self.config.retry_for);
                MessageOutcome {
                    seq: m.seq,
                    attempt: m.attempts + 1,
                    verdict,
                }
            })
            .collect();
        slot.unrecorded += 1;
        Some(RequestOutcome {
            endpoint_seq: ep.seq,
            at: sent.at,
            duration_ms: sent.duration.as_millis() as i64,
            status_code: heard.status.map(i64::from),
            error: heard.error.map(ErrorKind::as_str),
            response_body: heard.body,
            messages,
            endpoint_failures: ep.failures,
            endpoint_failing_since: ep.failing_since,
            endpoint_backoff_until: ep.backoff_until,
            disable: None,
            recovery: Some(change),
            timings: sent.timings,
        })
    }
}
