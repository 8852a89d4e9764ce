//! Event intake: the group commit behind `POST /api/v1/events`. API threads hand events to one
//! intake thread, which writes everything that has queued up in one durable transaction and
//! answers each caller, so that many concurrent publishers share one fsync instead of
//! queueing for one each. After the commit it wakes the dispatcher for the endpoints that
//! got messages.

use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender};

use crate::delivery;
use crate::event::EventType;
use crate::metrics::Metrics;
use crate::store::{NewEvent, PublishResult, Store, StoreError};

/// The most events written in one transaction.
const MAX_GROUP: usize = 512;

struct Request {
    event: NewEvent,
    reply: Sender<Result<PublishResult, PublishError>>,
}

/// Why an event was not stored. Nothing of it was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublishError {
    /// The database reached `storage.max_size`, or the disk is full.
    Full,
    /// The store failed; the text says how.
    Failed(String),
    /// The service is stopping.
    ShuttingDown,
}

impl std::fmt::Display for PublishError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PublishError::Full => write!(f, "{}", StoreError::Full),
            PublishError::Failed(why) => write!(f, "the event could not be stored: {why}"),
            PublishError::ShuttingDown => write!(f, "the server is shutting down"),
        }
    }
}

/// A clonable way to publish; the intake thread ends when every `Intake` is dropped.
#[derive(Clone)]
pub struct Intake {
    requests: Sender<Request>,
}

impl Intake {
    pub fn start(
        store: Arc<Store>,
        dispatcher: delivery::Handle,
        metrics: Arc<Metrics>,
    ) -> std::io::Result<(Intake, JoinHandle<()>)> {
        let (tx, rx) = crossbeam_channel::unbounded();
        let thread = std::thread::Builder::new()
            .name("intake".into())
            .spawn(move || run(&store, &dispatcher, &metrics, rx))?;
        Ok((Intake { requests: tx }, thread))
    }

    /// Stores `event` durably and returns once it is committed, or the store's error.
    pub fn publish(&self, event: NewEvent) -> Result<PublishResult, PublishError> {
        let (reply, answer) = crossbeam_channel::bounded(1);
        self.requests
            .send(Request { event, reply })
            .map_err(|_| PublishError::ShuttingDown)?;
        answer.recv().map_err(|_| PublishError::ShuttingDown)?
    }
}

fn run(
    store: &Store,
    dispatcher: &delivery::Handle,
    metrics: &Metrics,
    requests: Receiver<Request>,
) {
    while let Ok(first) = requests.recv() {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match requests.try_recv() {
                Ok(r) => group.push(r),
                Err(_) => break,
            }
        }
        let (events, replies): (Vec<NewEvent>, Vec<_>) =
            group.into_iter().map(|r| (r.event, r.reply)).unzip();
        match store.publish(&events, crate::time::now_ms()) {
            Ok(results) => {
                let mut woken: Vec<i64> = Vec::new();
                for (r, e) in results.iter().zip(&events) {
                    if let PublishResult::Accepted { endpoints } = r {
                        woken.extend(endpoints);
                        if let Some(t) = EventType::parse(&e.event_type) {
                            metrics.event_accepted(t);
                        }
                    }
                }
                woken.sort_unstable();
                woken.dedup();
                dispatcher.wake(woken);
                for (reply, result) in replies.into_iter().zip(results) {
                    let _ = reply.send(Ok(result));
                }
            }
            Err(e) => {
                let error = match e {
                    StoreError::Full => PublishError::Full,
                    other => PublishError::Failed(other.to_string()),
                };
                log::error!("cannot store {} events: {error}", events.len());
                for reply in replies {
                    let _ = reply.send(Err(error.clone()));
                }
            }
        }
    }
}
