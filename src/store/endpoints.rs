//! Endpoints: their rows, settings and signing secrets (current, and rotated out but still
//! in their grace period), and the message counts and last request of the endpoint view.

use rusqlite::{Connection, OptionalExtension, params};

use super::events::{AttemptRow, attempt_row};
use super::recovery::{self, Recovery};
use super::{Durability, MessageStatus, Result, Store, StoreError, counts, timings};

impl Store {
    // ---- endpoints ----

    pub fn create_endpoint(&self, new: &NewEndpoint) -> Result<EndpointRow> {
        self.write(Durability::Full, |tx| {
            tx.execute(
                "INSERT INTO endpoints (id, url, description, event_types, enabled, disabled_reason,
                                        batch_max, batch_window_ms, heartbeat_secs,
                                        created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?10, ?9, ?9)",
                params![
                    new.id,
                    new.url,
                    new.description,
                    new.event_types.join(","),
                    new.enabled,
                    (!new.enabled).then_some("manual"),
                    new.batch_max,
                    new.batch_window_ms,
                    new.now,
                    new.heartbeat_secs,
                ],
            )?;
            let seq = tx.last_insert_rowid();
            tx.execute(
                "INSERT INTO endpoint_secrets (endpoint_seq, secret, created_at) VALUES (?1, ?2, ?3)",
                params![seq, new.secret, new.now],
            )?;
            endpoint_by(tx, "seq", &seq)?.ok_or(StoreError::Sqlite(rusqlite::Error::QueryReturnedNoRows))
        })
    }

    pub fn endpoint(&self, id: &str) -> Result<Option<EndpointRow>> {
        self.read(|c| endpoint_by(c, "id", &id))
    }

    /// Endpoints in creation order, after `cursor` (a `seq`), at most `limit`.
    pub fn list_endpoints(&self, after: Option<i64>, limit: usize) -> Result<Vec<EndpointRow>> {
        self.read(|c| {
            let sql = format!(
                "SELECT {ENDPOINT_COLUMNS} FROM endpoints WHERE seq > ?1 ORDER BY seq LIMIT ?2"
            );
            let mut stmt = c.prepare_cached(&sql)?;
            let rows = stmt.query_map(params![after.unwrap_or(0), limit as i64], endpoint_row)?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }

    /// Applies `patch`; `None` when there is no such endpoint.
    pub fn update_endpoint(
        &self,
        id: &str,
        patch: &EndpointPatch,
        now: i64,
    ) -> Result<Option<EndpointRow>> {
        self.write(Durability::Full, |tx| {
            let Some(current) = endpoint_by(tx, "id", &id)? else {
                return Ok(None);
            };
            let url = patch.url.as_ref().unwrap_or(&current.url);
            let description = patch.description.as_ref().unwrap_or(&current.description);
            let event_types = patch
                .event_types
                .as_ref()
                .unwrap_or(&current.event_types)
                .join(",");
            let batch_max = patch.batch_max.unwrap_or(current.batch_max);
            let batch_window_ms = patch.batch_window_ms.unwrap_or(current.batch_window_ms);
            let heartbeat_secs = patch.heartbeat_secs.unwrap_or(current.heartbeat_secs);
            tx.execute(
                "UPDATE endpoints SET url = ?2, description = ?3, event_types = ?4, batch_max = ?5,
                        batch_window_ms = ?6, updated_at = ?7, heartbeat_secs = ?8 WHERE seq = ?1",
                params![
                    current.seq,
                    url,
                    description,
                    event_types,
                    batch_max,
                    batch_window_ms,
                    now,
                    heartbeat_secs
                ],
            )?;
            match patch.enabled {
                // Enabling clears the reason and the failure run, so that a long outage does
                // not disable the endpoint again on its first new failure.
                Some(true) if !current.enabled => {
                    tx.execute(
                        &format!(
                            "UPDATE endpoints SET enabled = 1, disabled_reason = NULL, failures = 0,
                                    failing_since = NULL, backoff_until = NULL, {} WHERE seq = ?1",
                            recovery::CLEAR
                        ),
                        [current.seq],
                    )?;
                }
                // A person's word ends the probing of an endpoint disabled for failing too.
                Some(false) if current.enabled || current.recovery.is_some() => {
                    tx.execute(
                        &format!(
                            "UPDATE endpoints SET enabled = 0, disabled_reason = 'manual', {}
                             WHERE seq = ?1",
                            recovery::CLEAR
                        ),
                        [current.seq],
                    )?;
                }
                _ => {}
            }
            endpoint_by(tx, "seq", &current.seq)
        })
    }

    /// Deletes an endpoint with its secrets, messages, requests and attempts.
    pub fn delete_endpoint(&self, id: &str) -> Result<Option<i64>> {
        self.write(Durability::Full, |tx| {
            let seq: Option<i64> = tx
                .query_row("SELECT seq FROM endpoints WHERE id = ?1", [id], |r| {
                    r.get(0)
                })
                .optional()?;
            if let Some(seq) = seq {
                // Its messages go with it (ON DELETE CASCADE); counted first, through the
                // queue's index on (endpoint_seq, status).
                let mut by_status = tx.prepare_cached(
                    "SELECT status, count(*) FROM messages WHERE endpoint_seq = ?1 GROUP BY status",
                )?;
                let mut rows = by_status.query([seq])?;
                while let Some(row) = rows.next()? {
                    let status: MessageStatus = row.get(0)?;
                    counts::stage(seq, Some(status), None, row.get(1)?);
                }
                tx.execute("DELETE FROM endpoints WHERE seq = ?1", [seq])?;
            }
            Ok(seq)
        })
    }

    /// Message counts by status and the last request, for the endpoint view.
    pub fn endpoint_stats(&self, seq: i64) -> Result<EndpointStats> {
        self.read(|c| {
            // Kept per endpoint as messages change (`counts.rs`): no message is counted here.
            let [pending, parked, delivered, failed] = counts::of_endpoint(c, seq)?;
            let last_request = c
                .prepare_cached(&format!(
                    "SELECT at, 0, duration_ms, status_code, error, response_body, {}
                         FROM requests WHERE endpoint_seq = ?1 ORDER BY seq DESC LIMIT 1",
                    timings::COLUMNS
                ))?
                .query_row([seq], attempt_row)
                .optional()?;
            Ok(EndpointStats {
                pending,
                parked,
                delivered,
                failed,
                last_request,
            })
        })
    }

    /// The current secret, newest first, and every rotated-out secret still in its grace period.
    pub fn active_secrets(&self, endpoint_seq: i64, now: i64) -> Result<Vec<String>> {
        self.read(|c| active_secrets(c, endpoint_seq, now))
    }

    /// Makes `secret` current; the previous current secret keeps signing until `now + grace_ms`.
    pub fn rotate_secret(
        &self,
        endpoint_seq: i64,
        secret: &str,
        now: i64,
        grace_ms: i64,
    ) -> Result<()> {
        self.write(Durability::Full, |tx| {
            tx.execute(
                "UPDATE endpoint_secrets SET expires_at = ?2 WHERE endpoint_seq = ?1 AND expires_at IS NULL",
                params![endpoint_seq, now + grace_ms],
            )?;
            // Secrets past their grace are of no further use.
            tx.execute(
                "DELETE FROM endpoint_secrets WHERE endpoint_seq = ?1 AND expires_at <= ?2",
                params![endpoint_seq, now],
            )?;
            tx.execute(
                "INSERT INTO endpoint_secrets (endpoint_seq, secret, created_at) VALUES (?1, ?2, ?3)",
                params![endpoint_seq, secret, now],
            )?;
            tx.execute("UPDATE endpoints SET updated_at = ?2 WHERE seq = ?1", params![endpoint_seq, now])?;
            Ok(())
        })
    }
}

pub(super) fn split_types(text: &str) -> Vec<String> {
    text.split(',')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

fn active_secrets(c: &Connection, endpoint_seq: i64, now: i64) -> Result<Vec<String>> {
    let mut stmt = c.prepare_cached(
        "SELECT secret FROM endpoint_secrets WHERE endpoint_seq = ?1 AND (expires_at IS NULL OR expires_at > ?2)
         ORDER BY created_at DESC, rowid DESC",
    )?;
    let rows = stmt.query_map(params![endpoint_seq, now], |r| r.get(0))?;
    Ok(rows.collect::<rusqlite::Result<Vec<String>>>()?)
}

pub(super) const ENDPOINT_COLUMNS: &str = "seq, id, url, description, event_types, enabled, disabled_reason, batch_max, \
     batch_window_ms, failures, failing_since, backoff_until, created_at, updated_at, heartbeat_secs, \
     recovery_next_at, recovery_probes, recovery_until";

fn endpoint_by(
    c: &Connection,
    column: &str,
    value: &dyn rusqlite::ToSql,
) -> Result<Option<EndpointRow>> {
    let sql = format!("SELECT {ENDPOINT_COLUMNS} FROM endpoints WHERE {column} = ?1");
    Ok(c.prepare_cached(&sql)?
        .query_row([value], endpoint_row)
        .optional()?)
}

fn endpoint_row(r: &rusqlite::Row) -> rusqlite::Result<EndpointRow> {
    Ok(EndpointRow {
        seq: r.get(0)?,
        id: r.get(1)?,
        url: r.get(2)?,
        description: r.get(3)?,
        event_types: split_types(&r.get::<_, String>(4)?),
        enabled: r.get(5)?,
        disabled_reason: r.get(6)?,
        batch_max: r.get(7)?,
        batch_window_ms: r.get(8)?,
        failures: r.get(9)?,
        failing_since: r.get(10)?,
        backoff_until: r.get(11)?,
        created_at: r.get(12)?,
        updated_at: r.get(13)?,
        heartbeat_secs: r.get(14)?,
        recovery: Recovery::from_columns(r.get(15)?, r.get(16)?, r.get(17)?),
    })
}

pub struct NewEndpoint {
    pub id: String,
    pub url: String,
    pub description: String,
    pub event_types: Vec<String>,
    pub enabled: bool,
    pub batch_max: i64,
    pub batch_window_ms: i64,
    /// Seconds without a request after which a heartbeat goes out (SPEC 4.7); `None` is off.
    pub heartbeat_secs: Option<i64>,
    pub secret: String,
    pub now: i64,
}

#[derive(Default)]
pub struct EndpointPatch {
    pub url: Option<String>,
    pub description: Option<String>,
    pub event_types: Option<Vec<String>>,
    pub enabled: Option<bool>,
    pub batch_max: Option<i64>,
    pub batch_window_ms: Option<i64>,
    /// `Some(None)` turns heartbeats off.
    pub heartbeat_secs: Option<Option<i64>>,
}

#[derive(Debug, Clone)]
pub struct EndpointRow {
    pub seq: i64,
    pub id: String,
    pub url: String,
    pub description: String,
    pub event_types: Vec<String>,
    pub enabled: bool,
    pub disabled_reason: Option<String>,
    pub batch_max: i64,
    pub batch_window_ms: i64,
    pub failures: i64,
    pub failing_since: Option<i64>,
    pub backoff_until: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
    pub heartbeat_secs: Option<i64>,
    /// The probe schedule while it is disabled for failing (SPEC 4.4); `None` otherwise.
    pub recovery: Option<Recovery>,
}

#[derive(Debug, Default)]
pub struct EndpointStats {
    pub pending: i64,
    pub parked: i64,
    pub delivered: i64,
    pub failed: i64,
    pub last_request: Option<AttemptRow>,
}
