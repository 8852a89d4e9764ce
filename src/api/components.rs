//! `/api/v1/components`: the parts of a service that incidents name (SPEC 7). The
//! component's wire shape is defined here.

use serde_json::{Value, json};

use super::fields;
use super::{Api, ApiError, Page, Reply, Req, Result};
use crate::event::{COMPONENT_STATUSES, ComponentStatus};
use crate::store::{ComponentRow, Refusal};
use crate::time::{now_ms, rfc3339};

/// The longest component id and name.
const MAX_ID: usize = 64;
const MAX_NAME: usize = 200;

/// The fields of a create and of a patch (an id is given once or generated, never changed).
pub(super) const CREATE_KEYS: &[&str] = &["id", "name", "status"];
pub(super) const PATCH_KEYS: &[&str] = &["name", "status"];

pub fn render(c: &ComponentRow) -> Value {
    json!({
        "id": c.id,
        "name": c.name,
        "status": c.status.as_str(),
        "created_at": rfc3339(c.created_at),
        "updated_at": rfc3339(c.updated_at),
    })
}

/// A component status, or the error naming `field`.
pub fn status(value: &str, field: &str) -> Result<ComponentStatus> {
    ComponentStatus::parse(value).ok_or_else(|| {
        ApiError::field(
            field,
            format!("{field} must be one of {}", COMPONENT_STATUSES.join(", ")),
        )
    })
}

fn valid_id(id: &str) -> bool {
    (1..=MAX_ID).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

fn name(obj: &fields::Object, required: bool) -> Result<Option<String>> {
    let name = if required {
        Some(fields::required_string(obj, "name")?)
    } else {
        fields::string(obj, "name")?
    };
    match name {
        Some(n) if n.trim().is_empty() || n.len() > MAX_NAME => Err(ApiError::field(
            "name",
            format!("name must be 1 to {MAX_NAME} bytes, not blank"),
        )),
        other => Ok(other.map(str::to_string)),
    }
}

pub fn create(api: &Api, req: &Req) -> Result<Reply> {
    let obj = fields::object(req.body.as_ref())?;
    fields::only_keys(obj, CREATE_KEYS)?;
    let id = match fields::string(obj, "id")? {
        Some(id) if !valid_id(id) => {
            return Err(ApiError::field(
                "id",
                format!(
                    "id must be 1 to {MAX_ID} letters, digits, '_', '-' or '.', such as \"comp_api_gateway\""
                ),
            ));
        }
        Some(id) => id.to_string(),
        None => crate::id::new("comp"),
    };
    let name = name(obj, true)?.unwrap_or_default();
    let status = match fields::string(obj, "status")? {
        Some(s) => status(s, "status")?,
        None => ComponentStatus::Operational,
    };
    match api.store.create_component(&id, &name, status, now_ms())? {
        Ok(row) => {
            log::info!("component {} created", row.id);
            Ok(Reply::json(201, &render(&row)))
        }
        Err(_) => Err(ApiError::conflict(format!(
            "a component with id {id:?} exists"
        ))),
    }
}

pub fn list(api: &Api, req: &Req) -> Result<Reply> {
    let page = Page::from(req)?;
    let rows = api.store.list_components(page.cursor, page.limit + 1)?;
    page.wrap(rows, |r| r.seq, |r| Ok(render(r)))
}

pub fn get(api: &Api, id: &str) -> Result<Reply> {
    let row = api
        .store
        .component(id)?
        .ok_or_else(|| ApiError::not_found("component"))?;
    Ok(Reply::json(200, &render(&row)))
}

pub fn patch(api: &Api, id: &str, req: &Req) -> Result<Reply> {
    let obj = fields::object(req.body.as_ref())?;
    if obj.contains_key("id") {
        return Err(ApiError::field("id", "a component's id cannot be changed"));
    }
    fields::only_keys(obj, PATCH_KEYS)?;
    let name = name(obj, false)?;
    let status = match fields::string(obj, "status")? {
        Some(s) => Some(status(s, "status")?),
        None => None,
    };
    let row = api
        .store
        .update_component(id, name.as_deref(), status, now_ms())?
        .ok_or_else(|| ApiError::not_found("component"))?;
    if let Some(s) = status {
        log::info!("component {} is {}", row.id, s.as_str());
    }
    Ok(Reply::json(200, &render(&row)))
}

pub fn delete(api: &Api, id: &str) -> Result<Reply> {
    match api.store.delete_component(id)? {
        None => Err(ApiError::not_found("component")),
        Some(Err(Refusal::InUse { monitor_id })) => Err(ApiError::conflict(format!(
            "monitor {monitor_id} names this component; change or delete the monitor first"
        ))),
        Some(Err(_)) => Err(ApiError::conflict("the component cannot be deleted")),
        Some(Ok(())) => {
            log::info!("component {id} deleted");
            Ok(Reply::empty(204))
        }
    }
}
