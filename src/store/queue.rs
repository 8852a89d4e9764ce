//! The delivery side of the store: what the dispatcher reads to form requests and the one
//! transaction that records a set of finished requests. The dispatcher decides every new
//! state; this module only writes what it is told.

use std::collections::HashMap;

use rusqlite::types::{FromSql, FromSqlResult, ToSqlOutput, ValueRef};
use rusqlite::{Connection, OptionalExtension, params};

use super::recovery::{self, Recovery, RecoveryChange};
use super::{Durability, MessageStatus, Result, Store, Timings, counts, timings};

/// A message's row number (`messages.seq`), kept apart from other numbers by its type: a
/// delivery outcome carries a message seq, an endpoint seq and an attempt number side by side,
/// all of them `i64` in the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MessageSeq(pub i64);

/// An endpoint's row number (`endpoints.seq`, and `endpoint_seq` in the tables that refer to
/// it), never its public id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EndpointSeq(pub i64);

impl rusqlite::ToSql for MessageSeq {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        self.0.to_sql()
    }
}

impl FromSql for MessageSeq {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        i64::column_result(value).map(MessageSeq)
    }
}

impl rusqlite::ToSql for EndpointSeq {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        self.0.to_sql()
    }
}

impl FromSql for EndpointSeq {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        i64::column_result(value).map(EndpointSeq)
    }
}

/// An endpoint as the dispatcher needs it.
#[derive(Debug, Clone)]
pub struct DispatchEndpoint {
    pub seq: EndpointSeq,
    pub id: String,
    pub url: String,
    pub enabled: bool,
    pub batch_max: i64,
    pub batch_window_ms: i64,
    pub failures: i64,
    pub failing_since: Option<i64>,
    pub backoff_until: Option<i64>,
    /// Seconds without a request after which a heartbeat is due (SPEC 4.7); `None` is off.
    pub heartbeat_secs: Option<i64>,
    /// The probe schedule while it is disabled for failing (SPEC 4.4).
    pub recovery: Option<Recovery>,
    /// Every secret that may still sign, newest first, with when it stops (None: current).
    pub secrets: Vec<(String, Option<i64>)>,
}

/// A message ready to go out. Its event's envelope is not here: the dispatcher holds these
/// for every message it has read ahead, also while its endpoint backs off, and reads the
/// envelopes (`payloads`) only for the request it builds, so that memory follows the requests
/// in flight rather than what is pending.
#[derive(Debug, Clone)]
pub struct QueuedMessage {
    pub seq: MessageSeq,
    pub event_seq: i64,
    pub event_id: String,
    pub event_type: String,
    /// Attempts made so far.
    pub attempts: i64,
    /// Consecutive failures while parked.
    pub failures: i64,
    pub parked: bool,
    /// When `retry_for` starts counting: acceptance, or the last manual requeue.
    pub retry_from: i64,
    /// When the event was accepted.
    pub created_at: i64,
}

/// What the dispatcher decided for one message after a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Delivered,
    /// Parked (or still parked) until `next_attempt_at`, after `failures` consecutive failures.
    Parked {
        failures: i64,
        next_attempt_at: i64,
    },
    /// Stays where it is in the queue.
    Pending,
    Failed,
}

/// What one request did to one of the messages it carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageOutcome {
    /// The message.
    pub seq: MessageSeq,
    /// This attempt's number: 1 for the message's first request.
    pub attempt: i64,
    /// The message's new state.
    pub verdict: Verdict,
}

/// One finished request and every state change it causes.
#[derive(Debug, Clone)]
pub struct RequestOutcome {
    pub endpoint_seq: EndpointSeq,
    pub at: i64,
    pub duration_ms: i64,
    /// Its phases (SPEC 4.5).
    pub timings: Timings,
    pub status_code: Option<i64>,
    pub error: Option<&'static str>,
    pub response_body: Option<String>,
    /// Per message it carried, in the request's order.
    pub messages: Vec<MessageOutcome>,
    pub endpoint_failures: i64,
    pub endpoint_failing_since: Option<i64>,
    pub endpoint_backoff_until: Option<i64>,
    /// Set when this request disabled the endpoint (`gone`, `failing`).
    pub disable: Option<&'static str>,
    /// What this request changes in the endpoint's recovery, applied after `disable`.
    pub recovery: Option<RecoveryChange>,
}

const DISPATCH_COLUMNS: &str =
    "seq, id, url, enabled, batch_max, batch_window_ms, failures, failing_since, backoff_until,
     heartbeat_secs, recovery_next_at, recovery_probes, recovery_until";

fn dispatch_row(c: &Connection, r: &rusqlite::Row, now: i64) -> rusqlite::Result<DispatchEndpoint> {
    let seq: EndpointSeq = r.get(0)?;
    let mut stmt = c.prepare_cached(
        "SELECT secret, expires_at FROM endpoint_secrets
         WHERE endpoint_seq = ?1 AND (expires_at IS NULL OR expires_at > ?2)
         ORDER BY created_at DESC, rowid DESC",
    )?;
    let secrets = stmt
        .query_map(params![seq, now], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(DispatchEndpoint {
        seq,
        id: r.get(1)?,
        url: r.get(2)?,
        enabled: r.get(3)?,
        batch_max: r.get(4)?,
        batch_window_ms: r.get(5)?,
        failures: r.get(6)?,
        failing_since: r.get(7)?,
        backoff_until: r.get(8)?,
        heartbeat_secs: r.get(9)?,
        recovery: Recovery::from_columns(r.get(10)?, r.get(11)?, r.get(12)?),
        secrets,
    })
}

const QUEUED_COLUMNS: &str =
    "SELECT m.seq, m.event_seq, e.id, e.type, m.attempts, m.failures, m.status = 'parked',
        max(m.created_at, coalesce(m.requeued_at, 0)), m.created_at";
/// Envelopes by event seq, in the order of the JSON array `?1`; a unit test checks that each
/// is one lookup by the events' primary key.
pub(super) const PAYLOADS: &str = "SELECT e.payload FROM json_each(?1) j
     LEFT JOIN events e ON e.seq = j.value ORDER BY j.key";
const QUEUED_FROM: &str = "FROM messages m JOIN events e ON e.seq = m.event_seq";

fn queued_row(r: &rusqlite::Row) -> rusqlite::Result<QueuedMessage> {
    Ok(QueuedMessage {
        seq: r.get(0)?,
        event_seq: r.get(1)?,
        event_id: r.get(2)?,
        event_type: r.get(3)?,
        attempts: r.get(4)?,
        failures: r.get(5)?,
        parked: r.get(6)?,
        retry_from: r.get(7)?,
        created_at: r.get(8)?,
    })
}

impl Store {
    /// Every endpoint, for the dispatcher's start.
    pub fn dispatch_endpoints(&self, now: i64) -> Result<Vec<DispatchEndpoint>> {
        self.read(|c| {
            let sql = format!("SELECT {DISPATCH_COLUMNS} FROM endpoints ORDER BY seq");
            let mut stmt = c.prepare_cached(&sql)?;
            let rows = stmt.query_map([], |r| dispatch_row(c, r, now))?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }

    /// One endpoint, after the API changed it; `None` once it is deleted.
    pub fn dispatch_endpoint(
        &self,
        seq: EndpointSeq,
        now: i64,
    ) -> Result<Option<DispatchEndpoint>> {
        self.read(|c| {
            let sql = format!("SELECT {DISPATCH_COLUMNS} FROM endpoints WHERE seq = ?1");
            Ok(c.prepare_cached(&sql)?
                .query_row([seq], |r| dispatch_row(c, r, now))
                .optional()?)
        })
    }

    /// How many messages of an endpoint are pending, and when the oldest of them was
    /// accepted: what a heartbeat reports (SPEC 4.7). The count is kept per endpoint
    /// (`counts.rs`) and the oldest is the first through `messages_queue`, so neither reads
    /// the backlog.
    pub fn pending_summary(&self, endpoint_seq: EndpointSeq) -> Result<(i64, Option<i64>)> {
        self.read(|c| {
            let [pending, ..] = counts::of_endpoint(c, endpoint_seq.0)?;
            let oldest = c
                .prepare_cached(
                    "SELECT created_at FROM messages
                     WHERE endpoint_seq = ?1 AND status = 'pending' ORDER BY seq LIMIT 1",
                )?
                .query_row([endpoint_seq], |r| r.get(0))
                .optional()?;
            Ok((pending, oldest))
        })
    }

    /// The oldest pending messages of an endpoint after message `after`, in acceptance order.
    pub fn pending_after(
        &self,
        endpoint_seq: EndpointSeq,
        after: MessageSeq,
        limit: i64,
    ) -> Result<Vec<QueuedMessage>> {
        self.read(|c| {
            let sql = format!(
                "{QUEUED_COLUMNS} {QUEUED_FROM}
                 WHERE m.endpoint_seq = ?1 AND m.status = 'pending' AND m.seq > ?2 ORDER BY m.seq LIMIT ?3"
            );
            let mut stmt = c.prepare_cached(&sql)?;
            let rows = stmt.query_map(params![endpoint_seq, after, limit], queued_row)?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }

    /// The envelopes of these events, in the order asked, `None` for an event that is gone (its
    /// messages went with their endpoint). One statement on a reader connection, whatever the
    /// number: the seqs go in as one JSON array.
    pub fn payloads(&self, event_seqs: &[i64]) -> Result<Vec<Option<String>>> {
        let mut list = String::with_capacity(event_seqs.len() * 8 + 2);
        list.push('[');
        for (i, seq) in event_seqs.iter().enumerate() {
            if i > 0 {
                list.push(',');
            }
            list.push_str(&seq.to_string());
        }
        list.push(']');
        self.read(|c| {
            let mut stmt = c.prepare_cached(PAYLOADS)?;
            let rows = stmt.query_map([list], |r| r.get(0))?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }

    /// The parked message of an endpoint that is due first, due or not.
    pub fn next_parked(&self, endpoint_seq: EndpointSeq) -> Result<Option<(QueuedMessage, i64)>> {
        self.read(|c| {
            let sql = format!(
                "{QUEUED_COLUMNS}, coalesce(m.next_attempt_at, 0) {QUEUED_FROM}
                 WHERE m.endpoint_seq = ?1 AND m.status = 'parked' ORDER BY 10, m.seq LIMIT 1"
            );
            Ok(c.prepare_cached(&sql)?
                .query_row([endpoint_seq], |r| Ok((queued_row(r)?, r.get(9)?)))
                .optional()?)
        })
    }

    /// Records finished requests and every state change they cause, in one transaction. Each
    /// endpoint's row is checked and updated once, to its state after its last outcome.
    pub fn record(&self, outcomes: &[RequestOutcome]) -> Result<()> {
        self.write(Durability::Normal, |tx| {
            let mut insert_request = tx.prepare_cached(&format!(
                "INSERT INTO requests (endpoint_seq, at, duration_ms, status_code, error, response_body,
                                       {})
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
                timings::COLUMNS
            ))?;
            let mut insert_attempt = tx.prepare_cached(
                "INSERT OR REPLACE INTO attempts (message_seq, request_seq, attempt) VALUES (?1, ?2, ?3)",
            )?;
            // A message is pending when its request goes out but for parked ones and a rare
            // race with the API, so the update tries that first and learns the old status for
            // `/metrics` (`counts.rs`) without a read of its own; otherwise it reads it.
            let mut update_pending = tx.prepare_cached(
                "UPDATE messages SET attempts = ?2, status = ?3, failures = ?4, next_attempt_at = ?5,
                        finished_at = ?6 WHERE seq = ?1 AND status = 'pending'",
            )?;
            let mut status_of = tx.prepare_cached("SELECT status FROM messages WHERE seq = ?1")?;
            let mut update_message = tx.prepare_cached(
                "UPDATE messages SET attempts = ?2, status = ?3, failures = ?4, next_attempt_at = ?5,
                        finished_at = ?6 WHERE seq = ?1",
            )?;
            let mut update_endpoint = tx.prepare_cached(
                "UPDATE endpoints SET failures = ?2, failing_since = ?3, backoff_until = ?4 WHERE seq = ?1",
            )?;
            let mut disable_endpoint =
                tx.prepare_cached("UPDATE endpoints SET enabled = 0, disabled_reason = ?2 WHERE seq = ?1")?;
            // Per endpoint: whether it still exists (it may have been deleted while its
            // requests were in flight), and its last outcome here.
            let mut endpoints: HashMap<EndpointSeq, (bool, &RequestOutcome)> = HashMap::new();
            for o in outcomes {
                let exists = match endpoints.get(&o.endpoint_seq) {
                    Some(&(exists, _)) => exists,
                    None => tx
                        .prepare_cached("SELECT 1 FROM endpoints WHERE seq = ?1")?
                        .query_row([o.endpoint_seq], |_| Ok(()))
                        .optional()?
                        .is_some(),
                };
                endpoints.insert(o.endpoint_seq, (exists, o));
                if !exists {
                    continue;
                }
                // A recovery probe's ping carries no message, so it leaves no attempt.
                let request_seq = if o.messages.is_empty() {
                    0
                } else {
                    let [dns, connect, tls, ttfb, total, reused] =
                        timings::values(Some(&o.timings));
                    insert_request.execute(params![
                        o.endpoint_seq,
                        o.at,
                        o.duration_ms,
                        o.status_code,
                        o.error,
                        o.response_body,
                        dns,
                        connect,
                        tls,
                        ttfb,
                        total,
                        reused
                    ])?;
                    tx.last_insert_rowid()
                };
                let finished = o.at + o.duration_ms;
                for &MessageOutcome { seq, attempt, verdict } in &o.messages {
                    let (status, failures, next, finished_at) = match verdict {
                        Verdict::Delivered => (MessageStatus::Delivered, 0, None, Some(finished)),
                        Verdict::Parked {
                            failures,
                            next_attempt_at,
                        } => (MessageStatus::Parked, failures, Some(next_attempt_at), None),
                        Verdict::Pending => (MessageStatus::Pending, 0, None, None),
                        Verdict::Failed => (MessageStatus::Failed, 0, None, Some(finished)),
                    };
                    let row = params![seq, attempt, status, failures, next, finished_at];
                    let old = if update_pending.execute(row)? > 0 {
                        Some(MessageStatus::Pending)
                    } else {
                        // A message deleted with its endpoint mid-flight matches nothing.
                        let old: Option<MessageStatus> =
                            status_of.query_row([seq], |r| r.get(0)).optional()?;
                        match old {
                            Some(old) if update_message.execute(row)? > 0 => Some(old),
                            _ => continue,
                        }
                    };
                    counts::stage(o.endpoint_seq.0, old, Some(status), 1);
                    insert_attempt.execute(params![seq, request_seq, attempt])?;
                }
                if let Some(reason) = o.disable {
                    disable_endpoint.execute(params![o.endpoint_seq, reason])?;
                }
                if let Some(change) = o.recovery {
                    recovery::apply(tx, o.endpoint_seq.0, change)?;
                }
            }
            for (seq, (_, last)) in endpoints.into_iter().filter(|(_, (exists, _))| *exists) {
                update_endpoint.execute(params![
                    seq,
                    last.endpoint_failures,
                    last.endpoint_failing_since,
                    last.endpoint_backoff_until
                ])?;
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::{NewEvent, PublishResult};
    use super::*;

    #[test]
    fn payloads_come_in_the_order_asked_with_none_for_a_missing_event() {
        let (_dir, store) = crate::store::testkit::store();
        crate::store::testkit::endpoint(&store, &[]);
        let mut items: Vec<NewEvent> = (0..3)
            .map(|i| NewEvent {
                payload: format!("{{\"id\":\"{}\",\"n\":{i}}}", crate::event::UNASSIGNED_ID),
                event_type: "incident.created".into(),
                created_at: 10,
                only_endpoint: None,
                idempotency: None,
            })
            .collect();
        let results = store.publish(&mut items, 10).unwrap();
        assert!(
            results
                .iter()
                .all(|r| matches!(r, PublishResult::Accepted { .. }))
        );
        let queued = store
            .pending_after(EndpointSeq(1), MessageSeq(0), 10)
            .unwrap();
        let seqs: Vec<i64> = queued.iter().map(|m| m.event_seq).collect();
        assert_eq!(seqs.len(), 3);
        let asked = [seqs[2], 999_999, seqs[0]];
        let got = store.payloads(&asked).unwrap();
        assert_eq!(got.len(), 3);
        assert!(got[0].as_deref().is_some_and(|p| p.ends_with("\"n\":2}")));
        assert_eq!(got[1], None);
        assert!(got[2].as_deref().is_some_and(|p| p.ends_with("\"n\":0}")));
        assert_eq!(store.payloads(&[]).unwrap(), Vec::<Option<String>>::new());
        // Each envelope is one lookup by the primary key, never a scan of the events.
        let plan: Vec<String> = store
            .read(|c| {
                let mut stmt = c.prepare(&format!("EXPLAIN QUERY PLAN {PAYLOADS}"))?;
                let rows = stmt.query_map(["[1,2]"], |r| r.get::<_, String>(3))?;
                Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
            })
            .unwrap();
        assert!(
            plan.iter()
                .any(|p| p.contains("SEARCH e USING INTEGER PRIMARY KEY")),
            "{plan:?}"
        );
    }
}
