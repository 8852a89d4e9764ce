//! Events and their messages: the one fan-out (`publish_one`) that writes an event with a
//! message for each endpoint it concerns, which the intake's group commit and `Tx::emit` share;
//! event ids and `seq`s; idempotency keys; the list and show routes' reads, with each
//! message's attempts; and putting messages back in the queue (retry, replay); and the closed
//! vocabulary of a message's status (stored as its name, through `ToSql`/`FromSql`).

use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSqlOutput, ValueRef};
use rusqlite::{Connection, OptionalExtension, Transaction, params};
use serde_json::Value;

use super::endpoints::split_types;
use super::{Durability, Result, Store, StoreError, counts, timings};
use crate::id::EventIds;

/// Where a message is in the queue (SPEC 4.4); stored as its name. The order is the one
/// `/metrics` shows them in, and `index` counts by it (`counts.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageStatus {
    /// Waiting for its endpoint's next request.
    Pending,
    /// Failed and waiting out its own backoff.
    Parked,
    /// Final: the receiver took it.
    Delivered,
    /// Final until retried or replayed: given up on.
    Failed,
}

impl MessageStatus {
    pub const ALL: [MessageStatus; 4] = [
        MessageStatus::Pending,
        MessageStatus::Parked,
        MessageStatus::Delivered,
        MessageStatus::Failed,
    ];

    /// The name stored and shown in the API and in `/metrics`.
    pub const fn as_str(self) -> &'static str {
        match self {
            MessageStatus::Pending => "pending",
            MessageStatus::Parked => "parked",
            MessageStatus::Delivered => "delivered",
            MessageStatus::Failed => "failed",
        }
    }

    pub fn parse(text: &str) -> Option<MessageStatus> {
        MessageStatus::ALL.into_iter().find(|s| s.as_str() == text)
    }

    /// Its place in `ALL`, which the counts by status are indexed by.
    pub const fn index(self) -> usize {
        self as usize
    }
}

impl rusqlite::ToSql for MessageStatus {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::from(self.as_str()))
    }
}

impl FromSql for MessageStatus {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        let text = value.as_str()?;
        MessageStatus::parse(text)
            .ok_or_else(|| FromSqlError::Other(format!("unknown message status {text:?}").into()))
    }
}

/// The list routes' statements, one per filter so that each has a plan of its own, which a
/// unit test reads (`a_page_of_each_list_reads_an_index_range`): a statement with `?2 IS NULL
/// OR type = ?2` for every filter cannot use an index for any, and read every row newer than
/// the page's matches (a filter matching nothing read the table).
pub(super) const EVENTS_PAGE: &str =
    "SELECT seq, id, payload FROM events WHERE seq < ?1 ORDER BY seq DESC LIMIT ?2";
/// Through `events_by_type (type, seq)`.
pub(super) const EVENTS_OF_TYPE: &str = "SELECT seq, id, payload FROM events
     WHERE type = ?1 AND seq < ?2 ORDER BY seq DESC LIMIT ?3";
pub(super) const MESSAGES_PAGE: &str =
    "SELECT seq FROM messages WHERE seq < ?1 ORDER BY seq DESC LIMIT ?2";
/// Through `messages_by_event`; the other filters are checked on its few rows.
pub(super) const MESSAGES_OF_EVENT: &str = "SELECT seq FROM messages
     WHERE event_seq = ?1 AND seq < ?2 AND (?3 IS NULL OR endpoint_seq = ?3)
       AND (?4 IS NULL OR status = ?4)
     ORDER BY seq DESC LIMIT ?5";
/// Through `messages_queue (endpoint_seq, status, seq)`: one endpoint's messages of one
/// status. A page of one endpoint (any status) or of one status (any endpoint) is merged
/// from one such read per status or per endpoint, so it reads at most a page from each.
pub(super) const MESSAGES_OF_ENDPOINT_STATUS: &str = "SELECT seq FROM messages
     WHERE endpoint_seq = ?1 AND status = ?2 AND seq < ?3 ORDER BY seq DESC LIMIT ?4";

/// The `seq`s of a page of messages, newest first, before `before`.
fn message_page(
    c: &Connection,
    filter: &MessageFilter,
    before: i64,
    limit: usize,
) -> Result<Vec<i64>> {
    let seqs = |stmt: &str, values: &[&dyn rusqlite::ToSql]| -> Result<Vec<i64>> {
        Ok(c.prepare_cached(stmt)?
            .query_map(values, |r| r.get(0))?
            .collect::<rusqlite::Result<Vec<i64>>>()?)
    };
    let limit_sql = limit as i64;
    if let Some(event) = filter.event_seq {
        return seqs(
            MESSAGES_OF_EVENT,
            &[
                &event,
                &before,
                &filter.endpoint_seq,
                &filter.status,
                &limit_sql,
            ],
        );
    }
    let (endpoints, statuses): (Vec<i64>, Vec<MessageStatus>) =
        match (filter.endpoint_seq, filter.status) {
            (None, None) => return seqs(MESSAGES_PAGE, &[&before, &limit_sql]),
            (Some(e), Some(s)) => (vec![e], vec![s]),
            (Some(e), None) => (vec![e], MessageStatus::ALL.to_vec()),
            (None, Some(s)) => {
                let all = c
                    .prepare_cached("SELECT seq FROM endpoints")?
                    .query_map([], |r| r.get(0))?
                    .collect::<rusqlite::Result<Vec<i64>>>()?;
                (all, vec![s])
            }
        };
    let mut found = Vec::new();
    for endpoint in &endpoints {
        for status in &statuses {
            found.extend(seqs(
                MESSAGES_OF_ENDPOINT_STATUS,
                &[endpoint, status, &before, &limit_sql],
            )?);
        }
    }
    found.sort_unstable_by(|a, b| b.cmp(a));
    found.truncate(limit);
    Ok(found)
}

impl Store {
    // ---- events ----

    /// Writes a group of events and their messages in one transaction that is durable on
    /// return: the group commit behind `POST /api/v1/events`. Each item gets its own answer;
    /// an item refused for a conflict leaves no trace, the others are kept. Each accepted
    /// item gets its event id from the store: written into its envelope (built with
    /// `event::UNASSIGNED_ID`) and returned in `Accepted`.
    pub fn publish(&self, items: &mut [NewEvent], now: i64) -> Result<Vec<PublishResult>> {
        self.write(Durability::Full, |tx| {
            self.ensure_room(tx, items)?;
            let subscribers = subscribers(tx)?;
            let mut seqs = EventSeqs::default();
            let mut results = Vec::with_capacity(items.len());
            for item in items.iter_mut() {
                results.push(publish_one(
                    tx,
                    &self.event_ids,
                    &mut seqs,
                    item,
                    &subscribers,
                    now,
                )?);
            }
            Ok(results)
        })
    }

    pub fn event(&self, id: &str) -> Result<Option<EventRow>> {
        self.read(|c| {
            let Some(seq) = event_seq(c, &self.event_ids, id)? else {
                return Ok(None);
            };
            Ok(
                c.prepare_cached("SELECT seq, id, payload FROM events WHERE seq = ?1")?
                    .query_row([seq], event_row)
                    .optional()?,
            )
        })
    }

    /// Events newest first, before `cursor` (a `seq`), at most `limit`.
    pub fn list_events(
        &self,
        before: Option<i64>,
        event_type: Option<&str>,
        limit: usize,
    ) -> Result<Vec<EventRow>> {
        self.read(|c| {
            let before = before.unwrap_or(i64::MAX);
            // One statement per filter, each with a plan of its own (a unit test reads them):
            // `?2 IS NULL OR type = ?2` in one statement read every event newer than the
            // page's matches.
            let rows = match event_type {
                Some(t) => c
                    .prepare_cached(EVENTS_OF_TYPE)?
                    .query_map(params![t, before, limit as i64], event_row)?
                    .collect::<rusqlite::Result<Vec<_>>>(),
                None => c
                    .prepare_cached(EVENTS_PAGE)?
                    .query_map(params![before, limit as i64], event_row)?
                    .collect::<rusqlite::Result<Vec<_>>>(),
            };
            Ok(rows?)
        })
    }

    // ---- messages ----

    /// Messages newest first, filtered, before `cursor` (a `seq`), each with its newest
    /// `ATTEMPTS_IN_LIST` attempts and how many it has.
    pub fn list_messages(
        &self,
        filter: &MessageFilter,
        before: Option<i64>,
        limit: usize,
    ) -> Result<Vec<MessageRow>> {
        self.read(|c| {
            let seqs = message_page(c, filter, before.unwrap_or(i64::MAX), limit)?;
            let mut by_seq = c.prepare_cached(&format!("{MESSAGE_SELECT} WHERE m.seq = ?1"))?;
            let mut messages = Vec::with_capacity(seqs.len());
            for seq in seqs {
                messages.extend(by_seq.query_row([seq], message_row).optional()?);
            }
            let mut count =
                c.prepare_cached("SELECT count(*) FROM attempts WHERE message_seq = ?1")?;
            for m in &mut messages {
                m.attempts = attempts_of(c, m.seq, Some(ATTEMPTS_IN_LIST))?;
                m.attempt_count = count.query_row([m.seq], |r| r.get(0))?;
            }
            Ok(messages)
        })
    }

    /// One message with every attempt.
    pub fn message(&self, seq: i64) -> Result<Option<MessageRow>> {
        self.read(|c| {
            let sql = format!("{MESSAGE_SELECT} WHERE m.seq = ?1");
            let mut m = c
                .prepare_cached(&sql)?
                .query_row([seq], message_row)
                .optional()?;
            if let Some(m) = &mut m {
                m.attempts = attempts_of(c, m.seq, None)?;
                m.attempt_count = m.attempts.len() as i64;
            }
            Ok(m)
        })
    }

    /// Makes one message pending again now, whatever its status, and lifts its endpoint's
    /// backoff so that it goes out at once; returns the endpoint's seq.
    pub fn requeue_message(&self, seq: i64, now: i64) -> Result<Option<i64>> {
        self.write(Durability::Full, |tx| {
            let found: Option<(i64, MessageStatus)> = tx
                .query_row(
                    "SELECT endpoint_seq, status FROM messages WHERE seq = ?1",
                    [seq],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?;
            let endpoint = found.as_ref().map(|(endpoint, _)| *endpoint);
            if let Some((endpoint, status)) = &found {
                counts::stage(*endpoint, Some(*status), Some(MessageStatus::Pending), 1);
                tx.execute(
                    "UPDATE messages SET status = 'pending', failures = 0, next_attempt_at = NULL,
                            requeued_at = ?2, finished_at = NULL WHERE seq = ?1",
                    params![seq, now],
                )?;
                tx.execute(
                    "UPDATE endpoints SET backoff_until = NULL WHERE seq = ?1",
                    [endpoint],
                )?;
            }
            Ok(endpoint)
        })
    }

    /// Makes an endpoint's `failed` messages accepted at or after `since` pending again.
    pub fn replay_failed(&self, endpoint_seq: i64, since: i64, now: i64) -> Result<usize> {
        self.write(Durability::Full, |tx| {
            let n = tx.execute(
                "UPDATE messages SET status = 'pending', failures = 0, next_attempt_at = NULL,
                        requeued_at = ?3, finished_at = NULL
                 WHERE endpoint_seq = ?1 AND status = 'failed' AND created_at >= ?2",
                params![endpoint_seq, since, now],
            )?;
            counts::stage(
                endpoint_seq,
                Some(MessageStatus::Failed),
                Some(MessageStatus::Pending),
                n as i64,
            );
            Ok(n)
        })
    }
}

/// Enabled endpoints with their event-type filters, as the fan-out takes them.
pub(super) fn subscribers(tx: &Transaction) -> Result<Vec<(i64, Vec<String>)>> {
    let mut stmt = tx.prepare_cached("SELECT seq, event_types FROM endpoints WHERE enabled = 1")?;
    let rows = stmt.query_map([], |r| {
        Ok((r.get::<_, i64>(0)?, split_types(&r.get::<_, String>(1)?)))
    })?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

/// The `seq` of the stored event with id `id`: the inverse of `EventIds` for events stored
/// since schema version 3, `legacy_event_ids` for those stored before.
fn event_seq(c: &Connection, ids: &EventIds, id: &str) -> Result<Option<i64>> {
    if let Some(seq) = ids.seq(id) {
        let found = c
            .prepare_cached("SELECT seq FROM events WHERE seq = ?1 AND id = ?2")?
            .query_row(params![seq, id], |r| r.get(0))
            .optional()?;
        if found.is_some() {
            return Ok(found);
        }
    }
    Ok(
        c.prepare_cached("SELECT seq FROM legacy_event_ids WHERE id = ?1")?
            .query_row([id], |r| r.get(0))
            .optional()?,
    )
}

/// Hands out event `seq`s within one transaction: one past the largest ever used, even if
/// retention has deleted it since (AUTOINCREMENT keeps it in `sqlite_sequence`), so that no id
/// repeats. Only the first is read from the database; the events of the transaction are
/// inserted by whoever holds this, in order.
#[derive(Default)]
pub(super) struct EventSeqs {
    next: Option<i64>,
}

impl EventSeqs {
    fn take(&mut self, tx: &Transaction) -> Result<i64> {
        let seq = match self.next {
            Some(seq) => seq,
            // Both, in case `sqlite_sequence` lost its row (it is an ordinary table).
            None => tx
                .prepare_cached(
                    "SELECT max(coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'events'), 0),
                                coalesce((SELECT max(seq) FROM events), 0)) + 1",
                )?
                .query_row([], |r| r.get(0))?,
        };
        self.next = Some(seq + 1);
        Ok(seq)
    }
}

pub(super) fn publish_one(
    tx: &Transaction,
    ids: &EventIds,
    seqs: &mut EventSeqs,
    item: &mut NewEvent,
    subscribers: &[(i64, Vec<String>)],
    now: i64,
) -> Result<PublishResult> {
    if let Some(idem) = &item.idempotency {
        let previous: Option<(String, String)> = tx
            .prepare_cached(
                "SELECT request, event_id FROM idempotency_keys WHERE key = ?1 AND created_at >= ?2",
            )?
            .query_row(params![idem.key, now - IDEMPOTENCY_WINDOW_MS], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .optional()?;
        // A key whose event retention has deleted since counts as unused, as before.
        let previous = match previous {
            Some((request, event_id)) => {
                event_seq(tx, ids, &event_id)?.map(|seq| (request, event_id, seq))
            }
            None => None,
        };
        if let Some((request, event_id, event_seq)) = previous {
            let messages: i64 = tx
                .prepare_cached("SELECT count(*) FROM messages WHERE event_seq = ?1")?
                .query_row([event_seq], |r| r.get(0))?;
            let same = serde_json::from_str::<Value>(&request).is_ok_and(|v| v == idem.request);
            return Ok(if same {
                PublishResult::Repeated {
                    event_id,
                    messages: messages as usize,
                }
            } else {
                PublishResult::Conflict
            });
        }
    }

    let targets: Vec<i64> = match item.only_endpoint {
        Some(seq) => vec![seq],
        None => subscribers
            .iter()
            .filter(|(_, types)| types.is_empty() || types.iter().any(|t| t == &item.event_type))
            .map(|(seq, _)| *seq)
            .collect(),
    };
    let event_seq = seqs.take(tx)?;
    let event_id = ids.id(event_seq).ok_or_else(|| {
        StoreError::Refused(format!(
            "the database has used every event number up to {}",
            crate::id::MAX_EVENT_SEQ
        ))
    })?;
    if !crate::event::set_envelope_id(&mut item.payload, &event_id) {
        return Err(StoreError::Refused(
            "an event's envelope must be built with event::UNASSIGNED_ID".into(),
        ));
    }
    tx.prepare_cached(
        "INSERT INTO events (seq, id, type, created_at, payload, only_endpoint)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![
        event_seq,
        event_id,
        item.event_type,
        item.created_at,
        item.payload,
        item.only_endpoint
    ])?;
    let mut insert = tx.prepare_cached(
        "INSERT INTO messages (event_seq, endpoint_seq, status, created_at) VALUES (?1, ?2, 'pending', ?3)",
    )?;
    for seq in &targets {
        insert.execute(params![event_seq, seq, item.created_at])?;
    }
    for &endpoint in &targets {
        counts::stage(endpoint, None, Some(MessageStatus::Pending), 1);
    }
    if let Some(idem) = &item.idempotency {
        tx.prepare_cached(
            "INSERT INTO idempotency_keys (key, request, event_id, created_at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (key) DO UPDATE SET request = excluded.request, event_id = excluded.event_id,
                                            created_at = excluded.created_at",
        )?
        .execute(params![idem.key, idem.request.to_string(), event_id, now])?;
    }
    Ok(PublishResult::Accepted {
        event_id,
        endpoints: targets,
    })
}

/// How long an `Idempotency-Key` is remembered.
pub const IDEMPOTENCY_WINDOW_MS: i64 = 24 * 3600 * 1000;

fn event_row(r: &rusqlite::Row) -> rusqlite::Result<EventRow> {
    Ok(EventRow {
        seq: r.get(0)?,
        id: r.get(1)?,
        payload: r.get(2)?,
    })
}

pub(super) const MESSAGE_SELECT: &str = "SELECT m.seq, e.id, p.id, m.status, m.created_at,
        CASE WHEN m.status = 'parked' THEN m.next_attempt_at
             WHEN m.status = 'pending' THEN p.backoff_until END
     FROM messages m JOIN events e ON e.seq = m.event_seq JOIN endpoints p ON p.seq = m.endpoint_seq";

fn message_row(r: &rusqlite::Row) -> rusqlite::Result<MessageRow> {
    Ok(MessageRow {
        seq: r.get(0)?,
        event_id: r.get(1)?,
        endpoint_id: r.get(2)?,
        status: r.get(3)?,
        created_at: r.get(4)?,
        next_attempt_at: r.get(5)?,
        attempts: Vec::new(),
        attempt_count: 0,
    })
}

/// Attempts a list of messages embeds per message, the newest (SPEC 4.5): each carries up to
/// 4 KiB of response body, and a page holds up to 500 messages. One message's route shows all.
pub const ATTEMPTS_IN_LIST: usize = 5;

/// A message's attempts, oldest first: the newest `limit` of them, or all.
fn attempts_of(c: &Connection, message_seq: i64, limit: Option<usize>) -> Result<Vec<AttemptRow>> {
    let mut stmt = c.prepare_cached(&format!(
        "SELECT r.at, a.attempt, r.duration_ms, r.status_code, r.error, r.response_body, {}
         FROM attempts a JOIN requests r ON r.seq = a.request_seq
         WHERE a.message_seq = ?1 ORDER BY a.attempt DESC LIMIT ?2",
        timings::COLUMNS
    ))?;
    // A negative LIMIT is none.
    let limit = limit.map_or(-1, |n| n as i64);
    let rows = stmt.query_map(params![message_seq, limit], attempt_row)?;
    let mut attempts = rows.collect::<rusqlite::Result<Vec<_>>>()?;
    attempts.reverse();
    Ok(attempts)
}

pub(super) fn attempt_row(r: &rusqlite::Row) -> rusqlite::Result<AttemptRow> {
    Ok(AttemptRow {
        at: r.get(0)?,
        attempt: r.get(1)?,
        duration_ms: r.get(2)?,
        status_code: r.get(3)?,
        error: r.get(4)?,
        response_body: r.get(5)?,
        timings: timings::read(r, 6)?,
    })
}

pub struct Idempotency {
    pub key: String,
    pub request: Value,
}

pub struct NewEvent {
    pub event_type: String,
    pub created_at: i64,
    /// The envelope, built with `event::UNASSIGNED_ID`; the store writes the event's id in.
    pub payload: String,
    /// Queue for this endpoint only (test events), whatever its filter and state.
    pub only_endpoint: Option<i64>,
    pub idempotency: Option<Idempotency>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum PublishResult {
    /// Stored under `event_id`, with one message for each of these endpoints.
    Accepted {
        event_id: String,
        endpoints: Vec<i64>,
    },
    /// The same idempotency key and body were seen within 24 h: the first event's answer.
    Repeated { event_id: String, messages: usize },
    /// The idempotency key was used within 24 h with another body.
    Conflict,
}

#[derive(Debug, Clone)]
pub struct EventRow {
    pub seq: i64,
    pub id: String,
    pub payload: String,
}

#[derive(Default)]
pub struct MessageFilter {
    pub endpoint_seq: Option<i64>,
    pub event_seq: Option<i64>,
    pub status: Option<MessageStatus>,
}

#[derive(Debug, Clone)]
pub struct MessageRow {
    pub seq: i64,
    pub event_id: String,
    pub endpoint_id: String,
    pub status: MessageStatus,
    pub created_at: i64,
    pub next_attempt_at: Option<i64>,
    /// Oldest first; in a list, only the newest `ATTEMPTS_IN_LIST`.
    pub attempts: Vec<AttemptRow>,
    /// How many attempts the message has, whether `attempts` holds them all or not.
    pub attempt_count: i64,
}

#[derive(Debug, Clone)]
pub struct AttemptRow {
    pub at: i64,
    pub attempt: i64,
    pub duration_ms: i64,
    pub status_code: Option<i64>,
    pub error: Option<String>,
    pub response_body: Option<String>,
    /// Its phases (SPEC 4.5); `None` for a request recorded before phases were timed.
    pub timings: Option<super::Timings>,
}
