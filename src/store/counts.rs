//! Messages by status, per endpoint in the `message_counts` table and in all in memory, so
//! that neither a `/metrics` scrape nor an endpoint's view counts messages, however many the
//! database keeps (a scrape used to count every one, and the endpoints list counted each
//! endpoint's: 0.17 s for the settings page at 2 million messages).
//!
//! Each statement that adds, moves or removes messages stages what it changed (`stage`) in
//! the write transaction it runs in; `Store::write` writes what was staged into
//! `message_counts` just before that transaction commits (`persist`, one row per endpoint and
//! status touched), and adds it to the counts in memory once it has committed, or drops it
//! when it does not. A write transaction runs on one thread, holding the writer, from its
//! start to its commit, so the staged changes are kept per thread. Every statement that
//! changes a message's status is in this module's parent and in `queue.rs`; a unit test
//! checks the counts, the table's and memory's, against the messages after each of them.
//! Schema version 5 filled the table from the messages once; the start reads only the table.
//!
//! (Temporary triggers on the writer would have noted every change without the statements'
//! help, but they cost 30 to 50 % more time under the writer lock per message published or
//! recorded, measured.)

use std::cell::RefCell;
use std::sync::Mutex;

use rusqlite::{Connection, params};

use super::MessageStatus;

/// Changes by status, indexed by `MessageStatus::index` (the order of `MessageStatus::ALL`).
pub(super) type Delta = [i64; 4];

/// Changes by endpoint `seq` and status.
pub(super) type Staged = Vec<(i64, Delta)>;

thread_local! {
    /// What the write transaction running on this thread has changed so far.
    static STAGED: RefCell<Staged> = const { RefCell::new(Vec::new()) };
}

/// Notes, inside a write transaction, that `n` messages of endpoint `endpoint` went from
/// status `from` to status `to` (`None` for a message added or removed).
pub(super) fn stage(endpoint: i64, from: Option<MessageStatus>, to: Option<MessageStatus>, n: i64) {
    if n == 0 || from == to {
        return;
    }
    STAGED.with(|staged| {
        let mut staged = staged.borrow_mut();
        // A transaction touches a few endpoints: a list beats a map.
        let i = match staged.iter().position(|(e, _)| *e == endpoint) {
            Some(i) => i,
            None => {
                staged.push((endpoint, [0; 4]));
                staged.len() - 1
            }
        };
        let d = &mut staged[i].1;
        if let Some(from) = from {
            d[from.index()] -= n;
        }
        if let Some(to) = to {
            d[to.index()] += n;
        }
    });
}

/// Takes what was staged on this thread: called as a write transaction begins (dropping what
/// a failed one left) and just before it commits.
pub(super) fn take_staged() -> Staged {
    STAGED.with(|staged| std::mem::take(&mut *staged.borrow_mut()))
}

/// Writes `staged` into `message_counts`, inside the transaction that staged it. An endpoint
/// deleted in this transaction has no rows left to change (its rows went with it).
pub(super) fn persist(c: &Connection, staged: &Staged) -> rusqlite::Result<()> {
    let mut upsert = c.prepare_cached(
        "INSERT INTO message_counts (endpoint_seq, status, n)
         SELECT ?1, ?2, ?3 WHERE EXISTS (SELECT 1 FROM endpoints WHERE seq = ?1)
         ON CONFLICT (endpoint_seq, status) DO UPDATE SET n = n + excluded.n",
    )?;
    for (endpoint, delta) in staged {
        for (status, d) in MessageStatus::ALL.iter().zip(delta) {
            if *d != 0 {
                upsert.execute(params![endpoint, status, d])?;
            }
        }
    }
    Ok(())
}

/// One endpoint's messages by status, in the order of `MessageStatus::ALL`, from
/// `message_counts`.
pub(super) fn of_endpoint(c: &Connection, endpoint: i64) -> rusqlite::Result<Delta> {
    let mut stmt =
        c.prepare_cached("SELECT status, n FROM message_counts WHERE endpoint_seq = ?1")?;
    let rows = stmt.query_map([endpoint], |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
    })?;
    let mut out = Delta::default();
    for row in rows {
        let (status, n) = row?;
        if let Some(status) = MessageStatus::parse(&status) {
            out[status.index()] = n;
        }
    }
    Ok(out)
}

/// Messages by status, as committed. One lock over the four, so that a reader never sees a
/// transaction half-applied (a message gone from `pending` and not yet in `delivered`, say):
/// a scrape's totals always add up to the messages some commit left.
pub(super) struct MessageCounts {
    counts: Mutex<Delta>,
}

impl MessageCounts {
    /// Sums `message_counts`; call it once, before any write.
    pub(super) fn start(c: &Connection) -> rusqlite::Result<MessageCounts> {
        let mut stmt = c.prepare("SELECT status, sum(n) FROM message_counts GROUP BY status")?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
        let mut totals = Delta::default();
        for row in rows {
            let (status, n) = row?;
            if let Some(status) = MessageStatus::parse(&status) {
                totals[status.index()] += n;
            }
        }
        Ok(MessageCounts {
            counts: Mutex::new(totals),
        })
    }

    /// Adds what a committed transaction staged, all of it at once.
    pub(super) fn apply(&self, staged: &Staged) {
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        for (_, delta) in staged {
            for (count, d) in counts.iter_mut().zip(delta) {
                *count += d;
            }
        }
    }

    /// Messages by status, by name in the order of `MessageStatus::ALL`.
    pub(super) fn get(&self) -> [(&'static str, i64); 4] {
        let counts = *self.counts.lock().unwrap_or_else(|p| p.into_inner());
        std::array::from_fn(|i| (MessageStatus::ALL[i].as_str(), counts[i]))
    }
}

#[cfg(test)]
mod tests {
    use super::super::{
        Durability, EndpointRow, EndpointSeq, MessageOutcome, MessageSeq, NewEvent, RequestOutcome,
        Store, StoreError, Verdict,
    };
    use super::*;

    #[test]
    fn statuses_count_in_the_order_metrics_shows_them_and_read_back_by_name() {
        let names = MessageStatus::ALL.map(MessageStatus::as_str);
        assert_eq!(names, ["pending", "parked", "delivered", "failed"]);
        for (i, status) in MessageStatus::ALL.into_iter().enumerate() {
            assert_eq!(status.index(), i);
            assert_eq!(MessageStatus::parse(status.as_str()), Some(status));
        }
        assert_eq!(MessageStatus::parse("Pending"), None);
        assert_eq!(MessageStatus::parse(""), None);
    }

    #[test]
    fn a_reader_never_sees_a_commit_half_applied() {
        // Each commit moves one message from pending to delivered and back; the total is
        // 100 whenever a reader looks.
        let counts = std::sync::Arc::new(MessageCounts {
            counts: Mutex::new([100, 0, 0, 0]),
        });
        let writer = std::thread::spawn({
            let counts = counts.clone();
            move || {
                for _ in 0..200_000 {
                    counts.apply(&vec![(1, [-1, 0, 1, 0])]);
                    counts.apply(&vec![(1, [1, 0, -1, 0])]);
                }
            }
        });
        while !writer.is_finished() {
            let total: i64 = counts.get().iter().map(|(_, n)| n).sum();
            assert_eq!(total, 100, "a commit seen half-applied");
        }
        writer.join().unwrap();
    }

    /// The counts in memory, checked against a count of the table.
    fn assert_counts(s: &Store, what: &str) {
        let counted: [(&str, i64); 4] = s
            .read(|c| {
                let mut stmt = c.prepare("SELECT count(*) FROM messages WHERE status = ?1")?;
                let mut out = [("", 0); 4];
                for (i, status) in MessageStatus::ALL.iter().enumerate() {
                    out[i] = (status.as_str(), stmt.query_row([status], |r| r.get(0))?);
                }
                Ok(out)
            })
            .unwrap();
        assert_eq!(s.message_counts.get(), counted, "after {what}");
        // And each endpoint's, in the table, against its messages.
        let (table, messages) = s
            .read(|c| {
                let rows = |sql: &str| -> rusqlite::Result<Vec<(i64, String, i64)>> {
                    c.prepare(sql)?
                        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                        .collect()
                };
                Ok((
                    rows(
                        "SELECT endpoint_seq, status, n FROM message_counts WHERE n != 0
                          ORDER BY 1, 2",
                    )?,
                    rows(
                        "SELECT endpoint_seq, status, count(*) FROM messages
                          GROUP BY 1, 2 ORDER BY 1, 2",
                    )?,
                ))
            })
            .unwrap();
        assert_eq!(table, messages, "message_counts after {what}");
    }

    fn endpoint(s: &Store) -> EndpointRow {
        crate::store::testkit::endpoint(s, &[])
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

    /// What attempt `attempt` did to message `seq`.
    fn sent(seq: MessageSeq, attempt: i64, verdict: Verdict) -> MessageOutcome {
        MessageOutcome {
            seq,
            attempt,
            verdict,
        }
    }

    fn outcome(endpoint_seq: i64, messages: Vec<MessageOutcome>) -> RequestOutcome {
        RequestOutcome {
            endpoint_seq: EndpointSeq(endpoint_seq),
            at: 20,
            duration_ms: 1,
            timings: Default::default(),
            status_code: Some(200),
            error: None,
            response_body: None,
            messages,
            endpoint_failures: 0,
            endpoint_failing_since: None,
            endpoint_backoff_until: None,
            disable: None,
            recovery: None,
        }
    }

    #[test]
    fn counts_follow_an_endpoint_that_recovers() {
        use super::super::{Recovery, RecoveryChange};
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("t.db"), None).unwrap();
        let a = endpoint(&s);
        publish(&s, 2);
        let mut disabled = outcome(a.seq, Vec::new());
        disabled.disable = Some("failing");
        disabled.recovery = Some(RecoveryChange::Start(Recovery {
            next_probe_at: 30,
            probes: 0,
            until: 1000,
        }));
        s.record(&[disabled]).unwrap();
        // Accepted while it is disabled: no messages for it yet.
        publish(&s, 3);
        assert_counts(&s, "publishing to a disabled endpoint");
        let mut recovered = outcome(a.seq, Vec::new());
        // All three were accepted at 10, before `expired_before`: failed at once.
        recovered.recovery = Some(RecoveryChange::Recovered {
            expired_before: 11,
            now: 40,
        });
        s.record(&[recovered]).unwrap();
        assert_counts(&s, "recovering: the missed events failed at once");
        assert_eq!(s.message_counts.get()[3], ("failed", 3));
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
        let queue = s
            .pending_after(EndpointSeq(a.seq), MessageSeq(0), 100)
            .unwrap();
        let seqs: Vec<MessageSeq> = queue.iter().map(|m| m.seq).collect();
        let parked = Verdict::Parked {
            failures: 1,
            next_attempt_at: 99,
        };
        s.record(&[
            outcome(
                a.seq,
                vec![
                    sent(seqs[0], 1, Verdict::Delivered),
                    sent(seqs[1], 1, Verdict::Failed),
                    sent(seqs[2], 1, parked),
                    sent(seqs[3], 1, Verdict::Pending),
                ],
            ),
            // Parked again, then delivered: one change in memory per change in the table.
            outcome(a.seq, vec![sent(seqs[2], 2, parked)]),
            outcome(a.seq, vec![sent(seqs[4], 1, parked)]),
        ])
        .unwrap();
        assert_counts(&s, "recording outcomes");
        s.record(&[outcome(a.seq, vec![sent(seqs[4], 2, Verdict::Delivered)])])
            .unwrap();
        assert_counts(&s, "delivering a parked message");
        s.requeue_message(seqs[0].0, 30).unwrap();
        s.requeue_message(seqs[2].0, 30).unwrap();
        assert_counts(&s, "retrying a delivered and a parked message");
        assert_eq!(s.replay_failed(a.seq, 0, 30).unwrap(), 1);
        assert_counts(&s, "replaying");
        s.record(&[outcome(
            a.seq,
            seqs.iter()
                .map(|&m| sent(m, 3, Verdict::Delivered))
                .collect(),
        )])
        .unwrap();
        assert_counts(&s, "delivering everything of one endpoint");
        // A write that fails leaves the counts as they were.
        let refused = s.write(Durability::Normal, |tx| {
            let n = tx.execute("UPDATE messages SET status = 'failed'", [])?;
            stage(
                a.seq,
                Some(MessageStatus::Delivered),
                Some(MessageStatus::Failed),
                n as i64,
            );
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
