//! Synthetic HTTP monitors: one scheduler thread and a fixed pool of `monitors.checkers`
//! checker threads. The scheduler keeps every enabled monitor's next due time in a min-heap
//! and hands due checks to the pool over a channel; it never waits on a check, so a slow
//! target holds one checker, never the schedule. At most one check per monitor is in flight:
//! a check still running when its next one falls due makes that one skip.
//!
//! A checker makes the request, then records the check with everything it causes (state,
//! events, incident, SLA warning) in one store transaction, and wakes the dispatcher. The
//! scheduler does not touch the database except to read monitors when told they changed.
//!
//! Push monitors (SPEC 7) share the heap: a push monitor's entry is its ping deadline
//! (last ping + interval + grace). The API records a ping itself and tells the scheduler,
//! which moves the deadline; a deadline that falls due goes to a checker like an HTTP check
//! and is recorded as a failed check (`no_ping`), then falls due again an interval later
//! while no ping comes. No thread waits on any one push monitor.

mod check;
pub mod record;
pub mod rules;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use crate::config::Config;
use crate::delivery;
use crate::metrics::Metrics;
use crate::store::{MonitorRow, Store, StoreError};
use crate::supervise::{Beat, IDLE_WAKE, READER_BOUND, Supervisor, WRITER_BOUND};
use record::CheckContext;
use rules::{Kind, Outcome};

/// What the rest of the program tells the scheduler.
pub enum Command {
    /// A monitor was created, edited or deleted: reload it.
    Changed(i64),
    /// A push monitor was pinged (its check is recorded): move its deadline.
    Pinged(i64),
    /// Stop scheduling; checks in flight are abandoned.
    Shutdown,
}

/// A cheap, clonable way to reach the scheduler.
#[derive(Clone)]
pub struct Handle {
    commands: Sender<Command>,
}

impl Handle {
    pub fn changed(&self, monitor_seq: i64) {
        // A closed channel means the scheduler has stopped; the change is stored and is read
        // at the next start.
        let _ = self.commands.send(Command::Changed(monitor_seq));
    }

    pub fn pinged(&self, monitor_seq: i64) {
        // As for `changed`: a stopped scheduler reads the last ping at its next start.
        let _ = self.commands.send(Command::Pinged(monitor_seq));
    }

    pub fn shutdown(&self) {
        let _ = self.commands.send(Command::Shutdown);
    }
}

/// A check to make, with the monitor as it was when the check fell due.
struct Job {
    monitor: MonitorRow,
}

/// A checker finished the check of this monitor.
struct Done {
    seq: i64,
}

/// What the checkers share.
struct Checker {
    store: Arc<Store>,
    agent: ureq::Agent,
    dispatcher: delivery::Handle,
    metrics: Arc<Metrics>,
    region: String,
    keep_ms: i64,
}

/// Starts the checkers and the scheduler. The returned thread ends after `Handle::shutdown`;
/// checkers end when their current check does.
///
/// A checker that panics is restarted (`supervise.rs`): it holds nothing between checks, the
/// check it was making is abandoned (its transaction, if one was open, rolls back, and a check
/// not recorded changes nothing), and the scheduler still hears that the check ended, so the
/// monitor is checked again at its next turn. The scheduler is not restarted: a fresh one
/// would not know which checks are in flight, so its death ends the process.
pub fn start(
    store: Arc<Store>,
    config: &Config,
    dispatcher: delivery::Handle,
    metrics: Arc<Metrics>,
    supervisor: &Supervisor,
) -> Result<(Handle, JoinHandle<()>), String> {
    let checker = Arc::new(Checker {
        store: store.clone(),
        agent: crate::net::agent(&config.delivery, &config.network)?,
        dispatcher,
        metrics,
        region: config.monitors.region.clone(),
        keep_ms: i64::from(config.storage.retention_days) * 86_400_000,
    });
    let (commands_tx, commands_rx) = crossbeam_channel::unbounded();
    let (jobs_tx, jobs_rx) = crossbeam_channel::unbounded::<Job>();
    let (done_tx, done_rx) = crossbeam_channel::unbounded();
    // A check's request ends within its timeout, then it reads and writes the store.
    let checker_bound = Duration::from_millis(rules::MAX_TIMEOUT_MS as u64) + WRITER_BOUND;
    for i in 0..config.monitors.checkers {
        let (checker, jobs, done) = (checker.clone(), jobs_rx.clone(), done_tx.clone());
        supervisor
            .spawn_restarting(&format!("checker-{i}"), checker_bound, move |beat| {
                loop {
                    beat.beat();
                    let job = match jobs.recv_timeout(IDLE_WAKE) {
                        Ok(job) => job,
                        Err(RecvTimeoutError::Timeout) => continue,
                        Err(RecvTimeoutError::Disconnected) => return,
                    };
                    // Tells the scheduler the check ended however it ends, a panic included,
                    // so that the monitor is not left in flight for good.
                    let _ended = Ended {
                        done: &done,
                        seq: job.monitor.seq,
                    };
                    beat.work();
                    // A panic in one monitor's check ends that check, not the checker: a bug
                    // that one monitor's answer sets off every second would otherwise spend
                    // the supervisor's restart budget (10 a minute) and end the process, and
                    // every other monitor and every delivery with it. Nothing outlives a
                    // check but what the store committed, and its write rolled back.
                    let checked =
                        catch_unwind(AssertUnwindSafe(|| run_check(&checker, &job.monitor)));
                    if checked.is_err() {
                        log::error!(
                            "monitor {}: its check panicked (the panic is logged above); it is checked again at its next turn",
                            job.monitor.id
                        );
                    }
                }
            })
            .map_err(|e| format!("cannot start monitor checker: {e}"))?;
    }
    let monitors = store
        .enabled_monitors()
        .map_err(|e| format!("cannot read monitors: {e}"))?;
    let scheduler = Scheduler {
        store,
        slots: HashMap::new(),
        heap: BinaryHeap::new(),
        generation: 0,
        jobs: jobs_tx,
    };
    let thread = supervisor
        .spawn("monitors", READER_BOUND, move |beat| {
            scheduler.run(monitors, commands_rx, done_rx, beat)
        })
        .map_err(|e| format!("cannot start monitor scheduler: {e}"))?;
    Ok((
        Handle {
            commands: commands_tx,
        },
        thread,
    ))
}

/// Sends `Done` for its check when dropped.
struct Ended<'a> {
    done: &'a Sender<Done>,
    seq: i64,
}

impl Drop for Ended<'_> {
    fn drop(&mut self) {
        // A closed channel means the scheduler has stopped; nobody waits for the check.
        let _ = self.done.send(Done { seq: self.seq });
    }
}

struct Slot {
    monitor: MonitorRow,
    /// Changes with every reload, so heap entries of older settings are skipped.
    generation: u64,
    in_flight: bool,
    /// A turn that fell due while the previous check still ran, and when it was due: taken
    /// when that check ends, if that is still timely.
    owed: Option<Instant>,
}

struct Scheduler {
    store: Arc<Store>,
    slots: HashMap<i64, Slot>,
    /// Next due time of each monitor (with the generation it was scheduled under).
    heap: BinaryHeap<Reverse<(Instant, i64, u64)>>,
    generation: u64,
    jobs: Sender<Job>,
}

/// How long the scheduler sleeps when no monitor is due.
const IDLE: Duration = Duration::from_secs(3600);

impl Scheduler {
    fn run(
        mut self,
        monitors: Vec<MonitorRow>,
        commands: Receiver<Command>,
        done: Receiver<Done>,
        beat: &Beat,
    ) {
        let wall = crate::time::now_ms();
        let now = crate::time::mono();
        for m in monitors {
            // Continue each monitor's rhythm across a restart instead of checking all at once.
            let interval = m.settings.interval_ms;
            let wait = match m.settings.kind {
                Kind::Http => m
                    .last_checked_at
                    .map_or(0, |t| (t + interval - wall).clamp(0, interval)),
                Kind::Push => push_wait(&m, wall),
            };
            self.insert(m, now + Duration::from_millis(wait as u64));
        }
        if !self.slots.is_empty() {
            log::info!("monitors: {} enabled", self.slots.len());
        }
        loop {
            beat.work();
            let timeout =
                crate::time::wait(self.heap.peek().map_or(IDLE, |Reverse((due, _, _))| {
                    due.saturating_duration_since(crate::time::mono())
                }));
            crossbeam_channel::select! {
                recv(commands) -> command => match command {
                    Ok(Command::Changed(seq)) => self.reload(seq),
                    Ok(Command::Pinged(seq)) => self.pinged(seq),
                    Ok(Command::Shutdown) | Err(_) => break,
                },
                recv(done) -> finished => {
                    if let Ok(d) = finished {
                        self.finished(d.seq);
                    }
                },
                default(timeout.min(IDLE_WAKE)) => {},
            }
            self.dispatch_due();
        }
        // Dropping `jobs` ends each checker after its current check.
        log::debug!("monitor scheduler stopped");
    }

    fn insert(&mut self, monitor: MonitorRow, due: Instant) {
        self.generation += 1;
        let (seq, generation) = (monitor.seq, self.generation);
        let in_flight = self.slots.get(&seq).is_some_and(|s| s.in_flight);
        self.slots.insert(
            seq,
            Slot {
                monitor,
                generation,
                in_flight,
                owed: None,
            },
        );
        self.heap.push(Reverse((due, seq, generation)));
    }

    fn reload(&mut self, seq: i64) {
        match self.store.monitor_by_seq(seq) {
            Ok(Some(m)) if m.settings.enabled => {
                // New or edited settings take effect with a check now; a push monitor's
                // deadline is reckoned from its last ping (or its creation) instead, since
                // an edit is no missed ping.
                let wait = match m.settings.kind {
                    Kind::Http => 0,
                    Kind::Push => push_wait(&m, crate::time::now_ms()),
                };
                self.insert(m, crate::time::mono() + Duration::from_millis(wait as u64));
            }
            Ok(_) => {
                self.slots.remove(&seq);
            }
            Err(e) => log::error!("cannot reload monitor {seq}: {e}"),
        }
    }

    /// A push monitor was pinged: its next deadline is a full interval plus grace away.
    fn pinged(&mut self, seq: i64) {
        let Some(slot) = self.slots.get(&seq) else {
            return;
        };
        let monitor = slot.monitor.clone();
        let wait = push_window_ms(&monitor);
        self.insert(
            monitor,
            crate::time::mono() + Duration::from_millis(wait as u64),
        );
    }

    fn dispatch_due(&mut self) {
        let now = crate::time::mono();
        while let Some(&Reverse((due, seq, generation))) = self.heap.peek() {
            if due > now {
                break;
            }
            self.heap.pop();
            let Some(slot) = self.slots.get_mut(&seq) else {
                continue;
            };
            if slot.generation != generation {
                continue;
            }
            let interval = interval_of(&slot.monitor);
            if slot.in_flight {
                slot.owed = Some(due);
            } else if !send(&self.jobs, slot) {
                return;
            }
            self.heap
                .push(Reverse((next_due(due, now, interval), seq, generation)));
        }
    }

    /// A check ended: its monitor's turn that fell due meanwhile is taken now if it is still
    /// timely, and skipped otherwise.
    fn finished(&mut self, seq: i64) {
        let Some(slot) = self.slots.get_mut(&seq) else {
            return;
        };
        slot.in_flight = false;
        let Some(due) = slot.owed.take() else {
            return;
        };
        if timely(due, crate::time::mono(), interval_of(&slot.monitor)) {
            send(&self.jobs, slot);
        } else {
            log::debug!(
                "monitor {}: the previous check ran past the next turn; skipping it",
                slot.monitor.id
            );
        }
    }
}

/// How long a push monitor waits for a ping: its interval plus its grace.
fn push_window_ms(m: &MonitorRow) -> i64 {
    m.settings.interval_ms.max(1) + m.settings.grace_ms.max(0)
}

/// How long from `wall` until a push monitor's deadline, reckoned from its last check (a
/// ping, or a missed one) or its last edit, whichever is later; zero when already past. An
/// edit counts because resuming a paused monitor, or changing its interval, is no missed
/// ping: the job gets a whole window to report.
fn push_wait(m: &MonitorRow, wall: i64) -> i64 {
    let since = m.last_checked_at.unwrap_or(m.created_at).max(m.updated_at);
    (since + push_window_ms(m) - wall).clamp(0, push_window_ms(m))
}

fn interval_of(m: &MonitorRow) -> Duration {
    Duration::from_millis(m.settings.interval_ms.max(1) as u64)
}

/// Sends `slot`'s monitor to the checkers; false when they are gone (shutdown).
fn send(jobs: &Sender<Job>, slot: &mut Slot) -> bool {
    let job = Job {
        monitor: slot.monitor.clone(),
    };
    if jobs.send(job).is_err() {
        return false;
    }
    slot.in_flight = true;
    true
}

/// Whether a turn due at `due` is still worth taking at `now`: at most half an interval
/// late. A later one would fall closer to the next turn than to its own.
fn timely(due: Instant, now: Instant, interval: Duration) -> bool {
    now.saturating_duration_since(due) <= interval / 2
}

/// When a monitor is next due after its turn due at `due` was taken at `now`. On time (or
/// nearly) the rhythm is kept: `due + interval`. After a stall (a suspended VM, a busy
/// machine, a clock jump) of more than half an interval it goes on from now: the slot after
/// `due` may lie only milliseconds ahead, and taking it would check the monitor twice in a
/// row instead of once an interval.
fn next_due(due: Instant, now: Instant, interval: Duration) -> Instant {
    if timely(due, now, interval) {
        due + interval
    } else {
        now + interval
    }
}

/// Checks one monitor and records what happened. A push monitor's turn comes only when its
/// deadline passed without a ping, so its check is a missed ping.
fn run_check(c: &Checker, m: &MonitorRow) {
    crate::supervise::fault_point("check");
    let s = &m.settings;
    let (outcome, region) = match s.kind {
        Kind::Push if pinged_meanwhile(c, m) => return,
        Kind::Push => (
            rules::push_outcome(crate::time::now_ms(), Some(rules::NO_PING)),
            rules::PUSH_REGION,
        ),
        Kind::Http => {
            let expected = rules::Expected::parse(&s.expected_status)
                .or_else(|_| rules::Expected::parse(rules::Expected::DEFAULT))
                .expect("the default expected_status parses");
            let timeout = Duration::from_millis(s.timeout_ms.max(1) as u64);
            let outcome = check::run(&c.agent, &s.method, &s.url, timeout, &expected);
            (outcome, c.region.as_str())
        }
    };
    let recorder = Recorder {
        store: &c.store,
        dispatcher: &c.dispatcher,
        metrics: &c.metrics,
        region,
        keep_ms: c.keep_ms,
    };
    if let Err(e) = record(&recorder, m, &outcome) {
        log::error!("monitor {}: cannot record a check: {e}", m.id);
    }
}

/// Whether a ping (or a reported failure) was recorded after this deadline's job was sent:
/// a ping that lands just as its deadline falls due races the job, and must not be followed
/// by a missed ping. The newest check tells: one that is not a missed ping and leaves more
/// than a second of the window (a margin for the wall and monotonic clocks' drift) came in
/// time. A missed ping recorded last never skips, so a silent job keeps failing each
/// interval.
fn pinged_meanwhile(c: &Checker, m: &MonitorRow) -> bool {
    let now = crate::time::now_ms();
    match c.store.list_checks(m.seq, None, 1) {
        Ok(rows) => rows.first().is_some_and(|last| {
            last.error.as_deref() != Some(rules::NO_PING)
                && last.at + push_window_ms(m) > now + 1000
        }),
        Err(e) => {
            log::error!("monitor {}: cannot read its last check: {e}", m.id);
            false
        }
    }
}

/// What recording a check needs: shared by the checkers and by the API's ping route.
pub struct Recorder<'a> {
    pub store: &'a Store,
    pub dispatcher: &'a delivery::Handle,
    pub metrics: &'a Metrics,
    /// The `region` of the events this check may emit.
    pub region: &'a str,
    pub keep_ms: i64,
}

/// Records one check of `m` with everything it causes (state, events, incident, SLA
/// warning) in one store transaction, and wakes the dispatcher for what it emitted. A check
/// not recorded (the error) changes nothing. The SLA history is read before, outside the
/// writer lock.
pub fn record(r: &Recorder, m: &MonitorRow, outcome: &Outcome) -> Result<(), StoreError> {
    let s = &m.settings;
    let now = crate::time::now_ms();
    let history = match s.sla_target {
        None => None,
        Some(_) => match record::sla_history(r.store, m.seq, s.sla_window_days, now) {
            Ok(h) => Some(h),
            Err(e) => {
                log::error!("monitor {}: cannot read its SLA history: {e}", m.id);
                None
            }
        },
    };
    let ctx = CheckContext {
        region: r.region,
        keep_ms: r.keep_ms,
        now,
    };
    match record::record_check(r.store, m.seq, outcome, history, &ctx) {
        Ok(Some(emitted)) => {
            let mut woken = Vec::new();
            let target = match s.kind {
                Kind::Http => host_of(&s.url),
                Kind::Push => rules::PUSH_REGION.to_string(),
            };
            for e in emitted {
                r.metrics.event_accepted(e.event_type);
                log::info!(
                    "monitor {} ({}): {} {} ({}, {} ms)",
                    m.id,
                    target,
                    e.event_type.as_str(),
                    e.event_id,
                    outcome.status_code.map_or_else(
                        || outcome.error.unwrap_or("error").to_string(),
                        |c| { c.to_string() }
                    ),
                    outcome.response_time_ms
                );
                woken.extend(e.endpoints);
            }
            woken.sort_unstable();
            woken.dedup();
            r.dispatcher.wake(woken);
            Ok(())
        }
        Ok(None) => Ok(()),
        Err(e) => Err(e),
    }
}

/// The host of a URL, for log lines that must not carry paths (they may hold tokens).
fn host_of(url: &str) -> String {
    url.parse::<http::Uri>()
        .ok()
        .and_then(|u| u.host().map(str::to_string))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::{next_due, push_wait, timely};
    use crate::monitor::rules::{Kind, State};
    use crate::store::{MonitorRow, MonitorSettings};
    use std::time::{Duration, Instant};

    fn push_monitor(created: i64, updated: i64, last: Option<i64>) -> MonitorRow {
        MonitorRow {
            seq: 1,
            id: "mon_a".into(),
            settings: MonitorSettings {
                name: "job".into(),
                url: String::new(),
                method: "GET".into(),
                interval_ms: 60_000,
                timeout_ms: 0,
                expected_status: "200-299".into(),
                failures_before_down: 1,
                successes_before_up: 1,
                component_id: None,
                auto_incident: true,
                severity: crate::event::Severity::Major,
                sla_target: None,
                sla_window_days: 30.0,
                enabled: true,
                kind: Kind::Push,
                grace_ms: 30_000,
            },
            state: State::NEW,
            incident_id: None,
            arming: crate::sla::Arming {
                armed: true,
                false_since: None,
            },
            last_checked_at: last,
            created_at: created,
            updated_at: updated,
            push_token: None,
        }
    }

    #[test]
    fn a_push_deadline_is_interval_plus_grace_after_the_last_check_or_edit() {
        // (created, updated, last check, now, wait): the window is 90 s.
        let rows: [(i64, i64, Option<i64>, i64, i64); 6] = [
            (0, 0, None, 0, 90_000),
            (0, 0, None, 60_000, 30_000),
            (0, 0, Some(50_000), 60_000, 80_000),
            (0, 0, Some(0), 200_000, 0),
            // An edit (a resume) after the last check gives a whole window again.
            (0, 150_000, Some(0), 200_000, 40_000),
            // A wall clock that went back never waits more than one window.
            (0, 0, Some(500_000), 0, 90_000),
        ];
        for (created, updated, last, now, want) in rows {
            let m = push_monitor(created, updated, last);
            assert_eq!(
                push_wait(&m, now),
                want,
                "{created} {updated} {last:?} {now}"
            );
        }
    }

    const MINUTE: Duration = Duration::from_secs(60);

    #[test]
    fn a_turn_taken_on_time_or_nearly_keeps_the_rhythm() {
        let due = Instant::now();
        assert_eq!(next_due(due, due, MINUTE), due + MINUTE);
        let late = due + Duration::from_secs(1);
        assert_eq!(next_due(due, late, MINUTE), due + MINUTE);
        let half = due + MINUTE / 2;
        assert_eq!(next_due(due, half, MINUTE), due + MINUTE);
    }

    #[test]
    fn a_turn_taken_more_than_half_an_interval_late_goes_on_from_now() {
        let due = Instant::now();
        // Two intervals late (a clock jump): the slot after `due` is already past, and the
        // one after that lies only seconds ahead; neither is taken.
        let now = due + 2 * MINUTE + Duration::from_secs(1);
        assert_eq!(next_due(due, now, MINUTE), now + MINUTE);
        let now = due + MINUTE / 2 + Duration::from_millis(1);
        assert_eq!(next_due(due, now, MINUTE), now + MINUTE);
    }

    #[test]
    fn a_turn_owed_to_a_running_check_is_timely_for_half_an_interval() {
        let due = Instant::now();
        assert!(timely(due, due, MINUTE));
        assert!(timely(due, due + MINUTE / 2, MINUTE));
        assert!(!timely(
            due,
            due + MINUTE / 2 + Duration::from_millis(1),
            MINUTE
        ));
        // A time before `due` (never asked, but harmless) is timely.
        assert!(timely(due + MINUTE, due, MINUTE));
    }
}
