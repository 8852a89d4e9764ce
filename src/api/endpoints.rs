//! `/api/v1/endpoints`: create, list, show, edit, delete, reveal and rotate the secret, send a
//! test event, replay failed messages. The endpoint's wire shape is defined here.

use serde_json::{Value, json};

use super::fields::{self, Object};
use super::{Api, ApiError, Page, Reply, Req, Result};
use crate::endpoint;
use crate::event::EventType;
use crate::store::{AttemptRow, EndpointPatch, EndpointRow, NewEndpoint, NewEvent, PublishResult};
use crate::time::{now_ms, rfc3339};

const MAX_DESCRIPTION: usize = 1024;
const MAX_GRACE_SECS: i64 = 30 * 24 * 3600;
const DEFAULT_GRACE_SECS: i64 = 86_400;
/// The longest `heartbeat_secs` (a day): a consumer's dead man's switch waits a little longer
/// than this, and a longer silence is no heartbeat.
const MAX_HEARTBEAT_SECS: i64 = 86_400;

fn find(api: &Api, id: &str) -> Result<EndpointRow> {
    api.store
        .endpoint(id)?
        .ok_or_else(|| ApiError::not_found("endpoint"))
}

/// The endpoint as the API shows it; the secret only where the caller adds it.
pub fn render(api: &Api, ep: &EndpointRow) -> Result<Value> {
    let stats = api.store.endpoint_stats(ep.seq)?;
    let now = now_ms();
    Ok(json!({
        "id": ep.id,
        "url": ep.url,
        "description": ep.description,
        "event_types": ep.event_types,
        "enabled": ep.enabled,
        "disabled_reason": ep.disabled_reason,
        "batch_max": ep.batch_max,
        "batch_window_ms": ep.batch_window_ms,
        "heartbeat_secs": ep.heartbeat_secs,
        "backoff_until": ep.backoff_until.filter(|t| *t > now).map(rfc3339),
        "failing_since": ep.failing_since.map(rfc3339),
        "consecutive_failures": ep.failures,
        "created_at": rfc3339(ep.created_at),
        "updated_at": rfc3339(ep.updated_at),
        "counts": {
            "pending": stats.pending,
            "parked": stats.parked,
            "delivered": stats.delivered,
            "failed": stats.failed,
        },
        "last_attempt": stats.last_request.as_ref().map(render_request),
        "recovery": render_recovery(ep, now),
    }))
}

/// An endpoint disabled for failing while it is probed (SPEC 4.4): when the next probe goes
/// out, how many went so far, and when probing ends; `null` otherwise, also once the schedule
/// is over (which the dispatcher notices only when it next looks at the endpoint).
pub(super) fn render_recovery(ep: &EndpointRow, now: i64) -> Value {
    match ep.recovery {
        Some(r) if !ep.enabled && crate::delivery::recovery::due(&r, now).is_some() => json!({
            "next_probe_at": rfc3339(r.next_probe_at),
            "probes": r.probes,
            "until": rfc3339(r.until),
        }),
        _ => Value::Null,
    }
}

/// One request in the attempt log (SPEC 4.5).
pub fn render_attempt(a: &AttemptRow) -> Value {
    json!({
        "at": crate::time::rfc3339_ms(a.at),
        "attempt": a.attempt,
        "duration_ms": a.duration_ms,
        "status_code": a.status_code,
        "error": a.error,
        "response_body": a.response_body,
        "timings": a.timings.as_ref().map(crate::net::Timings::as_json),
    })
}

fn render_request(a: &AttemptRow) -> Value {
    let mut v = render_attempt(a);
    if let Some(obj) = v.as_object_mut() {
        obj.remove("attempt");
    }
    v
}

fn event_types(obj: &Object) -> Result<Option<Vec<String>>> {
    match obj.get("event_types") {
        None => Ok(None),
        Some(Value::Null) => Ok(Some(Vec::new())),
        Some(v) => {
            let list = fields::string_list(v, "event_types")?;
            endpoint::validate_event_types(&list)
                .map(Some)
                .map_err(|m| ApiError::field("event_types", m))
        }
    }
}

fn url(api: &Api, obj: &Object, required: bool) -> Result<Option<String>> {
    let url = if required {
        Some(fields::required_string(obj, "url")?)
    } else {
        fields::string(obj, "url")?
    };
    match url {
        Some(u) => {
            endpoint::validate_url(u, &api.config.network.policy)
                .map_err(|m| ApiError::field("url", m))?;
            Ok(Some(u.to_string()))
        }
        None => Ok(None),
    }
}

fn description(obj: &Object) -> Result<Option<String>> {
    let d = fields::string(obj, "description")?;
    if d.is_some_and(|d| d.len() > MAX_DESCRIPTION) {
        return Err(ApiError::field(
            "description",
            format!("description must be at most {MAX_DESCRIPTION} bytes"),
        ));
    }
    Ok(d.map(str::to_string))
}

/// The fields `PATCH` may change; creation takes these and `secret`.
pub(super) const EDITABLE: &[&str] = &[
    "url",
    "description",
    "event_types",
    "enabled",
    "batch_max",
    "batch_window_ms",
    "heartbeat_secs",
];

/// The fields of `rotate-secret`, `test` and `replay`.
pub(super) const ROTATE_KEYS: &[&str] = &["grace_secs", "secret"];
pub(super) const TEST_KEYS: &[&str] = &["type"];
pub(super) const REPLAY_KEYS: &[&str] = &["since"];

/// A user-supplied secret, checked for its form, or a new one.
fn secret(obj: &Object) -> Result<String> {
    match fields::string(obj, "secret")? {
        Some(s) => {
            crate::secret::key_bytes(s).map_err(|e| ApiError::field("secret", e.to_string()))?;
            Ok(s.to_string())
        }
        None => Ok(crate::secret::generate()),
    }
}

fn batch_settings(obj: &Object) -> Result<(Option<i64>, Option<i64>)> {
    Ok((
        fields::integer(obj, "batch_max", 1, endpoint::MAX_BATCH as i64)?,
        fields::integer(
            obj,
            "batch_window_ms",
            0,
            endpoint::MAX_BATCH_WINDOW.as_millis() as i64,
        )?,
    ))
}

/// `heartbeat_secs`: absent is `None`, `null` turns heartbeats off (`Some(None)`).
fn heartbeat_secs(obj: &Object) -> Result<Option<Option<i64>>> {
    match obj.get("heartbeat_secs") {
        None => Ok(None),
        Some(Value::Null) => Ok(Some(None)),
        Some(_) => Ok(Some(fields::integer(
            obj,
            "heartbeat_secs",
            1,
            MAX_HEARTBEAT_SECS,
        )?)),
    }
}

pub fn create(api: &Api, req: &Req) -> Result<Reply> {
    let obj = fields::object(req.body.as_ref())?;
    fields::only_keys(obj, &[EDITABLE, &["secret"]].concat())?;
    let url = url(api, obj, true)?.unwrap_or_default();
    let description = description(obj)?.unwrap_or_default();
    let event_types = event_types(obj)?.unwrap_or_default();
    let enabled = fields::boolean(obj, "enabled")?.unwrap_or(true);
    let (batch_max, batch_window_ms) = batch_settings(obj)?;
    let heartbeat_secs = heartbeat_secs(obj)?.flatten();
    let secret = secret(obj)?;
    let defaults = &api.config.delivery;
    let row = api.store.create_endpoint(&NewEndpoint {
        id: crate::id::new("ep"),
        url,
        description,
        event_types,
        enabled,
        batch_max: batch_max.unwrap_or(defaults.batch_max as i64),
        batch_window_ms: batch_window_ms.unwrap_or(defaults.batch_window.as_millis() as i64),
        heartbeat_secs,
        secret: secret.clone(),
        now: now_ms(),
    })?;
    api.dispatcher.changed(row.seq);
    log::info!("endpoint {} created for {}", row.id, host_of(&row.url));
    let mut v = render(api, &row)?;
    v["secret"] = Value::from(secret);
    Ok(Reply::json(201, &v))
}

/// The host of a URL, for log lines that must not carry paths (they may hold tokens).
fn host_of(url: &str) -> String {
    url.parse::<http::Uri>()
        .ok()
        .and_then(|u| u.host().map(str::to_string))
        .unwrap_or_default()
}

pub fn list(api: &Api, req: &Req) -> Result<Reply> {
    let page = Page::from(req)?;
    let rows = api.store.list_endpoints(page.cursor, page.limit + 1)?;
    page.wrap(rows, |r| r.seq, |r| render(api, r))
}

pub fn get(api: &Api, id: &str) -> Result<Reply> {
    let ep = find(api, id)?;
    Ok(Reply::json(200, &render(api, &ep)?))
}

pub fn patch(api: &Api, id: &str, req: &Req) -> Result<Reply> {
    let obj = fields::object(req.body.as_ref())?;
    if obj.contains_key("secret") {
        return Err(ApiError::field(
            "secret",
            "a secret cannot be changed by PATCH; use POST /api/v1/endpoints/{id}/rotate-secret",
        ));
    }
    fields::only_keys(obj, EDITABLE)?;
    let (batch_max, batch_window_ms) = batch_settings(obj)?;
    let patch = EndpointPatch {
        url: url(api, obj, false)?,
        description: description(obj)?,
        event_types: event_types(obj)?,
        enabled: fields::boolean(obj, "enabled")?,
        batch_max,
        batch_window_ms,
        heartbeat_secs: heartbeat_secs(obj)?,
    };
    let row = api
        .store
        .update_endpoint(id, &patch, now_ms())?
        .ok_or_else(|| ApiError::not_found("endpoint"))?;
    api.dispatcher.changed(row.seq);
    if let Some(enabled) = patch.enabled {
        log::info!(
            "endpoint {} {}",
            row.id,
            if enabled {
                "enabled"
            } else {
                "disabled by request"
            }
        );
    }
    Ok(Reply::json(200, &render(api, &row)?))
}

pub fn delete(api: &Api, id: &str) -> Result<Reply> {
    let seq = api
        .store
        .delete_endpoint(id)?
        .ok_or_else(|| ApiError::not_found("endpoint"))?;
    api.dispatcher.changed(seq);
    log::info!("endpoint {id} deleted");
    Ok(Reply::empty(204))
}

pub fn reveal_secret(api: &Api, id: &str) -> Result<Reply> {
    let ep = find(api, id)?;
    let secrets = api.store.active_secrets(ep.seq, now_ms())?;
    let current = secrets
        .first()
        .ok_or_else(|| ApiError::unavailable("the endpoint has no secret"))?;
    Ok(Reply::json(200, &json!({"secret": current})))
}

pub fn rotate_secret(api: &Api, id: &str, req: &Req) -> Result<Reply> {
    let obj = req.body_object()?;
    fields::only_keys(obj, ROTATE_KEYS)?;
    let grace =
        fields::integer(obj, "grace_secs", 0, MAX_GRACE_SECS)?.unwrap_or(DEFAULT_GRACE_SECS);
    let secret = secret(obj)?;
    let ep = find(api, id)?;
    let now = now_ms();
    api.store
        .rotate_secret(ep.seq, &secret, now, grace * 1000)?;
    api.dispatcher.changed(ep.seq);
    log::info!(
        "endpoint {} secret rotated; the previous one signs for {grace} s more",
        ep.id
    );
    Ok(Reply::json(
        200,
        &json!({"secret": secret, "previous_secret_expires_at": rfc3339(now + grace * 1000)}),
    ))
}

pub fn test(api: &Api, id: &str, req: &Req) -> Result<Reply> {
    let obj = req.body_object()?;
    fields::only_keys(obj, TEST_KEYS)?;
    let event_type = match fields::string(obj, "type")? {
        None => EventType::IncidentCreated,
        Some(t) => EventType::parse(t)
            .ok_or_else(|| ApiError::field("type", format!("unknown event type {t:?}")))?,
    };
    let ep = find(api, id)?;
    let now = now_ms();
    let data = crate::event::sample_data(event_type, now);
    let payload =
        crate::event::envelope(crate::event::UNASSIGNED_ID, event_type.as_str(), now, &data);
    let result = api.intake.publish(NewEvent {
        event_type: event_type.as_str().to_string(),
        created_at: now,
        payload,
        only_endpoint: Some(ep.seq),
        idempotency: None,
    })?;
    match result {
        PublishResult::Accepted { event_id, .. } => Ok(Reply::json(
            202,
            &json!({"id": event_id, "type": event_type.as_str(), "created_at": rfc3339(now), "data": data}),
        )),
        _ => Err(ApiError::unavailable("the test event was not stored")),
    }
}

pub fn replay(api: &Api, id: &str, req: &Req) -> Result<Reply> {
    let obj = fields::object(req.body.as_ref())?;
    fields::only_keys(obj, REPLAY_KEYS)?;
    let since_text = fields::required_string(obj, "since")?;
    let since = crate::time::parse_rfc3339(since_text).ok_or_else(|| {
        ApiError::field(
            "since",
            "since must be an RFC 3339 time such as \"2023-10-27T14:30:00Z\"",
        )
    })?;
    let ep = find(api, id)?;
    let n = api.store.replay_failed(ep.seq, since, now_ms())?;
    if n > 0 {
        api.dispatcher.changed(ep.seq);
        log::info!("endpoint {}: {n} failed messages requeued", ep.id);
    }
    Ok(Reply::json(200, &json!({"requeued": n})))
}
