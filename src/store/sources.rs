//! The event sources' tables: components, incidents, monitors and their check history. Every
//! state change that emits an event writes the event and its messages in the same
//! transaction (through the store's one fan-out, `publish_one`), so a crash never leaves an
//! incident without its event or an event without its incident. The rules themselves
//! (lifecycle, thresholds, SLA) are pure functions elsewhere; this file applies them to rows.
//!
//! Check history: raw checks for the last six hours (enough for the SLA's recent ratios and
//! for `GET /monitors/{id}/checks`), then per-minute rows until a day old, then per-hour rows
//! for the rest of the monitor's SLA window (at least `retention_days`), so that a monitor
//! keeps at most 6 h of checks, 18 h × 60 minute rows and 24 rows a day of its window
//! (`sla::window_start` states what that costs the SLA rule). Raw checks are folded into
//! minutes a few rows at a time, in the transaction that records each check; minutes into
//! hours by retention (`fold_check_hours`), in batches of bounded size.

use rusqlite::{Connection, OptionalExtension, Transaction, params};
use serde_json::Value;

use super::{Durability, NewEvent, PublishResult, Result, Store};
use crate::event::EventType;
use crate::id::EventIds;
use crate::monitor::rules::{self, Kind, Outcome, State, Status};
use crate::sla;

/// Raw checks younger than this are kept as they are; older ones become minute aggregates.
pub const RAW_CHECKS_MS: i64 = sla::RECENT_LONG_MS;
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

/// Why a write was refused; nothing was written.
#[derive(Debug, PartialEq)]
pub enum Refusal {
    /// The id is taken.
    Exists,
    /// A component id that names no component; `field` is where it was given.
    UnknownComponent { field: String },
    /// The component is named by a monitor (its id).
    InUse { monitor_id: String },
    /// The incident is resolved, which is final.
    Final,
    /// The incident's lifecycle only moves forward.
    Backward { from: String, to: String },
    /// A setting breaks a rule that ties it to another.
    Invalid { field: String, message: String },
}

/// What a write that may be refused returns inside the store's own `Result`.
pub type Refused<T> = std::result::Result<T, Refusal>;

/// An incident as written, with the events the write emitted.
pub type IncidentChange = (IncidentRow, Vec<Emitted>);

/// One event a write produced: its type (for metrics) and the endpoints that got messages
/// (for the dispatcher).
#[derive(Debug, Clone, PartialEq)]
pub struct Emitted {
    pub event_id: String,
    pub event_type: EventType,
    pub endpoints: Vec<i64>,
}

// ---- rows ----

#[derive(Debug, Clone)]
pub struct ComponentRow {
    pub seq: i64,
    pub id: String,
    pub name: String,
    pub status: String,
    pub created_at: i64,
    pub updated_at: i64,
}

/// A component as an incident names it, with the status the incident gives it.
#[derive(Debug, Clone, PartialEq)]
pub struct ComponentRef {
    pub id: String,
    pub name: String,
    pub status: String,
}

/// A component as a request names it; the name is filled in from the component when absent.
#[derive(Debug, Clone)]
pub struct ComponentInput {
    pub id: String,
    pub name: Option<String>,
    pub status: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct IncidentRow {
    pub seq: i64,
    pub id: String,
    pub title: String,
    pub status: String,
    pub severity: String,
    pub components: Vec<ComponentRef>,
    pub source: String,
    pub monitor_id: Option<String>,
    pub started_at: i64,
    pub resolved_at: Option<i64>,
    pub updated_at: i64,
}

pub struct NewIncident {
    pub id: String,
    pub title: String,
    pub severity: String,
    pub status: String,
    pub components: Vec<ComponentInput>,
    pub now: i64,
}

#[derive(Default)]
pub struct IncidentPatch {
    pub title: Option<String>,
    pub severity: Option<String>,
    pub status: Option<String>,
    pub components: Option<Vec<ComponentInput>>,
}

/// What a person sets on a monitor.
#[derive(Debug, Clone, PartialEq)]
pub struct MonitorSettings {
    pub name: String,
    pub url: String,
    pub method: String,
    pub interval_ms: i64,
    pub timeout_ms: i64,
    pub expected_status: String,
    pub failures_before_down: i64,
    pub successes_before_up: i64,
    pub component_id: Option<String>,
    pub auto_incident: bool,
    pub severity: String,
    pub sla_target: Option<f64>,
    pub sla_window_days: f64,
    pub enabled: bool,
    pub kind: Kind,
    /// How long past its interval a push monitor waits for a ping; 0 for HTTP monitors.
    pub grace_ms: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct MonitorRow {
    pub seq: i64,
    pub id: String,
    pub settings: MonitorSettings,
    pub state: State,
    /// The open incident this monitor opened, if any.
    pub incident_id: Option<String>,
    pub arming: sla::Arming,
    pub last_checked_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
    /// A push monitor's ping token (a secret: shown only by create, reveal and rotate).
    pub push_token: Option<String>,
}

#[derive(Default)]
pub struct MonitorPatch {
    pub name: Option<String>,
    pub url: Option<String>,
    pub method: Option<String>,
    pub interval_ms: Option<i64>,
    pub timeout_ms: Option<i64>,
    pub expected_status: Option<String>,
    pub failures_before_down: Option<i64>,
    pub successes_before_up: Option<i64>,
    /// `Some(None)` clears it.
    pub component_id: Option<Option<String>>,
    pub auto_incident: Option<bool>,
    pub severity: Option<String>,
    /// `Some(None)` clears it.
    pub sla_target: Option<Option<f64>>,
    pub sla_window_days: Option<f64>,
    pub enabled: Option<bool>,
    pub grace_ms: Option<i64>,
}

impl MonitorPatch {
    fn apply(&self, s: &MonitorSettings) -> MonitorSettings {
        let pick = |a: &Option<String>, b: &String| a.clone().unwrap_or_else(|| b.clone());
        MonitorSettings {
            name: pick(&self.name, &s.name),
            url: pick(&self.url, &s.url),
            method: pick(&self.method, &s.method),
            interval_ms: self.interval_ms.unwrap_or(s.interval_ms),
            timeout_ms: self.timeout_ms.unwrap_or(s.timeout_ms),
            expected_status: pick(&self.expected_status, &s.expected_status),
            failures_before_down: self.failures_before_down.unwrap_or(s.failures_before_down),
            successes_before_up: self.successes_before_up.unwrap_or(s.successes_before_up),
            component_id: self
                .component_id
                .clone()
                .unwrap_or_else(|| s.component_id.clone()),
            auto_incident: self.auto_incident.unwrap_or(s.auto_incident),
            severity: pick(&self.severity, &s.severity),
            sla_target: self.sla_target.unwrap_or(s.sla_target),
            sla_window_days: self.sla_window_days.unwrap_or(s.sla_window_days),
            enabled: self.enabled.unwrap_or(s.enabled),
            kind: s.kind,
            grace_ms: self.grace_ms.unwrap_or(s.grace_ms),
        }
    }
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
    pub timings: Option<crate::net::Timings>,
}

/// What recording a check needs besides the check.
pub struct CheckContext<'a> {
    /// `monitors.region`, carried in `monitor.status_change`.
    pub region: &'a str,
    /// History is kept at least this long (`retention_days`), longer for a longer SLA window.
    pub keep_ms: i64,
    /// When the check ended.
    pub now: i64,
}

// ---- helpers shared by the operations below ----

/// Stores one event and its messages in `tx` through the store's fan-out.
fn emit(
    tx: &Transaction,
    ids: &EventIds,
    event_type: EventType,
    data: &Value,
    now: i64,
    out: &mut Vec<Emitted>,
) -> Result<()> {
    debug_assert_eq!(crate::event::validate(event_type, data), Ok(()));
    let mut item = NewEvent {
        payload: crate::event::envelope(
            crate::event::UNASSIGNED_ID,
            event_type.as_str(),
            now,
            data,
        ),
        event_type: event_type.as_str().to_string(),
        created_at: now,
        only_endpoint: None,
        idempotency: None,
    };
    let subscribers = super::subscribers(tx)?;
    let mut seqs = super::EventSeqs::default();
    match super::publish_one(tx, ids, &mut seqs, &mut item, &subscribers, now)? {
        PublishResult::Accepted {
            event_id,
            endpoints,
        } => out.push(Emitted {
            event_id,
            event_type,
            endpoints,
        }),
        // Without an idempotency key every event is accepted.
        PublishResult::Repeated { .. } | PublishResult::Conflict => {}
    }
    Ok(())
}

const COMPONENT_COLUMNS: &str = "seq, id, name, status, created_at, updated_at";

fn component_row(r: &rusqlite::Row) -> rusqlite::Result<ComponentRow> {
    Ok(ComponentRow {
        seq: r.get(0)?,
        id: r.get(1)?,
        name: r.get(2)?,
        status: r.get(3)?,
        created_at: r.get(4)?,
        updated_at: r.get(5)?,
    })
}

fn component_by_id(c: &Connection, id: &str) -> Result<Option<ComponentRow>> {
    let sql = format!("SELECT {COMPONENT_COLUMNS} FROM components WHERE id = ?1");
    Ok(c.prepare_cached(&sql)?
        .query_row([id], component_row)
        .optional()?)
}

fn set_component_status(tx: &Transaction, id: &str, status: &str, now: i64) -> Result<()> {
    tx.prepare_cached(
        "UPDATE components SET status = ?2, updated_at = ?3 WHERE id = ?1 AND status != ?2",
    )?
    .execute(params![id, status, now])?;
    Ok(())
}

/// Resolves names and checks that every component exists; `field` prefixes error fields.
fn resolve_components(
    tx: &Transaction,
    inputs: &[ComponentInput],
    field: &str,
) -> Result<Refused<Vec<ComponentRef>>> {
    let mut out = Vec::with_capacity(inputs.len());
    for (i, c) in inputs.iter().enumerate() {
        let Some(row) = component_by_id(tx, &c.id)? else {
            return Ok(Err(Refusal::UnknownComponent {
                field: format!("{field}[{i}].id"),
            }));
        };
        out.push(ComponentRef {
            id: row.id,
            name: c.name.clone().unwrap_or(row.name),
            status: c.status.clone(),
        });
    }
    Ok(Ok(out))
}

fn components_to_text(components: &[ComponentRef]) -> String {
    crate::incident::components_json(components).to_string()
}

fn components_from_text(text: &str) -> Vec<ComponentRef> {
    let parsed: Value = serde_json::from_str(text).unwrap_or(Value::Null);
    let field = |v: &Value, k: &str| v[k].as_str().unwrap_or_default().to_string();
    parsed
        .as_array()
        .map(|items| {
            items
                .iter()
                .map(|v| ComponentRef {
                    id: field(v, "id"),
                    name: field(v, "name"),
                    status: field(v, "status"),
                })
                .collect()
        })
        .unwrap_or_default()
}

const INCIDENT_COLUMNS: &str = "seq, id, title, status, severity, components, source, monitor_id, \
     started_at, resolved_at, updated_at";
/// Retention's deletion of incidents resolved before `?1`, at most `?2`.
pub(super) const PRUNE_INCIDENTS: &str = "DELETE FROM incidents WHERE seq IN (
     SELECT seq FROM incidents WHERE status = 'resolved' AND resolved_at < ?1 LIMIT ?2)";

/// The incident list's statement: with a status (`?1`), through `incidents_by_status
/// (status, seq)`; without, the table by `seq`. `?2 IS NULL OR status = ?2` in one statement
/// read every incident newer than the page's matches.
pub(super) fn incidents_page(with_status: bool) -> String {
    if with_status {
        format!(
            "SELECT {INCIDENT_COLUMNS} FROM incidents WHERE status = ?1 AND seq < ?2
             ORDER BY seq DESC LIMIT ?3"
        )
    } else {
        format!(
            "SELECT {INCIDENT_COLUMNS} FROM incidents WHERE seq < ?1 ORDER BY seq DESC LIMIT ?2"
        )
    }
}

fn incident_row(r: &rusqlite::Row) -> rusqlite::Result<IncidentRow> {
    Ok(IncidentRow {
        seq: r.get(0)?,
        id: r.get(1)?,
        title: r.get(2)?,
        status: r.get(3)?,
        severity: r.get(4)?,
        components: components_from_text(&r.get::<_, String>(5)?),
        source: r.get(6)?,
        monitor_id: r.get(7)?,
        started_at: r.get(8)?,
        resolved_at: r.get(9)?,
        updated_at: r.get(10)?,
    })
}

fn incident_by_id(c: &Connection, id: &str) -> Result<Option<IncidentRow>> {
    let sql = format!("SELECT {INCIDENT_COLUMNS} FROM incidents WHERE id = ?1");
    Ok(c.prepare_cached(&sql)?
        .query_row([id], incident_row)
        .optional()?)
}

fn insert_incident(tx: &Transaction, inc: &IncidentRow) -> Result<i64> {
    tx.prepare_cached(
        "INSERT INTO incidents (id, title, status, severity, components, source, monitor_id,
                                started_at, resolved_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )?
    .execute(params![
        inc.id,
        inc.title,
        inc.status,
        inc.severity,
        components_to_text(&inc.components),
        inc.source,
        inc.monitor_id,
        inc.started_at,
        inc.resolved_at,
        inc.updated_at,
    ])?;
    Ok(tx.last_insert_rowid())
}

fn update_incident_row(tx: &Transaction, inc: &IncidentRow) -> Result<()> {
    tx.prepare_cached(
        "UPDATE incidents SET title = ?2, status = ?3, severity = ?4, components = ?5,
                resolved_at = ?6, updated_at = ?7 WHERE seq = ?1",
    )?
    .execute(params![
        inc.seq,
        inc.title,
        inc.status,
        inc.severity,
        components_to_text(&inc.components),
        inc.resolved_at,
        inc.updated_at,
    ])?;
    Ok(())
}

/// The status a component falls back to when incident `except` stops naming it: the worst
/// status any other open incident gives it, else operational.
fn fallback_status(tx: &Transaction, component_id: &str, except: i64) -> Result<&'static str> {
    let mut stmt = tx.prepare_cached(
        "SELECT components FROM incidents WHERE status != 'resolved' AND seq != ?1",
    )?;
    let rows = stmt.query_map([except], |r| r.get::<_, String>(0))?;
    let mut statuses = Vec::new();
    for text in rows {
        for c in components_from_text(&text?) {
            if c.id == component_id {
                statuses.push(c.status);
            }
        }
    }
    Ok(crate::incident::worst(statuses.iter().map(String::as_str)))
}

/// Marks `inc` resolved now (with `components` when given, else each of its components at
/// its fallback status), writes it and emits `incident.resolved`.
fn resolve(
    tx: &Transaction,
    ids: &EventIds,
    inc: &mut IncidentRow,
    components: Option<Vec<ComponentRef>>,
    now: i64,
    out: &mut Vec<Emitted>,
) -> Result<()> {
    let components = match components {
        Some(given) => given,
        None => {
            let mut restored = inc.components.clone();
            for c in &mut restored {
                c.status = fallback_status(tx, &c.id, inc.seq)?.to_string();
            }
            restored
        }
    };
    for c in &components {
        set_component_status(tx, &c.id, &c.status, now)?;
    }
    inc.components = components;
    inc.status = "resolved".into();
    inc.resolved_at = Some(now);
    inc.updated_at = now;
    update_incident_row(tx, inc)?;
    emit(
        tx,
        ids,
        EventType::IncidentResolved,
        &crate::incident::event_data(inc),
        now,
        out,
    )
}

const MONITOR_COLUMNS: &str = "seq, id, name, url, method, interval_ms, timeout_ms, expected_status, \
     failures_before_down, successes_before_up, component_id, auto_incident, severity, sla_target, \
     sla_window_days, enabled, status, consecutive_failures, consecutive_successes, incident_id, \
     sla_armed, sla_false_since, last_checked_at, created_at, updated_at, kind, grace_ms, push_token";

fn monitor_row(r: &rusqlite::Row) -> rusqlite::Result<MonitorRow> {
    Ok(MonitorRow {
        seq: r.get(0)?,
        id: r.get(1)?,
        settings: MonitorSettings {
            name: r.get(2)?,
            url: r.get(3)?,
            method: r.get(4)?,
            interval_ms: r.get(5)?,
            timeout_ms: r.get(6)?,
            expected_status: r.get(7)?,
            failures_before_down: r.get(8)?,
            successes_before_up: r.get(9)?,
            component_id: r.get(10)?,
            auto_incident: r.get(11)?,
            severity: r.get(12)?,
            sla_target: r.get(13)?,
            sla_window_days: r.get(14)?,
            enabled: r.get(15)?,
            // A kind this binary does not know cannot be stored by it; reading one as HTTP
            // keeps the row listable.
            kind: Kind::parse(&r.get::<_, String>(25)?).unwrap_or(Kind::Http),
            grace_ms: r.get(26)?,
        },
        state: State {
            status: Status::parse(&r.get::<_, String>(16)?),
            failures: r.get(17)?,
            successes: r.get(18)?,
        },
        incident_id: r.get(19)?,
        arming: sla::Arming {
            armed: r.get(20)?,
            false_since: r.get(21)?,
        },
        last_checked_at: r.get(22)?,
        created_at: r.get(23)?,
        updated_at: r.get(24)?,
        push_token: r.get(27)?,
    })
}

/// The stored lookup key of a ping token: lower-case hex SHA-256.
fn token_hash(token: &str) -> String {
    use sha2::Digest;
    crate::secret::to_hex(&sha2::Sha256::digest(token.as_bytes()))
}

fn monitor_by(
    c: &Connection,
    column: &str,
    value: &dyn rusqlite::ToSql,
) -> Result<Option<MonitorRow>> {
    let sql = format!("SELECT {MONITOR_COLUMNS} FROM monitors WHERE {column} = ?1");
    Ok(c.prepare_cached(&sql)?
        .query_row([value], monitor_row)
        .optional()?)
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
        timings: super::timings::read(r, 7)?,
    })
}

/// How long a monitor's history is kept: its SLA window, and at least `keep_ms`.
fn history_ms(settings: &MonitorSettings, keep_ms: i64) -> i64 {
    ((settings.sla_window_days * 86_400_000.0) as i64).max(keep_ms)
}

/// Checks and failures since `since`, from raw checks, minute rows and hour rows (each check
/// is in exactly one of them; a row counts when it begins at or after `since`, which
/// `sla::window_start` puts on a boundary of the rows it falls in), and the budget the
/// failures spent. Read in one transaction: retention may move minutes into hours meanwhile.
fn history_since(c: &Connection, monitor_seq: i64, since: i64) -> Result<(sla::Counts, f64)> {
    let (checks, failures, spent): (i64, i64, i64) = c
        .prepare_cached(
            "SELECT count(*), coalesce(sum(ok = 0), 0),
                    coalesce(sum(CASE WHEN ok = 0 THEN interval_ms ELSE 0 END), 0)
             FROM checks WHERE monitor_seq = ?1 AND at >= ?2",
        )?
        .query_row(params![monitor_seq, since], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })?;
    let mut total = sla::Counts { checks, failures };
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

fn recent(c: &Connection, monitor_seq: i64, since: i64) -> Result<sla::Counts> {
    let (checks, failures) = c
        .prepare_cached(
            "SELECT count(*), coalesce(sum(ok = 0), 0) FROM checks WHERE monitor_seq = ?1 AND at >= ?2",
        )?
        .query_row(params![monitor_seq, since], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(sla::Counts { checks, failures })
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

/// How many enabled monitors are up and down, for `/metrics`.
pub(super) fn monitor_counts(c: &Connection) -> Result<Vec<(&'static str, i64)>> {
    let (up, down) = c.query_row(
        "SELECT coalesce(sum(status != 'DOWN'), 0), coalesce(sum(status = 'DOWN'), 0)
         FROM monitors WHERE enabled = 1",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    Ok(vec![("up", up), ("down", down)])
}

impl Store {
    // ---- components ----

    pub fn create_component(
        &self,
        id: &str,
        name: &str,
        status: &str,
        now: i64,
    ) -> Result<Refused<ComponentRow>> {
        self.write(Durability::Full, |tx| {
            if component_by_id(tx, id)?.is_some() {
                return Ok(Err(Refusal::Exists));
            }
            tx.execute(
                "INSERT INTO components (id, name, status, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?4)",
                params![id, name, status, now],
            )?;
            Ok(Ok(
                component_by_id(tx, id)?.ok_or(rusqlite::Error::QueryReturnedNoRows)?
            ))
        })
    }

    pub fn component(&self, id: &str) -> Result<Option<ComponentRow>> {
        self.read(|c| component_by_id(c, id))
    }

    /// Components in creation order, after `cursor` (a `seq`), at most `limit`.
    pub fn list_components(&self, after: Option<i64>, limit: usize) -> Result<Vec<ComponentRow>> {
        self.read(|c| {
            let sql = format!(
                "SELECT {COMPONENT_COLUMNS} FROM components WHERE seq > ?1 ORDER BY seq LIMIT ?2"
            );
            let mut stmt = c.prepare_cached(&sql)?;
            let rows = stmt.query_map(params![after.unwrap_or(0), limit as i64], component_row)?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }

    pub fn update_component(
        &self,
        id: &str,
        name: Option<&str>,
        status: Option<&str>,
        now: i64,
    ) -> Result<Option<ComponentRow>> {
        self.write(Durability::Full, |tx| {
            let Some(current) = component_by_id(tx, id)? else {
                return Ok(None);
            };
            tx.execute(
                "UPDATE components SET name = ?2, status = ?3, updated_at = ?4 WHERE seq = ?1",
                params![
                    current.seq,
                    name.unwrap_or(&current.name),
                    status.unwrap_or(&current.status),
                    now
                ],
            )?;
            component_by_id(tx, id)
        })
    }

    /// Deletes a component no monitor names; incidents keep their copy of it.
    pub fn delete_component(&self, id: &str) -> Result<Option<Refused<()>>> {
        self.write(Durability::Full, |tx| {
            if component_by_id(tx, id)?.is_none() {
                return Ok(None);
            }
            let user: Option<String> = tx
                .query_row(
                    "SELECT id FROM monitors WHERE component_id = ?1 ORDER BY seq LIMIT 1",
                    [id],
                    |r| r.get(0),
                )
                .optional()?;
            if let Some(monitor_id) = user {
                return Ok(Some(Err(Refusal::InUse { monitor_id })));
            }
            tx.execute("DELETE FROM components WHERE id = ?1", [id])?;
            Ok(Some(Ok(())))
        })
    }

    // ---- incidents ----

    /// Opens a manual incident, sets its components' statuses and emits `incident.created`.
    pub fn create_incident(&self, new: &NewIncident) -> Result<Refused<IncidentChange>> {
        self.write(Durability::Full, |tx| {
            let components = match resolve_components(tx, &new.components, "components")? {
                Ok(c) => c,
                Err(refusal) => return Ok(Err(refusal)),
            };
            let mut inc = IncidentRow {
                seq: 0,
                id: new.id.clone(),
                title: new.title.clone(),
                status: new.status.clone(),
                severity: new.severity.clone(),
                components,
                source: "manual".into(),
                monitor_id: None,
                started_at: new.now,
                resolved_at: None,
                updated_at: new.now,
            };
            inc.seq = insert_incident(tx, &inc)?;
            for c in &inc.components {
                set_component_status(tx, &c.id, &c.status, new.now)?;
            }
            let mut emitted = Vec::new();
            emit(
                tx,
                &self.event_ids,
                EventType::IncidentCreated,
                &crate::incident::event_data(&inc),
                new.now,
                &mut emitted,
            )?;
            self.ensure_room(tx, &emitted)?;
            Ok(Ok((inc, emitted)))
        })
    }

    pub fn incident(&self, id: &str) -> Result<Option<IncidentRow>> {
        self.read(|c| incident_by_id(c, id))
    }

    /// Incidents newest first, optionally of one status, before `cursor` (a `seq`).
    pub fn list_incidents(
        &self,
        status: Option<&str>,
        before: Option<i64>,
        limit: usize,
    ) -> Result<Vec<IncidentRow>> {
        self.read(|c| {
            let before = before.unwrap_or(i64::MAX);
            let rows = match status {
                Some(s) => c
                    .prepare_cached(&incidents_page(true))?
                    .query_map(params![s, before, limit as i64], incident_row)?
                    .collect::<rusqlite::Result<Vec<_>>>(),
                None => c
                    .prepare_cached(&incidents_page(false))?
                    .query_map(params![before, limit as i64], incident_row)?
                    .collect::<rusqlite::Result<Vec<_>>>(),
            };
            Ok(rows?)
        })
    }

    /// Deletes up to `batch` incidents resolved before `cutoff` (their components' copies are
    /// in their rows and go with them), through `incidents_by_resolution (status,
    /// resolved_at)`, so the search ends at the cutoff; an open incident is never deleted, however old. Returns how
    /// many went. A monitor that still names a deleted incident treats it as it treats a
    /// resolved one: as no open incident.
    pub fn prune_incidents(&self, cutoff: i64, batch: usize) -> Result<usize> {
        self.write(Durability::Normal, |tx| {
            Ok(tx
                .prepare_cached(PRUNE_INCIDENTS)?
                .execute(params![cutoff, batch as i64])?)
        })
    }

    /// Applies `patch`; the move to resolved emits `incident.resolved`, once: a resolved
    /// incident refuses every later change. `None` when there is no such incident.
    pub fn update_incident(
        &self,
        id: &str,
        patch: &IncidentPatch,
        now: i64,
    ) -> Result<Option<Refused<IncidentChange>>> {
        self.write(Durability::Full, |tx| {
            let Some(mut inc) = incident_by_id(tx, id)? else {
                return Ok(None);
            };
            let to = patch.status.clone().unwrap_or_else(|| inc.status.clone());
            match crate::incident::check_transition(&inc.status, &to) {
                Ok(()) => {}
                Err(crate::incident::TransitionError::Final) => {
                    return Ok(Some(Err(Refusal::Final)));
                }
                Err(crate::incident::TransitionError::Backward) => {
                    return Ok(Some(Err(Refusal::Backward {
                        from: inc.status.clone(),
                        to,
                    })));
                }
            }
            let components = match &patch.components {
                None => None,
                Some(inputs) => match resolve_components(tx, inputs, "components")? {
                    Ok(c) => Some(c),
                    Err(refusal) => return Ok(Some(Err(refusal))),
                },
            };
            if let Some(t) = &patch.title {
                inc.title = t.clone();
            }
            if let Some(s) = &patch.severity {
                inc.severity = s.clone();
            }
            let mut emitted = Vec::new();
            if to == "resolved" {
                resolve(tx, &self.event_ids, &mut inc, components, now, &mut emitted)?;
                // A monitor whose incident a person resolved opens a new one on its next
                // transition to DOWN.
                tx.execute(
                    "UPDATE monitors SET incident_id = NULL WHERE incident_id = ?1",
                    [&inc.id],
                )?;
            } else {
                if let Some(components) = components {
                    // Components the incident no longer names fall back to what other open
                    // incidents say about them.
                    for old in &inc.components {
                        if !components.iter().any(|c| c.id == old.id) {
                            let status = fallback_status(tx, &old.id, inc.seq)?;
                            set_component_status(tx, &old.id, status, now)?;
                        }
                    }
                    for c in &components {
                        set_component_status(tx, &c.id, &c.status, now)?;
                    }
                    inc.components = components;
                }
                inc.status = to;
                inc.updated_at = now;
                update_incident_row(tx, &inc)?;
            }
            self.ensure_room(tx, &emitted)?;
            Ok(Some(Ok((inc, emitted))))
        })
    }

    // ---- monitors ----

    /// Creates a monitor; `push_token` is a push monitor's ping token.
    pub fn create_monitor(
        &self,
        id: &str,
        s: &MonitorSettings,
        push_token: Option<&str>,
        now: i64,
    ) -> Result<Refused<MonitorRow>> {
        self.write(Durability::Full, |tx| {
            if let Some(component) = &s.component_id
                && component_by_id(tx, component)?.is_none()
            {
                return Ok(Err(Refusal::UnknownComponent {
                    field: "component_id".into(),
                }));
            }
            tx.execute(
                "INSERT INTO monitors (id, name, url, method, interval_ms, timeout_ms, expected_status,
                                       failures_before_down, successes_before_up, component_id,
                                       auto_incident, severity, sla_target, sla_window_days, enabled,
                                       created_at, updated_at, kind, grace_ms, push_token,
                                       push_token_hash)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?16,
                         ?17, ?18, ?19, ?20)",
                params![
                    id,
                    s.name,
                    s.url,
                    s.method,
                    s.interval_ms,
                    s.timeout_ms,
                    s.expected_status,
                    s.failures_before_down,
                    s.successes_before_up,
                    s.component_id,
                    s.auto_incident,
                    s.severity,
                    s.sla_target,
                    s.sla_window_days,
                    s.enabled,
                    now,
                    s.kind.as_str(),
                    s.grace_ms,
                    push_token,
                    push_token.map(token_hash),
                ],
            )?;
            Ok(Ok(monitor_by(tx, "id", &id)?
                .ok_or(rusqlite::Error::QueryReturnedNoRows)?))
        })
    }

    pub fn monitor(&self, id: &str) -> Result<Option<MonitorRow>> {
        self.read(|c| monitor_by(c, "id", &id))
    }

    pub fn monitor_by_seq(&self, seq: i64) -> Result<Option<MonitorRow>> {
        self.read(|c| monitor_by(c, "seq", &seq))
    }

    /// The push monitor whose ping token is `token`. Looked up by the token's hash through a
    /// unique index, so the search compares hashes and its timing reveals nothing about the
    /// token.
    pub fn monitor_by_push_token(&self, token: &str) -> Result<Option<MonitorRow>> {
        let hash = token_hash(token);
        self.read(|c| monitor_by(c, "push_token_hash", &hash))
    }

    /// Replaces a push monitor's ping token; the old one stops working at once. `None` when
    /// there is no such push monitor.
    pub fn rotate_push_token(&self, id: &str, token: &str, now: i64) -> Result<Option<MonitorRow>> {
        self.write(Durability::Full, |tx| {
            let changed = tx.execute(
                "UPDATE monitors SET push_token = ?2, push_token_hash = ?3, updated_at = ?4
                 WHERE id = ?1 AND kind = 'push'",
                params![id, token, token_hash(token), now],
            )?;
            if changed == 0 {
                return Ok(None);
            }
            monitor_by(tx, "id", &id)
        })
    }

    /// Monitors in creation order, after `cursor` (a `seq`), at most `limit`.
    pub fn list_monitors(&self, after: Option<i64>, limit: usize) -> Result<Vec<MonitorRow>> {
        self.read(|c| {
            let sql = format!(
                "SELECT {MONITOR_COLUMNS} FROM monitors WHERE seq > ?1 ORDER BY seq LIMIT ?2"
            );
            let mut stmt = c.prepare_cached(&sql)?;
            let rows = stmt.query_map(params![after.unwrap_or(0), limit as i64], monitor_row)?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }

    /// Every enabled monitor, for the scheduler's start.
    pub fn enabled_monitors(&self) -> Result<Vec<MonitorRow>> {
        self.read(|c| {
            let sql = format!("SELECT {MONITOR_COLUMNS} FROM monitors WHERE enabled = 1");
            let mut stmt = c.prepare_cached(&sql)?;
            let rows = stmt.query_map([], monitor_row)?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }

    /// Applies `patch` if the merged settings pass `check` and name a known component.
    /// `None` when there is no such monitor.
    pub fn update_monitor(
        &self,
        id: &str,
        patch: &MonitorPatch,
        now: i64,
        check: impl FnOnce(&MonitorSettings) -> Refused<()>,
    ) -> Result<Option<Refused<MonitorRow>>> {
        self.write(Durability::Full, |tx| {
            let Some(current) = monitor_by(tx, "id", &id)? else {
                return Ok(None);
            };
            let s = patch.apply(&current.settings);
            if let Err(refusal) = check(&s) {
                return Ok(Some(Err(refusal)));
            }
            if let Some(Some(component)) = &patch.component_id
                && component_by_id(tx, component)?.is_none()
            {
                return Ok(Some(Err(Refusal::UnknownComponent {
                    field: "component_id".into(),
                })));
            }
            tx.execute(
                "UPDATE monitors SET name = ?2, url = ?3, method = ?4, interval_ms = ?5, timeout_ms = ?6,
                        expected_status = ?7, failures_before_down = ?8, successes_before_up = ?9,
                        component_id = ?10, auto_incident = ?11, severity = ?12, sla_target = ?13,
                        sla_window_days = ?14, enabled = ?15, updated_at = ?16, grace_ms = ?17
                 WHERE seq = ?1",
                params![
                    current.seq,
                    s.name,
                    s.url,
                    s.method,
                    s.interval_ms,
                    s.timeout_ms,
                    s.expected_status,
                    s.failures_before_down,
                    s.successes_before_up,
                    s.component_id,
                    s.auto_incident,
                    s.severity,
                    s.sla_target,
                    s.sla_window_days,
                    s.enabled,
                    now,
                    s.grace_ms,
                ],
            )?;
            Ok(Some(Ok(monitor_by(tx, "seq", &current.seq)?
                .ok_or(rusqlite::Error::QueryReturnedNoRows)?)))
        })
    }

    /// Deletes a monitor with its check history; returns its seq. An incident it opened stays
    /// as it is.
    pub fn delete_monitor(&self, id: &str) -> Result<Option<i64>> {
        self.write(Durability::Full, |tx| {
            let seq: Option<i64> = tx
                .query_row("SELECT seq FROM monitors WHERE id = ?1", [id], |r| r.get(0))
                .optional()?;
            if let Some(seq) = seq {
                tx.execute("DELETE FROM monitors WHERE seq = ?1", [seq])?;
            }
            Ok(seq)
        })
    }

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
                super::timings::COLUMNS
            ))?;
            let rows = stmt.query_map(
                params![monitor_seq, before.unwrap_or(i64::MAX), limit as i64],
                check_row,
            )?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }

    /// A monitor's history as the SLA rule reads it, as of `now`, over `window_days`.
    pub fn sla_history(
        &self,
        monitor_seq: i64,
        window_days: f64,
        now: i64,
    ) -> Result<sla::History> {
        self.read(|c| {
            let window_ms = (window_days * 86_400_000.0) as i64;
            // One snapshot for every table: retention may fold minutes into hours between
            // two statements, which would count those checks twice or not at all.
            let tx = c.unchecked_transaction()?;
            let (window, spent_secs) =
                history_since(&tx, monitor_seq, sla::window_start(now, window_ms))?;
            let history = sla::History {
                window,
                spent_secs,
                last_1h: recent(&tx, monitor_seq, now - sla::RECENT_SHORT_MS)?,
                last_6h: recent(&tx, monitor_seq, now - sla::RECENT_LONG_MS)?,
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
        let hour_cutoff = now - sla::MINUTE_ROWS_MS;
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

    /// Records one check of a monitor and everything it causes, in one transaction: the new
    /// UP/DOWN state, `monitor.status_change` on a transition, the auto incident opened on
    /// DOWN or resolved on UP, the SLA warning, and the folding of old history. `history`
    /// is the SLA history before this check (read beforehand, outside the writer lock).
    /// `None` when the monitor is gone.
    pub fn record_check(
        &self,
        monitor_seq: i64,
        check: &Outcome,
        history: Option<sla::History>,
        ctx: &CheckContext,
    ) -> Result<Option<Vec<Emitted>>> {
        // A check that changes nothing is bookkeeping and commits like delivery outcomes; one
        // that emits an event is made durable like everything the API acknowledges. The
        // guess comes from a read; the transaction decides again on the row it locks.
        let durability = match self.monitor_by_seq(monitor_seq)? {
            None => return Ok(None),
            Some(m) => {
                let s = &m.settings;
                let next = rules::step(
                    m.state,
                    check.ok,
                    s.failures_before_down,
                    s.successes_before_up,
                );
                let may_warn = !check.ok && s.sla_target.is_some();
                if next.status != m.state.status || may_warn {
                    Durability::Full
                } else {
                    Durability::Normal
                }
            }
        };
        self.write(durability, |tx| {
            let Some(m) = monitor_by(tx, "seq", &monitor_seq)? else {
                return Ok(None);
            };
            let s = &m.settings;
            let now = ctx.now;
            let [dns, connect, tls, ttfb, total, reused] =
                super::timings::values(check.timings.as_ref());
            tx.prepare_cached(&format!(
                "INSERT INTO checks (monitor_seq, at, ok, status_code, response_time_ms,
                                     first_byte_ms, error, interval_ms, {})
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
                super::timings::COLUMNS
            ))?
            .execute(params![
                monitor_seq,
                check.at,
                check.ok,
                check.status_code,
                check.response_time_ms,
                check.first_byte_ms,
                check.error,
                s.interval_ms,
                dns,
                connect,
                tls,
                ttfb,
                total,
                reused,
            ])?;
            let next = rules::step(
                m.state,
                check.ok,
                s.failures_before_down,
                s.successes_before_up,
            );
            let mut emitted = Vec::new();
            let mut incident_id = m.incident_id.clone();
            if next.status != m.state.status {
                let data = rules::status_change_data(&rules::Change {
                    monitor_id: &m.id,
                    monitor_name: &s.name,
                    url: &s.url,
                    region: ctx.region,
                    previous: m.state.status,
                    current: next.status,
                    checked_at_ms: check.at,
                    status_code: check.status_code.map(i64::from),
                    response_time_ms: check.response_time_ms,
                    timings: check.timings,
                    error: check.error,
                    consecutive_failures: next.failures,
                });
                emit(
                    tx,
                    &self.event_ids,
                    EventType::MonitorStatusChange,
                    &data,
                    now,
                    &mut emitted,
                )?;
                let open = match &m.incident_id {
                    Some(id) => incident_by_id(tx, id)?.filter(|i| i.status != "resolved"),
                    None => None,
                };
                match (next.status, open) {
                    (Status::Down, None) if s.auto_incident => {
                        incident_id = Some(open_monitor_incident(
                            tx,
                            &self.event_ids,
                            &m,
                            now,
                            &mut emitted,
                        )?);
                    }
                    (Status::Up, Some(mut inc)) => {
                        resolve(tx, &self.event_ids, &mut inc, None, now, &mut emitted)?;
                        incident_id = None;
                    }
                    (Status::Up, None) => incident_id = None,
                    _ => {}
                }
            }
            let mut arming = m.arming;
            if let (Some(target), Some(history)) = (s.sla_target, history) {
                let h = history.with_check(check.ok, s.interval_ms as f64 / 1000.0);
                let a = sla::assess(target, s.sla_window_days, &h);
                let (next_arming, warn) = sla::arm(m.arming, a.at_risk, now);
                arming = next_arming;
                if warn {
                    let data =
                        sla::warning_data(&m.id, &s.name, target, s.sla_window_days, &a, now);
                    emit(
                        tx,
                        &self.event_ids,
                        EventType::SlaBreachWarning,
                        &data,
                        now,
                        &mut emitted,
                    )?;
                }
            }
            tx.prepare_cached(
                "UPDATE monitors SET status = ?2, consecutive_failures = ?3,
                        consecutive_successes = ?4, incident_id = ?5, sla_armed = ?6,
                        sla_false_since = ?7, last_checked_at = ?8
                 WHERE seq = ?1",
            )?
            .execute(params![
                monitor_seq,
                next.status.as_str(),
                next.failures,
                next.successes,
                incident_id,
                arming.armed,
                arming.false_since,
                check.at,
            ])?;
            compact(tx, monitor_seq, now, history_ms(s, ctx.keep_ms))?;
            self.ensure_room(tx, &emitted)?;
            Ok(Some(emitted))
        })
    }
}

/// Opens the incident for a monitor that went DOWN, its component (if any) at
/// `major_outage`, and emits `incident.created`; returns the incident's id.
fn open_monitor_incident(
    tx: &Transaction,
    ids: &EventIds,
    m: &MonitorRow,
    now: i64,
    out: &mut Vec<Emitted>,
) -> Result<String> {
    let components = match &m.settings.component_id {
        Some(id) => component_by_id(tx, id)?
            .map(|c| ComponentRef {
                id: c.id,
                name: c.name,
                status: "major_outage".into(),
            })
            .into_iter()
            .collect(),
        None => Vec::new(),
    };
    let mut inc = IncidentRow {
        seq: 0,
        id: crate::id::new("inc"),
        title: crate::incident::monitor_title(&m.settings.name),
        status: "investigating".into(),
        severity: m.settings.severity.clone(),
        components,
        source: "monitor".into(),
        monitor_id: Some(m.id.clone()),
        started_at: now,
        resolved_at: None,
        updated_at: now,
    };
    inc.seq = insert_incident(tx, &inc)?;
    for c in &inc.components {
        set_component_status(tx, &c.id, &c.status, now)?;
    }
    emit(
        tx,
        ids,
        EventType::IncidentCreated,
        &crate::incident::event_data(&inc),
        now,
        out,
    )?;
    Ok(inc.id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::NewEndpoint;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("t.db"), None).unwrap();
        (dir, store)
    }

    fn endpoint(store: &Store) -> i64 {
        store
            .create_endpoint(&NewEndpoint {
                id: crate::id::new("ep"),
                url: "http://127.0.0.1:9/".into(),
                description: String::new(),
                event_types: Vec::new(),
                enabled: true,
                batch_max: 100,
                batch_window_ms: 0,
                heartbeat_secs: None,
                secret: crate::secret::generate(),
                now: 1,
            })
            .unwrap()
            .seq
    }

    fn settings(component: Option<&str>) -> MonitorSettings {
        MonitorSettings {
            name: "API".into(),
            url: "http://127.0.0.1:9/health".into(),
            method: "GET".into(),
            interval_ms: 60_000,
            timeout_ms: 5_000,
            expected_status: "200-299".into(),
            failures_before_down: 2,
            successes_before_up: 1,
            component_id: component.map(str::to_string),
            auto_incident: true,
            severity: "major".into(),
            sla_target: None,
            sla_window_days: 30.0,
            enabled: true,
            kind: Kind::Http,
            grace_ms: 0,
        }
    }

    fn outcome(at: i64, ok: bool) -> Outcome {
        Outcome {
            at,
            ok,
            status_code: Some(if ok { 200 } else { 503 }),
            response_time_ms: 12,
            first_byte_ms: Some(10),
            timings: None,
            error: (!ok).then_some("unexpected_status"),
        }
    }

    fn record(store: &Store, m: &MonitorRow, at: i64, ok: bool) -> Vec<EventType> {
        let history = m.settings.sla_target.map(|_| {
            store
                .sla_history(m.seq, m.settings.sla_window_days, at)
                .unwrap()
        });
        let ctx = CheckContext {
            region: "test",
            keep_ms: 86_400_000,
            now: at,
        };
        store
            .record_check(m.seq, &outcome(at, ok), history, &ctx)
            .unwrap()
            .unwrap()
            .into_iter()
            .map(|e| e.event_type)
            .collect()
    }

    fn events(store: &Store, t: EventType) -> Vec<Value> {
        store
            .list_events(None, Some(t.as_str()), 100)
            .unwrap()
            .iter()
            .map(|e| serde_json::from_str(&e.payload).unwrap())
            .collect()
    }

    #[test]
    fn down_opens_one_incident_and_up_resolves_it() {
        let (_dir, store) = store();
        let ep = endpoint(&store);
        store
            .create_component("comp_api", "API", "operational", 1)
            .unwrap()
            .unwrap();
        let m = store
            .create_monitor("mon_a", &settings(Some("comp_api")), None, 1)
            .unwrap()
            .unwrap();
        assert_eq!(record(&store, &m, 1000, false), []);
        assert_eq!(
            record(&store, &m, 2000, false),
            [EventType::MonitorStatusChange, EventType::IncidentCreated]
        );
        // Further failures change nothing.
        assert_eq!(record(&store, &m, 3000, false), []);
        let down = store.monitor("mon_a").unwrap().unwrap();
        assert_eq!(down.state.status, Status::Down);
        let inc_id = down.incident_id.clone().unwrap();
        let inc = store.incident(&inc_id).unwrap().unwrap();
        assert_eq!(inc.title, "API is down");
        assert_eq!(inc.source, "monitor");
        assert_eq!(inc.components[0].status, "major_outage");
        assert_eq!(
            store.component("comp_api").unwrap().unwrap().status,
            "major_outage"
        );
        let change = &events(&store, EventType::MonitorStatusChange)[0]["data"];
        assert_eq!(change["metrics"]["consecutive_failures"], 2);
        assert_eq!(change["metrics"]["status_code"], 503);
        assert_eq!(change["region"], "test");

        assert_eq!(
            record(&store, &m, 4000, true),
            [EventType::MonitorStatusChange, EventType::IncidentResolved]
        );
        let up = store.monitor("mon_a").unwrap().unwrap();
        assert_eq!((up.state.status, up.incident_id), (Status::Up, None));
        let resolved = &events(&store, EventType::IncidentResolved)[0]["data"];
        assert_eq!(resolved["incident_id"], inc_id.as_str());
        assert_eq!(resolved["components"][0]["status"], "operational");
        assert_eq!(
            store.component("comp_api").unwrap().unwrap().status,
            "operational"
        );
        // Every event got its message, in the same transaction.
        let stats = store.endpoint_stats(ep).unwrap();
        assert_eq!(stats.pending, 4);
    }

    #[test]
    fn a_push_monitor_is_found_by_its_token_until_it_is_rotated() {
        let (_dir, store) = store();
        let mut s = settings(None);
        s.url = String::new();
        s.kind = Kind::Push;
        s.grace_ms = 5_000;
        let token = crate::secret::generate_ping_token();
        let m = store
            .create_monitor("mon_p", &s, Some(&token), 1)
            .unwrap()
            .unwrap();
        assert_eq!(m.settings.kind, Kind::Push);
        assert_eq!(m.push_token.as_deref(), Some(token.as_str()));
        let found = store.monitor_by_push_token(&token).unwrap().unwrap();
        assert_eq!((found.seq, found.settings.grace_ms), (m.seq, 5_000));
        assert!(store.monitor_by_push_token("x").unwrap().is_none());
        // Stored as given and as its hash; the hash is what a ping is looked up by.
        let hash: String = store
            .read(|c| {
                Ok(c.query_row(
                    "SELECT push_token_hash FROM monitors WHERE id = 'mon_p'",
                    [],
                    |r| r.get(0),
                )?)
            })
            .unwrap();
        assert_eq!(hash, token_hash(&token));
        assert_ne!(hash, token);

        let fresh = crate::secret::generate_ping_token();
        let rotated = store
            .rotate_push_token("mon_p", &fresh, 2)
            .unwrap()
            .unwrap();
        assert_eq!(rotated.push_token.as_deref(), Some(fresh.as_str()));
        assert!(store.monitor_by_push_token(&token).unwrap().is_none());
        assert_eq!(
            store.monitor_by_push_token(&fresh).unwrap().map(|m| m.seq),
            Some(m.seq)
        );
        // An HTTP monitor has no token to rotate.
        store
            .create_monitor("mon_h", &settings(None), None, 1)
            .unwrap()
            .unwrap();
        assert!(
            store
                .rotate_push_token("mon_h", &token, 3)
                .unwrap()
                .is_none()
        );
        assert_eq!(
            store.monitor("mon_h").unwrap().unwrap().settings.kind,
            Kind::Http
        );
    }

    #[test]
    fn a_deleted_monitor_records_nothing() {
        let (_dir, store) = store();
        let m = store
            .create_monitor("mon_a", &settings(None), None, 1)
            .unwrap()
            .unwrap();
        store.delete_monitor("mon_a").unwrap();
        let ctx = CheckContext {
            region: "test",
            keep_ms: 1,
            now: 5,
        };
        assert_eq!(
            store
                .record_check(m.seq, &outcome(5, false), None, &ctx)
                .unwrap(),
            None
        );
    }

    #[test]
    fn manual_incidents_resolve_once_and_refuse_bad_changes() {
        let (_dir, store) = store();
        store
            .create_component("comp_db", "Database", "operational", 1)
            .unwrap()
            .unwrap();
        let input = |id: &str| ComponentInput {
            id: id.into(),
            name: None,
            status: "degraded_performance".into(),
        };
        let new = |components| NewIncident {
            id: crate::id::new("inc"),
            title: "Slow queries".into(),
            severity: "minor".into(),
            status: "identified".into(),
            components,
            now: 10,
        };
        assert_eq!(
            store
                .create_incident(&new(vec![input("comp_db"), input("comp_nope")]))
                .unwrap()
                .err(),
            Some(Refusal::UnknownComponent {
                field: "components[1].id".into()
            })
        );
        assert!(store.list_incidents(None, None, 10).unwrap().is_empty());
        assert!(events(&store, EventType::IncidentCreated).is_empty());

        let (inc, emitted) = store
            .create_incident(&new(vec![input("comp_db")]))
            .unwrap()
            .unwrap();
        assert_eq!(emitted.len(), 1);
        assert_eq!(inc.components[0].name, "Database");
        assert_eq!(
            store.component("comp_db").unwrap().unwrap().status,
            "degraded_performance"
        );
        let back = IncidentPatch {
            status: Some("investigating".into()),
            ..IncidentPatch::default()
        };
        assert!(matches!(
            store.update_incident(&inc.id, &back, 20).unwrap(),
            Some(Err(Refusal::Backward { .. }))
        ));
        let resolve = IncidentPatch {
            status: Some("resolved".into()),
            ..IncidentPatch::default()
        };
        let (done, emitted) = store
            .update_incident(&inc.id, &resolve, 30)
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(
            (done.status.as_str(), done.resolved_at, emitted.len()),
            ("resolved", Some(30), 1)
        );
        assert_eq!(
            store.update_incident(&inc.id, &resolve, 40).unwrap(),
            Some(Err(Refusal::Final))
        );
        assert_eq!(events(&store, EventType::IncidentResolved).len(), 1);
        assert_eq!(
            store.component("comp_db").unwrap().unwrap().status,
            "operational"
        );
    }

    #[test]
    fn a_component_falls_back_to_what_other_open_incidents_say() {
        let (_dir, store) = store();
        store
            .create_component("comp_db", "Database", "operational", 1)
            .unwrap()
            .unwrap();
        let open = |status: &str| {
            store
                .create_incident(&NewIncident {
                    id: crate::id::new("inc"),
                    title: status.into(),
                    severity: "minor".into(),
                    status: "investigating".into(),
                    components: vec![ComponentInput {
                        id: "comp_db".into(),
                        name: None,
                        status: status.into(),
                    }],
                    now: 10,
                })
                .unwrap()
                .unwrap()
                .0
        };
        let _partial = open("partial_outage");
        let major = open("major_outage");
        let resolve = IncidentPatch {
            status: Some("resolved".into()),
            ..IncidentPatch::default()
        };
        let (done, _) = store
            .update_incident(&major.id, &resolve, 20)
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(done.components[0].status, "partial_outage");
        assert_eq!(
            store.component("comp_db").unwrap().unwrap().status,
            "partial_outage"
        );
    }

    #[test]
    fn components_named_by_monitors_stay() {
        let (_dir, store) = store();
        store
            .create_component("comp_api", "API", "operational", 1)
            .unwrap()
            .unwrap();
        assert_eq!(
            store
                .create_monitor("mon_a", &settings(Some("comp_x")), None, 1)
                .unwrap()
                .err(),
            Some(Refusal::UnknownComponent {
                field: "component_id".into()
            })
        );
        store
            .create_monitor("mon_a", &settings(Some("comp_api")), None, 1)
            .unwrap()
            .unwrap();
        assert_eq!(
            store.delete_component("comp_api").unwrap(),
            Some(Err(Refusal::InUse {
                monitor_id: "mon_a".into()
            }))
        );
        let clear = MonitorPatch {
            component_id: Some(None),
            ..MonitorPatch::default()
        };
        store
            .update_monitor("mon_a", &clear, 2, |_| Ok(()))
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(store.delete_component("comp_api").unwrap(), Some(Ok(())));
    }

    #[test]
    fn old_checks_fold_into_minutes_and_still_count() {
        let (_dir, store) = store();
        let mut s = settings(None);
        s.failures_before_down = 100;
        s.sla_window_days = 1.0;
        let m = store.create_monitor("mon_a", &s, None, 1).unwrap().unwrap();
        let t0 = 1_000_000_000_000;
        // Two checks a minute for an hour, every fourth failing.
        for i in 0..120 {
            record(&store, &m, t0 + i * 30_000, i % 4 != 0);
        }
        // Seven hours later one more check folds the first hour into aggregates.
        let later = t0 + 7 * 3600 * 1000;
        record(&store, &m, later, true);
        let raw = store.list_checks(m.seq, None, 500).unwrap();
        assert_eq!(raw.len(), 1);
        let h = store.sla_history(m.seq, 1.0, later).unwrap();
        assert_eq!(
            h.window,
            sla::Counts {
                checks: 121,
                failures: 30
            }
        );
        assert_eq!(h.spent_secs, 30.0 * 60.0);
        assert_eq!(h.last_6h.checks, 1);
        // Past the history's end (the one-day window, which is also `keep_ms`) it is gone.
        let much_later = later + 2 * 86_400_000;
        record(&store, &m, much_later, true);
        let h = store.sla_history(m.seq, 30.0, much_later).unwrap();
        assert_eq!(h.window.checks, 1);
    }

    /// Rows of each resolution one monitor holds: raw checks, minutes, hours.
    fn rows_of(store: &Store, monitor_seq: i64) -> [i64; 3] {
        store
            .read(|c| {
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
            .unwrap()
    }

    /// Issue 17: the SLA figures from downsampled history against the same figures computed
    /// from every raw check, for windows whose old end falls in each resolution and between
    /// boundaries. They must be exactly those of the window `sla::window_start` describes,
    /// and within the error it states of the exact window: fewer than an hour's checks (a
    /// minute's for a window of a day or less), budget spent short by less than an hour and
    /// an interval, uptime off by at most k / (n − k); the recent ratios exact.
    #[test]
    fn downsampled_history_gives_the_raw_sla_figures_within_the_stated_bound() {
        let (_dir, store) = store();
        let mut s = settings(None);
        s.sla_target = Some(99.9);
        let m = store.create_monitor("mon_a", &s, None, 1).unwrap().unwrap();
        // 31 days of 60 s checks, started up to a second late, 3 % failing at random, and
        // an outage of every check for two hours around the 30-day window's old end (the
        // worst place for the hour rows there).
        let hour = 3_600_000;
        let now = 1_800_000_000_000 + 17 * 60_000 + 23_456;
        let outage = (now - 30 * 86_400_000 - hour)..(now - 30 * 86_400_000 + hour);
        let mut rng = 0x5eed_u64;
        let mut next = move || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        let raw: Vec<(i64, bool)> = (0..31 * 1440)
            .map(|i| {
                let at = now - 31 * 86_400_000 + i * 60_000 + (next() % 1000) as i64;
                (at, !outage.contains(&at) && next() % 100 >= 3)
            })
            .collect();
        store
            .write(Durability::Normal, |tx| {
                let mut insert = tx.prepare(
                    "INSERT INTO checks (monitor_seq, at, ok, response_time_ms, interval_ms)
                     VALUES (?1, ?2, ?3, 12, 60000)",
                )?;
                for (at, ok) in &raw {
                    insert.execute(params![m.seq, at, ok])?;
                }
                // As the last check's record does: older than 6 h into minutes.
                compact(tx, m.seq, now, 30 * 86_400_000)
            })
            .unwrap();
        // Then retention, in batches; each folds or drops at most its budget and an hour.
        let mut batches = 0;
        let mut after = 0;
        loop {
            let (n, next, _) = store
                .fold_check_hours(now, 86_400_000, after, 1800)
                .unwrap();
            assert!(n <= 1800 + 60, "a batch of {n} rows");
            batches += 1;
            match next {
                Some(seq) => after = seq,
                None => break,
            }
        }
        assert!(batches > 20, "{batches} batches for 29 days of minutes");
        // Bounded: six hours raw, minutes from the hour before a day ago, then hours.
        let [checks, minutes, hours] = rows_of(&store, m.seq);
        assert!(checks <= 361, "{checks} raw checks");
        assert!(minutes <= 19 * 60, "{minutes} minute rows");
        assert!(hours <= 30 * 24 + 1, "{hours} hour rows");

        let exact = |since: i64| {
            let mut h = sla::History::default();
            for (at, ok) in &raw {
                let periods = [
                    (*at >= since).then_some(&mut h.window),
                    (*at >= now - sla::RECENT_SHORT_MS).then_some(&mut h.last_1h),
                    (*at >= now - sla::RECENT_LONG_MS).then_some(&mut h.last_6h),
                ];
                for c in periods.into_iter().flatten() {
                    c.checks += 1;
                    c.failures += i64::from(!ok);
                }
                if !ok && *at >= since {
                    h.spent_secs += 60.0;
                }
            }
            h
        };
        let days = [30.0, 29.987, 7.3, 1.5, 1.0, 20.0 / 24.0, 0.2, 0.01];
        for days in days {
            let window_ms = (days * 86_400_000.0) as i64;
            let got = store.sla_history(m.seq, days, now).unwrap();
            // Exactly the window that `window_start` describes.
            let start = sla::window_start(now, window_ms);
            assert_eq!(got, exact(start), "{days} days");
            // Within the stated error of the exact window.
            let want = exact(now - window_ms);
            let bucket = if window_ms > sla::MINUTE_ROWS_MS {
                hour
            } else if window_ms > sla::RECENT_LONG_MS {
                60_000
            } else {
                0
            };
            assert!(start - (now - window_ms) < bucket.max(1), "{days} days");
            let k = want.window.checks - got.window.checks;
            assert!(
                (0..=bucket / 59_000 + 1).contains(&k),
                "{days} days: {k} checks missed"
            );
            let short = want.spent_secs - got.spent_secs;
            assert!(
                (0.0..(bucket / 1000 + 60) as f64).contains(&short),
                "{days} days: budget spent short by {short} s"
            );
            let (a, b) = (
                sla::assess(99.9, days, &want),
                sla::assess(99.9, days, &got),
            );
            let n = want.window.checks as f64;
            let uptime_bound = 100.0 * k as f64 / (n - k as f64);
            let off = (a.uptime_pct.unwrap() - b.uptime_pct.unwrap()).abs();
            assert!(off <= uptime_bound + 1e-9, "{days} days: uptime off {off}");
            assert!(
                (b.budget_left_secs - a.budget_left_secs - short).abs() < 1e-6,
                "{days} days"
            );
            assert_eq!(
                (a.ratio_1h, a.ratio_6h, a.burn_rate),
                (b.ratio_1h, b.ratio_6h, b.burn_rate),
                "{days} days: the recent ratios are exact"
            );
            if days == 30.0 {
                // The figures ARCHITECTURE.md and the README state for 30 days of 60 s checks.
                assert!(off < 0.14, "uptime off {off} points");
                assert!(
                    k > 0 && short > 0.0,
                    "the outage is at the window's old end"
                );
            }
        }
    }

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

    #[test]
    fn the_sla_warning_fires_once() {
        let (_dir, store) = store();
        let mut s = settings(None);
        s.interval_ms = 1000;
        s.timeout_ms = 500;
        s.failures_before_down = 3;
        s.sla_target = Some(99.9);
        s.sla_window_days = 1.0;
        let m = store.create_monitor("mon_a", &s, None, 1).unwrap().unwrap();
        let t0 = 1_000_000_000_000;
        let mut warnings = Vec::new();
        // Every fifth check fails: the tenth check is the first with a ratio that counts.
        for i in 1..=40 {
            let types = record(&store, &m, t0 + i * 1000, i % 5 != 0);
            if types.contains(&EventType::SlaBreachWarning) {
                warnings.push(i);
            }
        }
        assert_eq!(warnings, [10]);
        let w = &events(&store, EventType::SlaBreachWarning)[0]["data"];
        assert_eq!(w["burn_rate"], 200);
        assert_eq!(w["window_days"], 1);
        assert!(!store.monitor("mon_a").unwrap().unwrap().arming.armed);
    }

    /// Retention deletes incidents resolved before its cutoff, with the copies of their
    /// components, in batches; an open incident stays however old, and a young resolved one
    /// stays. Its search reads only what it deletes (a plan through `incidents_by_resolution`).
    #[test]
    fn retention_prunes_incidents_resolved_before_the_cutoff_and_never_open_ones() {
        let (_dir, store) = store();
        store
            .create_component("comp_db", "Database", "operational", 1)
            .unwrap()
            .unwrap();
        let open = |now: i64| {
            store
                .create_incident(&NewIncident {
                    id: crate::id::new("inc"),
                    title: "outage".into(),
                    severity: "minor".into(),
                    status: "investigating".into(),
                    components: vec![ComponentInput {
                        id: "comp_db".into(),
                        name: None,
                        status: "major_outage".into(),
                    }],
                    now,
                })
                .unwrap()
                .unwrap()
                .0
        };
        let resolve = |id: &str, now: i64| {
            let patch = IncidentPatch {
                status: Some("resolved".into()),
                ..IncidentPatch::default()
            };
            store
                .update_incident(id, &patch, now)
                .unwrap()
                .unwrap()
                .unwrap();
        };
        let old_open = open(10);
        let old_resolved: Vec<_> = (0..5).map(|_| open(10)).collect();
        for inc in &old_resolved {
            resolve(&inc.id, 20);
        }
        // Opened long ago, resolved after the cutoff.
        let late = open(10);
        resolve(&late.id, 200);

        assert_eq!(store.prune_incidents(100, 2).unwrap(), 2, "a batch at most");
        assert_eq!(store.prune_incidents(100, 2).unwrap(), 2);
        assert_eq!(store.prune_incidents(100, 2).unwrap(), 1);
        assert_eq!(store.prune_incidents(100, 2).unwrap(), 0);
        let left: Vec<String> = store
            .list_incidents(None, None, 50)
            .unwrap()
            .into_iter()
            .map(|i| i.id)
            .collect();
        assert_eq!(left, [late.id.clone(), old_open.id.clone()]);
        assert_eq!(
            store.component("comp_db").unwrap().unwrap().status,
            "major_outage",
            "the open incident still says so"
        );

        let conn = store.writer.lock().unwrap();
        let plan: String = conn
            .prepare(&format!("EXPLAIN QUERY PLAN {PRUNE_INCIDENTS}"))
            .unwrap()
            .query_map(params![100, 500], |r| r.get::<_, String>(3))
            .unwrap()
            .map(|r| r.unwrap())
            .collect::<Vec<_>>()
            .join("; ");
        assert!(
            plan.contains(
                "incidents USING COVERING INDEX incidents_by_resolution (status=? AND resolved_at<?)"
            ),
            "{plan}"
        );
    }
}
