//! The phases of a delivery request or a monitor check (SPEC 4.5) as stored: six nullable
//! columns beside the `requests` or `checks` row, durations in microseconds. A row written
//! before phases were timed, or a push check (no request at all), has NULL in every one, and
//! reads back as no timings. Only the conversion lives here; the statements that write and
//! read the columns are their tables'.

use std::time::Duration;

use rusqlite::Row;

use crate::net::Timings;

/// The columns, in the order `values` gives and `read` takes them.
pub(super) const COLUMNS: &str = "dns_us, connect_us, tls_us, ttfb_us, total_us, reused";

/// The values of `COLUMNS` for `t`; all NULL for none.
pub(super) fn values(t: Option<&Timings>) -> [Option<i64>; 6] {
    let us = |d: Option<Duration>| d.map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX));
    match t {
        None => [None; 6],
        Some(t) => [
            us(t.dns),
            us(t.connect),
            us(t.tls),
            us(t.ttfb),
            us(Some(t.total)),
            Some(i64::from(t.reused)),
        ],
    }
}

/// The timings in `COLUMNS` starting at column `first` of `r`; `None` when the row has none
/// (its total is NULL).
pub(super) fn read(r: &Row, first: usize) -> rusqlite::Result<Option<Timings>> {
    let us = |i: usize| -> rusqlite::Result<Option<Duration>> {
        let v: Option<i64> = r.get(first + i)?;
        Ok(v.map(|v| Duration::from_micros(v.max(0) as u64)))
    };
    let Some(total) = us(4)? else {
        return Ok(None);
    };
    let reused: Option<bool> = r.get(first + 5)?;
    Ok(Some(Timings {
        dns: us(0)?,
        connect: us(1)?,
        tls: us(2)?,
        ttfb: us(3)?,
        total,
        reused: reused.unwrap_or(false),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timings_read_back_as_written_and_none_reads_back_as_none() {
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        conn.execute_batch(&format!("CREATE TABLE t ({COLUMNS})"))
            .unwrap();
        let written = Timings {
            dns: None,
            connect: Some(Duration::from_micros(812)),
            tls: Some(Duration::from_millis(15)),
            ttfb: Some(Duration::from_millis(120)),
            total: Duration::from_millis(140),
            reused: false,
        };
        let reused = Timings {
            ttfb: Some(Duration::from_micros(3)),
            total: Duration::from_micros(9),
            reused: true,
            ..Timings::default()
        };
        for t in [Some(&written), Some(&reused), None] {
            conn.execute("DELETE FROM t", []).unwrap();
            conn.execute(
                &format!("INSERT INTO t ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6)"),
                values(t),
            )
            .unwrap();
            let back = conn
                .query_row(&format!("SELECT {COLUMNS} FROM t"), [], |r| read(r, 0))
                .unwrap();
            assert_eq!(back.as_ref(), t);
        }
    }
}
