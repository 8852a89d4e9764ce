//! Databases of the size a long-lived install reaches, made in minutes instead of the month
//! it takes to live through them, for the full-size benchmark (`benches/bench.rs`,
//! `full_size`) and for tests that need history. Rows are written with plain SQL in large
//! transactions on the store's own writer, with the flush of the log off: a fixture that a
//! crash cuts short is simply made again.
//!
//! It writes what the service would have written, column for column: events with their
//! envelopes and ids from this database's key, one message per endpoint, a request and an
//! attempt per try, idempotency keys for the last day; monitors with their raw checks and
//! folded minutes, components and incidents. It does not decide anything the service's rules
//! decide; the statuses it gives are fixed proportions, chosen to look like an install with a
//! few bad days behind it. It is reached only through the hidden `generate-fixture`
//! subcommand and never opens an existing file.

use std::path::Path;

use rusqlite::{Transaction, params};

use super::{Result, Store, create_private};
use crate::event::{ComponentStatus, EventType, Severity};

const SECOND: i64 = 1000;
const MINUTE: i64 = 60 * SECOND;
const HOUR: i64 = 60 * MINUTE;
const DAY: i64 = 24 * HOUR;

/// The history a fixture holds: 30 days (the default `retention_days`) and one hour more, so
/// that the first retention pass has an hour of delivered messages to prune, as it has after
/// the service was stopped for an hour.
pub const SPAN_MS: i64 = 30 * DAY + HOUR;

/// Endpoints of the *month* fixture.
pub const MONTH_ENDPOINTS: usize = 10;
/// Events of the *month* fixture at scale 1: one a second over `SPAN_MS`.
pub const MONTH_EVENTS: i64 = SPAN_MS / SECOND;
/// Monitors, incidents and components of the *fleet* fixture at scale 1.
pub const FLEET_MONITORS: i64 = 10_000;
pub const FLEET_INCIDENTS: i64 = 100_000;
pub const FLEET_COMPONENTS: i64 = 1_000;

/// Events per transaction while generating.
const EVENTS_PER_TX: i64 = 20_000;

/// Which history to generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fixture {
    /// 10 endpoints and one event a second for 30 days, each sent to every endpoint: mostly
    /// delivered; the last two days of a disabled endpoint pending; ten minutes of an endpoint
    /// that backs off parked; a day of another's failed.
    Month,
    /// 10,000 monitors at 60 s with 30 days of history (six hours of raw checks, minutes for
    /// the rest), 1,000 components and 100,000 incidents over a year, the newest 0.1 % open.
    Fleet,
}

impl Fixture {
    pub fn parse(text: &str) -> Option<Fixture> {
        match text {
            "month" => Some(Fixture::Month),
            "fleet" => Some(Fixture::Fleet),
            _ => None,
        }
    }
}

/// What a fixture holds, by table.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Generated {
    pub endpoints: i64,
    pub events: i64,
    pub messages: i64,
    pub requests: i64,
    pub monitors: i64,
    pub checks: i64,
    pub check_minutes: i64,
    pub check_hours: i64,
    pub incidents: i64,
}

/// Writes the fixture at `scale` (1.0 is the full size; counts are scaled and rounded, at
/// least one of each) into a new database at `path`, as of `now`. Refuses a file that exists.
pub fn generate(path: &Path, fixture: Fixture, scale: f64, now: i64) -> Result<Generated> {
    if !(scale > 0.0 && scale <= 1.0) {
        return Err(super::StoreError::Refused(format!(
            "the scale must be above 0 and at most 1, not {scale}"
        )));
    }
    create_private(path, false)?;
    let store = Store::open_file(path, None)?;
    let mut out = Generated::default();
    {
        let mut conn = store.writer.lock().unwrap_or_else(|p| p.into_inner());
        // A fixture cut short is made again, so nothing waits for the disk while writing it.
        conn.execute_batch("PRAGMA synchronous = OFF; PRAGMA cache_size = -262144;")?;
        let mut rng = Rng(0x5eed_f1c5_u64 ^ now as u64);
        match fixture {
            Fixture::Month => month(&store, &mut conn, scale, now, &mut rng, &mut out)?,
            Fixture::Fleet => fleet(&mut conn, scale, now, &mut rng, &mut out)?,
        }
        // The counts the service keeps as it changes messages (`counts.rs`), all at once.
        conn.execute_batch(
            "INSERT INTO message_counts (endpoint_seq, status, n)
                 SELECT endpoint_seq, status, count(*) FROM messages GROUP BY endpoint_seq, status;",
        )?;
        conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
    }
    Ok(out)
}

fn scaled(full: i64, scale: f64) -> i64 {
    ((full as f64 * scale).round() as i64).max(1)
}

/// A small, fast pseudo-random sequence (SplitMix64): a fixture needs variety, not secrecy,
/// and the same seed gives the same proportions.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n`.
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// What happened to one endpoint's message of an event accepted at `created`.
enum Fate {
    /// One attempt, answered 200.
    Delivered,
    /// Three attempts answered 503, then given up.
    Failed,
    /// Two attempts refused; the next is due later.
    Parked,
    /// Never tried: its endpoint is disabled.
    Pending,
}

/// The endpoint that backs off (its newest messages parked), the disabled one (its last two
/// days pending) and the one with a failed day, among `MONTH_ENDPOINTS`.
const BACKING_OFF: usize = 7;
const DISABLED: usize = 8;
const FAILED_DAY: usize = 6;

fn fate(endpoint: usize, created: i64, now: i64) -> Fate {
    let start = now - SPAN_MS;
    match endpoint {
        DISABLED if created >= now - 2 * DAY => Fate::Pending,
        BACKING_OFF if created >= now - 10 * MINUTE => Fate::Parked,
        FAILED_DAY if (start + 10 * DAY..start + 11 * DAY).contains(&created) => Fate::Failed,
        _ => Fate::Delivered,
    }
}

fn month(
    store: &Store,
    conn: &mut rusqlite::Connection,
    scale: f64,
    now: i64,
    rng: &mut Rng,
    out: &mut Generated,
) -> Result<()> {
    let start = now - SPAN_MS;
    let events = scaled(MONTH_EVENTS, scale);
    let spacing = SPAN_MS / events;
    let mut endpoints = Vec::with_capacity(MONTH_ENDPOINTS);
    {
        let tx = conn.transaction()?;
        for i in 0..MONTH_ENDPOINTS {
            let disabled = i == DISABLED;
            let backing_off = i == BACKING_OFF;
            tx.execute(
                "INSERT INTO endpoints (id, url, description, event_types, enabled, disabled_reason,
                                        batch_max, batch_window_ms, failures, failing_since,
                                        backoff_until, created_at, updated_at)
                 VALUES (?1, ?2, ?3, '', ?4, ?5, 100, 0, ?6, ?7, ?8, ?9, ?9)",
                params![
                    crate::id::new("ep"),
                    format!("http://127.0.0.1:9/fixture/{i}"),
                    format!("fixture endpoint {i}"),
                    !disabled,
                    disabled.then_some("manual"),
                    if backing_off { 20 } else { 0 },
                    backing_off.then_some(now - 10 * MINUTE),
                    backing_off.then_some(now + HOUR),
                    start - DAY,
                ],
            )?;
            let seq = tx.last_insert_rowid();
            tx.execute(
                "INSERT INTO endpoint_secrets (endpoint_seq, secret, created_at) VALUES (?1, ?2, ?3)",
                params![seq, crate::secret::generate(), start - DAY],
            )?;
            endpoints.push(seq);
        }
        tx.commit()?;
    }
    out.endpoints = endpoints.len() as i64;

    let mut next = 0;
    while next < events {
        let tx = conn.transaction()?;
        let end = (next + EVENTS_PER_TX).min(events);
        for i in next..end {
            month_event(
                store,
                &tx,
                i + 1,
                start + i * spacing,
                now,
                &endpoints,
                rng,
                out,
            )?;
        }
        tx.commit()?;
        next = end;
    }
    Ok(())
}

/// One event accepted at `created`, its messages and their attempts.
#[allow(clippy::too_many_arguments)]
fn month_event(
    store: &Store,
    tx: &Transaction,
    seq: i64,
    created: i64,
    now: i64,
    endpoints: &[i64],
    rng: &mut Rng,
    out: &mut Generated,
) -> Result<()> {
    // Mostly monitor transitions, some incidents, never an SLA warning: a filter on
    // `sla.breach_warning` so matches nothing, and one on `incident.resolved` matches 1 %.
    let event_type = match rng.below(100) {
        0 => EventType::IncidentResolved,
        1 | 2 => EventType::IncidentCreated,
        _ => EventType::MonitorStatusChange,
    };
    let id = store
        .event_ids
        .id(seq)
        .ok_or_else(|| super::StoreError::Refused("event seq out of range".into()))?;
    let data = crate::event::sample_data(event_type, created);
    let payload = crate::event::envelope(&id, event_type.as_str(), created, &data);
    tx.prepare_cached(
        "INSERT INTO events (seq, id, type, created_at, payload) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![seq, id, event_type.as_str(), created, payload])?;
    out.events += 1;
    // Publishers that send an `Idempotency-Key` leave one per event for a day.
    if created >= now - super::IDEMPOTENCY_WINDOW_MS && seq % 2 == 0 {
        tx.prepare_cached(
            "INSERT INTO idempotency_keys (key, request, event_id, created_at) VALUES (?1, ?2, ?3, ?4)",
        )?
        .execute(params![
            format!("fixture-{seq}"),
            format!("{{\"type\":\"{}\",\"data\":{data}}}", event_type.as_str()),
            id,
            created
        ])?;
    }
    let mut message = tx.prepare_cached(
        "INSERT INTO messages (event_seq, endpoint_seq, status, attempts, failures, next_attempt_at,
                               created_at, finished_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?;
    let mut request = tx.prepare_cached(
        "INSERT INTO requests (endpoint_seq, at, duration_ms, status_code, error, response_body)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?;
    let mut attempt = tx.prepare_cached(
        "INSERT INTO attempts (message_seq, request_seq, attempt) VALUES (?1, ?2, ?3)",
    )?;
    for (i, &endpoint) in endpoints.iter().enumerate() {
        let (status, tries, next_attempt_at, finished) = match fate(i, created, now) {
            Fate::Delivered => ("delivered", 1, None, Some(created + 60)),
            Fate::Failed => ("failed", 3, None, Some(created + 6 * HOUR)),
            Fate::Parked => ("parked", 2, Some(now + HOUR), None),
            Fate::Pending => ("pending", 0, None, None),
        };
        let failures = if status == "parked" { tries } else { 0 };
        message.execute(params![
            seq,
            endpoint,
            status,
            tries,
            failures,
            next_attempt_at,
            created,
            finished
        ])?;
        let message_seq = tx.last_insert_rowid();
        out.messages += 1;
        for n in 1..=tries {
            let at = created + (n - 1) * 10 * MINUTE + 5;
            let duration = 20 + rng.below(80) as i64;
            match status {
                "delivered" => request.execute(params![
                    endpoint,
                    at,
                    duration,
                    200,
                    None::<&str>,
                    "{\"ok\":true}"
                ])?,
                "failed" => request.execute(params![
                    endpoint,
                    at,
                    duration,
                    503,
                    None::<&str>,
                    "upstream unavailable"
                ])?,
                _ => request.execute(params![
                    endpoint,
                    at,
                    0,
                    None::<i64>,
                    "connection_refused",
                    None::<&str>
                ])?,
            };
            attempt.execute(params![message_seq, tx.last_insert_rowid(), n])?;
            out.requests += 1;
        }
    }
    Ok(())
}

fn fleet(
    conn: &mut rusqlite::Connection,
    scale: f64,
    now: i64,
    rng: &mut Rng,
    out: &mut Generated,
) -> Result<()> {
    let start = now - SPAN_MS;
    let components = scaled(FLEET_COMPONENTS, scale);
    let monitors = scaled(FLEET_MONITORS, scale);
    let incidents = scaled(FLEET_INCIDENTS, scale);
    let mut component_ids = Vec::with_capacity(components as usize);
    {
        let tx = conn.transaction()?;
        for i in 0..components {
            let id = crate::id::new("comp");
            tx.execute(
                "INSERT INTO components (id, name, status, created_at, updated_at)
                 VALUES (?1, ?2, 'operational', ?3, ?3)",
                params![id, format!("Component {i}"), start - DAY],
            )?;
            component_ids.push(id);
        }
        tx.commit()?;
    }

    // Monitors are stored disabled: the fixture measures what their history costs to keep and
    // read; checking 10,000 of them is measured on its own (BENCHMARKS.md).
    let mut monitor_ids = Vec::with_capacity(monitors as usize);
    for m in 0..monitors {
        let tx = conn.transaction()?;
        let id = crate::id::new("mon");
        let component = &component_ids[(m % components) as usize];
        tx.execute(
            "INSERT INTO monitors (id, name, url, method, interval_ms, timeout_ms, expected_status,
                                   failures_before_down, successes_before_up, component_id,
                                   auto_incident, severity, sla_target, sla_window_days, enabled,
                                   last_checked_at, created_at, updated_at)
             VALUES (?1, ?2, ?3, 'GET', 60000, 10000, '2xx', 3, 2, ?4, 1, 'major', 99.9, 30, 0,
                     ?5, ?6, ?6)",
            params![
                id,
                format!("Monitor {m}"),
                format!("http://127.0.0.1:9/fixture/monitor/{m}"),
                component,
                now - MINUTE,
                start - DAY
            ],
        )?;
        let monitor = tx.last_insert_rowid();
        monitor_ids.push(id);
        out.monitors += 1;
        // Six hours of raw checks (what the 1 h and 6 h ratios read), then one row a minute
        // until a day old, as recording a check folds them, then one row an hour for the rest of
        // the window, as retention folds those (`Store::fold_check_hours`).
        let raw_from = now - super::RAW_CHECKS_MS;
        let minutes_from = now - super::MINUTE_ROWS_MS;
        let minutes_from = minutes_from - minutes_from % HOUR;
        let mut hour = tx.prepare_cached(
            "INSERT INTO check_hours (monitor_seq, hour, checks, failures, failed_ms, response_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?;
        let mut minute = tx.prepare_cached(
            "INSERT INTO check_minutes (monitor_seq, minute, checks, failures, failed_ms, response_ms)
             VALUES (?1, ?2, 1, ?3, ?4, ?5)",
        )?;
        let mut t = start - start % MINUTE;
        while t < minutes_from {
            let hour_start = t - t % HOUR;
            let (mut checks, mut failures, mut response) = (0, 0, 0);
            while t < minutes_from && t - t % HOUR == hour_start {
                checks += 1;
                failures += i64::from(rng.below(500) == 0);
                response += 40 + rng.below(200) as i64;
                t += MINUTE;
            }
            hour.execute(params![
                monitor,
                hour_start,
                checks,
                failures,
                failures * 60_000,
                response
            ])?;
            out.check_hours += 1;
        }
        while t < raw_from - raw_from % MINUTE {
            let failed = rng.below(500) == 0;
            minute.execute(params![
                monitor,
                t,
                failed as i64,
                if failed { 60_000 } else { 0 },
                40 + rng.below(200) as i64
            ])?;
            out.check_minutes += 1;
            t += MINUTE;
        }
        let mut check = tx.prepare_cached(
            "INSERT INTO checks (monitor_seq, at, ok, status_code, response_time_ms, first_byte_ms,
                                 error, interval_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 60000)",
        )?;
        while t < now {
            let failed = rng.below(500) == 0;
            let response = 40 + rng.below(200) as i64;
            check.execute(params![
                monitor,
                t + rng.below(1000) as i64,
                !failed,
                if failed { None } else { Some(200) },
                response,
                (!failed).then_some(response / 2),
                failed.then_some("timeout")
            ])?;
            out.checks += 1;
            t += MINUTE;
        }
        drop(hour);
        drop(minute);
        drop(check);
        tx.commit()?;
    }

    // Incidents over a year, a third of them opened by monitors; the newest 0.1 % still open.
    let open_from = incidents - (incidents / 1000).max(1);
    let spacing = 365 * DAY / incidents;
    let mut next = 0;
    while next < incidents {
        let tx = conn.transaction()?;
        let end = (next + EVENTS_PER_TX).min(incidents);
        let mut insert = tx.prepare_cached(
            "INSERT INTO incidents (id, title, status, severity, components, source, monitor_id,
                                    started_at, resolved_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        )?;
        for i in next..end {
            let started = now - 365 * DAY + i * spacing;
            let open = i >= open_from;
            let resolved =
                (!open).then(|| started + 10 * MINUTE + rng.below(2 * HOUR as u64) as i64);
            let component = (rng.below(components as u64)) as usize;
            let by_monitor = i % 3 == 0;
            let refs = [super::ComponentRef {
                id: component_ids[component].clone(),
                name: format!("Component {component}"),
                status: ComponentStatus::MajorOutage,
            }];
            insert.execute(params![
                crate::id::new("inc"),
                format!("Incident {i}"),
                if open { "investigating" } else { "resolved" },
                Severity::ALL[(i % 3) as usize],
                super::components_incidents::components_to_text(&refs),
                if by_monitor { "monitor" } else { "manual" },
                by_monitor.then(|| &monitor_ids[(i as usize) % monitor_ids.len()]),
                started,
                resolved,
                resolved.unwrap_or(started),
            ])?;
            out.incidents += 1;
        }
        drop(insert);
        tx.commit()?;
        next = end;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{MessageFilter, MessageStatus, StoreError};

    #[test]
    fn a_month_at_a_small_scale_reads_back_through_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("month.db");
        let now = 1_800_000_000_000;
        let made = generate(&path, Fixture::Month, 0.0005, now).unwrap();
        assert_eq!(made.endpoints, 10);
        assert_eq!(made.events, scaled(MONTH_EVENTS, 0.0005));
        assert_eq!(made.messages, made.events * 10);

        let s = Store::open_existing(&path, None).unwrap();
        let counts = s.message_counts.get();
        let by = |status: &str| counts.iter().find(|(s, _)| *s == status).unwrap().1;
        assert_eq!(counts.iter().map(|(_, n)| n).sum::<i64>(), made.messages);
        // Proportions of the fates: about 2 days of 30 pending, one day failed, some parked.
        let per_endpoint = made.events as f64;
        assert!((by("pending") as f64 - per_endpoint * 2.0 / 30.0).abs() < per_endpoint * 0.01);
        assert!((by("failed") as f64 - per_endpoint / 30.0).abs() < per_endpoint * 0.01);
        assert!(by("delivered") > made.messages * 8 / 10);

        // The events' ids are this database's: the newest is found by its id.
        let newest = s.list_events(None, None, 1).unwrap();
        assert_eq!(newest[0].seq, made.events);
        assert_eq!(s.event(&newest[0].id).unwrap().unwrap().seq, made.events);
        assert!(newest[0].payload.contains(&newest[0].id));
        let failed = MessageFilter {
            status: Some(MessageStatus::Failed),
            ..Default::default()
        };
        let page = s.list_messages(&failed, None, 5).unwrap();
        assert_eq!(page.len(), 5);
        assert_eq!(page[0].attempt_count, 3);
        // The oldest hour is past the default retention of 30 days.
        let cutoff = now - 30 * DAY;
        let mut pruned = 0;
        loop {
            let n = s
                .prune(cutoff, now - crate::store::IDEMPOTENCY_WINDOW_MS, 500)
                .unwrap();
            pruned += n;
            if n < 500 {
                break;
            }
        }
        let expected = made.messages as f64 * HOUR as f64 / SPAN_MS as f64;
        assert!(
            (pruned as f64 - expected).abs() <= 20.0,
            "{pruned} vs {expected}"
        );

        // A fixture never writes over a file.
        drop(s);
        assert!(matches!(
            generate(&path, Fixture::Month, 0.0005, now),
            Err(StoreError::File(..))
        ));
    }

    #[test]
    fn a_fleet_at_a_small_scale_reads_back_through_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fleet.db");
        let now = 1_800_000_000_000;
        let made = generate(&path, Fixture::Fleet, 0.0002, now).unwrap();
        assert_eq!((made.monitors, made.incidents), (2, 20));
        // Six hours raw, minutes until a day old (from an hour's start), then hours, for 30
        // days and an hour, per monitor.
        assert_eq!(made.checks, 2 * 360);
        let minutes_from = (now - DAY) - (now - DAY) % HOUR;
        let minutes = (now - 6 * HOUR - minutes_from) / MINUTE;
        assert_eq!(made.check_minutes, 2 * minutes);
        assert_eq!(
            made.check_hours,
            2 * ((SPAN_MS / MINUTE - 360 - minutes + 59) / 60)
        );
        let s = Store::open_existing(&path, None).unwrap();
        let open = s
            .list_incidents(Some(crate::store::IncidentStatus::Investigating), None, 50)
            .unwrap();
        assert_eq!(open.len(), 1);
        let monitor = &s.list_monitors(None, 1).unwrap()[0];
        let history = s
            .check_history(monitor.seq, now - 30 * DAY, [now - HOUR, now - 6 * HOUR])
            .unwrap();
        assert!(
            history.window.checks > 40_000,
            "{:?}",
            history.window.checks
        );
    }
}
