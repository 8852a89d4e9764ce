//! The dispatcher's memory of one endpoint: what is in flight, when it last ended, its
//! read-ahead queue of pending messages, its backoff and parked dues.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use super::BACKOFF_BOUND;
use crate::store::{DispatchEndpoint, MessageSeq, QueuedMessage};
use crate::time::mono;

pub(super) struct Slot {
    pub(super) ep: DispatchEndpoint,
    /// The run in flight, if any: set its flag to stop it after its request in flight.
    pub(super) in_flight: Option<Arc<AtomicBool>>,
    /// When the dispatcher learnt that the last request to this endpoint ended (on the
    /// monotonic clock, like every deadline here). The window is counted from here rather than
    /// from the start: the receiver may see a request later than we start it (a new
    /// connection, a slow network), but never after its answer, so counting from the answer
    /// guarantees starts at least `batch_window` apart as the receiver sees them.
    pub(super) last_end: Option<Instant>,
    /// When the dispatcher began tracking the endpoint: a heartbeat's quiet time counts from
    /// here until the endpoint's first request ends.
    pub(super) tracked_since: Instant,
    /// When the endpoint's backoff ends: `ep.backoff_until` (wall ms, what the store shows) as
    /// a monotonic deadline, so that a stepped wall clock neither stalls nor shortens it.
    pub(super) backoff_until: Option<Instant>,
    /// Pending messages read from the store, oldest first, neither in flight nor finished:
    /// their ids and counters only, never their envelopes, which are read when a request is
    /// built. An endpoint that backs off for hours so holds a few hundred bytes per message.
    pub(super) queue: VecDeque<QueuedMessage>,
    /// The highest message seq read into `queue`; new messages are read after it, and those
    /// were never sent by this process, so their stored state is the truth even while
    /// outcomes wait to be recorded.
    pub(super) loaded_through: MessageSeq,
    /// The store may hold pending messages after `loaded_through`.
    pub(super) more: bool,
    /// Outcomes of this endpoint decided but not yet recorded: reads whose answer depends on
    /// recorded outcomes (parked messages, a reload) wait until there are none.
    pub(super) unrecorded: u32,
    /// The endpoint or its queue changed in the store (an API action, a failed record):
    /// re-read both once nothing is unrecorded.
    pub(super) stale: bool,
    /// When the earliest parked message is due.
    pub(super) parked_due: Option<Instant>,
    pub(super) parked_stale: bool,
    /// While the endpoint is disabled for failing: when its next recovery probe is due, as a
    /// monotonic deadline; `None` until derived from `ep.recovery` (after a start or reload).
    pub(super) probe_at: Option<Instant>,
    /// The request in flight is a recovery probe.
    pub(super) probing: bool,
}

impl Slot {
    pub(super) fn new(ep: DispatchEndpoint) -> Slot {
        Slot {
            backoff_until: ep
                .backoff_until
                .map(|at| crate::time::deadline(at, BACKOFF_BOUND)),
            ep,
            in_flight: None,
            last_end: None,
            tracked_since: mono(),
            queue: VecDeque::new(),
            loaded_through: MessageSeq(0),
            more: true,
            unrecorded: 0,
            stale: false,
            parked_due: None,
            parked_stale: true,
            probe_at: None,
            probing: false,
        }
    }
}
