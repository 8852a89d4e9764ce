//! The store's side of retention (`retention.rs` paces it): deleting delivered messages
//! with the requests and events nothing refers to any more, and old idempotency keys, in
//! batches that read only what they delete; and the checkpoints of the write-ahead log.

use std::time::Duration;

use rusqlite::{Connection, OpenFlags, OptionalExtension, params};

use super::{
    BUSY_TIMEOUT, CHECKPOINT_WAIT, Durability, MessageStatus, PRUNE_DELIVERED, Result, Store,
    StoreError, counts,
};

const PRUNE_ATTEMPTS: &str = "SELECT request_seq FROM attempts WHERE message_seq = ?1";
/// Whether an event has a message left, through `messages_by_event`.
const PRUNE_EVENT_LEFT: &str = "SELECT 1 FROM messages WHERE event_seq = ?1 LIMIT 1";
pub(super) const PRUNE_EVENT: &str = "DELETE FROM events WHERE seq = ?1 AND created_at < ?2
       AND NOT EXISTS (SELECT 1 FROM messages WHERE event_seq = ?1)";
/// Expired idempotency keys, a batch at a time: after a long stop a day's keys may be due.
const PRUNE_KEYS_READ: &str =
    "SELECT rowid FROM idempotency_keys WHERE created_at < ?1 ORDER BY created_at LIMIT ?2";
pub(super) const PRUNE_KEYS: &str = "DELETE FROM idempotency_keys WHERE rowid IN (
       SELECT rowid FROM idempotency_keys WHERE created_at < ?1 ORDER BY created_at LIMIT ?2)";

/// While it lives, the writer's commits leave the log to be copied beside them
/// (`Store::log_copied_beside`); dropped, SQLite's default is back.
pub struct LogCopiedBeside<'a> {
    store: &'a Store,
}

impl Drop for LogCopiedBeside<'_> {
    fn drop(&mut self) {
        let conn = self.store.writer.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(e) = conn.pragma_update(None, "wal_autocheckpoint", AUTOCHECKPOINT_PAGES) {
            log::error!("cannot restore the automatic checkpoint: {e}");
        }
    }
}

/// SQLite's default automatic checkpoint, in pages of log.
pub(super) const AUTOCHECKPOINT_PAGES: i64 = 1000;

/// What one batch of `Store::prune_batch` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pruned {
    pub messages: usize,
    pub events: usize,
    pub keys: usize,
    /// How long the batch held the writer, not counting the wait for it.
    pub held: Duration,
}

/// What one batch of `Store::prune_events` did, and where the next batch goes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventScan {
    pub deleted: usize,
    /// The last event scanned that was older than the cutoff (or the `after` given).
    pub next: i64,
    /// The scan reached the end of the events, or one young enough to keep.
    pub done: bool,
    pub held: Duration,
}

/// A delivered message old enough for retention.
struct OldMessage {
    seq: i64,
    endpoint_seq: i64,
    event_seq: i64,
}

/// Up to `batch` delivered messages accepted before `cutoff` (`PRUNE_DELIVERED`).
fn old_delivered(c: &Connection, cutoff: i64, batch: usize) -> Result<Vec<OldMessage>> {
    Ok(c.prepare_cached(PRUNE_DELIVERED)?
        .query_map(params![cutoff, batch as i64], |r| {
            Ok(OldMessage {
                seq: r.get(0)?,
                endpoint_seq: r.get(1)?,
                event_seq: r.get(2)?,
            })
        })?
        .collect::<rusqlite::Result<_>>()?)
}

impl Store {
    // ---- retention ----

    /// Deletes up to `batch` delivered messages accepted before `cutoff`, then the requests
    /// and events nothing refers to any more, and up to `batch` idempotency keys older than
    /// `keys_cutoff`. Returns how many messages went. None of its searches reads past the
    /// cutoff (ARCHITECTURE.md, Storage).
    #[cfg(test)]
    pub fn prune(&self, cutoff: i64, keys_cutoff: i64, batch: usize) -> Result<usize> {
        self.prune_batch(cutoff, keys_cutoff, batch)
            .map(|pruned| pruned.messages)
    }

    /// One batch of `prune`, with what it did and how long it held the writer.
    ///
    /// Everything it deletes is found from the batch's messages: their attempts, the requests
    /// only they used, and their events once no message is left. Nothing is searched: an old
    /// event kept by a failed message (kept until its endpoint goes) would otherwise be
    /// passed over again by every batch of every pass, a cost that grows with the history
    /// (`prune_events` finds events that never had a message, in a scan of its own). What the
    /// batch will delete is read first on a reader connection, as the transaction will find
    /// it, so that the transaction finds the pages in the operating system's cache instead of
    /// waiting for the disk while it holds the writer.
    pub fn prune_batch(&self, cutoff: i64, keys_cutoff: i64, batch: usize) -> Result<Pruned> {
        self.read(|c| {
            let messages = old_delivered(c, cutoff, batch)?;
            let mut attempts = c.prepare_cached(PRUNE_ATTEMPTS)?;
            let mut request = c.prepare_cached("SELECT 1 FROM requests WHERE seq = ?1")?;
            let mut event = c.prepare_cached(PRUNE_EVENT_LEFT)?;
            for m in &messages {
                for seq in attempts.query_map([m.seq], |r| r.get::<_, i64>(0))? {
                    request.query_row([seq?], |_| Ok(())).optional()?;
                }
                event.query_row([m.event_seq], |_| Ok(())).optional()?;
            }
            c.prepare_cached(PRUNE_KEYS_READ)?
                .query_map(params![keys_cutoff, batch as i64], |_| Ok(()))?
                .collect::<rusqlite::Result<Vec<()>>>()?;
            Ok(())
        })?;
        let (mut pruned, held) = self.write_held(Durability::Normal, |tx| {
            let messages = old_delivered(tx, cutoff, batch)?;
            // The requests of these messages' attempts, which may go with them.
            let mut requests: Vec<i64> = Vec::new();
            let mut attempts = tx.prepare_cached(PRUNE_ATTEMPTS)?;
            for m in &messages {
                for request in attempts.query_map([m.seq], |r| r.get(0))? {
                    requests.push(request?);
                }
            }
            requests.sort_unstable();
            requests.dedup();
            // Their attempts go with them (ON DELETE CASCADE).
            let mut delete_message = tx.prepare_cached("DELETE FROM messages WHERE seq = ?1")?;
            for m in &messages {
                let n = delete_message.execute([m.seq])?;
                counts::stage(
                    m.endpoint_seq,
                    Some(MessageStatus::Delivered),
                    None,
                    n as i64,
                );
            }
            // A request of a batch stays while an attempt of another message refers to it.
            let mut delete_request = tx.prepare_cached(
                "DELETE FROM requests WHERE seq = ?1
                   AND NOT EXISTS (SELECT 1 FROM attempts WHERE request_seq = ?1)",
            )?;
            for seq in &requests {
                delete_request.execute([seq])?;
            }
            // An event goes with its last message: the other endpoints' messages of it may
            // still be pending, parked or failed, or delivered later than this batch reaches.
            let mut events: Vec<i64> = messages.iter().map(|m| m.event_seq).collect();
            events.sort_unstable();
            events.dedup();
            let mut delete_event = tx.prepare_cached(PRUNE_EVENT)?;
            let mut gone = 0;
            for seq in &events {
                gone += delete_event.execute(params![seq, cutoff])?;
            }
            let keys = tx
                .prepare_cached(PRUNE_KEYS)?
                .execute(params![keys_cutoff, batch as i64])?;
            Ok(Pruned {
                messages: messages.len(),
                events: gone,
                keys,
                held: Duration::ZERO,
            })
        })?;
        pruned.held = held;
        Ok(pruned)
    }

    /// One batch of retention's scan for events older than `cutoff` that have no message
    /// left (none matched when they were accepted, or their endpoint was deleted): at most
    /// `batch` events after `after` (a `seq`), in acceptance order. The scan is read on a
    /// reader; the writer only deletes, each event again only if it still has no message.
    /// Events whose messages are kept (pending, parked, failed) are passed over, so the
    /// caller goes on from `EventScan::next` rather than from the start each time.
    pub fn prune_events(&self, cutoff: i64, after: i64, batch: usize) -> Result<EventScan> {
        let (found, next, done) = self.read(|c| {
            let mut scanned = c.prepare_cached(
                "SELECT seq, created_at, NOT EXISTS (SELECT 1 FROM messages WHERE event_seq = events.seq)
                   FROM events WHERE seq > ?1 ORDER BY seq LIMIT ?2",
            )?;
            let rows = scanned
                .query_map(params![after, batch as i64], |r| {
                    Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?, r.get::<_, bool>(2)?))
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            // Events are accepted in `seq` order, so the first one young enough to keep ends
            // the scan: the next pass starts over from there.
            let young = rows.iter().position(|(_, at, _)| *at >= cutoff);
            let old = &rows[..young.unwrap_or(rows.len())];
            let found: Vec<i64> = old
                .iter()
                .filter(|(_, _, alone)| *alone)
                .map(|(seq, _, _)| *seq)
                .collect();
            let next = old.last().map_or(after, |(seq, _, _)| *seq);
            Ok((found, next, young.is_some() || rows.len() < batch))
        })?;
        let (deleted, held) = if found.is_empty() {
            (0, Duration::ZERO)
        } else {
            self.write_held(Durability::Normal, |tx| {
                let mut delete = tx.prepare_cached(PRUNE_EVENT)?;
                let mut n = 0;
                for seq in &found {
                    n += delete.execute(params![seq, cutoff])?;
                }
                Ok(n)
            })?
        };
        Ok(EventScan {
            deleted,
            next,
            done,
            held,
        })
    }

    /// Stops the writer from copying the log back into the file inside its commits (SQLite's
    /// automatic checkpoint, at 1,000 pages of log) until the guard is dropped: for a
    /// background task that writes many pages and copies the log beside the writer itself
    /// (`checkpoint_beside`) between its batches. Beside a reader that holds the log (a
    /// backup), the commit that crossed 1,000 pages synced the log and the file inside the
    /// writer, 40-130 ms at month size (BENCHMARKS.md, "Retention at month size").
    pub fn log_copied_beside(&self) -> Result<LogCopiedBeside<'_>> {
        self.writer
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pragma_update(None, "wal_autocheckpoint", 0)?;
        Ok(LogCopiedBeside { store: self })
    }

    /// Copies what it can of the WAL back into the database on a connection of its own, not
    /// the writer's, so that writers go on meanwhile (a passive checkpoint takes no write
    /// lock). A background task that writes many pages calls it between its batches: the
    /// writer then finds the log copied and starts it over, instead of copying 1,000 pages
    /// and syncing the file inside its own commit (the SQLite default), which held the writer
    /// 20 to 110 ms at a time while retention folded a fleet's history (BENCHMARKS.md).
    pub fn checkpoint_beside(&self) -> Result<()> {
        // A checkpoint writes into the database file, which stays as it is once found damaged.
        self.damaged()?;
        let conn = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| StoreError::Open(self.path.clone(), e))?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))?;
        Ok(())
    }

    /// Copies the WAL back into the database and truncates it, so it cannot grow without bound.
    /// The copying is done beside the writer first; the truncation then takes the writer and
    /// waits at most `CHECKPOINT_WAIT` for readers still on the log. A long read (a backup,
    /// Litestream's open transaction) used to hold the writer, and every publish behind it, for
    /// the whole busy timeout; now the log is left untruncated until a later pass finds it free.
    pub fn checkpoint(&self) -> Result<()> {
        // A checkpoint writes into the database file, which stays as it is once found damaged.
        self.damaged()?;
        self.checkpoint_beside()?;
        let conn = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        conn.busy_timeout(CHECKPOINT_WAIT)?;
        let busy = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
            r.get::<_, i64>(0)
        });
        conn.busy_timeout(BUSY_TIMEOUT)?;
        match busy {
            Ok(0) => {}
            Ok(_) => log::debug!("the log is copied but not truncated: a reader still uses it"),
            Err(e) if e.sqlite_error_code() == Some(rusqlite::ErrorCode::DatabaseBusy) => {
                log::debug!("the log is copied but not truncated: {e}")
            }
            Err(e) => return Err(e.into()),
        }
        Ok(())
    }
}
