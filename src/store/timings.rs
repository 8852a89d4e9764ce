//! The phases of a delivery request or a monitor check (SPEC 4.5) as stored: six nullable
//! columns beside the `requests` or `checks` row, durations in microseconds. A row written
//! before phases were timed, or a push check (no request at all), has NULL in every one, and
//! reads back as no timings. The type is here, with the store's other plain data, and
//! measured by `net::timing`; only the conversion lives here besides, the statements that
//! write and read the columns are their tables'.

use std::time::Duration;

use rusqlite::Row;

/// The phases of one request. A phase that did not happen is `None`: TLS on plain HTTP, a
/// name lookup for an IP address, every connection phase of a reused connection, and the
/// wait for a head that never came.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Timings {
    pub dns: Option<Duration>,
    pub connect: Option<Duration>,
    pub tls: Option<Duration>,
    /// From the moment the connection was ready (made, or taken from the pool) to the end of
    /// the response head.
    pub ttfb: Option<Duration>,
    /// The whole request, to the end of the (at most 4 KiB read of the) response body.
    pub total: Duration,
    /// The request went out on a connection an earlier request had opened.
    pub reused: bool,
}

impl Timings {
    /// The wire shape shared by attempts, checks and `monitor.status_change` (SPEC 4.5):
    /// milliseconds with microsecond precision, so that a loopback phase reads 0.08 rather
    /// than 0, and null for a phase that did not happen.
    pub fn as_json(&self) -> serde_json::Value {
        let ms = |d: Option<Duration>| d.map(|d| d.as_micros() as f64 / 1000.0);
        serde_json::json!({
            "dns_ms": ms(self.dns),
            "connect_ms": ms(self.connect),
            "tls_ms": ms(self.tls),
            "ttfb_ms": ms(self.ttfb),
            "total_ms": ms(Some(self.total)),
            "reused": self.reused,
        })
    }
}

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
