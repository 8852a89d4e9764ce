//! The store's side of endpoints that heal (SPEC 4.4, last paragraph): an endpoint disabled
//! for failing keeps its probe schedule in its row (`recovery_next_at`, `recovery_probes`,
//! `recovery_until`), so that a restart picks it up, and the highest event `seq` when it was
//! disabled (`missed_after_event`), so that the events it missed can be found when it comes
//! back. The rules that decide when to probe and what a probe's answer means are
//! `delivery::recovery`'s, as pure functions; this module only writes what it is told, inside
//! the recorder's transaction.

use rusqlite::{OptionalExtension, Transaction, params};

use super::{MessageStatus, Result, counts};

/// An endpoint's probe schedule, as its row keeps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recovery {
    /// When the next probe goes out, wall ms.
    pub next_probe_at: i64,
    /// Probes sent so far since the endpoint was disabled.
    pub probes: i64,
    /// When probing ends, wall ms: `recovery_for` after the endpoint was disabled.
    pub until: i64,
}

impl Recovery {
    /// The schedule from the three columns; `None` when the endpoint is not being probed.
    pub(super) fn from_columns(
        next_probe_at: Option<i64>,
        probes: i64,
        until: Option<i64>,
    ) -> Option<Recovery> {
        Some(Recovery {
            next_probe_at: next_probe_at?,
            probes,
            until: until?,
        })
    }
}

/// What a recorded request changes in an endpoint's recovery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecoveryChange {
    /// The request disabled the endpoint for failing: probing starts on this schedule, and
    /// the events accepted from now on are the ones it will miss.
    Start(Recovery),
    /// A probe failed: the schedule goes on.
    Next(Recovery),
    /// Probing ends, `recovery_for` after the endpoint was disabled; it stays disabled.
    End,
    /// A probe was answered 410: the endpoint is disabled as `gone` and probing ends.
    Gone,
    /// A probe got a 2xx: the endpoint is enabled again, and every event it missed that its
    /// filter matches is queued for it, in acceptance order, after what was pending; those
    /// accepted before `expired_before` (wall ms: `retry_for` ago) are `failed` at once,
    /// finished at `now`.
    Recovered { expired_before: i64, now: i64 },
}

/// Which endpoints a probe's outcome may still change: disabled for failing and being
/// probed. A person who enabled or disabled the endpoint while the probe was in flight ended
/// its recovery, and the probe's answer does not override them.
const RECOVERING: &str =
    "seq = ?1 AND enabled = 0 AND disabled_reason = 'failing' AND recovery_next_at IS NOT NULL";

/// Applies `change` to endpoint `seq` inside the recorder's transaction; returns how many
/// missed events were queued (pending or failed) when it recovered.
pub(super) fn apply(tx: &Transaction, seq: i64, change: RecoveryChange) -> Result<i64> {
    match change {
        RecoveryChange::Start(r) => {
            // Events are numbered in commit order and this transaction holds the writer, so
            // every event above this one is accepted after the endpoint stopped taking them.
            tx.prepare_cached(
                "UPDATE endpoints SET recovery_next_at = ?2, recovery_probes = ?3,
                        recovery_until = ?4,
                        missed_after_event = (SELECT coalesce(max(seq), 0) FROM events)
                 WHERE seq = ?1 AND enabled = 0 AND disabled_reason = 'failing'",
            )?
            .execute(params![seq, r.next_probe_at, r.probes, r.until])?;
            Ok(0)
        }
        RecoveryChange::Next(r) => {
            let sql = format!(
                "UPDATE endpoints SET recovery_next_at = ?2, recovery_probes = ?3 WHERE {RECOVERING}"
            );
            tx.prepare_cached(&sql)?
                .execute(params![seq, r.next_probe_at, r.probes])?;
            Ok(0)
        }
        RecoveryChange::End => {
            let sql = format!("UPDATE endpoints SET {CLEAR} WHERE {RECOVERING}");
            tx.prepare_cached(&sql)?.execute([seq])?;
            Ok(0)
        }
        RecoveryChange::Gone => {
            let sql = format!(
                "UPDATE endpoints SET disabled_reason = 'gone', {CLEAR} WHERE {RECOVERING}"
            );
            tx.prepare_cached(&sql)?.execute([seq])?;
            Ok(0)
        }
        RecoveryChange::Recovered {
            expired_before,
            now,
        } => recover(tx, seq, expired_before, now),
    }
}

/// The assignments that end an endpoint's recovery.
pub(super) const CLEAR: &str =
    "recovery_next_at = NULL, recovery_probes = 0, recovery_until = NULL,
     missed_after_event = NULL";

/// Queues for endpoint `?1` the events after `?2` that its filter `?5` (comma-separated, empty:
/// every type) matches: those accepted before `?3` as `failed`, finished at `?4`. An event sent
/// to one endpoint only (a test event) is not one it missed, nor is one it already has a
/// message for. The events are a range of their primary key and each check one lookup
/// through `messages_by_event`; a unit test checks the plan.
const CATCH_UP: &str =
    "INSERT INTO messages (event_seq, endpoint_seq, status, created_at, finished_at)
     SELECT e.seq, ?1,
            CASE WHEN e.created_at < ?3 THEN 'failed' ELSE 'pending' END,
            e.created_at, CASE WHEN e.created_at < ?3 THEN ?4 END
     FROM events e
     WHERE e.seq > ?2 AND e.only_endpoint IS NULL
       AND (?5 = '' OR instr(',' || ?5 || ',', ',' || e.type || ',') > 0)
       AND NOT EXISTS (SELECT 1 FROM messages m
                       WHERE m.event_seq = e.seq AND m.endpoint_seq = ?1)
     ORDER BY e.seq";

fn recover(tx: &Transaction, seq: i64, expired_before: i64, now: i64) -> Result<i64> {
    let found: Option<(i64, String)> = tx
        .prepare_cached(&format!(
            "SELECT coalesce(missed_after_event, 0), event_types FROM endpoints WHERE {RECOVERING}"
        ))?
        .query_row([seq], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let Some((missed_after, event_types)) = found else {
        return Ok(0);
    };
    tx.prepare_cached(&format!(
        "UPDATE endpoints SET enabled = 1, disabled_reason = NULL, failures = 0,
                failing_since = NULL, backoff_until = NULL, {CLEAR} WHERE seq = ?1"
    ))?
    .execute([seq])?;
    // New messages take seqs above every message there is, so they go out after what was
    // pending, in the order of their events; the dispatcher reads by message seq.
    let before: i64 = tx
        .prepare_cached("SELECT coalesce(max(seq), 0) FROM messages")?
        .query_row([], |r| r.get(0))?;
    let queued = tx.prepare_cached(CATCH_UP)?.execute(params![
        seq,
        missed_after,
        expired_before,
        now,
        event_types
    ])?;
    if queued > 0 {
        let mut by_status = tx.prepare_cached(
            "SELECT status, count(*) FROM messages WHERE seq > ?1 AND endpoint_seq = ?2
             GROUP BY status",
        )?;
        let mut rows = by_status.query(params![before, seq])?;
        while let Some(row) = rows.next()? {
            let status: MessageStatus = row.get(0)?;
            counts::stage(seq, None, Some(status), row.get(1)?);
        }
    }
    Ok(queued as i64)
}

#[cfg(test)]
mod tests {
    use super::super::{EndpointSeq, NewEvent, RequestOutcome, Store};
    use super::*;

    fn endpoint(s: &Store, types: &[&str]) -> i64 {
        crate::store::testkit::endpoint(s, types).seq
    }

    /// Publishes one event of type `t` accepted at `at`, to `only` or to every subscriber.
    fn publish(s: &Store, t: &str, at: i64, only: Option<i64>) {
        let mut items = vec![NewEvent {
            payload: format!("{{\"id\":\"{}\"}}", crate::event::UNASSIGNED_ID),
            event_type: t.into(),
            created_at: at,
            only_endpoint: only,
            idempotency: None,
        }];
        s.publish(&mut items, at).unwrap();
    }

    fn outcome(seq: i64, change: RecoveryChange, disable: Option<&'static str>) -> RequestOutcome {
        RequestOutcome {
            endpoint_seq: EndpointSeq(seq),
            at: 50,
            duration_ms: 1,
            status_code: Some(500),
            error: None,
            response_body: None,
            messages: Vec::new(),
            endpoint_failures: 3,
            endpoint_failing_since: Some(20),
            endpoint_backoff_until: Some(60),
            disable,
            recovery: Some(change),
            timings: Default::default(),
        }
    }

    /// (event type, status) of an endpoint's messages, in message order.
    fn messages(s: &Store, seq: i64) -> Vec<(String, String)> {
        s.read(|c| {
            let mut stmt = c.prepare(
                "SELECT e.type, m.status FROM messages m JOIN events e ON e.seq = m.event_seq
                 WHERE m.endpoint_seq = ?1 ORDER BY m.seq",
            )?;
            let rows = stmt.query_map([seq], |r| Ok((r.get(0)?, r.get(1)?)))?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .unwrap()
    }

    #[test]
    fn a_recovered_endpoint_gets_what_it_missed_in_order_after_what_was_pending() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("t.db"), None).unwrap();
        let a = endpoint(&s, &["incident.created", "incident.resolved"]);
        let b = endpoint(&s, &[]);
        publish(&s, "incident.created", 10, None);
        let schedule = Recovery {
            next_probe_at: 100,
            probes: 0,
            until: 1000,
        };
        s.record(&[outcome(a, RecoveryChange::Start(schedule), Some("failing"))])
            .unwrap();
        let row = |seq| {
            s.list_endpoints(None, 10)
                .unwrap()
                .into_iter()
                .find(|e| e.seq == seq)
                .unwrap()
        };
        assert_eq!(row(a).recovery, Some(schedule));
        assert_eq!(row(a).disabled_reason.as_deref(), Some("failing"));
        // While disabled: an old one, one its filter refuses, a test event for another
        // endpoint, and two new ones.
        publish(&s, "incident.resolved", 11, None);
        publish(&s, "monitor.status_change", 30, None);
        publish(&s, "incident.created", 31, Some(b));
        publish(&s, "incident.created", 40, None);
        publish(&s, "incident.resolved", 41, None);
        let next = Recovery {
            next_probe_at: 200,
            probes: 1,
            until: 1000,
        };
        s.record(&[outcome(a, RecoveryChange::Next(next), None)])
            .unwrap();
        assert_eq!(row(a).recovery, Some(next));
        let recovered = RecoveryChange::Recovered {
            expired_before: 20,
            now: 300,
        };
        let mut ok = outcome(a, recovered, None);
        ok.endpoint_failures = 0;
        ok.endpoint_failing_since = None;
        ok.endpoint_backoff_until = None;
        s.record(&[ok]).unwrap();
        let ep = row(a);
        assert!(ep.enabled);
        assert_eq!(ep.disabled_reason, None);
        assert_eq!(ep.recovery, None);
        assert_eq!(
            (ep.failures, ep.failing_since, ep.backoff_until),
            (0, None, None)
        );
        let pair = |t: &str, st: &str| (t.to_string(), st.to_string());
        assert_eq!(
            messages(&s, a),
            [
                pair("incident.created", "pending"),
                pair("incident.resolved", "failed"),
                pair("incident.created", "pending"),
                pair("incident.resolved", "pending"),
            ]
        );
        // A second report of the same probe (a duplicate) queues nothing twice.
        s.record(&[outcome(a, recovered, None)]).unwrap();
        assert_eq!(messages(&s, a).len(), 4);
        let stats = s.endpoint_stats(a).unwrap();
        assert_eq!((stats.pending, stats.failed), (3, 1));
        // The message that failed at once can be replayed.
        assert_eq!(s.replay_failed(a, 0, 400).unwrap(), 1);
    }

    #[test]
    fn the_catch_up_reads_a_range_of_events_and_looks_each_up_once() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("t.db"), None).unwrap();
        let plan = s
            .read(|c| Ok(super::super::tests::query_plan(c, CATCH_UP)))
            .unwrap();
        assert!(
            plan.contains("SEARCH e USING INTEGER PRIMARY KEY (rowid>?)"),
            "{plan}"
        );
        assert!(plan.contains("messages_by_event"), "{plan}");
        assert!(!plan.contains("SCAN"), "{plan}");
    }

    #[test]
    fn a_person_or_a_gone_probe_ends_the_recovery() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("t.db"), None).unwrap();
        let schedule = Recovery {
            next_probe_at: 100,
            probes: 0,
            until: 1000,
        };
        let id = |seq: i64| {
            s.list_endpoints(None, 10)
                .unwrap()
                .into_iter()
                .find(|e| e.seq == seq)
                .unwrap()
        };
        // A 410 on a probe: gone, probed no more.
        let a = endpoint(&s, &[]);
        s.record(&[outcome(a, RecoveryChange::Start(schedule), Some("failing"))])
            .unwrap();
        s.record(&[outcome(a, RecoveryChange::Gone, None)]).unwrap();
        assert_eq!(id(a).disabled_reason.as_deref(), Some("gone"));
        assert_eq!(id(a).recovery, None);
        // A person disables it again: manual, probed no more; a late probe's 2xx changes
        // nothing.
        let b = endpoint(&s, &[]);
        s.record(&[outcome(b, RecoveryChange::Start(schedule), Some("failing"))])
            .unwrap();
        let patch = super::super::EndpointPatch {
            enabled: Some(false),
            ..Default::default()
        };
        s.update_endpoint(&id(b).id, &patch, 70).unwrap();
        assert_eq!(id(b).disabled_reason.as_deref(), Some("manual"));
        assert_eq!(id(b).recovery, None);
        let late = RecoveryChange::Recovered {
            expired_before: 0,
            now: 80,
        };
        s.record(&[outcome(b, late, None)]).unwrap();
        assert!(!id(b).enabled);
        // A person enables it: probed no more either.
        let c = endpoint(&s, &[]);
        s.record(&[outcome(c, RecoveryChange::Start(schedule), Some("failing"))])
            .unwrap();
        let patch = super::super::EndpointPatch {
            enabled: Some(true),
            ..Default::default()
        };
        s.update_endpoint(&id(c).id, &patch, 70).unwrap();
        assert!(id(c).enabled);
        assert_eq!(id(c).recovery, None);
        // Over: cleared, still disabled for failing.
        let d = endpoint(&s, &[]);
        s.record(&[outcome(d, RecoveryChange::Start(schedule), Some("failing"))])
            .unwrap();
        s.record(&[outcome(d, RecoveryChange::End, None)]).unwrap();
        assert_eq!(id(d).disabled_reason.as_deref(), Some("failing"));
        assert_eq!(id(d).recovery, None);
    }
}
