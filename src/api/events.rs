//! `/api/v1/events` and `/api/v1/messages`: publishing with validation and idempotency, the
//! event and message views with their attempt logs (a list embeds the newest few attempts of
//! each message, one message's route all of them), and manual resends.

use serde_json::{Value, json};

use super::endpoints::render_attempt;
use super::fields;
use super::{Api, ApiError, Page, Reply, Req, Result};
use crate::event::{self, EventType};
use crate::store::{
    EventRow, Idempotency, MessageFilter, MessageRow, MessageStatus, NewEvent, PublishResult,
};
use crate::time::{now_ms, rfc3339};

const MAX_IDEMPOTENCY_KEY: usize = 255;

/// The fields of a published event.
pub(super) const PUBLISH_KEYS: &[&str] = &["type", "data"];

fn message_id(seq: i64) -> String {
    format!("msg_{seq}")
}

/// The sequence number of a message id as `message_id` writes it: `msg_` and the number's
/// digits, no sign, no leading zero, so that each message has exactly one id (`msg_+7` and
/// `msg_007` are no message).
fn message_seq(id: &str) -> Option<i64> {
    super::whole_number(id.strip_prefix("msg_")?).filter(|n| *n > 0)
}

pub fn render_message(m: &MessageRow) -> Value {
    json!({
        "id": message_id(m.seq),
        "event_id": m.event_id,
        "endpoint_id": m.endpoint_id,
        "status": m.status.as_str(),
        "created_at": rfc3339(m.created_at),
        "attempts": m.attempts.iter().map(render_attempt).collect::<Vec<_>>(),
        "attempt_count": m.attempt_count,
        "next_attempt_at": m.next_attempt_at.map(crate::time::rfc3339_ms),
    })
}

/// The stored envelope as JSON, keys in their sent order.
fn envelope(e: &EventRow) -> Result<Value> {
    serde_json::from_str(&e.payload).map_err(|err| {
        log::error!("stored event {} does not parse: {err}", e.id);
        ApiError::unavailable("a stored event could not be read")
    })
}

/// The event types with their one-line descriptions, for the settings page.
pub fn types() -> Reply {
    let data: Vec<Value> = EventType::ALL
        .iter()
        .map(|t| json!({"type": t.as_str(), "description": t.description()}))
        .collect();
    Reply::json(200, &json!({ "data": data }))
}

pub fn publish(api: &Api, req: &Req) -> Result<Reply> {
    let obj = fields::object(req.body.as_ref())?;
    fields::only_keys(obj, PUBLISH_KEYS)?;
    let type_text = fields::required_string(obj, "type")?;
    let event_type = EventType::parse(type_text).ok_or_else(|| {
        let known: Vec<&str> = EventType::ALL.iter().map(|t| t.as_str()).collect();
        ApiError::field(
            "type",
            format!(
                "unknown event type {type_text:?}; known types are {}",
                known.join(", ")
            ),
        )
    })?;
    let data = obj
        .get("data")
        .ok_or_else(|| ApiError::field("data", "data is required"))?;
    event::validate(event_type, data).map_err(|e| ApiError::field(e.field, e.message))?;
    let idempotency = match req.header("idempotency-key") {
        None => None,
        Some(key) => {
            // Whitespace around a header's value is not part of it; inside, a key is
            // printable ASCII, so that a control character (a NUL, an escape) is never stored
            // and echoed as part of one.
            let key = key.trim();
            if key.is_empty()
                || key.len() > MAX_IDEMPOTENCY_KEY
                || !key.bytes().all(|b| (b' '..=b'~').contains(&b))
            {
                return Err(ApiError::field(
                    "Idempotency-Key",
                    format!(
                        "Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY} printable ASCII characters"
                    ),
                ));
            }
            Some(Idempotency {
                key: key.to_string(),
                request: Value::Object(obj.clone()),
            })
        }
    };
    let now = now_ms();
    // The store gives the event its id and writes it into these bytes.
    let payload = event::envelope(event::UNASSIGNED_ID, event_type.as_str(), now, data);
    // The answer is the envelope's four keys plus `messages`: the stored bytes with one more
    // key, rather than the same JSON built and serialised a second time.
    let mut answer = payload.clone();
    let result = api.intake.publish(NewEvent {
        event_type: event_type.as_str().to_string(),
        created_at: now,
        payload,
        only_endpoint: None,
        idempotency,
    })?;
    match result {
        PublishResult::Accepted {
            event_id,
            endpoints,
        } => {
            if !event::set_envelope_id(&mut answer, &event_id) {
                return Err(ApiError::unavailable("the stored event has no id"));
            }
            answer.pop(); // the envelope's closing brace
            answer.push_str(&format!(",\"messages\":{}}}", endpoints.len()));
            Ok(Reply {
                status: 202,
                body: answer.into_bytes(),
                content_type: "application/json",
                headers: Vec::new(),
            })
        }
        PublishResult::Repeated { event_id, messages } => {
            let first = api.store.event(&event_id)?.ok_or_else(|| {
                ApiError::unavailable("the first event for this Idempotency-Key is gone")
            })?;
            let mut v = envelope(&first)?;
            v["messages"] = Value::from(messages);
            Ok(Reply::json(200, &v))
        }
        PublishResult::Conflict => Err(ApiError::conflict(
            "this Idempotency-Key was used in the last 24 hours with a different request body",
        )),
    }
}

pub fn list(api: &Api, req: &Req) -> Result<Reply> {
    let page = Page::from(req)?;
    let event_type = match req.query("type") {
        None | Some("") => None,
        Some(t) => Some(
            EventType::parse(t)
                .ok_or_else(|| ApiError::field("type", format!("unknown event type {t:?}")))?
                .as_str(),
        ),
    };
    let rows = api
        .store
        .list_events(page.cursor, event_type, page.limit + 1)?;
    page.wrap(rows, |r| r.seq, envelope)
}

pub fn get(api: &Api, id: &str) -> Result<Reply> {
    let e = api
        .store
        .event(id)?
        .ok_or_else(|| ApiError::not_found("event"))?;
    let filter = MessageFilter {
        event_seq: Some(e.seq),
        ..MessageFilter::default()
    };
    let messages = api.store.list_messages(&filter, None, 10_000)?;
    let mut v = envelope(&e)?;
    v["messages"] = Value::from(messages.iter().map(render_message).collect::<Vec<_>>());
    Ok(Reply::json(200, &v))
}

pub fn list_messages(api: &Api, req: &Req) -> Result<Reply> {
    let page = Page::from(req)?;
    let mut filter = MessageFilter::default();
    if let Some(status) = req.query("status").filter(|s| !s.is_empty()) {
        let status = MessageStatus::parse(status).ok_or_else(|| {
            let names = MessageStatus::ALL.map(MessageStatus::as_str);
            ApiError::field(
                "status",
                format!("status must be one of {}", names.join(", ")),
            )
        })?;
        filter.status = Some(status);
    }
    // An unknown endpoint or event filters everything out: an empty page, like any filter
    // that matches nothing.
    if let Some(id) = req.query("endpoint_id").filter(|s| !s.is_empty()) {
        filter.endpoint_seq = Some(api.store.endpoint(id)?.map_or(-1, |e| e.seq));
    }
    if let Some(id) = req.query("event_id").filter(|s| !s.is_empty()) {
        filter.event_seq = Some(api.store.event(id)?.map_or(-1, |e| e.seq));
    }
    let rows = api
        .store
        .list_messages(&filter, page.cursor, page.limit + 1)?;
    page.wrap(rows, |m| m.seq, |m| Ok(render_message(m)))
}

/// One message with every attempt; a list embeds only the newest few.
pub fn get_message(api: &Api, id: &str) -> Result<Reply> {
    let m = message_seq(id)
        .map(|seq| api.store.message(seq))
        .transpose()?
        .flatten()
        .ok_or_else(|| ApiError::not_found("message"))?;
    Ok(Reply::json(200, &render_message(&m)))
}

pub fn retry_message(api: &Api, id: &str) -> Result<Reply> {
    let seq = message_seq(id).ok_or_else(|| ApiError::not_found("message"))?;
    let endpoint = api
        .store
        .requeue_message(seq, now_ms())?
        .ok_or_else(|| ApiError::not_found("message"))?;
    api.dispatcher.changed(endpoint);
    let m = api
        .store
        .message(seq)?
        .ok_or_else(|| ApiError::not_found("message"))?;
    Ok(Reply::json(202, &render_message(&m)))
}
