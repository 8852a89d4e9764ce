//! Monitors: their settings and persisted state (the closed vocabularies of a monitor's
//! kind and status, the SLA warning's arming), the table operations a `Tx` offers over them,
//! the API's reads and writes, and a push monitor's ping token, looked up by its hash. What a
//! check changes is decided by `monitor/record.rs`, which writes through a `Tx`.

use rusqlite::{Connection, OptionalExtension, params};

use super::components_incidents::{Refusal, Refused, component_by_id};
use super::{Durability, Result, Store, Tx};
use crate::event::Severity;

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
    pub severity: Severity,
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
    pub severity: Option<Severity>,
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
            severity: self.severity.unwrap_or(s.severity),
            sla_target: self.sla_target.unwrap_or(s.sla_target),
            sla_window_days: self.sla_window_days.unwrap_or(s.sla_window_days),
            enabled: self.enabled.unwrap_or(s.enabled),
            kind: s.kind,
            grace_ms: self.grace_ms.unwrap_or(s.grace_ms),
        }
    }
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

/// A monitor's state after a check, as `Tx::set_monitor_state` writes it.
pub struct MonitorStateUpdate<'a> {
    pub state: MonitorState,
    /// The open incident the monitor opened, if any.
    pub incident_id: Option<&'a str>,
    pub arming: SlaArming,
    pub last_checked_at: i64,
}

/// The table operations of monitors, for what a check records (`monitor/record.rs`).
impl Tx<'_> {
    pub fn monitor_by_seq(&self, seq: i64) -> Result<Option<MonitorRow>> {
        monitor_by(self.conn(), "seq", &seq)
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
}

impl Store {
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
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::store::testkit::store;

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
            severity: Severity::Major,
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
            .create_component(
                "comp_api",
                "API",
                crate::event::ComponentStatus::Operational,
                1,
            )
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
}
