//! Event intake: the group commit behind `POST /api/v1/events`, run by the threads that
//! answer requests. The thread that finds no commit running becomes the leader: it writes
//! every event queued so far in one transaction, waits for it to reach the disk, hands the
//! lead to the oldest thread still waiting, wakes the dispatcher for the endpoints that got
//! messages and answers each thread of the group. Many concurrent publishers so share one
//! flush, and no event is handed to a thread of its own: the leader commits its own event
//! without sleeping, a follower sleeps once.

use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::Thread;

use crate::delivery;
use crate::event::EventType;
use crate::metrics::Metrics;
use crate::store::{NewEvent, PublishResult, Store, StoreError};
use crate::supervise::Beat;

/// The most events written in one transaction.
const MAX_GROUP: usize = 512;

/// Why an event was not stored. Nothing of it was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublishError {
    /// The database reached `storage.max_size`, or the disk is full.
    Full,
    /// The store failed; the text says how.
    Failed(String),
}

impl std::fmt::Display for PublishError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PublishError::Full => write!(f, "{}", StoreError::Full),
            PublishError::Failed(why) => write!(f, "the event could not be stored: {why}"),
        }
    }
}

type Outcome = Result<PublishResult, PublishError>;

/// A clonable way to publish; every clone queues into the same group commit.
#[derive(Clone)]
pub struct Intake {
    shared: Arc<Shared>,
}

struct Shared {
    store: Arc<Store>,
    dispatcher: delivery::Handle,
    metrics: Arc<Metrics>,
    state: Mutex<State>,
    /// The lead's heartbeat: it beats as each group starts and rests when the lead ends, so
    /// a leader stuck in its commit or flush is seen by the supervisor.
    lead: Beat,
}

/// Invariant: when `leading` is false, `queue` is empty.
#[derive(Default)]
struct State {
    queue: Vec<Waiting>,
    /// A thread is committing a group, or has been handed the lead and will.
    leading: bool,
}

struct Waiting {
    event: NewEvent,
    slot: Arc<Slot>,
}

/// Where a waiting thread learns what became of its event, or that it leads next.
struct Slot {
    thread: Thread,
    note: Mutex<Option<Note>>,
}

enum Note {
    Done(Outcome),
    Lead,
}

impl Slot {
    fn new() -> Slot {
        Slot {
            thread: std::thread::current(),
            note: Mutex::new(None),
        }
    }

    fn put(&self, note: Note) {
        *self.note.lock().unwrap_or_else(|p| p.into_inner()) = Some(note);
        self.thread.unpark();
    }

    /// Sleeps until a note arrives. `unpark` before `park` makes `park` return at once, and a
    /// spurious wake-up finds no note and sleeps again, so no note is missed.
    fn wait(&self) -> Note {
        loop {
            if let Some(note) = self.note.lock().unwrap_or_else(|p| p.into_inner()).take() {
                return note;
            }
            std::thread::park();
        }
    }
}

impl Intake {
    /// `lead` is the supervisor's heartbeat of the leader role (`Supervisor::role`).
    pub fn new(
        store: Arc<Store>,
        dispatcher: delivery::Handle,
        metrics: Arc<Metrics>,
        lead: Beat,
    ) -> Intake {
        Intake {
            shared: Arc::new(Shared {
                store,
                dispatcher,
                metrics,
                state: Mutex::new(State::default()),
                lead,
            }),
        }
    }

    /// Stores `event` durably and returns once it is committed, or the store's error.
    pub fn publish(&self, event: NewEvent) -> Outcome {
        let slot = Arc::new(Slot::new());
        let lead = {
            let mut state = self.shared.lock();
            state.queue.push(Waiting {
                event,
                slot: slot.clone(),
            });
            !std::mem::replace(&mut state.leading, true)
        };
        if !lead {
            match slot.wait() {
                Note::Done(outcome) => return outcome,
                Note::Lead => {}
            }
        }
        // This thread's event is among the oldest MAX_GROUP queued: it was alone in the queue
        // when it found nobody leading, or first when the lead was handed to it.
        //
        // A panic while leading is caught here, on the request's own thread: unwinding
        // through the group's `Round` has answered every event of the group (this one
        // included) with an error, which the API turns into 503, and has handed the lead on,
        // and the writer's transaction rolled back. Nothing is left half-done, so the
        // intake goes on; letting the panic end this connection's thread instead would answer
        // this request 500 for no better reason.
        if let Err(panic) =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.shared.lead()))
        {
            log::error!(
                "the intake's leader panicked ({}); its group was refused with 503 and the lead handed on",
                crate::supervise::panic_message(&*panic)
            );
        }
        match slot.wait() {
            Note::Done(outcome) => outcome,
            Note::Lead => unreachable!("a leader is never handed the lead"),
        }
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Commits one group, waits for it to reach the disk, hands the lead on and answers the
    /// group. The hand-off runs even if the commit panics, and every waiter of the group is
    /// answered, so no thread sleeps forever.
    fn lead(&self) {
        self.lead.beat();
        let group: Vec<Waiting> = {
            let mut state = self.lock();
            let n = state.queue.len().min(MAX_GROUP);
            state.queue.drain(..n).collect()
        };
        let mut round = Round {
            shared: self,
            slots: Vec::with_capacity(group.len()),
            handed_off: false,
        };
        let mut events: Vec<NewEvent> = group
            .into_iter()
            .map(|w| {
                round.slots.push(w.slot);
                w.event
            })
            .collect();
        // From here on a panic is answered by `round`: the fault hook strikes here.
        self.lead.work();
        // The lead passes on only after the flush. Passing it on before (so that the next
        // group is written during this flush) shrank groups to about four events and cost
        // more CPU per event for no more throughput (BENCHMARKS.md).
        let outcome = self.store.publish(&mut events, crate::time::now_ms());
        round.hand_off();
        match outcome {
            Ok(results) => {
                let mut woken: Vec<i64> = Vec::new();
                for (r, e) in results.iter().zip(&events) {
                    if let PublishResult::Accepted { endpoints, .. } = r {
                        woken.extend(endpoints);
                        if let Some(t) = EventType::parse(&e.event_type) {
                            self.metrics.event_accepted(t);
                        }
                    }
                }
                woken.sort_unstable();
                woken.dedup();
                self.dispatcher.wake(woken);
                for (slot, result) in round.slots.drain(..).zip(results) {
                    slot.put(Note::Done(Ok(result)));
                }
            }
            Err(e) => {
                let error = match e {
                    StoreError::Full => PublishError::Full,
                    other => PublishError::Failed(other.to_string()),
                };
                log::error!("cannot store {} events: {error}", events.len());
                for slot in round.slots.drain(..) {
                    slot.put(Note::Done(Err(error.clone())));
                }
            }
        }
    }
}

/// One leader's group: hands the lead on and answers whoever is still unanswered, at the
/// latest when dropped.
struct Round<'a> {
    shared: &'a Shared,
    slots: Vec<Arc<Slot>>,
    handed_off: bool,
}

impl Round<'_> {
    /// Gives the lead to the oldest waiting thread, or ends it when nobody waits.
    fn hand_off(&mut self) {
        if std::mem::replace(&mut self.handed_off, true) {
            return;
        }
        let mut state = self.shared.lock();
        match state.queue.first() {
            Some(next) => next.slot.put(Note::Lead),
            None => {
                state.leading = false;
                self.shared.lead.rest();
            }
        }
    }
}

impl Drop for Round<'_> {
    fn drop(&mut self) {
        for slot in self.slots.drain(..) {
            slot.put(Note::Done(Err(PublishError::Failed(
                "the commit was interrupted".into(),
            ))));
        }
        self.hand_off();
    }
}
