//! The typed transaction the domain writes through: `Store::transact` hands a rule module
//! (`incident.rs`, `monitor/record.rs`) a `Tx` over the writer's transaction, with the table
//! operations it needs and `emit`, which writes an event and its messages through the store's
//! one fan-out (`publish_one`) in that same transaction. So an event the appliance makes is
//! committed with the change that causes it, or not at all, whoever decides it.
//!
//! A `Tx` is taken only through `Store::write`, so that the health flag, the staged message
//! counts (`counts.rs`) and the flush of the log (`flush.rs`) apply to it as to every write.
//! It holds no rule: the table operations of each family are in that family's file, as
//! `impl Tx` blocks beside the statements they share.

use rusqlite::Transaction;
use serde_json::Value;

use super::events::{EventSeqs, publish_one, subscribers};
use super::{Durability, NewEvent, PublishResult, Result, Store};
use crate::event::EventType;
use crate::id::EventIds;

/// One event a write produced: its type (for metrics) and the endpoints that got messages
/// (for the dispatcher).
#[derive(Debug, Clone, PartialEq)]
pub struct Emitted {
    pub event_id: String,
    pub event_type: EventType,
    pub endpoints: Vec<i64>,
}

/// One write transaction on the writer connection, with the events emitted in it so far.
pub struct Tx<'a> {
    tx: &'a Transaction<'a>,
    event_ids: &'a EventIds,
    /// Event `seq`s handed out in this transaction.
    seqs: EventSeqs,
    /// The enabled endpoints and their filters, read at the first `emit`.
    subscribers: Option<Vec<(i64, Vec<String>)>>,
    emitted: Vec<Emitted>,
}

impl Tx<'_> {
    /// The transaction itself, for the table operations of the store's own files.
    pub(super) fn conn(&self) -> &Transaction<'_> {
        self.tx
    }

    /// Stores one event of `event_type` with `data`, created `now`, and a message for each
    /// enabled endpoint it concerns, in this transaction. `data` must be valid for the type
    /// (`event::validate`); the event's id comes from the store.
    pub fn emit(&mut self, event_type: EventType, data: &Value, now: i64) -> Result<()> {
        debug_assert_eq!(crate::event::validate(event_type, data), Ok(()));
        let mut item = NewEvent {
            payload: crate::event::envelope(
                crate::event::UNASSIGNED_ID,
                event_type.as_str(),
                now,
                data,
            ),
            event_type: event_type.as_str().to_string(),
            created_at: now,
            only_endpoint: None,
            idempotency: None,
        };
        let subscribers = match self.subscribers.take() {
            Some(s) => s,
            None => subscribers(self.tx)?,
        };
        let published = publish_one(
            self.tx,
            self.event_ids,
            &mut self.seqs,
            &mut item,
            &subscribers,
            now,
        );
        self.subscribers = Some(subscribers);
        match published? {
            PublishResult::Accepted {
                event_id,
                endpoints,
            } => self.emitted.push(Emitted {
                event_id,
                event_type,
                endpoints,
            }),
            // Without an idempotency key every event is accepted.
            PublishResult::Repeated { .. } | PublishResult::Conflict => {}
        }
        Ok(())
    }
}

impl Store {
    /// Runs `f` in one immediate transaction on the writer, through the same path as every
    /// write (`Store::write`), and returns its value with the events it emitted. The events
    /// are committed with whatever else `f` wrote, or, when `f` or the commit fails, not at
    /// all. A write that emitted an event is refused with `StoreError::Full` once
    /// `storage.max_size` is reached, as a publish is.
    pub fn transact<T>(
        &self,
        durability: Durability,
        f: impl FnOnce(&mut Tx) -> Result<T>,
    ) -> Result<(T, Vec<Emitted>)> {
        self.write(durability, |tx| {
            let mut t = Tx {
                tx,
                event_ids: &self.event_ids,
                seqs: EventSeqs::default(),
                subscribers: None,
                emitted: Vec::new(),
            };
            let value = f(&mut t)?;
            self.ensure_room(tx, &t.emitted)?;
            Ok((value, t.emitted))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{IncidentRow, IncidentStatus, StoreError};

    use crate::store::testkit::store;

    fn incident(id: &str) -> IncidentRow {
        IncidentRow {
            seq: 0,
            id: id.into(),
            title: "Outage".into(),
            status: IncidentStatus::Investigating,
            severity: crate::event::Severity::Major,
            components: Vec::new(),
            source: crate::store::IncidentSource::Manual,
            monitor_id: None,
            started_at: 10,
            resolved_at: None,
            updated_at: 10,
        }
    }

    /// Valid `incident.created` data (its ids need not match the rows here).
    fn data() -> Value {
        crate::event::sample_data(EventType::IncidentCreated, 10)
    }

    /// The invariant of ARCHITECTURE.md: an event emitted in a `Tx` is committed with the
    /// change that causes it, and a transaction that fails after its `emit` leaves neither
    /// the change, nor the event, nor its messages, nor their counts.
    #[test]
    fn an_emitted_event_commits_with_its_change_or_not_at_all() {
        let (_dir, store) = store();
        let endpoint = crate::store::testkit::endpoint(&store, &[]).seq;

        let failed = store.transact(Durability::Full, |tx| {
            tx.insert_incident(&incident("inc_failed"))?;
            tx.emit(EventType::IncidentCreated, &data(), 10)?;
            Err::<(), _>(StoreError::Refused(
                "the change failed after its event".into(),
            ))
        });
        assert!(failed.is_err());
        assert!(store.incident("inc_failed").unwrap().is_none());
        assert!(store.list_events(None, None, 10).unwrap().is_empty());
        assert_eq!(store.endpoint_stats(endpoint).unwrap().pending, 0);
        assert_eq!(store.counts().unwrap(), (1, 0));

        let ((), emitted) = store
            .transact(Durability::Full, |tx| {
                tx.insert_incident(&incident("inc_kept"))?;
                tx.emit(EventType::IncidentCreated, &data(), 10)?;
                tx.emit(EventType::IncidentCreated, &data(), 11)
            })
            .unwrap();
        assert!(store.incident("inc_kept").unwrap().is_some());
        let events = store.list_events(None, None, 10).unwrap();
        assert_eq!(events.len(), 2);
        assert_eq!(
            emitted
                .iter()
                .map(|e| e.event_id.as_str())
                .collect::<Vec<_>>(),
            [events[1].id.as_str(), events[0].id.as_str()],
            "oldest first, each with its own id"
        );
        for e in &emitted {
            assert_eq!(
                (e.event_type, e.endpoints.as_slice()),
                (EventType::IncidentCreated, [endpoint].as_slice())
            );
        }
        assert_eq!(store.endpoint_stats(endpoint).unwrap().pending, 2);
        assert_eq!(store.counts().unwrap(), (1, 2));
    }

    /// A write that emits an event is refused once `storage.max_size` is reached, with all it
    /// wrote; one that emits nothing goes on.
    #[test]
    fn a_full_store_refuses_a_transaction_that_emits() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("t.db"), Some(1)).unwrap();
        let full = store.transact(Durability::Full, |tx| {
            tx.insert_incident(&incident("inc_a"))?;
            tx.emit(EventType::IncidentCreated, &data(), 10)
        });
        assert!(matches!(full, Err(StoreError::Full)), "{full:?}");
        assert!(store.incident("inc_a").unwrap().is_none());
        store
            .transact(Durability::Full, |tx| {
                tx.insert_incident(&incident("inc_b"))
            })
            .unwrap();
        assert!(store.incident("inc_b").unwrap().is_some());
    }
}
