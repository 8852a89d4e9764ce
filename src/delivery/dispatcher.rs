//! The dispatcher: per-endpoint flood control (one request in flight, `batch_window` between
//! starts), FIFO batching, runs of back-to-back requests, backoff and parking. It keeps a
//! little state per endpoint in memory, reads the queue from the store when an endpoint is
//! ready, and hands finished requests to the recorder thread; whatever depends on recorded
//! outcomes waits for the recorder's report, so a message is never sent twice except across
//! a crash.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, select};

use super::Command;
mod jobs;
mod probe;
mod slot;

use super::heartbeat::{self, Backlog};
use super::policy::{self, Answer, Backoff, Class, DisableReason, Limits};
use super::recorder::{self, Recorded};
use super::worker::{Run, Sent};
use crate::config::Delivery as DeliveryConfig;
use crate::metrics::Metrics;
use crate::net::ErrorKind;
use crate::store::{
    EndpointSeq, MessageOutcome, MessageSeq, RecoveryChange, RequestOutcome, Store, Verdict,
};
use crate::supervise::{Beat, IDLE_WAKE, Supervisor, WRITER_BOUND};
use crate::time::{mono, now_ms};
use jobs::{build_job, heartbeat_job, jitter, with_payloads};
use slot::Slot;

/// How long the dispatcher sleeps when nothing is scheduled; it wakes earlier on any command.
const IDLE_WAIT: Duration = Duration::from_secs(60);

/// The longest an endpoint's stored backoff can ask (the most `Retry-After` honoured is longer
/// than any `max_backoff` with its random factor that the rules let a config ask for): a
/// stored backoff read back after the wall clock was stepped back waits no longer.
const BACKOFF_BOUND: Duration = policy::MAX_RETRY_AFTER;

/// Pending messages read from the store at a time, at least; more when `batch_max` is larger.
const READ_AHEAD: i64 = 32;

/// How long after a failed read of envelopes the dispatcher tries again.
const READ_RETRY: Duration = Duration::from_secs(1);

/// The most requests in one run (ARCHITECTURE.md, "How an event flows", step 4), and the most
/// messages in a run beyond its first request: big batches gain little from running back to
/// back, and a run's messages and bodies are held in memory until it ends.
const RUN_MAX: usize = 32;
const RUN_MAX_MESSAGES: usize = 256;

pub(super) struct Dispatcher {
    store: Arc<Store>,
    metrics: Arc<Metrics>,
    config: DeliveryConfig,
    /// The rules' durations, from `config`.
    limits: Limits,
    shutdown_timeout: Duration,
    commands: Receiver<Command>,
    done: Receiver<Vec<Sent>>,
    runs: Sender<Run>,
    slots: HashMap<EndpointSeq, Slot>,
    /// Runs in flight.
    in_flight: usize,
}

impl Dispatcher {
    pub(super) fn new(
        store: Arc<Store>,
        metrics: Arc<Metrics>,
        config: DeliveryConfig,
        shutdown_timeout: Duration,
        commands: Receiver<Command>,
        done: Receiver<Vec<Sent>>,
        runs: Sender<Run>,
    ) -> Dispatcher {
        Dispatcher {
            store,
            metrics,
            limits: Limits::of(&config),
            config,
            shutdown_timeout,
            commands,
            done,
            runs,
            slots: HashMap::new(),
            in_flight: 0,
        }
    }

    pub(super) fn run(mut self, supervisor: &Supervisor, beat: &Beat) {
        match self.store.dispatch_endpoints(now_ms()) {
            Ok(eps) => {
                for ep in eps {
                    self.slots.insert(ep.seq, Slot::new(ep));
                }
            }
            Err(e) => log::error!("dispatcher cannot read endpoints: {e}"),
        }
        // Outcomes are written by a recorder thread, so the dispatcher never waits for the
        // writer (which a publish group may hold through its fsync) before sending the next
        // request.
        let (record_tx, record_rx) = crossbeam_channel::unbounded::<Vec<RequestOutcome>>();
        let (recorded_tx, recorded_rx) = crossbeam_channel::unbounded::<Recorded>();
        let store = self.store.clone();
        // The recorder ends with its channel, when this thread ends; its death outside that
        // ends the process, since the outcomes it held are lost and this thread waits for them.
        let recorder = match supervisor.spawn("recorder", WRITER_BOUND, move |beat| {
            recorder::run(&store, &record_rx, &recorded_tx, beat)
        }) {
            Ok(t) => t,
            Err(e) => {
                log::error!("cannot start the delivery recorder: {e}");
                return;
            }
        };
        let mut stopping: Option<Instant> = None;
        let mut outcomes = Vec::new();
        let mut outstanding = 0usize;
        let mut halted = false;
        loop {
            beat.work();
            let next = match stopping {
                // A file the integrity check found damaged takes no more writes, so no outcome
                // could be recorded: every message sent would stay pending and be sent again
                // at once, for ever. Deliveries stop; `/healthz` already answers 503.
                None if self.store.is_damaged() => {
                    if !halted {
                        halted = true;
                        log::error!(
                            "deliveries stop: the database failed its integrity check and takes no more writes"
                        );
                    }
                    None
                }
                None => self.dispatch_ready(),
                Some(deadline) => {
                    if (self.in_flight == 0 && outstanding == 0 && outcomes.is_empty())
                        || mono() >= deadline
                    {
                        break;
                    }
                    Some(deadline)
                }
            };
            if !outcomes.is_empty() {
                outstanding += outcomes.len();
                if record_tx.send(std::mem::take(&mut outcomes)).is_err() {
                    log::error!("the delivery recorder has stopped; the dispatcher stops too");
                    return;
                }
            }
            let timeout = crate::time::wait(
                next.map_or(IDLE_WAIT, |at| at.saturating_duration_since(mono())),
            );
            select! {
                recv(self.commands) -> cmd => match cmd {
                    Ok(cmd) => self.command(cmd, &mut stopping),
                    Err(_) => self.command(Command::Shutdown, &mut stopping),
                },
                recv(self.done) -> report => {
                    for sent in report.into_iter().flatten() {
                        outcomes.extend(self.finish(sent));
                    }
                },
                recv(recorded_rx) -> recorded => match recorded {
                    Ok(report) => outstanding -= self.recorded(&report),
                    Err(_) => {
                        log::error!("the delivery recorder has stopped; the dispatcher stops too");
                        return;
                    }
                },
                default(timeout.min(IDLE_WAKE)) => {}
            }
            // Take whatever else is waiting, so that one transaction records a burst.
            while let Ok(report) = self.done.try_recv() {
                for sent in report {
                    outcomes.extend(self.finish(sent));
                }
            }
            while let Ok(report) = recorded_rx.try_recv() {
                outstanding -= self.recorded(&report);
            }
            while let Ok(cmd) = self.commands.try_recv() {
                self.command(cmd, &mut stopping);
            }
        }
        // The recorder writes what it still holds, then ends with its channel.
        if !outcomes.is_empty() {
            let _ = record_tx.send(outcomes);
        }
        drop(record_tx);
        let _ = recorder.join();
        if self.in_flight > 0 {
            log::warn!(
                "shutdown timeout reached with {} requests in flight; their messages stay pending",
                self.in_flight
            );
        }
    }

    /// Notes that the outcomes of these endpoints are in the store; returns how many.
    fn recorded(&mut self, report: &Recorded) -> usize {
        for seq in &report.endpoints {
            if let Some(slot) = self.slots.get_mut(seq) {
                slot.unrecorded = slot.unrecorded.saturating_sub(1);
                if !report.committed {
                    // The store still holds the messages as they were, so re-read them:
                    // they go out again, a duplicate but never a loss.
                    slot.stale = true;
                }
            }
        }
        report.endpoints.len()
    }

    fn command(&mut self, cmd: Command, stopping: &mut Option<Instant>) {
        // Commands name endpoints by the plain seqs of the API's rows; the dispatcher's own
        // state keys them by `EndpointSeq`.
        match cmd {
            Command::Wake(seqs) => {
                for seq in seqs.into_iter().map(EndpointSeq) {
                    match self.slots.get_mut(&seq) {
                        Some(slot) => slot.more = true,
                        None => self.add(seq),
                    }
                }
            }
            Command::Changed(seq) => {
                let seq = EndpointSeq(seq);
                match self.slots.get_mut(&seq) {
                    Some(slot) => {
                        slot.stale = true;
                        if let Some(cancel) = &slot.in_flight {
                            cancel.store(true, Ordering::SeqCst);
                        }
                    }
                    None => self.add(seq),
                }
            }
            Command::Shutdown => {
                if stopping.is_none() {
                    *stopping = Some(mono() + self.shutdown_timeout);
                    for cancel in self.slots.values().filter_map(|s| s.in_flight.as_ref()) {
                        cancel.store(true, Ordering::SeqCst);
                    }
                }
            }
        }
    }

    /// Starts tracking an endpoint created after the dispatcher started.
    fn add(&mut self, seq: EndpointSeq) {
        match self.store.dispatch_endpoint(seq, now_ms()) {
            Ok(Some(ep)) => {
                self.slots.insert(seq, Slot::new(ep));
            }
            Ok(None) => {}
            Err(e) => log::error!("dispatcher cannot read a new endpoint: {e}"),
        }
    }

    /// Sends a job for every endpoint that may send now; returns when the next one may.
    fn dispatch_ready(&mut self) -> Option<Instant> {
        let now = now_ms();
        let now_mono = mono();
        let mut next: Option<Instant> = None;
        let seqs: Vec<EndpointSeq> = self.slots.keys().copied().collect();
        for seq in seqs {
            // A reload reads every pending message again, so it waits until nothing of this
            // endpoint is in flight or unrecorded: then the store is the whole truth.
            if self
                .slots
                .get(&seq)
                .is_some_and(|s| s.stale && s.unrecorded == 0 && s.in_flight.is_none())
                && !self.refresh(seq, now)
            {
                continue;
            }
            let Some(slot) = self.slots.get_mut(&seq) else {
                continue;
            };
            // A stale endpoint waits for its reload: its settings (enabled, URL, secrets,
            // batching) may have changed.
            if slot.in_flight.is_some() || slot.stale {
                continue;
            }
            // A disabled endpoint gets nothing but its recovery probes, if it is probed.
            if !slot.ep.enabled {
                if slot.unrecorded == 0
                    && let Some(at) = self.probe(seq, now, now_mono)
                {
                    next = Some(next.map_or(at, |n| n.min(at)));
                }
                continue;
            }
            if slot.parked_stale && slot.unrecorded == 0 {
                match self.store.next_parked(seq) {
                    Ok(p) => {
                        let bound = self.config.max_backoff.mul_f64(1.2);
                        slot.parked_due = p.map(|(_, due)| crate::time::deadline(due, bound));
                        slot.parked_stale = false;
                    }
                    Err(e) => log::error!("dispatcher cannot read parked messages: {e}"),
                }
            }
            let want = slot.ep.batch_max.max(1) as usize;
            while slot.more && slot.queue.len() < want {
                let ask = (want as i64).max(READ_AHEAD);
                match self.store.pending_after(seq, slot.loaded_through, ask) {
                    Ok(messages) => {
                        slot.more = messages.len() as i64 == ask;
                        if let Some(last) = messages.last() {
                            slot.loaded_through = last.seq;
                        }
                        slot.queue.extend(messages);
                    }
                    Err(e) => {
                        log::error!("dispatcher cannot read the queue: {e}");
                        break;
                    }
                }
            }
            // With no window, the last request's end must not hold the next one back.
            let window_end = match slot.last_end {
                Some(end) if slot.ep.batch_window_ms > 0 => {
                    Some(end + Duration::from_millis(slot.ep.batch_window_ms as u64))
                }
                _ => None,
            };
            let ready_at = [slot.backoff_until, window_end]
                .into_iter()
                .flatten()
                .fold(now_mono, Instant::max);
            let parked_ready = slot.parked_due.map(|due| due.max(ready_at));
            let at = if slot.queue.is_empty() {
                parked_ready
            } else {
                Some(ready_at.min(parked_ready.unwrap_or(ready_at)))
            };
            // A heartbeat (SPEC 4.7), when one is due (`heartbeat::due`); nothing is in flight,
            // as checked above.
            let quiet_since = slot.last_end.unwrap_or(slot.tracked_since);
            let message_ready = at.is_some_and(|a| a <= now_mono);
            if let Some(due) = heartbeat::due(
                quiet_since,
                slot.ep.heartbeat_secs,
                window_end,
                message_ready,
            ) {
                if due > now_mono {
                    next = Some(next.map_or(due, |n| n.min(due)));
                } else {
                    match self.store.pending_summary(seq) {
                        Ok((pending, oldest_accepted)) => {
                            let backlog = Backlog {
                                pending,
                                oldest_accepted,
                            };
                            let job = heartbeat_job(&slot.ep, backlog, now);
                            let cancel = Arc::new(AtomicBool::new(false));
                            slot.in_flight = Some(cancel.clone());
                            let jobs = VecDeque::from([job]);
                            match self.runs.send(Run { jobs, cancel }) {
                                Ok(()) => self.in_flight += 1,
                                Err(_) => slot.in_flight = None,
                            }
                        }
                        Err(e) => {
                            log::error!("dispatcher cannot read a heartbeat's backlog: {e}");
                            let at = now_mono + READ_RETRY;
                            next = Some(next.map_or(at, |n| n.min(at)));
                        }
                    }
                    continue;
                }
            }
            let Some(at) = at else {
                continue;
            };
            if at > now_mono {
                next = Some(next.map_or(at, |n| n.min(at)));
                continue;
            }
            let parked = parked_ready.is_some_and(|p| p <= now_mono) && slot.unrecorded == 0;
            let messages = if parked {
                match self.store.next_parked(seq) {
                    Ok(Some((m, _))) => vec![m],
                    Ok(None) => {
                        slot.parked_due = None;
                        continue;
                    }
                    Err(e) => {
                        log::error!("dispatcher cannot read parked messages: {e}");
                        continue;
                    }
                }
            } else if !slot.queue.is_empty() {
                let n = want.min(slot.queue.len());
                slot.queue.drain(..n).collect()
            } else {
                continue;
            };
            let mut requests = vec![messages];
            // More requests back to back only where no window separates them, and only full
            // ones: a batch is never sent short while more messages wait.
            if !parked && slot.ep.batch_window_ms == 0 {
                let mut messages_left = RUN_MAX_MESSAGES;
                while requests.len() < RUN_MAX && slot.queue.len() >= want && messages_left >= want
                {
                    messages_left -= want;
                    requests.push(slot.queue.drain(..want).collect());
                }
            }
            // The envelopes are read only now, for the requests about to go out: the queue
            // holds none, so what a backing-off endpoint keeps in memory stays small.
            let jobs = match with_payloads(&self.store, requests) {
                Ok(jobs) => jobs
                    .into_iter()
                    .map(|messages| build_job(&slot.ep, messages, now))
                    .collect::<VecDeque<_>>(),
                Err((e, requests)) => {
                    log::error!("dispatcher cannot read the envelopes to send: {e}");
                    // Unsent, they are still the oldest (a parked one stays parked in the
                    // store); try again in a moment rather than at once.
                    for m in requests.into_iter().flatten().rev() {
                        if !m.parked {
                            slot.queue.push_front(m);
                        }
                    }
                    let at = now_mono + READ_RETRY;
                    next = Some(next.map_or(at, |n| n.min(at)));
                    continue;
                }
            };
            if jobs.is_empty() {
                continue;
            }
            let cancel = Arc::new(AtomicBool::new(false));
            slot.in_flight = Some(cancel.clone());
            match self.runs.send(Run { jobs, cancel }) {
                Ok(()) => self.in_flight += 1,
                Err(_) => {
                    slot.in_flight = None;
                    slot.stale = true;
                }
            }
        }
        next
    }

    /// Re-reads an endpoint and its queue after the store changed under it; false when the
    /// endpoint is gone or cannot be read now.
    fn refresh(&mut self, seq: EndpointSeq, now: i64) -> bool {
        let ep = match self.store.dispatch_endpoint(seq, now) {
            Ok(Some(ep)) => ep,
            Ok(None) => {
                self.slots.remove(&seq);
                return false;
            }
            Err(e) => {
                log::error!("dispatcher cannot reload an endpoint: {e}");
                return false;
            }
        };
        let Some(slot) = self.slots.get_mut(&seq) else {
            return false;
        };
        // The stored backoff is ours unless an API action changed it: keep our monotonic
        // deadline then, rather than reading it back through a wall clock that may have moved.
        if ep.backoff_until != slot.ep.backoff_until {
            slot.backoff_until = ep
                .backoff_until
                .map(|at| crate::time::deadline(at, BACKOFF_BOUND));
        }
        slot.ep = ep;
        slot.stale = false;
        slot.queue.clear();
        slot.loaded_through = MessageSeq(0);
        slot.more = true;
        slot.parked_stale = true;
        slot.probe_at = None;
        true
    }

    /// Applies what a finished request means (`policy::decide`) to the endpoint's slot and
    /// returns what to record. `None` when the endpoint was deleted meanwhile.
    fn finish(&mut self, sent: Sent) -> Option<RequestOutcome> {
        if sent.last {
            self.in_flight = self.in_flight.saturating_sub(1);
        }
        let slot = self.slots.get_mut(&sent.job.endpoint_seq)?;
        let duration_ms = sent.duration.as_millis() as i64;
        // `at` and the duration are both truncated to the millisecond; windows, backoff and
        // Retry-After count from the end rounded up, so that a retry never comes early.
        let now = sent.ended.max(sent.at + duration_ms);
        if sent.last {
            slot.in_flight = None;
        }
        // The answer came before this report did, so counting from now never shortens a
        // window or a backoff.
        let now_mono = mono();
        slot.last_end = Some(now_mono);
        let (status, retry_after, body, error) = match &sent.result {
            Ok(r) => {
                let retry_after = r
                    .retry_after
                    .as_deref()
                    .and_then(|v| policy::parse_retry_after(v, crate::time::system_now()));
                let error = (300..400)
                    .contains(&r.status)
                    .then_some(ErrorKind::Redirect);
                (Some(r.status), retry_after, Some(r.body.clone()), error)
            }
            Err(kind) => (None, None, None, Some(*kind)),
        };
        if std::mem::take(&mut slot.probing) {
            let heard = probe::Heard {
                status,
                retry_after,
                body,
                error,
            };
            return self.finish_probe(sent, heard, now, now_mono);
        }
        if sent.job.heartbeat {
            // Never retried (the next one is due anyway) and no message's: its answer is
            // counted and changes nothing else; its end counts for flood control above.
            self.metrics.heartbeat(status, error);
            if !status.is_some_and(|s| (200..300).contains(&s)) {
                log::debug!("heartbeat to endpoint {} was not accepted", slot.ep.id);
            }
            return None;
        }
        let ep = &mut slot.ep;
        let decision = policy::decide(
            Answer {
                status,
                retry_after,
            },
            ep,
            &sent.job.messages,
            now,
            &self.limits,
            jitter,
        );
        self.metrics.delivery(status, error);
        self.metrics
            .attempt_duration
            .observe(sent.duration.as_secs_f64());
        self.metrics.attempt_phases(&sent.timings);
        if decision.class == Class::Success {
            for m in &sent.job.messages {
                self.metrics
                    .delivery_lag
                    .observe((now - m.created_at).max(0) as f64 / 1000.0);
            }
            if ep.failures > 0 {
                log::info!(
                    "endpoint {} recovered after {} failed requests",
                    ep.id,
                    ep.failures
                );
            }
        }
        if decision.disable == Some(DisableReason::Gone) {
            log::warn!(
                "endpoint {} answered 410 Gone and is disabled; its messages wait",
                ep.id
            );
        }
        ep.failures = decision.failures;
        ep.failing_since = decision.failing_since;
        match decision.backoff {
            Backoff::Keep => {}
            Backoff::Clear => {
                ep.backoff_until = None;
                slot.backoff_until = None;
            }
            Backoff::Wait(wait) => {
                ep.backoff_until = Some(now + wait.as_millis() as i64);
                slot.backoff_until = Some(now_mono + wait);
                if ep.failures == 1 {
                    log::warn!(
                        "endpoint {} is failing ({}); backing off",
                        ep.id,
                        error.map_or_else(
                            || format!("HTTP {}", status.unwrap_or(0)),
                            |e| e.as_str().to_string()
                        )
                    );
                }
            }
        }
        let mut recovery = None;
        if decision.disable == Some(DisableReason::Failing) {
            // Probed from now on (SPEC 4.4), unless `recovery_for` is zero.
            ep.recovery =
                super::recovery::start(now, self.config.recovery_probe, self.config.recovery_for);
            slot.probe_at = ep.recovery.map(|_| now_mono + self.config.recovery_probe);
            recovery = ep.recovery.map(RecoveryChange::Start);
            log::warn!(
                "endpoint {} has failed since {} and is disabled{}",
                ep.id,
                crate::time::rfc3339(ep.failing_since.unwrap_or(now)),
                ep.recovery.map_or(String::new(), |r| format!(
                    "; probing it every {} until {}",
                    humantime::format_duration(self.config.recovery_probe),
                    crate::time::rfc3339(r.until)
                ))
            );
        }
        if decision.disable.is_some() {
            ep.enabled = false;
        }
        let verdicts = decision.verdicts;
        let mut messages = Vec::with_capacity(verdicts.len());
        let mut requeue = Vec::new();
        for (m, v) in sent.job.messages.iter().zip(verdicts) {
            match v {
                Verdict::Failed => log::warn!(
                    "message for event {} to endpoint {} failed after {} attempts",
                    m.event_id,
                    ep.id,
                    m.attempts + 1
                ),
                Verdict::Parked { .. } if !m.parked => {
                    log::info!(
                        "event {} parked for endpoint {} (HTTP {})",
                        m.event_id,
                        ep.id,
                        status.unwrap_or(0)
                    )
                }
                _ => {}
            }
            if m.parked || matches!(v, Verdict::Parked { .. }) {
                slot.parked_stale = true;
            }
            if v == Verdict::Pending && !m.parked {
                // Still the oldest: it goes first again, with this attempt counted.
                let mut again = m.clone();
                again.attempts += 1;
                requeue.push(again);
            }
            messages.push(MessageOutcome {
                seq: m.seq,
                attempt: m.attempts + 1,
                verdict: v,
            });
        }
        // The run's unsent messages were behind this request's, and still are.
        for m in sent
            .unsent
            .into_iter()
            .rev()
            .flat_map(|job| job.messages.into_iter().rev())
        {
            slot.queue.push_front(m);
        }
        for m in requeue.into_iter().rev() {
            slot.queue.push_front(m);
        }
        slot.unrecorded += 1;
        Some(RequestOutcome {
            endpoint_seq: ep.seq,
            at: sent.at,
            duration_ms,
            timings: sent.timings,
            status_code: status.map(i64::from),
            error: error.map(ErrorKind::as_str),
            response_body: body,
            messages,
            endpoint_failures: ep.failures,
            endpoint_failing_since: ep.failing_since,
            endpoint_backoff_until: ep.backoff_until,
            disable: decision.disable.map(DisableReason::as_str),
            recovery,
        })
    }
}
