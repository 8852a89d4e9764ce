//! Messages by status, kept in memory for `/metrics`, so that a scrape counts nothing however
//! many messages the database keeps (it used to count every one of them, per scrape).
//!
//! The counts are read once when the store opens. After that, temporary triggers on the
//! writer connection note every change of a message's status (an insert, an update of
//! `status`, a delete, cascades included) in a temporary table, which `write` empties just
//! before each commit and adds to the counts just after it. So every writer, the ones to come
//! included, keeps the counts right without knowing of them, and a transaction that rolls back
//! takes its changes to the temporary table with it. Temporary objects live on the writer
//! connection only; readers are read-only and never change a message.

use std::sync::atomic::{AtomicI64, Ordering};

use rusqlite::Connection;

/// The statuses a message can have, in the order `/metrics` shows them.
pub(super) const STATUSES: [&str; 4] = ["pending", "parked", "delivered", "failed"];

/// Changes by status within one transaction, in the order of `STATUSES`.
pub(super) type Delta = [i64; 4];

const TRIGGERS: &str = "
    CREATE TEMP TABLE message_delta (status TEXT PRIMARY KEY, n INTEGER NOT NULL) WITHOUT ROWID;
    CREATE TEMP TRIGGER message_added AFTER INSERT ON main.messages BEGIN
        INSERT INTO message_delta (status, n) VALUES (NEW.status, 1)
            ON CONFLICT (status) DO UPDATE SET n = n + 1;
    END;
    CREATE TEMP TRIGGER message_removed AFTER DELETE ON main.messages BEGIN
        INSERT INTO message_delta (status, n) VALUES (OLD.status, -1)
            ON CONFLICT (status) DO UPDATE SET n = n - 1;
    END;
    CREATE TEMP TRIGGER message_moved AFTER UPDATE OF status ON main.messages
        WHEN OLD.status IS NOT NEW.status BEGIN
        INSERT INTO message_delta (status, n) VALUES (OLD.status, -1)
            ON CONFLICT (status) DO UPDATE SET n = n - 1;
        INSERT INTO message_delta (status, n) VALUES (NEW.status, 1)
            ON CONFLICT (status) DO UPDATE SET n = n + 1;
    END;";

/// Messages by status, as committed.
pub(super) struct MessageCounts {
    counts: [AtomicI64; 4],
}

impl MessageCounts {
    /// Counts the messages the database holds and sets up the triggers on `writer`; call it
    /// once, on the writer, after the migrations and before any other write.
    pub(super) fn start(writer: &Connection) -> rusqlite::Result<MessageCounts> {
        writer.execute_batch(TRIGGERS)?;
        let counts = MessageCounts {
            counts: Default::default(),
        };
        let mut stmt = writer.prepare("SELECT status, count(*) FROM messages GROUP BY status")?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
        let mut delta = Delta::default();
        for row in rows {
            let (status, n) = row?;
            if let Some(i) = STATUSES.iter().position(|s| *s == status) {
                delta[i] += n;
            }
        }
        counts.apply(&delta);
        Ok(counts)
    }

    /// Takes the changes the transaction on `writer` has made so far; apply them with
    /// `apply` once it has committed.
    pub(super) fn take(writer: &Connection) -> rusqlite::Result<Delta> {
        let mut delta = Delta::default();
        let mut stmt =
            writer.prepare_cached("DELETE FROM temp.message_delta RETURNING status, n")?;
        let mut rows = stmt.query([])?;
        while let Some(row) = rows.next()? {
            let status: String = row.get(0)?;
            if let Some(i) = STATUSES.iter().position(|s| *s == status) {
                delta[i] += row.get::<_, i64>(1)?;
            }
        }
        Ok(delta)
    }

    pub(super) fn apply(&self, delta: &Delta) {
        for (count, d) in self.counts.iter().zip(delta) {
            if *d != 0 {
                count.fetch_add(*d, Ordering::Relaxed);
            }
        }
    }

    /// Messages by status, in the order of `STATUSES`.
    pub(super) fn get(&self) -> [(&'static str, i64); 4] {
        std::array::from_fn(|i| (STATUSES[i], self.counts[i].load(Ordering::Relaxed)))
    }
}

#[cfg(test)]
mod tests {
    use super::super::{
        Durability, EndpointRow, NewEndpoint, NewEvent, RequestOutcome, Store, StoreError, Verdict,
    };
    use super::*;

    /// The counts in memory, checked against a count of the table.
    fn assert_counts(s: &Store, what: &str) {
        let counted: [(&str, i64); 4] = s
            .read(|c| {
                let mut stmt = c.prepare("SELECT count(*) FROM messages WHERE status = ?1")?;
                let mut out = [("", 0); 4];
                for (i, status) in STATUSES.iter().enumerate() {
                    out[i] = (*status, stmt.query_row([status], |r| r.get(0))?);
                }
                Ok(out)
            })
            .unwrap();
        assert_eq!(s.message_counts.get(), counted, "after {what}");
    }

    fn endpoint(s: &Store) -> EndpointRow {
        s.create_endpoint(&NewEndpoint {
            id: crate::id::new("ep"),
            url: "http://127.0.0.1:9/".into(),
            description: String::new(),
            event_types: Vec::new(),
            enabled: true,
            batch_max: 100,
            batch_window_ms: 0,
            secret: crate::secret::generate(),
            now: 1,
        })
        .unwrap()
    }

    fn publish(s: &Store, n: usize) {
        let mut items: Vec<NewEvent> = (0..n)
            .map(|_| NewEvent {
                payload: format!("{{\"id\":\"{}\"}}", crate::event::UNASSIGNED_ID),
                event_type: "incident.created".into(),
                created_at: 10,
                only_endpoint: None,
                idempotency: None,
            })
            .collect();
        s.publish(&mut items, 10).unwrap();
    }

    fn outcome(endpoint_seq: i64, messages: Vec<(i64, i64, Verdict)>) -> RequestOutcome {
        RequestOutcome {
            endpoint_seq,
            at: 20,
            duration_ms: 1,
            status_code: Some(200),
            error: None,
            response_body: None,
            messages,
            endpoint_failures: 0,
            endpoint_failing_since: None,
            endpoint_backoff_until: None,
            disable: None,
        }
    }

    #[test]
    fn counts_follow_every_change_of_status_and_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let s = Store::open(&path, None).unwrap();
        let a = endpoint(&s);
        let b = endpoint(&s);
        publish(&s, 6);
        assert_counts(&s, "publishing");
        assert_eq!(s.message_counts.get()[0], ("pending", 12));
        let queue = s.pending_after(a.seq, 0, 100).unwrap();
        let seqs: Vec<i64> = queue.iter().map(|m| m.seq).collect();
        let parked = Verdict::Parked {
            failures: 1,
            next_attempt_at: 99,
        };
        s.record(&[
            outcome(
                a.seq,
                vec![
                    (seqs[0], 1, Verdict::Delivered),
                    (seqs[1], 1, Verdict::Failed),
                    (seqs[2], 1, parked),
                    (seqs[3], 1, Verdict::Pending),
                ],
            ),
            // Parked again, then delivered: one change in memory per change in the table.
            outcome(a.seq, vec![(seqs[2], 2, parked)]),
            outcome(a.seq, vec![(seqs[4], 1, parked)]),
        ])
        .unwrap();
        assert_counts(&s, "recording outcomes");
        s.record(&[outcome(a.seq, vec![(seqs[4], 2, Verdict::Delivered)])])
            .unwrap();
        assert_counts(&s, "delivering a parked message");
        s.requeue_message(seqs[0], 30).unwrap();
        s.requeue_message(seqs[2], 30).unwrap();
        assert_counts(&s, "retrying a delivered and a parked message");
        assert_eq!(s.replay_failed(a.seq, 0, 30).unwrap(), 1);
        assert_counts(&s, "replaying");
        s.record(&[outcome(
            a.seq,
            seqs.iter().map(|&m| (m, 3, Verdict::Delivered)).collect(),
        )])
        .unwrap();
        assert_counts(&s, "delivering everything of one endpoint");
        // A write that fails leaves the counts as they were.
        let refused = s.write(Durability::Normal, |tx| {
            tx.execute("UPDATE messages SET status = 'failed'", [])?;
            Err::<(), _>(StoreError::Refused("rolled back".into()))
        });
        assert!(refused.is_err());
        assert_counts(&s, "a write rolled back");
        assert_eq!(s.prune(i64::MAX, 0, 2).unwrap(), 2);
        assert_counts(&s, "retention");
        s.delete_endpoint(&b.id).unwrap();
        assert_counts(&s, "deleting an endpoint with its messages");
        assert_eq!(
            s.message_counts.get(),
            [
                ("pending", 0),
                ("parked", 0),
                ("delivered", 4),
                ("failed", 0)
            ]
        );
        drop(s);
        let s = Store::open(&path, None).unwrap();
        assert_counts(&s, "a restart");
        assert_eq!(s.message_counts.get()[2], ("delivered", 4));
    }
}
