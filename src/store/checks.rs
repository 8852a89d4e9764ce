//! Check history: raw checks for the last six hours (enough for the SLA's recent ratios and
//! for `GET /monitors/{id}/checks`), then per-minute rows until a day old, then per-hour rows
//! for the rest of the monitor's SLA window (at least `retention_days`), so that a monitor
//! keeps at most 6 h of checks, 18 h × 60 minute rows and 24 rows a day of its window
//! (`sla::window_start` states what that costs the SLA rule). Raw checks are folded into
//! minutes a few rows at a time, in the transaction that records each check; minutes into
//! hours by retention (`fold_check_hours`), in batches of bounded size. The table operations
//! a `Tx` offers over checks are here; what a check records is decided by `monitor/record.rs`.

use rusqlite::{Connection, Transaction, params};

use super::monitors::MonitorSettings;
use super::{Durability, Result, Store, Timings, Tx, timings};

/// Raw checks younger than this are kept as they are; older ones become minute aggregates.
/// The SLA rule's longest recent period (`sla::RECENT_LONG_MS`) reads raw checks only, and a
/// constant assertion in `sla.rs` holds it within this.
pub const RAW_CHECKS_MS: i64 = 6 * HOUR_MS;
/// Minute rows younger than this are kept; retention folds older ones into hour rows.
pub const MINUTE_ROWS_MS: i64 = 24 * HOUR_MS;
const HOUR_MS: i64 = 3600 * 1000;
/// Monitors looked at per folding transaction, at most.
const FOLD_MONITORS: i64 = 256;

/// The statements of history's folding and expiry, each a range of one monitor's rows in its
/// table's primary key (`history_statements_read_one_monitors_range` reads their plans).
const CHECKS_BEFORE: &str = "DELETE FROM checks WHERE monitor_seq = ?1 AND at < ?2";
const MINUTES_BEFORE: &str = "DELETE FROM check_minutes WHERE monitor_seq = ?1 AND minute < ?2";
const HOURS_BEFORE: &str = "DELETE FROM check_hours WHERE monitor_seq = ?1 AND hour < ?2";
const OLDEST_MINUTE: &str = "SELECT min(minute) FROM check_minutes WHERE monitor_seq = ?1";
const MINUTES_INTO_HOURS: &str = "INSERT INTO check_hours (monitor_seq, hour, checks, failures, failed_ms, response_ms)
     SELECT monitor_seq, minute - minute % 3600000, sum(checks), sum(failures),
            sum(failed_ms), sum(response_ms)
     FROM check_minutes WHERE monitor_seq = ?1 AND minute < ?2
     GROUP BY minute - minute % 3600000
     ON CONFLICT (monitor_seq, hour) DO UPDATE SET
         checks = checks + excluded.checks, failures = failures + excluded.failures,
         failed_ms = failed_ms + excluded.failed_ms, response_ms = response_ms + excluded.response_ms";
/// The monitors a folding transaction looks at, and a read of the rows it will fold.
const FOLD_NEXT_MONITORS: &str = "SELECT seq FROM monitors WHERE seq > ?1 ORDER BY seq LIMIT ?2";
const MINUTES_BEFORE_COUNT: &str =
    "SELECT count(checks) FROM check_minutes WHERE monitor_seq = ?1 AND minute < ?2";
const MINUTES_SINCE: &str = "SELECT coalesce(sum(checks), 0), coalesce(sum(failures), 0),
            coalesce(sum(failed_ms), 0)
     FROM check_minutes WHERE monitor_seq = ?1 AND minute >= ?2";
const HOURS_SINCE: &str = "SELECT coalesce(sum(checks), 0), coalesce(sum(failures), 0),
            coalesce(sum(failed_ms), 0)
     FROM check_hours WHERE monitor_seq = ?1 AND hour >= ?2";

/// Checks and failures over some period.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CheckCounts {
    pub checks: i64,
    pub failures: i64,
}

/// What one monitor's history says, as of now: what the SLA rule reads (`sla::assess`).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CheckHistory {
    /// Every check in the window.
    pub window: CheckCounts,
    /// The seconds of budget the window's failed checks spent: each its interval.
    pub spent_secs: f64,
    pub last_1h: CheckCounts,
    pub last_6h: CheckCounts,
}

#[derive(Debug, Clone)]
pub struct CheckRow {
    pub seq: i64,
    pub at: i64,
    pub ok: bool,
    pub status_code: Option<i64>,
    pub response_time_ms: i64,
    pub first_byte_ms: Option<i64>,
    pub error: Option<String>,
    /// The check's phases (SPEC 4.5); `None` for a push check or one recorded before.
    pub timings: Option<Timings>,
}

fn check_row(r: &rusqlite::Row) -> rusqlite::Result<CheckRow> {
    Ok(CheckRow {
        seq: r.get(0)?,
        at: r.get(1)?,
        ok: r.get(2)?,
        status_code: r.get(3)?,
        response_time_ms: r.get(4)?,
        first_byte_ms: r.get(5)?,
        error: r.get(6)?,
        timings: timings::read(r, 7)?,
    })
}

/// How long a monitor's history is kept: its SLA window, and at least `keep_ms`.
pub fn history_ms(settings: &MonitorSettings, keep_ms: i64) -> i64 {
    ((settings.sla_window_days * 86_400_000.0) as i64).max(keep_ms)
}

/// Checks and failures since `since`, from raw checks, minute rows and hour rows (each check
/// is in exactly one of them; a row counts when it begins at or after `since`, which
/// `sla::window_start` puts on a boundary of the rows it falls in), and the budget the
/// failures spent. Read in one transaction: retention may move minutes into hours meanwhile.
fn history_since(c: &Connection, monitor_seq: i64, since: i64) -> Result<(CheckCounts, f64)> {
    let (checks, failures, spent): (i64, i64, i64) = c
        .prepare_cached(
            "SELECT count(*), coalesce(sum(ok = 0), 0),
                    coalesce(sum(CASE WHEN ok = 0 THEN interval_ms ELSE 0 END), 0)
             FROM checks WHERE monitor_seq = ?1 AND at >= ?2",
        )?
        .query_row(params![monitor_seq, since], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })?;
    let mut total = CheckCounts { checks, failures };
    let mut spent_ms = spent;
    for sql in [MINUTES_SINCE, HOURS_SINCE] {
        let (checks, failures, spent): (i64, i64, i64) = c
            .prepare_cached(sql)?
            .query_row(params![monitor_seq, since], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })?;
        total.checks += checks;
        total.failures += failures;
        spent_ms += spent;
    }
    Ok((total, spent_ms as f64 / 1000.0))
}

fn recent(c: &Connection, monitor_seq: i64, since: i64) -> Result<CheckCounts> {
    let (checks, failures) = c
        .prepare_cached(
            "SELECT count(*), coalesce(sum(ok = 0), 0) FROM checks WHERE monitor_seq = ?1 AND at >= ?2",
        )?
        .query_row(params![monitor_seq, since], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(CheckCounts { checks, failures })
}

/// Folds raw checks older than six hours into minute aggregates and drops history older
/// than the monitor keeps.
fn compact(tx: &Transaction, monitor_seq: i64, now: i64, history_ms: i64) -> Result<()> {
    let drop_before = now - history_ms;
    tx.prepare_cached(CHECKS_BEFORE)?
        .execute(params![monitor_seq, drop_before])?;
    let fold_before = now - RAW_CHECKS_MS;
    tx.prepare_cached(
        "INSERT INTO check_minutes (monitor_seq, minute, checks, failures, failed_ms, response_ms)
         SELECT monitor_seq, at - at % 60000, count(*), sum(ok = 0),
                sum(CASE WHEN ok = 0 THEN interval_ms ELSE 0 END), sum(response_time_ms)
         FROM checks WHERE monitor_seq = ?1 AND at < ?2 GROUP BY at - at % 60000
         ON CONFLICT (monitor_seq, minute) DO UPDATE SET
             checks = checks + excluded.checks, failures = failures + excluded.failures,
             failed_ms = failed_ms + excluded.failed_ms, response_ms = response_ms + excluded.response_ms",
    )?
    .execute(params![monitor_seq, fold_before])?;
    tx.prepare_cached(CHECKS_BEFORE)?
        .execute(params![monitor_seq, fold_before])?;
    tx.prepare_cached(MINUTES_BEFORE)?
        .execute(params![monitor_seq, drop_before])?;
    tx.prepare_cached(HOURS_BEFORE)?
        .execute(params![monitor_seq, drop_before])?;
    Ok(())
}

/// One monitor's share of a folding transaction: deletes its checks, minute and hour rows
/// older than it keeps (a monitor no longer checked has nothing else to drop them), then folds whole hours of its minute rows older than `cutoff` (an hour's start)
/// into hour rows, the oldest first and at most `max_hours` of them. Returns the rows it
/// deleted and whether it folded everything up to `cutoff`.
fn fold_monitor(
    tx: &Transaction,
    monitor_seq: i64,
    drop_before: i64,
    cutoff: i64,
    max_hours: i64,
) -> Result<(usize, bool)> {
    let mut rows = tx
        .prepare_cached(CHECKS_BEFORE)?
        .execute(params![monitor_seq, drop_before])?;
    rows += tx
        .prepare_cached(MINUTES_BEFORE)?
        .execute(params![monitor_seq, drop_before])?;
    rows += tx
        .prepare_cached(HOURS_BEFORE)?
        .execute(params![monitor_seq, drop_before])?;
    let oldest: Option<i64> = tx
        .prepare_cached(OLDEST_MINUTE)?
        .query_row([monitor_seq], |r| r.get(0))?;
    let Some(oldest) = oldest.filter(|m| *m < cutoff) else {
        return Ok((rows, true));
    };
    let upto = cutoff.min(oldest - oldest.rem_euclid(HOUR_MS) + max_hours.max(1) * HOUR_MS);
    tx.prepare_cached(MINUTES_INTO_HOURS)?
        .execute(params![monitor_seq, upto])?;
    rows += tx
        .prepare_cached(MINUTES_BEFORE)?
        .execute(params![monitor_seq, upto])?;
    Ok((rows, upto == cutoff))
}

/// What recording a check writes into `checks`.
pub struct NewCheck<'a> {
    pub monitor_seq: i64,
    /// Wall-clock start, ms since the epoch.
    pub at: i64,
    pub ok: bool,
    pub status_code: Option<u16>,
    pub response_time_ms: i64,
    pub first_byte_ms: Option<i64>,
    pub error: Option<&'a str>,
    /// The monitor's interval when it was made: the budget a failure spends.
    pub interval_ms: i64,
    /// Its phases (SPEC 4.5); `None` for a push check.
    pub timings: Option<Timings>,
}

/// The table operations of check history, for what a check records (`monitor/record.rs`).
impl Tx<'_> {
    pub fn insert_check(&self, check: &NewCheck) -> Result<()> {
        let [dns, connect, tls, ttfb, total, reused] = timings::values(check.timings.as_ref());
        self.conn()
            .prepare_cached(&format!(
                "INSERT INTO checks (monitor_seq, at, ok, status_code, response_time_ms,
                                     first_byte_ms, error, interval_ms, {})
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
                timings::COLUMNS
            ))?
            .execute(params![
                check.monitor_seq,
                check.at,
                check.ok,
                check.status_code,
                check.response_time_ms,
                check.first_byte_ms,
                check.error,
                check.interval_ms,
                dns,
                connect,
                tls,
                ttfb,
                total,
                reused,
            ])?;
        Ok(())
    }

    /// Folds a monitor's raw checks older than six hours into minute rows and drops its
    /// history older than `history_ms` (`history_ms()`).
    pub fn compact_history(&self, monitor_seq: i64, now: i64, history_ms: i64) -> Result<()> {
        compact(self.conn(), monitor_seq, now, history_ms)
    }
}

impl Store {
    /// Raw checks newest first, before `cursor` (a `seq`), at most `limit`.
    pub fn list_checks(
        &self,
        monitor_seq: i64,
        before: Option<i64>,
        limit: usize,
    ) -> Result<Vec<CheckRow>> {
        self.read(|c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT seq, at, ok, status_code, response_time_ms, first_byte_ms, error, {}
                 FROM checks WHERE monitor_seq = ?1 AND seq < ?2 ORDER BY seq DESC LIMIT ?3",
                timings::COLUMNS
            ))?;
            let rows = stmt.query_map(
                params![monitor_seq, before.unwrap_or(i64::MAX), limit as i64],
                check_row,
            )?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }

    /// A monitor's history as the SLA rule reads it: the checks since `window_since` (a
    /// boundary of the rows it falls in, `sla::window_start`) with the budget their failures
    /// spent, and the raw checks since each of `recent` (the last hour, the last six).
    pub fn check_history(
        &self,
        monitor_seq: i64,
        window_since: i64,
        recent_since: [i64; 2],
    ) -> Result<CheckHistory> {
        self.read(|c| {
            // One snapshot for every table: retention may fold minutes into hours between
            // two statements, which would count those checks twice or not at all.
            let tx = c.unchecked_transaction()?;
            let (window, spent_secs) = history_since(&tx, monitor_seq, window_since)?;
            let history = CheckHistory {
                window,
                spent_secs,
                last_1h: recent(&tx, monitor_seq, recent_since[0])?,
                last_6h: recent(&tx, monitor_seq, recent_since[1])?,
            };
            tx.commit()?;
            Ok(history)
        })
    }

    /// One transaction of retention's folding of check history: for monitors after `after`
    /// (a `seq`), deletes minute and hour rows older than each keeps (its SLA window, at
    /// least `keep_ms`), and folds minute rows older than a day into hour rows, whole hours
    /// at a time. It stops after `FOLD_MONITORS` monitors or once about `budget` minute rows
    /// have been folded or deleted, whichever comes first: at most 60 minute rows make an
    /// hour, so the work of one transaction is bounded whatever a monitor's backlog (a
    /// database from before hour rows holds a whole window of minutes). Returns the rows
    /// folded or deleted, the `seq` to go on after (`None` once every monitor is done), and
    /// how long the transaction held the writer, waiting for it included.
    pub fn fold_check_hours(
        &self,
        now: i64,
        keep_ms: i64,
        after: i64,
        budget: usize,
    ) -> Result<(usize, Option<i64>, std::time::Duration)> {
        let hour_cutoff = now - MINUTE_ROWS_MS;
        let cutoff = hour_cutoff - hour_cutoff.rem_euclid(HOUR_MS);
        // The minute rows the batch will fold, read first on a reader connection, as the
        // transaction will find them: it then finds their pages in the operating system's
        // cache instead of waiting for the disk while it holds the writer.
        self.read(|c| {
            let monitors = c
                .prepare_cached(FOLD_NEXT_MONITORS)?
                .query_map(params![after, FOLD_MONITORS], |r| r.get::<_, i64>(0))?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let mut rows = 0;
            for seq in monitors {
                let oldest: Option<i64> = c
                    .prepare_cached(OLDEST_MINUTE)?
                    .query_row([seq], |r| r.get(0))?;
                let Some(oldest) = oldest.filter(|m| *m < cutoff) else {
                    continue;
                };
                let left = budget.saturating_sub(rows) as i64 / 60;
                let upto = cutoff.min(oldest - oldest.rem_euclid(HOUR_MS) + left.max(1) * HOUR_MS);
                rows += c
                    .prepare_cached(MINUTES_BEFORE_COUNT)?
                    .query_row(params![seq, upto], |r| r.get::<_, i64>(0))?
                    as usize;
                if rows >= budget {
                    break;
                }
            }
            Ok(())
        })?;
        let started = std::time::Instant::now();
        let done = self.write(Durability::Normal, |tx| {
            let monitors = tx
                .prepare_cached(
                    "SELECT seq, sla_window_days FROM monitors WHERE seq > ?1 ORDER BY seq LIMIT ?2",
                )?
                .query_map(params![after, FOLD_MONITORS], |r| {
                    Ok((r.get::<_, i64>(0)?, r.get::<_, f64>(1)?))
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let mut rows = 0;
            for (seq, window_days) in &monitors {
                let history_ms = ((window_days * 86_400_000.0) as i64).max(keep_ms);
                let left = budget.saturating_sub(rows) as i64;
                let (n, done) = fold_monitor(tx, *seq, now - history_ms, cutoff, left / 60)?;
                rows += n;
                if !done {
                    // The same monitor goes on in the next transaction.
                    return Ok((rows, Some(seq - 1)));
                }
                if rows >= budget {
                    return Ok((rows, Some(*seq)));
                }
            }
            Ok((
                rows,
                match monitors.last() {
                    Some((seq, _)) if monitors.len() as i64 == FOLD_MONITORS => Some(*seq),
                    _ => None,
                },
            ))
        })?;
        Ok((done.0, done.1, started.elapsed()))
    }
}

impl Store {
    /// Rows of each resolution one monitor holds: raw checks, minutes, hours.
    #[cfg(test)]
    pub fn history_rows(&self, monitor_seq: i64) -> Result<[i64; 3]> {
        self.read(|c| {
            let mut out = [0; 3];
            for (i, table) in ["checks", "check_minutes", "check_hours"]
                .iter()
                .enumerate()
            {
                out[i] = c.query_row(
                    &format!("SELECT count(*) FROM {table} WHERE monitor_seq = ?1"),
                    [monitor_seq],
                    |r| r.get(0),
                )?;
            }
            Ok(out)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::store::testkit::store;

    /// Folding, expiry and the window's sums each read one monitor's range of a primary key,
    /// never a table (retention runs them for every monitor, every minute).
    #[test]
    fn history_statements_read_one_monitors_range() {
        let (_dir, store) = store();
        let conn = store.writer.lock().unwrap();
        let plan = |sql: &str| crate::store::tests::query_plan(&conn, sql);
        let minutes = "SEARCH check_minutes USING PRIMARY KEY (monitor_seq=? AND minute";
        let hours = "SEARCH check_hours USING PRIMARY KEY (monitor_seq=? AND hour";
        let rows = [
            (
                CHECKS_BEFORE,
                "SEARCH checks USING COVERING INDEX checks_by_time (monitor_seq=? AND at<?)",
            ),
            (MINUTES_BEFORE, minutes),
            (HOURS_BEFORE, hours),
            (
                OLDEST_MINUTE,
                "SEARCH check_minutes USING PRIMARY KEY (monitor_seq=?)",
            ),
            (MINUTES_INTO_HOURS, minutes),
            (MINUTES_SINCE, minutes),
            (HOURS_SINCE, hours),
            (MINUTES_BEFORE_COUNT, minutes),
        ];
        for (sql, want) in rows {
            let plan = plan(sql);
            assert!(
                plan.contains(want) && !plan.contains("SCAN"),
                "{sql}\n  {plan}\n  wanted {want}"
            );
        }
    }
}
