//! The store's side of retention (`retention.rs` paces it): deleting delivered messages
//! with the requests and events nothing refers to any more, and old idempotency keys, in
//! batches that read only what they delete; and the checkpoints of the write-ahead log.

use rusqlite::{Connection, OpenFlags, params};

use super::{
    BUSY_TIMEOUT, CHECKPOINT_WAIT, Durability, PRUNE_DELIVERED, Result, Store, StoreError, counts,
};

impl Store {
    // ---- retention ----

    /// Deletes up to `batch` delivered messages accepted before `cutoff`, then the requests
    /// and events nothing refers to any more, and idempotency keys older than `keys_cutoff`.
    /// Returns how many messages went, so the caller can loop with pauses between batches.
    /// None of its searches reads past the cutoff (ARCHITECTURE.md, Storage).
    pub fn prune(&self, cutoff: i64, keys_cutoff: i64, batch: usize) -> Result<usize> {
        self.write(Durability::Normal, |tx| {
            // Through messages_by_status (status, created_at): the search ends at the cutoff.
            let messages: Vec<(i64, i64)> = tx
                .prepare_cached(PRUNE_DELIVERED)?
                .query_map(params![cutoff, batch as i64], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<rusqlite::Result<_>>()?;
            // The requests of these messages' attempts, which may go with them.
            let mut requests: Vec<i64> = Vec::new();
            let mut attempts =
                tx.prepare_cached("SELECT request_seq FROM attempts WHERE message_seq = ?1")?;
            for (seq, _) in &messages {
                for request in attempts.query_map([seq], |r| r.get(0))? {
                    requests.push(request?);
                }
            }
            requests.sort_unstable();
            requests.dedup();
            // Their attempts go with them (ON DELETE CASCADE).
            let mut delete_message = tx.prepare_cached("DELETE FROM messages WHERE seq = ?1")?;
            for (seq, endpoint) in &messages {
                let n = delete_message.execute([seq])?;
                counts::stage(*endpoint, Some(counts::DELIVERED), None, n as i64);
            }
            // A request of a batch stays while an attempt of another message refers to it.
            let mut delete_request = tx.prepare_cached(
                "DELETE FROM requests WHERE seq = ?1
                   AND NOT EXISTS (SELECT 1 FROM attempts WHERE request_seq = ?1)",
            )?;
            for seq in &requests {
                delete_request.execute([seq])?;
            }
            tx.execute(
                "DELETE FROM events WHERE seq IN (
                     SELECT e.seq FROM events e WHERE e.created_at < ?1
                       AND NOT EXISTS (SELECT 1 FROM messages m WHERE m.event_seq = e.seq) LIMIT ?2)",
                params![cutoff, batch as i64],
            )?;
            tx.execute(
                "DELETE FROM idempotency_keys WHERE created_at < ?1",
                params![keys_cutoff],
            )?;
            Ok(messages.len())
        })
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
