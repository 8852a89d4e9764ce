//! `/api/v1/incidents`: open, list, show and update incidents (SPEC 7). Creating one emits
//! `incident.created`, resolving it `incident.resolved`; `incident::open` and `update` write each
//! event through a `store::Tx`, in the transaction that changes the incident. The incident's
//! wire shape is defined here.

use serde_json::{Value, json};

use super::fields::{self, Object};
use super::{Api, ApiError, Page, Reply, Req, Result};
use crate::event::{INCIDENT_STATUSES, SEVERITIES, Severity};
use crate::incident::{self, IncidentStatus};
use crate::store::{
    ComponentInput, Durability, Emitted, IncidentPatch, IncidentRow, NewIncident, Refusal,
};
use crate::time::{now_ms, rfc3339};

const MAX_TITLE: usize = 500;
/// The most components one incident may name.
const MAX_COMPONENTS: usize = 100;

/// The fields of a create and of a patch, and of each of their `components`.
pub(super) const KEYS: &[&str] = &["title", "severity", "status", "components"];
pub(super) const COMPONENT_KEYS: &[&str] = &["id", "name", "status"];

pub fn render(inc: &IncidentRow) -> Value {
    json!({
        "id": inc.id,
        "title": inc.title,
        "status": inc.status.as_str(),
        "severity": inc.severity.as_str(),
        "components": crate::incident::components_json(&inc.components),
        "source": inc.source.as_str(),
        "monitor_id": inc.monitor_id,
        "started_at": rfc3339(inc.started_at),
        "resolved_at": inc.resolved_at.map(rfc3339),
        "updated_at": rfc3339(inc.updated_at),
    })
}

/// After a commit that emitted events: count them and wake the dispatcher for the endpoints
/// that got messages.
pub fn announce(api: &Api, emitted: Vec<Emitted>) {
    let mut woken = Vec::new();
    for e in emitted {
        api.metrics.event_accepted(e.event_type);
        woken.extend(e.endpoints);
    }
    woken.sort_unstable();
    woken.dedup();
    api.dispatcher.wake(woken);
}

fn one_of(obj: &Object, key: &str, allowed: &[&str]) -> Result<Option<String>> {
    match fields::string(obj, key)? {
        Some(v) if !allowed.contains(&v) => Err(ApiError::field(
            key,
            format!("{key} must be one of {}", allowed.join(", ")),
        )),
        other => Ok(other.map(str::to_string)),
    }
}

/// `severity`, one of `Severity`'s words.
fn severity(obj: &Object) -> Result<Option<Severity>> {
    Ok(one_of(obj, "severity", &SEVERITIES)?.and_then(|s| Severity::parse(&s)))
}

/// `status`, one of the lifecycle's words.
fn incident_status(obj: &Object) -> Result<Option<IncidentStatus>> {
    Ok(one_of(obj, "status", &INCIDENT_STATUSES)?.and_then(|s| IncidentStatus::parse(&s)))
}

fn title(obj: &Object, required: bool) -> Result<Option<String>> {
    let t = if required {
        Some(fields::required_string(obj, "title")?)
    } else {
        fields::string(obj, "title")?
    };
    match t {
        Some(t) if t.trim().is_empty() || t.len() > MAX_TITLE => Err(ApiError::field(
            "title",
            format!("title must be 1 to {MAX_TITLE} bytes, not blank"),
        )),
        other => Ok(other.map(str::to_string)),
    }
}

/// `components`: `[{id, name?, status}]`, ids unique. Whether the ids exist is the store's
/// to say, in the transaction that uses them.
fn components(obj: &Object) -> Result<Option<Vec<ComponentInput>>> {
    let items = match obj.get("components") {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Array(items)) => items,
        Some(_) => {
            return Err(ApiError::field(
                "components",
                "components must be an array of {id, name?, status}",
            ));
        }
    };
    if items.len() > MAX_COMPONENTS {
        return Err(ApiError::field(
            "components",
            format!("an incident names at most {MAX_COMPONENTS} components"),
        ));
    }
    let mut out: Vec<ComponentInput> = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let path = format!("components[{i}]");
        let c = item
            .as_object()
            .ok_or_else(|| ApiError::field(&path, format!("{path} must be an object")))?;
        if let Some(k) = c.keys().find(|k| !COMPONENT_KEYS.contains(&k.as_str())) {
            return Err(ApiError::field(
                format!("{path}.{k}"),
                format!("unknown field {k:?}; expected id, name, status"),
            ));
        }
        let text = |key: &str| -> Result<Option<String>> {
            match c.get(key) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) if !s.trim().is_empty() => Ok(Some(s.clone())),
                Some(_) => Err(ApiError::field(
                    format!("{path}.{key}"),
                    format!("{path}.{key} must be a non-empty string"),
                )),
            }
        };
        let id = text("id")?.ok_or_else(|| {
            ApiError::field(format!("{path}.id"), format!("{path}.id is required"))
        })?;
        if out.iter().any(|o| o.id == id) {
            return Err(ApiError::field(
                format!("{path}.id"),
                format!("component {id:?} is named twice"),
            ));
        }
        let status = text("status")?.ok_or_else(|| {
            ApiError::field(
                format!("{path}.status"),
                format!("{path}.status is required"),
            )
        })?;
        let status = super::components::status(&status, &format!("{path}.status"))?;
        out.push(ComponentInput {
            id,
            name: text("name")?,
            status,
        });
    }
    Ok(Some(out))
}

fn refused(r: Refusal) -> ApiError {
    match r {
        Refusal::UnknownComponent { field } => {
            ApiError::field(&field, format!("{field} names no component"))
        }
        Refusal::Final => {
            ApiError::conflict("the incident is resolved; a resolved incident is final")
        }
        Refusal::Backward { from, to } => ApiError::field(
            "status",
            format!(
                "an incident moves forward through {}; it cannot go from {} back to {}",
                INCIDENT_STATUSES.join(" → "),
                from.as_str(),
                to.as_str()
            ),
        ),
        Refusal::Invalid { field, message } => ApiError::field(field, message),
        Refusal::Exists | Refusal::InUse { .. } => ApiError::conflict("the incident cannot change"),
    }
}

pub fn create(api: &Api, req: &Req) -> Result<Reply> {
    let obj = fields::object(req.body.as_ref())?;
    fields::only_keys(obj, KEYS)?;
    let title = title(obj, true)?.unwrap_or_default();
    let severity =
        severity(obj)?.ok_or_else(|| ApiError::field("severity", "severity is required"))?;
    let status = incident_status(obj)?.unwrap_or(IncidentStatus::Investigating);
    if status == IncidentStatus::Resolved {
        return Err(ApiError::field(
            "status",
            "an incident is created open (investigating, identified or monitoring); resolve it with PATCH",
        ));
    }
    let components = components(obj)?.unwrap_or_default();
    let new = NewIncident {
        id: crate::id::new("inc"),
        title,
        severity,
        status,
        components,
        now: now_ms(),
    };
    let (inc, emitted) = api
        .store
        .transact(Durability::Full, |tx| incident::open(tx, &new))?;
    let inc = inc.map_err(refused)?;
    announce(api, emitted);
    log::info!("incident {} opened ({})", inc.id, inc.severity.as_str());
    Ok(Reply::json(201, &render(&inc)))
}

pub fn list(api: &Api, req: &Req) -> Result<Reply> {
    let page = Page::from(req)?;
    let status = match req.query("status") {
        None | Some("") => None,
        Some(s) => Some(IncidentStatus::parse(s).ok_or_else(|| {
            ApiError::field(
                "status",
                format!("status must be one of {}", INCIDENT_STATUSES.join(", ")),
            )
        })?),
    };
    let rows = api
        .store
        .list_incidents(status, page.cursor, page.limit + 1)?;
    page.wrap(rows, |r| r.seq, |r| Ok(render(r)))
}

pub fn get(api: &Api, id: &str) -> Result<Reply> {
    let inc = api
        .store
        .incident(id)?
        .ok_or_else(|| ApiError::not_found("incident"))?;
    Ok(Reply::json(200, &render(&inc)))
}

pub fn patch(api: &Api, id: &str, req: &Req) -> Result<Reply> {
    let obj = fields::object(req.body.as_ref())?;
    fields::only_keys(obj, KEYS)?;
    let patch = IncidentPatch {
        title: title(obj, false)?,
        severity: severity(obj)?,
        status: incident_status(obj)?,
        components: components(obj)?,
    };
    let now = now_ms();
    let (inc, emitted) = api
        .store
        .transact(Durability::Full, |tx| incident::update(tx, id, &patch, now))?;
    let inc = inc
        .ok_or_else(|| ApiError::not_found("incident"))?
        .map_err(refused)?;
    if !emitted.is_empty() {
        log::info!("incident {} resolved", inc.id);
    }
    announce(api, emitted);
    Ok(Reply::json(200, &render(&inc)))
}
