//! The event sources' tables: components, incidents, monitors and their check history, and
//! the table operations a `Tx` offers over them. The rules that decide what to write (the
//! incident lifecycle, UP/DOWN thresholds, the SLA warning) live with their domain
//! (`incident.rs`, `monitor/record.rs`, `sla.rs`), which writes through a `Tx`, so that every
//! event it emits is committed in the same transaction as the change that causes it.
//!
//! Check history: raw checks for the last six hours (enough for the SLA's recent ratios and
//! for `GET /monitors/{id}/checks`), then per-minute rows until a day old, then per-hour rows
//! for the rest of the monitor's SLA window (at least `retention_days`), so that a monitor
//! keeps at most 6 h of checks, 18 h × 60 minute rows and 24 rows a day of its window
//! (`sla::window_start` states what that costs the SLA rule). Raw checks are folded into
//! minutes a few rows at a time, in the transaction that records each check; minutes into
//! hours by retention (`fold_check_hours`), in batches of bounded size.

use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSqlOutput, ValueRef};
use rusqlite::{Connection, OptionalExtension, Transaction, params};
use serde_json::Value;

use super::{Durability, Result, Store, Tx};

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
    Backward {
        from: IncidentStatus,
        to: IncidentStatus,
    },
    /// A setting breaks a rule that ties it to another.
    Invalid { field: String, message: String },
}

/// What a write that may be refused returns inside the store's own `Result`.
pub type Refused<T> = std::result::Result<T, Refusal>;

// ---- the closed vocabularies of these rows ----

/// Where an incident is in its lifecycle, in the order it moves (SPEC 7); stored as its
/// name. The lifecycle itself is `incident::transition`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum IncidentStatus {
    Investigating,
    Identified,
    Monitoring,
    /// Final: nothing about the incident changes any more.
    Resolved,
}

impl IncidentStatus {
    pub const ALL: [IncidentStatus; 4] = [
        IncidentStatus::Investigating,
        IncidentStatus::Identified,
        IncidentStatus::Monitoring,
        IncidentStatus::Resolved,
    ];

    /// The name stored and shown in the API and in events.
    pub const fn as_str(self) -> &'static str {
        match self {
            IncidentStatus::Investigating => "investigating",
            IncidentStatus::Identified => "identified",
            IncidentStatus::Monitoring => "monitoring",
            IncidentStatus::Resolved => "resolved",
        }
    }

    pub fn parse(text: &str) -> Option<IncidentStatus> {
        IncidentStatus::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

impl rusqlite::ToSql for IncidentStatus {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::from(self.as_str()))
    }
}

impl FromSql for IncidentStatus {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        let text = value.as_str()?;
        IncidentStatus::parse(text)
            .ok_or_else(|| FromSqlError::Other(format!("unknown incident status {text:?}").into()))
    }
}

/// What a monitor watches: a URL it requests (`http`), or pings it is sent (`push`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MonitorKind {
    Http,
    Push,
}

impl MonitorKind {
    pub const ALL: [MonitorKind; 2] = [MonitorKind::Http, MonitorKind::Push];

    pub fn as_str(self) -> &'static str {
        match self {
            MonitorKind::Http => "http",
            MonitorKind::Push => "push",
        }
    }

    /// The stored or sent word; `None` for any other.
    pub fn parse(text: &str) -> Option<MonitorKind> {
        MonitorKind::ALL.into_iter().find(|k| k.as_str() == text)
    }
}

/// A monitor's state. A new monitor starts `Up`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MonitorStatus {
    Up,
    Down,
}

impl MonitorStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            MonitorStatus::Up => "UP",
            MonitorStatus::Down => "DOWN",
        }
    }

    /// `DOWN` is down; anything else (only `UP` is ever stored) is up.
    pub fn parse(text: &str) -> MonitorStatus {
        if text == "DOWN" {
            MonitorStatus::Down
        } else {
            MonitorStatus::Up
        }
    }
}

/// The state that decides transitions (`monitor::rules::step`), persisted with the monitor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MonitorState {
    pub status: MonitorStatus,
    /// Failed checks in a row (0 after a success).
    pub failures: i64,
    /// Successful checks in a row (0 after a failure).
    pub successes: i64,
}

/// Whether the SLA warning may fire (`sla::arm`), persisted per monitor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlaArming {
    pub armed: bool,
    /// While disarmed: since when (ms) the condition has been false without a break.
    pub false_since: Option<i64>,
}

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
    pub status: IncidentStatus,
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
    pub status: IncidentStatus,
    pub components: Vec<ComponentInput>,
    pub now: i64,
}

#[derive(Default)]
pub struct IncidentPatch {
    pub title: Option<String>,
    pub severity: Option<String>,
    pub status: Option<IncidentStatus>,
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
    pub kind: MonitorKind,
    /// How long past its interval a push monitor waits for a ping; 0 for HTTP monitors.
    pub grace_ms: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct MonitorRow {
    pub seq: i64,
    pub id: String,
    pub settings: MonitorSettings,
    pub state: MonitorState,
    /// The open incident this monitor opened, if any.
    pub incident_id: Option<String>,
    pub arming: SlaArming,
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

/// An incident's components as stored: `[{id, name, status}]`, the shape its events carry.
pub(super) fn components_to_text(components: &[ComponentRef]) -> String {
    Value::Array(
        components
            .iter()
            .map(|c| serde_json::json!({"id": c.id, "name": c.name, "status": c.status}))
            .collect(),
    )
    .to_string()
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
            kind: MonitorKind::parse(&r.get::<_, String>(25)?).unwrap_or(MonitorKind::Http),
            grace_ms: r.get(26)?,
        },
        state: MonitorState {
            status: MonitorStatus::parse(&r.get::<_, String>(16)?),
            failures: r.get(17)?,
            successes: r.get(18)?,
        },
        incident_id: r.get(19)?,
        arming: SlaArming {
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
}

/// A monitor's state after a check, as `Tx::set_monitor_state` writes it.
pub struct MonitorStateUpdate<'a> {
    pub state: MonitorState,
    /// The open incident the monitor opened, if any.
    pub incident_id: Option<&'a str>,
    pub arming: SlaArming,
    pub last_checked_at: i64,
}

/// The table operations of components, incidents, monitors and checks, for the rules that
/// write through a `Tx`.
impl Tx<'_> {
    pub fn component(&self, id: &str) -> Result<Option<ComponentRow>> {
        component_by_id(self.conn(), id)
    }

    /// Sets a component's status (and `updated_at`, when it changes).
    pub fn set_component_status(&self, id: &str, status: &str, now: i64) -> Result<()> {
        set_component_status(self.conn(), id, status, now)
    }

    /// Names and checks the components a request gives; `field` prefixes refusals' fields.
    pub fn resolve_components(
        &self,
        inputs: &[ComponentInput],
        field: &str,
    ) -> Result<Refused<Vec<ComponentRef>>> {
        resolve_components(self.conn(), inputs, field)
    }

    pub fn incident(&self, id: &str) -> Result<Option<IncidentRow>> {
        incident_by_id(self.conn(), id)
    }

    /// Inserts `inc` (its `seq` is ignored) and returns its `seq`.
    pub fn insert_incident(&self, inc: &IncidentRow) -> Result<i64> {
        insert_incident(self.conn(), inc)
    }

    /// Writes `inc`'s title, status, severity, components and times over its row.
    pub fn update_incident(&self, inc: &IncidentRow) -> Result<()> {
        update_incident_row(self.conn(), inc)
    }

    /// The statuses the open incidents other than `except` (a `seq`) give component
    /// `component_id`.
    pub fn component_statuses_elsewhere(
        &self,
        component_id: &str,
        except: i64,
    ) -> Result<Vec<String>> {
        let mut stmt = self.conn().prepare_cached(
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
        Ok(statuses)
    }

    /// Makes every monitor that names incident `incident_id` as its open one name none.
    pub fn release_incident(&self, incident_id: &str) -> Result<()> {
        self.conn().execute(
            "UPDATE monitors SET incident_id = NULL WHERE incident_id = ?1",
            [incident_id],
        )?;
        Ok(())
    }

    pub fn monitor_by_seq(&self, seq: i64) -> Result<Option<MonitorRow>> {
        monitor_by(self.conn(), "seq", &seq)
    }

    pub fn insert_check(&self, check: &NewCheck) -> Result<()> {
        self.conn()
            .prepare_cached(
                "INSERT INTO checks (monitor_seq, at, ok, status_code, response_time_ms,
                                     first_byte_ms, error, interval_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?
            .execute(params![
                check.monitor_seq,
                check.at,
                check.ok,
                check.status_code,
                check.response_time_ms,
                check.first_byte_ms,
                check.error,
                check.interval_ms,
            ])?;
        Ok(())
    }

    pub fn set_monitor_state(&self, monitor_seq: i64, u: &MonitorStateUpdate) -> Result<()> {
        self.conn()
            .prepare_cached(
                "UPDATE monitors SET status = ?2, consecutive_failures = ?3,
                        consecutive_successes = ?4, incident_id = ?5, sla_armed = ?6,
                        sla_false_since = ?7, last_checked_at = ?8
                 WHERE seq = ?1",
            )?
            .execute(params![
                monitor_seq,
                u.state.status.as_str(),
                u.state.failures,
                u.state.successes,
                u.incident_id,
                u.arming.armed,
                u.arming.false_since,
                u.last_checked_at,
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

    pub fn incident(&self, id: &str) -> Result<Option<IncidentRow>> {
        self.read(|c| incident_by_id(c, id))
    }

    /// Incidents newest first, optionally of one status, before `cursor` (a `seq`).
    pub fn list_incidents(
        &self,
        status: Option<IncidentStatus>,
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
            let mut stmt = c.prepare_cached(
                "SELECT seq, at, ok, status_code, response_time_ms, first_byte_ms, error FROM checks
                 WHERE monitor_seq = ?1 AND seq < ?2 ORDER BY seq DESC LIMIT ?3",
            )?;
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

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("t.db"), None).unwrap();
        (dir, store)
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
            kind: MonitorKind::Http,
            grace_ms: 0,
        }
    }

    #[test]
    fn a_push_monitor_is_found_by_its_token_until_it_is_rotated() {
        let (_dir, store) = store();
        let mut s = settings(None);
        s.url = String::new();
        s.kind = MonitorKind::Push;
        s.grace_ms = 5_000;
        let token = crate::secret::generate_ping_token();
        let m = store
            .create_monitor("mon_p", &s, Some(&token), 1)
            .unwrap()
            .unwrap();
        assert_eq!(m.settings.kind, MonitorKind::Push);
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
            MonitorKind::Http
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

    /// Retention's search for incidents to delete reads only what it deletes: resolved ones
    /// before the cutoff, through `incidents_by_resolution` (what it deletes is tested in
    /// `incident::tests::retention_prunes_incidents_…`).
    #[test]
    fn incident_pruning_reads_only_what_it_deletes() {
        let (_dir, store) = store();
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
