//! Components and incidents: their rows, the closed vocabularies of an incident's status and
//! source (stored as their names, through `ToSql`/`FromSql`) and the storing of the event
//! vocabulary's component status and severity (`event::ComponentStatus`, `event::Severity`)
//! the same way, the table operations a `Tx` offers over
//! them, and the API's reads and plain writes. The incident lifecycle that decides what to
//! write is `incident.rs`, which writes through a `Tx`.

use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSqlOutput, ValueRef};
use rusqlite::{Connection, OptionalExtension, Transaction, params};
use serde_json::Value;

use super::{Durability, Result, Store, Tx};
use crate::event::{ComponentStatus, Severity};

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

// ---- the closed vocabularies of an incident ----

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

/// Who opened an incident: a person through the API, or a monitor that went DOWN (SPEC 7);
/// stored as its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IncidentSource {
    Manual,
    Monitor,
}

impl IncidentSource {
    pub const ALL: [IncidentSource; 2] = [IncidentSource::Manual, IncidentSource::Monitor];

    /// The name stored and shown in the API and in events.
    pub const fn as_str(self) -> &'static str {
        match self {
            IncidentSource::Manual => "manual",
            IncidentSource::Monitor => "monitor",
        }
    }

    pub fn parse(text: &str) -> Option<IncidentSource> {
        IncidentSource::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

impl rusqlite::ToSql for IncidentSource {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::from(self.as_str()))
    }
}

impl FromSql for IncidentSource {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        let text = value.as_str()?;
        IncidentSource::parse(text)
            .ok_or_else(|| FromSqlError::Other(format!("unknown incident source {text:?}").into()))
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

impl rusqlite::ToSql for ComponentStatus {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::from(self.as_str()))
    }
}

impl FromSql for ComponentStatus {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        let text = value.as_str()?;
        ComponentStatus::parse(text)
            .ok_or_else(|| FromSqlError::Other(format!("unknown component status {text:?}").into()))
    }
}

impl rusqlite::ToSql for Severity {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::from(self.as_str()))
    }
}

impl FromSql for Severity {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        let text = value.as_str()?;
        Severity::parse(text)
            .ok_or_else(|| FromSqlError::Other(format!("unknown severity {text:?}").into()))
    }
}

// ---- rows ----

#[derive(Debug, Clone)]
pub struct ComponentRow {
    pub seq: i64,
    pub id: String,
    pub name: String,
    pub status: ComponentStatus,
    pub created_at: i64,
    pub updated_at: i64,
}

/// A component as an incident names it, with the status the incident gives it.
#[derive(Debug, Clone, PartialEq)]
pub struct ComponentRef {
    pub id: String,
    pub name: String,
    pub status: ComponentStatus,
}

/// A component as a request names it; the name is filled in from the component when absent.
#[derive(Debug, Clone)]
pub struct ComponentInput {
    pub id: String,
    pub name: Option<String>,
    pub status: ComponentStatus,
}

#[derive(Debug, Clone, PartialEq)]
pub struct IncidentRow {
    pub seq: i64,
    pub id: String,
    pub title: String,
    pub status: IncidentStatus,
    pub severity: Severity,
    pub components: Vec<ComponentRef>,
    pub source: IncidentSource,
    pub monitor_id: Option<String>,
    pub started_at: i64,
    pub resolved_at: Option<i64>,
    pub updated_at: i64,
}

pub struct NewIncident {
    pub id: String,
    pub title: String,
    pub severity: Severity,
    pub status: IncidentStatus,
    pub components: Vec<ComponentInput>,
    pub now: i64,
}

#[derive(Default)]
pub struct IncidentPatch {
    pub title: Option<String>,
    pub severity: Option<Severity>,
    pub status: Option<IncidentStatus>,
    pub components: Option<Vec<ComponentInput>>,
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

pub(super) fn component_by_id(c: &Connection, id: &str) -> Result<Option<ComponentRow>> {
    let sql = format!("SELECT {COMPONENT_COLUMNS} FROM components WHERE id = ?1");
    Ok(c.prepare_cached(&sql)?
        .query_row([id], component_row)
        .optional()?)
}

fn set_component_status(
    tx: &Transaction,
    id: &str,
    status: ComponentStatus,
    now: i64,
) -> Result<()> {
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
            status: c.status,
        });
    }
    Ok(Ok(out))
}

/// An incident's components as stored: `[{id, name, status}]`, the shape its events carry.
pub(super) fn components_to_text(components: &[ComponentRef]) -> String {
    Value::Array(
        components
            .iter()
            .map(|c| serde_json::json!({"id": c.id, "name": c.name, "status": c.status.as_str()}))
            .collect(),
    )
    .to_string()
}

/// The components `components_to_text` wrote; a status this binary does not know is an error
/// naming it, as it is in a column of its own.
fn components_from_text(text: &str) -> rusqlite::Result<Vec<ComponentRef>> {
    let parsed: Value = serde_json::from_str(text).unwrap_or(Value::Null);
    let field = |v: &Value, k: &str| v[k].as_str().unwrap_or_default().to_string();
    let Some(items) = parsed.as_array() else {
        return Ok(Vec::new());
    };
    items
        .iter()
        .map(|v| {
            let status = field(v, "status");
            Ok(ComponentRef {
                id: field(v, "id"),
                name: field(v, "name"),
                status: ComponentStatus::parse(&status).ok_or_else(|| {
                    rusqlite::Error::FromSqlConversionFailure(
                        5,
                        rusqlite::types::Type::Text,
                        format!("unknown component status {status:?}").into(),
                    )
                })?,
            })
        })
        .collect()
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
        components: components_from_text(&r.get::<_, String>(5)?)?,
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

/// The table operations of components and incidents, for the incident lifecycle, which writes
/// through a `Tx` (`incident.rs`).
impl Tx<'_> {
    pub fn component(&self, id: &str) -> Result<Option<ComponentRow>> {
        component_by_id(self.conn(), id)
    }

    /// Sets a component's status (and `updated_at`, when it changes).
    pub fn set_component_status(&self, id: &str, status: ComponentStatus, now: i64) -> Result<()> {
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
    ) -> Result<Vec<ComponentStatus>> {
        let mut stmt = self.conn().prepare_cached(
            "SELECT components FROM incidents WHERE status != 'resolved' AND seq != ?1",
        )?;
        let rows = stmt.query_map([except], |r| r.get::<_, String>(0))?;
        let mut statuses = Vec::new();
        for text in rows {
            for c in components_from_text(&text?)? {
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
}

impl Store {
    // ---- components ----

    pub fn create_component(
        &self,
        id: &str,
        name: &str,
        status: ComponentStatus,
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
        status: Option<ComponentStatus>,
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
                    status.unwrap_or(current.status),
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
}
