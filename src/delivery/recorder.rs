//! The recorder thread: writes the outcomes the dispatcher decided, many requests to one
//! transaction, and reports which endpoints' outcomes are now in the store. It decides
//! nothing and never reads the queue; only it writes delivery outcomes, in the order the
//! dispatcher sent them.

use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use crate::store::{EndpointSeq, RequestOutcome, Store};
use crate::supervise::{Beat, IDLE_WAKE};

/// How long the recorder gathers outcomes before writing them, and the most it writes at once.
const RECORD_GATHER: Duration = Duration::from_millis(2);
const RECORD_MAX: usize = 512;

/// What the recorder tells the dispatcher after each transaction.
pub(super) struct Recorded {
    /// The endpoint of each outcome written (or not), one entry per outcome.
    pub endpoints: Vec<EndpointSeq>,
    /// Whether the transaction committed; if not, the store still holds those messages as
    /// they were before their requests.
    pub committed: bool,
}

/// Writes every batch of outcomes waiting in one transaction and reports it, until the
/// dispatcher closes `batches`.
pub(super) fn run(
    store: &Store,
    batches: &Receiver<Vec<RequestOutcome>>,
    recorded: &Sender<Recorded>,
    beat: &Beat,
) {
    loop {
        beat.beat();
        let mut outcomes = match batches.recv_timeout(IDLE_WAKE) {
            Ok(outcomes) => outcomes,
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => return,
        };
        beat.work();
        // Outcomes arrive one worker's report at a time; gathering them for a moment makes one
        // transaction of many, which writes the same hot pages once instead of each time. The
        // thread sleeps through the gathering rather than waiting on the channel, so that the
        // dispatcher's hand-overs meanwhile wake nobody.
        std::thread::sleep(RECORD_GATHER);
        while outcomes.len() < RECORD_MAX {
            match batches.try_recv() {
                Ok(more) => outcomes.extend(more),
                Err(_) => break,
            }
        }
        let result = store.record(&outcomes);
        if let Err(e) = &result {
            log::error!("cannot record {} delivery outcomes: {e}", outcomes.len());
        }
        let report = Recorded {
            endpoints: outcomes.iter().map(|o| o.endpoint_seq).collect(),
            committed: result.is_ok(),
        };
        if recorded.send(report).is_err() {
            break;
        }
    }
}
